//! WAL files in the repository: `ENV/TARGET/wal/DIR/NAME-SHA256.zst`, where DIR is the
//! timeline and log of a segment (or `history`) and SHA256 that of the file as PostgreSQL
//! wrote it. The hash in the key makes a push idempotent without a second object: the same
//! file pushed again finds itself; a different file under the same name is a conflict. A
//! target with encryption stores `NAME-SHA256.zst.age` instead ([`super::keys`]).

use anyhow::{Context, Result, bail};

use super::{
    keys::{self, Reader},
    name::WalName,
};
use crate::repo::Repository;

mod read;
mod write;

pub use read::fetch;
pub use write::push;

/// The largest WAL file accepted or handed back (PostgreSQL's `wal_segment_size` is at most
/// 1 GiB).
pub const MAX_FILE: u64 = 1024 * 1024 * 1024;
/// Chunks read and written at a time.
const CHUNK: usize = 1024 * 1024;
/// The suffix of a compressed WAL file, and of one also encrypted.
const ZST: &str = ".zst";
const ZST_AGE: &str = ".zst.age";

/// `ENV/TARGET/wal`
pub fn prefix(environment: &str, target: &str) -> String {
    format!("{environment}/{target}/wal")
}

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub key: String,
    /// SHA-256 of the file as PostgreSQL wrote it (hex).
    pub sha256: String,
    /// Bytes stored (compressed, and encrypted if `encrypted`).
    pub stored_size: u64,
    /// Stored as `.zst.age`: encrypted to a WAL key.
    pub encrypted: bool,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The file an object under `prefix` holds, by its key `PREFIX/DIR/NAME-SHA256.zst[.age]`;
/// `None` for anything else (WAL keys, foreign objects).
pub fn parse_key(prefix: &str, o: &crate::repo::ObjectInfo) -> Option<(WalName, Archived)> {
    let rest = o.key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (dir, file) = rest.split_once('/')?;
    let (stem, encrypted) = match file.strip_suffix(ZST_AGE) {
        Some(stem) => (stem, true),
        None => (file.strip_suffix(ZST)?, false),
    };
    let (name, sha) = stem.rsplit_once('-')?;
    let name = WalName::parse(name).ok()?;
    (is_sha256(sha) && name.dir() == dir).then(|| {
        (
            name,
            Archived {
                key: o.key.clone(),
                sha256: sha.to_owned(),
                stored_size: o.size,
                encrypted,
            },
        )
    })
}

/// The archived copies of `name` under `prefix`: none, or one (several only if something
/// other than lifeboat wrote there, or a file was archived both before and after encryption
/// was turned on).
pub async fn find(repo: &Repository, prefix: &str, name: &WalName) -> Result<Vec<Archived>> {
    let dir = format!("{prefix}/{}", name.dir());
    let objects = repo
        .list(&dir)
        .await
        .with_context(|| format!("list {dir} in {}", repo.describe()))?;
    Ok(objects
        .iter()
        .filter_map(|o| parse_key(prefix, o))
        .filter(|(n, _)| n == name)
        .map(|(_, a)| a)
        .collect())
}

/// What a push found before it stored anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// Not archived yet: store it.
    Absent,
    /// Already archived with the same content.
    Same,
}

/// Checks `name` with content `sha256` against what is archived: a different file under
/// the same name is an error naming both hashes.
pub async fn before_push(reader: &Reader, name: &WalName, sha256: &str) -> Result<Before> {
    let found = find(&reader.repo, &reader.prefix, name).await?;
    if let Some(same) = found.iter().find(|a| a.sha256 == sha256) {
        // PostgreSQL pushes a file again when it did not see the first push succeed: the
        // stored copy is read back before it is trusted. A damaged one fails the push loudly
        // (PostgreSQL keeps the file and retries); it is never removed here, where a slower
        // push of the same file could race the removal.
        let read = match read_back(reader, same).await {
            // Encrypted by an earlier run of a backup-only agent, which holds no key to read
            // it back: trusted by its name (`lifeboat pitr verify` on an agent holding a key
            // reads it).
            Err(e) if keys::unavailable(&e).is_some_and(|u| u.no_identity) => {
                tracing::warn!(
                    file = %name,
                    "{name} is archived already, encrypted to a WAL key this agent cannot open; trusted without reading it back"
                );
                return Ok(Before::Same);
            }
            r => r?,
        };
        match read {
            Ok(_) => return Ok(Before::Same),
            Err(why) => bail!(
                "{name} is archived, but the stored copy does not read back right ({why}); \
                 PostgreSQL keeps its copy and retries. If `lifeboat pitr verify` confirms the \
                 damage, remove {} from the repository and the next push stores the server's copy",
                same.key
            ),
        }
    }
    if let Some(other) = found.first() {
        bail!(
            "{name} is already archived with different content (stored SHA-256 {}, this file's \
             {sha256}); refusing to replace it. Two servers may be archiving into the same \
             target: check archive_command on each",
            other.sha256
        );
    }
    Ok(Before::Absent)
}

/// Reads `a` back whole: `Ok(Ok(size))` when its content hashes to the SHA-256 in its key,
/// `Ok(Err(why))` when it is damaged; `Err` when it cannot be read at all (gone, I/O, or its
/// WAL key unavailable to this agent: see [`keys::unavailable`]).
pub async fn read_back(reader: &Reader, a: &Archived) -> Result<Result<u64, String>> {
    let mut rx = fetch(reader, a).await?;
    let mut bytes = 0u64;
    while let Some(item) = rx.recv().await {
        match item {
            Ok(Some(chunk)) => bytes += chunk.len() as u64,
            Ok(None) => return Ok(Ok(bytes)),
            Err(e) if keys::unavailable(&e).is_some() => return Err(e),
            Err(e) => return Ok(Err(format!("{e:#}"))),
        }
    }
    bail!("reading {} stopped without a verdict", a.key)
}

/// The switches recorded in timeline `tli`'s history file.
pub async fn read_history(reader: &Reader, tli: u32) -> Result<Vec<super::chain::Switch>> {
    let name = WalName::parse(&format!("{tli:08X}.history")).map_err(anyhow::Error::msg)?;
    let Some(a) = find(&reader.repo, &reader.prefix, &name)
        .await?
        .into_iter()
        .next()
    else {
        bail!(
            "timeline {tli} has WAL in the archive but its history file {name} is missing; recovery cannot follow it"
        );
    };
    let mut rx = fetch(reader, &a).await?;
    let mut bytes = Vec::new();
    while let Some(item) = rx.recv().await {
        match item? {
            Some(chunk) => bytes.extend_from_slice(&chunk),
            None => break,
        }
    }
    super::chain::parse_history(&String::from_utf8_lossy(&bytes))
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

#[cfg(test)]
mod tests;
