//! Integration tests of the write-ahead-log features: durability and group
//! commit, failure handling and poisoning, crash recovery after SIGKILL, the
//! reference's files, LSNs, damage (every truncation, every bit flip),
//! offsets, recovery on open, locking and format mismatches.
//!
//! No test asserts on timing; deadlines only turn a hang into a failure.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{EIO, ENOSPC, FaultFs, MemFs, Op, with_deadline};
use futures::StreamExt;
use hyperlog::{
    Context, ContextOptions, DurabilityMode, Entry, Error, Log, LogFormat, LogLevel, Logger, Lsn,
    Message, ReadOptions, RecoveryMode, TornTail,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The entry most tests log: who logged it and its sequence number.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    level: LogLevel,
    message: Option<String>,
    producer: u32,
    seq: u64,
}

impl Entry for Job {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn job(producer: u32, seq: u64) -> Job {
    Job {
        level: LogLevel::Info,
        message: Some(format!("p{producer} s{seq}")),
        producer,
        seq,
    }
}

/// A WAL context's options: a file, LSNs on, instance 7.
fn wal_opts(path: &Path, mode: DurabilityMode, format: LogFormat) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(mode)
        .format(format)
        .enable_lsn(true)
        .instance_id(7)
}

const SECS: u64 = 60;
const WAIT: Duration = Duration::from_secs(30);

type Item<T> = (u64, Log<T>, Option<Lsn>);

/// Everything one read of a log produced.
#[derive(Debug)]
struct ReadOut<T> {
    items: Vec<Item<T>>,
    /// The first error (the reader ends after it).
    error: Option<Error>,
    /// Items yielded after the error (must be none).
    after_error: usize,
    torn: Option<TornTail>,
    skipped: Vec<Range<u64>>,
    format: Option<LogFormat>,
}

fn read_all<T: DeserializeOwned>(path: &Path, from: u64, opts: ReadOptions) -> ReadOut<T> {
    let mut it = hyperlog::read_entries_blocking::<T>(path, from, opts);
    let format = it.format();
    let mut out = ReadOut {
        items: Vec::new(),
        error: None,
        after_error: 0,
        torn: None,
        skipped: Vec::new(),
        format,
    };
    for (n, item) in it.by_ref().enumerate() {
        assert!(n < 100_000, "the reader does not end");
        match item {
            Ok(i) if out.error.is_none() => out.items.push(i),
            Ok(_) => out.after_error += 1,
            Err(e) if out.error.is_none() => out.error = Some(e),
            Err(_) => out.after_error += 1,
        }
    }
    out.torn = it.torn_tail().cloned();
    out.skipped = it.skipped().to_vec();
    out
}

/// Reads a whole log that must be intact.
fn read_ok<T: DeserializeOwned>(path: &Path, opts: ReadOptions) -> Vec<Item<T>> {
    let r = read_all::<T>(path, 0, opts);
    if let Some(e) = r.error {
        panic!("reading {} failed: {e}", path.display());
    }
    r.items
}

/// Record boundaries: every item's offset, then the file length.
fn bounds<T>(items: &[Item<T>], len: u64) -> Vec<u64> {
    items.iter().map(|i| i.0).chain([len]).collect()
}

/// The OS error number behind an error (through poisoning too).
fn errno_of(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        Error::Poisoned { first, .. } => errno_of(first),
        _ => None,
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Side files (`{path}.torn-*`) next to `path`.
fn side_files(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut v: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.torn-"))
        })
        .collect();
    v.sort();
    v
}

/// Checks the log at `path` against acknowledgements `(producer, seq, lsn)`:
/// every one present with its LSN, nothing twice, LSNs strictly increasing in
/// file order. Returns the largest LSN.
fn check_acked(path: &Path, acked: &[(u32, u64, Lsn)], opts: ReadOptions) -> (usize, Lsn) {
    let items = read_ok::<Job>(path, opts);
    let mut seen: HashMap<(u32, u64), Lsn> = HashMap::new();
    let mut prev: Option<Lsn> = None;
    for (off, log, lsn) in &items {
        let lsn = lsn.unwrap_or_else(|| panic!("the entry at {off} has no LSN"));
        if let Some(p) = prev {
            assert!(
                lsn > p,
                "LSNs do not increase in file order at {off}: {p} then {lsn}"
            );
        }
        prev = Some(lsn);
        let key = (log.entry.producer, log.entry.seq);
        assert!(
            seen.insert(key, lsn).is_none(),
            "entry {key:?} appears twice (second at offset {off})"
        );
    }
    for (p, s, lsn) in acked {
        match seen.get(&(*p, *s)) {
            Some(l) => assert_eq!(l, lsn, "entry ({p}, {s}) has another LSN on disk"),
            None => panic!(
                "acknowledged entry ({p}, {s}) lsn {lsn} is missing ({} entries on disk)",
                items.len()
            ),
        }
    }
    (items.len(), prev.unwrap_or(Lsn::new(0)))
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Durability: acknowledgements are covered by completed syncs
// ---------------------------------------------------------------------------

/// Acknowledgements `(producer, seq, lsn, synced_len_at_ack)`.
type Acks = Vec<(u32, u64, Lsn, u64)>;

/// Logs from `producers` threads (`per` entries each) and records, after each
/// acknowledgement, the synced length the file system reports. Returns the
/// acknowledgements `(producer, seq, lsn, synced_len_at_ack)`.
fn produce_and_record(ctx: &Context, fs: &FaultFs, path: &Path, producers: u32, per: u64) -> Acks {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (ctx, fs, path, acks) = (ctx.clone(), fs.clone(), path.to_path_buf(), acks.clone());
            spawn_named(&format!("producer-{p}"), move || {
                for s in 0..per {
                    let lsn = ctx
                        .log_blocking(job(p, s))
                        .unwrap_or_else(|e| panic!("log ({p}, {s}) failed: {e}"))
                        .expect("LSNs are enabled");
                    let synced = fs.synced_len(&path);
                    acks.lock().unwrap().push((p, s, lsn, synced));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(acks).unwrap().into_inner().unwrap()
}

/// Checks that each acknowledged entry ends at or before the synced length
/// observed at its acknowledgement.
fn assert_acks_covered(path: &Path, acks: &[(u32, u64, Lsn, u64)]) {
    let items = read_ok::<Job>(path, ReadOptions::default());
    assert_eq!(items.len(), acks.len(), "entries on disk vs acknowledged");
    let len = file_len(path);
    let b = bounds(&items, len);
    let mut ends: HashMap<(u32, u64), (u64, Option<Lsn>)> = HashMap::new();
    for (i, (_, log, lsn)) in items.iter().enumerate() {
        ends.insert((log.entry.producer, log.entry.seq), (b[i + 1], *lsn));
    }
    for (p, s, lsn, synced) in acks {
        let (end, disk_lsn) = ends[&(*p, *s)];
        assert_eq!(disk_lsn, Some(*lsn), "LSN of ({p}, {s})");
        assert!(
            end <= *synced,
            "entry ({p}, {s}) ends at {end} but only {synced} bytes were synced when its log() returned"
        );
    }
}

/// One `FsyncBatch` run through the fault file system, `delay` per sync:
/// `producers` threads log `per` entries each, recording the synced length
/// at every acknowledgement; `sync_thread` as given, else the default.
/// Returns the directory (kept alive), the log's path, the file system and
/// the acknowledgements.
fn group_commit_run(
    producers: u32,
    per: u64,
    delay: Duration,
    sync_thread: Option<bool>,
) -> (tempfile::TempDir, PathBuf, FaultFs, Acks) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.wal");
    let fs = FaultFs::new();
    fs.sync_delay(delay);
    let logger = Logger::new();
    let mut opts =
        wal_opts(&path, DurabilityMode::FsyncBatch, LogFormat::Binary).file_system(fs.handle());
    if let Some(on) = sync_thread {
        opts = opts.sync_thread(on);
    }
    let ctx = logger.context_with_blocking("batch", opts).unwrap();
    let acks = produce_and_record(&ctx, &fs, &path, producers, per);
    ctx.close_blocking().unwrap();
    (dir, path, fs, acks)
}

#[test]
fn fsync_batch_every_ack_is_covered_by_a_completed_sync_and_groups_form() {
    with_deadline(120, || {
        // A slow disk, so that producers pile up behind each sync.
        let (producers, per) = (16u32, 40u64);
        let (_dir, path, fs, acks) =
            group_commit_run(producers, per, Duration::from_millis(2), None);
        let entries = u64::from(producers) * per;
        let syncs = fs.syncs();
        assert!(
            syncs < entries,
            "no group commit: {syncs} syncs for {entries} entries from {producers} producers"
        );
        assert_acks_covered(&path, &acks);
    });
}

#[test]
fn fsync_batch_with_256_producers_every_ack_is_covered_and_syncs_are_shared() {
    // Many waiters, both ways of syncing: on the writer's thread, and on the
    // sync thread (the pipelined group commit: one sync runs while the next
    // groups are written). Every acknowledgement is still covered by a sync
    // that completed before it.
    with_deadline(180, || {
        for sync_thread in [false, true] {
            let (producers, per) = (256u32, 12u64);
            let (_dir, path, fs, acks) =
                group_commit_run(producers, per, Duration::from_millis(1), Some(sync_thread));
            let entries = u64::from(producers) * per;
            let syncs = fs.syncs();
            assert!(
                syncs * 4 < entries,
                "sync thread {sync_thread}: {syncs} syncs for {entries} entries from {producers} producers: groups did not form"
            );
            assert_acks_covered(&path, &acks);
            // Every sync covered at least as much as the one before it.
            let history = fs.sync_history(&path);
            assert!(history.windows(2).all(|w| w[0] <= w[1]), "{history:?}");
        }
    });
}

#[test]
fn fsync_mode_syncs_each_entry_and_every_ack_is_covered() {
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fsync.log.json");
        let fs = FaultFs::new();
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "fsync",
                wal_opts(&path, DurabilityMode::Fsync, LogFormat::Json).file_system(fs.handle()),
            )
            .unwrap();
        let acks = produce_and_record(&ctx, &fs, &path, 4, 20);
        ctx.close_blocking().unwrap();
        assert!(
            fs.syncs() >= 80,
            "Fsync mode: {} syncs for 80 entries",
            fs.syncs()
        );
        assert_acks_covered(&path, &acks);
    });
}

