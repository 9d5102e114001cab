//! The real `lifeboat` CLI, run with one operator's certificate.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::pki::CertPair;
use crate::poll::scaled;

/// How long one CLI invocation may run (a `--wait` included) before the test fails.
pub fn command_timeout() -> Duration {
    scaled(Duration::from_secs(120))
}

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    pub args: Vec<String>,
    /// Exit code; -1 if killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.code == 0, "expected success: {self}");
        self
    }

    /// Panics unless the command exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert!(self.code == code, "expected exit code {code}: {self}");
        self
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self}"))
    }

    pub fn try_json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(self.stdout.trim()).with_context(|| format!("parse JSON: {self}"))
    }

    /// stdout and stderr together, lowercased (for message checks).
    pub fn text_lower(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr).to_lowercase()
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`lifeboat {}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `lifeboat` against one coordinator as one operator. Cheap to clone; every output is
/// also kept in a transcript shared by the clones (X37 greps it).
#[derive(Clone)]
pub struct Ctl {
    coordinator: String,
    ca: PathBuf,
    cert: CertPair,
    server_name: Option<String>,
    transcript: Arc<Mutex<String>>,
}

impl Ctl {
    pub fn new(coordinator_url: &str, ca: PathBuf, cert: CertPair) -> Self {
        Self {
            coordinator: coordinator_url.to_owned(),
            ca,
            cert,
            server_name: None,
            transcript: Arc::new(Mutex::new(String::new())),
        }
    }

    /// The same coordinator with another operator's certificate (same transcript).
    pub fn with_cert(&self, cert: CertPair) -> Self {
        Self {
            cert,
            ..self.clone()
        }
    }

    /// The same operator against other coordinator URL(s) (same transcript).
    pub fn with_url(&self, coordinator_url: &str) -> Self {
        Self {
            coordinator: coordinator_url.to_owned(),
            ..self.clone()
        }
    }

    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    pub fn coordinator_url(&self) -> &str {
        &self.coordinator
    }

    /// The global flags: coordinator, CA, certificate, key.
    pub fn global_args(&self) -> Vec<String> {
        let mut v = vec![
            "--coordinator".to_owned(),
            self.coordinator.clone(),
            "--ca".to_owned(),
            self.ca.display().to_string(),
            "--cert".to_owned(),
            self.cert.cert.display().to_string(),
            "--key".to_owned(),
            self.cert.key.display().to_string(),
        ];
        if let Some(n) = &self.server_name {
            v.push("--server-name".to_owned());
            v.push(n.clone());
        }
        v
    }

    /// Everything every run printed so far.
    pub fn transcript(&self) -> String {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Runs `lifeboat GLOBALS ARGS` (table output).
    pub fn run(&self, args: &[&str]) -> CtlOutput {
        self.run_raw(self.global_args(), args)
    }

    /// Runs `lifeboat GLOBALS --output json ARGS`.
    pub fn run_json(&self, args: &[&str]) -> CtlOutput {
        let mut globals = self.global_args();
        globals.push("--output".to_owned());
        globals.push("json".to_owned());
        self.run_raw(globals, args)
    }

    /// [`Ctl::run_json`], asserting exit 0, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        self.run_json(args).assert_ok().json()
    }

    /// A list command's items, whether the CLI prints a bare array or `{"<key>": [...]}`.
    pub fn json_list(&self, args: &[&str], key: &str) -> anyhow::Result<Vec<Value>> {
        let out = self.run_json(args);
        if !out.success() {
            bail!("{out}");
        }
        list_items(&out.try_json()?, key).with_context(|| format!("{out}"))
    }

    fn run_raw(&self, globals: Vec<String>, args: &[&str]) -> CtlOutput {
        let mut all = globals;
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let out = run_with_timeout(&all, command_timeout());
        if let Ok(mut t) = self.transcript.lock() {
            t.push_str(&out.stdout);
            t.push('\n');
            t.push_str(&out.stderr);
            t.push('\n');
        }
        CtlOutput {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..out
        }
    }
}

/// The items of a JSON list: the document itself if it is an array, else its `key` member.
pub fn list_items(v: &Value, key: &str) -> anyhow::Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::Object(o) => match o.get(key) {
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(Value::Null) | None if o.is_empty() => Ok(Vec::new()),
            _ => bail!("no {key:?} array in {v}"),
        },
        _ => bail!("not a list: {v}"),
    }
}

/// Runs `lifeboat` with `args`; a run longer than `timeout` is stopped (SIGTERM, then
/// SIGKILL) and the test fails.
pub fn run_with_timeout(args: &[String], timeout: Duration) -> CtlOutput {
    let mut child = Command::new(crate::bin("lifeboat"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lifeboat");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait lifeboat") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let term = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && term.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "`lifeboat {}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    CtlOutput {
        args: args.to_vec(),
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}
