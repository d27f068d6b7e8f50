//! The crash loop: a child process (this test binary, re-run) writes from 8
//! producer threads and reports every acknowledgement over a pipe; the parent
//! SIGKILLs it at a seeded moment, reopens the log, and checks that
//!
//! * every acknowledged entry is on disk, with its LSN and payload bytes;
//! * no entry appears twice;
//! * nothing appears that was never written (each producer's entries are a
//!   gap-free prefix of what it submitted, at most one past its last
//!   acknowledgement, with the payload its seed determines);
//! * LSNs strictly increase in read order (across segments);
//! * the log accepts appends again, with a higher LSN.
//!
//! Every (durability mode, format, rotation) combination runs
//! `HYPERLOG_CRASH_ITERATIONS` iterations (default 4) on one directory, so the
//! log accumulates across kills and recovering a recovered log is exercised.
//! Each run has a seed, printed in every failure message; set
//! `HYPERLOG_CRASH_SEED` to run that seed again (the kill points and payloads
//! repeat; thread interleaving does not). Long mode:
//!
//! ```text
//! HYPERLOG_CRASH_ITERATIONS=100 cargo test -p hyperlog --test crash_loop -- --nocapture
//! ```

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::crash::{
    Ack, Child, ChildArgs, Key, PARENT, Payloads, Rec, child_var, format_name, hash,
    one_child_at_a_time, parse_ack, say, splitmix,
};
use hyperlog::{
    ContextOptions, DurabilityMode, LogFormat, Logger, Lsn, ReadOptions, RetentionPolicy,
};

/// The prefix of the environment variables of [`ChildArgs`].
const ENV: &str = "HYPERLOG_CRASH_CHILD_";
const ENV_ROTATION: &str = "HYPERLOG_CRASH_CHILD_ROTATION";

const PRODUCERS: u32 = 8;

/// Payloads of 1 to 300 characters, with quotes, backslashes and non-ASCII
/// text so that JSON escaping is exercised.
const PAYLOADS: Payloads = Payloads {
    max_len: 300,
    special: &["a", "Z", "0", "\"", "\\", "é", "\n", "→"],
    special_one_in: 4,
};

fn rec(seed: u64, epoch: u32, producer: u32, seq: u64) -> Rec {
    PAYLOADS.rec(seed, epoch, producer, seq)
}

fn log_path(dir: &Path, format: LogFormat) -> PathBuf {
    dir.join(match format {
        LogFormat::Binary => "crash.wal",
        _ => "crash.log.json",
    })
}

fn opts(path: &Path, mode: DurabilityMode, format: LogFormat, rotation: bool) -> ContextOptions {
    let o = ContextOptions::new()
        .path(path)
        .durability(mode)
        .format(format)
        .enable_lsn(true)
        .instance_id(3);
    if rotation {
        o.retention_policy(RetentionPolicy::new().max_size(8192))
    } else {
        o
    }
}

