//! The whole flow once, through the CLI's JSON output: who am I, agents, targets, a backup
//! (its catalog record and its files in the repository), verify, restore, jobs, roles.

use std::path::Path;
use std::process::Command;

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::sandbox::{AGENT, ENV, find_str};
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_row_counts_match, assert_same_data};
use serde_json::Value;

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_owned()
}

/// `zstd -dc FILE`: the raw dump stream (checks the stored file is standard zstd).
fn zstd_decompress(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(path)
        .output()
        .expect("run zstd (apt-get install zstd)");
    assert!(
        out.status.success(),
        "zstd -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_bytes(bytes: &[u8], work: &Path) -> String {
    let f = work.join("raw.bin");
    std::fs::write(&f, bytes).expect("write raw");
    let h = sha256_file(&f);
    std::fs::remove_file(&f).expect("remove raw");
    h
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("no string {k:?} in {v}"))
}

fn u64_field(v: &Value, k: &str) -> u64 {
    v.get(k)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("no integer {k:?} in {v}"))
}

#[test]
fn full_flow_through_the_cli() {
    let s = Sandbox::builder("smoke")
        .target(SandboxTarget::new("app"))
        .operator("watcher", "viewer")
        .build();
    load_bulk(&s.pg, "app", "orders", 3000);
    let target = s.target("app");

    let who = s.admin.json(&["whoami"]);
    assert_eq!(str_field(&who, "name"), "admin", "{who}");
    assert_eq!(str_field(&who, "role"), "admin", "{who}");

    let agents = s.admin.json(&["agents", "list"]);
    let agents = agents.as_array().expect("agents list is an array");
    assert_eq!(agents.len(), 1, "{agents:?}");
    let a = &agents[0];
    assert_eq!(str_field(a, "name"), AGENT);
    assert_eq!(str_field(a, "environment"), ENV);
    assert_eq!(a["connected"], true, "{a}");
    assert_eq!(u64_field(a, "max_concurrent_jobs"), 2, "{a}");

    let targets = s.admin.json(&["targets", "list"]);
    let t = targets
        .as_array()
        .expect("targets list is an array")
        .iter()
        .find(|t| t["name"] == target.as_str())
        .unwrap_or_else(|| panic!("{target} not in {targets}"))
        .clone();
    assert_eq!(str_field(&t, "agent"), AGENT, "{t}");
    assert_eq!(str_field(&t, "engine"), "postgres", "{t}");
    assert_eq!(str_field(&t, "provider"), "postgres", "{t}");
    assert_eq!(str_field(&t, "repository"), "local", "{t}");
    assert_eq!(str_field(&t, "database"), "app", "{t}");
    assert_eq!(t["agent_connected"], true, "{t}");
    assert!(t["last_backup_id"].is_null(), "no backup yet: {t}");

    // Backup.
    let out = s.backup_run("app");
    out.assert_ok();
    let job = out.json();
    assert_eq!(str_field(&job, "kind"), "backup", "{job}");
    assert_eq!(str_field(&job, "state"), "succeeded", "{job}");
    assert_eq!(str_field(&job, "target"), target, "{job}");
    assert_eq!(str_field(&job, "requested_by"), "admin", "{job}");
    let job_id = str_field(&job, "job_id").to_owned();
    let id = str_field(&job, "backup_id").to_owned();

    let rec = s.backup_show(&id);
    assert_eq!(str_field(&rec, "backup_id"), id);
    assert_eq!(str_field(&rec, "target"), target);
    assert_eq!(str_field(&rec, "environment"), ENV);
    assert_eq!(str_field(&rec, "agent"), AGENT);
    assert_eq!(str_field(&rec, "repository"), "local");
    assert_eq!(str_field(&rec, "engine"), "postgres");
    assert_eq!(str_field(&rec, "database"), "app");
    assert_eq!(str_field(&rec, "compression"), "zstd");
    assert_eq!(str_field(&rec, "dump_tool"), "pg_dump");
    assert!(str_field(&rec, "server_version").starts_with("15"), "{rec}");
    assert_eq!(str_field(&rec, "job_id"), job_id);
    assert_eq!(str_field(&rec, "verify_status"), "unverified", "{rec}");
    let raw_size = u64_field(&rec, "raw_size");
    let stored_size = u64_field(&rec, "stored_size");
    assert!(raw_size > 300_000, "3000 rows of ~100 bytes: {rec}");
    assert!(stored_size > 0 && stored_size < raw_size, "{rec}");
    assert_row_counts_match(&s.pg, "app", &rec);

    // The files behind the record.
    let dir = s.backup_dir("app", &id);
    let data = dir.join("data.pgdump.zst");
    let manifest = dir.join("manifest.json");
    assert!(data.is_file(), "{} missing", data.display());
    assert!(manifest.is_file(), "{} missing", manifest.display());
    assert_eq!(
        lifeboat_e2e::fsutil::files_under(&dir).len(),
        3,
        "only data, globals and manifest in {}",
        dir.display()
    );
    assert!(
        str_field(&rec, "data_key").ends_with("data.pgdump.zst"),
        "{rec}"
    );
    assert_eq!(std::fs::metadata(&data).expect("stat").len(), stored_size);
    assert_eq!(sha256_file(&data), str_field(&rec, "stored_sha256"));
    let raw = zstd_decompress(&data);
    assert_eq!(raw.len() as u64, raw_size);
    assert!(
        raw.starts_with(b"PGDMP"),
        "the raw stream is a custom-format archive"
    );
    assert_eq!(
        sha256_bytes(&raw, s.dir.path()),
        str_field(&rec, "raw_sha256")
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read manifest"))
        .expect("manifest.json is JSON");
    let m_text = m.to_string();
    for needle in [
        id.as_str(),
        str_field(&rec, "stored_sha256"),
        str_field(&rec, "raw_sha256"),
    ] {
        assert!(m_text.contains(needle), "manifest lacks {needle}: {m}");
    }

    // Listings.
    let all = s.admin.json(&["backup", "list"]);
    assert!(
        all.as_array()
            .expect("array")
            .iter()
            .any(|b| b["backup_id"] == id.as_str()),
        "{all}"
    );
    assert_eq!(s.backup_list("app").len(), 1);
    let targets = s.admin.json(&["targets", "list"]);
    assert!(
        targets
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["name"] == target.as_str() && t["last_backup_id"] == id.as_str()),
        "targets list shows the last backup: {targets}"
    );
    let table = s.admin.run(&["backup", "list"]);
    table.assert_ok();
    assert!(
        table.stdout.contains(&id),
        "table output lists the backup: {table}"
    );

    // Verify.
    let v = s.admin.run_json(&["backup", "verify", &id, "--wait"]);
    v.assert_ok();
    assert_eq!(
        find_str(&v.json(), "state").as_deref(),
        Some("succeeded"),
        "{v}"
    );
    let rec = s.backup_show(&id);
    assert_eq!(str_field(&rec, "verify_status"), "ok", "{rec}");

    // Restore into a new database, proven by the data.
    let r = s.restore(&id, "smoke_copy", &[]);
    r.assert_ok();
    let rj = r.json();
    assert_eq!(str_field(&rj, "kind"), "restore", "{rj}");
    assert_eq!(str_field(&rj, "state"), "succeeded", "{rj}");
    assert_eq!(str_field(&rj, "database"), "smoke_copy", "{rj}");
    assert_same_data(&s.pg, "app", "smoke_copy", s.dir.path());
    assert_row_counts_match(&s.pg, "smoke_copy", &rec);

    // Jobs.
    let jobs = s.admin.json(&["jobs", "list"]);
    let jobs = jobs.as_array().expect("jobs list is an array");
    for kind in ["backup", "verify", "restore"] {
        assert!(
            jobs.iter()
                .any(|j| j["kind"] == kind && j["state"] == "succeeded"),
            "no succeeded {kind} job in {jobs:?}"
        );
    }
    let shown = s.job(&job_id);
    assert_eq!(str_field(&shown, "job_id"), job_id);
    assert_eq!(str_field(&shown, "backup_id"), id);
    let active = s.admin.json(&["jobs", "list", "--active"]);
    assert_eq!(active.as_array().map(Vec::len), Some(0), "{active}");

    // A viewer reads but cannot start work.
    let viewer = s.ctl_as("watcher");
    viewer.run_json(&["backup", "list"]).assert_ok();
    let denied = viewer.run_json(&["backup", "run", &target, "--wait"]);
    assert_eq!(denied.code, 1, "a viewer started a backup: {denied}");
    assert_eq!(s.backup_list("app").len(), 1);

    // Usage errors exit 2 without a connection.
    let usage = s.admin.run(&["backup", "run", "not-a-target"]);
    assert_eq!(usage.code, 2, "{usage}");

    s.shutdown();
}
