//! One active coordinator per PostgreSQL catalog: a session-level advisory lock held on a
//! connection of its own. A second coordinator started on the same catalog waits (standby)
//! until the lock is free: when the active one stops, dies or loses the database. The holder
//! checks its lock connection every second and gives up (stops serving) as soon as that check
//! fails, so two coordinators never act on one catalog at once (ADR 0036).

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, Executor, postgres::PgConnectOptions};

use super::{PostgresCatalog, Result};

/// The advisory lock's key (in the catalog's database): "lifebt" in ASCII.
const LOCK_KEY: i64 = 0x6c69_6665_6274;
/// How often a standby tries the lock, and the holder checks it.
const POLL: Duration = Duration::from_secs(1);
/// A check that takes longer than this counts as a lost connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// A standby that got the lock waits this long before acting: the previous holder notices
/// its loss within POLL + CHECK_TIMEOUT and exits at once.
const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

/// The held lock. Dropping it closes the connection, which releases the lock.
pub struct CatalogLock {
    conn: sqlx::PgConnection,
}

impl std::fmt::Debug for CatalogLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogLock")
    }
}

/// Why the lock was lost.
#[derive(Debug, thiserror::Error)]
#[error("lost the catalog lock's connection: {0}")]
pub struct LockLost(String);

impl PostgresCatalog {
    async fn lock_connection(&self) -> Result<sqlx::PgConnection> {
        let open_err = |source| self.open_error(source);
        let url = self.connect_url().map_err(open_err)?;
        let mut conn = PgConnectOptions::from_url(&url)
            .map_err(open_err)?
            .connect()
            .await
            .map_err(open_err)?;
        // The server notices a vanished holder (crash, partition) within about 10 s and
        // releases its lock; without this, after the kernel's keepalive (two hours).
        conn.execute(
            "SET tcp_keepalives_idle = 4; SET tcp_keepalives_interval = 2; \
             SET tcp_keepalives_count = 3",
        )
        .await?;
        Ok(conn)
    }

    /// Takes the catalog's lock, waiting while another coordinator holds it. `standing_by`
    /// is called once if it has to wait.
    pub async fn acquire_lock(&self, standing_by: impl FnOnce()) -> Result<CatalogLock> {
        let mut standing_by = Some(standing_by);
        let mut conn = self.lock_connection().await?;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
            if got {
                if standing_by.is_none() {
                    tokio::time::sleep(TAKEOVER_GRACE).await;
                }
                return Ok(CatalogLock { conn });
            }
            if let Some(f) = standing_by.take() {
                f();
            }
            tokio::time::sleep(POLL).await;
            // A connection lost while waiting is opened again: a standby outlives database
            // restarts.
            if conn.ping().await.is_err() {
                conn = self.lock_connection().await?;
            }
        }
    }
}

impl CatalogLock {
    /// Checks the lock's connection every second; returns when a check fails or takes
    /// longer than a few seconds. The lock is then gone or about to be: stop acting on the
    /// catalog.
    pub async fn watch(mut self) -> LockLost {
        loop {
            tokio::time::sleep(POLL).await;
            let held = tokio::time::timeout(
                CHECK_TIMEOUT,
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                     AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                     AND ((classid::bigint << 32) | objid::bigint) = $1)",
                )
                .bind(LOCK_KEY)
                .fetch_one(&mut self.conn),
            )
            .await;
            match held {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return LockLost("the server no longer lists the lock".into()),
                Ok(Err(e)) => return LockLost(e.to_string()),
                Err(_) => {
                    return LockLost(format!("no answer within {} s", CHECK_TIMEOUT.as_secs()));
                }
            }
        }
    }
}

/// The channel on which the coordinators of one catalog tell each other about job changes
/// (ADR 0038).
pub const JOBS_CHANNEL: &str = "lifeboat_jobs";

impl PostgresCatalog {
    /// A connection of its own listening on [`JOBS_CHANNEL`]. It reconnects by itself after
    /// a lost connection (`try_recv` answers `None` once: notices in between are lost).
    pub async fn listen_jobs(&self) -> Result<sqlx::postgres::PgListener> {
        let open_err = |source| self.open_error(source);
        let url = self.connect_url().map_err(open_err)?;
        let mut listener = sqlx::postgres::PgListener::connect(url.as_str())
            .await
            .map_err(open_err)?;
        listener.listen(JOBS_CHANNEL).await?;
        Ok(listener)
    }
}

impl super::Catalog {
    /// Tells the other coordinators of a PostgreSQL catalog that a job changed (`payload`:
    /// who and which job). Nothing for SQLite, which has one coordinator.
    pub async fn notify_job(&self, payload: &str) -> Result<()> {
        if self.backend() != super::Backend::Postgres {
            return Ok(());
        }
        // `IS NULL`: a boolean the Any driver can read instead of pg_notify's `void`.
        sqlx::query("SELECT pg_notify($1, $2) IS NULL")
            .bind(JOBS_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
