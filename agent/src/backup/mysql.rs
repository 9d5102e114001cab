//! The backup job for MySQL and MariaDB targets: `mariadb-dump`/`mysqldump` with a 0600 option
//! file, its output checked (header, completion trailer, per-table rows) while it streams
//! through the pipeline into the repository; the upload is committed only once the tool's exit
//! status and the stream's verdict are good (D14, D15), the manifest last.

use anyhow::{Context, Result, bail};

use super::{BODY_DEPTH, Dumped, Upload, Written, finish, non_empty, recorded_objects};
use crate::{
    config::{RowCounts, TargetConfig},
    engine::mysql::{
        self as my, ClientTool, DefaultsFile, DumpPlan, RowCountKind,
        stream::{CheckedDumpReader, format_error},
    },
    job::JobCtx,
    manifest,
    pipeline::{self, Compression, PipelineError},
    process::{join_with_child, stderr_tail, stdout_file},
    provider,
    repo::{
        Repository, backup_dir_key,
        body::{BodyWriter, body_channel},
    },
};

/// Runs the statement a provider wants at the start of each session the agent opens.
pub(crate) async fn init_session(
    conn: &mut sqlx::mysql::MySqlConnection,
    profile: provider::Provider,
) -> Result<()> {
    if let Some(sql) = provider::session_init_sql(profile) {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("run {sql:?} for provider {profile}"))?;
    }
    Ok(())
}

pub(super) async fn run(
    ctx: &JobCtx,
    spec: &crate::work::BackupWork,
    target: &TargetConfig,
    repo: Repository,
    started_at_ms: i64,
) -> Result<lifeboat_proto::domain::BackupRecord> {
    let config = &ctx.config;
    let params = target
        .mysql
        .as_ref()
        .context("target has no MySQL connection parameters")?;

    // Pre-flight: everything that can fail before a byte is written (D16).
    ctx.set_phase("connecting");
    for note in provider::check_url(target.profile, &target.url)? {
        tracing::info!("{note}");
    }
    let password = target.password()?;
    let mut conn = my::connect(params, password.as_ref(), Some(&target.database)).await?;
    init_session(&mut conn, target.profile).await?;
    let facts = my::server_facts(&mut conn, Some(&target.database)).await?;
    let tool_path = my::find_dump_tool(target.mysql_bin_dir.as_deref(), facts.flavor)?;
    let tool = ClientTool::probe(&tool_path).await?;
    for w in my::check_client(&tool, &facts)? {
        tracing::warn!("{w}");
    }
    let non_tx = my::non_transactional_tables(&mut conn, &target.database).await?;
    if !non_tx.is_empty() {
        let list: Vec<String> = non_tx.iter().map(|(t, e)| format!("{t} ({e})")).collect();
        tracing::warn!(
            "tables without transactions are dumped as they are when read, not in the dump's snapshot: {}",
            list.join(", ")
        );
    }
    let estimates = match target.row_counts {
        RowCounts::Estimate => Some(my::row_counts(&mut conn, &target.database, false).await?),
        RowCounts::Exact | RowCounts::Off => None,
    };
    if target.profile == provider::Provider::Planetscale || facts.flavor == my::ServerFlavor::Vitess
    {
        let est = match &estimates {
            Some(e) => e.clone(),
            None => my::row_counts(&mut conn, &target.database, false).await?,
        };
        let largest = est.iter().max_by_key(|r| r.rows);
        provider::check_row_limit(
            target.profile,
            &tool,
            &facts,
            largest.map(|r| (r.table.as_str(), r.rows)),
        )
        .map_err(anyhow::Error::msg)?;
    }
    let objects = recorded_objects(my::objects::dump_objects(&mut conn, &target.database).await);
    let _ = sqlx::Connection::close(conn).await;
    let provider_args = provider::dump_args(target.profile, &tool, &facts);

    let dir_key = backup_dir_key(&config.environment, &target.name, spec.backup_id.as_str());
    let _writing = ctx.writes.hold(&dir_key);
    let data_key = format!("{dir_key}/{}", my::DATA_FILE);
    let defaults = DefaultsFile::create(&config.state_dir, params, password.as_ref(), tool.flavor)?;
    // The data object is written while the dump runs; it becomes visible only after `commit`,
    // once the tool's exit status and the stream's verdict are good.
    let (tx, body) = body_channel(BODY_DEPTH);
    let upload = Upload::start(&repo, &data_key, body, facts.size_bytes, &ctx.cancel);

    ctx.set_phase("dumping");
    let plan = DumpPlan {
        tool: &tool,
        server: &facts,
        database: &target.database,
        provider_args: &provider_args,
    };
    let mut child = match my::dump_command(&plan, &defaults, &config.state_dir).spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(tx);
            upload.abandon().await;
            return Err(e).with_context(|| format!("start {}", tool.path.display()));
        }
    };
    let stderr = stderr_tail(child.stderr.take().context("dump tool stderr")?);
    let (source, inspect) = CheckedDumpReader::new(stdout_file(
        child.stdout.take().context("dump tool stdout")?,
    )?);
    let sink = BodyWriter::new(tx);
    let compression = Compression {
        level: target.compression_level,
        threads: target.compression_threads,
    };
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let c = pipeline::compress(source, sink, my::MAGIC, compression, &counters, &cancel)?;
        Ok::<_, PipelineError>((c.raw, c.stored, c.sink))
    });
    // The pipeline stopped reading: the tool is killed rather than left blocked on a full pipe.
    let (result, status) = join_with_child(&mut child, pipeline, &ctx.cancel, &tool.name).await?;
    let stderr = stderr.await.unwrap_or_default();
    drop(defaults);
    if ctx.cancel.is_cancelled() {
        drop(result);
        upload.abandon().await;
        bail!("cancelled");
    }
    let (raw, stored, writer, summary) = match result {
        Err(e @ (PipelineError::Sink(_) | PipelineError::Compress(_))) => {
            return Err(upload.fail_write(e, &repo).await);
        }
        Err(e) => {
            upload.abandon().await;
            // The stream check's own verdict (no header, no trailer) when the reader failed.
            let inspected = inspect.take().or_else(|| match &e {
                PipelineError::Source(io) => format_error(io).cloned().map(Err),
                _ => None,
            });
            my::dump_verdict(&tool.name, &status, &stderr, inspected)?;
            bail!("{e}; {} exited 0", tool.name);
        }
        Ok((raw, stored, writer)) => {
            match my::dump_verdict(&tool.name, &status, &stderr, inspect.take()) {
                Ok(summary) => (raw, stored, writer, summary),
                Err(e) => {
                    // Dropping the writer ends the body unfinished: the upload aborts.
                    drop(writer);
                    upload.abandon().await;
                    return Err(e);
                }
            }
        }
    };
    if !stderr.is_empty() {
        tracing::info!("{} said: {}", tool.name, non_empty(&stderr));
    }
    let (row_counts_kind, row_counts) = match (target.row_counts, estimates) {
        (RowCounts::Exact, _) => (RowCountKind::Exact, summary.table_rows()),
        (RowCounts::Estimate, Some(e)) => (RowCountKind::Estimate, e),
        (RowCounts::Estimate, None) | (RowCounts::Off, _) => (RowCountKind::Off, Vec::new()),
    };

    let dumped = Dumped {
        server: facts.server_info(),
        tool: manifest::ToolInfo {
            name: tool.name.clone(),
            version: tool.version.to_string(),
        },
        format: my::FORMAT,
        data_file: my::DATA_FILE,
        raw,
        stored,
        row_counts_kind: row_counts_kind.as_str(),
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
