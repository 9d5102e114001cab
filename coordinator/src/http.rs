//! Plain HTTP for probes, dashboards and Prometheus. The JSON documents are described in
//! docs/monitoring.md.
//!
//! | path | 200 | 503 |
//! |---|---|---|
//! | `/health` | the process serves requests | never |
//! | `/health/ready` | catalog answers, schema current, not shutting down | otherwise |
//! | `/health/detailed` | catalog answers (the body tells the rest) | catalog unreachable |
//! | `/health/backups` | no selected target is critical | a target is critical, or catalog unreachable |
//! | `/metrics` | always (`lifeboat_catalog_up` says whether the catalog answered) | never |
//!
//! Every endpoint but `/health` answers from one [`Reading`] of the catalog, taken at most
//! once per `server.health_cache_ms` with one read in flight, so a flood of requests costs the
//! catalog one read per interval. With `server.http_token_file`, `/health/detailed` and
//! `/health/backups` need `Authorization: Bearer TOKEN` (401 otherwise).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use lifeboat_common::secret::Secret;
use serde_json::{Value, json};

use crate::{
    alerts::model::Incident,
    catalog::health::{JobFacts, SchemaStatus, Snapshot},
    health::{Report, Status, TargetHealth},
    model::JobKind,
    parts::Parts,
};

/// A probe must answer quickly even when the catalog hangs.
pub(crate) const CATALOG_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP handlers share.
pub struct Http {
    parts: Parts,
    cache: HealthCache,
    token: Option<Secret<String>>,
}

pub fn router(parts: Parts, token: Option<Secret<String>>) -> Router {
    let cache = HealthCache::new(parts.config.health_cache);
    // Until this coordinator is active (a standby serving operators), the standby's answers.
    let hub = parts.hub.clone();
    let standby = crate::standby::router(Some(parts.catalog.clone()));
    let state = Arc::new(Http {
        parts,
        cache,
        token,
    });
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route("/health/backups", get(backups))
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let active = hub.is_active();
                let mut standby = standby.clone();
                async move {
                    if active {
                        next.run(req).await
                    } else {
                        // A Router is always ready and never fails.
                        match tower::Service::call(&mut standby, req).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                }
            },
        ))
}

/// The process answers (also on a standby, with its role).
async fn live() -> Json<Value> {
    Json(json!({ "status": "alive", "role": "active" }))
}

/// One read of everything the endpoints report from the catalog. Errors are texts for the
/// body (no SQL details; the log has them).
#[derive(Debug)]
pub struct Reading {
    pub at_ms: i64,
    pub catalog: Result<(), String>,
    pub schema: Result<SchemaStatus, String>,
    pub snapshot: Result<Snapshot, String>,
    pub running: Result<Vec<(JobKind, i64)>, String>,
    pub incidents: Vec<Incident>,
}

impl Reading {
    async fn take(parts: &Parts) -> Self {
        let at_ms = lifeboat_common::time::now_ms();
        let catalog = with_deadline("reach the catalog", parts.catalog.ping()).await;
        if let Err(e) = &catalog {
            return Self {
                at_ms,
                catalog: Err(e.clone()),
                schema: Err(e.clone()),
                snapshot: Err(e.clone()),
                running: Err(e.clone()),
                incidents: Vec::new(),
            };
        }
        Self {
            at_ms,
            catalog,
            schema: with_deadline("read the catalog schema", parts.catalog.schema_status()).await,
            snapshot: with_deadline("read the catalog", parts.catalog.health_snapshot(at_ms)).await,
            running: with_deadline("count running jobs", parts.catalog.running_counts()).await,
            incidents: with_deadline("read open incidents", parts.catalog.open_incidents())
                .await
                .unwrap_or_default(),
        }
    }
}

/// The latest [`Reading`], taken again when older than the interval. One read runs at a
/// time; requests that waited for it use its result instead of reading again.
pub struct HealthCache {
    every: Duration,
    latest: tokio::sync::Mutex<Option<(Instant, Arc<Reading>)>>,
    /// Readings taken so far (a request that sees it change while waiting shares the new one).
    taken: AtomicU64,
}

