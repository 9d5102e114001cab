use super::{upload::*, *};

#[test]
fn part_sizes_reach_the_object_limit_within_10000_parts() {
    for base in [MIN_PART_SIZE, 16 * MIB] {
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size_for(base, n)).sum();
        assert!(
            total >= 5 * 1024 * 1024 * MIB,
            "base {base}: {total} bytes in 10,000 parts"
        );
        assert_eq!(part_size_for(base, 1), base);
        assert_eq!(part_size_for(base, GROWTH_START), base);
        assert_eq!(part_size_for(base, GROWTH_START + 1), 2 * base);
        assert_eq!(part_size_for(base, GROWTH_START + GROWTH_STEP), 2 * base);
        assert_eq!(
            part_size_for(base, GROWTH_START + GROWTH_STEP + 1),
            4 * base
        );
        assert!(part_size_for(base, MAX_PARTS) <= MAX_PART_SIZE);
    }
}

#[test]
fn initial_part_size_grows_with_the_expected_size() {
    assert_eq!(initial_part_size(16 * MIB, None), 16 * MIB);
    assert_eq!(initial_part_size(16 * MIB, Some(10 * 1024 * MIB)), 16 * MIB);
    // 1 TiB expected: 1.5 TiB over 9,000 parts.
    let p = initial_part_size(16 * MIB, Some(1024 * 1024 * MIB));
    assert!(p >= (1536 * 1024 * MIB) / 9_000, "{p}");
    assert_eq!(p % MIB, 0);
    assert!(p * 9_000 >= 1536 * 1024 * MIB);
    assert_eq!(
        initial_part_size(16 * MIB, Some(u64::MAX)),
        MAX_PART_SIZE,
        "capped at S3's part limit"
    );
}

/// A repository for message tests; no request is ever sent.
fn offline_repo() -> S3Repository {
    S3Repository::new(
        "offsite",
        &S3Config {
            bucket: "backups".into(),
            prefix: "lifeboat/".into(),
            region: "eu-central-1".into(),
            endpoint: Some("https://s3.example.com".into()),
            path_style: true,
            storage_class: None,
            sse: None,
            credentials: S3Credentials::Env,
            ca_file: None,
            part_size: 16 * MIB,
            parts_in_flight: 4,
            max_attempts: 3,
            request_timeout: Duration::from_secs(30),
            stale_upload_age: Duration::from_secs(3600),
            janitor_interval: Duration::from_secs(3600),
        },
    )
    .expect("repository")
}

fn service_error(
    status: u16,
    code: &str,
) -> SdkError<
    aws_sdk_s3::operation::put_object::PutObjectError,
    aws_sdk_s3::config::http::HttpResponse,
> {
    use aws_sdk_s3::error::ErrorMetadata;
    let err = aws_sdk_s3::operation::put_object::PutObjectError::generic(
        ErrorMetadata::builder()
            .code(code)
            .message("from the server")
            .build(),
    );
    let raw = aws_sdk_s3::config::http::HttpResponse::new(
        status.try_into().expect("status"),
        aws_smithy_types::body::SdkBody::empty(),
    );
    SdkError::service_error(err, raw)
}

#[tokio::test]
async fn server_errors_become_guidance() {
    let repo = offline_repo();
    let msg = |status, code| {
        repo.error("PUT", "lifeboat/k", &service_error(status, code))
            .to_string()
    };
    // S8: the SDK corrects small skews itself; when the server still refuses, say so.
    let skew = msg(403, "RequestTimeTooSkewed");
    assert!(
        skew.contains("clock skew") && skew.contains("NTP"),
        "{skew}"
    );
    assert!(skew.contains("s3://backups/lifeboat/k"), "{skew}");
    let creds = msg(403, "SignatureDoesNotMatch");
    assert!(creds.contains("credentials"), "{creds}");
    let denied = msg(403, "AccessDenied");
    assert!(denied.contains("s3:PutObject"), "{denied}");
    let bucket = msg(404, "NoSuchBucket");
    assert!(
        bucket.contains("does not exist") && bucket.contains("https://s3.example.com"),
        "{bucket}"
    );
    let head = msg(403, "");
    assert!(
        head.contains("403 Forbidden") && head.contains("credentials"),
        "{head}"
    );
    let other = msg(500, "InternalError");
    assert!(other.contains("InternalError"), "{other}");
}

#[test]
fn etags_are_compared_only_when_their_forms_match() {
    let md5 = "9e107d9d372bb6826bd81d3542a419d6";
    let multi = "9e107d9d372bb6826bd81d3542a419d6-3";
    assert!(etag_comparable(md5, md5));
    assert!(etag_comparable(multi, multi));
    assert!(!etag_comparable(multi, md5));
    assert!(!etag_comparable(md5, multi));
    // SSE-KMS and other servers: opaque ETags are not compared.
    assert!(!etag_comparable("abc123", md5));
    assert_eq!(clean_etag("\"9e107d9d372bb6826bd81d3542a419d6\""), md5);
}

#[test]
fn http_dates_parse() {
    assert_eq!(
        errors::parse_http_date("Tue, 01 Dec 2026 19:45:00 GMT"),
        Some(1_796_154_300)
    );
    assert_eq!(errors::parse_http_date("yesterday"), None);
}
