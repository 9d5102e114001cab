//! Provider profiles: what lifeboat checks and which tool flags it sets for each kind of server
//! (self-hosted PostgreSQL/MySQL/MariaDB, Supabase, Neon, Railway, PlanetScale). Pure logic: no
//! I/O, no database; the engines and jobs call these functions with the facts they gathered.
//!
//! - [`check_connection`]: refuses endpoints that cannot give a consistent, secure dump
//!   (Supabase's transaction pooler, Neon's `-pooler` endpoints, unencrypted connections to
//!   providers that require TLS) before anything runs, and returns notes for the job log.
//! - [`dump_args`]: the provider's additions to the engine's dump options.
//! - [`restore_args`]: options for loading a backup from one provider into another
//!   (`--no-owner --no-privileges`, schemas the source provider manages).
//! - [`skipped_schemas`]: which schemas a restore leaves out.

use std::fmt;

pub use crate::dbhost::{SYSTEM_CA_BUNDLE, is_local_host};
use crate::engine::mysql::{ClientFlavor, ClientTool, ServerFacts, ServerFlavor};

use lifeboat_proto::domain::Engine;

/// A provider profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    Postgres,
    Supabase,
    Neon,
    Railway,
    Mysql,
    Mariadb,
    Planetscale,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Self::Postgres,
        Self::Supabase,
        Self::Neon,
        Self::Railway,
        Self::Mysql,
        Self::Mariadb,
        Self::Planetscale,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Supabase => "supabase",
            Self::Neon => "neon",
            Self::Railway => "railway",
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
            Self::Planetscale => "planetscale",
        }
    }

    pub fn engine(self) -> Engine {
        match self {
            Self::Postgres | Self::Supabase | Self::Neon | Self::Railway => Engine::Postgres,
            Self::Mysql | Self::Mariadb | Self::Planetscale => Engine::Mysql,
        }
    }

    /// The plain profile of an engine (what a target gets when it names no provider).
    pub fn default_for(engine: Engine) -> Self {
        match engine {
            Engine::Postgres => Self::Postgres,
            Engine::Mysql => Self::Mysql,
        }
    }

    /// Providers that run the server for the user (their own roles, schemas and backups).
    pub fn is_managed(self) -> bool {
        matches!(
            self,
            Self::Supabase | Self::Neon | Self::Railway | Self::Planetscale
        )
    }

    /// Whether the server lets the agent `CREATE DATABASE` (and so restore into a scratch
    /// database and swap). PlanetScale databases are created through its API only: restores
    /// there load into an existing, empty destination.
    pub fn can_create_databases(self) -> bool {
        !matches!(self, Self::Planetscale)
    }

    /// Providers that are reached over the public internet and must be encrypted.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Neon | Self::Planetscale)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a provider name for an engine, with a message listing the valid ones.
pub fn parse_for_engine(name: &str, engine: Engine) -> Result<Provider, ProviderError> {
    let p = Provider::parse(name).ok_or_else(|| ProviderError::Unknown(name.to_owned()))?;
    if p.engine() != engine {
        return Err(ProviderError::WrongEngine {
            provider: p,
            engine,
        });
    }
    Ok(p)
}

/// How strongly a connection is encrypted, across PostgreSQL's `sslmode` and MySQL's
/// `ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsLevel {
    /// `disable`
    Off,
    /// `allow` / `prefer` (PostgreSQL's default) / MySQL `PREFERRED`: encrypted only if the
    /// server offers it, so an attacker in the path can downgrade it.
    Opportunistic,
    /// `require` / `REQUIRED`: encrypted, certificate not checked.
    Required,
    /// `verify-ca` / `VERIFY_CA`
    VerifyCa,
    /// `verify-full` / `VERIFY_IDENTITY`
    VerifyFull,
}

