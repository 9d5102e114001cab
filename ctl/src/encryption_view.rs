//! Client-side encryption as `backup show` and `targets list` give it.

use lifeboat_proto as pb;
use serde::Serialize;

/// An encrypted backup: the keys its key object is encrypted to (as the catalog records them).
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionView {
    /// `age`
    pub scheme: &'static str,
    pub key_ids: Vec<String>,
    pub recipients: Vec<String>,
    pub key_object: String,
}

impl EncryptionView {
    pub fn of(e: Option<&pb::BackupEncryption>) -> Option<Self> {
        e.filter(|e| !e.key_object.is_empty()).map(|e| Self {
            scheme: "age",
            key_ids: e.key_ids.clone(),
            recipients: e.recipients.clone(),
            key_object: e.key_object.clone(),
        })
    }

    /// `age, key ids 0123…, 4567…` or `none (compressed plaintext)`.
    pub fn line(v: Option<&Self>) -> String {
        match v {
            Some(e) => format!("{}, key ids {}", e.scheme, e.key_ids.join(", ")),
            None => "none (stored as compressed plaintext)".into(),
        }
    }
}

/// How a target's new backups are encrypted, as its agent declares it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetEncryptionView {
    pub key_ids: Vec<String>,
    pub recipients: Vec<String>,
    /// False: a backup-only agent (it cannot restore or decrypt).
    pub can_decrypt: bool,
}

impl TargetEncryptionView {
    pub fn of(e: Option<&pb::TargetEncryption>) -> Option<Self> {
        e.map(|e| Self {
            key_ids: e.key_ids.clone(),
            recipients: e.recipients.clone(),
            can_decrypt: e.can_decrypt,
        })
    }
}
