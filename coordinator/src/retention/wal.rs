//! The archived WAL a prune lets go. The agent removes WAL itself (it holds the repository):
//! every segment wholly before the start of the oldest base backup still in the repository,
//! on every timeline, timeline history files never. This is the same rule applied to a
//! plan, so `prune --dry-run` can say which WAL goes with the base backups it deletes: the
//! archive as the target's agent last reported it, cut at the start of the oldest base
//! backup the plan keeps (pinned ones included). When that start is not known (a base backup
//! recorded before lifeboat kept it) or nothing physical is kept, nothing is listed, as the
//! agent then removes nothing a kept backup could need.

use lifeboat_common::names::TargetName;
use lifeboat_proto::domain::WalStatus;

use super::{Action, prune::TargetPlan};

/// The WAL of one timeline that goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalCut {
    pub target: TargetName,
    pub timeline: u32,
    /// The first archived segment that goes.
    pub first: String,
    /// The last one, when the timeline's whole range goes; `None` when it continues past
    /// `kept_from`.
    pub last: Option<String>,
    /// WAL from this segment position on stays.
    pub kept_from: String,
    /// The oldest base backup kept.
    pub kept_backup: String,
}

/// A segment's position in the WAL, whatever its timeline: its log and segment numbers.
fn position(segment: &str) -> Option<(u32, u32)> {
    let log = u32::from_str_radix(segment.get(8..16)?, 16).ok()?;
    let seg = u32::from_str_radix(segment.get(16..24)?, 16).ok()?;
    Some((log, seg))
}

/// What of `wal` (the target's archive as last reported) goes once `plan` is applied.
/// The plans of each target merged into one (a target's backups may lie in several
/// repositories; the WAL is cut by what all of them keep).
pub fn by_target(plans: &[TargetPlan]) -> Vec<TargetPlan> {
    let mut out: Vec<TargetPlan> = Vec::new();
    for p in plans {
        match out.iter_mut().find(|o| o.target == p.target) {
            Some(o) => o.decisions.extend(p.decisions.iter().cloned()),
            None => out.push(p.clone()),
        }
    }
    out
}

