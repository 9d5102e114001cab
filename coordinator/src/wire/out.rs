//! Domain → wire: infallible conversions for what the coordinator sends.

use lifeboat_proto::v1 as pb;

use crate::model::{
    AgentRecord, Backup, Engine, Finding, Job, JobKind, JobState, OwnerPolicy, Report, Severity,
    TargetSummary, VerifyStatus,
};

pub fn engine_to_pb(e: Engine) -> pb::Engine {
    match e {
        Engine::Postgres => pb::Engine::Postgres,
        Engine::Mysql => pb::Engine::Mysql,
    }
}

pub fn kind_to_pb(k: JobKind) -> pb::JobKind {
    match k {
        JobKind::Backup => pb::JobKind::Backup,
        JobKind::Restore => pb::JobKind::Restore,
        JobKind::Verify => pb::JobKind::Verify,
        JobKind::Delete => pb::JobKind::Delete,
        JobKind::List => pb::JobKind::List,
        JobKind::Check => pb::JobKind::Check,
        JobKind::Pin => pb::JobKind::Pin,
    }
}

pub fn severity_to_pb(s: Severity) -> pb::Severity {
    match s {
        Severity::Ok => pb::Severity::Ok,
        Severity::Info => pb::Severity::Info,
        Severity::Warning => pb::Severity::Warning,
        Severity::Error => pb::Severity::Error,
    }
}

pub fn owners_to_pb(o: OwnerPolicy) -> pb::OwnerPolicy {
    match o {
        OwnerPolicy::Auto => pb::OwnerPolicy::Auto,
        OwnerPolicy::Keep => pb::OwnerPolicy::Keep,
        OwnerPolicy::Drop => pb::OwnerPolicy::Drop,
    }
}

pub fn report_to_pb(r: &Report) -> Option<pb::JobReport> {
    if r.is_empty() {
        return None;
    }
    Some(pb::JobReport {
        findings: r
            .findings
            .iter()
            .map(|f: &Finding| pb::Finding {
                check: f.check.clone(),
                severity: severity_to_pb(f.severity).into(),
                message: f.message.clone(),
            })
            .collect(),
        plan: r.plan.clone(),
    })
}

