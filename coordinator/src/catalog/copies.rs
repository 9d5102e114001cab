//! Copies of backups in other repositories (off-site copies). A copy row is written with its
//! copy job (state `copying`), becomes `stored` when the job succeeds and goes when it fails
//! ([`super::jobs::finish_in`]). Deleting a copy is two-phase like deleting a backup: the row
//! is marked `deleting` with its delete job, and goes when the agent reports the delete done.
//! When a backup's own objects are deleted while a stored copy remains, the copy takes their
//! place ([`promote_in`]): the backup's row then names the copy's repository.

use std::collections::HashMap;

use lifeboat_common::ids::BackupId;
use sqlx::{Any, Row, Transaction, any::AnyRow};

use super::{
    Catalog, CatalogError, Result,
    jobs::{finish_in, insert_job_in},
    parse_enum,
};
use crate::model::{BackupCopy, CopyState, Finish, Job, NewJob, VerifyOutcome, VerifyStatus};

/// The columns `copy_from_row` reads, as a literal so queries stay `&'static str`.
macro_rules! copy_columns {
    () => {
        "backup_id, repository, state, job_id, created_at_ms, stored_at_ms, verify_status, \
         verified_at_ms, verify_detail"
    };
}

/// What `insert_copy_job` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertCopy {
    Queued(Box<Job>),
    /// A copy there is already being made: its job.
    InProgress(String),
    /// The backup already has a complete copy there.
    AlreadyStored,
    /// The copy there is being deleted; copy again once that is done.
    Deleting,
    /// The backup is no longer in the catalog, or is being deleted.
    Gone,
}

/// What `mark_copy_delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkCopyDelete {
    Queued(Box<Job>),
    /// A delete of that copy is already queued or running.
    InProgress(String),
    /// The backup is pinned: its copies are kept too.
    Pinned,
    /// No such copy (or it is still being made).
    Gone,
}

impl Catalog {
    /// The copies of one backup, by repository name.
    pub async fn copies_of(&self, backup_id: &str) -> Result<Vec<BackupCopy>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            copy_columns!(),
            " FROM backup_copies WHERE backup_id = $1 ORDER BY repository"
        ))
        .bind(backup_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(copy_from_row).collect()
    }

    /// Every copy, by backup id (optionally only those of one target's backups).
    pub async fn copies_by_backup(
        &self,
        target: Option<&str>,
    ) -> Result<HashMap<String, Vec<BackupCopy>>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            copy_columns!(),
            " FROM backup_copies c WHERE $1 IS NULL OR EXISTS \
             (SELECT 1 FROM backups b WHERE b.backup_id = c.backup_id AND b.target = $1) \
             ORDER BY backup_id, repository"
        ))
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<BackupCopy>> = HashMap::new();
        for row in &rows {
            let c = copy_from_row(row)?;
            out.entry(c.backup_id.clone()).or_default().push(c);
        }
        Ok(out)
    }

    /// Queues `job` (a copy of its backup to `job.repository`) with the copy's row, in one
    /// transaction.
    pub async fn insert_copy_job(&self, job: &NewJob, now_ms: i64) -> Result<InsertCopy> {
        let id = backup_of(job)?;
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE backups SET backup_id = backup_id WHERE backup_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM backups WHERE backup_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM backup_deletions d WHERE d.backup_id = $1)",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(InsertCopy::Gone);
        }
        let current: Option<(String, String)> = sqlx::query_as(
            "SELECT state, job_id FROM backup_copies WHERE backup_id = $1 AND repository = $2",
        )
        .bind(id)
        .bind(&job.repository)
        .fetch_optional(&mut *tx)
        .await?;
        match current.as_ref().map(|(s, j)| (s.as_str(), j)) {
            Some(("copying", job)) => return Ok(InsertCopy::InProgress(job.clone())),
            Some(("stored", _)) => return Ok(InsertCopy::AlreadyStored),
            Some(_) => return Ok(InsertCopy::Deleting),
            None => {}
        }
        insert_job_in(&mut tx, job).await?;
        sqlx::query(
            "INSERT INTO backup_copies (backup_id, repository, state, job_id, created_at_ms) \
             VALUES ($1, $2, 'copying', $3, $4)",
        )
        .bind(id)
        .bind(&job.repository)
        .bind(&job.id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let created = self.inserted_job(&job.id).await?;
        Ok(InsertCopy::Queued(Box::new(created)))
    }

    /// Ends a copy job successfully: its copy is stored. None (and nothing written) if the
    /// job had already ended.
    pub async fn finish_copy_job(&self, id: &str, finish: &Finish) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE backup_copies SET state = 'stored', stored_at_ms = $1 \
             WHERE job_id = $2 AND state = 'copying'",
        )
        .bind(finish.finished_at_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Ends a verify job of a copy and records its verdict on the copy.
    pub async fn finish_copy_verify_job(
        &self,
        id: &str,
        finish: &Finish,
        backup_id: &str,
        repository: &str,
        outcome: &VerifyOutcome,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE backup_copies SET verify_status = $1, verified_at_ms = $2, verify_detail = $3 \
             WHERE backup_id = $4 AND repository = $5",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.verified_at_ms)
        .bind(&outcome.detail)
        .bind(backup_id)
        .bind(repository)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Marks the copy of `job`'s backup in `job.repository` for deletion and queues `job`
    /// (its delete), in one transaction. A copy already marked gets a new job only if none is
    /// active.
    pub async fn mark_copy_delete(&self, job: &NewJob) -> Result<MarkCopyDelete> {
        let id = backup_of(job)?;
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE backups SET backup_id = backup_id WHERE backup_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let pinned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM backup_pins WHERE backup_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if pinned.is_some() {
            return Ok(MarkCopyDelete::Pinned);
        }
        let active: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE backup_id = $1 AND repository = $2 AND kind = 'delete' \
             AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(&job.repository)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(active) = active {
            return Ok(MarkCopyDelete::InProgress(active));
        }
        let marked = sqlx::query(
            "UPDATE backup_copies SET state = 'deleting' \
             WHERE backup_id = $1 AND repository = $2 AND state IN ('stored', 'deleting')",
        )
        .bind(id)
        .bind(&job.repository)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(MarkCopyDelete::Gone);
        }
        insert_job_in(&mut tx, job).await?;
        tx.commit().await?;
        let created = self.inserted_job(&job.id).await?;
        Ok(MarkCopyDelete::Queued(Box::new(created)))
    }

    /// Ends a delete job of a copy successfully and drops the copy's row.
    pub async fn finish_copy_delete_job(
        &self,
        id: &str,
        finish: &Finish,
        backup_id: &str,
        repository: &str,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "DELETE FROM backup_copies WHERE backup_id = $1 AND repository = $2 \
             AND state = 'deleting'",
        )
        .bind(backup_id)
        .bind(repository)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Copies marked for deletion with no delete job queued or running: (backup, repository).
    pub async fn stalled_copy_deletions(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT c.backup_id, c.repository FROM backup_copies c WHERE c.state = 'deleting' \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.backup_id = c.backup_id \
             AND j.repository = c.repository AND j.kind = 'delete' \
             AND j.state IN ('queued', 'running')) ORDER BY c.backup_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("backup_id")?, r.try_get("repository")?)))
            .collect()
    }

    /// Backups of `target` whose copy to `repository` failed (or was cancelled) and never
    /// succeeded since.
    pub async fn failed_copies(
        &self,
        target: &str,
        repository: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT j.backup_id FROM jobs j WHERE j.target = $1 AND j.kind = 'copy' \
             AND j.repository = $2 AND j.state IN ('failed', 'cancelled') AND NOT EXISTS \
             (SELECT 1 FROM jobs k WHERE k.backup_id = j.backup_id AND k.kind = 'copy' \
              AND k.repository = $2 AND k.state = 'succeeded')",
        )
        .bind(target)
        .bind(repository)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// When the newest backup of `target` with a stored copy in `repository` finished.
    pub async fn newest_copied(&self, target: &str, repository: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(b.finished_at_ms) FROM backups b JOIN backup_copies c \
             ON c.backup_id = b.backup_id WHERE b.target = $1 AND c.repository = $2 \
             AND c.state = 'stored'",
        )
        .bind(target)
        .bind(repository)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// The backup's own objects are gone: when a stored copy of it remains, the first readable
