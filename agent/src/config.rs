//! Agent configuration: a serde file struct (unknown keys refused), then `validate()` into the
//! runtime [`Config`]. Every error names the file, the key and what to do.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;
use lifeboat_common::{
    config::{ConfigError, check_no_parent, load_toml, resolve},
    names::{validate_database, validate_simple},
    secret::{Secret, check_private_file, read_secret_file},
    tls::TlsFiles,
};

mod encryption;
mod file;
mod urls;

use file::{FileConfig, FileFsRepository};
use urls::{validate_mysql_url, validate_pg_url};

/// The fixed level of a target whose backups adapt (`"auto"`): its WAL files and globals,
/// too small to adapt, use it. zstd's default.
pub const AUTO_FIXED_LEVEL: i32 = 3;

/// Runtime configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub name: String,
    pub environment: String,
    /// The coordinators' URLs: one, or the coordinators sharing a catalog, tried in turn.
    pub coordinators: Vec<String>,
    pub coordinator_server_name: Option<String>,
    pub max_concurrent_jobs: u32,
    pub state_dir: PathBuf,
    /// Where `backup verify` unpacks a base backup for `pg_verifybackup`, one private
    /// directory per job, removed after it.
    pub scratch_dir: PathBuf,
    /// The directories `backup export` may write files into (symbolic links resolved when
    /// an export is checked); empty: exports are refused.
    pub export_dirs: Vec<PathBuf>,
    pub tls: TlsFiles,
    pub repositories: BTreeMap<String, RepositoryConfig>,
    pub targets: BTreeMap<String, TargetConfig>,
    /// The WAL socket (`[wal]`), served when a target is physical.
    pub wal: crate::wal::config::WalConfig,
    /// Repositories' own `encryption` tables (targets writing there inherit them).
    pub repository_encryption: BTreeMap<String, crate::crypt::EncryptionConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryConfig {
    Fs { path: PathBuf },
    S3(Box<crate::repo::s3::S3Config>),
}

impl RepositoryConfig {
    /// How old an interrupted write must be before the janitor removes it, and how often the
    /// janitor runs.
    pub fn janitor_schedule(&self) -> (std::time::Duration, std::time::Duration) {
        match self {
            // Only this agent writes under its targets' directories, and a running job's
            // files are young: an hour is plenty.
            RepositoryConfig::Fs { .. } => (
                std::time::Duration::from_secs(6 * 3600),
                std::time::Duration::from_secs(3600),
            ),
            RepositoryConfig::S3(c) => (c.stale_upload_age, c.janitor_interval),
        }
    }
}

/// What a logical backup captures of the cluster's globals (`globals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalsCapture {
    /// Nothing; the manifest says so.
    Off,
    /// Roles, memberships, role settings and tablespaces, without password hashes (default).
    Roles,
    /// The same with the roles' password hashes (secrets: see docs/security.md).
    WithPasswords,
}

impl GlobalsCapture {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Roles => "roles",
            Self::WithPasswords => "with-passwords",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowCounts {
    Exact,
    Estimate,
    Off,
}

/// What a backup of a target is: a logical dump of its database, or (PostgreSQL) a physical
/// base backup of the whole cluster (ADR 0015).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    Logical,
    Physical,
}

