//! Drill schedules: a due drill run queues a restore drill of the target's newest backup into
//! the schedule's drill target, audited with the schedule as the actor, and is skipped while a
//! drill of the target is still queued or running.

use std::time::Duration;

use lifeboat_proto::v1 as pb;
use tonic::Code;

use crate::harness::*;
use crate::schedules::{daily_cron_at, make_backups, rewind_cursor_of};

fn drill_schedule(cron: &str, into: &str) -> pb::SetScheduleRequest {
    pb::SetScheduleRequest {
        target: "prod/orders".into(),
        cron: cron.into(),
        timezone: "UTC".into(),
        kind: pb::ScheduleKind::Drill.into(),
        drill_into: into.into(),
        ..Default::default()
    }
}

async fn drill_runs(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
) -> Vec<pb::ScheduleRun> {
    control
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            kind: pb::ScheduleKind::Drill.into(),
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs
}

#[tokio::test]
async fn a_drill_schedule_queues_drills_and_skips_while_one_is_active() {
    let mut c = Coordinator::start().await;
    let mut olga = c.control("olga");
    let mut agent = c
        .agent(hello("prod-1", "prod", &["orders", "scratch"]))
        .await;
    let ids = make_backups(&mut olga, &mut agent, 2).await;
    let cron = daily_cron_at(Duration::from_secs(600));

    // --into belongs to drill schedules, and names a registered target.
    let bad = olga
        .set_schedule(pb::SetScheduleRequest {
            kind: pb::ScheduleKind::Backup.into(),
            ..drill_schedule(&cron, "prod/scratch")
        })
        .await
        .expect_err("into on a backup schedule");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("drill schedules only"), "{bad:?}");
    let bad = olga
        .set_schedule(drill_schedule(&cron, "prod/nowhere"))
        .await
        .expect_err("unknown drill target");
    assert_eq!(bad.code(), Code::NotFound, "{bad:?}");
    let s = olga
        .set_schedule(drill_schedule(&cron, "prod/scratch"))
        .await
        .expect("set drill schedule")
        .into_inner();
    assert_eq!(
        (s.kind, s.drill_into.as_str()),
        (pb::ScheduleKind::Drill as i32, "prod/scratch")
    );

    // A drill queued by hand while the agent is away is still active when the scheduled run
    // falls due: the run is skipped, naming it.
    drop(agent);
    let manual = olga
        .start_drill(pb::StartDrillRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("manual drill")
        .into_inner();
    c.stop().await.expect("stop");
    rewind_cursor_of(&c, "prod/orders", "drill", Duration::from_secs(3600)).await;
    c.start_again().await;
    let mut olga = c.control("olga");
    let runs = eventually("the skipped drill run", || {
        let mut olga = olga.clone();
        async move {
            let runs = drill_runs(&mut olga).await;
            (!runs.is_empty()).then_some(runs)
        }
    })
    .await;
    assert_eq!(runs[0].outcome, "skipped", "{runs:?}");
    assert!(
        runs[0]
            .reason
            .contains("a drill of prod/orders is already queued or running")
            && runs[0].reason.contains(&manual.job_id),
        "{runs:?}"
    );

    // The manual drill runs; the next due run starts a drill of the newest backup into
    // prod/scratch.
    let mut agent = c
        .agent(hello("prod-1", "prod", &["orders", "scratch"]))
        .await;
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, manual.job_id);
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    // The next occurrence (each occurrence is decided once).
    olga.set_schedule(drill_schedule(
        &daily_cron_at(Duration::from_secs(300)),
        "prod/scratch",
    ))
    .await
    .expect("move the drill schedule");
    c.stop().await.expect("stop");
    drop(agent);
    rewind_cursor_of(&c, "prod/orders", "drill", Duration::from_secs(3600)).await;
    c.start_again().await;
    let mut olga = c.control("olga");
    let mut alice = c.control("alice");
    let mut agent = c
        .agent(hello("prod-1", "prod", &["orders", "scratch"]))
        .await;
    let spec = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Restore(r)) = &spec.spec else {
        panic!("a drill is a restore: {spec:?}");
    };
    assert!(r.drill, "{r:?}");
    assert_eq!(r.target, "scratch");
    assert!(r.database.starts_with("lifeboat_drill_"), "{r:?}");
    assert_eq!(
        r.backup.as_ref().expect("backup").backup_id,
        ids[1],
        "the newest backup"
    );
    let job = job_state(&mut olga, &spec.job_id).await;
    assert_eq!(
        (
            job.requested_by.as_str(),
            job.drill_of.as_str(),
            job.target.as_str()
        ),
        ("scheduler", "prod/orders", "prod/scratch")
    );
    let runs = drill_runs(&mut olga).await;
    assert_eq!(runs[0].outcome, "started", "{runs:?}");
    assert_eq!(runs[0].job_id, spec.job_id);
    let audit = alice
        .list_audit(pb::ListAuditRequest {
            actor: "schedule/drill".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "drill");
    assert_eq!(audit[0].object, "prod/orders -> prod/scratch");
}
