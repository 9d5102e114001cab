//! What a job found, for the operator: findings (what was checked, how it went, in words)
//! and, for a restore's dry run, the steps the restore would take. Jobs add to it as they go;
//! the runner sends it with the job's result, whether the job succeeded or failed.

use std::sync::{Arc, Mutex, MutexGuard};

use lifeboat_proto as pb;

#[derive(Debug, Clone, Default)]
pub struct Reporter(Arc<Mutex<pb::JobReport>>);

impl Reporter {
    fn lock(&self) -> MutexGuard<'_, pb::JobReport> {
        // Pushes only: a panic elsewhere cannot leave it inconsistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, check: &str, severity: pb::Severity, message: impl Into<String>) {
        let message = message.into();
        match severity {
            pb::Severity::Error => tracing::warn!(check, "pre-flight: {message}"),
            pb::Severity::Warning => tracing::warn!(check, "{message}"),
            _ => tracing::debug!(check, "{message}"),
        }
        self.lock().findings.push(pb::Finding {
            check: check.to_owned(),
            severity: severity.into(),
            message,
        });
    }

    pub fn ok(&self, check: &str, message: impl Into<String>) {
        self.add(check, pb::Severity::Ok, message);
    }

    pub fn info(&self, check: &str, message: impl Into<String>) {
        self.add(check, pb::Severity::Info, message);
    }

    pub fn warn(&self, check: &str, message: impl Into<String>) {
        self.add(check, pb::Severity::Warning, message);
    }

    pub fn error(&self, check: &str, message: impl Into<String>) {
        self.add(check, pb::Severity::Error, message);
    }

    /// Records `result`: its error as an error finding. Returns the value, if any.
    pub fn check<T>(&self, check: &str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(check, format!("{e:#}"));
                None
            }
        }
    }

    /// One step of a planned restore.
    pub fn step(&self, step: impl Into<String>) {
        self.lock().plan.push(step.into());
    }

    /// The error findings' messages, in order.
    pub fn errors(&self) -> Vec<String> {
        self.lock()
            .findings
            .iter()
            .filter(|f| f.severity == pb::Severity::Error as i32)
            .map(|f| f.message.clone())
            .collect()
    }

    /// Fails with the error findings, if there are any: what a job that must not go on
    /// returns.
    pub fn bail_on_errors(&self, what: &str) -> anyhow::Result<()> {
        match self.errors().as_slice() {
            [] => Ok(()),
            [one] => anyhow::bail!("{what}: {one}"),
            many => anyhow::bail!("{what}: {} problems: {}", many.len(), many.join("; ")),
        }
    }

    pub fn to_pb(&self) -> Option<pb::JobReport> {
        let r = self.lock();
        (!r.findings.is_empty() || !r.plan.is_empty()).then(|| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fail_and_the_rest_is_kept() {
        let r = Reporter::default();
        assert!(r.to_pb().is_none());
        r.ok("server", "PostgreSQL 15.19");
        r.warn("size", "big");
        r.bail_on_errors("pre-flight").expect("no errors yet");
        r.error("privileges", "no SELECT on public.t");
        let e = r.bail_on_errors("pre-flight").expect_err("an error");
        assert_eq!(e.to_string(), "pre-flight: no SELECT on public.t");
        r.error("roles", "role app is missing");
        let e = r.bail_on_errors("pre-flight").expect_err("two errors");
        assert!(e.to_string().contains("2 problems"), "{e}");
        assert_eq!(r.check::<()>("x", Err(anyhow::anyhow!("boom"))), None);
        let pb = r.to_pb().expect("report");
        assert_eq!(pb.findings.len(), 5);
        assert_eq!(r.errors().len(), 3);
    }
}
