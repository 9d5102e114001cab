//! The agent's side of the WAL socket: serves `wal-push` and `wal-fetch` for its physical
//! targets, with no need for the coordinator. A push is answered only once the file is durable
//! in the repository (fs: fsync and rename; S3: the upload completed and checked), so
//! PostgreSQL never recycles a segment lifeboat does not have.

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::BufReader,
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc},
};
use tokio_util::sync::CancellationToken;

use super::{
    config::WalConfig,
    keys::{KeyRing, Reader},
    name::WalName,
    protocol::{self, Reply, Request},
    store::{self, Before},
};
use crate::config::{BackupMode, Config, TargetConfig};

/// Connections served at once; more wait (PostgreSQL archives one file at a time per server).
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to say what it wants, and between two frames.
const IDLE: Duration = Duration::from_secs(60);

/// Whether this agent serves the WAL socket: it has a physical target.
pub fn wanted(config: &Config) -> bool {
    config
        .targets
        .values()
        .any(|t| t.mode == BackupMode::Physical)
}

/// Binds the socket: refuses to take it from a running agent, replaces a stale one, and
/// restricts it to the agent's user (and `socket_group`).
pub fn bind(cfg: &WalConfig) -> Result<UnixListener> {
    let path = &cfg.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the WAL socket's directory {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "another process is serving the WAL socket {}; stop it or give this agent \
                     another [wal] socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("remove the stale WAL socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; remove it or set another [wal] socket",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("listen on the WAL socket {}", path.display()))?;
    restrict(path, cfg)?;
    Ok(listener)
}

fn restrict(path: &Path, cfg: &WalConfig) -> Result<()> {
    let mode = match &cfg.socket_group {
        Some((name, gid)) => {
            std::os::unix::fs::chown(path, None, Some(*gid)).with_context(|| {
                format!(
                    "give the WAL socket {} to group {name} (the agent's user must be in it)",
                    path.display()
                )
            })?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("set the mode of {}", path.display()))
}

/// Serves `listener` until `cancel`; each connection in its own task.
pub async fn serve(
    config: Arc<Config>,
    listener: UnixListener,
    board: super::status::Board,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ring = KeyRing::default();
    let own_uid = nix::unistd::getuid().as_raw();
    tracing::info!(socket = %config.wal.socket.display(), "serving the WAL socket");
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("WAL socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (config, cancel, board) = (config.clone(), cancel.clone(), board.clone());
        let ring = ring.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(&config, &ring, stream, own_uid, &cancel, &board).await {
                tracing::warn!("WAL socket: {e:#}");
            }
        });
    }
    let _ = std::fs::remove_file(&config.wal.socket);
}

async fn connection(
    config: &Arc<Config>,
    ring: &KeyRing,
    stream: UnixStream,
    own_uid: u32,
    cancel: &CancellationToken,
    board: &super::status::Board,
) -> Result<()> {
    let cred = stream
        .peer_cred()
        .context("read the client's credentials")?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    // The request is read before the caller is judged, so a refused client gets the answer
    // instead of a broken pipe while it is still writing.
    let Some(req) = tokio::time::timeout(IDLE, protocol::read_line::<Request>(&mut r))
        .await
        .context("the client said nothing")??
    else {
        return Ok(());
    };
    let uid = cred.uid();
    if uid != own_uid && uid != 0 && !config.wal.allowed_uids.contains(&uid) {
        let why = format!(
            "user id {uid} may not use the WAL socket; add its user to [wal] allowed_users \
             (now {:?}) in {}",
            config.wal.allowed_users,
            config.file.display()
        );
        protocol::write_line(&mut w, &Reply::error(&why)).await.ok();
        bail!("refused a connection: {why}");
    }
    match req {
        Request::Push {
            target,
            name,
            size,
            sha256,
        } => {
            let push = Push {
                size,
                sha256: sha256.to_ascii_lowercase(),
            };
            match checked(config, &target, &name) {
                Ok((t, name)) => {
                    let reader = match reader_for(config, ring, t) {
                        Ok(reader) => reader,
                        Err(e) => return refuse(&mut w, e).await,
                    };
                    let pushed = push.run(&reader, t, &name, &mut r, &mut w, cancel).await;
                    if pushed.is_ok() {
                        board.changed();
                    }
                    pushed
                }
                Err(e) => refuse(&mut w, e).await,
            }
        }
        Request::Fetch { target, name } => match checked(config, &target, &name) {
            Ok((t, name)) => match reader_for(config, ring, t) {
                Ok(reader) => fetch(&reader, t, &name, &mut w).await,
                Err(e) => refuse(&mut w, e).await,
            },
            Err(e) => refuse(&mut w, e).await,
        },
    }
}

type Conn = BufReader<tokio::net::unix::OwnedReadHalf>;
type Writer = tokio::net::unix::OwnedWriteHalf;

/// Tells the client why not, and returns the same error for the agent's log.
async fn refuse(w: &mut Writer, e: anyhow::Error) -> Result<()> {
    protocol::write_line(w, &Reply::error(format!("{e:#}")))
        .await
        .ok();
    Err(e)
}

/// A push as announced: the file's size and SHA-256.
struct Push {
    size: u64,
    sha256: String,
}

/// How this agent reads target `t`'s WAL archive.
fn reader_for(config: &Arc<Config>, ring: &KeyRing, t: &TargetConfig) -> Result<Reader> {
    Ok(Reader {
        ring: ring.clone(),
        ..Reader::new(
            crate::repo::open(config, &t.repository)?,
            store::prefix(&config.environment, &t.name),
            config.clone(),
        )
    })
}

