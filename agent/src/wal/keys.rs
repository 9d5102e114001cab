//! Encryption of the WAL archive (ADR 0026). A physical target with encryption stores each WAL
//! file as `NAME-SHA256.zst.age`, age-encrypted to a WAL key: an age X25519 identity the agent
//! generates, kept in `ENV/TARGET/wal/keys/ID.age` encrypted to the configured recipients (the
//! same kind of key object as a backup's `key.age`, so `keys rotate` re-seals it in place and
//! never rewrites a segment). Each file's header names its WAL key in a `lifeboat-wal-key`
//! stanza, so a reader opens only the key it needs.
//!
//! An agent process makes one WAL key per target and set of recipients, on the first push that
//! needs it (and a new one if its key object disappears): a backup-only agent (no identity file) cannot reopen the keys of its earlier
//! runs, and never writes a private key to its disk.

use std::{collections::HashMap, sync::Arc};

use anyhow::{Context, Result};
use lifeboat_common::keys::key_id;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    crypt::{self, AGE_SUFFIX, BackupKey, EncryptionConfig, KeyError, Label},
    repo::Repository,
};

/// The directory of the WAL keys under `ENV/TARGET/wal`.
pub const KEYS_DIR: &str = "keys";
/// The tag of the stanza naming a WAL file's key in its header.
const KEY_TAG: &str = "lifeboat-wal-key";

/// `ENV/TARGET/wal/keys/ID.age`
pub fn key_object(prefix: &str, id: &str) -> String {
    format!("{prefix}/{KEYS_DIR}/{id}{AGE_SUFFIX}")
}

/// The WAL key ids in a listing under `prefix`, by their key objects.
pub fn listed_keys<'a>(
    prefix: &str,
    objects: &'a [crate::repo::ObjectInfo],
) -> Vec<&'a crate::repo::ObjectInfo> {
    let dir = format!("{prefix}/{KEYS_DIR}/");
    objects
        .iter()
        .filter(|o| {
            o.key
                .strip_prefix(&dir)
                .and_then(|f| f.strip_suffix(AGE_SUFFIX))
                .is_some_and(is_key_id)
        })
        .collect()
}

fn is_key_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key a WAL file is being encrypted to.
#[derive(Clone)]
pub struct Sealing {
    pub id: String,
    recipient: age::x25519::Recipient,
}

impl Sealing {
    /// An age encryptor to the WAL key, its id named in the header.
    pub fn encryptor(&self) -> Result<age::Encryptor> {
        let label = Label(KEY_TAG, self.id.clone());
        age::Encryptor::with_recipients(
            [
                &self.recipient as &dyn age::Recipient,
                &label as &dyn age::Recipient,
            ]
            .into_iter(),
        )
        .context("encrypt to the WAL key")
    }
}

/// The id a WAL file's header names (unauthenticated until the file decrypts with that key).
pub fn key_id_in(header: &[u8]) -> Option<String> {
    crypt::labels_of(header, KEY_TAG)
        .into_iter()
        .find(|id| is_key_id(id))
}

/// A WAL key this agent cannot use now.
#[derive(Debug, thiserror::Error)]
#[error("WAL key {id} ({object}): {why}")]
pub struct Unavailable {
    pub id: String,
    pub object: String,
    pub why: String,
    /// The key object is there but this agent holds no identity for it.
    pub no_identity: bool,
}

/// Whether `e` says a WAL key is unavailable to this agent (rather than a file damaged).
pub fn unavailable(e: &anyhow::Error) -> Option<&Unavailable> {
    e.chain().find_map(|c| c.downcast_ref::<Unavailable>())
}

/// The WAL keys this agent process knows: the one each target's new WAL goes to, and those
/// opened to read WAL back.
#[derive(Clone, Default)]
pub struct KeyRing(Arc<Mutex<Ring>>);

#[derive(Default)]
struct Ring {
    /// By repository and prefix.
    current: HashMap<(String, String), Current>,
    /// By key id.
    opened: HashMap<String, BackupKey>,
}

