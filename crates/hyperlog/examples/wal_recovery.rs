//! A write-ahead log across a crash: a child process logs commands with
//! group commit and is killed with SIGKILL; the parent reopens the log,
//! reads the recovery report, checks that every acknowledged command is
//! there, and replays the log from an LSN.
//!
//! Run with `cargo run --example wal_recovery`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use hyperlog::{
    ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
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

fn wal_options(path: &std::path::Path) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(LogFormat::Binary)
        .enable_lsn(true)
        .instance_id(7)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--child") {
        // The writer: log forever, printing each acknowledged LSN.
        let path = std::path::PathBuf::from(args.next().ok_or("missing path")?);
        let logger = Logger::new();
        let wal = logger.context_with_blocking("wal", wal_options(&path))?;
        for job_id in 0.. {
            let lsn = wal.log_blocking(JobCreated {
                level: LogLevel::Info,
                message: None,
                job_id,
            })?;
            println!("{job_id} {}", lsn.map_or(0, Lsn::get));
        }
        return Ok(());
    }

    let dir = std::env::temp_dir().join(format!("hyperlog-wal-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("jobs.wal");
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    while acked.len() < 500 {
        let line = lines.next().ok_or("the child stopped early")??;
        let mut parts = line.split(' ');
        let job: u64 = parts.next().unwrap_or("0").parse()?;
        let lsn: u64 = parts.next().unwrap_or("0").parse()?;
        acked.push((job, Lsn::new(lsn)));
    }
    child.kill()?; // SIGKILL: no chance to flush or close
    child.wait()?;
    println!(
        "killed the writer after {} acknowledged commands",
        acked.len()
    );

    // Reopening recovers: a torn tail is cut (and kept in a side file).
    let logger = Logger::new();
    let wal = logger.context_with_blocking("wal", wal_options(&path))?;
    let report = wal.recovery_report().ok_or("no report")?;
    println!(
        "recovered {} records, last LSN {:?}, {} torn bytes cut{}",
        report.records,
        report.last_lsn.map(Lsn::get),
        report.bytes_cut,
        report
            .saved_to
            .map(|p| format!(" (kept in {})", p.display()))
            .unwrap_or_default()
    );
    let next = wal.log_blocking(JobCreated {
        level: LogLevel::Info,
        message: Some("after recovery".into()),
        job_id: u64::MAX,
    })?;
    logger.close_blocking()?;

    // Every acknowledged command is on disk, with the LSN it was given.
    let on_disk: std::collections::HashMap<u64, Lsn> =
        hyperlog::read_entries_blocking::<JobCreated>(&path, 0, ReadOptions::default())
            .map(|r| r.map(|(_, log, lsn)| (log.entry.job_id, lsn.unwrap_or(Lsn::new(0)))))
            .collect::<Result<_, _>>()?;
    for (job, lsn) in &acked {
        assert_eq!(
            on_disk.get(job),
            Some(lsn),
            "acknowledged job {job} is missing"
        );
    }
    println!(
        "all {} acknowledged commands are there; the next LSN {:?} continues above them",
        acked.len(),
        next.map(Lsn::get)
    );

    // Replay from a checkpoint: everything at or above an LSN.
    let checkpoint = acked[acked.len() / 2].1;
    let replayed = hyperlog::read_entries_blocking::<JobCreated>(
        &path,
        0,
        ReadOptions::default().from_lsn(checkpoint),
    )
    .count();
    println!(
        "replaying from LSN {} yields {replayed} commands",
        checkpoint.get()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
