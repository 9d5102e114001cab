//! The boundary between the wire (prost types) and the domain. Everything an agent sends is
//! validated here on the way in (`TryFrom`, INVALID_ARGUMENT on failure); domain values
//! convert infallibly on the way out. Prost types do not travel past the gRPC handlers.

use lifeboat_common::{
    ids::validate_id,
    names::{TargetName, validate_simple},
};
use lifeboat_proto::v1 as pb;

use crate::{
    error::Error,
    model::{
        AgentRecord, Backup, Engine, Job, JobKind, JobState, Progress, RepositoryStats, RowCount,
        TargetDecl, TargetSummary, VerifyStatus,
    },
};

/// Longest free-text field accepted (versions, providers, tool names).
const MAX_SHORT_TEXT: usize = 256;
/// Longest error or detail text kept; longer text is cut, not refused.
const MAX_LONG_TEXT: usize = 4096;
/// Longest object key.
const MAX_KEY: usize = 1024;
/// Most targets, repositories or job ids in one message.
const MAX_LIST: usize = 10_000;

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Refuses control characters and overlong text in a short field.
fn short_text(what: &str, value: String) -> Result<String, Error> {
    if value.len() > MAX_SHORT_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_SHORT_TEXT} are accepted",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(value)
}

/// Cuts long text (error messages, details) to a bounded size on a char boundary.
pub fn bounded_text(mut value: String) -> String {
    if value.len() > MAX_LONG_TEXT {
        let mut cut = MAX_LONG_TEXT;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    value
}

fn list_len(what: &str, n: usize) -> Result<(), Error> {
    if n > MAX_LIST {
        return Err(invalid(format!(
            "{what} has {n} entries; at most {MAX_LIST} are accepted"
        )));
    }
    Ok(())
}

pub fn job_id(value: &str) -> Result<(), Error> {
    validate_id("job id", value).map_err(Error::from)
}

fn sha256(what: &str, value: String) -> Result<String, Error> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(invalid(format!(
            "{what} must be 64 lowercase hex digits, got {:?}",
            value.chars().take(80).collect::<String>()
        )));
    }
    Ok(value)
}

/// A relative object key / path inside a repository: no `..`, no absolute path, no empty or
/// `.` segments, no backslashes or control characters.
fn object_key(what: &str, value: String) -> Result<String, Error> {
    let bad = |why: &str| {
        invalid(format!(
            "{what} {:?} {why}",
            value.chars().take(80).collect::<String>()
        ))
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > MAX_KEY {
        return Err(bad("is too long"));
    }
    if value.starts_with('/') {
        return Err(bad("must be relative to the repository"));
    }
    if value.contains('\\') || value.chars().any(char::is_control) {
        return Err(bad("contains a backslash or a control character"));
    }
    if value
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("has an empty, '.' or '..' segment"));
    }
    Ok(value)
}

fn engine(value: i32) -> Result<Engine, Error> {
    match pb::Engine::try_from(value) {
        Ok(pb::Engine::Postgres) => Ok(Engine::Postgres),
        Ok(pb::Engine::Mysql) => Ok(Engine::Mysql),
        Ok(pb::Engine::Unspecified) => Err(invalid("engine must be set".into())),
        Err(_) => Err(invalid(format!("unknown engine value {value}"))),
    }
}

fn non_negative(what: &str, v: u64) -> Result<u64, Error> {
    if i64::try_from(v).is_err() {
        return Err(invalid(format!("{what} {v} is out of range")));
    }
    Ok(v)
}

/// A database may have far more tables than any other list has entries; the message size
/// limit bounds it anyway.
const MAX_ROW_COUNTS: usize = 500_000;

/// Schema and table names may hold any character but NUL (quoted identifiers).
fn identifier(what: &str, value: String) -> Result<String, Error> {
    if value.len() > MAX_SHORT_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_SHORT_TEXT} are accepted",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(invalid(format!("{what} contains a NUL character")));
    }
    Ok(value)
}

