//! Files that are not logs, archives and forced formats (issue #13, "tools
//! never destroy"): opening a context on a file that is no log refuses and
//! leaves it byte for byte as it was; reading with the wrong forced format is
//! an error, not "0 entries"; zstd archives are read as streams of records
//! with offsets in the decompressed stream.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hyperlog::stream::{StreamRecords, read_archive};
use hyperlog::{
    ContextOptions, DurabilityMode, Error, LogFormat, Logger, Message, RawEntry, ReadOptions,
    RecoveryMode, RetentionPolicy,
};

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Files that are not logs: a PNG, a tarball, random bytes (each longer than
/// one disk sector).
fn not_logs() -> Vec<(&'static str, Vec<u8>)> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x20\0\0\0\x20\x08\x06\0\0\0".to_vec();
    png.extend(noise(1, 3000));
    // A tar header: the member's name, NUL padding, "ustar" at 257, then
    // the member's bytes.
    let mut tar = b"notes.txt".to_vec();
    tar.resize(257, 0);
    tar.extend_from_slice(b"ustar\x0000");
    tar.resize(512, 0);
    tar.extend(noise(2, 2000));
    tar.resize(10240, 0);
    vec![
        ("pic.png", png),
        ("bundle.tar", tar),
        ("random.bin", noise(3, 4096)),
    ]
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn contexts(path: &Path) -> Vec<ContextOptions> {
    let base = || ContextOptions::new().path(path);
    vec![
        base(),
        base().format(LogFormat::Binary),
        base()
            .durability(DurabilityMode::FsyncBatch)
            .format(LogFormat::Binary)
            .enable_lsn(true),
        base().recovery(RecoveryMode::SkipCorrupted),
    ]
}

#[test]
fn opening_a_context_on_a_file_that_is_not_a_log_refuses_and_changes_nothing() {
    for (name, bytes) in not_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let before = files_in(dir.path());
        for opts in contexts(&path) {
            let logger = Logger::new();
            let e = logger
                .context_with_blocking("x", opts)
                .expect_err("a file that is no log must not open");
            let msg = e.to_string();
            assert!(
                matches!(&e, Error::NotALog { path: p, .. } if *p == path),
                "{name}: {e:?}"
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("not a log"), "{msg}");
            let _ = logger.close_blocking();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{name}: the refused open changed the file"
            );
            assert_eq!(files_in(dir.path()), before, "{name}: no side file");
        }
        // Readers say the same, naming the path.
        for mode in [
            RecoveryMode::TolerateTail,
            RecoveryMode::AbsoluteConsistency,
            RecoveryMode::SkipCorrupted,
        ] {
            let r: Result<Vec<RawEntry>, Error> =
                hyperlog::read_records(&path, 0, ReadOptions::new().recovery(mode)).collect();
            assert!(
                matches!(r, Err(Error::NotALog { .. })),
                "{name} {mode:?}: {r:?}"
            );
        }
        assert!(matches!(
            hyperlog::get_last_lsn_blocking(&path, &ReadOptions::default()),
            Err(Error::NotALog { .. })
        ));
    }
}

#[test]
fn logs_cut_short_or_garbled_by_a_crash_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, LogFormat)> = vec![
        // A binary header cut short, a JSON line cut short.
        (
            "bin-prefix.wal",
            vec![0x11, 0x22, 0x33, 0x44, 40, 0, 0, 0, 1],
            LogFormat::Binary,
        ),
        (
            "json-prefix.log",
            br#"{"entry":{"mess"#.to_vec(),
            LogFormat::Json,
        ),
        // One garbled sector, then the preallocated zeros of a WAL file.
        (
            "garbled-sector.wal",
            {
                let mut v = noise(4, 300);
                v.resize(4096, 0);
                v
            },
            LogFormat::Binary,
        ),
        // A few garbled bytes and nothing else.
        ("garbled-short.log", noise(5, 100), LogFormat::Json),
    ];
    for (name, bytes, format) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(name, ContextOptions::new().path(&path).format(format))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ctx.log_blocking(Message::info("after")).unwrap();
        logger.close_blocking().unwrap();
        let side = hyperlog::segments::torn_side_files(&hyperlog::fs::StdFs, &path).unwrap();
        let kept: Vec<u8> = side
            .iter()
            .flat_map(|s| std::fs::read(s).unwrap())
            .collect();
        let trimmed_zeros = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        assert!(
            kept == bytes || kept == bytes[..trimmed_zeros],
            "{name}: the cut bytes are kept beside the log"
        );
        let read: Vec<_> =
            hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(read.len(), 1, "{name}");
    }
}

