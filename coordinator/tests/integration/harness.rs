//! Starts a real coordinator (`run()` on 127.0.0.1:0, SQLite catalog in a temp dir, mTLS with
//! certificates generated per test) and talks to it with real tonic clients. A "fake agent"
//! is a gRPC client speaking the session protocol with an agent certificate.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use lifeboat_common::{
    pki::{Ca, LeafSpec},
    secret::write_private_file,
    tls::{TlsFiles, client_endpoint},
};
use lifeboat_proto::v1::{
    self as pb, agent_gateway_client::AgentGatewayClient, control_client::ControlClient,
    coordinator_message::Msg,
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Channel};

/// Upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `f` until it returns `Some`, or panics after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` or panics after `DEADLINE`.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub struct Builder {
    lease_secs: u64,
    queue_timeout_secs: u64,
    heartbeat_secs: u64,
    operators: Vec<(&'static str, &'static str)>,
    agents: Vec<(&'static str, &'static str)>,
    extra: String,
    server: String,
    crl: bool,
}

impl Builder {
    /// Configures `tls.crl` = `crl.pem` in the test dir, written now with no revocation;
    /// write another list there (see [`Coordinator::revoke`]) to revoke while it runs.
    pub fn crl(mut self) -> Self {
        self.crl = true;
        self
    }

    /// Appends raw TOML (e.g. `[scheduler]`, `[[retention]]`) to the config.
    /// More keys of the `[server]` table.
    pub fn server(mut self, toml: &str) -> Self {
        self.server.push_str(toml);
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// Adds an `[[agent]] name environment` entry (any entry turns the allow-list on).
    pub fn agent(mut self, name: &'static str, environment: &'static str) -> Self {
        self.agents.push((name, environment));
        self
    }

    pub fn lease_secs(mut self, secs: u64) -> Self {
        self.lease_secs = secs;
        self
    }

    pub fn queue_timeout_secs(mut self, secs: u64) -> Self {
        self.queue_timeout_secs = secs;
        self
    }

    pub async fn start(self) -> Coordinator {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("test").expect("generate CA");
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).expect("write CA");
        let server = ca
            .issue(&LeafSpec::coordinator(
                "coord",
                vec!["localhost".into(), "127.0.0.1".into()],
            ))
            .expect("issue coordinator certificate");
        std::fs::write(dir.path().join("coordinator.pem"), &server.cert_pem).expect("write");
        write_private_file(
            &dir.path().join("coordinator.key"),
            server.key_pem.expose().as_bytes(),
        )
        .expect("write key");
        // Without [[agent]] entries the test admits every agent certificate (explicitly).
        let open = if self.agents.is_empty() {
            "allow_any_agent = true\n"
        } else {
            ""
        };
        // Each request reads the catalog afresh (the tests look right after a change), unless
        // the test sets its own interval.
        let cache = if self.server.contains("health_cache_ms") {
            ""
        } else {
            "health_cache_ms = 0\n"
        };
        let crl = if self.crl {
            std::fs::write(
                dir.path().join("crl.pem"),
                ca.crl(&[], 1).expect("empty CRL"),
            )
            .expect("write CRL");
            "crl = \"crl.pem\"\n"
        } else {
            ""
        };
        let mut toml = format!(
            "{open}[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n{cache}{server}\
             [tls]\nca = \"ca.pem\"\ncert = \"coordinator.pem\"\nkey = \"coordinator.key\"\n{crl}\
             [catalog]\nurl = \"sqlite://catalog.db\"\n\
             [jobs]\nagent_lease_secs = {}\nheartbeat_interval_secs = {}\nqueue_timeout_secs = {}\n",
            self.lease_secs,
            self.heartbeat_secs,
            self.queue_timeout_secs,
            server = self.server
        );
        for (name, role) in &self.operators {
            toml.push_str(&format!(
                "[[operator]]\nname = \"{name}\"\nrole = \"{role}\"\n"
            ));
        }
        for (name, env) in &self.agents {
            toml.push_str(&format!(
                "[[agent]]\nname = \"{name}\"\nenvironment = \"{env}\"\n"
            ));
        }
        toml.push_str(&self.extra);
        let config_path = dir.path().join("coordinator.toml");
        std::fs::write(&config_path, toml).expect("write config");
        let mut c = Coordinator {
            dir,
            ca,
            config_path,
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            shutdown: CancellationToken::new(),
            task: None,
        };
        c.launch().await;
        c
    }
}

pub struct Coordinator {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub config_path: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Coordinator {
    /// Operators: alice (admin), olga (operator), vera (viewer). Lease 300 s, queue timeout
    /// one hour, heartbeat 10 s.
    pub fn builder() -> Builder {
        Builder {
            lease_secs: 300,
            queue_timeout_secs: 3600,
            heartbeat_secs: 10,
            operators: vec![("alice", "admin"), ("olga", "operator"), ("vera", "viewer")],
            agents: Vec::new(),
            extra: String::new(),
            server: String::new(),
            crl: false,
        }
    }

