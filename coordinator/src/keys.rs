//! The outcome of a key rotation (`keys rotate`): each backup whose key object was rotated in
//! every repository holding it is recorded with its new recipients; one that failed anywhere
//! keeps its record (it opens with its old keys in at least one repository).

use std::collections::BTreeMap;

use lifeboat_proto::domain::{Encryption, RotatedKey};

use crate::catalog::{Catalog, CatalogError};

/// Applies a rotation's result to the catalog. Returns the job's detail and, when some key
/// objects could not be rotated, the job's error naming them.
pub async fn apply_rotation(
    catalog: &Catalog,
    keys: &[RotatedKey],
    dry_run: bool,
) -> Result<(String, Option<String>), CatalogError> {
    let mut by_backup: BTreeMap<&str, Vec<&RotatedKey>> = BTreeMap::new();
    for k in keys {
        by_backup.entry(k.backup_id.as_str()).or_default().push(k);
    }
    let (mut changed, mut unchanged, mut failed) = (0usize, 0usize, Vec::new());
    for (backup_id, objects) in by_backup {
        if let Some(bad) = objects.iter().find(|k| !k.error.is_empty()) {
            failed.push(format!("{backup_id} in {}: {}", bad.repository, bad.error));
            continue;
        }
        let first = objects[0];
        if objects.iter().any(|k| k.key_ids != first.key_ids) {
            failed.push(format!(
                "{backup_id}: its copies now have different recipients; rotate again"
            ));
            continue;
        }
        if objects.iter().any(|k| k.changed) {
            changed += 1;
        } else {
            unchanged += 1;
        }
        if dry_run {
            continue;
        }
        let Some(backup) = catalog.get_backup(backup_id).await? else {
            continue;
        };
        let Some(old) = backup.encryption else {
            continue;
        };
        // Also when nothing was rewritten now: a rotation cut short rewrote it without its
        // result reaching the catalog.
        if old.key_ids == first.key_ids && old.recipients == first.recipients {
            continue;
        }
        catalog
            .set_backup_encryption(
                backup_id,
                &Encryption {
                    key_object: old.key_object,
                    recipients: first.recipients.clone(),
                    key_ids: first.key_ids.clone(),
                },
            )
            .await?;
    }
    let verb = if dry_run { "would rotate" } else { "rotated" };
    let detail = format!(
        "{verb} the key objects of {changed} backup(s); {unchanged} already had the new recipients; {} failed",
        failed.len()
    );
    let error = (!failed.is_empty()).then(|| {
        format!(
            "{} backup(s) keep their earlier recipients: {}",
            failed.len(),
            failed.join("; ")
        )
    });
    Ok((detail, error))
}
