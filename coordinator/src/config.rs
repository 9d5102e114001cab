//! The coordinator's configuration: a serde file struct that refuses unknown keys, then
//! `validate()` into the runtime `Config`. Every error names the file, the key and (where the
//! key is in the file) its line, and says what to do.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use lifeboat_common::{
    config::{ConfigError, check_no_parent, parse_toml, resolve},
    names::validate_simple,
    tls::TlsFiles,
};
use serde::Deserialize;
use toml::Spanned;

pub(crate) use at::At;
use catalog::FileCatalog;
pub use catalog::{CatalogLocation, PostgresLocation};
use server::FileServer;

pub(crate) mod at;
mod catalog;
mod server;

/// Operator roles, ordered: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// A running job whose agent has been disconnected this long fails.
    pub agent_lease: Duration,
    /// How often agents send a heartbeat.
    pub heartbeat_interval: Duration,
    /// A queued job whose agent stays offline this long fails.
    pub queue_timeout: Duration,
    /// Finished jobs and scheduler decisions older than this are removed (never a backup's
    /// job, nor a target's latest job of each kind and outcome).
    pub keep_finished: Duration,
    /// Audit records older than this are removed.
    pub audit_keep: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            agent_lease: Duration::from_secs(DEFAULT_LEASE_SECS),
            heartbeat_interval: Duration::from_secs(DEFAULT_HEARTBEAT_SECS),
            queue_timeout: Duration::from_secs(DEFAULT_QUEUE_TIMEOUT_SECS),
            keep_finished: Duration::from_secs(DEFAULT_KEEP_FINISHED_DAYS * DAY_SECS),
            audit_keep: Duration::from_secs(DEFAULT_AUDIT_KEEP_DAYS * DAY_SECS),
        }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// An HTTP connection that sends nothing for this long is closed.
    pub http_idle_timeout: Duration,
    /// HTTP connections served at once; more are closed when accepted.
    pub http_max_connections: usize,
    /// The health endpoints and `/metrics` read the catalog at most once per this interval
    /// (one read in flight; callers in between share it). Zero: every request reads, still
    /// one at a time.
    pub health_cache: Duration,
    /// A file holding the bearer token `/health/detailed` and `/health/backups` require
    /// (`server.http_token_file`); none: those endpoints are open like the others.
    pub http_token_file: Option<PathBuf>,
    /// How long a unary gRPC call may run before it is ended with `DEADLINE_EXCEEDED`
    /// (`server.grpc_call_timeout_secs`); streams have none, a catalog rebuild its own.
    pub grpc_call_timeout: Duration,
    /// With a PostgreSQL catalog, a coordinator standing by (another one holds the catalog's
    /// lock) opens its gRPC port to operators: the CLI's calls, `WatchJob` included, work
    /// against any coordinator, while agent sessions and the scheduled work stay with the
    /// active one (`server.standby_serves_operators`, default true). False: its gRPC port
    /// stays closed until it is active (for one address that moves between hosts).
    pub standby_serves_operators: bool,
    pub tls: TlsFiles,
    /// A PEM certificate revocation list checked on every client handshake (`tls.crl`),
    /// reloaded when it changes.
    pub tls_crl: Option<PathBuf>,
    pub catalog: CatalogLocation,
    pub jobs: JobsConfig,
    /// Operator name → role.
    pub operators: BTreeMap<String, Role>,
    /// Operator name → the environments its role applies to (`[[operator]] environments`).
    /// An operator not listed here has its role in every environment.
    pub operator_environments: BTreeMap<String, Vec<String>>,
    /// Agent name → the one environment it may serve. Empty only with `allow_any_agent`: then
    /// any agent certificate from the CA may connect, for any environment.
    pub agents: BTreeMap<String, String>,
    /// `allow_any_agent = true`: an empty `[[agent]]` table admits every agent certificate.
    pub allow_any_agent: bool,
    /// Declared RPO/RTO per target (`[objectives]`).
    pub objectives: crate::objectives::Objectives,
    /// How agents are judged (`[health]`).
    pub health: crate::objectives::HealthConfig,
    /// Incident thresholds and webhooks (`[alerts]`).
    pub alerts: crate::alerts::config::AlertsConfig,
    /// `[scheduler]` settings and the `[[schedule]]` environment defaults.
    pub scheduler: crate::schedule::config::SchedulerConfig,
    /// `[[retention]]` policies.
    pub retention: crate::retention::config::RetentionConfig,
}

