//! `compression_level = "auto"`: the zstd level follows what the machine can spare while a
//! backup runs, like `zstd --adapt`, within [`MIN_LEVEL`, `MAX_LEVEL`].
//!
//! Every [`WINDOW`] the reading thread looks at two figures:
//! - how much of the window it spent waiting for the dump tool (blocked in `read`): almost
//!   none means the dump is ahead of the compressor and its pipe backs up;
//! - how idle the machine's CPUs were (`/proc/stat`): almost none means zstd's workers take
//!   cores the dump tool and the database server need. Under a CPU quota (systemd's
//!   `CPUQuota=`, a container's limit: [`cgroup`]) the share of the quota left unused counts
//!   too, the smaller of the two.
//!
//! Either one lowers the level by one. Waiting on the dump with idle CPUs raises it by one:
//! the backup keeps pace either way, and the spare cycles buy a smaller backup. zstd applies a
//! new level from its next job (multithreaded mode allows the change inside a frame), so a
//! change costs nothing and the stream stays one frame.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::cgroup;

pub const MIN_LEVEL: i32 = 1;
/// Where a backup starts: the fastest level, so the first windows never hold the dump back;
/// spare CPU raises it within a few windows.
pub const START_LEVEL: i32 = 1;
pub const MAX_LEVEL: i32 = 9;
/// How often the level is reconsidered: a few of zstd's 4 MiB jobs at a few hundred MB/s.
const WINDOW: Duration = Duration::from_millis(250);
/// Waiting less than this share of a window for the dump: the compressor is the bottleneck.
const BEHIND: f64 = 0.05;
/// Waiting more than this share: the compressor has time to spare.
const AHEAD: f64 = 0.25;
/// Idle CPU share below which the machine is saturated, and above which it has room.
const SATURATED: f64 = 0.05;
const ROOM: f64 = 0.20;

/// What one window showed.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Share of the window spent waiting for the dump tool's output.
    pub waiting: f64,
    /// Share of all CPUs' time that was idle, or of the CPU quota left unused when that is
    /// smaller; when known.
    pub idle: Option<f64>,
}

/// The next level after a window at `level`.
pub fn decide(level: i32, w: Window) -> i32 {
    let saturated = w.idle.is_some_and(|i| i < SATURATED);
    let room = w.idle.is_none_or(|i| i > ROOM);
    if w.waiting < BEHIND || saturated {
        (level - 1).max(MIN_LEVEL)
    } else if w.waiting > AHEAD && room {
        (level + 1).min(MAX_LEVEL)
    } else {
        level
    }
}