fn small_log(path: &Path, format: LogFormat, n: usize) -> Vec<u8> {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "small",
            ContextOptions::new()
                .path(path)
                .format(format)
                .enable_lsn(true)
                .instance_id(3),
        )
        .unwrap();
    for i in 0..n {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn reading_with_the_wrong_forced_format_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    for (written, forced) in [
        (LogFormat::Json, LogFormat::Binary),
        (LogFormat::Binary, LogFormat::Json),
    ] {
        let path = dir.path().join(format!("{written:?}.log"));
        small_log(&path, written, 3);
        let opts = ReadOptions::new().format(forced);
        let r: Result<Vec<_>, _> =
            hyperlog::read_entries_blocking::<Message>(&path, 0, opts.clone()).collect();
        let e = r.expect_err("never 0 entries");
        let msg = e.to_string();
        assert!(matches!(e, Error::NotALog { .. }), "{e:?}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        let lower = msg.to_lowercase();
        assert!(lower.contains("json") && lower.contains("binary"), "{msg}");
        let r: Result<Vec<_>, _> = hyperlog::read_records(&path, 0, opts.clone()).collect();
        assert!(matches!(r, Err(Error::NotALog { .. })), "{r:?}");
        let s = hyperlog::scan_log(
            &hyperlog::fs::StdFs,
            &path,
            Some(forced),
            hyperlog::format::DEFAULT_MAX_RECORD_SIZE,
            RecoveryMode::TolerateTail,
        );
        assert!(matches!(s, Err(Error::NotALog { .. })), "{s:?}");
        // The right format, or none, reads it.
        let ok: Vec<_> = hyperlog::read_records(&path, 0, ReadOptions::new().format(written))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ok.len(), 3);
    }
}

/// A data-plane log rotated (and archived) after every entry.
fn archived_log(dir: &Path, n: usize) -> (Vec<PathBuf>, PathBuf) {
    let path = dir.join("app.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(&path)
                .retention_policy(RetentionPolicy::new().max_size(2048)),
        )
        .unwrap();
    for i in 0..n {
        ctx.log_blocking(Message::info(format!("entry {i:04}")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
    let mut archives: Vec<PathBuf> = files_in(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("_archived.zst"))
        .collect();
    archives.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        hyperlog::retention::parse_archive_name("app.log", &name)
    });
    (archives, path)
}

fn message(e: &RawEntry) -> String {
    serde_json::from_slice::<hyperlog::Log<Message>>(&e.payload)
        .unwrap()
        .entry
        .message
        .unwrap()
}

#[test]
fn archives_read_as_streams_of_records() {
    let dir = tempfile::tempdir().unwrap();
    let (archives, live) = archived_log(dir.path(), 100);
    assert!(archives.len() >= 2, "{archives:?}");
    let mut all = Vec::new();
    for a in &archives {
        let bytes = std::fs::read(a).unwrap();
        let plain = zstd::decode_all(&bytes[..]).unwrap();
        let it = read_archive(a, 0, ReadOptions::default()).unwrap();
        assert!(it.is_archive());
        let records: Vec<RawEntry> = it.collect::<Result<_, _>>().unwrap();
        // The offsets are those of the decompressed stream.
        let file = dir.path().join("plain.log.json");
        std::fs::write(&file, &plain).unwrap();
        let want: Vec<RawEntry> = hyperlog::read_records(&file, 0, ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, want);
        all.extend(records.iter().map(message));
        std::fs::remove_file(&file).unwrap();
        // The plain readers refuse it, naming it an archive.
        let e = hyperlog::read_records(a, 0, ReadOptions::default())
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, Error::NotALog { .. }), "{e:?}");
        assert!(e.to_string().contains("zstd archive"), "{e}");
        assert!(e.to_string().contains(&a.display().to_string()), "{e}");
        // Opening a context on it refuses too, and changes nothing.
        let logger = Logger::new();
        assert!(matches!(
            logger.context_with_blocking("a", ContextOptions::new().path(a)),
            Err(Error::NotALog { .. })
        ));
        let _ = logger.close_blocking();
        assert_eq!(std::fs::read(a).unwrap(), bytes);
    }
    all.extend(
        hyperlog::read_records(&live, 0, ReadOptions::default()).map(|r| message(&r.unwrap())),
    );
    let want: Vec<String> = (0..100).map(|i| format!("entry {i:04}")).collect();
    assert_eq!(all, want);

    // From an offset of the decompressed stream, and from an LSN-less
    // record boundary only.
    let records: Vec<RawEntry> = read_archive(&archives[0], 0, ReadOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let from: Vec<RawEntry> = read_archive(&archives[0], records[2].offset, ReadOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(from, records[2..]);
    let e = read_archive(&archives[0], records[2].offset + 1, ReadOptions::default())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert!(matches!(e, Error::NotARecordBoundary { .. }), "{e:?}");
    // A forced format that does not match is an error.
    let e = read_archive(
        &archives[0],
        0,
        ReadOptions::new().format(LogFormat::Binary),
    )
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap_err();
    assert!(matches!(e, Error::NotALog { .. }), "{e:?}");
    // A file that is no archive.
    let e = read_archive(&live, 0, ReadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NotALog { .. }), "{e:?}");
}

