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
    _dir: tempfile::TempDir,
    server: Option<S3Server>,
    proxy: Option<S3Proxy>,
    repo: Repository,
}

impl World {
    fn fs() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(repo::fs::FsRepository::new(dir.path().join("repo")));
        World {
            _dir: dir,
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
            _dir: dir,
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
                threads: 1,
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
both!(abandoned_and_cancelled_writes_leave_nothing);
both!(list_and_delete);
both!(faults_are_caught);

// ---- S3 over a misbehaving network or server --------------------------------------------------

/// S7: a 503 SlowDown storm shorter than the retry budget is ridden out; one that outlasts it
/// fails the upload with the server's error, aborts it, and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_slowdown_storms() {
    let w = World::s3();
    let bytes = data(12 * MIB, 10);
    w.proxy().add(
        Rule::new(Action::Status(503, "SlowDown"))
            .method("PUT")
            .query("partNumber")
            .times(2),
    );
    put(&w.repo, KEY, &bytes)
        .await
        .expect("storm shorter than the retries");
    assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), bytes);
    let log = w.proxy().log();
    assert_eq!(
        log.iter().filter(|l| l.contains("SlowDown")).count(),
        2,
        "{log:#?}"
    );

    w.proxy().add(
        Rule::new(Action::Status(503, "SlowDown"))
            .method("PUT")
            .query("partNumber"),
    );
    let k = "dev/orders/20261128T040000Z-000010/data.pgdump.zst";
    let e = put(&w.repo, k, &bytes).await.expect_err("endless storm");
    assert!(e.to_string().contains("SlowDown"), "{e}");
    assert!(w.repo.head(k).await.expect("head").is_none());
    w.assert_no_open_uploads();
    // 3 attempts per part at most: the budget is bounded.
    let slowdowns = w
        .proxy()
        .log()
        .iter()
        .filter(|l| l.contains("SlowDown"))
        .count();
    assert!(slowdowns <= 2 + 2 * 3, "{slowdowns} attempts");
}

/// S1: connections dropped during part uploads. A short burst is retried; when every part
/// upload fails, the job fails, the multipart upload is aborted (the abort itself retried
/// through dropped connections) and nothing is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_connection_resets_during_upload() {
    let w = World::s3();
    let bytes = data(12 * MIB, 11);
    w.proxy().add(
        Rule::new(Action::Drop)
            .method("PUT")
            .query("partNumber")
            .times(1),
    );
    put(&w.repo, KEY, &bytes)
        .await
        .expect("one reset is retried");
    assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), bytes);

    w.proxy().clear();
    w.proxy().add(
        Rule::new(Action::Drop)
            .method("PUT")
            .query("partNumber")
            .skip(1),
    );
    w.proxy().add(
        Rule::new(Action::Drop)
            .method("DELETE")
            .query("uploadId")
            .times(2),
    );
    let k = "dev/orders/20261128T050000Z-000011/data.pgdump.zst";
    let e = put(&w.repo, k, &bytes)
        .await
        .expect_err("resets on every part");
    assert!(e.to_string().contains("upload part"), "{e}");
    assert!(w.repo.head(k).await.expect("head").is_none());
    let log = w.proxy().log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("DELETE") && l.contains("forward")),
        "the abort was not retried to success: {log:#?}"
    );
    w.assert_no_open_uploads();
}

/// S2: an upload whose abort never got through (the agent died, or the network did) is found
/// by the janitor once it is older than the threshold, and aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_janitor_aborts_stale_uploads() {
    let w = World::s3();
    w.proxy().add(
        Rule::new(Action::Drop)
            .method("PUT")
            .query("partNumber")
            .skip(1),
    );
    w.proxy()
        .add(Rule::new(Action::Drop).method("DELETE").query("uploadId"));
    let e = put(&w.repo, KEY, &data(12 * MIB, 12))
        .await
        .expect_err("fails");
    assert!(e.to_string().contains("upload part"), "{e}");
    assert_eq!(
        w.server().open_multipart_uploads().len(),
        1,
        "an upload is left open"
    );
    w.proxy().clear();
    // Younger than the threshold: left alone (it could be a running backup).
    assert_eq!(
        w.repo
            .janitor("dev/orders", Duration::from_secs(3600), &none())
            .await
            .expect("janitor"),
        0
    );
    assert_eq!(w.server().open_multipart_uploads().len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Old, but its backup is being written by this agent right now: left alone.
    let writing: BTreeSet<String> = [lifeboat_agent::repo::dir_of(KEY)
        .expect("a backup key")
        .to_owned()]
    .into();
    assert_eq!(
        w.repo
            .janitor("dev/orders", Duration::from_secs(1), &writing)
            .await
            .expect("janitor"),
        0
    );
    assert_eq!(w.server().open_multipart_uploads().len(), 1);
    assert_eq!(
        w.repo
            .janitor("dev/orders", Duration::from_secs(1), &none())
            .await
            .expect("janitor"),
        1
    );
    w.assert_no_open_uploads();
    // Other targets' uploads are not this prefix's business.
    assert_eq!(
        w.repo
            .janitor("dev/other", Duration::ZERO, &none())
            .await
            .expect("janitor"),
        0
    );
}

