//! The export job (`lifeboat backup export ID --to PATH`): a backup's stored object read from
//! the repository, its stored SHA-256 checked as it is read, decompressed (bounded by the raw
//! size the record holds), its raw SHA-256 checked, and the dump written to a file on this
//! host, with a copy of the backup's manifest beside it (`PATH.manifest.json`).
//!
//! The file goes only into a directory under the agent's `export_dirs` (its path resolved,
//! symbolic links followed), never over an existing file, through a temporary file of mode
//! 0600 in the same directory that is fsynced and renamed into place only once both hashes
//! matched. On any failure or cancellation the temporary file is removed and nothing exists
//! under the name asked for. A physical base backup is exported as its tar.

use std::{
    ffi::OsString,
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{EXPORT_MANIFEST_SUFFIX, ExportPath, Exported};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Engine,
    job::JobCtx,
    pipeline::{self, Counters, Expected, PipelineError},
    restore::{check_manifest, human_bytes, locate_readable, open_data, read_manifest_bytes},
    work::ExportWork,
};

/// Prefix of the temporary files an export writes beside its destination.
const TEMP_PREFIX: &str = ".lifeboat-export-";

pub async fn run(ctx: &JobCtx, work: &ExportWork) -> Result<Exported> {
    let rec = &work.backup;
    crate::maintenance::own_environment(ctx, rec, "export")?;
    let loc = locate_readable(ctx, rec, &work.fallbacks).await?;
    ctx.set_phase("checking the destination");
    let allowed = ctx.config.export_dirs.clone();
    let asked = work.path.path().to_owned();
    let dest = tokio::task::spawn_blocking(move || Destination::check(&allowed, &asked))
        .await
        .context("export check panicked")??;

    ctx.set_phase("reading the manifest");
    let Some(manifest) = read_manifest_bytes(&loc).await? else {
        bail!(
            "backup {} has no manifest in {} ({} is missing); it cannot be exported",
            rec.backup_id,
            loc.repo.describe(),
            loc.manifest_key
        );
    };
    let mut checked = check_manifest(&loc, &manifest)
        .with_context(|| format!("check the manifest of backup {}", rec.backup_id))?;
    // The export is the plaintext dump: its manifest copy has the sealed section opened, so
    // the row counts to compare a restore with are beside it.
    let manifest = match &loc.expected.key {
        Some(key) => {
            checked.unseal(key)?;
            checked.sealed = None;
            checked.to_json()
        }
        None => manifest,
    };
    let need = rec.raw_size.saturating_add(manifest.len() as u64);
    let dir = dest.dir.clone();
    tokio::task::spawn_blocking(move || check_space(&dir, need))
        .await
        .context("export check panicked")??;

    let Some(source) = open_data(&loc).await? else {
        bail!(
            "{} is missing from {}; the backup cannot be exported",
            loc.data_key,
            loc.repo.describe()
        );
    };
    ctx.set_phase("exporting");
    let magic: &'static [u8] = match loc.engine {
        // A base backup's tar was checked as it streamed at backup time; here its hashes are.
        Engine::Postgres if rec.is_physical() => b"",
        Engine::Postgres => crate::engine::postgres::PGDMP_MAGIC,
        Engine::Mysql => crate::engine::mysql::MAGIC,
    };
    let job = ExportWriter {
        expected: loc.expected.clone(),
        magic,
        counters: ctx.counters.clone(),
        cancel: ctx.cancel.clone(),
    };
    let written = {
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || job.write(&dest, source, &manifest))
            .await
            .context("export task panicked")?
    };
    if let Err(e) = written {
        if ctx.cancel.is_cancelled() {
            bail!("cancelled");
        }
        return Err(e);
    }
    tracing::info!(path = %dest.file.display(), raw_bytes = rec.raw_size, "exported");
    Ok(Exported {
        path: export_path(&dest.file)?,
        raw_bytes: rec.raw_size,
        raw_sha256: rec.raw_sha256.clone(),
        manifest_path: export_path(&dest.manifest)?,
    })
}

fn export_path(p: &Path) -> Result<ExportPath> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))?;
    ExportPath::parse(s.to_owned()).map_err(|e| anyhow::anyhow!(e.0))
}

/// Where an export goes, checked: the directory resolved and under `export_dirs`, neither the
/// file nor its manifest copy there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    /// The directory, canonical.
    dir: PathBuf,
    name: OsString,
    file: PathBuf,
    manifest: PathBuf,
}

