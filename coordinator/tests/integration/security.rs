//! X33 (handshake refusals), X34 (an agent acting for another), X35 (certificates on the wrong
//! API, roles).

use lifeboat_common::pki::{Ca, LeafSpec};
use lifeboat_proto::v1::{
    self as pb, agent_gateway_client::AgentGatewayClient, control_client::ControlClient,
};
use time::{Duration, OffsetDateTime};
use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Endpoint},
};

use crate::harness::*;

/// The first RPC over `channel` must fail (TLS 1.3: a refused client certificate does not
/// fail connect(), it fails the first call).
async fn assert_whoami_fails(client: &mut ControlClient<tonic::transport::Channel>) {
    let e = within("refused call", client.who_am_i(pb::WhoAmIRequest {}))
        .await
        .expect_err("call with a refused certificate succeeded");
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Unauthenticated
        ),
        "unexpected status {e:?}"
    );
}

#[tokio::test]
async fn x33_client_certificate_from_another_ca_is_refused() {
    let c = Coordinator::start().await;
    let other = Ca::generate("other").expect("other CA");
    let files = issue_with(&other, c.dir.path(), &LeafSpec::operator("alice"));
    // Trust the real coordinator, present a certificate it does not trust.
    let mut client = ControlClient::new(c.channel(&files));
    assert_whoami_fails(&mut client).await;
    let gw = AgentGatewayClient::new(c.channel(&issue_with(
        &other,
        c.dir.path(),
        &LeafSpec::agent("prod-1"),
    )));
    FakeAgent::open(gw, hello("prod-1", "prod", &["orders"]))
        .await
        .err()
        .expect("session with a foreign agent certificate opened");
    c.assert_healthy().await;
}

#[tokio::test]
async fn x33_no_client_certificate_is_refused() {
    let c = Coordinator::start().await;
    let ca = std::fs::read(c.dir.path().join("ca.pem")).expect("read CA");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(c.url())
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect_lazy();
    let mut client = ControlClient::new(channel);
    assert_whoami_fails(&mut client).await;
    c.assert_healthy().await;
}

#[tokio::test]
async fn x33_expired_and_not_yet_valid_certificates_are_refused() {
    let c = Coordinator::start().await;
    let now = OffsetDateTime::now_utc();
    let mut expired = LeafSpec::operator("alice");
    expired.not_before = now - Duration::days(10);
    expired.not_after = now - Duration::days(1);
    let mut client = ControlClient::new(c.channel(&c.issue(&expired)));
    assert_whoami_fails(&mut client).await;

    let mut future = LeafSpec::operator("alice");
    future.not_before = now + Duration::days(1);
    future.not_after = now + Duration::days(10);
    let mut client = ControlClient::new(c.channel(&c.issue(&future)));
    assert_whoami_fails(&mut client).await;
    c.assert_healthy().await;
}

#[tokio::test]
async fn x34_hello_under_another_agents_name_is_denied() {
    let c = Coordinator::start().await;
    let refused = FakeAgent::open(c.gateway("a"), hello("b", "prod", &["orders"]))
        .await
        .err()
        .expect("agent a opened a session as b");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("agent a"), "{refused:?}");
    // Nothing was registered for b.
    let targets = c
        .control("alice")
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("list targets")
        .into_inner()
        .targets;
    assert!(targets.is_empty(), "{targets:?}");
}

#[tokio::test]
async fn x34_result_for_another_agents_job_is_refused() {
    let c = Coordinator::start().await;
    let mut control = c.control("olga");
    let mut a = c.agent(hello("a", "prod", &["orders"])).await;
    let mut b = c.agent(hello("b", "dev", &["orders"])).await;
    let job = start_backup(&mut control, "dev/orders").await;
    let spec = b.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
    b.send(accepted(&spec.job_id)).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Running).await;

    // Agent a claims b's job, with a record that even names b's target.
    a.send(backup_result(&spec, "dev", "b")).await;
    let status = a.expect_end().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&job.job_id), "{status:?}");
    // Progress and acceptance for another agent's job are refused the same way.
    let mut a = c.agent(hello("a", "prod", &["orders"])).await;
    a.send(progress(&spec.job_id, 1, "dumping")).await;
    assert_eq!(a.expect_end().await.code(), Code::PermissionDenied);

    assert_eq!(count_backups(&mut control).await, 0);
    let j = job_state(&mut control, &job.job_id).await;
    assert_eq!(j.state, i32::from(pb::JobState::Running), "{j:?}");
    // The real owner still completes it.
    b.send(backup_result(&spec, "dev", "b")).await;
    b.expect_ack(&spec.job_id).await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
}

/// X34, and item 10 (M6): b may not take over a's target, but the refusal is of that target
/// only: b's other targets register and its session opens.
#[tokio::test]
async fn x34_target_owned_by_another_agent_is_refused() {
    let c = Coordinator::start().await;
    let mut a = c.agent(hello("a", "prod", &["orders"])).await;
    let _b = FakeAgent::open(c.gateway("b"), hello("b", "prod", &["orders", "users"]))
        .await
        .expect("one conflicting target refused b's whole session");
    let mut control = c.control("olga");
    let targets = control
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .targets;
    let owners: Vec<_> = targets
        .iter()
        .map(|t| (t.name.as_str(), t.agent.as_str()))
        .collect();
    assert_eq!(owners, [("prod/orders", "a"), ("prod/users", "b")]);
    // Work on orders still goes to its owner.
    let job = start_backup(&mut control, "prod/orders").await;
    assert_eq!(a.expect_start().await.job_id, job.job_id);
}

