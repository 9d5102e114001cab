//! A fault-injecting HTTP proxy in front of the S3 test server. Requests are forwarded
//! unchanged (SigV4 signatures stay valid) unless a [`Rule`] matches: then the proxy answers
//! with an error status (503 SlowDown storms), drops the connection without an answer (a reset
//! mid-upload) or after the server carried the request out (a lost response), cuts a response body after some bytes (a reset mid-download), or answers 200
//! without forwarding (storage that acknowledges and keeps nothing).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

type ProxyBody = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status and an S3 error document of this code, e.g. 503 `SlowDown`.
    Status(u16, &'static str),
    /// Close the connection without answering, after reading the request head.
    Drop,
    /// Forward (the server carries the request out), then close the connection without
    /// passing the answer on: a response lost on the way back (N25, M10).
    DropResponse,
    /// Forward, then end the response body abruptly after this many bytes.
    CutResponseAfter(u64),
    /// Answer 200 with a made-up ETag without forwarding.
    FakeOk,
    /// Never answer (until the client goes away).
    Hang,
    /// Forward, then replace the response's ETag with one of the same form that is not the
    /// data's MD5 (what AWS answers for SSE-KMS objects).
    OpaqueEtag,
}

/// Which requests a rule applies to, and how often.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    /// A substring of the query string (`partNumber`, `uploads`, `uploadId`).
    pub query: Option<&'static str>,
    /// A substring of the path.
    pub path: Option<String>,
    /// A request header that must be present (lower case).
    pub header: Option<&'static str>,
    /// Requests matched before the rule retires (`usize::MAX`: forever). The first `skip`
    /// matching requests are forwarded untouched.
    pub times: usize,
    pub skip: usize,
    pub action: Action,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            method: None,
            query: None,
            path: None,
            header: None,
            times: usize::MAX,
            skip: 0,
            action,
        }
    }
    pub fn method(mut self, m: &'static str) -> Rule {
        self.method = Some(m);
        self
    }
    pub fn query(mut self, q: &'static str) -> Rule {
        self.query = Some(q);
        self
    }
    pub fn path(mut self, p: &str) -> Rule {
        self.path = Some(p.to_owned());
        self
    }
    pub fn header(mut self, h: &'static str) -> Rule {
        self.header = Some(h);
        self
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    fn matches(&self, method: &str, path: &str, query: &str, headers: &hyper::HeaderMap) -> bool {
        self.method.is_none_or(|m| m == method)
            && self.header.is_none_or(|h| headers.contains_key(h))
            && self.query.is_none_or(|q| query.contains(q))
            && self.path.as_deref().is_none_or(|p| path.contains(p))
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// `METHOD path?query -> what happened`, in order.
    log: Vec<String>,
}

/// The running proxy (on its own thread and runtime); stops when dropped.
pub struct S3Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: SocketAddr) -> S3Proxy {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(serve(listener, upstream, st, stop_rx));
        });
        S3Proxy {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, rule: Rule) {
        self.state.lock().expect("proxy state").rules.push(rule);
    }

    pub fn clear(&self) {
        self.state.lock().expect("proxy state").rules.clear();
    }

    /// What the proxy saw and did, one line per request.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().expect("proxy state").log.clone()
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let client: hyper_util::client::legacy::Client<_, Incoming> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = &mut stop => return,
        };
        let state = state.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let client = client.clone();
                async move { handle(req, upstream, state, client).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Incoming,
    >,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    // The request headers a test may want to see (encryption, storage class, conditions).
    let noted: Vec<String> = [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-storage-class",
        "if-none-match",
    ]
    .iter()
    .filter_map(|h| {
        req.headers()
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{h}={v}"))
    })
    .collect();
    let action = {
        let mut st = state.lock().expect("proxy state");
        let mut chosen = None;
        for r in st.rules.iter_mut() {
            if r.times > 0 && r.matches(&method, &path, &query, req.headers()) {
                if r.skip > 0 {
                    r.skip -= 1;
                    break;
                }
                if r.times != usize::MAX {
                    r.times -= 1;
                }
                chosen = Some(r.action.clone());
                break;
            }
        }
        st.log.push(format!(
            "{method} {path}?{query} -> {}{}",
            chosen
                .as_ref()
                .map_or("forward".to_owned(), |a| format!("{a:?}")),
            if noted.is_empty() {
                String::new()
            } else {
                format!(" [{}]", noted.join(" "))
            }
        ));
        chosen
    };
    match action {
        Some(Action::Status(code, s3_code)) => {
            // Read the body so the client is not blocked sending it.
            let _ = req.into_body().collect().await;
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3_code}</Code><Message>injected by the test proxy</Message></Error>"
            );
            let mut resp = Response::builder()
                .status(code)
                .header("content-type", "application/xml");
            if s3_code == "RequestTimeTooSkewed" {
                // A server whose clock is an hour off ours: its Date says so, also on HEAD
                // answers, which carry no error document.
                resp = resp.header(
                    "date",
                    http_date(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
                );
            }
            Ok(resp.body(full(body.into())).expect("response"))
        }
        Some(Action::Hang) => {
            std::future::pending::<()>().await;
            unreachable!("pending never completes")
        }
        Some(Action::Drop) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by the test proxy",
        )),
        Some(Action::DropResponse) => {
            let resp = forward(req, upstream, &client).await?;
            let _ = resp.into_body().collect().await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "response dropped by the test proxy",
            ))
        }
        Some(Action::FakeOk) => {
            let _ = req.into_body().collect().await;
            Ok(Response::builder()
                .status(200)
                .header("etag", "\"00000000000000000000000000000000\"")
                .body(full(Bytes::new()))
                .expect("response"))
        }
        other => {
            let resp = forward(req, upstream, &client).await?;
            match other {
                Some(Action::CutResponseAfter(n)) => Ok(cut(resp, n)),
                Some(Action::OpaqueEtag) => {
                    let (mut parts, body) = resp.into_parts();
                    if let Some(old) = parts.headers.get("etag").and_then(|v| v.to_str().ok()) {
                        // Keep a multipart ETag's `-N` suffix: the same form, other bytes.
                        let suffix = old
                            .trim_matches('"')
                            .split_once('-')
                            .map(|(_, n)| format!("-{n}"))
                            .unwrap_or_default();
                        let fake = format!("\"{}{suffix}\"", crate::random_hex(16));
                        parts
                            .headers
                            .insert("etag", fake.parse().map_err(std::io::Error::other)?);
                    }
                    Ok(Response::from_parts(
                        parts,
                        body.map_err(std::io::Error::other).boxed(),
                    ))
                }
                _ => Ok(resp.map(|b| b.map_err(std::io::Error::other).boxed())),
            }
        }
    }
}

