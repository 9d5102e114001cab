//! The age stage of the pipeline (ADR 0025): between zstd and the stored hash on the way in,
//! between the stored hash and zstd on the way out. Hashes and sizes are of the stored
//! (encrypted) bytes, so verification of stored bytes, copies and the janitor need no key.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::{Counters, Digest};

/// What zstd writes into: the stored-bytes hasher, through age when the backup is encrypted.
pub(super) enum Sealing<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sealing<W> {
    pub(super) fn new(inner: W, to: Option<&age::x25519::Recipient>) -> io::Result<Self> {
        let Some(to) = to else {
            return Ok(Sealing::Plain(inner));
        };
        let encryptor = age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient))
            .map_err(io::Error::other)?;
        Ok(Sealing::Age(encryptor.wrap_output(inner)?))
    }

    /// Ends the age stream (its last, authenticated chunk) and hands back the inner writer.
    pub(super) fn finish(self) -> io::Result<W> {
        match self {
            Sealing::Plain(w) => Ok(w),
            Sealing::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealing::Plain(w) => w.write(buf),
            Sealing::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealing::Plain(w) => w.flush(),
            Sealing::Age(w) => w.flush(),
        }
    }
}

/// Why the stored stream stopped before its end.
#[derive(Debug)]
pub(super) enum TapStop {
    /// Reading the repository failed.
    Source(io::Error),
    /// More bytes than the catalog records.
    TooLong,
}

/// Reads the stored bytes, counting and hashing them, refusing more than `limit`. A stop is
/// kept in `stopped` (the error handed up through age or zstd says less).
pub(super) struct Tap<'c, R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    limit: u64,
    counters: &'c Counters,
    pub(super) stopped: Option<TapStop>,
}

impl<'c, R: Read> Tap<'c, R> {
    pub(super) fn new(inner: R, limit: u64, counters: &'c Counters) -> Self {
        Tap {
            inner,
            hasher: Sha256::new(),
            size: 0,
            limit,
            counters,
            stopped: None,
        }
    }

    /// Reads (and hashes) whatever is left.
    pub(super) fn drain(&mut self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        let mut buf = vec![0u8; super::CHUNK];
        while self.stopped.is_none() {
            if cancel.is_cancelled() {
                return false;
            }
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        true
    }

    pub(super) fn digest(self) -> Digest {
        Digest {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stopped.is_some() {
            return Err(io::Error::other("the stored stream stopped"));
        }
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = e.to_string();
                    self.stopped = Some(TapStop::Source(e));
                    return Err(io::Error::other(msg));
                }
            }
        };
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        self.counters
            .stored
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        if self.size > self.limit {
            self.stopped = Some(TapStop::TooLong);
            return Err(io::Error::other("longer than recorded"));
        }
        Ok(n)
    }
}
