//! Copies of backups: the row made with its copy job, stored or gone with its end, marked and
//! dropped by its delete, and promoted when the backup's own objects are deleted.

use super::*;

const B3: &str = "20261127T233002Z-b00003";

/// `orders` with backup `id` recorded by job `job`.
async fn with_backup(c: &Catalog, job: &str, id: &str) {
    c.insert_job(&new_job(job, JobKind::Backup, "prod/orders", id))
        .await
        .expect("job");
    c.mark_running(job, 20).await.expect("run");
    c.finish_backup_job(job, &success(30), &backup(id, job, 30))
        .await
        .expect("finish")
        .expect("recorded");
}

fn copy_job(id: &str, kind: JobKind, backup_id: &str, repository: &str) -> NewJob {
    let mut j = new_job(id, kind, "prod/orders", backup_id);
    j.repository = repository.into();
    j
}

fn failure(at: i64) -> Finish {
    Finish {
        state: JobState::Failed,
        error: "s3: AccessDenied".into(),
        ..success(at)
    }
}

#[tokio::test]
async fn a_copy_is_stored_with_its_job_and_gone_with_its_failure() {
    let (_dir, c) = with_target().await;
    with_backup(&c, J1, B1).await;

    let queued = c
        .insert_copy_job(&copy_job(J2, JobKind::Copy, B1, "offsite"), 40)
        .await
        .expect("copy");
    assert!(matches!(queued, InsertCopy::Queued(_)), "{queued:?}");
    let copies = c.copies_of(B1).await.expect("copies");
    assert_eq!(copies.len(), 1);
    assert_eq!(
        (copies[0].state, copies[0].job_id.as_str()),
        (CopyState::Copying, J2)
    );
    assert_eq!(
        c.insert_copy_job(
            &copy_job("20261127T233005Z-000005", JobKind::Copy, B1, "offsite"),
            41
        )
        .await
        .expect("again"),
        InsertCopy::InProgress(J2.into())
    );

    // A failed copy is no copy, and is one to make again.
    c.finish_job(J2, &failure(50)).await.expect("fail");
    assert!(c.copies_of(B1).await.expect("copies").is_empty());
    let failed = c
        .failed_copies("prod/orders", "offsite")
        .await
        .expect("failed");
    assert!(failed.contains(B1), "{failed:?}");

    let j3 = "20261127T233006Z-000006";
    c.insert_copy_job(&copy_job(j3, JobKind::Copy, B1, "offsite"), 60)
        .await
        .expect("copy again");
    c.mark_running(j3, 61).await.expect("run");
    c.finish_copy_job(j3, &success(70))
        .await
        .expect("finish")
        .expect("ended now");
    let copies = c.copies_of(B1).await.expect("copies");
    assert_eq!(copies[0].state, CopyState::Stored);
    assert_eq!(copies[0].stored_at_ms, Some(70));
    assert_eq!(copies[0].verify_status, VerifyStatus::Unverified);
    assert!(
        c.failed_copies("prod/orders", "offsite")
            .await
            .expect("failed")
            .is_empty(),
        "a copy that succeeded since is not retried"
    );
    assert_eq!(
        c.insert_copy_job(
            &copy_job("20261127T233007Z-000007", JobKind::Copy, B1, "offsite"),
            80
        )
        .await
        .expect("stored"),
        InsertCopy::AlreadyStored
    );
    assert_eq!(
        c.newest_copied("prod/orders", "offsite").await.expect("n"),
        Some(30)
    );
    assert_eq!(
        c.newest_copied("prod/orders", "other").await.expect("n"),
        None
    );

    // Its own verify: the copy's verdict, not the backup's.
    let v = "20261127T233008Z-000008";
    c.insert_job(&copy_job(v, JobKind::Verify, B1, "offsite"))
        .await
        .expect("verify");
    let outcome = VerifyOutcome {
        status: VerifyStatus::Corrupt,
        detail: "hash".into(),
        verified_at_ms: 90,
    };
    c.finish_copy_verify_job(v, &success(90), B1, "offsite", &outcome)
        .await
        .expect("verified");
    assert_eq!(
        c.copies_of(B1).await.expect("copies")[0].verify_status,
        VerifyStatus::Corrupt
    );
    assert_eq!(
        c.get_backup(B1)
            .await
            .expect("get")
            .expect("b")
            .verify_status,
        VerifyStatus::Unverified
    );
}

