//! lifeboat-agent: the data plane. Runs next to the databases of one environment, holds their
//! credentials, and runs the dumps, restores and verifications the coordinator asks for.

pub mod backup;
pub mod config;
pub mod engine;
pub mod job;
pub mod manifest;
pub mod pipeline;
pub mod process;
pub mod repo;
pub mod restore;
pub mod runner;
pub mod session;
pub mod verify;

use std::sync::Arc;

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
    let jobs_shutdown = CancellationToken::new();
    let (runner, events) = runner::Runner::new(config.clone(), jobs_shutdown.clone());
    let session_shutdown = shutdown.child_token();
    let session = tokio::spawn(session::run_forever(
        config.clone(),
        runner.clone(),
        events,
        session_shutdown.clone(),
    ));
    shutdown.cancelled().await;
    tracing::info!("shutting down: cancelling running jobs");
    jobs_shutdown.cancel();
    runner.shutdown().await;
    session_shutdown.cancel();
    let _ = session.await;
    tracing::info!("lifeboat-agent stopped");
    Ok(())
}

/// Password files left by a crash (they are removed after every child in normal operation).
fn remove_stale_passfiles(state_dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".pgpass-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
