//! The agent session survives what happens to either end in the middle of a backup:
//!
//! - N22/N23: the coordinator is stopped (SIGTERM) or crashes (SIGKILL) while a backup runs;
//!   the agent finishes the backup alone, keeps its result, reconnects by itself once the
//!   coordinator is back on the same address, and the job ends succeeded once, with one catalog
//!   row whose hashes are the stored file's, and a restore that matches the source.
//! - The agent is killed and started again before its lease ends: the coordinator fails the job
//!   it no longer knows at once ("agent restarted"), not after the lease; nothing is stored.
//! - The agent is stopped (SIGTERM) mid-backup: it exits 0 promptly, leaves nothing in the
//!   repository and no pg_dump behind, and the job ends cancelled or failed with a reason; the
//!   agent reports that end before it exits rather than leaving the job to the lease.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use lifeboat_e2e::agent::agent_connected;
use lifeboat_e2e::fsutil::{files_under, sha256_file};
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{AGENT, find_str, is_terminal, str_field};
use lifeboat_e2e::stall::{
    assert_no_backup, assert_nothing_left, pg_dump_processes, stalling_sandbox_with,
    start_stalled_backup,
};
use lifeboat_e2e::{Sandbox, assert_row_counts_match, assert_same_data};
use serde_json::Value;

/// The catalog record of `id` describes the stored files byte for byte, and a restore of it
/// holds the source's data.
fn assert_backup_proven(s: &Sandbox, target: &str, id: &str, copy: &str) {
    let rec = s.backup_show(id);
    let dir = s.backup_dir(target, id);
    let data = dir.join("data.pgdump.zst");
    assert_eq!(
        files_under(&dir),
        [
            Path::new("data.pgdump.zst"),
            Path::new("globals.sql.zst"),
            Path::new("manifest.json")
        ],
        "exactly data, globals and manifest in {}",
        dir.display()
    );
    let size = std::fs::metadata(&data).expect("stat data").len();
    assert_eq!(Some(size), rec["stored_size"].as_u64(), "{rec}");
    assert_eq!(
        sha256_file(&data),
        str_field(&rec, "stored_sha256"),
        "stored file vs catalog: {rec}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("read manifest"))
            .expect("manifest is JSON");
    assert_eq!(
        manifest["stored_sha256"].as_str(),
        Some(str_field(&rec, "stored_sha256")),
        "manifest vs catalog: {manifest}"
    );
    assert_row_counts_match(&s.pg, target, &rec);
    s.restore(id, copy, &[]).assert_ok();
    assert_same_data(&s.pg, target, copy, s.dir.path());
}

/// N22 (SIGTERM) and N23 (SIGKILL): the coordinator goes away mid-backup and comes back on the
/// same address with the same catalog.
fn coordinator_restart_mid_backup(name: &str, crash: bool) {
    // Far longer than the restart: the job must survive on the agent's re-sent result alone.
    let (mut s, bin) = stalling_sandbox_with(name, |b| b.agent_lease_secs(120));
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");
    let agent_pid = s.agent.pid();

    if crash {
        let status = s.coordinator.kill();
        assert!(!status.success(), "SIGKILL: {status}");
    } else {
        let status = s.coordinator.stop();
        assert!(
            status.success(),
            "coordinator did not exit cleanly on SIGTERM ({status}):\n{}",
            s.coordinator.proc().logs_tail(16 * 1024)
        );
    }

    // The agent finishes the backup alone: data, then manifest.
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");
    let manifest = s.backup_dir("app", &backup_id).join("manifest.json");
    eventually(
        "the agent to finish the backup while the coordinator is away",
        Duration::from_secs(30),
        || {
            if let Some(status) = s.agent.proc().try_status() {
                panic!("the agent exited without its coordinator ({status})");
            }
            if manifest.is_file() {
                return Ok(());
            }
            bail!("no {} yet", manifest.display());
        },
    );

    s.coordinator.restart();
    eventually(
        "the agent to reconnect by itself",
        Duration::from_secs(60),
        || agent_connected(&s.admin, AGENT),
    );
    assert!(s.agent.proc().is_running(), "the agent is the same process");
    assert_eq!(s.agent.pid(), agent_pid);

    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(str_field(&job, "state"), "succeeded", "{job}");
    assert_eq!(
        find_str(&job, "backup_id").as_deref(),
        Some(backup_id.as_str())
    );

    // Exactly once: one job, one catalog row, one recorded finish.
    let jobs = s
        .admin
        .json_list(&["jobs", "list", "--target", &s.target("app")], "jobs")
        .unwrap_or_else(|e| panic!("jobs list: {e:#}"));
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let backups = s.backup_list("app");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(str_field(&backups[0], "backup_id"), backup_id);
    assert_eq!(str_field(&backups[0], "job_id"), job_id);
    let finishes = s
        .coordinator
        .logs()
        .lines()
        .filter(|l| l.contains("job finished") && l.contains(&job_id))
        .count();
    assert_eq!(
        finishes, 1,
        "the job must finish once in the coordinator's log"
    );

    assert_backup_proven(&s, "app", &backup_id, &format!("{name}_copy"));
    s.shutdown();
}

#[test]
fn n22_coordinator_sigterm_mid_backup_result_is_kept_and_resent() {
    coordinator_restart_mid_backup("n22", false);
}

#[test]
fn n23_coordinator_killed_mid_backup_result_is_kept_and_resent() {
    coordinator_restart_mid_backup("n23", true);
}

#[test]
fn agent_restarted_mid_backup_fails_the_lost_job_at_once() {
    const LEASE_SECS: u64 = 60;
    let (mut s, bin) = stalling_sandbox_with("lost-job", |b| b.agent_lease_secs(LEASE_SECS));
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");

    let status = s.agent.kill();
    assert!(!status.success());
    let killed = Instant::now();
    let admin = s.admin.clone();
    s.agent.restart(&admin);

    // Well before the lease: the reconnecting agent does not know the job any more.
    let job = s.wait_job_done(&job_id, Duration::from_secs(20));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(LEASE_SECS / 2),
        "the lost job ended only after {took:?}"
    );
    assert_eq!(str_field(&job, "state"), "failed", "{job}");
    let error = str_field(&job, "error").to_lowercase();
    assert!(
        error.contains("agent restarted"),
        "the reason must say the agent restarted: {job}"
    );
    assert_no_backup(&s, "app", &backup_id);

    // The next backup works (pg_dump no longer stalls).
    std::fs::remove_file(bin.marker("stall")).expect("disarm");
    let rec = s.backup_ok("app");
    let id = str_field(&rec, "backup_id").to_owned();
    assert_ne!(id, backup_id);
    assert_backup_proven(&s, "app", &id, "lost_job_copy");
    s.shutdown();
}

