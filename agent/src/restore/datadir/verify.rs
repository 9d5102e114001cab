//! The end of a data-directory restore: the held-back `PG_VERSION` written once the hashes
//! matched, the files checked by PostgreSQL's `pg_verifybackup`, and the files written after
//! the extraction given to the directory's owner.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;

use super::PG_VERSION;

/// How long `pg_verifybackup` may take (it reads every file once).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Writes the held-back `PG_VERSION` (synced, then its directory): from here PostgreSQL
/// accepts the directory.
pub(super) fn write_pg_version(
    root: &Path,
    version: Option<&[u8]>,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let version = version.context("the archive has no PG_VERSION; it is not a base backup")?;
    let path = root.join(PG_VERSION);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(version)
        .with_context(|| format!("write {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .with_context(|| format!("give {} to uid {uid}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", root.display()))
}

/// Gives the files `names` under `root` to the directory's owner, as the extraction did.
pub(super) fn chown_like_root(
    root: &Path,
    names: &[&str],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    if let Some((uid, gid)) = owner {
        for n in names {
            let p = root.join(n);
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", p.display()))?;
        }
    }
    Ok(())
}

/// The configuration files a server needs in its data directory, and what is written when
/// the backup holds none (Debian and Ubuntu keep them in `/etc/postgresql/VERSION/CLUSTER`,
/// outside the data directory, so their base backups lack them).
const CONFIGS: [(&str, &str); 3] = [
    (
        "postgresql.conf",
        "# Written by lifeboat restore: the backup held no postgresql.conf (the source keeps it\n\
         # outside its data directory, as Debian and Ubuntu do). PostgreSQL's defaults apply, plus\n\
         # postgresql.auto.conf; copy the source server's settings here before relying on this copy.\n",
    ),
    (
        "pg_hba.conf",
        "# Written by lifeboat restore: the backup held no pg_hba.conf. Local connections as the\n\
         # matching operating system user, and password (SCRAM) connections over loopback only;\n\
         # copy the source server's rules here if this copy takes over.\n\
         local all all peer\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1/128 scram-sha-256\n",
    ),
    (
        "pg_ident.conf",
        "# Written by lifeboat restore: the backup held no pg_ident.conf.\n",
    ),
];

/// Writes, after `pg_verifybackup` (it would call them extra files), the configuration files
/// the backup does not hold, mode 0600 and given to the directory's owner; returns their
/// names.
pub(super) fn write_missing_configs(
    root: &Path,
    owner: Option<(u32, u32)>,
) -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for (name, text) in CONFIGS {
        let path = root.join(name);
        if path.exists() {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("write {}", path.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .with_context(|| format!("give {} to uid {uid}", path.display()))?;
        }
        written.push(name);
    }
    if !written.is_empty() {
        std::fs::File::open(root)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("sync {}", root.display()))?;
    }
    Ok(written)
}

/// Runs `pg_verifybackup` on the directory (the `backup_manifest` in it, the WAL in its
/// `pg_wal` parsed; with `skip_checksums`, the files' checksums not read back because they
/// were checked as they were extracted): its last line on success, its output in the error
/// otherwise.
pub(super) async fn run_verifybackup(
    tool: &Path,
    dir: &Path,
    skip_checksums: bool,
    cancel: &CancellationToken,
) -> Result<String> {
    let mut cmd = crate::process::tool_command(tool);
    cmd.env("LC_ALL", "C");
    if skip_checksums {
        cmd.arg("--skip-checksums");
    }
    cmd.arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", tool.display()))?;
    let out = tokio::select! {
        out = tokio::time::timeout(VERIFY_TIMEOUT, child.wait_with_output()) => out
            .map_err(|_| anyhow!("pg_verifybackup did not finish within {}h", VERIFY_TIMEOUT.as_secs() / 3600))?
            .context("wait for pg_verifybackup")?,
        () = cancel.cancelled() => bail!("cancelled"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.trim().lines().collect();
    let shown = lines[lines.len().saturating_sub(8)..].join(" / ");
    if !out.status.success() {
        bail!(
            "pg_verifybackup found the restored files do not match the backup's backup_manifest ({}): {}",
            crate::process::describe_status(&out.status),
            if shown.is_empty() {
                "no output"
            } else {
                &shown
            }
        );
    }
    Ok(lines.last().map_or("ok", |l| l.trim()).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_configuration_files_are_written_and_present_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pg_hba.conf"), "local all all trust\n").expect("hba");
        let written = write_missing_configs(dir.path(), None).expect("write");
        assert_eq!(written, ["postgresql.conf", "pg_ident.conf"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pg_hba.conf")).expect("read"),
            "local all all trust\n"
        );
        let conf = std::fs::read_to_string(dir.path().join("postgresql.conf")).expect("read");
        assert!(conf.lines().all(|l| l.starts_with('#')), "{conf}");
        let empty = tempfile::tempdir().expect("tempdir");
        write_missing_configs(empty.path(), None).expect("write");
        let hba = std::fs::read_to_string(empty.path().join("pg_hba.conf")).expect("read");
        assert!(hba.contains("\nlocal all all peer\n"), "{hba}");
        assert!(!hba.contains("trust"), "{hba}");
    }
}
