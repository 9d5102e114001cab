//! The command line, as clap parses it. Everything that can be checked without the coordinator
//! (target names, ids, database names, sizes of numbers) is checked here, so bad input exits
//! with status 2 before any connection is made.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeboat_common::names::TargetName;
use lifeboat_proto::domain::{Recovery, RecoveryAction, RecoveryTarget};

mod keys;
mod lists;
mod parse;
pub use keys::*;
pub use lists::*;
use parse::*;

#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Operate lifeboat: back up, verify and restore databases through the coordinator",
    after_help = "Connection options may also come from LIFEBOAT_COORDINATOR, LIFEBOAT_CA, \
                  LIFEBOAT_CERT, LIFEBOAT_KEY and LIFEBOAT_SERVER_NAME.\n\
                  Exit status: 0 ok, 1 operation failed, 2 usage or configuration error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Coordinator URL, e.g. https://coord.example:7443; several separated by commas (the
    /// coordinators sharing one catalog) are tried in order
    #[arg(long, env = "LIFEBOAT_COORDINATOR", global = true, value_name = "URL")]
    pub coordinator: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate
    #[arg(long, env = "LIFEBOAT_CA", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This operator's certificate (PEM)
    #[arg(long, env = "LIFEBOAT_CERT", global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This operator's private key (PEM, mode 0600)
    #[arg(long, env = "LIFEBOAT_KEY", global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Name to check in the coordinator's certificate, when it differs from the URL's host
    #[arg(long, env = "LIFEBOAT_SERVER_NAME", global = true, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Output format: aligned columns for people, or one JSON document for programs
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Seconds to wait for the coordinator to answer a request
    #[arg(
        long,
        default_value_t = 30,
        global = true,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a development CA and issue certificates
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Show who the coordinator thinks you are
    Whoami,
    /// Agents known to the coordinator
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Databases that can be backed up and restored into
    #[command(subcommand)]
    Targets(TargetsCommand),
    /// Start, list, show and verify backups
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore a backup into a new (or, with --clean, an existing) database
    Restore(RestoreArgs),
    /// List, show, cancel and watch jobs
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// When targets are backed up: set, list, pause, resume, delete and preview schedules
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Apply the retention policies: show (--dry-run) or delete the backups they expire
    Prune(PruneArgs),
    /// Rebuild the catalog from the backups in the repositories
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// The audit trail: who did what, on what, and how it ended
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Point-in-time recovery of physical targets: the recoverable window, the archive's
    /// verification
    #[command(subcommand)]
    Pitr(PitrCommand),
    /// Restore drills: restore a backup into a throwaway database, check it, time it, drop it
    #[command(subcommand)]
    Drill(DrillCommand),
    /// A backup's globals (roles, memberships; MySQL/MariaDB accounts, grants): recreate them
    /// on a server
    #[command(subcommand)]
    Globals(GlobalsCommand),
    /// Encryption keys (age): generate one, list which keys protect which backups, rotate a
    /// target's backups to other keys, print a recovery kit
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore the newest good backup of TARGET (or --backup) into a new scratch database on
    /// the drill target, check hashes, size, every table's row count and the target's
    /// drill_checks, measure the time to a usable database (RTO), then drop the database
    Run(DrillRunArgs),
    /// Recorded drills, newest first: outcome, measured RTO, why one failed
    List(DrillListArgs),
}

