//! The example of `shared/spec/API.md`, as written there (inside a function,
//! in a temporary directory), so the names users rely on keep compiling and
//! doing what the page says.

use futures::StreamExt;
use hyperlog::{
    Context, ContextOptions, DurabilityMode, Entry, Error, Log, LogFormat, LogLevel, Logger, Lsn,
    Message, ReadOptions, RecoveryMode, RetentionPolicy,
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

async fn api_md() -> Result<
    (
        Vec<(u64, Log<JobCreated>, Option<Lsn>)>,
        Option<Lsn>,
        Option<Lsn>,
    ),
    Error,
> {
    let logger = Logger::new();

    // Data plane: as before. JSON lines, flush to the OS, no LSN.
    logger.configure(
        "stats",
        ContextOptions::new()
            .path("logs/hyperscale.leader.log.json")
            .template("{timestamp} - {level} - {thread_id} - {filename}:{function_name}.{line_number} - {message}"),
    )?;
    let stats: Context = logger.context("stats").await?;
    assert_eq!(stats.log(Message::info("Stats update")).await?, None); // -> Ok(None)

    // Control plane: the same API, opted into WAL features.
    let wal = logger
        .context_with(
            "node_wal",
            ContextOptions::new()
                .path("data/hyperscale.wal.log")
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .instance_id(7),
        )
        .await?;
    let lsn: Option<Lsn> = wal
        .log(JobCreated {
            level: LogLevel::Info,
            message: None,
            job_id: 1,
        })
        .await?;
    wal.close().await?; // everything acknowledged is durable

    // Read-back for recovery: typed, from a byte offset, both formats.
    let mut entries =
        hyperlog::read_entries::<JobCreated>("data/hyperscale.wal.log", 0, ReadOptions::default());
    let mut all = Vec::new();
    while let Some(item) = entries.next().await {
        // futures::Stream
        let (offset, log, lsn): (u64, Log<JobCreated>, Option<Lsn>) = item?;
        all.push((offset, log, lsn));
    }
    let last: Option<Lsn> = hyperlog::get_last_lsn("data/hyperscale.wal.log").await?;
    logger.close().await?;
    let _ = (RecoveryMode::TolerateTail, RetentionPolicy::default());
    Ok((all, lsn, last))
}

#[test]
fn the_api_md_example_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    // The example uses relative paths; run it from a scratch directory in a
    // child process so the test harness's other threads keep their cwd.
    if std::env::var_os("HYPERLOG_API_EXAMPLE_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_api_md_example_works_as_written",
                "--nocapture",
            ])
            .env("HYPERLOG_API_EXAMPLE_CHILD", "1")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stats =
            std::fs::read_to_string(dir.path().join("logs/hyperscale.leader.log.json")).unwrap();
        assert_eq!(stats.lines().count(), 1);
        assert!(stats.starts_with(
            r#"{"entry":{"message":"Stats update","tags":[],"level":"INFO"},"filename":""#
        ));
        assert!(stats.ends_with(",\"lsn\":null}\n"));
        let wal = std::fs::read(dir.path().join("data/hyperscale.wal.log")).unwrap();
        assert_eq!(
            u32::from_le_bytes(wal[4..8].try_into().unwrap()) as usize,
            wal.len() - 16
        );
        return;
    }
    let (all, lsn, last) = futures::executor::block_on(api_md()).unwrap();
    assert!(lsn.is_some());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, 0);
    assert_eq!(
        all[0].1.entry,
        JobCreated {
            level: LogLevel::Info,
            message: None,
            job_id: 1
        }
    );
    assert_eq!(all[0].2, lsn);
    assert_eq!(last, lsn);
    assert_eq!(lsn.unwrap().instance_id(), 7);
}
