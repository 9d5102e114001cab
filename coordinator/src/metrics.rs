//! Every Prometheus metric of the coordinator, registered at start-up. Labels come from closed
//! sets only: job kinds, outcomes, statuses, incident kinds, and agent, environment, target,
//! repository and webhook names (bounded by configs). Job and backup ids never become labels.
//!
//! Gauges that mirror the catalog are rebuilt from it on every scrape ([`Metrics::render_with`]),
//! so they are right after a restart and series of removed targets disappear. Counters count
//! events since this coordinator started.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
};

use anyhow::{Context, Result};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::{
    alerts::{
        config::AlertsConfig,
        model::{Incident, IncidentKind},
    },
    health::{AgentState, Report, Status},
    model::{Job, JobKind, JobState, RepositoryStats},
};

pub struct Metrics {
    registry: Registry,
    catalog_up: IntGauge,
    /// Held while gauges are rebuilt and rendered, so a scrape never sees half a rebuild.
    scrape: Mutex<()>,
    agents_connected: IntGauge,
    agent_connected: IntGaugeVec,
    agent_last_seen: GaugeVec,
    agent_clock_skew: GaugeVec,
    jobs_running: IntGaugeVec,
    jobs_total: IntCounterVec,
    job_duration: HistogramVec,
    backups_total: IntCounterVec,
    backup_last_success: GaugeVec,
    backup_last_duration: GaugeVec,
    backup_last_size: GaugeVec,
    recovery_point_age: GaugeVec,
    rpo: GaugeVec,
    rto: GaugeVec,
    target_status: IntGaugeVec,
    verify_last_success: GaugeVec,
    restore_last_duration: GaugeVec,
    repo_stale_uploads: IntCounterVec,
    repo_janitor_errors: IntCounterVec,
    repo_janitor_last_success: GaugeVec,
    /// The last reported counters per (agent, repository), to turn them into increments.
    /// Only repositories the agent declared in its Hello (at most
    /// [`crate::wire::MAX_REPOSITORIES`]), and only while the agent is connected (M11).
    repo_seen: Mutex<HashMap<(String, String), RepositoryStats>>,
    /// The repositories each agent declared in its last Hello.
    declared: Mutex<HashMap<String, HashSet<String>>>,
    reports_dropped: IntCounterVec,
    audit_dropped: IntCounterVec,
    health_readings: IntCounterVec,
    incidents_open: IntGaugeVec,
    notifications_total: IntCounterVec,
    notifications_pending: IntGaugeVec,
    alert_evaluations: IntCounterVec,
    alert_delivery_passes: IntCounterVec,
    agent_updates_dropped: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const OUTCOMES: [JobState; 3] = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];
const ENV_TARGET: &[&str] = &["environment", "target"];
const AGENT_ENV: &[&str] = &["agent", "environment"];
const AGENT_REPO: &[&str] = &["agent", "repository"];
/// Why an agent's report was not turned into metrics (a closed set).
const DROPPED_UNDECLARED: &str = "undeclared_repository";
/// The `outcome` label of the alert pass counters.
const PASS_OUTCOMES: [&str; 2] = ["ok", "error"];
/// The `kind` label of `lifeboat_agent_updates_dropped_total`.
pub const AGENT_UPDATES: [&str; 3] = ["heartbeat", "accepted", "progress"];

#[allow(clippy::cast_precision_loss)]
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    Ok(GaugeVec::new(Opts::new(name, help), labels)?)
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    Ok(IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    Ok(IntCounterVec::new(Opts::new(name, help), labels)?)
}

