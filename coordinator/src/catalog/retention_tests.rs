//! Migration 2 on a populated catalog, the scheduler's compare-and-set, and the two-phase
//! delete, against a real SQLite file.

use sqlx::{
    Row, SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::SqlitePoolOptions,
};

use super::*;
use crate::catalog::{InsertJob, TickOutcome};
use crate::{
    model::{AgentRecord, Engine, JobKind, JobState, TargetDecl},
    schedule::{RunOutcome, ScheduleKind, ScheduleRun, StoredSchedule},
};

use crate::catalog::testing::open;

async fn with_target(c: &Catalog) {
    c.upsert_agent(&AgentRecord {
        name: "prod-1".into(),
        environment: "prod".into(),
        version: "0.1.0".into(),
        last_seen_ms: 1,
        clock_skew_ms: 0,
        max_concurrent_jobs: 2,
    })
    .await
    .expect("agent");
    c.register_targets(
        "prod-1",
        "prod",
        &[TargetDecl {
            encryption: None,
            copy_to: Vec::new(),
            name: "orders".into(),
            engine: Engine::Postgres,
            provider: "postgres".into(),
            repository: "local".into(),
            database: "orders".into(),
        }],
    )
    .await
    .expect("targets");
}

fn job(id: &str, kind: JobKind, backup_id: &str) -> NewJob {
    NewJob {
        decrypt: false,
        rotation: None,
        repository: String::new(),
        id: id.into(),
        kind,
        target: "prod/orders".parse().expect("target"),
        agent: "prod-1".into(),
        backup_id: (!backup_id.is_empty()).then(|| backup_id.parse().expect("a backup id")),
        requested_by: "scheduler".into(),
        created_at_ms: 1_000,
        restore: None,
        export_path: None,
    }
}

fn run(slot: i64) -> ScheduleRun {
    ScheduleRun {
        target: "prod/orders".into(),
        kind: ScheduleKind::Backup,
        scheduled_at_ms: slot,
        decided_at_ms: slot + 5,
        outcome: RunOutcome::Started,
        job_id: Some("20261128T020000Z-000001".into()),
        reason: String::new(),
    }
}

#[tokio::test]
async fn a_tick_is_recorded_once_whoever_races_for_it() {
    let (_dir, c) = open().await;
    with_target(&c).await;
    c.upsert_schedule(
        &StoredSchedule {
            target: "prod/orders".into(),
            cron: "30 2 * * *".into(),
            timezone: "UTC".into(),
            jitter_secs: 0,
            kind: ScheduleKind::Backup,
            cover_secs: 0,
            drill_into: String::new(),
            updated_by: "alice".into(),
            updated_at_ms: 100,
        },
        100,
    )
    .await
    .expect("set");
    let j = job(
        "20261128T020000Z-000001",
        JobKind::Backup,
        "20261128T020000Z-0000b1",
    );
    let first = c
        .record_schedule_tick(100, &run(1_000), std::slice::from_ref(&j))
        .await
        .expect("tick");
    assert!(
        matches!(first, TickOutcome::Recorded(_, ref jobs) if jobs.len() == 1),
        "{first:?}"
    );
    // A second pass (or coordinator) with the same view of the cursor does nothing.
    let mut j2 = j.clone();
    j2.id = "20261128T020000Z-000002".into();
    let second = c
        .record_schedule_tick(100, &run(1_000), std::slice::from_ref(&j2))
        .await
        .expect("tick");
    assert_eq!(second, TickOutcome::AlreadyHandled);
    assert!(c.get_job(&j2.id).await.expect("get").is_none());

    // The next occurrence while the first backup is still queued: skipped, with the reason.
    let mut r = run(2_000);
    r.job_id = Some(j2.id.clone());
    let third = c
        .record_schedule_tick(1_000, &r, std::slice::from_ref(&j2))
        .await
        .expect("tick");
    let TickOutcome::Recorded(rec, created) = third else {
        panic!("{third:?}")
    };
    assert!(created.is_empty(), "{created:?}");
    assert_eq!(rec.outcome, RunOutcome::Skipped);
    assert!(rec.reason.contains(&j.id), "{rec:?}");
    let last = c.last_schedule_runs().await.expect("runs");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].scheduled_at_ms, 2_000);

    // Paused: the cursor does not move.
    c.set_schedule_paused("prod/orders", ScheduleKind::Backup, true, "olga", 3_000)
        .await
        .expect("pause");
    let paused = c
        .record_schedule_tick(2_000, &run(3_000), &[])
        .await
        .expect("tick");
    assert_eq!(paused, TickOutcome::AlreadyHandled);
    // Resuming counts from now on.
    c.set_schedule_paused("prod/orders", ScheduleKind::Backup, false, "olga", 9_000)
        .await
        .expect("resume");
    let st = c.schedule_states().await.expect("state");
    assert_eq!((st[0].cursor_ms, st[0].paused), (9_000, false));
}

