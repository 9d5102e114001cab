//! A webhook receiver for tests: axum on loopback, recording every POST.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde_json::Value;

/// A webhook receiver on loopback: records every POST, answers 500 to the first
/// `fail_first` requests of each path, then 200.
#[derive(Clone, Default)]
pub struct Receiver {
    seen: Arc<Mutex<Vec<(String, u16, Value)>>>,
    fail_first: Arc<Mutex<HashMap<String, usize>>>,
}

impl Receiver {
    pub async fn start(fail_first: &[(&str, usize)]) -> (Self, SocketAddr) {
        let r = Receiver::default();
        {
            let mut f = r.fail_first.lock().expect("lock");
            for (path, n) in fail_first {
                f.insert(format!("/{path}"), *n);
            }
        }
        async fn handle(
            State(r): State<Receiver>,
            uri: axum::http::Uri,
            Json(body): Json<Value>,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            let fail = {
                let mut f = r.fail_first.lock().expect("lock");
                match f.get_mut(&path) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                }
            };
            let code = if fail {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            r.seen
                .lock()
                .expect("lock")
                .push((path, code.as_u16(), body));
            code
        }
        let app = Router::new()
            .route("/{*path}", post(handle))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, addr)
    }

    /// Accepted (200) deliveries to `path`.
    pub fn accepted(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, code, _)| p == path && *code == 200)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    pub fn attempts(&self, path: &str) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| p == path)
            .count()
    }
}
