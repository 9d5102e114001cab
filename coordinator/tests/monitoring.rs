//! Health endpoints, Prometheus exposition and webhook alerts against a real coordinator
//! (`run()`, SQLite, mutual TLS, a fake agent over gRPC), a real HTTP receiver for the
//! webhooks (axum on loopback) and the real `promtool`.

#[allow(dead_code)]
#[path = "integration/harness.rs"]
mod harness;
#[path = "monitoring/receiver.rs"]
mod receiver;

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

fn heartbeat(clock_offset_ms: i64, repos: Vec<pb::RepositoryStats>) -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
        clock_unix_ms: lifeboat_common::time::now_ms() + clock_offset_ms,
        running_jobs: vec![],
        repositories: repos,
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

#[tokio::test]
async fn health_endpoints_and_metrics() {
    let (rx, addr) = Receiver::start(&[]).await;
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        &format!(
            "[objectives]\nrpo = \"1h\"\nwarning_percent = 75\n\
             [objectives.environment.prod]\nrto = \"30m\"\n\
             [objectives.target.\"prod/users\"]\nrpo = \"1s\"\n\
             [health]\nmax_clock_skew = \"30s\"\n\
             [alerts]\nevaluate_interval = \"200ms\"\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl = \"http://{addr}/ops\"\n"
        ),
    )
    .await;

    let (status, body) = get_json(&c, "/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, ready) = get_json(&c, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["migrations"]["status"], "ok");
    assert!(
        ready["checks"]["migrations"]["applied"]
            .as_array()
            .expect("applied")
            .contains(&Value::from(3)),
        "{ready}"
    );

    let mut control = c.control("olga");
    let mut h = hello("prod-1", "prod", &["orders", "users"]);
    // The agent's clock runs a minute ahead.
    h.clock_unix_ms = lifeboat_common::time::now_ms() + 60_000;
    let mut agent = c.agent(h).await;
    let job = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    agent
        .send(heartbeat(
            60_000,
            vec![pb::RepositoryStats {
                name: "local".into(),
                kind: "fs".into(),
                stale_uploads_aborted: 4,
                janitor_errors: 1,
                janitor_last_success_ms: 1_700_000_000_000,
            }],
        ))
        .await;
    // A verification and a restore of that backup.
    control
        .verify_backup(pb::VerifyBackupRequest {
            backup_id: job.backup_id.clone(),
        })
        .await
        .expect("verify");
    finish_next(
        &mut agent,
        pb::job_result::Result::Verify(pb::VerifyResult {
            status: pb::VerifyStatus::Ok.into(),
            ..Default::default()
        }),
    )
    .await;
    control
        .restore(pb::RestoreRequest {
            backup_id: job.backup_id.clone(),
            to_target: String::new(),
            database: "orders_copy".into(),
            clean: false,
            ..Default::default()
        })
        .await
        .expect("restore");
    finish_next(
        &mut agent,
        pb::job_result::Result::Restore(pb::RestoreResult {
            database: "orders_copy".into(),
            ..Default::default()
        }),
    )
    .await;

    // prod/users has no backup and an RPO of a second: critical soon, and /health/backups
    // answers 503.
    let cr = &c;
    let backups = eventually("prod/users to turn critical", || async move {
        let (status, v) = get_json(cr, "/health/backups").await;
        (status == 503).then_some(v)
    })
    .await;
    assert_eq!(backups["status"], "critical");
    assert_eq!(backups["warning_percent"], 75);
    let targets = backups["targets"].as_array().expect("targets");
    let orders = &targets[0];
    assert_eq!(orders["target"], "prod/orders");
    assert_eq!(orders["status"], "ok", "{orders}");
    assert_eq!(orders["rpo_seconds"], 3600);
    assert_eq!(orders["rto_seconds"], 1800);
    assert_eq!(orders["last_raw_size_bytes"], 4096);
    assert_eq!(orders["last_stored_size_bytes"], 512);
    assert_eq!(orders["last_duration_seconds"], 1.0);
    assert!(
        orders["age_seconds"].as_f64().expect("age") < 60.0,
        "{orders}"
    );
    assert!(
        orders["last_success_at"]
            .as_str()
            .expect("time")
            .ends_with('Z')
    );
    assert_eq!(orders["last_failure"], Value::Null);
    assert_eq!(orders["last_verify"]["outcome"], "succeeded", "{orders}");
    assert_eq!(orders["last_restore"]["outcome"], "succeeded", "{orders}");
    let users = &targets[1];
    assert_eq!(users["status"], "critical", "{users}");
    assert_eq!(users["last_success_at"], Value::Null);
    assert!(
        users["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("no complete backup"),
        "{users}"
    );
    let (status, dev) = get_json(&c, "/health/backups?environment=dev").await;
    assert_eq!(status, 200, "{dev}");
    assert_eq!(dev["targets"].as_array().map(Vec::len), Some(0));

    // The detailed view: the agent with its skew and repositories, and the open incident.
    let detailed = eventually("the RPO incident in /health/detailed", || async move {
        let (status, v) = get_json(cr, "/health/detailed").await;
        assert_eq!(status, 200, "{v}");
        let has = v["incidents"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["kind"] == "rpo_breach"));
        let repos = v["agents"]["list"][0]["repositories"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        (has && repos).then_some(v)
    })
    .await;
    assert_eq!(detailed["status"], "critical");
    assert_eq!(detailed["catalog"]["status"], "ok");
    assert_eq!(detailed["agents"]["connected"], 1);
    let a = &detailed["agents"]["list"][0];
    assert_eq!(a["name"], "prod-1");
    assert_eq!(a["state"], "connected");
    assert_eq!(a["clock_skew_status"], "warning", "{a}");
    assert!(
        a["clock_skew_seconds"].as_f64().expect("skew") > 50.0,
        "{a}"
    );
    assert_eq!(a["repositories"][0]["stale_uploads_aborted"], 4);
    assert_eq!(detailed["incidents"][0]["subject"], "prod/users");

    // The exposition: values, then promtool's lint.
    let (status, text) = c.http_get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "lifeboat_catalog_up 1",
        "lifeboat_agents_connected 1",
        "lifeboat_agent_connected{agent=\"prod-1\",environment=\"prod\"} 1",
        "lifeboat_rpo_seconds{environment=\"prod\",target=\"orders\"} 3600",
        "lifeboat_rpo_seconds{environment=\"prod\",target=\"users\"} 1",
        "lifeboat_rto_seconds{environment=\"prod\",target=\"orders\"} 1800",
        "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"raw\",target=\"orders\"} 4096",
        "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"stored\",target=\"orders\"} 512",
        "lifeboat_backup_last_duration_seconds{environment=\"prod\",target=\"orders\"} 1",
        "lifeboat_backups_total{environment=\"prod\",outcome=\"succeeded\",target=\"orders\"} 1",
        "lifeboat_backups_total{environment=\"prod\",outcome=\"failed\",target=\"users\"} 0",
        "lifeboat_target_status{environment=\"prod\",status=\"critical\",target=\"users\"} 1",
        "lifeboat_target_status{environment=\"prod\",status=\"ok\",target=\"orders\"} 1",
        "lifeboat_jobs_running{kind=\"backup\"} 0",
        "lifeboat_job_duration_seconds_count{kind=\"backup\"} 1",
        "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"local\"} 4",
        "lifeboat_repository_janitor_errors_total{agent=\"prod-1\",repository=\"local\"} 1",
        "lifeboat_repository_janitor_last_success_timestamp_seconds{agent=\"prod-1\",repository=\"local\"} 1700000000",
        "lifeboat_incidents_open{kind=\"rpo_breach\"} 1",
        "lifeboat_jobs_total{kind=\"restore\",outcome=\"succeeded\"} 1",
        "lifeboat_restore_last_duration_seconds{environment=\"prod\",target=\"orders\"}",
        "lifeboat_verify_last_success_timestamp_seconds{environment=\"prod\",target=\"orders\"}",
        "lifeboat_alert_notifications_total{outcome=\"failed\",webhook=\"ops\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(
        text.contains(
            "lifeboat_recovery_point_age_seconds{environment=\"prod\",target=\"orders\"}"
        )
    );
    assert!(
        !text
            .contains("lifeboat_recovery_point_age_seconds{environment=\"prod\",target=\"users\"}"),
        "a target without a backup has no recovery point"
    );
    let skew: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "lifeboat_agent_clock_skew_seconds{agent=\"prod-1\",environment=\"prod\"} ",
            )
        })
        .and_then(|v| v.parse().ok())
        .expect("clock skew sample");
    assert!((50.0..=61.0).contains(&skew), "{skew}");
    promtool_check_metrics(&text);

    // The dashboard and the alert rules use only metrics that exist.
    let exposed = metric_names(&text);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "deploy/grafana/lifeboat.json",
        "deploy/prometheus/lifeboat-rules.yml",
    ] {
        let content = std::fs::read_to_string(root.join(file)).expect("read deploy file");
        let used = metric_names(&content);
        assert!(!used.is_empty(), "{file} uses no lifeboat metric");
        for name in used {
            assert!(
                exposed.contains(&name),
                "{file} uses {name}, which the coordinator does not expose"
            );
        }
    }
    // The RPO incident reached the webhook.
    let rx = &rx;
    eventually("the RPO incident at the webhook", || async move {
        rx.accepted("/ops")
            .iter()
            .any(|v| {
                v["incident"]["kind"] == "rpo_breach" && v["incident"]["subject"] == "prod/users"
            })
            .then_some(())
    })
    .await;
    if let Err(e) = c.stop().await {
        panic!("coordinator stopped with {e:#}");
    }
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

