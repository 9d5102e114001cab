//! The JSON shape of every view is part of the CLI's contract: these tests pin field names,
//! value types and the `null` conventions.

use serde_json::{Value, json};

use super::*;

const T0: i64 = 1_795_822_200_123; // 2026-11-27T23:30:00.123Z

fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("serialize")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    k.sort();
    k
}

pub fn sample_job() -> pb::Job {
    pb::Job {
        job_id: "20261127T233000Z-aaaaaa".into(),
        kind: pb::JobKind::Backup as i32,
        state: pb::JobState::Running as i32,
        target: "prod/orders".into(),
        agent: "prod-1".into(),
        backup_id: "20261127T233000Z-bbbbbb".into(),
        requested_by: "alice".into(),
        created_at_ms: T0,
        started_at_ms: T0 + 1000,
        finished_at_ms: 0,
        error: String::new(),
        progress: Some(pb::Progress {
            raw_bytes: 10 << 20,
            stored_bytes: 2 << 20,
            phase: "dumping".into(),
        }),
        detail: String::new(),
        database: String::new(),
        clean: false,
        ..Default::default()
    }
}

pub fn sample_backup() -> pb::BackupRecord {
    pb::BackupRecord {
        copies: Vec::new(),
        encryption: None,
        backup_id: "20261127T233000Z-bbbbbb".into(),
        target: "prod/orders".into(),
        environment: "prod".into(),
        agent: "prod-1".into(),
        repository: "local".into(),
        engine: pb::Engine::Postgres as i32,
        provider: "postgres".into(),
        database: "orders".into(),
        server_version: "15.8".into(),
        system_identifier: "7300000000000000001".into(),
        dump_tool: "pg_dump".into(),
        dump_tool_version: "15.8".into(),
        format: "pg_dump-custom".into(),
        compression: "zstd".into(),
        compression_level: 3,
        raw_size: 4200,
        stored_size: 1000,
        raw_sha256: "a".repeat(64),
        stored_sha256: "b".repeat(64),
        started_at_ms: T0,
        finished_at_ms: T0 + 83_000,
        row_counts: vec![pb::RowCount {
            bytes: None,
            schema: "public".into(),
            table: "orders".into(),
            rows: 12345,
        }],
        data_key: "prod/orders/20261127T233000Z-bbbbbb/data.pgdump.zst".into(),
        manifest_key: "prod/orders/20261127T233000Z-bbbbbb/manifest.json".into(),
        verify_status: pb::VerifyStatus::Unverified as i32,
        verified_at_ms: 0,
        verify_detail: String::new(),
        job_id: "20261127T233000Z-aaaaaa".into(),
        pin: None,
        deleting: false,
        wal_start: String::new(),
        globals: None,
    }
}

#[test]
fn enum_words() {
    assert_eq!(state_word(pb::JobState::Succeeded as i32), "succeeded");
    assert_eq!(state_word(pb::JobState::Cancelled as i32), "cancelled");
    assert_eq!(state_word(99), "unknown");
    assert_eq!(kind_word(pb::JobKind::Verify as i32), "verify");
    assert_eq!(engine_word(pb::Engine::Mysql as i32), "mysql");
    assert_eq!(verify_word(pb::VerifyStatus::Corrupt as i32), "corrupt");
    assert!(is_terminal(pb::JobState::Failed as i32));
    assert!(!is_terminal(pb::JobState::Running as i32));
    assert!(!is_terminal(42));
}

#[test]
fn job_json_shape() {
    let v = to_json(&JobView::from(&sample_job()));
    assert_eq!(
        keys(&v),
        sorted(&[
            "job_id",
            "kind",
            "state",
            "target",
            "agent",
            "backup_id",
            "requested_by",
            "created_at",
            "created_at_ms",
            "started_at",
            "started_at_ms",
            "finished_at",
            "finished_at_ms",
            "duration_ms",
            "error",
            "progress",
            "detail",
            "drill_of",
            "database",
            "clean",
            "owners",
            "include_provider_schemas",
            "data_dir",
            "export",
            "repository",
            "report",
        ])
    );
    assert_eq!(v["report"], Value::Null);
    assert_eq!(v["repository"], Value::Null, "the backup's own repository");
    assert_eq!(v["data_dir"], Value::Null, "not a physical restore");
    assert_eq!(v["owners"], "auto");
    assert_eq!(v["kind"], "backup");
    assert_eq!(v["state"], "running");
    assert_eq!(v["created_at"], "2026-11-27T23:30:00.123Z");
    assert_eq!(v["created_at_ms"], T0);
    assert_eq!(v["started_at_ms"], T0 + 1000);
    assert_eq!(v["finished_at"], Value::Null);
    assert_eq!(v["finished_at_ms"], Value::Null);
    assert_eq!(v["duration_ms"], Value::Null);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(
        v["progress"],
        json!({"phase": "dumping", "raw_bytes": 10 << 20, "stored_bytes": 2 << 20})
    );
    assert_eq!(v["clean"], false);
}

