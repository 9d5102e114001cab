//! Verify schedules: at each run, which of a target's kept backups to read back so that every
//! one is verified at least once per the schedule's coverage period, with the work spread over
//! the runs instead of all at once.
//!
//! [`verify_plan`] is a pure function of the backups (when each was last checked), the time,
//! the coverage period and the next run. A backup counts as checked when a verify of it last
//! passed, or, never verified, when it was written (the backup job hashed every byte as it
//! wrote them). At each run:
//!
//! - every backup that would be older than the coverage period by the next run is verified
//!   now (the guarantee);
//! - then, oldest check first, more backups up to the run's share of `n × gap ÷ cover` (`gap`:
//!   the time to the next run; fractions carried over between runs): the rate that verifies
//!   all `n` once per period, so the work does not come in bursts when many backups were
//!   written together. Only backups not checked within half the period count toward the
//!   share, so no backup is verified twice as often as the period asks.
//!
//! Backups being deleted, and ones already found corrupt or missing, are not verified again.
//! Each stored copy of a backup in another repository (off-site copies) is a candidate of its
//! own, checked when its own verify last passed or, never verified, when it was copied.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::{
    catalog::Catalog,
    model::{CopyState, JobKind, NewJob, TargetRecord, VerifyStatus},
    retention::prune::Facts,
    schedule::{Schedule, format_duration, millis},
};

/// What [`verify_plan`] needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyCandidate {
    pub backup_id: String,
    /// When a verify of it last passed, or when it was written (coordinator time).
    pub checked_ms: i64,
}

/// The backups to verify at a run at `now_ms`, oldest check first. `next_run_ms`: when the
/// schedule runs again (None: never, so everything due within a period is verified now).
pub fn verify_plan(
    candidates: &[VerifyCandidate],
    now_ms: i64,
    cover: Duration,
    next_run_ms: Option<i64>,
) -> Vec<String> {
    let cover_ms = millis(cover).max(1);
    let horizon = next_run_ms
        .unwrap_or(now_ms.saturating_add(cover_ms))
        .max(now_ms);
    let mut sorted: Vec<&VerifyCandidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| (a.checked_ms, &a.backup_id).cmp(&(b.checked_ms, &b.backup_id)));
    let n = i128::try_from(sorted.len()).unwrap_or(i128::MAX);
    // n × gap ÷ cover, counted on the absolute clock so that fractions add up across runs
    // (a run every hour with 30 backups and a week's coverage verifies one backup about every
    // 5.6 hours, not one per run). i128: long gaps cannot overflow.
    let ticks = |at: i64| n * i128::from(at) / i128::from(cover_ms);
    let share = usize::try_from(ticks(horizon) - ticks(now_ms)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for c in sorted {
        let due = c.checked_ms.saturating_add(cover_ms) <= horizon;
        let stale = c.checked_ms.saturating_add(cover_ms / 2) <= horizon;
        if due || (stale && out.len() < share) {
            out.push(c.backup_id.clone());
        }
    }
    out
}

