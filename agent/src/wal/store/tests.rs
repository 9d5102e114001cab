use std::sync::Arc;

use anyhow::{Result, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{repo::fs::FsRepository, wal::keys::Sealing};

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
    Reader::new(repo.clone(), "prod/main/wal".into(), Arc::new(config))
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
        lifeboat_common::secret::write_private_file(&dir.join("a.key"), b"unused").expect("key");
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