#[test]
fn fsync_batch_log_does_not_return_before_its_sync_completes() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.wal");
        let fs = FaultFs::new();
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "gate",
                wal_opts(&path, DurabilityMode::FsyncBatch, LogFormat::Binary)
                    .file_system(fs.handle()),
            )
            .unwrap();
        fs.hold(Op::Sync);
        let (tx, rx) = mpsc::channel();
        let c = ctx.clone();
        let h = spawn_named("producer", move || {
            let _ = tx.send(c.log_blocking(job(0, 0)));
        });
        fs.wait_held(Op::Sync, WAIT);
        // Its sync has not finished: it must not be acknowledged. (A
        // negative check: a correct logger never sends, so this cannot flake.)
        match rx.recv_timeout(Duration::from_millis(200)) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("log() returned while its fdatasync was still running: {other:?}"),
        }
        fs.release(Op::Sync);
        let lsn = rx.recv_timeout(WAIT).expect("hung").unwrap();
        assert!(lsn.is_some());
        h.join().unwrap();
        ctx.close_blocking().unwrap();
        assert_eq!(fs.synced_len(&path), file_len(&path));
        assert_eq!(read_ok::<Job>(&path, ReadOptions::default()).len(), 1);
    });
}

#[test]
fn close_syncs_what_is_pending() {
    with_deadline(SECS, || {
        for mode in [DurabilityMode::None, DurabilityMode::Flush] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pending.wal");
            let fs = FaultFs::new();
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking(
                    "pending",
                    wal_opts(&path, mode, LogFormat::Binary).file_system(fs.handle()),
                )
                .unwrap();
            for s in 0..30 {
                ctx.log_blocking(job(0, s)).unwrap();
            }
            ctx.close_blocking().unwrap();
            let len = file_len(&path);
            assert!(len > 0);
            assert_eq!(
                fs.synced_len(&path),
                len,
                "{mode:?}: close() returned without syncing everything ({} of {len} bytes synced)",
                fs.synced_len(&path)
            );
            let items = read_ok::<Job>(&path, ReadOptions::default());
            assert_eq!(items.len(), 30, "{mode:?}");
        }
    });
}

// ---------------------------------------------------------------------------
// 2. Failures: the failing group gets the error, everyone else too, the
//    context is poisoned, nothing more is written or synced, reopening
//    recovers everything acknowledged.
// ---------------------------------------------------------------------------

/// The deterministic scenario: entry A's write or sync is held at the gate,
/// eight more producers queue behind it, then the held call fails.
/// Writes `n` FsyncBatch entries through `fs` with a 16 KiB preallocation
/// step, checking the file runs ahead of the data while open; closes and
/// returns what the log holds.
fn prealloc_run(path: &Path, fs: &FaultFs, n: u64) -> Vec<Item<Job>> {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "prealloc",
            wal_opts(path, DurabilityMode::FsyncBatch, LogFormat::Binary)
                .preallocate(16 * 1024)
                .file_system(fs.handle()),
        )
        .unwrap();
    for i in 0..n {
        ctx.log_blocking(job(0, i)).unwrap();
    }
    ctx.flush_blocking().unwrap();
    let open_len = file_len(path);
    ctx.close_blocking().unwrap();
    let items = read_ok::<Job>(path, ReadOptions::default());
    assert!(
        open_len >= file_len(path),
        "the open file ({open_len} B) holds at least the data"
    );
    assert_eq!(
        bounds(&items, file_len(path)).last(),
        Some(&file_len(path)),
        "closing trims the zeros: the file ends with its last record"
    );
    items
}

/// The writer prepares the next preallocation step on another thread while
/// it goes on writing below it; nothing of it is left after close.
#[test]
fn preallocation_runs_ahead_on_another_thread_and_close_trims_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prealloc.wal");
    let fs = FaultFs::new();
    let items = prealloc_run(&path, &fs, 2_000);
    let seqs: Vec<u64> = items.iter().map(|i| i.1.entry.seq).collect();
    assert_eq!(seqs, (0..2_000).collect::<Vec<_>>());
    // ~2,000 records of ~70 B over 16 KiB steps.
    assert!(
        fs.background_allocations() >= 4,
        "{} background preallocations",
        fs.background_allocations()
    );
}

/// A background preallocation that fails (a full disk) turns preallocation
/// off; writes go on appending and nothing is lost or left behind.
#[test]
fn a_failed_background_preallocation_turns_it_off_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prealloc-fail.wal");
    let fs = FaultFs::new();
    fs.fail_background_allocation(ENOSPC);
    let items = prealloc_run(&path, &fs, 2_000);
    let seqs: Vec<u64> = items.iter().map(|i| i.1.entry.seq).collect();
    assert_eq!(seqs, (0..2_000).collect::<Vec<_>>());
    assert_eq!(
        fs.background_allocations(),
        1,
        "preallocation is off after the first failure"
    );
}

fn held_failure(op: Op, errno: i32, mode: DurabilityMode) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fail.wal");
    let fs = FaultFs::new();
    let logger = Logger::new();
    logger
        .configure(
            "fail",
            wal_opts(&path, mode, LogFormat::Binary).file_system(fs.handle()),
        )
        .unwrap();
    let ctx = logger.context_blocking("fail").unwrap();
    let mut acked = Vec::new();
    for s in 0..5 {
        let lsn = ctx.log_blocking(job(0, s)).unwrap().unwrap();
        acked.push((0, s, lsn));
    }

    fs.hold(op);
    let (tx_a, rx_a) = mpsc::channel();
    let c = ctx.clone();
    let ha = spawn_named("producer-a", move || {
        let _ = tx_a.send(c.log_blocking(job(100, 0)));
    });
    fs.wait_held(op, WAIT);
    let writes_at_hold = fs.writes();
    let syncs_at_hold = fs.syncs();

    let (tx_b, rx_b) = mpsc::channel();
    let hb: Vec<_> = (0..8u32)
        .map(|i| {
            let (c, tx) = (ctx.clone(), tx_b.clone());
            spawn_named(&format!("producer-b{i}"), move || {
                let _ = tx.send((i, c.log_blocking(job(200 + i, 0))));
            })
        })
        .collect();
    drop(tx_b);
    // Let them queue behind the held call (not an assertion: whether they
    // queued or arrive later, each must get an error).
    std::thread::sleep(Duration::from_millis(100));
    fs.fail_from_now(op, errno);
    fs.release(op);

    let a = rx_a
        .recv_timeout(WAIT)
        .expect("hung: the failing entry got no answer");
    let first = match a {
        Err(e @ Error::Io { .. }) => e,
        other => panic!("the failing group's waiter got {other:?}, not the Io error"),
    };
    let want_op = if op == Op::Sync { "fdatasync" } else { "write" };
    match &first {
        Error::Io { op, path: p, .. } => {
            assert_eq!(*op, want_op, "{first}");
            assert_eq!(p, &path, "{first}");
        }
        _ => unreachable!(),
    }
    assert_eq!(errno_of(&first), Some(errno), "{first}");

    for _ in 0..8 {
        let (i, r) = rx_b
            .recv_timeout(WAIT)
            .expect("hung: a waiter queued behind the failure got no answer");
        match r {
            Err(Error::Poisoned { first: f, .. }) => {
                assert_eq!(f.to_string(), first.to_string(), "waiter b{i}");
            }
            other => panic!("waiter b{i} queued behind the failure got {other:?}"),
        }
    }
    ha.join().unwrap();
    for h in hb {
        h.join().unwrap();
    }

    // Later calls fail fast, naming the first failure.
    match ctx.log_blocking(job(300, 0)) {
        Err(e @ Error::Poisoned { .. }) => {
            assert!(e.to_string().contains(&first.to_string()), "{e}");
            assert_eq!(errno_of(&e), Some(errno));
        }
        other => panic!("log after the failure returned {other:?}"),
    }
    let f = ctx.flush_blocking();
    assert!(f.is_err(), "flush after a failure returned {f:?}");
    let c = ctx.close_blocking();
    assert!(c.is_err(), "close after a failure returned {c:?}");

    // Nothing was written or synced after the failure.
    match op {
        Op::Sync => {
            assert_eq!(
                fs.syncs(),
                syncs_at_hold,
                "a sync was retried after fdatasync failed"
            );
            assert_eq!(
                fs.writes(),
                writes_at_hold,
                "a write followed a failed fdatasync"
            );
        }
        Op::Write => {
            assert_eq!(
                fs.writes(),
                writes_at_hold,
                "a write followed a failed write"
            );
            assert_eq!(fs.syncs(), syncs_at_hold, "a sync followed a failed write");
        }
    }
    assert_eq!(fs.failures(op), 1);

    // Reopening with a healthy disk recovers everything acknowledged.
    fs.heal();
    let ctx = logger
        .context_blocking("fail")
        .expect("reopening after the failure");
    let (n, last) = check_acked(&path, &acked, ReadOptions::default());
    let next = ctx.log_blocking(job(400, 0)).unwrap().unwrap();
    assert!(next > last, "new LSN {next} not above {last}");
    ctx.close_blocking().unwrap();
    let items = read_ok::<Job>(
        &path,
        ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
    );
    assert_eq!(items.len(), n + 1);
    assert_eq!(items.last().unwrap().1.entry.producer, 400);
}

