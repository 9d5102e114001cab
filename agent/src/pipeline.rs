//! The data path, synchronous and bounded: it runs on a dedicated blocking thread, never on the
//! async reactor.
//!
//! Backup:  `source → count + SHA-256 (raw) → zstd (multithreaded) → [age] → count + SHA-256 (stored) → sink`
//! (the source is read and hashed on a thread of its own, a few chunks ahead: [`readahead`])
//! Restore/verify: `source → count + SHA-256 (stored) → [age] → zstd decode → count + SHA-256 (raw) → sink`
//! (the raw SHA-256 and the writes to the sink run on a thread of their own: [`hashahead`])
//!
//! The age stage ([`sealing`]) is there for encrypted backups (ADR 0025).
//!
//! Memory is bounded by the chunk size, zstd's window and its worker buffers, whatever the
//! size of the database.

use std::{
    io::{self, Read, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

pub mod adapt;
mod cgroup;
mod hashahead;
mod readahead;
mod sealing;

/// Chunk handed to the hashers and the codec per iteration. The dump tool writes to its pipe
/// in small pieces; gathering a whole chunk first keeps per-call overhead (zstd's worker
/// hand-off above all) off the hot path.
const CHUNK: usize = 1024 * 1024;
/// Largest zstd window accepted when decoding (2^27 = 128 MiB). A header asking for more is
/// refused instead of allocating (B29).
const WINDOW_LOG_MAX: u32 = 27;

/// Byte counters shared with the progress reporter.
#[derive(Debug, Default)]
pub struct Counters {
    pub raw: AtomicU64,
    pub stored: AtomicU64,
}

/// Size and SHA-256 of one side of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cancelled")]
    Cancelled,
    #[error("the dump tool produced no output")]
    Empty,
    #[error("the dump stream does not start with {expected}; got {got:?}")]
    BadMagic { expected: String, got: String },
    #[error("read dump stream: {0}")]
    Source(io::Error),
    #[error("write to repository: {0}")]
    Sink(io::Error),
    #[error("compress: {0}")]
    Compress(io::Error),
    #[error("read stored data: {0}")]
    ReadStored(io::Error),
    #[error(
        "stored data does not match the catalog: {what} (the stored copy is corrupt or was changed; restore another backup)"
    )]
    Mismatch { what: String },
    #[error(
        "stored data is not a valid zstd stream although its hash matches: {0} (report this as a bug)"
    )]
    Decode(io::Error),
    #[error("write to the restore tool: {0}")]
    Output(io::Error),
    #[error(
        "stored data does not decrypt with the backup's key although its hash matches: {0} (its key object was replaced, or the object was written by something else)"
    )]
    Decrypt(io::Error),
}

/// Counts and hashes everything written through it; with a `limit`, refuses (without passing
/// anything on) a write that would take the total past it.
struct HashingWriter<'c, W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    counter: &'c AtomicU64,
    limit: Option<u64>,
}

/// The decoded stream grew past the raw size the catalog records (a decompression bomb or a
/// replaced object): reported as soon as it happens, not at the end of the stream.
#[derive(Debug)]
struct RawLimitExceeded(u64);

impl std::fmt::Display for RawLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decoded data exceeds the recorded {} raw bytes", self.0)
    }
}

impl std::error::Error for RawLimitExceeded {}

fn raw_limit_exceeded(e: &io::Error) -> Option<u64> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<RawLimitExceeded>())
        .map(|l| l.0)
}

/// Refuses `more` bytes on top of `size` when that takes the total past `limit`.
fn within_limit(limit: Option<u64>, size: u64, more: usize) -> io::Result<()> {
    match limit {
        Some(limit) if size.saturating_add(more as u64) > limit => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            RawLimitExceeded(limit),
        )),
        _ => Ok(()),
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        within_limit(self.limit, self.size, buf.len())?;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> HashingWriter<'_, W> {
    fn digest(self) -> (Digest, W) {
        (
            Digest {
                size: self.size,
                sha256: hex::encode(self.hasher.finalize()),
            },
            self.inner,
        )
    }
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Input per zstd job (see [`compress`]).
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// Compression (and encryption) settings.
#[derive(Debug, Clone)]
pub struct Compression {
    /// The level (ignored when `adaptive`).
    pub level: i32,
    /// `compression_level = "auto"`: the level follows the spare CPU ([`adapt`]).
    pub adaptive: bool,
    /// zstd worker threads; 0 = automatic.
    pub threads: u32,
    /// An encrypted backup: its key's public half (the compressed stream is encrypted to it).
    pub encrypt_to: Option<age::x25519::Recipient>,
}

