//! One conformance suite for every repository backend: the local file system and S3 (a real
//! s3s-fs on loopback). The error paths use the fault-injecting wrapper around the real
//! backends, and for S3 a fault-injecting HTTP proxy in front of the real server (503 storms,
//! dropped connections, cut downloads, acknowledged-but-lost uploads).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt as _;
use lifeboat_agent::{
    pipeline::{self, Compression, Counters, Digest, Expected, PipelineError},
    repo::{
        self, Repository, Storage, StorageError,
        body::{BodyWriter, StreamReader, body_channel},
        faulty::{Fault, Faulty, Op},
        s3::{S3Config, S3Credentials, S3Repository, Sse},
    },
};
use lifeboat_e2e::{
    s3::S3Server,
    s3proxy::{Action, Rule, S3Proxy},
};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;
const PART: u64 = 5 * MIB as u64;

/// Deterministic bytes that do not compress to nothing.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        })
        .collect()
}

struct World {
    dir: tempfile::TempDir,
    server: Option<S3Server>,
    proxy: Option<S3Proxy>,
    repo: Repository,
}

impl World {
    fn fs() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(repo::fs::FsRepository::new(dir.path().join("repo")));
        World {
            dir,
            server: None,
            proxy: None,
            repo,
        }
    }

    /// S3 through the fault proxy (which forwards everything until told otherwise).
    fn s3() -> World {
        Self::s3_with(|_| {})
    }

    /// [`World::s3`] with the repository's configuration changed by `adjust`.
    fn s3_with(adjust: impl FnOnce(&mut S3Config)) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = S3Server::start(dir.path());
        server.create_bucket("backups");
        let proxy = S3Proxy::start(([127, 0, 0, 1], server.port()).into());
        let mut cfg = s3_config(&server, dir.path(), &proxy.endpoint());
        adjust(&mut cfg);
        let repo: Repository = Arc::new(
            S3Repository::new("offsite", &cfg)
                .expect("s3 repository")
                .with_journal(dir.path().join("journal")),
        );
        World {
            dir,
            server: Some(server),
            proxy: Some(proxy),
            repo,
        }
    }

    fn server(&self) -> &S3Server {
        self.server.as_ref().expect("an s3 world")
    }

    fn proxy(&self) -> &S3Proxy {
        self.proxy.as_ref().expect("an s3 world")
    }

    /// Nothing left over by failed writes: no open multipart upload on S3.
    fn assert_no_open_uploads(&self) {
        if let Some(s) = &self.server {
            assert_eq!(s.open_multipart_uploads(), Vec::<String>::new());
        }
    }
}

fn s3_config(server: &S3Server, dir: &std::path::Path, endpoint: &str) -> S3Config {
    let (id, secret) = server.credential_files(dir);
    S3Config {
        bucket: "backups".into(),
        prefix: "lifeboat/".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.to_owned()),
        path_style: true,
        storage_class: None,
        sse: None,
        credentials: S3Credentials::Files {
            access_key_id: id,
            secret_access_key: secret,
            session_token: None,
        },
        ca_file: None,
        part_size: PART,
        parts_in_flight: 2,
        max_attempts: 3,
        request_timeout: Duration::from_secs(30),
        stale_upload_age: Duration::from_secs(3600),
        janitor_interval: Duration::from_secs(3600),
    }
}

/// Puts `bytes` in 1 MiB chunks.
async fn put(repo: &Repository, key: &str, bytes: &[u8]) -> Result<repo::ObjectInfo, StorageError> {
    let (tx, body) = body_channel(4);
    let r = repo.clone();
    let k = key.to_owned();
    let task = tokio::spawn(async move { r.put(&k, body, None, &CancellationToken::new()).await });
    for c in bytes.chunks(MIB) {
        if tx.send(Bytes::copy_from_slice(c)).await.is_err() {
            break;
        }
    }
    let _ = tx.finish().await;
    task.await.expect("put task")
}

async fn get_all(repo: &Repository, key: &str, offset: u64) -> Option<Vec<u8>> {
    let mut s = repo.get(key, offset).await.expect("get")?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("read chunk"));
    }
    Some(out)
}

const KEY: &str = "dev/orders/20261128T010000Z-000001/data.pgdump.zst";

