//! The real `lifeboat-coordinator`, on port 0, with a SQLite catalog in the test dir.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::pki::{CertPair, Pki};
use crate::poll::{eventually, scaled};
use crate::process::Proc;

pub struct CoordinatorBuilder {
    dir: PathBuf,
    ca: PathBuf,
    cert: CertPair,
    operators: Vec<(String, String)>,
    agent_lease_secs: u64,
    heartbeat_interval_secs: u64,
    queue_timeout_secs: u64,
    env: Vec<(String, String)>,
    log_format: Option<String>,
    /// The `[catalog]` table, when not the default SQLite file in `dir`.
    catalog: Option<String>,
}

/// A running coordinator.
pub struct Coordinator {
    proc: Proc,
    dir: PathBuf,
    config_path: PathBuf,
    catalog_path: PathBuf,
    grpc: String,
    http: String,
    env: Vec<(String, String)>,
    log_format: Option<String>,
}

impl CoordinatorBuilder {
    /// A coordinator whose files live in `dir`, with a server certificate from `pki`.
    pub fn new(dir: &Path, pki: &Pki) -> Self {
        std::fs::create_dir_all(dir).expect("create coordinator dir");
        Self {
            dir: dir.to_owned(),
            ca: pki.ca(),
            cert: pki.coordinator("coordinator"),
            operators: Vec::new(),
            agent_lease_secs: 30,
            heartbeat_interval_secs: 1,
            queue_timeout_secs: 600,
            env: Vec::new(),
            log_format: None,
            catalog: None,
        }
    }

    /// The whole `[catalog]` table (e.g. a PostgreSQL catalog) instead of a SQLite file.
    pub fn catalog_toml(mut self, table: &str) -> Self {
        self.catalog = Some(table.to_owned());
        self
    }

    /// Adds `[[operator]] name role`.
    pub fn operator(mut self, name: &str, role: &str) -> Self {
        self.operators.push((name.to_owned(), role.to_owned()));
        self
    }

    pub fn agent_lease_secs(mut self, secs: u64) -> Self {
        self.agent_lease_secs = secs;
        self
    }

    pub fn heartbeat_interval_secs(mut self, secs: u64) -> Self {
        self.heartbeat_interval_secs = secs;
        self
    }

    pub fn queue_timeout_secs(mut self, secs: u64) -> Self {
        self.queue_timeout_secs = secs;
        self
    }

    /// An environment variable for the process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn log_format(mut self, format: &str) -> Self {
        self.log_format = Some(format.to_owned());
        self
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.dir.join("catalog.db")
    }

    /// With `LIFEBOAT_E2E_CATALOG_POSTGRES` set to a PostgreSQL server's URL (a role that may
    /// create databases, no TLS), every coordinator of the suite gets a new database on that
    /// server as its catalog instead of a SQLite file: the whole suite run on the PostgreSQL
    /// backend, by hand. Tests that handle the SQLite file themselves fail that way.
    fn postgres_catalog_from_env(&self) -> Option<String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let server = std::env::var("LIFEBOAT_E2E_CATALOG_POSTGRES").ok()?;
        let server = server.trim_end_matches('/');
        let name = format!(
            "e2e_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        psql_admin(server, &format!("CREATE DATABASE {name}"));
        Some(format!(
            "[catalog]\nurl = \"{server}/{name}\"\ntls = \"disable\"\n"
        ))
    }

    /// The config file text this builder writes.
    pub fn config_toml(&self) -> String {
        // Test agents are issued per test and not listed; the harness admits them all.
        let mut s = format!(
            "allow_any_agent = true\n\
             \n\
             [server]\n\
             grpc_listen = \"127.0.0.1:0\"\n\
             http_listen = \"127.0.0.1:0\"\n\
             \n\
             [tls]\n\
             ca = {ca:?}\n\
             cert = {cert:?}\n\
             key = {key:?}\n\
             \n\
             {catalog}\n\
             [jobs]\n\
             agent_lease_secs = {lease}\n\
             heartbeat_interval_secs = {hb}\n\
             queue_timeout_secs = {qt}\n",
            ca = self.ca.display().to_string(),
            cert = self.cert.cert.display().to_string(),
            key = self.cert.key.display().to_string(),
            catalog = self
                .catalog
                .clone()
                .or_else(|| self.postgres_catalog_from_env())
                .unwrap_or_else(|| format!(
                    "[catalog]\nurl = \"sqlite://{}\"\n",
                    self.catalog_path().display()
                )),
            lease = self.agent_lease_secs,
            hb = self.heartbeat_interval_secs,
            qt = self.queue_timeout_secs,
        );
        for (name, role) in &self.operators {
            s.push_str(&format!(
                "\n[[operator]]\nname = {name:?}\nrole = {role:?}\n"
            ));
        }
        s
    }

    /// Writes the config and starts the process; returns once the ready file names both
    /// listeners.
    pub fn start(self) -> Coordinator {
        let config_path = self.dir.join("coordinator.toml");
        std::fs::write(&config_path, self.config_toml()).expect("write coordinator.toml");
        let (proc, grpc, http) = spawn(
            &self.dir,
            &config_path,
            self.log_format.as_deref(),
            &self.env,
        );
        let catalog_path = self.catalog_path();
        Coordinator {
            proc,
            dir: self.dir,
            config_path,
            catalog_path,
            grpc,
            http,
            env: self.env,
            log_format: self.log_format,
        }
    }
}

