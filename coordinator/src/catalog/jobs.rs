//! Jobs and their state transitions. Every transition is a compare-and-set on the state, so
//! two racing writers (a result and a lease expiry, a replayed result) cannot both win.

use lifeboat_common::{ids::BackupId, names::TargetName};
use lifeboat_proto::domain::{GlobalsRestore, PartialRestore, Recovery};
use sqlx::{Any, Row, Transaction, any::AnyRow};

use super::{Catalog, CatalogError, Result, backups::insert_backup, parse_enum, to_i64, to_u64};
use crate::model::{
    Backup, ExportParams, ExportPath, ExportWritten, Finding, Finish, Job, JobKind, JobState,
    NewJob, OwnerPolicy, Progress, Report, RestoreOptions, RestoreParams, Severity, VerifyOutcome,
};

/// The columns `job_from_row` reads, as a literal so queries stay `&'static str`.
macro_rules! job_columns {
    () => {
        "id, kind, state, target, agent, backup_id, requested_by, created_at_ms, \
         dispatched_at_ms, started_at_ms, finished_at_ms, error, progress_raw_bytes, \
         progress_stored_bytes, progress_phase, detail, database_name, clean, owners, \
         include_provider_schemas, report, data_dir, recovery_target, recovery_action, \
         start_port, export_path, export_raw_bytes, export_raw_sha256, restore_tables, \
         restore_schemas, into_schema, drill_of, globals, allow_superuser, repository, \
         key_rotation, decrypt, restore_jobs"
    };
}

/// What `insert_job` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertJob {
    Inserted(Job),
    /// A backup of the same target is already queued or running: this one.
    ActiveBackupExists(Job),
}

