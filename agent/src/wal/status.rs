//! What the agent tells the coordinator about each physical target's WAL archive, with every
//! heartbeat: the segments the repository holds per timeline, the gaps between them, the
//! newest one, and what the server's archiver says (failures, segments still waiting). It is
//! looked at once a minute, whether or not the coordinator is reachable; each look first
//! removes the WAL no retained base backup needs ([`super::expire`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use lifeboat_proto::{
    domain::{WalStatus, is_segment_name},
    v1 as pb,
};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::{chain::Archive, store};
use crate::config::{BackupMode, Config, TargetConfig};

/// How often the archive and the server are looked at.
const EVERY: Duration = Duration::from_secs(60);
/// How many gaps one report names.
const MAX_GAPS: usize = lifeboat_proto::domain::wal::MAX_GAPS;

/// The last look at each physical target, shared with the session's heartbeats.
#[derive(Debug, Clone, Default)]
pub struct Board {
    statuses: Arc<Mutex<BTreeMap<String, WalStatus>>>,
    /// Woken when a file was archived: look again soon.
    changed: Arc<tokio::sync::Notify>,
}

/// The least time between two looks.
const AT_MOST_EVERY: Duration = Duration::from_secs(2);

impl Board {
    /// A file was archived: the next look comes sooner than [`EVERY`].
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    pub fn snapshot(&self) -> Vec<pb::WalStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(pb::WalStatus::from)
            .collect()
    }

    fn set(&self, s: WalStatus) {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(s.target.clone(), s);
    }
}

/// Looks at every physical target every [`EVERY`], and soon after a file was archived,
/// until `cancel`.
pub async fn run(config: Arc<Config>, board: Board, cancel: CancellationToken) {
    let mut starts: BTreeMap<String, super::expire::Starts> = BTreeMap::new();
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
            () = board.changed.notified() => {}
        }
        for t in config
            .targets
            .values()
            .filter(|t| t.mode == BackupMode::Physical)
        {
            let starts = starts.entry(t.name.clone()).or_default();
            board.set(observe(&config, t, starts).await);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(AT_MOST_EVERY) => {}
        }
    }
}

/// One look at `t`: the repository's archive, then the server's archiver.
pub async fn observe(
    config: &Config,
    t: &TargetConfig,
    starts: &mut super::expire::Starts,
) -> WalStatus {
    let mut s = WalStatus {
        target: t.name.clone(),
        observed_at_ms: lifeboat_common::time::now_ms(),
        ..WalStatus::default()
    };
    let seg_size = match archiver(t).await {
        Ok(a) => {
            s.failed_count = a.failed_count;
            s.last_failed = a.last_failed;
            Some((a.seg_size, a.current, a.last_archived))
        }
        Err(e) => {
            s.error = format!("cannot ask the server about archiving: {e:#}");
            None
        }
    };
    let prefix = store::prefix(&config.environment, &t.name);
    let dir = format!("{}/{}", config.environment, t.name);
    let listed = async {
        let repo = crate::repo::open(config, &t.repository)?;
        let mut objects = repo.list(&dir).await.map_err(anyhow::Error::from)?;
        // WAL the base backups no longer need goes first, so the report shows what stays.
        match super::expire::run(&repo, &config.environment, &t.name, &objects, starts).await {
            Ok(e) if !e.removed.is_empty() => objects.retain(|o| !e.removed.contains(&o.key)),
            Ok(_) => {}
            Err(e) => tracing::warn!(target = %t.name, "WAL retention pass failed: {e:#}"),
        }
        anyhow::Ok(objects)
    };
    match listed.await {
        Ok(objects) => {
            let size = seg_size.as_ref().map_or(16 * 1024 * 1024, |x| x.0);
            let archive = Archive::from_listing(&prefix, &objects, size);
            (s.ranges, s.gaps) = archive.summary(MAX_GAPS);
            s.last_archived = archive.newest();
            if let Some((_, current, last)) = &seg_size {
                // Finished segments on the server's timeline newer than the last it archived.
                // A backup history file's name starts with its segment's.
                let last = last
                    .as_deref()
                    .and_then(|l| l.get(..24))
                    .filter(|l| is_segment_name(l));
                s.pending_segments = Some(match last {
                    Some(last) if is_segment_name(current) => {
                        let n = |x: &str| archive.segno_of_name(x);
                        n(current).saturating_sub(n(last)).saturating_sub(1)
                    }
                    _ => 0,
                });
            }
        }
        Err(e) => {
            if !s.error.is_empty() {
                s.error.push_str("; ");
            }
            s.error.push_str(&format!("cannot list {dir}: {e:#}"));
        }
    }
    s
}

/// What the server's archiver says.
struct Archiver {
    failed_count: u64,
    last_failed: Option<(String, i64)>,
    seg_size: u64,
    /// The segment being written now.
    current: String,
    last_archived: Option<String>,
}

async fn archiver(t: &TargetConfig) -> anyhow::Result<Archiver> {
    let password = t.password()?;
    let mut conn = crate::engine::postgres::connect(t, password.as_ref(), &t.database).await?;
    let row = sqlx::query(
        "SELECT failed_count, last_failed_wal, \
                (extract(epoch FROM last_failed_time) * 1000)::int8 AS failed_ms, \
                last_archived_wal, \
                CASE WHEN pg_is_in_recovery() THEN '' \
                     ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current, \
                (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size') AS seg \
         FROM pg_stat_archiver",
    )
    .fetch_one(&mut conn)
    .await?;
    let failed: Option<String> = row.try_get("last_failed_wal")?;
    let failed_ms: Option<i64> = row.try_get("failed_ms")?;
    Ok(Archiver {
        failed_count: u64::try_from(row.try_get::<i64, _>("failed_count")?).unwrap_or(0),
        last_failed: failed.map(|f| (f, failed_ms.unwrap_or(0))),
        seg_size: u64::try_from(row.try_get::<i64, _>("seg")?).unwrap_or(16 * 1024 * 1024),
        current: row.try_get("current")?,
        last_archived: row.try_get("last_archived_wal")?,
    })
}
