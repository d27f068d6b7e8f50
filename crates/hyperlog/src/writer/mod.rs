//! The one write path: a thread per open file (or console), fed by a bounded
//! queue.
//!
//! The writer takes whatever is queued (up to `batch_max_size` entries and
//! `batch_max_bytes` bytes; one entry in `Fsync` mode), finishes each record
//! (hands out its LSN, frames it), writes the group with one `write`, and then
//! applies the durability policy:
//!
//! | mode | after the write |
//! | --- | --- |
//! | `None` | nothing: producers were acknowledged on enqueue |
//! | `Flush` | acknowledge the group |
//! | `Fsync` | `fdatasync`, acknowledge the one entry |
//! | `FsyncBatch` | `fdatasync`, acknowledge the whole group |
//!
//! Entries that arrive while a sync runs wait in the queue and ride on the
//! next one: group commit without a fixed delay (`batch_timeout` adds one on
//! request).
//!
//! **Failure**: when a write or sync fails in `Flush`, `Fsync` or
//! `FsyncBatch`, the failing group gets the error and the writer is
//! *poisoned*: it never syncs that file again (Linux may have dropped the
//! dirty pages, so a retried `fdatasync` could report a false success) and
//! every entry queued behind or sent later gets [`Error::Poisoned`] naming the
//! first failure. No waiter is left hanging: every request holds a oneshot
//! sender, and a dropped sender reads as [`Error::Closed`]. In `None` mode
//! there is nobody to tell, so the error goes to the error handler and is
//! returned by the next `flush`/`close`; the writer cuts the file back to its
//! last good length and carries on.
//!
//! ## The stages
//!
//! Each stage of the writer is a file, most of them an `impl Writer` block
//! working on the state defined here. All of it is touched only under the
//! writer's lock, and whoever holds that lock (the writer thread, or a
//! caller leading a group) is the file's one writer, so none of it needs
//! synchronization of its own; what producers see goes through
//! [`Shared`]. In the order a record meets them:
//!
//! - [`producer`]: the request a producer sends, the state it shares with
//!   the writer, and the handle that starts and stops the writer thread;
//! - [`intake`]: the writer thread's loop and the callers that write for
//!   themselves (flat combining): requests leave the queue in order and
//!   become groups;
//! - [`commit`]: framing a group (LSNs, frames, index points), its one
//!   `write` and sync, and its acknowledgements;
//! - [`pipeline`]: in `FsyncBatch`, the sync thread that syncs and
//!   acknowledges written groups while the writer writes the next ones;
//! - [`prealloc`]: the zeros written ahead of the data, on another thread;
//! - [`durability`]: poisoning and `None`-mode reports, flushes, the
//!   directory sync a group waits for after a rotation, and closing;
//! - [`rotate`]: sealing the live file between groups, and deleting sealed
//!   segments;
//! - [`open`]: before all of these, opening the file and recovering it.
//!
//! [`Error::Poisoned`]: crate::Error::Poisoned
//! [`Error::Closed`]: crate::Error::Closed

mod commit;
mod durability;
mod intake;
mod open;
mod pipeline;
mod prealloc;
mod producer;
mod rotate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::format::LogFormat;
use crate::fs::{FileSystem, WritableFile};
use crate::group_commit::GroupCommit;
use crate::lsn::LsnGenerator;
use crate::options::{ConsoleStream, ErrorHandler};
use crate::retention::RetentionPolicy;
use crate::rotation::Rotation;
use crate::{DurabilityMode, Lsn, RecoveryMode};

pub(crate) use intake::spin_enabled;
pub use open::RecoveryReport;
use prealloc::Extension;
pub(crate) use producer::{
    Ack, Callback, Opened, Outcome, Queued, Request, Shared, WriterHandle, default_error_handler,
};

/// How a writer is set up.
pub(crate) struct WriterConfig {
    pub sink: SinkConfig,
    pub durability: DurabilityMode,
    pub format: LogFormat,
    pub lsn_instance: Option<u16>,
    /// LSNs come with each entry ([`crate::ContextOptions::caller_lsns`]).
    pub caller_lsns: bool,
    pub batch_max_size: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    /// `FsyncBatch` syncs on a thread of its own (pipelined group commit).
    pub sync_thread: bool,
    pub queue_capacity: usize,
    pub max_record_size: u64,
    pub preallocate: u64,
    /// Rotation of a data-plane file, when the policy rotates or prunes.
    pub retention: Option<RetentionPolicy>,
    pub recovery: RecoveryMode,
    pub handler: ErrorHandler,
}