/// RFC 9110's IMF-fixdate, as servers write `Date`.
fn http_date(t: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|e: Infallible| match e {}).boxed()
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Incoming,
    >,
) -> Result<Response<Incoming>, std::io::Error> {
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    parts.uri = format!("http://{upstream}{pq}")
        .parse()
        .map_err(std::io::Error::other)?;
    client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(std::io::Error::other)
}

/// Passes `limit` bytes of the body, then fails it (hyper then drops the connection).
fn cut(resp: Response<Incoming>, limit: u64) -> Response<ProxyBody> {
    use futures::StreamExt as _;
    let (parts, body) = resp.into_parts();
    let mut sent = 0u64;
    let stream = http_body_util::BodyDataStream::new(body)
        .map(move |chunk| {
            let mut chunk = chunk.map_err(std::io::Error::other)?;
            if sent + chunk.len() as u64 > limit {
                let keep = usize::try_from(limit.saturating_sub(sent)).unwrap_or(0);
                chunk.truncate(keep);
                sent = limit;
                return Ok::<_, std::io::Error>((chunk, true));
            }
            sent += chunk.len() as u64;
            Ok((chunk, false))
        })
        .scan(false, |done, item| {
            if *done {
                return futures::future::ready(None);
            }
            let out = match item {
                Ok((chunk, true)) => {
                    *done = true;
                    // Deliver the allowed bytes, then an error on the next poll.
                    Some(vec![
                        Ok(chunk),
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "response cut by the test proxy",
                        )),
                    ])
                }
                Ok((chunk, false)) => Some(vec![Ok(chunk)]),
                Err(e) => Some(vec![Err(e)]),
            };
            futures::future::ready(out)
        })
        .flat_map(futures::stream::iter)
        .map(|r| r.map(hyper::body::Frame::data));
    let body = http_body_util::StreamBody::new(stream);
    Response::from_parts(parts, BodyExt::boxed(body))
}
