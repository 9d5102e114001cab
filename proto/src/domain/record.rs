//! One complete backup as every program sees it: what the agent reports when a backup is
//! written, what the catalog stores, what a restore, verify, delete or pin job is sent, what the
//! CLI shows. Mirrors the manifest.

use lifeboat_common::{
    ids::BackupId,
    names::{NameError, TargetName, validate_simple},
};

use super::{Engine, MAX_KEY, MAX_ROW_COUNTS, MAX_SHORT_TEXT, VerifyStatus, bounded_text};
use crate::v1 as pb;

/// A field of a backup record that is not what it must be; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

impl From<NameError> for RecordError {
    fn from(e: NameError) -> Self {
        RecordError(e.to_string())
    }
}

/// Rows of one table when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCount {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    /// Its size on the server when the backup was taken, when known.
    pub bytes: Option<u64>,
}

/// A backup's pin: kept whatever retention says, until unpinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Operator who pinned it.
    pub pinned_by: String,
    pub pinned_at_ms: i64,
    pub reason: String,
}

impl TryFrom<pb::BackupPin> for Pin {
    type Error = RecordError;

    fn try_from(p: pb::BackupPin) -> Result<Self, RecordError> {
        Ok(Pin {
            pinned_by: short_text("pinned_by", p.pinned_by)?,
            pinned_at_ms: p.pinned_at_ms,
            reason: short_text("pin reason", p.reason)?,
        })
    }
}

impl From<&Pin> for pb::BackupPin {
    fn from(p: &Pin) -> Self {
        pb::BackupPin {
            pinned_by: p.pinned_by.clone(),
            pinned_at_ms: p.pinned_at_ms,
            reason: p.reason.clone(),
        }
    }
}

impl From<&RowCount> for pb::RowCount {
    fn from(r: &RowCount) -> Self {
        pb::RowCount {
            schema: r.schema.clone(),
            table: r.table.clone(),
            rows: r.rows,
            bytes: r.bytes,
        }
    }
}

/// One complete backup. Its id and target are valid by their types; a record that arrives
/// over the wire is checked by `TryFrom<pb::BackupRecord>`: simple agent/repository/provider
/// names, lowercase SHA-256 digests, relative object keys, non-zero sizes that fit an `i64`, a
/// start time and `finished_at_ms >= started_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub backup_id: BackupId,
    pub target: TargetName,
    pub agent: String,
    pub repository: String,
    pub engine: Engine,
    pub provider: String,
    pub database: String,
    pub server_version: String,
    pub system_identifier: String,
    pub dump_tool: String,
    pub dump_tool_version: String,
    pub format: String,
    pub compression: String,
    pub compression_level: i32,
    pub raw_size: u64,
    pub stored_size: u64,
    pub raw_sha256: String,
    pub stored_sha256: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub row_counts: Vec<RowCount>,
    /// Object key of the data file inside the repository.
    pub data_key: String,
    pub manifest_key: String,
    pub verify_status: VerifyStatus,
    pub verified_at_ms: Option<i64>,
    pub verify_detail: String,
    /// The coordinator's job that produced it; empty where no catalog is involved (a
    /// repository listing).
    pub job_id: String,
    /// Physical base backups: the WAL segment file their replay starts in; empty for logical
    /// backups (and base backups recorded before it was kept).
    pub wal_start: String,
    /// The cluster's globals captured beside a logical backup, or why not.
    pub globals: super::Globals,
    /// Client-side encryption; `None`: stored in plaintext.
    pub encryption: Option<super::Encryption>,
}

impl BackupRecord {
    /// The environment the backup belongs to (its target's).
    pub fn environment(&self) -> &str {
        self.target.env()
    }
}

fn invalid(msg: String) -> RecordError {
    RecordError(msg)
}

/// Refuses control characters and overlong text in a short field.
pub fn short_text(what: &str, value: String) -> Result<String, RecordError> {
    if value.len() > MAX_SHORT_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_SHORT_TEXT} are accepted",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(value)
}

/// A SHA-256 digest as 64 lowercase hex digits.
pub fn sha256(what: &str, value: String) -> Result<String, RecordError> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(invalid(format!(
            "{what} must be 64 lowercase hex digits, got {:?}",
            value.chars().take(80).collect::<String>()
        )));
    }
    Ok(value)
}

/// A relative object key / path inside a repository: no `..`, no absolute path, no empty or
/// `.` segments, no backslashes or control characters.
pub fn object_key(what: &str, value: String) -> Result<String, RecordError> {
    let bad = |why: &str| {
        invalid(format!(
            "{what} {:?} {why}",
            value.chars().take(80).collect::<String>()
        ))
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > MAX_KEY {
        return Err(bad("is too long"));
    }
    if value.starts_with('/') {
        return Err(bad("must be relative to the repository"));
    }
    if value.contains('\\') || value.chars().any(char::is_control) {
        return Err(bad("contains a backslash or a control character"));
    }
    if value
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("must not contain empty, '.' or '..' segments"));
    }
    Ok(value)
}

