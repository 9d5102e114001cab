//! Which incidents should be open: a pure function of the health verdicts, the config and
//! `now`; and what to change given the incidents that are open.

use std::collections::HashMap;

use super::{
    AlertsConfig, Incident, IncidentKind, NewIncident, Severity, config::SIZE_MIN_HISTORY,
};
use crate::health::{self, AgentHealth, AgentState, Status, TargetHealth, public_reason};

fn human_ms(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub incident: NewIncident,
    /// False while a condition holds but has not lasted long enough to open an incident (an
    /// agent offline for less than the threshold): an open incident stays open, none opens.
    pub may_open: bool,
}

/// The conditions that hold now.
pub fn conditions(
    targets: &[TargetHealth],
    agents: &[AgentHealth],
    cfg: &AlertsConfig,
    now_ms: i64,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::new();
    for t in targets {
        let new = |kind, severity, summary: String, detail: String| Condition {
            incident: NewIncident {
                kind,
                subject: t.target.clone(),
                environment: t.environment.clone(),
                severity,
                summary,
                detail,
            },
            may_open: true,
        };
        if t.rpo_status == Status::Critical {
            let summary = match t.recovery_point_age_ms {
                Some(age) => format!(
                    "{}: newest complete backup is {} old, beyond its RPO of {}",
                    t.target,
                    human_ms(age),
                    human_ms(i64::try_from(t.objective.rpo.as_millis()).unwrap_or(i64::MAX))
                ),
                None => format!(
                    "{}: no complete backup since it was registered {} ago (RPO {})",
                    t.target,
                    human_ms(now_ms.saturating_sub(t.first_seen_ms)),
                    human_ms(i64::try_from(t.objective.rpo.as_millis()).unwrap_or(i64::MAX))
                ),
            };
            let detail = t
                .last_failure
                .as_ref()
                .map(|j| {
                    format!(
                        "last failed backup job {}: {}",
                        j.job_id,
                        public_reason(&j.error)
                    )
                })
                .unwrap_or_default();
            out.push(new(
                IncidentKind::RpoBreach,
                Severity::Critical,
                summary,
                detail,
            ));
        }
        if t.failing
            && let Some(j) = &t.last_failure
        {
            out.push(new(
                IncidentKind::BackupFailed,
                Severity::Warning,
                format!(
                    "{}: backup job {} failed: {}",
                    t.target,
                    j.job_id,
                    public_reason(&j.error)
                ),
                j.error.clone(),
            ));
        }
        if let Some(j) = &t.restore_failing {
            out.push(new(
                IncidentKind::RestoreFailed,
                Severity::Critical,
                format!(
                    "{}: restore job {} of backup {} failed: {}",
                    t.target,
                    j.job_id,
                    j.backup_id,
                    public_reason(&j.error)
                ),
                j.error.clone(),
            ));
        }
        if let Some(j) = &t.last_verify
            && j.state == crate::model::JobState::Failed
        {
            out.push(new(
                IncidentKind::VerifyFailed,
                Severity::Critical,
                format!(
                    "{}: verification of backup {} failed: {}",
                    t.target,
                    j.backup_id,
                    public_reason(&j.error)
                ),
                j.error.clone(),
            ));
        }
        if let Some(b) = &t.last_backup
            && t.previous_stored_sizes.len() >= SIZE_MIN_HISTORY
            && let Some(median) = health::median(&t.previous_stored_sizes)
            && median > 0.0
        {
            #[allow(clippy::cast_precision_loss)]
            let change = (b.stored_size as f64 - median) / median * 100.0;
            if change.abs() > f64::from(cfg.size_change_percent) {
                out.push(new(
                    IncidentKind::SizeAnomaly,
                    Severity::Warning,
                    format!(
                        "{}: backup {} stored {} bytes, {:+.0}% from the median of the previous {} ({:.0} bytes)",
                        t.target,
                        b.backup_id,
                        b.stored_size,
                        change,
                        t.previous_stored_sizes.len(),
                        median
                    ),
                    format!(
                        "the limit is ±{}% (alerts.size_change_percent); a much smaller backup \
                         can mean missing data, a much larger one a runaway table",
                        cfg.size_change_percent
                    ),
                ));
            }
        }
    }
    for t in targets {
        out.extend(drill_conditions(t, cfg, now_ms));
    }
    for a in agents {
        if a.state != AgentState::Offline {
            continue;
        }
        let since = a.offline_since_ms.unwrap_or(now_ms);
        let away = now_ms.saturating_sub(since);
        out.push(Condition {
            // Offline for less than the threshold (or since this coordinator restarted):
            // an open incident stays open, a new one waits.
            may_open: away
                >= i64::try_from(cfg.agent_offline_after.as_millis()).unwrap_or(i64::MAX),
            incident: NewIncident {
                kind: IncidentKind::AgentOffline,
                subject: a.name.clone(),
                environment: a.environment.clone(),
                severity: Severity::Critical,
                summary: format!(
                    "agent {} ({}) has not been connected for {}",
                    a.name,
                    a.environment,
                    human_ms(away)
                ),
                detail: "no backups or restores of its targets can run; check the agent's \
                         service, its certificate and its route to the coordinator"
                    .into(),
            },
        });
    }
    out
}

