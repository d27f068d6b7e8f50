//! # hyperlog
//!
//! A fast, structured, async logger whose contexts can each opt into being a
//! **write-ahead log**: `fsync` or group-commit durability, a binary format
//! with CRC-32, 64-bit snowflake LSNs, typed read-back and crash recovery.
//! One API serves ordinary logs (the *data plane*) and the durable log of a
//! control plane.
//!
//! ## The data plane
//!
//! ```
//! # futures::executor::block_on(async {
//! use hyperlog::{ContextOptions, Logger, Message};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("logs/hyperscale.leader.log.json");
//! let logger = Logger::new();
//! logger.configure("stats", ContextOptions::new().path(&path))?;
//! let stats = logger.context("stats").await?;
//! stats.log(Message::info("Stats update")).await?; // written to the OS
//! logger.close().await?;
//! # Ok::<(), hyperlog::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## The write-ahead log
//!
//! ```
//! # futures::executor::block_on(async {
//! use hyperlog::{ContextOptions, DurabilityMode, Entry, LogFormat, LogLevel, Logger, ReadOptions};
//! use futures::StreamExt;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
//! struct JobCreated { level: LogLevel, message: Option<String>, job_id: u64 }
//! impl Entry for JobCreated { fn level(&self) -> LogLevel { self.level } }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data/hyperscale.wal.log");
//! let logger = Logger::new();
//! let wal = logger.context_with("node_wal", ContextOptions::new()
//!     .path(&path)
//!     .durability(DurabilityMode::FsyncBatch)
//!     .format(LogFormat::Binary)
//!     .enable_lsn(true)
//!     .instance_id(7)).await?;
//! let lsn = wal.log(JobCreated { level: LogLevel::Info, message: None, job_id: 1 }).await?;
//! assert!(lsn.is_some());                 // durable: its group's fdatasync finished
//! wal.close().await?;
//!
//! let mut entries = hyperlog::read_entries::<JobCreated>(&path, 0, ReadOptions::default());
//! while let Some(item) = entries.next().await {
//!     let (_offset, log, read_lsn) = item?;
//!     assert_eq!(log.entry.job_id, 1);
//!     assert_eq!(read_lsn, lsn);
//! }
//! assert_eq!(hyperlog::get_last_lsn(&path).await?, lsn);
//! # Ok::<(), hyperlog::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## The durability contract
//!
//! | mode | `log()` returns `Ok` when | survives |
//! | --- | --- | --- |
//! | `None` | accepted into the context's bounded queue | nothing |
//! | `Flush` (default) | written to the OS (`write(2)` done) | a crash or kill of the process |
//! | `Fsync` | that entry's own `fdatasync` finished | power loss |
//! | `FsyncBatch` | the group `fdatasync` covering the entry finished | power loss |
//!
//! A write or sync failure is never swallowed in `Flush`, `Fsync` and
//! `FsyncBatch`: the caller gets the error, and the context is then
//! *poisoned*: every later `log` fails with [`Error::Poisoned`] naming the
//! first failure, until the context is reopened (`Logger::context` opens a
//! poisoned context afresh, recovering from what is on disk). In `None` mode
//! errors go to the error handler and are returned by the next
//! `flush`/`close`.
//!
//! **Shutdown**: `close()` drains the queue, syncs and releases the file;
//! dropping the last handle does the same. A process that calls
//! `std::process::exit` without closing can lose only `None`-mode entries
//! still in the queue: every other mode acknowledged its entries only after
//! they reached the OS. [`Logger::install_panic_hook`] flushes on panic.
//!
//! ## Levels
//!
//! An entry below its context's minimum level returns `Ok(None)` unwritten.
//! **An explicit [`ContextOptions::level`] always wins; without one, a
//! write-ahead log (a context that syncs or carries LSNs) drops nothing,
//! and any other context takes the `HYPERLOG_LEVEL` environment variable
//! ([`LEVEL_ENV`]) when set, else INFO**: a logging knob never silently
//! drops a command from a write-ahead log.
//!
//! ## Recovery
//!
//! Opening an existing file for append scans it first. A torn last record
//! (a crash mid-write) is cut off and kept in a side file next to the log
//! (`{path}.torn-{offset}`); damage *followed by* an intact record is
//! corruption in the middle and refuses to open unless
//! [`RecoveryMode::SkipCorrupted`] is chosen. LSNs continue above the last
//! one on disk. See [`Context::recovery_report`].
//!
//! ## Retention and segments
//!
//! A [`RetentionPolicy`] (the reference's string map or typed values, checked
//! at configure time) rotates a file when any of `max_size`, `max_age` or
//! `rotation_time` is met. A data-plane log is sealed and compressed to a
//! zstd archive off the writer's thread, and `max_archives` /
//! `max_archive_age` prune old archives ([`stream::read_archive`] reads
//! one's records back). A write-ahead log (a context that
//! syncs or carries LSNs) is sealed into readable [`segments`] instead, which
//! [`read_entries`] reads as one log and [`Context::truncate_before`]
//! deletes (retention deletes segments only when the policy opts in with
//! [`RetentionPolicy::delete_wal_segments`]):
//!
//! ```
//! # fn main() -> Result<(), hyperlog::Error> {
//! use hyperlog::{ContextOptions, DurabilityMode, LogFormat, Logger, Message, ReadOptions, RetentionPolicy};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("node.wal");
//! let logger = Logger::new();
//! let wal = logger.context_with_blocking("wal", ContextOptions::new()
//!     .path(&path)
//!     .durability(DurabilityMode::FsyncBatch)
//!     .format(LogFormat::Binary)
//!     .enable_lsn(true)
//!     .retention_policy(RetentionPolicy::new().max_size(4096)))?;
//! let mut lsns = Vec::new();
//! for i in 0..100 {
//!     lsns.push(wal.log_blocking(Message::info(format!("command {i}")))?.unwrap());
//! }
//! assert!(hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path).len() > 1);
//! // A checkpoint covers the first half: drop the segments entirely below it.
//! let removed = wal.truncate_before_blocking(lsns[50])?;
//! assert!(!removed.is_empty());
//! let rest: Vec<_> = hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
//!     .collect::<Result<_, _>>()?;
//! assert!(rest.iter().any(|(_, _, lsn)| *lsn == Some(lsns[50])));
//! assert_eq!(rest.last().map(|e| e.2), Some(Some(lsns[99])));
//! # Ok(()) }
//! ```
//!
//! ## Mapping from the reference
//!
//! The names of the Python reference (`hyperscale.logging`) are kept:
//! `DurabilityMode::{None, Flush, Fsync, FsyncBatch}` are `NONE`, `FLUSH`,
//! `FSYNC`, `FSYNC_BATCH`; `Message` is the base `Entry`; the JSON-lines and
//! binary formats are byte-compatible.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

