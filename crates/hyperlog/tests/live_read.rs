//! Reading a write-ahead log while it is written, rotated, trimmed,
//! preallocated and truncated: every pass of a reader is a gapless run of
//! the log (every entry once, in order, up to some point) or a clear error;
//! it never skips, repeats or spins.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::with_deadline;
use hyperlog::retention::RetentionPolicy;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Error, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    n: u64,
}
impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

/// Entries one writer thread appends in each run.
const WRITES: u64 = 3_000;

fn cmd(n: u64) -> Cmd {
    Cmd {
        level: LogLevel::Info,
        // About 100 bytes of message, as in the reproduction.
        message: Some(format!("{n:08} {}", "x".repeat(90))),
        n,
    }
}

fn wal_options(path: &Path, format: LogFormat, segment: u64, prealloc: u64) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(format)
        .enable_lsn(true)
        .instance_id(3)
        .preallocate(prealloc)
        .retention_policy(RetentionPolicy::new().max_size(segment))
}

/// One whole read of the log: the entry numbers in the order read, or the
/// error that ended it (with what came before it).
fn one_pass(path: &Path) -> (Vec<u64>, Option<Error>) {
    let mut seen = Vec::new();
    for item in hyperlog::read_entries_blocking::<Cmd>(path, 0, ReadOptions::default()) {
        match item {
            Ok((_, log, _)) => seen.push(log.entry.n),
            Err(e) => return (seen, Some(e)),
        }
    }
    (seen, None)
}

/// Checks that a pass is a gapless run `first, first + 1, ...` and that it
/// starts at the oldest entry the log could still hold (`oldest_kept` is
/// the lowest entry number any truncation so far may have left).
fn assert_run(seen: &[u64], pass: usize, start_at_zero: bool) {
    if let Some(&first) = seen.first() {
        if start_at_zero {
            assert_eq!(
                first, 0,
                "pass {pass}: the log's first entries were skipped"
            );
        }
        for (i, w) in seen.windows(2).enumerate() {
            assert_eq!(
                w[1],
                w[0] + 1,
                "pass {pass}: entry {} follows entry {} at position {}: {} entries skipped or repeated",
                w[1],
                w[0],
                i + 1,
                w[1] as i64 - w[0] as i64 - 1
            );
        }
    }
}

#[test]
fn a_reader_never_spins_when_the_file_is_cut_under_it() {
    // The reproduction: a sealed segment whose preallocated zeros are
    // trimmed while a reader is in them.
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.wal");
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "wal",
                ContextOptions::new()
                    .path(&path)
                    .durability(DurabilityMode::Flush)
                    .format(LogFormat::Binary)
                    .enable_lsn(true),
            )
            .unwrap();
        for n in 0..25_000 {
            ctx.log_blocking(cmd(n)).unwrap();
        }
        logger.close_blocking().unwrap();
        let data = std::fs::metadata(&path).unwrap().len();
        let padded = (data / 4096 + 1) * 4096 + (4 << 20);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(padded).unwrap();

        let mut it = hyperlog::read_entries_blocking::<Cmd>(&path, 0, ReadOptions::default());
        assert_eq!(it.next().unwrap().unwrap().1.entry.n, 0);
        f.set_len(data).unwrap();
        let rest: Vec<u64> = it.map(|r| r.unwrap().1.entry.n).collect();
        assert_eq!(rest, (1..25_000).collect::<Vec<_>>());
    });
}

#[test]
fn a_reader_never_skips_a_segment_sealed_while_it_lists_the_log() {
    // The reproduction: 100-byte messages into 16 KiB segments without
    // preallocation, and a reader reading the whole log over and over.
    with_deadline(300, || {
        for format in [LogFormat::Binary, LogFormat::Json] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("node.wal");
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking("wal", wal_options(&path, format, 16 * 1024, 0))
                .unwrap();
            let written = Arc::new(AtomicU64::new(0));
            let writer = {
                let written = written.clone();
                std::thread::spawn(move || {
                    for n in 0..WRITES {
                        ctx.log_blocking(cmd(n)).unwrap();
                        written.store(n + 1, Ordering::Relaxed);
                    }
                    ctx.close_blocking().unwrap();
                })
            };
            let mut passes = 0;
            while !writer.is_finished() {
                let acked_before = written.load(Ordering::Relaxed);
                let (seen, err) = one_pass(&path);
                if let Some(e) = err {
                    panic!("{format:?} pass {passes}: {e} after {} entries", seen.len());
                }
                assert_run(&seen, passes, true);
                // Everything acknowledged before the pass began is in it.
                assert!(
                    seen.len() as u64 >= acked_before,
                    "{format:?} pass {passes}: {} entries read, {acked_before} were acknowledged before",
                    seen.len()
                );
                passes += 1;
            }
            writer.join().unwrap();
            let (seen, err) = one_pass(&path);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(seen, (0..WRITES).collect::<Vec<_>>());
            assert!(passes > 10, "{format:?}: only {passes} passes");
            eprintln!("{format:?}: {passes} passes over a log growing to {WRITES} entries");
        }
    });
}

/// Readers in parallel with a writer that rotates every few KiB, with and
/// without preallocation, and (in the second half) with `truncate_before`
/// deleting segments behind them. Each pass must be a gapless run; a pass
/// may end in an error only when truncation deleted a segment it still had
/// to read, and then it must say so.
#[test]
fn parallel_readers_see_a_gapless_run_under_rotation_preallocation_and_truncation() {
    with_deadline(600, || {
        for (prealloc, truncate) in [(0, false), (64 * 1024, false), (0, true), (64 * 1024, true)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("node.wal");
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking(
                    "wal",
                    wal_options(&path, LogFormat::Binary, 8 * 1024, prealloc),
                )
                .unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let writer = {
                let (done, ctx) = (done.clone(), ctx.clone());
                std::thread::spawn(move || {
                    let mut lsns: Vec<Lsn> = Vec::new();
                    for n in 0..WRITES {
                        lsns.push(ctx.log_blocking(cmd(n)).unwrap().unwrap());
                        if truncate && n >= 1000 && n % 250 == 0 {
                            // Keep about the last 1,000 entries.
                            ctx.truncate_before_blocking(lsns[n as usize - 1000])
                                .unwrap();
                        }
                    }
                    done.store(true, Ordering::Relaxed);
                })
            };
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let (done, path) = (done.clone(), path.clone());
                    std::thread::spawn(move || {
                        let (mut passes, mut removed) = (0, 0);
                        while !done.load(Ordering::Relaxed) {
                            let (seen, err) = one_pass(&path);
                            assert_run(&seen, passes, !truncate);
                            match err {
                                None => {}
                                Some(Error::SegmentRemoved { .. }) if truncate => removed += 1,
                                Some(e) => panic!(
                                    "reader {r} pass {passes} (prealloc {prealloc}, truncate {truncate}): {e}"
                                ),
                            }
                            passes += 1;
                        }
                        (passes, removed)
                    })
                })
                .collect();
            writer.join().unwrap();
            let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            ctx.close_blocking().unwrap();
            let (seen, err) = one_pass(&path);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(seen.last().copied(), Some(WRITES - 1));
            assert_run(&seen, usize::MAX, !truncate);
            for (passes, _) in &results {
                assert!(*passes > 5, "{results:?}");
            }
            eprintln!(
                "prealloc {prealloc} truncate {truncate}: {WRITES} entries, readers (passes, ended by truncation) {results:?}"
            );
        }
    });
}
