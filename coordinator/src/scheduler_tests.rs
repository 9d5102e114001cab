//! The scheduler's decisions, driven by a simulated clock: no sleeps, no catalog.

use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::schedule::{ScheduleKind, Source};

fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
        .timestamp_millis()
}

fn schedule(cron: &str, tz: &str, jitter_secs: u64) -> Schedule {
    Schedule {
        target: "prod/orders".into(),
        def: ScheduleDef {
            spec: CronSpec::parse(cron, tz).expect("valid"),
            jitter: Duration::from_secs(jitter_secs),
            kind: ScheduleKind::Backup,
            cover: Duration::ZERO,
            drill_into: None,
        },
        source: Source::Target,
        paused: false,
        updated_by: "alice".into(),
        updated_at_ms: 0,
    }
}

fn config(catch_up: CatchUp) -> SchedulerConfig {
    SchedulerConfig {
        catch_up,
        misfire_grace: Duration::from_secs(300),
        defaults: Default::default(),
    }
}

/// Runs the scheduler loop against a simulated clock from `from` to `to` in `step` steps,
/// applying each decision the way the task does (the cursor moves to the decided occurrence;
/// a started backup stays active for `busy` ms). Returns the started runs' occurrence times.
fn simulate(
    s: &Schedule,
    from: i64,
    to: i64,
    step: i64,
    busy: i64,
    cfg: &SchedulerConfig,
) -> (Vec<i64>, Vec<String>) {
    let mut cursor = from;
    let mut active_until: Option<i64> = None;
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    let mut now = from;
    while now <= to {
        let mut active = HashMap::new();
        if active_until.is_some_and(|t| now < t) {
            active.insert((s.target.clone(), ScheduleKind::Backup), "job-1".to_owned());
        }
        for due in decide(&[(s.clone(), cursor)], &active, now, cfg) {
            cursor = due.slot_ms;
            match due.action {
                Action::Start => {
                    started.push(due.slot_ms);
                    active_until = Some(now + busy);
                }
                Action::Skip(why) => skipped.push(why),
            }
        }
        now += step;
    }
    (started, skipped)
}

fn local(ms: i64, tz: &str) -> String {
    let tz: chrono_tz::Tz = tz.parse().expect("tz");
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("time")
        .with_timezone(&tz)
        .format("%m-%d %H:%M %Z")
        .to_string()
}

#[test]
fn daily_0230_runs_once_per_day_across_dst() {
    let cfg = config(CatchUp::RunOnce);
    for (tz, from, want) in [
        (
            "Europe/Berlin",
            utc_ms(2026, 3, 28, 0, 0),
            ["03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST"],
        ),
        (
            "Europe/Berlin",
            utc_ms(2026, 10, 24, 0, 0),
            ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"],
        ),
        (
            "America/New_York",
            utc_ms(2026, 3, 7, 5, 0),
            ["03-07 02:30 EST", "03-08 03:00 EDT", "03-09 02:30 EDT"],
        ),
        (
            "America/New_York",
            utc_ms(2026, 10, 31, 4, 0),
            ["10-31 02:30 EDT", "11-01 02:30 EST", "11-02 02:30 EST"],
        ),
    ] {
        let s = schedule("30 2 * * *", tz, 0);
        // A tick a minute for three days: each day's run exactly once, on time.
        let (started, skipped) =
            simulate(&s, from, from + 3 * 86_400_000 - 1, 60_000, 600_000, &cfg);
        let got: Vec<String> = started.iter().map(|ms| local(*ms, tz)).collect();
        assert_eq!(got, want, "{tz}");
        assert!(skipped.is_empty(), "{tz}: {skipped:?}");
    }
}

#[test]
fn stopped_coordinator_catches_up_once() {
    let s = schedule("0 * * * *", "UTC", 0);
    let cursor = utc_ms(2026, 6, 1, 0, 0);
    // Down for five and a half hours: five occurrences missed.
    let now = utc_ms(2026, 6, 1, 5, 30);
    let d = decide(
        &[(s.clone(), cursor)],
        &HashMap::new(),
        now,
        &config(CatchUp::RunOnce),
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].slot_ms, utc_ms(2026, 6, 1, 5, 0));
    assert_eq!(d[0].folded, 4);
    assert!(d[0].late);
    assert_eq!(d[0].action, Action::Start);

    // The cursor moved to the decided occurrence: the next pass does nothing.
    let again = decide(
        &[(s.clone(), d[0].slot_ms)],
        &HashMap::new(),
        now + 1000,
        &config(CatchUp::RunOnce),
    );
    assert!(again.is_empty(), "{again:?}");

    // With catch_up = skip the missed run is recorded as skipped, with the reason.
    let d = decide(&[(s, cursor)], &HashMap::new(), now, &config(CatchUp::Skip));
    let Action::Skip(why) = &d[0].action else {
        panic!("{d:?}")
    };
    assert!(
        why.contains("missed") && why.contains("5 occurrences"),
        "{why}"
    );
}

