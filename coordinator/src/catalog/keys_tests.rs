//! Encrypted backups in the catalog: their encryption kept and listed, the keys that protect
//! them counted, a rotation's result applied only where it is complete, and a version-15
//! catalog migrated with every job and backup kept.

use lifeboat_proto::domain::{Encryption, RotatedKey};

use super::*;

const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const R2: &str = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg";
const K1: &str = "0000000000000001";
const K2: &str = "0000000000000002";

fn encrypted(id: &str, job: &str, at: i64, keys: &[(&str, &str)]) -> Backup {
    let mut b = backup(id, job, at);
    b.data_key = format!("prod/orders/{id}/data.pgdump.zst.age");
    b.encryption = Some(Encryption {
        key_object: format!("prod/orders/{id}/key.age"),
        recipients: keys.iter().map(|(r, _)| (*r).to_owned()).collect(),
        key_ids: keys.iter().map(|(_, k)| (*k).to_owned()).collect(),
    });
    b
}

async fn record(c: &Catalog, job: &str, b: &Backup) {
    c.insert_job(&new_job(
        job,
        JobKind::Backup,
        "prod/orders",
        b.backup_id.as_str(),
    ))
    .await
    .expect("job");
    c.mark_running(job, 20).await.expect("run");
    c.finish_backup_job(job, &success(b.finished_at_ms), b)
        .await
        .expect("finish")
        .expect("recorded");
}

const B3: &str = "20261127T233002Z-b00003";
const J3: &str = "20261127T233002Z-000003";

#[tokio::test]
async fn encryption_is_kept_counted_and_rotated() {
    let (_dir, c) = with_target().await;
    record(&c, J1, &encrypted(B1, J1, 100, &[(R1, K1)])).await;
    record(&c, J2, &encrypted(B2, J2, 200, &[(R1, K1), (R2, K2)])).await;
    record(&c, J3, &backup(B3, J3, 300)).await;

    let b2 = c.get_backup(B2).await.expect("get").expect("kept");
    assert_eq!(b2.encryption.as_ref().expect("encrypted").key_ids, [K1, K2]);
    assert!(
        c.get_backup(B3)
            .await
            .expect("get")
            .expect("kept")
            .encryption
            .is_none()
    );

    let usage = c.key_usage(None).await.expect("usage");
    assert_eq!(usage.keys[K1].backups, 2);
    assert_eq!(
        (usage.keys[K1].oldest_ms, usage.keys[K1].newest_ms),
        (100, 200)
    );
    assert_eq!(usage.keys[K2].backups, 1);
    assert_eq!(usage.keys[K2].recipient, R2);
    assert_eq!(usage.plaintext["prod/orders"].backups, 1);
    assert!(
        c.key_usage(Some("prod/users"))
            .await
            .expect("usage")
            .keys
            .is_empty()
    );

    let items = c.encrypted_backups("prod/orders").await.expect("items");
    let ids: Vec<&str> = items.iter().map(|(b, _)| b.backup_id.as_str()).collect();
    assert_eq!(ids, [B2, B1], "newest first, plaintext left out");
    assert_eq!(items[0].1, ["local"]);

    // B1 rotated everywhere; B2 failed in one repository: it keeps its record.
    let rotated = |id: &str, repository: &str, error: &str| RotatedKey {
        backup_id: id.into(),
        repository: repository.into(),
        recipients: vec![R2.into()],
        key_ids: vec![K2.into()],
        changed: true,
        error: error.into(),
    };
    let (detail, failed) = crate::keys::apply_rotation(
        &c,
        &[
            rotated(B1, "local", ""),
            rotated(B2, "local", ""),
            rotated(B2, "offsite", "key.age is missing"),
        ],
        false,
    )
    .await
    .expect("apply");
    assert!(
        detail.contains("rotated the key objects of 1 backup"),
        "{detail}"
    );
    let failed = failed.expect("a failure is reported");
    assert!(
        failed.contains(B2) && failed.contains("offsite"),
        "{failed}"
    );
    let b1 = c.get_backup(B1).await.expect("get").expect("kept");
    let e = b1.encryption.expect("encrypted");
    assert_eq!(
        (e.key_ids.as_slice(), e.recipients.as_slice()),
        ([K2.to_owned()].as_slice(), [R2.to_owned()].as_slice())
    );
    assert_eq!(e.key_object, format!("prod/orders/{B1}/key.age"));
    let b2 = c.get_backup(B2).await.expect("get").expect("kept");
    assert_eq!(b2.encryption.expect("encrypted").key_ids, [K1, K2]);
    // Already rotated by a run whose result never arrived: recorded now, although unchanged.
    let mut done_before = rotated(B2, "local", "");
    done_before.changed = false;
    let (detail, failed) = crate::keys::apply_rotation(&c, &[done_before], false)
        .await
        .expect("apply");
    assert!(
        failed.is_none() && detail.contains("1 already had"),
        "{detail}"
    );
    let b2 = c.get_backup(B2).await.expect("get").expect("kept");
    assert_eq!(b2.encryption.expect("encrypted").key_ids, [K2]);
    // A dry run records nothing.
    let mut back = rotated(B2, "local", "");
    back.recipients = vec![R1.into()];
    back.key_ids = vec![K1.into()];
    let (detail, _) = crate::keys::apply_rotation(&c, &[back], true)
        .await
        .expect("apply");
    assert!(detail.contains("would rotate"), "{detail}");
    let b2 = c.get_backup(B2).await.expect("get").expect("kept");
    assert_eq!(b2.encryption.expect("encrypted").key_ids, [K2]);
}

/// A catalog written by the previous version (migrations up to 15) keeps its jobs (the
/// repository of a copy included) and backups through version 16's rebuild of the jobs table.
#[tokio::test]
async fn version_16_keeps_the_jobs_and_backups_of_version_15() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.db");
    catalog_of_version(
        &path,
        15,
        &[
            "INSERT INTO agents (name, environment, version, last_seen_ms, clock_skew_ms, \
         max_concurrent_jobs) VALUES ('prod-1', 'prod', '0.1.0', 1, 0, 2)",
            "INSERT INTO targets (full_name, environment, name, agent, engine, provider, \
         repository, database_name, copy_to) VALUES ('prod/orders', 'prod', 'orders', \
         'prod-1', 'postgres', 'postgres', 'local', 'orders', 'offsite')",
            "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
         created_at_ms, repository, allow_superuser) VALUES ('20261127T233000Z-000001', \
         'copy', 'queued', 'prod/orders', 'prod-1', '20261127T233000Z-b00001', 'alice', 5, \
         'offsite', 1)",
        ],
    )
    .await;
    let c = Catalog::open_sqlite(&path).await.expect("migrate to 16");
    let job = c.get_job(J1).await.expect("get").expect("kept");
    assert_eq!(
        (job.kind, job.repository.as_str()),
        (JobKind::Copy, "offsite")
    );
    assert!(job.rotation.is_none() && !job.decrypt);
    let t = c
        .get_target("prod/orders")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(t.copy_to, ["offsite"]);
    assert!(t.encryption.is_none());
    // The new kind is accepted, with its parameters.
    let mut rotate = new_job(
        "20261127T233001Z-000002",
        JobKind::RotateKeys,
        "prod/orders",
        "",
    );
    rotate.rotation = Some(crate::model::KeyRotation {
        add: vec![R2.into()],
        remove: vec![R1.into()],
        dry_run: true,
    });
    c.insert_job(&rotate).await.expect("a rotation job");
    let back = c.get_job(&rotate.id).await.expect("get").expect("kept");
    assert_eq!(back.rotation, rotate.rotation);
}