impl Catalog {
    /// Creates a queued job. At most one unfinished backup per target (a unique index).
    pub async fn insert_job(&self, job: &NewJob) -> Result<InsertJob> {
        let mut tx = self.begin_write().await?;
        let inserted = insert_job_query(job).execute(&mut *tx).await;
        match inserted {
            Ok(_) => {
                super::drills::insert_drill_in(&mut tx, job).await?;
                tx.commit().await?;
            }
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && job.kind == JobKind::Backup =>
            {
                tx.rollback().await?;
                if let Some(active) = self.active_backup_job(job.target.as_str()).await? {
                    return Ok(InsertJob::ActiveBackupExists(active));
                }
                return Err(CatalogError::Query(sqlx::Error::Database(e)));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(InsertJob::Inserted(self.inserted_job(&job.id).await?))
    }

    /// A job this catalog has just inserted (and committed).
    pub(super) async fn inserted_job(&self, id: &str) -> Result<Job> {
        self.get_job(id)
            .await?
            .ok_or_else(|| CatalogError::Corrupt(format!("job {id} vanished after insert")))
    }

    async fn active_backup_job(&self, target: &str) -> Result<Option<Job>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE target = $1 AND kind = 'backup' \
             AND state IN ('queued', 'running')"
        ))
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs newest first, optionally of one target and/or unfinished only.
    pub async fn list_jobs(
        &self,
        target: Option<&str>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Job>> {
        self.list_jobs_after(target, active_only, None, limit).await
    }

    /// Jobs newest first (`created_at_ms`, then id, both descending), starting after job
    /// `after` in that order (a page's last id: keyset pagination). An `after` that is not in
    /// the catalog gives no rows; the caller checks it first.
    pub async fn list_jobs_after(
        &self,
        target: Option<&str>,
        active_only: bool,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>> {
        // As for backups: the cursor's position first, then a plain range the planner sees.
        let mut filters = Vec::new();
        if target.is_some() {
            filters.push("target = $1");
        }
        if active_only {
            filters.push("state IN ('queued', 'running')");
        }
        let rows = super::keyset_page(
            &self.pool,
            &super::Keyset {
                list: concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs {filter} ORDER BY created_at_ms DESC, id DESC LIMIT $4"
                ),
                position: "SELECT created_at_ms, id FROM jobs WHERE id = $1",
                after: "(created_at_ms, id) < ($2, $3)",
            },
            filters,
            target,
            after,
            limit,
        )
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Every queued or running job, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE state IN ('queued', 'running') \
             ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Number of running jobs per kind.
    pub async fn running_counts(&self) -> Result<Vec<(JobKind, i64)>> {
        let rows = sqlx::query(
            // The IN term lets SQLite use the partial index of unfinished jobs.
            "SELECT kind, COUNT(*) AS n FROM jobs \
             WHERE state IN ('queued', 'running') AND state = 'running' GROUP BY kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok((
                    parse_enum("jobs.kind", &kind, JobKind::parse)?,
                    row.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Marks a queued job as handed to its agent. False if it was not queued and undispatched.
    pub async fn mark_dispatched(&self, id: &str, at_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET dispatched_at_ms = $1 \
             WHERE id = $2 AND state = 'queued' AND dispatched_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that `by` asked to cancel job `id` through a coordinator standing by; the
    /// active one carries it out ([`Catalog::cancel_requests`]). False if the job had ended.
    pub async fn request_cancel(&self, id: &str, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET cancel_requested_by = $1 \
             WHERE id = $2 AND state IN ('queued', 'running')",
        )
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The unfinished jobs someone asked to cancel through a standby: `(job id, who asked)`.
    pub async fn cancel_requests(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, cancel_requested_by FROM jobs \
             WHERE state IN ('queued', 'running') AND cancel_requested_by <> '' \
             ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("cancel_requested_by")?)))
            .collect()
    }

    /// Puts a dispatched but not accepted job back in the queue.
    pub async fn undo_dispatch(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET dispatched_at_ms = NULL WHERE id = $1 AND state = 'queued'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `queued → running`. None if the job was not queued.
    pub async fn mark_running(&self, id: &str, at_ms: i64) -> Result<Option<Job>> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'running', started_at_ms = COALESCE(started_at_ms, $1), \
             dispatched_at_ms = COALESCE(dispatched_at_ms, $1) \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.updated(id, done.rows_affected()).await
    }

    /// Stores the progress of a running job. None if it is not running.
    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<Option<Job>> {
        let done = sqlx::query(
            "UPDATE jobs SET progress_raw_bytes = $1, progress_stored_bytes = $2, \
             progress_phase = $3 WHERE id = $4 AND state = 'running'",
        )
        .bind(to_i64("raw bytes", progress.raw_bytes)?)
        .bind(to_i64("stored bytes", progress.stored_bytes)?)
        .bind(&progress.phase)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.updated(id, done.rows_affected()).await
    }

    /// Ends an unfinished job. None if it had already ended (the caller ignores the update).
    pub async fn finish_job(&self, id: &str, finish: &Finish) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        let n = finish_in(&mut tx, id, finish).await?;
        tx.commit().await?;
        self.updated(id, n).await
    }

    /// Ends a backup job successfully and records its backup, in one transaction. None (and
    /// nothing written) if the job had already ended: a replayed result never adds a row.
    pub async fn finish_backup_job(
        &self,
        id: &str,
        finish: &Finish,
        backup: &Backup,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        insert_backup(&mut tx, backup).await?;
        tx.commit().await?;
        self.updated(id, 1).await
    }

    /// Ends a verify job and records the verification on its backup, in one transaction.
    /// None (and nothing written) if the job had already ended.
    pub async fn finish_verify_job(
        &self,
        id: &str,
        finish: &Finish,
        backup_id: &str,
        outcome: &VerifyOutcome,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE backups SET verify_status = $1, verified_at_ms = $2, verify_detail = $3 \
             WHERE backup_id = $4",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.verified_at_ms)
        .bind(&outcome.detail)
        .bind(backup_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.updated(id, 1).await
    }

    /// Ends an export job successfully and records what it wrote, in one transaction. None
    /// (and nothing written) if the job had already ended.
    pub async fn finish_export_job(
        &self,
        id: &str,
        finish: &Finish,
        path: &ExportPath,
        written: &ExportWritten,
    ) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        if finish_in(&mut tx, id, finish).await? == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE jobs SET export_path = $1, export_raw_bytes = $2, export_raw_sha256 = $3 \
             WHERE id = $4",
        )
        .bind(path.as_str())
        .bind(to_i64("export_raw_bytes", written.raw_bytes)?)
        .bind(&written.raw_sha256)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.updated(id, 1).await
    }

    async fn updated(&self, id: &str, rows: u64) -> Result<Option<Job>> {
        if rows == 0 {
            return Ok(None);
        }
        self.get_job(id).await
    }
}

