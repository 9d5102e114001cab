//! Agents and the targets they declare.

use lifeboat_common::names::TargetName;
use sqlx::{Row, any::AnyRow};

use super::{Catalog, CatalogError, Result, parse_enum};
use crate::model::{
    AgentRecord, CheckSummary, Engine, JobState, Severity, TargetDecl, TargetRecord, TargetSummary,
};

/// A target an agent declared that another agent already owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConflict {
    pub target: TargetName,
    pub owner: String,
}

impl Catalog {
    /// Inserts or updates an agent (on `Hello`).
    pub async fn upsert_agent(&self, agent: &AgentRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO agents (name, environment, version, last_seen_ms, clock_skew_ms, \
             max_concurrent_jobs) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, \
             version = excluded.version, last_seen_ms = excluded.last_seen_ms, \
             clock_skew_ms = excluded.clock_skew_ms, \
             max_concurrent_jobs = excluded.max_concurrent_jobs",
        )
        .bind(&agent.name)
        .bind(&agent.environment)
        .bind(&agent.version)
        .bind(agent.last_seen_ms)
        .bind(agent.clock_skew_ms)
        .bind(i64::from(agent.max_concurrent_jobs))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat.
    pub async fn touch_agent(
        &self,
        name: &str,
        last_seen_ms: i64,
        clock_skew_ms: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE agents SET last_seen_ms = $1, clock_skew_ms = $2 WHERE name = $3")
            .bind(last_seen_ms)
            .bind(clock_skew_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(
            "SELECT name, environment, version, last_seen_ms, clock_skew_ms, \
             max_concurrent_jobs FROM agents ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let max: i64 = row.try_get("max_concurrent_jobs")?;
                Ok(AgentRecord {
                    name: row.try_get("name")?,
                    environment: row.try_get("environment")?,
                    version: row.try_get("version")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                    clock_skew_ms: row.try_get("clock_skew_ms")?,
                    max_concurrent_jobs: u32::try_from(max).map_err(|_| {
                        CatalogError::Corrupt(format!("agents.max_concurrent_jobs {max}"))
                    })?,
                })
            })
            .collect()
    }

    /// Registers or updates the targets an agent declares. A target another agent owns is
    /// left alone and returned as a conflict; the others are written (M6: one squatted name
    /// must not stop an agent's other targets from being backed up).
    pub async fn register_targets(
        &self,
        agent: &str,
        environment: &str,
        targets: &[TargetDecl],
    ) -> Result<Vec<TargetConflict>> {
        let mut tx = self.begin_write().await?;
        let mut conflicts = Vec::new();
        for t in targets {
            let full = TargetName::new(environment, &t.name)
                .map_err(|e| CatalogError::OutOfRange(e.to_string()))?;
            // Insert, or update only if this agent owns it; no row changed means another
            // agent owns it (checked in the same statement, so two agents racing for a new
            // target cannot both win).
            let done = sqlx::query(
                "INSERT INTO targets (full_name, environment, name, agent, engine, provider, \
                 repository, database_name, copy_to, encryption) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (full_name) DO UPDATE SET engine = excluded.engine, \
                 provider = excluded.provider, repository = excluded.repository, \
                 database_name = excluded.database_name, copy_to = excluded.copy_to, \
                 encryption = excluded.encryption \
                 WHERE targets.agent = excluded.agent",
            )
            .bind(full.as_str())
            .bind(environment)
            .bind(&t.name)
            .bind(agent)
            .bind(t.engine.as_str())
            .bind(&t.provider)
            .bind(&t.repository)
            .bind(&t.database)
            .bind(t.copy_to.join("\n"))
            .bind(encryption_text(t.encryption.as_ref()))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let owner: String =
                    sqlx::query_scalar("SELECT agent FROM targets WHERE full_name = $1")
                        .bind(full.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                conflicts.push(TargetConflict {
                    target: full,
                    owner,
                });
            }
        }
        tx.commit().await?;
        Ok(conflicts)
    }

