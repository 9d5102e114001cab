//! Bounds on what one peer can hold on the gRPC port (security review M1): pending TLS
//! handshakes per source address, job watches per operator, and calls refused before their
//! body is read.

use std::time::Duration;

use lifeboat_common::pki::LeafSpec;
use lifeboat_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tonic::Code;

use crate::harness::*;

/// Whether the coordinator closes `s` within `wait` (EOF or reset), without us sending a byte.
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn silent_connections_from_one_address_are_capped() {
    let c = Coordinator::start().await;
    // 32 connections that never start a TLS handshake: each holds a slot until the 10 s
    // handshake timeout.
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(
            tokio::net::TcpStream::connect(c.grpc_addr)
                .await
                .expect("connect"),
        );
    }
    // Let the accept loop take all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(c.grpc_addr)
        .await
        .expect("connect");
    assert!(
        closed_within(&mut extra, Duration::from_secs(3)).await,
        "the 33rd pending handshake from one address was kept open"
    );
    // The held ones are still waiting (not closed early).
    assert!(!closed_within(&mut silent[0], Duration::from_millis(200)).await);
    // Once they go, a real operator gets through at once.
    drop(silent);
    let mut control = c.control("vera");
    eventually("an operator call after the flood", || {
        let mut control = control.clone();
        async move { control.list_jobs(pb::ListJobsRequest::default()).await.ok() }
    })
    .await;
    control
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .expect("list jobs");
}

