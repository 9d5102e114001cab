//! Backup and job ids: they sort by creation time and read as one, e.g.
//! `20261127T233000Z-7f3a9c`. Safe as a path segment and an object key segment.

use rand::Rng;
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

use crate::names::NameError;

const STAMP: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// A new id for `at` (UTC), with 24 random bits.
pub fn new_id(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let stamp = at
        .format(STAMP)
        .unwrap_or_else(|_| "19700101T000000Z".into());
    let suffix: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{stamp}-{suffix:06x}")
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
}
