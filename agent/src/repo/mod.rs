//! Repositories: where backups live, behind one small [`Storage`] trait (put a stream, get a
//! stream from an offset, head, list, delete, janitor) implemented by the local filesystem
//! ([`fs`]) and S3-compatible object storage ([`s3`]). [`faulty`] wraps either to inject
//! failures in tests.
//!
//! Every write is create-only and atomic: nothing is visible under a key until the whole body
//! arrived and is durable (temp file + fsync + link on disk, a completed multipart upload on
//! S3). A [`Body`] that ends without [`BodySender::finish`] aborts the write.

pub mod body;
pub mod faulty;
pub mod fs;
pub mod janitor;
pub mod s3;
pub mod s3_config;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use body::{Body, BodySender, body_channel};

use crate::config::{Config, RepositoryConfig};

/// Name of the data file of a PostgreSQL custom-format backup.
pub const PG_DATA_FILE: &str = "data.pgdump.zst";
/// A physical base backup's data object: `pg_basebackup`'s tar, compressed.
pub const PG_BASE_DATA_FILE: &str = "data.tar.zst";
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a repository knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the repository root (`env/target/backup-id/file`).
    pub key: String,
    pub size: u64,
    /// Last modification, Unix milliseconds (0 if the backend does not say).
    pub modified_ms: i64,
}

/// Why a storage operation failed. The message always names the repository and the key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A create-only write found the key taken (S12).
    #[error("{0}")]
    AlreadyExists(String),
    #[error("cancelled")]
    Cancelled,
    /// The writer stopped before finishing the body (the job failed elsewhere).
    #[error("the upload was abandoned before its end: {0}")]
    Abandoned(String),
    /// What was stored is not what was sent (S6).
    #[error("{0}")]
    Verification(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A stream of stored bytes from some offset; each item is one chunk.
pub type ReadStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// One backend. Keys are relative (`env/target/backup-id/file`), `/`-separated, and every
/// segment is a plain name ([`check_key`]). Every method returns promptly once `cancel` fires
/// where it takes one. The writes take a token because a cancelled write has server-side state
/// to clean up (a multipart upload to abort, a temporary file to remove) before it returns;
/// reads, listings and deletes are cancelled by dropping their future or stream, which leaves
/// nothing behind.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// "fs" or "s3".
    fn kind(&self) -> &'static str;
    /// Where it is, for messages: `fs:/var/lib/lifeboat/repo`, `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Writes `body` under `key`, create-only: fails with [`StorageError::AlreadyExists`] if
    /// the key exists, and leaves nothing under `key` on any failure, cancel or abandoned body.
    /// `size_hint` (the expected size, if known) only tunes the upload.
    async fn put(
        &self,
        key: &str,
        body: Body,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo>;
    /// Reads `key` from byte `offset` to its end; `None` if the key does not exist.
    async fn get(&self, key: &str, offset: u64) -> StorageResult<Option<ReadStream>>;
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>>;
    /// Every object under `prefix` (a key prefix ending at a segment boundary; empty for the
    /// whole repository), any depth, sorted by key. Temporary files are not listed.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectInfo>>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Removes what interrupted writes left under `prefix` (`env/target`) that is older than
    /// `older_than`: incomplete multipart uploads on S3, temporary files and backup directories
    /// without a manifest on disk. Backup directories in `busy` (keys like
    /// `env/target/backup-id`, being written by this agent now) are left alone however old.
    /// Returns how many it removed.
    async fn janitor(
        &self,
        prefix: &str,
        older_than: Duration,
        busy: &BTreeSet<String>,
    ) -> StorageResult<u64>;

    /// Replaces a small object (an encrypted backup's key object, on key rotation) in one
    /// atomic step: a reader sees the old bytes or the new, never a mix or nothing. The only
    /// write in a repository that is not create-only.
    async fn replace_bytes(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo>;

    /// Writes a small object (a manifest), create-only.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        // Room for the chunk and the end marker: both are queued before `put` starts reading.
        let (tx, body) = body_channel(2);
        let size = bytes.len() as u64;
        tx.send(bytes).await.ok();
        tx.finish().await.ok();
        self.put(key, body, Some(size), cancel).await
    }

    /// Reads a small object whole; refuses objects over `limit` bytes.
    async fn get_bytes(&self, key: &str, limit: u64) -> StorageResult<Option<Vec<u8>>> {
        use futures::StreamExt as _;
        let Some(mut s) = self.get(key, 0).await? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| anyhow::anyhow!("read {key}: {e}"))?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(anyhow::anyhow!(
                    "{key} in {} is larger than {limit} bytes; it is not a lifeboat manifest",
                    self.describe()
                )
                .into());
            }
        }
        Ok(Some(out))
    }
}

