//! The verify job: re-read the stored bytes, check size and both hashes against the catalog,
//! check the manifest agrees, and decode the whole archive (without restoring it). The globals
//! object beside a logical backup is read back and checked too; a damaged one is reported (a
//! warning, and in the verdict's detail) but does not make the data corrupt: the database
//! restores without it. A base
//! backup is unpacked into the agent's scratch directory and checked by `pg_verifybackup`
//! against its own `backup_manifest`, and the archived WAL it spans is read back too.

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{BackupRecord, Globals, Verified, VerifyStatus};

use crate::{
    config::Engine,
    crypt::KeyError,
    engine::postgres as pg,
    job::JobCtx,
    manifest::Manifest,
    pipeline::{self, PipelineError},
    restore::{
        KeyObjectMissing, Located, check_manifest,
        datadir::{self, Unpacked},
        locate, open_data, read_manifest_bytes, unlock,
    },
};

pub async fn run(ctx: &JobCtx, rec: &BackupRecord, decrypt: bool) -> Result<Verified> {
    let mut loc = locate(ctx, rec)?;
    ctx.set_phase("verifying");
    let verdict = |status: VerifyStatus, detail: String| Verified {
        status,
        detail,
        stored_bytes: 0,
        raw_bytes: 0,
    };
    // An I/O error reading the repository fails the job; only what was read is judged.
    let Some(bytes) = read_manifest_bytes(&loc).await? else {
        return Ok(verdict(
            VerifyStatus::Missing,
            format!(
                "{} is missing from {}",
                loc.manifest_key,
                loc.repo.describe()
            ),
        ));
    };
    let manifest = match check_manifest(&loc, &bytes) {
        Ok(m) => m,
        Err(e) => return Ok(verdict(VerifyStatus::Corrupt, format!("{e:#}"))),
    };
    // An encrypted backup is decrypted and decoded when this agent holds a key for it; a
    // backup-only agent checks the stored bytes, and says so, unless decryption was asked for.
    let mut stored_only = None;
    if loc.key_key.is_some()
        && let Err(e) = unlock(ctx, &mut loc).await
    {
        let no_identity = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(KeyError::NoIdentity { .. })));
        if e.downcast_ref::<KeyObjectMissing>().is_some() {
            return Ok(verdict(VerifyStatus::Missing, format!("{e:#}")));
        }
        if e.chain()
            .any(|c| matches!(c.downcast_ref(), Some(KeyError::Damaged(..))))
        {
            return Ok(verdict(VerifyStatus::Corrupt, format!("{e:#}")));
        }
        if decrypt || !no_identity {
            // An identity file that cannot be read, a repository error, or decryption asked
            // of an agent that holds no key: the job fails, the backup is not judged.
            return Err(e.context("verify of an encrypted backup"));
        }
        stored_only = Some(format!("{e:#}"));
    }
    // A base backup this agent cannot decrypt has its stored bytes checked like any other.
    if rec.is_physical() && stored_only.is_none() {
        return physical(ctx, &loc, &manifest).await;
    }
    let file = match open_data(&loc).await {
        Ok(f) => f,
        Err(e) => match e.downcast::<PipelineError>() {
            Ok(m @ PipelineError::Mismatch { .. }) => {
                return Ok(verdict(VerifyStatus::Corrupt, m.to_string()));
            }
            Ok(other) => return Err(other.into()),
            Err(e) => return Err(e),
        },
    };
    let Some(file) = file else {
        return Ok(verdict(
            VerifyStatus::Missing,
            format!("{} is missing from {}", loc.data_key, loc.repo.describe()),
        ));
    };
    let magic = match loc.engine {
        Engine::Postgres => pg::PGDMP_MAGIC,
        Engine::Mysql => crate::engine::mysql::MAGIC,
    };
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let only_stored = stored_only.is_some();
    let result = tokio::task::spawn_blocking(move || {
        if only_stored {
            pipeline::check_stored(file, &expected, &counters, &cancel)
        } else {
            pipeline::decompress(file, std::io::sink(), magic, &expected, &counters, &cancel)
                .map(drop)
        }
    })
    .await
    .context("verify task panicked")?;
    match result {
        Ok(()) if stored_only.is_some() => {
            ctx.report.warn(
                "encryption",
                format!(
                    "checked the stored (encrypted) bytes only: {}",
                    stored_only.unwrap_or_default()
                ),
            );
            if rec.is_physical() {
                wal_range(ctx, &loc, &manifest).await;
            }
            Ok(Verified {
                status: VerifyStatus::Ok,
                detail: format!(
                    "{} stored bytes match their SHA-256; not decrypted (this agent holds no key for it: key ids {}), so {} checked",
                    loc.expected.stored.size,
                    loc.key_ids.join(", "),
                    if rec.is_physical() {
                        "neither the raw bytes nor pg_verifybackup were"
                    } else {
                        "the raw dump was not"
                    }
                ),
                stored_bytes: loc.expected.stored.size,
                raw_bytes: 0,
            })
        }
        Ok(()) => Ok(Verified {
            status: VerifyStatus::Ok,
            detail: format!(
                "{} stored bytes and {} raw bytes match their SHA-256{}",
                loc.expected.stored.size,
                loc.expected.raw.size,
                globals(ctx, &loc, rec).await?
            ),
            stored_bytes: loc.expected.stored.size,
            raw_bytes: loc.expected.raw.size,
        }),
        Err(PipelineError::Cancelled) => bail!("cancelled"),
        Err(
            e @ (PipelineError::Mismatch { .. }
            | PipelineError::Decode(_)
            | PipelineError::Decrypt(_)),
        ) => Ok(verdict(
            VerifyStatus::Corrupt,
            format!("{}: {e}", loc.data_key),
        )),
        Err(e) => Err(e).with_context(|| format!("read {}", loc.data_key)),
    }
}

