//! Which repository a job reads a backup from.

use super::*;
use crate::model::{Progress, VerifyStatus};

fn backup(status: VerifyStatus) -> Backup {
    let id = "20261127T233000Z-b00001";
    Backup {
        encryption: None,
        backup_id: id.parse().expect("a backup id"),
        target: "prod/orders".parse().expect("target"),
        agent: "prod-1".into(),
        repository: "local".into(),
        engine: crate::model::Engine::Postgres,
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
        finished_at_ms: 4_000,
        row_counts: Vec::new(),
        data_key: format!("prod/orders/{id}/data.pgdump.zst"),
        manifest_key: format!("prod/orders/{id}/manifest.json"),
        verify_status: status,
        verified_at_ms: None,
        verify_detail: String::new(),
        job_id: String::new(),
        wal_start: String::new(),
        globals: Default::default(),
    }
}

fn copy(repository: &str, state: CopyState, status: VerifyStatus) -> BackupCopy {
    BackupCopy {
        backup_id: "20261127T233000Z-b00001".into(),
        repository: repository.into(),
        state,
        job_id: String::new(),
        created_at_ms: 0,
        stored_at_ms: Some(1),
        verify_status: status,
        verified_at_ms: None,
        verify_detail: String::new(),
    }
}

fn job(kind: JobKind, repository: &str) -> Job {
    Job {
        decrypt: false,
        rotation: None,
        id: "20261127T233000Z-000001".into(),
        kind,
        state: JobState::Queued,
        target: "prod/orders".parse().expect("target"),
        agent: "prod-1".into(),
        backup_id: Some("20261127T233000Z-b00001".parse().expect("id")),
        requested_by: "alice".into(),
        created_at_ms: 0,
        dispatched_at_ms: None,
        started_at_ms: None,
        finished_at_ms: None,
        error: String::new(),
        progress: Progress::default(),
        detail: String::new(),
        restore: None,
        export: None,
        repository: repository.into(),
        report: Default::default(),
    }
}

fn at(l: &Located) -> (&str, Vec<&str>) {
    (
        l.backup.repository.as_str(),
        l.fallbacks.iter().map(String::as_str).collect(),
    )
}

#[test]
fn restores_read_the_backup_then_its_readable_copies() {
    use CopyState::{Copying, Deleting, Stored};
    use VerifyStatus::{Corrupt, Missing, Ok as Good, Unverified};
    let copies = [
        copy("offsite", Stored, Unverified),
        copy("vault", Stored, Corrupt),
        copy("cold", Copying, Unverified),
        copy("old", Deleting, Good),
        copy("tape", Stored, Good),
    ];
    let restore = job(JobKind::Restore, "");
    let l = locate(&backup(Good), &copies, &restore).expect("located");
    assert_eq!(at(&l), ("local", vec!["offsite", "tape"]));
    // The backup's own objects known missing: the first readable copy, then the rest.
    let l = locate(&backup(Missing), &copies, &restore).expect("located");
    assert_eq!(at(&l), ("offsite", vec!["tape"]));
    let l = locate(&backup(Corrupt), &copies, &job(JobKind::Export, "")).expect("located");
    assert_eq!(at(&l), ("offsite", vec!["tape"]));
    // Nothing known good: its own, for the agent's checks to say what is wrong.
    let l = locate(&backup(Corrupt), &copies[1..4], &restore).expect("located");
    assert_eq!(at(&l), ("local", vec![]));
}

#[test]
fn a_named_repository_is_used_alone_and_must_hold_the_backup() {
    use VerifyStatus::{Corrupt, Ok as Good};
    let copies = [
        copy("offsite", CopyState::Stored, Corrupt),
        copy("cold", CopyState::Copying, Good),
    ];
    // Forced, even to a copy known damaged: the operator asked for it.
    let l = locate(&backup(Good), &copies, &job(JobKind::Restore, "offsite")).expect("forced");
    assert_eq!(at(&l), ("offsite", vec![]));
    let l = locate(&backup(Good), &copies, &job(JobKind::Restore, "local")).expect("own");
    assert_eq!(at(&l), ("local", vec![]));
    let e = locate(&backup(Good), &copies, &job(JobKind::Verify, "cold")).expect_err("copying");
    assert!(e.contains("no copy in repository cold"), "{e}");
    let e = locate(&backup(Good), &copies, &job(JobKind::Delete, "nowhere")).expect_err("none");
    assert!(e.contains("no copy in repository nowhere"), "{e}");
    // Other jobs without a repository: the backup's own objects.
    let l = locate(&backup(Corrupt), &copies, &job(JobKind::Verify, "")).expect("verify");
    assert_eq!(at(&l), ("local", vec![]));
}

#[test]
fn a_copy_reads_a_healthy_source_other_than_its_destination() {
    use VerifyStatus::{Missing, Ok as Good, Unverified};
    let copies = [
        copy("offsite", CopyState::Stored, Good),
        copy("vault", CopyState::Stored, Unverified),
    ];
    let l = locate(&backup(Good), &copies, &job(JobKind::Copy, "tape")).expect("own");
    assert_eq!(at(&l), ("local", vec![]));
    let l = locate(&backup(Missing), &copies, &job(JobKind::Copy, "offsite")).expect("copy");
    assert_eq!(at(&l), ("vault", vec![]));
    let l = locate(
        &backup(Missing),
        &copies[..1],
        &job(JobKind::Copy, "offsite"),
    )
    .expect("own");
    assert_eq!(
        at(&l),
        ("local", vec![]),
        "no other source: the agent reports it missing"
    );
}
