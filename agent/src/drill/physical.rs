//! A restore drill of a physical base backup: a point-in-time restore to the latest archived
//! WAL into a new data directory `lifeboat_drill_<job>` under the drill target's first
//! `restore_data_dirs` entry, through the ordinary data-directory restore (hashes,
//! `pg_verifybackup`, recovery settings, the server started as the directory's owner on a free
//! port and watched until it is promoted); then the target's `drill_checks` run against that
//! server over 127.0.0.1, the time to there is measured, and the server is stopped and the
//! directory removed: always, also when the drill failed or was cancelled. A drill the agent
//! did not live to clean up (a crash, kill -9) is cleaned up when the agent starts again
//! ([`sweep`]).

use std::{
    os::unix::fs::{DirBuilderExt, MetadataExt},
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{DataDir, Drilled, Recovery, RecoveryAction, RecoveryTarget};
use sqlx::{AssertSqlSafe, Connection, Row, postgres::PgConnectOptions};

use super::{DRILL_DATABASE_PREFIX, one_value};
use crate::{
    config::{Engine, TargetConfig},
    job::JobCtx,
    work::RestoreWork,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the drill of the physical backup `spec.backup` on `target`; `started` is the job's
/// start, from which the RTO counts.
pub(super) async fn run(
    ctx: &JobCtx,
    spec: &RestoreWork,
    target: &TargetConfig,
    started: Instant,
) -> Result<Drilled> {
    let name = match &spec.database {
        Some(n) if is_drill_name(n) && !spec.clean => n.clone(),
        _ => bail!(
            "a drill of a physical backup restores into a new directory named {DRILL_DATABASE_PREFIX}…; upgrade the coordinator"
        ),
    };
    if target.engine != Engine::Postgres {
        bail!(
            "backup {} is a PostgreSQL base backup; drill it into a PostgreSQL target",
            spec.backup.backup_id
        );
    }
    let base = target.restore_data_dirs.first().with_context(|| {
        format!(
            "a drill of a physical backup restores into a new data directory under the drill target's restore_data_dirs, and target {} lists none; add one to its [[target]] in the agent's config, e.g. restore_data_dirs = [\"/srv/pg/restores\"] (owned by the PostgreSQL user)",
            target.name
        )
    })?;
    let dir = base.join(&name);
    let data_dir = DataDir::parse(dir.display().to_string())
        .map_err(|e| anyhow::anyhow!("drill directory {}: {}", dir.display(), e.0))?;
    {
        let (base, dir) = (base.clone(), dir.clone());
        tokio::task::spawn_blocking(move || create(&base, &dir))
            .await
            .context("create task panicked")??;
    }
    ctx.report.ok(
        "drill",
        format!(
            "{dir}: a new directory for the point-in-time restore of backup {} to the latest archived WAL",
            spec.backup.backup_id,
            dir = dir.display()
        ),
    );
    let outcome = restore_and_check(ctx, spec, target, data_dir, started).await;
    ctx.set_phase("cleaning up");
    let cleaned = cleanup(target, base, &dir).await;
    match &cleaned {
        Ok(()) => ctx.report.ok(
            "drill",
            format!(
                "the drill's server was stopped and {} removed",
                dir.display()
            ),
        ),
        Err(e) => ctx.report.error(
            "drill",
            format!(
                "the drill's data directory {} could not be cleaned up: {e:#}; stop its server and remove it by hand",
                dir.display()
            ),
        ),
    }
    match (outcome, cleaned) {
        (Ok(mut d), cleaned) => {
            d.dropped = cleaned.is_ok();
            Ok(d)
        }
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(e.context(format!(
            "and the drill's data directory {} could not be cleaned up ({c:#}); stop its server and remove it by hand",
            dir.display()
        ))),
    }
}

/// `lifeboat_drill_` and then only lowercase letters, digits and underscores: one plain path
/// component, never `..`.
fn is_drill_name(name: &str) -> bool {
    name.len() <= 63
        && name.len() > DRILL_DATABASE_PREFIX.len()
        && name.starts_with(DRILL_DATABASE_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Creates the drill's directory (mode 0700); it must not exist. An agent running as root
/// gives it to the owner of `base` (PostgreSQL does not run as root).
fn create(base: &Path, dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(base).with_context(|| {
        format!(
            "restore_data_dirs entry {} cannot be used for drills; create it, owned by the PostgreSQL user",
            base.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "restore_data_dirs entry {} is not a directory",
            base.display()
        );
    }
    let euid = rustix::process::geteuid().as_raw();
    let owner = match (euid, meta.uid()) {
        (0, 0) => bail!(
            "restore_data_dirs entry {} belongs to root and this agent runs as root; a drill's server runs as the owner of the directory it is restored under, and PostgreSQL does not run as root: give {} to the PostgreSQL user (chown postgres: {})",
            base.display(),
            base.display(),
            base.display()
        ),
        (0, uid) => Some((uid, meta.gid())),
        _ => None,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; a drill never touches an existing directory: remove it (or run the drill again for a new name)",
                dir.display()
            ),
            _ => anyhow::Error::new(e).context(format!("create {}", dir.display())),
        })?;
    if let Some((uid, gid)) = owner
        && let Err(e) = std::os::unix::fs::chown(dir, Some(uid), Some(gid))
    {
        let _ = std::fs::remove_dir(dir);
        return Err(e).with_context(|| format!("give {} to uid {uid}", dir.display()));
    }
    Ok(())
}

/// The restore (started, promoted), then the checks; the drill's result.
async fn restore_and_check(
    ctx: &JobCtx,
    spec: &RestoreWork,
    target: &TargetConfig,
    data_dir: DataDir,
    started: Instant,
) -> Result<Drilled> {
    let port = free_port()?;
    let work = RestoreWork {
        database: None,
        clean: false,
        data_dir: Some(data_dir),
        recovery: Some(Recovery {
            target: RecoveryTarget::Latest,
            action: RecoveryAction::Promote,
        }),
        start_port: Some(port),
        partial: None,
        // Still a drill: the data-directory restore leaves the server to it.
        drill: true,
        ..spec.clone()
    };
    let restored = crate::restore::run(ctx, &work).await?;
    crate::swap_journal::test_pause("drill-started").await;
    ctx.set_phase("checking");
    let passed = super::run_checks(ctx, &target.drill_checks, |check| async move {
        run_check(target, port, &check).await
    })
    .await?;
    let rto_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    ctx.report.ok(
        "drill",
        format!(
            "backup {} recovered to the latest archived WAL, promoted and checked ({} check(s)) in {:.3} s",
            spec.backup.backup_id,
            passed.len(),
            Duration::from_millis(rto_ms).as_secs_f64()
        ),
    );
    Ok(Drilled {
        restored,
        rto_ms,
        checks: passed,
        dropped: false,
    })
}

/// A port free on 127.0.0.1 now (the data-directory restore checks it again before it starts
/// the server).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("find a free port")?;
    Ok(l.local_addr().context("find a free port")?.port())
}

/// Runs one check against the restored server on `port`, in the drill target's database as
/// its user: exactly one row with one boolean `true`.
async fn run_check(target: &TargetConfig, port: u16, check: &str) -> Result<()> {
    let password = target.password()?;
    let mut opts = PgConnectOptions::from_str("postgres://127.0.0.1")
        .context("connection options")?
        .host("127.0.0.1")
        .port(port)
        .database(&target.database)
        .application_name("lifeboat-agent drill");
    if !target.url.username().is_empty() {
        opts = opts.username(target.url.username());
    }
    if let Some(p) = &password {
        opts = opts.password(p.expose());
    }
    let where_ = format!(
        "{}@127.0.0.1:{port}/{}",
        target.url.username(),
        target.database
    );
    let mut conn = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        sqlx::PgConnection::connect_with(&opts),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(connect_error(&where_, &e.to_string())),
        Err(_) => bail!(
            "cannot connect to the restored server at {where_}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ),
    };
    let rows = sqlx::query(AssertSqlSafe(check.to_owned()))
        .fetch_all(&mut conn)
        .await
        .context("the query failed")?;
    let _ = conn.close().await;
    if !one_value(&rows, |r| r.try_get::<Option<bool>, _>(0).ok().flatten())? {
        bail!("returned false");
    }
    Ok(())
}

/// Why the restored server could not be reached, saying what to change.
fn connect_error(where_: &str, e: &str) -> anyhow::Error {
    if e.contains("pg_hba.conf") {
        anyhow::anyhow!(
            "the restored server refused the connection at {where_} by its pg_hba.conf ({e}); the restored copy uses the source's pg_hba.conf: allow host connections from 127.0.0.1 for that user and database there (e.g. host all all 127.0.0.1/32 scram-sha-256)"
        )
    } else {
        anyhow::anyhow!(
            "cannot connect to the restored server at {where_}: {e}; check the drill target's user and password file"
        )
    }
}

/// At start-up, before any job runs: the `lifeboat_drill_…` directories an interrupted drill
/// left under the first `restore_data_dirs` entry of each PostgreSQL target, their servers
/// stopped and the directories removed. How many went.
pub async fn sweep(config: &crate::config::Config) -> usize {
    let mut removed = 0;
    for target in config.targets.values() {
        let Some(base) = target.restore_data_dirs.first() else {
            continue;
        };
        if target.engine != Engine::Postgres {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        let left: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name().to_str().is_some_and(is_drill_name)
                    && e.file_type().is_ok_and(|t| t.is_dir())
            })
            .map(|e| e.path())
            .collect();
        for dir in left {
            match cleanup(target, base, &dir).await {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "stopped the server of an interrupted drill and removed its data directory");
                    removed += 1;
                }
                Err(e) => tracing::warn!(
                    "an interrupted drill left {}, which could not be cleaned up: {e:#}; stop its server and remove it by hand",
                    dir.display()
                ),
            }
        }
    }
    removed
}

