//! Filesystem repository: a directory tree
//! `<root>/<environment>/<target>/<backup-id>/{data.pgdump.zst,manifest.json}`.
//!
//! Writes are create-only and durable: a temporary file in the same directory, fsync, a hard
//! link to the final name (fails if the name exists — never overwrites, S12), unlink of the
//! temporary, fsync of the directory. A write that fails, is cancelled or whose body is
//! abandoned removes its temporary file and leaves nothing under the final name.
//!
//! All file system work runs on blocking threads, never on the reactor.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    Body, MANIFEST_FILE, ObjectInfo, ReadStream, Storage, StorageError, StorageResult, check_key,
};

#[derive(Debug, Clone)]
pub struct FsRepository {
    root: PathBuf,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// Fault points for tests of the failure paths (S11).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fsync,
    Link,
}

impl FsRepository {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            #[cfg(test)]
            fault: None,
        }
    }

    #[cfg(test)]
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates every missing directory up to `dir`, fsyncing each parent that gained an entry,
    /// so a target's first backup survives a power loss like any other. Returns the
    /// directories it created, outermost first.
    fn create_dirs(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut missing = Vec::new();
        let mut p = dir;
        while !p.exists() && p != self.root {
            missing.push(p.to_owned());
            p = p.parent().context("repository path has no parent")?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create repository directory {}", dir.display()))?;
        missing.reverse();
        for created in &missing {
            if let Some(up) = created.parent() {
                fsync_dir(up).with_context(|| format!("fsync {}", up.display()))?;
            }
        }
        Ok(missing)
    }

    /// The blocking half of [`Storage::put`]: receives the body on this thread. On failure the
    /// directories it created are removed again (if nothing else appeared in them).
    fn put_blocking(
        &self,
        key: &str,
        body: Body,
        cancel: &CancellationToken,
        rt: &tokio::runtime::Handle,
    ) -> StorageResult<ObjectInfo> {
        let mut created = Vec::new();
        let r = self.put_inner(key, body, cancel, rt, &mut created);
        if r.is_err() {
            for d in created.iter().rev() {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                if let Some(up) = d.parent() {
                    let _ = fsync_dir(up);
                }
            }
        }
        r
    }

    fn put_inner(
        &self,
        key: &str,
        mut body: Body,
        cancel: &CancellationToken,
        rt: &tokio::runtime::Handle,
        created: &mut Vec<PathBuf>,
    ) -> StorageResult<ObjectInfo> {
        let path = self.path_of(key)?;
        let dir = path.parent().context("key has no directory")?.to_owned();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("key has no file name")?
            .to_owned();
        if path.exists() {
            return Err(exists(&path));
        }
        *created = self.create_dirs(&dir)?;
        let tmp_path = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
        let mut tmp = TempFile::create(&tmp_path)?;
        let mut size = 0u64;
        let mut writeback = Writeback::default();
        loop {
            if cancel.is_cancelled() {
                return Err(StorageError::Cancelled);
            }
            let chunk = rt.block_on(async {
                tokio::select! {
                    c = body.next() => c.map(Some),
                    () = cancel.cancelled() => Ok(None),
                }
            })?;
            let Some(chunk) = chunk else {
                return Err(StorageError::Cancelled);
            };
            let Some(chunk) = chunk else { break };
            tmp.file
                .write_all(&chunk)
                .with_context(|| format!("write {}", tmp_path.display()))?;
            size += chunk.len() as u64;
            writeback.wrote(&tmp.file, size);
        }
        #[cfg(test)]
        if self.fault == Some(Fault::Fsync) {
            return Err(anyhow!("fsync {}: injected failure", tmp_path.display()).into());
        }
        tmp.file
            .sync_all()
            .with_context(|| format!("fsync {}", tmp_path.display()))?;
        #[cfg(test)]
        if self.fault == Some(Fault::Link) {
            return Err(anyhow!("rename {}: injected failure", tmp_path.display()).into());
        }
        match fs::hard_link(&tmp_path, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(&path)),
            Err(e) => {
                return Err(anyhow!(e)
                    .context(format!(
                        "rename {} to {} (create-only)",
                        tmp_path.display(),
                        path.display()
                    ))
                    .into());
            }
        }
        drop(tmp);
        fsync_dir(&dir).with_context(|| format!("fsync {}", dir.display()))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            modified_ms: lifeboat_common::time::now_ms(),
        })
    }

    fn list_blocking(&self, prefix: &str) -> anyhow::Result<Vec<ObjectInfo>> {
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path_of(prefix)?
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, prefix.to_owned())];
        while let Some((dir, key)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("list {}", dir.display()))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                let meta = entry
                    .metadata()
                    .with_context(|| format!("stat {}", entry.path().display()))?;
                if meta.is_dir() {
                    stack.push((entry.path(), child));
                } else if meta.is_file() {
                    out.push(ObjectInfo {
                        key: child,
                        size: meta.len(),
                        modified_ms: modified_ms(&meta),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete_blocking(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
        }
        if let Some(dir) = path.parent() {
            fsync_dir(dir).with_context(|| format!("fsync {}", dir.display()))?;
            // The backup directory goes with its last file.
            if dir != self.root
                && fs::remove_dir(dir).is_ok()
                && let Some(up) = dir.parent()
            {
                let _ = fsync_dir(up);
            }
        }
        Ok(())
    }

    /// Removes backup directories under `prefix` (`env/target`) that have no manifest and
    /// were last touched before `cutoff`: what a crashed backup leaves. Only the files lifeboat
    /// writes (data files and temporaries) are removed; a directory holding anything else is
    /// left alone. Returns how many directories were removed.
    fn janitor_blocking(
        &self,
        prefix: &str,
        cutoff: SystemTime,
        busy: &std::collections::BTreeSet<String>,
    ) -> anyhow::Result<u64> {
        let dir = self.path_of(prefix)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if lifeboat_common::ids::validate_id("backup id", name).is_err()
                || !entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let backup = entry.path();
            if backup.join(MANIFEST_FILE).exists() || busy.contains(&format!("{prefix}/{name}")) {
                continue;
            }
            let files: Vec<_> = fs::read_dir(&backup)
                .map(|r| r.flatten().collect())
                .unwrap_or_default();
            let newest = files
                .iter()
                .filter_map(|f| f.metadata().ok()?.modified().ok())
                .chain(entry.metadata().ok().and_then(|m| m.modified().ok()))
                .max();
            if newest.is_some_and(|t| t > cutoff) {
                continue;
            }
            for f in &files {
                let n = f.file_name();
                let n = n.to_string_lossy();
                let ours = (n.starts_with('.') && n.ends_with(".tmp"))
                    || super::is_backup_object(&n)
                    || n == "pin.json";
                if ours {
                    let _ = fs::remove_file(f.path());
                }
            }
            if fs::remove_dir(&backup).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            fsync_dir(&dir).with_context(|| format!("fsync {}", dir.display()))?;
        }
        Ok(removed + self.wal_temporaries(&dir.join("wal"), cutoff))
    }

    /// Removes the temporaries an interrupted WAL push left in `wal/*/` (a push killed between
    /// its create and its rename): never younger than ten minutes, even at start-up, as the
    /// WAL socket may already be taking pushes. Returns how many went.
    fn wal_temporaries(&self, wal: &Path, cutoff: SystemTime) -> u64 {
        let floor = SystemTime::now() - std::time::Duration::from_secs(600);
        let cutoff = cutoff.min(floor);
        let mut removed = 0;
        let Ok(dirs) = fs::read_dir(wal) else {
            return 0;
        };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            let mut here = 0;
            for f in files.flatten() {
                let n = f.file_name();
                let n = n.to_string_lossy();
                let old = f
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .is_some_and(|t| t < cutoff);
                if n.starts_with('.')
                    && n.ends_with(".tmp")
                    && old
                    && fs::remove_file(f.path()).is_ok()
                {
                    here += 1;
                }
            }
            if here > 0 {
                let _ = fsync_dir(&d.path());
                removed += here;
            }
        }
        removed
    }
}

