//! A job as the agent runs it, read from the coordinator's `StartJob` once when it arrives:
//! its id is checked, the kind is the `oneof` itself (one `match` decides everything kind
//! specific: what the job locks, how its log span is labelled, which job function runs), each
//! kind's required parts are present and its backup record is a checked
//! [`BackupRecord`]. The job functions take these values, never the protobuf specs.

use lifeboat_common::ids::{BackupId, JobId};
use lifeboat_proto::{
    self as pb,
    domain::{
        BackupRecord, DataDir, ExportPath, GlobalsRestore, JobKind, OwnerPolicy, PartialRestore,
        Pin, RecordError, Recovery,
    },
};

/// A job from the coordinator, checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub work: Work,
}

/// What a job does.
#[derive(Debug, Clone)]
pub enum Work {
    Backup(BackupWork),
    Restore(RestoreWork),
    /// Re-read a backup's stored bytes and check them against its record; `decrypt`: an
    /// encrypted backup must be decrypted and decoded too (no stored-bytes-only verdict).
    Verify {
        backup: BackupRecord,
        decrypt: bool,
    },
    /// Read a physical target's WAL archive back and check its chains (`pitr verify`); the
    /// target by this agent's name.
    VerifyWal(String),
    /// Remove a backup from its repository (retention).
    Delete(BackupRecord),
    /// List a repository's backups (a catalog rebuild).
    List {
        repository: String,
    },
    /// `targets check TARGET`, or a restore's dry run.
    Check(CheckWork),
    /// Write (`pin` set) or remove a backup's pin marker.
    Pin {
        backup: BackupRecord,
        pin: Option<Pin>,
    },
    /// Write a backup's decompressed dump to a file on this host (`backup export`).
    Export(ExportWork),
    /// Copy a backup to another repository of this agent (off-site copies).
    Copy(CopyWork),
    /// Re-encrypt the key objects of a target's backups (`keys rotate`).
    RotateKeys(RotateKeysWork),
}

/// A key rotation: each backup's key object, in each repository holding it, re-encrypted to
/// (its recipients + `add` - `remove`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateKeysWork {
    /// The target by this agent's name.
    pub target: String,
    /// Each backup with every repository holding it.
    pub items: Vec<(BackupRecord, Vec<String>)>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub dry_run: bool,
}

/// A copy of `backup` (read from `backup.repository`) to repository `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyWork {
    pub backup: BackupRecord,
    pub to: String,
}

/// An export of `backup` to the file `path` (checked against `export_dirs` when it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportWork {
    pub backup: BackupRecord,
    pub path: ExportPath,
    /// Repositories holding a copy, tried in order when `backup.repository` lacks it.
    pub fallbacks: Vec<String>,
}

/// A backup to take: the id the coordinator minted, and the target by this agent's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupWork {
    pub backup_id: BackupId,
    pub target: String,
}

/// A restore of `backup` into this agent's target `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreWork {
    pub backup: BackupRecord,
    /// The target by this agent's name.
    pub target: String,
    /// The database to create (or replace with `clean`); `None`: a new name from the backup.
    pub database: Option<String>,
    /// Replace an existing, non-empty database.
    pub clean: bool,
    pub owners: OwnerPolicy,
    /// Restore the source provider's own schemas too.
    pub include_provider_schemas: bool,
    /// A physical base backup: the empty directory it is restored into (`--data-dir`).
    pub data_dir: Option<DataDir>,
    /// Point-in-time recovery of a physical backup: where WAL replay stops.
    pub recovery: Option<Recovery>,
    /// A data-directory restore: start the server on this port once the directory is ready
    /// and wait for recovery to reach its target.
    pub start_port: Option<u16>,
    /// A partial restore: only some tables, into a new database or a new schema.
    pub partial: Option<PartialRestore>,
    /// A restore drill: check, time and drop the restored database ([`crate::drill`]).
    pub drill: bool,
    /// The backup's globals: recreated first, alone, or not at all.
    pub globals: GlobalsRestore,
    /// Roles with SUPERUSER may be created from the globals.
    pub allow_superuser: bool,
    /// Repositories holding a copy, tried in order when `backup.repository` lacks it.
    pub fallbacks: Vec<String>,
    /// Loading connections (`--jobs`): pg_restore jobs, or MariaDB/MySQL clients; `None`: the
    /// target's `restore_jobs`.
    pub jobs: Option<u32>,
}

/// The most pg_restore jobs a restore takes (the coordinator checks the same bound).
pub const MAX_RESTORE_JOBS: u32 = 64;

