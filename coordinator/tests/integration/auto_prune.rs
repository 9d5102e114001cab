//! Retention the coordinator applies itself (`[prune]`): after each successful backup, and on
//! its schedule, deleting exactly what `lifeboat prune --dry-run` showed, audited with the
//! schedule as the actor.

use std::{collections::BTreeSet, time::Duration};

use chrono::{Timelike, Utc};
use lifeboat_proto::v1 as pb;

use crate::harness::*;

/// Runs the next `n` jobs the agent is sent, which must all be deletes (several may be handed
/// out before the first result is acknowledged); returns their backup ids.
async fn run_deletes(agent: &mut FakeAgent, n: usize) -> BTreeSet<String> {
    use lifeboat_proto::v1::coordinator_message::Msg;
    let mut ids = BTreeSet::new();
    let mut acked = 0;
    while ids.len() < n || acked < n {
        match agent.recv().await {
            Ok(Msg::StartJob(spec)) => {
                assert_eq!(spec.kind, i32::from(pb::JobKind::Delete), "{spec:?}");
                let Some(pb::job_spec::Spec::Delete(d)) = &spec.spec else {
                    panic!("not a delete spec: {spec:?}")
                };
                ids.insert(d.backup.as_ref().expect("record").backup_id.clone());
                agent.send(accepted(&spec.job_id)).await;
                agent
                    .send(result(&spec.job_id, pb::JobState::Succeeded, deleted()))
                    .await;
            }
            Ok(Msg::ResultAck(_)) => acked += 1,
            other => panic!("expected delete jobs, got {other:?}"),
        }
    }
    assert_eq!(ids.len(), n, "{ids:?}");
    ids
}

async fn audit_of(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    actor: &str,
) -> Vec<pb::AuditEntry> {
    control
        .list_audit(pb::ListAuditRequest {
            actor: actor.into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries
}

async fn backup_ids(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
) -> BTreeSet<String> {
    control
        .list_backups(pb::ListBackupsRequest {
            target: "prod/orders".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .backups
        .into_iter()
        .map(|b| b.backup_id)
        .collect()
}

#[tokio::test]
async fn after_each_backup_the_policy_is_applied_to_its_target() {
    let c = Coordinator::builder()
        .config(
            "[[retention]]\nenvironment = \"prod\"\nkeep_last = 2\n\
             [prune]\ncron = \"\"\n",
        )
        .start()
        .await;
    let mut olga = c.control("olga");
    let mut alice = c.control("alice");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let job = start_backup(&mut olga, "prod/orders").await;
        let spec = agent.run_backup("prod", "prod-1").await;
        assert_eq!(spec.job_id, job.job_id);
        ids.push(job.backup_id);
        // From the third backup on, the oldest falls out of keep_last = 2, right after the
        // backup that pushed it out.
        if n >= 2 {
            let deleted = run_deletes(&mut agent, 1).await;
            assert_eq!(deleted, [ids[n - 2].clone()].into_iter().collect());
        }
    }
    let left = eventually("the deletes recorded", || {
        let mut olga = olga.clone();
        async move {
            let left = backup_ids(&mut olga).await;
            (left.len() == 2).then_some(left)
        }
    })
    .await;
    assert_eq!(left, ids[2..].iter().cloned().collect());
    let audit = audit_of(&mut alice, "schedule/prune-after-backup").await;
    let objects: BTreeSet<&str> = audit.iter().map(|a| a.object.as_str()).collect();
    assert_eq!(
        objects,
        [ids[0].as_str(), ids[1].as_str()].into_iter().collect()
    );
    assert!(
        audit
            .iter()
            .all(|a| a.action == "prune" && a.outcome == "ok" && a.reason.contains("expired")),
        "{audit:?}"
    );
}

/// A daily cron expression (UTC) for the next whole minute at least `lead` away.
fn daily_cron_in(lead: Duration) -> (String, chrono::DateTime<Utc>) {
    let soon = Utc::now() + chrono::Duration::from_std(lead).expect("lead");
    let at = soon
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole minute")
        + chrono::Duration::minutes(1);
    (format!("{} {} * * *", at.minute(), at.hour()), at)
}

#[tokio::test]
async fn the_scheduled_run_deletes_exactly_the_dry_run_plan() {
    let (cron, at) = daily_cron_in(Duration::from_secs(45));
    let c = Coordinator::builder()
        .config(&format!(
            "[[retention]]\nenvironment = \"prod\"\nkeep_last = 2\n\
             [prune]\nafter_backup = false\ncron = \"{cron}\"\n"
        ))
        .start()
        .await;
    let mut olga = c.control("olga");
    let mut alice = c.control("alice");
    let mut vera = c.control("vera");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let job = start_backup(&mut olga, "prod/orders").await;
        agent.run_backup("prod", "prod-1").await;
        ids.push(job.backup_id);
    }
    agent.pin(&mut olga, &ids[1], "kept for the audit").await;
    // No backup is deleted after a backup: after_backup = false.
    assert_eq!(backup_ids(&mut vera).await.len(), 5);

    let plan = vera
        .prune(pb::PruneRequest {
            target: "prod/orders".into(),
            dry_run: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    let planned: BTreeSet<String> = plan
        .decisions
        .iter()
        .filter(|d| d.action == pb::PruneAction::Delete as i32)
        .map(|d| d.backup_id.clone())
        .collect();
    assert_eq!(
        planned,
        [ids[0].clone(), ids[2].clone()].into_iter().collect(),
        "{plan:?}"
    );
    assert!(
        Utc::now() < at,
        "the backups took too long: the scheduled run at {at} may already have started"
    );

    // The scheduled run, at the next whole minute (the agent waits for each message for a
    // bounded time: sleep until just before then).
    while (at - Utc::now()).num_seconds() > 2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        agent.send(heartbeat()).await;
    }
    let deleted = run_deletes(&mut agent, planned.len()).await;
    assert_eq!(deleted, planned);
    assert!(Utc::now() >= at, "deleted before the scheduled time {at}");
    let audit = audit_of(&mut alice, "schedule/prune").await;
    let objects: BTreeSet<String> = audit.iter().map(|a| a.object.clone()).collect();
    assert_eq!(objects, planned, "{audit:?}");
    let left = eventually("the deletes recorded", || {
        let mut vera = vera.clone();
        async move {
            let left = backup_ids(&mut vera).await;
            (left.len() == 3).then_some(left)
        }
    })
    .await;
    assert_eq!(
        left,
        [ids[1].clone(), ids[3].clone(), ids[4].clone()]
            .into_iter()
            .collect()
    );
}

#[tokio::test]
async fn a_bad_prune_section_is_refused_with_its_key() {
    for (toml, want) in [
        ("[prune]\ncron = \"* * * * *\"\n", "prune.cron"),
        ("[prune]\ntimezone = \"Mars/Olympus\"\n", "prune.timezone"),
        ("[prune]\nevery = \"1d\"\n", "every"),
    ] {
        let file = std::path::Path::new("/etc/lifeboat/coordinator.toml");
        let text = format!(
            "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n\
             [catalog]\nurl = \"sqlite://catalog.db\"\n{toml}"
        );
        let e = lifeboat_coordinator::config::parse(file, &text).expect_err(toml);
        let e = format!("{e:#}");
        assert!(e.contains(want), "{toml}: {e}");
    }
}
