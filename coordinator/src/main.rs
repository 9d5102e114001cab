//! `lifeboat-coordinator`: parses flags, sets up logging and signals, binds the listeners and
//! runs the coordinator. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lifeboat_common::logging;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The lifeboat control plane: agents, jobs, the backup catalog, health and metrics.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-coordinator", version)]
struct Args {
    /// Configuration file (see deploy/coordinator.example.toml).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, value_name = "FORMAT", default_value = "human")]
    log_format: logging::Format,
    /// Once serving, write {"grpc":"ADDR","http":"ADDR"} here (atomically), so a caller that
    /// configured port 0 learns the ports.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Without a command: run the coordinator.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Catalog maintenance, with the coordinator stopped.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Copy a SQLite catalog into the PostgreSQL catalog that --config names (an empty
    /// database). Every table's row count is checked before the copy is committed; on any
    /// error nothing is written.
    Migrate {
        /// The SQLite catalog to copy: sqlite:///PATH/catalog.db
        #[arg(long, value_name = "URL")]
        from: String,
    },
}

fn main() -> ExitCode {
    // Before any thread exists (ADR 0037).
    let allocator_tuned = lifeboat_coordinator::memory::cap_heaps();
    let args = Args::parse();
    logging::init(args.log_format, "info");
    if !allocator_tuned {
        tracing::warn!(
            "the C allocator refused a cap on its heaps: memory use with many agents may be higher"
        );
    }
    let Some(config_path) = &args.config else {
        eprintln!("error: --config PATH is required");
        return ExitCode::from(2);
    };
    let config = match lifeboat_coordinator::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Catalog(CatalogCommand::Migrate { from })) = &args.command {
        return match runtime.block_on(lifeboat_coordinator::catalog_cli::migrate(&config, from)) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match runtime.block_on(serve(config, args.ready_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: lifeboat_coordinator::Config, ready_file: Option<PathBuf>) -> Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    let http = bind(&config, "server.http_listen", config.http_listen).await?;
    let ready = move |grpc: SocketAddr, http: SocketAddr| {
        move || match ready_file {
            Some(path) => write_ready_file(&path, grpc, http),
            None => Ok(()),
        }
    };
    let shared = matches!(
        config.catalog,
        lifeboat_coordinator::config::CatalogLocation::Postgres(_)
    );
    let http = http.into_std().context("take the HTTP listener")?;
    let mut held = None;
    if shared && config.standby_serves_operators {
        let schema = lifeboat_coordinator::catalog_schema(&config).await?;
        if schema != lifeboat_coordinator::CatalogSchema::Current {
            // This binary carries migrations the catalog lacks. Applying them now could change
            // the schema under an active coordinator of an older release: wait, closed, until
            // this one takes the lock (then it migrates) or the active one migrated.
            if schema == lifeboat_coordinator::CatalogSchema::Older {
                tracing::warn!(
                    "the catalog's schema is older than this coordinator's; it is upgraded only \
                     by the coordinator holding the catalog's lock, so this one stands by with \
                     its gRPC port closed until it takes the lock or the active coordinator is \
                     upgraded"
                );
            }
            match stand_by_closed(&config, &http, &shutdown, true).await? {
                Waited::Shutdown => return Ok(()),
                Waited::Lock(lock) => held = Some(lock),
                Waited::SchemaCurrent => {}
            }
        }
    }
    if held.is_none() && shared && config.standby_serves_operators {
        let http = TcpListener::from_std(http).context("take the HTTP listener back")?;
        // Both ports open now: while another coordinator is active on the catalog, this one
        // serves operators (ADR 0038) and refuses agents; with the catalog's lock it is active.
        let grpc = bind(&config, "server.grpc_listen", config.grpc_listen).await?;
        let grpc_addr = grpc.local_addr().context("read gRPC listener address")?;
        let http_addr = http.local_addr().context("read HTTP listener address")?;
        let locking = config.clone();
        let activation = lifeboat_coordinator::Activation::After(Box::pin(async move {
            if let Some(lock) = lifeboat_coordinator::catalog_lock(&locking).await? {
                // While this one stood by, a coordinator of a newer release may have migrated
                // the catalog (an error naming the upgrade; the lock goes with this process).
                let schema = lifeboat_coordinator::catalog_schema(&locking).await?;
                anyhow::ensure!(
                    schema == lifeboat_coordinator::CatalogSchema::Current,
                    "the catalog's schema is older than this coordinator's (was the catalog \
                     restored from an older backup?); start this coordinator again to upgrade it"
                );
                fence(lock);
            }
            Ok(())
        }));
        return lifeboat_coordinator::run_with_ready(
            config,
            grpc,
            http,
            shutdown,
            activation,
            ready(grpc_addr, http_addr),
        )
        .await;
    }
    // With `server.standby_serves_operators = false`, a coordinator standing by answers only
    // on its HTTP port (health, `lifeboat_coordinator_leader 0`); its gRPC port stays closed
    // until it is active, so one address can move between hosts.
    let lock = match held {
        Some(lock) => lock,
        None => match stand_by_closed(&config, &http, &shutdown, false).await? {
            Waited::Lock(lock) => lock,
            Waited::Shutdown | Waited::SchemaCurrent => return Ok(()),
        },
    };
    if let Some(lock) = lock {
        fence(lock);
    }
    let grpc = bind(&config, "server.grpc_listen", config.grpc_listen).await?;
    let http = TcpListener::from_std(http).context("take the HTTP listener back")?;
    let grpc_addr = grpc.local_addr().context("read gRPC listener address")?;
    let http_addr = http.local_addr().context("read HTTP listener address")?;

    lifeboat_coordinator::run_with_ready(
        config,
        grpc,
        http,
        shutdown,
        lifeboat_coordinator::Activation::Now,
        ready(grpc_addr, http_addr),
    )
    .await
}

/// How a closed standby's wait ended.
enum Waited {
    Shutdown,
    /// This coordinator holds the catalog's lock (`None`: SQLite, no lock to take).
    Lock(Option<lifeboat_coordinator::catalog::CatalogLock>),
    /// The catalog's schema became this binary's (the active coordinator migrated it).
    SchemaCurrent,
}

/// How often a standby waiting for the catalog's schema looks at it again.
const SCHEMA_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Stands by with the gRPC port closed, answering health on `http`, until this coordinator
/// takes the catalog's lock, a shutdown, or (with `until_current`) the catalog's schema is
/// the one this binary carries.
async fn stand_by_closed(
    config: &lifeboat_coordinator::Config,
    http: &std::net::TcpListener,
    shutdown: &CancellationToken,
    until_current: bool,
) -> Result<Waited> {
    let standby_stop = CancellationToken::new();
    let standby = tokio::spawn(lifeboat_coordinator::standby::serve(
        TcpListener::from_std(http.try_clone().context("share the HTTP listener")?)
            .context("share the HTTP listener")?,
        standby_stop.clone(),
    ));
    let schema = async {
        if !until_current {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(SCHEMA_RECHECK).await;
            match lifeboat_coordinator::catalog_schema(config).await {
                Ok(lifeboat_coordinator::CatalogSchema::Current) => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<lifeboat_coordinator::catalog::CatalogError>(),
                            Some(lifeboat_coordinator::catalog::CatalogError::Newer(_))
                        )
                    }) =>
                {
                    return Err(e);
                }
                Err(e) => tracing::warn!("read the catalog's schema version: {e:#}"),
            }
        }
    };
    let waited = tokio::select! {
        lock = lifeboat_coordinator::catalog_lock(config) => lock.map(Waited::Lock),
        current = schema => current.map(|()| Waited::SchemaCurrent),
        () = shutdown.cancelled() => Ok(Waited::Shutdown),
    };
    standby_stop.cancel();
    match standby.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("standby HTTP server: {e}"),
        Err(e) => tracing::warn!("standby HTTP server: {e}"),
    }
    if matches!(waited, Ok(Waited::SchemaCurrent)) {
        tracing::info!(
            "the catalog's schema is now this coordinator's: serving operators while standing by"
        );
    }
    waited
}

