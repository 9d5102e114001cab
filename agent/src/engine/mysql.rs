//! MySQL and MariaDB (and MySQL on Vitess, e.g. PlanetScale): connections, server facts, the
//! dump and restore client tools, and the SQL the agent runs itself (row counts, database
//! create/drop).
//!
//! The pieces, in the order a backup uses them:
//! - [`ConnParams::from_url`]: `mysql://USER@HOST:PORT/DB?ssl-mode=…&ssl-ca=…` → parameters.
//! - [`connect`] (sqlx) → [`server_facts`]: version, flavour (MariaDB / MySQL / Vitess),
//!   character set and collation, size.
//! - [`find_dump_tool`] + [`ClientTool::probe`]: which `mariadb-dump`/`mysqldump`, its version
//!   and the options it knows; [`check_client`] refuses an unsuitable one naming both versions.
//! - [`DefaultsFile::create`]: a 0600 option file with user, password, host, port and TLS,
//!   removed on drop; it is always the first argument (`--defaults-extra-file=`).
//! - [`dump_args`] / [`child_command`]: the exact command line (never a secret in it).
//! - [`stream::CheckedDumpReader`]: header and `-- Dump completed` trailer check plus exact
//!   per-table row counts from the dump stream itself (the dump's own snapshot).
//! - [`row_counts`]: `COUNT(*)` in the agent's own consistent snapshot, or estimates.
//!
//! Restore: [`find_client_tool`], [`restore_args`], [`create_database`], and [`swap`] for moving
//! a verified scratch database into place (MySQL has no `RENAME DATABASE`; see
//! docs/adr/0007-mysql-restore-swap.md).
//!
//! Wiring into the jobs mirrors PostgreSQL:
//! - backup: `connect` → `server_facts` (+ `provider::check_connection`, `check_client`,
//!   `non_transactional_tables` for a warning) → `DefaultsFile::create` → `dump_command` with
//!   `provider::dump_args` as `provider_args` → wrap the child's stdout in
//!   [`stream::CheckedDumpReader`] and hand it to `pipeline::compress` with [`MAGIC`] (empty) →
//!   after the child exits, [`dump_verdict`] with the reader's [`stream::InspectHandle`]; its
//!   `DumpSummary::table_rows()` are the manifest's row counts, kind [`RowCountKind::Exact`].
//!   Manifest: `server` from [`ServerFacts::server_info`], `format` [`FORMAT`], tool
//!   `ClientTool::name` / `version`.
//! - restore: [`backup_origin`] + [`check_restore_source`] → `create_database(scratch, …)` →
//!   `restore_command` (client commands off: [`restore_args`]) fed by `pipeline::decompress`
//!   (wrap its output in [`stream::SandboxLineFilter`] when [`ClientTool::needs_sandbox_filter`])
//!   → `row_counts(scratch, exact)` compared with the manifest when
//!   [`RowCountKind::restore_must_match`] → [`swap::swap_in`] → drop scratch and `old`. Without
//!   `CREATE DATABASE` (PlanetScale): load into the empty destination; for `--clean`, prove the
//!   whole archive first ([`stream::InspectingWriter`] behind `pipeline::decompress`), then
//!   [`swap::empty_database`].
//! - start-up: remove stale option files ([`DEFAULTS_FILE_PREFIX`]) like stale passfiles.

pub mod accounts;
mod conn;
mod counts;
pub mod globals;
pub mod objects;
pub mod stream;
pub mod swap;
pub mod table_filter;
mod tools;

pub use counts::{row_counts, table_sizes};

pub use conn::*;
pub use tools::*;

use std::{path::Path, process::Stdio};

use anyhow::{Context, Result, bail};
use sqlx::{AssertSqlSafe, Row, mysql::MySqlConnection};

