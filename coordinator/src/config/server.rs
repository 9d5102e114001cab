//! The `[server]` table: listeners, HTTP and gRPC limits, the health reading interval and the
//! bearer token of the detail endpoints.

use std::{
    net::SocketAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use lifeboat_common::{config::ConfigError, secret::Secret};
use serde::Deserialize;
use toml::Spanned;

use super::{At, Config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    grpc_listen: Spanned<String>,
    http_listen: Spanned<String>,
    http_idle_timeout_secs: Option<Spanned<u64>>,
    http_max_connections: Option<Spanned<u64>>,
    health_cache_ms: Option<Spanned<u64>>,
    http_token_file: Option<Spanned<PathBuf>>,
    grpc_call_timeout_secs: Option<Spanned<u64>>,
    standby_serves_operators: Option<bool>,
}

/// The `[server]` table, validated.
pub(super) struct Server {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub http_idle_timeout: Duration,
    pub http_max_connections: usize,
    pub health_cache: Duration,
    pub http_token_file: Option<PathBuf>,
    pub grpc_call_timeout: Duration,
    pub standby_serves_operators: bool,
}

/// An optional number within `range` (`default` when absent); out of it, an error saying
/// what is allowed (`unit`).
fn within(
    at: &At<'_>,
    key: &str,
    value: Option<&Spanned<u64>>,
    range: RangeInclusive<u64>,
    default: u64,
    unit: &str,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(at.err(
            key,
            v,
            format!(
                "must be between {} and {}{unit}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Resolves a file key against the config file (as for the TLS files).
pub(super) type PathOf<'a> = dyn Fn(&str, &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> + 'a;

impl FileServer {
    pub(super) fn validate(&self, at: &At<'_>, path: &PathOf<'_>) -> Result<Server, ConfigError> {
        let listen = |key: &str, value: &Spanned<String>| {
            value.get_ref().parse::<SocketAddr>().map_err(|_| {
                at.err(
                    key,
                    value,
                    format!(
                        "{:?} is not an IP address and port; write e.g. \"0.0.0.0:7443\"",
                        value.get_ref()
                    ),
                )
            })
        };
        let http_max_connections = within(
            at,
            "server.http_max_connections",
            self.http_max_connections.as_ref(),
            1..=65_536,
            256,
            "",
        )?;
        Ok(Server {
            grpc_listen: listen("server.grpc_listen", &self.grpc_listen)?,
            http_listen: listen("server.http_listen", &self.http_listen)?,
            http_idle_timeout: Duration::from_secs(within(
                at,
                "server.http_idle_timeout_secs",
                self.http_idle_timeout_secs.as_ref(),
                1..=3600,
                30,
                " seconds",
            )?),
            http_max_connections: usize::try_from(http_max_connections).unwrap_or(256),
            health_cache: Duration::from_millis(within(
                at,
                "server.health_cache_ms",
                self.health_cache_ms.as_ref(),
                0..=60_000,
                1000,
                " milliseconds",
            )?),
            http_token_file: self
                .http_token_file
                .as_ref()
                .map(|f| path("server.http_token_file", f))
                .transpose()?,
            grpc_call_timeout: Duration::from_secs(within(
                at,
                "server.grpc_call_timeout_secs",
                self.grpc_call_timeout_secs.as_ref(),
                1..=3600,
                60,
                " seconds",
            )?),
            standby_serves_operators: self.standby_serves_operators.unwrap_or(true),
        })
    }
}

impl Config {
    /// The bearer token of the detail endpoints, read from `server.http_token_file` (mode
    /// 0600, at least 16 characters). The error text names the problem and the fix.
    pub fn http_token(&self) -> Result<Option<Secret<String>>, String> {
        let Some(path) = &self.http_token_file else {
            return Ok(None);
        };
        read_token(path).map(Some)
    }
}

fn read_token(path: &Path) -> Result<Secret<String>, String> {
    if !path.exists() {
        return Err(format!(
            "{} does not exist; write a random token there (`openssl rand -hex 32 > {} && chmod 600 {}`) or remove server.http_token_file",
            path.display(),
            path.display(),
            path.display()
        ));
    }
    let token = lifeboat_common::secret::read_secret_file(path).map_err(|e| format!("{e:#}"))?;
    let t = token.expose();
    if t.chars().count() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} must hold one token of at least 16 characters without spaces; write a random one (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    Ok(token)
}
