//! Keeping the catalog's history bounded: finished jobs, scheduler decisions and audit records
//! older than the configured ages are removed. What health, alerts and restores still need is
//! kept whatever its age: a job that made a backup in the catalog, and each target's latest
//! job of every kind and outcome (the "last verify", "last check" a dashboard shows).

use super::{Catalog, Result};

/// How many rows one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryPruned {
    pub jobs: u64,
    pub schedule_runs: u64,
    pub audit: u64,
}

impl Catalog {
    /// Removes finished jobs and scheduler decisions older than `jobs_before_ms`, and audit
    /// records older than `audit_before_ms`.
    pub async fn prune_history(
        &self,
        jobs_before_ms: i64,
        audit_before_ms: i64,
    ) -> Result<HistoryPruned> {
        let mut tx = self.pool.begin().await?;
        let jobs = sqlx::query(
            "DELETE FROM jobs
              WHERE state IN ('succeeded', 'failed', 'cancelled')
                AND coalesce(finished_at_ms, created_at_ms) < $1
                AND id NOT IN (SELECT job_id FROM backups)
                AND id NOT IN (
                    SELECT (SELECT j2.id FROM jobs j2
                             WHERE j2.target = k.target AND j2.kind = k.kind AND j2.state = k.state
                             ORDER BY j2.finished_at_ms DESC, j2.id DESC LIMIT 1)
                      FROM (SELECT DISTINCT target, kind, state FROM jobs) k)",
        )
        .bind(jobs_before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let schedule_runs = sqlx::query("DELETE FROM schedule_runs WHERE decided_at_ms < $1")
            .bind(jobs_before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let audit = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(audit_before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(HistoryPruned {
            jobs,
            schedule_runs,
            audit,
        })
    }
}