#[test]
fn failing_sync_errors_every_waiter_poisons_and_reopen_recovers() {
    with_deadline(SECS, || {
        held_failure(Op::Sync, EIO, DurabilityMode::FsyncBatch)
    });
}

#[test]
fn failing_sync_in_fsync_mode() {
    with_deadline(SECS, || held_failure(Op::Sync, EIO, DurabilityMode::Fsync));
}

#[test]
fn failing_write_enospc_errors_every_waiter_poisons_and_reopen_recovers() {
    with_deadline(SECS, || {
        held_failure(Op::Write, ENOSPC, DurabilityMode::FsyncBatch)
    });
}

#[test]
fn failing_write_enospc_in_flush_mode() {
    with_deadline(SECS, || {
        held_failure(Op::Write, ENOSPC, DurabilityMode::Flush)
    });
}

/// Sixteen producers log until the `nth` call of `op` from now fails: every
/// producer gets an error (none hangs), the failing op is never called again,
/// and a reopen recovers every acknowledged entry.
fn failure_under_load(mode: DurabilityMode, op: Op, errno: i32, nth: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storm.log.json");
    let fs = FaultFs::new();
    let logger = Logger::new();
    logger
        .configure(
            "storm",
            wal_opts(&path, mode, LogFormat::Json).file_system(fs.handle()),
        )
        .unwrap();
    let ctx = logger.context_blocking("storm").unwrap();
    let calls_at_arm = fs.calls(op);
    fs.fail_nth(op, nth, errno);
    let handles: Vec<_> = (0..16u32)
        .map(|p| {
            let c = ctx.clone();
            spawn_named(&format!("producer-{p}"), move || {
                let mut acked = Vec::new();
                for s in 0..2_000u64 {
                    match c.log_blocking(job(p, s)) {
                        Ok(lsn) => acked.push((p, s, lsn.unwrap())),
                        Err(e) => {
                            let later = c.log_blocking(job(p, s + 1));
                            return (acked, Some(e), later.err());
                        }
                    }
                }
                (acked, None, None)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut io_errors = 0;
    for h in handles {
        let (a, err, later) = h.join().unwrap();
        acked.extend(a);
        let err = err.expect("a producer never saw the injected failure");
        match &err {
            Error::Io { .. } => io_errors += 1,
            Error::Poisoned { .. } => {}
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(errno_of(&err), Some(errno), "{err}");
        match later {
            Some(e @ Error::Poisoned { .. }) => assert_eq!(errno_of(&e), Some(errno)),
            other => panic!("a log after the failure gave {other:?}, not Poisoned"),
        }
    }
    assert!(io_errors >= 1, "nobody got the Io error itself");
    assert!(ctx.close_blocking().is_err());
    assert_eq!(
        fs.calls(op),
        calls_at_arm + nth,
        "{op:?} was called again after it failed"
    );
    assert_eq!(fs.failures(op), 1);
    fs.heal();
    let ctx = logger.context_blocking("storm").expect("reopen");
    let (_, last) = check_acked(&path, &acked, ReadOptions::default());
    let next = ctx.log_blocking(job(999, 0)).unwrap().unwrap();
    assert!(next > last);
    ctx.close_blocking().unwrap();
}

#[test]
fn sync_failure_under_load_fsync_batch() {
    with_deadline(120, || {
        failure_under_load(DurabilityMode::FsyncBatch, Op::Sync, EIO, 10)
    });
}

#[test]
fn sync_failure_under_load_fsync() {
    with_deadline(120, || {
        failure_under_load(DurabilityMode::Fsync, Op::Sync, EIO, 10)
    });
}

#[test]
fn write_failure_under_load_fsync_batch() {
    with_deadline(120, || {
        failure_under_load(DurabilityMode::FsyncBatch, Op::Write, ENOSPC, 10)
    });
}

#[test]
fn write_failure_under_load_flush() {
    with_deadline(120, || {
        failure_under_load(DurabilityMode::Flush, Op::Write, ENOSPC, 10)
    });
}

#[test]
fn short_writes_are_completed() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.wal");
        let fs = FaultFs::new();
        fs.short_writes(Some(7));
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "short",
                wal_opts(&path, DurabilityMode::FsyncBatch, LogFormat::Binary)
                    .file_system(fs.handle()),
            )
            .unwrap();
        let acks = produce_and_record(&ctx, &fs, &path, 4, 10);
        ctx.close_blocking().unwrap();
        assert_acks_covered(&path, &acks);
        let items = read_ok::<Job>(
            &path,
            ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
        );
        assert_eq!(items.len(), 40);
    });
}

#[test]
fn partial_write_then_enospc_leaves_no_garbage_after_reopen() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial.wal");
        let fs = FaultFs::new();
        let logger = Logger::new();
        logger
            .configure(
                "partial",
                wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary).file_system(fs.handle()),
            )
            .unwrap();
        let ctx = logger.context_blocking("partial").unwrap();
        let mut acked = Vec::new();
        for s in 0..3 {
            acked.push((0, s, ctx.log_blocking(job(0, s)).unwrap().unwrap()));
        }
        // The next record goes out 10 bytes at a time and the third write
        // fails: 20 bytes of it reach the file.
        fs.short_writes(Some(10));
        fs.fail_nth(Op::Write, 3, ENOSPC);
        let e = ctx.log_blocking(job(1, 0)).unwrap_err();
        assert_eq!(errno_of(&e), Some(ENOSPC), "{e}");
        assert!(ctx.close_blocking().is_err());
        fs.heal();
        let ctx = logger.context_blocking("partial").expect("reopen");
        ctx.close_blocking().unwrap();
        // Whether the writer cut the partial record back or recovery cut it
        // off, the log now holds exactly the acknowledged entries.
        let items = read_ok::<Job>(
            &path,
            ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
        );
        assert_eq!(items.len(), 3, "{items:?}");
        check_acked(&path, &acked, ReadOptions::default());
    });
}

// ---------------------------------------------------------------------------
// 3. SIGKILL: every acknowledged entry survives a kill of the process
// ---------------------------------------------------------------------------

const CHILD_PATH: &str = "HYPERLOG_WAL_TEST_PATH";
const CHILD_MODE: &str = "HYPERLOG_WAL_TEST_MODE";
const CHILD_FORMAT: &str = "HYPERLOG_WAL_TEST_FORMAT";

/// Child processes run one at a time: the machine is small.
static CHILDREN: Mutex<()> = Mutex::new(());

