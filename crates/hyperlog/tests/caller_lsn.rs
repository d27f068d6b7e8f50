//! Machine-written logs: caller-chosen LSNs (`caller_lsns`), compact
//! records (`compact`), and `append_batch`, which returns once the entries
//! are readable and reports durability through a callback.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{FaultFs, Op, with_deadline};
use hyperlog::retention::RetentionPolicy;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Error, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    op: String,
}
impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn cmd(i: u64) -> Cmd {
    Cmd {
        level: LogLevel::Info,
        message: None,
        op: format!("set k{i}"),
    }
}

fn raft_log(path: &std::path::Path) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .caller_lsns(true)
        .compact(true)
}

fn lsns(path: &std::path::Path) -> Vec<u64> {
    hyperlog::read_entries_blocking::<Cmd>(path, 0, ReadOptions::default())
        .map(|i| i.unwrap().2.unwrap().get())
        .collect()
}

/// Appends `range` as one batch and waits for its callback.
fn append(
    ctx: &hyperlog::Context,
    range: std::ops::Range<u64>,
    gap: bool,
) -> Result<Option<Lsn>, Error> {
    let (tx, rx) = mpsc::channel();
    let batch = range.map(|i| (Lsn::new(i), cmd(i))).collect();
    ctx.append_batch_blocking(batch, gap, move |r| {
        let _ = tx.send(r);
    })?;
    rx.recv().unwrap()
}

#[test]
fn caller_lsns_start_anywhere_rise_by_one_and_jump_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", raft_log(&path))
        .unwrap();
    // Index 0 is a real entry, and the first may be anything.
    assert_eq!(append(&ctx, 0..5, false).unwrap(), Some(Lsn::new(4)));
    assert_eq!(append(&ctx, 5..6, false).unwrap(), Some(Lsn::new(5)));
    // A hole, a repeat, and going back are refused, and nothing is written.
    for bad in [7u64, 5, 2] {
        match append(&ctx, bad..bad + 1, false) {
            Err(Error::LsnOutOfOrder { lsn, last, .. }) => {
                assert_eq!((lsn.get(), last), (bad, Some(Lsn::new(5))));
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Only where the caller allows it (after a purge past the end).
    assert_eq!(append(&ctx, 20..22, true).unwrap(), Some(Lsn::new(21)));
    assert!(matches!(
        append(&ctx, 21..22, true),
        Err(Error::LsnOutOfOrder { .. })
    ));
    // log() has no LSN to give.
    assert!(matches!(
        ctx.log_blocking(cmd(99)),
        Err(Error::InvalidOption {
            option: "caller_lsns",
            ..
        })
    ));
    ctx.close_blocking().unwrap();
    assert_eq!(lsns(&path), [0, 1, 2, 3, 4, 5, 20, 21]);

    // After a reopen the order continues from what is on disk.
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", raft_log(&path))
        .unwrap();
    assert!(matches!(
        append(&ctx, 23..24, false),
        Err(Error::LsnOutOfOrder { .. })
    ));
    assert_eq!(append(&ctx, 22..24, false).unwrap(), Some(Lsn::new(23)));
    ctx.close_blocking().unwrap();
    assert_eq!(lsns(&path), [0, 1, 2, 3, 4, 5, 20, 21, 22, 23]);
    assert_eq!(
        hyperlog::get_last_lsn_blocking(&path, &ReadOptions::default()).unwrap(),
        Some(Lsn::new(23))
    );
    // from_lsn works on the caller's numbers.
    let from: Vec<u64> = hyperlog::read_entries_blocking::<Cmd>(
        &path,
        0,
        ReadOptions::default().from_lsn(Lsn::new(5)),
    )
    .map(|i| i.unwrap().2.unwrap().get())
    .collect();
    assert_eq!(from, [5, 20, 21, 22, 23]);
}

#[test]
fn compact_records_hold_only_the_entry_and_its_lsn_and_read_back_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.wal");
    let compact = dir.path().join("compact.wal");
    let logger = Logger::new();
    for (path, on) in [(&full, false), (&compact, true)] {
        let ctx = logger
            .context_with_blocking(path.to_str().unwrap(), raft_log(path).compact(on))
            .unwrap();
        append(&ctx, 0..100, false).unwrap();
        ctx.close_blocking().unwrap();
    }
    let rec = hyperlog::read_records(&compact, 0, ReadOptions::default())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&rec.payload).unwrap(),
        r#"{"entry":{"level":"INFO","message":null,"op":"set k0"},"lsn":0}"#
    );
    let (full_len, compact_len) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&compact).unwrap().len(),
    );
    assert!(
        compact_len * 2 < full_len,
        "compact {compact_len} bytes vs {full_len} with metadata"
    );
    // Typed read-back: the entry and LSN, the metadata absent.
    let logs: Vec<_> = hyperlog::read_entries_blocking::<Cmd>(&compact, 0, ReadOptions::default())
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(logs.len(), 100);
    assert_eq!(logs[7].1.entry, cmd(7));
    assert_eq!(logs[7].2, Some(Lsn::new(7)));
    assert_eq!(logs[7].1.filename, None);
    assert_eq!(logs[7].1.timestamp, None);
    // And the scan that recovery and verify run accepts them.
    let sum = hyperlog::scan_log(
        &hyperlog::fs::StdFs,
        &compact,
        None,
        hyperlog::format::DEFAULT_MAX_RECORD_SIZE,
        hyperlog::RecoveryMode::AbsoluteConsistency,
    )
    .unwrap();
    assert_eq!((sum.records, sum.last_lsn), (100, Some(Lsn::new(99))));
}

