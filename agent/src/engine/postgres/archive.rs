//! Reading a pg_dump custom-format archive as it streams by, to count each table's rows.
//!
//! The exact row counts in a manifest used to come from `count(*)` on every table in the
//! dump's snapshot, run beside pg_dump: a second full scan of every table, on the same server
//! and at the same time as the dump. The archive already holds what that scan counts: each
//! table's data is its `COPY … TO stdout` output, one line per row (COPY's text format
//! escapes newlines inside values), so counting the newlines of a table's data block gives
//! the same number in the same snapshot, for memchr's price.
//!
//! Only what counting needs is read (layout from PostgreSQL's `pg_backup_archiver.c` and
//! `pg_backup_custom.c`, archive versions 1.12 to 1.16):
//!
//! ```text
//! header  "PGDMP" vmaj vmin vrev intSize offSize format(1 = custom)
//!         compression: byte (≥ 1.15) | int (< 1.15) — must be none: the agent passes --compress=0
//!         7 ints (creation time), dbname, server version, pg_dump version (strings)
//! toc     int count, then per entry: dumpId hadDumper tableoid oid tag desc section defn
//!         dropStmt copyStmt namespace tablespace [tableam ≥ 1.14] [relkind int ≥ 1.16] owner
//!         "false" deps… NULL, then the custom format's data offset (1 + offSize bytes)
//! data    per block: byte 1 (data) int dumpId, chunks (int len, bytes)…, int 0
//!                 or byte 3 (large objects) int dumpId, per object (int oid, chunks…, int 0)…, int 0
//! int     sign byte, then intSize bytes little-endian; string: int length (-1 = NULL), bytes
//! ```
//!
//! Anything else (another version, a compressed archive, a block type this does not know) makes
//! the counter give up, not the dump: the caller then counts with `count(*)` as before.

use std::{
    collections::HashMap,
    io::{self, Read},
    sync::{Arc, Mutex},
};

const MIN_VERSION: (u8, u8) = (1, 12);
const MAX_VERSION: (u8, u8) = (1, 16);
const FORMAT_CUSTOM: u8 = 1;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// Largest integer width accepted (pg_dump writes `sizeof(int)`, 4).
const MAX_INT_SIZE: usize = 8;

/// Rows per table, keyed by (schema, table), as the archive's data blocks hold them.
pub type StreamCounts = HashMap<(String, String), i64>;

/// Why the counts could not be taken from the archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(String);

fn unreadable(what: impl Into<String>) -> Unreadable {
    Unreadable(what.into())
}

/// A short read of the header or the TOC: how many bytes (from the start of what is buffered)
/// the next attempt needs at least, or a malformed field.
enum Short {
    Need(usize),
    Bad(Unreadable),
}

impl From<Unreadable> for Short {
    fn from(e: Unreadable) -> Self {
        Short::Bad(e)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.pos + n;
        if end > self.buf.len() {
            return Err(Short::Need(end));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i64, Short> {
        let int_size = self.int_size;
        let b = self.take(1 + int_size)?;
        Ok(decode_int(b))
    }

    fn string(&mut self) -> Result<Option<&[u8]>, Short> {
        let len = self.int()?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(unreadable(format!("string of length {n}")).into()),
            n => {
                let n = usize::try_from(n).map_err(|_| unreadable("string too long"))?;
                Ok(Some(self.take(n)?))
            }
        }
    }

    fn text(&mut self) -> Result<Option<String>, Short> {
        Ok(self
            .string()?
            .map(|s| String::from_utf8_lossy(s).into_owned()))
    }
}

/// pg_dump's `WriteInt`: a sign byte, then the magnitude little-endian.
fn decode_int(b: &[u8]) -> i64 {
    let magnitude = b[1..]
        .iter()
        .rev()
        .fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
    if b[0] == 0 { magnitude } else { -magnitude }
}

/// What the header says, once read.
#[derive(Debug, Clone, Copy)]
struct Layout {
    version: (u8, u8),
    int_size: usize,
    off_size: usize,
}

/// After an integer of the data section: what it is.
#[derive(Debug, Clone, Copy)]
enum IntFor {
    DataId,
    DataLen,
    BlobsId,
    BlobOid,
    BlobLen,
}

/// What pg_dump writes after a table's COPY rows (`\.` and two empty lines).
const END_OF_COPY: &[u8] = b"\\.\n\n\n";

/// The last few bytes of a data block.
#[derive(Default)]
struct Tail {
    bytes: [u8; END_OF_COPY.len() + 1],
    len: usize,
}

impl Tail {
    fn push(&mut self, piece: &[u8]) {
        let cap = self.bytes.len();
        if piece.len() >= cap {
            self.bytes.copy_from_slice(&piece[piece.len() - cap..]);
            self.len = cap;
            return;
        }
        let keep = (cap - piece.len()).min(self.len);
        self.bytes.copy_within(self.len - keep..self.len, 0);
        self.bytes[keep..keep + piece.len()].copy_from_slice(piece);
        self.len = keep + piece.len();
    }

