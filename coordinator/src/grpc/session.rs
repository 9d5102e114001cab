//! One agent's session after `Welcome`: heartbeats, job acceptance, progress and results.
//! Any invalid message ends the session with INVALID_ARGUMENT; a message about another
//! agent's job ends it with PERMISSION_DENIED. Results are recorded durably before the ack.
//! A heartbeat, acceptance or progress update the catalog cannot record (busy, full disk) is
//! dropped, counted and logged at most once a minute; it never ends the session (M3).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use lifeboat_common::names::TargetName;
use lifeboat_proto::{
    domain::{Deleted, GlobalsRestore, JobOutput, Restored, Verified},
    v1 as pb,
};
use tonic::{Status, Streaming};
use tracing::Instrument;

use crate::{
    error::Error,
    hub::SessionHandle,
    model::{Finish, Job, JobKind, JobState, VerifyOutcome, VerifyStatus},
    parts::Parts,
    to_agent::ToAgent,
    wire::{AgentMessage, JobResult},
};

pub struct Session {
    parts: Parts,
    agent: String,
    /// The agent's environment (from its Hello): its targets are `ENVIRONMENT/NAME`.
    environment: String,
    handle: SessionHandle,
    dropped: Mutex<DroppedUpdates>,
    /// The agent certificate's serial and the CRL's revocations: the session ends when a
    /// reload revokes it.
    revocation: Option<(Vec<u8>, lifeboat_common::tls::Revocations)>,
}

/// How often a session logs that it drops updates the catalog cannot record.
const DROPPED_LOG_EVERY: Duration = Duration::from_secs(60);
/// After a failed write, heartbeats and progress updates are dropped without trying for this
/// long, so a slow catalog does not queue up the session behind them (each write may wait
/// the catalog's busy timeout).
const DROP_WITHOUT_TRYING: Duration = Duration::from_secs(5);

/// Updates dropped since the session last logged about it.
#[derive(Debug, Default)]
struct DroppedUpdates {
    logged_at: Option<Instant>,
    unlogged: u64,
    /// Until when heartbeats and progress are dropped without a write.
    backoff_until: Option<Instant>,
}

fn job_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = %job.id,
        target = %job.target,
        backup_id = job.backup(),
        kind = %job.kind
    )
}

/// Maps a failure to read from the agent's stream to the status that ends the session.
pub fn inbound_error(status: Status) -> Status {
    match status.code() {
        // Oversize (OUT_OF_RANGE) and undecodable (INTERNAL from prost) messages.
        tonic::Code::OutOfRange | tonic::Code::Internal | tonic::Code::InvalidArgument => {
            Status::invalid_argument(format!(
                "invalid message from the agent: {}",
                status.message()
            ))
        }
        _ => status,
    }
}

impl Session {
    pub fn new(parts: Parts, agent: String, environment: String, handle: SessionHandle) -> Self {
        Self {
            parts,
            agent,
            environment,
            handle,
            dropped: Mutex::new(DroppedUpdates::default()),
            revocation: None,
        }
    }

    /// Ends the session when the certificate with `serial` is revoked.
    pub fn ends_on_revocation(
        mut self,
        serial: Option<Vec<u8>>,
        revocations: lifeboat_common::tls::Revocations,
    ) -> Self {
        self.revocation = serial.map(|s| (s, revocations));
        self
    }

