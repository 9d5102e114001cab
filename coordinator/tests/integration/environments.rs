//! Environments and who may act in them (review M6, M12, L9): closed agent admission by
//! default, target conflicts that refuse one target and not the session, `targets release`,
//! and operator roles scoped per environment.

use lifeboat_proto::v1::{self as pb, control_client::ControlClient};
use tonic::{Code, transport::Channel};

use crate::harness::*;

/// Item 10 (M6): without an `[[agent]]` table the coordinator refuses to start, naming the
/// key that opens it; with `allow_any_agent = true` it starts.
#[tokio::test]
async fn m6_no_agent_table_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("coordinator.toml");
    let text = "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
                [tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n\
                [catalog]\nurl = \"sqlite://catalog.db\"\n\
                [[operator]]\nname = \"alice\"\nrole = \"admin\"\n";
    std::fs::write(&path, text).expect("write config");
    let e = format!(
        "{:#}",
        lifeboat_coordinator::load_config(&path).expect_err("open environments accepted")
    );
    assert!(
        e.contains("[[agent]]") && e.contains("allow_any_agent = true"),
        "{e}"
    );

    // The harness's coordinators without agents say allow_any_agent = true, and start.
    let c = Coordinator::start().await;
    let config = std::fs::read_to_string(&c.config_path).expect("read config");
    assert!(config.starts_with("allow_any_agent = true\n"), "{config}");
    c.assert_healthy().await;
}

async fn owners(control: &mut ControlClient<Channel>) -> Vec<(String, String)> {
    control
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("list targets")
        .into_inner()
        .targets
        .into_iter()
        .map(|t| (t.name, t.agent))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Item 10 (M6): a squatted target refuses that target only (the agent's other targets
/// register, Welcome says which one was refused), and an admin's `targets release` hands the
/// squatted name to the waiting agent on its open session.
#[tokio::test]
async fn m6_a_conflict_refuses_the_target_not_the_session_and_release_frees_it() {
    let c = Coordinator::start().await;
    let mut admin = c.control("alice");
    // A dev agent claims prod/orders first.
    let squatter = c.agent(hello("dev-1", "prod", &["orders"])).await;

    // The real prod agent is admitted; orders is refused, billing registered.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(msg(pb::agent_message::Msg::Hello(hello(
        "prod-1",
        "prod",
        &["orders", "billing"],
    ))))
    .await
    .expect("queue hello");
    let mut inbound = within(
        "session",
        c.gateway("prod-1")
            .session(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("a conflict refused the whole session")
    .into_inner();
    let welcome = match within("welcome", inbound.message()).await {
        Ok(Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(w)),
        })) => w,
        other => panic!("expected Welcome, got {other:?}"),
    };
    assert_eq!(welcome.refused_targets.len(), 1, "{welcome:?}");
    assert_eq!(welcome.refused_targets[0].name, "orders");
    assert!(
        welcome.refused_targets[0].reason.contains("dev-1")
            && welcome.refused_targets[0]
                .reason
                .contains("lifeboat targets release prod/orders"),
        "{welcome:?}"
    );
    assert_eq!(
        owners(&mut admin).await,
        pairs(&[("prod/billing", "prod-1"), ("prod/orders", "dev-1")])
    );
    // Billing is backed up by the real agent on this session.
    let job = start_backup(&mut admin, "prod/billing").await;
    let spec = match within("start job", inbound.message()).await {
        Ok(Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::StartJob(s)),
        })) => s,
        other => panic!("expected StartJob, got {other:?}"),
    };
    assert_eq!(spec.job_id, job.job_id);

    // Release is admin-only, and audited.
    let e = c
        .control("olga")
        .release_target(pb::ReleaseTargetRequest {
            target: "prod/orders".into(),
            to_agent: String::new(),
        })
        .await
        .expect_err("operator released a target");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role admin"), "{e:?}");
    let released = admin
        .release_target(pb::ReleaseTargetRequest {
            target: "prod/orders".into(),
            to_agent: String::new(),
        })
        .await
        .expect("release")
        .into_inner();
    assert_eq!(
        (released.agent.as_str(), released.agent_connected),
        ("prod-1", true)
    );
    assert_eq!(
        owners(&mut admin).await,
        pairs(&[("prod/billing", "prod-1"), ("prod/orders", "prod-1")])
    );
    let audit = admin
        .list_audit(pb::ListAuditRequest {
            action: "release_target".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let seen: Vec<_> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.object.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("operator/alice", "prod/orders", "ok"),
            ("operator/olga", "prod/orders", "denied")
        ]
    );

    // A backup of orders now goes to the real agent, on the same session (no reconnect).
    // The squatter's session is idle: nothing was handed to it.
    let job = start_backup(&mut admin, "prod/orders").await;
    let spec = loop {
        match within("start job", inbound.message()).await {
            Ok(Some(pb::CoordinatorMessage {
                msg: Some(pb::coordinator_message::Msg::StartJob(s)),
            })) if s.job_id == job.job_id => break s,
            Ok(Some(_)) => continue,
            other => panic!("expected StartJob of {}, got {other:?}", job.job_id),
        }
    };
    assert_eq!(spec.job_id, job.job_id);
    drop(squatter);

    // Nothing left to release: a clear refusal.
    let e = admin
        .release_target(pb::ReleaseTargetRequest {
            target: "prod/orders".into(),
            to_agent: String::new(),
        })
        .await
        .expect_err("released with nobody waiting");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("no connected agent waits"), "{e:?}");
    drop(tx);
}