/// SIGTERM to the agent; it must exit 0 within 10 s.
fn sigterm_agent(s: &mut Sandbox) {
    s.agent.proc().signal("TERM");
    let status = s.agent.proc().wait_exit(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| {
        panic!(
            "the agent did not exit within 10 s of SIGTERM:\n{}",
            s.agent.proc().logs_tail(16 * 1024)
        )
    });
    assert!(
        status.success(),
        "the agent must exit 0 on SIGTERM ({status}):\n{}",
        s.agent.proc().logs_tail(16 * 1024)
    );
}

/// A finished job that did not succeed and says why.
fn assert_interrupted(job: &Value) {
    let state = str_field(job, "state");
    assert!(
        state == "cancelled" || state == "failed",
        "an interrupted backup must not succeed: {job}"
    );
    let error = find_str(job, "error").unwrap_or_default();
    assert!(!error.trim().is_empty(), "the job must say why: {job}");
}

#[test]
fn agent_sigterm_mid_backup_exits_promptly_and_leaves_nothing() {
    let (mut s, bin) = stalling_sandbox_with("agent-sigterm", |b| b.agent_lease_secs(30));
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");
    // The scan below sees the stalled pg_dump (so its coming up empty later means something).
    let procs = pg_dump_processes(s.pg.port(), "app");
    assert!(
        !procs.is_empty(),
        "no pg_dump process found while it stalls"
    );
    sigterm_agent(&mut s);

    // The agent cleaned up before exiting: no data, no temporary file, no directory, no
    // pg_dump.
    assert_nothing_left(&s, "app", &backup_id);
    eventually("pg_dump to be gone", Duration::from_secs(10), || {
        let procs = pg_dump_processes(s.pg.port(), "app");
        if procs.is_empty() {
            return Ok(());
        }
        bail!("pg_dump outlived the agent: {procs:?}");
    });

    // Once the agent is back the job is over (reported by the agent, or lost), and the next
    // backup works.
    std::fs::remove_file(bin.marker("stall")).expect("disarm");
    let admin = s.admin.clone();
    s.agent.restart(&admin);
    let job = s.wait_job_done(&job_id, Duration::from_secs(20));
    assert_interrupted(&job);
    assert_no_backup(&s, "app", &backup_id);
    let rec = s.backup_ok("app");
    let id = str_field(&rec, "backup_id").to_owned();
    assert_backup_proven(&s, "app", &id, "sigterm_copy");
    s.shutdown();
}

/// The agent's runner ends a job cancelled by shutdown with "cancelled: the agent is shutting
/// down"; that result must reach the coordinator before the agent exits, or the job stays
/// "running" until the agent comes back or the lease (here 30 s) expires.
#[test]
fn agent_sigterm_mid_backup_reports_the_job_before_exiting() {
    let (mut s, bin) = stalling_sandbox_with("agent-sigterm-report", |b| b.agent_lease_secs(30));
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");
    sigterm_agent(&mut s);

    // The agent stays down; the lease is 30 s.
    let job = eventually(
        "the job to end without waiting for the lease",
        Duration::from_secs(10),
        || {
            let j = s.job(&job_id);
            match find_str(&j, "state") {
                Some(st) if is_terminal(&st) => Ok(j),
                st => bail!(
                    "job {job_id} is still {st:?} after the agent exited: the agent did not \
                     report the job's end before exiting, so it will fail only when the lease \
                     expires"
                ),
            }
        },
    );
    assert_interrupted(&job);
    assert_no_backup(&s, "app", &backup_id);
    s.shutdown();
}
