//! Catalog tests against a real SQLite file in a temp dir.

use super::*;
use crate::model::*;

/// A catalog file at `path` as a version up to `version` left it (migrations 1..=version), and
/// `sql` run in it; closed, for the current version to open and migrate.
async fn catalog_of_version(path: &std::path::Path, version: i64, sql: &[&str]) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .expect("open");
    let mut old = migrator();
    old.migrations = std::borrow::Cow::Owned(
        old.migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect(),
    );
    old.run(&pool).await.expect("migrate to the old version");
    for sql in sql {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    pool.close().await;
}

use super::testing::open;

fn agent(name: &str) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        environment: "prod".into(),
        version: "0.1.0".into(),
        last_seen_ms: 1_000,
        clock_skew_ms: 0,
        max_concurrent_jobs: 2,
    }
}

fn decl(name: &str) -> TargetDecl {
    TargetDecl {
        encryption: None,
        copy_to: Vec::new(),
        name: name.into(),
        engine: Engine::Postgres,
        provider: "postgres".into(),
        repository: "local".into(),
        database: name.into(),
    }
}

fn new_job(id: &str, kind: JobKind, target: &str, backup_id: &str) -> NewJob {
    NewJob {
        decrypt: false,
        rotation: None,
        repository: String::new(),
        id: id.into(),
        kind,
        target: target.parse().expect("target"),
        agent: "prod-1".into(),
        backup_id: (!backup_id.is_empty()).then(|| backup_id.parse().expect("a backup id")),
        requested_by: "alice".into(),
        created_at_ms: 2_000,
        restore: None,
        export_path: None,
    }
}

fn backup(id: &str, job_id: &str, finished_at_ms: i64) -> Backup {
    Backup {
        encryption: None,
        backup_id: id.parse().expect("a backup id"),
        target: "prod/orders".parse().expect("target"),
        agent: "prod-1".into(),
        repository: "local".into(),
        engine: Engine::Postgres,
        provider: "postgres".into(),
        database: "orders".into(),
        server_version: "15.8".into(),
        system_identifier: "7300000000000000000".into(),
        dump_tool: "pg_dump".into(),
        dump_tool_version: "15.8".into(),
        format: "pg_dump-custom".into(),
        compression: "zstd".into(),
        compression_level: 3,
        raw_size: 1000,
        stored_size: 200,
        raw_sha256: "a".repeat(64),
        stored_sha256: "b".repeat(64),
        started_at_ms: 3_000,
        finished_at_ms,
        row_counts: vec![RowCount {
            bytes: None,
            schema: "public".into(),
            table: "orders".into(),
            rows: 42,
        }],
        data_key: format!("prod/orders/{id}/data.pgdump.zst"),
        manifest_key: format!("prod/orders/{id}/manifest.json"),
        verify_status: VerifyStatus::Unverified,
        verified_at_ms: None,
        verify_detail: String::new(),
        job_id: job_id.into(),
        wal_start: String::new(),
        globals: Default::default(),
    }
}

fn success(at: i64) -> Finish {
    Finish {
        state: JobState::Succeeded,
        finished_at_ms: at,
        error: String::new(),
        detail: String::new(),
        database: None,
        report: Default::default(),
    }
}

const J1: &str = "20261127T233000Z-000001";
const J2: &str = "20261127T233001Z-000002";
const B1: &str = "20261127T233000Z-b00001";
const B2: &str = "20261127T233001Z-b00002";

async fn with_target() -> (tempfile::TempDir, Catalog) {
    let (dir, c) = open().await;
    c.upsert_agent(&agent("prod-1")).await.expect("agent");
    let conflicts = c
        .register_targets("prod-1", "prod", &[decl("orders"), decl("users")])
        .await
        .expect("targets");
    assert!(conflicts.is_empty());
    (dir, c)
}

#[tokio::test]
async fn reopen_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.db");
    {
        let c = Catalog::open_sqlite(&path).await.expect("open");
        c.upsert_agent(&agent("prod-1")).await.expect("agent");
        c.close().await;
    }
    let c = Catalog::open_sqlite(&path).await.expect("reopen");
    assert_eq!(c.list_agents().await.expect("list"), vec![agent("prod-1")]);
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Catalog::open_sqlite(&dir.path().join("catalog.db"))
        .await
        .expect("open");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&c.pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&c.pool)
        .await
        .expect("foreign keys");
    assert_eq!(fk, 1);
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&c.pool)
        .await
        .expect("migrations table");
    let carried = i64::try_from(super::migrator().iter().count()).expect("count");
    assert_eq!(
        applied, carried,
        "every migration the binary carries is applied"
    );
}

