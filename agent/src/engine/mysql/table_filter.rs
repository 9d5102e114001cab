//! A partial MySQL/MariaDB restore: the dump stream cut down to some tables on its way into the
//! SQL client. mysqldump and mariadb-dump (with `--comments`, as the agent runs them) open each
//! section with a comment line: `-- Table structure for table \`t\``, `-- Dumping data for
//! table \`t\`` (the table's triggers follow its data in the same section), `-- Temporary table
//! structure for view`, `-- Final view structure for view`, `-- Dumping events for database`,
//! `-- Dumping routines for database`. The filter keeps the settings before the first section
//! and after the last (from `/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;` on), and the sections
//! of the chosen tables; views, routines, events and every other table's sections are left
//! out. [`TableFilter::rest`] is its complement for a parallel load: the settings, the views,
//! routines and events, and no table's section. Row data never starts a line with `-- ` (the dump escapes newlines in values), so only
//! line starts are looked at, and at most [`HEAD_LIMIT`] bytes of a line are held.

use std::{collections::BTreeSet, io};

/// The most bytes of a line start held to recognise a section header: room for two 64-byte
/// names with every backtick doubled.
const HEAD_LIMIT: usize = 512;

/// What the lines being read belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before the first section, or after the last: session settings, kept.
    Settings,
    /// A section of a chosen table.
    Keep,
    /// Any other section.
    Skip,
}

/// Which sections a [`TableFilter`] keeps besides the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The chosen tables'.
    Only,
    /// Every other table's.
    Except,
    /// No table's: the views', routines' and events'.
    Rest,
}

/// A `Write` that passes on only the chosen tables' sections of a dump.
pub struct TableFilter<W> {
    inner: W,
    tables: BTreeSet<String>,
    mode: Mode,
    part: Part,
    /// The start of the current line while it is still undecided (`None` once decided).
    head: Option<Vec<u8>>,
    /// Whether the rest of the current line is written.
    writing: bool,
    seen: BTreeSet<String>,
}

impl<W: io::Write> TableFilter<W> {
    pub fn new(inner: W, tables: impl IntoIterator<Item = String>) -> Self {
        Self {
            inner,
            tables: tables.into_iter().collect(),
            mode: Mode::Only,
            part: Part::Settings,
            head: Some(Vec::with_capacity(HEAD_LIMIT)),
            writing: true,
            seen: BTreeSet::new(),
        }
    }

    /// What no table filter keeps: the settings with the views' (placeholders and final
    /// definitions), the routines' and the events' sections, for after every table was loaded.
    pub fn rest(inner: W) -> Self {
        let mut f = Self::new(inner, []);
        f.mode = Mode::Rest;
        f
    }

    /// Every table's sections but those of `tables` (and no view, routine or event): with
    /// filters for `tables` beside it, no table of the dump is left out, whatever the manifest
    /// listed.
    pub fn except(inner: W, tables: impl IntoIterator<Item = String>) -> Self {
        let mut f = Self::new(inner, tables);
        f.mode = Mode::Except;
        f
    }

    /// Writes out an undecided last line; returns the writer and the chosen tables that had
    /// a section in the stream.
    pub fn finish(mut self) -> io::Result<(W, BTreeSet<String>)> {
        if self.head.as_ref().is_some_and(|h| !h.is_empty()) {
            self.decide()?;
        }
        self.inner.flush()?;
        Ok((self.inner, self.seen))
    }

    /// Classifies the held line start, moves to its part and writes it if that part is kept.
    fn decide(&mut self) -> io::Result<()> {
        let head = self.head.take().unwrap_or_default();
        if let Some(part) = self.classify(&head) {
            self.part = part;
        }
        self.writing = self.part != Part::Skip;
        if self.writing {
            self.inner.write_all(&head)?;
        }
        Ok(())
    }

