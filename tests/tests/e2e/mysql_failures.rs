//! D14/D15/D16 for MySQL-engine targets through the real binaries: a dump tool that dies midway,
//! is older than the server or cannot log in, one that prints nothing or a dump without its completion trailer and
//! exits 0 → the job FAILED with the reason, nothing in the catalog, nothing in the repository.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

/// A `mysql_bin_dir` whose `mariadb-dump` runs `body` (`$REAL` is the real tool; `--version`
/// and `--help` go to it), with the real `mariadb` beside it.
fn bin_dir(path: &Path, body: &str) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::os::unix::fs::symlink("/usr/bin/mariadb", path.join("mariadb")).expect("symlink");
    let script = format!(
        "#!/bin/bash\n# lifeboat e2e fault-injecting wrapper\nREAL=/usr/bin/mariadb-dump\n\
         case \"${{1:-}}\" in --version|-V|--help) exec \"$REAL\" \"$@\";; esac\n{body}\n"
    );
    let file = path.join("mariadb-dump");
    std::fs::write(&file, script).expect("write wrapper");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn failing_or_incomplete_mariadb_dumps_leave_nothing() {
    let dir = TestDir::new("mysql_failures");
    let partial = dir.path().join("bin-partial");
    bin_dir(
        &partial,
        "\"$REAL\" \"$@\" | head -c 131072\n\
         echo 'mariadb-dump: lifeboat-e2e injected failure after 131072 bytes' >&2\nexit 2",
    );
    let silent = dir.path().join("bin-silent");
    bin_dir(&silent, "exit 0");
    let old = dir.path().join("bin-old");
    bin_dir(&old, "");
    std::fs::write(
        old.join("mariadb-dump"),
        "#!/bin/bash\n\
         case \"${1:-}\" in\n\
         --version|-V) echo 'mariadb-dump  Ver 10.19 Distrib 10.5.2-MariaDB, for debian-linux-gnu (x86_64)'; exit 0;;\n\
         --help) exec /usr/bin/mariadb-dump \"$@\";;\n\
         esac\n\
         echo 'lifeboat-e2e: this mariadb-dump must not be used' >&2\nexit 1\n",
    )
    .expect("write old wrapper");
    let truncated = dir.path().join("bin-truncated");
    // A real dump without its last lines (and so without `-- Dump completed`), exit 0.
    bin_dir(&truncated, "\"$REAL\" \"$@\" | head -n -3\nexit 0");
    let s = Sandbox::builder("mysql_failures")
        .dir(dir)
        .mariadb_target(SandboxTarget::new("partial").pg_bin_dir(&partial))
        .mariadb_target(
            SandboxTarget::new("silent")
                .database("partial")
                .pg_bin_dir(&silent),
        )
        .mariadb_target(
            SandboxTarget::new("truncated")
                .database("partial")
                .pg_bin_dir(&truncated),
        )
        .mariadb_target(
            SandboxTarget::new("old")
                .database("partial")
                .pg_bin_dir(&old),
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

    // A good backup first: the failures must not touch it.
    let good = s.backup_ok("good");

    let out = s.backup_run("partial");
    let (_job, error) = s.assert_backup_failed("partial", &out);
    assert!(
        error.contains("lifeboat-e2e injected failure after 131072 bytes"),
        "the tool's stderr must be in the reason: {error}"
    );
    assert!(
        error.contains("exit"),
        "the reason must say it exited non-zero: {error}"
    );

    let out = s.backup_run("silent");
    let (_job, error) = s.assert_backup_failed("silent", &out);
    assert!(error.contains("exited 0"), "{error}");

    let out = s.backup_run("truncated");
    let (_job, error) = s.assert_backup_failed("truncated", &out);
    assert!(error.contains("exited 0"), "{error}");
    assert!(
        error.contains("Dump completed") || error.contains("trailer"),
        "{error}"
    );

    // D16: a dump tool older than the server is refused before it runs.
    let out = s.backup_run("old");
    let (_job, error) = s.assert_backup_failed("old", &out);
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

    let out = s.backup_run("badpass");
    let (_job, error) = s.assert_backup_failed("badpass", &out);
    assert!(
        error.contains("Access denied"),
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
    // No option file is left in the agent's state dir.
    let leftovers: Vec<_> = lifeboat_e2e::fsutil::files_under(s.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".lifeboat-my-"))
        .collect();
    assert!(leftovers.is_empty(), "option files left: {leftovers:?}");

    s.shutdown();
}