pub const DEFAULT_PORT: u16 = 3306;
/// Prefix of the option files in the state dir (stale ones may be removed at start-up).
pub const DEFAULTS_FILE_PREFIX: &str = ".lifeboat-my-";
/// The system CA bundle, used to verify managed providers' public certificates when no
/// `ssl-ca` is configured.
pub use crate::dbhost::SYSTEM_CA_BUNDLE;
/// Largest statement the dump tool may receive (mysqldump's extended INSERTs, big BLOBs).
pub const MAX_ALLOWED_PACKET: &str = "1G";
/// Databases that are never backed up or restored into.
pub const SYSTEM_DATABASES: [&str; 4] =
    ["mysql", "information_schema", "performance_schema", "sys"];

/// Which server software answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFlavor {
    MariaDb,
    MySql,
    /// MySQL-compatible Vitess (PlanetScale): no LOCK TABLES, per-query row limits.
    Vitess,
}

impl ServerFlavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MariaDb => "mariadb",
            Self::MySql => "mysql",
            Self::Vitess => "vitess",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mariadb" => Self::MariaDb,
            "mysql" => Self::MySql,
            "vitess" => Self::Vitess,
            _ => return None,
        })
    }

    /// MySQL proper or MySQL-compatible Vitess (both speak MySQL 8 dialect and GTIDs).
    pub fn is_mysql_family(self) -> bool {
        matches!(self, Self::MySql | Self::Vitess)
    }

    pub(crate) fn product(self) -> &'static str {
        match self {
            Self::MariaDb => "MariaDB",
            Self::MySql => "MySQL",
            Self::Vitess => "MySQL (Vitess)",
        }
    }
}