impl Metrics {
    /// Counts refused-call audit records the full audit queue could not take.
    pub fn health_reading_taken(&self) {
        self.health_readings.with_label_values::<&str>(&[]).inc();
    }

    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.with_label_values::<&str>(&[]).inc_by(n);
    }

    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let m = Self {
            catalog_up: IntGauge::new(
                "lifeboat_catalog_up",
                "1 if the catalog answered at the last scrape, else 0.",
            )?,
            agents_connected: IntGauge::new(
                "lifeboat_agents_connected",
                "Agents with an open session to this coordinator.",
            )?,
            agent_connected: int_gauge(
                "lifeboat_agent_connected",
                "1 if the agent has an open session to this coordinator, else 0.",
                AGENT_ENV,
            )?,
            agent_last_seen: gauge(
                "lifeboat_agent_last_seen_timestamp_seconds",
                "Unix time of the agent's last Hello or heartbeat.",
                AGENT_ENV,
            )?,
            agent_clock_skew: gauge(
                "lifeboat_agent_clock_skew_seconds",
                "Agent clock minus coordinator clock at its last Hello or heartbeat.",
                AGENT_ENV,
            )?,
            jobs_running: int_gauge(
                "lifeboat_jobs_running",
                "Jobs currently running, by kind.",
                &["kind"],
            )?,
            jobs_total: counter(
                "lifeboat_jobs_total",
                "Jobs finished since the coordinator started, by kind and outcome.",
                &["kind", "outcome"],
            )?,
            job_duration: HistogramVec::new(
                HistogramOpts::new(
                    "lifeboat_job_duration_seconds",
                    "Time from a job's start on its agent to its result, by kind.",
                )
                .buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                    14400.0, 28800.0,
                ]),
                &["kind"],
            )?,
            backups_total: counter(
                "lifeboat_backups_total",
                "Backup jobs finished since the coordinator started, by target and outcome.",
                &["environment", "target", "outcome"],
            )?,
            backup_last_success: gauge(
                "lifeboat_backup_last_success_timestamp_seconds",
                "Unix time at which the coordinator recorded the most recent complete backup of \
                 a target.",
                ENV_TARGET,
            )?,
            backup_last_duration: gauge(
                "lifeboat_backup_last_duration_seconds",
                "How long the most recent complete backup of a target took.",
                ENV_TARGET,
            )?,
            backup_last_size: gauge(
                "lifeboat_backup_last_size_bytes",
                "Size of the most recent complete backup of a target: raw dump or stored bytes.",
                &["environment", "target", "kind"],
            )?,
            recovery_point_age: gauge(
                "lifeboat_recovery_point_age_seconds",
                "Age of the most recent complete backup of a target (absent without one).",
                ENV_TARGET,
            )?,
            rpo: gauge(
                "lifeboat_rpo_seconds",
                "Declared recovery point objective of a target.",
                ENV_TARGET,
            )?,
            rto: gauge(
                "lifeboat_rto_seconds",
                "Declared recovery time objective of a target.",
                ENV_TARGET,
            )?,
            target_status: int_gauge(
                "lifeboat_target_status",
                "1 for the target's current backup status (ok, warning, critical), 0 otherwise.",
                &["environment", "target", "status"],
            )?,
            verify_last_success: gauge(
                "lifeboat_verify_last_success_timestamp_seconds",
                "Unix time at which the most recent successful verification of a backup of a \
                 target finished.",
                ENV_TARGET,
            )?,
            restore_last_duration: gauge(
                "lifeboat_restore_last_duration_seconds",
                "How long the most recent successful restore into a target took.",
                ENV_TARGET,
            )?,
            repo_stale_uploads: counter(
                "lifeboat_repository_stale_uploads_aborted_total",
                "Incomplete uploads the agent's janitor removed from a repository, as reported \
                 by the agent (resets when the agent restarts).",
                AGENT_REPO,
            )?,
            repo_janitor_errors: counter(
                "lifeboat_repository_janitor_errors_total",
                "Janitor passes over a repository that failed, as reported by the agent.",
                AGENT_REPO,
            )?,
            repo_janitor_last_success: gauge(
                "lifeboat_repository_janitor_last_success_timestamp_seconds",
                "Unix time of the last janitor pass over a repository that finished without \
                 error.",
                AGENT_REPO,
            )?,
            repo_seen: Mutex::new(HashMap::new()),
            declared: Mutex::new(HashMap::new()),
            reports_dropped: counter(
                "lifeboat_agent_reports_dropped_total",
                "Entries of agents' reports left out of the metrics, by reason \
                 (undeclared_repository: heartbeat stats of a repository the agent did not \
                 declare in its Hello).",
                &["reason"],
            )?,
            audit_dropped: counter(
                "lifeboat_audit_dropped_total",
                "Refused-call audit records not stored because the audit queue was full (a \
                 flood of refused calls); each was still logged.",
                &[],
            )?,
            health_readings: counter(
                "lifeboat_health_catalog_reads_total",
                "Catalog reads taken for the HTTP endpoints (/health*, /metrics); at most one \
                 per server.health_cache_ms, however many requests arrive.",
                &[],
            )?,
            incidents_open: int_gauge(
                "lifeboat_incidents_open",
                "Open alert incidents, by kind.",
                &["kind"],
            )?,
            notifications_total: counter(
                "lifeboat_alert_notifications_total",
                "Webhook deliveries since the coordinator started, by webhook and outcome \
                 (delivered, failed).",
                &["webhook", "outcome"],
            )?,
            notifications_pending: int_gauge(
                "lifeboat_alert_notifications_pending",
                "Notifications waiting for delivery, by webhook.",
                &["webhook"],
            )?,
            alert_evaluations: counter(
                "lifeboat_alert_evaluations_total",
                "Finished passes of the alert evaluator, by outcome (ok; error: the catalog \
                 could not be read or written, retried at the next pass).",
                &["outcome"],
            )?,
            alert_delivery_passes: counter(
                "lifeboat_alert_delivery_passes_total",
                "Finished passes of the webhook notifier over the outbox, by outcome (ok; \
                 error: the catalog could not be read or written). Refused deliveries are \
                 counted in lifeboat_alert_notifications_total, not here.",
                &["outcome"],
            )?,
            agent_updates_dropped: counter(
                "lifeboat_agent_updates_dropped_total",
                "Agent heartbeats, acceptances and progress updates the catalog could not \
                 record (busy or failing), by kind; the agent's session stays open.",
                &["kind"],
            )?,
            scrape: Mutex::new(()),
            registry,
        };
        let build_info = int_gauge(
            "lifeboat_build_info",
            "Always 1; the coordinator's version as a label.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let start_time = prometheus::Gauge::new(
            "lifeboat_coordinator_start_time_seconds",
            "Unix time at which the coordinator started.",
        )?;
        start_time.set(secs(lifeboat_common::time::now_ms()));
        m.registry.register(Box::new(build_info))?;
        m.registry.register(Box::new(start_time))?;
        m.registry.register(Box::new(m.catalog_up.clone()))?;
        m.registry.register(Box::new(m.agents_connected.clone()))?;
        m.registry.register(Box::new(m.agent_connected.clone()))?;
        m.registry.register(Box::new(m.agent_last_seen.clone()))?;
        m.registry.register(Box::new(m.agent_clock_skew.clone()))?;
        m.registry.register(Box::new(m.jobs_running.clone()))?;
        m.registry.register(Box::new(m.jobs_total.clone()))?;
        m.registry.register(Box::new(m.job_duration.clone()))?;
        m.registry.register(Box::new(m.backups_total.clone()))?;
        m.registry
            .register(Box::new(m.backup_last_success.clone()))?;
        m.registry
            .register(Box::new(m.backup_last_duration.clone()))?;
        m.registry.register(Box::new(m.backup_last_size.clone()))?;
        m.registry
            .register(Box::new(m.recovery_point_age.clone()))?;
        m.registry.register(Box::new(m.rpo.clone()))?;
        m.registry.register(Box::new(m.rto.clone()))?;
        m.registry.register(Box::new(m.target_status.clone()))?;
        m.registry
            .register(Box::new(m.verify_last_success.clone()))?;
        m.registry
            .register(Box::new(m.restore_last_duration.clone()))?;
        m.registry
            .register(Box::new(m.repo_stale_uploads.clone()))?;
        m.registry
            .register(Box::new(m.repo_janitor_errors.clone()))?;
        m.registry
            .register(Box::new(m.repo_janitor_last_success.clone()))?;
        m.registry.register(Box::new(m.reports_dropped.clone()))?;
        m.registry.register(Box::new(m.audit_dropped.clone()))?;
        m.audit_dropped.with_label_values::<&str>(&[]);
        m.registry.register(Box::new(m.health_readings.clone()))?;
        m.health_readings.with_label_values::<&str>(&[]);
        m.reports_dropped.with_label_values(&[DROPPED_UNDECLARED]);
        m.registry.register(Box::new(m.incidents_open.clone()))?;
        m.registry
            .register(Box::new(m.notifications_total.clone()))?;
        m.registry
            .register(Box::new(m.notifications_pending.clone()))?;
        m.registry.register(Box::new(m.alert_evaluations.clone()))?;
        m.registry
            .register(Box::new(m.alert_delivery_passes.clone()))?;
        for outcome in PASS_OUTCOMES {
            m.alert_evaluations.with_label_values(&[outcome]);
            m.alert_delivery_passes.with_label_values(&[outcome]);
        }
        m.registry
            .register(Box::new(m.agent_updates_dropped.clone()))?;
        for kind in AGENT_UPDATES {
            m.agent_updates_dropped.with_label_values(&[kind]);
        }
        // Every kind and outcome is visible from the start, at zero.
        for kind in JobKind::ALL {
            m.jobs_running.with_label_values(&[kind.as_str()]).set(0);
            for outcome in OUTCOMES {
                m.jobs_total
                    .with_label_values(&[kind.as_str(), outcome.as_str()]);
            }
        }
        for kind in IncidentKind::ALL {
            m.incidents_open.with_label_values(&[kind.as_str()]).set(0);
        }
        Ok(m)
    }

    /// Counts a job that reached a terminal state.
    pub fn job_finished(&self, job: &Job) {
        if !job.state.is_terminal() {
            return;
        }
        self.jobs_total
            .with_label_values(&[job.kind.as_str(), job.state.as_str()])
            .inc();
        if job.kind == JobKind::Backup {
            let (env, target) = (job.target.env(), job.target.name());
            self.backups_total
                .with_label_values(&[env, target, job.state.as_str()])
                .inc();
        }
        if let (Some(start), Some(end)) = (job.started_at_ms, job.finished_at_ms) {
            self.job_duration
                .with_label_values(&[job.kind.as_str()])
                .observe(secs((end - start).max(0)));
        }
    }

    pub fn set_catalog_up(&self, up: bool) {
        self.catalog_up.set(i64::from(up));
    }

    pub fn set_agents_connected(&self, n: usize) {
        self.agents_connected
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the running-jobs gauge of every kind (kinds not listed are zero).
    pub fn set_running(&self, counts: &[(JobKind, i64)]) {
        for kind in JobKind::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n);
            self.jobs_running.with_label_values(&[kind.as_str()]).set(n);
        }
    }

    /// Records a new complete backup at once (the scrape rebuilds it from the catalog too),
    /// as recorded now on the coordinator's clock, not the agent's (N26).
    #[allow(clippy::cast_precision_loss)]
    pub fn set_last_backup(&self, b: &crate::model::Backup) {
        let (env, target) = (b.target.env(), b.target.name());
        self.backup_last_success
            .with_label_values(&[env, target])
            .set(secs(lifeboat_common::time::now_ms()));
        self.backup_last_size
            .with_label_values(&[env, target, "raw"])
            .set(b.raw_size as f64);
        self.backup_last_size
            .with_label_values(&[env, target, "stored"])
            .set(b.stored_size as f64);
    }

    /// Records the repositories an agent declared in its Hello: only their stats become
    /// metrics. (The Hello's list is capped, see [`crate::wire::MAX_REPOSITORIES`].)
    pub fn declare_repositories(&self, agent: &str, repositories: &[String]) {
        let declared: HashSet<String> = repositories.iter().cloned().collect();
        self.repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(a, r), _| a != agent || declared.contains(r));
        self.declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent.to_owned(), declared);
    }

    /// Records the housekeeping counters an agent reported in a heartbeat. Stats of
    /// repositories it did not declare are dropped and counted, so an agent cannot grow the
    /// coordinator's memory or `/metrics` with made-up names (M11).
    pub fn set_repository_stats(&self, agent: &str, stats: &[RepositoryStats]) {
        let declared = self
            .declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(agent)
            .cloned()
            .unwrap_or_default();
        let mut seen = self
            .repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut dropped = 0_u64;
        for s in stats {
            if !declared.contains(&s.name) {
                dropped += 1;
                continue;
            }
            let labels = [agent, s.name.as_str()];
            let prev = seen.insert((agent.to_owned(), s.name.clone()), s.clone());
            let advance = |c: &IntCounterVec, now: u64, before: Option<u64>| {
                let child = c.with_label_values(&labels);
                match before {
                    Some(b) if now >= b => child.inc_by(now - b),
                    // First report, or the agent restarted and its counter began again.
                    _ => {
                        child.reset();
                        child.inc_by(now);
                    }
                }
            };
            advance(
                &self.repo_stale_uploads,
                s.stale_uploads_aborted,
                prev.as_ref().map(|p| p.stale_uploads_aborted),
            );
            advance(
                &self.repo_janitor_errors,
                s.janitor_errors,
                prev.as_ref().map(|p| p.janitor_errors),
            );
            if let Some(at) = s.janitor_last_success_ms {
                self.repo_janitor_last_success
                    .with_label_values(&labels)
                    .set(secs(at));
            }
        }
        if dropped > 0 {
            self.reports_dropped
                .with_label_values(&[DROPPED_UNDECLARED])
                .inc_by(dropped);
            tracing::debug!(
                %agent,
                dropped,
                "ignored heartbeat stats of repositories the agent did not declare"
            );
        }
    }

    /// Drops the repository series of agents that are not connected (they come back with the
    /// agent's next heartbeat), so agents that come and go do not pile up series.
    fn evict_repositories(&self, connected: &HashSet<&str>) {
        let mut seen = self
            .repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|(agent, repo), _| {
            if connected.contains(agent.as_str()) {
                return true;
            }
            let labels = [agent.as_str(), repo.as_str()];
            for c in [&self.repo_stale_uploads, &self.repo_janitor_errors] {
                let _ = c.remove_label_values(&labels);
            }
            let _ = self.repo_janitor_last_success.remove_label_values(&labels);
            false
        });
    }

    /// The last housekeeping counters of every agent's repositories.
    pub fn repository_stats(&self) -> BTreeMap<(String, String), RepositoryStats> {
        self.repo_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn set_open_incidents(&self, open: &[Incident]) {
        for kind in IncidentKind::ALL {
            let n = open.iter().filter(|i| i.kind == *kind).count();
            self.incidents_open
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts an agent update (one of [`AGENT_UPDATES`]) the catalog could not record.
    pub fn agent_update_dropped(&self, kind: &'static str) {
        self.agent_updates_dropped.with_label_values(&[kind]).inc();
    }

    pub fn notification_sent(&self, webhook: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications_total
            .with_label_values(&[webhook, outcome])
            .inc();
    }

    /// Counts a finished pass of the alert evaluator.
    pub fn alert_evaluated(&self, ok: bool) {
        self.alert_evaluations
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts a finished pass of the webhook notifier.
    pub fn alert_delivery_pass(&self, ok: bool) {
        self.alert_delivery_passes
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn set_pending_notifications(&self, cfg: &AlertsConfig, pending: &[(String, i64)]) {
        for w in &cfg.webhooks {
            let n = pending
                .iter()
                .find(|(name, _)| *name == w.name)
                .map_or(0, |(_, n)| *n);
            self.notifications_pending
                .with_label_values(&[w.name.as_str()])
                .set(n);
        }
    }

    /// Rebuilds the catalog-mirroring gauges from a health report, then renders everything.
    pub fn render_with(
        &self,
        report: &Report,
        running: &[(JobKind, i64)],
        connected: usize,
        alerts: &AlertsConfig,
    ) -> Result<String> {
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_running(running);
        self.set_agents_connected(connected);
        for g in [
            &self.backup_last_success,
            &self.backup_last_duration,
            &self.backup_last_size,
            &self.recovery_point_age,
            &self.rpo,
            &self.rto,
            &self.verify_last_success,
            &self.restore_last_duration,
            &self.agent_last_seen,
            &self.agent_clock_skew,
        ] {
            g.reset();
        }
        self.target_status.reset();
        self.agent_connected.reset();
        for t in &report.targets {
            let l = [t.environment.as_str(), t.name.as_str()];
            for outcome in OUTCOMES {
                self.backups_total
                    .with_label_values(&[l[0], l[1], outcome.as_str()]);
            }
            self.rpo
                .with_label_values(&l)
                .set(t.objective.rpo.as_secs_f64());
            self.rto
                .with_label_values(&l)
                .set(t.objective.rto.as_secs_f64());
            for s in Status::ALL {
                self.target_status
                    .with_label_values(&[l[0], l[1], s.as_str()])
                    .set(i64::from(t.status == s));
            }
            if let Some(b) = &t.last_backup {
                self.backup_last_success
                    .with_label_values(&l)
                    .set(secs(b.recorded_at_ms));
                self.backup_last_duration
                    .with_label_values(&l)
                    .set(secs((b.finished_at_ms - b.started_at_ms).max(0)));
                #[allow(clippy::cast_precision_loss)]
                {
                    self.backup_last_size
                        .with_label_values(&[l[0], l[1], "raw"])
                        .set(b.raw_size as f64);
                    self.backup_last_size
                        .with_label_values(&[l[0], l[1], "stored"])
                        .set(b.stored_size as f64);
                }
            }
            if let Some(age) = t.recovery_point_age_ms {
                self.recovery_point_age.with_label_values(&l).set(secs(age));
            }
            if let Some(v) = &t.last_verify
                && v.state == JobState::Succeeded
            {
                self.verify_last_success
                    .with_label_values(&l)
                    .set(secs(v.finished_at_ms));
            }
            if let Some(d) = t.last_restore.as_ref().and_then(|r| r.duration_ms()) {
                self.restore_last_duration
                    .with_label_values(&l)
                    .set(secs(d));
            }
        }
        self.evict_repositories(
            &report
                .agents
                .iter()
                .filter(|a| a.state != AgentState::Offline)
                .map(|a| a.name.as_str())
                .collect(),
        );
        for a in &report.agents {
            let l = [a.name.as_str(), a.environment.as_str()];
            self.agent_connected
                .with_label_values(&l)
                .set(i64::from(a.state != AgentState::Offline));
            self.agent_last_seen
                .with_label_values(&l)
                .set(secs(a.last_seen_ms));
            self.agent_clock_skew
                .with_label_values(&l)
                .set(secs(a.clock_skew_ms));
        }
        for w in &alerts.webhooks {
            for outcome in ["delivered", "failed"] {
                self.notifications_total
                    .with_label_values(&[w.name.as_str(), outcome]);
            }
            self.notifications_pending
                .with_label_values(&[w.name.as_str()]);
        }
        self.render()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .context("encode metrics")?;
        String::from_utf8(out).context("metrics are not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Progress;

    fn job(kind: JobKind, state: JobState) -> Job {
        Job {
            id: "20261127T233000Z-000001".into(),
            kind,
            state,
            target: "prod/orders".parse().expect("target"),
            agent: "prod-1".into(),
            backup_id: None,
            requested_by: "alice".into(),
            created_at_ms: 0,
            dispatched_at_ms: Some(0),
            started_at_ms: Some(1_000),
            finished_at_ms: Some(61_000),
            error: String::new(),
            progress: Progress::default(),
            detail: String::new(),
            restore: None,
            report: Default::default(),
        }
    }

    #[test]
    fn job_counters_and_histogram() {
        let m = Metrics::new().expect("metrics");
        m.set_agents_connected(2);
        m.set_running(&[(JobKind::Backup, 3)]);
        m.job_finished(&job(JobKind::Backup, JobState::Succeeded));
        m.job_finished(&job(JobKind::Backup, JobState::Failed));
        m.job_finished(&job(JobKind::Restore, JobState::Running));
        let text = m.render().expect("render");
        for needle in [
            "lifeboat_agents_connected 2",
            "lifeboat_jobs_running{kind=\"backup\"} 3",
            "lifeboat_jobs_running{kind=\"verify\"} 0",
            "lifeboat_jobs_total{kind=\"backup\",outcome=\"succeeded\"} 1",
            "lifeboat_jobs_total{kind=\"restore\",outcome=\"failed\"} 0",
            "lifeboat_backups_total{environment=\"prod\",outcome=\"failed\",target=\"orders\"} 1",
            "lifeboat_job_duration_seconds_count{kind=\"backup\"} 2",
            "lifeboat_job_duration_seconds_bucket{kind=\"backup\",le=\"60\"} 2",
            "lifeboat_incidents_open{kind=\"rpo_breach\"} 0",
            "lifeboat_alert_evaluations_total{outcome=\"error\"} 0",
            "lifeboat_alert_delivery_passes_total{outcome=\"ok\"} 0",
            "lifeboat_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn repository_counters_follow_agent_reports_and_restarts() {
        let m = Metrics::new().expect("metrics");
        let stats = |aborted, errors| RepositoryStats {
            name: "s3".into(),
            kind: "s3".into(),
            stale_uploads_aborted: aborted,
            janitor_errors: errors,
            janitor_last_success_ms: Some(1_700_000_000_000),
        };
        m.declare_repositories("prod-1", &["s3".to_owned()]);
        m.set_repository_stats("prod-1", &[stats(2, 0)]);
        m.set_repository_stats("prod-1", &[stats(5, 1)]);
        let text = m.render().expect("render");
        assert!(
            text.contains(
                "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"s3\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains(
            "lifeboat_repository_janitor_last_success_timestamp_seconds{agent=\"prod-1\",repository=\"s3\"} 1700000000"
        ));
        // The agent restarted: its counter began again at 1.
        m.set_repository_stats("prod-1", &[stats(1, 0)]);
        let text = m.render().expect("render");
        assert!(text.contains(
            "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"s3\"} 1"
        ));
        assert_eq!(m.repository_stats().len(), 1);
    }

    #[test]
    fn undeclared_repositories_are_dropped_and_counted() {
        let m = Metrics::new().expect("metrics");
        let stats = |name: &str| RepositoryStats {
            name: name.into(),
            kind: "fs".into(),
            stale_uploads_aborted: 1,
            janitor_errors: 0,
            janitor_last_success_ms: None,
        };
        // Before any Hello nothing is declared.
        m.set_repository_stats("prod-1", &[stats("local")]);
        m.declare_repositories("prod-1", &["local".to_owned()]);
        m.set_repository_stats(
            "prod-1",
            &[stats("local"), stats("made-up"), stats("other")],
        );
        let text = m.render().expect("render");
        assert!(
            text.contains(
                "lifeboat_agent_reports_dropped_total{reason=\"undeclared_repository\"} 3"
            ),
            "{text}"
        );
        assert!(!text.contains("made-up"), "{text}");
        assert_eq!(m.repository_stats().len(), 1);
        // A new Hello without the repository forgets it; a disconnected agent's series go.
        m.declare_repositories("prod-1", &[]);
        assert!(m.repository_stats().is_empty());
        m.declare_repositories("prod-1", &["local".to_owned()]);
        m.set_repository_stats("prod-1", &[stats("local")]);
        m.evict_repositories(&HashSet::new());
        assert!(m.repository_stats().is_empty());
        let text = m.render().expect("render");
        assert!(!text.contains("repository=\"local\""), "{text}");
    }
}
