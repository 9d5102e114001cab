//! The backup job. One orchestrator ([`take`]) runs every engine's backup the same way: the
//! engine's pre-flight (everything that can fail before a byte is written, D16), its dump tool
//! streamed through the pipeline (zstd + both SHA-256) into the repository while the engine
//! works beside it, the engine's verdict on the tool and its output, then the data object
//! committed and the manifest written last. What differs per engine is behind [`Dump`]:
//! [`postgres::PgDump`] (`pg_dump` in a snapshot the agent exports) and [`mysql::MyDump`]
//! (`mariadb-dump`/`mysqldump`, its output checked as it flows).

mod globals;
mod mysql;
mod physical;
pub(crate) use globals::GLOBALS_FILE;
mod postgres;
pub(crate) use mysql::init_session as init_mysql_session;
pub(crate) use physical::check_target as check_physical_target;

use std::{io::Read, process::ExitStatus};

use anyhow::{Context, Result, bail};
use lifeboat_proto::{self as pb, domain::BackupRecord};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{BackupMode, Engine, TargetConfig},
    job::{JobCtx, rfc3339_ms},
    manifest::{self, Manifest},
    pipeline::{self, Compression, PipelineError},
    process::{join_with_child, stderr_tail},
    repo::{
        self, MANIFEST_FILE, ObjectInfo, Repository, StorageError, backup_dir_key,
        body::{BodyWriter, body_channel},
    },
    work::BackupWork,
};

/// Chunks (of 1 MiB) queued between the compressor and the repository.
const BODY_DEPTH: usize = 4;

/// One engine's dump, as the orchestrator ([`take`]) drives it. A value is made by the
/// engine's pre-flight, which has connected, read the server's facts and checked the tool.
/// A backup is one stream from one tool (ADR 0014 says how a physical backup fits).
pub(crate) trait Dump {
    /// The data object's file name in the backup's directory.
    const DATA_FILE: &'static str;
    /// The bytes the stream starts with; anything else is refused before it is stored.
    const MAGIC: &'static [u8];

    /// The dump's size as the server estimates it, a hint for the upload.
    fn size_hint(&self) -> u64;

    /// The dump tool's name, for messages.
    fn tool_name(&self) -> &str;

    /// Starts the dump tool with stdout and stderr piped: the child, and the stream to store
    /// (its stdout, checked as it flows where the engine can).
    fn start(&mut self, ctx: &JobCtx) -> Result<(tokio::process::Child, Box<dyn Read + Send>)>;

    /// Work beside the dump while it streams (row counts in the dump's snapshot). It must end
    /// soon after `stop` is cancelled, which happens when the job is cancelled or the dump
    /// failed. Its outcome is judged by [`Dump::verdict`].
    async fn beside(&mut self, _stop: &CancellationToken) {}

    /// Why a dump whose stream the pipeline rejected (no magic, a read error, an incomplete
    /// dump) failed: the tool's own failure when it has one, else what was wrong with its
    /// output.
    fn rejected(&mut self, status: &ExitStatus, stderr: &str, e: &PipelineError) -> anyhow::Error;

    /// The verdict on a dump whose stream was read whole: the tool's exit status, the stream's
    /// own check, the work done beside it.
    fn verdict(&mut self, status: &ExitStatus, stderr: &str) -> Result<()>;

    /// What the manifest records about the dump, once it is judged good.
    async fn facts(self) -> Result<DumpFacts>;
}

/// What an engine tells the manifest about its dump.
pub(crate) struct DumpFacts {
    pub server: manifest::ServerInfo,
    pub tool: manifest::ToolInfo,
    pub format: &'static str,
    pub row_counts_kind: &'static str,
    pub row_counts: Vec<manifest::TableRows>,
    pub objects: Option<manifest::DumpObjects>,
    /// A physical base backup's WAL range and cluster facts.
    pub physical: Option<manifest::PhysicalInfo>,
}

