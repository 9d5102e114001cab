//! Health endpoints, Prometheus exposition and webhook alerts against a real coordinator
//! (`run()`, SQLite, mutual TLS, a fake agent over gRPC), a real HTTP receiver for the
//! webhooks (axum on loopback) and the real `promtool`.

#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;
mod receiver;

mod alerts;
mod drills;
mod health;
mod http;

use std::{io::Write, time::Duration};

use harness::*;
use lifeboat_proto::v1 as pb;
use receiver::Receiver;
use serde_json::Value;

/// Appends `extra` to the coordinator's config and restarts it (same catalog).
async fn reconfigure(c: &mut Coordinator, extra: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&c.config_path)
        .expect("open config");
    f.write_all(extra.as_bytes()).expect("append config");
    drop(f);
    c.restart().await;
}

async fn get_json(c: &Coordinator, path: &str) -> (u16, Value) {
    let (status, body) = c.http_get(path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

fn heartbeat_with_wal(
    clock_offset_ms: i64,
    repos: Vec<pb::RepositoryStats>,
    wal: Vec<pb::WalStatus>,
) -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
        clock_unix_ms: lifeboat_common::time::now_ms() + clock_offset_ms,
        running_jobs: vec![],
        repositories: repos,
        wal,
    }))
}

/// Runs one backup of the next job handed out, reporting `stored_size`.
async fn backup_with_size(agent: &mut FakeAgent, stored_size: u64) -> pb::JobSpec {
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    let mut record = record_for(&spec, "prod", "prod-1");
    record.stored_size = stored_size;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Backup(record)),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    spec
}

/// `promtool check metrics` on `text`; panics with its output on failure.
fn promtool_check_metrics(text: &str) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; tests/run.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `lifeboat_*` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("lifeboat_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .map_or(text.len(), |e| start + e);
        if boundary {
            names.push(text[start..end].to_owned());
        }
        i = end;
    }
    names.sort();
    names.dedup();
    names
}

/// Runs the next job handed out (a verify or a restore) to success.
async fn finish_next(agent: &mut FakeAgent, r: pb::job_result::Result) -> pb::JobSpec {
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Succeeded, Some(r)))
        .await;
    agent.expect_ack(&spec.job_id).await;
    spec
}

fn generic_events(r: &Receiver) -> Vec<(String, String, String)> {
    r.accepted("/generic")
        .iter()
        .map(|v| {
            (
                v["incident"]["kind"].as_str().unwrap_or("").to_owned(),
                v["incident"]["subject"].as_str().unwrap_or("").to_owned(),
                v["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn has(events: &[(String, String, String)], kind: &str, subject: &str, status: &str) -> usize {
    events
        .iter()
        .filter(|(k, s, st)| k == kind && s == subject && st == status)
        .count()
}

async fn open_incident_kinds(c: &Coordinator) -> Vec<String> {
    let (_, v) = get_json(c, "/health/detailed").await;
    v["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Finished alert evaluations that succeeded (the series in `/metrics`).
const EVALUATIONS: &str = "lifeboat_alert_evaluations_total{outcome=\"ok\"}";
/// Finished webhook delivery passes that succeeded.
const DELIVERY_PASSES: &str = "lifeboat_alert_delivery_passes_total{outcome=\"ok\"}";

/// The value of the integer sample `series` (name and labels as rendered) in `/metrics`.
async fn sample(c: &Coordinator, series: &str) -> u64 {
    let (_, text) = c.http_get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Waits until the pass counter `series` has grown by `n` since the call. A pass is counted
/// when it has ended, so of `n` more passes at least the last `n - 1` began after the call.
async fn await_passes(c: &Coordinator, series: &str, n: u64) {
    let start = sample(c, series).await;
    await_sample(c, series, start + n).await;
}

/// Waits until the counter `series` is at least `n`.
async fn await_sample(c: &Coordinator, series: &str, n: u64) {
    eventually(&format!("{series} >= {n}"), || async move {
        (sample(c, series).await >= n).then_some(())
    })
    .await;
}

/// Runs one statement on the coordinator's catalog file, as an operator with `sqlite3` would.
async fn tamper(c: &Coordinator, sql: &str) {
    use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};
    let mut conn = SqliteConnectOptions::new()
        .filename(c.dir.path().join("catalog.db"))
        .connect()
        .await
        .expect("open catalog");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("tamper");
    conn.close().await.expect("close");
}
