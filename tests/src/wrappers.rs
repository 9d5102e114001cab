//! Fault-injecting wrappers around the real database client programs (D14, D15, D16, D19,
//! N21, X37): a `pg_bin_dir` for PostgreSQL targets ([`PgBinDir`]) and a `mysql_bin_dir`
//! for MySQL-engine targets ([`MariaDbBinDir`]).
//!
//! Every real program is symlinked; a wrapped one is replaced by a bash script that knows the
//! real program as `$REAL` and this directory as `$HERE` (for marker files a test polls for or
//! creates to switch behaviour). `--version`/`-V` (and, for MariaDB, `--help`, which the agent
//! reads for the client's options) always go to the real program unless the wrapper says
//! otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::PG_BIN;

/// Where the real MariaDB client programs live.
pub const MARIADB_BIN: &str = "/usr/bin";

/// The MariaDB client programs a `mysql_bin_dir` holds.
const MARIADB_PROGRAMS: [&str; 2] = ["mariadb", "mariadb-dump"];

/// Replaces `dir/program` with a bash script running `body`, with `$REAL` (the real
/// program) and `$HERE` (`dir`) set.
fn write_wrapper(dir: &Path, real: &Path, program: &str, body: &str) {
    let script = format!(
        "#!/bin/bash\n\
         # lifeboat e2e fault-injecting wrapper\n\
         REAL={real:?}\n\
         HERE={here:?}\n\
         {body}",
        real = real.join(program).display().to_string(),
        here = dir.display().to_string(),
    );
    let file = dir.join(program);
    let _ = std::fs::remove_file(&file);
    std::fs::write(&file, script).expect("write wrapper");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
}

/// Creates `dir` with a symlink to `real/NAME` for each of `names`.
fn link_all(dir: &Path, real: &Path, names: impl IntoIterator<Item = std::ffi::OsString>) {
    std::fs::create_dir_all(dir).expect("create bin dir");
    for name in names {
        let link = dir.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(real.join(&name), &link).expect("symlink a real program");
    }
}

pub struct PgBinDir {
    path: PathBuf,
}

