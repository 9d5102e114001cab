//! D14: the dump tool fails after streaming part of its output, or cannot log in → FAILED
//! with pg_dump's own words in the reason, nothing in the catalog, nothing in the repository.

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

use crate::engine_faults::failed_backups_leave_nothing;

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

    failed_backups_leave_nothing(
        &s,
        "good",
        &[
            ("partial", &|error| {
                assert!(
                    error.contains("lifeboat-e2e injected failure after 131072 bytes"),
                    "pg_dump's stderr must be in the reason: {error}"
                );
                assert!(
                    error.to_lowercase().contains("exit"),
                    "the reason must say pg_dump exited non-zero: {error}"
                );
            }),
            ("badpass", &|error| {
                assert!(
                    error.contains("password authentication failed"),
                    "the reason must name the failed login: {error}"
                );
            }),
        ],
    );
    s.shutdown();
}