/// `major.minor.patch`, comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Reads the leading `X.Y[.Z]` of `s` (`10.11.19-MariaDB-0+deb12u1` → 10.11.19).
    pub fn parse_prefix(s: &str) -> Option<Self> {
        let s = s.trim();
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let mut parts = s[..end].split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// The release series: 10.11, 8.0, 8.4.
    pub fn series(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Flavour and version from `SELECT VERSION(), @@version_comment`.
pub fn parse_server_version(version: &str, comment: &str) -> Option<(ServerFlavor, Version)> {
    let v = Version::parse_prefix(version)?;
    let all = format!("{version} {comment}").to_ascii_lowercase();
    let flavor = if all.contains("mariadb") {
        ServerFlavor::MariaDb
    } else if all.contains("vitess") || all.contains("planetscale") {
        ServerFlavor::Vitess
    } else {
        ServerFlavor::MySql
    };
    Some((flavor, v))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// As the server reports it: `10.11.19-MariaDB-0+deb12u1`, `8.0.36`, `8.0.34-Vitess`.
    pub version_string: String,
    pub version: Version,
    pub flavor: ServerFlavor,
    pub version_comment: String,
    /// The database's default character set and collation.
    pub character_set: String,
    pub collation: String,
    /// `@@server_uuid` on MySQL, `@@server_id` elsewhere: informative identity.
    pub server_identity: String,
    /// `@@gtid_mode` on MySQL (`ON`, `OFF`, …); `None` where it does not exist.
    pub gtid_mode: Option<String>,
    pub lower_case_table_names: i64,
    /// Data + index bytes of the database (information_schema; approximate for InnoDB): an
    /// estimate of the dump's size, e.g. to size upload parts.
    pub size_bytes: u64,
}

impl ServerFacts {
    /// `MariaDB 10.11.19` / `MySQL 8.0.36`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.flavor.product(), self.version)
    }

    /// MySQL's own numeric form: 10.11.19 → 101119, 8.0.36 → 80036.
    pub fn version_num(&self) -> i64 {
        i64::from(self.version.major) * 10_000
            + i64::from(self.version.minor) * 100
            + i64::from(self.version.patch)
    }

    /// The manifest's `server` section. `version` keeps the server's full version string
    /// (with `-MariaDB` / `-Vitess`), from which [`backup_origin`] recovers the flavour;
    /// `encoding`/`collate` are the database's default character set and collation.
    pub fn server_info(&self) -> crate::manifest::ServerInfo {
        crate::manifest::ServerInfo {
            version: self.version_string.clone(),
            version_num: self.version_num(),
            system_identifier: self.server_identity.clone(),
            encoding: self.character_set.clone(),
            collate: self.collation.clone(),
            ctype: String::new(),
        }
    }
}

/// The flavour and version a backup was taken from, read back from its manifest's `server`
/// section (see [`ServerFacts::server_info`]); `provider` disambiguates PlanetScale.
pub fn backup_origin(
    server: &crate::manifest::ServerInfo,
    provider: &str,
) -> Option<(ServerFlavor, Version)> {
    let comment = if provider == "planetscale" {
        "planetscale"
    } else {
        ""
    };
    parse_server_version(&server.version, comment)
}

/// The data object of a MySQL/MariaDB backup: the plain SQL dump, zstd-compressed.
pub const DATA_FILE: &str = "data.sql.zst";

/// `format` in the manifest of a MySQL/MariaDB backup: plain SQL from mysqldump/mariadb-dump.
pub const FORMAT: &str = "mysqldump-sql";
/// The magic the pipeline checks at the start of the stream: none (a dump may start with
/// `--` or MariaDB's sandbox line; [`stream::CheckedDumpReader`] checks the header instead).
pub const MAGIC: &[u8] = b"";

async fn text_scalar(conn: &mut MySqlConnection, sql: &'static str) -> Result<String> {
    let row = sqlx::query(sql).fetch_one(&mut *conn).await?;
    text_at(&row, 0)
}

/// A text column, whatever its collation says (some servers return metadata as binary).
pub(crate) fn text_at(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<String> {
    if let Ok(s) = row.try_get::<Option<String>, _>(i) {
        return Ok(s.unwrap_or_default());
    }
    let b: Option<Vec<u8>> = row.try_get(i).context("read a text column")?;
    Ok(String::from_utf8_lossy(&b.unwrap_or_default()).into_owned())
}

/// What the server is, and, with `database`, that database's character set, collation and
/// size (the database must exist then). A restore passes `None`: its destination may not exist
/// yet, and the backup's manifest says what character set to create.
pub async fn server_facts(
    conn: &mut MySqlConnection,
    database: Option<&str>,
) -> Result<ServerFacts> {
    let row = sqlx::query("SELECT VERSION(), CAST(@@version_comment AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .context("read server version")?;
    let version_string = text_at(&row, 0)?;
    let version_comment = text_at(&row, 1)?;
    let (flavor, version) = parse_server_version(&version_string, &version_comment)
        .with_context(|| format!("cannot read the server version from {version_string:?}"))?;
    let (character_set, collation, size_bytes) = match database {
        Some(database) => {
            let cs = sqlx::query(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            )
            .bind(database)
            .fetch_optional(&mut *conn)
            .await
            .context("read the database's character set")?;
            let (character_set, collation) = match cs {
                Some(r) => (text_at(&r, 0)?, text_at(&r, 1)?),
                None => bail!(
                    "database {database} does not exist on {} (or this user cannot see it)",
                    version_string
                ),
            };
            let size_bytes: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS SIGNED)
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            )
            .bind(database)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(0);
            (character_set, collation, size_bytes)
        }
        None => (String::new(), String::new(), 0),
    };
    let (server_identity, gtid_mode) = if flavor == ServerFlavor::MySql {
        (
            text_scalar(conn, "SELECT CAST(@@server_uuid AS CHAR)")
                .await
                .unwrap_or_default(),
            text_scalar(conn, "SELECT CAST(@@GLOBAL.gtid_mode AS CHAR)")
                .await
                .ok(),
        )
    } else {
        (
            text_scalar(conn, "SELECT CAST(@@server_id AS CHAR)")
                .await
                .unwrap_or_default(),
            None,
        )
    };
    let lower_case_table_names =
        sqlx::query_scalar::<_, i64>("SELECT CAST(@@lower_case_table_names AS SIGNED)")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(0);
    Ok(ServerFacts {
        version_string,
        version,
        flavor,
        version_comment,
        character_set,
        collation,
        server_identity,
        gtid_mode,
        lower_case_table_names,
        size_bytes: u64::try_from(size_bytes).unwrap_or(0),
    })
}

/// What a dump needs to know about the server and the tool.
#[derive(Debug, Clone)]
pub struct DumpPlan<'a> {
    pub tool: &'a ClientTool,
    pub server: &'a ServerFacts,
    pub database: &'a str,
    /// Extra options from the provider profile (see `provider::dump_args`), appended last.
    pub provider_args: &'a [String],
}

