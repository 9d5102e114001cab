use std::io::Read;

use super::*;

/// `pg_dump --format=custom --compress=0` (PostgreSQL 15, archive 1.14) of the database
/// testdata/counts.sql builds: COPY data with escaped newlines, an empty table, odd names,
/// an unlogged table, partitions, a materialized view, a sequence and large objects.
const ARCHIVE: &[u8] = include_bytes!("testdata/counts.pgdump");

fn expected() -> StreamCounts {
    [
        ("public", "plain", 1000),
        ("public", "tricky", 3),
        ("public", "empty_t", 0),
        ("we\"ird.schema", "Tab le", 7),
        ("public", "unlogged_t", 2),
        ("public", "parted_a", 100),
        ("public", "parted_b", 50),
    ]
    .into_iter()
    .map(|(s, t, n)| ((s.to_owned(), t.to_owned()), n))
    .collect()
}

fn count_in_pieces(bytes: &[u8], piece: usize) -> Result<StreamCounts, Unreadable> {
    let mut c = RowCounter::new();
    for p in bytes.chunks(piece) {
        c.feed(p);
    }
    c.finish()
}

#[test]
fn counts_every_tables_rows_from_a_real_archive() {
    assert_eq!(count_in_pieces(ARCHIVE, ARCHIVE.len()), Ok(expected()));
}

#[test]
fn the_counts_do_not_depend_on_how_the_stream_is_cut() {
    for piece in [1, 2, 3, 5, 7, 13, 64, 511, 4096, 65536] {
        assert_eq!(
            count_in_pieces(ARCHIVE, piece),
            Ok(expected()),
            "pieces of {piece} bytes"
        );
    }
}

#[test]
fn a_cut_archive_never_gives_wrong_counts() {
    // Whatever the point it stops at, the counter either refuses or (past the last table's
    // data, in the large objects) has every count right.
    let mut refused = 0;
    for end in 0..ARCHIVE.len() {
        match count_in_pieces(&ARCHIVE[..end], 4096) {
            Ok(c) => assert_eq!(c, expected(), "archive cut at {end} of {}", ARCHIVE.len()),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > ARCHIVE.len() / 2, "only {refused} cuts refused");
}

#[test]
fn archives_it_cannot_read_are_refused_not_miscounted() {
    let mut newer = ARCHIVE.to_vec();
    newer[6] = 99; // minor version
    let e = count_in_pieces(&newer, 100).expect_err("refused");
    assert!(e.0.contains("version 1.99"), "{e}");

    let mut compressed = ARCHIVE.to_vec();
    compressed[12] = 6; // the compression int's low byte (archive 1.14)
    let e = count_in_pieces(&compressed, 100).expect_err("refused");
    assert!(e.0.contains("compressed"), "{e}");

    let e = count_in_pieces(b"-- PostgreSQL database dump\n", 100).expect_err("refused");
    assert!(e.0.contains("not a pg_dump archive"), "{e}");

    // A block type the counter does not know, right after the TOC.
    let mut odd = ARCHIVE.to_vec();
    let first_block = odd.len() - data_section_len();
    odd[first_block] = 7;
    let e = count_in_pieces(&odd, 100).expect_err("refused");
    assert!(e.0.contains("type 7"), "{e}");
}

/// The length of the fixture's data section, found by counting again from each offset.
fn data_section_len() -> usize {
    let mut c = RowCounter::new();
    for (i, b) in ARCHIVE.iter().enumerate() {
        c.feed(std::slice::from_ref(b));
        if matches!(c.state, State::BlockType) && c.pending.is_empty() {
            return ARCHIVE.len() - (i + 1);
        }
    }
    panic!("no data section");
}

#[test]
fn a_table_whose_data_block_is_missing_is_not_reported_as_empty() {
    // The TOC lists a TABLE DATA entry whose block never comes.
    let a = Archive::new((1, 14))
        .table(1, "public", "a")
        .table(2, "public", "b")
        .data(1, &[b"1\n2\n"])
        .build();
    let e = count_in_pieces(&a, 3).expect_err("refused");
    assert!(e.0.contains("public.b"), "{e}");
}

#[test]
fn a_data_block_that_ends_inside_a_line_is_refused() {
    let a = Archive::new((1, 14))
        .table(1, "public", "a")
        .data(1, &[b"1\n2"])
        .build();
    let e = count_in_pieces(&a, 5).expect_err("refused");
    assert!(e.0.contains("public.a does not end in a newline"), "{e}");
}

#[test]
fn newer_archive_versions_are_read_too() {
    for version in [(1, 12), (1, 13), (1, 14), (1, 15), (1, 16)] {
        let a = Archive::new(version)
            .table(3, "s", "t")
            .table(5, "s", "u")
            .other(4, "SEQUENCE SET")
            .data(3, &[b"a\tb\n", b"c\t\\N\nd", b"\te\n"])
            .blobs(9, &[(16401, &[b"\n\n\n"]), (16402, &[])])
            .data(5, &[])
            .table(6, "s", "v")
            .data(6, &[b"\\\\.\n\n\\", b".\n\n\n"])
            .table(7, "s", "w")
            .data(7, &[b"\\.\n\n\n"])
            .build();
        // `v` holds a row `\\.` (the value `\.`), an empty row, then the end-of-data marker.
        let want: StreamCounts = [
            (("s".into(), "t".into()), 3),
            (("s".into(), "u".into()), 0),
            (("s".into(), "v".into()), 2),
            (("s".into(), "w".into()), 0),
        ]
        .into_iter()
        .collect();
        for piece in [1, 4, 1000] {
            assert_eq!(
                count_in_pieces(&a, piece),
                Ok(want.clone()),
                "{version:?}, pieces of {piece}"
            );
        }
    }
}

#[test]
fn the_reader_passes_the_archive_through_unchanged() {
    let (mut r, handle) = CountingReader::new(ARCHIVE);
    assert!(handle.take().is_none());
    let mut out = Vec::new();
    let mut buf = [0u8; 777];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, ARCHIVE);
    assert_eq!(handle.take(), Some(Ok(expected())));
}