struct Current {
    recipients: Vec<String>,
    id: String,
    key: BackupKey,
}

impl KeyRing {
    /// The key the target's new WAL goes to: this process's key for the target while the
    /// configured recipients stay the same; otherwise a new one, whose key object is durable
    /// in the repository before this returns.
    pub async fn sealing(
        &self,
        repo: &Repository,
        repository: &str,
        prefix: &str,
        target: &str,
        enc: &EncryptionConfig,
        cancel: &CancellationToken,
    ) -> Result<Sealing> {
        let recipients = enc
            .recipients()
            .with_context(|| format!("encryption of target {target}"))?;
        let mut ring = self.0.lock().await;
        let slot = (repository.to_owned(), prefix.to_owned());
        if let Some(c) = ring.current.get(&slot)
            && c.recipients == recipients.strings()
        {
            // Its key object is still there (one HEAD per file): WAL is never encrypted to a
            // key nobody could open.
            let object = key_object(prefix, &c.id);
            let present = repo
                .head(&object)
                .await
                .with_context(|| format!("check the WAL key {object} in {}", repo.describe()))?;
            if present.is_some() {
                return Ok(Sealing {
                    id: c.id.clone(),
                    recipient: c.key.recipient(),
                });
            }
            tracing::warn!(target, key = %c.id, "the WAL key object {object} is gone from the repository; new WAL goes to a new key");
        }
        let key = BackupKey::generate();
        let id = key_id(&key.recipient().to_string());
        let object = key_object(prefix, &id);
        let sealed = crypt::seal_key(&key, &recipients, &format!("the WAL of {target}"))?;
        repo.put_bytes(&object, sealed.into(), cancel)
            .await
            .with_context(|| format!("store the WAL key {object} in {}", repo.describe()))?;
        tracing::info!(target, key = %id, key_ids = %recipients.key_ids().join(","), "new WAL key");
        ring.opened.insert(id.clone(), key.clone());
        let recipient = key.recipient();
        ring.current.insert(
            slot,
            Current {
                recipients: recipients.strings(),
                id: id.clone(),
                key,
            },
        );
        Ok(Sealing { id, recipient })
    }

    /// WAL key `id` of the archive under `prefix`: from memory, or its key object opened with
    /// this agent's identities.
    pub async fn open(
        &self,
        repo: &Repository,
        prefix: &str,
        id: &str,
        config: &Config,
    ) -> Result<BackupKey> {
        if let Some(k) = self.0.lock().await.opened.get(id) {
            return Ok(k.clone());
        }
        let object = key_object(prefix, id);
        let unavailable = |why: String, no_identity: bool| Unavailable {
            id: id.to_owned(),
            object: object.clone(),
            why,
            no_identity,
        };
        let bytes = repo
            .get_bytes(&object, crypt::MAX_KEY_OBJECT)
            .await
            .with_context(|| format!("read {object} from {}", repo.describe()))?
            .ok_or_else(|| {
                unavailable(
                    format!(
                        "the key object is missing from {}: the WAL encrypted to it cannot be decrypted by anyone",
                        repo.describe()
                    ),
                    false,
                )
            })?;
        let identities = crypt::agent_identities(config)?;
        let (key, _) = crypt::open_key(&object, &bytes, &identities).map_err(|e| match e {
            KeyError::NoIdentity { .. } => unavailable(e.to_string(), true),
            KeyError::Damaged(..) => unavailable(e.to_string(), false),
        })?;
        if key_id(&key.recipient().to_string()) != id {
            return Err(unavailable(
                "the key object holds another key than its name says (replaced?)".into(),
                false,
            )
            .into());
        }
        self.0
            .lock()
            .await
            .opened
            .insert(id.to_owned(), key.clone());
        Ok(key)
    }
}

/// What reading WAL back needs: the archive's repository and prefix, the agent's config (its
/// identity files) and the keys opened so far.
#[derive(Clone)]
pub struct Reader {
    pub repo: Repository,
    pub prefix: String,
    pub config: Arc<Config>,
    pub ring: KeyRing,
}