impl HealthCache {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            latest: tokio::sync::Mutex::new(None),
            taken: AtomicU64::new(0),
        }
    }

    pub async fn get(&self, parts: &Parts) -> Arc<Reading> {
        let seen = self.taken.load(Ordering::Acquire);
        let mut latest = self.latest.lock().await;
        if let Some((at, r)) = &*latest
            && (at.elapsed() < self.every || self.taken.load(Ordering::Acquire) != seen)
        {
            return r.clone();
        }
        let r = Arc::new(Reading::take(parts).await);
        *latest = Some((Instant::now(), r.clone()));
        self.taken.fetch_add(1, Ordering::AcqRel);
        parts.metrics.health_reading_taken();
        r
    }
}

/// `None` when the request may see the detail endpoints, else the 401 to send.
fn unauthorized(http: &Http, headers: &HeaderMap) -> Option<Response> {
    let token = http.token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose().as_bytes()).into();
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({
                "status": "unauthorized",
                "error": "this endpoint needs the bearer token from server.http_token_file (Authorization: Bearer TOKEN)",
            })),
        )
            .into_response()
    })
}

fn ts(ms: i64) -> Value {
    lifeboat_common::time::rfc3339(ms).map_or(Value::Null, Value::String)
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn respond(code: StatusCode, body: Value) -> Response {
    (code, Json(body)).into_response()
}

/// Runs a catalog read with a deadline; the error text is for the body (no SQL details).
async fn with_deadline<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CATALOG_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!("failed to {what}: {e}");
            Err(format!("failed to {what}; see the coordinator log"))
        }
        Err(_) => {
            tracing::warn!(
                "failed to {what}: no answer within {} s",
                CATALOG_TIMEOUT.as_secs()
            );
            Err(format!(
                "failed to {what}: no answer within {} s",
                CATALOG_TIMEOUT.as_secs()
            ))
        }
    }
}

/// Liveness: the process serves requests.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

fn schema_json(s: &SchemaStatus) -> Value {
    json!({
        "status": if s.is_current() { "ok" } else { "critical" },
        "expected": s.expected,
        "applied": s.applied,
        "failed": s.dirty,
    })
}