/// The engine's own dump options (everything after the option file and before the database).
///
/// - `--single-transaction`: one consistent InnoDB snapshot, no table locks;
///   `--skip-lock-tables` (implied, stated) and `--skip-add-locks` (no `LOCK TABLES` in the
///   output, which Vitess and some managed servers refuse on restore).
/// - `--quick`: rows are streamed, not buffered in the tool's memory.
/// - `--routines --events --triggers`: the whole database, not only tables.
/// - `--hex-blob`: binary columns as hex literals (survive any client character set).
/// - `--no-tablespaces`: no tablespace DDL (needs PROCESS and never portable).
/// - `--default-character-set=utf8mb4`: no lossy conversion of 4-byte characters.
/// - `--comments --dump-date`: keep the `-- Dump completed on …` trailer, whatever an option
///   file says; the trailer check relies on it.
/// - `--skip-add-drop-database`, no `--databases`: the dump carries no `CREATE DATABASE`/`USE`,
///   so a restore chooses the database it loads into.
/// - `--set-gtid-purged=OFF` for MySQL tools on MySQL servers: no `SET @@GLOBAL.gtid_purged`
///   (it needs SUPER and breaks restores into servers with their own GTID history).
/// - `--column-statistics=0` for MySQL 8 tools (no histogram query; fails on older servers).
pub fn dump_args(plan: &DumpPlan<'_>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--single-transaction",
        "--skip-lock-tables",
        "--skip-add-locks",
        "--quick",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        "--comments",
        "--dump-date",
        "--skip-add-drop-database",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    a.push(format!("--max-allowed-packet={MAX_ALLOWED_PACKET}"));
    if plan.tool.flavor == ClientFlavor::MySql
        && plan.server.flavor.is_mysql_family()
        && plan.tool.supports("set-gtid-purged")
    {
        a.push("--set-gtid-purged=OFF".into());
    }
    if plan.tool.flavor == ClientFlavor::MySql
        && plan.tool.version.major >= 8
        && plan.tool.supports("column-statistics")
    {
        a.push("--column-statistics=0".into());
    }
    for p in plan.provider_args {
        if !a.contains(p) {
            a.push(p.clone());
        }
    }
    a
}

/// The full dump command line: the option file first, the engine's and provider's options,
/// then `--` and the database name (no `--databases`: see [`dump_args`]).
pub fn dump_command(
    plan: &DumpPlan<'_>,
    defaults: &DefaultsFile,
    state_dir: &Path,
) -> tokio::process::Command {
    let mut cmd = child_command(&plan.tool.path, state_dir);
    cmd.arg(defaults.arg())
        .args(dump_args(plan))
        .arg("--")
        .arg(plan.database)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The verdict on a finished dump (D14, D15), in the order that gives the truest reason: a
/// non-zero exit first (with the tool's stderr tail: "Access denied", "Lost connection"…), then
/// the stream checks (no output, not a dump, no completion trailer).
///
/// `inspected` is what the [`stream::InspectHandle`] holds after the pipeline ended (`None` if
/// the stream was not read to its end, e.g. the upload failed first).
pub fn dump_verdict(
    tool: &str,
    status: &std::process::ExitStatus,
    stderr_tail: &str,
    inspected: Option<std::result::Result<stream::DumpSummary, stream::DumpFormatError>>,
) -> Result<stream::DumpSummary> {
    let said = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("; {tool} said: {s}")
        }
    };
    if !status.success() {
        bail!(
            "{tool} failed ({}): {}",
            crate::process::describe_status(status),
            if stderr_tail.is_empty() {
                "no error output"
            } else {
                stderr_tail
            }
        );
    }
    match inspected {
        Some(Ok(summary)) => Ok(summary),
        Some(Err(e)) => bail!("{e}; {tool} exited 0{}", said(stderr_tail)),
        None => bail!(
            "the output of {tool} was not read to its end, so it cannot be called complete{}",
            said(stderr_tail)
        ),
    }
}

