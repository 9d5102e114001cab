//! The copy job (off-site copies): a backup's objects read from the repository it is in and
//! written to another repository of this agent under the same keys — the data, the globals
//! object, the pin marker, and the manifest last, so the copy counts as a backup only once it
//! is whole.
//!
//! Each object with a recorded SHA-256 (the data, the globals) is hashed while it streams
//! and its write is committed only if size and hash match the record: a damaged source never
//! becomes a copy. Writes are create-only. An object already at the destination with the
//! recorded content is kept (a retried copy); one with other content fails the copy and is
//! left alone. A copy that fails removes what it wrote itself, so no part of it is left
//! behind for anyone to take for a backup.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt as _;
use lifeboat_proto::domain::{BackupRecord, Copied, Globals};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::Ordering;

use crate::{
    job::JobCtx,
    pipeline::Digest,
    repo::{self, MANIFEST_FILE, Repository, StorageError, body_channel},
    restore::{check_manifest, locate, read_manifest_bytes},
    work::CopyWork,
};

/// The pin marker's file name beside a manifest.
use crate::maintenance::PIN_FILE;

/// Chunks in flight between the read and the write.
const DEPTH: usize = 4;

/// Largest pin marker copied (it is a few hundred bytes).
const MAX_MARKER_BYTES: u64 = 64 * 1024;

pub async fn run(ctx: &JobCtx, work: &CopyWork) -> Result<Copied> {
    let rec = &work.backup;
    crate::maintenance::own_environment(ctx, rec, "copy")?;
    if rec.is_physical() {
        bail!(
            "backup {} is a physical base backup; copies of base backups (and of the WAL they need) are not supported",
            rec.backup_id
        );
    }
    if work.to == rec.repository {
        bail!(
            "backup {} is in repository {} already; copy it to another repository",
            rec.backup_id,
            work.to
        );
    }
    if rec.encryption.is_none() && ctx.config.repository_encryption.contains_key(&work.to) {
        bail!(
            "backup {} is stored in plaintext and repository {} is encrypted: an encrypted repository never receives a plaintext backup; copy it to a repository without encryption, or take a new (encrypted) backup",
            rec.backup_id,
            work.to
        );
    }
    let loc = locate(ctx, rec)?;
    let dst = repo::open(&ctx.config, &work.to)
        .with_context(|| format!("copy backup {} to repository {:?}", rec.backup_id, work.to))?;
    ctx.set_phase("reading the manifest");
    let Some(manifest) = read_manifest_bytes(&loc).await? else {
        bail!(
            "backup {} has no manifest in {} ({} is missing); there is nothing to copy — verify it with `lifeboat backup verify {}`",
            rec.backup_id,
            loc.repo.describe(),
            loc.manifest_key,
            rec.backup_id
        );
    };
    check_manifest(&loc, &manifest)
        .with_context(|| format!("check the manifest of backup {}", rec.backup_id))?;

    // A copy already complete there (its manifest written last): the same manifest means the
    // same backup, whose objects were checked when they were written.
    if let Some(there) = dst
        .get_bytes(&loc.manifest_key, crate::manifest::MAX_MANIFEST_BYTES)
        .await?
    {
        if there == manifest {
            ctx.report.ok(
                "copy",
                format!("backup {} is in {} already", rec.backup_id, dst.describe()),
            );
            return Ok(Copied {
                repository: work.to.clone(),
                objects: 0,
                stored_bytes: 0,
                stored_sha256: rec.stored_sha256.clone(),
                already_there: true,
            });
        }
        bail!(
            "{} in {} holds another manifest than backup {}'s; lifeboat never overwrites a backup: find out what it is before removing it",
            loc.manifest_key,
            dst.describe(),
            rec.backup_id
        );
    }

    // The janitor leaves a directory being written alone, in every repository.
    let _writing = repo::dir_of(&loc.manifest_key).map(|dir| ctx.writes.hold(dir));
    let mut written = Written::new(&dst);
    let result = copy_all(ctx, rec, &loc, &dst, &manifest, &mut written).await;
    if let Err(e) = result {
        written.undo().await;
        if ctx.cancel.is_cancelled() {
            bail!("cancelled");
        }
        return Err(e);
    }
    tracing::info!(
        backup_id = %rec.backup_id,
        from = %loc.repo.describe(),
        to = %dst.describe(),
        objects = written.keys.len(),
        "backup copied"
    );
    ctx.report.ok(
        "copy",
        format!(
            "backup {} copied from {} to {}: {} object(s), {} bytes, SHA-256 checked while reading",
            rec.backup_id,
            loc.repo.describe(),
            dst.describe(),
            written.keys.len(),
            written.bytes
        ),
    );
    Ok(Copied {
        repository: work.to.clone(),
        objects: u32::try_from(written.keys.len()).unwrap_or(u32::MAX),
        stored_bytes: written.bytes,
        stored_sha256: rec.stored_sha256.clone(),
        already_there: false,
    })
}

