//! PostgreSQL: connections, server facts, the pg_dump/pg_restore tools, and the SQL the agent
//! runs itself (snapshot export, row counts, database create/rename/drop).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use lifeboat_common::secret::Secret;
use sqlx::{AssertSqlSafe, Connection, Row, postgres::PgConnectOptions, postgres::PgConnection};

use crate::{config::TargetConfig, manifest::TableRows};

pub mod archive;
pub mod globals;
pub mod objects;

/// The custom-format archive magic.
pub const PGDMP_MAGIC: &[u8] = b"PGDMP";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the target lives, for messages: `host:port/database`. Never includes a password.
pub fn describe(cfg: &TargetConfig, database: &str) -> String {
    format!(
        "{}@{}:{}/{}",
        cfg.url.username(),
        cfg.url.host_str().unwrap_or("localhost"),
        cfg.url.port().unwrap_or(5432),
        database
    )
}

/// The target's URL pointed at another database. Contains no password.
pub fn url_for(cfg: &TargetConfig, database: &str) -> url::Url {
    let mut u = cfg.url.clone();
    u.set_path(&format!("/{database}"));
    u
}

pub async fn connect(
    cfg: &TargetConfig,
    password: Option<&Secret<String>>,
    database: &str,
) -> Result<PgConnection> {
    let mut opts = PgConnectOptions::from_str(url_for(cfg, database).as_str())
        .context("parse target URL")?
        .application_name("lifeboat-agent");
    if let Some(p) = password {
        opts = opts.password(p.expose());
    }
    let where_ = describe(cfg, database);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => match crate::dbhost::pg_tls_hint(&e.to_string()) {
            Some(hint) => Err(anyhow::Error::new(e)
                .context(format!("cannot connect to PostgreSQL at {where_}: {hint}"))),
            None => bail!(
                "cannot connect to PostgreSQL at {where_}: {e}; check that the server is up, the URL and the password file"
            ),
        },
        Err(_) => bail!(
            "cannot connect to PostgreSQL at {where_}: no answer within {}s; check the host, port and firewall",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// e.g. "15.19"
    pub version: String,
    pub version_num: i64,
    pub major: i64,
    pub system_identifier: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `pg_database_size` of the database: an upper estimate of the dump, used to size upload
    /// parts.
    pub size_bytes: u64,
}

pub async fn server_facts(conn: &mut PgConnection) -> Result<ServerFacts> {
    let row = sqlx::query(
        "SELECT current_setting('server_version') AS v,
                current_setting('server_version_num')::int8 AS n,
                pg_encoding_to_char(d.encoding) AS enc, d.datcollate::text AS coll,
                d.datctype::text AS ctype, pg_database_size(d.oid)::int8 AS size
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .context("read server version")?;
    let version: String = row.try_get("v")?;
    let version_num: i64 = row.try_get("n")?;
    // pg_control_system() needs elevated privileges on some servers; it is informative only.
    let system_identifier =
        sqlx::query_scalar::<_, String>("SELECT system_identifier::text FROM pg_control_system()")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_default();
    Ok(ServerFacts {
        version: version
            .split_whitespace()
            .next()
            .unwrap_or(&version)
            .to_owned(),
        version_num,
        major: version_num / 10000,
        system_identifier,
        encoding: row.try_get("enc")?,
        collate: row.try_get("coll")?,
        ctype: row.try_get("ctype")?,
        size_bytes: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
    })
}

/// Where a client tool comes from when it must be at least major version `min_major` (the
/// server's for pg_dump; the server's and the archive's for pg_restore): the configured
/// `pg_bin_dir`; else, of the installed `/usr/lib/postgresql/N/bin` that have the tool, the one
/// of that major, else the oldest newer one, else the newest (which is then too old, and
/// refused naming both versions); else PATH.
pub fn tool(cfg: &TargetConfig, name: &str, min_major: i64) -> PathBuf {
    if let Some(d) = &cfg.pg_bin_dir {
        return d.join(name);
    }
    let installed = installed_bin_dirs(Path::new("/usr/lib/postgresql"), name);
    match pick_bin_dir(&installed, min_major) {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    }
}

/// `(major, ROOT/major/bin)` for every `ROOT/N/bin` holding `tool`.
fn installed_bin_dirs(root: &Path, tool: &str) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<i64>().ok()?;
            let bin = e.path().join("bin");
            bin.join(tool).is_file().then_some((major, bin))
        })
        .collect();
    out.sort();
    out
}

fn pick_bin_dir(installed: &[(i64, PathBuf)], server_major: i64) -> Option<PathBuf> {
    installed
        .iter()
        .find(|(m, _)| *m == server_major)
        .or_else(|| installed.iter().find(|(m, _)| *m > server_major))
        .or_else(|| installed.last())
        .map(|(_, p)| p.clone())
}