/// The smallest `--max-allowed-packet` a restore client gets: the client's own default.
pub const RESTORE_MIN_PACKET: u64 = 16 << 20;
/// The largest: what the dump tool was allowed ([`MAX_ALLOWED_PACKET`], also the protocol's
/// limit), so no statement a dump can hold is refused.
pub const RESTORE_MAX_PACKET: u64 = 1 << 30;

/// The restore client's packet limit for a dump of `dump_bytes` (the backup's recorded raw
/// size): no statement is longer than the whole dump, so the client never needs more, and a
/// small backup cannot make it reserve a 1 GiB buffer (L11). Rounded up to whole MiB, within
/// [`RESTORE_MIN_PACKET`]..=[`RESTORE_MAX_PACKET`].
pub fn restore_max_allowed_packet(dump_bytes: u64) -> u64 {
    dump_bytes
        .saturating_add((1 << 20) - 1)
        .div_euclid(1 << 20)
        .saturating_mul(1 << 20)
        .clamp(RESTORE_MIN_PACKET, RESTORE_MAX_PACKET)
}

/// The SQL client's options for loading a dump of `dump_bytes` from stdin into `database`:
///
/// - `--binary-mode`: the input is data. The client runs none of its own commands from it
///   (`\!`/`system`, `tee`, `source`, …): a backup stream is never a script for the agent host
///   (H1). `DELIMITER` and `\C` still work, as dumps need.
/// - `--sandbox` where the client knows it (MariaDB 10.5.25/10.6.18/10.11.8 and later): file
///   and shell commands are refused even if one got through, whatever the stream's first line.
/// - `--system-command=OFF` for MySQL clients that know it (8.0.40 and later): no shell.
/// - `--batch` (no prompts or tables), `--skip-reconnect` (a reconnect would carry on in a new
///   session without the dump's `SET` state: a failed connection must fail the restore),
///   `--default-character-set=utf8mb4`, a packet limit from
///   [`restore_max_allowed_packet`], and no `--force` (the first error stops it).
pub fn restore_args(client: &ClientTool, database: &str, dump_bytes: u64) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--batch".into(),
        "--binary-mode".into(),
        "--skip-reconnect".into(),
    ];
    if client.supports("sandbox") {
        a.push("--sandbox".into());
    }
    if client.flavor == ClientFlavor::MySql && client.supports("system-command") {
        a.push("--system-command=OFF".into());
    }
    a.extend([
        "--default-character-set=utf8mb4".into(),
        format!(
            "--max-allowed-packet={}",
            restore_max_allowed_packet(dump_bytes)
        ),
        format!("--database={database}"),
    ]);
    a
}

/// The full restore command: the option file first, then [`restore_args`]; SQL on stdin.
pub fn restore_command(
    client: &ClientTool,
    defaults: &DefaultsFile,
    state_dir: &Path,
    database: &str,
    dump_bytes: u64,
) -> tokio::process::Command {
    let mut cmd = child_command(&client.path, state_dir);
    cmd.arg(defaults.arg())
        .args(restore_args(client, database, dump_bytes))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// What the per-table row counts in a manifest mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowCountKind {
    /// Counted from the dump stream itself: the dump's own snapshot, exactly what a restore
    /// produces. A restore compares against them.
    Exact,
    /// `COUNT(*)` in a consistent snapshot the agent opened right before the dump. Another
    /// snapshot than the dump's: on a database being written they can differ from the dump.
    ExactOwnSnapshot,
    /// `information_schema.TABLES.TABLE_ROWS`: InnoDB's estimate, often off by tens of percent.
    Estimate,
    Off,
}

impl RowCountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::ExactOwnSnapshot => "exact-own-snapshot",
            Self::Estimate => "estimate",
            Self::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "exact" => Self::Exact,
            "exact-own-snapshot" => Self::ExactOwnSnapshot,
            "estimate" => Self::Estimate,
            "off" => Self::Off,
            _ => return None,
        })
    }

    /// Whether a restore must reproduce these counts exactly.
    pub fn restore_must_match(self) -> bool {
        self == Self::Exact
    }
}

