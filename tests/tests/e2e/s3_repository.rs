//! Backups in an S3 repository, end to end through the real binaries: a real s3s-fs on
//! loopback behind a fault-injecting proxy. Restores are proven by comparing data.

use std::time::Duration;

use lifeboat_e2e::fixtures::{load_awkward, load_bulk, load_noise};
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::s3::{agent_upload_journal, journaled_uploads_older_than};
use lifeboat_e2e::s3proxy::{Action, Rule};
use lifeboat_e2e::sandbox::{S3Env, find_str};
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_row_counts_match, assert_same_data, eventually};

fn s3(s: &Sandbox) -> &S3Env {
    s.s3.as_ref().expect("an s3 sandbox")
}

fn data_key(rec: &serde_json::Value) -> String {
    find_str(rec, "data_key").expect("data_key")
}

fn manifest_key(rec: &serde_json::Value) -> String {
    find_str(rec, "manifest_key").expect("manifest_key")
}

/// D20 through S3: awkward content and enough incompressible data for several parts →
/// backup → verify → restore into a new database → identical data.
#[test]
fn backup_verify_restore_through_s3() {
    let s = Sandbox::builder("s3-roundtrip")
        .s3(&["part_size_mib = 5", "parts_in_flight = 2"])
        .target(SandboxTarget::new("app"))
        .build();
    load_awkward(&s.pg, "app");
    load_bulk(&s.pg, "app", "rows", 5000);
    load_noise(&s.pg, "app", "blobs", 12_000);

    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(find_str(&rec, "repository").as_deref(), Some("offsite"));
    assert_row_counts_match(&s.pg, "app", &rec);
    // It is really in the bucket, uploaded in parts, and its manifest is next to it.
    let data = s3(&s).object_path(&data_key(&rec));
    let stored = std::fs::metadata(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()))
        .len();
    assert_eq!(
        rec.get("stored_size").and_then(serde_json::Value::as_u64),
        Some(stored),
        "{rec}"
    );
    assert!(s3(&s).object_path(&manifest_key(&rec)).is_file());
    let log = s3(&s).proxy.log();
    assert!(
        log.iter().filter(|l| l.contains("partNumber=")).count() >= 3,
        "expected a multipart upload: {log:#?}"
    );
    assert!(s3(&s).server.open_multipart_uploads().is_empty());

    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    assert_eq!(
        find_str(&s.backup_show(&id), "verify_status").as_deref(),
        Some("ok")
    );
    let r = s.restore(&id, "app_copy", &[]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    assert_row_counts_match(&s.pg, "app_copy", &rec);
    s.shutdown();
}

