//! The Control calls that make or end jobs (backup, verify, restore and its dry run, cancel),
//! and job watches.

use std::collections::HashMap;

use lifeboat_common::{ids::BackupId, names::validate_database};
use lifeboat_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::{Control, parse_target};
use crate::{
    catalog::InsertJob,
    error::{Error, Result},
    grpc::authz::Operator,
    model::{ExportPath, Job, JobKind, JobState, NewJob, RestoreParams, TargetRecord},
    parts::Parts,
    wire,
};

impl Control {
    /// Queues a job and wakes the dispatcher.
    pub(super) async fn create(&self, job: NewJob) -> Result<Job> {
        match self.parts.jobs.queue(&job).await? {
            InsertJob::Inserted(created) => Ok(created),
            InsertJob::ActiveBackupExists(active) => Err(Error::AlreadyExists(format!(
                "a backup of {} is already {} as job {}; watch it with `lifeboat jobs watch {}`",
                active.target, active.state, active.id, active.id
            ))),
        }
    }

    pub(super) fn new_job(
        &self,
        operator: &Operator,
        kind: JobKind,
        target: &TargetRecord,
    ) -> NewJob {
        NewJob::new(
            kind,
            target.name.clone(),
            &target.agent,
            &operator.name,
            lifeboat_common::time::now_ms(),
        )
    }

    pub(super) async fn start_backup(&self, op: &Operator, target: &str) -> Result<Job> {
        let name = parse_target(target)?;
        self.scope(op, &name, &format!("a backup of {name}"))?;
        let target = self.target(&name).await?;
        let mut job = self.new_job(op, JobKind::Backup, &target);
        job.backup_id = Some(BackupId::mint(time::OffsetDateTime::now_utc()));
        self.create(job).await
    }

    /// A verify of the backup in its own repository, or (`repository` set) of its copy there.
    pub(super) async fn verify_backup(
        &self,
        op: &Operator,
        id: &str,
        repository: &str,
        decrypt: bool,
    ) -> Result<Job> {
        let backup = self.backup(id).await?;
        self.scope(
            op,
            &backup.target,
            &format!("verifying backup {id} of {}", backup.target),
        )?;
        self.check_not_deleting(&backup).await?;
        let mut repository = self.copy_repository(&backup, repository, true).await?;
        if repository == backup.repository {
            // The backup's own objects: its own verify.
            repository.clear();
        }
        let target = self.target(&backup.target).await?;
        let mut job = self.new_job(op, JobKind::Verify, &target);
        job.backup_id = Some(backup.backup_id);
        job.repository = repository;
        job.decrypt = decrypt;
        self.create(job).await
    }

    /// The repository a job that names one works on: '' when none is named, the backup's
    /// own, or the repository of one of its copies (`stored_only`: a complete one).
    pub(super) async fn copy_repository(
        &self,
        backup: &crate::model::Backup,
        repository: &str,
        stored_only: bool,
    ) -> Result<String> {
        if repository.is_empty() || repository == backup.repository {
            return Ok(repository.to_owned());
        }
        lifeboat_common::names::validate_simple("repository", repository)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let copies = self
            .parts
            .catalog
            .copies_of(backup.backup_id.as_str())
            .await?;
        match copies.iter().find(|c| c.repository == repository) {
            Some(c) if !stored_only || c.state == crate::model::CopyState::Stored => {
                Ok(repository.to_owned())
            }
            Some(c) => Err(Error::FailedPrecondition(format!(
                "the copy of backup {} in repository {repository} is {}; wait for it (`lifeboat backup show {}`)",
                backup.backup_id,
                c.state.as_str(),
                backup.backup_id
            ))),
            None => {
                let mut have = vec![format!("{} (its own)", backup.repository)];
                have.extend(copies.iter().map(|c| c.repository.clone()));
                Err(Error::NotFound(format!(
                    "backup {} has no copy in repository {repository}; it is in: {}",
                    backup.backup_id,
                    have.join(", ")
                )))
            }
        }
    }

