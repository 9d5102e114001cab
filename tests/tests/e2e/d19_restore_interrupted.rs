//! D19: a restore cancelled midway (pg_restore stalled after part of the archive) ends
//! cancelled or failed, and the database is not there under its name (nor a scratch copy);
//! running the restore again succeeds and the data matches.

use std::time::Duration;

use anyhow::bail;
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{PgBinDir, pg_restore};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data};

#[test]
fn cancelled_restore_leaves_no_database_and_rerun_succeeds() {
    let dir = TestDir::new("d19");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_restore", &pg_restore::stall_when_marked(256 * 1024, 90));
    let s = Sandbox::builder("d19")
        .dir(dir)
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    load_awkward(&s.pg, "app");
    load_bulk(&s.pg, "app", "rows", 20_000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let dbs_before = s.pg.databases();

    std::fs::write(bin.marker("slow"), b"").expect("arm the slow pg_restore");
    let started = s.admin.json(&["restore", &id, "--database", "d19_copy"]);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    eventually(
        "pg_restore to stall midway",
        Duration::from_secs(60),
        || {
            if bin.marker("stalled").exists() {
                return Ok(());
            }
            let j = s.job(&job_id);
            if matches!(
                find_str(&j, "state").as_deref(),
                Some("failed" | "succeeded" | "cancelled")
            ) {
                panic!("the restore ended before it could be interrupted: {j}");
            }
            bail!("not yet");
        },
    );
    s.admin.run_json(&["jobs", "cancel", &job_id]).assert_ok();
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    let state = find_str(&job, "state").expect("state");
    assert!(
        state == "cancelled" || state == "failed",
        "an interrupted restore must not succeed: {job}"
    );

    // Nothing half-restored under the requested name or a scratch name; pg_restore is gone.
    eventually(
        "the interrupted restore to clean up",
        Duration::from_secs(30),
        || {
            let dbs = s.pg.databases();
            if dbs != dbs_before {
                bail!("databases {dbs:?}, before {dbs_before:?}");
            }
            let n = s.pg.query_one(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore';",
            );
            if n != "0" {
                bail!("{n} pg_restore sessions still open");
            }
            Ok(())
        },
    );
    let jobs = s.admin.json(&["jobs", "list", "--active"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");

    // Run it again, without the stall.
    std::fs::remove_file(bin.marker("slow")).expect("disarm");
    let out = s.restore(&id, "d19_copy", &[]);
    out.assert_ok();
    assert_same_data(&s.pg, "app", "d19_copy", s.dir.path());

    s.shutdown();
}
