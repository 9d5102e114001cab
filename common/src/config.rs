//! Loading TOML config files so that every error names the file, the line and the key.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// A config problem found after parsing, pointing at a key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses `text` (the contents of `file`) into `T`. Unknown keys are refused by `T`'s
/// `deny_unknown_fields`; the error carries the line and the offending text.
pub fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
                format!(" line {line} (`{snippet}`)")
            })
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}:{location}: {}; fix the file and start again",
            file.display(),
            e.message()
        )
    })
}

pub fn load_toml<T: DeserializeOwned>(file: &Path) -> Result<T> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("read config file {}", file.display()))?;
    parse_toml(file, &text)
}

/// Resolves `path` relative to the config file's directory.
pub fn resolve(config_file: &Path, path: &Path) -> std::path::PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(path)
    }
}

/// Refuses a path with `..` components (B30).
pub fn check_no_parent(file: &Path, key: &str, path: &Path) -> Result<(), ConfigError> {
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ConfigError::new(
            file,
            key,
            format!(
                "path {:?} must not contain '..'; give a path without it",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse_toml::<T>(Path::new("/etc/x.toml"), "name = \"a\"\nbogus = 1\n")
            .expect_err("unknown key accepted")
            .to_string();
        assert!(e.contains("/etc/x.toml"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse_toml::<T>(Path::new("c.toml"), "name = \"a\"\nport = -1\n")
            .expect_err("negative port accepted")
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn parent_components_refused() {
        assert!(check_no_parent(Path::new("c"), "k", Path::new("/var/../etc")).is_err());
        assert!(check_no_parent(Path::new("c"), "k", Path::new("/var/lib/x")).is_ok());
    }
}
