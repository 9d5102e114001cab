//! What every job gets: its id, the agent's config, byte counters and phase for progress
//! reports, and its own cancellation token.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::{config::Config, pipeline::Counters, repo::ActiveWrites, report::Reporter};

#[derive(Debug, Clone)]
pub struct JobCtx {
    pub job_id: String,
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    pub phase: Arc<Mutex<String>>,
    pub cancel: CancellationToken,
    /// Findings and plan for the operator, sent with the result.
    pub report: Reporter,
    /// The agent's backups being written (the janitor leaves them alone).
    pub writes: ActiveWrites,
}

impl JobCtx {
    pub fn new(job_id: String, config: Arc<Config>, cancel: CancellationToken) -> Self {
        Self {
            job_id,
            config,
            counters: Arc::default(),
            phase: Arc::new(Mutex::new("starting".into())),
            cancel,
            report: Reporter::default(),
            writes: ActiveWrites::default(),
        }
    }

    pub fn set_phase(&self, phase: &str) {
        if let Ok(mut p) = self.phase.lock() {
            phase.clone_into(&mut p);
        }
        tracing::debug!(phase, "job phase");
    }

    pub fn phase(&self) -> String {
        self.phase.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn progress(&self) -> lifeboat_proto::Progress {
        use std::sync::atomic::Ordering;
        lifeboat_proto::Progress {
            raw_bytes: self.counters.raw.load(Ordering::Relaxed),
            stored_bytes: self.counters.stored.load(Ordering::Relaxed),
            phase: self.phase(),
        }
    }
}

/// RFC 3339 UTC for a Unix-milliseconds timestamp.
pub fn rfc3339_ms(ms: i64) -> String {
    lifeboat_common::time::rfc3339(ms).unwrap_or_default()
}
