use std::{collections::HashMap, time::Duration};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn at(y: i32, mo: u32, d: u32, h: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
        .single()
        .expect("valid time")
        .timestamp_millis()
}

fn b(id: &str, finished_at_ms: i64, verify_status: VerifyStatus) -> Candidate {
    Candidate {
        backup_id: id.into(),
        finished_at_ms,
        verify_status,
        pinned: false,
        deleting: false,
        rebuilt: false,
    }
}

fn ok(id: &str, t: i64) -> Candidate {
    b(id, t, VerifyStatus::Ok)
}

/// `id: keep|delete reason,reason` lines, newest first.
fn show(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .map(|d| {
            format!(
                "{}: {} {}",
                d.backup_id,
                d.action.as_str(),
                d.reasons
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect()
}

/// One backup a day at 02:00 for `n` days ending 2026-06-30.
fn daily(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| ok(&format!("d{i:02}"), at(2026, 6, 30, 2) - i64::from(i) * DAY))
        .collect()
}

#[test]
fn keep_last() {
    let p = Policy {
        keep_last: 2,
        ..Policy::default()
    };
    let now = at(2026, 7, 1, 0);
    assert_eq!(
        show(&plan(&daily(4), &p, now)),
        [
            "d00: keep newest,last",
            "d01: keep last",
            "d02: delete expired",
            "d03: delete expired",
        ]
    );
}

#[test]
fn hourly_keeps_the_newest_of_each_hour() {
    let p = Policy {
        keep_hourly: 2,
        ..Policy::default()
    };
    let t = at(2026, 6, 1, 10);
    let backups = [
        ok("a", t + 50 * 60_000),
        ok("b", t + 10 * 60_000),
        ok("c", t - 20 * 60_000),
        ok("d", t - 40 * 60_000),
        ok("e", t - 2 * HOUR),
    ];
    assert_eq!(
        show(&plan(&backups, &p, t + HOUR)),
        [
            "a: keep newest,hourly",
            "b: delete expired",
            "c: keep hourly",
            "d: delete expired",
            "e: delete expired",
        ]
    );
}

#[test]
fn daily_weekly_monthly_yearly() {
    let p = Policy {
        keep_daily: 3,
        keep_weekly: 2,
        keep_monthly: 2,
        keep_yearly: 1,
        ..Policy::default()
    };
    // 2026-06-30 is a Tuesday; 40 daily backups back to 2026-05-22.
    let d = plan(&daily(40), &p, at(2026, 7, 1, 0));
    let kept: Vec<String> = show(&d)
        .into_iter()
        .filter(|l| l.contains("keep"))
        .collect();
    assert_eq!(
        kept,
        [
            "d00: keep newest,daily,weekly,monthly,yearly",
            "d01: keep daily",
            "d02: keep daily,weekly",
            "d30: keep monthly",
        ],
        "d02 is Sunday 06-28 (the newest of the previous ISO week), d30 is 05-31"
    );
}

#[test]
fn keep_within_counts_from_now() {
    let p = Policy {
        keep_within: Some(Duration::from_secs(2 * 86_400)),
        ..Policy::default()
    };
    let now = at(2026, 6, 30, 12);
    assert_eq!(
        show(&plan(&daily(4), &p, now)),
        [
            "d00: keep newest,within",
            "d01: keep within",
            "d02: delete expired",
            "d03: delete expired",
        ]
    );
}

#[test]
fn newest_good_is_kept_even_when_the_policy_would_drop_it() {
    // keep_within of one hour, newest backup is two days old: still kept.
    let p = Policy {
        keep_within: Some(Duration::from_secs(3600)),
        ..Policy::default()
    };
    let d = plan(&daily(3), &p, at(2026, 7, 2, 12));
    assert_eq!(
        show(&d),
        [
            "d00: keep newest",
            "d01: delete expired",
            "d02: delete expired"
        ]
    );
}

#[test]
fn failed_and_corrupt_newest_do_not_evict_good_copies() {
    // N27: the three newest are corrupt or missing; keep_last 2 must still keep two good ones,
    // and min_keep 3 a third (verified first).
    let now = at(2026, 7, 1, 0);
    let backups = [
        b("bad1", now - HOUR, VerifyStatus::Corrupt),
        b("bad2", now - 2 * HOUR, VerifyStatus::Missing),
        b("bad3", now - 3 * HOUR, VerifyStatus::Corrupt),
        b("u1", now - DAY, VerifyStatus::Unverified),
        ok("v1", now - 2 * DAY),
        b("u2", now - 3 * DAY, VerifyStatus::Unverified),
        ok("v2", now - 4 * DAY),
        ok("v3", now - 5 * DAY),
    ];
    let p = Policy {
        keep_last: 2,
        min_keep: 3,
        ..Policy::default()
    };
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "bad1: delete corrupt",
            "bad2: delete missing",
            "bad3: delete corrupt",
            "u1: keep newest,last",
            "v1: keep last",
            "u2: delete expired",
            "v2: keep min_keep",
            "v3: keep min_keep",
        ]
    );
}