/// Server-side encryption and the storage class go with every write; under SSE-KMS the
/// server's ETags are not MD5s of the data (AWS answers so), and are not taken for a
/// corruption. Without SSE-KMS the same ETags fail the upload's check (S6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_storage_class_are_sent_and_kms_etags_are_not_md5s() {
    let w = World::s3_with(|c| {
        c.sse = Some(Sse::Kms {
            key_id: Some("alias/lifeboat".into()),
        });
        // s3s-fs keeps only STANDARD (AWS takes STANDARD_IA, GLACIER_IR, ...).
        c.storage_class = Some("STANDARD".into());
    });
    w.proxy().add(Rule::new(Action::OpaqueEtag).method("PUT"));
    w.proxy().add(Rule::new(Action::OpaqueEtag).method("HEAD"));
    let big = data(12 * MIB, 21);
    let small = data(1000, 22);
    let big_key = "dev/orders/20261128T060000Z-000021/data.pgdump.zst";
    let small_key = "dev/orders/20261128T060000Z-000022/manifest.json";
    put(&w.repo, big_key, &big)
        .await
        .expect("multipart put under SSE-KMS");
    put(&w.repo, small_key, &small)
        .await
        .expect("single put under SSE-KMS");
    assert_eq!(get_all(&w.repo, big_key, 0).await.expect("present"), big);
    assert_eq!(
        get_all(&w.repo, small_key, 0).await.expect("present"),
        small
    );
    let log = w.proxy().log();
    let with = |line: &&String| {
        line.contains("x-amz-server-side-encryption=aws:kms")
            && line.contains("x-amz-server-side-encryption-aws-kms-key-id=alias/lifeboat")
            && line.contains("x-amz-storage-class=STANDARD")
    };
    assert!(
        log.iter()
            .filter(|l| l.starts_with("POST") && l.contains("uploads"))
            .any(|l| with(&l)),
        "CreateMultipartUpload without the SSE and storage class headers: {log:#?}"
    );
    assert!(
        log.iter()
            .filter(|l| l.starts_with("PUT") && !l.contains("partNumber"))
            .any(|l| with(&l)),
        "PutObject without the SSE and storage class headers: {log:#?}"
    );

    // The same ETags without SSE-KMS: the post-upload check catches them.
    let plain = World::s3();
    plain
        .proxy()
        .add(Rule::new(Action::OpaqueEtag).method("PUT"));
    let e = put(&plain.repo, big_key, &big)
        .await
        .expect_err("opaque ETags accepted without SSE-KMS");
    assert!(matches!(e, StorageError::Verification(_)), "{e}");
    plain.assert_no_open_uploads();
}

/// A download cut mid-body resumes with a ranged GET from the last byte received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_download_resumes() {
    let w = World::s3();
    let bytes = data(11 * MIB, 13);
    put(&w.repo, KEY, &bytes).await.expect("put");
    w.proxy().add(
        Rule::new(Action::CutResponseAfter(3 * MIB as u64))
            .method("GET")
            .times(2),
    );
    assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), bytes);
    let cuts = w
        .proxy()
        .log()
        .iter()
        .filter(|l| l.contains("CutResponseAfter"))
        .count();
    assert_eq!(cuts, 2);
}

