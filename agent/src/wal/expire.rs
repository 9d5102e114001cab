//! WAL retention that follows the base backups: a segment is removed only once it lies wholly
//! before the start of the oldest physical base backup still in the repository (a retained,
//! pinned or not-yet-deleted one: its manifest is there). Recovery from a base backup never
//! reads WAL from before its start, on any timeline, so nothing a retained backup needs can go.
//! Timeline history files are always kept (they are tiny and recovery follows them). With no
//! base backup in the repository, nothing is removed.

use std::collections::HashMap;

use anyhow::{Context, Result};
use lifeboat_proto::domain::Lsn;

use super::{
    name::{WalKind, WalName},
    store,
};
use crate::{
    manifest::{MAX_MANIFEST_BYTES, Manifest},
    repo::{MANIFEST_FILE, ObjectInfo, Repository},
};

/// What one pass decided and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// The oldest retained base backup's start, if any.
    pub keep_from: Option<Lsn>,
    pub removed: Vec<String>,
}

/// The WAL objects under `prefix` that lie wholly before `keep_from` (segment numbers below
/// its segment). `seg_size` is the cluster's `wal_segment_size`.
pub fn expendable<'a>(
    prefix: &str,
    objects: &'a [ObjectInfo],
    keep_from: Lsn,
    seg_size: u64,
) -> Vec<&'a ObjectInfo> {
    let per_log = 0x1_0000_0000 / seg_size;
    let first_kept = keep_from.0 / seg_size;
    objects
        .iter()
        .filter(|o| {
            let Some(rest) = o.key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
                return false;
            };
            let Some((_, file)) = rest.split_once('/') else {
                return false;
            };
            let Some((name, _)) = file.rsplit_once('-') else {
                return false;
            };
            let Ok(name) = WalName::parse(name) else {
                return false;
            };
            if name.kind() == WalKind::TimelineHistory {
                return false;
            }
            let s = name.as_str();
            let log = u64::from_str_radix(&s[8..16], 16).unwrap_or(u64::MAX);
            let seg = u64::from_str_radix(&s[16..24], 16).unwrap_or(u64::MAX);
            log.saturating_mul(per_log).saturating_add(seg) < first_kept
        })
        .collect()
}

/// Remembers the start of each base backup read (manifests do not change).
#[derive(Debug, Default)]
pub struct Starts(HashMap<String, Option<(Lsn, u64)>>);

/// One pass for `ENV/TARGET`: reads the manifests of its base backups (`listing` is the
/// repository's listing under `ENV/TARGET`), then removes the WAL before the oldest start.
pub async fn run(
    repo: &Repository,
    environment: &str,
    target: &str,
    listing: &[ObjectInfo],
    starts: &mut Starts,
) -> Result<Expired> {
    let mut oldest: Option<(Lsn, u64)> = None;
    for o in listing {
        let Some(dir) = o.key.strip_suffix(&format!("/{MANIFEST_FILE}")) else {
            continue;
        };
        let start = match starts.0.get(dir) {
            Some(s) => *s,
            None => {
                let bytes = repo
                    .get_bytes(&o.key, MAX_MANIFEST_BYTES)
                    .await
                    .with_context(|| format!("read {}", o.key))?;
                // A manifest that cannot be read keeps everything: it may be a base backup.
                let Some(bytes) = bytes else { continue };
                // A manifest that does not parse (or names an impossible segment size) stops
                // the pass: it may be a base backup.
                let m = Manifest::from_json(&bytes).with_context(|| format!("parse {}", o.key))?;
                let s = m.physical.and_then(|p| {
                    p.start_lsn
                        .parse::<Lsn>()
                        .ok()
                        .map(|l| (l, p.wal_segment_size))
                });
                starts.0.insert(dir.to_owned(), s);
                s
            }
        };
        if let Some(s) = start
            && oldest.is_none_or(|o| s.0 < o.0)
        {
            oldest = Some(s);
        }
    }
    let Some((keep_from, seg_size)) = oldest else {
        return Ok(Expired::default());
    };
    let prefix = store::prefix(environment, target);
    let mut removed = Vec::new();
    for o in expendable(&prefix, listing, keep_from, seg_size) {
        repo.delete(&o.key)
            .await
            .with_context(|| format!("remove {}", o.key))?;
        removed.push(o.key.clone());
    }
    if !removed.is_empty() {
        tracing::info!(
            target = %target,
            files = removed.len(),
            keep_from = %keep_from,
            "removed WAL older than the oldest base backup"
        );
    }
    Ok(Expired {
        keep_from: Some(keep_from),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    fn obj(name: &str) -> ObjectInfo {
        let dir = if name.ends_with(".history") {
            "history"
        } else {
            &name[..16]
        };
        ObjectInfo {
            key: format!("prod/main/wal/{dir}/{name}-{}.zst", "a".repeat(64)),
            size: 1,
            modified_ms: 0,
        }
    }

    /// Every segment on any timeline from the start of the oldest kept backup on survives, for
    /// many starts and many archives; history files always survive.
    #[test]
    fn nothing_a_kept_backup_needs_is_expendable() {
        let mut names = Vec::new();
        for tli in 1..=3u32 {
            for log in 0..3u64 {
                for seg in [0u64, 1, 2, 0x7F, 0xFE, 0xFF] {
                    names.push(format!("{tli:08X}{log:08X}{seg:08X}"));
                }
            }
            names.push(format!("{tli:08X}.history"));
        }
        names.push("000000010000000100000002.00000028.backup".into());
        names.push("000000020000000100000002.partial".into());
        let objects: Vec<_> = names.iter().map(|n| obj(n)).collect();
        for start_log in 0..3u64 {
            for start_seg in [0u64, 1, 2, 0x80, 0xFF] {
                for offset in [0u64, 0x28, SEG - 1] {
                    let keep = Lsn((start_log << 32) + start_seg * SEG + offset);
                    let first_kept = keep.0 / SEG;
                    let gone = expendable("prod/main/wal", &objects, keep, SEG);
                    for o in &objects {
                        let name = o.key.rsplit('/').next().unwrap_or_default();
                        let name = name.rsplit_once('-').map(|x| x.0).unwrap_or_default();
                        let removed = gone.iter().any(|g| g.key == o.key);
                        if name.ends_with(".history") {
                            assert!(!removed, "history {name} removed");
                            continue;
                        }
                        let log = u64::from_str_radix(&name[8..16], 16).expect("log");
                        let seg = u64::from_str_radix(&name[16..24], 16).expect("seg");
                        let segno = log * 0x100 + seg;
                        assert_eq!(
                            removed,
                            segno < first_kept,
                            "{name} with the oldest backup starting at {keep}"
                        );
                    }
                }
            }
        }
    }
}
