//! The public API: [`Logger`], a registry of named contexts, and [`Context`],
//! a cheap handle that logs entries.
//!
//! A context is a name plus checked options plus a writer. Contexts that
//! write the same file share one writer only when the later one is
//! `nested`; otherwise the file's lock refuses the second writer.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use futures::channel::oneshot;

use crate::entry::{CallSite, Entry, thread_id};
use crate::format;
use crate::options::{Compiled, ConsoleStream, ContextOptions};
use crate::template::write_value;
use crate::writer::{
    Ack, Callback, Opened, Outcome, Queued, Request, SinkConfig, WriterConfig, WriterHandle,
    default_error_handler,
};
use crate::{DurabilityMode, Error, LogLevel, Lsn, RecoveryReport};

/// How long a lone blocking caller spins for its acknowledgement before it parks.
const ACK_SPIN: std::time::Duration = std::time::Duration::from_micros(60);

/// A registry of named contexts; cheap to clone and share.
///
/// ```
/// # futures::executor::block_on(async {
/// use hyperlog::{ContextOptions, Logger, Message};
/// let dir = tempfile::tempdir().unwrap();
/// let logger = Logger::new();
/// logger.configure("stats", ContextOptions::new().path(dir.path().join("stats.log.json")))?;
/// let stats = logger.context("stats").await?;
/// assert_eq!(stats.log(Message::info("Stats update")).await?, None);
/// logger.close().await?;
/// # Ok::<(), hyperlog::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct Logger {
    inner: Arc<LoggerInner>,
}

