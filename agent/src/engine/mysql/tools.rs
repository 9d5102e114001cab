//! The client programs: finding `mariadb-dump`/`mysqldump` and `mariadb`/`mysql`, reading their
//! versions and options, and deciding whether they can be trusted with a server (D16).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::{ServerFacts, ServerFlavor, Version};

/// Which vendor built a client tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFlavor {
    MariaDb,
    MySql,
}

/// A dump or client program and what it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTool {
    pub path: PathBuf,
    /// The file name: `mariadb-dump`, `mysqldump`, `mariadb`, `mysql`.
    pub name: String,
    pub flavor: ClientFlavor,
    /// The server release the tool belongs to (`10.11.19`, `8.0.36`), not its own `Ver 10.19`.
    pub version: Version,
    /// The whole `--version` line, for the manifest.
    pub version_text: String,
    /// Options seen in its `--help` (without the leading `--`).
    options: Vec<String>,
}

impl ClientTool {
    /// Runs `TOOL --version` and `TOOL --help` (no connection is made).
    pub async fn probe(path: &Path) -> Result<Self> {
        let version = run_quick(path, &["--version"]).await?;
        // `--help` output lists the options; `--verbose` is needed by some builds for all of them.
        let help = run_quick(path, &["--help", "--verbose"])
            .await
            .unwrap_or_default();
        Self::from_outputs(path, &version, &help).with_context(|| {
            format!(
                "cannot read the version of {} from {:?}",
                path.display(),
                version.trim()
            )
        })
    }

    /// Builds the description from `--version` and `--help` texts.
    pub fn from_outputs(path: &Path, version_text: &str, help_text: &str) -> Option<Self> {
        let (flavor, version) = parse_tool_version(version_text)?;
        let mut options = Vec::new();
        for line in help_text.lines() {
            for word in line.split_whitespace() {
                if let Some(o) = word.strip_prefix("--") {
                    let o = o.split(['=', '[', ',']).next().unwrap_or("");
                    if !o.is_empty() && !options.iter().any(|x| x == o) {
                        options.push(o.to_owned());
                    }
                }
            }
        }
        Some(Self {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_owned(),
            flavor,
            version,
            version_text: version_text.trim().to_owned(),
            options,
        })
    }

    /// Whether `--help` lists `--OPTION`.
    pub fn supports(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }

    /// Whether this SQL client stops at MariaDB's sandbox-mode first line (MySQL's clients and
    /// MariaDB's before 10.5.25/10.6.18/10.11.8 do): then feed it through
    /// [`super::stream::SandboxLineFilter`].
    pub fn needs_sandbox_filter(&self) -> bool {
        !self.supports("sandbox")
    }

    /// `mariadb-dump 10.11.19 (MariaDB)`, for messages and the manifest.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({})",
            self.name,
            self.version,
            match self.flavor {
                ClientFlavor::MariaDb => "MariaDB",
                ClientFlavor::MySql => "MySQL",
            }
        )
    }
}

async fn run_quick(path: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        crate::process::tool_command(path)
            .args(args)
            .env("HOME", "/nonexistent")
            .output(),
    )
    .await
    .with_context(|| format!("{} {} did not answer", path.display(), args.join(" ")))?
    .with_context(|| {
        format!(
            "cannot run {}; install the MariaDB or MySQL client tools (mariadb-client) or set the tool directory",
            path.display()
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads a client tool's `--version` line:
/// - `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)`
/// - `mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)`
/// - `mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)`
/// - `mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)`
pub fn parse_tool_version(text: &str) -> Option<(ClientFlavor, Version)> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let flavor = if line.contains("MariaDB") {
        ClientFlavor::MariaDb
    } else {
        ClientFlavor::MySql
    };
    let after = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|rest| Version::parse_prefix(rest.trim_start()))
    };
    let v = after(" Distrib ")
        .or_else(|| after(" from "))
        .or_else(|| after(" Ver "))?;
    Some((flavor, v))
}

