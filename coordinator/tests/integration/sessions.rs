//! The agent session over time: leases, reconnects, replacement, dispatch limits, watching,
//! shutdown and restart.

use lifeboat_proto::v1::{self as pb, coordinator_message::Msg};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn lease_expiry_fails_a_running_job_of_a_vanished_agent() {
    let c = Coordinator::builder().lease_secs(1).start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent.send(progress(&spec.job_id, 10, "dumping")).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Running).await;
    agent.disconnect();
    let failed = wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    assert!(
        failed.error.contains("agent disconnected"),
        "{:?}",
        failed.error
    );
    assert_eq!(count_backups(&mut control).await, 0);
}

#[tokio::test]
async fn reconnect_without_the_job_fails_it_as_agent_restarted() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    agent.accept_next(&mut control, &job.job_id).await;
    agent.disconnect();
    // The agent comes back knowing nothing of the job.
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let failed = wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    assert!(
        failed
            .error
            .contains("agent restarted while the job was running; the job's outcome is unknown"),
        "{:?}",
        failed.error
    );
}

#[tokio::test]
async fn reconnect_with_the_job_keeps_it_and_accepts_its_result() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.accept_next(&mut control, &job.job_id).await;
    agent.disconnect();
    let mut h = hello("prod-1", "prod", &["orders"]);
    h.running_jobs = vec![spec.job_id.clone()];
    let mut agent = c.agent(h).await;
    agent.send(progress(&spec.job_id, 2048, "uploading")).await;
    let j = eventually("progress after reconnect", || {
        let mut control = control.clone();
        let id = job.job_id.clone();
        async move {
            let j = job_state(&mut control, &id).await;
            (j.progress.as_ref().map(|p| p.raw_bytes) == Some(2048)).then_some(j)
        }
    })
    .await;
    assert_eq!(j.state, i32::from(pb::JobState::Running));
    agent.send(backup_result(&spec, "prod", "prod-1")).await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    // No second run was started meanwhile.
    let jobs = control
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1);
}

#[tokio::test]
async fn a_job_cancelled_while_the_agent_was_away_is_cancelled_on_reconnect() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.accept_next(&mut control, &job.job_id).await;
    agent.disconnect();
    eventually("agent to be seen offline", || {
        let mut control = control.clone();
        async move {
            let agents = control
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .expect("list")
                .into_inner()
                .agents;
            (!agents[0].connected).then_some(())
        }
    })
    .await;
    let cancelled = control
        .cancel_job(pb::CancelJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state, i32::from(pb::JobState::Cancelled));
    let mut h = hello("prod-1", "prod", &["orders"]);
    h.running_jobs = vec![spec.job_id.clone()];
    let mut agent = c.agent(h).await;
    match agent.recv().await.expect("cancel request") {
        Msg::CancelJob(c) => assert_eq!(c.job_id, job.job_id),
        other => panic!("expected CancelJob, got {other:?}"),
    }
    // Its late report is acknowledged and changes nothing.
    agent
        .send(result(&spec.job_id, pb::JobState::Cancelled, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let j = job_state(&mut control, &job.job_id).await;
    assert_eq!(j.state, i32::from(pb::JobState::Cancelled));
    assert!(j.error.contains("olga"), "{j:?}");
}

#[tokio::test]
async fn a_job_sent_but_not_received_is_sent_again_after_reconnect() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.expect_start().await;
    // The agent "never saw" it: it reconnects without listing it.
    agent.disconnect();
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let again = agent.expect_start().await;
    assert_eq!(again.job_id, spec.job_id);
    agent.send(accepted(&again.job_id)).await;
    agent.send(backup_result(&again, "prod", "prod-1")).await;
    agent.expect_ack(&again.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
}

#[tokio::test]
async fn queued_job_fails_when_the_agent_stays_offline() {
    let c = Coordinator::builder().queue_timeout_secs(1).start().await;
    let mut control = c.control("olga");
    c.agent(hello("prod-1", "prod", &["orders"]))
        .await
        .disconnect();
    eventually("agent to be seen offline", || {
        let mut control = control.clone();
        async move {
            let agents = control
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .expect("list")
                .into_inner()
                .agents;
            (agents.len() == 1 && !agents[0].connected).then_some(())
        }
    })
    .await;
    // Queued although the agent is offline.
    let job = start_backup(&mut control, "prod/orders").await;
    assert_eq!(job.state, i32::from(pb::JobState::Queued));
    let failed = wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    assert!(failed.error.contains("agent offline"), "{:?}", failed.error);
}

#[tokio::test]
async fn queued_job_is_dispatched_when_the_agent_connects() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    c.agent(hello("prod-1", "prod", &["orders"]))
        .await
        .disconnect();
    let job = start_backup(&mut control, "prod/orders").await;
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
    assert_eq!(spec.kind, i32::from(pb::JobKind::Backup));
    let Some(pb::job_spec::Spec::Backup(b)) = spec.spec else {
        panic!("not a backup spec")
    };
    assert_eq!(
        (b.backup_id.as_str(), b.target.as_str()),
        (job.backup_id.as_str(), "orders")
    );
}

