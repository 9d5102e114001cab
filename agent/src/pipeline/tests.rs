use super::*;

fn data(n: usize) -> Vec<u8> {
    let mut v = b"PGDMP".to_vec();
    let mut x: u32 = 12345;
    while v.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        // Some entropy, some repetition.
        v.extend_from_slice(format!("row {} {}\n", x % 1000, x).as_bytes());
    }
    v
}

fn run_compress(input: &[u8], threads: u32) -> Compressed<Vec<u8>> {
    compress(
        io::Cursor::new(input.to_vec()),
        Vec::new(),
        b"PGDMP",
        Compression {
            level: 3,
            adaptive: false,
            threads,
            encrypt_to: None,
        },
        &Arc::default(),
        &CancellationToken::new(),
    )
    .expect("compress")
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn round_trip_with_hashes() {
    for threads in [1, 2] {
        let input = data(3 * 1024 * 1024);
        let c = run_compress(&input, threads);
        assert_eq!(c.raw.size, input.len() as u64);
        assert_eq!(c.raw.sha256, sha(&input));
        assert_eq!(c.stored.size, c.sink.len() as u64);
        assert_eq!(c.stored.sha256, sha(&c.sink));
        assert!(c.sink.len() < input.len() / 2, "not compressed");
        let expected = Expected {
            stored: c.stored.clone(),
            raw: c.raw.clone(),
            key: None,
        };
        let counters = Arc::<Counters>::default();
        let out = decompress(
            c.sink.as_slice(),
            Vec::new(),
            b"PGDMP",
            &expected,
            &counters,
            &CancellationToken::new(),
        )
        .expect("decompress");
        assert_eq!(out, input);
        assert_eq!(counters.raw.load(Ordering::Relaxed), input.len() as u64);
    }
}

#[test]
fn empty_and_wrong_magic_are_refused() {
    let run = |input: &[u8]| {
        compress(
            io::Cursor::new(input.to_vec()),
            Vec::new(),
            b"PGDMP",
            Compression {
                level: 3,
                adaptive: false,
                threads: 1,
                encrypt_to: None,
            },
            &Arc::default(),
            &CancellationToken::new(),
        )
        .map(drop)
    };
    let r = run(b"");
    assert!(matches!(r, Err(PipelineError::Empty)), "{r:?}");
    let r = run(b"pg_dump: error: connection failed");
    assert!(matches!(r, Err(PipelineError::BadMagic { .. })), "{r:?}");
    let r = run(b"PG");
    assert!(matches!(r, Err(PipelineError::BadMagic { .. })), "{r:?}");
}

fn restore_err(stored: &[u8], expected: &Expected) -> PipelineError {
    decompress(
        stored,
        Vec::new(),
        b"PGDMP",
        expected,
        &Arc::default(),
        &CancellationToken::new(),
    )
    .expect_err("corrupt data accepted")
}

#[test]
fn corruption_reads_as_a_hash_mismatch() {
    let input = data(1024 * 1024);
    let c = run_compress(&input, 1);
    let expected = Expected {
        stored: c.stored.clone(),
        raw: c.raw.clone(),
        key: None,
    };
    // One flipped byte in the middle (S4).
    let mut flipped = c.sink.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let e = restore_err(&flipped, &expected);
    assert!(
        matches!(&e, PipelineError::Mismatch { what } if what.contains("SHA-256")),
        "{e}"
    );
    // Truncated (S3).
    let e = restore_err(&c.sink[..c.sink.len() - 100], &expected);
    assert!(
        matches!(&e, PipelineError::Mismatch { what } if what.contains("truncated")),
        "{e}"
    );
    // Random bytes of the same length (B29).
    let random: Vec<u8> = (0..c.sink.len()).map(|i| (i * 7 + 3) as u8).collect();
    assert!(matches!(
        restore_err(&random, &expected),
        PipelineError::Mismatch { .. }
    ));
    // Valid zstd of other content (B29).
    let other = run_compress(&data(2000), 1);
    assert!(matches!(
        restore_err(&other.sink, &expected),
        PipelineError::Mismatch { .. }
    ));
    // Longer than recorded.
    let mut longer = c.sink.clone();
    longer.extend_from_slice(&[0; 10]);
    assert!(matches!(
        restore_err(&longer, &expected),
        PipelineError::Mismatch { .. }
    ));
}

/// A restore tool that gives up after `left` bytes, as pg_restore does on garbage.
struct Quitter {
    left: usize,
}

impl Write for Quitter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "pg_restore exited",
            ));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn hash_mismatch_wins_over_a_failing_restore_tool() {
    let input = data(2 * 1024 * 1024);
    let c = run_compress(&input, 1);
    let expected = Expected {
        stored: c.stored.clone(),
        raw: c.raw.clone(),
        key: None,
    };
    let mut flipped = c.sink.clone();
    flipped[100] ^= 0x01;
    let run = |stored: &[u8]| {
        decompress(
            stored,
            Quitter { left: 4096 },
            b"PGDMP",
            &expected,
            &Arc::default(),
            &CancellationToken::new(),
        )
        .map(drop)
        .expect_err("accepted")
    };
    assert!(matches!(run(&flipped), PipelineError::Mismatch { .. }));
    // Intact data: the tool's own failure is what is reported.
    assert!(matches!(run(&c.sink), PipelineError::Output(_)));
}