/// Stops the drill's server and removes its directory: only a `lifeboat_drill_…` directory
/// directly under `base`, nothing else.
async fn cleanup(target: &TargetConfig, base: &Path, dir: &Path) -> Result<()> {
    let ours = dir.parent() == Some(base)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_drill_name);
    if !ours {
        bail!(
            "refusing to remove {}: not a drill directory",
            dir.display()
        );
    }
    let present = tokio::fs::symlink_metadata(dir).await.is_ok();
    if !present {
        return Ok(());
    }
    crate::restore::datadir::stop_started(target, dir).await?;
    let dir: PathBuf = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
    })
    .await
    .context("remove task panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_drill_names_are_directories() {
        assert!(is_drill_name("lifeboat_drill_20261127t233000z_7f3a9c"));
        for bad in [
            "lifeboat_drill_",
            "lifeboat_drill_../x",
            "lifeboat_drill_a/b",
            "lifeboat_drill_A",
            "app",
            "lifeboat_drill_.",
        ] {
            assert!(!is_drill_name(bad), "{bad}");
        }
        assert!(!is_drill_name(&format!(
            "lifeboat_drill_{}",
            "a".repeat(60)
        )));
    }

    #[test]
    fn a_directory_is_created_new_and_refused_when_it_exists() {
        let base = tempfile::tempdir().expect("tempdir");
        if rustix::process::geteuid().as_raw() == 0 {
            // As root under a root-owned directory: refused, naming what to do.
            let e = create(base.path(), &base.path().join("lifeboat_drill_x")).expect_err("root");
            assert!(format!("{e:#}").contains("does not run as root"), "{e:#}");
            std::os::unix::fs::chown(base.path(), Some(65534), Some(65534)).expect("chown");
        }
        let dir = base.path().join("lifeboat_drill_x");
        create(base.path(), &dir).expect("create");
        assert!(dir.is_dir());
        let e = create(base.path(), &dir).expect_err("exists");
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
    }

    #[test]
    fn a_refusal_by_pg_hba_says_so() {
        let e = connect_error(
            "app@127.0.0.1:5999/app",
            "error returned from database: no pg_hba.conf entry for host \"127.0.0.1\"",
        );
        assert!(format!("{e}").contains("refused the connection"), "{e}");
        assert!(format!("{e}").contains("pg_hba.conf"), "{e}");
    }
}
