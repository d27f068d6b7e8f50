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

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::entry::CallSite;
use crate::format::{self, HEADER_LEN, LogFormat};
use crate::fs::{FileSystem, WritableFile, parent_dir};
use crate::group_commit::GroupCommit;
use crate::lsn::{LsnGenerator, now_ms};
use crate::options::{ConsoleStream, ErrorHandler};
use crate::reader::{ScanSummary, scan_log};
use crate::retention::RetentionPolicy;
use crate::rotation::Rotation;
use crate::{DurabilityMode, Error, Lsn, Message, RecoveryMode};

/// How long an idle writer spins before it parks.
const WRITER_SPIN: Duration = Duration::from_micros(50);

/// Whether spinning can pay off: only with a second core to run the other side.
pub(crate) fn spin_enabled() -> bool {
    static MULTI: OnceLock<bool> = OnceLock::new();
    *MULTI.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// The acknowledgement of one entry: its LSN, or why it was not made durable.
pub(crate) type Ack = oneshot::Sender<Result<Option<Lsn>, Error>>;

/// Where the outcome of opening (and recovering) a file arrives.
pub(crate) type Opened = oneshot::Receiver<Result<Option<RecoveryReport>, Error>>;

/// What producers send to a writer.
pub(crate) enum Request {
    /// An entry, serialized up to its LSN (files) or rendered (console).
    Record {
        bytes: Vec<u8>,
        to_stderr: bool,
        ack: Option<Ack>,
    },
    /// Finish everything queued before this; `sync` forces an `fdatasync`.
    Flush {
        sync: bool,
        ack: oneshot::Sender<Result<(), Error>>,
    },
    /// Flush, sync, release the file and stop.
    Close {
        ack: oneshot::Sender<Result<(), Error>>,
    },
    /// Nothing to do: wakes the writer thread after a caller that led a
    /// group processed a `Close`, so the thread sees it and exits.
    Wake,
    /// Delete the sealed segments whose entries all lie below `before`.
    Truncate {
        before: Lsn,
        ack: oneshot::Sender<Result<Vec<PathBuf>, Error>>,
    },
}

/// State shared between a writer and its producers.
pub(crate) struct Shared {
    pub target: String,
    pub path: Option<PathBuf>,
    poisoned: OnceLock<Error>,
    /// Errors of `None` mode waiting for the next flush/close.
    pending: Mutex<Option<Error>>,
    pub dropped: AtomicU64,
    pub syncs: AtomicU64,
    pub writes: AtomicU64,
    /// Records and bytes that reached the OS (after a successful write).
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub rotations: AtomicU64,
    pub longest_rotation_us: AtomicU64,
    pub closed: AtomicBool,
    /// Buffers handed back by the writer for producers to reuse.
    pool: crossbeam_queue::ArrayQueue<Vec<u8>>,
    /// Entries in the last committed group (read by the idle writer thread
    /// without taking the writer's lock).
    last_group: std::sync::atomic::AtomicUsize,
    /// Callers currently waiting for an acknowledgement.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// The request the writer thread took off the queue and has not yet
    /// handled. The thread holds this lock while it receives, and a producer
    /// that drains the queue itself ([`WriterHandle::lead_full`]) holds it
    /// while draining and takes this request first, or, finding the lock
    /// held, leaves the queue alone: queue order stays file order.
    in_hand: Mutex<Option<Request>>,
    handler: ErrorHandler,
}

impl Shared {
    pub fn poisoned(&self) -> Option<Error> {
        self.poisoned.get().map(|first| Error::Poisoned {
            path: self.path.clone().unwrap_or_default(),
            first: Arc::new(first.clone()),
        })
    }

    fn poison(&self, first: &Error) {
        let _ = self.poisoned.set(first.clone());
    }

    /// Hands an error that has no caller to the error handler.
    pub fn handle_error(&self, e: &Error) {
        (self.handler)(e);
    }

    fn report(&self, e: Error) {
        (self.handler)(&e);
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.get_or_insert(e);
    }

    /// A cleared buffer for a producer to serialize into: a recycled one
    /// when there is one, so producer and writer threads do not churn the
    /// allocator (glibc's cross-thread frees showed up as page faults).
    pub fn take_buf(&self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Returns a record's buffer to the pool.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() <= 16 * 1024 {
            buf.clear();
            let _ = self.pool.push(buf);
        }
    }

    fn take_pending(&self) -> Option<Error> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The default error handler: one line to stderr per kind of error, then a
/// count every power of two.
pub(crate) fn default_error_handler() -> ErrorHandler {
    let counts: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    Arc::new(move |e: &Error| {
        let kind = format!("{:?}", std::mem::discriminant(e));
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(kind).or_insert(0);
        *n += 1;
        if n.is_power_of_two() {
            let _ = writeln!(std::io::stderr(), "hyperlog: {e} (seen {n} time(s))");
        }
    })
}

/// How a writer is set up.
pub(crate) struct WriterConfig {
    pub sink: SinkConfig,
    pub durability: DurabilityMode,
    pub format: LogFormat,
    pub lsn_instance: Option<u16>,
    pub batch_max_size: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
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

/// What recovery did when an existing file was opened for append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log file.
    pub path: PathBuf,
    /// Whether the file was created by this open.
    pub created: bool,
    /// Intact records found.
    pub records: u64,
    /// The first LSN in the file.
    pub first_lsn: Option<Lsn>,
    /// The last LSN on disk; new LSNs continue above it.
    pub last_lsn: Option<Lsn>,
    /// Bytes of torn tail cut off the end.
    pub bytes_cut: u64,
    /// The side file that keeps the cut bytes.
    pub saved_to: Option<PathBuf>,
    /// What was wrong with the tail.
    pub tail_damage: Option<String>,
    /// Damaged ranges accepted in the middle (with `RecoveryMode::SkipCorrupted`).
    pub skipped: Vec<std::ops::Range<u64>>,
}

/// The producers' handle on a running writer.
pub(crate) struct WriterHandle {
    pub tx: flume::Sender<Request>,
    pub shared: Arc<Shared>,
    /// The writer's state; whoever holds the lock is the one writer: the
    /// thread, or a blocking caller leading a group (see [`WriterHandle::lead`]).
    core: Arc<Mutex<Option<Writer>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WriterHandle {
    /// Starts a writer thread; it opens and recovers the file first and
    /// reports the outcome through the returned receiver.
    pub fn spawn(cfg: WriterConfig) -> Result<(Arc<WriterHandle>, Opened), Error> {
        let (path, target) = match &cfg.sink {
            SinkConfig::File { path, .. } => (Some(path.clone()), path.display().to_string()),
            SinkConfig::Console(ConsoleStream::Stdout) => (None, "stdout".to_string()),
            SinkConfig::Console(ConsoleStream::Stderr) => (None, "stderr".to_string()),
        };
        let shared = Arc::new(Shared {
            target: target.clone(),
            path,
            poisoned: OnceLock::new(),
            pending: Mutex::new(None),
            dropped: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            longest_rotation_us: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            in_hand: Mutex::new(None),
            last_group: std::sync::atomic::AtomicUsize::new(0),
            pool: crossbeam_queue::ArrayQueue::new(1024),
            handler: cfg.handler.clone(),
        });
        let (tx, rx) = flume::bounded(cfg.queue_capacity);
        let (open_tx, open_rx) = oneshot::channel();
        let core: Arc<Mutex<Option<Writer>>> = Arc::new(Mutex::new(None));
        let (s2, core2) = (shared.clone(), core.clone());
        let thread = std::thread::Builder::new()
            .name(format!("hyperlog-writer:{target}"))
            .spawn(move || {
                // Opening (and recovering) happens here, off the caller's thread.
                match Writer::open(cfg, s2.clone(), rx.clone()) {
                    Ok((w, report)) => {
                        *lock(&core2) = Some(w);
                        let _ = open_tx.send(Ok(report));
                    }
                    Err(e) => {
                        let _ = open_tx.send(Err(e));
                        return;
                    }
                }
                run_thread(&core2, &s2, rx);
            })
            .map_err(|e| Error::io("spawn writer thread for", &target, e))?;
        Ok((
            Arc::new(WriterHandle {
                tx,
                shared,
                core,
                thread: Mutex::new(Some(thread)),
            }),
            open_rx,
        ))
    }

    /// Lets a blocking caller write `req` itself when the writer is idle
    /// (flat combining): it takes the writer's lock, writes whatever is
    /// queued ahead of it and then its own entry, in one group, and
    /// acknowledges them all. A lone producer so pays no thread hand-off.
    /// Gives the request back when the writer is busy; the caller then
    /// queues it.
    ///
    /// With `wait` the caller waits for the lock instead (used in `Flush`
    /// mode, where holding it means one `write`, not a sync): threads that
    /// write for themselves avoid a sleep and a wake-up per entry, which on
    /// two cores and many threads costs more than the write.
    pub fn lead(&self, req: Request, wait: bool) -> Result<(), Request> {
        let guard = if wait {
            Ok(lock(&self.core))
        } else {
            self.core.try_lock().map_err(|_| ())
        };
        let Ok(mut guard) = guard else {
            return Err(req);
        };
        let Some(w) = guard.as_mut().filter(|w| !w.finished) else {
            return Err(req);
        };
        if w.lead(None, req) {
            drop(guard);
            let _ = self.tx.try_send(Request::Wake);
        }
        Ok(())
    }

    /// For a producer that found the queue full and waits for nothing:
    /// writes the queue out and then `req` on this thread, instead of parking
    /// until the writer thread frees a slot. `Err(req)` when that cannot be
    /// done in order (the writer thread is taking a request off the queue) or
    /// the writer has finished; the caller then queues `req` as usual.
    pub fn lead_full(&self, req: Request) -> Result<(), Request> {
        let mut guard = lock(&self.core);
        // Only a `None` writer thread parks what it receives in `in_hand`.
        let Some(w) = guard
            .as_mut()
            .filter(|w| !w.finished && w.durability == DurabilityMode::None)
        else {
            return Err(req);
        };
        // Held while draining, so that the writer thread cannot take a
        // request off the queue behind this thread's back.
        let mut slot = match self.shared.in_hand.try_lock() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(req),
        };
        let first = slot.take();
        let closed = w.lead(first, req);
        drop(slot);
        if closed {
            drop(guard);
            let _ = self.tx.try_send(Request::Wake);
        }
        Ok(())
    }

    /// Sends a close request and waits for the thread.
    pub fn close_blocking(&self) -> Result<(), Error> {
        let res = match self.request_close() {
            Some(rx) => crate::block_on(rx).unwrap_or(Ok(())),
            None => Ok(()),
        };
        self.join();
        res
    }

    pub fn request_close(&self) -> Option<oneshot::Receiver<Result<(), Error>>> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (ack, rx) = oneshot::channel();
        self.tx.send(Request::Close { ack }).ok().map(|()| rx)
    }

    pub fn join(&self) {
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Dropping the last handle flushes what was acknowledged.
        let _ = self.close_blocking();
    }
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
    /// Closed: the file is released.
    finished: bool,
    format: LogFormat,
    lsn: Option<LsnGenerator>,
    durability: DurabilityMode,
    group_max: usize,
    group: GroupCommit,
    /// Bytes of zeros written ahead of the data (0: off).
    prealloc_step: u64,
    /// Zeros being written past the live file's end on another thread (see
    /// [`Writer::extend_ahead`]); nothing is written at or past the old end
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

impl Writer {
    fn open(
        cfg: WriterConfig,
        shared: Arc<Shared>,
        rx: flume::Receiver<Request>,
    ) -> Result<(Writer, Option<RecoveryReport>), Error> {
        let mut lsn = cfg.lsn_instance.map(LsnGenerator::new);
        let mut rotation = None;
        let mut file_system = None;
        let mut live_first_lsn = None;
        let (sink, report) = match cfg.sink {
            SinkConfig::Console(stream) => (Sink::Console(stream), None),
            SinkConfig::File { path, fs, mode } => {
                let (file, report) = open_file(
                    &*fs,
                    &path,
                    mode,
                    cfg.format,
                    cfg.max_record_size,
                    cfg.recovery,
                )?;
                if let (Some(g), Some(last)) = (lsn.as_mut(), report.last_lsn) {
                    g.resume_after(last);
                }
                let good_len = file.len().map_err(|e| Error::io("stat", &path, e))?;
                let wal = cfg.durability.syncs() || cfg.lsn_instance.is_some();
                if wal {
                    // Sealed segments must form a chain; the live file continues it.
                    let segments = crate::segments::try_list_segments(&*fs, &path)
                        .map_err(|e| Error::io("list the directory of", &path, e))?;
                    if let Err((p, reason)) = crate::segments::check_chain(&segments)
                        && cfg.recovery != RecoveryMode::SkipCorrupted
                    {
                        return Err(Error::Corrupt {
                            path: p,
                            offset: 0,
                            reason,
                        });
                    }
                    if report.last_lsn.is_none()
                        && let (Some(g), Some(last)) = (lsn.as_mut(), segments.last())
                    {
                        let opts = crate::reader::ReadOptions::default()
                            .file_system(fs.clone())
                            .max_record_size(cfg.max_record_size);
                        if let Some(l) = crate::reader::get_last_lsn_blocking(&last.path, &opts)? {
                            g.resume_after(l);
                        }
                    }
                }
                live_first_lsn = report.first_lsn;
                file_system = Some(fs.clone());
                if let Some(policy) = cfg.retention {
                    let s = shared.clone();
                    let on_error: Arc<dyn Fn(Error) + Send + Sync> = Arc::new(move |e| s.report(e));
                    let r = Rotation::open(
                        policy,
                        fs.clone(),
                        &path,
                        mode,
                        report.created,
                        wal,
                        if wal { cfg.preallocate } else { 0 },
                        on_error,
                    )?;
                    rotation = Some((r, fs, mode));
                }
                (
                    Sink::File {
                        path,
                        file,
                        good_len,
                        allocated: good_len,
                    },
                    Some(report),
                )
            }
        };
        let group_max = if cfg.durability == DurabilityMode::Fsync {
            1
        } else {
            cfg.batch_max_size
        };
        Ok((
            Writer {
                sink,
                shared,
                rx: Some(rx),
                finished: false,
                format: cfg.format,
                lsn,
                durability: cfg.durability,
                group_max,
                group: GroupCommit::new(
                    group_max,
                    cfg.batch_max_bytes,
                    cfg.batch_timeout,
                    cfg.durability.syncs(),
                ),
                prealloc_step: cfg.preallocate,
                extension: None,
                records_in_buf: 0,
                index: (live_first_lsn.is_none() && cfg.lsn_instance.is_some()).then(Vec::new),
                index_pending: Vec::new(),
                rotation,
                fs: file_system,
                cut_pending: false,
                dir_sync: None,
                rotation_us: 0,
                live_first_lsn,
                max_record_size: cfg.max_record_size,
                buf: Vec::with_capacity(64 * 1024),
                err_buf: Vec::new(),
                acks: Vec::new(),
            },
            report,
        ))
    }

    /// Takes `first` and whatever the group policy lets it gather from the
    /// queue, commits the group, and handles a control request that ended
    /// it. Returns true when it closed the writer.
    fn handle(&mut self, first: Request) -> bool {
        let mut group = Vec::new();
        let mut bytes = 0usize;
        let mut control = None;
        match first {
            Request::Record {
                bytes: b,
                to_stderr,
                ack,
            } => {
                bytes += b.len();
                group.push((b, to_stderr, ack));
            }
            other => control = Some(other),
        }
        if let Some(rx) = self.rx.clone() {
            let started = Instant::now();
            while control.is_none() && !self.group.is_full(group.len(), bytes) {
                let next = match rx.try_recv() {
                    Ok(r) => r,
                    Err(flume::TryRecvError::Disconnected) => break,
                    Err(flume::TryRecvError::Empty) => {
                        let Some(budget) = self.group.wait_budget(group.len(), bytes) else {
                            break;
                        };
                        if self.group.caught_up(group.len()) || started.elapsed() >= budget {
                            break;
                        }
                        // Park with a deadline: the producers being waited for
                        // need the cores, and a yielding thread may not get one
                        // back for a whole time slice.
                        match rx.recv_deadline(started + budget) {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                };
                match next {
                    Request::Record {
                        bytes: b,
                        to_stderr,
                        ack,
                    } => {
                        bytes += b.len();
                        group.push((b, to_stderr, ack));
                    }
                    Request::Wake => {}
                    other => control = Some(other),
                }
            }
        }
        if !group.is_empty() {
            self.commit(&mut group);
        }
        control.is_some_and(|c| self.control(c))
    }

    /// A blocking caller's group: everything queued ahead of `own` (in
    /// order, in groups within the limits), then `own`. Returns true when a
    /// queued `Close` closed the writer (`own` is then refused).
    fn lead(&mut self, first: Option<Request>, own: Request) -> bool {
        let mut group = Vec::new();
        let mut bytes = 0usize;
        let rx = self.rx.clone();
        {
            let queued = std::iter::from_fn(|| rx.as_ref()?.try_recv().ok());
            for r in first.into_iter().chain(queued) {
                match r {
                    Request::Record {
                        bytes: b,
                        to_stderr,
                        ack,
                    } => {
                        bytes += b.len();
                        group.push((b, to_stderr, ack));
                        if self.group.is_full(group.len(), bytes) {
                            self.commit(&mut group);
                            bytes = 0;
                        }
                    }
                    Request::Wake => {}
                    control => {
                        if !group.is_empty() {
                            self.commit(&mut group);
                            bytes = 0;
                        }
                        if self.control(control) {
                            self.refuse(own);
                            return true;
                        }
                    }
                }
            }
        }
        match own {
            Request::Record {
                bytes: b,
                to_stderr,
                ack,
            } => {
                if self.group.is_full(group.len() + 1, bytes + b.len()) && !group.is_empty() {
                    self.commit(&mut group);
                }
                group.push((b, to_stderr, ack));
                self.commit(&mut group);
                false
            }
            Request::Wake => {
                if !group.is_empty() {
                    self.commit(&mut group);
                }
                false
            }
            control => {
                if !group.is_empty() {
                    self.commit(&mut group);
                }
                self.control(control)
            }
        }
    }

    /// Handles a control request; true when it closed the writer.
    fn control(&mut self, req: Request) -> bool {
        match req {
            Request::Flush { sync, ack } => {
                let _ = ack.send(self.flush(sync));
                false
            }
            Request::Close { ack } => {
                let res = self.finish(false);
                let _ = ack.send(res);
                true
            }
            Request::Wake => false,
            Request::Truncate { before, ack } => {
                let _ = ack.send(self.truncate_before(before));
                false
            }
            Request::Record { .. } => {
                self.refuse(req);
                false
            }
        }
    }

    /// Deletes the sealed segments whose every entry lies below `before`:
    /// those whose successor (the next segment, or the live file) starts at
    /// or below it. Never the live file. Syncs the directory.
    fn truncate_before(&mut self, before: Lsn) -> Result<Vec<PathBuf>, Error> {
        if let Some(p) = self.shared.poisoned() {
            return Err(p);
        }
        if let Some((r, _, _)) = self.rotation.as_mut() {
            // A sealed segment the background thread still finishes is not
            // deleted under it (its index would be left behind).
            r.wait_idle();
        }
        // Segments may be left by an earlier run with a rotating policy even
        // when this one has none: they are truncated all the same.
        let (Some(fs), Sink::File { path, .. }) = (self.fs.as_ref(), &self.sink) else {
            return Ok(Vec::new());
        };
        let segments = crate::segments::try_list_segments(&**fs, path)
            .map_err(|e| Error::io("list the directory of", path.clone(), e))?;
        // The live file's first LSN, or (when it is empty) one above
        // everything sealed.
        let live_first = self
            .live_first_lsn
            .or_else(|| self.lsn.as_ref().map(|g| g.peek()));
        let mut removed = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let next_first = segments.get(i + 1).map_or(live_first, |n| n.first_lsn);
            match next_first {
                Some(n) if n <= before => {
                    // The index first: a crash in between leaves a segment
                    // without one (readers scan it), not an orphan index.
                    let _ = fs.remove_file(&crate::segments::index_path(&seg.path));
                    fs.remove_file(&seg.path)
                        .map_err(|e| Error::io("delete segment", seg.path.clone(), e))?;
                    removed.push(seg.path.clone());
                }
                _ => break,
            }
        }
        // Indexes an earlier crash (or version) left without their segment.
        for idx in crate::segments::orphan_indexes(&**fs, path).unwrap_or_default() {
            let _ = fs.remove_file(&idx);
        }
        if !removed.is_empty() {
            let dir = parent_dir(path);
            fs.sync_dir(&dir)
                .map_err(|e| Error::io("fsync directory", &dir, e))?;
        }
        Ok(removed)
    }

    /// Answers a request that arrived after the writer closed.
    fn refuse(&self, req: Request) {
        let closed = || Error::Closed {
            target: self.shared.target.clone(),
        };
        match req {
            Request::Record { ack: Some(a), .. } => {
                let _ = a.send(Err(closed()));
            }
            Request::Flush { ack, .. } | Request::Close { ack } => {
                let _ = ack.send(Err(closed()));
            }
            Request::Truncate { ack, .. } => {
                let _ = ack.send(Err(closed()));
            }
            _ => {}
        }
    }

    /// Writes and (per policy) syncs one group, then acknowledges it.
    fn commit(&mut self, group: &mut Vec<(Vec<u8>, bool, Option<Ack>)>) {
        self.shared.last_group.store(group.len(), Ordering::Relaxed);
        if let Some(p) = self.shared.poisoned() {
            for (_, _, ack) in group.drain(..) {
                if let Some(a) = ack {
                    let _ = a.send(Err(p.clone()));
                }
            }
            return;
        }
        self.buf.clear();
        self.err_buf.clear();
        self.acks.clear();
        let dropped = self.shared.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            self.append_drop_notice(dropped);
        }
        if let (Some((r, _, _)), Sink::File { good_len, .. }) = (&self.rotation, &self.sink)
            && r.due(*good_len).is_some()
        {
            // Before the group is appended: the entries that found the file
            // due go to the fresh one, never lost.
            let t = Instant::now();
            match self.rotate() {
                Ok(()) => {
                    self.rotation_us = t.elapsed().as_micros() as u64;
                    self.shared.rotations.fetch_add(1, Ordering::Relaxed);
                    if self.dir_sync.is_none() {
                        self.shared
                            .longest_rotation_us
                            .fetch_max(self.rotation_us, Ordering::Relaxed);
                    }
                }
                Err(e) => self.shared.report(e),
            }
            if let Some(p) = self.shared.poisoned() {
                for (_, _, ack) in group.drain(..) {
                    if let Some(a) = ack {
                        let _ = a.send(Err(p.clone()));
                    }
                }
                return;
            }
        }
        let now = now_ms();
        for (bytes, to_stderr, ack) in group.drain(..) {
            match &self.sink {
                Sink::Console(_) => {
                    if to_stderr {
                        self.err_buf.extend_from_slice(&bytes)
                    } else {
                        self.buf.extend_from_slice(&bytes)
                    }
                    self.records_in_buf += 1;
                    if let Some(a) = ack {
                        self.acks.push((a, None));
                    }
                }
                Sink::File { path, .. } => {
                    // An LSN refused here leaves a gap, never a repeat.
                    let lsn = self.lsn.as_mut().map(|g| g.next(now));
                    let len = format::payload_len(&bytes, lsn);
                    if len as u64 > self.max_record_size {
                        if let Some(a) = ack {
                            let _ = a.send(Err(Error::RecordTooLarge {
                                path: path.clone(),
                                len: len as u64,
                                max: self.max_record_size,
                            }));
                        }
                        self.shared.recycle(bytes);
                        continue;
                    }
                    let start = self.buf.len() as u64;
                    format::finish_record(self.format, &bytes, lsn, &mut self.buf);
                    self.records_in_buf += 1;
                    if let (Some(index), Some(l), Sink::File { good_len, .. }) =
                        (self.index.as_ref(), lsn, &self.sink)
                    {
                        let at = good_len + start;
                        let last = self.index_pending.last().or(index.last()).map(|p| p.1);
                        if last.is_none_or(|o| at >= o + crate::segments::INDEX_STRIDE) {
                            self.index_pending.push((l.get(), at));
                        }
                    }
                    if self.live_first_lsn.is_none() {
                        self.live_first_lsn = lsn;
                    }
                    if let Some(a) = ack {
                        self.acks.push((a, lsn));
                    }
                }
            }
            self.shared.recycle(bytes);
        }
        let records = self.records_in_buf;
        self.records_in_buf = 0;
        let result = self.write_and_sync().and_then(|()| self.settle_dir_sync());
        let points = std::mem::take(&mut self.index_pending);
        match result {
            Ok(()) => {
                if let Some(index) = self.index.as_mut() {
                    index.extend(points);
                }
                self.shared
                    .records_written
                    .fetch_add(records, Ordering::Relaxed);
                for (a, lsn) in self.acks.drain(..) {
                    let _ = a.send(Ok(lsn));
                }
            }
            Err(e) => {
                if self.durability == DurabilityMode::None {
                    self.shared.report(e.clone());
                } else {
                    self.shared.poison(&e);
                }
                for (a, _) in self.acks.drain(..) {
                    let _ = a.send(Err(e.clone()));
                }
            }
        }
    }

    /// Waits for the last rotation's directory sync, if one is running; a
    /// failure poisons the context (the new file's name may not survive a
    /// power cut, so nothing written since can be acknowledged).
    fn settle_dir_sync(&mut self) -> Result<(), Error> {
        let Some(sync) = self.dir_sync.take() else {
            return Ok(());
        };
        let t = Instant::now();
        let res = sync.wait();
        // What the rotation cost the group after it: its own time plus
        // whatever the directory sync outlasted that group's write and sync.
        let stall = self.rotation_us + t.elapsed().as_micros() as u64;
        self.shared
            .longest_rotation_us
            .fetch_max(stall, Ordering::Relaxed);
        res.inspect_err(|e| self.shared.poison(e))
    }

    fn write_and_sync(&mut self) -> Result<(), Error> {
        match &mut self.sink {
            Sink::Console(stream) => {
                let (out, err) = (&self.buf, &self.err_buf);
                let res = if *stream == ConsoleStream::Stderr {
                    let mut e = std::io::stderr().lock();
                    e.write_all(out)
                        .and_then(|()| e.write_all(err))
                        .and_then(|()| e.flush())
                } else {
                    let mut o = std::io::stdout().lock();
                    let r = o.write_all(out).and_then(|()| o.flush());
                    r.and_then(|()| {
                        if err.is_empty() {
                            Ok(())
                        } else {
                            let mut e = std::io::stderr().lock();
                            e.write_all(err).and_then(|()| e.flush())
                        }
                    })
                };
                res.map_err(|e| Error::io("write", &self.shared.target, e))
            }
            Sink::File {
                path,
                file,
                good_len,
                allocated,
            } => {
                if self.buf.is_empty() {
                    return Ok(());
                }
                if self.cut_pending {
                    // A failed write left part of a group that could not be
                    // cut then: nothing is appended behind it until it is.
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        true,
                    );
                    file.truncate(*good_len)
                        .map_err(|e| Error::io("truncate", path.clone(), e))?;
                    self.cut_pending = false;
                    *allocated = *good_len;
                }
                self.shared.writes.fetch_add(1, Ordering::Relaxed);
                let end = *good_len + self.buf.len() as u64;
                if self.prealloc_step > 0 {
                    // Zeros finished in the background count; when this
                    // group needs them and they are not done, wait for them.
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        end > *allocated,
                    );
                }
                if self.prealloc_step > 0 && end > *allocated {
                    let target = (end / self.prealloc_step + 1) * self.prealloc_step;
                    match file.allocate(target) {
                        Ok(true) => *allocated = target,
                        // Preallocation is an optimization: without it (no
                        // support, or no space for it) writes still append.
                        Ok(false) | Err(_) => self.prealloc_step = 0,
                    }
                }
                if self.prealloc_step > 0
                    && self.extension.is_none()
                    && *allocated - end < self.prealloc_step / 2
                {
                    // Less than half a step left: the next step's zeros are
                    // written and synced on another thread, ahead of need.
                    self.extension = extend_ahead(file.as_ref(), *allocated + self.prealloc_step);
                }
                if let Err(e) = file.write_all(&self.buf) {
                    // Cut a partial write back so the file holds whole records;
                    // if that fails too, the next write tries again first
                    // (until then, recovery treats it as a torn tail).
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        true,
                    );
                    match file.truncate(*good_len) {
                        Ok(()) => *allocated = *good_len,
                        Err(_) => self.cut_pending = true,
                    }
                    return Err(Error::io("write", path.clone(), e));
                }
                if self.durability.syncs() {
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    file.sync_data()
                        .map_err(|e| Error::io("fdatasync", path.clone(), e))?;
                    let backlog = self.rx.as_ref().map_or(0, flume::Receiver::len);
                    self.group.record(self.acks.len(), t.elapsed(), backlog);
                }
                *good_len += self.buf.len() as u64;
                self.shared
                    .bytes_written
                    .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn append_drop_notice(&mut self, dropped: u64) {
        let text = format!("hyperlog dropped {dropped} entries because the queue was full");
        self.shared.report(Error::Dropped {
            target: self.shared.target.clone(),
            count: dropped,
        });
        match &self.sink {
            Sink::Console(_) => {
                self.err_buf
                    .extend_from_slice(format!("hyperlog: {text}\n").as_bytes());
            }
            Sink::File { .. } => {
                let mut env = Vec::new();
                let site = CallSite {
                    file: Some(file!()),
                    function: Some("hyperlog::writer"),
                    line: Some(line!()),
                };
                if format::encode_envelope(
                    &Message::warn(text),
                    &site,
                    crate::entry::thread_id(),
                    &mut env,
                )
                .is_ok()
                {
                    let lsn = self.lsn.as_mut().map(|g| g.next(now_ms()));
                    format::finish_record(self.format, &env, lsn, &mut self.buf);
                    self.records_in_buf += 1;
                }
            }
        }
    }

    /// Seals the live file (a segment or an archive) and puts a fresh one in
    /// its place (see [`crate::rotation`]): two renames and, for a syncing
    /// context, one directory sync on this thread; the rest is the rotation's
    /// background thread's. On failure the live file stays as it was and
    /// writes go on into it.
    fn rotate(&mut self) -> Result<(), Error> {
        self.settle_dir_sync()?;
        let (
            Some((rotation, fs, mode)),
            Sink::File {
                path,
                file,
                good_len,
                allocated,
            },
        ) = (self.rotation.as_mut(), &mut self.sink)
        else {
            return Ok(());
        };
        // The sealed file is trimmed and indexed as it is: no zeros may
        // still be on their way into it.
        settle_extension(
            &mut self.extension,
            allocated,
            &mut self.prealloc_step,
            true,
        );
        if *good_len == 0 {
            // Nothing to seal: the empty file just starts its clocks again.
            return rotation.restart_clocks();
        }
        let wal = rotation.is_wal();
        if !wal && *allocated > *good_len {
            // The compressor reads the sealed file whole: no zeros in it.
            file.truncate(*good_len)
                .map_err(|e| Error::io("truncate", path.clone(), e))?;
            *allocated = *good_len;
        }
        // Every entry in the live file was written (and, when the context
        // syncs, synced) by the group that carried it. What must survive
        // power loss before anything is acknowledged in the new file are the
        // renames. A data-plane log promises only to survive a process
        // crash, which renames do without a sync.
        let durable = self.durability.syncs();
        let dir = parent_dir(path);
        let sealed = rotation.sealed_path(self.live_first_lsn)?;
        fs.rename(path, &sealed)
            .map_err(|e| Error::io("rename", path.clone(), e))?;
        let fresh = match rotation.install_prepared(path) {
            Some(p) => p.map(|p| (p.file, p.len)),
            None => fs
                .open_append(path, *mode)
                .map_err(|e| Error::io("open", path.clone(), e))
                .and_then(|(f, _)| {
                    if f.try_lock()
                        .map_err(|e| Error::io("lock", path.clone(), e))?
                    {
                        Ok((f, 0))
                    } else {
                        Err(Error::Locked { path: path.clone() })
                    }
                }),
        };
        // The directory sync that makes both renames durable runs on the
        // rotation's directory-sync thread while this one writes and syncs
        // the next group; that group is acknowledged only once both are done
        // (see `settle_dir_sync`).
        let fresh = fresh.and_then(|f| {
            let sync = if durable {
                Some(rotation.sync_dir_in_background()?)
            } else {
                None
            };
            Ok((f, sync))
        });
        match fresh {
            Ok(((f, len), sync)) => {
                self.dir_sync = sync;
                let old = std::mem::replace(file, f);
                let (old_len, trim) = (*good_len, *allocated > *good_len);
                *good_len = 0;
                *allocated = len;
                self.live_first_lsn = None;
                let index = self.index.replace(Vec::new()).filter(|_| wal);
                rotation.rotated(old, sealed, old_len, trim, index)
            }
            Err(e) => {
                // Put the live file back where it was and keep writing to it.
                // If that fails, the file being written carries a sealed
                // name that truncate_before or pruning could delete: nothing
                // more is acknowledged in it.
                let back = fs
                    .rename(&sealed, path)
                    .map_err(|e| Error::io("rename", sealed.clone(), e))
                    .and_then(|()| {
                        if durable {
                            fs.sync_dir(&dir)
                                .map_err(|e| Error::io("fsync directory", &dir, e))?;
                        }
                        Ok(())
                    });
                if let Err(undo) = back {
                    self.shared.poison(&undo);
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self, sync: bool) -> Result<(), Error> {
        if let Some(p) = self.shared.poisoned() {
            return Err(p);
        }
        if let Some(e) = self.shared.take_pending() {
            return Err(e);
        }
        let dropped = self.shared.dropped.load(Ordering::Acquire);
        if dropped > 0 {
            self.commit(&mut Vec::new());
        }
        if sync && let Sink::File { path, file, .. } = &mut self.sink {
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = file.sync_data() {
                let e = Error::io("fdatasync", path.clone(), e);
                self.shared.poison(&e);
                return Err(e);
            }
        }
        self.settle_dir_sync()
    }

    /// Drains the queue, syncs and releases the file.
    fn finish(&mut self, quiet: bool) -> Result<(), Error> {
        let mut group = Vec::new();
        let mut waiting = Vec::new();
        for r in self
            .rx
            .as_ref()
            .map(|rx| rx.drain().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            match r {
                Request::Record {
                    bytes,
                    to_stderr,
                    ack,
                } => group.push((bytes, to_stderr, ack)),
                Request::Flush { ack, .. } | Request::Close { ack } => waiting.push(ack),
                Request::Truncate { ack, .. } => {
                    let _ = ack.send(Err(Error::Closed {
                        target: self.shared.target.clone(),
                    }));
                }
                Request::Wake => {}
            }
        }
        while !group.is_empty() {
            let n = group.len().min(self.group_max);
            let mut chunk: Vec<_> = group.drain(..n).collect();
            self.commit(&mut chunk);
        }
        let mut res = Ok(());
        if let Sink::File { allocated, .. } = &mut self.sink {
            settle_extension(
                &mut self.extension,
                allocated,
                &mut self.prealloc_step,
                true,
            );
        }
        if let Sink::File {
            path,
            file,
            good_len,
            allocated,
        } = &mut self.sink
            && (*allocated > *good_len || self.cut_pending)
        {
            // A closed log holds no preallocated zeros.
            match file.truncate(*good_len) {
                Ok(()) => *allocated = *good_len,
                Err(e) => res = Err(Error::io("truncate", path.clone(), e)),
            }
        }
        let res = res.and(self.flush(matches!(self.sink, Sink::File { .. })));
        if let (Err(e), true) = (&res, quiet) {
            (self.shared.handler)(e);
        }
        for a in waiting {
            let _ = a.send(res.clone());
        }
        // Archiving started before the close completes before it returns.
        if let Some((r, _, _)) = self.rotation.as_mut() {
            r.finish();
        }
        // Release the file (and its lock) now, and the queue: later sends
        // fail fast instead of waiting for a writer that is gone.
        self.sink = Sink::Console(ConsoleStream::Stdout);
        self.finished = true;
        self.rx = None;
        res
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The next request for the writer thread.
///
/// After groups of one (a lone producer, which sends again within
/// microseconds, while a parked thread takes tens of microseconds to wake)
/// it spins briefly first. With many producers the core is theirs and the
/// queue is rarely empty.
///
/// In `None` mode (`polling`) nobody waits for the writer, so it does not
/// make producers wake it: while recently busy it sleeps a millisecond
/// between looks at the queue (a send to a parked receiver costs the
/// producer a futex wake-up, several times the cost of the enqueue itself),
/// and only after [`POLL_IDLE`] of nothing does it park.
fn recv_next(
    rx: &flume::Receiver<Request>,
    shared: &Shared,
    polling: bool,
) -> Result<Request, flume::RecvError> {
    let try_once = |rx: &flume::Receiver<Request>| match rx.try_recv() {
        Ok(r) => Some(Ok(r)),
        Err(flume::TryRecvError::Disconnected) => Some(Err(flume::RecvError::Disconnected)),
        Err(flume::TryRecvError::Empty) => None,
    };
    if polling {
        let start = Instant::now();
        while start.elapsed() < POLL_IDLE {
            if let Some(r) = try_once(rx) {
                return r;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    } else if spin_enabled() && shared.last_group.load(Ordering::Relaxed) <= 1 {
        let start = Instant::now();
        loop {
            if let Some(r) = try_once(rx) {
                return r;
            }
            if start.elapsed() > WRITER_SPIN {
                break;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
    rx.recv()
}

/// Zeros being written past the live file's end on another thread.
struct Extension {
    /// The length the file will have.
    target: u64,
    /// Taken when settled.
    job: Option<std::thread::JoinHandle<std::io::Result<bool>>>,
}

impl Drop for Extension {
    /// A writer dropped without closing (a panic) still waits for its
    /// zeros: no thread writes to the file, or holds its lock, after it.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}

/// Starts writing (and syncing) zeros up to `target` on a new thread, with a
/// second handle on the live file; `None` when the file system offers no such
/// handle or the thread cannot start (the writer then preallocates inline).
fn extend_ahead(file: &dyn WritableFile, target: u64) -> Option<Extension> {
    let mut alloc = file.allocator()?;
    let job = std::thread::Builder::new()
        .name("hyperlog-prealloc".into())
        .spawn(move || alloc.allocate(target))
        .ok()?;
    Some(Extension {
        target,
        job: Some(job),
    })
}

/// Takes in a finished extension (or, with `wait`, waits for a running one).
/// A failed one turns preallocation off; the zeros it may have written count
/// as allocated, so that closing trims them.
fn settle_extension(
    extension: &mut Option<Extension>,
    allocated: &mut u64,
    step: &mut u64,
    wait: bool,
) {
    let Some(mut e) = extension.take_if(|e| wait || e.job.as_ref().is_none_or(|j| j.is_finished()))
    else {
        return;
    };
    match e.job.take().map(std::thread::JoinHandle::join) {
        Some(Ok(Ok(true))) => *allocated = (*allocated).max(e.target),
        _ => {
            *allocated = (*allocated).max(e.target);
            *step = 0;
        }
    }
}

/// How often a `None`-mode writer looks at its queue while recently busy.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long a `None`-mode writer polls an empty queue before it parks.
const POLL_IDLE: Duration = Duration::from_millis(200);

/// The writer thread: takes requests from the queue and handles them under
/// the writer's lock, until the writer is closed (by itself or by a caller
/// that led a group) or every producer is gone.
fn run_thread(core: &Mutex<Option<Writer>>, shared: &Shared, rx: flume::Receiver<Request>) {
    let polling = lock(core)
        .as_ref()
        .is_some_and(|w| w.durability == DurabilityMode::None);
    loop {
        // Only `None` producers drain the queue themselves (`lead_full`), so
        // only there does a received request wait in `in_hand`.
        let next = if polling {
            let mut slot = lock(&shared.in_hand);
            recv_next(&rx, shared, polling).map(|r| {
                *slot = Some(r);
                None
            })
        } else {
            recv_next(&rx, shared, polling).map(Some)
        };
        let mut guard = lock(core);
        let Some(w) = guard.as_mut() else { return };
        let next = match next {
            Ok(Some(r)) => Ok(r),
            // A producer draining a full queue may have handled it already.
            Ok(None) => match lock(&shared.in_hand).take() {
                Some(r) => Ok(r),
                None => continue,
            },
            Err(e) => Err(e),
        };
        match next {
            Err(_) => {
                // Every producer is gone: finish quietly.
                if !w.finished {
                    let _ = w.finish(true);
                }
                return;
            }
            Ok(req) if w.finished => {
                w.refuse(req);
                for r in rx.drain() {
                    w.refuse(r);
                }
                return;
            }
            Ok(req) => {
                if w.handle(req) {
                    return;
                }
            }
        }
    }
}

/// Opens `path` for appending: creates it (and its directory entry, synced)
/// or recovers it (cuts a torn tail into a side file), and takes the lock.
fn open_file(
    fs: &dyn FileSystem,
    path: &Path,
    mode: u32,
    format: LogFormat,
    max_record_size: u64,
    recovery: RecoveryMode,
) -> Result<(Box<dyn WritableFile>, RecoveryReport), Error> {
    let dir = parent_dir(path);
    fs.create_dir_all(&dir)
        .map_err(|e| Error::io("create directory", &dir, e))?;
    let (mut file, created) = fs
        .open_append(path, mode)
        .map_err(|e| Error::io("open", path, e))?;
    if !file.try_lock().map_err(|e| Error::io("lock", path, e))? {
        return Err(Error::Locked {
            path: path.to_path_buf(),
        });
    }
    let mut report = RecoveryReport {
        path: path.to_path_buf(),
        created,
        records: 0,
        first_lsn: None,
        last_lsn: None,
        bytes_cut: 0,
        saved_to: None,
        tail_damage: None,
        skipped: Vec::new(),
    };
    if created {
        fs.sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        return Ok((file, report));
    }
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len == 0 {
        return Ok((file, report));
    }
    // Only a complete first record of the other format is a mismatch; a
    // first record cut short by a crash is read in the configured format
    // (and cut off as a torn tail).
    let head = read_range(
        fs,
        path,
        0,
        len.min(HEADER_LEN as u64 + max_record_size).min(1 << 20),
    )?;
    if let Some(found) = format::detect_complete(&head, len, max_record_size)
        && found != format
    {
        return Err(Error::InvalidOption {
            context: path.display().to_string(),
            option: "format",
            reason: format!(
                "{} holds {:?} records but the context is configured for {:?}",
                path.display(),
                found,
                format
            ),
        });
    }
    let sum: ScanSummary = scan_log(fs, path, Some(format), max_record_size, recovery)?;
    report.records = sum.records;
    report.first_lsn = sum.first_lsn;
    report.last_lsn = sum.last_lsn;
    report.skipped = sum.skipped.clone();
    if let Some(torn) = &sum.torn {
        report.tail_damage = Some(format!("at offset {}: {}", torn.offset, torn.reason));
    }
    if sum.valid_len < len && sum.torn.is_none() && sum.zero_tail.is_some() {
        // Only preallocated zeros after the data: nothing to keep.
        file.truncate(sum.valid_len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", path, e))?;
    } else if sum.valid_len < len {
        // Keep the cut bytes beside the log: nothing is destroyed.
        let cut = read_range(fs, path, sum.valid_len, len)?;
        let side = side_file(fs, path, sum.valid_len);
        fs.write_new(&side, &cut, mode)
            .map_err(|e| Error::io("save torn tail to", &side, e))?;
        fs.sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        file.truncate(sum.valid_len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", path, e))?;
        report.bytes_cut = len - sum.valid_len;
        report.saved_to = Some(side);
    }
    Ok((file, report))
}

fn read_range(fs: &dyn FileSystem, path: &Path, from: u64, to: u64) -> Result<Vec<u8>, Error> {
    let f = fs.open_read(path).map_err(|e| Error::io("open", path, e))?;
    f.read_range(from, (to - from) as usize)
        .map_err(|e| Error::io("read", path, e))
}

/// `{path}.torn-{offset}` (with a counter if taken).
fn side_file(fs: &dyn FileSystem, path: &Path, offset: u64) -> PathBuf {
    let base = format!("{}.torn-{offset}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs.exists(&candidate) {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}
