//! Schedules and retention through a real coordinator: restarts while a schedule is due,
//! catch-up modes, prune with pins, the two-phase delete and its resumption.

use std::time::Duration;

use chrono::{Timelike, Utc};
use lifeboat_proto::v1::{self as pb, coordinator_message::Msg};
use tonic::Code;

use crate::harness::*;

/// A daily cron expression (UTC) whose time of day was `ago` ago.
pub(crate) fn daily_cron_at(ago: Duration) -> String {
    let t = Utc::now() - chrono::Duration::from_std(ago).expect("duration");
    format!("{} {} * * *", t.minute(), t.hour())
}

/// Sets a target's backup scheduler cursor by hand, as if the coordinator had last looked at
/// it `ago` ago. The coordinator must be stopped.
async fn rewind_cursor(c: &Coordinator, target: &str, ago: Duration) {
    rewind_cursor_of(c, target, "backup", ago).await;
}

pub(crate) async fn rewind_cursor_of(c: &Coordinator, target: &str, kind: &str, ago: Duration) {
    let url = format!("sqlite://{}", c.dir.path().join("catalog.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open catalog");
    let ms = lifeboat_common::time::now_ms() - i64::try_from(ago.as_millis()).expect("ms");
    let done = sqlx::query("UPDATE schedule_state SET cursor_ms = ? WHERE target = ? AND kind = ?")
        .bind(ms)
        .bind(target)
        .bind(kind)
        .execute(&pool)
        .await
        .expect("rewind");
    assert_eq!(done.rows_affected(), 1);
    pool.close().await;
}

async fn scheduled_jobs(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
) -> Vec<pb::Job> {
    control
        .list_jobs(pb::ListJobsRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs
        .into_iter()
        .filter(|j| j.requested_by == "scheduler")
        .collect()
}

async fn schedule_of(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
) -> pb::Schedule {
    control
        .list_schedules(pb::ListSchedulesRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect("list schedules")
        .into_inner()
        .schedules
        .into_iter()
        .next()
        .expect("a schedule")
}

async fn set_daily(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    cron: &str,
) -> pb::Schedule {
    control
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            jitter_secs: 0,
            kind: pb::ScheduleKind::Backup.into(),
            ..Default::default()
        })
        .await
        .expect("set schedule")
        .into_inner()
}

#[tokio::test]
async fn restart_while_due_runs_exactly_once() {
    let mut c = Coordinator::start().await;
    let mut alice = c.control("alice");
    let agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    // Due ten minutes ago (past the misfire grace); setting it now does not fire for the past.
    let s = set_daily(&mut alice, &daily_cron_at(Duration::from_secs(600))).await;
    assert_eq!(s.source, "target");
    assert!(
        s.next_run_at_ms > lifeboat_common::time::now_ms() + 23 * 3_600_000,
        "{s:?}"
    );
    assert!(scheduled_jobs(&mut alice).await.is_empty());

    // The coordinator was down when it fell due.
    c.stop().await.expect("stop");
    drop(agent);
    rewind_cursor(&c, "prod/orders", Duration::from_secs(3600)).await;
    c.start_again().await;
    let mut alice = c.control("alice");
    let jobs = eventually("the catch-up run", || {
        let mut alice = alice.clone();
        async move {
            let jobs = scheduled_jobs(&mut alice).await;
            (!jobs.is_empty()).then_some(jobs)
        }
    })
    .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let last = schedule_of(&mut alice).await.last_run.expect("last run");
    assert_eq!(last.outcome, "started");
    assert_eq!(last.job_id, jobs[0].job_id);
    assert!(last.reason.contains("catch-up"), "{last:?}");

    // Restart again (the job is still queued: its agent is away): no second run.
    c.restart().await;
    let mut alice = c.control("alice");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, jobs[0].job_id);
    agent.send(accepted(&spec.job_id)).await;
    agent.send(backup_result(&spec, "prod", "prod-1")).await;
    agent.expect_ack(&spec.job_id).await;
    let again = scheduled_jobs(&mut alice).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].state, i32::from(pb::JobState::Succeeded));
    // And no second decision was recorded for the occurrence.
    let runs = alice
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            limit: 0,
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].job_id, jobs[0].job_id);
    assert_eq!(runs[0].target, "prod/orders");
    // Its id is the cursor of the next page, which is empty.
    assert!(runs[0].id > 0, "{runs:?}");
    let next = alice
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            after_id: runs[0].id,
            ..Default::default()
        })
        .await
        .expect("the next page")
        .into_inner();
    assert!(next.runs.is_empty() && !next.more, "{next:?}");
}

