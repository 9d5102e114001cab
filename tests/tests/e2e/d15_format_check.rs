//! D15: the dump tool prints nothing, or garbage, and exits 0 → rejected by the format check
//! (a custom-format archive starts with PGDMP), FAILED, nothing stored.

use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

fn names_format_check(error: &str) -> bool {
    let e = error.to_lowercase();
    e.contains("pgdmp") || e.contains("custom-format") || e.contains("custom format")
}

#[test]
fn empty_or_garbage_dump_with_exit_0_is_refused() {
    let dir = TestDir::new("d15");
    let empty = PgBinDir::new(&dir.path().join("bin-empty"));
    empty.wrap("pg_dump", pg_dump::SILENT_SUCCESS);
    let garbage = PgBinDir::new(&dir.path().join("bin-garbage"));
    garbage.wrap("pg_dump", pg_dump::GARBAGE_SUCCESS);
    let s = Sandbox::builder("d15")
        .dir(dir)
        .target(
            SandboxTarget::new("empty")
                .database("app")
                .pg_bin_dir(empty.path()),
        )
        .target(
            SandboxTarget::new("garbage")
                .database("app")
                .pg_bin_dir(garbage.path()),
        )
        .build();
    s.pg.psql("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);");

    let out = s.backup_run("empty");
    let (_job, error) = s.assert_backup_failed("empty", &out);
    assert!(names_format_check(&error), "empty output: {error}");
    assert!(
        error.to_lowercase().contains("no output") || error.to_lowercase().contains("empty"),
        "the reason must say the output was empty: {error}"
    );

    let out = s.backup_run("garbage");
    let (_job, error) = s.assert_backup_failed("garbage", &out);
    assert!(names_format_check(&error), "garbage output: {error}");

    assert!(s.backup_list("empty").is_empty());
    assert!(s.backup_list("garbage").is_empty());
    s.shutdown();
}