fn row_counts(rows: Vec<pb::RowCount>) -> Result<Vec<RowCount>, Error> {
    if rows.len() > MAX_ROW_COUNTS {
        return Err(invalid(format!(
            "row_counts has {} entries; at most {MAX_ROW_COUNTS} are accepted",
            rows.len()
        )));
    }
    rows.into_iter()
        .map(|r| {
            if r.rows < 0 {
                return Err(invalid(format!(
                    "row count of {}.{} is negative",
                    r.schema, r.table
                )));
            }
            Ok(RowCount {
                schema: identifier("row count schema", r.schema)?,
                table: identifier("row count table", r.table)?,
                rows: r.rows,
            })
        })
        .collect()
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
        list_len("targets", h.targets.len())?;
        list_len("repositories", h.repositories.len())?;
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
                Ok(TargetDecl {
                    engine: engine(t.engine)?,
                    database: short_text("target database", t.database)?,
                    name: t.name,
                    provider: t.provider,
                    repository: t.repository,
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

/// What an agent reports in a finished job's result, validated for shape. Whether it fits
/// the job (kind, backup id, target) is checked against the catalog by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultPayload {
    Backup(Box<Backup>),
    Restore {
        database: String,
    },
    Verify {
        status: VerifyStatus,
        detail: String,
    },
    Delete {
        existed: bool,
    },
    /// The manifests found in a repository, checked for shape like any backup record. Each
    /// keeps the agent's finding about its data object (`missing`, `corrupt` for a wrong size,
    /// else `unverified`).
    List(Vec<Backup>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub job_id: String,
    /// Succeeded, failed or cancelled.
    pub state: JobState,
    pub error: String,
    pub payload: Option<ResultPayload>,
}

/// One message from an agent, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMessage {
    Hello(Hello),
    Heartbeat {
        clock_unix_ms: i64,
        repositories: Vec<RepositoryStats>,
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
                Ok(AgentMessage::Heartbeat {
                    clock_unix_ms: h.clock_unix_ms,
                    repositories,
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
            Some(R::Backup(b)) => Some(ResultPayload::Backup(Box::new(backup_record(b)?))),
            Some(R::Restore(rr)) => {
                if !rr.database.is_empty() {
                    lifeboat_common::names::validate_database(&rr.database)?;
                }
                row_counts(rr.row_counts)?;
                Some(ResultPayload::Restore {
                    database: rr.database,
                })
            }
            Some(R::Delete(d)) => {
                non_negative("deleted_bytes", d.deleted_bytes)?;
                Some(ResultPayload::Delete { existed: d.existed })
            }
            Some(R::List(l)) => {
                list_len("list backups", l.backups.len())?;
                Some(ResultPayload::List(
                    l.backups
                        .into_iter()
                        .map(listed_record)
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
                Some(ResultPayload::Verify {
                    status,
                    detail: bounded_text(v.detail),
                })
            }
        };
        Ok(JobResult {
            job_id: r.job_id,
            state,
            error: bounded_text(r.error),
            payload,
        })
    }
}

/// A backup record from an agent, checked for shape. `job_id` and the verification fields
/// are the coordinator's: they are reset here.
fn backup_record(b: pb::BackupRecord) -> Result<Backup, Error> {
    validate_id("backup id", &b.backup_id)?;
    let target = TargetName::parse(&b.target)?;
    validate_simple("environment", &b.environment)?;
    if b.environment != target.environment {
        return Err(invalid(format!(
            "backup environment {:?} does not match its target {}",
            b.environment, target
        )));
    }
    validate_simple("agent name", &b.agent)?;
    validate_simple("repository name", &b.repository)?;
    validate_simple("provider", &b.provider)?;
    if b.raw_size == 0 || b.stored_size == 0 {
        return Err(invalid(format!(
            "backup {} has a zero size (raw {}, stored {}); an empty backup is not a backup",
            b.backup_id, b.raw_size, b.stored_size
        )));
    }
    // The agent's wall clock may step back during a long dump: keep finished >= started.
    let finished_at_ms = b.finished_at_ms.max(b.started_at_ms);
    if b.started_at_ms <= 0 {
        return Err(invalid(format!(
            "backup {} has invalid times (started {}, finished {})",
            b.backup_id, b.started_at_ms, b.finished_at_ms
        )));
    }
    Ok(Backup {
        engine: engine(b.engine)?,
        raw_size: non_negative("raw_size", b.raw_size)?,
        stored_size: non_negative("stored_size", b.stored_size)?,
        raw_sha256: sha256("raw_sha256", b.raw_sha256)?,
        stored_sha256: sha256("stored_sha256", b.stored_sha256)?,
        data_key: object_key("data_key", b.data_key)?,
        manifest_key: object_key("manifest_key", b.manifest_key)?,
        database: short_text("database", b.database)?,
        server_version: short_text("server_version", b.server_version)?,
        system_identifier: short_text("system_identifier", b.system_identifier)?,
        dump_tool: short_text("dump_tool", b.dump_tool)?,
        dump_tool_version: short_text("dump_tool_version", b.dump_tool_version)?,
        format: short_text("format", b.format)?,
        compression: short_text("compression", b.compression)?,
        compression_level: b.compression_level,
        row_counts: row_counts(b.row_counts)?,
        started_at_ms: b.started_at_ms,
        finished_at_ms,
        backup_id: b.backup_id,
        target: target.to_string(),
        environment: b.environment,
        agent: b.agent,
        repository: b.repository,
        provider: b.provider,
        verify_status: VerifyStatus::Unverified,
        verified_at_ms: None,
        verify_detail: String::new(),
        job_id: String::new(),
    })
}

/// A backup record from a repository listing: like [`backup_record`], but it keeps what the
/// agent found about the data object. A listing checks presence and size, not hashes, so it
/// never reports a backup `ok`.
fn listed_record(b: pb::BackupRecord) -> Result<Backup, Error> {
    let status = match pb::VerifyStatus::try_from(b.verify_status) {
        Ok(pb::VerifyStatus::Missing) => VerifyStatus::Missing,
        Ok(pb::VerifyStatus::Corrupt) => VerifyStatus::Corrupt,
        Ok(pb::VerifyStatus::Unverified | pb::VerifyStatus::Unspecified | pb::VerifyStatus::Ok) => {
            VerifyStatus::Unverified
        }
        Err(_) => {
            return Err(invalid(format!(
                "unknown verify status value {}",
                b.verify_status
            )));
        }
    };
    let detail = bounded_text(b.verify_detail.clone());
    let mut backup = backup_record(b)?;
    backup.verify_status = status;
    if status != VerifyStatus::Unverified {
        backup.verify_detail = detail;
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
    })
}

// ---- out: domain → wire -------------------------------------------------------------------

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
    }
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
        pb::Job {
            job_id: j.id.clone(),
            kind: kind_to_pb(j.kind).into(),
            state: state_to_pb(j.state).into(),
            target: j.target.clone(),
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
            database: j.database.clone(),
            clean: j.clean,
        }
    }
}

impl From<&Backup> for pb::BackupRecord {
    fn from(b: &Backup) -> Self {
        pb::BackupRecord {
            backup_id: b.backup_id.clone(),
            target: b.target.clone(),
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
    }
}

// ---- schedules and retention --------------------------------------------------------------

/// `SetScheduleRequest`, validated (the target is checked by the caller).
pub fn schedule_request(r: &pb::SetScheduleRequest) -> Result<crate::schedule::ScheduleDef, Error> {
    use crate::schedule::{CronSpec, MAX_JITTER, ScheduleDef, ScheduleKind};
    let kind = match pb::ScheduleKind::try_from(r.kind) {
        Ok(pb::ScheduleKind::Backup | pb::ScheduleKind::Unspecified) => ScheduleKind::Backup,
        Err(_) => return Err(invalid(format!("unknown schedule kind value {}", r.kind))),
    };
    let spec = CronSpec::parse(&r.cron, &r.timezone).map_err(Error::InvalidArgument)?;
    let jitter = std::time::Duration::from_secs(u64::from(r.jitter_secs));
    if jitter > MAX_JITTER {
        return Err(invalid(format!(
            "jitter of {} s is too long; at most {} s ({} h) is accepted",
            r.jitter_secs,
            MAX_JITTER.as_secs(),
            MAX_JITTER.as_secs() / 3600
        )));
    }
    spec.check_jitter(jitter).map_err(Error::InvalidArgument)?;
    Ok(ScheduleDef { spec, jitter, kind })
}

/// A pin reason: required, one line, bounded.
pub fn pin_reason(value: &str) -> Result<String, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(
            "a pin needs a reason (--reason \"kept for the audit of 2026-Q4\")".into(),
        ));
    }
    short_text("pin reason", value.to_owned())
}

