//! Restore drills of a physical (PITR) target through the real CLI, coordinator and agent: the
//! newest base backup restored to the latest archived WAL into a new `lifeboat_drill_…`
//! directory under the drill target's `restore_data_dirs`, started on a free port, checked
//! with the drill target's `drill_checks` (one only passes if the commits after the backup
//! were replayed), timed, then stopped and removed; a failing check fails the drill and
//! cleans up all the same; a drill target without `restore_data_dirs` is refused by name.

use std::path::Path;
use std::time::Duration;

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wal::{Tools, archive_through_agent, wait_archived};
use lifeboat_e2e::{Sandbox, SandboxTarget};
use serde_json::Value;

/// What is left in the drills' parent directory.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list the drills' directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The port the drill's server ran on, from the job's report.
fn drill_port(job: &Value) -> u16 {
    let report = job["report"].to_string();
    let at = report
        .find("runs on 127.0.0.1:")
        .unwrap_or_else(|| panic!("the drill's server port in {report}"));
    report[at + "runs on 127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a port")
}

/// Nothing listens on `port` any more and no process runs on a directory under `dir`.
fn assert_stopped(port: u16, dir: &Path) {
    assert!(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2)
        )
        .is_err(),
        "something still listens on the drill's port {port}"
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    let dir = dir.display().to_string();
    assert!(
        !ps.lines().any(|l| l.contains(&dir)),
        "a process of the drill is still running:\n{ps}"
    );
}

fn drills(s: &Sandbox, target: &str) -> Vec<Value> {
    s.admin
        .json_list(&["drill", "list", "--target", &s.target(target)], "drills")
        .unwrap_or_else(|e| panic!("drill list: {e:#}"))
}

#[test]
fn drill_pitr_replays_archived_wal_checks_and_cleans_up() {
    let tools = Tools::new();
    let parent = tools.scratch("drills");
    let dirs = format!("restore_data_dirs = [\"{}\"]", parent.display());
    let mut s = Sandbox::builder("drill_pitr")
        .target(
            SandboxTarget::new("main")
                .extra("mode = \"physical\"")
                .extra(&dirs)
                .extra("drill_checks = [\"SELECT count(*) = 3 FROM t\", \"SELECT NOT pg_is_in_recovery()\"]"),
        )
        // Drill targets on the same server: one whose check fails, one with nowhere to
        // restore a data directory.
        .target(
            SandboxTarget::new("strict")
                .database("main")
                .extra(&dirs)
                .extra("drill_checks = [\"SELECT false\"]"),
        )
        .target(SandboxTarget::new("bare").database("main"))
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    archive_through_agent(&mut s, &tools, "main");
    s.pg.psql("main", "CREATE TABLE t (k int PRIMARY KEY);");
    let rec = s.backup_ok("main");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    // Commits after the base backup: only WAL replay brings them into the drill's copy.
    for k in 1..=3 {
        s.pg.psql("main", &format!("INSERT INTO t VALUES ({k});"));
    }
    let name =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(&s.pg, &name);

    let main = s.target("main");
    let out = s.admin.run_json(&["drill", "run", &main, "--wait"]);
    out.assert_ok();
    let job = out.json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["backup_id"], id.as_str(), "{job}");
    assert_eq!(job["drill_of"], main.as_str(), "{job}");
    let detail = job["detail"].as_str().expect("detail");
    assert!(detail.starts_with("drill passed: RTO "), "{detail}");
    assert!(
        detail.contains("recovered to the latest archived WAL"),
        "{detail}"
    );
    assert!(detail.contains("2 check(s) true"), "{detail}");
    assert!(
        detail.contains("server stopped and data directory removed"),
        "{detail}"
    );
    let report = job["report"].to_string();
    assert!(
        report.contains("SELECT count(*) = 3 FROM t: true"),
        "the check ran against the replayed copy: {report}"
    );
    // What recovery reached, from the server's own log.
    assert!(report.contains("redo done at"), "{report}");
    assert!(report.contains("archive recovery complete"), "{report}");
    let database = job["database"].as_str().expect("database").to_owned();
    assert!(database.starts_with("lifeboat_drill_"), "{database}");
    assert!(
        report.contains(&format!("{} removed", parent.join(&database).display())),
        "{report}"
    );
    assert!(
        leftovers(&parent).is_empty(),
        "the drill left {:?} in {}",
        leftovers(&parent),
        parent.display()
    );
    assert_stopped(drill_port(&job), &parent);

    // Recorded, with its RTO.
    let list = drills(&s, "main");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["outcome"], "succeeded", "{list:?}");
    assert_eq!(list[0]["backup_id"], id.as_str(), "{list:?}");
    assert!(list[0]["rto_ms"].as_u64().expect("rto_ms") > 0, "{list:?}");
    let listed = s.admin.run(&["drill", "list", "--target", &main]);
    assert!(listed.stdout.contains(&id), "{listed}");

    // A check that fails: the drill fails naming it, and cleans up all the same.
    let out = s.admin.run_json(&[
        "drill",
        "run",
        &main,
        "--into",
        &s.target("strict"),
        "--wait",
    ]);
    assert_eq!(out.code, 1, "{out}");
    let job = out.json();
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().expect("error");
    assert!(
        error.contains("drill check \"SELECT false\" failed"),
        "{error}"
    );
    let report = job["report"].to_string();
    assert!(report.contains("removed"), "{report}");
    assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
    assert_stopped(drill_port(&job), &parent);
    let list = drills(&s, "main");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["outcome"], "failed", "{list:?}");
    assert_eq!(
        list[0]["drill_target"],
        s.target("strict").as_str(),
        "{list:?}"
    );

    // A drill target with no restore_data_dirs: refused, naming the setting.
    let out = s
        .admin
        .run_json(&["drill", "run", &main, "--into", &s.target("bare"), "--wait"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("restore_data_dirs"), "{out}");
    assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
    s.shutdown();
}

