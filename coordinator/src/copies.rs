//! Off-site copies: after each successful backup of a target with `copy_to`, a copy job per
//! repository it lists; `lifeboat backup copy` for one-off copies; and which repository a job
//! that reads a backup reads it from.
//!
//! A copy job runs on the agent of the backup's target (it holds the credentials of both
//! repositories). A copy that failed (the off-site store was down) is made again after the
//! target's next successful backup: every backup whose copy there failed and never succeeded,
//! and every backup newer than the newest one copied there, that has no copy there yet gets a
//! copy job. Older backups are copied only when asked (`backup copy`), so adding `copy_to`
//! does not start copying a whole history, and a copy that the repository's retention removed
//! is not made again.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::{Catalog, InsertCopy},
    hub::Hub,
    jobs::Jobs,
    model::{Backup, BackupCopy, CopyState, Job, JobKind, JobState, NewJob, VerifyStatus},
};

/// The actor of the copy jobs queued after a backup.
pub const AFTER_BACKUP: &str = "schedule/copy-after-backup";

/// Most backups looked at per target when catching up on missed copies.
const CATCH_UP: u32 = 100;

/// The backup record a job that reads a backup is sent, and the repositories to try after
/// its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub backup: Backup,
    pub fallbacks: Vec<String>,
}

/// Where `job` reads (or, for a delete or verify of a copy, works on) `backup`.
///
/// - A job naming a repository (a copy's delete or verify, a restore `--from-repository`)
///   works there, and only there; it must hold a copy (or be the backup's own repository).
/// - A copy job reads the backup's own objects unless they are known to be damaged, then the
///   first readable copy elsewhere than its destination.
/// - A restore, its dry run or an export reads the backup's own objects unless they are known
///   to be damaged, then the first readable copy; the other readable copies follow as
///   fallbacks, tried by the agent when the first lacks the backup.
/// - Other jobs (verify, delete, pin) work on the backup's own objects.
pub fn locate(backup: &Backup, copies: &[BackupCopy], job: &Job) -> Result<Located, String> {
    let own_readable = matches!(
        backup.verify_status,
        VerifyStatus::Ok | VerifyStatus::Unverified
    );
    let at = |repository: &str| {
        let mut b = backup.clone();
        b.repository = repository.to_owned();
        b
    };
    let plain = |b: Backup| Located {
        backup: b,
        fallbacks: Vec::new(),
    };
    match job.kind {
        JobKind::Copy => {
            let to = job.repository.as_str();
            if own_readable
                || copies
                    .iter()
                    .all(|c| !c.is_readable() || c.repository == to)
            {
                return Ok(plain(backup.clone()));
            }
            let from = copies
                .iter()
                .find(|c| c.is_readable() && c.repository != to)
                .map(|c| c.repository.as_str())
                .unwrap_or(backup.repository.as_str());
            Ok(plain(at(from)))
        }
        _ if !job.repository.is_empty() => {
            let r = job.repository.as_str();
            let known = r == backup.repository
                || copies
                    .iter()
                    .any(|c| c.repository == r && c.state != CopyState::Copying);
            if !known {
                return Err(format!(
                    "backup {} has no copy in repository {r} (any more); see `lifeboat backup show {}`",
                    backup.backup_id, backup.backup_id
                ));
            }
            Ok(plain(at(r)))
        }
        JobKind::Restore | JobKind::Check | JobKind::Export => {
            let mut order: Vec<&str> = Vec::new();
            if own_readable {
                order.push(&backup.repository);
            }
            order.extend(
                copies
                    .iter()
                    .filter(|c| c.is_readable())
                    .map(|c| c.repository.as_str()),
            );
            if order.is_empty() {
                // Nothing is known to be good: try the backup's own objects; the agent's
                // checks say what is wrong with them.
                return Ok(plain(backup.clone()));
            }
            Ok(Located {
                backup: at(order[0]),
                fallbacks: order[1..].iter().map(|r| (*r).to_owned()).collect(),
            })
        }
        _ => Ok(plain(backup.clone())),
    }
}