#[test]
fn huge_window_header_is_refused_without_allocating() {
    // A valid zstd frame compressed with a 2^30 window: the decoder must refuse it.
    let input = data(64 * 1024);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(30))
        .expect("window");
    enc.write_all(&input).expect("write");
    let stored = enc.finish().expect("finish");
    let expected = Expected {
        key: None,
        stored: Digest {
            size: stored.len() as u64,
            sha256: sha(&stored),
        },
        raw: Digest {
            size: input.len() as u64,
            sha256: sha(&input),
        },
    };
    let e = restore_err(&stored, &expected);
    assert!(matches!(e, PipelineError::Decode(_)), "{e}");
}

/// Counts what reaches the restore tool.
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// Item 12a (review M7): a stream that decodes to far more than the recorded raw size stops
// as soon as it passes that size, and no more than that size reaches the tool.
#[test]
fn decoded_size_is_bounded_as_bytes_flow() {
    let mut bomb = b"PGDMP".to_vec();
    bomb.resize(256 * 1024 * 1024, 0);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.write_all(&bomb).expect("write");
    let stored = enc.finish().expect("finish");
    drop(bomb);
    let raw_size = 1024 * 1024;
    let expected = Expected {
        key: None,
        // The stored side matches, as after a rebuild from a forged manifest.
        stored: Digest {
            size: stored.len() as u64,
            sha256: sha(&stored),
        },
        raw: Digest {
            size: raw_size,
            sha256: "0".repeat(64),
        },
    };
    let counters = Arc::<Counters>::default();
    let mut out = Counting(0);
    let e = decompress(
        stored.as_slice(),
        &mut out,
        b"PGDMP",
        &expected,
        &counters,
        &CancellationToken::new(),
    )
    .map(drop)
    .expect_err("bomb accepted");
    assert!(
        matches!(&e, PipelineError::Mismatch { what } if what.contains("decodes to more than the recorded 1048576 raw bytes")),
        "{e}"
    );
    assert!(out.0 <= raw_size, "{} bytes reached the tool", out.0);
    assert!(counters.raw.load(Ordering::Relaxed) <= raw_size);
}

#[test]
fn cancel_stops_the_pipeline() {
    let input = data(1024 * 1024);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = compress(
        io::Cursor::new(input),
        Vec::new(),
        b"PGDMP",
        Compression {
            level: 3,
            adaptive: false,
            threads: 1,
            encrypt_to: None,
        },
        &Arc::default(),
        &cancel,
    );
    assert!(matches!(r, Err(PipelineError::Cancelled)), "{r:?}");
}

#[test]
fn zstd_takes_a_new_level_inside_a_frame() {
    // Adaptive compression changes the level between writes of one frame; zstd allows that
    // in multithreaded mode only, which is how the pipeline always runs it.
    let input = data(24 * 1024 * 1024);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.multithread(1).expect("workers");
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
        .expect("job size");
    for (i, piece) in input.chunks(CHUNK).enumerate() {
        enc.write_all(piece).expect("write");
        let level = [1, 9, 2, 6][i / 4 % 4];
        enc.set_parameter(zstd::stream::raw::CParameter::CompressionLevel(level))
            .expect("a level change mid-frame is refused");
    }
    let out = enc.finish().expect("finish");
    assert_eq!(zstd::decode_all(out.as_slice()).expect("decode"), input);
}