/// Busy and idle jiffies of all CPUs, from the first line of `/proc/stat`. (Two numbers from
/// one line: a crate for all of procfs would be more code than this.)
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    idle: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(stat.lines().next()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal …`
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace();
        if f.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = f.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some(Self {
            idle,
            total: v.iter().sum(),
        })
    }

    fn idle_share_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        (total > 0).then(|| idle as f64 / total as f64)
    }
}

/// The level controller of one backup.
pub struct Adapt {
    level: i32,
    started: Instant,
    waited: Duration,
    cpu: Option<CpuTimes>,
    /// The CPU quotas over the agent, and their usage at the start of the window.
    quotas: Vec<(cgroup::Quota, Option<Duration>)>,
    /// Raw bytes compressed at each level.
    used: BTreeMap<i32, u64>,
}

impl Adapt {
    pub fn new(level: i32) -> Self {
        let quotas = cgroup::quotas();
        for q in &quotas {
            tracing::debug!(cpus = q.cpus, cgroup = %q.path().display(), "adaptive compression under a CPU quota");
        }
        Self::with_quotas(level, quotas)
    }

    fn with_quotas(level: i32, quotas: Vec<cgroup::Quota>) -> Self {
        Self {
            level: level.clamp(MIN_LEVEL, MAX_LEVEL),
            started: Instant::now(),
            waited: Duration::ZERO,
            cpu: CpuTimes::now(),
            quotas: quotas
                .into_iter()
                .map(|q| {
                    let u = q.used();
                    (q, u)
                })
                .collect(),
            used: BTreeMap::new(),
        }
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    /// Time spent blocked reading the dump tool's output.
    pub fn waited(&mut self, d: Duration) {
        self.waited += d;
    }

    /// `n` raw bytes went to the compressor at the current level.
    pub fn fed(&mut self, n: u64) {
        *self.used.entry(self.level).or_default() += n;
    }

    /// At the end of a window, the new level if it changed.
    pub fn tick(&mut self) -> Option<i32> {
        let elapsed = self.started.elapsed();
        if elapsed < WINDOW {
            return None;
        }
        let cpu = CpuTimes::now();
        let machine = match (&cpu, &self.cpu) {
            (Some(now), Some(then)) => now.idle_share_since(then),
            _ => None,
        };
        let mut idle = machine;
        for (q, then) in &mut self.quotas {
            let now = q.used();
            if let (Some(a), Some(b)) = (*then, now)
                && let Some(spare) = cgroup::spare(q, a, b, elapsed)
            {
                idle = Some(idle.map_or(spare, |i| i.min(spare)));
            }
            *then = now;
        }
        let w = Window {
            waiting: self.waited.as_secs_f64() / elapsed.as_secs_f64(),
            idle,
        };
        let next = decide(self.level, w);
        tracing::trace!(level = self.level, next, waiting = w.waiting, idle = ?w.idle, "adaptive compression");
        self.started = Instant::now();
        self.waited = Duration::ZERO;
        self.cpu = cpu;
        (next != self.level).then(|| {
            self.level = next;
            next
        })
    }

    /// Raw bytes per level, lowest level first.
    pub fn used(self) -> Vec<(i32, u64)> {
        self.used.into_iter().filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(waiting: f64, idle: Option<f64>) -> Window {
        Window { waiting, idle }
    }

    #[test]
    fn a_backed_up_pipe_or_a_saturated_machine_lowers_the_level() {
        assert_eq!(decide(3, w(0.01, Some(0.5))), 2, "dump ahead of zstd");
        assert_eq!(decide(3, w(0.5, Some(0.0))), 2, "no idle CPU");
        assert_eq!(decide(MIN_LEVEL, w(0.0, Some(0.0))), MIN_LEVEL);
    }

    #[test]
    fn waiting_on_the_dump_with_idle_cpus_raises_it() {
        assert_eq!(decide(3, w(0.6, Some(0.5))), 4);
        assert_eq!(
            decide(3, w(0.6, None)),
            4,
            "no /proc: the wait alone decides"
        );
        assert_eq!(decide(MAX_LEVEL, w(0.9, Some(0.9))), MAX_LEVEL);
    }

    #[test]
    fn in_between_it_holds() {
        assert_eq!(decide(3, w(0.1, Some(0.5))), 3, "waiting a little");
        assert_eq!(decide(3, w(0.6, Some(0.1))), 3, "little idle CPU");
    }

    #[test]
    fn proc_stat_is_read_as_idle_plus_iowait_over_all() {
        let a = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0").expect("parse");
        let b = CpuTimes::parse("cpu  200 0 100 850 50 0 0 0 0 0").expect("parse");
        let share = b.idle_share_since(&a).expect("share");
        assert!((share - 50.0 / 200.0).abs() < 1e-9, "{share}");
        assert!(CpuTimes::parse("cpu0 1 2 3 4").is_none());
        assert!(CpuTimes::parse("cpu  x").is_none());
    }

    #[test]
    fn bytes_are_booked_to_the_level_that_compressed_them() {
        let mut a = Adapt::new(3);
        a.fed(10);
        a.level = 2;
        a.fed(5);
        a.fed(5);
        assert_eq!(a.used(), vec![(2, 10), (3, 10)]);
        assert_eq!(Adapt::new(15).level(), MAX_LEVEL);
    }

    #[test]
    fn a_used_up_cpu_quota_lowers_the_level_whatever_the_machine_has_idle() {
        let t = tempfile::tempdir().expect("tempdir");
        let usage = t.path().join("cpuacct.usage");
        std::fs::write(&usage, "0").expect("write");
        let mut a = Adapt::with_quotas(3, vec![cgroup::Quota::cpuacct(1.0, usage.clone())]);
        // The cgroup used 100 CPU-seconds in the window: far over its one CPU.
        std::fs::write(&usage, "100000000000").expect("write");
        std::thread::sleep(WINDOW + Duration::from_millis(10));
        a.waited(WINDOW);
        assert_eq!(a.tick(), Some(2), "waiting on the dump, but no quota left");
    }
}
