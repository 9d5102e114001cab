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

use std::{
    collections::{BTreeSet, HashSet},
    io::BufWriter,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, Result, bail};
use lifeboat_common::{names::validate_database, secret::Secret};
use lifeboat_proto as pb;
use sqlx::postgres::PgConnection;
use tokio::io::AsyncReadExt;

use super::{
    Prepared, compare_counts, default_database_name, human_bytes, load_verdict, open_data,
    scratch_name,
};
use crate::{
    config::TargetConfig,
    engine::postgres::{self as pg, objects},
    job::JobCtx,
    manifest::TableRows,
    pipeline::{self, Counters, PipelineError},
    process::{describe_status, join_with_child, stderr_tail, stdin_file, stdout_file},
    provider::{self, Provider, RestoreOptions},
};

/// What the restore will do, decided by [`plan`].
struct Plan {
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
}

pub(super) async fn run(
    ctx: &JobCtx,
    spec: &pb::RestoreSpec,
    p: &Prepared<'_>,
) -> Result<pb::RestoreResult> {
    let password = p.target.password()?;
    let plan = plan(ctx, spec, p, password.as_ref()).await?;
    ctx.report.bail_on_errors("restore refused")?;
    let plan = plan.context("restore could not be planned")?;
    execute(ctx, p, plan, password.as_ref()).await
}

/// The dry run: the checks and the steps, nothing written.
pub(super) async fn plan_only(
    ctx: &JobCtx,
    spec: &pb::RestoreSpec,
    p: &Prepared<'_>,
) -> Result<()> {
    let Some(password) = ctx.report.check("connection", p.target.password()) else {
        return Ok(());
    };
    if let Some(plan) = plan(ctx, spec, p, password.as_ref()).await? {
        describe(ctx, p, &plan);
        let _ = sqlx::Connection::close(plan.admin).await;
    }
    Ok(())
}

/// Checks the destination and decides the restore; findings go to the job's report. `None`
/// when the destination cannot be checked further (no connection, an invalid name).
async fn plan(
    ctx: &JobCtx,
    spec: &pb::RestoreSpec,
    p: &Prepared<'_>,
    password: Option<&Secret<String>>,
) -> Result<Option<Plan>> {
    let report = &ctx.report;
    let (target, manifest) = (p.target, &p.manifest);
    let database = if spec.database.is_empty() {
        default_database_name(&manifest.database, &p.rec.backup_id)
    } else {
        spec.database.clone()
    };
    if report
        .check(
            "destination",
            validate_database(&database).map_err(Into::into),
        )
        .is_none()
    {
        return Ok(None);
    }
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

    let exists = destination(ctx, spec, target, password, &mut admin, &database).await?;
    privileges(ctx, &mut admin).await;
    locale(ctx, &mut admin, &manifest.server).await;

    let keep_owners = match pb::OwnerPolicy::try_from(spec.owners) {
        Ok(pb::OwnerPolicy::Keep) => true,
        Ok(pb::OwnerPolicy::Drop) => false,
        Ok(pb::OwnerPolicy::Auto) | Err(_) => p.source == target.profile,
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
    let toc = if filter_toc && !skip_schemas.is_empty() {
        ctx.set_phase("reading the archive's contents");
        match read_toc(ctx, p, &pg_restore).await {
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
    }))
}

