//! `restore --data-dir DIR --start-port N`: the restored directory started with `pg_ctl` as
//! its owner on port N (written into `postgresql.auto.conf`, so it stays), and watched until
//! recovery is where it was asked to stop: promoted and open for writes, paused at the
//! target, or shut down there. What the server logged about it (where it stopped, the last
//! transaction replayed, the new timeline) goes into the job's report. The server is left
//! running for the operator; if it does not get there, it is stopped and the job fails with
//! its log.
//!
//! The server's own log is the source: it is written in English for this start
//! (`lc_messages = C`) to `DIR/lifeboat-start.log` (`logging_collector = off` for this start
//! only; a later restart uses the cluster's settings).

use std::{net::TcpListener, path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{RecoveryAction, RecoveryTarget};
use tokio_util::sync::CancellationToken;

use super::destination::Destination;

/// Where the first start logs, inside the data directory.
pub(super) const LOG_FILE: &str = "lifeboat-start.log";
/// How often the log is read.
const POLL: Duration = Duration::from_millis(500);
/// How long `pg_ctl` itself may take to launch the server.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What the restore waits for, from the recovery asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// Open for writes (promoted, or a plain restore reaching consistency and ending
    /// recovery).
    Open,
    /// Paused at the target, read-only.
    Paused,
    /// Shut down at the target.
    ShutDown,
}

impl Until {
    pub(super) fn of(recovery: Option<(&RecoveryTarget, RecoveryAction)>) -> Self {
        match recovery {
            Some((RecoveryTarget::Latest, _)) | None => Until::Open,
            Some((_, RecoveryAction::Promote)) => Until::Open,
            Some((_, RecoveryAction::Pause)) => Until::Paused,
            Some((_, RecoveryAction::Shutdown)) => Until::ShutDown,
        }
    }
}

/// Checked before anything is written: the port is free on this host, and the server can
/// be started as the directory's owner (PostgreSQL refuses to run as root).
pub(super) fn preflight(port: u16, dest: &Destination) -> Result<()> {
    if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
        bail!("--start-port {port}: the port is not free on this host ({e}); pick another");
    }
    let euid = rustix::process::geteuid().as_raw();
    match dest {
        Destination::Empty { uid, .. } if *uid != 0 && (euid == 0 || euid == *uid) => Ok(()),
        Destination::Missing if euid != 0 => Ok(()),
        Destination::Empty { uid, .. } if *uid != 0 => bail!(
            "--start-port: the directory belongs to uid {uid} and this agent runs as uid {euid}; the server must run as the directory's owner (run the agent as root, or as that user)"
        ),
        _ => bail!(
            "--start-port: PostgreSQL does not run as root; create the directory empty and owned by the PostgreSQL user (e.g. install -d -o postgres -m 700 DIR) before the restore"
        ),
    }
}

/// The lines of a server log that say where recovery went.
fn interesting(line: &str) -> bool {
    [
        "recovery stopping",
        "redo done at",
        "last completed transaction was at log time",
        "selected new timeline ID",
        "consistent recovery state reached",
        "archive recovery complete",
        "recovery has paused",
        "pausing at the end of recovery",
        "shutdown at recovery target",
        "database system is ready to accept",
    ]
    .iter()
    .any(|m| line.contains(m))
}

/// The message of a log line, without its timestamp and process id prefix.
fn message(line: &str) -> &str {
    ["LOG:  ", "FATAL:  ", "PANIC:  ", "ERROR:  "]
        .iter()
        .find_map(|tag| line.find(tag).map(|i| &line[i..]))
        .unwrap_or(line)
        .trim()
}

/// What the log says so far. A FATAL line is not a verdict: clients connecting during
/// replay get FATALs too; a server that gives up exits, and that is seen.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Waiting,
    Reached,
}

pub(super) fn judge(log: &str, until: Until) -> Verdict {
    let has = |m: &str| log.lines().any(|l| l.contains(m));
    let reached = match until {
        Until::Open => has("database system is ready to accept connections"),
        // Without hot_standby PostgreSQL shuts down where it would pause.
        Until::Paused => {
            has("pausing at the end of recovery") || has("shutdown at recovery target")
        }
        Until::ShutDown => has("shutdown at recovery target"),
    };
    if reached {
        Verdict::Reached
    } else {
        Verdict::Waiting
    }
}