pub async fn run(ctx: &JobCtx, spec: &BackupWork) -> Result<BackupRecord> {
    let target = ctx.config.targets.get(&spec.target).with_context(|| {
        format!(
            "this agent has no target {:?}; check the agent's [[target]] list",
            spec.target
        )
    })?;
    let repo = repo::open(&ctx.config, &target.repository)?;
    let started_at_ms = lifeboat_common::time::now_ms();
    ctx.set_phase("connecting");
    let at = Start {
        spec,
        target,
        repo: &repo,
        started_at_ms,
    };
    match (target.engine, target.mode) {
        (Engine::Postgres, BackupMode::Physical) => {
            take(ctx, &at, physical::PgBaseBackup::preflight(target).await?).await
        }
        (Engine::Postgres, BackupMode::Logical) => {
            take(ctx, &at, postgres::PgDump::preflight(target).await?).await
        }
        // The configuration refuses mode = "physical" on MySQL targets.
        (Engine::Mysql, _) => take(ctx, &at, mysql::MyDump::preflight(target).await?).await,
    }
}

/// A backup about to be taken.
struct Start<'a> {
    spec: &'a BackupWork,
    target: &'a TargetConfig,
    repo: &'a Repository,
    started_at_ms: i64,
}

/// Streams `dump` into the repository and, once the engine's verdict is good, commits it and
/// writes the manifest. On any failure, cancellation included, nothing is left that looks
/// like a backup: the upload is abandoned (a multipart upload aborted, a temporary file
/// removed) before the error is returned.
async fn take<D: Dump>(ctx: &JobCtx, at: &Start<'_>, mut dump: D) -> Result<BackupRecord> {
    let (config, target, repo) = (&ctx.config, at.target, at.repo);
    let dir_key = backup_dir_key(
        &config.environment,
        &target.name,
        at.spec.backup_id.as_str(),
    );
    let _writing = ctx.writes.hold(&dir_key);
    // An encrypted backup gets a key of its own, encrypted to the configured recipients
    // (read now: a changed recipients file needs no restart). No recipient, no backup.
    let sealing = match &target.encryption {
        Some(enc) => Some((
            crate::crypt::BackupKey::generate(),
            enc.recipients()
                .with_context(|| format!("encryption of target {}", target.name))?,
        )),
        None => None,
    };
    let data_file = match &sealing {
        Some(_) => format!("{}{}", D::DATA_FILE, crate::crypt::AGE_SUFFIX),
        None => D::DATA_FILE.to_owned(),
    };
    let data_key = format!("{dir_key}/{data_file}");
    // The data object is written while the dump runs; it becomes visible only after `commit`,
    // once the tool's exit status and the stream's verdict are good.
    let (tx, body) = body_channel(BODY_DEPTH);
    let upload = Upload::start(repo, &data_key, body, dump.size_hint(), &ctx.cancel);

    ctx.set_phase("dumping");
    let (mut child, source) = match dump.start(ctx) {
        Ok(started) => started,
        Err(e) => {
            drop(tx);
            upload.abandon().await;
            return Err(e);
        }
    };
    let stderr = child.stderr.take().map(stderr_tail);
    let sink = BodyWriter::new(tx);
    let compression = Compression {
        level: target.compression_level,
        adaptive: target.compression_auto,
        threads: target.compression_threads,
        encrypt_to: sealing.as_ref().map(|(k, _)| k.recipient()),
    };
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let c = pipeline::compress(source, sink, D::MAGIC, compression, &counters, &cancel)?;
        Ok::<_, PipelineError>((c.raw, c.stored, c.sink, c.levels))
    });
    let tool = dump.tool_name().to_owned();
    let stop_beside = ctx.cancel.child_token();
    let piped = async {
        // The pipeline stopped reading: the tool is killed rather than left on a full pipe.
        let r = join_with_child(&mut child, pipeline, &ctx.cancel, &tool).await;
        if !matches!(&r, Ok((Ok(_), status)) if status.success()) {
            stop_beside.cancel();
        }
        r
    };
    let (piped, ()) = tokio::join!(piped, dump.beside(&stop_beside));
    let (result, status) = match piped {
        Ok(r) => r,
        Err(e) => {
            upload.abandon().await;
            return Err(e);
        }
    };
    let stderr = match stderr {
        Some(tail) => tail.await.unwrap_or_default(),
        None => String::new(),
    };
    if ctx.cancel.is_cancelled() {
        drop(result);
        upload.abandon().await;
        bail!("cancelled");
    }
    let (raw, stored, writer, levels) = match result {
        Err(e @ (PipelineError::Sink(_) | PipelineError::Compress(_))) => {
            return Err(upload.fail_write(e, repo).await);
        }
        Err(e) => {
            upload.abandon().await;
            return Err(dump.rejected(&status, &stderr, &e));
        }
        Ok(v) => v,
    };
    if let Err(e) = dump.verdict(&status, &stderr) {
        // Dropping the writer ends the body unfinished: the upload aborts.
        drop(writer);
        upload.abandon().await;
        return Err(e);
    }
    let facts = match dump.facts().await {
        Ok(f) => f,
        Err(e) => {
            drop(writer);
            upload.abandon().await;
            return Err(e);
        }
    };
    let dumped = Dumped {
        facts,
        data_file,
        raw,
        stored,
        levels,
    };
    let written = Written {
        repo,
        dir_key: &dir_key,
        data_key: &data_key,
        started_at_ms: at.started_at_ms,
        sealing: sealing.as_ref(),
    };
    finish(ctx, at.spec, target, upload, writer, &written, dumped).await
}

