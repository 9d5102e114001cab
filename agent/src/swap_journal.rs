//! The restore journal (review M9): one small file per restore in `state_dir/swaps`, written
//! (temporary file, fsync, rename, fsync of the directory) before each step that changes a
//! database, so that a crash at any step is finished or undone when the agent starts again.
//!
//! Steps and what start-up recovery does with each (see docs/adr/0011-restore-journal.md):
//! - [`Step::Loading`]: the scratch database is being created and loaded. Nothing else was
//!   touched: the scratch database is dropped.
//! - [`Step::Swapping`]: the scratch copy is complete and proven (both hashes, the tool's exit
//!   status and the row counts) and the swap has begun. Recovery looks at the databases: if the
//!   destination has not been changed yet, the swap is rolled back (the destination is left or
//!   put back as it was, the scratch copy dropped); once the destination has been changed (the
//!   PostgreSQL `dest → old` rename, the MySQL `RENAME TABLE`), it is rolled forward with the
//!   proven new data and the replaced copy is dropped.
//! - [`Step::Finishing`]: the swap is complete; the scratch and old databases are dropped.
//!
//! A journal that cannot be resolved (the server is down, the target was removed from the
//! config) is kept, logged, reported by `lifeboat targets check`, and tried again at the next
//! start.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use lifeboat_common::ids::validate_id;
use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, Engine, TargetConfig},
    engine::{mysql as my, postgres as pg},
};

const DIR: &str = "swaps";
/// A journal larger than this is not one this agent wrote.
const MAX_JOURNAL_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Loading,
    Swapping,
    Finishing,
}

/// What a MySQL swap needs to be finished or undone: the objects it drops and re-creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlSwap {
    pub new_objects: my::swap::Objects,
    pub old_objects: my::swap::Objects,
    pub new_tables: Vec<String>,
    pub old_tables: Vec<String>,
    /// Whether `dest` existed before (else the swap created it).
    pub dest_existed: bool,
    pub character_set: String,
    pub collation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub job_id: String,
    /// The short target name in this agent's config.
    pub target: String,
    pub engine: String,
    pub scratch: String,
    pub dest: String,
    /// Where the replaced database (PostgreSQL) or its tables (MySQL) go, when `dest` exists.
    pub old: Option<String>,
    pub step: Step,
    #[serde(default)]
    pub mysql: Option<MysqlSwap>,
}

/// The journal of one running restore.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    entry: Entry,
}

impl Journal {
    /// Records a restore that is about to create its scratch database.
    pub async fn begin(
        state_dir: &Path,
        job_id: &str,
        target: &TargetConfig,
        scratch: &str,
        dest: &str,
    ) -> Result<Self> {
        validate_id("job id", job_id)?;
        let j = Self {
            dir: state_dir.join(DIR),
            entry: Entry {
                job_id: job_id.to_owned(),
                target: target.name.clone(),
                engine: target.engine.as_str().to_owned(),
                scratch: scratch.to_owned(),
                dest: dest.to_owned(),
                old: None,
                step: Step::Loading,
                mysql: None,
            },
        };
        j.write().await?;
        Ok(j)
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Records `step` (and `old`, the name the replaced copy takes) before it is taken.
    pub async fn step(&mut self, step: Step, old: Option<&str>) -> Result<()> {
        self.entry.step = step;
        self.entry.old = old.map(str::to_owned);
        self.write().await
    }

    /// Records the start of a MySQL swap with everything needed to finish or undo it.
    pub async fn mysql_swap(&mut self, old: Option<&str>, swap: MysqlSwap) -> Result<()> {
        self.entry.mysql = Some(swap);
        self.step(Step::Swapping, old).await
    }

    /// The restore ended (either way) and cleaned up after itself.
    pub async fn finish(self) {
        let path = path(&self.dir, &self.entry.job_id);
        let dir = self.dir.clone();
        let removed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            fs::remove_file(&path)?;
            fs::File::open(&dir)?.sync_all()
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(
                "failed to remove the restore journal: {e}; the next start of the agent will check the databases it names"
            );
        }
    }

    async fn write(&self) -> Result<()> {
        let (dir, entry) = (self.dir.clone(), self.entry.clone());
        tokio::task::spawn_blocking(move || write_entry(&dir, &entry))
            .await
            .context("write the restore journal")?
            .with_context(|| {
                format!(
                    "write the restore journal in {} (the restore changes nothing without it; check that the state directory is writable)",
                    self.dir.display()
                )
            })
    }
}

fn path(dir: &Path, job_id: &str) -> PathBuf {
    dir.join(format!("{job_id}.json"))
}

fn write_entry(dir: &Path, entry: &Entry) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", entry.job_id));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path(dir, &entry.job_id))?;
    fs::File::open(dir)?.sync_all()
}

