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

use crate::metrics::{LEADER, LEADER_HELP};

fn router() -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "alive", "role": "standby" })) }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "not_ready",
                    "role": "standby",
                    "reason": "another coordinator is active on this catalog; this one takes \
                               over when it stops",
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
    axum::serve(listener, router())
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_standby_is_alive_not_ready_and_not_the_leader() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, stop.clone()));
        let get = |path: &str| {
            let path = path.to_owned();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).await.expect("read");
                out
            }
        };
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
