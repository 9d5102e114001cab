//! Where a config value is, for error messages: `FILE: KEY (line N): MESSAGE`. Used by the
//! config and by the sub-configs of other modules (schedules, retention), so it depends on
//! nothing of theirs.

use std::path::Path;

use lifeboat_common::config::ConfigError;
use toml::Spanned;

/// Error helper: `FILE: KEY (line N): MESSAGE`.
pub(crate) struct At<'a> {
    pub(crate) file: &'a Path,
    text: &'a str,
}

impl<'a> At<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text }
    }

    pub(crate) fn err<T>(&self, key: &str, spanned: &Spanned<T>, message: String) -> ConfigError {
        let start = spanned.span().start.min(self.text.len());
        let line = self.text[..start].matches('\n').count() + 1;
        ConfigError::new(self.file, format!("{key} (line {line})"), message)
    }
}
