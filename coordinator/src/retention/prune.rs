//! Applying retention: plan per target and repository from the catalog, then (unless a dry
//! run) the first phase of the two-phase delete: mark each backup (or copy) to delete and queue
//! a delete job for the target's agent. The backup's row goes only when the agent reports the
//! delete done; marked deletes whose job was lost or failed are queued again at start-up and on
//! the next prune.
//!
//! A target's backups and their copies are planned per repository: the backups stored in a
//! repository and the copies there are one set, with the policy for that repository. A backup
//! whose own objects are deleted while a copy of it is kept lives on as that copy (the catalog
//! promotes it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use lifeboat_common::names::TargetName;

use super::{
    Action, Candidate, Decision, Policy,
    config::{PolicySource, RetentionConfig},
    plan,
};
use crate::{
    catalog::{Catalog, MarkCopyDelete, MarkDelete, Pin},
    jobs::Jobs,
    model::{Backup, CopyState, JobKind, NewJob},
};

/// Most backups read per target for one plan.
const MAX_BACKUPS: u32 = u32::MAX;

/// The plan for one target's backups and copies in one repository.
#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub target: TargetName,
    /// The repository planned. Each decision's backup names it as its repository.
    pub repository: String,
    /// The backups whose decision is about their copy in `repository` (the others are
    /// stored there themselves).
    pub copies: BTreeSet<String>,
    /// None: no policy applies, everything is kept.
    pub policy: Option<(Policy, PolicySource)>,
    pub decisions: Vec<(Decision, Backup)>,
}

/// One decision after `apply`: the delete job queued for it, or why none was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    NotApplied,
    Queued(String),
    AlreadyDeleting(String),
    /// Pinned between plan and apply: kept.
    PinnedMeanwhile,
    Gone,
}

/// What retention knows about backups beyond their records.
pub(crate) struct Facts {
    pub pins: HashMap<String, Pin>,
    /// When the coordinator recorded each backup (N26: an agent with a wrong clock must not
    /// make a backup look older or newer than it is).
    pub recorded: HashMap<String, i64>,
    pub deleting: HashSet<String>,
    pub rebuilt: HashSet<String>,
}

impl Facts {
    pub async fn read(catalog: &Catalog) -> Result<Self> {
        Ok(Self {
            pins: catalog.pins().await.context("read pins")?,
            recorded: catalog
                .backups_recorded_at()
                .await
                .context("read backup times")?,
            deleting: catalog.deleting_backups().await.context("read deletions")?,
            rebuilt: catalog
                .rebuilt_backups()
                .await
                .context("read rebuilt backups")?,
        })
    }

    pub fn candidate(&self, b: &Backup) -> Candidate {
        let id = b.backup_id.as_str();
        Candidate {
            backup_id: id.to_owned(),
            finished_at_ms: self.recorded.get(id).copied().unwrap_or(b.finished_at_ms),
            verify_status: b.verify_status,
            pinned: self.pins.contains_key(id),
            deleting: self.deleting.contains(id),
            rebuilt: self.rebuilt.contains(id),
        }
    }
}

/// Plans retention for `target`, or for every target with backups.
pub async fn plan_targets(
    catalog: &Catalog,
    retention: &RetentionConfig,
    target: Option<&TargetName>,
    now_ms: i64,
) -> Result<Vec<TargetPlan>> {
    let filter = target.map(ToString::to_string);
    let backups = catalog
        .list_backups(filter.as_deref(), MAX_BACKUPS)
        .await
        .context("read backups")?;
    let facts = Facts::read(catalog).await?;
    let copies = catalog
        .copies_by_backup(filter.as_deref())
        .await
        .context("read copies")?;
    // (target, repository) → its backups and copies there, each as a candidate.
    let mut groups: BTreeMap<(TargetName, String), Group> = BTreeMap::new();
    for b in backups {
        for c in copies.get(b.backup_id.as_str()).into_iter().flatten() {
            if c.state == CopyState::Copying {
                continue;
            }
            let mut candidate = facts.candidate(&b);
            candidate.verify_status = c.verify_status;
            candidate.deleting = c.state == CopyState::Deleting;
            let mut at = b.clone();
            at.repository.clone_from(&c.repository);
            let g = groups
                .entry((b.target.clone(), c.repository.clone()))
                .or_default();
            g.copies.insert(b.backup_id.to_string());
            g.members.push((candidate, at));
        }
        let candidate = facts.candidate(&b);
        groups
            .entry((b.target.clone(), b.repository.clone()))
            .or_default()
            .members
            .push((candidate, b));
    }
    let mut out = Vec::new();
    for ((name, repository), group) in groups {
        let policy = retention
            .policy_for_repository(&name, &repository)
            .map(|(p, s)| (p.clone(), s));
        let (candidates, backups): (Vec<Candidate>, Vec<Backup>) =
            group.members.into_iter().unzip();
        let empty = Policy::default();
        let decisions = plan(
            &candidates,
            policy.as_ref().map_or(&empty, |(p, _)| p),
            now_ms,
        );
        let mut by_id: BTreeMap<String, Backup> = backups
            .into_iter()
            .map(|b| (b.backup_id.to_string(), b))
            .collect();
        let decisions = decisions
            .into_iter()
            .filter_map(|d| by_id.remove(&d.backup_id).map(|b| (d, b)))
            .collect();
        out.push(TargetPlan {
            target: name,
            repository,
            copies: group.copies,
            policy,
            decisions,
        });
    }
    Ok(out)
}

