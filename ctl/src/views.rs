//! What the CLI shows: the coordinator's messages turned into plain serialisable values.
//! Field names are the JSON contract (snake_case); enums are lowercase words; every time is an
//! RFC 3339 UTC string plus the raw milliseconds (`*_at`, `*_at_ms`), both `null` when unset;
//! sizes are integers in bytes; empty strings become `null`.

use lifeboat_proto::{
    self as pb,
    domain::{Engine, JobKind, VerifyStatus},
};
use serde::Serialize;

use crate::{
    output::{
        self, Render, Row, human_duration_ms, human_ratio, human_size, json_time, key_values,
        non_empty, or_none, rfc3339_text,
    },
    report_views::{ReportView, owners_word, severity_word},
};

/// The word for a wire enum value: the domain's own, `unspecified` for 0, `unknown` for a
/// value this build does not know.
pub fn wire_word<T>(
    v: i32,
    from_wire: fn(i32) -> Option<T>,
    word: fn(T) -> &'static str,
) -> &'static str {
    match from_wire(v) {
        Some(t) => word(t),
        None if v == 0 => "unspecified",
        None => "unknown",
    }
}

pub fn engine_word(v: i32) -> &'static str {
    wire_word(v, Engine::from_wire, Engine::as_str)
}

pub fn kind_word(v: i32) -> &'static str {
    wire_word(v, JobKind::from_wire, JobKind::as_str)
}

pub fn state_word(v: i32) -> &'static str {
    match pb::JobState::try_from(v) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        Ok(pb::JobState::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

pub fn verify_word(v: i32) -> &'static str {
    wire_word(v, VerifyStatus::from_wire, VerifyStatus::as_str)
}