    /// A one-off copy of a backup to another repository of its target's agent.
    pub(super) async fn copy_backup(
        &self,
        op: &Operator,
        req: &pb::CopyBackupRequest,
    ) -> Result<Job> {
        let to = req.to_repository.as_str();
        lifeboat_common::names::validate_simple("repository", to)
            .map_err(|e| Error::InvalidArgument(format!("--to: {e}")))?;
        let backup = self.backup(&req.backup_id).await?;
        self.scope(
            op,
            &backup.target,
            &format!("copying backup {} of {}", backup.backup_id, backup.target),
        )?;
        self.check_not_deleting(&backup).await?;
        if backup.repository == to {
            return Err(Error::InvalidArgument(format!(
                "backup {} is stored in repository {to} itself; copy it to another repository",
                backup.backup_id
            )));
        }
        if backup.is_physical() {
            return Err(Error::FailedPrecondition(format!(
                "backup {} is a physical base backup; copies of base backups (and of the WAL \
                 they need) are not supported; copy logical backups",
                backup.backup_id
            )));
        }
        let target = self.target(&backup.target).await?;
        let queued = crate::copies::queue(
            &self.parts.catalog,
            &self.parts.jobs,
            &backup,
            &target.agent,
            to,
            &op.name,
            lifeboat_common::time::now_ms(),
        )
        .await
        .map_err(|e| Error::Internal(format!("{e:#}")))?;
        let id = &backup.backup_id;
        match queued {
            crate::copies::Queued::Job(job) => Ok(*job),
            crate::copies::Queued::InProgress(job) => Err(Error::AlreadyExists(format!(
                "backup {id} is already being copied to {to} by job {job}; watch it with `lifeboat jobs watch {job}`"
            ))),
            crate::copies::Queued::AlreadyStored => Err(Error::AlreadyExists(format!(
                "backup {id} already has a copy in {to}; verify it with `lifeboat backup verify {id} --repository {to}`"
            ))),
            crate::copies::Queued::Deleting => Err(Error::FailedPrecondition(format!(
                "the copy of backup {id} in {to} is being deleted; copy it again once that is done"
            ))),
            crate::copies::Queued::Gone => Err(Error::NotFound(format!(
                "backup {id} is no longer in the catalog, or is being deleted"
            ))),
        }
    }

    /// An export of a backup to a file on the host of the agent that holds it. The agent
    /// checks the path against its `export_dirs`; here only its form is.
    pub(super) async fn export_backup(
        &self,
        op: &Operator,
        req: &pb::ExportBackupRequest,
    ) -> Result<Job> {
        let path = ExportPath::parse(req.path.clone()).map_err(|e| Error::InvalidArgument(e.0))?;
        let backup = self.backup(&req.backup_id).await?;
        self.scope(
            op,
            &backup.target,
            &format!("exporting backup {} of {}", backup.backup_id, backup.target),
        )?;
        self.check_not_deleting(&backup).await?;
        let repository = self
            .copy_repository(&backup, &req.from_repository, true)
            .await?;
        let target = self.target(&backup.target).await?;
        let mut job = self.new_job(op, JobKind::Export, &target);
        job.backup_id = Some(backup.backup_id);
        job.export_path = Some(path);
        job.repository = repository;
        self.create(job).await
    }

    /// A restore (`dry_run: false`) or its dry run (a check job, `dry_run: true`).
    pub(super) async fn restore(
        &self,
        op: &Operator,
        req: &pb::RestoreRequest,
        dry_run: bool,
    ) -> Result<Job> {
        let backup = self.backup(&req.backup_id).await?;
        // Reading the backup needs the source's environment, writing the destination's.
        self.scope(
            op,
            &backup.target,
            &format!("reading backup {} of {}", backup.backup_id, backup.target),
        )?;
        self.check_not_deleting(&backup).await?;
        let to = if req.to_target.is_empty() {
            backup.target.clone()
        } else {
            parse_target(&req.to_target)?
        };
        self.scope(op, &to, &format!("a restore into {to}"))?;
        let target = self.target(&to).await?;
        if target.engine != backup.engine {
            return Err(Error::InvalidArgument(format!(
                "backup {} is a {} backup but target {} is {}; restore into a {} target",
                backup.backup_id, backup.engine, target.name, target.engine, backup.engine
            )));
        }
        if !req.database.is_empty() {
            validate_database(&req.database)?;
        }
        let data_dir = wire::restore_data_dir(&backup, req)?;
        let recovery = wire::restore_recovery(&backup, req)?;
        let start_port = wire::restore_start_port(req)?;
        let jobs = wire::restore_jobs(&backup, req)?;
        let partial = wire::restore_partial(&backup, req)?;
        let globals = wire::restore_globals(&backup, req)?;
        let repository = self
            .copy_repository(&backup, &req.from_repository, true)
            .await?;
        let kind = if dry_run {
            JobKind::Check
        } else {
            JobKind::Restore
        };
        let mut job = self.new_job(op, kind, &target);
        job.backup_id = Some(backup.backup_id);
        job.restore = Some(RestoreParams {
            database: req.database.clone(),
            clean: req.clean,
            options: wire::restore_options(req.owners, req.include_provider_schemas)?,
            data_dir,
            recovery,
            start_port,
            partial,
            drill_of: None,
            globals,
            allow_superuser: req.allow_superuser,
            jobs,
        });
        job.repository = repository;
        self.create(job).await
    }

