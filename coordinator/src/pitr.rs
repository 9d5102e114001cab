//! Point-in-time recovery as the coordinator sees it: each physical target's WAL archive as
//! its agent last reported it (kept in memory: agents report it again every minute), and the
//! recoverable window it gives with the target's base backups.

use std::{collections::HashMap, sync::Mutex};

use lifeboat_common::names::TargetName;
use lifeboat_proto::domain::WalStatus;

use crate::model::Backup;

/// A status and when it arrived (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub status: WalStatus,
    pub received_ms: i64,
}

/// The last WAL status of each physical target.
#[derive(Debug, Default)]
pub struct WalBoard(Mutex<HashMap<TargetName, Reported>>);

impl WalBoard {
    pub fn update(&self, target: TargetName, status: WalStatus, received_ms: i64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                target,
                Reported {
                    status,
                    received_ms,
                },
            );
    }

    pub fn get(&self, target: &TargetName) -> Option<Reported> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(target)
            .cloned()
    }
}

/// The recoverable window, Unix ms: from the end of the oldest base backup the archive
/// continues from, to when the newest archived segment was stored. With gaps in the archive,
/// only the newest base backup is counted on (an older one may need a missing segment).
/// `None`: no base backup.
pub fn window(physical_newest_first: &[Backup], wal: Option<&WalStatus>) -> Option<(i64, i64)> {
    let newest = physical_newest_first.first()?;
    let oldest = physical_newest_first.last()?;
    let from = match wal {
        Some(w) if w.gaps.is_empty() => oldest.finished_at_ms,
        _ => newest.finished_at_ms,
    };
    let to = wal
        .and_then(|w| w.last_archived.as_ref().map(|l| l.1))
        .unwrap_or(newest.finished_at_ms)
        .max(from);
    Some((from, to))
}