impl Compression {
    /// Automatic: one worker per core. (Leaving a core to the dump tool was measured slower:
    /// a single zstd-3 worker, ~175 MB/s on this kind of data, then limits the backup.)
    fn workers(&self) -> u32 {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1)
        }
    }
}

/// The result of [`compress`].
#[derive(Debug)]
pub struct Compressed<W> {
    pub raw: Digest,
    pub stored: Digest,
    pub sink: W,
    /// Raw bytes compressed at each zstd level, lowest first (one entry unless adaptive).
    pub levels: Vec<(i32, u64)>,
}

/// Backup direction. `magic` is what the raw stream must start with.
pub fn compress<R: Read + Send + 'static, W: Write>(
    source: R,
    sink: W,
    magic: &[u8],
    compression: Compression,
    counters: &Arc<Counters>,
    cancel: &CancellationToken,
) -> Result<Compressed<W>, PipelineError> {
    let stored = HashingWriter {
        inner: Marked(sink),
        hasher: Sha256::new(),
        size: 0,
        counter: &counters.stored,
        limit: None,
    };
    let sealing =
        sealing::Sealing::new(stored, compression.encrypt_to.as_ref()).map_err(sink_or_compress)?;
    let level = if compression.adaptive {
        adapt::START_LEVEL
    } else {
        compression.level
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(sealing, level).map_err(PipelineError::Compress)?;
    encoder
        .include_checksum(true)
        .map_err(PipelineError::Compress)?;
    // Even one worker moves compression off this thread, which reads and hashes meanwhile.
    encoder
        .multithread(compression.workers())
        .map_err(PipelineError::Compress)?;
    // zstd's default job for level 3 is 8 MiB, and it keeps several jobs' input and output per
    // worker: about 60 MiB with 2 workers. 4 MiB jobs halve that at the same ratio and speed
    // (measured on hex-encoded random data: 58 vs 32 MiB peak, sizes within 0.01 %).
    encoder
        .set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
        .map_err(PipelineError::Compress)?;
    let ahead =
        readahead::ReadAhead::start(source, magic.len().max(1)).map_err(PipelineError::Source)?;
    // The first bytes must be the format's magic.
    let first = match ahead.next() {
        readahead::Ahead::Chunk(b) => b,
        readahead::Ahead::End(_) => return Err(PipelineError::Empty),
        readahead::Ahead::Failed(e) => return Err(PipelineError::Source(e)),
    };
    if first.len() < magic.len() || &first[..magic.len()] != magic {
        return Err(PipelineError::BadMagic {
            expected: String::from_utf8_lossy(magic).into_owned(),
            got: String::from_utf8_lossy(&first[..first.len().min(16)]).into_owned(),
        });
    }
    let mut chunk = first;
    // Started once the dump tool has begun writing: its start-up is not a window's wait.
    let mut adapt = compression.adaptive.then(|| adapt::Adapt::new(level));
    let raw = loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        counters
            .raw
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        encoder.write_all(&chunk).map_err(sink_or_compress)?;
        if let Some(a) = adapt.as_mut() {
            a.fed(chunk.len() as u64);
            if let Some(level) = a.tick() {
                encoder
                    .set_parameter(zstd::stream::raw::CParameter::CompressionLevel(level))
                    .map_err(PipelineError::Compress)?;
            }
        }
        ahead.recycle(chunk);
        let waiting = adapt.is_some().then(std::time::Instant::now);
        let next = ahead.next();
        if let (Some(a), Some(t)) = (adapt.as_mut(), waiting) {
            a.waited(t.elapsed());
        }
        chunk = match next {
            readahead::Ahead::Chunk(b) => b,
            readahead::Ahead::End(raw) => break raw,
            readahead::Ahead::Failed(e) => return Err(PipelineError::Source(e)),
        };
    };
    let sealing = encoder.finish().map_err(sink_or_compress)?;
    let stored = sealing.finish().map_err(sink_or_compress)?;
    let (stored, Marked(mut sink)) = stored.digest();
    sink.flush().map_err(PipelineError::Sink)?;
    let levels = match adapt {
        Some(a) => a.used(),
        None => vec![(compression.level, raw.size)],
    };
    Ok(Compressed {
        raw,
        stored,
        sink,
        levels,
    })
}