/// The objects of one copy, in order: data, globals, pin marker, manifest.
async fn copy_all(
    ctx: &JobCtx,
    rec: &BackupRecord,
    loc: &crate::restore::Located,
    dst: &Repository,
    manifest: &[u8],
    written: &mut Written<'_>,
) -> Result<()> {
    ctx.set_phase("copying");
    copy_object(
        ctx,
        &loc.repo,
        dst,
        &loc.data_key,
        &loc.expected.stored,
        written,
    )
    .await
    .with_context(|| format!("copy {}", loc.data_key))?;
    let dir = repo::dir_of(&loc.manifest_key)
        .context("the manifest lies in no backup directory")?
        .to_owned();
    if let Globals::Captured(g) = &rec.globals {
        let key = g.key.clone();
        let want = Digest {
            size: g.stored_size,
            sha256: g.stored_sha256.clone(),
        };
        copy_object(ctx, &loc.repo, dst, &key, &want, written)
            .await
            .with_context(|| format!("copy {key}"))?;
    }
    // An encrypted backup's key object, as it is now (rotations rewrite it in every
    // repository that holds the backup).
    if let Some(key_key) = &loc.key_key {
        let bytes = loc
            .repo
            .get_bytes(key_key, crate::crypt::MAX_KEY_OBJECT)
            .await?
            .with_context(|| {
                format!(
                    "the backup's key object {key_key} is missing from {}; without it no copy can be decrypted",
                    loc.repo.describe()
                )
            })?;
        match dst.get_bytes(key_key, crate::crypt::MAX_KEY_OBJECT).await? {
            Some(there) if there == bytes => {}
            Some(_) => bail!(
                "{} holds another key object at {key_key}; it is left alone (rotate the keys of backup {}, or delete that copy, then copy again)",
                dst.describe(),
                rec.backup_id
            ),
            None => put_small(ctx, dst, key_key, bytes, written).await?,
        }
    }
    // The pin marker, as it is now (a later pin or unpin writes the backup's own repository).
    let marker = format!("{dir}/{PIN_FILE}");
    if let Some(bytes) = loc.repo.get_bytes(&marker, MAX_MARKER_BYTES).await? {
        put_small(ctx, dst, &marker, bytes, written).await?;
    }
    ctx.set_phase("writing the manifest");
    let key = format!("{dir}/{MANIFEST_FILE}");
    put_small(ctx, dst, &key, manifest.to_vec(), written).await
}

async fn put_small(
    ctx: &JobCtx,
    dst: &Repository,
    key: &str,
    bytes: Vec<u8>,
    written: &mut Written<'_>,
) -> Result<()> {
    let n = bytes.len() as u64;
    dst.put_bytes(key, Bytes::from(bytes), &ctx.cancel)
        .await
        .with_context(|| format!("write {key} to {}", dst.describe()))?;
    written.add(key, n);
    Ok(())
}