impl PgBinDir {
    /// Creates `path` with a symlink for every real PostgreSQL program.
    pub fn new(path: &Path) -> PgBinDir {
        let names = std::fs::read_dir(PG_BIN)
            .expect("read PostgreSQL bin dir")
            .flatten()
            .map(|e| e.file_name());
        link_all(path, Path::new(PG_BIN), names);
        PgBinDir {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A marker file in this directory.
    pub fn marker(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Replaces `program` with a script: `body` runs after the `--version` pass-through.
    pub fn wrap(&self, program: &str, body: &str) -> &Self {
        self.wrap_raw(
            program,
            &format!("case \"${{1:-}}\" in --version|-V) exec \"$REAL\" \"$@\";; esac\n{body}\n"),
        )
    }

    /// Replaces `program` with a script that has no `--version` pass-through.
    pub fn wrap_raw(&self, program: &str, body: &str) -> &Self {
        write_wrapper(&self.path, Path::new(PG_BIN), program, body);
        self
    }
}

/// A `mysql_bin_dir`: the real `mariadb` and `mariadb-dump`, either of which a test may wrap.
pub struct MariaDbBinDir {
    path: PathBuf,
}

impl MariaDbBinDir {
    /// Creates `path` with a symlink for each MariaDB client program lifeboat runs.
    pub fn new(path: &Path) -> MariaDbBinDir {
        link_all(
            path,
            Path::new(MARIADB_BIN),
            MARIADB_PROGRAMS.map(std::ffi::OsString::from),
        );
        MariaDbBinDir {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A marker file in this directory.
    pub fn marker(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Replaces `program` with a script: `body` runs after the `--version`/`--help`
    /// pass-through.
    pub fn wrap(&self, program: &str, body: &str) -> &Self {
        self.wrap_raw(
            program,
            &format!(
                "case \"${{1:-}}\" in --version|-V|--help) exec \"$REAL\" \"$@\";; esac\n{body}\n"
            ),
        )
    }

    /// Replaces `program` with a script that has no pass-through.
    pub fn wrap_raw(&self, program: &str, body: &str) -> &Self {
        write_wrapper(&self.path, Path::new(MARIADB_BIN), program, body);
        self
    }
}

/// While `$HERE/slow` exists: feeds the real program the first `bytes` of its standard input,
/// creates `$HERE/stalled`, then stops reading (the writer blocks, as with a slow restore) for
/// up to `secs` seconds, or until the program has been killed — then the feeder exits too, so
/// the writer's pipe closes as it would with the real program (D19). Without the marker it is
/// the real program.
fn stall_input_when_marked(bytes: u64, secs: u64) -> String {
    format!(
        "if [ -e \"$HERE/slow\" ]; then\n\
         me=$$\n\
         exec \"$REAL\" \"$@\" < <(\n\
         head -c {bytes}\n\
         touch \"$HERE/stalled\"\n\
         for _ in $(seq 1 $(({secs} * 10))); do\n\
         state=$(awk '{{print $3}}' /proc/$me/stat 2>/dev/null)\n\
         [ -n \"$state\" ] && [ \"$state\" != Z ] || exit 0\n\
         sleep 0.1\n\
         done)\n\
         fi\n\
         exec \"$REAL\" \"$@\""
    )
}

/// pg_dump bodies.
pub mod pg_dump {
    /// Passes `bytes` of the real output through, then fails like a dump that lost its
    /// connection (D14).
    pub fn partial_then_fail(bytes: u64) -> String {
        format!(
            "\"$REAL\" \"$@\" | head -c {bytes}\n\
             echo 'pg_dump: error: lifeboat-e2e injected failure after {bytes} bytes' >&2\n\
             exit 1"
        )
    }

    /// Prints nothing and succeeds (D15).
    pub const SILENT_SUCCESS: &str = "exit 0";

    /// Prints plausible-looking garbage and succeeds (D15).
    pub const GARBAGE_SUCCESS: &str =
        "head -c 200000 /dev/urandom | base64\necho '-- not a dump'\nexit 0";

    /// Reports an older major version than the server (D16); dumps nothing.
    pub fn reports_version(version: &str) -> String {
        format!(
            "case \"${{1:-}}\" in --version|-V) echo 'pg_dump (PostgreSQL) {version}'; exit 0;; esac\n\
             echo \"pg_dump: error: lifeboat-e2e: this pg_dump {version} must not be used\" >&2\n\
             exit 1"
        )
    }

    /// While `$HERE/stall` exists: passes `bytes` of the real output through, creates
    /// `$HERE/stalled` and then hangs (keeping stdout open) for up to `secs` seconds, or until
    /// its parent (the agent) is gone. Without the marker it is the real pg_dump (N21).
    pub fn stall_when_marked(bytes: u64, secs: u64) -> String {
        format!(
            "if [ -e \"$HERE/stall\" ]; then\n\
             \"$REAL\" \"$@\" | head -c {bytes}\n\
             touch \"$HERE/stalled\"\n\
             for _ in $(seq 1 $(({secs} * 10))); do\n\
             kill -0 \"$PPID\" 2>/dev/null || exit 1\n\
             sleep 0.1\n\
             done\n\
             exit 1\n\
             fi\n\
             exec \"$REAL\" \"$@\""
        )
    }

    /// While `$HERE/stall` exists when it starts: passes `bytes` of the real output through,
    /// creates `$HERE/stalled`, then holds the rest back (pg_dump blocks on the full pipe)
    /// until `$HERE/stall` is removed, and then passes the rest through and exits with
    /// pg_dump's status. It gives up (exit 1, so pg_dump dies of a closed pipe) as soon as
    /// the wrapper itself or its parent (the agent) is gone, so a killed job leaves no process
    /// behind. Without the marker it is the real pg_dump (N22, N23, job control).
    pub fn stall_until_released(bytes: u64) -> String {
        format!(
            "if [ -e \"$HERE/stall\" ]; then\n\
             me=$$\n\
             \"$REAL\" \"$@\" | {{\n\
             head -c {bytes}\n\
             touch \"$HERE/stalled\"\n\
             while [ -e \"$HERE/stall\" ]; do\n\
             kill -0 \"$PPID\" 2>/dev/null || exit 1\n\
             state=$(awk '{{print $3}}' /proc/$me/stat 2>/dev/null)\n\
             [ -n \"$state\" ] && [ \"$state\" != Z ] || exit 1\n\
             sleep 0.1\n\
             done\n\
             exec cat\n\
             }}\n\
             exit \"${{PIPESTATUS[0]}}\"\n\
             fi\n\
             exec \"$REAL\" \"$@\""
        )
    }

    /// The real pg_dump after a pause, so its command line is visible for a while (X37).
    pub fn pause_then_real(secs: f64) -> String {
        format!("sleep {secs}\nexec \"$REAL\" \"$@\"")
    }
}

/// pg_restore bodies.
pub mod pg_restore {
    /// While `$HERE/slow` exists: feeds the real pg_restore the first `bytes` of its standard
    /// input, creates `$HERE/stalled`, then stops reading for up to `secs` seconds or until
    /// pg_restore has been killed (D19). Without the marker it is the real pg_restore.
    pub fn stall_when_marked(bytes: u64, secs: u64) -> String {
        super::stall_input_when_marked(bytes, secs)
    }

    /// While `$HERE/stall` exists: feeds the real pg_restore the first `bytes` of its standard
    /// input, creates `$HERE/stalled`, then feeds nothing until `stall` is removed and the
    /// rest after it (a restore held midway, then let go). Without the marker it is the real
    /// pg_restore.
    pub fn stall_until_released(bytes: u64) -> String {
        format!(
            "if [ -e \"$HERE/stall\" ]; then\n\
             me=$$\n\
             exec \"$REAL\" \"$@\" < <(\n\
             head -c {bytes}\n\
             touch \"$HERE/stalled\"\n\
             while [ -e \"$HERE/stall\" ]; do\n\
             state=$(awk '{{print $3}}' /proc/$me/stat 2>/dev/null)\n\
             [ -n \"$state\" ] && [ \"$state\" != Z ] || exit 0\n\
             sleep 0.1\n\
             done\n\
             exec cat)\n\
             fi\n\
             exec \"$REAL\" \"$@\""
        )
    }

    /// The real pg_restore after a pause (X37).
    pub fn pause_then_real(secs: f64) -> String {
        format!("sleep {secs}\nexec \"$REAL\" \"$@\"")
    }
}

/// mariadb-dump bodies (for [`MariaDbBinDir::wrap`], or `wrap_raw` where noted).
pub mod mariadb_dump {
    /// Passes `bytes` of the real output through, then fails like a dump that lost its
    /// connection (D14).
    pub fn partial_then_fail(bytes: u64) -> String {
        format!(
            "\"$REAL\" \"$@\" | head -c {bytes}\n\
             echo 'mariadb-dump: lifeboat-e2e injected failure after {bytes} bytes' >&2\n\
             exit 2"
        )
    }

    /// Prints nothing and succeeds (D15).
    pub const SILENT_SUCCESS: &str = "exit 0";

    /// A real dump without its last `lines` lines (and so without `-- Dump completed`), and
    /// exit 0 (D15).
    pub fn truncated_success(lines: u32) -> String {
        format!("\"$REAL\" \"$@\" | head -n -{lines}\nexit 0")
    }

    /// For `wrap_raw`: reports `version` (a whole `--version` line) and dumps nothing (D16);
    /// `--help` is the real one's.
    pub fn reports_version(version: &str) -> String {
        format!(
            "case \"${{1:-}}\" in\n\
             --version|-V) echo '{version}'; exit 0;;\n\
             --help) exec \"$REAL\" \"$@\";;\n\
             esac\n\
             echo 'lifeboat-e2e: this mariadb-dump must not be used' >&2\nexit 1\n"
        )
    }
}

/// mariadb (the SQL client) bodies.
pub mod mariadb {
    /// [`pg_restore::stall_when_marked`](super::pg_restore::stall_when_marked) for the SQL
    /// client a MySQL-engine restore feeds (D19).
    pub fn stall_when_marked(bytes: u64, secs: u64) -> String {
        super::stall_input_when_marked(bytes, secs)
    }
}
