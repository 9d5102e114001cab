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

/// Entries the CLI asks for per call when it lists every agent or target.
const WHOLE_LIST_PAGE: u32 = 1000;

/// A list in name order read page by page: with `limit`, the one page after `after` and the
/// cursor of the next one if more follow; without, every page (`WHOLE_LIST_PAGE` entries per
/// call) and no cursor. `fetch(after, limit)` answers a page and whether more follow.
async fn by_name<T, F, Fut>(
    limit: Option<u32>,
    after: Option<String>,
    name_of: impl Fn(&T) -> String,
    mut fetch: F,
) -> Result<(Vec<T>, Option<String>)>
where
    F: FnMut(String, u32) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, bool)>>,
{
    let mut all = Vec::new();
    let mut after = after.unwrap_or_default();
    loop {
        let (page, more) = fetch(after.clone(), limit.unwrap_or(WHOLE_LIST_PAGE)).await?;
        let last = page.last().map(&name_of);
        all.extend(page);
        match (more, last) {
            (true, Some(last)) if limit.is_some() => return Ok((all, Some(last))),
            (true, Some(last)) => after = last,
            _ => return Ok((all, None)),
        }
    }
}

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
