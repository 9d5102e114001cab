//! Retention: which backups to keep and which to delete. [`plan`] is a pure function of the
//! backups, the policy and the time, and gives every backup a decision with its reasons. Both
//! the time and the backups' times are the coordinator's (when it recorded each backup), never
//! an agent's clock (N26).
//!
//! The rules, in the spirit of restic's `forget`:
//! - Only good backups (verify status `ok` or `unverified`) count toward the keep rules.
//!   Corrupt and missing ones are deleted (unless pinned): they are not copies of anything.
//! - A backup a catalog rebuild recorded (from an agent's listing, H2) counts only once a
//!   verify of it passed (`ok`). Until then it is kept (`rebuilt_unverified`) but counts for
//!   nothing, so newer forged manifests cannot push real backups out.
//! - `keep_last N` keeps the N newest good backups. `keep_hourly|daily|weekly|monthly|yearly N`
//!   keeps the newest good backup of each of the N most recent hours, days, ISO weeks, months,
//!   years (UTC) that have one. `keep_within D` keeps every good backup finished within D of
//!   now.
//! - The newest good backup is always kept, whatever the policy says.
//! - Pinned backups are always kept, and count as kept.
//! - `min_keep N` is a floor, applied last: if fewer than N verified (`ok`) backups are kept,
//!   more verified ones are kept, newest first; then, if fewer than N good ones are kept, more
//!   unverified ones. A run of failed or corrupt backups can therefore never push the count
//!   of good copies below N (N27).
//! - A policy with no keep rule at all keeps everything: an empty policy is a mistake, not
//!   "delete all".

pub mod auto;
pub mod config;
pub mod markers;
pub mod prune;
#[cfg(test)]
mod tests;
pub mod wal;

use std::{collections::BTreeSet, fmt, time::Duration};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::model::VerifyStatus;

/// A retention policy, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    pub keep_within: Option<Duration>,
    pub min_keep: u32,
}

impl Policy {
    /// True if no rule keeps anything: such a policy keeps everything (see the module docs).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
    }
}

/// What `plan` needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub backup_id: String,
    pub finished_at_ms: i64,
    pub verify_status: VerifyStatus,
    pub pinned: bool,
    /// Already marked for deletion by an earlier prune.
    pub deleting: bool,
    /// Recorded by a catalog rebuild, not by a backup job this coordinator saw.
    pub rebuilt: bool,
}

impl Candidate {
    pub fn is_good(&self) -> bool {
        match self.verify_status {
            VerifyStatus::Ok => true,
            VerifyStatus::Unverified => !self.rebuilt,
            VerifyStatus::Corrupt | VerifyStatus::Missing => false,
        }
    }

    /// Rebuilt and not verified yet: kept, counted for nothing.
    fn is_rebuilt_unverified(&self) -> bool {
        self.rebuilt && self.verify_status == VerifyStatus::Unverified
    }
}

/// Why a backup is kept or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Pinned,
    Newest,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    MinKeep,
    NoPolicy,
    /// Keep: recorded by a catalog rebuild and not verified yet (it counts once verified).
    RebuiltUnverified,
    /// Delete: matched no keep rule.
    Expired,
    /// Delete: the backup failed verification (corrupt).
    Corrupt,
    /// Delete: data or manifest is gone from the repository.
    Missing,
    /// Delete: an earlier prune marked it; the delete is under way.
    Deleting,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pinned => "pinned",
            Reason::Newest => "newest",
            Reason::Last => "last",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Yearly => "yearly",
            Reason::Within => "within",
            Reason::MinKeep => "min_keep",
            Reason::NoPolicy => "no_policy",
            Reason::RebuiltUnverified => "rebuilt_unverified",
            Reason::Expired => "expired",
            Reason::Corrupt => "corrupt",
            Reason::Missing => "missing",
            Reason::Deleting => "deleting",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
        }
    }
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub backup_id: String,
    pub action: Action,
    /// Sorted, never empty.
    pub reasons: Vec<Reason>,
}

