//! Where a restore, verify, export or copy reads a backup: its files located in one of this
//! agent's repositories from the catalog's record (keys recomputed, never taken from the
//! message), the manifest and the data object checked against that record, and, when the
//! backup's repository does not hold it whole, a repository holding a copy of it (off-site
//! copies: the coordinator sends the healthy repositories in order).

use anyhow::{Result, bail};
use lifeboat_proto::domain::BackupRecord;

use super::human_bytes;
use crate::{
    config::Engine,
    job::JobCtx,
    manifest::Manifest,
    pipeline::{Digest, Expected, PipelineError},
    repo::{
        self, MANIFEST_FILE, PG_BASE_DATA_FILE, PG_DATA_FILE, Repository, backup_dir_key,
        body::StreamReader,
    },
};

/// Where a backup's files are, checked against the catalog's record.
pub struct Located {
    /// The engine the catalog recorded for the backup.
    pub engine: Engine,
    pub repo: Repository,
    pub data_key: String,
    pub manifest_key: String,
    /// An encrypted backup: its key object (`key.age`) in the same repository.
    pub key_key: Option<String>,
    /// The key ids the catalog records for it (for messages before its key object is read).
    pub key_ids: Vec<String>,
    /// Its key is in `expected.key` once [`unlock`] opened the key object.
    pub expected: Expected,
}

/// Finds a backup's files in one of this agent's repositories. The record was checked when the
/// job arrived; keys are recomputed from its validated names, never taken from the message.
pub fn locate(ctx: &JobCtx, rec: &BackupRecord) -> Result<Located> {
    if !ctx.config.repositories.contains_key(&rec.repository) {
        bail!(
            "this agent has no repository named {:?}; add it to the agent's config to restore backups stored there",
            rec.repository
        );
    }
    let dir_key = backup_dir_key(rec.target.env(), rec.target.name(), rec.backup_id.as_str());
    let data_file = match rec.engine {
        Engine::Postgres if rec.is_physical() => PG_BASE_DATA_FILE,
        Engine::Postgres => PG_DATA_FILE,
        Engine::Mysql => crate::engine::mysql::DATA_FILE,
    };
    let suffix = if rec.encryption.is_some() {
        crate::crypt::AGE_SUFFIX
    } else {
        ""
    };
    let data_key = format!("{dir_key}/{data_file}{suffix}");
    let manifest_key = format!("{dir_key}/{MANIFEST_FILE}");
    let key_key = match &rec.encryption {
        Some(e) => {
            let key_key = format!("{dir_key}/{}", crate::crypt::KEY_FILE);
            if e.key_object != key_key {
                bail!(
                    "backup record names key object {:?}, expected {key_key:?}",
                    e.key_object
                );
            }
            Some(key_key)
        }
        None => None,
    };
    if rec.data_key != data_key {
        bail!(
            "backup record names data file {:?}, expected {data_key:?}",
            rec.data_key
        );
    }
    Ok(Located {
        engine: rec.engine,
        repo: repo::open(&ctx.config, &rec.repository)?,
        data_key,
        manifest_key,
        key_key,
        key_ids: rec
            .encryption
            .as_ref()
            .map(|e| e.key_ids.clone())
            .unwrap_or_default(),
        expected: Expected {
            key: None,
            stored: Digest {
                size: rec.stored_size,
                sha256: rec.stored_sha256.clone(),
            },
            raw: Digest {
                size: rec.raw_size,
                sha256: rec.raw_sha256.clone(),
            },
        },
    })
}

/// Reads the manifest's bytes; an I/O error is an error, not a verdict on the backup.
pub async fn read_manifest_bytes(loc: &Located) -> Result<Option<Vec<u8>>> {
    Ok(loc
        .repo
        .get_bytes(&loc.manifest_key, crate::manifest::MAX_MANIFEST_BYTES)
        .await?)
}