pub fn schedule_kind_to_pb(k: crate::schedule::ScheduleKind) -> pb::ScheduleKind {
    match k {
        crate::schedule::ScheduleKind::Backup => pb::ScheduleKind::Backup,
    }
}

pub fn schedule_run_to_pb(r: &crate::schedule::ScheduleRun) -> pb::ScheduleRun {
    pb::ScheduleRun {
        scheduled_at_ms: r.scheduled_at_ms,
        decided_at_ms: r.decided_at_ms,
        outcome: r.outcome.as_str().to_owned(),
        job_id: r.job_id.clone().unwrap_or_default(),
        reason: r.reason.clone(),
        target: r.target.clone(),
    }
}

pub fn schedule_to_pb(
    s: &crate::schedule::Schedule,
    next_run_at_ms: Option<i64>,
    last_run: Option<&crate::schedule::ScheduleRun>,
) -> pb::Schedule {
    pb::Schedule {
        target: s.target.clone(),
        cron: s.def.spec.expr().to_owned(),
        timezone: s.def.spec.timezone().to_owned(),
        jitter_secs: u32::try_from(s.def.jitter.as_secs()).unwrap_or(u32::MAX),
        kind: schedule_kind_to_pb(s.def.kind).into(),
        paused: s.paused,
        source: s.source.as_str().to_owned(),
        updated_by: s.updated_by.clone(),
        updated_at_ms: s.updated_at_ms,
        next_run_at_ms: next_run_at_ms.unwrap_or(0),
        last_run: last_run.map(schedule_run_to_pb),
    }
}