#[test]
fn an_adaptive_backup_books_every_byte_to_a_level_and_decodes() {
    // A source slow enough for several windows to pass.
    struct Slow(io::Cursor<Vec<u8>>);
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(40));
            let n = buf.len().min(256 * 1024);
            self.0.read(&mut buf[..n])
        }
    }
    let input = data(6 * 1024 * 1024);
    let c = compress(
        Slow(io::Cursor::new(input.clone())),
        Vec::new(),
        b"PGDMP",
        Compression {
            level: 3,
            adaptive: true,
            threads: 1,
            encrypt_to: None,
        },
        &Arc::default(),
        &CancellationToken::new(),
    )
    .expect("compress");
    let booked: u64 = c.levels.iter().map(|(_, n)| n).sum();
    assert_eq!(booked, input.len() as u64, "{:?}", c.levels);
    assert!(
        c.levels
            .iter()
            .all(|(l, _)| (adapt::MIN_LEVEL..=adapt::MAX_LEVEL).contains(l)),
        "{:?}",
        c.levels
    );
    assert_eq!(zstd::decode_all(c.sink.as_slice()).expect("decode"), input);
    assert_eq!(c.raw.sha256, sha(&input));
}

#[test]
fn a_read_error_mid_stream_fails_the_backup() {
    // The source is read on its own thread: its error still reaches the caller as a source
    // error, never as a short but good backup.
    struct FailsAfter(io::Cursor<Vec<u8>>);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(io::ErrorKind::InvalidData, "no trailer")),
                n => Ok(n),
            }
        }
    }
    let r = compress_level1(FailsAfter(io::Cursor::new(data(3 * CHUNK))), Vec::new());
    match r {
        Err(PipelineError::Source(e)) => assert_eq!(e.to_string(), "no trailer"),
        other => panic!("expected the source's error, got {other:?}"),
    }
}

#[test]
fn the_reading_thread_stops_when_the_sink_fails() {
    // An endless source and a sink that fails: the pipeline returns the sink's error, and the
    // thread reading ahead stops instead of reading on.
    struct Endless(Arc<AtomicU64>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = b"PGDMP"[i % 5];
            }
            self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(buf.len())
        }
    }
    #[derive(Debug)]
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let read = Arc::new(AtomicU64::new(0));
    let r = compress_level1(Endless(read.clone()), Broken);
    assert!(matches!(r, Err(PipelineError::Sink(_))), "{r:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = read.load(Ordering::Relaxed);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        read.load(Ordering::Relaxed),
        after,
        "the source is still being read"
    );
    // What zstd took before its first output failed (a 4 MiB job), plus the queue.
    assert!(after <= (16 * CHUNK) as u64, "read {after} bytes");
}

/// A level-1, single-worker backup of `source` into `sink`.
fn compress_level1<R: Read + Send + 'static, W: Write>(
    source: R,
    sink: W,
) -> Result<Compressed<W>, PipelineError> {
    let compression = Compression {
        level: 1,
        adaptive: false,
        threads: 1,
        encrypt_to: None,
    };
    compress(
        source,
        sink,
        b"PGDMP",
        compression,
        &Arc::default(),
        &CancellationToken::new(),
    )
}

/// The raw hash and the writes run on their own thread: a restore tool failing after several
/// chunks is still reported as the tool's failure, and decoding stops a few chunks later
/// instead of running to the end of the stream.
#[test]
fn a_restore_tool_failing_mid_stream_stops_the_decoder() {
    let mut input = b"PGDMP".to_vec();
    input.extend(data(64 * 1024 * 1024));
    let c = run_compress(&input, 1);
    let expected = Expected {
        stored: c.stored.clone(),
        raw: c.raw.clone(),
        key: None,
    };
    let counters = Arc::<Counters>::default();
    let e = decompress(
        c.sink.as_slice(),
        Quitter { left: 3 << 20 },
        b"PGDMP",
        &expected,
        &counters,
        &CancellationToken::new(),
    )
    .map(drop)
    .expect_err("accepted");
    assert!(matches!(e, PipelineError::Output(_)), "{e}");
    let decoded = counters.raw.load(Ordering::Relaxed);
    assert!(
        decoded < 16 << 20,
        "{decoded} bytes decoded after the tool failed at 3 MiB"
    );
    // And an intact stream reaches a working tool whole, with its hash checked.
    let mut out = Counting(0);
    decompress(
        c.sink.as_slice(),
        &mut out,
        b"PGDMP",
        &expected,
        &Arc::default(),
        &CancellationToken::new(),
    )
    .expect("restored");
    assert_eq!(out.0, input.len() as u64);
}
