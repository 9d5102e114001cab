//! One module per command group. Each takes its parsed arguments, the global options and the
//! stdout writer, and returns an error for `main` to print.

use std::io::Write;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub mod agents;
pub mod audit;
pub mod backup;
pub mod catalog;
pub mod drill;
pub mod jobs;
pub mod keys;
pub mod pitr;
mod pki;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod targets;
pub mod whoami;

pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Pki(cmd) => pki::run(cmd, global.output, out),
        Command::Whoami => whoami::run(global, out).await,
        Command::Agents(cmd) => agents::run(cmd, global, out).await,
        Command::Targets(cmd) => targets::run(cmd, global, out).await,
        Command::Backup(cmd) => backup::run(cmd, global, out).await,
        Command::Restore(args) => restore::run(args, global, out).await,
        Command::Jobs(cmd) => jobs::run(cmd, global, out).await,
        Command::Schedule(cmd) => schedule::run(cmd, global, out).await,
        Command::Prune(args) => prune::run(args, global, out).await,
        Command::Catalog(cmd) => catalog::run(cmd, global, out).await,
        Command::Audit(cmd) => audit::run(cmd, global, out).await,
        Command::Pitr(cmd) => pitr::run(cmd, global, out).await,
        Command::Drill(cmd) => drill::run(cmd, global, out).await,
        Command::Globals(crate::cli::GlobalsCommand::Restore(args)) => {
            restore::globals(args, global, out).await
        }
        Command::Keys(cmd) => keys::run(cmd, global, out).await,
    }
}
