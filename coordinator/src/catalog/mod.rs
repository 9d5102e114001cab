//! The catalog: agents, targets, jobs and backups. The only module with SQL.
//!
//! SQLite today (one file, WAL, foreign keys, migrations applied at open). The API is small
//! and speaks domain types only, so a PostgreSQL backend can be added behind it (turning
//! `Catalog` into an enum over backends) and run through the same tests.

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
#[cfg(test)]
mod monitoring_tests;
mod rebuild;
mod retention;
mod schedules;
#[cfg(test)]
mod tests;

use std::{path::Path, time::Duration};

use sqlx::{
    SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

pub use agents::TargetConflict;
pub use copies::{InsertCopy, MarkCopyDelete};
pub use history::HistoryPruned;
pub use jobs::InsertJob;
pub use retention::{MarkDelete, Pin, PinOutcome};
pub use schedules::TickOutcome;

/// A catalog failure. Callers branch on `is_retryable()`.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("open catalog {path}: {source}")]
    Open { path: String, source: sqlx::Error },
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
}

impl CatalogError {
    /// Busy database or exhausted pool: the same operation may work a moment later.
    pub fn is_retryable(&self) -> bool {
        match self {
            CatalogError::Query(sqlx::Error::PoolTimedOut) => true,
            CatalogError::Query(sqlx::Error::Database(db)) => {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including their extended codes.
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                matches!(primary, Some(5 | 6))
            }
            CatalogError::Query(_)
            | CatalogError::Open { .. }
            | CatalogError::Migrate(_)
            | CatalogError::Corrupt(_)
            | CatalogError::OutOfRange(_) => false,
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The catalog's schema, embedded in the binary.
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
    ])
}

/// A list ordered newest first by `(time, id)`, paged by keyset.
struct Keyset {
    /// Selects the rows, `{filter}` where the conditions go; binds `?1` to the target, `?2`
    /// and `?3` to the cursor's position, `?4` to the limit.
    list: &'static str,
    /// Reads the cursor row's `(time, id)` (`?1`: its id).
    position: &'static str,
    /// The rows after the cursor's position.
    after: &'static str,
}

/// One page of `keyset`'s list after row `after`, with `filters` (constant fragments only).
/// A cursor that is not in the catalog gives no rows.
async fn keyset_page(
    pool: &SqlitePool,
    keyset: &Keyset,
    mut filters: Vec<&'static str>,
    target: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
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
    pool: SqlitePool,
}

impl Catalog {
    /// Opens (creating if missing) the SQLite catalog at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A job result is acknowledged only once it is durable.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|source| CatalogError::Open {
                path: path.display().to_string(),
                source,
            })?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
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

fn parse_enum<T>(what: &str, value: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(value).ok_or_else(|| CatalogError::Corrupt(format!("{what} {value:?}")))
}

/// A `target` column (`ENV/NAME`) as the typed name it was written from.
fn target_column(
    row: &sqlx::sqlite::SqliteRow,
    what: &str,
) -> Result<lifeboat_common::names::TargetName> {
    use sqlx::Row;
    let text: String = row.try_get("target")?;
    text.parse()
        .map_err(|e| CatalogError::Corrupt(format!("{what}: {e}")))
}

/// A backup id column (`backup_id`), checked; a row that fails is corrupt.
fn id_column(row: &sqlx::sqlite::SqliteRow, what: &str) -> Result<lifeboat_common::ids::BackupId> {
    use sqlx::Row;
    let text: String = row.try_get("backup_id")?;
    text.parse()
        .map_err(|e| CatalogError::Corrupt(format!("{what}: {e}")))
}