#[tokio::test]
async fn catch_up_skip_records_the_missed_run() {
    let mut c = Coordinator::builder()
        .config("[scheduler]\ncatch_up = \"skip\"\n")
        .start()
        .await;
    let mut alice = c.control("alice");
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    set_daily(&mut alice, &daily_cron_at(Duration::from_secs(1800))).await;
    c.stop().await.expect("stop");
    rewind_cursor(&c, "prod/orders", Duration::from_secs(7200)).await;
    c.start_again().await;
    let mut alice = c.control("alice");
    let last = eventually("the skipped run", || {
        let mut alice = alice.clone();
        async move { schedule_of(&mut alice).await.last_run }
    })
    .await;
    assert_eq!(last.outcome, "skipped");
    assert!(last.reason.contains("catch_up = \"skip\""), "{last:?}");
    assert!(scheduled_jobs(&mut alice).await.is_empty());
}

#[tokio::test]
async fn schedule_commands_and_roles() {
    let c = Coordinator::builder()
        .config(
            "[[schedule]]\nenvironment = \"prod\"\ncron = \"0 3 * * *\"\n\
             timezone = \"Europe/Berlin\"\njitter = \"10m\"\n",
        )
        .start()
        .await;
    let mut alice = c.control("alice");
    let mut vera = c.control("vera");
    let _agent = c.agent(hello("prod-1", "prod", &["orders", "users"])).await;

    // The environment default applies to every prod target.
    let all = vera
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .schedules;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter()
            .all(|s| s.source == "environment" && s.jitter_secs == 600)
    );

    let next = vera
        .next_runs(pb::NextRunsRequest {
            target: "prod/orders".into(),
            count: 3,
            ..Default::default()
        })
        .await
        .expect("next")
        .into_inner();
    assert_eq!(next.run_at_ms.len(), 3);
    assert!(
        next.run_at_local.iter().all(|l| l.contains(" 03:")),
        "{next:?}"
    );
    // Next spring's DST change, previewed from a local date in the schedule's time zone: three
    // runs at 03:00 Berlin time, the second only 23 hours after the first.
    let spring = vera
        .next_runs(pb::NextRunsRequest {
            target: "prod/orders".into(),
            count: 3,
            from: "2027-03-27".into(),
            ..Default::default()
        })
        .await
        .expect("next from")
        .into_inner();
    for (local, day) in spring
        .run_at_local
        .iter()
        .zip(["2027-03-27", "2027-03-28", "2027-03-29"])
    {
        assert!(
            local.starts_with(day) && local.contains(" 03:"),
            "{spring:?}"
        );
    }
    let gap = spring.run_at_ms[1] - spring.run_at_ms[0];
    let hour = 3_600_000;
    assert!(
        (23 * hour - 600_000..=23 * hour + 600_000).contains(&gap),
        "{gap} ms: {spring:?}"
    );
    let e = vera
        .next_runs(pb::NextRunsRequest {
            target: "prod/orders".into(),
            count: 3,
            from: "next tuesday".into(),
            ..Default::default()
        })
        .await
        .expect_err("not a date");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("YYYY-MM-DD"), "{e:?}");

    // Viewers may not change schedules; bad input is refused with a hint.
    let e = vera
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron: "30 2 * * *".into(),
            ..Default::default()
        })
        .await
        .expect_err("viewer set a schedule");
    assert_eq!(e.code(), Code::PermissionDenied);
    for (cron, tz, want) in [
        ("30 2 * *", "UTC", "fields"),
        ("30 2 * * *", "Europe/Bxl", "IANA"),
        ("* * * * *", "UTC", "more often"),
    ] {
        let e = alice
            .set_schedule(pb::SetScheduleRequest {
                target: "prod/orders".into(),
                cron: cron.into(),
                timezone: tz.into(),
                ..Default::default()
            })
            .await
            .expect_err(cron);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(want), "{cron}: {e:?}");
    }

    let own = alice
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron: "30 2 * * *".into(),
            timezone: "America/New_York".into(),
            jitter_secs: 0,
            kind: 0,
            ..Default::default()
        })
        .await
        .expect("set")
        .into_inner();
    assert_eq!(
        (own.source.as_str(), own.timezone.as_str()),
        ("target", "America/New_York")
    );

    let paused = alice
        .pause_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("pause")
        .into_inner();
    assert!(paused.paused);
    assert_eq!(paused.next_run_at_ms, 0);
    let resumed = alice
        .resume_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    assert!(!resumed.paused && resumed.next_run_at_ms > 0);

    // Deleting the target's own schedule brings the environment default back.
    let deleted = alice
        .delete_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.effective.expect("default").source, "environment");
    let e = alice
        .delete_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect_err("deleted twice");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("environment's default"), "{e:?}");
}