    /// How many of the block's newlines are not rows: 3 for the end-of-data marker, 0 without
    /// one; `None` if the block ends inside a line. A row cannot be the line `\.`: COPY
    /// writes a backslash in a value as `\\`.
    fn marker_lines(&self) -> Option<i64> {
        let t = &self.bytes[..self.len];
        let marked = t == END_OF_COPY
            || (t.len() > END_OF_COPY.len() && t[0] == b'\n' && t.ends_with(END_OF_COPY));
        if marked {
            Some(3)
        } else if t.is_empty() || t.ends_with(b"\n") {
            Some(0)
        } else {
            None
        }
    }
}

/// A table whose data the archive holds.
struct Table {
    /// (schema, table)
    name: (String, String),
    rows: i64,
    /// Whether its data block came.
    seen: bool,
}

enum State {
    /// Gathering the header (and, once it is read, the TOC count) into `pending`.
    Header,
    /// Gathering TOC entries; `left` to go.
    Toc {
        left: i64,
    },
    BlockType,
    Int {
        what: IntFor,
        have: usize,
    },
    Payload {
        left: u64,
        then: IntFor,
    },
    Failed(Unreadable),
}

/// Counts rows per table in a custom-format archive fed to it in pieces of any size.
pub struct RowCounter {
    state: State,
    layout: Option<Layout>,
    /// Header and TOC bytes not yet parsed.
    pending: Vec<u8>,
    /// Do not retry parsing `pending` before it holds this many bytes.
    need: usize,
    /// A data-section integer being gathered across pieces.
    int_buf: [u8; 1 + MAX_INT_SIZE],
    /// TABLE DATA entries: dump id → index into `tables`.
    by_id: HashMap<i64, usize>,
    tables: Vec<Table>,
    /// The table whose data block is streaming, if it is one that is counted.
    current: Option<usize>,
    /// The last bytes of that block, for its end-of-data marker.
    tail: Tail,
}

impl Default for RowCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowCounter {
    pub fn new() -> Self {
        Self {
            state: State::Header,
            layout: None,
            pending: Vec::new(),
            need: 0,
            int_buf: [0; 1 + MAX_INT_SIZE],
            by_id: HashMap::new(),
            tables: Vec::new(),
            current: None,
            tail: Tail::default(),
        }
    }

