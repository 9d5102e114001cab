//! The backup job: pg_dump in a snapshot exported by the agent, streamed through the pipeline
//! into the repository, manifest last. MySQL/MariaDB targets: see [`mysql`].

mod mysql;
pub(crate) use mysql::init_session as init_mysql_session;

use std::process::Stdio;

use anyhow::{Context, Result, bail};
use lifeboat_proto::{self as pb, domain::BackupRecord};

use crate::{
    config::{Engine, RowCounts},
    engine::postgres as pg,
    job::{JobCtx, rfc3339_ms},
    manifest::{self, Manifest},
    pipeline::{self, Compression, PipelineError},
    process::{describe_status, stderr_tail, stdout_file},
    repo::{
        self, MANIFEST_FILE, ObjectInfo, PG_DATA_FILE, Repository, StorageError, backup_dir_key,
        body::{BodyWriter, body_channel},
    },
    work::BackupWork,
};

/// Chunks (of 1 MiB) queued between the compressor and the repository.
const BODY_DEPTH: usize = 4;

pub async fn run(ctx: &JobCtx, spec: &BackupWork) -> Result<BackupRecord> {
    let config = &ctx.config;
    let target = config.targets.get(&spec.target).with_context(|| {
        format!(
            "this agent has no target {:?}; check the agent's [[target]] list",
            spec.target
        )
    })?;
    let repo = repo::open(config, &target.repository)?;
    let started_at_ms = lifeboat_common::time::now_ms();
    if target.engine == Engine::Mysql {
        return mysql::run(ctx, spec, target, repo, started_at_ms).await;
    }

    // Pre-flight: everything that can fail before a byte is written (D16).
    ctx.set_phase("connecting");
    let password = target.password()?;
    let mut conn = pg::connect(target, password.as_ref(), &target.database).await?;
    let facts = pg::server_facts(&mut conn).await?;
    let pg_dump = pg::tool(target, "pg_dump", facts.major);
    let (tool_version, tool_major) = pg::tool_version(&pg_dump).await?;
    pg::check_tool_major("pg_dump", &tool_version, tool_major, &facts)?;
    let objects = recorded_objects(pg::objects::dump_objects(&mut conn).await);
    let snapshot = pg::export_snapshot(&mut conn).await?;

    let dir_key = backup_dir_key(&config.environment, &target.name, spec.backup_id.as_str());
    let _writing = ctx.writes.hold(&dir_key);
    let data_key = format!("{dir_key}/{PG_DATA_FILE}");
    // The data object is written while pg_dump runs; it becomes visible only after `finish`,
    // which happens once pg_dump's exit status, the format check and the row counts are good.
    let (tx, body) = body_channel(BODY_DEPTH);
    let upload = Upload::start(&repo, &data_key, body, facts.size_bytes, &ctx.cancel);
    let passfile = password
        .as_ref()
        .map(|p| pg::PassFile::create(&config.state_dir, p))
        .transpose()?;

    ctx.set_phase("dumping");
    let mut cmd = pg::child_command(&pg_dump, passfile.as_ref());
    cmd.arg("--format=custom")
        .arg("--compress=0")
        .arg("--no-password")
        .arg(format!("--snapshot={snapshot}"))
        .arg("--dbname")
        .arg(pg::url_for(target, &target.database).as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", pg_dump.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_dump stderr")?);
    let source = stdout_file(child.stdout.take().context("pg_dump stdout")?)?;
    let sink = BodyWriter::new(tx);
    let compression = Compression {
        level: target.compression_level,
        threads: target.compression_threads,
    };
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let mut pipeline = tokio::task::spawn_blocking(move || {
        let c = pipeline::compress(
            source,
            sink,
            pg::PGDMP_MAGIC,
            compression,
            &counters,
            &cancel,
        )?;
        Ok::<_, PipelineError>((c.raw, c.stored, c.sink))
    });

    // Row counts run in the exported snapshot while pg_dump streams; they are abandoned as
    // soon as the job is cancelled or the dump fails (the connection is then dropped).
    let stop_counting = ctx.cancel.child_token();
    let counts = async {
        let counting = async {
            match target.row_counts {
                RowCounts::Exact => pg::row_counts(&mut conn, true).await,
                RowCounts::Estimate => pg::row_counts(&mut conn, false).await,
                RowCounts::Off => Ok(Vec::new()),
            }
        };
        tokio::select! {
            r = counting => Some(r),
            () = stop_counting.cancelled() => None,
        }
    };
    let piped = async {
        let r = tokio::select! {
            r = &mut pipeline => r,
            () = ctx.cancel.cancelled() => {
                let _ = child.start_kill();
                (&mut pipeline).await
            }
        };
        let r = r.context("pipeline task panicked")?;
        if r.is_err() {
            // The pipeline stopped reading: do not leave pg_dump blocked on a full pipe.
            let _ = child.start_kill();
        }
        let status = child.wait().await.context("wait for pg_dump");
        if !status.as_ref().is_ok_and(|s| s.success()) || r.is_err() {
            stop_counting.cancel();
        }
        Ok::<_, anyhow::Error>((r, status?))
    };
    let (piped, counts) = tokio::join!(piped, counts);
    let (result, status) = piped?;
    let stderr = stderr.await.unwrap_or_default();
    drop(passfile);
    if ctx.cancel.is_cancelled() {
        drop(result);
        upload.abandon().await;
        bail!("cancelled");
    }
    let (raw, stored, writer) = match result {
        Err(e @ (PipelineError::Sink(_) | PipelineError::Compress(_))) => {
            return Err(upload.fail_write(e, &repo).await);
        }
        Err(e) if !status.success() => {
            upload.abandon().await;
            bail!(
                "pg_dump failed ({}): {}{}",
                describe_status(&status),
                non_empty(&stderr),
                detail_suffix(&e)
            )
        }
        Err(e) => {
            upload.abandon().await;
            bail!(
                "{e}; pg_dump exited 0 but its output is not a custom-format archive{}",
                stderr_suffix(&stderr)
            )
        }
        Ok((_, _, writer)) if !status.success() => {
            // Dropping the writer ends the body unfinished: the upload aborts.
            drop(writer);
            upload.abandon().await;
            bail!(
                "pg_dump failed ({}): {}",
                describe_status(&status),
                non_empty(&stderr)
            )
        }
        Ok(v) => v,
    };
    let row_counts = match counts
        .context("row counting stopped")
        .and_then(|c| c.context("count rows in the dump's snapshot"))
    {
        Ok(c) => c,
        Err(e) => {
            drop(writer);
            upload.abandon().await;
            return Err(e);
        }
    };
    // The snapshot transaction is no longer needed.
    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;

    let dumped = Dumped {
        server: manifest::ServerInfo {
            version: facts.version.clone(),
            version_num: facts.version_num,
            system_identifier: facts.system_identifier.clone(),
            encoding: facts.encoding.clone(),
            collate: facts.collate.clone(),
            ctype: facts.ctype.clone(),
        },
        tool: manifest::ToolInfo {
            name: "pg_dump".into(),
            version: tool_version.clone(),
        },
        format: "pg_dump-custom",
        data_file: PG_DATA_FILE,
        raw,
        stored,
        row_counts_kind: match target.row_counts {
            RowCounts::Exact => "exact",
            RowCounts::Estimate => "estimate",
            RowCounts::Off => "off",
        },
        row_counts,
        objects,
    };
    let at = Written {
        repo: &repo,
        dir_key: &dir_key,
        data_key: &data_key,
        started_at_ms,
    };
    finish(ctx, spec, target, upload, writer, &at, dumped).await
}

