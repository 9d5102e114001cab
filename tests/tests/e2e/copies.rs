//! Off-site copies through the real CLI, coordinator and agent, with a filesystem repository
//! (`local`) and a real S3 server (`offsite`): each backup of a target with `copy_to` is
//! copied after it succeeds; the copy has its own verify state; a copy whose manifest write
//! fails leaves nothing behind and is made again after the next backup; `backup copy` makes a
//! one-off copy and `backup delete --repository` removes one; a damaged copy is reported
//! corrupt by its own verify and never becomes the copy a restore reads; losing the whole
//! local repository loses no backup that has a copy: the restore reads the copy (data
//! compared with the source), and `--from-repository` forces a repository. Retention differs
//! per repository: `keep_last = 1` locally, `keep_last = 3` off-site keeps three restorable
//! backups, the older ones living on as their copies.

use std::path::Path;
use std::time::Duration;

use lifeboat_e2e::compare::assert_same_data;
use lifeboat_e2e::coordinator::MANUAL_PRUNE;
use lifeboat_e2e::fixtures::{load_awkward, load_bulk};
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::s3proxy::{Action, Rule};
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};
use serde_json::Value;

const DB: &str = "orders";

/// The copy of `id` in `repository` as `backup show` gives it, if any.
fn copy_of(s: &Sandbox, id: &str, repository: &str) -> Option<Value> {
    s.backup_show(id)["copies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["repository"] == repository)
        .cloned()
}

/// Waits until the copy of `id` in `offsite` is stored; returns it.
fn stored_copy(s: &Sandbox, id: &str) -> Value {
    eventually(
        "the copy is stored",
        Duration::from_secs(90),
        || match copy_of(s, id, "offsite") {
            Some(c) if c["state"] == "stored" => Ok(c),
            other => anyhow::bail!("copy of {id}: {other:?}"),
        },
    )
}

/// Waits until a copy job of `id` has ended; returns it.
fn ended_copy_job(s: &Sandbox, id: &str) -> Value {
    eventually("the copy job ended", Duration::from_secs(90), || {
        let jobs = s
            .admin
            .json_list(&["jobs", "list", "--target", &s.target(DB)], "jobs")?;
        let job = jobs
            .into_iter()
            .find(|j| j["kind"] == "copy" && j["backup_id"] == id);
        match job {
            Some(j) if lifeboat_e2e::sandbox::is_terminal(j["state"].as_str().unwrap_or("")) => {
                Ok(j)
            }
            other => anyhow::bail!("copy job of {id}: {other:?}"),
        }
    })
}

/// Waits until every job of the target is finished.
fn settle(s: &Sandbox) {
    eventually("no job is active", Duration::from_secs(90), || {
        let jobs = s.admin.json_list(&["jobs", "list", "--active"], "jobs")?;
        anyhow::ensure!(jobs.is_empty(), "{} active job(s): {jobs:?}", jobs.len());
        Ok(())
    });
}

/// The S3 server's file for `key` (relative to the repository root).
fn s3_file(s: &Sandbox, key: &str) -> std::path::PathBuf {
    s.s3.as_ref().expect("s3").object_path(key)
}

fn backup_key(id: &str, file: &str) -> String {
    format!("test/{DB}/{id}/{file}")
}

/// Objects of backup `id` the S3 server holds (file names).
fn s3_objects(s: &Sandbox, id: &str) -> Vec<String> {
    let dir = s3_file(s, &format!("test/{DB}/{id}"));
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn id_of(rec: &Value) -> String {
    find_str(rec, "backup_id").expect("backup_id")
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= 0x5a;
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&b).expect("write");
}

#[test]
fn copies_survive_the_loss_of_the_local_repository() {
    let s = Sandbox::builder("copies")
        .target(SandboxTarget::new(DB))
        .s3_copies()
        .build();
    load_awkward(&s.pg, DB);
    load_bulk(&s.pg, DB, "lines", 20_000);
    // `targets check` probes the repository the target copies to as well.
    let out = s.admin.run_json(&["targets", "check", &s.target(DB)]);
    out.assert_ok();
    assert!(
        out.to_string().contains("\"copies\"") && out.to_string().contains("s3://"),
        "{out}"
    );
    let proxy = &s.s3.as_ref().expect("s3").proxy;
    proxy.add(Rule::new(Action::Status(403, "AccessDenied")).method("PUT"));
    let out = s.admin.run_json(&["targets", "check", &s.target(DB)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.to_string().contains("cannot write to s3://"), "{out}");
    proxy.clear();

    // 1. A backup is copied off-site after it succeeds: every object, the manifest last.
    let first = s.backup_ok(DB);
    let id1 = id_of(&first);
    let copy = stored_copy(&s, &id1);
    assert_eq!(copy["verify_status"], "unverified", "{copy}");
    assert_eq!(
        s3_objects(&s, &id1),
        ["data.pgdump.zst", "globals.sql.zst", "manifest.json"],
        "what the off-site repository holds"
    );
    assert_eq!(
        std::fs::read(s3_file(&s, &backup_key(&id1, "data.pgdump.zst"))).expect("copy"),
        std::fs::read(s.backup_dir(DB, &id1).join("data.pgdump.zst")).expect("own"),
        "the copy's data is the backup's stored bytes"
    );
    // Its own verify: the copy, not the backup, gets the verdict.
    s.admin
        .run(&[
            "backup",
            "verify",
            &id1,
            "--repository",
            "offsite",
            "--wait",
        ])
        .assert_ok();
    assert_eq!(
        copy_of(&s, &id1, "offsite").expect("copy")["verify_status"],
        "ok"
    );
    assert_eq!(s.backup_show(&id1)["verify_status"], "unverified");

    // 2. A copy that fails at its manifest leaves nothing behind, and is made again after
    // the next backup.
    proxy.add(
        Rule::new(Action::Status(403, "AccessDenied"))
            .method("PUT")
            .path("manifest.json"),
    );
    s.pg.psql(DB, "INSERT INTO bulk_lines (id, a) SELECT g, 'second ' || g FROM generate_series(20001, 20500) g;");
    let id2 = id_of(&s.backup_ok(DB));
    let failed = ended_copy_job(&s, &id2);
    proxy.clear();
    assert!(
        copy_of(&s, &id2, "offsite").is_none(),
        "{}",
        s.backup_show(&id2)
    );
    assert!(
        s3_objects(&s, &id2).is_empty(),
        "a failed copy left {:?} off-site",
        s3_objects(&s, &id2)
    );
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("manifest.json"),
        "the error names what failed: {failed}"
    );
    let id3 = id_of(&s.backup_ok(DB));
    stored_copy(&s, &id3);
    stored_copy(&s, &id2);
    assert!(s3_objects(&s, &id2).contains(&"manifest.json".to_owned()));
    // /health/backups and /metrics: the newest backup held off-site, the last copy failure.
    let (status, body) = http_get(s.coordinator.http_addr(), "/health/backups");
    assert!(status == 200 || status == 503, "{status} {body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    let copies = &health["targets"][0]["copies"][0];
    assert_eq!(copies["repository"], "offsite", "{health}");
    assert_eq!(copies["newest_backup_id"], id3.as_str(), "{health}");
    assert_eq!(copies["behind"], false, "{health}");
    assert_eq!(
        copies["last_failure"]["backup_id"],
        id2.as_str(),
        "{health}"
    );
    let (_, metrics) = http_get(s.coordinator.http_addr(), "/metrics");
    let sample = metrics
        .lines()
        .find(|l| {
            l.starts_with("lifeboat_copy_last_success_timestamp_seconds{")
                && l.contains("repository=\"offsite\"")
        })
        .unwrap_or_else(|| panic!("no copy metric in\n{metrics}"));
    let at: f64 = sample
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!(at > 1.7e9, "{sample}");

    // 3. One-off copies and deleting one copy.
    let out = s.admin.run(&["backup", "copy", &id1, "--to", "offsite"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.text_lower().contains("already has a copy in offsite"),
        "{out}"
    );
    let out = s.admin.run(&["backup", "copy", &id1, "--to", "local"]);
    assert!(
        out.text_lower()
            .contains("stored in repository local itself"),
        "{out}"
    );
    s.admin
        .run(&[
            "backup",
            "delete",
            &id1,
            "--repository",
            "offsite",
            "--wait",
        ])
        .assert_ok();
    assert!(copy_of(&s, &id1, "offsite").is_none());
    assert!(
        s3_objects(&s, &id1).is_empty(),
        "{:?}",
        s3_objects(&s, &id1)
    );
    assert!(
        s.backup_dir(DB, &id1).join("manifest.json").exists(),
        "deleting the copy left the backup"
    );
    s.admin
        .run(&["backup", "copy", &id1, "--to", "offsite", "--wait"])
        .assert_ok();
    assert_eq!(
        copy_of(&s, &id1, "offsite").expect("copy")["state"],
        "stored"
    );

    // 4. A damaged copy: its own verify says corrupt; the backup itself stays good.
    let copy_data = s3_file(&s, &backup_key(&id1, "data.pgdump.zst"));
    flip_byte(&copy_data, 100);
    let out = s.admin.run(&[
        "backup",
        "verify",
        &id1,
        "--repository",
        "offsite",
        "--wait",
    ]);
    assert_eq!(out.code, 1, "{out}");
    let c = copy_of(&s, &id1, "offsite").expect("copy");
    assert_eq!(c["verify_status"], "corrupt", "{c}");
    assert_eq!(s.backup_show(&id1)["verify_status"], "unverified");

    // 5. The local repository is lost. The restore reads the copy; the data is the source's.
    let source = s.dir.sub("source-dump");
    std::fs::remove_dir_all(&s.repo).expect("remove the local repository");
    std::fs::create_dir_all(&s.repo).expect("recreate it empty");
    let out = s.restore(&id3, "from_copy", &[]);
    out.assert_ok();
    let job = s.job_of(DB, &out);
    assert!(
        job.to_string()
            .contains("reading its copy in repository offsite"),
        "the report says where it read from: {job}"
    );
    assert_same_data(&s.pg, DB, "from_copy", &source);
    // Forced to the lost repository: refused, naming what is missing.
    let out = s.restore(&id3, "from_local", &["--from-repository", "local"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.text_lower().contains("has no manifest in fs:"), "{out}");
    assert!(!s.pg.database_exists("from_local"));
    // A copy known to be corrupt is never read: backup 1 has only that copy left.
    let out = s.restore(&id1, "from_corrupt", &[]);
    assert_eq!(out.code, 1, "{out}");
    assert!(!s.pg.database_exists("from_corrupt"));
    // Once a verify found the local objects missing, restores go to the copy directly.
    let out = s.admin.run(&["backup", "verify", &id2, "--wait"]);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(s.backup_show(&id2)["verify_status"], "missing");
    let out = s.restore(&id2, "from_copy2", &[]);
    out.assert_ok();
    assert!(
        !s.job_of(DB, &out)
            .to_string()
            .contains("cannot be read from"),
        "the coordinator sent the restore to the copy"
    );
    let rows =
        s.pg.query_one("from_copy2", "SELECT count(*) FROM bulk_lines");
    assert_eq!(rows, "20500", "backup 2's rows");

    // 6. The catalog is lost too: a rebuild from both repositories finds every backup once,
    // in the repository that still holds it, with its copy.
    let mut s = s;
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.restart_with_fresh_catalog();
    s.agent.wait_connected(&s.admin);
    s.admin.run_json(&["catalog", "rebuild"]).assert_ok();
    let listed: Vec<String> = s.backup_list(DB).iter().map(id_of).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let b3 = s.backup_show(&id3);
    assert_eq!(
        b3["repository"], "offsite",
        "only off-site holds it now: {b3}"
    );
    s.restore(&id3, "after_rebuild", &[]).assert_ok();
    assert_same_data(&s.pg, DB, "after_rebuild", &source);
}

#[test]
fn retention_differs_per_repository_and_copies_outlive_their_backup() {
    let mut s = Sandbox::builder("copies-retention")
        .target(SandboxTarget::new(DB))
        .s3_copies()
        .build();
    let status = s.coordinator.stop();
    assert!(status.success(), "coordinator stop: {status}");
    s.coordinator.append_config(&format!(
        "[[retention]]\nenvironment = \"test\"\nkeep_last = 1\n\n\
         [[retention]]\nenvironment = \"test\"\nrepository = \"offsite\"\nkeep_last = 3\n\n{MANUAL_PRUNE}"
    ));
    s.coordinator.restart();
    s.agent.wait_connected(&s.admin);

    s.pg.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);",
    );
    let mut ids = Vec::new();
    for round in 1..=4 {
        s.pg.psql(
            DB,
            &format!(
                "INSERT INTO items SELECT g, 'round {round}' FROM generate_series({}, {}) g;",
                (round - 1) * 100 + 1,
                round * 100
            ),
        );
        let id = id_of(&s.backup_ok(DB));
        stored_copy(&s, &id);
        ids.push(id);
    }

    // The plan: locally only the newest; off-site the three newest copies.
    let plan = s.admin.json(&["prune", "--dry-run"]);
    let decisions = plan["decisions"].as_array().expect("decisions").clone();
    let action = |id: &str, repo: &str| -> String {
        decisions
            .iter()
            .find(|d| d["backup_id"] == id && d["repository"] == repo)
            .unwrap_or_else(|| panic!("no decision for {id} in {repo}: {plan}"))["action"]
            .as_str()
            .expect("action")
            .to_owned()
    };
    assert_eq!(action(&ids[3], "local"), "keep");
    for id in &ids[..3] {
        assert_eq!(action(id, "local"), "delete", "{plan}");
    }
    assert_eq!(action(&ids[0], "offsite"), "delete");
    for id in &ids[1..] {
        assert_eq!(action(id, "offsite"), "keep", "{plan}");
    }

    s.admin.run(&["prune"]).assert_ok();
    settle(&s);
    // Backup 1 is gone everywhere; 2 and 3 live on as their copies; 4 is in both.
    let listed: Vec<String> = s.backup_list(DB).iter().map(id_of).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.contains(&ids[0]), "{listed:?}");
    assert!(s3_objects(&s, &ids[0]).is_empty());
    for id in &ids[1..3] {
        let b = s.backup_show(id);
        assert_eq!(b["repository"], "offsite", "promoted to its copy: {b}");
        assert!(!s.backup_dir(DB, id).join("manifest.json").exists());
        assert!(s3_objects(&s, id).contains(&"manifest.json".to_owned()));
    }
    assert_eq!(s.backup_show(&ids[3])["repository"], "local");
    assert!(copy_of(&s, &ids[3], "offsite").is_some());

    // The oldest kept backup restores from off-site, with its own rows.
    s.restore(&ids[1], "round2", &[]).assert_ok();
    assert_eq!(
        s.pg.query_one("round2", "SELECT count(*) FROM items"),
        "200"
    );
    assert_eq!(
        s.pg.query_one("round2", "SELECT max(note) FROM items"),
        "round 2"
    );

    // A second prune changes nothing: each repository keeps what its policy keeps.
    s.admin.run(&["prune"]).assert_ok();
    settle(&s);
    assert_eq!(s.backup_list(DB).len(), 3);
}

#[test]
fn a_mariadb_backup_restores_from_its_copy_when_the_local_repository_is_lost() {
    let s = Sandbox::builder("copies-mariadb")
        .mariadb_target(SandboxTarget::new("shop"))
        .s3_copies()
        .build();
    let my = s.mariadb.as_ref().expect("mariadb");
    my.sql(
        "shop",
        "CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(64), b VARBINARY(32));\
         INSERT INTO items SELECT seq, CONCAT('item ', seq, ' ✓'), RANDOM_BYTES(16) \
         FROM seq_1_to_5000;",
    );
    let id = id_of(&s.backup_ok("shop"));
    let copy = stored_copy(&s, &id);
    assert_eq!(copy["verify_status"], "unverified");
    s.admin
        .run(&["backup", "verify", &id, "--repository", "offsite", "--wait"])
        .assert_ok();

    std::fs::remove_dir_all(&s.repo).expect("remove the local repository");
    std::fs::create_dir_all(&s.repo).expect("recreate it empty");
    s.restore(&id, "shop_copy", &[]).assert_ok();
    assert_eq!(
        my.dump_sql("shop"),
        my.dump_sql("shop_copy"),
        "restored data"
    );
}

#[test]
fn a_copy_cut_short_by_a_killed_agent_leaves_no_copy_and_is_made_again() {
    let mut s = Sandbox::builder("copies-killed")
        .target(SandboxTarget::new(DB))
        .s3_copies()
        .build();
    load_bulk(&s.pg, DB, "lines", 5_000);
    // The off-site store stops answering the data upload: the copy hangs there.
    s.s3.as_ref().expect("s3").proxy.add(
        Rule::new(Action::Hang)
            .method("PUT")
            .path("data.pgdump.zst"),
    );
    let id1 = id_of(&s.backup_ok(DB));
    eventually("the copy is under way", Duration::from_secs(60), || {
        let jobs = s.admin.json_list(&["jobs", "list", "--active"], "jobs")?;
        anyhow::ensure!(
            jobs.iter()
                .any(|j| j["kind"] == "copy" && j["state"] == "running"),
            "{jobs:?}"
        );
        Ok(())
    });
    let status = s.agent.kill();
    assert!(!status.success(), "the agent was killed: {status}");
    s.s3.as_ref().expect("s3").proxy.clear();
    s.agent.restart(&s.admin);

    // The lost copy job fails; nothing of it looks like a copy.
    let job = ended_copy_job(&s, &id1);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(copy_of(&s, &id1, "offsite").is_none());
    assert!(
        !s3_objects(&s, &id1).contains(&"manifest.json".to_owned()),
        "{:?}",
        s3_objects(&s, &id1)
    );
    // The next backup brings both copies.
    let id2 = id_of(&s.backup_ok(DB));
    stored_copy(&s, &id2);
    stored_copy(&s, &id1);
    s.admin
        .run(&[
            "backup",
            "verify",
            &id1,
            "--repository",
            "offsite",
            "--wait",
        ])
        .assert_ok();
}
