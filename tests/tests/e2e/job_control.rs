//! Operators controlling jobs:
//!
//! - `jobs cancel` on a running backup: CANCELLED, no catalog row, nothing in the repository
//!   for its backup id, no pg_dump left, and the next backup works.
//! - One job per target: a second `backup run` of a busy target is refused, naming the job.
//! - `max_concurrent_jobs = 1`: of two targets' backups one waits queued until the other is
//!   done; the agent never runs two at once.
//! - `--wait` and `jobs watch` turn a job's end into the exit status, and print why it failed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::fsutil::{files_named, files_under, sha256_file};
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{AGENT, find_str, str_field};
use lifeboat_e2e::stall::{
    assert_nothing_left, pg_dump_processes, stalling_pg_bin, stalling_sandbox, start_stalled_backup,
};
use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_row_counts_match, assert_same_data};
use serde_json::Value;

/// The catalog record of `id` describes the stored file byte for byte, and a restore of it
/// holds the source's data.
fn assert_backup_proven(s: &Sandbox, target: &str, id: &str, copy: &str) {
    let rec = s.backup_show(id);
    let dir = s.backup_dir(target, id);
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
    assert_eq!(
        sha256_file(&dir.join("data.pgdump.zst")),
        str_field(&rec, "stored_sha256"),
        "stored file vs catalog: {rec}"
    );
    let db = str_field(&rec, "database").to_owned();
    assert_row_counts_match(&s.pg, &db, &rec);
    s.restore(id, copy, &[]).assert_ok();
    assert_same_data(&s.pg, &db, copy, s.dir.path());
}

/// `jobs list --active` items.
fn active_jobs(s: &Sandbox) -> Vec<Value> {
    s.admin
        .json_list(&["jobs", "list", "--active"], "jobs")
        .unwrap_or_else(|e| panic!("jobs list --active: {e:#}"))
}

#[test]
fn cancel_running_backup_stops_pg_dump_and_leaves_nothing() {
    let (s, bin) = stalling_sandbox("cancel");
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");

    // The scan below sees the stalled pg_dump (so its coming up empty later means something).
    let procs = pg_dump_processes(s.pg.port(), "app");
    assert!(
        !procs.is_empty(),
        "no pg_dump process found while it stalls"
    );
    s.admin.run_json(&["jobs", "cancel", &job_id]).assert_ok();
    let job = s.wait_job_done(&job_id, Duration::from_secs(30));
    assert_eq!(str_field(&job, "state"), "cancelled", "{job}");
    let shown = s.job(&job_id);
    assert_eq!(
        str_field(&shown, "state"),
        "cancelled",
        "jobs show: {shown}"
    );
    assert!(
        find_str(&shown, "error").is_some_and(|e| e.contains("cancel")),
        "the job must say it was cancelled: {shown}"
    );

    // Nothing of the backup: no row, no file (temporary or final), no directory.
    assert_nothing_left(&s, "app", &backup_id);

    // No pg_dump left: neither the process nor its server session.
    eventually(
        "pg_dump to be gone after the cancel",
        Duration::from_secs(10),
        || {
            let procs = pg_dump_processes(s.pg.port(), "app");
            if !procs.is_empty() {
                bail!("pg_dump processes: {procs:?}");
            }
            let n = s.pg.query_one(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' \
                 AND datname = 'app';",
            );
            if n != "0" {
                bail!("{n} pg_dump sessions still open");
            }
            Ok(())
        },
    );
    assert!(active_jobs(&s).is_empty(), "active jobs after the cancel");

    // The next backup works.
    std::fs::remove_file(bin.marker("stall")).expect("disarm");
    let rec = s.backup_ok("app");
    let id = str_field(&rec, "backup_id").to_owned();
    assert_backup_proven(&s, "app", &id, "cancel_copy");
    s.shutdown();
}

#[test]
fn second_backup_of_a_busy_target_is_refused() {
    let (s, bin) = stalling_sandbox("one-per-target");
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");

    let second = s.admin.run_json(&["backup", "run", &s.target("app")]);
    assert_eq!(second.code, 1, "a second backup of a busy target: {second}");
    assert!(
        second.stderr.contains(&job_id),
        "the refusal must name the running job {job_id}: {second}"
    );
    let jobs = s
        .admin
        .json_list(&["jobs", "list", "--target", &s.target("app")], "jobs")
        .unwrap_or_else(|e| panic!("jobs list: {e:#}"));
    assert_eq!(jobs.len(), 1, "the refused request created a job: {jobs:?}");

    std::fs::remove_file(bin.marker("stall")).expect("release the stall");
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(str_field(&job, "state"), "succeeded", "{job}");
    let backups = s.backup_list("app");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(str_field(&backups[0], "backup_id"), backup_id);
    assert_backup_proven(&s, "app", &backup_id, "busy_copy");
    s.shutdown();
}

/// Running jobs of the sandbox agent among `jobs list --active`, and every active job's state.
fn running_of_agent(s: &Sandbox) -> (usize, HashMap<String, String>) {
    let active = active_jobs(s);
    let running = active
        .iter()
        .filter(|j| j["state"] == "running" && j["agent"] == AGENT)
        .count();
    let states = active
        .iter()
        .map(|j| {
            (
                str_field(j, "job_id").to_owned(),
                str_field(j, "state").to_owned(),
            )
        })
        .collect();
    (running, states)
}

