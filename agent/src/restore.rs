//! The restore job. The archive streams from the repository through hash checks into
//! `pg_restore`, always into a fresh scratch database; only when the stream matched both
//! recorded hashes, pg_restore succeeded and the row counts agree with the manifest is the
//! scratch database renamed to its final name. A corrupt archive, a failed or cancelled restore
//! therefore never leaves a half-restored database under the name the operator asked for.
//! MySQL/MariaDB targets: see [`mysql`].

mod mysql;

use std::{io::BufWriter, process::Stdio};

use anyhow::{Context, Result, bail};
use lifeboat_common::{
    ids::validate_id,
    names::{TargetName, validate_database},
};
use lifeboat_proto as pb;
use sqlx::postgres::PgConnection;

use crate::{
    config::{Engine, TargetConfig},
    engine::postgres as pg,
    job::JobCtx,
    manifest::{Manifest, TableRows},
    pipeline::{self, Digest, Expected, PipelineError},
    process::{describe_status, stderr_tail, stdin_file},
    repo::{self, MANIFEST_FILE, PG_DATA_FILE, Repository, backup_dir_key, body::StreamReader},
};

/// Where a backup's files are, checked against the catalog's record.
pub struct Located {
    /// The engine the catalog recorded for the backup.
    pub engine: Engine,
    pub repo: Repository,
    pub data_key: String,
    pub manifest_key: String,
    pub expected: Expected,
}

/// Validates a backup record received from the coordinator and finds its files in one of this
/// agent's repositories. Keys are recomputed from validated names, never taken from the message.
pub fn locate(ctx: &JobCtx, rec: &pb::BackupRecord) -> Result<Located> {
    validate_id("backup id", &rec.backup_id)?;
    let target = TargetName::parse(&rec.target)?;
    if target.environment != rec.environment {
        bail!(
            "backup record is inconsistent: target {} is not in environment {}",
            rec.target,
            rec.environment
        );
    }
    for (what, h) in [("stored", &rec.stored_sha256), ("raw", &rec.raw_sha256)] {
        if h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            bail!("backup record has an invalid {what} SHA-256");
        }
    }
    if !ctx.config.repositories.contains_key(&rec.repository) {
        bail!(
            "this agent has no repository named {:?}; add it to the agent's config to restore backups stored there",
            rec.repository
        );
    }
    let dir_key = backup_dir_key(&target.environment, &target.name, &rec.backup_id);
    let data_file = match pb::Engine::try_from(rec.engine) {
        Ok(pb::Engine::Postgres) => PG_DATA_FILE,
        Ok(pb::Engine::Mysql) => crate::engine::mysql::DATA_FILE,
        _ => bail!(
            "backup record {} names no engine this agent knows",
            rec.backup_id
        ),
    };
    let data_key = format!("{dir_key}/{data_file}");
    let manifest_key = format!("{dir_key}/{MANIFEST_FILE}");
    if !rec.data_key.is_empty() && rec.data_key != data_key {
        bail!(
            "backup record names data file {:?}, expected {data_key:?}",
            rec.data_key
        );
    }
    let engine = match pb::Engine::try_from(rec.engine) {
        Ok(pb::Engine::Mysql) => Engine::Mysql,
        _ => Engine::Postgres,
    };
    Ok(Located {
        engine,
        repo: repo::open(&ctx.config, &rec.repository)?,
        data_key,
        manifest_key,
        expected: Expected {
            stored: Digest {
                size: rec.stored_size,
                sha256: rec.stored_sha256.clone(),
            },
            raw: Digest {
                size: rec.raw_size,
                sha256: rec.raw_sha256.clone(),
            },
        },
    })
}

/// Reads the manifest's bytes; an I/O error is an error, not a verdict on the backup.
pub async fn read_manifest_bytes(loc: &Located) -> Result<Option<Vec<u8>>> {
    Ok(loc
        .repo
        .get_bytes(&loc.manifest_key, crate::manifest::MAX_MANIFEST_BYTES)
        .await?)
}

