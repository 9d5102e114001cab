//! Repository housekeeping jobs: deleting a backup (for retention) and listing the manifests in
//! a repository (for rebuilding the catalog).

use anyhow::{Context, Result, bail};
use lifeboat_proto as pb;

use crate::{
    backup::record_from_manifest,
    job::JobCtx,
    manifest::{MAX_MANIFEST_BYTES, Manifest},
    repo::{self, MANIFEST_FILE},
    restore::locate,
};

/// Deletes a backup: the manifest first (from then on it is no longer a backup), then the data.
/// Deleting a backup that is already gone succeeds, so an interrupted delete can be resumed.
pub async fn delete(ctx: &JobCtx, spec: &pb::DeleteSpec) -> Result<pb::DeleteResult> {
    let rec = spec
        .backup
        .as_ref()
        .context("delete job without a backup record")?;
    let loc = locate(ctx, rec)?;
    ctx.set_phase("deleting");
    let manifest = loc.repo.head(&loc.manifest_key).await?;
    let data = loc.repo.head(&loc.data_key).await?;
    if let Some(m) = &manifest {
        loc.repo.delete(&m.key).await?;
    }
    if let Some(d) = &data {
        loc.repo.delete(&d.key).await?;
    }
    tracing::info!(
        backup_id = %rec.backup_id,
        repository = %loc.repo.describe(),
        existed = manifest.is_some() || data.is_some(),
        "backup deleted"
    );
    Ok(pb::DeleteResult {
        existed: manifest.is_some() || data.is_some(),
        deleted_bytes: manifest.map_or(0, |m| m.size) + data.map_or(0, |d| d.size),
    })
}

/// Lists every backup in a repository by reading its manifests. Each record says whether its
/// data object is present with the recorded size; an unreadable manifest is logged and skipped.
pub async fn list(ctx: &JobCtx, spec: &pb::ListSpec) -> Result<pb::ListResult> {
    let repo = repo::open(&ctx.config, &spec.repository)?;
    ctx.set_phase("listing");
    let objects = repo.list("").await?;
    let mut backups = Vec::new();
    for o in &objects {
        if ctx.cancel.is_cancelled() {
            bail!("cancelled");
        }
        let Some(dir_key) = o.key.strip_suffix(&format!("/{MANIFEST_FILE}")) else {
            continue;
        };
        let parsed = async {
            let bytes = repo
                .get_bytes(&o.key, MAX_MANIFEST_BYTES)
                .await?
                .context("disappeared while listing")?;
            let m = Manifest::from_json(&bytes)?;
            if dir_key != repo::backup_dir_key(&m.environment, &m.target, &m.backup_id) {
                bail!("its environment, target and backup id do not match where it is stored");
            }
            Ok::<_, anyhow::Error>(m)
        }
        .await;
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(key = %o.key, "skipping a manifest that cannot be used: {e:#}");
                continue;
            }
        };
        let mut rec = record_from_manifest(&m, dir_key, String::new());
        rec.repository.clone_from(&spec.repository);
        match repo.head(&format!("{dir_key}/{}", m.data_file)).await? {
            None => {
                rec.verify_status = pb::VerifyStatus::Missing as i32;
                rec.verify_detail = format!("{} is missing from {}", rec.data_key, repo.describe());
            }
            Some(d) if d.size != m.stored_size => {
                rec.verify_status = pb::VerifyStatus::Corrupt as i32;
                rec.verify_detail = format!(
                    "{} holds {} bytes, the manifest recorded {}",
                    rec.data_key, d.size, m.stored_size
                );
            }
            Some(_) => {}
        }
        backups.push(rec);
    }
    tracing::info!(
        repository = %spec.repository,
        backups = backups.len(),
        "listed the repository's manifests"
    );
    Ok(pb::ListResult { backups })
}
