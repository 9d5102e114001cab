//! A physical target's WAL archive as its agent reports it (in heartbeats), checked where it
//! arrives.

use super::{MAX_SHORT_TEXT, RecordError, bounded_text};
use crate::v1 as pb;

/// Most timelines and gaps one report carries.
pub const MAX_RANGES: usize = 64;
pub const MAX_GAPS: usize = 32;

/// A WAL segment file name: 24 upper-case hex digits.
pub fn is_segment_name(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
    pub first_archived_at_ms: i64,
    pub last_archived_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalStatus {
    /// Short target name on the agent.
    pub target: String,
    pub observed_at_ms: i64,
    /// The newest archived segment and when it was stored.
    pub last_archived: Option<(String, i64)>,
    pub ranges: Vec<WalRange>,
    pub gaps: Vec<String>,
    pub failed_count: u64,
    pub last_failed: Option<(String, i64)>,
    /// Finished segments not archived yet; `None` when the server could not be asked.
    pub pending_segments: Option<u64>,
    pub error: String,
}

fn segment(what: &str, s: String) -> Result<String, RecordError> {
    if is_segment_name(&s) {
        Ok(s)
    } else {
        Err(RecordError(format!(
            "{what} {s:?} is not a WAL segment name"
        )))
    }
}

impl TryFrom<pb::WalStatus> for WalStatus {
    type Error = RecordError;

    fn try_from(w: pb::WalStatus) -> Result<Self, RecordError> {
        if w.target.is_empty() || w.target.len() > MAX_SHORT_TEXT {
            return Err(RecordError("wal status without a target".into()));
        }
        if w.ranges.len() > MAX_RANGES || w.gaps.len() > MAX_GAPS {
            return Err(RecordError(format!(
                "wal status of {} has too many ranges or gaps",
                w.target
            )));
        }
        let last_archived = (!w.last_archived.is_empty())
            .then(|| segment("last_archived", w.last_archived).map(|s| (s, w.last_archived_at_ms)))
            .transpose()?;
        // The last failed file may be a history or backup file as well as a segment.
        let last_failed = (!w.last_failed.is_empty())
            .then(|| {
                if w.last_failed.len() <= 64
                    && w.last_failed
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                {
                    Ok((w.last_failed, w.last_failed_at_ms))
                } else {
                    Err(RecordError(format!(
                        "last_failed {:?} is not a WAL file name",
                        w.last_failed
                    )))
                }
            })
            .transpose()?;
        let ranges = w
            .ranges
            .into_iter()
            .map(|r| {
                Ok(WalRange {
                    timeline: r.timeline,
                    first: segment("range first", r.first)?,
                    last: segment("range last", r.last)?,
                    segments: r.segments,
                    first_archived_at_ms: r.first_archived_at_ms,
                    last_archived_at_ms: r.last_archived_at_ms,
                })
            })
            .collect::<Result<Vec<_>, RecordError>>()?;
        let gaps = w
            .gaps
            .into_iter()
            .map(|g| segment("gap", g))
            .collect::<Result<Vec<_>, RecordError>>()?;
        Ok(Self {
            target: w.target,
            observed_at_ms: w.observed_at_ms,
            last_archived,
            ranges,
            gaps,
            failed_count: w.failed_count,
            last_failed,
            pending_segments: u64::try_from(w.pending_segments).ok(),
            error: bounded_text(w.error),
        })
    }
}

impl From<&WalStatus> for pb::WalStatus {
    fn from(w: &WalStatus) -> Self {
        pb::WalStatus {
            target: w.target.clone(),
            observed_at_ms: w.observed_at_ms,
            last_archived: w
                .last_archived
                .as_ref()
                .map(|l| l.0.clone())
                .unwrap_or_default(),
            last_archived_at_ms: w.last_archived.as_ref().map_or(0, |l| l.1),
            ranges: w
                .ranges
                .iter()
                .map(|r| pb::WalRange {
                    timeline: r.timeline,
                    first: r.first.clone(),
                    last: r.last.clone(),
                    segments: r.segments,
                    first_archived_at_ms: r.first_archived_at_ms,
                    last_archived_at_ms: r.last_archived_at_ms,
                })
                .collect(),
            gaps: w.gaps.clone(),
            failed_count: w.failed_count,
            last_failed: w
                .last_failed
                .as_ref()
                .map(|l| l.0.clone())
                .unwrap_or_default(),
            last_failed_at_ms: w.last_failed.as_ref().map_or(0, |l| l.1),
            pending_segments: w
                .pending_segments
                .map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX)),
            error: w.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_round_trips_and_bad_names_are_refused() {
        let w = WalStatus {
            target: "main".into(),
            observed_at_ms: 5,
            last_archived: Some(("000000010000000000000007".into(), 4)),
            ranges: vec![WalRange {
                timeline: 1,
                first: "000000010000000000000002".into(),
                last: "000000010000000000000007".into(),
                segments: 5,
                first_archived_at_ms: 1,
                last_archived_at_ms: 4,
            }],
            gaps: vec!["000000010000000000000004".into()],
            failed_count: 2,
            last_failed: Some(("00000002.history".into(), 3)),
            pending_segments: Some(1),
            error: String::new(),
        };
        let back = WalStatus::try_from(pb::WalStatus::from(&w)).expect("valid");
        assert_eq!(back, w);
        let mut bad = pb::WalStatus::from(&w);
        bad.gaps = vec!["../../x".into()];
        assert!(WalStatus::try_from(bad).is_err());
        let mut unknown = pb::WalStatus::from(&w);
        unknown.pending_segments = -1;
        assert_eq!(
            WalStatus::try_from(unknown)
                .expect("valid")
                .pending_segments,
            None
        );
    }
}