#[tokio::test]
async fn webhooks_fire_once_per_incident_and_on_resolve() {
    let (rx, addr) = Receiver::start(&[("generic", 1)]).await;
    let mut c = Coordinator::start().await;
    let url_file = c.dir.path().join("chat.url");
    lifeboat_common::secret::write_private_file(
        &url_file,
        format!("http://{addr}/slack/T000/B000/secret-token\n").as_bytes(),
    )
    .expect("write url file");
    reconfigure(
        &mut c,
        &format!(
            "[alerts]\nevaluate_interval = \"200ms\"\nagent_offline_after = \"1s\"\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl = \"http://{addr}/generic\"\n\
             [[alerts.webhook]]\nname = \"chat\"\nformat = \"slack\"\nurl_file = \"chat.url\"\n\
             kinds = [\"backup_failed\", \"agent_offline\"]\nsend_resolved = true\n"
        ),
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;

    // A failed backup: one incident, delivered to both webhooks (the generic one after a 500
    // and a retry).
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    let rx = &rx;
    eventually("backup_failed on both webhooks", || async move {
        let g = has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "firing",
        );
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 1).then_some(())
    })
    .await;
    assert_eq!(rx.attempts("/generic"), 2, "the 500 was retried once");
    let g = &rx.accepted("/generic")[0];
    assert_eq!(g["version"], 1);
    assert_eq!(g["incident"]["severity"], "warning");
    assert!(
        g["incident"]["summary"]
            .as_str()
            .expect("summary")
            .contains("it broke"),
        "{g}"
    );
    let slack = &rx.accepted("/slack/T000/B000/secret-token")[0];
    assert!(
        slack["text"]
            .as_str()
            .expect("text")
            .contains("[FIRING] warning backup_failed"),
        "{slack}"
    );

    // Many evaluations later, still one notification per webhook.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "firing"
        ),
        1
    );
    assert_eq!(rx.accepted("/slack/T000/B000/secret-token").len(), 1);

    // A successful backup resolves it.
    let job = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    eventually("backup_failed resolved on both webhooks", || async move {
        let g = has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "resolved",
        );
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 2).then_some(())
    })
    .await;
    let resolved = rx
        .accepted("/generic")
        .into_iter()
        .find(|v| v["status"] == "resolved")
        .expect("resolved");
    assert!(
        resolved["incident"]["resolved_at"].is_string(),
        "{resolved}"
    );
    assert!(
        resolved["incident"]["resolution"]
            .as_str()
            .expect("resolution")
            .contains("succeeded again")
    );

    // The agent goes away: after the threshold, agent_offline fires.
    agent.disconnect();
    eventually("agent_offline firing on both webhooks", || async move {
        let g = has(&generic_events(rx), "agent_offline", "prod-1", "firing");
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 3).then_some(())
    })
    .await;
    // A restart while it is open neither resolves it nor notifies it again.
    c.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = generic_events(rx);
    assert_eq!(
        has(&events, "agent_offline", "prod-1", "firing"),
        1,
        "{events:?}"
    );
    assert_eq!(
        has(&events, "agent_offline", "prod-1", "resolved"),
        0,
        "{events:?}"
    );
    let (_, detailed) = get_json(&c, "/health/detailed").await;
    assert!(
        detailed["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .any(|i| i["kind"] == "agent_offline"),
        "{detailed}"
    );

    // It comes back: resolved, once.
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    eventually("agent_offline resolved", || async move {
        let g = has(&generic_events(rx), "agent_offline", "prod-1", "resolved");
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 4).then_some(())
    })
    .await;
    let slack_texts: Vec<String> = rx
        .accepted("/slack/T000/B000/secret-token")
        .iter()
        .map(|v| v["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(slack_texts.len(), 4, "{slack_texts:?}");
    assert!(
        slack_texts[3].contains("[RESOLVED] agent_offline"),
        "{slack_texts:?}"
    );

    let (_, metrics) = c.http_get("/metrics").await;
    assert!(
        metrics.contains(
            "lifeboat_alert_notifications_total{outcome=\"delivered\",webhook=\"chat\"} 1"
        ),
        "counted since the restart:\n{metrics}"
    );
    assert!(metrics.contains("lifeboat_alert_notifications_pending{webhook=\"ops\"} 0"));
    assert!(!metrics.contains("secret-token"));
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

#[tokio::test]
async fn backup_size_far_from_the_median_opens_an_incident() {
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        "[alerts]\nevaluate_interval = \"200ms\"\nsize_change_percent = 50\n",
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let cr = &c;
    for size in [1000, 1100, 900, 1000] {
        start_backup(&mut control, "prod/orders").await;
        backup_with_size(&mut agent, size).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        open_incident_kinds(cr).await.is_empty(),
        "normal sizes open nothing"
    );
    start_backup(&mut control, "prod/orders").await;
    backup_with_size(&mut agent, 100).await;
    eventually("size_anomaly", || async move {
        open_incident_kinds(cr)
            .await
            .contains(&"size_anomaly".to_owned())
            .then_some(())
    })
    .await;
    start_backup(&mut control, "prod/orders").await;
    backup_with_size(&mut agent, 1000).await;
    eventually("size_anomaly resolved", || async move {
        open_incident_kinds(cr).await.is_empty().then_some(())
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

#[tokio::test]
async fn readiness_and_a_broken_catalog() {
    let c = Coordinator::start().await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let (status, _) = get_json(&c, "/health/ready").await;
    assert_eq!(status, 200);

    // A migration recorded as failed: not ready, and the detailed view says why.
    tamper(
        &c,
        "UPDATE _sqlx_migrations SET success = 0 WHERE version = 3",
    )
    .await;
    let (status, ready) = get_json(&c, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(
        ready["checks"]["migrations"]["failed"],
        serde_json::json!([3])
    );
    let (status, detailed) = get_json(&c, "/health/detailed").await;
    assert_eq!(status, 200, "{detailed}");
    assert_eq!(detailed["catalog"]["status"], "critical");
    assert_eq!(detailed["status"], "critical");
    tamper(
        &c,
        "UPDATE _sqlx_migrations SET success = 1 WHERE version = 3",
    )
    .await;

    // The catalog cannot answer the health queries: 503 where the catalog is needed, and
    // /metrics still answers, with lifeboat_catalog_up 0.
    tamper(&c, "ALTER TABLE jobs RENAME TO jobs_gone").await;
    let (status, backups) = get_json(&c, "/health/backups").await;
    assert_eq!(status, 503, "{backups}");
    assert!(
        backups["error"]
            .as_str()
            .expect("error")
            .contains("coordinator log"),
        "{backups}"
    );
    assert!(
        !backups.to_string().contains("jobs_gone"),
        "SQL details leak: {backups}"
    );
    let (status, _) = get_json(&c, "/health/detailed").await;
    assert_eq!(status, 503);
    let (status, metrics) = c.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("lifeboat_catalog_up 0"), "{metrics}");
    assert!(metrics.contains("lifeboat_agents_connected 1"), "{metrics}");
    let (status, _) = get_json(&c, "/health").await;
    assert_eq!(status, 200, "liveness does not depend on the catalog");

    tamper(&c, "ALTER TABLE jobs_gone RENAME TO jobs").await;
    let (status, _) = get_json(&c, "/health/backups").await;
    assert_eq!(status, 200);
    let (_, metrics) = c.http_get("/metrics").await;
    assert!(metrics.contains("lifeboat_catalog_up 1"), "{metrics}");
}

#[tokio::test]
async fn a_failing_webhook_backs_off_and_does_not_hold_up_the_others() {
    let (rx, addr) = Receiver::start(&[("down", usize::MAX)]).await;
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        &format!(
            "[alerts]\nevaluate_interval = \"200ms\"\n\
             [[alerts.webhook]]\nname = \"down\"\nurl = \"http://{addr}/down\"\ntimeout = \"2s\"\n\
             [[alerts.webhook]]\nname = \"up\"\nurl = \"http://{addr}/up\"\n"
        ),
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;

    let rx = &rx;
    eventually("delivery to the working webhook", || async move {
        (rx.accepted("/up").len() == 1).then_some(())
    })
    .await;
    // The failing one: the first attempt and two retries, then it waits (30 s) in the outbox.
    eventually("three attempts at the failing webhook", || async move {
        (rx.attempts("/down") == 3).then_some(())
    })
    .await;
    let cr = &c;
    eventually(
        "the failure counted and the notification pending",
        || async move {
            let (_, m) = cr.http_get("/metrics").await;
            (m.contains(
                "lifeboat_alert_notifications_total{outcome=\"failed\",webhook=\"down\"} 1",
            ) && m.contains("lifeboat_alert_notifications_pending{webhook=\"down\"} 1")
                && m.contains("lifeboat_alert_notifications_pending{webhook=\"up\"} 0"))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.attempts("/down"), 3, "retried before its backoff");
    assert_eq!(rx.accepted("/up").len(), 1);
}

/// `/health/detailed` shows the scheduler: when it last completed a pass, how many schedules
/// are in effect, which are paused, and the soonest next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_state_is_in_detailed_health() {
    let c = Coordinator::start().await;
    let cr = &c;
    let first = eventually("a first scheduler pass", || async move {
        let (_, v) = get_json(cr, "/health/detailed").await;
        (!v["scheduler"]["last_pass_at"].is_null()).then_some(v)
    })
    .await;
    assert_eq!(first["scheduler"]["status"], "ok", "{first}");
    assert_eq!(first["scheduler"]["schedules"], 0, "{first}");
    assert!(first["scheduler"]["next_run"].is_null(), "{first}");

    let mut control = c.control("olga");
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    control
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron: "30 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            jitter_secs: 0,
            kind: pb::ScheduleKind::Backup.into(),
        })
        .await
        .expect("set schedule");
    let v = eventually("the schedule in /health/detailed", || async move {
        let (_, v) = get_json(cr, "/health/detailed").await;
        (v["scheduler"]["schedules"] == 1).then_some(v)
    })
    .await;
    let next = &v["scheduler"]["next_run"];
    assert_eq!(next["target"], "prod/orders", "{v}");
    let at = next["at"].as_str().expect("next run time");
    assert!(
        at.ends_with(":30:00Z") && (at.contains("T00:") || at.contains("T01:")),
        "02:30 in Berlin is 00:30 or 01:30 UTC: {at}"
    );
    assert_eq!(v["scheduler"]["paused"], serde_json::json!([]), "{v}");

    control
        .pause_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect("pause");
    let v = eventually("the pause in /health/detailed", || async move {
        let (_, v) = get_json(cr, "/health/detailed").await;
        (v["scheduler"]["paused"] == serde_json::json!(["prod/orders"])).then_some(v)
    })
    .await;
    assert!(v["scheduler"]["next_run"].is_null(), "{v}");
    assert_eq!(v["scheduler"]["status"], "ok", "{v}");
}

/// The HTTP endpoints read the catalog at most once per `server.health_cache_ms`, however
/// many requests arrive at once, and `/health/detailed` and `/health/backups` need the bearer
/// token of `server.http_token_file` while probes and `/metrics` stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_are_shared_and_details_need_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("http.token");
    let token = "tok-0123456789abcdef0123456789";
    lifeboat_common::secret::write_private_file(&token_file, format!("{token}\n").as_bytes())
        .expect("write token");
    let c = Coordinator::builder()
        .server(&format!(
            "health_cache_ms = 60000\nhttp_token_file = {:?}\n",
            token_file.display().to_string()
        ))
        .start()
        .await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let auth = format!("Authorization: Bearer {token}\r\n");

    // 200 requests at once over all endpoints (under the 256 connections served at once):
    // one catalog read serves them all.
    let paths = [
        "/health/ready",
        "/metrics",
        "/health/detailed",
        "/health/backups",
    ];
    let answers = futures::future::join_all((0..200).map(|i| {
        let (c, auth) = (&c, &auth);
        async move { c.http_get_with(paths[i % paths.len()], auth).await }
    }))
    .await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{}: {body}", paths[i % paths.len()]);
    }
    let (_, metrics) = c.http_get("/metrics").await;
    assert!(
        metrics.contains("lifeboat_health_catalog_reads_total 1\n"),
        "one read for 201 requests: {}",
        metrics
            .lines()
            .filter(|l| l.contains("catalog_reads"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The detail endpoints without the token, or with another one: 401, saying what is needed.
    for path in ["/health/detailed", "/health/backups?environment=prod"] {
        let (status, body) = c.http_get(path).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("server.http_token_file"), "{body}");
        assert!(!body.contains(token), "{body}");
        let (status, _) = c
            .http_get_with(
                path,
                "Authorization: Bearer tok-0123456789abcdef0123456780\r\n",
            )
            .await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _) = c
            .http_get_with(path, &format!("Authorization: {token}\r\n"))
            .await;
        assert_eq!(status, 401, "{path} without the Bearer scheme");
    }
    // Probes and Prometheus need none.
    for path in ["/health", "/health/ready", "/metrics"] {
        let (status, body) = c.http_get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

/// A reading older than the interval is taken again: what the endpoints say is at most one
/// interval old.
#[tokio::test]
async fn http_readings_expire_after_the_interval() {
    let c = Coordinator::builder()
        .server("health_cache_ms = 200\n")
        .start()
        .await;
    let reads = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("lifeboat_health_catalog_reads_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no read counter in {m}"))
    };
    let (_, first) = c.http_get("/metrics").await;
    let (_, again) = c.http_get("/metrics").await;
    assert_eq!(reads(&again), reads(&first), "within the interval: shared");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (_, later) = c.http_get("/metrics").await;
    assert_eq!(
        reads(&later),
        reads(&first) + 1,
        "after the interval: read again"
    );
}