#[async_trait]
impl Storage for FsRepository {
    fn kind(&self) -> &'static str {
        "fs"
    }

    fn describe(&self) -> String {
        format!("fs:{}", self.root.display())
    }

    async fn put(
        &self,
        key: &str,
        body: Body,
        _size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        let this = self.clone();
        let key = key.to_owned();
        let cancel = cancel.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || this.put_blocking(&key, body, &cancel, &rt))
            .await
            .map_err(|e| anyhow!("repository write task failed: {e}"))?
    }

    async fn replace_bytes(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        _cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        let this = self.clone();
        Ok(blocking(move || {
            let dir = path.parent().context("key has no directory")?.to_owned();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("key has no file name")?
                .to_owned();
            this.create_dirs(&dir)?;
            let tmp_path = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
            let mut tmp = TempFile::create(&tmp_path)?;
            tmp.file
                .write_all(&bytes)
                .and_then(|()| tmp.file.sync_all())
                .with_context(|| format!("write {}", tmp_path.display()))?;
            // rename(2) replaces the target atomically.
            fs::rename(&tmp_path, &path)
                .with_context(|| format!("rename {} to {}", tmp_path.display(), path.display()))?;
            drop(tmp);
            fsync_dir(&dir).with_context(|| format!("fsync {}", dir.display()))?;
            Ok(ObjectInfo {
                key,
                size: bytes.len() as u64,
                modified_ms: lifeboat_common::time::now_ms(),
            })
        })
        .await?)
    }

    async fn get(&self, key: &str, offset: u64) -> StorageResult<Option<ReadStream>> {
        use futures::StreamExt as _;
        let path = self.path_of(key)?;
        let file = blocking(move || match File::open(&path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(offset))
                    .with_context(|| format!("seek {}", path.display()))?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("open {}", path.display())),
        })
        .await?;
        Ok(file.map(|f| {
            tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::from_std(f),
                super::body::CHUNK,
            )
            .boxed()
        }))
    }

    async fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        Ok(blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key,
                size: m.len(),
                modified_ms: modified_ms(&m),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
        })
        .await?)
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectInfo>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        Ok(blocking(move || this.list_blocking(&prefix)).await?)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let this = self.clone();
        let key = key.to_owned();
        Ok(blocking(move || this.delete_blocking(&key)).await?)
    }

    async fn janitor(
        &self,
        prefix: &str,
        older_than: Duration,
        busy: &std::collections::BTreeSet<String>,
    ) -> StorageResult<u64> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        let busy = busy.clone();
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        Ok(blocking(move || this.janitor_blocking(&prefix, cutoff, &busy)).await?)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("repository task failed: {e}"))?
}

