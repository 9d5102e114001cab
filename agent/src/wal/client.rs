//! `lifeboat-agent wal-push` and `wal-fetch`: what PostgreSQL's `archive_command` and
//! `restore_command` run. They read and write the files themselves (they run as the server's
//! user) and leave the repository to the agent, over its WAL socket.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio::{io::BufReader, net::UnixStream};

use super::{
    name::WalName,
    protocol::{self, Reply, Request},
    store::MAX_FILE,
};

/// The longest a push or fetch may take before PostgreSQL is told it failed (it retries).
const OP_TIMEOUT: Duration = Duration::from_secs(300);
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    AlreadyArchived,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Written,
    /// The repository does not have it: normal at the end of the archive.
    Missing(String),
}

async fn connect(socket: &Path) -> Result<UnixStream> {
    match tokio::time::timeout(Duration::from_secs(10), UnixStream::connect(socket)).await {
        Err(_) => bail!(
            "the agent did not answer on {} within 10 s",
            socket.display()
        ),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!(
                    "no lifeboat agent is serving {} ({e}); start the agent (it serves the \
                     socket when it has a physical target). PostgreSQL keeps the WAL and \
                     retries",
                    socket.display()
                )
            }
            std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                "permission denied on {}: the user running PostgreSQL must be able to reach \
                 the socket (see [wal] socket_group in the agent's config)",
                socket.display()
            ),
            _ => anyhow::Error::new(e).context(format!("connect to {}", socket.display())),
        }),
    }
}

/// Hashes `path` whole: its size and SHA-256.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hash.update(&buf[..n]);
    }
    Ok((size, hex::encode(hash.finalize())))
}

/// Archives the file at `path` (relative paths are the server's data directory, where
/// `archive_command` runs) for `target`.
pub async fn push(socket: &Path, target: &str, path: &Path) -> Result<Pushed> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} names no file", path.display()))?;
    let name = WalName::parse(file_name).map_err(anyhow::Error::msg)?;
    let (size, sha256) = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || hash_file(&path)).await??
    };
    if size > MAX_FILE {
        bail!(
            "{} is {size} bytes, larger than any WAL file",
            path.display()
        );
    }
    tokio::time::timeout(OP_TIMEOUT, async {
        let (r, mut w) = connect(socket).await?.into_split();
        let mut r = BufReader::new(r);
        let req = Request::Push {
            target: target.to_owned(),
            name: name.to_string(),
            size,
            sha256,
        };
        protocol::write_line(&mut w, &req).await?;
        let go = answer(&mut r).await?;
        if go.done {
            return Ok(Pushed::AlreadyArchived);
        }
        let mut f = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("open {}", path.display()))?;
        let sent = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                use tokio::io::AsyncReadExt as _;
                let n = f
                    .read(&mut buf)
                    .await
                    .with_context(|| format!("read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                protocol::write_frame(&mut w, &buf[..n])
                    .await
                    .context("send to the agent")?;
            }
            protocol::end_body(&mut w)
                .await
                .context("send to the agent")
        }
        .await;
        if let Err(e) = sent {
            // The agent stops reading when the store fails: its answer says why.
            return Err(match answer(&mut r).await {
                Err(refused) => refused,
                Ok(_) => e,
            });
        }
        answer(&mut r).await?;
        Ok(Pushed::Stored)
    })
    .await
    .with_context(|| {
        format!(
            "the agent did not store {name} within {} s",
            OP_TIMEOUT.as_secs()
        )
    })?
}

/// Writes archived file `name` of `target` to `dest` (relative: the data directory), through
/// a temporary file beside it that is renamed into place only once its hash is checked.
pub async fn fetch(socket: &Path, target: &str, name: &str, dest: &Path) -> Result<Fetched> {
    let name = WalName::parse(name).map_err(anyhow::Error::msg)?;
    let tmp = temp_beside(dest)?;
    let result = tokio::time::timeout(OP_TIMEOUT, fetch_into(socket, target, &name, &tmp))
        .await
        .with_context(|| {
            format!(
                "the agent did not hand back {name} within {} s",
                OP_TIMEOUT.as_secs()
            )
        })
        .and_then(|r| r);
    match result {
        Ok(Fetched::Written) => {
            std::fs::rename(&tmp, dest)
                .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
            if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
            }
            Ok(Fetched::Written)
        }
        other => {
            let _ = std::fs::remove_file(&tmp);
            other
        }
    }
}

fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let file = dest
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} names no file", dest.display()))?;
    Ok(dest.with_file_name(format!(".{file}.lifeboat-fetch")))
}

async fn fetch_into(socket: &Path, target: &str, name: &WalName, tmp: &Path) -> Result<Fetched> {
    let (r, mut w) = connect(socket).await?.into_split();
    let mut r = BufReader::new(r);
    let req = Request::Fetch {
        target: target.to_owned(),
        name: name.to_string(),
    };
    protocol::write_line(&mut w, &req).await?;
    let head: Reply = protocol::read_line(&mut r)
        .await
        .context("read the agent's answer")?
        .context("the agent closed the connection without an answer")?;
    if head.missing {
        return Ok(Fetched::Missing(head.error));
    }
    if !head.ok {
        bail!("the agent refused: {}", head.error);
    }
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    let mut hash = Sha256::new();
    let mut total = 0u64;
    while let Some(frame) = protocol::read_frame(&mut r)
        .await
        .context("read from the agent")?
    {
        total += frame.len() as u64;
        if total > MAX_FILE {
            bail!("the agent sent more than a WAL file can hold");
        }
        hash.update(&frame);
        f.write_all(&frame)
            .with_context(|| format!("write {}", tmp.display()))?;
    }
    answer(&mut r).await?;
    let got = hex::encode(hash.finalize());
    if got != head.sha256 {
        bail!(
            "{name} arrived with SHA-256 {got}, not {}; not used",
            head.sha256
        );
    }
    f.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    Ok(Fetched::Written)
}

/// The agent's next reply: an error unless it says ok.
async fn answer(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Result<Reply> {
    let reply: Reply = protocol::read_line(r)
        .await
        .context("read the agent's answer")?
        .context("the agent closed the connection without an answer")?;
    if !reply.ok {
        bail!("the agent refused: {}", reply.error);
    }
    Ok(reply)
}