pub fn pin_to_pb(p: &crate::catalog::Pin) -> pb::BackupPin {
    pb::BackupPin {
        pinned_by: p.pinned_by.clone(),
        pinned_at_ms: p.pinned_at_ms,
        reason: p.reason.clone(),
    }
}

pub fn rebuild_to_pb(r: &crate::rebuild::Report) -> pb::RebuildCatalogResponse {
    use crate::rebuild::OutcomeKind;
    let count = |k: OutcomeKind| {
        u32::try_from(r.outcomes.iter().filter(|o| o.kind == k).count()).unwrap_or(u32::MAX)
    };
    pb::RebuildCatalogResponse {
        dry_run: r.dry_run,
        listings: r
            .listings
            .iter()
            .map(|l| pb::RebuildListing {
                agent: l.agent.clone(),
                repository: l.repository.clone(),
                job_id: l.job_id.clone().unwrap_or_default(),
                backups: u32::try_from(l.backups).unwrap_or(u32::MAX),
                error: l.error.clone().unwrap_or_default(),
            })
            .collect(),
        backups: r
            .outcomes
            .iter()
            .map(|o| pb::RebuildBackup {
                backup_id: o.backup_id.clone(),
                target: o.target.clone(),
                agent: o.agent.clone(),
                repository: o.repository.clone(),
                outcome: match o.kind {
                    OutcomeKind::Added => pb::RebuildOutcome::Added,
                    OutcomeKind::Updated => pb::RebuildOutcome::Updated,
                    OutcomeKind::Unchanged => pb::RebuildOutcome::Unchanged,
                    OutcomeKind::Conflict => pb::RebuildOutcome::Conflict,
                    OutcomeKind::Missing => pb::RebuildOutcome::Missing,
                    OutcomeKind::Skipped => pb::RebuildOutcome::Skipped,
                }
                .into(),
                verify_status: verify_to_pb(o.verify_status).into(),
                detail: o.detail.clone(),
                stored_size: o.stored_size,
                finished_at_ms: o.finished_at_ms,
            })
            .collect(),
        added: count(OutcomeKind::Added),
        updated: count(OutcomeKind::Updated),
        unchanged: count(OutcomeKind::Unchanged),
        conflicts: count(OutcomeKind::Conflict),
        missing: count(OutcomeKind::Missing),
        skipped: count(OutcomeKind::Skipped),
        damaged: u32::try_from(r.outcomes.iter().filter(|o| o.damaged).count()).unwrap_or(u32::MAX),
    }
}