/// Runs `n` backups of prod/orders through the fake agent; returns their ids, oldest first.
pub(crate) async fn make_backups(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    agent: &mut FakeAgent,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let job = start_backup(control, "prod/orders").await;
        let spec = agent.run_backup("prod", "prod-1").await;
        assert_eq!(spec.job_id, job.job_id);
        ids.push(job.backup_id);
    }
    ids
}

#[tokio::test]
async fn prune_deletes_in_two_phases_and_keeps_pins() {
    let mut c = Coordinator::builder()
        .config(
            "[[retention]]\nenvironment = \"prod\"\nkeep_last = 1\n\
             [prune]\nafter_backup = false\ncron = \"\"\n",
        )
        .start()
        .await;
    let mut alice = c.control("alice");
    let mut olga = c.control("olga");
    let mut vera = c.control("vera");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let ids = make_backups(&mut olga, &mut agent, 4).await;

    olga.pin_backup(pb::PinBackupRequest {
        backup_id: ids[0].clone(),
        reason: "quarter-end audit".into(),
    })
    .await
    .expect("pin");
    // The pin goes to the agent too, as a marker beside the backup's manifest (so a catalog
    // rebuild finds it again), carrying the pin as the catalog holds it.
    let marker = agent.expect_start().await;
    assert_eq!(marker.kind, i32::from(pb::JobKind::Pin));
    let Some(pb::job_spec::Spec::Pin(p)) = &marker.spec else {
        panic!("expected a pin marker job: {marker:?}")
    };
    assert_eq!(p.backup.as_ref().expect("record").backup_id, ids[0]);
    let pin = p.pin.as_ref().expect("the pin");
    assert_eq!(
        (pin.pinned_by.as_str(), pin.reason.as_str()),
        ("olga", "quarter-end audit")
    );
    agent.send(accepted(&marker.job_id)).await;
    agent
        .send(result(&marker.job_id, pb::JobState::Succeeded, None))
        .await;
    agent.expect_ack(&marker.job_id).await;
    let e = olga
        .pin_backup(pb::PinBackupRequest {
            backup_id: ids[1].clone(),
            reason: " ".into(),
        })
        .await
        .expect_err("pin without reason");
    assert_eq!(e.code(), Code::InvalidArgument);

    // A dry run is for everyone and changes nothing.
    let plan = vera
        .prune(pb::PruneRequest {
            target: "prod/orders".into(),
            dry_run: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    let action = |r: &pb::PruneResponse, id: &str| {
        let d = r
            .decisions
            .iter()
            .find(|d| d.backup_id == id)
            .expect("decision");
        (
            pb::PruneAction::try_from(d.action).expect("action"),
            d.reasons.join(","),
        )
    };
    assert_eq!(
        action(&plan, &ids[0]),
        (pb::PruneAction::Keep, "pinned".into())
    );
    assert_eq!(
        action(&plan, &ids[1]),
        (pb::PruneAction::Delete, "expired".into())
    );
    assert_eq!(
        action(&plan, &ids[2]),
        (pb::PruneAction::Delete, "expired".into())
    );
    assert_eq!(
        action(&plan, &ids[3]),
        (pb::PruneAction::Keep, "newest,last".into())
    );
    assert_eq!(count_backups(&mut vera).await, 4);

    // Deleting needs the admin role.
    for who in [&mut vera, &mut olga] {
        let e = who
            .prune(pb::PruneRequest {
                target: String::new(),
                dry_run: false,
            })
            .await
            .expect_err("non-admin pruned");
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    let e = olga
        .unpin_backup(pb::UnpinBackupRequest {
            backup_id: ids[0].clone(),
        })
        .await
        .expect_err("operator unpinned");
    assert_eq!(e.code(), Code::PermissionDenied);

    // A verify of ids[1] is running: its delete waits for it.
    let verify = olga
        .verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
            backup_id: ids[1].clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    let vspec = agent.accept_next(&mut olga, &verify.job_id).await;

    let done = alice
        .prune(pb::PruneRequest {
            target: String::new(),
            dry_run: false,
        })
        .await
        .expect("prune")
        .into_inner();
    let job_of = |id: &str| {
        done.decisions
            .iter()
            .find(|d| d.backup_id == id)
            .map(|d| d.job_id.clone())
            .unwrap_or_default()
    };
    assert!(
        !job_of(&ids[1]).is_empty() && !job_of(&ids[2]).is_empty(),
        "{done:?}"
    );
    assert!(job_of(&ids[0]).is_empty() && job_of(&ids[3]).is_empty());

    // Marked: shown as deleting, and no new restore or verify may start.
    let b2 = alice
        .get_backup(pb::GetBackupRequest {
            backup_id: ids[2].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(b2.deleting);
    let e = olga
        .restore(pb::RestoreRequest {
            backup_id: ids[2].clone(),
            ..Default::default()
        })
        .await
        .expect_err("restore of a deleting backup");
    assert_eq!(e.code(), Code::FailedPrecondition);
    let b0 = vera
        .get_backup(pb::GetBackupRequest {
            backup_id: ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let pin = b0.pin.expect("pinned");
    assert_eq!(
        (pin.pinned_by.as_str(), pin.reason.as_str()),
        ("olga", "quarter-end audit")
    );

    // Only the delete of ids[2] is handed out while the verify of ids[1] runs.
    let first = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Delete(d)) = &first.spec else {
        panic!("expected a delete: {first:?}")
    };
    assert_eq!(d.backup.as_ref().expect("record").backup_id, ids[2]);
    assert_eq!(first.kind, i32::from(pb::JobKind::Delete));

    // The agent fails it (e.g. storage down): the backup stays, still marked.
    agent
        .send(result(&first.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&first.job_id).await;
    assert_eq!(count_backups(&mut vera).await, 4);

    // The verify ends; now the delete of ids[1] goes out, and succeeds.
    agent
        .send(result(
            &vspec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Verify(pb::VerifyResult {
                status: pb::VerifyStatus::Ok.into(),
                ..Default::default()
            })),
        ))
        .await;
    // The ack and the next job may come in either order.
    let mut second = None;
    let mut acked = false;
    while second.is_none() || !acked {
        match agent.recv().await {
            Ok(Msg::ResultAck(a)) if a.job_id == vspec.job_id => acked = true,
            Ok(Msg::StartJob(spec)) if second.is_none() => second = Some(spec),
            other => panic!("unexpected {other:?}"),
        }
    }
    let second = second.expect("second delete");
    let Some(pb::job_spec::Spec::Delete(d)) = &second.spec else {
        panic!("expected a delete: {second:?}")
    };
    assert_eq!(d.backup.as_ref().expect("record").backup_id, ids[1]);
    agent.send(accepted(&second.job_id)).await;
    agent
        .send(result(
            &second.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Delete(pb::DeleteResult {
                existed: true,
                deleted_bytes: 512,
            })),
        ))
        .await;
    agent.expect_ack(&second.job_id).await;
    assert_eq!(count_backups(&mut vera).await, 3);

    // A restart resumes the marked delete whose job failed.
    c.restart().await;
    let mut vera = c.control("vera");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let resumed = agent.expect_start().await;
    let Some(pb::job_spec::Spec::Delete(d)) = &resumed.spec else {
        panic!("expected the resumed delete: {resumed:?}")
    };
    assert_eq!(d.backup.as_ref().expect("record").backup_id, ids[2]);
    assert_ne!(resumed.job_id, first.job_id);
    agent.send(accepted(&resumed.job_id)).await;
    agent
        .send(result(
            &resumed.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Delete(pb::DeleteResult {
                existed: false,
                deleted_bytes: 0,
            })),
        ))
        .await;
    agent.expect_ack(&resumed.job_id).await;
    let left: Vec<String> = vera
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .backups
        .into_iter()
        .map(|b| b.backup_id)
        .collect();
    assert_eq!(left, [ids[3].clone(), ids[0].clone()]);

    // Nothing left to delete; the pinned one stays.
    let again = c
        .control("alice")
        .prune(pb::PruneRequest::default())
        .await
        .expect("prune again")
        .into_inner();
    assert!(
        again
            .decisions
            .iter()
            .all(|d| d.action == i32::from(pb::PruneAction::Keep))
    );
}

#[tokio::test]
async fn scheduled_run_with_the_agent_offline_fails_as_agent_offline() {
    let mut c = Coordinator::builder().queue_timeout_secs(1).start().await;
    let mut alice = c.control("alice");
    let agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    set_daily(&mut alice, &daily_cron_at(Duration::from_secs(60))).await;
    agent.disconnect();
    c.stop().await.expect("stop");
    rewind_cursor(&c, "prod/orders", Duration::from_secs(600)).await;
    c.start_again().await;
    let mut alice = c.control("alice");
    let job = eventually("the scheduled job to fail", || {
        let mut alice = alice.clone();
        async move {
            scheduled_jobs(&mut alice)
                .await
                .into_iter()
                .find(|j| j.state == i32::from(pb::JobState::Failed))
        }
    })
    .await;
    assert!(job.error.starts_with("agent offline"), "{job:?}");
    assert_eq!(scheduled_jobs(&mut alice).await.len(), 1);
}

#[tokio::test]
async fn a_verify_schedule_queues_verify_jobs_beside_the_backup_schedule() {
    let mut c = Coordinator::start().await;
    let mut alice = c.control("alice");
    let mut olga = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let ids = make_backups(&mut olga, &mut agent, 3).await;
    // A backup schedule and a verify schedule: one of each kind on one target.
    set_daily(&mut alice, &daily_cron_at(Duration::from_secs(7200))).await;
    let cron = daily_cron_at(Duration::from_secs(600));
    let bad = alice
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron: cron.clone(),
            kind: pb::ScheduleKind::Backup.into(),
            cover_secs: 86_400,
            ..Default::default()
        })
        .await
        .expect_err("cover on a backup schedule");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("verify schedules only"), "{bad:?}");
    let v = alice
        .set_schedule(pb::SetScheduleRequest {
            target: "prod/orders".into(),
            cron,
            timezone: "UTC".into(),
            kind: pb::ScheduleKind::Verify.into(),
            cover_secs: 3600,
            ..Default::default()
        })
        .await
        .expect("set verify schedule")
        .into_inner();
    assert_eq!(
        (v.kind, v.cover_secs),
        (pb::ScheduleKind::Verify as i32, 3600)
    );
    let all = alice
        .list_schedules(pb::ListSchedulesRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .schedules;
    assert_eq!(all.len(), 2, "{all:?}");

    // The verify run fell due while the coordinator was down: it verifies every backup (each
    // would go unchecked for longer than the hour's coverage before the next run).
    c.stop().await.expect("stop");
    drop(agent);
    rewind_cursor_of(&c, "prod/orders", "verify", Duration::from_secs(3600)).await;
    c.start_again().await;
    let mut alice = c.control("alice");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut verified = Vec::new();
    for _ in 0..ids.len() {
        let spec = agent.expect_start().await;
        assert_eq!(spec.kind, i32::from(pb::JobKind::Verify), "{spec:?}");
        let Some(pb::job_spec::Spec::Verify(v)) = &spec.spec else {
            panic!("not a verify spec: {spec:?}")
        };
        verified.push(v.backup.as_ref().expect("record").backup_id.clone());
        let ok = pb::VerifyResult {
            status: pb::VerifyStatus::Ok.into(),
            ..Default::default()
        };
        agent
            .succeed(&spec, Some(pb::job_result::Result::Verify(ok)))
            .await;
    }
    verified.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(verified, want);
    let runs = alice
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            kind: pb::ScheduleKind::Verify.into(),
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, "started");
    assert!(runs[0].reason.contains("verifying 3 backups"), "{runs:?}");
    assert_eq!(runs[0].kind, pb::ScheduleKind::Verify as i32);
    // The backup schedule was not touched by the verify run.
    let backup_runs = alice
        .list_schedule_runs(pb::ListScheduleRunsRequest {
            target: "prod/orders".into(),
            kind: pb::ScheduleKind::Backup.into(),
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    assert!(backup_runs.is_empty(), "{backup_runs:?}");
    // Pausing and deleting name the kind; the backup schedule stays.
    let paused = alice
        .pause_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            kind: pb::ScheduleKind::Verify.into(),
        })
        .await
        .expect("pause verify")
        .into_inner();
    assert!(paused.paused && paused.kind == pb::ScheduleKind::Verify as i32);
    alice
        .delete_schedule(pb::ScheduleTargetRequest {
            target: "prod/orders".into(),
            kind: pb::ScheduleKind::Verify.into(),
        })
        .await
        .expect("delete verify");
    let left = alice
        .list_schedules(pb::ListSchedulesRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .schedules;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].kind, pb::ScheduleKind::Backup as i32);
    assert!(!left[0].paused);
}
