//! Restoring a PostgreSQL backup: the archive streams from the repository through the hash
//! checks into `pg_restore`, always into a fresh scratch database; only when the stream
//! matched both recorded hashes, pg_restore succeeded and the row counts agree with the
//! manifest is the scratch database renamed to its final name. A corrupt archive, a failed or
//! cancelled restore therefore never leaves a half-restored database under the name the
//! operator asked for.
//!
//! Before any of that, [`plan`] checks the destination: server version, pg_restore, the
//! database name, privileges, the roles that own the backup's objects (when owners are kept),
//! the extensions it needs, and which of the source provider's schemas are left out.

use std::{io::BufWriter, path::PathBuf, process::Stdio};

use anyhow::{Context, Result, bail};
use lifeboat_common::secret::Secret;
use lifeboat_proto::domain::OwnerPolicy;
use sqlx::postgres::PgConnection;

use super::{
    Prepared, compare_counts, destination_name, human_bytes, load_verdict, open_data, scratch_name,
};
use crate::{
    engine::postgres as pg,
    job::JobCtx,
    manifest::TableRows,
    pipeline,
    process::{join_with_child, stderr_tail, stdin_file},
    provider::{self, RestoreOptions},
    swap_journal::{Journal, Step, test_pause},
    work::RestoreWork,
};

mod partial;
mod partial_toc;
mod preflight;
mod side_schema;
mod toc;

use super::spool;
use preflight::{destination, locale, owners, privileges, schemas_and_extensions};
use toc::{filter_toc_listing, read_toc, write_private};

/// What the restore will do, decided by [`plan`].
pub(super) struct Plan {
    admin: PgConnection,
    pg_restore: PathBuf,
    database: String,
    exists: bool,
    /// pg_restore options from the provider pair and the owner policy.
    restore_args: Vec<String>,
    /// The source provider's schemas left out, and the extensions installed in them.
    skip_schemas: Vec<String>,
    skip_extensions: Vec<String>,
    /// Whether the skipped schemas and extensions can be taken out of the archive's table of
    /// contents (the manifest lists the extensions' schemas); otherwise the empty schemas are
    /// dropped after the restore.
    filter_toc: bool,
    /// The archive's table of contents without them, for `pg_restore --use-list`.
    toc: Option<String>,
    /// A partial restore: the chosen tables, and where they go.
    partial: Option<partial::PartialPlan>,
    /// pg_restore jobs; above 1 the archive is spooled to the scratch directory first.
    jobs: u32,
}

/// PostgreSQL's side of a restore, for [`super::restore`].
pub(super) struct PgRestore {
    password: Option<Secret<String>>,
}

impl PgRestore {
    pub(super) fn new(target: &crate::config::TargetConfig) -> Result<Self> {
        Ok(Self {
            password: target.password()?,
        })
    }
}

impl super::Restore for PgRestore {
    type Plan = Plan;

    async fn plan(
        &self,
        ctx: &JobCtx,
        spec: &RestoreWork,
        p: &Prepared<'_>,
    ) -> Result<Option<Plan>> {
        plan(ctx, spec, p, self.password.as_ref()).await
    }

    fn describe(&self, ctx: &JobCtx, _spec: &RestoreWork, p: &Prepared<'_>, plan: &Plan) {
        describe(ctx, p, plan);
    }

    fn database(plan: &Plan) -> &str {
        &plan.database
    }

    async fn close(plan: Plan) {
        let _ = sqlx::Connection::close(plan.admin).await;
    }

    async fn create_scratch(&self, plan: &mut Plan, p: &Prepared<'_>, scratch: &str) -> Result<()> {
        pg::create_database(&mut plan.admin, scratch, &p.manifest.server).await
    }

    async fn load(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Plan,
        into: &str,
    ) -> Result<Vec<TableRows>> {
        restore_into(ctx, p, plan, self.password.as_ref(), into).await
    }

