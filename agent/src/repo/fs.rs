//! Filesystem repository: a directory tree
//! `<root>/<environment>/<target>/<backup-id>/{data.pgdump.zst,manifest.json}`.
//!
//! Writes are create-only and durable: a temporary file in the same directory, fsync, a hard
//! link to the final name (fails if the name exists — never overwrites, S12), unlink of the
//! temporary, fsync of the directory. Anything a failed backup created is removed when its
//! [`BackupWriter`] is dropped unfinished, so nothing that looks like a backup is left behind.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone)]
pub struct FsRepository {
    root: PathBuf,
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
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Starts writing the backup directory `dir_key` (`env/target/backup-id`). Fails if it
    /// already exists.
    pub fn begin(&self, dir_key: &str) -> Result<BackupWriter> {
        let dir = self.path_of(dir_key)?;
        let parent = dir
            .parent()
            .context("backup directory has no parent")?
            .to_owned();
        // Create each missing level and fsync the directory that now holds it, so a target's
        // first backup survives a power loss like any other.
        let mut missing = Vec::new();
        let mut p = parent.as_path();
        while !p.exists() && p != self.root {
            missing.push(p.to_owned());
            p = p.parent().context("repository path has no parent")?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .with_context(|| format!("create repository directory {}", parent.display()))?;
        for created in missing.iter().rev() {
            if let Some(up) = created.parent() {
                fsync_dir(up).with_context(|| format!("fsync {}", up.display()))?;
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
                "{} already exists in the repository; a backup id is never reused (is another agent writing to the same repository path?)",
                dir.display()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("create backup directory {}", dir.display()));
            }
        }
        let w = BackupWriter {
            dir,
            created: Vec::new(),
            done: false,
            #[cfg(test)]
            fault: None,
        };
        fsync_dir(&parent).with_context(|| format!("fsync {}", parent.display()))?;
        Ok(w)
    }

    /// Opens a stored file for reading.
    pub fn open(&self, key: &str) -> Result<Option<File>> {
        let path = self.path_of(key)?;
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("open {}", path.display())),
        }
    }

    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
}

impl FsRepository {
    /// Removes backup directories under `prefix` (`env/target`) that have no manifest: what a
    /// crashed backup leaves. Only the files lifeboat writes are removed; a directory holding
    /// anything else is left alone. Returns the directories removed.
    pub fn sweep_incomplete(&self, prefix: &str) -> Result<Vec<PathBuf>> {
        let dir = self.path_of(prefix)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if lifeboat_common::ids::validate_id("backup id", name).is_err()
                || !entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let backup = entry.path();
            if backup.join(super::MANIFEST_FILE).exists() {
                continue;
            }
            for f in [
                format!(".{}.tmp", super::PG_DATA_FILE),
                super::PG_DATA_FILE.to_owned(),
                format!(".{}.tmp", super::MANIFEST_FILE),
            ] {
                let _ = fs::remove_file(backup.join(f));
            }
            if fs::remove_dir(&backup).is_ok() {
                removed.push(backup);
            }
        }
        if !removed.is_empty() {
            fsync_dir(&dir).with_context(|| format!("fsync {}", dir.display()))?;
        }
        Ok(removed)
    }
}

/// Keys are relative, `/`-separated, and every segment is a plain name.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.starts_with('/') {
        bail!("invalid repository key {key:?}");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('.') {
            bail!("invalid repository key {key:?}");
        }
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A backup directory being written. Dropping it without [`BackupWriter::finish`] removes
/// everything it created.
#[derive(Debug)]
pub struct BackupWriter {
    dir: PathBuf,
    created: Vec<PathBuf>,
    done: bool,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// A temporary file in the backup directory, removed on drop unless committed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    final_name: String,
    file: Option<File>,
}

