//! The gRPC side: both services over mutual TLS, and the caller's identity from its
//! certificate.

mod agent_gateway;
pub mod authz;
mod control;
mod session;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use lifeboat_common::identity::{self, Identity};
use lifeboat_proto::{
    MAX_MESSAGE_BYTES,
    v1::{agent_gateway_server::AgentGatewayServer, control_server::ControlServer},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{error::Error, hub::Hub};

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

/// Serves both services on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let tls = lifeboat_common::tls::server_config(&hub.config.tls)
        .context("load the coordinator's TLS certificate and key")?;
    let incoming = lifeboat_common::tls::tls_incoming(listener, tls, shutdown.clone());
    let gateway = AgentGatewayServer::new(agent_gateway::AgentGateway::new(hub.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let control = ControlServer::new(control::Control::new(hub))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        // Finds dead peers (an agent whose network vanished) without waiting for TCP.
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(gateway)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("serve gRPC")
}
