//! lifeboat-coordinator: the control plane. Knows agents, targets, jobs and the backup
//! catalog; hands jobs to agents over their sessions; serves operators the Control API, and
//! `/health` and `/metrics` over HTTP. Never holds a database or storage credential.
//!
//! Tests and `main.rs` bind their listeners and call [`run`].

pub mod alerts;
pub mod audit;
mod bridge;
mod cancels;
pub mod catalog;
pub mod catalog_cli;
mod claims;
pub mod config;
pub mod copies;
mod dispatch;
pub mod drills;
pub mod error;
mod grpc;
pub mod health;
mod history;
mod http;
mod hub;
mod jobs;
mod keys;
mod lease;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod objectives;
mod parts;
pub mod pitr;
pub mod rebuild;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod standby;
mod to_agent;
mod wire;

use std::{future::Future, path::Path, pin::Pin, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::{Config, Role};

/// How long shutdown waits for open connections and tasks before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and validates the config file at `path`, and checks the files it names.
pub fn load_config(path: &Path) -> Result<Config> {
    config::load(path)
}

/// When a coordinator starts acting as the active one of its catalog: holding agent
/// sessions, dispatching jobs and running the scheduled work (ADR 0038).
pub enum Activation {
    /// At once: a SQLite catalog (one coordinator per file), or the lock is already held.
    Now,
    /// Once this resolves (the catalog's lock is taken). Until then the coordinator serves
    /// operators only: agents are refused, so they go to the active one. An error stops it.
    After(Pin<Box<dyn Future<Output = Result<()>> + Send>>),
}

/// Runs the coordinator on the given listeners until `shutdown` is cancelled, then shuts down
/// in order: stop accepting, end agent sessions and watches, drain, stop background work,
/// close the catalog.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    run_with_ready(config, grpc, http, shutdown, Activation::Now, || Ok(())).await
}

/// [`run`], active as `activation` says, calling `on_ready` once the coordinator is active and
/// both servers are set up (used by `main` to write `--ready-file`).
pub async fn run_with_ready(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
    activation: Activation,
    on_ready: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<()> {
    // Fail on a bad certificate or key before touching the catalog.
    lifeboat_common::tls::server_config(&config.tls)
        .context("load the coordinator's TLS certificate and key")?;
    let (catalog, postgres) = match &config.catalog {
        config::CatalogLocation::Sqlite(path) => (
            catalog::Catalog::open_sqlite(path)
                .await
                .with_context(|| format!("open the catalog ({})", config.file.display()))?,
            None,
        ),
        config::CatalogLocation::Postgres(pg) => {
            let settings = pg
                .connect_settings()
                .context("read catalog.password_file")?;
            if settings.tls == catalog::PostgresTls::Disable {
                tracing::warn!(
                    url = %settings.url,
                    "catalog.tls = \"disable\": the catalog's traffic, password included, is \
                     not encrypted"
                );
            }
            let opening = || format!("open the catalog ({})", config.file.display());
            // Only the coordinator holding the catalog's lock migrates it: one standing by
            // would change the schema under the active one, which may be of an older release.
            let catalog = if matches!(activation, Activation::Now) {
                catalog::Catalog::open_postgres(&settings)
                    .await
                    .with_context(opening)?
            } else {
                let catalog = catalog::Catalog::connect_postgres(&settings)
                    .await
                    .with_context(opening)?;
                let stand = catalog.schema_status().await.and_then(|s| s.stand());
                anyhow::ensure!(
                    stand.with_context(opening)? == CatalogSchema::Current,
                    "{}: the catalog's schema is older than this coordinator's; it is upgraded by \
                     the coordinator that holds the catalog's lock",
                    opening()
                );
                catalog
            };
            (catalog, Some(settings))
        }
    };
    let metrics = Arc::new(metrics::Metrics::new().context("register metrics")?);
    let parts = parts::Parts::new(Arc::new(config), catalog, metrics);
    let hub = parts.hub.clone();
    let token = parts
        .config
        .http_token()
        .map_err(|e| anyhow::anyhow!("server.http_token_file: {e}"))?;

    // The loops below the edges, each with the parts it uses. Those of every coordinator
    // start now; the active one's when it becomes active.
    let background = CancellationToken::new();
    let workers = TaskTracker::new();
    if let Some(settings) = postgres {
        bridge::start(
            bridge::Bridge {
                hub: hub.clone(),
                catalog: parts.catalog.clone(),
                jobs: parts.jobs.clone(),
                metrics: parts.metrics.clone(),
                instance: lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc()),
            },
            settings,
            &workers,
            background.clone(),
        );
    }
    workers.spawn(audit::run_denied(
        parts.catalog.clone(),
        parts.denied.clone(),
        background.clone(),
    ));
    let failed = Arc::new(std::sync::Mutex::new(None));
    let on_ready_now = match activation {
        Activation::Now => {
            hub.become_active();
            start_active(&parts, &workers, &background);
            Some(on_ready)
        }
        Activation::After(until) => {
            let parts = parts.clone();
            let tracker = workers.clone();
            let background = background.clone();
            let shutdown = shutdown.clone();
            let failed = failed.clone();
            workers.spawn(async move {
                let activated = tokio::select! {
                    r = until => r,
                    () = shutdown.cancelled() => return,
                };
                if let Err(e) = activated.and_then(|()| {
                    parts.hub.become_active();
                    start_active(&parts, &tracker, &background);
                    on_ready()
                }) {
                    *failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    shutdown.cancel();
                    return;
                }
                tracing::info!(
                    "this coordinator is now active: it takes the agent sessions and runs the \
                     scheduled work"
                );
            });
            None
        }
    };

    let grpc_addr = grpc.local_addr().context("read gRPC listener address")?;
    let http_addr = http.local_addr().context("read HTTP listener address")?;
    let grpc_server = grpc::serve(parts.clone(), grpc, shutdown.clone());
    let http = http::Limited::new(
        http,
        parts.config.http_max_connections,
        parts.config.http_idle_timeout,
    );
    let http_server = axum::serve(http, http::router(parts.clone(), token))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    if let Some(on_ready) = on_ready_now {
        on_ready()?;
    }
    tracing::info!(grpc = %grpc_addr, http = %http_addr, "coordinator serving");

    // A server that stops on its own takes the other down with it. After shutdown starts,
    // each gets DRAIN_TIMEOUT to finish.
    let bounded = |name: &'static str| {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
            tracing::warn!("{name} server did not drain within {DRAIN_TIMEOUT:?}; stopping it");
        }
    };
    let grpc_done = async {
        let result = tokio::select! {
            r = grpc_server => r,
            () = bounded("gRPC") => Ok(()),
        };
        shutdown.cancel();
        result
    };
    let http_done = async {
        let result = tokio::select! {
            r = http_server.into_future() => r.context("serve HTTP"),
            () = bounded("HTTP") => Ok(()),
        };
        shutdown.cancel();
        result
    };
    let end_streams = async {
        shutdown.cancelled().await;
        tracing::info!("shutting down: ending agent sessions and job watches");
        hub.streams.cancel();
    };
    let (grpc_result, http_result, ()) = tokio::join!(grpc_done, http_done, end_streams);

    hub.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, hub.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("session tasks did not end within {DRAIN_TIMEOUT:?}");
    }
    background.cancel();
    workers.close();
    workers.wait().await;
    parts.catalog.close().await;
    tracing::info!("coordinator stopped");
    let failed = failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match failed {
        Some(e) => Err(e),
        None => grpc_result.and(http_result),
    }
}

