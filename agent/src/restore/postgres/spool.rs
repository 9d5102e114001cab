//! A parallel restore (`restore --jobs N`, or the target's `restore_jobs`): `pg_restore -j`
//! reads the archive out of order, so it needs a file, not a pipe. The archive is decompressed
//! (and decrypted) through the same size and SHA-256 checks into a private directory under the
//! agent's `scratch_dir`, after checking there is room for it, and removed when the restore
//! ends, whatever happened. pg_restore starts only once the whole file checked out.

use std::{
    io::BufWriter,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::{
    engine::postgres as pg,
    job::JobCtx,
    pipeline,
    restore::{Located, human_bytes, open_data},
};

/// Room left free beside the spooled archive, for everything else on that file system.
const HEADROOM: u64 = 64 * 1024 * 1024;

/// The verified archive on disk; its directory is removed on drop.
pub(super) struct Spool {
    dir: PathBuf,
    pub(super) file: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "could not remove the spooled archive {}: {e}; remove it by hand",
                self.dir.display()
            );
        }
    }
}

/// Where job `job_id` spools its archive.
pub(super) fn dir_for(scratch: &Path, job_id: &str) -> PathBuf {
    scratch.join(format!("restore-{job_id}"))
}

/// Checks that `scratch` has room for `bytes` and the headroom.
pub(super) fn check_room(scratch: &Path, bytes: u64) -> Result<()> {
    let (on, free) = crate::restore::free_space(scratch)
        .with_context(|| format!("cannot read the free space of {}", scratch.display()))?;
    anyhow::ensure!(
        free >= bytes.saturating_add(HEADROOM),
        "a parallel restore spools the {} archive to scratch_dir {}, whose file system has {} free; free space there, set scratch_dir to a file system with room, or restore with --jobs 1 (streamed, no spool)",
        human_bytes(bytes),
        on.display(),
        human_bytes(free)
    );
    Ok(())
}

/// Streams the backup at `loc` through the hash checks into a new private file under the
/// agent's scratch directory. A stream that fails a check leaves nothing behind.
pub(super) async fn write(ctx: &JobCtx, loc: &Located) -> Result<Spool> {
    let scratch = ctx.config.scratch_dir.clone();
    let dir = dir_for(&scratch, &ctx.job_id);
    let raw = loc.expected.raw.size;
    let file = {
        let (scratch, dir) = (scratch.clone(), dir.clone());
        tokio::task::spawn_blocking(move || -> Result<(Spool, std::fs::File)> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(&scratch)
                .with_context(|| format!("create scratch_dir {}", scratch.display()))?;
            check_room(&scratch, raw)?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("create {}", dir.display()))?;
            let spool = Spool {
                file: dir.join("archive.pgdump"),
                dir,
            };
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&spool.file)
                .with_context(|| format!("create {}", spool.file.display()))?;
            Ok((spool, f))
        })
        .await
        .context("spool task panicked")??
    };
    let (spool, out) = file;
    let data = open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })?;
    ctx.set_phase("spooling");
    let (expected, counters, cancel) = (
        loc.expected.clone(),
        ctx.counters.clone(),
        ctx.cancel.clone(),
    );
    let written = tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(1024 * 1024, out);
        pipeline::decompress(data, out, pg::PGDMP_MAGIC, &expected, &counters, &cancel).map(drop)
    })
    .await
    .context("spool task panicked")?;
    written.with_context(|| format!("restore backup from {}", loc.data_key))?;
    Ok(spool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_room_is_refused_naming_the_directory_and_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_room(dir.path(), 1).expect("a byte fits");
        let e = check_room(dir.path(), u64::MAX / 2).expect_err("an exabyte does not");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains("--jobs 1"),
            "{msg}"
        );
    }

    #[test]
    fn the_spool_directory_goes_on_drop() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = dir_for(root.path(), "J1");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("archive.pgdump"), b"x").expect("write");
        drop(Spool {
            file: dir.join("archive.pgdump"),
            dir: dir.clone(),
        });
        assert!(!dir.exists());
    }
}
