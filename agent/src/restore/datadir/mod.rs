//! A physical base backup restored into an empty data directory (`restore --data-dir`): the
//! tar streams from the repository through the same hash checks as every restore (stored
//! size, stored and raw SHA-256) into an extractor that accepts only plain files and
//! directories inside the directory, every file and directory synced; then PostgreSQL's own
//! `pg_verifybackup` checks the files against the `backup_manifest` the archive carries. It is
//! not the scratch-database [`super::Restore`]: a data directory has no swap, only "all or
//! nothing".
//!
//! The guarantees: the directory must be empty (one holding `PG_VERSION` or `postmaster.pid`
//! is refused by name: a running cluster's directory is never touched); `PG_VERSION` is
//! written last, after the hashes matched, so the directory cannot be started by PostgreSQL
//! until the backup is whole; on any failure (a hash, the archive, `pg_verifybackup`,
//! cancellation) everything extracted is removed, and the directory itself if the restore
//! created it. Point-in-time recovery will later write its recovery settings into the
//! directory between the extraction and the verdict.
//!
//! This file plans and orchestrates; [`destination`] checks and claims the directory,
//! [`extract`] unpacks the tar, [`verify`] writes `PG_VERSION` and runs `pg_verifybackup`.

mod checksums;
mod destination;
mod durable;
mod extract;
mod scratch;
mod start;
mod verify;

