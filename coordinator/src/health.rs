//! Judging targets and agents: pure functions of a catalog snapshot, the config and `now`.
//! `/health/*`, `/metrics` and the alerts all read their verdicts from here, so they agree.

use std::time::Duration;

use serde::Serialize;

pub mod copies;
pub mod drill;

use crate::{
    catalog::health::{BackupFacts, JobFacts, Snapshot, TargetFacts},
    config::Config,
    model::{AgentRecord, JobKind, JobState, VerifyStatus},
    objectives::{HealthConfig, Objective, Objectives},
};

/// A verdict, ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Ok, Status::Warning, Status::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// The scheduler's health: critical when no pass has completed for
/// [`crate::scheduler::health::STALL_AFTER`] (schedules are not being run), warning when the last pass
/// failed but an earlier one is recent.
pub fn assess_scheduler(
    h: &crate::scheduler::health::SchedulerHealth,
    now_ms: i64,
    started_at_ms: i64,
) -> (Status, Vec<String>) {
    let stall =
        i64::try_from(crate::scheduler::health::STALL_AFTER.as_millis()).unwrap_or(i64::MAX);
    let since = h.last_ok_ms.unwrap_or(started_at_ms);
    let error = h
        .last_error
        .as_ref()
        .filter(|(at, _)| h.last_ok_ms.is_none_or(|ok| *at > ok));
    if now_ms.saturating_sub(since) > stall {
        let mut why = format!(
            "the scheduler has not completed a pass for {} s; scheduled backups are not being started",
            now_ms.saturating_sub(since) / 1000
        );
        if let Some((_, e)) = error {
            why.push_str(&format!(" (last error: {})", public_reason(e)));
        }
        return (Status::Critical, vec![why]);
    }
    match error {
        Some((_, e)) => (
            Status::Warning,
            vec![format!(
                "the scheduler's last pass failed: {}",
                public_reason(e)
            )],
        ),
        None => (Status::Ok, Vec::new()),
    }
}

/// The health of one target's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// `ENV/NAME`.
    pub target: String,
    pub environment: String,
    pub name: String,
    pub agent: String,
    /// The worst of `rpo_status` and the other checks.
    pub status: Status,
    /// Recovery point age against the RPO alone.
    pub rpo_status: Status,
    /// Why the status is not ok, one line each.
    pub reasons: Vec<String>,
    pub objective: Objective,
    pub first_seen_ms: i64,
    /// The newest complete backup.
    pub last_backup: Option<BackupFacts>,
    /// Age of the newest complete backup (since the coordinator recorded it); None without one.
    pub recovery_point_age_ms: Option<i64>,
    /// The newest failed backup job.
    pub last_failure: Option<JobFacts>,
    /// Whether the most recent backup attempt failed (after the newest success).
    pub failing: bool,
    /// The newest finished verify job.
    pub last_verify: Option<JobFacts>,
    /// The newest successful restore into this target.
    pub last_restore: Option<JobFacts>,
    /// The newest failed restore into this target, if it is the latest restore.
    pub restore_failing: Option<JobFacts>,
    /// Stored sizes of the backups before the newest (newest first), for the size check.
    pub previous_stored_sizes: Vec<u64>,
    /// Its restore drills (of its backups, wherever they were restored).
    pub drill: drill::DrillHealth,
    /// Its copies, per repository.
    pub copies: Vec<copies::CopyHealth>,
}

