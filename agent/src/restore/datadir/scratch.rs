//! `backup verify` of a base backup: the archive unpacked into a private directory under the
//! agent's `scratch_dir` through the same hash checks as a restore, checked file by file
//! against the `backup_manifest` it carries (each file's CRC-32C as it is unpacked, the rest by
//! PostgreSQL's `pg_verifybackup`, which also parses the WAL inside), then removed, whatever the
//! verdict.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Claimed, Destination, check_space, stream_into, verify_extracted};
use crate::{
    config::Engine, engine::postgres as pg, job::JobCtx, manifest::Manifest,
    pipeline::PipelineError, restore::Located,
};

/// What unpacking and `pg_verifybackup` found.
pub(crate) enum Unpacked {
    /// Whole: how many files, and `pg_verifybackup`'s last line.
    Sound { files: u64, verifybackup: String },
    /// The stored bytes, the archive or the files are not what was backed up: why.
    Damaged(String),
}

/// The `pg_verifybackup` to use: that of the backup's target on this agent (its
/// `pg_bin_dir`), else that of any PostgreSQL target here, else the newest installed.
fn verifybackup_tool(ctx: &JobCtx, m: &Manifest) -> PathBuf {
    let major = m.server.version_num / 10000;
    let own = ctx
        .config
        .targets
        .get(&m.target)
        .filter(|_| m.environment == ctx.config.environment);
    let any = || {
        ctx.config
            .targets
            .values()
            .find(|t| t.engine == Engine::Postgres)
    };
    match own.or_else(any) {
        Some(t) => pg::tool(t, "pg_verifybackup", major),
        None => PathBuf::from("pg_verifybackup"),
    }
}

/// Unpacks backup `m` (located at `loc`) under `scratch` and runs `pg_verifybackup` on it.
/// Errors are about this agent (no room, no tool, cancelled); a damaged backup is a verdict.
pub(crate) async fn verify_unpacked(
    ctx: &JobCtx,
    loc: &Located,
    m: &Manifest,
    scratch: &Path,
) -> Result<Unpacked> {
    let tool = verifybackup_tool(ctx, m);
    let major = m.server.version_num / 10000;
    let (version, tool_major) = pg::tool_version(&tool).await?;
    anyhow::ensure!(
        tool_major >= major,
        "pg_verifybackup {version} ({}) is older than the backup's PostgreSQL {}; install the PostgreSQL {major} server tools or set pg_bin_dir",
        tool.display(),
        m.server.version
    );
    let dir = scratch.join(format!("verify-{}", ctx.job_id));
    let raw = loc.expected.raw.size;
    let claimed = {
        let (scratch, dir) = (scratch.to_owned(), dir.clone());
        tokio::task::spawn_blocking(move || -> Result<Claimed> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(&scratch)
                .with_context(|| format!("create scratch_dir {}", scratch.display()))?;
            check_space(&scratch, raw).context(
                "backup verify unpacks a base backup to check it with pg_verifybackup; set scratch_dir in the agent's config to a file system with room",
            )?;
            Claimed::claim(&dir, &Destination::check(&dir)?)
        })
        .await
        .context("scratch task panicked")??
    };
    ctx.report.step(format!(
        "unpack into {} and check with {} ({version})",
        dir.display(),
        tool.display()
    ));
    let verdict = async {
        match stream_into(ctx, loc, &claimed).await {
            Ok(x) => {
                ctx.set_phase("pg_verifybackup");
                match verify_extracted(&tool, &claimed.dir, x.checksums, &ctx.cancel).await {
                    Ok(line) => Ok(Unpacked::Sound {
                        files: x.files,
                        verifybackup: line,
                    }),
                    Err(e) if ctx.cancel.is_cancelled() => Err(e),
                    Err(e) => Ok(Unpacked::Damaged(format!("{e:#}"))),
                }
            }
            Err(e) if ctx.cancel.is_cancelled() => Err(e),
            Err(e) => match e.downcast_ref::<PipelineError>() {
                Some(PipelineError::Mismatch { .. } | PipelineError::Decode(_)) | None => {
                    // A hash, the zstd stream or the tar (checked at backup time) failed:
                    // the stored backup is not what was written. I/O errors are the agent's.
                    if e.downcast_ref::<std::io::Error>().is_some() {
                        Err(e)
                    } else {
                        Ok(Unpacked::Damaged(format!("{e:#}")))
                    }
                }
                Some(_) => Err(e),
            },
        }
    }
    .await;
    let removed = tokio::task::spawn_blocking(move || claimed.remove())
        .await
        .context("cleanup task panicked")
        .and_then(|r| r);
    if let Err(e) = removed {
        ctx.report.warn(
            "scratch",
            format!(
                "removing {} failed ({e:#}); remove it by hand",
                dir.display()
            ),
        );
    }
    verdict
}
