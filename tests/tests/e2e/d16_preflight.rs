//! D16: database unreachable, wrong credentials, or a pg_dump older than the server → FAILED
//! before any upload starts (no file at all for that backup id), with a clear reason; the tool
//! case names both versions.

use std::net::TcpListener;

use lifeboat_e2e::wrappers::{PgBinDir, pg_dump};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

#[test]
fn preflight_failures_stop_before_any_upload() {
    let dir = TestDir::new("d16");
    let old = PgBinDir::new(&dir.path().join("bin-old"));
    old.wrap_raw("pg_dump", &pg_dump::reports_version("14.11"));
    // A port nobody listens on: bound now, released, and nothing else binds it in the
    // meantime in practice (connections get ECONNREFUSED).
    let dead_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let s = Sandbox::builder("d16")
        .dir(dir)
        .target(
            SandboxTarget::new("unreachable")
                .database("app")
                .port(dead_port),
        )
        .target(
            SandboxTarget::new("badpass")
                .database("app")
                .wrong_password(),
        )
        .target(
            SandboxTarget::new("oldtool")
                .database("app")
                .pg_bin_dir(old.path()),
        )
        .build();
    s.pg.psql("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let server_version = s.pg.query_one("app", "SHOW server_version;");
    let server_version = server_version.split_whitespace().next().expect("version");

    let out = s.backup_run("unreachable");
    let (_job, error) = s.assert_backup_failed("unreachable", &out);
    let e = error.to_lowercase();
    assert!(
        e.contains("connect") && e.contains(&dead_port.to_string()),
        "the reason must say it cannot connect, and where: {error}"
    );

    let out = s.backup_run("badpass");
    let (_job, error) = s.assert_backup_failed("badpass", &out);
    assert!(error.contains("password authentication failed"), "{error}");

    let out = s.backup_run("oldtool");
    let (_job, error) = s.assert_backup_failed("oldtool", &out);
    assert!(
        error.contains("14.11") && error.contains(server_version),
        "the reason must name both versions (14.11 and {server_version}): {error}"
    );
    assert!(
        !error.contains("must not be used"),
        "the old pg_dump must not have been run for a dump: {error}"
    );

    for t in ["unreachable", "badpass", "oldtool"] {
        let files = lifeboat_e2e::fsutil::files_under(&s.target_dir(t));
        assert!(files.is_empty(), "{t}: files in the repository: {files:?}");
    }
    s.shutdown();
}
