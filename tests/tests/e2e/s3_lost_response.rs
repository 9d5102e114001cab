//! Item 14 (review M10) and the friction item "a completed upload whose job failed is cleaned
//! up by the job": an S3 write that succeeded on the server but whose answer was lost (the
//! SDK's retry then meets a 412 or a finished upload) must not fail the backup or delete the
//! data of a backup whose manifest exists. Through the fault proxy in front of a real s3s-fs:
//! each lost answer below leaves a complete backup (data and manifest stored) that restores to
//! the same data. And when the job does fail after its multipart upload completed, it removes
//! the data object itself instead of leaving it for the janitor.

use lifeboat_e2e::fixtures::{load_bulk, load_noise};
use lifeboat_e2e::s3proxy::{Action, Rule};
use lifeboat_e2e::sandbox::{S3Env, find_str};
use lifeboat_e2e::{Sandbox, SandboxTarget, assert_same_data};

fn s3(s: &Sandbox) -> &S3Env {
    s.s3.as_ref().expect("an s3 sandbox")
}

/// Backs up `target` with `rules` in the proxy; the backup must succeed, both objects must be
/// stored, the proxy must have dropped an answer, and a restore must give the same data.
fn survives(s: &Sandbox, target: &str, what: &str, rules: Vec<Rule>, restore_as: &str) {
    for r in rules {
        s3(s).proxy.add(r);
    }
    let out = s.backup_run(target);
    let log = s3(s).proxy.log();
    s3(s).proxy.clear();
    assert_eq!(
        out.code, 0,
        "{what}: a lost answer must not fail the backup: {out}\nproxy: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("DropResponse")),
        "{what}: the proxy dropped no answer: {log:#?}"
    );
    let id = find_str(&out.json(), "backup_id").expect("backup_id");
    let rec = s.backup_show(&id);
    for key in ["data_key", "manifest_key"] {
        let k = find_str(&rec, key).expect(key);
        assert!(
            s3(s).object_path(&k).is_file(),
            "{what}: {k} is not in the bucket"
        );
    }
    s.admin
        .run_json(&["backup", "verify", &id, "--wait"])
        .assert_ok();
    s.restore(&id, restore_as, &[]).assert_ok();
    assert_same_data(&s.pg, target, restore_as, s.dir.path());
}

#[test]
fn lost_answers_leave_a_complete_backup() {
    if std::env::var_os("LIFEBOAT_S3S_FS").is_none() {
        eprintln!("skipped: LIFEBOAT_S3S_FS is not set");
        return;
    }
    let s = Sandbox::builder("s3-lost-response")
        .s3(&["part_size_mib = 5", "max_attempts = 3"])
        .target(SandboxTarget::new("small"))
        .target(SandboxTarget::new("big"))
        .build();
    load_bulk(&s.pg, "small", "rows", 2000);
    load_noise(&s.pg, "big", "blobs", 12_000);

    // The manifest's PUT is stored, its answer lost: the retry's 412 is our own manifest.
    survives(
        &s,
        "small",
        "manifest PUT",
        vec![
            Rule::new(Action::DropResponse)
                .method("PUT")
                .path("manifest.json")
                .times(1),
        ],
        "copy_manifest",
    );
    // The same, where the manifest's ETag cannot be compared (as with SSE-KMS): the job
    // reads the manifest back and finds the one it sent.
    survives(
        &s,
        "small",
        "manifest PUT, opaque ETag",
        vec![
            Rule::new(Action::DropResponse)
                .method("PUT")
                .path("manifest.json")
                .times(1),
            Rule::new(Action::OpaqueEtag)
                .method("HEAD")
                .path("manifest.json"),
        ],
        "copy_manifest_kms",
    );
    // A single-part data PUT: not "another agent is writing".
    survives(
        &s,
        "small",
        "data PUT",
        vec![
            Rule::new(Action::DropResponse)
                .method("PUT")
                .path("data.pgdump.zst")
                .times(1),
        ],
        "copy_data",
    );
    // The multipart upload's completion.
    survives(
        &s,
        "big",
        "multipart completion",
        vec![
            Rule::new(Action::DropResponse)
                .method("POST")
                .query("uploadId")
                .times(1),
        ],
        "copy_multipart",
    );
    s.shutdown();
}

/// Friction: the completion's answer is lost and the object cannot be shown to be ours (its
/// ETag does not compare), so the backup fails; the job removes the completed data object
/// itself (no manifest exists), leaving nothing under the backup's id.
#[test]
fn failed_job_removes_its_completed_upload() {
    if std::env::var_os("LIFEBOAT_S3S_FS").is_none() {
        eprintln!("skipped: LIFEBOAT_S3S_FS is not set");
        return;
    }
    let s = Sandbox::builder("s3-orphan-data")
        .s3(&["part_size_mib = 5", "max_attempts = 3"])
        .target(SandboxTarget::new("big"))
        .build();
    load_noise(&s.pg, "big", "blobs", 12_000);
    s3(&s).proxy.add(
        Rule::new(Action::DropResponse)
            .method("POST")
            .query("uploadId")
            .times(1),
    );
    s3(&s).proxy.add(
        Rule::new(Action::OpaqueEtag)
            .method("HEAD")
            .path("data.pgdump.zst"),
    );
    let out = s.backup_run("big");
    let log = s3(&s).proxy.log();
    s3(&s).proxy.clear();
    assert!(
        log.iter().any(|l| l.contains("DropResponse")),
        "the proxy dropped no answer: {log:#?}"
    );
    // No backup, and no object under its id: the data object was removed by the job.
    let (job, _) = s.assert_backup_failed("big", &out);
    let id = find_str(&job, "backup_id").expect("backup_id");
    for file in ["data.pgdump.zst", "manifest.json"] {
        let path = s3(&s).object_path(&format!("{}/{id}/{file}", s.target("big")));
        assert!(
            !path.exists(),
            "{} was left in the bucket by the failed backup",
            path.display()
        );
    }
    assert!(
        log.iter().any(|l| l.starts_with("DELETE ")),
        "the job did not remove the data object: {log:#?}"
    );
    assert!(s3(&s).server.open_multipart_uploads().is_empty());
    s.shutdown();
}