/// Opens the data object for streaming, after checking its stored size against the catalog
/// (a truncated or replaced object is refused before anything is restored). `Ok(None)` if it
/// is missing.
pub async fn open_data(loc: &Located) -> Result<Option<StreamReader>> {
    let Some(head) = loc.repo.head(&loc.data_key).await? else {
        return Ok(None);
    };
    if head.size != loc.expected.stored.size {
        return Err(PipelineError::Mismatch {
            what: format!(
                "{} holds {} bytes, the catalog recorded {}",
                loc.data_key, head.size, loc.expected.stored.size
            ),
        }
        .into());
    }
    let Some(stream) = loc.repo.get(&loc.data_key, 0).await? else {
        return Ok(None);
    };
    Ok(Some(StreamReader::new(stream, 4)))
}

/// Parses the manifest and checks it agrees with the catalog.
pub fn check_manifest(loc: &Located, bytes: &[u8]) -> Result<Manifest> {
    let m = Manifest::from_json(bytes)?;
    if m.stored_sha256 != loc.expected.stored.sha256
        || m.stored_size != loc.expected.stored.size
        || m.raw_sha256 != loc.expected.raw.sha256
        || m.raw_size != loc.expected.raw.size
    {
        bail!(
            "manifest.json disagrees with the catalog about sizes or hashes; the backup was changed after it was written"
        );
    }
    if Engine::from_manifest(&m.engine) != Some(loc.engine)
        || !loc.data_key.ends_with(&format!("/{}", m.data_file))
    {
        bail!(
            "manifest.json disagrees with the catalog about the engine or data file (manifest: engine {:?}, {:?}; catalog: {}, {})",
            m.engine,
            m.data_file,
            loc.engine.as_str(),
            loc.data_key
        );
    }
    Ok(m)
}

/// Reads the manifest and checks it agrees with the catalog.
pub async fn read_manifest(loc: &Located) -> Result<Option<Manifest>> {
    match read_manifest_bytes(loc).await? {
        Some(bytes) => check_manifest(loc, &bytes).map(Some),
        None => Ok(None),
    }
}

pub async fn run(ctx: &JobCtx, spec: &pb::RestoreSpec) -> Result<pb::RestoreResult> {
    let rec = spec
        .backup
        .as_ref()
        .context("restore job without a backup record")?;
    let target = ctx
        .config
        .targets
        .get(&spec.target)
        .with_context(|| format!("this agent has no target {:?}", spec.target))?;
    check_engine(rec, target)?;
    if spec.clean && !target.allow_clean_restore {
        bail!(
            "target {} does not allow restores that replace a database (--clean); set allow_clean_restore = true in its [[target]] in the agent's config to permit it",
            target.name
        );
    }
    let loc = locate(ctx, rec)?;
    ctx.set_phase("checking");
    let manifest = read_manifest(&loc).await?.with_context(|| {
        format!(
            "backup {} has no manifest in {}; it is incomplete or was deleted",
            rec.backup_id,
            loc.repo.describe()
        )
    })?;
    let source_provider = check_source_provider(&manifest, target)?;
    if target.engine == Engine::Mysql {
        return mysql::run(ctx, spec, rec, target, &loc, &manifest, source_provider).await;
    }

    let database = if spec.database.is_empty() {
        default_database_name(&manifest.database, &rec.backup_id)
    } else {
        spec.database.clone()
    };
    validate_database(&database)?;
    if database == target.maintenance_database {
        bail!(
            "refusing to restore over the maintenance database {database}; pick another --database"
        );
    }

    ctx.set_phase("connecting");
    let password = target.password()?;
    let mut admin = pg::connect(target, password.as_ref(), &target.maintenance_database).await?;
    let facts = pg::server_facts(&mut admin).await?;
    let backup_major = manifest.server.version_num / 10000;
    if backup_major > facts.major {
        bail!(
            "backup {} comes from PostgreSQL {} and cannot be restored into the older PostgreSQL {} at {}",
            rec.backup_id,
            manifest.server.version,
            facts.version,
            pg::describe(target, &database)
        );
    }
    let pg_restore = pg::tool(target, "pg_restore");
    let (tool_version, tool_major) = pg::tool_version(&pg_restore).await?;
    let dump_major =
        pg::parse_tool_version(&format!("x (x) {}", manifest.tool.version)).map_or(0, |v| v.1);
    if tool_major < dump_major.max(facts.major) {
        bail!(
            "pg_restore {tool_version} is older than the archive (pg_dump {}) or the server (PostgreSQL {}); install newer client tools or set pg_bin_dir",
            manifest.tool.version,
            facts.version
        );
    }

    let exists = pg::database_exists(&mut admin, &database).await?;
    if pg::is_template(&mut admin, &database).await? {
        bail!("{database} is a template database; lifeboat never restores over one");
    }
    if exists && !spec.clean {
        // Any existing database, even an empty-looking one, is only replaced on an explicit
        // --clean (which the coordinator allows only to admins).
        let mut existing = pg::connect(target, password.as_ref(), &database).await?;
        let empty = pg::database_is_empty(&mut existing).await?;
        let _ = sqlx::Connection::close(existing).await;
        bail!(
            "database {database} already exists{}; restore into a new database with --database NAME, or replace it with --clean (admin role)",
            if empty { "" } else { " and is not empty" }
        );
    }

    let scratch = scratch_name("lifeboat_restore", &ctx.job_id);
    pg::create_database(&mut admin, &scratch, &manifest.server).await?;
    let restored = restore_into(
        ctx,
        target,
        password.as_ref(),
        &loc,
        &pg_restore,
        &scratch,
        &manifest,
    )
    .await;
    let counts = match restored {
        Ok(c) => c,
        Err(e) => {
            if let Err(drop_err) = pg::drop_database(&mut admin, &scratch).await {
                tracing::warn!("failed to drop scratch database {scratch}: {drop_err:#}");
            }
            return Err(e);
        }
    };

    ctx.set_phase("swapping");
    if let Err(e) = swap_in(&mut admin, &scratch, &database, exists, &ctx.job_id).await {
        // Keep the restored copy when the original could not be put back under its name.
        if pg::database_exists(&mut admin, &database)
            .await
            .unwrap_or(false)
        {
            let _ = pg::drop_database(&mut admin, &scratch).await;
        }
        return Err(e);
    }
    let _ = sqlx::Connection::close(admin).await;
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
        raw_bytes: loc.expected.raw.size,
    })
}