impl Destination {
    fn check(allowed: &[PathBuf], asked: &Path) -> Result<Self> {
        if allowed.is_empty() {
            bail!(
                "this agent allows no exports; add the directories exports may be written to at the top of the agent's config, e.g. export_dirs = [\"/var/backups/lifeboat-export\"], and restart the agent"
            );
        }
        let (Some(parent), Some(name)) = (asked.parent(), asked.file_name()) else {
            bail!("{} does not name a file", asked.display());
        };
        let dir = match std::fs::canonicalize(parent) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "the directory {} does not exist; create it first (install -d -m 0700 {}) or export into an existing directory under export_dirs",
                parent.display(),
                parent.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("resolve {}", parent.display())),
        };
        if !dir.is_dir() {
            bail!("{} is not a directory", parent.display());
        }
        let inside = allowed.iter().any(|a| {
            let a = std::fs::canonicalize(a).unwrap_or_else(|_| a.clone());
            dir.starts_with(&a)
        });
        if !inside {
            let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
            bail!(
                "{} is in {}, which is not under the directories this agent exports to ({}); export under one of them, or add the directory to export_dirs in the agent's config",
                asked.display(),
                dir.display(),
                list.join(", ")
            );
        }
        let file = dir.join(name);
        let mut manifest_name = name.to_owned();
        manifest_name.push(EXPORT_MANIFEST_SUFFIX);
        let manifest = dir.join(manifest_name);
        for p in [&file, &manifest] {
            match std::fs::symlink_metadata(p) {
                Ok(_) => bail!(
                    "{} already exists; an export never overwrites a file: choose another name, or move the existing file away first",
                    p.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("inspect {}", p.display())),
            }
        }
        Ok(Self {
            dir,
            name: name.to_owned(),
            file,
            manifest,
        })
    }
}

/// Whether the file system of `dir` has room for `bytes` for the agent's user; `Ok(())` when
/// it cannot tell.
fn check_space(dir: &Path, bytes: u64) -> Result<()> {
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < bytes {
        bail!(
            "the file system of {} has {} free, the export needs {}; free space or export elsewhere",
            dir.display(),
            human_bytes(free),
            human_bytes(bytes)
        );
    }
    Ok(())
}

/// The blocking part: decode into a temporary file, then put it and the manifest copy in
/// place.
struct ExportWriter {
    expected: Expected,
    magic: &'static [u8],
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

impl ExportWriter {
    fn write<R: Read>(self, dest: &Destination, source: R, manifest: &[u8]) -> Result<()> {
        // Removed when dropped, on every path that does not persist it. Mode 0600.
        let mut data = temp_in(dest)?;
        let tmp_path = data.path().to_owned();
        let out = BufWriter::with_capacity(256 * 1024, data.as_file_mut());
        match pipeline::decompress(
            source,
            out,
            self.magic,
            &self.expected,
            &self.counters,
            &self.cancel,
        ) {
            Ok(_) => {}
            Err(PipelineError::Output(e)) => {
                return Err(e).with_context(|| format!("write {}", tmp_path.display()));
            }
            Err(PipelineError::Cancelled) => bail!("cancelled"),
            Err(e @ PipelineError::Mismatch { .. }) => {
                return Err(e).context("export refused: nothing was written");
            }
            Err(e) => return Err(e.into()),
        }
        data.as_file()
            .sync_all()
            .with_context(|| format!("fsync {}", tmp_path.display()))?;
        let mut man = temp_in(dest)?;
        man.write_all(manifest)
            .and_then(|()| man.as_file().sync_all())
            .with_context(|| format!("write {}", man.path().display()))?;
        data.persist_noclobber(&dest.file)
            .map_err(|e| appeared(&dest.file, e.error))?;
        if let Err(e) = man.persist_noclobber(&dest.manifest) {
            let _ = std::fs::remove_file(&dest.file);
            return Err(appeared(&dest.manifest, e.error));
        }
        std::fs::File::open(&dest.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", dest.dir.display()))?;
        Ok(())
    }
}

fn temp_in(dest: &Destination) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}.", dest.name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(&dest.dir)
        .with_context(|| format!("create a temporary file in {}", dest.dir.display()))
}

