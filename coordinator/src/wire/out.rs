//! Domain → wire: infallible conversions for what the coordinator sends.

use lifeboat_proto::{
    domain::{PartialRestore, Recovery},
    v1 as pb,
};

use crate::model::{AgentRecord, Backup, Job, JobState, Report, TargetSummary};

pub fn report_to_pb(r: &Report) -> Option<pb::JobReport> {
    r.to_wire()
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

impl From<&Job> for pb::Job {
    fn from(j: &Job) -> Self {
        let restore = j.restore.clone().unwrap_or_default();
        pb::Job {
            job_id: j.id.clone(),
            kind: pb::JobKind::from(j.kind).into(),
            state: state_to_pb(j.state).into(),
            target: j.target.to_string(),
            agent: j.agent.clone(),
            backup_id: j.backup().unwrap_or_default().to_owned(),
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
            owners: pb::OwnerPolicy::from(restore.options.owners).into(),
            include_provider_schemas: restore.options.include_provider_schemas,
            recovery_target: Recovery::to_wire(restore.recovery.as_ref()).0,
            recovery_action: Recovery::to_wire(restore.recovery.as_ref()).1,
            start_port: restore.start_port.map_or(0, u32::from),
            restore_tables: PartialRestore::to_wire(restore.partial.as_ref()).0,
            restore_schemas: PartialRestore::to_wire(restore.partial.as_ref()).1,
            into_schema: PartialRestore::to_wire(restore.partial.as_ref()).2,
            data_dir: restore.data_dir,
            drill_of: restore
                .drill_of
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            export_path: j
                .export
                .as_ref()
                .map(|e| e.path.as_str().to_owned())
                .unwrap_or_default(),
            export_raw_bytes: j
                .export
                .as_ref()
                .and_then(|e| e.written.as_ref())
                .map_or(0, |w| w.raw_bytes),
            export_raw_sha256: j
                .export
                .as_ref()
                .and_then(|e| e.written.as_ref())
                .map(|w| w.raw_sha256.clone())
                .unwrap_or_default(),
            with_globals: restore.globals.flags().0,
            globals_only: restore.globals.flags().1,
            allow_superuser: restore.allow_superuser,
            repository: j.repository.clone(),
        }
    }
}

/// A backup's copy, for `backup show` and `backup list`.
pub fn copy_to_pb(c: &crate::model::BackupCopy) -> pb::BackupCopy {
    pb::BackupCopy {
        repository: c.repository.clone(),
        state: c.state.as_str().to_owned(),
        job_id: c.job_id.clone(),
        stored_at_ms: c.stored_at_ms.unwrap_or(0),
        verify_status: pb::VerifyStatus::from(c.verify_status).into(),
        verified_at_ms: c.verified_at_ms.unwrap_or(0),
        verify_detail: c.verify_detail.clone(),
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
        engine: pb::Engine::from(t.target.engine).into(),
        provider: t.target.provider.clone(),
        repository: t.target.repository.clone(),
        database: t.target.database.clone(),
        copy_to: t.target.copy_to.clone(),
        encryption: t.target.encryption.as_ref().map(|e| pb::TargetEncryption {
            recipients: e.recipients.clone(),
            key_ids: e.key_ids.clone(),
            can_decrypt: e.can_decrypt,
        }),
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
            .map_or(pb::Severity::Unspecified, |c| {
                pb::Severity::from(c.severity)
            })
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
        id: r.id,
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
    let restore = |backup: &Backup, fallbacks: &Vec<String>| pb::RestoreSpec {
        backup: Some(pb::BackupRecord::from(backup)),
        target: name.clone(),
        database: params.database.clone(),
        clean: params.clean,
        owners: pb::OwnerPolicy::from(params.options.owners).into(),
        include_provider_schemas: params.options.include_provider_schemas,
        data_dir: params.data_dir.clone(),
        recovery_target: Recovery::to_wire(params.recovery.as_ref()).0,
        recovery_action: Recovery::to_wire(params.recovery.as_ref()).1,
        start_port: params.start_port.map_or(0, u32::from),
        tables: PartialRestore::to_wire(params.partial.as_ref()).0,
        schemas: PartialRestore::to_wire(params.partial.as_ref()).1,
        into_schema: PartialRestore::to_wire(params.partial.as_ref()).2,
        drill: params.drill_of.is_some(),
        with_globals: params.globals.flags().0,
        globals_only: params.globals.flags().1,
        allow_superuser: params.allow_superuser,
        jobs: params.jobs,
        fallback_repositories: fallbacks.clone(),
    };
    let spec = match &s.work {
        Work::Backup => Spec::Backup(pb::BackupSpec {
            backup_id: job.backup().unwrap_or_default().to_owned(),
            target: name.clone(),
        }),
        Work::List { repository } => Spec::List(pb::ListSpec {
            repository: repository.clone(),
        }),
        Work::VerifyWal => Spec::WalVerify(pb::WalVerifySpec {
            target: name.clone(),
        }),
        Work::CheckTarget => Spec::Check(pb::CheckSpec {
            target: name.clone(),
            restore: None,
        }),
        Work::Restore {
            backup,
            dry_run: false,
            fallbacks,
        } => Spec::Restore(restore(backup, fallbacks)),
        Work::Restore {
            backup,
            dry_run: true,
            fallbacks,
        } => Spec::Check(pb::CheckSpec {
            target: name.clone(),
            restore: Some(restore(backup, fallbacks)),
        }),
        Work::Copy { backup, to } => Spec::Copy(pb::CopySpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
            to_repository: to.clone(),
        }),
        Work::Pin { backup, pin } => Spec::Pin(pb::PinSpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
            pin: pin.as_ref().map(super::pin_to_pb),
        }),
        Work::Delete { backup } => Spec::Delete(pb::DeleteSpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
        }),
        Work::Verify { backup, decrypt } => Spec::Verify(pb::VerifySpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
            decrypt: *decrypt,
        }),
        Work::RotateKeys { items, rotation } => Spec::RotateKeys(pb::RotateKeysSpec {
            target: name.clone(),
            items: items
                .iter()
                .map(|(b, repositories)| pb::RotateKeysItem {
                    backup: Some(pb::BackupRecord::from(b)),
                    repositories: repositories.clone(),
                })
                .collect(),
            add: rotation.add.clone(),
            remove: rotation.remove.clone(),
            dry_run: rotation.dry_run,
        }),
        Work::Export { backup, fallbacks } => Spec::Export(pb::ExportSpec {
            backup: Some(pb::BackupRecord::from(backup.as_ref())),
            fallback_repositories: fallbacks.clone(),
            path: job
                .export
                .as_ref()
                .map(|e| e.path.as_str().to_owned())
                .unwrap_or_default(),
        }),
    };
    pb::JobSpec {
        job_id: job.id.clone(),
        kind: pb::JobKind::from(job.kind).into(),
        spec: Some(spec),
    }
}