/// The manifest's compression section: the level that compressed the most and, when an
/// adaptive backup used more than one, the bytes each compressed. A backup at one level keeps
/// the oldest manifest version that holds it, so older agents still read it.
fn compression_info(fixed: i32, levels: &[(i32, u64)]) -> manifest::CompressionInfo {
    let main = levels
        .iter()
        .max_by_key(|(l, n)| (*n, -*l))
        .map_or(fixed, |(l, _)| *l);
    manifest::CompressionInfo {
        algorithm: "zstd".into(),
        level: main,
        levels: (levels.len() > 1).then(|| {
            levels
                .iter()
                .map(|&(level, raw_bytes)| manifest::LevelUse { level, raw_bytes })
                .collect()
        }),
    }
}

/// What a dump produced, for the end every backup shares.
struct Dumped {
    facts: DumpFacts,
    data_file: String,
    raw: pipeline::Digest,
    stored: pipeline::Digest,
    /// Raw bytes per zstd level.
    levels: Vec<(i32, u64)>,
}

/// Where a backup is being written.
struct Written<'a> {
    repo: &'a Repository,
    dir_key: &'a str,
    data_key: &'a str,
    started_at_ms: i64,
    /// An encrypted backup: its key and the recipients the key object is encrypted to.
    sealing: Option<&'a (crate::crypt::BackupKey, crate::crypt::Recipients)>,
}

