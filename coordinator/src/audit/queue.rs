//! The bounded queue refused calls are audited through (see [`DeniedQueue`]).

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

use super::model::AuditEntry;

/// Refused-call records waiting to be stored; a flood beyond this is counted, not queued.
const DENIED_QUEUE: usize = 1024;

/// The bounded queue refused calls are audited through: a refusal never waits for the catalog
/// and never spawns a task, and identical refusals that queue up while a write is in progress
/// are stored as one row with a count.
#[derive(Debug)]
pub struct DeniedQueue {
    tx: mpsc::Sender<AuditEntry>,
    rx: Mutex<Option<mpsc::Receiver<AuditEntry>>>,
    dropped: AtomicU64,
}

impl Default for DeniedQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(DENIED_QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl DeniedQueue {
    /// Refusals counted instead of queued since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// The receiving end, for the one task that stores refusals (`None` after the first call).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<AuditEntry>> {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }

    /// Queues a refused call's record; when the queue is full it is counted instead.
    pub fn push(&self, entry: AuditEntry, metrics: &crate::metrics::Metrics) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics.audit_dropped(1);
        }
    }
}