/// No backup being written.
fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

async fn roundtrip(w: World) {
    let bytes = data(13 * MIB + 12345, 1);
    let info = put(&w.repo, KEY, &bytes).await.expect("put");
    assert_eq!(info.size, bytes.len() as u64);
    let head = w.repo.head(KEY).await.expect("head").expect("present");
    assert_eq!(head.size, bytes.len() as u64);
    assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), bytes);
    let off = 7 * MIB + 3;
    assert_eq!(
        get_all(&w.repo, KEY, off as u64).await.expect("present"),
        bytes[off..]
    );
    // An exact multiple of the part size, and an object smaller than one part.
    let even = data(2 * PART as usize, 2);
    let k2 = "dev/orders/20261128T010000Z-000002/data.pgdump.zst";
    put(&w.repo, k2, &even).await.expect("put even");
    assert_eq!(get_all(&w.repo, k2, 0).await.expect("present"), even);
    let k3 = "dev/orders/20261128T010000Z-000002/manifest.json";
    w.repo
        .put_bytes(
            k3,
            Bytes::from_static(b"{\"small\":true}"),
            &CancellationToken::new(),
        )
        .await
        .expect("small");
    assert_eq!(
        w.repo.get_bytes(k3, 1024).await.expect("get"),
        Some(b"{\"small\":true}".to_vec())
    );
    assert!(
        w.repo
            .head("dev/orders/nope/x")
            .await
            .expect("head")
            .is_none()
    );
    assert!(get_all(&w.repo, "dev/orders/nope/x", 0).await.is_none());
    w.assert_no_open_uploads();
}

async fn create_only(w: World) {
    let first = data(6 * MIB, 3);
    put(&w.repo, KEY, &first).await.expect("first");
    // S12: a second writer of the same key fails and the first object is untouched.
    let e = put(&w.repo, KEY, &data(6 * MIB, 4))
        .await
        .expect_err("overwrote");
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}");
    assert!(e.to_string().contains("never overwrites"), "{e}");
    let e = w
        .repo
        .put_bytes(KEY, Bytes::from_static(b"x"), &CancellationToken::new())
        .await
        .expect_err("overwrote with a small object");
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}");
    assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), first);
    w.assert_no_open_uploads();
}

/// The one overwrite (a key object on key rotation): the new bytes replace the old whole, a
/// missing key is created, and nothing else is left beside it.
async fn replace_small_objects(w: World) {
    let key = "dev/orders/20261127T233000Z-000001/key.age";
    let cancel = CancellationToken::new();
    put(&w.repo, key, b"old key object").await.expect("first");
    let info = w
        .repo
        .replace_bytes(key, Bytes::from_static(b"new key object, longer"), &cancel)
        .await
        .expect("replace");
    assert_eq!(info.size, 22);
    assert_eq!(
        get_all(&w.repo, key, 0).await.expect("present"),
        b"new key object, longer"
    );
    let other = "dev/orders/20261127T233000Z-000002/key.age";
    w.repo
        .replace_bytes(other, Bytes::from_static(b"created"), &cancel)
        .await
        .expect("create");
    assert_eq!(
        get_all(&w.repo, other, 0).await.expect("present"),
        b"created"
    );
    let listed: Vec<String> = w
        .repo
        .list("dev/orders")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, [key, other], "temporary files left behind");
    w.assert_no_open_uploads();
}

/// What a backup killed before its manifest leaves (its data, globals and key object) is swept
/// by the janitor; complete backups and the WAL archive with its keys are left alone.
async fn incomplete_backups_are_swept(w: World) {
    let done = "dev/orders/20261127T233000Z-000001";
    let killed = "dev/orders/20261127T233001Z-000002";
    let keep = [
        format!("{done}/data.pgdump.zst.age"),
        format!("{done}/globals.sql.zst.age"),
        format!("{done}/key.age"),
        format!("{done}/manifest.json"),
        format!(
            "dev/orders/wal/0000000100000000/000000010000000000000003-{}.zst.age",
            "a".repeat(64)
        ),
        "dev/orders/wal/keys/3f9a0c1d2e4b5a69.age".to_owned(),
    ];
    let swept = [
        format!("{killed}/data.pgdump.zst.age"),
        format!("{killed}/globals.sql.zst.age"),
        format!("{killed}/key.age"),
    ];
    for k in keep.iter().chain(&swept) {
        put(&w.repo, k, b"bytes").await.expect("put");
    }
    // Object times have a resolution of a second on S3.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.repo
        .janitor("dev/orders", Duration::ZERO, &none())
        .await
        .expect("janitor");
    let mut listed: Vec<String> = w
        .repo
        .list("dev/orders")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    listed.sort();
    let mut want = keep.to_vec();
    want.sort();
    assert_eq!(listed, want);
}