/// The child of the crash tests: logs from 8 threads forever, printing each
/// acknowledgement as soon as `log_blocking` returns.
#[test]
#[ignore = "child process of the SIGKILL crash tests; run by them"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_PATH) else {
        return;
    };
    let mode: DurabilityMode = std::env::var(CHILD_MODE).unwrap().parse().unwrap();
    let format: LogFormat = std::env::var(CHILD_FORMAT).unwrap().parse().unwrap();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("crash", wal_opts(Path::new(&path), mode, format))
        .expect("child: open");
    let handles: Vec<_> = (0..8u32)
        .map(|p| {
            let ctx = ctx.clone();
            spawn_named(&format!("child-producer-{p}"), move || {
                for seq in 0..1_000_000u64 {
                    let lsn = ctx
                        .log_blocking(job(p, seq))
                        .expect("child: log")
                        .expect("child: LSNs are on");
                    let line = format!("ACK {p} {seq} {}\n", lsn.get());
                    let mut out = std::io::stdout().lock();
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        std::process::exit(3);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn crash_and_recover(mode: DurabilityMode, format: LogFormat) {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(match format {
        LogFormat::Binary => "crash.wal",
        _ => "crash.log.json",
    });
    let mode_s = format!("{mode:?}");
    let format_s = match format {
        LogFormat::Binary => "binary",
        _ => "json",
    };
    let mut child = common::crash::Child::spawn(
        "crash_child",
        |cmd| {
            cmd.env(CHILD_PATH, &path)
                .env(CHILD_MODE, &mode_s)
                .env(CHILD_FORMAT, format_s);
        },
        // A line cut by the kill is not an acknowledgement (the harness
        // drops it).
        |body| {
            let v: Vec<u64> = body
                .strip_prefix("ACK ")?
                .split(' ')
                .map(|x| x.parse().unwrap())
                .collect();
            Some((v[0] as u32, v[1], Lsn::new(v[2])))
        },
    );
    let ctx = format!("{mode:?}/{format:?}");
    let mut acked = Vec::new();
    while acked.len() < 300 {
        let n = acked.len();
        acked.push(child.next(&ctx, n, || {
            format!("the child acknowledged only {n} entries")
        }));
    }
    acked.extend(child.kill(&ctx));

    // Recovery must succeed and keep every acknowledged entry.
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("crash", wal_opts(&path, mode, format))
        .unwrap_or_else(|e| panic!("{mode:?}/{format:?}: reopening after SIGKILL failed: {e}"));
    let (n, last) = check_acked(&path, &acked, ReadOptions::default());
    let next = ctx.log_blocking(job(999, 0)).unwrap().unwrap();
    assert!(
        next > last,
        "new LSN {next} is not above the last on disk {last}"
    );
    ctx.close_blocking().unwrap();
    let items = read_ok::<Job>(
        &path,
        ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
    );
    assert_eq!(items.len(), n + 1);
    let (_, log, lsn) = items.last().unwrap();
    assert_eq!((log.entry.producer, *lsn), (999, Some(next)));
}

#[test]
fn sigkill_flush_binary() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::Flush, LogFormat::Binary)
    });
}

#[test]
fn sigkill_flush_json() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::Flush, LogFormat::Json)
    });
}

#[test]
fn sigkill_fsync_binary() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::Fsync, LogFormat::Binary)
    });
}

#[test]
fn sigkill_fsync_json() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::Fsync, LogFormat::Json)
    });
}

#[test]
fn sigkill_fsync_batch_binary() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::FsyncBatch, LogFormat::Binary)
    });
}

#[test]
fn sigkill_fsync_batch_json() {
    with_deadline(300, || {
        crash_and_recover(DurabilityMode::FsyncBatch, LogFormat::Json)
    });
}

// ---------------------------------------------------------------------------
// 4. The reference's files
// ---------------------------------------------------------------------------

/// The reference's `JobCreated(Entry)` with `job_id` and `owner`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
struct RefJob {
    level: LogLevel,
    message: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    job_id: u64,
    owner: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(name)
}

fn check_reference_wal(items: &[Item<RefJob>]) {
    assert_eq!(items.len(), 3);
    for (i, (_, log, lsn)) in items.iter().enumerate() {
        assert_eq!(log.entry.job_id, i as u64);
        assert_eq!(log.entry.owner, "ops");
        assert_eq!(
            log.entry.message.as_deref(),
            Some(format!("job {i}").as_str())
        );
        assert_eq!(log.entry.level, LogLevel::Info);
        assert!(log.entry.tags.is_empty());
        assert_eq!(*lsn, None);
        assert_eq!(log.lsn, None);
        assert!(log.timestamp.as_deref().unwrap().ends_with("+00:00"));
    }
    assert_eq!(items[0].0, 0);
}

#[test]
fn reference_binary_reads_back_blocking_with_detection() {
    let r = read_all::<RefJob>(&fixture("plain.wal"), 0, ReadOptions::default());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.format, Some(LogFormat::Binary));
    check_reference_wal(&r.items);
    assert_eq!(
        hyperlog::get_last_lsn_blocking(fixture("plain.wal"), &ReadOptions::default()).unwrap(),
        None
    );
}

async fn stream_all<T: DeserializeOwned + Send + 'static>(path: PathBuf) -> Vec<Item<T>> {
    let mut s = hyperlog::read_entries::<T>(&path, 0, ReadOptions::default());
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item.unwrap());
    }
    out
}

#[test]
fn reference_binary_reads_back_as_a_stream_under_block_on() {
    with_deadline(SECS, || {
        let items = futures::executor::block_on(stream_all::<RefJob>(fixture("plain.wal")));
        check_reference_wal(&items);
    });
}

#[tokio::test]
async fn reference_binary_reads_back_as_a_stream_under_tokio() {
    let items = tokio::time::timeout(WAIT, stream_all::<RefJob>(fixture("plain.wal")))
        .await
        .expect("hung");
    check_reference_wal(&items);
}

#[test]
fn reference_json_reads_back() {
    let r = read_all::<serde_json::Value>(&fixture("plain.log.json"), 0, ReadOptions::default());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.format, Some(LogFormat::Json));
    let items = r.items;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].1.entry["message"], "hello world");
    assert_eq!(items[0].1.entry["level"], "INFO");
    assert_eq!(
        items[1].1.entry["message"],
        "unicode \u{2713} \"quoted\"\nnewline"
    );
    assert_eq!(items[1].1.entry["tags"], serde_json::json!(["a"]));
    assert_eq!(items[1].1.entry["level"], "WARN");
    assert_eq!(items[2].1.entry["job_id"], 42);
    assert_eq!(items[2].1.entry["owner"], "ops");
    for (_, log, lsn) in &items {
        assert_eq!(*lsn, None);
        assert_eq!(log.thread_id, Some(6915));
        assert_eq!(log.line_number, Some(724));
    }
    // Typed too: the base entry, and the user type for the third line.
    let msgs = read_ok::<Message>(&fixture("plain.log.json"), ReadOptions::default());
    assert_eq!(msgs[1].1.entry.level, LogLevel::Warn);
    assert!(msgs[1].1.entry.tags.contains("a"));
    let third = read_all::<RefJob>(
        &fixture("plain.log.json"),
        items[2].0,
        ReadOptions::default(),
    );
    assert!(third.error.is_none(), "{:?}", third.error);
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.items[0].1.entry.job_id, 42);
    assert_eq!(third.items[0].1.entry.level, LogLevel::Error);
}

// ---------------------------------------------------------------------------
// 5. LSNs
// ---------------------------------------------------------------------------