#[tokio::test]
async fn x35_agent_certificate_on_control_is_denied() {
    let c = Coordinator::start().await;
    let files = c.issue(&LeafSpec::agent("prod-1"));
    let mut client = ControlClient::new(c.channel(&files));
    let e = client
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("agent called Control");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = client
        .start_backup(pb::StartBackupRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect_err("agent started a backup");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

#[tokio::test]
async fn x35_operator_certificate_on_the_agent_stream_is_denied() {
    let c = Coordinator::start().await;
    let files = c.issue(&LeafSpec::operator("alice"));
    let client = AgentGatewayClient::new(c.channel(&files));
    let e = FakeAgent::open(client, hello("alice", "prod", &["orders"]))
        .await
        .err()
        .expect("operator opened an agent session");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let agents = c
        .control("alice")
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert!(agents.is_empty(), "{agents:?}");
}

#[tokio::test]
async fn x35_unlisted_operator_is_denied() {
    let c = Coordinator::start().await;
    let e = c
        .control("mallory")
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("unlisted operator allowed");
    assert_eq!(e.code(), Code::PermissionDenied);
    // L9: names the identity and what to ask for, not the config file or its layout.
    assert!(
        e.message().contains("operator mallory") && e.message().contains("ask an administrator"),
        "{e:?}"
    );
    assert!(
        !e.message().contains("coordinator.toml")
            && !e.message().contains("[[")
            && !e.message().contains(&c.dir.path().display().to_string()),
        "{e:?}"
    );
}

#[tokio::test]
async fn x35_roles_are_enforced_before_any_work() {
    let c = Coordinator::start().await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut viewer = c.control("vera");
    let me = viewer
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!((me.name.as_str(), me.role.as_str()), ("vera", "viewer"));

    let e = viewer
        .start_backup(pb::StartBackupRequest {
            target: "prod/orders".into(),
        })
        .await
        .expect_err("viewer started a backup");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role operator"), "{e:?}");
    let e = viewer
        .cancel_job(pb::CancelJobRequest {
            job_id: "20261127T233000Z-000001".into(),
        })
        .await
        .expect_err("viewer cancelled");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Refused before the backup is even looked up: PERMISSION_DENIED, not NOT_FOUND.
    let mut operator = c.control("olga");
    let e = operator
        .restore(pb::RestoreRequest {
            backup_id: "20261127T233000Z-000001".into(),
            to_target: "prod/orders".into(),
            database: "orders".into(),
            clean: true,
            ..Default::default()
        })
        .await
        .expect_err("operator restored with clean");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role admin"), "{e:?}");
    // Without clean the same request gets as far as the lookup.
    let e = operator
        .restore(pb::RestoreRequest {
            backup_id: "20261127T233000Z-000001".into(),
            to_target: "prod/orders".into(),
            database: "orders".into(),
            clean: false,
            ..Default::default()
        })
        .await
        .expect_err("restore of a missing backup");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Admin with clean also gets to the lookup.
    let e = c
        .control("alice")
        .restore(pb::RestoreRequest {
            backup_id: "20261127T233000Z-000001".into(),
            to_target: String::new(),
            database: String::new(),
            clean: true,
            ..Default::default()
        })
        .await
        .expect_err("restore of a missing backup");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let jobs = viewer
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("viewer may list")
        .into_inner()
        .jobs;
    assert!(jobs.is_empty(), "a refused call created work: {jobs:?}");
}

/// With an `[[agent]]` table, only listed agents connect, and only for their environment: a dev
/// agent cannot claim prod targets.
#[tokio::test]
async fn agent_table_pins_agents_to_their_environment() {
    let c = Coordinator::builder()
        .agent("prod-1", "prod")
        .agent("dev-1", "dev")
        .start()
        .await;
    let refused = FakeAgent::open(c.gateway("dev-1"), hello("dev-1", "prod", &["orders"]))
        .await
        .err()
        .expect("dev agent claiming prod was admitted");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("admitted for environment dev only"),
        "{refused:?}"
    );
    assert!(!refused.message().contains("[["), "{refused:?}");
    let refused = FakeAgent::open(c.gateway("stray"), hello("stray", "prod", &["orders"]))
        .await
        .err()
        .expect("unlisted agent was admitted");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not admitted")
            && refused.message().contains("ask an administrator"),
        "{refused:?}"
    );
    // Neither claim registered the target: the real owner gets it.
    FakeAgent::open(c.gateway("prod-1"), hello("prod-1", "prod", &["orders"]))
        .await
        .expect("listed agent admitted");
    FakeAgent::open(c.gateway("dev-1"), hello("dev-1", "dev", &["orders"]))
        .await
        .expect("dev agent admitted for dev");
    let mut control = c.control("vera");
    let targets = control
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("list targets")
        .into_inner()
        .targets;
    let owners: Vec<(String, String)> = targets.into_iter().map(|t| (t.name, t.agent)).collect();
    assert_eq!(
        owners,
        vec![
            ("dev/orders".to_owned(), "dev-1".to_owned()),
            ("prod/orders".to_owned(), "prod-1".to_owned())
        ]
    );
}