#[derive(Default)]
struct LoggerInner {
    configs: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Names in `configs` that got the default options because they were
    /// opened without being configured.
    implicit: Mutex<std::collections::HashSet<String>>,
    /// See [`Logger::deny_unconfigured`].
    deny_unconfigured: std::sync::atomic::AtomicBool,
    contexts: Mutex<HashMap<String, Context>>,
    /// Writers by target (file path, or `stdout`/`stderr`), for `nested`.
    writers: Mutex<HashMap<String, Weak<WriterHandle>>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.inner.configs).keys().cloned().collect();
        f.debug_struct("Logger").field("contexts", &names).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Logger {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, [`Logger::context`] (and `context_blocking`) of a name
    /// that was never configured returns [`Error::UnconfiguredContext`]
    /// naming it, instead of opening a console context with the default
    /// options (the reference's behaviour, and the default: `false`). It
    /// catches a typo in a context name at the first open instead of
    /// sending that context's entries to stdout.
    ///
    /// The setting belongs to the registry, so it holds for every clone of
    /// this logger. A name opened unconfigured before it was turned on
    /// counts as unconfigured too.
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use hyperlog::{ContextOptions, Error, Logger};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let logger = Logger::new().deny_unconfigured(true);
    /// logger.configure("stats", ContextOptions::new().path(dir.path().join("stats.log.json")))?;
    /// let stats = logger.context_blocking("stats")?; // configured: fine
    /// match logger.context_blocking("stast") {
    ///     Err(Error::UnconfiguredContext { context }) => assert_eq!(context, "stast"),
    ///     other => panic!("expected an error, got {other:?}"),
    /// }
    /// # drop(stats);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn deny_unconfigured(self, deny: bool) -> Self {
        self.inner.deny_unconfigured.store(deny, Ordering::Relaxed);
        self
    }

    /// Registers or replaces the settings of context `name`, checking them
    /// now: a bad template, an instance id out of range or a bad option is
    /// an `Err` here. A context already open keeps its settings until it is
    /// closed and opened again.
    pub fn configure(&self, name: &str, options: ContextOptions) -> Result<(), Error> {
        let compiled = options.compile(name)?;
        let mut configs = lock(&self.inner.configs);
        configs.insert(name.to_string(), Arc::new(compiled));
        lock(&self.inner.implicit).remove(name);
        Ok(())
    }

    /// Opens (or reuses) context `name`. A name never configured gets the
    /// default options (console, INFO or `HYPERLOG_LEVEL`), or is an
    /// [`Error::UnconfiguredContext`] with [`Logger::deny_unconfigured`]. Opening a file recovers it first (see
    /// [`Context::recovery_report`]). A context that was closed, or poisoned
    /// by a failed write or sync, is opened afresh.
    pub async fn context(&self, name: &str) -> Result<Context, Error> {
        let (ctx, opened) = self.start_context(name)?;
        if let Some(rx) = opened {
            let report = rx.await.unwrap_or_else(|_| {
                Err(Error::Closed {
                    target: ctx.inner.writer.shared.target.clone(),
                })
            });
            return self.finish_open(name, ctx, report);
        }
        Ok(ctx)
    }

    /// [`Logger::context`] for code without an async runtime.
    pub fn context_blocking(&self, name: &str) -> Result<Context, Error> {
        let (ctx, opened) = self.start_context(name)?;
        if let Some(rx) = opened {
            let report = crate::block_on(rx).unwrap_or_else(|_| {
                Err(Error::Closed {
                    target: ctx.inner.writer.shared.target.clone(),
                })
            });
            return self.finish_open(name, ctx, report);
        }
        Ok(ctx)
    }

    /// Configures `name` with `options` and opens it.
    pub async fn context_with(
        &self,
        name: &str,
        options: ContextOptions,
    ) -> Result<Context, Error> {
        self.configure(name, options)?;
        self.context(name).await
    }

    /// [`Logger::context_with`] for code without an async runtime.
    pub fn context_with_blocking(
        &self,
        name: &str,
        options: ContextOptions,
    ) -> Result<Context, Error> {
        self.configure(name, options)?;
        self.context_blocking(name)
    }

    fn start_context(&self, name: &str) -> Result<(Context, Option<Opened>), Error> {
        let deny = self.inner.deny_unconfigured.load(Ordering::Relaxed);
        let unconfigured = || Error::UnconfiguredContext {
            context: name.to_string(),
        };
        if deny && lock(&self.inner.implicit).contains(name) {
            return Err(unconfigured());
        }
        if let Some(c) = lock(&self.inner.contexts).get(name)
            && c.is_usable()
        {
            return Ok((c.clone(), None));
        }
        let compiled = {
            let mut configs = lock(&self.inner.configs);
            match configs.get(name) {
                Some(c) => c.clone(),
                None if deny => return Err(unconfigured()),
                None => {
                    let c = Arc::new(ContextOptions::new().compile(name)?);
                    configs.insert(name.to_string(), c.clone());
                    lock(&self.inner.implicit).insert(name.to_string());
                    c
                }
            }
        };
        // An old, unusable context of that name releases its file first.
        if let Some(old) = lock(&self.inner.contexts).remove(name)
            && old.inner.owns_writer
        {
            old.inner.writer.request_close();
            old.inner.writer.join();
        }
        let o = &compiled.options;
        let target = match &compiled.file {
            Some(p) => p.display().to_string(),
            None => match o.console {
                ConsoleStream::Stdout => "stdout".to_string(),
                ConsoleStream::Stderr => "stderr".to_string(),
            },
        };
        let shared_writer = {
            let writers = lock(&self.inner.writers);
            writers.get(&target).and_then(Weak::upgrade).filter(|w| {
                !w.shared.closed.load(Ordering::Acquire) && w.shared.poisoned().is_none()
            })
        };
        // Console streams are shared by every console context of a logger.
        let reuse = shared_writer.filter(|_| o.nested || compiled.file.is_none());
        let (writer, opened) = match reuse {
            Some(w) => (w, None),
            None => {
                let sink = match &compiled.file {
                    Some(p) => SinkConfig::File {
                        path: p.clone(),
                        fs: o.file_system.clone(),
                        mode: o.file_mode,
                    },
                    None => SinkConfig::Console(o.console),
                };
                let (w, rx) = WriterHandle::spawn(WriterConfig {
                    sink,
                    durability: o.durability,
                    format: o.format,
                    lsn_instance: o.enable_lsn.then_some(o.instance_id as u16),
                    caller_lsns: o.caller_lsns,
                    batch_max_size: o.batch_max_size,
                    batch_max_bytes: o.batch_max_bytes,
                    batch_timeout: o.batch_timeout,
                    sync_thread: o.sync_thread,
                    queue_capacity: o.queue_capacity,
                    max_record_size: o.max_record_size,
                    preallocate: o.preallocate_step(),
                    retention: (compiled.file.is_some()
                        && (compiled.retention.rotates() || compiled.retention.prunes()))
                    .then(|| compiled.retention.clone()),
                    recovery: o.recovery,
                    handler: o
                        .error_handler
                        .clone()
                        .unwrap_or_else(default_error_handler),
                })?;
                // Recorded for `nested` contexts once the open succeeded.
                (w, Some(rx))
            }
        };
        let ctx = Context {
            inner: Arc::new(ContextInner {
                name: name.to_string(),
                config: compiled.clone(),
                writer,
                // A console stream is shared by every console context and
                // closes when the last of them is dropped.
                owns_writer: opened.is_some() && !o.nested && compiled.file.is_some(),
                report: Mutex::new(None),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if opened.is_none() {
            lock(&self.inner.contexts).insert(name.to_string(), ctx.clone());
        }
        Ok((ctx, opened))
    }

    fn finish_open(
        &self,
        name: &str,
        ctx: Context,
        report: Result<Option<RecoveryReport>, Error>,
    ) -> Result<Context, Error> {
        match report {
            Ok(r) => {
                *lock(&ctx.inner.report) = r;
                let w = &ctx.inner.writer;
                lock(&self.inner.writers).insert(w.shared.target.clone(), Arc::downgrade(w));
                lock(&self.inner.contexts).insert(name.to_string(), ctx.clone());
                Ok(ctx)
            }
            Err(e) => {
                ctx.inner
                    .writer
                    .shared
                    .closed
                    .store(true, Ordering::Release);
                ctx.inner.writer.join();
                Err(e)
            }
        }
    }

    /// Flushes every open context (see [`Context::flush`]); returns the
    /// first error.
    pub async fn flush(&self) -> Result<(), Error> {
        let all: Vec<Context> = lock(&self.inner.contexts).values().cloned().collect();
        let mut first = Ok(());
        for c in all {
            if let Err(e) = c.flush().await {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// [`Logger::flush`] without an async runtime (used by the panic hook).
    pub fn flush_blocking(&self) -> Result<(), Error> {
        crate::block_on(self.flush())
    }

    /// Closes every context: drains, syncs and releases the files. Returns the
    /// first error.
    pub async fn close(&self) -> Result<(), Error> {
        let all: Vec<Context> = lock(&self.inner.contexts).drain().map(|(_, c)| c).collect();
        let mut first = Ok(());
        for c in all {
            if let Err(e) = c.close().await {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// [`Logger::close`] without an async runtime.
    pub fn close_blocking(&self) -> Result<(), Error> {
        crate::block_on(self.close())
    }

    /// Installs a panic hook that flushes every context of this logger (after
    /// the previous hook ran), so a panicking process loses nothing it
    /// acknowledged, even in `None` mode.
    pub fn install_panic_hook(&self) {
        let weak = Arc::downgrade(&self.inner);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            prev(info);
            if let Some(inner) = weak.upgrade() {
                let _ = Logger { inner }.flush_blocking();
            }
        }));
    }
}

/// A handle on an open context; cheap to clone. Dropping the last handle
/// (and the logger's) flushes and closes it.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    name: String,
    config: Arc<Compiled>,
    writer: Arc<WriterHandle>,
    owns_writer: bool,
    report: Mutex<Option<RecoveryReport>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.inner.name)
            .field("target", &self.inner.writer.shared.target)
            .finish_non_exhaustive()
    }
}

/// Counters of a context's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// `write` calls made (one per group).
    pub writes: u64,
    /// `fdatasync` calls made.
    pub syncs: u64,
    /// Entries dropped and not yet reported in the log.
    pub dropped_pending: u64,
    /// Records that reached the OS (drop notices included).
    pub records_written: u64,
    /// Bytes that reached the OS (preallocated zeros not included).
    pub bytes_written: u64,
    /// Rotations done (files sealed as segments or archives).
    pub rotations: u64,
    /// The longest delay one rotation added to the group of entries that
    /// found the file due, in microseconds: the time it held the writer, plus
    /// the time its directory sync (run beside that group's write and
    /// `fdatasync`) outlasted them.
    pub longest_rotation_us: u64,
}

enum Prepared {
    Filtered,
    Send(
        Request,
        Option<oneshot::Receiver<Result<Option<Lsn>, Error>>>,
    ),
}

impl Context {
    /// The context's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The file this context writes, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.inner.config.file.as_deref()
    }

    /// The minimum level in force.
    pub fn level(&self) -> LogLevel {
        self.inner.config.level
    }

    /// The durability mode.
    pub fn durability(&self) -> DurabilityMode {
        self.inner.config.options.durability
    }

    /// What recovery found when this context opened its file.
    pub fn recovery_report(&self) -> Option<RecoveryReport> {
        lock(&self.inner.report).clone()
    }

    /// Passes an error that has no caller to return to (in an adapter, say)
    /// to the context's error handler.
    pub fn report_error(&self, e: &Error) {
        self.inner.writer.shared.handle_error(e);
    }

    /// Appends `entries`, each with the LSN the caller chose (a context
    /// with [`ContextOptions::caller_lsns`]), as consecutive records behind
    /// everything queued before them, and returns once they are queued: it
    /// never waits for the disk (only for room in a full queue). `on_durable`
    /// is called once, on the writer's thread (in `FsyncBatch`, usually its
    /// sync thread), after the `fdatasync` that
    /// covers all of them (in `Fsync`/`FsyncBatch`; in `Flush` and `None`
    /// once they are written), with the last LSN, or with the error that
    /// kept them from being durable (a dropped writer calls it with
    /// [`Error::Closed`]: it is never left uncalled). So a caller that must
    /// return at once, such as a Raft log store's `append`, still rides on
    /// group commit: every batch submitted while a sync runs shares the next
    /// one. Keep `on_durable` short (send on a channel) and never let it
    /// wait for this context: the next sync waits for it.
    ///
    /// The log's readers see the entries once they are written, at the
    /// latest when `on_durable` runs; a caller that must serve them before
    /// that (a Raft store's readers right after `append`) keeps what it
    /// submitted in memory until then, as the raft-log crate does.
    ///
    /// LSNs must rise by one from the last entry in the log; the first entry
    /// of an empty log may have any LSN (0 included), and with `allow_gap`
    /// the first entry of this batch may jump above the last (after a purge
    /// past the end). An LSN out of order fails with
    /// [`Error::LsnOutOfOrder`] through `on_durable` and is not written;
    /// neither is anything after it in the batch.
    ///
    /// ```
    /// use hyperlog::{ContextOptions, DurabilityMode, Logger, Lsn, Message};
    /// # futures::executor::block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let logger = Logger::new();
    /// let raft_log = logger.context_with("raft", ContextOptions::new()
    ///     .path(dir.path().join("raft.wal"))
    ///     .durability(DurabilityMode::FsyncBatch)
    ///     .caller_lsns(true)
    ///     .compact(true)).await?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let batch = vec![(Lsn::new(0), Message::info("a")), (Lsn::new(1), Message::info("b"))];
    /// raft_log.append_batch(batch, false, move |r| { let _ = tx.send(r); }).await?;
    /// assert_eq!(rx.recv()?.ok(), Some(Some(Lsn::new(1))));
    /// assert_eq!(raft_log.durable_lsn(), Some(Lsn::new(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn append_batch<E, F>(
        &self,
        entries: Vec<(Lsn, E)>,
        allow_gap: bool,
        on_durable: F,
    ) -> Result<(), Error>
    where
        E: Entry,
        F: FnOnce(Result<Option<Lsn>, Error>) + Send + 'static,
    {
        for r in self.batch_requests(entries, allow_gap, on_durable)? {
            if self.inner.writer.tx.send_async(r).await.is_err() {
                return Err(self.send_failed());
            }
        }
        Ok(())
    }

    /// [`Context::append_batch`] without an async runtime.
    pub fn append_batch_blocking<E, F>(
        &self,
        entries: Vec<(Lsn, E)>,
        allow_gap: bool,
        on_durable: F,
    ) -> Result<(), Error>
    where
        E: Entry,
        F: FnOnce(Result<Option<Lsn>, Error>) + Send + 'static,
    {
        crate::block_on(self.append_batch(entries, allow_gap, on_durable))
    }

    /// The queued requests of a batch; the last carries the callback (an
    /// empty batch's runs at once).
    fn batch_requests<E, F>(
        &self,
        entries: Vec<(Lsn, E)>,
        allow_gap: bool,
        on_durable: F,
    ) -> Result<Vec<Request>, Error>
    where
        E: Entry,
        F: FnOnce(Result<Option<Lsn>, Error>) + Send + 'static,
    {
        let o = &self.inner.config.options;
        if !o.caller_lsns || self.inner.config.file.is_none() {
            return Err(Error::InvalidOption {
                context: self.inner.name.clone(),
                option: "caller_lsns",
                reason: "append_batch needs a file context with caller-chosen LSNs".into(),
            });
        }
        if entries.is_empty() {
            on_durable(Ok(None));
            return Ok(Vec::new());
        }
        let n = entries.len();
        let mut requests = Vec::with_capacity(n);
        let mut on_durable: Option<Box<dyn FnOnce(Outcome) + Send>> = Some(Box::new(on_durable));
        for (i, (lsn, entry)) in entries.into_iter().enumerate() {
            // At the highest level: a log whose entries the caller numbers
            // is never filtered (a filtered entry would be a hole).
            let req = match self.prepare_with_level(&entry, LogLevel::Fatal, CallSite::caller())? {
                Prepared::Send(Request::Record(q), _) => q,
                _ => return Err(self.closed_error()),
            };
            let ack = if i + 1 == n {
                on_durable
                    .take()
                    .map(|f| Ack::Call(Callback::new(self.inner.writer.shared.target.clone(), f)))
            } else {
                None
            };
            requests.push(Request::Record(Queued {
                ack,
                lsn: Some(lsn),
                gap: allow_gap && i == 0,
                more: i + 1 < n,
                ..req
            }));
        }
        Ok(requests)
    }

    /// The durable watermark: the highest LSN such that it and every lower
    /// LSN of this context are durable as its mode defines (covered by a
    /// completed sync in `Fsync` and `FsyncBatch`; written to the OS in
    /// `Flush` and `None`). `None` before any entry with an LSN is durable,
    /// and for contexts without LSNs.
    ///
    /// It is the safe point for a checkpoint. The acknowledgements of
    /// concurrent producers may complete out of LSN order (each producer is
    /// woken by its own channel), so the highest LSN acknowledged so far is
    /// not such a point; this is. It only rises. Entries recovered when the
    /// context opened count as durable (the open syncs them first).
    ///
    /// ```
    /// use hyperlog::{ContextOptions, DurabilityMode, Logger, Message};
    /// let dir = tempfile::tempdir()?;
    /// let logger = Logger::new();
    /// let wal = logger.context_with_blocking("wal", ContextOptions::new()
    ///     .path(dir.path().join("node.wal"))
    ///     .durability(DurabilityMode::FsyncBatch)
    ///     .enable_lsn(true))?;
    /// assert_eq!(wal.durable_lsn(), None);
    /// let lsn = wal.log_blocking(Message::info("job 1 created"))?;
    /// assert_eq!(wal.durable_lsn(), lsn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durable_lsn(&self) -> Option<Lsn> {
        self.inner.writer.shared.durable.get()
    }

    /// Follows this context's log from `from_lsn`: a [`futures::Stream`] of
    /// the entries at or above it, in LSN order, each yielded only once it
    /// is durable (see [`Context::durable_lsn`]), waiting for new ones,
    /// across rotations. It does not poll the disk while nothing is written:
    /// each completed group wakes it. Items are `(offset, log, lsn)` as
    /// [`read_entries`](crate::read_entries) gives them (`lsn` is always
    /// `Some`). The stream ends once the context is closed and every durable
    /// entry was yielded, or after an error: a poisoned writer ends it with
    /// its error.
    ///
    /// If `truncate_before` (or retention) already removed entries at or
    /// above `from_lsn`, the stream yields [`Error::BelowTruncation`] naming
    /// both LSNs instead of resuming silently later; if it removes a segment
    /// the follower has not read yet, [`Error::SegmentRemoved`].
    ///
    /// The context must be a file context with LSNs (`enable_lsn`);
    /// otherwise the stream yields [`Error::InvalidOption`].
    ///
    /// ```
    /// use futures::StreamExt;
    /// use hyperlog::{ContextOptions, DurabilityMode, Logger, Lsn, Message};
    /// # futures::executor::block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let logger = Logger::new();
    /// let wal = logger.context_with("wal", ContextOptions::new()
    ///     .path(dir.path().join("node.wal"))
    ///     .durability(DurabilityMode::FsyncBatch)
    ///     .enable_lsn(true)).await?;
    /// let mut follower = wal.follow::<Message>(Lsn::new(0));
    /// wal.log(Message::info("job 1 created")).await?;
    /// let (_, log, _) = follower.next().await.unwrap()?;
    /// assert_eq!(log.entry.message.as_deref(), Some("job 1 created"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn follow<T>(&self, from_lsn: Lsn) -> crate::follow::Follow<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        crate::follow::Follow::spawn(self.follow_blocking(from_lsn))
    }

    /// [`Context::follow`] as a blocking iterator, for code without an async
    /// runtime: `next` blocks until the next entry is durable.
    pub fn follow_blocking<T>(&self, from_lsn: Lsn) -> crate::follow::FollowIter<T>
    where
        T: serde::de::DeserializeOwned,
    {
        let o = &self.inner.config.options;
        let path = self.inner.config.file.clone().unwrap_or_default();
        let options = crate::ReadOptions::default()
            .format(o.format)
            .max_record_size(o.max_record_size)
            .file_system(o.file_system.clone());
        if self.inner.config.file.is_none() || !o.enable_lsn {
            return crate::follow::FollowIter::failed(
                Error::InvalidOption {
                    context: self.inner.name.clone(),
                    option: "enable_lsn",
                    reason: "follow needs a file context with LSNs".into(),
                },
                self.inner.writer.shared.clone(),
                path,
                from_lsn,
                options,
            );
        }
        crate::follow::FollowIter::new(self.inner.writer.shared.clone(), path, from_lsn, options)
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        let s = &self.inner.writer.shared;
        WriterStats {
            writes: s.writes.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            dropped_pending: s.dropped.load(Ordering::Relaxed),
            records_written: s.records_written.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            rotations: s.rotations.load(Ordering::Relaxed),
            longest_rotation_us: s.longest_rotation_us.load(Ordering::Relaxed),
        }
    }

    fn is_usable(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
            && !self.inner.writer.shared.closed.load(Ordering::Acquire)
            && self.inner.writer.shared.poisoned().is_none()
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            target: self.inner.writer.shared.target.clone(),
        }
    }

    /// Logs `entry` and returns once it is as durable as the context's mode
    /// promises: `Ok(Some(lsn))` with LSNs enabled, else `Ok(None)`. An
    /// entry below the context's level returns `Ok(None)` at once, without
    /// being serialized. The call site (file and line) is captured here.
    ///
    /// The future works under any executor (tokio, async-std,
    /// `futures::executor::block_on`). When the queue is full it waits
    /// (backpressure).
    ///
    /// **Cancelling is not un-logging.** Once polled, the entry is queued; a
    /// future dropped before it completes (a `select!` that took another
    /// branch, a timeout) leaves the entry to be written and synced all the
    /// same: its outcome is *unknown*, not "not written". A caller that must
    /// know reads the log back, or waits for [`Context::durable_lsn`] to
    /// pass a known LSN.
    #[track_caller]
    pub fn log<E: Entry>(
        &self,
        entry: E,
    ) -> impl Future<Output = Result<Option<Lsn>, Error>> + Send + 'static {
        let prepared = self.prepare(&entry, CallSite::caller());
        let ctx = self.clone();
        async move { ctx.submit_async(prepared?).await }
    }

    /// [`Context::log`] with an explicit call site (used by the macros,
    /// which also name the function).
    pub fn log_at<E: Entry>(
        &self,
        site: CallSite,
        entry: E,
    ) -> impl Future<Output = Result<Option<Lsn>, Error>> + Send + 'static {
        let prepared = self.prepare(&entry, site);
        let ctx = self.clone();
        async move { ctx.submit_async(prepared?).await }
    }

    /// [`Context::log`] for code without an async runtime: blocks until the
    /// entry is as durable as the mode promises.
    #[track_caller]
    pub fn log_blocking<E: Entry>(&self, entry: E) -> Result<Option<Lsn>, Error> {
        let prepared = self.prepare(&entry, CallSite::caller())?;
        self.submit_blocking(prepared)
    }

    /// [`Context::log_blocking`] with an explicit call site.
    pub fn log_blocking_at<E: Entry>(
        &self,
        site: CallSite,
        entry: E,
    ) -> Result<Option<Lsn>, Error> {
        let prepared = self.prepare(&entry, site)?;
        self.submit_blocking(prepared)
    }

    /// Builds an entry with the registered model `model` (see
    /// [`ContextOptions::model`]) around `message` and logs it. The model
    /// `"default"` is `Message` at INFO.
    #[track_caller]
    pub fn log_prepared(
        &self,
        message: &str,
        model: &str,
    ) -> impl Future<Output = Result<Option<Lsn>, Error>> + Send + 'static {
        let site = CallSite::caller();
        let prepared = self.prepare_model(message, model, site);
        let ctx = self.clone();
        async move { ctx.submit_async(prepared?).await }
    }

    fn prepare_model(&self, message: &str, model: &str, site: CallSite) -> Result<Prepared, Error> {
        let build = self
            .inner
            .config
            .models
            .iter()
            .find(|m| m.0 == model)
            .map(|m| m.1.clone())
            .ok_or_else(|| Error::UnknownModel {
                context: self.inner.name.clone(),
                model: model.to_string(),
            })?;
        let entry = build(message);
        let level = entry.level();
        let value = entry.to_json().map_err(|e| Error::Serialize {
            target: self.inner.writer.shared.target.clone(),
            reason: e.to_string(),
        })?;
        self.prepare_with_level(&value, level, site)
    }

    fn prepare<E: Entry>(&self, entry: &E, site: CallSite) -> Result<Prepared, Error> {
        self.prepare_with_level(entry, entry.level(), site)
    }

    fn prepare_with_level<E: Entry + ?Sized>(
        &self,
        entry: &E,
        level: LogLevel,
        site: CallSite,
    ) -> Result<Prepared, Error> {
        let cfg = &self.inner.config;
        if level < cfg.level {
            return Ok(Prepared::Filtered);
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let shared = &self.inner.writer.shared;
        if let Some(p) = shared.poisoned() {
            return Err(p);
        }
        let ser_err = |e: serde_json::Error| Error::Serialize {
            target: shared.target.clone(),
            reason: e.to_string(),
        };
        let o = &cfg.options;
        let (bytes, to_stderr) = match &cfg.file {
            Some(path) => {
                let mut buf = shared.take_buf();
                if o.compact {
                    format::encode_compact_envelope(entry, &mut buf).map_err(ser_err)?;
                } else {
                    format::encode_envelope(entry, &site, thread_id(), &mut buf)
                        .map_err(ser_err)?;
                }
                // Refuse an oversized record before it is queued (the writer
                // checks again with the exact LSN width).
                let len = format::payload_len(&buf, None) as u64;
                if len > o.max_record_size {
                    return Err(Error::RecordTooLarge {
                        path: path.clone(),
                        len,
                        max: o.max_record_size,
                    });
                }
                (buf, false)
            }
            None => {
                let value = if cfg.template.needs_entry() {
                    Some(serde_json::to_value(entry).map_err(ser_err)?)
                } else {
                    None
                };
                let mut line = String::with_capacity(128);
                let mut ts = Vec::with_capacity(32);
                crate::entry::write_timestamp(&mut ts);
                let ts = String::from_utf8(ts).unwrap_or_default();
                let tid = thread_id();
                cfg.template.render(&mut line, |name, out| {
                    use std::fmt::Write as _;
                    match name {
                        "timestamp" => out.push_str(&ts),
                        "filename" => out.push_str(site.file.unwrap_or_default()),
                        "function_name" => out.push_str(site.function.unwrap_or_default()),
                        "line_number" => {
                            if let Some(l) = site.line {
                                let _ = write!(out, "{l}");
                            }
                        }
                        "thread_id" => {
                            let _ = write!(out, "{tid}");
                        }
                        "context" => out.push_str(&self.inner.name),
                        "lsn" => {}
                        "level" => out.push_str(level.as_str()),
                        field => match value.as_ref().and_then(|v| v.get(field)) {
                            Some(v) => write_value(out, v),
                            None => return false,
                        },
                    }
                    true
                });
                line.push('\n');
                let to_stderr = o.errors_to_stderr && level >= LogLevel::Error;
                (line.into_bytes(), to_stderr)
            }
        };
        let needs_ack =
            o.durability != DurabilityMode::None || (o.enable_lsn && cfg.file.is_some());
        let (ack, rx) = if needs_ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Ok(Prepared::Send(
            Request::Record(Queued {
                bytes,
                to_stderr,
                ack: ack.map(Ack::Wait),
                lsn: None,
                gap: false,
                more: false,
            }),
            rx,
        ))
    }

    async fn submit_async(&self, p: Prepared) -> Result<Option<Lsn>, Error> {
        let (req, rx) = match p {
            Prepared::Filtered => return Ok(None),
            Prepared::Send(req, rx) => (req, rx),
        };
        let o = &self.inner.config.options;
        if o.drop_when_full {
            match self.inner.writer.tx.try_send(req) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(_)) => {
                    self.inner
                        .writer
                        .shared
                        .dropped
                        .fetch_add(1, Ordering::AcqRel);
                    return Ok(None);
                }
                Err(flume::TrySendError::Disconnected(_)) => return Err(self.closed_error()),
            }
        } else if self.inner.writer.tx.send_async(req).await.is_err() {
            return Err(self.send_failed());
        }
        match rx {
            None => Ok(None),
            Some(rx) => {
                let shared = &self.inner.writer.shared;
                shared.waiting.fetch_add(1, Ordering::AcqRel);
                let res = rx.await.unwrap_or_else(|_| Err(self.send_failed()));
                shared.waiting.fetch_sub(1, Ordering::AcqRel);
                res
            }
        }
    }

    fn submit_blocking(&self, p: Prepared) -> Result<Option<Lsn>, Error> {
        let (req, rx) = match p {
            Prepared::Filtered => return Ok(None),
            Prepared::Send(req, rx) => (req, rx),
        };
        if self.inner.config.options.drop_when_full {
            match self.inner.writer.tx.try_send(req) {
                Ok(()) => {}
                Err(flume::TrySendError::Full(_)) => {
                    self.inner
                        .writer
                        .shared
                        .dropped
                        .fetch_add(1, Ordering::AcqRel);
                    return Ok(None);
                }
                Err(flume::TrySendError::Disconnected(_)) => return Err(self.closed_error()),
            }
        } else {
            // A caller that waits for its acknowledgement may write itself
            // when the writer is idle; otherwise it queues like everyone.
            let req = match rx {
                Some(_) => self
                    .inner
                    .writer
                    .lead(req, !self.durability().syncs())
                    .err(),
                // Nothing to wait for: queue it. When the queue is full, drain
                // it and write on this thread instead of parking until the
                // writer thread (one among all the producers competing for
                // the cores) frees a slot; the entries keep their order, as
                // the queued ones go first.
                None => match self.inner.writer.tx.try_send(req) {
                    Ok(()) => None,
                    Err(flume::TrySendError::Full(req)) => self.inner.writer.lead_full(req).err(),
                    Err(flume::TrySendError::Disconnected(_)) => {
                        return Err(self.send_failed());
                    }
                },
            };
            if let Some(req) = req
                && self.inner.writer.tx.send(req).is_err()
            {
                return Err(self.send_failed());
            }
        }
        match rx {
            None => Ok(None),
            Some(rx) => self.wait_ack(rx),
        }
    }

    /// Waits for an acknowledgement on a blocking caller's thread. A lone
    /// waiter spins briefly (a parked thread takes tens of microseconds to
    /// wake); with others waiting, it parks at once.
    fn wait_ack(
        &self,
        mut rx: oneshot::Receiver<Result<Option<Lsn>, Error>>,
    ) -> Result<Option<Lsn>, Error> {
        let shared = &self.inner.writer.shared;
        // Spin only when this caller waits alone for a write (not a sync):
        // with other waiters, or with a 200 us fdatasync ahead, the core is
        // better left to the writer and the other producers.
        let alone = shared.waiting.fetch_add(1, Ordering::AcqRel) == 0;
        let spin = alone && crate::writer::spin_enabled() && !self.durability().syncs();
        let mut got = None;
        if spin {
            let start = std::time::Instant::now();
            got = loop {
                match rx.try_recv() {
                    Ok(Some(r)) => break Some(r),
                    Ok(None) => {}
                    Err(_) => break Some(Err(self.send_failed())),
                }
                if start.elapsed() > ACK_SPIN {
                    break None;
                }
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            };
        }
        let res = match got {
            Some(r) => r,
            None => crate::block_on(rx).unwrap_or_else(|_| Err(self.send_failed())),
        };
        shared.waiting.fetch_sub(1, Ordering::AcqRel);
        res
    }

    /// The error for a request the writer could not take.
    fn send_failed(&self) -> Error {
        self.inner
            .writer
            .shared
            .poisoned()
            .unwrap_or_else(|| self.closed_error())
    }

    /// Makes everything acknowledged so far durable per the context's mode
    /// (in `None` mode: written to the OS) and returns any error that had no
    /// caller (a `None`-mode write failure).
    pub async fn flush(&self) -> Result<(), Error> {
        self.flush_request(false).await
    }

    /// Like [`Context::flush`] but also `fdatasync`s the file, whatever the
    /// mode.
    pub async fn sync(&self) -> Result<(), Error> {
        self.flush_request(true).await
    }

    /// Sends a control request made around its answer's sender and waits
    /// for the answer (a writer that is gone reads as closed).
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Request,
    ) -> Result<T, Error> {
        let (ack, rx) = oneshot::channel();
        if self.inner.writer.tx.send_async(make(ack)).await.is_err() {
            return Err(self.send_failed());
        }
        rx.await.unwrap_or_else(|_| Err(self.send_failed()))
    }

    async fn flush_request(&self, sync: bool) -> Result<(), Error> {
        self.request(|ack| Request::Flush { sync, ack }).await
    }

    /// [`Context::flush`] without an async runtime.
    pub fn flush_blocking(&self) -> Result<(), Error> {
        crate::block_on(self.flush())
    }

    /// Drains the queue, makes everything durable (one `fdatasync` for file
    /// contexts), and releases the file and its lock. Later `log` calls on
    /// any clone fail with [`Error::Closed`]. A `nested` context's close only
    /// flushes: the shared stream stays open. Returns the error of a failed
    /// write or sync that no caller has seen yet, or the poisoning error.
    pub async fn close(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if !self.inner.owns_writer {
            return match self.flush().await {
                Err(Error::Closed { .. }) => Ok(()),
                other => other,
            };
        }
        let res = match self.inner.writer.request_close() {
            Some(rx) => rx.await.unwrap_or(Ok(())),
            None => Ok(()),
        };
        self.inner.writer.join();
        res
    }

    /// Deletes the sealed segments of a segmented write-ahead log whose every
    /// entry has an LSN below `lsn` (AD-38's `truncate_before`: call it once a
    /// checkpoint covers them), syncs the directory, and returns the paths
    /// removed. Never touches the live file or any entry at or above `lsn`.
    /// A log that never rotated has no sealed segments: nothing is removed.
    pub async fn truncate_before(&self, lsn: Lsn) -> Result<Vec<PathBuf>, Error> {
        self.request(|ack| Request::Truncate { before: lsn, ack })
            .await
    }

    /// Removes every entry with an LSN above `after` (every entry for
    /// `None`), from the live file and from later sealed segments: a Raft
    /// log's conflicting suffix. It is ordered behind everything queued
    /// before it (appends still waiting for their sync included) and is
    /// durable when it returns: the files cut and synced, later segments
    /// deleted and the directory synced, before any entry queued after it is
    /// written. A crash at any moment leaves a prefix of the old log, cut at
    /// `after` or later: never a hole, never old entries behind new ones.
    /// Cutting at or beyond the end changes nothing. The durable watermark
    /// ([`Context::durable_lsn`]) comes down to `after`. With
    /// [`ContextOptions::caller_lsns`] the next entry must then be
    /// `after + 1`.
    ///
    /// ```
    /// use hyperlog::{ContextOptions, DurabilityMode, Logger, Lsn, Message, ReadOptions};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("raft.wal");
    /// let logger = Logger::new();
    /// let log = logger.context_with_blocking("raft", ContextOptions::new()
    ///     .path(&path).durability(DurabilityMode::FsyncBatch).caller_lsns(true))?;
    /// let batch = (1..=5).map(|i| (Lsn::new(i), Message::info(format!("e{i}")))).collect();
    /// log.append_batch_blocking(batch, false, |_| {})?;
    /// log.truncate_after_blocking(Some(Lsn::new(3)))?;
    /// log.append_batch_blocking(vec![(Lsn::new(4), Message::info("new e4"))], false, |_| {})?;
    /// log.close_blocking()?;
    /// let lsns: Vec<u64> = hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
    ///     .map(|e| e.unwrap().2.unwrap().get()).collect();
    /// assert_eq!(lsns, [1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn truncate_after(&self, after: Option<Lsn>) -> Result<(), Error> {
        self.request(|ack| Request::TruncateAfter { after, ack })
            .await
    }

    /// [`Context::truncate_after`] without an async runtime.
    pub fn truncate_after_blocking(&self, after: Option<Lsn>) -> Result<(), Error> {
        crate::block_on(self.truncate_after(after))
    }

    /// [`Context::truncate_before`] without an async runtime.
    pub fn truncate_before_blocking(&self, lsn: Lsn) -> Result<Vec<PathBuf>, Error> {
        crate::block_on(self.truncate_before(lsn))
    }

    /// [`Context::close`] without an async runtime.
    pub fn close_blocking(&self) -> Result<(), Error> {
        crate::block_on(self.close())
    }

    /// The file path this context writes, as a `PathBuf`.
    pub fn file(&self) -> Option<PathBuf> {
        self.inner.config.file.clone()
    }
}

