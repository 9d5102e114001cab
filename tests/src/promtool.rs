//! The real `promtool` (Debian's `prometheus` package; `tests/run.sh` installs it): the
//! coordinator's exposition (`check metrics`) and deploy/prometheus (`check rules`,
//! `test rules`). The coordinator's own tests (coordinator/tests/monitoring) keep their copy
//! of [`check_metrics`]: they do not depend on this crate.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `promtool ARGS` in `dir` with `stdin` as its input: whether it succeeded, and its
/// standard output and error.
pub fn run(args: &[&str], dir: &Path, stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; tests/run.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `promtool check metrics` on a Prometheus text exposition; panics with its output on
/// failure.
pub fn check_metrics(text: &str) {
    let (ok, out) = run(&["check", "metrics"], Path::new("."), text);
    assert!(
        ok,
        "promtool check metrics failed:\n{out}\n--- exposition ---\n{text}"
    );
}
