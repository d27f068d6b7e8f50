//! Scenario `readback`: how fast a log is read back for recovery.
//!
//! Writes a log of about `Settings::readback_bytes` (1 GB by default, 100 MB
//! with `--quick`) in each format with a fast mode (`None`, LSNs on, one
//! producer, batches of up to 100,000 entries, a flush every 50,000 entries
//! to check the size), reads each file once untimed so the page cache is
//! warm, then times, interleaved round by round:
//! `read_entries_blocking::<hyperlog::Message>` over the whole file (entries
//! decoded with serde) and `hyperlog::scan_log` (framing and CRC-32 checks
//! for binary, line syntax checks for JSON, no decoding). The files are
//! deleted afterwards.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use hyperlog::format::DEFAULT_MAX_RECORD_SIZE;
use hyperlog::fs::StdFs;
use hyperlog::{ContextOptions, DurabilityMode, LogFormat, Message, ReadOptions, RecoveryMode};
use serde_json::json;

use crate::measure::{cpu_time, median};
use crate::peers::Hyperlog;
use crate::report::{Section, Table, num, rate};
use crate::{Settings, payload};

/// The message size of the entries written.
pub const MESSAGE_BYTES: usize = 100;
/// Entries logged between two size checks.
const CHUNK: u64 = 50_000;

const MB: f64 = 1e6;

/// What writing one file measured.
#[derive(Debug, Clone)]
struct Written {
    entries: u64,
    bytes: u64,
    elapsed: Duration,
}

/// Writes the log until it holds at least `target` bytes.
fn write_log(path: &Path, format: LogFormat, target: u64) -> Result<Written, String> {
    let text = payload::text(MESSAGE_BYTES);
    let h = Hyperlog::open(
        "readback",
        ContextOptions::new()
            .path(path)
            .durability(DurabilityMode::None)
            .format(format)
            .enable_lsn(true)
            .queue_capacity(1 << 16)
            .batch_max_size(100_000),
    )?;
    let ctx = h.context().clone();
    let start = Instant::now();
    let mut entries = 0u64;
    loop {
        for _ in 0..CHUNK {
            ctx.log_blocking(Message::info(text.as_str()))
                .map_err(|e| format!("log: {e}"))?;
        }
        entries += CHUNK;
        ctx.flush_blocking().map_err(|e| format!("flush: {e}"))?;
        let len = std::fs::metadata(path)
            .map_err(|e| format!("stat {}: {e}", path.display()))?
            .len();
        if len >= target {
            break;
        }
    }
    let elapsed = start.elapsed();
    drop(ctx);
    h.close()?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .len();
    Ok(Written {
        entries,
        bytes,
        elapsed,
    })
}

/// Reads the whole file once so the timed passes find it in the page cache.
fn warm(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        }
    }
}

/// One timed pass.
#[derive(Debug, Clone, Copy)]
struct Pass {
    records: u64,
    elapsed: Duration,
    cpu: Duration,
}

