//! The extracted files against the backup's `backup_manifest`, from the CRC-32Cs taken while
//! they were written (ADR 0033): the same check `pg_verifybackup` makes by reading every file
//! back, done on bytes already in hand. When it covers the whole manifest, `pg_verifybackup`
//! runs with `--skip-checksums` (it still checks the manifest's own checksum, that every file
//! is there with its size and nothing else is, and parses the WAL); when it cannot (another
//! checksum algorithm, a manifest it cannot read), `pg_verifybackup` checks everything itself.

use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// PostgreSQL's `backup_manifest`, the part read here.
#[derive(Deserialize)]
struct BackupManifest {
    #[serde(rename = "Files")]
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    /// A name that is not UTF-8, hex-encoded.
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

/// How far the check went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Coverage {
    /// Every file the manifest lists was checked.
    All { files: usize },
    /// Not every file could be checked here (why); `pg_verifybackup` checks them all.
    Partial(String),
}

/// Compares `sums` (each extracted file's size and CRC-32C, by path) with the manifest in
/// `text`. An error names the first file that differs: the backup's files are not the ones its
/// manifest describes.
pub(super) fn check(text: &[u8], sums: &HashMap<Vec<u8>, (u64, u32)>) -> Result<Coverage> {
    let manifest: BackupManifest = match serde_json::from_slice(text) {
        Ok(m) => m,
        Err(e) => return Ok(Coverage::Partial(format!("its backup_manifest: {e}"))),
    };
    let mut other = None;
    for f in &manifest.files {
        let path = match (&f.path, &f.encoded_path) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (None, Some(hex_path)) => match hex::decode(hex_path) {
                Ok(p) => p,
                Err(_) => {
                    return Ok(Coverage::Partial(format!(
                        "its backup_manifest encodes a path as {hex_path:?}"
                    )));
                }
            },
            (None, None) => {
                return Ok(Coverage::Partial(
                    "its backup_manifest lists a file without a path".into(),
                ));
            }
        };
        let shown = String::from_utf8_lossy(&path).into_owned();
        let Some(&(size, crc)) = sums.get(&path) else {
            bail!(
                "{shown} is listed in the backup's backup_manifest but is not in the backup's archive"
            );
        };
        if size != f.size {
            bail!(
                "{shown} is {size} bytes in the backup's archive, its backup_manifest records {}",
                f.size
            );
        }
        match (f.algorithm.as_deref(), f.checksum.as_deref()) {
            (Some("CRC32C"), Some(want)) => {
                let got = hex::encode(crc.to_le_bytes());
                if !got.eq_ignore_ascii_case(want) {
                    bail!(
                        "{shown} has CRC-32C {got} in the backup's archive, its backup_manifest records {want}"
                    );
                }
            }
            (algorithm, _) => {
                other.get_or_insert_with(|| algorithm.unwrap_or("none").to_owned());
            }
        }
    }
    Ok(match other {
        None => Coverage::All {
            files: manifest.files.len(),
        },
        Some(a) => Coverage::Partial(format!("its backup_manifest's checksums are {a}")),
    })
}

/// Reads `backup_manifest` from the restored directory and checks it (see [`check`]).
pub(super) fn check_dir(root: &Path, sums: &HashMap<Vec<u8>, (u64, u32)>) -> Result<Coverage> {
    let path = root.join("backup_manifest");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Coverage::Partial("it holds no backup_manifest".into()));
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    check(&text, sums)
}

#[cfg(test)]
mod tests {
    use super::super::extract::crc32c;
    use super::*;

    fn manifest(files: &[(&str, u64, &str, &str)]) -> Vec<u8> {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|(p, size, alg, sum)| {
                let mut v = serde_json::json!({ "Path": p, "Size": size, "Last-Modified": "2026-12-05 10:48:43 GMT" });
                if !alg.is_empty() {
                    v["Checksum-Algorithm"] = (*alg).into();
                    v["Checksum"] = (*sum).into();
                }
                v
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": files,
            "WAL-Ranges": [],
            "Manifest-Checksum": "00",
        }))
        .expect("json")
    }

    fn sums(files: &[(&str, &[u8])]) -> HashMap<Vec<u8>, (u64, u32)> {
        files
            .iter()
            .map(|(p, d)| (p.as_bytes().to_vec(), (d.len() as u64, crc32c(d))))
            .collect()
    }

    #[test]
    fn postgresql_crc32c_is_matched_and_any_difference_named() {
        // From a real PostgreSQL 15 backup_manifest: PG_VERSION "15\n" has Checksum 8a744722.
        let ok = sums(&[("PG_VERSION", b"15\n"), ("base/1/112", b"")]);
        let m = manifest(&[
            ("PG_VERSION", 3, "CRC32C", "8a744722"),
            ("base/1/112", 0, "CRC32C", "00000000"),
        ]);
        assert_eq!(check(&m, &ok).expect("ok"), Coverage::All { files: 2 });

        let flipped = sums(&[("PG_VERSION", b"16\n"), ("base/1/112", b"")]);
        let e = format!("{:#}", check(&m, &flipped).expect_err("flipped"));
        assert!(e.contains("PG_VERSION") && e.contains("8a744722"), "{e}");

        let short = sums(&[("PG_VERSION", b"15"), ("base/1/112", b"")]);
        let e = format!("{:#}", check(&m, &short).expect_err("short"));
        assert!(e.contains("2 bytes"), "{e}");

        let missing = sums(&[("PG_VERSION", b"15\n")]);
        let e = format!("{:#}", check(&m, &missing).expect_err("missing"));
        assert!(e.contains("base/1/112") && e.contains("not in"), "{e}");
    }

    #[test]
    fn other_algorithms_and_unreadable_manifests_leave_the_check_to_pg_verifybackup() {
        let s = sums(&[("PG_VERSION", b"15\n"), ("global/1", b"x")]);
        let sha = manifest(&[
            ("PG_VERSION", 3, "CRC32C", "8a744722"),
            ("global/1", 1, "SHA256", "ab"),
        ]);
        assert!(
            matches!(check(&sha, &s).expect("sha"), Coverage::Partial(w) if w.contains("SHA256"))
        );
        let none = manifest(&[("PG_VERSION", 3, "", ""), ("global/1", 1, "", "")]);
        assert!(
            matches!(check(&none, &s).expect("none"), Coverage::Partial(w) if w.contains("none"))
        );
        assert!(matches!(
            check(b"{ not json", &s).expect("junk"),
            Coverage::Partial(_)
        ));
        // A file that differs is still an error, whatever the other files' algorithm.
        let bad = manifest(&[
            ("PG_VERSION", 3, "CRC32C", "00000000"),
            ("global/1", 1, "SHA256", "ab"),
        ]);
        assert!(check(&bad, &s).is_err());
    }

    #[test]
    fn encoded_paths_are_decoded() {
        let name = b"base/1/\xff";
        let mut s = HashMap::new();
        s.insert(name.to_vec(), (1u64, crc32c(b"x")));
        let m = serde_json::to_vec(&serde_json::json!({
            "Files": [{ "Encoded-Path": hex::encode(name), "Size": 1,
                        "Checksum-Algorithm": "CRC32C",
                        "Checksum": hex::encode(crc32c(b"x").to_le_bytes()) }],
        }))
        .expect("json");
        assert_eq!(check(&m, &s).expect("ok"), Coverage::All { files: 1 });
    }
}