#[test]
fn min_keep_falls_back_to_unverified_copies() {
    let now = at(2026, 7, 1, 0);
    let backups = [
        b("u1", now - DAY, VerifyStatus::Unverified),
        b("u2", now - 2 * DAY, VerifyStatus::Unverified),
        b("u3", now - 3 * DAY, VerifyStatus::Unverified),
        b("u4", now - 4 * DAY, VerifyStatus::Unverified),
    ];
    let p = Policy {
        keep_within: Some(Duration::from_secs(3600)),
        min_keep: 3,
        ..Policy::default()
    };
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "u1: keep newest",
            "u2: keep min_keep",
            "u3: keep min_keep",
            "u4: delete expired",
        ]
    );
}

#[test]
fn rebuilt_backups_count_only_once_verified() {
    let now = at(2026, 7, 1, 0);
    // Two real unverified backups, then two newer ones a catalog rebuild recorded (H2).
    let rebuilt = |id: &str, t: i64, s: VerifyStatus| Candidate {
        rebuilt: true,
        ..b(id, t, s)
    };
    let mut backups = vec![
        b("real1", now - 4 * HOUR, VerifyStatus::Unverified),
        b("real2", now - 3 * HOUR, VerifyStatus::Unverified),
        rebuilt("fake1", now - 2 * HOUR, VerifyStatus::Unverified),
        rebuilt("fake2", now - HOUR, VerifyStatus::Unverified),
    ];
    let p = Policy {
        keep_last: 2,
        min_keep: 1,
        ..Policy::default()
    };
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "fake2: keep rebuilt_unverified",
            "fake1: keep rebuilt_unverified",
            "real2: keep newest,last",
            "real1: keep last",
        ]
    );
    // Verified: it counts like any verified backup; a corrupt one goes.
    backups[3].verify_status = VerifyStatus::Ok;
    backups[2].verify_status = VerifyStatus::Corrupt;
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "fake2: keep newest,last",
            "fake1: delete corrupt",
            "real2: keep last",
            "real1: delete expired",
        ]
    );
}

#[test]
fn pinned_backups_are_kept_and_count() {
    let now = at(2026, 7, 1, 0);
    let mut backups = daily(4);
    backups[3].pinned = true;
    let bad = Candidate {
        pinned: true,
        ..b("badpin", now - 10 * DAY, VerifyStatus::Corrupt)
    };
    backups.push(bad);
    let p = Policy {
        keep_last: 1,
        min_keep: 2,
        ..Policy::default()
    };
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "d00: keep newest,last",
            "d01: delete expired",
            "d02: delete expired",
            "d03: keep pinned",
            "badpin: keep pinned",
        ],
        "the pinned good backup makes up min_keep 2"
    );
}

#[test]
fn empty_policy_keeps_everything() {
    let now = at(2026, 7, 1, 0);
    let d = plan(&daily(3), &Policy::default(), now);
    assert!(d.iter().all(|d| d.action == Action::Keep), "{d:?}");
    assert!(d[1].reasons.contains(&Reason::NoPolicy));
}

#[test]
fn marked_backups_stay_deleting() {
    let now = at(2026, 7, 1, 0);
    let mut backups = daily(3);
    backups[2].deleting = true;
    let p = Policy {
        keep_last: 5,
        ..Policy::default()
    };
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "d00: keep newest,last",
            "d01: keep last",
            "d02: delete deleting"
        ]
    );
}

#[test]
fn iso_weeks_cross_the_new_year() {
    // 2026-12-28 is the Monday of ISO week 53 of 2026, which ends on Sunday 2027-01-03;
    // 2027-01-04 starts week 1 of 2027.
    let p = Policy {
        keep_weekly: 2,
        ..Policy::default()
    };
    let backups = [
        ok("w1-mon", at(2027, 1, 4, 2)),
        ok("w53-sun", at(2027, 1, 3, 2)),
        ok("w53-thu", at(2026, 12, 31, 2)),
        ok("w53-mon", at(2026, 12, 28, 2)),
        ok("w52-sun", at(2026, 12, 27, 2)),
    ];
    assert_eq!(
        show(&plan(&backups, &p, at(2027, 1, 5, 0))),
        [
            "w1-mon: keep newest,weekly",
            "w53-sun: keep weekly",
            "w53-thu: delete expired",
            "w53-mon: delete expired",
            "w52-sun: delete expired",
        ]
    );
}

