//! Point-in-time recovery: the point a physical restore replays the archived WAL to, and what
//! the server does once there, checked where they arrive (the CLI's arguments, the wire).

use std::fmt;

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::RecordError;

/// A WAL location, `X/Y` in hex as PostgreSQL prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, RecordError> {
        let bad = || {
            RecordError(format!(
                "{s:?} is not a WAL location (X/Y in hex, e.g. 0/5A000060)"
            ))
        };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(bad());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(hi << 32 | lo))
    }
}

impl Lsn {
    /// The name of the WAL segment file holding this location on timeline `tli`, for a
    /// cluster with segments of `seg_size` bytes (PostgreSQL's `pg_walfile_name`).
    pub fn segment_file(self, tli: u32, seg_size: u64) -> String {
        let seg_size = seg_size.max(1);
        let per_log = (0x1_0000_0000 / seg_size).max(1);
        let segno = self.0 / seg_size;
        format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the archived WAL.
    Latest,
    /// The last transaction that committed at or before this moment (microseconds since the
    /// Unix epoch, UTC).
    Time(i64),
    /// This WAL location.
    Lsn(Lsn),
    /// This transaction id (inclusive).
    Xid(u64),
    /// A restore point made with `pg_create_restore_point(NAME)`.
    Name(String),
}

/// Longest restore point name PostgreSQL keeps (`MAXFNAMELEN` - 1).
const MAX_NAME: usize = 63;

impl RecoveryTarget {
    /// `--to-time`: RFC 3339 or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]`; the UTC
    /// offset is required (a time without one means something else on every host).
    pub fn time(s: &str) -> Result<Self, RecordError> {
        let bad = |why: &str| {
            RecordError(format!(
                "{s:?} is not a recovery time: {why} (write e.g. '2026-12-03 14:03:27+01' or \
                 2026-12-03T13:03:27Z)"
            ))
        };
        let mut t = s.trim().to_owned();
        if t.len() > 10 && t.as_bytes()[10] == b' ' {
            t.replace_range(10..11, "T");
        }
        // A short offset (+01, -0530) gets its minutes and colon.
        if let Some(pos) = t.rfind(['+', '-']).filter(|&p| p > 10) {
            let off = &t[pos + 1..];
            if off.len() == 2 && off.bytes().all(|b| b.is_ascii_digit()) {
                t.push_str(":00");
            } else if off.len() == 4 && off.bytes().all(|b| b.is_ascii_digit()) {
                t.insert(pos + 3, ':');
            }
        } else if !t.ends_with(['Z', 'z']) {
            return Err(bad("it has no UTC offset"));
        }
        let at = OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| bad(&e.to_string()))?;
        let us = at.unix_timestamp_nanos() / 1000;
        Ok(Self::Time(
            i64::try_from(us).map_err(|_| bad("out of range"))?,
        ))
    }

    pub fn lsn(s: &str) -> Result<Self, RecordError> {
        Ok(Self::Lsn(s.parse()?))
    }

    pub fn xid(s: &str) -> Result<Self, RecordError> {
        let x: u64 = s
            .parse()
            .map_err(|_| RecordError(format!("{s:?} is not a transaction id (a number)")))?;
        if x < 3 {
            return Err(RecordError(format!(
                "{x} is not a normal transaction id (3 or more)"
            )));
        }
        Ok(Self::Xid(x))
    }

    pub fn name(s: &str) -> Result<Self, RecordError> {
        if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
            return Err(RecordError(format!(
                "{s:?} is not a restore point name (1 to {MAX_NAME} bytes, no control characters)"
            )));
        }
        Ok(Self::Name(s.to_owned()))
    }

    /// The time as PostgreSQL reads it in `recovery_target_time`, in UTC to the microsecond.
    pub fn pg_time(us: i64) -> String {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond()
        )
    }
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("the end of the archived WAL"),
            Self::Time(us) => write!(f, "time {}", Self::pg_time(*us)),
            Self::Lsn(l) => write!(f, "WAL location {l}"),
            Self::Xid(x) => write!(f, "transaction {x}"),
            Self::Name(n) => write!(f, "restore point {n:?}"),
        }
    }
}

/// What the server does when it reaches the target (`recovery_target_action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Ends recovery and opens for writes on a new timeline.
    #[default]
    Promote,
    /// Stays read-only in recovery, so the data can be checked first
    /// (`SELECT pg_wal_replay_resume()` promotes).
    Pause,
    /// Stops the server.
    Shutdown,
}

