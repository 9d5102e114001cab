//! Schedules: when a target is backed up. A schedule is a five-field cron expression read in
//! an IANA time zone, plus an optional jitter. Everything here is pure: occurrences are computed
//! from an expression and a given instant, never from a clock read.
//!
//! Daylight saving time follows the usual cron rules (croner's, see ADR 0005): a fixed-time
//! job whose local time does not exist on the day the clocks go forward runs at the first
//! valid time after the gap; one whose local time happens twice when the clocks go back runs
//! once, at the first of the two.

pub mod config;
#[cfg(test)]
mod tests;

use std::{fmt, str::FromStr, time::Duration};

pub use lifeboat_common::duration::{format_duration, parse_duration};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

/// Longest jitter accepted: a run may be spread over at most six hours.
pub const MAX_JITTER: Duration = Duration::from_secs(6 * 3600);
/// Most run times `next` computes in one call.
pub const MAX_PREVIEW: usize = 100;
/// Shortest gap accepted between two runs of one schedule. Backups more often than this are
/// almost always a typo (`* * * * *`), and they would pile up behind each other.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What a schedule starts. A target has at most one schedule of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScheduleKind {
    /// A backup of the target.
    Backup,
    /// Verify jobs for the target's kept backups, so each is read back within the schedule's
    /// coverage period (see [`verify_plan`](crate::scheduler::verify_plan)).
    Verify,
    /// A restore drill of the target's newest good backup (see [`crate::drills`]).
    Drill,
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 3] = [
        ScheduleKind::Backup,
        ScheduleKind::Verify,
        ScheduleKind::Drill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Backup => "backup",
            ScheduleKind::Verify => "verify",
            ScheduleKind::Drill => "drill",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "backup" => Some(ScheduleKind::Backup),
            "verify" => Some(ScheduleKind::Verify),
            "drill" => Some(ScheduleKind::Drill),
            _ => None,
        }
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default coverage of a verify schedule: every kept backup read back at least weekly.
pub const DEFAULT_COVER: Duration = Duration::from_secs(7 * 86_400);
/// Shortest coverage accepted.
pub const MIN_COVER: Duration = Duration::from_secs(3600);
/// Longest coverage accepted (a year).
pub const MAX_COVER: Duration = Duration::from_secs(366 * 86_400);

/// A validated cron expression in a time zone.
#[derive(Clone)]
pub struct CronSpec {
    expr: String,
    tz: Tz,
    cron: Cron,
    /// The shortest gap seen between two runs (sampled); jitter must stay below it.
    min_gap_ms: i64,
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSpec({:?} in {})", self.expr, self.tz.name())
    }
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for CronSpec {}

