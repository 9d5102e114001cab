//! Repository housekeeping jobs: deleting a backup (for retention), listing the manifests in a
//! repository (for rebuilding the catalog), and writing the pin markers that let a rebuild find
//! pins again.

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{BackupRecord, Deleted, Listed, Pin, VerifyStatus};

use crate::{
    backup::record_from_manifest,
    job::JobCtx,
    manifest::{MAX_MANIFEST_BYTES, Manifest},
    repo::{self, MANIFEST_FILE, Repository},
    restore::locate,
};

/// The pin marker beside a pinned backup's manifest: who pinned it, when and why.
pub const PIN_FILE: &str = "pin.json";
/// A pin marker larger than this is not one lifeboat wrote.
const MAX_PIN_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinMarker {
    backup_id: String,
    pinned_by: String,
    pinned_at_ms: i64,
    reason: String,
}

/// Deletes a backup: the manifest first (from then on it is no longer a backup), then the data.
/// Deleting a backup that is already gone succeeds, so an interrupted delete can be resumed.
pub async fn delete(ctx: &JobCtx, rec: &BackupRecord) -> Result<Deleted> {
    own_environment(ctx, rec, "delete")?;
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
    // The globals captured beside the data, when there are any.
    if let Some(dir) = crate::repo::dir_of(&loc.manifest_key) {
        loc.repo
            .delete(&format!("{dir}/{}", crate::backup::GLOBALS_FILE))
            .await?;
        loc.repo
            .delete(&format!(
                "{dir}/{}{}",
                crate::backup::GLOBALS_FILE,
                crate::crypt::AGE_SUFFIX
            ))
            .await?;
    }
    // An encrypted backup's key object goes last: once the rest is gone it opens nothing.
    if let Some(key_key) = &loc.key_key {
        loc.repo.delete(key_key).await?;
    }
    // A marker left from an earlier pin (retention never deletes a pinned backup).
    loc.repo.delete(&pin_key(&loc.manifest_key)).await?;
    tracing::info!(
        backup_id = %rec.backup_id,
        repository = %loc.repo.describe(),
        existed = manifest.is_some() || data.is_some(),
        "backup deleted"
    );
    Ok(Deleted {
        existed: manifest.is_some() || data.is_some(),
        deleted_bytes: manifest.map_or(0, |m| m.size) + data.map_or(0, |d| d.size),
    })
}

/// Changes to the repository (deletes, pin markers) are made only for backups of this agent's
/// own environment (review L7): a coordinator that has been taken over cannot use an agent of
/// one environment to remove another environment's backups from a shared bucket.
pub(crate) fn own_environment(ctx: &JobCtx, rec: &BackupRecord, what: &str) -> Result<()> {
    let own = &ctx.config.environment;
    if rec.environment() != own {
        bail!(
            "refused to {what} backup {} of environment {:?}: this agent serves environment {own:?} and changes only its own environment's backups; run the job on an agent of that environment",
            rec.backup_id,
            rec.environment()
        );
    }
    Ok(())
}

/// Lists every backup in a repository by reading its manifests. Each record says whether its
/// data object is present with the recorded size; an unreadable manifest is logged and skipped.
pub async fn list(ctx: &JobCtx, repository: &str) -> Result<Vec<Listed>> {
    let repo = repo::open(&ctx.config, repository)?;
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
        // A manifest lifeboat could read but the catalog could not take fails the listing
        // rather than being left out: left out, its backup would be recorded as missing.
        let mut rec = record_from_manifest(&m, dir_key, String::new()).with_context(|| {
            format!(
                "{} in {} is not a backup record the catalog can take; move it aside, then list again",
                o.key,
                repo.describe()
            )
        })?;
        rec.repository = repository.to_owned();
        // An encrypted backup's recipients now are those its key object names (a rotation
        // changes them; the manifest keeps those of the backup's time). A missing key object
        // leaves the backup unreadable by anyone.
        if let Some(enc) = rec.encryption.as_mut() {
            match repo
                .get_bytes(&enc.key_object, crate::crypt::MAX_KEY_OBJECT)
                .await?
            {
                Some(object) => {
                    let listed = crate::crypt::recipients_of(&object);
                    if let Ok(r) = crate::crypt::Recipients::parse(&listed) {
                        enc.recipients = r.strings();
                        enc.key_ids = r.key_ids();
                    }
                }
                None => {
                    rec.verify_status = VerifyStatus::Missing;
                    rec.verify_detail = format!(
                        "{} is missing from {}: the backup cannot be decrypted",
                        enc.key_object,
                        repo.describe()
                    );
                }
            }
        }
        let pin = read_pin(&repo, dir_key, &m.backup_id).await;
        match repo.head(&format!("{dir_key}/{}", m.data_file)).await? {
            None => {
                rec.verify_status = VerifyStatus::Missing;
                rec.verify_detail = format!("{} is missing from {}", rec.data_key, repo.describe());
            }
            Some(d) if d.size != m.stored_size => {
                rec.verify_status = VerifyStatus::Corrupt;
                rec.verify_detail = format!(
                    "{} holds {} bytes, the manifest recorded {}",
                    rec.data_key, d.size, m.stored_size
                );
            }
            Some(_) => {}
        }
        backups.push(Listed { backup: rec, pin });
    }
    tracing::info!(
        %repository,
        backups = backups.len(),
        "listed the repository's manifests"
    );
    Ok(backups)
}

