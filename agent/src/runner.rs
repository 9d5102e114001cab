//! Runs the jobs the coordinator hands out: at most `max_concurrent_jobs` at once and one per
//! target, each with its own cancellation token, keeping every result until the coordinator
//! acknowledges it: in memory and in the on-disk [`Outbox`], so results survive a dropped
//! stream and an agent restart and are re-sent after the next Hello.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use lifeboat_common::ids::BackupId;
use lifeboat_proto::{self as pb, domain::JobOutput};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    config::Config,
    job::JobCtx,
    outbox::Outbox,
    repo::ActiveWrites,
    work::{CheckWork, Job, RefusedSpec, Work},
};

/// How often a running job reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What jobs tell the session, which forwards it to the coordinator when connected.
#[derive(Debug)]
pub enum Event {
    Accepted(String),
    Progress(String, pb::Progress),
    /// The result is also kept in the runner until acknowledged.
    Finished(Box<pb::JobResult>),
}

struct Running {
    locks: Vec<Lock>,
    cancel: CancellationToken,
}

/// What a job holds while it runs. Two jobs conflict when they name the same key and either
/// holds it exclusively.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lock {
    key: String,
    exclusive: bool,
}

impl Lock {
    fn exclusive(key: String) -> Self {
        Self {
            key,
            exclusive: true,
        }
    }

    fn shared(key: String) -> Self {
        Self {
            key,
            exclusive: false,
        }
    }

    fn conflicts(&self, other: &Self) -> bool {
        self.key == other.key && (self.exclusive || other.exclusive)
    }
}

/// The first running job whose locks conflict with `wanted`, and the contested key.
fn conflict<'a>(
    running: impl IntoIterator<Item = (&'a String, &'a [Lock])>,
    wanted: &[Lock],
) -> Option<(String, String)> {
    running.into_iter().find_map(|(job, held)| {
        held.iter()
            .find(|h| wanted.iter().any(|w| w.conflicts(h)))
            .map(|h| (job.clone(), h.key.clone()))
    })
}

#[derive(Default)]
struct State {
    running: HashMap<String, Running>,
    unacked: BTreeMap<String, pb::JobResult>,
}

