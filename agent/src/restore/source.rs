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
    let data_key = format!("{dir_key}/{data_file}");
    let manifest_key = format!("{dir_key}/{MANIFEST_FILE}");
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
        expected: Expected {
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

/// Reads the manifest and checks it agrees with the catalog.
pub async fn read_manifest(loc: &Located) -> Result<Option<Manifest>> {
    match read_manifest_bytes(loc).await? {
        Some(bytes) => check_manifest(loc, &bytes).map(Some),
        None => Ok(None),
    }
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
