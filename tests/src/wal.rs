//! WAL archiving in tests: the agent binary where the `postgres` OS user can run it, the WAL
//! clients run as that user, and what `pg_stat_archiver` says.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::pg::Pg;
use crate::poll::eventually;

/// A copy of the agent binary the `postgres` OS user can run (the build directory may be
/// under a home directory it cannot enter), in a directory it can read.
pub struct Tools {
    dir: tempfile::TempDir,
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

impl Tools {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-wal-tools-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let bin = dir.path().join("lifeboat-agent");
        std::fs::copy(crate::bin("lifeboat-agent"), &bin).expect("copy the agent");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { dir }
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("lifeboat-agent")
    }

    /// A directory `postgres` may write into.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        chown_postgres(&p);
        p
    }
}

pub fn chown_postgres(p: &Path) {
    let ok = Command::new("chown")
        .arg("postgres:postgres")
        .arg(p)
        .status()
        .expect("chown");
    assert!(ok.success());
}

/// `wal-push`/`wal-fetch` run the way PostgreSQL runs them: as `user` (via runuser) or with
/// an explicit uid/gid (via setpriv).
pub fn run_as(prefix: &[&str], bin: &Path, args: &[&str]) -> Output {
    Command::new(prefix[0])
        .args(&prefix[1..])
        .arg(bin)
        .args(args)
        .output()
        .expect("run the WAL client")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub const AS_POSTGRES: &[&str] = &["runuser", "-u", "postgres", "--"];

pub fn archiver(pg: &Pg) -> (u64, String, u64, String) {
    let row = pg.query_one(
        "postgres",
        "SELECT archived_count || '|' || coalesce(last_archived_wal, '') || '|' || \
         failed_count || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver;",
    );
    let f: Vec<&str> = row.split('|').collect();
    (
        f[0].parse().expect("count"),
        f[1].to_owned(),
        f[2].parse().expect("count"),
        f[3].to_owned(),
    )
}

pub fn wait_archived(pg: &Pg, name: &str) {
    eventually(
        &format!("{name} to be archived"),
        Duration::from_secs(60),
        || {
            let (_, last, _, _) = archiver(pg);
            anyhow::ensure!(last.as_str() >= name, "last archived: {last:?}");
            Ok(())
        },
    );
}

/// Archiving through the agent, for a sandbox built with `agent_wal_socket_group("postgres")`:
/// the sandbox's directories made passable for the `postgres` user (so it reaches the agent's
/// socket), replication connections allowed (base backups), and `archive_command` running
/// `tools`' `wal-push` for `target`. Returns the socket's path.
pub fn archive_through_agent(s: &mut crate::Sandbox, tools: &Tools, target: &str) -> String {
    for d in [s.dir.path(), s.agent.dir()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    s.pg.allow_replication();
    let socket = s.agent.wal_socket().display().to_string();
    s.pg.enable_archiving(&format!(
        "{} wal-push --socket {socket} --target {target} %p",
        tools.bin().display()
    ));
    socket
}

/// A `mode = "physical"` target whose restores may go under `/tmp`.
pub fn physical_target(name: &str) -> crate::SandboxTarget {
    crate::SandboxTarget::new(name)
        .extra("mode = \"physical\"")
        .extra("restore_data_dirs = [\"/tmp\"]")
}
