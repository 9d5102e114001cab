//! The scheduler: turns due schedule occurrences into backup jobs.
//!
//! What to do is decided by [`decide`], a pure function of the schedules, the scheduler's
//! cursors (the last occurrence handled per target), the targets with a backup already queued
//! or running, and the time. The task only reads that state from the catalog, calls `decide`,
//! and records each decision together with its job in one transaction that also moves the
//! cursor, compare-and-set: a restart, or a second coordinator, never starts one occurrence
//! twice.
//!
//! - Several occurrences due at once (the coordinator was stopped, or busy) fold into one: the
//!   latest. If it is later than the misfire grace it is a catch-up, run once or skipped as
//!   `[scheduler] catch_up` says.
//! - A due occurrence while a backup of the target is queued or running is recorded as skipped
//!   with the reason; two backups of one target never run at once.
//! - Scheduled jobs are ordinary backup jobs (requested by "scheduler"): a job whose agent is
//!   offline waits in the queue and fails as "agent offline" after `jobs.queue_timeout_secs`.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

pub mod health;
pub mod verify;

pub use health::{HealthCell, STALL_AFTER, SchedulerHealth};
pub use verify::verify_plan;

use crate::{
    catalog::{Catalog, TickOutcome},
    jobs::Jobs,
    model::{JobKind, NewJob, TargetRecord},
    schedule::{
        CronSpec, RunOutcome, Schedule, ScheduleDef, ScheduleKind, ScheduleRun, ScheduleState,
        Source, StoredSchedule,
        config::{CatchUp, SchedulerConfig},
        millis,
    },
};

/// Who scheduled jobs are requested by.
pub const REQUESTED_BY: &str = "scheduler";
/// The actor of a verify schedule's jobs in the audit trail.
pub const VERIFY_ACTOR: &str = "schedule/verify";
/// The actor of a drill schedule's jobs in the audit trail.
pub const DRILL_ACTOR: &str = "schedule/drill";
/// How often the scheduler looks at the schedules.
const TICK: Duration = Duration::from_secs(1);
/// Most occurrences counted when folding missed ones together.
const MAX_FOLD: u32 = 100_000;

/// A clock: Unix milliseconds now. The coordinator's own clock (N26); tests pass their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(lifeboat_common::time::now_ms)
}

/// What to do about one due occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start,
    Skip(String),
}

/// A decision for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub target: String,
    pub kind: ScheduleKind,
    /// The occurrence acted on (the latest due one).
    pub slot_ms: i64,
    /// When it was due to start (jitter included).
    pub fire_ms: i64,
    /// Earlier occurrences folded into this one.
    pub folded: u32,
    /// Later than the misfire grace.
    pub late: bool,
    pub action: Action,
}

/// The decisions for every schedule with a due occurrence at `now_ms`. `active` maps a
/// schedule (target and kind) to a queued or running job it started earlier: a backup of the
/// target, or a verify job of the previous verify run.
pub fn decide(
    schedules: &[(Schedule, i64)],
    active: &HashMap<(String, ScheduleKind), String>,
    now_ms: i64,
    config: &SchedulerConfig,
) -> Vec<Due> {
    let grace = millis(config.misfire_grace);
    let mut out = Vec::new();
    for (schedule, cursor) in schedules {
        if schedule.paused {
            continue;
        }
        let def = &schedule.def;
        let target = schedule.target.as_str();
        let mut latest: Option<(i64, i64)> = None;
        let mut count: u32 = 0;
        let mut at = *cursor;
        while let Some(slot) = def.spec.next_after(at) {
            let fire = def.fire_at(target, slot);
            if fire > now_ms || count >= MAX_FOLD {
                break;
            }
            latest = Some((slot, fire));
            count += 1;
            at = slot;
        }
        let Some((slot_ms, fire_ms)) = latest else {
            continue;
        };
        let late = now_ms.saturating_sub(fire_ms) > grace;
        let folded = count - 1;
        let action = if let Some(job) = active.get(&(target.to_owned(), def.kind)) {
            Action::Skip(crate::schedule::active_reason(target, def.kind, job))
        } else if late && config.catch_up == CatchUp::Skip {
            Action::Skip(format!(
                "missed: due at {} ({} occurrence{}) while the coordinator was not running; \
                 [scheduler] catch_up = \"skip\" waits for the next one",
                when(fire_ms),
                count,
                if count == 1 { "" } else { "s" }
            ))
        } else {
            Action::Start
        };
        out.push(Due {
            target: target.to_owned(),
            kind: def.kind,
            slot_ms,
            fire_ms,
            folded,
            late,
            action,
        });
    }
    out
}