#[derive(Clone)]
pub struct Runner {
    config: Arc<Config>,
    writes: ActiveWrites,
    state: Arc<Mutex<State>>,
    outbox: Outbox,
    events: mpsc::UnboundedSender<Event>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Runner {
    /// A runner holding the results left unacknowledged by an earlier run of the agent (read
    /// from the outbox in `state_dir`).
    pub fn new(
        config: Arc<Config>,
        writes: ActiveWrites,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Event>)> {
        let (outbox, pending) = Outbox::open(&config.state_dir)?;
        let state = State {
            running: HashMap::new(),
            unacked: pending.into_iter().map(|r| (r.job_id.clone(), r)).collect(),
        };
        let (events, rx) = mpsc::unbounded_channel();
        Ok((
            Self {
                config,
                writes,
                state: Arc::new(Mutex::new(state)),
                outbox,
                events,
                tracker: TaskTracker::new(),
                shutdown,
            },
            rx,
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs the coordinator must not consider lost: running, or finished and unacknowledged.
    pub fn known_jobs(&self) -> Vec<String> {
        let s = self.state();
        s.running.keys().chain(s.unacked.keys()).cloned().collect()
    }

    pub fn running_jobs(&self) -> Vec<String> {
        self.state().running.keys().cloned().collect()
    }

    pub fn unacked(&self) -> Vec<pb::JobResult> {
        self.state().unacked.values().cloned().collect()
    }

    pub fn ack(&self, job_id: &str) {
        if self.state().unacked.remove(job_id).is_some() {
            tracing::debug!(job_id, "result acknowledged");
            let outbox = self.outbox.clone();
            let job_id = job_id.to_owned();
            drop(tokio::task::spawn_blocking(move || outbox.remove(&job_id)));
        }
    }

    pub fn cancel(&self, job_id: &str) {
        if let Some(r) = self.state().running.get(job_id) {
            tracing::info!(job_id, "cancelling job at the coordinator's request");
            r.cancel.cancel();
        }
    }

    /// Starts a job. Refusals (invalid spec, limits) become a failed result right away.
    pub fn start(&self, spec: pb::JobSpec) {
        let job_id = spec.job_id.clone();
        let job = match Job::try_from(spec) {
            Ok(job) => job,
            Err(RefusedSpec::BadId) => {
                tracing::warn!("refused a job with an invalid id");
                return;
            }
            Err(e) => return self.finish_now(&job_id, pb::JobState::Failed, e.to_string()),
        };
        let locks = locks(&job);
        let cancel = {
            let mut s = self.state();
            if s.running.contains_key(&job_id) {
                drop(s);
                let _ = self.events.send(Event::Accepted(job_id));
                return;
            }
            if let Some(r) = s.unacked.get(&job_id).cloned() {
                drop(s);
                let _ = self.events.send(Event::Finished(Box::new(r)));
                return;
            }
            if s.running.len() >= self.config.max_concurrent_jobs as usize {
                drop(s);
                return self.finish_now(
                    &job_id,
                    pb::JobState::Failed,
                    format!(
                        "agent {} is already running its limit of {} jobs",
                        self.config.name, self.config.max_concurrent_jobs
                    ),
                );
            }
            if let Some((other, key)) = conflict(
                s.running.iter().map(|(id, r)| (id, r.locks.as_slice())),
                &locks,
            ) {
                drop(s);
                return self.finish_now(&job_id, pb::JobState::Failed, busy_message(&key, &other));
            }
            let cancel = self.shutdown.child_token();
            s.running.insert(
                job_id.clone(),
                Running {
                    locks,
                    cancel: cancel.clone(),
                },
            );
            cancel
        };
        let mut ctx = JobCtx::new(job_id.clone(), self.config.clone(), cancel);
        ctx.writes = self.writes.clone();
        let runner = self.clone();
        let work = job.work;
        let span = tracing::info_span!(
            "job",
            job_id = %job_id,
            kind = %work.kind(),
            target = work.target().or(work.record_target()),
            backup_id = work.backup_id().map(BackupId::as_str),
        );
        self.tracker.spawn(
            async move {
                let _ = runner.events.send(Event::Accepted(job_id.clone()));
                let result = runner.run(&ctx, work).await;
                // On disk before anyone hears of it: a restart from here on re-sends it.
                let stored = {
                    let (outbox, r) = (runner.outbox.clone(), result.clone());
                    tokio::task::spawn_blocking(move || outbox.put(&r)).await
                };
                match stored {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(
                        "failed to {e:#}; the result is kept in memory only and is lost if the agent restarts before the coordinator acknowledges it"
                    ),
                    Err(e) => tracing::warn!("failed to store the job result: {e}"),
                }
                {
                    let mut s = runner.state();
                    s.unacked.insert(job_id.clone(), result.clone());
                    s.running.remove(&job_id);
                }
                let _ = runner.events.send(Event::Finished(Box::new(result)));
            }
            .instrument(span),
        );
    }

    fn finish_now(&self, job_id: &str, state: pb::JobState, error: String) {
        tracing::warn!(job_id, "refused job: {error}");
        let r = pb::JobResult {
            job_id: job_id.to_owned(),
            state: state as i32,
            error,
            result: None,
            finished_at_ms: lifeboat_common::time::now_ms(),
            report: None,
        };
        self.state().unacked.insert(job_id.to_owned(), r.clone());
        let _ = self.events.send(Event::Finished(Box::new(r)));
    }

    async fn run(&self, ctx: &JobCtx, work: Work) -> pb::JobResult {
        let ticker = {
            let ctx = ctx.clone();
            let events = self.events.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let _ = events.send(Event::Progress(ctx.job_id.clone(), ctx.progress()));
                }
            })
        };
        tracing::info!("{} started", work.kind());
        let outcome = match &work {
            Work::Backup(b) => crate::backup::run(ctx, b)
                .await
                .map(|r| Some(JobOutput::Backup(Box::new(r)))),
            Work::Restore(r) if r.drill => crate::drill::run(ctx, r)
                .await
                .map(JobOutput::Drill)
                .map(Some),
            Work::Restore(r) => crate::restore::run(ctx, r)
                .await
                .map(JobOutput::Restore)
                .map(Some),
            Work::Verify { backup, decrypt } => crate::verify::run(ctx, backup, *decrypt)
                .await
                .map(JobOutput::Verify)
                .map(Some),
            Work::VerifyWal(t) => crate::wal::verify::run(ctx, t)
                .await
                .map(JobOutput::Verify)
                .map(Some),
            Work::Delete(b) => crate::maintenance::delete(ctx, b)
                .await
                .map(JobOutput::Delete)
                .map(Some),
            Work::List { repository } => {
                tracing::info!(%repository, "listing");
                crate::maintenance::list(ctx, repository)
                    .await
                    .map(JobOutput::List)
                    .map(Some)
            }
            Work::Check(c) => {
                tracing::info!(dry_run = matches!(c, CheckWork::DryRun(_)), "checking");
                crate::check::run(ctx, c).await.map(|()| None)
            }
            Work::Export(x) => crate::export::run(ctx, x)
                .await
                .map(JobOutput::Export)
                .map(Some),
            Work::Copy(c) => crate::copy::run(ctx, c)
                .await
                .map(JobOutput::Copy)
                .map(Some),
            Work::RotateKeys(r) => crate::keys::rotate(ctx, r)
                .await
                .map(JobOutput::RotateKeys)
                .map(Some),
            Work::Pin { backup, pin } => {
                tracing::info!(pinned = pin.is_some(), "writing the pin marker");
                crate::maintenance::pin(ctx, backup, pin.as_ref())
                    .await
                    .map(|()| None)
            }
        };
        ticker.abort();
        let _ = self
            .events
            .send(Event::Progress(ctx.job_id.clone(), ctx.progress()));
        let (state, error, result) = match outcome {
            Ok(r) => {
                tracing::info!("job succeeded");
                (pb::JobState::Succeeded, String::new(), r)
            }
            Err(_) if ctx.cancel.is_cancelled() => {
                let why = if self.shutdown.is_cancelled() {
                    "cancelled: the agent is shutting down"
                } else {
                    "cancelled by an operator"
                };
                tracing::info!("job {why}");
                (pb::JobState::Cancelled, why.to_owned(), None)
            }
            Err(e) => {
                tracing::warn!("job failed: {e:#}");
                (pb::JobState::Failed, crate::report::job_error(&e), None)
            }
        };
        pb::JobResult {
            job_id: ctx.job_id.clone(),
            state: state as i32,
            error,
            result: result.as_ref().map(Into::into),
            finished_at_ms: lifeboat_common::time::now_ms(),
            report: ctx.report.to_pb(),
        }
    }

    /// Cancels every job and waits for them to clean up.
    pub async fn shutdown(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Why a job was refused because another holds what it needs.
fn busy_message(key: &str, other: &str) -> String {
    if key.starts_with("backup ") {
        format!(
            "{key} is in use by job {other} on this agent; run this job again once that one has finished"
        )
    } else {
        format!("{key} is busy with job {other}; one job per target at a time")
    }
}

/// Jobs that may not run together share a key: backups and restores of one target; a restore
/// or verify reads its backup (shared), which a delete removes (exclusive); verifies of one
/// backup one at a time.
fn locks(job: &Job) -> Vec<Lock> {
    let backup = || job.work.backup_id().map_or("", BackupId::as_str);
    match &job.work {
        Work::Backup(b) => vec![Lock::exclusive(format!("target {}", b.target))],
        // A restore reads its backup until the end: a delete of it on this agent must wait,
        // even when the coordinator has given up on the restore (lease expired).
        // A data directory is written by one restore at a time, whatever its target.
        Work::Restore(r) => {
            let mut locks = vec![
                Lock::exclusive(format!("target {}", r.target)),
                Lock::shared(format!("backup {}", backup())),
            ];
            if let Some(dir) = &r.data_dir {
                locks.push(Lock::exclusive(format!("data directory {dir}")));
            }
            locks
        }
        Work::Verify { .. } => vec![
            Lock::shared(format!("backup {}", backup())),
            Lock::exclusive(format!("verify {}", backup())),
        ],
        Work::Delete(_) => vec![Lock::exclusive(format!("backup {}", backup()))],
        // An export reads its backup (a delete waits) and creates one file.
        Work::Export(x) => vec![
            Lock::shared(format!("backup {}", backup())),
            Lock::exclusive(format!("export {}", x.path)),
        ],
        // A copy reads its backup (a delete waits); one copy of it per repository at a time.
        // It copies the key object as it is: never beside a rotation of its target's keys,
        // which would miss the copy still being written.
        Work::Copy(c) => vec![
            Lock::shared(format!("backup {}", backup())),
            Lock::exclusive(format!("copy {} to {}", backup(), c.to)),
            Lock::shared(format!("keys of {}", c.backup.target.name())),
        ],
        // One rotation of a target's keys at a time, and none beside a copy of its backups.
        Work::RotateKeys(r) => vec![Lock::exclusive(format!("keys of {}", r.target))],
        // One read-back of a target's archive at a time; pushes and backups go on beside it.
        Work::VerifyWal(t) => vec![Lock::exclusive(format!("WAL archive of {t}"))],
        // Listings and checks only read, and a pin marker touches one small object beside a
        // manifest: they run beside anything.
        Work::List { .. } | Work::Check(_) | Work::Pin { .. } => {
            vec![Lock::exclusive(format!("{} {}", job.work.kind(), job.id))]
        }
    }
}

#[cfg(test)]
mod tests;