#[test]
fn months_take_the_newest_of_each_month_with_a_backup() {
    // Across a leap day, with an empty month (April) that counts for nothing.
    let p = Policy {
        keep_last: 1,
        keep_monthly: 3,
        ..Policy::default()
    };
    let backups = [
        ok("may-02", at(2028, 5, 2, 2)),
        ok("may-01", at(2028, 5, 1, 2)),
        ok("mar-31", at(2028, 3, 31, 2)),
        ok("feb-29", at(2028, 2, 29, 23)),
        ok("feb-01", at(2028, 2, 1, 2)),
        ok("jan-31", at(2028, 1, 31, 2)),
    ];
    assert_eq!(
        show(&plan(&backups, &p, at(2028, 5, 3, 0))),
        [
            "may-02: keep newest,last,monthly",
            "may-01: delete expired",
            "mar-31: keep monthly",
            "feb-29: keep monthly",
            "feb-01: delete expired",
            "jan-31: delete expired",
        ]
    );
}

#[test]
fn years_turn_at_midnight_utc() {
    let p = Policy {
        keep_yearly: 2,
        ..Policy::default()
    };
    let t = |y, mo, d, h, mi| {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
            .timestamp_millis()
    };
    let backups = [
        ok("2027-first", t(2027, 1, 1, 0, 30)),
        ok("2026-last", t(2026, 12, 31, 23, 30)),
        ok("2026-june", t(2026, 6, 1, 2, 0)),
        ok("2025-last", t(2025, 12, 31, 2, 0)),
    ];
    assert_eq!(
        show(&plan(&backups, &p, t(2027, 1, 2, 0, 0))),
        [
            "2027-first: keep newest,yearly",
            "2026-last: keep yearly",
            "2026-june: delete expired",
            "2025-last: delete expired",
        ]
    );
}

#[test]
fn daily_counts_days_that_have_a_backup() {
    let p = Policy {
        keep_daily: 3,
        ..Policy::default()
    };
    let backups = [
        ok("d30", at(2026, 6, 30, 2)),
        ok("d28", at(2026, 6, 28, 2)),
        ok("d25-late", at(2026, 6, 25, 23)),
        ok("d25-early", at(2026, 6, 25, 1)),
        ok("d20", at(2026, 6, 20, 2)),
    ];
    assert_eq!(
        show(&plan(&backups, &p, at(2026, 7, 1, 0))),
        [
            "d30: keep newest,daily",
            "d28: keep daily",
            "d25-late: keep daily",
            "d25-early: delete expired",
            "d20: delete expired",
        ]
    );
}

#[test]
fn rules_add_up_and_ties_break_by_id() {
    // Two backups finished in the same millisecond: the id orders them, the same way each
    // time. keep_last, keep_within and keep_daily each keep their own, and reasons add up.
    let now = at(2026, 7, 1, 0);
    let p = Policy {
        keep_last: 1,
        keep_daily: 2,
        keep_within: Some(Duration::from_secs(6 * 3600)),
        ..Policy::default()
    };
    let same = now - 2 * HOUR;
    let backups = [
        ok("tie-a", same),
        ok("tie-b", same),
        ok("early", now - 5 * HOUR),
        ok("yesterday", now - 30 * HOUR),
        ok("older", now - 60 * HOUR),
    ];
    assert_eq!(
        show(&plan(&backups, &p, now)),
        [
            "tie-b: keep newest,last,daily,within",
            "tie-a: keep within",
            "early: keep within",
            "yesterday: keep daily",
            "older: delete expired",
        ]
    );
}

#[test]
fn no_backups_no_decisions() {
    assert!(plan(&[], &Policy::default(), 0).is_empty());
}

// ---- properties ------------------------------------------------------------------------------

