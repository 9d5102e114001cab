//! What the agent learns from a mysqldump stream while it passes through, in bounded memory:
//! that it starts like a dump (D15), that it ends with the completion trailer mysqldump writes
//! only after the last statement (a dump cut short by a crash, a kill or a lost connection has
//! none: D15), and how many rows each table's `INSERT` statements carry. Those counts are taken
//! in the dump's own snapshot by construction: they are exactly what a restore must produce.
//!
//! Memory: a fixed-size header window, a fixed-size tail, a bounded line prefix and one entry per
//! table. Nothing grows with the size of the data.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    sync::{Arc, Mutex},
};

use crate::manifest::TableRows;

/// What every complete mysqldump/mariadb-dump output ends with (followed by ` on DATE` unless
/// `--skip-dump-date`). Written only when comments are on, so lifeboat always passes `--comments`.
pub const TRAILER: &str = "-- Dump completed";
/// How much of the end of the stream is kept to look for [`TRAILER`].
const TAIL_BYTES: usize = 256;
/// How much of the start of the stream is looked at for the dump header.
const HEADER_BYTES: usize = 512;
/// Longest line prefix kept while deciding what a line is. Identifiers are at most 64
/// characters (256 bytes in UTF-8, doubled backticks included: 512).
const PREFIX_MAX: usize = 640;

/// Why a stream is not a complete dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpFormatError {
    #[error("the dump tool produced no output")]
    Empty,
    #[error(
        "the output does not start like a mysqldump/mariadb-dump file (no \"-- MySQL dump\" or \"-- MariaDB dump\" header); got {0:?}"
    )]
    BadHeader(String),
    #[error(
        "the dump ends without mysqldump's \"-- Dump completed\" trailer: it is truncated (the dump tool or its connection stopped early); last bytes: {0:?}"
    )]
    NoTrailer(String),
}

/// The result of inspecting a complete dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// The header line naming the dump tool (`-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB…`).
    pub header: String,
    /// Rows per table, from the dump's `INSERT` statements; tables without rows are listed
    /// with 0 (from their `CREATE TABLE`).
    pub rows: BTreeMap<String, i64>,
    pub bytes: u64,
}

impl DumpSummary {
    /// Row counts for the manifest. MySQL has no schemas inside a database: `schema` is empty.
    pub fn table_rows(&self) -> Vec<TableRows> {
        self.rows
            .iter()
            .map(|(t, n)| TableRows {
                bytes: None,
                schema: String::new(),
                table: t.clone(),
                rows: *n,
            })
            .collect()
    }
}

/// Bytes that matter inside the tuples of an INSERT, outside strings.
const VALUES_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\'' as usize] = true;
    t[b'"' as usize] = true;
    t[b'(' as usize] = true;
    t[b')' as usize] = true;
    t[b';' as usize] = true;
    t
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the start of a line into `prefix`.
    Line,
    /// Skipping to the end of the line.
    Skip,
    /// After `INSERT INTO \`t\``: an optional column list, then `VALUES`.
    AfterName { depth: u32, in_name: bool },
    /// Inside the tuples of an INSERT.
    Values { depth: u32, quote: u8, escape: bool },
}

/// Fed the dump stream chunk by chunk; [`DumpInspector::finish`] gives the verdict.
#[derive(Debug)]
pub struct DumpInspector {
    header: Vec<u8>,
    tail: Vec<u8>,
    bytes: u64,
    state: State,
    prefix: Vec<u8>,
    /// Inside `DELIMITER ;;` … `DELIMITER ;` (trigger, routine and event bodies: never data).
    in_delimiter_block: bool,
    table: Option<String>,
    /// The last six bytes seen outside identifiers in `AfterName`, to spot `VALUES`.
    window: [u8; 6],
    rows: BTreeMap<String, i64>,
}

impl Default for DumpInspector {
    fn default() -> Self {
        Self::new()
    }
}

