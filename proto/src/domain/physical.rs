//! Physical (base) backups of PostgreSQL: the format their records carry, and the data
//! directory they are restored into, checked where it arrives.

use std::path::{Component, Path, PathBuf};

use super::{BackupRecord, RecordError};

/// The `format` of a physical base backup: `pg_basebackup -Ft -D -`, one tar holding the
/// data directory, the WAL it needs and PostgreSQL's `backup_manifest` (ADR 0015).
pub const PG_BASEBACKUP_FORMAT: &str = "pg_basebackup-tar";

/// Longest data directory path accepted (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

impl BackupRecord {
    /// A physical base backup (restored into a data directory), not a logical dump (restored
    /// into a database).
    pub fn is_physical(&self) -> bool {
        self.format == PG_BASEBACKUP_FORMAT
    }
}

/// The directory a physical backup is restored into: an absolute path with no `.` or `..`
/// component, no control characters, not `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn parse(value: String) -> Result<Self, RecordError> {
        let bad = |why: &str| RecordError(format!("data_dir {value:?} {why}"));
        if value.len() > MAX_PATH {
            return Err(bad("is too long"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad("contains control characters"));
        }
        let path = Path::new(&value);
        if !path.is_absolute() {
            return Err(bad("is not an absolute path; name the directory from /"));
        }
        if value.split('/').any(|c| c == "." || c == "..") {
            return Err(bad("contains . or ..; name the directory itself"));
        }
        if !path.components().any(|c| matches!(c, Component::Normal(_))) {
            return Err(bad("is the root directory; name an empty directory"));
        }
        let trimmed = value.trim_end_matches('/').to_owned();
        Ok(Self(PathBuf::from(trimmed)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl std::fmt::Display for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_are_checked() {
        let ok = DataDir::parse("/srv/pg/recovered/".into()).expect("valid");
        assert_eq!(ok.as_str(), "/srv/pg/recovered");
        for (bad, why) in [
            ("relative/dir", "absolute"),
            ("/srv/../etc", ".."),
            ("/srv/./x", ".."),
            ("/", "root"),
            ("//", "root"),
            ("/srv/a\nb", "control"),
        ] {
            let e = DataDir::parse(bad.into()).expect_err(bad).0;
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(DataDir::parse(format!("/{}", "a".repeat(5000))).is_err());
    }
}