    pub async fn start() -> Self {
        Self::builder().start().await
    }

    async fn launch(&mut self) {
        let config = lifeboat_coordinator::load_config(&self.config_path).expect("load config");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        self.grpc_addr = grpc.local_addr().expect("addr");
        self.http_addr = http.local_addr().expect("addr");
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(lifeboat_coordinator::run(
            config,
            grpc,
            http,
            self.shutdown.clone(),
        )));
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("coordinator running");
        within("coordinator shutdown", task)
            .await
            .expect("coordinator task panicked")
    }

    /// Starts again after `stop` (e.g. once the test has changed the catalog file).
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    /// Stops and starts again on the same catalog (new ports).
    pub async fn restart(&mut self) {
        self.stop().await.expect("clean shutdown");
        self.launch().await;
    }

    /// Writes a CRL revoking `certs` to the `crl.pem` of a [`Builder::crl`] coordinator (it
    /// reloads within seconds).
    pub fn revoke(&self, certs: &[&TlsFiles]) {
        let revoked: Vec<_> = certs
            .iter()
            .map(|f| lifeboat_common::pki::Revoked {
                serial: lifeboat_common::pki::serial_of(
                    &std::fs::read_to_string(&f.cert).expect("read cert"),
                )
                .expect("serial"),
                at: time::OffsetDateTime::now_utc(),
            })
            .collect();
        let pem = self.ca.crl(&revoked, 2).expect("sign CRL");
        let tmp = self.dir.path().join("crl.pem.new");
        std::fs::write(&tmp, pem).expect("write CRL");
        std::fs::rename(&tmp, self.dir.path().join("crl.pem")).expect("rename CRL");
    }

    /// Takes the catalog's write lock from another connection, as a long transaction would,
    /// until [`CatalogLock::release`].
    pub async fn lock_catalog(&self) -> CatalogLock {
        use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
        let mut conn = SqliteConnectOptions::new()
            .filename(self.dir.path().join("catalog.db"))
            .connect()
            .await
            .expect("open catalog");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        CatalogLock(conn)
    }