/// Starts the active coordinator's loops: dispatch, leases, schedules, retention, copies,
/// alerts and history.
fn start_active(parts: &parts::Parts, workers: &TaskTracker, background: &CancellationToken) {
    let hub = parts.hub.clone();
    workers.spawn(dispatch::run(
        dispatch::Dispatcher {
            hub: hub.clone(),
            catalog: parts.catalog.clone(),
            jobs: parts.jobs.clone(),
            listings: parts.listings.clone(),
        },
        background.clone(),
    ));
    workers.spawn(lease::run(
        hub.clone(),
        parts.catalog.clone(),
        parts.jobs.clone(),
        parts.config.jobs.clone(),
        background.clone(),
    ));
    workers.spawn(scheduler::run(
        scheduler::Scheduler {
            catalog: parts.catalog.clone(),
            jobs: parts.jobs.clone(),
            config: Arc::new(parts.config.scheduler.clone()),
            health: parts.scheduler.clone(),
        },
        scheduler::system_clock(),
        background.clone(),
    ));
    workers.spawn(retention::prune::resume_deletes(
        parts.catalog.clone(),
        parts.jobs.clone(),
    ));
    workers.spawn(retention::auto::run(
        retention::auto::AutoPrune {
            hub: hub.clone(),
            catalog: parts.catalog.clone(),
            jobs: parts.jobs.clone(),
            retention: Arc::new(parts.config.retention.clone()),
        },
        scheduler::system_clock(),
        background.clone(),
    ));
    workers.spawn(copies::run(
        copies::AutoCopy {
            hub: hub.clone(),
            catalog: parts.catalog.clone(),
            jobs: parts.jobs.clone(),
        },
        background.clone(),
    ));
    workers.spawn(retention::markers::run(
        hub.clone(),
        parts.catalog.clone(),
        parts.jobs.clone(),
        background.clone(),
    ));
    workers.spawn(alerts::run(
        alerts::Alerts {
            hub,
            catalog: parts.catalog.clone(),
            config: parts.config.clone(),
            metrics: parts.metrics.clone(),
        },
        background.clone(),
    ));
    workers.spawn(history::run(
        parts.catalog.clone(),
        parts.config.jobs.clone(),
        background.clone(),
    ));
}

pub use catalog::health::SchemaStand as CatalogSchema;

/// With a PostgreSQL catalog: where its schema stands, so that a coordinator standing by
/// serves on it only without migrating it. A catalog a newer release upgraded is an error
/// naming the upgrade. Always current for SQLite (one process per file, which migrates it).
pub async fn catalog_schema(config: &Config) -> Result<CatalogSchema> {
    let config::CatalogLocation::Postgres(pg) = &config.catalog else {
        return Ok(CatalogSchema::Current);
    };
    let settings = pg
        .connect_settings()
        .context("read catalog.password_file")?;
    let opening = || format!("open the catalog ({})", config.file.display());
    let catalog = catalog::Catalog::connect_postgres(&settings)
        .await
        .with_context(opening)?;
    let stand = catalog.schema_status().await.and_then(|s| s.stand());
    catalog.close().await;
    stand.with_context(opening)
}

/// With a PostgreSQL catalog: takes the catalog's lock, waiting (standby) while another
/// coordinator holds it. `None` for SQLite (one process per file).
pub async fn catalog_lock(config: &Config) -> Result<Option<catalog::CatalogLock>> {
    let config::CatalogLocation::Postgres(pg) = &config.catalog else {
        return Ok(None);
    };
    let settings = pg
        .connect_settings()
        .context("read catalog.password_file")?;
    let lock = settings
        .acquire_lock(|| {
            tracing::info!(
                catalog = %settings.url,
                "another coordinator is active on this catalog; standing by until it stops"
            )
        })
        .await
        .with_context(|| format!("take the catalog's lock ({})", config.file.display()))?;
    tracing::info!(catalog = %settings.url, "holding the catalog's lock: this coordinator is active");
    Ok(Some(lock))
}
