//! Item 13 (review M9): a restore killed (SIGKILL) at any step of its swap is finished or
//! undone when the agent starts again. After the restart the destination holds either the
//! complete old data or the complete restored data (compared with dumps of both), and no
//! `lifeboat_restore_*` / `lifeboat_old_*` database and no journal is left. PostgreSQL (rename
//! pair) and MariaDB (objects captured and dropped, `RENAME TABLE`, objects re-created). Also:
//! SIGTERM waits for a swap step in progress instead of abandoning it.
//!
//! The agent is held at each step by a pause point that exists only in debug builds
//! (`LIFEBOAT_TEST_PAUSE_DIR`, see agent/src/swap_journal.rs), then killed by the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use lifeboat_e2e::compare::{assert_same_dump, dump_sql};
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    Old,
    New,
}

/// Starts `restore ID --database dest --clean`, waits until the agent pauses at `point`,
/// kills the agent and starts it again; returns once the interrupted job has ended.
fn kill_at(s: &mut Sandbox, pause: &Path, id: &str, point: &str) {
    kill_at_then(s, pause, id, point, |_| {});
}

/// Kills the agent at `point` of a restore into the new database `fresh`.
fn kill_at_new(s: &mut Sandbox, pause: &Path, id: &str, point: &str) {
    run_and_kill(
        s,
        pause,
        &["restore", id, "--database", "fresh"],
        point,
        |_| {},
    );
}

/// [`kill_at`], with `meanwhile` run while the agent is down.
fn kill_at_then(
    s: &mut Sandbox,
    pause: &Path,
    id: &str,
    point: &str,
    meanwhile: impl FnOnce(&Sandbox),
) {
    let args = ["restore", id, "--database", "dest", "--clean"];
    run_and_kill(s, pause, &args, point, meanwhile);
}

pub(crate) fn run_and_kill(
    s: &mut Sandbox,
    pause: &Path,
    args: &[&str],
    point: &str,
    meanwhile: impl FnOnce(&Sandbox),
) {
    let arm = pause.join(format!("pause-{point}"));
    let paused = pause.join(format!("paused-{point}"));
    std::fs::write(&arm, b"").expect("arm the pause point");
    let started = s.admin.json(args);
    let job_id = find_str(&started, "job_id").expect("job_id");
    eventually(
        &format!("the restore to reach {point}"),
        Duration::from_secs(120),
        || {
            if paused.exists() {
                return Ok(());
            }
            bail!("not yet: {}", s.job(&job_id))
        },
    );
    assert!(!s.agent.kill().success());
    std::fs::remove_file(&arm).expect("disarm");
    std::fs::remove_file(&paused).expect("reset");
    meanwhile(s);
    let admin = s.admin.clone();
    s.agent.restart(&admin);
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_ne!(
        find_str(&job, "state").as_deref(),
        Some("succeeded"),
        "{job}"
    );
}

