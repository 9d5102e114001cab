//! Client-side encryption (ADR 0025): each backup has a key of its own (an age X25519
//! identity); its data, globals and the manifest's sealed section are encrypted to that key,
//! and the key, in the object `key.age`, to the recipients the operator configured. All
//! cryptography is the `age` crate's.
//!
//! `key.age` is a plain age file: `age -d -i restore.key key.age` prints the backup key as an
//! identity file. Its header also carries one `lifeboat-recipient` stanza per recipient (age
//! ignores stanzas it does not know, and its header MAC covers them), so an agent holding no
//! matching identity can still name the keys it would need, and a rotation can tell a key
//! object it already rotated.

use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    path::PathBuf,
    str::FromStr as _,
};

use age::secrecy::ExposeSecret as _;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use lifeboat_common::keys::{key_id, parse_recipient, read_identity_file, read_recipients_file};

/// The key object's file name, beside the manifest.
pub const KEY_FILE: &str = "key.age";
/// Appended to the name of every object encrypted to a backup key.
pub const AGE_SUFFIX: &str = ".age";
/// A key object larger than this is not one lifeboat wrote.
pub const MAX_KEY_OBJECT: u64 = 64 * 1024;
/// The tag of the stanzas naming a key object's recipients in its header.
const RECIPIENT_TAG: &str = "lifeboat-recipient";

/// Encryption as configured for a target (its own table or its repository's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// Recipients written in the config file itself.
    pub recipients: Vec<String>,
    /// More recipients, one per line, read at each backup (so a change needs no restart).
    pub recipients_file: Option<PathBuf>,
    /// Private keys that open this agent's backups, read when one is needed; absent: the
    /// agent backs up but cannot restore (a backup-only agent).
    pub identity_file: Option<PathBuf>,
}

impl EncryptionConfig {
    /// The recipients new backups are encrypted to, now: the config's and the file's, in
    /// order, without duplicates. Fails if there is none or one does not parse.
    pub fn recipients(&self) -> Result<Recipients> {
        let mut all = self.recipients.clone();
        if let Some(f) = &self.recipients_file {
            all.extend(read_recipients_file(f)?);
        }
        let mut seen = HashSet::new();
        all.retain(|r| seen.insert(r.clone()));
        if all.is_empty() {
            bail!(
                "encryption is configured with no recipient{}: add recipients = [\"age1…\"] (a public key from `lifeboat keys generate`); lifeboat never falls back to storing backups in plaintext",
                self.recipients_file
                    .as_ref()
                    .map(|f| format!(" ({} is empty)", f.display()))
                    .unwrap_or_default()
            );
        }
        Recipients::parse(&all)
    }
}

/// Recipients, parsed, with their key ids.
#[derive(Clone)]
pub struct Recipients {
    list: Vec<(String, age::x25519::Recipient)>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.strings()).finish()
    }
}

impl Recipients {
    pub fn parse(strings: &[String]) -> Result<Self> {
        if strings.is_empty() {
            bail!("no recipient: a backup key must be encrypted to at least one age public key");
        }
        if strings.len() > lifeboat_proto::domain::MAX_RECIPIENTS {
            bail!(
                "{} recipients; at most {} are supported",
                strings.len(),
                lifeboat_proto::domain::MAX_RECIPIENTS
            );
        }
        let list = strings
            .iter()
            .map(|s| Ok((s.trim().to_owned(), parse_recipient(s)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Recipients { list })
    }

    pub fn strings(&self) -> Vec<String> {
        self.list.iter().map(|(s, _)| s.clone()).collect()
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.list.iter().map(|(s, _)| key_id(s)).collect()
    }
}

/// A backup's own key; `Debug` never shows it.
#[derive(Clone)]
pub struct BackupKey(age::x25519::Identity);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(***)")
    }
}

impl BackupKey {
    pub fn generate() -> Self {
        BackupKey(age::x25519::Identity::generate())
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.0.to_public()
    }

    pub fn identity(&self) -> &age::x25519::Identity {
        &self.0
    }
}