/// Refuses a backup of one engine for a target of the other.
fn check_engine(rec: &pb::BackupRecord, target: &TargetConfig) -> Result<()> {
    let backup_engine = match pb::Engine::try_from(rec.engine) {
        Ok(pb::Engine::Postgres) => Engine::Postgres,
        Ok(pb::Engine::Mysql) => Engine::Mysql,
        _ => bail!(
            "backup {} names no engine this agent knows; it cannot be restored",
            rec.backup_id
        ),
    };
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
fn check_source_provider(
    manifest: &Manifest,
    target: &TargetConfig,
) -> Result<crate::provider::Provider> {
    let from = crate::provider::Provider::parse(&manifest.provider).with_context(|| {
        format!(
            "the backup's manifest names an unknown provider {:?}",
            manifest.provider
        )
    })?;
    if Engine::from_manifest(&manifest.engine) != Some(target.engine) {
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

/// Streams the archive into pg_restore against `scratch`, then counts rows there and compares
/// them with the manifest.
async fn restore_into(
    ctx: &JobCtx,
    target: &TargetConfig,
    password: Option<&lifeboat_common::secret::Secret<String>>,
    loc: &Located,
    pg_restore: &std::path::Path,
    scratch: &str,
    manifest: &Manifest,
) -> Result<Vec<TableRows>> {
    // Owners, privileges and the source provider's own schemas (checked in `run`).
    let source = crate::provider::Provider::parse(&manifest.provider).unwrap_or(target.profile);
    let provider_args = &crate::provider::restore_args(
        source,
        target.profile,
        &crate::provider::RestoreOptions::default(),
    );
    let file = open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })?;

    let passfile = password
        .map(|p| pg::PassFile::create(&ctx.config.state_dir, p))
        .transpose()?;
    ctx.set_phase("restoring");
    let mut cmd = pg::child_command(pg_restore, passfile.as_ref());
    cmd.arg("--no-password")
        .arg("--exit-on-error")
        .args(provider_args)
        .arg("--dbname")
        .arg(pg::url_for(target, scratch).as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", pg_restore.display()))?;
    let stderr = stderr_tail(child.stderr.take().context("pg_restore stderr")?);
    let stdin = stdin_file(child.stdin.take().context("pg_restore stdin")?)?;
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let mut pipeline = tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(256 * 1024, stdin);
        // Dropping the returned writer closes pg_restore's stdin.
        pipeline::decompress(file, out, pg::PGDMP_MAGIC, &expected, &counters, &cancel).map(drop)
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
        // Never let pg_restore commit the rest of a stream we have rejected.
        let _ = child.start_kill();
    }
    let status = child.wait().await.context("wait for pg_restore")?;
    let stderr = stderr.await.unwrap_or_default();
    drop(passfile);
    if ctx.cancel.is_cancelled() {
        bail!("cancelled");
    }
    match result {
        Err(PipelineError::Output(_)) | Ok(()) if !status.success() => bail!(
            "pg_restore failed ({}): {}",
            describe_status(&status),
            if stderr.is_empty() {
                "no error output"
            } else {
                &stderr
            }
        ),
        Err(e) => return Err(e).with_context(|| format!("restore backup from {}", loc.data_key)),
        Ok(()) => {}
    }

    ctx.set_phase("counting");
    let mut conn = pg::connect(target, password, scratch).await?;
    // pg_restore's --exclude-schema leaves the objects out but still creates the schemas
    // themselves: drop them while they are empty (RESTRICT keeps anything else that landed).
    for schema in provider_args
        .iter()
        .filter_map(|a| a.strip_prefix("--exclude-schema="))
    {
        let sql = format!("DROP SCHEMA IF EXISTS {} RESTRICT", pg::quote_ident(schema));
        // The identifier is quoted with quote_ident.
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            tracing::warn!("left the skipped schema {schema} in place: {e}");
        }
    }
    let counts = pg::row_counts(&mut conn, true).await?;
    let _ = sqlx::Connection::close(conn).await;
    if manifest.row_counts_kind == "exact" {
        // Tables of schemas the restore leaves out (a provider's own) are not expected back.
        let expected: Vec<TableRows> = manifest
            .row_counts
            .iter()
            .filter(|r| !provider_args.contains(&format!("--exclude-schema={}", r.schema)))
            .cloned()
            .collect();
        compare_counts(&expected, &counts)?;
    }
    Ok(counts)
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
    fn default_names_fit() {
        assert_eq!(
            default_database_name("orders", "20261127T233000Z-7f3a9c"),
            "orders_20261127t233000z_7f3a9c"
        );
        let long = default_database_name(&"x".repeat(63), "20261127T233000Z-7f3a9c");
        assert_eq!(long.len(), 63);
        validate_database(&long).expect("valid");
    }

    fn target(engine: Engine, profile: crate::provider::Provider, url: &str) -> TargetConfig {
        let url = url::Url::parse(url).expect("url");
        TargetConfig {
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
            compression_threads: 0,
            row_counts: crate::config::RowCounts::Exact,
            pg_bin_dir: None,
            mysql_bin_dir: None,
            maintenance_database: "postgres".into(),
            allow_clean_restore: false,
        }
    }

    #[test]
    fn engines_must_match() {
        use crate::provider::Provider;
        let pg_target = target(Engine::Postgres, Provider::Postgres, "postgres://u@h/db");
        let my_target = target(Engine::Mysql, Provider::Mariadb, "mysql://u@h/db");
        let rec = |engine: pb::Engine| pb::BackupRecord {
            backup_id: "20261127T233000Z-7f3a9c".into(),
            engine: engine as i32,
            ..Default::default()
        };
        check_engine(&rec(pb::Engine::Postgres), &pg_target).expect("same engine");
        check_engine(&rec(pb::Engine::Mysql), &my_target).expect("same engine");
        let e = check_engine(&rec(pb::Engine::Mysql), &pg_target)
            .expect_err("mysql into postgres")
            .to_string();
        assert!(
            e.contains("is a MySQL/MariaDB backup")
                && e.contains("PostgreSQL target t")
                && e.contains("engine = \"mysql\""),
            "{e}"
        );
        let e = check_engine(&rec(pb::Engine::Postgres), &my_target)
            .expect_err("postgres into mysql")
            .to_string();
        assert!(e.contains("is a PostgreSQL backup"), "{e}");
        check_engine(&rec(pb::Engine::Unspecified), &pg_target).expect_err("no engine");

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