/// Starts `lifeboat-coordinator --config CONFIG` in `dir` and waits for its ready file; returns
/// the process and its gRPC and HTTP addresses.
fn spawn(
    dir: &Path,
    config_path: &Path,
    log_format: Option<&str>,
    env: &[(String, String)],
) -> (Proc, String, String) {
    let ready_file = dir.join("coordinator.ready.json");
    let _ = std::fs::remove_file(&ready_file);
    let mut cmd = Command::new(crate::bin("lifeboat-coordinator"));
    cmd.arg("--config")
        .arg(config_path)
        .arg("--ready-file")
        .arg(&ready_file)
        .current_dir(dir);
    if let Some(f) = log_format {
        cmd.arg("--log-format").arg(f);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn("coordinator", cmd, dir);
    let (grpc, http) = eventually(
        "the coordinator's ready file",
        scaled(Duration::from_secs(60)),
        || {
            if let Some(status) = proc.try_status() {
                // Not retryable: stop polling with the reason.
                panic!(
                    "coordinator exited during start-up ({status}):\n{}",
                    proc.logs_tail(16 * 1024)
                );
            }
            read_ready_file(&ready_file)
        },
    );
    (proc, grpc, http)
}

/// Parses `{"grpc": "127.0.0.1:PORT", "http": "127.0.0.1:PORT"}`.
/// Config that turns the coordinator's own retention runs off (`[prune]`), for tests of
/// `lifeboat prune` run by hand. Append it once, with the `[[retention]]` tables.
pub const MANUAL_PRUNE: &str = "[prune]\nafter_backup = false\ncron = \"\"\n";

pub fn read_ready_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("parse ready file")?;
    let get = |k: &str| -> anyhow::Result<String> {
        match v.get(k).and_then(|x| x.as_str()) {
            Some(s) if !s.is_empty() => Ok(s.to_owned()),
            _ => bail!("ready file has no {k:?}: {text}"),
        }
    };
    Ok((get("grpc")?, get("http")?))
}

impl Coordinator {
    pub fn builder(dir: &Path, pki: &Pki) -> CoordinatorBuilder {
        CoordinatorBuilder::new(dir, pki)
    }

    /// `https://127.0.0.1:PORT` for agents and the CLI.
    pub fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    pub fn grpc_addr(&self) -> &str {
        &self.grpc
    }

    pub fn http_addr(&self) -> &str {
        &self.http
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The SQLite catalog file (its `-wal` and `-shm` files sit next to it).
    pub fn catalog_path(&self) -> &Path {
        &self.catalog_path
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// SIGTERM and wait; the exit status is returned for the test to check.
    pub fn stop(&mut self) -> ExitStatus {
        self.proc.stop()
    }

    /// SIGKILL. Only for tests about a crash.
    pub fn kill(&mut self) -> ExitStatus {
        self.proc.kill()
    }

    /// Starts the coordinator again (after [`Coordinator::stop`] or [`Coordinator::kill`])
    /// with the same config and catalog, listening for gRPC on the same address, so agents
    /// and CLIs configured with [`Coordinator::url`] find it again. Returns once it is ready.
    pub fn restart(&mut self) {
        assert!(
            !self.proc.is_running(),
            "the coordinator is still running; stop or kill it first"
        );
        let config = std::fs::read_to_string(&self.config_path).expect("read coordinator.toml");
        let pinned: String = config
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("grpc_listen") {
                    format!("grpc_listen = {:?}\n", self.grpc)
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&self.config_path, pinned).expect("write coordinator.toml");
        let (proc, grpc, http) = spawn(
            &self.dir,
            &self.config_path,
            self.log_format.as_deref(),
            &self.env,
        );
        // The old process has exited: dropping its handle does nothing but close it.
        self.proc = proc;
        assert_eq!(
            grpc, self.grpc,
            "the restarted coordinator listens elsewhere"
        );
        self.http = http;
    }

    /// Appends `text` (TOML, e.g. `[[retention]]` tables) to the config file; it takes effect
    /// at the next [`Coordinator::restart`].
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config_path).expect("read coordinator.toml");
        config.push('\n');
        config.push_str(text);
        config.push('\n');
        std::fs::write(&self.config_path, config).expect("write coordinator.toml");
    }

    /// [`Coordinator::restart`] with the catalog lost: the SQLite file and its `-wal` and
    /// `-shm` files are deleted first, so it starts with an empty catalog.
    pub fn restart_with_fresh_catalog(&mut self) {
        assert!(
            !self.proc.is_running(),
            "the coordinator is still running; stop or kill it first"
        );
        // A PostgreSQL catalog given by LIFEBOAT_E2E_CATALOG_POSTGRES is lost by dropping its
        // database and making an empty one of the same name.
        let config = std::fs::read_to_string(&self.config_path).expect("read coordinator.toml");
        if let Some(url) = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("url = \"postgres://"))
            .map(|rest| format!("postgres://{}", rest.trim_end_matches('"')))
            && let Some((server, db)) = url.rsplit_once('/')
        {
            psql_admin(server, &format!("DROP DATABASE {db} WITH (FORCE)"));
            psql_admin(server, &format!("CREATE DATABASE {db}"));
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.catalog_path.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("delete {}: {e}", PathBuf::from(path).display()),
            }
        }
        self.restart();
    }
}

/// Runs `sql` in the `postgres` database of the PostgreSQL server at `server` (a URL without
/// a database); panics with psql's error.
fn psql_admin(server: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-X", "-q", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
