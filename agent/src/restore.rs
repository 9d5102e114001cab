//! The restore job. The archive streams from the repository through hash checks into the
//! engine's client (`pg_restore`, `mariadb`), into a fresh scratch database; only when the
//! stream matched both recorded hashes, the client succeeded and the row counts agree with the
//! manifest is the scratch database swapped into place. A corrupt archive, a failed or
//! cancelled restore therefore never leaves a half-restored database under the name the
//! operator asked for (except where the provider allows no scratch database and the operator
//! asked for `--clean`: see [`Restore::in_place`]). The orchestrator is [`restore`] over the
//! engines' [`Restore`] steps: [`postgres`], [`mysql`]. Before anything is written, [`prepare`] and the engine's
//! plan check everything they can (the backup, the destination server, tools, names, roles,
//! extensions) and record it in the job's report; `restore --dry-run` stops there.

pub(crate) mod datadir;
pub(crate) mod globals;
mod mysql;
mod pitr;
mod postgres;
pub(crate) mod selection;
mod source;
mod spool;

pub use source::{
    KeyObjectMissing, Located, check_manifest, locate, locate_readable, open_data, read_manifest,
    read_manifest_bytes, unlock,
};
pub(crate) use source::{check_data_object, manifest_checked};

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{BackupRecord, DataDir, GlobalsRestore, Restored, RowCount};

use crate::{
    config::{Engine, TargetConfig},
    job::JobCtx,
    manifest::{Manifest, TableRows},
    pipeline::PipelineError,
    provider::Provider,
    swap_journal::{Journal, test_pause},
    work::RestoreWork,
};

/// Everything a restore (or its dry run) has checked before it looks at the destination.
pub(crate) struct Prepared<'a> {
    pub rec: &'a BackupRecord,
    pub target: &'a TargetConfig,
    pub loc: Located,
    pub manifest: Manifest,
    /// The provider the backup was taken on.
    pub source: Provider,
    /// Roles a dry run `--with-globals` would create before the restore.
    pub planned_roles: Vec<String>,
}

/// Checks the request and the backup: the engines match, `--clean` is allowed on the
/// target, the manifest agrees with the catalog, the data object is there with the recorded
/// size. Findings go to the job's report; `None` when nothing further can be checked.
async fn prepare<'a>(ctx: &'a JobCtx, spec: &'a RestoreWork) -> Result<Option<Prepared<'a>>> {
    let report = &ctx.report;
    let rec = &spec.backup;
    let target = ctx
        .config
        .targets
        .get(&spec.target)
        .with_context(|| format!("this agent has no target {:?}", spec.target))?;
    if report.check("backup", check_engine(rec, target)).is_none() {
        return Ok(None);
    }
    if spec.clean && !target.allow_clean_restore {
        report.error(
            "destination",
            format!(
                "target {} does not allow restores that replace a database (--clean); set allow_clean_restore = true in its [[target]] in the agent's config to permit it",
                target.name
            ),
        );
    }
    let Some(loc) = report.check("backup", locate_readable(ctx, rec, &spec.fallbacks).await) else {
        return Ok(None);
    };
    match &rec.encryption {
        Some(e) => report.ok(
            "encryption",
            format!(
                "encrypted (age); opened with this agent's key, key ids {}",
                e.key_id_list()
            ),
        ),
        None => warn_if_plaintext(report, rec, target),
    }
    ctx.set_phase("checking");
    let Some(manifest) = manifest_checked(report, &loc, rec).await else {
        return Ok(None);
    };
    check_data_object(report, &loc, |size| {
        format!(
            "{} in {}: manifest and data ({size}) as the catalog recorded them",
            rec.backup_id,
            loc.repo.describe(),
        )
    })
    .await;
    let Some(source) = report.check("backup", check_source_provider(&manifest, target)) else {
        return Ok(None);
    };
    Ok(Some(Prepared {
        rec,
        target,
        loc,
        manifest,
        source,
        planned_roles: Vec::new(),
    }))
}

