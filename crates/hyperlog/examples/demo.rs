//! The README's main command: the data plane and a write-ahead log side by
//! side, read back, then recovered after a simulated torn write.
//!
//! Run with `cargo run --release --example demo`.

use std::time::Instant;

use hyperlog::{
    ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Message, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct JobCreated {
    level: LogLevel,
    message: Option<String>,
    job_id: u64,
}

impl Entry for JobCreated {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hyperlog-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let logger = Logger::new();

    // Data plane: a console context and a JSON-lines file.
    let console = logger.context_blocking("console")?;
    hyperlog::info!(blocking: console, "hyperlog demo writing into {}", dir.display())?;
    let stats_path = dir.join("logs/hyperscale.leader.log.json");
    let stats = logger.context_with_blocking("stats", ContextOptions::new().path(&stats_path))?;
    let t = Instant::now();
    let n_stats = 100_000u64;
    for i in 0..n_stats {
        stats.log_blocking(Message::info(format!("stats update {i}")).tag("stats"))?;
    }
    stats.close_blocking()?;
    let el = t.elapsed();
    println!(
        "data plane: {n_stats} Flush entries in {:.0} ms ({:.0} entries/s, one producer)",
        el.as_secs_f64() * 1e3,
        n_stats as f64 / el.as_secs_f64()
    );

    // Control plane: a binary WAL with group commit and LSNs, 64 producers.
    let wal_path = dir.join("data/hyperscale.wal.log");
    let wal_opts = ContextOptions::new()
        .path(&wal_path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .enable_lsn(true)
        .instance_id(7);
    let wal = logger.context_with_blocking("node_wal", wal_opts.clone())?;
    let producers = 64u64;
    let per_producer = 500u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for p in 0..producers {
            let wal = wal.clone();
            s.spawn(move || {
                for i in 0..per_producer {
                    let job_id = p * per_producer + i;
                    let e = JobCreated {
                        level: LogLevel::Info,
                        message: None,
                        job_id,
                    };
                    wal.log_blocking(e).expect("durable write");
                }
            });
        }
    });
    let el = t.elapsed();
    let stats_w = wal.stats();
    let total = producers * per_producer;
    println!(
        "WAL: {total} FsyncBatch entries from {producers} producers in {:.0} ms ({:.0} durable entries/s, {} fdatasyncs, {:.1} entries per sync)",
        el.as_secs_f64() * 1e3,
        total as f64 / el.as_secs_f64(),
        stats_w.syncs,
        total as f64 / stats_w.syncs.max(1) as f64
    );
    wal.close_blocking()?;

    // Read-back: typed, with LSNs.
    let t = Instant::now();
    let mut read = 0u64;
    let mut last = None;
    for item in hyperlog::read_entries_blocking::<JobCreated>(&wal_path, 0, ReadOptions::default())
    {
        let (_, _log, lsn) = item?;
        assert!(lsn > last, "LSNs strictly increase in file order");
        last = lsn;
        read += 1;
    }
    println!(
        "read back {read} entries in {:.0} ms; last LSN {} (time {} ms, instance {}, sequence {})",
        t.elapsed().as_secs_f64() * 1e3,
        last.map(|l| l.get()).unwrap_or(0),
        last.map(|l| l.timestamp_ms()).unwrap_or(0),
        last.map(|l| l.instance_id()).unwrap_or(0),
        last.map(|l| l.sequence()).unwrap_or(0)
    );

    // Simulate a crash mid-write: append half a record, then reopen.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&wal_path)?;
        f.write_all(&[0x12, 0x34, 0x56, 0x78, 200, 0, 0, 0, 1, 2, 3])?;
    }
    let wal = logger.context_with_blocking("node_wal", wal_opts)?;
    let report = wal.recovery_report().expect("a file context has a report");
    println!(
        "recovery: {} records intact, torn tail of {} bytes cut and kept in {}",
        report.records,
        report.bytes_cut,
        report
            .saved_to
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    let next = wal.log_blocking(JobCreated {
        level: LogLevel::Info,
        message: Some("after recovery".into()),
        job_id: total,
    })?;
    assert!(next > last, "LSNs continue above the last one on disk");
    println!(
        "appended after recovery with LSN {}",
        next.map(|l| l.get()).unwrap_or(0)
    );
    logger.close_blocking()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
