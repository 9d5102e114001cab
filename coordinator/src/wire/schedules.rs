//! Schedules, pins, prune and catalog rebuild across the wire.

use lifeboat_proto::v1 as pb;

use super::{invalid, short_text};
use crate::{error::Error, model::Backup};

/// `SetScheduleRequest`, validated (the target is checked by the caller).
pub fn schedule_request(r: &pb::SetScheduleRequest) -> Result<crate::schedule::ScheduleDef, Error> {
    use crate::schedule::{
        CronSpec, DEFAULT_COVER, MAX_COVER, MAX_JITTER, MIN_COVER, ScheduleDef, ScheduleKind,
    };
    let kind = schedule_kind(r.kind)?;
    let cover = match (kind, r.cover_secs) {
        (ScheduleKind::Verify, 0) => DEFAULT_COVER,
        (ScheduleKind::Verify, secs) => {
            let d = std::time::Duration::from_secs(secs);
            if d < MIN_COVER || d > MAX_COVER {
                return Err(invalid(format!(
                    "cover of {secs} s is out of range; each backup can be verified at most \
                     every hour and at least once a year (e.g. --cover 7d)"
                )));
            }
            d
        }
        (_, 0) => std::time::Duration::ZERO,
        (other, _) => {
            return Err(invalid(format!(
                "a cover period applies to verify schedules only, not to a {other} schedule"
            )));
        }
    };
    let spec = CronSpec::parse(&r.cron, &r.timezone).map_err(Error::InvalidArgument)?;
    let jitter = std::time::Duration::from_secs(u64::from(r.jitter_secs));
    if jitter > MAX_JITTER {
        return Err(invalid(format!(
            "jitter of {} s is too long; at most {} s ({} h) is accepted",
            r.jitter_secs,
            MAX_JITTER.as_secs(),
            MAX_JITTER.as_secs() / 3600
        )));
    }
    spec.check_jitter(jitter).map_err(Error::InvalidArgument)?;
    let drill_into = match (kind, r.drill_into.as_str()) {
        (_, "") => None,
        (ScheduleKind::Drill, t) => {
            Some(lifeboat_common::names::TargetName::parse(t).map_err(Error::from)?)
        }
        (other, _) => {
            return Err(invalid(format!(
                "--into applies to drill schedules only, not to a {other} schedule"
            )));
        }
    };
    Ok(ScheduleDef {
        spec,
        jitter,
        kind,
        cover,
        drill_into,
    })
}

/// A schedule kind in a request; unspecified means a backup schedule.
pub fn schedule_kind(value: i32) -> Result<crate::schedule::ScheduleKind, Error> {
    use crate::schedule::ScheduleKind;
    match pb::ScheduleKind::try_from(value) {
        Ok(pb::ScheduleKind::Backup | pb::ScheduleKind::Unspecified) => Ok(ScheduleKind::Backup),
        Ok(pb::ScheduleKind::Verify) => Ok(ScheduleKind::Verify),
        Ok(pb::ScheduleKind::Drill) => Ok(ScheduleKind::Drill),
        Err(_) => Err(invalid(format!("unknown schedule kind value {value}"))),
    }
}

/// A schedule kind filter; unspecified means every kind.
pub fn schedule_kind_filter(value: i32) -> Result<Option<crate::schedule::ScheduleKind>, Error> {
    if value == pb::ScheduleKind::Unspecified as i32 {
        return Ok(None);
    }
    schedule_kind(value).map(Some)
}

/// A pin reason: required, one line, bounded.
pub fn pin_reason(value: &str) -> Result<String, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(
            "a pin needs a reason (--reason \"kept for the audit of 2026-Q4\")".into(),
        ));
    }
    Ok(short_text("pin reason", value.to_owned())?)
}

pub fn schedule_kind_to_pb(k: crate::schedule::ScheduleKind) -> pb::ScheduleKind {
    match k {
        crate::schedule::ScheduleKind::Backup => pb::ScheduleKind::Backup,
        crate::schedule::ScheduleKind::Verify => pb::ScheduleKind::Verify,
        crate::schedule::ScheduleKind::Drill => pb::ScheduleKind::Drill,
    }
}

pub fn schedule_run_to_pb(r: &crate::schedule::ScheduleRun) -> pb::ScheduleRun {
    pb::ScheduleRun {
        scheduled_at_ms: r.scheduled_at_ms,
        decided_at_ms: r.decided_at_ms,
        outcome: r.outcome.as_str().to_owned(),
        job_id: r.job_id.clone().unwrap_or_default(),
        reason: r.reason.clone(),
        target: r.target.clone(),
        kind: schedule_kind_to_pb(r.kind).into(),
        id: 0,
    }
}

