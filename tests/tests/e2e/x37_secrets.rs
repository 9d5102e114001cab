//! X37 (and X38): a sentinel password in the target's password file. A backup, a verify and a
//! restore run with `RUST_LOG=trace` on the agent and the coordinator while every process's
//! command line is scanned; afterwards the logs, the CLI outputs (JSON and table), the
//! coordinator's catalog (and its -wal/-shm files), its config, the agent's state dir and the
//! manifests hold no trace of it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::fsutil::{contains, grep_dir};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{PgBinDir, pg_dump, pg_restore};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data, random_hex};

#[derive(Default)]
struct Scan {
    rounds: u64,
    hits: Vec<String>,
    saw_pg_dump: bool,
    saw_pg_restore: bool,
}

/// Reads `/proc/*/cmdline` over and over until stopped.
fn scan_cmdlines(sentinel: &str, stop: Arc<AtomicBool>, out: Arc<Mutex<Scan>>) -> JoinHandle<()> {
    let needle = sentinel.as_bytes().to_vec();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut round = Scan::default();
            if let Ok(entries) = std::fs::read_dir("/proc") {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let Some(pid) = name
                        .to_str()
                        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    else {
                        continue;
                    };
                    let Ok(cmdline) = std::fs::read(Path::new("/proc").join(pid).join("cmdline"))
                    else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if contains(&cmdline, &needle) {
                        round.hits.push(format!("pid {pid}: {text}"));
                    }
                    if !text.contains("runuser") {
                        round.saw_pg_dump |= text.contains("pg_dump");
                        round.saw_pg_restore |= text.contains("pg_restore");
                    }
                }
            }
            let mut s = out.lock().expect("scan lock");
            s.rounds += 1;
            s.hits.extend(round.hits);
            s.saw_pg_dump |= round.saw_pg_dump;
            s.saw_pg_restore |= round.saw_pg_restore;
        }
    })
}

#[test]
fn sentinel_password_appears_nowhere() {
    let sentinel = format!("SENTINEL-{}", random_hex(16));
    let dir = TestDir::new("x37");
    // Each tool pauses before running, so the agent's command line stays visible for a while.
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_dump", &pg_dump::pause_then_real(0.5));
    bin.wrap("pg_restore", &pg_restore::pause_then_real(0.5));
    let mut s = Sandbox::builder("x37")
        .dir(dir)
        .pg_password(&sentinel)
        .env("RUST_LOG", "trace")
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    load_awkward(&s.pg, "app");
    load_bulk(&s.pg, "app", "rows", 5000);

    let stop = Arc::new(AtomicBool::new(false));
    let scan = Arc::new(Mutex::new(Scan::default()));
    let scanner = scan_cmdlines(&sentinel, stop.clone(), scan.clone());

    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    let r = s.restore(&id, "x37_copy", &[]);
    r.assert_ok();
    // A failing job too: its error text travels through the coordinator and the CLI.
    let failed = s
        .admin
        .run_json(&["restore", &id, "--database", "x37_copy", "--wait"]);
    assert_eq!(failed.code, 1, "{failed}");

    stop.store(true, Ordering::Relaxed);
    scanner.join().expect("scanner thread");
    let scan = scan.lock().expect("scan lock");
    assert!(
        scan.hits.is_empty(),
        "sentinel in a command line: {:?}",
        scan.hits
    );
    assert!(scan.rounds > 10, "only {} scans ran", scan.rounds);
    assert!(
        scan.saw_pg_dump && scan.saw_pg_restore,
        "the scan never saw pg_dump/pg_restore running (dump {}, restore {})",
        scan.saw_pg_dump,
        scan.saw_pg_restore
    );

    // The sentinel really is the password (the backup logged in with it).
    assert_same_data(&s.pg, "app", "x37_copy", s.dir.path());

    // More CLI output, in both formats.
    for args in [
        &["backup", "show", id.as_str()][..],
        &["backup", "list"],
        &["jobs", "list"],
        &["targets", "list"],
        &["agents", "list"],
    ] {
        s.admin.run(args).assert_ok();
        s.admin.run_json(args).assert_ok();
    }

    // Stop both so their logs and the catalog are complete.
    assert!(s.agent.stop().success());
    assert!(s.coordinator.stop().success());
    let needle = sentinel.as_bytes();
    let agent_logs = s.agent.logs();
    let coordinator_logs = s.coordinator.logs();
    assert!(
        agent_logs.len() > 10_000 && agent_logs.to_lowercase().contains("trace"),
        "the agent did not log at trace level ({} bytes)",
        agent_logs.len()
    );
    assert!(
        !contains(agent_logs.as_bytes(), needle),
        "sentinel in the agent's log"
    );
    assert!(
        !contains(coordinator_logs.as_bytes(), needle),
        "sentinel in the coordinator's log"
    );
    assert!(
        !contains(s.admin.transcript().as_bytes(), needle),
        "sentinel in the CLI's output"
    );
    let catalog = s.coordinator.catalog_path().to_owned();
    assert!(catalog.is_file(), "no catalog at {}", catalog.display());
    // Catalog, its -wal and -shm files, config, logs, ready file.
    let hits = grep_dir(s.coordinator.dir(), needle);
    assert!(hits.is_empty(), "sentinel in coordinator files: {hits:?}");
    let hits = grep_dir(s.agent.state_dir(), needle);
    assert!(
        hits.is_empty(),
        "password files left in the agent's state dir: {hits:?}"
    );
    let hits = grep_dir(s.agent.dir(), needle);
    assert!(hits.is_empty(), "sentinel in agent files: {hits:?}");
    let hits: Vec<_> = grep_dir(&s.repo, needle);
    assert!(hits.is_empty(), "sentinel in the repository: {hits:?}");
}
