//! `lifeboat`: the operator CLI. Parses the command line, runs one command against the
//! coordinator (or the local PKI), prints any error once and maps it to the exit status:
//! 0 ok, 1 operation failed, 2 usage or configuration error. A closed stdout is not an error.

mod cli;
mod client;
mod commands;
mod error;
mod export_hint;
mod output;
mod progress;
mod report_views;
mod schedule_views;
mod views;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::error::Outcome;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Also --help and --version, which print to stdout and exit 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
        .and_then(|runtime| runtime.block_on(commands::run(cli, &mut out)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let outcome = Outcome::of(&e);
            if outcome != Outcome::BrokenPipe {
                output::stderr_line(&format!("error: {e:#}"));
            }
            outcome.exit_code()
        }
    }
}