impl BackupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Logical => "logical",
            BackupMode::Physical => "physical",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub engine: Engine,
    pub provider: String,
    /// The provider profile named by `provider`.
    pub profile: crate::provider::Provider,
    pub repository: String,
    /// Connection URL without a password.
    pub url: url::Url,
    /// The database named in `url`.
    pub database: String,
    pub password_file: Option<PathBuf>,
    /// zstd level; with `compression_auto`, the level of WAL files and globals, which are too
    /// small to adapt.
    pub compression_level: i32,
    /// `compression_level = "auto"`: a backup's level follows the spare CPU (ADR 0029).
    pub compression_auto: bool,
    pub compression_threads: u32,
    /// Connections loading a logical restore that does not say (`--jobs`): pg_restore jobs
    /// (above 1 the archive is spooled to `scratch_dir` first), or MariaDB/MySQL client
    /// connections loading tables at once.
    pub restore_jobs: u32,
    pub row_counts: RowCounts,
    pub pg_bin_dir: Option<PathBuf>,
    /// Where `mariadb-dump`/`mysqldump` and `mariadb`/`mysql` are (default: PATH).
    pub mysql_bin_dir: Option<PathBuf>,
    /// Connection parameters of a MySQL/MariaDB target (from `url`); `None` for PostgreSQL.
    pub mysql: Option<crate::engine::mysql::ConnParams>,
    /// Database to connect to for CREATE/DROP/ALTER DATABASE.
    pub maintenance_database: String,
    /// Whether restores may replace an existing database on this target (`--clean`). Off by
    /// default: the agent's own last line of defence, whatever the coordinator asks.
    pub allow_clean_restore: bool,
    /// The databases a `--clean` restore may replace (default: the target's own database).
    pub replaceable_databases: Vec<String>,
    /// What a backup of this target is (`mode`, default logical).
    pub mode: BackupMode,
    /// The directories under which physical backups may be restored into a data directory
    /// through this target (`restore --data-dir`); empty: none. The agent's own last line of
    /// defence, whatever the coordinator asks.
    pub restore_data_dirs: Vec<PathBuf>,
    /// SQL assertions a restore drill runs in the restored copy; each must return one row
    /// with one boolean `true`.
    pub drill_checks: Vec<String>,
    /// What a logical backup captures of the cluster's globals (`globals`).
    pub globals: GlobalsCapture,
    /// Repositories each backup is copied to after it succeeds (`copy_to`; the coordinator
    /// queues the copies).
    pub copy_to: Vec<String>,
    /// Client-side encryption of its backups (its own table, else its repository's); `None`:
    /// stored in plaintext.
    pub encryption: Option<crate::crypt::EncryptionConfig>,
}

/// Which database engine a target runs: the domain's own.
pub use lifeboat_proto::domain::Engine;

impl TargetConfig {
    /// Reads the password file (if any). Read at job time so rotation needs no restart.
    pub fn password(&self) -> Result<Option<Secret<String>>> {
        self.password_file
            .as_deref()
            .map(read_secret_file)
            .transpose()
    }
}

pub fn load(path: &Path) -> Result<Config> {
    let file: FileConfig = load_toml(path)?;
    Ok(validate(path, file)?)
}

pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let file: FileConfig = lifeboat_common::config::parse_toml(path, text)?;
    Ok(validate(path, file)?)
}