/// A check: of a target on its own, or the dry run of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per job
pub enum CheckWork {
    Target(String),
    DryRun(RestoreWork),
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
    #[error("{0} job with an invalid backup record: {1}")]
    BadRecord(&'static str, RecordError),
    #[error("pin job with an invalid pin: {0}")]
    BadPin(RecordError),
    #[error("restore job with an unknown owner policy value {0}; upgrade lifeboat-agent")]
    BadOwners(i32),
    #[error("restore job with an invalid data directory: {0}")]
    BadDataDir(RecordError),
    #[error("restore job with an invalid recovery target: {0}")]
    BadRecovery(RecordError),
    #[error("restore job with an invalid partial restore: {0}")]
    BadPartial(RecordError),
    #[error("restore job with an invalid start port {0}")]
    BadStartPort(u32),
    #[error("restore job with {0} pg_restore jobs (at most 64)")]
    BadJobs(u32),
    #[error("export job with an invalid path: {0}")]
    BadExportPath(RecordError),
    #[error("restore job with invalid globals flags: {0}")]
    BadGlobals(RecordError),
    #[error("{0} job with an invalid repository name: {1}")]
    BadRepository(&'static str, String),
}

/// Repository names from the coordinator, checked.
fn repositories(what: &'static str, names: Vec<String>) -> Result<Vec<String>, RefusedSpec> {
    for n in &names {
        lifeboat_common::names::validate_simple("repository", n)
            .map_err(|e| RefusedSpec::BadRepository(what, e.to_string()))?;
    }
    Ok(names)
}

/// The backup record a job of kind `what` must carry, checked.
fn record(what: &'static str, b: Option<pb::BackupRecord>) -> Result<BackupRecord, RefusedSpec> {
    let b = b.ok_or(RefusedSpec::NoBackup(what))?;
    BackupRecord::try_from(b).map_err(|e| RefusedSpec::BadRecord(what, e))
}

impl TryFrom<pb::RestoreSpec> for RestoreWork {
    type Error = RefusedSpec;

    fn try_from(r: pb::RestoreSpec) -> Result<Self, RefusedSpec> {
        Ok(RestoreWork {
            backup: record("restore", r.backup)?,
            target: r.target,
            database: Some(r.database).filter(|d| !d.is_empty()),
            clean: r.clean,
            owners: OwnerPolicy::from_wire(r.owners).ok_or(RefusedSpec::BadOwners(r.owners))?,
            include_provider_schemas: r.include_provider_schemas,
            data_dir: Some(r.data_dir)
                .filter(|d| !d.is_empty())
                .map(DataDir::parse)
                .transpose()
                .map_err(RefusedSpec::BadDataDir)?,
            recovery: Recovery::from_wire(&r.recovery_target, &r.recovery_action)
                .map_err(RefusedSpec::BadRecovery)?,
            start_port: match r.start_port {
                0 => None,
                p => Some(
                    u16::try_from(p)
                        .ok()
                        .filter(|p| *p >= 1024)
                        .ok_or(RefusedSpec::BadStartPort(p))?,
                ),
            },
            partial: PartialRestore::from_wire(&r.tables, &r.schemas, &r.into_schema)
                .map_err(RefusedSpec::BadPartial)?,
            drill: r.drill,
            globals: GlobalsRestore::from_flags(r.with_globals, r.globals_only)
                .map_err(RefusedSpec::BadGlobals)?,
            allow_superuser: r.allow_superuser,
            fallbacks: repositories("restore", r.fallback_repositories)?,
            jobs: match r.jobs {
                0 => None,
                n if n <= MAX_RESTORE_JOBS => Some(n),
                n => return Err(RefusedSpec::BadJobs(n)),
            },
        })
    }
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
            Spec::Restore(r) => Work::Restore(r.try_into()?),
            Spec::Verify(v) => Work::Verify {
                backup: record("verify", v.backup)?,
                decrypt: v.decrypt,
            },
            Spec::RotateKeys(r) => Work::RotateKeys(RotateKeysWork {
                target: r.target,
                items: r
                    .items
                    .into_iter()
                    .map(|i| {
                        Ok((
                            record("rotate_keys", i.backup)?,
                            repositories("rotate_keys", i.repositories)?,
                        ))
                    })
                    .collect::<Result<_, RefusedSpec>>()?,
                add: r.add,
                remove: r.remove,
                dry_run: r.dry_run,
            }),
            Spec::WalVerify(w) => Work::VerifyWal(w.target),
            Spec::Delete(d) => Work::Delete(record("delete", d.backup)?),
            Spec::List(l) => Work::List {
                repository: l.repository,
            },
            Spec::Check(c) => Work::Check(match c.restore {
                Some(r) => CheckWork::DryRun(r.try_into()?),
                None => CheckWork::Target(c.target),
            }),
            Spec::Export(x) => Work::Export(ExportWork {
                backup: record("export", x.backup)?,
                path: ExportPath::parse(x.path).map_err(RefusedSpec::BadExportPath)?,
                fallbacks: repositories("export", x.fallback_repositories)?,
            }),
            Spec::Copy(c) => Work::Copy(CopyWork {
                backup: record("copy", c.backup)?,
                to: repositories("copy", vec![c.to_repository])?.remove(0),
            }),
            Spec::Pin(p) => Work::Pin {
                backup: record("pin", p.backup)?,
                pin: p
                    .pin
                    .map(Pin::try_from)
                    .transpose()
                    .map_err(RefusedSpec::BadPin)?,
            },
        };
        Ok(Job { id, work })
    }
}

