//! The names of the files PostgreSQL archives, checked before they become repository keys or
//! paths: anything else is refused, so a name can never climb out of its directory.

use std::fmt;

/// What an archived file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`: a WAL segment (timeline, log, segment in hex).
    Segment,
    /// `…SSSSSSSS.partial`: the last, incomplete segment of a timeline a promotion ended.
    Partial,
    /// `…SSSSSSSS.OOOOOOOO.backup`: a base backup's history file.
    BackupHistory,
    /// `TTTTTTTT.history`: a timeline history file.
    TimelineHistory,
}

/// A checked archive file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalName(String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

impl WalName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = match name.split_once('.') {
            None => is_hex(name, 24),
            Some((seg, "partial")) => is_hex(seg, 24),
            Some((tli, "history")) => is_hex(tli, 8),
            Some((seg, rest)) => {
                is_hex(seg, 24) && rest.strip_suffix(".backup").is_some_and(|o| is_hex(o, 8))
            }
        };
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a WAL file name (24 upper-case hex digits, optionally with \
                 .partial or .XXXXXXXX.backup, or XXXXXXXX.history)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> WalKind {
        if self.0.ends_with(".history") {
            WalKind::TimelineHistory
        } else if self.0.ends_with(".partial") {
            WalKind::Partial
        } else if self.0.ends_with(".backup") {
            WalKind::BackupHistory
        } else {
            WalKind::Segment
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.0[..8], 16).unwrap_or(0)
    }

    /// The repository directory it is kept in, under the target's `wal/`: segments by
    /// timeline and log (at most 256 segments of 16 MiB each), history files together.
    pub fn dir(&self) -> &str {
        match self.kind() {
            WalKind::TimelineHistory => "history",
            _ => &self.0[..16],
        }
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_postgres_archives_are_accepted() {
        for (name, kind, tli, dir) in [
            (
                "00000001000000000000002A",
                WalKind::Segment,
                1,
                "0000000100000000",
            ),
            (
                "0000000200000001000000FF.partial",
                WalKind::Partial,
                2,
                "0000000200000001",
            ),
            (
                "000000010000000000000002.00000028.backup",
                WalKind::BackupHistory,
                1,
                "0000000100000000",
            ),
            ("0000000A.history", WalKind::TimelineHistory, 10, "history"),
        ] {
            let n = WalName::parse(name).expect(name);
            assert_eq!(
                (n.kind(), n.timeline(), n.dir()),
                (kind, tli, dir),
                "{name}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "00000001000000000000002a",
            "00000001000000000000002",
            "../../../etc/passwd",
            "00000001000000000000002A/..",
            "00000001000000000000002A.tmp",
            "0000000A.history.x",
            "000000010000000000000002.0000028.backup",
            "RECOVERYHISTORY",
            "00000001000000000000002A\n",
        ] {
            assert!(WalName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
