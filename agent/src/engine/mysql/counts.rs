//! What a MySQL/MariaDB database holds per table: row counts (exact or estimated) and sizes,
//! for the manifest and the restore's check.

use anyhow::{Context, Result};
use sqlx::{AssertSqlSafe, MySqlConnection, Row};

use super::{list_tables, quote_ident, text_at};
use crate::manifest::TableRows;

/// Per-table row counts of `database`: exact `COUNT(*)` in the connection's current
/// transaction (open one with [`begin_consistent_snapshot`] first), or InnoDB's estimates.
pub async fn row_counts(
    conn: &mut MySqlConnection,
    database: &str,
    exact: bool,
) -> Result<Vec<TableRows>> {
    let mut out = Vec::new();
    let sizes = table_sizes(conn, database).await?;
    if exact {
        for t in list_tables(conn, database).await? {
            let sql = format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote_ident(database),
                quote_ident(&t)
            );
            // Identifiers quoted with quote_ident.
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *conn)
                .await
                .with_context(|| format!("count rows of {t}"))?;
            out.push(TableRows {
                schema: String::new(),
                bytes: sizes.get(&t).copied(),
                table: t,
                rows: n,
            });
        }
    } else {
        let rows = sqlx::query(
            "SELECT TABLE_NAME, CAST(COALESCE(TABLE_ROWS, 0) AS SIGNED) FROM information_schema.TABLES
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
             ORDER BY TABLE_NAME",
        )
        .bind(database)
        .fetch_all(&mut *conn)
        .await
        .context("read row estimates")?;
        for r in rows {
            let table = text_at(&r, 0)?;
            out.push(TableRows {
                schema: String::new(),
                bytes: sizes.get(&table).copied(),
                table,
                rows: r.try_get(1)?,
            });
        }
    }
    Ok(out)
}

/// Data and index length per table of `database` (InnoDB's figures, as `SHOW TABLE STATUS`
/// gives them).
pub async fn table_sizes(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<std::collections::HashMap<String, u64>> {
    let rows = sqlx::query(
        "SELECT TABLE_NAME, CAST(COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) AS SIGNED) \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("read table sizes")?;
    let mut out = std::collections::HashMap::new();
    for r in &rows {
        let n: i64 = r.try_get(1)?;
        out.insert(text_at(r, 0)?, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}
