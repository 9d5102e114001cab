//! Storing a WAL file: hashed and compressed (and encrypted for an encrypted target) into a
//! create-only write, committed only when the bytes are the ones announced.

use std::io::Write;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Archived, CHUNK, MAX_FILE, ZST, ZST_AGE, find};
use crate::{
    repo::{
        Repository, StorageError,
        body::{BodySender, body_channel},
    },
    wal::{keys::Sealing, name::WalName},
};

/// Stores `name`: the chunks arriving on `raw` (`Some` per chunk, `None` at the end) are
/// hashed and compressed into a create-only write, committed only if they are exactly
/// `size` bytes hashing to `sha256`. Returns once the file is durable in the repository.
#[allow(clippy::too_many_arguments)]
pub async fn push(
    repo: &Repository,
    prefix: &str,
    name: &WalName,
    sha256: &str,
    size: u64,
    level: i32,
    seal: Option<&Sealing>,
    mut raw: mpsc::Receiver<Option<Bytes>>,
    cancel: &CancellationToken,
) -> Result<Archived> {
    if size > MAX_FILE {
        bail!("{name} is {size} bytes, more than a WAL file can be ({MAX_FILE})");
    }
    let suffix = if seal.is_some() { ZST_AGE } else { ZST };
    let key = format!("{prefix}/{}/{name}-{sha256}{suffix}", name.dir());
    let (tx, body) = body_channel(4);
    let encryptor = seal.map(Sealing::encryptor).transpose()?;
    let compress = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut hash = Sha256::new();
        let mut total = 0u64;
        let out = ToBody {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let out = match encryptor {
            None => Out::Plain(out),
            Some(e) => Out::Age(e.wrap_output(out).context("start age")?),
        };
        let mut enc = zstd::stream::write::Encoder::new(out, level).context("start zstd")?;
        enc.include_checksum(true).context("zstd checksum")?;
        loop {
            match raw.blocking_recv() {
                Some(Some(chunk)) => {
                    total += chunk.len() as u64;
                    if total > size {
                        bail!("the client sent more than the {size} bytes it announced");
                    }
                    hash.update(&chunk);
                    enc.write_all(&chunk).context("compress")?;
                }
                Some(None) => break,
                None => bail!("the client went away in the middle of the file"),
            }
        }
        let tx = enc
            .finish()
            .context("finish zstd")?
            .finish()
            .context("finish age")?
            .finish()?;
        let got = hex::encode(hash.finalize());
        Ok((got, total, tx))
    });
    let put = repo.put(&key, body, None, cancel);
    tokio::pin!(put);
    let (got, total, tx) = tokio::select! {
        r = compress => r.context("the compressing thread failed")??,
        r = &mut put => {
            // The write ended before the data did: it can only have failed.
            r.with_context(|| format!("store {key} in {}", repo.describe()))?;
            bail!("the repository took {key} before the end of the data");
        }
    };
    if total != size || got != sha256 {
        drop(tx);
        let _ = put.await;
        bail!(
            "{name} arrived as {total} bytes with SHA-256 {got}, not the {size} bytes with \
             {sha256} announced; nothing was stored (the file changed while it was read?)"
        );
    }
    tx.finish().await.context("finish the upload")?;
    let info = match put.await {
        Ok(info) => info,
        // Another push of the same file won the race: the content is the same by the key.
        Err(StorageError::AlreadyExists(_)) => {
            return stored_already(repo, prefix, name, sha256).await;
        }
        Err(e) => return Err(e).with_context(|| format!("store {key} in {}", repo.describe())),
    };
    Ok(Archived {
        key: key.clone(),
        sha256: got,
        stored_size: info.size,
        encrypted: seal.is_some(),
    })
}

/// Where the compressed (and maybe encrypted) bytes go: the upload, in chunks of [`CHUNK`].
struct ToBody {
    tx: BodySender,
    buf: Vec<u8>,
}

impl ToBody {
    fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let out = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.blocking_send(out.into())?;
        }
        Ok(())
    }

    /// Sends what is left; the sender, to end the upload once the file is judged.
    fn finish(mut self) -> Result<BodySender> {
        self.send().context("the upload stopped")?;
        Ok(self.tx)
    }
}

impl Write for ToBody {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// zstd writes into this: the upload, through age for an encrypted target.
enum Out {
    Plain(ToBody),
    Age(age::stream::StreamWriter<ToBody>),
}

impl Out {
    fn finish(self) -> std::io::Result<ToBody> {
        match self {
            Out::Plain(w) => Ok(w),
            Out::Age(w) => w.finish(),
        }
    }
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(b),
            Out::Age(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Age(w) => w.flush(),
        }
    }
}

async fn stored_already(
    repo: &Repository,
    prefix: &str,
    name: &WalName,
    sha256: &str,
) -> Result<Archived> {
    find(repo, prefix, name)
        .await?
        .into_iter()
        .find(|a| a.sha256 == sha256)
        .with_context(|| format!("{name} was reported stored, then not found"))
}