    /// Hands target `full_name` from `from` to agent `to`, as `to` declares it. False if it
    /// is no longer owned by `from` (someone else moved it meanwhile).
    pub async fn move_target(
        &self,
        full_name: &str,
        from: &str,
        to: &str,
        decl: &TargetDecl,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE targets SET agent = $1, engine = $2, provider = $3, repository = $4, \
             database_name = $5, copy_to = $6, encryption = $7 WHERE full_name = $8 AND agent = $9",
        )
        .bind(to)
        .bind(decl.engine.as_str())
        .bind(&decl.provider)
        .bind(&decl.repository)
        .bind(&decl.database)
        .bind(decl.copy_to.join("\n"))
        .bind(encryption_text(decl.encryption.as_ref()))
        .bind(full_name)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_target(&self, full_name: &str) -> Result<Option<TargetRecord>> {
        let row = sqlx::query(
            "SELECT environment, name, agent, engine, provider, repository, database_name, \
             copy_to, encryption FROM targets WHERE full_name = $1",
        )
        .bind(full_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(target_from_row).transpose()
    }

    /// Every target with its most recent backup and its latest finished check.
    pub async fn list_targets(&self) -> Result<Vec<TargetSummary>> {
        let rows = sqlx::query(
            "SELECT t.environment, t.name, t.agent, t.engine, t.provider, t.repository, \
             t.database_name, t.copy_to, t.encryption, \
             (SELECT b.backup_id FROM backups b WHERE b.target = t.full_name \
              ORDER BY b.finished_at_ms DESC, b.backup_id DESC LIMIT 1) AS last_backup_id, \
             (SELECT MAX(b.finished_at_ms) FROM backups b WHERE b.target = t.full_name) \
              AS last_backup_ms, \
             c.id AS check_id, c.state AS check_state, c.finished_at_ms AS check_at, \
             c.error AS check_error, c.report AS check_report \
             FROM targets t LEFT JOIN jobs c ON c.id = \
             (SELECT j.id FROM jobs j WHERE j.target = t.full_name AND j.kind = 'check' \
              AND j.backup_id = '' AND j.state IN ('succeeded', 'failed') \
              ORDER BY j.finished_at_ms DESC, j.id DESC LIMIT 1) \
             ORDER BY t.full_name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: Option<String> = row.try_get("last_backup_id")?;
                let at: Option<i64> = row.try_get("last_backup_ms")?;
                Ok(TargetSummary {
                    target: target_from_row(row)?,
                    last_backup: id.zip(at),
                    last_check: check_summary(row)?,
                })
            })
            .collect()
    }
}

/// The latest check's verdict: its worst finding, or the job's own error when it failed
/// without one.
fn check_summary(row: &AnyRow) -> Result<Option<CheckSummary>> {
    let Some(job_id) = row.try_get::<Option<String>, _>("check_id")? else {
        return Ok(None);
    };
    let state: String = row.try_get("check_state")?;
    let error: String = row.try_get("check_error")?;
    let report = super::jobs::report_from_json(&row.try_get::<String, _>("check_report")?)?;
    // Notes (info) do not make a verdict worse than ok.
    let (mut severity, mut summary) = match report.worst() {
        Some(f) if f.severity >= Severity::Warning => (f.severity, f.message.clone()),
        Some(_) | None => (Severity::Ok, String::new()),
    };
    if state == JobState::Failed.as_str() && severity < Severity::Error {
        severity = Severity::Error;
        summary = error;
    }
    Ok(Some(CheckSummary {
        job_id,
        finished_at_ms: row.try_get::<Option<i64>, _>("check_at")?.unwrap_or(0),
        severity,
        summary,
    }))
}

fn target_from_row(row: &AnyRow) -> Result<TargetRecord> {
    let environment: String = row.try_get("environment")?;
    let name: String = row.try_get("name")?;
    let engine: String = row.try_get("engine")?;
    Ok(TargetRecord {
        name: TargetName::new(&environment, &name)
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        agent: row.try_get("agent")?,
        engine: parse_enum("targets.engine", &engine, Engine::parse)?,
        provider: row.try_get("provider")?,
        repository: row.try_get("repository")?,
        database: row.try_get("database_name")?,
        copy_to: row
            .try_get::<String, _>("copy_to")?
            .split('\n')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        encryption: match row.try_get::<String, _>("encryption")?.as_str() {
            "" => None,
            text => Some(
                serde_json::from_str(text)
                    .map_err(|e| CatalogError::Corrupt(format!("targets.encryption: {e}")))?,
            ),
        },
    })
}

/// A target's encryption as the catalog stores it: JSON, '' when not encrypted.
fn encryption_text(e: Option<&crate::model::TargetEncryption>) -> String {
    e.and_then(|e| serde_json::to_string(e).ok())
        .unwrap_or_default()
}