impl DumpInspector {
    pub fn new() -> Self {
        Self {
            header: Vec::with_capacity(HEADER_BYTES),
            tail: Vec::with_capacity(TAIL_BYTES * 2),
            bytes: 0,
            state: State::Line,
            prefix: Vec::with_capacity(PREFIX_MAX),
            in_delimiter_block: false,
            table: None,
            window: [0; 6],
            rows: BTreeMap::new(),
        }
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        self.bytes += chunk.len() as u64;
        if self.header.len() < HEADER_BYTES {
            let n = (HEADER_BYTES - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..n]);
        }
        if chunk.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail
                .extend_from_slice(&chunk[chunk.len() - TAIL_BYTES..]);
        } else {
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > TAIL_BYTES {
                let excess = self.tail.len() - TAIL_BYTES;
                self.tail.drain(..excess);
            }
        }
        self.scan(chunk);
    }

    /// Checks the header now (to fail fast, before the whole stream was read).
    pub fn check_header(&self) -> Result<String, DumpFormatError> {
        check_header(&self.header)
    }

    /// The verdict on a stream that has ended.
    pub fn finish(self) -> Result<DumpSummary, DumpFormatError> {
        if self.bytes == 0 {
            return Err(DumpFormatError::Empty);
        }
        let header = check_header(&self.header)?;
        check_trailer(&self.tail)?;
        Ok(DumpSummary {
            header,
            rows: self.rows,
            bytes: self.bytes,
        })
    }

    fn scan(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Skip => match memchr::memchr(b'\n', data) {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.state = State::Line;
                        self.prefix.clear();
                    }
                    None => return,
                },
                State::Line => {
                    let b = data[0];
                    data = &data[1..];
                    if b == b'\n' {
                        self.end_of_prefix_line();
                        self.prefix.clear();
                        continue;
                    }
                    self.prefix.push(b);
                    self.classify_prefix();
                }
                State::AfterName { depth, in_name } => {
                    let b = data[0];
                    data = &data[1..];
                    self.after_name(b, depth, in_name);
                }
                State::Values {
                    mut depth,
                    mut quote,
                    mut escape,
                } => {
                    let mut i = 0;
                    let mut done = false;
                    while i < data.len() {
                        if quote != 0 {
                            if escape {
                                escape = false;
                                i += 1;
                                continue;
                            }
                            // Inside a string only a backslash or the closing quote matters.
                            match memchr::memchr2(b'\\', quote, &data[i..]) {
                                Some(j) => {
                                    i += j;
                                    if data[i] == b'\\' {
                                        escape = true;
                                    } else {
                                        quote = 0;
                                    }
                                    i += 1;
                                }
                                None => i = data.len(),
                            }
                            continue;
                        }
                        // Outside strings: skip numbers, hex literals, commas, NULLs.
                        while i < data.len() && !VALUES_SPECIAL[usize::from(data[i])] {
                            i += 1;
                        }
                        let Some(&b) = data.get(i) else { break };
                        i += 1;
                        match b {
                            b'\'' | b'"' => quote = b,
                            b'(' => {
                                depth += 1;
                                if depth == 1 {
                                    self.count_row();
                                }
                            }
                            b')' => depth = depth.saturating_sub(1),
                            b';' if depth == 0 => {
                                done = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                    data = &data[i..];
                    self.state = if done {
                        self.table = None;
                        State::Skip
                    } else {
                        State::Values {
                            depth,
                            quote,
                            escape,
                        }
                    };
                }
            }
        }
    }

    /// A line ended while its prefix was still being collected.
    fn end_of_prefix_line(&mut self) {
        let line = self.prefix.as_slice();
        if line.starts_with(b"DELIMITER ") {
            self.in_delimiter_block = line.trim_ascii_end() != b"DELIMITER ;";
        }
    }

    fn classify_prefix(&mut self) {
        const INSERT: &[u8] = b"INSERT INTO `";
        const CREATE: &[u8] = b"CREATE TABLE `";
        const CREATE_INE: &[u8] = b"CREATE TABLE IF NOT EXISTS `";
        const DELIMITER: &[u8] = b"DELIMITER ";
        let p = self.prefix.as_slice();
        let could_be = |kw: &[u8]| {
            let n = p.len().min(kw.len());
            p[..n] == kw[..n]
        };
        if could_be(DELIMITER) {
            // Decided at the end of the line.
            if p.len() > PREFIX_MAX {
                self.state = State::Skip;
            }
            return;
        }
        if self.in_delimiter_block {
            self.state = State::Skip;
            return;
        }
        for (kw, insert) in [(INSERT, true), (CREATE, false), (CREATE_INE, false)] {
            if !could_be(kw) {
                continue;
            }
            if p.len() < kw.len() {
                return; // undecided yet
            }
            match parse_ident(&p[kw.len()..]) {
                Ident::Incomplete if p.len() < PREFIX_MAX => return,
                Ident::Incomplete => {}
                Ident::Done(name) => {
                    let name = String::from_utf8_lossy(&name).into_owned();
                    self.rows.entry(name.clone()).or_insert(0);
                    if insert {
                        self.table = Some(name);
                        self.window = [0; 6];
                        self.state = State::AfterName {
                            depth: 0,
                            in_name: false,
                        };
                        self.prefix.clear();
                        return;
                    }
                }
            }
            self.state = State::Skip;
            return;
        }
        self.state = State::Skip;
    }

    fn after_name(&mut self, b: u8, depth: u32, in_name: bool) {
        if in_name {
            // A doubled backtick closes and reopens: same result.
            if b == b'`' {
                self.state = State::AfterName {
                    depth,
                    in_name: false,
                };
            }
            return;
        }
        match b {
            b'`' => {
                self.state = State::AfterName {
                    depth,
                    in_name: true,
                }
            }
            b'(' if depth == 0 && &self.window == b"VALUES" => {
                self.count_row();
                self.state = State::Values {
                    depth: 1,
                    quote: 0,
                    escape: false,
                };
            }
            b'(' => {
                self.state = State::AfterName {
                    depth: depth + 1,
                    in_name,
                }
            }
            b')' => {
                self.state = State::AfterName {
                    depth: depth.saturating_sub(1),
                    in_name,
                }
            }
            b';' if depth == 0 => {
                self.table = None;
                self.state = State::Skip;
            }
            b' ' | b'\n' | b'\t' | b'\r' => {}
            _ => {
                self.window.rotate_left(1);
                self.window[5] = b.to_ascii_uppercase();
            }
        }
    }

    fn count_row(&mut self) {
        if let Some(t) = &self.table
            && let Some(n) = self.rows.get_mut(t)
        {
            *n += 1;
        }
    }
}

