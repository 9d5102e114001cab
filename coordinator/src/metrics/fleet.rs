//! The series that grow with the fleet: a set per target, per agent and per agent repository,
//! written as text straight from the scrape's health report and from plain maps of counters.
//!
//! As children of the prometheus crate's vectors they cost about 800 bytes each, held between
//! scrapes (every child keeps its own copy of its family's help text and label pairs), then
//! copied once more into proto messages at every gather: 130–230 MiB at 10,000 agents and
//! targets (ADR 0039). The crate's encoder only takes those proto messages, so the families
//! here are written by [`Family`], which follows the same text format (version 0.0.4): HELP and
//! TYPE lines, label names in alphabetical order, escaped label values.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{OUTCOMES, secs};
use crate::{
    health::{AgentState, Report, Status},
    model::{JobState, RepositoryStats},
};

/// One family of the exposition: its header is written before its first sample, so a family
/// without samples leaves no trace (as the registry's gather drops empty families).
pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    started: bool,
}

impl<'a> Family<'a> {
    pub(super) fn gauge(out: &'a mut String, name: &'static str, help: &'static str) -> Self {
        Self::new(out, name, help, "gauge")
    }

    pub(super) fn counter(out: &'a mut String, name: &'static str, help: &'static str) -> Self {
        Self::new(out, name, help, "counter")
    }

    fn new(
        out: &'a mut String,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
    ) -> Self {
        Self {
            out,
            name,
            help,
            kind,
            started: false,
        }
    }

    /// One sample; `labels` in alphabetical order of their names.
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "{labels:?}");
        if !self.started {
            self.started = true;
            self.out.push_str("# HELP ");
            self.out.push_str(self.name);
            self.out.push(' ');
            escape(self.out, self.help, false);
            let _ = writeln!(self.out, "\n# TYPE {} {}", self.name, self.kind);
        }
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(name);
                self.out.push_str("=\"");
                escape(self.out, value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }
}

/// The text format's escapes: backslash and newline, and the double quote in label values.
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Counts per target and outcome (succeeded, failed, cancelled), since the coordinator started.
pub(super) type Outcomes = BTreeMap<(String, String), [u64; 3]>;

/// An agent repository's counters: the agent's last report, and the coordinator's totals of
/// its increments (the agent's own counters begin again when it restarts).
#[derive(Debug, Clone)]
pub(super) struct RepoSeries {
    pub(super) last: RepositoryStats,
    pub(super) stale_uploads_aborted: u64,
    pub(super) janitor_errors: u64,
    /// The newest successful janitor pass reported: kept while a restarted agent reports
    /// none yet, so an alert on its age goes on firing if the passes keep failing.
    pub(super) janitor_last_success_ms: Option<i64>,
}

pub(super) fn outcome_index(state: JobState) -> Option<usize> {
    OUTCOMES.iter().position(|o| *o == state)
}

/// Adds the counters' series and the report's (an empty report: the counters' alone).
pub(super) fn write(
    out: &mut String,
    report: &Report,
    backups: &Outcomes,
    drills: &Outcomes,
    repos: &BTreeMap<(String, String), RepoSeries>,
) {
    write_counts(
        out,
        backups,
        report.targets.iter().map(|t| (&t.environment, &t.name)),
        "lifeboat_backups_total",
        "Backup jobs finished since the coordinator started, by target and outcome.",
    );
    write_counts(
        out,
        drills,
        report
            .targets
            .iter()
            .filter(|t| t.drill.expected())
            .map(|t| (&t.environment, &t.name)),
        "lifeboat_drills_total",
        "Restore drills of the target that ended, by outcome, since the coordinator started.",
    );
    write_targets(out, report);
    write_agents(out, report);
    write_repositories(out, repos);
}

/// A counter per target and outcome: every target counted, and the report's at zero.
fn write_counts<'r>(
    out: &mut String,
    counted: &Outcomes,
    listed: impl Iterator<Item = (&'r String, &'r String)>,
    name: &'static str,
    help: &'static str,
) {
    let mut all: BTreeMap<(&str, &str), [u64; 3]> = counted
        .iter()
        .map(|((e, t), n)| ((e.as_str(), t.as_str()), *n))
        .collect();
    for (e, t) in listed {
        all.entry((e.as_str(), t.as_str())).or_default();
    }
    let mut f = Family::counter(out, name, help);
    for ((env, target), counts) in all {
        for (outcome, n) in OUTCOMES.iter().zip(counts) {
            #[allow(clippy::cast_precision_loss)]
            f.sample(
                &[
                    ("environment", env),
                    ("outcome", outcome.as_str()),
                    ("target", target),
                ],
                n as f64,
            );
        }
    }
}

