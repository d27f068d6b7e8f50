//! `Context::truncate_after`: a durable suffix cut, across segments, ordered
//! behind queued appends; and under simulated power loss at every step, the
//! log is always a prefix of what was appended, with every acknowledged
//! entry that was not cut, and nothing a completed cut removed.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use hyperlog::fs::SimFs;
use hyperlog::retention::RetentionPolicy;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    term: u64,
    i: u64,
}
impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn cmd(term: u64, i: u64) -> Cmd {
    Cmd {
        level: LogLevel::Info,
        message: Some("z".repeat((i % 5) as usize * 20)),
        term,
        i,
    }
}

fn opts(path: &Path, segment: u64) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .caller_lsns(true)
        .compact(true)
        .retention_policy(RetentionPolicy::new().max_size(segment))
}

fn read(path: &Path, options: ReadOptions) -> Vec<(u64, Cmd)> {
    hyperlog::read_entries_blocking::<Cmd>(path, 0, options)
        .map(|i| {
            let (_, log, lsn) = i.unwrap();
            (lsn.unwrap().get(), log.entry)
        })
        .collect()
}

fn append(ctx: &hyperlog::Context, term: u64, range: std::ops::Range<u64>) {
    let (tx, rx) = mpsc::channel();
    ctx.append_batch_blocking(
        range.map(|i| (Lsn::new(i), cmd(term, i))).collect(),
        false,
        move |r| {
            let _ = tx.send(r);
        },
    )
    .unwrap();
    rx.recv().unwrap().unwrap();
}

#[test]
fn a_cut_across_segments_is_durable_and_the_old_suffix_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", opts(&path, 4096))
        .unwrap();
    for start in (0..2000).step_by(100) {
        append(&ctx, 1, start..start + 100);
    }
    let before = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len();
    assert!(before > 10);
    ctx.truncate_after_blocking(Some(Lsn::new(1234))).unwrap();
    assert_eq!(ctx.durable_lsn(), Some(Lsn::new(1234)));
    let after = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len();
    assert!(after < before, "{after} segments of {before} remain");
    // Cutting at or beyond the end changes nothing.
    ctx.truncate_after_blocking(Some(Lsn::new(5000))).unwrap();
    ctx.truncate_after_blocking(Some(Lsn::new(1234))).unwrap();
    let got = read(&path, ReadOptions::default());
    assert_eq!(got.len(), 1235);
    assert!(
        got.iter()
            .enumerate()
            .all(|(n, (l, c))| *l == n as u64 && c.term == 1)
    );
    // The next entry follows the cut; a new term's entries replace the old.
    append(&ctx, 2, 1235..1500);
    ctx.close_blocking().unwrap();

    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", opts(&path, 4096))
        .unwrap();
    append(&ctx, 2, 1500..1600);
    ctx.close_blocking().unwrap();
    let got = read(&path, ReadOptions::default());
    assert_eq!(got.len(), 1600);
    for (n, (l, c)) in got.iter().enumerate() {
        assert_eq!(*l, n as u64);
        assert_eq!(c.term, if n <= 1234 { 1 } else { 2 }, "entry {n}");
    }
    // Seeking through the rewritten indexes lands right.
    let from = read(&path, ReadOptions::default().from_lsn(Lsn::new(1200)));
    assert_eq!(from.first().map(|e| e.0), Some(1200));
    assert_eq!(from.len(), 400);
    // verify-level scan of every segment is clean.
    for seg in hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path) {
        hyperlog::scan_log(
            &hyperlog::fs::StdFs,
            &seg.path,
            None,
            hyperlog::format::DEFAULT_MAX_RECORD_SIZE,
            hyperlog::RecoveryMode::AbsoluteConsistency,
        )
        .unwrap();
    }
}

#[test]
fn a_cut_is_ordered_behind_appends_still_waiting_for_their_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("raft", opts(&path, 1 << 20))
        .unwrap();
    // Queued, not waited for: the cut must come after them.
    let (tx, rx) = mpsc::channel();
    for start in (0..500).step_by(50) {
        let tx = tx.clone();
        ctx.append_batch_blocking(
            (start..start + 50)
                .map(|i| (Lsn::new(i), cmd(1, i)))
                .collect(),
            false,
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
    }
    ctx.truncate_after_blocking(Some(Lsn::new(99))).unwrap();
    for _ in 0..10 {
        rx.recv().unwrap().unwrap();
    }
    assert_eq!(read(&path, ReadOptions::default()).len(), 100);
    // Everything, then an empty log that may start anywhere again.
    ctx.truncate_after_blocking(None).unwrap();
    assert!(read(&path, ReadOptions::default()).is_empty());
    assert_eq!(ctx.durable_lsn(), None);
    append(&ctx, 3, 40..45);
    ctx.close_blocking().unwrap();
    let got: Vec<u64> = read(&path, ReadOptions::default())
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(got, [40, 41, 42, 43, 44]);
}