    /// Issues a certificate and writes it (key 0600) under the test dir.
    pub fn issue(&self, spec: &LeafSpec) -> TlsFiles {
        issue_with(&self.ca, self.dir.path(), spec)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_addr.port())
    }

    /// A lazily connecting channel with the given client certificate.
    pub fn channel(&self, files: &TlsFiles) -> Channel {
        client_endpoint(&self.url(), files, Some("localhost"))
            .expect("endpoint")
            .connect_lazy()
    }

    pub fn control(&self, operator: &str) -> ControlClient<Channel> {
        let files = self.issue(&LeafSpec::operator(operator));
        ControlClient::new(self.channel(&files))
    }

    pub fn gateway(&self, agent_cert: &str) -> AgentGatewayClient<Channel> {
        let files = self.issue(&LeafSpec::agent(agent_cert));
        AgentGatewayClient::new(self.channel(&files))
    }

    /// Opens a session as agent `name` with the given Hello, expecting Welcome.
    pub async fn agent(&self, hello: pb::Hello) -> FakeAgent {
        FakeAgent::open(self.gateway(&hello.agent.clone()), hello)
            .await
            .expect("session refused")
    }

    /// `GET path` over plain HTTP: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        self.http_get_with(path, "").await
    }

    /// [`Coordinator::http_get`] with more header lines (`"Name: value\r\n"` each).
    pub async fn http_get_with(&self, path: &str, headers: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http_addr)
            .await
            .expect("connect HTTP");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send request");
        let mut raw = String::new();
        within("HTTP response", s.read_to_string(&mut raw))
            .await
            .expect("read response");
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_owned())
    }

    /// The server still works: /health answers and an admin can call WhoAmI.
    pub async fn assert_healthy(&self) {
        let (status, body) = self.http_get("/health").await;
        assert_eq!(status, 200, "{body}");
        let me = self
            .control("alice")
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect("whoami after abuse");
        assert_eq!(me.get_ref().role, "admin");
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn issue_with(ca: &Ca, dir: &Path, spec: &LeafSpec) -> TlsFiles {
    let issued = ca.issue(spec).expect("issue certificate");
    let unique = format!(
        "{}-{}",
        spec.name,
        lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc())
    );
    let cert = dir.join(format!("{unique}.pem"));
    let key = dir.join(format!("{unique}.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("write cert");
    write_private_file(&key, issued.key_pem.expose().as_bytes()).expect("write key");
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
    }
}

pub fn target(name: &str, engine: pb::Engine) -> pb::TargetInfo {
    pb::TargetInfo {
        encryption: None,
        copy_to: Vec::new(),
        name: name.into(),
        engine: engine.into(),
        provider: match engine {
            pb::Engine::Mysql => "mariadb".into(),
            _ => "postgres".into(),
        },
        repository: "local".into(),
        database: name.into(),
    }
}

/// A Hello for agent `name` in `env` declaring postgres targets.
pub fn hello(name: &str, env: &str, targets: &[&str]) -> pb::Hello {
    pb::Hello {
        agent: name.into(),
        environment: env.into(),
        version: "0.1.0-test".into(),
        targets: targets
            .iter()
            .map(|t| target(t, pb::Engine::Postgres))
            .collect(),
        repositories: vec!["local".into()],
        clock_unix_ms: lifeboat_common::time::now_ms(),
        running_jobs: vec![],
        max_concurrent_jobs: 4,
    }
}

/// A complete, valid backup record for a backup job spec.
pub fn record_for(spec: &pb::JobSpec, env: &str, agent: &str) -> pb::BackupRecord {
    let Some(pb::job_spec::Spec::Backup(b)) = &spec.spec else {
        panic!("not a backup job: {spec:?}")
    };
    let now = lifeboat_common::time::now_ms();
    pb::BackupRecord {
        backup_id: b.backup_id.clone(),
        target: format!("{env}/{}", b.target),
        environment: env.into(),
        agent: agent.into(),
        repository: "local".into(),
        engine: pb::Engine::Postgres.into(),
        provider: "postgres".into(),
        database: b.target.clone(),
        server_version: "15.8".into(),
        system_identifier: "7300000000000000001".into(),
        dump_tool: "pg_dump".into(),
        dump_tool_version: "15.8".into(),
        format: "pg_dump-custom".into(),
        compression: "zstd".into(),
        compression_level: 3,
        raw_size: 4096,
        stored_size: 512,
        raw_sha256: "ab".repeat(32),
        stored_sha256: "cd".repeat(32),
        started_at_ms: now - 1000,
        finished_at_ms: now,
        row_counts: vec![pb::RowCount {
            bytes: Default::default(),
            schema: "public".into(),
            table: b.target.clone(),
            rows: 7,
        }],
        data_key: format!("{env}/{}/{}/data.pgdump.zst", b.target, b.backup_id),
        manifest_key: format!("{env}/{}/{}/manifest.json", b.target, b.backup_id),
        ..Default::default()
    }
}

pub fn msg(m: pb::agent_message::Msg) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(m) }
}

/// A heartbeat with the current time and no repository stats.
pub fn heartbeat() -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
        clock_unix_ms: lifeboat_common::time::now_ms(),
        ..Default::default()
    }))
}

pub fn accepted(job_id: &str) -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Accepted(pb::JobAccepted {
        job_id: job_id.into(),
    }))
}

pub fn progress(job_id: &str, raw: u64, phase: &str) -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Progress(pb::JobProgress {
        job_id: job_id.into(),
        progress: Some(pb::Progress {
            raw_bytes: raw,
            stored_bytes: raw / 8,
            phase: phase.into(),
        }),
    }))
}

pub fn result(
    job_id: &str,
    state: pb::JobState,
    r: Option<pb::job_result::Result>,
) -> pb::AgentMessage {
    msg(pb::agent_message::Msg::Result(pb::JobResult {
        job_id: job_id.into(),
        state: state.into(),
        error: if state == pb::JobState::Succeeded {
            String::new()
        } else {
            "it broke".into()
        },
        result: r,
        finished_at_ms: lifeboat_common::time::now_ms(),
        ..Default::default()
    }))
}

pub fn backup_result(spec: &pb::JobSpec, env: &str, agent: &str) -> pb::AgentMessage {
    result(
        &spec.job_id,
        pb::JobState::Succeeded,
        Some(pb::job_result::Result::Backup(record_for(spec, env, agent))),
    )
}

/// One side of an agent session, driven by the test.
pub struct FakeAgent {
    tx: Option<mpsc::Sender<pb::AgentMessage>>,
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
}

impl FakeAgent {
    /// Opens the stream, sends `hello` and waits for Welcome. Err: how the coordinator
    /// refused the session.
    pub async fn open(
        mut client: AgentGatewayClient<Channel>,
        hello: pb::Hello,
    ) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(msg(pb::agent_message::Msg::Hello(hello)))
            .await
            .expect("queue hello");
        let response = within("session to open", client.session(ReceiverStream::new(rx))).await?;
        let mut agent = FakeAgent {
            tx: Some(tx),
            inbound: response.into_inner(),
        };
        match agent.recv().await? {
            Msg::Welcome(_) => Ok(agent),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&self, m: pb::AgentMessage) {
        self.tx
            .as_ref()
            .expect("session open")
            .send(m)
            .await
            .expect("send to coordinator");
    }