impl Push {
    async fn run(
        self,
        reader: &Reader,
        t: &TargetConfig,
        name: &WalName,
        r: &mut Conn,
        w: &mut Writer,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let started = Instant::now();
        let what = || format!("push of {name} for target {}", t.name);
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return refuse(
                w,
                anyhow::anyhow!("{:?} is not a SHA-256 in hex", self.sha256),
            )
            .await;
        }
        let (repo, prefix) = (&reader.repo, &reader.prefix);
        match store::before_push(reader, name, &self.sha256).await {
            Ok(Before::Same) => {
                tracing::info!(target = %t.name, file = %name, "WAL file already archived with the same content");
                let reply = Reply {
                    done: true,
                    ..Reply::ok()
                };
                return Ok(protocol::write_line(w, &reply).await?);
            }
            Ok(Before::Absent) => {}
            Err(e) => return refuse(w, e.context(what())).await,
        }
        // An encrypted target's WAL is never stored in plaintext: without its key, the push
        // fails (before the client sends the file) and PostgreSQL keeps the file.
        let seal = match &t.encryption {
            None => None,
            Some(enc) => match reader
                .ring
                .sealing(repo, &t.repository, prefix, &t.name, enc, cancel)
                .await
            {
                Ok(s) => Some(s),
                Err(e) => return refuse(w, e.context(what())).await,
            },
        };
        protocol::write_line(w, &Reply::ok()).await?;
        let (raw_tx, raw_rx) = mpsc::channel(4);
        let feed = async {
            loop {
                let frame = tokio::time::timeout(IDLE, protocol::read_frame(r))
                    .await
                    .context("the client stopped sending")??;
                let end = frame.is_none();
                if raw_tx.send(frame).await.is_err() || end {
                    return anyhow::Ok(());
                }
            }
        };
        let pushing = store::push(
            repo,
            prefix,
            name,
            &self.sha256,
            self.size,
            t.compression_level,
            seal.as_ref(),
            raw_rx,
            cancel,
        );
        let (stored, fed) = tokio::join!(pushing, feed);
        match stored {
            Ok(a) => {
                tracing::info!(
                    target = %t.name,
                    file = %name,
                    bytes = self.size,
                    stored_bytes = a.stored_size,
                    ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "WAL file archived"
                );
                protocol::write_line(w, &Reply::ok()).await.ok();
                Ok(())
            }
            Err(e) => {
                let e = match fed {
                    Err(f) => e.context(format!("{f:#}")),
                    Ok(()) => e,
                };
                refuse(w, e.context(what())).await
            }
        }
    }
}

/// Sends archived file `name` back: its hash, its bytes, then whether they checked out.
async fn fetch(reader: &Reader, t: &TargetConfig, name: &WalName, w: &mut Writer) -> Result<()> {
    let (repo, prefix) = (&reader.repo, &reader.prefix);
    let found = match store::find(repo, prefix, name).await {
        Ok(f) => f,
        Err(e) => return refuse(w, e).await,
    };
    let a = match found.as_slice() {
        [] => {
            let reply = Reply {
                missing: true,
                error: format!("{name} is not in the repository ({})", repo.describe()),
                ..Reply::default()
            };
            return Ok(protocol::write_line(w, &reply).await?);
        }
        [a] => a.clone(),
        // The same content twice (archived before and after encryption was turned on).
        [a, rest @ ..] if rest.iter().all(|b| b.sha256 == a.sha256) => a.clone(),
        [..] => {
            let why = anyhow::anyhow!(
                "{name} is archived more than once with different content; move the wrong \
                 copy aside under {prefix}/{}",
                name.dir()
            );
            return refuse(w, why).await;
        }
    };
    let mut rx = match store::fetch(reader, &a).await {
        Ok(rx) => rx,
        Err(e) => return refuse(w, e).await,
    };
    let head = Reply {
        sha256: a.sha256.clone(),
        ..Reply::ok()
    };
    protocol::write_line(w, &head).await?;
    let outcome = loop {
        match rx.recv().await {
            Some(Ok(Some(chunk))) => protocol::write_frame(w, &chunk).await?,
            Some(Ok(None)) => break Ok(()),
            Some(Err(e)) => break Err(e),
            None => break Err(anyhow::anyhow!("reading {} stopped", a.key)),
        }
    };
    protocol::end_body(w).await?;
    match outcome {
        Ok(()) => {
            tracing::info!(target = %t.name, file = %name, "WAL file fetched");
            protocol::write_line(w, &Reply::ok()).await?;
            Ok(())
        }
        Err(e) => {
            refuse(
                w,
                e.context(format!("fetch of {name} for target {}", t.name)),
            )
            .await
        }
    }
}

/// The physical target `target` of this agent and the checked file name.
fn checked<'a>(
    config: &'a Config,
    target: &str,
    name: &str,
) -> Result<(&'a TargetConfig, WalName)> {
    let t = physical_target(config, target)?;
    let name = WalName::parse(name).map_err(anyhow::Error::msg)?;
    Ok((t, name))
}

fn physical_target<'a>(config: &'a Config, name: &str) -> Result<&'a TargetConfig> {
    let t = config.targets.get(name).with_context(|| {
        format!(
            "this agent ({}) has no target {name:?}; check --target in archive_command",
            config.name
        )
    })?;
    if t.mode != BackupMode::Physical {
        bail!(
            "target {name} is not a physical target; set mode = \"physical\" on it in {} to \
             archive its WAL",
            config.file.display()
        );
    }
    Ok(t)
}
