//! How far the coordinator trusts what agents tell it: H2 (a catalog rebuild from a forging
//! agent), M5 (times from an agent's clock) and M11 (names from agents becoming metric labels).
//! Every forging agent here is a fake agent over real mutual TLS against a real coordinator.

use std::time::Duration;

use lifeboat_proto::v1::{self as pb, agent_message::Msg};
use tonic::{Code, transport::Channel};

use crate::harness::*;

const HOUR_MS: i64 = 3_600_000;

/// A manifest as a listing reports it: a complete record of `env/target`, written by `agent`,
/// finished at `finished_at_ms`.
fn manifest(env: &str, target: &str, agent: &str, finished_at_ms: i64) -> pb::BackupRecord {
    let id = lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc());
    let spec = pb::JobSpec {
        job_id: id.clone(),
        kind: pb::JobKind::Backup.into(),
        spec: Some(pb::job_spec::Spec::Backup(pb::BackupSpec {
            backup_id: id,
            target: target.into(),
        })),
    };
    let mut r = record_for(&spec, env, agent);
    r.started_at_ms = finished_at_ms - 1000;
    r.finished_at_ms = finished_at_ms;
    r.verify_status = pb::VerifyStatus::Unverified.into();
    r
}

fn pinned(mut r: pb::BackupRecord) -> pb::BackupRecord {
    r.pin = Some(pb::BackupPin {
        pinned_by: "mallory".into(),
        pinned_at_ms: lifeboat_common::time::now_ms(),
        reason: "keep forever".into(),
    });
    r
}

type RebuildCall =
    tokio::task::JoinHandle<Result<tonic::Response<pb::RebuildCatalogResponse>, tonic::Status>>;

/// Alice starts a rebuild of `listing_agent`'s repositories: the call, and the list job
/// `agent` was sent.
async fn start_rebuild(
    c: &Coordinator,
    agent: &mut FakeAgent,
    listing_agent: &str,
    trust_cross_environment: bool,
) -> (RebuildCall, pb::JobSpec) {
    let mut alice = c.control("alice");
    let req = pb::RebuildCatalogRequest {
        agent: listing_agent.into(),
        repository: String::new(),
        dry_run: false,
        trust_cross_environment,
    };
    let call = tokio::spawn(async move { alice.rebuild_catalog(req).await });
    let spec = agent.expect_start().await;
    assert_eq!(spec.kind, i32::from(pb::JobKind::List), "{spec:?}");
    (call, spec)
}

/// Runs a rebuild by alice while `agent` answers its list job with `backups`.
async fn rebuild_with(
    c: &Coordinator,
    agent: &mut FakeAgent,
    listing_agent: &str,
    trust_cross_environment: bool,
    backups: Vec<pb::BackupRecord>,
) -> pb::RebuildCatalogResponse {
    let (call, spec) = start_rebuild(c, agent, listing_agent, trust_cross_environment).await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::List(pb::ListResult { backups })),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    within("the rebuild", call)
        .await
        .expect("rebuild task")
        .expect("rebuild")
        .into_inner()
}

fn outcome(b: &pb::RebuildBackup) -> pb::RebuildOutcome {
    pb::RebuildOutcome::try_from(b.outcome).expect("outcome")
}

async fn pin_of(control: &mut pb::control_client::ControlClient<Channel>, id: &str) -> bool {
    control
        .get_backup(pb::GetBackupRequest {
            backup_id: id.into(),
        })
        .await
        .expect("get backup")
        .into_inner()
        .pin
        .is_some()
}

// H2: an agent of `dev` lists forged manifests of `prod/orders`: refused (pins too) unless the
// admin trusts cross-environment listings.
#[tokio::test]
async fn h2_rebuild_refuses_another_environments_manifests_and_their_pins() {
    let c = Coordinator::start().await;
    let mut vera = c.control("vera");
    let _prod = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut dev = c.agent(hello("dev-1", "dev", &["scratch"])).await;
    let now = lifeboat_common::time::now_ms();
    let forged = pinned(manifest("prod", "orders", "prod-1", now - HOUR_MS));

    let resp = rebuild_with(&c, &mut dev, "dev-1", false, vec![forged.clone()]).await;
    assert_eq!(resp.backups.len(), 1, "{resp:?}");
    let b = &resp.backups[0];
    assert_eq!(outcome(b), pb::RebuildOutcome::Refused, "{b:?}");
    assert!(
        b.detail.contains("environment dev") && b.detail.contains("--trust-cross-environment"),
        "{b:?}"
    );
    assert!(!b.pin_restored, "{b:?}");
    assert_eq!((resp.refused, resp.added, resp.pins_restored), (1, 0, 0));
    assert_eq!(count_backups(&mut vera).await, 0);

    // The admin says the repository is shared across environments on purpose.
    let resp = rebuild_with(&c, &mut dev, "dev-1", true, vec![forged.clone()]).await;
    assert_eq!(
        outcome(&resp.backups[0]),
        pb::RebuildOutcome::Added,
        "{resp:?}"
    );
    assert_eq!(count_backups(&mut vera).await, 1);
    assert!(pin_of(&mut vera, &forged.backup_id).await);
}