/// A coordinator with a prod and a dev agent, a recorded backup of prod/x, and operator
/// `dana` whose role applies in dev only.
async fn two_environments() -> (Coordinator, FakeAgent, FakeAgent, String) {
    let c = Coordinator::builder()
        .config(
            "[[operator]]\nname = \"dana\"\nrole = \"admin\"\nenvironments = [\"dev\"]\n\
             [[operator]]\nname = \"dave\"\nrole = \"viewer\"\nenvironments = [\"dev\"]\n",
        )
        .start()
        .await;
    let mut prod = c.agent(hello("prod-1", "prod", &["x"])).await;
    let dev = c.agent(hello("dev-1", "dev", &["y"])).await;
    let mut admin = c.control("alice");
    start_backup(&mut admin, "prod/x").await;
    let spec = prod.run_backup("prod", "prod-1").await;
    let Some(pb::job_spec::Spec::Backup(b)) = spec.spec else {
        panic!("not a backup: {spec:?}")
    };
    (c, prod, dev, b.backup_id)
}

/// Item 11 (M12): an operator scoped to dev may not restore a prod backup into dev (reading
/// it needs prod), may not back up prod, and does not see prod in any list; an unscoped
/// operator may.
#[tokio::test]
async fn m12_a_dev_scoped_operator_cannot_touch_prod() {
    let (c, _prod, _dev, backup_id) = two_environments().await;
    let mut dana = c.control("dana");
    let me = dana
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.environments, vec!["dev".to_owned()]);

    let denied = |e: tonic::Status, env: &str| {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("operator dana")
                && e.message().contains(&format!("environment {env}"))
                && e.message().contains("ask an administrator"),
            "{e:?}"
        );
        assert!(!e.message().contains("coordinator.toml"), "{e:?}");
    };
    let restore = |to: &str| pb::RestoreRequest {
        backup_id: backup_id.clone(),
        to_target: to.into(),
        database: "copy".into(),
        ..Default::default()
    };
    denied(
        dana.restore(restore("dev/y"))
            .await
            .expect_err("prod → dev"),
        "prod",
    );
    denied(
        dana.plan_restore(restore("dev/y"))
            .await
            .expect_err("plan prod → dev"),
        "prod",
    );
    denied(
        dana.start_backup(pb::StartBackupRequest {
            target: "prod/x".into(),
        })
        .await
        .expect_err("backup of prod"),
        "prod",
    );
    denied(
        dana.check_target(pb::CheckTargetRequest {
            target: "prod/x".into(),
        })
        .await
        .expect_err("check of prod"),
        "prod",
    );
    denied(
        dana.get_backup(pb::GetBackupRequest {
            backup_id: backup_id.clone(),
        })
        .await
        .expect_err("prod backup shown"),
        "prod",
    );
    denied(
        dana.verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
            backup_id: backup_id.clone(),
        })
        .await
        .expect_err("verify of prod"),
        "prod",
    );
    denied(
        dana.pin_backup(pb::PinBackupRequest {
            backup_id: backup_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("pin of prod"),
        "prod",
    );
    denied(
        dana.list_backups(pb::ListBackupsRequest {
            target: "prod/x".into(),
            limit: 0,
            after: String::new(),
        })
        .await
        .expect_err("prod backups listed"),
        "prod",
    );
    let e = dana
        .rebuild_catalog(pb::RebuildCatalogRequest {
            dry_run: true,
            ..Default::default()
        })
        .await
        .expect_err("scoped rebuild");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let jobs = c
        .control("alice")
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("jobs")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1, "a refused call created work: {jobs:?}");
    let prod_job = jobs[0].job_id.clone();
    denied(
        dana.get_job(pb::GetJobRequest {
            job_id: prod_job.clone(),
        })
        .await
        .expect_err("prod job shown"),
        "prod",
    );
    denied(
        dana.cancel_job(pb::CancelJobRequest { job_id: prod_job })
            .await
            .expect_err("prod job cancelled"),
        "prod",
    );

    // Lists show dev only.
    let dave = c.control("dave");
    for mut who in [dana.clone(), dave] {
        assert_eq!(owners(&mut who).await, pairs(&[("dev/y", "dev-1")]));
        let agents: Vec<String> = who
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .expect("agents")
            .into_inner()
            .agents
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(agents, vec!["dev-1".to_owned()]);
        assert_eq!(count_backups(&mut who).await, 0);
        let jobs = who
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .expect("jobs")
            .into_inner()
            .jobs;
        assert!(jobs.is_empty(), "{jobs:?}");
    }
    // In dev, dana's role applies.
    start_backup(&mut dana, "dev/y").await;

    // The refusals are in the audit trail.
    let audit = c
        .control("alice")
        .list_audit(pb::ListAuditRequest {
            actor: "dana".into(),
            action: "restore".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].reason.contains("environment prod"), "{audit:?}");

    // Dana's own audit view has her entries and dev's, not alice's backup of prod/x.
    let seen = dana
        .list_audit(pb::ListAuditRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .entries;
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|e| e.actor == "operator/dana" || e.object.starts_with("dev/")),
        "{seen:?}"
    );

    // An unscoped operator may restore prod into dev, and sees prod.
    let mut olga = c.control("olga");
    let job = olga
        .restore(restore("dev/y"))
        .await
        .expect("unscoped restore")
        .into_inner();
    assert_eq!(job.target, "dev/y");
    assert_eq!(
        owners(&mut olga).await,
        pairs(&[("dev/y", "dev-1"), ("prod/x", "prod-1")])
    );
    assert_eq!(count_backups(&mut olga).await, 1);
}