/// What one seeded run of appends and cuts acknowledged before the cut.
#[derive(Default, Clone)]
struct Acked {
    /// The entry each LSN holds, as far as acknowledged operations say.
    entries: Vec<Option<Cmd>>,
    /// Entries above this were cut by a completed truncate_after, and none
    /// was appended there since.
    cut_to: Option<u64>,
}

#[test]
fn power_cuts_at_every_step_leave_a_prefix_with_every_acknowledged_entry() {
    let seeds: u64 = std::env::var("HYPERLOG_TRUNC_AFTER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut cuts_in_truncation = 0;
    for seed in 0..seeds {
        cuts_in_truncation += u32::from(one_power_cut(seed));
    }
    eprintln!("{seeds} power cuts, {cuts_in_truncation} while a truncation was in progress");
}

/// One seeded workload on `SimFs`, cut at a seeded point; returns whether
/// the cut fell inside a truncation.
fn one_power_cut(seed: u64) -> bool {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fs = SimFs::new();
    let path = Path::new("/data/raft.wal");
    let o = opts(path, 1024).file_system(Arc::new(fs.clone()));
    let steps = 6 + next() % 10;
    let cut_at = next() % steps;
    let torn = next() % 2 == 0;
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("raft", o.clone()).unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut image = None;

    let mut last: Option<u64> = None;
    let mut term = 1;
    for step in 0..steps {
        let truncate = last.is_some_and(|l| l > 3) && next() % 3 == 0;
        if truncate {
            let to = last.unwrap() - 1 - next() % 3;
            term += 1;
            if step == cut_at {
                // The cut lands while the truncation runs.
                let fs2 = fs.clone();
                let h = std::thread::spawn(move || fs2.power_cut(seed, torn));
                ctx.truncate_after_blocking(Some(Lsn::new(to))).unwrap();
                image = Some((h.join().unwrap(), acked.lock().unwrap().clone(), Some(to)));
            } else {
                ctx.truncate_after_blocking(Some(Lsn::new(to))).unwrap();
            }
            let mut a = acked.lock().unwrap();
            a.entries.truncate(to as usize + 1);
            a.cut_to = Some(to);
            last = Some(to);
        } else {
            let start = last.map_or(0, |l| l + 1);
            let n = 1 + next() % 8;
            let (tx, rx) = mpsc::channel();
            let batch: Vec<_> = (start..start + n)
                .map(|i| (Lsn::new(i), cmd(term, i)))
                .collect();
            let copy = batch.clone();
            ctx.append_batch_blocking(batch, false, move |r| {
                let _ = tx.send(r);
            })
            .unwrap();
            rx.recv().unwrap().unwrap();
            let mut a = acked.lock().unwrap();
            for (l, c) in copy {
                let l = l.get() as usize;
                let len = a.entries.len().max(l + 1);
                a.entries.resize(len, None);
                a.entries[l] = Some(c);
            }
            a.cut_to = None;
            last = Some(start + n - 1);
            if step == cut_at {
                image = Some((fs.power_cut(seed, torn), a.clone(), None));
            }
        }
    }
    ctx.close_blocking().unwrap();
    let (image, acked, cutting_to) = image.expect("the cut happened");

    // The image opens, and reads as a gapless run from LSN 0.
    let logger = Logger::new();
    let reopened = logger
        .context_with_blocking("raft", o.clone().file_system(Arc::new(image.clone())))
        .unwrap_or_else(|e| panic!("seed {seed}: reopening after the cut failed: {e}"));
    reopened.close_blocking().unwrap();
    let got = read(path, ReadOptions::default().file_system(Arc::new(image)));
    for (n, (l, _)) in got.iter().enumerate() {
        assert_eq!(*l, n as u64, "seed {seed}: a hole before LSN {l}");
    }
    // Every acknowledged entry is there, as acknowledged; a cut in progress
    // may have removed entries above its point, and nothing else.
    let must_keep = match cutting_to {
        Some(to) => (to as usize + 1).min(acked.entries.len()),
        None => acked.entries.len(),
    };
    assert!(
        got.len() >= must_keep,
        "seed {seed}: {} entries survived, {must_keep} were acknowledged (cut in progress to {cutting_to:?})",
        got.len()
    );
    for (l, c) in &got[..must_keep] {
        assert_eq!(
            Some(c),
            acked.entries[*l as usize].as_ref(),
            "seed {seed}: entry {l} is not the one acknowledged"
        );
    }
    // Above that: only entries of the old log (a cut in progress), never a
    // splice of old and new.
    if cutting_to.is_some() {
        for (l, c) in &got[must_keep..] {
            assert_eq!(
                acked.entries.get(*l as usize).and_then(Option::as_ref),
                Some(c),
                "seed {seed}: entry {l} above a cut in progress is not the old log's"
            );
        }
    }
    if let Some(to) = acked.cut_to.filter(|_| cutting_to.is_none()) {
        assert!(
            got.len() as u64 <= to + 1,
            "seed {seed}: entries above a completed cut to {to} came back"
        );
    }
    cutting_to.is_some()
}
