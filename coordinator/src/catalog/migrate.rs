//! `lifeboat-coordinator catalog migrate`: copies a SQLite catalog into an empty PostgreSQL
//! one. Both are opened (and so migrated) to the same schema version first; the copy reads one
//! snapshot of the source and writes in one transaction, so the destination ends up with all
//! of it, counts checked table by table, or with nothing.

use futures::TryStreamExt;
use sqlx::{Any, Row, Transaction, any::AnyRow};

use super::{Backend, Catalog, CatalogError, Result};

/// Every catalog table, parents before children (foreign keys).
const TABLES: [&str; 16] = [
    "agents",
    "targets",
    "jobs",
    "backups",
    "backup_pins",
    "backup_deletions",
    "backup_rebuilt",
    "backup_copies",
    "alert_incidents",
    "alert_notifications",
    "target_first_seen",
    "audit_log",
    "schedules",
    "schedule_state",
    "schedule_runs",
    "drills",
];

/// Tables whose `id` the database assigns (identity columns on PostgreSQL).
const IDENTITY_TABLES: [&str; 3] = ["alert_incidents", "audit_log", "schedule_runs"];

/// Bind parameters per INSERT, well under PostgreSQL's 65,535.
const PARAMS_PER_BATCH: usize = 30_000;

/// One table's rows, as counted in the source and in the destination after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    pub table: &'static str,
    pub rows: u64,
}

#[derive(Clone, Copy)]
enum ColumnType {
    Integer,
    Text,
}

impl Catalog {
    /// Copies every row of `from` (a SQLite catalog) into this catalog, which must be a
    /// PostgreSQL catalog holding no rows. Returns the row count of each table, checked in
    /// the destination before the commit.
    pub async fn copy_from_sqlite(&self, from: &Catalog) -> Result<Vec<TableCopied>> {
        if from.backend != Backend::Sqlite || self.backend != Backend::Postgres {
            return Err(CatalogError::Corrupt(
                "a catalog is copied from SQLite into PostgreSQL only".into(),
            ));
        }
        let source_tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('sqlite_sequence', '_sqlx_migrations') ORDER BY name",
        )
        .fetch_all(&from.pool)
        .await?;
        let mut known: Vec<&str> = TABLES.to_vec();
        known.sort_unstable();
        if source_tables != known {
            return Err(CatalogError::Corrupt(format!(
                "the SQLite catalog has the tables {source_tables:?}, this binary copies \
                 {known:?}; use the lifeboat-coordinator release that wrote the catalog"
            )));
        }
        // One read transaction: a consistent snapshot of every table (WAL mode).
        let mut src = from.pool.begin().await?;
        let mut dst = self.pool.begin().await?;
        let mut copied = Vec::new();
        for table in TABLES {
            let holds: bool = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS t"
            )))
            .fetch_one(&mut *dst)
            .await?
                > 0;
            if holds {
                return Err(CatalogError::Corrupt(format!(
                    "the PostgreSQL catalog already holds rows (table {table}); migrate into \
                     an empty database"
                )));
            }
            let columns = destination_columns(&mut dst, table).await?;
            let rows = copy_table(&mut src, &mut dst, table, &columns).await?;
            let counted: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *dst)
                    .await?;
            let source_count: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *src)
                    .await?;
            if counted != source_count || u64::try_from(counted).ok() != Some(rows) {
                return Err(CatalogError::Corrupt(format!(
                    "table {table}: {source_count} rows in SQLite, {rows} copied, {counted} in \
                     PostgreSQL; nothing was committed"
                )));
            }
            copied.push(TableCopied { table, rows });
        }
        // New rows continue after the copied ids.
        for table in IDENTITY_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )))
            .execute(&mut *dst)
            .await?;
        }
        dst.commit().await?;
        src.rollback().await?;
        Ok(copied)
    }
}

/// The destination table's columns and how to carry each (BIGINT or TEXT).
async fn destination_columns(
    dst: &mut Transaction<'static, Any>,
    table: &str,
) -> Result<Vec<(String, ColumnType)>> {
    let rows = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS type \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **dst)
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get("name")?;
            let ty: String = r.try_get("type")?;
            let ty = match ty.as_str() {
                "bigint" => ColumnType::Integer,
                "text" => ColumnType::Text,
                other => {
                    return Err(CatalogError::Corrupt(format!(
                        "{table}.{name} has the type {other}, which the copy does not carry"
                    )));
                }
            };
            Ok((name, ty))
        })
        .collect()
}

/// Streams `table` from the source and inserts it in batches; returns the rows copied.
async fn copy_table(
    src: &mut Transaction<'static, Any>,
    dst: &mut Transaction<'static, Any>,
    table: &str,
    columns: &[(String, ColumnType)],
) -> Result<u64> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let list = names.join(", ");
    let per_batch = (PARAMS_PER_BATCH / columns.len().max(1)).max(1);
    let select = format!("SELECT {list} FROM {table} ORDER BY rowid");
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut **src);
    let mut batch: Vec<AnyRow> = Vec::with_capacity(per_batch);
    let mut copied = 0u64;
    // The source stream borrows `src` while `dst` is written: two connections, no conflict.
    while let Some(row) = stream.try_next().await? {
        batch.push(row);
        if batch.len() == per_batch {
            copied += insert_batch(dst, table, &list, columns, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        copied += insert_batch(dst, table, &list, columns, &batch).await?;
    }
    Ok(copied)
}

async fn insert_batch(
    dst: &mut Transaction<'static, Any>,
    table: &str,
    list: &str,
    columns: &[(String, ColumnType)],
    rows: &[AnyRow],
) -> Result<u64> {
    let mut sql = format!("INSERT INTO {table} ({list}) VALUES ");
    let mut n = 0usize;
    for (i, _) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for j in 0..columns.len() {
            if j > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    // Table and column names come from the catalog's own schema; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for (j, (name, ty)) in columns.iter().enumerate() {
            let bad = |e: sqlx::Error| {
                CatalogError::Corrupt(format!("{table}.{name} in the SQLite catalog: {e}"))
            };
            query = match ty {
                ColumnType::Integer => query.bind(row.try_get::<Option<i64>, _>(j).map_err(bad)?),
                ColumnType::Text => query.bind(row.try_get::<Option<String>, _>(j).map_err(bad)?),
            };
        }
    }
    Ok(query.execute(&mut **dst).await?.rows_affected())
}
