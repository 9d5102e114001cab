//! `lifeboat-agent --config agent.toml`

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
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
    config: PathBuf,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: logging::Format,
    /// Check the config and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format, "info");
    let config = match lifeboat_agent::load_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{}: ok", args.config.display());
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