/// Whether a job state is final.
pub fn is_terminal(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

#[derive(Debug, Serialize)]
pub struct WhoAmIView {
    pub name: String,
    pub role: String,
    /// The environments the role applies to; null: all.
    pub environments: Option<Vec<String>>,
}

impl From<pb::WhoAmIResponse> for WhoAmIView {
    fn from(r: pb::WhoAmIResponse) -> Self {
        Self {
            name: r.name,
            role: r.role,
            environments: (!r.environments.is_empty()).then_some(r.environments),
        }
    }
}

impl Render for WhoAmIView {
    fn table(&self) -> String {
        let environments = self
            .environments
            .as_ref()
            .map_or_else(|| "all".to_owned(), |e| e.join(", "));
        key_values(&[
            ("name", or_none(&self.name)),
            ("role", or_none(&self.role)),
            ("environments", environments),
        ])
    }
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    pub environment: String,
    pub version: Option<String>,
    pub connected: bool,
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub clock_skew_ms: i64,
    pub running_jobs: u32,
    pub max_concurrent_jobs: u32,
}

impl From<pb::Agent> for AgentView {
    fn from(a: pb::Agent) -> Self {
        let (last_seen, last_seen_ms) = json_time(a.last_seen_ms);
        Self {
            name: a.name,
            environment: a.environment,
            version: non_empty(&a.version),
            connected: a.connected,
            last_seen,
            last_seen_ms,
            clock_skew_ms: a.clock_skew_ms,
            running_jobs: a.running_jobs,
            max_concurrent_jobs: a.max_concurrent_jobs,
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

impl Row for AgentView {
    const HEADER: &'static [&'static str] = &[
        "NAME",
        "ENVIRONMENT",
        "VERSION",
        "CONNECTED",
        "LAST SEEN",
        "CLOCK SKEW",
        "JOBS",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.environment.clone(),
            or_none(self.version.as_deref().unwrap_or_default()),
            yes_no(self.connected),
            rfc3339_text(self.last_seen_ms.unwrap_or(0)),
            format!("{}ms", self.clock_skew_ms),
            format!("{}/{}", self.running_jobs, self.max_concurrent_jobs),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub agent: String,
    pub engine: &'static str,
    pub provider: String,
    pub repository: String,
    pub database: Option<String>,
    pub agent_connected: bool,
    pub last_backup: Option<String>,
    pub last_backup_ms: Option<i64>,
    pub last_backup_id: Option<String>,
    /// The latest `targets check`: when, its job, its worst finding's severity and message.
    pub last_check: Option<String>,
    pub last_check_ms: Option<i64>,
    pub last_check_job_id: Option<String>,
    pub last_check_result: Option<&'static str>,
    pub last_check_summary: Option<String>,
    /// How its new backups are encrypted; absent: not encrypted.
    pub encryption: Option<TargetEncryptionView>,
}

impl From<pb::Target> for TargetView {
    fn from(t: pb::Target) -> Self {
        let (last_backup, last_backup_ms) = json_time(t.last_backup_ms);
        let (last_check, last_check_ms) = json_time(t.last_check_ms);
        Self {
            last_check,
            last_check_ms,
            last_check_job_id: non_empty(&t.last_check_job_id),
            last_check_result: (t.last_check_ms > 0).then(|| severity_word(t.last_check_severity)),
            last_check_summary: non_empty(&t.last_check_summary),
            encryption: TargetEncryptionView::of(t.encryption.as_ref()),
            engine: engine_word(t.engine),
            database: non_empty(&t.database),
            last_backup_id: non_empty(&t.last_backup_id),
            name: t.name,
            agent: t.agent,
            provider: t.provider,
            repository: t.repository,
            agent_connected: t.agent_connected,
            last_backup,
            last_backup_ms,
        }
    }
}

impl Row for TargetView {
    const HEADER: &'static [&'static str] = &[
        "TARGET",
        "AGENT",
        "CONNECTED",
        "ENGINE",
        "PROVIDER",
        "REPOSITORY",
        "DATABASE",
        "LAST BACKUP",
        "LAST BACKUP ID",
        "CHECK",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            or_none(&self.agent),
            yes_no(self.agent_connected),
            self.engine.to_owned(),
            or_none(&self.provider),
            or_none(&self.repository),
            or_none(self.database.as_deref().unwrap_or_default()),
            rfc3339_text(self.last_backup_ms.unwrap_or(0)),
            or_none(self.last_backup_id.as_deref().unwrap_or_default()),
            match (self.last_check_result, &self.last_check_summary) {
                (None, _) => "never".to_owned(),
                (Some(r), None) => r.to_owned(),
                (Some(r), Some(s)) => format!("{r}: {}", first_line(s, 50)),
            },
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub phase: Option<String>,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// An export job's file (asked for; once written, the file written) and what it holds
/// (`null` until the export succeeded).
#[derive(Debug, Serialize)]
pub struct ExportView {
    pub path: String,
    pub manifest_path: String,
    pub raw_bytes: Option<u64>,
    pub raw_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub target: String,
    pub agent: Option<String>,
    pub backup_id: Option<String>,
    pub requested_by: Option<String>,
    pub created_at: Option<String>,
    pub created_at_ms: Option<i64>,
    pub started_at: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at: Option<String>,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub progress: Option<ProgressView>,
    pub detail: Option<String>,
    pub database: Option<String>,
    pub clean: bool,
    /// Restore and its dry run: whose objects are kept (`auto`, `keep`, `drop`).
    pub owners: &'static str,
    pub include_provider_schemas: bool,
    /// A physical restore: the data directory on the agent's host.
    pub data_dir: Option<String>,
    /// An export: the file on the agent's host and, once written, what it holds.
    pub export: Option<ExportView>,
    /// A restore drill: the target whose backup is drilled (`target` is where it is restored).
    pub drill_of: Option<String>,
    /// The repository the job reads or writes when not the backup's own: a copy's
    /// destination; the copy a restore, verify, export or delete works on.
    pub repository: Option<String>,
    /// What the agent found (checks, dry runs, restores); `null` when nothing.
    pub report: Option<ReportView>,
}

impl From<&pb::Job> for JobView {
    fn from(j: &pb::Job) -> Self {
        let (created_at, created_at_ms) = json_time(j.created_at_ms);
        let (started_at, started_at_ms) = json_time(j.started_at_ms);
        let (finished_at, finished_at_ms) = json_time(j.finished_at_ms);
        Self {
            job_id: j.job_id.clone(),
            kind: kind_word(j.kind),
            state: state_word(j.state),
            target: j.target.clone(),
            agent: non_empty(&j.agent),
            backup_id: non_empty(&j.backup_id),
            requested_by: non_empty(&j.requested_by),
            created_at,
            created_at_ms,
            started_at,
            started_at_ms,
            finished_at,
            finished_at_ms,
            duration_ms: output::duration_ms(j.started_at_ms, j.finished_at_ms),
            error: non_empty(&j.error),
            progress: j.progress.as_ref().map(|p| ProgressView {
                phase: non_empty(&p.phase),
                raw_bytes: p.raw_bytes,
                stored_bytes: p.stored_bytes,
            }),
            detail: non_empty(&j.detail),
            database: non_empty(&j.database),
            clean: j.clean,
            owners: owners_word(j.owners),
            include_provider_schemas: j.include_provider_schemas,
            data_dir: non_empty(&j.data_dir),
            export: non_empty(&j.export_path).map(|path| ExportView {
                manifest_path: format!("{path}{}", lifeboat_proto::domain::EXPORT_MANIFEST_SUFFIX),
                path,
                raw_bytes: (!j.export_raw_sha256.is_empty()).then_some(j.export_raw_bytes),
                raw_sha256: non_empty(&j.export_raw_sha256),
            }),
            drill_of: non_empty(&j.drill_of),
            repository: non_empty(&j.repository),
            report: j.report.as_ref().map(ReportView::from),
        }
    }
}

fn opt(v: &Option<String>) -> String {
    or_none(v.as_deref().unwrap_or_default())
}

impl Row for JobView {
    const HEADER: &'static [&'static str] = &[
        "JOB",
        "KIND",
        "STATE",
        "TARGET",
        "BACKUP",
        "REQUESTED BY",
        "CREATED",
        "DURATION",
        "ERROR",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.job_id.clone(),
            self.kind.to_owned(),
            self.state.to_owned(),
            or_none(&self.target),
            opt(&self.backup_id),
            opt(&self.requested_by),
            rfc3339_text(self.created_at_ms.unwrap_or(0)),
            self.duration_ms
                .map_or_else(|| "-".into(), human_duration_ms),
            self.error
                .as_deref()
                .map_or_else(|| "-".into(), |e| first_line(e, 60)),
        ]
    }
}

/// The first line of `text`, cut to `max` characters, for a table cell.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    } else {
        line.to_owned()
    }
}

impl Render for JobView {
    fn table(&self) -> String {
        let time = |ms: Option<i64>| rfc3339_text(ms.unwrap_or(0));
        let mut pairs = vec![
            ("job", self.job_id.clone()),
            ("kind", self.kind.to_owned()),
            ("state", self.state.to_owned()),
            ("target", or_none(&self.target)),
            ("agent", opt(&self.agent)),
            ("backup", opt(&self.backup_id)),
            ("requested by", opt(&self.requested_by)),
            ("created", time(self.created_at_ms)),
            ("started", time(self.started_at_ms)),
            ("finished", time(self.finished_at_ms)),
            (
                "duration",
                self.duration_ms
                    .map_or_else(|| "-".into(), human_duration_ms),
            ),
        ];
        if let Some(p) = &self.progress {
            pairs.push(("phase", opt(&p.phase)));
            pairs.push(("raw bytes", human_size(p.raw_bytes)));
            pairs.push(("stored bytes", human_size(p.stored_bytes)));
        }
        if let Some(r) = &self.repository {
            pairs.push((
                if self.kind == "copy" {
                    "copy to"
                } else {
                    "repository"
                },
                r.clone(),
            ));
        }
        if let Some(x) = &self.export {
            pairs.push(("export to", x.path.clone()));
            if let (Some(bytes), Some(sha)) = (x.raw_bytes, &x.raw_sha256) {
                pairs.push(("raw size", human_size(bytes)));
                pairs.push(("raw sha256", sha.clone()));
            }
        }
        if let Some(dir) = &self.data_dir {
            pairs.push(("data directory", dir.clone()));
        } else if self.kind == "restore" || (self.kind == "check" && self.backup_id.is_some()) {
            pairs.push(("database", opt(&self.database)));
            pairs.push(("clean", yes_no(self.clean)));
            pairs.push(("owners", self.owners.to_owned()));
            pairs.push((
                "provider schemas",
                if self.include_provider_schemas {
                    "included"
                } else {
                    "left out across providers"
                }
                .to_owned(),
            ));
        }
        pairs.push(("detail", opt(&self.detail)));
        pairs.push(("error", opt(&self.error)));
        let mut s = key_values(&pairs);
        if let Some(r) = &self.report {
            s.push('\n');
            s.push_str(&r.text());
        }
        s
    }
}

#[derive(Debug, Serialize)]
pub struct RowCountView {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    /// The table's size on the server when the backup was taken, when recorded.
    pub bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct BackupView {
    pub backup_id: String,
    pub target: String,
    pub environment: String,
    pub agent: Option<String>,
    pub repository: Option<String>,
    pub engine: &'static str,
    pub provider: Option<String>,
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub system_identifier: Option<String>,
    pub dump_tool: Option<String>,
    pub dump_tool_version: Option<String>,
    pub format: Option<String>,
    pub compression: Option<String>,
    pub compression_level: i32,
    pub raw_size: u64,
    pub stored_size: u64,
    pub compression_ratio: Option<f64>,
    pub raw_sha256: Option<String>,
    pub stored_sha256: Option<String>,
    pub started_at: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at: Option<String>,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub row_counts: Vec<RowCountView>,
    pub data_key: Option<String>,
    pub manifest_key: Option<String>,
    pub verify_status: &'static str,
    pub verified_at: Option<String>,
    pub verified_at_ms: Option<i64>,
    pub verify_detail: Option<String>,
    pub job_id: Option<String>,
    /// Physical base backups: the WAL segment their replay starts in.
    pub wal_start: Option<String>,
    /// Never deleted by retention while set.
    pub pinned: bool,
    pub pinned_by: Option<String>,
    pub pinned_at: Option<String>,
    pub pinned_at_ms: Option<i64>,
    pub pin_reason: Option<String>,
    /// Retention is deleting it; no new restore or verify may start.
    pub deleting: bool,
    /// The cluster's globals captured with the backup (roles, memberships), or why not.
    pub globals: GlobalsView,
    /// Its copies in other repositories, each with its own verify state.
    pub copies: Vec<CopyView>,
    /// Client-side encryption; absent: stored in plaintext.
    pub encryption: Option<EncryptionView>,
}

/// A backup's globals, as `backup show` gives them.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsView {
    /// `captured`, `not_captured`, or `absent` (taken before lifeboat captured globals, or a
    /// physical base backup).
    pub status: &'static str,
    /// One line: `12 roles, 3 memberships, without passwords` or why they were not captured.
    pub summary: String,
    pub key: Option<String>,
    pub roles: u32,
    pub memberships: u32,
    pub with_passwords: bool,
    pub raw_size: u64,
    pub stored_size: u64,
    pub raw_sha256: Option<String>,
    pub stored_sha256: Option<String>,
}

impl GlobalsView {
    fn of(b: &pb::BackupRecord) -> Self {
        use lifeboat_proto::domain::Globals;
        let g = b.globals.clone().unwrap_or_default();
        let physical = b.format == lifeboat_proto::domain::PG_BASEBACKUP_FORMAT;
        let (status, summary) = match g.status.as_str() {
            lifeboat_proto::domain::CAPTURED => (
                "captured",
                Globals::from_wire(
                    Some(g.clone()),
                    b.manifest_key.rsplit_once('/').map_or("", |(d, _)| d),
                )
                .map_or_else(|e| format!("unreadable ({})", e.0), |g| g.summary()),
            ),
            lifeboat_proto::domain::NOT_CAPTURED => {
                ("not_captured", format!("not captured ({})", g.reason))
            }
            _ if physical => (
                "absent",
                "in the base backup (a physical backup holds the whole cluster)".to_owned(),
            ),
            _ => ("absent", Globals::Absent.summary()),
        };
        Self {
            status,
            summary,
            key: non_empty(&g.key),
            roles: g.roles,
            memberships: g.memberships,
            with_passwords: g.with_passwords,
            raw_size: g.raw_size,
            stored_size: g.stored_size,
            raw_sha256: non_empty(&g.raw_sha256),
            stored_sha256: non_empty(&g.stored_sha256),
        }
    }
}

impl From<&pb::BackupRecord> for BackupView {
    fn from(b: &pb::BackupRecord) -> Self {
        let (started_at, started_at_ms) = json_time(b.started_at_ms);
        let (finished_at, finished_at_ms) = json_time(b.finished_at_ms);
        let (verified_at, verified_at_ms) = json_time(b.verified_at_ms);
        let (pinned_at, pinned_at_ms) = json_time(b.pin.as_ref().map_or(0, |p| p.pinned_at_ms));
        Self {
            pinned: b.pin.is_some(),
            pinned_by: b.pin.as_ref().and_then(|p| non_empty(&p.pinned_by)),
            pinned_at,
            pinned_at_ms,
            pin_reason: b.pin.as_ref().and_then(|p| non_empty(&p.reason)),
            deleting: b.deleting,
            backup_id: b.backup_id.clone(),
            target: b.target.clone(),
            environment: b.environment.clone(),
            agent: non_empty(&b.agent),
            repository: non_empty(&b.repository),
            engine: engine_word(b.engine),
            provider: non_empty(&b.provider),
            database: non_empty(&b.database),
            server_version: non_empty(&b.server_version),
            system_identifier: non_empty(&b.system_identifier),
            dump_tool: non_empty(&b.dump_tool),
            dump_tool_version: non_empty(&b.dump_tool_version),
            format: non_empty(&b.format),
            compression: non_empty(&b.compression),
            compression_level: b.compression_level,
            raw_size: b.raw_size,
            stored_size: b.stored_size,
            compression_ratio: output::ratio(b.raw_size, b.stored_size)
                .map(|r| (r * 100.0).round() / 100.0),
            raw_sha256: non_empty(&b.raw_sha256),
            stored_sha256: non_empty(&b.stored_sha256),
            started_at,
            started_at_ms,
            finished_at,
            finished_at_ms,
            duration_ms: output::duration_ms(b.started_at_ms, b.finished_at_ms),
            row_counts: b
                .row_counts
                .iter()
                .map(|r| RowCountView {
                    bytes: r.bytes,
                    schema: r.schema.clone(),
                    table: r.table.clone(),
                    rows: r.rows,
                })
                .collect(),
            data_key: non_empty(&b.data_key),
            manifest_key: non_empty(&b.manifest_key),
            verify_status: verify_word(b.verify_status),
            verified_at,
            verified_at_ms,
            verify_detail: non_empty(&b.verify_detail),
            job_id: non_empty(&b.job_id),
            wal_start: non_empty(&b.wal_start),
            globals: GlobalsView::of(b),
            encryption: EncryptionView::of(b.encryption.as_ref()),
            copies: b
                .copies
                .iter()
                .map(|c| CopyView {
                    repository: c.repository.clone(),
                    state: c.state.clone(),
                    job_id: c.job_id.clone(),
                    stored_at_ms: json_time(c.stored_at_ms).1,
                    verify_status: verify_word(c.verify_status),
                    verified_at_ms: json_time(c.verified_at_ms).1,
                    verify_detail: non_empty(&c.verify_detail),
                })
                .collect(),
        }
    }
}

impl Row for BackupView {
    const HEADER: &'static [&'static str] = &[
        "BACKUP", "TARGET", "STARTED", "DURATION", "RAW", "STORED", "RATIO", "VERIFY",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.backup_id.clone(),
            or_none(&self.target),
            rfc3339_text(self.started_at_ms.unwrap_or(0)),
            self.duration_ms
                .map_or_else(|| "-".into(), human_duration_ms),
            human_size(self.raw_size),
            human_size(self.stored_size),
            human_ratio(self.raw_size, self.stored_size),
            match (self.pinned, self.deleting) {
                (true, _) => format!("{} (pinned)", self.verify_status),
                (false, true) => format!("{} (deleting)", self.verify_status),
                (false, false) => self.verify_status.to_owned(),
            },
        ]
    }
}