/// S6: storage that acknowledges a write but keeps nothing (or other bytes) is caught by the
/// post-upload check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_acknowledged_but_not_stored() {
    let w = World::s3();
    // A single PUT answered 200 without storing anything.
    w.proxy().add(
        Rule::new(Action::FakeOk)
            .method("PUT")
            .path("manifest.json")
            .times(1),
    );
    let k = "dev/orders/20261128T060000Z-000012/manifest.json";
    let e = w
        .repo
        .put_bytes(k, Bytes::from_static(b"{}"), &CancellationToken::new())
        .await
        .expect_err("lost PUT accepted");
    assert!(matches!(e, StorageError::Verification(_)), "{e}");
    assert!(e.to_string().contains("post-upload check"), "{e}");
    // A part answered 200 with an ETag that is not its MD5.
    w.proxy().add(
        Rule::new(Action::FakeOk)
            .method("PUT")
            .query("partNumber")
            .times(1),
    );
    let e = put(&w.repo, KEY, &data(12 * MIB, 14))
        .await
        .expect_err("lost part accepted");
    assert!(matches!(e, StorageError::Verification(_)), "{e}");
    assert!(w.repo.head(KEY).await.expect("head").is_none());
    w.assert_no_open_uploads();
}

/// S6 on a multipart upload: the server acknowledges CompleteMultipartUpload, but the object's
/// HEAD shows other bytes (an ETag of the same form that is not the parts' MD5s). The upload
/// fails its post-upload check and the object is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_completed_multipart_upload_is_checked() {
    let w = World::s3();
    w.proxy().add(Rule::new(Action::OpaqueEtag).method("HEAD"));
    let e = put(&w.repo, KEY, &data(12 * MIB, 15))
        .await
        .expect_err("another object accepted");
    assert!(matches!(e, StorageError::Verification(_)), "{e}");
    assert!(e.to_string().contains("ETag"), "{e}");
    w.proxy().clear();
    assert!(
        w.repo.head(KEY).await.expect("head").is_none(),
        "the object was left"
    );
    w.assert_no_open_uploads();
}

/// S12, the race: another writer creates the key between lifeboat's HEAD and its write. The
/// conditional write (`If-None-Match: *`) is refused with 412, and the write fails as
/// "already exists", single PUT and multipart alike, leaving no upload open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_conditional_writes_lose_to_another_writer() {
    let w = World::s3();
    let small = "dev/orders/20261128T070000Z-000031/manifest.json";
    w.proxy().add(
        Rule::new(Action::Status(412, "PreconditionFailed"))
            .method("PUT")
            .path("manifest.json")
            .times(1),
    );
    let e = w
        .repo
        .put_bytes(small, Bytes::from_static(b"{}"), &CancellationToken::new())
        .await
        .expect_err("a lost race accepted");
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}");
    assert!(
        w.proxy()
            .log()
            .iter()
            .any(|l| l.starts_with("PUT") && l.contains("if-none-match=*")),
        "the write was not conditional: {:#?}",
        w.proxy().log()
    );
    w.proxy().add(
        Rule::new(Action::Status(412, "PreconditionFailed"))
            .method("POST")
            .query("uploadId")
            .times(1),
    );
    let e = put(&w.repo, KEY, &data(12 * MIB, 16))
        .await
        .expect_err("a lost race accepted");
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}");
    w.assert_no_open_uploads();
}

/// S8: the server refuses every request because the clock is off; the error says so and what
/// to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_clock_skew_is_named() {
    let w = World::s3();
    w.proxy()
        .add(Rule::new(Action::Status(403, "RequestTimeTooSkewed")));
    let e = put(&w.repo, KEY, b"x").await.expect_err("accepted");
    let text = e.to_string();
    assert!(
        text.contains("clock skew") && text.contains("NTP"),
        "the error must name the clock and the fix: {text}"
    );
}

/// Wrong credentials and a missing bucket give errors that say what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_configuration_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    server.create_bucket("backups");
    let mut cfg = s3_config(&server, dir.path(), &server.endpoint());
    let creds = dir.path().join("wrong");
    let (id, secret) =
        lifeboat_e2e::s3::write_credentials(&creds, server.access_key(), "not-the-secret");
    cfg.credentials = S3Credentials::Files {
        access_key_id: id,
        secret_access_key: secret,
        session_token: None,
    };
    let repo: Repository = Arc::new(S3Repository::new("offsite", &cfg).expect("repo"));
    let e = put(&repo, KEY, b"x")
        .await
        .expect_err("wrong secret accepted");
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(
        !e.to_string().contains("not-the-secret"),
        "secret in error: {e}"
    );

    // Nothing listens on port 1.
    let cfg = s3_config(&server, dir.path(), "http://127.0.0.1:1");
    let repo: Repository = Arc::new(S3Repository::new("offsite", &cfg).expect("repo"));
    let e = put(&repo, KEY, b"x")
        .await
        .expect_err("unreachable endpoint");
    assert!(
        e.to_string().contains("cannot reach http://127.0.0.1:1"),
        "{e}"
    );
}