#[test]
fn lsns_increase_in_file_order_with_32_producers() {
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lsn.wal");
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "lsn",
                wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary),
            )
            .unwrap();
        let handles: Vec<_> = (0..32u32)
            .map(|p| {
                let c = ctx.clone();
                spawn_named(&format!("producer-{p}"), move || {
                    (0..30u64)
                        .map(|s| (p, s, c.log_blocking(job(p, s)).unwrap().unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let acked: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        ctx.close_blocking().unwrap();
        let distinct: HashSet<Lsn> = acked.iter().map(|a| a.2).collect();
        assert_eq!(
            distinct.len(),
            acked.len(),
            "log() returned a duplicate LSN"
        );
        let (n, _) = check_acked(&path, &acked, ReadOptions::default());
        assert_eq!(n, acked.len());
        for a in &acked {
            assert_eq!(a.2.instance_id(), 7);
        }
    });
}

#[test]
fn lsns_continue_above_the_last_across_close_and_reopen() {
    with_deadline(SECS, || {
        for format in [LogFormat::Binary, LogFormat::Json] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("again.log");
            let logger = Logger::new();
            logger
                .configure("again", wal_opts(&path, DurabilityMode::Flush, format))
                .unwrap();
            let ctx = logger.context_blocking("again").unwrap();
            let mut last = Lsn::new(0);
            for s in 0..10 {
                let l = ctx.log_blocking(job(0, s)).unwrap().unwrap();
                assert!(l > last);
                last = l;
            }
            ctx.close_blocking().unwrap();
            // The same logger reopens the closed context.
            let ctx = logger.context_blocking("again").unwrap();
            assert_eq!(
                ctx.recovery_report().and_then(|r| r.last_lsn),
                Some(last),
                "{format:?}"
            );
            let l = ctx.log_blocking(job(0, 10)).unwrap().unwrap();
            assert!(l > last, "{format:?}: {l} after reopen is not above {last}");
            last = l;
            ctx.close_blocking().unwrap();
            // A new logger (a new process, as far as the log knows) too.
            let other = Logger::new();
            let ctx = other
                .context_with_blocking("again", wal_opts(&path, DurabilityMode::Flush, format))
                .unwrap();
            let l = ctx.log_blocking(job(0, 11)).unwrap().unwrap();
            assert!(
                l > last,
                "{format:?}: {l} in a new logger is not above {last}"
            );
            ctx.close_blocking().unwrap();
            assert_eq!(
                hyperlog::get_last_lsn_blocking(&path, &ReadOptions::default()).unwrap(),
                Some(l)
            );
        }
    });
}

#[test]
fn two_instances_never_produce_the_same_lsn() {
    with_deadline(120, || {
        let dir = tempfile::tempdir().unwrap();
        let logger = Logger::new();
        let open = |name: &str, id: u32| {
            logger
                .context_with_blocking(
                    name,
                    wal_opts(
                        &dir.path().join(format!("{name}.wal")),
                        DurabilityMode::Flush,
                        LogFormat::Binary,
                    )
                    .instance_id(id),
                )
                .unwrap()
        };
        let a = open("a", 1);
        let b = open("b", 2);
        let handles: Vec<_> = (0..8u32)
            .map(|p| {
                let c = if p % 2 == 0 { a.clone() } else { b.clone() };
                spawn_named(&format!("producer-{p}"), move || {
                    (0..300u64)
                        .map(|s| c.log_blocking(job(p, s)).unwrap().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut from_a = HashSet::new();
        let mut from_b = HashSet::new();
        for (p, h) in handles.into_iter().enumerate() {
            let lsns = h.join().unwrap();
            let (set, id) = if p % 2 == 0 {
                (&mut from_a, 1)
            } else {
                (&mut from_b, 2)
            };
            for l in lsns {
                assert_eq!(l.instance_id(), id);
                assert!(set.insert(l), "duplicate LSN {l} within one instance");
            }
        }
        assert_eq!(from_a.intersection(&from_b).count(), 0);
        a.close_blocking().unwrap();
        b.close_blocking().unwrap();
    });
}

#[test]
fn returned_lsn_is_the_one_stored_in_the_binary_header_and_the_json_field() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        for format in [LogFormat::Binary, LogFormat::Json] {
            let path = dir.path().join(format!("stored-{format:?}.log"));
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking("s", wal_opts(&path, DurabilityMode::Flush, format))
                .unwrap();
            let returned: Vec<Lsn> = (0..20)
                .map(|s| ctx.log_blocking(job(0, s)).unwrap().unwrap())
                .collect();
            ctx.close_blocking().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let mut stored = Vec::new();
            match format {
                LogFormat::Binary => {
                    let mut off = 0;
                    while off < bytes.len() {
                        let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap())
                            as usize;
                        let lsn = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
                        let payload: serde_json::Value =
                            serde_json::from_slice(&bytes[off + 16..off + 16 + len]).unwrap();
                        // The payload's own `lsn` field agrees with the header.
                        assert_eq!(payload["lsn"].as_u64(), Some(lsn));
                        stored.push((payload["entry"]["seq"].as_u64().unwrap(), lsn));
                        off += 16 + len;
                    }
                }
                _ => {
                    for line in bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                        stored.push((
                            v["entry"]["seq"].as_u64().unwrap(),
                            v["lsn"].as_u64().expect("an integer lsn field"),
                        ));
                    }
                }
            }
            assert_eq!(stored.len(), 20, "{format:?}");
            for (seq, lsn) in stored {
                assert_eq!(returned[seq as usize].get(), lsn, "{format:?} seq {seq}");
            }
        }
    });
}

#[test]
fn instance_id_1024_is_an_error_at_configure() {
    let logger = Logger::new();
    let e = logger
        .configure(
            "x",
            wal_opts(Path::new("x.wal"), DurabilityMode::Flush, LogFormat::Binary)
                .instance_id(1024),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidOption {
                option: "instance_id",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        logger
            .configure(
                "x",
                wal_opts(Path::new("x.wal"), DurabilityMode::Flush, LogFormat::Binary)
                    .instance_id(1023)
            )
            .is_ok()
    );
}

// ---------------------------------------------------------------------------
// 6. Damage: every truncation, every bit flip
// ---------------------------------------------------------------------------

/// Writes a small log of five entries through a context and returns its
/// bytes and entries.
fn small_log(dir: &Path, format: LogFormat) -> (PathBuf, Vec<u8>, Vec<Item<Message>>) {
    let path = dir.join(match format {
        LogFormat::Binary => "small.wal",
        _ => "small.log.json",
    });
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("small", wal_opts(&path, DurabilityMode::Flush, format))
        .unwrap();
    for i in 0..5 {
        ctx.log_blocking(Message::info(format!("e{i}"))).unwrap();
    }
    ctx.close_blocking().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let items = read_ok::<Message>(
        &path,
        ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
    );
    assert_eq!(items.len(), 5);
    (path, bytes, items)
}

/// Collects failures of an exhaustive loop and reports the first few.
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok && self.0.len() < 1000 {
            self.0.push(what());
        }
    }
    fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} failures, first ones:\n{}",
            self.0.len(),
            self.0
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn same_items<T: PartialEq>(a: &[Item<T>], b: &[Item<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn is_corrupt_at(e: &Option<Error>, offset: u64) -> bool {
    matches!(e, Some(Error::Corrupt { offset: o, .. }) if *o == offset)
}

/// Reading every truncation of a small log, in memory.
fn truncation_reads(format: LogFormat, detect: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, orig) = small_log(dir.path(), format);
    let b = bounds(&orig, bytes.len() as u64);
    let mem = MemFs::new();
    let p = PathBuf::from("/mem/t.log");
    let mut f = Failures(Vec::new());
    for cut in 0..=bytes.len() {
        mem.put(&p, &bytes[..cut]);
        let c = cut as u64;
        let complete = b[1..].iter().filter(|&&e| e <= c).count();
        let prefix = &orig[..complete];
        let base = if detect {
            ReadOptions::new()
        } else {
            ReadOptions::new().format(format)
        }
        .file_system(mem.handle());

        let r = read_all::<Message>(&p, 0, base.clone());
        f.check(
            r.error.is_none() && r.after_error == 0 && same_items(&r.items, prefix),
            || {
                format!(
                    "cut {cut}: TolerateTail gave {} entries (want {complete}), error {:?}",
                    r.items.len(),
                    r.error
                )
            },
        );

        let r = read_all::<Message>(
            &p,
            0,
            base.clone().recovery(RecoveryMode::AbsoluteConsistency),
        );
        let on_boundary = b.contains(&c);
        let ok = same_items(&r.items, prefix)
            && r.after_error == 0
            && if on_boundary {
                r.error.is_none()
            } else {
                is_corrupt_at(&r.error, b[complete])
            };
        f.check(ok, || {
            format!(
                "cut {cut} (boundary: {on_boundary}): AbsoluteConsistency gave {} entries, error {:?}",
                r.items.len(),
                r.error
            )
        });

        let r = read_all::<Message>(&p, 0, base.recovery(RecoveryMode::SkipCorrupted));
        f.check(r.error.is_none() && same_items(&r.items, prefix), || {
            format!(
                "cut {cut}: SkipCorrupted gave {} entries, error {:?}",
                r.items.len(),
                r.error
            )
        });
    }
    f.assert_none(&format!("truncated {format:?} log (detect: {detect})"));
}

#[test]
fn every_truncation_of_a_binary_log_reads_the_complete_prefix() {
    with_deadline(120, || truncation_reads(LogFormat::Binary, false));
}

#[test]
fn every_truncation_of_a_binary_log_reads_the_complete_prefix_with_detection() {
    with_deadline(120, || truncation_reads(LogFormat::Binary, true));
}

#[test]
fn every_truncation_of_a_json_log_reads_the_complete_prefix() {
    with_deadline(120, || {
        truncation_reads(LogFormat::Json, false);
        truncation_reads(LogFormat::Json, true);
    });
}

/// Opening a context on every truncation of a small log: succeeds, cuts the
/// torn tail into a side file holding exactly the cut bytes, and appends.
fn truncation_opens(format: LogFormat) {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, orig) = small_log(dir.path(), format);
    let b = bounds(&orig, bytes.len() as u64);
    let last_lsn = |n: usize| if n == 0 { None } else { orig[n - 1].2 };
    let mut f = Failures(Vec::new());
    for cut in 0..=bytes.len() {
        let c = cut as u64;
        let complete = b[1..].iter().filter(|&&e| e <= c).count();
        let good = b[complete];
        let sub = dir.path().join(format!("cut{cut}"));
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join(match format {
            LogFormat::Binary => "t.wal",
            _ => "t.log.json",
        });
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let logger = Logger::new();
        let ctx = match logger
            .context_with_blocking("t", wal_opts(&path, DurabilityMode::Flush, format))
        {
            Ok(c) => c,
            Err(e) => {
                f.check(false, || format!("cut {cut}: open failed: {e}"));
                continue;
            }
        };
        let report = ctx.recovery_report().expect("a file context has a report");
        f.check(report.bytes_cut == c - good, || {
            format!(
                "cut {cut}: bytes_cut {} (want {})",
                report.bytes_cut,
                c - good
            )
        });
        f.check(report.last_lsn == last_lsn(complete), || {
            format!("cut {cut}: last_lsn {:?}", report.last_lsn)
        });
        let sides = side_files(&path);
        if c == good {
            f.check(sides.is_empty() && report.saved_to.is_none(), || {
                format!("cut {cut} on a boundary: side files {sides:?}")
            });
        } else {
            let want = sub.join(format!(
                "{}.torn-{good}",
                path.file_name().unwrap().to_string_lossy()
            ));
            let saved = report.saved_to.clone();
            f.check(
                sides == [want.clone()] && saved == Some(want.clone()),
                || format!("cut {cut}: side files {sides:?}, report {saved:?}"),
            );
            if let Ok(kept) = std::fs::read(&want) {
                f.check(kept == bytes[good as usize..cut], || {
                    format!("cut {cut}: the side file does not hold the cut bytes")
                });
            }
        }
        f.check(file_len(&path) == good, || {
            format!(
                "cut {cut}: length after open {} (want {good})",
                file_len(&path)
            )
        });
        let new = ctx.log_blocking(Message::info("after"));
        let close = ctx.close_blocking();
        match (new, close) {
            (Ok(Some(lsn)), Ok(())) => {
                f.check(last_lsn(complete).is_none_or(|l| lsn > l), || {
                    format!("cut {cut}: new LSN {lsn} not above the last")
                });
                let r = read_all::<Message>(
                    &path,
                    0,
                    ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
                );
                let ok = r.error.is_none()
                    && r.items.len() == complete + 1
                    && same_items(&r.items[..complete], &orig[..complete])
                    && r.items[complete].1.entry.message.as_deref() == Some("after")
                    && r.items[complete].2 == Some(lsn);
                f.check(ok, || {
                    format!(
                        "cut {cut}: after append read {} entries, error {:?}",
                        r.items.len(),
                        r.error
                    )
                });
            }
            (n, c) => f.check(false, || format!("cut {cut}: append {n:?}, close {c:?}")),
        }
        let _ = std::fs::remove_dir_all(&sub);
    }
    f.assert_none(&format!("opening truncated {format:?} logs"));
}

#[test]
fn every_truncation_of_a_binary_log_opens_cuts_the_tail_and_appends() {
    with_deadline(300, || truncation_opens(LogFormat::Binary));
}

#[test]
fn every_truncation_of_a_json_log_opens_cuts_the_tail_and_appends() {
    with_deadline(300, || truncation_opens(LogFormat::Json));
}

#[test]
fn every_bit_flip_of_a_binary_log_is_detected() {
    with_deadline(300, || {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes, orig) = small_log(dir.path(), LogFormat::Binary);
        let b = bounds(&orig, bytes.len() as u64);
        let by_offset: HashMap<u64, &Item<Message>> = orig.iter().map(|i| (i.0, i)).collect();
        let mem = MemFs::new();
        let p = PathBuf::from("/mem/flip.wal");
        let mut f = Failures(Vec::new());
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            mem.put(&p, &bad);
            let at = (bit / 8) as u64;
            let k = b[1..].iter().position(|&e| at < e).unwrap();
            let last = k == orig.len() - 1;
            let explicit = ReadOptions::new()
                .format(LogFormat::Binary)
                .file_system(mem.handle());
            let detect = ReadOptions::new().file_system(mem.handle());
            let others: Vec<Item<Message>> = orig
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, x)| x.clone())
                .collect();

            // Never a wrong entry, whatever the mode, with or without
            // format detection.
            for (name, opts) in [
                ("tolerate", explicit.clone()),
                (
                    "absolute",
                    explicit.clone().recovery(RecoveryMode::AbsoluteConsistency),
                ),
                (
                    "skip",
                    explicit.clone().recovery(RecoveryMode::SkipCorrupted),
                ),
                ("tolerate/detect", detect.clone()),
                (
                    "skip/detect",
                    detect.clone().recovery(RecoveryMode::SkipCorrupted),
                ),
            ] {
                let r = read_all::<Message>(&p, 0, opts);
                for item in &r.items {
                    f.check(by_offset.get(&item.0) == Some(&item), || {
                        format!("bit {bit} ({name}): a wrong entry at offset {}", item.0)
                    });
                }
            }

            let r = read_all::<Message>(&p, 0, explicit.clone());
            if last {
                f.check(
                    r.error.is_none()
                        && same_items(&r.items, &orig[..k])
                        && r.torn.as_ref().map(|t| t.offset) == Some(b[k]),
                    || {
                        format!(
                            "bit {bit} in the last record: TolerateTail gave {} entries, error {:?}, torn {:?}",
                            r.items.len(),
                            r.error,
                            r.torn
                        )
                    },
                );
            } else {
                f.check(
                    is_corrupt_at(&r.error, b[k]) && same_items(&r.items, &orig[..k]),
                    || {
                        format!(
                            "bit {bit} in record {k} (at {}): TolerateTail gave {} entries, error {:?}",
                            b[k],
                            r.items.len(),
                            r.error
                        )
                    },
                );
            }

            let r = read_all::<Message>(
                &p,
                0,
                explicit.clone().recovery(RecoveryMode::AbsoluteConsistency),
            );
            f.check(
                is_corrupt_at(&r.error, b[k]) && same_items(&r.items, &orig[..k]),
                || {
                    format!(
                        "bit {bit} in record {k}: AbsoluteConsistency gave {} entries, error {:?}",
                        r.items.len(),
                        r.error
                    )
                },
            );

            let r = read_all::<Message>(&p, 0, explicit.recovery(RecoveryMode::SkipCorrupted));
            f.check(
                r.error.is_none() && same_items(&r.items, &others) && r.skipped == std::slice::from_ref(&(b[k]..b[k + 1])),
                || {
                    format!(
                        "bit {bit} in record {k}: SkipCorrupted gave {} entries, error {:?}, skipped {:?} (want {:?})",
                        r.items.len(),
                        r.error,
                        r.skipped,
                        b[k]..b[k + 1]
                    )
                },
            );
        }
        f.assert_none("bit flips");
    });
}