#[tokio::test]
async fn a_catalog_a_newer_release_upgraded_is_refused_and_left_alone() {
    let (_dir, c) = open().await;
    let status = c.schema_status().await.expect("status");
    assert!(
        status.is_current() && status.unknown().is_empty(),
        "{status:?}"
    );
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'newer', TRUE, $1, 0)",
    )
    .bind(vec![0u8])
    .execute(&c.pool)
    .await
    .expect("insert");
    let e = c.migrate().await.expect_err("a newer catalog is refused");
    assert!(matches!(e, CatalogError::Newer(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("[999]") && text.contains("upgrade this coordinator"),
        "{text}"
    );
    let status = c.schema_status().await.expect("status");
    assert_eq!(status.unknown(), vec![999]);
    assert!(status.applied.contains(&999), "left as it was");
}

/// Each backend keeps the guarantees the catalog code relies on: on PostgreSQL, serializable
/// sessions, a lost race reported as retryable, and writing transactions that take turns
/// (as SQLite's writers do); on SQLite, WAL and foreign keys (also checked for a file opened
/// by path above).
#[tokio::test]
async fn sessions_hold_the_backends_guarantees() {
    let (_dir, c) = open().await;
    match c.backend() {
        Backend::Sqlite => {
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&c.pool)
                .await
                .expect("foreign keys");
            assert_eq!(fk, 1);
        }
        Backend::Postgres => {
            let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
                .fetch_one(&c.pool)
                .await
                .expect("isolation");
            assert_eq!(level, "serializable");
            // Two transactions each read the agents and add one: serializable lets only
            // one commit; the other's error is retryable.
            let mut t1 = c.pool.begin().await.expect("begin");
            let mut t2 = c.pool.begin().await.expect("begin");
            for tx in [&mut t1, &mut t2] {
                let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents")
                    .fetch_one(&mut **tx)
                    .await
                    .expect("read");
            }
            let insert = "INSERT INTO agents (name, environment, version, last_seen_ms) \
                          VALUES ($1, 'prod', '1', 0)";
            sqlx::query(insert)
                .bind("a1")
                .execute(&mut *t1)
                .await
                .expect("insert a1");
            let second = async {
                sqlx::query(insert).bind("a2").execute(&mut *t2).await?;
                t1.commit().await?;
                t2.commit().await
            };
            let err = CatalogError::Query(second.await.expect_err("both transactions committed"));
            assert!(err.is_retryable(), "{err}");

            // Writing transactions take turns: the second waits for the first and then sees
            // its commit.
            let mut first = c.begin_write().await.expect("first writer");
            sqlx::query(insert)
                .bind("w1")
                .execute(&mut *first)
                .await
                .expect("insert w1");
            let c2 = c.clone();
            let second = tokio::spawn(async move {
                let mut tx = c2.begin_write().await.expect("second writer");
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE name = 'w1'")
                    .fetch_one(&mut *tx)
                    .await
                    .expect("read");
                tx.commit().await.expect("commit");
                n
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!second.is_finished(), "two writers ran at once");
            first.commit().await.expect("commit first");
            assert_eq!(
                second.await.expect("join"),
                1,
                "the second writer saw the first"
            );
        }
    }
}

#[tokio::test]
async fn agents_upsert_and_touch() {
    let (_dir, c) = open().await;
    c.upsert_agent(&agent("prod-1")).await.expect("agent");
    let mut changed = agent("prod-1");
    changed.version = "0.2.0".into();
    c.upsert_agent(&changed).await.expect("update");
    c.touch_agent("prod-1", 5_000, -40).await.expect("touch");
    let agents = c.list_agents().await.expect("list");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].version, "0.2.0");
    assert_eq!(agents[0].last_seen_ms, 5_000);
    assert_eq!(agents[0].clock_skew_ms, -40);
}

