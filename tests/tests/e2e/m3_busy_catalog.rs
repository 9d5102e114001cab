//! Item 7 (review M3): a catalog that cannot take writes does not end agent sessions. Another
//! connection holds the SQLite catalog's write lock past the coordinator's busy timeout while
//! the real agent is connected (heartbeat every second); the coordinator drops and counts the
//! heartbeats it cannot record, the agent keeps its one session (no reconnect on either side),
//! and once the lock is gone a backup runs and its restore holds the source's data.

use std::time::Duration;

use lifeboat_e2e::agent::agent_connected;
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::http::http_get;
use lifeboat_e2e::poll::eventually;
use lifeboat_e2e::sandbox::{AGENT, find_str};
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_same_data};
use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

#[test]
fn a_busy_catalog_keeps_the_agent_session() {
    let s = Sandbox::builder("m3_busy_catalog")
        .target(SandboxTarget::new("app"))
        .build();
    load_bulk(&s.pg, "app", "orders", 500);
    let sessions = |logs: &str| logs.matches("agent connected").count();
    assert_eq!(
        sessions(&s.coordinator.logs()),
        1,
        "{}",
        s.coordinator.logs()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut lock = rt
        .block_on(
            SqliteConnectOptions::new()
                .filename(s.coordinator.catalog_path())
                .connect(),
        )
        .expect("open the catalog");
    rt.block_on(sqlx::query("BEGIN IMMEDIATE").execute(&mut lock))
        .expect("take the write lock");
    // Each heartbeat write waits the catalog's busy timeout (10 s), then is dropped.
    eventually("a dropped heartbeat", Duration::from_secs(60), || {
        let logs = s.coordinator.logs();
        assert!(
            !logs.contains("ending agent session"),
            "the busy catalog ended the agent's session:\n{logs}"
        );
        if logs.contains("failed to record an agent heartbeat") {
            Ok(())
        } else {
            anyhow::bail!("no dropped heartbeat logged yet")
        }
    });
    agent_connected(&s.admin, AGENT).expect("the agent stays connected while the catalog is busy");
    rt.block_on(sqlx::query("ROLLBACK").execute(&mut lock))
        .expect("release the write lock");
    rt.block_on(lock.close()).expect("close");

    // The first session carries on: a backup and its restore work.
    let out = s.backup_run("app");
    out.assert_ok();
    let id = find_str(&out.json(), "backup_id").expect("backup id");
    s.restore(&id, "app_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());

    let coordinator = s.coordinator.logs();
    assert_eq!(
        sessions(&coordinator),
        1,
        "the agent reconnected:\n{coordinator}"
    );
    assert!(
        !coordinator.contains("ending agent session"),
        "{coordinator}"
    );
    let (_, metrics) = http_get(s.coordinator.http_addr(), "/metrics");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("lifeboat_agent_updates_dropped_total{kind=\"heartbeat\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The heartbeat that waited out the busy timeout is in the update-time histogram, above
    // its 5 s bucket (those dropped in the back-off after it were never written, nor timed).
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let all = sample("lifeboat_agent_update_seconds_count{kind=\"heartbeat\"}");
    let quick = sample("lifeboat_agent_update_seconds_bucket{kind=\"heartbeat\",le=\"5\"}");
    assert!(
        all >= 1 && quick < all,
        "heartbeats recorded within 5 s: {quick} of {all}"
    );
}