impl Work {
    pub fn kind(&self) -> JobKind {
        match self {
            Work::Backup(_) => JobKind::Backup,
            Work::Restore(_) => JobKind::Restore,
            Work::Verify { .. } | Work::VerifyWal(_) => JobKind::Verify,
            Work::Delete(_) => JobKind::Delete,
            Work::List { .. } => JobKind::List,
            Work::Check(_) => JobKind::Check,
            Work::Pin { .. } => JobKind::Pin,
            Work::Export(_) => JobKind::Export,
            Work::Copy(_) => JobKind::Copy,
            Work::RotateKeys(_) => JobKind::RotateKeys,
        }
    }

    /// The target the job acts on (the agent's own name for it), if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Work::Backup(b) => Some(&b.target),
            Work::Restore(r) | Work::Check(CheckWork::DryRun(r)) => Some(&r.target),
            Work::Check(CheckWork::Target(t)) | Work::VerifyWal(t) => Some(t),
            Work::RotateKeys(r) => Some(&r.target),
            Work::Verify { .. }
            | Work::Delete(_)
            | Work::List { .. }
            | Work::Pin { .. }
            | Work::Export(_)
            | Work::Copy(_) => None,
        }
    }

    /// The backup the job works on, if any.
    pub fn backup_id(&self) -> Option<&BackupId> {
        match self {
            Work::Backup(b) => Some(&b.backup_id),
            Work::Restore(r) | Work::Check(CheckWork::DryRun(r)) => Some(&r.backup.backup_id),
            Work::Verify { backup: b, .. }
            | Work::Delete(b)
            | Work::Pin { backup: b, .. }
            | Work::Export(ExportWork { backup: b, .. })
            | Work::Copy(CopyWork { backup: b, .. }) => Some(&b.backup_id),
            Work::Check(CheckWork::Target(_))
            | Work::List { .. }
            | Work::VerifyWal(_)
            | Work::RotateKeys(_) => None,
        }
    }

    /// The full target name (`ENV/NAME`) of the backup, for jobs that name no target of this
    /// agent.
    pub fn record_target(&self) -> Option<&str> {
        match self {
            Work::Verify { backup: b, .. }
            | Work::Delete(b)
            | Work::Pin { backup: b, .. }
            | Work::Export(ExportWork { backup: b, .. })
            | Work::Copy(CopyWork { backup: b, .. }) => Some(b.target.as_str()),
            Work::Backup(_)
            | Work::Restore(_)
            | Work::Check(_)
            | Work::List { .. }
            | Work::VerifyWal(_)
            | Work::RotateKeys(_) => None,
        }
    }
}

