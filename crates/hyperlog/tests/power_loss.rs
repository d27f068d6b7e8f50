//! Simulated power loss through the file-system seam.
//!
//! Producers log through a context backed by [`SimFs`]; at a point chosen by
//! the seed the test takes the list of acknowledged entries and then the
//! image a machine would find after losing power (synced bytes, a random
//! prefix of the rest, optionally a torn sector, only durable names). The
//! log must open cleanly from that image, and every `Fsync`/`FsyncBatch`
//! acknowledgement must be there with its LSN and bytes; nothing may appear
//! twice or out of LSN order, and nothing may appear that was never written.
//!
//! `HYPERLOG_POWER_SEEDS` sets how many seeds run (default 500 per
//! mode/format; the long mode in RELIABILITY.md uses more).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use hyperlog::fs::SimFs;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    producer: u32,
    seq: u32,
}

impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn seeds() -> u64 {
    std::env::var("HYPERLOG_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What was acknowledged before the cut, and the image after it.
type Snapshot = (Vec<(Lsn, Cmd)>, SimFs);

/// One power cut; returns how many acknowledged entries were checked.
fn one_cut(seed: u64, mode: DurabilityMode, format: LogFormat, segments: bool) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let fs = SimFs::new();
    let path = Path::new("/data/node.wal");
    let producers = 1 + (rng.next() % 4) as u32;
    let per = 5 + (rng.next() % 20) as u32;
    let cut_after = (rng.next() % (producers * per) as u64) as usize;
    let torn = rng.next().is_multiple_of(2);
    let preallocate = if rng.next().is_multiple_of(2) {
        0
    } else {
        4096
    };
    let opts = ContextOptions::new()
        .path(path)
        .durability(mode)
        .format(format)
        .enable_lsn(true)
        .instance_id(3)
        .preallocate(preallocate)
        .file_system(Arc::new(fs.clone()));
    // With segments, the log rotates every ~1.5 KB: power cuts land around
    // seals (renames, directory syncs, new files, indexes) too.
    let opts = if segments {
        opts.retention_policy(hyperlog::RetentionPolicy::new().max_size(1536))
    } else {
        opts
    };
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("wal", opts.clone())
        .expect("open");
    let acked: Arc<Mutex<Vec<(Lsn, Cmd)>>> = Arc::default();
    let snapshot: Mutex<Option<Snapshot>> = Mutex::new(None);
    std::thread::scope(|s| {
        for p in 0..producers {
            let ctx = ctx.clone();
            let acked = acked.clone();
            let snapshot = &snapshot;
            let fs = &fs;
            s.spawn(move || {
                for seq in 0..per {
                    let cmd = Cmd {
                        level: LogLevel::Info,
                        message: Some(format!(
                            "p{p} s{seq} {}",
                            "x".repeat((seq % 7) as usize * 30)
                        )),
                        producer: p,
                        seq,
                    };
                    let lsn = ctx.log_blocking(cmd.clone()).expect("log").expect("lsn");
                    let mut a = acked.lock().unwrap();
                    a.push((lsn, cmd));
                    if a.len() == cut_after + 1 {
                        // Everything in `a` was acknowledged before the cut.
                        let list = a.clone();
                        let image = fs.power_cut(seed, torn);
                        *snapshot.lock().unwrap() = Some((list, image));
                    }
                }
            });
        }
    });
    drop(ctx);
    logger.close_blocking().expect("close");
    let (acked_before, image) = snapshot.into_inner().unwrap().expect("the cut happened");

    // Everything ever written, to recognise a wrong entry.
    let written: HashMap<Lsn, Cmd> = acked.lock().unwrap().iter().cloned().collect();

    // The image opens cleanly (a torn tail is cut, not an error)...
    let logger = Logger::new();
    let reopened = logger
        .context_with_blocking("wal", opts.clone().file_system(Arc::new(image.clone())))
        .unwrap_or_else(|e| panic!("seed {seed}: reopening after the cut failed: {e}"));
    let last_before = reopened.recovery_report().and_then(|r| r.last_lsn);
    let next = reopened
        .log_blocking(Cmd {
            level: LogLevel::Info,
            message: None,
            producer: 99,
            seq: 0,
        })
        .expect("append after recovery")
        .expect("lsn");
    assert!(
        Some(next) > last_before,
        "seed {seed}: LSNs continue above the last on disk"
    );
    reopened.close_blocking().expect("close");

    // ...and holds every acknowledged entry exactly once, in LSN order.
    let mut seen = HashSet::new();
    let mut prev: Option<Lsn> = None;
    let mut found: HashMap<Lsn, Cmd> = HashMap::new();
    let read = ReadOptions::default().file_system(Arc::new(image));
    for item in hyperlog::read_entries_blocking::<Cmd>(path, 0, read) {
        let (offset, log, lsn) = item.unwrap_or_else(|e| panic!("seed {seed}: read failed: {e}"));
        let lsn = lsn.unwrap_or_else(|| panic!("seed {seed}: entry at {offset} has no LSN"));
        assert!(
            prev < Some(lsn),
            "seed {seed}: LSNs not increasing at offset {offset}"
        );
        prev = Some(lsn);
        assert!(seen.insert(lsn), "seed {seed}: LSN {lsn} appears twice");
        if log.entry.producer == 99 {
            continue;
        }
        assert_eq!(
            written.get(&lsn),
            Some(&log.entry),
            "seed {seed}: entry at {offset} was never written with LSN {lsn}"
        );
        found.insert(lsn, log.entry);
    }
    for (lsn, cmd) in &acked_before {
        assert_eq!(
            found.get(lsn),
            Some(cmd),
            "seed {seed}: acknowledged LSN {lsn} lost"
        );
    }
    acked_before.len()
}

fn run(mode: DurabilityMode, format: LogFormat) {
    run_with(mode, format, false);
}

fn run_with(mode: DurabilityMode, format: LogFormat, segments: bool) {
    let mut checked = 0;
    for seed in 1..=seeds() {
        checked += one_cut(seed, mode, format, segments);
    }
    assert!(checked > 0);
}

#[test]
fn fsync_batch_binary_survives_power_loss() {
    run(DurabilityMode::FsyncBatch, LogFormat::Binary);
}

#[test]
fn fsync_batch_json_survives_power_loss() {
    run(DurabilityMode::FsyncBatch, LogFormat::Json);
}

#[test]
fn fsync_binary_survives_power_loss() {
    run(DurabilityMode::Fsync, LogFormat::Binary);
}

#[test]
fn fsync_json_survives_power_loss() {
    run(DurabilityMode::Fsync, LogFormat::Json);
}

#[test]
fn fsync_batch_segmented_wal_survives_power_loss() {
    run_with(DurabilityMode::FsyncBatch, LogFormat::Binary, true);
}

#[test]
fn fsync_segmented_json_wal_survives_power_loss() {
    run_with(DurabilityMode::Fsync, LogFormat::Json, true);
}