/// The name of the function this macro is expanded in.
#[doc(hidden)]
#[macro_export]
macro_rules! __function_name {
    () => {{
        fn f() {}
        fn type_name_of<T>(_: T) -> &'static str {
            ::core::any::type_name::<T>()
        }
        let mut name = type_name_of(f);
        name = name.strip_suffix("::f").unwrap_or(name);
        while let Some(n) = name.strip_suffix("::{{closure}}") {
            name = n;
        }
        name
    }};
}

/// The call site (file, line, function) where this macro is expanded.
#[doc(hidden)]
#[macro_export]
macro_rules! __call_site {
    () => {
        $crate::CallSite {
            file: ::core::option::Option::Some(::core::file!()),
            function: ::core::option::Option::Some($crate::__function_name!()),
            line: ::core::option::Option::Some(::core::line!()),
        }
    };
}

/// Logs a formatted [`Message`](crate::Message) at a level through a context,
/// capturing file, line and function name. Returns the future of
/// [`Context::log`]; `.await` it.
///
/// ```
/// # futures::executor::block_on(async {
/// use hyperlog::{LogLevel, Logger};
/// let logger = Logger::new();
/// let ctx = logger.context("console").await?;
/// hyperlog::log!(ctx, LogLevel::Info, "job {} started", 7).await?;
/// # Ok::<(), hyperlog::Error>(())
/// # }).unwrap();
/// ```
///
/// Prefix the context with `blocking:` for code without a runtime; the macro
/// then returns the `Result` of [`Context::log_blocking`]:
///
/// ```
/// use hyperlog::{LogLevel, Logger};
/// let logger = Logger::new();
/// let ctx = logger.context_blocking("console")?;
/// hyperlog::warn!(blocking: ctx, "disk at {}%", 91)?;
/// # Ok::<(), hyperlog::Error>(())
/// ```
#[macro_export]
macro_rules! log {
    (blocking: $ctx:expr, $level:expr, $($arg:tt)+) => {
        $ctx.log_blocking_at(
            $crate::__call_site!(),
            $crate::Message::new($level, ::std::format!($($arg)+)),
        )
    };
    ($ctx:expr, $level:expr, $($arg:tt)+) => {
        $ctx.log_at(
            $crate::__call_site!(),
            $crate::Message::new($level, ::std::format!($($arg)+)),
        )
    };
}

/// Logs a formatted message at `TRACE` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! trace {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Trace, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Trace, $($arg)+)
    };
}

/// Logs a formatted message at `DEBUG` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! debug {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Debug, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Debug, $($arg)+)
    };
}

/// Logs a formatted message at `INFO` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! info {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Info, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Info, $($arg)+)
    };
}

/// Logs a formatted message at `WARN` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! warn {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Warn, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Warn, $($arg)+)
    };
}

/// Logs a formatted message at `ERROR` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! error {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Error, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Error, $($arg)+)
    };
}

/// Logs a formatted message at `CRITICAL` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! critical {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Critical, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Critical, $($arg)+)
    };
}

/// Logs a formatted message at `FATAL` level; see [`log!`](crate::log!).
#[macro_export]
macro_rules! fatal {
    (blocking: $ctx:expr, $($arg:tt)+) => {
        $crate::log!(blocking: $ctx, $crate::LogLevel::Fatal, $($arg)+)
    };
    ($ctx:expr, $($arg:tt)+) => {
        $crate::log!($ctx, $crate::LogLevel::Fatal, $($arg)+)
    };
}