/// Verify direction without the key: reads the stored bytes and checks their size and SHA-256
/// against `expected` (nothing is decrypted or decoded).
pub fn check_stored<R: Read>(
    mut source: R,
    expected: &Expected,
    counters: &Arc<Counters>,
    cancel: &CancellationToken,
) -> Result<(), PipelineError> {
    let mut tap = sealing::Tap::new(&mut source, expected.stored.size, counters);
    if !tap.drain(cancel) {
        return Err(PipelineError::Cancelled);
    }
    match tap.stopped.take() {
        Some(sealing::TapStop::Source(e)) => return Err(PipelineError::ReadStored(e)),
        Some(sealing::TapStop::TooLong) => {
            return Err(PipelineError::Mismatch {
                what: format!(
                    "more than the recorded {} stored bytes",
                    expected.stored.size
                ),
            });
        }
        None => {}
    }
    let got = tap.digest();
    if got != expected.stored {
        return Err(PipelineError::Mismatch {
            what: format!(
                "{} stored bytes with SHA-256 {}, the catalog records {} bytes with {}",
                got.size, got.sha256, expected.stored.size, expected.stored.sha256
            ),
        });
    }
    Ok(())
}

/// Why [`pump`] stopped early.
enum Pumped {
    Cancelled,
    /// age refused the stream (its header, or a chunk that does not authenticate).
    Decrypt(io::Error),
    /// zstd or the output failed (output errors are marked).
    Decode(io::Error),
}

/// Copies the (decrypted) stored stream into the decoder, chunk by chunk.
fn pump<R: Read, W: Write>(
    src: &mut R,
    decoder: &mut W,
    cancel: &CancellationToken,
) -> Result<(), Pumped> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if cancel.is_cancelled() {
            return Err(Pumped::Cancelled);
        }
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A stored-stream stop is in the tap; anything else here is age's verdict.
            Err(e) => return Err(Pumped::Decrypt(e)),
        };
        decoder.write_all(&buf[..n]).map_err(Pumped::Decode)?;
    }
}

/// Errors from the sink pass through zstd; the marker tells them from compression errors.
fn sink_or_compress(e: io::Error) -> PipelineError {
    if is_marked(&e) {
        PipelineError::Sink(unmark(e))
    } else {
        PipelineError::Compress(e)
    }
}

/// What the stored bytes must be, from the catalog.
#[derive(Debug, Clone)]
pub struct Expected {
    pub stored: Digest,
    pub raw: Digest,
    /// An encrypted backup: its key, opened from its key object (`None`: stored in plaintext).
    pub key: Option<crate::crypt::BackupKey>,
}

/// Restore/verify direction: decode `source` into `output`, checking sizes and hashes against
/// `expected`. A hash or size mismatch is reported in preference to a zstd error (a flipped byte
/// must read as "corrupt", not as a decoder message): on a decode error the rest of the stored
/// bytes are still read and hashed.
pub fn decompress<R: Read, W: Write + Send>(
    source: R,
    output: W,
    magic: &[u8],
    expected: &Expected,
    counters: &Arc<Counters>,
    cancel: &CancellationToken,
) -> Result<W, PipelineError> {
    // The raw SHA-256 runs on a scoped thread beside the decoder ([`hashahead`]).
    std::thread::scope(|scope| decode_in(scope, source, output, magic, expected, counters, cancel))
}

