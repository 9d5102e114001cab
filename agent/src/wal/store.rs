//! WAL files in the repository: `ENV/TARGET/wal/DIR/NAME-SHA256.zst`, where DIR is the
//! timeline and log of a segment (or `history`) and SHA256 that of the file as PostgreSQL
//! wrote it. The hash in the key makes a push idempotent without a second object: the same
//! file pushed again finds itself; a different file under the same name is a conflict. A
//! target with encryption stores `NAME-SHA256.zst.age` instead ([`super::keys`]).

use std::io::{BufRead, Read, Write};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    keys::{self, Reader, Sealing},
    name::WalName,
};
use crate::repo::{
    Repository, StorageError,
    body::{BodySender, StreamReader, body_channel},
};

/// The largest WAL file accepted or handed back (PostgreSQL's `wal_segment_size` is at most
/// 1 GiB).
pub const MAX_FILE: u64 = 1024 * 1024 * 1024;
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
    seal: Option<&Sealing>,
    mut raw: mpsc::Receiver<Option<Bytes>>,
    cancel: &CancellationToken,
) -> Result<Archived> {
    if size > MAX_FILE {
        bail!("{name} is {size} bytes, more than a WAL file can be ({MAX_FILE})");
    }
    let suffix = if seal.is_some() { ZST_AGE } else { ZST };
    let key = format!("{prefix}/{}/{name}-{sha256}{suffix}", name.dir());
    let (tx, body) = body_channel(4);
    let encryptor = seal.map(Sealing::encryptor).transpose()?;
    let compress = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut hash = Sha256::new();
        let mut total = 0u64;
        let out = ToBody {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let out = match encryptor {
            None => Out::Plain(out),
            Some(e) => Out::Age(e.wrap_output(out).context("start age")?),
        };
        let mut enc = zstd::stream::write::Encoder::new(out, level).context("start zstd")?;
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
                }
                Some(None) => break,
                None => bail!("the client went away in the middle of the file"),
            }
        }
        let tx = enc
            .finish()
            .context("finish zstd")?
            .finish()
            .context("finish age")?
            .finish()?;
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
        encrypted: seal.is_some(),
    })
}

/// Where the compressed (and maybe encrypted) bytes go: the upload, in chunks of [`CHUNK`].
struct ToBody {
    tx: BodySender,
    buf: Vec<u8>,
}

impl ToBody {
    fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let out = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.blocking_send(out.into())?;
        }
        Ok(())
    }

    /// Sends what is left; the sender, to end the upload once the file is judged.
    fn finish(mut self) -> Result<BodySender> {
        self.send().context("the upload stopped")?;
        Ok(self.tx)
    }
}

