//! `lifeboat-agent --config agent.toml`, and the WAL clients PostgreSQL runs:
//! `lifeboat-agent wal-push --target NAME %p`, `lifeboat-agent wal-fetch --target NAME %f %p`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use lifeboat_common::logging;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "lifeboat-agent",
    version,
    about = "lifeboat agent: runs backups and restores next to the databases"
)]
struct Args {
    /// Agent config file (TOML).
    #[arg(long, short = 'c', env = "LIFEBOAT_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: logging::Format,
    /// Check the config and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive one WAL file through the running agent (PostgreSQL's archive_command).
    /// Exits 0 only once the file is durable in the repository.
    WalPush {
        #[command(flatten)]
        wal: WalArgs,
        /// The file, as PostgreSQL's %p gives it (relative to the data directory).
        path: PathBuf,
    },
    /// Write one archived WAL file (PostgreSQL's restore_command). Exits 1 if the repository
    /// does not have it.
    WalFetch {
        #[command(flatten)]
        wal: WalArgs,
        /// The file's name (%f).
        name: String,
        /// Where to write it (%p).
        path: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct WalArgs {
    /// The physical target, as named in the agent's config.
    #[arg(long)]
    target: String,
    /// The agent's WAL socket ([wal] socket in its config).
    #[arg(long, env = "LIFEBOAT_WAL_SOCKET", default_value = lifeboat_agent::wal::config::DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn main() -> ExitCode {
    // Before any thread exists (ADR 0032).
    let allocator_tuned = lifeboat_agent::memory::keep_large_buffers_out_of_heaps();
    let args = Args::parse();
    if let Some(command) = args.command {
        return wal_client(command);
    }
    logging::init(args.log_format, "info");
    if !allocator_tuned {
        tracing::warn!(
            "the C allocator refused a fixed mmap threshold: memory freed after a job may stay with the agent"
        );
    }
    let Some(config_path) = args.config else {
        eprintln!("error: --config (or LIFEBOAT_AGENT_CONFIG) is required to run the agent");
        return ExitCode::from(2);
    };
    let config = match lifeboat_agent::load_config(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{}: ok", config_path.display());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        match lifeboat_agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("failed to {e:#}");
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

/// Runs a WAL client. Its messages go to stderr, which PostgreSQL puts in its log; every
/// failure exits 1 (PostgreSQL retries an archive_command and reads a failed restore_command
/// as "not available"; codes above 125 would stop recovery instead).
fn wal_client(command: Command) -> ExitCode {
    use lifeboat_agent::wal::client::{self, Fetched, Pushed};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeboat-agent: error: start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match command {
            Command::WalPush { wal, path } => {
                match client::push(&wal.socket, &wal.target, &path).await? {
                    Pushed::Stored => {}
                    Pushed::AlreadyArchived => eprintln!(
                        "lifeboat-agent: {} was already archived with the same content",
                        path.display()
                    ),
                }
                anyhow::Ok(true)
            }
            Command::WalFetch { wal, name, path } => {
                match client::fetch(&wal.socket, &wal.target, &name, &path).await? {
                    Fetched::Written => Ok(true),
                    Fetched::Missing(why) => {
                        eprintln!("lifeboat-agent: {why}");
                        Ok(false)
                    }
                }
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lifeboat-agent: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("signal received, shutting down");
    shutdown.cancel();
}