/// Fencing: without the lock another coordinator may be active at any moment, so this one
/// stops at once, without draining. Agents resend what it did not acknowledge.
fn fence(lock: lifeboat_coordinator::catalog::CatalogLock) {
    tokio::spawn(async move {
        let why = lock.watch().await;
        tracing::error!("{why}; exiting so that a standby coordinator can take over");
        eprintln!(
            "error: {why}; exited so that a standby coordinator can take over (start this \
             one again to stand by)"
        );
        std::process::exit(1);
    });
}

async fn bind(
    config: &lifeboat_coordinator::Config,
    key: &str,
    addr: SocketAddr,
) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "listen on {addr} ({key} in {}); free the port or change the address",
            config.file.display()
        )
    })
}

/// SIGINT or SIGTERM starts a graceful shutdown.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("failed to listen for SIGTERM: {e}; only Ctrl-C stops the coordinator");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}

/// Writes the listening addresses as JSON: a temp file in the same directory, then a rename,
/// so a reader never sees half a file.
fn write_ready_file(path: &Path, grpc: SocketAddr, http: SocketAddr) -> Result<()> {
    use std::io::Write;
    let body = serde_json::json!({ "grpc": grpc.to_string(), "http": http.to_string() });
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .with_context(|| format!("--ready-file {} names no file", path.display()))?;
    let tmp = dir.unwrap_or_else(|| Path::new(".")).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("write --ready-file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
