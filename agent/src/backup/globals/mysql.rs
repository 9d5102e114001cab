//! MySQL/MariaDB accounts for the globals object: each account's `CREATE ROLE` (MariaDB
//! roles) or `SHOW CREATE USER`, then its `SHOW GRANTS`, roles first. Without
//! `globals = "with-passwords"` the authentication secrets are left out and an account left
//! with no way in is locked ([`myg::strip_credentials`]); the `IDENTIFIED …` clause older
//! servers print in grants is always left out. The engine's own accounts (root,
//! `mariadb.sys`, …) are not captured.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::{
    config::{GlobalsCapture, TargetConfig},
    engine::mysql::{self as my, accounts, globals as myg},
};

/// The object's text, and how many system accounts were left out.
pub(super) async fn capture(target: &TargetConfig, max_bytes: u64) -> Result<(String, usize)> {
    let params = target
        .mysql
        .as_ref()
        .context("target has no MySQL connection parameters")?;
    let password = target.password()?;
    let mut conn = my::connect(params, password.as_ref(), None).await?;
    let facts = my::server_facts(&mut conn, None).await?;
    let with_passwords = target.globals == GlobalsCapture::WithPasswords;
    if facts.flavor.is_mysql_family() {
        // MySQL 8's hashes are binary: as hex they survive the text object.
        let _ = sqlx::raw_sql("SET SESSION print_identified_with_as_hex = ON")
            .execute(&mut conn)
            .await;
    }
    let list = accounts::list(&mut conn, facts.flavor).await.map_err(|e| {
        e.context("the backup user may not read the accounts: GRANT SELECT ON mysql.* to it, or set globals = \"off\"")
    })?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- lifeboat: accounts and grants of {}, {}\n",
        facts.describe(),
        if with_passwords {
            "with password hashes"
        } else {
            "without passwords"
        }
    );
    let mut system = 0;
    for (account, is_role) in &list {
        if myg::system_account(&account.user) {
            system += 1;
            continue;
        }
        let create = if *is_role {
            format!("CREATE ROLE {}", account.sql())
        } else {
            let text = accounts::show_create_user(&mut conn, account).await?;
            if with_passwords {
                text
            } else {
                myg::strip_credentials(&text).unwrap_or(text)
            }
        };
        let _ = writeln!(out, "{create};");
        for grant in accounts::show_grants(&mut conn, account).await? {
            let _ = writeln!(out, "{};", myg::strip_grant_identified(&grant));
        }
        out.push('\n');
        if out.len() as u64 > max_bytes {
            anyhow::bail!("the accounts and grants are larger than {max_bytes} bytes");
        }
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok((out, system))
}
