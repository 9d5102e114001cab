//! A backup's copy in another repository, as `backup show` gives it.

use serde::Serialize;

use crate::output::rfc3339_text;

/// A backup's copy in another repository.
#[derive(Debug, Clone, Serialize)]
pub struct CopyView {
    pub repository: String,
    /// `copying`, `stored` or `deleting`.
    pub state: String,
    pub job_id: String,
    pub stored_at_ms: Option<i64>,
    pub verify_status: &'static str,
    pub verified_at_ms: Option<i64>,
    pub verify_detail: Option<String>,
}

impl CopyView {
    /// `offsite: stored 2026-12-04T10:00:00Z, verify ok (2026-12-04T11:00:00Z)`
    pub(super) fn line(&self) -> String {
        let mut s = format!("{}: {}", self.repository, self.state);
        if let Some(at) = self.stored_at_ms {
            s.push_str(&format!(" {}", rfc3339_text(at)));
        }
        s.push_str(&format!(", verify {}", self.verify_status));
        if let Some(at) = self.verified_at_ms {
            s.push_str(&format!(" ({})", rfc3339_text(at)));
        }
        if let Some(d) = &self.verify_detail
            && self.verify_status != "ok"
        {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}