pub fn schedule_to_pb(
    s: &crate::schedule::Schedule,
    next_run_at_ms: Option<i64>,
    last_run: Option<&crate::schedule::ScheduleRun>,
) -> pb::Schedule {
    pb::Schedule {
        target: s.target.clone(),
        cron: s.def.spec.expr().to_owned(),
        timezone: s.def.spec.timezone().to_owned(),
        jitter_secs: u32::try_from(s.def.jitter.as_secs()).unwrap_or(u32::MAX),
        kind: schedule_kind_to_pb(s.def.kind).into(),
        paused: s.paused,
        source: s.source.as_str().to_owned(),
        updated_by: s.updated_by.clone(),
        updated_at_ms: s.updated_at_ms,
        next_run_at_ms: next_run_at_ms.unwrap_or(0),
        last_run: last_run.map(schedule_run_to_pb),
        cover_secs: s.def.cover.as_secs(),
        drill_into: s
            .def
            .drill_into
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

pub fn pin_to_pb(p: &crate::catalog::Pin) -> pb::BackupPin {
    pb::BackupPin {
        pinned_by: p.pinned_by.clone(),
        pinned_at_ms: p.pinned_at_ms,
        reason: p.reason.clone(),
    }
}

pub fn rebuild_to_pb(r: &crate::rebuild::Report) -> pb::RebuildCatalogResponse {
    use crate::rebuild::OutcomeKind;
    let count = |k: OutcomeKind| {
        u32::try_from(r.outcomes.iter().filter(|o| o.kind == k).count()).unwrap_or(u32::MAX)
    };
    pb::RebuildCatalogResponse {
        dry_run: r.dry_run,
        listings: r
            .listings
            .iter()
            .map(|l| pb::RebuildListing {
                agent: l.agent.clone(),
                repository: l.repository.clone(),
                job_id: l.job_id.clone().unwrap_or_default(),
                backups: u32::try_from(l.backups).unwrap_or(u32::MAX),
                error: l.error.clone().unwrap_or_default(),
            })
            .collect(),
        backups: r
            .outcomes
            .iter()
            .map(|o| pb::RebuildBackup {
                backup_id: o.backup_id.clone(),
                target: o.target.to_string(),
                agent: o.agent.clone(),
                repository: o.repository.clone(),
                outcome: match o.kind {
                    OutcomeKind::Added => pb::RebuildOutcome::Added,
                    OutcomeKind::Updated => pb::RebuildOutcome::Updated,
                    OutcomeKind::Unchanged => pb::RebuildOutcome::Unchanged,
                    OutcomeKind::Conflict => pb::RebuildOutcome::Conflict,
                    OutcomeKind::Missing => pb::RebuildOutcome::Missing,
                    OutcomeKind::Skipped => pb::RebuildOutcome::Skipped,
                    OutcomeKind::Refused => pb::RebuildOutcome::Refused,
                }
                .into(),
                verify_status: pb::VerifyStatus::from(o.verify_status).into(),
                detail: o.detail.clone(),
                stored_size: o.stored_size,
                finished_at_ms: o.finished_at_ms,
                pin_restored: o.restore_pin.is_some(),
            })
            .collect(),
        added: count(OutcomeKind::Added),
        updated: count(OutcomeKind::Updated),
        unchanged: count(OutcomeKind::Unchanged),
        conflicts: count(OutcomeKind::Conflict),
        missing: count(OutcomeKind::Missing),
        skipped: count(OutcomeKind::Skipped),
        refused: count(OutcomeKind::Refused),
        damaged: u32::try_from(r.outcomes.iter().filter(|o| o.damaged).count()).unwrap_or(u32::MAX),
        pins_restored: u32::try_from(
            r.outcomes
                .iter()
                .filter(|o| o.restore_pin.is_some())
                .count(),
        )
        .unwrap_or(u32::MAX),
    }
}

pub fn prune_decision_to_pb(
    d: &crate::retention::Decision,
    b: &Backup,
    job_id: Option<&str>,
    copy: bool,
) -> pb::PruneDecision {
    pb::PruneDecision {
        repository: b.repository.clone(),
        copy,
        backup_id: b.backup_id.to_string(),
        target: b.target.to_string(),
        finished_at_ms: b.finished_at_ms,
        verify_status: pb::VerifyStatus::from(b.verify_status).into(),
        action: match d.action {
            crate::retention::Action::Keep => pb::PruneAction::Keep,
            crate::retention::Action::Delete => pb::PruneAction::Delete,
        }
        .into(),
        reasons: d.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
        job_id: job_id.unwrap_or_default().to_owned(),
        stored_size: b.stored_size,
    }
}