impl Reader {
    /// A reader with no key opened yet (one per job; the WAL socket shares its own ring).
    pub fn new(repo: Repository, prefix: String, config: Arc<Config>) -> Self {
        Reader {
            repo,
            prefix,
            config,
            ring: KeyRing::default(),
        }
    }

    pub async fn key(&self, id: &str) -> Result<BackupKey> {
        self.ring
            .open(&self.repo, &self.prefix, id, &self.config)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::repo::fs::FsRepository;

    fn recipient() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    fn enc(recipients: &[String], file: Option<PathBuf>) -> EncryptionConfig {
        EncryptionConfig {
            recipients: recipients.to_vec(),
            recipients_file: file,
            identity_file: None,
        }
    }

    /// One WAL key per set of recipients and process, stored before it is used; a change of
    /// recipients makes a new one; no usable recipient stores nothing and says why.
    #[tokio::test]
    async fn a_wal_key_is_stored_once_per_set_of_recipients() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo: Repository = Arc::new(FsRepository::new(root.path().to_owned()));
        let ring = KeyRing::default();
        let cancel = CancellationToken::new();
        let prefix = "prod/main/wal";
        let (a, b) = (recipient(), recipient());
        let seal = |e: EncryptionConfig| {
            let (ring, repo, cancel) = (ring.clone(), repo.clone(), cancel.clone());
            async move { ring.sealing(&repo, "r", prefix, "main", &e, &cancel).await }
        };
        let first = seal(enc(std::slice::from_ref(&a), None))
            .await
            .expect("first");
        assert_eq!(
            seal(enc(std::slice::from_ref(&a), None))
                .await
                .expect("again")
                .id,
            first.id
        );
        let stored = repo
            .get_bytes(&key_object(prefix, &first.id), crypt::MAX_KEY_OBJECT)
            .await
            .expect("read")
            .expect("the key object is stored");
        assert_eq!(crypt::recipients_of(&stored), vec![a.clone()]);

        // Its key object removed behind the agent's back: a new key, stored.
        std::fs::remove_file(root.path().join(key_object(prefix, &first.id))).expect("rm");
        let first = seal(enc(std::slice::from_ref(&a), None))
            .await
            .expect("new");
        assert!(root.path().join(key_object(prefix, &first.id)).is_file());

        let second = seal(enc(&[a.clone(), b.clone()], None))
            .await
            .expect("second");
        assert_ne!(second.id, first.id);
        let listing = repo.list(prefix).await.expect("list");
        assert_eq!(listed_keys(prefix, &listing).len(), 2);

        // A recipients file that is gone: an error naming the target, nothing stored.
        let gone = root.path().join("recipients.txt");
        let e = seal(enc(&[], Some(gone)))
            .await
            .err()
            .expect("no recipient");
        assert!(format!("{e:#}").contains("main"), "{e:#}");
        let listing = repo.list(prefix).await.expect("list");
        assert_eq!(listed_keys(prefix, &listing).len(), 2);
    }

    #[test]
    fn the_key_id_is_read_from_the_header_only() {
        let label = Label(KEY_TAG, "0123456789abcdef".into());
        let key = BackupKey::generate();
        let recipient = key.recipient();
        let e = age::Encryptor::with_recipients(
            [
                &recipient as &dyn age::Recipient,
                &label as &dyn age::Recipient,
            ]
            .into_iter(),
        )
        .expect("encryptor");
        let mut out = Vec::new();
        let mut w = e.wrap_output(&mut out).expect("wrap");
        std::io::Write::write_all(&mut w, b"-> lifeboat-wal-key fedcba9876543210\n")
            .expect("write");
        w.finish().expect("finish");
        assert_eq!(key_id_in(&out).as_deref(), Some("0123456789abcdef"));
        assert_eq!(key_id_in(b"not age at all"), None);
    }
}
