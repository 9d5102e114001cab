//! Retention the coordinator applies on its own (`[prune]`): a target's policy after each of
//! its backups succeeds, and every target's on a schedule (daily by default). Each run is
//! `lifeboat prune` without `--dry-run`: the same plan (so `lifeboat prune --dry-run` shows
//! what the next run deletes), the same `min_keep` floor, the same two-phase delete. Each
//! backup it marks for deletion gets an audit row whose actor names the run.

use std::sync::Arc;

use anyhow::{Context, Result};
use lifeboat_common::names::TargetName;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{
    config::RetentionConfig,
    prune::{self, Applied},
};
use crate::{
    audit::{AuditEntry, AuditOutcome},
    catalog::Catalog,
    hub::Hub,
    jobs::Jobs,
    model::{JobKind, JobState},
    scheduler::Clock,
};

/// The actor of the run after a backup, in audit rows and on the delete jobs.
pub const AFTER_BACKUP: &str = "schedule/prune-after-backup";
/// The actor of the scheduled run over every target.
pub const SCHEDULED: &str = "schedule/prune";

/// What the task needs.
#[derive(Clone)]
pub struct AutoPrune {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub jobs: Jobs,
    pub retention: Arc<RetentionConfig>,
}

/// The task: waits for successful backups and for the schedule, until `cancel`.
pub async fn run(p: AutoPrune, clock: Clock, cancel: CancellationToken) {
    let auto = p.retention.auto.clone();
    if !auto.after_backup && auto.schedule.is_none() {
        return;
    }
    let mut events = p.hub.subscribe();
    let mut next = auto.schedule.as_ref().and_then(|s| s.next_after(clock()));
    loop {
        let wait = next
            .map(|at| std::time::Duration::from_millis(u64::try_from(at - clock()).unwrap_or(0)));
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = sleep => {
                if let Err(e) = apply(&p, None, SCHEDULED, clock()).await {
                    tracing::warn!("scheduled prune failed: {e:#}; the next run tries again");
                }
                next = auto.schedule.as_ref().and_then(|s| s.next_after(clock()));
            }
            event = events.recv(), if auto.after_backup => match event {
                Ok(job) if job.kind == JobKind::Backup && job.state == JobState::Succeeded => {
                    if let Err(e) = apply(&p, Some(&job.target), AFTER_BACKUP, clock()).await {
                        tracing::warn!(target = %job.target, "prune after backup failed: {e:#}; the next backup or scheduled run tries again");
                    }
                }
                Ok(_) => {}
                // Events were missed: apply to every target, which covers the missed ones.
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = apply(&p, None, AFTER_BACKUP, clock()).await {
                        tracing::warn!("prune after backups failed: {e:#}");
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// One run: plans `target` (or every target), marks what the plans delete and queues the
/// delete jobs, audits each. Returns the backups marked now.
pub async fn apply(
    p: &AutoPrune,
    target: Option<&TargetName>,
    actor: &str,
    now_ms: i64,
) -> Result<Vec<String>> {
    let plans = prune::plan_targets(&p.catalog, &p.retention, target, now_ms)
        .await
        .context("plan retention")?;
    // Targets without a policy keep everything; nothing to do for them.
    let plans: Vec<_> = plans.into_iter().filter(|t| t.policy.is_some()).collect();
    let applied = prune::apply(&p.catalog, &p.jobs, &plans, actor, now_ms)
        .await
        .context("apply retention")?;
    let mut marked = Vec::new();
    for plan in &plans {
        for (decision, backup) in &plan.decisions {
            let key = prune::applied_key(backup.backup_id.as_str(), &plan.repository);
            let Some(Applied::Queued(job)) = applied.get(&key) else {
                continue;
            };
            let copy = if plan.copies.contains(backup.backup_id.as_str()) {
                format!("its copy in {}", plan.repository)
            } else {
                format!("it (in {})", plan.repository)
            };
            marked.push(backup.backup_id.to_string());
            let reasons: Vec<&str> = decision.reasons.iter().map(|r| r.as_str()).collect();
            let entry = AuditEntry {
                at_ms: now_ms,
                actor: actor.to_owned(),
                role: String::new(),
                action: "prune".into(),
                object: backup.backup_id.to_string(),
                outcome: AuditOutcome::Ok,
                reason: format!(
                    "retention of {} deletes {copy} ({}); delete job {job}",
                    plan.target,
                    reasons.join(", ")
                ),
            };
            if let Err(e) = p.catalog.insert_audit(&entry).await {
                tracing::warn!(backup_id = %backup.backup_id, "failed to audit a scheduled prune: {e}");
            }
            tracing::info!(target: "audit", actor, backup_id = %backup.backup_id, job_id = %job, "retention marked a backup for deletion");
        }
    }
    Ok(marked)
}
