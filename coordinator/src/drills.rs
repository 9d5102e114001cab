//! Restore drills: which backup a drill restores and the restore job that does it. The
//! agent restores into a new scratch database (`lifeboat_drill_…`) on the drill target,
//! checks it (hashes, size, every table's row count, the target's `drill_checks`), measures
//! the time to that usable database and drops it. The Control call and the drill schedules
//! both queue drills through here.

use lifeboat_common::names::TargetName;

use crate::{
    catalog::Catalog,
    error::{Error, Result},
    model::{Backup, JobKind, NewJob, RestoreParams, TargetRecord, VerifyStatus},
};

/// Every drill's scratch database starts with this (the agent drops no other name).
pub const DRILL_DATABASE_PREFIX: &str = "lifeboat_drill_";

/// How many of a target's newest backups are looked at for a good one.
const CANDIDATES: u32 = 50;

/// The backup a drill of `target` restores: `backup_id` (which must be one of `target`'s), or
/// the newest backup of `target` not known to be corrupt or missing and not being deleted.
/// Physical base backups are refused.
pub async fn pick_backup(
    catalog: &Catalog,
    target: &TargetName,
    backup_id: Option<&str>,
) -> Result<Backup> {
    let deleting = catalog.deleting_backups().await?;
    let backup = match backup_id {
        Some(id) => {
            let b = catalog.get_backup(id).await?.ok_or_else(|| {
                Error::NotFound(format!(
                    "backup {id} is not in the catalog; run `lifeboat backup list --target {target}` to see backups"
                ))
            })?;
            if &b.target != target {
                return Err(Error::InvalidArgument(format!(
                    "backup {id} is a backup of {}, not of {target}; drill {} instead, or name a backup of {target}",
                    b.target, b.target
                )));
            }
            if deleting.contains(b.backup_id.as_str()) {
                return Err(Error::FailedPrecondition(format!(
                    "backup {id} is being deleted by retention; drill another backup"
                )));
            }
            b
        }
        None => catalog
            .list_backups(Some(target.as_str()), CANDIDATES)
            .await?
            .into_iter()
            .find(|b| {
                !matches!(b.verify_status, VerifyStatus::Corrupt | VerifyStatus::Missing)
                    && !deleting.contains(b.backup_id.as_str())
            })
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{target} has no good backup to drill; take one with `lifeboat backup run {target} --wait`"
                ))
            })?,
    };
    if backup.is_physical() {
        return Err(Error::FailedPrecondition(format!(
            "backup {} of {target} is a physical base backup; restore drills of physical targets are not supported yet: restore one with `lifeboat restore {} --data-dir DIR` and check it by hand",
            backup.backup_id, backup.backup_id
        )));
    }
    Ok(backup)
}

/// The restore job of a drill of `of` (its `backup`) into a new scratch database on `into`.
pub fn drill_job(
    of: &TargetName,
    into: &TargetRecord,
    backup: &Backup,
    requested_by: &str,
    now_ms: i64,
) -> Result<NewJob> {
    if into.engine != backup.engine {
        return Err(Error::InvalidArgument(format!(
            "backup {} is a {} backup but the drill target {} is {}; drill into a {} target",
            backup.backup_id, backup.engine, into.name, into.engine, backup.engine
        )));
    }
    let mut job = NewJob::new(
        JobKind::Restore,
        into.name.clone(),
        &into.agent,
        requested_by,
        now_ms,
    );
    job.backup_id = Some(backup.backup_id.clone());
    let database = scratch_database(&job.id);
    lifeboat_common::names::validate_database(&database)?;
    job.restore = Some(RestoreParams {
        database,
        drill_of: Some(of.clone()),
        ..RestoreParams::default()
    });
    Ok(job)
}

/// `lifeboat_drill_20261127t233000z_7f3a9c`: new for each job, within 63 bytes.
pub fn scratch_database(job_id: &str) -> String {
    let mut name = format!(
        "{DRILL_DATABASE_PREFIX}{}",
        job_id.to_ascii_lowercase().replace('-', "_")
    );
    name.truncate(63);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_valid_and_marked() {
        let n = scratch_database("20261127T233000Z-7f3a9c");
        assert_eq!(n, "lifeboat_drill_20261127t233000z_7f3a9c");
        lifeboat_common::names::validate_database(&n).expect("valid");
        assert!(scratch_database(&"X".repeat(80)).len() <= 63);
    }
}
