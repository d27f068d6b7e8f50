//! Scenario `durable`: the write-ahead-log modes.
//!
//! `Fsync` (one `fdatasync` per entry) and `FsyncBatch` (group commit) with
//! 1, 8, 64 and 256 producer threads, entries whose message field is padded
//! to 100 B or 1 KiB, JSON and binary, LSNs on (the WAL configuration). For
//! each: throughput, acknowledgement latency (every call timed with
//! `Instant`, per-thread HDR histograms merged), `fdatasync`s per second
//! (`Context::stats().syncs`), process CPU per million entries and bytes
//! written per entry. The baseline is a bare loop of `write_all` +
//! `File::sync_data` of 100-byte records from one thread, run at the start
//! and end of every round; its p50 is the bare `fdatasync` latency. Each
//! `Fsync` run is immediately followed by the `FsyncBatch` run of the same
//! shape, so their ratio compares neighbours in time.
//!
//! The peers run in the same rounds, each shape after hyperlog's of the same
//! size and producer count: okaywal and raft-engine in this process, RocksDB
//! (100 B values, 1 and 64 threads) as a child process, the binary of
//! `peers/rocksdb-bench` (its own workspace, so that RocksDB's C++ library is
//! never built by the hyperlog workspace), when one is found (see
//! [`rocksdb_bin`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use hyperlog::{DurabilityMode, LogFormat};
use serde_json::json;

use crate::measure::{Drive, drive, drive_tasks, latency_histogram, median, quantile_us};
use crate::peers::{Hyperlog, RawFsync};
use crate::report::{Ratio, Section, Table, num, rate, ratio};
use crate::{Settings, payload};

/// Producer thread counts.
pub const PRODUCERS: [usize; 4] = [1, 8, 64, 256];
/// Message field sizes in bytes.
pub const SIZES: [usize; 2] = [100, 1024];
/// Record formats of hyperlog (binary, the WAL format, as the peers'; the
/// JSON figures of earlier runs are in BENCHMARKS.md).
pub const FORMATS: [LogFormat; 1] = [LogFormat::Binary];
/// Modes.
pub const MODES: [DurabilityMode; 2] = [DurabilityMode::Fsync, DurabilityMode::FsyncBatch];
/// The baseline's record size.
pub const RAW_RECORD_BYTES: usize = 100;

const RAW_APPEND: &str = "raw append write_all+sync_data";
const RAW_ZEROED: &str = "raw pre-zeroed pwrite+sync_data";

/// How the producers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// OS threads calling `log_blocking`.
    Threads,
    /// Tokio tasks (two worker threads) awaiting `log`.
    Tasks,
}

/// Whose log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// hyperlog (mode, format and driver from the shape).
    Hyperlog,
    /// hyperlog `FsyncBatch` syncing on a thread of its own
    /// (`ContextOptions::sync_thread(true)`, the pipelined group commit),
    /// side by side with the default (100 B, 64 and 256 producers).
    HyperlogSyncThread,
    /// okaywal, commit per entry.
    OkayWal,
    /// raft-engine, synced write per entry.
    RaftEngine,
    /// RocksDB, a synced put per entry (child process).
    RocksDb,
}

/// Producer counts of the RocksDB rows (100 B values only).
pub const ROCKSDB_PRODUCERS: [usize; 2] = [1, 64];
/// Value size of the RocksDB rows.
pub const ROCKSDB_VALUE_BYTES: usize = 100;

