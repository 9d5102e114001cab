//! Complete backups. A row is only ever written together with the success of its job
//! (`Catalog::finish_backup_job`).

use sqlx::{Any, Row, Transaction, any::AnyRow};

use super::{Catalog, CatalogError, Result, parse_enum, to_i64, to_u64};
use lifeboat_proto::domain::{Encryption, Globals};

use crate::model::{Backup, Engine, RowCount, VerifyStatus};

macro_rules! backup_columns {
    () => {
        "backup_id, target, environment, agent, repository, engine, provider, database_name, \
         server_version, system_identifier, dump_tool, dump_tool_version, format, compression, \
         compression_level, raw_size, stored_size, raw_sha256, stored_sha256, started_at_ms, \
         finished_at_ms, row_counts, data_key, manifest_key, verify_status, verified_at_ms, \
         verify_detail, job_id, wal_start, globals, encryption"
    };
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RowCountJson {
    schema: String,
    table: String,
    rows: i64,
    /// The table's size when the backup was taken; absent for backups recorded without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

impl Catalog {
    pub async fn get_backup(&self, backup_id: &str) -> Result<Option<Backup>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            backup_columns!(),
            " FROM backups WHERE backup_id = $1"
        ))
        .bind(backup_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(backup_from_row).transpose()
    }

    /// Backups newest first, optionally of one target.
    pub async fn list_backups(&self, target: Option<&str>, limit: u32) -> Result<Vec<Backup>> {
        self.list_backups_after(target, None, limit).await
    }

    /// Backups newest first (`finished_at_ms`, then id, both descending), optionally of one
    /// target, starting after backup `after` in that order (a page's last id: keyset
    /// pagination, stable while backups are added). An `after` that is not in the catalog
    /// gives no rows; the caller checks it first.
    pub async fn list_backups_after(
        &self,
        target: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Backup>> {
        // The cursor's position is read first, so that the list's query is a plain range over
        // the index (`(target,) finished_at_ms, backup_id`) the planner can see.
        let rows = super::keyset_page(
            &self.pool,
            &super::Keyset {
                list: concat!(
                    "SELECT ",
                    backup_columns!(),
                    " FROM backups {filter} ORDER BY finished_at_ms DESC, backup_id DESC LIMIT $4"
                ),
                position: "SELECT finished_at_ms, backup_id FROM backups WHERE backup_id = $1",
                after: "(finished_at_ms, backup_id) < ($2, $3)",
            },
            target.map(|_| "target = $1").into_iter().collect(),
            target,
            after,
            limit,
        )
        .await?;
        rows.iter().map(backup_from_row).collect()
    }

    /// The most recent backup of every target that has one.
    pub async fn latest_backups(&self) -> Result<Vec<Backup>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            backup_columns!(),
            " FROM backups b WHERE b.backup_id = (SELECT b2.backup_id FROM backups b2 \
             WHERE b2.target = b.target ORDER BY b2.finished_at_ms DESC, b2.backup_id DESC \
             LIMIT 1) ORDER BY b.target"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backup_from_row).collect()
    }
}

pub(super) async fn insert_backup(tx: &mut Transaction<'static, Any>, b: &Backup) -> Result<()> {
    let row_counts = serde_json::to_string(
        &b.row_counts
            .iter()
            .map(|r| RowCountJson {
                schema: r.schema.clone(),
                table: r.table.clone(),
                rows: r.rows,
                bytes: r.bytes,
            })
            .collect::<Vec<_>>(),
    )
    .map_err(|e| CatalogError::OutOfRange(format!("row counts: {e}")))?;
    sqlx::query(concat!(
        "INSERT INTO backups (",
        backup_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, \
         $27, $28, $29, $30, $31)"
    ))
    .bind(b.backup_id.as_str())
    .bind(b.target.as_str())
    .bind(b.environment())
    .bind(&b.agent)
    .bind(&b.repository)
    .bind(b.engine.as_str())
    .bind(&b.provider)
    .bind(&b.database)
    .bind(&b.server_version)
    .bind(&b.system_identifier)
    .bind(&b.dump_tool)
    .bind(&b.dump_tool_version)
    .bind(&b.format)
    .bind(&b.compression)
    .bind(b.compression_level)
    .bind(to_i64("raw size", b.raw_size)?)
    .bind(to_i64("stored size", b.stored_size)?)
    .bind(&b.raw_sha256)
    .bind(&b.stored_sha256)
    .bind(b.started_at_ms)
    .bind(b.finished_at_ms)
    .bind(row_counts)
    .bind(&b.data_key)
    .bind(&b.manifest_key)
    .bind(b.verify_status.as_str())
    .bind(b.verified_at_ms)
    .bind(&b.verify_detail)
    .bind(&b.job_id)
    .bind(&b.wal_start)
    .bind(globals_to_json(&b.globals)?)
    .bind(encryption_to_json(b.encryption.as_ref())?)
    .execute(&mut **tx)
    .await?;
    // When the coordinator recorded it: its job's end (the job is written first, in the same
    // transaction), on the coordinator's clock.
    sqlx::query(
        "UPDATE backups SET recorded_at_ms = COALESCE(\
         (SELECT j.finished_at_ms FROM jobs j WHERE j.id = backups.job_id), finished_at_ms) \
         WHERE backup_id = $1",
    )
    .bind(b.backup_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn backup_from_row(row: &AnyRow) -> Result<Backup> {
    let engine: String = row.try_get("engine")?;
    let verify: String = row.try_get("verify_status")?;
    let row_counts: String = row.try_get("row_counts")?;
    let row_counts: Vec<RowCountJson> = serde_json::from_str(&row_counts)
        .map_err(|e| CatalogError::Corrupt(format!("backups.row_counts: {e}")))?;
    Ok(Backup {
        backup_id: super::id_column(row, "backups.backup_id")?,
        target: super::target_column(row, "backups.target")?,
        agent: row.try_get("agent")?,
        repository: row.try_get("repository")?,
        engine: parse_enum("backups.engine", &engine, Engine::parse)?,
        provider: row.try_get("provider")?,
        database: row.try_get("database_name")?,
        server_version: row.try_get("server_version")?,
        system_identifier: row.try_get("system_identifier")?,
        dump_tool: row.try_get("dump_tool")?,
        dump_tool_version: row.try_get("dump_tool_version")?,
        format: row.try_get("format")?,
        compression: row.try_get("compression")?,
        compression_level: row.try_get("compression_level")?,
        raw_size: to_u64("backups.raw_size", row.try_get("raw_size")?)?,
        stored_size: to_u64("backups.stored_size", row.try_get("stored_size")?)?,
        raw_sha256: row.try_get("raw_sha256")?,
        stored_sha256: row.try_get("stored_sha256")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        row_counts: row_counts
            .into_iter()
            .map(|r| RowCount {
                bytes: r.bytes,
                schema: r.schema,
                table: r.table,
                rows: r.rows,
            })
            .collect(),
        data_key: row.try_get("data_key")?,
        manifest_key: row.try_get("manifest_key")?,
        verify_status: parse_enum("backups.verify_status", &verify, VerifyStatus::parse)?,
        verified_at_ms: row.try_get("verified_at_ms")?,
        verify_detail: row.try_get("verify_detail")?,
        job_id: row.try_get("job_id")?,
        wal_start: row.try_get("wal_start")?,
        globals: globals_from_json(&row.try_get::<String, _>("globals")?)?,
        encryption: encryption_from_json(row.try_get::<Option<String>, _>("encryption")?)?,
    })
}

/// A backup's encryption as the catalog stores it (JSON; NULL: stored in plaintext).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct EncryptionJson {
    pub key_object: String,
    pub recipients: Vec<String>,
    pub key_ids: Vec<String>,
}

