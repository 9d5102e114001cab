//! What the scheduler's last passes found, shared between the scheduler task and the health
//! report. Plain data: the health code reads it without depending on the scheduler.

use std::{sync::Mutex, time::Duration};

/// What the scheduler's last passes found, for `/health/detailed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerHealth {
    /// When the last pass completed.
    pub last_ok_ms: Option<i64>,
    /// The last failed pass, if it came after the last good one.
    pub last_error: Option<(i64, String)>,
    /// Schedules in effect (own and environment defaults), at the last good pass.
    pub schedules: usize,
    /// Paused schedules: the target for a backup schedule, `target (kind)` for the others.
    pub paused: Vec<String>,
    /// The soonest next start among the schedules not paused: (target, kind, Unix ms).
    pub next_run: Option<(String, &'static str, i64)>,
}

/// Shared between the scheduler task and the HTTP handlers.
#[derive(Debug, Default)]
pub struct HealthCell(Mutex<SchedulerHealth>);

impl HealthCell {
    pub(crate) fn update(&self, f: impl FnOnce(&mut SchedulerHealth)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn get(&self) -> SchedulerHealth {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How long without a completed pass before the scheduler is reported critical (it passes
/// every second).
pub const STALL_AFTER: Duration = Duration::from_secs(30);
