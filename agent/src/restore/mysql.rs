//! The restore job for MySQL and MariaDB targets: the dump streams from the repository through
//! the hash checks into `mariadb`/`mysql`, into a fresh scratch database; only when both hashes,
//! the client's exit status and (for exact counts) the row counts agree is it swapped into
//! place (see docs/adr/0007-mysql-restore-swap.md). PlanetScale, where the agent cannot create
//! databases, loads into an existing, empty destination instead.

use std::io::BufWriter;

use anyhow::{Context, Result, bail};
use lifeboat_common::secret::Secret;
use sqlx::mysql::MySqlConnection;

use super::{
    Located, Prepared, compare_counts, destination_name, human_bytes, load_verdict, open_data,
    scratch_name,
};
use crate::{
    backup::init_mysql_session,
    engine::mysql::{
        self as my, ClientTool, ConnParams, DefaultsFile, RowCountKind, ServerFlavor,
        stream::{InspectingWriter, SandboxLineFilter},
        swap::SwapPlan,
        table_filter::TableFilter,
    },
    job::JobCtx,
    manifest::{Manifest, TableRows},
    pipeline::{self, PipelineError},
    process::{join_with_child, stderr_tail, stdin_file},
    provider::Provider,
    swap_journal::{Journal, Step, test_pause},
    work::RestoreWork,
};

mod cut;
mod parallel;
mod partial;

use cut::{Data, load_cut};

/// What the restore will do, decided by [`plan`].
pub(super) struct Plan {
    admin: MySqlConnection,
    client: ClientTool,
    /// What the destination server is (for its session settings).
    server: ServerFlavor,
    database: String,
    exists: bool,
    empty: bool,
    /// A partial restore: the chosen tables.
    partial: Option<partial::MyPartial>,
    /// Client connections loading tables at once (`--jobs`, or the target's `restore_jobs`).
    jobs: u32,
}

/// MySQL's and MariaDB's side of a restore, for [`super::restore`].
pub(super) struct MyRestore<'a> {
    params: &'a ConnParams,
    password: Option<Secret<String>>,
}

impl<'a> MyRestore<'a> {
    pub(super) fn new(target: &'a crate::config::TargetConfig) -> Result<Self> {
        Ok(Self {
            params: target
                .mysql
                .as_ref()
                .context("target has no MySQL connection parameters")?,
            password: target.password()?,
        })
    }

    /// Streaming the backup with the SQL client, per the plan.
    fn loader<'p>(&'p self, ctx: &'p JobCtx, p: &'p Prepared<'_>, plan: &'p Plan) -> Load<'p> {
        Load {
            ctx,
            params: self.params,
            password: self.password.as_ref(),
            loc: &p.loc,
            client: &plan.client,
            manifest: &p.manifest,
            profile: p.target.profile,
            server: plan.server,
            partial: plan.partial.as_ref(),
            jobs: plan.jobs,
        }
    }
}

