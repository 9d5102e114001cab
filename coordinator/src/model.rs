//! The coordinator's domain types. Wire (prost) types are converted to these on the way in
//! (validated, see `wire.rs`) and from these on the way out; the catalog stores these.

use std::fmt;

use lifeboat_common::names::TargetName;

/// Database engine of a target or a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Postgres,
    Mysql,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Restore,
    Verify,
    /// Remove a backup from its repository (retention).
    Delete,
    /// Read a repository's manifests.
    List,
}

/// Where a job is in its life: `queued → running → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// The result of the last verification of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyStatus {
    Unverified,
    Ok,
    Corrupt,
    Missing,
}

/// A closed set of string forms, shared by the catalog columns, metric labels and logs.
macro_rules! string_forms {
    ($ty:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_forms!(Engine { Postgres => "postgres", Mysql => "mysql" });
string_forms!(JobKind {
    Backup => "backup",
    Restore => "restore",
    Verify => "verify",
    Delete => "delete",
    List => "list",
});
string_forms!(JobState {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});
string_forms!(VerifyStatus {
    Unverified => "unverified",
    Ok => "ok",
    Corrupt => "corrupt",
    Missing => "missing",
});

impl JobState {
    pub fn is_terminal(self) -> bool {
        match self {
            JobState::Queued | JobState::Running => false,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => true,
        }
    }
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
}

/// A target with its most recent backup, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSummary {
    pub target: TargetRecord,
    pub last_backup: Option<(String, i64)>,
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
    pub target: String,
    pub agent: String,
    pub backup_id: String,
    pub requested_by: String,
    pub created_at_ms: i64,
    /// When `StartJob` was sent; a queued job with this set is waiting for `JobAccepted`.
    pub dispatched_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: String,
    pub progress: Progress,
    pub detail: String,
    pub database: String,
    pub clean: bool,
}

impl Job {
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
    pub target: String,
    pub agent: String,
    pub backup_id: String,
    pub requested_by: String,
    pub created_at_ms: i64,
    pub database: String,
    pub clean: bool,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCount {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

/// One complete backup, as the catalog records it. Mirrors the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub backup_id: String,
    pub target: String,
    pub environment: String,
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
    pub data_key: String,
    pub manifest_key: String,
    pub verify_status: VerifyStatus,
    pub verified_at_ms: Option<i64>,
    pub verify_detail: String,
    pub job_id: String,
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
        assert_eq!(JobState::parse("QUEUED"), None);
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
