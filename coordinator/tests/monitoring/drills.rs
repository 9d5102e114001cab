//! Restore drills on the coordinator: a drill is queued as a restore marked as a drill into a
//! new scratch database, recorded with its outcome and measured RTO (`ListDrills`), shown in
//! `/metrics` and `/health/backups` against the declared RTO, and alerted on when it fails,
//! when it is slower than the RTO, and when none passed for `alerts.drill_max_age`.

use super::*;

async fn start_drill(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    target: &str,
    into: &str,
) -> Result<pb::Job, tonic::Status> {
    control
        .start_drill(pb::StartDrillRequest {
            target: target.into(),
            into: into.into(),
            backup_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Takes the next job, checks it is the drill `job` asked for, and reports `result`.
async fn answer_drill(
    agent: &mut FakeAgent,
    job: &pb::Job,
    state: pb::JobState,
    rto_ms: u64,
) -> pb::RestoreSpec {
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
    let Some(pb::job_spec::Spec::Restore(r)) = spec.spec else {
        panic!("a drill is a restore job: {spec:?}");
    };
    agent.send(accepted(&spec.job_id)).await;
    let payload = (state == pb::JobState::Succeeded).then(|| {
        pb::job_result::Result::Drill(pb::DrillResult {
            restore: Some(pb::RestoreResult {
                database: r.database.clone(),
                row_counts: vec![pb::RowCount {
                    bytes: Default::default(),
                    schema: "public".into(),
                    table: "orders".into(),
                    rows: 42,
                }],
                raw_bytes: 1000,
                data_dir: String::new(),
            }),
            rto_ms,
            checks: vec!["SELECT true".into()],
            dropped: true,
        })
    });
    agent.send(result(&spec.job_id, state, payload)).await;
    agent.expect_ack(&spec.job_id).await;
    r
}

async fn list_drills(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    target: &str,
) -> Vec<pb::Drill> {
    control
        .list_drills(pb::ListDrillsRequest {
            target: target.into(),
            limit: 0,
            after: String::new(),
        })
        .await
        .expect("list drills")
        .into_inner()
        .drills
}

async fn orders_health(c: &Coordinator) -> Value {
    let (_, v) = get_json(c, "/health/backups").await;
    v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"] == "prod/orders")
        .expect("prod/orders")
        .clone()
}

#[tokio::test]
async fn drills_are_recorded_measured_and_alerted() {
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        "[objectives.target.\"prod/orders\"]\nrto = \"1m\"\n\
         [alerts]\nevaluate_interval = \"200ms\"\ndrill_max_age = \"1h\"\n\
         [[operator]]\nname = \"dora\"\nrole = \"viewer\"\nenvironments = [\"dev\"]\n",
    )
    .await;
    let mut control = c.control("olga");
    let mut viewer = c.control("vera");
    let mut agent = c
        .agent(hello("prod-1", "prod", &["orders", "scratch"]))
        .await;

    // Nothing to drill yet, and a viewer may not drill.
    let e = start_drill(&mut control, "prod/orders", "")
        .await
        .expect_err("no backup yet");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("lifeboat backup run prod/orders"),
        "{e:?}"
    );
    let e = start_drill(&mut viewer, "prod/orders", "")
        .await
        .expect_err("a viewer");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    let backup = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &backup.job_id, pb::JobState::Succeeded).await;

    // A drill into another target, slower than the RTO of a minute.
    let job = start_drill(&mut control, "prod/orders", "prod/scratch")
        .await
        .expect("drill");
    assert_eq!(job.kind, i32::from(pb::JobKind::Restore));
    assert_eq!(job.target, "prod/scratch");
    assert_eq!(job.drill_of, "prod/orders");
    assert_eq!(job.backup_id, backup.backup_id);
    assert!(job.database.starts_with("lifeboat_drill_"), "{job:?}");
    assert_eq!(
        list_drills(&mut control, "prod/orders").await[0].outcome,
        "queued"
    );
    let spec = answer_drill(&mut agent, &job, pb::JobState::Succeeded, 90_000).await;
    assert!(spec.drill && !spec.clean, "{spec:?}");
    assert_eq!(spec.target, "scratch");
    assert_eq!(spec.database, job.database);
    let done = wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    assert!(
        done.detail.starts_with("drill passed: RTO 90.000 s"),
        "{done:?}"
    );

    let drills = list_drills(&mut viewer, "prod/orders").await;
    assert_eq!(drills.len(), 1);
    let d = &drills[0];
    assert_eq!(
        (
            d.outcome.as_str(),
            d.rto_ms,
            d.drill_target.as_str(),
            d.backup_id.as_str()
        ),
        (
            "succeeded",
            90_000,
            "prod/scratch",
            backup.backup_id.as_str()
        )
    );
    assert!(d.finished_at_ms > 0);

    let labels = "{environment=\"prod\",target=\"orders\"}";
    assert_eq!(
        sample(&c, &format!("lifeboat_drill_duration_seconds{labels}")).await,
        90
    );
    assert_eq!(
        sample(
            &c,
            "lifeboat_drills_total{environment=\"prod\",outcome=\"succeeded\",target=\"orders\"}"
        )
        .await,
        1
    );
    let (_, text) = c.http_get("/metrics").await;
    assert!(
        text.contains(&format!(
            "lifeboat_drill_last_success_timestamp_seconds{labels} 1"
        )),
        "{text}"
    );
    promtool_check_metrics(&text);
    let h = orders_health(&c).await;
    assert_eq!(h["rto_seconds"], 60, "{h}");
    assert_eq!(h["measured_rto_seconds"], 90.0, "{h}");
    assert_eq!(h["rto_met"], false, "{h}");
    assert_eq!(h["status"], "warning", "{h}");
    assert!(
        h["reasons"]
            .to_string()
            .contains("the last restore drill took 1m 30s"),
        "{h}"
    );
    // The drill's restore is not counted as a restore into prod/scratch.
    let (_, v) = get_json(&c, "/health/backups").await;
    let scratch = v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"] == "prod/scratch")
        .expect("scratch")
        .clone();
    assert!(scratch["last_restore"].is_null(), "{scratch}");
    let cr = &c;
    eventually("the drill_rto_exceeded incident", || async move {
        open_incident_kinds(cr)
            .await
            .contains(&"drill_rto_exceeded".to_owned())
            .then_some(())
    })
    .await;

    // A failed drill: recorded with its reason, counted, and an incident.
    let job = start_drill(&mut control, "prod/orders", "")
        .await
        .expect("drill");
    assert_eq!(job.target, "prod/orders");
    answer_drill(&mut agent, &job, pb::JobState::Failed, 0).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Failed).await;
    let drills = list_drills(&mut control, "prod/orders").await;
    assert_eq!(drills.len(), 2);
    // Paged one at a time: the newest, then the other after it, then nothing more.
    let mut after = String::new();
    let mut paged = Vec::new();
    loop {
        let page = control
            .list_drills(pb::ListDrillsRequest {
                target: String::new(),
                limit: 1,
                after: after.clone(),
            })
            .await
            .expect("a page of drills")
            .into_inner();
        assert_eq!(page.drills.len(), 1, "{page:?}");
        after = page.drills[0].job_id.clone();
        paged.push(after.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(
        paged,
        drills.iter().map(|d| d.job_id.clone()).collect::<Vec<_>>()
    );
    // An operator of dev sees no prod drill, and a prod drill as its cursor is answered as
    // one that does not exist.
    let mut dora = c.control("dora");
    assert!(list_drills(&mut dora, "").await.is_empty());
    let e = dora
        .list_drills(pb::ListDrillsRequest {
            after: paged[0].clone(),
            ..Default::default()
        })
        .await
        .expect_err("another environment's drill as the cursor");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert_eq!(
        (drills[0].outcome.as_str(), drills[0].rto_ms),
        ("failed", 0)
    );
    assert_eq!(drills[0].error, "it broke");
    assert_eq!(
        sample(
            &c,
            "lifeboat_drills_total{environment=\"prod\",outcome=\"failed\",target=\"orders\"}"
        )
        .await,
        1
    );
    eventually("the drill_failed incident", || async move {
        open_incident_kinds(cr)
            .await
            .contains(&"drill_failed".to_owned())
            .then_some(())
    })
    .await;
    let h = orders_health(&c).await;
    assert_eq!(h["last_drill"]["outcome"], "failed", "{h}");
    assert_eq!(h["last_drill_success"]["rto_seconds"], 90.0, "{h}");

    // A fast drill that passes resolves both.
    let job = start_drill(&mut control, "prod/orders", "")
        .await
        .expect("drill");
    answer_drill(&mut agent, &job, pb::JobState::Succeeded, 1_500).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    eventually("drill incidents resolved", || async move {
        let open = open_incident_kinds(cr).await;
        (!open.iter().any(|k| k.starts_with("drill_"))).then_some(())
    })
    .await;
    let h = orders_health(&c).await;
    assert_eq!(h["rto_met"], true, "{h}");
    assert_eq!(h["measured_rto_seconds"], 1.5, "{h}");

    // No drill passed within drill_max_age: overdue.
    tamper(&c, "UPDATE drills SET finished_at_ms = 1000").await;
    eventually("the drill_overdue incident", || async move {
        open_incident_kinds(cr)
            .await
            .contains(&"drill_overdue".to_owned())
            .then_some(())
    })
    .await;
}