impl TlsLevel {
    /// From a PostgreSQL `sslmode` (absent: libpq's default `prefer`).
    pub fn from_pg_sslmode(mode: Option<&str>) -> Option<Self> {
        Some(match mode.unwrap_or("prefer") {
            "disable" => Self::Off,
            "allow" | "prefer" => Self::Opportunistic,
            "require" => Self::Required,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn from_mysql(mode: crate::engine::mysql::TlsMode) -> Self {
        use crate::engine::mysql::TlsMode as M;
        match mode {
            M::Disabled => Self::Off,
            M::Preferred => Self::Opportunistic,
            M::Required => Self::Required,
            M::VerifyCa => Self::VerifyCa,
            M::VerifyIdentity => Self::VerifyFull,
        }
    }

    fn describe(self, engine: Engine) -> &'static str {
        match (engine, self) {
            (Engine::Postgres, Self::Off) => "sslmode=disable",
            (Engine::Postgres, Self::Opportunistic) => "sslmode=prefer (the default)",
            (Engine::Postgres, Self::Required) => "sslmode=require",
            (Engine::Postgres, Self::VerifyCa) => "sslmode=verify-ca",
            (Engine::Postgres, Self::VerifyFull) => "sslmode=verify-full",
            (Engine::Mysql, Self::Off) => "ssl-mode=disabled",
            (Engine::Mysql, Self::Opportunistic) => "ssl-mode=preferred (the default)",
            (Engine::Mysql, Self::Required) => "ssl-mode=required",
            (Engine::Mysql, Self::VerifyCa) => "ssl-mode=verify_ca",
            (Engine::Mysql, Self::VerifyFull) => "ssl-mode=verify_identity",
        }
    }
}

/// Where a target connects, as far as the profiles care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsLevel,
    /// The certificate is checked against a CA file the user named (`sslrootcert`,
    /// `ssl-ca`), not the system bundle.
    pub own_ca: bool,
}

/// What a connection check refused. Each message names the problem and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "unknown provider {0:?}; use postgres, supabase, neon or railway (engine postgres) or mysql, mariadb or planetscale (engine mysql)"
    )]
    Unknown(String),
    #[error("provider {provider} is for the {} engine, not {}", provider.engine().as_str(), engine.as_str())]
    WrongEngine { provider: Provider, engine: Engine },
    #[error(
        "{host}:{port} is Supabase's transaction pooler, which cannot hold the session a consistent dump or restore needs (no exported snapshots, no session settings); use the direct connection db.<project-ref>.supabase.co:5432, or the session pooler (the same pooler host on port 5432) where the direct connection is not reachable over IPv6"
    )]
    SupabaseTransactionPooler { host: String, port: u16 },
    #[error(
        "{host} is a Neon pooled (PgBouncer, transaction mode) endpoint, which cannot hold the session a consistent dump needs; use the direct endpoint: the same host name without \"-pooler\" ({direct})"
    )]
    NeonPooler { host: String, direct: String },
    #[error("unknown TLS mode {0:?} in the target URL")]
    BadTlsMode(String),
    #[error(
        "Supabase signs its database certificates with its own CA, which is not in the system bundle, so {current} cannot succeed; download the CA certificate (dashboard: Database settings, SSL configuration) and add sslrootcert=/etc/lifeboat/supabase-ca.crt to the URL, or set sslmode=require to encrypt without checking the server's identity"
    )]
    SupabaseCa { current: &'static str },
    #[error(
        "Railway's database certificates are self-signed, so {current} against the system CA bundle cannot succeed; set sslmode=require in the URL (encrypted, identity not checked), or name the server's certificate with sslrootcert=/path and sslmode=verify-ca"
    )]
    RailwaySelfSigned { current: &'static str },
    #[error(
        "{provider} must be reached over TLS, but the connection uses {current}; set {wanted} or stronger in the target URL"
    )]
    TlsRequired {
        provider: Provider,
        current: &'static str,
        wanted: &'static str,
    },
}

impl ProviderError {
    /// A configuration problem: retrying the same job cannot succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn require_tls(provider: Provider, ep: &Endpoint<'_>, min: TlsLevel) -> Result<(), ProviderError> {
    if ep.tls < min {
        return Err(ProviderError::TlsRequired {
            provider,
            current: ep.tls.describe(provider.engine()),
            wanted: min.describe(provider.engine()),
        });
    }
    Ok(())
}

fn host_is(host: &str, suffix: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == suffix.trim_start_matches('.') || h.ends_with(suffix)
}