impl Write for ToBody {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// zstd writes into this: the upload, through age for an encrypted target.
enum Out {
    Plain(ToBody),
    Age(age::stream::StreamWriter<ToBody>),
}

impl Out {
    fn finish(self) -> std::io::Result<ToBody> {
        match self {
            Out::Plain(w) => Ok(w),
            Out::Age(w) => w.finish(),
        }
    }
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(b),
            Out::Age(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Age(w) => w.flush(),
        }
    }
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

/// Reads `a` back: the file's bytes in chunks on the returned channel, then `Ok(None)` once
/// they are all sent and hashed right, or an error (corrupt, truncated, wrong hash, its WAL
/// key unavailable).
pub async fn fetch(reader: &Reader, a: &Archived) -> Result<mpsc::Receiver<Result<Option<Bytes>>>> {
    let repo = &reader.repo;
    let stream = repo
        .get(&a.key, 0)
        .await
        .with_context(|| format!("read {} from {}", a.key, repo.describe()))?
        .with_context(|| format!("{} disappeared from {}", a.key, repo.describe()))?;
    let stored = StreamReader::new(stream, 4);
    let (tx, rx) = mpsc::channel(4);
    let (key, expected) = (a.key.clone(), a.sha256.clone());
    let encrypted = a
        .encrypted
        .then(|| (reader.clone(), tokio::runtime::Handle::current()));
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<()> {
            let stored: Box<dyn Read> = match encrypted {
                None => Box::new(stored),
                Some((reader, rt)) => decrypting(stored, &key, |id| rt.block_on(reader.key(id)))?,
            };
            let dec = zstd::stream::read::Decoder::new(stored).context("start zstd")?;
            let mut dec = dec.take(MAX_FILE + 1);
            let mut hash = Sha256::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = read_full(&mut dec, &mut buf).with_context(|| {
                    format!("{key} is damaged (decrypting or decompressing it failed)")
                })?;
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

/// The largest age header read to find a WAL file's key.
const MAX_HEADER: usize = 16 * 1024;

/// `stored` decrypted: the WAL key its header names, from `open_key`, opens it.
fn decrypting<'a>(
    stored: impl Read + 'a,
    key: &str,
    open_key: impl FnOnce(&str) -> Result<crate::crypt::BackupKey>,
) -> Result<Box<dyn Read + 'a>> {
    let mut stored = std::io::BufReader::new(stored);
    let mut header = Vec::new();
    loop {
        let before = header.len();
        stored
            .by_ref()
            .take((MAX_HEADER - before) as u64)
            .read_until(b'\n', &mut header)
            .with_context(|| format!("read {key}"))?;
        let line = &header[before..];
        if line.starts_with(b"---") {
            break;
        }
        if header.len() == before || header.len() >= MAX_HEADER {
            bail!("{key} is damaged: it does not start with an age header");
        }
    }
    let id = keys::key_id_in(&header)
        .with_context(|| format!("{key} is damaged: its header names no WAL key"))?;
    let wal_key = open_key(&id)?;
    let decryptor = age::Decryptor::new(std::io::Cursor::new(header).chain(stored))
        .with_context(|| format!("{key} is damaged (its age header)"))?;
    let plain = decryptor
        .decrypt(std::iter::once(wal_key.identity() as &dyn age::Identity))
        .with_context(|| {
            format!("{key} is damaged: it does not open with WAL key {id}, which its header names")
        })?;
    Ok(Box::new(plain))
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
        push_sealed(repo, name, data, claimed, None).await
    }

