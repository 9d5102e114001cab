//! What a MySQL/MariaDB database holds beyond rows, for the manifest and a restore's
//! pre-flight: the definers of its stored objects, and the privileges of the connected user.

use std::collections::{BTreeSet, HashSet};

use anyhow::{Context, Result};
use sqlx::mysql::MySqlConnection;

use super::text_at;
use crate::manifest::DumpObjects;

/// The database and the definers (`user@host`) of its views, routines, triggers and events:
/// each of those is created with its `DEFINER` when the dump is loaded.
pub async fn dump_objects(conn: &mut MySqlConnection, database: &str) -> Result<DumpObjects> {
    let rows = sqlx::query(
        "SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?
         UNION SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?
         UNION SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?
         UNION SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
    )
    .bind(database)
    .bind(database)
    .bind(database)
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("list the definers of views, routines, triggers and events")?;
    let mut roles = BTreeSet::new();
    for r in &rows {
        let d = text_at(r, 0)?;
        if !d.is_empty() {
            roles.insert(d);
        }
    }
    Ok(DumpObjects {
        schemas: vec![database.to_owned()],
        extensions: Vec::new(),
        roles: roles.into_iter().collect(),
    })
}

/// Accounts (`user@host`) on the server; `None` if this user may not read `mysql.user`.
pub async fn accounts(conn: &mut MySqlConnection) -> Option<HashSet<String>> {
    let rows = sqlx::query("SELECT CONCAT(User, '@', Host) FROM mysql.user")
        .fetch_all(&mut *conn)
        .await
        .ok()?;
    rows.iter().map(|r| text_at(r, 0).ok()).collect()
}

/// The privileges the connected user holds on `database` directly: global ones and those
/// granted on the database (or a pattern matching it). Privileges that come through a role
/// are not seen here.
pub async fn privileges(conn: &mut MySqlConnection, database: &str) -> Result<HashSet<String>> {
    let rows = sqlx::query(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES
          WHERE GRANTEE = (SELECT CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                         SUBSTRING_INDEX(CURRENT_USER(), '@', -1), ''''))
         UNION
         SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES
          WHERE GRANTEE = (SELECT CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
                                         SUBSTRING_INDEX(CURRENT_USER(), '@', -1), ''''))
            AND ? LIKE TABLE_SCHEMA",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("read the user's privileges")?;
    rows.iter()
        .map(|r| text_at(r, 0).map(|p| p.to_ascii_uppercase()))
        .collect()
}

/// What a dump needs at the database level (see docs/providers/mysql.md).
pub const DUMP_PRIVILEGES: [&str; 4] = ["SELECT", "SHOW VIEW", "TRIGGER", "EVENT"];

/// What loading a dump into a new database needs.
pub const RESTORE_PRIVILEGES: [&str; 11] = [
    "CREATE",
    "DROP",
    "ALTER",
    "INSERT",
    "INDEX",
    "CREATE VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "TRIGGER",
    "EVENT",
    "REFERENCES",
];

/// The privileges of `needed` not in `have`.
pub fn lacking<'a>(needed: &[&'a str], have: &HashSet<String>) -> Vec<&'a str> {
    needed
        .iter()
        .copied()
        .filter(|p| !have.contains(*p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lacking_privileges_keep_their_order() {
        let have: HashSet<String> = ["SELECT", "EVENT"].iter().map(|s| (*s).into()).collect();
        assert_eq!(lacking(&DUMP_PRIVILEGES, &have), ["SHOW VIEW", "TRIGGER"]);
    }
}