impl Render for BackupView {
    fn table(&self) -> String {
        let time = |ms: Option<i64>| rfc3339_text(ms.unwrap_or(0));
        let tool = match (&self.dump_tool, &self.dump_tool_version) {
            (Some(t), Some(v)) => format!("{t} {v}"),
            (Some(t), None) => t.clone(),
            (None, _) => "-".into(),
        };
        let compression = match &self.compression {
            Some(c) => format!("{c} (level {})", self.compression_level),
            None => "-".into(),
        };
        let mut pairs = vec![
            ("backup", self.backup_id.clone()),
            ("target", or_none(&self.target)),
            ("environment", or_none(&self.environment)),
            ("agent", opt(&self.agent)),
            ("repository", opt(&self.repository)),
            ("engine", self.engine.to_owned()),
            ("provider", opt(&self.provider)),
            ("database", opt(&self.database)),
            ("server version", opt(&self.server_version)),
            ("system identifier", opt(&self.system_identifier)),
            ("dump tool", tool),
            ("format", opt(&self.format)),
            ("compression", compression),
            (
                "raw size",
                format!("{} ({} bytes)", human_size(self.raw_size), self.raw_size),
            ),
            (
                "stored size",
                format!(
                    "{} ({} bytes, ratio {})",
                    human_size(self.stored_size),
                    self.stored_size,
                    human_ratio(self.raw_size, self.stored_size)
                ),
            ),
            ("raw sha256", opt(&self.raw_sha256)),
            ("stored sha256", opt(&self.stored_sha256)),
            ("started", time(self.started_at_ms)),
            ("finished", time(self.finished_at_ms)),
            (
                "duration",
                self.duration_ms
                    .map_or_else(|| "-".into(), human_duration_ms),
            ),
            ("data key", opt(&self.data_key)),
            ("manifest key", opt(&self.manifest_key)),
            ("job", opt(&self.job_id)),
            ("verify status", self.verify_status.to_owned()),
            ("verified", time(self.verified_at_ms)),
            ("verify detail", opt(&self.verify_detail)),
            (
                "pinned",
                if self.pinned {
                    format!(
                        "yes, by {} at {}: {}",
                        opt(&self.pinned_by),
                        time(self.pinned_at_ms),
                        opt(&self.pin_reason)
                    )
                } else {
                    "no".into()
                },
            ),
            (
                "retention",
                if self.deleting {
                    "being deleted".into()
                } else {
                    "-".into()
                },
            ),
        ];
        if let Some(w) = &self.wal_start {
            // After "compression": where replay of this base backup starts.
            pairs.insert(13, ("WAL starts in", w.clone()));
        }
        pairs.push(("globals", self.globals.summary.clone()));
        pairs.push(("encryption", EncryptionView::line(self.encryption.as_ref())));
        let copies: Vec<String> = self.copies.iter().map(CopyView::line).collect();
        pairs.push((
            "copies",
            if copies.is_empty() {
                "none".into()
            } else {
                copies.join("; ")
            },
        ));
        let mut s = key_values(&pairs);
        s.push('\n');
        if self.format.as_deref() == Some(lifeboat_proto::domain::PG_BASEBACKUP_FORMAT) {
            s.push_str(
                "row counts: none (a physical base backup of the whole cluster; restore it with --data-dir)\n",
            );
        } else if self.row_counts.is_empty() {
            s.push_str("row counts: none recorded\n");
        } else {
            let mut t = output::Table::new(&["SCHEMA", "TABLE", "ROWS"]);
            for r in &self.row_counts {
                t.row(vec![r.schema.clone(), r.table.clone(), r.rows.to_string()]);
            }
            s.push_str(&t.render());
        }
        s
    }
}

#[path = "copy_view.rs"]
mod copy_view;
pub use copy_view::CopyView;
#[path = "encryption_view.rs"]
mod encryption_view;
pub use encryption_view::{EncryptionView, TargetEncryptionView};

#[cfg(test)]
#[path = "views_tests.rs"]
pub(crate) mod tests;
