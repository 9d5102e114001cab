//! Waiting for something to become true: poll with a deadline, never a fixed sleep.

use std::time::{Duration, Instant};

/// The deadline most waits use. Generous, because a poll returns as soon as the condition
/// holds; scaled by `LIFEBOAT_E2E_TIMEOUT_SCALE` (a float) on slow machines.
pub fn default_timeout() -> Duration {
    scaled(Duration::from_secs(60))
}

/// `d` times `LIFEBOAT_E2E_TIMEOUT_SCALE` (default 1).
pub fn scaled(d: Duration) -> Duration {
    let scale = std::env::var("LIFEBOAT_E2E_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    d.mul_f64(scale)
}

/// Calls `f` until it returns `Ok`, at most until `timeout` has passed, and returns its value.
/// Panics naming `what` and the last error when the deadline passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> anyhow::Result<T>) -> T {
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}: last error: {e:#}");
                }
            }
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// [`eventually`] with [`default_timeout`].
pub fn eventually_default<T>(what: &str, f: impl FnMut() -> anyhow::Result<T>) -> T {
    eventually(what, default_timeout(), f)
}