#[tokio::test]
async fn dispatch_respects_concurrency_and_one_job_per_target() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut h = hello("prod-1", "prod", &["a", "b", "c"]);
    h.max_concurrent_jobs = 1;
    let mut agent = c.agent(h).await;
    // A finished job whose replayed result serves as a barrier: its ack proves everything
    // the coordinator queued before it has been received.
    start_backup(&mut control, "prod/c").await;
    let first = agent.run_backup("prod", "prod-1").await;
    let barrier = backup_result(&first, "prod", "prod-1");

    let ja = start_backup(&mut control, "prod/a").await;
    let jb = start_backup(&mut control, "prod/b").await;
    let spec_a = agent.expect_start().await;
    assert_eq!(spec_a.job_id, ja.job_id);
    agent.send(accepted(&spec_a.job_id)).await;
    // A second backup of a target that has one queued or running is refused.
    let e = control
        .start_backup(pb::StartBackupRequest {
            target: "prod/a".into(),
        })
        .await
        .expect_err("second backup of the same target");
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&ja.job_id), "{e:?}");
    agent.send(barrier.clone()).await;
    agent.expect_ack(&first.job_id).await; // nothing for b came first
    assert_eq!(
        job_state(&mut control, &jb.job_id).await.state,
        i32::from(pb::JobState::Queued)
    );
    // Finishing a frees the slot for b.
    agent.send(backup_result(&spec_a, "prod", "prod-1")).await;
    let mut got_ack = false;
    let mut spec_b = None;
    while !(got_ack && spec_b.is_some()) {
        match agent.recv().await.expect("message") {
            Msg::ResultAck(a) if a.job_id == spec_a.job_id => got_ack = true,
            Msg::StartJob(s) => spec_b = Some(s),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(spec_b.expect("b").job_id, jb.job_id);
}

#[tokio::test]
async fn watch_job_streams_progress_and_the_terminal_state() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let mut watch = c
        .control("vera")
        .watch_job(pb::GetJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = within("first watch item", watch.message())
        .await
        .expect("watch item")
        .expect("open");
    assert_eq!(first.job_id, job.job_id);
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent.send(progress(&spec.job_id, 1000, "dumping")).await;
    agent.send(progress(&spec.job_id, 5000, "dumping")).await;
    agent.send(backup_result(&spec, "prod", "prod-1")).await;

    let mut seen = vec![first];
    while let Some(j) = within("watch item", watch.message())
        .await
        .expect("watch item")
    {
        seen.push(j);
    }
    let states: Vec<i32> = seen.iter().map(|j| j.state).collect();
    assert!(
        states.contains(&i32::from(pb::JobState::Running)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|j| j.progress.as_ref().is_some_and(|p| p.raw_bytes == 5000)),
        "{seen:?}"
    );
    let last = seen.last().expect("items");
    assert_eq!(last.state, i32::from(pb::JobState::Succeeded), "{seen:?}");

    // Watching a finished job yields it once and ends.
    let mut watch = control
        .watch_job(pb::GetJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let only = watch.message().await.expect("item").expect("one item");
    assert_eq!(only.state, i32::from(pb::JobState::Succeeded));
    assert!(watch.message().await.expect("end").is_none());
}

#[tokio::test]
async fn a_second_session_replaces_the_first() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut old = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut new = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let status = old.expect_end().await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = new.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
}

#[tokio::test]
async fn shutdown_ends_sessions_and_watches_and_restart_keeps_running_jobs() {
    let mut c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.accept_next(&mut control, &job.job_id).await;
    let mut watch = control
        .watch_job(pb::GetJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("item").expect("current state");

    c.restart().await;
    let status = agent.expect_end().await;
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Ok
        ),
        "{status:?}"
    );
    let ended = within("watch to end", watch.message()).await;
    assert!(
        matches!(&ended, Ok(None)) || ended.as_ref().is_err_and(|s| s.code() == Code::Unavailable),
        "{ended:?}"
    );

    // The new process finds the job still running (the agent has not come back yet).
    let mut control = c.control("olga");
    let j = job_state(&mut control, &job.job_id).await;
    assert_eq!(j.state, i32::from(pb::JobState::Running), "{j:?}");
    let agents = control
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert_eq!(agents.len(), 1);
    assert!(!agents[0].connected);
    assert_eq!(agents[0].running_jobs, 1);
    // The agent reconnects still running it and reports the result: no duplicate run.
    let mut h = hello("prod-1", "prod", &["orders"]);
    h.running_jobs = vec![spec.job_id.clone()];
    let mut agent = c.agent(h).await;
    agent.send(backup_result(&spec, "prod", "prod-1")).await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    assert_eq!(count_backups(&mut control).await, 1);
    c.stop().await.expect("clean stop");
}

