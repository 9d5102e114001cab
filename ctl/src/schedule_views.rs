//! What `lifeboat schedule …` and `lifeboat prune` show. Same contract as `views.rs`:
//! snake_case fields, times as RFC 3339 plus raw milliseconds, `null` for unset values.

use lifeboat_proto as pb;
use serde::Serialize;

use crate::{
    output::{
        Render, Row, Table, human_size, json_time, key_values, non_empty, or_none, rfc3339_text,
    },
    views::verify_word,
};

pub fn schedule_kind_word(v: i32) -> &'static str {
    match pb::ScheduleKind::try_from(v) {
        Ok(pb::ScheduleKind::Backup) => "backup",
        Ok(pb::ScheduleKind::Verify) => "verify",
        Ok(pb::ScheduleKind::Drill) => "drill",
        Ok(pb::ScheduleKind::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

/// Jitter in the form the CLI takes it (`10m`, `1h30m`).
fn jitter_text(secs: u32) -> String {
    jitter_text_u64(u64::from(secs))
}

/// A duration in the form the CLI takes it (`7d`, `1h30m`).
fn jitter_text_u64(secs: u64) -> String {
    lifeboat_common::duration::format_duration(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Serialize)]
pub struct ScheduleRunView {
    /// Its id in `schedule runs` (the `--after` of the next page); absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub target: Option<String>,
    /// `backup` or `verify`.
    pub kind: &'static str,
    pub scheduled_at: Option<String>,
    pub scheduled_at_ms: Option<i64>,
    pub decided_at: Option<String>,
    pub decided_at_ms: Option<i64>,
    /// `started` or `skipped`.
    pub outcome: String,
    pub job_id: Option<String>,
    pub reason: Option<String>,
}

impl From<&pb::ScheduleRun> for ScheduleRunView {
    fn from(r: &pb::ScheduleRun) -> Self {
        let (scheduled_at, scheduled_at_ms) = json_time(r.scheduled_at_ms);
        let (decided_at, decided_at_ms) = json_time(r.decided_at_ms);
        Self {
            id: Some(r.id).filter(|&id| id > 0),
            target: non_empty(&r.target),
            kind: schedule_kind_word(r.kind),
            scheduled_at,
            scheduled_at_ms,
            decided_at,
            decided_at_ms,
            outcome: r.outcome.clone(),
            job_id: non_empty(&r.job_id),
            reason: non_empty(&r.reason),
        }
    }
}

impl Row for ScheduleRunView {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "KIND",
        "SCHEDULED",
        "DECIDED",
        "OUTCOME",
        "JOB",
        "REASON",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.map_or_else(|| or_none(""), |id| id.to_string()),
            self.kind.to_owned(),
            rfc3339_text(self.scheduled_at_ms.unwrap_or(0)),
            rfc3339_text(self.decided_at_ms.unwrap_or(0)),
            self.outcome.clone(),
            or_none(self.job_id.as_deref().unwrap_or_default()),
            or_none(self.reason.as_deref().unwrap_or_default()),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub target: String,
    pub cron: String,
    pub timezone: String,
    pub jitter_secs: u32,
    pub kind: &'static str,
    /// Verify schedules: every kept backup is verified at least this often (seconds).
    pub cover_secs: Option<u64>,
    /// Drill schedules: the target the drills restore into (`null`: the target itself).
    pub drill_into: Option<String>,
    pub paused: bool,
    /// `target` (set with `schedule set`) or `environment` (the config's default).
    pub source: String,
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
    pub updated_at_ms: Option<i64>,
    pub next_run_at: Option<String>,
    pub next_run_at_ms: Option<i64>,
    pub last_run: Option<ScheduleRunView>,
}

impl From<&pb::Schedule> for ScheduleView {
    fn from(s: &pb::Schedule) -> Self {
        let (updated_at, updated_at_ms) = json_time(s.updated_at_ms);
        let (next_run_at, next_run_at_ms) = json_time(s.next_run_at_ms);
        Self {
            target: s.target.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            jitter_secs: s.jitter_secs,
            kind: schedule_kind_word(s.kind),
            cover_secs: (s.cover_secs > 0).then_some(s.cover_secs),
            drill_into: non_empty(&s.drill_into),
            paused: s.paused,
            source: s.source.clone(),
            updated_by: non_empty(&s.updated_by),
            updated_at,
            updated_at_ms,
            next_run_at,
            next_run_at_ms,
            last_run: s.last_run.as_ref().map(ScheduleRunView::from),
        }
    }
}

impl ScheduleView {
    fn last_run_text(&self) -> String {
        match &self.last_run {
            None => "-".into(),
            Some(r) => {
                let when = rfc3339_text(r.scheduled_at_ms.unwrap_or(0));
                match (&r.job_id, &r.reason) {
                    (Some(job), _) => format!("{when} {} (job {job})", r.outcome),
                    (None, Some(why)) => format!("{when} {}: {why}", r.outcome),
                    (None, None) => format!("{when} {}", r.outcome),
                }
            }
        }
    }
}

impl Row for ScheduleView {
    const HEADER: &'static [&'static str] = &[
        "TARGET", "KIND", "CRON", "TIMEZONE", "JITTER", "STATE", "SOURCE", "NEXT RUN", "LAST RUN",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.target.clone(),
            match (self.cover_secs, &self.drill_into) {
                (Some(c), _) => format!("{} (cover {})", self.kind, jitter_text_u64(c)),
                (None, Some(into)) => format!("{} (into {into})", self.kind),
                (None, None) => self.kind.to_owned(),
            },
            self.cron.clone(),
            self.timezone.clone(),
            jitter_text(self.jitter_secs),
            if self.paused { "paused" } else { "active" }.into(),
            self.source.clone(),
            if self.paused {
                "-".into()
            } else {
                rfc3339_text(self.next_run_at_ms.unwrap_or(0))
            },
            self.last_run_text(),
        ]
    }
}

