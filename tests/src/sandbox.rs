//! The usual world of one test: PostgreSQL, a CA, a coordinator, one agent with an fs
//! repository and some targets, and an `admin` operator's CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use crate::agent::{Agent, TargetConfig};
use crate::coordinator::Coordinator;
use crate::ctl::{Ctl, CtlOutput};
use crate::pg::Pg;
use crate::pki::Pki;
use crate::poll::eventually;
use crate::{TestDir, poll};

/// The environment every sandbox agent belongs to.
pub const ENV: &str = "test";
/// The agent's name.
pub const AGENT: &str = "agent-1";

/// One target of the sandbox agent.
#[derive(Debug, Clone)]
pub struct SandboxTarget {
    name: String,
    database: String,
    wrong_password: bool,
    port: Option<u16>,
    pg_bin_dir: Option<PathBuf>,
    compression_level: Option<i32>,
    create_db: bool,
    extra: Vec<String>,
    provider: Option<String>,
    /// Connect as this user with this password instead of the server's admin role.
    user: Option<(String, String)>,
    /// Host in the URL instead of 127.0.0.1.
    host: Option<String>,
    /// Query string of the URL (`sslmode=…`).
    query: Option<String>,
}

impl SandboxTarget {
    /// Target `name` on database `name` (created empty), correct password.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            database: name.to_owned(),
            wrong_password: false,
            port: None,
            pg_bin_dir: None,
            compression_level: None,
            create_db: true,
            extra: Vec::new(),
            provider: None,
            user: None,
            host: None,
            query: None,
        }
    }

    /// Connects to `host` instead of 127.0.0.1.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Appends `query` to the URL's query string.
    pub fn query(mut self, query: &str) -> Self {
        self.query = Some(query.to_owned());
        self
    }

    /// Connects as `user` with `password` (the test creates the user and its grants).
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// The target's provider profile (default: the engine's plain one).
    pub fn provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self
    }

    pub fn database(mut self, db: &str) -> Self {
        self.database = db.to_owned();
        self
    }

    /// The password file holds a wrong password.
    pub fn wrong_password(mut self) -> Self {
        self.wrong_password = true;
        self
    }

    /// Connects to this port instead of the server's (e.g. one nobody listens on).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn pg_bin_dir(mut self, dir: &Path) -> Self {
        self.pg_bin_dir = Some(dir.to_owned());
        self
    }

    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = Some(level);
        self
    }

    /// Do not create the database.
    pub fn no_create(mut self) -> Self {
        self.create_db = false;
        self
    }

    /// A verbatim `key = value` line for the target table.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }
}

pub struct SandboxBuilder {
    test_name: String,
    targets: Vec<SandboxTarget>,
    operators: Vec<(String, String)>,
    agent_lease_secs: u64,
    agent_max_concurrent_jobs: Option<u32>,
    agent_wal_socket_group: Option<String>,
    agent_wal_client: Option<PathBuf>,
    pg_password: Option<String>,
    repo_path: Option<PathBuf>,
    s3: Vec<String>,
    s3_copies: bool,
    env: Vec<(String, String)>,
    agent_env: Vec<(String, String)>,
    s3_env_credentials: bool,
    dir: Option<TestDir>,
    mariadb_targets: Vec<SandboxTarget>,
    mariadb_tls: bool,
    log_format: Option<String>,
    coordinator_catalog: Option<String>,
    standby_coordinator: Option<String>,
    standby_first: bool,
}

/// The S3 side of a sandbox built with [`SandboxBuilder::s3`]: the server and the fault proxy
/// the agent talks through.
pub struct S3Env {
    pub proxy: crate::s3proxy::S3Proxy,
    pub server: crate::s3::S3Server,
    pub bucket: String,
    /// Key prefix inside the bucket.
    pub prefix: String,
}

impl S3Env {
    /// The file under which the server keeps `key` (relative to the repository).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.server
            .object_path(&self.bucket, &format!("{}/{key}", self.prefix))
    }
}

