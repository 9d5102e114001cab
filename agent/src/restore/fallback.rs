//! Reading a backup from a repository holding a copy of it when its own repository does not
//! hold it whole (off-site copies): the coordinator sends the healthy repositories in order,
//! the agent takes the first that has the manifest and the data object of the recorded size.

use anyhow::Result;
use lifeboat_proto::domain::BackupRecord;

use super::{Located, locate};
use crate::job::JobCtx;

/// Like [`locate`], but when the backup's repository does not hold it whole (its manifest or
/// data object is missing or of another size, the repository cannot be read, or this agent
/// lacks it), the first of `fallbacks` that does — repositories holding a copy, in the
/// coordinator's order — with a warning in the job's report. With no repository holding it,
/// the backup's own: the checks that follow say what is wrong there.
pub async fn locate_readable(
    ctx: &JobCtx,
    rec: &BackupRecord,
    fallbacks: &[String],
) -> Result<Located> {
    let own = locate(ctx, rec);
    if fallbacks.is_empty() {
        return own;
    }
    let why = match &own {
        Ok(loc) => match whole(loc).await {
            None => return own,
            Some(why) => why,
        },
        Err(e) => format!("{e:#}"),
    };
    for r in fallbacks {
        let mut copy = rec.clone();
        copy.repository.clone_from(r);
        let Ok(loc) = locate(ctx, &copy) else {
            continue;
        };
        if whole(&loc).await.is_none() {
            ctx.report.warn(
                "backup",
                format!(
                    "backup {} cannot be read from repository {}: {why}; reading its copy in repository {r} ({}) instead",
                    rec.backup_id,
                    rec.repository,
                    loc.repo.describe()
                ),
            );
            return Ok(loc);
        }
    }
    own
}

/// Why `loc` does not hold its backup whole (manifest there, data object of the recorded
/// size); `None` if it does.
async fn whole(loc: &Located) -> Option<String> {
    match loc.repo.head(&loc.manifest_key).await {
        Ok(Some(_)) => {}
        Ok(None) => return Some(format!("{} is missing", loc.manifest_key)),
        Err(e) => return Some(format!("{e}")),
    }
    match loc.repo.head(&loc.data_key).await {
        Ok(Some(h)) if h.size == loc.expected.stored.size => None,
        Ok(Some(h)) => Some(format!(
            "{} holds {} bytes, the catalog recorded {}",
            loc.data_key, h.size, loc.expected.stored.size
        )),
        Ok(None) => Some(format!("{} is missing", loc.data_key)),
        Err(e) => Some(format!("{e}")),
    }
}
