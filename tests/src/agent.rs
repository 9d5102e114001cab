//! The real `lifeboat-agent`, with fs repositories and PostgreSQL targets.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, bail};

use crate::ctl::Ctl;
use crate::pki::{CertPair, Pki};
use crate::poll::eventually_default;
use crate::process::Proc;

/// One `[[target]]` of an agent config.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub repository: String,
    /// `postgres://USER@HOST:PORT/DB`, no password.
    pub url: String,
    pub password_file: PathBuf,
    pub pg_bin_dir: Option<PathBuf>,
    pub compression_level: Option<i32>,
    /// Extra `key = value` lines appended to the table verbatim.
    pub extra: Vec<String>,
    /// `engine` and `provider` of the target (`postgres`/`postgres` by default).
    pub engine: String,
    pub provider: String,
}

impl TargetConfig {
    pub fn new(name: &str, url: &str, password_file: &Path) -> Self {
        Self {
            name: name.to_owned(),
            repository: "local".to_owned(),
            url: url.to_owned(),
            password_file: password_file.to_owned(),
            pg_bin_dir: None,
            compression_level: None,
            extra: Vec::new(),
            engine: "postgres".to_owned(),
            provider: "postgres".to_owned(),
        }
    }

    /// A MySQL-engine target (`mysql://USER@HOST:PORT/DB`) with `provider`.
    pub fn mysql(name: &str, url: &str, password_file: &Path, provider: &str) -> Self {
        Self {
            engine: "mysql".to_owned(),
            provider: provider.to_owned(),
            ..Self::new(name, url, password_file)
        }
    }