/// S3, S4, S5: damage at rest is reported by verify for that backup only, and a restore of a
/// damaged backup fails without creating the database.
#[test]
fn damage_at_rest_is_reported_and_never_restored() {
    let s = Sandbox::builder("s3-damage")
        .s3(&["part_size_mib = 5"])
        .target(SandboxTarget::new("app"))
        .build();
    load_noise(&s.pg, "app", "blobs", 8000);
    let good = s.backup_ok("app");
    let good_id = find_str(&good, "backup_id").expect("backup_id");
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    let path = s3(&s).object_path(&data_key(&rec));
    let original = std::fs::read(&path).expect("read object");

    let verify = |id: &str| {
        s.admin
            .run_json(&["backup", "verify", id, "--wait"])
            .json()
            .to_string();
        s.backup_show(id)
    };
    let refused_restore = |db: &str, needle: &str| {
        let r = s.restore(&id, db, &[]);
        assert_ne!(
            find_str(&r.json(), "state").as_deref(),
            Some("succeeded"),
            "{r}"
        );
        assert!(
            r.to_string().contains(needle),
            "restore error lacks {needle:?}: {r}"
        );
        assert!(
            !s.pg.database_exists(db),
            "{db} was created from a damaged backup"
        );
    };

    // S3: truncated.
    std::fs::write(&path, &original[..original.len() - 1000]).expect("truncate");
    let v = verify(&id);
    assert_eq!(
        find_str(&v, "verify_status").as_deref(),
        Some("corrupt"),
        "{v}"
    );
    assert!(
        find_str(&v, "verify_detail")
            .unwrap_or_default()
            .contains("bytes"),
        "{v}"
    );
    refused_restore("from_truncated", "bytes");

    // S4: one flipped byte: the hash mismatch is what the user sees.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&path, &flipped).expect("flip");
    let v = verify(&id);
    assert_eq!(
        find_str(&v, "verify_status").as_deref(),
        Some("corrupt"),
        "{v}"
    );
    assert!(
        find_str(&v, "verify_detail")
            .unwrap_or_default()
            .contains("SHA-256"),
        "{v}"
    );
    refused_restore("from_flipped", "SHA-256");

    // S5: the manifest deleted behind lifeboat's back.
    std::fs::write(&path, &original).expect("repair");
    std::fs::remove_file(s3(&s).object_path(&manifest_key(&rec))).expect("delete manifest");
    let v = verify(&id);
    assert_eq!(
        find_str(&v, "verify_status").as_deref(),
        Some("missing"),
        "{v}"
    );
    // S5: the data deleted.
    std::fs::remove_file(&path).expect("delete data");
    let v = verify(&id);
    assert_eq!(
        find_str(&v, "verify_status").as_deref(),
        Some("missing"),
        "{v}"
    );

    // The other backup was never affected.
    let v = verify(&good_id);
    assert_eq!(find_str(&v, "verify_status").as_deref(), Some("ok"), "{v}");
    s.restore(&good_id, "app_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    s.shutdown();
}

/// S1: every part upload's connection is reset: the backup fails naming the upload, the
/// multipart upload is aborted, nothing is stored under the backup, and the earlier backup is
/// intact (NL).
#[test]
fn upload_failure_fails_the_backup_and_leaves_nothing() {
    let s = Sandbox::builder("s3-reset")
        .s3(&["part_size_mib = 5", "max_attempts = 3"])
        .target(SandboxTarget::new("app"))
        .build();
    load_noise(&s.pg, "app", "blobs", 12_000);
    let first = s.backup_ok("app");
    let first_id = find_str(&first, "backup_id").expect("backup_id");

    s3(&s)
        .proxy
        .add(Rule::new(Action::Drop).method("PUT").query("partNumber"));
    let out = s.backup_run("app");
    let (_, error) = s.assert_backup_failed("app", &out);
    assert!(error.contains("upload part"), "{error}");
    s3(&s).proxy.clear();

    assert!(s3(&s).server.open_multipart_uploads().is_empty());
    let listed = s.backup_list("app");
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Only the first backup's three objects (data, globals, manifest) are in the bucket.
    let mut objects = Vec::new();
    let root = s3(&s).object_path("test/app");
    for e in walk(&root) {
        objects.push(e);
    }
    assert_eq!(objects.len(), 3, "{objects:?}");
    s.restore(&first_id, "app_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    s.shutdown();
}

/// S2: the agent is killed while a part upload is in flight; after a restart the janitor
/// finds the open multipart upload (from its journal) and aborts it once it is older than
/// `stale_upload_age`.
#[test]
fn killed_agent_upload_is_aborted_by_the_janitor() {
    let mut s = Sandbox::builder("s3-killed")
        .s3(&["part_size_mib = 5", "stale_upload_age = \"1s\""])
        .target(SandboxTarget::new("app"))
        .build();
    load_noise(&s.pg, "app", "blobs", 12_000);
    s3(&s)
        .proxy
        .add(Rule::new(Action::Hang).method("PUT").query("partNumber"));
    let started = s.admin.json(&["backup", "run", &s.target("app")]);
    let job_id = find_str(&started, "job_id").expect("job_id");
    wait_for_a_hanging_part(&s);
    s.agent.kill();
    assert_eq!(s3(&s).server.open_multipart_uploads().len(), 1);
    s3(&s).proxy.clear();
    // The janitor's first pass after the restart finds the upload in the agent's journal; it
    // aborts it only once it is older than stale_upload_age.
    let journal = agent_upload_journal(s.agent.state_dir(), "offsite");
    eventually(
        "the journaled upload to be older than stale_upload_age",
        Duration::from_secs(30),
        || journaled_uploads_older_than(&journal, Duration::from_secs(1)),
    );
    s.agent.restart(&s.admin);
    eventually(
        "the janitor to abort the upload",
        Duration::from_secs(30),
        || {
            let open = s3(&s).server.open_multipart_uploads();
            if open.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("still open: {open:?}")
            }
        },
    );
    // The agent logs the abort once the server has answered it: a moment after the upload is
    // seen gone.
    eventually(
        "the janitor to log the abort",
        Duration::from_secs(10),
        || {
            let logs = s.agent.logs();
            if logs.contains("aborted a multipart upload an earlier run left open") {
                Ok(())
            } else {
                anyhow::bail!("not logged yet: {logs}")
            }
        },
    );
    let j = s.wait_job_done(&job_id, Duration::from_secs(60));
    assert_eq!(find_str(&j, "state").as_deref(), Some("failed"), "{j}");
    assert!(s.backup_list("app").is_empty());
    // The count reaches the coordinator's metrics with the agent's heartbeats.
    let want = "lifeboat_repository_stale_uploads_aborted_total{agent=\"agent-1\",repository=\"offsite\"} 1";
    eventually(
        "the janitor count in /metrics",
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(s.coordinator.http_addr(), "/metrics");
            if status == 200 && body.lines().any(|l| l == want) {
                Ok(())
            } else {
                anyhow::bail!("{status}: no {want:?} in\n{body}")
            }
        },
    );
    s.shutdown();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// S8: the agent's clock is 20 minutes ahead (libfaketime), so S3 refuses its first
/// signature. The SDK corrects the signing time from the server's `Date` and the backup
/// succeeds (and restores); the agent tells the operator to fix the clock. (When a server still
/// refuses, the job error names the clock skew: see the unit test in the agent's s3 module.)
#[test]
fn clock_skew_is_survived_and_named() {
    let s = Sandbox::builder("s3-skew")
        .s3(&[])
        .agent_env("LD_PRELOAD", FAKETIME_LIB)
        .agent_env("FAKETIME", "+20m")
        .target(SandboxTarget::new("app"))
        .build();
    load_bulk(&s.pg, "app", "rows", 2000);
    let rec = s.backup_ok("app");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert!(
        s3(&s).server.logs().contains("RequestTimeTooSkewed"),
        "the server never saw a skewed request: the clock was not faked"
    );
    s.restore(&id, "app_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
    let logs = s.agent.logs();
    assert!(
        logs.contains("clock skew") && logs.contains("NTP"),
        "no clock skew warning: {logs}"
    );
    s.shutdown();
}

/// Credentials from the agent's environment, directly and through the standard AWS chain; the
/// secret never shows in the agent's debug logs, the coordinator's logs or the CLI's output.
#[test]
fn environment_and_chain_credentials() {
    for source in ["env", "chain"] {
        let name = format!("s3-creds-{source}");
        let s = Sandbox::builder(&name)
            .s3(&[&format!("credentials = \"{source}\"")])
            .agent_env_from_s3()
            .agent_env("RUST_LOG", "debug")
            .env("RUST_LOG", "debug")
            .target(SandboxTarget::new("app"))
            .build();
        load_bulk(&s.pg, "app", "rows", 500);
        let rec = s.backup_ok("app");
        let id = find_str(&rec, "backup_id").expect("backup_id");
        s.restore(&id, "app_copy", &[]).assert_ok();
        assert_same_data(&s.pg, "app", "app_copy", s.dir.path());
        let secret = s3(&s).server.secret_key().to_owned();
        let show = s.admin.run_json(&["backup", "show", &id]).to_string();
        for (what, text) in [
            ("agent log", s.agent.logs()),
            ("coordinator log", s.coordinator.logs()),
            ("backup show", show),
        ] {
            assert!(
                !text.contains(&secret),
                "{source}: the S3 secret is in the {what}"
            );
        }
        s.shutdown();
    }
}

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A backup whose upload outlives `stale_upload_age` is not taken for an interrupted one: its
/// second part hangs (until the per-request timeout retries it) while the janitor passes every
/// second; the open multipart upload of the running backup is left alone, and the backup
/// completes and verifies.
#[test]
fn janitor_leaves_a_long_running_upload_alone() {
    let s = Sandbox::builder("s3-long-upload")
        .s3(&[
            "part_size_mib = 5",
            "stale_upload_age = \"1s\"",
            "janitor_interval = \"1s\"",
            "request_timeout = \"6s\"",
        ])
        .target(SandboxTarget::new("app"))
        .build();
    load_noise(&s.pg, "app", "blobs", 12_000);
    s3(&s).proxy.add(
        Rule::new(Action::Hang)
            .method("PUT")
            .query("partNumber")
            .skip(1)
            .times(1),
    );
    let started = s.admin.json(&["backup", "run", &s.target("app")]);
    let job_id = find_str(&started, "job_id").expect("job_id");
    wait_for_a_hanging_part(&s);
    // Several janitor passes over an upload older than stale_upload_age. Each pass lists the
    // open multipart uploads (one GET ?uploads per target), and a pass starts janitor_interval
    // (1 s) after the previous one ended: the passes of the second and third listings after
    // the hang started at least 1 s after it, so they saw the upload older than
    // stale_upload_age (1 s); the fourth listing means both have ended.
    let listings = || {
        s3(&s)
            .proxy
            .log()
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains("uploads"))
            .count()
    };
    let hung_at = listings();
    eventually(
        "four janitor listings after the hang",
        Duration::from_secs(30),
        || match listings() - hung_at {
            n if n >= 4 => Ok(()),
            n => anyhow::bail!("{n} janitor listings since the hang"),
        },
    );
    assert_eq!(
        s3(&s).server.open_multipart_uploads().len(),
        1,
        "the janitor aborted the running backup's upload"
    );
    let log = s3(&s).proxy.log();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("DELETE ") && l.contains("uploadId")),
        "the running backup's upload was aborted: {log:#?}"
    );
    let j = s.wait_job_done(&job_id, Duration::from_secs(120));
    assert_eq!(find_str(&j, "state").as_deref(), Some("succeeded"), "{j}");
    assert!(!s.agent.logs().contains("aborted a"), "{}", s.agent.logs());
    let id = find_str(&j, "backup_id").expect("backup_id");
    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    assert!(s3(&s).server.open_multipart_uploads().is_empty());
    s.shutdown();
}

/// Waits until the proxy holds a part upload (a `Hang` rule matched a `PUT …partNumber=`).
fn wait_for_a_hanging_part(s: &Sandbox) {
    eventually("a part upload hanging", Duration::from_secs(60), || {
        if s3(s)
            .proxy
            .log()
            .iter()
            .any(|l| l.contains("partNumber=") && l.contains("Hang"))
        {
            Ok(())
        } else {
            anyhow::bail!("no hanging part yet")
        }
    });
}
