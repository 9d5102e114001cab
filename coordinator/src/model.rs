//! The coordinator's domain types. Wire (prost) types are converted to these on the way in
//! (validated, see `wire.rs`) and from these on the way out; the catalog stores these.

use lifeboat_common::{ids::BackupId, names::TargetName};
pub use lifeboat_proto::domain::{
    BackupRecord as Backup, Engine, ExportPath, Finding, JobKind, OwnerPolicy, Report, RowCount,
    Severity, VerifyStatus,
};
use lifeboat_proto::string_forms;

/// Where a job is in its life: `queued → running → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

string_forms!(JobState {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl JobState {
    pub fn is_terminal(self) -> bool {
        match self {
            JobState::Queued | JobState::Running => false,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => true,
        }
    }
}

/// How a restore (or its dry run) treats owners and the source provider's own schemas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    pub owners: OwnerPolicy,
    pub include_provider_schemas: bool,
}

/// What a restore, or its dry run, was asked for; after a restore, `database` is the
/// database it restored into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreParams {
    /// Empty: a new database named after the backup.
    pub database: String,
    /// Replace an existing database (`--clean`).
    pub clean: bool,
    pub options: RestoreOptions,
    /// A physical backup: the empty directory on the agent's host it is restored into
    /// (checked by [`crate::wire::restore_data_dir`]); empty for a logical backup.
    pub data_dir: String,
    /// Point-in-time recovery of a physical backup (checked by
    /// [`crate::wire::restore_recovery`]).
    pub recovery: Option<lifeboat_proto::domain::Recovery>,
    /// A data-directory restore: start the server on this port and wait for recovery to
    /// reach its target (checked by [`crate::wire::restore_start_port`]).
    pub start_port: Option<u16>,
    /// A partial restore: the tables and schemas asked for, and the side schema (checked by
    /// [`crate::wire::restore_partial`]).
    pub partial: Option<lifeboat_proto::domain::PartialRestore>,
    /// A restore drill: the target whose backup is drilled (the job's own target is where it
    /// is restored). The agent checks, times and drops the restored database.
    pub drill_of: Option<TargetName>,
    /// The backup's globals: recreated first (`--with-globals`), alone (`globals restore`),
    /// or left alone.
    pub globals: lifeboat_proto::domain::GlobalsRestore,
    /// Roles with SUPERUSER may be created from the globals (`--allow-superuser`).
    pub allow_superuser: bool,
    /// pg_restore jobs (`--jobs`, checked by [`crate::wire::restore_jobs`]); 0: the target's
    /// default on the agent.
    pub jobs: u32,
}

/// A restore drill as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drill {
    pub job_id: String,
    /// The target whose backup was drilled.
    pub target: TargetName,
    pub backup_id: String,
    /// The target restored into.
    pub drill_target: TargetName,
    /// The scratch database (dropped after the drill).
    pub database: String,
    /// The job's state until it ends, then its outcome.
    pub outcome: JobState,
    /// Job start to a restored, checked database; only for a drill that succeeded.
    pub rto_ms: Option<u64>,
    pub requested_by: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: String,
}

/// An export (`backup export ID --to PATH`): the file asked for on the agent's host and,
/// once the export succeeded, what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportParams {
    /// Asked for; after a success, the file written (its directory resolved by the agent).
    pub path: ExportPath,
    pub written: Option<ExportWritten>,
}

/// What a successful export wrote: the backup's raw dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportWritten {
    pub raw_bytes: u64,
    pub raw_sha256: String,
}

/// An agent as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub name: String,
    pub environment: String,
    pub version: String,
    pub last_seen_ms: i64,
    pub clock_skew_ms: i64,
    pub max_concurrent_jobs: u32,
}

/// A target as declared by its agent in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDecl {
    /// Short name, unique within the agent's environment.
    pub name: String,
    pub engine: Engine,
    pub provider: String,
    pub repository: String,
    pub database: String,
    /// Repositories each backup is copied to after it succeeds.
    pub copy_to: Vec<String>,
    /// How its new backups are encrypted; `None`: they are not.
    pub encryption: Option<TargetEncryption>,
}

/// A target's encryption as its agent declares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetEncryption {
    pub recipients: Vec<String>,
    pub key_ids: Vec<String>,
    /// The agent holds a key for one of the recipients (it can restore).
    pub can_decrypt: bool,
}

/// A registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub name: TargetName,
    pub agent: String,
    pub engine: Engine,
    pub provider: String,
    pub repository: String,
    pub database: String,
    pub copy_to: Vec<String>,
    pub encryption: Option<TargetEncryption>,
}

/// A target with its most recent backup, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSummary {
    pub target: TargetRecord,
    pub last_backup: Option<(String, i64)>,
    pub last_check: Option<CheckSummary>,
}