/// One target's backups and copies in one repository.
#[derive(Default)]
struct Group {
    members: Vec<(Candidate, Backup)>,
    copies: BTreeSet<String>,
}

/// The key of a decision in [`apply`]'s answer: the backup and the repository planned.
pub fn applied_key(backup_id: &str, repository: &str) -> (String, String) {
    (backup_id.to_owned(), repository.to_owned())
}

/// Marks every backup and copy the plans delete and queues its delete job. Returns, per
/// [`applied_key`], what happened.
pub async fn apply(
    catalog: &Catalog,
    jobs: &Jobs,
    plans: &[TargetPlan],
    by: &str,
    now_ms: i64,
) -> Result<BTreeMap<(String, String), Applied>> {
    let mut out = BTreeMap::new();
    // Copies first: a backup's own delete waits for the deletes of its copies that are
    // marked, so a copy marked after its backup's own delete was handed out would outlive
    // the backup's row and never be deleted.
    for copies in [true, false] {
        for p in plans {
            for (d, b) in &p.decisions {
                let copy = p.copies.contains(b.backup_id.as_str());
                if d.action != Action::Delete || copy != copies {
                    continue;
                }
                let applied = if copy {
                    queue_copy_delete(catalog, jobs, b, &p.repository, by, now_ms).await?
                } else {
                    queue_delete(catalog, jobs, b, by, now_ms).await?
                };
                out.insert(applied_key(b.backup_id.as_str(), &p.repository), applied);
            }
        }
    }
    Ok(out)
}

/// Marks `b`'s copy in `repository` for deletion and queues its delete job on the agent of
/// the backup's target.
async fn queue_copy_delete(
    catalog: &Catalog,
    jobs: &Jobs,
    b: &Backup,
    repository: &str,
    by: &str,
    now_ms: i64,
) -> Result<Applied> {
    let agent = catalog
        .get_target(b.target.as_str())
        .await
        .context("read target")?
        .map_or_else(|| b.agent.clone(), |t| t.agent);
    let mut job = NewJob::new(JobKind::Delete, b.target.clone(), &agent, by, now_ms);
    job.backup_id = Some(b.backup_id.clone());
    job.repository = repository.to_owned();
    Ok(
        match catalog
            .mark_copy_delete(&job)
            .await
            .context("mark copy for deletion")?
        {
            MarkCopyDelete::Queued(created) => {
                jobs.queued(&created);
                Applied::Queued(created.id)
            }
            MarkCopyDelete::InProgress(job) => Applied::AlreadyDeleting(job),
            MarkCopyDelete::Pinned => Applied::PinnedMeanwhile,
            MarkCopyDelete::Gone => Applied::Gone,
        },
    )
}

async fn queue_delete(
    catalog: &Catalog,
    jobs: &Jobs,
    b: &Backup,
    by: &str,
    now_ms: i64,
) -> Result<Applied> {
    // The agent that wrote it holds the repository's credentials.
    let mut job = NewJob::new(JobKind::Delete, b.target.clone(), &b.agent, by, now_ms);
    job.backup_id = Some(b.backup_id.clone());
    Ok(
        match catalog
            .mark_delete(&job, by, now_ms)
            .await
            .context("mark backup for deletion")?
        {
            MarkDelete::Queued(created) => {
                jobs.queued(&created);
                Applied::Queued(created.id)
            }
            MarkDelete::InProgress(job) => Applied::AlreadyDeleting(job),
            MarkDelete::Pinned => Applied::PinnedMeanwhile,
            MarkDelete::Gone => Applied::Gone,
        },
    )
}

/// What `delete_one` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOne {
    /// Marked and its delete job queued (or already under way): the job id.
    Queued(String),
    /// Refused, and why (pinned; kept by the policy's floor).
    Refused(String),
    /// No longer in the catalog.
    Gone,
}