/// A stanza `-> TAG ARG` in an age header, naming something (a recipient, a WAL key); it
/// wraps nothing, age ignores it when decrypting and the header MAC covers it.
pub(crate) struct Label(pub &'static str, pub String);

impl age::Recipient for Label {
    fn wrap_file_key(
        &self,
        _file_key: &age_core::format::FileKey,
    ) -> Result<(Vec<age_core::format::Stanza>, HashSet<String>), age::EncryptError> {
        Ok((
            vec![age_core::format::Stanza {
                tag: self.0.into(),
                args: vec![self.1.clone()],
                body: Vec::new(),
            }],
            HashSet::new(),
        ))
    }
}

/// The arguments of the `-> TAG ARG` stanzas in the header at the start of `object`.
/// Unauthenticated until the object is decrypted.
pub(crate) fn labels_of(object: &[u8], tag: &str) -> Vec<String> {
    let head = &object[..object.len().min(16 * 1024)];
    let text = String::from_utf8_lossy(head);
    let stanza = format!("-> {tag} ");
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("---") {
            break;
        }
        if let Some(rest) = line.strip_prefix(&stanza) {
            out.push(rest.trim().to_owned());
        }
    }
    out
}

/// A key object: `key` as an age identity file (with the recipients as comments, which a
/// rotation reads back), encrypted to `recipients`, its header naming them. `of` says whose
/// key it is ("backup B1", "the WAL of prod/main").
pub fn seal_key(key: &BackupKey, recipients: &Recipients, of: &str) -> Result<Vec<u8>> {
    let mut text = format!(
        "# lifeboat key of {of}\n# decrypt its objects with: age -d -i THIS_FILE OBJECT.age\n"
    );
    for r in recipients.strings() {
        text.push_str(&format!("# recipient: {r}\n"));
    }
    text.push_str(key.0.to_string().expose_secret());
    text.push('\n');
    let labels: Vec<Label> = recipients
        .strings()
        .into_iter()
        .map(|r| Label(RECIPIENT_TAG, r))
        .collect();
    let all = recipients
        .list
        .iter()
        .map(|(_, r)| r as &dyn age::Recipient)
        .chain(labels.iter().map(|l| l as &dyn age::Recipient));
    let encryptor = age::Encryptor::with_recipients(all).context("encrypt the backup key")?;
    let mut out = Vec::new();
    let mut w = encryptor
        .wrap_output(&mut out)
        .context("encrypt the backup key")?;
    w.write_all(text.as_bytes())
        .and_then(|()| w.finish().map(drop))
        .context("encrypt the backup key")?;
    Ok(out)
}

/// The recipients a key object's header names (empty if it names none or is not an age
/// file). Unauthenticated until the object is decrypted: for messages, and to skip what a
/// rotation already did.
pub fn recipients_of(object: &[u8]) -> Vec<String> {
    labels_of(object, RECIPIENT_TAG)
        .into_iter()
        .filter(|r| parse_recipient(r).is_ok())
        .collect()
}

/// The key ids of the recipients a key object's header names.
pub fn key_ids_of(object: &[u8]) -> Vec<String> {
    recipients_of(object).iter().map(|r| key_id(r)).collect()
}

/// Why a key object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "this agent holds no identity for it: it is encrypted to key id{} {}; configure identity_file with one of those keys (encryption of the target or repository) on the agent that restores{}",
        if .key_ids.len() == 1 { "" } else { "s" },
        if .key_ids.is_empty() { "(not named in its header)".to_owned() } else { .key_ids.join(", ") },
        if *.backup_only { " — this agent has no identity_file at all (a backup-only agent)" } else { "" }
    )]
    NoIdentity {
        key_ids: Vec<String>,
        backup_only: bool,
    },
    #[error("{0} is not a lifeboat key object (damaged or replaced): {1}")]
    Damaged(String, String),
}