async fn abandoned_and_cancelled_writes_leave_nothing(w: World) {
    // The writer goes away mid-stream (the dump failed): nothing is visible, nothing is open.
    let (tx, body) = body_channel(4);
    let r = w.repo.clone();
    let task = tokio::spawn(async move { r.put(KEY, body, None, &CancellationToken::new()).await });
    for c in data(12 * MIB, 5).chunks(MIB) {
        tx.send(Bytes::copy_from_slice(c)).await.expect("send");
    }
    drop(tx);
    let e = task
        .await
        .expect("join")
        .expect_err("abandoned body stored");
    assert!(matches!(e, StorageError::Abandoned(_)), "{e}");
    assert!(w.repo.head(KEY).await.expect("head").is_none());
    w.assert_no_open_uploads();

    // Cancelled mid-stream.
    let (tx, body) = body_channel(4);
    let cancel = CancellationToken::new();
    let r = w.repo.clone();
    let c2 = cancel.clone();
    let task = tokio::spawn(async move { r.put(KEY, body, None, &c2).await });
    for c in data(11 * MIB, 6).chunks(MIB) {
        tx.send(Bytes::copy_from_slice(c)).await.expect("send");
    }
    cancel.cancel();
    let e = task.await.expect("join").expect_err("cancelled put stored");
    assert!(matches!(e, StorageError::Cancelled), "{e}");
    drop(tx);
    assert!(w.repo.head(KEY).await.expect("head").is_none());
    w.assert_no_open_uploads();
}

async fn list_and_delete(w: World) {
    let keys = [
        "dev/orders/20261128T010000Z-000001/data.pgdump.zst",
        "dev/orders/20261128T010000Z-000001/manifest.json",
        "dev/orders/20261128T020000Z-000002/data.pgdump.zst",
        "dev/orders2/20261128T010000Z-000003/data.pgdump.zst",
        "prod/orders/20261128T010000Z-000004/manifest.json",
    ];
    for (i, k) in keys.iter().enumerate() {
        w.repo
            .put_bytes(k, Bytes::from(vec![b'a'; i + 1]), &CancellationToken::new())
            .await
            .expect("put");
    }
    let listed: Vec<(String, u64)> = w
        .repo
        .list("dev/orders")
        .await
        .expect("list")
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            (keys[0].to_owned(), 1),
            (keys[1].to_owned(), 2),
            (keys[2].to_owned(), 3)
        ]
    );
    let all: Vec<String> = w
        .repo
        .list("")
        .await
        .expect("list all")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(all, keys.to_vec());
    assert!(w.repo.list("staging").await.expect("list").is_empty());
    w.repo.delete(keys[0]).await.expect("delete");
    w.repo.delete(keys[0]).await.expect("delete again is fine");
    assert!(w.repo.head(keys[0]).await.expect("head").is_none());
    assert!(w.repo.head(keys[1]).await.expect("head").is_some());
    // Keys that escape the repository are refused.
    for bad in ["../x", "/etc/passwd", "a/../b", "a//b", ".hidden/x"] {
        assert!(w.repo.head(bad).await.is_err(), "{bad} accepted");
    }
}

