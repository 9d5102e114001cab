//! D19 for MySQL-engine targets: a restore interrupted midway (the SQL client stalled after
//! part of the dump, then the job cancelled) is never reported restored and leaves no database
//! under its name nor a scratch copy; an interrupted `--clean` restore leaves the database it
//! was replacing as it was; running either again succeeds with data equal to the source.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, eventually};

/// A `mysql_bin_dir` whose `mariadb` reads `bytes` of its input and then stops reading while
/// `$HERE/slow` exists (touching `$HERE/stalled`), as a slow server would; `mariadb-dump` is
/// the real one.
fn stalling_client_bin(path: &Path, bytes: u64) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::os::unix::fs::symlink("/usr/bin/mariadb-dump", path.join("mariadb-dump"))
        .expect("symlink");
    let here = path.display();
    let script = format!(
        "#!/bin/bash\n# lifeboat e2e fault-injecting wrapper\nREAL=/usr/bin/mariadb\nHERE={here:?}\n\
         case \"${{1:-}}\" in --version|-V|--help) exec \"$REAL\" \"$@\";; esac\n\
         if [ -e \"$HERE/slow\" ]; then\n\
         me=$$\n\
         exec \"$REAL\" \"$@\" < <(\n\
         head -c {bytes}\n\
         touch \"$HERE/stalled\"\n\
         for _ in $(seq 1 900); do\n\
         state=$(awk '{{print $3}}' /proc/$me/stat 2>/dev/null)\n\
         [ -n \"$state\" ] && [ \"$state\" != Z ] || exit 0\n\
         sleep 0.1\n\
         done)\n\
         fi\n\
         exec \"$REAL\" \"$@\"\n"
    );
    let file = path.join("mariadb");
    std::fs::write(&file, script).expect("write wrapper");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Starts a restore without waiting, waits for the client to stall, cancels it, and returns
/// the job once it ended.
fn interrupt(s: &Sandbox, bin: &Path, args: &[&str]) -> serde_json::Value {
    let _ = std::fs::remove_file(bin.join("stalled"));
    std::fs::write(bin.join("slow"), b"").expect("arm the stall");
    let started = s.admin.json(args);
    let job_id = find_str(&started, "job_id").expect("job_id");
    eventually(
        "the client to stall midway",
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
    std::fs::remove_file(bin.join("slow")).expect("disarm");
    job
}

#[test]
fn interrupted_mariadb_restores_leave_nothing_half_done() {
    let dir = TestDir::new("mysql-d19");
    let bin = dir.path().join("bin");
    stalling_client_bin(&bin, 128 * 1024);
    let s = Sandbox::builder("mysql-d19")
        .dir(dir)
        .mariadb_target(
            SandboxTarget::new("shop")
                .pg_bin_dir(&bin)
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"shop_copy\"]"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE rows_t (id INT PRIMARY KEY, v CHAR(64)) ENGINE=InnoDB;
         INSERT INTO rows_t SELECT seq, SHA2(seq, 256) FROM seq_1_to_20000;
         CREATE VIEW v AS SELECT COUNT(*) AS n FROM rows_t;",
    );
    let source = my.dump_sql("shop");
    let rec = s.backup_ok("shop");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let before = my.databases();

    // A new database: interrupted, nothing is left; again, it is restored.
    let job = interrupt(&s, &bin, &["restore", &id, "--database", "shop_copy"]);
    let state = find_str(&job, "state").expect("state");
    assert!(state == "cancelled" || state == "failed", "{job}");
    eventually(
        "the interrupted restore to clean up",
        Duration::from_secs(30),
        || {
            let dbs = my.databases();
            if dbs == before {
                Ok(())
            } else {
                anyhow::bail!("databases {dbs:?}, before {before:?}")
            }
        },
    );
    s.restore(&id, "shop_copy", &[]).assert_ok();
    assert_eq!(my.dump_sql("shop_copy"), source);

    // Replacing it: interrupted, the database being replaced is as it was.
    my.sql("shop_copy", "DELETE FROM rows_t WHERE id > 19000;");
    let replaced = my.dump_sql("shop_copy");
    assert_ne!(replaced, source);
    let with_copy = my.databases();
    let job = interrupt(
        &s,
        &bin,
        &["restore", &id, "--database", "shop_copy", "--clean"],
    );
    let state = find_str(&job, "state").expect("state");
    assert!(state == "cancelled" || state == "failed", "{job}");
    eventually(
        "the interrupted --clean to clean up",
        Duration::from_secs(30),
        || {
            let dbs = my.databases();
            if dbs == with_copy {
                Ok(())
            } else {
                anyhow::bail!("databases {dbs:?}, before {with_copy:?}")
            }
        },
    );
    assert_eq!(
        my.dump_sql("shop_copy"),
        replaced,
        "an interrupted --clean restore changed the database it was replacing"
    );
    s.restore(&id, "shop_copy", &["--clean"]).assert_ok();
    assert_eq!(my.dump_sql("shop_copy"), source);
    s.shutdown();
}