    /// Resolves when this session's certificate is revoked (never without a serial).
    async fn revoked(&self) {
        let Some((serial, revocations)) = &self.revocation else {
            return std::future::pending().await;
        };
        let mut changes = revocations.subscribe();
        loop {
            if revocations.is_revoked_serial(serial) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Drops an update (`kind`, one of `metrics::AGENT_UPDATES`) the catalog could not
    /// record: counts it, and logs at most once per `DROPPED_LOG_EVERY`. The session stays.
    fn drop_update(&self, kind: &'static str, e: &Error) {
        self.parts.metrics.agent_update_dropped(kind);
        let earlier = {
            let mut d = self.dropped();
            d.backoff_until = Some(Instant::now() + DROP_WITHOUT_TRYING);
            if d.logged_at.is_some_and(|t| t.elapsed() < DROPPED_LOG_EVERY) {
                d.unlogged += 1;
                return;
            }
            d.logged_at = Some(Instant::now());
            std::mem::take(&mut d.unlogged)
        };
        tracing::warn!(
            kind,
            dropped_since_last_log = earlier,
            "failed to record an agent {kind} in the catalog, dropped it and kept the session: \
             {e:#}"
        );
    }

    fn dropped(&self) -> std::sync::MutexGuard<'_, DroppedUpdates> {
        // Plain counters: a poisoned lock is still consistent.
        self.dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the WAL archive of each of this agent's physical targets (others are ignored).
    async fn on_wal_status(&self, statuses: Vec<lifeboat_proto::domain::WalStatus>) {
        if statuses.is_empty() {
            return;
        }
        let Ok(targets) = self.parts.catalog.list_targets().await else {
            return;
        };
        let now = lifeboat_common::time::now_ms();
        for s in statuses {
            let Ok(name) = format!("{}/{}", self.environment, s.target).parse::<TargetName>()
            else {
                continue;
            };
            if !targets
                .iter()
                .any(|t| t.target.name == name && t.target.agent == self.agent)
            {
                tracing::debug!(agent = %self.agent, target = %name, "WAL status of a target the agent does not own ignored");
                continue;
            }
            self.parts.metrics.set_wal_status(&name, &s);
            self.parts.wal.update(name, s, now);
        }
    }

    /// Runs a heartbeat, acceptance or progress update; a catalog failure drops it (see
    /// `drop_update`), a protocol violation still ends the session. Shortly after a failure,
    /// heartbeats and progress (which the agent repeats anyway) are dropped without a write.
    async fn soft(
        &self,
        kind: &'static str,
        update: impl std::future::Future<Output = Result<(), Error>>,
    ) -> Result<(), Error> {
        if kind != "accepted" {
            let mut d = self.dropped();
            if d.backoff_until.is_some_and(|t| Instant::now() < t) {
                d.unlogged += 1;
                drop(d);
                self.parts.metrics.agent_update_dropped(kind);
                return Ok(());
            }
        }
        let started = Instant::now();
        let outcome = update.await;
        self.parts
            .metrics
            .agent_update_recorded(kind, started.elapsed());
        match outcome {
            Err(e @ Error::Catalog(_)) => {
                self.drop_update(kind, &e);
                Ok(())
            }
            other => other,
        }
    }

    /// No message for this long (three missed heartbeats and some slack) ends the session.
    fn idle_limit(&self) -> Duration {
        idle_limit(&self.parts.config.jobs)
    }

    /// Sends to the agent, giving up if the session is being closed.
    async fn send(&self, msg: ToAgent) -> bool {
        tokio::select! {
            sent = self.handle.tx.send(Ok(msg)) => sent.is_ok(),
            () = self.handle.cancel.cancelled() => false,
        }
    }

    /// Ends the stream with `status` (best effort: the agent may already be gone).
    fn close_with(&self, status: Status) {
        let _ = self.handle.tx.try_send(Err(status));
    }

    pub async fn run(self, mut inbound: Streaming<pb::AgentMessage>) {
        let idle = self.idle_limit();
        let span = tracing::info_span!("session", agent = %self.agent, session = self.handle.id);
        async {
            loop {
                let next = tokio::select! {
                    () = self.handle.cancel.cancelled() => {
                        if self.parts.hub.streams.is_cancelled() {
                            self.close_with(Status::unavailable(
                                "the coordinator is shutting down; reconnect in a moment",
                            ));
                        } else {
                            self.close_with(Status::aborted(
                                "replaced by a newer session of the same agent",
                            ));
                        }
                        break;
                    }
                    () = self.handle.tx.closed() => break,
                    () = self.revoked() => {
                        tracing::warn!("ending agent session: its certificate has been revoked");
                        self.close_with(Status::unauthenticated(
                            "this agent's certificate has been revoked; issue it a new one with \
                             `lifeboat pki issue --kind agent`",
                        ));
                        break;
                    }
                    next = tokio::time::timeout(idle, inbound.message()) => next,
                };
                match next {
                    Err(_) => {
                        tracing::warn!("closing silent agent session after {} s", idle.as_secs());
                        self.close_with(Status::deadline_exceeded(format!(
                            "no message from the agent for {} s; reconnect",
                            idle.as_secs()
                        )));
                        break;
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) => {
                        tracing::info!("agent stream ended: {status}");
                        self.close_with(inbound_error(status));
                        break;
                    }
                    Ok(Ok(Some(msg))) => {
                        // Boxed: the session waits for its next message far longer than it
                        // handles one, and the handling future (a result's recording) is
                        // large; unboxed, every idle session would hold its space.
                        if let Err(e) = Box::pin(self.handle_message(msg)).await {
                            tracing::warn!("ending agent session: {e}");
                            self.close_with(e.into());
                            break;
                        }
                    }
                }
            }
            if self.parts.hub.end_session(&self.agent, self.handle.id) {
                self.parts.claims.drop_agent(&self.agent);
                tracing::info!("agent disconnected");
            }
        }
        .instrument(span)
        .await;
    }

    async fn handle_message(&self, msg: pb::AgentMessage) -> Result<(), Error> {
        // A well-formed result the catalog cannot take fails its job (and is acknowledged):
        // refusing it would make the agent re-send it forever and keep the target busy.
        let result_job = match &msg.msg {
            Some(pb::agent_message::Msg::Result(r)) if crate::wire::job_id(&r.job_id).is_ok() => {
                Some(r.job_id.clone())
            }
            _ => None,
        };
        let parsed = match AgentMessage::try_from(msg) {
            Ok(m) => m,
            Err(Error::InvalidArgument(why)) if result_job.is_some() => {
                let id = result_job.unwrap_or_default();
                return if self.refuse_result(&id, &why).await? {
                    Ok(())
                } else {
                    Err(Error::InvalidArgument(why))
                };
            }
            Err(e) => return Err(e),
        };
        match parsed {
            AgentMessage::Hello(_) => Err(Error::InvalidArgument(
                "Hello may be sent only once per session".into(),
            )),
            AgentMessage::Heartbeat {
                clock_unix_ms,
                repositories,
                wal,
            } => {
                self.parts
                    .metrics
                    .set_repository_stats(&self.agent, &repositories);
                self.on_wal_status(wal).await;
                let now = lifeboat_common::time::now_ms();
                self.soft("heartbeat", async {
                    Ok(self
                        .parts
                        .catalog
                        .touch_agent(&self.agent, now, clock_unix_ms.saturating_sub(now))
                        .await?)
                })
                .await
            }
            AgentMessage::Accepted { job_id } => {
                self.soft("accepted", self.on_accepted(&job_id)).await
            }
            AgentMessage::Progress { job_id, progress } => {
                self.soft("progress", self.on_progress(&job_id, &progress))
                    .await
            }
            AgentMessage::Result(result) => {
                let Some(job) = self.own_job(&result.job_id, "a result").await? else {
                    return Ok(());
                };
                let span = job_span(&job);
                self.on_result(job, result).instrument(span).await
            }
        }
    }

    async fn on_accepted(&self, job_id: &str) -> Result<(), Error> {
        let Some(job) = self.own_job(job_id, "an acceptance").await? else {
            return Ok(());
        };
        if !job.is_assigned() {
            tracing::warn!(job_id = %job.id, "ignored acceptance of a job that was not handed out");
            return Ok(());
        }
        if job.state == JobState::Queued
            && let Some(j) = self
                .parts
                .jobs
                .start(&job.id, lifeboat_common::time::now_ms())
                .await?
        {
            job_span(&j).in_scope(|| tracing::info!("job accepted by agent"));
        }
        Ok(())
    }

    async fn on_progress(
        &self,
        job_id: &str,
        progress: &crate::model::Progress,
    ) -> Result<(), Error> {
        let Some(job) = self.own_job(job_id, "progress").await? else {
            return Ok(());
        };
        if job.state == JobState::Queued && job.is_assigned() {
            self.parts
                .jobs
                .start(&job.id, lifeboat_common::time::now_ms())
                .await?;
        }
        self.parts.jobs.progress(&job.id, progress).await?;
        Ok(())
    }

    /// The job `id` if it exists and was given to this agent. Unknown jobs are logged and
    /// ignored (None); another agent's job ends the session (X34).
    async fn own_job(&self, id: &str, what: &str) -> Result<Option<Job>, Error> {
        match self.parts.catalog.get_job(id).await? {
            None => {
                tracing::warn!(job_id = %id, "ignored {what} for a job this coordinator does not know");
                Ok(None)
            }
            Some(job) if job.agent != self.agent => {
                tracing::warn!(
                    job_id = %id,
                    owner = %job.agent,
                    "refused {what} for a job given to another agent"
                );
                Err(Error::PermissionDenied(format!(
                    "job {id} was not given to agent {}; an agent may only report on its own \
                     jobs",
                    self.agent
                )))
            }
            Some(job) => Ok(Some(job)),
        }
    }

    async fn on_result(&self, job: Job, result: JobResult) -> Result<(), Error> {
        let ack = ToAgent::ResultAck {
            job_id: job.id.clone(),
        };
        if job.state.is_terminal() {
            tracing::info!(
                state = %job.state,
                "result for a job that already ended acknowledged and ignored"
            );
            self.send(ack).await;
            return Ok(());
        }
        if !job.is_assigned() {
            // Queued and never handed out: nothing the agent can have a result for.
            tracing::warn!("refused a result for a job that was never started; not acknowledged");
            return Ok(());
        }
        let done = match self.record(&job, result).await {
            Ok(done) => done,
            Err(Error::InvalidArgument(why)) => {
                self.refuse_result(&job.id, &why).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match done {
            Some(j) => self.parts.jobs.finished(&j),
            None => tracing::info!("job ended meanwhile; result acknowledged and ignored"),
        }
        self.send(ack).await;
        Ok(())
    }

    /// Fails this agent's job whose result could not be accepted, and acknowledges the
    /// result. False if the job is unknown or was never handed out (nothing to fail).
    async fn refuse_result(&self, job_id: &str, why: &str) -> Result<bool, Error> {
        let Some(job) = self.own_job(job_id, "a result").await? else {
            return Ok(false);
        };
        if !job.is_assigned() {
            return Ok(false);
        }
        let span = job_span(&job);
        let _entered = span.enter();
        tracing::warn!("refused the agent's result: {why}");
        if !job.state.is_terminal() {
            let finish = Finish {
                state: JobState::Failed,
                finished_at_ms: lifeboat_common::time::now_ms(),
                error: format!("the coordinator could not accept the agent's result: {why}"),
                detail: String::new(),
                database: None,
                report: Default::default(),
            };
            self.parts.jobs.finish(&job.id, &finish).await?;
        }
        self.send(ToAgent::ResultAck {
            job_id: job.id.clone(),
        })
        .await;
        Ok(true)
    }

    /// Records a result in one transaction. None if the job ended meanwhile.
    async fn record(&self, job: &Job, result: JobResult) -> Result<Option<Job>, Error> {
        let now = lifeboat_common::time::now_ms();
        let catalog = &self.parts.catalog;
        let report = result.report.clone();
        let finish = |state: JobState, error: String| Finish {
            state,
            finished_at_ms: now,
            error,
            detail: String::new(),
            database: None,
            report: report.clone(),
        };
        let reason = || {
            if !result.error.is_empty() {
                result.error.clone()
            } else if result.state == JobState::Cancelled {
                "cancelled".to_owned()
            } else {
                "the agent reported a failure without a reason; see the agent's log".to_owned()
            }
        };
        let mismatch = |what: &str| {
            Error::InvalidArgument(format!(
                "result for {} job {} carries {what}",
                job.kind, job.id
            ))
        };

        if result.state != JobState::Succeeded && job.kind != JobKind::Verify {
            let mut f = finish(result.state, reason());
            if job.kind == JobKind::Check {
                f.detail = check_detail(&f.report);
            }
            return Ok(catalog.finish_job(&job.id, &f).await?);
        }
        let backup_id = || {
            job.backup()
                .ok_or_else(|| mismatch(&format!("{} job {} names no backup", job.kind, job.id)))
        };
        let is_drill = job.restore.as_ref().is_some_and(|r| r.drill_of.is_some());
        match (job.kind, result.payload) {
            (JobKind::Restore, Some(JobOutput::Drill(d))) if is_drill => {
                if let Some(what) = crate::drills::drill_mismatch(job.restore.as_ref(), &d.restored)
                {
                    return Err(mismatch(&what));
                }
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = crate::wire::drill_detail(&d);
                Ok(catalog.finish_drill_job(&job.id, &f, d.rto_ms).await?)
            }
            (JobKind::Restore, Some(_)) if is_drill => {
                Err(mismatch("the result of a restore, not of a drill"))
            }
            (JobKind::Backup, Some(JobOutput::Backup(mut backup))) => {
                if job.backup_id.as_ref() != Some(&backup.backup_id) {
                    return Err(mismatch(&format!("backup id {}", backup.backup_id)));
                }
                if backup.target != job.target {
                    return Err(mismatch(&format!("target {}", backup.target)));
                }
                if backup.agent != self.agent {
                    return Err(mismatch(&format!("agent {}", backup.agent)));
                }
                backup.job_id = job.id.clone();
                Ok(catalog
                    .finish_backup_job(
                        &job.id,
                        &finish(JobState::Succeeded, String::new()),
                        &backup,
                    )
                    .await?)
            }
            (
                JobKind::Restore,
                Some(JobOutput::Restore(Restored {
                    database, data_dir, ..
                })),
            ) => {
                let mut f = finish(JobState::Succeeded, String::new());
                let globals_only = job
                    .restore
                    .as_ref()
                    .is_some_and(|r| r.globals == GlobalsRestore::Only);
                match data_dir {
                    // Only the globals: no database.
                    None if globals_only && database.is_empty() => f.detail = "globals".into(),
                    // A physical backup restored into a data directory.
                    Some(dir) if database.is_empty() => f.detail = dir.to_string(),
                    _ if database.is_empty() => {
                        return Err(mismatch("no restored database name"));
                    }
                    _ => {
                        f.detail.clone_from(&database);
                        f.database = Some(database);
                    }
                }
                Ok(catalog.finish_job(&job.id, &f).await?)
            }
            (JobKind::Verify, Some(JobOutput::Verify(Verified { status, detail, .. }))) => {
                if result.state == JobState::Cancelled {
                    return Ok(catalog
                        .finish_job(&job.id, &finish(result.state, reason()))
                        .await?);
                }
                // A verify naming no backup read a WAL archive (`pitr verify`): no backup's
                // status to record.
                let subject = match job.backup() {
                    Some(id) => format!("backup {id}"),
                    None => format!("the WAL archive of {}", job.target),
                };
                let mut f = match (status, result.state) {
                    (VerifyStatus::Ok, JobState::Succeeded) => {
                        finish(JobState::Succeeded, String::new())
                    }
                    (VerifyStatus::Ok, _) => finish(JobState::Failed, reason()),
                    (
                        VerifyStatus::Corrupt | VerifyStatus::Missing | VerifyStatus::Unverified,
                        _,
                    ) => {
                        let what = if detail.is_empty() {
                            "no detail from the agent".to_owned()
                        } else {
                            detail.clone()
                        };
                        finish(JobState::Failed, format!("{subject} is {status}: {what}"))
                    }
                };
                f.detail = status.as_str().to_owned();
                if job.backup_id.is_none() {
                    return Ok(catalog.finish_job(&job.id, &f).await?);
                }
                let outcome = VerifyOutcome {
                    status,
                    detail,
                    verified_at_ms: now,
                };
                if !job.repository.is_empty() {
                    // A copy's verify: its verdict is the copy's, not the backup's.
                    return Ok(catalog
                        .finish_copy_verify_job(
                            &job.id,
                            &f,
                            backup_id()?,
                            &job.repository,
                            &outcome,
                        )
                        .await?);
                }
                Ok(catalog
                    .finish_verify_job(&job.id, &f, backup_id()?, &outcome)
                    .await?)
            }
            (JobKind::Export, Some(JobOutput::Export(x))) => {
                // The agent checked both hashes against the record it was sent; the file
                // must be that backup's raw dump.
                if let Some(b) = catalog.get_backup(backup_id()?).await?
                    && (b.raw_sha256 != x.raw_sha256 || b.raw_size != x.raw_bytes)
                {
                    return Err(mismatch(&format!(
                        "an export of {} bytes with SHA-256 {}, not backup {}'s raw dump",
                        x.raw_bytes, x.raw_sha256, b.backup_id
                    )));
                }
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = x.path.as_str().to_owned();
                let written = crate::model::ExportWritten {
                    raw_bytes: x.raw_bytes,
                    raw_sha256: x.raw_sha256,
                };
                Ok(catalog
                    .finish_export_job(&job.id, &f, &x.path, &written)
                    .await?)
            }
            (JobKind::Delete, Some(JobOutput::Delete(Deleted { existed, .. }))) => {
                // Gone from the repository (or already gone): drop the catalog row too.
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = if existed { "deleted" } else { "already gone" }.to_owned();
                if !job.repository.is_empty() {
                    return Ok(catalog
                        .finish_copy_delete_job(&job.id, &f, backup_id()?, &job.repository)
                        .await?);
                }
                Ok(catalog.finish_delete_job(&job.id, &f, backup_id()?).await?)
            }
            (JobKind::Copy, Some(JobOutput::Copy(c))) => {
                if c.repository != job.repository {
                    return Err(mismatch(&format!("a copy to repository {}", c.repository)));
                }
                // The agent checked what it read against the record it was sent; the data
                // written must be this backup's.
                if let Some(b) = catalog.get_backup(backup_id()?).await?
                    && b.stored_sha256 != c.stored_sha256
                {
                    return Err(mismatch(&format!(
                        "a copy with SHA-256 {}, not backup {}'s stored data",
                        c.stored_sha256, b.backup_id
                    )));
                }
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = if c.already_there {
                    format!("already in {}", c.repository)
                } else {
                    format!(
                        "{} object(s), {} bytes copied to {}",
                        c.objects, c.stored_bytes, c.repository
                    )
                };
                Ok(catalog.finish_copy_job(&job.id, &f).await?)
            }
            (JobKind::RotateKeys, Some(JobOutput::RotateKeys(keys))) => {
                let dry_run = job.rotation.as_ref().is_some_and(|r| r.dry_run);
                let (detail, failed) = crate::keys::apply_rotation(catalog, &keys, dry_run).await?;
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = detail;
                if let Some(failed) = failed {
                    f.state = JobState::Failed;
                    f.error = failed;
                }
                Ok(catalog.finish_job(&job.id, &f).await?)
            }
            (JobKind::Check, None) => {
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = check_detail(&f.report);
                Ok(catalog.finish_job(&job.id, &f).await?)
            }
            (JobKind::Pin, None) => Ok(catalog
                .finish_job(&job.id, &finish(JobState::Succeeded, String::new()))
                .await?),
            (JobKind::List, Some(JobOutput::List(backups))) => {
                let mut f = finish(JobState::Succeeded, String::new());
                f.detail = format!("{} manifest(s)", backups.len());
                // The rebuild that asked for it takes the manifests (before the job ends, so
                // it finds them when it sees the job succeeded).
                self.parts.listings.deliver(&job.id, backups);
                Ok(catalog.finish_job(&job.id, &f).await?)
            }
            (JobKind::Verify, None) if result.state != JobState::Succeeded => Ok(catalog
                .finish_job(&job.id, &finish(result.state, reason()))
                .await?),
            (_, None) => Err(mismatch("no result")),
            (_, Some(_)) => Err(mismatch("the result of another kind of job")),
        }
    }
}

/// A check job's one-line verdict: its worst finding.
fn check_detail(report: &crate::model::Report) -> String {
    use crate::model::Severity;
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    match report.worst() {
        None => "no findings".to_owned(),
        Some(w) if w.severity < Severity::Warning => "ok".to_owned(),
        Some(_) => format!(
            "{} error(s), {} warning(s)",
            count(Severity::Error),
            count(Severity::Warning)
        ),
    }
}

/// No message for this long (three missed heartbeats and some slack) ends a session.
pub(crate) fn idle_limit(jobs: &crate::config::JobsConfig) -> Duration {
    jobs.heartbeat_interval * 3 + Duration::from_secs(10)
}