/// Where to look for a program: `bin_dir` if given, else `PATH`.
fn find_program(bin_dir: Option<&Path>, names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match bin_dir {
        Some(d) => vec![d.to_owned()],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    for name in names {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The dump program for a server: `mariadb-dump` for MariaDB, `mysqldump` first for MySQL.
pub fn find_dump_tool(bin_dir: Option<&Path>, server: ServerFlavor) -> Result<PathBuf> {
    let names: &[&str] = match server {
        ServerFlavor::MariaDb => &["mariadb-dump", "mysqldump"],
        ServerFlavor::MySql | ServerFlavor::Vitess => &["mysqldump", "mariadb-dump"],
    };
    find_program(bin_dir, names).with_context(|| {
        format!(
            "no {} found{}; install the client tools (Debian: mariadb-client or mysql-client)",
            names.join(" or "),
            bin_dir.map_or(" on PATH".into(), |d| format!(" in {}", d.display()))
        )
    })
}

/// The SQL client for restores: `mariadb` for MariaDB, `mysql` first for MySQL.
pub fn find_client_tool(bin_dir: Option<&Path>, server: ServerFlavor) -> Result<PathBuf> {
    let names: &[&str] = match server {
        ServerFlavor::MariaDb => &["mariadb", "mysql"],
        ServerFlavor::MySql | ServerFlavor::Vitess => &["mysql", "mariadb"],
    };
    find_program(bin_dir, names).with_context(|| {
        format!(
            "no {} found{}; install the client tools (Debian: mariadb-client or mysql-client)",
            names.join(" or "),
            bin_dir.map_or(" on PATH".into(), |d| format!(" in {}", d.display()))
        )
    })
}

/// Refuses a client tool that cannot be trusted with this server (D16), naming both versions.
/// Returns warnings for combinations that work with caveats.
///
/// - MariaDB server: a MariaDB tool of the same release series or newer. MySQL's mysqldump is
///   refused (it queries MySQL-only tables and misreads MariaDB-only objects such as sequences).
/// - MySQL / Vitess server: a MySQL tool of the same series or newer; a MariaDB tool works
///   for plain schemas but is warned about (it does not know MySQL 8-only syntax or
///   `--set-gtid-purged`).
pub fn check_client(tool: &ClientTool, server: &ServerFacts) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    match (server.flavor, tool.flavor) {
        (ServerFlavor::MariaDb, ClientFlavor::MySql) => bail!(
            "{} ({}) cannot be trusted with {} ({}): MySQL's client tools misread MariaDB-only objects; install mariadb-client {} or newer",
            tool.name,
            tool.describe(),
            server.describe(),
            server.version_string,
            series(server.version)
        ),
        (ServerFlavor::MariaDb, ClientFlavor::MariaDb)
        | (ServerFlavor::MySql | ServerFlavor::Vitess, ClientFlavor::MySql) => {
            if tool.version.series() < server.version.series() {
                bail!(
                    "{} is older than the server ({}, {}); use {} {} or newer: install newer client tools or point the tool directory at them",
                    tool.describe(),
                    server.describe(),
                    server.version_string,
                    tool.name,
                    series(server.version)
                );
            }
        }
        (ServerFlavor::MySql | ServerFlavor::Vitess, ClientFlavor::MariaDb) => {
            warnings.push(format!(
                "{} is MariaDB's tool and the server is {}; it works for plain schemas, but install MySQL's client {} or newer for full fidelity",
                tool.describe(),
                server.describe(),
                series(server.version)
            ));
        }
    }
    Ok(warnings)
}

fn series(v: Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// Whether a backup taken from `backup` (flavour and version from the manifest) can be
/// restored into `server`. Refuses a newer release series into an older server, and MySQL 8
/// dumps into MariaDB (utf8mb4_0900_* collations, MySQL-only syntax); warns about MariaDB
/// dumps into MySQL (sequences, system-versioned tables and MariaDB-only syntax fail there).
pub fn check_restore_source(
    backup_flavor: ServerFlavor,
    backup_version: Version,
    server: &ServerFacts,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let same_family =
        (backup_flavor == ServerFlavor::MariaDb) == (server.flavor == ServerFlavor::MariaDb);
    if same_family {
        if backup_version.series() > server.version.series() {
            bail!(
                "the backup comes from {} {} and cannot be restored into the older {}; restore into {} {} or newer",
                backup_flavor.product(),
                backup_version,
                server.describe(),
                backup_flavor.product(),
                series(backup_version)
            );
        }
    } else if backup_flavor.is_mysql_family() && backup_version.major >= 8 {
        bail!(
            "the backup comes from {} {} and cannot be restored into {}: MySQL 8 dumps use collations and syntax MariaDB does not have; restore into MySQL 8 or newer",
            backup_flavor.product(),
            backup_version,
            server.describe()
        );
    } else {
        warnings.push(format!(
            "the backup comes from {} {} and is restored into {}; objects using features the target lacks will fail the restore (nothing is swapped in then)",
            backup_flavor.product(),
            backup_version,
            server.describe()
        ));
    }
    Ok(warnings)
}
