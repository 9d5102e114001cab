//! Reading objects: a streaming GET that resumes a dropped connection.

use super::*;

pub(super) struct GetStart {
    pub(super) body: ByteStream,
    pub(super) etag: Option<String>,
    pub(super) len: u64,
}

impl S3Repository {
    pub(super) async fn get_from(
        &self,
        full: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> StorageResult<Option<GetStart>> {
        let mut req = self.client.get_object().bucket(&self.cfg.bucket).key(full);
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
        }
        if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(o) => Ok(Some(GetStart {
                etag: o.e_tag().map(str::to_owned),
                len: u64::try_from(o.content_length().unwrap_or(0)).unwrap_or(0),
                body: o.body,
            })),
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) if http_status(&e) == Some(412) => Err(StorageError::Other(anyhow!(
                "{} changed while it was being read; run the job again",
                self.loc(full)
            ))),
            Err(e) => Err(self.error("GET", full, &e)),
        }
    }
}

/// A download that resumes after a dropped connection with a ranged GET pinned to the ETag.
pub(super) struct ResumingRead {
    pub(super) repo: S3Repository,
    pub(super) full: String,
    pub(super) etag: Option<String>,
    pub(super) pos: u64,
    pub(super) end: u64,
    pub(super) body: Option<ByteStream>,
    /// Resumes since the read last made [`RESUME_PROGRESS`] of progress.
    pub(super) resumes: usize,
    /// Where the last resume started.
    pub(super) resumed_at: u64,
}

/// Progress after which a read's resume budget starts again: [`READ_RESUMES`] bounds the
/// drops in a row, not over a whole long download on a flaky link.
pub(super) const RESUME_PROGRESS: u64 = 8 << 20;

impl ResumingRead {
    pub(super) async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let body = self.body.as_mut()?;
            match body.next().await {
                Some(Ok(b)) => {
                    self.pos += b.len() as u64;
                    return Some(Ok(b));
                }
                None if self.pos >= self.end => {
                    self.body = None;
                    return None;
                }
                // The body ended early without an error: as good as a dropped connection.
                next => {
                    let e = match next {
                        Some(Err(e)) => e.to_string(),
                        _ => format!("the response ended at byte {}", self.pos),
                    };
                    self.body = None;
                    if self.pos >= self.end {
                        return None;
                    }
                    if self.pos >= self.resumed_at + RESUME_PROGRESS {
                        self.resumes = 0;
                    }
                    if self.resumes >= READ_RESUMES {
                        return Some(Err(std::io::Error::other(format!(
                            "read {} at byte {}: {e} (gave up after {} resumed reads)",
                            self.repo.loc(&self.full),
                            self.pos,
                            self.resumes
                        ))));
                    }
                    self.resumes += 1;
                    tracing::warn!(
                        object = %self.repo.loc(&self.full),
                        offset = self.pos,
                        error = %e,
                        "download interrupted; resuming with a ranged GET"
                    );
                    self.resumed_at = self.pos;
                    // Backoff with jitter, so parallel readers do not retry in step.
                    let jitter =
                        u64::try_from(lifeboat_common::time::now_ms().rem_euclid(100)).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(
                        (200 << self.resumes.min(5)) + jitter,
                    ))
                    .await;
                    match self
                        .repo
                        .get_from(&self.full, self.pos, self.etag.as_deref())
                        .await
                    {
                        Ok(Some(g)) => self.body = Some(g.body),
                        Ok(None) => {
                            return Some(Err(std::io::Error::other(format!(
                                "{} disappeared while it was being read",
                                self.repo.loc(&self.full)
                            ))));
                        }
                        Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                    }
                }
            }
        }
    }
}
