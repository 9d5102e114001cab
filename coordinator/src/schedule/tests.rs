use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;

fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
        .timestamp_millis()
}

fn local(ms: i64, tz: &str) -> String {
    let tz: Tz = tz.parse().expect("tz");
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("time")
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn daily_0230(tz: &str) -> ScheduleDef {
    ScheduleDef {
        spec: CronSpec::parse("30 2 * * *", tz).expect("valid"),
        jitter: Duration::ZERO,
        kind: ScheduleKind::Backup,
        cover: Duration::ZERO,
        drill_into: None,
    }
}

/// Run times of a daily 02:30 job over the days around a transition, in local time.
fn runs(tz: &str, from_ms: i64, n: usize) -> Vec<String> {
    daily_0230(tz)
        .upcoming("prod/orders", from_ms, n)
        .into_iter()
        .map(|ms| local(ms, tz))
        .collect()
}

/// Every local calendar day in the range has exactly one run.
fn once_per_day(tz_name: &str, first: NaiveDate, days: u64) {
    let tz: Tz = tz_name.parse().expect("tz");
    let start = tz
        .from_local_datetime(&first.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists")
        .with_timezone(&Utc)
        .timestamp_millis();
    let all = daily_0230(tz_name).upcoming("prod/orders", start - 1, 100);
    for day in first.iter_days().take(usize::try_from(days).expect("days")) {
        let on_day: Vec<_> = all
            .iter()
            .filter(|ms| {
                Utc.timestamp_millis_opt(**ms)
                    .single()
                    .expect("time")
                    .with_timezone(&tz)
                    .date_naive()
                    == day
            })
            .collect();
        assert_eq!(on_day.len(), 1, "{tz_name} {day}: {on_day:?}");
    }
}

#[test]
fn berlin_spring_forward_runs_once_after_the_gap() {
    // 2026-03-29: 02:00 CET → 03:00 CEST; 02:30 does not exist that day.
    let from = utc_ms(2026, 3, 27, 12, 0);
    assert_eq!(
        runs("Europe/Berlin", from, 4),
        [
            "2026-03-28 02:30 CET",
            "2026-03-29 03:00 CEST",
            "2026-03-30 02:30 CEST",
            "2026-03-31 02:30 CEST",
        ]
    );
    once_per_day(
        "Europe/Berlin",
        NaiveDate::from_ymd_opt(2026, 3, 25).expect("date"),
        10,
    );
}

#[test]
fn berlin_fall_back_runs_once_at_the_first_0230() {
    // 2026-10-25: 03:00 CEST → 02:00 CET; 02:30 happens twice that day.
    let from = utc_ms(2026, 10, 23, 12, 0);
    assert_eq!(
        runs("Europe/Berlin", from, 4),
        [
            "2026-10-24 02:30 CEST",
            "2026-10-25 02:30 CEST",
            "2026-10-26 02:30 CET",
            "2026-10-27 02:30 CET",
        ]
    );
    once_per_day(
        "Europe/Berlin",
        NaiveDate::from_ymd_opt(2026, 10, 21).expect("date"),
        10,
    );
}

#[test]
fn new_york_transitions() {
    // 2026-03-08: 02:00 EST → 03:00 EDT.
    assert_eq!(
        runs("America/New_York", utc_ms(2026, 3, 7, 0, 0), 3),
        [
            "2026-03-07 02:30 EST",
            "2026-03-08 03:00 EDT",
            "2026-03-09 02:30 EDT"
        ]
    );
    // 2026-11-01: 02:00 EDT → 01:00 EST; 02:30 happens once (in EST).
    assert_eq!(
        runs("America/New_York", utc_ms(2026, 10, 31, 0, 0), 3),
        [
            "2026-10-31 02:30 EDT",
            "2026-11-01 02:30 EST",
            "2026-11-02 02:30 EST"
        ]
    );
    once_per_day(
        "America/New_York",
        NaiveDate::from_ymd_opt(2026, 3, 5).expect("date"),
        10,
    );
    once_per_day(
        "America/New_York",
        NaiveDate::from_ymd_opt(2026, 10, 29).expect("date"),
        10,
    );
}

#[test]
fn utc_is_the_default_zone() {
    let s = CronSpec::parse("0 3 * * *", "").expect("valid");
    assert_eq!(s.timezone(), "UTC");
    assert_eq!(
        s.next_after(utc_ms(2026, 1, 1, 3, 0)),
        Some(utc_ms(2026, 1, 2, 3, 0))
    );
}

#[test]
fn next_after_is_strictly_after() {
    let s = CronSpec::parse("0 * * * *", "UTC").expect("valid");
    let at = utc_ms(2026, 5, 1, 10, 0);
    assert_eq!(s.next_after(at), Some(utc_ms(2026, 5, 1, 11, 0)));
    assert_eq!(s.next_after(at - 1), Some(at));
    assert_eq!(s.next_after(at + 1), Some(utc_ms(2026, 5, 1, 11, 0)));
}

#[test]
fn bad_expressions_are_refused_with_a_hint() {
    for (expr, tz, want) in [
        ("", "UTC", "empty"),
        ("30 2 * *", "UTC", "4 fields"),
        ("0 30 2 * * *", "UTC", "6 fields"),
        ("61 2 * * *", "UTC", "not valid"),
        ("30 2 * * *", "Mars/Olympus", "IANA"),
        ("30 2 * * *", "europe/berlin", "IANA"),
        ("* * * * *", "UTC", "more often"),
        ("*/2 * * * *", "UTC", "more often"),
        ("0 0 30 2 *", "UTC", "never matches"),
    ] {
        let e = CronSpec::parse(expr, tz).expect_err(expr);
        assert!(e.contains(want), "{expr:?} in {tz}: {e}");
    }
    CronSpec::parse("*/15 * * * *", "UTC").expect("every 15 minutes is fine");
    CronSpec::parse("@daily", "Europe/Berlin").expect("nicknames work");
    CronSpec::parse("0 2 * * MON-FRI", "America/New_York").expect("names work");
}

#[test]
fn jitter_is_deterministic_and_bounded() {
    let j = Duration::from_secs(600);
    let slot = utc_ms(2026, 6, 1, 2, 30);
    let a = jitter_offset_ms("prod/orders", slot, j);
    assert_eq!(a, jitter_offset_ms("prod/orders", slot, j));
    let mut seen = std::collections::HashSet::new();
    for i in 0..200 {
        let o = jitter_offset_ms(&format!("prod/t{i}"), slot, j);
        assert!((0..600_000).contains(&o), "{o}");
        assert_eq!(o % 1000, 0);
        seen.insert(o);
    }
    assert!(seen.len() > 50, "jitter spreads targets: {}", seen.len());
    assert_eq!(jitter_offset_ms("prod/orders", slot, Duration::ZERO), 0);
}

#[test]
fn upcoming_includes_jitter_and_stays_ordered() {
    let def = ScheduleDef {
        spec: CronSpec::parse("0 * * * *", "UTC").expect("valid"),
        jitter: Duration::from_secs(1800),
        kind: ScheduleKind::Backup,
        cover: Duration::ZERO,
        drill_into: None,
    };
    let from = utc_ms(2026, 6, 1, 0, 0);
    // One second after the 00:00 occurrence: its jittered start is still ahead (unless the
    // jitter happens to be zero for it).
    let next = def.upcoming("prod/orders", from + 1000, 5);
    assert_eq!(next.len(), 5);
    let first_slot = if def.fire_at("prod/orders", from) > from + 1000 {
        from
    } else {
        from + 3_600_000
    };
    for (i, ms) in next.iter().enumerate() {
        let slot = first_slot + 3_600_000 * i64::try_from(i).expect("i");
        assert!(*ms >= slot && *ms < slot + 1_800_000, "{i}: {ms} vs {slot}");
    }
    assert!(next.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn durations() {
    for (text, secs) in [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("7d", 604_800),
        ("1w", 604_800),
        ("1h30m", 5400),
        ("0s", 0),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_secs(secs)),
            "{text}"
        );
    }
    for bad in ["", "10", "-5m", "5x", "m", "1.5h", "99999999999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

#[test]
fn jitter_must_stay_below_the_gap_between_runs() {
    let s = CronSpec::parse("*/15 * * * *", "UTC").expect("valid");
    assert!(s.check_jitter(Duration::from_secs(14 * 60)).is_ok());
    let e = s
        .check_jitter(Duration::from_secs(15 * 60))
        .expect_err("jitter as long as the interval");
    assert!(e.contains("not shorter") && e.contains("15m"), "{e}");
    // Weekdays only: the shortest gap is a day, not the weekend's three.
    let s = CronSpec::parse("0 2 * * MON-FRI", "Europe/Berlin").expect("valid");
    assert!(s.check_jitter(MAX_JITTER).is_ok());
}