fn read_pass(path: &Path, expect: u64) -> Result<Pass, String> {
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut records = 0u64;
    let mut text_bytes = 0usize;
    for item in hyperlog::read_entries_blocking::<Message>(path, 0, ReadOptions::default()) {
        let (_offset, log, _lsn) = item.map_err(|e| format!("read_entries_blocking: {e}"))?;
        text_bytes += log.entry.message.map_or(0, |m| m.len());
        records += 1;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    if records != expect || text_bytes != records as usize * MESSAGE_BYTES {
        return Err(format!(
            "read back {records} entries ({text_bytes} message bytes), wrote {expect}"
        ));
    }
    Ok(Pass {
        records,
        elapsed,
        cpu,
    })
}

fn scan_pass(path: &Path, expect: u64) -> Result<Pass, String> {
    let cpu0 = cpu_time();
    let start = Instant::now();
    let sum = hyperlog::scan_log(
        &StdFs,
        path,
        None,
        DEFAULT_MAX_RECORD_SIZE,
        RecoveryMode::TolerateTail,
    )
    .map_err(|e| format!("scan_log: {e}"))?;
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    if sum.records != expect || sum.torn.is_some() || !sum.skipped.is_empty() {
        return Err(format!("scan_log found {sum:?}, wrote {expect} records"));
    }
    Ok(Pass {
        records: sum.records,
        elapsed,
        cpu,
    })
}

/// Runs the scenario; progress goes to stderr.
pub fn run(s: &Settings) -> Result<Section, String> {
    let dir = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let formats = [LogFormat::Binary, LogFormat::Json];
    let mut files = Vec::new();
    for format in formats {
        let (name, label) = match format {
            LogFormat::Binary => ("readback.wal", "binary"),
            LogFormat::Json => ("readback.log.json", "json"),
        };
        let path = dir.path().join(name);
        let w = write_log(&path, format, s.readback_bytes)?;
        eprintln!(
            "readback: wrote {label}: {} entries, {} MB in {:.2} s",
            rate(w.entries as f64),
            num(w.bytes as f64 / MB),
            w.elapsed.as_secs_f64()
        );
        warm(&path)?;
        files.push((label, path, w, Vec::<Pass>::new(), Vec::<Pass>::new()));
    }
    for round in 0..s.rounds {
        for (label, path, w, reads, scans) in files.iter_mut() {
            let r = read_pass(path, w.entries)?;
            let sc = scan_pass(path, w.entries)?;
            eprintln!(
                "readback round {}/{}: {label:<6} read {:>10} entries/s {:>7} MB/s   scan {:>7} MB/s",
                round + 1,
                s.rounds,
                rate(r.records as f64 / r.elapsed.as_secs_f64()),
                num(w.bytes as f64 / MB / r.elapsed.as_secs_f64()),
                num(w.bytes as f64 / MB / sc.elapsed.as_secs_f64()),
            );
            reads.push(r);
            scans.push(sc);
        }
    }

    let mut table = Table::new(&[
        "format",
        "file MB",
        "entries",
        "bytes / entry",
        "write entries/s (None, 1 producer)",
        "read_entries entries/s",
        "read_entries MB/s",
        "read CPU s / M entries",
        "scan_log MB/s",
        "scan_log records/s",
    ]);
    let mut data = Vec::new();
    for (label, path, w, reads, scans) in &files {
        let secs = |p: &Pass| p.elapsed.as_secs_f64().max(1e-9);
        let read_rate = median(
            &reads
                .iter()
                .map(|p| p.records as f64 / secs(p))
                .collect::<Vec<_>>(),
        );
        let read_mb = median(
            &reads
                .iter()
                .map(|p| w.bytes as f64 / MB / secs(p))
                .collect::<Vec<_>>(),
        );
        let read_cpu = median(
            &reads
                .iter()
                .map(|p| p.cpu.as_secs_f64() * 1e6 / p.records.max(1) as f64)
                .collect::<Vec<_>>(),
        );
        let scan_mb = median(
            &scans
                .iter()
                .map(|p| w.bytes as f64 / MB / secs(p))
                .collect::<Vec<_>>(),
        );
        let scan_rate = median(
            &scans
                .iter()
                .map(|p| p.records as f64 / secs(p))
                .collect::<Vec<_>>(),
        );
        let write_rate = w.entries as f64 / w.elapsed.as_secs_f64().max(1e-9);
        table.row(vec![
            label.to_string(),
            num(w.bytes as f64 / MB),
            rate(w.entries as f64),
            num(w.bytes as f64 / w.entries.max(1) as f64),
            rate(write_rate),
            rate(read_rate),
            num(read_mb),
            num(read_cpu),
            num(scan_mb),
            rate(scan_rate),
        ]);
        data.push(json!({
            "format": label,
            "file_bytes": w.bytes,
            "entries": w.entries,
            "write_secs": w.elapsed.as_secs_f64(),
            "write_entries_per_s": write_rate,
            "read_entries_per_s_median": read_rate,
            "read_mb_per_s_median": read_mb,
            "read_cpu_s_per_million_median": read_cpu,
            "scan_mb_per_s_median": scan_mb,
            "scan_records_per_s_median": scan_rate,
            "read_secs": reads.iter().map(|p| p.elapsed.as_secs_f64()).collect::<Vec<_>>(),
            "scan_secs": scans.iter().map(|p| p.elapsed.as_secs_f64()).collect::<Vec<_>>(),
        }));
        std::fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    Ok(Section {
        name: "readback".into(),
        title: format!(
            "Read-back: {} MB logs, page cache warm",
            num(s.readback_bytes as f64 / MB)
        ),
        notes: vec![
            format!(
                "Each log holds entries with a {MESSAGE_BYTES}-byte message and an LSN, written in `None` mode by one producer (batches up to 100,000), then deleted after the runs."
            ),
            "Page cache warm: each file was just written and then read once, untimed, before the timed passes; these are memory-bound figures, not disk reads.".into(),
            format!(
                "{} timed pass(es) of each, interleaved; figures are medians. `read_entries_blocking::<hyperlog::Message>` decodes every entry with serde; `scan_log` checks framing and CRC-32 (binary) or line syntax (JSON) without decoding.",
                s.rounds
            ),
            "MB = 10^6 bytes of file.".into(),
        ],
        table,
        ratios: Vec::new(),
        data: json!({ "files": data }),
    })
}