impl Render for ScheduleView {
    fn table(&self) -> String {
        key_values(&[
            ("target", self.target.clone()),
            ("cron", self.cron.clone()),
            ("timezone", self.timezone.clone()),
            ("jitter", jitter_text(self.jitter_secs)),
            ("kind", self.kind.to_owned()),
            (
                "cover",
                self.cover_secs.map_or_else(
                    || "-".into(),
                    |c| {
                        format!(
                            "every kept backup verified at least every {}",
                            jitter_text_u64(c)
                        )
                    },
                ),
            ),
            (
                "drills into",
                match (self.kind, &self.drill_into) {
                    ("drill", Some(into)) => into.clone(),
                    ("drill", None) => format!("{} (a new scratch database)", self.target),
                    _ => "-".into(),
                },
            ),
            (
                "state",
                if self.paused { "paused" } else { "active" }.into(),
            ),
            ("source", self.source.clone()),
            (
                "updated",
                match &self.updated_by {
                    Some(by) => {
                        format!("{} by {by}", rfc3339_text(self.updated_at_ms.unwrap_or(0)))
                    }
                    None => "-".into(),
                },
            ),
            (
                "next run",
                if self.paused {
                    "- (paused)".into()
                } else {
                    rfc3339_text(self.next_run_at_ms.unwrap_or(0))
                },
            ),
            ("last run", self.last_run_text()),
        ])
    }
}

/// `schedule delete`: what applies now.
#[derive(Debug, Serialize)]
pub struct ScheduleDeletedView {
    pub target: String,
    pub kind: &'static str,
    pub deleted: bool,
    /// The environment default that applies now, if any.
    pub effective: Option<ScheduleView>,
}