/// `lifeboat backup delete`: the first phase of the two-phase delete for one backup and
/// every copy of it, unless it is pinned or one of the newest good backups its target's
/// policy keeps (`min_keep`, and always the newest good one, as retention does). With
/// `repository` set, only the backup's copy there (the backup itself stays).
pub async fn delete_one(
    catalog: &Catalog,
    jobs: &Jobs,
    retention: &RetentionConfig,
    backup: &Backup,
    repository: &str,
    by: &str,
    now_ms: i64,
) -> Result<DeleteOne> {
    let id = backup.backup_id.as_str();
    let facts = Facts::read(catalog).await?;
    if let Some(pin) = facts.pins.get(id) {
        return Ok(DeleteOne::Refused(format!(
            "backup {id} is pinned (by {}: {}); unpin it first with `lifeboat backup unpin {id}`",
            pin.pinned_by, pin.reason
        )));
    }
    if !repository.is_empty() {
        return Ok(
            match queue_copy_delete(catalog, jobs, backup, repository, by, now_ms).await? {
                Applied::Queued(job) | Applied::AlreadyDeleting(job) => DeleteOne::Queued(job),
                Applied::PinnedMeanwhile => DeleteOne::Refused(format!(
                    "backup {id} was pinned meanwhile; unpin it first with `lifeboat backup unpin {id}`"
                )),
                Applied::Gone | Applied::NotApplied => DeleteOne::Refused(format!(
                    "backup {id} has no complete copy in repository {repository}; see `lifeboat backup show {id}`"
                )),
            },
        );
    }
    let target = backup.target.to_string();
    let backups = catalog
        .list_backups(Some(&target), MAX_BACKUPS)
        .await
        .context("read backups")?;
    let mut good: Vec<Candidate> = backups
        .iter()
        .map(|b| facts.candidate(b))
        .filter(|c| c.is_good() && !c.deleting)
        .collect();
    good.sort_by(|a, b| (b.finished_at_ms, &b.backup_id).cmp(&(a.finished_at_ms, &a.backup_id)));
    let min_keep = retention
        .policy_for(&backup.target)
        .map_or(0, |(p, _)| p.min_keep);
    let floor = usize::try_from(min_keep.max(1)).unwrap_or(usize::MAX);
    if let Some(rank) = good.iter().position(|c| c.backup_id == id)
        && rank < floor
    {
        return Ok(DeleteOne::Refused(if floor == 1 {
            format!(
                "backup {id} is the newest good backup of {target}, which is always kept; take \
                 a new backup first (`lifeboat backup run {target} --wait`), then delete it"
            )
        } else {
            format!(
                "backup {id} is one of the {floor} newest good backups of {target}, which its \
                 retention policy keeps (min_keep = {min_keep}); take newer backups first, or \
                 lower min_keep in the coordinator config"
            )
        }));
    }
    // The copies first: once the backup's own objects are gone, a copy not marked would take
    // their place.
    for c in catalog.copies_of(id).await.context("read copies")? {
        if c.state == CopyState::Stored {
            queue_copy_delete(catalog, jobs, backup, &c.repository, by, now_ms).await?;
        }
    }
    Ok(
        match queue_delete(catalog, jobs, backup, by, now_ms).await? {
            Applied::Queued(job) | Applied::AlreadyDeleting(job) => DeleteOne::Queued(job),
            Applied::PinnedMeanwhile => DeleteOne::Refused(format!(
                "backup {id} was pinned meanwhile; unpin it first with `lifeboat backup unpin {id}`"
            )),
            Applied::Gone | Applied::NotApplied => DeleteOne::Gone,
        },
    )
}

/// At start-up: queues a delete job again for every backup marked for deletion whose job
/// was lost (the coordinator stopped between the two phases).
pub async fn resume_deletes(catalog: Catalog, jobs: Jobs) {
    if let Err(e) = resume_once(&catalog, &jobs).await {
        tracing::warn!("failed to resume marked deletes: {e:#}; the next prune resumes them");
    }
}

async fn resume_once(catalog: &Catalog, jobs: &Jobs) -> Result<()> {
    let stalled = catalog
        .stalled_deletions()
        .await
        .context("read marked deletes")?;
    for (backup_id, by) in stalled {
        let Some(backup) = catalog
            .get_backup(&backup_id)
            .await
            .context("read backup")?
        else {
            continue;
        };
        let applied =
            queue_delete(catalog, jobs, &backup, &by, lifeboat_common::time::now_ms()).await?;
        tracing::info!(backup_id = %backup_id, "resumed marked delete: {applied:?}");
    }
    let stalled = catalog
        .stalled_copy_deletions()
        .await
        .context("read marked copy deletes")?;
    for (backup_id, repository) in stalled {
        let Some(backup) = catalog
            .get_backup(&backup_id)
            .await
            .context("read backup")?
        else {
            continue;
        };
        let applied = queue_copy_delete(
            catalog,
            jobs,
            &backup,
            &repository,
            "retention",
            lifeboat_common::time::now_ms(),
        )
        .await?;
        tracing::info!(backup_id = %backup_id, repository = %repository, "resumed marked copy delete: {applied:?}");
    }
    Ok(())
}