/// The directory part of an object key.
pub(crate) fn dir_of(key: &str) -> Option<&str> {
    key.rsplit_once('/').map(|(d, _)| d)
}

/// A size or counter that must fit the catalog's signed 64-bit integers.
pub fn non_negative(what: &str, v: u64) -> Result<u64, RecordError> {
    if i64::try_from(v).is_err() {
        return Err(invalid(format!("{what} {v} is out of range")));
    }
    Ok(v)
}

/// Schema and table names may hold any character but NUL (quoted identifiers).
fn identifier(what: &str, value: String) -> Result<String, RecordError> {
    if value.len() > MAX_SHORT_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_SHORT_TEXT} are accepted",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(invalid(format!("{what} contains a NUL character")));
    }
    Ok(value)
}

/// Per-table row counts from the wire: bounded, named, never negative.
pub fn row_counts(rows: Vec<pb::RowCount>) -> Result<Vec<RowCount>, RecordError> {
    if rows.len() > MAX_ROW_COUNTS {
        return Err(invalid(format!(
            "row_counts has {} entries; at most {MAX_ROW_COUNTS} are accepted",
            rows.len()
        )));
    }
    rows.into_iter()
        .map(|r| {
            if r.rows < 0 {
                return Err(invalid(format!(
                    "row count of {}.{} is negative",
                    r.schema, r.table
                )));
            }
            Ok(RowCount {
                schema: identifier("row count schema", r.schema)?,
                table: identifier("row count table", r.table)?,
                rows: r.rows,
                bytes: r.bytes,
            })
        })
        .collect()
}

impl TryFrom<pb::BackupRecord> for BackupRecord {
    type Error = RecordError;

    fn try_from(b: pb::BackupRecord) -> Result<Self, RecordError> {
        let backup_id = BackupId::parse(&b.backup_id)?;
        let target = TargetName::parse(&b.target)?;
        validate_simple("environment", &b.environment)?;
        if b.environment != target.env() {
            return Err(invalid(format!(
                "backup environment {:?} does not match its target {}",
                b.environment, target
            )));
        }
        validate_simple("agent name", &b.agent)?;
        validate_simple("repository name", &b.repository)?;
        validate_simple("provider", &b.provider)?;
        if b.raw_size == 0 || b.stored_size == 0 {
            return Err(invalid(format!(
                "backup {} has a zero size (raw {}, stored {}); an empty backup is not a backup",
                b.backup_id, b.raw_size, b.stored_size
            )));
        }
        if b.started_at_ms <= 0 {
            return Err(invalid(format!(
                "backup {} has invalid times (started {}, finished {})",
                b.backup_id, b.started_at_ms, b.finished_at_ms
            )));
        }
        let engine = match pb::Engine::try_from(b.engine) {
            Ok(pb::Engine::Unspecified) => return Err(invalid("engine must be set".into())),
            _ => Engine::from_wire(b.engine)
                .ok_or_else(|| invalid(format!("unknown engine value {}", b.engine)))?,
        };
        let verify_status = match pb::VerifyStatus::try_from(b.verify_status) {
            Ok(pb::VerifyStatus::Unspecified) => VerifyStatus::Unverified,
            _ => VerifyStatus::from_wire(b.verify_status).ok_or_else(|| {
                invalid(format!("unknown verify status value {}", b.verify_status))
            })?,
        };
        let globals =
            super::Globals::from_wire(b.globals, dir_of(&b.manifest_key).unwrap_or_default())?;
        let encryption = super::Encryption::from_wire(
            b.encryption,
            dir_of(&b.manifest_key).unwrap_or_default(),
        )?;
        Ok(BackupRecord {
            backup_id,
            target,
            agent: b.agent,
            repository: b.repository,
            engine,
            provider: b.provider,
            database: short_text("database", b.database)?,
            server_version: short_text("server_version", b.server_version)?,
            system_identifier: short_text("system_identifier", b.system_identifier)?,
            dump_tool: short_text("dump_tool", b.dump_tool)?,
            dump_tool_version: short_text("dump_tool_version", b.dump_tool_version)?,
            format: short_text("format", b.format)?,
            compression: short_text("compression", b.compression)?,
            compression_level: b.compression_level,
            raw_size: non_negative("raw_size", b.raw_size)?,
            stored_size: non_negative("stored_size", b.stored_size)?,
            raw_sha256: sha256("raw_sha256", b.raw_sha256)?,
            stored_sha256: sha256("stored_sha256", b.stored_sha256)?,
            // The agent's wall clock may step back during a long dump: keep finished >= started.
            finished_at_ms: b.finished_at_ms.max(b.started_at_ms),
            started_at_ms: b.started_at_ms,
            row_counts: row_counts(b.row_counts)?,
            data_key: object_key("data_key", b.data_key)?,
            manifest_key: object_key("manifest_key", b.manifest_key)?,
            verify_status,
            verified_at_ms: Some(b.verified_at_ms).filter(|t| *t > 0),
            verify_detail: bounded_text(b.verify_detail),
            job_id: short_text("job id", b.job_id)?,
            globals,
            encryption,
            wal_start: match b.wal_start {
                w if w.is_empty() || super::is_segment_name(&w) => w,
                w => {
                    return Err(invalid(format!(
                        "wal_start {w:?} is not a WAL segment file name"
                    )));
                }
            },
        })
    }
}

