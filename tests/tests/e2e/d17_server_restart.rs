//! D17: the database server restarts (a crash, a failover) while a backup is dumping. The
//! backup fails with the dump tool's reason, nothing is recorded or left in the repository, and
//! the next backup works and restores to the same data. PostgreSQL and MariaDB, through the
//! real binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::stall::{assert_nothing_left, stalling_sandbox, start_stalled_backup};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data, eventually};

#[test]
fn postgres_restart_mid_dump_fails_the_backup_and_the_next_one_works() {
    let (mut s, bin) = stalling_sandbox("d17-pg");
    // A second table, dumped after the one pg_dump stalls in: it needs the server again (the
    // first may already sit whole in the socket's buffers).
    s.pg.psql(
        "app",
        "CREATE TABLE zz_after (id int PRIMARY KEY, v text);
         INSERT INTO zz_after SELECT g, md5(g::text) FROM generate_series(1, 1000) g;",
    );
    let before = lifeboat_e2e::dump_sql(&s.pg, "app");
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");

    // Every session dies, pg_dump's included; it finds out as soon as it reads again.
    s.pg.restart_immediate();
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(find_str(&job, "state").as_deref(), Some("failed"), "{job}");
    let error = find_str(&job, "error").unwrap_or_default();
    assert!(
        error.contains("pg_dump failed") || error.to_lowercase().contains("connection"),
        "the reason must be the dump's: {job}"
    );
    assert_nothing_left(&s, "app", &backup_id);

    // The next run works, and restores to the same data.
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    s.restore(&id, "app_after", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_after", s.dir.path());
    assert_eq!(lifeboat_e2e::dump_sql(&s.pg, "app"), before);
    s.shutdown();
}

/// A `mysql_bin_dir` whose `mariadb-dump` stalls after `bytes` while `$HERE/stall` exists
/// (touching `$HERE/stalled`), then passes the rest through; `mariadb` is the real client.
fn stalling_mariadb_bin(path: &Path, bytes: u64) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::os::unix::fs::symlink("/usr/bin/mariadb", path.join("mariadb")).expect("symlink");
    let here = path.display();
    let script = format!(
        "#!/bin/bash\n# lifeboat e2e fault-injecting wrapper\nREAL=/usr/bin/mariadb-dump\nHERE={here:?}\n\
         case \"${{1:-}}\" in --version|-V|--help) exec \"$REAL\" \"$@\";; esac\n\
         if [ -e \"$HERE/stall\" ]; then\n\
         \"$REAL\" \"$@\" | {{\n\
         head -c {bytes}\n\
         touch \"$HERE/stalled\"\n\
         while [ -e \"$HERE/stall\" ]; do\n\
         kill -0 \"$PPID\" 2>/dev/null || exit 1\n\
         sleep 0.1\n\
         done\n\
         exec cat\n\
         }}\n\
         exit \"${{PIPESTATUS[0]}}\"\n\
         fi\n\
         exec \"$REAL\" \"$@\"\n"
    );
    let file = path.join("mariadb-dump");
    std::fs::write(&file, script).expect("write wrapper");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn mariadb_restart_mid_dump_fails_the_backup_and_the_next_one_works() {
    let dir = TestDir::new("d17-my");
    let bin = dir.path().join("bin");
    stalling_mariadb_bin(&bin, 256 * 1024);
    let mut s = Sandbox::builder("d17-my")
        .dir(dir)
        .mariadb_target(SandboxTarget::new("shop").pg_bin_dir(&bin))
        .build();
    {
        let my = s.mariadb.as_ref().expect("mariadb");
        // The test server trades durability for speed; the rows must survive the crash.
        my.sql("", "SET GLOBAL innodb_flush_log_at_trx_commit = 1;");
        my.sql(
            "shop",
            "CREATE TABLE rows_t (id INT PRIMARY KEY, v CHAR(64)) ENGINE=InnoDB;
             INSERT INTO rows_t SELECT seq, SHA2(seq, 256) FROM seq_1_to_60000;
             CREATE TABLE zz_after (id INT PRIMARY KEY) ENGINE=InnoDB;
             INSERT INTO zz_after SELECT seq FROM seq_1_to_1000;",
        );
    }
    let before = s.mariadb.as_ref().expect("mariadb").dump_sql("shop");

    std::fs::write(bin.join("stall"), b"").expect("arm the stall");
    let started = s.admin.json(&["backup", "run", &s.target("shop")]);
    let job_id = find_str(&started, "job_id").expect("job_id");
    let backup_id = find_str(&started, "backup_id").expect("backup_id");
    eventually("mariadb-dump to stall", Duration::from_secs(60), || {
        if bin.join("stalled").exists() {
            Ok(())
        } else {
            anyhow::bail!("not yet")
        }
    });
    s.mariadb.as_mut().expect("mariadb").crash_and_restart();
    std::fs::remove_file(bin.join("stall")).expect("release the stall");
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(find_str(&job, "state").as_deref(), Some("failed"), "{job}");
    let error = find_str(&job, "error").unwrap_or_default();
    assert!(
        error.contains("mariadb-dump")
            && (error.contains("Lost connection") || error.contains("exit")),
        "the reason must be the dump tool's: {job}"
    );
    assert!(
        s.backup_list("shop").is_empty(),
        "a failed dump was recorded"
    );
    assert!(
        !s.backup_dir("shop", &backup_id)
            .join("manifest.json")
            .exists(),
        "a manifest was written for the failed dump"
    );

    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    s.restore(&id, "shop_after", &[]).assert_ok();
    let my = s.mariadb.as_ref().expect("mariadb");
    assert_eq!(
        my.dump_sql("shop"),
        before,
        "the source lost rows in the crash"
    );
    assert_eq!(
        my.dump_sql("shop_after"),
        before,
        "the restore differs from the source"
    );
    s.shutdown();
}
