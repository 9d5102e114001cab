//! Keeping pin markers in step with the catalog's pins. The catalog's pin is what retention
//! obeys; the marker beside the manifest is what brings the pin back after a catalog rebuild,
//! so a pinned backup whose marker is missing would be unpinned, and prunable, after one. A
//! marker job that failed (agent offline past its deadline, storage down) or a pin made
//! before markers existed gets a new pin job here, once the target's agent is connected.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::{Catalog, InsertJob},
    hub::Hub,
    jobs::Jobs,
    model::{JobKind, NewJob},
};

/// How often the catalog is checked.
const SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long after a failed marker job another is queued.
const RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Who the queued jobs are requested by.
pub const REQUESTED_BY: &str = "coordinator (pin marker sync)";

pub async fn run(hub: Arc<Hub>, catalog: Catalog, jobs: Jobs, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(SWEEP_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        match sweep(&hub, &catalog, &jobs, lifeboat_common::time::now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "queued pin marker jobs the repository lacks"),
            Err(e) => tracing::warn!("failed to check pin markers: {e:#}; checking again later"),
        }
    }
}

/// Queues a pin job for every backup whose marker may be out of step and whose target's
/// agent is connected (a job for an offline agent would only wait and fail). Returns how
/// many were queued.
pub async fn sweep(hub: &Hub, catalog: &Catalog, jobs: &Jobs, now_ms: i64) -> Result<usize> {
    let retry_before = now_ms - i64::try_from(RETRY_AFTER.as_millis()).unwrap_or(i64::MAX);
    let ids = catalog
        .pin_markers_to_sync(retry_before)
        .await
        .context("read backups whose pin marker may be missing")?;
    let mut queued = 0;
    for id in ids {
        let Some(backup) = catalog.get_backup(&id).await.context("read backup")? else {
            continue;
        };
        let Some(target) = catalog
            .get_target(backup.target.as_str())
            .await
            .context("read target")?
        else {
            continue;
        };
        if !hub.is_connected(&target.agent) {
            continue;
        }
        let mut job = NewJob::new(
            JobKind::Pin,
            backup.target.clone(),
            &target.agent,
            REQUESTED_BY,
            now_ms,
        );
        job.backup_id = Some(backup.backup_id.clone());
        if let InsertJob::Inserted(_) = jobs.queue(&job).await.context("queue pin job")? {
            queued += 1;
        }
    }
    Ok(queued)
}