#[tokio::test]
async fn targets_owned_by_another_agent_are_refused_alone() {
    let (_dir, c) = with_target().await;
    c.upsert_agent(&agent("prod-2")).await.expect("agent");
    let conflicts = c
        .register_targets("prod-2", "prod", &[decl("billing"), decl("orders")])
        .await
        .expect("register");
    assert_eq!(
        conflicts,
        vec![TargetConflict {
            target: "prod/orders".parse().expect("target"),
            owner: "prod-1".into()
        }]
    );
    // The free target is registered; only the owned one is refused (M6).
    let billing = c
        .get_target("prod/billing")
        .await
        .expect("get")
        .expect("registered");
    assert_eq!(billing.agent, "prod-2");
    let orders = c
        .get_target("prod/orders")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(orders.agent, "prod-1");
    // The owner may update its own target.
    let mut changed = decl("orders");
    changed.repository = "s3".into();
    assert!(
        c.register_targets("prod-1", "prod", &[changed])
            .await
            .expect("update")
            .is_empty()
    );
    let orders = c
        .get_target("prod/orders")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(orders.repository, "s3");
    assert_eq!(orders.name.to_string(), "prod/orders");
}

#[tokio::test]
async fn one_active_backup_per_target() {
    let (_dir, c) = with_target().await;
    let first = match c
        .insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert")
    {
        InsertJob::Inserted(j) => j,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.state, JobState::Queued);
    assert_eq!(first.requested_by, "alice");
    match c
        .insert_job(&new_job(J2, JobKind::Backup, "prod/orders", B2))
        .await
        .expect("insert")
    {
        InsertJob::ActiveBackupExists(j) => assert_eq!(j.id, J1),
        other => panic!("{other:?}"),
    }
    // Another target is fine; so is a verify of the same target.
    assert!(matches!(
        c.insert_job(&new_job(J2, JobKind::Backup, "prod/users", B2))
            .await
            .expect("insert"),
        InsertJob::Inserted(_)
    ));
    // Once the first ends, a new backup of the target may be queued.
    c.finish_job(
        J1,
        &Finish {
            state: JobState::Failed,
            finished_at_ms: 9,
            error: "boom".into(),
            detail: String::new(),
            database: None,
            report: Default::default(),
        },
    )
    .await
    .expect("finish")
    .expect("was unfinished");
    assert!(matches!(
        c.insert_job(&new_job(
            "20261127T233002Z-000003",
            JobKind::Backup,
            "prod/orders",
            "20261127T233002Z-b00003"
        ))
        .await
        .expect("insert"),
        InsertJob::Inserted(_)
    ));
}

#[tokio::test]
async fn cancels_asked_through_a_standby_wait_for_the_job_to_end() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    c.insert_job(&new_job(J2, JobKind::Backup, "prod/users", B2))
        .await
        .expect("insert");
    assert!(c.cancel_requests().await.expect("requests").is_empty());
    assert!(c.request_cancel(J1, "alice").await.expect("request"));
    assert!(c.mark_running(J1, 20).await.expect("run").is_some());
    assert_eq!(
        c.cancel_requests().await.expect("requests"),
        vec![(J1.to_owned(), "alice".to_owned())],
        "a running job keeps its request; the other job has none"
    );
    c.finish_job(J1, &success(30)).await.expect("finish");
    assert!(
        c.cancel_requests().await.expect("requests").is_empty(),
        "an ended job has nothing left to cancel"
    );
    assert!(
        !c.request_cancel(J1, "bob").await.expect("request"),
        "an ended job takes no request"
    );
}

#[tokio::test]
async fn job_for_unknown_target_is_refused_by_foreign_key() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/nope", B1))
        .await
        .expect_err("foreign key not enforced");
}

