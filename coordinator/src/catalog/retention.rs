//! Pinned backups and the two-phase delete of backups: mark (with the delete job, in one
//! transaction), then drop the rows once the agent reports the delete done.

use std::collections::{HashMap, HashSet};

use lifeboat_common::ids::BackupId;
use sqlx::Row;

use super::{
    Catalog, CatalogError, Result,
    jobs::{finish_in, insert_job_in},
};
use crate::model::{Finish, Job, NewJob};

/// Who pinned a backup, when and why.
pub use lifeboat_proto::domain::Pin;

/// What `pin_backup` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOutcome {
    Pinned,
    NotFound,
    /// Retention already marked it for deletion.
    Deleting,
}

/// What `mark_delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkDelete {
    /// Marked now (or marked before without an active delete job), and the job queued.
    Queued(Box<Job>),
    /// A delete of it is already queued or running.
    InProgress(String),
    /// Pinned meanwhile: left alone.
    Pinned,
    /// No longer in the catalog.
    Gone,
}

impl Catalog {
    /// Pins a backup; pinning a pinned backup updates who, when and why.
    pub async fn pin_backup(&self, backup_id: &str, pin: &Pin) -> Result<PinOutcome> {
        let mut tx = self.begin_write().await?;
        // Take the write lock first, so a concurrent prune cannot mark it in between.
        sqlx::query("UPDATE backups SET backup_id = backup_id WHERE backup_id = $1")
            .bind(backup_id)
            .execute(&mut *tx)
            .await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM backups WHERE backup_id = $1")
            .bind(backup_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(PinOutcome::NotFound);
        }
        let deleting: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM backup_deletions WHERE backup_id = $1")
                .bind(backup_id)
                .fetch_optional(&mut *tx)
                .await?;
        if deleting.is_some() {
            return Ok(PinOutcome::Deleting);
        }
        sqlx::query(
            "INSERT INTO backup_pins (backup_id, pinned_by, pinned_at_ms, reason) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (backup_id) DO UPDATE SET \
             pinned_by = excluded.pinned_by, pinned_at_ms = excluded.pinned_at_ms, \
             reason = excluded.reason",
        )
        .bind(backup_id)
        .bind(&pin.pinned_by)
        .bind(pin.pinned_at_ms)
        .bind(&pin.reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PinOutcome::Pinned)
    }

    /// Removes a pin. False if the backup was not pinned.
    pub async fn unpin_backup(&self, backup_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM backup_pins WHERE backup_id = $1")
            .bind(backup_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The pin of one backup, if it is pinned.
    pub async fn pin_of(&self, backup_id: &str) -> Result<Option<Pin>> {
        let row = sqlx::query(
            "SELECT pinned_by, pinned_at_ms, reason FROM backup_pins WHERE backup_id = $1",
        )
        .bind(backup_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Pin {
                pinned_by: r.try_get("pinned_by")?,
                pinned_at_ms: r.try_get("pinned_at_ms")?,
                reason: r.try_get("reason")?,
            })
        })
        .transpose()
    }