    /// The next message; Err if the coordinator ended the stream with a status.
    pub async fn recv(&mut self) -> Result<Msg, Status> {
        match within("a message from the coordinator", self.inbound.message()).await {
            Ok(Some(m)) => Ok(m.msg.expect("empty coordinator message")),
            Ok(None) => Err(Status::new(Code::Ok, "stream ended")),
            Err(status) => Err(status),
        }
    }

    pub async fn expect_start(&mut self) -> pb::JobSpec {
        match self.recv().await {
            Ok(Msg::StartJob(spec)) => spec,
            other => panic!("expected StartJob, got {other:?}"),
        }
    }

    pub async fn expect_ack(&mut self, job_id: &str) {
        match self.recv().await {
            Ok(Msg::ResultAck(a)) => assert_eq!(a.job_id, job_id),
            other => panic!("expected ResultAck for {job_id}, got {other:?}"),
        }
    }

    /// Waits until the coordinator ends the stream; returns its status.
    pub async fn expect_end(&mut self) -> Status {
        loop {
            match self.recv().await {
                Ok(_) => continue,
                Err(status) => return status,
            }
        }
    }

    /// Accepts a job and reports it succeeded (backup) with the ack received.
    /// Takes the next job handed out, accepts it, and waits until the coordinator shows job
    /// `job_id` running.
    pub async fn accept_next(
        &mut self,
        control: &mut ControlClient<Channel>,
        job_id: &str,
    ) -> pb::JobSpec {
        let spec = self.expect_start().await;
        self.send(accepted(&spec.job_id)).await;
        wait_state(control, job_id, pb::JobState::Running).await;
        spec
    }

    /// Accepts `spec`, reports it succeeded with `r`, and waits for the coordinator's ack.
    pub async fn succeed(&mut self, spec: &pb::JobSpec, r: Option<pb::job_result::Result>) {
        self.send(accepted(&spec.job_id)).await;
        self.send(result(&spec.job_id, pb::JobState::Succeeded, r))
            .await;
        self.expect_ack(&spec.job_id).await;
    }

    /// Pins `backup_id` as `control`'s operator and runs the pin marker job it queues.
    pub async fn pin(
        &mut self,
        control: &mut ControlClient<Channel>,
        backup_id: &str,
        reason: &str,
    ) {
        control
            .pin_backup(pb::PinBackupRequest {
                backup_id: backup_id.into(),
                reason: reason.into(),
            })
            .await
            .expect("pin");
        let marker = self.expect_start().await;
        assert_eq!(marker.kind, i32::from(pb::JobKind::Pin), "{marker:?}");
        self.succeed(&marker, None).await;
    }

    pub async fn run_backup(&mut self, env: &str, agent: &str) -> pb::JobSpec {
        let spec = self.expect_start().await;
        self.send(accepted(&spec.job_id)).await;
        self.send(backup_result(&spec, env, agent)).await;
        self.expect_ack(&spec.job_id).await;
        spec
    }

    /// Closes the agent's side of the stream (as when the agent process dies).
    pub fn disconnect(mut self) {
        self.tx = None;
        drop(self);
    }
}

/// The state of a job, through the Control API.
pub async fn job_state(control: &mut ControlClient<Channel>, id: &str) -> pb::Job {
    control
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .expect("get job")
        .into_inner()
}

pub async fn start_backup(control: &mut ControlClient<Channel>, target: &str) -> pb::Job {
    control
        .start_backup(pb::StartBackupRequest {
            target: target.into(),
        })
        .await
        .expect("start backup")
        .into_inner()
}

pub async fn count_backups(control: &mut ControlClient<Channel>) -> usize {
    control
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("list backups")
        .into_inner()
        .backups
        .len()
}

/// Waits until job `id` is in `state`.
pub async fn wait_state(
    control: &mut ControlClient<Channel>,
    id: &str,
    state: pb::JobState,
) -> pb::Job {
    let mut last = None;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let job = job_state(control, id).await;
            if job.state == i32::from(state) {
                return job;
            }
            last = Some(job);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("job {id} never reached {state:?}; last {last:?}"))
}

/// The catalog's write lock held from outside ([`Coordinator::lock_catalog`]).
pub struct CatalogLock(sqlx::SqliteConnection);

impl CatalogLock {
    pub async fn release(mut self) {
        use sqlx::Connection;
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release the write lock");
        self.0.close().await.expect("close");
    }
}

/// A delete job's result: the backup was there and is gone.
pub fn deleted() -> Option<pb::job_result::Result> {
    Some(pb::job_result::Result::Delete(pb::DeleteResult {
        existed: true,
        deleted_bytes: 512,
    }))
}