/// Fields drop in declaration order: the agent stops first, then the coordinator, then
/// PostgreSQL; the test directory goes last.
pub struct Sandbox {
    pub agent: Agent,
    /// Set when built with [`SandboxBuilder::s3`]; the targets then use the S3 repository.
    pub s3: Option<S3Env>,
    pub coordinator: Coordinator,
    /// The CLI as operator `admin` (role admin).
    pub admin: Ctl,
    pub pki: Pki,
    pub pg: Pg,
    /// Set when built with [`SandboxBuilder::mariadb_target`].
    pub mariadb: Option<crate::mariadb::MariaDb>,
    /// The fs repository's root.
    pub repo: PathBuf,
    pub dir: TestDir,
}

impl SandboxBuilder {
    pub fn new(test_name: &str) -> Self {
        Self {
            test_name: test_name.to_owned(),
            targets: Vec::new(),
            operators: Vec::new(),
            agent_lease_secs: 30,
            agent_max_concurrent_jobs: None,
            agent_wal_socket_group: None,
            agent_wal_client: None,
            pg_password: None,
            repo_path: None,
            s3: Vec::new(),
            s3_copies: false,
            env: Vec::new(),
            agent_env: Vec::new(),
            s3_env_credentials: false,
            mariadb_targets: Vec::new(),
            mariadb_tls: false,
            dir: None,
            log_format: None,
            coordinator_catalog: None,
            standby_coordinator: None,
            standby_first: false,
        }
    }

    /// Targets back up to an S3 repository named `offsite` (a real s3s-fs behind a fault proxy)
    /// instead of the fs repository; `extra` are more keys of its `[[repository]]` table.
    pub fn s3(mut self, extra: &[&str]) -> Self {
        self.s3 = extra.iter().map(|s| (*s).to_owned()).collect();
        self.s3.push("# s3".into());
        self
    }

    /// Use a test dir the test made first (to put wrapper scripts or data in it).
    /// An S3 repository `offsite` as with [`Self::s3`], but the targets keep backing up to the
    /// fs repository `local` and copy each backup to `offsite` (`copy_to`).
    pub fn s3_copies(mut self) -> Self {
        self.s3_copies = true;
        self.s3(&[])
    }

    pub fn dir(mut self, dir: TestDir) -> Self {
        self.dir = Some(dir);
        self
    }

    pub fn target(mut self, t: SandboxTarget) -> Self {
        self.targets.push(t);
        self
    }

    /// An operator besides `admin`, with a certificate (see [`Sandbox::ctl_as`]).
    pub fn operator(mut self, name: &str, role: &str) -> Self {
        self.operators.push((name.to_owned(), role.to_owned()));
        self
    }

    pub fn agent_lease_secs(mut self, secs: u64) -> Self {
        self.agent_lease_secs = secs;
        self
    }

    /// The agent's `max_concurrent_jobs` (default: the [`AgentBuilder`](crate::AgentBuilder)'s).
    pub fn agent_max_concurrent_jobs(mut self, n: u32) -> Self {
        self.agent_max_concurrent_jobs = Some(n);
        self
    }

    /// The agent's `[wal] socket_group` (see [`AgentBuilder::wal_socket_group`](crate::AgentBuilder::wal_socket_group)).
    pub fn agent_wal_socket_group(mut self, group: &str) -> Self {
        self.agent_wal_socket_group = Some(group.to_owned());
        self
    }

    /// The agent's `[wal] client`.
    pub fn agent_wal_client(mut self, path: &Path) -> Self {
        self.agent_wal_client = Some(path.to_owned());
        self
    }

    /// The `lifeboat` role's password (default: random).
    pub fn pg_password(mut self, password: &str) -> Self {
        self.pg_password = Some(password.to_owned());
        self
    }

    /// Where the fs repository lives (default: `<test dir>/repo`).
    pub fn repo_path(mut self, path: &Path) -> Self {
        self.repo_path = Some(path.to_owned());
        self
    }