/// Streams `key` from `src` to `dst`, committing the write only if what was read has the
/// size and SHA-256 of `want`. An object already at `dst` with that content is kept.
async fn copy_object(
    ctx: &JobCtx,
    src: &Repository,
    dst: &Repository,
    key: &str,
    want: &Digest,
    written: &mut Written<'_>,
) -> Result<()> {
    if let Some(head) = dst.head(key).await? {
        if head.size == want.size && read_sha256(dst, key).await?.as_deref() == Some(&want.sha256) {
            return Ok(());
        }
        bail!(
            "{key} already exists in {} with other content ({} bytes); lifeboat never overwrites: find out what it is before removing it, then copy again",
            dst.describe(),
            head.size
        );
    }
    let Some(mut stream) = src.get(key, 0).await? else {
        bail!(
            "{key} is missing from {}; verify the backup with `lifeboat backup verify`",
            src.describe()
        );
    };
    let (tx, body) = body_channel(DEPTH);
    let put = dst.put(key, body, Some(want.size), &ctx.cancel);
    let feed = async move {
        let mut hash = Sha256::new();
        let mut n: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Feed::Source(anyhow::anyhow!("read {key} from {}: {e}", src.describe()))
            })?;
            n += chunk.len() as u64;
            if n > want.size {
                return Err(Feed::Source(anyhow::anyhow!(
                    "{key} in {} is larger than the {} bytes recorded; it was changed after the backup — nothing was copied",
                    src.describe(),
                    want.size
                )));
            }
            hash.update(&chunk);
            ctx.counters
                .stored
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            tx.send(chunk).await.map_err(|_| Feed::Sink)?;
        }
        let got = hex::encode(hash.finalize());
        if n != want.size || got != want.sha256 {
            return Err(Feed::Source(anyhow::anyhow!(
                "{key} in {} holds {n} bytes with SHA-256 {got}; the backup recorded {} bytes with SHA-256 {} — the source is damaged, nothing was copied",
                src.describe(),
                want.size,
                want.sha256
            )));
        }
        tx.finish().await.map_err(|_| Feed::Sink)
    };
    let (put, feed) = tokio::join!(put, feed);
    match (feed, put) {
        (Err(Feed::Source(e)), _) => Err(e),
        (_, Err(StorageError::Cancelled)) => bail!("cancelled"),
        (_, Err(e)) => Err(anyhow::Error::from(e))
            .with_context(|| format!("write {key} to {}", dst.describe())),
        (Err(Feed::Sink), Ok(_)) => bail!("the write of {key} ended before its data"),
        (Ok(()), Ok(info)) => {
            if info.size != want.size {
                // Written, but not what was sent: take it back.
                let _ = dst.delete(key).await;
                bail!(
                    "{} stored {} bytes of {key}, {} were sent",
                    dst.describe(),
                    info.size,
                    want.size
                );
            }
            written.add(key, want.size);
            Ok(())
        }
    }
}

/// Why feeding a write stopped.
enum Feed {
    /// Reading or checking the source failed: the write is abandoned.
    Source(anyhow::Error),
    /// The write stopped taking data; its own error says why.
    Sink,
}

/// The SHA-256 of a stored object, or `None` if it is gone.
async fn read_sha256(repo: &Repository, key: &str) -> Result<Option<String>> {
    let Some(mut s) = repo.get(key, 0).await? else {
        return Ok(None);
    };
    let mut hash = Sha256::new();
    while let Some(chunk) = s.next().await {
        hash.update(&chunk.with_context(|| format!("read {key}"))?);
    }
    Ok(Some(hex::encode(hash.finalize())))
}

/// What this copy wrote, to take back if it fails.
struct Written<'a> {
    dst: &'a Repository,
    keys: Vec<String>,
    bytes: u64,
}

impl<'a> Written<'a> {
    fn new(dst: &'a Repository) -> Self {
        Self {
            dst,
            keys: Vec::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, key: &str, bytes: u64) {
        self.keys.push(key.to_owned());
        self.bytes += bytes;
    }

    /// Removes what was written, manifest first (never written before the rest, but a
    /// reader must never see a manifest without its data).
    async fn undo(&self) {
        for key in self.keys.iter().rev() {
            if let Err(e) = self.dst.delete(key).await {
                tracing::warn!(%key, repository = %self.dst.describe(), "could not remove part of a failed copy: {e}; the janitor removes it");
            }
        }
    }
}
