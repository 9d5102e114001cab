//! Encrypted backups and the keys that protect them (`keys list`, `keys rotate`, the metrics).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lifeboat_proto::domain::Encryption;
use sqlx::Row;

use super::{Catalog, Result, backups::encryption_to_json};
use crate::model::{Backup, CopyState};

/// One key id and what it protects among the kept backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: String,
    pub recipient: String,
    pub targets: BTreeSet<String>,
    pub backups: u64,
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

/// Kept backups of one target stored in plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaintextUse {
    pub backups: u64,
    pub newest_ms: i64,
}

/// What the catalog knows about keys: per key id, and per target the plaintext backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    pub keys: BTreeMap<String, KeyUse>,
    pub plaintext: BTreeMap<String, PlaintextUse>,
}

impl Catalog {
    /// Every kept encrypted backup of `target`, newest first, with every repository holding
    /// it: its own, then those of its stored copies.
    pub async fn encrypted_backups(&self, target: &str) -> Result<Vec<(Backup, Vec<String>)>> {
        let backups = self.list_backups(Some(target), u32::MAX).await?;
        let mut copies = self.copies_by_backup(Some(target)).await?;
        Ok(backups
            .into_iter()
            .filter(|b| b.encryption.is_some())
            .map(|b| {
                let mut repositories = vec![b.repository.clone()];
                repositories.extend(
                    copies
                        .remove(b.backup_id.as_str())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| c.state == CopyState::Stored && c.repository != b.repository)
                        .map(|c| c.repository),
                );
                (b, repositories)
            })
            .collect())
    }

    /// After a rotation: the backup's key object is now encrypted to `encryption`.
    pub async fn set_backup_encryption(
        &self,
        backup_id: &str,
        encryption: &Encryption,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE backups SET encryption = $1 WHERE backup_id = $2")
            .bind(encryption_to_json(Some(encryption))?)
            .bind(backup_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Which key ids protect which kept backups (optionally of one target), and the kept
    /// backups stored in plaintext per target.
    pub async fn key_usage(&self, target: Option<&str>) -> Result<KeyUsage> {
        let rows = sqlx::query(
            "SELECT target, finished_at_ms, encryption FROM backups \
             WHERE ($1 IS NULL OR target = $1)",
        )
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        let mut usage = KeyUsage::default();
        for row in rows {
            let target: String = row.try_get("target")?;
            let at: i64 = row.try_get("finished_at_ms")?;
            let encryption = super::backups::encryption_from_json(row.try_get("encryption")?)?;
            let Some(e) = encryption else {
                let p = usage.plaintext.entry(target).or_default();
                p.backups += 1;
                p.newest_ms = p.newest_ms.max(at);
                continue;
            };
            for (id, recipient) in e.key_ids.iter().zip(&e.recipients) {
                let k = usage.keys.entry(id.clone()).or_insert_with(|| KeyUse {
                    key_id: id.clone(),
                    recipient: recipient.clone(),
                    oldest_ms: at,
                    newest_ms: at,
                    ..KeyUse::default()
                });
                k.backups += 1;
                k.targets.insert(target.clone());
                k.oldest_ms = k.oldest_ms.min(at);
                k.newest_ms = k.newest_ms.max(at);
            }
        }
        Ok(usage)
    }

    /// Kept backups per key id, for the metrics.
    pub async fn backups_by_key(&self) -> Result<HashMap<String, u64>> {
        Ok(self
            .key_usage(None)
            .await?
            .keys
            .into_values()
            .map(|k| (k.key_id, k.backups))
            .collect())
    }
}