    /// The S3 server's keys go into the agent's environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`), for `credentials = "env"` or `"chain"`.
    pub fn agent_env_from_s3(mut self) -> Self {
        self.s3_env_credentials = true;
        self
    }

    /// An environment variable for the agent only.
    pub fn agent_env(mut self, key: &str, value: &str) -> Self {
        self.agent_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An environment variable for both the coordinator and the agent (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A target (engine `mysql`, provider `mariadb`) on a throwaway MariaDB server, started
    /// for the sandbox; its database is created unless [`SandboxTarget::no_create`]. A
    /// [`SandboxTarget::pg_bin_dir`] becomes the target's `mysql_bin_dir`.
    pub fn mariadb_target(mut self, t: SandboxTarget) -> Self {
        self.mariadb_targets.push(t);
        self
    }

    /// The MariaDB server accepts only TLS, and the MariaDB targets' URLs verify it
    /// (`ssl-mode=verify_identity` with the server's CA): for profiles that require TLS.
    pub fn mariadb_tls(mut self) -> Self {
        self.mariadb_tls = true;
        self
    }

    /// Another coordinator's URL, listed after the sandbox's own for the agent and for
    /// `admin` (`coordinator = [OWN, URL]`, `--coordinator OWN,URL`).
    pub fn standby_coordinator(mut self, url: &str) -> Self {
        self.standby_coordinator = Some(url.to_owned());
        self
    }

    /// As [`SandboxBuilder::standby_coordinator`], listed first (`[URL, OWN]`): the agent
    /// and `admin` try it before the sandbox's own.
    pub fn standby_coordinator_first(mut self, url: &str) -> Self {
        self.standby_first = true;
        self.standby_coordinator(url)
    }

    /// The coordinator's whole `[catalog]` table (e.g. a PostgreSQL catalog).
    pub fn coordinator_catalog(mut self, table: &str) -> Self {
        self.coordinator_catalog = Some(table.to_owned());
        self
    }

    /// `--log-format` of the coordinator and the agent (`json` or `human`).
    pub fn log_format(mut self, format: &str) -> Self {
        self.log_format = Some(format.to_owned());
        self
    }

    pub fn build(mut self) -> Sandbox {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| TestDir::new(&self.test_name));
        let pg = match &self.pg_password {
            Some(p) => Pg::start_with_password(p),
            None => Pg::start(),
        };
        for t in &self.targets {
            if t.create_db && !pg.database_exists(&t.database) {
                pg.create_db(&t.database);
            }
        }

        let pki = Pki::init(&dir.path().join("pki"));
        let admin_cert = pki.operator("admin");
        let mut cb = Coordinator::builder(&dir.sub("coordinator"), &pki)
            .operator("admin", "admin")
            .agent_lease_secs(self.agent_lease_secs);
        for (name, role) in &self.operators {
            pki.operator(name);
            cb = cb.operator(name, role);
        }
        for (k, v) in &self.env {
            cb = cb.env(k, v);
        }
        if let Some(f) = &self.log_format {
            cb = cb.log_format(f);
        }
        if let Some(table) = &self.coordinator_catalog {
            cb = cb.catalog_toml(table);
        }
        let coordinator = cb.start();
        let coordinator_urls = match &self.standby_coordinator {
            Some(other) if self.standby_first => format!("{other},{}", coordinator.url()),
            Some(other) => format!("{},{other}", coordinator.url()),
            None => coordinator.url(),
        };
        let admin = Ctl::new(&coordinator_urls, pki.ca(), admin_cert);

        let repo = self.repo_path.clone().unwrap_or_else(|| dir.sub("repo"));
        let secrets = dir.sub("secrets");
        let mut ab = Agent::builder(&dir.sub("agent"), &pki, &coordinator_urls, AGENT, ENV)
            .fs_repository("local", &repo);
        let s3 = if self.s3.is_empty() {
            None
        } else {
            let server = crate::s3::S3Server::start(&dir.sub("s3"));
            server.create_bucket("backups");
            let proxy = crate::s3proxy::S3Proxy::start(([127, 0, 0, 1], server.port()).into());
            let extra: Vec<&str> = self.s3.iter().map(String::as_str).collect();
            // With `credentials = ...` in the extra keys the test supplies them itself.
            let body = if extra.iter().any(|l| l.starts_with("credentials")) {
                server.repository_toml_without_files("backups", &proxy.endpoint(), &extra)
            } else {
                server.repository_toml(&secrets, "backups", &proxy.endpoint(), &extra)
            };
            ab = ab.s3_repository("offsite", &body);
            if self.s3_env_credentials {
                ab = ab
                    .env("AWS_ACCESS_KEY_ID", server.access_key())
                    .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
                    // No instance metadata service here: do not wait for one.
                    .env("AWS_EC2_METADATA_DISABLED", "true");
            }
            Some(S3Env {
                proxy,
                server,
                bucket: "backups".into(),
                prefix: "lifeboat".into(),
            })
        };
        if let Some(g) = &self.agent_wal_socket_group {
            ab = ab.wal_socket_group(g);
        }
        if let Some(c) = &self.agent_wal_client {
            ab = ab.wal_client(c);
        }
        if let Some(n) = self.agent_max_concurrent_jobs {
            ab = ab.max_concurrent_jobs(n);
        }
        for t in &self.targets {
            let pw = secrets.join(format!("{}.pass", t.name));
            if t.wrong_password {
                crate::pg::write_private(&pw, &format!("wrong-{}", crate::random_hex(8)));
            } else if let Some((_, password)) = &t.user {
                crate::pg::write_private(&pw, password);
            } else {
                pg.write_password_file(&pw);
            }
            let mut url = format!(
                "postgres://{}@{}:{}/{}",
                t.user.as_ref().map_or(crate::pg::ROLE, |(u, _)| u.as_str()),
                t.host.as_deref().unwrap_or("127.0.0.1"),
                t.port.unwrap_or(pg.port()),
                t.database
            );
            if let Some(q) = &t.query {
                url = format!("{url}?{q}");
            }
            let mut tc = TargetConfig::new(&t.name, &url, &pw);
            if s3.is_some() && !self.s3_copies {
                tc.repository = "offsite".into();
            }
            tc.pg_bin_dir = t.pg_bin_dir.clone();
            tc.compression_level = t.compression_level;
            tc.extra = t.extra.clone();
            if self.s3_copies {
                tc.extra.push("copy_to = [\"offsite\"]".into());
            }
            if let Some(p) = &t.provider {
                tc.provider = p.clone();
            }
            ab = ab.target(tc);
        }
        let mariadb = (!self.mariadb_targets.is_empty()).then(|| {
            if self.mariadb_tls {
                crate::mariadb::MariaDb::start_tls()
            } else {
                crate::mariadb::MariaDb::start()
            }
        });
        if let Some(my) = &mariadb {
            for t in &self.mariadb_targets {
                if t.create_db && !my.database_exists(&t.database) {
                    my.create_db(&t.database);
                }
                let pw = secrets.join(format!("{}.pass", t.name));
                if t.wrong_password {
                    crate::pg::write_private(&pw, &format!("wrong-{}", crate::random_hex(8)));
                } else if let Some((_, password)) = &t.user {
                    crate::pg::write_private(&pw, password);
                } else {
                    my.write_password_file(&pw);
                }
                let mut url = my.url(&t.database);
                if let Some((user, _)) = &t.user {
                    url = url.replacen(
                        &format!("://{}@", crate::mariadb::USER),
                        &format!("://{user}@"),
                        1,
                    );
                }
                if let Some(port) = t.port {
                    url = url.replace(&format!(":{}/", my.port()), &format!(":{port}/"));
                }
                if let Some(host) = &t.host {
                    url = url.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
                }
                if let Some(ca) = my.ca_file() {
                    url = format!("{url}?ssl-mode=verify_identity&ssl-ca={}", ca.display());
                }
                if let Some(q) = &t.query {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!("{url}{sep}{q}");
                }
                let provider = t.provider.as_deref().unwrap_or("mariadb");
                let mut tc = TargetConfig::mysql(&t.name, &url, &pw, provider);
                if s3.is_some() && !self.s3_copies {
                    tc.repository = "offsite".into();
                }
                tc.compression_level = t.compression_level;
                tc.extra = t.extra.clone();
                if self.s3_copies {
                    tc.extra.push("copy_to = [\"offsite\"]".into());
                }
                if let Some(dir) = &t.pg_bin_dir {
                    tc.extra
                        .push(format!("mysql_bin_dir = {:?}", dir.display().to_string()));
                }
                ab = ab.target(tc);
            }
        }
        for (k, v) in self.env.iter().chain(&self.agent_env) {
            ab = ab.env(k, v);
        }
        if let Some(f) = &self.log_format {
            ab = ab.log_format(f);
        }
        let agent = ab.start(&admin);
        Sandbox {
            agent,
            s3,
            coordinator,
            admin,
            pki,
            pg,
            mariadb,
            repo,
            dir,
        }
    }
}

/// The first string found under `key` anywhere in `v` (depth first), so callers need not know
/// whether the CLI wraps a record (`{"job": {...}}`) or not.
pub fn find_str(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(s)) = o.get(key) {
                return Some(s.clone());
            }
            o.values().find_map(|x| find_str(x, key))
        }
        Value::Array(a) => a.iter().find_map(|x| find_str(x, key)),
        _ => None,
    }
}