#[cfg(any(feature = "tracing", feature = "log"))]
mod adapters;
mod entry;
mod error;
pub mod follow;
pub mod format;
pub mod fs;
mod group_commit;
mod level;
mod logger;
mod lsn;
mod options;
pub mod reader;
pub mod retention;
mod rotation;
pub mod segments;
pub mod state;
pub mod stream;
pub mod template;
mod writer;

#[cfg(feature = "tracing")]
pub use adapters::HyperlogLayer;
#[cfg(feature = "log")]
pub use adapters::HyperlogLogger;
#[cfg(any(feature = "tracing", feature = "log"))]
pub use adapters::{EcosystemEvent, SpanFields};
pub use entry::{CallSite, Entry, Log, Message};
pub use error::{Error, Result};
pub use format::LogFormat;
pub use level::LogLevel;
pub use logger::{Context, Logger, WriterStats};
pub use lsn::{Lsn, LsnGenerator};
pub use options::{
    ConsoleStream, ContextOptions, DurabilityMode, ErrorHandler, LEVEL_ENV, RecoveryMode,
    SYNC_THREAD_ENV,
};
pub use reader::{
    EntryIter, EntryStream, RawEntry, RawIter, ReadOptions, ReplayIter, ReplayStream, ScanSummary,
    TornTail, get_last_lsn, get_last_lsn_blocking, read_entries, read_entries_blocking,
    read_log_records, read_records, replay, replay_blocking, scan_log,
};
pub use retention::RetentionPolicy;
pub use state::DurableState;
pub use template::Template;
pub use writer::RecoveryReport;

/// Reads a log into untyped JSON values, for tools that do not know the
/// entry types.
pub fn read_values(
    path: impl AsRef<std::path::Path>,
    from_offset: u64,
    options: ReadOptions,
) -> EntryIter<serde_json::Value> {
    read_entries_blocking(path, from_offset, options)
}

/// Runs a future to completion on the current thread by parking it between
/// polls. Unlike `futures::executor::block_on` it may be called from inside
/// another executor (a `Drop`, a `*_blocking` call in async code), which is
/// what the blocking forms of the API need.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The README's examples, compiled as doc tests so they keep working.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