pub fn state_to_pb(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn verify_to_pb(v: VerifyStatus) -> pb::VerifyStatus {
    match v {
        VerifyStatus::Unverified => pb::VerifyStatus::Unverified,
        VerifyStatus::Ok => pb::VerifyStatus::Ok,
        VerifyStatus::Corrupt => pb::VerifyStatus::Corrupt,
        VerifyStatus::Missing => pb::VerifyStatus::Missing,
    }
}

impl From<&Job> for pb::Job {
    fn from(j: &Job) -> Self {
        let restore = j.restore.clone().unwrap_or_default();
        pb::Job {
            job_id: j.id.clone(),
            kind: kind_to_pb(j.kind).into(),
            state: state_to_pb(j.state).into(),
            target: j.target.to_string(),
            agent: j.agent.clone(),
            backup_id: j.backup_id.clone(),
            requested_by: j.requested_by.clone(),
            created_at_ms: j.created_at_ms,
            started_at_ms: j.started_at_ms.unwrap_or(0),
            finished_at_ms: j.finished_at_ms.unwrap_or(0),
            error: j.error.clone(),
            progress: Some(pb::Progress {
                raw_bytes: j.progress.raw_bytes,
                stored_bytes: j.progress.stored_bytes,
                phase: j.progress.phase.clone(),
            }),
            detail: j.detail.clone(),
            database: restore.database,
            clean: restore.clean,
            report: report_to_pb(&j.report),
            owners: owners_to_pb(restore.options.owners).into(),
            include_provider_schemas: restore.options.include_provider_schemas,
        }
    }
}

impl From<&Backup> for pb::BackupRecord {
    fn from(b: &Backup) -> Self {
        pb::BackupRecord {
            backup_id: b.backup_id.clone(),
            target: b.target.to_string(),
            environment: b.environment.clone(),
            agent: b.agent.clone(),
            repository: b.repository.clone(),
            engine: engine_to_pb(b.engine).into(),
            provider: b.provider.clone(),
            database: b.database.clone(),
            server_version: b.server_version.clone(),
            system_identifier: b.system_identifier.clone(),
            dump_tool: b.dump_tool.clone(),
            dump_tool_version: b.dump_tool_version.clone(),
            format: b.format.clone(),
            compression: b.compression.clone(),
            compression_level: b.compression_level,
            raw_size: b.raw_size,
            stored_size: b.stored_size,
            raw_sha256: b.raw_sha256.clone(),
            stored_sha256: b.stored_sha256.clone(),
            started_at_ms: b.started_at_ms,
            finished_at_ms: b.finished_at_ms,
            row_counts: b
                .row_counts
                .iter()
                .map(|r| pb::RowCount {
                    schema: r.schema.clone(),
                    table: r.table.clone(),
                    rows: r.rows,
                })
                .collect(),
            data_key: b.data_key.clone(),
            manifest_key: b.manifest_key.clone(),
            verify_status: verify_to_pb(b.verify_status).into(),
            verified_at_ms: b.verified_at_ms.unwrap_or(0),
            verify_detail: b.verify_detail.clone(),
            job_id: b.job_id.clone(),
            // Filled in by the Control handlers, which know pins and deletions.
            pin: None,
            deleting: false,
        }
    }
}

pub fn agent_to_pb(a: &AgentRecord, connected: bool, running_jobs: u32) -> pb::Agent {
    pb::Agent {
        name: a.name.clone(),
        environment: a.environment.clone(),
        version: a.version.clone(),
        connected,
        last_seen_ms: a.last_seen_ms,
        clock_skew_ms: a.clock_skew_ms,
        running_jobs,
        max_concurrent_jobs: a.max_concurrent_jobs,
    }
}

pub fn target_to_pb(t: &TargetSummary, agent_connected: bool) -> pb::Target {
    let (last_backup_id, last_backup_ms) = t.last_backup.clone().unwrap_or_default();
    pb::Target {
        name: t.target.name.to_string(),
        agent: t.target.agent.clone(),
        engine: engine_to_pb(t.target.engine).into(),
        provider: t.target.provider.clone(),
        repository: t.target.repository.clone(),
        database: t.target.database.clone(),
        agent_connected,
        last_backup_ms,
        last_backup_id,
        last_check_ms: t.last_check.as_ref().map_or(0, |c| c.finished_at_ms),
        last_check_job_id: t
            .last_check
            .as_ref()
            .map(|c| c.job_id.clone())
            .unwrap_or_default(),
        last_check_severity: t
            .last_check
            .as_ref()
            .map_or(pb::Severity::Unspecified, |c| severity_to_pb(c.severity))
            .into(),
        last_check_summary: t
            .last_check
            .as_ref()
            .map(|c| c.summary.clone())
            .unwrap_or_default(),
    }
}

pub fn audit_to_pb(r: &crate::audit::AuditRecord) -> pb::AuditEntry {
    let e = &r.entry;
    pb::AuditEntry {
        at_ms: e.at_ms,
        actor: e.actor.clone(),
        role: e.role.clone(),
        action: e.action.clone(),
        object: e.object.clone(),
        outcome: e.outcome.as_str().to_owned(),
        reason: e.reason.clone(),
    }
}

impl From<&crate::to_agent::ToAgent> for pb::CoordinatorMessage {
    fn from(m: &crate::to_agent::ToAgent) -> Self {
        use crate::to_agent::ToAgent;
        use pb::coordinator_message::Msg;
        let msg = match m {
            ToAgent::Welcome(w) => Msg::Welcome(pb::Welcome {
                clock_unix_ms: w.clock_unix_ms,
                heartbeat_interval_secs: w.heartbeat_interval_secs,
                refused_targets: w
                    .refused_targets
                    .iter()
                    .map(|(name, reason)| pb::RefusedTarget {
                        name: name.clone(),
                        reason: reason.clone(),
                    })
                    .collect(),
            }),
            ToAgent::Start(s) => Msg::StartJob(job_spec(s)),
            ToAgent::Cancel { job_id } => Msg::CancelJob(pb::CancelJob {
                job_id: job_id.clone(),
            }),
            ToAgent::ResultAck { job_id } => Msg::ResultAck(pb::ResultAck {
                job_id: job_id.clone(),
            }),
        };
        pb::CoordinatorMessage { msg: Some(msg) }
    }
}

/// The `StartJob` spec: the job's own fields and its work. Agents address their targets by
/// their own (short) names.
fn job_spec(s: &crate::to_agent::StartJob) -> pb::JobSpec {
    use crate::to_agent::Work;
    use pb::job_spec::Spec;
    let job = &s.job;
    let name = job.target.name().to_owned();
    let params = job.restore.clone().unwrap_or_default();
    let restore = |backup: &Backup| pb::RestoreSpec {
        backup: Some(pb::BackupRecord::from(backup)),
        target: name.clone(),
        database: params.database.clone(),
        clean: params.clean,
        owners: owners_to_pb(params.options.owners).into(),
        include_provider_schemas: params.options.include_provider_schemas,
    };
    let spec = match &s.work {
        Work::Backup => Spec::Backup(pb::BackupSpec {
            backup_id: job.backup_id.clone(),
            target: name.clone(),
        }),
        Work::List { repository } => Spec::List(pb::ListSpec {
            repository: repository.clone(),
        }),
        Work::CheckTarget => Spec::Check(pb::CheckSpec {
            target: name.clone(),
            restore: None,
        }),
        Work::Restore {
            backup,
            dry_run: false,
        } => Spec::Restore(restore(backup)),
        Work::Restore {
            backup,
            dry_run: true,
        } => Spec::Check(pb::CheckSpec {
            target: name.clone(),
            restore: Some(restore(backup)),
        }),
        Work::Pin { backup, pin } => Spec::Pin(pb::PinSpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
            pin: pin.as_ref().map(super::pin_to_pb),
        }),
        Work::Delete { backup } => Spec::Delete(pb::DeleteSpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
        }),
        Work::Verify { backup } => Spec::Verify(pb::VerifySpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
        }),
    };
    pb::JobSpec {
        job_id: job.id.clone(),
        kind: kind_to_pb(job.kind).into(),
        spec: Some(spec),
    }
}