    pub(super) async fn cancel(&self, op: &Operator, id: &str) -> Result<Job> {
        let job = self.job(id).await?;
        self.scope(
            op,
            &job.target,
            &format!("cancelling job {id} on {}", job.target),
        )?;
        if job.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "job {id} already ended ({}); nothing to cancel",
                job.state
            )));
        }
        if !self.parts.hub.is_active() {
            // The agent's session is with the active coordinator: it carries the cancel out
            // (cancels.rs); this answers with the job as it is now.
            if !self.parts.catalog.request_cancel(&job.id, &op.name).await? {
                return self.job(id).await;
            }
            self.parts.hub.announce(&job);
            return Ok(job);
        }
        match crate::cancels::cancel_here(&self.parts.hub, &self.parts.jobs, &job, &op.name).await?
        {
            // The agent stops the job and reports it cancelled.
            crate::cancels::Cancelled::AgentAsked => Ok(job),
            crate::cancels::Cancelled::Ended(Some(done)) => Ok(*done),
            // Ended meanwhile: report how.
            crate::cancels::Cancelled::Ended(None) => self.job(id).await,
        }
    }

    pub(super) fn running_per_agent(jobs: &[Job]) -> HashMap<&str, u32> {
        let mut out = HashMap::new();
        for j in jobs.iter().filter(|j| j.state == JobState::Running) {
            *out.entry(j.agent.as_str()).or_default() += 1;
        }
        out
    }
}

/// How often a watch reads its job from the catalog besides the change events.
const WATCH_REREAD: std::time::Duration = std::time::Duration::from_secs(5);

/// Streams a job's changes to a watcher until it ends, the watcher goes away, or the
/// coordinator shuts down.
pub(super) async fn watch(
    parts: Parts,
    first: Job,
    mut events: broadcast::Receiver<Job>,
    tx: mpsc::Sender<Result<pb::Job, Status>>,
) {
    let id = first.id.clone();
    let mut last = pb::Job::from(&first);
    if tx.send(Ok(last.clone())).await.is_err() || first.state.is_terminal() {
        return;
    }
    // Changes made through another coordinator of the catalog arrive as notices
    // (bridge.rs); a notice lost with a connection is made up for by reading the job again.
    let mut reread = tokio::time::interval(WATCH_REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reread.tick().await;
    loop {
        let read = tokio::select! {
            () = parts.hub.streams.cancelled() => {
                let _ = tx.try_send(Err(Status::unavailable(
                    "the coordinator is shutting down; watch the job again in a moment",
                )));
                return;
            }
            () = tx.closed() => return,
            event = events.recv() => match event {
                Ok(job) if job.id == id => Ok(Some(job)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => parts.catalog.get_job(&id).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = reread.tick() => parts.catalog.get_job(&id).await,
        };
        let job = match read {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.try_send(Err(Error::from(e).into()));
                return;
            }
        };
        let now = pb::Job::from(&job);
        if now == last {
            continue;
        }
        last = now;
        if tx.send(Ok(last.clone())).await.is_err() || job.state.is_terminal() {
            return;
        }
    }
}