/// `env/target/id/pin.json` for `env/target/id/manifest.json`.
fn pin_key(manifest_key: &str) -> String {
    match manifest_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{PIN_FILE}"),
        None => PIN_FILE.to_owned(),
    }
}

/// The pin marker beside a manifest, if there is a valid one (an unreadable one is logged and
/// ignored: the catalog's pins are what retention obeys).
async fn read_pin(repo: &Repository, dir_key: &str, backup_id: &str) -> Option<Pin> {
    let key = format!("{dir_key}/{PIN_FILE}");
    let bytes = match repo.get_bytes(&key, MAX_PIN_BYTES).await {
        Ok(b) => b?,
        Err(e) => {
            tracing::warn!(key = %key, "cannot read the pin marker: {e}");
            return None;
        }
    };
    match serde_json::from_slice::<PinMarker>(&bytes) {
        Ok(p) if p.backup_id == backup_id => Some(Pin {
            pinned_by: p.pinned_by,
            pinned_at_ms: p.pinned_at_ms,
            reason: p.reason,
        }),
        Ok(_) => {
            tracing::warn!(key = %key, "ignoring a pin marker of another backup");
            None
        }
        Err(e) => {
            tracing::warn!(key = %key, "ignoring a pin marker that is not valid: {e}");
            None
        }
    }
}