/// Readiness: the catalog answers and its schema is the one this binary expects.
async fn ready(State(http): State<Arc<Http>>) -> Response {
    let reading = http.cache.get(&http.parts).await;
    let catalog = &reading.catalog;
    let schema = &reading.schema;
    let shutting_down = http.parts.hub.streams.is_cancelled();
    let ok =
        catalog.is_ok() && schema.as_ref().is_ok_and(SchemaStatus::is_current) && !shutting_down;
    let backend = http.parts.catalog.backend().as_str();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        // Only the active coordinator of a catalog serves this router; a standby answers
        // from standby.rs.
        "role": "active",
        "checks": {
            "catalog": match catalog {
                Ok(()) => json!({ "status": "ok", "backend": backend }),
                Err(e) => json!({ "status": "critical", "backend": backend, "error": e }),
            },
            "migrations": match schema {
                Ok(s) => schema_json(s),
                Err(e) => json!({ "status": "critical", "error": e }),
            },
            "shutting_down": shutting_down,
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond(code, body)
}

fn job_json(j: &JobFacts) -> Value {
    json!({
        "job_id": j.job_id,
        "backup_id": j.backup_id,
        "outcome": j.state.as_str(),
        "finished_at": ts(j.finished_at_ms),
        "duration_seconds": j.duration_ms().map(secs),
        "reason": crate::health::public_reason(&j.error),
    })
}

fn drill_json(d: &crate::model::Drill) -> Value {
    json!({
        "job_id": d.job_id,
        "backup_id": d.backup_id,
        "drill_target": d.drill_target.to_string(),
        "outcome": d.outcome.as_str(),
        "finished_at": d.finished_at_ms.map(ts),
        "rto_seconds": d.rto_ms.map(|ms| ms as f64 / 1000.0),
        "reason": crate::health::public_reason(&d.error),
    })
}

fn target_json(t: &TargetHealth) -> Value {
    let b = t.last_backup.as_ref();
    json!({
        "target": t.target,
        "environment": t.environment,
        "name": t.name,
        "agent": t.agent,
        "status": t.status,
        "rpo_status": t.rpo_status,
        "reasons": t.reasons,
        "rpo_seconds": t.objective.rpo.as_secs(),
        "rto_seconds": t.objective.rto.as_secs(),
        "last_success_at": b.map(|b| ts(b.recorded_at_ms)),
        "age_seconds": t.recovery_point_age_ms.map(secs),
        "last_backup_id": b.map(|b| b.backup_id.clone()),
        "last_raw_size_bytes": b.map(|b| b.raw_size),
        "last_stored_size_bytes": b.map(|b| b.stored_size),
        "last_duration_seconds": b.map(|b| secs((b.finished_at_ms - b.started_at_ms).max(0))),
        "last_backup_verify_status": b.map(|b| b.verify_status.as_str()),
        "last_failure": t.last_failure.as_ref().map(|j| json!({
            "job_id": j.job_id,
            "at": ts(j.finished_at_ms),
            "reason": crate::health::public_reason(&j.error),
        })),
        "last_verify": t.last_verify.as_ref().map(job_json),
        "last_restore": t.last_restore.as_ref().map(job_json),
        "last_drill": t.drill.last.as_ref().map(drill_json),
        "last_drill_success": t.drill.last_success.as_ref().map(drill_json),
        "drill_scheduled": t.drill.scheduled,
        "measured_rto_seconds": t.drill.measured_rto.map(|d| d.as_secs_f64()),
        "rto_met": t.drill.rto_met,
        "copies": t.copies.iter().map(|c| json!({
            "repository": c.repository,
            "newest_backup_id": c.newest.as_ref().map(|(id, _)| id.clone()),
            "newest_backup_at": c.newest.as_ref().map(|(_, at)| ts(*at)),
            "behind": c.behind,
            "last_failure": c.last_failure.as_ref().map(|j| json!({
                "job_id": j.job_id,
                "backup_id": j.backup_id,
                "at": ts(j.finished_at_ms),
                "reason": crate::health::public_reason(&j.error),
            })),
        })).collect::<Vec<_>>(),
        "registered_at": ts(t.first_seen_ms),
    })
}

/// A physical target's recoverable window and WAL archive as its agent last reported it
/// (`lifeboat pitr window`); `None` for targets whose agent reports no archive.
async fn pitr_json(parts: &Parts, target: &str) -> Option<Value> {
    let name = target.parse::<lifeboat_common::names::TargetName>().ok()?;
    let reported = parts.wal.get(&name)?;
    let physical: Vec<_> = match parts.catalog.list_backups(Some(target), u32::MAX).await {
        Ok(b) => b.into_iter().filter(|b| b.is_physical()).collect(),
        Err(e) => return Some(json!({ "error": format!("read the base backups: {e}") })),
    };
    let w = &reported.status;
    let window = crate::pitr::window(&physical, Some(w));
    Some(json!({
        "earliest": window.map(|w| ts(w.0)),
        "latest": window.map(|w| ts(w.1)),
        "base_backups": physical.len(),
        "last_archived": w.last_archived.as_ref().map(|l| l.0.clone()),
        "last_archived_at": w.last_archived.as_ref().map(|l| ts(l.1)),
        "gaps": w.gaps,
        "pending_segments": w.pending_segments,
        "archiver_failures": w.failed_count,
        "reported_at": ts(reported.received_ms),
        "error": (!w.error.is_empty()).then(|| w.error.clone()),
    }))
}

/// `?environment=ENV`: only that environment's targets (names are plain, no decoding needed).
fn environment_filter(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "environment")
        .map(|(_, v)| v.to_owned())
}

