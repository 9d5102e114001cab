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
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: String,
    environment: String,
    coordinator: String,
    coordinator_server_name: Option<String>,
    #[serde(default = "default_max_jobs")]
    max_concurrent_jobs: u32,
    state_dir: PathBuf,
    tls: FileTls,
    #[serde(default, rename = "repository")]
    repositories: Vec<FileRepository>,
    #[serde(default, rename = "target")]
    targets: Vec<FileTarget>,
}

fn default_max_jobs() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// `name` and `kind`; the other keys depend on the kind and are checked strictly once it is
/// known (`FileFsRepository`, [`crate::repo::s3_config::FileS3`]).
#[derive(Debug, Deserialize)]
struct FileRepository {
    name: String,
    kind: String,
    #[serde(flatten)]
    rest: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFsRepository {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    name: String,
    engine: String,
    #[serde(default)]
    provider: Option<String>,
    repository: String,
    url: String,
    password_file: Option<PathBuf>,
    #[serde(default = "default_level")]
    compression_level: i32,
    #[serde(default)]
    compression_threads: u32,
    #[serde(default)]
    row_counts: Option<String>,
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    maintenance_database: Option<String>,
    #[serde(default)]
    allow_clean_restore: bool,
}

fn default_level() -> i32 {
    3
}

/// Runtime configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub name: String,
    pub environment: String,
    pub coordinator: String,
    pub coordinator_server_name: Option<String>,
    pub max_concurrent_jobs: u32,
    pub state_dir: PathBuf,
    pub tls: TlsFiles,
    pub repositories: BTreeMap<String, RepositoryConfig>,
    pub targets: BTreeMap<String, TargetConfig>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowCounts {
    Exact,
    Estimate,
    Off,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub engine: Engine,
    pub provider: String,
    pub repository: String,
    /// Connection URL without a password.
    pub url: url::Url,
    /// The database named in `url`.
    pub database: String,
    pub password_file: Option<PathBuf>,
    pub compression_level: i32,
    pub compression_threads: u32,
    pub row_counts: RowCounts,
    pub pg_bin_dir: Option<PathBuf>,
    /// Database to connect to for CREATE/DROP/ALTER DATABASE.
    pub maintenance_database: String,
    /// Whether restores may replace an existing database on this target (`--clean`). Off by
    /// default: the agent's own last line of defence, whatever the coordinator asks.
    pub allow_clean_restore: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
        }
    }
}

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