enum Ident {
    Incomplete,
    Done(Vec<u8>),
}

/// Parses a backtick-quoted identifier whose opening backtick was already consumed.
fn parse_ident(s: &[u8]) -> Ident {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'`' {
            match s.get(i + 1) {
                Some(b'`') => {
                    out.push(b'`');
                    i += 2;
                }
                Some(_) => return Ident::Done(out),
                None => return Ident::Incomplete,
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ident::Incomplete
}

fn check_header(header: &[u8]) -> Result<String, DumpFormatError> {
    if header.is_empty() {
        return Err(DumpFormatError::Empty);
    }
    let text = String::from_utf8_lossy(header);
    // MariaDB 10.5.25/10.6.18/10.11.8 and later put a sandbox-mode line first.
    let starts_ok = text.starts_with("-- ") || text.starts_with("/*M!999999\\- enable the sandbox");
    let line = text
        .lines()
        .find(|l| l.starts_with("-- MySQL dump") || l.starts_with("-- MariaDB dump"));
    match line {
        Some(l) if starts_ok => Ok(l.trim_end().to_owned()),
        _ => Err(DumpFormatError::BadHeader(text.chars().take(40).collect())),
    }
}

fn check_trailer(tail: &[u8]) -> Result<(), DumpFormatError> {
    let text = String::from_utf8_lossy(tail);
    let trimmed = text.trim_end();
    let last_line = trimmed.rsplit('\n').next().unwrap_or("");
    if last_line.starts_with(TRAILER) {
        Ok(())
    } else {
        let shown: String = {
            let chars: Vec<char> = trimmed.chars().collect();
            chars[chars.len().saturating_sub(60)..].iter().collect()
        };
        Err(DumpFormatError::NoTrailer(shown))
    }
}

/// Where a [`CheckedDumpReader`] leaves its verdict once the stream has ended.
#[derive(Debug, Clone, Default)]
pub struct InspectHandle(Arc<Mutex<Option<Result<DumpSummary, DumpFormatError>>>>);

impl InspectHandle {
    /// The verdict; `None` while the stream has not reached its end (or the reader failed).
    pub fn take(&self) -> Option<Result<DumpSummary, DumpFormatError>> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// A `Read` wrapper for the backup pipeline's source: passes the dump through unchanged,
/// fails the read at the start if the header is wrong, and turns the end of a stream without
/// the completion trailer into an `InvalidData` error instead of a clean EOF. The summary
/// (row counts) is left in the [`InspectHandle`].
pub struct CheckedDumpReader<R> {
    inner: R,
    inspector: Option<DumpInspector>,
    header_checked: bool,
    handle: InspectHandle,
}

impl<R: Read> CheckedDumpReader<R> {
    pub fn new(inner: R) -> (Self, InspectHandle) {
        let handle = InspectHandle::default();
        (
            Self {
                inner,
                inspector: Some(DumpInspector::new()),
                header_checked: false,
                handle: handle.clone(),
            },
            handle,
        )
    }
}

fn invalid(e: DumpFormatError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<R: Read> Read for CheckedDumpReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inspector) = self.inspector.as_mut() else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        if n > 0 {
            inspector.feed(&buf[..n]);
            if !self.header_checked && inspector.header.len() >= HEADER_BYTES {
                self.header_checked = true;
                inspector.check_header().map_err(invalid)?;
            }
            return Ok(n);
        }
        let Some(inspector) = self.inspector.take() else {
            return Ok(0);
        };
        let verdict = inspector.finish();
        let out = match &verdict {
            Ok(_) => Ok(0),
            Err(e) => Err(invalid(e.clone())),
        };
        if let Ok(mut g) = self.handle.0.lock() {
            *g = Some(verdict);
        }
        out
    }
}

/// A `Write` end for the restore direction's proof pass (H3): passes everything to `inner`
/// (a sink) and inspects it like [`CheckedDumpReader`], so a stream can be shown to be a whole
/// dump (header, completion trailer) before anything is written to a database.
pub struct InspectingWriter<W> {
    inner: W,
    inspector: DumpInspector,
}

impl<W: io::Write> InspectingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            inspector: DumpInspector::new(),
        }
    }

    /// The inner writer and the verdict on everything written.
    pub fn finish(self) -> (W, Result<DumpSummary, DumpFormatError>) {
        (self.inner, self.inspector.finish())
    }
}