#[test]
fn a_garbage_json_line_in_the_middle_is_corruption_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, orig) = small_log(dir.path(), LogFormat::Json);
    let b = bounds(&orig, bytes.len() as u64);
    let garbage = b"this is not json\n";
    let at = b[2] as usize;
    let mut bad = bytes[..at].to_vec();
    bad.extend_from_slice(garbage);
    bad.extend_from_slice(&bytes[at..]);
    let path = dir.path().join("garbage.log.json");
    std::fs::write(&path, &bad).unwrap();

    let r = read_all::<Message>(&path, 0, ReadOptions::default());
    assert!(same_items(&r.items, &orig[..2]), "{:?}", r.items);
    assert!(is_corrupt_at(&r.error, b[2]), "{:?}", r.error);
    assert_eq!(r.after_error, 0);

    let r = read_all::<Message>(
        &path,
        0,
        ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
    );
    assert!(is_corrupt_at(&r.error, b[2]), "{:?}", r.error);

    let r = read_all::<Message>(
        &path,
        0,
        ReadOptions::new().recovery(RecoveryMode::SkipCorrupted),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    let entries: Vec<&Message> = r.items.iter().map(|i| &i.1.entry).collect();
    let want: Vec<&Message> = orig.iter().map(|i| &i.1.entry).collect();
    assert_eq!(entries, want);
    let g = garbage.len() as u64;
    assert_eq!(r.skipped, std::slice::from_ref(&(b[2]..b[2] + g)));
    assert_eq!(r.items[2].0, b[2] + g);
}