use std::{
    io::{self, BufReader, BufWriter},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use lifeboat_proto::domain::{DataDir, Restored};

use super::{Located, check_engine, human_bytes, locate, open_data};
use crate::{
    config::TargetConfig,
    engine::postgres as pg,
    job::JobCtx,
    manifest::{Manifest, PhysicalInfo},
    pipeline::{self, PipelineError},
    work::RestoreWork,
};
use destination::{Claimed, Destination, check_allowed, check_space};
use extract::extract;
use verify::{chown_like_root, run_verifybackup, write_missing_configs, write_pg_version};

pub(crate) use scratch::{Unpacked, verify_unpacked};

/// The file PostgreSQL needs to accept a directory as a data directory: held back until the
/// backup is whole.
const PG_VERSION: &str = "PG_VERSION";

/// A physical backup and where it goes, checked; nothing written yet.
struct Plan {
    loc: Located,
    manifest: Manifest,
    physical: PhysicalInfo,
    dir: DataDir,
    dest: Destination,
    pg_verifybackup: PathBuf,
    /// Point-in-time recovery: the settings written once the backup is whole.
    pitr: Option<super::pitr::Pitr>,
    /// `--start-port`: the port, `pg_ctl`, and what recovery must reach.
    start: Option<(u16, PathBuf, start::Until)>,
}

/// The restore of a physical backup into `spec.data_dir`.
pub(crate) async fn run(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<Restored> {
    let plan = plan(ctx, spec, dir).await?;
    ctx.report.bail_on_errors("restore refused")?;
    let plan = plan.context("restore could not be planned")?;
    ctx.set_phase("restoring");
    let claimed = {
        let (dir, dest) = (plan.dir.path().to_owned(), plan.dest.clone());
        tokio::task::spawn_blocking(move || Claimed::claim(&dir, &dest))
            .await
            .context("claim task panicked")??
    };
    let done = async {
        let verified = extract_and_verify(ctx, &plan, &claimed).await?;
        let started = match &plan.start {
            Some((port, pg_ctl, until)) => {
                ctx.set_phase("recovering");
                Some(
                    start::start_and_wait(
                        pg_ctl,
                        &claimed.dir,
                        claimed.owner,
                        *port,
                        *until,
                        &ctx.cancel,
                    )
                    .await?,
                )
            }
            None => None,
        };
        anyhow::Ok((verified, started))
    };
    match done.await {
        Ok((verified, started)) => {
            claimed.keep();
            Ok(restored(
                ctx,
                &plan,
                &verified,
                started.as_ref(),
                spec.drill,
            ))
        }
        Err(e) => {
            let removed = tokio::task::spawn_blocking(move || claimed.remove())
                .await
                .map_err(|j| anyhow!("cleanup task panicked: {j}"))
                .and_then(|r| r);
            if let Err(c) = removed {
                return Err(e.context(format!(
                    "and removing what was extracted into {dir} failed too ({c:#}); remove its contents before using the directory"
                )));
            }
            Err(e.context(format!(
                "restore into {dir} failed; what was extracted there was removed"
            )))
        }
    }
}

/// Stops the server a restore started on `dir` (`pg_ctl stop`, fast then immediate, as the
/// directory's owner, the `pg_ctl` of the directory's `PG_VERSION`); nothing when no live
/// postmaster holds it. An error if one still does afterwards.
pub(crate) async fn stop_started(target: &TargetConfig, dir: &Path) -> Result<()> {
    if !start::postmaster_alive(dir) {
        return Ok(());
    }
    let (major, owner) = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || -> Result<(i64, Option<(u32, u32)>)> {
            use std::os::unix::fs::MetadataExt;
            let version = std::fs::read_to_string(dir.join(PG_VERSION))
                .with_context(|| format!("read {}", dir.join(PG_VERSION).display()))?;
            let major = version.trim().parse::<i64>().with_context(|| {
                format!("{} holds {version:?}, not a major version", PG_VERSION)
            })?;
            let meta =
                std::fs::metadata(&dir).with_context(|| format!("inspect {}", dir.display()))?;
            let euid = rustix::process::geteuid().as_raw();
            Ok((
                major,
                (euid == 0 && meta.uid() != 0).then_some((meta.uid(), meta.gid())),
            ))
        })
        .await
        .context("inspect task panicked")??
    };
    start::stop(&pg::tool(target, "pg_ctl", major), dir, owner).await;
    if start::postmaster_alive(dir) {
        bail!(
            "the server on {} is still running after pg_ctl stop; stop it as the directory's owner with pg_ctl -D {} stop -m immediate",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// `restore --dry-run --data-dir`: the checks and the steps, nothing written.
pub(crate) async fn dry_run(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<()> {
    if let Some(plan) = plan(ctx, spec, dir).await? {
        let r = &ctx.report;
        r.step(format!(
            "stream {} ({} stored) from {} through the size and SHA-256 checks",
            plan.loc.data_key,
            human_bytes(plan.loc.expected.stored.size),
            plan.loc.repo.describe()
        ));
        r.step(match plan.dest {
            Destination::Missing => format!("create {} (mode 0700)", plan.dir),
            Destination::Empty { .. } => {
                format!("use the empty directory {} (mode 0700)", plan.dir)
            }
        });
        r.step("extract the tar (plain files and directories only), syncing every file; PG_VERSION last");
        r.step(format!(
            "check every file's CRC-32C against the backup's backup_manifest as it is extracted, then the rest (sizes, no file missing or extra, the WAL) with {}",
            plan.pg_verifybackup.display()
        ));
        r.step(match &plan.pitr {
            Some(p) => format!(
                "write recovery.signal and the recovery settings into postgresql.auto.conf (archiving off): {}",
                p.summary
            ),
            None => "turn archiving off in postgresql.auto.conf (a copy must not archive into the source's archive)".to_owned(),
        });
        if let Some((port, pg_ctl, until)) = &plan.start {
            r.step(format!(
                "start the server on port {port} with {} as the directory's owner and wait until {}; it is left running",
                pg_ctl.display(),
                match until {
                    start::Until::Open => "recovery is over and it accepts connections",
                    start::Until::Paused => "recovery has paused at the target",
                    start::Until::ShutDown => "it shut down at the target",
                }
            ));
        }
    }
    ctx.report.bail_on_errors("the restore would fail")
}

/// Checks the backup (a physical one, its manifest agreeing with the catalog, its data there
/// with the recorded size), the directory and the tools; findings go to the job's report.
async fn plan(ctx: &JobCtx, spec: &RestoreWork, dir: &DataDir) -> Result<Option<Plan>> {
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
    let Some(mut loc) = report.check("backup", locate(ctx, rec)) else {
        return Ok(None);
    };
    ctx.set_phase("checking");
    // An encrypted base backup: its key, before its manifest's sealed section is read.
    if report
        .check("backup", super::source::unlock(ctx, &mut loc).await)
        .is_none()
    {
        return Ok(None);
    }
    super::warn_if_plaintext(report, rec, target);
    let Some(manifest) = super::manifest_checked(report, &loc, rec).await else {
        return Ok(None);
    };
    let Some(physical) = manifest.physical.clone() else {
        report.error(
            "backup",
            format!(
                "the manifest of backup {} has no physical section although the catalog records a base backup; it cannot be restored into a data directory",
                rec.backup_id
            ),
        );
        return Ok(None);
    };
    super::check_data_object(report, &loc, |size| {
        format!(
            "{}: base backup of PostgreSQL {} (system identifier {}), timeline {}, WAL {} to {} inside; {size} stored in {}",
            rec.backup_id,
            manifest.server.version,
            manifest.server.system_identifier,
            physical.timeline,
            physical.start_lsn,
            physical.stop_lsn,
            loc.repo.describe()
        )
    })
    .await;
    let dest = {
        let path = dir.path().to_owned();
        let allowed = target.restore_data_dirs.clone();
        let name = target.name.clone();
        tokio::task::spawn_blocking(move || {
            check_allowed(&allowed, &name, &path)?;
            Destination::check(&path)
        })
        .await
        .context("directory check panicked")?
    };
    let raw = loc.expected.raw.size;
    let dest = dest.and_then(|d| {
        check_space(dir.path(), raw)?;
        Ok(d)
    });
    let dest = match dest {
        Ok(d) => {
            report.ok(
                "destination",
                match d {
                    Destination::Missing => format!("{dir} does not exist; it will be created"),
                    Destination::Empty { .. } => format!("{dir} is an empty directory"),
                },
            );
            Some(d)
        }
        Err(e) => {
            report.error("destination", format!("{e:#}"));
            None
        }
    };
    let major = manifest.server.version_num / 10000;
    let pg_verifybackup = pg::tool(target, "pg_verifybackup", major);
    let tool = match pg::tool_version(&pg_verifybackup).await {
        Ok((version, tool_major)) if tool_major >= major => {
            report.ok(
                "tools",
                format!("pg_verifybackup {version} ({})", pg_verifybackup.display()),
            );
            Some(pg_verifybackup)
        }
        Ok((version, _)) => {
            report.error(
                "tools",
                format!(
                    "pg_verifybackup {version} is older than the backup's PostgreSQL {}; install the PostgreSQL {major} server tools or set pg_bin_dir",
                    manifest.server.version
                ),
            );
            None
        }
        Err(e) => {
            report.error("tools", format!("{e:#}"));
            None
        }
    };
    let pitr = match &spec.recovery {
        None => Ok(None),
        Some(r) => super::pitr::plan(ctx, &loc.repo, &manifest, &physical, r)
            .await
            .map(Some),
    };
    let pitr = match pitr {
        Ok(p) => {
            if let Some(p) = &p {
                report.ok("recovery", &p.summary);
            }
            p
        }
        Err(e) => {
            report.error("recovery", format!("{e:#}"));
            return Ok(None);
        }
    };
    let start = match (spec.start_port, &dest) {
        (Some(port), Some(d)) => {
            let pg_ctl = pg::tool(target, "pg_ctl", major);
            match start::preflight(port, d) {
                Ok(()) => {
                    report.ok(
                        "start",
                        format!(
                            "port {port} is free; the server starts with {} as the directory's owner",
                            pg_ctl.display()
                        ),
                    );
                    let until =
                        start::Until::of(spec.recovery.as_ref().map(|r| (&r.target, r.action)));
                    Some((port, pg_ctl, until))
                }
                Err(e) => {
                    report.error("start", format!("{e:#}"));
                    None
                }
            }
        }
        _ => None,
    };
    let (Some(dest), Some(pg_verifybackup)) = (dest, tool) else {
        return Ok(None);
    };
    Ok(Some(Plan {
        loc,
        manifest,
        physical,
        dir: dir.clone(),
        dest,
        pg_verifybackup,
        pitr,
        start,
    }))
}

/// What `pg_verifybackup` said, what was extracted, and which configuration files the
/// backup lacked and were written.
struct Verified {
    files: u64,
    verifybackup: String,
    configs_written: Vec<&'static str>,
}

/// Streams the archive through the hash checks into the extractor, writes `PG_VERSION`
/// once the hashes matched, then runs `pg_verifybackup`.
async fn extract_and_verify(ctx: &JobCtx, plan: &Plan, claimed: &Claimed) -> Result<Verified> {
    let extracted = stream_into(ctx, &plan.loc, claimed).await?;
    let owner = claimed.owner;
    ctx.set_phase("verifying");
    let verifybackup = verify_extracted(
        &plan.pg_verifybackup,
        &claimed.dir,
        extracted.checksums,
        &ctx.cancel,
    )
    .await?;
    let configs_written = {
        // A restored copy never archives into the source's archive (see `archive_off`); a
        // point-in-time recovery also gets its recovery settings and recovery.signal.
        let (root, settings, signal) = match &plan.pitr {
            Some(p) => (claimed.dir.clone(), p.settings.clone(), true),
            None => (
                claimed.dir.clone(),
                crate::wal::recovery::archive_off(&format!(
                    "lifeboat restore of backup {}",
                    plan.manifest.backup_id
                )),
                false,
            ),
        };
        tokio::task::spawn_blocking(move || {
            crate::wal::recovery::write(&root, &settings, signal)?;
            let mut files = vec!["postgresql.auto.conf"];
            if signal {
                files.push("recovery.signal");
            }
            chown_like_root(&root, &files, owner)?;
            write_missing_configs(&root, owner)
        })
        .await
        .context("write task panicked")??
    };
    Ok(Verified {
        files: extracted.files,
        verifybackup,
        configs_written,
    })
}

/// The extracted files in `dir` against the backup's `backup_manifest`: each file's CRC-32C,
/// taken as it was extracted (`sums`), then `pg_verifybackup` for the rest (without reading
/// the files back when every checksum was checked here). Its last line, saying how the
/// checksums were checked.
async fn verify_extracted(
    tool: &Path,
    dir: &Path,
    sums: std::collections::HashMap<Vec<u8>, (u64, u32)>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<String> {
    let coverage = {
        let root = dir.to_owned();
        tokio::task::spawn_blocking(move || checksums::check_dir(&root, &sums))
            .await
            .context("checksum task panicked")?
            .context("the extracted files do not match the backup's backup_manifest")?
    };
    let skip_checksums = matches!(coverage, checksums::Coverage::All { .. });
    let line = run_verifybackup(tool, dir, skip_checksums, cancel).await?;
    Ok(match coverage {
        checksums::Coverage::All { files } => {
            format!("{line} (the CRC-32C of its {files} files checked as they were extracted)")
        }
        checksums::Coverage::Partial(why) => {
            format!("{line} (file checksums read back by pg_verifybackup: {why})")
        }
    })
}

/// Streams the backup's archive through the hash checks (stored size, stored and raw
/// SHA-256) into the extractor, then writes the held-back `PG_VERSION`. A hash that does not
/// match is the error (a [`PipelineError`] under its context), whatever the extractor made
/// of the bytes.
async fn stream_into(ctx: &JobCtx, loc: &Located, claimed: &Claimed) -> Result<extract::Extracted> {
    let file = open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })?;
    let (reader, writer) = io::pipe().context("create a pipe")?;
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    // A base backup's tar was checked as it streamed at backup time; here its hashes are.
    let pipeline = tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(256 * 1024, writer);
        // Dropping the returned writer ends the extractor's input.
        pipeline::decompress(file, out, b"", &expected, &counters, &cancel).map(drop)
    });
    let root = claimed.dir.clone();
    let owner = claimed.owner;
    let cancel = ctx.cancel.clone();
    let extractor = tokio::task::spawn_blocking(move || {
        extract(
            BufReader::with_capacity(256 * 1024, reader),
            &root,
            owner,
            &cancel,
        )
    });
    let (piped, extracted) = tokio::join!(pipeline, extractor);
    let piped = piped.context("restore pipeline panicked")?;
    let extracted = extracted.context("extractor panicked")?;
    if ctx.cancel.is_cancelled() {
        bail!("cancelled");
    }
    let extracted = match (piped, extracted) {
        (Ok(()), Ok(x)) => x,
        // The stored bytes are not the recorded ones: that is the verdict, whatever the
        // extractor made of them.
        (Err(e @ (PipelineError::Mismatch { .. } | PipelineError::Decode(_))), _) => {
            return Err(e).with_context(|| format!("read backup from {}", loc.data_key));
        }
        (_, Err(e)) => return Err(e.context(format!("extract {}", loc.data_key))),
        (Err(e), Ok(_)) => {
            return Err(e).with_context(|| format!("read backup from {}", loc.data_key));
        }
    };
    {
        let root = claimed.dir.clone();
        let version = extracted.pg_version.clone();
        tokio::task::spawn_blocking(move || write_pg_version(&root, version.as_deref(), owner))
            .await
            .context("write task panicked")??;
    }
    Ok(extracted)
}

/// The restore's result, and its lines in the report (a drill's server is the drill's to stop:
/// no advice to the operator about it).
fn restored(
    ctx: &JobCtx,
    plan: &Plan,
    v: &Verified,
    started: Option<&start::Started>,
    drill: bool,
) -> Restored {
    let m = &plan.manifest;
    ctx.report.ok(
        "restored",
        format!(
            "{}: PostgreSQL {} cluster (system identifier {}), {} files, timeline {}, consistent at WAL {}; pg_verifybackup: {}",
            plan.dir,
            m.server.version,
            m.server.system_identifier,
            v.files,
            plan.physical.timeline,
            plan.physical.stop_lsn,
            v.verifybackup
        ),
    );
    if !v.configs_written.is_empty() {
        ctx.report.warn(
            "configuration",
            format!(
                "the backup holds no {} (the source keeps them outside its data directory, as Debian and Ubuntu do): minimal ones were written into {} (PostgreSQL's defaults; local peer and loopback password logins); copy the source server's settings there",
                v.configs_written.join(", "),
                plan.dir
            ),
        );
    }
    if let (Some(started), Some((port, ..))) = (started, &plan.start) {
        for line in &started.lines {
            ctx.report.ok("recovery", line.trim_start_matches("LOG:  "));
        }
        if drill {
            ctx.report.ok(
                "drill",
                format!(
                    "the restored server runs on 127.0.0.1:{port} (its log: {}/{})",
                    plan.dir,
                    start::LOG_FILE
                ),
            );
        } else {
            ctx.report.info(
                "next",
                format!(
                    "the server is running on port {port} (its log: {}/{}); stop it with pg_ctl -D {} stop as the directory's owner",
                    plan.dir,
                    start::LOG_FILE,
                    plan.dir
                ),
            );
        }
        return Restored {
            database: String::new(),
            data_dir: Some(plan.dir.clone()),
            row_counts: Vec::new(),
            raw_bytes: plan.loc.expected.raw.size,
        };
    }
    ctx.report.info(
        "next",
        format!(
            "start it as the directory's owner with pg_ctl -D {} start (PostgreSQL {} binaries); its postgresql.conf and postgresql.auto.conf are the source server's: check port and paths first",
            plan.dir, plan.manifest.server.version
        ),
    );
    if let Some(p) = &plan.pitr {
        ctx.report.info(
            "recovery",
            format!(
                "when it starts it replays the archived WAL: {}; the agent must be running for restore_command, and the server's log says where recovery stopped",
                p.summary
            ),
        );
    }
    Restored {
        database: String::new(),
        data_dir: Some(plan.dir.clone()),
        row_counts: Vec::new(),
        raw_bytes: plan.loc.expected.raw.size,
    }
}