impl<W: io::Write> io::Write for InspectingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.inspector.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The [`DumpFormatError`] inside an I/O error from a [`CheckedDumpReader`], if that is what it is.
pub fn format_error(e: &io::Error) -> Option<&DumpFormatError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DumpFormatError>())
}

/// The first line newer MariaDB dump tools write. MariaDB's client then refuses shell escapes
/// for the rest of the file; MySQL's client does not know the `\-` command and stops at once
/// ("Unknown command '\-'").
pub const SANDBOX_LINE: &[u8] = b"/*M!999999\\- enable the sandbox mode */";

/// A `Write` wrapper for the restore direction when the SQL client is MySQL's: drops MariaDB's
/// sandbox-mode first line (see [`SANDBOX_LINE`]) and passes everything else through unchanged.
/// Only the first line is ever held back, and at most a few dozen bytes of it.
pub struct SandboxLineFilter<W> {
    inner: W,
    /// `Some` while the first line is still being looked at.
    head: Option<Vec<u8>>,
}

impl<W: io::Write> SandboxLineFilter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            head: Some(Vec::with_capacity(64)),
        }
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.release()?;
        Ok(self.inner)
    }

    /// Decides about the held-back head: drop it if it is the sandbox line, else write it.
    fn release(&mut self) -> io::Result<()> {
        if let Some(head) = self.head.take() {
            let line_end = head.iter().position(|&b| b == b'\n');
            let is_sandbox = head.starts_with(SANDBOX_LINE);
            match (is_sandbox, line_end) {
                (true, Some(i)) => self.inner.write_all(&head[i + 1..])?,
                (true, None) => {}
                (false, _) => self.inner.write_all(&head)?,
            }
        }
        Ok(())
    }
}

