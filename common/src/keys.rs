//! age keys as lifeboat names and stores them: key ids, identity files (private keys, created
//! 0600 and refused when others can read them) and recipient lists (public keys). The
//! cryptography itself is the `age` crate's.

use std::{io::Write as _, path::Path, str::FromStr};

use age::secrecy::ExposeSecret as _;
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

/// The id of a recipient: the first 8 bytes of the SHA-256 of its `age1…` string, in hex.
/// Short enough for a table, stable, and computed the same way everywhere (agent, CLI, docs:
/// `printf %s age1… | sha256sum | cut -c1-16`).
pub fn key_id(recipient: &str) -> String {
    let digest = Sha256::digest(recipient.as_bytes());
    hex::encode(&digest[..8])
}

/// Parses one recipient (`age1…`); the error names it and what is accepted.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{:?} is not an age X25519 recipient ({e}); expected a public key starting with age1, as `lifeboat keys generate` or `age-keygen` print it",
            s.trim()
        )
    })
}

/// Reads a recipients file: one `age1…` per line; blank lines and `#` comments are skipped.
pub fn read_recipients_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read recipients file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parse_recipient(line).with_context(|| format!("{} line {}", path.display(), n + 1))?;
        out.push(line.to_owned());
    }
    Ok(out)
}

/// Reads an identity file (private keys, `AGE-SECRET-KEY-1…` lines, `#` comments), as
/// `lifeboat keys generate` and `age-keygen` write it. Refused when group or others may read
/// it, or when it holds no key. Errors name the file and line, never a key.
pub fn read_identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>> {
    crate::secret::check_private_file(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read identity file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match age::x25519::Identity::from_str(line) {
            Ok(id) => out.push(id),
            Err(_) => bail!(
                "{} line {} is not an age X25519 identity (expected AGE-SECRET-KEY-1…; passphrase-protected, SSH and plugin keys are not supported)",
                path.display(),
                n + 1
            ),
        }
    }
    if out.is_empty() {
        bail!("{} holds no age identity", path.display());
    }
    Ok(out)
}

/// Creates a new identity file at `path` (never replacing one), mode 0600 from the start, in
/// the format `age-keygen` writes. Returns the public key (recipient).
pub fn generate_identity_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "create {} (an existing key file is never replaced)",
                path.display()
            )
        })?;
    let text = format!(
        "# created: {}\n# public key: {recipient}\n# key id: {}\n{}\n",
        crate::time::rfc3339_seconds(crate::time::now_ms()).unwrap_or_default(),
        key_id(&recipient),
        identity.to_string().expose_secret()
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_the_sha256_prefix() {
        // printf %s age1ql3z… | sha256sum | cut -c1-16
        let r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let id = key_id(r);
        assert_eq!(id.len(), 16);
        assert_eq!(id, hex::encode(&Sha256::digest(r.as_bytes())[..8]));
        assert_ne!(id, key_id("age1other"));
    }

    #[test]
    fn a_generated_file_reads_back_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("restore.key");
        let recipient = generate_identity_file(&path).expect("generate");
        assert!(recipient.starts_with("age1"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ids = read_identity_file(&path).expect("read");
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_public().to_string(), recipient);
        // Never replaced.
        let err = generate_identity_file(&path).expect_err("exists");
        assert!(format!("{err:#}").contains("never replaced"), "{err:#}");
        // Readable by others: refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let Err(err) = read_identity_file(&path) else {
            panic!("a key file open to others was read")
        };
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    }

    #[test]
    fn bad_keys_are_named_without_showing_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "# comment\nAGE-SECRET-KEY-1NOTAKEY\n").expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let Err(err) = read_identity_file(&path) else {
            panic!("a bad key was read")
        };
        let err = format!("{err:#}");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("NOTAKEY"), "the error shows the key: {err}");
        let recipients = dir.path().join("recipients.txt");
        std::fs::write(&recipients, "# ops\n\nage1nope\n").expect("write");
        let err = format!("{:#}", read_recipients_file(&recipients).expect_err("bad"));
        assert!(err.contains("line 3") && err.contains("age1nope"), "{err}");
    }
}
