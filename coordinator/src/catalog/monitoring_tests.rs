//! Catalog tests for health snapshots, incidents and the audit log (real SQLite in a temp dir).
//! Rows are written with plain SQL so these tests do not depend on how jobs and backups are
//! created.

use super::*;
use crate::{
    alerts::model::{Event, IncidentKind, NewIncident, Severity},
    audit::{AuditEntry, AuditFilter, AuditOutcome},
    model::{AgentRecord, Engine, JobKind, JobState, TargetDecl},
};

use super::testing::open;

async fn with_targets(c: &Catalog, names: &[&str]) {
    c.upsert_agent(&AgentRecord {
        name: "prod-1".into(),
        environment: "prod".into(),
        version: "1".into(),
        last_seen_ms: 1,
        clock_skew_ms: 0,
        max_concurrent_jobs: 2,
    })
    .await
    .expect("agent");
    let decls: Vec<TargetDecl> = names
        .iter()
        .map(|n| TargetDecl {
            encryption: None,
            copy_to: Vec::new(),
            name: (*n).into(),
            engine: Engine::Postgres,
            provider: "postgres".into(),
            repository: "local".into(),
            database: (*n).into(),
        })
        .collect();
    assert!(
        c.register_targets("prod-1", "prod", &decls)
            .await
            .expect("targets")
            .is_empty()
    );
}

async fn job(c: &Catalog, id: &str, kind: JobKind, state: JobState, target: &str, at: i64) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, state, target, agent, backup_id, requested_by, \
         created_at_ms, started_at_ms, finished_at_ms, error) \
         VALUES ($1, $2, $3, $4, 'prod-1', $5, 'alice', $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(state.as_str())
    .bind(target)
    .bind(format!("b-{id}"))
    .bind(at - 100)
    .bind(at - 50)
    .bind(at)
    .bind(if state == JobState::Failed {
        "it broke"
    } else {
        ""
    })
    .execute(&c.pool)
    .await
    .expect("insert job");
}

async fn backup(c: &Catalog, job_id: &str, target: &str, at: i64, stored: i64) {
    sqlx::query(
        "INSERT INTO backups (backup_id, target, environment, agent, repository, engine, \
         provider, database_name, server_version, system_identifier, dump_tool, \
         dump_tool_version, format, compression, compression_level, raw_size, stored_size, \
         raw_sha256, stored_sha256, started_at_ms, finished_at_ms, row_counts, data_key, \
         manifest_key, verify_status, job_id) VALUES ($1, $2, 'prod', 'prod-1', 'local', \
         'postgres', 'postgres', 'db', '15', '1', 'pg_dump', '15', 'custom', 'zstd', 3, $3, $4, \
         'a', 'b', $5, $6, '[]', 'k', 'm', 'unverified', $7)",
    )
    .bind(format!("b-{job_id}"))
    .bind(target)
    .bind(stored * 10)
    .bind(stored)
    .bind(at - 50)
    .bind(at)
    .bind(job_id)
    .execute(&c.pool)
    .await
    .expect("insert backup");
    // As `insert_backup` does: recorded when its job ended.
    sqlx::query(
        "UPDATE backups SET recorded_at_ms = COALESCE((SELECT j.finished_at_ms FROM jobs j \
         WHERE j.id = backups.job_id), finished_at_ms) WHERE job_id = $1",
    )
    .bind(job_id)
    .execute(&c.pool)
    .await
    .expect("record backup");
}

#[tokio::test]
async fn snapshot_reads_recent_backups_and_latest_jobs() {
    let (_dir, c) = open().await;
    with_targets(&c, &["orders", "users"]).await;
    for i in 0..10 {
        let id = format!("j{i:02}");
        let at = 1_000 + i * 1_000;
        job(
            &c,
            &id,
            JobKind::Backup,
            JobState::Succeeded,
            "prod/orders",
            at,
        )
        .await;
        backup(&c, &id, "prod/orders", at, 100 + i).await;
    }
    job(
        &c,
        "jf1",
        JobKind::Backup,
        JobState::Failed,
        "prod/orders",
        5_500,
    )
    .await;
    job(
        &c,
        "jf2",
        JobKind::Backup,
        JobState::Failed,
        "prod/orders",
        20_000,
    )
    .await;
    job(
        &c,
        "jc",
        JobKind::Backup,
        JobState::Cancelled,
        "prod/orders",
        30_000,
    )
    .await;
    job(
        &c,
        "jv",
        JobKind::Verify,
        JobState::Succeeded,
        "prod/orders",
        25_000,
    )
    .await;
    job(
        &c,
        "jr",
        JobKind::Restore,
        JobState::Failed,
        "prod/users",
        26_000,
    )
    .await;

    let snap = c.health_snapshot(50_000).await.expect("snapshot");
    assert_eq!(snap.agents.len(), 1);
    let orders = &snap.targets[0];
    assert_eq!(orders.target.name.as_str(), "prod/orders");
    assert_eq!(orders.recent_backups.len(), health::RECENT_BACKUPS);
    let sizes: Vec<u64> = orders
        .recent_backups
        .iter()
        .map(|b| b.stored_size)
        .collect();
    assert_eq!(sizes, [109, 108, 107, 106, 105, 104, 103, 102]);
    let last = orders
        .last_finished(JobKind::Backup)
        .expect("last backup job");
    assert_eq!(
        last.job_id, "jf2",
        "the failure is newer than the last success"
    );
    assert_eq!(last.error, "it broke");
    assert_eq!(
        orders
            .last_finished(JobKind::Verify)
            .map(|j| j.job_id.as_str()),
        Some("jv")
    );
    let users = &snap.targets[1];
    assert!(users.recent_backups.is_empty());
    assert_eq!(
        users.last_finished(JobKind::Restore).map(|j| j.state),
        Some(JobState::Failed)
    );
    assert_eq!(users.first_seen_ms, 50_000);
    // First-seen times are kept.
    let again = c.health_snapshot(90_000).await.expect("snapshot");
    assert_eq!(again.targets[1].first_seen_ms, 50_000);
}