/// A gauge per target, where `value` has one.
fn per_target(
    out: &mut String,
    report: &Report,
    name: &'static str,
    help: &'static str,
    value: impl Fn(&crate::health::TargetHealth) -> Option<f64>,
) {
    let mut f = Family::gauge(out, name, help);
    for t in &report.targets {
        if let Some(v) = value(t) {
            f.sample(&[("environment", &t.environment), ("target", &t.name)], v);
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn write_targets(out: &mut String, report: &Report) {
    per_target(
        out,
        report,
        "lifeboat_backup_last_duration_seconds",
        "How long the most recent complete backup of a target took.",
        |t| {
            t.last_backup
                .as_ref()
                .map(|b| secs((b.finished_at_ms - b.started_at_ms).max(0)))
        },
    );
    let mut f = Family::gauge(
        out,
        "lifeboat_backup_last_size_bytes",
        "Size of the most recent complete backup of a target: raw dump or stored bytes.",
    );
    for t in &report.targets {
        if let Some(b) = &t.last_backup {
            for (kind, size) in [("raw", b.raw_size), ("stored", b.stored_size)] {
                f.sample(
                    &[
                        ("environment", &t.environment),
                        ("kind", kind),
                        ("target", &t.name),
                    ],
                    size as f64,
                );
            }
        }
    }
    per_target(
        out,
        report,
        "lifeboat_backup_last_success_timestamp_seconds",
        "Unix time at which the coordinator recorded the most recent complete backup of a target.",
        |t| t.last_backup.as_ref().map(|b| secs(b.recorded_at_ms)),
    );
    let mut f = Family::gauge(
        out,
        "lifeboat_copy_last_success_timestamp_seconds",
        "Unix time the coordinator recorded the newest backup of the target that has a copy in \
         the repository (0: none yet), for each repository it copies to.",
    );
    for t in &report.targets {
        for c in &t.copies {
            f.sample(
                &[
                    ("environment", &t.environment),
                    ("repository", &c.repository),
                    ("target", &t.name),
                ],
                c.newest.as_ref().map_or(0.0, |(_, at)| secs(*at)),
            );
        }
    }
    per_target(
        out,
        report,
        "lifeboat_drill_duration_seconds",
        "Measured RTO of the target's last restore drill that passed: job start to a restored, \
         checked database.",
        |t| t.drill.measured_rto.map(|m| m.as_secs_f64()),
    );
    per_target(
        out,
        report,
        "lifeboat_drill_last_success_timestamp_seconds",
        "Unix time the target's last restore drill that passed ended.",
        |t| {
            t.drill
                .last_success
                .as_ref()
                .and_then(|s| s.finished_at_ms)
                .map(secs)
        },
    );
    per_target(
        out,
        report,
        "lifeboat_recovery_point_age_seconds",
        "Age of the most recent complete backup of a target (absent without one).",
        |t| t.recovery_point_age_ms.map(secs),
    );
    per_target(
        out,
        report,
        "lifeboat_restore_last_duration_seconds",
        "How long the most recent successful restore into a target took.",
        |t| {
            t.last_restore
                .as_ref()
                .and_then(|r| r.duration_ms())
                .map(secs)
        },
    );
    per_target(
        out,
        report,
        "lifeboat_rpo_seconds",
        "Declared recovery point objective of a target.",
        |t| Some(t.objective.rpo.as_secs_f64()),
    );
    per_target(
        out,
        report,
        "lifeboat_rto_seconds",
        "Declared recovery time objective of a target.",
        |t| Some(t.objective.rto.as_secs_f64()),
    );
    let mut f = Family::gauge(
        out,
        "lifeboat_target_status",
        "1 for the target's current backup status (ok, warning, critical), 0 otherwise.",
    );
    for t in &report.targets {
        for s in Status::ALL {
            f.sample(
                &[
                    ("environment", &t.environment),
                    ("status", s.as_str()),
                    ("target", &t.name),
                ],
                f64::from(u8::from(t.status == s)),
            );
        }
    }
    per_target(
        out,
        report,
        "lifeboat_verify_last_success_timestamp_seconds",
        "Unix time at which the most recent successful verification of a backup of a target \
         finished.",
        |t| {
            t.last_verify
                .as_ref()
                .filter(|v| v.state == JobState::Succeeded)
                .map(|v| secs(v.finished_at_ms))
        },
    );
}

/// A family whose samples come one per item of a list.
struct Per<T> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&T) -> Option<f64>,
}

fn write_agents(out: &mut String, report: &Report) {
    let families: [Per<crate::health::AgentHealth>; 3] = [
        Per {
            name: "lifeboat_agent_clock_skew_seconds",
            help: "Agent clock minus coordinator clock at its last Hello or heartbeat.",
            kind: "gauge",
            value: |a| Some(secs(a.clock_skew_ms)),
        },
        Per {
            name: "lifeboat_agent_connected",
            help: "1 if the agent has an open session to this coordinator, else 0.",
            kind: "gauge",
            value: |a| Some(f64::from(u8::from(a.state != AgentState::Offline))),
        },
        Per {
            name: "lifeboat_agent_last_seen_timestamp_seconds",
            help: "Unix time of the agent's last Hello or heartbeat.",
            kind: "gauge",
            value: |a| Some(secs(a.last_seen_ms)),
        },
    ];
    for p in families {
        let mut f = Family::new(out, p.name, p.help, p.kind);
        for a in &report.agents {
            if let Some(v) = (p.value)(a) {
                f.sample(&[("agent", &a.name), ("environment", &a.environment)], v);
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn write_repositories(out: &mut String, repos: &BTreeMap<(String, String), RepoSeries>) {
    let families: [Per<RepoSeries>; 3] = [
        Per {
            name: "lifeboat_repository_janitor_errors_total",
            help: "Janitor passes over a repository that failed, as reported by the agent.",
            kind: "counter",
            value: |r| Some(r.janitor_errors as f64),
        },
        Per {
            name: "lifeboat_repository_janitor_last_success_timestamp_seconds",
            help: "Unix time of the last janitor pass over a repository that finished without \
                   error.",
            kind: "gauge",
            value: |r| r.janitor_last_success_ms.map(secs),
        },
        Per {
            name: "lifeboat_repository_stale_uploads_aborted_total",
            help: "Incomplete uploads the agent's janitor removed from a repository, as \
                   reported by the agent (resets when the agent restarts).",
            kind: "counter",
            value: |r| Some(r.stale_uploads_aborted as f64),
        },
    ];
    for p in families {
        let mut f = Family::new(out, p.name, p.help, p.kind);
        for ((agent, repository), r) in repos {
            if let Some(v) = (p.value)(r) {
                f.sample(&[("agent", agent), ("repository", repository)], v);
            }
        }
    }
}