/// Per-target backup health against the declared RPO.
async fn backups(
    State(http): State<Arc<Http>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = unauthorized(&http, &headers) {
        return refused;
    }
    let parts = &http.parts;
    let environment = environment_filter(query.as_deref());
    let reading = http.cache.get(parts).await;
    let now = reading.at_ms;
    let snap = match &reading.snapshot {
        Ok(s) => s,
        Err(e) => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "critical", "error": e }),
            );
        }
    };
    let report = parts.hub.health_report(snap, &parts.config, now);
    let targets: Vec<&TargetHealth> = report
        .targets
        .iter()
        .filter(|t| environment.as_ref().is_none_or(|e| *e == t.environment))
        .collect();
    let status = targets.iter().map(|t| t.status).max().unwrap_or(Status::Ok);
    let mut counts: BTreeMap<&str, usize> = Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for t in &targets {
        *counts.entry(t.status.as_str()).or_default() += 1;
    }
    let mut target_values = Vec::with_capacity(targets.len());
    for t in &targets {
        let mut v = target_json(t);
        if let Some(p) = pitr_json(parts, &t.target).await {
            v["pitr"] = p;
        }
        target_values.push(v);
    }
    let body = json!({
        "status": status,
        "checked_at": ts(now),
        "warning_percent": parts.config.objectives.warning_percent,
        "counts": counts,
        "targets": target_values,
    });
    let code = if status == Status::Critical {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    respond(code, body)
}

/// Everything at once: catalog, agents, targets, running jobs, open incidents.
async fn detailed(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&http, &headers) {
        return refused;
    }
    let parts = &http.parts;
    let reading = http.cache.get(parts).await;
    let now = reading.at_ms;
    let unavailable = |e: String| {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "critical",
                "checked_at": ts(now),
                "catalog": { "status": "critical", "error": e },
            }),
        )
    };
    let schema = match &reading.schema {
        Ok(s) => s,
        Err(e) => return unavailable(e.clone()),
    };
    let snap = match &reading.snapshot {
        Ok(s) => s,
        Err(e) => return unavailable(e.clone()),
    };
    let running = reading.running.as_deref().unwrap_or_default();
    let incidents = &reading.incidents;
    let report = parts.hub.health_report(snap, &parts.config, now);
    let repos = parts.metrics.repository_stats();
    let catalog_status = if schema.is_current() {
        Status::Ok
    } else {
        Status::Critical
    };
    let sched = parts.scheduler.get();
    let (sched_status, sched_reasons) =
        crate::health::assess_scheduler(&sched, now, parts.hub.active_since_ms());
    let status = report.status().max(catalog_status).max(sched_status);
    let agents: Vec<Value> = report
        .agents
        .iter()
        .map(|a| {
            let repositories: Vec<Value> = repos
                .iter()
                .filter(|((agent, _), _)| *agent == a.name)
                .map(|(_, r)| {
                    json!({
                        "name": r.name,
                        "kind": r.kind,
                        "stale_uploads_aborted": r.stale_uploads_aborted,
                        "janitor_errors": r.janitor_errors,
                        "janitor_last_success_at": r.janitor_last_success_ms.map(ts),
                    })
                })
                .collect();
            json!({
                "name": a.name,
                "environment": a.environment,
                "version": a.version,
                "state": a.state,
                "status": a.status,
                "reasons": a.reasons,
                "last_seen_at": ts(a.last_seen_ms),
                "last_seen_seconds_ago": secs(now.saturating_sub(a.last_seen_ms).max(0)),
                "clock_skew_seconds": secs(a.clock_skew_ms),
                "clock_skew_status": a.clock_skew_status,
                "offline_since": a.offline_since_ms.map(ts),
                "repositories": repositories,
            })
        })
        .collect();
    let connected = report
        .agents
        .iter()
        .filter(|a| a.state != crate::health::AgentState::Offline)
        .count();
    let running: BTreeMap<&str, i64> = JobKind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str(),
                running.iter().find(|(r, _)| r == k).map_or(0, |(_, n)| *n),
            )
        })
        .collect();
    let body = json!({
        "status": status,
        "checked_at": ts(now),
        "version": env!("CARGO_PKG_VERSION"),
        "catalog": { "status": catalog_status, "migrations": schema_json(schema) },
        "agents": {
            "connected": connected,
            "total": report.agents.len(),
            "list": agents,
        },
        "targets": report.targets.iter().map(|t| json!({
            "target": t.target,
            "agent": t.agent,
            "status": t.status,
            "reasons": t.reasons,
            "age_seconds": t.recovery_point_age_ms.map(secs),
            "rpo_seconds": t.objective.rpo.as_secs(),
        })).collect::<Vec<_>>(),
        "scheduler": {
            "status": sched_status,
            "reasons": sched_reasons,
            "last_pass_at": sched.last_ok_ms.map(ts),
            "last_error": sched.last_error.as_ref().map(|(at, e)| json!({"at": ts(*at), "error": crate::health::public_reason(e)})),
            "schedules": sched.schedules,
            "paused": sched.paused,
            "next_run": sched.next_run.as_ref().map(|(t, kind, at)| json!({"target": t, "kind": kind, "at": ts(*at)})),
        },
        "jobs": { "running": running },
        "incidents": incidents.iter().map(|i| json!({
            "id": i.id,
            "kind": i.kind.as_str(),
            "severity": i.severity.as_str(),
            "subject": i.subject,
            "summary": i.summary,
            "opened_at": ts(i.opened_at_ms),
        })).collect::<Vec<_>>(),
    });
    respond(StatusCode::OK, body)
}