#[test]
fn damage_inside_an_archive_is_reported_at_decompressed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.wal");
    let bytes = small_log(&log, LogFormat::Binary, 40);
    let offsets: Vec<u64> = hyperlog::read_records(&log, 0, ReadOptions::default())
        .map(|r| r.unwrap().offset)
        .collect();
    let zst = |name: &str, plain: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        let mut enc =
            zstd::stream::write::Encoder::new(std::fs::File::create(&p).unwrap(), 3).unwrap();
        enc.write_all(plain).unwrap();
        enc.finish().unwrap();
        p
    };
    let read = |p: &Path, mode: RecoveryMode| {
        let mut it = read_archive(p, 0, ReadOptions::new().recovery(mode)).unwrap();
        let mut n = 0;
        let mut err = None;
        for r in it.by_ref() {
            match r {
                Ok(_) => n += 1,
                Err(e) => err = Some(e),
            }
        }
        (n, err, it.damage().to_vec(), it.torn_tail().cloned())
    };

    // A torn tail inside: the records before it, the tail reported.
    let torn = zst("torn_1_archived.zst", &bytes[..offsets[39] as usize + 7]);
    let (n, err, damage, tail) = read(&torn, RecoveryMode::TolerateTail);
    assert_eq!((n, err.is_none()), (39, true));
    assert_eq!(tail.unwrap().offset, offsets[39]);
    assert!(damage[0].torn);

    // Corruption in the middle: an error at its decompressed offset, or
    // skipped.
    let mut flipped = bytes.clone();
    flipped[offsets[10] as usize + 30] ^= 0x40;
    let mid = zst("mid_1_archived.zst", &flipped);
    let (n, err, _, _) = read(&mid, RecoveryMode::TolerateTail);
    assert_eq!(n, 10);
    match err {
        Some(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, offsets[10]);
            assert!(reason.contains("decompressed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (n, err, damage, _) = read(&mid, RecoveryMode::SkipCorrupted);
    assert_eq!((n, err.is_none()), (39, true));
    assert_eq!((damage[0].start, damage[0].end), (offsets[10], offsets[11]));
    assert!(!damage[0].torn);

    // The archive itself cut short: what decompresses is read, then the
    // damage where decompression stopped (never a torn tail).
    let whole = std::fs::read(zst("whole_1_archived.zst", &bytes)).unwrap();
    let cut = dir.path().join("cut_1_archived.zst");
    std::fs::write(&cut, &whole[..whole.len() - 9]).unwrap();
    for mode in [
        RecoveryMode::TolerateTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let (_, err, _, tail) = read(&cut, mode);
        let e = err.expect("a truncated archive is an error");
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("decompressed"), "{e}");
        assert!(tail.is_none());
    }
    let (n, err, damage, tail) = read(&cut, RecoveryMode::SkipCorrupted);
    assert!(err.is_none() && tail.is_none());
    assert!(n < 40);
    let last = damage.last().unwrap();
    assert!(!last.torn);
    assert!(
        last.reason.contains("cannot be read past"),
        "{}",
        last.reason
    );
}

/// Whatever the damage, a stream of a log's bytes reads like the file.
#[test]
fn a_stream_reads_like_the_file_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    for format in [LogFormat::Json, LogFormat::Binary] {
        let path = dir.path().join(format!("{format:?}.src"));
        let bytes = small_log(&path, format, 4);
        let copy = dir.path().join("copy");
        // Every truncation and every bit flip.
        let mut variants: Vec<Vec<u8>> = (1..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            variants.push(b);
        }
        for v in &variants {
            if (v.len() as u64).is_multiple_of(4096) || v.len() <= 512 {
                // Zero tails and torn first sectors are file-only.
                continue;
            }
            std::fs::write(&copy, v).unwrap();
            for mode in [
                RecoveryMode::TolerateTail,
                RecoveryMode::AbsoluteConsistency,
                RecoveryMode::SkipCorrupted,
            ] {
                let opts = ReadOptions::new().recovery(mode);
                let outcome = |it: &mut dyn Iterator<Item = Result<RawEntry, Error>>| {
                    let mut items = Vec::new();
                    let mut end = None;
                    for r in it {
                        match r {
                            Ok(e) => items.push(e),
                            Err(e) => end = Some((std::mem::discriminant(&e), e.offset())),
                        }
                    }
                    (items, end)
                };
                let mut file = hyperlog::read_records(&copy, 0, opts.clone());
                let a = outcome(&mut file);
                let mut stream = StreamRecords::new(&v[..], &copy, 0, &opts);
                let b = outcome(&mut stream);
                assert_eq!(a, b, "{format:?} {mode:?} len {}", v.len());
                assert_eq!(
                    file.torn_tail().map(|t| t.offset),
                    stream.torn_tail().map(|t| t.offset)
                );
                assert_eq!(file.skipped(), stream.skipped());
            }
        }
    }
}