impl super::Restore for MyRestore<'_> {
    type Plan = Plan;

    async fn plan(
        &self,
        ctx: &JobCtx,
        spec: &RestoreWork,
        p: &Prepared<'_>,
    ) -> Result<Option<Plan>> {
        plan(ctx, spec, p, self.params, self.password.as_ref()).await
    }

    fn describe(&self, ctx: &JobCtx, spec: &RestoreWork, p: &Prepared<'_>, plan: &Plan) {
        describe(ctx, spec, p, plan);
    }

    fn database(plan: &Plan) -> &str {
        &plan.database
    }

    async fn close(plan: Plan) {
        let _ = sqlx::Connection::close(plan.admin).await;
    }

    /// Where the agent cannot create databases (PlanetScale), the backup is loaded into the
    /// (emptied) destination itself. Nothing is emptied before the whole archive has been
    /// read and proven (H3).
    async fn in_place(
        &self,
        ctx: &JobCtx,
        spec: &RestoreWork,
        p: &Prepared<'_>,
        plan: &mut Plan,
    ) -> Option<Result<Vec<TableRows>>> {
        if p.target.profile.can_create_databases() {
            return None;
        }
        let database = plan.database.clone();
        let emptied = spec.clean && !plan.empty;
        if emptied {
            if let Err(e) = prove_archive(ctx, &p.loc, &database).await {
                return Some(Err(e));
            }
            ctx.report.warn("destination", clean_risk(&database));
            ctx.set_phase("emptying");
            if let Err(e) = my::swap::empty_database(&mut plan.admin, &database).await {
                return Some(Err(e.context(format!(
                    "empty {database} (objects already dropped stay dropped; restore again to fill it)"
                ))));
            }
        }
        Some(match self.loader(ctx, p, plan).load_into(&database).await {
            Err(e) if emptied => Err(e.context(format!(
                "{database} was emptied for this restore and is now empty or partly loaded; fix the cause and restore again"
            ))),
            loaded => loaded,
        })
    }

    async fn create_scratch(&self, plan: &mut Plan, p: &Prepared<'_>, scratch: &str) -> Result<()> {
        let server = &p.manifest.server;
        my::create_database(&mut plan.admin, scratch, &server.encoding, &server.collate).await
    }

    async fn load(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Plan,
        into: &str,
    ) -> Result<Vec<TableRows>> {
        self.loader(ctx, p, plan).load_into(into).await
    }

    async fn drop_scratch(&self, plan: &mut Plan, scratch: &str) {
        drop_quietly(&mut plan.admin, scratch).await;
    }

    /// Moves the scratch database's tables into the destination (ADR 0007), then drops the
    /// scratch database and the replaced tables.
    async fn swap_in(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Plan,
        scratch: &str,
        journal: &mut Journal,
    ) -> Result<()> {
        let old = scratch_name("lifeboat_old", &ctx.job_id);
        let server = &p.manifest.server;
        let swapped = my::swap::swap_in_journaled(
            &mut plan.admin,
            &SwapPlan {
                scratch,
                dest: &plan.database,
                old: plan.exists.then_some(old.as_str()),
                character_set: &server.encoding,
                collation: &server.collate,
            },
            journal,
        )
        .await;
        if let Err(e) = swapped {
            // The scratch copy holds only restored data (the backup still has it); the replaced
            // database's tables, if any were moved, stay where the error says.
            drop_quietly(&mut plan.admin, scratch).await;
            return Err(e);
        }
        if let Err(e) = journal
            .step(Step::Finishing, plan.exists.then_some(old.as_str()))
            .await
        {
            tracing::warn!("failed to {e:#}");
        }
        test_pause("restore-finishing").await;
        drop_quietly(&mut plan.admin, scratch).await;
        if plan.exists {
            drop_quietly(&mut plan.admin, &old).await;
        }
        Ok(())
    }
}

