//! Parallel restore (`restore --jobs N`, a target's `restore_jobs`) through the real CLI,
//! coordinator, agent and PostgreSQL: the archive is spooled to the agent's scratch directory,
//! restored by `pg_restore -j`, compared table by table with the source, and the spool is gone
//! afterwards. A scratch directory too small for the archive refuses the restore before any
//! database is created, naming the directory and the way out; `--jobs 1` still streams.

use std::path::{Path, PathBuf};

use lifeboat_e2e::compare::assert_same_data;
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::tmpfs::Tmpfs;
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};

use crate::crash_swap::run_and_kill;

const DB: &str = "orders";

/// The agent's scratch directory as its config sets it (default: `STATE_DIR/scratch`).
pub(super) fn scratch_dir(s: &Sandbox) -> PathBuf {
    let config = std::fs::read_to_string(s.agent.config_path()).expect("config");
    let value = |key: &str| {
        config.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            Some(PathBuf::from(v.trim().trim_matches('"')))
        })
    };
    value("scratch_dir").unwrap_or_else(|| value("state_dir").expect("state_dir").join("scratch"))
}

/// Spooled archives left under `dir`.
pub(super) fn spools(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("restore-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn parallel_restores_match_the_source_and_leave_no_spool() {
    // The tmpfs is declared before the sandbox: the agent stops before it is unmounted.
    let mount = TestDir::new("parallel-restore-mnt");
    let tiny = Tmpfs::mount(&mount.path().join("scratch"), "1m");
    let mut s = Sandbox::builder("parallel_restore")
        .target(SandboxTarget::new(DB).extra("restore_jobs = 2"))
        .build();
    load_awkward(&s.pg, DB);
    load_bulk(&s.pg, DB, "lines", 50_000);
    let id = find_str(&s.backup_ok(DB), "backup_id").expect("backup_id");
    let scratch = scratch_dir(&s);

    // The dry run says what it will do.
    let plan = s
        .admin
        .run_json(&["restore", &id, "--database", "orders_plan", "--dry-run"]);
    plan.assert_ok();
    assert!(
        plan.stdout.contains("pg_restore --jobs=2") && plan.stdout.contains("spooled to"),
        "{plan}"
    );

    // The target's default: two jobs, through the spool.
    let out = s.restore(&id, "orders_j2", &[]);
    out.assert_ok();
    assert!(out.stdout.contains("--jobs=2"), "{out}");
    assert_same_data(&s.pg, DB, "orders_j2", &s.dir.sub("cmp-j2"));
    assert!(spools(&scratch).is_empty(), "{:?}", spools(&scratch));

    // --jobs overrides it: three jobs, or one (streamed, no spool).
    let out = s.restore(&id, "orders_j3", &["--jobs", "3"]);
    out.assert_ok();
    assert!(out.stdout.contains("--jobs=3"), "{out}");
    assert_same_data(&s.pg, DB, "orders_j3", &s.dir.sub("cmp-j3"));
    let out = s.restore(&id, "orders_j1", &["--jobs", "1"]);
    out.assert_ok();
    assert!(!out.stdout.contains("spooled"), "{out}");
    assert_same_data(&s.pg, DB, "orders_j1", &s.dir.sub("cmp-j1"));

    // A scratch directory without room for the archive: refused before anything is created.
    s.agent.stop();
    let config = std::fs::read_to_string(s.agent.config_path()).expect("config");
    std::fs::write(
        s.agent.config_path(),
        format!("scratch_dir = \"{}\"\n{config}", tiny.path().display()),
    )
    .expect("write config");
    s.agent.restart(&s.admin);
    let out = s.restore(&id, "orders_refused", &[]);
    assert!(!out.success(), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&tiny.path().display().to_string()) && all.contains("--jobs 1"),
        "{out}"
    );
    assert!(!s.pg.database_exists("orders_refused"));
    assert!(spools(tiny.path()).is_empty());
    // Streamed, the same restore needs no scratch space.
    s.restore(&id, "orders_streamed", &["--jobs", "1"])
        .assert_ok();
    assert_same_data(&s.pg, DB, "orders_streamed", &s.dir.sub("cmp-s"));

    // --jobs is for logical PostgreSQL restores: out of range is refused by the CLI.
    let out = s.restore(&id, "orders_bad", &["--jobs", "65"]);
    assert!(!out.success(), "{out}");
}

/// Killed with the archive spooled: after the restart the spool and the scratch database are
/// gone, the destination was never created, and the next restore goes through.
#[test]
fn a_crash_with_the_archive_spooled_leaves_nothing() {
    let dir = TestDir::new("parallel-restore-crash");
    let pause = dir.sub("pause");
    let mut s = Sandbox::builder("parallel_restore_crash")
        .dir(dir)
        .agent_env("LIFEBOAT_TEST_PAUSE_DIR", &pause.display().to_string())
        .target(SandboxTarget::new(DB).extra("restore_jobs = 2"))
        .build();
    load_bulk(&s.pg, DB, "lines", 5_000);
    let id = find_str(&s.backup_ok(DB), "backup_id").expect("backup_id");
    let scratch = scratch_dir(&s);
    run_and_kill(
        &mut s,
        &pause,
        &["restore", &id, "--database", "orders_crashed"],
        "restore-spooled",
        |s| {
            let left = spools(&scratch_dir(s));
            assert_eq!(left.len(), 1, "the spool while the agent is down: {left:?}");
        },
    );
    assert!(spools(&scratch).is_empty(), "{:?}", spools(&scratch));
    assert!(!s.pg.database_exists("orders_crashed"));
    let leftovers: Vec<String> =
        s.pg.databases()
            .into_iter()
            .filter(|d| d.starts_with("lifeboat_"))
            .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.restore(&id, "orders_crashed", &[]).assert_ok();
    assert_same_data(&s.pg, DB, "orders_crashed", &s.dir.sub("cmp"));
}
