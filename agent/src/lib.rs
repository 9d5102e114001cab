//! lifeboat-agent: the data plane. Runs next to the databases of one environment, holds their
//! credentials, and runs the dumps, restores and verifications the coordinator asks for.

pub mod backup;
pub mod check;
pub mod config;
pub mod copy;
pub mod crypt;
pub mod dbhost;
pub mod drill;
pub mod engine;
pub mod export;
pub mod job;
pub mod keys;
pub mod maintenance;
pub mod manifest;
pub mod memory;
pub mod outbox;
pub mod pipeline;
pub mod process;
pub mod provider;
pub mod repo;
pub mod report;
pub mod restore;
pub mod runner;
pub mod scratch;
pub mod session;
pub mod swap_journal;
pub mod verify;
pub mod wal;
pub mod work;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

pub use config::{Config, load as load_config};

/// Runs the agent until `shutdown` is cancelled: the coordinator session, and the jobs it
/// starts. On shutdown running jobs are cancelled (their partial files removed) and awaited.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create state_dir {}", config.state_dir.display()))?;
    remove_stale_passfiles(&config.state_dir);
    let config = Arc::new(config);
    tracing::info!(
        agent = %config.name,
        environment = %config.environment,
        targets = config.targets.len(),
        "lifeboat-agent starting"
    );
    // The WAL socket first: PostgreSQL's archive_command needs it whether or not the
    // coordinator is reachable, and a socket that cannot be served must stop the start.
    let wal_listener = if wal::server::wanted(&config) {
        Some(wal::server::bind(&config.wal)?)
    } else {
        None
    };
    let wal_shutdown = CancellationToken::new();
    let wal_board = wal::status::Board::default();
    let wal_status = wal_listener.is_some().then(|| {
        tokio::spawn(wal::status::run(
            config.clone(),
            wal_board.clone(),
            wal_shutdown.clone(),
        ))
    });
    let wal_server = wal_listener.map(|l| {
        tokio::spawn(wal::server::serve(
            config.clone(),
            l,
            wal_board.clone(),
            wal_shutdown.clone(),
        ))
    });
    // Leftovers of a crash on local repositories go before any job can start; object stores
    // are cleaned in the background.
    let stats = repo::janitor::JanitorStats::new(&config);
    repo::janitor::startup(&config, &stats).await;
    // Restores a crash interrupted are finished or undone before any job can start; what jobs
    // left in scratch_dir goes, and so do the servers and directories of interrupted drills.
    swap_journal::recover(&config).await;
    scratch::sweep(&config.scratch_dir);
    drill::physical::sweep(&config).await;
    let leftovers = tokio::spawn({
        let config = config.clone();
        async move { swap_journal::warn_about_leftovers(&config).await }
    });
    // What backups are writing now: the periodic janitor leaves it alone.
    let writes = repo::ActiveWrites::default();
    let janitor_shutdown = CancellationToken::new();
    let janitor = tokio::spawn(repo::janitor::run(
        config.clone(),
        stats.clone(),
        writes.clone(),
        janitor_shutdown.clone(),
    ));
    let jobs_shutdown = CancellationToken::new();
    let (runner, events) = runner::Runner::new(config.clone(), writes, jobs_shutdown.clone())?;
    // The session outlives the jobs on shutdown, so their final results reach the coordinator.
    let session_shutdown = CancellationToken::new();
    let session = tokio::spawn(session::run_forever(
        config.clone(),
        stats,
        wal_board,
        runner.clone(),
        events,
        session_shutdown.clone(),
    ));
    shutdown.cancelled().await;
    tracing::info!("shutting down: cancelling running jobs");
    jobs_shutdown.cancel();
    runner.shutdown().await;
    let deadline = tokio::time::Instant::now() + RESULT_FLUSH_TIMEOUT;
    while !runner.unacked().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !runner.unacked().is_empty() {
        tracing::warn!(
            "stopping with unacknowledged job results; they are kept in the state directory and sent when the agent starts again"
        );
    }
    session_shutdown.cancel();
    janitor_shutdown.cancel();
    wal_shutdown.cancel();
    let _ = session.await;
    let _ = janitor.await;
    for task in [wal_server, wal_status].into_iter().flatten() {
        let _ = task.await;
    }
    leftovers.abort();
    tracing::info!("lifeboat-agent stopped");
    Ok(())
}

/// How long shutdown waits for the coordinator to acknowledge the final job results.
const RESULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Password and option files left by a crash (they are removed after every child in normal
/// operation).
fn remove_stale_passfiles(state_dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".pgpass-") || name.starts_with(engine::mysql::DEFAULTS_FILE_PREFIX)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_password_and_option_files_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = [
            ".pgpass-abc".to_owned(),
            format!("{}xyz.cnf", crate::engine::mysql::DEFAULTS_FILE_PREFIX),
        ];
        for f in stale.iter().map(String::as_str).chain(["keep.txt"]) {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        super::remove_stale_passfiles(dir.path());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["keep.txt".to_owned()]);
    }
}