    async fn push_sealed(
        repo: &Repository,
        name: &WalName,
        data: &[u8],
        claimed: &str,
        seal: Option<&Sealing>,
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
            seal,
            rx,
            &CancellationToken::new(),
        )
        .await
    }

    /// A reader of `prod/main/wal` for an agent whose config is `config` (its identity files).
    fn reader(repo: &Repository, config: crate::config::Config) -> Reader {
        Reader {
            repo: repo.clone(),
            prefix: "prod/main/wal".into(),
            config: Arc::new(config),
            ring: Default::default(),
        }
    }

    async fn fetch_all(repo: &Repository, a: &Archived) -> Result<Vec<u8>> {
        fetch_with(&reader(repo, plain_config()), a).await
    }

    async fn fetch_with(reader: &Reader, a: &Archived) -> Result<Vec<u8>> {
        let mut rx = fetch(reader, a).await?;
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
        let r = reader(&repo, plain_config());
        let e = before_push(&r, &name, &sha(&data))
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
        let r = reader(&repo, plain_config());
        assert_eq!(
            before_push(&r, &name, &sha(&data)).await.expect("check"),
            Before::Same
        );
        let other = sha(b"something else");
        let e = before_push(&r, &name, &other).await.expect_err("conflict");
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
            None,
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

    /// An agent config without encryption (reading plaintext WAL never looks at it).
    fn plain_config() -> crate::config::Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = agent(dir.path(), "", None);
        (*r.config).clone()
    }

    /// An agent config whose repository encrypts to `recipient` (none if empty), holding `identity` if given.
    fn agent(dir: &std::path::Path, recipient: &str, identity: Option<&std::path::Path>) -> Reader {
        for f in ["ca.pem", "a.pem"] {
            std::fs::write(dir.join(f), "unused").expect("write tls file");
        }
        if !dir.join("a.key").exists() {
            lifeboat_common::secret::write_private_file(&dir.join("a.key"), b"unused")
                .expect("key");
        }
        let identity = identity
            .map(|p| format!(", identity_file = \"{}\"", p.display()))
            .unwrap_or_default();
        let encryption = if recipient.is_empty() {
            String::new()
        } else {
            format!("encryption = {{ recipients = [\"{recipient}\"]{identity} }}\n")
        };
        let text = format!(
            "name = \"a\"\nenvironment = \"prod\"\ncoordinator = \"https://c.test:7443\"\n\
             state_dir = \"{d}/state\"\n[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/a.pem\"\nkey = \"{d}/a.key\"\n\
             [[repository]]\nname = \"r\"\nkind = \"fs\"\npath = \"{d}/repo\"\n{encryption}",
            d = dir.display(),
        );
        let config = crate::config::parse(&dir.join("agent.toml"), &text).expect("config");
        std::fs::create_dir_all(dir.join("repo")).expect("mkdir");
        let repo: Repository = Arc::new(FsRepository::new(dir.join("repo")));
        reader(&repo, config)
    }

    /// An encrypted target's WAL is stored encrypted to a WAL key whose object is encrypted to
    /// the recipients: the pushing agent reads it back from memory, another agent only with an
    /// identity, and a backup-only agent's error names the key ids it would need. A flipped
    /// byte or a missing key object is an error, never other bytes.
    #[tokio::test(flavor = "multi_thread")]
    async fn encrypted_wal_opens_only_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops_key = dir.path().join("ops.key");
        lifeboat_common::keys::generate_identity_file(&ops_key).expect("identity");
        let ops = lifeboat_common::keys::read_identity_file(&ops_key).expect("read")[0]
            .to_public()
            .to_string();
        let pusher = agent(dir.path(), &ops, None);
        let enc = pusher.config.repository_encryption["r"].clone();
        let cancel = CancellationToken::new();
        let seal = |r: &Reader| {
            let (r, enc, cancel) = (r.clone(), enc.clone(), cancel.clone());
            async move {
                r.ring
                    .sealing(&r.repo, "r", &r.prefix, "main", &enc, &cancel)
                    .await
                    .expect("sealing")
            }
        };
        let s1 = seal(&pusher).await;
        assert_eq!(seal(&pusher).await.id, s1.id, "one WAL key per process");
        let name = WalName::parse("000000010000000000000007").expect("name");
        let mut data = segment();
        data[1000..1016].copy_from_slice(b"SECRET-ROW-VALUE");
        let a = push_sealed(&pusher.repo, &name, &data, &sha(&data), Some(&s1))
            .await
            .expect("push");
        assert!(a.encrypted && a.key.ends_with(".zst.age"), "{}", a.key);
        let path = dir.path().join("repo").join(&a.key);
        let stored = std::fs::read(&path).expect("read");
        let plain_zst = zstd::encode_all(&data[..], 3).expect("zstd");
        assert!(
            !stored
                .windows(64)
                .any(|w| plain_zst.windows(64).next() == Some(w)),
            "the stored bytes hold the plain zstd stream"
        );
        assert_eq!(
            find(&pusher.repo, "prod/main/wal", &name)
                .await
                .expect("find"),
            vec![a.clone()]
        );
        assert_eq!(fetch_with(&pusher, &a).await.expect("own key"), data);

        // Another process, backup-only: the key object does not open, and says which key.
        let later = reader(&pusher.repo, (*pusher.config).clone());
        let e = fetch_with(&later, &a)
            .await
            .expect_err("opened without a key");
        let u = keys::unavailable(&e).expect("key unavailable");
        assert!(u.no_identity, "{e:#}");
        assert!(
            format!("{e:#}").contains(&lifeboat_common::keys::key_id(&ops)),
            "{e:#}"
        );
        // It trusts a push of the same file by its name, and refuses other content.
        assert_eq!(
            before_push(&later, &name, &sha(&data)).await.expect("same"),
            Before::Same
        );
        assert!(before_push(&later, &name, &sha(b"other")).await.is_err());
        // A new process holding the identity reads it.
        let restorer = agent(dir.path(), &ops, Some(&ops_key));
        assert_eq!(fetch_with(&restorer, &a).await.expect("identity"), data);

        // A flipped byte: damaged, not other bytes.
        let mut bad = stored.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        std::fs::write(&path, &bad).expect("damage");
        let restorer = agent(dir.path(), &ops, Some(&ops_key));
        let e = fetch_with(&restorer, &a).await.expect_err("damage read");
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
        assert!(keys::unavailable(&e).is_none(), "{e:#}");
        std::fs::write(&path, &stored).expect("repair");

        // The key object gone: nobody can read it, and the error says so.
        std::fs::remove_file(
            dir.path()
                .join("repo")
                .join(keys::key_object("prod/main/wal", &s1.id)),
        )
        .expect("rm key");
        let restorer = agent(dir.path(), &ops, Some(&ops_key));
        let e = fetch_with(&restorer, &a).await.expect_err("no key object");
        let u = keys::unavailable(&e).expect("key unavailable");
        assert!(!u.no_identity && u.why.contains("missing"), "{e:#}");
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