    async fn drop_scratch(&self, plan: &mut Plan, scratch: &str) {
        if let Err(e) = pg::drop_database(&mut plan.admin, scratch).await {
            tracing::warn!("failed to drop scratch database {scratch}: {e:#}");
        }
    }

    async fn swap_in(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Plan,
        scratch: &str,
        journal: &mut Journal,
    ) -> Result<()> {
        if let Some(side) = plan.partial.as_ref().and_then(|x| x.into_schema.clone()) {
            // The live database is never renamed: the tables are copied into the new schema.
            // The journal stays at its loading step, so a crash only drops the scratch copy.
            let copied =
                partial::into_side_schema(ctx, p, plan, self.password.as_ref(), scratch, &side)
                    .await;
            self.drop_scratch(plan, scratch).await;
            return copied;
        }
        let database = plan.database.clone();
        let swapped = swap_in(&mut plan.admin, scratch, &database, plan.exists, journal).await;
        if swapped.is_err()
            && pg::database_exists(&mut plan.admin, &database)
                .await
                .unwrap_or(false)
        {
            // The original is back under its name: the restored copy goes.
            let _ = pg::drop_database(&mut plan.admin, scratch).await;
        }
        swapped
    }
}

/// Checks the destination and decides the restore; findings go to the job's report. `None`
/// when the destination cannot be checked further (no connection, an invalid name).
async fn plan(
    ctx: &JobCtx,
    spec: &RestoreWork,
    p: &Prepared<'_>,
    password: Option<&Secret<String>>,
) -> Result<Option<Plan>> {
    let report = &ctx.report;
    let (target, manifest) = (p.target, &p.manifest);
    let into_schema = spec.partial.as_ref().and_then(|x| x.into_schema.as_deref());
    let database = match into_schema {
        // Into a new schema of the target's own database.
        Some(_) => target.database.clone(),
        None => match destination_name(ctx, spec, p) {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    if database == target.maintenance_database {
        report.error(
            "destination",
            format!(
                "refusing to restore over the maintenance database {database}; pick another --database"
            ),
        );
        return Ok(None);
    }

    ctx.set_phase("connecting");
    let Some(mut admin) = report.check(
        "connection",
        pg::connect(target, password, &target.maintenance_database).await,
    ) else {
        return Ok(None);
    };
    let Some(facts) = report.check("server", pg::server_facts(&mut admin).await) else {
        return Ok(None);
    };
    let backup_major = manifest.server.version_num / 10000;
    if backup_major > facts.major {
        report.error(
            "version",
            format!(
                "backup {} comes from PostgreSQL {} and cannot be restored into the older PostgreSQL {} at {}",
                p.rec.backup_id,
                manifest.server.version,
                facts.version,
                pg::describe(target, &database)
            ),
        );
    } else {
        report.ok(
            "version",
            format!(
                "PostgreSQL {} backup into PostgreSQL {} at {}",
                manifest.server.version,
                facts.version,
                pg::describe(target, &target.maintenance_database)
            ),
        );
    }

    // pg_restore must read the archive (as new as the pg_dump that wrote it) and speak to the
    // server: the oldest installed tools that are as new as both.
    let dump_major =
        pg::parse_tool_version(&format!("x (x) {}", manifest.tool.version)).map_or(0, |v| v.1);
    let pg_restore = pg::tool(target, "pg_restore", dump_major.max(facts.major));
    match pg::tool_version(&pg_restore).await {
        Ok((tool_version, tool_major)) => {
            if tool_major < dump_major.max(facts.major) {
                report.error(
                    "restore_tool",
                    format!(
                        "pg_restore {tool_version} is older than the archive (pg_dump {}) or the server (PostgreSQL {}); install newer client tools or set pg_bin_dir",
                        manifest.tool.version, facts.version
                    ),
                );
            } else {
                report.ok(
                    "restore_tool",
                    format!("pg_restore {tool_version} ({})", pg_restore.display()),
                );
            }
        }
        Err(e) => report.error("restore_tool", format!("{e:#}")),
    }

    let exists = match into_schema {
        Some(side) => {
            partial::side_schema_free(ctx, target, password, &database, side).await;
            false
        }
        None => destination(ctx, spec, target, password, &mut admin, &database).await?,
    };
    privileges(ctx, &mut admin).await;
    locale(ctx, &mut admin, &manifest.server).await;

    let keep_owners = match spec.owners {
        OwnerPolicy::Keep => true,
        OwnerPolicy::Drop => false,
        OwnerPolicy::Auto => p.source == target.profile,
    };
    let opts = RestoreOptions {
        include_managed_schemas: spec.include_provider_schemas,
        keep_owners_and_privileges: keep_owners,
    };
    if keep_owners {
        owners(ctx, &mut admin, p).await;
    } else {
        report.info(
            "owners",
            format!(
                "owners and privileges are not restored{}: the restoring user {} owns everything",
                if p.source == target.profile {
                    " (--owners drop)"
                } else {
                    " (restores across providers drop them; --owners keep to keep them)"
                },
                target.url.username()
            ),
        );
    }
    let skip_schemas: Vec<String> = provider::skipped_schemas(p.source, target.profile, &opts)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let (skip_extensions, filter_toc) =
        schemas_and_extensions(ctx, &mut admin, p, &skip_schemas).await;
    // Read here, not after the scratch database exists: an archive whose contents cannot be
    // listed is found by the dry run too.
    let partial = match &spec.partial {
        Some(want) => partial::plan(ctx, p, want, &pg_restore).await,
        None => None,
    };
    let toc = if let Some(pp) = &partial {
        Some(pp.listing.clone())
    } else if filter_toc && !skip_schemas.is_empty() {
        ctx.set_phase("reading the archive's contents");
        match read_toc(ctx, p, &pg_restore, false).await {
            Ok(listing) => {
                let (kept, removed) = filter_toc_listing(&listing, &skip_schemas, &skip_extensions);
                report.ok(
                    "contents",
                    format!(
                        "the archive lists {} entries; {removed} that create the left-out schemas and extensions are left out",
                        listing.lines().filter(|l| !l.starts_with(';')).count()
                    ),
                );
                Some(kept)
            }
            Err(e) => {
                report.error("contents", format!("{e:#}"));
                None
            }
        }
    } else {
        None
    };
    let jobs = spec.jobs.unwrap_or(target.restore_jobs).max(1);
    if jobs > 1 {
        let scratch = &ctx.config.scratch_dir;
        match spool::check_room(scratch, p.loc.expected.raw.size) {
            Ok(()) => report.ok(
                "parallel",
                format!(
                    "pg_restore --jobs={jobs}: the {} archive is spooled to {} first (room checked) and removed after",
                    human_bytes(p.loc.expected.raw.size),
                    scratch.display()
                ),
            ),
            Err(e) => report.error("parallel", format!("{e:#}")),
        }
    }
    Ok(Some(Plan {
        admin,
        pg_restore,
        database,
        exists,
        restore_args: provider::restore_args(p.source, target.profile, &opts),
        skip_schemas,
        skip_extensions,
        filter_toc,
        toc,
        partial,
        jobs,
    }))
}

/// The dry run's plan.
fn describe(ctx: &JobCtx, p: &Prepared<'_>, plan: &Plan) {
    let r = &ctx.report;
    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    r.step(format!(
        "create the scratch database {scratch} (encoding {}, locale {})",
        p.manifest.server.encoding, p.manifest.server.collate
    ));
    let mut args = vec!["--exit-on-error".to_owned()];
    args.extend(plan.restore_args.iter().cloned());
    let what = format!(
        "{} ({} stored, {} of dump) from {}, checking its size and both SHA-256 hashes",
        p.loc.data_key,
        human_bytes(p.loc.expected.stored.size),
        human_bytes(p.loc.expected.raw.size),
        p.loc.repo.describe(),
    );
    if plan.jobs > 1 {
        let spooled = spool::dir_for(&ctx.config.scratch_dir, &ctx.job_id);
        r.step(format!("decompress {what}, into {}", spooled.display()));
        r.step(format!(
            "run pg_restore --jobs={} {} on it, then remove it",
            plan.jobs,
            args.join(" ")
        ));
    } else {
        r.step(format!("stream {what}, into pg_restore {}", args.join(" ")));
    }
    if !plan.skip_schemas.is_empty() {
        r.step(if plan.filter_toc {
            format!(
                "leave out the schemas {} and the extensions installed in them{}",
                plan.skip_schemas.join(", "),
                if plan.skip_extensions.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", plan.skip_extensions.join(", "))
                }
            )
        } else {
            format!(
                "leave out the objects of the schemas {}, then drop those schemas if empty",
                plan.skip_schemas.join(", ")
            )
        });
    }
    if let Some(pp) = &plan.partial {
        partial::describe(ctx, p, plan, pp, &scratch);
        return;
    }
    r.step(if p.manifest.row_counts_kind == "exact" {
        format!(
            "count the rows of every table and compare them with the manifest's exact counts ({} tables)",
            expected_counts(p, plan).len()
        )
    } else {
        format!(
            "count the rows of every table (the manifest's counts are {}: not compared)",
            p.manifest.row_counts_kind
        )
    });
    r.step(if plan.exists {
        let old = scratch_name("lifeboat_old", &ctx.job_id);
        format!(
            "rename {db} to {old}, {scratch} to {db}, then drop {old} (needs no open connections to {db})",
            db = plan.database
        )
    } else {
        format!("rename {scratch} to {}", plan.database)
    });
    r.step(format!(
        "on any failure: drop {scratch}; {} is left as it was",
        plan.database
    ));
}

/// The manifest's row counts the restore must reproduce: the left-out schemas' tables are
/// not expected back.
fn expected_counts(p: &Prepared<'_>, plan: &Plan) -> Vec<TableRows> {
    if let Some(pp) = &plan.partial {
        return pp.tables.clone();
    }
    p.manifest
        .row_counts
        .iter()
        .filter(|r| !plan.skip_schemas.contains(&r.schema))
        .cloned()
        .collect()
}

/// Streams the archive into pg_restore against `scratch`, then counts rows there and compares
/// them with the manifest.
async fn restore_into(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    plan: &Plan,
    password: Option<&Secret<String>>,
    scratch: &str,
) -> Result<Vec<TableRows>> {
    let (target, loc) = (p.target, &p.loc);
    let list_file = match &plan.toc {
        Some(kept) => Some(write_private(&ctx.config.state_dir, kept.as_bytes())?),
        None => None,
    };
    // In parallel, pg_restore starts only once the whole archive checked out on disk.
    let spooled = if plan.jobs > 1 {
        let spooled = spool::write(ctx, loc).await?;
        test_pause("restore-spooled").await;
        Some(spooled)
    } else {
        None
    };
    let file = match &spooled {
        Some(_) => None,
        None => Some(open_data(loc).await?.with_context(|| {
            format!(
                "data file {} is missing from {}",
                loc.data_key,
                loc.repo.describe()
            )
        })?),
    };

    let passfile = password
        .map(|pw| pg::PassFile::create(&ctx.config.state_dir, pw))
        .transpose()?;
    ctx.set_phase("restoring");
    let mut cmd = pg::child_command(&plan.pg_restore, passfile.as_ref());
    cmd.arg("--no-password")
        .arg("--exit-on-error")
        .args(&plan.restore_args);
    if let Some(list) = &list_file {
        cmd.arg("--use-list").arg(list.as_os_str());
    }
    cmd.arg("--dbname")
        .arg(pg::url_for(target, scratch).as_str())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match &spooled {
        Some(sp) => {
            cmd.arg(format!("--jobs={}", plan.jobs))
                .arg(sp.file.as_os_str())
                .stdin(Stdio::null());
        }
        None => {
            cmd.stdin(Stdio::piped());
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", plan.pg_restore.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_restore stderr")?);
    let (result, status) = match file {
        Some(file) => {
            let stdin = stdin_file(child.stdin.take().context("pg_restore stdin")?)?;
            let expected = loc.expected.clone();
            let counters = ctx.counters.clone();
            let cancel = ctx.cancel.clone();
            let pipeline = tokio::task::spawn_blocking(move || {
                let out = BufWriter::with_capacity(256 * 1024, stdin);
                // Dropping the returned writer closes pg_restore's stdin.
                pipeline::decompress(file, out, pg::PGDMP_MAGIC, &expected, &counters, &cancel)
                    .map(drop)
            });
            // A rejected stream is never committed: pg_restore is killed first.
            join_with_child(&mut child, pipeline, &ctx.cancel, "pg_restore").await?
        }
        // The archive was checked while it was spooled.
        None => tokio::select! {
            s = child.wait() => (Ok(()), s.context("wait for pg_restore")?),
            () = ctx.cancel.cancelled() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!("cancelled");
            }
        },
    };
    let stderr = stderr.await.unwrap_or_default();
    drop(passfile);
    drop(list_file);
    drop(spooled);
    if ctx.cancel.is_cancelled() {
        bail!("cancelled");
    }
    load_verdict("pg_restore", result, &status, &stderr, &loc.data_key)?;

    ctx.set_phase("counting");
    let mut conn = pg::connect(target, password, scratch).await?;
    if !plan.filter_toc {
        // pg_restore's --exclude-schema leaves the objects out but still creates the schemas
        // themselves: drop them while they are empty (RESTRICT keeps anything else that landed).
        for schema in &plan.skip_schemas {
            let sql = format!("DROP SCHEMA IF EXISTS {} RESTRICT", pg::quote_ident(schema));
            // The identifier is quoted with quote_ident.
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
            {
                tracing::warn!("left the skipped schema {schema} in place: {e}");
            }
        }
    }
    let counts = pg::row_counts(&mut conn, true).await?;
    let _ = sqlx::Connection::close(conn).await;
    if p.manifest.row_counts_kind == "exact" {
        compare_counts(&expected_counts(p, plan), &counts)?;
    }
    Ok(counts)
}