/// one (by repository name; else the first stored one) takes their place — the backup's row
/// names its repository and takes its verify state — and true is returned.
pub(super) async fn promote_in(
    tx: &mut Transaction<'static, Any>,
    backup_id: &str,
) -> Result<bool> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        copy_columns!(),
        " FROM backup_copies WHERE backup_id = $1 AND state = 'stored' \
         ORDER BY repository"
    ))
    .bind(backup_id)
    .fetch_all(&mut **tx)
    .await?;
    let copies = rows.iter().map(copy_from_row).collect::<Result<Vec<_>>>()?;
    let Some(copy) = copies
        .iter()
        .find(|c| c.is_readable())
        .or_else(|| copies.first())
    else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE backups SET repository = $1, verify_status = $2, verified_at_ms = $3, \
         verify_detail = $4 WHERE backup_id = $5",
    )
    .bind(&copy.repository)
    .bind(copy.verify_status.as_str())
    .bind(copy.verified_at_ms)
    .bind(&copy.verify_detail)
    .bind(backup_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM backup_copies WHERE backup_id = $1 AND repository = $2")
        .bind(backup_id)
        .bind(&copy.repository)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

fn backup_of(job: &NewJob) -> Result<&str> {
    let id = job.backup_id.as_ref().map(BackupId::as_str);
    match id {
        Some(id) if !job.repository.is_empty() => Ok(id),
        _ => Err(CatalogError::OutOfRange(format!(
            "{} job {} must name a backup and a repository",
            job.kind, job.id
        ))),
    }
}

fn copy_from_row(row: &AnyRow) -> Result<BackupCopy> {
    let state: String = row.try_get("state")?;
    let verify: String = row.try_get("verify_status")?;
    Ok(BackupCopy {
        backup_id: row.try_get("backup_id")?,
        repository: row.try_get("repository")?,
        state: parse_enum("backup_copies.state", &state, CopyState::parse)?,
        job_id: row.try_get("job_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        stored_at_ms: row.try_get("stored_at_ms")?,
        verify_status: parse_enum("backup_copies.verify_status", &verify, VerifyStatus::parse)?,
        verified_at_ms: row.try_get("verified_at_ms")?,
        verify_detail: row.try_get("verify_detail")?,
    })
}