pub fn cuts(plan: &TargetPlan, wal: Option<&WalStatus>) -> Vec<WalCut> {
    let Some(wal) = wal else { return Vec::new() };
    let mut oldest: Option<((u32, u32), &str, &str)> = None;
    for (d, b) in &plan.decisions {
        if d.action != Action::Keep || !b.is_physical() {
            continue;
        }
        // A kept base backup whose start is unknown: it may need anything.
        let Some(at) = position(&b.wal_start) else {
            return Vec::new();
        };
        if oldest.is_none_or(|(o, _, _)| at < o) {
            oldest = Some((at, b.wal_start.as_str(), b.backup_id.as_str()));
        }
    }
    let Some((keep, kept_from, kept_backup)) = oldest else {
        return Vec::new();
    };
    wal.ranges
        .iter()
        .filter_map(|r| {
            let first = position(&r.first)?;
            let last = position(&r.last)?;
            (first < keep).then(|| WalCut {
                target: plan.target.clone(),
                timeline: r.timeline,
                first: r.first.clone(),
                last: (last < keep).then(|| r.last.clone()),
                kept_from: kept_from.to_owned(),
                kept_backup: kept_backup.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use lifeboat_proto::domain::WalRange;

    use super::*;
    use crate::{
        model::Backup,
        retention::{Decision, Reason},
    };

    fn backup(id: &str, wal_start: &str) -> Backup {
        Backup {
            encryption: None,
            backup_id: id.parse().expect("a backup id"),
            target: "prod/main".parse().expect("target"),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: crate::model::Engine::Postgres,
            provider: "postgres".into(),
            database: String::new(),
            server_version: "15.8".into(),
            system_identifier: "7300000000000000000".into(),
            dump_tool: "pg_basebackup".into(),
            dump_tool_version: "15.8".into(),
            format: lifeboat_proto::domain::PG_BASEBACKUP_FORMAT.into(),
            compression: "zstd".into(),
            compression_level: 3,
            raw_size: 1000,
            stored_size: 200,
            raw_sha256: "a".repeat(64),
            stored_sha256: "b".repeat(64),
            started_at_ms: 3_000,
            finished_at_ms: 4_000,
            row_counts: Vec::new(),
            data_key: format!("prod/main/{id}/data.tar.zst"),
            manifest_key: format!("prod/main/{id}/manifest.json"),
            verify_status: crate::model::VerifyStatus::Ok,
            verified_at_ms: None,
            verify_detail: String::new(),
            job_id: String::new(),
            wal_start: wal_start.into(),
            globals: Default::default(),
        }
    }

    fn plan(backups: &[(&str, &str, Action)]) -> TargetPlan {
        TargetPlan {
            copies: Default::default(),
            repository: String::new(),
            target: "prod/main".parse().expect("target"),
            policy: None,
            decisions: backups
                .iter()
                .map(|(id, start, action)| {
                    (
                        Decision {
                            backup_id: (*id).to_owned(),
                            action: *action,
                            reasons: vec![Reason::Last],
                        },
                        backup(id, start),
                    )
                })
                .collect(),
        }
    }

    fn range(tli: u32, first: u32, last: u32) -> WalRange {
        WalRange {
            timeline: tli,
            first: format!("{tli:08X}00000000{first:08X}"),
            last: format!("{tli:08X}00000000{last:08X}"),
            segments: u64::from(last - first + 1),
            first_archived_at_ms: 0,
            last_archived_at_ms: 0,
        }
    }

    fn status(ranges: Vec<WalRange>) -> WalStatus {
        WalStatus {
            target: "main".into(),
            ranges,
            ..WalStatus::default()
        }
    }

    const B1: &str = "20261201T000000Z-aaaaaa";
    const B2: &str = "20261202T000000Z-bbbbbb";
    const B3: &str = "20261203T000000Z-cccccc";

    #[test]
    fn cut_at_the_oldest_kept_base_backup_on_every_timeline() {
        let p = plan(&[
            (B3, "000000020000000000000030", Action::Keep),
            (B2, "000000010000000000000020", Action::Keep),
            (B1, "000000010000000000000010", Action::Delete),
        ]);
        let wal = status(vec![range(1, 0x10, 0x28), range(2, 0x25, 0x40)]);
        let cuts = cuts(&p, Some(&wal));
        assert_eq!(cuts.len(), 1, "{cuts:?}");
        assert_eq!(cuts[0].timeline, 1);
        assert_eq!(cuts[0].first, "000000010000000000000010");
        assert_eq!(cuts[0].last, None, "timeline 1 continues past the cut");
        assert_eq!(cuts[0].kept_from, "000000010000000000000020");
        assert_eq!(cuts[0].kept_backup, B2);

        // Only the newest is kept: timeline 1 goes up to it, timeline 2 before it.
        let p = plan(&[
            (B3, "000000020000000000000030", Action::Keep),
            (B2, "000000010000000000000020", Action::Delete),
            (B1, "000000010000000000000010", Action::Delete),
        ]);
        let cuts = super::cuts(&p, Some(&wal));
        assert_eq!(cuts.len(), 2, "{cuts:?}");
        assert_eq!(cuts[0].last.as_deref(), Some("000000010000000000000028"));
        assert_eq!(cuts[1].first, "000000020000000000000025");
        assert_eq!(cuts[1].last, None);
    }

    #[test]
    fn nothing_is_listed_when_a_kept_start_is_unknown_or_nothing_physical_is_kept() {
        let wal = status(vec![range(1, 1, 0x40)]);
        let unknown = plan(&[
            (B3, "000000010000000000000030", Action::Keep),
            (B2, "", Action::Keep),
            (B1, "000000010000000000000010", Action::Delete),
        ]);
        assert!(cuts(&unknown, Some(&wal)).is_empty());
        let none_kept = plan(&[(B1, "000000010000000000000010", Action::Delete)]);
        assert!(cuts(&none_kept, Some(&wal)).is_empty());
        let kept = plan(&[(B1, "000000010000000000000010", Action::Keep)]);
        assert!(cuts(&kept, None).is_empty(), "no archive reported");
    }

    /// For many plans and archives: every segment a cut covers lies before the start of every
    /// kept base backup, so no kept backup loses WAL it replays.
    #[test]
    fn no_kept_backup_loses_wal_it_needs() {
        let starts = [0x3u32, 0x10, 0x11, 0x20, 0xFF];
        for mask in 0u32..(1 << starts.len()) {
            let decisions: Vec<(String, String, Action)> = starts
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let tli = 1 + (i as u32 % 2);
                    (
                        format!("2026120{}T000000Z-aaaaa{i}", i + 1),
                        format!("{tli:08X}00000000{s:08X}"),
                        if mask & (1 << i) != 0 {
                            Action::Keep
                        } else {
                            Action::Delete
                        },
                    )
                })
                .collect();
            let refs: Vec<(&str, &str, Action)> = decisions
                .iter()
                .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
                .collect();
            let p = plan(&refs);
            let wal = status(vec![range(1, 0, 0x30), range(2, 0x08, 0x100)]);
            let kept: Vec<(u32, u32)> = refs
                .iter()
                .filter(|d| d.2 == Action::Keep)
                .filter_map(|d| position(d.1))
                .collect();
            for c in cuts(&p, Some(&wal)) {
                let first = position(&c.first).expect("first");
                let end = c.last.as_deref().and_then(position);
                for k in &kept {
                    assert!(first < *k, "{c:?} vs kept start {k:?}");
                    if let Some(end) = end {
                        assert!(end < *k, "{c:?} vs kept start {k:?}");
                    }
                }
                assert!(
                    position(&c.kept_from).expect("kept_from")
                        <= *kept.iter().min().expect("a kept backup")
                );
            }
            if kept.is_empty() {
                assert!(cuts(&p, Some(&wal)).is_empty());
            }
        }
    }
}
