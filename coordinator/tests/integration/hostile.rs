//! B31 (hostile gRPC input) and B32 (duplicate and replayed results).

use lifeboat_proto::v1::{self as pb, agent_message::Msg};
use tonic::Code;

use crate::harness::*;

const BIG: usize = lifeboat_proto::MAX_MESSAGE_BYTES + 1024;

#[tokio::test]
async fn b31_oversize_messages_are_refused_and_the_server_stays_healthy() {
    let c = Coordinator::start().await;
    let e = c
        .control("alice")
        .start_backup(pb::StartBackupRequest {
            target: "x".repeat(BIG),
        })
        .await
        .expect_err("oversize request accepted");
    assert!(
        matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e:?}"
    );

    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    agent
        .send(progress("20261127T233000Z-000001", 1, &"p".repeat(BIG)))
        .await;
    let status = agent.expect_end().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // An oversize Hello.
    let mut big = hello("prod-2", "prod", &["users"]);
    big.version = "v".repeat(BIG);
    let e = FakeAgent::open(c.gateway("prod-2"), big)
        .await
        .err()
        .expect("oversize hello accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    c.assert_healthy().await;
}

#[tokio::test]
async fn b31_invalid_session_messages_end_the_stream_with_invalid_argument() {
    let c = Coordinator::start().await;
    let valid = "20261127T233000Z-000001";
    let cases: Vec<(&str, pb::AgentMessage)> = vec![
        ("empty message", pb::AgentMessage { msg: None }),
        ("empty job id", accepted("")),
        ("huge job id", accepted(&"9".repeat(100_000))),
        ("path in job id", accepted("../../etc/passwd")),
        (
            "unknown job state",
            msg(Msg::Result(pb::JobResult {
                job_id: valid.into(),
                state: 42,
                ..Default::default()
            })),
        ),
        (
            "non-terminal result",
            msg(Msg::Result(pb::JobResult {
                job_id: valid.into(),
                state: pb::JobState::Running.into(),
                ..Default::default()
            })),
        ),
        (
            "unknown verify status",
            msg(Msg::Result(pb::JobResult {
                job_id: valid.into(),
                state: pb::JobState::Succeeded.into(),
                result: Some(pb::job_result::Result::Verify(pb::VerifyResult {
                    status: 17,
                    ..Default::default()
                })),
                ..Default::default()
            })),
        ),
        (
            "second hello",
            msg(Msg::Hello(hello("prod-1", "prod", &["orders"]))),
        ),
        (
            "bad heartbeat job id",
            msg(Msg::Heartbeat(pb::Heartbeat {
                clock_unix_ms: 0,
                running_jobs: vec![String::new()],
                repositories: Vec::new(),
                wal: Vec::new(),
            })),
        ),
    ];
    for (what, bad) in cases {
        let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
        agent.send(bad).await;
        let status = agent.expect_end().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }

    let bad_hellos: Vec<(&str, pb::Hello)> = vec![
        ("dotdot target", hello("prod-1", "prod", &["../etc"])),
        ("slash in target", hello("prod-1", "prod", &["a/b"])),
        ("bad environment", hello("prod-1", "../prod", &["orders"])),
        (
            "duplicate target",
            hello("prod-1", "prod", &["orders", "orders"]),
        ),
        ("unknown engine", {
            let mut h = hello("prod-1", "prod", &["orders"]);
            h.targets[0].engine = 99;
            h
        }),
        ("unspecified engine", {
            let mut h = hello("prod-1", "prod", &["orders"]);
            h.targets[0].engine = 0;
            h
        }),
        ("bad repository", {
            let mut h = hello("prod-1", "prod", &["orders"]);
            h.targets[0].repository = "../repo".into();
            h
        }),
        ("bad running job id", {
            let mut h = hello("prod-1", "prod", &["orders"]);
            h.running_jobs = vec!["x".repeat(5000)];
            h
        }),
    ];
    for (what, h) in bad_hellos {
        let e = FakeAgent::open(c.gateway("prod-1"), h)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    }
    // The first message must be Hello.
    let mut client = c.gateway("prod-1");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(accepted(valid)).await.expect("queue");
    let e = within(
        "refusal",
        client.session(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect_err("session without hello");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    c.assert_healthy().await;
}

#[tokio::test]
async fn b31_invalid_control_requests_are_refused() {
    let c = Coordinator::start().await;
    let mut alice = c.control("alice");
    for target in [
        "",
        "../etc",
        "prod/../x",
        "prod",
        "PROD/orders",
        &"a/".repeat(5000),
    ] {
        let e = alice
            .start_backup(pb::StartBackupRequest {
                target: target.into(),
            })
            .await
            .expect_err("bad target accepted");
        assert_eq!(e.code(), Code::InvalidArgument, "{target:?}: {e:?}");
    }
    for id in ["", "../../x", &"9".repeat(100_000)] {
        let e = alice
            .get_job(pb::GetJobRequest { job_id: id.into() })
            .await
            .expect_err("bad job id");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let e = alice
            .get_backup(pb::GetBackupRequest {
                backup_id: id.into(),
            })
            .await
            .expect_err("bad backup id");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let e = alice
        .list_backups(pb::ListBackupsRequest {
            target: "../x".into(),
            limit: 0,
            after: String::new(),
        })
        .await
        .expect_err("bad filter");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A page cursor that is not a backup id, or names no backup.
    for (after, code) in [
        ("x' OR 1=1 --", Code::InvalidArgument),
        ("20261127T233000Z-7f3a9c", Code::NotFound),
    ] {
        let e = alice
            .list_backups(pb::ListBackupsRequest {
                after: after.into(),
                ..Default::default()
            })
            .await
            .expect_err("bad cursor");
        assert_eq!(e.code(), code, "{after}: {e:?}");
    }
    let e = alice
        .list_jobs(pb::ListJobsRequest {
            after: "../../etc".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad job cursor");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    for (after, code) in [
        ("../../etc", Code::InvalidArgument),
        ("20261127T233000Z-7f3a9c", Code::NotFound),
    ] {
        let e = alice
            .list_drills(pb::ListDrillsRequest {
                after: after.into(),
                ..Default::default()
            })
            .await
            .expect_err("bad drill cursor");
        assert_eq!(e.code(), code, "{after}: {e:?}");
    }
    let e = alice
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            after_id: -5,
            ..Default::default()
        })
        .await
        .expect_err("negative run cursor");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("after_id -5"), "{e:?}");
    c.assert_healthy().await;
}

#[tokio::test]
async fn b31_hostile_backup_records_are_refused_and_never_recorded() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;

    type Edit = fn(&mut pb::BackupRecord);
    let edits: &[(&str, Edit)] = &[
        ("other backup id", |r| {
            r.backup_id = "20200101T000000Z-000000".into()
        }),
        ("other target", |r| r.target = "prod/users".into()),
        ("other agent", |r| r.agent = "prod-2".into()),
        ("uppercase hash", |r| {
            r.raw_sha256 = r.raw_sha256.to_uppercase()
        }),
        ("zero size", |r| r.raw_size = 0),
        ("escaping key", |r| {
            r.data_key = "../../../etc/shadow".into()
        }),
        ("absolute key", |r| r.manifest_key = "/etc/shadow".into()),
    ];
    // A result the catalog cannot take fails its job and is acknowledged (so the agent stops
    // re-sending it and the target is free again); it never becomes a backup.
    for (what, edit) in edits {
        let job = start_backup(&mut control, "prod/orders").await;
        let spec = agent.expect_start().await;
        assert_eq!(spec.job_id, job.job_id, "{what}");
        agent.send(accepted(&spec.job_id)).await;
        let mut record = record_for(&spec, "prod", "prod-1");
        edit(&mut record);
        agent
            .send(result(
                &spec.job_id,
                pb::JobState::Succeeded,
                Some(pb::job_result::Result::Backup(record)),
            ))
            .await;
        agent.expect_ack(&spec.job_id).await;
        let j = wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
        assert!(
            j.error.contains("could not accept the agent's result"),
            "{what}: {j:?}"
        );
        assert_eq!(count_backups(&mut control).await, 0, "{what}");
    }
    // A succeeded backup result without a record fails its job the same way.
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Succeeded, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    assert_eq!(count_backups(&mut control).await, 0);
    c.assert_healthy().await;
}

