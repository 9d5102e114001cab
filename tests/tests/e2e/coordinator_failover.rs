//! Two coordinators on one PostgreSQL catalog (docs/deploy-ha.md): one active, one standing
//! by. The standby serves operators (the CLI, `--wait` included) while the active one holds
//! the agents; configured closed (one address for both), it listens on nothing. When the
//! active one dies the standby takes over; agents and the CLI given both URLs follow; a backup
//! running at the time ends exactly once; an active coordinator that loses its catalog lock,
//! or its network path to the catalog, exits at once (fencing), before the standby can take
//! over.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat_e2e::coordinator::read_ready_file;
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::process::Proc;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::stall::{stalling_sandbox_with, start_stalled_backup};
use lifeboat_e2e::wrappers::{PgBinDir, pg_restore};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir, assert_same_data};

use super::catalog_postgres::catalog_with_files;

/// A second coordinator with the sandbox coordinator's config, its gRPC on `grpc`, HTTP on a
/// free port, files in `dir`.
struct Standby {
    proc: Proc,
    ready: PathBuf,
    /// Its HTTP address (health and metrics, served while it stands by too).
    http: String,
}

impl Standby {
    fn start(active_config: &Path, grpc: &str, dir: &Path) -> Self {
        Self::start_replacing(active_config, grpc, dir, false, ("", ""))
    }

    /// As [`Standby::start`], closed while it stands by.
    fn start_closed(active_config: &Path, grpc: &str, dir: &Path) -> Self {
        Self::start_replacing(active_config, grpc, dir, true, ("", ""))
    }

