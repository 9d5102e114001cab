//! The shapes the PostgreSQL and MariaDB fault tests share, so each engine's test only sets up
//! its world and says what its tool's failure looks like: D14 (`d14_dump_fails`,
//! `mysql_failures`) and D19 (`d19_restore_interrupted`, `mysql_interrupted`).

use std::path::Path;
use std::time::Duration;

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, eventually};

/// A target whose backup must fail, and a check of the job's error text.
pub type Failure<'a> = (&'a str, &'a dyn Fn(&str));

/// D14: a good backup of `good` first; then the backup of each `failing` target FAILS (the
/// CLI exits 1, the job failed with a reason, nothing of it in the catalog or the repository:
/// [`Sandbox::assert_backup_failed`]) with an error its check accepts, in order; and the
/// failures did not touch the good backup: it is still the only one of `good`, and verifies.
pub fn failed_backups_leave_nothing(s: &Sandbox, good: &str, failing: &[Failure]) {
    let good_backup = s.backup_ok(good);
    for (target, check) in failing {
        let out = s.backup_run(target);
        let (_job, error) = s.assert_backup_failed(target, &out);
        check(&error);
    }
    let listed = s.backup_list(good);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["backup_id"], good_backup["backup_id"]);
    s.admin
        .run_json(&[
            "backup",
            "verify",
            good_backup["backup_id"].as_str().expect("id"),
            "--wait",
        ])
        .assert_ok();
}

/// D19: starts the restore `args` (a `lifeboat restore …` command line) while the `slow`
/// marker in `bin` makes the restore client stall midway (it touches `stalled` there: see
/// `wrappers::{pg_restore, mariadb}::stall_when_marked`), waits for the stall (failing if the
/// job ended first), cancels the job and waits for its end, which must be cancelled or
/// failed; then disarms the stall and waits until `left_behind` finds nothing left behind and
/// no job is active.
pub fn interrupted_restore_leaves_nothing(
    s: &Sandbox,
    bin: &Path,
    args: &[&str],
    mut left_behind: impl FnMut() -> anyhow::Result<()>,
) {
    let _ = std::fs::remove_file(bin.join("stalled"));
    std::fs::write(bin.join("slow"), b"").expect("arm the stall");
    let started = s.admin.json(args);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    eventually(
        "the restore client to stall midway",
        Duration::from_secs(60),
        || {
            if bin.join("stalled").exists() {
                return Ok(());
            }
            let j = s.job(&job_id);
            if matches!(
                find_str(&j, "state").as_deref(),
                Some("failed" | "succeeded" | "cancelled")
            ) {
                panic!("the restore ended before it could be interrupted: {j}");
            }
            anyhow::bail!("not yet")
        },
    );
    s.admin.run_json(&["jobs", "cancel", &job_id]).assert_ok();
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    std::fs::remove_file(bin.join("slow")).expect("disarm the stall");
    let state = find_str(&job, "state").expect("state");
    assert!(
        state == "cancelled" || state == "failed",
        "an interrupted restore must not succeed: {job}"
    );

    // Nothing half-restored under the requested name or a scratch name.
    eventually(
        &format!("the interrupted `{}` to clean up", args.join(" ")),
        Duration::from_secs(30),
        &mut left_behind,
    );
    let jobs = s.admin.json(&["jobs", "list", "--active"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
}