#[tokio::test]
async fn b32_replayed_result_is_acknowledged_and_adds_no_second_row() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
    agent.send(accepted(&spec.job_id)).await;
    agent.send(progress(&spec.job_id, 100, "dumping")).await;
    let done = backup_result(&spec, "prod", "prod-1");
    agent.send(done.clone()).await;
    agent.expect_ack(&spec.job_id).await;
    // Same completion again on the same stream.
    agent.send(done.clone()).await;
    agent.expect_ack(&spec.job_id).await;
    // And after a reconnect, as an agent re-sends unacknowledged results.
    agent.disconnect();
    let mut h = hello("prod-1", "prod", &["orders"]);
    h.running_jobs = vec![spec.job_id.clone()];
    let mut agent = c.agent(h).await;
    agent.send(done).await;
    agent.expect_ack(&spec.job_id).await;

    assert_eq!(count_backups(&mut control).await, 1);
    let j = wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    assert!(j.finished_at_ms > 0);
    let b = control
        .get_backup(pb::GetBackupRequest {
            backup_id: job.backup_id.clone(),
        })
        .await
        .expect("backup recorded")
        .into_inner();
    assert_eq!(b.job_id, job.job_id);
    assert_eq!(b.stored_sha256, "cd".repeat(32));
    assert_eq!(b.verify_status, i32::from(pb::VerifyStatus::Unverified));

    // A failure reported for the already-succeeded job changes nothing.
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let j = job_state(&mut control, &job.job_id).await;
    assert_eq!(j.state, i32::from(pb::JobState::Succeeded));
}

#[tokio::test]
async fn b32_result_for_an_unknown_job_is_not_acknowledged() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;

    // A well-formed result for a job nobody created.
    let mut fake = spec.clone();
    fake.job_id = "20200101T000000Z-abcdef".into();
    agent.send(backup_result(&fake, "prod", "prod-1")).await;
    // Then the real one: the next message must be its ack, not one for the unknown job.
    agent.send(accepted(&spec.job_id)).await;
    agent.send(backup_result(&spec, "prod", "prod-1")).await;
    agent.expect_ack(&spec.job_id).await;
    assert_eq!(count_backups(&mut control).await, 1);
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    let e = control
        .get_job(pb::GetJobRequest {
            job_id: fake.job_id.clone(),
        })
        .await
        .expect_err("unknown job appeared");
    assert_eq!(e.code(), Code::NotFound);
}
