//! What holding agents' connections costs before the coordinator does anything with them:
//! a gRPC server built as `lifeboat-coordinator` builds its own (the same TLS material and
//! verifier, the same handshake admission, the same HTTP/2 settings and per-connection
//! limits, the same codec) whose agent session answers `Hello` with `Welcome` and then only
//! reads. `tests/bench/agents.sh --floor` runs it in place of the coordinator, so the same
//! simulated fleet gives the RSS of the transport alone: the floor under the coordinator's
//! figures. A benchmark tool: it asserts nothing.
//!
//! ```text
//! transport_floor --pki DIR --ready-file FILE
//! ```
//! DIR holds `ca.pem`, `coordinator.pem` and `coordinator.key`. FILE gets
//! `{"grpc": "ADDR", "http": "ADDR"}` once both listen (on free loopback ports). The HTTP port
//! answers every request with an empty 200, so the load generator's scrapes find no samples.

use std::{path::PathBuf, pin::Pin, time::Duration};

use anyhow::{Context, Result, bail};
use lifeboat_common::tls::{HandshakeLimits, ServerTls, TlsFiles, tls_incoming};
use lifeboat_proto::v1::{self as pb, agent_gateway_server::AgentGatewayServer};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// As the coordinator's own limits (coordinator/src/grpc/mod.rs).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
const MAX_CALLS_PER_CONNECTION: usize = 64;
const HEARTBEAT_INTERVAL_SECS: u32 = 10;

struct Floor;

#[tonic::async_trait]
impl pb::agent_gateway_server::AgentGateway for Floor {
    type SessionStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            if !matches!(inbound.message().await, Ok(Some(_))) {
                return;
            }
            let welcome = pb::CoordinatorMessage {
                msg: Some(pb::coordinator_message::Msg::Welcome(pb::Welcome {
                    clock_unix_ms: lifeboat_common::time::now_ms(),
                    heartbeat_interval_secs: HEARTBEAT_INTERVAL_SECS,
                    refused_targets: Vec::new(),
                })),
            };
            if tx.send(Ok(welcome)).await.is_err() {
                return;
            }
            while let Ok(Some(_)) = inbound.message().await {}
            drop(tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Every request gets an empty 200 once its head is in, and the connection closes.
async fn http(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        });
    }
}

fn args() -> Result<(PathBuf, PathBuf)> {
    let (mut pki, mut ready) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pki" => pki = Some(PathBuf::from(value)),
            "--ready-file" => ready = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other}"),
        }
    }
    match (pki, ready) {
        (Some(p), Some(r)) => Ok((p, r)),
        _ => bail!("usage: transport_floor --pki DIR --ready-file FILE"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let (pki, ready) = args()?;
    let files = TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join("coordinator.pem"),
        key: pki.join("coordinator.key"),
    };
    let tls = ServerTls::load(&files, None)?;
    let shutdown = CancellationToken::new();
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let web = TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(
        &ready,
        format!(
            "{{\"grpc\": \"{}\", \"http\": \"{}\"}}\n",
            grpc.local_addr()?,
            web.local_addr()?
        ),
    )?;
    tokio::spawn(http(web));
    let incoming = tls_incoming(
        grpc,
        tls.config.clone(),
        HandshakeLimits::default(),
        shutdown.clone(),
    );
    let gateway = AgentGatewayServer::new(Floor)
        .max_decoding_message_size(lifeboat_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(lifeboat_proto::MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .add_service(gateway)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("serve gRPC")
}
