//! The settings that turn a restored base backup into a point-in-time recovery: PostgreSQL
//! fetches the archived WAL through `wal-fetch` (`restore_command`), replays it to the target
//! on the newest timeline, then does what the action says. Written into the restored data
//! directory (`postgresql.auto.conf`, `recovery.signal`), never into a running cluster's.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use lifeboat_proto::domain::{RecoveryAction, RecoveryTarget};

/// A value in single quotes as `postgresql.conf` reads it.
pub(crate) fn quoted(s: &str) -> String {
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
pub(crate) fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What every restored data directory gets: no archiving. The copy's `archive_command` is
/// the source's; left on, a restored cluster would archive its own WAL into the source
/// target's archive (a new timeline after a promotion, which later recoveries would follow).
/// A copy that takes over from the source turns it back on.
pub fn archive_off(header: &str) -> String {
    format!(
        "\n# {header}\n# Archiving is off in a restored copy; to make this cluster the target's server, \
         ALTER SYSTEM RESET archive_mode and restart.\narchive_mode = 'off'\n"
    )
}

/// The lines appended to `postgresql.auto.conf` for a point-in-time recovery.
pub fn settings(
    restore_command: &str,
    target: &RecoveryTarget,
    action: RecoveryAction,
    header: &str,
) -> String {
    let mut s = archive_off(header);
    s.push_str(&format!(
        "restore_command = {}\nrecovery_target_timeline = 'latest'\n",
        quoted(restore_command)
    ));
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

/// Appends `settings` to `DIR/postgresql.auto.conf` and, with `signal`, creates
/// `DIR/recovery.signal`; everything synced.
pub fn write(dir: &Path, settings: &str, signal: bool) -> Result<()> {
    let conf = dir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .with_context(|| format!("open {}", conf.display()))?;
    f.write_all(settings.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", conf.display()))?;
    if signal {
        let path = dir.join("recovery.signal");
        let s =
            std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        s.sync_all()
            .with_context(|| format!("sync {}", path.display()))?;
    }
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
        assert!(s.contains("archive_mode = 'off'\n"), "{s}");
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
        write(dir.path(), "\nrestore_command = 'x'\n", true).expect("write");
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).expect("read");
        assert_eq!(conf, "work_mem = '4MB'\n\nrestore_command = 'x'\n");
        assert!(dir.path().join("recovery.signal").is_file());
        let plain = tempfile::tempdir().expect("tempdir");
        write(plain.path(), &archive_off("h"), false).expect("write");
        assert!(!plain.path().join("recovery.signal").exists());
        let conf =
            std::fs::read_to_string(plain.path().join("postgresql.auto.conf")).expect("read");
        assert!(conf.contains("archive_mode = 'off'"), "{conf}");
    }
}