/// One engine's side of a restore, as the orchestrator ([`restore`], [`plan_only`]) drives
/// it: check the destination and decide (the plan), describe it (the dry run), and the steps
/// of the restore itself. The orchestrator owns their order, the journal that makes a crash
/// recoverable (ADR 0011) and the cleanup when a step fails.
pub(crate) trait Restore {
    /// The destination checked and the restore decided: its connection, tool and names.
    type Plan;

    /// Checks the destination (connection, server and tool versions, the name, privileges,
    /// what the backup needs there); findings go to the job's report. `None` when nothing
    /// further can be checked.
    async fn plan(
        &self,
        ctx: &JobCtx,
        spec: &RestoreWork,
        p: &Prepared<'_>,
    ) -> Result<Option<Self::Plan>>;

    /// The steps the plan takes, in the job's report (the dry run).
    fn describe(&self, ctx: &JobCtx, spec: &RestoreWork, p: &Prepared<'_>, plan: &Self::Plan);

    /// The database the restore ends in.
    fn database(plan: &Self::Plan) -> &str;

    /// Gives back what the plan holds (its connection).
    async fn close(plan: Self::Plan);

    /// Restores without a scratch database, where the engine cannot make one (a provider
    /// without CREATE DATABASE): `None` to take the scratch-and-swap path.
    async fn in_place(
        &self,
        _ctx: &JobCtx,
        _spec: &RestoreWork,
        _p: &Prepared<'_>,
        _plan: &mut Self::Plan,
    ) -> Option<Result<Vec<TableRows>>> {
        None
    }

    /// Creates the empty scratch database the backup is loaded into.
    async fn create_scratch(
        &self,
        plan: &mut Self::Plan,
        p: &Prepared<'_>,
        scratch: &str,
    ) -> Result<()>;

    /// Streams the backup into `into` with the engine's client, through the hash checks, then
    /// counts the rows there and compares them with the manifest's exact counts.
    async fn load(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Self::Plan,
        into: &str,
    ) -> Result<Vec<TableRows>>;

    /// Drops the scratch database after a failed load; a failure is logged, not returned.
    async fn drop_scratch(&self, plan: &mut Self::Plan, scratch: &str);

    /// Puts the loaded scratch database in place of the destination, each step journaled
    /// first, and removes what it replaced. On failure the destination is as it was (or the
    /// error says where each copy is) and the scratch copy is gone unless it is the only one.
    async fn swap_in(
        &self,
        ctx: &JobCtx,
        p: &Prepared<'_>,
        plan: &mut Self::Plan,
        scratch: &str,
        journal: &mut Journal,
    ) -> Result<()>;
}

pub async fn run(ctx: &JobCtx, spec: &RestoreWork) -> Result<Restored> {
    if spec.globals == GlobalsRestore::Only {
        return globals::run_only(ctx, spec).await;
    }
    if let Some(dir) = destination_kind(spec)? {
        return datadir::run(ctx, spec, dir).await;
    }
    // The roles first, so the restore can give objects to them; the database's own
    // settings and grants once it exists.
    let globals = match spec.globals {
        GlobalsRestore::With => Some(globals::before_restore(ctx, spec, false).await?),
        _ => None,
    };
    let prepared = prepare(ctx, spec).await?;
    ctx.report.bail_on_errors("restore refused")?;
    let p = prepared.context("restore could not be prepared")?;
    let restored = match p.target.engine {
        Engine::Postgres => restore(ctx, spec, &p, postgres::PgRestore::new(p.target)?).await,
        Engine::Mysql => restore(ctx, spec, &p, mysql::MyRestore::new(p.target)?).await,
    }?;
    if let Some(g) = globals {
        globals::apply_database(ctx, spec, g, &restored.database).await?;
    }
    Ok(restored)
}

/// `restore --dry-run`: the checks a restore makes and the steps it would take, in the job's
/// report. Reads the repository and the destination server; writes nothing anywhere. Fails
/// (with the report) when the restore would be refused.
pub async fn dry_run(ctx: &JobCtx, spec: &RestoreWork) -> Result<()> {
    if spec.globals == GlobalsRestore::Only {
        return globals::dry_run_only(ctx, spec).await;
    }
    if let Some(dir) = destination_kind(spec)? {
        return datadir::dry_run(ctx, spec, dir).await;
    }
    let planned_roles = match spec.globals {
        GlobalsRestore::With => match globals::before_restore(ctx, spec, true).await {
            Ok(g) => g.created_roles(),
            Err(e) => {
                ctx.report.error("globals", format!("{e:#}"));
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    if let Some(mut p) = prepare(ctx, spec).await? {
        p.planned_roles = planned_roles;
        match p.target.engine {
            Engine::Postgres => {
                plan_only(ctx, spec, &p, postgres::PgRestore::new(p.target)).await?
            }
            Engine::Mysql => plan_only(ctx, spec, &p, mysql::MyRestore::new(p.target)).await?,
        }
    }
    ctx.report.bail_on_errors("the restore would fail")
}

/// Where the backup goes by its kind: a physical base backup into a data directory (its
/// `Some`), a logical dump into a database (`None`); the other pairings are refused naming the
/// flag to use.
fn destination_kind(spec: &RestoreWork) -> Result<Option<&DataDir>> {
    let rec = &spec.backup;
    match (rec.is_physical(), &spec.data_dir) {
        (true, Some(dir)) => Ok(Some(dir)),
        (false, None) => Ok(None),
        (true, None) => bail!(
            "backup {} is a physical base backup of a whole PostgreSQL cluster; restore it into an empty directory with --data-dir /path/to/dir",
            rec.backup_id
        ),
        (false, Some(_)) => bail!(
            "backup {} is a logical dump ({}); it is restored into a database: leave out --data-dir",
            rec.backup_id,
            rec.format
        ),
    }
}

/// The dry run: the checks and the steps, nothing written.
async fn plan_only<E: Restore>(
    ctx: &JobCtx,
    spec: &RestoreWork,
    p: &Prepared<'_>,
    engine: Result<E>,
) -> Result<()> {
    let Some(engine) = ctx.report.check("connection", engine) else {
        return Ok(());
    };
    if let Some(plan) = engine.plan(ctx, spec, p).await? {
        engine.describe(ctx, spec, p, &plan);
        E::close(plan).await;
    }
    Ok(())
}

/// The restore: plan, then load into a fresh scratch database and swap it into place, or,
/// where the engine cannot make a scratch database, load in place. On the scratch path a
/// failed, cancelled or crashed restore never leaves a half-restored database under the
/// destination's name.
async fn restore<E: Restore>(
    ctx: &JobCtx,
    spec: &RestoreWork,
    p: &Prepared<'_>,
    engine: E,
) -> Result<Restored> {
    let plan = engine.plan(ctx, spec, p).await?;
    ctx.report.bail_on_errors("restore refused")?;
    let mut plan = plan.context("restore could not be planned")?;
    let database = E::database(&plan).to_owned();
    if let Some(loaded) = engine.in_place(ctx, spec, p, &mut plan).await {
        let counts = loaded?;
        E::close(plan).await;
        return Ok(restored(ctx, p, database, counts));
    }

    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    // Every step from here on is journaled, so a crash is finished or undone at the next start.
    let mut journal = Journal::begin(
        &ctx.config.state_dir,
        &ctx.job_id,
        p.target,
        &scratch,
        &database,
    )
    .await?;
    if let Err(e) = engine.create_scratch(&mut plan, p, &scratch).await {
        journal.finish().await;
        return Err(e);
    }
    test_pause("restore-loading").await;
    let counts = match engine.load(ctx, p, &mut plan, &scratch).await {
        Ok(c) => c,
        Err(e) => {
            engine.drop_scratch(&mut plan, &scratch).await;
            journal.finish().await;
            return Err(e);
        }
    };
    ctx.set_phase("swapping");
    let swapped = engine
        .swap_in(ctx, p, &mut plan, &scratch, &mut journal)
        .await;
    journal.finish().await;
    swapped?;
    E::close(plan).await;
    Ok(restored(ctx, p, database, counts))
}

/// The restore's result, and its line in the report.
fn restored(ctx: &JobCtx, p: &Prepared<'_>, database: String, counts: Vec<TableRows>) -> Restored {
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
    Restored {
        database,
        data_dir: None,
        row_counts: counts
            .into_iter()
            .map(|r| RowCount {
                bytes: r.bytes,
                schema: r.schema,
                table: r.table,
                rows: r.rows,
            })
            .collect(),
        raw_bytes: p.loc.expected.raw.size,
    }
}

/// The verdict on a stream loaded into a restore tool (`pg_restore`, `mariadb`): a tool that
/// failed speaks for itself (its stderr), a stream the pipeline rejected (a hash or size
/// mismatch) for the data.
pub(crate) fn load_verdict(
    tool: &str,
    result: Result<(), PipelineError>,
    status: &std::process::ExitStatus,
    stderr: &str,
    data_key: &str,
) -> Result<()> {
    match result {
        Err(PipelineError::Output(_)) | Ok(()) if !status.success() => bail!(
            "{tool} failed ({}): {}",
            crate::process::describe_status(status),
            if stderr.is_empty() {
                "no error output"
            } else {
                stderr
            }
        ),
        Err(e) => Err(e).with_context(|| format!("restore backup from {data_key}")),
        Ok(()) => Ok(()),
    }
}

/// Warns when a plaintext backup is restored through a target configured to encrypt.
pub(crate) fn warn_if_plaintext(
    report: &crate::report::Reporter,
    rec: &BackupRecord,
    target: &TargetConfig,
) {
    if rec.encryption.is_none() && target.encryption.is_some() {
        report.warn(
            "encryption",
            format!(
                "backup {} is stored in plaintext, although target {} is configured to encrypt its backups (it was taken before encryption was configured, or by another target)",
                rec.backup_id, target.name
            ),
        );
    }
}

/// The file system that holds (or will hold) `dir`: the directory measured (`dir`, or its
/// parent while it does not exist) and the bytes free there for the agent's user; `None` when
/// it cannot be read.
pub(crate) fn free_space(dir: &std::path::Path) -> Option<(&std::path::Path, u64)> {
    let on = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(std::path::Path::new("/"))
    };
    let st = rustix::fs::statvfs(on).ok()?;
    Some((on, st.f_bavail.saturating_mul(st.f_frsize)))
}

/// `1.2 GiB`, for messages.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Refuses a backup of one engine for a target of the other.
fn check_engine(rec: &BackupRecord, target: &TargetConfig) -> Result<()> {
    let backup_engine = rec.engine;
    if backup_engine != target.engine {
        bail!(
            "backup {} is a {} backup; it cannot be restored into the {} target {}: restore it into a target with engine = \"{}\"",
            rec.backup_id,
            engine_product(backup_engine),
            engine_product(target.engine),
            target.name,
            backup_engine.as_str()
        );
    }
    Ok(())
}

fn engine_product(e: Engine) -> &'static str {
    match e {
        Engine::Postgres => "PostgreSQL",
        Engine::Mysql => "MySQL/MariaDB",
    }
}

/// The provider the backup was taken on, checked to be of the target's engine.
fn check_source_provider(manifest: &Manifest, target: &TargetConfig) -> Result<Provider> {
    let from = Provider::parse(&manifest.provider).with_context(|| {
        format!(
            "the backup's manifest names an unknown provider {:?}",
            manifest.provider
        )
    })?;
    if Engine::parse(&manifest.engine) != Some(target.engine) {
        bail!(
            "the backup is a {} backup and cannot be restored into the {} target {}",
            manifest.engine,
            target.engine.as_str(),
            target.name
        );
    }
    crate::provider::check_restore_pair(from, target.profile).map_err(anyhow::Error::msg)?;
    Ok(from)
}

/// The database a restore goes into: `--database`, or a new name from the backup's database
/// and id; an invalid name is an error finding (`None`).
pub(crate) fn destination_name(
    ctx: &JobCtx,
    spec: &RestoreWork,
    p: &Prepared<'_>,
) -> Option<String> {
    let database = match &spec.database {
        Some(d) => d.clone(),
        None => default_database_name(&p.manifest.database, p.rec.backup_id.as_str()),
    };
    ctx.report.check(
        "destination",
        lifeboat_common::names::validate_database(&database).map_err(Into::into),
    )?;
    if spec.clean && !p.target.replaceable_databases.contains(&database) {
        ctx.report.error(
            "destination",
            format!(
                "target {} may replace only database(s) {} with --clean, not {database}; add {database:?} to replaceable_databases in its [[target]] in the agent's config to permit it",
                p.target.name,
                p.target.replaceable_databases.join(", ")
            ),
        );
        return None;
    }
    Some(database)
}

/// `orders_20261127t233000z_7f3a9c`, within PostgreSQL's 63-byte limit.
pub fn default_database_name(source: &str, backup_id: &str) -> String {
    let suffix = backup_id.to_ascii_lowercase().replace('-', "_");
    let room = 63 - suffix.len() - 1;
    let mut base: String = source.chars().take(room).collect();
    if base.is_empty() {
        base = "restore".into();
    }
    format!("{base}_{suffix}")
}

pub(crate) fn scratch_name(prefix: &str, job_id: &str) -> String {
    format!("{prefix}_{}", job_id.to_ascii_lowercase().replace('-', "_"))
}

/// Every table in the manifest must be restored with the same number of rows.
pub(crate) fn compare_counts(expected: &[TableRows], restored: &[TableRows]) -> Result<()> {
    let got: std::collections::BTreeMap<(&str, &str), i64> = restored
        .iter()
        .map(|r| ((r.schema.as_str(), r.table.as_str()), r.rows))
        .collect();
    let mut diffs = Vec::new();
    for e in expected {
        match got.get(&(e.schema.as_str(), e.table.as_str())) {
            Some(&n) if n == e.rows => {}
            Some(&n) => diffs.push(format!(
                "{}.{}: restored {n}, backup had {}",
                e.schema, e.table, e.rows
            )),
            None => diffs.push(format!("{}.{}: missing after restore", e.schema, e.table)),
        }
    }
    if !diffs.is_empty() {
        let shown: Vec<_> = diffs.iter().take(10).cloned().collect();
        bail!(
            "restored row counts differ from the backup's manifest ({} tables): {}",
            diffs.len(),
            shown.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_fit() {
        assert_eq!(
            default_database_name("orders", "20261127T233000Z-7f3a9c"),
            "orders_20261127t233000z_7f3a9c"
        );
        let long = default_database_name(&"x".repeat(63), "20261127T233000Z-7f3a9c");
        assert_eq!(long.len(), 63);
        lifeboat_common::names::validate_database(&long).expect("valid");
    }

    fn target(engine: Engine, profile: crate::provider::Provider, url: &str) -> TargetConfig {
        let url = url::Url::parse(url).expect("url");
        TargetConfig {
            copy_to: Vec::new(),
            encryption: None,
            name: "t".into(),
            engine,
            provider: profile.as_str().into(),
            profile,
            repository: "local".into(),
            mysql: (engine == Engine::Mysql)
                .then(|| crate::engine::mysql::ConnParams::from_url(&url).expect("params")),
            url,
            database: "db".into(),
            password_file: None,
            compression_level: 3,
            compression_auto: false,
            compression_threads: 0,
            restore_jobs: 1,
            row_counts: crate::config::RowCounts::Exact,
            pg_bin_dir: None,
            mysql_bin_dir: None,
            maintenance_database: "postgres".into(),
            allow_clean_restore: false,
            replaceable_databases: vec!["app".into()],
            mode: crate::config::BackupMode::Logical,
            restore_data_dirs: Vec::new(),
            drill_checks: Vec::new(),
            globals: crate::config::GlobalsCapture::Roles,
        }
    }

    #[test]
    fn engines_must_match() {
        use crate::provider::Provider;
        let pg_target = target(Engine::Postgres, Provider::Postgres, "postgres://u@h/db");
        let my_target = target(Engine::Mysql, Provider::Mariadb, "mysql://u@h/db");
        let rec = |engine| crate::work::testing::record("prod", engine);
        check_engine(&rec(Engine::Postgres), &pg_target).expect("same engine");
        check_engine(&rec(Engine::Mysql), &my_target).expect("same engine");
        let e = check_engine(&rec(Engine::Mysql), &pg_target)
            .expect_err("mysql into postgres")
            .to_string();
        assert!(
            e.contains("is a MySQL/MariaDB backup")
                && e.contains("PostgreSQL target t")
                && e.contains("engine = \"mysql\""),
            "{e}"
        );
        let e = check_engine(&rec(Engine::Postgres), &my_target)
            .expect_err("postgres into mysql")
            .to_string();
        assert!(e.contains("is a PostgreSQL backup"), "{e}");

        // The manifest's own engine and provider are checked as well.
        let mut m: Manifest = serde_json::from_str(MANIFEST).expect("manifest");
        check_source_provider(&m, &pg_target).expect("postgres into postgres");
        m.provider = "supabase".into();
        assert_eq!(
            check_source_provider(&m, &pg_target).expect("supabase into postgres"),
            Provider::Supabase
        );
        let e = check_source_provider(&m, &my_target).expect_err("into mysql");
        assert!(format!("{e:#}").contains("cannot be restored"), "{e:#}");
        m.provider = "oracle".into();
        check_source_provider(&m, &pg_target).expect_err("unknown provider");
    }

    const MANIFEST: &str = r#"{
  "schema_version": 1, "backup_id": "20261127T233000Z-7f3a9c", "environment": "prod",
  "target": "orders", "agent": "a", "repository": "local", "engine": "postgres",
  "provider": "postgres", "database": "orders",
  "server": {"version": "15.19", "version_num": 150019, "system_identifier": "1",
             "encoding": "UTF8", "collate": "C", "ctype": "C"},
  "tool": {"name": "pg_dump", "version": "15.19"}, "format": "pg_dump-custom",
  "compression": {"algorithm": "zstd", "level": 3}, "data_file": "data.pgdump.zst",
  "raw_size": 1, "raw_sha256": "", "stored_size": 1, "stored_sha256": "",
  "started_at": "", "finished_at": "", "started_at_ms": 1, "finished_at_ms": 2,
  "row_counts_kind": "exact", "row_counts": [], "lifeboat_version": "0"
}"#;

    #[test]
    fn count_comparison() {
        let t = |s: &str, n| TableRows {
            bytes: None,
            schema: "public".into(),
            table: s.into(),
            rows: n,
        };
        compare_counts(&[t("a", 1)], &[t("a", 1), t("b", 2)]).expect("equal");
        let e = compare_counts(&[t("a", 1), t("c", 3)], &[t("a", 2)])
            .expect_err("diff")
            .to_string();
        assert!(
            e.contains("public.a: restored 2, backup had 1") && e.contains("public.c: missing"),
            "{e}"
        );
    }
}