/// The journals in `state_dir` (unreadable ones are reported and skipped).
pub fn pending(state_dir: &Path) -> Vec<(PathBuf, Result<Entry>)> {
    let dir = state_dir.join(DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            // A journal write that did not finish: the step it announced was not taken, and
            // the previous version of the journal (if any) is still in place.
            let _ = fs::remove_file(&p);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let read = || -> Result<Entry> {
            let len = fs::metadata(&p)?.len();
            anyhow::ensure!(len <= MAX_JOURNAL_BYTES, "{len} bytes is too large");
            let entry: Entry = serde_json::from_slice(&fs::read(&p)?)?;
            validate_id("job id", &entry.job_id)?;
            Ok(entry)
        };
        let entry = read();
        out.push((p, entry));
    }
    out
}

/// Unresolved journals of `target`, described for `lifeboat targets check`.
pub fn unresolved(state_dir: &Path, target: &str) -> Vec<String> {
    pending(state_dir)
        .into_iter()
        .filter_map(|(p, e)| match e {
            Ok(e) if e.target == target => Some(describe_leftover(&e)),
            Ok(_) => None,
            Err(err) => Some(format!(
                "unreadable restore journal {}: {err:#}; check the databases of this target for lifeboat_restore_* and lifeboat_old_* by hand, then delete the file",
                p.display()
            )),
        })
        .collect()
}

fn describe_leftover(e: &Entry) -> String {
    format!(
        "restore job {} into {} was interrupted ({:?} step) and could not be finished when the agent started; the data is in {} or {}{}: fix the connection and restart the agent, or check them by hand and delete {}/{}.json from the state directory",
        e.job_id,
        e.dest,
        e.step,
        e.dest,
        e.scratch,
        e.old
            .as_deref()
            .map(|o| format!(", the replaced data in {o}"))
            .unwrap_or_default(),
        DIR,
        e.job_id
    )
}

/// At agent start: finishes or undoes every interrupted restore in the journal. Journals that
/// cannot be resolved are kept and logged.
pub async fn recover(config: &Config) {
    for (path, entry) in pending(&config.state_dir) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(
                    "failed to read the restore journal {}: {e:#}; check the target databases for lifeboat_restore_* and lifeboat_old_* leftovers by hand, then delete the file",
                    path.display()
                );
                continue;
            }
        };
        let span = tracing::info_span!("recover", job_id = %entry.job_id, target = %entry.target);
        let _g = span.enter();
        match recover_one(config, &entry).await {
            Ok(what) => {
                tracing::warn!("interrupted restore of {}: {what}", entry.dest);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!("failed to remove {}: {e}", path.display());
                }
            }
            Err(e) => tracing::error!(
                "failed to resolve an interrupted restore: {e:#}; {}",
                describe_leftover(&entry)
            ),
        }
    }
}

async fn recover_one(config: &Config, e: &Entry) -> Result<String> {
    for name in [Some(&e.scratch), Some(&e.dest), e.old.as_ref()]
        .into_iter()
        .flatten()
    {
        lifeboat_common::names::validate_database(name)
            .with_context(|| format!("the journal names an invalid database {name:?}"))?;
    }
    let target = config
        .targets
        .get(&e.target)
        .with_context(|| format!("target {} is no longer in this agent's config", e.target))?;
    let password = target.password()?;
    match (target.engine, e.engine.as_str()) {
        (Engine::Postgres, "postgres") => {
            let mut conn =
                pg::connect(target, password.as_ref(), &target.maintenance_database).await?;
            let r = recover_postgres(&mut conn, e).await;
            let _ = sqlx::Connection::close(conn).await;
            r
        }
        (Engine::Mysql, "mysql") => {
            let params = target
                .mysql
                .as_ref()
                .context("target has no MySQL connection parameters")?;
            let mut conn = my::connect(params, password.as_ref(), None).await?;
            crate::backup::init_mysql_session(&mut conn, target.profile).await?;
            let r = my::swap::recover(&mut conn, e).await;
            let _ = sqlx::Connection::close(conn).await;
            r
        }
        (_, other) => bail!(
            "the journal is for engine {other}, target {} is {} now",
            e.target,
            target.engine.as_str()
        ),
    }
}

async fn recover_postgres(conn: &mut sqlx::PgConnection, e: &Entry) -> Result<String> {
    let scratch = pg::database_exists(conn, &e.scratch).await?;
    if e.step == Step::Loading {
        if scratch {
            pg::drop_database(conn, &e.scratch).await?;
        }
        return Ok(format!(
            "it stopped while loading; dropped the scratch database {}, {} is as it was",
            e.scratch, e.dest
        ));
    }
    let dest = pg::database_exists(conn, &e.dest).await?;
    let old = match &e.old {
        Some(o) => pg::database_exists(conn, o).await?,
        None => false,
    };
    let what = match (dest, scratch, old) {
        // Nothing was renamed yet (or only the new database was missing): roll back.
        (true, true, false) => {
            pg::drop_database(conn, &e.scratch).await?;
            format!(
                "it stopped before {} was replaced; dropped the restored copy {}, {} is as it was",
                e.dest, e.scratch, e.dest
            )
        }
        (false, true, false) => {
            // A new database that was never renamed into place: the destination did not
            // exist before, so rolling back leaves it absent.
            pg::drop_database(conn, &e.scratch).await?;
            format!(
                "it stopped before the restored copy was renamed to {}; dropped it ({} does not exist, as before)",
                e.dest, e.dest
            )
        }
        // The original was renamed away: the proven copy goes in, the original goes.
        (false, true, true) => {
            let old = e.old.as_deref().unwrap_or_default();
            pg::rename_database(conn, &e.scratch, &e.dest).await?;
            pg::drop_database(conn, old).await?;
            format!(
                "finished the swap: the restored data is now {}, the replaced copy {old} was dropped",
                e.dest
            )
        }
        (true, false, old_exists) => {
            if old_exists && let Some(o) = &e.old {
                pg::drop_database(conn, o).await?;
            }
            format!(
                "the swap had completed; {} holds the restored data{}",
                e.dest,
                if old_exists {
                    ", the replaced copy was dropped"
                } else {
                    ""
                }
            )
        }
        (dest, scratch, old) => bail!(
            "unexpected state: {} {}, {} {}, old copy {}",
            e.dest,
            if dest { "exists" } else { "is missing" },
            e.scratch,
            if scratch { "exists" } else { "is missing" },
            if old { "exists" } else { "is missing" }
        ),
    };
    Ok(what)
}