/// A base backup: its data there with the recorded size, unpacked through the hash checks
/// and checked by `pg_verifybackup`, then the archived WAL it spans.
async fn physical(ctx: &JobCtx, loc: &Located, m: &Manifest) -> Result<Verified> {
    let verdict = |status: VerifyStatus, detail: String| Verified {
        status,
        detail,
        stored_bytes: 0,
        raw_bytes: 0,
    };
    match loc.repo.head(&loc.data_key).await? {
        None => {
            return Ok(verdict(
                VerifyStatus::Missing,
                format!("{} is missing from {}", loc.data_key, loc.repo.describe()),
            ));
        }
        Some(h) if h.size != loc.expected.stored.size => {
            return Ok(verdict(
                VerifyStatus::Corrupt,
                format!(
                    "{} holds {} bytes, the catalog recorded {}",
                    loc.data_key, h.size, loc.expected.stored.size
                ),
            ));
        }
        Some(_) => {}
    }
    match datadir::verify_unpacked(ctx, loc, m, &ctx.config.scratch_dir).await? {
        Unpacked::Damaged(why) => Ok(verdict(VerifyStatus::Corrupt, why)),
        Unpacked::Sound {
            files,
            verifybackup,
        } => {
            ctx.report.ok(
                "backup",
                format!(
                    "{} stored bytes and {} raw bytes match their SHA-256; {files} files unpacked; pg_verifybackup: {verifybackup}",
                    loc.expected.stored.size, loc.expected.raw.size
                ),
            );
            wal_range(ctx, loc, m).await;
            Ok(Verified {
                status: VerifyStatus::Ok,
                detail: format!(
                    "{} stored bytes and {} raw bytes match their SHA-256; pg_verifybackup: {verifybackup}",
                    loc.expected.stored.size, loc.expected.raw.size
                ),
                stored_bytes: loc.expected.stored.size,
                raw_bytes: loc.expected.raw.size,
            })
        }
    }
}

/// The archived WAL a base backup spans, read back ([`crate::wal::verify::backup_range`]);
/// findings go to the job's report.
async fn wal_range(ctx: &JobCtx, loc: &Located, m: &Manifest) {
    ctx.set_phase("reading the archived WAL");
    if let Err(e) = crate::wal::verify::backup_range(ctx, &loc.repo, m).await {
        ctx.report
            .warn("wal", format!("the archived WAL could not be read: {e:#}"));
    }
}

/// Reads the backup's globals object back through both hash checks: `""` when there is none,
/// `"; globals …"` saying how it went otherwise (a damaged one also warns in the job's report).
async fn globals(ctx: &JobCtx, loc: &Located, rec: &BackupRecord) -> Result<String> {
    let Globals::Captured(obj) = &rec.globals else {
        return Ok(String::new());
    };
    ctx.set_phase("verifying the globals");
    let problem =
        match crate::restore::globals::read_object(ctx, &loc.repo, obj, loc.expected.key.as_ref())
            .await
        {
            Ok(_) => None,
            Err(_) if ctx.cancel.is_cancelled() => bail!("cancelled"),
            Err(e) => Some(format!("{e:#}")),
        };
    Ok(match problem {
        None => "; the globals object matches too".to_owned(),
        Some(why) => {
            ctx.report.warn(
                "globals",
                format!(
                    "the globals object is damaged ({why}); the database restores without it, but `restore --with-globals` and `globals restore` of this backup will fail"
                ),
            );
            format!("; the globals object is damaged: {why}")
        }
    })
}
