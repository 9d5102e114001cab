//! The settings that turn a restored base backup into a point-in-time recovery: PostgreSQL
//! fetches the archived WAL through `wal-fetch` (`restore_command`), replays it to the target
//! on the newest timeline, then does what the action says. Written into the restored data
//! directory (`postgresql.auto.conf`, `recovery.signal`), never into a running cluster's.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use lifeboat_proto::domain::{RecoveryAction, RecoveryTarget};

/// A value in single quotes as `postgresql.conf` reads it.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `restore_command` of a restored cluster of `target`: this agent's client over its
/// socket.
pub fn restore_command(client: &Path, socket: &Path, target: &str) -> String {
    format!(
        "{} wal-fetch --socket {} --target {} %f %p",
        shell_word(&client.display().to_string()),
        shell_word(&socket.display().to_string()),
        shell_word(target)
    )
}

/// `s` as one word for `/bin/sh` (PostgreSQL runs the command through it).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The lines appended to `postgresql.auto.conf`.
pub fn settings(
    restore_command: &str,
    target: &RecoveryTarget,
    action: RecoveryAction,
    header: &str,
) -> String {
    let mut s = format!(
        "\n# {header}\nrestore_command = {}\nrecovery_target_timeline = 'latest'\n",
        quoted(restore_command)
    );
    match target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(us) => s.push_str(&format!(
            "recovery_target_time = {}\n",
            quoted(&RecoveryTarget::pg_time(*us))
        )),
        RecoveryTarget::Lsn(l) => {
            s.push_str(&format!(
                "recovery_target_lsn = {}\n",
                quoted(&l.to_string())
            ));
        }
        RecoveryTarget::Xid(x) => s.push_str(&format!("recovery_target_xid = '{x}'\n")),
        RecoveryTarget::Name(n) => s.push_str(&format!("recovery_target_name = {}\n", quoted(n))),
    }
    if !matches!(target, RecoveryTarget::Latest) {
        s.push_str(&format!("recovery_target_action = '{}'\n", action.as_str()));
    }
    s
}

/// Appends `settings` to `DIR/postgresql.auto.conf` and creates `DIR/recovery.signal`, both
/// synced, with the owner and mode of the files around them.
pub fn write(dir: &Path, settings: &str) -> Result<()> {
    let conf = dir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .with_context(|| format!("open {}", conf.display()))?;
    f.write_all(settings.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", conf.display()))?;
    let signal = dir.join("recovery.signal");
    let s =
        std::fs::File::create(&signal).with_context(|| format!("create {}", signal.display()))?;
    s.sync_all()
        .with_context(|| format!("sync {}", signal.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_target_and_quote_what_they_hold() {
        let cmd = restore_command(
            Path::new("/usr/local/bin/lifeboat-agent"),
            Path::new("/run/lifeboat agent/wal.sock"),
            "main",
        );
        assert_eq!(
            cmd,
            "/usr/local/bin/lifeboat-agent wal-fetch --socket '/run/lifeboat agent/wal.sock' --target main %f %p"
        );
        let t = RecoveryTarget::time("2026-12-03 14:03:27.5+01").expect("time");
        let s = settings(&cmd, &t, RecoveryAction::Pause, "lifeboat restore of b1");
        assert!(
            s.contains("recovery_target_time = '2026-12-03 13:03:27.500000+00'\n"),
            "{s}"
        );
        assert!(s.contains("recovery_target_action = 'pause'\n"), "{s}");
        assert!(s.contains("recovery_target_timeline = 'latest'\n"), "{s}");
        assert!(s.contains("restore_command = '/usr/local/bin/lifeboat-agent wal-fetch --socket ''/run/lifeboat agent/wal.sock'' --target main %f %p'"), "{s}");
        let n = settings(
            &cmd,
            &RecoveryTarget::name("it's \\ here").expect("name"),
            RecoveryAction::Promote,
            "h",
        );
        assert!(
            n.contains("recovery_target_name = 'it''s \\\\ here'\n"),
            "{n}"
        );
        let l = settings(&cmd, &RecoveryTarget::Latest, RecoveryAction::Promote, "h");
        assert!(
            !l.contains("recovery_target_action") && !l.contains("recovery_target_time ="),
            "{l}"
        );
    }

    #[test]
    fn writing_appends_and_signals() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("postgresql.auto.conf"),
            "work_mem = '4MB'\n",
        )
        .expect("conf");
        write(dir.path(), "\nrestore_command = 'x'\n").expect("write");
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).expect("read");
        assert_eq!(conf, "work_mem = '4MB'\n\nrestore_command = 'x'\n");
        assert!(dir.path().join("recovery.signal").is_file());
    }
}
