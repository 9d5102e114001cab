//! `lifeboat backup delete`: one backup, two-phase like prune, admin only, never a pinned
//! backup nor one of the newest good backups the policy keeps.

use lifeboat_proto::v1 as pb;
use tonic::Code;

use crate::harness::*;

async fn delete(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    id: &str,
) -> Result<pb::Job, tonic::Status> {
    control
        .delete_backup(pb::DeleteBackupRequest {
            repository: String::new(),
            backup_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn delete_refuses_pins_and_the_kept_floor_and_deletes_in_two_phases() {
    let c = Coordinator::builder()
        .config(
            "[[retention]]\nenvironment = \"prod\"\nkeep_last = 1\nmin_keep = 2\n\
             [prune]\nafter_backup = false\ncron = \"\"\n",
        )
        .start()
        .await;
    let mut alice = c.control("alice");
    let mut olga = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let job = start_backup(&mut olga, "prod/orders").await;
        agent.run_backup("prod", "prod-1").await;
        ids.push(job.backup_id);
    }
    agent.pin(&mut olga, &ids[0], "legal hold").await;

    // Operators may not delete.
    let e = delete(&mut olga, &ids[1])
        .await
        .expect_err("operator deleted");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("needs role admin"), "{e:?}");
    // A pinned backup.
    let e = delete(&mut alice, &ids[0])
        .await
        .expect_err("pinned deleted");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("pinned") && e.message().contains("legal hold"),
        "{e:?}"
    );
    // The two newest good backups: min_keep = 2.
    for id in &ids[2..] {
        let e = delete(&mut alice, id)
            .await
            .expect_err("kept floor deleted");
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("min_keep = 2"), "{e:?}");
        assert!(!e.message().contains("  "), "{e:?}");
    }
    let e = delete(&mut alice, "20261128T010001Z-00dead")
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);

    // ids[1]: marked (no new restore), then deleted by its agent.
    let job = delete(&mut alice, &ids[1]).await.expect("delete");
    assert_eq!(job.kind, i32::from(pb::JobKind::Delete));
    assert_eq!(job.requested_by, "alice");
    let b = alice
        .get_backup(pb::GetBackupRequest {
            backup_id: ids[1].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(b.deleting, "{b:?}");
    let spec = agent.expect_start().await;
    assert_eq!(spec.job_id, job.job_id);
    agent.succeed(&spec, deleted()).await;
    let gone = alice
        .get_backup(pb::GetBackupRequest {
            backup_id: ids[1].clone(),
        })
        .await
        .expect_err("deleted backup still listed");
    assert_eq!(gone.code(), Code::NotFound);
    let audit = alice
        .list_audit(pb::ListAuditRequest {
            action: "delete_backup".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let ok: Vec<_> = audit
        .iter()
        .filter(|a| a.outcome == "ok")
        .map(|a| (a.actor.as_str(), a.object.as_str()))
        .collect();
    assert_eq!(ok, vec![("operator/alice", ids[1].as_str())], "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|a| a.outcome == "denied" && a.actor == "operator/olga"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn without_a_policy_the_newest_good_backup_is_kept() {
    let c = Coordinator::builder()
        .config("[prune]\nafter_backup = false\ncron = \"\"\n")
        .start()
        .await;
    let mut alice = c.control("alice");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let job = start_backup(&mut alice, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    let e = delete(&mut alice, &job.backup_id)
        .await
        .expect_err("the only backup deleted");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("newest good backup"), "{e:?}");
}