fn exists(path: &Path) -> StorageError {
    StorageError::AlreadyExists(format!(
        "{} already exists in the repository; lifeboat never overwrites a stored file (is another agent writing to the same repository path?)",
        path.display()
    ))
}

fn modified_ms(m: &fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts writing a backup's pages to disk while it is still being written, and lets the page
/// cache forget them once they are on disk, instead of leaving gigabytes of dirty pages for the
/// final fsync: that fsync then has little left to do, and neither it nor the backup's pages
/// crowd out the database's own writes and cache on the same host (PostgreSQL's
/// `backend_flush_after` does the same). Advice only: the final fsync is what makes the file
/// durable, and a file system that ignores the advice loses nothing.
#[derive(Default)]
struct Writeback {
    /// Bytes of the file advised so far.
    advised: u64,
    /// Where the previous advice began: its pages were still being written then, so they are
    /// advised once more to be dropped from the cache.
    behind: u64,
}

impl Writeback {
    const WINDOW: u64 = 8 * 1024 * 1024;

    fn wrote(&mut self, file: &File, size: u64) {
        if size - self.advised < Self::WINDOW {
            return;
        }
        // On Linux, POSIX_FADV_DONTNEED starts writeback of the range's dirty pages without
        // waiting for it and drops the pages already clean.
        let _ = rustix::fs::fadvise(
            file,
            self.behind,
            std::num::NonZeroU64::new(size - self.behind),
            rustix::fs::Advice::DontNeed,
        );
        self.behind = self.advised;
        self.advised = size;
    }
}

/// A temporary file, removed on drop (after a successful link only the temporary name goes).
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{PG_DATA_FILE, body_channel};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[tokio::test]
    async fn fsync_or_rename_failure_leaves_nothing_under_the_final_name() {
        // S11
        for fault in [Fault::Fsync, Fault::Link] {
            let root = tempfile::tempdir().expect("tempdir");
            let repo = FsRepository::new(root.path().to_owned()).with_fault(fault);
            let key = format!("dev/orders/20261127T233000Z-000002/{PG_DATA_FILE}");
            let e = repo
                .put_bytes(
                    &key,
                    bytes::Bytes::from_static(b"data"),
                    &CancellationToken::new(),
                )
                .await
                .expect_err("fault ignored");
            assert!(e.to_string().contains("injected"), "{e}");
            let dir = root.path().join("dev/orders/20261127T233000Z-000002");
            assert_eq!(names(&dir), Vec::<String>::new());
        }
    }

    #[tokio::test]
    async fn janitor_removes_only_old_incomplete_backups() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let cancel = CancellationToken::new();
        let good = "dev/orders/20261127T233000Z-000003";
        repo.put_bytes(&format!("{good}/{PG_DATA_FILE}"), "d".into(), &cancel)
            .await
            .expect("data");
        repo.put_bytes(&format!("{good}/{MANIFEST_FILE}"), "{}".into(), &cancel)
            .await
            .expect("manifest");
        let crashed = root.path().join("dev/orders/20261127T233001Z-000004");
        fs::create_dir_all(&crashed).expect("mkdir");
        fs::write(crashed.join(".data.pgdump.zst.1234abcd.tmp"), b"partial").expect("write");
        fs::write(crashed.join(PG_DATA_FILE), b"no manifest").expect("write");
        // An encrypted backup killed after its key object and globals, before its manifest.
        fs::write(crashed.join("key.age"), b"key").expect("write");
        fs::write(crashed.join("globals.sql.zst.age"), b"globals").expect("write");
        let foreign = root.path().join("dev/orders/20261127T233002Z-000005");
        fs::create_dir_all(&foreign).expect("mkdir");
        fs::write(foreign.join("notes.txt"), b"not ours").expect("write");

        // Too young: left alone (it may be a backup in progress).
        let none = std::collections::BTreeSet::new();
        let n = repo
            .janitor("dev/orders", Duration::from_secs(3600), &none)
            .await
            .expect("janitor");
        assert_eq!(n, 0);
        assert!(crashed.exists());
        // Being written by this agent: left alone however old.
        let busy = ["dev/orders/20261127T233001Z-000004".to_owned()].into();
        let n = repo
            .janitor("dev/orders", Duration::ZERO, &busy)
            .await
            .expect("janitor");
        assert_eq!(n, 0);
        assert!(crashed.exists());

        let n = repo
            .janitor("dev/orders", Duration::ZERO, &none)
            .await
            .expect("janitor");
        assert_eq!(n, 1);
        assert!(!crashed.exists());
        assert!(foreign.join("notes.txt").exists());
        assert_eq!(
            repo.get_bytes(&format!("{good}/{PG_DATA_FILE}"), 10)
                .await
                .expect("read"),
            Some(b"d".to_vec())
        );
        assert_eq!(
            repo.janitor("dev/none", Duration::ZERO, &none)
                .await
                .expect("missing prefix"),
            0
        );
    }

    /// A push killed between its create and its rename leaves a temporary in `wal/*/`: the
    /// janitor removes it once it is ten minutes old, even at start-up; stored segments and
    /// younger temporaries (a push in flight) stay.
    #[tokio::test]
    async fn janitor_removes_old_wal_temporaries_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let dir = root.path().join("dev/main/wal/0000000100000000");
        fs::create_dir_all(&dir).expect("mkdir");
        let seg = format!("000000010000000000000003-{}.zst", "a".repeat(64));
        let old = format!(".{seg}.0badf00d.tmp");
        let young = format!(".{seg}.0000beef.tmp");
        for n in [&seg, &old, &young] {
            fs::write(dir.join(n), b"x").expect("write");
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(dir.join(&old))
            .and_then(|f| f.set_modified(hour_ago))
            .expect("age the temporary");
        let none = std::collections::BTreeSet::new();
        let n = repo
            .janitor("dev/main", Duration::ZERO, &none)
            .await
            .expect("janitor");
        assert_eq!(n, 1);
        assert_eq!(names(&dir), vec![young, seg]);
    }

    #[tokio::test]
    async fn abandoned_body_leaves_no_temporary_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let (tx, body) = body_channel(2);
        let key = "dev/orders/20261127T233000Z-000006/data.pgdump.zst";
        let put = {
            let repo = repo.clone();
            tokio::spawn(async move { repo.put(key, body, None, &CancellationToken::new()).await })
        };
        tx.send("partial".into()).await.expect("send");
        drop(tx);
        let e = put.await.expect("join").expect_err("abandoned body stored");
        assert!(matches!(e, StorageError::Abandoned(_)), "{e}");
        let dir = root.path().join("dev/orders/20261127T233000Z-000006");
        assert_eq!(names(&dir), Vec::<String>::new());
    }
}