/// Runs `TOOL --version` and returns ("15.19", 15).
pub async fn tool_version(path: &Path) -> Result<(String, i64)> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        crate::process::tool_command(path).arg("--version").output(),
    )
    .await
    .with_context(|| format!("{} --version did not answer", path.display()))?
    .with_context(|| {
        format!(
            "cannot run {}; install the PostgreSQL client tools or set pg_bin_dir",
            path.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_tool_version(&text).with_context(|| {
        format!(
            "cannot read the version of {} from {:?}",
            path.display(),
            text.trim()
        )
    })
}

/// "pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)" → ("15.19", 15)
pub fn parse_tool_version(text: &str) -> Option<(String, i64)> {
    let after = text.split(')').nth(1)?.split_whitespace().next()?;
    let major = after.split('.').next()?.parse::<i64>().ok()?;
    // Before 10, the major version was two parts (9.6).
    Some((after.to_owned(), major))
}

/// Refuses a client tool older than the server (D16).
pub fn check_tool_major(
    tool: &str,
    tool_version: &str,
    tool_major: i64,
    server: &ServerFacts,
) -> Result<()> {
    if tool_major < server.major {
        bail!(
            "{tool} {tool_version} is older than the server (PostgreSQL {}); a dump needs {tool} {} or newer: install the PostgreSQL {} client tools or set pg_bin_dir",
            server.version,
            server.major,
            server.major
        );
    }
    Ok(())
}

/// A 0600 passfile for one child process, removed on drop. The password never appears in
/// argv or in the child's environment; only the file's path does (`PGPASSFILE`).
#[derive(Debug)]
pub struct PassFile {
    file: tempfile::TempPath,
}

impl PassFile {
    pub fn create(state_dir: &Path, password: &Secret<String>) -> Result<Self> {
        use std::io::Write;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("create state_dir {}", state_dir.display()))?;
        let mut f = tempfile::Builder::new()
            .prefix(".pgpass-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(state_dir)
            .with_context(|| format!("create a password file in {}", state_dir.display()))?;
        // hostname:port:database:username:password — escape ':' and '\' in the password.
        let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
        writeln!(f, "*:*:*:*:{escaped}").context("write password file")?;
        f.flush().context("write password file")?;
        Ok(Self {
            file: f.into_temp_path(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Environment for a libpq child: only allow-listed variables
/// ([`crate::process::tool_command`]), so no inherited `PG*` variable can redirect it and no
/// cloud credential reaches it.
pub fn child_command(program: &Path, passfile: Option<&PassFile>) -> tokio::process::Command {
    let mut cmd = crate::process::tool_command(program);
    match passfile {
        Some(p) => cmd.env("PGPASSFILE", p.path()),
        None => cmd.env("PGPASSFILE", "/dev/null"),
    };
    cmd.env("PGAPPNAME", "lifeboat-agent");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Starts a repeatable-read, read-only transaction and exports its snapshot for pg_dump.
pub async fn export_snapshot(conn: &mut PgConnection) -> Result<String> {
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await
        .context("begin snapshot transaction")?;
    sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .context("export snapshot (needs PostgreSQL 9.2+, not a standby in recovery before 10)")
}

/// The user tables whose rows pg_dump dumps: ordinary tables and partitions, not partitioned
/// parents (their rows are their partitions'), not extension members, not temp tables.
const TABLES_SQL: &str = "
    SELECT n.nspname AS schema, c.relname AS name,
           greatest(c.reltuples, 0)::int8 AS est, pg_total_relation_size(c.oid) AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2";

/// Per-table row counts: exact (`count(*)`, in the connection's current snapshot) or the
/// planner's estimate.
pub async fn row_counts(conn: &mut PgConnection, exact: bool) -> Result<Vec<TableRows>> {
    let mut tables = table_list(conn).await?;
    if exact {
        for t in &mut tables {
            t.rows = count_rows(conn, &t.schema, &t.table).await?;
        }
    }
    Ok(tables)
}

/// The tables whose rows a manifest records, with the planner's estimate as `rows`.
pub async fn table_list(conn: &mut PgConnection) -> Result<Vec<TableRows>> {
    let tables = sqlx::query(TABLES_SQL)
        .fetch_all(&mut *conn)
        .await
        .context("list tables")?;
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let bytes: i64 = t.try_get("bytes")?;
        out.push(TableRows {
            schema: t.try_get("schema")?,
            table: t.try_get("name")?,
            rows: t.try_get("est")?,
            bytes: u64::try_from(bytes).ok(),
        });
    }
    Ok(out)
}

/// `count(*)` of one table, in the connection's current snapshot.
pub async fn count_rows(conn: &mut PgConnection, schema: &str, table: &str) -> Result<i64> {
    let q = format!("{}.{}", quote_ident(schema), quote_ident(table));
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT count(*) FROM {q}")))
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("count rows of {q}"))
}

/// Quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub async fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .context("look up database")?
            > 0,
    )
}

pub async fn is_template(conn: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar::<_, bool>(
        "SELECT coalesce(bool_or(datistemplate), false) FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .context("look up database")
}

/// Whether a database has any user object (tables, views, sequences, functions, types in
/// non-system schemas, or large objects).
pub async fn database_is_empty(conn: &mut PgConnection) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog','information_schema')
                   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%')
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname NOT IN ('pg_catalog','information_schema'))
              + (SELECT count(*) FROM pg_largeobject_metadata)",
    )
    .fetch_one(&mut *conn)
    .await
    .context("inspect database contents")?;
    Ok(n == 0)
}

pub async fn create_database(
    conn: &mut PgConnection,
    name: &str,
    like: &crate::manifest::ServerInfo,
) -> Result<()> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if !like.encoding.is_empty() {
        sql.push_str(&format!(" ENCODING {}", quote_literal(&like.encoding)));
    }
    if !like.collate.is_empty() {
        sql.push_str(&format!(" LC_COLLATE {}", quote_literal(&like.collate)));
    }
    if !like.ctype.is_empty() {
        sql.push_str(&format!(" LC_CTYPE {}", quote_literal(&like.ctype)));
    }
    // Identifiers are quoted with quote_ident, values with quote_literal.
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .with_context(|| {
            format!(
                "create database {name} (encoding {}, collation {}, ctype {})",
                like.encoding, like.collate, like.ctype
            )
        })?;
    Ok(())
}

pub async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    )))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("drop database {name}"))?;
    Ok(())
}