#[tokio::test]
async fn one_operator_cannot_hold_unbounded_job_watches() {
    let c = Coordinator::start().await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut olga = c.control("olga");
    let job = start_backup(&mut olga, "prod/orders").await;
    let mut streams = Vec::new();
    for i in 0..32 {
        let s = olga
            .watch_job(pb::GetJobRequest {
                job_id: job.job_id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("watch {i}: {e:?}"))
            .into_inner();
        streams.push(s);
    }
    let e = olga
        .watch_job(pb::GetJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect_err("the 33rd watch");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("jobs show"), "{e:?}");
    // Another operator is not affected.
    c.control("vera")
        .watch_job(pb::GetJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .expect("vera's watch");
    // Closing watches frees their slots.
    streams.truncate(20);
    eventually("a freed watch slot", || {
        let mut olga = olga.clone();
        let id = job.job_id.clone();
        async move { olga.watch_job(pb::GetJobRequest { job_id: id }).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn control_calls_without_an_operator_role_are_refused_before_the_body() {
    let c = Coordinator::start().await;
    // A body over the 8 MiB message limit: refused for who sent it, before it is read (a
    // decoded body would be refused for its size instead).
    let big = "x".repeat(9 << 20);
    let agent_files = c.issue(&LeafSpec::agent("prod-1"));
    let mut as_agent =
        lifeboat_proto::v1::control_client::ControlClient::new(c.channel(&agent_files))
            .max_encoding_message_size(usize::MAX);
    let e = as_agent
        .start_backup(pb::StartBackupRequest {
            target: big.clone(),
        })
        .await
        .expect_err("agent calling Control");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("agent certificate"), "{e:?}");
    let e = c
        .control("mallory")
        .start_backup(pb::StartBackupRequest { target: big })
        .await
        .expect_err("unknown operator");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("has no role"), "{e:?}");
    // Both refusals are in the audit log, under the caller's certificate identity.
    let mut alice = c.control("alice");
    let audit = eventually("denied calls audited", || {
        let mut alice = alice.clone();
        async move {
            let entries = alice
                .list_audit(pb::ListAuditRequest::default())
                .await
                .ok()?
                .into_inner()
                .entries;
            let denied: Vec<_> = entries
                .into_iter()
                .filter(|e| e.outcome == "denied")
                .collect();
            (denied.len() >= 2).then_some(denied)
        }
    })
    .await;
    let actors: Vec<&str> = audit.iter().map(|e| e.actor.as_str()).collect();
    assert!(actors.contains(&"agent/prod-1"), "{actors:?}");
    assert!(actors.contains(&"operator/mallory"), "{actors:?}");
    let _ = alice.list_jobs(pb::ListJobsRequest::default()).await;
}

/// The HTTP port: a client that sends nothing (or stops half-way through its request) is
/// disconnected after the idle time, connections over the limit are closed at once, and
/// normal requests keep working.
#[tokio::test]
async fn http_port_bounds_silent_and_excess_connections() {
    use tokio::io::AsyncWriteExt;
    let c = Coordinator::builder()
        .server("http_idle_timeout_secs = 1\nhttp_max_connections = 4\n")
        .start()
        .await;
    let (code, _) = c.http_get("/health").await;
    assert_eq!(code, 200);
    // Half a request line, then silence: cut after about a second.
    let mut slow = tokio::net::TcpStream::connect(c.http_addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /health/detailed HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "a client that stopped sending was kept"
    );
    // Four silent connections take every slot; a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(c.http_addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(c.http_addr)
        .await
        .expect("connect");
    assert!(
        closed_within(&mut extra, Duration::from_millis(500)).await,
        "a connection over the limit was kept"
    );
    // The silent ones go after the idle time; then the port serves again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(held);
    let (code, _) = eventually("HTTP after the flood", || async {
        let r = c.http_get("/health").await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(code, 200);
}

/// A unary call that cannot finish (the catalog's write lock is held elsewhere, longer than
/// the catalog's own busy timeout) is ended at `server.grpc_call_timeout_secs` with
/// DEADLINE_EXCEEDED and a sentence saying why, instead of holding its place on the
/// connection; calls that need no write keep working, and the same call works once the lock
/// is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_have_a_deadline() {
    let c = Coordinator::builder()
        .server("grpc_call_timeout_secs = 2\n")
        .start()
        .await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut alice = c.control("alice");
    let schedule = || pb::SetScheduleRequest {
        target: "prod/orders".into(),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        jitter_secs: 0,
        kind: pb::ScheduleKind::Backup.into(),
        ..Default::default()
    };

    let lock = c.lock_catalog().await;

    let started = std::time::Instant::now();
    let e = alice
        .set_schedule(schedule())
        .await
        .expect_err("the write cannot finish");
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("after 2 s") && e.message().contains("retry"),
        "{}",
        e.message()
    );
    // Ended by the deadline, not by the catalog's 10 s busy timeout.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    alice
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("a call without a write still works");

    lock.release().await;
    let s = alice
        .set_schedule(schedule())
        .await
        .expect("works once the lock is gone")
        .into_inner();
    assert_eq!(s.target, "prod/orders");
}

/// A certificate revoked while its connection is open (the handshake checked the list of its
/// time): the next call on that same connection is refused, the agent session opened with it
/// is ended, and others carry on — all without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_connections_already_open() {
    use lifeboat_proto::v1::{
        agent_gateway_client::AgentGatewayClient, control_client::ControlClient,
    };
    let c = Coordinator::builder().crl().start().await;
    let alice_files = c.issue(&LeafSpec::operator("alice"));
    let mut alice = ControlClient::new(c.channel(&alice_files));
    let mut olga = c.control("olga");
    let agent_files = c.issue(&LeafSpec::agent("prod-1"));
    let mut agent = FakeAgent::open(
        AgentGatewayClient::new(c.channel(&agent_files)),
        hello("prod-1", "prod", &["orders"]),
    )
    .await
    .expect("session");
    let other = c.agent(hello("prod-2", "prod", &["users"])).await;
    alice
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("alice before");

    c.revoke(&[&alice_files, &agent_files]);
    let status = within("the revoked session to end", agent.expect_end()).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
    // The same channel (its connection predates the revocation) is refused per call.
    let e = alice
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("alice after revocation");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("revoked"), "{}", e.message());
    // Others keep working: an operator's calls, another agent's session.
    olga.who_am_i(pb::WhoAmIRequest {}).await.expect("olga");
    other.send(heartbeat()).await;
    let agents = olga
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .expect("list agents")
        .into_inner()
        .agents;
    let state = |name: &str| {
        agents
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.connected)
            .unwrap_or_else(|| panic!("no agent {name}"))
    };
    assert!(state("prod-2"), "the other agent stays connected");
    assert!(!state("prod-1"), "the revoked agent is gone");
}
