//! The soak test: many producers write to one segmented write-ahead log on
//! the real disk for a while, with rotation (a small `max_size`) and a
//! periodic `truncate_before`, in `FsyncBatch` mode. At the end it checks
//! that
//!
//! * every `log()` returned `Ok` (there is no fault here);
//! * every acknowledged entry at or above the last truncation point is on
//!   disk, with the acknowledged LSN and its payload, and so is every
//!   acknowledged entry above the first LSN still on disk (truncation removes
//!   a prefix of whole segments, never a hole);
//! * nothing appears twice, nothing appears that was never written, LSNs
//!   strictly increase across segments;
//! * memory stays bounded: the process's resident set (`VmRSS` from
//!   `/proc/self/status`, sampled every second) does not keep growing. The
//!   largest sample of the second half of the run may not exceed the largest
//!   of the first half by more than [`RSS_MARGIN`]. This is a behaviour
//!   assertion (growth), not a timing one.
//!
//! Acknowledgements are streamed to one small file per producer, not kept in
//! memory, so the test's own bookkeeping does not grow with the run.
//!
//! `HYPERLOG_SOAK_SECS` sets the duration (default 5, the CI size); the long
//! mode in RELIABILITY.md is `HYPERLOG_SOAK_SECS=300`.
//! `HYPERLOG_SOAK_PRODUCERS` sets the producer count (default 32: half
//! threads calling `log_blocking`, half tokio tasks calling `log().await`).

mod common;

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::with_deadline;
use hyperlog::{
    Context, ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
    RetentionPolicy,
};
use serde::{Deserialize, Serialize};

/// How much the resident set may grow from the first half of the run to the
/// second: generous, since allocator arenas and the page cache of the test
/// binary settle at their own pace; a leak of a few hundred bytes per entry
/// over a long run exceeds it many times over.
const RSS_MARGIN: u64 = 48 * 1024 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Soak {
    level: LogLevel,
    message: Option<String>,
    producer: u32,
    seq: u64,
    payload: String,
}