#[tokio::test]
async fn migration_2_keeps_existing_jobs_and_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        // A catalog written by the previous version: migration 1 only.
        let pool = SqlitePoolOptions::new().connect(&url).await.expect("open");
        Migrator::with_migrations(vec![Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("../../migrations/0001_initial.sql").into_sql_str(),
            false,
        )])
        .run(&pool)
        .await
        .expect("migration 1");
        for sql in [
            "INSERT INTO agents (name, environment, version, last_seen_ms) \
             VALUES ('prod-1', 'prod', '0.1', 1)",
            "INSERT INTO targets VALUES ('prod/orders', 'prod', 'orders', 'prod-1', 'postgres', \
             'postgres', 'local', 'orders')",
            "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
             created_at_ms) VALUES ('j1', 'backup', 'succeeded', 'prod/orders', 'prod-1', '20261128T010001Z-0000b1', \
             'alice', 5), ('j2', 'backup', 'queued', 'prod/orders', 'prod-1', '20261128T010002Z-0000b2', 'alice', 6)",
            "INSERT INTO backups VALUES ('20261128T010001Z-0000b1', 'prod/orders', 'prod', 'prod-1', 'local', \
             'postgres', 'postgres', 'orders', '15', 'x', 'pg_dump', '15', 'custom', 'zstd', 3, \
             10, 5, 'a', 'b', 1, 2, '[]', 'k', 'm', 'unverified', NULL, '', 'j1')",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect(sql);
        }
        pool.close().await;
    }
    let c = Catalog::open_sqlite(&path).await.expect("migrate to 2");
    assert_eq!(
        c.get_job("j1").await.expect("j1").expect("j1").state,
        JobState::Succeeded
    );
    assert_eq!(c.unfinished_jobs().await.expect("jobs").len(), 1);
    assert!(
        c.get_backup("20261128T010001Z-0000b1")
            .await
            .expect("20261128T010001Z-0000b1")
            .is_some()
    );
    let problems = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&c.pool)
        .await
        .expect("fk check");
    assert!(problems.is_empty());
    let fk: i64 = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(&c.pool)
        .await
        .expect("pragma")
        .try_get(0)
        .expect("value");
    assert_eq!(fk, 1, "foreign keys are on again");
    // The one-active-backup rule survived the table rebuild.
    let dup = c
        .insert_job(&job("j3", JobKind::Backup, "20261128T010003Z-0000b3"))
        .await
        .expect("insert");
    assert!(matches!(dup, InsertJob::ActiveBackupExists(_)), "{dup:?}");
    // The new kinds are accepted.
    c.insert_job(&job("j4", JobKind::Delete, "20261128T010001Z-0000b1"))
        .await
        .expect("delete job");
    c.close().await;
    // Opening again applies nothing twice.
    Catalog::open_sqlite(&path)
        .await
        .expect("reopen")
        .close()
        .await;
}