/// Whether the destination exists, and whether it may be replaced.
async fn destination(
    ctx: &JobCtx,
    spec: &pb::RestoreSpec,
    target: &TargetConfig,
    password: Option<&Secret<String>>,
    admin: &mut PgConnection,
    database: &str,
) -> Result<bool> {
    let report = &ctx.report;
    let exists = pg::database_exists(admin, database).await?;
    if pg::is_template(admin, database).await? {
        report.error(
            "destination",
            format!("{database} is a template database; lifeboat never restores over one"),
        );
    } else if exists && !spec.clean {
        // Any existing database, even an empty-looking one, is only replaced on an explicit
        // --clean (which the coordinator allows only to admins).
        let empty = match pg::connect(target, password, database).await {
            Ok(mut existing) => {
                let empty = pg::database_is_empty(&mut existing).await.unwrap_or(false);
                let _ = sqlx::Connection::close(existing).await;
                empty
            }
            Err(_) => false,
        };
        report.error(
            "destination",
            format!(
                "database {database} already exists{}; restore into a new database with --database NAME, or replace it with --clean (admin role)",
                if empty { "" } else { " and is not empty" }
            ),
        );
    } else if exists {
        let open = pg::connection_count(admin, database).await?;
        report.info(
            "destination",
            format!("database {database} exists and is replaced (--clean)"),
        );
        if open > 0 {
            report.warn(
                "destination",
                format!(
                    "database {database} has {open} open connection(s) now; the swap at the end fails unless they are closed by then"
                ),
            );
        }
    } else {
        report.ok(
            "destination",
            format!("database {database} does not exist yet and is created"),
        );
    }
    Ok(exists)
}

/// The restoring user must be able to create the scratch database.
async fn privileges(ctx: &JobCtx, admin: &mut PgConnection) {
    match pg::can_create_databases(admin).await {
        Ok((user, true)) => ctx
            .report
            .ok("privileges", format!("{user} may create databases")),
        Ok((user, false)) => ctx.report.error(
            "privileges",
            format!(
                "{user} may not create databases, and a restore goes into a new scratch database first; ALTER ROLE {user} CREATEDB"
            ),
        ),
        Err(e) => ctx
            .report
            .warn("privileges", format!("cannot read this user's privileges: {e}")),
    }
}

/// The scratch database is created with the backup's locale: warn if the server may lack it.
async fn locale(ctx: &JobCtx, admin: &mut PgConnection, like: &crate::manifest::ServerInfo) {
    let collate = like.collate.as_str();
    if collate.is_empty() || matches!(collate, "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
        return;
    }
    let known: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_collation WHERE collcollate = $1 \
         UNION ALL SELECT count(*) FROM pg_database WHERE datcollate = $1",
    )
    .bind(collate)
    .fetch_all(&mut *admin)
    .await
    .map(|v: Vec<i64>| v.iter().sum());
    if known.is_ok_and(|n| n == 0) {
        ctx.report.warn(
            "locale",
            format!(
                "the backup's databases use the locale {collate}, which this server shows no sign of; creating the scratch database fails if the operating system lacks it"
            ),
        );
    }
}