fn decode_in<'scope, R: Read, W: Write + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut source: R,
    output: W,
    magic: &'scope [u8],
    expected: &Expected,
    counters: &'scope Arc<Counters>,
    cancel: &CancellationToken,
) -> Result<W, PipelineError> {
    let raw = hashahead::HashAhead::start(
        scope,
        MagicCheck {
            inner: Marked(output),
            magic,
            seen: 0,
        },
        &counters.raw,
        // Checked as bytes flow: a stream that decodes to more than the catalog records
        // (M7: a zstd bomb) stops before the excess reaches the restore tool.
        Some(expected.raw.size),
    )
    .map_err(PipelineError::Decode)?;
    let mut decoder = zstd::stream::write::Decoder::new(raw).map_err(PipelineError::Decode)?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(PipelineError::Decode)?;
    let mut tap = sealing::Tap::new(&mut source, expected.stored.size, counters);
    // Once decrypting, decoding or the output fails, the rest of the stored bytes are still
    // read and hashed: a corrupt archive must be reported as corrupt, whatever the restore
    // tool, age or the decoder made of the damaged bytes (S4).
    let mut decode_error: Option<io::Error> = None;
    let mut decrypt_error: Option<io::Error> = None;
    let mut output_error: Option<io::Error> = None;
    let pumped = match &expected.key {
        None => pump(&mut tap, &mut decoder, cancel),
        Some(key) => match age::Decryptor::new(&mut tap) {
            Err(e) => Err(Pumped::Decrypt(io::Error::other(e))),
            Ok(d) => match d.decrypt(std::iter::once(key.identity() as &dyn age::Identity)) {
                Err(e) => Err(Pumped::Decrypt(io::Error::other(e))),
                Ok(mut plain) => pump(&mut plain, &mut decoder, cancel),
            },
        },
    };
    match pumped {
        Ok(()) => {}
        Err(Pumped::Cancelled) => return Err(PipelineError::Cancelled),
        Err(Pumped::Decrypt(e)) => decrypt_error = Some(e),
        Err(Pumped::Decode(e)) => {
            if let Some(limit) = raw_limit_exceeded(&e) {
                // Whatever the stored hash says, this archive is not the recorded one: stop
                // now instead of reading (or decoding) the rest.
                return Err(PipelineError::Mismatch {
                    what: format!("it decodes to more than the recorded {limit} raw bytes"),
                });
            }
            if is_marked(&e) {
                output_error = Some(unmark(e));
            } else {
                decode_error = Some(e);
            }
        }
    }
    if !tap.drain(cancel) {
        return Err(PipelineError::Cancelled);
    }
    match tap.stopped.take() {
        Some(sealing::TapStop::Source(e)) => return Err(PipelineError::ReadStored(e)),
        Some(sealing::TapStop::TooLong) => {
            // Longer than recorded: no need to read further to know it is wrong.
            return Err(PipelineError::Mismatch {
                what: format!(
                    "more than the recorded {} stored bytes",
                    expected.stored.size
                ),
            });
        }
        None => {}
    }
    let Digest {
        size: stored_size,
        sha256: stored_sha,
    } = tap.digest();
    if stored_size != expected.stored.size {
        return Err(PipelineError::Mismatch {
            what: format!(
                "{stored_size} stored bytes, the catalog records {} (truncated?)",
                expected.stored.size
            ),
        });
    }
    if stored_sha != expected.stored.sha256 {
        return Err(PipelineError::Mismatch {
            what: format!(
                "stored SHA-256 {stored_sha}, the catalog records {}",
                expected.stored.sha256
            ),
        });
    }
    if let Some(e) = decrypt_error {
        return Err(PipelineError::Decrypt(e));
    }
    if let Some(e) = decode_error {
        return Err(PipelineError::Decode(e));
    }
    if let Some(e) = output_error {
        return Err(PipelineError::Output(e));
    }
    let over_limit = |e: &io::Error| {
        raw_limit_exceeded(e).map(|limit| PipelineError::Mismatch {
            what: format!("it decodes to more than the recorded {limit} raw bytes"),
        })
    };
    // An error at the end: the size limit, the output's (marked), or the decoder's.
    let at_end = |e: io::Error| {
        if let Some(m) = over_limit(&e) {
            m
        } else if is_marked(&e) {
            PipelineError::Output(unmark(e))
        } else {
            PipelineError::Decode(e)
        }
    };
    decoder.flush().map_err(at_end)?;
    // `finish` reports an incomplete final frame.
    let decoder_done = decoder
        .finish()
        .map_err(|e| over_limit(&e).unwrap_or(PipelineError::Decode(e)))?;
    let (raw, check) = decoder_done.finish().map_err(at_end)?;
    if raw.size != expected.raw.size || raw.sha256 != expected.raw.sha256 {
        return Err(PipelineError::Mismatch {
            what: format!(
                "decoded {} bytes with SHA-256 {}, the catalog records {} bytes with {}",
                raw.size, raw.sha256, expected.raw.size, expected.raw.sha256
            ),
        });
    }
    if check.seen < magic.len() {
        return Err(PipelineError::Mismatch {
            what: "decoded stream is shorter than the format header".into(),
        });
    }
    let Marked(mut out) = check.inner;
    out.flush().map_err(PipelineError::Output)?;
    Ok(out)
}

/// Wraps the far end of the pipeline (repository file, restore tool's stdin) so its errors can
/// be told apart from zstd's after passing through the codec.
struct Marked<W>(W);

#[derive(Debug)]
struct SideFailed(io::Error);

impl std::fmt::Display for SideFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SideFailed {}

impl<W: Write> Write for Marked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| io::Error::new(e.kind(), SideFailed(e)))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .flush()
            .map_err(|e| io::Error::new(e.kind(), SideFailed(e)))
    }
}

fn is_marked(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SideFailed>())
}

fn unmark(e: io::Error) -> io::Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<SideFailed>() {
            Ok(side) => side.0,
            Err(other) => io::Error::other(other),
        },
        None => io::Error::other("unknown error"),
    }
}

/// Checks the first bytes of the decoded stream against the format magic before anything
/// reaches the restore tool.
struct MagicCheck<'m, W> {
    inner: W,
    magic: &'m [u8],
    seen: usize,
}

impl<W: Write> Write for MagicCheck<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.seen < self.magic.len() {
            let want = &self.magic[self.seen..];
            let n = want.len().min(buf.len());
            if buf[..n] != want[..n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "decoded data does not start with {}",
                        String::from_utf8_lossy(self.magic)
                    ),
                ));
            }
        }
        let n = self.inner.write(buf)?;
        self.seen = self.seen.saturating_add(n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
