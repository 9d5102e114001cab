//! A `pg_bin_dir` for the agent with fault-injecting wrappers around the real PostgreSQL
//! programs (D14, D15, D16, D19, N21, X37).
//!
//! Every real program of [`PG_BIN`](crate::PG_BIN) is symlinked; a wrapped one is replaced by
//! a bash script that knows the real program as `$REAL` and this directory as `$HERE` (for
//! marker files a test polls for or creates to switch behaviour). `--version`/`-V` always go
//! to the real program unless the wrapper says otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::PG_BIN;

pub struct PgBinDir {
    path: PathBuf,
}

impl PgBinDir {
    /// Creates `path` with a symlink for every real PostgreSQL program.
    pub fn new(path: &Path) -> PgBinDir {
        std::fs::create_dir_all(path).expect("create pg_bin_dir");
        for e in std::fs::read_dir(PG_BIN)
            .expect("read PostgreSQL bin dir")
            .flatten()
        {
            let link = path.join(e.file_name());
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(e.path(), &link).expect("symlink PostgreSQL program");
        }
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
        let script = format!(
            "#!/bin/bash\n\
             # lifeboat e2e fault-injecting wrapper\n\
             REAL={real:?}\n\
             HERE={here:?}\n\
             {body}",
            real = Path::new(PG_BIN).join(program).display().to_string(),
            here = self.path.display().to_string(),
        );
        let file = self.path.join(program);
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, script).expect("write wrapper");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        self
    }
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
    /// input, creates `$HERE/stalled`, then stops reading (the writer blocks, as with a slow
    /// pg_restore) for up to `secs` seconds, or until pg_restore has been killed — then the
    /// feeder exits too, so the writer's pipe closes as it would with a real pg_restore (D19).
    /// Without the marker it is the real pg_restore.
    pub fn stall_when_marked(bytes: u64, secs: u64) -> String {
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

    /// The real pg_restore after a pause (X37).
    pub fn pause_then_real(secs: f64) -> String {
        format!("sleep {secs}\nexec \"$REAL\" \"$@\"")
    }
}
