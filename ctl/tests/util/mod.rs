//! Running the built `lifeboat` binary with a clean environment, and certificates per test.

#![allow(dead_code)] // each test file uses a different part

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use lifeboat_common::{
    pki::{Ca, LeafSpec},
    secret::write_private_file,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status: {self:#?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }
}

/// A command for the binary with no LIFEBOAT_* variables inherited from the caller.
pub fn command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args);
    clean_env(&mut cmd);
    cmd
}

/// Removes the LIFEBOAT_* variables (and RUST_LOG) the test runner may have inherited.
pub fn clean_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LIFEBOAT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
}

/// Runs the binary to completion (blocking).
pub fn run(args: &[&str]) -> Run {
    command(args).output().expect("run lifeboat").into()
}

/// Runs the binary from async code without blocking the runtime.
pub async fn run_async(cmd: std::process::Command) -> Run {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.output().await.expect("run lifeboat").into()
}

/// A CA and certificates in a temporary directory, generated with the library (fast).
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("test").expect("generate CA");
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).expect("write ca.pem");
        Self { dir, ca }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Issues `spec` and writes NAME.pem and NAME.key; returns (cert, key).
    pub fn issue(&self, spec: &LeafSpec) -> (PathBuf, PathBuf) {
        let issued = self.ca.issue(spec).expect("issue");
        let cert = self.path(&format!("{}.pem", spec.name));
        let key = self.path(&format!("{}.key", spec.name));
        std::fs::write(&cert, &issued.cert_pem).expect("write cert");
        write_private_file(&key, issued.key_pem.expose().as_bytes()).expect("write key");
        (cert, key)
    }

    pub fn operator(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(&LeafSpec::operator(name))
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
