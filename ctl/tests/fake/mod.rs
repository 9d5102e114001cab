//! A scripted Control server over real mutual TLS (the coordinator's own TLS set-up from
//! lifeboat-common): it plays back fixed job histories chosen by target or job id.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::util::{self, Pki, Run, s};
use lifeboat_common::{
    identity,
    pki::LeafSpec,
    tls::{TlsFiles, server_config, tls_incoming},
};
use lifeboat_proto::{self as pb, control_server::ControlServer};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub const T0: i64 = 1_795_822_200_000;
pub const J_OK: &str = "20261127T233000Z-00000a";
pub const J_FAIL: &str = "20261127T233000Z-00000b";
pub const J_FLAKY: &str = "20261127T233000Z-00000c";
pub const J_VERIFY: &str = "20261127T233000Z-00000d";
pub const J_RESTORE: &str = "20261127T233000Z-00000e";
pub const J_SLOW: &str = "20261127T233000Z-00000f";
pub const B_OK: &str = "20261127T233000Z-0000aa";
pub const B_CORRUPT: &str = "20261127T233000Z-0000bb";

fn job(id: &str, kind: pb::JobKind, state: pb::JobState, phase: &str) -> pb::Job {
    let finished = matches!(
        state,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    );
    pb::Job {
        job_id: id.into(),
        kind: kind as i32,
        state: state as i32,
        target: "prod/orders".into(),
        agent: "prod-1".into(),
        backup_id: B_OK.into(),
        requested_by: "alice".into(),
        created_at_ms: T0,
        started_at_ms: if state == pb::JobState::Queued {
            0
        } else {
            T0 + 1000
        },
        finished_at_ms: if finished { T0 + 84_000 } else { 0 },
        error: String::new(),
        progress: (state != pb::JobState::Queued).then(|| pb::Progress {
            raw_bytes: 40 << 20,
            stored_bytes: 10 << 20,
            phase: phase.into(),
        }),
        detail: String::new(),
        database: String::new(),
        clean: false,
        ..Default::default()
    }
}

fn backup_job(id: &str, state: pb::JobState, phase: &str) -> pb::Job {
    job(id, pb::JobKind::Backup, state, phase)
}

