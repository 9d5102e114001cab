//! The WAL archiving of a physical target, for `lifeboat targets check`: PostgreSQL archives
//! its WAL through this agent when `archive_mode` is on and `archive_command` runs
//! `lifeboat-agent wal-push --target NAME %p` (with `--socket PATH` when the agent's WAL socket
//! is not the default). The verdict is a pure function of the server's settings and
//! `pg_stat_archiver`: ok when it archives here, a warning with the exact lines for
//! `postgresql.conf` when it does not (base backups restore without an archive, so it is never
//! an error), and a warning when archiving is failing now.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lifeboat_proto::domain::{RecoveryTarget, Severity};
use sqlx::{Row, postgres::PgConnection};

use crate::{
    config::TargetConfig,
    job::JobCtx,
    wal::{
        config::DEFAULT_SOCKET,
        recovery::{quoted, shell_word},
    },
};

/// The report's check name.
const CHECK: &str = "archiving";

/// What the server says about its WAL archiving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Archiving {
    /// `archive_mode`: `off`, `on` or `always`.
    pub mode: String,
    /// `archive_command`, as the server has it.
    pub command: String,
    /// `archive_library` (PostgreSQL 15 and newer; empty when unset or older): when set,
    /// PostgreSQL archives through it and ignores `archive_command`.
    pub library: String,
    /// `archive_timeout`, as `current_setting` shows it (`0` is off).
    pub timeout: String,
    /// `pg_stat_archiver`: files archived, and the last one with its time (µs since the epoch).
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_us: Option<i64>,
    /// `pg_stat_archiver`: failed attempts, and the last one with its time.
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_us: Option<i64>,
}

/// Reads the archiving settings and `pg_stat_archiver` of a physical target and reports on
/// them; a server that cannot be asked is a warning.
pub(crate) async fn check(ctx: &JobCtx, target: &TargetConfig, conn: &mut PgConnection) {
    let report = &ctx.report;
    let found = match read(conn).await {
        Ok(a) => findings(
            &a,
            &target.name,
            &ctx.config.wal.socket,
            &ctx.config.wal.client,
        ),
        Err(e) => vec![(
            Severity::Warning,
            format!(
                "{e:#}; the WAL archiving of target {} could not be checked",
                target.name
            ),
        )],
    };
    for (severity, message) in found {
        match severity {
            Severity::Ok => report.ok(CHECK, message),
            Severity::Info => report.info(CHECK, message),
            Severity::Warning => report.warn(CHECK, message),
            Severity::Error => report.error(CHECK, message),
        }
    }
}

async fn read(conn: &mut PgConnection) -> Result<Archiving> {
    let row = sqlx::query(
        "SELECT current_setting('archive_mode') AS mode,
                current_setting('archive_command') AS command,
                coalesce(current_setting('archive_library', true), '') AS library,
                current_setting('archive_timeout') AS timeout,
                a.archived_count::int8 AS archived_count,
                a.last_archived_wal::text AS last_archived_wal,
                (extract(epoch FROM a.last_archived_time) * 1000000)::int8 AS last_archived_us,
                a.failed_count::int8 AS failed_count,
                a.last_failed_wal::text AS last_failed_wal,
                (extract(epoch FROM a.last_failed_time) * 1000000)::int8 AS last_failed_us
         FROM pg_stat_archiver a",
    )
    .fetch_one(&mut *conn)
    .await
    .context("read the server's archiving settings and pg_stat_archiver")?;
    Ok(Archiving {
        mode: row.try_get("mode")?,
        command: row.try_get("command")?,
        library: row.try_get("library")?,
        timeout: row.try_get("timeout")?,
        archived_count: row.try_get("archived_count")?,
        last_archived_wal: row.try_get("last_archived_wal")?,
        last_archived_us: row.try_get("last_archived_us")?,
        failed_count: row.try_get("failed_count")?,
        last_failed_wal: row.try_get("last_failed_wal")?,
        last_failed_us: row.try_get("last_failed_us")?,
    })
}

