//! A restore drill: a restore into a new scratch database (both SHA-256s, the size and every
//! table's row count checked against the manifest, as every restore does), then the target's
//! `drill_checks` run against the restored copy, the time to that usable, checked database
//! measured, and the scratch database dropped: always, also when the drill failed. A physical
//! base backup is drilled as a point-in-time restore into a new data directory instead
//! ([`physical`]).

pub mod physical;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::Drilled;
use sqlx::{AssertSqlSafe, Row};

use crate::{
    config::{Engine, TargetConfig},
    engine::{mysql as my, postgres as pg},
    job::JobCtx,
    work::RestoreWork,
};

/// Every drill database's name starts with this; the agent never drops another name.
pub const DRILL_DATABASE_PREFIX: &str = "lifeboat_drill_";

/// Runs the drill. On failure the error says what failed (the restore, or the check by its
/// text) and, if the scratch database could not be dropped, that too.
pub async fn run(ctx: &JobCtx, spec: &RestoreWork) -> Result<Drilled> {
    let started = Instant::now();
    let target = ctx
        .config
        .targets
        .get(&spec.target)
        .with_context(|| format!("this agent has no target {:?}", spec.target))?;
    if spec.data_dir.is_some() {
        bail!(
            "a drill names no data directory: the agent makes a new {DRILL_DATABASE_PREFIX}… directory under the target's restore_data_dirs; upgrade the coordinator"
        );
    }
    if spec.backup.is_physical() {
        return physical::run(ctx, spec, target, started).await;
    }
    let database = match &spec.database {
        Some(d) if d.starts_with(DRILL_DATABASE_PREFIX) && !spec.clean => d.clone(),
        _ => bail!(
            "a drill restores into a new database named {DRILL_DATABASE_PREFIX}…, never over an existing one; upgrade the coordinator"
        ),
    };
    // The name is the job's own; one that exists already is not ours to drop.
    if exists(target, &database).await? {
        bail!(
            "database {database} already exists on target {}; a drill never touches an existing database: drop or rename it, then run the drill again",
            target.name
        );
    }
    let outcome = restore_and_check(ctx, spec, target, &database, started).await;
    ctx.set_phase("dropping");
    let dropped = drop(target, &database).await;
    if let Err(e) = &dropped {
        ctx.report.error(
            "drill",
            format!("the scratch database {database} could not be dropped: {e:#}; drop it by hand"),
        );
    } else {
        ctx.report
            .ok("drill", format!("scratch database {database} dropped"));
    }
    match (outcome, dropped) {
        (Ok(mut d), dropped) => {
            d.dropped = dropped.is_ok();
            Ok(d)
        }
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => Err(e.context(format!(
            "and the scratch database {database} could not be dropped ({d:#}); drop it by hand"
        ))),
    }
}

async fn restore_and_check(
    ctx: &JobCtx,
    spec: &RestoreWork,
    target: &TargetConfig,
    database: &str,
    started: Instant,
) -> Result<Drilled> {
    let restored = crate::restore::run(ctx, spec).await?;
    ctx.set_phase("checking");
    let passed = run_checks(ctx, &target.drill_checks, |check| async move {
        run_check(target, database, &check).await
    })
    .await?;
    let rto_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    ctx.report.ok(
        "drill",
        format!(
            "{database}: restored and checked ({} check(s)) in {:.3} s",
            passed.len(),
            std::time::Duration::from_millis(rto_ms).as_secs_f64()
        ),
    );
    Ok(Drilled {
        restored,
        rto_ms,
        checks: passed,
        dropped: false,
    })
}

