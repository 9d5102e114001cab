//! The catalog: agents, targets, jobs and backups. The only module with SQL.
//!
//! Two backends behind one API that speaks domain types only: SQLite (one file, WAL, foreign
//! keys) and PostgreSQL (ADR 0035). Both run the same SQL through sqlx's `Any` driver: `$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, integers as `BIGINT`, flags as 0/1 integers.
//! Each backend has its own migrations, numbered alike; the same test suite runs on both.

mod agents;
mod alerts;
mod audit;
mod backups;
mod copies;
mod drills;
pub mod health;
mod history;
mod jobs;
pub mod keys;
mod leader;
mod migrate;
#[cfg(test)]
mod monitoring_tests;
mod rebuild;
mod retention;
mod schedules;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

mod open;

use sqlx::{
    AnyPool, SqlSafeStr,
    any::AnyRow,
    migrate::{Migration, MigrationType, Migrator},
};

pub use leader::{CatalogLock, JOBS_CHANNEL, LockLost};
pub use migrate::TableCopied;
pub use open::{Backend, PostgresCatalog, PostgresTls};

pub use agents::TargetConflict;
pub use copies::{InsertCopy, MarkCopyDelete};
pub use history::HistoryPruned;
pub use jobs::InsertJob;
pub use retention::{MarkDelete, Pin, PinOutcome};
pub use schedules::TickOutcome;

/// A catalog failure. Callers branch on `is_retryable()`.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog could not be opened; `detail` says why and, where it can tell, what to do.
    #[error("open catalog {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("apply catalog migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("catalog query: {0}")]
    Query(#[from] sqlx::Error),
    /// A row holds a value the code cannot represent (hand-edited database, newer schema).
    #[error("catalog holds an invalid value: {0}")]
    Corrupt(String),
    /// A value from the caller cannot be stored (e.g. a size beyond the column's range).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// A newer release migrated the catalog beyond what this binary knows.
    #[error("{0}")]
    Newer(String),
}

impl CatalogError {
    /// Busy database, exhausted pool, a lost connection or (PostgreSQL) a transaction that
    /// lost a serialization race: the same operation may work a moment later.
    pub fn is_retryable(&self) -> bool {
        match self {
            CatalogError::Query(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => true,
            CatalogError::Query(sqlx::Error::Database(db)) => {
                let code = db.code();
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    // Serialization failure and deadlock (class 40), lock not available, too
                    // many connections, the server shutting down or starting.
                    return code.is_some_and(|c| {
                        c.starts_with("40")
                            || matches!(&*c, "55P03" | "53300" | "57P01" | "57P02" | "57P03")
                    });
                }
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including their extended codes.
                let primary = code.and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
                matches!(primary, Some(5 | 6))
            }
            CatalogError::Query(_)
            | CatalogError::Open { .. }
            | CatalogError::Migrate(_)
            | CatalogError::Corrupt(_)
            | CatalogError::OutOfRange(_)
            | CatalogError::Newer(_) => false,
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The SQLite catalog's schema, embedded in the binary.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0001_initial.sql").into_sql_str(),
            false,
        ),
        // Outside sqlx's transaction: it rebuilds the jobs table with foreign keys off, in its
        // own transaction (see the file).
        Migration::new(
            2,
            "schedules retention".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0002_schedules_retention.sql").into_sql_str(),
            true,
        ),
        Migration::new(
            3,
            "alerts".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0003_alerts.sql").into_sql_str(),
            false,
        ),
        // Outside sqlx's transaction, like 2: it rebuilds the jobs table.
        Migration::new(
            4,
            "checks pins".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0004_checks_pins.sql").into_sql_str(),
            true,
        ),
        Migration::new(
            5,
            "rebuilt backups".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0005_rebuilt_backups.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "restore data dir".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0006_restore_data_dir.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "restore recovery".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0007_restore_recovery.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "backup wal start".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0008_backup_wal_start.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "restore start port".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0009_restore_start_port.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "schedule kinds".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0010_schedule_kinds.sql").into_sql_str(),
            false,
        ),
        // Outside sqlx's transaction, like 2: it rebuilds the jobs table (the kind export).
        Migration::new(
            11,
            "export jobs".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0011_export_jobs.sql").into_sql_str(),
            true,
        ),
        Migration::new(
            12,
            "partial restore".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0012_partial_restore.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "restore drills".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0013_restore_drills.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            "globals".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0014_globals.sql").into_sql_str(),
            false,
        ),
        // Outside sqlx's transaction, like 2: it rebuilds the jobs table.
        Migration::new(
            15,
            "copies".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0015_copies.sql").into_sql_str(),
            true,
        ),
        // Outside sqlx's transaction, like 2: it rebuilds the jobs table (the kind rotate_keys).
        Migration::new(
            16,
            "encryption".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0016_encryption.sql").into_sql_str(),
            true,
        ),
        Migration::new(
            17,
            "restore jobs".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0017_restore_jobs.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            18,
            "list pages".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0018_list_pages.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            19,
            "drill pages, cancel requests".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0019_pages_and_cancels.sql").into_sql_str(),
            false,
        ),
    ])
}

