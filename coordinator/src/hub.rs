//! The open agent sessions and the job change events: who is connected, the streams to them,
//! the events `WatchJob` watchers and waiters subscribe to, and the dispatcher's wake-up. It
//! holds nothing else; the catalog, the config and the metrics are handed to each part that
//! uses them ([`crate::parts::Parts`]). What lives here is lost (and rebuilt) on restart.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
};

use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Config, metrics::Metrics, model::Job, to_agent::ToAgent};

/// What the coordinator sends on an agent's session stream: a message, or the status that
/// ends the stream.
pub type Outbound = Result<ToAgent, tonic::Status>;

/// An open agent session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    pub max_concurrent_jobs: u32,
    /// Cancelled when the session is replaced or the coordinator shuts down.
    pub cancel: CancellationToken,
}

impl SessionHandle {
    /// Queues a message for the agent without waiting. False if the session is gone or its
    /// queue is full (the caller retries later or treats the agent as unreachable).
    pub fn try_send(&self, msg: ToAgent) -> bool {
        self.tx.try_send(Ok(msg)).is_ok()
    }
}

#[derive(Debug, Default)]
struct Sessions {
    live: HashMap<String, SessionHandle>,
    /// When each known agent's last session ended.
    away_since_ms: HashMap<String, i64>,
}

pub struct Hub {
    /// Only for the connected-agents gauge, kept in step with `sessions`.
    metrics: Arc<Metrics>,
    sessions: Mutex<Sessions>,
    events: broadcast::Sender<Job>,
    dispatch_wanted: Notify,
    /// Held by the dispatcher and by session set-up, so a job is never handed out twice.
    pub dispatch_lock: tokio::sync::Mutex<()>,
    next_session: AtomicU64,
    /// When this coordinator became the active one of its catalog (Unix ms; its start for a
    /// SQLite catalog).
    active_since_ms: AtomicI64,
    /// Whether this coordinator is the active one: it holds the agent sessions and runs the
    /// scheduled work. A standby serving operators has this false (ADR 0038).
    active: AtomicBool,
    /// Where job changes go to reach the other coordinators of the catalog (PostgreSQL only).
    outbox: OnceLock<mpsc::Sender<String>>,
    /// Cancelled at shutdown: ends agent sessions and job watches so the server can drain.
    pub streams: CancellationToken,
    /// Session and watch tasks.
    pub tasks: TaskTracker,
}

/// Counts open job watches per caller, so one certificate cannot hold unbounded streams (each
/// is a task and a subscription).
#[derive(Debug, Default)]
pub struct WatchSlots {
    open: Mutex<HashMap<String, usize>>,
}

/// One open watch; dropping it frees the slot.
#[derive(Debug)]
pub struct WatchSlot {
    slots: Arc<WatchSlots>,
    who: String,
}

impl WatchSlots {
    /// Open watches one caller may have at once.
    pub const PER_CALLER: usize = 32;