/// Refuses endpoints a provider profile cannot back up or restore safely; returns notes
/// (advice, not errors) for the job log.
pub fn check_connection(
    provider: Provider,
    engine: Engine,
    ep: &Endpoint<'_>,
) -> Result<Vec<String>, ProviderError> {
    if provider.engine() != engine {
        return Err(ProviderError::WrongEngine { provider, engine });
    }
    let mut notes = Vec::new();
    match provider {
        Provider::Postgres | Provider::Mysql | Provider::Mariadb => {}
        Provider::Supabase => {
            let pooler = host_is(ep.host, ".pooler.supabase.com");
            if ep.port == 6543 {
                return Err(ProviderError::SupabaseTransactionPooler {
                    host: ep.host.to_owned(),
                    port: ep.port,
                });
            }
            if pooler {
                notes.push(format!(
                    "{} is Supabase's session pooler; the direct connection db.<project-ref>.supabase.co:5432 avoids the pooler's connection limit",
                    ep.host
                ));
            }
            if ep.tls >= TlsLevel::VerifyCa && !ep.own_ca {
                return Err(ProviderError::SupabaseCa {
                    current: ep.tls.describe(provider.engine()),
                });
            }
            if ep.tls < TlsLevel::Required {
                notes.push(
                    "Supabase accepts TLS on every connection; set sslmode=require (or verify-full with Supabase's CA) so the connection cannot be downgraded".into(),
                );
            }
        }
        Provider::Neon => {
            let first = ep.host.split('.').next().unwrap_or("");
            if host_is(ep.host, ".neon.tech") && first.ends_with("-pooler") {
                let direct = ep.host.replacen("-pooler.", ".", 1);
                return Err(ProviderError::NeonPooler {
                    host: ep.host.to_owned(),
                    direct,
                });
            }
            require_tls(provider, ep, TlsLevel::Required)?;
            if ep.tls < TlsLevel::VerifyFull {
                notes.push(
                    "Neon's certificates are signed by a public CA: sslmode=verify-full with the system CA bundle also checks the server's identity".into(),
                );
            }
        }
        Provider::Railway => {
            if ep.tls >= TlsLevel::VerifyCa && !ep.own_ca {
                return Err(ProviderError::RailwaySelfSigned {
                    current: ep.tls.describe(provider.engine()),
                });
            }
            if host_is(ep.host, ".proxy.rlwy.net") {
                require_tls(provider, ep, TlsLevel::Required)?;
                notes.push(format!(
                    "{} is Railway's public TCP proxy: traffic crosses the internet (TLS required) and is billed as egress; an agent deployed inside the Railway project can use the private host <service>.railway.internal instead",
                    ep.host
                ));
            } else if host_is(ep.host, ".railway.internal") {
                notes.push(format!(
                    "{} is on Railway's private network: reachable only from services in the same Railway project and environment (where the agent must run)",
                    ep.host
                ));
            }
        }
        Provider::Planetscale => {
            require_tls(provider, ep, TlsLevel::Required)?;
            if ep.tls < TlsLevel::VerifyFull {
                notes.push(
                    "PlanetScale's certificates are signed by a public CA: ssl-mode=verify_identity with the system CA bundle also checks the server's identity".into(),
                );
            }
        }
    }
    Ok(notes)
}

/// [`check_connection`] for a target URL (`postgres://…?sslmode=…` or
/// `mysql://…?ssl-mode=…`): host, port (default 5432 / 3306) and TLS level are read from it.
pub fn check_url(provider: Provider, url: &url::Url) -> Result<Vec<String>, ProviderError> {
    let engine = match url.scheme() {
        "postgres" | "postgresql" => Engine::Postgres,
        _ => Engine::Mysql,
    };
    let param = |names: &[&str]| {
        url.query_pairs()
            .find(|(k, _)| names.contains(&k.as_ref()))
            .map(|(_, v)| v.into_owned())
    };
    let host = url.host_str().unwrap_or("localhost");
    let (tls, port, ca) = match engine {
        Engine::Postgres => {
            let mode = param(&["sslmode"]);
            let tls = match mode.as_deref() {
                // What [`pg_tls_defaults`] writes into the URL; absent only when not applied.
                None if !is_local_host(host) => TlsLevel::VerifyFull,
                m => TlsLevel::from_pg_sslmode(m)
                    .ok_or_else(|| ProviderError::BadTlsMode(mode.clone().unwrap_or_default()))?,
            };
            (tls, url.port().unwrap_or(5432), param(&["sslrootcert"]))
        }
        Engine::Mysql => {
            let socket = param(&["socket"]).is_some();
            let tls = match param(&["ssl-mode", "sslmode"]) {
                Some(m) => crate::engine::mysql::TlsMode::parse(&m)
                    .map(TlsLevel::from_mysql)
                    .ok_or(ProviderError::BadTlsMode(m))?,
                None => TlsLevel::from_mysql(crate::engine::mysql::TlsMode::default_for(
                    host,
                    socket,
                    param(&["ssl-ca"]).is_some(),
                )),
            };
            (
                tls,
                url.port().unwrap_or(crate::engine::mysql::DEFAULT_PORT),
                param(&["ssl-ca"]),
            )
        }
    };
    let own_ca = ca.is_some_and(|c| c != SYSTEM_CA_BUNDLE);
    check_connection(
        provider,
        engine,
        &Endpoint {
            host,
            port,
            tls,
            own_ca,
        },
    )
}