/// What an engine's dump produced, for the end every backup shares.
pub(crate) struct Dumped {
    pub server: manifest::ServerInfo,
    pub tool: manifest::ToolInfo,
    pub format: &'static str,
    pub data_file: &'static str,
    pub raw: pipeline::Digest,
    pub stored: pipeline::Digest,
    pub row_counts_kind: &'static str,
    pub row_counts: Vec<manifest::TableRows>,
    pub objects: Option<manifest::DumpObjects>,
}

/// Where a backup is being written.
pub(crate) struct Written<'a> {
    pub repo: &'a Repository,
    pub dir_key: &'a str,
    pub data_key: &'a str,
    pub started_at_ms: i64,
}

/// Commits the data object (its stored size checked against what was written), then writes
/// the manifest, last, and returns the backup's record.
pub(crate) async fn finish(
    ctx: &JobCtx,
    spec: &BackupWork,
    target: &crate::config::TargetConfig,
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
    let config = &ctx.config;
    let finished_at_ms = lifeboat_common::time::now_ms();
    let m = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        backup_id: spec.backup_id.to_string(),
        environment: config.environment.clone(),
        target: target.name.clone(),
        agent: config.name.clone(),
        repository: target.repository.clone(),
        engine: target.engine.as_str().into(),
        provider: target.provider.clone(),
        database: target.database.clone(),
        server: d.server,
        tool: d.tool,
        format: d.format.into(),
        compression: manifest::CompressionInfo {
            algorithm: "zstd".into(),
            level: target.compression_level,
        },
        encryption_recipients: Vec::new(),
        data_file: d.data_file.into(),
        raw_size: d.raw.size,
        raw_sha256: d.raw.sha256,
        stored_size: d.stored.size,
        stored_sha256: d.stored.sha256,
        started_at: rfc3339_ms(at.started_at_ms),
        finished_at: rfc3339_ms(finished_at_ms),
        started_at_ms: at.started_at_ms,
        finished_at_ms,
        row_counts_kind: d.row_counts_kind.into(),
        row_counts: d.row_counts,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        objects: d.objects,
    };
    write_manifest(ctx, repo, at.dir_key, data_key, &m).await?;
    record_from_manifest(&m, at.dir_key, ctx.job_id.clone())
}

/// The manifest's `objects` (for restore pre-flights); a backup does not fail for want of them.
fn recorded_objects(listed: Result<manifest::DumpObjects>) -> Option<manifest::DumpObjects> {
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
pub(crate) async fn remove_orphan_data(repo: &Repository, data_key: &str) {
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
pub(crate) struct Upload {
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
    pub(crate) async fn fail_write(self, e: PipelineError, repo: &Repository) -> anyhow::Error {
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
            })
            .collect(),
        data_key: format!("{dir_key}/{}", m.data_file),
        manifest_key: format!("{dir_key}/{MANIFEST_FILE}"),
        verify_status: pb::VerifyStatus::Unverified as i32,
        verified_at_ms: 0,
        verify_detail: String::new(),
        job_id,
        pin: None,
        deleting: false,
    };
    BackupRecord::try_from(wire)
        .map_err(|e| anyhow::anyhow!("the manifest is not a valid record: {e}"))
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() { "no error output" } else { s }
}

fn stderr_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; pg_dump said: {s}")
    }
}

fn detail_suffix(e: &PipelineError) -> String {
    match e {
        PipelineError::Empty => String::new(),
        other => format!(" ({other})"),
    }
}
