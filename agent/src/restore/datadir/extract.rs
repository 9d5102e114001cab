//! The extractor of a base backup's tar: plain files and directories only, each inside the
//! data directory and synced; `PG_VERSION` held back in memory; every file's CRC-32C taken as
//! it is written, for the check against the backup's `backup_manifest`.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::{DirBuilderExt, OpenOptionsExt},
    },
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use super::{
    PG_VERSION,
    durable::{Syncer, Writing},
};

/// Longest `PG_VERSION` accepted ("15\n").
const PG_VERSION_MAX: u64 = 64;

/// Threads syncing the extracted files.
const SYNC_THREADS: usize = 4;

/// Bytes copied from the archive into a file at a time.
const COPY_BUFFER: usize = 1024 * 1024;

/// What the extractor wrote.
#[derive(Debug)]
pub(crate) struct Extracted {
    pub files: u64,
    /// `PG_VERSION`'s content, held back until the backup is known whole.
    pub pg_version: Option<Vec<u8>>,
    /// Each regular file's size and CRC-32C, by its path inside the directory (`PG_VERSION`
    /// included).
    pub checksums: HashMap<Vec<u8>, (u64, u32)>,
}

/// Extracts a base backup's tar into `root` (empty): directories (mode 0700) and regular
/// files (mode 0600, synced) only, each path relative and inside `root`; anything else (a
/// link, a device, an absolute path, `..`, a duplicate file) is refused. `PG_VERSION` is kept
/// in memory. The input is read to its end; every file written is synced before this
/// returns.
pub(crate) fn extract<R: Read>(
    input: R,
    root: &Path,
    owner: Option<(u32, u32)>,
    cancel: &CancellationToken,
) -> Result<Extracted> {
    let mut archive = tar::Archive::new(input);
    let mut files = 0u64;
    let mut pg_version = None;
    let mut dirs = vec![root.to_owned()];
    let mut checksums = HashMap::new();
    let syncer = Syncer::new(SYNC_THREADS)?;
    let mut buf = vec![0u8; COPY_BUFFER];
    for entry in archive.entries().context("read the archive")? {
        if cancel.is_cancelled() {
            bail!("cancelled");
        }
        let mut entry = entry.context("read the archive")?;
        let raw = entry.path().context("read an entry's name")?.into_owned();
        let Some(rel) = safe_relative(&raw)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        let path = root.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                ensure_dir(root, &rel, owner, &mut dirs)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel == Path::new(PG_VERSION) {
                    let mut v = Vec::new();
                    (&mut entry)
                        .take(PG_VERSION_MAX + 1)
                        .read_to_end(&mut v)
                        .context("read PG_VERSION")?;
                    if v.len() as u64 > PG_VERSION_MAX || pg_version.is_some() {
                        bail!("the archive's PG_VERSION is not PostgreSQL's");
                    }
                    checksums.insert(
                        rel.as_os_str().as_bytes().to_vec(),
                        (v.len() as u64, crc32c(&v)),
                    );
                    pg_version = Some(v);
                    continue;
                }
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    ensure_dir(root, parent, owner, &mut dirs)?;
                }
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .with_context(|| {
                        format!(
                            "create {} (the archive names {} twice, or the directory changed)",
                            path.display(),
                            rel.display()
                        )
                    })?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                        .with_context(|| format!("give {} to uid {uid}", path.display()))?;
                }
                let mut out = Writing::new(f);
                let sum = copy(&mut entry, &mut out, &mut buf)
                    .with_context(|| format!("write {}", path.display()))?;
                checksums.insert(rel.into_os_string().into_vec(), sum);
                syncer.submit(out.into_file(), path)?;
                files += 1;
            }
            tar::EntryType::XGlobalHeader => {}
            other => bail!(
                "the archive holds {} {} -> {:?}; a base backup without tablespaces holds only files and directories, so it is refused",
                kind_name(other),
                raw.display(),
                entry.link_name().ok().flatten().map(|l| l.into_owned())
            ),
        }
    }
    // The end-of-archive blocks and any padding after them.
    let mut rest = archive.into_inner();
    let mut tail = [0u8; 8192];
    loop {
        let n = match rest.read(&mut tail) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read the end of the archive"),
        };
        if tail[..n].iter().any(|b| *b != 0) {
            bail!("the archive has data after its end");
        }
    }
    syncer.finish()?;
    for d in dirs.iter().rev() {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("sync {}", d.display()))?;
    }
    Ok(Extracted {
        files,
        pg_version,
        checksums,
    })
}

