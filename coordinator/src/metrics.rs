//! Every Prometheus metric of the coordinator, registered at start-up. Labels come from closed
//! sets only: job kinds, outcomes, and environments/targets (bounded by the agents' configs).
//! Job ids never become labels.

use anyhow::{Context, Result};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::model::{Backup, Job, JobKind, JobState};

pub struct Metrics {
    registry: Registry,
    agents_connected: IntGauge,
    jobs_running: IntGaugeVec,
    jobs_total: IntCounterVec,
    backup_last_success: GaugeVec,
    backup_last_size: GaugeVec,
    job_duration: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const OUTCOMES: [JobState; 3] = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let agents_connected = IntGauge::new(
            "lifeboat_agents_connected",
            "Agents with an open session to this coordinator.",
        )?;
        let jobs_running = IntGaugeVec::new(
            Opts::new("lifeboat_jobs_running", "Jobs currently running, by kind."),
            &["kind"],
        )?;
        let jobs_total = IntCounterVec::new(
            Opts::new(
                "lifeboat_jobs_total",
                "Jobs finished since the coordinator started, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        let backup_last_success = GaugeVec::new(
            Opts::new(
                "lifeboat_backup_last_success_timestamp_seconds",
                "Unix time at which the most recent complete backup of a target finished.",
            ),
            &["environment", "target"],
        )?;
        let backup_last_size = GaugeVec::new(
            Opts::new(
                "lifeboat_backup_last_size_bytes",
                "Size of the most recent complete backup of a target: raw dump or stored bytes.",
            ),
            &["environment", "target", "kind"],
        )?;
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "lifeboat_job_duration_seconds",
                "Time from a job's start on its agent to its result, by kind.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
                28800.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(agents_connected.clone()))?;
        registry.register(Box::new(jobs_running.clone()))?;
        registry.register(Box::new(jobs_total.clone()))?;
        registry.register(Box::new(backup_last_success.clone()))?;
        registry.register(Box::new(backup_last_size.clone()))?;
        registry.register(Box::new(job_duration.clone()))?;
        // Every kind and outcome is visible from the start, at zero.
        for kind in JobKind::ALL {
            jobs_running.with_label_values(&[kind.as_str()]).set(0);
            for outcome in OUTCOMES {
                jobs_total.with_label_values(&[kind.as_str(), outcome.as_str()]);
            }
        }
        Ok(Self {
            registry,
            agents_connected,
            jobs_running,
            jobs_total,
            backup_last_success,
            backup_last_size,
            job_duration,
        })
    }

    /// Counts a job that reached a terminal state.
    pub fn job_finished(&self, job: &Job) {
        if !job.state.is_terminal() {
            return;
        }
        self.jobs_total
            .with_label_values(&[job.kind.as_str(), job.state.as_str()])
            .inc();
        if let (Some(start), Some(end)) = (job.started_at_ms, job.finished_at_ms) {
            #[allow(clippy::cast_precision_loss)]
            let secs = (end - start).max(0) as f64 / 1000.0;
            self.job_duration
                .with_label_values(&[job.kind.as_str()])
                .observe(secs);
        }
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

    /// Records the most recent complete backup of its target.
    #[allow(clippy::cast_precision_loss)]
    pub fn set_last_backup(&self, b: &Backup) {
        let short = b
            .target
            .split_once('/')
            .map_or(b.target.as_str(), |(_, n)| n);
        let labels = [b.environment.as_str(), short];
        self.backup_last_success
            .with_label_values(&labels)
            .set(b.finished_at_ms as f64 / 1000.0);
        self.backup_last_size
            .with_label_values(&[labels[0], labels[1], "raw"])
            .set(b.raw_size as f64);
        self.backup_last_size
            .with_label_values(&[labels[0], labels[1], "stored"])
            .set(b.stored_size as f64);
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
    use crate::model::{Engine, Progress, VerifyStatus};

    #[test]
    fn renders_all_metrics_with_conventional_names() {
        let m = Metrics::new().expect("metrics");
        m.set_agents_connected(2);
        m.set_running(&[(JobKind::Backup, 3)]);
        m.job_finished(&Job {
            id: "20261127T233000Z-000001".into(),
            kind: JobKind::Backup,
            state: JobState::Succeeded,
            target: "prod/orders".into(),
            agent: "prod-1".into(),
            backup_id: String::new(),
            requested_by: "alice".into(),
            created_at_ms: 0,
            dispatched_at_ms: Some(0),
            started_at_ms: Some(1_000),
            finished_at_ms: Some(61_000),
            error: String::new(),
            progress: Progress::default(),
            detail: String::new(),
            database: String::new(),
            clean: false,
        });
        m.set_last_backup(&Backup {
            backup_id: "b".into(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: Engine::Postgres,
            provider: "postgres".into(),
            database: "orders".into(),
            server_version: String::new(),
            system_identifier: String::new(),
            dump_tool: String::new(),
            dump_tool_version: String::new(),
            format: String::new(),
            compression: String::new(),
            compression_level: 0,
            raw_size: 1000,
            stored_size: 10,
            raw_sha256: String::new(),
            stored_sha256: String::new(),
            started_at_ms: 0,
            finished_at_ms: 1_700_000_000_000,
            row_counts: vec![],
            data_key: String::new(),
            manifest_key: String::new(),
            verify_status: VerifyStatus::Unverified,
            verified_at_ms: None,
            verify_detail: String::new(),
            job_id: String::new(),
        });
        let text = m.render().expect("render");
        for needle in [
            "lifeboat_agents_connected 2",
            "lifeboat_jobs_running{kind=\"backup\"} 3",
            "lifeboat_jobs_running{kind=\"verify\"} 0",
            "lifeboat_jobs_total{kind=\"backup\",outcome=\"succeeded\"} 1",
            "lifeboat_jobs_total{kind=\"restore\",outcome=\"failed\"} 0",
            "lifeboat_backup_last_success_timestamp_seconds{environment=\"prod\",target=\"orders\"} 1700000000",
            "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"stored\",target=\"orders\"} 10",
            "lifeboat_job_duration_seconds_count{kind=\"backup\"} 1",
            "lifeboat_job_duration_seconds_bucket{kind=\"backup\",le=\"60\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
