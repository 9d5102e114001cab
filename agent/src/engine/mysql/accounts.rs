//! The accounts a MySQL/MariaDB server has, and the objects grants name: what a globals
//! capture lists and what a globals restore checks before it creates anything.

use anyhow::{Context, Result};
use sqlx::mysql::MySqlConnection;

use super::{ServerFlavor, globals::Account, text_at};

/// Every account of the server, with whether it is a (MariaDB) role; roles have no host.
/// Ordered roles first, then by name and host. Needs `SELECT` on `mysql.user`.
pub async fn list(
    conn: &mut MySqlConnection,
    flavor: ServerFlavor,
) -> Result<Vec<(Account, bool)>> {
    let sql = match flavor {
        ServerFlavor::MariaDb => {
            "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host"
        }
        ServerFlavor::MySql | ServerFlavor::Vitess => {
            "SELECT User, Host, 'N' FROM mysql.user ORDER BY User, Host"
        }
    };
    let rows = sqlx::raw_sql(sql)
        .fetch_all(&mut *conn)
        .await
        .context("list the accounts (SELECT on mysql.user)")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let user = text_at(r, 0)?;
        let host = text_at(r, 1)?;
        let role = text_at(r, 2)?.eq_ignore_ascii_case("Y");
        out.push(if role {
            (Account::role(&user), true)
        } else {
            (Account::user(&user, &host), false)
        });
    }
    Ok(out)
}

/// Tables, views and routines of `database`: (database, name).
pub async fn objects(conn: &mut MySqlConnection, database: &str) -> Result<Vec<(String, String)>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
         UNION ALL SELECT CAST(ROUTINE_NAME AS CHAR) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
    )
    .bind(database)
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .with_context(|| format!("list the tables and routines of {database}"))?;
    Ok(names
        .into_iter()
        .map(|n| (database.to_owned(), n))
        .collect())
}

/// `SHOW CREATE USER` of `account`.
pub async fn show_create_user(conn: &mut MySqlConnection, account: &Account) -> Result<String> {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SHOW CREATE USER {}",
        account.sql()
    )))
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("SHOW CREATE USER for {account}"))?;
    text_at(&row, 0)
}

/// `SHOW GRANTS FOR` `account`, one statement a row.
pub async fn show_grants(conn: &mut MySqlConnection, account: &Account) -> Result<Vec<String>> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SHOW GRANTS FOR {}",
        account.sql()
    )))
    .fetch_all(&mut *conn)
    .await
    .with_context(|| format!("SHOW GRANTS for {account}"))?;
    rows.iter().map(|r| text_at(r, 0)).collect()
}
