//! What the coordinator runs by itself, through the real CLI, agent, PostgreSQL and
//! repository: a verify schedule reads every kept backup back (a backup damaged at rest is
//! found corrupt, the others ok, each audited with the schedule as actor); retention applied
//! after each backup removes what the policy expires from the repository; `backup delete`
//! refuses a pinned backup and deletes another.

use std::time::Duration;

use chrono::{Timelike, Utc};
use lifeboat_e2e::SandboxTarget;
use lifeboat_e2e::fsutil::files_under;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{Sandbox, find_str};
use serde_json::Value;

const DB: &str = "runs";

/// A daily cron expression (UTC) for the next whole minute at least `lead` away, and when.
fn daily_cron_in(lead: Duration) -> (String, chrono::DateTime<Utc>) {
    let soon = Utc::now() + chrono::Duration::from_std(lead).expect("lead");
    let at = soon
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole minute")
        + chrono::Duration::minutes(1);
    (format!("{} {} * * *", at.minute(), at.hour()), at)
}

fn verify_status(s: &Sandbox, id: &str) -> String {
    find_str(&s.backup_show(id), "verify_status").unwrap_or_default()
}

#[test]
fn verify_schedule_prune_after_backup_and_backup_delete() {
    let mut s = Sandbox::builder("coordinator-runs")
        .target(SandboxTarget::new(DB))
        .operator("vera", "viewer")
        .build();
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    // keep_last = 2, applied after each backup (the default); no daily run in this test.
    s.coordinator.append_config(
        "[[retention]]\nenvironment = \"test\"\nkeep_last = 2\n[prune]\ncron = \"\"\n",
    );
    s.coordinator.restart();
    s.agent.wait_connected(&s.admin);
    s.pg.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);\
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    );
    let target = s.target(DB);

    // Three backups: after the third, retention removes the first from the repository.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let b = s.backup_ok(DB);
        ids.push(find_str(&b, "backup_id").expect("backup_id"));
    }
    let first_dir = s.backup_dir(DB, &ids[0]);
    eventually(
        "the expired backup deleted",
        Duration::from_secs(60),
        || {
            let listed = s.backup_list(DB).len();
            let gone = !first_dir.exists() || files_under(&first_dir).is_empty();
            anyhow::ensure!(
                listed == 2 && gone,
                "{listed} backups listed; files gone: {gone}"
            );
            Ok(())
        },
    );
    let audit = s
        .admin
        .json(&["audit", "list", "--actor", "schedule/prune-after-backup"]);
    assert!(audit.to_string().contains(&ids[0]), "{audit}");

    // backup delete: a pinned backup is refused (exit 1, named); after unpinning... the
    // newest is still kept, so delete the older one once a newer backup exists.
    s.admin
        .run_json(&["backup", "pin", &ids[1], "--reason", "kept for the audit"])
        .assert_ok();
    let refused = s.admin.run(&["backup", "delete", &ids[1], "--wait"]);
    assert!(!refused.success(), "{refused}");
    assert!(refused.stderr.contains("pinned"), "{refused}");
    let viewer = s.ctl_as("vera");
    let denied = viewer.run(&["backup", "delete", &ids[1]]);
    assert!(
        !denied.success() && denied.stderr.contains("admin"),
        "{denied}"
    );
    let newest = s.admin.run(&["backup", "delete", &ids[2], "--wait"]);
    assert!(
        !newest.success() && newest.stderr.contains("newest good backup"),
        "{newest}"
    );
    s.admin.run_json(&["backup", "unpin", &ids[1]]).assert_ok();
    let deleted = s.admin.run(&["backup", "delete", &ids[1], "--wait"]);
    assert!(deleted.success(), "{deleted}");
    let second_dir = s.backup_dir(DB, &ids[1]);
    assert!(
        !second_dir.exists() || files_under(&second_dir).is_empty(),
        "deleted backup still has files: {:?}",
        files_under(&second_dir)
    );
    assert_eq!(s.backup_list(DB).len(), 1);

    // A verify schedule: one more backup, one of the two damaged at rest.
    let b = s.backup_ok(DB);
    ids.push(find_str(&b, "backup_id").expect("backup_id"));
    let damaged = &ids[2];
    let data = s
        .repo
        .join(find_str(&s.backup_show(damaged), "data_key").expect("data_key"));
    let mut bytes = std::fs::read(&data).expect("read stored file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, bytes).expect("damage stored file");
    let (cron, at) = daily_cron_in(Duration::from_secs(20));
    let set = s.admin.json(&[
        "schedule", "set", &target, "--kind", "verify", "--cron", &cron, "--cover", "1h",
    ]);
    assert_eq!(set["kind"], Value::from("verify"), "{set}");
    assert_eq!(set["cover_secs"], Value::from(3600), "{set}");
    let list = s.admin.json(&["schedule", "list", "--target", &target]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert!(
        Utc::now() < at,
        "set-up took too long for the schedule at {at}"
    );

    let wait = (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(90);
    eventually("the scheduled verify jobs done", wait, || {
        let (a, b) = (verify_status(&s, &ids[2]), verify_status(&s, &ids[3]));
        anyhow::ensure!(a != "unverified" && b != "unverified", "{a}, {b}");
        Ok(())
    });
    assert_eq!(verify_status(&s, &ids[2]), "corrupt");
    assert_eq!(verify_status(&s, &ids[3]), "ok");
    let runs = s
        .admin
        .json(&["schedule", "runs", &target, "--kind", "verify"]);
    let first = &runs.as_array().expect("runs")[0];
    assert_eq!(first["outcome"], Value::from("started"), "{runs}");
    assert!(
        first["reason"]
            .as_str()
            .is_some_and(|r| r.contains("verifying 2 backups")),
        "{runs}"
    );
    let audit = s
        .admin
        .json(&["audit", "list", "--actor", "schedule/verify"]);
    for id in &ids[2..] {
        assert!(audit.to_string().contains(id.as_str()), "{audit}");
    }
    s.shutdown();
}