/// What `queue` did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    Job(Box<Job>),
    /// A copy there is already being made by this job.
    InProgress(String),
    AlreadyStored,
    Deleting,
    Gone,
}

/// Queues a copy of `backup` to `repository` on `agent`, asked for by `by`.
pub async fn queue(
    catalog: &Catalog,
    jobs: &Jobs,
    backup: &Backup,
    agent: &str,
    repository: &str,
    by: &str,
    now_ms: i64,
) -> Result<Queued> {
    let mut job = NewJob::new(JobKind::Copy, backup.target.clone(), agent, by, now_ms);
    job.backup_id = Some(backup.backup_id.clone());
    job.repository = repository.to_owned();
    Ok(
        match catalog
            .insert_copy_job(&job, now_ms)
            .await
            .context("queue copy")?
        {
            InsertCopy::Queued(created) => {
                jobs.queued(&created);
                Queued::Job(created)
            }
            InsertCopy::InProgress(id) => Queued::InProgress(id),
            InsertCopy::AlreadyStored => Queued::AlreadyStored,
            InsertCopy::Deleting => Queued::Deleting,
            InsertCopy::Gone => Queued::Gone,
        },
    )
}

/// What the task needs.
#[derive(Clone)]
pub struct AutoCopy {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub jobs: Jobs,
}

/// The task: after each successful backup of a target with `copy_to`, queues its copies.
pub async fn run(p: AutoCopy, cancel: CancellationToken) {
    let mut events = p.hub.subscribe();
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(job) if job.kind == JobKind::Backup && job.state == JobState::Succeeded => {
                if let Err(e) = after_backup(&p, &job).await {
                    tracing::warn!(target = %job.target, "queueing the copies of a backup failed: {e:#}; the next backup of the target queues them");
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Queues, for each repository in the target's `copy_to`, a copy of the backup that just
/// succeeded and of every backup that has no copy there yet and either is newer than the
/// newest one copied there or had its copy there fail. Returns the jobs queued.
pub async fn after_backup(p: &AutoCopy, job: &Job) -> Result<Vec<String>> {
    let Some(target) = p
        .catalog
        .get_target(job.target.as_str())
        .await
        .context("read target")?
    else {
        return Ok(Vec::new());
    };
    if target.copy_to.is_empty() {
        return Ok(Vec::new());
    }
    let backups = p
        .catalog
        .list_backups(Some(job.target.as_str()), CATCH_UP)
        .await
        .context("read backups")?;
    let copies = p
        .catalog
        .copies_by_backup(Some(job.target.as_str()))
        .await
        .context("read copies")?;
    let deleting = p.catalog.deleting_backups().await.context("read deletes")?;
    let now = lifeboat_common::time::now_ms();
    let mut queued = Vec::new();
    for repo in &target.copy_to {
        let newest = p
            .catalog
            .newest_copied(job.target.as_str(), repo)
            .await
            .context("read copies")?;
        let failed = p
            .catalog
            .failed_copies(job.target.as_str(), repo)
            .await
            .context("read failed copies")?;
        for b in &backups {
            let id = b.backup_id.as_str();
            let just_made = job.backup_id.as_ref() == Some(&b.backup_id);
            let missed = newest.is_some_and(|n| b.finished_at_ms > n) || failed.contains(id);
            let has_copy = copies
                .get(id)
                .is_some_and(|cs| cs.iter().any(|c| c.repository == *repo));
            if (!just_made && !missed)
                || has_copy
                || b.repository == *repo
                || deleting.contains(id)
                || b.is_physical()
                || !matches!(b.verify_status, VerifyStatus::Ok | VerifyStatus::Unverified)
            {
                continue;
            }
            match queue(
                &p.catalog,
                &p.jobs,
                b,
                &target.agent,
                repo,
                AFTER_BACKUP,
                now,
            )
            .await?
            {
                Queued::Job(j) => queued.push(j.id.clone()),
                other => {
                    tracing::debug!(backup_id = id, repository = %repo, "copy not queued: {other:?}")
                }
            }
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests;