impl<W: io::Write> io::Write for SandboxLineFilter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(head) = self.head.as_mut() else {
            return self.inner.write(buf);
        };
        head.extend_from_slice(buf);
        let decided = head.contains(&b'\n')
            || head.len() > SANDBOX_LINE.len() + 8
            || !SANDBOX_LINE.starts_with(&head[..head.len().min(SANDBOX_LINE.len())]);
        if decided {
            self.release()?;
        }
        Ok(buf.len())
    }

    /// Flushes what has been decided; an undecided first line stays held back until more bytes
    /// or [`SandboxLineFilter::into_inner`] decide it.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n";
    const TAIL: &str = "\n-- Dump completed on 2026-11-28  4:19:56\n";

    fn inspect_in_chunks(text: &[u8], chunk: usize) -> Result<DumpSummary, DumpFormatError> {
        let mut i = DumpInspector::new();
        for c in text.chunks(chunk) {
            i.feed(c);
        }
        i.finish()
    }

    fn sample() -> String {
        format!(
            "{HEAD}\
CREATE TABLE `empty` (\n  `id` int\n);\n\
CREATE TABLE `we``ird (x)` (\n  `id` int\n);\n\
INSERT INTO `we``ird (x)` VALUES (1,'a),(b'),(2,'it\\'s \\\\'),(3,0x28FF);\n\
INSERT INTO `child` VALUES\n(1,1,'a),(b',0x00FF2829,2,2),\n(2,2,'line\\nbreak',NULL,4,3);\n\
INSERT INTO `gen` (`a`, `b``c`) VALUES (1,'(x'),(2,\"y)\"),(3,NULL);\n\
DELIMITER ;;\n\
INSERT INTO `audit` VALUES (NEW.id)\n\
;;\n\
DELIMITER ;\n\
INSERT INTO `child` VALUES (3,3,'',NULL,6,4);\n\
/*!50001 CREATE VIEW `v` AS SELECT\n 1 AS `name` */;\n\
{TAIL}"
        )
    }

    #[test]
    fn counts_rows_per_table_in_any_chunking() {
        let text = sample();
        let expected: BTreeMap<String, i64> =
            [("child", 3), ("empty", 0), ("gen", 3), ("we`ird (x)", 3)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let s = inspect_in_chunks(text.as_bytes(), chunk).expect("valid dump");
            assert_eq!(s.rows, expected, "chunk size {chunk}");
            assert!(
                s.header.starts_with("-- MariaDB dump 10.19"),
                "{}",
                s.header
            );
            assert_eq!(s.bytes, text.len() as u64);
        }
    }

    #[test]
    fn mysql_header_without_sandbox_line_is_accepted() {
        let text = format!(
            "-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n--\nINSERT INTO `t` VALUES (1),(2);\n{TAIL}"
        );
        let s = inspect_in_chunks(text.as_bytes(), 5).expect("valid");
        assert_eq!(s.rows.get("t"), Some(&2));
    }

    #[test]
    fn truncated_dump_is_refused() {
        let text = sample();
        let cut = &text.as_bytes()[..text.len() - TAIL.len() + 5];
        let e = inspect_in_chunks(cut, 100).expect_err("truncated accepted");
        assert!(matches!(e, DumpFormatError::NoTrailer(_)), "{e}");
        assert!(e.to_string().contains("Dump completed"), "{e}");
        // A trailer that is not the last line (more output after it) is not complete either.
        let more = format!("{text}INSERT INTO `t` VALUES (1);\n");
        assert!(inspect_in_chunks(more.as_bytes(), 100).is_err());
    }

    #[test]
    fn empty_and_garbage_are_refused() {
        assert_eq!(inspect_in_chunks(b"", 10), Err(DumpFormatError::Empty));
        let e = inspect_in_chunks(b"garbage\n-- Dump completed\n", 10).expect_err("garbage");
        assert!(matches!(e, DumpFormatError::BadHeader(_)), "{e}");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut i = DumpInspector::new();
        i.feed(HEAD.as_bytes());
        i.feed(b"INSERT INTO `big` VALUES ");
        let row =
            b"(1,'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'),";
        for _ in 0..20_000 {
            i.feed(row);
            assert!(i.tail.len() <= TAIL_BYTES && i.prefix.len() <= PREFIX_MAX + 1);
        }
        i.feed(b"(2,'y');\n");
        i.feed(TAIL.as_bytes());
        assert!(i.header.len() <= HEADER_BYTES);
        let s = i.finish().expect("valid");
        assert_eq!(s.rows.get("big"), Some(&20_001));
    }

    #[test]
    fn sandbox_line_is_dropped_for_mysql_clients_only_when_present() {
        use std::io::Write;
        for chunk in [1, 3, 10, 1000] {
            let mut f = SandboxLineFilter::new(Vec::new());
            for c in sample().as_bytes().chunks(chunk) {
                f.write_all(c).expect("write");
            }
            let out = String::from_utf8(f.into_inner().expect("inner")).expect("utf8");
            assert!(
                out.starts_with("-- MariaDB dump 10.19"),
                "chunk {chunk}: {out:.60}"
            );
            assert_eq!(out.len(), sample().len() - HEAD.find('\n').expect("nl") - 1);
        }
        let mysql = "-- MySQL dump 10.13\nINSERT INTO `t` VALUES (1);\n";
        for chunk in [1, 4, 100] {
            let mut f = SandboxLineFilter::new(Vec::new());
            for c in mysql.as_bytes().chunks(chunk) {
                f.write_all(c).expect("write");
            }
            assert_eq!(
                f.into_inner().expect("inner"),
                mysql.as_bytes(),
                "chunk {chunk}"
            );
        }
        let mut f = SandboxLineFilter::new(Vec::new());
        f.write_all(b"/*M").expect("write");
        f.flush().expect("flush");
        assert_eq!(f.into_inner().expect("inner"), b"/*M");
    }

    #[test]
    fn inspecting_writer_judges_what_passed_through() {
        use std::io::Write;
        let text = sample();
        let mut w = InspectingWriter::new(Vec::new());
        for c in text.as_bytes().chunks(7) {
            w.write_all(c).expect("write");
        }
        let (out, verdict) = w.finish();
        assert_eq!(out, text.as_bytes());
        assert_eq!(verdict.expect("whole dump").rows.get("child"), Some(&3));
        let mut w = InspectingWriter::new(io::sink());
        w.write_all(&text.as_bytes()[..text.len() / 2])
            .expect("write");
        assert!(matches!(w.finish().1, Err(DumpFormatError::NoTrailer(_))));
    }

    #[test]
    fn reader_fails_at_eof_without_trailer_and_reports_counts() {
        let text = sample();
        let (mut r, handle) = CheckedDumpReader::new(text.as_bytes());
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("complete dump reads");
        assert_eq!(out, text.as_bytes(), "passed through unchanged");
        let s = handle.take().expect("verdict").expect("valid");
        assert_eq!(s.rows.get("child"), Some(&3));

        let cut = &text.as_bytes()[..text.len() / 2];
        let (mut r, handle) = CheckedDumpReader::new(cut);
        let e = r
            .read_to_end(&mut Vec::new())
            .expect_err("truncated read ok");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            format_error(&e),
            Some(DumpFormatError::NoTrailer(_))
        ));
        assert!(handle.take().expect("verdict").is_err());
    }
}
