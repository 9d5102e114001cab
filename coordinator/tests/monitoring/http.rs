//! The HTTP port's shared catalog reading and the bearer token of the detail endpoints.

use super::*;

/// The HTTP endpoints read the catalog at most once per `server.health_cache_ms`, however
/// many requests arrive at once, and `/health/detailed` and `/health/backups` need the bearer
/// token of `server.http_token_file` while probes and `/metrics` stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_are_shared_and_details_need_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("http.token");
    let token = "tok-0123456789abcdef0123456789";
    lifeboat_common::secret::write_private_file(&token_file, format!("{token}\n").as_bytes())
        .expect("write token");
    let c = Coordinator::builder()
        .server(&format!(
            "health_cache_ms = 60000\nhttp_token_file = {:?}\n",
            token_file.display().to_string()
        ))
        .start()
        .await;
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let auth = format!("Authorization: Bearer {token}\r\n");

    // 200 requests at once over all endpoints (under the 256 connections served at once):
    // one catalog read serves them all.
    let paths = [
        "/health/ready",
        "/metrics",
        "/health/detailed",
        "/health/backups",
    ];
    let answers = futures::future::join_all((0..200).map(|i| {
        let (c, auth) = (&c, &auth);
        async move { c.http_get_with(paths[i % paths.len()], auth).await }
    }))
    .await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{}: {body}", paths[i % paths.len()]);
    }
    let (_, metrics) = c.http_get("/metrics").await;
    assert!(
        metrics.contains("lifeboat_health_catalog_reads_total 1\n"),
        "one read for 201 requests: {}",
        metrics
            .lines()
            .filter(|l| l.contains("catalog_reads"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The detail endpoints without the token, or with another one: 401, saying what is needed.
    for path in ["/health/detailed", "/health/backups?environment=prod"] {
        let (status, body) = c.http_get(path).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("server.http_token_file"), "{body}");
        assert!(!body.contains(token), "{body}");
        let (status, _) = c
            .http_get_with(
                path,
                "Authorization: Bearer tok-0123456789abcdef0123456780\r\n",
            )
            .await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _) = c
            .http_get_with(path, &format!("Authorization: {token}\r\n"))
            .await;
        assert_eq!(status, 401, "{path} without the Bearer scheme");
    }
    // Probes and Prometheus need none.
    for path in ["/health", "/health/ready", "/metrics"] {
        let (status, body) = c.http_get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

/// A reading older than the interval is taken again: what the endpoints say is at most one
/// interval old.
#[tokio::test]
async fn http_readings_expire_after_the_interval() {
    let c = Coordinator::builder()
        .server("health_cache_ms = 200\n")
        .start()
        .await;
    let reads = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("lifeboat_health_catalog_reads_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no read counter in {m}"))
    };
    let (_, first) = c.http_get("/metrics").await;
    // The reading behind `first` was taken before its answer arrived: any request sent 200 ms
    // after this point must find it expired.
    let expired_by = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    let (_, again) = c.http_get("/metrics").await;
    assert_eq!(reads(&again), reads(&first), "within the interval: shared");
    let (c, reads, before) = (&c, &reads, reads(&first));
    let later = eventually("a new reading after the interval", || async move {
        let sent = tokio::time::Instant::now();
        let (_, m) = c.http_get("/metrics").await;
        if reads(&m) != before {
            return Some(m);
        }
        assert!(
            sent < expired_by,
            "a request sent after the interval was served the old reading"
        );
        None
    })
    .await;
    assert_eq!(
        reads(&later),
        reads(&first) + 1,
        "after the interval: read again"
    );
}
