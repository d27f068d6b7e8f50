//! The producer side: what a producer sends ([`Request`]), the state it shares
//! with the writer ([`Shared`]), and its handle on the writer
//! ([`WriterHandle`]).
//!
//! No waiter is left hanging: every request that expects an answer carries its
//! own oneshot sender, so a request the writer drops unanswered (its thread
//! failed to open the file, or panicked) still wakes its waiter, who reads the
//! dropped sender as a closed (or poisoned) writer. `Shared` is all that a
//! producer touches without the writer's lock, so each part of it is an atomic,
//! a set-once cell or a mutex held for a moment. The writer itself sits behind
//! one mutex (`core`), and whoever holds it, the thread or a caller leading a
//! group, is the file's one writer. Opening and recovery run on the writer
//! thread, never on the caller's: `spawn` returns at once and the outcome
//! arrives on [`Opened`]. Exactly one `Close` is ever sent (`closed` is
//! swapped, not stored), and dropping the last handle sends it, so that what
//! was acknowledged is flushed even without a `close`; `join` skips the wait
//! when it runs on the writer thread itself, which cannot wait for its own end.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::channel::oneshot;

use super::intake::run_thread;
use super::open::RecoveryReport;
use super::{SinkConfig, Writer, WriterConfig, lock};
use crate::options::{ConsoleStream, ErrorHandler};
use crate::{Error, Lsn};

/// The outcome of one entry: its LSN, or why it was not made durable.
pub(crate) type Outcome = Result<Option<Lsn>, Error>;

/// Who hears an entry's outcome: a waiting future or thread, or a callback
/// (for callers that must return before the sync, see
/// [`Context::append_batch`](crate::Context::append_batch)).
pub(crate) enum Ack {
    /// A oneshot channel; a dropped sender reads as a closed writer.
    Wait(oneshot::Sender<Outcome>),
    /// Called once, on the writer's thread (or, in `FsyncBatch`, its sync
    /// thread), with the outcome.
    Call(Callback),
}

/// A callback that is called exactly once: with the outcome, or, if the
/// request is dropped unanswered (its writer is gone), with
/// [`Error::Closed`], so that no caller is left waiting.
pub(crate) struct Callback {
    f: Option<Box<dyn FnOnce(Outcome) + Send>>,
    target: String,
}

impl Callback {
    pub(crate) fn new(target: String, f: Box<dyn FnOnce(Outcome) + Send>) -> Callback {
        Callback { f: Some(f), target }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            f(Err(Error::Closed {
                target: std::mem::take(&mut self.target),
            }));
        }
    }
}

impl Ack {
    /// Delivers the outcome (a waiter that has gone away is no error).
    pub(crate) fn send(self, outcome: Outcome) {
        match self {
            Ack::Wait(tx) => {
                let _ = tx.send(outcome);
            }
            Ack::Call(mut c) => {
                if let Some(f) = c.f.take() {
                    f(outcome);
                }
            }
        }
    }
}

/// One entry on its way to the file.
pub(crate) struct Queued {
    /// Serialized up to its LSN (files) or rendered (console).
    pub bytes: Vec<u8>,
    pub to_stderr: bool,
    pub ack: Option<Ack>,
    /// The LSN the caller chose, for contexts with caller-chosen LSNs.
    pub lsn: Option<Lsn>,
    /// The caller allows `lsn` to jump above the last one.
    pub gap: bool,
    /// More records of the same batch follow this one
    /// ([`Context::append_batch`](crate::Context::append_batch)): the writer
    /// thread keeps gathering until the batch is whole, so that it is written
    /// (and synced) as one group.
    pub more: bool,
}

/// Where the outcome of opening (and recovering) a file arrives.
pub(crate) type Opened = oneshot::Receiver<Result<Option<RecoveryReport>, Error>>;

/// What producers send to a writer.
pub(crate) enum Request {
    /// An entry.
    Record(Queued),
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
    /// Remove every entry above `after` (all of them for `None`), durably.
    TruncateAfter {
        after: Option<Lsn>,
        ack: oneshot::Sender<Result<(), Error>>,
    },
}

/// State shared between a writer and its producers.
pub(crate) struct Shared {
    pub target: String,
    pub path: Option<PathBuf>,
    pub(super) poisoned: OnceLock<Error>,
    /// Errors of `None` mode waiting for the next flush/close.
    pub(super) pending: Mutex<Option<Error>>,
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
    pub(super) last_group: std::sync::atomic::AtomicUsize,
    /// Callers currently waiting for an acknowledgement.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// The request the writer thread took off the queue and has not yet
    /// handled. The thread holds this lock while it receives, and a producer
    /// that drains the queue itself ([`WriterHandle::lead_full`]) holds it
    /// while draining and takes this request first, or, finding the lock
    /// held, leaves the queue alone: queue order stays file order.
    pub(super) in_hand: Mutex<Option<Request>>,
    pub(super) handler: ErrorHandler,
    /// The durable watermark ([`Context::durable_lsn`](crate::Context::durable_lsn)).
    pub durable: super::durability::Watermark,
    /// The first LSN `truncate_before` kept, once it removed something (0:
    /// nothing removed by this writer).
    pub first_kept: AtomicU64,
}

impl Shared {
    /// Hands an error that has no caller to the error handler.
    pub fn handle_error(&self, e: &Error) {
        (self.handler)(e);
    }

    /// A cleared buffer for a producer to serialize into: a recycled one
    /// when there is one, so producer and writer threads do not churn the
    /// allocator (glibc's cross-thread frees showed up as page faults).
    pub fn take_buf(&self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Returns a record's buffer to the pool. The first 1,024 kept may be
    /// up to 16 KiB; beyond those only small ones (up to 1 KiB) are kept, so
    /// that a pool sized to a long queue holds at most ~31 MiB even when
    /// entries are large.
    pub(super) fn recycle(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap <= 1024 || (cap <= 16 * 1024 && self.pool.len() < 1024) {
            buf.clear();
            let _ = self.pool.push(buf);
        }
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

/// The producers' handle on a running writer.
pub(crate) struct WriterHandle {
    pub tx: flume::Sender<Request>,
    pub shared: Arc<Shared>,
    /// The writer's state; whoever holds the lock is the one writer: the
    /// thread, or a blocking caller leading a group (see [`WriterHandle::lead`]).
    pub(super) core: Arc<Mutex<Option<Writer>>>,
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
            // As many as the queue holds: a `None` writer takes the whole queue at
            // once, and buffers the pool cannot take back are freed on the
            // writer thread and allocated again on the producer's (glibc's
            // cross-thread frees contend on the arena lock).
            pool: crossbeam_queue::ArrayQueue::new(cfg.queue_capacity.clamp(1, 16 * 1024)),
            handler: cfg.handler.clone(),
            durable: Default::default(),
            first_kept: AtomicU64::new(0),
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
