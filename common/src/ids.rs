//! Backup and job ids: they sort by creation time and read as one, e.g.
//! `20261127T233000Z-7f3a9c`. Safe as a path segment and an object key segment.
//!
//! The 24-bit suffix is not random: its top 14 bits are the fraction of the second (about
//! 61 µs steps) and its low 10 bits are random, and ids minted by one process within one
//! second are strictly increasing. So ids sort in the order they were minted (scripts sort
//! by id), stay unique, and every id minted before this scheme still parses.

use std::sync::Mutex;

use rand::Rng;
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

use std::fmt;

use crate::names::{NameError, checked_string, name_type};

const STAMP: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

const SUFFIX_MAX: u32 = 0xff_ffff;
const RANDOM_BITS: u32 = 10;

/// The minter behind [`new_id`].
static MINTER: IdMinter = IdMinter::new();

/// A new id for `at` (UTC). Within one second of `at`, ids minted by this process are
/// strictly increasing; an `at` older than the newest id minted (a rebuild dating a job from
/// its manifest) is minted from its own sub-second time without touching that order.
pub fn new_id(at: OffsetDateTime) -> String {
    MINTER.mint(at)
}

/// Mints ids; remembers the last one so ids of one second are strictly increasing.
pub struct IdMinter {
    /// The newest id minted: (unix second, suffix).
    last: Mutex<Option<(i64, u32)>>,
}

impl Default for IdMinter {
    fn default() -> Self {
        Self::new()
    }
}

impl IdMinter {
    pub const fn new() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }

    pub fn mint(&self, at: OffsetDateTime) -> String {
        let at = at.to_offset(time::UtcOffset::UTC);
        let mut second = at.unix_timestamp();
        let fraction = (u64::from(at.nanosecond()) << (24 - RANDOM_BITS)) / 1_000_000_000;
        let random: u32 = rand::rng().random_range(0..(1 << RANDOM_BITS));
        // `fraction < 2^14`, so the suffix fits in 24 bits.
        let mut suffix = (u32::try_from(fraction).unwrap_or(0) << RANDOM_BITS) | random;
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match *last {
                // An older time than the newest id: leave the live order alone.
                Some((last_second, _)) if last_second > second => {}
                Some((last_second, last_suffix))
                    if last_second == second && suffix <= last_suffix =>
                {
                    if last_suffix < SUFFIX_MAX {
                        suffix = last_suffix + 1;
                    } else {
                        // 16 million ids in one second: carry into the next second.
                        second += 1;
                        suffix = 0;
                    }
                    *last = Some((second, suffix));
                }
                _ => *last = Some((second, suffix)),
            }
        }
        let stamp = OffsetDateTime::from_unix_timestamp(second)
            .ok()
            .and_then(|t| t.format(STAMP).ok())
            .unwrap_or_else(|| "19700101T000000Z".into());
        format!("{stamp}-{suffix:06x}")
    }
}

/// Checks the shape of an id received from the network or the CLI.
pub fn validate_id(what: &'static str, id: &str) -> Result<(), NameError> {
    let bad = |why| NameError {
        what,
        value: id.chars().take(80).collect(),
        why,
    };
    if id.len() != 23 || !id.is_ascii() {
        return Err(bad("must look like 20261127T233000Z-7f3a9c"));
    }
    let (stamp, rest) = id.split_at(16);
    let Some(suffix) = rest.strip_prefix('-') else {
        return Err(bad("must look like 20261127T233000Z-7f3a9c"));
    };
    if time::PrimitiveDateTime::parse(
        stamp.trim_end_matches('Z'),
        format_description!("[year][month][day]T[hour][minute][second]"),
    )
    .is_err()
        || !stamp.ends_with('Z')
    {
        return Err(bad("must start with a UTC timestamp like 20261127T233000Z"));
    }
    if !suffix
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("must end with 6 lowercase hex digits"));
    }
    Ok(())
}

checked_string!(
    /// A backup id, validated: made only by [`BackupId::mint`] or [`BackupId::parse`].
    BackupId,
    "backup id",
    validate_id
);
checked_string!(
    /// A job id, validated: made only by [`JobId::mint`] or [`JobId::parse`].
    JobId,
    "job id",
    validate_id
);

