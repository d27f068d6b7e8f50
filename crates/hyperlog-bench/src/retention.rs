//! Scenario `retention`: what rotation and segments cost.
//!
//! - **Rotation stall**: acknowledgement latency with and without rotation,
//!   side by side: a segmented WAL (`FsyncBatch`, binary, LSNs, 1 MiB
//!   segments) and a data-plane log (`Flush`, JSON, 1 MiB files compressed
//!   with zstd in the background), 8 producer threads. The figure of merit
//!   is the worst acknowledgement and p99.9 with rotation against p99
//!   without: a rotation should cost a few syncs, not a stall.
//! - **Open time**: opening a WAL context whose log has 1 sealed segment
//!   against one with 100 (recovery validates only the live file).
//! - **Seek time**: time to the first entry of `read_entries_blocking` with
//!   `from_lsn` at random LSNs of a segmented WAL of `readback_bytes`
//!   (1 GB by default; 64 MiB segments), page cache warm.

use std::path::Path;
use std::time::{Duration, Instant};

use hyperlog::retention::RetentionPolicy;
use hyperlog::{ContextOptions, DurabilityMode, LogFormat, Logger, Lsn, Message, ReadOptions};
use serde_json::json;

use crate::measure::{drive, median, quantile_us};
use crate::peers::Hyperlog;
use crate::report::{Ratio, Section, Table, num, rate, ratio};
use crate::{Settings, payload};

fn wal_options(path: &Path, segment_bytes: Option<u64>) -> ContextOptions {
    let o = ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .enable_lsn(true);
    match segment_bytes {
        Some(b) => o.retention_policy(RetentionPolicy::new().max_size(b)),
        None => o,
    }
}

struct Stall {
    label: String,
    rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    files: usize,
    rotations: u64,
    /// The longest time one rotation held the writer (WriterStats).
    longest_rotation_us: f64,
}

fn stall_run(
    s: &Settings,
    dir: &Path,
    label: &str,
    options: ContextOptions,
) -> Result<Stall, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut p = Hyperlog::open("stall", options)?;
    let text = payload::text(100);
    let d = drive(&mut p, 8, s.run, &text, true)?;
    let stats = p.context().stats();
    p.close()?;
    let files = std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0);
    let l = d
        .latency
        .clone()
        .unwrap_or_else(crate::measure::latency_histogram);
    Ok(Stall {
        label: label.into(),
        rate: d.rate(),
        p50: quantile_us(&l, 0.5),
        p99: quantile_us(&l, 0.99),
        p999: quantile_us(&l, 0.999),
        max: l.max() as f64 / 1000.0,
        files,
        rotations: stats.rotations,
        longest_rotation_us: stats.longest_rotation_us as f64,
    })
}

fn open_time(dir: &Path, segments: usize) -> Result<Duration, String> {
    let path = dir.join("open.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "open",
            wal_options(&path, Some(4096)).durability(DurabilityMode::None),
        )
        .map_err(|e| e.to_string())?;
    let text = payload::text(100);
    let mut n = 0;
    while hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len() < segments {
        ctx.log_blocking(Message::info(text.as_str()))
            .map_err(|e| e.to_string())?;
        n += 1;
        if n % 8 == 0 {
            ctx.flush_blocking().map_err(|e| e.to_string())?;
        }
    }
    logger.close_blocking().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let logger = Logger::new();
        let t = Instant::now();
        let ctx = logger
            .context_with_blocking("open", wal_options(&path, Some(4096)))
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
        drop(ctx);
        logger.close_blocking().map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(Duration::from_secs_f64(median(&times)))
}

