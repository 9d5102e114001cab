//! Rebuilding the catalog from the repositories. The coordinator asks connected agents to list
//! the manifests in their repositories (one `list` job per agent and repository), then records
//! every backup found, in one catalog transaction:
//!
//! - a backup the catalog does not know is added (its target must be registered);
//! - a backup the catalog knows with the same sizes and hashes keeps its row, pin and verify
//!   result; only what the listing found about its data (gone, wrong size) changes its status;
//! - a backup the catalog knows with other sizes or hashes is a conflict: reported, not
//!   overwritten;
//! - a catalog row of a listed repository whose manifest was not found is marked missing; rows
//!   are never deleted;
//! - a backup found with the same content in more than one repository is one backup: the
//!   repository its row names (or, for a new row, the first listing) holds it, and each of
//!   the others holds a copy of it, recorded as one (off-site copies).
//!
//! Which outcome each backup gets is [`plan`], a pure function of the listings, the catalog and
//! [`Trust`]. Backups are attributed to the environment, target and agent in their manifest, not
//! to the agent that listed them (several agents may share a bucket).
//!
//! A listing is what an agent says, and an agent is trusted with its own environment only (H2):
//! - a manifest of another environment than the listing agent's, or naming an agent of another
//!   environment, is refused unless the admin trusts cross-environment listings;
//! - a manifest that finished in the future (beyond the allowed clock skew) is refused always;
//! - a refused manifest's pin marker is ignored, and its catalog row (if any) is left alone;
//! - a backup a rebuild adds is recorded as rebuilt: retention keeps it but does not count it
//!   toward the keep rules until a verify of it passes (see [`crate::retention`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use lifeboat_common::names::TargetName;

use crate::{
    catalog::Pin,
    model::{Backup, VerifyStatus},
};

pub mod listings;
mod runner;
mod trust;

pub use listings::{ListedBackups, Listings};
pub use runner::{Rebuilder, run};

pub use trust::Trust;
use trust::refusal;

/// How long a rebuild waits for one repository listing.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(600);

/// What to rebuild, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub agent: Option<String>,
    pub repository: Option<String>,
    pub dry_run: bool,
    /// Record backups whose manifest names another environment than the listing agent's.
    pub trust_cross_environment: bool,
}

/// One repository listing that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The agent that listed it.
    pub agent: String,
    pub repository: String,
    pub backups: Vec<Backup>,
    /// Pin markers found beside the manifests, by backup id.
    pub pins: HashMap<String, Pin>,
}

/// What the catalog holds about one backup, as far as a rebuild cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRow {
    pub backup_id: String,
    pub target: TargetName,
    pub agent: String,
    pub repository: String,
    pub raw_size: u64,
    pub stored_size: u64,
    pub raw_sha256: String,
    pub stored_sha256: String,
    pub finished_at_ms: i64,
    pub verify_status: VerifyStatus,
    /// When the coordinator recorded it (its job's end).
    pub recorded_at_ms: Option<i64>,
}

/// The catalog as a rebuild sees it, read in the transaction that applies the plan.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    pub backups: Vec<CatalogRow>,
    /// Registered targets.
    pub targets: HashSet<TargetName>,
    /// Backup ids of backup jobs still queued or running.
    pub active_backups: HashSet<String>,
    /// Backup ids the catalog holds a pin for.
    pub pinned: HashSet<String>,
    /// The environment of every known agent, by name.
    pub agent_environments: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Added,
    Updated,
    Unchanged,
    Conflict,
    Missing,
    Skipped,
    /// Listed, but not trusted: not recorded, and its pin marker is ignored.
    Refused,
}

/// What to write for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    /// A new row (its job is made when it is written).
    Insert(Box<Backup>),
    SetStatus {
        status: VerifyStatus,
        detail: String,
    },
}

/// The outcome for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub backup_id: String,
    pub target: TargetName,
    pub agent: String,
    pub repository: String,
    pub kind: OutcomeKind,
    /// The status the catalog holds afterwards.
    pub verify_status: VerifyStatus,
    pub detail: String,
    pub stored_size: u64,
    pub finished_at_ms: i64,
    /// The listing found its data object absent or of the wrong size.
    pub damaged: bool,
    pub change: Change,
    /// A pin marker in the repository the catalog has no pin for: recorded again.
    pub restore_pin: Option<Pin>,
    /// The agent whose listing this outcome comes from (empty for a missing row).
    pub listed_by: String,
    /// Other repositories the listings found the same backup in: its copies, to record.
    pub copies: Vec<FoundCopy>,
}