/// Prometheus text format. Gauges that mirror the catalog are rebuilt from it on each scrape.
async fn metrics(State(http): State<Arc<Http>>) -> Response {
    let parts = &http.parts;
    let reading = http.cache.get(parts).await;
    let (report, running, up) = match (&reading.snapshot, &reading.running) {
        (Ok(snap), Ok(running)) => (
            parts.hub.health_report(snap, &parts.config, reading.at_ms),
            running.as_slice(),
            true,
        ),
        _ => (Report::default(), &[][..], false),
    };
    parts.metrics.set_catalog_up(up);
    match parts.catalog.key_usage(None).await {
        Ok(mut usage) => {
            // Keys agents encrypt new backups to are listed even while they protect nothing.
            for t in parts.catalog.list_targets().await.unwrap_or_default() {
                for id in t.target.encryption.iter().flat_map(|e| &e.key_ids) {
                    usage
                        .keys
                        .entry(id.clone())
                        .or_default()
                        .key_id
                        .clone_from(id);
                }
            }
            parts.metrics.set_key_usage(&usage);
        }
        Err(e) => tracing::warn!("key usage for the metrics: {e}"),
    }
    match parts.metrics.render_with(
        &report,
        running,
        parts.hub.connected_agents().len(),
        &parts.config.alerts,
    ) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => crate::error::Error::Internal(format!("render metrics: {e:#}")).into_response(),
    }
}

/// The HTTP listener with bounds: at most `max` connections at once (a new one over that is
/// closed when accepted), and a connection that sends nothing for `idle` is closed, so slow or
/// silent clients cannot pile up.
pub struct Limited {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    idle: std::time::Duration,
    last_refusal_log: Option<std::time::Instant>,
}

impl Limited {
    pub fn new(inner: tokio::net::TcpListener, max: usize, idle: std::time::Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            idle,
            last_refusal_log: None,
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = LimitedIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        LimitedIo {
                            inner: stream,
                            idle: self.idle,
                            deadline: Box::pin(tokio::time::sleep(self.idle)),
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(_) => {
                    let now = std::time::Instant::now();
                    if self
                        .last_refusal_log
                        .is_none_or(|t| now.duration_since(t).as_secs() >= 10)
                    {
                        self.last_refusal_log = Some(now);
                        tracing::warn!(
                            peer = %addr,
                            "closed an HTTP connection: {} are already open (server.http_max_connections)",
                            self.max
                        );
                    }
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of [`Limited`]: reading fails with `TimedOut` once nothing has arrived for the
/// idle time.
pub struct LimitedIo {
    inner: tokio::net::TcpStream,
    idle: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for LimitedIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending => match this.deadline.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "HTTP client sent nothing for too long",
                ))),
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncWrite for LimitedIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
