//! Secrets: a wrapper whose Debug and Display never show the value, and a reader for secret
//! files that refuses files other users can read.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// A secret value. `Debug` prints `Secret(***)`; the only way to the value is `expose()`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Refuses a secret file that is readable or writable by group or others (B30).
pub fn check_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("read metadata of {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

/// Reads a secret file (0600 or stricter), trimming one trailing newline.
pub fn read_secret_file(path: &Path) -> Result<Secret<String>> {
    check_private_file(path)?;
    let mut s = std::fs::read_to_string(path)
        .with_context(|| format!("read secret file {}", path.display()))?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(Secret(s))
}

/// Writes a file with mode 0600, failing if it already exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn secret_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        write_private_file(&p, b"hunter2\n").expect("write");
        assert_eq!(read_secret_file(&p).expect("read").expose(), "hunter2");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_secret_file(&p).expect_err("world-readable accepted");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(write_private_file(&p, b"x").is_err(), "overwrote");
    }
}
