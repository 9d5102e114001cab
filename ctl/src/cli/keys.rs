//! `lifeboat keys …` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lifeboat_common::names::TargetName;

use super::{WaitArg, parse::parse_target};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new age identity (private key) in a file of its own (mode 0600, never
    /// overwritten) and print its public key (recipient) and key id. Runs locally: no
    /// coordinator is needed
    Generate(KeysGenerateArgs),
    /// Which keys (by key id) protect which kept backups, which agents encrypt new backups to
    /// them, and which backups are stored in plaintext
    List(KeysListArgs),
    /// Re-encrypt the key objects of TARGET's encrypted backups (in every repository holding
    /// them) to their recipients plus --add minus --remove, on the target's agent, which must
    /// hold a key for them. Data objects are not rewritten
    Rotate(KeysRotateArgs),
    /// Write a printable recovery kit: every key id and public key in use, what each protects,
    /// and how to decrypt a backup by hand. Private keys are not in it
    Escrow(KeysEscrowArgs),
}

#[derive(Debug, Args)]
pub struct KeysGenerateArgs {
    /// The identity file to create (e.g. /etc/lifeboat/restore.key)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Only this target's backups, ENV/NAME
    #[arg(value_parser = parse_target)]
    pub target: Option<TargetName>,
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// Target whose backups are rotated, ENV/NAME
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// A recipient (age1…) to add; repeat for several
    #[arg(long = "add", value_name = "RECIPIENT")]
    pub add: Vec<String>,
    /// A recipient (age1…) to remove; repeat for several
    #[arg(long = "remove", value_name = "RECIPIENT")]
    pub remove: Vec<String>,
    /// Report what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct KeysEscrowArgs {
    /// The kit to create (never overwritten; mode 0600)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}
