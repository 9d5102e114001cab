//! Key rotation of encrypted backups (`lifeboat keys rotate`, ADR 0025): each backup's key
//! object is opened with this agent's identity and replaced, in one atomic write, by the same
//! backup key encrypted to (its recipients + add - remove). Data objects are never touched, so
//! a rotation of any number of backups writes a few hundred bytes per backup, and a rotation
//! cut short leaves each backup readable by its old set or its new one.

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{BackupRecord, RotatedKey};

use crate::{
    crypt::{self, Recipients},
    job::JobCtx,
    repo::{self, backup_dir_key},
    work::RotateKeysWork,
};

pub async fn rotate(ctx: &JobCtx, work: &RotateKeysWork) -> Result<Vec<RotatedKey>> {
    let target = ctx.config.targets.get(&work.target).with_context(|| {
        format!(
            "this agent has no target {:?}; check the agent's [[target]] list",
            work.target
        )
    })?;
    for r in work.add.iter().chain(&work.remove) {
        lifeboat_common::keys::parse_recipient(r)?;
    }
    if work.add.is_empty() && work.remove.is_empty() {
        bail!("nothing to rotate: name recipients to --add or --remove");
    }
    let identities = crypt::agent_identities(&ctx.config)?;
    if identities.is_empty() {
        bail!(
            "this agent holds no identity_file, so it cannot open the key objects it would rotate; run the rotation on an agent configured with identity_file for the current keys"
        );
    }
    ctx.set_phase(if work.dry_run {
        "planning the rotation"
    } else {
        "rotating keys"
    });
    let mut out = Vec::new();
    let (mut changed, mut failed) = (0usize, 0usize);
    for (rec, repositories) in &work.items {
        for repository in repositories {
            if ctx.cancel.is_cancelled() {
                bail!(
                    "cancelled after {changed} key object(s) were rotated; the rest keep their recipients"
                );
            }
            let r = rotate_one(ctx, rec, repository, work, &identities).await;
            let rotated = match r {
                Ok(r) => r,
                Err(e) => RotatedKey {
                    backup_id: rec.backup_id.to_string(),
                    repository: repository.clone(),
                    recipients: Vec::new(),
                    key_ids: Vec::new(),
                    changed: false,
                    error: format!("{e:#}"),
                },
            };
            if !rotated.error.is_empty() {
                failed += 1;
                ctx.report.error(
                    "rotation",
                    format!(
                        "backup {} in {}: {}",
                        rotated.backup_id, rotated.repository, rotated.error
                    ),
                );
            } else if rotated.changed {
                changed += 1;
            }
            out.push(rotated);
        }
    }
    let verb = if work.dry_run {
        "would rotate"
    } else {
        "rotated"
    };
    ctx.report.ok(
        "rotation",
        format!(
            "{verb} {changed} key object(s) of target {}; {} already had the new recipients; {failed} failed",
            target.name,
            out.len() - changed - failed
        ),
    );
    // A physical target's WAL archive has keys of its own, rotated with its backups'.
    if target.mode == crate::config::BackupMode::Physical {
        let (wal_changed, wal_same, wal_failed) =
            rotate_wal_keys(ctx, target, work, &identities).await?;
        ctx.report.ok(
            "rotation",
            format!(
                "{verb} {wal_changed} WAL key object(s) of target {}; {wal_same} already had the new recipients; {wal_failed} failed",
                target.name
            ),
        );
        if wal_failed > 0 {
            bail!(
                "{wal_failed} WAL key object(s) of target {} could not be rotated (see the report); the backups' keys above were rotated: run the rotation again once the cause is fixed (it skips what is done)",
                target.name
            );
        }
    }
    if !work.dry_run && changed > 0 {
        ctx.report.info(
            "rotation",
            "new backups use the recipients in the agent's config: change encryption.recipients there too (and restart the agent, or edit its recipients_file)",
        );
    }
    Ok(out)
}

/// `current` without the removed recipients, then the added ones not already there.
fn next_recipients(current: &[String], work: &RotateKeysWork) -> Vec<String> {
    let mut next: Vec<String> = current
        .iter()
        .filter(|r| !work.remove.contains(r))
        .cloned()
        .collect();
    for r in &work.add {
        if !next.contains(r) {
            next.push(r.clone());
        }
    }
    next
}

