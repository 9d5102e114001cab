//! The audit trail of operator actions: who (certificate identity and role), what (action),
//! on what (target, backup or job), and how it ended. Each action is logged once with
//! `target: "audit"` and stored in the catalog, so it can be listed later.

use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;

pub mod model;
pub mod queue;

pub use model::{AuditEntry, AuditFilter, AuditOutcome, AuditRecord};
pub use queue::DeniedQueue;

use crate::{catalog::Catalog, config::Role, error::Error, metrics::Metrics, wire::bounded_text};

/// Text from a request or an error, made safe to store, log and print: control characters
/// (newlines, carriage returns, terminal escapes, C1 codes) become visible escapes such as
/// `\n` and `\u{1b}`, so a crafted name cannot forge log lines or recolour a terminal.
pub fn clean_text(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Stores queued refusals until `cancel`, then what is left.
pub async fn run_denied(catalog: Catalog, denied: Arc<DeniedQueue>, cancel: CancellationToken) {
    let rx = denied.take_receiver();
    let Some(mut rx) = rx else { return };
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => None,
            e = rx.recv() => e,
        };
        let Some(first) = first else { break };
        // What arrived while the previous batch was being written is this batch: under a
        // flood, identical refusals collapse into one row per write.
        let mut batch = vec![first];
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        store_batch(&catalog, &denied, batch).await;
    }
    let mut rest = Vec::new();
    while let Ok(e) = rx.try_recv() {
        rest.push(e);
    }
    if !rest.is_empty() {
        store_batch(&catalog, &denied, rest).await;
    }
}

async fn store_batch(catalog: &Catalog, denied: &DeniedQueue, batch: Vec<AuditEntry>) {
    for entry in coalesce(batch) {
        record(catalog, entry).await;
    }
    let dropped = denied.take_dropped();
    if dropped > 0 {
        tracing::warn!(
            target: "audit",
            dropped,
            "refused calls arrived faster than they could be audited; {dropped} were counted (lifeboat_audit_dropped_total) but not recorded one by one"
        );
    }
}

/// Identical refusals (same caller, action, object and reason) become one entry, at the first
/// one's time, whose reason says how many there were; order is kept.
fn coalesce(batch: Vec<AuditEntry>) -> Vec<AuditEntry> {
    let mut out: Vec<(AuditEntry, u64)> = Vec::new();
    let mut index: HashMap<(String, String, String, String), usize> = HashMap::new();
    for e in batch {
        let key = (
            e.actor.clone(),
            e.action.clone(),
            e.object.clone(),
            e.reason.clone(),
        );
        match index.get(&key) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(key, out.len());
                out.push((e, 1));
            }
        }
    }
    out.into_iter()
        .map(|(mut e, n)| {
            if n > 1 {
                e.reason = format!("{} ({n} identical refusals)", e.reason);
            }
            e
        })
        .collect()
}

/// Logs an operator action (`target: "audit"`) and stores it in the catalog. A catalog
/// failure is logged and does not fail the action: the log line remains the record.
pub async fn record(catalog: &Catalog, mut entry: AuditEntry) {
    entry.actor = clean_text(&entry.actor);
    entry.action = clean_text(&entry.action);
    entry.reason = bounded_text(clean_text(&entry.reason));
    entry.object = bounded_text(clean_text(&entry.object));
    match entry.outcome {
        AuditOutcome::Ok => tracing::info!(
            target: "audit",
            actor = %entry.actor,
            role = %entry.role,
            action = %entry.action,
            object = %entry.object,
            outcome = entry.outcome.as_str(),
            "operator action"
        ),
        AuditOutcome::Refused | AuditOutcome::Denied => tracing::warn!(
            target: "audit",
            actor = %entry.actor,
            role = %entry.role,
            action = %entry.action,
            object = %entry.object,
            outcome = entry.outcome.as_str(),
            reason = %entry.reason,
            "operator action"
        ),
    }
    if let Err(e) = catalog.insert_audit(&entry).await {
        tracing::error!(
            target: "audit",
            actor = %entry.actor,
            action = %entry.action,
            "failed to store the audit record in the catalog: {e}"
        );
    }
}

/// Records an authorized operator action and how it ended: `ok`, or `refused` with the error
/// a client saw.
pub async fn record_result<T>(
    catalog: &Catalog,
    operator: &str,
    role: Role,
    action: &str,
    object: &str,
    result: &Result<T, Error>,
) {
    let (outcome, reason) = match result {
        Ok(_) => (AuditOutcome::Ok, String::new()),
        Err(e) => (AuditOutcome::Refused, e.public_message()),
    };
    record(
        catalog,
        AuditEntry {
            at_ms: lifeboat_common::time::now_ms(),
            actor: format!("operator/{operator}"),
            role: role.as_str().to_owned(),
            action: action.to_owned(),
            object: object.to_owned(),
            outcome,
            reason,
        },
    )
    .await;
}