/// Opens a key object with any of `identities`: the backup key and the recipients it lists.
pub fn open_key(
    name: &str,
    object: &[u8],
    identities: &[age::x25519::Identity],
) -> Result<(BackupKey, Vec<String>), KeyError> {
    let damaged = |why: String| KeyError::Damaged(name.to_owned(), why);
    let no_identity = || KeyError::NoIdentity {
        key_ids: key_ids_of(object),
        backup_only: identities.is_empty(),
    };
    if identities.is_empty() {
        return Err(no_identity());
    }
    let decryptor = age::Decryptor::new(object).map_err(|e| damaged(e.to_string()))?;
    let mut reader = match decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => return Err(no_identity()),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let mut text = String::new();
    reader
        .by_ref()
        .take(MAX_KEY_OBJECT)
        .read_to_string(&mut text)
        .map_err(|e| damaged(e.to_string()))?;
    let mut key = None;
    let mut recipients = Vec::new();
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# recipient: ") {
            recipients.push(r.trim().to_owned());
        } else if line.starts_with("AGE-SECRET-KEY-") {
            if key.is_some() {
                return Err(damaged("it holds more than one key".into()));
            }
            key = Some(
                age::x25519::Identity::from_str(line.trim())
                    .map_err(|_| damaged("its key does not parse".into()))?,
            );
        }
    }
    let key = key.ok_or_else(|| damaged("it holds no key".into()))?;
    Ok((BackupKey(key), recipients))
}

/// Encrypts a small value (the manifest's sealed section) to a backup key: base64 text.
pub fn seal(plain: &[u8], to: &age::x25519::Recipient) -> Result<String> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient))
        .context("seal")?;
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).context("seal")?;
    w.write_all(plain)
        .and_then(|()| w.finish().map(drop))
        .context("seal")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Decrypts what [`seal`] made.
pub fn unseal(sealed: &str, key: &BackupKey, limit: u64) -> Result<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .context("the sealed section is not base64")?;
    let decryptor = age::Decryptor::new(&bytes[..]).context("the sealed section")?;
    let mut reader = decryptor
        .decrypt(std::iter::once(key.identity() as &dyn age::Identity))
        .context("the sealed section does not open with the backup's key")?;
    let mut out = Vec::new();
    reader
        .by_ref()
        .take(limit)
        .read_to_end(&mut out)
        .context("decrypt the sealed section")?;
    Ok(out)
}

/// Every identity this agent holds: the identity files of all its targets' and repositories'
/// encryption, read now (a replaced file is picked up without a restart).
pub fn agent_identities(config: &crate::config::Config) -> Result<Vec<age::x25519::Identity>> {
    let mut files: Vec<&PathBuf> = config
        .targets
        .values()
        .filter_map(|t| t.encryption.as_ref())
        .chain(config.repository_encryption.values())
        .filter_map(|e| e.identity_file.as_ref())
        .collect();
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for f in files {
        out.extend(
            read_identity_file(f).with_context(|| format!("identity_file {}", f.display()))?,
        );
    }
    Ok(out)
}

/// The public keys of the identities this agent holds (none if a file cannot be read now).
pub fn held_keys(config: &crate::config::Config) -> HashSet<String> {
    agent_identities(config)
        .unwrap_or_default()
        .iter()
        .map(|i| i.to_public().to_string())
        .collect()
}

/// What a target's encryption looks like to the coordinator: its recipients, their key ids,
/// and whether this agent holds a key for one of them (`held`, from [`held_keys`]). A
/// recipients file that cannot be read now shows as no recipients (backups would fail and say
/// why).
pub fn target_encryption(
    enc: &EncryptionConfig,
    held: &HashSet<String>,
) -> lifeboat_proto::TargetEncryption {
    let recipients = enc.recipients().map(|r| r.strings()).unwrap_or_default();
    lifeboat_proto::TargetEncryption {
        key_ids: recipients.iter().map(|r| key_id(r)).collect(),
        can_decrypt: recipients.iter().any(|r| held.contains(r)),
        recipients,
    }
}

#[cfg(test)]
mod tests;
