//! A server process started by a test: output captured to files, stopped with SIGTERM.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a graceful stop may take before the harness gives up on it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child process whose stdout and stderr go to `<log_dir>/<name>.stdout.log` and
/// `<name>.stderr.log` (appended to, so a restarted process keeps one history).
///
/// Dropping a `Proc` that still runs sends SIGTERM and waits; only when that times out is the
/// process killed (and that is reported). When the test is failing, the logs are printed.
pub struct Proc {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        std::fs::create_dir_all(log_dir).expect("create log dir");
        let stdout_path = log_dir.join(format!("{name}.stdout.log"));
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(open(&stdout_path))
            .stderr(open(&stderr_path));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by number with `kill(1)` (the workspace forbids `unsafe`, so no libc).
    pub fn signal(&self, signal: &str) {
        // A process that already exited (a zombie until waited for) still accepts signals, so a
        // failure here means something is badly wrong.
        assert!(
            self.try_signal(signal),
            "kill -{signal} {} failed",
            self.pid()
        );
    }

    /// [`Proc::signal`] that reports failure instead of panicking (for `Drop`).
    fn try_signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Graceful stop: SIGTERM, then wait. Panics if the process does not exit within
    /// [`STOP_TIMEOUT`] (after killing it so nothing is left behind).
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        self.signal("TERM");
        match self.wait_exit(STOP_TIMEOUT) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; logs:\n{}",
                    self.name,
                    self.logs_tail(64 * 1024)
                );
            }
        }
    }

    /// SIGKILL and reap. Only for tests that are about a crash.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        self.child.kill().expect("SIGKILL");
        let s = self.child.wait().expect("wait after SIGKILL");
        self.status = Some(s);
        s
    }

    /// stdout and stderr, whole.
    pub fn logs(&self) -> String {
        let out = std::fs::read(&self.stdout_path).unwrap_or_default();
        let err = std::fs::read(&self.stderr_path).unwrap_or_default();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    }

    /// The last `max` bytes of stdout and of stderr, labelled.
    pub fn logs_tail(&self, max: usize) -> String {
        let tail = |p: &Path| {
            let b = std::fs::read(p).unwrap_or_default();
            let start = b.len().saturating_sub(max);
            String::from_utf8_lossy(&b[start..]).into_owned()
        };
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}",
            self.name,
            self.stdout_path.display(),
            tail(&self.stdout_path),
            self.name,
            self.stderr_path.display(),
            tail(&self.stderr_path)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail(32 * 1024));
        }
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.try_signal("TERM");
        if self.wait_exit(STOP_TIMEOUT).is_none() {
            eprintln!(
                "{} (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
                self.name,
                self.pid()
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`); 0 if the process or the line is
/// gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
