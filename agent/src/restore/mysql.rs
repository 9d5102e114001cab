//! The restore job for MySQL and MariaDB targets: the dump streams from the repository through
//! the hash checks into `mariadb`/`mysql`, into a fresh scratch database; only when both hashes,
//! the client's exit status and (for exact counts) the row counts agree is it swapped into
//! place (see docs/adr/0007-mysql-restore-swap.md). PlanetScale, where the agent cannot create
//! databases, loads into an existing, empty destination instead.

use std::io::BufWriter;

use anyhow::{Context, Result, bail};
use lifeboat_common::{names::validate_database, secret::Secret};
use lifeboat_proto as pb;
use sqlx::mysql::MySqlConnection;

use super::{
    Located, compare_counts, default_database_name, describe_status, open_data, scratch_name,
};
use crate::{
    backup::init_mysql_session,
    config::TargetConfig,
    engine::mysql::{
        self as my, ClientTool, ConnParams, DefaultsFile, RowCountKind, stream::SandboxLineFilter,
        swap::SwapPlan,
    },
    job::JobCtx,
    manifest::{Manifest, TableRows},
    pipeline::{self, PipelineError},
    process::{stderr_tail, stdin_file},
    provider::Provider,
};

pub(super) async fn run(
    ctx: &JobCtx,
    spec: &pb::RestoreSpec,
    rec: &pb::BackupRecord,
    target: &TargetConfig,
    loc: &Located,
    manifest: &Manifest,
    source_provider: Provider,
) -> Result<pb::RestoreResult> {
    let params = target
        .mysql
        .as_ref()
        .context("target has no MySQL connection parameters")?;
    let database = if spec.database.is_empty() {
        default_database_name(&manifest.database, &rec.backup_id)
    } else {
        spec.database.clone()
    };
    validate_database(&database)?;
    if my::SYSTEM_DATABASES.contains(&database.to_ascii_lowercase().as_str()) {
        bail!("refusing to restore over the system database {database}; pick another --database");
    }

    ctx.set_phase("connecting");
    let password = target.password()?;
    let mut admin = my::connect(params, password.as_ref(), None).await?;
    init_mysql_session(&mut admin, target.profile).await?;
    let facts = my::server_facts(&mut admin, &target.database).await?;
    let (flavor, version) = my::backup_origin(&manifest.server, source_provider.as_str())
        .with_context(|| {
            format!(
                "cannot read the server version {:?} from the backup's manifest",
                manifest.server.version
            )
        })?;
    for w in my::check_restore_source(flavor, version, &facts)? {
        tracing::warn!("{w}");
    }
    let client_path = my::find_client_tool(target.mysql_bin_dir.as_deref(), facts.flavor)?;
    let client = ClientTool::probe(&client_path).await?;
    for w in my::check_client(&client, &facts)? {
        tracing::warn!("{w}");
    }

    let exists = my::database_exists(&mut admin, &database).await?;
    let empty = if exists {
        my::database_is_empty(&mut admin, &database).await?
    } else {
        true
    };
    if exists && !spec.clean && (target.profile.can_create_databases() || !empty) {
        // Any existing database is only replaced on an explicit --clean (admin role); on
        // PlanetScale an existing empty database is the destination itself.
        bail!(
            "database {database} already exists{}; restore into a new database with --database NAME, or replace it with --clean (admin role)",
            if empty { "" } else { " and is not empty" }
        );
    }
    if exists && spec.clean {
        let open = my::connection_count(&mut admin, &database).await?;
        if open > 0 {
            bail!(
                "database {database} has {open} open connection(s); stop the applications using it and run the restore again"
            );
        }
    }
    let load = Load {
        ctx,
        params,
        password: password.as_ref(),
        loc,
        client: &client,
        manifest,
        profile: target.profile,
    };

    if !target.profile.can_create_databases() {
        // No CREATE DATABASE: load into the (emptied) destination itself.
        if !exists {
            bail!(
                "database {database} does not exist and {} databases cannot be created by the agent; create it with the provider's tools first",
                target.profile
            );
        }
        if spec.clean && !empty {
            my::swap::empty_database(&mut admin, &database).await?;
        }
        let counts = load.load_into(&database).await?;
        let _ = sqlx::Connection::close(admin).await;
        return Ok(result(database, counts, loc));
    }

    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    my::create_database(
        &mut admin,
        &scratch,
        &manifest.server.encoding,
        &manifest.server.collate,
    )
    .await?;
    let counts = match load.load_into(&scratch).await {
        Ok(c) => c,
        Err(e) => {
            drop_quietly(&mut admin, &scratch).await;
            return Err(e);
        }
    };

    ctx.set_phase("swapping");
    let old = scratch_name("lifeboat_old", &ctx.job_id);
    let swapped = my::swap::swap_in(
        &mut admin,
        &SwapPlan {
            scratch: &scratch,
            dest: &database,
            old: exists.then_some(old.as_str()),
            character_set: &manifest.server.encoding,
            collation: &manifest.server.collate,
        },
    )
    .await;
    if let Err(e) = swapped {
        // The scratch copy holds only restored data (the backup still has it); the replaced
        // database's tables, if any were moved, stay where the error says.
        drop_quietly(&mut admin, &scratch).await;
        return Err(e);
    }
    drop_quietly(&mut admin, &scratch).await;
    if exists {
        drop_quietly(&mut admin, &old).await;
    }
    let _ = sqlx::Connection::close(admin).await;
    Ok(result(database, counts, loc))
}

