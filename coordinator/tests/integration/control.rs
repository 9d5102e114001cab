//! The Control API end to end: backups, verify, restore, cancel, listings, HTTP.

use lifeboat_proto::v1::{self as pb, coordinator_message::Msg};
use tonic::Code;

use crate::harness::*;

/// A coordinator with agent prod-1 (prod/orders, prod/users postgres; prod/shop mysql) and one
/// complete backup of prod/orders.
async fn with_backup() -> (Coordinator, FakeAgent, pb::Job) {
    let c = Coordinator::start().await;
    let mut h = hello("prod-1", "prod", &["orders", "users"]);
    h.targets.push(target("shop", pb::Engine::Mysql));
    let mut agent = c.agent(h).await;
    let mut control = c.control("olga");
    let job = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    (c, agent, job)
}

#[tokio::test]
async fn start_backup_needs_a_registered_target() {
    let c = Coordinator::start().await;
    let e = c
        .control("olga")
        .start_backup(pb::StartBackupRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect_err("unknown target");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("lifeboat targets list"), "{e:?}");
}

#[tokio::test]
async fn job_and_backup_records_are_complete() {
    let (c, _agent, job) = with_backup().await;
    let mut control = c.control("vera");
    let j = job_state(&mut control, &job.job_id).await;
    assert_eq!(j.kind, i32::from(pb::JobKind::Backup));
    assert_eq!(j.target, "prod/orders");
    assert_eq!(j.agent, "prod-1");
    assert_eq!(j.requested_by, "olga");
    assert!(j.created_at_ms > 0 && j.started_at_ms >= j.created_at_ms);
    assert!(j.finished_at_ms >= j.started_at_ms);
    lifeboat_common::ids::validate_id("job id", &j.job_id).expect("job id shape");
    lifeboat_common::ids::validate_id("backup id", &j.backup_id).expect("backup id shape");
    assert_ne!(j.job_id, j.backup_id);

    let backups = control
        .list_backups(pb::ListBackupsRequest {
            target: "prod/orders".into(),
            limit: 0,
            after: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .backups;
    assert_eq!(backups.len(), 1);
    let b = &backups[0];
    assert_eq!(b.backup_id, j.backup_id);
    assert_eq!(b.row_counts.len(), 1);
    assert_eq!(b.row_counts[0].rows, 7);
    assert!(
        control
            .list_backups(pb::ListBackupsRequest {
                target: "prod/users".into(),
                limit: 0,
                after: String::new(),
            })
            .await
            .expect("list")
            .into_inner()
            .backups
            .is_empty()
    );

    let targets = control
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("targets")
        .into_inner()
        .targets;
    let orders = targets
        .iter()
        .find(|t| t.name == "prod/orders")
        .expect("orders listed");
    assert!(orders.agent_connected);
    assert_eq!(orders.last_backup_id, j.backup_id);
    assert_eq!(orders.engine, i32::from(pb::Engine::Postgres));
    let shop = targets
        .iter()
        .find(|t| t.name == "prod/shop")
        .expect("shop");
    assert_eq!(shop.engine, i32::from(pb::Engine::Mysql));
    assert!(shop.last_backup_id.is_empty());

    let agents = control
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("agents")
        .into_inner()
        .agents;
    assert_eq!(agents.len(), 1);
    let a = &agents[0];
    assert_eq!(
        (a.name.as_str(), a.environment.as_str()),
        ("prod-1", "prod")
    );
    assert!(a.connected && a.last_seen_ms > 0);
    assert_eq!((a.running_jobs, a.max_concurrent_jobs), (0, 4));
}

#[tokio::test]
async fn verify_sends_the_catalog_record_and_a_corrupt_result_fails_the_job() {
    let (c, mut agent, backup_job) = with_backup().await;
    let mut control = c.control("olga");
    let verify = control
        .verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
            backup_id: backup_job.backup_id.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(verify.kind, i32::from(pb::JobKind::Verify));
    assert_eq!(verify.target, "prod/orders");
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, verify.job_id);
    let Some(pb::job_spec::Spec::Verify(v)) = spec.spec else {
        panic!("not a verify spec")
    };
    let record = v.backup.expect("record");
    assert_eq!(record.backup_id, backup_job.backup_id);
    assert_eq!(record.stored_sha256, "cd".repeat(32));
    assert_eq!(record.raw_sha256, "ab".repeat(32));
    assert_eq!(record.stored_size, 512);

    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Failed,
            Some(pb::job_result::Result::Verify(pb::VerifyResult {
                status: pb::VerifyStatus::Corrupt.into(),
                detail: "stored sha256 mismatch".into(),
                stored_bytes: 512,
                raw_bytes: 0,
            })),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let failed = wait_state(&mut control, &verify.job_id, pb::JobState::Failed).await;
    assert_eq!(
        failed.error,
        format!(
            "backup {} is corrupt: stored sha256 mismatch",
            backup_job.backup_id
        )
    );
    let b = control
        .get_backup(pb::GetBackupRequest {
            backup_id: backup_job.backup_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(b.verify_status, i32::from(pb::VerifyStatus::Corrupt));
    assert_eq!(b.verify_detail, "stored sha256 mismatch");
    assert!(b.verified_at_ms > 0);

    // A clean verify succeeds and marks the backup OK.
    let verify = control
        .verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
            backup_id: backup_job.backup_id.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Verify(pb::VerifyResult {
                status: pb::VerifyStatus::Ok.into(),
                ..Default::default()
            })),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &verify.job_id, pb::JobState::Succeeded).await;
    let b = control
        .get_backup(pb::GetBackupRequest {
            backup_id: backup_job.backup_id,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(b.verify_status, i32::from(pb::VerifyStatus::Ok));
}

#[tokio::test]
async fn restore_checks_engine_and_database_and_reports_the_restored_database() {
    let (c, mut agent, backup_job) = with_backup().await;
    let mut control = c.control("olga");
    let restore = |to: &str, db: &str| pb::RestoreRequest {
        backup_id: backup_job.backup_id.clone(),
        to_target: to.into(),
        database: db.into(),
        clean: false,
        ..Default::default()
    };
    let e = control
        .restore(restore("prod/shop", ""))
        .await
        .expect_err("postgres backup into mysql");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("postgres") && e.message().contains("mysql"),
        "{e:?}"
    );
    let e = control
        .restore(restore("", "a;drop table x"))
        .await
        .expect_err("bad database name");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = control
        .restore(restore("prod/nope", ""))
        .await
        .expect_err("unknown target");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let job = control
        .restore(restore("prod/users", "users_restored"))
        .await
        .expect("restore")
        .into_inner();
    assert_eq!(job.kind, i32::from(pb::JobKind::Restore));
    assert_eq!(job.target, "prod/users");
    assert_eq!(job.database, "users_restored");
    assert!(!job.clean);
    let spec = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Restore(r)) = spec.spec.clone() else {
        panic!("not a restore spec")
    };
    assert_eq!(r.target, "users");
    assert_eq!(r.database, "users_restored");
    assert!(!r.clean);
    assert_eq!(r.backup.expect("record").backup_id, backup_job.backup_id);
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Restore(pb::RestoreResult {
                database: "users_restored".into(),
                row_counts: vec![],
                raw_bytes: 4096,
                data_dir: String::new(),
            })),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let done = wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    assert_eq!(done.detail, "users_restored");
    assert_eq!(done.database, "users_restored");

    // Admin may restore over the backup's own target with clean.
    let job = c
        .control("alice")
        .restore(pb::RestoreRequest {
            backup_id: backup_job.backup_id.clone(),
            to_target: String::new(),
            database: "orders".into(),
            clean: true,
            ..Default::default()
        })
        .await
        .expect("clean restore by admin")
        .into_inner();
    assert!(job.clean);
    assert_eq!(job.target, "prod/orders");
    let spec = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Restore(r)) = spec.spec else {
        panic!("not a restore spec")
    };
    assert!(r.clean);
    // A failed restore keeps the agent's reason.
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let failed = wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    assert_eq!(failed.error, "it broke");
}

