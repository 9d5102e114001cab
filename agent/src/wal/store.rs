//! WAL files in the repository: `ENV/TARGET/wal/DIR/NAME-SHA256.zst`, where DIR is the
//! timeline and log of a segment (or `history`) and SHA256 that of the file as PostgreSQL
//! wrote it. The hash in the key makes a push idempotent without a second object: the same
//! file pushed again finds itself; a different file under the same name is a conflict.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::name::WalName;
use crate::repo::{
    Repository, StorageError,
    body::{StreamReader, body_channel},
};

/// The largest WAL file accepted or handed back (PostgreSQL's `wal_segment_size` is at most
/// 1 GiB).
pub const MAX_FILE: u64 = 1024 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

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
    /// Bytes stored (compressed).
    pub stored_size: u64,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The archived copies of `name` under `prefix`: none, or one (several only if something
/// other than lifeboat wrote there).
pub async fn find(repo: &Repository, prefix: &str, name: &WalName) -> Result<Vec<Archived>> {
    let dir = format!("{prefix}/{}", name.dir());
    let objects = repo
        .list(&dir)
        .await
        .with_context(|| format!("list {dir} in {}", repo.describe()))?;
    let start = format!("{dir}/{name}-");
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let sha = o.key.strip_prefix(&start)?.strip_suffix(".zst")?;
            is_sha256(sha).then(|| Archived {
                sha256: sha.to_owned(),
                key: o.key.clone(),
                stored_size: o.size,
            })
        })
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
pub async fn before_push(
    repo: &Repository,
    prefix: &str,
    name: &WalName,
    sha256: &str,
) -> Result<Before> {
    let found = find(repo, prefix, name).await?;
    if let Some(same) = found.iter().find(|a| a.sha256 == sha256) {
        // PostgreSQL pushes a file again when it did not see the first push succeed: the
        // stored copy is read back before it is trusted. A damaged one fails the push loudly
        // (PostgreSQL keeps the file and retries); it is never removed here, where a slower
        // push of the same file could race the removal.
        match read_back(repo, same).await? {
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

/// Stores `name`: the chunks arriving on `raw` (`Some` per chunk, `None` at the end) are
/// hashed and compressed into a create-only write, committed only if they are exactly
/// `size` bytes hashing to `sha256`. Returns once the file is durable in the repository.
#[allow(clippy::too_many_arguments)]
pub async fn push(
    repo: &Repository,
    prefix: &str,
    name: &WalName,
    sha256: &str,
    size: u64,
    level: i32,
    mut raw: mpsc::Receiver<Option<Bytes>>,
    cancel: &CancellationToken,
) -> Result<Archived> {
    if size > MAX_FILE {
        bail!("{name} is {size} bytes, more than a WAL file can be ({MAX_FILE})");
    }
    let key = format!("{prefix}/{}/{name}-{sha256}.zst", name.dir());
    let (tx, body) = body_channel(4);
    let compress = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut hash = Sha256::new();
        let mut total = 0u64;
        let mut enc = zstd::stream::write::Encoder::new(Vec::with_capacity(CHUNK), level)
            .context("start zstd")?;
        enc.include_checksum(true).context("zstd checksum")?;
        loop {
            match raw.blocking_recv() {
                Some(Some(chunk)) => {
                    total += chunk.len() as u64;
                    if total > size {
                        bail!("the client sent more than the {size} bytes it announced");
                    }
                    hash.update(&chunk);
                    enc.write_all(&chunk).context("compress")?;
                    let out = std::mem::take(enc.get_mut());
                    if !out.is_empty() {
                        tx.blocking_send(out.into())?;
                    }
                }
                Some(None) => break,
                None => bail!("the client went away in the middle of the file"),
            }
        }
        let out = enc.finish().context("finish zstd")?;
        if !out.is_empty() {
            tx.blocking_send(out.into())?;
        }
        let got = hex::encode(hash.finalize());
        Ok((got, total, tx))
    });
    let put = repo.put(&key, body, None, cancel);
    tokio::pin!(put);
    let (got, total, tx) = tokio::select! {
        r = compress => r.context("the compressing thread failed")??,
        r = &mut put => {
            // The write ended before the data did: it can only have failed.
            r.with_context(|| format!("store {key} in {}", repo.describe()))?;
            bail!("the repository took {key} before the end of the data");
        }
    };
    if total != size || got != sha256 {
        drop(tx);
        let _ = put.await;
        bail!(
            "{name} arrived as {total} bytes with SHA-256 {got}, not the {size} bytes with \
             {sha256} announced; nothing was stored (the file changed while it was read?)"
        );
    }
    tx.finish().await.context("finish the upload")?;
    let info = match put.await {
        Ok(info) => info,
        // Another push of the same file won the race: the content is the same by the key.
        Err(StorageError::AlreadyExists(_)) => {
            return stored_already(repo, prefix, name, sha256).await;
        }
        Err(e) => return Err(e).with_context(|| format!("store {key} in {}", repo.describe())),
    };
    Ok(Archived {
        key: key.clone(),
        sha256: got,
        stored_size: info.size,
    })
}

async fn stored_already(
    repo: &Repository,
    prefix: &str,
    name: &WalName,
    sha256: &str,
) -> Result<Archived> {
    find(repo, prefix, name)
        .await?
        .into_iter()
        .find(|a| a.sha256 == sha256)
        .with_context(|| format!("{name} was reported stored, then not found"))
}

/// Reads `a` back whole: `Ok(Ok(size))` when its content hashes to the SHA-256 in its key,
/// `Ok(Err(why))` when it is damaged; `Err` when it cannot be read at all (gone, I/O).
pub async fn read_back(repo: &Repository, a: &Archived) -> Result<Result<u64, String>> {
    let mut rx = fetch(repo, a).await?;
    let mut bytes = 0u64;
    while let Some(item) = rx.recv().await {
        match item {
            Ok(Some(chunk)) => bytes += chunk.len() as u64,
            Ok(None) => return Ok(Ok(bytes)),
            Err(e) => return Ok(Err(format!("{e:#}"))),
        }
    }
    bail!("reading {} stopped without a verdict", a.key)
}

/// Reads `a` back: the file's bytes in chunks on the returned channel, then `Ok(None)` once
/// they are all sent and hashed right, or an error (corrupt, truncated, wrong hash).
pub async fn fetch(
    repo: &Repository,
    a: &Archived,
) -> Result<mpsc::Receiver<Result<Option<Bytes>>>> {
    let stream = repo
        .get(&a.key, 0)
        .await
        .with_context(|| format!("read {} from {}", a.key, repo.describe()))?
        .with_context(|| format!("{} disappeared from {}", a.key, repo.describe()))?;
    let reader = StreamReader::new(stream, 4);
    let (tx, rx) = mpsc::channel(4);
    let (key, expected) = (a.key.clone(), a.sha256.clone());
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<()> {
            let dec = zstd::stream::read::Decoder::new(reader).context("start zstd")?;
            let mut dec = dec.take(MAX_FILE + 1);
            let mut hash = Sha256::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = read_full(&mut dec, &mut buf)
                    .with_context(|| format!("{key} is damaged (decompressing it failed)"))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_FILE {
                    bail!("{key} decompresses to more than {MAX_FILE} bytes; it is not a WAL file");
                }
                hash.update(&buf[..n]);
                if tx
                    .blocking_send(Ok(Some(Bytes::copy_from_slice(&buf[..n]))))
                    .is_err()
                {
                    return Ok(());
                }
            }
            let got = hex::encode(hash.finalize());
            if got != expected {
                bail!("{key} is damaged: its content hashes to {got}, not {expected}");
            }
            Ok(())
        })();
        let _ = tx.blocking_send(result.map(|()| None));
    });
    Ok(rx)
}