/// Where a writer writes.
pub(crate) enum SinkConfig {
    File {
        path: PathBuf,
        fs: Arc<dyn FileSystem>,
        mode: u32,
    },
    Console(ConsoleStream),
}

enum Sink {
    File {
        path: PathBuf,
        file: Box<dyn WritableFile>,
        /// The length up to the end of the last fully written group.
        good_len: u64,
        /// The file's length including preallocated zeros.
        allocated: u64,
    },
    Console(ConsoleStream),
}

pub(crate) struct Writer {
    sink: Sink,
    shared: Arc<Shared>,
    /// The queue, for draining; dropped when the writer finishes so that
    /// later sends fail instead of waiting forever.
    rx: Option<flume::Receiver<Request>>,
    /// Requests a `None` writer took off the queue in one go and has not yet
    /// handled: the front of the queue, older than anything still in `rx`.
    /// Empty whenever the writer's lock is free (see [`Writer::next_queued`]).
    backlog: std::collections::VecDeque<Request>,
    /// Closed: the file is released.
    finished: bool,
    format: LogFormat,
    lsn: Option<LsnGenerator>,
    /// With caller-chosen LSNs: the last one written, and whether the next
    /// may jump (an empty log).
    caller: Option<CallerLsns>,
    durability: DurabilityMode,
    group_max: usize,
    group: GroupCommit,
    /// Bytes of zeros written ahead of the data (0: off).
    prealloc_step: u64,
    /// Zeros being written past the live file's end on another thread (see
    /// [`extend_ahead`](prealloc::extend_ahead)); nothing is written at or past the old end
    /// until it is settled.
    extension: Option<Extension>,
    /// Records in `buf`/`err_buf` not yet written.
    records_in_buf: u64,
    /// Rotation of the live file (data-plane logs with a retention policy),
    /// with what reopening the live file needs.
    rotation: Option<(Rotation, Arc<dyn FileSystem>, u32)>,
    /// The file system of a file sink.
    fs: Option<Arc<dyn FileSystem>>,
    /// A failed write left bytes after `good_len` that could not be cut.
    cut_pending: bool,
    /// The directory sync that makes the last rotation's renames durable,
    /// still running: nothing written after the rotation is acknowledged
    /// before it succeeds.
    dir_sync: Option<crate::rotation::DirSync>,
    /// The sync stage (`FsyncBatch` on a file whose file system can sync
    /// from another thread); `None`: groups are synced on this thread.
    pipeline: Option<pipeline::SyncStage>,
    /// How long the last rotation held this thread, in microseconds.
    rotation_us: u64,
    /// The LSN of the live file's first entry (segmented WALs name sealed
    /// segments by it).
    live_first_lsn: Option<Lsn>,
    /// The live file's sparse index, `(lsn, offset)` every
    /// [`crate::segments::INDEX_STRIDE`] bytes, written beside it when it
    /// is sealed as a segment; `None` when incomplete (the file was reopened
    /// with content), in which case readers scan instead.
    index: Option<Vec<(u64, u64)>>,
    /// Index points of the group being written, kept once the write succeeds.
    index_pending: Vec<(u64, u64)>,
    max_record_size: u64,
    buf: Vec<u8>,
    err_buf: Vec<u8>,
    acks: Vec<(Ack, Option<Lsn>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The order caller-chosen LSNs must keep (see
/// [`crate::ContextOptions::caller_lsns`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct CallerLsns {
    /// The last LSN accepted (written, or on disk at open).
    pub last: Option<Lsn>,
}

impl CallerLsns {
    /// Accepts `lsn` as the next entry's, or says why not: one above the
    /// last, or anything above it with `gap`, or anything in an empty log.
    pub fn accept(&mut self, lsn: Lsn, gap: bool) -> Result<(), Option<Lsn>> {
        let ok = match self.last {
            None => true,
            Some(last) if gap => lsn > last,
            Some(last) => last.get().checked_add(1) == Some(lsn.get()),
        };
        if ok {
            self.last = Some(lsn);
            Ok(())
        } else {
            Err(self.last)
        }
    }
}