impl BackupId {
    /// A new id for a backup starting at `at`.
    pub fn mint(at: OffsetDateTime) -> Self {
        Self(new_id(at))
    }
}

impl JobId {
    /// A new id for a job queued at `at`.
    pub fn mint(at: OffsetDateTime) -> Self {
        Self(new_id(at))
    }
}

/// The creation time encoded in an id.
pub fn id_time(id: &str) -> Option<OffsetDateTime> {
    let stamp = id.get(..15)?;
    time::PrimitiveDateTime::parse(
        stamp,
        format_description!("[year][month][day]T[hour][minute][second]"),
    )
    .ok()
    .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_ids_are_valid_by_construction() {
        let at = OffsetDateTime::now_utc();
        let b = BackupId::mint(at);
        assert_eq!(b.as_str().parse::<BackupId>().expect("parses"), b);
        let j = JobId::try_from(b.as_str()).expect("same shape");
        assert_eq!(j.to_string(), b.to_string());
        assert!("20261127T233000Z-7F3A9C".parse::<BackupId>().is_err());
        assert!(JobId::try_from("../../etc".to_owned()).is_err());
        let e = "nope".parse::<BackupId>().expect_err("invalid");
        assert!(e.to_string().contains("backup id"), "{e}");
    }
    use time::macros::datetime;

    #[test]
    fn ids_round_trip_and_sort() {
        let a = new_id(datetime!(2026-11-27 23:30:00 UTC));
        let b = new_id(datetime!(2026-11-27 23:30:01 UTC));
        assert!(a.starts_with("20261127T233000Z-"), "{a}");
        validate_id("backup id", &a).expect("valid");
        assert!(a < b);
        assert_eq!(id_time(&a), Some(datetime!(2026-11-27 23:30:00 UTC)));
    }

    #[test]
    fn bad_ids() {
        for bad in [
            "",
            "../../etc/passwd",
            "20261127T233000Z-7F3A9C",
            "20261127T233000Z_7f3a9c",
            "20261327T233000Z-7f3a9c",
            "20261127T233000Z-7f3a9c0",
            // 23 bytes, with byte 16 inside a multi-byte character: must not panic.
            "20261127T233000é-7f3a9",
            "20261127T233000X-7f3a9c",
            &"9".repeat(5000),
        ] {
            assert!(validate_id("id", bad).is_err(), "{bad:?} accepted");
        }
    }

    // Friction item "ids minted in the same second sort in time order".
    #[test]
    fn ids_minted_in_a_tight_loop_sort_in_mint_order() {
        let minted: Vec<String> = (0..1000)
            .map(|_| new_id(OffsetDateTime::now_utc()))
            .collect();
        for id in &minted {
            validate_id("backup id", id).expect("valid");
        }
        let mut sorted = minted.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, minted, "ids do not sort in mint order or repeat");
    }

    #[test]
    fn ids_for_one_instant_are_increasing_and_unique() {
        let minter = IdMinter::new();
        let at = datetime!(2031-01-02 03:04:05.5 UTC);
        let minted: Vec<String> = (0..1000).map(|_| minter.mint(at)).collect();
        assert!(minted.windows(2).all(|w| w[0] < w[1]), "not increasing");
        assert!(minted.iter().all(|id| id.starts_with("20310102T030405Z-")));
        // An older time (a rebuild dating a job) does not disturb the order that follows.
        let old = minter.mint(datetime!(2020-01-01 00:00:00 UTC));
        assert!(old.starts_with("20200101T000000Z-"), "{old}");
        let next = minter.mint(at);
        assert!(next > minted[999], "{next} after {}", minted[999]);
    }

    #[test]
    fn ids_minted_before_this_scheme_still_parse() {
        for old in [
            "20261127T233000Z-7f3a9c",
            "20261127T233000Z-000000",
            "20261127T233000Z-ffffff",
        ] {
            validate_id("backup id", old).expect("old id still valid");
            assert_eq!(id_time(old), Some(datetime!(2026-11-27 23:30:00 UTC)));
        }
    }
}