/// The child: logs from 8 threads until killed, printing
/// `ACK epoch producer seq lsn hash` after each acknowledgement.
#[test]
#[ignore = "child process of the crash loop; run by it"]
fn crash_loop_child() {
    let Some(args) = ChildArgs::from_env(ENV) else {
        return;
    };
    let (seed, epoch, mode, format) = (args.seed, args.epoch, args.mode, args.format);
    let rotation = child_var(ENV_ROTATION) == "1";
    let path = log_path(&args.dir, format);
    let logger = Logger::new();
    let ctx = match logger.context_with_blocking("crash", opts(&path, mode, format, rotation)) {
        Ok(c) => c,
        Err(e) => {
            println!("ERR open: {e}");
            std::process::exit(2);
        }
    };
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("crash-producer-{p}"))
                .spawn(move || {
                    for seq in 0.. {
                        let r = rec(seed, epoch, p, seq);
                        let h = hash(r.payload.as_bytes());
                        match ctx.log_blocking(r) {
                            Ok(Some(lsn)) => {
                                say(&format!("ACK {epoch} {p} {seq} {} {h}\n", lsn.get()))
                            }
                            Ok(None) => say("ERR no LSN\n"),
                            Err(e) => say(&format!("ERR log: {e}\n")),
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// What the parent knows: every acknowledgement so far, per
/// (epoch, producer, seq), and each iteration's seed.
#[derive(Default)]
struct Known {
    acked: HashMap<Key, Ack>,
    seeds: Vec<u64>,
    /// The LSN the parent's own append got after each recovery.
    parent_lsns: HashMap<u32, Lsn>,
}

struct Combo {
    mode: DurabilityMode,
    format: LogFormat,
    rotation: bool,
}

impl Combo {
    fn name(&self) -> String {
        format!(
            "{:?}/{}/{}",
            self.mode,
            format_name(self.format),
            if self.rotation {
                "rotation"
            } else {
                "single-file"
            }
        )
    }
}

/// Runs one child until a seeded moment, kills it, and returns its
/// acknowledgements.
fn run_child(dir: &Path, c: &Combo, seed: u64, epoch: u32, ctx: &str) -> HashMap<Key, Ack> {
    let r = splitmix(seed ^ 0x6b69_6c6c);
    // Mostly after a number of acknowledgements; sometimes a delay after the
    // first; sometimes a delay after the spawn, without waiting for any (a
    // kill during the recovery of the previous kill, or during start-up).
    let kill_after_acks = 1 + (r % 600) as usize;
    let early = (r >> 32).is_multiple_of(8);
    let delay = early || (r >> 32) % 8 < 3;
    let delay_ms = (r >> 40) % 40;
    let mut child = Child::spawn(
        "crash_loop_child",
        |cmd| {
            ChildArgs::new(dir, seed, epoch, c.mode, c.format).set_env(ENV, cmd);
            cmd.env(ENV_ROTATION, if c.rotation { "1" } else { "0" });
        },
        |body| {
            if let Some(rest) = body.strip_prefix("ACK ") {
                Some(Ok(parse_ack(rest)))
            } else if body.starts_with("ERR") {
                Some(Err(body.to_string()))
            } else {
                None
            }
        },
    );
    let mut acked = HashMap::new();
    let take = |item: Result<(Key, Ack), String>, acked: &mut HashMap<Key, Ack>| match item {
        Ok((k, a)) => {
            assert!(
                acked.insert(k, a).is_none(),
                "{ctx}: the child acknowledged {k:?} twice"
            );
        }
        Err(e) => panic!("{ctx}: the child failed: {e}"),
    };
    let target = match (early, delay) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => kill_after_acks,
    };
    while acked.len() < target {
        let item = child.next(ctx, acked.len(), || {
            format!("the child acknowledged only {}", acked.len())
        });
        take(item, &mut acked);
    }
    if delay {
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    for item in child.kill(ctx) {
        take(item, &mut acked);
    }
    acked
}

/// Reopens the log after a kill and checks every invariant; then appends.
fn check(dir: &Path, c: &Combo, known: &mut Known, epoch: u32, ctx: &str) {
    let path = log_path(dir, c.format);
    let logger = Logger::new();
    let wal = logger
        .context_with_blocking("crash", opts(&path, c.mode, c.format, c.rotation))
        .unwrap_or_else(|e| panic!("{ctx}: reopening after SIGKILL failed: {e}"));

    let mut on_disk: HashMap<Key, Lsn> = HashMap::new();
    let mut prev: Option<(u64, Lsn)> = None;
    let mut count = 0usize;
    for item in hyperlog::read_entries_blocking::<Rec>(&path, 0, ReadOptions::default()) {
        let (off, log, lsn) = item.unwrap_or_else(|e| {
            let files = common::crash::evidence(dir, ctx);
            panic!("{ctx}: reading the log failed: {e}\n{files}")
        });
        count += 1;
        let lsn = lsn.unwrap_or_else(|| panic!("{ctx}: the entry at {off} has no LSN"));
        if let Some((poff, p)) = prev {
            assert!(
                lsn > p,
                "{ctx}: LSNs do not increase: {p} (offset {poff}) then {lsn} (offset {off})"
            );
        }
        prev = Some((off, lsn));
        let e = &log.entry;
        let key = (e.epoch, e.producer, e.seq);
        assert!(
            on_disk.insert(key, lsn).is_none(),
            "{ctx}: entry {key:?} appears twice (again at offset {off}, LSN {lsn})"
        );
        if e.producer == PARENT {
            assert_eq!(
                known.parent_lsns.get(&e.epoch),
                Some(&lsn),
                "{ctx}: a parent entry {key:?} that was never written, or with another LSN"
            );
            continue;
        }
        // Never written: from a future epoch, an unknown producer, or bytes
        // other than what the seed determines.
        let seed = *known
            .seeds
            .get(e.epoch as usize)
            .unwrap_or_else(|| panic!("{ctx}: entry {key:?} from an epoch never run"));
        assert!(
            e.producer < PRODUCERS,
            "{ctx}: entry {key:?}: unknown producer"
        );
        let want = rec(seed, e.epoch, e.producer, e.seq);
        assert_eq!(
            *e, want,
            "{ctx}: entry {key:?} at offset {off} is not what was written"
        );
        if let Some(a) = known.acked.get(&key) {
            assert_eq!(a.lsn, lsn, "{ctx}: entry {key:?} has another LSN on disk");
            assert_eq!(
                a.hash,
                hash(e.payload.as_bytes()),
                "{ctx}: entry {key:?}: payload hash differs from the acknowledged one"
            );
        }
    }
    // Every acknowledged entry is present.
    let mut missing: Vec<_> = known
        .acked
        .iter()
        .filter(|(k, _)| !on_disk.contains_key(k))
        .map(|(k, a)| (*k, a.lsn))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{ctx}: {} acknowledged entries are missing after recovery, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Each producer of this epoch: a gap-free prefix, at most one entry past
    // its acknowledgements (the one in flight when the kill came).
    for p in 0..PRODUCERS {
        let acks = known
            .acked
            .keys()
            .filter(|k| k.0 == epoch && k.1 == p)
            .count() as u64;
        let max_acked = known
            .acked
            .keys()
            .filter(|k| k.0 == epoch && k.1 == p)
            .map(|k| k.2 + 1)
            .max()
            .unwrap_or(0);
        assert_eq!(
            acks, max_acked,
            "{ctx}: producer {p}'s acknowledgements have gaps"
        );
        let seqs: Vec<u64> = on_disk
            .keys()
            .filter(|k| k.0 == epoch && k.1 == p)
            .map(|k| k.2)
            .collect();
        let n = seqs.len() as u64;
        assert!(
            seqs.iter().all(|&s| s < n),
            "{ctx}: producer {p}'s entries on disk have gaps: {n} entries, max seq {:?}",
            seqs.iter().max()
        );
        assert!(
            n == acks || n == acks + 1,
            "{ctx}: producer {p} has {n} entries on disk but {acks} acknowledgements"
        );
    }

    // The log accepts appends again, above every LSN on disk.
    let next = wal
        .log_blocking(rec(0, epoch, PARENT, 0))
        .unwrap_or_else(|e| panic!("{ctx}: appending after recovery failed: {e}"))
        .unwrap_or_else(|| panic!("{ctx}: no LSN after recovery"));
    if let Some((_, last)) = prev {
        assert!(
            next > last,
            "{ctx}: the new LSN {next} is not above the last on disk {last}"
        );
    }
    known.parent_lsns.insert(epoch, next);
    wal.close_blocking()
        .unwrap_or_else(|e| panic!("{ctx}: closing after the append failed: {e}"));
    let again = hyperlog::read_entries_blocking::<Rec>(&path, 0, ReadOptions::default())
        .map(|i| {
            i.unwrap_or_else(|e| {
                let files = common::crash::evidence(dir, ctx);
                panic!("{ctx}: re-reading failed: {e}\n{files}")
            })
        })
        .collect::<Vec<_>>();
    assert_eq!(
        again.len(),
        count + 1,
        "{ctx}: the appended entry is not the only new one"
    );
    let (_, last, lsn) = again.last().unwrap();
    assert_eq!(
        (last.entry.producer, last.entry.epoch, *lsn),
        (PARENT, epoch, Some(next)),
        "{ctx}: the appended entry is not last"
    );
}

fn iterations() -> u32 {
    common::crash::iterations("HYPERLOG_CRASH_ITERATIONS", 4)
}

fn run_seed() -> u64 {
    common::crash::run_seed("HYPERLOG_CRASH_SEED")
}

fn crash_loop(mode: DurabilityMode, format: LogFormat, rotation: bool) {
    let c = Combo {
        mode,
        format,
        rotation,
    };
    let seed = run_seed();
    let n = iterations();
    let combo = c.name();
    eprintln!("crash loop {combo}: seed {seed}, {n} iterations (HYPERLOG_CRASH_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut known = Known::default();
    let mut total_acks = 0usize;
    for epoch in 0..n {
        let iseed = splitmix(seed ^ (u64::from(epoch) << 32) ^ 0x5eed);
        known.seeds.push(iseed);
        let ctx = format!(
            "crash loop {combo}, HYPERLOG_CRASH_SEED={seed}, iteration {epoch} (iteration seed {iseed})"
        );
        let acked = one_child_at_a_time(|| run_child(dir.path(), &c, iseed, epoch, &ctx));
        total_acks += acked.len();
        known.acked.extend(acked);
        check(dir.path(), &c, &mut known, epoch, &ctx);
    }
    let files = std::fs::read_dir(dir.path()).map_or(0, |d| d.count());
    eprintln!(
        "crash loop {combo}: seed {seed}: {n} kills, {total_acks} acknowledged entries checked, {files} files in the log directory"
    );
}

macro_rules! combos {
    ($($name:ident: $mode:ident, $format:ident, $rotation:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_loop(DurabilityMode::$mode, LogFormat::$format, $rotation);
        }
    )*};
}

combos! {
    crash_loop_flush_json: Flush, Json, false;
    crash_loop_flush_json_rotation: Flush, Json, true;
    crash_loop_flush_binary: Flush, Binary, false;
    crash_loop_flush_binary_rotation: Flush, Binary, true;
    crash_loop_fsync_json: Fsync, Json, false;
    crash_loop_fsync_json_rotation: Fsync, Json, true;
    crash_loop_fsync_binary: Fsync, Binary, false;
    crash_loop_fsync_binary_rotation: Fsync, Binary, true;
    crash_loop_fsync_batch_json: FsyncBatch, Json, false;
    crash_loop_fsync_batch_json_rotation: FsyncBatch, Json, true;
    crash_loop_fsync_batch_binary: FsyncBatch, Binary, false;
    crash_loop_fsync_batch_binary_rotation: FsyncBatch, Binary, true;
}