#[tokio::test]
async fn job_lifecycle_transitions_are_compare_and_set() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    assert!(c.mark_dispatched(J1, 10).await.expect("dispatch"));
    assert!(!c.mark_dispatched(J1, 11).await.expect("dispatch twice"));
    assert!(
        c.get_job(J1)
            .await
            .expect("get")
            .expect("job")
            .is_assigned()
    );
    assert!(c.undo_dispatch(J1).await.expect("undo"));
    assert!(
        !c.get_job(J1)
            .await
            .expect("get")
            .expect("job")
            .is_assigned()
    );
    assert!(c.mark_dispatched(J1, 12).await.expect("dispatch again"));

    assert!(
        c.set_progress(J1, &Progress::default())
            .await
            .expect("progress")
            .is_none(),
        "progress on a queued job"
    );
    let running = c.mark_running(J1, 20).await.expect("run").expect("queued");
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.started_at_ms, Some(20));
    assert!(c.mark_running(J1, 21).await.expect("run").is_none());
    let p = Progress {
        raw_bytes: 100,
        stored_bytes: 10,
        phase: "dumping".into(),
    };
    let with_progress = c
        .set_progress(J1, &p)
        .await
        .expect("progress")
        .expect("running");
    assert_eq!(with_progress.progress, p);
    assert_eq!(c.unfinished_jobs().await.expect("unfinished").len(), 1);
    assert_eq!(
        c.running_counts().await.expect("counts"),
        vec![(JobKind::Backup, 1)]
    );

    let done = c
        .finish_backup_job(J1, &success(30), &backup(B1, J1, 30))
        .await
        .expect("finish")
        .expect("was running");
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.finished_at_ms, Some(30));
    assert!(c.unfinished_jobs().await.expect("unfinished").is_empty());
    assert!(
        c.finish_job(J1, &success(31))
            .await
            .expect("again")
            .is_none()
    );
}

#[tokio::test]
async fn replayed_backup_result_adds_no_second_row() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    c.mark_running(J1, 20).await.expect("run");
    let b = backup(B1, J1, 30);
    assert!(
        c.finish_backup_job(J1, &success(30), &b)
            .await
            .expect("first")
            .is_some()
    );
    assert!(
        c.finish_backup_job(J1, &success(40), &b)
            .await
            .expect("replay is not an error")
            .is_none()
    );
    let all = c.list_backups(None, 100).await.expect("list");
    assert_eq!(all, vec![b.clone()]);
    assert_eq!(c.get_backup(B1).await.expect("get"), Some(b));
    assert_eq!(
        c.get_job(J1)
            .await
            .expect("get")
            .expect("job")
            .finished_at_ms,
        Some(30)
    );
}

#[tokio::test]
async fn failed_backup_insert_rolls_back_the_job_update() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    c.mark_running(J1, 20).await.expect("run");
    let mut bad = backup(B1, J1, 30);
    bad.raw_size = 0; // violates the CHECK constraint
    c.finish_backup_job(J1, &success(30), &bad)
        .await
        .expect_err("zero size accepted");
    let job = c.get_job(J1).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Running, "job update not rolled back");
    assert!(c.list_backups(None, 10).await.expect("list").is_empty());
}

#[tokio::test]
async fn verify_result_updates_backup_in_the_same_transaction() {
    let (_dir, c) = with_target().await;
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    c.mark_running(J1, 20).await.expect("run");
    c.finish_backup_job(J1, &success(30), &backup(B1, J1, 30))
        .await
        .expect("finish");
    c.insert_job(&new_job(J2, JobKind::Verify, "prod/orders", B1))
        .await
        .expect("insert verify");
    c.mark_running(J2, 40).await.expect("run");
    let outcome = VerifyOutcome {
        status: VerifyStatus::Corrupt,
        detail: "stored sha256 mismatch".into(),
        verified_at_ms: 50,
    };
    let finish = Finish {
        state: JobState::Failed,
        finished_at_ms: 50,
        error: "backup is corrupt".into(),
        detail: "corrupt".into(),
        database: None,
        report: Default::default(),
    };
    let job = c
        .finish_verify_job(J2, &finish, B1, &outcome)
        .await
        .expect("finish")
        .expect("running");
    assert_eq!(job.state, JobState::Failed);
    let b = c.get_backup(B1).await.expect("get").expect("backup");
    assert_eq!(b.verify_status, VerifyStatus::Corrupt);
    assert_eq!(b.verified_at_ms, Some(50));
    assert_eq!(b.verify_detail, "stored sha256 mismatch");
    // A replay changes nothing.
    let ok = VerifyOutcome {
        status: VerifyStatus::Ok,
        detail: String::new(),
        verified_at_ms: 60,
    };
    assert!(
        c.finish_verify_job(J2, &success(60), B1, &ok)
            .await
            .expect("replay")
            .is_none()
    );
    let b = c.get_backup(B1).await.expect("get").expect("backup");
    assert_eq!(b.verify_status, VerifyStatus::Corrupt);
}

