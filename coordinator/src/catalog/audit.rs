//! The audit log of operator actions.

use sqlx::Row;

use super::{Catalog, Result, parse_enum};
use crate::audit::{AuditEntry, AuditFilter, AuditOutcome, AuditRecord};

impl Catalog {
    pub async fn insert_audit(&self, e: &AuditEntry) -> Result<i64> {
        let done = sqlx::query_scalar(
            "INSERT INTO audit_log (at_ms, actor, role, action, object, outcome, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.role)
        .bind(&e.action)
        .bind(&e.object)
        .bind(e.outcome.as_str())
        .bind(&e.reason)
        .fetch_one(&self.pool)
        .await?;
        Ok(done)
    }

    /// Whether audit record `id` exists.
    pub async fn audit_record_exists(&self, id: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Audit records newest first (time, then id), filtered; after `f.after_id` in that order
    /// when set (a page's last id: keyset pagination). An `after_id` that is not in the
    /// catalog gives no rows.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let position: Option<(i64, i64)> = match f.after_id {
            None => None,
            Some(id) => match sqlx::query_as("SELECT at_ms, id FROM audit_log WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            {
                Some(at) => Some(at),
                None => return Ok(Vec::new()),
            },
        };
        // Two constant texts: with the cursor, a plain range over (at_ms, id) the planner sees.
        let sql = if position.is_some() {
            "SELECT id, at_ms, actor, role, action, object, outcome, reason FROM audit_log \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR at_ms >= $3) AND ($4 IS NULL OR object LIKE $4 ESCAPE '\\') \
             AND (at_ms, id) < ($6, $7) \
             ORDER BY at_ms DESC, id DESC LIMIT $5"
        } else {
            "SELECT id, at_ms, actor, role, action, object, outcome, reason FROM audit_log \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR at_ms >= $3) AND ($4 IS NULL OR object LIKE $4 ESCAPE '\\') \
             ORDER BY at_ms DESC, id DESC LIMIT $5"
        };
        let (at, id) = position.unzip();
        let rows = sqlx::query(sql)
            .bind(f.actor.as_deref())
            .bind(f.action.as_deref())
            .bind(f.since_ms)
            .bind(f.object.as_deref().map(|o| {
                let escaped = o
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            }))
            .bind(i64::from(f.limit))
            .bind(at)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.try_get("outcome")?;
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    entry: AuditEntry {
                        at_ms: row.try_get("at_ms")?,
                        actor: row.try_get("actor")?,
                        role: row.try_get("role")?,
                        action: row.try_get("action")?,
                        object: row.try_get("object")?,
                        outcome: parse_enum("audit_log.outcome", &outcome, AuditOutcome::parse)?,
                        reason: row.try_get("reason")?,
                    },
                })
            })
            .collect()
    }
}
