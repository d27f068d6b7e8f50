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

use std::path::Path;

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
/// Record formats.
pub const FORMATS: [LogFormat; 2] = [LogFormat::Json, LogFormat::Binary];
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    mode: DurabilityMode,
    format: LogFormat,
    size: usize,
    producers: usize,
    driver: Driver,
}

impl Shape {
    fn label(&self) -> String {
        format!(
            "{} {} {} x{}{}",
            mode_name(self.mode),
            format_name(self.format),
            size_name(self.size),
            self.producers,
            match self.driver {
                Driver::Threads => "",
                Driver::Tasks => " tasks",
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
    syncs: u64,
    file_bytes: u64,
}

impl Sample {
    fn syncs_per_s(&self) -> f64 {
        self.syncs as f64 / self.drive.elapsed.as_secs_f64().max(1e-9)
    }
    fn bytes_per_entry(&self) -> f64 {
        self.drive.bytes_per_entry(self.file_bytes)
    }
}

/// All runs of one shape.
#[derive(Debug, Clone, Default)]
struct Agg {
    samples: Vec<Sample>,
}

impl Agg {
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(&self.samples.iter().map(f).collect::<Vec<_>>())
    }
    fn rate(&self) -> f64 {
        self.med(|x| x.drive.rate())
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

fn run_shape(s: &Settings, dir: &Path, shape: Shape) -> Result<Sample, String> {
    let path = dir.join(match shape.format {
        LogFormat::Json => "durable.log.json",
        LogFormat::Binary => "durable.wal",
    });
    let _ = std::fs::remove_file(&path);
    let text = payload::text(shape.size);
    let mut p = Hyperlog::file(&path, shape.mode, shape.format, true)?;
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
        syncs,
        file_bytes,
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
        syncs: d.entries,
        drive: d,
        file_bytes,
    })
}

fn shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    for size in SIZES {
        for format in FORMATS {
            for producers in PRODUCERS {
                for mode in MODES {
                    v.push(Shape {
                        mode,
                        format,
                        size,
                        producers,
                        driver: Driver::Threads,
                    });
                }
                v.push(Shape {
                    mode: DurabilityMode::FsyncBatch,
                    format,
                    size,
                    producers,
                    driver: Driver::Tasks,
                });
            }
        }
    }
    v
}

fn progress(round: usize, rounds: usize, label: &str, x: &Sample) {
    let l = x.drive.latency.clone().unwrap_or_else(latency_histogram);
    eprintln!(
        "durable round {}/{}: {label:<36} {:>10} entries/s  p50 {:>9} us  p99 {:>9} us  {:>7} syncs/s",
        round + 1,
        rounds,
        rate(x.drive.rate()),
        num(quantile_us(&l, 0.5)),
        num(quantile_us(&l, 0.99)),
        rate(x.syncs_per_s()),
    );
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
        "mode",
        "format",
        "message",
        "producers",
        "as",
        "entries/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "fdatasync/s",
        "entries / sync",
        "CPU s / M entries",
        "bytes / entry",
    ]);
    let mut data = Vec::new();
    let mut push_row =
        |mode: &str, format: &str, size: usize, producers: usize, driver: &str, a: &Agg| {
            let l = a.latency();
            let syncs = a.med(Sample::syncs_per_s);
            table.row(vec![
                mode.into(),
                format.into(),
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
            ]);
            data.push(json!({
                "mode": mode,
                "format": format,
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
                "fdatasync_per_s_median": syncs,
                "cpu_s_per_million_median": a.med(|x| x.drive.cpu_per_million()),
                "bytes_per_entry_median": a.med(Sample::bytes_per_entry),
                "runs": a.samples.iter().map(|x| json!({
                    "entries": x.drive.entries,
                    "secs": x.drive.elapsed.as_secs_f64(),
                    "syncs": x.syncs,
                    "cpu_s": x.drive.cpu.as_secs_f64(),
                    "file_bytes": x.file_bytes,
                })).collect::<Vec<_>>(),
            }));
        };
    push_row(RAW_APPEND, "-", RAW_RECORD_BYTES, 1, "thread", &raw);
    push_row(RAW_ZEROED, "-", RAW_RECORD_BYTES, 1, "thread", &raw_zeroed);
    for (i, shape) in shapes.iter().enumerate() {
        if aggs[i].samples.is_empty() {
            continue;
        }
        push_row(
            mode_name(shape.mode),
            format_name(shape.format),
            shape.size,
            shape.producers,
            match shape.driver {
                Driver::Threads => "threads",
                Driver::Tasks => "tasks",
            },
            &aggs[i],
        );
    }

    let find = |mode, format, size, producers, driver| {
        let want = Shape {
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
    let raw_p50 = quantile_us(&raw.latency(), 0.5);
    let raw_zeroed_p50 = quantile_us(&raw_zeroed.latency(), 0.5);
    let mut ratios = Vec::new();
    for format in FORMATS {
        let f = format_name(format);
        for (base, b) in [
            ("raw append loop", &raw),
            ("raw pre-zeroed loop", &raw_zeroed),
        ] {
            if let Some(a) = find(DurabilityMode::Fsync, format, 100, 1, Driver::Threads) {
                ratios.push(Ratio {
                    what: format!("Fsync {f} 100 B, 1 producer / {base}: throughput"),
                    value: ratio(a.rate(), b.rate()),
                });
            }
            if let Some(a) = find(DurabilityMode::FsyncBatch, format, 100, 1, Driver::Threads) {
                ratios.push(Ratio {
                    what: format!("FsyncBatch {f} 100 B, 1 producer / {base}: p50 latency"),
                    value: ratio(
                        quantile_us(&a.latency(), 0.5),
                        quantile_us(&b.latency(), 0.5),
                    ),
                });
            }
        }
    }
    for size in SIZES {
        for format in FORMATS {
            for (driver, name) in [(Driver::Threads, "threads"), (Driver::Tasks, "tasks")] {
                if let (Some(b), Some(a)) = (
                    find(DurabilityMode::FsyncBatch, format, size, 64, driver),
                    find(DurabilityMode::Fsync, format, size, 1, Driver::Threads),
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
    Ok(Section {
        name: "durable".into(),
        title: "Write-ahead log: Fsync and FsyncBatch".into(),
        notes: vec![
            format!(
                "{} round(s) of {:.1} s per shape; throughput, syncs, CPU and size are medians over rounds, latencies merge every call of every round.",
                s.rounds,
                s.run.as_secs_f64()
            ),
            "Producers are OS threads calling `Context::log_blocking(Message::info(text))` (*threads*) or tokio tasks on a two-worker runtime awaiting `Context::log` (*tasks*), with LSNs on; `message` is the message field's size (the record adds the envelope, see bytes / entry). On two cores every blocked thread costs a context switch per entry, which tasks avoid.".into(),
            "Latency is per call, `Instant` before and after `log_blocking`: the time until the entry is acknowledged durable.".into(),
            format!(
                "Baselines, run first and last in each round: one thread writing a {RAW_RECORD_BYTES}-byte record then calling `File::sync_data`, in a loop; *append* uses `write_all` at the end of the file (each sync also commits the new size: bare fdatasync p50 = {} us), *pre-zeroed* uses `pwrite` over zeros written and synced in 4 MiB steps, as hyperlog preallocates for syncing modes by default (p50 = {} us).",
                num(raw_p50),
                num(raw_zeroed_p50)
            ),
            "CPU is the whole process (getrusage RUSAGE_SELF, user + system) per million entries, writer thread included.".into(),
        ],
        table,
        ratios,
        data: json!({ "shapes": data }),
    })
}