const DEFAULT_LEASE_SECS: u64 = 300;
const DEFAULT_HEARTBEAT_SECS: u64 = 10;
const DEFAULT_QUEUE_TIMEOUT_SECS: u64 = 3600;
/// Upper bound on every duration key: a year. Larger values are typos.
const MAX_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: FileServer,
    tls: FileTls,
    catalog: FileCatalog,
    #[serde(default)]
    jobs: FileJobs,
    #[serde(default)]
    operator: Vec<FileOperator>,
    #[serde(default)]
    agent: Vec<FileAgent>,
    /// Admits agents not listed in `[[agent]]` (any environment). Off by default.
    #[serde(default)]
    allow_any_agent: bool,
    #[serde(default)]
    objectives: crate::objectives::FileObjectives,
    #[serde(default)]
    health: crate::objectives::FileHealth,
    #[serde(default)]
    alerts: crate::alerts::config::FileAlerts,
    #[serde(default)]
    scheduler: crate::schedule::config::FileScheduler,
    #[serde(default)]
    schedule: Vec<crate::schedule::config::FileSchedule>,
    #[serde(default)]
    retention: Vec<crate::retention::config::FileRetention>,
    #[serde(default)]
    prune: crate::retention::config::FilePrune,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    name: Spanned<String>,
    environment: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca: Spanned<PathBuf>,
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
    crl: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJobs {
    agent_lease_secs: Option<Spanned<u64>>,
    heartbeat_interval_secs: Option<Spanned<u64>>,
    queue_timeout_secs: Option<Spanned<u64>>,
    keep_finished_days: Option<Spanned<u64>>,
    audit_keep_days: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperator {
    name: Spanned<String>,
    role: Role,
    /// The environments the role applies to; absent means all.
    environments: Option<Spanned<Vec<String>>>,
}

const DAY_SECS: u64 = 86_400;
const DEFAULT_KEEP_FINISHED_DAYS: u64 = 90;
const DEFAULT_AUDIT_KEEP_DAYS: u64 = 400;
/// A century: more is a typo.
const MAX_KEEP_DAYS: u64 = 36_500;

/// A history retention in days: at least 1, at most [`MAX_KEEP_DAYS`].
fn days(
    at: &At<'_>,
    key: &str,
    value: &Option<Spanned<u64>>,
    default: u64,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(Duration::from_secs(default * DAY_SECS)),
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > MAX_KEEP_DAYS => Err(at.err(
            key,
            v,
            format!("must be between 1 and {MAX_KEEP_DAYS} days"),
        )),
        Some(v) => Ok(Duration::from_secs(*v.get_ref() * DAY_SECS)),
    }
}

/// Reads, parses and validates a config file, and checks the files it names.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "read config file {} (pass an existing file to --config)",
            path.display()
        )
    })?;
    let config = parse(path, &text)?;
    config.check_agents()?;
    config.check_files()?;
    Ok(config)
}

/// Parses and validates config text (no file system access).
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let file: FileConfig = parse_toml(path, text)?;
    Ok(file.validate(path, text)?)
}