    pub fn try_open(self: &Arc<Self>, who: &str) -> Option<WatchSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.to_owned()).or_insert(0);
        if *n >= Self::PER_CALLER {
            return None;
        }
        *n += 1;
        Some(WatchSlot {
            slots: self.clone(),
            who: who.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.who);
            }
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            metrics,
            sessions: Mutex::new(Sessions::default()),
            events,
            dispatch_wanted: Notify::new(),
            dispatch_lock: tokio::sync::Mutex::new(()),
            next_session: AtomicU64::new(1),
            active_since_ms: AtomicI64::new(lifeboat_common::time::now_ms()),
            active: AtomicBool::new(false),
            outbox: OnceLock::new(),
            streams: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding this lock cannot leave the maps inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a new session for `agent`, replacing (and cancelling) any previous one.
    pub fn register_session(
        &self,
        agent: &str,
        max_concurrent_jobs: u32,
        tx: mpsc::Sender<Outbound>,
    ) -> SessionHandle {
        let handle = SessionHandle {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            tx,
            max_concurrent_jobs,
            cancel: self.streams.child_token(),
        };
        let mut s = self.sessions();
        if let Some(old) = s.live.insert(agent.to_owned(), handle.clone()) {
            old.cancel.cancel();
        }
        s.away_since_ms.remove(agent);
        self.metrics.set_agents_connected(s.live.len());
        handle
    }

    /// Cancels and forgets the current session of `agent`, if any (a newer one is coming).
    pub fn drop_session(&self, agent: &str) {
        let mut s = self.sessions();
        if let Some(old) = s.live.remove(agent) {
            old.cancel.cancel();
            s.away_since_ms
                .insert(agent.to_owned(), lifeboat_common::time::now_ms());
            self.metrics.set_agents_connected(s.live.len());
        }
    }

    /// Marks the session `id` of `agent` ended, unless a newer session replaced it.
    pub fn end_session(&self, agent: &str, id: u64) -> bool {
        let mut s = self.sessions();
        if s.live.get(agent).is_some_and(|h| h.id == id) {
            s.live.remove(agent);
            s.away_since_ms
                .insert(agent.to_owned(), lifeboat_common::time::now_ms());
            self.metrics.set_agents_connected(s.live.len());
            true
        } else {
            false
        }
    }

    pub fn session(&self, agent: &str) -> Option<SessionHandle> {
        self.sessions().live.get(agent).cloned()
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.sessions().live.contains_key(agent)
    }

    pub fn connected_agents(&self) -> HashMap<String, SessionHandle> {
        self.sessions().live.clone()
    }

    /// Judges every target and agent of `snapshot` under `config`, with this coordinator's
    /// sessions.
    pub fn health_report(
        &self,
        snapshot: &crate::catalog::health::Snapshot,
        config: &Config,
        now_ms: i64,
    ) -> crate::health::Report {
        let connected = self.connected_agents();
        crate::health::Report::assess(
            snapshot,
            config,
            &|a| connected.contains_key(a),
            &|a| self.away_since_ms(a),
            now_ms,
        )
    }

    /// When this coordinator became active (Unix ms).
    pub fn active_since_ms(&self) -> i64 {
        self.active_since_ms.load(Ordering::Relaxed)
    }

    /// Whether this coordinator is the active one of its catalog.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// This coordinator is now the active one: agents away are counted from now (they had
    /// their sessions with the previous one).
    pub fn become_active(&self) {
        self.active_since_ms
            .store(lifeboat_common::time::now_ms(), Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
    }

    /// Since when `agent` has had no session: when its last one ended, or when this
    /// coordinator became active if it has not connected since.
    pub fn away_since_ms(&self, agent: &str) -> i64 {
        self.sessions()
            .away_since_ms
            .get(agent)
            .copied()
            .unwrap_or_else(|| self.active_since_ms())
    }

    /// Tells this coordinator's watchers that a job changed.
    pub fn publish(&self, job: &Job) {
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(job.clone());
    }

    /// Tells this coordinator's watchers, and the other coordinators of the catalog, that a
    /// job changed.
    pub fn announce(&self, job: &Job) {
        self.publish(job);
        if let Some(outbox) = self.outbox.get()
            && outbox
                .try_send(crate::bridge::outgoing(&job.id, job.state))
                .is_err()
        {
            // The other coordinators' watches re-read their jobs periodically; a lost
            // notice only delays them.
            tracing::debug!(job_id = %job.id, "job notice dropped: the outbox is full");
        }
    }

    /// Sends job changes to `outbox` from now on (set once, for a PostgreSQL catalog).
    pub fn set_outbox(&self, outbox: mpsc::Sender<String>) {
        let _ = self.outbox.set(outbox);
    }

    /// Whether anything here listens to job changes (watchers, or the active one's loops).
    pub fn watched(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Job> {
        self.events.subscribe()
    }

    pub fn request_dispatch(&self) {
        self.dispatch_wanted.notify_one();
    }

    pub async fn dispatch_requested(&self) {
        self.dispatch_wanted.notified().await;
    }
}
