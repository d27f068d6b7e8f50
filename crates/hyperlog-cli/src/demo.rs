//! `demo`: throughput of a data-plane context and a WAL, then a writer
//! killed with SIGKILL and recovered, then a replicated stage (a 3-process
//! openraft cluster on hyperlog stores, its leader killed: `demo_raft.rs`).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyperlog::{
    ContextOptions, DurabilityMode, LogFormat, Logger, Message, ReadOptions, RecoveryMode,
};

use crate::util::{Fail, Out, style};

const DATA_THREADS: usize = 2;
const WAL_THREADS: usize = 4;
/// Acknowledgements to wait for before killing the child writer.
const ACKS_BEFORE_KILL: usize = 400;

fn wal_options(path: &Path, instance: u32) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .enable_lsn(true)
        .instance_id(instance)
}

fn lib(e: hyperlog::Error) -> Fail {
    e.into()
}

/// `hyperlog demo`.
pub fn demo(seconds: u64, dir: Option<PathBuf>) -> Result<u8, Fail> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("hyperlog-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| Fail::std("create directory", &dir, e))?;
    let mut out = Out::new();
    let b = style::BOLD;
    let g = style::GOOD;
    out.line(&format!(
        "{b}hyperlog demo{b:#} in {} ({seconds} s of load, then a crash)",
        dir.display()
    ))?;
    out.flush()?;

    // 1. Throughput: a data-plane context and a WAL, concurrent producers.
    let logger = Logger::new();
    let stats_path = dir.join("stats.log.json");
    let wal_path = dir.join("node.wal");
    let stats = logger
        .context_with_blocking(
            "stats",
            ContextOptions::new()
                .path(&stats_path)
                .durability(DurabilityMode::Flush),
        )
        .map_err(lib)?;
    let wal = logger
        .context_with_blocking("node_wal", wal_options(&wal_path, 7))
        .map_err(lib)?;
    let stop = Arc::new(AtomicBool::new(false));
    let data_n = Arc::new(AtomicU64::new(0));
    let wal_n = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..DATA_THREADS {
        let (ctx, stop, n, errors) = (stats.clone(), stop.clone(), data_n.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = Message::info(format!("stats update {i} from producer {t}")).tag("stats");
                match ctx.log_blocking(m) {
                    Ok(_) => n.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        }));
    }
    for t in 0..WAL_THREADS {
        let (ctx, stop, n, errors) = (wal.clone(), stop.clone(), wal_n.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let m = Message::info(format!("job {i} created by producer {t}"));
                match ctx.log_blocking(m) {
                    Ok(_) => n.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        }));
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(seconds * 10)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(s) = indicatif::ProgressStyle::with_template("{bar:30} {elapsed} {msg}") {
        bar.set_style(s);
    }
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        bar.inc(1);
        bar.set_message(format!(
            "data plane {}  wal {}",
            data_n.load(Ordering::Relaxed),
            wal_n.load(Ordering::Relaxed)
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    stats.close_blocking().map_err(lib)?;
    wal.close_blocking().map_err(lib)?;
    let (dn, wn) = (
        data_n.load(Ordering::Relaxed),
        wal_n.load(Ordering::Relaxed),
    );
    out.line(&format!("{b}1. throughput{b:#} ({elapsed:.1} s)"))?;
    out.line(&format!(
        "  data plane (Flush, JSON, {DATA_THREADS} producers): {dn} entries, {:.0}/s -> {}",
        dn as f64 / elapsed,
        stats_path.display()
    ))?;
    out.line(&format!(
        "  WAL (FsyncBatch, binary, LSNs, {WAL_THREADS} producers): {wn} durable entries, {:.0}/s -> {}",
        wn as f64 / elapsed,
        wal_path.display()
    ))?;
    let sum = hyperlog::scan_log(
        &hyperlog::fs::StdFs,
        &wal_path,
        None,
        hyperlog::format::DEFAULT_MAX_RECORD_SIZE,
        RecoveryMode::TolerateTail,
    )
    .map_err(lib)?;
    out.line(&format!(
        "  read back: {} WAL records, LSNs {} .. {}",
        sum.records,
        sum.first_lsn.map_or("-".into(), |l| l.to_string()),
        sum.last_lsn.map_or("-".into(), |l| l.to_string())
    ))?;
    if errors.load(Ordering::Relaxed) > 0 {
        out.line(&format!(
            "  {} writes failed",
            errors.load(Ordering::Relaxed)
        ))?;
    }
    out.flush()?;

    // 2. Crash: a child writer killed with SIGKILL mid-stream.
    let crash_dir = dir.join("crash");
    std::fs::create_dir_all(&crash_dir)
        .map_err(|e| Fail::std("create directory", &crash_dir, e))?;
    let exe = std::env::current_exe().map_err(|e| Fail::io(format!("find own executable: {e}")))?;
    let mut child = Command::new(exe)
        .arg("demo")
        .arg("--child-writer")
        .arg(&crash_dir)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Fail::io(format!("spawn the child writer: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Fail::io("the child writer has no stdout"))?;
    let mut acked: Vec<u64> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut killed = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Ok(l) = line.trim().parse::<u64>() {
            acked.push(l);
        }
        if acked.len() >= ACKS_BEFORE_KILL && !killed {
            // Child::kill sends SIGKILL.
            let _ = child.kill();
            killed = true;
        }
    }
    // Lines still in the pipe were acknowledged before the kill.
    let status = child.wait();
    if !killed {
        return Err(Fail::io(format!(
            "the child writer stopped by itself after {} acknowledged LSNs ({})",
            acked.len(),
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        )));
    }
    out.line(&format!(
        "{b}2. crash{b:#}: child writer killed with SIGKILL after {} acknowledged LSNs",
        acked.len()
    ))?;
    let crash_wal = crash_dir.join("crash.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("crash_wal", wal_options(&crash_wal, 9))
        .map_err(lib)?;
    if let Some(r) = ctx.recovery_report() {
        out.line(&format!(
            "  recovery: {} records, last LSN {}, {} bytes cut{}",
            r.records,
            r.last_lsn.map_or("-".into(), |l| l.to_string()),
            r.bytes_cut,
            r.saved_to
                .as_ref()
                .map(|p| format!(", torn tail kept in {}", p.display()))
                .unwrap_or_default()
        ))?;
        if let Some(d) = &r.tail_damage {
            out.line(&format!("  tail damage: {d}"))?;
        }
    }
    let after = ctx
        .log_blocking(Message::info("first entry after recovery"))
        .map_err(lib)?;
    ctx.close_blocking().map_err(lib)?;
    let mut on_disk = HashSet::new();
    for item in hyperlog::read_records(&crash_wal, 0, ReadOptions::default()) {
        let e = item.map_err(lib)?;
        if let Some(l) = e.lsn {
            on_disk.insert(l.get());
        }
    }
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|l| !on_disk.contains(l))
        .collect();
    let above = match (after, acked.iter().max()) {
        (Some(a), Some(&m)) => a.get() > m,
        _ => true,
    };
    out.line(&format!(
        "  {} records on disk; every acknowledged LSN present: {}; new LSNs continue above: {}",
        on_disk.len(),
        missing.is_empty(),
        above
    ))?;
    let ok = missing.is_empty() && above && !acked.is_empty();
    out.flush()?;
    let replicated = crate::demo_raft::replicated(&dir, seconds, &mut out)?;
    let ok = ok && replicated;
    if ok {
        out.line(&format!(
            "{g}summary{g:#}: {wn} WAL entries and {dn} data-plane entries in {elapsed:.1} s; {} acknowledged entries survived SIGKILL; no acknowledged replicated write lost to the leader's SIGKILL",
            acked.len()
        ))?;
    } else {
        let r = style::BAD;
        out.line(&format!(
            "{r}summary{r:#}: {} acknowledged LSNs are missing after the crash (first: {:?}), or a replicated write is",
            missing.len(),
            missing.first()
        ))?;
    }
    out.line(&format!(
        "  try: hyperlog verify {} ; hyperlog cat {} --output table --explain-lsn --limit 5",
        crash_wal.display(),
        wal_path.display()
    ))?;
    out.flush()?;
    Ok(if ok { 0 } else { 2 })
}

/// The child of the crash demo: writes to `{dir}/crash.wal` until killed,
/// printing each acknowledged LSN.
pub fn child_writer(dir: &Path) -> Result<u8, Fail> {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("crash_wal", wal_options(&dir.join("crash.wal"), 9))
        .map_err(lib)?;
    let mut threads = Vec::new();
    for t in 0..WAL_THREADS {
        let ctx = ctx.clone();
        threads.push(std::thread::spawn(move || -> Result<(), Fail> {
            let mut i = 0u64;
            loop {
                let lsn = ctx
                    .log_blocking(Message::info(format!("job {i} from writer {t}")))
                    .map_err(lib)?;
                if let Some(l) = lsn {
                    let mut so = std::io::stdout().lock();
                    if writeln!(so, "{l}").and_then(|()| so.flush()).is_err() {
                        return Ok(());
                    }
                }
                i += 1;
            }
        }));
    }
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            return Err(e);
        }
    }
    Ok(0)
}