#[test]
fn append_batch_returns_readable_and_calls_back_only_after_the_covering_sync() {
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let fault = FaultFs::new();
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking("raft", raft_log(&path).file_system(fault.handle()))
            .unwrap();
        append(&ctx, 0..1, false).unwrap();
        let syncs_before = fault.syncs();

        // Syncs held at the gate: the first batch is written, not durable.
        fault.hold(Op::Sync);
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        ctx.append_batch_blocking(
            (1..4).map(|i| (Lsn::new(i), cmd(i))).collect(),
            false,
            move |r| {
                let _ = t.send((1, r));
            },
        )
        .unwrap();
        fault.wait_held(Op::Sync, Duration::from_secs(30));
        // Written, so readable by any reader of the file...
        assert_eq!(lsns(&path), [0, 1, 2, 3]);
        // ...and not reported durable while its sync has not finished.
        assert!(rx.try_recv().is_err(), "called back before the sync");
        assert_eq!(ctx.durable_lsn(), Some(Lsn::new(0)));
        // Appends return at once while the sync runs, and share the next one.
        for i in 4..104 {
            let t = tx.clone();
            ctx.append_batch_blocking(vec![(Lsn::new(i), cmd(i))], false, move |r| {
                let _ = t.send((i, r));
            })
            .unwrap();
        }
        assert!(rx.try_recv().is_err(), "called back before the sync");
        fault.release(Op::Sync);
        let mut done: Vec<(u64, Result<Option<Lsn>, Error>)> =
            (0..101).map(|_| rx.recv().unwrap()).collect();
        done.sort_by_key(|d| d.0);
        assert_eq!(done[0].0, 1);
        assert_eq!(*done[0].1.as_ref().unwrap(), Some(Lsn::new(3)));
        for (i, r) in &done[1..] {
            assert_eq!(*r.as_ref().unwrap(), Some(Lsn::new(*i)));
        }
        let syncs = fault.syncs() - syncs_before;
        assert!(
            syncs <= 3,
            "101 appends took {syncs} syncs: they did not share them"
        );
        assert_eq!(ctx.durable_lsn(), Some(Lsn::new(103)));
        ctx.close_blocking().unwrap();
    });
}

#[test]
fn a_failed_sync_reaches_the_callback_and_the_submitter_never_hangs() {
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let fault = FaultFs::new();
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking("raft", raft_log(&path).file_system(fault.handle()))
            .unwrap();
        append(&ctx, 0..3, false).unwrap();
        fault.fail_from_now(Op::Sync, common::EIO);
        let r = append(&ctx, 3..6, false);
        // The sync's error itself, or the poisoning it caused (a background
        // preallocation sync may fail first): either names the fdatasync.
        assert!(r.as_ref().is_err_and(|e| e.io_kind().is_some()), "{r:?}");
        // Poisoned: later appends fail at once, through the callback too.
        let r = append(&ctx, 6..7, false);
        assert!(r.is_err(), "{r:?}");
        let _ = ctx.close_blocking();
    });
}

#[test]
fn appends_across_rotation_keep_caller_lsns_in_segment_names_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "raft",
            raft_log(&path).retention_policy(RetentionPolicy::new().max_size(4096)),
        )
        .unwrap();
    for start in (0..2000).step_by(50) {
        append(&ctx, start..start + 50, false).unwrap();
    }
    ctx.close_blocking().unwrap();
    let segments = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path);
    assert!(segments.len() > 5);
    // LSN 0 in a segment's name reads as "no LSN" (the format's convention).
    assert_eq!(segments[0].first_lsn.map_or(0, |l| l.get()), 0);
    assert_eq!(segments[1].first_lsn.map(|l| l.get() > 0), Some(true));
    let from: Vec<u64> = hyperlog::read_entries_blocking::<Cmd>(
        &path,
        0,
        ReadOptions::default().from_lsn(Lsn::new(1234)),
    )
    .map(|i| i.unwrap().2.unwrap().get())
    .collect();
    assert_eq!(from, (1234..2000).collect::<Vec<_>>());
    // truncate_before works on the caller's numbers.
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", raft_log(&path))
        .unwrap();
    let removed = ctx.truncate_before_blocking(Lsn::new(1000)).unwrap();
    assert!(!removed.is_empty());
    let left = lsns(&path);
    assert!(left[0] <= 1000 && left[0] > 0, "{}", left[0]);
    assert_eq!(*left.last().unwrap(), 1999);
}
