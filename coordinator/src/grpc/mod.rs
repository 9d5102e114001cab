//! The gRPC side: both services over mutual TLS, and the caller's identity from its
//! certificate.

mod agent_gateway;
pub mod authz;
mod control;
mod session;

use std::time::Duration;

use anyhow::{Context, Result};
use lifeboat_common::{
    identity::{self, Identity},
    tls::Revocations,
};
use lifeboat_proto::{
    MAX_MESSAGE_BYTES,
    v1::{agent_gateway_server::AgentGatewayServer, control_server::ControlServer},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{error::Error, parts::Parts};

/// The identity in the caller's client certificate.
pub fn identity<T>(request: &tonic::Request<T>) -> Result<Identity, Error> {
    let certs = request.peer_certs().ok_or_else(|| {
        Error::Unauthenticated(
            "no client certificate; connect with mutual TLS and a lifeboat certificate".into(),
        )
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Error::Unauthenticated(
            "no client certificate; connect with mutual TLS and a lifeboat certificate".into(),
        )
    })?;
    identity::from_der(leaf).map_err(|e| {
        Error::Unauthenticated(format!(
            "{e}; use a certificate issued by `lifeboat pki issue --kind agent|operator`"
        ))
    })
}

/// Why a standby refuses what only the active coordinator does (ADR 0038).
pub(crate) const STANDING_BY: &str = "this coordinator is standing by: another coordinator of \
     its catalog is active and holds the agent sessions; give every coordinator's URL (agent: \
     `coordinator = [URL1, URL2]`; CLI: --coordinator URL1,URL2) so the active one is found";

/// Why a standby refuses an operator's call that needs the agent sessions.
pub(crate) fn needs_active(what: &str) -> crate::error::Error {
    crate::error::Error::StandingBy(format!(
        "{what} needs what the agents report to the active coordinator of this catalog; this \
         one is standing by: run it against the active one (its /health/ready answers \
         \"role\": \"active\"), or list every coordinator's URL in --coordinator"
    ))
}

/// A standby's refusal of an agent session: UNAVAILABLE (the agent tries its next URL),
/// marked as standing by, not logged as a failure.
pub(crate) fn standing_by() -> tonic::Status {
    crate::error::standing_by(tonic::Status::unavailable(STANDING_BY))
}

/// How often the TLS files are checked for changes (SIGHUP reloads at once).
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// HTTP/2 streams one connection may have open.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Calls one connection may have in progress at once.
const MAX_CALLS_PER_CONNECTION: usize = 64;

/// The deadline of a call by its path: streams (the agent session, job watches) have none;
/// a catalog rebuild waits for the agents' listings; every other (unary) call gets `unary`
/// (`server.grpc_call_timeout_secs`), after which the coordinator answers `DEADLINE_EXCEEDED`
/// and drops it, freeing its place among the connection's calls. A client's shorter
/// `grpc-timeout` applies as well.
fn deadline_for(path: &str, unary: Duration) -> Option<Duration> {
    match path.rsplit_once('/').map_or(path, |(_, m)| m) {
        "Session" | "WatchJob" => None,
        "RebuildCatalog" => Some(crate::rebuild::LIST_TIMEOUT + Duration::from_secs(60)),
        _ => Some(unary),
    }
}

/// Applies [`deadline_for`] to every call.
#[derive(Debug, Clone, Copy)]
struct CallDeadlines {
    unary: Duration,
}

impl<S> tower::Layer<S> for CallDeadlines {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            unary: self.unary,
        }
    }
}

