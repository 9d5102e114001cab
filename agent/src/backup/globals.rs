//! The cluster's globals, captured with each logical backup as their own object beside the
//! data (`globals.sql.zst`), through the same zstd + SHA-256 pipeline. PostgreSQL:
//! `pg_dumpall --globals-only` (without password hashes unless the target says
//! `globals = "with-passwords"`), then the backed-up database's settings, owner and grants.
//! MySQL/MariaDB: each account's `CREATE USER`/`CREATE ROLE` and grants ([`mysql`]). A
//! server that does not let the backup user read them fails the capture, not the backup: the
//! manifest then says why, and the job's report warns. The object's text is never logged: it
//! may hold password hashes.

use std::{fmt::Write as _, io::Cursor, process::Stdio, sync::Arc};

use anyhow::{Context, Result};
use sqlx::{Row, postgres::PgConnection};
use tokio::io::AsyncReadExt;

use crate::{
    config::{BackupMode, Engine, GlobalsCapture, TargetConfig},
    engine::{
        mysql::globals as myg,
        postgres::{self as pg, globals as pgg},
    },
    job::JobCtx,
    manifest::GlobalsInfo,
    pipeline::{self, Compression},
    process::{describe_status, stderr_tail},
    repo::Repository,
};

mod mysql;

/// The globals object's file name in a backup's directory.
pub const GLOBALS_FILE: &str = "globals.sql.zst";
/// Globals larger than this are not captured (they would be held in memory).
const MAX_GLOBALS_BYTES: u64 = 64 * 1024 * 1024;

/// Captures the globals of `target`'s cluster into `dir_key/globals.sql.zst`: the manifest's
/// `globals` section, or `None` for a physical base backup (which holds them). Only a failure
/// to store the object is an error; anything that keeps the globals from being read is a
/// "not captured" with its reason, and a warning in the job's report.
pub(super) async fn capture(
    ctx: &JobCtx,
    target: &TargetConfig,
    repo: &Repository,
    dir_key: &str,
    encrypt_to: Option<&age::x25519::Recipient>,
) -> Result<Option<GlobalsInfo>> {
    if target.mode == BackupMode::Physical {
        return Ok(None);
    }
    let not = |reason: String| {
        Ok(Some(GlobalsInfo {
            status: lifeboat_proto::domain::NOT_CAPTURED.into(),
            reason,
            file: String::new(),
            raw_size: 0,
            raw_sha256: String::new(),
            stored_size: 0,
            stored_sha256: String::new(),
            roles: 0,
            memberships: 0,
            with_passwords: false,
        }))
    };
    if target.globals == GlobalsCapture::Off {
        return not("globals = \"off\" in the target's config".into());
    }
    ctx.set_phase("capturing globals");
    let captured = match target.engine {
        Engine::Postgres => pg_globals(ctx, target).await.map(|t| (t, 0)),
        Engine::Mysql => {
            tokio::select! {
                r = mysql::capture(target, MAX_GLOBALS_BYTES) => r,
                () = ctx.cancel.cancelled() => Err(anyhow::anyhow!("cancelled")),
            }
        }
    };
    let (text, system) = match captured {
        Ok(t) => t,
        Err(e) => {
            let why = format!("{e:#}");
            let what = match target.engine {
                Engine::Postgres => "roles and memberships",
                Engine::Mysql => "accounts and grants",
            };
            ctx.report.warn(
                "globals",
                format!(
                    "{what} were not captured with this backup: {why}; the backup itself is complete"
                ),
            );
            return not(why);
        }
    };
    let (roles, memberships) = match target.engine {
        Engine::Postgres => pgg::counts(&pgg::parse(&text)),
        Engine::Mysql => myg::counts(&myg::parse(&text)),
    };
    let with_passwords = target.globals == GlobalsCapture::WithPasswords;
    let (raw, stored, bytes) = compress(ctx, target, text.into_bytes(), encrypt_to).await?;
    let file = match encrypt_to {
        Some(_) => format!("{GLOBALS_FILE}{}", crate::crypt::AGE_SUFFIX),
        None => GLOBALS_FILE.to_owned(),
    };
    let key = format!("{dir_key}/{file}");
    repo.put_bytes(&key, bytes.into(), &ctx.cancel)
        .await
        .with_context(|| format!("write the globals to {}", repo.describe()))?;
    let passwords = if with_passwords {
        " with their password hashes"
    } else {
        ", without passwords"
    };
    ctx.report.ok(
        "globals",
        match target.engine {
            Engine::Postgres => {
                format!("captured {roles} role(s) and {memberships} membership(s){passwords}")
            }
            Engine::Mysql => format!(
                "captured {roles} account(s) and role(s) with their grants, {memberships} role grant(s){passwords}; {system} system account(s) left out"
            ),
        },
    );
    Ok(Some(GlobalsInfo {
        status: lifeboat_proto::domain::CAPTURED.into(),
        reason: String::new(),
        file,
        raw_size: raw.size,
        raw_sha256: raw.sha256,
        stored_size: stored.size,
        stored_sha256: stored.sha256,
        roles,
        memberships,
        with_passwords,
    }))
}

/// Runs the text through the backup pipeline (hashes, zstd), off the reactor.
async fn compress(
    ctx: &JobCtx,
    target: &TargetConfig,
    text: Vec<u8>,
    encrypt_to: Option<&age::x25519::Recipient>,
) -> Result<(pipeline::Digest, pipeline::Digest, Vec<u8>)> {
    let compression = Compression {
        level: target.compression_level,
        adaptive: false,
        threads: 1,
        encrypt_to: encrypt_to.cloned(),
    };
    let counters = Arc::new(pipeline::Counters::default());
    let cancel = ctx.cancel.clone();
    let c = tokio::task::spawn_blocking(move || {
        pipeline::compress(
            Cursor::new(text),
            Vec::new(),
            b"",
            compression,
            &counters,
            &cancel,
        )
    })
    .await
    .context("compress the globals")??;
    Ok((c.raw, c.stored, c.sink))
}

