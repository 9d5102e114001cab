//! The audit trail of operator actions: who (certificate identity and role), what (action),
//! on what (target, backup or job), and how it ended. Each action is logged once with
//! `target: "audit"` and stored in the catalog, so it can be listed later.

use crate::{catalog::Catalog, config::Role, error::Error, wire::bounded_text};

/// How an operator action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Authorized, but refused or failed (not found, invalid, already running...).
    Refused,
    /// The caller's identity or role does not allow it.
    Denied,
}

impl AuditOutcome {
    pub const ALL: &'static [AuditOutcome] = &[
        AuditOutcome::Ok,
        AuditOutcome::Refused,
        AuditOutcome::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.as_str() == s)
    }
}

/// One operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The certificate identity, e.g. `operator/alice`.
    pub actor: String,
    /// The role the coordinator gave it (empty when the identity has none).
    pub role: String,
    /// What was asked, e.g. `backup.start`.
    pub action: String,
    /// What it was asked on: a target, a backup id, a job id (may be empty).
    pub object: String,
    pub outcome: AuditOutcome,
    /// Why it was refused or denied; empty when ok.
    pub reason: String,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

/// What to list. `None` matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub since_ms: Option<i64>,
    /// Substring of the object.
    pub object: Option<String>,
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor: None,
            action: None,
            since_ms: None,
            object: None,
            limit: 100,
        }
    }
}

/// Logs an operator action (`target: "audit"`) and stores it in the catalog. A catalog
/// failure is logged and does not fail the action: the log line remains the record.
pub async fn record(catalog: &Catalog, mut entry: AuditEntry) {
    entry.reason = bounded_text(entry.reason);
    entry.object = bounded_text(entry.object);
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
            at_ms: lifeboat_proto::now_ms(),
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

/// Records a request refused by authorization; `identity` is the certificate's
/// (`operator/NAME`, `agent/NAME`).
pub async fn record_denied(
    catalog: &Catalog,
    identity: &str,
    action: &str,
    object: &str,
    reason: &Error,
) {
    record(
        catalog,
        AuditEntry {
            at_ms: lifeboat_proto::now_ms(),
            actor: identity.to_owned(),
            role: String::new(),
            action: action.to_owned(),
            object: object.to_owned(),
            outcome: AuditOutcome::Denied,
            reason: reason.public_message(),
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
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
        record_denied(
            &catalog,
            "operator/vera",
            "restore",
            "b1 -> prod/orders",
            &Error::PermissionDenied("viewer may not restore".into()),
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
}
