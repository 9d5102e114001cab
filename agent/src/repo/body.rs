//! Bridges between the blocking pipeline and the async repositories.
//!
//! - [`body_channel`]: a bounded channel of chunks that ends either with an explicit finish
//!   (the write may commit) or with the sender dropped (the write must abort).
//! - [`BodyWriter`]: a blocking `Write` that feeds a [`BodySender`] in whole chunks.
//! - [`StreamReader`]: a blocking `Read` over a [`ReadStream`].

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::ReadStream;

/// Size of the chunks [`BodyWriter`] hands to the repository.
pub const CHUNK: usize = 1024 * 1024;

enum Item {
    Data(Bytes),
    End,
}

/// Producer side of a [`Body`].
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: mpsc::Sender<Item>,
}

/// Consumer side: what a repository's `put` reads.
#[derive(Debug)]
pub struct Body {
    rx: mpsc::Receiver<Item>,
    ended: bool,
    /// A chunk handed back by the consumer, returned again by the next `next()`.
    pending: Option<Bytes>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Item::End => f.write_str("End"),
        }
    }
}

/// A body channel holding at most `depth` chunks in flight.
pub fn body_channel(depth: usize) -> (BodySender, Body) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (
        BodySender { tx },
        Body {
            rx,
            ended: false,
            pending: None,
        },
    )
}

/// The receiving repository has gone away (its write failed or was cancelled).
fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the repository stopped accepting data (its own error is reported with the job)",
    )
}

impl BodySender {
    pub async fn send(&self, chunk: Bytes) -> io::Result<()> {
        self.tx.send(Item::Data(chunk)).await.map_err(|_| gone())
    }

    pub fn blocking_send(&self, chunk: Bytes) -> io::Result<()> {
        self.tx.blocking_send(Item::Data(chunk)).map_err(|_| gone())
    }

    /// Marks the body complete: the repository may now commit it.
    pub async fn finish(self) -> io::Result<()> {
        self.tx.send(Item::End).await.map_err(|_| gone())
    }
}

impl Body {
    /// The next chunk; `Ok(None)` at a finished end; an error if the sender went away without
    /// finishing (the write must then be abandoned).
    pub async fn next(&mut self) -> Result<Option<Bytes>, super::StorageError> {
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Item::Data(b)) => Ok(Some(b)),
            Some(Item::End) => {
                self.ended = true;
                Ok(None)
            }
            None => Err(super::StorageError::Abandoned(
                "the writer stopped before the end of the data".into(),
            )),
        }
    }
}

impl Body {
    /// Puts a chunk back in front of the stream.
    pub fn push_back(&mut self, chunk: Bytes) {
        debug_assert!(self.pending.is_none(), "one chunk pushed back at a time");
        self.pending = Some(chunk);
    }
}

/// A blocking writer that sends [`CHUNK`]-sized pieces into a body. Dropping it without
/// [`BodyWriter::finish`] abandons the write.
#[derive(Debug)]
pub struct BodyWriter {
    tx: BodySender,
    buf: BytesMut,
}

impl BodyWriter {
    pub fn new(tx: BodySender) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    /// Sends what is buffered and marks the body complete.
    pub async fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.tx.send(chunk).await?;
        }
        self.tx.finish().await
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Sends a full chunk; a partial chunk stays buffered until it fills or `finish`.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.buf.reserve(CHUNK);
            self.tx.blocking_send(chunk)?;
        }
        Ok(())
    }
}

/// A blocking `Read` over a repository stream. The stream is driven by a task on the runtime
/// it was created in; at most `depth` chunks wait between the two.
pub struct StreamReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    done: bool,
}

impl StreamReader {
    /// Must be called inside a Tokio runtime.
    pub fn new(mut stream: ReadStream, depth: usize) -> Self {
        let (tx, rx) = mpsc::channel(depth.max(1));
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Self {
            rx,
            cur: Bytes::new(),
            done: false,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