#[tokio::test]
async fn schema_is_current_after_open() {
    let (_dir, c) = open().await;
    let s = c.schema_status().await.expect("schema");
    assert!(s.is_current(), "{s:?}");
    // Both backends end at the same version: their migrations are numbered alike.
    assert_eq!(
        s.applied.last(),
        super::migrator()
            .iter()
            .map(|m| m.version)
            .next_back()
            .as_ref()
    );
    assert_eq!(s.applied, s.expected);
    c.ping().await.expect("ping");
}

fn new_incident(kind: IncidentKind, subject: &str) -> NewIncident {
    NewIncident {
        kind,
        subject: subject.into(),
        environment: "prod".into(),
        severity: Severity::Critical,
        summary: "summary".into(),
        detail: "detail".into(),
    }
}

#[tokio::test]
async fn one_open_incident_per_kind_and_subject_and_an_outbox() {
    let (_dir, c) = open().await;
    let hooks = vec!["ops".to_owned(), "chat".to_owned()];
    let first = c
        .open_incident(&new_incident(IncidentKind::RpoBreach, "prod/a"), &hooks, 10)
        .await
        .expect("open")
        .expect("opened");
    assert!(
        c.open_incident(&new_incident(IncidentKind::RpoBreach, "prod/a"), &hooks, 11)
            .await
            .expect("open again")
            .is_none(),
        "a second open incident of the same kind and subject"
    );
    c.open_incident(&new_incident(IncidentKind::BackupFailed, "prod/a"), &[], 12)
        .await
        .expect("open")
        .expect("another kind opens");
    assert_eq!(c.open_incidents().await.expect("open").len(), 2);

    let due = c.due_notifications(10, 100).await.expect("due");
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|(n, _)| n.event == Event::Firing));

    // Resolved before the firing notification went out: the resolved one waits for it.
    assert!(
        c.resolve_incident(first.id, "fine", 20)
            .await
            .expect("resolve")
    );
    assert!(
        !c.resolve_incident(first.id, "fine", 21)
            .await
            .expect("resolve twice")
    );
    let due = c.due_notifications(20, 100).await.expect("due");
    assert_eq!(due.len(), 2, "{due:?}");
    assert!(due.iter().all(|(n, _)| n.event == Event::Firing));
    let (ops, incident) = due.iter().find(|(n, _)| n.webhook == "ops").expect("ops");
    assert_eq!(incident.resolved_at_ms, Some(20));
    c.notification_delivered(ops, 21).await.expect("delivered");
    let chat = due
        .iter()
        .find(|(n, _)| n.webhook == "chat")
        .map(|(n, _)| n.clone())
        .expect("chat");
    c.notification_failed(&chat, "HTTP 500", 1_000)
        .await
        .expect("failed");
    let due = c.due_notifications(22, 100).await.expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (due[0].0.webhook.as_str(), due[0].0.event),
        ("ops", Event::Resolved)
    );
    let due = c.due_notifications(1_000, 100).await.expect("due");
    assert_eq!(due.len(), 2, "chat's retry is due, and ops' resolved");
    assert_eq!(due[0].0.attempts + due[1].0.attempts, 1);
    let pending = c.pending_notifications().await.expect("pending");
    assert_eq!(pending.len(), 2);

    // A new incident of the same kind and subject may open after the first resolved.
    assert!(
        c.open_incident(&new_incident(IncidentKind::RpoBreach, "prod/a"), &hooks, 30)
            .await
            .expect("reopen")
            .is_some()
    );
    assert_eq!(c.recent_incidents(10).await.expect("recent").len(), 3);
}

#[tokio::test]
async fn audit_log_round_trip_and_filters() {
    let (_dir, c) = open().await;
    let entry = |at, actor: &str, action: &str, object: &str, outcome| AuditEntry {
        at_ms: at,
        actor: actor.into(),
        role: "admin".into(),
        action: action.into(),
        object: object.into(),
        outcome,
        reason: String::new(),
    };
    c.insert_audit(&entry(
        1,
        "operator/alice",
        "backup.start",
        "prod/orders",
        AuditOutcome::Ok,
    ))
    .await
    .expect("insert");
    c.insert_audit(&entry(
        2,
        "operator/bob",
        "restore",
        "b1 -> prod/x_y",
        AuditOutcome::Denied,
    ))
    .await
    .expect("insert");
    c.insert_audit(&entry(
        3,
        "operator/alice",
        "job.cancel",
        "j1",
        AuditOutcome::Refused,
    ))
    .await
    .expect("insert");
    let all = c.list_audit(&AuditFilter::default()).await.expect("list");
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].entry.action, "job.cancel", "newest first");
    let alice = c
        .list_audit(&AuditFilter {
            actor: Some("operator/alice".into()),
            since_ms: Some(2),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].entry.outcome, AuditOutcome::Refused);
    // `_` in the object filter is literal, not a wildcard.
    let x = c
        .list_audit(&AuditFilter {
            object: Some("x_y".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(x.len(), 1);
    let none = c
        .list_audit(&AuditFilter {
            object: Some("orders_".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert!(none.is_empty());
}