pub fn prune_decision_to_pb(
    d: &crate::retention::Decision,
    b: &Backup,
    job_id: Option<&str>,
) -> pb::PruneDecision {
    pb::PruneDecision {
        backup_id: b.backup_id.clone(),
        target: b.target.clone(),
        finished_at_ms: b.finished_at_ms,
        verify_status: verify_to_pb(b.verify_status).into(),
        action: match d.action {
            crate::retention::Action::Keep => pb::PruneAction::Keep,
            crate::retention::Action::Delete => pb::PruneAction::Delete,
        }
        .into(),
        reasons: d.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
        job_id: job_id.unwrap_or_default().to_owned(),
        stored_size: b.stored_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20261127T233000Z-7f3a9c";

    fn record() -> pb::BackupRecord {
        pb::BackupRecord {
            backup_id: ID.into(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: pb::Engine::Postgres.into(),
            provider: "postgres".into(),
            database: "orders".into(),
            raw_size: 10,
            stored_size: 5,
            raw_sha256: "0".repeat(64),
            stored_sha256: "f".repeat(64),
            started_at_ms: 1,
            finished_at_ms: 2,
            data_key: format!("prod/orders/{ID}/data.pgdump.zst"),
            manifest_key: format!("prod/orders/{ID}/manifest.json"),
            ..Default::default()
        }
    }

    fn result(r: pb::BackupRecord) -> Result<JobResult, Error> {
        pb::JobResult {
            job_id: ID.into(),
            state: pb::JobState::Succeeded.into(),
            result: Some(pb::job_result::Result::Backup(r)),
            ..Default::default()
        }
        .try_into()
    }

    #[test]
    fn valid_backup_record() {
        let r = result(record()).expect("valid");
        let Some(ResultPayload::Backup(b)) = r.payload else {
            panic!("no backup")
        };
        assert_eq!(b.target, "prod/orders");
        assert_eq!(b.verify_status, VerifyStatus::Unverified);
    }

    #[test]
    fn hostile_backup_records_refused() {
        type Edit = fn(&mut pb::BackupRecord);
        let cases: &[(&str, Edit)] = &[
            ("uppercase sha", |r| r.raw_sha256 = "A".repeat(64)),
            ("short sha", |r| r.stored_sha256 = "a".repeat(63)),
            ("zero size", |r| r.stored_size = 0),
            ("huge size", |r| r.raw_size = u64::MAX),
            ("dotdot key", |r| {
                r.data_key = "prod/../../etc/passwd".into()
            }),
            ("absolute key", |r| r.manifest_key = "/etc/passwd".into()),
            ("empty key", |r| r.data_key = String::new()),
            ("bad target", |r| r.target = "../orders".into()),
            ("env mismatch", |r| r.environment = "dev".into()),
            ("bad id", |r| r.backup_id = "x".repeat(5000)),
            ("unknown engine", |r| r.engine = 99),
            ("unspecified engine", |r| r.engine = 0),
            ("control chars", |r| r.server_version = "15\u{0}".into()),
            ("negative rows", |r| {
                r.row_counts = vec![pb::RowCount {
                    schema: "s".into(),
                    table: "t".into(),
                    rows: -1,
                }]
            }),
        ];
        for (what, edit) in cases {
            let mut r = record();
            edit(&mut r);
            let e = result(r).expect_err(what);
            assert!(matches!(e, Error::InvalidArgument(_)), "{what}: {e:?}");
        }
    }

    #[test]
    fn hostile_messages_refused() {
        use pb::agent_message::Msg;
        let cases = [
            pb::AgentMessage { msg: None },
            pb::AgentMessage {
                msg: Some(Msg::Accepted(pb::JobAccepted {
                    job_id: String::new(),
                })),
            },
            pb::AgentMessage {
                msg: Some(Msg::Accepted(pb::JobAccepted {
                    job_id: "9".repeat(100_000),
                })),
            },
            pb::AgentMessage {
                msg: Some(Msg::Result(pb::JobResult {
                    job_id: ID.into(),
                    state: 42,
                    ..Default::default()
                })),
            },
            pb::AgentMessage {
                msg: Some(Msg::Result(pb::JobResult {
                    job_id: ID.into(),
                    state: pb::JobState::Running.into(),
                    ..Default::default()
                })),
            },
            pb::AgentMessage {
                msg: Some(Msg::Hello(pb::Hello {
                    agent: "a".into(),
                    environment: "prod".into(),
                    targets: vec![pb::TargetInfo {
                        name: "../etc".into(),
                        engine: 1,
                        provider: "postgres".into(),
                        repository: "local".into(),
                        database: "x".into(),
                    }],
                    ..Default::default()
                })),
            },
            pb::AgentMessage {
                msg: Some(Msg::Hello(pb::Hello {
                    agent: "a".into(),
                    environment: "Prod".into(),
                    ..Default::default()
                })),
            },
        ];
        for m in cases {
            let e = AgentMessage::try_from(m.clone()).expect_err("accepted");
            assert!(matches!(e, Error::InvalidArgument(_)), "{m:?}: {e:?}");
        }
    }

    #[test]
    fn listed_records_keep_what_the_agent_found() {
        let listed = |status: pb::VerifyStatus, detail: &str| {
            let mut r = record();
            r.verify_status = status.into();
            r.verify_detail = detail.into();
            let result: JobResult = pb::JobResult {
                job_id: ID.into(),
                state: pb::JobState::Succeeded.into(),
                result: Some(pb::job_result::Result::List(pb::ListResult {
                    backups: vec![r],
                })),
                ..Default::default()
            }
            .try_into()
            .expect("valid");
            match result.payload {
                Some(ResultPayload::List(mut b)) => b.remove(0),
                other => panic!("not a listing: {other:?}"),
            }
        };
        let b = listed(pb::VerifyStatus::Missing, "data is gone");
        assert_eq!(b.verify_status, VerifyStatus::Missing);
        assert_eq!(b.verify_detail, "data is gone");
        assert_eq!(
            listed(pb::VerifyStatus::Corrupt, "short").verify_status,
            VerifyStatus::Corrupt
        );
        // A listing does not read the data: it never makes a backup ok.
        let b = listed(pb::VerifyStatus::Ok, "claimed");
        assert_eq!(b.verify_status, VerifyStatus::Unverified);
        assert!(b.verify_detail.is_empty());
    }

    #[test]
    fn rebuild_requests_are_validated() {
        let scope = rebuild_request(&pb::RebuildCatalogRequest {
            agent: "prod-1".into(),
            repository: String::new(),
            dry_run: true,
        })
        .expect("valid");
        assert_eq!(scope.agent.as_deref(), Some("prod-1"));
        assert_eq!(scope.repository, None);
        assert!(scope.dry_run);
        for (agent, repository) in [("../x", ""), ("", "a/b"), ("Prod", "")] {
            let e = rebuild_request(&pb::RebuildCatalogRequest {
                agent: agent.into(),
                repository: repository.into(),
                dry_run: false,
            })
            .expect_err("accepted");
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        }
    }

    #[test]
    fn hello_concurrency_is_bounded() {
        let h: Hello = pb::Hello {
            agent: "a".into(),
            environment: "prod".into(),
            max_concurrent_jobs: 0,
            ..Default::default()
        }
        .try_into()
        .expect("valid");
        assert_eq!(h.max_concurrent_jobs, 1);
        let h: Hello = pb::Hello {
            agent: "a".into(),
            environment: "prod".into(),
            max_concurrent_jobs: 1_000_000,
            ..Default::default()
        }
        .try_into()
        .expect("valid");
        assert_eq!(h.max_concurrent_jobs, MAX_CONCURRENT_JOBS);
    }

    #[test]
    fn long_errors_are_cut() {
        let cut = bounded_text("é".repeat(10_000));
        assert!(cut.len() <= MAX_LONG_TEXT + '…'.len_utf8());
    }

    #[test]
    fn heartbeat_repository_stats_are_validated() {
        let hb = |repos: Vec<pb::RepositoryStats>| {
            AgentMessage::try_from(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                    clock_unix_ms: 5,
                    running_jobs: vec![],
                    repositories: repos,
                })),
            })
        };
        let stats = |name: &str, kind: &str, last: i64| pb::RepositoryStats {
            name: name.into(),
            kind: kind.into(),
            stale_uploads_aborted: 3,
            janitor_errors: 1,
            janitor_last_success_ms: last,
        };
        match hb(vec![stats("s3", "s3", 0), stats("local", "fs", 7)]).expect("valid") {
            AgentMessage::Heartbeat {
                clock_unix_ms,
                repositories,
            } => {
                assert_eq!(clock_unix_ms, 5);
                assert_eq!(repositories[0].janitor_last_success_ms, None);
                assert_eq!(repositories[1].janitor_last_success_ms, Some(7));
                assert_eq!(repositories[0].stale_uploads_aborted, 3);
            }
            other => panic!("not a heartbeat: {other:?}"),
        }
        for bad in [
            vec![stats("../x", "fs", 0)],
            vec![stats("a", "ftp", 0)],
            vec![stats("a", "fs", -1)],
            vec![stats("a", "fs", 0), stats("a", "s3", 0)],
            vec![pb::RepositoryStats {
                stale_uploads_aborted: u64::MAX,
                ..stats("a", "fs", 0)
            }],
        ] {
            let e = hb(bad).expect_err("accepted");
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        }
    }
}