#[tokio::test]
async fn two_phase_delete() {
    let (_dir, c) = open().await;
    with_target(&c).await;
    let bj = job("jb", JobKind::Backup, "20261128T010001Z-0000b1");
    c.insert_job(&bj).await.expect("backup job");
    sqlx::query(
        "INSERT INTO backups VALUES ('20261128T010001Z-0000b1', 'prod/orders', 'prod', 'prod-1', 'local', \
         'postgres', 'postgres', 'orders', '15', 'x', 'pg_dump', '15', 'custom', 'zstd', 3, \
         10, 5, 'a', 'b', 1, 2, '[]', 'k', 'm', 'unverified', NULL, '', 'jb', '', '', NULL, 2)",
    )
    .execute(&c.pool)
    .await
    .expect("backup");

    // Pinned: never marked.
    let pin = Pin {
        pinned_by: "olga".into(),
        pinned_at_ms: 5,
        reason: "audit".into(),
    };
    assert_eq!(
        c.pin_backup("20261128T010001Z-0000b1", &pin)
            .await
            .expect("pin"),
        PinOutcome::Pinned
    );
    let d1 = job("jd1", JobKind::Delete, "20261128T010001Z-0000b1");
    assert_eq!(
        c.mark_delete(&d1, "alice", 10).await.expect("mark"),
        MarkDelete::Pinned
    );
    assert!(
        c.unpin_backup("20261128T010001Z-0000b1")
            .await
            .expect("unpin")
    );

    let MarkDelete::Queued(q) = c.mark_delete(&d1, "alice", 10).await.expect("mark") else {
        panic!("not queued")
    };
    assert_eq!(q.kind, JobKind::Delete);
    let d2 = job("jd2", JobKind::Delete, "20261128T010001Z-0000b1");
    assert_eq!(
        c.mark_delete(&d2, "alice", 11).await.expect("mark"),
        MarkDelete::InProgress("jd1".into())
    );
    assert_eq!(
        c.pin_backup("20261128T010001Z-0000b1", &pin)
            .await
            .expect("pin"),
        PinOutcome::Deleting
    );
    assert!(c.stalled_deletions().await.expect("stalled").is_empty());

    // The agent failed it: the mark stays, and the delete is stalled (to resume).
    let failed = Finish {
        state: JobState::Failed,
        finished_at_ms: 20,
        error: "storage down".into(),
        detail: String::new(),
        database: None,
        report: Default::default(),
    };
    c.finish_job("jd1", &failed).await.expect("fail");
    assert!(
        c.get_backup("20261128T010001Z-0000b1")
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(c.stalled_deletions().await.expect("stalled").len(), 1);

    let MarkDelete::Queued(_) = c.mark_delete(&d2, "alice", 30).await.expect("resume") else {
        panic!("not resumed")
    };
    let ok = Finish {
        state: JobState::Succeeded,
        finished_at_ms: 40,
        error: String::new(),
        detail: "deleted".into(),
        database: None,
        report: Default::default(),
    };
    let done = c
        .finish_delete_job("jd2", &ok, "20261128T010001Z-0000b1")
        .await
        .expect("finish")
        .expect("job");
    assert_eq!(done.state, JobState::Succeeded);
    assert!(
        c.get_backup("20261128T010001Z-0000b1")
            .await
            .expect("get")
            .is_none()
    );
    assert!(c.deleting_backups().await.expect("marks").is_empty());
    // A replayed result changes nothing.
    assert!(
        c.finish_delete_job("jd2", &ok, "20261128T010001Z-0000b1")
            .await
            .expect("again")
            .is_none()
    );
}

/// Which backups get a new pin job so their marker matches the catalog: pinned without any
/// pin job, or whose latest pin job failed long enough ago; never one with a pin job in
/// flight, one marked for deletion, or one whose latest pin job succeeded.
#[tokio::test]
async fn pin_markers_to_sync() {
    let (_dir, c) = open().await;
    with_target(&c).await;
    let ended = |state, at| Finish {
        state,
        finished_at_ms: at,
        error: String::new(),
        detail: String::new(),
        database: None,
        report: Default::default(),
    };
    for b in [
        "20261128T010001Z-0000b1",
        "20261128T010002Z-0000b2",
        "20261128T010003Z-0000b3",
        "20261128T010004Z-0000b4",
        "20261128T010005Z-0000b5",
        "20261128T010006Z-0000b6",
        "20261128T010007Z-0000b7",
        "20261128T010008Z-0000b8",
    ] {
        let jb = format!("j{b}");
        c.insert_job(&job(&jb, JobKind::Backup, b))
            .await
            .expect("backup job");
        c.finish_job(&jb, &ended(JobState::Succeeded, 2))
            .await
            .expect("finish backup job");
        sqlx::query(
            "INSERT INTO backups VALUES ($1, 'prod/orders', 'prod', 'prod-1', 'local', \
             'postgres', 'postgres', 'orders', '15', 'x', 'pg_dump', '15', 'custom', 'zstd', 3, \
             10, 5, 'a', 'b', 1, 2, '[]', 'k', 'm', 'unverified', NULL, '', $2, '', '', NULL, 2)",
        )
        .bind(b)
        .bind(&jb)
        .execute(&c.pool)
        .await
        .expect("backup");
    }
    let pin = Pin {
        pinned_by: "olga".into(),
        pinned_at_ms: 5,
        reason: "audit".into(),
    };
    // A pin job of `b` created at `at`, ended as `state` at `at + 10` (None: still queued).
    let pin_job = |id: &'static str, b: &'static str, at: i64, state: Option<JobState>| {
        let c = c.clone();
        async move {
            let mut j = job(id, JobKind::Pin, b);
            j.created_at_ms = at;
            c.insert_job(&j).await.expect("pin job");
            if let Some(s) = state {
                c.finish_job(id, &ended(s, at + 10)).await.expect("finish");
            }
        }
    };
    // b1: pinned before markers existed (no pin job at all).
    c.pin_backup("20261128T010001Z-0000b1", &pin)
        .await
        .expect("pin");
    // b2: pinned, its marker written.
    c.pin_backup("20261128T010002Z-0000b2", &pin)
        .await
        .expect("pin");
    pin_job(
        "p2",
        "20261128T010002Z-0000b2",
        100,
        Some(JobState::Succeeded),
    )
    .await;
    // b3: pinned, the marker job failed at 110.
    c.pin_backup("20261128T010003Z-0000b3", &pin)
        .await
        .expect("pin");
    pin_job("p3", "20261128T010003Z-0000b3", 100, Some(JobState::Failed)).await;
    // b4: pinned, a marker job queued.
    c.pin_backup("20261128T010004Z-0000b4", &pin)
        .await
        .expect("pin");
    pin_job("p4", "20261128T010004Z-0000b4", 100, None).await;
    // b5: unpinned, the job removing the marker was cancelled after the pin's succeeded.
    pin_job(
        "p5a",
        "20261128T010005Z-0000b5",
        100,
        Some(JobState::Succeeded),
    )
    .await;
    pin_job(
        "p5b",
        "20261128T010005Z-0000b5",
        200,
        Some(JobState::Cancelled),
    )
    .await;
    // b6: a failed marker job, then a successful one.
    c.pin_backup("20261128T010006Z-0000b6", &pin)
        .await
        .expect("pin");
    pin_job(
        "p6a",
        "20261128T010006Z-0000b6",
        100,
        Some(JobState::Failed),
    )
    .await;
    pin_job(
        "p6b",
        "20261128T010006Z-0000b6",
        200,
        Some(JobState::Succeeded),
    )
    .await;
    // b7: never pinned. b8: its marker job failed, but it is being deleted.
    pin_job("p8", "20261128T010008Z-0000b8", 100, Some(JobState::Failed)).await;
    let MarkDelete::Queued(_) = c
        .mark_delete(
            &job("d8", JobKind::Delete, "20261128T010008Z-0000b8"),
            "alice",
            300,
        )
        .await
        .expect("mark")
    else {
        panic!("not queued")
    };

    // Failures too recent to retry.
    assert_eq!(
        c.pin_markers_to_sync(100).await.expect("sync"),
        ["20261128T010001Z-0000b1"]
    );
    // b3's failure (at 110) is old enough; b5's cancel (at 210) is not yet.
    assert_eq!(
        c.pin_markers_to_sync(200).await.expect("sync"),
        ["20261128T010001Z-0000b1", "20261128T010003Z-0000b3"]
    );
    assert_eq!(
        c.pin_markers_to_sync(1_000).await.expect("sync"),
        [
            "20261128T010001Z-0000b1",
            "20261128T010003Z-0000b3",
            "20261128T010005Z-0000b5"
        ]
    );
    // Once a job is queued for it, a backup is left alone.
    pin_job("p1", "20261128T010001Z-0000b1", 400, None).await;
    assert_eq!(
        c.pin_markers_to_sync(1_000).await.expect("sync"),
        ["20261128T010003Z-0000b3", "20261128T010005Z-0000b5"]
    );
}

#[tokio::test]
async fn migration_10_keeps_backup_schedules_their_cursors_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        // A catalog written by the previous version: migrations 1 to 9.
        let pool = SqlitePoolOptions::new().connect(&url).await.expect("open");
        let old: Vec<Migration> = crate::catalog::migrator()
            .migrations
            .iter()
            .take(9)
            .cloned()
            .collect();
        Migrator::with_migrations(old)
            .run(&pool)
            .await
            .expect("migrations 1-9");
        for sql in [
            "INSERT INTO agents (name, environment, version, last_seen_ms) \
             VALUES ('prod-1', 'prod', '0.1', 1)",
            "INSERT INTO targets (full_name, environment, name, agent, engine, provider, \
             repository, database_name) VALUES ('prod/orders', 'prod', 'orders', 'prod-1', \
             'postgres', 'postgres', 'local', 'orders')",
            "INSERT INTO schedules (target, cron, timezone, jitter_secs, kind, updated_by, \
             updated_at_ms) VALUES ('prod/orders', '30 2 * * *', 'Europe/Berlin', 600, 'backup', \
             'alice', 7)",
            "INSERT INTO schedule_state (target, cursor_ms, paused, paused_by, paused_at_ms) \
             VALUES ('prod/orders', 1234, 1, 'olga', 99)",
            "INSERT INTO schedule_runs (target, scheduled_at_ms, decided_at_ms, outcome, job_id, \
             reason) VALUES ('prod/orders', 1000, 1005, 'started', 'j1', '')",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect(sql);
        }
        pool.close().await;
    }
    let c = Catalog::open_sqlite(&path).await.expect("migrate to 10");
    let s = c.list_schedules().await.expect("schedules");
    assert_eq!(s.len(), 1);
    assert_eq!(
        (
            s[0].kind,
            s[0].cron.as_str(),
            s[0].jitter_secs,
            s[0].cover_secs
        ),
        (ScheduleKind::Backup, "30 2 * * *", 600, 0)
    );
    let st = c.schedule_states().await.expect("state");
    assert_eq!(
        (
            st[0].kind,
            st[0].cursor_ms,
            st[0].paused,
            st[0].paused_by.as_str()
        ),
        (ScheduleKind::Backup, 1234, true, "olga")
    );
    let runs = c
        .schedule_runs("prod/orders", None, 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].kind, runs[0].job_id.as_deref()),
        (ScheduleKind::Backup, Some("j1"))
    );
    // A verify schedule now sits beside it.
    c.upsert_schedule(
        &StoredSchedule {
            target: "prod/orders".into(),
            cron: "0 5 * * *".into(),
            timezone: String::new(),
            jitter_secs: 0,
            kind: ScheduleKind::Verify,
            cover_secs: 7 * 86_400,
            drill_into: String::new(),
            updated_by: "alice".into(),
            updated_at_ms: 8,
        },
        2_000,
    )
    .await
    .expect("verify schedule");
    assert_eq!(c.list_schedules().await.expect("schedules").len(), 2);
    assert!(
        c.delete_schedule("prod/orders", ScheduleKind::Verify)
            .await
            .expect("delete")
    );
    assert_eq!(
        c.list_schedules().await.expect("schedules")[0].kind,
        ScheduleKind::Backup
    );
}