/// A target's restore drills: the last failed, the last that passed was slower than the
/// RTO, or none passed within `alerts.drill_max_age` (only for targets with a drill schedule
/// or an earlier drill).
fn drill_conditions(t: &TargetHealth, cfg: &AlertsConfig, now_ms: i64) -> Vec<Condition> {
    let new = |kind, severity, summary: String, detail: String| Condition {
        incident: NewIncident {
            kind,
            subject: t.target.clone(),
            environment: t.environment.clone(),
            severity,
            summary,
            detail,
        },
        may_open: true,
    };
    let d = &t.drill;
    let mut out = Vec::new();
    if let Some(f) = d.failing() {
        out.push(new(
            IncidentKind::DrillFailed,
            Severity::Critical,
            format!(
                "{}: restore drill {} of backup {} into {} failed: {}",
                t.target,
                f.job_id,
                f.backup_id,
                f.drill_target,
                public_reason(&f.error)
            ),
            "the backup could not be restored and checked; see `lifeboat jobs show JOB` and \
             `lifeboat drill list`"
                .into(),
        ));
    }
    if let (Some(m), Some(false), Some(s)) = (d.measured_rto, d.rto_met, &d.last_success) {
        out.push(new(
            IncidentKind::DrillRtoExceeded,
            Severity::Warning,
            format!(
                "{}: restore drill {} took {}, beyond the RTO of {}",
                t.target,
                s.job_id,
                human_ms(i64::try_from(m.as_millis()).unwrap_or(i64::MAX)),
                human_ms(i64::try_from(t.objective.rto.as_millis()).unwrap_or(i64::MAX))
            ),
            "a restore would take longer than the declared recovery time objective; raise the \
             RTO in [objectives] or make restores faster"
                .into(),
        ));
    }
    let max_age = i64::try_from(cfg.drill_max_age.as_millis()).unwrap_or(i64::MAX);
    if d.expected() {
        let last_ok = d.last_success.as_ref().and_then(|s| s.finished_at_ms);
        let since = last_ok.unwrap_or(t.first_seen_ms);
        if now_ms.saturating_sub(since) > max_age {
            out.push(new(
                IncidentKind::DrillOverdue,
                Severity::Warning,
                match last_ok {
                    Some(at) => format!(
                        "{}: no restore drill has passed for {} (alerts.drill_max_age {})",
                        t.target,
                        human_ms(now_ms.saturating_sub(at)),
                        human_ms(max_age)
                    ),
                    None => format!(
                        "{}: no restore drill has ever passed (alerts.drill_max_age {})",
                        t.target,
                        human_ms(max_age)
                    ),
                },
                format!(
                    "run one with `lifeboat drill run {}`, or schedule drills with \
                     `lifeboat schedule set {} --kind drill --cron '0 4 * * 0'`",
                    t.target, t.target
                ),
            ));
        }
    }
    out
}