fn result(database: String, counts: Vec<TableRows>, loc: &Located) -> pb::RestoreResult {
    pb::RestoreResult {
        database,
        row_counts: counts
            .into_iter()
            .map(|r| pb::RowCount {
                schema: r.schema,
                table: r.table,
                rows: r.rows,
            })
            .collect(),
        raw_bytes: loc.expected.raw.size,
    }
}

async fn drop_quietly(admin: &mut MySqlConnection, name: &str) {
    if let Err(e) = my::drop_database(admin, name).await {
        tracing::warn!("failed to drop database {name}: {e:#}; drop it by hand");
    }
}

/// Streaming a backup into one database with the SQL client.
struct Load<'a> {
    ctx: &'a JobCtx,
    params: &'a ConnParams,
    password: Option<&'a Secret<String>>,
    loc: &'a Located,
    client: &'a ClientTool,
    manifest: &'a Manifest,
    profile: Provider,
}

impl Load<'_> {
    /// Loads the dump into `database`, then counts its rows and compares them with the
    /// manifest's when those were counted from the dump itself.
    async fn load_into(&self, database: &str) -> Result<Vec<TableRows>> {
        let ctx = self.ctx;
        let loc = self.loc;
        let state_dir = &ctx.config.state_dir;
        let file = open_data(loc).await?.with_context(|| {
            format!(
                "data file {} is missing from {}",
                loc.data_key,
                loc.repo.describe()
            )
        })?;
        let defaults =
            DefaultsFile::create(state_dir, self.params, self.password, self.client.flavor)?;
        ctx.set_phase("restoring");
        let mut child = my::restore_command(self.client, &defaults, state_dir, database)
            .spawn()
            .with_context(|| format!("start {}", self.client.path.display()))?;
        let name = self.client.name.clone();
        let stderr = stderr_tail(child.stderr.take().context("client stderr")?);
        let stdin = stdin_file(child.stdin.take().context("client stdin")?)?;
        let expected = loc.expected.clone();
        let counters = ctx.counters.clone();
        let cancel = ctx.cancel.clone();
        let filter = self.client.needs_sandbox_filter();
        let mut pipeline = tokio::task::spawn_blocking(move || {
            let out = BufWriter::with_capacity(256 * 1024, stdin);
            // Dropping the returned writer closes the client's stdin.
            if filter {
                pipeline::decompress(
                    file,
                    SandboxLineFilter::new(out),
                    my::MAGIC,
                    &expected,
                    &counters,
                    &cancel,
                )
                .and_then(|w| w.into_inner().map_err(PipelineError::Output))
                .map(drop)
            } else {
                pipeline::decompress(file, out, my::MAGIC, &expected, &counters, &cancel).map(drop)
            }
        });
        let result = tokio::select! {
            r = &mut pipeline => r,
            () = ctx.cancel.cancelled() => {
                let _ = child.start_kill();
                (&mut pipeline).await
            }
        }
        .context("pipeline task panicked")?;
        if result.is_err() {
            // Never let the client commit the rest of a stream we have rejected.
            let _ = child.start_kill();
        }
        let status = child.wait().await.context("wait for the SQL client")?;
        let stderr = stderr.await.unwrap_or_default();
        drop(defaults);
        if ctx.cancel.is_cancelled() {
            bail!("cancelled");
        }
        match result {
            Err(PipelineError::Output(_)) | Ok(()) if !status.success() => bail!(
                "{name} failed ({}): {}",
                describe_status(&status),
                if stderr.is_empty() {
                    "no error output"
                } else {
                    &stderr
                }
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("restore backup from {}", loc.data_key));
            }
            Ok(()) => {}
        }

        ctx.set_phase("counting");
        let kind = RowCountKind::parse(&self.manifest.row_counts_kind).unwrap_or(RowCountKind::Off);
        let mut conn = my::connect(self.params, self.password, Some(database)).await?;
        init_mysql_session(&mut conn, self.profile).await?;
        my::begin_consistent_snapshot(&mut conn).await?;
        let counts = my::row_counts(&mut conn, database, true).await?;
        let _ = sqlx::Connection::close(conn).await;
        if kind.restore_must_match() {
            compare_counts(&self.manifest.row_counts, &counts)?;
        }
        Ok(counts)
    }
}
