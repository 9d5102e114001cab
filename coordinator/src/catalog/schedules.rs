//! Schedules, the scheduler's cursors and the runs it recorded.

use sqlx::{Row, any::AnyRow};

use super::{Catalog, Result, parse_enum, to_i64, to_u64};
use crate::{
    catalog::jobs::insert_job_in,
    model::{Job, NewJob},
    schedule::{
        RunOutcome, ScheduleKind, ScheduleRun, ScheduleState, StoredSchedule, active_reason,
    },
};

/// What `record_schedule_tick` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// The run was recorded (and its jobs created, if it started any).
    Recorded(Box<ScheduleRun>, Vec<Job>),
    /// The cursor had moved: another pass (or coordinator) handled this occurrence.
    AlreadyHandled,
}

impl Catalog {
    /// Sets a target's own schedule of one kind. The scheduler counts occurrences from
    /// `now_ms` on, so a new or changed schedule never fires for times already past.
    pub async fn upsert_schedule(&self, s: &StoredSchedule, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO schedules (target, kind, cron, timezone, jitter_secs, cover_secs, \
             updated_by, updated_at_ms, drill_into) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (target, kind) DO UPDATE SET cron = excluded.cron, \
             timezone = excluded.timezone, jitter_secs = excluded.jitter_secs, \
             cover_secs = excluded.cover_secs, updated_by = excluded.updated_by, \
             updated_at_ms = excluded.updated_at_ms, drill_into = excluded.drill_into",
        )
        .bind(&s.target)
        .bind(s.kind.as_str())
        .bind(&s.cron)
        .bind(&s.timezone)
        .bind(to_i64("jitter", s.jitter_secs)?)
        .bind(to_i64("cover", s.cover_secs)?)
        .bind(&s.updated_by)
        .bind(s.updated_at_ms)
        .bind(&s.drill_into)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO schedule_state (target, kind, cursor_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (target, kind) DO UPDATE SET cursor_ms = \
             CASE WHEN schedule_state.cursor_ms > $3 THEN schedule_state.cursor_ms ELSE $3 END",
        )
        .bind(&s.target)
        .bind(s.kind.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        let rows = sqlx::query(
            "SELECT target, cron, timezone, jitter_secs, kind, cover_secs, updated_by, \
             updated_at_ms, drill_into FROM schedules ORDER BY target, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Removes a target's own schedule of one kind and the scheduler's memory of it. False if
    /// it had none.
    pub async fn delete_schedule(&self, target: &str, kind: ScheduleKind) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE target = $1 AND kind = $2")
            .bind(target)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM schedule_state WHERE target = $1 AND kind = $2")
            .bind(target)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows = sqlx::query(
            "SELECT target, kind, cursor_ms, paused, paused_by, paused_at_ms \
             FROM schedule_state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(ScheduleState {
                    target: r.try_get("target")?,
                    kind: parse_enum("schedule_state.kind", &kind, ScheduleKind::parse)?,
                    cursor_ms: r.try_get("cursor_ms")?,
                    paused: super::flag(r, "paused")?,
                    paused_by: r.try_get("paused_by")?,
                    paused_at_ms: r.try_get("paused_at_ms")?,
                })
            })
            .collect()
    }

    /// Starts counting a schedule's occurrences from `cursor_ms`, unless already counting.
    pub async fn init_schedule_state(
        &self,
        target: &str,
        kind: ScheduleKind,
        cursor_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_state (target, kind, cursor_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(target)
        .bind(kind.as_str())
        .bind(cursor_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pauses or resumes a target's schedule. Resuming counts occurrences from `now_ms` on:
    /// what fell due while paused is not caught up.
    pub async fn set_schedule_paused(
        &self,
        target: &str,
        kind: ScheduleKind,
        paused: bool,
        by: &str,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_state (target, cursor_ms, paused, paused_by, paused_at_ms, \
             kind) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (target, kind) DO UPDATE SET paused = $3, paused_by = $4, \
             paused_at_ms = $5, cursor_ms = CASE WHEN $3 <> 0 THEN schedule_state.cursor_ms \
             ELSE CASE WHEN schedule_state.cursor_ms > $2 THEN schedule_state.cursor_ms ELSE $2 END END",
        )
        .bind(target)
        .bind(now_ms)
        .bind(i64::from(paused))
        .bind(if paused { by } else { "" })
        .bind(paused.then_some(now_ms))
        .bind(kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records one scheduler decision, creates its jobs (if it starts any) and moves the
    /// schedule's cursor to the occurrence, in one transaction, compare-and-set on the cursor.
    /// Jobs refused because the schedule's earlier jobs are still active (a backup of the
    /// target; the verify jobs of an earlier verify run) are recorded as a skipped run instead.
    pub async fn record_schedule_tick(
        &self,
        expected_cursor_ms: i64,
        run: &ScheduleRun,
        jobs: &[NewJob],
    ) -> Result<TickOutcome> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE schedule_state SET cursor_ms = $1 WHERE target = $2 AND kind = $3 \
             AND cursor_ms = $4 AND paused = 0",
        )
        .bind(run.scheduled_at_ms)
        .bind(&run.target)
        .bind(run.kind.as_str())
        .bind(expected_cursor_ms)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(TickOutcome::AlreadyHandled);
        }
        let mut run = run.clone();
        let mut created = Vec::new();
        if let Some(first) = jobs.first() {
            // The UPDATE above holds SQLite's write lock: nothing can slip in between this
            // check and the insert.
            let active: Option<String> = match run.kind {
                ScheduleKind::Backup => {
                    sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE target = $1 AND kind = 'backup' \
                         AND state IN ('queued', 'running')",
                    )
                    .bind(first.target.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                }
                ScheduleKind::Verify => {
                    sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE target = $1 AND kind = 'verify' \
                         AND requested_by = $2 AND backup_id != '' \
                         AND state IN ('queued', 'running') LIMIT 1",
                    )
                    .bind(first.target.as_str())
                    .bind(&first.requested_by)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                // Skip while a drill of the target is active, wherever it restores.
                ScheduleKind::Drill => {
                    sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE drill_of = $1 AND kind = 'restore' \
                         AND state IN ('queued', 'running') LIMIT 1",
                    )
                    .bind(&run.target)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            if let Some(active) = active {
                run.outcome = RunOutcome::Skipped;
                run.job_id = None;
                run.reason = active_reason(&run.target, run.kind, &active);
            } else {
                for job in jobs {
                    insert_job_in(&mut tx, job).await?;
                    created.push(job.id.clone());
                }
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO schedule_runs (target, kind, scheduled_at_ms, decided_at_ms, \
             outcome, job_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&run.target)
        .bind(run.kind.as_str())
        .bind(run.scheduled_at_ms)
        .bind(run.decided_at_ms)
        .bind(run.outcome.as_str())
        .bind(run.job_id.as_deref())
        .bind(&run.reason)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            // This occurrence was decided before (the cursor was set back by hand?): keep the
            // first decision.
            tx.rollback().await?;
            return Ok(TickOutcome::AlreadyHandled);
        }
        tx.commit().await?;
        let mut out = Vec::with_capacity(created.len());
        for id in created {
            out.push(self.inserted_job(&id).await?);
        }
        Ok(TickOutcome::Recorded(Box::new(run), out))
    }

    /// The latest recorded run of every schedule (target and kind) that has one.
    pub async fn last_schedule_runs(&self) -> Result<Vec<ScheduleRun>> {
        let rows = sqlx::query(
            "SELECT target, kind, scheduled_at_ms, decided_at_ms, outcome, job_id, reason \
             FROM schedule_runs r WHERE r.id = (SELECT MAX(r2.id) FROM schedule_runs r2 \
             WHERE r2.target = r.target AND r2.kind = r.kind) ORDER BY target, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Recorded runs of one target's schedules (of one kind, or all), newest first.
    pub async fn schedule_runs(
        &self,
        target: &str,
        kind: Option<ScheduleKind>,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>> {
        Ok(self
            .schedule_runs_after(target, kind, None, limit)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// A target's runs newest first, with their ids, only those older than run `after` (a
    /// page's last id: keyset pagination; the id need not exist any more).
    pub async fn schedule_runs_after(
        &self,
        target: &str,
        kind: Option<ScheduleKind>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, ScheduleRun)>> {
        let rows = sqlx::query(
            "SELECT id, target, kind, scheduled_at_ms, decided_at_ms, outcome, job_id, reason \
             FROM schedule_runs WHERE target = $1 AND ($2 IS NULL OR kind = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(target)
        .bind(kind.map(ScheduleKind::as_str))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, run_from_row(row)?)))
            .collect()
    }
}

fn schedule_from_row(row: &AnyRow) -> Result<StoredSchedule> {
    let kind: String = row.try_get("kind")?;
    Ok(StoredSchedule {
        target: row.try_get("target")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        jitter_secs: to_u64("schedules.jitter_secs", row.try_get("jitter_secs")?)?,
        kind: parse_enum("schedules.kind", &kind, ScheduleKind::parse)?,
        cover_secs: to_u64("schedules.cover_secs", row.try_get("cover_secs")?)?,
        drill_into: row.try_get("drill_into")?,
        updated_by: row.try_get("updated_by")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<ScheduleRun> {
    let outcome: String = row.try_get("outcome")?;
    let kind: String = row.try_get("kind")?;
    Ok(ScheduleRun {
        target: row.try_get("target")?,
        kind: parse_enum("schedule_runs.kind", &kind, ScheduleKind::parse)?,
        scheduled_at_ms: row.try_get("scheduled_at_ms")?,
        decided_at_ms: row.try_get("decided_at_ms")?,
        outcome: parse_enum("schedule_runs.outcome", &outcome, RunOutcome::parse)?,
        job_id: row.try_get("job_id")?,
        reason: row.try_get("reason")?,
    })
}
