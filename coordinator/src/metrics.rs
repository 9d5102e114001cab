//! Every Prometheus metric of the coordinator, registered at start-up. Labels come from closed
//! sets only: job kinds, outcomes, statuses, incident kinds, and agent, environment, target,
//! repository and webhook names (bounded by configs). Job and backup ids never become labels.
//!
//! Gauges that mirror the catalog are written from it on every scrape ([`Metrics::render_with`]),
//! so they are right after a restart and series of removed targets disappear. Counters count
//! events since this coordinator started. The series that grow with the fleet (per agent,
//! target and agent repository) are not held in the registry: see [`fleet`].

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
    health::{AgentState, Report},
    model::{Job, JobKind, JobState, RepositoryStats},
};

pub struct Metrics {
    registry: Registry,
    catalog_up: IntGauge,
    /// Held while gauges are rebuilt and rendered, so a scrape never sees half a rebuild.
    scrape: Mutex<()>,
    agents_connected: IntGauge,
    jobs_running: IntGaugeVec,
    jobs_total: IntCounterVec,
    job_duration: HistogramVec,
    backups_by_key: IntGaugeVec,
    backups_plaintext: IntGaugeVec,
    pitr_last_archived: GaugeVec,
    pitr_gaps: IntGaugeVec,
    pitr_pending: IntGaugeVec,
    pitr_failed: IntGaugeVec,
    /// The last reported counters per (agent, repository), to turn them into increments.
    /// Only repositories the agent declared in its Hello (at most
    /// [`crate::wire::MAX_REPOSITORIES`]), and only while the agent is connected (M11).
    repo_seen: Mutex<BTreeMap<(String, String), fleet::RepoSeries>>,
    /// Backup jobs and restore drills ended per target and outcome, since start.
    backups: Mutex<fleet::Outcomes>,
    drills: Mutex<fleet::Outcomes>,
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
    agent_update_seconds: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// 1 on the active coordinator of a catalog, 0 on a standby (one per catalog is active).
pub const LEADER: &str = "lifeboat_coordinator_leader";
pub const LEADER_HELP: &str = "1 if this coordinator is the active one of its catalog (it holds the catalog's lock and serves), 0 while it stands by.";

const OUTCOMES: [JobState; 3] = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];
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
            backups_by_key: int_gauge(
                "lifeboat_backups_by_key",
                "Kept backups whose key object is encrypted to the key id (a key that protects \
                 none may be destroyed).",
                &["key_id"],
            )?,
            backups_plaintext: int_gauge(
                "lifeboat_backups_plaintext",
                "Kept backups of the target stored without client-side encryption.",
                &["target"],
            )?,
            pitr_last_archived: gauge(
                "lifeboat_pitr_last_archived_timestamp_seconds",
                "Unix time the newest WAL segment of a physical target was stored in its \
                 repository, as its agent last reported.",
                &["environment", "target"],
            )?,
            pitr_gaps: int_gauge(
                "lifeboat_pitr_archive_gaps",
                "WAL segments missing between archived ones of a physical target (at most 32 \
                 counted).",
                &["environment", "target"],
            )?,
            pitr_pending: int_gauge(
                "lifeboat_pitr_archive_pending_segments",
                "Finished WAL segments the server has not archived yet (-1: unknown).",
                &["environment", "target"],
            )?,
            pitr_failed: int_gauge(
                "lifeboat_pitr_archiver_failures",
                "pg_stat_archiver.failed_count of a physical target's server.",
                &["environment", "target"],
            )?,
            repo_seen: Mutex::new(BTreeMap::new()),
            backups: Mutex::new(fleet::Outcomes::new()),
            drills: Mutex::new(fleet::Outcomes::new()),
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
            agent_update_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "lifeboat_agent_update_seconds",
                    "Time the coordinator took to record an agent's heartbeat, acceptance or \
                     progress update in the catalog, by kind.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
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
        // Metrics exist only in a serving coordinator, which is the active one; a standby
        // answers 0 itself (standby.rs).
        let leader = IntGauge::new(LEADER, LEADER_HELP)?;
        leader.set(1);
        m.registry.register(Box::new(build_info))?;
        m.registry.register(Box::new(start_time))?;
        m.registry.register(Box::new(leader))?;
        m.registry.register(Box::new(m.catalog_up.clone()))?;
        m.registry.register(Box::new(m.agents_connected.clone()))?;
        m.registry.register(Box::new(m.jobs_running.clone()))?;
        m.registry.register(Box::new(m.jobs_total.clone()))?;
        m.registry.register(Box::new(m.job_duration.clone()))?;
        m.registry.register(Box::new(m.backups_by_key.clone()))?;
        m.registry.register(Box::new(m.backups_plaintext.clone()))?;
        m.registry
            .register(Box::new(m.pitr_last_archived.clone()))?;
        m.registry.register(Box::new(m.pitr_gaps.clone()))?;
        m.registry.register(Box::new(m.pitr_pending.clone()))?;
        m.registry.register(Box::new(m.pitr_failed.clone()))?;
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
        m.registry
            .register(Box::new(m.agent_update_seconds.clone()))?;
        for kind in AGENT_UPDATES {
            m.agent_updates_dropped.with_label_values(&[kind]);
            m.agent_update_seconds.with_label_values(&[kind]);
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
}

mod events;
mod fleet;
mod render;
#[cfg(test)]
mod tests;