#[test]
fn agent_limit_of_one_job_queues_the_second_target() {
    let dir = TestDir::new("concurrency");
    let bin = stalling_pg_bin(&dir);
    let s = Sandbox::builder("concurrency")
        .dir(dir)
        .agent_max_concurrent_jobs(1)
        .target(SandboxTarget::new("one").pg_bin_dir(bin.path()))
        .target(SandboxTarget::new("two").pg_bin_dir(bin.path()))
        .build();
    load_bulk(&s.pg, "one", "rows", 20_000);
    load_bulk(&s.pg, "two", "rows", 20_000);
    let agents = s.admin.json(&["agents", "list"]);
    assert_eq!(
        agents[0]["max_concurrent_jobs"].as_u64(),
        Some(1),
        "{agents}"
    );

    let (job1, backup1) = start_stalled_backup(&s, &bin, "one");
    let started = s.admin.json(&["backup", "run", &s.target("two")]);
    let job2 = str_field(&started, "job_id").to_owned();
    let backup2 = str_field(&started, "backup_id").to_owned();

    // While the first stalls, the second stays queued. A job the limit did not hold back is
    // handed out within milliseconds of its creation, so a few seconds of watching is plenty.
    let watch_from = Instant::now();
    while watch_from.elapsed() < Duration::from_secs(3) {
        let (running, states) = running_of_agent(&s);
        assert!(running <= 1, "two jobs of {AGENT} running: {states:?}");
        assert_eq!(
            states.get(&job1).map(String::as_str),
            Some("running"),
            "{states:?}"
        );
        assert_eq!(
            states.get(&job2).map(String::as_str),
            Some("queued"),
            "the second backup must wait for the agent's slot: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Released: the first finishes, then the second runs; never both at once.
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");
    eventually("both backups to finish", Duration::from_secs(60), || {
        let (running, states) = running_of_agent(&s);
        assert!(running <= 1, "two jobs of {AGENT} running: {states:?}");
        if states.contains_key(&job1) || states.contains_key(&job2) {
            bail!("still active: {states:?}");
        }
        Ok(())
    });
    let j1 = s.job(&job1);
    let j2 = s.job(&job2);
    assert_eq!(str_field(&j1, "state"), "succeeded", "{j1}");
    assert_eq!(str_field(&j2, "state"), "succeeded", "{j2}");
    let finished1 = j1["finished_at_ms"].as_i64().expect("finished_at_ms");
    let started2 = j2["started_at_ms"].as_i64().expect("started_at_ms");
    assert!(
        started2 >= finished1,
        "the second backup started ({started2}) before the first finished ({finished1})"
    );

    assert_backup_proven(&s, "one", &backup1, "one_copy");
    assert_backup_proven(&s, "two", &backup2, "two_copy");
    s.shutdown();
}

#[test]
fn wait_and_watch_exit_with_the_job_outcome() {
    let dir = TestDir::new("watch");
    let garbage = PgBinDir::new(&dir.path().join("bin-garbage"));
    garbage.wrap("pg_dump", pg_dump::GARBAGE_SUCCESS);
    let s = Sandbox::builder("watch")
        .dir(dir)
        .target(
            SandboxTarget::new("bad")
                .database("app")
                .pg_bin_dir(garbage.path()),
        )
        .target(SandboxTarget::new("good").database("app"))
        .build();
    load_bulk(&s.pg, "app", "rows", 1000);

    // --wait on a failing backup: exit 1 and the job's reason.
    let out = s.admin.run(&["backup", "run", &s.target("bad"), "--wait"]);
    assert_eq!(out.code, 1, "{out}");
    let job = s.job_of("bad", &out);
    let job_id = str_field(&job, "job_id").to_owned();
    assert_eq!(str_field(&job, "state"), "failed", "{job}");
    let error = str_field(&job, "error").to_owned();
    assert!(
        error.contains("PGDMP") || error.contains("custom-format"),
        "the garbage is refused by the format check: {job}"
    );
    assert!(
        out.stderr.contains(&error) && out.stderr.contains(&job_id),
        "--wait must print the job and its error ({error:?}): {out}"
    );
    assert!(files_named(&s.target_dir("bad"), "manifest.json").is_empty());

    // jobs watch on the finished, failed job: the same.
    let w = s.admin.run(&["jobs", "watch", &job_id]);
    assert_eq!(w.code, 1, "{w}");
    assert!(w.stderr.contains(&error), "watch must print the error: {w}");
    let wj = s.admin.run_json(&["jobs", "watch", &job_id]);
    assert_eq!(wj.code, 1, "{wj}");
    let v = wj.json();
    assert_eq!(str_field(&v, "state"), "failed", "{wj}");
    assert_eq!(str_field(&v, "error"), error, "{wj}");

    // A succeeded job: --wait and watch exit 0.
    let ok = s.backup_run("good");
    ok.assert_ok();
    let done = ok.json();
    assert_eq!(str_field(&done, "state"), "succeeded", "{ok}");
    let good_job = str_field(&done, "job_id").to_owned();
    let good_backup = str_field(&done, "backup_id").to_owned();
    let w = s.admin.run(&["jobs", "watch", &good_job]);
    assert_eq!(w.code, 0, "{w}");
    assert!(
        w.stdout.contains(&good_backup),
        "watch prints the backup: {w}"
    );
    let wj = s.admin.run_json(&["jobs", "watch", &good_job]);
    assert_eq!(wj.code, 0, "{wj}");
    assert_eq!(str_field(&wj.json(), "state"), "succeeded", "{wj}");
    assert_backup_proven(&s, "good", &good_backup, "watch_copy");
    s.shutdown();
}