/// A recorded drill, for `drill list`.
pub fn drill_to_pb(d: &crate::model::Drill) -> pb::Drill {
    pb::Drill {
        job_id: d.job_id.clone(),
        target: d.target.to_string(),
        backup_id: d.backup_id.clone(),
        drill_target: d.drill_target.to_string(),
        database: d.database.clone(),
        outcome: d.outcome.as_str().to_owned(),
        rto_ms: d.rto_ms.unwrap_or(0),
        requested_by: d.requested_by.clone(),
        created_at_ms: d.created_at_ms,
        finished_at_ms: d.finished_at_ms.unwrap_or(0),
        error: d.error.clone(),
    }
}

/// A passed drill's one line in `jobs show` and `drill run --wait`.
pub fn drill_detail(d: &lifeboat_proto::domain::Drilled) -> String {
    if let Some(dir) = &d.restored.data_dir {
        return format!(
            "drill passed: RTO {:.3} s; {dir} recovered to the latest archived WAL and started, {} check(s) true, {}",
            std::time::Duration::from_millis(d.rto_ms).as_secs_f64(),
            d.checks.len(),
            if d.dropped {
                "server stopped and data directory removed"
            } else {
                "the server or its data directory could NOT be cleaned up: stop it and remove the directory by hand"
            }
        );
    }
    let rows: i64 = d.restored.row_counts.iter().map(|r| r.rows).sum();
    format!(
        "drill passed: RTO {:.3} s; {} restored ({} tables, {rows} rows), {} check(s) true, {}",
        std::time::Duration::from_millis(d.rto_ms).as_secs_f64(),
        d.restored.database,
        d.restored.row_counts.len(),
        d.checks.len(),
        if d.dropped {
            "scratch database dropped"
        } else {
            "the scratch database could NOT be dropped: drop it by hand"
        }
    )
}