/// Runs one check in the restored database: exactly one row with one boolean `true`.
/// Runs each of `checks` with `run` (which connects to the restored copy), in order; the first
/// that does not return true fails the drill. Each is reported; returns those that passed.
pub(crate) async fn run_checks<F, Fut>(
    ctx: &JobCtx,
    checks: &[String],
    run: F,
) -> Result<Vec<String>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut passed = Vec::new();
    for check in checks {
        let verdict = tokio::select! {
            () = ctx.cancel.cancelled() => bail!("cancelled while running drill check {check:?}"),
            v = run(check.clone()) => v,
        };
        match verdict {
            Ok(()) => {
                ctx.report.ok("drill check", format!("{check}: true"));
                passed.push(check.clone());
            }
            Err(e) => {
                ctx.report.error("drill check", format!("{check}: {e:#}"));
                bail!("drill check {check:?} failed: {e:#}");
            }
        }
    }
    Ok(passed)
}

async fn run_check(target: &TargetConfig, database: &str, check: &str) -> Result<()> {
    let password = target.password()?;
    let value = match target.engine {
        Engine::Postgres => {
            let mut conn = pg::connect(target, password.as_ref(), database).await?;
            let rows = sqlx::query(AssertSqlSafe(check.to_owned()))
                .fetch_all(&mut conn)
                .await
                .context("the query failed")?;
            one_value(&rows, |r| r.try_get::<Option<bool>, _>(0).ok().flatten())?
        }
        Engine::Mysql => {
            let params = target
                .mysql
                .as_ref()
                .context("MySQL target without connection parameters")?;
            let mut conn = my::connect(params, password.as_ref(), Some(database)).await?;
            let rows = sqlx::query(AssertSqlSafe(check.to_owned()))
                .fetch_all(&mut conn)
                .await
                .context("the query failed")?;
            // MySQL and MariaDB have no boolean type: `count(*) > 0` is an integer 1 or 0.
            one_value(&rows, |r| {
                r.try_get::<Option<bool>, _>(0)
                    .ok()
                    .flatten()
                    .or_else(|| {
                        r.try_get::<Option<i64>, _>(0)
                            .ok()
                            .flatten()
                            .map(|v| v == 1)
                    })
                    .or_else(|| {
                        r.try_get::<Option<i32>, _>(0)
                            .ok()
                            .flatten()
                            .map(|v| v == 1)
                    })
                    .or_else(|| r.try_get::<Option<i8>, _>(0).ok().flatten().map(|v| v == 1))
            })?
        }
    };
    if !value {
        bail!("returned false");
    }
    Ok(())
}

/// The single boolean of a check's result.
fn one_value<R: Row>(rows: &[R], value: impl Fn(&R) -> Option<bool>) -> Result<bool> {
    let [row] = rows else {
        bail!(
            "returned {} rows; a drill check must return exactly one row with one boolean",
            rows.len()
        );
    };
    if row.len() != 1 {
        bail!(
            "returned {} columns; a drill check must return exactly one boolean",
            row.len()
        );
    }
    value(row).context("did not return a boolean (true or false); write it as a condition, e.g. SELECT count(*) > 0 FROM orders")
}

/// A connection to the drill target's server, outside any one database.
enum Server {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl Server {
    async fn open(target: &TargetConfig) -> Result<Self> {
        let password = target.password()?;
        Ok(match target.engine {
            Engine::Postgres => Server::Pg(
                pg::connect(target, password.as_ref(), &target.maintenance_database).await?,
            ),
            Engine::Mysql => {
                let params = target
                    .mysql
                    .as_ref()
                    .context("MySQL target without connection parameters")?;
                Server::My(my::connect(params, password.as_ref(), None).await?)
            }
        })
    }
}

async fn exists(target: &TargetConfig, database: &str) -> Result<bool> {
    match Server::open(target).await? {
        Server::Pg(mut c) => pg::database_exists(&mut c, database).await,
        Server::My(mut c) => my::database_exists(&mut c, database).await,
    }
}

async fn drop(target: &TargetConfig, database: &str) -> Result<()> {
    if !database.starts_with(DRILL_DATABASE_PREFIX) {
        bail!("refusing to drop {database}: not a drill database");
    }
    match Server::open(target).await? {
        Server::Pg(mut c) => pg::drop_database(&mut c, database).await,
        Server::My(mut c) => my::drop_database(&mut c, database).await,
    }
}