impl Entry for Soak {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Entry (producer, seq): its payload (8 to 400 bytes) follows from both.
fn soak_entry(producer: u32, seq: u64) -> Soak {
    let x = splitmix((u64::from(producer) << 40) ^ seq);
    let len = 8 + (x % 393) as usize;
    let c = char::from(b'a' + (x >> 20) as u8 % 26);
    Soak {
        level: LogLevel::Info,
        message: None,
        producer,
        seq,
        payload: std::iter::repeat_n(c, len).collect(),
    }
}

/// The resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Everything the producers share.
struct Run {
    ctx: Context,
    stop: AtomicBool,
    /// The highest LSN acknowledged so far (for choosing truncation points).
    high: AtomicU64,
    acks: AtomicU64,
    ack_dir: PathBuf,
}

fn ack_file(dir: &Path, producer: u32) -> PathBuf {
    dir.join(format!("acks-{producer}.bin"))
}

/// Streams `(seq, lsn)` pairs to the producer's acknowledgement file.
struct AckLog(BufWriter<std::fs::File>);

impl AckLog {
    fn new(run: &Run, producer: u32) -> AckLog {
        AckLog(BufWriter::new(
            std::fs::File::create(ack_file(&run.ack_dir, producer)).unwrap(),
        ))
    }
    fn record(&mut self, run: &Run, seq: u64, lsn: Lsn) {
        self.0.write_all(&seq.to_le_bytes()).unwrap();
        self.0.write_all(&lsn.get().to_le_bytes()).unwrap();
        run.high.fetch_max(lsn.get(), Ordering::Relaxed);
        run.acks.fetch_add(1, Ordering::Relaxed);
    }
}

fn read_acks(dir: &Path, producer: u32) -> Vec<(u64, Lsn)> {
    let mut bytes = Vec::new();
    BufReader::new(std::fs::File::open(ack_file(dir, producer)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
        .chunks_exact(16)
        .map(|c| {
            let seq = u64::from_le_bytes(c[..8].try_into().unwrap());
            let lsn = u64::from_le_bytes(c[8..].try_into().unwrap());
            (seq, Lsn::new(lsn))
        })
        .collect()
}

fn blocking_producer(run: &Run, producer: u32) -> u64 {
    let mut log = AckLog::new(run, producer);
    let mut seq = 0;
    while !run.stop.load(Ordering::Relaxed) {
        match run.ctx.log_blocking(soak_entry(producer, seq)) {
            Ok(Some(lsn)) => log.record(run, seq, lsn),
            other => panic!("producer {producer} seq {seq}: log gave {other:?}"),
        }
        seq += 1;
    }
    log.0.flush().unwrap();
    seq
}

async fn async_producer(run: Arc<Run>, producer: u32) -> u64 {
    let mut log = AckLog::new(&run, producer);
    let mut seq = 0;
    while !run.stop.load(Ordering::Relaxed) {
        match run.ctx.log(soak_entry(producer, seq)).await {
            Ok(Some(lsn)) => log.record(&run, seq, lsn),
            other => panic!("producer {producer} seq {seq}: log gave {other:?}"),
        }
        seq += 1;
    }
    log.0.flush().unwrap();
    seq
}

fn soak() {
    let secs = env_u64("HYPERLOG_SOAK_SECS", 5).max(2);
    let producers = env_u64("HYPERLOG_SOAK_PRODUCERS", 32).max(2) as u32;
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let ack_dir = dir.path().join("acks");
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::create_dir_all(&ack_dir).unwrap();
    let path = log_dir.join("soak.wal");
    let opts = ContextOptions::new()
        .path(&path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .enable_lsn(true)
        .instance_id(11)
        .retention_policy(RetentionPolicy::new().max_size(256 * 1024));
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("soak", opts.clone()).unwrap();
    let run = Arc::new(Run {
        ctx,
        stop: AtomicBool::new(false),
        high: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        ack_dir: ack_dir.clone(),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let threads = producers / 2;
    let mut handles = Vec::new();
    for p in 0..threads {
        let run = run.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("soak-{p}"))
                .spawn(move || blocking_producer(&run, p))
                .unwrap(),
        );
    }
    let tasks: Vec<_> = (threads..producers)
        .map(|p| rt.spawn(async_producer(run.clone(), p)))
        .collect();

    // Every second: sample the resident set and truncate below the highest
    // LSN acknowledged a second earlier.
    let start = Instant::now();
    let mut rss = Vec::new();
    let mut before_max: Option<Lsn> = None;
    let mut truncations = 0u64;
    let mut removed = 0usize;
    let mut previous_high = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_bytes());
        if previous_high > 0 {
            let before = Lsn::new(previous_high);
            let gone = run
                .ctx
                .truncate_before_blocking(before)
                .unwrap_or_else(|e| panic!("truncate_before({before}): {e}"));
            removed += gone.len();
            truncations += 1;
            before_max = before_max.max(Some(before));
        }
        previous_high = run.high.load(Ordering::Relaxed);
    }
    run.stop.store(true, Ordering::Relaxed);
    let mut submitted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    for t in tasks {
        submitted += rt.block_on(t).unwrap();
    }
    let stats = run.ctx.stats();
    run.ctx.close_blocking().unwrap();
    logger.close_blocking().unwrap();
    let acked = run.acks.load(Ordering::Relaxed);
    assert_eq!(acked, submitted, "every log() returned Ok");

    // Read everything back: segments, then the live file.
    let mut on_disk: HashMap<(u32, u64), Lsn> = HashMap::new();
    let mut prev: Option<Lsn> = None;
    let mut first: Option<Lsn> = None;
    for item in hyperlog::read_entries_blocking::<Soak>(&path, 0, ReadOptions::default()) {
        let (offset, log, lsn) = item.unwrap_or_else(|e| panic!("reading back: {e}"));
        let lsn = lsn.unwrap_or_else(|| panic!("entry at {offset} has no LSN"));
        assert!(prev < Some(lsn), "LSNs do not increase at {lsn}");
        prev = Some(lsn);
        first.get_or_insert(lsn);
        let e = log.entry;
        assert!(e.producer < producers, "unknown producer {}", e.producer);
        assert_eq!(
            e,
            soak_entry(e.producer, e.seq),
            "an entry that was never written"
        );
        assert!(
            on_disk.insert((e.producer, e.seq), lsn).is_none(),
            "({}, {}) appears twice",
            e.producer,
            e.seq
        );
    }
    let first = first.expect("something survived");
    if let Some(b) = before_max {
        assert!(
            first <= b,
            "truncate_before({b}) removed entries at {first}"
        );
    }
    let mut kept = 0u64;
    for p in 0..producers {
        for (seq, lsn) in read_acks(&ack_dir, p) {
            match on_disk.get(&(p, seq)) {
                Some(l) => {
                    assert_eq!(*l, lsn, "({p}, {seq}) has another LSN on disk");
                    kept += 1;
                }
                None => assert!(
                    lsn < first,
                    "acknowledged ({p}, {seq}) LSN {lsn} is lost (first on disk {first}, \
                     last truncation point {before_max:?})"
                ),
            }
        }
    }
    assert_eq!(
        kept,
        on_disk.len() as u64,
        "entries on disk that were never acknowledged"
    );

    // Memory: the second half's peak is not above the first half's plus the margin.
    let half = rss.len() / 2;
    let (a, b) = rss.split_at(half.max(1));
    let first_max = a.iter().copied().max().unwrap_or(0);
    let second_max = b.iter().copied().max().unwrap_or(0);
    let segments = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len();
    eprintln!(
        "soak: {secs} s, {producers} producers, {acked} entries acknowledged, {} on disk at the end, \
         {truncations} truncations removed {removed} segments, {segments} segments left, \
         {} syncs, {} writes; VmRSS MiB per second: {:?}",
        on_disk.len(),
        stats.syncs,
        stats.writes,
        rss.iter().map(|r| r / (1024 * 1024)).collect::<Vec<_>>()
    );
    assert!(
        second_max <= first_max + RSS_MARGIN,
        "the resident set keeps growing: first half peak {first_max} B, second half peak \
         {second_max} B (samples {rss:?})"
    );
    assert!(acked > 0 && truncations > 0);
}

#[test]
fn soak_many_producers_with_rotation_and_truncation() {
    let secs = env_u64("HYPERLOG_SOAK_SECS", 5);
    with_deadline(secs + 300, soak);
}
