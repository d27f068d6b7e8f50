//! The loggers under test, each behind [`Producer`]: hyperlog, `tracing`'s
//! JSON formatter through `tracing-appender`'s non-blocking writer or
//! straight to a file, and a bare `write` + `fdatasync` loop.
//!
//! The `tracing` peers are set up the way their documentation suggests
//! (`tracing_subscriber::fmt().json()`, a plain `File` as the appender's
//! writer, as `tracing_appender::rolling::never` would give), with the file,
//! line and thread id turned on so that their lines carry what hyperlog's
//! envelope carries (timestamp, level, message, file, line, thread id).
//! Subscribers are scoped with a [`Dispatch`], never installed globally.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperlog::{Context, ContextOptions, DurabilityMode, LogFormat, Logger, Message};
use tracing::Dispatch;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

use crate::measure::Producer;

/// A `tracing` JSON subscriber writing through `make_writer`, as a scoped
/// [`Dispatch`]; INFO and above, with file, line and thread id.
pub fn tracing_json<W>(make_writer: W) -> Dispatch
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_file(true)
        .with_line_number(true)
        .with_thread_ids(true)
        .with_writer(make_writer)
        .finish();
    Dispatch::new(subscriber)
}

/// A file writer that counts the lines that reached the file, so that a
/// benchmark can wait until an asynchronous writer has drained.
#[derive(Debug)]
pub struct CountingFile {
    file: File,
    lines: Arc<AtomicU64>,
}

impl CountingFile {
    /// Wraps `file`; returns the writer and its line counter.
    pub fn new(file: File) -> (Self, Arc<AtomicU64>) {
        let lines = Arc::new(AtomicU64::new(0));
        (
            CountingFile {
                file,
                lines: lines.clone(),
            },
            lines,
        )
    }
}