#[derive(Debug, Clone)]
struct Deadline<S> {
    inner: S,
    unary: Duration,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<tonic::codegen::http::Request<ReqBody>> for Deadline<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<ReqBody>,
            Response = tonic::codegen::http::Response<ResBody>,
        >,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let limit = deadline_for(&path, self.unary);
        let call = self.inner.call(request);
        Box::pin(async move {
            let Some(limit) = limit else {
                return call.await;
            };
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(
                        method = %path,
                        "a call ran longer than {} s and was ended",
                        limit.as_secs()
                    );
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the coordinator ended this call after {} s; the catalog may be busy or \
                         unreachable (see /health/ready); retry later",
                        limit.as_secs()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// Runs before a Control request's body is read: only an operator certificate with a role on
/// this coordinator gets further (an agent's or an unknown operator's call is refused without
/// decoding what it sent). The per-method role check follows in the handler.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
fn operators_only(
    parts: &Parts,
    revocations: &Revocations,
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let identity = identity(&request)?;
    if revoked(revocations, &request) {
        let reason = Error::Unauthenticated(format!(
            "the certificate of {identity} has been revoked; ask an administrator for a new one"
        ));
        let who = identity.uri().trim_start_matches("lifeboat://").to_owned();
        crate::audit::record_denied(&parts.denied, &parts.metrics, &who, "control", "", &reason);
        return Err(reason.into());
    }
    let refusal = match &identity {
        Identity::Operator(name) if parts.config.role_of(name).is_some() => return Ok(request),
        Identity::Operator(name) => format!(
            "operator {name} has no role on this coordinator; ask an administrator to grant \
             operator {name} a role (viewer, operator or admin)"
        ),
        Identity::Agent(name) => format!(
            "agent certificate (agent {name}) may not call the Control API; agents may only \
             open the agent session, operators need an operator certificate"
        ),
    };
    let reason = Error::PermissionDenied(refusal);
    let who = identity.uri().trim_start_matches("lifeboat://").to_owned();
    crate::audit::record_denied(&parts.denied, &parts.metrics, &who, "control", "", &reason);
    Err(reason.into())
}

/// Whether the caller's certificate is on the CRL loaded since its connection was opened
/// (the handshake checked the CRL of its time).
fn revoked(revocations: &Revocations, request: &tonic::Request<()>) -> bool {
    request
        .peer_certs()
        .and_then(|c| c.first().map(|leaf| revocations.is_revoked(leaf)))
        .unwrap_or(false)
}

/// Runs before an AgentGateway request's body is read: only agent certificates, not revoked.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
fn agents_only(
    revocations: &Revocations,
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    if revoked(revocations, &request) {
        return Err(Error::Unauthenticated(
            "this agent's certificate has been revoked; issue it a new one with `lifeboat pki \
             issue --kind agent`"
                .into(),
        )
        .into());
    }
    match identity(&request)? {
        Identity::Agent(_) => Ok(request),
        Identity::Operator(name) => Err(Error::PermissionDenied(format!(
            "operator certificate (operator {name}) may not open an agent session; agents need \
             a certificate issued with `lifeboat pki issue --kind agent`"
        ))
        .into()),
    }
}

/// Serves both services on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(parts: Parts, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let tls =
        lifeboat_common::tls::ServerTls::load(&parts.config.tls, parts.config.tls_crl.as_deref())
            .context("load the coordinator's TLS certificate and key")?;
    // A renewed certificate, a changed CA bundle or a new CRL is picked up without a restart.
    tls.watch(TLS_RELOAD_CHECK, shutdown.clone());
    let incoming = lifeboat_common::tls::tls_incoming(
        listener,
        tls.config.clone(),
        lifeboat_common::tls::HandshakeLimits::default(),
        shutdown.clone(),
    );
    // Connections opened before a revocation are checked per call and their sessions ended.
    let revocations = tls.revocations();
    let gateway = AgentGatewayServer::new(agent_gateway::AgentGateway::new(
        parts.clone(),
        revocations.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let agent_revocations = revocations.clone();
    let gateway = tonic::service::interceptor::InterceptedService::new(gateway, move |r| {
        agents_only(&agent_revocations, r)
    });
    let control = ControlServer::new(control::Control::new(parts.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let gate = parts.clone();
    let control = tonic::service::interceptor::InterceptedService::new(control, move |r| {
        operators_only(&gate, &revocations, r)
    });
    tonic::transport::Server::builder()
        // Finds dead peers (an agent whose network vanished) without waiting for TCP.
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // One connection cannot hold more than this many calls open, nor run more at once.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .layer(CallDeadlines {
            unary: parts.config.grpc_call_timeout,
        })
        .add_service(gateway)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("serve gRPC")
}
