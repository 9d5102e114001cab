//! What a coordinator standing by (another one holds the catalog's lock) answers on its HTTP
//! port: alive, not ready, `lifeboat_coordinator_leader 0`. Monitoring thus tells a standby
//! from a dead process, and "no active coordinator" from "one coordinator down".

use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    metrics::{LEADER, LEADER_HELP},
};

/// The standby's HTTP answers. With `serving` (its gRPC port open to operators), ready while
/// that catalog answers; without, never ready.
pub fn router(serving: Option<Catalog>) -> Router {
    let ready = move || {
        let serving = serving.clone();
        async move {
            let Some(catalog) = serving else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "not_ready",
                        "role": "standby",
                        "leader": false,
                        "reason": "another coordinator is active on this catalog; this one \
                                   takes over when it stops",
                    })),
                );
            };
            let limit = crate::http::CATALOG_TIMEOUT;
            let answered = tokio::time::timeout(limit, catalog.ping())
                .await
                .map_err(|_| format!("no answer within {} s", limit.as_secs()))
                .and_then(|r| r.map_err(|e| e.to_string()));
            match answered {
                Ok(()) => (
                    StatusCode::OK,
                    Json(json!({
                        "status": "ready",
                        "role": "standby",
                        "leader": false,
                        "catalog": "reachable",
                        "serves": "operators: the CLI's calls work here; agents and scheduled \
                                   work are with the active coordinator, until it stops",
                    })),
                ),
                Err(e) => {
                    tracing::warn!("catalog check for /health/ready failed: {e}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({
                            "status": "not_ready",
                            "role": "standby",
                            "leader": false,
                            "catalog": "unreachable",
                            "reason": "the catalog does not answer; see this coordinator's log",
                        })),
                    )
                }
            }
        }
    };
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "alive", "role": "standby" })) }),
        )
        // The liveness probe (docs/monitoring.md): a standby is alive.
        .route(
            "/health",
            get(|| async { Json(json!({ "status": "ok", "role": "standby" })) }),
        )
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "not_ready",
                    "role": "standby",
                    "reason": "another coordinator is active on this catalog; ask it (this \
                               one takes over when it stops)",
                })),
            )
        })
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        format!("# HELP {LEADER} {LEADER_HELP}\n# TYPE {LEADER} gauge\n{LEADER} 0\n"),
    )
        .into_response()
}

/// Serves the standby's answers on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, stop: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(None))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GETs `path` from `addr`; the whole answer, status line first.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn a_standby_serving_operators_is_ready_while_its_catalog_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open_sqlite(&dir.path().join("catalog.db"))
            .await
            .expect("open catalog");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = router(Some(catalog.clone()));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let ready = get(addr, "/health/ready").await;
        assert!(
            ready.starts_with("HTTP/1.1 200")
                && ready.contains("\"role\":\"standby\"")
                && ready.contains("\"leader\":false")
                && ready.contains("\"catalog\":\"reachable\""),
            "{ready}"
        );
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("\nlifeboat_coordinator_leader 0\n"),
            "{metrics}"
        );
        // What only the active coordinator serves is refused, naming why.
        let backups = get(addr, "/health/backups").await;
        assert!(
            backups.starts_with("HTTP/1.1 503") && backups.contains("another coordinator"),
            "{backups}"
        );
        // A catalog that no longer answers makes it not ready.
        catalog.close().await;
        let ready = get(addr, "/health/ready").await;
        assert!(
            ready.starts_with("HTTP/1.1 503") && ready.contains("\"catalog\":\"unreachable\""),
            "{ready}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_standby_is_alive_not_ready_and_not_the_leader() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, stop.clone()));
        let get = |path: &'static str| get(addr, path);
        let health = get("/health").await;
        assert!(
            health.starts_with("HTTP/1.1 200") && health.contains("standby"),
            "{health}"
        );
        let live = get("/health/live").await;
        assert!(
            live.starts_with("HTTP/1.1 200") && live.contains("standby"),
            "{live}"
        );
        let ready = get("/health/ready").await;
        assert!(
            ready.starts_with("HTTP/1.1 503") && ready.contains("another coordinator"),
            "{ready}"
        );
        let metrics = get("/metrics").await;
        assert!(
            metrics.contains("\nlifeboat_coordinator_leader 0\n"),
            "{metrics}"
        );
        stop.cancel();
        server.await.expect("join").expect("serve");
    }
}