/// The keep/delete decision for every backup of one target, newest first. The input order
/// does not matter.
pub fn plan(backups: &[Candidate], policy: &Policy, now_ms: i64) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = backups.iter().collect();
    // Newest first; the id breaks ties so the order is total.
    order.sort_by(|a, b| (b.finished_at_ms, &b.backup_id).cmp(&(a.finished_at_ms, &a.backup_id)));
    let mut reasons: Vec<BTreeSet<Reason>> = vec![BTreeSet::new(); order.len()];

    // Backups already on their way out take no part: they are going whatever happens now.
    let live = |i: usize| !order[i].deleting;
    let good: Vec<usize> = (0..order.len())
        .filter(|&i| live(i) && order[i].is_good())
        .collect();

    for (i, r) in reasons.iter_mut().enumerate() {
        if live(i) && order[i].pinned {
            r.insert(Reason::Pinned);
        }
        if live(i) && order[i].is_rebuilt_unverified() {
            r.insert(Reason::RebuiltUnverified);
        }
    }
    if let Some(&newest) = good.first() {
        reasons[newest].insert(Reason::Newest);
    }
    if policy.is_empty() {
        for (i, r) in reasons.iter_mut().enumerate() {
            if live(i) {
                r.insert(Reason::NoPolicy);
            }
        }
    } else {
        for &i in good.iter().take(count(policy.keep_last)) {
            reasons[i].insert(Reason::Last);
        }
        let buckets: [(u32, Reason, Bucket); 5] = [
            (policy.keep_hourly, Reason::Hourly, hour_bucket),
            (policy.keep_daily, Reason::Daily, day_bucket),
            (policy.keep_weekly, Reason::Weekly, week_bucket),
            (policy.keep_monthly, Reason::Monthly, month_bucket),
            (policy.keep_yearly, Reason::Yearly, year_bucket),
        ];
        for (n, reason, bucket) in buckets {
            let mut left = n;
            let mut last: Option<i64> = None;
            for &i in &good {
                if left == 0 {
                    break;
                }
                let b = bucket(time(order[i].finished_at_ms));
                if last != Some(b) {
                    reasons[i].insert(reason);
                    last = Some(b);
                    left -= 1;
                }
            }
        }
        if let Some(within) = policy.keep_within {
            let from = now_ms.saturating_sub(i64::try_from(within.as_millis()).unwrap_or(i64::MAX));
            for &i in &good {
                if order[i].finished_at_ms >= from {
                    reasons[i].insert(Reason::Within);
                }
            }
        }
    }

    // The floor: verified copies first, then any good ones.
    let min = count(policy.min_keep);
    let kept_where = |reasons: &[BTreeSet<Reason>], f: &dyn Fn(&Candidate) -> bool| {
        good.iter()
            .filter(|&&i| !reasons[i].is_empty() && f(order[i]))
            .count()
    };
    let verified = |c: &Candidate| c.verify_status == VerifyStatus::Ok;
    let mut missing = min.saturating_sub(kept_where(&reasons, &verified));
    for &i in &good {
        if missing == 0 {
            break;
        }
        if reasons[i].is_empty() && verified(order[i]) {
            reasons[i].insert(Reason::MinKeep);
            missing -= 1;
        }
    }
    let mut missing = min.saturating_sub(kept_where(&reasons, &|_| true));
    for &i in &good {
        if missing == 0 {
            break;
        }
        if reasons[i].is_empty() {
            reasons[i].insert(Reason::MinKeep);
            missing -= 1;
        }
    }

    order
        .iter()
        .zip(reasons)
        .map(|(c, keep)| {
            if !keep.is_empty() {
                return Decision {
                    backup_id: c.backup_id.clone(),
                    action: Action::Keep,
                    reasons: keep.into_iter().collect(),
                };
            }
            let why = if c.deleting {
                Reason::Deleting
            } else {
                match c.verify_status {
                    VerifyStatus::Corrupt => Reason::Corrupt,
                    VerifyStatus::Missing => Reason::Missing,
                    VerifyStatus::Ok | VerifyStatus::Unverified => Reason::Expired,
                }
            };
            Decision {
                backup_id: c.backup_id.clone(),
                action: Action::Delete,
                reasons: vec![why],
            }
        })
        .collect()
}

/// Maps a time to its hour, day, week, month or year.
type Bucket = fn(DateTime<Utc>) -> i64;

fn count(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn hour_bucket(t: DateTime<Utc>) -> i64 {
    day_bucket(t) * 24 + i64::from(t.hour())
}

fn day_bucket(t: DateTime<Utc>) -> i64 {
    i64::from(t.num_days_from_ce())
}

fn week_bucket(t: DateTime<Utc>) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}

fn month_bucket(t: DateTime<Utc>) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

fn year_bucket(t: DateTime<Utc>) -> i64 {
    i64::from(t.year())
}