#[test]
fn finished_job_json() {
    let mut j = sample_job();
    j.state = pb::JobState::Failed as i32;
    j.finished_at_ms = T0 + 61_000;
    j.error = "pg_dump exited with status 1".into();
    j.progress = None;
    let v = to_json(&JobView::from(&j));
    assert_eq!(v["state"], "failed");
    assert_eq!(v["duration_ms"], 60_000);
    assert_eq!(v["error"], "pg_dump exited with status 1");
    assert_eq!(v["progress"], Value::Null);
}

#[test]
fn backup_json_shape() {
    let v = to_json(&BackupView::from(&sample_backup()));
    assert_eq!(
        keys(&v),
        sorted(&[
            "backup_id",
            "deleting",
            "pin_reason",
            "pinned",
            "pinned_at",
            "pinned_at_ms",
            "pinned_by",
            "target",
            "environment",
            "agent",
            "repository",
            "engine",
            "provider",
            "database",
            "server_version",
            "system_identifier",
            "dump_tool",
            "dump_tool_version",
            "format",
            "compression",
            "compression_level",
            "raw_size",
            "stored_size",
            "compression_ratio",
            "raw_sha256",
            "stored_sha256",
            "started_at",
            "started_at_ms",
            "finished_at",
            "finished_at_ms",
            "duration_ms",
            "row_counts",
            "data_key",
            "manifest_key",
            "verify_status",
            "wal_start",
            "verified_at",
            "verified_at_ms",
            "verify_detail",
            "job_id",
            "globals",
            "copies",
            "encryption",
        ])
    );
    assert_eq!(v["copies"], serde_json::json!([]));
    assert_eq!(v["encryption"], Value::Null, "stored in plaintext");
    let mut encrypted = sample_backup();
    encrypted.encryption = Some(pb::BackupEncryption {
        key_object: "prod/orders/20261127T233000Z-bbbbbb/key.age".into(),
        recipients: vec!["age1xyz".into()],
        key_ids: vec!["0123456789abcdef".into()],
    });
    let e = to_json(&BackupView::from(&encrypted));
    assert_eq!(e["encryption"]["key_ids"][0], "0123456789abcdef");
    assert!(
        BackupView::from(&encrypted)
            .table()
            .lines()
            .any(|l| l.starts_with("encryption") && l.ends_with("age, key ids 0123456789abcdef")),
        "{}",
        BackupView::from(&encrypted).table()
    );
    assert_eq!(
        v["globals"]["status"], "absent",
        "taken before globals were captured"
    );
    assert!(
        v["globals"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("not captured (backup taken before")),
        "{}",
        v["globals"]
    );
    assert_eq!(v["engine"], "postgres");
    assert_eq!(v["verify_status"], "unverified");
    assert_eq!(v["raw_size"], 4200);
    assert!(v["raw_size"].is_u64());
    assert_eq!(v["compression_ratio"], 4.2);
    assert_eq!(v["duration_ms"], 83_000);
    assert_eq!(v["finished_at"], "2026-11-27T23:31:23.123Z");
    assert_eq!(v["verified_at"], Value::Null);
    assert_eq!(
        v["row_counts"],
        json!([{"schema": "public", "table": "orders", "rows": 12345, "bytes": null}])
    );
}

