//! The agent's `scratch_dir`: a private directory per job (`verify-<job id>`, a base backup
//! unpacked for `pg_verifybackup`; `restore-<job id>`, an archive spooled for a parallel
//! restore), removed when the job ends. What a crash left is removed at start-up, before any
//! job runs; nothing else in the directory is touched.

use std::path::Path;

use lifeboat_common::ids::JobId;

/// Removes the job directories a crash left under `scratch`; how many went.
pub fn sweep(scratch: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = ["verify-", "restore-"]
            .iter()
            .filter_map(|p| name.strip_prefix(p))
            .any(|id| JobId::parse(id).is_ok());
        if !ours || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => {
                tracing::info!(dir = %e.path().display(), "removed what an interrupted job left in scratch_dir");
                removed += 1;
            }
            Err(err) => tracing::warn!(
                "could not remove {} (left by an interrupted job): {err}; remove it by hand",
                e.path().display()
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_job_directories_are_swept() {
        let root = tempfile::tempdir().expect("tempdir");
        let id = "20261204T221521Z-c4b210";
        for d in [format!("restore-{id}"), format!("verify-{id}")] {
            std::fs::create_dir_all(root.path().join(&d).join("sub")).expect("mkdir");
            std::fs::write(root.path().join(&d).join("archive.pgdump"), b"x").expect("write");
        }
        std::fs::create_dir(root.path().join("restore-not-a-job")).expect("mkdir");
        std::fs::create_dir(root.path().join("mine")).expect("mkdir");
        std::fs::write(root.path().join(format!("restore-{id}.txt")), b"a file").expect("write");
        assert_eq!(sweep(root.path()), 2);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "mine",
                "restore-20261204T221521Z-c4b210.txt",
                "restore-not-a-job"
            ]
        );
        assert_eq!(sweep(&root.path().join("missing")), 0);
    }
}
