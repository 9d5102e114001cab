//! What the archive holds of a target's WAL, and whether it reaches from a base backup to a
//! recovery target: segments by timeline, followed across timeline switches the way recovery
//! with `recovery_target_timeline = 'latest'` follows them, and the first missing segment.

use std::collections::{BTreeMap, BTreeSet};

use lifeboat_proto::domain::Lsn;

use super::name::{WalKind, WalName};
use crate::repo::ObjectInfo;

/// A timeline switch read from a `.history` file: timeline `parent` ended at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub parent: u32,
    pub switch: Lsn,
}

/// Parses a timeline history file (`parentTLI<TAB>switchpoint<TAB>reason` per line).
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (fields.next(), fields.next()) else {
            return Err(format!("history line {line:?} has no switch point"));
        };
        let parent = tli
            .parse()
            .map_err(|_| format!("history line {line:?}: bad timeline"))?;
        let switch = lsn
            .parse()
            .map_err(|e: lifeboat_proto::domain::RecordError| e.0)?;
        out.push(Switch { parent, switch });
    }
    Ok(out)
}

/// The archived segments of one target.
#[derive(Debug, Default)]
pub struct Archive {
    seg_size: u64,
    /// Timeline → segment number → when it was archived (Unix ms).
    segments: BTreeMap<u32, BTreeMap<u64, i64>>,
    /// Timelines with a history file.
    pub histories: BTreeSet<u32>,
}

/// Where a chain of segments ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The last segment of the unbroken chain and when it was archived (Unix ms), if any
    /// segment beyond the start was needed and found.
    pub last: Option<(String, i64)>,
    /// The first segment missing although later ones exist (a gap).
    pub missing: Option<String>,
}

impl Archive {
    /// From a listing of `ENV/TARGET/wal` (see [`super::store::prefix`]).
    pub fn from_listing(prefix: &str, objects: &[ObjectInfo], seg_size: u64) -> Self {
        let mut a = Self {
            seg_size,
            ..Self::default()
        };
        for o in objects {
            let Some(rest) = o.key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((_, file)) = rest.split_once('/') else {
                continue;
            };
            let Some((name, _)) = file.rsplit_once('-') else {
                continue;
            };
            let Ok(name) = WalName::parse(name) else {
                continue;
            };
            match name.kind() {
                WalKind::Segment => {
                    let segno = a.segno_of_name(name.as_str());
                    a.segments
                        .entry(name.timeline())
                        .or_default()
                        .insert(segno, o.modified_ms);
                }
                WalKind::TimelineHistory => {
                    a.histories.insert(name.timeline());
                }
                WalKind::Partial | WalKind::BackupHistory => {}
            }
        }
        a
    }

    fn per_log(&self) -> u64 {
        0x1_0000_0000 / self.seg_size
    }

    /// The segment number of a segment file name.
    pub fn segno_of_name(&self, name: &str) -> u64 {
        let log = u64::from_str_radix(&name[8..16], 16).unwrap_or(0);
        let seg = u64::from_str_radix(&name[16..24], 16).unwrap_or(0);
        log * self.per_log() + seg
    }

    /// The segment holding `lsn`.
    pub fn segno(&self, lsn: Lsn) -> u64 {
        lsn.0 / self.seg_size
    }

    /// The file name of segment `segno` on timeline `tli`.
    pub fn name(&self, tli: u32, segno: u64) -> String {
        format!(
            "{tli:08X}{:08X}{:08X}",
            segno / self.per_log(),
            segno % self.per_log()
        )
    }

    /// Per timeline: the segments held (first, last, how many, when the first and the last
    /// were stored), and the segments missing between held ones (at most `max_gaps`).
    pub fn summary(&self, max_gaps: usize) -> (Vec<lifeboat_proto::domain::WalRange>, Vec<String>) {
        let mut ranges = Vec::new();
        let mut gaps = Vec::new();
        for (tli, segs) in &self.segments {
            let (Some((&first, &first_at)), Some((&last, &last_at))) =
                (segs.iter().next(), segs.iter().next_back())
            else {
                continue;
            };
            ranges.push(lifeboat_proto::domain::WalRange {
                timeline: *tli,
                first: self.name(*tli, first),
                last: self.name(*tli, last),
                segments: segs.len() as u64,
                first_archived_at_ms: first_at,
                last_archived_at_ms: last_at,
            });
            let mut prev = first;
            for &n in segs.keys().skip(1) {
                for missing in prev + 1..n {
                    if gaps.len() < max_gaps {
                        gaps.push(self.name(*tli, missing));
                    }
                }
                prev = n;
            }
        }
        (ranges, gaps)
    }

    /// The newest segment held (by timeline, then number) and when it was stored.
    pub fn newest(&self) -> Option<(String, i64)> {
        let (tli, segs) = self.segments.iter().next_back()?;
        let (n, at) = segs.iter().next_back()?;
        Some((self.name(*tli, *n), *at))
    }

    /// The newest timeline with any archived file.
    pub fn latest_timeline(&self) -> Option<u32> {
        let seg = self.segments.keys().next_back().copied();
        let hist = self.histories.iter().next_back().copied();
        seg.max(hist)
    }

    fn has(&self, tli: u32, segno: u64) -> Option<i64> {
        self.segments.get(&tli)?.get(&segno).copied()
    }