/// What to change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub open: Vec<NewIncident>,
    /// Open incidents whose condition cleared: (id, resolution summary).
    pub resolve: Vec<(i64, String)>,
}

/// Opens what should be open and is not; resolves what is open and should not be.
pub fn plan(conditions: Vec<Condition>, open: &[Incident]) -> Plan {
    let mut is_open: HashMap<(IncidentKind, &str), &Incident> = HashMap::new();
    for i in open {
        is_open.insert((i.kind, i.subject.as_str()), i);
    }
    let mut active = std::collections::HashSet::new();
    let mut out = Plan::default();
    for Condition {
        incident: c,
        may_open,
    } in conditions
    {
        active.insert((c.kind, c.subject.clone()));
        if may_open && !is_open.contains_key(&(c.kind, c.subject.as_str())) {
            out.open.push(c);
        }
    }
    for i in open {
        if !active.contains(&(i.kind, i.subject.clone())) {
            out.resolve.push((i.id, resolution(i)));
        }
    }
    out
}

fn resolution(i: &Incident) -> String {
    match i.kind {
        IncidentKind::BackupFailed => format!("{}: a backup succeeded again", i.subject),
        IncidentKind::RestoreFailed => format!(
            "{}: a later restore succeeded (or the target is gone)",
            i.subject
        ),
        IncidentKind::VerifyFailed => format!("{}: a later verification succeeded", i.subject),
        IncidentKind::RpoBreach => {
            format!(
                "{}: the newest complete backup is within the RPO again",
                i.subject
            )
        }
        IncidentKind::AgentOffline => format!("agent {} is connected again", i.subject),
        IncidentKind::SizeAnomaly => format!(
            "{}: the newest backup's size is back within range of the median",
            i.subject
        ),
        IncidentKind::DrillFailed => format!("{}: a later restore drill passed", i.subject),
        IncidentKind::DrillRtoExceeded => format!(
            "{}: the last restore drill was within the RTO (or the RTO was raised)",
            i.subject
        ),
        IncidentKind::DrillOverdue => {
            format!("{}: a restore drill passed within the interval", i.subject)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        catalog::health::{BackupFacts, JobFacts},
        model::{JobKind, JobState, VerifyStatus},
        objectives::Objective,
    };

    const H: i64 = 3_600_000;

    fn target(age_h: Option<i64>, sizes: &[u64]) -> TargetHealth {
        let now = 1000 * H;
        TargetHealth {
            copies: Vec::new(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            name: "orders".into(),
            agent: "prod-1".into(),
            status: Status::Ok,
            rpo_status: match age_h {
                Some(a) if a > 26 => Status::Critical,
                None => Status::Critical,
                _ => Status::Ok,
            },
            reasons: vec![],
            objective: Objective {
                rpo: Duration::from_secs(26 * 3600),
                rto: Duration::from_secs(3600),
            },
            first_seen_ms: 0,
            last_backup: age_h.map(|a| BackupFacts {
                backup_id: "b-new".into(),
                raw_size: 1,
                stored_size: sizes.first().copied().unwrap_or(100),
                started_at_ms: now - a * H - 1,
                finished_at_ms: now - a * H,
                recorded_at_ms: now - a * H,
                verify_status: VerifyStatus::Unverified,
                verified_at_ms: None,
            }),
            recovery_point_age_ms: age_h.map(|a| a * H),
            last_failure: None,
            failing: false,
            last_verify: None,
            last_restore: None,
            restore_failing: None,
            previous_stored_sizes: sizes.iter().skip(1).copied().collect(),
            drill: Default::default(),
        }
    }

    fn kinds(c: &[Condition]) -> Vec<&'static str> {
        c.iter()
            .filter(|c| c.may_open)
            .map(|c| c.incident.kind.as_str())
            .collect()
    }

    fn cfg() -> AlertsConfig {
        AlertsConfig::default()
    }

    #[test]
    fn drills_failed_slow_and_overdue() {
        use crate::health::drill::DrillHealth;
        use crate::model::Drill;
        let now = 1000 * H;
        let drill = |outcome, rto_ms, at| Drill {
            job_id: "j1".into(),
            target: "prod/orders".parse().expect("name"),
            backup_id: "b1".into(),
            drill_target: "prod/orders".parse().expect("name"),
            database: "lifeboat_drill_j1".into(),
            outcome,
            rto_ms,
            requested_by: "scheduler".into(),
            created_at_ms: at,
            finished_at_ms: Some(at),
            error: "restored row counts differ".into(),
        };
        let with = |d: DrillHealth| {
            let mut t = target(Some(2), &[]);
            t.drill = d;
            conditions(&[t], &[], &cfg(), now)
        };
        // Never drilled, not scheduled: nothing expected.
        assert!(with(DrillHealth::default()).is_empty());
        // Scheduled but never passed, for longer than drill_max_age since registration.
        let c = with(DrillHealth {
            scheduled: true,
            ..Default::default()
        });
        assert_eq!(kinds(&c), ["drill_overdue"]);
        // A recent good drill within the RTO: nothing.
        let ok = drill(JobState::Succeeded, Some(1000), now - H);
        assert!(
            with(DrillHealth {
                last: Some(ok.clone()),
                last_success: Some(ok.clone()),
                measured_rto: Some(Duration::from_secs(1)),
                rto_met: Some(true),
                ..Default::default()
            })
            .is_empty()
        );
        // The last one failed, the last good one was slow and is old.
        let old = drill(JobState::Succeeded, Some(7_200_000), now - 9 * 24 * H);
        let c = with(DrillHealth {
            last: Some(drill(JobState::Failed, None, now - H)),
            last_success: Some(old),
            measured_rto: Some(Duration::from_secs(7200)),
            rto_met: Some(false),
            ..Default::default()
        });
        assert_eq!(
            kinds(&c),
            ["drill_failed", "drill_rto_exceeded", "drill_overdue"]
        );
        assert!(c[0].incident.summary.contains("restored row counts differ"));
        assert_eq!(c[0].incident.severity, Severity::Critical);
        assert!(
            c[2].incident
                .detail
                .contains("lifeboat drill run prod/orders")
        );
    }

    #[test]
    fn rpo_and_failures() {
        let now = 1000 * H;
        assert!(conditions(&[target(Some(2), &[])], &[], &cfg(), now).is_empty());
        let c = conditions(&[target(Some(30), &[])], &[], &cfg(), now);
        assert_eq!(kinds(&c), ["rpo_breach"]);
        assert!(
            c[0].incident.summary.contains("1day 6h old"),
            "{}",
            c[0].incident.summary
        );
        assert!(
            c[0].incident.summary.contains("RPO of 1day 2h"),
            "{}",
            c[0].incident.summary
        );
        let c = conditions(&[target(None, &[])], &[], &cfg(), now);
        assert!(
            c[0].incident.summary.contains("no complete backup"),
            "{}",
            c[0].incident.summary
        );

        let mut t = target(Some(2), &[]);
        let failed = JobFacts {
            job_id: "j1".into(),
            kind: JobKind::Backup,
            state: JobState::Failed,
            backup_id: "b1".into(),
            error: "pg_dump: connection refused\nstderr tail".into(),
            started_at_ms: Some(1),
            finished_at_ms: 2,
        };
        t.failing = true;
        t.last_failure = Some(failed.clone());
        t.restore_failing = Some(JobFacts {
            kind: JobKind::Restore,
            ..failed.clone()
        });
        t.last_verify = Some(JobFacts {
            kind: JobKind::Verify,
            ..failed
        });
        let c = conditions(&[t], &[], &cfg(), now);
        assert_eq!(
            kinds(&c),
            ["backup_failed", "restore_failed", "verify_failed"]
        );
        assert!(
            c[0].incident.summary.ends_with("connection refused"),
            "{}",
            c[0].incident.summary
        );
        assert_eq!(c[0].incident.severity, Severity::Warning);
    }

    #[test]
    fn size_change_against_the_median() {
        let now = 1000 * H;
        let c = |sizes: &[u64]| kinds(&conditions(&[target(Some(1), sizes)], &[], &cfg(), now));
        // Newest first. Too little history: no verdict.
        assert!(c(&[10, 100, 100]).is_empty());
        assert!(c(&[149, 100, 100, 90, 110, 100, 100, 100]).is_empty());
        assert!(c(&[51, 100, 100, 100]).is_empty());
        assert_eq!(c(&[151, 100, 100, 100]), ["size_anomaly"]);
        assert_eq!(c(&[49, 100, 100, 100]), ["size_anomaly"]);
        // The median ignores one outlier among the previous backups.
        assert!(c(&[100, 100, 5000, 100, 100]).is_empty());
    }

    #[test]
    fn agent_offline_after_the_threshold() {
        let now = 1000 * H;
        let agent = |since: i64, state| AgentHealth {
            name: "prod-1".into(),
            environment: "prod".into(),
            version: "1".into(),
            state,
            status: Status::Warning,
            reasons: vec![],
            last_seen_ms: since,
            clock_skew_ms: 0,
            clock_skew_status: Status::Ok,
            offline_since_ms: Some(since),
        };
        let ten_min = 600_000;
        let young = conditions(
            &[],
            &[agent(now - ten_min + 1, AgentState::Offline)],
            &cfg(),
            now,
        );
        assert!(kinds(&young).is_empty(), "too young to open an incident");
        assert_eq!(young.len(), 1, "but an open one is kept");
        let c = conditions(
            &[],
            &[agent(now - ten_min, AgentState::Offline)],
            &cfg(),
            now,
        );
        assert_eq!(kinds(&c), ["agent_offline"]);
        assert!(
            c[0].incident.summary.contains("10m"),
            "{}",
            c[0].incident.summary
        );
        assert!(
            conditions(&[], &[agent(0, AgentState::Stale)], &cfg(), now).is_empty(),
            "a stale but connected agent is not offline"
        );
    }

    #[test]
    fn plan_opens_once_and_resolves_cleared() {
        let new = |kind, subject: &str| Condition {
            incident: NewIncident {
                kind,
                subject: subject.into(),
                environment: "prod".into(),
                severity: Severity::Critical,
                summary: "s".into(),
                detail: String::new(),
            },
            may_open: true,
        };
        let open = |id, kind, subject: &str| Incident {
            id,
            kind,
            subject: subject.into(),
            environment: "prod".into(),
            severity: Severity::Critical,
            summary: "s".into(),
            detail: String::new(),
            opened_at_ms: 0,
            resolved_at_ms: None,
            resolve_summary: String::new(),
        };
        let held = Condition {
            may_open: false,
            ..new(IncidentKind::AgentOffline, "prod-2")
        };
        let p = plan(
            vec![
                new(IncidentKind::RpoBreach, "prod/a"),
                new(IncidentKind::RpoBreach, "prod/b"),
                held,
                Condition {
                    may_open: false,
                    ..new(IncidentKind::AgentOffline, "prod-3")
                },
            ],
            &[
                open(1, IncidentKind::RpoBreach, "prod/a"),
                open(2, IncidentKind::AgentOffline, "prod-1"),
                open(3, IncidentKind::BackupFailed, "prod/a"),
                open(4, IncidentKind::AgentOffline, "prod-2"),
            ],
        );
        assert_eq!(p.open.len(), 1);
        assert_eq!(p.open[0].subject, "prod/b");
        let resolved: Vec<i64> = p.resolve.iter().map(|(id, _)| *id).collect();
        assert_eq!(resolved, [2, 3], "a held condition keeps its incident open");
        assert!(p.resolve[0].1.contains("connected again"));
    }
}
