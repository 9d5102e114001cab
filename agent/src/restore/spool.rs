//! A parallel restore (`restore --jobs N`, or the target's `restore_jobs`) spools to a private
//! directory under the agent's `scratch_dir`, after checking there is room, and removes it when
//! the restore ends, whatever happened:
//! - PostgreSQL: `pg_restore -j` reads the archive out of order, so it needs a file, not a
//!   pipe. The archive is decompressed (and decrypted) through the same size and SHA-256
//!   checks ([`write`]); pg_restore starts only once the whole file checked out.
//! - MariaDB/MySQL from a remote repository: every connection streams the archive (ADR 0030),
//!   so the stored object is downloaded once, as stored, its size and SHA-256 checked
//!   ([`write_stored`]), and the connections read that file instead of the repository.

use std::{
    io::{BufWriter, Read, Write},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

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

/// A new private directory for job `job_id` under `scratch`, with room for `bytes`, and the
/// file `name` created in it.
fn create(scratch: &Path, job_id: &str, bytes: u64, name: &str) -> Result<(Spool, std::fs::File)> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(scratch)
        .with_context(|| format!("create scratch_dir {}", scratch.display()))?;
    check_room(scratch, bytes)?;
    let dir = dir_for(scratch, job_id);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let spool = Spool {
        file: dir.join(name),
        dir,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&spool.file)
        .with_context(|| format!("create {}", spool.file.display()))?;
    Ok((spool, f))
}

async fn create_for(
    ctx: &JobCtx,
    bytes: u64,
    name: &'static str,
) -> Result<(Spool, std::fs::File)> {
    let (scratch, job) = (ctx.config.scratch_dir.clone(), ctx.job_id.clone());
    tokio::task::spawn_blocking(move || create(&scratch, &job, bytes, name))
        .await
        .context("spool task panicked")?
}

async fn open(loc: &Located) -> Result<crate::repo::body::StreamReader> {
    open_data(loc).await?.with_context(|| {
        format!(
            "data file {} is missing from {}",
            loc.data_key,
            loc.repo.describe()
        )
    })
}

/// Streams the backup at `loc` through the hash checks into a new private file under the
/// agent's scratch directory. A stream that fails a check leaves nothing behind.
pub(super) async fn write(ctx: &JobCtx, loc: &Located) -> Result<Spool> {
    let (spool, out) = create_for(ctx, loc.expected.raw.size, "archive.pgdump").await?;
    let data = open(loc).await?;
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

/// Downloads the stored object of the backup at `loc` (compressed, and encrypted if it is)
/// into a new private file under the agent's scratch directory, checking its size and SHA-256
/// against the catalog's. A download that fails the check leaves nothing behind.
pub(super) async fn write_stored(ctx: &JobCtx, loc: &Located) -> Result<Spool> {
    let (spool, out) = create_for(ctx, loc.expected.stored.size, "data.stored").await?;
    let data = open(loc).await?;
    ctx.set_phase("downloading");
    let (expected, cancel, key) = (
        loc.expected.stored.clone(),
        ctx.cancel.clone(),
        loc.data_key.clone(),
    );
    tokio::task::spawn_blocking(move || copy_checked(data, out, &expected, &cancel, &key))
        .await
        .context("spool task panicked")??;
    Ok(spool)
}

/// Copies `from` into `to`, hashing it, and fails unless it was `expected`.
fn copy_checked(
    mut from: impl Read,
    to: std::fs::File,
    expected: &pipeline::Digest,
    cancel: &tokio_util::sync::CancellationToken,
    key: &str,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(1024 * 1024, to);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        anyhow::ensure!(!cancel.is_cancelled(), "cancelled");
        let k = from
            .read(&mut buf)
            .with_context(|| format!("download {key}"))?;
        if k == 0 {
            break;
        }
        anyhow::ensure!(
            n + k as u64 <= expected.size,
            "the download of {key} is longer than the {} bytes the catalog recorded: the stored object is damaged or was changed (`lifeboat backup verify` checks it); restore an older backup or a copy",
            expected.size
        );
        hash.update(&buf[..k]);
        out.write_all(&buf[..k])
            .with_context(|| format!("write the download of {key} to the scratch directory"))?;
        n += k as u64;
    }
    out.flush()
        .with_context(|| format!("write the download of {key} to the scratch directory"))?;
    let sha = hex::encode(hash.finalize());
    anyhow::ensure!(
        n == expected.size && sha == expected.sha256,
        "the download of {key} does not match the catalog: {n} bytes with SHA-256 {sha}, the catalog recorded {} bytes with {}; the stored object is damaged or was changed (`lifeboat backup verify` checks it); restore an older backup or a copy",
        expected.size,
        expected.sha256
    );
    Ok(())
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

    #[test]
    fn a_download_is_kept_only_when_its_size_and_hash_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"stored bytes".to_vec();
        let good = pipeline::Digest {
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(&body)),
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let run = |expected: &pipeline::Digest, name: &str| {
            let (spool, f) = create(dir.path(), name, 1, "data.stored").expect("create");
            copy_checked(body.as_slice(), f, expected, &cancel, "k").map(|()| spool)
        };
        let spool = run(&good, "J1").expect("matching download");
        assert_eq!(std::fs::read(&spool.file).expect("read"), body);
        drop(spool);

        let other = pipeline::Digest {
            sha256: hex::encode(Sha256::digest(b"other bytes!")),
            ..good.clone()
        };
        let e = run(&other, "J2").err().expect("hash mismatch");
        assert!(format!("{e:#}").contains("does not match"), "{e:#}");
        let short = pipeline::Digest {
            size: good.size - 1,
            ..good.clone()
        };
        let e = run(&short, "J3").err().expect("longer than recorded");
        assert!(format!("{e:#}").contains("longer than"), "{e:#}");
        let long = pipeline::Digest {
            size: good.size + 1,
            ..good
        };
        assert!(run(&long, "J4").is_err(), "shorter than recorded");
        assert!(
            std::fs::read_dir(dir.path()).expect("ls").next().is_none(),
            "a failed download leaves nothing"
        );
    }
}