/// `backup list` pages by the last id shown, also for an operator who sees one environment of
/// several: dev backups interleaved with prod ones come one page at a time, `more` says when
/// more follow, nothing is repeated or skipped, and a prod id as the cursor is refused.
#[tokio::test]
async fn a_scoped_operator_pages_through_only_its_environment() {
    let (c, mut prod, mut dev, prod_backup) = two_environments().await;
    let mut admin = c.control("alice");
    let mut dev_ids = Vec::new();
    for _ in 0..3 {
        start_backup(&mut admin, "dev/y").await;
        let spec = dev.run_backup("dev", "dev-1").await;
        let Some(pb::job_spec::Spec::Backup(b)) = spec.spec else {
            panic!("not a backup: {spec:?}")
        };
        dev_ids.push(b.backup_id);
        start_backup(&mut admin, "prod/x").await;
        prod.run_backup("prod", "prod-1").await;
    }
    // The order to expect: the whole list's (newest first, ties by id), dev's only.
    let whole: Vec<String> = admin
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("whole list")
        .into_inner()
        .backups
        .into_iter()
        .filter(|b| b.target == "dev/y")
        .map(|b| b.backup_id)
        .collect();
    let mut sorted = whole.clone();
    sorted.sort();
    dev_ids.sort();
    assert_eq!(sorted, dev_ids);
    let dev_ids = whole;
    let mut dana = c.control("dana");
    let (mut seen, mut after) = (Vec::new(), String::new());
    loop {
        let page = dana
            .list_backups(pb::ListBackupsRequest {
                limit: 1,
                after: after.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.backups.len() <= 1);
        let Some(b) = page.backups.last() else {
            assert!(!page.more, "an empty page with more");
            break;
        };
        assert_eq!(b.target, "dev/y", "{b:?}");
        seen.push(b.backup_id.clone());
        after = b.backup_id.clone();
        assert_eq!(page.more, seen.len() < dev_ids.len(), "after {seen:?}");
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, dev_ids);
    let e = dana
        .list_backups(pb::ListBackupsRequest {
            after: prod_backup,
            ..Default::default()
        })
        .await
        .expect_err("a prod cursor");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // The unscoped admin pages through all seven the same way.
    let all = admin
        .list_backups(pb::ListBackupsRequest {
            limit: 4,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    assert!(all.more);
    let rest = admin
        .list_backups(pb::ListBackupsRequest {
            limit: 4,
            after: all.backups[3].backup_id.clone(),
            ..Default::default()
        })
        .await
        .expect("second page")
        .into_inner();
    assert!(!rest.more);
    assert_eq!(all.backups.len() + rest.backups.len(), 7);
}

#[tokio::test]
async fn a_scoped_operator_pages_through_only_its_environments_audit() {
    let (c, _prod, _dev, _) = two_environments().await;
    let mut admin = c.control("alice");
    // Each attempt is audited: the first of each target queued, the others refused while it
    // is (one active backup per target).
    for _ in 0..3 {
        for target in ["dev/y", "prod/x"] {
            let _ = admin
                .start_backup(pb::StartBackupRequest {
                    target: target.into(),
                })
                .await;
        }
    }
    let list = |client: &mut ControlClient<Channel>, limit: u32, after_id: i64| {
        let mut client = client.clone();
        async move {
            client
                .list_audit(pb::ListAuditRequest {
                    action: "start_backup".into(),
                    limit,
                    after_id,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let whole = list(&mut admin, 100, 0).await.expect("whole trail");
    assert!(!whole.more);
    let dev_ids: Vec<i64> = whole
        .entries
        .iter()
        .filter(|e| e.object.ends_with("dev/y"))
        .map(|e| e.id)
        .collect();
    assert_eq!(dev_ids.len(), 3, "{whole:?}");
    let mut dana = c.control("dana");
    let (mut seen, mut after) = (Vec::new(), 0);
    loop {
        let page = list(&mut dana, 1, after).await.expect("page");
        let Some(e) = page.entries.last() else {
            assert!(!page.more, "an empty page with more");
            break;
        };
        assert!(e.object.ends_with("dev/y"), "{e:?}");
        seen.push(e.id);
        after = e.id;
        assert_eq!(page.more, seen.len() < dev_ids.len(), "after {seen:?}");
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, dev_ids);
    let e = list(&mut admin, 10, 9_999_999)
        .await
        .expect_err("an unknown cursor");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = list(&mut admin, 10, -4)
        .await
        .expect_err("a negative cursor");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

/// `agents list` and `targets list` page in name order: a scoped operator pages one at a
/// time through its environment's only; the admin through all; a malformed cursor is refused.
#[tokio::test]
async fn agents_and_targets_page_by_name_within_the_operators_environments() {
    let (c, _prod, _dev, _) = two_environments().await;
    let _dev2 = c.agent(hello("dev-2", "dev", &["a", "z"])).await;
    let _prod2 = c.agent(hello("prod-2", "prod", &["b"])).await;
    for (who, agents, targets) in [
        (
            "dana",
            vec!["dev-1", "dev-2"],
            vec!["dev/a", "dev/y", "dev/z"],
        ),
        (
            "alice",
            vec!["dev-1", "dev-2", "prod-1", "prod-2"],
            vec!["dev/a", "dev/y", "dev/z", "prod/b", "prod/x"],
        ),
    ] {
        let mut control = c.control(who);
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let page = control
                .list_agents(pb::ListAgentsRequest {
                    limit: 1,
                    after: after.clone(),
                })
                .await
                .expect("a page of agents")
                .into_inner();
            assert_eq!(page.agents.len(), 1, "{who}: {page:?}");
            after = page.agents[0].name.clone();
            seen.push(after.clone());
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, agents, "{who}");
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let page = control
                .list_targets(pb::ListTargetsRequest {
                    limit: 2,
                    after: after.clone(),
                })
                .await
                .expect("a page of targets")
                .into_inner();
            seen.extend(page.targets.iter().map(|t| t.name.clone()));
            after = seen.last().cloned().unwrap_or_default();
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, targets, "{who}");
        // No limit: the whole list at once.
        let all = control
            .list_targets(pb::ListTargetsRequest::default())
            .await
            .expect("all targets")
            .into_inner();
        assert_eq!(all.targets.len(), targets.len());
        assert!(!all.more);
    }
    let mut alice = c.control("alice");
    for after in ["../x", "no-env"] {
        let e = alice
            .list_targets(pb::ListTargetsRequest {
                limit: 1,
                after: after.into(),
            })
            .await
            .expect_err("a malformed cursor");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{after}: {e:?}");
    }
    let e = alice
        .list_agents(pb::ListAgentsRequest {
            limit: 1,
            after: "a b".into(),
        })
        .await
        .expect_err("a malformed cursor");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}
