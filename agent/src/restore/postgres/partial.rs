//! A partial PostgreSQL restore (`--table`, `--schema`): the chosen tables resolved against
//! the manifest, the archive's table of contents cut down to them, and, with
//! `--into-schema`, the new schema checked to be free. The load and its proof are the whole
//! restore's; see [`super::side_schema`] for the copy into the live database.

use anyhow::{Context, Result};
use lifeboat_common::secret::Secret;
use lifeboat_proto::domain::PartialRestore;

use super::{
    Plan, Prepared,
    partial_toc::partial_listing,
    side_schema::{SideCopy, copy_into_side_schema, schema_exists},
    toc::read_toc,
};
use crate::{
    config::TargetConfig,
    engine::postgres as pg,
    job::JobCtx,
    manifest::TableRows,
    restore::selection::{check_unique_names, select},
};

/// What a partial restore restores.
pub(super) struct PartialPlan {
    /// The chosen tables with the rows the manifest recorded.
    pub tables: Vec<TableRows>,
    /// The archive's table of contents for `pg_restore --use-list`.
    pub listing: String,
    pub into_schema: Option<String>,
}

/// Resolves the tables (an unknown one is an error finding naming what the backup holds) and
/// reads the archive's table of contents; `None` after an error finding.
pub(super) async fn plan(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    want: &PartialRestore,
    pg_restore: &std::path::Path,
) -> Option<PartialPlan> {
    let report = &ctx.report;
    let tables = report.check(
        "tables",
        select(&p.manifest.row_counts, want, p.rec.backup_id.as_str()),
    )?;
    if want.into_schema.is_some() {
        report.check("tables", check_unique_names(&tables))?;
    }
    ctx.set_phase("reading the archive's contents");
    let listing = report.check("contents", read_toc(ctx, p, pg_restore, true).await)?;
    let (listing, entries) = report.check(
        "contents",
        partial_listing(&listing, &tables, &want.schemas),
    )?;
    let rows: i64 = tables.iter().map(|t| t.rows).sum();
    report.ok(
        "tables",
        format!(
            "{} table(s) chosen ({rows} rows in the backup): {}; {entries} entries of the archive restore them",
            tables.len(),
            names(&tables)
        ),
    );
    Some(PartialPlan {
        tables,
        listing,
        into_schema: want.into_schema.clone(),
    })
}

fn names(tables: &[TableRows]) -> String {
    let mut s: Vec<String> = tables
        .iter()
        .take(10)
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    if tables.len() > 10 {
        s.push(format!("and {} more", tables.len() - 10));
    }
    s.join(", ")
}

/// `--into-schema`: the target's database must exist and the schema must not; findings go to
/// the report.
pub(super) async fn side_schema_free(
    ctx: &JobCtx,
    target: &TargetConfig,
    password: Option<&Secret<String>>,
    database: &str,
    side: &str,
) {
    let report = &ctx.report;
    let mut conn = match pg::connect(target, password, database).await {
        Ok(c) => c,
        Err(e) => {
            report.error(
                "destination",
                format!("cannot connect to the target's database {database} to restore into a new schema there: {e:#}"),
            );
            return;
        }
    };
    match schema_exists(&mut conn, side).await {
        Ok(false) => report.ok(
            "destination",
            format!(
                "schema {side} does not exist in {database} yet and is created; no other object there is touched"
            ),
        ),
        Ok(true) => report.error(
            "destination",
            format!(
                "schema {side} already exists in {database}; a partial restore only creates a new schema and never writes into an existing one: pick another --into-schema NAME"
            ),
        ),
        Err(e) => report.error("destination", format!("{e:#}")),
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// The dry run's steps for a partial restore.
pub(super) fn describe(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    plan: &Plan,
    pp: &PartialPlan,
    scratch: &str,
) {
    let r = &ctx.report;
    r.step(format!(
        "restore only {} table(s) ({}) with their indexes, constraints, defaults, triggers and owned sequences",
        pp.tables.len(),
        names(&pp.tables)
    ));
    r.step(if p.manifest.row_counts_kind == "exact" {
        "count the rows of those tables and compare them with the manifest's exact counts".into()
    } else {
        format!(
            "count the rows of those tables (the manifest's counts are {}: not compared)",
            p.manifest.row_counts_kind
        )
    });
    match &pp.into_schema {
        Some(side) => {
            r.step(format!(
                "in {scratch}, create schema {side} and move the tables into it; copy that schema alone into {} in one transaction (pg_dump --schema={side} | pg_restore --single-transaction)",
                plan.database
            ));
            r.step(format!(
                "count the rows in {}.{side} again; drop {scratch}",
                plan.database
            ));
            r.step(format!(
                "on any failure: drop {scratch} and the schema {side} this restore created; nothing else in {} is touched",
                plan.database
            ));
        }
        None => {
            r.step(format!("rename {scratch} to {}", plan.database));
            r.step(format!(
                "on any failure: drop {scratch}; {} is not created",
                plan.database
            ));
        }
    }
}

/// `--into-schema`: copies the proven tables from the scratch database into the new schema.
pub(super) async fn into_side_schema(
    ctx: &JobCtx,
    p: &Prepared<'_>,
    plan: &Plan,
    password: Option<&Secret<String>>,
    scratch: &str,
    side: &str,
) -> Result<()> {
    let pp = plan
        .partial
        .as_ref()
        .context("a copy into a new schema without a partial restore plan")?;
    let pg_dump = plan.pg_restore.with_file_name("pg_dump");
    let copy = SideCopy {
        target: p.target,
        password,
        pg_dump: &pg_dump,
        pg_restore: &plan.pg_restore,
        restore_args: &plan.restore_args,
    };
    let copied = copy_into_side_schema(
        ctx,
        &copy,
        scratch,
        &plan.database,
        side,
        &pp.tables,
        p.manifest.row_counts_kind == "exact",
    )
    .await?;
    let rows: i64 = copied.iter().map(|t| t.rows).sum();
    ctx.report.ok(
        "into_schema",
        format!(
            "{}.{side}: {} table(s), {rows} rows",
            plan.database,
            copied.len()
        ),
    );
    Ok(())
}