/// A copy of a backup a listing found in another repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCopy {
    pub repository: String,
    /// `missing` or `corrupt` when the listing found its data absent or of another size.
    pub verify_status: VerifyStatus,
    pub detail: String,
}

/// One listing as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingReport {
    pub agent: String,
    pub repository: String,
    pub job_id: Option<String>,
    pub backups: usize,
    pub error: Option<String>,
}

/// What a rebuild did (or would do, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub listings: Vec<ListingReport>,
    pub outcomes: Vec<Outcome>,
}

/// How a listed backup differs from the catalog's row; empty if it does not.
fn differences(listed: &Backup, row: &CatalogRow) -> Vec<String> {
    let mut out = Vec::new();
    if listed.stored_size != row.stored_size {
        out.push(format!(
            "stored size {} in the repository, {} in the catalog",
            listed.stored_size, row.stored_size
        ));
    }
    if listed.raw_size != row.raw_size {
        out.push(format!(
            "raw size {} in the repository, {} in the catalog",
            listed.raw_size, row.raw_size
        ));
    }
    if listed.stored_sha256 != row.stored_sha256 {
        out.push(format!(
            "stored SHA-256 {} in the repository, {} in the catalog",
            listed.stored_sha256, row.stored_sha256
        ));
    }
    if listed.raw_sha256 != row.raw_sha256 {
        out.push(format!(
            "raw SHA-256 {} in the repository, {} in the catalog",
            listed.raw_sha256, row.raw_sha256
        ));
    }
    out
}

fn same_content(a: &Backup, b: &Backup) -> bool {
    a.stored_size == b.stored_size
        && a.raw_size == b.raw_size
        && a.stored_sha256 == b.stored_sha256
        && a.raw_sha256 == b.raw_sha256
}

fn damaged(status: VerifyStatus) -> bool {
    matches!(status, VerifyStatus::Missing | VerifyStatus::Corrupt)
}