#[derive(Debug, Args)]
pub struct DrillRunArgs {
    /// Target whose backup is drilled, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// Restore into a new scratch database on this target, ENV/NAME (default: TARGET itself)
    #[arg(long, value_parser = parse_target)]
    pub into: Option<TargetName>,
    /// The backup to drill (default: the newest good backup of TARGET)
    #[arg(long, value_parser = parse_backup_id)]
    pub backup: Option<String>,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct DrillListArgs {
    /// Only drills of this target (ENV/NAME)
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetName>,
    #[command(flatten)]
    pub limit: LimitArg,
    /// The next page: the drills after this one (the job id of the previous page's last drill)
    #[arg(long, value_name = "JOB_ID", value_parser = parse_job_id)]
    pub after: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GlobalsCommand {
    /// Recreate the roles and memberships (MySQL/MariaDB: accounts, roles and their grants)
    /// captured with a logical backup on a target's server, before restoring the database with
    /// its owners. Roles and accounts that exist are left as they are (reported skipped); the
    /// engine's and the provider's reserved ones, SUPERUSER roles and administrator accounts
    /// are refused (reported by name)
    Restore(GlobalsRestoreArgs),
}

#[derive(Debug, Args)]
pub struct GlobalsRestoreArgs {
    /// Backup id whose globals to restore, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
    /// Target whose server gets the roles, ENV/NAME (default: the backup's own target)
    #[arg(long, visible_alias = "to", value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<TargetName>,
    /// Also create roles with SUPERUSER and MySQL/MariaDB accounts with administrator
    /// privileges (needs the admin role; never on a managed provider)
    #[arg(long)]
    pub allow_superuser: bool,
    /// Print what would be created, skipped and refused; change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Subcommand)]
pub enum PitrCommand {
    /// The earliest and latest recoverable moment, the base backups, the WAL archive per
    /// timeline and any gaps
    Window {
        /// ENV/NAME
        #[arg(value_parser = parse_target)]
        target: TargetName,
    },
    /// Read the whole WAL archive back on the target's agent: every file against its SHA-256,
    /// timeline history files, and the chain of segments from each base backup (gaps named)
    Verify {
        /// ENV/NAME
        #[arg(value_parser = parse_target)]
        target: TargetName,
        #[command(flatten)]
        wait: WaitArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Operator actions and refusals, newest first
    List(AuditListArgs),
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Only this operator's actions (certificate name, e.g. alice)
    #[arg(long, value_name = "NAME", value_parser = parse_actor)]
    pub actor: Option<String>,
    /// Only this action, e.g. restore, restore_clean, prune, pin_backup, start_backup
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    pub action: Option<String>,
    /// Only entries whose object (target, backup or job id) contains this text
    #[arg(long, value_name = "TEXT")]
    pub object: Option<String>,
    /// Only entries of the last DURATION (e.g. 24h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<u64>,
    #[command(flatten)]
    pub limit: LimitArg,
    /// The next page: the entries after this one (the ID of the previous page's last entry)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub after: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Ask connected agents to list their repositories and record every backup found
    Rebuild(CatalogRebuildArgs),
}

#[derive(Debug, Args)]
pub struct CatalogRebuildArgs {
    /// Only this agent's repositories (default: every connected agent)
    #[arg(long, value_name = "AGENT", value_parser = parse_agent)]
    pub agent: Option<String>,
    /// Only repositories with this name, as the agents call them (default: all)
    #[arg(long, value_name = "NAME", value_parser = parse_repository)]
    pub repository: Option<String>,
    /// Report what would be added, updated and marked missing; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also record backups whose manifest names another environment than the agent that
    /// listed it (a repository shared across environments); refused otherwise
    #[arg(long)]
    pub trust_cross_environment: bool,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Set TARGET's schedule (replaces its current one)
    Set(ScheduleSetArgs),
    /// List every schedule, with its next and last run
    List(ScheduleListArgs),
    /// Stop starting scheduled runs of TARGET until it is resumed
    Pause(ScheduleTargetArg),
    /// Start scheduled runs of TARGET again (runs missed while paused are not caught up)
    Resume(ScheduleTargetArg),
    /// Remove TARGET's own schedule (its environment's default, if any, applies again)
    Delete(ScheduleTargetArg),
    /// Show when TARGET's next runs will start, as the coordinator computes them
    Next(ScheduleNextArgs),
    /// Show what the scheduler decided for TARGET, newest first (started or skipped, and why)
    Runs(ScheduleRunsArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleRunsArgs {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// Only runs of this kind of schedule (default: every kind)
    #[arg(long, value_enum)]
    pub kind: Option<ScheduleKindArg>,
    #[command(flatten)]
    pub limit: LimitArg,
    /// The next page: the runs before this one (the ID of the previous page's last run)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub after: Option<i64>,
}

/// What a schedule starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKindArg {
    /// A backup of the target
    Backup,
    /// Verify jobs that read the target's kept backups back, each within --cover
    Verify,
    /// Restore drills of the target's newest good backup (into --into, or the target itself)
    Drill,
}

#[derive(Debug, Args)]
pub struct ScheduleSetArgs {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// Cron expression: minute hour day-of-month month day-of-week, e.g. "30 2 * * *"
    #[arg(long, value_name = "EXPR", value_parser = parse_cron)]
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. Europe/Berlin (default UTC)
    #[arg(long = "tz", value_name = "ZONE", default_value = "UTC")]
    pub timezone: String,
    /// Start each run up to this much later (fixed per target and run), e.g. 10m
    #[arg(long, value_name = "DURATION", value_parser = parse_jitter)]
    pub jitter: Option<u32>,
    /// What the schedule starts: backups, or verify jobs for the kept backups (a target has
    /// one schedule of each kind)
    #[arg(long, value_enum, default_value = "backup")]
    pub kind: ScheduleKindArg,
    /// Verify schedules: read every kept backup back at least this often, e.g. 7d (the
    /// default); the runs spread the work
    #[arg(long, value_name = "DURATION", value_parser = parse_cover)]
    pub cover: Option<u64>,
    /// Drill schedules: restore into a new scratch database on this target, ENV/NAME
    /// (default: the target itself)
    #[arg(long, value_parser = parse_target)]
    pub into: Option<TargetName>,
}

#[derive(Debug, Args)]
pub struct ScheduleListArgs {
    /// Only this target's schedule (ENV/NAME)
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetName>,
}

#[derive(Debug, Args)]
pub struct ScheduleTargetArg {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// Which of the target's schedules
    #[arg(long, value_enum, default_value = "backup")]
    pub kind: ScheduleKindArg,
}

#[derive(Debug, Args)]
pub struct ScheduleNextArgs {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// How many run times (at most 100)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: u32,
    /// Run times after this moment instead of now: YYYY-MM-DD or YYYY-MM-DDTHH:MM in the
    /// schedule's time zone, or RFC 3339 with an offset (e.g. to see next spring's DST change)
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Which of the target's schedules
    #[arg(long, value_enum, default_value = "backup")]
    pub kind: ScheduleKindArg,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this target's backups (ENV/NAME)
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetName>,
    /// Show what would be kept and deleted, and why; delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a CA (ca.pem, ca.key) in a new directory
    Init(PkiInitArgs),
    /// Issue a certificate and key signed by the CA in --dir
    Issue(PkiIssueArgs),
    /// Revoke a certificate: add it to the CA's revocation list (DIR/crl.pem), which the
    /// coordinator checks on every connection when tls.crl points at it
    Revoke(PkiRevokeArgs),
}

#[derive(Debug, Args)]
pub struct PkiRevokeArgs {
    /// Directory holding the CA (ca.pem, ca.key); the list is written to DIR/crl.pem
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Name of the certificate to revoke (reads DIR/NAME.pem unless --cert is given)
    #[arg(long, value_parser = parse_simple_name)]
    pub name: String,
    /// The certificate file to revoke, when it is not DIR/NAME.pem
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// Directory for ca.pem and ca.key (created with mode 0700)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Name written into the CA certificate's subject
    #[arg(long, default_value = "local", value_parser = parse_simple_name)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PkiIssueArgs {
    /// Directory holding the CA (ca.pem, ca.key)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// What the certificate is for
    #[arg(long, value_enum)]
    pub kind: CertKind,
    /// Name of the coordinator, agent or operator; also the file name (NAME.pem, NAME.key)
    #[arg(long, value_parser = parse_simple_name)]
    pub name: String,
    /// DNS name or IP address of the coordinator (repeatable; default localhost and 127.0.0.1)
    #[arg(long = "san", value_name = "HOST_OR_IP", value_parser = parse_san)]
    pub sans: Vec<String>,
    /// Days the certificate stays valid
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Where to write NAME.pem and NAME.key (default: --dir)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertKind {
    Coordinator,
    Agent,
    Operator,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents, connected or not
    List(AgentsListArgs),
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// List targets, their last backup and their last check
    List(TargetsListArgs),
    /// Check TARGET on its agent: connection, versions, tools, privileges, size, repository.
    /// Reads only (one small probe object is written to the repository and removed); exits 1
    /// if anything would make a backup fail
    Check(TargetArg),
    /// Admin: hand TARGET from the agent that owns it to the connected agent that declared it
    /// and was refused (e.g. after another agent took the name first). Audited
    Release(TargetReleaseArgs),
}

#[derive(Debug, Args)]
pub struct TargetReleaseArgs {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    /// The agent to hand it to (needed only when several connected agents wait for it)
    #[arg(long = "to", value_name = "AGENT")]
    pub to_agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct TargetArg {
    /// Target, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Start a backup of TARGET now
    Run(BackupRunArgs),
    /// List backups, newest first
    List(BackupListArgs),
    /// Show everything recorded about one backup
    Show(BackupIdArg),
    /// List the schemas and tables in a backup with their row counts (from its manifest), to
    /// pick what `restore ID --table SCHEMA.TABLE` brings back
    Contents(BackupIdArg),
    /// Check a backup's stored bytes against its recorded sizes and hashes
    Verify(BackupCheckArgs),
    /// Write a backup's decompressed dump to a file on the host of the agent that holds it,
    /// both SHA-256s checked, for a restore by hand with pg_restore or mariadb/mysql (needs
    /// the admin role and export_dirs in the agent's config)
    Export(BackupExportArgs),
    /// Keep a backup whatever the retention policy says
    Pin(BackupPinArgs),
    /// Let retention delete a pinned backup again (needs the admin role)
    Unpin(BackupIdArg),
    /// Delete one backup from its repository and every copy of it, manifest first (needs the
    /// admin role; refused for a pinned backup and for the newest good backups its retention
    /// policy keeps). With --repository, only its copy there
    Delete(BackupVerifyArgs),
    /// Copy a backup to another repository of its agent (data, globals, pin marker, manifest
    /// last; SHA-256 checked while reading), e.g. an off-site bucket
    Copy(BackupCopyArgs),
}

#[derive(Debug, Args)]
pub struct BackupCopyArgs {
    /// Backup id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
    /// The repository to copy it to (a [[repository]] of the backup's agent)
    #[arg(long = "to", value_name = "REPOSITORY", value_parser = parse_repository)]
    pub to: String,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct BackupPinArgs {
    /// Backup id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
    /// Why it must be kept (recorded with your name and the time)
    #[arg(long, value_parser = parse_reason)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct BackupRunArgs {
    /// Target to back up, ENV/NAME (e.g. prod/orders)
    #[arg(value_parser = parse_target)]
    pub target: TargetName,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    /// Only backups of this target (ENV/NAME)
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetName>,
    #[command(flatten)]
    pub limit: LimitArg,
    /// The next page: the backups after this one (the last id of the previous page)
    #[arg(long, value_name = "BACKUP_ID", value_parser = parse_backup_id)]
    pub after: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupIdArg {
    /// Backup id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// Backup id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
    /// Only the backup's copy in this repository (default: the backup in its own repository;
    /// a delete without it removes every copy too)
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository)]
    pub repository: Option<String>,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct BackupCheckArgs {
    #[command(flatten)]
    pub backup: BackupVerifyArgs,
    /// An encrypted backup must be decrypted and decoded: fail if its agent holds no key
    /// for it (without it, such an agent checks the stored bytes only, and says so)
    #[arg(long)]
    pub decrypt: bool,
}

#[derive(Debug, Args)]
pub struct BackupExportArgs {
    /// Backup id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_backup_id)]
    pub id: String,
    /// The file to create on the agent's host (absolute; its directory must exist and be
    /// under the agent's export_dirs; never overwritten). PATH.manifest.json is written beside it
    #[arg(long = "to", value_name = "PATH", value_parser = parse_export_path)]
    pub to: String,
    /// Read the backup from this repository (its own, or one holding a copy; default: its
    /// own unless known damaged, then a healthy copy)
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository)]
    pub from_repository: Option<String>,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id to restore, e.g. 20261127T233000Z-7f3a9c (default, with --target: the newest
    /// backup of that target of the kind asked for: physical with --data-dir, else logical)
    #[arg(value_parser = parse_backup_id, required_unless_present = "to")]
    pub id: Option<String>,
    /// Target to restore into, ENV/NAME (default: the backup's own target)
    #[arg(long, visible_alias = "target", value_name = "TARGET", value_parser = parse_target)]
    pub to: Option<TargetName>,
    /// A physical base backup: the empty directory on the destination agent's host to
    /// restore the cluster into (absolute path). Logical backups are restored into a database
    #[arg(long, value_name = "DIR", conflicts_with_all = ["database", "clean"])]
    pub data_dir: Option<String>,
    /// Database to create (default: the agent picks a new name)
    #[arg(long, value_name = "NAME", value_parser = parse_database, conflicts_with = "into_schema")]
    pub database: Option<String>,
    /// Restore only this table, SCHEMA.TABLE (MySQL/MariaDB: DATABASE.TABLE or TABLE), with
    /// its indexes, constraints and owned sequences; repeat for more. Into a new database
    /// (--database, or a new name), or a new schema with --into-schema
    #[arg(long = "table", value_name = "SCHEMA.TABLE", conflicts_with_all = ["data_dir", "clean"])]
    pub tables: Vec<String>,
    /// Restore every table of this schema; repeat for more
    #[arg(long = "schema", value_name = "SCHEMA", conflicts_with_all = ["data_dir", "clean"])]
    pub schemas: Vec<String>,
    /// With --table/--schema: restore into this new schema of the target's own database
    /// (it must not exist; nothing else there is touched). MySQL/MariaDB: a new database of
    /// this name on the target's server
    #[arg(long, value_name = "NAME")]
    pub into_schema: Option<String>,
    /// Replace --database if it exists and is not empty (needs the admin role)
    #[arg(long, requires = "database")]
    pub clean: bool,
    /// Check everything and print what the restore would do; change nothing (operator role,
    /// also with --clean). Waits for the checks; exits 1 if the restore would be refused
    #[arg(long)]
    pub dry_run: bool,
    /// Owners and privileges: keep them, drop them (the restoring user owns everything), or
    /// auto (keep within one provider, drop across providers)
    #[arg(long, value_enum, default_value_t = Owners::Auto)]
    pub owners: Owners,
    /// Also restore the source provider's own schemas (e.g. Supabase's auth and storage),
    /// which a restore into another provider leaves out
    #[arg(long)]
    pub include_provider_schemas: bool,
    #[command(flatten)]
    pub recovery: RecoveryArgs,
    /// What the server does at the recovery target: promote (open for writes on a new
    /// timeline), pause (stay read-only to check the data first) or shutdown
    #[arg(long, value_enum, requires = "RecoveryArgs")]
    pub recovery_action: Option<RecoveryActionArg>,
    /// With --data-dir: start the restored server on this port (as the directory's owner,
    /// listening where its postgresql.conf says) and wait until recovery reached its target;
    /// the job then reports the WAL location and time reached. The server is left running
    #[arg(long, value_name = "PORT", requires = "data_dir", value_parser = clap::value_parser!(u16).range(1024..))]
    pub start_port: Option<u16>,
    /// Load a logical backup over N connections. PostgreSQL: pg_restore with N jobs; the agent
    /// first decompresses the verified archive into its scratch_dir (it checks there is room)
    /// and removes it after. MariaDB/MySQL: N client connections load the tables at once, each
    /// streaming the archive. Default: the target's restore_jobs (1: one stream)
    #[arg(long, value_name = "N", conflicts_with = "data_dir", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// First recreate the roles and memberships (MySQL/MariaDB: accounts) captured with the
    /// backup on the destination server (as `lifeboat globals restore` does), then restore the
    /// database, then apply the database's own settings and grants to it
    #[arg(long, conflicts_with = "data_dir")]
    pub with_globals: bool,
    /// With --with-globals: also create roles with SUPERUSER, MySQL/MariaDB accounts with
    /// administrator privileges (needs the admin role)
    #[arg(long, requires = "with_globals")]
    pub allow_superuser: bool,
    /// Read the backup from this repository (its own, or one holding a copy). Default: its
    /// own unless known damaged, then a healthy copy; a repository found lacking the backup
    /// when the restore starts is skipped for the next copy
    #[arg(long, value_name = "REPOSITORY", value_parser = parse_repository)]
    pub from_repository: Option<String>,
    #[command(flatten)]
    pub wait: WaitArg,
}

/// Point-in-time recovery of a physical backup (with --data-dir): one target at most.
#[derive(Debug, Args)]
#[group(multiple = false, requires = "data_dir")]
pub struct RecoveryArgs {
    /// Recover to this moment: the last transaction committed at or before it. A UTC offset
    /// is required: '2026-12-03 14:03:27+01' or 2026-12-03T13:03:27Z. Without a backup id,
    /// the newest physical backup that ended before it is used
    #[arg(long, value_name = "TIME", value_parser = parse_recovery_time)]
    pub to_time: Option<RecoveryTarget>,
    /// Recover to this WAL location (X/Y)
    #[arg(long, value_name = "LSN", value_parser = |s: &str| RecoveryTarget::lsn(s).map_err(|e| e.0))]
    pub to_lsn: Option<RecoveryTarget>,
    /// Recover to this transaction id (inclusive)
    #[arg(long, value_name = "XID", value_parser = |s: &str| RecoveryTarget::xid(s).map_err(|e| e.0))]
    pub to_xid: Option<RecoveryTarget>,
    /// Recover to a restore point made with pg_create_restore_point(NAME)
    #[arg(long, value_name = "NAME", value_parser = |s: &str| RecoveryTarget::name(s).map_err(|e| e.0))]
    pub to_name: Option<RecoveryTarget>,
    /// Recover everything archived
    #[arg(long)]
    pub latest: bool,
}

impl RecoveryArgs {
    /// The recovery asked for, if any, ending with `action`.
    pub fn recovery(&self, action: Option<RecoveryActionArg>) -> Option<Recovery> {
        let target = [&self.to_time, &self.to_lsn, &self.to_xid, &self.to_name]
            .into_iter()
            .find_map(|t| t.clone())
            .or(self.latest.then_some(RecoveryTarget::Latest))?;
        Some(Recovery {
            target,
            action: match action {
                None | Some(RecoveryActionArg::Promote) => RecoveryAction::Promote,
                Some(RecoveryActionArg::Pause) => RecoveryAction::Pause,
                Some(RecoveryActionArg::Shutdown) => RecoveryAction::Shutdown,
            },
        })
    }
}

fn parse_recovery_time(s: &str) -> Result<RecoveryTarget, String> {
    RecoveryTarget::time(s).map_err(|e| e.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecoveryActionArg {
    Promote,
    Pause,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Owners {
    Auto,
    Keep,
    Drop,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first
    List(JobsListArgs),
    /// Show one job
    Show(JobIdArg),
    /// Ask the agent to stop a job
    Cancel(JobIdArg),
    /// Follow a job until it ends; the exit status is 0 only if it succeeded
    Watch(JobIdArg),
}

#[derive(Debug, Args)]
pub struct JobsListArgs {
    /// Only jobs acting on this target (ENV/NAME)
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetName>,
    /// Only jobs that have not finished
    #[arg(long)]
    pub active: bool,
    #[command(flatten)]
    pub limit: LimitArg,
    /// The next page: the jobs after this one (the last id of the previous page)
    #[arg(long, value_name = "JOB_ID", value_parser = parse_job_id)]
    pub after: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobIdArg {
    /// Job id, e.g. 20261127T233000Z-7f3a9c
    #[arg(value_parser = parse_job_id)]
    pub id: String,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArg {
    /// Follow the job until it ends; the exit status is 0 only if it succeeded
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArg {
    /// At most this many entries (default: the coordinator's)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests;