/// Commits the data object (its stored size checked against what was written), then writes
/// the manifest, last, and returns the backup's record.
async fn finish(
    ctx: &JobCtx,
    spec: &BackupWork,
    target: &TargetConfig,
    upload: Upload,
    writer: BodyWriter,
    at: &Written<'_>,
    d: Dumped,
) -> Result<BackupRecord> {
    let (repo, data_key) = (at.repo, at.data_key);
    ctx.set_phase("committing");
    let data = match upload.commit(writer).await {
        Ok(d) => d,
        Err(e) => {
            // An upload can fail after the object became visible (its completion's answer
            // lost, its check failing): remove it now rather than leave it for the janitor,
            // unless another writer holds the key or a manifest exists.
            let taken = e
                .downcast_ref::<StorageError>()
                .is_some_and(|s| matches!(s, StorageError::AlreadyExists(_)));
            if !taken {
                let manifest_key = format!("{}/{MANIFEST_FILE}", at.dir_key);
                if let (Ok(Some(_)), Ok(None)) =
                    (repo.head(data_key).await, repo.head(&manifest_key).await)
                {
                    remove_orphan_data(repo, data_key).await;
                }
            }
            return Err(e.context(format!("write backup to {}", repo.describe())));
        }
    };
    if data.size != d.stored.size {
        let _ = repo.delete(data_key).await;
        bail!(
            "{} reports {} bytes stored for {data_key}, but {} were written; the backup was discarded",
            repo.describe(),
            data.size,
            d.stored.size
        );
    }
    // The key object goes before anything else that needs it to be read.
    let key_key = format!("{}/{}", at.dir_key, crate::crypt::KEY_FILE);
    if let Some((key, recipients)) = at.sealing {
        let written =
            match crate::crypt::seal_key(key, recipients, &format!("backup {}", spec.backup_id)) {
                Ok(object) => repo
                    .put_bytes(&key_key, object.into(), &ctx.cancel)
                    .await
                    .map_err(anyhow::Error::new),
                Err(e) => Err(e),
            };
        if let Err(e) = written {
            remove_orphan_data(repo, data_key).await;
            return Err(e.context(format!("write the key object to {}", repo.describe())));
        }
    }
    let encrypt_to = at.sealing.map(|(k, _)| k.recipient());
    let globals = match globals::capture(ctx, target, repo, at.dir_key, encrypt_to.as_ref()).await {
        Ok(g) => g,
        Err(e) => {
            remove_orphan_data(repo, data_key).await;
            if at.sealing.is_some() {
                remove_orphan_data(repo, &key_key).await;
            }
            return Err(e);
        }
    };
    let globals_key = format!(
        "{}/{}",
        at.dir_key,
        globals.as_ref().map(|g| g.file.clone()).unwrap_or_default()
    );
    let config = &ctx.config;
    let finished_at_ms = lifeboat_common::time::now_ms();
    let compression = compression_info(target.compression_level, &d.levels);
    let mut m = Manifest {
        schema_version: if compression.levels.is_some() {
            manifest::ADAPTIVE_SCHEMA_VERSION
        } else if at.sealing.is_some() {
            manifest::ENCRYPTED_SCHEMA_VERSION
        } else {
            Manifest::version_for(
                d.facts.physical.is_some(),
                globals.is_some(),
                d.facts.row_counts.iter().any(|r| r.bytes.is_some()),
            )
        },
        backup_id: spec.backup_id.to_string(),
        environment: config.environment.clone(),
        target: target.name.clone(),
        agent: config.name.clone(),
        repository: target.repository.clone(),
        engine: target.engine.as_str().into(),
        provider: target.provider.clone(),
        database: target.database.clone(),
        server: d.facts.server,
        tool: d.facts.tool,
        format: d.facts.format.into(),
        compression,
        encryption_recipients: at.sealing.map(|(_, r)| r.strings()).unwrap_or_default(),
        data_file: d.data_file,
        raw_size: d.raw.size,
        raw_sha256: d.raw.sha256,
        stored_size: d.stored.size,
        stored_sha256: d.stored.sha256,
        started_at: rfc3339_ms(at.started_at_ms),
        finished_at: rfc3339_ms(finished_at_ms),
        started_at_ms: at.started_at_ms,
        finished_at_ms,
        row_counts_kind: d.facts.row_counts_kind.into(),
        row_counts: d.facts.row_counts,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        objects: d.facts.objects,
        physical: d.facts.physical,
        globals,
        encryption: at.sealing.map(|(_, r)| manifest::EncryptionInfo {
            scheme: "age".into(),
            key_file: crate::crypt::KEY_FILE.into(),
            recipients: r.strings(),
            key_ids: r.key_ids(),
        }),
        sealed: None,
    };
    // The record the coordinator will check, checked before the manifest makes this a
    // backup: a backup the catalog cannot take is not left behind in the repository.
    let captured = m
        .globals
        .as_ref()
        .is_some_and(|g| g.status == lifeboat_proto::domain::CAPTURED);
    // The catalog keeps the names as reported now; the stored manifest keeps them sealed.
    let record = record_from_manifest(&m, at.dir_key, ctx.job_id.clone()).and_then(|r| {
        if let Some((key, _)) = at.sealing {
            m.seal(&key.recipient())?;
        }
        Ok(r)
    });
    let record = match record {
        Ok(r) => r,
        Err(e) => {
            remove_orphan_data(repo, data_key).await;
            if captured {
                remove_orphan_data(repo, &globals_key).await;
            }
            if at.sealing.is_some() {
                remove_orphan_data(repo, &key_key).await;
            }
            return Err(e);
        }
    };
    if let Err(e) = write_manifest(ctx, repo, at.dir_key, data_key, &m).await {
        if matches!(
            repo.head(&format!("{}/{MANIFEST_FILE}", at.dir_key)).await,
            Ok(None)
        ) {
            if captured {
                remove_orphan_data(repo, &globals_key).await;
            }
            if at.sealing.is_some() {
                remove_orphan_data(repo, &key_key).await;
            }
        }
        return Err(e);
    }
    Ok(record)
}

