//! The journal of open multipart uploads.

use super::*;

/// Multipart uploads this agent started and has not completed or aborted yet, one small file
/// each in the agent's state directory. After a crash the janitor aborts them from here, also
/// on servers that cannot list multipart uploads.
#[derive(Debug)]
pub(super) struct Journal {
    pub(super) dir: PathBuf,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct JournalEntry {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) started_ms: i64,
}

impl Journal {
    pub(super) fn path(&self, upload_id: &str) -> PathBuf {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(upload_id.as_bytes());
        self.dir.join(format!("{}.json", &hex::encode(h)[..32]))
    }

    pub(super) fn record(&self, key: &str, upload_id: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.dir)?;
        let entry = JournalEntry {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            started_ms: lifeboat_common::time::now_ms(),
        };
        let mut f = std::fs::File::create(self.path(upload_id))?;
        f.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
        f.sync_all()
    }

    pub(super) fn forget(&self, upload_id: &str) {
        let _ = std::fs::remove_file(self.path(upload_id));
    }

    pub(super) fn entries(&self) -> Vec<JournalEntry> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }
}