/// Writes small custom-format archives the way pg_dump does, for the versions the fixture
/// does not cover.
struct Archive {
    version: (u8, u8),
    toc: Vec<(i64, bool, &'static str, &'static str, &'static str)>,
    data: Vec<u8>,
}

impl Archive {
    fn new(version: (u8, u8)) -> Self {
        Self {
            version,
            toc: Vec::new(),
            data: Vec::new(),
        }
    }

    fn table(mut self, id: i64, schema: &'static str, name: &'static str) -> Self {
        self.toc.push((id, true, "TABLE DATA", schema, name));
        self
    }

    fn other(mut self, id: i64, desc: &'static str) -> Self {
        self.toc.push((id, false, desc, "s", "x"));
        self
    }

    fn data(mut self, id: i64, chunks: &[&[u8]]) -> Self {
        self.data.push(BLK_DATA);
        int(&mut self.data, id);
        for c in chunks {
            int(&mut self.data, c.len() as i64);
            self.data.extend_from_slice(c);
        }
        int(&mut self.data, 0);
        self
    }

    fn blobs(mut self, id: i64, objects: &[(i64, &[&[u8]])]) -> Self {
        self.data.push(BLK_BLOBS);
        int(&mut self.data, id);
        for (oid, chunks) in objects {
            int(&mut self.data, *oid);
            for c in *chunks {
                int(&mut self.data, c.len() as i64);
                self.data.extend_from_slice(c);
            }
            int(&mut self.data, 0);
        }
        int(&mut self.data, 0);
        self
    }

    fn build(self) -> Vec<u8> {
        let v = self.version;
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[v.0, v.1, 0, 4, 8, FORMAT_CUSTOM]);
        if v >= (1, 15) {
            out.push(0);
        } else {
            int(&mut out, 0);
        }
        for t in [1, 2, 3, 4, 5, 6, 0] {
            int(&mut out, t);
        }
        for s in ["db", "15.0", "17.2"] {
            string(&mut out, Some(s));
        }
        int(&mut out, self.toc.len() as i64);
        for (id, dumper, desc, schema, name) in &self.toc {
            int(&mut out, *id);
            int(&mut out, i64::from(*dumper));
            string(&mut out, Some("1259"));
            string(&mut out, Some("16384"));
            string(&mut out, Some(name));
            string(&mut out, Some(desc));
            int(&mut out, 3);
            string(&mut out, Some(""));
            string(&mut out, Some(""));
            let copy = format!("COPY {schema}.{name} (a, b) FROM stdin;\n");
            string(&mut out, dumper.then_some(copy.as_str()));
            string(&mut out, Some(schema));
            string(&mut out, Some(""));
            if v >= (1, 14) {
                string(&mut out, Some("heap"));
            }
            if v >= (1, 16) {
                int(&mut out, i64::from(b'r'));
            }
            string(&mut out, Some("owner"));
            string(&mut out, Some("false"));
            string(&mut out, Some("2"));
            string(&mut out, None);
            out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        out.extend_from_slice(&self.data);
        out
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    out.push(u8::from(v < 0));
    out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
}

fn string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => int(out, -1),
        Some(s) => {
            int(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}
