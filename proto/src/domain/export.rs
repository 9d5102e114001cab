//! Break-glass exports (`lifeboat backup export ID --to PATH`): the file asked for, checked
//! where it arrives, and what the agent wrote.

use std::path::{Component, Path};

use super::RecordError;

/// Longest export path accepted (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// The suffix of the manifest copy written beside an export (`PATH.manifest.json`).
pub const EXPORT_MANIFEST_SUFFIX: &str = ".manifest.json";

/// The file an export creates on the agent's host: an absolute path naming a file (its last
/// component is a plain name), without control characters. `..` in the directory part is
/// allowed here: the agent resolves the directory (and its symbolic links) before it checks
/// it against its `export_dirs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPath(String);

impl ExportPath {
    pub fn parse(value: String) -> Result<Self, RecordError> {
        let bad = |why: &str| RecordError(format!("export path {value:?} {why}"));
        if value.is_empty() {
            return Err(bad(
                "is empty; name the file to create, e.g. /var/backups/lifeboat-export/orders.pgdump",
            ));
        }
        if value.len() > MAX_PATH {
            return Err(bad("is too long"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad("contains control characters"));
        }
        let path = Path::new(&value);
        if !path.is_absolute() {
            return Err(bad(
                "is not an absolute path; name the file from /, e.g. /var/backups/lifeboat-export/orders.pgdump",
            ));
        }
        let last = value.rsplit('/').next().unwrap_or_default();
        if matches!(last, "" | "." | "..")
            || !matches!(path.components().next_back(), Some(Component::Normal(_)))
        {
            return Err(bad("does not name a file; add the file name to create"));
        }
        Ok(Self(value))
    }

    pub fn path(&self) -> &Path {
        Path::new(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExportPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An export that finished: the file written and what it holds (the backup's raw dump).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub path: ExportPath,
    pub raw_bytes: u64,
    pub raw_sha256: String,
    pub manifest_path: ExportPath,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_paths_are_checked() {
        let ok = ExportPath::parse("/var/backups/x/orders.pgdump".into()).expect("valid");
        assert_eq!(ok.as_str(), "/var/backups/x/orders.pgdump");
        // The directory is resolved on the agent, `..` included.
        ExportPath::parse("/var/backups/x/../y/orders.pgdump".into()).expect("a .. inside");
        for (bad, why) in [
            ("", "empty"),
            ("orders.pgdump", "absolute"),
            ("./orders.pgdump", "absolute"),
            ("/", "does not name a file"),
            ("/var/backups/", "does not name a file"),
            ("/var/backups/..", "does not name a file"),
            ("/var/backups/.", "does not name a file"),
            ("/var/a\nb", "control"),
        ] {
            let e = ExportPath::parse(bad.into()).expect_err(bad).0;
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(ExportPath::parse(format!("/{}", "a".repeat(5000))).is_err());
    }
}