/// Databases on `target`'s server named like a restore's scratch or replaced copy
/// (`lifeboat_restore_*`, `lifeboat_old_*`) that no journal in `state_dir` names (those are
/// running restores, or reported as unresolved on their own).
pub async fn leftover_databases(state_dir: &Path, target: &TargetConfig) -> Result<Vec<String>> {
    let journaled: Vec<String> = pending(state_dir)
        .into_iter()
        .filter_map(|(_, e)| e.ok())
        .flat_map(|e| [Some(e.scratch), e.old])
        .flatten()
        .collect();
    let mut names = server_leftovers(target).await?;
    names.retain(|n| !journaled.contains(n));
    Ok(names)
}

async fn server_leftovers(target: &TargetConfig) -> Result<Vec<String>> {
    const PATTERN: &str = r"^lifeboat_(restore|old)_[0-9a-z_]+$";
    let password = target.password()?;
    match target.engine {
        Engine::Postgres => {
            let mut conn =
                pg::connect(target, password.as_ref(), &target.maintenance_database).await?;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname::text FROM pg_database WHERE datname ~ $1 ORDER BY 1",
            )
            .bind(PATTERN)
            .fetch_all(&mut conn)
            .await
            .context("list databases")?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(names)
        }
        Engine::Mysql => {
            let params = target
                .mysql
                .as_ref()
                .context("target has no MySQL connection parameters")?;
            let mut conn = my::connect(params, password.as_ref(), None).await?;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA
                 WHERE SCHEMA_NAME REGEXP ? ORDER BY 1",
            )
            .bind(PATTERN)
            .fetch_all(&mut conn)
            .await
            .context("list databases")?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(names)
        }
    }
}

/// What an operator should do about a leftover database no journal of this agent names.
pub fn describe_unknown_leftover(database: &str) -> String {
    format!(
        "database {database} looks like the scratch or replaced copy of an interrupted restore that this agent's journal does not know (another agent's restore, or one from before the journal existed); once no restore is running on this server, check it and drop it"
    )
}

/// At agent start, after [`recover`]: logs leftover restore databases on every target's server
/// (they are reported, not dropped: another agent sharing the server may be using them).
pub async fn warn_about_leftovers(config: &Config) {
    for target in config.targets.values() {
        match leftover_databases(&config.state_dir, target).await {
            Ok(names) => {
                for n in names {
                    tracing::warn!(target = %target.name, "{}", describe_unknown_leftover(&n));
                }
            }
            Err(e) => tracing::debug!(
                target = %target.name,
                "failed to look for leftover restore databases: {e:#}"
            ),
        }
    }
}

/// A place where an end-to-end test can hold a restore (debug builds only, so the shipped
/// release binary has no such hook): when `LIFEBOAT_TEST_PAUSE_DIR` is set and holds a file
/// `pause-<name>`, creates `paused-<name>` there and waits until `pause-<name>` is removed.
/// The wait ignores cancellation, like the swap step it stands in for.
pub async fn test_pause(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(dir) = std::env::var_os("LIFEBOAT_TEST_PAUSE_DIR") {
        let dir = PathBuf::from(dir);
        let arm = dir.join(format!("pause-{name}"));
        if arm.exists() {
            tracing::warn!(point = name, "test pause point reached");
            let _ = fs::write(dir.join(format!("paused-{name}")), b"");
            while arm.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_partial_writes_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Entry {
            job_id: "20261203T084711Z-a273a2".into(),
            target: "app".into(),
            engine: "postgres".into(),
            scratch: "lifeboat_restore_x".into(),
            dest: "app".into(),
            old: Some("lifeboat_old_x".into()),
            step: Step::Swapping,
            mysql: None,
        };
        write_entry(&dir.path().join(DIR), &e).expect("write");
        fs::write(dir.path().join(DIR).join(".partial.tmp"), b"{").expect("write");
        let found = pending(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_ref().expect("entry"), &e);
        assert_eq!(unresolved(dir.path(), "app").len(), 1);
        assert!(unresolved(dir.path(), "other").is_empty());
    }
}
