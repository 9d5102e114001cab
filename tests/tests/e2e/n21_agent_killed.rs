//! N21: the agent is killed (SIGKILL) in the middle of a backup → after the coordinator's
//! lease the job is FAILED, there is no manifest and no catalog row; once the agent is back the
//! next backup works.

use std::time::Duration;

use anyhow::bail;
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::fsutil::files_named;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data};

const LEASE_SECS: u64 = 3;

#[test]
fn agent_killed_mid_backup_fails_the_job_after_the_lease() {
    let dir = TestDir::new("n21");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_dump", &pg_dump::stall_when_marked(256 * 1024, 60));
    let s = Sandbox::builder("n21")
        .dir(dir)
        .agent_lease_secs(LEASE_SECS)
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    let mut s = s;
    load_bulk(&s.pg, "app", "rows", 20_000);

    std::fs::write(bin.marker("stall"), b"").expect("arm the stalling pg_dump");
    let started = s.admin.json(&["backup", "run", &s.target("app")]);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    let backup_id = find_str(&started, "backup_id");
    eventually(
        "pg_dump to stall mid-stream",
        Duration::from_secs(60),
        || {
            if bin.marker("stalled").exists() {
                return Ok(());
            }
            bail!("not yet: {}", s.job(&job_id));
        },
    );

    let status = s.agent.kill();
    assert!(!status.success());
    // Lease expiry: the job fails while the agent stays away.
    let job = s.wait_job_done(&job_id, Duration::from_secs(LEASE_SECS * 10 + 30));
    assert_eq!(find_str(&job, "state").as_deref(), Some("failed"), "{job}");
    let error = find_str(&job, "error").unwrap_or_default();
    assert!(
        error.to_lowercase().contains("agent"),
        "the reason must say the agent went away: {job}"
    );
    assert!(
        s.backup_list("app").is_empty(),
        "a backup row for the killed job"
    );
    if let Some(id) = &backup_id {
        let show = s.admin.run_json(&["backup", "show", id]);
        assert_ne!(show.code, 0, "{show}");
        assert!(
            !s.backup_dir("app", id).join("data.pgdump.zst").exists(),
            "partial data under the final name"
        );
    }
    assert!(files_named(&s.repo, "manifest.json").is_empty());

    // The agent comes back; the next backup works (pg_dump no longer stalls).
    std::fs::remove_file(bin.marker("stall")).expect("disarm");
    let admin = s.admin.clone();
    s.agent.restart(&admin);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    s.restore(&id, "n21_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "n21_copy", s.dir.path());

    s.shutdown();
}