/// Secure defaults for a PostgreSQL target URL, written into it so that libpq (the tools)
/// and the agent's own connections agree: a host that is not this machine gets
/// `sslmode=verify-full` unless the URL names a mode, and a verifying mode without
/// `sslrootcert` gets the system CA bundle (libpq would otherwise look in
/// `~/.postgresql/root.crt`). Returns an error text when verification has no CA to use.
pub fn pg_tls_defaults(url: &mut url::Url) -> Result<(), String> {
    let has = |url: &url::Url, k: &str| url.query_pairs().any(|(n, _)| n == k);
    let local = is_local_host(url.host_str().unwrap_or(""));
    if !has(url, "sslmode") && !local {
        url.query_pairs_mut().append_pair("sslmode", "verify-full");
    }
    let verifying = url
        .query_pairs()
        .any(|(k, v)| k == "sslmode" && matches!(v.as_ref(), "verify-ca" | "verify-full"));
    if verifying && !has(url, "sslrootcert") {
        if !std::path::Path::new(SYSTEM_CA_BUNDLE).is_file() {
            return Err(format!(
                "the connection verifies the server's certificate (sslmode=verify-full, the default for a host other than this machine) but there is no CA bundle at {SYSTEM_CA_BUNDLE}; install the ca-certificates package, or name the CA with sslrootcert=/path/ca.pem in the URL"
            ));
        }
        url.query_pairs_mut()
            .append_pair("sslrootcert", SYSTEM_CA_BUNDLE);
    }
    Ok(())
}

/// The provider's additions to the MySQL engine's dump options
/// (`engine::mysql::dump_args` already sets the options every server needs).
///
/// - PlanetScale (Vitess): `--single-transaction` without any table locks (Vitess refuses
///   `LOCK TABLES` and `FLUSH TABLES WITH READ LOCK`), `--set-gtid-purged=OFF` when the tool
///   knows it (GTIDs are Vitess's own business), and, when the tool can run a statement on
///   connect, `SET workload = 'olap'` so a table larger than Vitess's per-query row limit
///   streams instead of failing.
/// - MySQL: `--set-gtid-purged=OFF` with MySQL's tool against MySQL.
/// - MariaDB / plain: nothing beyond the engine's options.
pub fn dump_args(provider: Provider, client: &ClientTool, server: &ServerFacts) -> Vec<String> {
    let mut a = Vec::new();
    match provider {
        Provider::Planetscale => {
            a.push("--single-transaction".into());
            a.push("--skip-lock-tables".into());
            a.push("--skip-add-locks".into());
            if client.supports("set-gtid-purged") {
                a.push("--set-gtid-purged=OFF".into());
            }
            if let Some(init) = olap_init_command(provider, client) {
                a.push(init);
            }
        }
        Provider::Mysql => {
            if client.flavor == ClientFlavor::MySql
                && server.flavor.is_mysql_family()
                && client.supports("set-gtid-purged")
            {
                a.push("--set-gtid-purged=OFF".into());
            }
        }
        Provider::Mariadb
        | Provider::Postgres
        | Provider::Supabase
        | Provider::Neon
        | Provider::Railway => {}
    }
    a
}

/// The SQL a provider wants run first on every session the agent opens itself (row counts,
/// checks): PlanetScale's OLAP workload lifts the per-query row limit.
pub fn session_init_sql(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Planetscale => Some("SET workload = 'olap'"),
        _ => None,
    }
}

