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

/// Jobs examined per statement: each window of the jobs' time index is one short statement,
/// so a first pass over millions of old jobs neither holds a long transaction nor blocks a
/// shutdown for long.
const WINDOW: i64 = 10_000;

impl Catalog {
    /// Removes finished jobs and scheduler decisions older than `jobs_before_ms`, and audit
    /// records older than `audit_before_ms`.
    pub async fn prune_history(
        &self,
        jobs_before_ms: i64,
        audit_before_ms: i64,
    ) -> Result<HistoryPruned> {
        self.prune_history_in_windows(jobs_before_ms, audit_before_ms, WINDOW)
            .await
    }

    /// [`Catalog::prune_history`], examining `window` jobs per statement.
    pub(super) async fn prune_history_in_windows(
        &self,
        jobs_before_ms: i64,
        audit_before_ms: i64,
        window_size: i64,
    ) -> Result<HistoryPruned> {
        let mut jobs = 0;
        let mut cursor: Option<(i64, String)> = None;
        loop {
            // The next window of jobs created before the cutoff (a job finished before it was
            // necessarily created before it), in the order of the (created_at_ms, id) index.
            let window: Vec<(i64, String)> = match &cursor {
                None => sqlx::query_as(
                    "SELECT created_at_ms, id FROM jobs WHERE created_at_ms < $1 \
                     ORDER BY created_at_ms, id LIMIT $2",
                )
                .bind(jobs_before_ms)
                .bind(window_size),
                Some((at, id)) => sqlx::query_as(
                    "SELECT created_at_ms, id FROM jobs WHERE created_at_ms < $1 \
                     AND (created_at_ms, id) > ($3, $4) ORDER BY created_at_ms, id LIMIT $2",
                )
                .bind(jobs_before_ms)
                .bind(window_size)
                .bind(*at)
                .bind(id.as_str()),
            }
            .fetch_all(&self.pool)
            .await?;
            let (Some(first), Some(last)) = (window.first(), window.last()) else {
                break;
            };
            // Kept whatever their age: a job whose backup is in the catalog, and the newest
            // job of each target, kind and outcome (a newer one exists for every other).
            jobs += sqlx::query(
                "DELETE FROM jobs \
                  WHERE (created_at_ms, id) >= ($2, $3) AND (created_at_ms, id) <= ($4, $5) \
                    AND state IN ('succeeded', 'failed', 'cancelled') \
                    AND coalesce(finished_at_ms, created_at_ms) < $1 \
                    AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.job_id = jobs.id) \
                    AND EXISTS (SELECT 1 FROM jobs n \
                                 WHERE n.target = jobs.target AND n.kind = jobs.kind \
                                   AND n.state = jobs.state \
                                   AND (n.finished_at_ms > jobs.finished_at_ms \
                                        OR (n.finished_at_ms = jobs.finished_at_ms \
                                            AND n.id > jobs.id)))",
            )
            .bind(jobs_before_ms)
            .bind(first.0)
            .bind(first.1.as_str())
            .bind(last.0)
            .bind(last.1.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
            if i64::try_from(window.len()).unwrap_or(i64::MAX) < window_size {
                break;
            }
            cursor = Some(last.clone());
        }
        let schedule_runs = sqlx::query("DELETE FROM schedule_runs WHERE decided_at_ms < $1")
            .bind(jobs_before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let audit = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(audit_before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(HistoryPruned {
            jobs,
            schedule_runs,
            audit,
        })
    }
}
