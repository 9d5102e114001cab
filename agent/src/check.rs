//! The check job: `lifeboat targets check TARGET` (the pre-flight of a backup, run on its own:
//! connection, server and tool versions, privileges, size, repository) and `lifeboat restore
//! --dry-run` (the restore's own checks and plan, see [`crate::restore::dry_run`]). Every
//! finding goes to the job's report; the job fails if any is an error. Nothing is written to a
//! database; a target check writes one small probe object into the repository and removes it.

pub(crate) mod archiving;
mod mysql;
mod postgres;

use anyhow::{Context, Result};

use crate::{
    config::{Engine, TargetConfig},
    job::JobCtx,
    provider,
    repo::{self, backup_dir_key},
    work::CheckWork,
};

pub async fn run(ctx: &JobCtx, work: &CheckWork) -> Result<()> {
    let name = match work {
        CheckWork::DryRun(restore) => return crate::restore::dry_run(ctx, restore).await,
        CheckWork::Target(name) => name,
    };
    let target = ctx.config.targets.get(name).with_context(|| {
        format!("this agent has no target {name:?}; check the agent's [[target]] list")
    })?;
    ctx.set_phase("checking");
    let report = &ctx.report;
    match provider::check_url(target.profile, &target.url) {
        Ok(notes) => {
            report.ok(
                "provider",
                format!(
                    "{} profile, engine {}",
                    target.profile,
                    target.engine.as_str()
                ),
            );
            for n in notes {
                report.info("provider", n);
            }
        }
        Err(e) => report.error("provider", e.to_string()),
    }
    match target.password() {
        Ok(password) => match target.engine {
            Engine::Postgres => postgres::check(ctx, target, password.as_ref()).await,
            Engine::Mysql => mysql::check(ctx, target, password.as_ref()).await,
        },
        Err(e) => report.error("connection", format!("{e:#}")),
    }
    repository(ctx, target, &target.repository, "repository").await;
    for r in &target.copy_to {
        repository(ctx, target, r, "copies").await;
    }
    encryption(ctx, target);
    for leftover in crate::swap_journal::unresolved(&ctx.config.state_dir, &target.name) {
        report.error("interrupted restore", leftover);
    }
    if let Ok(names) = crate::swap_journal::leftover_databases(&ctx.config.state_dir, target).await
    {
        for n in names {
            report.warn(
                "interrupted restore",
                crate::swap_journal::describe_unknown_leftover(&n),
            );
        }
    }
    report.bail_on_errors("check failed")
}

/// The target's encryption: its recipients readable now, and whether this agent can decrypt.
fn encryption(ctx: &JobCtx, target: &TargetConfig) {
    let report = &ctx.report;
    let Some(enc) = &target.encryption else {
        report.info(
            "encryption",
            "off: backups are stored as compressed plaintext (configure encryption = { recipients = [\"age1…\"] } on the target or its repository to encrypt them)",
        );
        return;
    };
    let recipients = match enc.recipients() {
        Ok(r) => r,
        Err(e) => {
            report.error(
                "encryption",
                format!("{e:#}; backups will fail until it is fixed"),
            );
            return;
        }
    };
    let identities = crate::crypt::agent_identities(&ctx.config);
    let can_decrypt = identities.as_ref().is_ok_and(|ids| {
        ids.iter()
            .any(|i| recipients.strings().contains(&i.to_public().to_string()))
    });
    let can = match &identities {
        Err(e) => {
            report.error("encryption", format!("{e:#}"));
            return;
        }
        Ok(_) if can_decrypt => {
            "this agent holds a key for one of them: it can restore and fully verify".to_owned()
        }
        Ok(ids) if ids.is_empty() => "this agent holds no identity_file: it backs up and checks stored bytes, but cannot restore or decrypt (a backup-only agent)".to_owned(),
        Ok(_) => "this agent's identity_file holds none of their keys: it cannot decrypt these backups".to_owned(),
    };
    let what = if target.mode == crate::config::BackupMode::Physical {
        "base backups and the WAL archive"
    } else {
        "backups"
    };
    report.ok(
        "encryption",
        format!(
            "age ({what}), {} recipient(s), key ids {}; {can}",
            recipients.strings().len(),
            recipients.key_ids().join(", ")
        ),
    );
}

/// A repository of the target (its own, or one it copies to): reachable, writable, and
/// deletable (retention deletes), proven with one small probe object that is removed at once.
/// Findings go under `check`.
async fn repository(ctx: &JobCtx, target: &TargetConfig, name: &str, check: &str) {
    let report = &ctx.report;
    let repo = match repo::open(&ctx.config, name) {
        Ok(r) => r,
        Err(e) => return report.error(check, format!("{e:#}")),
    };
    let probe = backup_dir_key(
        &ctx.config.environment,
        &target.name,
        &format!("lifeboat-check-{}", ctx.job_id.to_ascii_lowercase()),
    );
    let body = bytes::Bytes::from_static(b"lifeboat check probe; safe to delete\n");
    match repo.put_bytes(&probe, body, &ctx.cancel).await {
        Ok(_) => match repo.delete(&probe).await {
            Ok(()) => report.ok(
                check,
                format!("{}: writable, and objects can be deleted", repo.describe()),
            ),
            Err(e) => report.warn(
                check,
                format!(
                    "{}: writable, but the probe {probe} could not be deleted ({e}); retention needs to delete backups, grant it (and remove the probe)",
                    repo.describe()
                ),
            ),
        },
        Err(e) => report.error(check, format!("cannot write to {}: {e}", repo.describe())),
    }
}

/// How long a probe dump (schema only, no rows) may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs a dump tool that reads every definition but no rows (`cmd`, with its output sent
/// nowhere and stderr piped) and records how it went under `dump`. A tool that does not finish
/// within [`PROBE_TIMEOUT`], or a cancelled check, is killed.
async fn probe_dump(ctx: &JobCtx, mut cmd: tokio::process::Command, what: &str) {
    use crate::process::{describe_status, stderr_tail};
    let report = &ctx.report;
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return report.error("dump", format!("start {what}: {e}")),
    };
    let Some(stderr) = child.stderr.take() else {
        return report.error("dump", format!("{what} has no stderr"));
    };
    let stderr = stderr_tail(stderr);
    let waited = tokio::select! {
        w = tokio::time::timeout(PROBE_TIMEOUT, child.wait()) => w,
        () = ctx.cancel.cancelled() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return;
        }
    };
    let outcome = match waited {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("wait for {what}: {e}")),
        Err(_) => {
            // Killed first: its stderr ends only when it does.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!(
                "{what} did not finish within {} s",
                PROBE_TIMEOUT.as_secs()
            ))
        }
    };
    let stderr = stderr.await.unwrap_or_default();
    match outcome {
        Ok(status) if status.success() => report.ok(
            "dump",
            format!("{what} ran to its end with these credentials"),
        ),
        Ok(status) => report.error(
            "dump",
            format!(
                "{what} failed ({}): {}",
                describe_status(&status),
                if stderr.is_empty() {
                    "no error output"
                } else {
                    &stderr
                }
            ),
        ),
        Err(e) => report.error("dump", e),
    }
}

/// `1.2 GiB` for a size finding.
fn size_finding(ctx: &JobCtx, bytes: u64) {
    ctx.report.info(
        "size",
        format!(
            "database size {} (data and indexes; the dump is usually smaller)",
            crate::restore::human_bytes(bytes)
        ),
    );
}