// H2 and M5: a manifest that finished in the future is refused, whoever lists it.
#[tokio::test]
async fn h2_rebuild_refuses_future_dated_manifests() {
    let c = Coordinator::start().await;
    let mut vera = c.control("vera");
    let mut prod = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let year_2099 = 4_070_908_800_000;
    let soon = lifeboat_common::time::now_ms() + HOUR_MS;
    let resp = rebuild_with(
        &c,
        &mut prod,
        "prod-1",
        true,
        vec![
            pinned(manifest("prod", "orders", "prod-1", year_2099)),
            manifest("prod", "orders", "prod-1", soon),
        ],
    )
    .await;
    assert_eq!(resp.refused, 2, "{resp:?}");
    for b in &resp.backups {
        assert_eq!(outcome(b), pb::RebuildOutcome::Refused, "{b:?}");
        assert!(b.detail.contains("in the future"), "{b:?}");
        assert!(!b.pin_restored);
    }
    assert_eq!(count_backups(&mut vera).await, 0);
}

fn decision<'a>(r: &'a pb::PruneResponse, id: &str) -> (pb::PruneAction, String) {
    let d: &'a pb::PruneDecision = r
        .decisions
        .iter()
        .find(|d| d.backup_id == id)
        .unwrap_or_else(|| panic!("no decision for {id}: {r:?}"));
    (
        pb::PruneAction::try_from(d.action).expect("action"),
        d.reasons.join(","),
    )
}

async fn prune_plan(control: &mut pb::control_client::ControlClient<Channel>) -> pb::PruneResponse {
    control
        .prune(pb::PruneRequest {
            target: "prod/orders".into(),
            dry_run: true,
        })
        .await
        .expect("prune dry run")
        .into_inner()
}