/// The verdict on `a` for target `target` of an agent listening on `socket`, whose client is
/// `client`: each finding with its severity (never an error).
pub(crate) fn findings(
    a: &Archiving,
    target: &str,
    socket: &Path,
    client: &Path,
) -> Vec<(Severity, String)> {
    let mut out = Vec::new();
    let wanted = archive_command(client, socket, target);
    let command_line = format!("archive_command = {}", quoted(&wanted));
    let on = matches!(a.mode.as_str(), "on" | "always");
    let problem = if a.library.is_empty() {
        command_problem(&a.command, target, socket)
    } else {
        Some(format!(
            "archive_library = {} is set, so PostgreSQL archives through it and ignores archive_command",
            quoted(&a.library)
        ))
    };
    let library_line = if a.library.is_empty() {
        String::new()
    } else {
        "archive_library = '' / ".to_owned()
    };
    match (on, &problem) {
        (false, problem) => {
            let lines = if problem.is_some() {
                format!("archive_mode = on / {library_line}{command_line}")
            } else {
                "archive_mode = on".to_owned()
            };
            out.push((
                Severity::Warning,
                format!(
                    "WAL archiving is off (archive_mode = {}): base backups restore on their own, but point-in-time recovery needs the WAL archived through this agent; put these lines in postgresql.conf and restart PostgreSQL (archive_mode takes effect only on a restart): {lines}",
                    a.mode
                ),
            ));
        }
        (true, Some(problem)) => {
            let keeps = if a.command.trim().is_empty() && a.library.is_empty() {
                " (with archive_mode on and no archive_command PostgreSQL keeps every WAL file, so pg_wal grows)"
            } else {
                ""
            };
            out.push((
                Severity::Warning,
                format!(
                    "{problem}{keeps}: the WAL does not reach target {target}'s archive, so point-in-time recovery cannot use it; put this in postgresql.conf and reload PostgreSQL (SELECT pg_reload_conf()): {library_line}{command_line}"
                ),
            ));
        }
        (true, None) => {
            let last = match (&a.last_archived_wal, a.last_archived_us) {
                (Some(wal), Some(us)) => format!(
                    "{} files archived, the last {wal} at {}",
                    a.archived_count,
                    RecoveryTarget::pg_time(us)
                ),
                _ => "nothing archived yet".to_owned(),
            };
            out.push((
                Severity::Ok,
                format!(
                    "WAL archiving through this agent (archive_mode = {}, archive_command = {}); {last}",
                    a.mode,
                    quoted(&a.command)
                ),
            ));
            if a.last_archived_wal.is_none() && a.failed_count == 0 {
                out.push((
                    Severity::Info,
                    "PostgreSQL has archived no WAL file since its statistics were reset; SELECT pg_switch_wal() archives the current one now, to try it".to_owned(),
                ));
            }
            if a.timeout.trim() == "0" {
                out.push((
                    Severity::Info,
                    "archive_timeout = 0: on a quiet server a WAL file is archived only once it is full, so the newest changes may reach the archive hours later; set archive_timeout = 60 in postgresql.conf (reload) to bound that".to_owned(),
                ));
            }
        }
    }
    if on && let Some(failed_us) = a.last_failed_us {
        let newer = a.failed_count > 0 && a.last_archived_us.is_none_or(|ok| failed_us > ok);
        if newer {
            let wal = a.last_failed_wal.as_deref().unwrap_or("a WAL file");
            let since = match (&a.last_archived_wal, a.last_archived_us) {
                (Some(w), Some(us)) => {
                    format!(
                        "the last success was {w} at {}",
                        RecoveryTarget::pg_time(us)
                    )
                }
                _ => "nothing was archived since the statistics were reset".to_owned(),
            };
            out.push((
                Severity::Warning,
                format!(
                    "WAL archiving is failing now: archiving {wal} failed at {} ({} failures; {since}); PostgreSQL keeps the WAL until it is archived, so pg_wal grows until the disk fills; the PostgreSQL log and the agent's log say why",
                    RecoveryTarget::pg_time(failed_us),
                    a.failed_count
                ),
            ));
        }
    }
    out
}

/// Why `command` does not archive into `target` through the agent at `socket`; `None` when it
/// does.
fn command_problem(command: &str, target: &str, socket: &Path) -> Option<String> {
    let shown = if command.trim().is_empty() {
        "archive_command is empty".to_owned()
    } else {
        format!("archive_command = {}", quoted(command))
    };
    let Some(words) = shell_words(command) else {
        return Some(format!("{shown} cannot be read (unbalanced quotes)"));
    };
    let Some(at) = words.iter().position(|w| w == "wal-push") else {
        return Some(format!(
            "{shown} does not archive through lifeboat-agent wal-push"
        ));
    };
    let mut their_target = None;
    let mut their_socket = None;
    let mut path = false;
    let mut args = words[at + 1..]
        .iter()
        .take_while(|w| !matches!(w.as_str(), "&&" | "||" | ";" | "|"));
    while let Some(w) = args.next() {
        if let Some(v) = w.strip_prefix("--target=") {
            their_target = Some(v.to_owned());
        } else if w == "--target" {
            their_target = args.next().cloned();
        } else if let Some(v) = w.strip_prefix("--socket=") {
            their_socket = Some(PathBuf::from(v));
        } else if w == "--socket" {
            their_socket = args.next().map(PathBuf::from);
        } else if w == "%p" {
            path = true;
        }
    }
    match their_target {
        None => return Some(format!("{shown} runs wal-push without --target")),
        Some(t) if t != target => {
            return Some(format!(
                "{shown} archives into target {t}, not into this target {target}"
            ));
        }
        Some(_) => {}
    }
    let default = Path::new(DEFAULT_SOCKET);
    match their_socket {
        None if socket != default => {
            return Some(format!(
                "{shown} has no --socket, so wal-push looks for the agent at {DEFAULT_SOCKET} (unless PostgreSQL's environment sets LIFEBOAT_WAL_SOCKET), but this agent's WAL socket is {} ([wal] socket in its config)",
                socket.display()
            ));
        }
        Some(s) if s != socket => {
            return Some(format!(
                "{shown} sends the WAL to {}, but this agent's WAL socket is {} ([wal] socket in its config)",
                s.display(),
                socket.display()
            ));
        }
        _ => {}
    }
    if !path {
        return Some(format!(
            "{shown} does not pass %p, the WAL file's path, to wal-push"
        ));
    }
    None
}

