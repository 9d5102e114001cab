//! A job as the agent runs it, read from the coordinator's `StartJob` once when it arrives:
//! its id is checked, the kind is the `oneof` itself (one `match` decides everything kind
//! specific: what the job locks, how its log span is labelled, which job function runs), and
//! each kind's required parts are present. The job functions take the kind's own spec.

use lifeboat_common::ids::{BackupId, JobId};
use lifeboat_proto as pb;

/// A job from the coordinator, checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub work: Work,
}

/// What a job does. The backup record a restore, verify, delete or pin needs is there.
#[derive(Debug, Clone)]
pub enum Work {
    Backup(BackupWork),
    Restore(pb::RestoreSpec),
    Verify(pb::VerifySpec),
    Delete(pb::DeleteSpec),
    /// List a repository's backups (a catalog rebuild).
    List {
        repository: String,
    },
    /// `targets check`, or a restore's dry run (`restore` set).
    Check(pb::CheckSpec),
    Pin(pb::PinSpec),
}

/// A backup to take: the id the coordinator minted, and the target by this agent's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupWork {
    pub backup_id: BackupId,
    pub target: String,
}

/// Why a `StartJob` could not be taken as a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedSpec {
    #[error("the job id is invalid")]
    BadId,
    #[error("job has no spec; upgrade lifeboat-agent to match the coordinator")]
    NoSpec,
    #[error("{0} job without a backup record")]
    NoBackup(&'static str),
    #[error("backup job with an invalid backup id")]
    BadBackupId,
}

impl TryFrom<pb::JobSpec> for Job {
    type Error = RefusedSpec;

    fn try_from(spec: pb::JobSpec) -> Result<Self, RefusedSpec> {
        use pb::job_spec::Spec;
        let id = JobId::parse(&spec.job_id).map_err(|_| RefusedSpec::BadId)?;
        let work = match spec.spec.ok_or(RefusedSpec::NoSpec)? {
            Spec::Backup(b) => Work::Backup(BackupWork {
                backup_id: BackupId::parse(&b.backup_id).map_err(|_| RefusedSpec::BadBackupId)?,
                target: b.target,
            }),
            Spec::Restore(r) if r.backup.is_some() => Work::Restore(r),
            Spec::Restore(_) => return Err(RefusedSpec::NoBackup("restore")),
            Spec::Verify(v) if v.backup.is_some() => Work::Verify(v),
            Spec::Verify(_) => return Err(RefusedSpec::NoBackup("verify")),
            Spec::Delete(d) if d.backup.is_some() => Work::Delete(d),
            Spec::Delete(_) => return Err(RefusedSpec::NoBackup("delete")),
            Spec::List(l) => Work::List {
                repository: l.repository,
            },
            Spec::Check(c) => Work::Check(c),
            Spec::Pin(p) if p.backup.is_some() => Work::Pin(p),
            Spec::Pin(_) => return Err(RefusedSpec::NoBackup("pin")),
        };
        Ok(Job { id, work })
    }
}

impl Work {
    /// The kind's word, as in logs and the coordinator's job kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Backup(_) => "backup",
            Work::Restore(_) => "restore",
            Work::Verify(_) => "verify",
            Work::Delete(_) => "delete",
            Work::List { .. } => "list",
            Work::Check(_) => "check",
            Work::Pin(_) => "pin",
        }
    }

    /// The target the job acts on (the agent's own name for it), if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Work::Backup(b) => Some(&b.target),
            Work::Restore(r) => Some(&r.target),
            Work::Check(c) => Some(&c.target),
            Work::Verify(_) | Work::Delete(_) | Work::List { .. } | Work::Pin(_) => None,
        }
    }

    /// The backup the job works on, if any.
    pub fn backup_id(&self) -> Option<&str> {
        let record = match self {
            Work::Backup(b) => return Some(b.backup_id.as_str()),
            Work::Restore(r) => r.backup.as_ref(),
            Work::Check(c) => c.restore.as_ref().and_then(|r| r.backup.as_ref()),
            Work::Verify(v) => v.backup.as_ref(),
            Work::Delete(d) => d.backup.as_ref(),
            Work::Pin(p) => p.backup.as_ref(),
            Work::List { .. } => None,
        };
        record.map(|b| b.backup_id.as_str())
    }

    /// The full target name (`ENV/NAME`) in the backup record, for jobs that have only that.
    pub fn record_target(&self) -> Option<&str> {
        let record = match self {
            Work::Verify(v) => v.backup.as_ref(),
            Work::Delete(d) => d.backup.as_ref(),
            Work::Pin(p) => p.backup.as_ref(),
            Work::Backup(_) | Work::Restore(_) | Work::Check(_) | Work::List { .. } => None,
        };
        record.map(|b| b.target.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(spec: Option<pb::job_spec::Spec>) -> pb::JobSpec {
        pb::JobSpec {
            job_id: "20261127T233000Z-7f3a9c".into(),
            kind: 0,
            spec,
        }
    }

    #[test]
    fn start_job_is_checked_once() {
        use pb::job_spec::Spec;
        let job = Job::try_from(spec(Some(Spec::Backup(pb::BackupSpec {
            backup_id: "20261127T233000Z-7f3a9d".into(),
            target: "orders".into(),
        }))))
        .expect("a backup");
        assert_eq!(job.work.kind(), "backup");
        assert_eq!(job.work.target(), Some("orders"));
        assert_eq!(job.work.backup_id(), Some("20261127T233000Z-7f3a9d"));
        assert_eq!(
            Job::try_from(spec(None)).expect_err("no spec"),
            RefusedSpec::NoSpec
        );
        assert_eq!(
            Job::try_from(spec(Some(Spec::Verify(pb::VerifySpec { backup: None }))))
                .expect_err("no record"),
            RefusedSpec::NoBackup("verify")
        );
        let mut bad = spec(Some(Spec::List(pb::ListSpec {
            repository: "local".into(),
        })));
        bad.job_id = "../x".into();
        assert_eq!(Job::try_from(bad).expect_err("bad id"), RefusedSpec::BadId);
        let e = Job::try_from(spec(Some(Spec::Backup(pb::BackupSpec {
            backup_id: "../../etc".into(),
            target: "orders".into(),
        }))))
        .expect_err("bad backup id");
        assert_eq!(e, RefusedSpec::BadBackupId);
    }
}