/// `pg_dumpall --globals-only` followed by the database's own settings, owner and grants.
async fn pg_globals(ctx: &JobCtx, target: &TargetConfig) -> Result<String> {
    let password = target.password()?;
    let mut conn = pg::connect(target, password.as_ref(), &target.database).await?;
    let facts = pg::server_facts(&mut conn).await?;
    let tool = pg::tool(target, "pg_dumpall", facts.major);
    let passfile = password
        .as_ref()
        .map(|p| pg::PassFile::create(&ctx.config.state_dir, p))
        .transpose()?;
    let mut cmd = pg::child_command(&tool, passfile.as_ref());
    cmd.arg("--globals-only").arg("--no-password");
    if target.globals != GlobalsCapture::WithPasswords {
        cmd.arg("--no-role-passwords");
    }
    cmd.arg("-l")
        .arg(&target.database)
        .arg("--dbname")
        .arg(pg::url_for(target, &target.database).as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", tool.display()))?;
    let stderr = child.stderr.take().map(stderr_tail);
    let mut stdout = child.stdout.take().context("pg_dumpall stdout")?;
    let mut out = Vec::new();
    let read = async {
        (&mut stdout)
            .take(MAX_GLOBALS_BYTES + 1)
            .read_to_end(&mut out)
            .await
    };
    tokio::select! {
        r = read => { r.context("read pg_dumpall's output")?; }
        () = ctx.cancel.cancelled() => anyhow::bail!("cancelled"),
    }
    drop(stdout);
    let status = child.wait().await.context("wait for pg_dumpall")?;
    let stderr = match stderr {
        Some(t) => t.await.unwrap_or_default(),
        None => String::new(),
    };
    if !status.success() {
        anyhow::bail!(
            "pg_dumpall --globals-only failed ({}): {}{}",
            describe_status(&status),
            if stderr.is_empty() {
                "no error output"
            } else {
                stderr.trim()
            },
            if stderr.contains("pg_authid") {
                "; reading password hashes needs a superuser: set globals = \"roles\""
            } else {
                ""
            }
        );
    }
    if out.len() as u64 > MAX_GLOBALS_BYTES {
        anyhow::bail!("pg_dumpall's output is larger than {MAX_GLOBALS_BYTES} bytes");
    }
    let mut text = String::from_utf8(out).context("pg_dumpall's output is not UTF-8")?;
    if !text.contains("PostgreSQL database cluster dump complete") {
        anyhow::bail!("pg_dumpall exited 0 but its output is incomplete");
    }
    text.push('\n');
    text.push_str(pgg::DATABASE_SECTION);
    text.push_str(&database_section(&mut conn).await?);
    let _ = sqlx::Connection::close(conn).await;
    Ok(text)
}

/// GUCs whose value is a list of quoted items (pg_dump's `variable_is_guc_list_quote`).
const LIST_GUCS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// `ALTER DATABASE … OWNER TO`, `… SET`, `ALTER ROLE … IN DATABASE … SET`, and the database's
/// grants (`REVOKE ALL … FROM PUBLIC` then each `GRANT`) of the connection's database.
async fn database_section(conn: &mut PgConnection) -> Result<String> {
    let db = sqlx::query(
        "SELECT current_database() AS name, pg_get_userbyid(datdba) AS owner, datacl IS NOT NULL AS has_acl \
         FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .context("read the database's owner")?;
    let name: String = db.try_get("name")?;
    let owner: String = db.try_get("owner")?;
    let has_acl: bool = db.try_get("has_acl")?;
    let q = pg::quote_ident;
    let mut out = String::new();
    let _ = writeln!(out, "ALTER DATABASE {} OWNER TO {};", q(&name), q(&owner));
    let settings = sqlx::query(
        "SELECT coalesce(r.rolname, '') AS role, unnest(s.setconfig) AS setting \
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
         LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = current_database() \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read the database's settings")?;
    for row in settings {
        let role: String = row.try_get("role")?;
        let setting: String = row.try_get("setting")?;
        let Some((k, v)) = setting.split_once('=') else {
            continue;
        };
        let name_q: Vec<String> = k.split('.').map(q).collect();
        let value = if LIST_GUCS.contains(&k) {
            v.split(',')
                .map(|item| literal(item.trim().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            literal(v)
        };
        let head = if role.is_empty() {
            format!("ALTER DATABASE {}", q(&name))
        } else {
            format!("ALTER ROLE {} IN DATABASE {}", q(&role), q(&name))
        };
        let _ = writeln!(out, "{head} SET {} TO {value};", name_q.join("."));
    }
    if has_acl {
        let _ = writeln!(out, "REVOKE ALL ON DATABASE {} FROM PUBLIC;", q(&name));
        let grants = sqlx::query(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee, \
                    a.privilege_type AS privilege, a.is_grantable AS grantable \
             FROM pg_database d, aclexplode(d.datacl) a \
             WHERE d.datname = current_database() AND a.grantee <> d.datdba ORDER BY 1, 2",
        )
        .fetch_all(&mut *conn)
        .await
        .context("read the database's grants")?;
        for g in grants {
            let grantee: String = g.try_get("grantee")?;
            let privilege: String = g.try_get("privilege")?;
            let grantable: bool = g.try_get("grantable")?;
            let _ = writeln!(
                out,
                "GRANT {privilege} ON DATABASE {} TO {grantee}{};",
                q(&name),
                if grantable { " WITH GRANT OPTION" } else { "" }
            );
        }
    }
    Ok(out)
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
