//! What a job found, for the operator: a check's findings, a dry run's plan, a restore's notes.

use crate::v1 as pb;

/// How sure a finding is that something will go wrong; ordered, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Error,
}
super::words::string_forms!(Severity {
    Ok => "ok",
    Info => "info",
    Warning => "warning",
    Error => "error",
});

impl Severity {
    /// The severity a wire value names; `None` for unset or unknown.
    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::Severity::try_from(value).ok()? {
            pb::Severity::Unspecified => return None,
            pb::Severity::Ok => Severity::Ok,
            pb::Severity::Info => Severity::Info,
            pb::Severity::Warning => Severity::Warning,
            pb::Severity::Error => Severity::Error,
        })
    }
}

impl From<Severity> for pb::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Ok => pb::Severity::Ok,
            Severity::Info => pb::Severity::Info,
            Severity::Warning => pb::Severity::Warning,
            Severity::Error => pb::Severity::Error,
        }
    }
}

/// One thing a check (or a restore) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    pub message: String,
}

/// What an agent found while running a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub plan: Vec<String>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.plan.is_empty()
    }

    /// The worst finding (the first of the worst severity), if any.
    pub fn worst(&self) -> Option<&Finding> {
        self.findings.iter().rev().max_by_key(|f| f.severity)
    }

    /// The wire form; `None` when there is nothing to report.
    pub fn to_wire(&self) -> Option<pb::JobReport> {
        if self.is_empty() {
            return None;
        }
        Some(pb::JobReport {
            findings: self
                .findings
                .iter()
                .map(|f| pb::Finding {
                    check: f.check.clone(),
                    severity: pb::Severity::from(f.severity).into(),
                    message: f.message.clone(),
                })
                .collect(),
            plan: self.plan.clone(),
        })
    }
}