/// Queues the record of a request refused by authorization; `identity` is the certificate's
/// (`operator/NAME`, `agent/NAME`). Never waits.
pub fn record_denied(
    denied: &DeniedQueue,
    metrics: &Metrics,
    identity: &str,
    action: &str,
    object: &str,
    reason: &Error,
) {
    denied.push(
        AuditEntry {
            at_ms: lifeboat_common::time::now_ms(),
            actor: identity.to_owned(),
            role: String::new(),
            action: action.to_owned(),
            // Bounded before it is queued: the queue holds at most DENIED_QUEUE of these.
            object: bounded_text(object.to_owned()),
            outcome: AuditOutcome::Denied,
            reason: reason.public_message(),
        },
        metrics,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn actions_are_stored_with_their_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open_sqlite(&dir.path().join("c.db"))
            .await
            .expect("catalog");
        record_result(
            &catalog,
            "alice",
            Role::Admin,
            "start_backup",
            "prod/orders",
            &Ok::<(), Error>(()),
        )
        .await;
        record_result::<()>(
            &catalog,
            "olga",
            Role::Operator,
            "cancel_job",
            "j1",
            &Err(Error::NotFound("job j1 does not exist".into())),
        )
        .await;
        crate::audit::record(
            &catalog,
            AuditEntry {
                at_ms: lifeboat_common::time::now_ms(),
                actor: "operator/vera".into(),
                role: String::new(),
                action: "restore".into(),
                object: "b1 -> prod/orders".into(),
                outcome: AuditOutcome::Denied,
                reason: "viewer may not restore".into(),
            },
        )
        .await;
        let all = catalog
            .list_audit(&AuditFilter::default())
            .await
            .expect("list");
        let got: Vec<(&str, &str, AuditOutcome, &str)> = all
            .iter()
            .map(|r| {
                (
                    r.entry.actor.as_str(),
                    r.entry.action.as_str(),
                    r.entry.outcome,
                    r.entry.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "operator/vera",
                    "restore",
                    AuditOutcome::Denied,
                    "viewer may not restore"
                ),
                (
                    "operator/olga",
                    "cancel_job",
                    AuditOutcome::Refused,
                    "job j1 does not exist"
                ),
                ("operator/alice", "start_backup", AuditOutcome::Ok, ""),
            ]
        );
        assert_eq!(all[2].entry.role, "admin");
        assert_eq!(all[2].entry.object, "prod/orders");
    }

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(clean_text("prod/orders"), "prod/orders");
        assert_eq!(
            clean_text("a\nINFO forged\r\x1b[31mred\u{9b}x\t"),
            "a\\nINFO forged\\r\\u{1b}[31mred\\u{9b}x\\t"
        );
    }

    #[tokio::test]
    async fn a_flood_of_refusals_is_bounded_coalesced_and_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open_sqlite(&dir.path().join("c.db"))
            .await
            .expect("catalog");
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let queue = Arc::new(DeniedQueue::default());
        let denied = Error::PermissionDenied("agents may not call Control".into());
        // 5,000 refusals at once, without the writer running: the queue keeps 1,024.
        for _ in 0..5_000 {
            record_denied(
                &queue,
                &metrics,
                "agent/rogue",
                "start_backup",
                "prod/x\n\x1b[2J",
                &denied,
            );
        }
        record_denied(&queue, &metrics, "operator/vera", "restore", "b1", &denied);
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(run_denied(catalog.clone(), queue.clone(), cancel.clone()));
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = catalog
                .list_audit(&AuditFilter::default())
                .await
                .expect("list");
            if !rows.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
        writer.await.expect("writer");
        let rows = if rows.len() < 2 {
            catalog
                .list_audit(&AuditFilter::default())
                .await
                .expect("list")
        } else {
            rows
        };
        assert_eq!(rows.len(), 1, "identical refusals become one row: {rows:?}");
        let e = &rows[0].entry;
        assert_eq!(e.actor, "agent/rogue");
        assert_eq!(e.object, "prod/x\\n\\u{1b}[2J");
        assert!(
            e.reason.contains("(1024 identical refusals)"),
            "{}",
            e.reason
        );
        // The refusal that did not fit is counted, not queued.
        let text = metrics.render().expect("render");
        assert!(text.contains("lifeboat_audit_dropped_total 3977"), "{text}");
    }
}