/// With owners kept, every role that owns an object of the backup (or is granted one) must
/// exist on the destination.
async fn owners(ctx: &JobCtx, admin: &mut PgConnection, p: &Prepared<'_>) {
    let report = &ctx.report;
    let Some(objs) = &p.manifest.objects else {
        report.warn(
            "owners",
            "owners and privileges are restored, but this backup does not list its roles (it was written by an older lifeboat): a role missing on the destination fails the restore; --owners drop restores without them",
        );
        return;
    };
    match objects::roles(admin).await {
        Ok(have) => {
            let missing = objects::missing(&objs.roles, &have);
            if missing.is_empty() {
                match objects::not_member_of(admin, &objs.roles).await {
                    Ok(cannot) if cannot.is_empty() => report.ok(
                        "owners",
                        format!(
                            "owners and privileges are restored; the {} role(s) they name exist",
                            objs.roles.len()
                        ),
                    ),
                    Ok(cannot) => report.error(
                        "owners",
                        format!(
                            "the restoring user {} may not give objects to role(s) {} (ALTER … OWNER needs superuser or membership in the role); restore as a superuser, GRANT those roles to {}, or restore with --owners drop",
                            p.target.url.username(),
                            cannot.join(", "),
                            p.target.url.username()
                        ),
                    ),
                    Err(e) => report.warn("owners", format!("{e:#}")),
                }
            } else {
                report.error(
                    "owners",
                    format!(
                        "role(s) {} own objects in the backup or hold privileges on them but do not exist on the destination server; create them first, or restore with --owners drop",
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => report.warn("owners", format!("cannot list the server's roles: {e:#}")),
    }
}

/// Reports the schemas left out and checks the extensions the restore creates; returns the
/// extensions installed in left-out schemas, and whether the archive's table of contents can
/// be filtered.
async fn schemas_and_extensions(
    ctx: &JobCtx,
    admin: &mut PgConnection,
    p: &Prepared<'_>,
    skip: &[String],
) -> (Vec<String>, bool) {
    let report = &ctx.report;
    let Some(objs) = &p.manifest.objects else {
        if !skip.is_empty() {
            report.info(
                "schemas",
                format!(
                    "the {} provider's own schemas are left out (if the backup has them): {}",
                    p.source,
                    skip.join(", ")
                ),
            );
        }
        report.info(
            "extensions",
            "this backup does not list its extensions (written by an older lifeboat); one the destination lacks fails the restore",
        );
        return (Vec::new(), false);
    };
    let skipped: BTreeSet<&str> = skip.iter().map(String::as_str).collect();
    let present: Vec<&str> = objs
        .schemas
        .iter()
        .map(String::as_str)
        .filter(|s| skipped.contains(s))
        .collect();
    if !present.is_empty() {
        report.info(
            "schemas",
            format!(
                "left out: {} ({}'s own; --include-provider-schemas restores them)",
                present.join(", "),
                p.source
            ),
        );
    }
    let reserved: HashSet<&str> = reserved_schemas(p.target.profile).iter().copied().collect();
    let clash: Vec<&str> = objs
        .schemas
        .iter()
        .map(String::as_str)
        .filter(|s| reserved.contains(s) && !skipped.contains(s) && p.source != p.target.profile)
        .collect();
    if !clash.is_empty() {
        report.warn(
            "schemas",
            format!(
                "schema(s) {} have the names of {}'s own schemas; they are restored into the new database, not into {}'s",
                clash.join(", "),
                p.target.profile,
                p.target.profile
            ),
        );
    }
    let (left_out, wanted): (Vec<_>, Vec<_>) = objs
        .extensions
        .iter()
        .partition(|e| skipped.contains(e.schema.as_str()));
    let left_out: Vec<String> = left_out.iter().map(|e| e.name.clone()).collect();
    if !left_out.is_empty() {
        report.info(
            "extensions",
            format!("left out with their schemas: {}", left_out.join(", ")),
        );
    }
    match objects::available_extensions(admin).await {
        Ok(available) => {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|e| !available.contains_key(&e.name))
                .map(|e| format!("{} (schema {})", e.name, e.schema))
                .collect();
            if missing.is_empty() {
                if !wanted.is_empty() {
                    report.ok(
                        "extensions",
                        format!(
                            "available on the destination: {}",
                            wanted
                                .iter()
                                .map(|e| e.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            } else {
                report.error(
                    "extensions",
                    format!(
                        "the backup needs extension(s) {} that the destination server does not have; install them there first",
                        missing.join(", ")
                    ),
                );
            }
        }
        Err(e) => report.warn("extensions", format!("{e:#}")),
    }
    (left_out, true)
}

/// Schemas a provider keeps for its own services.
fn reserved_schemas(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::Supabase => &provider::SUPABASE_MANAGED_SCHEMAS,
        _ => &[],
    }
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
    r.step(format!(
        "stream {} ({} stored, {} of dump) from {}, checking its size and both SHA-256 hashes, into pg_restore {}",
        p.loc.data_key,
        human_bytes(p.loc.expected.stored.size),
        human_bytes(p.loc.expected.raw.size),
        p.loc.repo.describe(),
        args.join(" ")
    ));
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
    p.manifest
        .row_counts
        .iter()
        .filter(|r| !plan.skip_schemas.contains(&r.schema))
        .cloned()
        .collect()
}

async fn execute(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    mut plan: Plan,
    password: Option<&Secret<String>>,
) -> Result<pb::RestoreResult> {
    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    pg::create_database(&mut plan.admin, &scratch, &p.manifest.server).await?;
    let counts = match restore_into(ctx, p, &plan, password, &scratch).await {
        Ok(c) => c,
        Err(e) => {
            if let Err(drop_err) = pg::drop_database(&mut plan.admin, &scratch).await {
                tracing::warn!("failed to drop scratch database {scratch}: {drop_err:#}");
            }
            return Err(e);
        }
    };

    ctx.set_phase("swapping");
    let database = plan.database.clone();
    if let Err(e) = swap_in(
        &mut plan.admin,
        &scratch,
        &database,
        plan.exists,
        &ctx.job_id,
    )
    .await
    {
        // Keep the restored copy when the original could not be put back under its name.
        if pg::database_exists(&mut plan.admin, &database)
            .await
            .unwrap_or(false)
        {
            let _ = pg::drop_database(&mut plan.admin, &scratch).await;
        }
        return Err(e);
    }
    let _ = sqlx::Connection::close(plan.admin).await;
    let rows: i64 = counts.iter().map(|c| c.rows).sum();
    ctx.report.ok(
        "restored",
        format!(
            "{database}: {} tables, {rows} rows{}",
            counts.len(),
            if p.manifest.row_counts_kind == "exact" {
                ", every count as the manifest recorded it"
            } else {
                ""
            }
        ),
    );
    Ok(pb::RestoreResult {
        database,
        row_counts: counts
            .into_iter()
            .map(|r| pb::RowCount {
                schema: r.schema,
                table: r.table,
                rows: r.rows,
            })
            .collect(),
        raw_bytes: p.loc.expected.raw.size,
    })
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
    let file = open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })?;

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
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", plan.pg_restore.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_restore stderr")?);
    let stdin = stdin_file(child.stdin.take().context("pg_restore stdin")?)?;
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(256 * 1024, stdin);
        // Dropping the returned writer closes pg_restore's stdin.
        pipeline::decompress(file, out, pg::PGDMP_MAGIC, &expected, &counters, &cancel).map(drop)
    });
    // A rejected stream is never committed: pg_restore is killed first.
    let (result, status) = join_with_child(&mut child, pipeline, &ctx.cancel, "pg_restore").await?;
    let stderr = stderr.await.unwrap_or_default();
    drop(passfile);
    drop(list_file);
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

/// The archive's table of contents (`pg_restore --list`), read from the start of the stream.
/// pg_restore stops reading once it has the table of contents; the hashes are checked by the
/// restore that follows, which reads everything.
async fn read_toc(ctx: &JobCtx, p: &Prepared<'_>, pg_restore: &Path) -> Result<String> {
    let loc = &p.loc;
    let file = open_data(loc)
        .await?
        .with_context(|| format!("data file {} is missing", loc.data_key))?;
    let mut child = pg::child_command(pg_restore, None)
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {} --list", pg_restore.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_restore stderr")?);
    let mut stdout = tokio::fs::File::from_std(stdout_file(
        child.stdout.take().context("pg_restore stdout")?,
    )?);
    let listing = tokio::spawn(async move {
        let mut s = String::new();
        stdout.read_to_string(&mut s).await.map(|_| s)
    });
    let stdin = stdin_file(child.stdin.take().context("pg_restore stdin")?)?;
    let expected = loc.expected.clone();
    let cancel = ctx.cancel.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let counters = std::sync::Arc::new(Counters::default());
        pipeline::decompress(file, stdin, pg::PGDMP_MAGIC, &expected, &counters, &cancel).map(drop)
    });
    let status = child.wait().await.context("wait for pg_restore --list")?;
    let result = pipeline.await.context("pipeline task panicked")?;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        bail!(
            "pg_restore --list failed ({}): {stderr}",
            describe_status(&status)
        );
    }
    match result {
        // pg_restore closed its input once it had the table of contents.
        Ok(()) | Err(PipelineError::Output(_)) => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", loc.data_key)),
    }
    listing
        .await
        .context("listing task panicked")?
        .context("read pg_restore --list output")
}