    fn classify(&mut self, line: &[u8]) -> Option<Part> {
        const TABLE: [&[u8]; 2] = [
            b"-- Table structure for table `",
            b"-- Dumping data for table `",
        ];
        const OTHER: [&[u8]; 5] = [
            b"-- Temporary table structure for view ",
            b"-- Temporary view structure for view ",
            b"-- Final view structure for view ",
            b"-- Dumping events for database ",
            b"-- Dumping routines for database ",
        ];
        const SETTINGS_AGAIN: [&[u8]; 2] = [
            b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;",
            b"-- Dump completed",
        ];
        if let Some(rest) = TABLE.iter().find_map(|p| line.strip_prefix(*p)) {
            let name = quoted_name(rest)?;
            let keep = match self.mode {
                Mode::Only => self.tables.contains(&name),
                Mode::Except => !self.tables.contains(&name),
                Mode::Rest => false,
            };
            return Some(if keep {
                self.seen.insert(name);
                Part::Keep
            } else {
                Part::Skip
            });
        }
        if OTHER.iter().any(|p| line.starts_with(p)) {
            return Some(if self.mode == Mode::Rest {
                Part::Keep
            } else {
                Part::Skip
            });
        }
        if SETTINGS_AGAIN.iter().any(|p| line.starts_with(p)) {
            return Some(Part::Settings);
        }
        None
    }
}