    /// Every pin, by backup id.
    pub async fn pins(&self) -> Result<HashMap<String, Pin>> {
        let rows =
            sqlx::query("SELECT backup_id, pinned_by, pinned_at_ms, reason FROM backup_pins")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("backup_id")?,
                    Pin {
                        pinned_by: r.try_get("pinned_by")?,
                        pinned_at_ms: r.try_get("pinned_at_ms")?,
                        reason: r.try_get("reason")?,
                    },
                ))
            })
            .collect()
    }

    /// When the coordinator recorded each backup (its job's finish, on the coordinator's
    /// clock), by backup id. Retention counts time with these, not with the agents' clocks.
    pub async fn backups_recorded_at(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT b.backup_id, j.finished_at_ms FROM backups b JOIN jobs j ON j.id = b.job_id \
             WHERE j.finished_at_ms IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("backup_id")?, r.try_get("finished_at_ms")?)))
            .collect()
    }

    /// Ids of the backups a catalog rebuild recorded (from a repository listing).
    pub async fn rebuilt_backups(&self) -> Result<HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT backup_id FROM backup_rebuilt")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().collect())
    }

    /// Ids of the backups marked for deletion.
    pub async fn deleting_backups(&self) -> Result<HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT backup_id FROM backup_deletions")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().collect())
    }

    /// Marks a backup for deletion and queues `job` (a delete of it), in one transaction.
    /// Refuses pinned backups; a backup already marked gets a new job only if none is active
    /// (resuming a delete that failed or was lost).
    pub async fn mark_delete(&self, job: &NewJob, by: &str, now_ms: i64) -> Result<MarkDelete> {
        let Some(id) = job.backup_id.as_ref().map(BackupId::as_str) else {
            return Err(CatalogError::OutOfRange(format!(
                "delete job {} names no backup",
                job.id
            )));
        };
        let mut tx = self.begin_write().await?;
        // Take the write lock first, so the checks below hold until commit.
        sqlx::query("UPDATE backups SET backup_id = backup_id WHERE backup_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM backups WHERE backup_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(MarkDelete::Gone);
        }
        let pinned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM backup_pins WHERE backup_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if pinned.is_some() {
            return Ok(MarkDelete::Pinned);
        }
        let active: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE backup_id = $1 AND kind = 'delete' AND repository = '' \
             AND state IN ('queued', 'running')",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(active) = active {
            return Ok(MarkDelete::InProgress(active));
        }
        sqlx::query(
            "INSERT INTO backup_deletions (backup_id, marked_by, marked_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        insert_job_in(&mut tx, job).await?;
        tx.commit().await?;
        let created = self.inserted_job(&job.id).await?;
        Ok(MarkDelete::Queued(Box::new(created)))
    }

    /// Ends a delete job successfully and drops the backup (and its deletion mark) from the
    /// catalog, in one transaction. None (and nothing written) if the job had already ended.
    pub async fn finish_delete_job(
        &self,
        id: &str,
        finish: &Finish,
        backup_id: &str,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let marked = sqlx::query("DELETE FROM backup_deletions WHERE backup_id = $1")
            .bind(backup_id)
            .execute(&mut *tx)
            .await?;
        // A copy outlives the backup's own objects: the first stored one takes their place.
        if marked.rows_affected() == 1 && !super::copies::promote_in(&mut tx, backup_id).await? {
            sqlx::query("DELETE FROM backup_rebuilt WHERE backup_id = $1")
                .bind(backup_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM backups WHERE backup_id = $1")
                .bind(backup_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Backups marked for deletion with no delete job queued or running (the coordinator
    /// stopped between the phases, or the last attempt failed).
    pub async fn stalled_deletions(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT d.backup_id, d.marked_by FROM backup_deletions d \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.backup_id = d.backup_id \
             AND j.kind = 'delete' AND j.repository = '' AND j.state IN ('queued', 'running')) \
             ORDER BY d.marked_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("backup_id")?, r.try_get("marked_by")?)))
            .collect()
    }

    /// Backups whose pin marker in the repository may not match the catalog's pin, to queue a
    /// pin job for (which writes the pin as it is then): pinned without any pin job (pinned
    /// before markers existed), or whose latest pin job failed or was cancelled before
    /// `retry_before_ms`. Leaves out backups with a pin job queued or running and those marked
    /// for deletion.
    pub async fn pin_markers_to_sync(&self, retry_before_ms: i64) -> Result<Vec<String>> {
        let ids = sqlx::query_scalar(
            "WITH latest AS ( \
               SELECT backup_id, state, finished_at_ms FROM ( \
                 SELECT backup_id, state, finished_at_ms, ROW_NUMBER() OVER ( \
                   PARTITION BY backup_id ORDER BY created_at_ms DESC, id DESC) AS n \
                 FROM jobs WHERE kind = 'pin') AS ranked WHERE n = 1) \
             SELECT b.backup_id FROM backups b \
             LEFT JOIN latest l ON l.backup_id = b.backup_id \
             WHERE b.backup_id NOT IN (SELECT backup_id FROM backup_deletions) \
             AND b.backup_id NOT IN (SELECT backup_id FROM jobs WHERE kind = 'pin' \
                                     AND state IN ('queued', 'running')) \
             AND ((l.backup_id IS NULL \
                   AND b.backup_id IN (SELECT backup_id FROM backup_pins)) \
                  OR (l.state IN ('failed', 'cancelled') \
                      AND COALESCE(l.finished_at_ms, 0) < $1)) \
             ORDER BY b.backup_id",
        )
        .bind(retry_before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Whether any restore or verify of the backup is queued or running.
    pub async fn backup_in_use(&self, backup_id: &str) -> Result<Option<String>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE backup_id = $1 AND kind IN ('restore', 'verify') \
             AND state IN ('queued', 'running') LIMIT 1",
        )
        .bind(backup_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
