//! A target's off-site copies judged against its newest backup: for each repository it copies
//! to (`copy_to`, or holding copies of it), the newest backup held there and whether the
//! newest backup is still without a copy there after [`COPY_GRACE`].

use std::time::Duration;

use super::{Status, human, public_reason};
use crate::catalog::health::{BackupFacts, JobFacts};

/// How long a new backup may be without its copies before the target is a warning: the copy
/// job starts right after the backup; this leaves room for a long upload and a retry.
pub const COPY_GRACE: Duration = Duration::from_secs(3600);

/// What the catalog knows about one repository a target's backups are copied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyFacts {
    pub repository: String,
    /// The newest backup held there (as a copy, or as the backup itself): its id and when the
    /// coordinator recorded the backup.
    pub newest: Option<(String, i64)>,
    /// The newest failed copy job to it.
    pub last_failure: Option<JobFacts>,
}

/// The verdict on one repository's copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyHealth {
    pub repository: String,
    pub newest: Option<(String, i64)>,
    /// The newest backup has no copy there, beyond the grace period.
    pub behind: bool,
    pub last_failure: Option<JobFacts>,
}

/// Judges the copies against the newest backup at `now_ms`; reasons for a status worse than
/// ok are added to `reasons`.
pub fn assess(
    facts: &[CopyFacts],
    last_backup: Option<&BackupFacts>,
    now_ms: i64,
    reasons: &mut Vec<String>,
) -> (Vec<CopyHealth>, Status) {
    let mut status = Status::Ok;
    let mut out = Vec::new();
    for f in facts {
        let behind = last_backup.is_some_and(|b| {
            let copied = f
                .newest
                .as_ref()
                .is_some_and(|(id, at)| *id == b.backup_id || *at >= b.recorded_at_ms);
            let waited = Duration::from_millis(
                u64::try_from(now_ms.saturating_sub(b.recorded_at_ms)).unwrap_or(0),
            );
            !copied && waited > COPY_GRACE
        });
        if behind && let Some(b) = last_backup {
            let newest = match &f.newest {
                Some((id, _)) => format!("the newest copy there is of backup {id}"),
                None => "no backup has a copy there".to_owned(),
            };
            let failure = match &f.last_failure {
                Some(j) => format!("; the last copy failed: {}", public_reason(&j.error)),
                None => String::new(),
            };
            reasons.push(format!(
                "the newest backup {} has no copy in {} after {} ({newest}{failure})",
                b.backup_id,
                f.repository,
                human(COPY_GRACE)
            ));
            status = Status::Warning;
        }
        out.push(CopyHealth {
            repository: f.repository.clone(),
            newest: f.newest.clone(),
            behind,
            last_failure: f.last_failure.clone(),
        });
    }
    (out, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKind, JobState, VerifyStatus};

    fn backup(id: &str, recorded_at_ms: i64) -> BackupFacts {
        BackupFacts {
            backup_id: id.into(),
            raw_size: 10,
            stored_size: 5,
            started_at_ms: recorded_at_ms - 10,
            finished_at_ms: recorded_at_ms,
            recorded_at_ms,
            verify_status: VerifyStatus::Unverified,
            verified_at_ms: None,
        }
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_backup_without_its_copy_after_the_grace_is_a_warning() {
        let b2 = backup("b2", 10 * HOUR);
        let copied = |id: &str, at: i64| CopyFacts {
            repository: "offsite".into(),
            newest: Some((id.into(), at)),
            last_failure: None,
        };
        // Copied: ok.
        let mut reasons = Vec::new();
        let (h, s) = assess(
            &[copied("b2", 10 * HOUR)],
            Some(&b2),
            12 * HOUR,
            &mut reasons,
        );
        assert_eq!((s, h[0].behind), (Status::Ok, false));
        // Not yet copied, within the grace: ok.
        let (_, s) = assess(
            &[copied("b1", HOUR)],
            Some(&b2),
            10 * HOUR + 60_000,
            &mut reasons,
        );
        assert_eq!(s, Status::Ok);
        assert!(reasons.is_empty(), "{reasons:?}");
        // Beyond it: a warning naming the backup, the repository and the last failure.
        let mut failed = copied("b1", HOUR);
        failed.last_failure = Some(JobFacts {
            job_id: "j".into(),
            kind: JobKind::Copy,
            state: JobState::Failed,
            backup_id: "b2".into(),
            error: "access denied (PUT s3://offsite/x)".into(),
            started_at_ms: None,
            finished_at_ms: 10 * HOUR,
        });
        let (h, s) = assess(&[failed], Some(&b2), 12 * HOUR, &mut reasons);
        assert_eq!((s, h[0].behind), (Status::Warning, true));
        assert!(
            reasons[0].contains("b2")
                && reasons[0].contains("offsite")
                && reasons[0].contains("backup b1")
                && reasons[0].contains("access denied"),
            "{reasons:?}"
        );
        // Never copied, no backup: nothing to say.
        let mut reasons = Vec::new();
        let (_, s) = assess(
            &[CopyFacts {
                repository: "offsite".into(),
                ..Default::default()
            }],
            None,
            12 * HOUR,
            &mut reasons,
        );
        assert_eq!(s, Status::Ok);
        assert!(reasons.is_empty());
    }
}
