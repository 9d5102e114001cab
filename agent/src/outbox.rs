//! Job results that the coordinator has not acknowledged yet, kept on disk in
//! `state_dir/outbox` so that a result survives an agent restart (review L2): the result is
//! written and fsynced before it is sent, removed when the coordinator acknowledges it, and
//! re-sent after the next Hello when the agent starts again. One file per job,
//! `<job id>.pb` (the protobuf `JobResult`), written through a temporary file and a rename.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use lifeboat_common::ids::validate_id;
use lifeboat_proto as pb;
use prost::Message as _;

/// A stored result larger than this is not one this agent wrote.
const MAX_RESULT_BYTES: u64 = pb::MAX_MESSAGE_BYTES as u64;
const SUFFIX: &str = ".pb";
/// Results older than this are dropped at start: the coordinator has long since failed the job
/// (its lease) and would only acknowledge and ignore them.
const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating) the outbox under `state_dir` and reads the results left in it.
    /// Unreadable files are set aside with a warning rather than stopping the agent.
    pub fn open(state_dir: &Path) -> Result<(Self, Vec<pb::JobResult>)> {
        let dir = state_dir.join("outbox");
        fs::create_dir_all(&dir)
            .with_context(|| format!("create the result outbox {}", dir.display()))?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                // A temporary file of a write that did not finish: the result was never sent.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(job_id) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            match read_one(&path, job_id) {
                Ok(r)
                    if lifeboat_common::time::now_ms().saturating_sub(r.finished_at_ms)
                        > MAX_AGE_MS =>
                {
                    tracing::warn!(
                        job_id,
                        "dropped a job result older than 7 days that the coordinator never acknowledged"
                    );
                    let _ = fs::remove_file(&path);
                }
                Ok(r) => found.push(r),
                Err(e) => {
                    tracing::warn!(
                        "failed to read the stored job result {}: {e:#}; it was renamed to *.bad and will not be sent",
                        path.display()
                    );
                    let _ = fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        if !found.is_empty() {
            tracing::info!(
                results = found.len(),
                "job results from before the restart will be sent to the coordinator"
            );
        }
        Ok((Self { dir }, found))
    }

    fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}{SUFFIX}"))
    }

    /// Stores `result` durably (file and directory fsynced) before it is sent.
    pub fn put(&self, result: &pb::JobResult) -> Result<()> {
        validate_id("job id", &result.job_id)?;
        let bytes = result.encode_to_vec();
        anyhow::ensure!(
            bytes.len() <= pb::MAX_MESSAGE_BYTES,
            "store the job result: it is {} bytes, more than a message may carry",
            bytes.len()
        );
        let path = self.path(&result.job_id);
        let tmp = self.dir.join(format!(".{}.tmp", result.job_id));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("store the job result in {}", self.dir.display()))
    }

    /// Forgets a result the coordinator has acknowledged.
    pub fn remove(&self, job_id: &str) {
        if validate_id("job id", job_id).is_err() {
            return;
        }
        match fs::remove_file(self.path(job_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                job_id,
                "failed to remove an acknowledged job result: {e}; it will be sent again after a restart (harmless)"
            ),
        }
    }
}

fn read_one(path: &Path, job_id: &str) -> Result<pb::JobResult> {
    validate_id("job id", job_id)?;
    let len = fs::metadata(path)?.len();
    anyhow::ensure!(len <= MAX_RESULT_BYTES, "{len} bytes is too large");
    let r = pb::JobResult::decode(fs::read(path)?.as_slice()).context("decode")?;
    anyhow::ensure!(r.job_id == job_id, "it holds the result of another job");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (o, found) = Outbox::open(dir.path()).expect("open");
        assert!(found.is_empty());
        let r = pb::JobResult {
            job_id: "20261203T084711Z-a273a2".into(),
            state: pb::JobState::Succeeded as i32,
            finished_at_ms: lifeboat_common::time::now_ms(),
            ..Default::default()
        };
        o.put(&r).expect("put");
        std::fs::write(
            dir.path().join("outbox/20261203T084711Z-bbbbbb.pb"),
            b"\xff\xff",
        )
        .expect("write junk");
        let (o, found) = Outbox::open(dir.path()).expect("reopen");
        assert_eq!(found, vec![r.clone()]);
        o.remove(&r.job_id);
        let (o, found) = Outbox::open(dir.path()).expect("reopen");
        assert!(found.is_empty());
        o.put(&pb::JobResult {
            finished_at_ms: 5,
            ..r
        })
        .expect("put");
        let (_, found) = Outbox::open(dir.path()).expect("reopen");
        assert!(found.is_empty(), "a week-old result is dropped");
    }
}