impl TempFile {
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("temp file is open until committed")
    }

    /// Hands out the file handle for a writer on another thread; give it back with
    /// [`TempFile::put_back`] before committing.
    pub fn take(&mut self) -> Option<File> {
        self.file.take()
    }

    pub fn put_back(&mut self, file: File) {
        self.file = Some(file);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl BackupWriter {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    pub fn inject(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    /// Creates `.NAME.tmp` (mode 0600) for the file that will be committed as `NAME`.
    pub fn create_temp(&mut self, name: &str) -> Result<TempFile> {
        check_key(name)?;
        let path = self.dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        Ok(TempFile {
            path,
            final_name: name.to_owned(),
            file: Some(file),
        })
    }

    /// Makes a temporary file durable under its final name. Fails, leaving nothing under the
    /// final name, if the name exists or any step fails.
    pub fn commit(&mut self, mut tmp: TempFile) -> Result<()> {
        let file = tmp.file.take().context("temp file handle missing")?;
        let final_path = self.dir.join(&tmp.final_name);
        #[cfg(test)]
        if self.fault == Some(Fault::Fsync) {
            bail!("fsync {}: injected failure", tmp.path.display());
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", tmp.path.display()))?;
        drop(file);
        #[cfg(test)]
        if self.fault == Some(Fault::Link) {
            bail!("rename {}: injected failure", tmp.path.display());
        }
        fs::hard_link(&tmp.path, &final_path).with_context(|| {
            format!(
                "rename {} to {} (create-only)",
                tmp.path.display(),
                final_path.display()
            )
        })?;
        self.created.push(final_path.clone());
        fs::remove_file(&tmp.path).with_context(|| format!("remove {}", tmp.path.display()))?;
        fsync_dir(&self.dir).with_context(|| format!("fsync {}", self.dir.display()))?;
        Ok(())
    }

    /// Writes a small file (the manifest) durably, create-only.
    pub fn write_file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut tmp = self.create_temp(name)?;
        tmp.file()
            .write_all(bytes)
            .with_context(|| format!("write {}", tmp.path.display()))?;
        self.commit(tmp)
    }

    /// The backup is complete: keep everything.
    pub fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Remove in reverse order: the manifest (if any) first, so a crash in between never
        // leaves a manifest without its data.
        for p in self.created.iter().rev() {
            let _ = fs::remove_file(p);
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&self.dir);
        if let Some(parent) = self.dir.parent() {
            let _ = fsync_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    #[test]
    fn write_commit_finish() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let mut w = repo
            .begin("dev/orders/20261127T233000Z-7f3a9c")
            .expect("begin");
        let mut t = w.create_temp("data.pgdump.zst").expect("temp");
        t.file().write_all(b"hello").expect("write");
        w.commit(t).expect("commit");
        w.write_file("manifest.json", b"{}").expect("manifest");
        let dir = w.dir().to_owned();
        w.finish();
        assert_eq!(names(&dir), ["data.pgdump.zst", "manifest.json"]);
        assert_eq!(
            repo.read("dev/orders/20261127T233000Z-7f3a9c/data.pgdump.zst")
                .expect("read"),
            Some(b"hello".to_vec())
        );
        // The same id again is refused (S12) and the first backup is untouched.
        let e = repo
            .begin("dev/orders/20261127T233000Z-7f3a9c")
            .expect_err("reused id");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(names(&dir), ["data.pgdump.zst", "manifest.json"]);
    }

    #[test]
    fn unfinished_backup_leaves_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let w_dir;
        {
            let mut w = repo
                .begin("dev/orders/20261127T233000Z-000001")
                .expect("begin");
            w_dir = w.dir().to_owned();
            let mut t = w.create_temp("data.pgdump.zst").expect("temp");
            t.file().write_all(b"partial").expect("write");
            w.commit(t).expect("commit");
            let mut t2 = w.create_temp("manifest.json").expect("temp");
            t2.file().write_all(b"{").expect("write");
            drop(t2);
            // dropped without finish
        }
        assert!(!w_dir.exists(), "{:?} left behind", names(&w_dir));
    }

    #[test]
    fn fsync_or_rename_failure_leaves_nothing_under_the_final_name() {
        // S11
        for fault in [Fault::Fsync, Fault::Link] {
            let root = tempfile::tempdir().expect("tempdir");
            let repo = FsRepository::new(root.path().to_owned());
            let mut w = repo
                .begin("dev/orders/20261127T233000Z-000002")
                .expect("begin");
            let dir = w.dir().to_owned();
            w.inject(fault);
            let mut t = w.create_temp("data.pgdump.zst").expect("temp");
            t.file().write_all(b"data").expect("write");
            let e = w.commit(t).expect_err("fault ignored");
            assert!(e.to_string().contains("injected"), "{e}");
            assert!(!dir.join("data.pgdump.zst").exists());
            drop(w);
            assert!(!dir.exists());
        }
    }

    #[test]
    fn sweep_removes_only_incomplete_backups() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        let mut good = repo
            .begin("dev/orders/20261127T233000Z-000003")
            .expect("begin");
        good.write_file("data.pgdump.zst", b"d").expect("data");
        good.write_file("manifest.json", b"{}").expect("manifest");
        good.finish();
        let crashed = root.path().join("dev/orders/20261127T233001Z-000004");
        fs::create_dir_all(&crashed).expect("mkdir");
        fs::write(crashed.join(".data.pgdump.zst.tmp"), b"partial").expect("write");
        let foreign = root.path().join("dev/orders/20261127T233002Z-000005");
        fs::create_dir_all(&foreign).expect("mkdir");
        fs::write(foreign.join("notes.txt"), b"not ours").expect("write");
        let removed = repo.sweep_incomplete("dev/orders").expect("sweep");
        assert_eq!(removed, vec![crashed.clone()]);
        assert!(!crashed.exists());
        assert!(foreign.join("notes.txt").exists());
        assert_eq!(
            repo.read("dev/orders/20261127T233000Z-000003/data.pgdump.zst")
                .expect("read"),
            Some(b"d".to_vec())
        );
        assert!(
            repo.sweep_incomplete("dev/none")
                .expect("missing prefix")
                .is_empty()
        );
    }

    #[test]
    fn keys_are_checked() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FsRepository::new(root.path().to_owned());
        for bad in ["../x", "/etc/passwd", "a/../b", "a//b", ".hidden/x", ""] {
            assert!(repo.read(bad).is_err(), "{bad} accepted");
        }
    }
}