/// Opens a read-only, repeatable-read transaction with a consistent InnoDB snapshot.
pub async fn begin_consistent_snapshot(conn: &mut MySqlConnection) -> Result<()> {
    sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await
        .context("set isolation level")?;
    sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await
        .context("start a consistent snapshot")?;
    Ok(())
}

/// Base tables (and system-versioned tables) of `database`, sorted.
pub async fn list_tables(conn: &mut MySqlConnection, database: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT TABLE_NAME FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
         ORDER BY TABLE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("list tables")?;
    rows.iter().map(|r| text_at(r, 0)).collect()
}

/// Everything `RENAME TABLE` moves: base tables, system-versioned tables and sequences.
pub async fn list_tables_and_sequences(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT TABLE_NAME FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')
         ORDER BY TABLE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("list tables")?;
    rows.iter().map(|r| text_at(r, 0)).collect()
}

/// Tables whose storage engine has no transactions (MyISAM, Aria, MEMORY, CSV, …), with their
/// engine. `--single-transaction` gives a consistent snapshot of InnoDB tables only: these are
/// dumped as they are at the moment each is read, and a backup job should say so.
pub async fn non_transactional_tables(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT TABLE_NAME, COALESCE(ENGINE, '') FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
           AND COALESCE(ENGINE, '') NOT IN ('InnoDB', 'ROCKSDB', 'TokuDB', 'ndbcluster', '')
         ORDER BY TABLE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context("list table engines")?;
    rows.iter()
        .map(|r| Ok((text_at(r, 0)?, text_at(r, 1)?)))
        .collect()
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal; safe whether or not `NO_BACKSLASH_ESCAPES` is set (no backslash
/// or quote survives unescaped, and a backslash is refused rather than guessed at).
pub fn quote_literal(s: &str) -> Result<String> {
    if s.contains('\\') || s.contains('\0') {
        bail!("refusing a value with a backslash or NUL in SQL: {s:?}");
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// Only letters, digits and `_`: character set and collation names.
fn check_word(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("invalid {what} {s:?}");
    }
    Ok(())
}

pub async fn database_exists(conn: &mut MySqlConnection, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .context("look up database")?
        > 0)
}

/// Whether a database holds no tables, views, routines, events or triggers.
pub async fn database_is_empty(conn: &mut MySqlConnection, name: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST((SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?)
              + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?)
              + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?)
              + (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?) AS SIGNED)",
    )
    .bind(name)
    .bind(name)
    .bind(name)
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .context("inspect database contents")?;
    Ok(n == 0)
}

/// `CREATE DATABASE` with the backup's default character set and collation.
pub async fn create_database(
    conn: &mut MySqlConnection,
    name: &str,
    character_set: &str,
    collation: &str,
) -> Result<()> {
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if !character_set.is_empty() {
        check_word("character set", character_set)?;
        sql.push_str(&format!(" CHARACTER SET {character_set}"));
    }
    if !collation.is_empty() {
        check_word("collation", collation)?;
        sql.push_str(&format!(" COLLATE {collation}"));
    }
    // Identifier quoted, charset and collation checked to be plain words.
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .with_context(|| {
            format!("create database {name} (character set {character_set}, collation {collation})")
        })?;
    Ok(())
}

pub async fn drop_database(conn: &mut MySqlConnection, name: &str) -> Result<()> {
    if SYSTEM_DATABASES.contains(&name.to_ascii_lowercase().as_str()) {
        bail!("refusing to drop the system database {name}");
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {}",
        quote_ident(name)
    )))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("drop database {name}"))?;
    Ok(())
}

/// Other sessions using `database` (only those this user may see: PROCESS shows all).
pub async fn connection_count(conn: &mut MySqlConnection, database: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED) FROM information_schema.PROCESSLIST
         WHERE DB = ? AND ID <> CONNECTION_ID()",
    )
    .bind(database)
    .fetch_one(&mut *conn)
    .await
    .context("count connections")
}

#[cfg(test)]
mod tests;