pub type Repository = Arc<dyn Storage>;

/// Opens repository `name` of this agent. Cheap: no network I/O happens here, and S3 clients
/// (with their connection pools) are shared between jobs.
pub fn open(config: &Config, name: &str) -> anyhow::Result<Repository> {
    let cfg = config.repositories.get(name).with_context(|| {
        format!(
            "this agent has no repository named {name:?}; add it to the agent's [[repository]] list"
        )
    })?;
    Ok(match cfg {
        RepositoryConfig::Fs { path } => Arc::new(fs::FsRepository::new(path.clone())),
        RepositoryConfig::S3(c) => {
            static OPEN: Mutex<Vec<(String, Box<s3::S3Config>, Repository)>> =
                Mutex::new(Vec::new());
            let mut open = OPEN
                .lock()
                .map_err(|_| anyhow::anyhow!("repository cache poisoned"))?;
            if let Some((_, _, r)) = open.iter().find(|(n, k, _)| n == name && k == c) {
                return Ok(r.clone());
            }
            let journal = config.state_dir.join("s3-uploads").join(name);
            let r: Repository = Arc::new(s3::S3Repository::new(name, c)?.with_journal(journal));
            open.push((name.to_owned(), c.clone(), r.clone()));
            r
        }
    })
}

/// The backup directories this agent's jobs are writing now. A backup holds its directory
/// from before its upload starts until its manifest is written (or it failed), so the janitor
/// never takes a long upload, or a finished data object waiting for its manifest, for an
/// interrupted one.
#[derive(Debug, Clone, Default)]
pub struct ActiveWrites(Arc<Mutex<BTreeMap<String, usize>>>);

/// Releases its directory when dropped.
#[derive(Debug)]
pub struct WriteHold {
    writes: ActiveWrites,
    key: String,
}

impl ActiveWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn hold(&self, dir_key: &str) -> WriteHold {
        *self.lock().entry(dir_key.to_owned()).or_default() += 1;
        WriteHold {
            writes: self.clone(),
            key: dir_key.to_owned(),
        }
    }

    pub fn snapshot(&self) -> BTreeSet<String> {
        self.lock().keys().cloned().collect()
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let mut m = self.writes.lock();
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// The backup directory (`env/target/id`) a key lies in, if it lies in one.
pub fn dir_of(key: &str) -> Option<&str> {
    let mut parts = key.splitn(4, '/');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    Some(&key[..a.len() + b.len() + c.len() + 2])
}

/// `env/target/backup-id`
/// Whether `file` (a name in a backup's directory) is one a backup writes before its manifest:
/// what the janitor removes from a directory whose backup never completed.
pub(crate) fn is_backup_object(file: &str) -> bool {
    file.starts_with("data.") || file.starts_with("globals.") || file == crate::crypt::KEY_FILE
}

pub fn backup_dir_key(environment: &str, target: &str, backup_id: &str) -> String {
    format!("{environment}/{target}/{backup_id}")
}

/// Keys are relative, `/`-separated, and every segment is a plain name that does not start
/// with a dot (temporary files do).
pub fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.starts_with('/') {
        anyhow::bail!("invalid repository key {key:?}");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('.') {
            anyhow::bail!("invalid repository key {key:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_held_until_the_last_hold_goes() {
        let w = ActiveWrites::default();
        let a = w.hold("prod/orders/20261127T233000Z-7f3a9c");
        let b = w.hold("prod/orders/20261127T233000Z-7f3a9c");
        assert_eq!(w.snapshot().len(), 1);
        drop(a);
        assert_eq!(w.snapshot().len(), 1);
        drop(b);
        assert!(w.snapshot().is_empty());
    }

    #[test]
    fn keys_lie_in_backup_directories() {
        assert_eq!(
            dir_of("prod/orders/20261127T233000Z-7f3a9c/data.pgdump.zst"),
            Some("prod/orders/20261127T233000Z-7f3a9c")
        );
        assert_eq!(dir_of("prod/orders/20261127T233000Z-7f3a9c"), None);
        assert_eq!(dir_of("prod/orders"), None);
    }
}