// H2: backups a rebuild recorded do not count toward the keep rules until a verify passes, so
// newer forged manifests of the same environment cannot make retention expire real backups.
#[tokio::test]
async fn h2_rebuilt_unverified_backups_do_not_expire_real_ones_until_verified() {
    let c = Coordinator::builder()
        .config("[[retention]]\nenvironment = \"prod\"\nkeep_last = 2\n")
        .start()
        .await;
    let mut olga = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut real = Vec::new();
    let mut listing = Vec::new();
    for _ in 0..2 {
        let job = start_backup(&mut olga, "prod/orders").await;
        let spec = agent.run_backup("prod", "prod-1").await;
        // The repository holds the real backups' manifests too.
        listing.push(record_for(&spec, "prod", "prod-1"));
        real.push(job.backup_id);
    }
    // Newer than the real backups, by the agent's and by the coordinator's clock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = lifeboat_common::time::now_ms();
    let fakes = vec![
        manifest("prod", "orders", "prod-1", now - 2),
        manifest("prod", "orders", "prod-1", now - 1),
    ];
    listing.extend(fakes.iter().cloned());
    let resp = rebuild_with(&c, &mut agent, "prod-1", false, listing).await;
    assert_eq!((resp.added, resp.unchanged), (2, 2), "{resp:?}");

    let plan = prune_plan(&mut olga).await;
    for id in &real {
        assert_eq!(decision(&plan, id).0, pb::PruneAction::Keep, "{plan:?}");
    }
    for f in &fakes {
        assert_eq!(
            decision(&plan, &f.backup_id),
            (pb::PruneAction::Keep, "rebuilt_unverified".into()),
            "{plan:?}"
        );
    }

    // A verify that passes makes a rebuilt backup count: now it and the newest real backup
    // are the last two, and the older real one expires.
    let verify = olga
        .verify_backup(pb::VerifyBackupRequest {
            decrypt: false,
            repository: String::new(),
            backup_id: fakes[1].backup_id.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    let spec = agent.accept_next(&mut olga, &verify.job_id).await;
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
    wait_state(&mut olga, &verify.job_id, pb::JobState::Succeeded).await;
    let plan = prune_plan(&mut olga).await;
    assert_eq!(
        decision(&plan, &fakes[1].backup_id).0,
        pb::PruneAction::Keep
    );
    assert!(
        decision(&plan, &fakes[1].backup_id).1.contains("last"),
        "{plan:?}"
    );
    assert_eq!(
        decision(&plan, &real[1]).0,
        pb::PruneAction::Keep,
        "{plan:?}"
    );
    assert_eq!(
        decision(&plan, &real[0]),
        (pb::PruneAction::Delete, "expired".into()),
        "{plan:?}"
    );
}

/// The value of the first sample of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(metric) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// M5: an agent whose clock runs 6 h ahead reports its backup as finished 6 h from now; the
// recovery point age still counts from when the coordinator recorded it.
#[tokio::test]
async fn m5_rpo_age_counts_from_the_coordinators_record_time() {
    let c = Coordinator::start().await;
    let mut olga = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut olga, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    let mut record = record_for(&spec, "prod", "prod-1");
    record.started_at_ms += 6 * HOUR_MS;
    record.finished_at_ms += 6 * HOUR_MS;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Backup(record)),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let done = wait_state(&mut olga, &job.job_id, pb::JobState::Succeeded).await;
    assert_eq!(count_backups(&mut olga).await, 1);
    // On the agent's clock the backup is 6 h in the future, so its age would stay 0 for 6 h.
    let labels = "environment=\"prod\",target=\"orders\"";
    let age = eventually("the recovery point age to grow", || async {
        let (_, text) = c.http_get("/metrics").await;
        sample(&text, "lifeboat_recovery_point_age_seconds", labels).filter(|a| *a >= 1.0)
    })
    .await;
    assert!(age < 60.0, "{age}");
    let (_, text) = c.http_get("/metrics").await;
    let last = sample(
        &text,
        "lifeboat_backup_last_success_timestamp_seconds",
        labels,
    )
    .expect("last success");
    #[allow(clippy::cast_precision_loss)]
    let recorded = done.finished_at_ms as f64 / 1000.0;
    assert!((last - recorded).abs() < 1.0, "{last} vs {recorded}");
}

// M5 (N26): a backup result that finished in 2099 is refused at the wire with a clear error
// and never becomes a catalog row.
#[tokio::test]
async fn m5_a_backup_result_from_the_future_is_refused() {
    let c = Coordinator::start().await;
    let mut olga = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut olga, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    let mut record = record_for(&spec, "prod", "prod-1");
    record.finished_at_ms = 4_070_908_800_000;
    agent
        .send(result(
            &spec.job_id,
            pb::JobState::Succeeded,
            Some(pb::job_result::Result::Backup(record)),
        ))
        .await;
    agent.expect_ack(&spec.job_id).await;
    let j = wait_state(&mut olga, &job.job_id, pb::JobState::Failed).await;
    assert!(
        j.error.contains("in the future") && j.error.contains("clock"),
        "{j:?}"
    );
    assert_eq!(count_backups(&mut olga).await, 0);
}

fn heartbeat(names: impl IntoIterator<Item = String>) -> pb::AgentMessage {
    msg(Msg::Heartbeat(pb::Heartbeat {
        clock_unix_ms: lifeboat_common::time::now_ms(),
        running_jobs: Vec::new(),
        repositories: names
            .into_iter()
            .map(|name| pb::RepositoryStats {
                name,
                kind: "fs".into(),
                stale_uploads_aborted: 1,
                janitor_errors: 0,
                janitor_last_success_ms: 0,
            })
            .collect(),
        wal: Vec::new(),
    }))
}

// M11: one agent reports 10,000 repository names it never declared: /metrics stays bounded,
// the overflow is counted, and a disconnected agent's series go away. Hello lists are capped.
#[tokio::test]
async fn m11_agent_supplied_names_are_bounded() {
    let c = Coordinator::start().await;
    let agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    for batch in 0..10 {
        let names = (0..1000).map(move |i| format!("r{batch}x{i}"));
        agent
            .send(heartbeat(names.chain(["local".to_owned()])))
            .await;
    }
    let dropped = "lifeboat_agent_reports_dropped_total";
    let text = eventually("the dropped names to be counted", || async {
        let (_, text) = c.http_get("/metrics").await;
        sample(&text, dropped, "reason=\"undeclared_repository\"")
            .filter(|n| *n >= 10_000.0)
            .map(|_| text)
    })
    .await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("lifeboat_repository_") && l.contains("agent=\"prod-1\""))
        .count();
    // The declared repository's two counters and its timestamp, nothing else.
    assert!(series <= 3, "{series} repository series");
    assert!(
        text.contains(
            "lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\",repository=\"local\"}"
        ),
        "{text}"
    );
    assert!(text.len() < 200_000, "/metrics is {} bytes", text.len());

    // Gone with its agent.
    agent.disconnect();
    eventually("the disconnected agent's series to go", || async {
        let (_, text) = c.http_get("/metrics").await;
        (!text.contains("lifeboat_repository_stale_uploads_aborted_total{agent=\"prod-1\""))
            .then_some(())
    })
    .await;

    // Hello lists are capped: repositories at 64, targets at 1024.
    let mut h = hello("prod-2", "prod", &["users"]);
    h.repositories = (0..65).map(|i| format!("repo{i}")).collect();
    let e = FakeAgent::open(c.gateway("prod-2"), h)
        .await
        .err()
        .expect("65 repositories accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most 64"), "{e:?}");
    let names: Vec<String> = (0..1025).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = FakeAgent::open(c.gateway("prod-2"), hello("prod-2", "prod", &refs))
        .await
        .err()
        .expect("1025 targets accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most 1024"), "{e:?}");
    c.assert_healthy().await;
}

