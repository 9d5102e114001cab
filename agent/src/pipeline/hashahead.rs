//! The restore side's raw SHA-256 on a thread of its own (ADR 0033).
//!
//! Decoding zstd and hashing what it decodes took turns on one thread: on a 1.6 GB base backup
//! about 0.7 s of decoding and 1.2 s of SHA-256, in series, before the restore tool or the
//! extractor saw the bytes. Here the decoding thread only counts the bytes (the raw-size limit
//! is still checked before anything is passed on) and hands chunks to a scoped thread that
//! hashes them and writes them to the output, in order. An error of that thread (the output's,
//! or the format check's) is returned by the decoding side's next write, as it was when both
//! ran on one thread.
//!
//! Memory: at most [`DEPTH`] + 2 chunks of [`CHUNK`] bytes, reused.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, channel, sync_channel},
    },
    thread::{Scope, ScopedJoinHandle},
};

use sha2::{Digest as _, Sha256};

use super::{CHUNK, Digest, within_limit};

/// Chunks queued for the hashing thread.
const DEPTH: usize = 4;

type Worker<'scope, W> = ScopedJoinHandle<'scope, io::Result<(Sha256, W)>>;

/// Counts what is written through it (refusing, without passing anything on, a write that
/// would take the total past `limit`) and passes it to a thread that hashes it into `W`.
pub(super) struct HashAhead<'scope, W> {
    filled: Option<SyncSender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    size: u64,
    limit: Option<u64>,
    counter: &'scope AtomicU64,
    worker: Option<Worker<'scope, W>>,
}

impl<'scope, W: Write + Send + 'scope> HashAhead<'scope, W> {
    pub(super) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        inner: W,
        counter: &'scope AtomicU64,
        limit: Option<u64>,
    ) -> io::Result<Self> {
        let (filled, filled_rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (free_tx, free) = channel::<Vec<u8>>();
        let worker = std::thread::Builder::new()
            .name("lifeboat-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = Sha256::new();
                let mut out = inner;
                for mut chunk in filled_rx {
                    hasher.update(&chunk);
                    out.write_all(&chunk)?;
                    chunk.clear();
                    // The decoding side may be gone already: the chunk is then dropped.
                    let _ = free_tx.send(chunk);
                }
                out.flush()?;
                Ok((hasher, out))
            })?;
        Ok(Self {
            filled: Some(filled),
            free,
            cur: Vec::with_capacity(CHUNK),
            size: 0,
            limit,
            counter,
            worker: Some(worker),
        })
    }

    /// Hands the chunk gathered so far to the hashing thread.
    fn send(&mut self) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.cur, next);
        match self.filled.as_ref().map(|tx| tx.send(chunk)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.worker_failure()),
        }
    }

    /// Why the hashing thread stopped taking chunks.
    fn worker_failure(&mut self) -> io::Error {
        self.filled = None;
        match self.worker.take().map(ScopedJoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(_))) => io::Error::other("the hashing thread ended before its input"),
            Some(Err(_)) => io::Error::other("the hashing thread panicked"),
            None => io::Error::other("the hashing thread failed earlier"),
        }
    }

    /// Waits until everything written was hashed and written out: the size and SHA-256 of it,
    /// and the output.
    pub(super) fn finish(mut self) -> io::Result<(Digest, W)> {
        self.send()?;
        self.filled = None;
        let (hasher, out) = match self.worker.take().map(ScopedJoinHandle::join) {
            Some(Ok(done)) => done?,
            Some(Err(_)) => return Err(io::Error::other("the hashing thread panicked")),
            None => return Err(io::Error::other("the hashing thread failed earlier")),
        };
        Ok((
            Digest {
                size: self.size,
                sha256: hex::encode(hasher.finalize()),
            },
            out,
        ))
    }
}

impl<'scope, W: Write + Send + 'scope> Write for HashAhead<'scope, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        within_limit(self.limit, self.size, buf.len())?;
        if self.worker.is_none() {
            return Err(io::Error::other("the hashing thread failed earlier"));
        }
        let room = CHUNK - self.cur.len();
        let n = room.min(buf.len());
        self.cur.extend_from_slice(&buf[..n]);
        self.size += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        if self.cur.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Passes on what is gathered; the output itself is flushed by [`HashAhead::finish`].
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