impl FileConfig {
    fn validate(self, file: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = At::new(file, text);
        let path = |key: &str, value: &Spanned<PathBuf>| {
            let p = value.get_ref();
            if p.as_os_str().is_empty() {
                return Err(at.err(key, value, "must not be empty; give a file path".into()));
            }
            check_no_parent(file, key, p).map_err(|e| at.err(key, value, e.message))?;
            Ok(resolve(file, p))
        };
        let tls = TlsFiles {
            ca: path("tls.ca", &self.tls.ca)?,
            cert: path("tls.cert", &self.tls.cert)?,
            key: path("tls.key", &self.tls.key)?,
        };
        let tls_crl = self
            .tls
            .crl
            .as_ref()
            .map(|c| path("tls.crl", c))
            .transpose()?;
        let server = self.server.validate(&at, &path)?;
        let catalog = self.catalog.validate(&at)?;

        let secs = |key: &str, value: &Option<Spanned<u64>>, default: u64| match value {
            None => Ok(Duration::from_secs(default)),
            Some(v) if *v.get_ref() == 0 => Err(at.err(
                key,
                v,
                "must be at least 1 (seconds); zero would expire at once".into(),
            )),
            Some(v) if *v.get_ref() > MAX_SECS => Err(at.err(
                key,
                v,
                format!("must be at most {MAX_SECS} seconds (a year)"),
            )),
            Some(v) => Ok(Duration::from_secs(*v.get_ref())),
        };
        let jobs = JobsConfig {
            agent_lease: secs(
                "jobs.agent_lease_secs",
                &self.jobs.agent_lease_secs,
                DEFAULT_LEASE_SECS,
            )?,
            heartbeat_interval: secs(
                "jobs.heartbeat_interval_secs",
                &self.jobs.heartbeat_interval_secs,
                DEFAULT_HEARTBEAT_SECS,
            )?,
            queue_timeout: secs(
                "jobs.queue_timeout_secs",
                &self.jobs.queue_timeout_secs,
                DEFAULT_QUEUE_TIMEOUT_SECS,
            )?,
            keep_finished: days(
                &at,
                "jobs.keep_finished_days",
                &self.jobs.keep_finished_days,
                DEFAULT_KEEP_FINISHED_DAYS,
            )?,
            audit_keep: days(
                &at,
                "jobs.audit_keep_days",
                &self.jobs.audit_keep_days,
                DEFAULT_AUDIT_KEEP_DAYS,
            )?,
        };
        if jobs.heartbeat_interval.as_secs() > u64::from(u32::MAX) {
            // Unreachable with MAX_SECS, but the wire field is a u32.
            return Err(ConfigError::new(
                file,
                "jobs.heartbeat_interval_secs",
                "too large",
            ));
        }

        let mut operators = BTreeMap::new();
        let mut operator_environments = BTreeMap::new();
        for (i, op) in self.operator.iter().enumerate() {
            let key = format!("operator[{i}].name");
            validate_simple("operator name", op.name.get_ref())
                .map_err(|e| at.err(&key, &op.name, e.to_string()))?;
            if let Some(envs) = &op.environments {
                let key = format!("operator[{i}].environments");
                if envs.get_ref().is_empty() {
                    return Err(at.err(
                        &key,
                        envs,
                        "is empty, which would allow nothing; name at least one environment, \
                         or remove the key to allow all environments"
                            .into(),
                    ));
                }
                for env in envs.get_ref() {
                    validate_simple("environment", env)
                        .map_err(|e| at.err(&key, envs, e.to_string()))?;
                }
                let mut list = envs.get_ref().clone();
                list.sort();
                list.dedup();
                operator_environments.insert(op.name.get_ref().clone(), list);
            }
            if operators
                .insert(op.name.get_ref().clone(), op.role)
                .is_some()
            {
                return Err(at.err(
                    &key,
                    &op.name,
                    format!(
                        "operator {:?} is listed twice; keep one [[operator]] entry per name",
                        op.name.get_ref()
                    ),
                ));
            }
        }

        let mut agents = BTreeMap::new();
        for (i, a) in self.agent.iter().enumerate() {
            let key = format!("agent[{i}].name");
            validate_simple("agent name", a.name.get_ref())
                .map_err(|e| at.err(&key, &a.name, e.to_string()))?;
            validate_simple("environment", a.environment.get_ref()).map_err(|e| {
                at.err(
                    &format!("agent[{i}].environment"),
                    &a.environment,
                    e.to_string(),
                )
            })?;
            if agents
                .insert(a.name.get_ref().clone(), a.environment.get_ref().clone())
                .is_some()
            {
                return Err(at.err(
                    &key,
                    &a.name,
                    format!(
                        "agent {:?} is listed twice; keep one [[agent]] entry per name",
                        a.name.get_ref()
                    ),
                ));
            }
        }

        let located = crate::objectives::Located { file, text };
        let objectives = self.objectives.validate(&located)?;
        let health = self.health.validate(&located)?;
        let alerts = self.alerts.validate(&located)?;
        let scheduler = crate::schedule::config::validate(&at, &self.scheduler, &self.schedule)?;
        let mut retention = crate::retention::config::validate(&at, &self.retention)?;
        retention.auto = crate::retention::config::validate_auto(&at, &self.prune)?;

        Ok(Config {
            file: file.to_owned(),
            grpc_listen: server.grpc_listen,
            http_listen: server.http_listen,
            http_idle_timeout: server.http_idle_timeout,
            http_max_connections: server.http_max_connections,
            health_cache: server.health_cache,
            http_token_file: server.http_token_file,
            grpc_call_timeout: server.grpc_call_timeout,
            standby_serves_operators: server.standby_serves_operators,
            tls,
            tls_crl,
            catalog,
            jobs,
            operators,
            operator_environments,
            agents,
            allow_any_agent: self.allow_any_agent,
            objectives,
            health,
            alerts,
            scheduler,
            retention,
        })
    }
}