/// A list job that fails ends the rebuild's wait for it at once (the job's end arrives as an
/// event, not by polling), and the rebuild reports why that listing gave nothing.
#[tokio::test]
async fn a_failed_listing_is_reported_without_waiting() {
    let c = Coordinator::start().await;
    let mut prod = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let (call, spec) = start_rebuild(&c, &mut prod, "prod-1", false).await;
    prod.send(accepted(&spec.job_id)).await;
    prod.send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    prod.expect_ack(&spec.job_id).await;
    let resp = within("the rebuild", call)
        .await
        .expect("rebuild task")
        .expect("rebuild")
        .into_inner();
    let listing = resp
        .listings
        .iter()
        .find(|l| l.job_id == spec.job_id)
        .unwrap_or_else(|| panic!("no listing for the job: {resp:?}"));
    assert!(
        listing.error.contains("failed") && listing.error.contains("it broke"),
        "{listing:?}"
    );
    assert!(resp.backups.is_empty(), "{resp:?}");
}

// An operator whose connection drops while the repositories are listed (a laptop closed, a
// `lifeboat catalog rebuild` interrupted) does not waste the rebuild: it runs to the end in
// the coordinator and records what the listings found.
#[tokio::test]
async fn a_rebuild_outlives_the_call_that_started_it() {
    let c = Coordinator::start().await;
    let mut prod = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let (call, spec) = start_rebuild(&c, &mut prod, "prod-1", false).await;
    // The operator goes away: the call (and its HTTP/2 stream) is dropped.
    call.abort();
    let _ = call.await;
    let listed = manifest(
        "prod",
        "orders",
        "prod-1",
        lifeboat_common::time::now_ms() - 1000,
    );
    let id = listed.backup_id.clone();
    prod.send(accepted(&spec.job_id)).await;
    prod.send(result(
        &spec.job_id,
        pb::JobState::Succeeded,
        Some(pb::job_result::Result::List(pb::ListResult {
            backups: vec![listed],
        })),
    ))
    .await;
    prod.expect_ack(&spec.job_id).await;
    let bob = c.control("alice");
    let found = eventually("the listed backup to be recorded", || {
        let mut bob = bob.clone();
        let id = id.clone();
        async move {
            bob.get_backup(pb::GetBackupRequest { backup_id: id })
                .await
                .ok()
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    assert_eq!(found.target, "prod/orders", "{found:?}");
    // A new rebuild may start once that one is over.
    eventually("the rebuild to release its lock", || {
        let mut bob = bob.clone();
        async move {
            let again = bob
                .rebuild_catalog(pb::RebuildCatalogRequest {
                    agent: "nobody".into(),
                    ..Default::default()
                })
                .await;
            (!again
                .as_ref()
                .is_err_and(|s| s.message().contains("already running")))
            .then_some(())
        }
    })
    .await;
}