/// Decides every backup's outcome. `listed` are the listings that succeeded;
/// `listing_started_ms` is when the first of them was requested: catalog rows recorded after
/// it may be newer than the listing and are never called missing.
pub fn plan(
    listed: &[Listed],
    view: &CatalogView,
    listing_started_ms: i64,
    trust: &Trust,
) -> Vec<Outcome> {
    // One entry per backup id; a backup seen by several agents (a shared bucket) is taken from
    // the listing of the agent that wrote it, if that agent listed it.
    let mut found: BTreeMap<&str, (&Backup, &Listed)> = BTreeMap::new();
    let mut clashes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut refused: BTreeMap<&str, (&Backup, &Listed, String)> = BTreeMap::new();
    for l in listed {
        for b in &l.backups {
            if let Some(why) = refusal(b, l, view, trust) {
                refused.entry(b.backup_id.as_str()).or_insert((b, l, why));
                continue;
            }
            match found.get(b.backup_id.as_str()) {
                None => {
                    found.insert(b.backup_id.as_str(), (b, l));
                }
                Some((seen, by)) if same_content(seen, b) => {
                    if by.agent != seen.agent && l.agent == b.agent {
                        found.insert(b.backup_id.as_str(), (b, l));
                    }
                }
                Some((_, by)) => {
                    clashes
                        .entry(b.backup_id.as_str())
                        .or_default()
                        .push(format!(
                            "repository {} of agent {} and repository {} of agent {} hold \
                         different backups under this id",
                            by.repository, by.agent, l.repository, l.agent
                        ));
                }
            }
        }
    }
    // Every trusted listing of each found backup with its content: its own repository and
    // its copies.
    let mut same: BTreeMap<&str, Vec<(&Backup, &Listed)>> = BTreeMap::new();
    for l in listed {
        for b in &l.backups {
            let id = b.backup_id.as_str();
            if let Some((seen, _)) = found.get(id)
                && same_content(seen, b)
                && refusal(b, l, view, trust).is_none()
            {
                let list = same.entry(id).or_default();
                if !list.iter().any(|(_, x)| x.repository == l.repository) {
                    list.push((b, l));
                }
            }
        }
    }
    // Copies are made by one agent between its own repositories: only its listings count
    // (another agent's name for a shared bucket is the same storage, not a copy).
    let copies_of = |id: &str, own: &str, agent: &str| -> Vec<FoundCopy> {
        same.get(id)
            .into_iter()
            .flatten()
            .filter(|(_, l)| l.repository != own && l.agent == agent)
            .map(|(b, l)| FoundCopy {
                repository: l.repository.clone(),
                verify_status: if damaged(b.verify_status) {
                    b.verify_status
                } else {
                    VerifyStatus::Unverified
                },
                detail: b.verify_detail.clone(),
            })
            .collect()
    };
    let covered: HashSet<(&str, &str)> = listed
        .iter()
        .map(|l| (l.agent.as_str(), l.repository.as_str()))
        .collect();
    let rows: HashMap<&str, &CatalogRow> = view
        .backups
        .iter()
        .map(|r| (r.backup_id.as_str(), r))
        .collect();
    let mut out = Vec::new();
    for (id, (b, l)) in &found {
        // A backup the catalog holds is judged by the listing of its own repository.
        let (b, l) = match rows.get(id).and_then(|row| {
            same.get(id)?
                .iter()
                .find(|(_, l)| l.repository == row.repository)
        }) {
            Some((b, l)) => (*b, *l),
            None => (*b, *l),
        };
        let base =
            |kind: OutcomeKind, status: VerifyStatus, detail: String, change: Change| Outcome {
                backup_id: b.backup_id.to_string(),
                target: b.target.clone(),
                agent: b.agent.clone(),
                repository: l.repository.clone(),
                kind,
                verify_status: status,
                detail,
                stored_size: b.stored_size,
                finished_at_ms: b.finished_at_ms,
                damaged: damaged(b.verify_status),
                change,
                restore_pin: None,
                listed_by: l.agent.clone(),
                copies: Vec::new(),
            };
        if let Some(why) = clashes.get(id) {
            let status = rows.get(id).map_or(b.verify_status, |r| r.verify_status);
            out.push(base(
                OutcomeKind::Conflict,
                status,
                why.join("; "),
                Change::None,
            ));
            continue;
        }
        match rows.get(id) {
            Some(row) if l.repository != row.repository => {
                // Found only as copies: the backup's own repository lacks it if that was
                // listed (and the row is older than the listing).
                let gone = covered.contains(&(row.agent.as_str(), row.repository.as_str()))
                    && row.recorded_at_ms.is_none_or(|at| at < listing_started_ms);
                let mut o = if gone && row.verify_status != VerifyStatus::Missing {
                    let detail = format!(
                        "no manifest in repository {} of agent {}; its copies remain",
                        row.repository, row.agent
                    );
                    base(
                        OutcomeKind::Updated,
                        VerifyStatus::Missing,
                        detail.clone(),
                        Change::SetStatus {
                            status: VerifyStatus::Missing,
                            detail,
                        },
                    )
                } else {
                    base(
                        OutcomeKind::Unchanged,
                        row.verify_status,
                        String::new(),
                        Change::None,
                    )
                };
                o.target.clone_from(&row.target);
                o.agent.clone_from(&row.agent);
                o.repository.clone_from(&row.repository);
                o.copies = copies_of(id, &row.repository, &l.agent);
                out.push(o);
            }
            Some(row) => {
                let diff = differences(b, row);
                if !diff.is_empty() {
                    let mut o = base(
                        OutcomeKind::Conflict,
                        row.verify_status,
                        format!(
                            "{}; the catalog's row is kept (check which copy is right)",
                            diff.join("; ")
                        ),
                        Change::None,
                    );
                    o.target.clone_from(&row.target);
                    o.agent.clone_from(&row.agent);
                    out.push(o);
                    continue;
                }
                // The listing checks presence and size: it can find damage, and can find a
                // backup again that was missing, but cannot clear a hash mismatch.
                let status = match (b.verify_status, row.verify_status) {
                    (VerifyStatus::Missing | VerifyStatus::Corrupt, _) => b.verify_status,
                    (_, VerifyStatus::Missing) => VerifyStatus::Unverified,
                    (_, kept) => kept,
                };
                let mut o = if status == row.verify_status {
                    base(
                        OutcomeKind::Unchanged,
                        status,
                        if damaged(b.verify_status) {
                            b.verify_detail.clone()
                        } else {
                            String::new()
                        },
                        Change::None,
                    )
                } else {
                    let detail = if damaged(status) {
                        b.verify_detail.clone()
                    } else {
                        format!("found again in repository {}; verify it", l.repository)
                    };
                    base(
                        OutcomeKind::Updated,
                        status,
                        detail.clone(),
                        Change::SetStatus { status, detail },
                    )
                };
                o.target.clone_from(&row.target);
                o.agent.clone_from(&row.agent);
                o.repository.clone_from(&row.repository);
                o.copies = copies_of(id, &row.repository, &l.agent);
                out.push(o);
            }
            None if !view.targets.contains(&b.target) => out.push(base(
                OutcomeKind::Skipped,
                b.verify_status,
                format!(
                    "target {} is not registered: start the agent that backs it up (it \
                     declares its targets when it connects), then rebuild again",
                    b.target
                ),
                Change::None,
            )),
            None if view.active_backups.contains(*id) => out.push(base(
                OutcomeKind::Skipped,
                b.verify_status,
                "its backup job is still running; it is recorded when the job ends".into(),
                Change::None,
            )),
            None => {
                let mut new = (*b).clone();
                new.repository.clone_from(&l.repository);
                let mut o = base(
                    OutcomeKind::Added,
                    b.verify_status,
                    b.verify_detail.clone(),
                    Change::Insert(Box::new(new)),
                );
                o.copies = copies_of(id, &l.repository, &l.agent);
                out.push(o);
            }
        }
    }
    // Refused by every listing that had it: reported, nothing written.
    for (id, (b, l, why)) in &refused {
        if found.contains_key(id) {
            continue;
        }
        let row = rows.get(id);
        out.push(Outcome {
            backup_id: b.backup_id.to_string(),
            target: b.target.clone(),
            agent: b.agent.clone(),
            repository: l.repository.clone(),
            kind: OutcomeKind::Refused,
            verify_status: row.map_or(b.verify_status, |r| r.verify_status),
            detail: format!("not recorded: {why}"),
            stored_size: b.stored_size,
            finished_at_ms: b.finished_at_ms,
            damaged: false,
            change: Change::None,
            restore_pin: None,
            listed_by: l.agent.clone(),
            copies: Vec::new(),
        });
    }
    for row in &view.backups {
        if found.contains_key(row.backup_id.as_str())
            || refused.contains_key(row.backup_id.as_str())
            || !covered.contains(&(row.agent.as_str(), row.repository.as_str()))
            || row
                .recorded_at_ms
                .is_some_and(|at| at >= listing_started_ms)
        {
            continue;
        }
        let detail = format!(
            "no manifest in repository {} of agent {}; the backup is gone from storage",
            row.repository, row.agent
        );
        out.push(Outcome {
            backup_id: row.backup_id.clone(),
            target: row.target.clone(),
            agent: row.agent.clone(),
            repository: row.repository.clone(),
            kind: OutcomeKind::Missing,
            verify_status: VerifyStatus::Missing,
            detail: detail.clone(),
            stored_size: row.stored_size,
            finished_at_ms: row.finished_at_ms,
            damaged: false,
            restore_pin: None,
            listed_by: String::new(),
            copies: Vec::new(),
            change: if row.verify_status == VerifyStatus::Missing {
                Change::None
            } else {
                Change::SetStatus {
                    status: VerifyStatus::Missing,
                    detail,
                }
            },
        });
    }
    // Pins live in the catalog; their markers let a rebuild find them again for the backups it
    // records anew (a lost catalog). For a backup the catalog holds, the catalog's pin state
    // stands: a marker left behind by an unpin must not pin it again.
    for o in &mut out {
        if o.kind == OutcomeKind::Added
            && !view.pinned.contains(&o.backup_id)
            && let Some((_, l)) = found.get(o.backup_id.as_str())
        {
            o.restore_pin = l.pins.get(&o.backup_id).cloned();
        }
    }
    out.sort_by(|a, b| {
        (&a.target, a.finished_at_ms, &a.backup_id).cmp(&(
            &b.target,
            b.finished_at_ms,
            &b.backup_id,
        ))
    });
    out
}

#[cfg(test)]
#[path = "rebuild_tests.rs"]
mod tests;