    fn toml(&self) -> String {
        let mut s = format!(
            "\n[[target]]\n\
             name = {name:?}\n\
             engine = {engine:?}\n\
             provider = {provider:?}\n\
             repository = {repo:?}\n\
             url = {url:?}\n\
             password_file = {pw:?}\n",
            name = self.name,
            engine = self.engine,
            provider = self.provider,
            repo = self.repository,
            url = self.url,
            pw = self.password_file.display().to_string(),
        );
        if let Some(level) = self.compression_level {
            s.push_str(&format!("compression_level = {level}\n"));
        }
        if let Some(dir) = &self.pg_bin_dir {
            s.push_str(&format!("pg_bin_dir = {:?}\n", dir.display().to_string()));
        }
        for line in &self.extra {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

pub struct AgentBuilder {
    name: String,
    environment: String,
    dir: PathBuf,
    coordinator_url: String,
    ca: PathBuf,
    cert: CertPair,
    max_concurrent_jobs: u32,
    /// `[[repository]]` tables, as TOML text.
    repositories: Vec<String>,
    targets: Vec<TargetConfig>,
    env: Vec<(String, String)>,
    log_format: Option<String>,
    /// `[wal] socket_group`; the socket itself is always `DIR/wal.sock`, so agents of
    /// parallel tests never share one.
    wal_socket_group: Option<String>,
    /// `[wal] client`: the binary a restored cluster's restore_command runs.
    wal_client: Option<PathBuf>,
}

/// A running (or stopped, restartable) agent.
pub struct Agent {
    proc: Option<Proc>,
    name: String,
    environment: String,
    dir: PathBuf,
    config_path: PathBuf,
    state_dir: PathBuf,
    env: Vec<(String, String)>,
    log_format: Option<String>,
    targets: Vec<String>,
}

impl AgentBuilder {
    /// An agent named `name` in `environment`, files in `dir`, certificate from `pki`.
    pub fn new(
        dir: &Path,
        pki: &Pki,
        coordinator_url: &str,
        name: &str,
        environment: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).expect("create agent dir");
        Self {
            name: name.to_owned(),
            environment: environment.to_owned(),
            dir: dir.to_owned(),
            coordinator_url: coordinator_url.to_owned(),
            ca: pki.ca(),
            cert: pki.agent(name),
            max_concurrent_jobs: 2,
            repositories: Vec::new(),
            targets: Vec::new(),
            env: Vec::new(),
            log_format: None,
            wal_socket_group: None,
            wal_client: None,
        }
    }

    /// `[wal] client`.
    pub fn wal_client(mut self, path: &Path) -> Self {
        self.wal_client = Some(path.to_owned());
        self
    }

    /// `[wal] socket_group`: the group that may reach the WAL socket (mode 0660).
    pub fn wal_socket_group(mut self, group: &str) -> Self {
        self.wal_socket_group = Some(group.to_owned());
        self
    }

    /// An `fs` repository at `path`.
    pub fn fs_repository(mut self, name: &str, path: &Path) -> Self {
        self.repositories.push(format!(
            "name = {name:?}\nkind = \"fs\"\npath = {:?}\n",
            path.display().to_string()
        ));
        self
    }

    /// An `s3` repository; `body` holds its keys after name and kind (see
    /// [`crate::s3::S3Server::repository_toml`]).
    pub fn s3_repository(mut self, name: &str, body: &str) -> Self {
        self.repositories
            .push(format!("name = {name:?}\nkind = \"s3\"\n{body}"));
        self
    }

    pub fn target(mut self, target: TargetConfig) -> Self {
        self.targets.push(target);
        self
    }

    pub fn max_concurrent_jobs(mut self, n: u32) -> Self {
        self.max_concurrent_jobs = n;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn log_format(mut self, format: &str) -> Self {
        self.log_format = Some(format.to_owned());
        self
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The config file text this builder writes.
    pub fn config_toml(&self) -> String {
        let mut s = format!(
            "name = {name:?}\n\
             environment = {env:?}\n\
             coordinator = {url}\n\
             max_concurrent_jobs = {max}\n\
             state_dir = {state:?}\n\
             \n\
             [tls]\n\
             ca = {ca:?}\n\
             cert = {cert:?}\n\
             key = {key:?}\n",
            name = self.name,
            env = self.environment,
            // Several URLs, separated by commas, are written as a list.
            url = if self.coordinator_url.contains(',') {
                format!("{:?}", self.coordinator_url.split(',').collect::<Vec<_>>())
            } else {
                format!("{:?}", self.coordinator_url)
            },
            max = self.max_concurrent_jobs,
            state = self.state_dir().display().to_string(),
            ca = self.ca.display().to_string(),
            cert = self.cert.cert.display().to_string(),
            key = self.cert.key.display().to_string(),
        );
        for r in &self.repositories {
            s.push_str("\n[[repository]]\n");
            s.push_str(r);
        }
        for t in &self.targets {
            s.push_str(&t.toml());
        }
        s.push_str(&format!(
            "\n[wal]\nsocket = {:?}\n",
            self.dir.join("wal.sock").display().to_string()
        ));
        if let Some(g) = &self.wal_socket_group {
            s.push_str(&format!("socket_group = {g:?}\n"));
        }
        if let Some(c) = &self.wal_client {
            s.push_str(&format!("client = {:?}\n", c.display().to_string()));
        }
        s
    }

    /// Writes the config and starts the process. Does not wait for it to connect: see
    /// [`Agent::wait_connected`].
    pub fn spawn(self) -> Agent {
        let config_path = self.dir.join("agent.toml");
        std::fs::write(&config_path, self.config_toml()).expect("write agent.toml");
        let mut agent = Agent {
            proc: None,
            name: self.name.clone(),
            environment: self.environment.clone(),
            dir: self.dir.clone(),
            config_path,
            state_dir: self.state_dir(),
            env: self.env.clone(),
            log_format: self.log_format.clone(),
            targets: self.targets.iter().map(|t| t.name.clone()).collect(),
        };
        agent.start_process();
        agent
    }

    /// Starts the agent and waits until `ctl` sees it connected with all its targets.
    pub fn start(self, ctl: &Ctl) -> Agent {
        let mut agent = self.spawn();
        agent.wait_connected(ctl);
        agent
    }
}

impl Agent {
    pub fn builder(
        dir: &Path,
        pki: &Pki,
        coordinator_url: &str,
        name: &str,
        environment: &str,
    ) -> AgentBuilder {
        AgentBuilder::new(dir, pki, coordinator_url, name, environment)
    }

    fn start_process(&mut self) {
        assert!(
            self.proc.as_mut().is_none_or(|p| !p.is_running()),
            "agent {} is already running",
            self.name
        );
        let mut cmd = Command::new(crate::bin("lifeboat-agent"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir);
        if let Some(f) = &self.log_format {
            cmd.arg("--log-format").arg(f);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Drop the old Proc (already exited) before opening the logs again in append mode.
        self.proc = None;
        self.proc = Some(Proc::spawn(&format!("agent-{}", self.name), cmd, &self.dir));
    }

    /// Polls `agents list --output json` until this agent is connected and `targets list`
    /// shows all its targets.
    pub fn wait_connected(&mut self, ctl: &Ctl) {
        let name = self.name.clone();
        let want: Vec<String> = self
            .targets
            .iter()
            .map(|t| format!("{}/{}", self.environment, t))
            .collect();
        eventually_default(&format!("agent {name} to connect"), || {
            if let Some(p) = self.proc.as_mut()
                && let Some(status) = p.try_status()
            {
                panic!(
                    "agent {name} exited ({status}):\n{}",
                    p.logs_tail(16 * 1024)
                );
            }
            agent_connected(ctl, &name)?;
            let targets = ctl.json_list(&["targets", "list"], "targets")?;
            for w in &want {
                if !targets
                    .iter()
                    .any(|t| t.get("name").and_then(|n| n.as_str()) == Some(w))
                {
                    bail!("target {w} not listed yet: {targets:?}");
                }
            }
            Ok(())
        });
    }

    /// Starts the agent again with the same config (after [`Agent::stop`] or [`Agent::kill`])
    /// and waits for it to connect.
    pub fn restart(&mut self, ctl: &Ctl) {
        self.start_process();
        self.wait_connected(ctl);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent's WAL socket (`[wal] socket`).
    pub fn wal_socket(&self) -> PathBuf {
        self.dir.join("wal.sock")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("agent was started")
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("agent was started").pid()
    }

    /// Everything the agent printed, over all its restarts.
    pub fn logs(&self) -> String {
        match &self.proc {
            Some(p) => p.logs(),
            None => String::new(),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> ExitStatus {
        self.proc().stop()
    }

    /// SIGKILL. Only for tests about a crash.
    pub fn kill(&mut self) -> ExitStatus {
        self.proc().kill()
    }
}

/// Whether `agents list` shows agent `name` as connected.
pub fn agent_connected(ctl: &Ctl, name: &str) -> anyhow::Result<()> {
    let agents = ctl.json_list(&["agents", "list"], "agents")?;
    let agent = agents
        .iter()
        .find(|a| a.get("name").and_then(|n| n.as_str()) == Some(name))
        .with_context(|| format!("agent {name} not listed: {agents:?}"))?;
    if agent.get("connected").and_then(|c| c.as_bool()) != Some(true) {
        bail!("agent {name} not connected: {agent}");
    }
    Ok(())
}