/// Opens the data object for streaming, after checking its stored size against the catalog
/// (a truncated or replaced object is refused before anything is restored). `Ok(None)` if it
/// is missing.
pub async fn open_data(loc: &Located) -> Result<Option<StreamReader>> {
    let Some(head) = loc.repo.head(&loc.data_key).await? else {
        return Ok(None);
    };
    if head.size != loc.expected.stored.size {
        return Err(PipelineError::Mismatch {
            what: format!(
                "{} holds {} bytes, the catalog recorded {}",
                loc.data_key, head.size, loc.expected.stored.size
            ),
        }
        .into());
    }
    let Some(stream) = loc.repo.get(&loc.data_key, 0).await? else {
        return Ok(None);
    };
    Ok(Some(StreamReader::new(stream, 4)))
}

/// Parses the manifest and checks it agrees with the catalog.
pub fn check_manifest(loc: &Located, bytes: &[u8]) -> Result<Manifest> {
    let m = Manifest::from_json(bytes)?;
    if m.stored_sha256 != loc.expected.stored.sha256
        || m.stored_size != loc.expected.stored.size
        || m.raw_sha256 != loc.expected.raw.sha256
        || m.raw_size != loc.expected.raw.size
    {
        bail!(
            "manifest.json disagrees with the catalog about sizes or hashes; the backup was changed after it was written"
        );
    }
    if Engine::parse(&m.engine) != Some(loc.engine)
        || !loc.data_key.ends_with(&format!("/{}", m.data_file))
    {
        bail!(
            "manifest.json disagrees with the catalog about the engine or data file (manifest: engine {:?}, {:?}; catalog: {}, {})",
            m.engine,
            m.data_file,
            loc.engine.as_str(),
            loc.data_key
        );
    }
    Ok(m)
}

/// Reads the manifest and checks it agrees with the catalog; an encrypted backup's sealed
/// section is opened when its key is known ([`unlock`]).
pub async fn read_manifest(loc: &Located) -> Result<Option<Manifest>> {
    match read_manifest_bytes(loc).await? {
        Some(bytes) => {
            let mut m = check_manifest(loc, &bytes)?;
            if let Some(key) = &loc.expected.key {
                m.unseal(key)?;
            }
            Ok(Some(m))
        }
        None => Ok(None),
    }
}

/// An encrypted backup whose key object is gone.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyObjectMissing(pub String);

/// Opens an encrypted backup's key object with this agent's identities and keeps the backup's
/// key in `loc.expected.key`. Nothing to do for a backup stored in plaintext. The error names
/// the key ids needed when this agent holds none of them.
pub async fn unlock(ctx: &JobCtx, loc: &mut Located) -> Result<()> {
    let Some(key_key) = &loc.key_key else {
        return Ok(());
    };
    let Some(object) = loc
        .repo
        .get_bytes(key_key, crate::crypt::MAX_KEY_OBJECT)
        .await?
    else {
        return Err(KeyObjectMissing(format!(
            "the backup's key object {key_key} is missing from {}: its data cannot be decrypted by anyone; restore another backup, or a copy of this one from another repository",
            loc.repo.describe()
        ))
        .into());
    };
    let identities = crate::crypt::agent_identities(&ctx.config)?;
    let (key, _) = crate::crypt::open_key(key_key, &object, &identities)
        .map_err(|e| anyhow::Error::new(e).context("cannot decrypt the backup"))?;
    loc.expected.key = Some(key);
    Ok(())
}

/// The backup's manifest, checked against the catalog's record; a missing or unusable one is
/// an error in `report` and `None`.
pub(crate) async fn manifest_checked(
    report: &crate::report::Reporter,
    loc: &Located,
    rec: &BackupRecord,
) -> Option<Manifest> {
    match read_manifest(loc).await {
        Ok(Some(m)) => Some(m),
        Ok(None) => {
            report.error(
                "backup",
                format!(
                    "backup {} has no manifest in {}; it is incomplete or was deleted",
                    rec.backup_id,
                    loc.repo.describe()
                ),
            );
            None
        }
        Err(e) => {
            report.error(
                "backup",
                format!("cannot use the manifest in {}: {e:#}", loc.repo.describe()),
            );
            None
        }
    }
}

