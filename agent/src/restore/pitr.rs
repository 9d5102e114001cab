//! Point-in-time recovery of a restored base backup: before anything is written, the WAL
//! archive must reach from the end of the backup to the recovery target without a gap (the
//! first missing segment is named, with what is recoverable instead); after the backup is
//! extracted and verified, the recovery settings go into the directory, so the server replays
//! the archived WAL through this agent (`wal-fetch`) when it starts.

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{Lsn, Recovery, RecoveryTarget};

use crate::{
    job::JobCtx,
    manifest::{Manifest, PhysicalInfo},
    repo::Repository,
    wal::{
        chain::{Archive, Reach},
        recovery, store,
    },
};

/// The recovery a restore sets up: the settings and what they do, for the report.
#[derive(Debug, Clone)]
pub(crate) struct Pitr {
    pub settings: String,
    pub summary: String,
}

fn time_of(ms: i64) -> String {
    lifeboat_common::time::rfc3339_seconds(ms).unwrap_or_else(|| ms.to_string())
}

/// Checks the archive for `recovery` from backup `m` and makes the settings. Errors name
/// what is missing and what is recoverable instead.
pub(crate) async fn plan(
    ctx: &JobCtx,
    repo: &Repository,
    m: &Manifest,
    physical: &PhysicalInfo,
    recovery: &Recovery,
) -> Result<Pitr> {
    // The WAL is fetched by this agent for its target: the backup must be of one of its own
    // physical targets.
    let local = ctx.config.targets.get(&m.target).filter(|t| {
        m.environment == ctx.config.environment && t.mode == crate::config::BackupMode::Physical
    });
    if local.is_none() {
        bail!(
            "point-in-time recovery replays the WAL archived by the agent of {}/{}; run the restore on that agent (restore --target {}/{}) ",
            m.environment,
            m.target,
            m.environment,
            m.target
        );
    }
    let stop: Lsn =
        physical
            .stop_lsn
            .parse()
            .map_err(|e: lifeboat_proto::domain::RecordError| {
                anyhow::anyhow!("backup manifest: {}", e.0)
            })?;
    let prefix = store::prefix(&m.environment, &m.target);
    let objects = repo
        .list(&prefix)
        .await
        .with_context(|| format!("list the WAL archive {prefix} in {}", repo.describe()))?;
    let archive = Archive::from_listing(&prefix, &objects, physical.wal_segment_size);
    let switches = match archive.latest_timeline() {
        Some(latest) if latest > physical.timeline => {
            let reader =
                crate::wal::keys::Reader::new(repo.clone(), prefix.clone(), ctx.config.clone());
            store::read_history(&reader, latest).await?
        }
        _ => Vec::new(),
    };
    let reach = archive.reach(physical.timeline, stop, &switches);
    let up_to = |r: &Reach| match &r.last {
        Some((seg, at)) => format!(
            "recoverable up to segment {seg}, archived at {}",
            time_of(*at)
        ),
        None => format!(
            "recoverable only to the backup's own end (WAL {stop}), nothing after it is archived"
        ),
    };
    let gap = |r: &Reach| {
        r.missing.as_ref().map(|seg| {
            format!(
                "segment {seg} is not in the repository ({}); {}",
                repo.describe(),
                up_to(r)
            )
        })
    };
    match &recovery.target {
        RecoveryTarget::Time(us) => {
            let ms = us / 1000;
            if m.finished_at_ms > ms {
                bail!(
                    "backup {} ended at {}, after the recovery target {}; restore an older base backup (restore --target {}/{} --to-time … picks one)",
                    m.backup_id,
                    time_of(m.finished_at_ms),
                    RecoveryTarget::pg_time(*us),
                    m.environment,
                    m.target
                );
            }
            let last_at = reach.last.as_ref().map_or(m.finished_at_ms, |l| l.1);
            if last_at < ms {
                bail!(
                    "{}",
                    gap(&reach).unwrap_or_else(|| format!(
                        "the archive does not reach {} yet: {}; recover with --latest, or wait until the server archives further (SELECT pg_switch_wal() forces it)",
                        RecoveryTarget::pg_time(*us),
                        up_to(&reach)
                    ))
                );
            }
        }
        RecoveryTarget::Lsn(l) => {
            if *l < stop {
                bail!(
                    "WAL location {l} is before the end of backup {} ({stop}); restore an older base backup",
                    m.backup_id
                );
            }
            let last = reach
                .last
                .as_ref()
                .map(|(seg, _)| archive.segno_of_name(seg));
            let need = archive.segno(*l);
            if need > archive.segno(stop) && last.is_none_or(|s| need > s) {
                bail!(
                    "{}",
                    gap(&reach).unwrap_or_else(|| format!(
                        "the archive does not reach WAL location {l} yet: {}",
                        up_to(&reach)
                    ))
                );
            }
        }
        RecoveryTarget::Latest | RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) => {
            if let Some(g) = gap(&reach) {
                ctx.report
                    .warn("recovery", format!("{g}; recovery stops there"));
            }
        }
    }
    let t = &ctx.config.wal;
    let command = recovery::restore_command(&t.client, &t.socket, &m.target);
    let settings = recovery::settings(
        &command,
        &recovery.target,
        recovery.action,
        &format!(
            "lifeboat restore of backup {} ({}/{}): recover to {}",
            m.backup_id, m.environment, m.target, recovery.target
        ),
    );
    let summary = format!(
        "recovery to {} then {} (restore_command fetches WAL through {}; {})",
        recovery.target,
        match recovery.target {
            RecoveryTarget::Latest => "promote".to_owned(),
            _ => recovery.action.as_str().to_owned(),
        },
        t.socket.display(),
        up_to(&reach)
    );
    Ok(Pitr { settings, summary })
}
