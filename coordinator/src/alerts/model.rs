//! What alerts are about: incident kinds and severities, incidents and their notifications.
//! Plain data, used by the evaluator, the catalog, the metrics and the webhooks.

/// What an incident is about. A closed set: it is a metric label and a webhook filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IncidentKind {
    BackupFailed,
    RestoreFailed,
    VerifyFailed,
    RpoBreach,
    AgentOffline,
    SizeAnomaly,
    /// The last restore drill of a target failed.
    DrillFailed,
    /// The last drill that passed took longer than the target's RTO.
    DrillRtoExceeded,
    /// No drill passed within `alerts.drill_max_age`.
    DrillOverdue,
}

impl IncidentKind {
    pub const ALL: &'static [IncidentKind] = &[
        IncidentKind::BackupFailed,
        IncidentKind::RestoreFailed,
        IncidentKind::VerifyFailed,
        IncidentKind::RpoBreach,
        IncidentKind::AgentOffline,
        IncidentKind::SizeAnomaly,
        IncidentKind::DrillFailed,
        IncidentKind::DrillRtoExceeded,
        IncidentKind::DrillOverdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::BackupFailed => "backup_failed",
            IncidentKind::RestoreFailed => "restore_failed",
            IncidentKind::VerifyFailed => "verify_failed",
            IncidentKind::RpoBreach => "rpo_breach",
            IncidentKind::AgentOffline => "agent_offline",
            IncidentKind::SizeAnomaly => "size_anomaly",
            IncidentKind::DrillFailed => "drill_failed",
            IncidentKind::DrillRtoExceeded => "drill_rto_exceeded",
            IncidentKind::DrillOverdue => "drill_overdue",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Which notification of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Firing,
    Resolved,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Firing => "firing",
            Event::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Event::Firing),
            "resolved" => Some(Event::Resolved),
            _ => None,
        }
    }
}

/// An incident to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    pub kind: IncidentKind,
    /// A target (`ENV/NAME`) or an agent name.
    pub subject: String,
    pub environment: String,
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: i64,
    pub kind: IncidentKind,
    pub subject: String,
    pub environment: String,
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub opened_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub resolve_summary: String,
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub incident_id: i64,
    pub webhook: String,
    pub event: Event,
    /// Delivery passes that failed so far.
    pub attempts: u32,
}
