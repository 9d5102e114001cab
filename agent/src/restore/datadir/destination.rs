//! The directory a data-directory restore goes into: checked before anything is written
//! (empty or missing, allowed by the target, not inside a cluster, room enough), then claimed
//! for the restore and emptied again (removed if the restore created it) unless the restore
//! succeeds.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use super::PG_VERSION;
use crate::restore::human_bytes;

/// What the directory is before the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Destination {
    /// Created by the restore (its parent exists).
    Missing,
    /// An existing empty directory, and its owner (the restored files get it when the agent
    /// runs as root).
    Empty { uid: u32, gid: u32 },
}

impl Destination {
    /// Refuses anything but an empty directory, or a missing one whose parent exists; names
    /// what makes a directory a data directory.
    pub(super) fn check(dir: &Path) -> Result<Self> {
        if let Some(cluster) = enclosing_cluster(dir) {
            bail!(
                "{} is inside {}, the data directory of a PostgreSQL cluster, which a restore never touches; restore into a directory outside it",
                dir.display(),
                cluster.display()
            );
        }
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = dir.parent().unwrap_or(Path::new("/"));
                return match std::fs::metadata(parent) {
                    Ok(p) if p.is_dir() => Ok(Destination::Missing),
                    Ok(_) => bail!("{} is not a directory", parent.display()),
                    Err(e) => bail!(
                        "{} does not exist and neither does its parent {} ({e}); create the parent first",
                        dir.display(),
                        parent.display()
                    ),
                };
            }
            Err(e) => bail!("cannot inspect {}: {e}", dir.display()),
        };
        if meta.file_type().is_symlink() {
            bail!(
                "{} is a symbolic link; name the directory it points to",
                dir.display()
            );
        }
        if !meta.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("list {}", dir.display()))?;
        names.sort();
        if names.iter().any(|n| n == "postmaster.pid") {
            bail!(
                "{} holds postmaster.pid: it is the data directory of a running (or crashed) PostgreSQL server, which a restore never touches; restore into a new empty directory",
                dir.display()
            );
        }
        if names.iter().any(|n| n == PG_VERSION) {
            bail!(
                "{} holds PG_VERSION: it is a PostgreSQL data directory, which a restore never overwrites; restore into a new empty directory (or remove the old cluster yourself first)",
                dir.display()
            );
        }
        if names == ["lost+found"] {
            bail!(
                "{} holds only lost+found: it is the root of a file system, which PostgreSQL does not accept as a data directory; create a subdirectory (install -d -o postgres -m 0700 {}/pgdata) and restore into it",
                dir.display(),
                dir.display()
            );
        }
        if names.iter().any(|n| n == "backup_label") {
            bail!(
                "{} holds backup_label but no PG_VERSION: an interrupted restore was left there; remove its contents and restore again",
                dir.display()
            );
        }
        if !names.is_empty() {
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            bail!(
                "{} is not empty ({} entries: {}{}); restore into an empty directory",
                dir.display(),
                names.len(),
                shown.join(", "),
                if names.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        Ok(Destination::Empty {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// Whether the target's `restore_data_dirs` hold `dir`, symbolic links in what exists of its
/// path resolved (a link under an allowed directory cannot lead elsewhere).
pub(super) fn check_allowed(allowed: &[PathBuf], target: &str, dir: &Path) -> Result<()> {
    if allowed.is_empty() {
        bail!(
            "target {target} allows no restores into data directories; list the directories they may be made under in its [[target]] in the agent's config, e.g. restore_data_dirs = [\"/srv/pg\"]"
        );
    }
    let real = resolve_existing(dir)?;
    let inside = allowed.iter().any(|a| {
        let a = std::fs::canonicalize(a).unwrap_or_else(|_| a.clone());
        real.starts_with(&a)
    });
    if !inside {
        let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
        bail!(
            "{} ({}) is not under the directories target {target} allows restores into ({}); restore under one of them or add it to restore_data_dirs in the agent's config",
            dir.display(),
            real.display(),
            list.join(", ")
        );
    }
    Ok(())
}

/// `dir` with its longest existing prefix canonicalized (symbolic links resolved).
fn resolve_existing(dir: &Path) -> Result<PathBuf> {
    let mut rest = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::canonicalize(at) {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (at.parent(), at.file_name()) else {
                    return Err(e).with_context(|| format!("resolve {}", dir.display()));
                };
                rest.push(name.to_owned());
                at = parent;
            }
            Err(e) => return Err(e).with_context(|| format!("resolve {}", dir.display())),
        }
    }
}

/// The nearest directory above `dir` (lexically) that is a PostgreSQL data directory
/// (`PG_VERSION` and `global/pg_control`).
fn enclosing_cluster(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .find(|a| a.join(PG_VERSION).is_file() && a.join("global/pg_control").is_file())
        .map(Path::to_owned)
}

/// Whether the file system that will hold `dir` has room for `bytes` (what the archive
/// unpacks to) for the agent's user; `Ok(())` when it cannot tell.
pub(super) fn check_space(dir: &Path, bytes: u64) -> Result<()> {
    let Some((on, free)) = crate::restore::free_space(dir) else {
        return Ok(());
    };
    if free < bytes {
        bail!(
            "the file system of {} has {} free, the backup unpacks to {}; free space or restore elsewhere",
            on.display(),
            human_bytes(free),
            human_bytes(bytes)
        );
    }
    Ok(())
}

/// The directory taken for the restore: emptied again (and removed if the restore created it)
/// unless [`Claimed::keep`] is called.
pub(super) struct Claimed {
    pub(super) dir: PathBuf,
    created: bool,
    /// Who the extracted files are given to (an agent running as root restoring into a
    /// directory someone else owns).
    pub(super) owner: Option<(u32, u32)>,
    kept: std::sync::atomic::AtomicBool,
}

impl Claimed {
    pub(super) fn claim(dir: &Path, dest: &Destination) -> Result<Self> {
        // Checked again: the directory may have changed since the plan.
        let now = Destination::check(dir)?;
        if &now != dest {
            bail!(
                "{} changed while the restore was being planned; run it again",
                dir.display()
            );
        }
        let euid = rustix::process::geteuid().as_raw();
        let (created, owner) = match now {
            Destination::Missing => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                (true, None)
            }
            Destination::Empty { uid, gid } => {
                // PostgreSQL starts only on a directory of mode 0700 or 0750.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("set mode 0700 on {}", dir.display()))?;
                (false, (euid == 0 && uid != 0).then_some((uid, gid)))
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            created,
            owner,
            kept: false.into(),
        })
    }

    pub(super) fn keep(&self) {
        self.kept.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Removes everything inside the directory (never following a link), and the directory
    /// itself if the restore created it.
    pub(super) fn remove(self) -> Result<()> {
        self.keep();
        empty_dir(&self.dir)?;
        if self.created {
            std::fs::remove_dir(&self.dir)
                .with_context(|| format!("remove {}", self.dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Claimed {
    /// The last resort when the restore's future is dropped half-way (the job's task ended):
    /// nothing that looks like a data directory is left.
    fn drop(&mut self) {
        if !self.kept.load(std::sync::atomic::Ordering::SeqCst) {
            if let Err(e) = empty_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), "failed to remove an unfinished restore: {e:#}");
            }
            if self.created {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

fn empty_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("inspect {}", path.display()))?;
        if kind.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_directory_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("new");
        assert_eq!(
            Destination::check(&d).expect("missing"),
            Destination::Missing
        );
        let e = format!(
            "{:#}",
            Destination::check(&dir.path().join("no/such")).expect_err("no parent")
        );
        assert!(e.contains("create the parent"), "{e}");
        std::fs::create_dir(&d).expect("mkdir");
        assert!(matches!(
            Destination::check(&d).expect("empty"),
            Destination::Empty { .. }
        ));
        std::fs::write(d.join("notes.txt"), "x").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("not empty"));
        assert!(e.contains("not empty") && e.contains("notes.txt"), "{e}");
        std::fs::remove_file(d.join("notes.txt")).expect("rm");
        std::fs::create_dir(d.join("lost+found")).expect("mkdir");
        let e = format!("{:#}", Destination::check(&d).expect_err("a mount point"));
        assert!(
            e.contains("lost+found") && e.contains("subdirectory"),
            "{e}"
        );
        std::fs::write(d.join("backup_label"), "x").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("interrupted"));
        assert!(e.contains("interrupted restore"), "{e}");
        std::fs::write(d.join("PG_VERSION"), "15").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("a data dir"));
        assert!(e.contains("holds PG_VERSION"), "{e}");
        // Anything inside a cluster's directory, existing or not.
        std::fs::create_dir_all(d.join("global")).expect("mkdir");
        std::fs::write(d.join("global/pg_control"), "x").expect("write");
        for inside in [d.join("sub"), d.join("base/new")] {
            let e = format!("{:#}", Destination::check(&inside).expect_err("inside"));
            assert!(
                e.contains("is inside") && e.contains("never touches"),
                "{e}"
            );
        }
        std::fs::write(d.join("postmaster.pid"), "1").expect("write");
        let e = format!("{:#}", Destination::check(&d).expect_err("running"));
        assert!(e.contains("postmaster.pid") && e.contains("running"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        let e = format!("{:#}", Destination::check(&link).expect_err("a link"));
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn only_the_allowed_directories_are_restored_into() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = dir.path().join("pg");
        std::fs::create_dir(&allowed).expect("mkdir");
        let other = dir.path().join("etc");
        std::fs::create_dir(&other).expect("mkdir");
        let ok = [allowed.clone()];
        check_allowed(&ok, "t", &allowed.join("new")).expect("under it");
        check_allowed(&ok, "t", &allowed.join("a/b")).expect("deeper, not yet made");
        let e = format!("{:#}", check_allowed(&[], "t", &allowed).expect_err("none"));
        assert!(
            e.contains("allows no restores") && e.contains("restore_data_dirs"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            check_allowed(&ok, "t", &other.join("new")).expect_err("elsewhere")
        );
        assert!(e.contains("is not under"), "{e}");
        // A link under the allowed directory does not lead out of it.
        std::os::unix::fs::symlink(&other, allowed.join("link")).expect("symlink");
        let e = format!(
            "{:#}",
            check_allowed(&ok, "t", &allowed.join("link/new")).expect_err("through a link")
        );
        assert!(e.contains("is not under"), "{e}");
    }

    #[test]
    fn a_restore_that_cannot_fit_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_space(&dir.path().join("new"), 1024).expect("a KiB fits");
        let e = format!(
            "{:#}",
            check_space(dir.path(), u64::MAX / 2).expect_err("does not fit")
        );
        assert!(e.contains("free") && e.contains("unpacks to"), "{e}");
    }

    #[test]
    fn a_failed_restore_empties_the_directory_it_claimed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Created by the restore: removed entirely.
        let d = dir.path().join("new");
        let c = Claimed::claim(&d, &Destination::Missing).expect("claim");
        std::fs::create_dir_all(d.join("base/1")).expect("mkdir");
        std::fs::write(d.join("base/1/112"), "x").expect("write");
        c.remove().expect("remove");
        assert!(!d.exists(), "created, so removed");
        // The operator's empty directory: kept, emptied, even when the restore is dropped.
        std::fs::create_dir(&d).expect("mkdir");
        let dest = Destination::check(&d).expect("empty");
        let c = Claimed::claim(&d, &dest).expect("claim");
        std::fs::write(d.join("global"), "x").expect("write");
        drop(c);
        assert!(d.is_dir(), "the operator's directory stays");
        assert_eq!(std::fs::read_dir(&d).expect("list").count(), 0, "emptied");
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