/// The string field `key` of the object `v` (not searched for, unlike [`find_str`]); panics
/// when there is none.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// Job states after which nothing changes.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

impl Sandbox {
    pub fn builder(test_name: &str) -> SandboxBuilder {
        SandboxBuilder::new(test_name)
    }

    /// `ENV/NAME` for target `name`.
    pub fn target(&self, name: &str) -> String {
        format!("{ENV}/{name}")
    }

    /// The CLI as another configured operator.
    pub fn ctl_as(&self, operator: &str) -> Ctl {
        self.admin.with_cert(crate::pki::CertPair {
            cert: self.pki.dir().join(format!("{operator}.pem")),
            key: self.pki.dir().join(format!("{operator}.key")),
        })
    }

    /// `<repo>/<env>/<target>`.
    pub fn target_dir(&self, target: &str) -> PathBuf {
        self.repo.join(ENV).join(target)
    }

    /// `<repo>/<env>/<target>/<backup id>`.
    pub fn backup_dir(&self, target: &str, backup_id: &str) -> PathBuf {
        self.target_dir(target).join(backup_id)
    }

    /// `backup run ENV/TARGET --wait --output json`.
    pub fn backup_run(&self, target: &str) -> CtlOutput {
        self.admin
            .run_json(&["backup", "run", &self.target(target), "--wait"])
    }