/// The name in a backquoted identifier (doubled backticks undone), followed by the end of the
/// line; `None` if it is not one.
fn quoted_name(rest: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            (b'`', Some(b'`')) => {
                out.push(b'`');
                i += 2;
            }
            (b'`', _) => {
                let tail = &rest[i + 1..];
                return (tail.iter().all(|b| matches!(b, b'\n' | b'\r')))
                    .then(|| String::from_utf8(out).ok())
                    .flatten();
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

impl<W: io::Write> io::Write for TableFilter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if let Some(head) = self.head.as_mut() {
                let room = HEAD_LIMIT - head.len();
                let (take, newline) = match rest.iter().take(room).position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (rest.len().min(room), false),
                };
                head.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let full = head.len() >= HEAD_LIMIT;
                if newline || full {
                    self.decide()?;
                    if newline {
                        self.head = Some(Vec::with_capacity(HEAD_LIMIT));
                    }
                }
            } else {
                // The rest of a long line, up to its end.
                let (take, newline) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (rest.len(), false),
                };
                if self.writing {
                    self.inner.write_all(&rest[..take])?;
                }
                rest = &rest[take..];
                if newline {
                    self.head = Some(Vec::with_capacity(HEAD_LIMIT));
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A real mariadb-dump 10.11 of a database with a foreign key, a trigger, a view, a
    /// procedure, a table whose name holds a backtick and names that are prefixes of others.
    const DUMP: &str = include_str!("table_filter_sample.sql");

    fn filter(tables: &[&str], chunk: usize) -> (String, BTreeSet<String>) {
        let mut f = TableFilter::new(Vec::new(), tables.iter().map(|t| (*t).to_owned()));
        for c in DUMP.as_bytes().chunks(chunk) {
            f.write_all(c).expect("write");
        }
        let (out, seen) = f.finish().expect("finish");
        (String::from_utf8(out).expect("utf-8"), seen)
    }

    #[test]
    fn one_table_keeps_its_sections_and_triggers_and_the_settings() {
        for chunk in [1, 7, 100, 1 << 20] {
            let (out, seen) = filter(&["parent"], chunk);
            assert_eq!(seen, BTreeSet::from(["parent".to_owned()]));
            assert!(
                out.starts_with("/*M!999999\\- enable the sandbox mode */"),
                "{out}"
            );
            assert!(out.contains("CREATE TABLE `parent` ("), "{out}");
            assert!(
                out.contains("(2,'-- Table structure for table `x`');"),
                "{out}"
            );
            assert!(out.contains("TRIGGER trg BEFORE INSERT ON parent"), "{out}");
            assert!(out.contains("/*!40103 SET TIME_ZONE='+00:00' */;"));
            assert!(out.contains("/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;"));
            assert!(
                out.trim_end().ends_with(|c: char| c.is_ascii_digit()),
                "{out}"
            );
            assert!(out.contains("-- Dump completed on"));
            // The table whose name starts like it, the others, the view and the procedure
            // are left out.
            for absent in [
                "`parent2`",
                "`child`",
                "`we``ird`",
                "VIEW",
                "PROCEDURE",
                "DROP VIEW",
            ] {
                assert!(!out.contains(absent), "{absent} in {out}");
            }
        }
    }

    #[test]
    fn the_rest_is_everything_no_table_filter_keeps() {
        for chunk in [1, 9, 1 << 20] {
            let mut f = TableFilter::rest(Vec::new());
            for c in DUMP.as_bytes().chunks(chunk) {
                f.write_all(c).expect("write");
            }
            let (out, seen) = f.finish().expect("finish");
            let out = String::from_utf8(out).expect("utf-8");
            assert!(seen.is_empty());
            assert!(out.contains("VIEW"), "{out}");
            assert!(out.contains("PROCEDURE"), "{out}");
            assert!(out.contains("/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;"));
            for absent in ["CREATE TABLE `parent`", "INSERT INTO", "TRIGGER", "`child`"] {
                assert!(!out.contains(absent), "{absent} in {out}");
            }
        }
        // Every table's filter plus the rest hold each line of the dump once, in order.
        let tables = ["parent", "child"];
        let mut lines: Vec<&str> = Vec::new();
        let outs: Vec<String> = tables
            .iter()
            .map(|t| filter(&[t], 64).0)
            .chain(std::iter::once({
                // The tables no one named: parent2 and we`ird.
                let mut f = TableFilter::except(Vec::new(), tables.map(str::to_owned));
                f.write_all(DUMP.as_bytes()).expect("write");
                let (out, seen) = f.finish().expect("finish");
                assert_eq!(
                    seen,
                    BTreeSet::from(["parent2".to_owned(), "we`ird".to_owned()])
                );
                String::from_utf8(out).expect("utf-8")
            }))
            .chain(std::iter::once({
                let mut f = TableFilter::rest(Vec::new());
                f.write_all(DUMP.as_bytes()).expect("write");
                String::from_utf8(f.finish().expect("finish").0).expect("utf-8")
            }))
            .collect();
        let settings = filter(&[], 64).0;
        for o in &outs {
            lines.extend(o.lines().filter(|l| !settings.lines().any(|s| s == *l)));
        }
        let mut from_dump: Vec<&str> = DUMP
            .lines()
            .filter(|l| !settings.lines().any(|s| s == *l))
            .collect();
        lines.sort_unstable();
        from_dump.sort_unstable();
        assert_eq!(lines, from_dump);
    }

    #[test]
    fn backticks_in_names_and_several_tables() {
        let (out, seen) = filter(&["we`ird", "child", "missing"], 13);
        assert_eq!(
            seen,
            BTreeSet::from(["we`ird".to_owned(), "child".to_owned()])
        );
        assert!(out.contains("INSERT INTO `we``ird` VALUES"), "{out}");
        assert!(out.contains("CONSTRAINT `child_ibfk_1`"), "{out}");
        assert!(!out.contains("CREATE TABLE `parent`"), "{out}");
        // A name that merely starts like a chosen one is another table.
        let (out, seen) = filter(&["paren"], 64);
        assert!(seen.is_empty());
        assert!(!out.contains("CREATE TABLE"), "{out}");
    }

    #[test]
    fn a_long_line_is_passed_or_dropped_without_being_held() {
        let long = format!(
            "-- MariaDB dump\n--\n-- Table structure for table `a`\n--\nINSERT INTO `a` VALUES {};\n-- Table structure for table `b`\nINSERT INTO `b` VALUES {};\n-- Dump completed\n",
            "(1),".repeat(10_000),
            "(2),".repeat(10_000)
        );
        let mut f = TableFilter::new(Vec::new(), ["a".to_owned()]);
        f.write_all(long.as_bytes()).expect("write");
        let (out, _) = f.finish().expect("finish");
        let out = String::from_utf8(out).expect("utf-8");
        assert!(out.contains(&"(1),".repeat(10_000)));
        assert!(!out.contains("(2),"));
        assert!(out.ends_with("-- Dump completed\n"));
        assert_eq!(quoted_name(b"a``b`\n").as_deref(), Some("a`b"));
        assert_eq!(quoted_name(b"a` trailing\n"), None);
    }
}