fn olap_init_command(provider: Provider, client: &ClientTool) -> Option<String> {
    let sql = session_init_sql(provider)?;
    client
        .supports("init-command")
        .then(|| format!("--init-command={sql}"))
}

/// Per-query row limit of Vitess in its default OLTP workload.
pub const VITESS_ROW_LIMIT: i64 = 100_000;

/// Refuses a PlanetScale dump that would hit Vitess's per-query row limit: a table with more
/// rows than the limit (by estimate) when the dump tool cannot switch its session to the OLAP
/// workload. `largest_table` is (name, estimated rows).
pub fn check_row_limit(
    provider: Provider,
    client: &ClientTool,
    server: &ServerFacts,
    largest_table: Option<(&str, i64)>,
) -> Result<(), String> {
    if provider != Provider::Planetscale && server.flavor != ServerFlavor::Vitess {
        return Ok(());
    }
    if client.supports("init-command") {
        return Ok(());
    }
    match largest_table {
        Some((name, rows)) if rows >= VITESS_ROW_LIMIT => Err(format!(
            "table {name} has about {rows} rows, more than Vitess's per-query limit of {VITESS_ROW_LIMIT} in the OLTP workload, and {} cannot run `SET workload = 'olap'` on connect (no --init-command); install a dump tool whose --help lists --init-command",
            client.describe()
        )),
        _ => Ok(()),
    }
}

/// Schemas Supabase creates and manages: its auth, storage, realtime and edge-function
/// services, its extensions' own schemas, and its migration bookkeeping. Restoring them into
/// another server makes no sense (they belong to services that are not there) and fails on
/// roles such as `supabase_admin`.
///
/// `extensions` is not in the list: user tables depend on the extensions created there (for
/// example `extensions.uuid_generate_v4()` defaults), so it is kept.
pub const SUPABASE_MANAGED_SCHEMAS: [&str; 16] = [
    "auth",
    "storage",
    "realtime",
    "_realtime",
    "supabase_functions",
    "supabase_migrations",
    "graphql",
    "graphql_public",
    "vault",
    "pgsodium",
    "pgsodium_masks",
    "net",
    "pgbouncer",
    "_analytics",
    "cron",
    "_supavisor",
];

/// Options for a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore the source provider's managed schemas too (off by default when the target is
    /// another provider).
    pub include_managed_schemas: bool,
    /// Keep owners and privileges (`ALTER … OWNER`, `GRANT`) from the backup (the restore's
    /// `--owners` policy decides; across providers they are dropped by default).
    pub keep_owners_and_privileges: bool,
}

/// Schemas a restore from `from` into `to` leaves out.
pub fn skipped_schemas(from: Provider, to: Provider, opts: &RestoreOptions) -> Vec<&'static str> {
    if opts.include_managed_schemas || from == to {
        return Vec::new();
    }
    match from {
        Provider::Supabase => SUPABASE_MANAGED_SCHEMAS.to_vec(),
        _ => Vec::new(),
    }
}

/// Extra options for the restore tool when restoring a backup taken on `from` into `to`.
///
/// PostgreSQL (`pg_restore`): `--no-owner --no-privileges` unless owners are kept (the
/// restore's owner policy decides: kept within one provider by default, dropped across
/// providers, whose role sets differ), then `--exclude-schema=S` for each of
/// [`skipped_schemas`].
/// MySQL: nothing; DEFINER clauses are kept (see docs/providers/mysql.md).
pub fn restore_args(from: Provider, to: Provider, opts: &RestoreOptions) -> Vec<String> {
    let mut a = Vec::new();
    if to.engine() == Engine::Postgres {
        if !opts.keep_owners_and_privileges {
            a.push("--no-owner".into());
            a.push("--no-privileges".into());
        }
        for s in skipped_schemas(from, to, opts) {
            a.push(format!("--exclude-schema={s}"));
        }
    }
    a
}

/// Refuses a restore between engines (a PostgreSQL backup into a MySQL target and back).
pub fn check_restore_pair(from: Provider, to: Provider) -> Result<(), String> {
    if from.engine() != to.engine() {
        return Err(format!(
            "a {from} backup ({} engine) cannot be restored into a {to} target ({} engine)",
            from.engine().as_str(),
            to.engine().as_str()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
