//! Item 18 (review L8): a restore holds the backup it reads on the agent itself, so a delete of
//! that backup sent to the same agent (e.g. after the coordinator's lease on the restore
//! expired) is refused until the restore has ended. Drives the agent's job runner in-process
//! against a real PostgreSQL, a real pg_restore (held mid-stream) and a real fs repository.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_agent::repo::{ActiveWrites, MANIFEST_FILE, backup_dir_key};
use lifeboat_agent::runner::{Event, Runner};
use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::wrappers::{PgBinDir, pg_restore};
use lifeboat_e2e::{Sandbox, SandboxTarget, TestDir};
use lifeboat_proto as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn next_finished(events: &mut mpsc::UnboundedReceiver<Event>, job_id: &str) -> pb::JobResult {
    let wait = async {
        loop {
            match events.recv().await {
                Some(Event::Finished(r)) if r.job_id == job_id => return *r,
                Some(_) => {}
                None => panic!("runner event channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| panic!("job {job_id} did not finish"))
}

/// A delete of a backup that a restore on this agent is still reading is refused by the agent
/// itself (not only by the coordinator's dispatch), and runs once the restore has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_backup_being_restored_is_refused_on_the_agent() {
    let dir = TestDir::new("agent-restore-lock");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_restore", &pg_restore::stall_when_marked(64 * 1024, 120));
    let s = tokio::task::spawn_blocking(move || {
        let s = Sandbox::builder("agent-restore-lock")
            .dir(dir)
            .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
            .build();
        load_bulk(&s.pg, "app", "rows", 20_000);
        let rec = s.backup_ok("app");
        (s, bin, rec)
    })
    .await
    .expect("sandbox");
    let (mut s, bin, rec) = s;
    let id = find_str(&rec, "backup_id").expect("backup_id");
    // The sandbox's own agent stays away: this test drives a Runner in-process.
    s.agent.stop();

    let mut config = lifeboat_agent::load_config(s.agent.config_path()).expect("agent config");
    config.state_dir = s.dir.sub("runner-state");
    std::fs::create_dir_all(&config.state_dir).expect("state dir");
    let config = Arc::new(config);
    let dir_key = backup_dir_key("test", "app", &id);
    let manifest_path = s.backup_dir("app", &id).join(MANIFEST_FILE);
    let manifest = lifeboat_agent::manifest::Manifest::from_json(
        &std::fs::read(&manifest_path).expect("manifest"),
    )
    .expect("parse manifest");
    let record = pb::BackupRecord::from(
        &lifeboat_agent::backup::record_from_manifest(&manifest, &dir_key, String::new())
            .expect("a valid record"),
    );

    let shutdown = CancellationToken::new();
    let (runner, mut events) =
        Runner::new(config, ActiveWrites::default(), shutdown.clone()).expect("runner");
    let new_job = || lifeboat_common::ids::new_id(time::OffsetDateTime::now_utc());

    std::fs::write(bin.marker("slow"), b"").expect("arm the stall");
    let restore_id = new_job();
    runner.start(pb::JobSpec {
        job_id: restore_id.clone(),
        kind: pb::JobKind::Restore as i32,
        spec: Some(pb::job_spec::Spec::Restore(pb::RestoreSpec {
            backup: Some(record.clone()),
            target: "app".into(),
            database: "lock_copy".into(),
            ..Default::default()
        })),
    });
    let stalled = bin.marker("stalled");
    tokio::time::timeout(Duration::from_secs(60), async {
        while !stalled.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("pg_restore to stall mid-stream");

    let delete = |job_id: &str| pb::JobSpec {
        job_id: job_id.to_owned(),
        kind: pb::JobKind::Delete as i32,
        spec: Some(pb::job_spec::Spec::Delete(pb::DeleteSpec {
            backup: Some(record.clone()),
        })),
    };
    let delete_id = new_job();
    runner.start(delete(&delete_id));
    let r = next_finished(&mut events, &delete_id).await;
    assert_eq!(r.state, pb::JobState::Failed as i32, "{r:?}");
    assert!(
        r.error
            .contains(&format!("backup {id} is in use by job {restore_id}")),
        "the refusal must name the backup and the restore: {}",
        r.error
    );
    assert!(
        manifest_path.exists(),
        "the backup being restored was deleted under the restore"
    );

    // Once the restore has ended, the same delete runs.
    runner.cancel(&restore_id);
    let r = next_finished(&mut events, &restore_id).await;
    assert_ne!(r.state, pb::JobState::Succeeded as i32, "{r:?}");
    std::fs::remove_file(bin.marker("slow")).expect("disarm");
    let again = new_job();
    runner.start(delete(&again));
    let r = next_finished(&mut events, &again).await;
    assert_eq!(r.state, pb::JobState::Succeeded as i32, "{r:?}");
    assert!(!manifest_path.exists());
    shutdown.cancel();
    runner.shutdown().await;
    tokio::task::spawn_blocking(move || {
        assert!(!s.pg.database_exists("lock_copy"));
        s.shutdown();
    })
    .await
    .expect("teardown");
}