/// Checks the destination and decides the restore; findings go to the job's report.
async fn plan(
    ctx: &JobCtx,
    spec: &RestoreWork,
    p: &Prepared<'_>,
    params: &ConnParams,
    password: Option<&Secret<String>>,
) -> Result<Option<Plan>> {
    let report = &ctx.report;
    let (target, manifest) = (p.target, &p.manifest);
    let into = spec.partial.as_ref().and_then(|x| x.into_schema.clone());
    let database = match into {
        // A MySQL schema is a database: --into-schema names the new database.
        Some(name) => name,
        None => match destination_name(ctx, spec, p) {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let partial = match &spec.partial {
        Some(_) if !target.profile.can_create_databases() => {
            report.error(
                "tables",
                format!(
                    "a partial restore goes into a new database, and {} databases cannot be created by the agent; restore the whole backup instead",
                    target.profile
                ),
            );
            return Ok(None);
        }
        Some(want) => match partial::plan(ctx, p, want) {
            Some(pp) => Some(pp),
            None => return Ok(None),
        },
        None => None,
    };
    let jobs = match (spec.jobs, &partial) {
        (Some(n), Some(_)) if n > 1 => {
            report.error(
                "jobs",
                "a partial restore loads its tables over one connection; leave out --jobs",
            );
            return Ok(None);
        }
        (_, Some(_)) => 1,
        (asked, None) => asked.unwrap_or(target.restore_jobs).max(1),
    };
    if my::SYSTEM_DATABASES.contains(&database.to_ascii_lowercase().as_str()) {
        report.error(
            "destination",
            format!(
                "refusing to restore over the system database {database}; pick another --database"
            ),
        );
        return Ok(None);
    }

    ctx.set_phase("connecting");
    let Some(mut admin) = report.check("connection", my::connect(params, password, None).await)
    else {
        return Ok(None);
    };
    let Some(facts) = report.check("server", my::server_facts(&mut admin, None).await) else {
        return Ok(None);
    };
    if report
        .check(
            "connection",
            init_session(&mut admin, target.profile, facts.flavor).await,
        )
        .is_none()
    {
        return Ok(None);
    }
    match my::backup_origin(&manifest.server, p.source.as_str()) {
        None => report.error(
            "version",
            format!(
                "cannot read the server version {:?} from the backup's manifest",
                manifest.server.version
            ),
        ),
        Some((flavor, version)) => match my::check_restore_source(flavor, version, &facts) {
            Ok(warnings) if warnings.is_empty() => report.ok(
                "version",
                format!(
                    "{} {version} backup into {} ({})",
                    flavor.product(),
                    facts.describe(),
                    params.describe("")
                ),
            ),
            Ok(warnings) => warnings.into_iter().for_each(|w| report.warn("version", w)),
            Err(e) => report.error("version", format!("{e:#}")),
        },
    }
    let client = match my::find_client_tool(target.mysql_bin_dir.as_deref(), facts.flavor) {
        Ok(path) => match ClientTool::probe(&path).await {
            Ok(c) => Some(c),
            Err(e) => {
                report.error("restore_tool", format!("{e:#}"));
                None
            }
        },
        Err(e) => {
            report.error("restore_tool", format!("{e:#}"));
            None
        }
    };
    if let Some(c) = &client
        && !c.supports("binary-mode")
    {
        // Without it the client runs its own commands (`\!` runs a shell) from the stream.
        report.error(
            "restore_tool",
            format!(
                "{} does not know --binary-mode, so it would run client commands found in the backup stream; install a newer client (MariaDB 10.x or MySQL 5.6.3 and later) or point mysql_bin_dir at one",
                c.describe()
            ),
        );
    } else if let Some(c) = &client {
        match my::check_client(c, &facts) {
            Ok(w) if w.is_empty() => report.ok("restore_tool", c.describe()),
            Ok(w) => w.into_iter().for_each(|w| report.warn("restore_tool", w)),
            Err(e) => report.error("restore_tool", format!("{e:#}")),
        }
    }

    let exists = my::database_exists(&mut admin, &database).await?;
    let empty = if exists {
        my::database_is_empty(&mut admin, &database).await?
    } else {
        true
    };
    let creates = target.profile.can_create_databases();
    if exists && !spec.clean && (creates || !empty) {
        // Any existing database is only replaced on an explicit --clean (admin role); on
        // PlanetScale an existing empty database is the destination itself.
        report.error(
            "destination",
            format!(
                "database {database} already exists{}; restore into a new database with --database NAME, or replace it with --clean (admin role)",
                if empty { "" } else { " and is not empty" }
            ),
        );
    } else if !creates && !exists {
        report.error(
            "destination",
            format!(
                "database {database} does not exist and {} databases cannot be created by the agent; create it with the provider's tools first",
                target.profile
            ),
        );
    } else if exists && spec.clean {
        let open = my::connection_count(&mut admin, &database).await?;
        if open > 0 {
            report.error(
                "destination",
                format!(
                    "database {database} has {open} open connection(s); stop the applications using it and run the restore again"
                ),
            );
        } else {
            report.info(
                "destination",
                format!("database {database} exists and is replaced (--clean)"),
            );
        }
    } else if exists {
        report.ok(
            "destination",
            format!("database {database} exists and is empty: the backup is loaded into it"),
        );
    } else {
        report.ok(
            "destination",
            format!("database {database} does not exist yet and is created"),
        );
    }
    if jobs > 1 && parallel::downloads_first(&p.loc) {
        let scratch = &ctx.config.scratch_dir;
        match super::spool::check_room(scratch, p.loc.expected.stored.size) {
            Ok(()) => report.ok(
                "parallel",
                format!(
                    "the {} stored archive is downloaded once to {} (room checked) for the connections to read, and removed after",
                    human_bytes(p.loc.expected.stored.size),
                    scratch.display()
                ),
            ),
            Err(e) => report.error("parallel", format!("{e:#}")),
        }
    }
    definers(ctx, &mut admin, p).await;
    match client {
        Some(client) => Ok(Some(Plan {
            admin,
            client,
            server: facts.flavor,
            database,
            exists,
            empty,
            partial,
            jobs,
        })),
        None => Ok(None),
    }
}

/// The provider's session settings, where the server has them: PlanetScale's OLAP workload
/// (which lifts Vitess's per-query row limit) exists on Vitess only; a MySQL or MariaDB server
/// standing in for a PlanetScale database (a staging copy) has neither the limit nor the setting.
async fn init_session(
    conn: &mut MySqlConnection,
    profile: Provider,
    server: ServerFlavor,
) -> Result<()> {
    if profile == Provider::Planetscale && server != ServerFlavor::Vitess {
        return Ok(());
    }
    init_mysql_session(conn, profile).await
}

/// Stored objects are created with their `DEFINER`: say which accounts the backup names that
/// the destination lacks (the objects are created, but fail when used).
async fn definers(ctx: &JobCtx, admin: &mut MySqlConnection, p: &Prepared<'_>) {
    let Some(objs) = &p.manifest.objects else {
        return;
    };
    if objs.roles.is_empty() {
        return;
    }
    match my::objects::accounts(admin).await {
        Some(have) => {
            let missing: Vec<&str> = objs
                .roles
                .iter()
                .map(String::as_str)
                .filter(|d| !have.contains(*d))
                .collect();
            if missing.is_empty() {
                ctx.report.ok(
                    "definers",
                    format!(
                        "the definers of the backup's views, routines, triggers and events exist: {}",
                        objs.roles.join(", ")
                    ),
                );
            } else {
                ctx.report.warn(
                    "definers",
                    format!(
                        "views, routines, triggers or events in the backup are defined by {}, which do not exist on the destination; they are created, but fail when used until those accounts exist",
                        missing.join(", ")
                    ),
                );
            }
        }
        None => ctx.report.info(
            "definers",
            format!(
                "the backup's stored objects are defined by {}; this user cannot read mysql.user to check they exist, and creating them as another user needs the privilege to set a definer",
                objs.roles.join(", ")
            ),
        ),
    }
}

/// The dry run's plan.
fn describe(ctx: &JobCtx, spec: &RestoreWork, p: &Prepared<'_>, plan: &Plan) {
    let r = &ctx.report;
    let stream = format!(
        "stream {} ({} stored, {} of SQL) from {}, checking its size and both SHA-256 hashes, into {}",
        p.loc.data_key,
        human_bytes(p.loc.expected.stored.size),
        human_bytes(p.loc.expected.raw.size),
        p.loc.repo.describe(),
        plan.client.name
    );
    if let Some(pp) = &plan.partial {
        r.step(format!(
            "restore only the dump's sections of {} table(s) ({}): definitions, data and triggers; views, routines and events are left out",
            pp.expected.len(),
            pp.names().join(", ")
        ));
    } else if plan.jobs > 1 {
        let n = parallel::groups(&p.manifest.row_counts, plan.jobs as usize)
            .len()
            .max(1);
        r.step(format!(
            "load the tables over {n} connection(s) at once (--jobs {}), each streaming the archive through the same checks and loading its share of the tables, largest first; then the views, routines and events over one",
            plan.jobs
        ));
        if parallel::downloads_first(&p.loc) {
            r.step(format!(
                "download {} ({} stored) once into {}, checking its size and SHA-256; every connection reads that file, which is removed after",
                p.loc.data_key,
                human_bytes(p.loc.expected.stored.size),
                super::spool::dir_for(&ctx.config.scratch_dir, &ctx.job_id).display()
            ));
        }
    }
    let count = if RowCountKind::parse(&p.manifest.row_counts_kind)
        .is_some_and(RowCountKind::restore_must_match)
    {
        format!(
            "count the rows of every table and compare them with the manifest's exact counts ({} tables)",
            p.manifest.row_counts.len()
        )
    } else {
        format!(
            "count the rows of every table (the manifest's counts are {}: not compared)",
            p.manifest.row_counts_kind
        )
    };
    if !p.target.profile.can_create_databases() {
        if spec.clean && !plan.empty {
            r.step(format!(
                "prove the archive before anything is emptied: read {} whole from {}, checking its size, both SHA-256 hashes, the size of the SQL and that it is a complete dump; on any mismatch stop, {} is left as it was",
                p.loc.data_key,
                p.loc.repo.describe(),
                plan.database
            ));
            r.step(format!(
                "empty {} (views, triggers, routines, events, tables)",
                plan.database
            ));
            r.warn("destination", clean_risk(&plan.database));
        }
        r.step(format!("{stream} {}", plan.database));
        r.step(count);
        return;
    }
    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    r.step(format!(
        "create the scratch database {scratch} (character set {}, collation {})",
        p.manifest.server.encoding, p.manifest.server.collate
    ));
    r.step(format!("{stream} {scratch}"));
    r.step(count);
    r.step(if plan.exists {
        format!(
            "move {db}'s tables aside into {old} and {scratch}'s into {db} in one RENAME TABLE, recreate views, triggers, routines and events in {db}, then drop {old} and {scratch}",
            db = plan.database,
            old = scratch_name("lifeboat_old", &ctx.job_id)
        )
    } else {
        format!(
            "create {db}, move {scratch}'s tables into it in one RENAME TABLE, recreate views, triggers, routines and events, drop {scratch}",
            db = plan.database
        )
    });
    r.step(format!(
        "on any failure: drop {scratch}; {} is left as it was",
        plan.database
    ));
}

/// What a `--clean` restore into a database it cannot replace by a swap still risks (H3).
fn clean_risk(database: &str) -> String {
    format!(
        "{database} cannot be replaced by a swap on this provider (no CREATE DATABASE): it is emptied once the archive is proven, then loaded; if loading fails after that (the connection drops, the server refuses a statement), {database} is left empty or partly loaded: restore again (this backup or another)"
    )
}

/// Reads the whole archive before a destination is emptied (H3): the stored size and SHA-256,
/// every byte through the decompressor, the raw size and SHA-256 against the catalog, and the
/// dump's header and completion trailer. Writes nothing anywhere.
async fn prove_archive(ctx: &JobCtx, loc: &Located, database: &str) -> Result<()> {
    ctx.set_phase("verifying");
    let left = || format!("{database} was left as it was");
    let file = open_data(loc).await.with_context(left)?.with_context(|| {
        format!(
            "{}: data file {} is missing from {}",
            left(),
            loc.data_key,
            loc.repo.describe()
        )
    })?;
    let expected = loc.expected.clone();
    // Its own counters: the load that follows reports the job's progress.
    let counters = std::sync::Arc::new(pipeline::Counters::default());
    let cancel = ctx.cancel.clone();
    let proof = tokio::task::spawn_blocking(move || {
        pipeline::decompress(
            file,
            InspectingWriter::new(std::io::sink()),
            my::MAGIC,
            &expected,
            &counters,
            &cancel,
        )
    })
    .await
    .context("archive check panicked")?;
    match proof {
        Ok(w) => w.finish().1.map(drop).with_context(|| {
            format!(
                "{}: {} is not a complete dump; restore another backup",
                left(),
                loc.data_key
            )
        }),
        Err(PipelineError::Cancelled) => bail!("cancelled; {} was left as it was", database),
        Err(e) => Err(e).with_context(|| format!("{}: check {}", left(), loc.data_key)),
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
    server: ServerFlavor,
    partial: Option<&'a partial::MyPartial>,
    jobs: u32,
}

/// Which part of the dump one client stream loads.
enum Cut {
    Whole,
    /// The sections of these tables (a partial restore, or one connection of a parallel load).
    Tables(Vec<String>),
    /// Every table's sections but these (the first connection of a parallel load).
    TablesExcept(Vec<String>),
    /// The views, routines and events, once every table is loaded.
    Rest,
}

impl Load<'_> {
    /// Loads the dump into `database`, then counts its rows and compares them with the
    /// manifest's when those were counted from the dump itself.
    async fn load_into(&self, database: &str) -> Result<Vec<TableRows>> {
        let ctx = self.ctx;
        ctx.set_phase("restoring");
        match self.partial {
            Some(pp) => {
                let cut = Cut::Tables(pp.names());
                self.stream(database, cut, ctx.counters.clone(), &ctx.cancel, None)
                    .await?;
            }
            None if self.jobs > 1 => parallel::load(self, database).await?,
            None => {
                self.stream(
                    database,
                    Cut::Whole,
                    ctx.counters.clone(),
                    &ctx.cancel,
                    None,
                )
                .await?;
            }
        }

        ctx.set_phase("counting");
        let kind = RowCountKind::parse(&self.manifest.row_counts_kind).unwrap_or(RowCountKind::Off);
        let mut conn = my::connect(self.params, self.password, Some(database)).await?;
        init_session(&mut conn, self.profile, self.server).await?;
        my::begin_consistent_snapshot(&mut conn).await?;
        let counts = my::row_counts(&mut conn, database, true).await?;
        let _ = sqlx::Connection::close(conn).await;
        if kind.restore_must_match() {
            match self.partial {
                Some(pp) => compare_counts(&pp.expected, &counts)?,
                None => compare_counts(&self.manifest.row_counts, &counts)?,
            }
        }
        Ok(counts)
    }

    /// One client connection: the stream from the repository, through both hash checks and
    /// cut to `cut`, into the SQL client. `cancel` stops it (and kills the client).
    async fn stream(
        &self,
        database: &str,
        cut: Cut,
        counters: std::sync::Arc<pipeline::Counters>,
        cancel: &tokio_util::sync::CancellationToken,
        spooled: Option<&std::path::Path>,
    ) -> Result<()> {
        let ctx = self.ctx;
        let loc = self.loc;
        let state_dir = &ctx.config.state_dir;
        let file = match spooled {
            Some(path) => Data::Spooled(
                std::fs::File::open(path)
                    .with_context(|| format!("open the downloaded archive {}", path.display()))?,
            ),
            None => Data::Repository(open_data(loc).await?.with_context(|| {
                format!(
                    "data file {} is missing from {}",
                    loc.data_key,
                    loc.repo.describe()
                )
            })?),
        };
        let defaults =
            DefaultsFile::create(state_dir, self.params, self.password, self.client.flavor)?;
        let mut child = my::restore_command(
            self.client,
            &defaults,
            state_dir,
            database,
            loc.expected.raw.size,
        )
        .spawn()
        .with_context(|| format!("start {}", self.client.path.display()))?;
        let name = self.client.name.clone();
        let stderr = stderr_tail(child.stderr.take().context("client stderr")?);
        let stdin = stdin_file(child.stdin.take().context("client stdin")?)?;
        let expected = loc.expected.clone();
        let stop = cancel.clone();
        let filter = self.client.needs_sandbox_filter();
        let pipeline = tokio::task::spawn_blocking(move || {
            let out = BufWriter::with_capacity(256 * 1024, stdin);
            // Dropping the returned writer closes the client's stdin.
            let (f, must_see) = match cut {
                Cut::Whole if filter => {
                    return pipeline::decompress(
                        file,
                        SandboxLineFilter::new(out),
                        my::MAGIC,
                        &expected,
                        &counters,
                        &stop,
                    )
                    .and_then(|w| w.into_inner().map_err(PipelineError::Output))
                    .map(drop);
                }
                Cut::Whole => {
                    return pipeline::decompress(file, out, my::MAGIC, &expected, &counters, &stop)
                        .map(drop);
                }
                Cut::Tables(t) => (TableFilter::new(out, t.clone()), Some(t)),
                Cut::TablesExcept(t) => (TableFilter::except(out, t), None),
                Cut::Rest => (TableFilter::rest(out), None),
            };
            load_cut(file, f, must_see, filter, &expected, &counters, &stop)
        });
        // A rejected stream is never committed: the client is killed first.
        let (result, status) = join_with_child(&mut child, pipeline, cancel, &name).await?;
        let stderr = stderr.await.unwrap_or_default();
        drop(defaults);
        if cancel.is_cancelled() {
            bail!("cancelled");
        }
        load_verdict(&name, result, &status, &stderr, &loc.data_key)
    }
}