/// The verify jobs for one run of `schedule` on `target`, or none and why.
pub async fn jobs_for_run(
    catalog: &Catalog,
    target: &TargetRecord,
    schedule: &Schedule,
    now_ms: i64,
    by: &str,
) -> Result<(Vec<NewJob>, Option<String>)> {
    let name = target.name.to_string();
    let backups = catalog
        .list_backups(Some(&name), u32::MAX)
        .await
        .context("read backups")?;
    let facts = Facts::read(catalog).await?;
    let copies = catalog
        .copies_by_backup(Some(&name))
        .await
        .context("read copies")?;
    let checked = |status: VerifyStatus, verified: Option<i64>, written: i64| match status {
        VerifyStatus::Ok => Some(verified.unwrap_or(written).max(written)),
        VerifyStatus::Unverified => Some(written),
        VerifyStatus::Corrupt | VerifyStatus::Missing => None,
    };
    // Each candidate's key, the backup and the repository to verify ('' for its own).
    let mut keyed: Vec<(String, &crate::model::Backup, String)> = Vec::new();
    let mut candidates: Vec<VerifyCandidate> = Vec::new();
    for b in backups
        .iter()
        .filter(|b| !facts.deleting.contains(b.backup_id.as_str()))
    {
        let written = facts.candidate(b).finished_at_ms;
        if let Some(checked_ms) = checked(b.verify_status, b.verified_at_ms, written) {
            keyed.push((b.backup_id.to_string(), b, String::new()));
            candidates.push(VerifyCandidate {
                backup_id: b.backup_id.to_string(),
                checked_ms,
            });
        }
        for c in copies.get(b.backup_id.as_str()).into_iter().flatten() {
            let Some(stored) = c.stored_at_ms.filter(|_| c.state == CopyState::Stored) else {
                continue;
            };
            if let Some(checked_ms) = checked(c.verify_status, c.verified_at_ms, stored) {
                let key = format!("{} in {}", b.backup_id, c.repository);
                keyed.push((key.clone(), b, c.repository.clone()));
                candidates.push(VerifyCandidate {
                    backup_id: key,
                    checked_ms,
                });
            }
        }
    }
    let next = schedule
        .def
        .upcoming(&schedule.target, now_ms, 1)
        .first()
        .copied();
    let ids = verify_plan(&candidates, now_ms, schedule.def.cover, next);
    if ids.is_empty() {
        let why = if candidates.is_empty() {
            format!("{name} has no kept backup to verify")
        } else {
            format!(
                "nothing due: each of the {} kept backup(s) and copies of {name} was checked within the \
                 last {} and the next run comes in time",
                candidates.len(),
                format_duration(schedule.def.cover)
            )
        };
        return Ok((Vec::new(), Some(why)));
    }
    let jobs = keyed
        .iter()
        .filter(|(key, _, _)| ids.contains(key))
        .map(|(_, b, repository)| {
            let mut job = NewJob::new(
                JobKind::Verify,
                target.name.clone(),
                &target.agent,
                by,
                now_ms,
            );
            job.backup_id = Some(b.backup_id.clone());
            job.repository.clone_from(repository);
            job
        })
        .collect();
    Ok((jobs, None))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn cand(id: usize, checked_ms: i64) -> VerifyCandidate {
        VerifyCandidate {
            backup_id: format!("b{id:04}"),
            checked_ms,
        }
    }

    #[test]
    fn overdue_backups_are_all_verified_at_once() {
        let now = 100 * DAY;
        let c: Vec<_> = (0..20)
            .map(|i| cand(i, now - (i as i64 + 1) * DAY))
            .collect();
        let plan = verify_plan(&c, now, Duration::from_secs(7 * 86_400), Some(now + DAY));
        // Seven days unchecked by the next run: b0005 (6 days ago, 7 by then) onward.
        assert_eq!(plan.len(), 15, "{plan:?}");
        assert!(plan.contains(&"b0019".to_owned()) && plan.contains(&"b0005".to_owned()));
        assert!(!plan.contains(&"b0004".to_owned()));
    }

    #[test]
    fn nothing_to_do_for_fresh_backups_and_no_backups() {
        let now = 10 * DAY;
        assert!(verify_plan(&[], now, Duration::from_secs(86_400), Some(now + HOUR)).is_empty());
        let c = vec![cand(1, now - HOUR), cand(2, now - 2 * HOUR)];
        assert!(verify_plan(&c, now, Duration::from_secs(7 * 86_400), Some(now + HOUR)).is_empty());
    }

    #[test]
    fn no_next_run_verifies_what_falls_due_within_a_period() {
        let now = 10 * DAY;
        let c = vec![cand(1, now - HOUR), cand(2, now - 5 * DAY)];
        let plan = verify_plan(&c, now, Duration::from_secs(2 * 86_400), None);
        assert_eq!(plan, vec!["b0002".to_owned(), "b0001".to_owned()]);
    }

    /// A simulated quarter with a fake clock: a backup every day, retention keeping the 30
    /// newest, a verify run every day at 05:00 with a 7-day coverage. No kept backup ever goes
    /// unchecked for longer than the period, and after the first week the work is spread.
    fn simulate(run_every: i64, cover_days: i64, keep: usize, days: i64) -> (i64, Vec<usize>) {
        let cover = Duration::from_secs(u64::try_from(cover_days).expect("days") * 86_400);
        let cover_ms = cover_days * DAY;
        // id → (written, checked)
        let mut kept: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        let mut next_id = 0;
        let mut worst_age = 0;
        let mut per_run = Vec::new();
        let start = 1_000 * DAY;
        // 30 backups already there, never verified (a schedule set on an existing target).
        for d in 0..keep {
            let t = start - (keep - d) as i64 * DAY + 2 * HOUR;
            kept.insert(next_id, (t, t));
            next_id += 1;
        }
        let mut t = start;
        while t < start + days * DAY {
            // The daily backup at 02:00.
            if t % DAY == 2 * HOUR {
                kept.insert(next_id, (t, t));
                next_id += 1;
                while kept.len() > keep {
                    let oldest = *kept.keys().next().expect("kept");
                    kept.remove(&oldest);
                }
            }
            if (t - 5 * HOUR) % run_every == 0 {
                let cands: Vec<_> = kept.iter().map(|(id, (_, c))| cand(*id, *c)).collect();
                let plan = verify_plan(&cands, t, cover, Some(t + run_every));
                per_run.push(plan.len());
                for id in plan {
                    let n: usize = id[1..].parse().expect("an id");
                    let e = kept.get_mut(&n).expect("planned backup is kept");
                    assert!(
                        t - e.1 >= cover_ms / 2 - run_every,
                        "{id} verified again too soon"
                    );
                    e.1 = t;
                }
            }
            // From the first run on (before it, the backups were written without a schedule).
            if !per_run.is_empty() {
                for (_, checked) in kept.values() {
                    worst_age = worst_age.max(t - checked);
                }
            }
            t += HOUR;
        }
        (worst_age, per_run)
    }

    #[test]
    fn a_simulated_quarter_keeps_every_backup_within_its_period_and_spreads_the_work() {
        let (worst, per_run) = simulate(DAY, 7, 30, 90);
        assert!(
            worst <= 7 * DAY,
            "a backup went {} h unchecked",
            worst / HOUR
        );
        // The first run catches up on the existing backups older than the period...
        assert!(per_run[0] >= 23, "{per_run:?}");
        // ...after two periods the work is spread: no run does more than twice the even
        // share (30 ÷ 7 a day), and on average at most a third more than it.
        let later = &per_run[14..];
        assert!(
            later.iter().all(|n| *n <= 2 * 30_usize.div_ceil(7)),
            "runs after two weeks: {later:?}"
        );
        let total: usize = later.iter().sum();
        assert!(
            total * 7 <= later.len() * 30 * 4 / 3,
            "more work than the period needs: {later:?}"
        );
        assert!(
            total * 7 >= later.len() * 30,
            "too little work to cover every backup: {later:?}"
        );
    }

    #[test]
    fn hourly_runs_verify_at_the_rate_the_period_needs() {
        let (worst, per_run) = simulate(HOUR, 7, 30, 60);
        assert!(
            worst <= 7 * DAY,
            "a backup went {} h unchecked",
            worst / HOUR
        );
        // After the catch-up: 30 backups once a week is ~4.3 a day; allow for the new
        // backups that arrive daily, never one per hourly run (24 a day).
        let later: usize = per_run[14 * 24..].iter().sum();
        let days = per_run[14 * 24..].len() / 24;
        assert!(
            later <= days * 6,
            "{later} verifies in {days} days of hourly runs"
        );
        assert!(
            later >= days * 4,
            "{later} verifies in {days} days: too few"
        );
    }
}