/// Valid records for the agent's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use lifeboat_proto::{self as pb, domain::BackupRecord};

    use crate::config::Engine;

    /// A backup of `ENV/orders` in repository `local`, as the coordinator would send it.
    pub fn record(env: &str, engine: Engine) -> BackupRecord {
        let id = "20261127T233000Z-7f3a9c";
        let dir = format!("{env}/orders/{id}");
        let data = match engine {
            Engine::Postgres => crate::repo::PG_DATA_FILE,
            Engine::Mysql => crate::engine::mysql::DATA_FILE,
        };
        BackupRecord::try_from(pb::BackupRecord {
            backup_id: id.into(),
            target: format!("{env}/orders"),
            environment: env.into(),
            agent: format!("{env}-1"),
            repository: "local".into(),
            engine: pb::Engine::from(engine).into(),
            provider: "self-hosted".into(),
            raw_size: 10,
            stored_size: 5,
            raw_sha256: "0".repeat(64),
            stored_sha256: "0".repeat(64),
            started_at_ms: 1,
            data_key: format!("{dir}/{data}"),
            manifest_key: format!("{dir}/manifest.json"),
            ..Default::default()
        })
        .expect("a valid record")
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

    fn wire_record() -> pb::BackupRecord {
        pb::BackupRecord {
            backup_id: "20261127T233000Z-7f3a9d".into(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: pb::Engine::Postgres as i32,
            provider: "self-hosted".into(),
            raw_size: 10,
            stored_size: 5,
            raw_sha256: "a".repeat(64),
            stored_sha256: "b".repeat(64),
            started_at_ms: 1,
            data_key: "prod/orders/20261127T233000Z-7f3a9d/data.dump.zst".into(),
            manifest_key: "prod/orders/20261127T233000Z-7f3a9d/manifest.json".into(),
            ..Default::default()
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
        assert_eq!(job.work.kind(), JobKind::Backup);
        assert_eq!(job.work.target(), Some("orders"));
        assert_eq!(
            job.work.backup_id().map(BackupId::as_str),
            Some("20261127T233000Z-7f3a9d")
        );
        assert_eq!(
            Job::try_from(spec(None)).expect_err("no spec"),
            RefusedSpec::NoSpec
        );
        assert_eq!(
            Job::try_from(spec(Some(Spec::Verify(pb::VerifySpec {
                backup: None,
                decrypt: false,
            }))))
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

    #[test]
    fn records_and_restore_options_are_checked_on_arrival() {
        use pb::job_spec::Spec;
        let restore = |backup: pb::BackupRecord, owners: i32| pb::RestoreSpec {
            backup: Some(backup),
            target: "orders".into(),
            database: String::new(),
            clean: false,
            owners,
            include_provider_schemas: false,
            data_dir: String::new(),
            recovery_target: String::new(),
            recovery_action: String::new(),
            start_port: 0,
            tables: Vec::new(),
            schemas: Vec::new(),
            into_schema: String::new(),
            drill: false,
            with_globals: false,
            globals_only: false,
            allow_superuser: false,
            jobs: 0,
            fallback_repositories: Vec::new(),
        };
        let job = Job::try_from(spec(Some(Spec::Check(pb::CheckSpec {
            target: "orders".into(),
            restore: Some(restore(wire_record(), pb::OwnerPolicy::Drop as i32)),
        }))))
        .expect("a dry run");
        let Work::Check(CheckWork::DryRun(r)) = &job.work else {
            panic!("a dry run, got {:?}", job.work);
        };
        assert_eq!(r.owners, OwnerPolicy::Drop);
        assert_eq!(r.database, None, "empty database: the agent picks one");
        assert_eq!(job.work.target(), Some("orders"));

        let mut hostile = wire_record();
        hostile.data_key = "../../etc/passwd".into();
        let e = Job::try_from(spec(Some(Spec::Restore(restore(hostile, 0)))))
            .expect_err("a hostile key");
        assert!(
            matches!(&e, RefusedSpec::BadRecord("restore", r) if r.0.contains("data_key")),
            "{e}"
        );
        let mut other_env = wire_record();
        other_env.environment = "dev".into();
        let e = Job::try_from(spec(Some(Spec::Delete(pb::DeleteSpec {
            backup: Some(other_env),
        }))))
        .expect_err("inconsistent environment");
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = Job::try_from(spec(Some(Spec::Restore(restore(wire_record(), 9)))))
            .expect_err("unknown owner policy");
        assert_eq!(e, RefusedSpec::BadOwners(9));
        let mut jobs = restore(wire_record(), 0);
        jobs.jobs = 65;
        let e = Job::try_from(spec(Some(Spec::Restore(jobs.clone())))).expect_err("65 jobs");
        assert_eq!(e, RefusedSpec::BadJobs(65));
        jobs.jobs = 4;
        let job = Job::try_from(spec(Some(Spec::Restore(jobs)))).expect("4 jobs");
        let Work::Restore(r) = &job.work else {
            panic!("a restore, got {:?}", job.work);
        };
        assert_eq!(r.jobs, Some(4));
        let mut into_dir = restore(wire_record(), 0);
        into_dir.data_dir = "/srv/pg/../etc".into();
        let e = Job::try_from(spec(Some(Spec::Restore(into_dir.clone())))).expect_err("a ..");
        assert!(matches!(e, RefusedSpec::BadDataDir(_)), "{e}");
        into_dir.data_dir = "/srv/pg/recovered".into();
        into_dir.recovery_target = "time:yesterday".into();
        let e = Job::try_from(spec(Some(Spec::Restore(into_dir.clone())))).expect_err("a bad time");
        assert!(matches!(e, RefusedSpec::BadRecovery(_)), "{e}");
        into_dir.recovery_target = "lsn:0/5A000060".into();
        into_dir.recovery_action = "pause".into();
        let job = Job::try_from(spec(Some(Spec::Restore(into_dir)))).expect("a data dir");
        let Work::Restore(r) = &job.work else {
            panic!("a restore, got {:?}", job.work);
        };
        assert_eq!(
            r.data_dir.as_ref().map(DataDir::as_str),
            Some("/srv/pg/recovered")
        );
        assert_eq!(
            r.recovery
                .as_ref()
                .map(|r| (r.target.to_text(), r.action.as_str())),
            Some(("lsn:0/5A000060".to_owned(), "pause"))
        );
    }
}