async fn rotate_one(
    ctx: &JobCtx,
    rec: &BackupRecord,
    repository: &str,
    work: &RotateKeysWork,
    identities: &[age::x25519::Identity],
) -> Result<RotatedKey> {
    if rec.encryption.is_none() {
        bail!("it is stored in plaintext; there is no key to rotate");
    }
    if !ctx.config.repositories.contains_key(repository) {
        bail!("this agent has no repository {repository:?}");
    }
    let repo = repo::open(&ctx.config, repository)?;
    let dir = backup_dir_key(rec.target.env(), rec.target.name(), rec.backup_id.as_str());
    let key_key = format!("{dir}/{}", crypt::KEY_FILE);
    let of = format!("backup {}", rec.backup_id);
    let (recipients, changed) = rotate_object(ctx, &repo, &key_key, &of, work, identities).await?;
    if changed && !work.dry_run {
        tracing::info!(backup_id = %rec.backup_id, repository, key_ids = %recipients.key_ids().join(","), "key object rotated");
    }
    Ok(RotatedKey {
        backup_id: rec.backup_id.to_string(),
        repository: repository.to_owned(),
        recipients: recipients.strings(),
        key_ids: recipients.key_ids(),
        changed,
        error: String::new(),
    })
}

/// Rotates the key object `key_key` (the key of `of`): its recipients after the rotation and
/// whether they changed (or, in a dry run, would).
async fn rotate_object(
    ctx: &JobCtx,
    repo: &repo::Repository,
    key_key: &str,
    of: &str,
    work: &RotateKeysWork,
    identities: &[age::x25519::Identity],
) -> Result<(Recipients, bool)> {
    let object = repo
        .get_bytes(key_key, crypt::MAX_KEY_OBJECT)
        .await?
        .with_context(|| format!("{key_key} is missing from {}", repo.describe()))?;
    // Already rotated (a rotation cut short and run again), by its header: nothing to do, even
    // where this agent's key no longer opens it. Otherwise it is opened and its own
    // (authenticated) recipient list is the one rotated.
    let listed = crypt::recipients_of(&object);
    let (key, current) = match crypt::open_key(key_key, &object, identities) {
        Ok(opened) => opened,
        Err(crypt::KeyError::NoIdentity { .. })
            if !listed.is_empty() && next_recipients(&listed, work) == listed =>
        {
            return Ok((Recipients::parse(&listed)?, false));
        }
        Err(e) => return Err(e.into()),
    };
    let next = next_recipients(&current, work);
    if next.is_empty() {
        bail!(
            "removing {} would leave no recipient: nobody could ever decrypt {of} again; add a recipient in the same rotation",
            work.remove.join(", ")
        );
    }
    let recipients = Recipients::parse(&next)?;
    let unchanged = next == current;
    if unchanged || work.dry_run {
        return Ok((recipients, !unchanged));
    }
    let sealed = crypt::seal_key(&key, &recipients, of)?;
    repo.replace_bytes(key_key, sealed.clone().into(), &ctx.cancel)
        .await
        .with_context(|| format!("replace {key_key} in {}", repo.describe()))?;
    // Read back: the object now stored is the one written (the old one is gone).
    let back = repo.get_bytes(key_key, crypt::MAX_KEY_OBJECT).await?;
    if back.as_deref() != Some(&sealed[..]) {
        bail!(
            "{key_key} in {} does not read back as written; rotate again",
            repo.describe()
        );
    }
    Ok((recipients, true))
}

/// Rotates the WAL keys of physical target `target` (in its repository, where its WAL is
/// archived): how many changed; each failure is in the report, and fails the job.
async fn rotate_wal_keys(
    ctx: &JobCtx,
    target: &crate::config::TargetConfig,
    work: &RotateKeysWork,
    identities: &[age::x25519::Identity],
) -> Result<(usize, usize, usize)> {
    let repo = repo::open(&ctx.config, &target.repository)?;
    let prefix = crate::wal::store::prefix(&ctx.config.environment, &target.name);
    let dir = format!("{prefix}/{}", crate::wal::keys::KEYS_DIR);
    let listing = repo
        .list(&dir)
        .await
        .with_context(|| format!("list {dir} in {}", repo.describe()))?;
    let of = format!("the WAL of {}", target.name);
    let (mut changed, mut same, mut failed) = (0, 0, 0);
    for o in crate::wal::keys::listed_keys(&prefix, &listing) {
        if ctx.cancel.is_cancelled() {
            bail!(
                "cancelled after {changed} WAL key object(s) were rotated; the rest keep their recipients"
            );
        }
        match rotate_object(ctx, &repo, &o.key, &of, work, identities).await {
            Ok((_, true)) => changed += 1,
            Ok((_, false)) => same += 1,
            Err(e) => {
                failed += 1;
                ctx.report
                    .error("rotation", format!("WAL key {}: {e:#}", o.key));
            }
        }
    }
    Ok((changed, same, failed))
}