fn appeared(path: &Path, e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        anyhow::anyhow!(
            "{} appeared while the export ran; nothing was overwritten: choose another name",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("move the export into place at {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn destinations_are_checked() {
        let root = tempfile::tempdir().expect("tempdir");
        let allowed = root.path().join("export");
        let outside = root.path().join("outside");
        std::fs::create_dir(&allowed).expect("mkdir");
        std::fs::create_dir(&outside).expect("mkdir");
        let err = |allowed: &[PathBuf], p: &Path| {
            format!("{:#}", Destination::check(allowed, p).expect_err("refused"))
        };
        let dirs = vec![allowed.clone()];
        let e = err(&[], &allowed.join("x"));
        assert!(e.contains("export_dirs = ["), "{e}");
        let ok = Destination::check(&dirs, &allowed.join("orders.pgdump")).expect("allowed");
        assert_eq!(
            ok.file,
            allowed.canonicalize().expect("real").join("orders.pgdump")
        );
        assert!(ok.manifest.ends_with("orders.pgdump.manifest.json"));
        let e = err(&dirs, &outside.join("x"));
        assert!(e.contains("not under the directories"), "{e}");
        let e = err(&dirs, &allowed.join("../outside/x"));
        assert!(e.contains("not under the directories"), "{e}");
        std::os::unix::fs::symlink(&outside, allowed.join("link")).expect("symlink");
        let e = err(&dirs, &allowed.join("link/x"));
        assert!(e.contains("not under the directories"), "{e}");
        let e = err(&dirs, &allowed.join("missing/x"));
        assert!(
            e.contains("does not exist") && e.contains("install -d"),
            "{e}"
        );
        std::fs::write(allowed.join("taken"), "x").expect("write");
        let e = err(&dirs, &allowed.join("taken"));
        assert!(
            e.contains("already exists") && e.contains("never overwrites"),
            "{e}"
        );
        std::fs::write(allowed.join("free.manifest.json"), "x").expect("write");
        let e = err(&dirs, &allowed.join("free"));
        assert!(e.contains("free.manifest.json already exists"), "{e}");
    }

    fn compressed(raw: &[u8]) -> (Vec<u8>, Expected) {
        use sha2::{Digest as _, Sha256};
        let stored = zstd::encode_all(raw, 3).expect("zstd");
        let digest = |b: &[u8]| pipeline::Digest {
            size: b.len() as u64,
            sha256: hex::encode(Sha256::digest(b)),
        };
        let expected = Expected {
            stored: digest(&stored),
            raw: digest(raw),
            key: None,
        };
        (stored, expected)
    }

    fn writer(expected: Expected) -> ExportWriter {
        ExportWriter {
            expected,
            magic: b"PGDMP",
            counters: Arc::default(),
            cancel: CancellationToken::new(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_sound_object_lands_with_mode_0600_and_a_manifest_copy() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = vec![root.path().to_owned()];
        let raw = b"PGDMP and the rest of the archive".repeat(1000);
        let (stored, expected) = compressed(&raw);
        let dest = Destination::check(&dirs, &root.path().join("o.pgdump")).expect("dest");
        writer(expected)
            .write(&dest, stored.as_slice(), b"{\"m\":1}")
            .expect("written");
        assert_eq!(std::fs::read(&dest.file).expect("read"), raw);
        assert_eq!(std::fs::read(&dest.manifest).expect("read"), b"{\"m\":1}");
        for p in [&dest.file, &dest.manifest] {
            let mode = std::fs::metadata(p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        assert_eq!(names(root.path()), ["o.pgdump", "o.pgdump.manifest.json"]);
    }

    #[test]
    fn a_damaged_object_leaves_nothing_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = vec![root.path().to_owned()];
        let raw = b"PGDMP and the rest of the archive".repeat(1000);
        let (mut stored, expected) = compressed(&raw);
        let mid = stored.len() / 2;
        stored[mid] ^= 0x55;
        let dest = Destination::check(&dirs, &root.path().join("o.pgdump")).expect("dest");
        let e = writer(expected)
            .write(&dest, stored.as_slice(), b"{}")
            .expect_err("a damaged object");
        let e = format!("{e:#}");
        assert!(e.contains("stored SHA-256"), "{e}");
        assert!(names(root.path()).is_empty(), "{:?}", names(root.path()));

        // Cancelled half-way: nothing either.
        let (stored, expected) = compressed(&raw);
        let w = writer(expected);
        w.cancel.cancel();
        let e = w
            .write(&dest, stored.as_slice(), b"{}")
            .expect_err("cancelled");
        assert!(format!("{e:#}").contains("cancelled"), "{e:#}");
        assert!(names(root.path()).is_empty(), "{:?}", names(root.path()));
    }
}