/// Item 7 (M3): a catalog that cannot take writes (another connection holds SQLite's write
/// lock past the busy timeout) drops heartbeats and progress updates, counts them, and keeps
/// the agent's session: the same stream carries the job to its end once the catalog is back.
#[tokio::test]
async fn m3_a_busy_catalog_does_not_end_agent_sessions() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut control, "prod/orders").await;
    let spec = agent.accept_next(&mut control, &job.job_id).await;

    // Hold the write lock from another connection, as a long transaction would.
    let lock = c.lock_catalog().await;

    agent.send(heartbeat()).await;
    agent.send(progress(&spec.job_id, 4096, "dumping")).await;
    // Each write waits the catalog's busy timeout (10 s) before it fails.
    let dropped = |m: &str, kind: &str| {
        m.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "lifeboat_agent_updates_dropped_total{{kind=\"{kind}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = tokio::time::Instant::now();
    loop {
        let (_, m) = c.http_get("/metrics").await;
        if dropped(&m, "heartbeat") >= 1 && dropped(&m, "progress") >= 1 {
            break;
        }
        let agents = control
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .expect("list agents while the catalog is locked")
            .into_inner()
            .agents;
        assert!(
            agents.iter().any(|a| a.name == "prod-1" && a.connected),
            "the agent's session ended while the catalog was busy: {agents:?}"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the failed writes were never counted:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    lock.release().await;

    // The same session works again: progress (which agents repeat, and the coordinator drops
    // for a few seconds after a failure) is recorded and the result acknowledged.
    let start = tokio::time::Instant::now();
    loop {
        agent.send(heartbeat()).await;
        agent.send(progress(&spec.job_id, 8192, "uploading")).await;
        let j = job_state(&mut control, &job.job_id).await;
        if j.progress.is_some_and(|p| p.raw_bytes == 8192) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "progress never recorded after the catalog recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    agent.send(backup_result(&spec, "prod", "prod-1")).await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    assert_eq!(count_backups(&mut control).await, 1);
}
