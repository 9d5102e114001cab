//! What a job found, for the operator: findings (what was checked, how it went, in words)
//! and, for a restore's dry run, the steps the restore would take. Jobs add to it as they go;
//! the runner sends it with the job's result, whether the job succeeded or failed.

use std::sync::{Arc, Mutex, MutexGuard};

use lifeboat_proto::{
    self as pb,
    domain::{Finding, Report, Severity},
};

#[derive(Debug, Clone, Default)]
pub struct Reporter(Arc<Mutex<Report>>);

impl Reporter {
    fn lock(&self) -> MutexGuard<'_, Report> {
        // Pushes only: a panic elsewhere cannot leave it inconsistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, check: &str, severity: Severity, message: impl Into<String>) {
        let message = message.into();
        match severity {
            Severity::Error => tracing::warn!(check, "pre-flight: {message}"),
            Severity::Warning => tracing::warn!(check, "{message}"),
            _ => tracing::debug!(check, "{message}"),
        }
        self.lock().findings.push(Finding {
            check: check.to_owned(),
            severity,
            message,
        });
    }

    pub fn ok(&self, check: &str, message: impl Into<String>) {
        self.add(check, Severity::Ok, message);
    }

    pub fn info(&self, check: &str, message: impl Into<String>) {
        self.add(check, Severity::Info, message);
    }

    pub fn warn(&self, check: &str, message: impl Into<String>) {
        self.add(check, Severity::Warning, message);
    }

    pub fn error(&self, check: &str, message: impl Into<String>) {
        self.add(check, Severity::Error, message);
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
            .filter(|f| f.severity == Severity::Error)
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
        self.lock().to_wire()
    }
}

/// Longest job error text sent with a result.
const JOB_ERROR_MAX: usize = 300;

/// A failed job's error as people read it (`jobs show`, `/health/backups`, webhooks): the
/// sentence that says what went wrong and what to do, then at most one line of cause, in at
/// most [`JOB_ERROR_MAX`] characters. Text repeated down the chain is said once, and the
/// PostgreSQL server's source line (`at line 948`, which sqlx appends) is left out. The agent
/// logs the full chain.
pub fn job_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = one_line(&strip_server_source_line(&cause.to_string()));
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let joined = parts.join(": ");
    if joined.chars().count() <= JOB_ERROR_MAX {
        return joined;
    }
    // The innermost part that says what to do (house style: "problem; what to do").
    let Some(advice) = parts.iter().rposition(|p| p.contains("; ")) else {
        return truncate(&joined, JOB_ERROR_MAX);
    };
    let headline = truncate(&parts[advice], JOB_ERROR_MAX);
    let inner = parts[advice + 1..].join(": ");
    let cause = if inner.is_empty() {
        parts[..advice].join(": ")
    } else {
        inner
    };
    let room = JOB_ERROR_MAX.saturating_sub(headline.chars().count() + "\ncause: ".len());
    if cause.is_empty() || room < 24 {
        return headline;
    }
    format!("{headline}\ncause: {}", truncate(&cause, room))
}

/// Removes sqlx's ` at line N` (the line in the PostgreSQL server's C source that raised the
/// error). MariaDB's `ERROR 1064 (42000) at line 948` (a line of the dump) is kept.
fn strip_server_source_line(s: &str) -> String {
    const PAT: &str = " at line ";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(PAT) {
        let digits = rest[i + PAT.len()..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let after_sqlstate = rest[..i].ends_with(')');
        if digits == 0 || after_sqlstate {
            out.push_str(&rest[..i + PAT.len()]);
            rest = &rest[i + PAT.len()..];
        } else {
            out.push_str(&rest[..i]);
            rest = &rest[i + PAT.len() + digits..];
        }
    }
    out.push_str(rest);
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
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

    #[test]
    fn job_errors_are_short_and_say_things_once() {
        // The shape of an S3 failure: a context, then the storage error twice (its Display
        // and its source).
        let advice = "the S3 server answered 403 Forbidden (HEAD s3://backups/lifeboat/test/app/20261203T085454Z-55763b/data.pgdump.zst); check repository \"offsite\"'s access key id and secret access key files (or credential source), the bucket policy and this machine's clock";
        let e = anyhow::anyhow!(advice.to_owned())
            .context(advice.to_owned())
            .context("write backup to s3://backups/lifeboat/");
        let text = job_error(&e);
        assert!(text.chars().count() <= JOB_ERROR_MAX, "{text}");
        assert_eq!(text.matches("403 Forbidden").count(), 1, "{text}");
        assert!(text.contains("; check repository"), "{text}");

        let e = anyhow::anyhow!(
            "cannot connect to PostgreSQL at u@h/db: error returned from database: password authentication failed for user \"u\" at line 334; check the password file"
        );
        let text = job_error(&e);
        assert!(!text.contains("at line"), "{text}");
        assert!(text.contains("for user \"u\"; check"), "{text}");
        // MariaDB's line of the dump stays.
        assert_eq!(
            strip_server_source_line("ERROR 1064 (42000) at line 948: syntax"),
            "ERROR 1064 (42000) at line 948: syntax"
        );

        // A long cause under the advice: one line of it, cut.
        let e = anyhow::anyhow!("x".repeat(2000))
            .context("the dump failed; check the server log")
            .context("back up test/app");
        let text = job_error(&e);
        assert!(text.chars().count() <= JOB_ERROR_MAX, "{text}");
        assert!(
            text.starts_with("the dump failed; check the server log\ncause: xxx"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
    }
}