/// The switches recorded in timeline `tli`'s history file.
pub async fn read_history(
    repo: &Repository,
    prefix: &str,
    tli: u32,
) -> Result<Vec<super::chain::Switch>> {
    let name = WalName::parse(&format!("{tli:08X}.history")).map_err(anyhow::Error::msg)?;
    let Some(a) = find(repo, prefix, &name).await?.into_iter().next() else {
        bail!(
            "timeline {tli} has WAL in the archive but its history file {name} is missing; recovery cannot follow it"
        );
    };
    let mut rx = fetch(repo, &a).await?;
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

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::fs::FsRepository;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    async fn push_bytes(
        repo: &Repository,
        name: &WalName,
        data: &[u8],
        claimed: &str,
    ) -> Result<Archived> {
        let (tx, rx) = mpsc::channel(4);
        let data_owned = data.to_vec();
        tokio::spawn(async move {
            for c in data_owned.chunks(100_000) {
                if tx.send(Some(Bytes::copy_from_slice(c))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(None).await;
        });
        push(
            repo,
            "prod/main/wal",
            name,
            claimed,
            data.len() as u64,
            3,
            rx,
            &CancellationToken::new(),
        )
        .await
    }

    async fn fetch_all(repo: &Repository, a: &Archived) -> Result<Vec<u8>> {
        let mut rx = fetch(repo, a).await?;
        let mut out = Vec::new();
        while let Some(item) = rx.recv().await {
            match item? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => return Ok(out),
            }
        }
        bail!("the channel closed without an end")
    }

    fn segment() -> Vec<u8> {
        (0..2_000_000u32).map(|i| (i % 251) as u8).collect()
    }

    /// A file pushed again is read back before it is trusted: a stored copy damaged since
    /// (one byte flipped on disk) fails the push, naming the copy; once it is removed, the
    /// push stores the good bytes again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_damaged_copy_fails_a_push_of_the_same_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let name = WalName::parse("00000001000000000000002B").expect("name");
        let data = segment();
        let a = push_bytes(&repo, &name, &data, &sha(&data))
            .await
            .expect("push");
        let path = root.path().join(&a.key);
        let mut stored = std::fs::read(&path).expect("read");
        let mid = stored.len() / 2;
        stored[mid] ^= 0x10;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        std::fs::write(&path, &stored).expect("damage");
        assert!(fetch_all(&repo, &a).await.is_err(), "the damage is seen");
        let e = before_push(&repo, "prod/main/wal", &name, &sha(&data))
            .await
            .expect_err("a damaged copy is not trusted");
        assert!(format!("{e:#}").contains(&a.key), "{e:#}");
        assert!(path.exists(), "the push removes nothing");
        std::fs::remove_file(&path).expect("the operator removes it");
        let again = push_bytes(&repo, &name, &data, &sha(&data))
            .await
            .expect("push again");
        assert_eq!(again.key, a.key);
        assert_eq!(fetch_all(&repo, &again).await.expect("fetch"), data);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pushed_file_comes_back_byte_for_byte_and_a_second_push_finds_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let name = WalName::parse("00000001000000000000002A").expect("name");
        let data = segment();
        let a = push_bytes(&repo, &name, &data, &sha(&data))
            .await
            .expect("push");
        assert_eq!(
            a.key,
            format!("prod/main/wal/0000000100000000/{name}-{}.zst", sha(&data))
        );
        assert!(
            a.stored_size < data.len() as u64 / 10,
            "compressed: {}",
            a.stored_size
        );
        assert_eq!(fetch_all(&repo, &a).await.expect("fetch"), data);
        assert_eq!(
            before_push(&repo, "prod/main/wal", &name, &sha(&data))
                .await
                .expect("check"),
            Before::Same
        );
        let other = sha(b"something else");
        let e = before_push(&repo, "prod/main/wal", &name, &other)
            .await
            .expect_err("conflict");
        assert!(format!("{e:#}").contains("different content"), "{e:#}");
        // A backup history file of the same segment is another name in the same directory.
        let backup = WalName::parse("00000001000000000000002A.00000028.backup").expect("name");
        assert!(
            find(&repo, "prod/main/wal", &backup)
                .await
                .expect("find")
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bytes_that_do_not_match_the_announced_hash_or_size_store_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let name = WalName::parse("000000010000000000000001").expect("name");
        let data = segment();
        let e = push_bytes(&repo, &name, &data, &sha(b"not this"))
            .await
            .expect_err("wrong hash");
        assert!(format!("{e:#}").contains("nothing was stored"), "{e:#}");
        // The client dies in the middle: the channel closes without the end marker.
        let (tx, rx) = mpsc::channel(4);
        tx.send(Some(Bytes::from_static(b"half")))
            .await
            .expect("send");
        drop(tx);
        let e = push(
            &repo,
            "prod/main/wal",
            &name,
            &sha(&data),
            data.len() as u64,
            3,
            rx,
            &CancellationToken::new(),
        )
        .await
        .expect_err("cut short");
        assert!(format!("{e:#}").contains("went away"), "{e:#}");
        assert!(
            find(&repo, "prod/main/wal", &name)
                .await
                .expect("find")
                .is_empty()
        );
        let files: Vec<_> = walk(root.path());
        assert!(files.is_empty(), "left behind: {files:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_damaged_stored_file_is_refused_on_fetch() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let name = WalName::parse("000000010000000000000003").expect("name");
        let data = segment();
        let a = push_bytes(&repo, &name, &data, &sha(&data))
            .await
            .expect("push");
        let path = root.path().join(&a.key);
        // Valid zstd of other content under the right name: only the hash can tell.
        let other = zstd::encode_all(&b"other content"[..], 3).expect("zstd");
        std::fs::write(&path, other).expect("replace");
        let e = fetch_all(&repo, &a).await.expect_err("wrong content");
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
        // Random bytes: not zstd at all.
        std::fs::write(&path, b"garbage garbage garbage").expect("replace");
        let e = fetch_all(&repo, &a).await.expect_err("garbage");
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            if e.file_type().expect("type").is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
