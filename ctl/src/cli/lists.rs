//! `lifeboat agents list` and `lifeboat targets list` arguments: name order, whole by default.

use clap::Args;
use lifeboat_common::names::TargetName;

use super::parse::{parse_agent, parse_target};

#[derive(Debug, Args)]
pub struct AgentsListArgs {
    /// One page of at most N agents, in name order (at most 1000; default: every agent)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only the agents after this one by name (the previous page's last)
    #[arg(long, value_name = "NAME", value_parser = parse_agent)]
    pub after: Option<String>,
}

#[derive(Debug, Args)]
pub struct TargetsListArgs {
    /// One page of at most N targets, in name order (at most 1000; default: every target)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only the targets after this one by name, ENV/NAME (the previous page's last)
    #[arg(long, value_name = "TARGET", value_parser = parse_target)]
    pub after: Option<TargetName>,
}
