//! What the audit trail records: plain data, shared by the recorder, the queue of refused
//! calls and the catalog.

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
    /// Only entries after this one in the list's order (newest first by time, then id).
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor: None,
            action: None,
            since_ms: None,
            object: None,
            after_id: None,
            limit: 100,
        }
    }
}
