//! Applying a catalog rebuild: the catalog is read and written in one transaction that holds
//! the write lock from its start (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the backups table
//! locked against writers), so a backup job that ends meanwhile waits for it and the plan is
//! made on what is really there. A dry run rolls the transaction back.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Row, Transaction};

use super::{Catalog, CatalogError, Result, backups::insert_backup, parse_enum, to_i64, to_u64};
use crate::{
    model::VerifyStatus,
    rebuild::{CatalogRow, CatalogView, Change, Listed, Outcome, OutcomeKind, Trust, plan},
};

impl Catalog {
    /// Plans a rebuild from `listed` against the catalog and, unless `dry_run`, writes it.
    /// Rows are added (and marked rebuilt) and their verify status changed, pins found in
    /// markers recorded again; nothing is deleted and no pin is removed. `trust.now_ms` is
    /// the coordinator's time.
    pub async fn rebuild(
        &self,
        listed: &[Listed],
        listing_started_ms: i64,
        trust: &Trust,
        by: &str,
        dry_run: bool,
    ) -> Result<Vec<Outcome>> {
        let now_ms = trust.now_ms;
        let mut tx = match self.backend {
            super::Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            super::Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                sqlx::query("LOCK TABLE backups IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let view = read_view(&mut tx).await?;
        let outcomes = plan(listed, &view, listing_started_ms, trust);
        if dry_run {
            tx.rollback().await?;
            return Ok(outcomes);
        }
        for o in &outcomes {
            match &o.change {
                Change::None => {}
                Change::Insert(b) => {
                    // The coordinator did not see this backup happen: it counts as recorded
                    // when the manifest says, but never later than now (N26).
                    let recorded_ms = b.finished_at_ms.min(now_ms);
                    let job_id = lifeboat_common::ids::new_id(
                        time::OffsetDateTime::from_unix_timestamp_nanos(
                            i128::from(recorded_ms) * 1_000_000,
                        )
                        .unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
                    );
                    // The job that produced it is not known: a succeeded backup job with the
                    // manifest's times stands for it (retention counts time from it).
                    sqlx::query(
                        "INSERT INTO jobs (id, kind, state, target, agent, backup_id, \
                         requested_by, created_at_ms, dispatched_at_ms, started_at_ms, \
                         finished_at_ms, progress_raw_bytes, progress_stored_bytes, detail) \
                         VALUES ($1, 'backup', 'succeeded', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(&job_id)
                    .bind(b.target.as_str())
                    .bind(&b.agent)
                    .bind(b.backup_id.as_str())
                    .bind(by)
                    .bind(b.started_at_ms.min(recorded_ms))
                    .bind(b.started_at_ms.min(recorded_ms))
                    .bind(b.started_at_ms.min(recorded_ms))
                    .bind(recorded_ms)
                    .bind(to_i64("raw size", b.raw_size)?)
                    .bind(to_i64("stored size", b.stored_size)?)
                    .bind(format!(
                        "recorded by catalog rebuild from repository {}",
                        b.repository
                    ))
                    .execute(&mut *tx)
                    .await?;
                    let mut row = (**b).clone();
                    row.job_id = job_id;
                    if row.verify_status != VerifyStatus::Unverified {
                        row.verified_at_ms = Some(now_ms);
                    }
                    insert_backup(&mut tx, &row).await?;
                    sqlx::query(
                        "INSERT INTO backup_rebuilt (backup_id, rebuilt_by, listed_by, \
                         rebuilt_at_ms) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(row.backup_id.as_str())
                    .bind(by)
                    .bind(&o.listed_by)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::SetStatus { status, detail } => {
                    sqlx::query(
                        "UPDATE backups SET verify_status = $1, verified_at_ms = $2, \
                         verify_detail = $3 WHERE backup_id = $4",
                    )
                    .bind(status.as_str())
                    .bind(now_ms)
                    .bind(detail)
                    .bind(&o.backup_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if matches!(
                o.kind,
                OutcomeKind::Added | OutcomeKind::Updated | OutcomeKind::Unchanged
            ) {
                // The same backup in other repositories: its copies (a copy the catalog
                // knows keeps its own state).
                for c in &o.copies {
                    sqlx::query(
                        "INSERT INTO backup_copies (backup_id, repository, state, job_id, \
                         created_at_ms, stored_at_ms, verify_status, verified_at_ms, \
                         verify_detail) VALUES ($1, $2, 'stored', '', $3, $4, $5, $6, $7) \
                         ON CONFLICT (backup_id, repository) DO NOTHING",
                    )
                    .bind(&o.backup_id)
                    .bind(&c.repository)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(c.verify_status.as_str())
                    .bind((c.verify_status != VerifyStatus::Unverified).then_some(now_ms))
                    .bind(&c.detail)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if let Some(pin) = &o.restore_pin {
                sqlx::query(
                    "INSERT INTO backup_pins (backup_id, pinned_by, pinned_at_ms, \
                     reason) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&o.backup_id)
                .bind(&pin.pinned_by)
                .bind(pin.pinned_at_ms)
                .bind(&pin.reason)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

async fn read_view(tx: &mut Transaction<'static, Any>) -> Result<CatalogView> {
    let rows = sqlx::query(
        "SELECT b.backup_id, b.target, b.agent, b.repository, b.raw_size, b.stored_size, \
         b.raw_sha256, b.stored_sha256, b.finished_at_ms, b.verify_status, \
         j.finished_at_ms AS recorded_at_ms \
         FROM backups b LEFT JOIN jobs j ON j.id = b.job_id",
    )
    .fetch_all(&mut **tx)
    .await?;
    let backups = rows
        .iter()
        .map(|r| {
            let verify: String = r.try_get("verify_status")?;
            Ok(CatalogRow {
                backup_id: r.try_get("backup_id")?,
                target: super::target_column(r, "backups.target")?,
                agent: r.try_get("agent")?,
                repository: r.try_get("repository")?,
                raw_size: to_u64("backups.raw_size", r.try_get("raw_size")?)?,
                stored_size: to_u64("backups.stored_size", r.try_get("stored_size")?)?,
                raw_sha256: r.try_get("raw_sha256")?,
                stored_sha256: r.try_get("stored_sha256")?,
                finished_at_ms: r.try_get("finished_at_ms")?,
                verify_status: parse_enum("backups.verify_status", &verify, VerifyStatus::parse)?,
                recorded_at_ms: r.try_get("recorded_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let targets: Vec<String> = sqlx::query_scalar("SELECT full_name FROM targets")
        .fetch_all(&mut **tx)
        .await?;
    let active: Vec<String> = sqlx::query_scalar(
        "SELECT backup_id FROM jobs WHERE kind = 'backup' AND state IN ('queued', 'running')",
    )
    .fetch_all(&mut **tx)
    .await?;
    let pinned: Vec<String> = sqlx::query_scalar("SELECT backup_id FROM backup_pins")
        .fetch_all(&mut **tx)
        .await?;
    let agents = sqlx::query("SELECT name, environment FROM agents")
        .fetch_all(&mut **tx)
        .await?;
    let agent_environments = agents
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("environment")?)))
        .collect::<Result<HashMap<String, String>>>()?;
    Ok(CatalogView {
        backups,
        targets: targets
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|e| CatalogError::Corrupt(format!("targets.full_name: {e}")))
            })
            .collect::<Result<HashSet<_>>>()?,
        active_backups: active.into_iter().collect::<HashSet<_>>(),
        pinned: pinned.into_iter().collect::<HashSet<_>>(),
        agent_environments,
    })
}