/// A compressed backup stored in the repository, and what the catalog would expect of it.
async fn stored_backup(repo: &Repository) -> Expected {
    let mut raw = b"PGDMP".to_vec();
    raw.extend(data(9 * MIB, 7));
    let (tx, body) = body_channel(4);
    let r = repo.clone();
    let task = tokio::spawn(async move { r.put(KEY, body, None, &CancellationToken::new()).await });
    let compressed = tokio::task::spawn_blocking(move || {
        pipeline::compress(
            std::io::Cursor::new(raw),
            BodyWriter::new(tx),
            b"PGDMP",
            Compression {
                level: 1,
                adaptive: false,
                threads: 1,
                encrypt_to: None,
            },
            &Arc::new(Counters::default()),
            &CancellationToken::new(),
        )
        .expect("compress")
    })
    .await
    .expect("join");
    compressed.sink.finish().await.expect("finish");
    task.await.expect("join").expect("put");
    Expected {
        key: None,
        stored: Digest {
            size: compressed.stored.size,
            sha256: compressed.stored.sha256,
        },
        raw: Digest {
            size: compressed.raw.size,
            sha256: compressed.raw.sha256,
        },
    }
}

async fn decode(repo: Repository, expected: Expected) -> Result<(), PipelineError> {
    let stream = repo.get(KEY, 0).await.expect("get").expect("present");
    let reader = StreamReader::new(stream, 4);
    tokio::task::spawn_blocking(move || {
        pipeline::decompress(
            reader,
            std::io::sink(),
            b"PGDMP",
            &expected,
            &Arc::new(Counters::default()),
            &CancellationToken::new(),
        )
        .map(drop)
    })
    .await
    .expect("join")
}

async fn faults_are_caught(w: World) {
    let expected = stored_backup(&w.repo).await;
    decode(w.repo.clone(), expected.clone())
        .await
        .expect("intact backup decodes");
    let stored = expected.stored.size;
    // S4: one flipped byte is a hash mismatch, not a zstd error.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::FlipByte { at: stored / 2 });
    let e = decode(f.clone(), expected.clone()).await.expect_err("flip");
    assert!(matches!(e, PipelineError::Mismatch { .. }), "{e}");
    // S3: truncation is a size/hash mismatch.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::Truncate { at: stored - 100 });
    let e = decode(f.clone(), expected.clone())
        .await
        .expect_err("truncated");
    assert!(matches!(e, PipelineError::Mismatch { .. }), "{e}");
    // A read error is reported as such, never as success.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::ReadErrorAt { at: 3 * MIB as u64 });
    let e = decode(f.clone(), expected.clone())
        .await
        .expect_err("read error");
    assert!(e.to_string().contains("injected"), "{e}");
    // Failing calls surface their error.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::FailNth { op: Op::Head, n: 1 });
    let e = f.head(KEY).await.expect_err("head fault");
    assert!(e.to_string().contains("injected"), "{e}");
    assert!(f.head(KEY).await.expect("second head").is_some());
    assert_eq!(f.calls(Op::Head), 2);
    // An upload cut off mid-stream leaves nothing visible and nothing open.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::CutPutAfter {
        bytes: 6 * MIB as u64,
    });
    let k = "dev/orders/20261128T030000Z-000009/data.pgdump.zst";
    let fr: Repository = f.clone();
    let e = put(&fr, k, &data(12 * MIB, 8))
        .await
        .expect_err("cut upload");
    assert!(e.to_string().contains("injected"), "{e}");
    assert!(w.repo.head(k).await.expect("head").is_none());
    w.assert_no_open_uploads();
    // A stalled call still honours cancellation.
    let f = Faulty::wrap(w.repo.clone());
    f.inject(Fault::Stall {
        op: Op::Put,
        n: 1,
        for_: Duration::from_secs(600),
    });
    let cancel = CancellationToken::new();
    let (_tx, body) = body_channel(1);
    let c2 = cancel.clone();
    let t = tokio::spawn(async move { f.put(k, body, None, &c2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let e = tokio::time::timeout(Duration::from_secs(10), t)
        .await
        .expect("stalled put ignored cancel")
        .expect("join")
        .expect_err("stalled put");
    assert!(matches!(e, StorageError::Cancelled), "{e}");
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fs() {
                super::$name(super::World::fs()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(super::World::s3()).await;
            }
        }
    };
}

both!(roundtrip);
both!(create_only);
both!(replace_small_objects);
both!(incomplete_backups_are_swept);
both!(abandoned_and_cancelled_writes_leave_nothing);
both!(list_and_delete);
both!(faults_are_caught);

mod s3_faults;