#[tokio::test]
async fn deleting_a_copy_is_two_phase_and_the_last_copy_outlives_its_backup() {
    let (_dir, c) = with_target().await;
    with_backup(&c, J1, B1).await;
    for (job, repo) in [
        ("20261127T233010Z-000010", "offsite"),
        ("20261127T233011Z-000011", "vault"),
    ] {
        c.insert_copy_job(&copy_job(job, JobKind::Copy, B1, repo), 40)
            .await
            .expect("copy");
        c.finish_copy_job(job, &success(45)).await.expect("stored");
    }

    // The copy in vault: marked with its delete job, dropped when the delete is done.
    let d = "20261127T233012Z-000012";
    let marked = c
        .mark_copy_delete(&copy_job(d, JobKind::Delete, B1, "vault"))
        .await
        .expect("mark");
    assert!(matches!(marked, MarkCopyDelete::Queued(_)), "{marked:?}");
    assert_eq!(
        c.mark_copy_delete(&copy_job(
            "20261127T233013Z-000013",
            JobKind::Delete,
            B1,
            "vault"
        ))
        .await
        .expect("again"),
        MarkCopyDelete::InProgress(d.into())
    );
    // Its job lost: the mark stays and the delete is resumed.
    c.finish_job(d, &failure(50)).await.expect("fail");
    assert_eq!(
        c.stalled_copy_deletions().await.expect("stalled"),
        vec![(B1.to_owned(), "vault".to_owned())]
    );
    let d2 = "20261127T233014Z-000014";
    c.mark_copy_delete(&copy_job(d2, JobKind::Delete, B1, "vault"))
        .await
        .expect("resume");
    c.finish_copy_delete_job(d2, &success(60), B1, "vault")
        .await
        .expect("deleted");
    let left: Vec<String> = c
        .copies_of(B1)
        .await
        .expect("copies")
        .into_iter()
        .map(|c| c.repository)
        .collect();
    assert_eq!(left, ["offsite"]);

    // The backup's own objects deleted: its copy takes their place.
    let del = "20261127T233015Z-000015";
    let marked = c
        .mark_delete(
            &new_job(del, JobKind::Delete, "prod/orders", B1),
            "retention",
            70,
        )
        .await
        .expect("mark");
    assert!(matches!(marked, MarkDelete::Queued(_)), "{marked:?}");
    c.finish_delete_job(del, &success(80), B1)
        .await
        .expect("deleted");
    let b = c
        .get_backup(B1)
        .await
        .expect("get")
        .expect("promoted, not gone");
    assert_eq!(b.repository, "offsite");
    assert!(c.copies_of(B1).await.expect("copies").is_empty());
    assert!(c.deleting_backups().await.expect("deleting").is_empty());

    // Without a copy, deleting the backup removes it.
    let del2 = "20261127T233016Z-000016";
    c.mark_delete(
        &new_job(del2, JobKind::Delete, "prod/orders", B1),
        "retention",
        90,
    )
    .await
    .expect("mark");
    c.finish_delete_job(del2, &success(95), B1)
        .await
        .expect("deleted");
    assert!(c.get_backup(B1).await.expect("get").is_none());
}

#[tokio::test]
async fn a_copy_of_a_backup_being_deleted_is_refused() {
    let (_dir, c) = with_target().await;
    with_backup(&c, J1, B3).await;
    c.mark_delete(
        &new_job(
            "20261127T233020Z-000020",
            JobKind::Delete,
            "prod/orders",
            B3,
        ),
        "retention",
        40,
    )
    .await
    .expect("mark");
    assert_eq!(
        c.insert_copy_job(
            &copy_job("20261127T233021Z-000021", JobKind::Copy, B3, "offsite"),
            41
        )
        .await
        .expect("copy"),
        InsertCopy::Gone
    );
}