#[tokio::test]
async fn cancel_queued_and_running_jobs() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    // Queued with the agent offline: cancelled at once.
    c.agent(hello("prod-1", "prod", &["orders", "users"]))
        .await
        .disconnect();
    let queued = start_backup(&mut control, "prod/orders").await;
    let cancelled = control
        .cancel_job(pb::CancelJobRequest {
            job_id: queued.job_id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state, i32::from(pb::JobState::Cancelled));
    assert!(cancelled.error.contains("olga"), "{cancelled:?}");
    let e = control
        .cancel_job(pb::CancelJobRequest {
            job_id: queued.job_id.clone(),
        })
        .await
        .expect_err("cancel twice");
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Running on a connected agent: the agent is asked and reports the cancellation.
    let mut agent = c.agent(hello("prod-1", "prod", &["orders", "users"])).await;
    let running = start_backup(&mut control, "prod/users").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    wait_state(&mut control, &running.job_id, pb::JobState::Running).await;
    let still = control
        .cancel_job(pb::CancelJobRequest {
            job_id: running.job_id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(still.state, i32::from(pb::JobState::Running));
    match agent.recv().await.expect("cancel request") {
        Msg::CancelJob(c) => assert_eq!(c.job_id, running.job_id),
        other => panic!("expected CancelJob, got {other:?}"),
    }
    agent
        .send(result(&spec.job_id, pb::JobState::Cancelled, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &running.job_id, pb::JobState::Cancelled).await;
    assert_eq!(count_backups(&mut control).await, 0);
}

#[tokio::test]
async fn health_and_metrics() {
    let (c, _agent, _job) = with_backup().await;
    let (status, body) = c.http_get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"status": "ok"})
    );
    let (status, body) = c.http_get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "lifeboat_agents_connected 1",
        "lifeboat_jobs_running{kind=\"backup\"} 0",
        "lifeboat_jobs_total{kind=\"backup\",outcome=\"succeeded\"} 1",
        "lifeboat_backup_last_success_timestamp_seconds{environment=\"prod\",target=\"orders\"}",
        "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"stored\",target=\"orders\"} 512",
        "lifeboat_backup_last_size_bytes{environment=\"prod\",kind=\"raw\",target=\"orders\"} 4096",
        "lifeboat_job_duration_seconds_count{kind=\"backup\"} 1",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    let (status, _) = c.http_get("/nope").await;
    assert_eq!(status, 404);
}
