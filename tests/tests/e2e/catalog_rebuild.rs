//! `lifeboat catalog rebuild`: the catalog is lost (its database file deleted), the
//! coordinator starts empty, and the rebuild finds every backup again from the repository with
//! the same sizes and hashes; each one restores to the data it was taken from. A rebuild on an
//! intact catalog changes nothing (pins and verify results stay). A backup whose data object
//! is deleted behind lifeboat's back is reported and marked missing; one whose manifest is gone
//! too is reported missing from storage. Backups in a repository shared by two environments
//! are refused from the other environment's agent unless the admin trusts cross-environment
//! listings (H2), and then keep the environment and target of their manifest.

use std::path::PathBuf;

use lifeboat_e2e::coordinator::MANUAL_PRUNE;
use lifeboat_e2e::sandbox::{Sandbox, find_str};
use lifeboat_e2e::{SandboxTarget, assert_row_counts_match, dump_sql};
use serde_json::Value;

const DB: &str = "shop";

/// The first value under `key` anywhere in `v`.
fn find_val<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) => o
            .get(key)
            .or_else(|| o.values().find_map(|x| find_val(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_val(x, key)),
        _ => None,
    }
}

fn sorted_lines(dump: &str) -> String {
    let mut lines: Vec<&str> = dump.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    find_val(v, key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

fn str_of(v: &Value, key: &str) -> String {
    find_str(v, key).unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// One backup taken by the test: its catalog record and a plain dump of the source at the
/// time.
struct Taken {
    id: String,
    record: Value,
    dump: String,
}

/// Where the repository keeps `key` on disk (the fs repository, or the S3 server's files).
fn object_file(s: &Sandbox, key: &str) -> PathBuf {
    match &s.s3 {
        Some(s3) => s3.object_path(key),
        None => s.repo.join(key),
    }
}

fn rebuild(s: &Sandbox, extra: &[&str]) -> Value {
    let mut args = vec!["catalog", "rebuild"];
    args.extend_from_slice(extra);
    let out = s.admin.run_json(&args);
    out.assert_ok();
    out.json()
}

fn outcome_of<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["backups"]
        .as_array()
        .unwrap_or_else(|| panic!("no backups in {report}"))
        .iter()
        .find(|b| b["backup_id"] == id)
        .unwrap_or_else(|| panic!("backup {id} not in the rebuild report: {report}"))
}

fn counts(report: &Value) -> [u64; 6] {
    [
        "added",
        "updated",
        "unchanged",
        "conflicts",
        "missing",
        "skipped",
    ]
    .map(|k| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {report}"))
    })
}

fn take_three(s: &Sandbox) -> Vec<Taken> {
    s.pg.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL, price numeric(10,2));\
         INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 300) g;",
    );
    let mut taken = Vec::new();
    for round in 0..3 {
        if round > 0 {
            // Different data each time: rows added, some changed, a new table.
            s.pg.psql(
                DB,
                &format!(
                    "INSERT INTO items SELECT g, 'round {round} ' || md5(g::text), g \
                     FROM generate_series({from}, {to}) g;\
                     UPDATE items SET note = note || ' changed in {round}' WHERE id % 7 = {round};\
                     CREATE TABLE extra_{round} AS SELECT g AS n FROM generate_series(1, {round}00) g;",
                    from = 1000 * round + 1,
                    to = 1000 * round + 250 * round,
                ),
            );
        }
        let dump = dump_sql(&s.pg, DB);
        let record = s.backup_ok(DB);
        let id = str_of(&record, "backup_id");
        assert_row_counts_match(&s.pg, DB, &record);
        taken.push(Taken { id, record, dump });
    }
    taken
}