fn validate(path: &Path, f: FileConfig) -> Result<Config, ConfigError> {
    let e = |key: &str, msg: String| ConfigError::new(path, key, msg);
    validate_simple("agent name", &f.name).map_err(|x| e("name", x.to_string()))?;
    validate_simple("environment", &f.environment).map_err(|x| e("environment", x.to_string()))?;
    if !f.coordinator.starts_with("https://") {
        return Err(e(
            "coordinator",
            format!(
                "{:?} must be an https:// URL (every connection uses mutual TLS)",
                f.coordinator
            ),
        ));
    }
    if f.max_concurrent_jobs == 0 || f.max_concurrent_jobs > 64 {
        return Err(e(
            "max_concurrent_jobs",
            format!("{} is out of range; use 1 to 64", f.max_concurrent_jobs),
        ));
    }
    check_no_parent(path, "state_dir", &f.state_dir)?;
    let state_dir = resolve(path, &f.state_dir);

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
    for (i, r) in f.repositories.into_iter().enumerate() {
        let key = |k: &str| format!("repository[{i}].{k}");
        validate_simple("repository name", &r.name).map_err(|x| e(&key("name"), x.to_string()))?;
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
        let engine = match t.engine.as_str() {
            "postgres" => Engine::Postgres,
            other => {
                return Err(e(
                    &key("engine"),
                    format!("unknown engine {other:?}; use \"postgres\""),
                ));
            }
        };
        let provider = t.provider.unwrap_or_else(|| "postgres".into());
        if provider != "postgres" {
            return Err(e(
                &key("provider"),
                format!("unknown provider {provider:?} for engine postgres; use \"postgres\""),
            ));
        }
        if !repositories.contains_key(&t.repository) {
            return Err(e(
                &key("repository"),
                format!(
                    "no [[repository]] named {:?}; define it or fix the name",
                    t.repository
                ),
            ));
        }
        let url = url::Url::parse(&t.url).map_err(|x| {
            e(
                &key("url"),
                format!("not a valid URL ({x}); use postgres://USER@HOST:PORT/DATABASE"),
            )
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(e(
                &key("url"),
                "must start with postgres:// or postgresql://".into(),
            ));
        }
        if url.password().is_some() {
            // Do not echo the URL: it holds a secret.
            return Err(e(
                &key("url"),
                "contains a password; remove it from the URL and put it in password_file (chmod 600)"
                    .into(),
            ));
        }
        if url.query_pairs().any(|(k, _)| k == "password") {
            return Err(e(
                &key("url"),
                "contains a password parameter; put the password in password_file (chmod 600)"
                    .into(),
            ));
        }
        // Parameters that would override the host, user or database lifeboat connects to (the
        // restore targets a scratch database by name), or put a secret on a command line.
        const REFUSED_PARAMS: [&str; 8] = [
            "dbname",
            "host",
            "hostaddr",
            "port",
            "user",
            "service",
            "passfile",
            "sslpassword",
        ];
        if let Some((k, _)) = url
            .query_pairs()
            .find(|(k, _)| REFUSED_PARAMS.contains(&k.as_ref()))
        {
            return Err(e(
                &key("url"),
                format!(
                    "the query parameter {k:?} is not allowed; put host, port, user and database in the URL itself (and passwords in password_file)"
                ),
            ));
        }
        let database = url.path().trim_start_matches('/').to_owned();
        if database.is_empty() {
            return Err(e(
                &key("url"),
                "names no database; use postgres://USER@HOST:PORT/DATABASE".into(),
            ));
        }
        validate_database(&database).map_err(|x| e(&key("url"), x.to_string()))?;
        if url.username().is_empty() {
            return Err(e(
                &key("url"),
                "names no user; use postgres://USER@HOST:PORT/DATABASE".into(),
            ));
        }
        let password_file = match t.password_file {
            Some(p) => {
                check_no_parent(path, &key("password_file"), &p)?;
                let p = resolve(path, &p);
                check_private_file(&p).map_err(|x| e(&key("password_file"), format!("{x:#}")))?;
                Some(p)
            }
            None => None,
        };
        if !(1..=19).contains(&t.compression_level) {
            return Err(e(
                &key("compression_level"),
                format!("{} is out of range; use 1 to 19", t.compression_level),
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
        let maintenance_database = t.maintenance_database.unwrap_or_else(|| "postgres".into());
        validate_database(&maintenance_database)
            .map_err(|x| e(&key("maintenance_database"), x.to_string()))?;
        let tc = TargetConfig {
            name: t.name.clone(),
            engine,
            provider,
            repository: t.repository,
            url,
            database,
            password_file,
            compression_level: t.compression_level,
            compression_threads: t.compression_threads,
            row_counts,
            pg_bin_dir,
            maintenance_database,
            allow_clean_restore: t.allow_clean_restore,
        };
        if targets.insert(t.name.clone(), tc).is_some() {
            return Err(e(
                &key("name"),
                format!("target {:?} is defined twice", t.name),
            ));
        }
    }

    Ok(Config {
        file: path.to_owned(),
        name: f.name,
        environment: f.environment,
        coordinator: f.coordinator,
        coordinator_server_name: f.coordinator_server_name,
        max_concurrent_jobs: f.max_concurrent_jobs,
        state_dir,
        tls,
        repositories,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            for f in ["ca.pem", "a.pem"] {
                std::fs::write(dir.path().join(f), "x").expect("write");
            }
            for f in ["a.key", "pw"] {
                let p = dir.path().join(f);
                std::fs::write(&p, "secret").expect("write");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            Self { dir }
        }

        fn parse(&self, extra_top: &str, target: &str) -> Result<Config> {
            self.parse_with_url(extra_top, "postgres://backup@127.0.0.1:5432/orders", target)
        }

        fn parse_with_url(&self, extra_top: &str, url: &str, target: &str) -> Result<Config> {
            let text = format!(
                r#"name = "a"
environment = "dev"
coordinator = "https://127.0.0.1:7443"
state_dir = "state"
{extra_top}
[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"

[[repository]]
name = "local"
kind = "fs"
path = "repo"

[[target]]
name = "orders"
engine = "postgres"
repository = "local"
url = "{url}"
password_file = "pw"
{target}
"#
            );
            parse(&self.dir.path().join("agent.toml"), &text)
        }
    }

    #[test]
    fn valid_config() {
        let f = Fixture::new();
        let c = f.parse("", "").expect("valid");
        let t = &c.targets["orders"];
        assert_eq!(t.database, "orders");
        assert_eq!(t.compression_level, 3);
        assert_eq!(t.row_counts, RowCounts::Exact);
        assert!(!t.allow_clean_restore, "replacing databases must be opt-in");
        assert_eq!(c.max_concurrent_jobs, 2);
        assert_eq!(c.state_dir, f.dir.path().join("state"));
        assert_eq!(t.password().expect("pw").expect("some").expose(), "secret");
    }

    fn refused(extra_top: &str, target: &str, needle: &str) {
        let f = Fixture::new();
        let e = format!(
            "{:#}",
            f.parse(extra_top, target).expect_err("bad config accepted")
        );
        assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
        assert!(e.contains("agent.toml"), "{e:?} does not name the file");
    }

    /// An extra `[[repository]]` of kind s3 with `body` (appended after the target).
    fn s3_repo(f: &Fixture, body: &str) -> Result<Config> {
        let secret = f.dir.path().join("s3.secret");
        if !secret.exists() {
            std::fs::write(&secret, "s3-secret").expect("write");
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            std::fs::write(f.dir.path().join("s3.id"), "AKIDEXAMPLE").expect("write");
        }
        f.parse(
            "",
            &format!("\n[[repository]]\nname = \"offsite\"\nkind = \"s3\"\n{body}\n"),
        )
    }

    const S3_OK: &str = "bucket = \"acme-backups\"\nprefix = \"/lifeboat/\"\naccess_key_id_file = \"s3.id\"\nsecret_access_key_file = \"s3.secret\"";

    #[test]
    fn s3_repository_defaults() {
        let f = Fixture::new();
        let c = s3_repo(&f, S3_OK).expect("valid");
        let RepositoryConfig::S3(s3) = &c.repositories["offsite"] else {
            panic!("not s3");
        };
        assert_eq!(s3.prefix, "lifeboat/");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.part_size, 16 * 1024 * 1024);
        assert_eq!(s3.parts_in_flight, 4);
        assert_eq!(
            s3.stale_upload_age,
            std::time::Duration::from_secs(24 * 3600)
        );
        // The secret is not in the Debug output.
        assert!(!format!("{c:?}").contains("s3-secret"));
        let c = s3_repo(&f, "bucket = \"b-1.x\"\ncredentials = \"chain\"\nendpoint = \"http://127.0.0.1:9000/\"\npath_style = true\nstorage_class = \"STANDARD_IA\"\nsse = \"aws:kms\"\nsse_kms_key_id = \"alias/backups\"\npart_size_mib = 64\nstale_upload_age = \"2h\"").expect("valid");
        let RepositoryConfig::S3(s3) = &c.repositories["offsite"] else {
            panic!("not s3");
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.part_size, 64 * 1024 * 1024);
    }

    #[test]
    fn bad_s3_repositories_are_refused_with_the_key() {
        let cases: &[(&str, &str)] = &[
            ("bucket = \"Bad_Bucket\"\ncredentials = \"env\"", "bucket"),
            ("bucket = \"b12\"", "credentials"),
            ("bucket = \"b12\"\ncredentials = \"magic\"", "credentials"),
            (
                "bucket = \"b12\"\naccess_key_id_file = \"s3.id\"",
                "secret_access_key_file",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nsecret_access_key_file = \"s3.secret\"",
                "credentials",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"http://s3.example.com\"",
                "unencrypted",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"https://k:s@s3.example.com\"",
                "credentials",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"https://s3.example.com/bucket\"",
                "without a path",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nstorage_class = \"DEEP_ARCHIVE\"",
                "GLACIER_IR",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nsse = \"rot13\"",
                "sse",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nsse_kms_key_id = \"k\"",
                "aws:kms",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\npart_size_mib = 1",
                "part_size_mib",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nparts_in_flight = 0",
                "parts_in_flight",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nstale_upload_age = \"soon\"",
                "stale_upload_age",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nprefix = \"a/../b\"",
                "prefix",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\npath = \"/x\"",
                "path",
            ),
            (
                "bucket = \"b12\"\ncredentials = \"env\"\nbucketz = 1",
                "bucketz",
            ),
        ];
        for (body, needle) in cases {
            let f = Fixture::new();
            let e = format!("{:#}", s3_repo(&f, body).expect_err(body));
            assert!(
                e.contains(needle),
                "{body}: {e:?} does not mention {needle:?}"
            );
            assert!(
                e.contains("repository[1]"),
                "{body}: {e:?} does not name the table"
            );
        }
        // A world-readable secret is refused.
        let f = Fixture::new();
        s3_repo(&f, S3_OK).expect("valid");
        std::fs::set_permissions(
            f.dir.path().join("s3.secret"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let e = format!(
            "{:#}",
            s3_repo(&f, S3_OK).expect_err("world-readable secret")
        );
        assert!(e.contains("secret_access_key_file"), "{e}");
        // fs repositories take only a path.
        let f = Fixture::new();
        let e = format!(
            "{:#}",
            f.parse(
                "",
                "\n[[repository]]\nname = \"x\"\nkind = \"fs\"\npath = \"/x\"\nbucket = \"b\"\n"
            )
            .expect_err("fs with a bucket")
        );
        assert!(e.contains("bucket"), "{e}");
    }

    #[test]
    fn bad_configs_are_refused_with_file_and_key() {
        refused("bogus = 1", "", "bogus");
        refused("max_concurrent_jobs = 0", "", "max_concurrent_jobs");
        refused("", "compression_level = 0", "compression_level");
        refused("", "compression_level = 23", "compression_level");
        refused("", "row_counts = \"maybe\"", "row_counts");
        refused("", "pg_bin_dir = \"/usr/../bin\"", "'..'");
        refused("", "engine2 = \"x\"", "engine2");
    }

    #[test]
    fn password_in_url_is_refused_without_echoing_it() {
        let f = Fixture::new();
        let r = f.parse_with_url(
            "",
            "postgres://backup:SENTINEL-9f2c@127.0.0.1:5432/orders",
            "",
        );
        let e = format!("{:#}", r.expect_err("accepted"));
        assert!(e.contains("password"), "{e}");
        assert!(!e.contains("SENTINEL-9f2c"), "secret echoed: {e}");
    }

    #[test]
    fn url_parameters_that_redirect_the_connection_are_refused() {
        let f = Fixture::new();
        for (param, ok) in [
            ("sslmode=require", true),
            ("dbname=other", false),
            ("host=elsewhere", false),
            ("sslpassword=x", false),
        ] {
            let url = format!("postgres://backup@127.0.0.1:5432/orders?{param}");
            let r = f.parse_with_url("", &url, "");
            assert_eq!(r.is_ok(), ok, "{param}: {r:?}");
        }
    }

    #[test]
    fn world_readable_password_file_is_refused() {
        let f = Fixture::new();
        std::fs::set_permissions(
            f.dir.path().join("pw"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let e = format!("{:#}", f.parse("", "").expect_err("accepted"));
        assert!(
            e.contains("password_file") && e.contains("chmod 600"),
            "{e}"
        );
    }

    #[test]
    fn example_config_shape_parses() {
        // deploy/agent.example.toml, with paths pointed at the fixture.
        let f = Fixture::new();
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/agent.example.toml"
        ))
        .expect("read example");
        let text = example
            .replace("/etc/lifeboat/ca.pem", "ca.pem")
            .replace("/etc/lifeboat/prod-1.pem", "a.pem")
            .replace("/etc/lifeboat/prod-1.key", "a.key")
            .replace("/etc/lifeboat/orders.pass", "pw");
        let c = parse(&f.dir.path().join("agent.toml"), &text).expect("example parses");
        assert_eq!(c.name, "prod-1");
        assert!(c.targets.contains_key("orders"));
    }
}
