//! The job lifecycle in one place: what "a job was queued" and "a job ended" mean beyond the
//! catalog row: the log line, the event for `WatchJob` watchers, the metrics and the
//! dispatcher's wake-up. Writers that change more than the job in one transaction (a backup
//! result, a prune's delete mark, a scheduler tick) call [`Jobs::queued`] or
//! [`Jobs::finished`] after it.

use std::sync::Arc;

use crate::{
    catalog::{Catalog, CatalogError, InsertJob},
    hub::Hub,
    metrics::Metrics,
    model::{Finish, Job, NewJob, Progress},
};

/// The jobs service: the catalog's job rows, the hub's events and wake-up, the job metrics.
#[derive(Clone)]
pub struct Jobs {
    catalog: Catalog,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl Jobs {
    pub fn new(catalog: Catalog, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        Self {
            catalog,
            hub,
            metrics,
        }
    }

    /// Inserts `job`; when it was created, announces it ([`Jobs::queued`]).
    pub async fn queue(&self, job: &NewJob) -> Result<InsertJob, CatalogError> {
        let outcome = self.catalog.insert_job(job).await?;
        if let InsertJob::Inserted(created) = &outcome {
            self.queued(created);
        }
        Ok(outcome)
    }

    /// Marks a handed-out job running (the agent accepted it) and tells watchers. `None`: it
    /// was not waiting for that.
    pub async fn start(&self, id: &str, now_ms: i64) -> Result<Option<Job>, CatalogError> {
        let started = self.catalog.mark_running(id, now_ms).await?;
        if let Some(job) = &started {
            self.hub.announce(job);
        }
        Ok(started)
    }

    /// Records a running job's progress and tells watchers.
    pub async fn progress(&self, id: &str, progress: &Progress) -> Result<(), CatalogError> {
        if let Some(job) = self.catalog.set_progress(id, progress).await? {
            self.hub.announce(&job);
        }
        Ok(())
    }

    /// Ends job `id` as `finish` says; when it was still open, announces it
    /// ([`Jobs::finished`]). `None`: it had already ended.
    pub async fn finish(&self, id: &str, finish: &Finish) -> Result<Option<Job>, CatalogError> {
        let done = self.catalog.finish_job(id, finish).await?;
        if let Some(job) = &done {
            self.finished(job);
        }
        Ok(done)
    }

    /// A job was queued: log it, tell watchers, and wake the dispatcher.
    pub fn queued(&self, job: &Job) {
        tracing::info!(
            job_id = %job.id,
            target = %job.target,
            agent = %job.agent,
            backup_id = job.backup(),
            kind = %job.kind,
            requested_by = %job.requested_by,
            "job queued"
        );
        self.hub.announce(job);
        self.hub.request_dispatch();
    }

    /// A job reached a terminal state: tell watchers, count it, and let the dispatcher fill
    /// the slot it freed.
    pub fn finished(&self, job: &Job) {
        tracing::info!(
            job_id = %job.id,
            target = %job.target,
            backup_id = job.backup(),
            state = %job.state,
            error = %job.error,
            "job finished"
        );
        self.hub.announce(job);
        // The active coordinator counts every job, those a standby ended (a cancel through
        // it) included, from their notices (bridge.rs).
        if self.hub.is_active() {
            self.metrics.job_finished(job);
        }
        self.hub.request_dispatch();
    }
}