impl RecoveryAction {
    pub fn parse(s: &str) -> Result<Self, RecordError> {
        match s {
            "" | "promote" => Ok(Self::Promote),
            "pause" => Ok(Self::Pause),
            "shutdown" => Ok(Self::Shutdown),
            other => Err(RecordError(format!(
                "{other:?} is not a recovery action; use promote, pause or shutdown"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Pause => "pause",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A point-in-time recovery as asked for: the target and the action there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub target: RecoveryTarget,
    pub action: RecoveryAction,
}

impl RecoveryTarget {
    /// The form the wire and the catalog carry: `latest`, `time:MICROS`, `lsn:X/Y`,
    /// `xid:N`, `name:NAME`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Latest => "latest".into(),
            Self::Time(us) => format!("time:{us}"),
            Self::Lsn(l) => format!("lsn:{l}"),
            Self::Xid(x) => format!("xid:{x}"),
            Self::Name(n) => format!("name:{n}"),
        }
    }

    pub fn from_text(s: &str) -> Result<Self, RecordError> {
        let bad = || {
            RecordError(format!(
                "recovery_target {s:?} is not latest, time:, lsn:, xid: or name:"
            ))
        };
        if s == "latest" {
            return Ok(Self::Latest);
        }
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "time" => value.parse().map(Self::Time).map_err(|_| bad()),
            "lsn" => Self::lsn(value),
            "xid" => Self::xid(value),
            "name" => Self::name(value),
            _ => Err(bad()),
        }
    }
}

impl Recovery {
    /// The wire's `recovery_target` and `recovery_action`.
    pub fn to_wire(r: Option<&Self>) -> (String, String) {
        r.map_or_else(Default::default, |r| {
            (r.target.to_text(), r.action.as_str().to_owned())
        })
    }

    /// From the wire: no target is no point-in-time recovery (an action alone is refused).
    pub fn from_wire(target: &str, action: &str) -> Result<Option<Self>, RecordError> {
        if target.is_empty() {
            if !action.is_empty() {
                return Err(RecordError(
                    "recovery_action without a recovery target; name a point (--to-time, \
                     --to-lsn, --to-xid, --to-name or --latest)"
                        .into(),
                ));
            }
            return Ok(None);
        }
        Ok(Some(Self {
            target: RecoveryTarget::from_text(target)?,
            action: RecoveryAction::parse(action)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `SELECT pg_walfile_name(lsn)` prints them on timeline 1 (16 MiB segments), and for
    /// 64 MiB and 1 GiB segments.
    #[test]
    fn segment_files_are_named_like_pg_walfile_name() {
        let lsn = |s: &str| s.parse::<Lsn>().expect(s);
        const MIB: u64 = 1024 * 1024;
        for (at, tli, size, name) in [
            ("0/2000028", 1, 16 * MIB, "000000010000000000000002"),
            ("0/5A000060", 1, 16 * MIB, "00000001000000000000005A"),
            ("0/FFFFFFFF", 1, 16 * MIB, "0000000100000000000000FF"),
            ("1/0", 2, 16 * MIB, "000000020000000100000000"),
            ("A/7C000000", 3, 64 * MIB, "000000030000000A0000001F"),
            ("2/40000000", 1, 1024 * MIB, "000000010000000200000001"),
        ] {
            assert_eq!(
                lsn(at).segment_file(tli, size),
                name,
                "{at} tli {tli} {size}"
            );
        }
    }

    #[test]
    fn times_need_an_offset_and_keep_microseconds() {
        let utc = RecoveryTarget::time("2026-12-03T13:03:27.123456Z").expect("rfc3339");
        for s in [
            "2026-12-03 14:03:27.123456+01",
            "2026-12-03 14:03:27.123456+0100",
            "2026-12-03T14:03:27.123456+01:00",
            "2026-12-03 08:33:27.123456-0430",
        ] {
            assert_eq!(RecoveryTarget::time(s).expect(s), utc, "{s}");
        }
        let RecoveryTarget::Time(us) = utc else {
            panic!()
        };
        assert_eq!(RecoveryTarget::pg_time(us), "2026-12-03 13:03:27.123456+00");
        for bad in [
            "2026-12-03 14:03:27",
            "yesterday",
            "2026-13-03 14:03:27+01",
            "",
        ] {
            let e = RecoveryTarget::time(bad).expect_err(bad).0;
            assert!(e.contains("not a recovery time"), "{bad}: {e}");
        }
        assert!(
            RecoveryTarget::time("2026-12-03 14:03:27")
                .expect_err("naive")
                .0
                .contains("no UTC offset")
        );
    }

    #[test]
    fn lsns_xids_and_names_are_checked() {
        let l: Lsn = "0/5A000060".parse().expect("lsn");
        assert_eq!(l, Lsn(0x5A00_0060));
        assert_eq!(l.to_string(), "0/5A000060");
        assert_eq!("1F/a".parse::<Lsn>().expect("lsn").to_string(), "1F/A");
        for bad in ["5A000060", "0/", "/1", "0/5A000060/1", "G/1", "123456789/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
        assert_eq!(
            RecoveryTarget::xid("123456").expect("xid"),
            RecoveryTarget::Xid(123456)
        );
        assert!(RecoveryTarget::xid("-1").is_err());
        assert!(RecoveryTarget::xid("2").is_err());
        assert!(RecoveryTarget::name("before_migration").is_ok());
        assert!(RecoveryTarget::name("").is_err());
        assert!(RecoveryTarget::name(&"x".repeat(64)).is_err());
        assert!(RecoveryTarget::name("a\nb").is_err());
        assert_eq!(
            RecoveryAction::parse("").expect("default"),
            RecoveryAction::Promote
        );
        assert!(RecoveryAction::parse("resume").is_err());
    }
}