impl CronSpec {
    /// Parses `expr` (five fields, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`)
    /// read in `timezone` (an IANA name; empty means UTC). Refuses expressions that never
    /// match and ones that run more often than [`MIN_INTERVAL`].
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, String> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(
                "the cron expression is empty; write five fields, e.g. \"30 2 * * *\" \
                        for 02:30 every day"
                    .into(),
            );
        }
        if expr.len() > 200 || expr.chars().any(char::is_control) {
            return Err("the cron expression is too long or contains control characters".into());
        }
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && fields != 5 {
            return Err(format!(
                "cron expression {expr:?} has {fields} fields; write exactly five (minute hour \
                 day-of-month month day-of-week), e.g. \"30 2 * * *\" for 02:30 every day"
            ));
        }
        let tz = parse_timezone(timezone)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| {
                format!(
                    "cron expression {expr:?} is not valid: {e}; write five fields, e.g. \
                     \"30 2 * * *\" for 02:30 every day"
                )
            })?;
        let mut spec = Self {
            expr: expr.split_whitespace().collect::<Vec<_>>().join(" "),
            tz,
            cron,
            min_gap_ms: i64::MAX,
        };
        spec.min_gap_ms = spec.check_interval()?;
        Ok(spec)
    }

    /// The expression as written (whitespace normalised).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// `ms` as a local time in this zone, e.g. "2026-03-29 03:00:00 CEST".
    pub fn local_text(&self, ms: i64) -> String {
        utc(ms).map_or_else(
            || ms.to_string(),
            |t| {
                t.with_timezone(&self.tz)
                    .format("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            },
        )
    }

    /// The first occurrence strictly after `after_ms` (Unix ms), if there is one.
    /// `text` as Unix ms: RFC 3339 with an offset, or a local `YYYY-MM-DD` /
    /// `YYYY-MM-DDTHH:MM[:SS]` in this schedule's time zone (a local time that does not exist
    /// or exists twice, at a DST change, takes the earlier instant).
    pub fn parse_from(&self, text: &str) -> Result<i64, String> {
        use chrono::{NaiveDate, NaiveDateTime, TimeZone};
        let text = text.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(t.timestamp_millis());
        }
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
            .or_else(|_| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
            })
            .map_err(|_| {
                format!(
                    "--from {text:?} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (in the schedule's time zone, {}) or RFC 3339 with an offset",
                    self.tz.name()
                )
            })?;
        let resolved = match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t,
            chrono::LocalResult::Ambiguous(a, _) => a,
            // In a DST gap: the first valid instant an hour later.
            chrono::LocalResult::None => self
                .tz
                .from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
                .ok_or_else(|| format!("--from {text:?} does not exist in {}", self.tz.name()))?,
        };
        Ok(resolved.timestamp_millis())
    }

    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = self.tz.from_utc_datetime(&utc(after_ms)?.naive_utc());
        // croner works in whole seconds: never return an instant at or before `after`.
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        let ms = next.with_timezone(&Utc).timestamp_millis();
        if ms > after_ms {
            Some(ms)
        } else {
            self.next_after(after_ms.checked_add(1000)?)
        }
    }

    /// Refuses jitter that could make one run start after the next one is due (runs would
    /// swap places).
    pub fn check_jitter(&self, jitter: Duration) -> Result<(), String> {
        if millis(jitter) >= self.min_gap_ms {
            return Err(format!(
                "jitter {} is not shorter than the gap between runs of {:?} ({}); use a \
                 shorter jitter",
                format_duration(jitter),
                self.expr,
                format_duration(Duration::from_millis(
                    u64::try_from(self.min_gap_ms).unwrap_or(0)
                ))
            ));
        }
        Ok(())
    }

    /// Refuses expressions that never match, or whose runs come closer than MIN_INTERVAL
    /// (checked over a sample of upcoming runs from a fixed instant, so the answer does not
    /// depend on when the expression is parsed). Returns the shortest gap seen.
    fn check_interval(&self) -> Result<i64, String> {
        // 2025-01-01T00:00:00Z: any fixed instant will do.
        let mut at = 1_735_689_600_000_i64;
        let Some(mut prev) = self.next_after(at) else {
            return Err(format!(
                "cron expression {:?} never matches a date; check the day and month fields",
                self.expr
            ));
        };
        let mut min_gap = i64::MAX;
        for _ in 0..64 {
            at = prev;
            let Some(next) = self.next_after(at) else {
                break;
            };
            if next - prev < millis(MIN_INTERVAL) {
                return Err(format!(
                    "cron expression {:?} runs more often than every {} minutes; backups that \
                     often pile up behind each other (use e.g. \"*/15 * * * *\" at most)",
                    self.expr,
                    MIN_INTERVAL.as_secs() / 60
                ));
            }
            min_gap = min_gap.min(next - prev);
            prev = next;
        }
        Ok(min_gap)
    }
}

/// A verify schedule's coverage period, e.g. `7d`: within [`MIN_COVER`, `MAX_COVER`].
pub fn parse_cover(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| format!("cover {e}"))?;
    if d < MIN_COVER || d > MAX_COVER {
        return Err(format!(
            "cover {} is out of range; each backup can be verified at most every hour and at \
             least once a year (e.g. \"7d\")",
            format_duration(d)
        ));
    }
    Ok(d)
}

/// An IANA time zone name; empty means UTC.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    Tz::from_str(name).map_err(|_| {
        format!(
            "time zone {:?} is not an IANA time zone name; write e.g. \"Europe/Berlin\", \
             \"America/New_York\" or \"UTC\"",
            name.chars().take(64).collect::<String>()
        )
    })
}

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where a target's schedule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set for the target with `lifeboat schedule set`.
    Target,
    /// The `[[schedule]]` default of the target's environment in the coordinator config.
    Environment,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Target => "target",
            Source::Environment => "environment",
        }
    }
}

/// What a schedule says, without its run-time state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleDef {
    pub spec: CronSpec,
    pub jitter: Duration,
    pub kind: ScheduleKind,
    /// Verify schedules: each kept backup is verified at least once per this period. Zero for
    /// other kinds.
    pub cover: Duration,
    /// Drill schedules: the target the drills restore into; `None`: the target itself (and
    /// for other kinds).
    pub drill_into: Option<lifeboat_common::names::TargetName>,
}

