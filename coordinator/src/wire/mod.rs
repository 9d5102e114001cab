//! The boundary between the wire (prost types) and the domain. Everything an agent sends is
//! validated here on the way in (`TryFrom`, INVALID_ARGUMENT on failure); domain values
//! convert infallibly on the way out. Prost types do not travel past the gRPC handlers.

use lifeboat_common::{ids::validate_id, names::validate_simple};
pub use lifeboat_proto::domain::bounded_text;
use lifeboat_proto::{
    domain::{
        Copied, DataDir, Deleted, Drilled, ExportPath, Exported, JobOutput, Listed, Restored,
        RotatedKey, Verified, non_negative, row_counts, sha256, short_text,
    },
    v1 as pb,
};

use crate::{
    catalog::Pin,
    error::Error,
    model::{
        Backup, Engine, Finding, JobState, OwnerPolicy, Progress, Report, RepositoryStats,
        RestoreOptions, Severity, TargetDecl, VerifyStatus,
    },
};

mod out;
mod schedules;
#[cfg(test)]
mod tests;

pub use out::*;
pub use schedules::*;

/// Most targets, repositories or job ids in one message.
const MAX_LIST: usize = 10_000;
/// Most repositories one agent may declare (each may become metric series).
pub const MAX_REPOSITORIES: usize = 64;
/// Most targets one agent may declare.
pub const MAX_TARGETS: usize = 1024;
/// How far ahead of the coordinator's clock a backup result's times may be. Agents' clocks
/// drift, and a backup is recorded at the coordinator's time anyway (N26); a result further
/// ahead comes from a broken clock or a lying agent and is refused.
pub const MAX_RESULT_AHEAD_MS: i64 = 24 * 3_600_000;

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn list_len(what: &str, n: usize) -> Result<(), Error> {
    if n > MAX_LIST {
        return Err(invalid(format!(
            "{what} has {n} entries; at most {MAX_LIST} are accepted"
        )));
    }
    Ok(())
}

/// An agent's declared list, capped lower than [`MAX_LIST`]: what it declares is kept per
/// agent (targets, metric series).
fn cap(what: &str, n: usize, max: usize) -> Result<(), Error> {
    if n > max {
        return Err(invalid(format!(
            "the agent declares {n} {what}; at most {max} are accepted per agent, split it \
             across agents"
        )));
    }
    Ok(())
}

/// Refuses a backup result that finished further in the future than clocks can drift.
fn not_from_the_future(b: &Backup, now_ms: i64) -> Result<(), Error> {
    let limit = now_ms.saturating_add(MAX_RESULT_AHEAD_MS);
    if b.finished_at_ms > limit || b.started_at_ms > limit {
        return Err(invalid(format!(
            "backup {} says it finished at {}, in the future by more than {} h on the \
             coordinator's clock; fix the agent's clock (NTP) and back up again",
            b.backup_id,
            lifeboat_common::time::rfc3339(b.finished_at_ms)
                .unwrap_or_else(|| b.finished_at_ms.to_string()),
            MAX_RESULT_AHEAD_MS / 3_600_000
        )));
    }
    Ok(())
}

pub fn job_id(value: &str) -> Result<(), Error> {
    validate_id("job id", value).map_err(Error::from)
}

fn engine(value: i32) -> Result<Engine, Error> {
    match pb::Engine::try_from(value) {
        Ok(pb::Engine::Postgres) => Ok(Engine::Postgres),
        Ok(pb::Engine::Mysql) => Ok(Engine::Mysql),
        Ok(pb::Engine::Unspecified) => Err(invalid("engine must be set".into())),
        Err(_) => Err(invalid(format!("unknown engine value {value}"))),
    }
}

/// A repository's housekeeping counters from a heartbeat, validated.
fn repository_stats(r: pb::RepositoryStats) -> Result<RepositoryStats, Error> {
    validate_simple("repository name", &r.name)?;
    if !matches!(r.kind.as_str(), "fs" | "s3") {
        return Err(invalid(format!(
            "repository {} has kind {:?}; expected \"fs\" or \"s3\"",
            r.name,
            r.kind.chars().take(40).collect::<String>()
        )));
    }
    if r.janitor_last_success_ms < 0 {
        return Err(invalid(format!(
            "repository {} reports a negative janitor_last_success_ms",
            r.name
        )));
    }
    Ok(RepositoryStats {
        stale_uploads_aborted: non_negative("stale_uploads_aborted", r.stale_uploads_aborted)?,
        janitor_errors: non_negative("janitor_errors", r.janitor_errors)?,
        janitor_last_success_ms: (r.janitor_last_success_ms > 0)
            .then_some(r.janitor_last_success_ms),
        name: r.name,
        kind: r.kind,
    })
}