fn insert_job_query(
    job: &NewJob,
) -> sqlx::query::Query<'_, Any, <Any as sqlx::Database>::Arguments> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
         created_at_ms, database_name, clean, owners, include_provider_schemas, data_dir, \
         recovery_target, recovery_action, start_port, export_path, restore_tables, \
         restore_schemas, into_schema, drill_of, globals, allow_superuser, repository, \
         key_rotation, decrypt, restore_jobs) \
         VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
         $25, $26)",
    )
    .bind(&job.id)
    .bind(job.kind.as_str())
    .bind(job.target.as_str())
    .bind(&job.agent)
    .bind(job.backup_id.as_ref().map_or("", BackupId::as_str))
    .bind(&job.requested_by)
    .bind(job.created_at_ms)
    .bind(job.restore.as_ref().map_or("", |r| r.database.as_str()))
    .bind(i64::from(job.restore.as_ref().is_some_and(|r| r.clean)))
    .bind(
        job.restore
            .as_ref()
            .map_or(OwnerPolicy::default(), |r| r.options.owners)
            .as_str(),
    )
    .bind(i64::from(
        job.restore
            .as_ref()
            .is_some_and(|r| r.options.include_provider_schemas),
    ))
    .bind(job.restore.as_ref().map_or("", |r| r.data_dir.as_str()))
    .bind(recovery_text(job).0)
    .bind(recovery_text(job).1)
    .bind(
        job.restore
            .as_ref()
            .and_then(|r| r.start_port)
            .map_or(0, i64::from),
    )
    .bind(job.export_path.as_ref().map_or("", ExportPath::as_str))
    .bind(partial_text(job).0)
    .bind(partial_text(job).1)
    .bind(partial_text(job).2)
    .bind(
        job.restore
            .as_ref()
            .and_then(|r| r.drill_of.as_ref())
            .map_or("", TargetName::as_str),
    )
    .bind(job.restore.as_ref().map_or("", |r| r.globals.as_str()))
    .bind(i64::from(job.restore.as_ref().is_some_and(|r| r.allow_superuser)))
    .bind(&job.repository)
    .bind(
        job.rotation
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default(),
    )
    .bind(i64::from(job.decrypt))
    .bind(job.restore.as_ref().map_or(0, |r| i64::from(r.jobs)))
}

/// A job's partial restore as the catalog stores it: tables and schemas one per line (empty:
/// a whole restore).
fn partial_text(job: &NewJob) -> (String, String, String) {
    let (tables, schemas, into) =
        PartialRestore::to_wire(job.restore.as_ref().and_then(|r| r.partial.as_ref()));
    (tables.join("\n"), schemas.join("\n"), into)
}

/// The partial restore stored by [`partial_text`].
fn partial_from_row(row: &AnyRow) -> Result<Option<PartialRestore>> {
    let lines = |col: &str| -> Result<Vec<String>> {
        let text: String = row.try_get(col)?;
        Ok(text
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    };
    PartialRestore::from_wire(
        &lines("restore_tables")?,
        &lines("restore_schemas")?,
        &row.try_get::<String, _>("into_schema")?,
    )
    .map_err(|e| CatalogError::Corrupt(format!("jobs.restore_tables: {}", e.0)))
}

/// A job's point-in-time recovery as the catalog stores it (empty: none).
fn recovery_text(job: &NewJob) -> (String, String) {
    Recovery::to_wire(job.restore.as_ref().and_then(|r| r.recovery.as_ref()))
}

/// Creates a queued job inside a transaction.
pub(super) async fn insert_job_in(tx: &mut Transaction<'static, Any>, job: &NewJob) -> Result<()> {
    insert_job_query(job).execute(&mut **tx).await?;
    super::drills::insert_drill_in(tx, job).await?;
    Ok(())
}

pub(super) async fn finish_in(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    f: &Finish,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE jobs SET state = $1, finished_at_ms = $2, error = $3, detail = $4, \
         database_name = COALESCE($5, database_name), report = $6 \
         WHERE id = $7 AND state IN ('queued', 'running')",
    )
    .bind(f.state.as_str())
    .bind(f.finished_at_ms)
    .bind(&f.error)
    .bind(&f.detail)
    .bind(f.database.as_deref())
    .bind(report_to_json(&f.report))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() > 0 {
        super::drills::finish_drill_in(tx, id, f).await?;
        if f.state != JobState::Succeeded {
            // A copy that did not finish is no copy.
            sqlx::query("DELETE FROM backup_copies WHERE job_id = $1 AND state = 'copying'")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(done.rows_affected())
}

/// A job's report as stored: JSON, or '' when there is none.
fn report_to_json(r: &Report) -> String {
    if r.is_empty() {
        return String::new();
    }
    let findings: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "check": f.check,
                "severity": f.severity.as_str(),
                "message": f.message,
            })
        })
        .collect();
    serde_json::json!({ "findings": findings, "plan": r.plan }).to_string()
}

pub(super) fn report_from_json(text: &str) -> Result<Report> {
    if text.is_empty() {
        return Ok(Report::default());
    }
    let bad = |what: &str| CatalogError::Corrupt(format!("jobs.report: {what}"));
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let text_of = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("{key} is not text")))
    };
    let mut report = Report::default();
    for f in v
        .get("findings")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("no findings list"))?
    {
        let severity = text_of(f, "severity")?;
        report.findings.push(Finding {
            check: text_of(f, "check")?,
            severity: parse_enum("jobs.report severity", &severity, Severity::parse)?,
            message: text_of(f, "message")?,
        });
    }
    for step in v
        .get("plan")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("no plan list"))?
    {
        report.plan.push(
            step.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad("a plan step is not text"))?,
        );
    }
    Ok(report)
}