/// An agent killed (kill -9) while its drill's server runs: when it starts again it stops that
/// server and removes the drill's directory, before it takes any job.
#[test]
fn a_drill_interrupted_by_a_crash_is_cleaned_up_at_the_next_start() {
    let tools = Tools::new();
    let parent = tools.scratch("drills");
    let pause = tools.scratch("pause");
    let mut s = Sandbox::builder("drill_pitr_crash")
        .target(
            SandboxTarget::new("main")
                .extra("mode = \"physical\"")
                .extra(&format!("restore_data_dirs = [\"{}\"]", parent.display())),
        )
        .agent_env("LIFEBOAT_TEST_PAUSE_DIR", &pause.display().to_string())
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    archive_through_agent(&mut s, &tools, "main");
    s.pg.psql("main", "CREATE TABLE t (k int PRIMARY KEY);");
    s.backup_ok("main");
    let name =
        s.pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(&s.pg, &name);

    let arm = pause.join("pause-drill-started");
    std::fs::write(&arm, b"").expect("arm the pause point");
    let started = s.admin.json(&["drill", "run", &s.target("main")]);
    let job_id = find_str(&started, "job_id").expect("job_id");
    lifeboat_e2e::poll::eventually(
        "the drill's server to run",
        Duration::from_secs(120),
        || {
            anyhow::ensure!(pause.join("paused-drill-started").exists(), "not yet");
            Ok(())
        },
    );
    let left = leftovers(&parent);
    assert_eq!(left.len(), 1, "{left:?}");
    let pid_file = parent.join(&left[0]).join("postmaster.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("the drill's server runs");
    let port: u16 = pid
        .lines()
        .nth(3)
        .and_then(|l| l.trim().parse().ok())
        .expect("port");
    assert!(!s.agent.kill().success());
    std::fs::remove_file(&arm).expect("disarm");

    let admin = s.admin.clone();
    s.agent.restart(&admin);
    assert!(
        leftovers(&parent).is_empty(),
        "the drill's directory is still there: {:?}",
        leftovers(&parent)
    );
    assert_stopped(port, &parent);
    assert!(
        s.agent
            .logs()
            .contains("stopped the server of an interrupted drill"),
        "the agent says what it cleaned up"
    );
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_ne!(
        find_str(&job, "state").as_deref(),
        Some("succeeded"),
        "{job}"
    );
}