#[test]
fn a_length_field_of_u32_max_is_damage_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, orig) = small_log(dir.path(), LogFormat::Binary);
    let b = bounds(&orig, bytes.len() as u64);
    for k in 0..orig.len() {
        let mut bad = bytes.clone();
        let at = b[k] as usize;
        bad[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let path = dir.path().join(format!("huge{k}.wal"));
        std::fs::write(&path, &bad).unwrap();
        for opts in [
            ReadOptions::new().recovery(RecoveryMode::AbsoluteConsistency),
            ReadOptions::new()
                .format(LogFormat::Binary)
                .recovery(RecoveryMode::AbsoluteConsistency),
        ] {
            let r = read_all::<Message>(&path, 0, opts);
            assert!(is_corrupt_at(&r.error, b[k]), "record {k}: {:?}", r.error);
            assert!(same_items(&r.items, &orig[..k]));
        }
        let r = read_all::<Message>(&path, 0, ReadOptions::default());
        if k + 1 < orig.len() {
            assert!(is_corrupt_at(&r.error, b[k]), "record {k}: {:?}", r.error);
        } else {
            assert!(r.error.is_none() && r.items.len() == k);
        }
    }
}

#[test]
fn an_entry_larger_than_max_record_size_is_refused_and_nothing_is_written() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        for (format, mode) in [
            (LogFormat::Binary, DurabilityMode::FsyncBatch),
            (LogFormat::Json, DurabilityMode::Flush),
        ] {
            let path = dir.path().join(format!("max-{format:?}.log"));
            let fs = FaultFs::new();
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking(
                    "max",
                    wal_opts(&path, mode, format)
                        .max_record_size(256)
                        .file_system(fs.handle()),
                )
                .unwrap();
            let big = Message::info("x".repeat(1000));
            match ctx.log_blocking(big) {
                Err(Error::RecordTooLarge { max: 256, len, .. }) => assert!(len > 1000),
                other => panic!("{format:?}: logging 1000 bytes gave {other:?}"),
            }
            assert_eq!(fs.writes(), 0, "{format:?}: something was written");
            // The context is not poisoned by it.
            let lsn = ctx.log_blocking(Message::info("small")).unwrap();
            assert!(lsn.is_some());
            ctx.close_blocking().unwrap();
            let items = read_ok::<Message>(&path, ReadOptions::default());
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].1.entry.message.as_deref(), Some("small"));
        }
    });
}

// ---------------------------------------------------------------------------
// 7. Offsets, from_lsn, last LSN
// ---------------------------------------------------------------------------

#[test]
fn from_offset_at_record_starts_and_mid_record() {
    let dir = tempfile::tempdir().unwrap();
    for format in [LogFormat::Binary, LogFormat::Json] {
        let (path, bytes, orig) = small_log(dir.path(), format);
        let b = bounds(&orig, bytes.len() as u64);
        for k in 0..=orig.len() {
            let r = read_all::<Message>(&path, b[k], ReadOptions::default());
            assert!(r.error.is_none(), "{format:?} from {}: {:?}", b[k], r.error);
            assert!(same_items(&r.items, &orig[k..]), "{format:?} from {}", b[k]);
        }
        for k in 0..orig.len() {
            for delta in [1, 5, 16, 20] {
                let off = b[k] + delta;
                if off >= b[k + 1] {
                    continue;
                }
                let r = read_all::<Message>(&path, off, ReadOptions::default());
                assert!(r.items.is_empty(), "{format:?} from {off}");
                assert!(
                    matches!(r.error, Some(Error::NotARecordBoundary { offset, .. }) if offset == off),
                    "{format:?} from {off}: {:?}",
                    r.error
                );
            }
        }
        let past = bytes.len() as u64 + 10;
        let r = read_all::<Message>(&path, past, ReadOptions::default());
        assert!(
            matches!(r.error, Some(Error::NotARecordBoundary { .. })),
            "{:?}",
            r.error
        );
    }
}

#[test]
fn from_lsn_starts_at_the_first_entry_at_or_above() {
    let dir = tempfile::tempdir().unwrap();
    for format in [LogFormat::Binary, LogFormat::Json] {
        let (path, _, orig) = small_log(dir.path(), format);
        let lsns: Vec<Lsn> = orig.iter().map(|i| i.2.unwrap()).collect();
        for k in 0..orig.len() {
            let r = read_ok::<Message>(&path, ReadOptions::new().from_lsn(lsns[k]));
            assert!(same_items(&r, &orig[k..]), "{format:?} from lsn #{k}");
            let r = read_ok::<Message>(
                &path,
                ReadOptions::new().from_lsn(Lsn::new(lsns[k].get() + 1)),
            );
            assert!(
                same_items(&r, &orig[k + 1..]),
                "{format:?} from lsn #{k} + 1"
            );
        }
        assert!(same_items(
            &read_ok::<Message>(&path, ReadOptions::new().from_lsn(Lsn::new(0))),
            &orig
        ));
    }
}

#[test]
fn get_last_lsn_finds_the_last_lsn_also_with_a_torn_tail() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        for format in [LogFormat::Binary, LogFormat::Json] {
            let (path, bytes, orig) = small_log(dir.path(), format);
            let last = orig.last().unwrap().2;
            assert!(last.is_some());
            assert_eq!(
                hyperlog::get_last_lsn_blocking(&path, &ReadOptions::default()).unwrap(),
                last
            );
            assert_eq!(
                futures::executor::block_on(hyperlog::get_last_lsn(&path)).unwrap(),
                last
            );
            // A torn tail: the first 30 bytes of a record.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&bytes[..30]).unwrap();
            drop(f);
            assert_eq!(
                hyperlog::get_last_lsn_blocking(&path, &ReadOptions::default()).unwrap(),
                last,
                "{format:?} with a torn tail"
            );
            assert_eq!(
                futures::executor::block_on(hyperlog::get_last_lsn(&path)).unwrap(),
                last,
                "{format:?} with a torn tail (async)"
            );
        }
    });
}

// ---------------------------------------------------------------------------
// 8. Recovery on open, and the lock
// ---------------------------------------------------------------------------

#[test]
fn opening_refuses_corruption_in_the_middle_and_skip_corrupted_opens_it() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        for format in [LogFormat::Binary, LogFormat::Json] {
            let sub = dir.path().join(format!("{format:?}"));
            std::fs::create_dir(&sub).unwrap();
            let (path, bytes, orig) = small_log(&sub, format);
            let b = bounds(&orig, bytes.len() as u64);
            let mut bad = bytes.clone();
            // Damage record 1 in the middle of its payload.
            let at = b[1] as usize + 30;
            bad[at] = if format == LogFormat::Json {
                b'\x01'
            } else {
                bad[at] ^ 0x20
            };
            std::fs::write(&path, &bad).unwrap();

            let logger = Logger::new();
            let e = logger
                .context_with_blocking("mid", wal_opts(&path, DurabilityMode::Flush, format))
                .unwrap_err();
            assert!(
                matches!(e, Error::Corrupt { offset, .. } if offset == b[1]),
                "{format:?}: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&b[1].to_string()), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bad,
                "a refused open changed the file"
            );
            assert!(side_files(&path).is_empty());

            let e = logger
                .context_with_blocking(
                    "abs",
                    wal_opts(&path, DurabilityMode::Flush, format)
                        .recovery(RecoveryMode::AbsoluteConsistency),
                )
                .unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "{e}");

            let ctx = logger
                .context_with_blocking(
                    "skip",
                    wal_opts(&path, DurabilityMode::Flush, format)
                        .recovery(RecoveryMode::SkipCorrupted),
                )
                .expect("SkipCorrupted opens a log with damage in the middle");
            let report = ctx.recovery_report().unwrap();
            assert_eq!(
                report.skipped,
                std::slice::from_ref(&(b[1]..b[2])),
                "{format:?}"
            );
            let lsn = ctx.log_blocking(Message::info("after")).unwrap().unwrap();
            assert!(lsn > orig.last().unwrap().2.unwrap());
            ctx.close_blocking().unwrap();
            let r = read_all::<Message>(
                &path,
                0,
                ReadOptions::new().recovery(RecoveryMode::SkipCorrupted),
            );
            assert!(r.error.is_none(), "{:?}", r.error);
            assert_eq!(r.items.len(), 5);
            assert_eq!(r.skipped, std::slice::from_ref(&(b[1]..b[2])));
            assert_eq!(r.items[4].1.entry.message.as_deref(), Some("after"));
        }
    });
}

#[test]
fn opening_with_absolute_consistency_refuses_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes, _) = small_log(dir.path(), LogFormat::Binary);
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let logger = Logger::new();
    let e = logger
        .context_with_blocking(
            "abs",
            wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary)
                .recovery(RecoveryMode::AbsoluteConsistency),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_eq!(file_len(&path), bytes.len() as u64 - 3);
}