/// Removes from a `pg_restore --list` listing the entries that create the left-out schemas
/// and extensions, with their comments and privileges. (`--exclude-schema` leaves out the
/// objects in a schema, but still creates the schema and the extensions installed in it.)
/// Returns the listing to restore and how many entries were removed.
fn filter_toc_listing(listing: &str, schemas: &[String], extensions: &[String]) -> (String, usize) {
    let is = |list: &[String], name: &str| list.iter().any(|x| x == name);
    let mut out = String::with_capacity(listing.len());
    let mut removed = 0;
    for line in listing.lines() {
        let words: Vec<&str> = line
            .split_once(';')
            .filter(|(id, _)| id.trim().chars().all(|c| c.is_ascii_digit()) && !id.is_empty())
            .map(|(_, rest)| rest.split_whitespace().skip(2).collect())
            .unwrap_or_default();
        let drop = match words.as_slice() {
            ["SCHEMA", "-", s, ..] => is(schemas, s),
            ["EXTENSION", "-", e, ..] => is(extensions, e),
            ["COMMENT" | "ACL", "-", "SCHEMA", s, ..] => is(schemas, s),
            ["COMMENT", "-", "EXTENSION", e, ..] => is(extensions, e),
            _ => false,
        };
        if drop {
            removed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, removed)
}

/// A 0600 file in `dir`, removed when dropped.
fn write_private(dir: &Path, bytes: &[u8]) -> Result<tempfile::TempPath> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix(".lifeboat-toc-")
        .tempfile_in(dir)
        .with_context(|| format!("create a list file in {}", dir.display()))?;
    f.write_all(bytes).context("write the list file")?;
    f.flush().context("write the list file")?;
    Ok(f.into_temp_path())
}