fn seek_times(s: &Settings, dir: &Path) -> Result<(u64, usize, Vec<f64>), String> {
    let path = dir.join("seek.wal");
    let logger = Logger::new();
    // None + LSNs is a write-ahead log too: it rotates into segments.
    let ctx = logger
        .context_with_blocking(
            "seek",
            wal_options(&path, Some(64 << 20))
                .durability(DurabilityMode::None)
                .queue_capacity(100_000),
        )
        .map_err(|e| e.to_string())?;
    let text = payload::text(100);
    let mut lsns: Vec<Lsn> = Vec::new();
    let mut written = 0u64;
    let target = s.readback_bytes;
    while written < target {
        for _ in 0..10_000 {
            ctx.log_blocking(Message::info(text.as_str()))
                .map_err(|e| e.to_string())?;
        }
        ctx.flush_blocking().map_err(|e| e.to_string())?;
        written = ctx.stats().bytes_written;
    }
    logger.close_blocking().map_err(|e| e.to_string())?;
    // Sample LSNs from the log itself (None mode returns no LSN).
    for item in hyperlog::read_records(&path, 0, ReadOptions::default()) {
        if let Ok(r) = item
            && let Some(l) = r.lsn
        {
            lsns.push(l);
        }
    }
    let segments = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path);
    for seg in &segments {
        for item in hyperlog::read_records(&seg.path, 0, ReadOptions::default()) {
            if let Ok(r) = item
                && let Some(l) = r.lsn
            {
                lsns.push(l);
            }
        }
    }
    lsns.sort();
    let mut times = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..25 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let want = lsns[(x % lsns.len() as u64) as usize];
        let t = Instant::now();
        let first = hyperlog::read_entries_blocking::<Message>(
            &path,
            0,
            ReadOptions::default().from_lsn(want),
        )
        .next();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        match first {
            Some(Ok((_, _, Some(l)))) if l == want => {}
            other => return Err(format!("seek to {want} found {other:?}")),
        }
    }
    let files = segments.len() + 1;
    let bytes = written;
    let _ = std::fs::remove_dir_all(dir);
    Ok((bytes, files, times))
}

/// How many progress steps [`run`] counts.
pub fn planned_runs(s: &Settings) -> u64 {
    (4 * s.rounds + 2) as u64
}