fn human(d: Duration) -> String {
    // Whole seconds read better than "1h 2m 3s 456ms 789us".
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn ms_to_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Judges one target at `now_ms`.
pub fn assess_target(f: &TargetFacts, objectives: &Objectives, now_ms: i64) -> TargetHealth {
    let target = &f.target.name;
    let objective = objectives.for_target(target);
    let warning_age = objectives.warning_age(objective.rpo);
    let last_backup = f.last_backup().cloned();
    let mut reasons = Vec::new();

    let (rpo_status, age_ms) = match &last_backup {
        Some(b) => {
            // The coordinator's clock (N26): an agent whose clock runs ahead must not make its
            // backups look fresher than they are.
            let age_ms = now_ms.saturating_sub(b.recorded_at_ms).max(0);
            let age = ms_to_duration(age_ms);
            let status = if age > objective.rpo {
                reasons.push(format!(
                    "newest complete backup is {} old, beyond the RPO of {}",
                    human(age),
                    human(objective.rpo)
                ));
                Status::Critical
            } else if age > warning_age {
                reasons.push(format!(
                    "newest complete backup is {} old, {}% of the RPO of {}",
                    human(age),
                    age.as_millis() * 100 / objective.rpo.as_millis().max(1),
                    human(objective.rpo)
                ));
                Status::Warning
            } else {
                Status::Ok
            };
            (status, Some(age_ms))
        }
        None => {
            let waited = ms_to_duration(now_ms.saturating_sub(f.first_seen_ms));
            let status = if waited > objective.rpo {
                reasons.push(format!(
                    "no complete backup in the {} since the target was registered (RPO {})",
                    human(waited),
                    human(objective.rpo)
                ));
                Status::Critical
            } else {
                reasons.push("no complete backup yet".to_owned());
                Status::Warning
            };
            (status, None)
        }
    };

    let last_failure = f.last_failed.get(JobKind::Backup.as_str()).cloned();
    let failing = f
        .last_finished(JobKind::Backup)
        .is_some_and(|j| j.state == JobState::Failed);
    let mut status = rpo_status;
    if failing && let Some(j) = &last_failure {
        reasons.push(format!(
            "the last backup failed: {}",
            public_reason(&j.error)
        ));
        status = status.max(Status::Warning);
    }
    if let Some(b) = &last_backup
        && matches!(
            b.verify_status,
            VerifyStatus::Corrupt | VerifyStatus::Missing
        )
    {
        reasons.push(format!(
            "the newest backup {} failed verification ({})",
            b.backup_id, b.verify_status
        ));
        status = status.max(Status::Warning);
    }
    let last_restore = f.last_succeeded.get(JobKind::Restore.as_str()).cloned();
    if let Some(d) = last_restore.as_ref().and_then(JobFacts::duration_ms)
        && ms_to_duration(d) > objective.rto
    {
        reasons.push(format!(
            "the last restore took {}, beyond the RTO of {}",
            human(ms_to_duration(d)),
            human(objective.rto)
        ));
        status = status.max(Status::Warning);
    }
    let (drill, drill_status) = drill::assess(&f.drills, &objective, &mut reasons);
    status = status.max(drill_status);
    let (copies, copies_status) =
        copies::assess(&f.copies, last_backup.as_ref(), now_ms, &mut reasons);
    status = status.max(copies_status);
    let last_verify = f.last_finished(JobKind::Verify).cloned();
    let restore_failing = f
        .last_finished(JobKind::Restore)
        .filter(|j| j.state == JobState::Failed)
        .cloned();

    TargetHealth {
        environment: f.target.name.env().to_owned(),
        name: f.target.name.name().to_owned(),
        agent: f.target.agent.clone(),
        target: target.to_string(),
        status,
        rpo_status,
        reasons,
        objective,
        first_seen_ms: f.first_seen_ms,
        recovery_point_age_ms: age_ms,
        last_backup,
        last_failure,
        failing,
        last_verify,
        last_restore,
        restore_failing,
        previous_stored_sizes: f
            .recent_backups
            .iter()
            .skip(1)
            .map(|b| b.stored_size)
            .collect(),
        drill,
        copies,
    }
}

/// First line of an error, for one-line reasons.
pub fn one_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Longest failure reason shown without authentication (`/health*`) or sent to webhooks.
const PUBLIC_REASON_CHARS: usize = 200;

/// A failure reason fit for the unauthenticated HTTP port and webhooks: the first line, with
/// quoted text (row values, object names, tool output in quotes) replaced by `'…'`, `user@host`
/// words by `…@…`, control characters dropped, at most 200 characters. The full text stays in
/// `lifeboat jobs show` (mutual TLS) and the agent's log.
pub fn public_reason(s: &str) -> String {
    let line = one_line(s);
    let mut out = String::with_capacity(line.len().min(PUBLIC_REASON_CHARS + 4));
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Skip to the matching quote (or the end of the line).
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                out.push(c);
                out.push('…');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let words: Vec<String> = out
        .split(' ')
        .map(|w| {
            let at = w.find('@');
            match at {
                Some(i) if i > 0 && i + 1 < w.len() => "…@…".to_owned(),
                _ => w.to_owned(),
            }
        })
        .collect();
    let mut out = words.join(" ");
    if out.chars().count() > PUBLIC_REASON_CHARS {
        out = out.chars().take(PUBLIC_REASON_CHARS).collect();
        out.push('…');
    }
    out
}

/// Whether an agent is connected and heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Session open, heartbeats arriving.
    Connected,
    /// Session open, but no message for longer than `health.agent_stale_after`.
    Stale,
    /// No session.
    Offline,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Connected => "connected",
            AgentState::Stale => "stale",
            AgentState::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHealth {
    pub name: String,
    pub environment: String,
    pub version: String,
    pub state: AgentState,
    pub status: Status,
    pub reasons: Vec<String>,
    pub last_seen_ms: i64,
    /// Agent clock minus coordinator clock, as of its last Hello or heartbeat.
    pub clock_skew_ms: i64,
    pub clock_skew_status: Status,
    /// Since when it has had no session (offline agents only).
    pub offline_since_ms: Option<i64>,
}

/// Judges one agent. `away_since_ms`: when its last session ended, or when this coordinator
/// started (it cannot have been seen offline for longer than it has been watching).
pub fn assess_agent(
    a: &AgentRecord,
    connected: bool,
    away_since_ms: i64,
    cfg: &HealthConfig,
    heartbeat: Duration,
    offline_alert_after: Duration,
    now_ms: i64,
) -> AgentHealth {
    let mut reasons = Vec::new();
    let silent = ms_to_duration(now_ms.saturating_sub(a.last_seen_ms));
    let (state, offline_since_ms) = if connected {
        if silent > cfg.stale_after(heartbeat) {
            (AgentState::Stale, None)
        } else {
            (AgentState::Connected, None)
        }
    } else {
        (AgentState::Offline, Some(a.last_seen_ms.max(away_since_ms)))
    };
    let mut status = match state {
        AgentState::Connected => Status::Ok,
        AgentState::Stale => {
            reasons.push(format!("no message for {}", human(silent)));
            Status::Warning
        }
        AgentState::Offline => {
            let since = offline_since_ms.unwrap_or(now_ms);
            let away = ms_to_duration(now_ms.saturating_sub(since));
            reasons.push(format!("not connected for {}", human(away)));
            if away >= offline_alert_after {
                Status::Critical
            } else {
                Status::Warning
            }
        }
    };
    let skew = ms_to_duration(a.clock_skew_ms.saturating_abs());
    let clock_skew_status = if skew > cfg.max_clock_skew {
        reasons.push(format!(
            "clock is {} {} the coordinator's (limit {})",
            human(skew),
            if a.clock_skew_ms > 0 {
                "ahead of"
            } else {
                "behind"
            },
            human(cfg.max_clock_skew)
        ));
        Status::Warning
    } else {
        Status::Ok
    };
    status = status.max(clock_skew_status);
    AgentHealth {
        name: a.name.clone(),
        environment: a.environment.clone(),
        version: a.version.clone(),
        state,
        status,
        reasons,
        last_seen_ms: a.last_seen_ms,
        clock_skew_ms: a.clock_skew_ms,
        clock_skew_status,
        offline_since_ms,
    }
}

/// The verdicts of one pass over a catalog snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub targets: Vec<TargetHealth>,
    pub agents: Vec<AgentHealth>,
}