    /// How far the archive reaches from `start` (the end of a base backup) on timeline `tli`,
    /// following `switches` (the history of the timeline recovery ends on, oldest first): the
    /// last segment of the unbroken chain, and the first gap, if segments exist beyond it.
    pub fn reach(&self, tli: u32, start: Lsn, switches: &[Switch]) -> Reach {
        // The timelines to walk: the backup's, then each later one in the history, each
        // ending where the next begins.
        let mut legs: Vec<(u32, u64, Option<u64>)> = Vec::new();
        let mut from = self.segno(start);
        let mut current = tli;
        for (i, s) in switches.iter().enumerate() {
            if s.parent < current {
                continue;
            }
            let next = switches.get(i + 1).map_or(u32::MAX, |n| n.parent);
            let child = if next == u32::MAX {
                self.child_of(switches, s.parent)
            } else {
                next
            };
            let end = self.segno(s.switch);
            legs.push((s.parent, from, Some(end)));
            from = end;
            current = child;
        }
        legs.push((current, from, None));

        let mut last = None;
        for (leg, (t, first, end)) in legs.iter().enumerate() {
            let mut segno = *first;
            loop {
                if end.is_some_and(|e| segno > e) {
                    break;
                }
                match self.has(*t, segno) {
                    Some(at) => last = Some((self.name(*t, segno), at)),
                    // The switch segment of an earlier timeline is copied to the next one
                    // under its name; recovery reads that copy.
                    None if end == &Some(segno) => break,
                    None => {
                        // A gap only if something later is archived on this leg or after.
                        let later = legs[leg..].iter().any(|(t2, f2, _)| {
                            self.segments.get(t2).is_some_and(|m| {
                                m.range((if t2 == t { segno } else { *f2 })..)
                                    .next()
                                    .is_some()
                            })
                        });
                        let missing = later.then(|| self.name(*t, segno));
                        return Reach { last, missing };
                    }
                }
                segno += 1;
            }
        }
        Reach {
            last,
            missing: None,
        }
    }

    /// The timeline that branched from `parent` in `switches` (the one after it), or the
    /// newest one archived.
    fn child_of(&self, switches: &[Switch], parent: u32) -> u32 {
        switches
            .iter()
            .position(|s| s.parent == parent)
            .and_then(|i| switches.get(i + 1).map(|s| s.parent))
            .or_else(|| self.latest_timeline())
            .unwrap_or(parent + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    fn obj(name: &str, at: i64) -> ObjectInfo {
        let dir = if name.ends_with(".history") {
            "history"
        } else {
            &name[..16]
        };
        ObjectInfo {
            key: format!("prod/main/wal/{dir}/{name}-{}.zst", "a".repeat(64)),
            size: 100,
            modified_ms: at,
        }
    }

    fn archive(names: &[&str]) -> Archive {
        let objects: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| obj(n, i as i64))
            .collect();
        Archive::from_listing("prod/main/wal", &objects, SEG)
    }

    #[test]
    fn names_and_locations() {
        let a = archive(&[]);
        let lsn: Lsn = "1/5A000060".parse().expect("lsn");
        assert_eq!(a.name(1, a.segno(lsn)), "00000001000000010000005A");
        assert_eq!(a.segno_of_name("00000001000000010000005A"), a.segno(lsn));
    }

    #[test]
    fn an_unbroken_chain_reaches_its_last_segment() {
        let a = archive(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000002.00000028.backup",
        ]);
        let r = a.reach(1, "0/2000100".parse().expect("lsn"), &[]);
        assert_eq!(
            r.last.map(|l| l.0).as_deref(),
            Some("000000010000000000000004")
        );
        assert_eq!(r.missing, None);
    }

    #[test]
    fn a_gap_names_the_first_missing_segment() {
        let a = archive(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000005",
        ]);
        let r = a.reach(1, "0/2000100".parse().expect("lsn"), &[]);
        assert_eq!(
            r.last.map(|l| l.0).as_deref(),
            Some("000000010000000000000003")
        );
        assert_eq!(r.missing.as_deref(), Some("000000010000000000000004"));
    }

    #[test]
    fn the_chain_follows_a_timeline_switch() {
        // Timeline 1 ended in segment 4; timeline 2 starts with its copy of segment 4.
        let a = archive(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004.partial",
            "00000002.history",
            "000000020000000000000004",
            "000000020000000000000005",
        ]);
        let history =
            parse_history("1\t0/4000A28\tno recovery target specified\n").expect("history");
        assert_eq!(
            history,
            vec![Switch {
                parent: 1,
                switch: "0/4000A28".parse().expect("lsn")
            }]
        );
        let r = a.reach(1, "0/2000100".parse().expect("lsn"), &history);
        assert_eq!(
            r.last.map(|l| l.0).as_deref(),
            Some("000000020000000000000005")
        );
        assert_eq!(r.missing, None);
        // Without timeline 2's copy of segment 4, the chain breaks there.
        let b = archive(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000005",
        ]);
        let r = b.reach(1, "0/2000100".parse().expect("lsn"), &history);
        assert_eq!(r.missing.as_deref(), Some("000000020000000000000004"));
    }

    #[test]
    fn the_summary_lists_ranges_and_gaps() {
        let a = archive(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000006",
            "000000020000000000000006",
        ]);
        let (ranges, gaps) = a.summary(10);
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            (
                ranges[0].first.as_str(),
                ranges[0].last.as_str(),
                ranges[0].segments
            ),
            ("000000010000000000000002", "000000010000000000000006", 3)
        );
        assert_eq!(
            gaps,
            vec!["000000010000000000000004", "000000010000000000000005"]
        );
        assert_eq!(
            a.newest().map(|n| n.0).as_deref(),
            Some("000000020000000000000006")
        );
        assert_eq!(a.summary(1).1.len(), 1, "gaps are capped");
    }

    #[test]
    fn bad_history_is_an_error() {
        assert!(parse_history("1\n").is_err());
        assert!(parse_history("x\t0/1\treason\n").is_err());
        assert!(parse_history("1\tnot-an-lsn\treason\n").is_err());
    }
}
