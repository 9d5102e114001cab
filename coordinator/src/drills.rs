//! Restore drills: which backup a drill restores and the restore job that does it. The
//! agent restores into a new scratch database (`lifeboat_drill_…`) on the drill target,
//! checks it (hashes, size, every table's row count, the target's `drill_checks`), measures
//! the time to that usable database and drops it. A physical base backup is drilled as a
//! point-in-time restore to the latest archived WAL into a new data directory of that name
//! under the drill target's first `restore_data_dirs` entry (the agent knows its directories,
//! the coordinator does not), started, checked, stopped and removed. The Control call and the
//! drill schedules both queue drills through here.

use lifeboat_common::names::TargetName;
use lifeboat_proto::domain::{Recovery, RecoveryAction, RecoveryTarget, Restored};

use crate::{
    catalog::Catalog,
    error::{Error, Result},
    model::{Backup, JobKind, NewJob, RestoreParams, TargetRecord, VerifyStatus},
};

/// Every drill's scratch database (or data directory) starts with this (the agent drops or
/// removes no other name).
pub const DRILL_DATABASE_PREFIX: &str = "lifeboat_drill_";

/// How many of a target's newest backups are looked at for a good one.
const CANDIDATES: u32 = 50;

/// The backup a drill of `target` restores: `backup_id` (which must be one of `target`'s), or
/// the newest backup of `target` not known to be corrupt or missing and not being deleted.
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
    Ok(backup)
}

/// The restore job of a drill of `of` (its `backup`) into a new scratch database on `into`;
/// of a physical base backup, a point-in-time restore to the latest archived WAL into a new
/// data directory of that name, which the agent makes under `into`'s first
/// `restore_data_dirs` entry.
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
    let recovery = backup.is_physical().then_some(Recovery {
        target: RecoveryTarget::Latest,
        action: RecoveryAction::Promote,
    });
    job.restore = Some(RestoreParams {
        database,
        recovery,
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

/// What is wrong with a drill's result for the drill asked for (`params`), if anything: a
/// logical drill reports the scratch database asked for and no data directory; a physical one
/// (a point-in-time recovery asked for) no database and a data directory named as asked.
pub fn drill_mismatch(params: Option<&RestoreParams>, restored: &Restored) -> Option<String> {
    let Some(params) = params else {
        return Some("a drill result for a job that asked for no restore".to_owned());
    };
    let expected = params.database.as_str();
    match (&params.recovery, &restored.data_dir) {
        (None, None) if restored.database == expected => None,
        (None, None) => Some(format!(
            "a drill of database {}, not the one asked for",
            restored.database
        )),
        (None, Some(dir)) => Some(format!(
            "a drill into data directory {dir}, but a drill into database {expected} was asked for"
        )),
        (Some(_), Some(dir))
            if restored.database.is_empty()
                && dir.path().file_name().and_then(|n| n.to_str()) == Some(expected) =>
        {
            None
        }
        (Some(_), Some(dir)) => Some(format!(
            "a drill into data directory {dir}, not a new directory named {expected}"
        )),
        (Some(_), None) => Some(format!(
            "a drill of database {:?}, but a drill into a data directory named {expected} was asked for",
            restored.database
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_proto::domain::DataDir;

    fn restored(database: &str, dir: Option<&str>) -> Restored {
        Restored {
            database: database.to_owned(),
            data_dir: dir.map(|d| DataDir::parse(d.to_owned()).expect("dir")),
            row_counts: Vec::new(),
            raw_bytes: 0,
        }
    }

    #[test]
    fn a_drill_result_must_match_the_drill_asked_for() {
        let name = "lifeboat_drill_20261127t233000z_7f3a9c";
        let logical = RestoreParams {
            database: name.to_owned(),
            ..RestoreParams::default()
        };
        let physical = RestoreParams {
            database: name.to_owned(),
            recovery: Some(Recovery {
                target: RecoveryTarget::Latest,
                action: RecoveryAction::Promote,
            }),
            ..RestoreParams::default()
        };
        let dir = format!("/srv/pg/{name}");
        assert_eq!(drill_mismatch(Some(&logical), &restored(name, None)), None);
        assert_eq!(
            drill_mismatch(Some(&physical), &restored("", Some(&dir))),
            None
        );
        for (params, result) in [
            (&logical, restored("app", None)),
            (&logical, restored("", Some(&dir))),
            (&physical, restored(name, None)),
            (
                &physical,
                restored("", Some("/srv/pg/lifeboat_drill_other")),
            ),
            (&physical, restored("", Some("/srv/pg/data"))),
            (&physical, restored(name, Some(&dir))),
        ] {
            assert!(
                drill_mismatch(Some(params), &result).is_some(),
                "{result:?} accepted for {params:?}"
            );
        }
        assert!(drill_mismatch(None, &restored(name, None)).is_some());
    }

    #[test]
    fn a_physical_backup_is_drilled_to_the_latest_archived_wal() {
        let id = "20261127T233000Z-7f3a9c";
        let wire = |format: &str, data: &str| lifeboat_proto::v1::BackupRecord {
            backup_id: id.into(),
            target: "prod/orders".into(),
            environment: "prod".into(),
            agent: "prod-1".into(),
            repository: "local".into(),
            engine: lifeboat_proto::v1::Engine::Postgres.into(),
            provider: "postgres".into(),
            database: "orders".into(),
            raw_size: 10,
            stored_size: 5,
            raw_sha256: "0".repeat(64),
            stored_sha256: "f".repeat(64),
            started_at_ms: 1,
            finished_at_ms: 2,
            format: format.into(),
            data_key: format!("prod/orders/{id}/{data}"),
            manifest_key: format!("prod/orders/{id}/manifest.json"),
            ..Default::default()
        };
        let physical = Backup::try_from(wire(
            lifeboat_proto::domain::PG_BASEBACKUP_FORMAT,
            "data.tar.zst",
        ))
        .expect("physical");
        let logical = Backup::try_from(wire("", "data.pgdump.zst")).expect("logical");
        assert!(physical.is_physical() && !logical.is_physical());
        let of: TargetName = "prod/orders".parse().expect("name");
        let into = TargetRecord {
            encryption: None,
            name: of.clone(),
            agent: "prod-1".into(),
            engine: physical.engine,
            provider: "postgres".into(),
            repository: "local".into(),
            database: "orders".into(),
            copy_to: Vec::new(),
        };
        let job = drill_job(&of, &into, &physical, "op", 1).expect("job");
        let p = job.restore.expect("restore params");
        assert_eq!(p.database, scratch_database(&job.id));
        assert!(p.data_dir.is_empty(), "the agent places the directory");
        assert_eq!(
            p.recovery,
            Some(Recovery {
                target: RecoveryTarget::Latest,
                action: RecoveryAction::Promote
            })
        );
        assert_eq!(p.drill_of.as_ref(), Some(&of));
        let job = drill_job(&of, &into, &logical, "op", 1).expect("job");
        assert_eq!(job.restore.expect("restore params").recovery, None);
    }

    #[test]
    fn scratch_names_are_valid_and_marked() {
        let n = scratch_database("20261127T233000Z-7f3a9c");
        assert_eq!(n, "lifeboat_drill_20261127t233000z_7f3a9c");
        lifeboat_common::names::validate_database(&n).expect("valid");
        assert!(scratch_database(&"X".repeat(80)).len() <= 63);
    }
}