#[test]
fn a_second_writer_in_the_same_process_is_locked_out() {
    with_deadline(SECS, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.wal");
        let opts = || wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary);
        let logger = Logger::new();
        let first = logger.context_with_blocking("first", opts()).unwrap();
        first.log_blocking(Message::info("one")).unwrap();
        // Another context of the same logger, not nested.
        match logger.context_with_blocking("second", opts()) {
            Err(Error::Locked { path: p }) => assert_eq!(p, path),
            other => panic!("a second context on the same file: {other:?}"),
        }
        // Another logger.
        match Logger::new().context_with_blocking("third", opts()) {
            Err(Error::Locked { .. }) => {}
            other => panic!("a second logger on the same file: {other:?}"),
        }
        // The refusals did not disturb the holder.
        first.log_blocking(Message::info("two")).unwrap();
        first.close_blocking().unwrap();
        let again = Logger::new()
            .context_with_blocking("third", opts())
            .unwrap();
        again.log_blocking(Message::info("three")).unwrap();
        again.close_blocking().unwrap();
        assert_eq!(read_ok::<Message>(&path, ReadOptions::default()).len(), 3);
    });
}

const LOCK_CHILD_PATH: &str = "HYPERLOG_WAL_TEST_LOCK_PATH";

/// The child of the lock test: tries to open the log and says what happened.
#[test]
#[ignore = "child process of the cross-process lock test; run by it"]
fn lock_child() {
    let Ok(path) = std::env::var(LOCK_CHILD_PATH) else {
        return;
    };
    let logger = Logger::new();
    let res = logger.context_with_blocking(
        "child",
        wal_opts(Path::new(&path), DurabilityMode::Flush, LogFormat::Binary),
    );
    let line = match res {
        Err(Error::Locked { .. }) => "LOCKRESULT locked".to_string(),
        Ok(ctx) => {
            ctx.log_blocking(Message::info("from the child")).unwrap();
            ctx.close_blocking().unwrap();
            "LOCKRESULT opened".to_string()
        }
        Err(e) => format!("LOCKRESULT error {e}"),
    };
    println!("{line}");
}

fn run_lock_child(path: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--nocapture", "--ignored"])
        .env(LOCK_CHILD_PATH, path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("LOCKRESULT "))
        .unwrap_or_else(|| panic!("the child said nothing: {stdout}"))
        .to_string()
}

#[test]
fn a_second_process_is_locked_out() {
    with_deadline(120, || {
        let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.wal");
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "parent",
                wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary),
            )
            .unwrap();
        ctx.log_blocking(Message::info("from the parent")).unwrap();
        assert_eq!(run_lock_child(&path), "locked");
        ctx.close_blocking().unwrap();
        assert_eq!(run_lock_child(&path), "opened");
        assert_eq!(read_ok::<Message>(&path, ReadOptions::default()).len(), 2);
    });
}

// ---------------------------------------------------------------------------
// 9. Format mismatch
// ---------------------------------------------------------------------------

#[test]
fn opening_a_file_of_the_other_format_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (written, configured) in [
        (LogFormat::Binary, LogFormat::Json),
        (LogFormat::Json, LogFormat::Binary),
    ] {
        let sub = dir.path().join(format!("{written:?}"));
        std::fs::create_dir(&sub).unwrap();
        let (path, bytes, _) = small_log(&sub, written);
        let e = Logger::new()
            .context_with_blocking("other", wal_opts(&path, DurabilityMode::Flush, configured))
            .unwrap_err();
        let msg = e.to_string();
        let lower = msg.to_lowercase();
        assert!(
            lower.contains("binary") && lower.contains("json"),
            "the error does not name both formats: {msg}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            !matches!(e, Error::Corrupt { .. }),
            "a format mismatch is not damage: {msg}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the refused open changed the file"
        );
        assert!(side_files(&path).is_empty());
    }
}

/// `replay_blocking` as `read_entries_blocking` without the envelope:
/// the same offsets, entries and LSNs, or the same error at the same offset,
/// and the same torn tail and skipped ranges, in every recovery mode.
fn replay_matches_entries<T: DeserializeOwned + PartialEq + std::fmt::Debug>(path: &Path) -> usize {
    let mut n = 0;
    for mode in [
        RecoveryMode::TolerateTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::SkipCorrupted,
    ] {
        let opts = ReadOptions::new().recovery(mode);
        let mut entries_it = hyperlog::read_entries_blocking::<T>(path, 0, opts.clone());
        let entries: Vec<_> = entries_it
            .by_ref()
            .map(|r| r.map(|(offset, log, lsn)| (offset, log.entry, lsn)))
            .collect();
        let mut values_it = hyperlog::replay_blocking::<T>(path, 0, opts);
        let values: Vec<_> = values_it.by_ref().collect();
        let at = format!("{} in {mode:?}", path.display());
        assert_eq!(values.len(), entries.len(), "{at}");
        for (v, e) in values.iter().zip(&entries) {
            match (v, e) {
                (Ok(v), Ok(e)) => assert_eq!(v, e, "{at}"),
                (Err(v), Err(e)) => assert_eq!(v.to_string(), e.to_string(), "{at}"),
                _ => panic!("{at}: {v:?} vs {e:?}"),
            }
        }
        assert_eq!(values_it.torn_tail(), entries_it.torn_tail(), "{at}");
        assert_eq!(values_it.skipped(), entries_it.skipped(), "{at}");
        n = values.len();
    }
    n
}

/// Opens a context with `opts`, lets `f` log into it, and closes it.
fn with_context(opts: ContextOptions, f: impl FnOnce(&Context)) {
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("wal", opts).unwrap();
    f(&ctx);
    logger.close_blocking().unwrap();
}

#[test]
fn replay_yields_the_entries_and_lsns_read_entries_yields() {
    let dir = tempfile::tempdir().unwrap();
    for (format, lsns) in [
        (LogFormat::Binary, true),
        (LogFormat::Binary, false),
        (LogFormat::Json, true),
        (LogFormat::Json, false),
    ] {
        let path = dir.path().join(format!(
            "v-{lsns}.{}",
            if format == LogFormat::Binary {
                "wal"
            } else {
                "log.json"
            }
        ));
        let opts = wal_opts(&path, DurabilityMode::Flush, format).enable_lsn(lsns);
        with_context(opts, |ctx| {
            for seq in 0..50 {
                // Quotes and a newline: the entry's end is found by parsing it.
                let mut j = job(1, seq);
                j.message = Some(format!("say \"{seq}\"\n}}"));
                ctx.log_blocking(j).unwrap();
            }
        });
        let items = read_ok::<Job>(&path, ReadOptions::default());
        assert_eq!(replay_matches_entries::<Job>(&path), 50);
        assert_eq!(items.iter().all(|i| i.2.is_some()), lsns);
        // Damage in the middle and a torn tail: the same errors, skips and
        // torn tail (read ahead on another thread for the binary log).
        let len = file_len(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(len / 2) as usize] ^= 0x55;
        bytes.truncate(len as usize - 7);
        std::fs::write(&path, &bytes).unwrap();
        let n = replay_matches_entries::<Job>(&path);
        assert!((40..50).contains(&n), "{n} items from the damaged log");
    }
    // Files of the Python reference (LSN 0 in the binary headers).
    assert_eq!(replay_matches_entries::<RefJob>(&fixture("plain.wal")), 3);
    // Many segments, several read-ahead batches each.
    let path = dir.path().join("segments.wal");
    let opts = wal_opts(&path, DurabilityMode::None, LogFormat::Binary)
        .retention_policy(hyperlog::RetentionPolicy::new().max_size(512 * 1024));
    with_context(opts, |ctx| {
        for seq in 0..6_000 {
            ctx.log_blocking(job(2, seq)).unwrap();
        }
    });
    assert!(hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len() >= 2);
    assert_eq!(replay_matches_entries::<Job>(&path), 6_000);
    // The async form yields the same.
    let streamed: Vec<_> = futures::executor::block_on(
        hyperlog::replay::<Job>(&path, 0, ReadOptions::default()).collect::<Vec<_>>(),
    );
    let blocking: Vec<_> = hyperlog::replay_blocking::<Job>(&path, 0, ReadOptions::default())
        .map(Result::unwrap)
        .collect();
    assert_eq!(streamed.len(), 6_000);
    assert!(streamed.into_iter().map(Result::unwrap).eq(blocking));
    // An entry that is not a `Job`: the same decode error, at the same offset.
    let path = dir.path().join("mixed.wal");
    with_context(
        wal_opts(&path, DurabilityMode::Flush, LogFormat::Binary),
        |ctx| {
            ctx.log_blocking(job(1, 0)).unwrap();
            ctx.log_blocking(Message::info("not a job")).unwrap();
            ctx.log_blocking(job(1, 2)).unwrap();
        },
    );
    assert_eq!(replay_matches_entries::<Job>(&path), 2);
}