#[tokio::test]
async fn old_history_goes_but_what_health_and_backups_need_stays() {
    let (_dir, c) = with_target().await;
    // A backup's job: kept whatever its age.
    c.insert_job(&new_job(J1, JobKind::Backup, "prod/orders", B1))
        .await
        .expect("insert");
    c.mark_running(J1, 20).await.expect("run");
    c.finish_backup_job(J1, &success(30), &backup(B1, J1, 30))
        .await
        .expect("finish");
    // Three old checks (two succeeded, one failed) and a recent one on another target.
    let finish = |id: &'static str, kind, target: &'static str, state, at| {
        let c = &c;
        async move {
            c.insert_job(&new_job(id, kind, target, ""))
                .await
                .expect("insert");
            c.mark_running(id, at - 1).await.expect("run");
            c.finish_job(
                id,
                &Finish {
                    state,
                    ..success(at)
                },
            )
            .await
            .expect("finish");
        }
    };
    finish(
        "c-old-1",
        JobKind::Check,
        "prod/orders",
        JobState::Succeeded,
        100,
    )
    .await;
    finish(
        "c-old-2",
        JobKind::Check,
        "prod/orders",
        JobState::Succeeded,
        200,
    )
    .await;
    finish(
        "c-old-3",
        JobKind::Check,
        "prod/orders",
        JobState::Failed,
        150,
    )
    .await;
    finish(
        "c-new-1",
        JobKind::Check,
        "prod/users",
        JobState::Succeeded,
        9_000,
    )
    .await;
    finish(
        "c-new-2",
        JobKind::Check,
        "prod/users",
        JobState::Succeeded,
        9_500,
    )
    .await;
    for at in [50, 9_000] {
        c.insert_audit(&crate::audit::AuditEntry {
            at_ms: at,
            actor: "operator/alice".into(),
            role: "admin".into(),
            action: "start_backup".into(),
            object: "prod/orders".into(),
            outcome: crate::audit::AuditOutcome::Ok,
            reason: String::new(),
        })
        .await
        .expect("audit");
    }

    // Two jobs per statement: the pass walks the jobs' time index window by window.
    let n = c
        .prune_history_in_windows(5_000, 5_000, 2)
        .await
        .expect("prune");
    assert_eq!((n.jobs, n.audit), (1, 1), "{n:?}");
    for kept in [J1, "c-old-2", "c-old-3", "c-new-1", "c-new-2"] {
        assert!(
            c.get_job(kept).await.expect("get").is_some(),
            "{kept} removed"
        );
    }
    assert!(c.get_job("c-old-1").await.expect("get").is_none());
    assert!(c.get_backup(B1).await.expect("get").is_some());
    let audit = c
        .list_audit(&crate::audit::AuditFilter::default())
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.at_ms, 9_000);
    // Idempotent.
    let again = c.prune_history(5_000, 5_000).await.expect("prune");
    assert_eq!(again, HistoryPruned::default());
}

#[path = "copies_tests.rs"]
mod copies;
#[path = "keys_tests.rs"]
mod keys;
#[path = "lists_tests.rs"]
mod lists;

#[tokio::test]
async fn job_notices_reach_the_other_coordinators_listeners() {
    let (_dir, catalog, settings) = super::testing::open_with_settings().await;
    let Some(settings) = settings else {
        // SQLite has one coordinator per file: a notice goes nowhere, and is no error.
        catalog
            .notify_job("coord-a job-1 queued")
            .await
            .expect("a notice on SQLite");
        return;
    };
    let mut listener = settings.listen_jobs().await.expect("listen");
    for payload in ["coord-a job-1 queued", "coord-a job-1 succeeded"] {
        catalog.notify_job(payload).await.expect("notify");
    }
    for want in ["coord-a job-1 queued", "coord-a job-1 succeeded"] {
        let notice = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
            .await
            .expect("a notice within 10 s")
            .expect("receive a notice");
        assert_eq!(notice.channel(), super::JOBS_CHANNEL);
        assert_eq!(notice.payload(), want);
    }
}
