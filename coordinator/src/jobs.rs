//! The job lifecycle in one place: what "a job was queued" and "a job ended" mean beyond the
//! catalog row: the log line, the event for `WatchJob` watchers, the metrics and the
//! dispatcher's wake-up. Writers that change more than the job in one transaction (a backup
//! result, a prune's delete mark, a scheduler tick) call [`queued`] or [`finished`] after it.

use crate::{
    catalog::{CatalogError, InsertJob},
    hub::Hub,
    model::{Finish, Job, NewJob, Progress},
};

/// Inserts `job`; when it was created, announces it ([`queued`]).
pub async fn queue(hub: &Hub, job: &NewJob) -> Result<InsertJob, CatalogError> {
    let outcome = hub.catalog.insert_job(job).await?;
    if let InsertJob::Inserted(created) = &outcome {
        queued(hub, created);
    }
    Ok(outcome)
}

/// Marks a handed-out job running (the agent accepted it) and tells watchers. `None`: it
/// was not waiting for that.
pub async fn start(hub: &Hub, id: &str, now_ms: i64) -> Result<Option<Job>, CatalogError> {
    let started = hub.catalog.mark_running(id, now_ms).await?;
    if let Some(job) = &started {
        hub.publish(job);
    }
    Ok(started)
}

/// Records a running job's progress and tells watchers.
pub async fn progress(hub: &Hub, id: &str, progress: &Progress) -> Result<(), CatalogError> {
    if let Some(job) = hub.catalog.set_progress(id, progress).await? {
        hub.publish(&job);
    }
    Ok(())
}

/// Ends job `id` as `finish` says; when it was still open, announces it ([`finished`]).
/// `None`: it had already ended.
pub async fn finish(hub: &Hub, id: &str, finish: &Finish) -> Result<Option<Job>, CatalogError> {
    let done = hub.catalog.finish_job(id, finish).await?;
    if let Some(job) = &done {
        finished(hub, job);
    }
    Ok(done)
}

/// A job was queued: log it, tell watchers, and wake the dispatcher.
pub fn queued(hub: &Hub, job: &Job) {
    tracing::info!(
        job_id = %job.id,
        target = %job.target,
        agent = %job.agent,
        backup_id = job.backup(),
        kind = %job.kind,
        requested_by = %job.requested_by,
        "job queued"
    );
    hub.publish(job);
    hub.request_dispatch();
}

/// A job reached a terminal state: tell watchers, count it, and let the dispatcher fill the
/// slot it freed.
pub fn finished(hub: &Hub, job: &Job) {
    tracing::info!(
        job_id = %job.id,
        target = %job.target,
        backup_id = job.backup(),
        state = %job.state,
        error = %job.error,
        "job finished"
    );
    hub.publish(job);
    hub.metrics.job_finished(job);
    hub.request_dispatch();
}