fn validate(path: &Path, mut f: FileConfig) -> Result<Config, ConfigError> {
    let e = |key: &str, msg: String| ConfigError::new(path, key, msg);
    validate_simple("agent name", &f.name).map_err(|x| e("name", x.to_string()))?;
    validate_simple("environment", &f.environment).map_err(|x| e("environment", x.to_string()))?;
    let coordinators =
        std::mem::replace(&mut f.coordinator, file::Coordinators::Several(Vec::new())).into_vec();
    if coordinators.is_empty() {
        return Err(e(
            "coordinator",
            "lists no URL; give the coordinator's https:// URL (or a list of them)".into(),
        ));
    }
    if coordinators.len() > 16 {
        return Err(e(
            "coordinator",
            format!("lists {} URLs; give at most 16", coordinators.len()),
        ));
    }
    for url in &coordinators {
        if !url.starts_with("https://") {
            return Err(e(
                "coordinator",
                format!("{url:?} must be an https:// URL (every connection uses mutual TLS)"),
            ));
        }
    }
    if f.max_concurrent_jobs == 0 || f.max_concurrent_jobs > 64 {
        return Err(e(
            "max_concurrent_jobs",
            format!("{} is out of range; use 1 to 64", f.max_concurrent_jobs),
        ));
    }
    check_no_parent(path, "state_dir", &f.state_dir)?;
    let state_dir = resolve(path, &f.state_dir);
    let scratch_dir = match &f.scratch_dir {
        Some(d) => {
            check_no_parent(path, "scratch_dir", d)?;
            resolve(path, d)
        }
        None => state_dir.join("scratch"),
    };
    let export_dirs = f
        .export_dirs
        .iter()
        .map(|d| {
            validate_dir(
                d,
                "exports write files anywhere",
                "/var/backups/lifeboat-export",
            )
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|m| e("export_dirs", m))?;

    let mut tls = TlsFiles {
        ca: resolve(path, &f.tls.ca),
        cert: resolve(path, &f.tls.cert),
        key: resolve(path, &f.tls.key),
    };
    for (key, p) in [
        ("tls.ca", &mut tls.ca),
        ("tls.cert", &mut tls.cert),
        ("tls.key", &mut tls.key),
    ] {
        check_no_parent(path, key, p)?;
        if !p.is_file() {
            return Err(e(
                key,
                format!("{} does not exist or is not a file", p.display()),
            ));
        }
    }
    check_private_file(&tls.key).map_err(|x| e("tls.key", format!("{x:#}")))?;

    let mut repositories = BTreeMap::new();
    let mut repository_encryption = BTreeMap::new();
    for (i, mut r) in f.repositories.into_iter().enumerate() {
        let key = |k: &str| format!("repository[{i}].{k}");
        validate_simple("repository name", &r.name).map_err(|x| e(&key("name"), x.to_string()))?;
        if let Some(enc) = encryption::from_repository_table(path, &key("encryption"), &mut r.rest)
            .map_err(|(k, m)| e(&k, m))?
        {
            repository_encryption.insert(r.name.clone(), enc);
        }
        let repo = match r.kind.as_str() {
            "fs" => {
                let fs: FileFsRepository = toml::Value::Table(r.rest).try_into().map_err(|x| {
                    e(
                        &key("path"),
                        format!("{x}; an fs repository takes only path = \"/dir\""),
                    )
                })?;
                check_no_parent(path, &key("path"), &fs.path)?;
                RepositoryConfig::Fs {
                    path: resolve(path, &fs.path),
                }
            }
            "s3" => {
                let s3: crate::repo::s3_config::FileS3 = toml::Value::Table(r.rest)
                    .try_into()
                    .map_err(|x| e(&key("kind"), format!("s3 repository: {x}")))?;
                RepositoryConfig::S3(Box::new(
                    s3.validate(path).map_err(|(k, msg)| e(&key(&k), msg))?,
                ))
            }
            other => {
                return Err(e(
                    &key("kind"),
                    format!("unknown repository kind {other:?}; use \"fs\" or \"s3\""),
                ));
            }
        };
        if repositories.insert(r.name.clone(), repo).is_some() {
            return Err(e(
                &key("name"),
                format!("repository {:?} is defined twice", r.name),
            ));
        }
    }

    let mut targets = BTreeMap::new();
    for (i, t) in f.targets.into_iter().enumerate() {
        let key = |k: &str| format!("target[{i}].{k}");
        validate_simple("target name", &t.name).map_err(|x| e(&key("name"), x.to_string()))?;
        let engine = Engine::parse(&t.engine).ok_or_else(|| {
            e(
                &key("engine"),
                format!(
                    "unknown engine {:?}; use \"postgres\" or \"mysql\"",
                    t.engine
                ),
            )
        })?;
        let profile = crate::provider::parse_for_engine(
            t.provider.as_deref().unwrap_or(match engine {
                Engine::Postgres => "postgres",
                Engine::Mysql => "mysql",
            }),
            engine,
        )
        .map_err(|x| e(&key("provider"), x.to_string()))?;
        let provider = profile.as_str().to_owned();
        if !repositories.contains_key(&t.repository) {
            return Err(e(
                &key("repository"),
                format!(
                    "no [[repository]] named {:?}; define it or fix the name",
                    t.repository
                ),
            ));
        }
        let (url, database, mysql) = match engine {
            Engine::Postgres => {
                let (url, database) = validate_pg_url(&t.url).map_err(|m| e(&key("url"), m))?;
                (url, database, None)
            }
            Engine::Mysql => {
                let (url, params) = validate_mysql_url(&t.url).map_err(|m| e(&key("url"), m))?;
                (url, params.database.clone(), Some(params))
            }
        };
        crate::provider::check_url(profile, &url)
            .map_err(|x| e(&key("url"), format!("{x} (provider {profile})")))?;
        let password_file = match t.password_file {
            Some(p) => {
                check_no_parent(path, &key("password_file"), &p)?;
                let p = resolve(path, &p);
                check_private_file(&p).map_err(|x| e(&key("password_file"), format!("{x:#}")))?;
                Some(p)
            }
            None => None,
        };
        let (compression_level, compression_auto) = match &t.compression_level {
            file::LevelSetting::Level(l) if (1..=19).contains(l) => (*l as i32, false),
            file::LevelSetting::Level(l) => {
                return Err(e(
                    &key("compression_level"),
                    format!("{l} is out of range; use 1 to 19, or \"auto\""),
                ));
            }
            file::LevelSetting::Word(w) if w == "auto" => (AUTO_FIXED_LEVEL, true),
            file::LevelSetting::Word(w) => {
                return Err(e(
                    &key("compression_level"),
                    format!("{w:?} is not a level; use 1 to 19, or \"auto\""),
                ));
            }
        };
        if !(1..=crate::work::MAX_RESTORE_JOBS).contains(&t.restore_jobs) {
            return Err(e(
                &key("restore_jobs"),
                format!(
                    "{} is out of range; use 1 (streamed into pg_restore) to {}",
                    t.restore_jobs,
                    crate::work::MAX_RESTORE_JOBS
                ),
            ));
        }
        if t.compression_threads > 256 {
            return Err(e(
                &key("compression_threads"),
                format!(
                    "{} is out of range; use 0 (one per core) to 256",
                    t.compression_threads
                ),
            ));
        }
        let row_counts = match t.row_counts.as_deref().unwrap_or("exact") {
            "exact" => RowCounts::Exact,
            "estimate" => RowCounts::Estimate,
            "off" => RowCounts::Off,
            other => {
                return Err(e(
                    &key("row_counts"),
                    format!("unknown value {other:?}; use \"exact\", \"estimate\" or \"off\""),
                ));
            }
        };
        let globals = match t.globals.as_deref().unwrap_or("roles") {
            "roles" => GlobalsCapture::Roles,
            "with-passwords" => GlobalsCapture::WithPasswords,
            "off" => GlobalsCapture::Off,
            other => {
                return Err(e(
                    &key("globals"),
                    format!(
                        "unknown value {other:?}; use \"roles\" (default: roles and memberships without passwords), \"with-passwords\" or \"off\""
                    ),
                ));
            }
        };
        let pg_bin_dir = match t.pg_bin_dir {
            Some(p) => {
                check_no_parent(path, &key("pg_bin_dir"), &p)?;
                let p = resolve(path, &p);
                if !p.is_dir() {
                    return Err(e(
                        &key("pg_bin_dir"),
                        format!("{} is not a directory", p.display()),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let mysql_bin_dir = match t.mysql_bin_dir {
            Some(p) => {
                check_no_parent(path, &key("mysql_bin_dir"), &p)?;
                let p = resolve(path, &p);
                if !p.is_dir() {
                    return Err(e(
                        &key("mysql_bin_dir"),
                        format!("{} is not a directory", p.display()),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        match engine {
            Engine::Postgres if mysql_bin_dir.is_some() => {
                return Err(e(
                    &key("mysql_bin_dir"),
                    "applies to engine = \"mysql\" targets only; use pg_bin_dir".into(),
                ));
            }
            Engine::Mysql if pg_bin_dir.is_some() => {
                return Err(e(
                    &key("pg_bin_dir"),
                    "applies to engine = \"postgres\" targets only; use mysql_bin_dir".into(),
                ));
            }
            Engine::Mysql if t.maintenance_database.is_some() => {
                return Err(e(
                    &key("maintenance_database"),
                    "applies to engine = \"postgres\" targets only".into(),
                ));
            }
            _ => {}
        }
        let maintenance_database = t.maintenance_database.unwrap_or_else(|| "postgres".into());
        validate_database(&maintenance_database)
            .map_err(|x| e(&key("maintenance_database"), x.to_string()))?;
        let replaceable_databases = match t.replaceable_databases {
            None => vec![database.clone()],
            Some(_) if !t.allow_clean_restore => {
                return Err(e(
                    &key("replaceable_databases"),
                    "has no effect without allow_clean_restore = true; set both to permit --clean restores, or remove it".into(),
                ));
            }
            Some(list) => {
                for db in &list {
                    validate_database(db)
                        .map_err(|x| e(&key("replaceable_databases"), x.to_string()))?;
                }
                list
            }
        };
        let mode =
            validate_mode(t.mode.as_deref(), engine, profile).map_err(|m| e(&key("mode"), m))?;
        let restore_data_dirs = match (engine, t.restore_data_dirs) {
            (_, None) => Vec::new(),
            (Engine::Mysql, Some(_)) => {
                return Err(e(
                    &key("restore_data_dirs"),
                    "applies to engine = \"postgres\" targets only (physical restores)".into(),
                ));
            }
            (Engine::Postgres, Some(dirs)) => dirs
                .into_iter()
                .map(|d| validate_dir(&d, "restores write anywhere", "/srv/pg"))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|m| e(&key("restore_data_dirs"), m))?,
        };
        for (i, check) in t.drill_checks.iter().enumerate() {
            if check.trim().is_empty() {
                return Err(e(
                    &key("drill_checks"),
                    format!(
                        "entry {} is empty; write a query returning one boolean, e.g. \"SELECT count(*) > 0 FROM orders\"",
                        i + 1
                    ),
                ));
            }
        }
        for (i, r) in t.copy_to.iter().enumerate() {
            let k = key("copy_to");
            if !repositories.contains_key(r) {
                return Err(e(
                    &k,
                    format!("no [[repository]] named {r:?}; define it or fix the name"),
                ));
            }
            if *r == t.repository {
                return Err(e(
                    &k,
                    format!(
                        "{r:?} is the target's own repository; copy_to lists other repositories (e.g. an off-site bucket)"
                    ),
                ));
            }
            if t.copy_to[..i].contains(r) {
                return Err(e(&k, format!("{r:?} is listed twice")));
            }
            if mode == BackupMode::Physical {
                return Err(e(
                    &k,
                    "copies of physical base backups (and of the WAL they need) are not supported; remove copy_to from this target, or copy the repository with your storage's own replication".into(),
                ));
            }
        }
        let encryption = match t.encryption {
            Some(f) => {
                Some(encryption::validate(path, &key("encryption"), f).map_err(|(k, m)| e(&k, m))?)
            }
            None => repository_encryption.get(&t.repository).cloned(),
        };
        if encryption.is_none()
            && let Some(r) = t
                .copy_to
                .iter()
                .find(|r| repository_encryption.contains_key(*r))
        {
            return Err(e(
                &key("copy_to"),
                format!(
                    "repository {r:?} is encrypted, and this target's backups are not: an encrypted repository never receives a plaintext backup; configure encryption for the target (or its repository {:?})",
                    t.repository
                ),
            ));
        }
        let tc = TargetConfig {
            name: t.name.clone(),
            engine,
            provider,
            profile,
            repository: t.repository,
            url,
            database,
            password_file,
            compression_level,
            compression_auto,
            compression_threads: t.compression_threads,
            restore_jobs: t.restore_jobs,
            row_counts,
            pg_bin_dir,
            mysql_bin_dir,
            mysql,
            maintenance_database,
            allow_clean_restore: t.allow_clean_restore,
            replaceable_databases,
            mode,
            restore_data_dirs,
            drill_checks: t.drill_checks,
            globals,
            copy_to: t.copy_to,
            encryption,
        };
        if tc.restore_jobs > 1 && tc.mode == BackupMode::Physical {
            return Err(e(
                &key("restore_jobs"),
                "restore_jobs loads a logical dump over several connections; a physical base backup is restored by unpacking it; remove it".into(),
            ));
        }
        if targets.insert(t.name.clone(), tc).is_some() {
            return Err(e(
                &key("name"),
                format!("target {:?} is defined twice", t.name),
            ));
        }
    }

    let wal = f
        .wal
        .validate(|p| resolve(path, p))
        .map_err(|(k, m)| e(&k, m))?;
    Ok(Config {
        file: path.to_owned(),
        name: f.name,
        environment: f.environment,
        coordinators,
        coordinator_server_name: f.coordinator_server_name,
        max_concurrent_jobs: f.max_concurrent_jobs,
        state_dir,
        scratch_dir,
        export_dirs,
        tls,
        repositories,
        targets,
        wal,
        repository_encryption,
    })
}

/// One of `restore_data_dirs` or `export_dirs`: an absolute directory other than `/`,
/// without `.` or `..`. `anywhere` says what `/` would allow, `example` is a good directory.
fn validate_dir(d: &Path, anywhere: &str, example: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    if !d.is_absolute() {
        return Err(format!(
            "{} is not an absolute path; name the directory from /",
            d.display()
        ));
    }
    if d.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{} contains . or ..", d.display()));
    }
    if !d.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "/ would let {anywhere}; name the directories they may go under, e.g. \"{example}\""
        ));
    }
    Ok(d.to_owned())
}

/// A target's `mode`: physical base backups need a replication connection to a self-hosted
/// PostgreSQL server, which MySQL targets and managed providers do not offer.
fn validate_mode(
    mode: Option<&str>,
    engine: Engine,
    profile: crate::provider::Provider,
) -> Result<BackupMode, String> {
    use crate::provider::Provider;
    let mode = match mode.unwrap_or("logical") {
        "logical" => return Ok(BackupMode::Logical),
        "physical" => BackupMode::Physical,
        other => {
            return Err(format!(
                "unknown mode {other:?}; use \"logical\" (a dump of the database) or \"physical\" (a base backup of a self-hosted PostgreSQL cluster)"
            ));
        }
    };
    match (engine, profile) {
        (Engine::Mysql, _) => Err(
            "\"physical\" is for engine = \"postgres\" targets only; remove mode (MySQL/MariaDB targets are backed up logically)".into(),
        ),
        (Engine::Postgres, Provider::Postgres) => Ok(mode),
        (Engine::Postgres, p) => Err(format!(
            "\"physical\" needs a replication connection to the server, which provider {p} does not give; remove mode (logical backups work with {p}) and use {p}'s own point-in-time recovery for physical restores"
        )),
    }
}

#[cfg(test)]
mod tests;
