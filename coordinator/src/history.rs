//! Hourly (and at start-up): removes finished jobs, scheduler decisions and audit records older
//! than `[jobs] keep_finished_days` and `audit_keep_days`, so the catalog does not grow forever.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{catalog::Catalog, config::JobsConfig};

const PERIOD: Duration = Duration::from_secs(3600);

pub async fn run(catalog: Catalog, keep: JobsConfig, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        // A pass stops at shutdown: each of its statements commits on its own, so what is
        // left is removed by the next pass.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = prune_once(&catalog, &keep, lifeboat_common::time::now_ms()) => {}
        }
    }
}

/// One pass at `now_ms`; failures are logged and retried at the next pass.
pub async fn prune_once(catalog: &Catalog, keep: &JobsConfig, now_ms: i64) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match catalog
        .prune_history(
            now_ms.saturating_sub(ms(keep.keep_finished)),
            now_ms.saturating_sub(ms(keep.audit_keep)),
        )
        .await
    {
        Ok(n) if n.jobs + n.schedule_runs + n.audit > 0 => tracing::info!(
            jobs = n.jobs,
            schedule_runs = n.schedule_runs,
            audit = n.audit,
            "removed old history from the catalog"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("failed to remove old history from the catalog: {e}"),
    }
}
