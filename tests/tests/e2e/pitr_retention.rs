//! Retention of a physical target, end to end: `prune --dry-run` names the archived WAL that
//! goes with the base backup it deletes; after the prune the agent removes exactly the WAL
//! before the start of the base backup kept, and that backup still recovers to the latest
//! commit (compared row for row).

use std::time::Duration;

use lifeboat_e2e::Sandbox;
use lifeboat_e2e::coordinator::MANUAL_PRUNE;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{ENV, find_str};
use lifeboat_e2e::wal::{Tools, archive_through_agent, physical_target, wait_archived};

fn switch_and_wait(pg: &Pg) {
    let name = pg.query_one("main", "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(pg, &name);
}

/// The archived segment names under the target's WAL directory (timeline, log, segment).
fn archived_segments(s: &Sandbox) -> Vec<String> {
    let root = s.repo.join(ENV).join("main/wal");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).expect("wal dir").flatten() {
        if dir.file_name() == "history" {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).expect("wal subdir").flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() > 24 && name.as_bytes()[24] == b'-' {
                out.push(name[..24].to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Log and segment of a segment name, whatever its timeline.
fn position(seg: &str) -> &str {
    &seg[8..24]
}

#[test]
fn prune_names_and_removes_only_wal_no_kept_backup_needs() {
    let tools = Tools::new();
    let mut s = Sandbox::builder("pitr-retention")
        .target(physical_target("main"))
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.append_config(&format!(
        "[[retention]]\nenvironment = \"test\"\nkeep_last = 1\n{MANUAL_PRUNE}"
    ));
    s.coordinator.restart();
    s.agent.wait_connected(&s.admin);
    archive_through_agent(&mut s, &tools, "main");
    s.pg.psql(
        "main",
        "CREATE TABLE t (k int PRIMARY KEY, note text NOT NULL);\
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;",
    );
    let target = s.target("main");

    // Two base backups with WAL archived between and after them.
    let first = s.backup_ok("main");
    let first_id = find_str(&first, "backup_id").expect("backup_id");
    let first_start = find_str(&first, "wal_start").expect("a base backup records wal_start");
    for round in 0..3 {
        s.pg.psql(
            "main",
            &format!(
                "INSERT INTO t SELECT g, 'round {round}' FROM generate_series({}, {}) g;",
                2000 + round * 100,
                2000 + round * 100 + 99
            ),
        );
        switch_and_wait(&s.pg);
    }
    let second = s.backup_ok("main");
    let second_id = find_str(&second, "backup_id").expect("backup_id");
    let second_start = find_str(&second, "wal_start").expect("wal_start");
    assert!(
        position(&second_start) > position(&first_start),
        "{first_start} {second_start}"
    );
    s.pg.psql(
        "main",
        "INSERT INTO t SELECT g, 'after' FROM generate_series(5000, 5099) g;",
    );
    switch_and_wait(&s.pg);
    let newest = s.pg.query_one(
        "postgres",
        "SELECT last_archived_wal FROM pg_stat_archiver;",
    );
    eventually(
        "the agent to report the archive",
        Duration::from_secs(30),
        || {
            let w = s.admin.json(&["pitr", "window", &target]);
            anyhow::ensure!(
                find_str(&w, "last_archived").as_deref() == Some(newest.as_str()),
                "{w}"
            );
            Ok(())
        },
    );
    let before = archived_segments(&s);
    assert!(
        before.iter().any(|x| position(x) < position(&second_start)),
        "WAL from between the two backups is archived: {before:?}"
    );

    // The dry run: the older backup goes, and with it the WAL before the newer one's start.
    let plan = s.admin.json(&["prune", "--target", &target, "--dry-run"]);
    let decisions = plan["decisions"].as_array().expect("decisions");
    let action = |id: &str| {
        decisions
            .iter()
            .find(|d| d["backup_id"] == id)
            .map(|d| d["action"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(action(&first_id).as_deref(), Some("delete"), "{plan}");
    assert_eq!(action(&second_id).as_deref(), Some("keep"), "{plan}");
    let wal = plan["wal"].as_array().expect("wal");
    assert_eq!(wal.len(), 1, "{plan}");
    assert_eq!(wal[0]["timeline"], 1, "{plan}");
    assert_eq!(wal[0]["kept_from"], second_start.as_str(), "{plan}");
    assert_eq!(wal[0]["kept_backup"], second_id.as_str(), "{plan}");
    assert_eq!(wal[0]["first"], before[0].as_str(), "{plan}");
    assert!(wal[0]["last"].is_null(), "the range continues: {plan}");
    let text = s.admin.run(&["prune", "--target", &target, "--dry-run"]);
    text.assert_ok();
    assert!(
        text.stdout.contains(&format!(
            "WAL of timeline 1, {} up to {second_start} (not included), would be removed",
            before[0]
        )),
        "{text}"
    );
    assert_eq!(archived_segments(&s), before, "a dry run removes nothing");

    // The prune: the older backup is deleted, then the agent's next look at the archive (the
    // next archived file wakes it) removes the WAL before the kept backup's start, no more.
    let done = s.admin.json(&["prune", "--target", &target]);
    assert_eq!(done["delete"], 1, "{done}");
    eventually(
        "the older backup to be deleted",
        Duration::from_secs(60),
        || {
            let list = s.admin.json(&["backup", "list", "--target", &target]);
            anyhow::ensure!(
                !list.to_string().contains(&first_id),
                "still listed: {list}"
            );
            Ok(())
        },
    );
    s.pg.psql(
        "main",
        "INSERT INTO t SELECT g, 'last' FROM generate_series(6000, 6009) g;",
    );
    switch_and_wait(&s.pg);
    let after = eventually("the WAL to expire", Duration::from_secs(90), || {
        let now = archived_segments(&s);
        anyhow::ensure!(
            now.iter().all(|x| position(x) >= position(&second_start)),
            "still archived before {second_start}: {now:?}"
        );
        Ok(now)
    });
    assert!(
        after.contains(&second_start),
        "the kept backup's first segment stays: {after:?}"
    );
    for seg in before
        .iter()
        .filter(|x| position(x) >= position(&second_start))
    {
        assert!(after.contains(seg), "{seg} was removed: {after:?}");
    }

    // The kept backup still recovers to the latest commit.
    let expected = s.pg.psql("main", "SELECT k, note FROM t ORDER BY k;");
    let root = Pg::empty_root();
    let data = root.path().join("data").display().to_string();
    s.admin
        .run_json(&[
            "restore",
            "--target",
            &target,
            &second_id,
            "--data-dir",
            &data,
            "--latest",
            "--wait",
        ])
        .assert_ok();
    let copy = Pg::start_existing(root, s.pg.password());
    eventually("recovery to end", Duration::from_secs(90), || {
        let out = copy.try_psql("postgres", "SELECT pg_is_in_recovery();");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        anyhow::ensure!(state == "f", "{state}");
        Ok(())
    });
    assert_eq!(
        copy.psql("main", "SELECT k, note FROM t ORDER BY k;"),
        expected,
        "the kept backup recovers every commit"
    );
}
