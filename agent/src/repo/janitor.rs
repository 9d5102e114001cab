//! The repository janitor: on start and then periodically, removes what interrupted writes
//! (backups, and copies after a kill) left under this agent's targets, in their repositories
//! and those they copy to (incomplete multipart uploads, temporary files, backup directories
//! or data objects without a manifest) once they are older than the repository's
//! `stale_upload_age`, and counts them for the coordinator's metrics (S2).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use lifeboat_proto as pb;
use tokio_util::sync::CancellationToken;

use super::ActiveWrites;
use crate::config::{Config, RepositoryConfig};

/// Counters per repository, shared with the session (sent with each heartbeat).
#[derive(Debug, Clone, Default)]
pub struct JanitorStats {
    inner: Arc<Mutex<BTreeMap<String, pb::RepositoryStats>>>,
}

impl JanitorStats {
    pub fn new(config: &Config) -> Self {
        let map = config
            .repositories
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    pb::RepositoryStats {
                        name: name.clone(),
                        kind: match cfg {
                            RepositoryConfig::Fs { .. } => "fs",
                            RepositoryConfig::S3(_) => "s3",
                        }
                        .into(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        Self {
            inner: Arc::new(Mutex::new(map)),
        }
    }

    pub fn snapshot(&self) -> Vec<pb::RepositoryStats> {
        self.inner
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, repo: &str, removed: u64, ok: bool) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(s) = m.get_mut(repo)
        {
            s.stale_uploads_aborted += removed;
            if ok {
                s.janitor_last_success_ms = lifeboat_common::time::now_ms();
            } else {
                s.janitor_errors += 1;
            }
        }
    }
}

/// One pass over every target of this agent stored in `repo_name`. `startup` passes on the
/// file system remove any incomplete backup (no job of this agent runs yet, and a target has
/// exactly one agent); everything else waits for the configured age.
pub async fn pass(
    config: &Config,
    stats: &JanitorStats,
    writes: &ActiveWrites,
    repo_name: &str,
    startup: bool,
) {
    let Some(cfg) = config.repositories.get(repo_name) else {
        return;
    };
    let repo = match super::open(config, repo_name) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                repository = repo_name,
                "janitor cannot open the repository: {e:#}"
            );
            stats.record(repo_name, 0, false);
            return;
        }
    };
    let (mut age, _) = cfg.janitor_schedule();
    if startup && matches!(cfg, RepositoryConfig::Fs { .. }) {
        age = Duration::ZERO;
    }
    let mut removed = 0;
    let mut ok = true;
    for target in config
        .targets
        .values()
        .filter(|t| t.repository == repo_name || t.copy_to.iter().any(|r| r == repo_name))
    {
        let prefix = format!("{}/{}", config.environment, target.name);
        match repo.janitor(&prefix, age, &writes.snapshot()).await {
            Ok(n) => removed += n,
            Err(e) => {
                ok = false;
                tracing::warn!(
                    repository = repo_name,
                    target = %target.name,
                    "janitor pass failed: {e:#}"
                );
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            repository = repo_name,
            removed,
            "janitor removed what interrupted backups left behind"
        );
    }
    stats.record(repo_name, removed, ok);
}

/// The start-up pass over the file system repositories; awaited before the agent takes jobs,
/// so it can remove every incomplete backup regardless of age.
pub async fn startup(config: &Config, stats: &JanitorStats) {
    let none = ActiveWrites::default();
    for (name, cfg) in &config.repositories {
        if matches!(cfg, RepositoryConfig::Fs { .. }) {
            pass(config, stats, &none, name, true).await;
        }
    }
}

/// Runs the janitor until `shutdown`: object stores get a pass right away (it may be slow, so
/// it does not hold up the agent's start), then every repository one every
/// `janitor_interval`.
pub async fn run(
    config: Arc<Config>,
    stats: JanitorStats,
    writes: ActiveWrites,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, cfg) in &config.repositories {
        let (_, interval) = cfg.janitor_schedule();
        let first_now = !matches!(cfg, RepositoryConfig::Fs { .. });
        let config = config.clone();
        let stats = stats.clone();
        let writes = writes.clone();
        let name = name.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if first_now {
                tokio::select! {
                    () = pass(&config, &stats, &writes, &name, false) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = shutdown.cancelled() => return,
                }
                tokio::select! {
                    () = pass(&config, &stats, &writes, &name, false) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
    tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => {}
        () = shutdown.cancelled() => tasks.abort_all(),
    }
}