fn job_from_row(row: &AnyRow) -> Result<Job> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let owners: String = row.try_get("owners")?;
    let report: String = row.try_get("report")?;
    let kind = parse_enum("jobs.kind", &kind, JobKind::parse)?;
    let backup_id: String = row.try_get("backup_id")?;
    let backup_id = match backup_id.as_str() {
        "" => None,
        id => Some(
            id.parse()
                .map_err(|e| CatalogError::Corrupt(format!("jobs.backup_id: {e}")))?,
        ),
    };
    // A check with a backup is a restore's dry run.
    let is_restore = kind == JobKind::Restore || (kind == JobKind::Check && backup_id.is_some());
    Ok(Job {
        id: row.try_get("id")?,
        kind,
        state: parse_enum("jobs.state", &state, JobState::parse)?,
        target: super::target_column(row, "jobs.target")?,
        agent: row.try_get("agent")?,
        backup_id,
        requested_by: row.try_get("requested_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        dispatched_at_ms: row.try_get("dispatched_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        error: row.try_get("error")?,
        progress: Progress {
            raw_bytes: to_u64(
                "jobs.progress_raw_bytes",
                row.try_get("progress_raw_bytes")?,
            )?,
            stored_bytes: to_u64(
                "jobs.progress_stored_bytes",
                row.try_get("progress_stored_bytes")?,
            )?,
            phase: row.try_get("progress_phase")?,
        },
        detail: row.try_get("detail")?,
        restore: is_restore.then_some(RestoreParams {
            database: row.try_get("database_name")?,
            clean: super::flag(row, "clean")?,
            options: RestoreOptions {
                owners: parse_enum("jobs.owners", &owners, OwnerPolicy::parse)?,
                include_provider_schemas: super::flag(row, "include_provider_schemas")?,
            },
            data_dir: row.try_get("data_dir")?,
            recovery: Recovery::from_wire(
                &row.try_get::<String, _>("recovery_target")?,
                &row.try_get::<String, _>("recovery_action")?,
            )
            .map_err(|e| CatalogError::Corrupt(format!("jobs.recovery_target: {}", e.0)))?,
            start_port: match row.try_get::<i64, _>("start_port")? {
                0 => None,
                p => Some(u16::try_from(p).map_err(|_| {
                    CatalogError::Corrupt(format!("jobs.start_port {p} is not a port"))
                })?),
            },
            partial: partial_from_row(row)?,
            drill_of: match row.try_get::<String, _>("drill_of")?.as_str() {
                "" => None,
                t => Some(
                    t.parse()
                        .map_err(|e| CatalogError::Corrupt(format!("jobs.drill_of {t:?}: {e}")))?,
                ),
            },
            globals: parse_enum(
                "jobs.globals",
                &row.try_get::<String, _>("globals")?,
                GlobalsRestore::parse,
            )?,
            allow_superuser: super::flag(row, "allow_superuser")?,
            jobs: {
                let n = row.try_get::<i64, _>("restore_jobs")?;
                u32::try_from(n).map_err(|_| {
                    CatalogError::Corrupt(format!("jobs.restore_jobs {n} is not a job count"))
                })?
            },
        }),
        export: export_from_row(kind, row)?,
        repository: row.try_get("repository")?,
        rotation: match row.try_get::<String, _>("key_rotation")?.as_str() {
            "" => None,
            text => Some(
                serde_json::from_str(text)
                    .map_err(|e| CatalogError::Corrupt(format!("jobs.key_rotation: {e}")))?,
            ),
        },
        decrypt: super::flag(row, "decrypt")?,
        report: report_from_json(&report)?,
    })
}

/// An export job's file and, once it succeeded, what it wrote; `None` for other kinds.
fn export_from_row(kind: JobKind, row: &AnyRow) -> Result<Option<ExportParams>> {
    if kind != JobKind::Export {
        return Ok(None);
    }
    let path = ExportPath::parse(row.try_get("export_path")?)
        .map_err(|e| CatalogError::Corrupt(format!("jobs.export_path: {}", e.0)))?;
    let raw_sha256: String = row.try_get("export_raw_sha256")?;
    let written = (!raw_sha256.is_empty())
        .then(|| {
            Ok::<_, CatalogError>(ExportWritten {
                raw_bytes: to_u64("jobs.export_raw_bytes", row.try_get("export_raw_bytes")?)?,
                raw_sha256,
            })
        })
        .transpose()?;
    Ok(Some(ExportParams { path, written }))
}