impl ScheduleDef {
    /// When the run for the occurrence `slot_ms` of `target` starts: the occurrence plus a
    /// jitter that is fixed for that target and occurrence (so every coordinator, and every
    /// restart, computes the same time), spread evenly over `[0, jitter)`.
    pub fn fire_at(&self, target: &str, slot_ms: i64) -> i64 {
        slot_ms.saturating_add(jitter_offset_ms(target, slot_ms, self.jitter))
    }

    /// The next `count` start times after `after_ms` (jitter included), ascending.
    pub fn upcoming(&self, target: &str, after_ms: i64, count: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(count.min(MAX_PREVIEW));
        // Start from the occurrence whose jittered start may still lie after `after_ms`.
        let mut cursor = after_ms.saturating_sub(millis(self.jitter));
        while out.len() < count.min(MAX_PREVIEW) {
            let Some(slot) = self.spec.next_after(cursor) else {
                break;
            };
            cursor = slot;
            let fire = self.fire_at(target, slot);
            if fire > after_ms {
                out.push(fire);
            }
        }
        out
    }
}

/// A deterministic offset in `[0, jitter)` for one target and occurrence (FNV-1a).
pub fn jitter_offset_ms(target: &str, slot_ms: i64, jitter: Duration) -> i64 {
    let span = millis(jitter);
    if span <= 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes().chain(slot_ms.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Whole seconds: run times read better and compare equal across implementations.
    let secs = span / 1000;
    if secs == 0 {
        return 0;
    }
    let offset = h % u64::try_from(secs).unwrap_or(1);
    i64::try_from(offset).unwrap_or(0) * 1000
}

/// The effective schedule of one kind of one target, with who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `ENV/NAME`
    pub target: String,
    pub def: ScheduleDef,
    pub source: Source,
    pub paused: bool,
    pub updated_by: String,
    pub updated_at_ms: i64,
}

impl Schedule {
    pub fn kind(&self) -> ScheduleKind {
        self.def.kind
    }

    /// How messages name it: `prod/orders` for a backup schedule, `prod/orders (verify)`
    /// otherwise.
    pub fn label(&self) -> String {
        label(&self.target, self.def.kind)
    }
}

/// `target` for a backup schedule, `target (kind)` for the others.
pub fn label(target: &str, kind: ScheduleKind) -> String {
    match kind {
        ScheduleKind::Backup => target.to_owned(),
        other => format!("{target} ({other})"),
    }
}

/// A schedule as stored for a target (the catalog's row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub target: String,
    pub cron: String,
    pub timezone: String,
    pub jitter_secs: u64,
    pub kind: ScheduleKind,
    /// Verify schedules' coverage period; 0 for other kinds.
    pub cover_secs: u64,
    /// Drill schedules: `ENV/NAME` the drills restore into; empty: the target itself.
    pub drill_into: String,
    pub updated_by: String,
    pub updated_at_ms: i64,
}

/// The scheduler's memory of one schedule (target and kind): the last occurrence it handled
/// and whether the schedule is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    pub target: String,
    pub kind: ScheduleKind,
    /// Occurrences at or before this instant have been handled (run or skipped).
    pub cursor_ms: i64,
    pub paused: bool,
    pub paused_by: String,
    pub paused_at_ms: Option<i64>,
}

/// What the scheduler did at one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Started,
    Skipped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Started => "started",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "started" => Some(RunOutcome::Started),
            "skipped" => Some(RunOutcome::Skipped),
            _ => None,
        }
    }
}

/// One recorded scheduler decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub target: String,
    pub kind: ScheduleKind,
    pub scheduled_at_ms: i64,
    pub decided_at_ms: i64,
    pub outcome: RunOutcome,
    pub job_id: Option<String>,
    pub reason: String,
}

/// Why a run was skipped: the schedule's earlier jobs are still active.
pub fn active_reason(target: &str, kind: ScheduleKind, job: &str) -> String {
    match kind {
        ScheduleKind::Backup => format!(
            "a backup of {target} is already queued or running (job {job}); this run is \
             folded into it"
        ),
        ScheduleKind::Verify => format!(
            "verify jobs of the previous verify run of {target} are still queued or running \
             (job {job}); this run is folded into the next one"
        ),
        ScheduleKind::Drill => format!(
            "a drill of {target} is already queued or running (job {job}); this run is \
             folded into it"
        ),
    }
}
