//! End-to-end test harness for lifeboat.
//!
//! Every test builds its own world: a throwaway PostgreSQL 15 on a free port ([`Pg`]), a CA and
//! certificates made with the real `lifeboat pki` ([`Pki`]), the real coordinator and agent
//! binaries on port 0 ([`Coordinator`], [`Agent`]), and the real CLI ([`Ctl`]). [`Sandbox`] wires
//! the usual set together. Nothing is mocked; waits poll with a deadline ([`eventually`]);
//! servers are stopped with SIGTERM and their logs are printed when a test fails.
//!
//! The binaries are never built here: they are looked up next to the test executable
//! (`target/<profile>/`) or in `LIFEBOAT_BIN_DIR`. `tests/run.sh` builds the workspace first.

pub mod agent;
pub mod compare;
pub mod coordinator;
pub mod ctl;
pub mod fixtures;
pub mod fsutil;
pub mod http;
pub mod mariadb;
pub mod netcut;
pub mod pg;
pub mod pki;
pub mod poll;
pub mod process;
pub mod promtool;
pub mod s3;
pub mod s3proxy;
pub mod sandbox;
pub mod stall;
pub mod tmpfs;
pub mod wal;
pub mod wrappers;

use std::path::{Path, PathBuf};

pub use agent::{Agent, AgentBuilder, TargetConfig};
pub use compare::{assert_row_counts_match, assert_same_data, dump_sql};
pub use coordinator::{Coordinator, CoordinatorBuilder};
pub use ctl::{Ctl, CtlOutput};
pub use pg::Pg;
pub use pki::{CertPair, Pki};
pub use poll::{eventually, eventually_default};
pub use process::Proc;
pub use sandbox::{Sandbox, SandboxBuilder, SandboxTarget};
pub use tmpfs::Tmpfs;
pub use wrappers::{MariaDbBinDir, PgBinDir};

/// Where the real PostgreSQL 15 client and server programs live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The directory holding `lifeboat`, `lifeboat-coordinator` and `lifeboat-agent`:
/// `LIFEBOAT_BIN_DIR` if set, else the cargo profile directory this test executable was built
/// into (`target/<profile>/deps/<test>` → `target/<profile>/`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent")
        .to_owned();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

/// The path of one lifeboat binary; panics with what to do when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the workspace first (`cargo build --workspace`) or set \
         LIFEBOAT_BIN_DIR",
        path.display()
    );
    path
}

/// `n` random bytes as lowercase hex, from the kernel's CSPRNG.
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A per-test scratch directory under the system temp dir. Removed on drop, unless
/// `LIFEBOAT_E2E_KEEP` is set or the test is failing (then its path is printed so the logs and
/// the repository can be looked at).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(test_name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lifeboat-e2e-{test_name}-"))
            .tempdir()
            .expect("create test dir");
        let path = dir.path().to_owned();
        Self {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created if missing.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).expect("create test subdir");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::env::var_os("LIFEBOAT_E2E_KEEP").is_some() || std::thread::panicking();
        if let Some(dir) = self.dir.take()
            && keep
        {
            let path = dir.keep();
            eprintln!("test dir kept: {}", path.display());
        }
    }
}