fn record(id: &str, verify: pb::VerifyStatus) -> pb::BackupRecord {
    pb::BackupRecord {
        backup_id: id.into(),
        target: "prod/orders".into(),
        environment: "prod".into(),
        engine: pb::Engine::Postgres as i32,
        raw_size: 40 << 20,
        stored_size: 10 << 20,
        stored_sha256: "5".repeat(64),
        raw_sha256: "6".repeat(64),
        started_at_ms: T0 + 1000,
        finished_at_ms: T0 + 84_000,
        verify_status: verify as i32,
        verify_detail: if verify == pb::VerifyStatus::Corrupt {
            "stored sha256 mismatch".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

#[derive(Default)]
pub struct Fake {
    /// WatchJob calls per job id.
    pub watches: Mutex<HashMap<String, u32>>,
    pub restores: Mutex<Vec<pb::RestoreRequest>>,
    /// Hang in WhoAmI (for --timeout).
    pub slow: bool,
    /// Prune calls to refuse as a coordinator standing by would, before answering.
    pub standby_refusals: std::sync::atomic::AtomicU32,
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

fn caller(req: &Request<impl Sized>) -> Result<String, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("empty chain"))?;
    match identity::from_der(leaf) {
        Ok(identity::Identity::Operator(name)) => Ok(name),
        Ok(other) => Err(Status::permission_denied(format!(
            "{other} is not an operator"
        ))),
        Err(e) => Err(Status::unauthenticated(e.to_string())),
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for Fake {
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let name = caller(&req)?;
        if self.slow {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(Response::new(pb::WhoAmIResponse {
            name,
            role: "operator".into(),
            environments: vec![],
        }))
    }

    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        caller(&req)?;
        let mut agents: Vec<pb::Agent> = (0..2000)
            .map(|i| pb::Agent {
                name: format!("agent-{i}"),
                environment: "prod".into(),
                connected: i % 2 == 0,
                last_seen_ms: T0,
                ..Default::default()
            })
            .collect();
        // In name order, paged; pages of at most 700 (fewer than asked, as a coordinator may).
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        let r = req.get_ref();
        agents.retain(|a| r.after.is_empty() || a.name > r.after);
        let page = match r.limit {
            0 => usize::MAX,
            n => (n as usize).min(700),
        };
        let more = agents.len() > page;
        agents.truncate(page);
        Ok(Response::new(pb::ListAgentsResponse { agents, more }))
    }

    async fn list_targets(
        &self,
        _req: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn start_backup(
        &self,
        req: Request<pb::StartBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        caller(&req)?;
        let id = match req.get_ref().target.as_str() {
            "prod/orders" => J_OK,
            "prod/broken" => J_FAIL,
            "prod/flaky" => J_FLAKY,
            "prod/slow" => J_SLOW,
            "prod/secret" => {
                return Err(Status::permission_denied(
                    "operator alice has role viewer; backup run needs operator",
                ));
            }
            other => return Err(Status::not_found(format!("no target {other}"))),
        };
        Ok(Response::new(backup_job(id, pb::JobState::Queued, "")))
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        caller(&req)?;
        let r = req.get_ref();
        // One backup; "more" when asked for pages of one, none after it.
        Ok(Response::new(pb::ListBackupsResponse {
            backups: if r.after == B_OK {
                Vec::new()
            } else {
                vec![record(B_OK, pb::VerifyStatus::Ok)]
            },
            more: r.limit == 1 && r.after.is_empty(),
        }))
    }

    async fn get_backup(
        &self,
        req: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        match req.get_ref().backup_id.as_str() {
            B_OK => Ok(Response::new(record(B_OK, pb::VerifyStatus::Unverified))),
            B_CORRUPT => Ok(Response::new(record(B_CORRUPT, pb::VerifyStatus::Corrupt))),
            other => Err(Status::not_found(format!("backup {other} not found"))),
        }
    }

    async fn verify_backup(
        &self,
        req: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let mut j = job(J_VERIFY, pb::JobKind::Verify, pb::JobState::Queued, "");
        j.backup_id = req.into_inner().backup_id;
        Ok(Response::new(j))
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Result<Response<pb::Job>, Status> {
        let r = req.into_inner();
        let j = job(J_RESTORE, pb::JobKind::Restore, pb::JobState::Queued, "");
        self.restores.lock().expect("lock").push(r);
        Ok(Response::new(j))
    }

    async fn list_jobs(
        &self,
        _req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        Ok(Response::new(pb::ListJobsResponse {
            jobs: vec![backup_job(J_OK, pb::JobState::Running, "dumping")],
            more: false,
        }))
    }

    async fn get_job(&self, _req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = req.into_inner().job_id;
        Ok(Response::new(backup_job(
            &id,
            pb::JobState::Running,
            "dumping",
        )))
    }

    async fn set_schedule(
        &self,
        req: Request<pb::SetScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let r = req.into_inner();
        if r.timezone == "Mars/Olympus" {
            return Err(Status::invalid_argument(
                "time zone \"Mars/Olympus\" is not an IANA time zone name",
            ));
        }
        Ok(Response::new(pb::Schedule {
            target: r.target,
            cron: r.cron,
            timezone: r.timezone,
            jitter_secs: r.jitter_secs,
            kind: pb::ScheduleKind::Backup.into(),
            source: "target".into(),
            updated_by: "alice".into(),
            updated_at_ms: 1_795_000_000_000,
            next_run_at_ms: 1_795_055_400_000,
            ..Default::default()
        }))
    }

    async fn list_schedules(
        &self,
        _req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: vec![pb::Schedule {
                target: "prod/orders".into(),
                cron: "30 2 * * *".into(),
                timezone: "Europe/Berlin".into(),
                jitter_secs: 600,
                kind: pb::ScheduleKind::Backup.into(),
                source: "target".into(),
                updated_by: "alice".into(),
                updated_at_ms: 1_795_000_000_000,
                next_run_at_ms: 1_795_055_400_000,
                last_run: Some(pb::ScheduleRun {
                    scheduled_at_ms: 1_794_969_000_000,
                    decided_at_ms: 1_794_969_000_500,
                    outcome: "skipped".into(),
                    job_id: String::new(),
                    reason: "a backup of prod/orders is already queued or running".into(),
                    target: "prod/orders".into(),
                    kind: pb::ScheduleKind::Backup.into(),
                    id: 0,
                }),
                ..Default::default()
            }],
        }))
    }

    async fn pause_schedule(
        &self,
        _req: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn resume_schedule(
        &self,
        _req: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_schedule(
        &self,
        _req: Request<pb::ScheduleTargetRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        Err(Status::not_found("target prod/orders has no schedule"))
    }

    async fn next_runs(
        &self,
        req: Request<pb::NextRunsRequest>,
    ) -> Result<Response<pb::NextRunsResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(pb::NextRunsResponse {
            schedule: Some(pb::Schedule {
                target: r.target,
                cron: "30 2 * * *".into(),
                timezone: "Europe/Berlin".into(),
                source: "target".into(),
                ..Default::default()
            }),
            run_at_ms: vec![1_774_746_000_000, 1_774_830_600_000],
            run_at_local: vec![
                "2026-03-29 03:00:00 CEST".into(),
                "2026-03-30 02:30:00 CEST".into(),
            ],
        }))
    }

    async fn list_schedule_runs(
        &self,
        _req: Request<pb::ListScheduleRunsRequest>,
    ) -> Result<Response<pb::ListScheduleRunsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn pin_backup(
        &self,
        req: Request<pb::PinBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        let req = req.into_inner();
        let mut b = record(&req.backup_id, pb::VerifyStatus::Ok);
        b.pin = Some(pb::BackupPin {
            pinned_by: "alice".into(),
            pinned_at_ms: T0 + 90_000,
            reason: req.reason,
        });
        Ok(Response::new(b))
    }

    async fn unpin_backup(
        &self,
        _req: Request<pb::UnpinBackupRequest>,
    ) -> Result<Response<pb::BackupRecord>, Status> {
        Err(Status::permission_denied(
            "operator olga has role operator; unpin needs role admin",
        ))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        use std::sync::atomic::Ordering;
        if self
            .standby_refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut refused = Status::failed_precondition(
                "this one is standing by: run it against the active one",
            );
            refused.metadata_mut().insert(
                pb::STANDING_BY_KEY,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            return Err(refused);
        }
        let r = req.into_inner();
        let decision =
            |id: &str, action: pb::PruneAction, reasons: &[&str], job: &str| pb::PruneDecision {
                copy: false,
                repository: String::new(),
                backup_id: id.into(),
                target: "prod/orders".into(),
                finished_at_ms: 1_794_969_000_000,
                verify_status: pb::VerifyStatus::Ok.into(),
                action: action.into(),
                reasons: reasons.iter().map(|s| (*s).to_owned()).collect(),
                job_id: job.into(),
                stored_size: 1024,
            };
        let job = if r.dry_run {
            ""
        } else {
            "20261128T020000Z-00000d"
        };
        Ok(Response::new(pb::PruneResponse {
            decisions: vec![
                decision(
                    "20261128T013000Z-00000a",
                    pb::PruneAction::Keep,
                    &["newest", "last"],
                    "",
                ),
                decision(
                    "20261127T013000Z-00000b",
                    pb::PruneAction::Delete,
                    &["expired"],
                    job,
                ),
            ],
            targets_without_policy: vec!["dev/scratch".into()],
            dry_run: r.dry_run,
            wal: Vec::new(),
        }))
    }

    async fn rebuild_catalog(
        &self,
        _req: Request<pb::RebuildCatalogRequest>,
    ) -> Result<Response<pb::RebuildCatalogResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn check_target(
        &self,
        _req: Request<pb::CheckTargetRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn plan_restore(
        &self,
        _req: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_audit(
        &self,
        _req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn release_target(
        &self,
        _req: Request<pb::ReleaseTargetRequest>,
    ) -> Result<Response<pb::Target>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn pitr_window(
        &self,
        _req: Request<pb::PitrWindowRequest>,
    ) -> Result<Response<pb::PitrWindowResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn verify_wal(
        &self,
        _req: Request<pb::VerifyWalRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_backup(
        &self,
        _req: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn copy_backup(
        &self,
        _req: Request<pb::CopyBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_keys(
        &self,
        _req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn rotate_keys(
        &self,
        _req: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn export_backup(
        &self,
        _req: Request<pb::ExportBackupRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn start_drill(
        &self,
        _req: Request<pb::StartDrillRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_drills(
        &self,
        _req: Request<pb::ListDrillsRequest>,
    ) -> Result<Response<pb::ListDrillsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = req.into_inner().job_id;
        let n = {
            let mut w = self.watches.lock().expect("lock");
            let n = w.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        use pb::JobState::{Failed, Queued, Running, Succeeded};
        let script: Vec<pb::Job> = match id.as_str() {
            J_OK => vec![
                backup_job(J_OK, Queued, ""),
                backup_job(J_OK, Running, "dumping"),
                backup_job(J_OK, Running, "dumping"),
                backup_job(J_OK, Running, "uploading"),
                backup_job(J_OK, Succeeded, "done"),
            ],
            J_FAIL => {
                let mut failed = backup_job(J_FAIL, Failed, "dumping");
                failed.error = "pg_dump exited with status 1: permission denied for table x".into();
                vec![backup_job(J_FAIL, Running, "dumping"), failed]
            }
            // The first watch breaks off while running; the second sees the end.
            J_FLAKY if n == 1 => vec![backup_job(J_FLAKY, Running, "dumping")],
            J_FLAKY => vec![backup_job(J_FLAKY, Succeeded, "done")],
            J_VERIFY => {
                let mut j = job(J_VERIFY, pb::JobKind::Verify, Succeeded, "verifying");
                j.backup_id = B_CORRUPT.into();
                vec![j]
            }
            J_RESTORE => {
                let mut j = job(J_RESTORE, pb::JobKind::Restore, Succeeded, "restoring");
                j.detail = "orders_restore_1".into();
                vec![j]
            }
            // Reports spaced out in time, so a live display has something to draw.
            J_SLOW => {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tokio::spawn(async move {
                    for (state, phase) in [(Running, "dumping"), (Running, "uploading")] {
                        let mut j = backup_job(J_SLOW, state, phase);
                        j.started_at_ms = lifeboat_common::time::now_ms() - 5000;
                        if tx.send(Ok(j)).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    let _ = tx.send(Ok(backup_job(J_SLOW, Succeeded, "done"))).await;
                });
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                return Ok(Response::new(Box::pin(stream)));
            }
            other => return Err(Status::not_found(format!("job {other} not found"))),
        };
        let stream = tokio_stream::iter(script.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub pki: Pki,
    pub fake: Arc<Fake>,
    shutdown: CancellationToken,
    cert: PathBuf,
    key: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start(fake: Fake, server_names: &[&str]) -> Server {
    let pki = Pki::new();
    let (coord_cert, coord_key) = pki.issue(&LeafSpec::coordinator(
        "coord",
        server_names.iter().map(|n| (*n).to_owned()).collect(),
    ));
    let (cert, key) = pki.operator("alice");
    let config = server_config(&TlsFiles {
        ca: pki.ca(),
        cert: coord_cert,
        key: coord_key,
    })
    .expect("server TLS config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let incoming = tls_incoming(
        listener,
        config,
        lifeboat_common::tls::HandshakeLimits::default(),
        shutdown.clone(),
    );
    let fake = Arc::new(fake);
    let service = ControlServer::from_arc(fake.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .expect("serve");
    });
    Server {
        addr,
        pki,
        fake,
        shutdown,
        cert,
        key,
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The connection settings, as an operator would put them in the environment.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LIFEBOAT_COORDINATOR", self.url()),
            ("LIFEBOAT_CA", s(&self.pki.ca()).to_owned()),
            ("LIFEBOAT_CERT", s(&self.cert).to_owned()),
            ("LIFEBOAT_KEY", s(&self.key).to_owned()),
        ]
    }

    /// The binary with the connection in the environment.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = util::command(args);
        cmd.envs(self.envs());
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        util::run_async(self.command(args)).await
    }
}

pub async fn default_server() -> Server {
    start(Fake::default(), &["localhost", "127.0.0.1"]).await
}