/// Checks that the backup's data object is in the repository with the size the catalog
/// recorded; the finding goes to `report` (`ok` says what was found, given the size).
pub(crate) async fn check_data_object(
    report: &crate::report::Reporter,
    loc: &Located,
    ok: impl FnOnce(String) -> String,
) {
    match loc.repo.head(&loc.data_key).await {
        Ok(Some(h)) if h.size == loc.expected.stored.size => {
            report.ok("backup", ok(human_bytes(h.size)));
        }
        Ok(Some(h)) => report.error(
            "backup",
            PipelineError::Mismatch {
                what: format!(
                    "{} holds {} bytes, the catalog recorded {}",
                    loc.data_key, h.size, loc.expected.stored.size
                ),
            }
            .to_string(),
        ),
        Ok(None) => report.error(
            "backup",
            format!(
                "data file {} is missing from {}",
                loc.data_key,
                loc.repo.describe()
            ),
        ),
        Err(e) => report.error(
            "backup",
            format!(
                "cannot read {} from {}: {e}",
                loc.data_key,
                loc.repo.describe()
            ),
        ),
    }
}

/// Like [`locate`], but when the backup's repository does not hold it whole (its manifest or
/// data object is missing or of another size, the repository cannot be read, or this agent
/// lacks it), the first of `fallbacks` that does — repositories holding a copy, in the
/// coordinator's order — with a warning in the job's report. With no repository holding it,
/// the backup's own: the checks that follow say what is wrong there.
pub async fn locate_readable(
    ctx: &JobCtx,
    rec: &BackupRecord,
    fallbacks: &[String],
) -> Result<Located> {
    let mut loc = locate_whole(ctx, rec, fallbacks).await?;
    unlock(ctx, &mut loc).await?;
    Ok(loc)
}

async fn locate_whole(ctx: &JobCtx, rec: &BackupRecord, fallbacks: &[String]) -> Result<Located> {
    let own = locate(ctx, rec);
    if fallbacks.is_empty() {
        return own;
    }
    let why = match &own {
        Ok(loc) => match whole(loc).await {
            None => return own,
            Some(why) => why,
        },
        Err(e) => format!("{e:#}"),
    };
    for r in fallbacks {
        let mut copy = rec.clone();
        copy.repository.clone_from(r);
        let Ok(loc) = locate(ctx, &copy) else {
            continue;
        };
        if whole(&loc).await.is_none() {
            ctx.report.warn(
                "backup",
                format!(
                    "backup {} cannot be read from repository {}: {why}; reading its copy in repository {r} ({}) instead",
                    rec.backup_id,
                    rec.repository,
                    loc.repo.describe()
                ),
            );
            return Ok(loc);
        }
    }
    own
}

/// Why `loc` does not hold its backup whole (manifest there, data object of the recorded
/// size); `None` if it does.
async fn whole(loc: &Located) -> Option<String> {
    match loc.repo.head(&loc.manifest_key).await {
        Ok(Some(_)) => {}
        Ok(None) => return Some(format!("{} is missing", loc.manifest_key)),
        Err(e) => return Some(format!("{e}")),
    }
    if let Some(key_key) = &loc.key_key {
        match loc.repo.head(key_key).await {
            Ok(Some(_)) => {}
            Ok(None) => return Some(format!("{key_key} is missing")),
            Err(e) => return Some(format!("{e}")),
        }
    }
    match loc.repo.head(&loc.data_key).await {
        Ok(Some(h)) if h.size == loc.expected.stored.size => None,
        Ok(Some(h)) => Some(format!(
            "{} holds {} bytes, the catalog recorded {}",
            loc.data_key, h.size, loc.expected.stored.size
        )),
        Ok(None) => Some(format!("{} is missing", loc.data_key)),
        Err(e) => Some(format!("{e}")),
    }
}
