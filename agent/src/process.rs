//! Child processes of a job: stderr kept as a bounded tail for error messages, stdio handed to
//! the blocking pipeline as plain files, and `spawn_blocking` for filesystem work.

use std::{collections::VecDeque, fs::File};

use anyhow::{Context, Result};
use tokio::{io::AsyncReadExt, task::JoinHandle};

/// How much of a child's stderr is kept for the error message.
const TAIL_BYTES: usize = 4096;

/// Reads a child's stderr to the end, keeping the last [`TAIL_BYTES`] (memory stays bounded
/// however much the child prints). Returns the tail as trimmed text.
pub fn stderr_tail(mut stderr: tokio::process::ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut tail = VecDeque::with_capacity(TAIL_BYTES);
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if tail.len() == TAIL_BYTES {
                            tail.pop_front();
                        }
                        tail.push_back(b);
                    }
                }
            }
        }
        let bytes: Vec<u8> = tail.into_iter().collect();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    })
}

/// What a pipe to or from a child holds: Linux's default of 64 KiB is 16 reads per pipeline
/// chunk, and a dump tool (or a restore client) that stops whenever the other side is busy for
/// a moment. 1 MiB is the default `fs.pipe-max-size` for unprivileged processes.
const PIPE_BYTES: usize = 1 << 20;

/// Asks for a [`PIPE_BYTES`] pipe; a system that allows less keeps its size (it only costs
/// speed).
fn widen(pipe: File) -> File {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(&pipe, PIPE_BYTES) {
        tracing::debug!("pipe stays at its default size: {e}");
    }
    pipe
}

/// The child's stdout as a blocking `File` for the pipeline thread.
pub fn stdout_file(stdout: tokio::process::ChildStdout) -> Result<File> {
    Ok(widen(File::from(
        stdout.into_owned_fd().context("take child stdout")?,
    )))
}

/// The child's stdin as a blocking `File` for the pipeline thread.
pub fn stdin_file(stdin: tokio::process::ChildStdin) -> Result<File> {
    Ok(widen(File::from(
        stdin.into_owned_fd().context("take child stdin")?,
    )))
}

/// Runs blocking work (filesystem, hashing) off the async reactor.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task panicked")?
}

/// Waits for the blocking `pipeline` task that feeds or drains `child`. On cancel the child is
/// killed at once; when the pipeline fails it is killed too: it must never go on with a
/// stream that was rejected, nor wait on a pipe nobody reads. Returns the pipeline's result
/// and the child's exit status (`what` names the child in errors).
pub async fn join_with_child<T, E>(
    child: &mut tokio::process::Child,
    mut pipeline: JoinHandle<Result<T, E>>,
    cancel: &tokio_util::sync::CancellationToken,
    what: &str,
) -> Result<(Result<T, E>, std::process::ExitStatus)> {
    let result = tokio::select! {
        r = &mut pipeline => r,
        () = cancel.cancelled() => {
            let _ = child.start_kill();
            (&mut pipeline).await
        }
    }
    .context("pipeline task panicked")?;
    if result.is_err() {
        let _ = child.start_kill();
    }
    let status = child
        .wait()
        .await
        .with_context(|| format!("wait for {what}"))?;
    Ok((result, status))
}

/// "exit status 1" / "killed by signal 9"
pub fn describe_status(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit status".into(),
    }
}

/// Variables a database tool inherits from the agent. Everything else — cloud credentials
/// (`AWS_*`), tokens, `LD_PRELOAD`, the database clients' own redirecting variables — is left
/// out; each engine sets what its tools need (passfile, option file) itself.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME"];

/// Whether the agent's variable `key` is passed to a database tool.
pub fn inherited(key: &str) -> bool {
    INHERITED.contains(&key) || key.starts_with("LC_")
}

/// A command for a database tool (pg_dump, pg_restore, mariadb-dump, mariadb, ...) with an
/// allow-listed environment ([`inherited`]), stdin closed and killed on drop.
pub fn tool_command(program: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(inherited) {
            cmd.env(k, v);
        }
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    cmd
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;

    #[tokio::test]
    async fn pipes_to_and_from_children_are_widened() {
        let mut child = tokio::process::Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn cat");
        let stdin = stdin_file(child.stdin.take().expect("stdin")).expect("stdin file");
        let stdout = stdout_file(child.stdout.take().expect("stdout")).expect("stdout file");
        for pipe in [&stdin, &stdout] {
            let size = rustix::pipe::fcntl_getpipe_size(pipe).expect("pipe size");
            assert_eq!(size, PIPE_BYTES, "a pipe kept {size} bytes");
        }
        drop(stdin);
        drop(stdout);
        let _ = child.wait().await;
    }
}
