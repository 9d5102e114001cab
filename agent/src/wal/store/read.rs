//! Reading a WAL file back: decrypted (by the WAL key its header names) and decompressed,
//! its content checked against the SHA-256 in its name.

use std::io::{BufRead, Read};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Archived, CHUNK, MAX_FILE};
use crate::{
    repo::body::StreamReader,
    wal::keys::{self, Reader},
};

/// Reads `a` back: the file's bytes in chunks on the returned channel, then `Ok(None)` once
/// they are all sent and hashed right, or an error (corrupt, truncated, wrong hash, its WAL
/// key unavailable).
pub async fn fetch(reader: &Reader, a: &Archived) -> Result<mpsc::Receiver<Result<Option<Bytes>>>> {
    let repo = &reader.repo;
    let stream = repo
        .get(&a.key, 0)
        .await
        .with_context(|| format!("read {} from {}", a.key, repo.describe()))?
        .with_context(|| format!("{} disappeared from {}", a.key, repo.describe()))?;
    let stored = StreamReader::new(stream, 4);
    let (tx, rx) = mpsc::channel(4);
    let (key, expected) = (a.key.clone(), a.sha256.clone());
    let encrypted = a
        .encrypted
        .then(|| (reader.clone(), tokio::runtime::Handle::current()));
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<()> {
            let stored: Box<dyn Read> = match encrypted {
                None => Box::new(stored),
                Some((reader, rt)) => decrypting(stored, &key, |id| rt.block_on(reader.key(id)))?,
            };
            let dec = zstd::stream::read::Decoder::new(stored).context("start zstd")?;
            let mut dec = dec.take(MAX_FILE + 1);
            let mut hash = Sha256::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = read_full(&mut dec, &mut buf).with_context(|| {
                    format!("{key} is damaged (decrypting or decompressing it failed)")
                })?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_FILE {
                    bail!("{key} decompresses to more than {MAX_FILE} bytes; it is not a WAL file");
                }
                hash.update(&buf[..n]);
                if tx
                    .blocking_send(Ok(Some(Bytes::copy_from_slice(&buf[..n]))))
                    .is_err()
                {
                    return Ok(());
                }
            }
            let got = hex::encode(hash.finalize());
            if got != expected {
                bail!("{key} is damaged: its content hashes to {got}, not {expected}");
            }
            Ok(())
        })();
        let _ = tx.blocking_send(result.map(|()| None));
    });
    Ok(rx)
}

/// The largest age header read to find a WAL file's key.
const MAX_HEADER: usize = 16 * 1024;

/// `stored` decrypted: the WAL key its header names, from `open_key`, opens it.
fn decrypting<'a>(
    stored: impl Read + 'a,
    key: &str,
    open_key: impl FnOnce(&str) -> Result<crate::crypt::BackupKey>,
) -> Result<Box<dyn Read + 'a>> {
    let mut stored = std::io::BufReader::new(stored);
    let mut header = Vec::new();
    loop {
        let before = header.len();
        stored
            .by_ref()
            .take((MAX_HEADER - before) as u64)
            .read_until(b'\n', &mut header)
            .with_context(|| format!("read {key}"))?;
        let line = &header[before..];
        if line.starts_with(b"---") {
            break;
        }
        if header.len() == before || header.len() >= MAX_HEADER {
            bail!("{key} is damaged: it does not start with an age header");
        }
    }
    let id = keys::key_id_in(&header)
        .with_context(|| format!("{key} is damaged: its header names no WAL key"))?;
    let wal_key = open_key(&id)?;
    let decryptor = age::Decryptor::new(std::io::Cursor::new(header).chain(stored))
        .with_context(|| format!("{key} is damaged (its age header)"))?;
    let plain = decryptor
        .decrypt(std::iter::once(wal_key.identity() as &dyn age::Identity))
        .with_context(|| {
            format!("{key} is damaged: it does not open with WAL key {id}, which its header names")
        })?;
    Ok(Box::new(plain))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
