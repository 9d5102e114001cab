//! `encryption = { recipients = [...], recipients_file = "...", identity_file = "..." }` on a
//! `[[repository]]` or a `[[target]]` (ADR 0025): checked at start-up so an agent configured to
//! encrypt never starts without a usable recipient.

use std::path::Path;

use lifeboat_common::config::{check_no_parent, resolve};
use serde::Deserialize;

use crate::crypt::EncryptionConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEncryption {
    #[serde(default)]
    recipients: Vec<String>,
    recipients_file: Option<std::path::PathBuf>,
    identity_file: Option<std::path::PathBuf>,
}

/// Checks one `encryption` table; `key` is its place in the file (`target[0].encryption`).
/// Errors are `(key, message)`.
pub(super) fn validate(
    config_path: &Path,
    key: &str,
    f: FileEncryption,
) -> Result<EncryptionConfig, (String, String)> {
    let sub = |k: &str| format!("{key}.{k}");
    let recipients_file = match f.recipients_file {
        Some(p) => {
            check_no_parent(config_path, &sub("recipients_file"), &p)
                .map_err(|e| (sub("recipients_file"), e.to_string()))?;
            Some(resolve(config_path, &p))
        }
        None => None,
    };
    let identity_file = match f.identity_file {
        Some(p) => {
            check_no_parent(config_path, &sub("identity_file"), &p)
                .map_err(|e| (sub("identity_file"), e.to_string()))?;
            let p = resolve(config_path, &p);
            lifeboat_common::keys::read_identity_file(&p)
                .map_err(|e| (sub("identity_file"), format!("{e:#}")))?;
            Some(p)
        }
        None => None,
    };
    for r in &f.recipients {
        lifeboat_common::keys::parse_recipient(r)
            .map_err(|e| (sub("recipients"), format!("{e:#}")))?;
    }
    let config = EncryptionConfig {
        recipients: f.recipients.iter().map(|r| r.trim().to_owned()).collect(),
        recipients_file,
        identity_file,
    };
    // Reads the recipients file too: a backup would fail the same way.
    config
        .recipients()
        .map_err(|e| (sub("recipients"), format!("{e:#}")))?;
    Ok(config)
}

/// Takes `encryption` out of a repository's kind-specific keys, checked.
pub(super) fn from_repository_table(
    config_path: &Path,
    key: &str,
    rest: &mut toml::Table,
) -> Result<Option<EncryptionConfig>, (String, String)> {
    let Some(value) = rest.remove("encryption") else {
        return Ok(None);
    };
    let f: FileEncryption = value.try_into().map_err(|e| {
        (
            key.to_owned(),
            format!(
                "{e}; write encryption = {{ recipients = [\"age1…\"], identity_file = \"/etc/lifeboat/restore.key\" }}"
            ),
        )
    })?;
    validate(config_path, key, f).map(Some)
}
