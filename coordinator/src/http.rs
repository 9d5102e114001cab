//! Plain HTTP for probes and Prometheus: `GET /health` and `GET /metrics`.

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::{error::Error, hub::Hub};

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(hub)
}

/// Liveness: the process serves requests.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus text format. Gauges that mirror the catalog are refreshed from it on each
/// scrape, so they are right after a restart too.
async fn metrics(State(hub): State<Arc<Hub>>) -> Result<impl IntoResponse, Error> {
    let running = hub.catalog.running_counts().await?;
    hub.metrics.set_running(&running);
    for backup in hub.catalog.latest_backups().await? {
        hub.metrics.set_last_backup(&backup);
    }
    hub.metrics
        .set_agents_connected(hub.connected_agents().len());
    let body = hub
        .metrics
        .render()
        .map_err(|e| Error::Internal(format!("render metrics: {e:#}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}