impl Config {
    /// Refuses to start with environments open to any agent certificate, unless the file
    /// says so explicitly (`allow_any_agent = true`).
    pub fn check_agents(&self) -> Result<(), ConfigError> {
        if self.agents.is_empty() && !self.allow_any_agent {
            return Err(ConfigError::new(
                &self.file,
                "agent",
                "no [[agent]] table, so any agent certificate could claim any environment; \
                 list each agent with its environment ([[agent]] name = \"prod-1\" \
                 environment = \"prod\"), or set allow_any_agent = true at the top of the file \
                 to admit every agent of the CA",
            ));
        }
        Ok(())
    }

    /// Checks that the files the config names exist and are usable: TLS files present, the key
    /// private to this user, the catalog's directory present.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let file = self.file.as_path();
        for (key, path, hint) in [
            (
                "tls.ca",
                &self.tls.ca,
                "copy the CA certificate there (`lifeboat pki init` creates one)",
            ),
            (
                "tls.cert",
                &self.tls.cert,
                "create it with `lifeboat pki issue --kind coordinator` or fix the path",
            ),
            (
                "tls.key",
                &self.tls.key,
                "create it with `lifeboat pki issue --kind coordinator` or fix the path",
            ),
        ] {
            if !path.is_file() {
                return Err(ConfigError::new(
                    file,
                    key,
                    format!("{} does not exist or is not a file; {hint}", path.display()),
                ));
            }
        }
        lifeboat_common::secret::check_private_file(&self.tls.key)
            .map_err(|e| ConfigError::new(file, "tls.key", format!("{e:#}")))?;
        self.http_token()
            .map_err(|e| ConfigError::new(file, "server.http_token_file", e))?;
        if let Some(crl) = &self.tls_crl
            && !crl.is_file()
        {
            return Err(ConfigError::new(
                file,
                "tls.crl",
                format!(
                    "{} does not exist or is not a file; write it with `lifeboat pki revoke`, or \
                     remove tls.crl",
                    crl.display()
                ),
            ));
        }
        lifeboat_common::tls::ServerTls::load(&self.tls, self.tls_crl.as_deref()).map_err(|e| {
            ConfigError::new(
                file,
                "tls",
                format!(
                    "{e:#}; tls.ca must hold the CA certificate, tls.cert/tls.key the \
                     coordinator's certificate and its key (PEM), and tls.crl (if set) a CRL \
                     signed by the CA"
                ),
            )
        })?;
        self.catalog.check_files(file)?;
        self.alerts.check_files(file)?;
        Ok(())
    }

    pub fn role_of(&self, operator: &str) -> Option<Role> {
        self.operators.get(operator).copied()
    }

    /// The environments `operator`'s role is limited to; None: all environments.
    pub fn environments_of(&self, operator: &str) -> Option<&[String]> {
        self.operator_environments.get(operator).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests;