pub(super) fn encryption_to_json(e: Option<&Encryption>) -> Result<Option<String>> {
    e.map(|e| {
        serde_json::to_string(&EncryptionJson {
            key_object: e.key_object.clone(),
            recipients: e.recipients.clone(),
            key_ids: e.key_ids.clone(),
        })
        .map_err(|x| CatalogError::OutOfRange(format!("encryption: {x}")))
    })
    .transpose()
}

pub(super) fn encryption_from_json(text: Option<String>) -> Result<Option<Encryption>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let e: EncryptionJson = serde_json::from_str(&text)
        .map_err(|x| CatalogError::Corrupt(format!("backups.encryption: {x}")))?;
    let dir = e
        .key_object
        .rsplit_once('/')
        .map_or("", |(d, _)| d)
        .to_owned();
    Encryption::from_wire(
        Some(lifeboat_proto::v1::BackupEncryption {
            key_object: e.key_object,
            recipients: e.recipients,
            key_ids: e.key_ids,
        }),
        &dir,
    )
    .map_err(|x| CatalogError::Corrupt(format!("backups.encryption: {x}")))
}

/// A backup's globals as the catalog stores them: the wire form as JSON, empty when absent.
#[derive(serde::Serialize, serde::Deserialize)]
struct GlobalsJson {
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    raw_size: u64,
    #[serde(default)]
    raw_sha256: String,
    #[serde(default)]
    stored_size: u64,
    #[serde(default)]
    stored_sha256: String,
    #[serde(default)]
    roles: u32,
    #[serde(default)]
    memberships: u32,
    #[serde(default)]
    with_passwords: bool,
}

fn globals_to_json(g: &Globals) -> Result<String> {
    let Some(w) = g.to_wire() else {
        return Ok(String::new());
    };
    serde_json::to_string(&GlobalsJson {
        status: w.status,
        reason: w.reason,
        key: w.key,
        raw_size: w.raw_size,
        raw_sha256: w.raw_sha256,
        stored_size: w.stored_size,
        stored_sha256: w.stored_sha256,
        roles: w.roles,
        memberships: w.memberships,
        with_passwords: w.with_passwords,
    })
    .map_err(|e| CatalogError::OutOfRange(format!("globals: {e}")))
}

fn globals_from_json(text: &str) -> Result<Globals> {
    if text.is_empty() {
        return Ok(Globals::Absent);
    }
    let g: GlobalsJson = serde_json::from_str(text)
        .map_err(|e| CatalogError::Corrupt(format!("backups.globals: {e}")))?;
    let dir = g.key.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
    Globals::from_wire(
        Some(lifeboat_proto::v1::BackupGlobals {
            status: g.status,
            reason: g.reason,
            key: g.key,
            raw_size: g.raw_size,
            raw_sha256: g.raw_sha256,
            stored_size: g.stored_size,
            stored_sha256: g.stored_sha256,
            roles: g.roles,
            memberships: g.memberships,
            with_passwords: g.with_passwords,
        }),
        &dir,
    )
    .map_err(|e| CatalogError::Corrupt(format!("backups.globals: {e}")))
}