/// CRC-32C (Castagnoli), the checksum `pg_basebackup` writes into `backup_manifest` by default.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Copies `input` to its end into `out`; its size and CRC-32C.
fn copy(input: &mut impl Read, out: &mut impl Write, buf: &mut [u8]) -> io::Result<(u64, u32)> {
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut size = 0u64;
    loop {
        let n = match input.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        crc.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((size, crc.finalize() as u32))
}

/// `./base/1` → `base/1`; `.` → `None`; an absolute path, `..` or anything odd is refused.
fn safe_relative(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                "the archive names {}, outside the data directory; it is refused",
                raw.display()
            ),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates `rel` and its parents under `root` (mode 0700), refusing to pass through anything
/// that is not a real directory.
fn ensure_dir(
    root: &Path,
    rel: &Path,
    owner: Option<(u32, u32)>,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut at = root.to_owned();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => bail!(
                "{} is in the way of a directory of the archive",
                at.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("inspect {}", at.display())),
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&at)
            .with_context(|| format!("create {}", at.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", at.display()))?;
        }
        made.push(at.clone());
    }
    Ok(())
}

fn kind_name(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Symlink => "the symbolic link",
        tar::EntryType::Link => "the hard link",
        tar::EntryType::Char => "the character device",
        tar::EntryType::Block => "the block device",
        tar::EntryType::Fifo => "the FIFO",
        _ => "the special entry",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::verify::write_pg_version;
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("finish")
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        // Names are written raw so hostile ones can be made.
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn special(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str) {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o600);
        h.set_entry_type(kind);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).expect("link name");
        }
        h.set_cksum();
        b.append(&h, io::empty()).expect("append");
    }

    fn run(data: &[u8]) -> (Result<Extracted>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = extract(data, dir.path(), None, &CancellationToken::new());
        (r, dir)
    }

    #[test]
    fn files_and_directories_are_extracted_with_pg_version_held_back() {
        let data = tar_of(|b| {
            file(b, "PG_VERSION", b"15\n");
            special(b, "base/", tar::EntryType::Directory, "");
            file(b, "base/1/112", b"page");
            file(b, "./pg_wal/000000010000000000000002", b"wal");
            file(b, "backup_manifest", b"{}");
        });
        let (r, dir) = run(&data);
        let x = r.expect("extracted");
        assert_eq!(x.files, 3);
        assert_eq!(x.pg_version.as_deref(), Some(&b"15\n"[..]));
        // Every file's size and CRC-32C, PG_VERSION's too, by its path inside the directory.
        let mut sums: Vec<_> = x.checksums.iter().map(|(p, s)| (p.clone(), *s)).collect();
        sums.sort();
        assert_eq!(
            sums,
            [
                (b"PG_VERSION".to_vec(), (3, crc32c(b"15\n"))),
                (b"backup_manifest".to_vec(), (2, crc32c(b"{}"))),
                (b"base/1/112".to_vec(), (4, crc32c(b"page"))),
                (
                    b"pg_wal/000000010000000000000002".to_vec(),
                    (3, crc32c(b"wal"))
                ),
            ]
        );
        assert!(!dir.path().join("PG_VERSION").exists(), "held back");
        assert_eq!(
            std::fs::read(dir.path().join("base/1/112")).expect("read"),
            b"page"
        );
        let mode = std::fs::metadata(dir.path().join("base/1"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(dir.path().join("backup_manifest"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        write_pg_version(dir.path(), x.pg_version.as_deref(), None).expect("write");
        assert_eq!(
            std::fs::read(dir.path().join("PG_VERSION")).expect("read"),
            b"15\n"
        );
    }

    #[test]
    fn hostile_entries_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("..", tar_of(|b| file(b, "../escaped", b"x"))),
            ("outside", tar_of(|b| file(b, "base/../../escaped", b"x"))),
            ("outside", tar_of(|b| file(b, "/etc/escaped", b"x"))),
            (
                "symbolic link",
                tar_of(|b| special(b, "pg_wal", tar::EntryType::Symlink, "/tmp")),
            ),
            (
                "hard link",
                tar_of(|b| special(b, "x", tar::EntryType::Link, "/etc/passwd")),
            ),
            (
                "device",
                tar_of(|b| special(b, "dev", tar::EntryType::Block, "")),
            ),
            (
                "FIFO",
                tar_of(|b| special(b, "fifo", tar::EntryType::Fifo, "")),
            ),
            (
                "twice",
                tar_of(|b| {
                    file(b, "a", b"1");
                    file(b, "a", b"2");
                }),
            ),
        ];
        for (needle, data) in cases {
            let (r, dir) = run(&data);
            let e = format!("{:#}", r.expect_err(needle));
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(
                !dir.path()
                    .parent()
                    .expect("parent")
                    .join("escaped")
                    .exists(),
                "{needle}: escaped"
            );
        }
        // Trailing garbage after the end of the archive.
        let mut data = tar_of(|b| file(b, "a", b"1"));
        data.extend_from_slice(b"more");
        let (r, _) = run(&data);
        assert!(format!("{:#}", r.expect_err("garbage")).contains("after its end"));
    }
}
