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

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use hyperlog::{
    ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
    RetentionPolicy,
};
use serde::{Deserialize, Serialize};

const ENV_DIR: &str = "HYPERLOG_CRASH_CHILD_DIR";
const ENV_SEED: &str = "HYPERLOG_CRASH_CHILD_SEED";
const ENV_EPOCH: &str = "HYPERLOG_CRASH_CHILD_EPOCH";
const ENV_MODE: &str = "HYPERLOG_CRASH_CHILD_MODE";
const ENV_FORMAT: &str = "HYPERLOG_CRASH_CHILD_FORMAT";
const ENV_ROTATION: &str = "HYPERLOG_CRASH_CHILD_ROTATION";

const PRODUCERS: u32 = 8;
/// The producer id of the entry the parent appends after each recovery.
const PARENT: u32 = 999;
/// How long the parent waits for an acknowledgement before calling it a hang.
const WAIT: Duration = Duration::from_secs(30);

/// Children run one at a time: the machine is small.
static CHILDREN: Mutex<()> = Mutex::new(());

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Rec {
    level: LogLevel,
    message: Option<String>,
    epoch: u32,
    producer: u32,
    seq: u64,
    payload: String,
}

impl Entry for Rec {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, 64-bit.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The payload of entry (epoch, producer, seq) of an iteration with `seed`:
/// 1 to 300 characters, with quotes, backslashes and non-ASCII text so that
/// JSON escaping is exercised.
fn payload(seed: u64, epoch: u32, producer: u32, seq: u64) -> String {
    let mut x = splitmix(seed ^ (u64::from(epoch) << 48) ^ (u64::from(producer) << 40) ^ seq);
    let len = 1 + (x % 300) as usize;
    const ALPHABET: [&str; 8] = ["a", "Z", "0", "\"", "\\", "é", "\n", "→"];
    let mut s = String::with_capacity(len * 2);
    for _ in 0..len {
        x = splitmix(x);
        if x.is_multiple_of(4) {
            s.push_str(ALPHABET[(x >> 8) as usize % ALPHABET.len()]);
        } else {
            s.push(char::from(b'a' + (x >> 16) as u8 % 26));
        }
    }
    s
}

fn rec(seed: u64, epoch: u32, producer: u32, seq: u64) -> Rec {
    Rec {
        level: LogLevel::Info,
        message: Some(format!("e{epoch} p{producer} s{seq}")),
        epoch,
        producer,
        seq,
        payload: payload(seed, epoch, producer, seq),
    }
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

fn format_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Binary => "binary",
        _ => "json",
    }
}

/// The child: logs from 8 threads until killed, printing
/// `ACK epoch producer seq lsn hash` after each acknowledgement.
#[test]
#[ignore = "child process of the crash loop; run by it"]
fn crash_loop_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("child: {k} unset"));
    let seed: u64 = var(ENV_SEED).parse().unwrap();
    let epoch: u32 = var(ENV_EPOCH).parse().unwrap();
    let mode: DurabilityMode = var(ENV_MODE).parse().unwrap();
    let format: LogFormat = var(ENV_FORMAT).parse().unwrap();
    let rotation = var(ENV_ROTATION) == "1";
    let path = log_path(Path::new(&dir), format);
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
                        let line = match ctx.log_blocking(r) {
                            Ok(Some(lsn)) => format!("ACK {epoch} {p} {seq} {} {h}\n", lsn.get()),
                            Ok(None) => "ERR no LSN\n".to_string(),
                            Err(e) => format!("ERR log: {e}\n"),
                        };
                        let mut out = std::io::stdout().lock();
                        if out
                            .write_all(line.as_bytes())
                            .and_then(|()| out.flush())
                            .is_err()
                            || line.starts_with("ERR")
                        {
                            std::process::exit(3);
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

/// One acknowledgement.
#[derive(Debug, Clone, Copy)]
struct Ack {
    lsn: Lsn,
    hash: u64,
}

/// What the parent knows: every acknowledgement so far, per
/// (epoch, producer, seq), and each iteration's seed.
#[derive(Default)]
struct Known {
    acked: HashMap<(u32, u32, u64), Ack>,
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
fn run_child(
    dir: &Path,
    c: &Combo,
    seed: u64,
    epoch: u32,
    ctx: &str,
) -> HashMap<(u32, u32, u64), Ack> {
    let r = splitmix(seed ^ 0x6b69_6c6c);
    // Mostly after a number of acknowledgements; sometimes a delay after the
    // first; sometimes a delay after the spawn, without waiting for any (a
    // kill during the recovery of the previous kill, or during start-up).
    let kill_after_acks = 1 + (r % 600) as usize;
    let early = (r >> 32).is_multiple_of(8);
    let delay = early || (r >> 32) % 8 < 3;
    let delay_ms = (r >> 40) % 40;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_loop_child", "--nocapture", "--ignored"])
        .env(ENV_DIR, dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_EPOCH, epoch.to_string())
        .env(ENV_MODE, format!("{:?}", c.mode))
        .env(ENV_FORMAT, format_name(c.format))
        .env(ENV_ROTATION, if c.rotation { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Result<((u32, u32, u64), Ack), String>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            // A line cut by the kill is not an acknowledgement.
            let Some(body) = line.strip_suffix('\n') else {
                return;
            };
            if let Some(rest) = body.strip_prefix("ACK ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                let key = (v[0] as u32, v[1] as u32, v[2]);
                let _ = tx.send(Ok((
                    key,
                    Ack {
                        lsn: Lsn::new(v[3]),
                        hash: v[4],
                    },
                )));
            } else if body.starts_with("ERR") {
                let _ = tx.send(Err(body.to_string()));
            }
        }
    });
    let mut acked = HashMap::new();
    let take = |item: Result<((u32, u32, u64), Ack), String>,
                acked: &mut HashMap<(u32, u32, u64), Ack>| match item {
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
        match rx.recv_timeout(WAIT) {
            Ok(item) => take(item, &mut acked),
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{ctx}: hung: the child acknowledged only {}", acked.len());
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!(
                    "{ctx}: the child exited after {} acknowledgements: {status}",
                    acked.len()
                );
            }
        }
    }
    if delay {
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "{ctx}: the child was not killed: {status}"
    );
    reader.join().unwrap();
    for item in rx.try_iter() {
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

    let mut on_disk: HashMap<(u32, u32, u64), Lsn> = HashMap::new();
    let mut prev: Option<(u64, Lsn)> = None;
    let mut count = 0usize;
    for item in hyperlog::read_entries_blocking::<Rec>(&path, 0, ReadOptions::default()) {
        let (off, log, lsn) = item.unwrap_or_else(|e| panic!("{ctx}: reading the log failed: {e}"));
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
        .map(|i| i.unwrap_or_else(|e| panic!("{ctx}: re-reading failed: {e}")))
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
    std::env::var("HYPERLOG_CRASH_ITERATIONS")
        .ok()
        .map(|v| v.parse().expect("HYPERLOG_CRASH_ITERATIONS: a number"))
        .unwrap_or(4)
}

fn run_seed() -> u64 {
    match std::env::var("HYPERLOG_CRASH_SEED") {
        Ok(v) => v.parse().expect("HYPERLOG_CRASH_SEED: a number"),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            splitmix(t.as_nanos() as u64 ^ u64::from(std::process::id()))
        }
    }
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
        let acked = {
            let _one = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
            run_child(dir.path(), &c, iseed, epoch, &ctx)
        };
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