/// The `archive_command` that archives into `target` through this agent's client: `--socket`
/// only when the agent's socket is not the one `wal-push` finds by default.
pub(crate) fn archive_command(client: &Path, socket: &Path, target: &str) -> String {
    let socket = if socket == Path::new(DEFAULT_SOCKET) {
        String::new()
    } else {
        format!(" --socket {}", shell_word(&socket.display().to_string()))
    };
    format!(
        "{} wal-push{socket} --target {} %p",
        shell_word(&client.display().to_string()),
        shell_word(target)
    )
}

/// `command` split into words as `/bin/sh` would (quotes and backslashes; no expansion);
/// `None` when a quote is not closed.
fn shell_words(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "/usr/local/bin/lifeboat-agent";

    fn archiving(mode: &str, command: &str) -> Archiving {
        Archiving {
            mode: mode.into(),
            command: command.into(),
            timeout: "1min".into(),
            archived_count: 12,
            last_archived_wal: Some("00000001000000000000000C".into()),
            last_archived_us: Some(1_780_000_000_000_000),
            ..Archiving::default()
        }
    }

    fn verdict(a: &Archiving, socket: &str) -> Vec<(Severity, String)> {
        findings(a, "main", Path::new(socket), Path::new(CLIENT))
    }

    fn warnings(found: &[(Severity, String)]) -> Vec<&str> {
        found
            .iter()
            .filter(|(s, _)| *s == Severity::Warning)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    #[test]
    fn archiving_through_this_agent_is_ok_and_names_the_last_file() {
        let found = verdict(
            &archiving("on", &format!("{CLIENT} wal-push --target main %p")),
            DEFAULT_SOCKET,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let (s, m) = &found[0];
        assert_eq!(*s, Severity::Ok);
        assert!(
            m.contains("00000001000000000000000C") && m.contains("12 files archived"),
            "{m}"
        );
        // `always`, `--target=`, a non-default socket named, quoted words.
        let found = verdict(
            &archiving(
                "always",
                "'/opt/lb/lifeboat-agent' wal-push --socket=/srv/wal.sock --target=main \"%p\"",
            ),
            "/srv/wal.sock",
        );
        assert!(warnings(&found).is_empty(), "{found:?}");
        assert_eq!(found[0].0, Severity::Ok);
    }

    #[test]
    fn archiving_off_is_a_warning_with_the_lines_to_add() {
        let found = verdict(&archiving("off", ""), DEFAULT_SOCKET);
        let w = warnings(&found);
        assert_eq!(w.len(), 1, "{found:?}");
        assert!(
            w[0].contains("archive_mode = on / archive_command = '/usr/local/bin/lifeboat-agent wal-push --target main %p'")
                && w[0].contains("restart"),
            "{}",
            w[0]
        );
        assert!(found.iter().all(|(s, _)| *s != Severity::Error));
        // The command is already right: only archive_mode is missing.
        let found = verdict(
            &archiving("off", &format!("{CLIENT} wal-push --target main %p")),
            DEFAULT_SOCKET,
        );
        let w = warnings(&found);
        assert!(
            w[0].ends_with(": archive_mode = on") && !w[0].contains("archive_command ="),
            "{}",
            w[0]
        );
    }

    #[test]
    fn a_command_for_another_target_is_a_warning() {
        let found = verdict(
            &archiving("on", &format!("{CLIENT} wal-push --target other %p")),
            DEFAULT_SOCKET,
        );
        let w = warnings(&found);
        assert_eq!(w.len(), 1, "{found:?}");
        assert!(
            w[0].contains("into target other, not into this target main")
                && w[0].contains(
                    "archive_command = '/usr/local/bin/lifeboat-agent wal-push --target main %p'"
                )
                && w[0].contains("pg_reload_conf"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn a_non_default_socket_must_be_named() {
        let socket = "/run/lb agent/wal.sock";
        let found = verdict(
            &archiving("on", &format!("{CLIENT} wal-push --target main %p")),
            socket,
        );
        let w = warnings(&found);
        assert_eq!(w.len(), 1, "{found:?}");
        assert!(
            w[0].contains("has no --socket") && w[0].contains(socket),
            "{}",
            w[0]
        );
        // Quoted for the shell, then for postgresql.conf.
        assert!(
            w[0].contains("archive_command = '/usr/local/bin/lifeboat-agent wal-push --socket ''/run/lb agent/wal.sock'' --target main %p'"),
            "{}",
            w[0]
        );
        // The wrong socket named.
        let found = verdict(
            &archiving(
                "on",
                &format!("{CLIENT} wal-push --socket /tmp/x.sock --target main %p"),
            ),
            socket,
        );
        assert!(warnings(&found)[0].contains("sends the WAL to /tmp/x.sock"));
    }

    #[test]
    fn a_command_that_is_not_this_agent_is_a_warning() {
        for (command, needle) in [
            ("", "archive_command is empty"),
            ("cp %p /mnt/archive/%f", "does not archive through"),
            (&format!("{CLIENT} wal-push %p") as &str, "without --target"),
            (
                &format!("{CLIENT} wal-push --target main") as &str,
                "does not pass %p",
            ),
            ("echo 'unclosed", "cannot be read"),
        ] {
            let found = verdict(&archiving("on", command), DEFAULT_SOCKET);
            let w = warnings(&found);
            assert_eq!(w.len(), 1, "{command}: {found:?}");
            assert!(w[0].contains(needle), "{command}: {}", w[0]);
            assert!(w[0].contains("archive_command = '"), "{}", w[0]);
        }
        let found = verdict(&archiving("on", ""), DEFAULT_SOCKET);
        assert!(warnings(&found)[0].contains("pg_wal grows"));
        // A library takes precedence over any command.
        let mut a = archiving("on", &format!("{CLIENT} wal-push --target main %p"));
        a.library = "basic_archive".into();
        let w = verdict(&a, DEFAULT_SOCKET);
        assert!(
            warnings(&w)[0].contains("archive_library = 'basic_archive' is set")
                && warnings(&w)[0].contains("archive_library = '' / archive_command = '"),
            "{w:?}"
        );
    }

    #[test]
    fn a_failure_newer_than_the_last_success_is_a_warning() {
        let mut a = archiving("on", &format!("{CLIENT} wal-push --target main %p"));
        a.failed_count = 3;
        a.last_failed_wal = Some("00000001000000000000000D".into());
        a.last_failed_us = Some(1_780_000_060_000_000);
        let found = verdict(&a, DEFAULT_SOCKET);
        let w = warnings(&found);
        assert_eq!(w.len(), 1, "{found:?}");
        assert!(
            w[0].contains("failing now")
                && w[0].contains("00000001000000000000000D")
                && w[0].contains(&RecoveryTarget::pg_time(1_780_000_060_000_000))
                && w[0].contains("pg_wal grows"),
            "{}",
            w[0]
        );
        // An old failure, archived since: fine.
        a.last_failed_us = Some(1_779_999_000_000_000);
        assert!(warnings(&verdict(&a, DEFAULT_SOCKET)).is_empty());
        // Failing with nothing ever archived.
        a.last_archived_wal = None;
        a.last_archived_us = None;
        let w = verdict(&a, DEFAULT_SOCKET);
        assert!(warnings(&w)[0].contains("nothing was archived"), "{w:?}");
    }

    #[test]
    fn a_quiet_setup_gets_hints() {
        let mut a = archiving("on", &format!("{CLIENT} wal-push --target main %p"));
        a.timeout = "0".into();
        a.archived_count = 0;
        a.last_archived_wal = None;
        a.last_archived_us = None;
        let found = verdict(&a, DEFAULT_SOCKET);
        assert!(warnings(&found).is_empty(), "{found:?}");
        let infos: Vec<&str> = found
            .iter()
            .filter(|(s, _)| *s == Severity::Info)
            .map(|(_, m)| m.as_str())
            .collect();
        assert!(
            infos.iter().any(|m| m.contains("pg_switch_wal"))
                && infos.iter().any(|m| m.contains("archive_timeout = 60")),
            "{infos:?}"
        );
    }

    #[test]
    fn commands_are_split_like_the_shell() {
        assert_eq!(
            shell_words(r#"a 'b c' "d \"e\"" f\ g"#).expect("balanced"),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(shell_words("'open"), None);
    }
}
