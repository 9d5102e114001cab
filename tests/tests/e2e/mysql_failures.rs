//! D14/D15/D16 for MySQL-engine targets through the real binaries: a dump tool that dies midway,
//! is older than the server or cannot log in, one that prints nothing or a dump without its completion trailer and
//! exits 0 → the job FAILED with the reason, nothing in the catalog, nothing in the repository.

use lifeboat_e2e::wrappers::{MariaDbBinDir, mariadb_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

use crate::engine_faults::failed_backups_leave_nothing;

#[test]
fn failing_or_incomplete_mariadb_dumps_leave_nothing() {
    let dir = TestDir::new("mysql_failures");
    let bin = |name: &str, body: &str| {
        let b = MariaDbBinDir::new(&dir.path().join(name));
        b.wrap("mariadb-dump", body);
        b
    };
    let partial = bin("bin-partial", &mariadb_dump::partial_then_fail(131_072));
    let silent = bin("bin-silent", mariadb_dump::SILENT_SUCCESS);
    let truncated = bin("bin-truncated", &mariadb_dump::truncated_success(3));
    let old = MariaDbBinDir::new(&dir.path().join("bin-old"));
    old.wrap_raw(
        "mariadb-dump",
        &mariadb_dump::reports_version(
            "mariadb-dump  Ver 10.19 Distrib 10.5.2-MariaDB, for debian-linux-gnu (x86_64)",
        ),
    );
    let s = Sandbox::builder("mysql_failures")
        .dir(dir)
        .mariadb_target(SandboxTarget::new("partial").pg_bin_dir(partial.path()))
        .mariadb_target(
            SandboxTarget::new("silent")
                .database("partial")
                .pg_bin_dir(silent.path()),
        )
        .mariadb_target(
            SandboxTarget::new("truncated")
                .database("partial")
                .pg_bin_dir(truncated.path()),
        )
        .mariadb_target(
            SandboxTarget::new("old")
                .database("partial")
                .pg_bin_dir(old.path()),
        )
        .mariadb_target(
            SandboxTarget::new("badpass")
                .database("partial")
                .wrong_password(),
        )
        .mariadb_target(SandboxTarget::new("good").database("partial"))
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "partial",
        "CREATE TABLE rows_t (id INT PRIMARY KEY, v CHAR(64));
         INSERT INTO rows_t SELECT seq, SHA2(seq, 256) FROM seq_1_to_20000;",
    );

    failed_backups_leave_nothing(
        &s,
        "good",
        &[
            ("partial", &|error| {
                assert!(
                    error.contains("lifeboat-e2e injected failure after 131072 bytes"),
                    "the tool's stderr must be in the reason: {error}"
                );
                assert!(
                    error.contains("exit"),
                    "the reason must say it exited non-zero: {error}"
                );
            }),
            ("silent", &|error| {
                assert!(error.contains("exited 0"), "{error}")
            }),
            ("truncated", &|error| {
                assert!(error.contains("exited 0"), "{error}");
                assert!(
                    error.contains("Dump completed") || error.contains("trailer"),
                    "{error}"
                );
            }),
            // D16: a dump tool older than the server is refused before it runs.
            ("old", &|error| {
                assert!(
                    error.contains("older than the server")
                        && error.contains("10.5.2")
                        && error.contains("10.11"),
                    "the reason must name both versions: {error}"
                );
                assert!(
                    !error.contains("must not be used"),
                    "the old tool ran: {error}"
                );
            }),
            ("badpass", &|error| {
                assert!(
                    error.contains("Access denied"),
                    "the reason must name the failed login: {error}"
                );
            }),
        ],
    );
    // No option file is left in the agent's state dir.
    let leftovers: Vec<_> = lifeboat_e2e::fsutil::files_under(s.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".lifeboat-my-"))
        .collect();
    assert!(leftovers.is_empty(), "option files left: {leftovers:?}");

    s.shutdown();
}