/// Renames the scratch database into place; an existing database is renamed away first and
/// dropped after, and put back if the second rename fails. Each rename is journaled first: a
/// crash before the original is renamed away is rolled back at the next start, a crash after
/// it is rolled forward (see [`crate::swap_journal`]).
async fn swap_in(
    admin: &mut PgConnection,
    scratch: &str,
    database: &str,
    exists: bool,
    journal: &mut Journal,
) -> Result<()> {
    if !exists {
        journal.step(Step::Swapping, None).await?;
        test_pause("pg-swap-begin").await;
        pg::rename_database(admin, scratch, database).await?;
        test_pause("restore-finishing").await;
        return Ok(());
    }
    let open = pg::connection_count(admin, database).await?;
    if open > 0 {
        bail!(
            "database {database} has {open} open connection(s); stop the applications using it and run the restore again (the restored copy was discarded)"
        );
    }
    let old = scratch_name("lifeboat_old", &journal.entry().job_id);
    journal.step(Step::Swapping, Some(&old)).await?;
    test_pause("pg-swap-begin").await;
    pg::rename_database(admin, database, &old).await?;
    test_pause("pg-after-rename-old").await;
    if let Err(e) = pg::rename_database(admin, scratch, database).await {
        if let Err(back) = pg::rename_database(admin, &old, database).await {
            bail!(
                "{e:#}; renaming the original back failed too ({back:#}): the original database is now named {old} and the restored copy {scratch}; rename them by hand"
            );
        }
        return Err(e);
    }
    if let Err(e) = journal.step(Step::Finishing, Some(&old)).await {
        tracing::warn!("failed to {e:#}");
    }
    test_pause("restore-finishing").await;
    if let Err(e) = pg::drop_database(admin, &old).await {
        tracing::warn!(
            "restored {database}, but could not drop the replaced copy {old}: {e:#}; drop it by hand"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
