//! Opening the catalog on either backend and bringing its schema up to date.

use std::{path::Path, path::PathBuf, time::Duration};

use lifeboat_common::secret::Secret;
use sqlx::{
    ConnectOptions, Executor,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
};

use super::{Catalog, CatalogError, Result};

/// Which database holds the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A PostgreSQL catalog: where it is and how to reach it. `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresCatalog {
    /// `postgres://USER@HOST:PORT/DATABASE`, without a password or parameters (checked by the
    /// configuration).
    pub url: String,
    pub password: Option<Secret<String>>,
    pub tls: PostgresTls,
}

/// How the coordinator secures its connections to a PostgreSQL catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresTls {
    /// TLS, the server's certificate checked against `ca` (or the public web roots when
    /// none is given) and its name against the URL's host. The default.
    VerifyFull { ca: Option<PathBuf> },
    /// Plain TCP: only for a server on the same host or a network the operator trusts.
    Disable,
}

/// Pool sizes: SQLite has one writer at a time anyway; PostgreSQL serves several at once.
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 10;

fn pool_options() -> AnyPoolOptions {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new().acquire_timeout(Duration::from_secs(15))
}

impl Catalog {
    /// Opens (creating if missing) the SQLite catalog at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let open_err = |source: sqlx::Error| CatalogError::Open {
            path: path.display().to_string(),
            detail: source.to_string(),
        };
        let Some(text) = path.to_str() else {
            return Err(open_err(sqlx::Error::Configuration(
                "the catalog path is not valid UTF-8".into(),
            )));
        };
        // The path is percent-decoded by the driver: encode every byte that could be read as
        // URL syntax.
        let encoded: String =
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2F", "/");
        let options: AnyConnectOptions = format!("sqlite://{encoded}?mode=rwc")
            .parse()
            .map_err(open_err)?;
        let pool = pool_options()
            .max_connections(SQLITE_CONNECTIONS)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A job result is acknowledged only once it is durable (synchronous=FULL).
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let catalog = Self {
            pool,
            backend: Backend::Sqlite,
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Connects to a PostgreSQL catalog and applies migrations (in a transaction each; a
    /// second coordinator starting at the same time waits on sqlx's migration lock).
    pub async fn open_postgres(pg: &PostgresCatalog) -> Result<Self> {
        let catalog = Self::connect_postgres(pg).await?;
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Connects to a PostgreSQL catalog without touching its schema: a coordinator standing
    /// by does not migrate under the active one (it checks [`Catalog::schema_status`]).
    pub async fn connect_postgres(pg: &PostgresCatalog) -> Result<Self> {
        let open_err = |source| pg.open_error(source);
        let url = pg.connect_url().map_err(open_err)?;
        let options = AnyConnectOptions::from_url(&url).map_err(open_err)?;
        let pool = pool_options()
            .max_connections(POSTGRES_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        Ok(Self {
            pool,
            backend: Backend::Postgres,
        })
    }

    /// Applies the migrations this binary carries. A catalog that a newer release already
    /// upgraded is refused, naming the versions, before anything is run.
    pub async fn migrate(&self) -> Result<()> {
        let status = self.schema_status().await?;
        if let Some(e) = status.newer_error() {
            return Err(e);
        }
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// The migrations this binary carries for this catalog's backend.
    pub(super) fn migrator(&self) -> Migrator {
        match self.backend {
            Backend::Sqlite => super::migrator(),
            Backend::Postgres => postgres_migrator(),
        }
    }
}

impl PostgresCatalog {
    /// The error for a connection to this catalog that could not be made, with a hint.
    pub(super) fn open_error(&self, source: sqlx::Error) -> CatalogError {
        CatalogError::Open {
            path: self.url.clone(),
            detail: postgres_hint(&self.tls, &source),
        }
    }

    /// The URL the driver connects with: password, TLS settings, application name and the
    /// sessions' isolation level added. Never logged.
    pub(super) fn connect_url(&self) -> std::result::Result<url::Url, sqlx::Error> {
        let config = |e: &str| sqlx::Error::Configuration(e.to_owned().into());
        let mut url: url::Url = self
            .url
            .parse()
            .map_err(|e: url::ParseError| sqlx::Error::Configuration(e.into()))?;
        if let Some(password) = &self.password {
            url.set_password(Some(password.expose()))
                .map_err(|()| config("the catalog URL cannot carry a password"))?;
        }
        let mut query = url.query_pairs_mut();
        query.append_pair("application_name", "lifeboat-coordinator");
        // SQLite's transactions are serializable, and the catalog code relies on it (read,
        // decide, write in one transaction). The same guarantee on PostgreSQL; a lost race is
        // a serialization failure, retryable like SQLITE_BUSY. No JIT: the catalog's queries
        // are index lookups whose cost estimates on large tables trip the JIT threshold, and
        // compiling took 200 ms for a query that runs in 2 (tests/bench/catalog.sh).
        query.append_pair(
            "options",
            "-c default_transaction_isolation=serializable -c jit=off",
        );
        match &self.tls {
            PostgresTls::VerifyFull { ca } => {
                query.append_pair("sslmode", "verify-full");
                if let Some(ca) = ca {
                    let ca = ca
                        .to_str()
                        .ok_or_else(|| config("the catalog CA path is not valid UTF-8"))?;
                    query.append_pair("sslrootcert", ca);
                }
            }
            PostgresTls::Disable => {
                query.append_pair("sslmode", "disable");
            }
        }
        drop(query);
        Ok(url)
    }
}

/// Why a PostgreSQL catalog could not be reached, and what to change. The error never holds
/// the password: sqlx reports the server's message or the I/O failure, not the URL.
pub(super) fn postgres_hint(tls: &PostgresTls, e: &sqlx::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("certificate") || text.contains("CertificateRequired") {
        match tls {
            PostgresTls::VerifyFull { ca: Some(ca) } => format!(
                "the server's TLS certificate did not verify against catalog.ca ({}) or does \
                 not name the URL's host; point catalog.ca at the CA that signed it",
                ca.display()
            ),
            _ => "the server's TLS certificate did not verify against the public CA roots or \
                  does not name the URL's host; set catalog.ca to the CA that signed it"
                .to_owned(),
        }
    } else if text.contains("password authentication failed")
        || text.contains("no password was provided")
    {
        "the server refused the role's password; put the right one in catalog.password_file"
            .to_owned()
    } else if text.contains("does not exist") {
        "create the role and the database first (CREATE DATABASE … OWNER …); the coordinator \
         creates its tables"
            .to_owned()
    } else if text.contains("TLS") && text.contains("not supported") {
        "the server does not offer TLS; enable ssl on it, or set catalog.tls = \"disable\" \
         for a server on this host or a network you trust"
            .to_owned()
    } else if text.contains("Connection refused") || text.contains("timed out") {
        "nothing answers at the URL's host and port; check that the server runs and listens \
         there"
            .to_owned()
    } else {
        return text;
    };
    format!("{text}; {hint}")
}

/// The PostgreSQL catalog's schema. It starts at version 18, the SQLite schema's version when
/// the backend was added; later migrations are added to both with the same number.
fn postgres_migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            18,
            "schema".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(
                "../../migrations/postgres/0018_schema.sql"
            )),
            false,
        ),
        Migration::new(
            19,
            "drill pages, cancel requests".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(
                "../../migrations/postgres/0019_pages_and_cancels.sql"
            )),
            false,
        ),
    ])
}
