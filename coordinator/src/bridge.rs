//! Job changes between the coordinators of one PostgreSQL catalog (ADR 0038). Each job change
//! a coordinator makes is announced on the catalog's `lifeboat_jobs` channel as
//! `INSTANCE JOB_ID STATE`. Every coordinator listens; for another's notice it reads the job
//! and hands it to its own watchers (`WatchJob` on a standby; on the active one also the loops
//! that react to jobs ending). The active one, which holds the agent sessions, also wakes its
//! dispatcher (a job queued through a standby), counts jobs that ended elsewhere, and carries
//! out the cancels asked through a standby (cancels.rs).
//!
//! Notices are best effort: one lost with the listening connection delays a standby's watch
//! until it re-reads the job (`grpc/control/jobs.rs`), and the active one dispatches again
//! whenever its listener reconnects.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    catalog::{Catalog, PostgresCatalog},
    hub::Hub,
    metrics::Metrics,
    model::JobState,
};

/// Notices waiting to be sent; beyond this they are dropped (see the module's doc).
const OUTBOX: usize = 4096;
/// The pause before listening again after the listener could not connect.
const RETRY: Duration = Duration::from_secs(1);

/// What the bridge reads and tells.
#[derive(Clone)]
pub struct Bridge {
    pub hub: Arc<Hub>,
    pub catalog: Catalog,
    pub jobs: crate::jobs::Jobs,
    pub metrics: Arc<Metrics>,
    /// This process's name on the channel, so it skips its own notices.
    pub instance: String,
}

/// One job change as it travels: `INSTANCE JOB_ID STATE`.
#[derive(Debug, PartialEq, Eq)]
struct Notice<'a> {
    instance: &'a str,
    job_id: &'a str,
    state: JobState,
}

impl<'a> Notice<'a> {
    fn parse(payload: &'a str) -> Option<Self> {
        let mut parts = payload.split(' ');
        let (Some(instance), Some(job_id), Some(state), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            instance,
            job_id,
            state: JobState::parse(state)?,
        })
    }
}

/// What [`Hub::announce`] queues for the other coordinators: `JOB_ID STATE`.
pub fn outgoing(job_id: &str, state: JobState) -> String {
    format!("{job_id} {state}")
}

/// Starts sending this coordinator's job changes and listening to the others', until
/// `cancel`.
pub fn start(
    bridge: Bridge,
    settings: PostgresCatalog,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) {
    let (tx, rx) = mpsc::channel(OUTBOX);
    bridge.hub.set_outbox(tx);
    tasks.spawn(send(bridge.clone(), rx, cancel.clone()));
    tasks.spawn(listen(bridge, settings, cancel));
}

async fn send(b: Bridge, mut rx: mpsc::Receiver<String>, cancel: CancellationToken) {
    loop {
        let change = tokio::select! {
            () = cancel.cancelled() => return,
            change = rx.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        let payload = format!("{} {change}", b.instance);
        if let Err(e) = b.catalog.notify_job(&payload).await {
            tracing::warn!(
                change = %change,
                "could not tell the other coordinators about a job change: {e}; their \
                 watches catch up when they next read the job"
            );
        }
    }
}

async fn listen(b: Bridge, settings: PostgresCatalog, cancel: CancellationToken) {
    let mut listener = None;
    loop {
        let Some(l) = listener.as_mut() else {
            match settings.listen_jobs().await {
                Ok(l) => {
                    listener = Some(l);
                    b.caught_up();
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot listen for the other coordinators' job changes: {e}; \
                         retrying in {} s",
                        RETRY.as_secs()
                    );
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
            continue;
        };
        let got = tokio::select! {
            () = cancel.cancelled() => return,
            got = l.try_recv() => got,
        };
        match got {
            Ok(Some(n)) => b.on_notice(n.payload()).await,
            // The connection was lost; the next call connects again. What was announced in
            // between is lost: catch up.
            Ok(None) => {
                tracing::warn!("lost the connection for job changes; listening again");
                b.caught_up();
            }
            Err(e) => {
                tracing::warn!("listening for job changes failed: {e}; listening again");
                listener = None;
            }
        }
    }
}

impl Bridge {
    /// After notices may have been missed: the active one hands out what is queued.
    fn caught_up(&self) {
        if self.hub.is_active() {
            self.hub.request_dispatch();
        }
    }

    async fn on_notice(&self, payload: &str) {
        let Some(notice) = Notice::parse(payload) else {
            tracing::warn!(payload, "ignored a malformed job notice");
            return;
        };
        if notice.instance == self.instance || !(self.hub.is_active() || self.hub.watched()) {
            // Its own, or a standby where nobody watches: nothing to read.
            return;
        }
        let job = match self.catalog.get_job(notice.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job_id = notice.job_id, "could not read a changed job: {e}");
                return;
            }
        };
        self.hub.publish(&job);
        if !self.hub.is_active() {
            return;
        }
        if notice.state.is_terminal() {
            // Counted from the notice's state: a notice read after a later change sees the
            // later state, and each job ends once.
            let mut ended = job.clone();
            ended.state = notice.state;
            self.metrics.job_finished(&ended);
        }
        // A cancel asked through the standby (its notice leaves the job's state as it was).
        if let Err(e) = crate::cancels::apply_requests(&self.hub, &self.catalog, &self.jobs).await {
            tracing::warn!("could not carry out the cancels asked through a standby: {e}");
        }
        self.hub.request_dispatch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_refuse_anything_else() {
        let out = outgoing("job-1", JobState::Cancelled);
        let payload = format!("coord-a {out}");
        assert_eq!(
            Notice::parse(&payload),
            Some(Notice {
                instance: "coord-a",
                job_id: "job-1",
                state: JobState::Cancelled,
            })
        );
        for bad in [
            "",
            "coord-a",
            "coord-a job-1",
            "coord-a job-1 exploded",
            "coord-a job-1 running extra",
        ] {
            assert_eq!(Notice::parse(bad), None, "{bad:?}");
        }
    }
}