/// A catalog written by the previous version (migrations up to 14) keeps every job column
/// through version 15's rebuild of the jobs table.
#[tokio::test]
async fn version_15_keeps_every_job_column_of_version_14() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.db");
    catalog_of_version(
        &path,
        14,
        &[
            "INSERT INTO agents (name, environment, version, last_seen_ms, clock_skew_ms, \
         max_concurrent_jobs) VALUES ('prod-1', 'prod', '0.1.0', 1, 0, 2)",
            "INSERT INTO targets (full_name, environment, name, agent, engine, provider, \
         repository, database_name) VALUES ('prod/orders', 'prod', 'orders', 'prod-1', \
         'postgres', 'postgres', 'local', 'orders')",
            "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
         created_at_ms, export_path, export_raw_bytes, export_raw_sha256, restore_tables, \
         into_schema, drill_of, globals, allow_superuser) VALUES \
         ('20261127T233000Z-000001', 'export', 'succeeded', 'prod/orders', 'prod-1', \
         '20261127T233000Z-b00001', 'alice', 5, '/var/backups/x/orders.pgdump', 42, \
         'cccc', '', '', '', '', 0)",
            "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
         created_at_ms, restore_tables, restore_schemas, into_schema, drill_of, globals, \
         allow_superuser) VALUES ('20261127T233001Z-000002', 'restore', 'queued', \
         'prod/orders', 'prod-1', '20261127T233000Z-b00001', 'alice', 6, 'public.orders', \
         '', 'restored_1', 'prod/orders', 'with', 1)",
        ],
    )
    .await;
    let c = Catalog::open_sqlite(&path).await.expect("migrate to 15");
    let export = c
        .get_job("20261127T233000Z-000001")
        .await
        .expect("get")
        .expect("kept");
    let written = export.export.expect("export").written.expect("written");
    assert_eq!(
        (written.raw_bytes, written.raw_sha256.as_str()),
        (42, "cccc")
    );
    assert_eq!(export.repository, "");
    let restore = c
        .get_job("20261127T233001Z-000002")
        .await
        .expect("get")
        .expect("kept")
        .restore
        .expect("a restore");
    assert_eq!(
        restore.drill_of.map(|t| t.to_string()).as_deref(),
        Some("prod/orders")
    );
    assert!(restore.allow_superuser);
    assert_eq!(
        restore.globals,
        lifeboat_proto::domain::GlobalsRestore::With
    );
    assert!(restore.partial.is_some(), "the partial restore is kept");
    let t = c
        .get_target("prod/orders")
        .await
        .expect("get")
        .expect("kept");
    assert!(t.copy_to.is_empty());
}

/// A verify schedule's run covers each stored copy like a backup of its own.
#[tokio::test]
async fn verify_runs_cover_copies_too() {
    use crate::schedule::{CronSpec, Schedule, ScheduleDef, ScheduleKind, Source};
    let (_dir, c) = with_target().await;
    with_backup(&c, J1, B1).await;
    let copy = "20261127T233030Z-000030";
    c.insert_copy_job(&copy_job(copy, JobKind::Copy, B1, "offsite"), 40)
        .await
        .expect("copy");
    c.finish_copy_job(copy, &success(45)).await.expect("stored");
    let target = c.get_target("prod/orders").await.expect("get").expect("t");
    let schedule = Schedule {
        target: "prod/orders".into(),
        def: ScheduleDef {
            spec: CronSpec::parse("0 5 * * *", "UTC").expect("valid"),
            jitter: std::time::Duration::ZERO,
            kind: ScheduleKind::Verify,
            cover: std::time::Duration::from_secs(86_400),
            drill_into: None,
        },
        source: Source::Target,
        paused: false,
        updated_by: "alice".into(),
        updated_at_ms: 0,
    };
    // Days later: both the backup and its copy are due.
    let now = 10 * 86_400_000;
    let (jobs, why) =
        crate::scheduler::verify::jobs_for_run(&c, &target, &schedule, now, "schedule/verify")
            .await
            .expect("plan");
    assert_eq!(why, None);
    let mut planned: Vec<(String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j.backup_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                j.repository.clone(),
            )
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            (B1.to_owned(), String::new()),
            (B1.to_owned(), "offsite".to_owned())
        ]
    );
}
