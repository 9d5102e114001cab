//! The backup job: pg_dump in a snapshot exported by the agent, streamed through the pipeline
//! into the repository, manifest last.

use std::{io::BufWriter, process::Stdio};

use anyhow::{Context, Result, bail};
use lifeboat_common::ids::validate_id;
use lifeboat_proto as pb;

use crate::{
    config::RowCounts,
    engine::postgres as pg,
    job::{JobCtx, rfc3339_ms},
    manifest::{self, Manifest},
    pipeline::{self, Compression, PipelineError},
    process::{blocking, describe_status, stderr_tail, stdout_file},
    repo::{MANIFEST_FILE, PG_DATA_FILE, Repository, backup_dir_key},
};

/// Buffer between the compressor and the repository file.
const SINK_BUFFER: usize = 1024 * 1024;

pub async fn run(ctx: &JobCtx, spec: &pb::BackupSpec) -> Result<pb::BackupRecord> {
    validate_id("backup id", &spec.backup_id)?;
    let config = &ctx.config;
    let target = config.targets.get(&spec.target).with_context(|| {
        format!(
            "this agent has no target {:?}; check the agent's [[target]] list",
            spec.target
        )
    })?;
    let repo_cfg = config
        .repositories
        .get(&target.repository)
        .context("target's repository is not configured")?;
    let repo = Repository::from_config(repo_cfg);
    let started_at_ms = lifeboat_proto::now_ms();

    // Pre-flight: everything that can fail before a byte is written (D16).
    ctx.set_phase("connecting");
    let password = target.password()?;
    let mut conn = pg::connect(target, password.as_ref(), &target.database).await?;
    let facts = pg::server_facts(&mut conn).await?;
    let pg_dump = pg::tool(target, "pg_dump");
    let (tool_version, tool_major) = pg::tool_version(&pg_dump).await?;
    pg::check_tool_major("pg_dump", &tool_version, tool_major, &facts)?;
    let snapshot = pg::export_snapshot(&mut conn).await?;

    let dir_key = backup_dir_key(&config.environment, &target.name, &spec.backup_id);
    let (mut writer, mut tmp) = {
        let repo = repo.clone();
        let dir_key = dir_key.clone();
        blocking(move || {
            let mut w = repo.fs().begin(&dir_key)?;
            let t = w.create_temp(PG_DATA_FILE)?;
            Ok((w, t))
        })
        .await?
    };
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
    let file = tmp.take().context("temp file")?;
    let compression = Compression {
        level: target.compression_level,
        threads: target.compression_threads,
    };
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let mut pipeline = tokio::task::spawn_blocking(move || {
        let sink = BufWriter::with_capacity(SINK_BUFFER, file);
        let c = pipeline::compress(
            source,
            sink,
            pg::PGDMP_MAGIC,
            compression,
            &counters,
            &cancel,
        )?;
        let file = c
            .sink
            .into_inner()
            .map_err(|e| PipelineError::Sink(e.into_error()))?;
        // Make the data durable here, off the reactor, while the exit status is checked.
        file.sync_all().map_err(PipelineError::Sink)?;
        Ok::<_, PipelineError>((c.raw, c.stored, file))
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
        bail!("cancelled");
    }
    let (raw, stored, file) = match result {
        Err(e @ (PipelineError::Sink(_) | PipelineError::Compress(_))) => {
            return Err(e).with_context(|| format!("write backup to {}", repo.describe()));
        }
        Err(e) if !status.success() => {
            bail!(
                "pg_dump failed ({}): {}{}",
                describe_status(&status),
                non_empty(&stderr),
                detail_suffix(&e)
            )
        }
        Err(e) => bail!(
            "{e}; pg_dump exited 0 but its output is not a custom-format archive{}",
            stderr_suffix(&stderr)
        ),
        Ok(_) if !status.success() => bail!(
            "pg_dump failed ({}): {}",
            describe_status(&status),
            non_empty(&stderr)
        ),
        Ok(v) => v,
    };
    let row_counts = counts
        .context("row counting stopped")?
        .context("count rows in the dump's snapshot")?;
    // The snapshot transaction is no longer needed.
    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;

    ctx.set_phase("committing");
    tmp.put_back(file);
    let finished_at_ms = lifeboat_proto::now_ms();
    let m = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        backup_id: spec.backup_id.clone(),
        environment: config.environment.clone(),
        target: target.name.clone(),
        agent: config.name.clone(),
        repository: target.repository.clone(),
        engine: target.engine.as_str().into(),
        provider: target.provider.clone(),
        database: target.database.clone(),
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
        format: "pg_dump-custom".into(),
        compression: manifest::CompressionInfo {
            algorithm: "zstd".into(),
            level: target.compression_level,
        },
        encryption_recipients: Vec::new(),
        data_file: PG_DATA_FILE.into(),
        raw_size: raw.size,
        raw_sha256: raw.sha256.clone(),
        stored_size: stored.size,
        stored_sha256: stored.sha256.clone(),
        started_at: rfc3339_ms(started_at_ms),
        finished_at: rfc3339_ms(finished_at_ms),
        started_at_ms,
        finished_at_ms,
        row_counts_kind: match target.row_counts {
            RowCounts::Exact => "exact",
            RowCounts::Estimate => "estimate",
            RowCounts::Off => "off",
        }
        .into(),
        row_counts,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = m.to_json();
    let writer_done = blocking(move || {
        writer.commit(tmp)?;
        writer.write_file(MANIFEST_FILE, &json)?;
        writer.finish();
        Ok(())
    })
    .await;
    writer_done.with_context(|| format!("commit backup to {}", repo.describe()))?;

    Ok(record_from_manifest(&m, &dir_key, ctx.job_id.clone()))
}

pub fn record_from_manifest(m: &Manifest, dir_key: &str, job_id: String) -> pb::BackupRecord {
    pb::BackupRecord {
        backup_id: m.backup_id.clone(),
        target: format!("{}/{}", m.environment, m.target),
        environment: m.environment.clone(),
        agent: m.agent.clone(),
        repository: m.repository.clone(),
        engine: pb::Engine::Postgres as i32,
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
    }
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