fn rebuild_after_losing_the_catalog(mut s: Sandbox) {
    let taken = take_three(&s);
    let ids: Vec<&str> = taken.iter().map(|t| t.id.as_str()).collect();

    // Pin the first, verify the second.
    s.admin
        .run_json(&["backup", "pin", ids[0], "--reason", "before the migration"])
        .assert_ok();
    // The pin also goes into the repository, as a marker beside the manifest.
    lifeboat_e2e::eventually_default("the pin marker job succeeds", || {
        let jobs = s
            .admin
            .json_list(&["jobs", "list", "--target", &s.target(DB)], "jobs")?;
        match jobs.iter().find(|j| j["kind"] == "pin") {
            Some(j) if j["state"] == "succeeded" && j["backup_id"] == ids[0] => Ok(()),
            Some(j) if j["state"] == "failed" => panic!("the pin marker job failed: {j}"),
            other => anyhow::bail!("not yet: {other:?}"),
        }
    });
    s.admin
        .run_json(&["backup", "verify", ids[1], "--wait"])
        .assert_ok();
    assert_eq!(str_of(&s.backup_show(ids[1]), "verify_status"), "ok");

    // On an intact catalog nothing changes: pins and verify results stay.
    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [0, 0, 3, 0, 0, 0], "{report}");
    assert_eq!(report["listings"][0]["error"], Value::Null, "{report}");
    let first = s.backup_show(ids[0]);
    assert_eq!(
        find_val(&first, "pinned"),
        Some(&Value::Bool(true)),
        "{first}"
    );
    assert_eq!(str_of(&s.backup_show(ids[1]), "verify_status"), "ok");

    // The catalog is lost.
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.restart_with_fresh_catalog();
    s.agent.wait_connected(&s.admin);
    assert!(
        s.backup_list(DB).is_empty(),
        "the new catalog is not empty: {:?}",
        s.backup_list(DB)
    );

    // A dry run reports and writes nothing.
    let table = s.admin.run(&["catalog", "rebuild", "--dry-run"]);
    table.assert_ok();
    assert!(
        table.stdout.contains("3 added, 0 updated, 0 unchanged")
            && table.stdout.contains("dry run, nothing written"),
        "{table}"
    );
    let report = rebuild(&s, &["--dry-run"]);
    assert_eq!(report["dry_run"], Value::Bool(true));
    assert_eq!(counts(&report), [3, 0, 0, 0, 0, 0], "{report}");
    assert_eq!(report["pins_restored"], 1, "{report}");
    assert!(s.backup_list(DB).is_empty(), "a dry run wrote backups");

    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [3, 0, 0, 0, 0, 0], "{report}");
    // The pin is found again in its marker; nothing else was pinned.
    assert_eq!(report["pins_restored"], 1, "{report}");
    assert_eq!(
        outcome_of(&report, ids[0])["pin_restored"],
        true,
        "{report}"
    );
    let first = s.backup_show(ids[0]);
    assert_eq!(
        find_val(&first, "pinned"),
        Some(&Value::Bool(true)),
        "{first}"
    );
    assert_eq!(
        str_of(&first, "pin_reason"),
        "before the migration",
        "{first}"
    );
    assert_eq!(str_of(&first, "pinned_by"), "admin", "{first}");
    for id in &ids[1..] {
        let b = s.backup_show(id);
        assert_eq!(find_val(&b, "pinned"), Some(&Value::Bool(false)), "{b}");
    }
    for t in &taken {
        let o = outcome_of(&report, &t.id);
        assert_eq!(o["outcome"], "added", "{o}");
        assert_eq!(o["verify_status"], "unverified", "{o}");
        assert_eq!(o["target"], s.target(DB).as_str(), "{o}");
    }

    // Every backup is back with what the catalog knew before.
    let listed = s.backup_list(DB);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for t in &taken {
        let now = s.backup_show(&t.id);
        for key in [
            "stored_sha256",
            "raw_sha256",
            "target",
            "agent",
            "repository",
            "data_key",
        ] {
            assert_eq!(
                str_of(&now, key),
                str_of(&t.record, key),
                "{key} of {}",
                t.id
            );
        }
        for key in ["stored_size", "raw_size", "finished_at_ms", "started_at_ms"] {
            assert_eq!(
                u64_of(&now, key),
                u64_of(&t.record, key),
                "{key} of {}",
                t.id
            );
        }
        assert_eq!(
            find_val(&now, "row_counts"),
            find_val(&t.record, "row_counts"),
            "row counts of {}",
            t.id
        );
    }

    // Each restores to the data it was taken from.
    for (i, t) in taken.iter().enumerate() {
        let db = format!("{DB}_rebuilt_{i}");
        let r = s.restore(&t.id, &db, &[]);
        r.assert_ok();
        assert_eq!(
            find_str(&r.json(), "state").as_deref(),
            Some("succeeded"),
            "{r}"
        );
        // Rows updated in the source may be dumped in another physical order than the restored
        // copy holds them: compare the dumps' lines as sorted sets (every schema line and every
        // row, with its count).
        lifeboat_e2e::compare::assert_same_dump(
            &sorted_lines(&t.dump),
            &sorted_lines(&dump_sql(&s.pg, &db)),
            &format!("backup {} restored after the rebuild", t.id),
            s.dir.path(),
        );
        assert_row_counts_match(&s.pg, &db, &t.record);
    }

    // A second rebuild finds nothing new.
    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [0, 0, 3, 0, 0, 0], "{report}");

    // Behind lifeboat's back: the second backup's data object goes, and the third backup
    // goes entirely (manifest and data).
    let data_key = str_of(&taken[1].record, "data_key");
    let data = object_file(&s, &data_key);
    std::fs::remove_file(&data).unwrap_or_else(|e| panic!("remove {}: {e}", data.display()));
    for key in ["data_key", "manifest_key"] {
        let f = object_file(&s, &str_of(&taken[2].record, key));
        std::fs::remove_file(&f).unwrap_or_else(|e| panic!("remove {}: {e}", f.display()));
    }
    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [0, 1, 1, 0, 1, 0], "{report}");
    assert_eq!(report["damaged"], 1, "{report}");
    let damaged = outcome_of(&report, ids[1]);
    assert_eq!(damaged["outcome"], "updated", "{damaged}");
    assert_eq!(damaged["verify_status"], "missing", "{damaged}");
    let gone = outcome_of(&report, ids[2]);
    assert_eq!(gone["outcome"], "missing", "{gone}");
    assert_eq!(outcome_of(&report, ids[0])["outcome"], "unchanged");
    for id in &ids[1..] {
        let b = s.backup_show(id);
        assert_eq!(str_of(&b, "verify_status"), "missing", "{b}");
    }
    // Rows are never deleted, and the intact backup is untouched.
    assert_eq!(s.backup_list(DB).len(), 3);
    assert_eq!(
        str_of(&s.backup_show(ids[0]), "verify_status"),
        "unverified"
    );

    // Only an admin may rebuild.
    let viewer = s
        .ctl_as("vera")
        .run_json(&["catalog", "rebuild", "--dry-run"]);
    assert_eq!(viewer.code, 1, "{viewer}");
    assert!(viewer.text_lower().contains("needs role admin"), "{viewer}");

    s.shutdown();
}

