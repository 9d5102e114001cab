//! The verify job: re-read the stored bytes, check size and both hashes against the catalog,
//! check the manifest agrees, and decode the whole archive (without restoring it).

use anyhow::{Context, Result, bail};
use lifeboat_proto::domain::{BackupRecord, Verified, VerifyStatus};

use crate::{
    config::Engine,
    engine::postgres as pg,
    job::JobCtx,
    pipeline::{self, PipelineError},
    restore::{check_manifest, locate, open_data, read_manifest_bytes},
};

pub async fn run(ctx: &JobCtx, rec: &BackupRecord) -> Result<Verified> {
    let loc = locate(ctx, rec)?;
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
    if let Err(e) = check_manifest(&loc, &bytes) {
        return Ok(verdict(VerifyStatus::Corrupt, format!("{e:#}")));
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
        // A base backup's tar was checked as it streamed (its ustar magic, its end); here its
        // two hashes and sizes say it is still what was stored.
        Engine::Postgres if rec.is_physical() => b"",
        Engine::Postgres => pg::PGDMP_MAGIC,
        Engine::Mysql => crate::engine::mysql::MAGIC,
    };
    let expected = loc.expected.clone();
    let counters = ctx.counters.clone();
    let cancel = ctx.cancel.clone();
    let result = tokio::task::spawn_blocking(move || {
        pipeline::decompress(file, std::io::sink(), magic, &expected, &counters, &cancel).map(drop)
    })
    .await
    .context("verify task panicked")?;
    match result {
        Ok(()) => Ok(Verified {
            status: VerifyStatus::Ok,
            detail: format!(
                "{} stored bytes and {} raw bytes match their SHA-256",
                loc.expected.stored.size, loc.expected.raw.size
            ),
            stored_bytes: loc.expected.stored.size,
            raw_bytes: loc.expected.raw.size,
        }),
        Err(PipelineError::Cancelled) => bail!("cancelled"),
        Err(e @ (PipelineError::Mismatch { .. } | PipelineError::Decode(_))) => Ok(verdict(
            VerifyStatus::Corrupt,
            format!("{}: {e}", loc.data_key),
        )),
        Err(e) => Err(e).with_context(|| format!("read {}", loc.data_key)),
    }
}