impl std::io::Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        self.lines.fetch_add(newlines as u64, Ordering::Release);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Waits until `counter` reaches `target`, giving up after `limit`.
pub fn wait_for(counter: &AtomicU64, target: u64, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while counter.load(Ordering::Acquire) < target {
        if start.elapsed() > limit {
            return Err(format!(
                "writer drained only {} of {target} lines in {limit:?}",
                counter.load(Ordering::Acquire)
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn create(path: &Path, append: bool) -> Result<File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))
}

/// `tracing::info!` with the JSON formatter through `tracing-appender`'s
/// non-blocking writer in lossless mode (`lossy(false)`: a full queue blocks
/// the producer rather than dropping lines).
pub struct TracingNonBlocking {
    dispatch: Dispatch,
    guard: Option<WorkerGuard>,
    lines: Arc<AtomicU64>,
    path: PathBuf,
}

impl TracingNonBlocking {
    /// Writes to a new file at `path`; `queue` is the appender's
    /// `buffered_lines_limit` (its default is 128,000).
    pub fn new(path: &Path, queue: usize) -> Result<Self, String> {
        let (file, lines) = CountingFile::new(create(path, false)?);
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(queue)
            .finish(file);
        Ok(TracingNonBlocking {
            dispatch: tracing_json(writer),
            guard: Some(guard),
            lines,
            path: path.to_path_buf(),
        })
    }

    /// The scoped dispatcher (for callers that log themselves).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Lines written to the file so far.
    pub fn lines(&self) -> &Arc<AtomicU64> {
        &self.lines
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Producer for TracingNonBlocking {
    fn scoped(&self, body: &mut dyn FnMut()) {
        tracing::dispatcher::with_default(&self.dispatch, body)
    }

    fn log_one(&self, text: &str) -> Result<(), String> {
        tracing::info!("{}", text);
        Ok(())
    }

    fn finish(&mut self, entries: u64) -> Result<(), String> {
        wait_for(&self.lines, entries, Duration::from_secs(600))?;
        // Every line is in the file: the guard's shutdown is immediate.
        drop(self.guard.take());
        Ok(())
    }
}

/// `tracing::info!` with the JSON formatter writing each line straight to a
/// shared `File` opened for append (one `write(2)` per event, no lock in
/// user space).
pub struct TracingDirect {
    dispatch: Dispatch,
}

impl TracingDirect {
    /// Writes to a new file at `path`.
    pub fn new(path: &Path) -> Result<Self, String> {
        Ok(TracingDirect {
            dispatch: tracing_json(create(path, true)?),
        })
    }

    /// The scoped dispatcher.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}

impl Producer for TracingDirect {
    fn scoped(&self, body: &mut dyn FnMut()) {
        tracing::dispatcher::with_default(&self.dispatch, body)
    }

    fn log_one(&self, text: &str) -> Result<(), String> {
        tracing::info!("{}", text);
        Ok(())
    }
}

/// A hyperlog context writing a file; every call is
/// `ctx.log_blocking(Message::info(text))`.
pub struct Hyperlog {
    logger: Logger,
    ctx: Context,
}

impl Hyperlog {
    /// Opens context `name` with `options` (which must name a path).
    pub fn open(name: &str, options: ContextOptions) -> Result<Self, String> {
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(name, options)
            .map_err(|e| format!("open context {name}: {e}"))?;
        Ok(Hyperlog { logger, ctx })
    }

    /// A file context with the given mode and format, LSNs on or off, and
    /// otherwise default options.
    pub fn file(
        path: &Path,
        durability: DurabilityMode,
        format: LogFormat,
        lsn: bool,
    ) -> Result<Self, String> {
        Self::open(
            "bench",
            ContextOptions::new()
                .path(path)
                .durability(durability)
                .format(format)
                .enable_lsn(lsn),
        )
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Closes the context (drains, syncs, releases the file).
    pub fn close(self) -> Result<(), String> {
        self.ctx
            .close_blocking()
            .and_then(|()| self.logger.close_blocking())
            .map_err(|e| format!("close: {e}"))
    }
}

impl Producer for Hyperlog {
    fn log_one(&self, text: &str) -> Result<(), String> {
        self.ctx
            .log_blocking(Message::info(text))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn finish(&mut self, _entries: u64) -> Result<(), String> {
        // `None` mode returns once queued: the clock runs until the queue is
        // written out (a no-op wait in the other modes).
        self.ctx.flush_blocking().map_err(|e| format!("flush: {e}"))
    }
}

/// `slog` with `slog-json` behind `slog-async`, as slog's documentation
/// sets it up (`Async::new(Json::new(w).add_default_keys().build().fuse())`),
/// lossless (`OverflowStrategy::Block`, default 128-record channel), one
/// `write(2)` per record (a `LineWriter` over the file). Every call is
/// `slog::info!(logger, "{}", text)`.
pub struct Slog {
    logger: Option<slog::Logger>,
    guard: Option<slog_async::AsyncGuard>,
}

impl Slog {
    /// Writes to a new file at `path`.
    pub fn new(path: &Path) -> Result<Self, String> {
        use slog::Drain as _;
        let file = std::io::LineWriter::new(create(path, false)?);
        let json = slog_json::Json::new(file).add_default_keys().build().fuse();
        let (drain, guard) = slog_async::Async::new(json)
            .overflow_strategy(slog_async::OverflowStrategy::Block)
            .build_with_guard();
        let logger = slog::Logger::root(drain.fuse(), slog::o!());
        Ok(Slog {
            logger: Some(logger),
            guard: Some(guard),
        })
    }
}

impl Producer for Slog {
    fn log_one(&self, text: &str) -> Result<(), String> {
        if let Some(l) = &self.logger {
            slog::info!(l, "{}", text);
        }
        Ok(())
    }

    fn finish(&mut self, _entries: u64) -> Result<(), String> {
        // Dropping the last logger and then the guard flushes the channel
        // and joins the writer thread: every record is in the file.
        drop(self.logger.take());
        drop(self.guard.take());
        Ok(())
    }
}

/// The baseline for durable modes: one thread writing fixed-size records
/// and calling `File::sync_data` (`fdatasync`) after each.
///
/// Two flavours: *append* (`write_all` at the end of the file, so every
/// sync also commits a new file size), and *pre-zeroed* (records written
/// with `pwrite` over zeros written and synced beforehand, in 4 MiB steps
/// like hyperlog's default preallocation for syncing modes, so a sync
/// carries data only). The zeros are cut off when the baseline is dropped.
pub struct RawFsync {
    file: Mutex<RawFile>,
    record: Vec<u8>,
}

struct RawFile {
    file: File,
    pos: u64,
    zeroed: Option<u64>,
}

/// The pre-zeroed baseline's step, as hyperlog's default preallocation.
pub const RAW_ZERO_STEP: u64 = 4 * 1024 * 1024;

impl RawFsync {
    /// Writes `record_len`-byte records (ending in a newline) to a new file
    /// at `path`, appending, or over pre-zeroed space with `prezeroed`.
    pub fn new(path: &Path, record_len: usize, prezeroed: bool) -> Result<Self, String> {
        let mut record = crate::payload::text(record_len.saturating_sub(1)).into_bytes();
        record.push(b'\n');
        let mut raw = RawFile {
            file: create(path, !prezeroed)?,
            pos: 0,
            zeroed: prezeroed.then_some(0),
        };
        if prezeroed {
            raw.zero_to(RAW_ZERO_STEP)
                .map_err(|e| format!("zero-fill {}: {e}", path.display()))?;
        }
        Ok(RawFsync {
            file: Mutex::new(raw),
            record,
        })
    }
}

impl RawFile {
    fn zero_to(&mut self, len: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let zeros = vec![0u8; 256 * 1024];
        let mut end = self.zeroed.unwrap_or(0);
        while end < len {
            let n = ((len - end) as usize).min(zeros.len());
            self.file.write_all_at(&zeros[..n], end)?;
            end += n as u64;
        }
        self.file.sync_all()?;
        self.zeroed = Some(end);
        Ok(())
    }

    fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        match self.zeroed {
            None => self.file.write_all(record)?,
            Some(z) => {
                let end = self.pos + record.len() as u64;
                if end > z {
                    self.zero_to((end / RAW_ZERO_STEP + 1) * RAW_ZERO_STEP)?;
                }
                self.file.write_all_at(record, self.pos)?;
            }
        }
        self.pos += record.len() as u64;
        self.file.sync_data()
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        if self.zeroed.is_some() {
            let _ = self.file.set_len(self.pos);
        }
    }
}

impl Producer for RawFsync {
    fn log_one(&self, _text: &str) -> Result<(), String> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let record = &self.record;
        f.write_record(record)
            .map_err(|e| format!("raw write + fdatasync: {e}"))
    }
}