/// The manifest's `objects` (for restore pre-flights); a backup does not fail for want of them.
pub(crate) fn recorded_objects(
    listed: Result<manifest::DumpObjects>,
) -> Option<manifest::DumpObjects> {
    match listed {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(
                "failed to list the schemas, extensions and roles for the manifest: {e:#}; restores of this backup check less before they start"
            );
            None
        }
    }
}

/// Writes the manifest, last: once it exists, the backup exists. If it cannot be written, the
/// data object is removed, but only once the manifest is known to be absent: a write whose
/// answer was lost may have stored it (M10), and a backup whose manifest exists keeps its data.
async fn write_manifest(
    ctx: &JobCtx,
    repo: &Repository,
    dir_key: &str,
    data_key: &str,
    m: &Manifest,
) -> Result<()> {
    let json = m.to_json();
    let manifest_key = format!("{dir_key}/{MANIFEST_FILE}");
    let Err(e) = repo
        .put_bytes(&manifest_key, json.clone().into(), &ctx.cancel)
        .await
    else {
        return Ok(());
    };
    let err = |e: StorageError| {
        Err(anyhow::Error::new(e))
            .with_context(|| format!("write the manifest to {}", repo.describe()))
    };
    match repo
        .get_bytes(&manifest_key, manifest::MAX_MANIFEST_BYTES)
        .await
    {
        Ok(Some(stored)) if stored == json => {
            tracing::info!(
                key = %manifest_key,
                "the manifest write reported a failure ({e}), but the manifest stored is the one sent: the backup is complete"
            );
            Ok(())
        }
        Ok(Some(_)) => {
            tracing::warn!(key = %manifest_key, "another manifest is stored for this backup; its data is left in place");
            err(e)
        }
        Ok(None) => {
            remove_orphan_data(repo, data_key).await;
            err(e)
        }
        Err(check) => {
            tracing::warn!(
                key = %manifest_key,
                "could not tell whether the manifest was stored ({check}); the data is left for the janitor"
            );
            err(e)
        }
    }
}

/// Removes the data object of a backup that failed after its upload completed and whose
/// manifest is known to be absent, so it does not wait for the janitor. Retried a few times.
async fn remove_orphan_data(repo: &Repository, data_key: &str) {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
        }
        match repo.delete(data_key).await {
            Ok(()) => return,
            Err(d) => last = Some(d),
        }
    }
    if let Some(d) = last {
        tracing::warn!(key = %data_key, "could not remove the data of a failed backup ({d}); the janitor will");
    }
}

/// The data object's upload, running beside the dump.
struct Upload {
    task: tokio::task::JoinHandle<Result<ObjectInfo, StorageError>>,
    /// Stops the upload whatever its body is doing (see [`Upload::abandon`]).
    stop: tokio_util::sync::CancellationToken,
}