/// Runs the scenario; progress goes to stderr.
pub fn run(s: &Settings) -> Result<Section, String> {
    let root = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let mut stalls = Vec::new();
    for round in 0..s.rounds {
        for (label, opts) in [
            ("FsyncBatch WAL, no rotation", None),
            ("FsyncBatch WAL, 1 MiB segments", Some(1 << 20)),
        ] {
            let dir = root.path().join(format!("wal-{round}"));
            let x = stall_run(s, &dir, label, wal_options(&dir.join("node.wal"), opts))?;
            crate::progress::done(format!(
                "retention round {}: {label}: p99 {:.0} us, max {:.0} us",
                round + 1,
                x.p99,
                x.max
            ));
            stalls.push(x);
        }
        for (label, policy) in [
            ("Flush JSON, no rotation", None),
            (
                "Flush JSON, 1 MiB files, zstd",
                Some(RetentionPolicy::new().max_size(1 << 20)),
            ),
        ] {
            let dir = root.path().join(format!("flush-{round}"));
            let mut o = ContextOptions::new().path(dir.join("app.log.json"));
            if let Some(p) = policy {
                o = o.retention_policy(p);
            }
            let x = stall_run(s, &dir, label, o)?;
            crate::progress::done(format!(
                "retention round {}: {label}: p99 {:.0} us, max {:.0} us",
                round + 1,
                x.p99,
                x.max
            ));
            stalls.push(x);
        }
    }
    let mut table = Table::new(&[
        "log",
        "entries/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "files after",
        "rotations",
        "longest rotation us",
    ]);
    let labels: Vec<String> = stalls.iter().take(4).map(|x| x.label.clone()).collect();
    let mut data = Vec::new();
    let med = |label: &str, f: &dyn Fn(&Stall) -> f64| {
        median(
            &stalls
                .iter()
                .filter(|x| x.label == label)
                .map(f)
                .collect::<Vec<_>>(),
        )
    };
    for l in &labels {
        table.row(vec![
            l.clone(),
            rate(med(l, &|x| x.rate)),
            num(med(l, &|x| x.p50)),
            num(med(l, &|x| x.p99)),
            num(med(l, &|x| x.p999)),
            num(med(l, &|x| x.max)),
            num(med(l, &|x| x.files as f64)),
            num(med(l, &|x| x.rotations as f64)),
            num(med(l, &|x| x.longest_rotation_us)),
        ]);
        data.push(json!({"log": l, "entries_per_s": med(l, &|x| x.rate), "p99_us": med(l, &|x| x.p99), "p99_9_us": med(l, &|x| x.p999), "max_us": med(l, &|x| x.max), "rotations": med(l, &|x| x.rotations as f64), "longest_rotation_us": med(l, &|x| x.longest_rotation_us)}));
    }
    let mut ratios = vec![
        Ratio {
            what: "FsyncBatch WAL: longest rotation (writer held) / p99 ack without rotation (<= 1 keeps every ack under 2x p99)".into(),
            value: ratio(
                med(&labels[1], &|x| x.longest_rotation_us),
                med(&labels[0], &|x| x.p99),
            ),
        },
        Ratio {
            what: "FsyncBatch WAL with 1 MiB segments: p99.9 / p99.9 without rotation".into(),
            value: ratio(med(&labels[1], &|x| x.p999), med(&labels[0], &|x| x.p999)),
        },
        Ratio {
            what: "FsyncBatch WAL with 1 MiB segments: p99.9 / p99 without rotation".into(),
            value: ratio(med(&labels[1], &|x| x.p999), med(&labels[0], &|x| x.p99)),
        },
        Ratio {
            what: "FsyncBatch WAL with 1 MiB segments: max / max without rotation".into(),
            value: ratio(med(&labels[1], &|x| x.max), med(&labels[0], &|x| x.max)),
        },
        Ratio {
            what: "Flush with zstd rotation: p99.9 / p99 without rotation".into(),
            value: ratio(med(&labels[3], &|x| x.p999), med(&labels[2], &|x| x.p99)),
        },
    ];

    let open1 = open_time(&root.path().join("open1"), 1)?;
    let open100 = open_time(&root.path().join("open100"), 100)?;
    crate::progress::done(format!(
        "retention: open 1 segment {:?}, 100 segments {:?}",
        open1, open100
    ));
    ratios.push(Ratio {
        what: "WAL open time, 100 segments / 1 segment".into(),
        value: ratio(open100.as_secs_f64(), open1.as_secs_f64()),
    });
    let (bytes, files, times) = seek_times(s, &root.path().join("seek"))?;
    let seek_med = median(&times);
    let seek_max = times.iter().copied().fold(0.0, f64::max);
    crate::progress::done(format!(
        "retention: seek median {seek_med:.2} ms, max {seek_max:.2} ms over {files} files"
    ));

    let mut t2 = Table::new(&["measure", "value"]);
    t2.row(vec![
        "open a WAL with 1 sealed segment (median of 7)".into(),
        format!("{:.2} ms", open1.as_secs_f64() * 1e3),
    ]);
    t2.row(vec![
        "open a WAL with 100 sealed segments (median of 7)".into(),
        format!("{:.2} ms", open100.as_secs_f64() * 1e3),
    ]);
    t2.row(vec![
        format!(
            "from_lsn seek to the first entry, {} MB WAL in {files} files (median of 25)",
            bytes / 1_000_000
        ),
        format!("{seek_med:.2} ms (max {seek_max:.2} ms)"),
    ]);
    for r in &t2.rows {
        table.row(vec![
            r[0].clone(),
            r[1].clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    Ok(Section {
        name: "retention".into(),
        title: "Retention: rotation stalls, open time, seeking".into(),
        notes: vec![
            format!("{} round(s) of {:.1} s per log, 8 producer threads, 100-byte messages; medians over rounds.", s.rounds, s.run.as_secs_f64()),
            "Rotation of a WAL seals the live file as a segment: on the writer's thread two renames (live file to segment, the preallocated `{path}.next` to the live path) and one directory fsync; trimming the segment, its sparse index, the clocks file and preparing the next file happen on a background thread. Rotation of a data-plane log also hands the sealed file to a background zstd thread. `longest rotation` is WriterStats::longest_rotation_us: the longest time one rotation held the writer.".into(),
            "Open time: `Logger::context_with_blocking` on an existing WAL; recovery scans only the live file, so it should not grow with the number of sealed segments.".into(),
            "Seek: `read_entries_blocking(path, 0, ReadOptions::from_lsn(l)).next()` at random LSNs; the segment is picked from the names and the entry from its sparse index.".into(),
        ],
        table,
        ratios,
        data: json!({"stalls": data, "open_1_segment_ms": open1.as_secs_f64() * 1e3, "open_100_segments_ms": open100.as_secs_f64() * 1e3, "seek_ms_median": seek_med, "seek_ms_max": seek_max, "seek_log_bytes": bytes, "seek_files": files}),
    })
}