    /// Takes the next piece of the archive.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self.state {
            State::Failed(_) => {}
            State::Header | State::Toc { .. } => {
                self.pending.extend_from_slice(bytes);
                if self.pending.len() >= self.need && self.parse_front() {
                    // What is left after the TOC is the start of the data section.
                    let tail = std::mem::take(&mut self.pending);
                    self.feed_data(&tail);
                }
            }
            _ => self.feed_data(bytes),
        }
    }

    /// Parses as much of the header and TOC in `pending` as is there, dropping what it parsed.
    /// True once the TOC is complete: `pending` then holds only data-section bytes.
    fn parse_front(&mut self) -> bool {
        loop {
            let int_size = self.layout.map_or(0, |l| l.int_size);
            let mut c = Cursor {
                buf: &self.pending,
                pos: 0,
                int_size,
            };
            let step = match self.state {
                State::Header => read_header(&mut c).map(|(layout, count)| {
                    self.layout = Some(layout);
                    State::Toc { left: count }
                }),
                State::Toc { left } if left <= 0 => {
                    self.state = State::BlockType;
                    self.need = 0;
                    return true;
                }
                State::Toc { left } => {
                    let layout = self.layout.expect("header read before the TOC");
                    read_entry(&mut c, layout).map(|entry| {
                        if let Some((id, name)) = entry {
                            self.by_id.insert(id, self.tables.len());
                            self.tables.push(Table {
                                name,
                                rows: 0,
                                seen: false,
                            });
                        }
                        State::Toc { left: left - 1 }
                    })
                }
                _ => unreachable!("parse_front is only called before the data section"),
            };
            match step {
                Ok(next) => {
                    let used = c.pos;
                    self.pending.drain(..used);
                    self.state = next;
                    self.need = 0;
                }
                Err(Short::Need(n)) => {
                    self.need = n;
                    return false;
                }
                Err(Short::Bad(e)) => {
                    self.fail(e);
                    return false;
                }
            }
        }
    }

    fn fail(&mut self, e: Unreadable) {
        self.state = State::Failed(e);
        self.pending = Vec::new();
    }

    fn feed_data(&mut self, mut bytes: &[u8]) {
        let int_len = match self.layout {
            Some(l) => 1 + l.int_size,
            None => return,
        };
        while !bytes.is_empty() {
            match self.state {
                State::BlockType => {
                    let (b, rest) = (bytes[0], &bytes[1..]);
                    bytes = rest;
                    let what = match b {
                        BLK_DATA => IntFor::DataId,
                        BLK_BLOBS => IntFor::BlobsId,
                        other => {
                            return self.fail(unreadable(format!("data block of type {other}")));
                        }
                    };
                    self.state = State::Int { what, have: 0 };
                }
                State::Int { what, have } => {
                    let take = (int_len - have).min(bytes.len());
                    self.int_buf[have..have + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if have + take < int_len {
                        self.state = State::Int {
                            what,
                            have: have + take,
                        };
                        continue;
                    }
                    let v = decode_int(&self.int_buf[..int_len]);
                    if let Err(e) = self.after_int(what, v) {
                        return self.fail(e);
                    }
                }
                State::Payload { left, then } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let (piece, rest) = bytes.split_at(take);
                    bytes = rest;
                    if let Some(t) = self.current {
                        self.tables[t].rows += memchr::memchr_iter(b'\n', piece).count() as i64;
                        self.tail.push(piece);
                    }
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Int {
                            what: then,
                            have: 0,
                        }
                    } else {
                        State::Payload { left, then }
                    };
                }
                State::Failed(_) | State::Header | State::Toc { .. } => return,
            }
        }
    }

    fn after_int(&mut self, what: IntFor, v: i64) -> Result<(), Unreadable> {
        let length =
            |v: i64| u64::try_from(v).map_err(|_| unreadable(format!("data chunk of length {v}")));
        self.state = match what {
            IntFor::DataId => {
                self.current = self.by_id.get(&v).copied();
                if let Some(t) = self.current {
                    if self.tables[t].seen {
                        return Err(unreadable(format!("two data blocks for dump id {v}")));
                    }
                    self.tables[t].seen = true;
                    self.tail = Tail::default();
                }
                State::Int {
                    what: IntFor::DataLen,
                    have: 0,
                }
            }
            IntFor::BlobsId => {
                self.current = None;
                State::Int {
                    what: IntFor::BlobOid,
                    have: 0,
                }
            }
            IntFor::DataLen | IntFor::BlobLen if v == 0 => match what {
                IntFor::DataLen => {
                    if let Some(t) = self.current.take() {
                        let table = &mut self.tables[t];
                        table.rows -= self.tail.marker_lines().ok_or_else(|| {
                            unreadable(format!(
                                "the data of table {}.{} does not end in a newline",
                                table.name.0, table.name.1
                            ))
                        })?;
                    }
                    State::BlockType
                }
                _ => State::Int {
                    what: IntFor::BlobOid,
                    have: 0,
                },
            },
            IntFor::DataLen | IntFor::BlobLen => State::Payload {
                left: length(v)?,
                then: what,
            },
            IntFor::BlobOid if v == 0 => State::BlockType,
            IntFor::BlobOid => State::Int {
                what: IntFor::BlobLen,
                have: 0,
            },
        };
        Ok(())
    }

    /// The counts, if the archive was read to a clean end.
    pub fn finish(self) -> Result<StreamCounts, Unreadable> {
        match self.state {
            State::BlockType => match self.tables.iter().find(|t| !t.seen) {
                Some(t) => Err(unreadable(format!(
                    "the archive has no data block for table {}.{}",
                    t.name.0, t.name.1
                ))),
                None => Ok(self.tables.into_iter().map(|t| (t.name, t.rows)).collect()),
            },
            State::Failed(e) => Err(e),
            State::Header | State::Toc { .. } => Err(unreadable(
                "the archive ends before its table of contents does",
            )),
            State::Int { .. } | State::Payload { .. } => {
                Err(unreadable("the archive ends inside a data block"))
            }
        }
    }
}