/// `Hello`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub targets: Vec<TargetDecl>,
    /// Repositories configured on the agent, by name.
    pub repositories: Vec<String>,
    pub clock_unix_ms: i64,
    pub running_jobs: Vec<String>,
    pub max_concurrent_jobs: u32,
}

/// Most jobs one agent may run at once; larger requests are capped.
pub const MAX_CONCURRENT_JOBS: u32 = 64;

impl TryFrom<pb::Hello> for Hello {
    type Error = Error;

    fn try_from(h: pb::Hello) -> Result<Self, Error> {
        validate_simple("agent name", &h.agent)?;
        validate_simple("environment", &h.environment)?;
        cap("targets", h.targets.len(), MAX_TARGETS)?;
        cap("repositories", h.repositories.len(), MAX_REPOSITORIES)?;
        list_len("running_jobs", h.running_jobs.len())?;
        for r in &h.repositories {
            validate_simple("repository name", r)?;
        }
        let mut seen = std::collections::HashSet::new();
        let targets = h
            .targets
            .into_iter()
            .map(|t| {
                validate_simple("target name", &t.name)?;
                if !seen.insert(t.name.clone()) {
                    return Err(invalid(format!("target {:?} is declared twice", t.name)));
                }
                validate_simple("provider", &t.provider)?;
                validate_simple("repository name", &t.repository)?;
                cap("copy_to", t.copy_to.len(), MAX_REPOSITORIES)?;
                for r in &t.copy_to {
                    validate_simple("copy_to repository name", r)?;
                    if *r == t.repository {
                        return Err(invalid(format!(
                            "target {:?} copies to its own repository {r:?}",
                            t.name
                        )));
                    }
                }
                let encryption = match t.encryption {
                    Some(e) => {
                        // No recipient: the agent could not read them just now (a broken
                        // recipients file); its backups fail and say why, its session stays.
                        if !(e.recipients.is_empty() && e.key_ids.is_empty()) {
                            lifeboat_proto::domain::check_recipients(&e.recipients, &e.key_ids)
                                .map_err(|x| invalid(format!("target {:?}: {}", t.name, x.0)))?;
                            key_ids_match(&e.recipients, &e.key_ids)?;
                        }
                        Some(crate::model::TargetEncryption {
                            recipients: e.recipients,
                            key_ids: e.key_ids,
                            can_decrypt: e.can_decrypt,
                        })
                    }
                    None => None,
                };
                Ok(TargetDecl {
                    engine: engine(t.engine)?,
                    database: short_text("target database", t.database)?,
                    name: t.name,
                    provider: t.provider,
                    repository: t.repository,
                    copy_to: t.copy_to,
                    encryption,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for id in &h.running_jobs {
            job_id(id)?;
        }
        Ok(Hello {
            agent: h.agent,
            environment: h.environment,
            version: short_text("agent version", h.version)?,
            targets,
            repositories: h.repositories,
            clock_unix_ms: h.clock_unix_ms,
            running_jobs: h.running_jobs,
            max_concurrent_jobs: h.max_concurrent_jobs.clamp(1, MAX_CONCURRENT_JOBS),
        })
    }
}

/// A finished job's result from an agent, validated for shape; its output is the domain's
/// [`JobOutput`] (a listing's records keep the agent's finding about each data object and the
/// pin its marker records). Whether it fits the job (kind, backup id, target) is checked
/// against the catalog by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub job_id: String,
    /// Succeeded, failed or cancelled.
    pub state: JobState,
    pub error: String,
    pub payload: Option<JobOutput>,
    pub report: Report,
}

/// One message from an agent, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMessage {
    Hello(Hello),
    Heartbeat {
        clock_unix_ms: i64,
        repositories: Vec<RepositoryStats>,
        /// Physical targets' WAL archives.
        wal: Vec<lifeboat_proto::domain::WalStatus>,
    },
    Accepted {
        job_id: String,
    },
    Progress {
        job_id: String,
        progress: Progress,
    },
    Result(JobResult),
}

impl TryFrom<pb::AgentMessage> for AgentMessage {
    type Error = Error;

    fn try_from(m: pb::AgentMessage) -> Result<Self, Error> {
        use pb::agent_message::Msg;
        match m.msg {
            None => Err(invalid(
                "empty agent message (unknown or missing variant)".into(),
            )),
            Some(Msg::Hello(h)) => Ok(AgentMessage::Hello(h.try_into()?)),
            Some(Msg::Heartbeat(h)) => {
                list_len("running_jobs", h.running_jobs.len())?;
                for id in &h.running_jobs {
                    job_id(id)?;
                }
                list_len("repositories", h.repositories.len())?;
                let mut seen = std::collections::HashSet::new();
                let repositories = h
                    .repositories
                    .into_iter()
                    .map(|r| {
                        if !seen.insert(r.name.clone()) {
                            return Err(invalid(format!(
                                "repository {:?} is reported twice in one heartbeat",
                                r.name
                            )));
                        }
                        repository_stats(r)
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                cap("wal", h.wal.len(), MAX_REPOSITORIES)?;
                let wal = h
                    .wal
                    .into_iter()
                    .map(|w| {
                        lifeboat_proto::domain::WalStatus::try_from(w).map_err(|e| invalid(e.0))
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok(AgentMessage::Heartbeat {
                    clock_unix_ms: h.clock_unix_ms,
                    repositories,
                    wal,
                })
            }
            Some(Msg::Accepted(a)) => {
                job_id(&a.job_id)?;
                Ok(AgentMessage::Accepted { job_id: a.job_id })
            }
            Some(Msg::Progress(p)) => {
                job_id(&p.job_id)?;
                let progress = p.progress.unwrap_or_default();
                Ok(AgentMessage::Progress {
                    job_id: p.job_id,
                    progress: Progress {
                        raw_bytes: non_negative("progress raw_bytes", progress.raw_bytes)?,
                        stored_bytes: non_negative("progress stored_bytes", progress.stored_bytes)?,
                        phase: short_text("progress phase", progress.phase)?,
                    },
                })
            }
            Some(Msg::Result(r)) => Ok(AgentMessage::Result(r.try_into()?)),
        }
    }
}

/// Each key id is the one of its recipient: the catalog and the metrics count backups by key
/// id, so an agent may not name a key it does not encrypt to.
fn key_ids_match(recipients: &[String], key_ids: &[String]) -> Result<(), Error> {
    for (r, id) in recipients.iter().zip(key_ids) {
        if lifeboat_common::keys::key_id(r) != *id {
            return Err(invalid(format!(
                "key id {id} is not the id of recipient {r}"
            )));
        }
    }
    Ok(())
}

impl TryFrom<pb::JobResult> for JobResult {
    type Error = Error;

    fn try_from(r: pb::JobResult) -> Result<Self, Error> {
        use pb::job_result::Result as R;
        job_id(&r.job_id)?;
        let state = match pb::JobState::try_from(r.state) {
            Ok(pb::JobState::Succeeded) => JobState::Succeeded,
            Ok(pb::JobState::Failed) => JobState::Failed,
            Ok(pb::JobState::Cancelled) => JobState::Cancelled,
            Ok(other) => {
                return Err(invalid(format!(
                    "a job result must be succeeded, failed or cancelled, not {}",
                    other.as_str_name()
                )));
            }
            Err(_) => return Err(invalid(format!("unknown job state value {}", r.state))),
        };
        let payload = match r.result {
            None => None,
            Some(R::Backup(b)) => {
                let b = backup_record(b)?;
                not_from_the_future(&b, lifeboat_common::time::now_ms())?;
                Some(JobOutput::Backup(Box::new(b)))
            }
            Some(R::Restore(rr)) => {
                if !rr.database.is_empty() {
                    lifeboat_common::names::validate_database(&rr.database)?;
                }
                let data_dir = Some(rr.data_dir)
                    .filter(|d| !d.is_empty())
                    .map(DataDir::parse)
                    .transpose()
                    .map_err(|e| invalid(e.0))?;
                Some(JobOutput::Restore(Restored {
                    database: rr.database,
                    data_dir,
                    row_counts: row_counts(rr.row_counts)?,
                    raw_bytes: non_negative("raw_bytes", rr.raw_bytes)?,
                }))
            }
            Some(R::Drill(d)) => {
                let rr = d
                    .restore
                    .ok_or_else(|| invalid("a drill result without its restore".to_owned()))?;
                // A logical drill restored a database, a physical one a data directory: one
                // of the two, never both (which one was asked for is checked with the job).
                let data_dir = match (rr.database.is_empty(), rr.data_dir.is_empty()) {
                    (false, true) => {
                        lifeboat_common::names::validate_database(&rr.database)?;
                        None
                    }
                    (true, false) => Some(DataDir::parse(rr.data_dir).map_err(|e| invalid(e.0))?),
                    (false, false) => {
                        return Err(invalid(
                            "a drill result with both a database and a data directory".to_owned(),
                        ));
                    }
                    (true, true) => {
                        return Err(invalid(
                            "a drill result with neither a database nor a data directory"
                                .to_owned(),
                        ));
                    }
                };
                list_len("drill checks", d.checks.len())?;
                Some(JobOutput::Drill(Drilled {
                    restored: Restored {
                        database: rr.database,
                        data_dir,
                        row_counts: row_counts(rr.row_counts)?,
                        raw_bytes: non_negative("raw_bytes", rr.raw_bytes)?,
                    },
                    rto_ms: non_negative("rto_ms", d.rto_ms)?,
                    checks: d.checks.into_iter().map(bounded_text).collect(),
                    dropped: d.dropped,
                }))
            }
            Some(R::Export(x)) => {
                let path = |v: String| ExportPath::parse(v).map_err(|e| invalid(e.0));
                Some(JobOutput::Export(Exported {
                    path: path(x.path)?,
                    raw_bytes: non_negative("raw_bytes", x.raw_bytes)?,
                    raw_sha256: sha256("raw_sha256", x.raw_sha256).map_err(|e| invalid(e.0))?,
                    manifest_path: path(x.manifest_path)?,
                }))
            }
            Some(R::Copy(c)) => Some(JobOutput::Copy(Copied {
                repository: short_text("repository", c.repository).map_err(|e| invalid(e.0))?,
                objects: c.objects,
                stored_bytes: non_negative("stored_bytes", c.stored_bytes)?,
                stored_sha256: sha256("stored_sha256", c.stored_sha256)
                    .map_err(|e| invalid(e.0))?,
                already_there: c.already_there,
            })),
            Some(R::RotateKeys(k)) => {
                list_len("rotated keys", k.keys.len())?;
                Some(JobOutput::RotateKeys(
                    k.keys
                        .into_iter()
                        .map(|k| {
                            if k.error.is_empty() {
                                lifeboat_proto::domain::check_recipients(&k.recipients, &k.key_ids)
                                    .map_err(|e| invalid(e.0))?;
                                key_ids_match(&k.recipients, &k.key_ids)?;
                            }
                            Ok(RotatedKey {
                                backup_id: short_text("backup id", k.backup_id)
                                    .map_err(|e| invalid(e.0))?,
                                repository: short_text("repository", k.repository)
                                    .map_err(|e| invalid(e.0))?,
                                recipients: k.recipients,
                                key_ids: k.key_ids,
                                changed: k.changed,
                                error: bounded_text(k.error),
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?,
                ))
            }
            Some(R::Delete(d)) => Some(JobOutput::Delete(Deleted {
                existed: d.existed,
                deleted_bytes: non_negative("deleted_bytes", d.deleted_bytes)?,
            })),
            Some(R::List(l)) => {
                list_len("list backups", l.backups.len())?;
                Some(JobOutput::List(
                    l.backups
                        .into_iter()
                        .map(|b| {
                            let id = b.backup_id.clone();
                            // A pin marker is repository content: one that does not parse is
                            // left out, not a reason to refuse the whole listing.
                            let pin = b.pin.clone().and_then(|p| {
                                listed_pin(p)
                                    .inspect_err(|e| {
                                        tracing::warn!(backup_id = %id, "ignoring a pin marker: {e}");
                                    })
                                    .ok()
                            });
                            Ok(Listed {
                                backup: listed_record(b)?,
                                pin,
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?,
                ))
            }
            Some(R::Verify(v)) => {
                let status = match pb::VerifyStatus::try_from(v.status) {
                    Ok(pb::VerifyStatus::Ok) => VerifyStatus::Ok,
                    Ok(pb::VerifyStatus::Corrupt) => VerifyStatus::Corrupt,
                    Ok(pb::VerifyStatus::Missing) => VerifyStatus::Missing,
                    Ok(pb::VerifyStatus::Unverified | pb::VerifyStatus::Unspecified) => {
                        return Err(invalid(
                            "a verify result must be OK, CORRUPT or MISSING".into(),
                        ));
                    }
                    Err(_) => {
                        return Err(invalid(format!("unknown verify status value {}", v.status)));
                    }
                };
                Some(JobOutput::Verify(Verified {
                    status,
                    detail: bounded_text(v.detail),
                    stored_bytes: non_negative("stored_bytes", v.stored_bytes)?,
                    raw_bytes: non_negative("raw_bytes", v.raw_bytes)?,
                }))
            }
        };
        Ok(JobResult {
            job_id: r.job_id,
            state,
            error: bounded_text(r.error),
            payload,
            report: r.report.map(report).unwrap_or_default(),
        })
    }
}

/// Most findings or plan steps kept of one report; the rest is cut (with a note).
const MAX_REPORT_ITEMS: usize = 200;

/// A job's report from an agent, bounded. It is information for the operator: nothing in it
/// is a reason to refuse the result it came with (a restore already swapped in, a backup
/// already stored). Unknown severities (a newer agent) count as warnings.
fn report(r: pb::JobReport) -> Report {
    let cut = r.findings.len().saturating_sub(MAX_REPORT_ITEMS);
    let mut findings: Vec<Finding> = r
        .findings
        .into_iter()
        .take(MAX_REPORT_ITEMS)
        .map(|f| {
            let severity = match pb::Severity::try_from(f.severity) {
                Ok(pb::Severity::Ok) => Severity::Ok,
                Ok(pb::Severity::Info) => Severity::Info,
                Ok(pb::Severity::Warning | pb::Severity::Unspecified) | Err(_) => Severity::Warning,
                Ok(pb::Severity::Error) => Severity::Error,
            };
            let mut check: String = f
                .check
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            if check.is_empty() {
                check = "agent".into();
            }
            Finding {
                check,
                severity,
                message: bounded_text(f.message),
            }
        })
        .collect();
    if cut > 0 {
        findings.push(Finding {
            check: "report".into(),
            severity: Severity::Info,
            message: format!("{cut} more finding(s) left out"),
        });
    }
    Report {
        findings,
        plan: r
            .plan
            .into_iter()
            .take(MAX_REPORT_ITEMS)
            .map(bounded_text)
            .collect(),
    }
}

/// A pin marker found beside a manifest.
fn listed_pin(p: pb::BackupPin) -> Result<Pin, Error> {
    Ok(Pin {
        pinned_by: short_text("pinned_by", p.pinned_by)?,
        pinned_at_ms: p.pinned_at_ms,
        reason: pin_reason(&p.reason)?,
    })
}

/// Where a restore goes, by the kind of backup: a physical base backup into an empty data
/// directory (`--data-dir`, an absolute path), a logical dump into a database. Returns the
/// data directory, empty for a logical restore.
pub fn restore_data_dir(backup: &Backup, req: &pb::RestoreRequest) -> Result<String, Error> {
    match (backup.is_physical(), req.data_dir.is_empty()) {
        (true, true) => Err(invalid(format!(
            "backup {} is a physical base backup of a whole PostgreSQL cluster; restore it into an empty directory with --data-dir /path/to/dir",
            backup.backup_id
        ))),
        (false, false) => Err(invalid(format!(
            "backup {} is a logical dump ({}); it is restored into a database: leave out --data-dir (use --database NAME to name the database)",
            backup.backup_id, backup.format
        ))),
        (false, true) => Ok(String::new()),
        (true, false) => {
            if !req.database.is_empty() || req.clean {
                return Err(invalid(
                    "--database and --clean apply to logical restores; a physical backup is restored into --data-dir only".into(),
                ));
            }
            let dir = DataDir::parse(req.data_dir.clone()).map_err(|e| invalid(e.0))?;
            Ok(dir.as_str().to_owned())
        }
    }
}

/// A restore's point-in-time recovery: only for a physical base backup.
pub fn restore_recovery(
    backup: &Backup,
    req: &pb::RestoreRequest,
) -> Result<Option<lifeboat_proto::domain::Recovery>, Error> {
    let r = lifeboat_proto::domain::Recovery::from_wire(&req.recovery_target, &req.recovery_action)
        .map_err(|e| invalid(e.0))?;
    if r.is_some() && !backup.is_physical() {
        return Err(invalid(format!(
            "backup {} is a logical dump; point-in-time recovery (--to-time, --to-lsn, --to-xid, --to-name, --latest) replays WAL onto a physical base backup of a target with mode = \"physical\"",
            backup.backup_id
        )));
    }
    Ok(r)
}

/// `--start-port`: only for a restore into a data directory, a port from 1024.
pub fn restore_start_port(req: &pb::RestoreRequest) -> Result<Option<u16>, Error> {
    match req.start_port {
        0 => Ok(None),
        _ if req.data_dir.is_empty() => Err(invalid(
            "--start-port starts a restored data directory; it needs --data-dir".to_owned(),
        )),
        p @ 1024..=65535 => Ok(Some(p as u16)),
        p => Err(invalid(format!(
            "--start-port {p} is not a port from 1024 to 65535"
        ))),
    }
}

/// The most loading connections (pg_restore jobs, MariaDB/MySQL clients) a restore may ask for.
pub const MAX_RESTORE_JOBS: u32 = 64;

/// `--jobs`: parallel loading of a logical restore (pg_restore jobs for PostgreSQL, client
/// connections for MariaDB/MySQL), 1 to [`MAX_RESTORE_JOBS`]; 0: the target's default.
pub fn restore_jobs(backup: &Backup, req: &pb::RestoreRequest) -> Result<u32, Error> {
    match req.jobs {
        0 => Ok(0),
        n if n > MAX_RESTORE_JOBS => Err(invalid(format!(
            "--jobs {n} is more than {MAX_RESTORE_JOBS}; loading gains nothing beyond the destination server's cores"
        ))),
        _ if backup.is_physical() => Err(invalid(format!(
            "--jobs loads a logical dump in parallel; backup {} is a physical base backup, restored by unpacking it",
            backup.backup_id
        ))),
        n => Ok(n),
    }
}

/// A partial restore (`--table`, `--schema`, `--into-schema`): only of a logical backup,
/// never with `--clean` (it creates, it never replaces). Whether the tables exist is checked
/// by the agent against the backup's manifest, before anything is created.
pub fn restore_partial(
    backup: &Backup,
    req: &pb::RestoreRequest,
) -> Result<Option<lifeboat_proto::domain::PartialRestore>, Error> {
    let partial = lifeboat_proto::domain::PartialRestore::from_wire(
        &req.tables,
        &req.schemas,
        &req.into_schema,
    )
    .map_err(|e| invalid(e.0))?;
    let Some(p) = partial else {
        return Ok(None);
    };
    if backup.is_physical() {
        return Err(invalid(format!(
            "backup {} is a physical base backup of a whole cluster; --table and --schema restore tables from a logical backup",
            backup.backup_id
        )));
    }
    if req.clean {
        return Err(invalid(
            "a partial restore (--table, --schema) never replaces anything: leave out --clean; it restores into a new database (--database) or a new schema (--into-schema)".to_owned(),
        ));
    }
    if p.into_schema.is_some() && !req.database.is_empty() {
        return Err(invalid(
            "--into-schema restores into the target's own database; leave out --database, or leave out --into-schema to restore into a new database".to_owned(),
        ));
    }
    Ok(Some(p))
}

/// What a restore does with the backup's globals: recreated first (`with_globals`), alone
/// (`globals_only`), or not at all. Only a logical backup that captured them has any.
pub fn restore_globals(
    backup: &Backup,
    req: &pb::RestoreRequest,
) -> Result<lifeboat_proto::domain::GlobalsRestore, Error> {
    use lifeboat_proto::domain::{Globals, GlobalsRestore};
    let g =
        GlobalsRestore::from_flags(req.with_globals, req.globals_only).map_err(|e| invalid(e.0))?;
    if g == GlobalsRestore::None {
        if req.allow_superuser {
            return Err(invalid(
                "--allow-superuser applies to globals; use it with --with-globals or `lifeboat globals restore`".into(),
            ));
        }
        return Ok(g);
    }
    if g == GlobalsRestore::Only
        && (!req.database.is_empty() || req.clean || !req.data_dir.is_empty())
    {
        return Err(invalid(
            "a globals restore recreates roles only; --database, --clean and --data-dir apply to `lifeboat restore`".into(),
        ));
    }
    match &backup.globals {
        Globals::Captured(_) => Ok(g),
        Globals::NotCaptured(why) => Err(Error::FailedPrecondition(format!(
            "backup {} has no globals: they were not captured ({why}); create the roles by hand, or restore with --owners drop",
            backup.backup_id
        ))),
        Globals::Absent if backup.is_physical() => Err(invalid(format!(
            "backup {} is a physical base backup: it holds the roles already; restore it with --data-dir",
            backup.backup_id
        ))),
        Globals::Absent => Err(Error::FailedPrecondition(format!(
            "backup {} has no globals: it was taken before lifeboat captured them; create the roles by hand, or restore with --owners drop",
            backup.backup_id
        ))),
    }
}

/// A restore's options from an operator request.
pub fn restore_options(
    owners: i32,
    include_provider_schemas: bool,
) -> Result<RestoreOptions, Error> {
    let owners = match pb::OwnerPolicy::try_from(owners) {
        Ok(pb::OwnerPolicy::Auto) => OwnerPolicy::Auto,
        Ok(pb::OwnerPolicy::Keep) => OwnerPolicy::Keep,
        Ok(pb::OwnerPolicy::Drop) => OwnerPolicy::Drop,
        Err(_) => return Err(invalid(format!("unknown owner policy value {owners}"))),
    };
    Ok(RestoreOptions {
        owners,
        include_provider_schemas,
    })
}

/// A backup record from an agent, checked for shape. `job_id` and the verification fields
/// are the coordinator's: they are reset here.
fn backup_record(b: pb::BackupRecord) -> Result<Backup, Error> {
    let mut backup = Backup::try_from(b).map_err(|e| invalid(e.0))?;
    if let Some(e) = &backup.encryption {
        key_ids_match(&e.recipients, &e.key_ids)?;
    }
    backup.verify_status = VerifyStatus::Unverified;
    backup.verified_at_ms = None;
    backup.verify_detail.clear();
    backup.job_id.clear();
    Ok(backup)
}

/// A backup record from a repository listing: like [`backup_record`], but it keeps what the
/// agent found about the data object. A listing checks presence and size, not hashes, so it
/// never reports a backup `ok`.
fn listed_record(b: pb::BackupRecord) -> Result<Backup, Error> {
    let mut backup = Backup::try_from(b).map_err(|e| invalid(e.0))?;
    backup.verified_at_ms = None;
    backup.job_id.clear();
    match backup.verify_status {
        VerifyStatus::Missing | VerifyStatus::Corrupt => {}
        VerifyStatus::Unverified | VerifyStatus::Ok => {
            backup.verify_status = VerifyStatus::Unverified;
            backup.verify_detail.clear();
        }
    }
    Ok(backup)
}

/// `RebuildCatalogRequest`, validated: the optional agent and repository names.
pub fn rebuild_request(r: &pb::RebuildCatalogRequest) -> Result<crate::rebuild::Scope, Error> {
    let optional = |what: &'static str, v: &str| -> Result<Option<String>, Error> {
        if v.is_empty() {
            return Ok(None);
        }
        validate_simple(what, v)?;
        Ok(Some(v.to_owned()))
    };
    Ok(crate::rebuild::Scope {
        agent: optional("agent name", &r.agent)?,
        repository: optional("repository name", &r.repository)?,
        dry_run: r.dry_run,
        trust_cross_environment: r.trust_cross_environment,
    })
}
