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
use crate::report::{Ratio, Section, Table, num, rate, ratio};
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

/// How many progress steps [`run`] counts.
pub fn planned_runs(s: &Settings) -> u64 {
    // Two hyperlog logs and two peer logs written, then per round two read
    // passes and three recoveries.
    (4 + 6 * s.rounds) as u64
}

/// Reads every file under `dir` once (page cache warm-up).
fn warm_dir(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.is_file() {
            warm(&p)?;
            total += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
    }
    Ok(total)
}

/// One timed recovery: open the log with its owner's API and read every
/// entry back.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    entries: u64,
    elapsed: Duration,
    cpu: Duration,
    peak_rss: u64,
    rss_before: u64,
}

fn timed_recovery(f: impl FnOnce() -> Result<u64, String>) -> Result<Recovery, String> {
    let mem = crate::measure::MemStart::now();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let entries = f()?;
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let (peak_rss, rss_before, _) = mem.end();
    Ok(Recovery {
        entries,
        elapsed,
        cpu,
        peak_rss,
        rss_before,
    })
}

/// How hyperlog's recovery reads the entries back.
#[derive(Clone, Copy)]
enum Decode {
    /// `read_entries_blocking::<Message>`: every entry with its whole envelope.
    Envelope,
    /// `replay_blocking::<Message>`: the entry and its LSN only.
    Replay,
    /// `read_records`: payload bytes, CRC checked, undecoded.
    Raw,
}

