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

/// Runs `pg_verifybackup` on the directory (the `backup_manifest` in it, the WAL in its
/// `pg_wal` parsed): its last line on success, its output in the error otherwise.
pub(super) async fn run_verifybackup(
    tool: &Path,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<String> {
    let mut cmd = crate::process::tool_command(tool);
    cmd.env("LC_ALL", "C")
        .arg(dir)
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