impl Upload {
    fn start(
        repo: &Repository,
        key: &str,
        body: repo::Body,
        size_hint: u64,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Self {
        let repo = repo.clone();
        let key = key.to_owned();
        let stop = cancel.child_token();
        let token = stop.clone();
        Self {
            task: tokio::spawn(async move {
                repo.put(&key, body, Some(size_hint).filter(|h| *h > 0), &token)
                    .await
            }),
            stop,
        }
    }

    /// Ends the body and waits for the object to be stored and checked.
    async fn commit(self, writer: BodyWriter) -> Result<ObjectInfo> {
        let finished = writer.finish().await;
        let stored = self.task.await.context("upload task failed")?;
        match (stored, finished) {
            (Ok(info), Ok(())) => Ok(info),
            (Err(e), _) => Err(e.into()),
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    /// Stops the upload and waits for it to clean up (abort the multipart upload, remove the
    /// temporary file), so nothing is left when the job reports its failure. An upload that
    /// had already failed keeps its own error, which is returned.
    async fn abandon(self) -> Option<Result<ObjectInfo, StorageError>> {
        self.stop.cancel();
        self.task.await.ok()
    }

    /// Abandons the upload after the pipeline failed writing to it (`e` is the broken pipe the
    /// compressor saw): the repository's own error, when it has one, says more.
    async fn fail_write(self, e: PipelineError, repo: &Repository) -> anyhow::Error {
        let err = match self.abandon().await {
            Some(Err(se))
                if !matches!(se, StorageError::Abandoned(_) | StorageError::Cancelled) =>
            {
                anyhow::Error::new(se)
            }
            _ => anyhow::Error::new(e),
        };
        err.context(format!("write backup to {}", repo.describe()))
    }
}

/// The record of the backup a manifest describes, checked like any record that crosses the
/// wire (a manifest listed from a repository may have been written by anyone).
pub fn record_from_manifest(m: &Manifest, dir_key: &str, job_id: String) -> Result<BackupRecord> {
    let engine = Engine::parse(&m.engine)
        .with_context(|| format!("the manifest names an unknown engine {:?}", m.engine))?;
    let wire = pb::BackupRecord {
        encryption: m.encryption.as_ref().map(|e| pb::BackupEncryption {
            key_object: format!("{dir_key}/{}", e.key_file),
            recipients: e.recipients.clone(),
            key_ids: e.key_ids.clone(),
        }),
        backup_id: m.backup_id.clone(),
        target: format!("{}/{}", m.environment, m.target),
        environment: m.environment.clone(),
        agent: m.agent.clone(),
        repository: m.repository.clone(),
        engine: pb::Engine::from(engine).into(),
        provider: m.provider.clone(),
        database: m.database.clone(),
        server_version: m.server.version.clone(),
        system_identifier: m.server.system_identifier.clone(),
        dump_tool: m.tool.name.clone(),
        dump_tool_version: m.tool.version.clone(),
        format: m.format.clone(),
        compression: m.compression.algorithm.clone(),
        compression_level: m.compression.level,
        raw_size: m.raw_size,
        stored_size: m.stored_size,
        raw_sha256: m.raw_sha256.clone(),
        stored_sha256: m.stored_sha256.clone(),
        started_at_ms: m.started_at_ms,
        finished_at_ms: m.finished_at_ms,
        row_counts: m
            .row_counts
            .iter()
            .map(|r| pb::RowCount {
                schema: r.schema.clone(),
                table: r.table.clone(),
                rows: r.rows,
                bytes: r.bytes,
            })
            .collect(),
        data_key: format!("{dir_key}/{}", m.data_file),
        manifest_key: format!("{dir_key}/{MANIFEST_FILE}"),
        verify_status: pb::VerifyStatus::Unverified as i32,
        verified_at_ms: 0,
        verify_detail: String::new(),
        job_id,
        wal_start: match &m.physical {
            Some(p) => p
                .start_lsn
                .parse::<lifeboat_proto::domain::Lsn>()
                .map_err(|e| anyhow::anyhow!("the manifest's start_lsn: {}", e.0))?
                .segment_file(p.timeline, p.wal_segment_size),
            None => String::new(),
        },
        pin: None,
        deleting: false,
        copies: Vec::new(),
        globals: m.globals.as_ref().map(|g| pb::BackupGlobals {
            status: g.status.clone(),
            reason: g.reason.clone(),
            key: if g.file.is_empty() {
                String::new()
            } else {
                format!("{dir_key}/{}", g.file)
            },
            raw_size: g.raw_size,
            raw_sha256: g.raw_sha256.clone(),
            stored_size: g.stored_size,
            stored_sha256: g.stored_sha256.clone(),
            roles: g.roles,
            memberships: g.memberships,
            with_passwords: g.with_passwords,
        }),
    };
    BackupRecord::try_from(wire)
        .map_err(|e| anyhow::anyhow!("the manifest is not a valid record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_the_main_level_and_lists_levels_only_when_there_were_several() {
        let one = compression_info(3, &[(1, 500)]);
        assert_eq!((one.level, one.levels), (1, None));
        let several = compression_info(3, &[(1, 100), (2, 300), (4, 300)]);
        assert_eq!(
            several.level, 2,
            "most bytes; a tie goes to the lower level"
        );
        let listed: Vec<(i32, u64)> = several
            .levels
            .expect("listed")
            .iter()
            .map(|l| (l.level, l.raw_bytes))
            .collect();
        assert_eq!(listed, [(1, 100), (2, 300), (4, 300)]);
    }
}
