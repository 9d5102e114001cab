//! A partial restore into a new schema of the target's own database (`--into-schema`). The
//! chosen tables are restored and proven in a private scratch database first, like every
//! restore; there they are moved into the new schema (`ALTER TABLE … SET SCHEMA` takes their
//! indexes, constraints and owned sequences along), and only that schema is copied into the
//! live database: `pg_dump --schema=NEW` of the scratch database piped into
//! `pg_restore --single-transaction`. Nothing the copy creates lies outside the new schema,
//! so no live object is touched, and a failure part-way leaves nothing (one transaction).
//! See docs/adr/0023-partial-restore.md.

use std::{path::Path, process::Stdio};

use anyhow::{Context, Result, bail};
use lifeboat_common::secret::Secret;
use sqlx::{AssertSqlSafe, postgres::PgConnection};

use crate::{
    config::TargetConfig,
    engine::postgres as pg,
    job::JobCtx,
    manifest::TableRows,
    process::{describe_status, stderr_tail},
};

/// Whether schema `name` exists in the connection's database.
pub(super) async fn schema_exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .context("look for the schema")
}

/// What the copy needs: the tools and the restore's owner options.
pub(super) struct SideCopy<'a> {
    pub target: &'a TargetConfig,
    pub password: Option<&'a Secret<String>>,
    pub pg_dump: &'a Path,
    pub pg_restore: &'a Path,
    pub restore_args: &'a [String],
}

/// Moves the `tables` restored in `scratch` into the new schema `side` there, copies that
/// schema into `database`, and checks the rows landed there as the manifest recorded them
/// (when its counts are exact). A mismatch drops the new schema again.
pub(super) async fn copy_into_side_schema(
    ctx: &JobCtx,
    c: &SideCopy<'_>,
    scratch: &str,
    database: &str,
    side: &str,
    tables: &[TableRows],
    exact: bool,
) -> Result<Vec<TableRows>> {
    ctx.set_phase("moving into the new schema");
    let mut conn = pg::connect(c.target, c.password, scratch).await?;
    let mut sql = format!("CREATE SCHEMA {};", pg::quote_ident(side));
    for t in tables {
        sql.push_str(&format!(
            "ALTER TABLE {}.{} SET SCHEMA {};",
            pg::quote_ident(&t.schema),
            pg::quote_ident(&t.table),
            pg::quote_ident(side)
        ));
    }
    // Every identifier is quoted with quote_ident.
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .context("move the restored tables into the new schema in the scratch database")?;
    let _ = sqlx::Connection::close(conn).await;

    ctx.set_phase("copying into the live database");
    copy_schema(ctx, c, scratch, database, side).await?;

    ctx.set_phase("counting");
    let mut live = pg::connect(c.target, c.password, database).await?;
    let counted = count_side(&mut live, side, tables).await;
    let checked = counted.and_then(|got| {
        if exact {
            super::compare_counts(
                &tables
                    .iter()
                    .map(|t| TableRows {
                        schema: side.to_owned(),
                        ..t.clone()
                    })
                    .collect::<Vec<_>>(),
                &got,
            )?;
        }
        Ok(got)
    });
    if checked.is_err() {
        // The schema did not exist before this restore (checked, and created inside the copy's
        // one transaction): it is this restore's own.
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg::quote_ident(side));
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut live).await {
            tracing::warn!(
                "failed to drop the new schema {side} in {database}: {e}; drop it by hand"
            );
        }
    }
    let _ = sqlx::Connection::close(live).await;
    checked
}

/// `pg_dump --format=custom --schema=SIDE scratch | pg_restore --single-transaction
/// --exit-on-error --dbname=database`.
async fn copy_schema(
    ctx: &JobCtx,
    c: &SideCopy<'_>,
    scratch: &str,
    database: &str,
    side: &str,
) -> Result<()> {
    let passfile = c
        .password
        .map(|pw| pg::PassFile::create(&ctx.config.state_dir, pw))
        .transpose()?;
    let mut dump = pg::child_command(c.pg_dump, passfile.as_ref());
    dump.arg("--no-password")
        .arg("--format=custom")
        .arg("--compress=0")
        // A pattern: quoted so that its case is kept (`Restored` is not `restored`); the name
        // holds only letters, digits and '_'. --strict-names: no match is an error.
        .arg(format!("--schema=\"{side}\""))
        .arg("--strict-names")
        .arg("--dbname")
        .arg(pg::url_for(c.target, scratch).as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut dump = dump
        .spawn()
        .with_context(|| format!("start {}", c.pg_dump.display()))?;
    let dump_err = stderr_tail(dump.stderr.take().context("pg_dump stderr")?);
    let dump_out: Stdio = dump
        .stdout
        .take()
        .context("pg_dump stdout")?
        .try_into()
        .context("pipe pg_dump into pg_restore")?;
    let mut restore = pg::child_command(c.pg_restore, passfile.as_ref());
    restore
        .arg("--no-password")
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .args(
            c.restore_args
                .iter()
                .filter(|a| !a.starts_with("--exclude-schema")),
        )
        .arg("--dbname")
        .arg(pg::url_for(c.target, database).as_str())
        .stdin(dump_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut restore = restore
        .spawn()
        .with_context(|| format!("start {}", c.pg_restore.display()))?;
    let restore_err = stderr_tail(restore.stderr.take().context("pg_restore stderr")?);
    let (dump_status, restore_status) = tokio::select! {
        s = async { tokio::join!(dump.wait(), restore.wait()) } => s,
        () = ctx.cancel.cancelled() => {
            let _ = dump.kill().await;
            let _ = restore.kill().await;
            bail!("cancelled");
        }
    };
    let dump_status = dump_status.context("wait for pg_dump")?;
    let restore_status = restore_status.context("wait for pg_restore")?;
    let (dump_err, restore_err) = (
        dump_err.await.unwrap_or_default(),
        restore_err.await.unwrap_or_default(),
    );
    drop(passfile);
    if !dump_status.success() {
        bail!(
            "pg_dump of the new schema {side} from the scratch database failed ({}): {dump_err}; nothing was created in {database}",
            describe_status(&dump_status)
        );
    }
    if !restore_status.success() {
        bail!(
            "pg_restore of the new schema {side} into {database} failed ({}): {restore_err}; it ran in one transaction, so nothing was created in {database}",
            describe_status(&restore_status)
        );
    }
    Ok(())
}

/// Exact row counts of the tables in `side`.
async fn count_side(
    conn: &mut PgConnection,
    side: &str,
    tables: &[TableRows],
) -> Result<Vec<TableRows>> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let q = format!("{}.{}", pg::quote_ident(side), pg::quote_ident(&t.table));
        // Both parts are quoted with quote_ident.
        let rows = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT count(*) FROM {q}")))
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("count rows of {q}"))?;
        out.push(TableRows {
            bytes: None,
            schema: side.to_owned(),
            table: t.table.clone(),
            rows,
        });
    }
    Ok(out)
}
