//! What checks, dry runs and restores found (a job's report), and the audit trail, as the CLI
//! shows them.

use lifeboat_proto::{
    self as pb,
    domain::{OwnerPolicy, Severity},
};
use serde::Serialize;

use crate::{
    output::{Row, Table, json_time, non_empty, or_none, rfc3339_text},
    views::wire_word,
};

pub fn severity_word(v: i32) -> &'static str {
    wire_word(v, Severity::from_wire, Severity::as_str)
}

pub fn owners_word(v: i32) -> &'static str {
    wire_word(v, OwnerPolicy::from_wire, OwnerPolicy::as_str)
}

#[derive(Debug, Serialize)]
pub struct FindingView {
    pub check: String,
    pub severity: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ReportView {
    pub findings: Vec<FindingView>,
    /// A dry run's steps, in order.
    pub plan: Vec<String>,
}

impl From<&pb::JobReport> for ReportView {
    fn from(r: &pb::JobReport) -> Self {
        Self {
            findings: r
                .findings
                .iter()
                .map(|f| FindingView {
                    check: f.check.clone(),
                    severity: severity_word(f.severity),
                    message: f.message.clone(),
                })
                .collect(),
            plan: r.plan.clone(),
        }
    }
}

impl ReportView {
    /// The findings as aligned columns, then the numbered plan.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if !self.findings.is_empty() {
            let mut t = Table::new(&["RESULT", "CHECK", "FINDING"]);
            for f in &self.findings {
                t.row(vec![
                    f.severity.to_owned(),
                    f.check.clone(),
                    f.message.clone(),
                ]);
            }
            s.push_str(&t.render());
        }
        if !self.plan.is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str("plan (nothing was written):\n");
            for (i, step) in self.plan.iter().enumerate() {
                s.push_str(&format!("  {}. {step}\n", i + 1));
            }
        }
        s
    }

    pub fn count(&self, severity: &str) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

#[derive(Debug, Serialize)]
pub struct AuditView {
    pub id: i64,
    pub at: Option<String>,
    pub at_ms: Option<i64>,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub object: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
}

impl From<&pb::AuditEntry> for AuditView {
    fn from(e: &pb::AuditEntry) -> Self {
        let (at, at_ms) = json_time(e.at_ms);
        Self {
            id: e.id,
            at,
            at_ms,
            actor: e.actor.clone(),
            role: non_empty(&e.role),
            action: e.action.clone(),
            object: non_empty(&e.object),
            outcome: e.outcome.clone(),
            reason: non_empty(&e.reason),
        }
    }
}

impl Row for AuditView {
    const HEADER: &'static [&'static str] = &[
        "ID", "TIME", "ACTOR", "ROLE", "ACTION", "OBJECT", "OUTCOME", "REASON",
    ];
    fn cells(&self) -> Vec<String> {
        let opt = |v: &Option<String>| or_none(v.as_deref().unwrap_or_default());
        vec![
            self.id.to_string(),
            rfc3339_text(self.at_ms.unwrap_or(0)),
            self.actor.clone(),
            opt(&self.role),
            self.action.clone(),
            opt(&self.object),
            self.outcome.clone(),
            opt(&self.reason),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_then_the_plan() {
        let r = pb::JobReport {
            findings: vec![
                pb::Finding {
                    check: "server".into(),
                    severity: pb::Severity::Ok.into(),
                    message: "PostgreSQL 15.19".into(),
                },
                pb::Finding {
                    check: "owners".into(),
                    severity: pb::Severity::Error.into(),
                    message: "role app is missing".into(),
                },
            ],
            plan: vec!["create the scratch database".into(), "rename it".into()],
        };
        let v = ReportView::from(&r);
        assert_eq!(v.count("error"), 1);
        let text = v.text();
        assert!(text.contains("ok      server  PostgreSQL 15.19"), "{text}");
        assert!(
            text.contains("error   owners  role app is missing"),
            "{text}"
        );
        assert!(
            text.contains("  1. create the scratch database\n  2. rename it\n"),
            "{text}"
        );
    }
}
