//! `[catalog]`: a SQLite file, or a PostgreSQL database reached over verified TLS with the
//! password in a file of its own.

use std::path::{Path, PathBuf};

use lifeboat_common::config::{ConfigError, check_no_parent, resolve};
use serde::Deserialize;
use toml::Spanned;

use super::At;
use crate::catalog::{PostgresCatalog, PostgresTls};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCatalog {
    url: Spanned<String>,
    /// PostgreSQL only: the role's password, alone in a file (0600).
    password_file: Option<Spanned<PathBuf>>,
    /// PostgreSQL only: "verify-full" (the default) or "disable".
    tls: Option<Spanned<String>>,
    /// PostgreSQL only: the CA that signed the server's certificate (PEM).
    ca: Option<Spanned<PathBuf>>,
}

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogLocation {
    /// A SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database (it must exist; the coordinator creates its tables).
    Postgres(PostgresLocation),
}

/// A PostgreSQL catalog as configured; the password is read from its file at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresLocation {
    /// `postgres://USER@HOST[:PORT]/DATABASE`
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub tls: PostgresTls,
}

impl PostgresLocation {
    /// The connection settings, with the password read from its file (0600, refused
    /// otherwise).
    pub fn connect_settings(&self) -> anyhow::Result<PostgresCatalog> {
        let password = self
            .password_file
            .as_deref()
            .map(lifeboat_common::secret::read_secret_file)
            .transpose()?;
        Ok(PostgresCatalog {
            url: self.url.clone(),
            password,
            tls: self.tls.clone(),
        })
    }
}

const KEY: &str = "catalog.url";

impl FileCatalog {
    pub(super) fn validate(&self, at: &At<'_>) -> Result<CatalogLocation, ConfigError> {
        let value = self.url.get_ref();
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return self.postgres(at).map(CatalogLocation::Postgres);
        }
        for (key, set) in [
            ("catalog.password_file", self.password_file.is_some()),
            ("catalog.tls", self.tls.is_some()),
            ("catalog.ca", self.ca.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    at.file,
                    key,
                    "applies only to a PostgreSQL catalog (catalog.url = \"postgres://…\"); \
                     remove it for a SQLite catalog"
                        .to_string(),
                ));
            }
        }
        self.sqlite(at).map(CatalogLocation::Sqlite)
    }

    fn sqlite(&self, at: &At<'_>) -> Result<PathBuf, ConfigError> {
        let url = &self.url;
        let value = url.get_ref();
        let Some(rest) = value.strip_prefix("sqlite://") else {
            return Err(at.err(
                KEY,
                url,
                format!(
                    "{value:?} is not a catalog URL; write sqlite:///ABSOLUTE/PATH.db or \
                     sqlite://RELATIVE/PATH.db (relative to this file), or \
                     postgres://USER@HOST:PORT/DATABASE"
                ),
            ));
        };
        if rest.is_empty() || rest.ends_with('/') {
            return Err(at.err(
                KEY,
                url,
                "names no database file; write e.g. sqlite:///var/lib/lifeboat/catalog.db".into(),
            ));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(at.err(
                KEY,
                url,
                "must not carry options ('?…'); the coordinator sets the SQLite options itself"
                    .into(),
            ));
        }
        let path = Path::new(rest);
        check_no_parent(at.file, KEY, path).map_err(|e| at.err(KEY, url, e.message))?;
        Ok(resolve(at.file, path))
    }

    fn postgres(&self, at: &At<'_>) -> Result<PostgresLocation, ConfigError> {
        let url = &self.url;
        let bad = |message: &str| at.err(KEY, url, message.into());
        // Never echo the value: it may hold a password.
        let parsed: url::Url = url.get_ref().parse().map_err(|e| {
            bad(&format!(
                "is not a valid URL ({e}); write postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if parsed.password().is_some() {
            return Err(bad(
                "contains a password; remove it from the URL and put it in \
                 catalog.password_file (a file of its own, chmod 600)",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(
                "must not carry parameters ('?…'); TLS is set with catalog.tls and catalog.ca, \
                 the password with catalog.password_file",
            ));
        }
        if parsed.username().is_empty() {
            return Err(bad(
                "names no user; write postgres://USER@HOST:PORT/DATABASE",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(
                "names no host; write postgres://USER@HOST:PORT/DATABASE",
            ));
        }
        let database = parsed.path().trim_start_matches('/');
        if database.is_empty() || database.contains('/') {
            return Err(bad(
                "names no database; write postgres://USER@HOST:PORT/DATABASE (create the \
                 database first; the coordinator creates its tables)",
            ));
        }
        let file_path = |key: &str, value: &Spanned<PathBuf>| {
            let p = value.get_ref();
            if p.as_os_str().is_empty() {
                return Err(at.err(key, value, "must not be empty; give a file path".into()));
            }
            check_no_parent(at.file, key, p).map_err(|e| at.err(key, value, e.message))?;
            Ok(resolve(at.file, p))
        };
        let password_file = self
            .password_file
            .as_ref()
            .map(|p| file_path("catalog.password_file", p))
            .transpose()?;
        let ca = self
            .ca
            .as_ref()
            .map(|p| file_path("catalog.ca", p))
            .transpose()?;
        let tls = match self.tls.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None | Some((_, "verify-full")) => PostgresTls::VerifyFull { ca },
            Some((t, "disable")) => {
                if self.ca.is_some() {
                    return Err(at.err(
                        "catalog.tls",
                        t,
                        "is \"disable\" but catalog.ca is set; remove one of them".into(),
                    ));
                }
                PostgresTls::Disable
            }
            Some((t, other)) => {
                return Err(at.err(
                    "catalog.tls",
                    t,
                    format!(
                        "{other:?} is not a TLS mode; write \"verify-full\" (the default: the \
                         server's certificate and host name are checked) or \"disable\" (plain \
                         TCP, for a server on this host or a trusted network)"
                    ),
                ));
            }
        };
        Ok(PostgresLocation {
            url: parsed.to_string(),
            password_file,
            tls,
        })
    }
}

impl CatalogLocation {
    /// The files the catalog needs are there: the SQLite file's directory; PostgreSQL's
    /// password file (private to this user) and CA.
    pub(super) fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        match self {
            CatalogLocation::Sqlite(path) => {
                let dir = path.parent().unwrap_or_else(|| Path::new("."));
                if !dir.as_os_str().is_empty() && !dir.is_dir() {
                    return Err(ConfigError::new(
                        file,
                        KEY,
                        format!(
                            "directory {} does not exist; create it (the database file is \
                             created on first start)",
                            dir.display()
                        ),
                    ));
                }
            }
            CatalogLocation::Postgres(pg) => {
                if let Some(p) = &pg.password_file {
                    lifeboat_common::secret::check_private_file(p).map_err(|e| {
                        ConfigError::new(
                            file,
                            "catalog.password_file",
                            format!("{e:#}; it must hold the catalog role's password alone"),
                        )
                    })?;
                }
                if let PostgresTls::VerifyFull { ca: Some(ca) } = &pg.tls
                    && !ca.is_file()
                {
                    return Err(ConfigError::new(
                        file,
                        "catalog.ca",
                        format!(
                            "{} is not a file; copy there the CA certificate (PEM) that signed \
                             the PostgreSQL server's certificate",
                            ca.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