fn journal_left(s: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(s.agent.state_dir().join("swaps"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn check_outcome(
    s: &Sandbox,
    point: &str,
    want: After,
    got: &str,
    old: &str,
    new: &str,
    databases: &[String],
) {
    let expected = match want {
        After::Old => old,
        After::New => new,
    };
    assert_same_dump(
        expected,
        got,
        &format!("dest after a crash at {point} (expected the {want:?} data)"),
        s.dir.path(),
    );
    let leftovers: Vec<&String> = databases
        .iter()
        .filter(|d| d.starts_with("lifeboat_restore_") || d.starts_with("lifeboat_old_"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "databases left after a crash at {point}: {leftovers:?}"
    );
    assert!(
        journal_left(s).is_empty(),
        "journal left after a crash at {point}: {:?}",
        journal_left(s)
    );
}

#[test]
fn postgres_swap_survives_a_crash_at_every_step() {
    let dir = TestDir::new("crash-swap-pg");
    let pause = dir.sub("pause");
    let mut s = Sandbox::builder("crash-swap-pg")
        .dir(dir)
        .agent_env("LIFEBOAT_TEST_PAUSE_DIR", &pause.display().to_string())
        .target(
            SandboxTarget::new("app")
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"dest\"]"),
        )
        .build();
    load_bulk(&s.pg, "app", "rows", 2_000);
    let id = find_str(&s.backup_ok("app"), "backup_id").expect("backup_id");
    s.restore(&id, "dest", &[]).assert_ok();
    let new = dump_sql(&s.pg, "dest");
    let make_old = |s: &Sandbox| {
        s.pg.psql("dest", "DELETE FROM bulk_rows WHERE id > 1500;");
        dump_sql(&s.pg, "dest")
    };
    let old = make_old(&s);
    assert_ne!(old, new);

    for (point, want) in [
        ("restore-loading", After::Old),
        ("pg-swap-begin", After::Old),
        ("pg-after-rename-old", After::New),
        ("restore-finishing", After::New),
    ] {
        if dump_sql(&s.pg, "dest") != old {
            assert_eq!(make_old(&s), old);
        }
        kill_at(&mut s, &pause, &id, point);
        assert!(s.pg.database_exists("dest"), "dest is gone after {point}");
        let got = dump_sql(&s.pg, "dest");
        check_outcome(&s, point, want, &got, &old, &new, &s.pg.databases());
    }

    // Into a new database: before the rename it does not exist afterwards, after it it is
    // complete.
    for (point, want) in [("pg-swap-begin", None), ("restore-finishing", Some(()))] {
        if s.pg.database_exists("fresh") {
            s.pg.psql("postgres", "DROP DATABASE fresh");
        }
        kill_at_new(&mut s, &pause, &id, point);
        match want {
            None => assert!(!s.pg.database_exists("fresh"), "fresh exists after {point}"),
            Some(()) => assert_same_dump(&new, &dump_sql(&s.pg, "fresh"), point, s.dir.path()),
        }
        check_outcome(&s, point, After::New, &new, &old, &new, &s.pg.databases());
    }

    // A crash the agent cannot resolve at start (here the database password changed while it
    // was down) is kept, and `targets check` says where the data is; once fixed, the next
    // start finishes it.
    if dump_sql(&s.pg, "dest") != old {
        assert_eq!(make_old(&s), old);
    }
    let pw = s.dir.path().join("secrets").join("app.pass");
    kill_at_then(&mut s, &pause, &id, "pg-after-rename-old", |_| {
        lifeboat_e2e::pg::write_private(&pw, "not-the-password");
    });
    assert_eq!(journal_left(&s).len(), 1, "the unresolved journal is kept");
    let out = s.admin.run(&["targets", "check", &s.target("app")]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.to_string().contains("was interrupted") && out.to_string().contains("lifeboat_old_"),
        "the check must report the interrupted restore and where the data is: {out}"
    );
    s.pg.write_password_file(&pw);
    assert!(s.agent.stop().success());
    let admin = s.admin.clone();
    s.agent.restart(&admin);
    let got = dump_sql(&s.pg, "dest");
    check_outcome(
        &s,
        "an unresolved start",
        After::New,
        &got,
        &old,
        &new,
        &s.pg.databases(),
    );

    // SIGTERM in the middle of the swap: the agent finishes the step before it exits.
    if dump_sql(&s.pg, "dest") != old {
        assert_eq!(make_old(&s), old);
    }
    let arm = pause.join("pause-pg-after-rename-old");
    std::fs::write(&arm, b"").expect("arm");
    let started = s
        .admin
        .json(&["restore", &id, "--database", "dest", "--clean"]);
    let job_id = find_str(&started, "job_id").expect("job_id");
    eventually("the swap to pause", Duration::from_secs(120), || {
        if pause.join("paused-pg-after-rename-old").exists() {
            return Ok(());
        }
        bail!("not yet: {}", s.job(&job_id))
    });
    s.agent.proc().signal("TERM");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        s.agent.proc().is_running(),
        "the agent exited in the middle of a swap"
    );
    std::fs::remove_file(&arm).expect("release");
    let status = s
        .agent
        .proc()
        .wait_exit(Duration::from_secs(60))
        .expect("the agent to exit after the swap step");
    assert!(status.success(), "{status}");
    let got = dump_sql(&s.pg, "dest");
    check_outcome(
        &s,
        "SIGTERM",
        After::New,
        &got,
        &old,
        &new,
        &s.pg.databases(),
    );
    let admin = s.admin.clone();
    s.agent.restart(&admin);

    // A leftover no journal of this agent names (another agent's, or from an older version)
    // is reported by `targets check`, not dropped.
    let stray = "lifeboat_restore_20260101t000000z_abcdef";
    s.pg.create_db(stray);
    let out = s.admin.run(&["targets", "check", &s.target("app")]);
    out.assert_ok();
    assert!(
        out.to_string().contains(stray),
        "the check must name the leftover database: {out}"
    );
    assert!(s.pg.database_exists(stray));
    s.shutdown();
}

#[test]
fn mariadb_swap_survives_a_crash_at_every_step() {
    let dir = TestDir::new("crash-swap-my");
    let pause = dir.sub("pause");
    let mut s = Sandbox::builder("crash-swap-my")
        .dir(dir)
        .agent_env("LIFEBOAT_TEST_PAUSE_DIR", &pause.display().to_string())
        .mariadb_target(
            SandboxTarget::new("shop")
                .extra("allow_clean_restore = true\nreplaceable_databases = [\"dest\"]"),
        )
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE items (id INT PRIMARY KEY, v CHAR(64)) ENGINE=InnoDB;
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT) ENGINE=InnoDB;
         INSERT INTO items SELECT seq, SHA2(seq, 256) FROM seq_1_to_2000;
         CREATE VIEW item_count AS SELECT COUNT(*) AS n FROM items;
         CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item) VALUES (NEW.id);
         CREATE PROCEDURE touch_items() UPDATE items SET v = v WHERE id = 1;",
    );
    let id = find_str(&s.backup_ok("shop"), "backup_id").expect("backup_id");
    s.restore(&id, "dest", &[]).assert_ok();
    let new = my.dump_sql("dest");
    // The old data has other rows and other objects, so a swap that loses or mixes up
    // definitions shows in the dump.
    let make_old = |s: &Sandbox| {
        let my = s.mariadb.as_ref().expect("mariadb");
        my.sql(
            "dest",
            "DELETE FROM items WHERE id > 1500;
             DROP VIEW item_count;
             CREATE VIEW old_view AS SELECT MAX(id) AS m FROM items;
             DROP TRIGGER items_audit;
             CREATE TRIGGER old_trigger BEFORE UPDATE ON items FOR EACH ROW SET NEW.v = UPPER(NEW.v);
             DROP PROCEDURE touch_items;
             CREATE FUNCTION old_fn() RETURNS INT DETERMINISTIC RETURN 7;",
        );
        my.dump_sql("dest")
    };
    let old = make_old(&s);
    assert_ne!(old, new);

    for (point, want) in [
        ("restore-loading", After::Old),
        ("mysql-swap-begin", After::Old),
        ("mysql-before-rename", After::Old),
        ("mysql-after-rename", After::New),
        ("restore-finishing", After::New),
    ] {
        let my = s.mariadb.as_ref().expect("mariadb");
        if my.dump_sql("dest") != old {
            assert_eq!(make_old(&s), old);
        }
        kill_at(&mut s, &pause, &id, point);
        let my = s.mariadb.as_ref().expect("mariadb");
        assert!(my.database_exists("dest"), "dest is gone after {point}");
        let got = my.dump_sql("dest");
        check_outcome(&s, point, want, &got, &old, &new, &my.databases());
    }

    // Into a new database: before the rename it does not exist afterwards (the swap had
    // created it empty), after it it is complete with its objects.
    for (point, want) in [
        ("mysql-swap-begin", None),
        ("mysql-before-rename", None),
        ("mysql-after-rename", Some(())),
    ] {
        let my = s.mariadb.as_ref().expect("mariadb");
        if my.database_exists("fresh") {
            my.sql("", "DROP DATABASE fresh;");
        }
        kill_at_new(&mut s, &pause, &id, point);
        let my = s.mariadb.as_ref().expect("mariadb");
        match want {
            None => assert!(!my.database_exists("fresh"), "fresh exists after {point}"),
            Some(()) => assert_same_dump(&new, &my.dump_sql("fresh"), point, s.dir.path()),
        }
        check_outcome(&s, point, After::New, &new, &old, &new, &my.databases());
    }
    s.shutdown();
}
