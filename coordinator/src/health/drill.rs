//! A target's restore drills judged against its declared RTO: the last drill, the last one
//! that passed, and whether its measured recovery time meets the objective.

use std::time::Duration;

use super::{Status, human, public_reason};
use crate::{
    model::{Drill, JobState},
    objectives::Objective,
};

/// What the catalog knows about a target's drills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillFacts {
    /// The newest drill that ended succeeded or failed.
    pub last: Option<Drill>,
    /// The newest drill that succeeded.
    pub last_success: Option<Drill>,
    /// Whether the target has a drill schedule.
    pub scheduled: bool,
}

/// The verdict on a target's drills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillHealth {
    pub last: Option<Drill>,
    pub last_success: Option<Drill>,
    pub scheduled: bool,
    /// The measured RTO of the last drill that passed.
    pub measured_rto: Option<Duration>,
    /// Whether `measured_rto` is within the declared RTO; `None` without a drill that passed.
    pub rto_met: Option<bool>,
}

impl DrillHealth {
    /// Whether drills are expected of the target: it has a drill schedule or had a drill.
    pub fn expected(&self) -> bool {
        self.scheduled || self.last.is_some() || self.last_success.is_some()
    }

    /// The last drill, if it failed.
    pub fn failing(&self) -> Option<&Drill> {
        self.last.as_ref().filter(|d| d.outcome == JobState::Failed)
    }
}

/// Judges the drills; reasons for a status worse than ok are added to `reasons`.
pub fn assess(
    f: &DrillFacts,
    objective: &Objective,
    reasons: &mut Vec<String>,
) -> (DrillHealth, Status) {
    let measured_rto = f
        .last_success
        .as_ref()
        .and_then(|d| d.rto_ms)
        .map(Duration::from_millis);
    let rto_met = measured_rto.map(|m| m <= objective.rto);
    let h = DrillHealth {
        last: f.last.clone(),
        last_success: f.last_success.clone(),
        scheduled: f.scheduled,
        measured_rto,
        rto_met,
    };
    let mut status = Status::Ok;
    if let Some(d) = h.failing() {
        reasons.push(format!(
            "the last restore drill (backup {}) failed: {}",
            d.backup_id,
            public_reason(&d.error)
        ));
        status = Status::Warning;
    }
    if let (Some(m), Some(false)) = (measured_rto, rto_met) {
        reasons.push(format!(
            "the last restore drill took {}, beyond the RTO of {}",
            human(m),
            human(objective.rto)
        ));
        status = Status::Warning;
    }
    (h, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(outcome: JobState, rto_ms: Option<u64>, finished_at_ms: i64) -> Drill {
        Drill {
            job_id: format!("j{finished_at_ms}"),
            target: "prod/orders".parse().expect("name"),
            backup_id: "b1".into(),
            drill_target: "staging/scratch".parse().expect("name"),
            database: "lifeboat_drill_x".into(),
            outcome,
            rto_ms,
            requested_by: "alice".into(),
            created_at_ms: finished_at_ms - 10,
            finished_at_ms: Some(finished_at_ms),
            error: if outcome == JobState::Failed {
                "drill check \"SELECT false\" failed: returned false".into()
            } else {
                String::new()
            },
        }
    }

    const OBJ: Objective = Objective {
        rpo: Duration::from_secs(3600),
        rto: Duration::from_secs(60),
    };

    #[test]
    fn drills_are_judged_against_the_rto() {
        let cases: [(&str, DrillFacts, Status, Option<bool>, &str); 5] = [
            ("no drill", DrillFacts::default(), Status::Ok, None, ""),
            (
                "a fast drill",
                DrillFacts {
                    last: Some(drill(JobState::Succeeded, Some(59_000), 100)),
                    last_success: Some(drill(JobState::Succeeded, Some(59_000), 100)),
                    scheduled: false,
                },
                Status::Ok,
                Some(true),
                "",
            ),
            (
                "exactly the RTO",
                DrillFacts {
                    last: Some(drill(JobState::Succeeded, Some(60_000), 100)),
                    last_success: Some(drill(JobState::Succeeded, Some(60_000), 100)),
                    scheduled: true,
                },
                Status::Ok,
                Some(true),
                "",
            ),
            (
                "a slow drill",
                DrillFacts {
                    last: Some(drill(JobState::Succeeded, Some(61_000), 100)),
                    last_success: Some(drill(JobState::Succeeded, Some(61_000), 100)),
                    scheduled: false,
                },
                Status::Warning,
                Some(false),
                "took 1m 1s, beyond the RTO of 1m",
            ),
            (
                "a failed drill after a good one",
                DrillFacts {
                    last: Some(drill(JobState::Failed, None, 200)),
                    last_success: Some(drill(JobState::Succeeded, Some(1_000), 100)),
                    scheduled: false,
                },
                Status::Warning,
                Some(true),
                "the last restore drill (backup b1) failed: drill check \"…\" failed",
            ),
        ];
        for (what, facts, status, met, reason) in cases {
            let mut reasons = Vec::new();
            let (h, s) = assess(&facts, &OBJ, &mut reasons);
            assert_eq!(s, status, "{what}");
            assert_eq!(h.rto_met, met, "{what}");
            assert_eq!(
                h.expected(),
                facts.last.is_some() || facts.scheduled,
                "{what}"
            );
            if reason.is_empty() {
                assert!(reasons.is_empty(), "{what}: {reasons:?}");
            } else {
                assert!(
                    reasons.iter().any(|r| r.contains(reason)),
                    "{what}: {reasons:?}"
                );
            }
        }
    }
}
