//! What the coordinator tells an agent on its session, as domain values: the wire form is made
//! in `wire` where the stream leaves the coordinator.

use crate::{
    catalog::Pin,
    model::{Backup, Job},
};

/// One message to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    /// The answer to Hello.
    Welcome(Welcome),
    /// Run this job.
    Start(Box<StartJob>),
    /// Stop this job.
    Cancel { job_id: String },
    /// The job's result is recorded; the agent may forget it.
    ResultAck { job_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub clock_unix_ms: i64,
    pub heartbeat_interval_secs: u32,
    /// Targets of the Hello that were not registered: (name, why).
    pub refused_targets: Vec<(String, String)>,
}

/// A job and what the agent needs to run it beyond the job row, read from the catalog when
/// it is handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartJob {
    pub job: Job,
    pub work: Work,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Backup,
    /// List a repository for a catalog rebuild.
    List {
        repository: String,
    },
    /// Check a target (`targets check`).
    CheckTarget,
    /// Verify the target's WAL archive (`pitr verify`).
    VerifyWal,
    /// Restore `backup`, or only plan it (a restore's dry run).
    Restore {
        backup: Box<Backup>,
        dry_run: bool,
        /// Repositories holding a copy, tried in order if the backup is missing from
        /// `backup.repository`.
        fallbacks: Vec<String>,
    },
    Verify {
        backup: Box<Backup>,
        /// An encrypted backup must be decrypted (no stored-bytes-only verdict).
        decrypt: bool,
    },
    /// Re-encrypt the key objects of these backups, each in every repository holding it.
    RotateKeys {
        items: Vec<(Backup, Vec<String>)>,
        rotation: crate::model::KeyRotation,
    },
    /// Write the backup's decompressed dump to the job's export path.
    Export {
        backup: Box<Backup>,
        fallbacks: Vec<String>,
    },
    /// Copy the backup from `backup.repository` to repository `to`.
    Copy {
        backup: Box<Backup>,
        to: String,
    },
    Delete {
        backup: Box<Backup>,
    },
    /// Write the backup's pin marker as it is now (`None`: unpinned).
    Pin {
        backup: Box<Backup>,
        pin: Option<Pin>,
    },
}
