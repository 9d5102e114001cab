//! Job leases: a job handed to an agent that stays away longer than `agent_lease_secs` fails,
//! and a queued job whose agent does not connect within `queue_timeout_secs` fails. The same
//! tick carries out the cancels asked through a standby (cancels.rs). The
//! decision is a pure function of `(jobs, sessions, now)`; the task only applies it.

use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    config::JobsConfig,
    dispatch,
    hub::Hub,
    jobs::Jobs,
    model::{Job, JobState},
};

/// Jobs to fail now, with the reason.
pub fn expired<'a>(
    jobs: &'a [Job],
    connected: &HashSet<String>,
    away_since_ms: &dyn Fn(&str) -> i64,
    now_ms: i64,
    limits: &JobsConfig,
) -> Vec<(&'a Job, String)> {
    let lease_ms = i64::try_from(limits.agent_lease.as_millis()).unwrap_or(i64::MAX);
    let queue_ms = i64::try_from(limits.queue_timeout.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for job in jobs {
        if job.state.is_terminal() || connected.contains(&job.agent) {
            continue;
        }
        if job.is_assigned() {
            let away = now_ms.saturating_sub(away_since_ms(&job.agent));
            if away >= lease_ms {
                out.push((
                    job,
                    format!(
                        "agent disconnected: agent {} has been away for longer than the \
                         agent lease ({} s) and the job's outcome is unknown; check the agent \
                         and run the job again",
                        job.agent,
                        limits.agent_lease.as_secs()
                    ),
                ));
            }
        } else if job.state == JobState::Queued
            && now_ms.saturating_sub(job.created_at_ms) >= queue_ms
        {
            out.push((
                job,
                format!(
                    "agent offline: agent {} did not connect within the queue timeout ({} s); \
                     start the agent (check its certificate and coordinator URL) and run the \
                     job again",
                    job.agent,
                    limits.queue_timeout.as_secs()
                ),
            ));
        }
    }
    out
}

/// How often leases are checked: often enough for short test leases, rarely otherwise.
fn tick(limits: &JobsConfig) -> Duration {
    (limits.agent_lease.min(limits.queue_timeout) / 10)
        .clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Fails the jobs `expired` picks, every [`tick`], until `cancel`.
pub async fn run(
    hub: Arc<Hub>,
    catalog: Catalog,
    jobs: Jobs,
    limits: JobsConfig,
    cancel: CancellationToken,
) {
    let period = tick(&limits);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(e) = check_once(&hub, &catalog, &jobs, &limits).await {
            tracing::warn!("failed to check job leases: {e:#}");
        }
        // Cancels asked through a standby (a SQLite catalog has none).
        if catalog.backend() == crate::catalog::Backend::Postgres
            && let Err(e) = crate::cancels::apply_requests(&hub, &catalog, &jobs).await
        {
            tracing::warn!("failed to carry out the cancels asked through a standby: {e}");
        }
    }
}

async fn check_once(
    hub: &Hub,
    catalog: &Catalog,
    service: &Jobs,
    limits: &JobsConfig,
) -> Result<()> {
    // Not while an agent is being admitted and its jobs reconciled.
    let _guard = hub.dispatch_lock.lock().await;
    let jobs = catalog
        .unfinished_jobs()
        .await
        .context("read unfinished jobs")?;
    if jobs.is_empty() {
        return Ok(());
    }
    let connected: HashSet<String> = hub.connected_agents().into_keys().collect();
    let away = |agent: &str| hub.away_since_ms(agent);
    for (job, reason) in expired(
        &jobs,
        &connected,
        &away,
        lifeboat_common::time::now_ms(),
        limits,
    ) {
        tracing::warn!(
            job_id = %job.id,
            target = %job.target,
            backup_id = job.backup(),
            "{reason}"
        );
        dispatch::fail(service, job, reason).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKind, Progress};

    fn job(id: &str, agent: &str, state: JobState, dispatched: bool, created: i64) -> Job {
        Job {
            decrypt: false,
            rotation: None,
            repository: String::new(),
            id: id.into(),
            kind: JobKind::Backup,
            state,
            target: format!("prod/{id}").parse().expect("target"),
            agent: agent.into(),
            backup_id: None,
            requested_by: "alice".into(),
            created_at_ms: created,
            dispatched_at_ms: dispatched.then_some(created),
            started_at_ms: None,
            finished_at_ms: None,
            error: String::new(),
            progress: Progress::default(),
            detail: String::new(),
            restore: None,
            export: None,
            report: Default::default(),
        }
    }

    fn limits() -> JobsConfig {
        JobsConfig {
            agent_lease: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            queue_timeout: Duration::from_secs(100),
            ..JobsConfig::default()
        }
    }

    fn run_case(jobs: &[Job], connected: &[&str], away_since: i64, now: i64) -> Vec<String> {
        let connected = connected.iter().map(|s| (*s).to_owned()).collect();
        expired(jobs, &connected, &|_| away_since, now, &limits())
            .into_iter()
            .map(|(j, why)| format!("{}: {}", j.id, why.split(':').next().unwrap_or("")))
            .collect()
    }

    #[test]
    fn lease_table() {
        let jobs = [
            job("running", "a", JobState::Running, true, 0),
            job("sent", "a", JobState::Queued, true, 0),
            job("waiting", "a", JobState::Queued, false, 0),
        ];
        // Connected agents never expire anything.
        assert!(run_case(&jobs, &["a"], 0, 1_000_000).is_empty());
        // Away less than the lease: nothing.
        assert!(run_case(&jobs, &[], 1_000, 10_999).is_empty());
        // Away exactly the lease: assigned jobs fail; the queued one is young.
        assert_eq!(
            run_case(&jobs, &[], 1_000, 11_000),
            ["running: agent disconnected", "sent: agent disconnected"]
        );
        // The queued job fails only after the queue timeout, counted from its creation.
        assert_eq!(run_case(&jobs[2..], &[], 0, 99_999), Vec::<String>::new());
        assert_eq!(
            run_case(&jobs[2..], &[], 0, 100_000),
            ["waiting: agent offline"]
        );
    }

    #[test]
    fn tick_is_bounded() {
        assert_eq!(tick(&limits()), Duration::from_secs(1));
        let short = JobsConfig {
            agent_lease: Duration::from_secs(1),
            ..limits()
        };
        assert_eq!(tick(&short), Duration::from_millis(100));
        assert_eq!(tick(&JobsConfig::default()), Duration::from_secs(5));
    }
}
