//! D14: the dump tool fails after streaming part of its output, or cannot log in → FAILED
//! with pg_dump's own words in the reason, nothing in the catalog, nothing in the repository.

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

#[test]
fn dump_that_dies_midway_or_cannot_log_in_leaves_nothing() {
    let dir = TestDir::new("d14");
    let partial = PgBinDir::new(&dir.path().join("bin-partial"));
    partial.wrap("pg_dump", &pg_dump::partial_then_fail(128 * 1024));
    let s = Sandbox::builder("d14")
        .dir(dir)
        .target(SandboxTarget::new("partial").pg_bin_dir(partial.path()))
        .target(
            SandboxTarget::new("badpass")
                .database("partial")
                .wrong_password(),
        )
        .target(SandboxTarget::new("good").database("partial"))
        .build();
    // ~2 MB of dump, so 128 KiB is a real part of it.
    load_bulk(&s.pg, "partial", "rows", 20_000);

    // A good backup first: the failures must not touch it.
    let good = s.backup_ok("good");

    let out = s.backup_run("partial");
    let (_job, error) = s.assert_backup_failed("partial", &out);
    assert!(
        error.contains("lifeboat-e2e injected failure after 131072 bytes"),
        "pg_dump's stderr must be in the reason: {error}"
    );
    assert!(
        error.to_lowercase().contains("exit"),
        "the reason must say pg_dump exited non-zero: {error}"
    );

    let out = s.backup_run("badpass");
    let (_job, error) = s.assert_backup_failed("badpass", &out);
    assert!(
        error.contains("password authentication failed"),
        "the reason must name the failed login: {error}"
    );

    let listed = s.backup_list("good");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["backup_id"], good["backup_id"]);
    s.admin
        .run_json(&[
            "backup",
            "verify",
            good["backup_id"].as_str().expect("id"),
            "--wait",
        ])
        .assert_ok();

    s.shutdown();
}
