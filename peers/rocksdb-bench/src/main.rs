//! RocksDB as a durable peer of `hyperlog-bench durable`.
//!
//! `rocksdb-bench --threads N --secs S --dir D [--value-bytes 100]` opens a
//! new database in `D` (default `Options` plus `create_if_missing` and
//! statistics), writes one untimed warm-up key, then starts `N` threads at
//! once. Each thread puts its own keys (4-byte thread number, 8-byte
//! sequence number, big endian) with `value-bytes`-byte values through
//! `DB::put_opt` with `WriteOptions::set_sync(true)`: the call returns once
//! the write-ahead log holding the key is synced, and RocksDB's write thread
//! groups the writes of concurrent threads into one WAL write and one sync.
//! Every call is timed. After `S` seconds the threads stop; the database
//! is then read back (every key counted, outside the timed window) and one
//! JSON line of results goes to stdout:
//!
//! `entries`, `written` (with the warm-up key), `elapsed_ns` (first put to
//! last thread stopped: every put is durable on return, so nothing is left
//! to drain), `producing_ns` (the same), `cpu_ns` (getrusage of this
//! process over the window), `peak_rss` and `rss_before` (bytes; the
//! high-water mark is reset just before the window), `wchar` (bytes given to
//! write-family system calls in the window), `syncs` (RocksDB's own
//! `rocksdb.wal.synced` ticker over the window), `keys_read_back`, and
//! `latency_ns`: the latency histogram as `[value, count]` pairs, one per
//! recorded bucket (HDR, 3 significant digits), so the harness can merge
//! rounds exactly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rocksdb::{DB, IteratorMode, Options, WriteOptions};

/// What the command line asks for.
struct Args {
    threads: usize,
    secs: f64,
    dir: PathBuf,
    value_bytes: usize,
}

fn usage() -> String {
    "usage: rocksdb-bench --threads N --secs S --dir D [--value-bytes 100]".into()
}

fn parse_args() -> Result<Args, String> {
    let mut threads = None;
    let mut secs = None;
    let mut dir = None;
    let mut value_bytes = 100usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => threads = Some(value()?.parse().map_err(|e| format!("--threads: {e}"))?),
            "--secs" => secs = Some(value()?.parse().map_err(|e| format!("--secs: {e}"))?),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--value-bytes" => {
                value_bytes = value()?
                    .parse()
                    .map_err(|e| format!("--value-bytes: {e}"))?
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    let (Some(threads), Some(secs), Some(dir)) = (threads, secs, dir) else {
        return Err(usage());
    };
    let secs: f64 = secs;
    if threads == 0 || !(secs.is_finite() && secs > 0.0) {
        return Err("--threads must be at least 1 and --secs positive".into());
    }
    Ok(Args {
        threads,
        secs,
        dir,
        value_bytes,
    })
}

/// The same text the harness logs: ASCII words, `len` bytes.
fn value(len: usize) -> Vec<u8> {
    const WORDS: &str = "job 4711 scheduled on worker node-17 after 3 retries; \
                         queue depth 128, lag 42 ms, shard 9 of 64; ";
    WORDS.bytes().cycle().take(len).collect()
}

fn key(thread: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&thread.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn histogram() -> Histogram<u64> {
    // Constant bounds that `new_with_bounds` accepts: 1 ns to 1 h.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a writable `rusage`; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0 and filled the struct.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The number after `field` in `/proc/self/{file}`; 0 if unknown.
fn proc_self(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `rocksdb.wal.synced` ticker from the statistics dump.
fn wal_syncs(opts: &Options) -> Option<u64> {
    let stats = opts.get_statistics()?;
    stats.lines().find_map(|l| {
        let rest = l.strip_prefix("rocksdb.wal.synced ")?;
        rest.split(':').nth(1)?.trim().parse().ok()
    })
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.enable_statistics();
    let db = DB::open(&opts, &args.dir).map_err(|e| format!("open {}: {e}", args.dir.display()))?;
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let val = value(args.value_bytes);
    db.put_opt(key(u32::MAX, 0), &val, &wo)
        .map_err(|e| format!("warm-up put: {e}"))?;

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(args.threads + 1);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let merged = Mutex::new(histogram());
    let duration = Duration::from_secs_f64(args.secs);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = proc_self("status", "VmRSS:") * 1024;
    let wchar0 = proc_self("io", "wchar:");
    let syncs0 = wal_syncs(&opts);
    let mut total = 0u64;
    let (cpu0, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (db, wo, val) = (&db, &wo, &val);
                let (stop, barrier, first_error, merged) = (&stop, &barrier, &first_error, &merged);
                s.spawn(move || {
                    let mut h = histogram();
                    let mut seq = 0u64;
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        if let Err(e) = db.put_opt(key(t as u32, seq), val, wo) {
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(format!("put: {e}"));
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        let ns = t0.elapsed().as_nanos().clamp(1, u64::MAX as u128) as u64;
                        h.saturating_record(ns);
                        seq += 1;
                    }
                    let _ = merged.lock().unwrap_or_else(|p| p.into_inner()).add(&h);
                    seq
                })
            })
            .collect();
        let cpu0 = cpu_time();
        barrier.wait();
        let start = Instant::now();
        let deadline = start + duration;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            match h.join() {
                Ok(n) => total += n,
                Err(_) => {
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| "a writer thread panicked".into());
                }
            }
        }
        (cpu0, start.elapsed())
    });
    let cpu = cpu_time().saturating_sub(cpu0);
    let peak_rss = proc_self("status", "VmHWM:") * 1024;
    let wchar = proc_self("io", "wchar:").saturating_sub(wchar0);
    let syncs = match (syncs0, wal_syncs(&opts)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let keys = db.iterator(IteratorMode::Start).try_fold(0u64, |n, kv| {
        kv.map(|_| n + 1).map_err(|e| format!("read back: {e}"))
    })?;
    if keys != total + 1 {
        return Err(format!("read back {keys} keys, wrote {}", total + 1));
    }
    drop(db);
    let h = merged.into_inner().unwrap_or_else(|p| p.into_inner());
    let buckets: Vec<[u64; 2]> = h
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect();
    Ok(serde_json::json!({
        "system": "rocksdb",
        "threads": args.threads,
        "value_bytes": args.value_bytes,
        "entries": total,
        "written": total + 1,
        "elapsed_ns": elapsed.as_nanos() as u64,
        "producing_ns": elapsed.as_nanos() as u64,
        "cpu_ns": cpu.as_nanos() as u64,
        "peak_rss": peak_rss,
        "rss_before": rss_before,
        "wchar": wchar,
        "syncs": syncs,
        "keys_read_back": keys,
        "linked": option_env!("ROCKSDB_LIB_DIR").map_or("built from source", |_| "system library"),
        "latency_ns": buckets,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rocksdb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
