//! `/health*` and `/metrics`: verdicts, readiness, the scheduler's state.

use super::*;

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
    // users copies its backups off-site (it has none yet).
    h.targets[1].copy_to = vec!["offsite".into()];
    // The agent's clock runs a minute ahead.
    h.clock_unix_ms = lifeboat_common::time::now_ms() + 60_000;
    let mut agent = c.agent(h).await;
    let job = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    agent
        .send(heartbeat_with_wal(
            60_000,
            vec![pb::RepositoryStats {
                name: "local".into(),
                kind: "fs".into(),
                stale_uploads_aborted: 4,
                janitor_errors: 1,
                janitor_last_success_ms: 1_700_000_000_000,
            }],
            // Its WAL archive (a target of another agent's would be ignored).
            vec![
                pb::WalStatus {
                    target: "orders".into(),
                    observed_at_ms: 1_700_000_000_000,
                    last_archived: "000000010000000000000007".into(),
                    last_archived_at_ms: 1_700_000_000_000,
                    gaps: vec!["000000010000000000000005".into()],
                    pending_segments: 3,
                    failed_count: 2,
                    ..Default::default()
                },
                pb::WalStatus {
                    target: "payments".into(),
                    pending_segments: 9,
                    ..Default::default()
                },
            ],
        ))
        .await;
    // A verification and a restore of that backup.
    control
        .verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
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
    // And a restore drill of it (its metrics appear once a target had one).
    control
        .start_drill(pb::StartDrillRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("drill");
    let spec = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Restore(drill)) = &spec.spec else {
        panic!("a drill is a restore: {spec:?}");
    };
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Drill(pb::DrillResult {
                restore: Some(pb::RestoreResult {
                    database: drill.database.clone(),
                    ..Default::default()
                }),
                rto_ms: 2_000,
                checks: Vec::new(),
                dropped: true,
            })),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;

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
        // The restore and the drill (a restore job marked as a drill).
        "lifeboat_jobs_total{kind=\"restore\",outcome=\"succeeded\"} 2",
        "lifeboat_drills_total{environment=\"prod\",outcome=\"succeeded\",target=\"orders\"} 1",
        "lifeboat_drill_duration_seconds{environment=\"prod\",target=\"orders\"} 2",
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
    for sample in [
        "lifeboat_pitr_last_archived_timestamp_seconds{environment=\"prod\",target=\"orders\"} 1700000000",
        "lifeboat_pitr_archive_gaps{environment=\"prod\",target=\"orders\"} 1",
        "lifeboat_pitr_archive_pending_segments{environment=\"prod\",target=\"orders\"} 3",
        "lifeboat_pitr_archiver_failures{environment=\"prod\",target=\"orders\"} 2",
    ] {
        assert!(text.lines().any(|l| l == sample), "no {sample} in\n{text}");
    }
    assert!(
        !text.contains("target=\"payments\""),
        "a target the agent does not own"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("lifeboat_copy_last_success_timestamp_seconds{")
                && l.contains("target=\"users\"")
                && l.contains("repository=\"offsite\"")
                && l.ends_with(" 0")
        ),
        "a target copying off-site without a copy yet: 0\n{text}"
    );
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
            ..Default::default()
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
    assert_eq!(next["kind"], "backup", "{v}");
    let at = next["at"].as_str().expect("next run time");
    assert!(
        at.ends_with(":30:00Z") && (at.contains("T00:") || at.contains("T01:")),
        "02:30 in Berlin is 00:30 or 01:30 UTC: {at}"
    );
    assert_eq!(v["scheduler"]["paused"], serde_json::json!([]), "{v}");

    control
        .pause_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            ..Default::default()
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