#[test]
fn rebuild_finds_every_backup_again_fs() {
    let s = Sandbox::builder("catalog-rebuild-fs")
        .target(SandboxTarget::new(DB))
        .operator("vera", "viewer")
        .build();
    rebuild_after_losing_the_catalog(s);
}

#[test]
fn rebuild_finds_every_backup_again_s3() {
    let s = Sandbox::builder("catalog-rebuild-s3")
        .target(SandboxTarget::new(DB))
        .operator("vera", "viewer")
        .s3(&[])
        .build();
    rebuild_after_losing_the_catalog(s);
}

/// Two environments share one repository: a backup written by environment `test` is found by
/// the `staging` agent and recorded for its own environment, target and agent (not the listing
/// agent's), and restores through its own target.
#[test]
fn shared_repository_backups_keep_their_environment_and_target() {
    let mut s = Sandbox::builder("catalog-rebuild-shared")
        .target(SandboxTarget::new(DB))
        .build();
    s.pg.create_db("other");
    s.pg.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);\
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    );
    let dump = dump_sql(&s.pg, DB);
    let record = s.backup_ok(DB);
    let id = str_of(&record, "backup_id");

    // A second agent, of environment staging, with the same directory as its repository.
    let pw = s.dir.sub("secrets").join("other.pass");
    s.pg.write_password_file(&pw);
    let url = format!(
        "postgres://{}@127.0.0.1:{}/other",
        lifeboat_e2e::pg::ROLE,
        s.pg.port()
    );
    let mut staging = lifeboat_e2e::Agent::builder(
        &s.dir.sub("agent-2"),
        &s.pki,
        &s.coordinator.url(),
        "agent-2",
        "staging",
    )
    .fs_repository("local", &s.repo)
    .target(lifeboat_e2e::TargetConfig::new("other", &url, &pw))
    .start(&s.admin);

    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.restart_with_fresh_catalog();
    s.agent.wait_connected(&s.admin);
    staging.wait_connected(&s.admin);

    // Only the staging agent lists. An agent is trusted with its own environment only (H2):
    // the manifest of test/shop is refused, and nothing is recorded.
    let report = rebuild(&s, &["--agent", "agent-2"]);
    assert_eq!(counts(&report), [0, 0, 0, 0, 0, 0], "{report}");
    assert_eq!(report["refused"], 1, "{report}");
    let o = outcome_of(&report, &id);
    assert_eq!(o["outcome"], "refused", "{o}");
    assert!(
        str_of(o, "detail").contains("--trust-cross-environment"),
        "{o}"
    );
    assert!(
        s.admin
            .json_list(&["backup", "list"], "backups")
            .expect("backup list")
            .is_empty(),
        "a refused manifest was recorded"
    );

    // The admin says the repository is shared on purpose: the backup is still test/shop's,
    // written by agent-1.
    let report = rebuild(&s, &["--agent", "agent-2", "--trust-cross-environment"]);
    assert_eq!(counts(&report), [1, 0, 0, 0, 0, 0], "{report}");
    assert_eq!(report["listings"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["listings"][0]["agent"], "agent-2", "{report}");
    let o = outcome_of(&report, &id);
    assert_eq!(o["target"], "test/shop", "{o}");
    assert_eq!(o["agent"], "agent-1", "{o}");
    let now = s.backup_show(&id);
    for key in [
        "target",
        "environment",
        "agent",
        "stored_sha256",
        "raw_sha256",
    ] {
        assert_eq!(str_of(&now, key), str_of(&record, key), "{key}");
    }
    assert!(
        s.admin
            .json_list(&["backup", "list", "--target", "staging/other"], "backups")
            .expect("backup list")
            .is_empty(),
        "attributed to the listing agent's target"
    );

    // Both agents list it now: reported once, unchanged (agent-1's listing is trusted, so
    // agent-2's refusal of the same backup is not reported).
    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [0, 0, 1, 0, 0, 0], "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["listings"].as_array().map(Vec::len), Some(2));

    // It restores through its own target's agent.
    let r = s.restore(&id, "shop_shared", &[]);
    r.assert_ok();
    lifeboat_e2e::compare::assert_same_dump(
        &sorted_lines(&dump),
        &sorted_lines(&dump_sql(&s.pg, "shop_shared")),
        "shared repository backup restored after the rebuild",
        s.dir.path(),
    );

    let st = staging.stop();
    assert!(st.success(), "agent-2 stop: {st}");
    s.shutdown();
}