/// Renames the scratch database into place; an existing database is renamed away first and
/// dropped after, and put back if the second rename fails.
async fn swap_in(
    admin: &mut PgConnection,
    scratch: &str,
    database: &str,
    exists: bool,
    job_id: &str,
) -> Result<()> {
    if !exists {
        return pg::rename_database(admin, scratch, database).await;
    }
    let open = pg::connection_count(admin, database).await?;
    if open > 0 {
        bail!(
            "database {database} has {open} open connection(s); stop the applications using it and run the restore again (the restored copy was discarded)"
        );
    }
    let old = scratch_name("lifeboat_old", job_id);
    pg::rename_database(admin, database, &old).await?;
    if let Err(e) = pg::rename_database(admin, scratch, database).await {
        if let Err(back) = pg::rename_database(admin, &old, database).await {
            bail!(
                "{e:#}; renaming the original back failed too ({back:#}): the original database is now named {old} and the restored copy {scratch}; rename them by hand"
            );
        }
        return Err(e);
    }
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
    fn left_out_schemas_and_extensions_leave_the_listing() {
        let listing = "\
;
; Archive created at 2026-12-01 19:00:00 UTC
;
7; 2615 16388 SCHEMA - auth supabase_admin
8; 2615 16390 SCHEMA - storage supabase_admin
9; 2615 16391 SCHEMA - extensions postgres
3390; 0 0 ACL - SCHEMA auth supabase_admin
3391; 0 0 COMMENT - SCHEMA storage supabase_admin
2; 3079 16389 EXTENSION - pg_graphql 
3389; 0 0 COMMENT - EXTENSION pg_graphql 
4; 3079 16392 EXTENSION - pgcrypto 
217; 1259 16429 TABLE public profiles postgres
216; 1259 16426 TABLE auth users supabase_admin
";
        let schemas = vec![
            "auth".to_owned(),
            "storage".to_owned(),
            "graphql".to_owned(),
        ];
        let (kept, removed) = filter_toc_listing(listing, &schemas, &["pg_graphql".to_owned()]);
        assert_eq!(removed, 6, "{kept}");
        assert!(kept.contains("SCHEMA - extensions postgres"));
        assert!(kept.contains("EXTENSION - pgcrypto"));
        assert!(kept.contains("TABLE public profiles"));
        // Objects inside left-out schemas are --exclude-schema's job.
        assert!(kept.contains("TABLE auth users"));
        assert!(!kept.contains("SCHEMA - auth"));
        assert!(!kept.contains("pg_graphql"));
        assert!(kept.starts_with(";\n; Archive created"));
        let (same, none) = filter_toc_listing(listing, &[], &[]);
        assert_eq!((same.as_str(), none), (listing, 0));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