    /// Runs a backup that must succeed; returns its catalog record (`backup show`).
    pub fn backup_ok(&self, target: &str) -> Value {
        let out = self.backup_run(target);
        out.assert_ok();
        let id = find_str(&out.json(), "backup_id")
            .unwrap_or_else(|| panic!("no backup_id in the output: {out}"));
        self.backup_show(&id)
    }

    /// `backup show ID --output json`.
    pub fn backup_show(&self, id: &str) -> Value {
        self.admin.json(&["backup", "show", id])
    }

    /// `backup list --target ENV/TARGET --output json` items.
    pub fn backup_list(&self, target: &str) -> Vec<Value> {
        self.admin
            .json_list(
                &["backup", "list", "--target", &self.target(target)],
                "backups",
            )
            .unwrap_or_else(|e| panic!("backup list: {e:#}"))
    }

    /// `restore ID --database DB --wait [extra...] --output json` as `ctl`.
    pub fn restore_as(&self, ctl: &Ctl, backup_id: &str, db: &str, extra: &[&str]) -> CtlOutput {
        let mut args = vec!["restore", backup_id, "--database", db, "--wait"];
        args.extend_from_slice(extra);
        ctl.run_json(&args)
    }

    /// [`Sandbox::restore_as`] as admin.
    pub fn restore(&self, backup_id: &str, db: &str, extra: &[&str]) -> CtlOutput {
        self.restore_as(&self.admin, backup_id, db, extra)
    }