/// H2: someone who can write the bucket copies a real backup under new ids with manifests that
/// say they are newer. A rebuild records them (same environment, hashes that match), but until
/// a verify passes they count toward no keep rule: the real prune that follows deletes nothing,
/// and the real backups still restore to the data they were taken from.
#[test]
fn planted_manifests_do_not_make_retention_expire_real_backups() {
    let mut s = Sandbox::builder("catalog-rebuild-planted")
        .target(SandboxTarget::new(DB))
        .build();
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.append_config(&format!(
        "[[retention]]\nenvironment = \"test\"\nkeep_last = 2\n{MANUAL_PRUNE}"
    ));
    s.coordinator.restart();
    s.agent.wait_connected(&s.admin);

    let taken = take_three(&s);
    let real: Vec<&str> = taken[1..].iter().map(|t| t.id.as_str()).collect();
    // Keep two real backups: the oldest goes by a first prune, so the policy is at rest.
    let applied = s.admin.json(&["prune"]);
    for d in applied["decisions"].as_array().expect("decisions") {
        if let Some(job) = d["job_id"].as_str().filter(|j| !j.is_empty()) {
            let job = s.wait_job_done(job, s.timeout());
            assert_eq!(
                find_str(&job, "state").as_deref(),
                Some("succeeded"),
                "{job}"
            );
        }
    }
    assert_eq!(s.backup_list(DB).len(), 2);

    // Two copies of the newest backup under new ids, finished "now" (newer than the real ones).
    let now = time::OffsetDateTime::now_utc();
    let mut planted = Vec::new();
    for i in 0..2_i64 {
        let id = lifeboat_common::ids::new_id(now);
        let from = s.backup_dir(DB, real[1]);
        let to = s.backup_dir(DB, &id);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("read backup dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
        let path = to.join("manifest.json");
        let mut m: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read manifest"))
                .expect("manifest json");
        let at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).expect("ms") + i;
        m["backup_id"] = Value::from(id.clone());
        m["started_at_ms"] = Value::from(at_ms - 1000);
        m["finished_at_ms"] = Value::from(at_ms);
        std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
        planted.push(id);
    }

    let report = rebuild(&s, &[]);
    assert_eq!(counts(&report), [2, 0, 2, 0, 0, 0], "{report}");
    for id in &planted {
        assert_eq!(outcome_of(&report, id)["outcome"], "added", "{report}");
    }

    // A real prune: nothing is deleted; the planted copies are kept but count for nothing.
    let applied = s.admin.json(&["prune"]);
    let decisions = applied["decisions"].as_array().expect("decisions");
    let decision = |id: &str| {
        decisions
            .iter()
            .find(|d| d["backup_id"] == id)
            .unwrap_or_else(|| panic!("no decision for {id}: {applied}"))
    };
    for id in &real {
        assert_eq!(decision(id)["action"], "keep", "{applied}");
    }
    for id in &planted {
        let d = decision(id);
        assert_eq!(d["action"], "keep", "{d}");
        assert_eq!(
            d["reasons"],
            serde_json::json!(["rebuilt_unverified"]),
            "{d}"
        );
    }
    assert_eq!(s.backup_list(DB).len(), 4);

    // The real backups are intact: the older one restores to the data it was taken from.
    let t = &taken[1];
    let r = s.restore(&t.id, "shop_real", &[]);
    r.assert_ok();
    lifeboat_e2e::compare::assert_same_dump(
        &sorted_lines(&t.dump),
        &sorted_lines(&dump_sql(&s.pg, "shop_real")),
        "a real backup restored after a rebuild with planted manifests",
        s.dir.path(),
    );
    assert_row_counts_match(&s.pg, "shop_real", &t.record);
    s.shutdown();
}
