//! Point-in-time recovery end to end: a base backup, commits with known times, WAL locations,
//! transaction ids and a restore point, archived through the agent; restores to each kind of
//! target into empty data directories, each started and compared row for row; a promoted copy
//! archiving a second timeline that a later restore follows; a missing segment named before
//! anything is written.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use lifeboat_e2e::Sandbox;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{ENV, find_str};
use lifeboat_e2e::wal::{
    AS_POSTGRES, Tools, archive_through_agent, physical_target, run_as, text, wait_archived,
};

/// One committed transaction: its key, commit LSN and transaction id.
pub(crate) struct Commit {
    lsn: String,
    xid: String,
}

pub(crate) fn commit(pg: &Pg, k: u32) -> Commit {
    let out = pg.psql(
        "main",
        &format!(
            "BEGIN; INSERT INTO t VALUES ({k}, clock_timestamp()); SELECT txid_current(); COMMIT;\n\
             SELECT pg_current_wal_insert_lsn(); SELECT pg_sleep(0.2);"
        ),
    );
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Commit {
        xid: lines[0].to_owned(),
        lsn: lines[1].to_owned(),
    }
}

/// A moment between commits `a` and `b` (RFC 3339, UTC, microseconds).
pub(crate) fn between(pg: &Pg, a: u32, b: u32) -> String {
    pg.query_one(
        "main",
        &format!(
            "SELECT to_char((x.at + (y.at - x.at) / 2) AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM t x, t y WHERE x.k = {a} AND y.k = {b};"
        ),
    )
}

pub(crate) fn switch_and_wait(pg: &Pg) {
    // pg_switch_wal() returns the end of the segment it completed; its file name is that one's.
    let name = pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(pg, &name);
}

/// Restores into a new empty directory with `extra` arguments, starts a server on it and
/// waits until recovery is over (or paused, with `paused`).
pub(crate) fn restore_and_start(s: &Sandbox, extra: &[&str], paused: bool) -> Pg {
    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    let target = s.target("main");
    let mut args = vec![
        "restore",
        "--target",
        &target,
        "--data-dir",
        &data,
        "--wait",
    ];
    args.extend_from_slice(extra);
    let out = s.admin.run_json(&args);
    out.assert_ok();
    assert!(
        root.path().join("data/recovery.signal").is_file(),
        "recovery.signal: {out}"
    );
    let pg = Pg::start_existing(root, s.pg.password());
    wait_recovered(&pg, paused);
    pg
}

/// Waits until `pg`'s recovery is over (or paused, with `paused`).
pub(crate) fn wait_recovered(pg: &Pg, paused: bool) {
    eventually("recovery to end", Duration::from_secs(90), || {
        let out = pg.try_psql(
            "postgres",
            "SELECT CASE WHEN pg_is_in_recovery() THEN 'true ' || pg_is_wal_replay_paused()::text \
             ELSE 'false false' END;",
        );
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want = if paused { "true true" } else { "false false" };
        anyhow::ensure!(state == want, "{state}");
        Ok(())
    });
}