/// A list ordered newest first by `(time, id)`, paged by keyset.
struct Keyset<'a> {
    /// Selects the rows, `{filter}` where the conditions go; binds `$1` to the target, `$2`
    /// and `$3` to the cursor's position, `$4` to the limit.
    list: &'a str,
    /// Reads the cursor row's `(time, id)` (`$1`: its id).
    position: &'static str,
    /// The rows after the cursor's position.
    after: &'static str,
}

/// One page of `keyset`'s list after row `after`, with `filters` (constant fragments only).
/// A cursor that is not in the catalog gives no rows.
async fn keyset_page(
    pool: &AnyPool,
    keyset: &Keyset<'_>,
    mut filters: Vec<&'static str>,
    target: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<AnyRow>> {
    let (sql, position, cursor_filter) = (keyset.list, keyset.position, keyset.after);
    let from: Option<(i64, String)> = match after {
        None => None,
        Some(id) => match sqlx::query_as(position)
            .bind(id)
            .fetch_optional(pool)
            .await?
        {
            Some(at) => Some(at),
            None => return Ok(Vec::new()),
        },
    };
    if from.is_some() {
        filters.push(cursor_filter);
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let (at, id) = from.unzip();
    // Only constant fragments were assembled; every value is bound.
    Ok(
        sqlx::query(sqlx::AssertSqlSafe(sql.replace("{filter}", &filter)))
            .bind(target)
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?,
    )
}

/// A handle to the catalog; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

/// The key of the PostgreSQL transaction-level lock that writing transactions take first.
const WRITER_LOCK: i64 = 0x6c69_6665_7772; // "lifewr"

impl Catalog {
    /// Starts a transaction that reads, decides and writes. On PostgreSQL it first takes the
    /// catalog's writer lock (an advisory lock held until the transaction ends), so these
    /// transactions run one at a time as SQLite runs its writers, and at READ COMMITTED, so
    /// each statement sees what the writer before committed (a serializable snapshot would be
    /// taken before the lock is granted, and the writers would abort each other); reads are
    /// not held up.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin().await?),
            Backend::Postgres => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Which database holds this catalog.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for running queries and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| CatalogError::OutOfRange(format!("{what} {v}")))
}

fn to_u64(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| CatalogError::Corrupt(format!("{what} {v}")))
}

/// A 0/1 flag column (both backends store flags as integers).
fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    use sqlx::Row;
    match row.try_get::<i64, _>(column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(CatalogError::Corrupt(format!("{column} {other}"))),
    }
}

fn parse_enum<T>(what: &str, value: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(value).ok_or_else(|| CatalogError::Corrupt(format!("{what} {value:?}")))
}

/// A `target` column (`ENV/NAME`) as the typed name it was written from.
fn target_column(row: &AnyRow, what: &str) -> Result<lifeboat_common::names::TargetName> {
    use sqlx::Row;
    let text: String = row.try_get("target")?;
    text.parse()
        .map_err(|e| CatalogError::Corrupt(format!("{what}: {e}")))
}

/// A backup id column (`backup_id`), checked; a row that fails is corrupt.
fn id_column(row: &AnyRow, what: &str) -> Result<lifeboat_common::ids::BackupId> {
    use sqlx::Row;
    let text: String = row.try_get("backup_id")?;
    text.parse()
        .map_err(|e| CatalogError::Corrupt(format!("{what}: {e}")))
}