#[test]
fn a_run_within_the_grace_is_on_time_even_with_skip() {
    let s = schedule("0 * * * *", "UTC", 0);
    let cursor = utc_ms(2026, 6, 1, 0, 30);
    let now = utc_ms(2026, 6, 1, 1, 4);
    let d = decide(&[(s, cursor)], &HashMap::new(), now, &config(CatchUp::Skip));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, Action::Start);
    assert!(!d[0].late);
}

#[test]
fn a_due_run_while_a_backup_is_active_is_skipped_with_the_reason() {
    let s = schedule("0 * * * *", "UTC", 0);
    let active = HashMap::from([(
        ("prod/orders".to_owned(), ScheduleKind::Backup),
        "J42".to_owned(),
    )]);
    let d = decide(
        &[(s, utc_ms(2026, 6, 1, 0, 30))],
        &active,
        utc_ms(2026, 6, 1, 1, 0),
        &config(CatchUp::RunOnce),
    );
    let Action::Skip(why) = &d[0].action else {
        panic!("{d:?}")
    };
    assert!(why.contains("J42") && why.contains("already"), "{why}");
}

#[test]
fn long_backups_fold_later_runs_into_themselves() {
    // Hourly schedule, each backup takes 90 minutes: every other occurrence is skipped,
    // never two at once.
    let s = schedule("0 * * * *", "UTC", 0);
    let from = utc_ms(2026, 6, 1, 0, 0);
    let (started, skipped) = simulate(
        &s,
        from,
        from + 6 * 3_600_000,
        60_000,
        90 * 60_000,
        &config(CatchUp::RunOnce),
    );
    assert_eq!(started.len(), 3, "{started:?}");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
}

#[test]
fn paused_schedules_do_nothing() {
    let mut s = schedule("0 * * * *", "UTC", 0);
    s.paused = true;
    let d = decide(
        &[(s, utc_ms(2026, 6, 1, 0, 0))],
        &HashMap::new(),
        utc_ms(2026, 6, 2, 0, 0),
        &config(CatchUp::RunOnce),
    );
    assert!(d.is_empty());
}

#[test]
fn jitter_delays_the_start_but_not_the_occurrence() {
    let s = schedule("0 3 * * *", "UTC", 1800);
    let slot = utc_ms(2026, 6, 1, 3, 0);
    let fire = s.def.fire_at(&s.target, slot);
    assert!(fire >= slot && fire < slot + 1_800_000);
    let cursor = utc_ms(2026, 6, 1, 0, 0);
    let cfg = config(CatchUp::RunOnce);
    if fire > slot {
        assert!(decide(&[(s.clone(), cursor)], &HashMap::new(), fire - 1, &cfg).is_empty());
    }
    let d = decide(&[(s, cursor)], &HashMap::new(), fire, &cfg);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].slot_ms, d[0].fire_ms), (slot, fire));
}

#[test]
fn nothing_is_due_before_the_first_occurrence_after_the_cursor() {
    let s = schedule("30 2 * * *", "Europe/Berlin", 0);
    // Set at 03:00 Berlin: today's 02:30 is past and must not fire.
    let set_at = utc_ms(2026, 6, 1, 1, 0);
    let d = decide(
        &[(s, set_at)],
        &HashMap::new(),
        set_at + 3_600_000,
        &config(CatchUp::RunOnce),
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn schedules_of_each_kind_on_one_target_are_decided_apart() {
    let backup = schedule("0 * * * *", "UTC", 0);
    let mut verify = schedule("0 * * * *", "UTC", 0);
    verify.def.kind = ScheduleKind::Verify;
    verify.def.cover = Duration::from_secs(7 * 86_400);
    let cursor = utc_ms(2026, 6, 1, 0, 30);
    // A backup is running: the backup schedule's run folds into it, the verify run starts.
    let active = HashMap::from([(
        ("prod/orders".to_owned(), ScheduleKind::Backup),
        "J1".to_owned(),
    )]);
    let d = decide(
        &[(backup.clone(), cursor), (verify.clone(), cursor)],
        &active,
        utc_ms(2026, 6, 1, 1, 0),
        &config(CatchUp::RunOnce),
    );
    assert_eq!(d.len(), 2, "{d:?}");
    let by_kind = |k| d.iter().find(|x| x.kind == k).expect("decided");
    assert!(matches!(
        by_kind(ScheduleKind::Backup).action,
        Action::Skip(_)
    ));
    assert_eq!(by_kind(ScheduleKind::Verify).action, Action::Start);
    // The previous verify run's jobs are still active: only the verify run is skipped.
    let active = HashMap::from([(
        ("prod/orders".to_owned(), ScheduleKind::Verify),
        "J2".to_owned(),
    )]);
    let d = decide(
        &[(backup, cursor), (verify, cursor)],
        &active,
        utc_ms(2026, 6, 1, 1, 0),
        &config(CatchUp::RunOnce),
    );
    let by_kind = |k| d.iter().find(|x| x.kind == k).expect("decided");
    assert_eq!(by_kind(ScheduleKind::Backup).action, Action::Start);
    let Action::Skip(why) = &by_kind(ScheduleKind::Verify).action else {
        panic!("{d:?}")
    };
    assert!(why.contains("J2") && why.contains("verify"), "{why}");
}
