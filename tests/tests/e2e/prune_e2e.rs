//! `lifeboat prune` end to end: with a retention policy in the coordinator config, the backups
//! a real prune deletes are exactly those its dry run named, from the catalog and from the
//! repository; the kept ones (a pinned one among them) are intact, and one of them restores to
//! the data it was taken from.

use std::collections::BTreeSet;

use lifeboat_e2e::coordinator::MANUAL_PRUNE;
use lifeboat_e2e::fsutil::{files_under, sha256_file};
use lifeboat_e2e::sandbox::{Sandbox, find_str};
use lifeboat_e2e::{SandboxTarget, assert_row_counts_match, dump_sql};
use serde_json::Value;

const DB: &str = "shop";
const BACKUPS: usize = 5;

fn decisions(report: &Value) -> Vec<Value> {
    report["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {report}"))
        .clone()
}

fn ids_with(report: &Value, action: &str) -> BTreeSet<String> {
    decisions(report)
        .iter()
        .filter(|d| d["action"] == action)
        .map(|d| d["backup_id"].as_str().expect("backup_id").to_owned())
        .collect()
}

#[test]
fn prune_deletes_exactly_what_its_dry_run_said() {
    let mut s = Sandbox::builder("prune-e2e")
        .target(SandboxTarget::new(DB))
        .build();
    // The policy: the two newest backups of the environment (pinned ones are kept anyway).
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.append_config(&format!(
        "[[retention]]\nenvironment = \"test\"\nkeep_last = 2\n{MANUAL_PRUNE}"
    ));
    s.coordinator.restart();
    s.agent.wait_connected(&s.admin);

    s.pg.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);\
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;",
    );
    let mut taken = Vec::new();
    for round in 0..BACKUPS {
        s.pg.psql(
            DB,
            &format!(
                "INSERT INTO items SELECT g, 'round {round} ' || md5(g::text) \
                 FROM generate_series({}, {}) g;",
                1000 * (round + 1),
                1000 * (round + 1) + 50 * (round + 1)
            ),
        );
        let dump = dump_sql(&s.pg, DB);
        let record = s.backup_ok(DB);
        let id = find_str(&record, "backup_id").expect("backup_id");
        taken.push((id, record, dump));
    }
    let all: BTreeSet<String> = taken.iter().map(|t| t.0.clone()).collect();
    let pinned = taken[0].0.clone();
    s.admin
        .run_json(&["backup", "pin", &pinned, "--reason", "kept for the audit"])
        .assert_ok();

    let plan = s.admin.json(&["prune", "--dry-run"]);
    assert_eq!(plan["dry_run"], Value::Bool(true), "{plan}");
    let delete = ids_with(&plan, "delete");
    let keep = ids_with(&plan, "keep");
    assert_eq!(
        delete.union(&keep).cloned().collect::<BTreeSet<_>>(),
        all,
        "{plan}"
    );
    // keep_last = 2 and one pin: the two newest and the pinned oldest stay.
    let expected_delete: BTreeSet<String> = taken[1..3].iter().map(|t| t.0.clone()).collect();
    assert_eq!(delete, expected_delete, "{plan}");
    assert!(keep.contains(&pinned), "{plan}");
    let pinned_decision = decisions(&plan)
        .into_iter()
        .find(|d| d["backup_id"] == pinned.as_str())
        .expect("pinned decision");
    assert!(
        pinned_decision["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "pinned")),
        "{pinned_decision}"
    );
    // A dry run deletes nothing.
    assert_eq!(s.backup_list(DB).len(), BACKUPS);
    for id in &all {
        assert!(s.backup_dir(DB, id).join("manifest.json").is_file());
    }

    let applied = s.admin.json(&["prune"]);
    assert_eq!(applied["dry_run"], Value::Bool(false), "{applied}");
    assert_eq!(ids_with(&applied, "delete"), delete, "{applied}");
    for d in decisions(&applied)
        .iter()
        .filter(|d| d["action"] == "delete")
    {
        let job_id = d["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no delete job for {d}"));
        let job = s.wait_job_done(job_id, s.timeout());
        assert_eq!(
            find_str(&job, "state").as_deref(),
            Some("succeeded"),
            "{job}"
        );
    }

    // The catalog: exactly the kept backups remain.
    let listed: BTreeSet<String> = s
        .backup_list(DB)
        .iter()
        .map(|b| find_str(b, "backup_id").expect("backup_id"))
        .collect();
    assert_eq!(listed, keep);
    // The repository: the deleted backups' directories are gone, the kept ones are intact.
    for id in &delete {
        let dir = s.backup_dir(DB, id);
        assert!(
            !dir.exists() || files_under(&dir).is_empty(),
            "deleted backup {id} still has files: {:?}",
            files_under(&dir)
        );
    }
    for (id, record, _) in taken.iter().filter(|t| keep.contains(&t.0)) {
        let data = s.repo.join(find_str(record, "data_key").expect("data_key"));
        assert_eq!(
            sha256_file(&data),
            find_str(record, "stored_sha256").expect("stored_sha256"),
            "kept backup {id} changed on disk"
        );
        assert!(s.backup_dir(DB, id).join("manifest.json").is_file());
    }
    assert!(
        s.backup_show(&pinned)
            .to_string()
            .contains("kept for the audit"),
        "the pin is gone"
    );

    // A kept backup restores to the data it was taken from: the pinned, oldest one.
    let (id, record, dump) = &taken[0];
    let r = s.restore(id, "shop_pinned", &[]);
    r.assert_ok();
    lifeboat_e2e::compare::assert_same_dump(
        dump,
        &dump_sql(&s.pg, "shop_pinned"),
        "the pinned backup restored after prune",
        s.dir.path(),
    );
    assert_row_counts_match(&s.pg, "shop_pinned", record);

    // Nothing more to delete.
    let again = s.admin.json(&["prune", "--dry-run"]);
    assert!(ids_with(&again, "delete").is_empty(), "{again}");
    // A logical target has no archived WAL: the plan lists none, and point-in-time commands
    // say what a physical target needs.
    assert_eq!(again["wal"], serde_json::json!([]), "{again}");
    let target = s.target(DB);
    for args in [
        vec!["pitr", "window", target.as_str()],
        vec!["pitr", "verify", target.as_str(), "--wait"],
    ] {
        let out = s.admin.run(&args);
        assert!(!out.success(), "{args:?}: {out}");
        assert!(
            out.stderr.contains("no physical base backup")
                && out.stderr.contains("mode = \"physical\""),
            "{args:?}: {out}"
        );
    }

    s.shutdown();
}