impl From<&BackupRecord> for pb::BackupRecord {
    fn from(b: &BackupRecord) -> Self {
        pb::BackupRecord {
            backup_id: b.backup_id.to_string(),
            target: b.target.to_string(),
            environment: b.environment().to_owned(),
            agent: b.agent.clone(),
            repository: b.repository.clone(),
            engine: pb::Engine::from(b.engine).into(),
            provider: b.provider.clone(),
            database: b.database.clone(),
            server_version: b.server_version.clone(),
            system_identifier: b.system_identifier.clone(),
            dump_tool: b.dump_tool.clone(),
            dump_tool_version: b.dump_tool_version.clone(),
            format: b.format.clone(),
            compression: b.compression.clone(),
            compression_level: b.compression_level,
            raw_size: b.raw_size,
            stored_size: b.stored_size,
            raw_sha256: b.raw_sha256.clone(),
            stored_sha256: b.stored_sha256.clone(),
            started_at_ms: b.started_at_ms,
            finished_at_ms: b.finished_at_ms,
            row_counts: b.row_counts.iter().map(Into::into).collect(),
            data_key: b.data_key.clone(),
            manifest_key: b.manifest_key.clone(),
            verify_status: pb::VerifyStatus::from(b.verify_status).into(),
            verified_at_ms: b.verified_at_ms.unwrap_or(0),
            verify_detail: b.verify_detail.clone(),
            job_id: b.job_id.clone(),
            wal_start: b.wal_start.clone(),
            globals: b.globals.to_wire(),
            encryption: b.encryption.as_ref().map(super::Encryption::to_wire),
            // The coordinator's Control handlers fill these in; they know pins and deletions.
            pin: None,
            deleting: false,
            copies: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> pb::BackupRecord {
        pb::BackupRecord {
            backup_id: "20261127T233000Z-7f3a9c".into(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: pb::Engine::Postgres as i32,
            provider: "self-hosted".into(),
            database: "orders".into(),
            raw_size: 10,
            stored_size: 5,
            raw_sha256: "a".repeat(64),
            stored_sha256: "b".repeat(64),
            started_at_ms: 2_000,
            finished_at_ms: 1_000,
            data_key: "prod/orders/20261127T233000Z-7f3a9c/data.dump.zst".into(),
            manifest_key: "prod/orders/20261127T233000Z-7f3a9c/manifest.json".into(),
            row_counts: vec![pb::RowCount {
                bytes: None,
                schema: "public".into(),
                table: "t".into(),
                rows: 3,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_record_round_trips_and_keeps_time_order() {
        let r = BackupRecord::try_from(wire()).expect("valid");
        assert_eq!(r.environment(), "prod");
        assert_eq!(r.target.name(), "orders");
        assert_eq!(r.finished_at_ms, 2_000, "finished is never before started");
        assert_eq!(r.verify_status, VerifyStatus::Unverified);
        let back = pb::BackupRecord::from(&r);
        assert_eq!(BackupRecord::try_from(back).expect("again"), r);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut pb::BackupRecord);
        let cases: Vec<(Spoil, &str)> = vec![
            (|b| b.backup_id = "../x".into(), "backup id"),
            (|b| b.target = "orders".into(), "ENV/NAME"),
            (|b| b.environment = "dev".into(), "does not match"),
            (|b| b.engine = 0, "engine must be set"),
            (|b| b.engine = 7, "unknown engine"),
            (|b| b.stored_sha256 = "B".repeat(64), "stored_sha256"),
            (|b| b.raw_size = 0, "zero size"),
            (|b| b.raw_size = u64::MAX, "out of range"),
            (|b| b.data_key = "../etc/passwd".into(), "data_key"),
            (|b| b.manifest_key = "/abs".into(), "relative"),
            (|b| b.started_at_ms = 0, "invalid times"),
            (|b| b.row_counts[0].rows = -1, "negative"),
            (|b| b.verify_status = 9, "verify status"),
            (|b| b.dump_tool = "x\ny".into(), "control characters"),
        ];
        for (spoil, says) in cases {
            let mut b = wire();
            spoil(&mut b);
            let e = BackupRecord::try_from(b).expect_err(says).to_string();
            assert!(e.contains(says), "{e:?} should name {says:?}");
        }
    }
}