impl Render for ScheduleDeletedView {
    fn table(&self) -> String {
        match &self.effective {
            None => format!(
                "{} schedule of {} deleted; it has no {} schedule now\n",
                self.kind, self.target, self.kind
            ),
            Some(s) => format!(
                "{} schedule of {} deleted; its environment's default applies now: {} ({})\n",
                self.kind, self.target, s.cron, s.timezone
            ),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NextRunView {
    pub run_at: Option<String>,
    pub run_at_ms: Option<i64>,
    /// In the schedule's time zone, e.g. "2026-03-29 03:00:00 CEST".
    pub local: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NextRunsView {
    pub schedule: Option<ScheduleView>,
    pub runs: Vec<NextRunView>,
}

impl From<&pb::NextRunsResponse> for NextRunsView {
    fn from(r: &pb::NextRunsResponse) -> Self {
        Self {
            schedule: r.schedule.as_ref().map(ScheduleView::from),
            runs: r
                .run_at_ms
                .iter()
                .enumerate()
                .map(|(i, ms)| {
                    let (run_at, run_at_ms) = json_time(*ms);
                    NextRunView {
                        run_at,
                        run_at_ms,
                        local: r.run_at_local.get(i).and_then(|l| non_empty(l)),
                    }
                })
                .collect(),
        }
    }
}

impl Render for NextRunsView {
    fn table(&self) -> String {
        let mut s = String::new();
        if let Some(sc) = &self.schedule {
            s.push_str(&format!(
                "{}: \"{}\" in {}{}{}\n",
                sc.target,
                sc.cron,
                sc.timezone,
                if sc.jitter_secs > 0 {
                    format!(", jitter {}", jitter_text(sc.jitter_secs))
                } else {
                    String::new()
                },
                if sc.paused { " (paused)" } else { "" }
            ));
        }
        let mut t = Table::new(&["LOCAL", "UTC"]);
        for r in &self.runs {
            t.row(vec![
                or_none(r.local.as_deref().unwrap_or_default()),
                rfc3339_text(r.run_at_ms.unwrap_or(0)),
            ]);
        }
        s.push_str(&t.render());
        s
    }
}

#[derive(Debug, Serialize)]
pub struct PruneDecisionView {
    pub backup_id: String,
    pub target: String,
    /// The repository planned: the backup's own, or (`copy`) one holding a copy of it.
    pub repository: String,
    pub copy: bool,
    /// `keep` or `delete`.
    pub action: &'static str,
    pub reasons: Vec<String>,
    pub finished_at: Option<String>,
    pub finished_at_ms: Option<i64>,
    pub verify_status: &'static str,
    pub stored_size: u64,
    pub job_id: Option<String>,
}

impl From<&pb::PruneDecision> for PruneDecisionView {
    fn from(d: &pb::PruneDecision) -> Self {
        let (finished_at, finished_at_ms) = json_time(d.finished_at_ms);
        Self {
            backup_id: d.backup_id.clone(),
            target: d.target.clone(),
            repository: d.repository.clone(),
            copy: d.copy,
            action: match pb::PruneAction::try_from(d.action) {
                Ok(pb::PruneAction::Keep) => "keep",
                Ok(pb::PruneAction::Delete) => "delete",
                Ok(pb::PruneAction::Unspecified) | Err(_) => "unknown",
            },
            reasons: d.reasons.clone(),
            finished_at,
            finished_at_ms,
            verify_status: verify_word(d.verify_status),
            stored_size: d.stored_size,
            job_id: non_empty(&d.job_id),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PruneView {
    pub dry_run: bool,
    pub keep: usize,
    pub delete: usize,
    /// Bytes of stored data the deletions free.
    pub delete_bytes: u64,
    pub targets_without_policy: Vec<String>,
    pub decisions: Vec<PruneDecisionView>,
    /// Physical targets: the archived WAL that goes with the deletions, per timeline.
    pub wal: Vec<PruneWalView>,
}

#[derive(Debug, Serialize)]
pub struct PruneWalView {
    pub target: String,
    pub timeline: u32,
    pub first: String,
    /// The last segment that goes, when the timeline's whole range goes.
    pub last: Option<String>,
    /// WAL from this segment position on stays (the start of `kept_backup`).
    pub kept_from: String,
    pub kept_backup: String,
}

impl PruneWalView {
    fn line(&self, dry_run: bool) -> String {
        let range = match &self.last {
            Some(last) => format!("{} to {last}", self.first),
            None => format!("{} up to {} (not included)", self.first, self.kept_from),
        };
        format!(
            "{}: WAL of timeline {}, {range}, {} removed by the agent once the deletions are done; the oldest kept base backup {} starts at {}\n",
            self.target,
            self.timeline,
            if dry_run { "would be" } else { "is" },
            self.kept_backup,
            self.kept_from
        )
    }
}

impl From<&pb::PruneResponse> for PruneView {
    fn from(r: &pb::PruneResponse) -> Self {
        let decisions: Vec<PruneDecisionView> =
            r.decisions.iter().map(PruneDecisionView::from).collect();
        let delete: Vec<&PruneDecisionView> =
            decisions.iter().filter(|d| d.action == "delete").collect();
        Self {
            dry_run: r.dry_run,
            keep: decisions.len() - delete.len(),
            delete: delete.len(),
            delete_bytes: delete.iter().map(|d| d.stored_size).sum(),
            targets_without_policy: r.targets_without_policy.clone(),
            decisions,
            wal: r
                .wal
                .iter()
                .map(|w| PruneWalView {
                    target: w.target.clone(),
                    timeline: w.timeline,
                    first: w.first.clone(),
                    last: Some(w.last.clone()).filter(|l| !l.is_empty()),
                    kept_from: w.kept_from.clone(),
                    kept_backup: w.kept_backup.clone(),
                })
                .collect(),
        }
    }
}

impl Render for PruneView {
    fn table(&self) -> String {
        let mut t = Table::new(&[
            "TARGET",
            "BACKUP",
            "REPOSITORY",
            "FINISHED",
            "VERIFY",
            "STORED",
            "ACTION",
            "REASONS",
            "JOB",
        ]);
        for d in &self.decisions {
            t.row(vec![
                d.target.clone(),
                d.backup_id.clone(),
                if d.copy {
                    format!("{} (copy)", d.repository)
                } else {
                    or_none(&d.repository)
                },
                rfc3339_text(d.finished_at_ms.unwrap_or(0)),
                d.verify_status.to_owned(),
                human_size(d.stored_size),
                d.action.to_owned(),
                d.reasons.join(","),
                or_none(d.job_id.as_deref().unwrap_or_default()),
            ]);
        }
        let mut s = t.render();
        s.push('\n');
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleting"
        };
        s.push_str(&format!(
            "{} kept, {verb} {} ({})",
            self.keep,
            self.delete,
            human_size(self.delete_bytes)
        ));
        s.push_str(if self.dry_run {
            "; dry run, nothing deleted\n"
        } else {
            "; follow the delete jobs with `lifeboat jobs list --active`\n"
        });
        for w in &self.wal {
            s.push_str(&w.line(self.dry_run));
        }
        for t in &self.targets_without_policy {
            s.push_str(&format!(
                "{t}: no retention policy applies; everything is kept (add a [[retention]] \
                 entry to the coordinator config)\n"
            ));
        }
        s
    }
}