impl Report {
    pub fn assess(
        snapshot: &Snapshot,
        config: &Config,
        connected: &dyn Fn(&str) -> bool,
        away_since_ms: &dyn Fn(&str) -> i64,
        now_ms: i64,
    ) -> Self {
        Self {
            targets: snapshot
                .targets
                .iter()
                .map(|t| assess_target(t, &config.objectives, now_ms))
                .collect(),
            agents: snapshot
                .agents
                .iter()
                .map(|a| {
                    assess_agent(
                        a,
                        connected(&a.name),
                        away_since_ms(&a.name),
                        &config.health,
                        config.jobs.heartbeat_interval,
                        config.alerts.agent_offline_after,
                        now_ms,
                    )
                })
                .collect(),
        }
    }

    /// The worst verdict of all targets and agents.
    pub fn status(&self) -> Status {
        self.targets
            .iter()
            .map(|t| t.status)
            .chain(self.agents.iter().map(|a| a.status))
            .max()
            .unwrap_or(Status::Ok)
    }
}

/// Median of the values (mean of the middle two for an even count). None if empty.
pub fn median(values: &[u64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let m = if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    };
    Some(m)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lifeboat_common::names::TargetName;

    use super::*;
    use crate::model::{Engine, TargetRecord};

    const H: i64 = 3_600_000;

    fn facts(backups: &[(i64, u64)], failed_at: Option<i64>) -> TargetFacts {
        let mut last_failed = BTreeMap::new();
        if let Some(at) = failed_at {
            last_failed.insert(
                "backup",
                JobFacts {
                    job_id: "j-failed".into(),
                    kind: JobKind::Backup,
                    state: JobState::Failed,
                    backup_id: "b-x".into(),
                    error: "pg_dump exited with status 1\nmore".into(),
                    started_at_ms: Some(at - 1000),
                    finished_at_ms: at,
                },
            );
        }
        let mut last_succeeded = BTreeMap::new();
        if let Some((at, _)) = backups.first() {
            last_succeeded.insert(
                "backup",
                JobFacts {
                    job_id: "j-ok".into(),
                    kind: JobKind::Backup,
                    state: JobState::Succeeded,
                    backup_id: "b0".into(),
                    error: String::new(),
                    started_at_ms: Some(at - 1000),
                    finished_at_ms: *at,
                },
            );
        }
        TargetFacts {
            copies: Vec::new(),
            target: TargetRecord {
                encryption: None,
                copy_to: Vec::new(),
                name: TargetName::new("prod", "orders").expect("name"),
                agent: "prod-1".into(),
                engine: Engine::Postgres,
                provider: "postgres".into(),
                repository: "local".into(),
                database: "orders".into(),
            },
            first_seen_ms: 0,
            recent_backups: backups
                .iter()
                .enumerate()
                .map(|(i, (at, size))| BackupFacts {
                    backup_id: format!("b{i}"),
                    raw_size: size * 10,
                    stored_size: *size,
                    started_at_ms: at - 1000,
                    finished_at_ms: *at,
                    recorded_at_ms: *at,
                    verify_status: VerifyStatus::Unverified,
                    verified_at_ms: None,
                })
                .collect(),
            last_succeeded,
            last_failed,
            drills: Default::default(),
        }
    }

    fn objectives() -> Objectives {
        Objectives::default() // RPO 26 h, warning at 80 % (20.8 h)
    }

    #[test]
    fn rpo_table() {
        let now = 100 * H;
        for (age_h, want) in [
            (1, Status::Ok),
            (20, Status::Ok),
            (21, Status::Warning),
            (26, Status::Warning),
            (27, Status::Critical),
        ] {
            let t = assess_target(&facts(&[(now - age_h * H, 100)], None), &objectives(), now);
            assert_eq!(t.rpo_status, want, "age {age_h} h: {:?}", t.reasons);
            assert_eq!(t.recovery_point_age_ms, Some(age_h * H));
        }
    }

    #[test]
    fn never_backed_up_is_a_warning_then_critical() {
        let t = assess_target(&facts(&[], None), &objectives(), 25 * H);
        assert_eq!(t.status, Status::Warning);
        assert_eq!(t.recovery_point_age_ms, None);
        let t = assess_target(&facts(&[], None), &objectives(), 27 * H);
        assert_eq!(t.status, Status::Critical, "{:?}", t.reasons);
    }

    #[test]
    fn failing_backup_is_a_warning_until_a_newer_success() {
        let now = 100 * H;
        let t = assess_target(
            &facts(&[(now - H, 1)], Some(now - 1000)),
            &objectives(),
            now,
        );
        assert!(t.failing);
        assert_eq!((t.rpo_status, t.status), (Status::Ok, Status::Warning));
        assert!(
            t.reasons[0].contains("pg_dump exited with status 1"),
            "{:?}",
            t.reasons
        );
        assert!(!t.reasons[0].contains("more"));
        let t = assess_target(
            &facts(&[(now - H, 1)], Some(now - 2 * H)),
            &objectives(),
            now,
        );
        assert!(!t.failing);
        assert_eq!(t.status, Status::Ok);
        assert!(
            t.last_failure.is_some(),
            "the last failure is still reported"
        );
    }

    #[test]
    fn a_restore_slower_than_the_rto_is_a_warning() {
        let now = 100 * H;
        let mut f = facts(&[(now - H, 1)], None);
        let restore = |took_ms: i64| JobFacts {
            job_id: "r".into(),
            kind: JobKind::Restore,
            state: JobState::Succeeded,
            backup_id: "b0".into(),
            error: String::new(),
            started_at_ms: Some(now - took_ms),
            finished_at_ms: now,
        };
        // Within the default RTO of 4 h.
        f.last_succeeded.insert("restore", restore(3 * H));
        let t = assess_target(&f, &objectives(), now);
        assert_eq!(t.status, Status::Ok, "{:?}", t.reasons);
        f.last_succeeded.insert("restore", restore(5 * H));
        let t = assess_target(&f, &objectives(), now);
        assert_eq!((t.rpo_status, t.status), (Status::Ok, Status::Warning));
        assert!(
            t.reasons[0].contains("took 5h, beyond the RTO of 4h"),
            "{:?}",
            t.reasons
        );
    }

    fn agent(last_seen: i64, skew: i64) -> AgentRecord {
        AgentRecord {
            name: "prod-1".into(),
            environment: "prod".into(),
            version: "1".into(),
            last_seen_ms: last_seen,
            clock_skew_ms: skew,
            max_concurrent_jobs: 2,
        }
    }

    #[test]
    fn agent_table() {
        let cfg = HealthConfig::default();
        let hb = Duration::from_secs(10);
        let off = Duration::from_secs(600);
        let now = 1_000_000_000;
        let a = assess_agent(&agent(now - 5_000, 0), true, 0, &cfg, hb, off, now);
        assert_eq!((a.state, a.status), (AgentState::Connected, Status::Ok));
        let a = assess_agent(&agent(now - 31_000, 0), true, 0, &cfg, hb, off, now);
        assert_eq!((a.state, a.status), (AgentState::Stale, Status::Warning));
        let a = assess_agent(&agent(now - 5_000, -31_000), true, 0, &cfg, hb, off, now);
        assert_eq!(a.clock_skew_status, Status::Warning);
        assert!(a.reasons[0].contains("behind"), "{:?}", a.reasons);
        // Offline: measured from the later of last seen and the coordinator's start.
        let a = assess_agent(
            &agent(now - 700_000, 0),
            false,
            now - 60_000,
            &cfg,
            hb,
            off,
            now,
        );
        assert_eq!((a.state, a.status), (AgentState::Offline, Status::Warning));
        assert_eq!(a.offline_since_ms, Some(now - 60_000));
        let a = assess_agent(&agent(now - 700_000, 0), false, 0, &cfg, hb, off, now);
        assert_eq!(a.status, Status::Critical);
    }

    #[test]
    fn median_of_sizes() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5.0));
        assert_eq!(median(&[9, 1, 5]), Some(5.0));
        assert_eq!(median(&[1, 2, 3, 10]), Some(2.5));
    }

    #[test]
    fn a_stalled_or_failing_scheduler_is_reported() {
        use crate::scheduler::health::SchedulerHealth;
        let t0 = 1_000_000;
        let fresh = SchedulerHealth::default();
        // Just started, no pass yet: fine for a while.
        assert_eq!(assess_scheduler(&fresh, t0 + 5_000, t0).0, Status::Ok);
        let (s, why) = assess_scheduler(&fresh, t0 + 40_000, t0);
        assert_eq!(s, Status::Critical);
        assert!(why[0].contains("40 s"), "{why:?}");
        let ok = SchedulerHealth {
            last_ok_ms: Some(t0 + 39_000),
            ..SchedulerHealth::default()
        };
        assert_eq!(assess_scheduler(&ok, t0 + 40_000, t0), (Status::Ok, vec![]));
        // An error after the last good pass: a warning while that pass is recent...
        let failing = SchedulerHealth {
            last_error: Some((t0 + 39_500, "catalog query: database is locked".into())),
            ..ok.clone()
        };
        let (s, why) = assess_scheduler(&failing, t0 + 40_000, t0);
        assert_eq!(s, Status::Warning);
        assert!(why[0].contains("database is locked"), "{why:?}");
        // ...critical, with the error, once passes have failed for too long.
        let (s, why) = assess_scheduler(&failing, t0 + 80_000, t0);
        assert_eq!(s, Status::Critical);
        assert!(why[0].contains("database is locked"), "{why:?}");
        // An old error before a newer good pass is over.
        let recovered = SchedulerHealth {
            last_error: Some((t0 + 1_000, "boom".into())),
            ..ok
        };
        assert_eq!(assess_scheduler(&recovered, t0 + 40_000, t0).0, Status::Ok);
    }

    #[test]
    fn public_reasons_carry_no_row_values_users_or_hosts() {
        let raw = "restore failed: pg_restore: ERROR: duplicate key value violates unique constraint \"users_pkey\" DETAIL: Key (email)=('alice@example.com') already exists; connection to app_owner@db.internal:5432 \x1b[31m\nsecond line with secret";
        let r = public_reason(raw);
        assert!(!r.contains("alice"), "{r}");
        assert!(!r.contains("users_pkey"), "{r}");
        assert!(!r.contains("app_owner"), "{r}");
        assert!(!r.contains("db.internal"), "{r}");
        assert!(!r.contains("second line"), "{r}");
        assert!(!r.chars().any(char::is_control), "{r:?}");
        assert!(
            r.starts_with("restore failed: pg_restore: ERROR: duplicate key"),
            "{r}"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            public_reason(&long).chars().count(),
            PUBLIC_REASON_CHARS + 1
        );
        assert_eq!(
            public_reason("pg_dump exited with status 1"),
            "pg_dump exited with status 1"
        );
    }
}