    /// `jobs show ID --output json`.
    pub fn job(&self, job_id: &str) -> Value {
        self.admin.json(&["jobs", "show", job_id])
    }

    /// Polls `jobs show` until the job is in a terminal state; returns it.
    pub fn wait_job_done(&self, job_id: &str, timeout: Duration) -> Value {
        eventually(&format!("job {job_id} to finish"), timeout, || {
            let j = self.job(job_id);
            match find_str(&j, "state") {
                Some(s) if is_terminal(&s) => Ok(j),
                s => bail!("job {job_id} is {s:?}"),
            }
        })
    }

    /// The job a `--wait --output json` command printed; if it printed none, the newest job of
    /// `target` from `jobs list`.
    pub fn job_of(&self, target: &str, out: &CtlOutput) -> Value {
        if let Ok(v) = out.try_json()
            && find_str(&v, "job_id").is_some()
        {
            return v;
        }
        let jobs = self
            .admin
            .json_list(
                &[
                    "jobs",
                    "list",
                    "--target",
                    &self.target(target),
                    "--limit",
                    "1",
                ],
                "jobs",
            )
            .unwrap_or_else(|e| panic!("jobs list: {e:#}"));
        jobs.into_iter()
            .next()
            .unwrap_or_else(|| panic!("no job for {target}; the command said: {out}"))
    }

    /// Asserts that a `backup run --wait` failed cleanly: exit 1, job FAILED with a reason, no
    /// backup in the catalog for it, and no file at all in the repository under its backup
    /// id (no data under the final name, no temporary file, no manifest). Returns the job and
    /// its error text.
    pub fn assert_backup_failed(&self, target: &str, out: &CtlOutput) -> (Value, String) {
        assert_eq!(out.code, 1, "a failed backup must exit 1: {out}");
        let job = self.job_of(target, out);
        let state = find_str(&job, "state");
        assert_eq!(state.as_deref(), Some("failed"), "job: {job}");
        let error = job
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(!error.trim().is_empty(), "a failed job must say why: {job}");
        let backup_id = find_str(&job, "backup_id");
        let listed = self.backup_list(target);
        assert!(
            listed
                .iter()
                .all(|b| find_str(b, "backup_id") != backup_id || backup_id.is_none()),
            "the failed backup is listed: {listed:?}"
        );
        if let Some(id) = &backup_id {
            let show = self.admin.run_json(&["backup", "show", id]);
            assert_ne!(
                show.code, 0,
                "backup show of a failed backup succeeded: {show}"
            );
            let files = crate::fsutil::files_under(&self.backup_dir(target, id));
            assert!(
                files.is_empty(),
                "files left in the repository for failed backup {id}: {files:?}"
            );
        }
        let manifests = crate::fsutil::files_named(&self.target_dir(target), "manifest.json");
        let known: Vec<String> = listed
            .iter()
            .filter_map(|b| find_str(b, "backup_id"))
            .collect();
        for m in &manifests {
            assert!(
                known.iter().any(|k| m.starts_with(k)),
                "a manifest for a backup the catalog does not know: {}",
                m.display()
            );
        }
        (job, error)
    }

    /// Stops the agent, then the coordinator, with SIGTERM; both must exit 0.
    pub fn shutdown(mut self) {
        let s = self.agent.stop();
        assert!(
            s.success(),
            "agent did not exit cleanly on SIGTERM ({s}):\n{}",
            self.agent.proc().logs_tail(16 * 1024)
        );
        let s = self.coordinator.stop();
        assert!(
            s.success(),
            "coordinator did not exit cleanly on SIGTERM ({s}):\n{}",
            self.coordinator.proc().logs_tail(16 * 1024)
        );
    }

    /// The default timeout for job waits.
    pub fn timeout(&self) -> Duration {
        poll::default_timeout()
    }
}