/// Whether the postmaster of `postmaster.pid` in `dir` is alive (a pid file left by a killed
/// server does not count).
pub(super) fn postmaster_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("postmaster.pid")) else {
        return false;
    };
    text.lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// What the start found, for the report.
pub(super) struct Started {
    /// The log's lines about recovery, in order.
    pub lines: Vec<String>,
}

fn pg_ctl(tool: &Path, owner: Option<(u32, u32)>) -> tokio::process::Command {
    let mut cmd = crate::process::tool_command(tool);
    cmd.env("LC_ALL", "C");
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// The server's log so far. Opened without following a link: the directory belongs to the
/// server's user, and what is read here goes into the job's report.
async fn read_log(path: &Path) -> String {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .and_then(|f| f.take(64 * 1024 * 1024).read_to_end(&mut bytes))
            .map(|_| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

/// Stops the server (fast, then immediate) as the directory's owner; errors are logged.
pub(super) async fn stop(tool: &Path, dir: &Path, owner: Option<(u32, u32)>) {
    for mode in ["fast", "immediate"] {
        let out = pg_ctl(tool, owner)
            .args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(dir)
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => return,
            Ok(o) => tracing::warn!(
                dir = %dir.display(),
                "pg_ctl stop -m {mode}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => tracing::warn!(dir = %dir.display(), "pg_ctl stop -m {mode}: {e}"),
        }
    }
}

/// Starts the server in `dir` on `port` and waits for `until`; the server is stopped again
/// if it does not get there (or on cancellation).
pub(super) async fn start_and_wait(
    tool: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
    port: u16,
    until: Until,
    cancel: &CancellationToken,
) -> Result<Started> {
    let log = dir.join(LOG_FILE);
    // A log copied in with the backup (its source was started this way) says nothing about
    // this start; whatever is there (a link too) goes.
    match std::fs::remove_file(&log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove {}", log.display())),
    }
    {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            crate::wal::recovery::write(
                &dir,
                &format!("\n# lifeboat restore --start-port\nport = {port}\n"),
                false,
            )
        })
        .await
        .context("write task panicked")??;
    }
    let launched = tokio::time::timeout(
        LAUNCH_TIMEOUT,
        pg_ctl(tool, owner)
            .args(["start", "-W", "-D"])
            .arg(dir)
            .arg("-l")
            .arg(&log)
            .args([
                "-o",
                "-c logging_collector=off -c log_destination=stderr -c log_min_messages=info -c lc_messages=C",
            ])
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("pg_ctl start did not return within a minute"))?
    .with_context(|| format!("start {}", tool.display()))?;
    if !launched.status.success() {
        bail!(
            "pg_ctl start failed ({}): {}{}",
            crate::process::describe_status(&launched.status),
            String::from_utf8_lossy(&launched.stderr).trim(),
            tail(&read_log(&log).await)
        );
    }
    let launched_at = std::time::Instant::now();
    let mut seen_running = false;
    let outcome = loop {
        let running = postmaster_alive(dir);
        seen_running |= running;
        // Read after the liveness check: a server that reached the target and then exited
        // (shutdown at the target) has said so by then.
        let text = read_log(&log).await;
        if judge(&text, until) == Verdict::Reached {
            break Ok(text);
        }
        if seen_running && !running {
            break Err(anyhow::anyhow!("the server exited{}", tail(&text)));
        }
        if !seen_running && launched_at.elapsed() > LAUNCH_TIMEOUT {
            break Err(anyhow::anyhow!("the server did not start{}", tail(&text)));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => break Err(anyhow::anyhow!("cancelled")),
        }
    };
    match outcome {
        Ok(text) => Ok(Started {
            lines: text
                .lines()
                .filter(|l| interesting(l))
                .map(|l| message(l).to_owned())
                .collect(),
        }),
        Err(e) => {
            if postmaster_alive(dir) {
                stop(tool, dir, owner).await;
            }
            Err(e.context(format!(
                "the restored server on port {port} did not reach the recovery target (its log: {})",
                log.display()
            )))
        }
    }
}

/// The last lines of a log, for an error.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().map(message).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "; the server's log ends: {}",
        lines[lines.len().saturating_sub(6)..].join(" / ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMOTED: &str = "\
2026-12-04 11:20:01.100 UTC [10] LOG:  starting point-in-time recovery to 2026-12-04 11:19:00+00
2026-12-04 11:20:01.200 UTC [10] LOG:  restored log file \"000000010000000000000003\" from archive
2026-12-04 11:20:01.300 UTC [10] LOG:  consistent recovery state reached at 0/3000100
2026-12-04 11:20:01.300 UTC [9] LOG:  database system is ready to accept read-only connections
2026-12-04 11:20:01.400 UTC [10] LOG:  recovery stopping before commit of transaction 745, time 2026-12-04 11:19:00.5+00
2026-12-04 11:20:01.400 UTC [10] LOG:  redo done at 0/3000200 system usage: CPU: user: 0.00 s
2026-12-04 11:20:01.400 UTC [10] LOG:  last completed transaction was at log time 2026-12-04 11:18:59.9+00
2026-12-04 11:20:01.500 UTC [10] LOG:  selected new timeline ID: 2
2026-12-04 11:20:01.600 UTC [10] LOG:  archive recovery complete
2026-12-04 11:20:01.700 UTC [9] LOG:  database system is ready to accept connections
";

    #[test]
    fn the_log_says_when_recovery_is_there() {
        // Read-only connections are not the end of a promoting recovery.
        let stop = PROMOTED.find("recovery stopping").expect("line");
        let partial = &PROMOTED[..=PROMOTED[..stop].rfind('\n').expect("a line before")];
        assert_eq!(judge(partial, Until::Open), Verdict::Waiting);
        assert_eq!(judge(PROMOTED, Until::Open), Verdict::Reached);
        assert_eq!(judge(PROMOTED, Until::Paused), Verdict::Waiting);
        let paused = format!(
            "{partial}2026-12-04 11:20:01.400 UTC [10] LOG:  recovery stopping before commit of transaction 745\n\
             2026-12-04 11:20:01.400 UTC [10] LOG:  pausing at the end of recovery\n"
        );
        assert_eq!(judge(&paused, Until::Paused), Verdict::Reached);
        // A client's FATAL during replay is not the end of it.
        let client = format!(
            "{partial}2026-12-04 11:20:02 UTC [11] FATAL:  the database system is not yet accepting connections\n"
        );
        assert_eq!(judge(&client, Until::Open), Verdict::Waiting);
        // A pause asked for by hand is not the target.
        let by_hand = format!("{partial}2026-12-04 11:20:02 UTC [10] LOG:  recovery has paused\n");
        assert_eq!(judge(&by_hand, Until::Paused), Verdict::Waiting);
        // Without hot_standby a pause at the target is a shutdown there.
        let down =
            format!("{partial}2026-12-04 11:20:02 UTC [10] LOG:  shutdown at recovery target\n");
        assert_eq!(judge(&down, Until::Paused), Verdict::Reached);
        assert!(!postmaster_alive(Path::new("/nonexistent")));
        let lines: Vec<&str> = PROMOTED
            .lines()
            .filter(|l| interesting(l))
            .map(message)
            .collect();
        assert_eq!(
            lines[2],
            "LOG:  recovery stopping before commit of transaction 745, time 2026-12-04 11:19:00.5+00"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("LOG:  redo done at 0/3000200"))
        );
        assert!(!lines.iter().any(|l| l.contains("restored log file")));
    }

    #[test]
    fn what_each_recovery_waits_for() {
        let t = RecoveryTarget::xid("745").expect("xid");
        assert_eq!(Until::of(None), Until::Open);
        assert_eq!(
            Until::of(Some((&RecoveryTarget::Latest, RecoveryAction::Pause))),
            Until::Open
        );
        assert_eq!(Until::of(Some((&t, RecoveryAction::Promote))), Until::Open);
        assert_eq!(Until::of(Some((&t, RecoveryAction::Pause))), Until::Paused);
        assert_eq!(
            Until::of(Some((&t, RecoveryAction::Shutdown))),
            Until::ShutDown
        );
    }

    #[test]
    fn a_busy_port_is_refused() {
        let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let e = preflight(port, &Destination::Missing).expect_err("busy");
        assert!(format!("{e:#}").contains("is not free"), "{e:#}");
    }
}