fn read_header(c: &mut Cursor<'_>) -> Result<(Layout, i64), Short> {
    if c.take(5)? != b"PGDMP" {
        return Err(unreadable("not a pg_dump archive").into());
    }
    let (vmaj, vmin, _vrev) = (c.byte()?, c.byte()?, c.byte()?);
    let version = (vmaj, vmin);
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(unreadable(format!("archive version {vmaj}.{vmin}")).into());
    }
    let int_size = usize::from(c.byte()?);
    let off_size = usize::from(c.byte()?);
    if !(1..=MAX_INT_SIZE).contains(&int_size) || !(1..=16).contains(&off_size) {
        return Err(unreadable(format!("integer size {int_size}, offset size {off_size}")).into());
    }
    c.int_size = int_size;
    let format = c.byte()?;
    if format != FORMAT_CUSTOM {
        return Err(unreadable(format!("archive format {format}")).into());
    }
    let compression = if version >= (1, 15) {
        i64::from(c.byte()?)
    } else {
        c.int()?
    };
    if compression != 0 {
        return Err(unreadable(format!("compressed archive ({compression})")).into());
    }
    for _ in 0..7 {
        c.int()?; // creation time
    }
    for _ in 0..3 {
        c.string()?; // database, server version, pg_dump version
    }
    let count = c.int()?;
    let layout = Layout {
        version,
        int_size,
        off_size,
    };
    Ok((layout, count))
}

/// One TOC entry; `Some((dump id, (schema, table)))` for a table's COPY data.
#[allow(clippy::type_complexity)]
fn read_entry(
    c: &mut Cursor<'_>,
    layout: Layout,
) -> Result<Option<(i64, (String, String))>, Short> {
    let id = c.int()?;
    let had_dumper = c.int()? != 0;
    c.string()?; // tableoid
    c.string()?; // oid
    let tag = c.text()?;
    let desc = c.text()?;
    c.int()?; // section
    c.string()?; // defn
    c.string()?; // dropStmt
    let copy = c.string()?.is_some_and(|s| s.starts_with(b"COPY "));
    let namespace = c.text()?;
    c.string()?; // tablespace
    if layout.version >= (1, 14) {
        c.string()?; // tableam
    }
    if layout.version >= (1, 16) {
        c.int()?; // relkind
    }
    c.string()?; // owner
    c.string()?; // "false" (WITH OIDS, long gone)
    while c.string()?.is_some() {} // dependencies
    c.take(1 + layout.off_size)?; // where the data is, when the output was seekable
    Ok(
        match (had_dumper && copy, desc.as_deref(), namespace, tag) {
            (true, Some("TABLE DATA"), Some(schema), Some(table)) => Some((id, (schema, table))),
            _ => None,
        },
    )
}

/// Where a [`CountingReader`] leaves its counts once the stream has ended.
#[derive(Debug, Clone, Default)]
pub struct CountsHandle(Arc<Mutex<Option<Result<StreamCounts, Unreadable>>>>);

impl CountsHandle {
    /// The counts; `None` while the stream has not reached its end (or its reader failed).
    pub fn take(&self) -> Option<Result<StreamCounts, Unreadable>> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// A `Read` wrapper that passes an archive through unchanged and counts its rows on the way.
pub struct CountingReader<R> {
    inner: R,
    counter: Option<RowCounter>,
    handle: CountsHandle,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> (Self, CountsHandle) {
        let handle = CountsHandle::default();
        (
            Self {
                inner,
                counter: Some(RowCounter::new()),
                handle: handle.clone(),
            },
            handle,
        )
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(c) = self.counter.as_mut() {
                c.feed(&buf[..n]);
            }
        } else if let Some(c) = self.counter.take()
            && let Ok(mut g) = self.handle.0.lock()
        {
            *g = Some(c.finish());
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