/// hyperlog's recovery: open the WAL context (its recovery scan: framing,
/// CRC-32, last LSN), read every entry back as `decode` says, close.
fn hyperlog_recover(path: &Path, decode: Decode) -> Result<u64, String> {
    let h = Hyperlog::open(
        "recover",
        ContextOptions::new()
            .path(path)
            .durability(DurabilityMode::FsyncBatch)
            .format(LogFormat::Binary)
            .enable_lsn(true),
    )?;
    let mut n = 0u64;
    match decode {
        Decode::Envelope => {
            for item in hyperlog::read_entries_blocking::<Message>(path, 0, ReadOptions::default())
            {
                let (_offset, log, _lsn) =
                    item.map_err(|e| format!("read_entries_blocking: {e}"))?;
                std::hint::black_box(&log);
                n += 1;
            }
        }
        Decode::Replay => {
            for item in hyperlog::replay_blocking::<Message>(path, 0, ReadOptions::default()) {
                let (_offset, entry, _lsn) = item.map_err(|e| format!("replay_blocking: {e}"))?;
                std::hint::black_box(&entry);
                n += 1;
            }
        }
        Decode::Raw => {
            for item in hyperlog::read_records(path, 0, ReadOptions::default()) {
                let raw = item.map_err(|e| format!("read_records: {e}"))?;
                std::hint::black_box(&raw);
                n += 1;
            }
        }
    }
    h.close()?;
    Ok(n)
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
        crate::progress::done(format!(
            "readback: wrote {label}: {} entries, {} MB in {:.2} s",
            rate(w.entries as f64),
            num(w.bytes as f64 / MB),
            w.elapsed.as_secs_f64()
        ));
        warm(&path)?;
        files.push((label, path, w, Vec::<Pass>::new(), Vec::<Pass>::new()));
    }
    // The peers' logs: as many entries as hyperlog's binary log, each
    // record as long as hyperlog's binary records, so the three logs hold
    // the same entries in about the same bytes.
    let (hl_entries, hl_bytes, hl_path) =
        (files[0].2.entries, files[0].2.bytes, files[0].1.clone());
    let record_len = (hl_bytes / hl_entries.max(1)).max(1) as usize;
    let record = payload::text(record_len).into_bytes();
    let okay_dir = dir.path().join("okaywal");
    let raft_dir = dir.path().join("raft-engine");
    let mut peer_bytes = Vec::new();
    for (name, d) in [("okaywal", &okay_dir), ("raft-engine", &raft_dir)] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        let t = Instant::now();
        if name == "okaywal" {
            crate::wal_peers::okaywal_build(d, &record, hl_entries)?;
        } else {
            crate::wal_peers::raft_build(d, &record, hl_entries)?;
        }
        let bytes = warm_dir(d)?;
        crate::progress::done(format!(
            "readback: wrote {name}: {} entries of {record_len} B, {} MB in {:.2} s",
            rate(hl_entries as f64),
            num(bytes as f64 / MB),
            t.elapsed().as_secs_f64()
        ));
        peer_bytes.push(bytes);
    }
    let systems = [
        "hyperlog, typed entries",
        "okaywal",
        "raft-engine",
        "hyperlog, raw records",
        "hyperlog, typed values",
    ];
    let mut recoveries: Vec<Vec<Recovery>> = vec![Vec::new(); systems.len()];
    for round in 0..s.rounds {
        for (k, name) in systems.iter().enumerate() {
            let k = (k + round) % systems.len();
            let r = match k {
                0 => timed_recovery(|| hyperlog_recover(&hl_path, Decode::Envelope))?,
                3 => timed_recovery(|| hyperlog_recover(&hl_path, Decode::Raw))?,
                4 => timed_recovery(|| hyperlog_recover(&hl_path, Decode::Replay))?,
                1 => timed_recovery(|| crate::wal_peers::okaywal_recover(&okay_dir).map(|x| x.0))?,
                _ => timed_recovery(|| crate::wal_peers::raft_recover(&raft_dir).map(|x| x.0))?,
            };
            if r.entries != hl_entries {
                return Err(format!(
                    "{} recovered {} entries, wrote {hl_entries}",
                    systems[k], r.entries
                ));
            }
            let _ = name;
            crate::progress::done(format!(
                "readback round {}/{}: recover {:<22} {:>7.2} s  {:>10} entries/s",
                round + 1,
                s.rounds,
                systems[k],
                r.elapsed.as_secs_f64(),
                rate(r.entries as f64 / r.elapsed.as_secs_f64().max(1e-9)),
            ));
            recoveries[k].push(r);
        }
        for (label, path, w, reads, scans) in files.iter_mut() {
            let r = read_pass(path, w.entries)?;
            let sc = scan_pass(path, w.entries)?;
            crate::progress::done(format!(
                "readback round {}/{}: {label:<6} read {:>10} entries/s {:>7} MB/s   scan {:>7} MB/s",
                round + 1,
                s.rounds,
                rate(r.records as f64 / r.elapsed.as_secs_f64()),
                num(w.bytes as f64 / MB / r.elapsed.as_secs_f64()),
                num(w.bytes as f64 / MB / sc.elapsed.as_secs_f64()),
            ));
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
    let mut rtable = Table::new(&[
        "system",
        "log MB",
        "entries",
        "open + read all, s",
        "entries/s",
        "MB/s",
        "CPU s / M entries",
        "peak RSS MiB (+growth)",
    ]);
    let mut rdata = Vec::new();
    let log_bytes = [hl_bytes, peer_bytes[0], peer_bytes[1], hl_bytes, hl_bytes];
    for (k, name) in systems.iter().enumerate() {
        let rs = &recoveries[k];
        if rs.is_empty() {
            continue;
        }
        let m = |f: &dyn Fn(&Recovery) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
        let secs = m(&|r| r.elapsed.as_secs_f64());
        let eps = m(&|r| r.entries as f64 / r.elapsed.as_secs_f64().max(1e-9));
        let mbs = m(&|r| log_bytes[k] as f64 / MB / r.elapsed.as_secs_f64().max(1e-9));
        let cpu = m(&|r| r.cpu.as_secs_f64() * 1e6 / r.entries.max(1) as f64);
        let peak = m(&|r| r.peak_rss as f64 / 1048576.0);
        let growth = m(&|r| r.peak_rss.saturating_sub(r.rss_before) as f64 / 1048576.0);
        rtable.row(vec![
            name.to_string(),
            num(log_bytes[k] as f64 / MB),
            rate(hl_entries as f64),
            format!("{secs:.2}"),
            rate(eps),
            num(mbs),
            num(cpu),
            format!("{} (+{})", num(peak), num(growth)),
        ]);
        rdata.push(json!({
            "system": name,
            "log_bytes": log_bytes[k],
            "entries": hl_entries,
            "secs_median": secs,
            "entries_per_s_median": eps,
            "mb_per_s_median": mbs,
            "cpu_s_per_million_median": cpu,
            "peak_rss_mib_median": peak,
            "peak_rss_growth_mib_median": growth,
            "secs": rs.iter().map(|r| r.elapsed.as_secs_f64()).collect::<Vec<_>>(),
        }));
    }
    let rec_rate = |k: usize| {
        median(
            &recoveries[k]
                .iter()
                .map(|r| r.entries as f64 / r.elapsed.as_secs_f64().max(1e-9))
                .collect::<Vec<_>>(),
        )
    };
    let ratios: Vec<Ratio> = [
        (
            "hyperlog typed entries / raft-engine: recovery (open + read all) entries/s",
            0,
            2,
        ),
        (
            "hyperlog typed values / raft-engine: recovery (open + read all) entries/s",
            4,
            2,
        ),
        (
            "hyperlog raw records / raft-engine: recovery (open + read all) entries/s",
            3,
            2,
        ),
        (
            "hyperlog typed entries / okaywal: recovery (open + read all) entries/s",
            0,
            1,
        ),
        (
            "hyperlog raw records / okaywal: recovery (open + read all) entries/s",
            3,
            1,
        ),
    ]
    .into_iter()
    .map(|(what, a, b)| Ratio {
        what: what.into(),
        value: ratio(rec_rate(a), rec_rate(b)),
    })
    .filter(|r| r.value.is_finite())
    .collect();
    let _ = std::fs::remove_dir_all(&okay_dir);
    let _ = std::fs::remove_dir_all(&raft_dir);
    let mut table_md = String::from("\n### Recovery: open + read back every entry\n\n");
    table_md.push_str(&rtable.to_markdown());
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
            format!(
                "Recovery (second table): each system opens its own log and reads every entry back, page cache warm (each log was read once, untimed, after it was written); {} pass(es) each, interleaved, medians. hyperlog: `Logger::context_with_blocking` on the binary WAL (FsyncBatch, LSNs: its recovery scan checks framing, CRC-32 and finds the last LSN), then either `read_entries_blocking::<Message>` decoding every entry and its whole envelope with serde (*typed entries*), `replay_blocking::<Message>` decoding only each entry and its LSN (*typed values*: what an application recovering its state needs; in a binary log the call-site fields after the entry are not parsed, and the records are read and checked ahead on a second thread while the caller decodes), or `read_records` handing back every record's payload bytes, CRC checked, undecoded (*raw records*: what the peers do), then close. okaywal: `Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX).open(manager)`, whose recovery hands every entry to the manager, which reads all its chunks (`read_all_chunks`, CRC checked). raft-engine: `Engine::open` (its recovery reads every file, default 4 recovery threads) then `fetch_entries_to` over every entry, 10,000 at a time.",
                s.rounds
            ),
            format!(
                "The peers' logs hold as many entries as hyperlog's binary log, each a {record_len}-byte record (hyperlog's bytes per entry), written through their own APIs in entries/batches of {} (okaywal: chunks of one entry, checkpointing off so that all of it is recovered; raft-engine: one region, batch compression off so the file holds the bytes).",
                crate::wal_peers::BUILD_BATCH
            ),
        ],
        table,
        ratios,
        data: json!({ "files": data, "recovery": rdata, "extra_markdown": table_md }),
    })
}