/// A schedule time for logs and messages: RFC 3339 to the second.
fn when(ms: i64) -> String {
    lifeboat_common::time::rfc3339_seconds(ms).unwrap_or_else(|| ms.to_string())
}

/// A schedule's identity: its target and kind.
pub type Key = (String, ScheduleKind);

/// The schedules that apply to each registered target, one per kind: its own (from the
/// catalog), else its environment's default of that kind (from the config). Stored schedules
/// that no longer parse (a time zone removed from the database, say) are reported and left
/// out.
pub fn effective(
    stored: &[StoredSchedule],
    targets: &[TargetRecord],
    states: &HashMap<Key, ScheduleState>,
    config: &SchedulerConfig,
) -> Vec<Schedule> {
    let paused = |target: &str, kind| {
        states
            .get(&(target.to_owned(), kind))
            .is_some_and(|st| st.paused)
    };
    let mut out = Vec::new();
    let mut seen: HashSet<Key> = HashSet::new();
    for s in stored {
        seen.insert((s.target.clone(), s.kind));
        match stored_def(s) {
            Ok(def) => out.push(Schedule {
                target: s.target.clone(),
                def,
                source: Source::Target,
                paused: paused(&s.target, s.kind),
                updated_by: s.updated_by.clone(),
                updated_at_ms: s.updated_at_ms,
            }),
            Err(e) => tracing::warn!(target = %s.target, kind = %s.kind, "schedule left out: {e}"),
        }
    }
    for t in targets {
        let name = t.name.to_string();
        for kind in ScheduleKind::ALL {
            if seen.contains(&(name.clone(), kind)) {
                continue;
            }
            if let Some(def) = config.defaults.get(&(t.name.env().to_owned(), kind)) {
                out.push(Schedule {
                    paused: paused(&name, kind),
                    target: name.clone(),
                    def: def.clone(),
                    source: Source::Environment,
                    // From the config file: no operator, no time.
                    updated_by: String::new(),
                    updated_at_ms: 0,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.target, a.kind()).cmp(&(&b.target, b.kind())));
    out
}

pub fn stored_def(s: &StoredSchedule) -> Result<ScheduleDef, String> {
    Ok(ScheduleDef {
        spec: CronSpec::parse(&s.cron, &s.timezone)?,
        jitter: Duration::from_secs(s.jitter_secs),
        kind: s.kind,
        cover: Duration::from_secs(s.cover_secs),
        drill_into: match s.drill_into.as_str() {
            "" => None,
            t => Some(t.parse().map_err(|e| format!("drill_into {t:?}: {e}"))?),
        },
    })
}

/// What the scheduler reads and writes: the schedules and their runs in the catalog, the jobs
/// it queues, the defaults from the config file, and what its passes found (for `/health`).
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub catalog: Catalog,
    pub jobs: Jobs,
    pub config: Arc<SchedulerConfig>,
    pub health: Arc<HealthCell>,
}

/// The scheduler task.
pub async fn run(sched: Scheduler, clock: Clock, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = clock();
        if let Err(e) = tick(&sched, now).await {
            tracing::warn!("failed to run schedules: {e:#}; trying again in a second");
            sched
                .health
                .update(|h| h.last_error = Some((now, format!("{e:#}"))));
        }
    }
}

/// One pass: decide and record. Public to the crate so tests can drive it with their clock.
pub async fn tick(sched: &Scheduler, now_ms: i64) -> Result<Vec<ScheduleRun>> {
    let catalog = &sched.catalog;
    let stored = catalog.list_schedules().await.context("read schedules")?;
    let config = &*sched.config;
    if stored.is_empty() && config.defaults.is_empty() {
        sched.health.update(|h| {
            *h = SchedulerHealth {
                last_ok_ms: Some(now_ms),
                ..SchedulerHealth::default()
            };
        });
        return Ok(Vec::new());
    }
    let targets: Vec<TargetRecord> = catalog
        .list_targets()
        .await
        .context("read targets")?
        .into_iter()
        .map(|t| t.target)
        .collect();
    let states: HashMap<Key, ScheduleState> = catalog
        .schedule_states()
        .await
        .context("read schedule state")?
        .into_iter()
        .map(|s| ((s.target.clone(), s.kind), s))
        .collect();
    let schedules = effective(&stored, &targets, &states, config);
    let summary = SchedulerHealth {
        last_ok_ms: None,
        last_error: None,
        schedules: schedules.len(),
        paused: schedules
            .iter()
            .filter(|s| s.paused)
            .map(Schedule::label)
            .collect(),
        next_run: schedules
            .iter()
            .filter(|s| !s.paused)
            .filter_map(|s| {
                let at = *s.def.upcoming(&s.target, now_ms, 1).first()?;
                Some((s.target.clone(), s.kind().as_str(), at))
            })
            .min_by_key(|(t, kind, at)| (*at, t.clone(), *kind)),
    };
    let mut with_cursor = Vec::with_capacity(schedules.len());
    for s in schedules {
        match states.get(&(s.target.clone(), s.kind())) {
            Some(st) => with_cursor.push((s, st.cursor_ms)),
            // First sight (a new environment default): start counting from now.
            None => {
                catalog
                    .init_schedule_state(&s.target, s.kind(), now_ms)
                    .await
                    .context("start schedule state")?;
            }
        }
    }
    let active: HashMap<Key, String> = catalog
        .unfinished_jobs()
        .await
        .context("read unfinished jobs")?
        .into_iter()
        .filter(|j| !j.state.is_terminal())
        .filter_map(|j| {
            let kind = match j.kind {
                JobKind::Backup => ScheduleKind::Backup,
                JobKind::Verify if j.requested_by == REQUESTED_BY && j.backup_id.is_some() => {
                    ScheduleKind::Verify
                }
                // A drill counts against the target it drills, not the one it restores into.
                JobKind::Restore => {
                    let of = j.restore.as_ref()?.drill_of.as_ref()?;
                    return Some(((of.to_string(), ScheduleKind::Drill), j.id));
                }
                _ => return None,
            };
            Some(((j.target.to_string(), kind), j.id))
        })
        .collect();
    let by_target: HashMap<String, &TargetRecord> =
        targets.iter().map(|t| (t.name.to_string(), t)).collect();
    let mut recorded = Vec::new();
    for due in decide(&with_cursor, &active, now_ms, config) {
        let Some((schedule, cursor)) = with_cursor
            .iter()
            .find(|(s, _)| s.target == due.target && s.kind() == due.kind)
        else {
            continue;
        };
        let (jobs, why_none) = match (&due.action, by_target.get(&due.target)) {
            (Action::Start, Some(t)) => match due.kind {
                ScheduleKind::Backup => (vec![new_job(t, now_ms)], None),
                ScheduleKind::Verify => {
                    verify::jobs_for_run(catalog, t, schedule, now_ms, REQUESTED_BY).await?
                }
                ScheduleKind::Drill => {
                    drill_for_run(catalog, t, schedule, &by_target, now_ms).await
                }
            },
            _ => (Vec::new(), None),
        };
        let started = !jobs.is_empty();
        let run = ScheduleRun {
            target: due.target.clone(),
            kind: due.kind,
            scheduled_at_ms: due.slot_ms,
            decided_at_ms: now_ms,
            outcome: if started {
                RunOutcome::Started
            } else {
                RunOutcome::Skipped
            },
            job_id: jobs.first().map(|j| j.id.clone()),
            reason: run_reason(&due, &jobs, why_none),
        };
        match catalog
            .record_schedule_tick(*cursor, &run, &jobs)
            .await
            .context("record schedule run")?
        {
            TickOutcome::Recorded(run, created) => {
                if created.is_empty() {
                    tracing::info!(target = %run.target, kind = %run.kind, reason = %run.reason, "scheduled run skipped");
                }
                for job in &created {
                    sched.jobs.queued(job);
                    match run.kind {
                        ScheduleKind::Verify => audit_verify(catalog, job, now_ms).await,
                        ScheduleKind::Drill => audit_drill(catalog, job, now_ms).await,
                        ScheduleKind::Backup => {}
                    }
                }
                recorded.push(*run);
            }
            TickOutcome::AlreadyHandled => {
                tracing::debug!(target = %due.target, kind = %due.kind, "occurrence already handled elsewhere");
            }
        }
    }
    sched.health.update(|h| {
        *h = SchedulerHealth {
            last_ok_ms: Some(now_ms),
            ..summary
        };
    });
    Ok(recorded)
}

/// The drill job of a due drill run: the newest good backup of `t` restored into the
/// schedule's drill target (or `t`); none, with the reason, when there is nothing to drill or
/// the drill target is not registered.
async fn drill_for_run(
    catalog: &Catalog,
    t: &TargetRecord,
    schedule: &Schedule,
    by_target: &HashMap<String, &TargetRecord>,
    now_ms: i64,
) -> (Vec<NewJob>, Option<String>) {
    let into: &TargetRecord = match &schedule.def.drill_into {
        None => t,
        Some(name) => match by_target.get(name.as_str()) {
            Some(into) => into,
            None => {
                return (
                    Vec::new(),
                    Some(format!(
                        "drill target {name} is not registered; no agent has declared it"
                    )),
                );
            }
        },
    };
    let made = async {
        let backup = crate::drills::pick_backup(catalog, &t.name, None).await?;
        crate::drills::drill_job(&t.name, into, &backup, REQUESTED_BY, now_ms)
    };
    match made.await {
        Ok(job) => (vec![job], None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    }
}

/// The audit row of a drill a drill schedule started: the schedule is the actor.
async fn audit_drill(catalog: &Catalog, job: &crate::model::Job, now_ms: i64) {
    let of = job
        .restore
        .as_ref()
        .and_then(|r| r.drill_of.as_ref())
        .map_or_else(|| job.target.to_string(), ToString::to_string);
    let entry = crate::audit::AuditEntry {
        at_ms: now_ms,
        actor: DRILL_ACTOR.into(),
        role: String::new(),
        action: "drill".into(),
        object: if of == job.target.as_str() {
            of.clone()
        } else {
            format!("{of} -> {}", job.target)
        },
        outcome: crate::audit::AuditOutcome::Ok,
        reason: format!(
            "drill schedule of {of}; job {}, backup {}",
            job.id,
            job.backup().unwrap_or_default()
        ),
    };
    if let Err(e) = catalog.insert_audit(&entry).await {
        tracing::warn!(job_id = %job.id, "failed to audit a scheduled drill: {e}");
    }
}

/// The audit row of a verify job a verify schedule started: the schedule is the actor.
async fn audit_verify(catalog: &Catalog, job: &crate::model::Job, now_ms: i64) {
    let entry = crate::audit::AuditEntry {
        at_ms: now_ms,
        actor: VERIFY_ACTOR.into(),
        role: String::new(),
        action: "verify_backup".into(),
        object: job.backup().unwrap_or_default().to_owned(),
        outcome: crate::audit::AuditOutcome::Ok,
        reason: format!("verify schedule of {}; job {}", job.target, job.id),
    };
    if let Err(e) = catalog.insert_audit(&entry).await {
        tracing::warn!(job_id = %job.id, "failed to audit a scheduled verify: {e}");
    }
}

/// What a run's record says: why it was skipped, or how it started.
fn run_reason(due: &Due, jobs: &[NewJob], why_none: Option<String>) -> String {
    let mut parts = Vec::new();
    match &due.action {
        Action::Skip(why) => return why.clone(),
        Action::Start if jobs.is_empty() => {
            return why_none.unwrap_or_else(|| {
                format!(
                    "target {} is not registered; no agent has declared it",
                    due.target
                )
            });
        }
        Action::Start => {}
    }
    if due.late {
        parts.push(format!("catch-up: due at {}", when(due.fire_ms)));
    }
    if due.folded > 0 {
        parts.push(format!("{} earlier occurrence(s) folded in", due.folded));
    }
    if due.kind == ScheduleKind::Verify {
        let ids: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.backup_id.as_ref().map(|b| b.as_str()))
            .collect();
        parts.push(format!(
            "verifying {} backup{}: {}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        ));
    }
    parts.join("; ")
}

fn new_job(target: &TargetRecord, now_ms: i64) -> NewJob {
    let mut job = NewJob::new(
        JobKind::Backup,
        target.name.clone(),
        &target.agent,
        REQUESTED_BY,
        now_ms,
    );
    job.backup_id = Some(lifeboat_common::ids::BackupId::mint(
        time::OffsetDateTime::now_utc(),
    ));
    job
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