pub async fn rename_database(conn: &mut PgConnection, from: &str, to: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    )))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("rename database {from} to {to}"))?;
    Ok(())
}

/// The connected user, and whether it may create databases (CREATEDB or superuser).
pub async fn can_create_databases(conn: &mut PgConnection) -> Result<(String, bool)> {
    sqlx::query_as(
        "SELECT current_user::text, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .context("read this user's privileges")
}

pub async fn connection_count(conn: &mut PgConnection, database: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(&mut *conn)
    .await
    .context("count connections")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n"),
            Some(("15.19".into(), 15))
        );
        assert_eq!(
            parse_tool_version("pg_restore (PostgreSQL) 17.2\n"),
            Some(("17.2".into(), 17))
        );
        assert_eq!(parse_tool_version("garbage"), None);
    }

    #[test]
    fn old_tool_is_refused_naming_both_versions() {
        let server = ServerFacts {
            version: "15.19".into(),
            version_num: 150019,
            major: 15,
            system_identifier: String::new(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            size_bytes: 0,
        };
        let e = check_tool_major("pg_dump", "13.4", 13, &server)
            .expect_err("old tool accepted")
            .to_string();
        assert!(e.contains("13.4") && e.contains("15.19"), "{e}");
        check_tool_major("pg_dump", "16.1", 16, &server).expect("newer tool is fine");
    }

    #[test]
    fn passfile_is_private_and_escaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = PassFile::create(dir.path(), &Secret::new("a:b\\c".to_string())).expect("create");
        let mode = std::fs::metadata(p.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(p.path()).expect("read"),
            "*:*:*:*:a\\:b\\\\c\n"
        );
        let path = p.path().to_owned();
        drop(p);
        assert!(!path.exists(), "passfile left behind");
    }

    #[test]
    fn the_tools_of_the_servers_major_are_picked() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (major, tool) in [
            ("13", "pg_dump"),
            ("15", "pg_dump"),
            ("17", "pg_dump"),
            ("16", "psql"),
        ] {
            let bin = dir.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(bin.join(tool), "").expect("write");
        }
        std::fs::create_dir_all(dir.path().join("notaversion/bin")).expect("mkdir");
        let installed = installed_bin_dirs(dir.path(), "pg_dump");
        let majors: Vec<i64> = installed.iter().map(|(m, _)| *m).collect();
        assert_eq!(majors, [13, 15, 17]);
        let pick = |server| {
            pick_bin_dir(&installed, server)
                .and_then(|p| p.parent()?.file_name()?.to_str().map(str::to_owned))
        };
        assert_eq!(pick(15).as_deref(), Some("15"), "the server's own major");
        assert_eq!(pick(16).as_deref(), Some("17"), "the oldest newer one");
        assert_eq!(pick(12).as_deref(), Some("13"));
        // Only older tools: the newest, which check_tool_major then refuses by name.
        assert_eq!(pick(18).as_deref(), Some("17"));
        assert_eq!(pick_bin_dir(&[], 15), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