fn status() -> impl Strategy<Value = VerifyStatus> {
    prop_oneof![
        4 => Just(VerifyStatus::Ok),
        3 => Just(VerifyStatus::Unverified),
        1 => Just(VerifyStatus::Corrupt),
        1 => Just(VerifyStatus::Missing),
    ]
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    // Up to 60 backups spread over ~2 years, some in the same hour.
    prop::collection::vec(
        (
            0_i64..2 * 366 * 24,
            0_i64..3_600_000,
            status(),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.05),
        ),
        0..60,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (hours, ms, verify_status, pinned, deleting))| Candidate {
                    backup_id: format!("b{i:03}"),
                    finished_at_ms: at(2025, 1, 1, 0) + hours * HOUR + ms,
                    verify_status,
                    // A backup marked for deletion cannot be pinned (the catalog refuses it).
                    pinned: pinned && !deleting,
                    deleting,
                    rebuilt: false,
                },
            )
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        (0_u32..5, 0_u32..5, 0_u32..8, 0_u32..5, 0_u32..5, 0_u32..3),
        prop::option::of(1_u64..90),
        0_u32..6,
    )
        .prop_map(
            |((last, hourly, daily, weekly, monthly, yearly), within, min_keep)| Policy {
                keep_last: last,
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                keep_within: within.map(|d| Duration::from_secs(d * 86_400)),
                min_keep,
            },
        )
}

fn kept(decisions: &[Decision]) -> Vec<String> {
    let mut v: Vec<String> = decisions
        .iter()
        .filter(|d| d.action == Action::Keep)
        .map(|d| d.backup_id.clone())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plan_is_safe(backups in candidates(), p in policy(), offset in 0_i64..800 * DAY) {
        let now = at(2025, 1, 1, 0) + offset;
        let d = plan(&backups, &p, now);
        let by_id: HashMap<&str, &Decision> =
            d.iter().map(|d| (d.backup_id.as_str(), d)).collect();
        prop_assert_eq!(d.len(), backups.len());
        // Every decision has a reason.
        prop_assert!(d.iter().all(|d| !d.reasons.is_empty()));
        // Never a pinned one.
        for c in backups.iter().filter(|c| c.pinned) {
            prop_assert_eq!(by_id[c.backup_id.as_str()].action, Action::Keep);
        }
        // A backup already marked for deletion stays on its way out.
        for c in backups.iter().filter(|c| c.deleting) {
            prop_assert_eq!(by_id[c.backup_id.as_str()].action, Action::Delete);
        }
        // Never the newest good one (of those not already being deleted).
        let good: Vec<&Candidate> =
            backups.iter().filter(|c| c.is_good() && !c.deleting).collect();
        if let Some(newest) = good
            .iter()
            .max_by_key(|c| (c.finished_at_ms, c.backup_id.clone()))
        {
            prop_assert_eq!(by_id[newest.backup_id.as_str()].action, Action::Keep);
        }
        // Never below min_keep: good copies, and verified copies where there are enough.
        let kept_good = good
            .iter()
            .filter(|c| by_id[c.backup_id.as_str()].action == Action::Keep)
            .count();
        let min = usize::try_from(p.min_keep).unwrap_or(usize::MAX);
        prop_assert!(kept_good >= min.min(good.len()));
        let verified: Vec<&&Candidate> = good
            .iter()
            .filter(|c| c.verify_status == VerifyStatus::Ok)
            .collect();
        let kept_verified = verified
            .iter()
            .filter(|c| by_id[c.backup_id.as_str()].action == Action::Keep)
            .count();
        prop_assert!(kept_verified >= min.min(verified.len()));
        if p.is_empty() {
            // No keep rule at all is a mistake, not "delete all": everything not already on
            // its way out stays, bad backups included.
            for c in backups.iter().filter(|c| !c.deleting) {
                prop_assert_eq!(by_id[c.backup_id.as_str()].action, Action::Keep);
            }
        } else {
            // Bad backups are only kept when pinned.
            for c in backups.iter().filter(|c| !c.is_good() && !c.pinned && !c.deleting) {
                prop_assert_eq!(by_id[c.backup_id.as_str()].action, Action::Delete);
            }
        }
    }

    #[test]
    fn plan_is_idempotent(backups in candidates(), p in policy(), offset in 0_i64..800 * DAY) {
        let now = at(2025, 1, 1, 0) + offset;
        let first = plan(&backups, &p, now);
        let survivors: Vec<Candidate> = backups
            .iter()
            .filter(|c| first.iter().any(|d| d.backup_id == c.backup_id && d.action == Action::Keep))
            .cloned()
            .collect();
        let second = plan(&survivors, &p, now);
        prop_assert!(second.iter().all(|d| d.action == Action::Keep), "{:?}", second);
    }

    #[test]
    fn plan_ignores_input_order(backups in candidates(), p in policy(), seed in any::<u64>()) {
        let now = at(2027, 1, 1, 0);
        let mut shuffled = backups.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let j = usize::try_from(s % (i as u64 + 1)).unwrap_or(0);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(plan(&backups, &p, now), plan(&shuffled, &p, now));
        prop_assert_eq!(kept(&plan(&backups, &p, now)), kept(&plan(&shuffled, &p, now)));
    }
}