static ROCKSDB_BIN: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` as the RocksDB peer's binary (the `--rocksdb-bin` option);
/// the first call wins.
pub fn set_rocksdb_bin(path: PathBuf) {
    let _ = ROCKSDB_BIN.set(path);
}

/// Where the RocksDB peer's binary was looked for, and whether it is there.
#[derive(Debug, Clone)]
pub enum RocksDbBin {
    /// Found at this path.
    Found(PathBuf),
    /// Named by `--rocksdb-bin` or `HYPERLOG_BENCH_ROCKSDB` but absent.
    Missing(PathBuf),
    /// Not named, and not at any of the usual build locations.
    NotBuilt,
}

/// The RocksDB peer's binary: the path given to [`set_rocksdb_bin`], else
/// `$HYPERLOG_BENCH_ROCKSDB`, else the first that exists of
/// `peers/rocksdb-bench/target/release/rocksdb-bench`,
/// `$CARGO_TARGET_DIR/release/rocksdb-bench` and the workspace's
/// `target/release/rocksdb-bench`.
pub fn rocksdb_bin() -> RocksDbBin {
    let named = ROCKSDB_BIN.get().cloned().or_else(|| {
        std::env::var_os("HYPERLOG_BENCH_ROCKSDB")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = named {
        return if p.is_file() {
            RocksDbBin::Found(p)
        } else {
            RocksDbBin::Missing(p)
        };
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates = vec![root.join("peers/rocksdb-bench/target/release/rocksdb-bench")];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release/rocksdb-bench"));
    }
    candidates.push(root.join("target/release/rocksdb-bench"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map_or(RocksDbBin::NotBuilt, RocksDbBin::Found)
}

/// One RocksDB run: the peer's binary with `threads` writers for the
/// settings' run time in `dir`; the figures of its JSON line (latency
/// histogram rebuilt from its buckets) and its WAL sync count.
fn run_rocksdb(
    bin: &Path,
    s: &Settings,
    dir: &Path,
    threads: usize,
    value_bytes: usize,
) -> Result<(Drive, Option<u64>), String> {
    let args = vec![
        "--threads".to_string(),
        threads.to_string(),
        "--secs".into(),
        s.run.as_secs_f64().to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--value-bytes".into(),
        value_bytes.to_string(),
    ];
    let v = crate::logger_peers::run_json_child(bin, &args)?;
    let mut d = crate::logger_peers::drive_from_json(&v)?;
    let mut h = latency_histogram();
    for pair in v
        .get("latency_ns")
        .and_then(|l| l.as_array())
        .ok_or("rocksdb-bench: no latency_ns")?
    {
        let (Some(value), Some(count)) = (
            pair.get(0).and_then(|x| x.as_u64()),
            pair.get(1).and_then(|x| x.as_u64()),
        ) else {
            return Err(format!("rocksdb-bench: bad latency bucket {pair}"));
        };
        h.saturating_record_n(value.max(1), count);
    }
    if h.len() != d.entries {
        return Err(format!(
            "rocksdb-bench: {} latencies for {} entries",
            h.len(),
            d.entries
        ));
    }
    d.latency = Some(h);
    Ok((d, v.get("syncs").and_then(|x| x.as_u64())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    system: System,
    mode: DurabilityMode,
    format: LogFormat,
    size: usize,
    producers: usize,
    driver: Driver,
}

impl Shape {
    fn label(&self) -> String {
        match self.system {
            System::OkayWal => {
                return format!("okaywal {} x{}", size_name(self.size), self.producers);
            }
            System::RaftEngine => {
                return format!("raft-engine {} x{}", size_name(self.size), self.producers);
            }
            System::RocksDb => {
                return format!("rocksdb {} x{}", size_name(self.size), self.producers);
            }
            System::Hyperlog | System::HyperlogSyncThread => {}
        }
        format!(
            "{} {} {} x{}{}{}",
            mode_name(self.mode),
            format_name(self.format),
            size_name(self.size),
            self.producers,
            match self.driver {
                Driver::Threads => "",
                Driver::Tasks => " tasks",
            },
            if self.system == System::HyperlogSyncThread {
                ", sync thread"
            } else {
                ""
            }
        )
    }
}

fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Json => "json",
        LogFormat::Binary => "binary",
    }
}

fn mode_name(m: DurabilityMode) -> &'static str {
    match m {
        DurabilityMode::None => "None",
        DurabilityMode::Flush => "Flush",
        DurabilityMode::Fsync => "Fsync",
        DurabilityMode::FsyncBatch => "FsyncBatch",
    }
}

fn size_name(n: usize) -> String {
    if n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// One timed run.
#[derive(Debug, Clone)]
struct Sample {
    drive: Drive,
    /// Syncs, where the system lets them be counted.
    syncs: Option<u64>,
    /// The log's size, where it is one growing file.
    file_bytes: Option<u64>,
}

impl Sample {
    fn syncs_per_s(&self) -> f64 {
        self.syncs.map_or(f64::NAN, |n| {
            n as f64 / self.drive.elapsed.as_secs_f64().max(1e-9)
        })
    }
    fn bytes_per_entry(&self) -> f64 {
        self.file_bytes
            .map_or(f64::NAN, |b| self.drive.bytes_per_entry(b))
    }
}

/// All runs of one shape.
#[derive(Debug, Clone, Default)]
struct Agg {
    samples: Vec<Sample>,
}

impl Agg {
    /// The median over rounds; NaN when no round has the figure.
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self
            .samples
            .iter()
            .map(f)
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() { f64::NAN } else { median(&v) }
    }
    fn rate(&self) -> f64 {
        self.med(|x| x.drive.rate())
    }
    /// Pushes `what: throughput` and `what: p99 latency`, `self` over `base`.
    fn push_ratios(&self, base: &Agg, what: &str, ratios: &mut Vec<Ratio>) {
        ratios.push(Ratio {
            what: format!("{what}: throughput"),
            value: ratio(self.rate(), base.rate()),
        });
        ratios.push(Ratio {
            what: format!("{what}: p99 latency"),
            value: ratio(
                quantile_us(&self.latency(), 0.99),
                quantile_us(&base.latency(), 0.99),
            ),
        });
    }
    fn latency(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for s in &self.samples {
            if let Some(l) = &s.drive.latency {
                let _ = h.add(l);
            }
        }
        h
    }
}

fn file_len(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("stat {}: {e}", path.display()))
}

fn run_peer(s: &Settings, dir: &Path, shape: Shape) -> Result<Sample, String> {
    let sub = dir.join("peer");
    let _ = std::fs::remove_dir_all(&sub);
    std::fs::create_dir_all(&sub).map_err(|e| format!("create {}: {e}", sub.display()))?;
    let sample = match shape.system {
        System::OkayWal => {
            let mut p = crate::wal_peers::OkayWal::new(&sub, shape.size)?;
            let d = drive(&mut p, shape.producers, s.run, "", true)?;
            p.close()?;
            Sample {
                drive: d,
                syncs: None,
                file_bytes: None,
            }
        }
        System::RocksDb => {
            let RocksDbBin::Found(bin) = rocksdb_bin() else {
                return Err("the RocksDB peer's binary is gone".into());
            };
            let (d, syncs) = run_rocksdb(&bin, s, &sub, shape.producers, shape.size)?;
            Sample {
                drive: d,
                syncs,
                file_bytes: None,
            }
        }
        _ => {
            let mut p = crate::wal_peers::RaftEngine::new(&sub, shape.size)?;
            let before = crate::wal_peers::raft_engine_syncs();
            let d = drive(&mut p, shape.producers, s.run, "", true)?;
            let syncs = crate::wal_peers::raft_engine_syncs().saturating_sub(before);
            p.close()?;
            Sample {
                drive: d,
                syncs: Some(syncs),
                file_bytes: None,
            }
        }
    };
    std::fs::remove_dir_all(&sub).map_err(|e| format!("remove {}: {e}", sub.display()))?;
    Ok(sample)
}

fn run_shape(s: &Settings, dir: &Path, shape: Shape) -> Result<Sample, String> {
    if !matches!(shape.system, System::Hyperlog | System::HyperlogSyncThread) {
        return run_peer(s, dir, shape);
    }
    let path = dir.join(match shape.format {
        LogFormat::Json => "durable.log.json",
        LogFormat::Binary => "durable.wal",
    });
    let _ = std::fs::remove_file(&path);
    let text = payload::text(shape.size);
    let mut p = Hyperlog::open(
        "bench",
        hyperlog::ContextOptions::new()
            .path(&path)
            .durability(shape.mode)
            .format(shape.format)
            .enable_lsn(true)
            .sync_thread(shape.system == System::HyperlogSyncThread),
    )?;
    let before = p.context().stats().syncs;
    let d = match shape.driver {
        Driver::Threads => drive(&mut p, shape.producers, s.run, &text, true)?,
        Driver::Tasks => drive_tasks(p.context(), shape.producers, s.run, &text)?,
    };
    let syncs = p.context().stats().syncs - before;
    p.close()?;
    let file_bytes = file_len(&path)?;
    std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    Ok(Sample {
        drive: d,
        syncs: Some(syncs),
        file_bytes: Some(file_bytes),
    })
}

fn run_raw(s: &Settings, dir: &Path, prezeroed: bool) -> Result<Sample, String> {
    let path = dir.join("raw.log");
    let _ = std::fs::remove_file(&path);
    let mut p = RawFsync::new(&path, RAW_RECORD_BYTES, prezeroed)?;
    let d = drive(&mut p, 1, s.run, "", true)?;
    drop(p);
    let file_bytes = file_len(&path)?;
    std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    Ok(Sample {
        syncs: Some(d.written),
        drive: d,
        file_bytes: Some(file_bytes),
    })
}

/// Every shape, RocksDB's with `rocksdb`.
fn shapes_with(rocksdb: bool) -> Vec<Shape> {
    let mut v = Vec::new();
    for size in SIZES {
        for producers in PRODUCERS {
            for format in FORMATS {
                for mode in MODES {
                    v.push(Shape {
                        system: System::Hyperlog,
                        mode,
                        format,
                        size,
                        producers,
                        driver: Driver::Threads,
                    });
                }
                v.push(Shape {
                    system: System::Hyperlog,
                    mode: DurabilityMode::FsyncBatch,
                    format,
                    size,
                    producers,
                    driver: Driver::Tasks,
                });
            }
            if size == 100 && producers >= 64 {
                for driver in [Driver::Threads, Driver::Tasks] {
                    v.push(Shape {
                        system: System::HyperlogSyncThread,
                        mode: DurabilityMode::FsyncBatch,
                        format: LogFormat::Binary,
                        size,
                        producers,
                        driver,
                    });
                }
            }
            let rocks =
                rocksdb && size == ROCKSDB_VALUE_BYTES && ROCKSDB_PRODUCERS.contains(&producers);
            for system in [System::OkayWal, System::RaftEngine, System::RocksDb] {
                if system == System::RocksDb && !rocks {
                    continue;
                }
                v.push(Shape {
                    system,
                    mode: DurabilityMode::FsyncBatch,
                    format: LogFormat::Binary,
                    size,
                    producers,
                    driver: Driver::Threads,
                });
            }
        }
    }
    v
}

/// Every shape, RocksDB's if its binary is found.
fn shapes() -> Vec<Shape> {
    shapes_with(matches!(rocksdb_bin(), RocksDbBin::Found(_)))
}

/// How many timed runs [`run`] will make with these settings.
pub fn planned_runs(s: &Settings) -> u64 {
    let n = shapes().iter().filter(|x| s.selected(&x.label())).count() + 4;
    (n * s.rounds) as u64
}

fn progress(round: usize, rounds: usize, label: &str, x: &Sample) {
    let l = x.drive.latency.clone().unwrap_or_else(latency_histogram);
    crate::progress::done(format!(
        "durable round {}/{}: {label:<36} {:>10} entries/s  p50 {:>9} us  p99 {:>9} us  {:>7} syncs/s",
        round + 1,
        rounds,
        rate(x.drive.rate()),
        num(quantile_us(&l, 0.5)),
        num(quantile_us(&l, 0.99)),
        rate(x.syncs_per_s()),
    ));
}

/// Runs the scenario; progress goes to stderr.
pub fn run(s: &Settings) -> Result<Section, String> {
    let dir = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let shapes = shapes();
    let mut aggs: Vec<Agg> = vec![Agg::default(); shapes.len()];
    let mut raw = Agg::default();
    let mut raw_zeroed = Agg::default();
    let mut baselines = |round: usize| -> Result<(), String> {
        let x = run_raw(s, dir.path(), false)?;
        progress(round, s.rounds, RAW_APPEND, &x);
        raw.samples.push(x);
        let x = run_raw(s, dir.path(), true)?;
        progress(round, s.rounds, RAW_ZEROED, &x);
        raw_zeroed.samples.push(x);
        Ok(())
    };
    for round in 0..s.rounds {
        baselines(round)?;
        for (i, &shape) in shapes.iter().enumerate() {
            let label = shape.label();
            if !s.selected(&label) {
                continue;
            }
            let x = run_shape(s, dir.path(), shape)?;
            progress(round, s.rounds, &label, &x);
            aggs[i].samples.push(x);
        }
        baselines(round)?;
    }

    let mut table = Table::new(&[
        "system",
        "message",
        "producers",
        "as",
        "entries/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "fsync/s",
        "entries / sync",
        "CPU s / M entries",
        "file B / entry",
        "write(2) B / entry",
        "peak RSS MiB (+growth)",
    ]);
    let mut data = Vec::new();
    let mut push_row = |system: &str, size: usize, producers: usize, driver: &str, a: &Agg| {
        let l = a.latency();
        let syncs = a.med(Sample::syncs_per_s);
        let peak = a.med(|x| x.drive.peak_rss as f64 / (1024.0 * 1024.0));
        let growth = a.med(|x| x.drive.peak_growth_mib());
        table.row(vec![
            system.into(),
            size_name(size),
            producers.to_string(),
            driver.into(),
            rate(a.rate()),
            num(quantile_us(&l, 0.5)),
            num(quantile_us(&l, 0.99)),
            num(quantile_us(&l, 0.999)),
            rate(syncs),
            num(ratio(a.rate(), syncs)),
            num(a.med(|x| x.drive.cpu_per_million())),
            num(a.med(Sample::bytes_per_entry)),
            num(a.med(|x| x.drive.wchar_per_entry())),
            format!("{} (+{})", num(peak), num(growth)),
        ]);
        data.push(json!({
            "system": system,
            "message_bytes": size,
            "producers": producers,
            "driver": driver,
            "entries_per_s_median": a.rate(),
            "latency_us": {
                "p50": quantile_us(&l, 0.5),
                "p99": quantile_us(&l, 0.99),
                "p99_9": quantile_us(&l, 0.999),
                "max": l.max() as f64 / 1000.0,
                "count": l.len(),
            },
            "fsync_per_s_median": if syncs.is_finite() { json!(syncs) } else { json!(null) },
            "cpu_s_per_million_median": a.med(|x| x.drive.cpu_per_million()),
            "file_bytes_per_entry_median": a.med(Sample::bytes_per_entry),
            "write_bytes_per_entry_median": a.med(|x| x.drive.wchar_per_entry()),
            "peak_rss_mib_median": peak,
            "peak_rss_growth_mib_median": growth,
            "runs": a.samples.iter().map(|x| json!({
                "entries": x.drive.entries,
                "secs": x.drive.elapsed.as_secs_f64(),
                "syncs": x.syncs,
                "cpu_s": x.drive.cpu.as_secs_f64(),
                "file_bytes": x.file_bytes,
                "write_bytes": x.drive.wchar,
                "peak_rss": x.drive.peak_rss,
                "rss_before": x.drive.rss_before,
            })).collect::<Vec<_>>(),
        }));
    };
    push_row(RAW_APPEND, RAW_RECORD_BYTES, 1, "thread", &raw);
    push_row(RAW_ZEROED, RAW_RECORD_BYTES, 1, "thread", &raw_zeroed);
    for (i, shape) in shapes.iter().enumerate() {
        if aggs[i].samples.is_empty() {
            continue;
        }
        push_row(
            &system_name(shape),
            shape.size,
            shape.producers,
            match shape.driver {
                Driver::Threads => "threads",
                Driver::Tasks => "tasks",
            },
            &aggs[i],
        );
    }

    let find = |system, mode, format, size, producers, driver| {
        let want = Shape {
            system,
            mode,
            format,
            size,
            producers,
            driver,
        };
        shapes
            .iter()
            .position(|s| *s == want)
            .map(|i| &aggs[i])
            .filter(|a| !a.samples.is_empty())
    };
    let hl = |mode, format, size, producers, driver| {
        find(System::Hyperlog, mode, format, size, producers, driver)
    };
    let peer = |system, size, producers| {
        find(
            system,
            DurabilityMode::FsyncBatch,
            LogFormat::Binary,
            size,
            producers,
            Driver::Threads,
        )
    };
    let rocksdb_note = match rocksdb_bin() {
        RocksDbBin::Found(p) => format!(
            "RocksDB (`{}`, peers/rocksdb-bench: rocksdb crate 0.20, default `Options`, statistics on): each call is `DB::put_opt(key, value, &WriteOptions {{ sync: true }})` of a {ROCKSDB_VALUE_BYTES}-byte value under the thread's own 12-byte key (thread, sequence number); RocksDB's write thread groups concurrent writers into one WAL write and one sync. It runs as a child process (its CPU, RSS and write(2) bytes are that process's) in the same rounds, for 1 and 64 threads; the child reads every key back after the run. fsync/s is its own `rocksdb.wal.synced` ticker.",
            p.display()
        ),
        RocksDbBin::Missing(p) => format!(
            "RocksDB: not built ({} does not exist; see peers/rocksdb-bench/README)",
            p.display()
        ),
        RocksDbBin::NotBuilt => "RocksDB: not built (see peers/rocksdb-bench/README)".into(),
    };
    // The physical bound of producers that each wait for their own
    // acknowledgement: every sync the disk can do (the pre-zeroed loop's
    // rate, this run) carrying one entry of every producer.
    let bare_syncs = raw_zeroed.rate();
    let raw_p50 = quantile_us(&raw.latency(), 0.5);
    let raw_zeroed_p50 = quantile_us(&raw_zeroed.latency(), 0.5);
    let mut ratios = Vec::new();
    for size in SIZES {
        for producers in [64, 256] {
            for (driver, dname) in [(Driver::Threads, "threads"), (Driver::Tasks, "tasks")] {
                let Some(h) = hl(
                    DurabilityMode::FsyncBatch,
                    LogFormat::Binary,
                    size,
                    producers,
                    driver,
                ) else {
                    continue;
                };
                if let Some(w) = find(
                    System::HyperlogSyncThread,
                    DurabilityMode::FsyncBatch,
                    LogFormat::Binary,
                    size,
                    producers,
                    driver,
                ) {
                    let what = format!(
                        "FsyncBatch binary {} x{producers} ({dname}): sync thread / writer syncs (default)",
                        size_name(size)
                    );
                    w.push_ratios(h, &what, &mut ratios);
                }
                ratios.push(Ratio {
                    what: format!(
                        "FsyncBatch binary {} x{producers} ({dname}) / physical bound ({producers} x bare syncs/s = {} entries/s)",
                        size_name(size),
                        num(producers as f64 * bare_syncs)
                    ),
                    value: ratio(h.rate(), producers as f64 * bare_syncs),
                });
                for (system, pname) in [
                    (System::OkayWal, "okaywal"),
                    (System::RaftEngine, "raft-engine"),
                    (System::RocksDb, "rocksdb"),
                ] {
                    if let Some(p) = peer(system, size, producers) {
                        let what = format!(
                            "FsyncBatch binary {} x{producers} ({dname}) / {pname} (threads)",
                            size_name(size)
                        );
                        h.push_ratios(p, &what, &mut ratios);
                    }
                }
            }
        }
    }
    for format in FORMATS {
        let f = format_name(format);
        for (base, b) in [
            ("raw append loop", &raw),
            ("raw pre-zeroed loop", &raw_zeroed),
        ] {
            if let Some(a) = hl(DurabilityMode::Fsync, format, 100, 1, Driver::Threads) {
                ratios.push(Ratio {
                    what: format!("Fsync {f} 100 B, 1 producer / {base}: throughput"),
                    value: ratio(a.rate(), b.rate()),
                });
                // The same, paired with the loop's run just before it (the
                // start of the same round): neighbours in time.
                let paired: Vec<f64> = a
                    .samples
                    .iter()
                    .zip(b.samples.iter().step_by(2))
                    .map(|(x, y)| ratio(x.drive.rate(), y.drive.rate()))
                    .collect();
                ratios.push(Ratio {
                    what: format!(
                        "Fsync {f} 100 B, 1 producer / {base} at the start of the same round: throughput (median of per-round ratios)"
                    ),
                    value: median(&paired),
                });
            }
            if let Some(a) = hl(DurabilityMode::FsyncBatch, format, 100, 1, Driver::Threads) {
                ratios.push(Ratio {
                    what: format!("FsyncBatch {f} 100 B, 1 producer / {base}: p50 latency"),
                    value: ratio(
                        quantile_us(&a.latency(), 0.5),
                        quantile_us(&b.latency(), 0.5),
                    ),
                });
            }
        }
        for (system, pname) in [
            (System::OkayWal, "okaywal"),
            (System::RaftEngine, "raft-engine"),
            (System::RocksDb, "rocksdb"),
        ] {
            if let Some(p) = peer(system, 100, 1) {
                ratios.push(Ratio {
                    what: format!("{pname} 100 B, 1 producer / raw pre-zeroed loop: throughput"),
                    value: ratio(p.rate(), raw_zeroed.rate()),
                });
            }
        }
    }
    if let (Some(h), Some(p)) = (
        hl(
            DurabilityMode::Fsync,
            LogFormat::Binary,
            ROCKSDB_VALUE_BYTES,
            1,
            Driver::Threads,
        ),
        peer(System::RocksDb, ROCKSDB_VALUE_BYTES, 1),
    ) {
        let what = format!(
            "Fsync binary {} x1 / rocksdb (sync puts), 1 thread",
            size_name(ROCKSDB_VALUE_BYTES)
        );
        h.push_ratios(p, &what, &mut ratios);
    }
    for size in SIZES {
        for format in FORMATS {
            for (driver, name) in [(Driver::Threads, "threads"), (Driver::Tasks, "tasks")] {
                if let (Some(b), Some(a)) = (
                    hl(DurabilityMode::FsyncBatch, format, size, 64, driver),
                    hl(DurabilityMode::Fsync, format, size, 1, Driver::Threads),
                ) {
                    ratios.push(Ratio {
                        what: format!(
                            "FsyncBatch 64 producer {name} / Fsync 1 producer ({} {}): throughput",
                            format_name(format),
                            size_name(size)
                        ),
                        value: ratio(b.rate(), a.rate()),
                    });
                }
            }
        }
    }
    ratios.retain(|r| r.value.is_finite() && r.value > 0.0);
    Ok(Section {
        name: "durable".into(),
        title: "Write-ahead logs: hyperlog Fsync/FsyncBatch vs okaywal, raft-engine and RocksDB".into(),
        notes: vec![
            format!(
                "{} round(s) of {:.1} s per shape; throughput, syncs, CPU, size and memory are medians over rounds, latencies merge every call of every round.",
                s.rounds,
                s.run.as_secs_f64()
            ),
            "hyperlog: OS threads calling `Context::log_blocking(Message::info(text))` (*threads*) or tokio tasks on a two-worker runtime awaiting `Context::log` (*tasks*), binary format, LSNs on; `message` is the message field's size (the record adds the envelope: timestamp, level, LSN, CRC; see file B / entry). On two cores every blocked thread costs a context switch per entry, which tasks avoid.".into(),
            "okaywal 0.3 (default `Configuration`, a no-op `checkpoint_to`): each call is `begin_entry()`, `write_chunk(message)`, `commit()` (returns once fsynced; okaywal batches concurrent commits into one fsync). Its syncs are not countable from outside (no counter in its API): fsync/s is n/a.".into(),
            "raft-engine 0.4 (default `Config`, default features off): each call writes a `LogBatch` holding one entry (`add_entries`, the message plus an 8-byte index in a protobuf `BytesValue`) with `engine.write(&mut batch, true)`; every producer thread is its own raft group. fsync/s is raft-engine's own count (its `raft_engine_sync_log_duration_seconds` histogram).".into(),
            rocksdb_note,
            "Peers store the message bytes only; hyperlog stores a full record (the envelope is ~240 B), so hyperlog writes ~3.4x (100 B) / ~1.2x (1 KiB) more bytes per entry.".into(),
            "Latency is per call, `Instant` before and after the call: the time until the entry is acknowledged durable.".into(),
            format!(
                "Baselines, run first and last in each round: one thread writing a {RAW_RECORD_BYTES}-byte record then calling `File::sync_data`, in a loop; *append* uses `write_all` at the end of the file (each sync also commits the new size: bare fdatasync p50 = {} us), *pre-zeroed* uses `pwrite` over zeros written and synced in 4 MiB steps, as hyperlog preallocates for syncing modes by default (p50 = {} us).",
                num(raw_p50),
                num(raw_zeroed_p50)
            ),
            "CPU is the whole process (getrusage RUSAGE_SELF, user + system) per million entries, writer threads included. file B / entry: the log file's size over entries (n/a for the peers, whose directories hold preallocated, recycled segments); write(2) B / entry: bytes the process handed to write-family system calls during the run (`wchar` of /proc/self/io), preallocation zeros included.".into(),
            "Peak RSS: every run happens in this one process; before each run the kernel's high-water mark is reset (`echo 5 > /proc/self/clear_refs`), so the figure is the process's peak during that run (harness included); the growth is that peak minus the RSS just before the run.".into(),
        ],
        table,
        ratios,
        data: json!({ "shapes": data, "bare_syncs_per_s": bare_syncs }),
    })
}

fn system_name(shape: &Shape) -> String {
    match shape.system {
        System::OkayWal => "okaywal".into(),
        System::RaftEngine => "raft-engine".into(),
        System::RocksDb => "rocksdb".into(),
        System::Hyperlog => format!(
            "hyperlog {} {}",
            mode_name(shape.mode),
            format_name(shape.format)
        ),
        System::HyperlogSyncThread => format!(
            "hyperlog {} {}, sync thread",
            mode_name(shape.mode),
            format_name(shape.format)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_rows_only_when_built() {
        let rocks = |with| -> Vec<String> {
            shapes_with(with)
                .iter()
                .filter(|s| s.system == System::RocksDb)
                .map(Shape::label)
                .collect()
        };
        assert!(rocks(false).is_empty());
        assert_eq!(rocks(true), ["rocksdb 100 B x1", "rocksdb 100 B x64"]);
    }

    /// The harness side of the RocksDB peer, against a stand-in binary that
    /// prints a line of the same shape.
    #[test]
    fn rocksdb_line_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-rocksdb-bench");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho '{\"entries\":3,\"written\":4,\"elapsed_ns\":1000,\"producing_ns\":1000,\
             \"cpu_ns\":500,\"peak_rss\":10,\"rss_before\":5,\"wchar\":400,\"syncs\":2,\
             \"latency_ns\":[[1000,2],[5000,1]]}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Settings {
            run: std::time::Duration::from_millis(10),
            rounds: 1,
            scratch: dir.path().to_path_buf(),
            readback_bytes: 0,
            quick: true,
            only: None,
        };
        let (d, syncs) = run_rocksdb(&bin, &s, dir.path(), 2, 100).unwrap();
        assert_eq!((d.entries, d.written, syncs), (3, 4, Some(2)));
        let h = d.latency.unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.max(), h.highest_equivalent(5000));
    }
}