#[test]
fn agent_and_target_json_shapes() {
    let a = to_json(&AgentView::from(pb::Agent {
        name: "prod-1".into(),
        environment: "prod".into(),
        version: "0.1.0".into(),
        connected: true,
        last_seen_ms: T0,
        clock_skew_ms: -12,
        running_jobs: 1,
        max_concurrent_jobs: 2,
    }));
    assert_eq!(
        keys(&a),
        sorted(&[
            "name",
            "environment",
            "version",
            "connected",
            "last_seen",
            "last_seen_ms",
            "clock_skew_ms",
            "running_jobs",
            "max_concurrent_jobs",
        ])
    );
    assert_eq!(a["connected"], true);
    assert_eq!(a["last_seen"], "2026-11-27T23:30:00.123Z");
    assert_eq!(a["clock_skew_ms"], -12);

    let t = to_json(&TargetView::from(pb::Target {
        name: "prod/orders".into(),
        agent: "prod-1".into(),
        engine: pb::Engine::Postgres as i32,
        provider: "supabase".into(),
        repository: "s3".into(),
        database: "orders".into(),
        agent_connected: false,
        last_backup_ms: 0,
        last_backup_id: String::new(),
        ..Default::default()
    }));
    assert_eq!(
        keys(&t),
        sorted(&[
            "name",
            "agent",
            "engine",
            "provider",
            "repository",
            "database",
            "agent_connected",
            "last_backup",
            "last_backup_ms",
            "last_backup_id",
            "last_check",
            "last_check_ms",
            "last_check_job_id",
            "last_check_result",
            "last_check_summary",
            "encryption",
        ])
    );
    assert_eq!(t["last_check_result"], Value::Null);
    assert_eq!(t["encryption"], Value::Null);
    assert_eq!(t["engine"], "postgres");
    assert_eq!(t["last_backup"], Value::Null);
    assert_eq!(t["last_backup_id"], Value::Null);

    let w = to_json(&WhoAmIView::from(pb::WhoAmIResponse {
        name: "alice".into(),
        role: "admin".into(),
        environments: vec![],
    }));
    assert_eq!(
        w,
        json!({"name": "alice", "role": "admin", "environments": null})
    );
    let w = to_json(&WhoAmIView::from(pb::WhoAmIResponse {
        name: "dana".into(),
        role: "operator".into(),
        environments: vec!["dev".into(), "staging".into()],
    }));
    assert_eq!(w["environments"], json!(["dev", "staging"]));
}

#[test]
fn lists_are_arrays_and_tables() {
    let jobs = vec![JobView::from(&sample_job())];
    let v = to_json(&jobs);
    assert!(v.is_array());
    assert_eq!(v[0]["job_id"], "20261127T233000Z-aaaaaa");
    let text = jobs.table();
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("JOB "), "{text}");
    let row = lines.next().expect("row");
    assert!(
        row.contains("running") && row.contains("prod/orders"),
        "{text}"
    );
    // Unset values show as "-".
    assert!(row.split_whitespace().any(|c| c == "-"), "{text}");
    // Columns line up: STATE starts at the same offset in both lines.
    assert_eq!(
        header.find("STATE").expect("STATE"),
        row.find("running").expect("running")
    );
    let empty: Vec<JobView> = Vec::new();
    assert_eq!(empty.table().lines().count(), 1);
    assert_eq!(to_json(&empty), json!([]));
}

#[test]
fn backup_text_shows_everything() {
    let text = BackupView::from(&sample_backup()).table();
    for needle in [
        "pg_dump 15.8",
        "server version     15.8",
        &"a".repeat(64),
        &"b".repeat(64),
        "4.1 KiB (4200 bytes)",
        "ratio 4.2x",
        "zstd (level 3)",
        "unverified",
        "public  orders  12345",
        "1m 23s",
        "2026-11-27T23:30:00Z",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn long_errors_are_cut_in_lists() {
    assert_eq!(first_line("short", 60), "short");
    assert_eq!(first_line("two\nlines", 60), "two…");
    let cut = first_line(&"x".repeat(100), 60);
    assert_eq!(cut.chars().count(), 60);
    let mut j = sample_job();
    j.error = format!("{}\nsecond line", "e".repeat(200));
    let row = JobView::from(&j).cells();
    assert_eq!(row.last().map(|c| c.chars().count()), Some(60));
    // The full text stays in `jobs show` and JSON.
    assert!(JobView::from(&j).table().contains("second line"));
}

#[test]
fn backup_pin_and_deletion_are_shown() {
    let mut b = sample_backup();
    b.pin = Some(pb::BackupPin {
        pinned_by: "olga".into(),
        pinned_at_ms: 1_795_000_000_000,
        reason: "quarter-end audit".into(),
    });
    let view = BackupView::from(&b);
    let v = to_json(&view);
    assert_eq!(v["pinned"], true);
    assert_eq!(v["pinned_by"], "olga");
    assert_eq!(v["pin_reason"], "quarter-end audit");
    assert_eq!(v["deleting"], false);
    let text = view.table();
    assert!(
        text.contains("pinned             yes, by olga at ")
            && text.contains(": quarter-end audit"),
        "{text}"
    );
    assert!(view.cells().last().is_some_and(|c| c.ends_with("(pinned)")));

    let mut b = sample_backup();
    b.deleting = true;
    let view = BackupView::from(&b);
    assert!(view.table().contains("retention          being deleted"));
    assert!(
        view.cells()
            .last()
            .is_some_and(|c| c.ends_with("(deleting)"))
    );
    let v = to_json(&BackupView::from(&sample_backup()));
    assert_eq!(v["pinned"], false);
    assert_eq!(v["pinned_by"], Value::Null);
}