    /// As [`Standby::start`], with `from` replaced by `to` in the active one's config; with
    /// `closed`, `server.standby_serves_operators = false` (needed on the active one's own gRPC
    /// address: one address for both).
    fn start_replacing(
        active_config: &Path,
        grpc: &str,
        dir: &Path,
        closed: bool,
        (from, to): (&str, &str),
    ) -> Self {
        let http = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
        let text = std::fs::read_to_string(active_config).expect("read coordinator.toml");
        let text = if from.is_empty() {
            text
        } else {
            text.replace(from, to)
        };
        let text: String = text
            .lines()
            .map(|l| match l.trim_start() {
                t if t.starts_with("grpc_listen") && closed => {
                    format!("grpc_listen = {grpc:?}\nstandby_serves_operators = false\n")
                }
                t if t.starts_with("grpc_listen") => format!("grpc_listen = {grpc:?}\n"),
                t if t.starts_with("http_listen") => format!("http_listen = {http:?}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let config = dir.join("coordinator.toml");
        std::fs::write(&config, text).expect("write standby config");
        let ready = dir.join("ready.json");
        let mut cmd = Command::new(lifeboat_e2e::bin("lifeboat-coordinator"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .current_dir(dir);
        let mut proc = Proc::spawn("standby", cmd, dir);
        eventually("the standby says so", Duration::from_secs(30), || {
            if let Some(status) = proc.try_status() {
                panic!("the standby exited ({status}): {}", proc.logs());
            }
            if proc.logs().contains("standing by") {
                Ok(())
            } else {
                anyhow::bail!("no 'standing by' in its log yet")
            }
        });
        Self { proc, ready, http }
    }

    /// Waits until it serves; returns its gRPC address.
    fn wait_active(&mut self) -> String {
        let (grpc, _) = eventually("the standby takes over", Duration::from_secs(60), || {
            if let Some(status) = self.proc.try_status() {
                panic!("the standby exited ({status}): {}", self.proc.logs());
            }
            read_ready_file(&self.ready)
        });
        grpc
    }

    fn stop(mut self) {
        let status = self.proc.stop();
        assert!(status.success(), "{status}: {}", self.proc.logs());
    }
}

#[test]
fn a_standby_takes_over_the_same_address_when_the_active_one_dies() {
    let dir = TestDir::new("failover-same-address");
    let (catalog_pg, catalog) = catalog_with_files(&dir.sub("secrets"));
    let mut s = Sandbox::builder("failover-same-address")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .coordinator_catalog(&catalog)
        .build();
    load_bulk(&s.pg, "app", "orders", 1000);
    let first = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");

    // Configured for the same gRPC address (as a second host behind one name would be): it
    // stands by and listens on nothing.
    let mut standby = Standby::start_closed(
        s.coordinator.config_path(),
        s.coordinator.grpc_addr(),
        &s.dir.sub("standby"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !standby.ready.exists(),
        "the standby serves while the active one runs"
    );
    // Its HTTP port tells monitoring what it is: alive, not ready, not the leader.
    let (code, _) = http_get(&standby.http, "/health/live");
    assert_eq!(code, 200);
    let (code, body) = http_get(&standby.http, "/health/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"role\":\"standby\""), "{body}");
    let (_, metrics) = http_get(&standby.http, "/metrics");
    assert!(
        metrics.contains("\nlifeboat_coordinator_leader 0\n"),
        "{metrics}"
    );
    let (_, metrics) = http_get(s.coordinator.http_addr(), "/metrics");
    assert!(
        metrics.contains("\nlifeboat_coordinator_leader 1\n"),
        "{metrics}"
    );

    let killed_at = Instant::now();
    s.coordinator.kill();
    let grpc = standby.wait_active();
    eprintln!(
        "failover: the standby served {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(grpc, s.coordinator.grpc_addr());
    let (code, body) = http_get(&standby.http, "/health/ready");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"role\":\"active\"") && body.contains("postgres"),
        "{body}"
    );
    let (_, metrics) = http_get(&standby.http, "/metrics");
    assert!(
        metrics.contains("\nlifeboat_coordinator_leader 1\n"),
        "{metrics}"
    );

    // The CLI and the agent find it at the same address: the first backup is listed, a new
    // one is taken through it and restores the same data.
    let listed = s.backup_list("app");
    assert_eq!(
        find_str(&listed[0], "backup_id").as_deref(),
        Some(first.as_str())
    );
    s.pg.psql("app", "DELETE FROM bulk_orders WHERE id <= 100;");
    let second = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    s.restore(&second, "app_after_failover", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_after_failover", s.dir.path());
    assert_eq!(
        catalog_pg.query_one("lifeboat", "SELECT count(*) FROM backups"),
        "2",
        "one row per backup, none twice"
    );

    // The standby stops cleanly; the first coordinator comes back and is active again.
    standby.stop();
    s.coordinator.restart();
    assert_eq!(s.backup_list("app").len(), 2);
    s.shutdown();
}

/// Waits for the job to end and checks it ended once, succeeded, in the catalog too.
fn ends_once_succeeded(s: &Sandbox, catalog_pg: &lifeboat_e2e::pg::Pg, job_id: &str) {
    let job = s.wait_job_done(job_id, Duration::from_secs(120));
    assert_eq!(
        find_str(&job, "state").as_deref(),
        Some("succeeded"),
        "{job}"
    );
    assert_eq!(
        catalog_pg.query_one(
            "lifeboat",
            &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND state = 'succeeded'"),
        ),
        "1"
    );
}

#[test]
fn a_backup_running_when_the_active_coordinator_dies_ends_once_on_the_standby() {
    let standby_addr = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
    let secrets = tempfile::tempdir().expect("tempdir");
    let (catalog_pg, catalog) = catalog_with_files(secrets.path());
    let (mut s, bin) = stalling_sandbox_with("failover-mid-backup", |b| {
        b.coordinator_catalog(&catalog)
            .standby_coordinator(&format!("https://{standby_addr}"))
    });
    let mut standby = Standby::start(
        s.coordinator.config_path(),
        &standby_addr,
        &s.dir.sub("standby"),
    );
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");

    // The active coordinator dies while pg_dump is stalled mid-stream.
    s.coordinator.kill();
    assert_eq!(standby.wait_active(), standby_addr);
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");

    // The agent finishes the dump and reports to the standby; the job ends once, succeeded,
    // with one catalog row for its backup.
    ends_once_succeeded(&s, &catalog_pg, &job_id);
    assert_eq!(
        catalog_pg.query_one(
            "lifeboat",
            &format!("SELECT count(*) FROM backups WHERE backup_id = '{backup_id}'"),
        ),
        "1"
    );
    s.restore(&backup_id, "app_restored", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_restored", s.dir.path());
    assert!(
        s.agent.logs().contains(&format!("https://{standby_addr}")),
        "the agent never named the standby"
    );

    standby.stop();
    s.coordinator.restart();
    s.shutdown();
}

#[test]
fn a_restore_running_when_the_active_coordinator_dies_ends_once_on_the_standby() {
    let standby_addr = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
    let secrets = tempfile::tempdir().expect("tempdir");
    let (catalog_pg, catalog) = catalog_with_files(secrets.path());
    let dir = TestDir::new("failover-mid-restore");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_restore", &pg_restore::stall_until_released(256 * 1024));
    let mut s = Sandbox::builder("failover-mid-restore")
        .dir(dir)
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .coordinator_catalog(&catalog)
        .standby_coordinator(&format!("https://{standby_addr}"))
        .build();
    load_bulk(&s.pg, "app", "rows", 20_000);
    let backup_id = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    let mut standby = Standby::start(
        s.coordinator.config_path(),
        &standby_addr,
        &s.dir.sub("standby"),
    );

    // pg_restore stalls midway; the active coordinator dies meanwhile.
    let _ = std::fs::remove_file(bin.marker("stalled"));
    std::fs::write(bin.marker("stall"), b"").expect("arm the stall");
    let started = s
        .admin
        .json(&["restore", &backup_id, "--database", "app_copy"]);
    let job_id = find_str(&started, "job_id").unwrap_or_else(|| panic!("no job_id: {started}"));
    eventually(
        "pg_restore to stall midway",
        Duration::from_secs(60),
        || {
            if bin.marker("stalled").exists() {
                Ok(())
            } else {
                anyhow::bail!("not yet: {}", s.job(&job_id))
            }
        },
    );
    s.coordinator.kill();
    assert_eq!(standby.wait_active(), standby_addr);
    std::fs::remove_file(bin.marker("stall")).expect("release the stall");

    // The agent finishes the restore and reports to the standby: the job ends once,
    // succeeded, and the restored database holds the data.
    ends_once_succeeded(&s, &catalog_pg, &job_id);
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    assert_eq!(
        catalog_pg.query_one(
            "lifeboat",
            "SELECT count(*) FROM jobs WHERE kind = 'restore'"
        ),
        "1",
        "one restore job, not run again"
    );
    standby.stop();
    s.coordinator.restart();
    s.shutdown();
}

#[test]
fn the_active_coordinator_exits_when_it_loses_its_catalog_lock() {
    let dir = TestDir::new("failover-fenced");
    let (catalog_pg, catalog) = catalog_with_files(&dir.sub("secrets"));
    let mut s = Sandbox::builder("failover-fenced")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .coordinator_catalog(&catalog)
        .build();
    load_bulk(&s.pg, "app", "orders", 200);
    s.backup_ok("app");

    // The lock's session ends (an administrator, a proxy or the network cut it): the
    // coordinator must stop acting on the catalog at once.
    let terminated = catalog_pg.query_one(
        "lifeboat",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = 'lifeboat')",
    );
    assert_eq!(
        terminated, "1",
        "exactly one session holds the catalog lock"
    );
    let status = s
        .coordinator
        .proc()
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running: {}", s.coordinator.logs()));
    assert_eq!(status.code(), Some(1), "{}", s.coordinator.logs());
    assert!(
        s.coordinator
            .logs()
            .contains("standby coordinator can take over"),
        "{}",
        s.coordinator.logs()
    );

    // Started again, it takes the free lock and serves.
    s.coordinator.restart();
    assert_eq!(s.backup_list("app").len(), 1);
    s.shutdown();
}

#[test]
fn a_coordinator_cut_off_from_its_catalog_stops_before_the_standby_starts() {
    let dir = TestDir::new("failover-partition");
    let (catalog_pg, catalog) = catalog_with_files(&dir.sub("secrets"));
    // The active coordinator reaches the catalog server through a proxy that can partition
    // the network (same address, so the server's certificate still verifies); the standby
    // reaches it directly.
    let server = catalog
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host_port, _)| host_port.to_owned())
        .expect("the catalog URL's host:port");
    let server: std::net::SocketAddr = server.parse().expect("an IP:port");
    let net = lifeboat_e2e::netcut::NetCut::start(server.ip(), server);
    let direct = format!(":{}/lifeboat", server.port());
    let through = format!(":{}/lifeboat", net.port());
    let mut s = Sandbox::builder("failover-partition")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .coordinator_catalog(&catalog.replace(&direct, &through))
        .build();
    load_bulk(&s.pg, "app", "orders", 200);
    let first = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    let mut standby = Standby::start_replacing(
        s.coordinator.config_path(),
        s.coordinator.grpc_addr(),
        &s.dir.sub("standby"),
        true,
        (&through, &direct),
    );

    // The partition: the active coordinator's catalog connections hang, nothing is closed.
    let cut_at = Instant::now();
    net.cut();
    let status = s
        .coordinator
        .proc()
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running: {}", s.coordinator.logs()));
    let stopped_after = cut_at.elapsed();
    assert_eq!(status.code(), Some(1), "{}", s.coordinator.logs());
    assert!(
        stopped_after < Duration::from_secs(10),
        "fenced only after {stopped_after:?}"
    );
    // While the server still holds the lock for the silent session, no one may serve: the
    // active one has stopped, the standby has not started.
    assert!(
        !standby.ready.exists(),
        "the standby served while the cut-off coordinator held the lock:\n{}",
        standby.proc.logs()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed()));
    assert!(!standby.ready.exists(), "{}", standby.proc.logs());

    // The server notices its peer is gone (its keepalives), ends the sessions and frees the
    // lock: the standby takes over.
    let noticed_at = Instant::now();
    net.server_notices();
    assert_eq!(standby.wait_active(), s.coordinator.grpc_addr());
    eprintln!(
        "partition: the cut-off coordinator stopped {:.1} s after the cut; the standby served \
         {:.1} s after the server dropped the silent session",
        stopped_after.as_secs_f64(),
        noticed_at.elapsed().as_secs_f64()
    );
    let listed = s.backup_list("app");
    assert_eq!(
        find_str(&listed[0], "backup_id").as_deref(),
        Some(first.as_str())
    );
    s.backup_ok("app");
    assert_eq!(
        catalog_pg.query_one("lifeboat", "SELECT count(*) FROM backups"),
        "2",
        "one row per backup, none twice"
    );

    // The network heals; the first coordinator comes back as the active one once the
    // standby stops.
    standby.stop();
    net.heal();
    s.coordinator.restart();
    assert_eq!(s.backup_list("app").len(), 2);
    s.shutdown();
}

#[test]
fn a_standby_serves_operators_while_the_active_one_holds_the_agents() {
    let standby_addr = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
    let standby_url = format!("https://{standby_addr}");
    let secrets = tempfile::tempdir().expect("tempdir");
    let (catalog_pg, catalog) = catalog_with_files(secrets.path());
    // The agent and `admin` list the standby first.
    let (mut s, bin) = stalling_sandbox_with("standby-serves", |b| {
        b.coordinator_catalog(&catalog)
            .standby_coordinator_first(&standby_url)
    });
    let mut standby = Standby::start(
        s.coordinator.config_path(),
        &standby_addr,
        &s.dir.sub("standby"),
    );
    let (code, body) = eventually(
        "the standby serves operators",
        Duration::from_secs(30),
        || match http_get(&standby.http, "/health/ready") {
            (200, body) => Ok((200, body)),
            (code, body) => anyhow::bail!("{code}: {body}"),
        },
    );
    assert!(
        code == 200 && body.contains("\"role\":\"standby\"") && body.contains("\"leader\":false"),
        "{body}"
    );
    let (_, metrics) = http_get(&standby.http, "/metrics");
    assert!(
        metrics.contains("\nlifeboat_coordinator_leader 0\n"),
        "{metrics}"
    );
    assert!(!standby.ready.exists(), "the standby says it is active");

    // The agent tries the standby first, is refused there and holds its session with the
    // active one; the standby lists it as connected (from its heartbeats in the catalog).
    s.agent.stop();
    s.agent.restart(&s.admin.with_url(&s.coordinator.url()));
    assert!(
        s.agent.logs().contains("standing by"),
        "the agent was not refused by the standby: {}",
        s.agent.logs()
    );
    let only_standby = s.admin.with_url(&standby_url);
    lifeboat_e2e::agent::agent_connected(&only_standby, s.agent.name())
        .expect("the standby lists the agent as connected");

    // A backup started through the standby is handed out by the active one; cancelled through
    // the standby, the agent stops its pg_dump.
    let (job_id, backup_id) = start_stalled_backup(&s, &bin, "app");
    only_standby
        .run_json(&["jobs", "cancel", &job_id])
        .assert_ok();
    eventually(
        "the agent stops the cancelled backup's pg_dump",
        Duration::from_secs(30),
        || {
            let left = lifeboat_e2e::stall::pg_dump_processes(s.pg.port(), "app");
            if left.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("still running: {left:?}")
            }
        },
    );
    std::fs::remove_file(bin.marker("stall")).expect("disarm the stall");
    let job = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(
        find_str(&job, "state").as_deref(),
        Some("cancelled"),
        "{job}"
    );
    lifeboat_e2e::stall::assert_no_backup(&s, "app", &backup_id);

    // A backup and a restore through the standby alone, followed there to their end
    // (`--wait` watches the jobs the active one runs).
    s.pg.psql("app", "DELETE FROM bulk_rows WHERE id <= 10;");
    let out = only_standby.run_json(&["backup", "run", &s.target("app"), "--wait"]);
    out.assert_ok();
    let first = find_str(&out.json(), "backup_id").expect("backup id");
    assert_eq!(
        find_str(&out.json(), "state").as_deref(),
        Some("succeeded"),
        "{out}"
    );
    s.restore_as(&only_standby, &first, "app_via_standby", &[])
        .assert_ok();
    assert_same_data(&s.pg, "app", "app_via_standby", s.dir.path());
    // A verify, and a schedule the active one's scheduler reads from the catalog.
    let verify = only_standby.run_json(&["backup", "verify", &first, "--wait"]);
    verify.assert_ok();
    assert_eq!(
        find_str(&verify.json(), "state").as_deref(),
        Some("succeeded"),
        "{verify}"
    );
    only_standby
        .run_json(&["schedule", "set", &s.target("app"), "--cron", "0 3 * * *"])
        .assert_ok();
    let on_active = s.admin.with_url(&s.coordinator.url());
    let schedules = on_active.json(&["schedule", "list", "--target", &s.target("app")]);
    assert_eq!(schedules.as_array().map(Vec::len), Some(1), "{schedules}");
    // A drill through the standby: restored, checked and dropped by the agent the active one
    // holds, and followed there to its end.
    let drill = only_standby.run_json(&[
        "drill",
        "run",
        &s.target("app"),
        "--backup",
        &first,
        "--wait",
    ]);
    drill.assert_ok();
    assert_eq!(drill.json()["state"], "succeeded", "{drill}");
    assert_eq!(
        drill.json()["drill_of"],
        s.target("app").as_str(),
        "{drill}"
    );
    // The other schedule commands work there too, and the lists read the same catalog as the
    // active one's.
    for args in [
        &["schedule", "pause", &s.target("app")][..],
        &["schedule", "resume", &s.target("app")],
        &["schedule", "next", &s.target("app")],
        &["schedule", "runs", &s.target("app")],
        &["targets", "list"],
        &["keys", "list"],
        &["audit", "list"],
    ] {
        only_standby.run_json(args).assert_ok();
    }
    for args in [
        &["backup", "list", "--target", &s.target("app")][..],
        &["drill", "list", "--target", &s.target("app")],
        &["jobs", "list"],
    ] {
        assert_eq!(only_standby.json(args), on_active.json(args), "{args:?}");
    }
    let drills = only_standby
        .json_list(&["drill", "list", "--target", &s.target("app")], "drills")
        .expect("drill list");
    assert_eq!(drills.len(), 1, "{drills:?}");
    only_standby
        .run_json(&["schedule", "delete", &s.target("app")])
        .assert_ok();
    let schedules = on_active.json(&["schedule", "list", "--target", &s.target("app")]);
    assert_eq!(schedules.as_array().map(Vec::len), Some(0), "{schedules}");

    // What needs the agents' sessions is refused there, naming where to run it; given both
    // URLs (the standby's first), the CLI sends it on to the active one.
    let rebuild = only_standby.run(&["catalog", "rebuild", "--dry-run"]);
    assert_ne!(rebuild.code, 0, "{rebuild}");
    assert!(rebuild.text_lower().contains("active one"), "{rebuild}");
    s.admin
        .run_json(&["catalog", "rebuild", "--dry-run"])
        .assert_ok();
    let window = only_standby.run(&["pitr", "window", &s.target("app")]);
    assert_ne!(window.code, 0, "{window}");
    assert!(window.text_lower().contains("active one"), "{window}");
    // The active one's own answer: this target takes no physical backups.
    let window = s.admin.run(&["pitr", "window", &s.target("app")]);
    assert_ne!(window.code, 0, "{window}");
    assert!(
        window.text_lower().contains("no physical base backup"),
        "{window}"
    );

    // The active one dies: the standby takes over the agent, and the CLI keeps working.
    let killed_at = Instant::now();
    s.coordinator.kill();
    assert_eq!(standby.wait_active(), standby_addr);
    eprintln!(
        "the serving standby was active {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    let second = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    assert_ne!(first, second);
    assert_eq!(
        catalog_pg.query_one("lifeboat", "SELECT count(*) FROM backups"),
        "2",
        "one row per backup, none twice"
    );
    assert_eq!(
        catalog_pg.query_one(
            "lifeboat",
            &format!("SELECT count(*) FROM jobs WHERE id = '{job_id}' AND state = 'cancelled'"),
        ),
        "1"
    );
    standby.stop();
    s.coordinator.restart();
    s.shutdown();
}

/// A rolling upgrade done in the wrong order: a coordinator of a newer release (more catalog
/// migrations) starts while an older one is active. It does not migrate under the active one:
/// it stands by closed until it holds the lock, then upgrades the schema and serves. A catalog
/// a newer release upgraded is refused, naming the upgrade.
#[test]
fn a_standby_newer_than_the_catalog_migrates_it_only_once_it_holds_the_lock() {
    let standby_addr = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
    let dir = TestDir::new("failover-upgrade");
    let (catalog_pg, catalog) = catalog_with_files(&dir.sub("secrets"));
    let mut s = Sandbox::builder("failover-upgrade")
        .dir(dir)
        .target(SandboxTarget::new("app"))
        .coordinator_catalog(&catalog)
        .standby_coordinator(&format!("https://{standby_addr}"))
        .build();
    load_bulk(&s.pg, "app", "orders", 1000);
    let first = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");

    // The catalog as the older release left it: the newest migration (19) undone.
    let newest = "SELECT count(*) FROM _sqlx_migrations WHERE version = 19";
    let column = "SELECT count(*) FROM information_schema.columns \
                  WHERE table_name = 'jobs' AND column_name = 'cancel_requested_by'";
    catalog_pg.psql(
        "lifeboat",
        "DROP INDEX drills_target_created_id; DROP INDEX drills_created_id; \
         ALTER TABLE jobs DROP COLUMN cancel_requested_by; \
         DELETE FROM _sqlx_migrations WHERE version = 19;",
    );
    let mut standby = Standby::start(
        s.coordinator.config_path(),
        &standby_addr,
        &s.dir.sub("standby"),
    );
    assert!(
        standby
            .proc
            .logs()
            .contains("the catalog's schema is older than this coordinator's"),
        "{}",
        standby.proc.logs()
    );
    // Longer than its schema re-check: still nothing migrated, gRPC closed, health says so.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(catalog_pg.query_one("lifeboat", newest), "0");
    assert_eq!(catalog_pg.query_one("lifeboat", column), "0");
    assert!(
        std::net::TcpStream::connect(&standby_addr).is_err(),
        "the standby opened its gRPC port on a schema it would have to migrate"
    );
    let (code, body) = http_get(&standby.http, "/health/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"role\":\"standby\""), "{body}");

    // The active one dies: the standby takes the lock, migrates, and serves.
    s.coordinator.kill();
    let grpc = standby.wait_active();
    assert_eq!(grpc, standby_addr);
    assert_eq!(catalog_pg.query_one("lifeboat", newest), "1");
    assert_eq!(catalog_pg.query_one("lifeboat", column), "1");
    let listed = s.backup_list("app");
    assert_eq!(
        find_str(&listed[0], "backup_id").as_deref(),
        Some(first.as_str())
    );
    let second = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    s.restore(&second, "app_after_upgrade", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_after_upgrade", s.dir.path());

    // A third coordinator stands by, serving operators on the now current schema; a newer
    // release migrates the catalog meanwhile. When it takes the lock it stops, naming the
    // upgrade, instead of running on a schema it does not know.
    let third_addr = format!("127.0.0.1:{}", lifeboat_e2e::pg::free_port());
    let mut third = Standby::start(
        s.coordinator.config_path(),
        &third_addr,
        &s.dir.sub("standby-3"),
    );
    catalog_pg.psql(
        "lifeboat",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from a newer release', true, '\\x00', 0);",
    );
    standby.proc.kill();
    let status = third
        .proc
        .wait_exit(Duration::from_secs(60))
        .expect("the third coordinator exits once it holds the lock");
    assert!(!status.success(), "{}", third.proc.logs());
    assert!(
        third.proc.logs().contains("[999]")
            && third.proc.logs().contains("upgrade this coordinator"),
        "{}",
        third.proc.logs()
    );
    assert!(!third.ready.exists(), "it served as the active one");

    // Refused at start too, naming the upgrade, and the catalog is left as it is.
    let out = Command::new(lifeboat_e2e::bin("lifeboat-coordinator"))
        .arg("--config")
        .arg(s.coordinator.config_path())
        .output()
        .expect("run the coordinator");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a newer catalog: {err}");
    assert!(
        err.contains("[999]") && err.contains("upgrade this coordinator"),
        "{err}"
    );
    assert_eq!(
        catalog_pg.query_one("lifeboat", "SELECT count(*) FROM _sqlx_migrations"),
        "3",
        "the catalog was changed"
    );
    let stopped = s.agent.stop();
    assert!(stopped.success(), "{stopped}");
}