/// The repository file holding archived segment `name` of target `main`.
fn archived_file(s: &Sandbox, name: &str) -> std::path::PathBuf {
    let dir = s.repo.join(ENV).join("main/wal").join(&name[..16]);
    std::fs::read_dir(&dir)
        .expect("wal dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| panic!("{name} is archived in {}", dir.display()))
}

pub(crate) fn keys(pg: &Pg) -> String {
    pg.query_one("main", "SELECT string_agg(k::text, ',' ORDER BY k) FROM t;")
}

pub(crate) fn upto(k: u32) -> String {
    (1..=k).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn restores_reach_exactly_the_point_asked_for() {
    let tools = Tools::new();
    let mut s = Sandbox::builder("pitr")
        .target(physical_target("main"))
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    let socket = archive_through_agent(&mut s, &tools, "main");
    s.pg.psql(
        "main",
        "CREATE TABLE t (k int PRIMARY KEY, at timestamptz NOT NULL);",
    );
    let rec = s.backup_ok("main");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    // The segment the base backup starts in (its WAL before is not needed).
    let backup_start = s.pg.query_one(
        "postgres",
        "SELECT pg_walfile_name(redo_lsn) FROM pg_control_checkpoint();",
    );

    // Twelve commits over three WAL segments, a restore point after the ninth.
    let mut commits = Vec::new();
    for k in 1..=12 {
        commits.push(commit(&s.pg, k));
        if k == 9 {
            s.pg.psql("main", "SELECT pg_create_restore_point('after_9');");
        }
        if k == 4 || k == 8 {
            switch_and_wait(&s.pg);
        }
    }
    switch_and_wait(&s.pg);

    // The window: from the end of the base backup to the newest archived segment, one
    // timeline, no gap; the same in /metrics.
    let newest = s.pg.query_one(
        "postgres",
        "SELECT last_archived_wal FROM pg_stat_archiver;",
    );
    let target = s.target("main");
    let window = eventually(
        "the agent to report the archive",
        Duration::from_secs(30),
        || {
            let w = s.admin.json(&["pitr", "window", &target]);
            anyhow::ensure!(
                find_str(&w, "last_archived").as_deref() == Some(newest.as_str()),
                "{w}"
            );
            // WAL from before the base backup's start is not needed by it, and goes.
            anyhow::ensure!(w["timelines"][0]["first"] == backup_start, "{w}");
            Ok(w)
        },
    );
    let before_backup = s.repo.join(ENV).join("main/wal/0000000100000000");
    assert!(
        !std::fs::read_dir(&before_backup)
            .expect("wal dir")
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("000000010000000000000001-")),
        "the segment before the base backup was kept"
    );
    assert!(
        s.agent
            .logs()
            .contains("removed WAL older than the oldest base backup"),
        "the agent archived and then removed the segment before the base backup"
    );
    assert_eq!(window["gaps"].as_array().map(Vec::len), Some(0), "{window}");
    assert_eq!(window["timelines"][0]["timeline"], 1, "{window}");
    assert_eq!(
        window["base_backups"][0][0].as_str(),
        Some(id.as_str()),
        "{window}"
    );
    assert_eq!(
        window["earliest"].as_str(),
        rec["finished_at"].as_str(),
        "the window starts where the base backup ended: {window} {rec}"
    );
    // /health/backups carries the same window for the physical target.
    let (_, health) = lifeboat_e2e::http::http_get(s.coordinator.http_addr(), "/health/backups");
    let health: serde_json::Value = serde_json::from_str(&health).expect("health JSON");
    let entry = health["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == target.as_str()))
        .unwrap_or_else(|| panic!("{target} in {health}"));
    // The same instant (the health report writes as many fraction digits as it needs).
    let instant = |v: &serde_json::Value| {
        v.as_str()
            .and_then(lifeboat_common::time::parse_rfc3339)
            .unwrap_or_else(|| panic!("an RFC 3339 time: {v}"))
    };
    assert_eq!(
        instant(&entry["pitr"]["earliest"]),
        instant(&window["earliest"]),
        "{health}"
    );
    assert_eq!(entry["pitr"]["last_archived"], newest.as_str(), "{health}");
    assert_eq!(entry["pitr"]["gaps"], serde_json::json!([]), "{health}");
    let (_, metrics) = lifeboat_e2e::http::http_get(s.coordinator.http_addr(), "/metrics");
    assert!(
        metrics.contains(&format!(
            "lifeboat_pitr_archive_gaps{{environment=\"{ENV}\",target=\"main\"}} 0"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "lifeboat_pitr_last_archived_timestamp_seconds{{environment=\"{ENV}\",target=\"main\"}}"
        )),
        "{metrics}"
    );

    // A time between commits 5 and 6.
    let t5 = between(&s.pg, 5, 6);
    let copy = restore_and_start(&s, &["--to-time", &t5], false);
    assert_eq!(keys(&copy), upto(5), "--to-time {t5}");
    drop(copy);

    // A WAL location: the end of commit 7.
    let copy = restore_and_start(&s, &[&id, "--to-lsn", &commits[6].lsn], false);
    assert_eq!(keys(&copy), upto(7), "--to-lsn {}", commits[6].lsn);
    drop(copy);

    // A transaction id: commit 3, inclusive.
    let copy = restore_and_start(&s, &["--to-xid", &commits[2].xid], false);
    assert_eq!(keys(&copy), upto(3), "--to-xid {}", commits[2].xid);
    drop(copy);

    // A restore point, paused there (read-only, still in recovery), the server started by
    // the agent on a port asked for; the job reports where recovery stopped.
    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    let port = lifeboat_e2e::pg::free_port().to_string();
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        "--data-dir",
        &data,
        "--to-name",
        "after_9",
        "--recovery-action",
        "pause",
        "--start-port",
        &port,
        "--wait",
    ]);
    out.assert_ok();
    assert!(
        out.stdout
            .contains("recovery stopping at restore point \\\"after_9\\\""),
        "{out}"
    );
    assert!(
        out.stdout.contains("pausing at the end of recovery"),
        "{out}"
    );
    let copy = Pg::attach_running(
        root,
        port.parse().expect("port"),
        s.pg.password(),
        std::path::Path::new("/var/run/postgresql"),
    );
    assert_eq!(
        copy.query_one(
            "postgres",
            "SELECT pg_is_in_recovery()::text || ' ' || pg_is_wal_replay_paused()::text;"
        ),
        "true true"
    );
    assert_eq!(keys(&copy), upto(9), "--to-name after_9");
    drop(copy);

    // Everything archived; the copy is promoted onto timeline 2, where it keeps archiving
    // (its archive_command is the source's) and commits more.
    let mut tl2 = restore_and_start(&s, &["--latest"], false);
    assert_eq!(keys(&tl2), upto(12), "--latest");
    assert_eq!(
        tl2.query_one(
            "postgres",
            "SELECT timeline_id FROM pg_control_checkpoint();"
        ),
        "2"
    );
    // A restored copy does not archive until told to (it would write into the source's
    // archive); this one takes over, so archiving goes back on.
    assert_eq!(tl2.query_one("postgres", "SHOW archive_mode;"), "off");
    tl2.psql("postgres", "ALTER SYSTEM RESET archive_mode;");
    tl2.enable_archiving(&format!(
        "{} wal-push --socket {socket} --target main %p",
        tools.bin().display()
    ));
    // The history file of the new timeline was written while archiving was off: pushed by
    // hand, as docs/pitr.md's switch-over says.
    let history = tl2.data_dir().join("pg_wal/00000002.history");
    let o = run_as(
        AS_POSTGRES,
        &tools.bin(),
        &[
            "wal-push",
            "--socket",
            &socket,
            "--target",
            "main",
            &history.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    tl2.psql(
        "main",
        "INSERT INTO t VALUES (100, clock_timestamp()); SELECT pg_sleep(0.2);",
    );
    tl2.psql(
        "main",
        "INSERT INTO t VALUES (101, clock_timestamp()); SELECT pg_sleep(0.2);",
    );
    let t100 = between(&tl2, 100, 101);
    switch_and_wait(&tl2);
    // The source goes on with timeline 1 meanwhile.
    commit(&s.pg, 13);
    switch_and_wait(&s.pg);
    tl2.stop();
    let copy = restore_and_start(&s, &[&id, "--to-time", &t100], false);
    assert_eq!(
        keys(&copy),
        format!("{},100", upto(12)),
        "timeline 2, --to-time {t100}"
    );
    drop(copy);

    // The base backup's verify reads the archived WAL it spans back too.
    let out = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout.contains("archived WAL segment(s) from")
            && out.stdout.contains("match their SHA-256"),
        "{out}"
    );

    // The whole archive read back on the agent: every file against its hash, both timelines'
    // history, the chain from the base backup unbroken.
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("from base backup {id}")) && out.stdout.contains("unbroken"),
        "{out}"
    );
    assert!(out.stdout.contains("each matching its SHA-256"), "{out}");

    // A segment lost from the repository: the restore is refused before anything is written,
    // naming it and what is recoverable instead.
    let lost = s.pg.query_one(
        "main",
        &format!("SELECT pg_walfile_name('{}');", commits[5].lsn),
    );
    let file = archived_file(&s, &lost);
    std::fs::remove_file(&file).expect("lose the segment");
    let t10 = between(&s.pg, 10, 11);
    let root = Pg::empty_root();
    let data = root.path().join("data");
    let data_arg = data.display().to_string();
    let out = s.admin.run_json(&[
        "restore",
        "--target",
        &target,
        &id,
        "--data-dir",
        &data_arg,
        "--to-time",
        &t10,
        "--wait",
    ]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stdout
            .contains(&format!("segment {lost} is not in the repository"))
            || out
                .stderr
                .contains(&format!("segment {lost} is not in the repository")),
        "{out}"
    );
    assert!(out.text_lower().contains("recoverable up to"), "{out}");
    assert_eq!(
        std::fs::read_dir(&data).expect("list").count(),
        0,
        "nothing written"
    );
    // The window shows the gap once the agent looks again (after the next archived file).
    commit(&s.pg, 14);
    switch_and_wait(&s.pg);
    eventually("the gap to be reported", Duration::from_secs(90), || {
        let w = s.admin.json(&["pitr", "window", &target]);
        anyhow::ensure!(
            w["gaps"]
                .as_array()
                .is_some_and(|g| g.iter().any(|x| x.as_str() == Some(lost.as_str()))),
            "{w}"
        );
        Ok(())
    });

    // `pitr verify` names the lost segment and fails.
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stdout.contains(&format!("segment {lost} is missing"))
            || out.stderr.contains(&format!("segment {lost} is missing")),
        "{out}"
    );

    // A damaged archived file (one byte flipped inside a later segment): named, and the
    // archive is reported corrupt.
    let damaged = s.pg.query_one(
        "main",
        &format!("SELECT pg_walfile_name('{}');", commits[9].lsn),
    );
    assert_ne!(damaged, lost);
    let file = archived_file(&s, &damaged);
    let mut bytes = std::fs::read(&file).expect("read segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&file, &bytes).expect("damage the segment");
    let out = s.admin.run_json(&["pitr", "verify", &target, "--wait"]);
    assert!(!out.success(), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("corrupt"), "{out}");
    assert!(
        all.contains(&format!("{damaged}-")) && all.contains("damaged"),
        "the damaged file is named: {out}"
    );
}