/// The latest finished check of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    pub job_id: String,
    pub finished_at_ms: i64,
    /// The worst finding's severity; `Error` for a check that could not run at all.
    pub severity: Severity,
    /// What the worst finding says (or why the check failed); empty when all is ok.
    pub summary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub phase: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub state: JobState,
    /// `ENV/NAME` the job acts on (for a restore: the destination).
    pub target: TargetName,
    pub agent: String,
    /// The backup the job makes (a backup), reads (restore, verify, a restore's dry run),
    /// removes (delete) or marks (pin); `None` for listings and target checks.
    pub backup_id: Option<BackupId>,
    pub requested_by: String,
    pub created_at_ms: i64,
    /// When `StartJob` was sent; a queued job with this set is waiting for `JobAccepted`.
    pub dispatched_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: String,
    pub progress: Progress,
    pub detail: String,
    /// Set for restores and their dry runs, never for other kinds.
    pub restore: Option<RestoreParams>,
    /// Set for exports, never for other kinds.
    pub export: Option<ExportParams>,
    /// The repository the job reads or writes when it is not the backup's own: a copy's
    /// destination; the copy a restore, verify, export or delete works on. Empty otherwise.
    pub repository: String,
    /// Set for key rotations, never for other kinds.
    pub rotation: Option<KeyRotation>,
    /// A verify of an encrypted backup that must decrypt it (`backup verify --decrypt`).
    pub decrypt: bool,
    pub report: Report,
}

/// What a key rotation does to each key object of its target: recipients added and removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRotation {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub dry_run: bool,
}

impl Job {
    /// The backup id, for logs and messages.
    pub fn backup(&self) -> Option<&str> {
        self.backup_id.as_ref().map(BackupId::as_str)
    }

    /// Running, or handed to the agent and not yet accepted: it occupies an agent slot.
    pub fn is_assigned(&self) -> bool {
        self.state == JobState::Running
            || (self.state == JobState::Queued && self.dispatched_at_ms.is_some())
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub id: String,
    pub kind: JobKind,
    pub target: TargetName,
    pub agent: String,
    pub backup_id: Option<BackupId>,
    pub requested_by: String,
    pub created_at_ms: i64,
    /// Set for restores and their dry runs.
    pub restore: Option<RestoreParams>,
    /// Set for exports: the file to create on the agent's host.
    pub export_path: Option<ExportPath>,
    /// As [`Job::repository`].
    pub repository: String,
    /// As [`Job::rotation`].
    pub rotation: Option<KeyRotation>,
    /// As [`Job::decrypt`].
    pub decrypt: bool,
}

impl NewJob {
    /// A job of `kind` on `target`, run by `agent`, asked for by `requested_by` at `now_ms`,
    /// with a fresh id; the kind-specific fields are empty for the caller to fill.
    pub fn new(
        kind: JobKind,
        target: TargetName,
        agent: &str,
        requested_by: &str,
        now_ms: i64,
    ) -> Self {
        Self {
            id: lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc()),
            kind,
            target,
            agent: agent.to_owned(),
            backup_id: None,
            requested_by: requested_by.to_owned(),
            created_at_ms: now_ms,
            restore: None,
            export_path: None,
            repository: String::new(),
            rotation: None,
            decrypt: false,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub state: JobState,
    pub finished_at_ms: i64,
    pub error: String,
    pub detail: String,
    /// Restore: the database restored into.
    pub database: Option<String>,
    pub report: Report,
}

/// The outcome of a verification, to record on a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub status: VerifyStatus,
    pub detail: String,
    pub verified_at_ms: i64,
}

/// An agent's housekeeping counters for one repository, from its heartbeats. Counters count
/// since the agent started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryStats {
    pub name: String,
    /// `fs` or `s3`.
    pub kind: String,
    pub stale_uploads_aborted: u64,
    pub janitor_errors: u64,
    /// None until a janitor pass succeeded.
    pub janitor_last_success_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(*k));
        }
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(*s));
        }
        for e in Engine::ALL {
            assert_eq!(Engine::parse(e.as_str()), Some(*e));
        }
        for v in VerifyStatus::ALL {
            assert_eq!(VerifyStatus::parse(v.as_str()), Some(*v));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(*s));
        }
        for o in OwnerPolicy::ALL {
            assert_eq!(OwnerPolicy::parse(o.as_str()), Some(*o));
        }
        assert_eq!(JobState::parse("QUEUED"), None);
    }

    #[test]
    fn worst_finding_is_the_first_of_the_highest_severity() {
        let f = |check: &str, severity| Finding {
            check: check.into(),
            severity,
            message: String::new(),
        };
        let r = Report {
            findings: vec![
                f("a", Severity::Ok),
                f("b", Severity::Warning),
                f("c", Severity::Info),
                f("d", Severity::Warning),
            ],
            plan: Vec::new(),
        };
        assert_eq!(r.worst().map(|w| w.check.as_str()), Some("b"));
        assert!(Report::default().worst().is_none());
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = JobState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .copied()
            .collect();
        assert_eq!(
            terminal,
            [JobState::Succeeded, JobState::Failed, JobState::Cancelled]
        );
    }
}

/// Where a copy of a backup in another repository is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyState {
    /// Its copy job has not finished.
    Copying,
    /// Complete: every object, the manifest last.
    Stored,
    /// Retention or `backup delete` marked it; its delete job removes it.
    Deleting,
}

string_forms!(CopyState {
    Copying => "copying",
    Stored => "stored",
    Deleting => "deleting",
});

/// One copy of a backup in a repository other than the backup's own, with its own verify
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCopy {
    pub backup_id: String,
    pub repository: String,
    pub state: CopyState,
    pub job_id: String,
    pub created_at_ms: i64,
    pub stored_at_ms: Option<i64>,
    pub verify_status: VerifyStatus,
    pub verified_at_ms: Option<i64>,
    pub verify_detail: String,
}

impl BackupCopy {
    /// Stored and not known to be damaged: a restore may read it.
    pub fn is_readable(&self) -> bool {
        self.state == CopyState::Stored
            && matches!(
                self.verify_status,
                VerifyStatus::Ok | VerifyStatus::Unverified
            )
    }
}
