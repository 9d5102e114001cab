//! Restore drills: one row per drill job, written with the job (queued) and when it ends, so
//! `drill list`, health, metrics and alerts read them after the job row is pruned.

use sqlx::{Any, Row, Transaction, any::AnyRow};

use super::{Catalog, CatalogError, Result, parse_enum, to_i64, to_u64};
use crate::model::{Drill, Finish, Job, JobKind, JobState, NewJob};

const DRILL_COLUMNS: &str = "d.job_id, d.target, d.backup_id, d.drill_target, d.database_name, \
     d.requested_by, d.created_at_ms, d.rto_ms, d.finished_at_ms, d.error, \
     CASE WHEN d.outcome = '' THEN COALESCE(j.state, 'queued') ELSE d.outcome END AS outcome";

/// Records a drill beside its job, in the job's transaction; nothing for other jobs.
pub(super) async fn insert_drill_in(
    tx: &mut Transaction<'static, Any>,
    job: &NewJob,
) -> Result<()> {
    let Some(restore) = job
        .restore
        .as_ref()
        .filter(|_| job.kind == JobKind::Restore)
    else {
        return Ok(());
    };
    let Some(of) = &restore.drill_of else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO drills (job_id, target, backup_id, drill_target, database_name, \
         requested_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&job.id)
    .bind(of.as_str())
    .bind(job.backup_id.as_ref().map_or("", |b| b.as_str()))
    .bind(job.target.as_str())
    .bind(&restore.database)
    .bind(&job.requested_by)
    .bind(job.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends a drill's row with its job (any outcome); nothing for a job that is not a drill.
pub(super) async fn finish_drill_in(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
    f: &Finish,
) -> Result<()> {
    sqlx::query(
        "UPDATE drills SET outcome = $1, finished_at_ms = $2, error = $3 \
         WHERE job_id = $4 AND outcome = ''",
    )
    .bind(f.state.as_str())
    .bind(f.finished_at_ms)
    .bind(&f.error)
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Catalog {
    /// Ends a drill job that passed and records its measured RTO, in one transaction. None
    /// (and nothing written) if the job had already ended.
    pub async fn finish_drill_job(
        &self,
        id: &str,
        finish: &Finish,
        rto_ms: u64,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if super::jobs::finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query("UPDATE drills SET rto_ms = $1 WHERE job_id = $2")
            .bind(to_i64("rto_ms", rto_ms)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Drills newest first, optionally of one drilled target.
    pub async fn list_drills(&self, target: Option<&str>, limit: u32) -> Result<Vec<Drill>> {
        self.list_drills_after(target, None, limit).await
    }

    /// Drills newest first (`created_at_ms`, then job id, both descending), of one drilled
    /// target or all, starting after drill `after` in that order (a page's last job id: keyset
    /// pagination). An `after` that is not in the catalog gives no rows; the caller checks it
    /// first.
    pub async fn list_drills_after(
        &self,
        target: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Drill>> {
        let list = format!(
            "SELECT {DRILL_COLUMNS} FROM drills d LEFT JOIN jobs j ON j.id = d.job_id {{filter}} \
             ORDER BY d.created_at_ms DESC, d.job_id DESC LIMIT $4"
        );
        let rows = super::keyset_page(
            &self.pool,
            &super::Keyset {
                list: &list,
                position: "SELECT created_at_ms, job_id FROM drills WHERE job_id = $1",
                after: "(d.created_at_ms, d.job_id) < ($2, $3)",
            },
            target.map(|_| "d.target = $1").into_iter().collect(),
            target,
            after,
            limit,
        )
        .await?;
        rows.iter().map(drill_from_row).collect()
    }

    /// The drill of job `job_id`, if there is one.
    pub async fn get_drill(&self, job_id: &str) -> Result<Option<Drill>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRILL_COLUMNS} FROM drills d LEFT JOIN jobs j ON j.id = d.job_id \
             WHERE d.job_id = $1"
        )))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(drill_from_row).transpose()
    }

    /// Per drilled target: its newest finished drill and its newest drill that succeeded.
    pub(super) async fn drill_facts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (Option<Drill>, Option<Drill>)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRILL_COLUMNS}, rn_any, rn_ok FROM (SELECT *, \
             ROW_NUMBER() OVER (PARTITION BY target ORDER BY finished_at_ms DESC, job_id DESC) \
             AS rn_any, \
             ROW_NUMBER() OVER (PARTITION BY target, outcome = 'succeeded' \
             ORDER BY finished_at_ms DESC, job_id DESC) AS rn_ok \
             FROM drills WHERE outcome IN ('succeeded', 'failed')) d \
             LEFT JOIN jobs j ON j.id = d.job_id \
             WHERE d.rn_any = 1 OR (d.rn_ok = 1 AND d.outcome = 'succeeded')"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::BTreeMap<String, (Option<Drill>, Option<Drill>)> =
            std::collections::BTreeMap::new();
        for row in &rows {
            let d = drill_from_row(row)?;
            let entry = out.entry(d.target.to_string()).or_default();
            let rn_any: i64 = row.try_get("rn_any")?;
            if d.outcome == JobState::Succeeded {
                entry.1 = Some(d.clone());
            }
            if rn_any == 1 {
                entry.0 = Some(d);
            }
        }
        Ok(out)
    }
}

fn drill_from_row(row: &AnyRow) -> Result<Drill> {
    let outcome: String = row.try_get("outcome")?;
    let target = |col: &str| -> Result<lifeboat_common::names::TargetName> {
        let t: String = row.try_get(col)?;
        t.parse()
            .map_err(|e| CatalogError::Corrupt(format!("drills.{col}: {e}")))
    };
    Ok(Drill {
        job_id: row.try_get("job_id")?,
        target: target("target")?,
        backup_id: row.try_get("backup_id")?,
        drill_target: target("drill_target")?,
        database: row.try_get("database_name")?,
        outcome: parse_enum("drills.outcome", &outcome, JobState::parse)?,
        rto_ms: row
            .try_get::<Option<i64>, _>("rto_ms")?
            .map(|v| to_u64("drills.rto_ms", v))
            .transpose()?,
        requested_by: row.try_get("requested_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        error: row.try_get("error")?,
    })
}
