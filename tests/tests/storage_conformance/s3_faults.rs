//! S3 over a misbehaving network or server: the fault proxy in front of a real s3s-fs.

use super::*;
use lifeboat_e2e::{poll::eventually, s3::journaled_uploads_older_than};

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
    let journal = w.dir.path().join("journal");
    tokio::task::spawn_blocking(move || {
        eventually(
            "the journaled upload to be older than the threshold",
            Duration::from_secs(30),
            || journaled_uploads_older_than(&journal, Duration::from_secs(1)),
        )
    })
    .await
    .expect("wait for the upload to age");
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

/// S12 on a server without conditional writes (it answers `If-None-Match` with 501 Not
/// Implemented): the write goes again without the condition and lands, later writes do not
/// send it, and the HEAD before each upload still refuses an existing key — single PUT and
/// multipart alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_server_without_conditional_writes() {
    for (len, kind) in [(MIB, "single PUT"), (12 * MIB, "multipart")] {
        let w = World::s3();
        w.proxy()
            .add(Rule::new(Action::Status(501, "NotImplemented")).header("if-none-match"));
        let first = data(len, 40);
        put(&w.repo, KEY, &first)
            .await
            .unwrap_or_else(|e| panic!("{kind}: refused for the condition: {e}"));
        assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), first);
        let other = "dev/orders/20261128T080000Z-000041/data.pgdump.zst";
        put(&w.repo, other, &data(len, 41))
            .await
            .unwrap_or_else(|e| panic!("{kind}: second write: {e}"));
        let e = put(&w.repo, KEY, &data(len, 42))
            .await
            .expect_err("an existing key overwritten");
        assert!(matches!(e, StorageError::AlreadyExists(_)), "{kind}: {e}");
        assert_eq!(get_all(&w.repo, KEY, 0).await.expect("present"), first);
        let log = w.proxy().log();
        let refused = log
            .iter()
            .position(|l| l.contains("NotImplemented"))
            .unwrap_or_else(|| panic!("{kind}: the condition was never sent: {log:#?}"));
        assert!(
            !log[refused + 1..]
                .iter()
                .any(|l| l.contains("if-none-match")),
            "{kind}: the condition was sent again after the server refused it: {log:#?}"
        );
        w.assert_no_open_uploads();
    }
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