/// Writes the backup's pin marker (the pin as the catalog holds it now), or removes it when
/// the backup is no longer pinned. A backup that is gone from the repository is left alone.
pub async fn pin(ctx: &JobCtx, rec: &BackupRecord, pin: Option<&Pin>) -> Result<()> {
    own_environment(ctx, rec, "change the pin marker of")?;
    let loc = locate(ctx, rec)?;
    ctx.set_phase("pinning");
    let key = pin_key(&loc.manifest_key);
    if loc.repo.head(&loc.manifest_key).await?.is_none() {
        tracing::info!(backup_id = %rec.backup_id, "the backup is gone from the repository; no pin marker written");
        return Ok(());
    }
    // Markers are replaced, not appended: remove the old one first (writes are create-only).
    loc.repo.delete(&key).await?;
    let Some(p) = pin else {
        tracing::info!(backup_id = %rec.backup_id, "pin marker removed");
        return Ok(());
    };
    let marker = PinMarker {
        backup_id: rec.backup_id.to_string(),
        pinned_by: p.pinned_by.clone(),
        pinned_at_ms: p.pinned_at_ms,
        reason: p.reason.clone(),
    };
    let mut json = serde_json::to_vec_pretty(&marker).context("encode the pin marker")?;
    json.push(b'\n');
    loc.repo
        .put_bytes(&key, json.into(), &ctx.cancel)
        .await
        .with_context(|| format!("write the pin marker to {}", loc.repo.describe()))?;
    tracing::info!(backup_id = %rec.backup_id, "pin marker written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use lifeboat_common::secret::write_private_file;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// An agent of environment `dev` whose fs repository `shared` is at `repo`.
    fn dev_agent(dir: &Path, repo: &Path) -> JobCtx {
        for f in ["ca.pem", "dev-1.pem"] {
            std::fs::write(dir.join(f), "unused").expect("write tls file");
        }
        write_private_file(&dir.join("dev-1.key"), b"unused").expect("write key");
        let text = format!(
            "name = \"dev-1\"\nenvironment = \"dev\"\ncoordinator = \"https://coord.test:7443\"\n\
             state_dir = \"{state}\"\n[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/dev-1.pem\"\nkey = \"{d}/dev-1.key\"\n\
             [[repository]]\nname = \"shared\"\nkind = \"fs\"\npath = \"{repo}\"\n",
            state = dir.join("state").display(),
            d = dir.display(),
            repo = repo.display(),
        );
        let config = crate::config::parse(&dir.join("agent.toml"), &text).expect("config");
        JobCtx::new("job".into(), Arc::new(config), CancellationToken::new())
    }

    /// A backup of `env/orders` stored in `repo`, and its record.
    fn stored_backup(repo: &Path, env: &str) -> BackupRecord {
        let id = "20261127T233000Z-7f3a9c";
        let dir = repo.join(env).join("orders").join(id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(MANIFEST_FILE), "{}").expect("manifest");
        std::fs::write(dir.join(repo::PG_DATA_FILE), "data").expect("data");
        let mut rec = crate::work::testing::record(env, crate::config::Engine::Postgres);
        rec.repository = "shared".into();
        rec
    }

    // Review L7: a delete (or pin) job for another environment's backup is refused and leaves
    // the backup in place; the agent's own environment's backups are deleted as before.
    #[tokio::test]
    async fn deletes_only_backups_of_its_own_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let ctx = dev_agent(dir.path(), &repo);

        let prod = stored_backup(&repo, "prod");
        let e = delete(&ctx, &prod)
            .await
            .expect_err("prod backup deleted by a dev agent");
        let msg = format!("{e:#}");
        assert!(msg.contains("environment \"prod\""), "{msg}");
        assert!(msg.contains("serves environment \"dev\""), "{msg}");
        let prod_dir = repo.join("prod/orders").join(prod.backup_id.as_str());
        assert!(prod_dir.join(MANIFEST_FILE).is_file(), "manifest removed");
        assert!(prod_dir.join(repo::PG_DATA_FILE).is_file(), "data removed");
        // A record whose environment field was changed to the agent's, but whose target is
        // still prod's, does not even become a job.
        let mut forged = lifeboat_proto::BackupRecord::from(&prod);
        forged.environment = "dev".into();
        BackupRecord::try_from(forged).expect_err("forged record accepted");
        pin(&ctx, &prod, None)
            .await
            .expect_err("pin marker of prod changed");
        assert!(prod_dir.join(MANIFEST_FILE).is_file(), "manifest removed");

        let dev = stored_backup(&repo, "dev");
        let r = delete(&ctx, &dev).await.expect("delete own backup");
        assert!(r.existed);
        assert!(
            !repo
                .join("dev/orders/20261127T233000Z-7f3a9c/manifest.json")
                .exists()
        );
    }

    /// A manifest for `dev/orders` in `repo`, with `sha` as both digests.
    fn write_manifest(repo: &Path, sha: &str) {
        let id = "20261127T233000Z-7f3a9c";
        let dir = repo.join("dev/orders").join(id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let json = format!(
            r#"{{
  "schema_version": 1, "backup_id": "{id}", "environment": "dev",
  "target": "orders", "agent": "dev-1", "repository": "shared", "engine": "postgres",
  "provider": "postgres", "database": "orders",
  "server": {{"version": "15.19", "version_num": 150019, "system_identifier": "1",
             "encoding": "UTF8", "collate": "C", "ctype": "C"}},
  "tool": {{"name": "pg_dump", "version": "15.19"}}, "format": "pg_dump-custom",
  "compression": {{"algorithm": "zstd", "level": 3}}, "data_file": "{data}",
  "raw_size": 4, "raw_sha256": "{sha}", "stored_size": 4, "stored_sha256": "{sha}",
  "started_at": "", "finished_at": "", "started_at_ms": 1, "finished_at_ms": 2,
  "row_counts_kind": "exact", "row_counts": [], "lifeboat_version": "0"
}}"#,
            data = repo::PG_DATA_FILE,
        );
        std::fs::write(dir.join(MANIFEST_FILE), json).expect("manifest");
        std::fs::write(dir.join(repo::PG_DATA_FILE), "data").expect("data");
    }

    // A manifest that reads but that the catalog could not take fails the listing: left out,
    // a rebuild would mark its backup missing.
    #[tokio::test]
    async fn a_manifest_the_catalog_cannot_take_fails_the_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let ctx = dev_agent(dir.path(), &repo);
        write_manifest(&repo, &"a".repeat(64));
        let listed = list(&ctx, "shared").await.expect("a good listing");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].backup.repository, "shared");

        write_manifest(&repo, &"A".repeat(64));
        let e = list(&ctx, "shared").await.expect_err("a bad record listed");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("not a backup record the catalog can take") && msg.contains("raw_sha256"),
            "{msg}"
        );
    }
}
