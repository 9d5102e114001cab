//! What an agent's jobs produce, as the agent reports them; converted to the wire where the
//! result leaves the agent.

use super::{BackupRecord, Pin, RowCount, VerifyStatus};
use crate::v1 as pb;

/// A restore that finished: the database it made and what is in it, or the data directory
/// a physical backup was restored into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Empty when `data_dir` is set.
    pub database: String,
    /// Where a physical base backup was restored.
    pub data_dir: Option<super::DataDir>,
    /// Per-table row counts found in the restored database.
    pub row_counts: Vec<RowCount>,
    pub raw_bytes: u64,
}

/// A restore drill that passed: its restore, the checks that returned true, and the measured
/// time to a usable, checked database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drilled {
    pub restored: Restored,
    pub rto_ms: u64,
    pub checks: Vec<String>,
    /// False if the scratch database could not be dropped (a physical drill: its server
    /// stopped and its data directory removed).
    pub dropped: bool,
}

/// A verification's verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub status: VerifyStatus,
    pub detail: String,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
}

/// A copy that finished: every object of the backup is in `repository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub repository: String,
    pub objects: u32,
    pub stored_bytes: u64,
    /// The data object's stored SHA-256, as read and written.
    pub stored_sha256: String,
    /// It was all there already (a retried copy); nothing was written.
    pub already_there: bool,
}

/// One key object after a key rotation (as it would be, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedKey {
    pub backup_id: String,
    pub repository: String,
    pub recipients: Vec<String>,
    pub key_ids: Vec<String>,
    /// Rewritten (would be, on a dry run); false: it already had this set.
    pub changed: bool,
    /// Why it could not be rotated (it keeps its earlier recipients); empty: done.
    pub error: String,
}

impl RotatedKey {
    pub fn to_wire(&self) -> pb::RotatedKey {
        pb::RotatedKey {
            backup_id: self.backup_id.clone(),
            repository: self.repository.clone(),
            recipients: self.recipients.clone(),
            key_ids: self.key_ids.clone(),
            changed: self.changed,
            error: self.error.clone(),
        }
    }
}

/// A delete that finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// False if neither data nor manifest was there any more.
    pub existed: bool,
    pub deleted_bytes: u64,
}

/// One backup found in a repository: its manifest's record (with `verify_status` `missing` or
/// `corrupt` when the data object is absent or of another size) and its pin marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub backup: BackupRecord,
    pub pin: Option<Pin>,
}

/// What a finished job hands back, by kind; checks and pins hand back only their report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutput {
    Backup(Box<BackupRecord>),
    Restore(Restored),
    Verify(Verified),
    Delete(Deleted),
    List(Vec<Listed>),
    Export(super::Exported),
    Drill(Drilled),
    Copy(Copied),
    RotateKeys(Vec<RotatedKey>),
}

fn restore_to_pb(r: &Restored) -> pb::RestoreResult {
    pb::RestoreResult {
        database: r.database.clone(),
        row_counts: rows_to_pb(&r.row_counts),
        raw_bytes: r.raw_bytes,
        data_dir: r
            .data_dir
            .as_ref()
            .map(|d| d.as_str().to_owned())
            .unwrap_or_default(),
    }
}

fn rows_to_pb(rows: &[RowCount]) -> Vec<pb::RowCount> {
    rows.iter().map(Into::into).collect()
}

impl From<&JobOutput> for pb::job_result::Result {
    fn from(o: &JobOutput) -> Self {
        use pb::job_result::Result as R;
        match o {
            JobOutput::Backup(b) => R::Backup(b.as_ref().into()),
            JobOutput::Restore(r) => R::Restore(restore_to_pb(r)),
            JobOutput::Drill(d) => R::Drill(pb::DrillResult {
                restore: Some(restore_to_pb(&d.restored)),
                rto_ms: d.rto_ms,
                checks: d.checks.clone(),
                dropped: d.dropped,
            }),
            JobOutput::Verify(v) => R::Verify(pb::VerifyResult {
                status: pb::VerifyStatus::from(v.status).into(),
                detail: v.detail.clone(),
                stored_bytes: v.stored_bytes,
                raw_bytes: v.raw_bytes,
            }),
            JobOutput::Delete(d) => R::Delete(pb::DeleteResult {
                existed: d.existed,
                deleted_bytes: d.deleted_bytes,
            }),
            JobOutput::Export(e) => R::Export(pb::ExportResult {
                path: e.path.as_str().to_owned(),
                raw_bytes: e.raw_bytes,
                raw_sha256: e.raw_sha256.clone(),
                manifest_path: e.manifest_path.as_str().to_owned(),
            }),
            JobOutput::Copy(c) => R::Copy(pb::CopyResult {
                repository: c.repository.clone(),
                objects: c.objects,
                stored_bytes: c.stored_bytes,
                stored_sha256: c.stored_sha256.clone(),
                already_there: c.already_there,
            }),
            JobOutput::RotateKeys(keys) => R::RotateKeys(pb::RotateKeysResult {
                keys: keys.iter().map(RotatedKey::to_wire).collect(),
            }),
            JobOutput::List(listed) => R::List(pb::ListResult {
                backups: listed
                    .iter()
                    .map(|l| pb::BackupRecord {
                        pin: l.pin.as_ref().map(Into::into),
                        ..(&l.backup).into()
                    })
                    .collect(),
            }),
        }
    }
}
