//! The backup's source, read on a thread of its own a few chunks ahead of compression.
//!
//! On one thread, reading the dump tool's pipe and feeding zstd take turns: while zstd's job
//! queue is full the pipe is not read, its 64 KiB fill at once, and the dump tool (and the
//! database server behind it) stop until the queue drains. Reading on a separate thread with
//! a small queue of chunks lets the dump tool go on writing while compression catches up, and
//! it moves the raw SHA-256 (and whatever the source's own `Read` wrapper checks: the SQL
//! stream's trailer and row counts, pg_dump's archive) off the compressing thread.
//!
//! Memory: at most [`DEPTH`] + 2 chunks exist at once (one being read, [`DEPTH`] queued, one
//! being compressed); they are reused, not allocated per chunk.

use std::{
    io::{self, Read},
    sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel},
    thread,
};

use sha2::{Digest as _, Sha256};

use super::{CHUNK, Digest, read_full};

/// Chunks read ahead of the compressor.
pub(super) const DEPTH: usize = 4;

/// What the reading thread hands over.
pub(super) enum Ahead {
    Chunk(Vec<u8>),
    /// The source ended cleanly: the size and SHA-256 of everything read.
    End(Digest),
    Failed(io::Error),
}

/// The consuming end; dropping it stops the reading thread at its next chunk (a thread blocked
/// in `read` ends when the source does: the backup kills the dump tool once the pipeline
/// failed).
pub(super) struct ReadAhead {
    filled: Receiver<Ahead>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
}

impl ReadAhead {
    /// Starts reading `source`: the first chunk is `first` bytes (or fewer at EOF), so that the
    /// format's magic is judged before much is read; then [`CHUNK`]s.
    pub(super) fn start<R: Read + Send + 'static>(source: R, first: usize) -> io::Result<Self> {
        let (filled_tx, filled) = sync_channel(DEPTH);
        let (free, free_rx) = channel();
        thread::Builder::new()
            .name("lifeboat-read".into())
            .spawn(move || read_ahead(source, first, &filled_tx, &free_rx))?;
        Ok(Self { filled, free })
    }

    /// The next chunk, or the end. A reading thread that died without a word is a failure,
    /// never a clean end.
    pub(super) fn next(&self) -> Ahead {
        self.filled.recv().unwrap_or_else(|_| {
            Ahead::Failed(io::Error::other("the dump stream's reading thread stopped"))
        })
    }

    /// Gives a chunk back for reuse.
    pub(super) fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.send(buf);
    }
}

fn read_ahead<R: Read>(
    mut source: R,
    first: usize,
    filled: &SyncSender<Ahead>,
    free: &Receiver<Vec<u8>>,
) {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut want = first;
    loop {
        // Bounded without waiting: a new buffer is made only while all others are queued or
        // being compressed.
        let mut buf = match free.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty) => Vec::with_capacity(CHUNK),
            Err(TryRecvError::Disconnected) => return,
        };
        buf.resize(want, 0);
        let msg = match read_full(&mut source, &mut buf) {
            Ok(0) => Ahead::End(Digest {
                size,
                sha256: hex::encode(hasher.finalize_reset()),
            }),
            Ok(n) => {
                buf.truncate(n);
                hasher.update(&buf);
                size += n as u64;
                Ahead::Chunk(buf)
            }
            Err(e) => Ahead::Failed(e),
        };
        let last = !matches!(msg, Ahead::Chunk(_));
        if filled.send(msg).is_err() || last {
            return;
        }
        want = CHUNK;
    }
}
