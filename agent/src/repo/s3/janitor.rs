//! Aborting the multipart uploads interrupted writes left open.

use super::*;

impl S3Repository {
    /// Whether an object key (full, with the repository prefix) lies in a backup directory
    /// this agent is writing now.
    pub(super) fn is_busy(&self, full: &str, busy: &BTreeSet<String>) -> bool {
        self.relative(full)
            .and_then(crate::repo::dir_of)
            .is_some_and(|d| busy.contains(d))
    }

    /// Aborts multipart uploads under `full_prefix` started before `cutoff_ms`, except those
    /// of backups in `busy`.
    pub(super) async fn abort_stale_uploads(
        &self,
        full_prefix: &str,
        cutoff_ms: i64,
        busy: &BTreeSet<String>,
    ) -> StorageResult<u64> {
        let mut aborted = 0;
        let mut done = BTreeSet::new();
        if let Some(j) = &self.journal {
            for e in j.entries() {
                if e.key.starts_with(full_prefix)
                    && e.started_ms < cutoff_ms
                    && !self.is_busy(&e.key, busy)
                {
                    self.abort(&e.key, &e.upload_id).await?;
                    j.forget(&e.upload_id);
                    tracing::info!(object = %self.loc(&e.key), upload_id = %e.upload_id, "aborted a multipart upload an earlier run left open");
                    done.insert(e.upload_id);
                    aborted += 1;
                }
            }
        }
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.cfg.bucket)
                .prefix(full_prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if e.code() == Some("NotImplemented") || http_status(&e) == Some(501) => {
                    tracing::debug!(
                        repository = %self.name,
                        "the server cannot list multipart uploads; the janitor relies on its journal"
                    );
                    break;
                }
                Err(e) => return Err(self.error("list multipart uploads under", full_prefix, &e)),
            };
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let started = u.initiated().and_then(|t| t.to_millis().ok());
                if started.is_some_and(|s| s < cutoff_ms)
                    && !done.contains(id)
                    && !self.is_busy(key, busy)
                {
                    self.abort(key, id).await?;
                    tracing::info!(object = %self.loc(key), upload_id = id, "aborted a stale multipart upload");
                    aborted += 1;
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(aborted)
    }
}
