//! Context settings: what a context writes, where, and with which promise.
//!
//! Everything is checked by [`Logger::configure`](crate::Logger::configure)
//! (or `context_with`), so that a bad template, an instance id out of range or
//! a contradictory setting is an error at configuration time, not at the first
//! `log`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::entry::Entry;
use crate::format::{DEFAULT_MAX_RECORD_SIZE, LogFormat};
use crate::fs::{FileSystem, StdFs};
use crate::retention::{IntoRetentionPolicy, ParseError, RetentionPolicy};
use crate::template::{DEFAULT_TEMPLATE, ENTRY_FIELDS, Template};
use crate::{Error, LogLevel, Lsn, Message};

/// What `log()` returning `Ok` promises. `Ord` follows the numbers.
///
/// | mode | acknowledged when | survives |
/// | --- | --- | --- |
/// | `None` | accepted into the context's bounded queue | nothing |
/// | `Flush` | written to the OS (`write(2)` done) | a crash or kill of the process |
/// | `Fsync` | that entry's own `fdatasync` finished | power loss |
/// | `FsyncBatch` | the group `fdatasync` covering the entry finished | power loss |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum DurabilityMode {
    /// Acknowledged on enqueue; for tests and best-effort statistics.
    None = 0,
    /// Acknowledged once written to the OS (the default).
    #[default]
    Flush = 1,
    /// Acknowledged after the entry's own `fdatasync`.
    Fsync = 2,
    /// Group commit: acknowledged after the `fdatasync` of the group that
    /// holds the entry.
    FsyncBatch = 3,
}

impl DurabilityMode {
    /// Whether acknowledgements wait for `fdatasync`.
    pub fn syncs(self) -> bool {
        self >= DurabilityMode::Fsync
    }
}

impl std::str::FromStr for DurabilityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
            "none" | "0" => Ok(DurabilityMode::None),
            "flush" | "1" => Ok(DurabilityMode::Flush),
            "fsync" | "2" => Ok(DurabilityMode::Fsync),
            "fsyncbatch" | "3" => Ok(DurabilityMode::FsyncBatch),
            _ => Err(format!(
                "unknown durability mode {s:?}: expected none, flush, fsync or fsync_batch"
            )),
        }
    }
}

/// What to do with damage found when reading or opening a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecoveryMode {
    /// A damaged record with no valid record after it is a torn tail and
    /// ends the log; damage followed by a valid record is an error.
    #[default]
    TolerateTail,
    /// Any damage is an error.
    AbsoluteConsistency,
    /// Skip damaged bytes, resynchronize on the next valid record, and report
    /// each skipped range.
    SkipCorrupted,
}

/// Which console stream a context without a path writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsoleStream {
    /// Standard output (the default).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// Called with every error that has no caller to return to (in `None`
/// mode, and drops).
pub type ErrorHandler = Arc<dyn Fn(&Error) + Send + Sync>;

pub(crate) type ModelFn = Arc<dyn Fn(&str) -> Box<dyn ErasedEntry> + Send + Sync>;

/// An entry with its type erased, for models.
pub(crate) trait ErasedEntry: Send {
    fn level(&self) -> LogLevel;
    fn to_json(&self) -> serde_json::Result<serde_json::Value>;
}

impl<E: Entry> ErasedEntry for E {
    fn level(&self) -> LogLevel {
        Entry::level(self)
    }
    fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

/// The environment variable (`HYPERLOG_LEVEL`) that sets the minimum level
/// of data-plane contexts configured without an explicit
/// [`ContextOptions::level`]; it never filters a write-ahead log (a context
/// that syncs or carries LSNs). Read when a context is configured.
pub const LEVEL_ENV: &str = "HYPERLOG_LEVEL";

/// The environment variable (`HYPERLOG_SYNC_THREAD`, `1` or `0`) that sets
/// the default of [`ContextOptions::sync_thread`] (off when unset); an
/// explicit `sync_thread` wins. Read when the options are created. It lets a
/// test suite run every `FsyncBatch` context through the pipelined commit.
pub const SYNC_THREAD_ENV: &str = "HYPERLOG_SYNC_THREAD";

fn default_sync_thread() -> bool {
    std::env::var(SYNC_THREAD_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Settings of one context. Built with chained setters; every default is
/// stated on its setter.
///
/// ```
/// use hyperlog::{ContextOptions, DurabilityMode, LogFormat};
/// let wal = ContextOptions::new()
///     .path("data/node.wal")
///     .durability(DurabilityMode::FsyncBatch)
///     .format(LogFormat::Binary)
///     .enable_lsn(true)
///     .instance_id(7);
/// # let _ = wal;
/// ```
#[derive(Clone)]
pub struct ContextOptions {
    pub(crate) path: Option<PathBuf>,
    pub(crate) template: Option<String>,
    pub(crate) template_fields: Vec<String>,
    pub(crate) nested: bool,
    pub(crate) durability: DurabilityMode,
    pub(crate) format: LogFormat,
    pub(crate) enable_lsn: bool,
    pub(crate) caller_lsns: bool,
    pub(crate) compact: bool,
    pub(crate) instance_id: u32,
    pub(crate) batch_max_size: usize,
    pub(crate) batch_max_bytes: usize,
    pub(crate) batch_timeout: Duration,
    pub(crate) sync_thread: bool,
    pub(crate) level: Option<LogLevel>,
    pub(crate) queue_capacity: usize,
    pub(crate) drop_when_full: bool,
    pub(crate) console: ConsoleStream,
    pub(crate) errors_to_stderr: bool,
    pub(crate) file_mode: u32,
    pub(crate) max_record_size: u64,
    pub(crate) preallocate: Option<u64>,
    pub(crate) recovery: RecoveryMode,
    /// Checked (and a string map's parse error reported) by `compile`.
    pub(crate) retention: Result<RetentionPolicy, ParseError>,
    pub(crate) models: Vec<(String, ModelFn)>,
    pub(crate) file_system: Arc<dyn FileSystem>,
    pub(crate) error_handler: Option<ErrorHandler>,
}

impl fmt::Debug for ContextOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextOptions")
            .field("path", &self.path)
            .field("template", &self.template)
            .field("nested", &self.nested)
            .field("durability", &self.durability)
            .field("format", &self.format)
            .field("enable_lsn", &self.enable_lsn)
            .field("instance_id", &self.instance_id)
            .field("batch_max_size", &self.batch_max_size)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_timeout", &self.batch_timeout)
            .field("sync_thread", &self.sync_thread)
            .field("level", &self.level)
            .field("queue_capacity", &self.queue_capacity)
            .field("drop_when_full", &self.drop_when_full)
            .field("console", &self.console)
            .field("max_record_size", &self.max_record_size)
            .field("recovery", &self.recovery)
            .field("retention", &self.retention)
            .field(
                "models",
                &self.models.iter().map(|m| &m.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions::new()
    }
}

impl ContextOptions {
    /// The defaults: console output with the reference's template, `Flush`,
    /// JSON, no LSNs, minimum level INFO.
    pub fn new() -> Self {
        ContextOptions {
            path: None,
            template: None,
            template_fields: Vec::new(),
            nested: false,
            durability: DurabilityMode::Flush,
            format: LogFormat::Json,
            enable_lsn: false,
            caller_lsns: false,
            compact: false,
            instance_id: 0,
            batch_max_size: 1000,
            batch_max_bytes: 8 * 1024 * 1024,
            batch_timeout: Duration::ZERO,
            sync_thread: default_sync_thread(),
            level: None,
            queue_capacity: 10_000,
            drop_when_full: false,
            console: ConsoleStream::Stdout,
            errors_to_stderr: false,
            file_mode: 0o640,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            preallocate: None,
            recovery: RecoveryMode::TolerateTail,
            retention: Ok(RetentionPolicy::default()),
            models: Vec::new(),
            file_system: StdFs::shared(),
            error_handler: None,
        }
    }

    /// Write to a file. A path with an extension is the file itself (any
    /// extension: `.json`, `.jsonl`, `.wal`, ...); a path without one is a
    /// directory, and the file is named after the context (`{name}.log.json`
    /// or `{name}.wal`). Missing parent directories are created. Without a
    /// path the context writes its template to the console.
    #[must_use]
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The console template (default: the reference's,
    /// [`DEFAULT_TEMPLATE`](crate::template::DEFAULT_TEMPLATE)). Files are
    /// always JSON lines or binary records.
    #[must_use]
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Declares entry fields (beyond `message`, `level`, `tags`) that the
    /// template may name, such as `job_id`. Fields of registered models are
    /// declared automatically.
    #[must_use]
    pub fn template_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.template_fields
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// Share the stream (file or console) of a context already open on the
    /// same target; closing this context then leaves the stream open.
    #[must_use]
    pub fn nested(mut self, nested: bool) -> Self {
        self.nested = nested;
        self
    }

    /// The durability promise (default `Flush`).
    #[must_use]
    pub fn durability(mut self, mode: DurabilityMode) -> Self {
        self.durability = mode;
        self
    }

    /// The file format (default `Json`).
    #[must_use]
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Give every entry a snowflake LSN, returned by `log()` (default off).
    #[must_use]
    pub fn enable_lsn(mut self, on: bool) -> Self {
        self.enable_lsn = on;
        self
    }

    /// Let the caller choose each entry's LSN (default off: snowflake LSNs).
    ///
    /// Turns LSNs on. Entries are then appended with
    /// [`Context::append_batch`](crate::Context::append_batch), each with
    /// its own LSN, for example a Raft log index: LSNs must rise by exactly
    /// one from entry to entry, and may start anywhere (0 included) in an
    /// empty log or where the caller allows a gap (`allow_gap`, e.g. after
    /// a purge past the end). An LSN out of order is refused with
    /// [`Error::LsnOutOfOrder`](crate::Error::LsnOutOfOrder) and nothing is
    /// written for it. `from_lsn`, the sparse index, `get_last_lsn`,
    /// `truncate_before` and `follow` then work on these numbers. `log()`
    /// on such a context is refused (it has no LSN to give).
    #[must_use]
    pub fn caller_lsns(mut self, on: bool) -> Self {
        self.caller_lsns = on;
        if on {
            self.enable_lsn = true;
        }
        self
    }

    /// Write compact records (default off): the entry and its LSN only,
    /// `{"entry":{...},"lsn":N}`, without the call-site metadata (file name,
    /// function, line, thread id, timestamp) that makes up most of a small
    /// command's record. For machine-written logs such as a Raft log: still
    /// framed and CRC-checked the same way and read by every hyperlog reader
    /// and the CLI (the metadata reads as absent). The Python reference
    /// cannot read them: it requires the metadata.
    #[must_use]
    pub fn compact(mut self, on: bool) -> Self {
        self.compact = on;
        self
    }

    /// The instance id put into LSNs, 0..=1023 (default 0); larger is an
    /// error at configure time.
    #[must_use]
    pub fn instance_id(mut self, id: u32) -> Self {
        self.instance_id = id;
        self
    }

    /// The most entries one group commit (or one write) holds (default 1,000).
    #[must_use]
    pub fn batch_max_size(mut self, n: usize) -> Self {
        self.batch_max_size = n;
        self
    }

    /// The most bytes one group commit (or one write) holds (default 8 MiB).
    /// A single larger record still goes in a group of its own.
    #[must_use]
    pub fn batch_max_bytes(mut self, n: usize) -> Self {
        self.batch_max_bytes = n;
        self
    }

    /// The longest the writer may wait to gather companions for a group
    /// commit (default zero: sync as soon as the previous sync finished).
    #[must_use]
    pub fn batch_timeout(mut self, t: Duration) -> Self {
        self.batch_timeout = t;
        self
    }

    /// Whether an `FsyncBatch` context syncs on a thread of its own:
    /// pipelined group commit, where each `fdatasync` runs while the writer
    /// writes the next groups, and the producers it acknowledges can ride on
    /// the very next one. Off by default (or as [`SYNC_THREAD_ENV`] says):
    /// the writer syncs each group itself and takes the next group after it.
    ///
    /// The promise is the same either way: an entry is acknowledged only
    /// after an `fdatasync` that started after it was written. What differs
    /// is the cost: the sync thread overlaps the disk with the writer's
    /// work, and pays a thread wake-up per sync for it. On the 2-core VM of
    /// BENCHMARKS.md, where a sync takes ~130 us and the time between syncs
    /// goes to waking producers, it measured 0.89-1.03x the throughput of
    /// the writer syncing (and 0.79x in a Raft cluster); it can pay where
    /// syncs are slow and cores are spare. Other modes ignore it.
    ///
    /// ```
    /// use hyperlog::{ContextOptions, DurabilityMode};
    /// let opts = ContextOptions::default()
    ///     .durability(DurabilityMode::FsyncBatch)
    ///     .sync_thread(false);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn sync_thread(mut self, on: bool) -> Self {
        self.sync_thread = on;
        self
    }

    /// The minimum level: entries below it return `Ok(None)` unwritten.
    ///
    /// An explicit level always wins; without one, a write-ahead log (a
    /// context that syncs or carries LSNs) drops nothing, and any other
    /// context takes the `HYPERLOG_LEVEL` environment variable
    /// ([`LEVEL_ENV`]) when set, else INFO.
    ///
    /// ```
    /// use hyperlog::{ContextOptions, LogLevel};
    /// // WARN and above, whatever HYPERLOG_LEVEL says.
    /// let quiet = ContextOptions::new().path("logs/noisy.log.json").level(LogLevel::Warn);
    /// # let _ = quiet;
    /// ```
    #[must_use]
    pub fn level(mut self, level: LogLevel) -> Self {
        self.level = Some(level);
        self
    }

    /// The writer's queue bound (default 10,000). A full queue makes `log()`
    /// wait (backpressure) unless `drop_when_full` is set.
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// In `None` mode only: drop entries when the queue is full instead of
    /// waiting. Drops are counted, and a WARN record saying how many were
    /// dropped is written to the log: loss is never silent.
    #[must_use]
    pub fn drop_when_full(mut self, on: bool) -> Self {
        self.drop_when_full = on;
        self
    }

    /// The console stream of a context without a path (default stdout).
    #[must_use]
    pub fn console(mut self, stream: ConsoleStream) -> Self {
        self.console = stream;
        self
    }

    /// For console contexts: send ERROR and above to stderr whatever
    /// `console` says (default off).
    #[must_use]
    pub fn errors_to_stderr(mut self, on: bool) -> Self {
        self.errors_to_stderr = on;
        self
    }

    /// Unix permissions of new files (default `0o640`).
    #[must_use]
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// The largest record payload written or read (default 16 MiB). A longer
    /// entry is an error with nothing written; a longer length field on disk
    /// is damage.
    #[must_use]
    pub fn max_record_size(mut self, bytes: u64) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Bytes of zeros written ahead of the data, in steps of this size
    /// rounded up to whole 4 KiB pages (0 turns it off). The default is 4 MiB for `Fsync`/`FsyncBatch` and off
    /// otherwise (at most the retention policy's `max_size`). Overwriting
    /// preallocated zeros lets `fdatasync` skip the
    /// file-size update and its journal commit, which here roughly halves
    /// the cost of a sync. The zeros are trimmed on `close`; after a crash,
    /// readers and recovery treat a zero-filled tail as the end of the log,
    /// not as damage.
    #[must_use]
    pub fn preallocate(mut self, bytes: u64) -> Self {
        self.preallocate = Some(bytes);
        self
    }

    /// The preallocation step in force.
    pub(crate) fn preallocate_step(&self) -> u64 {
        match self.preallocate {
            // Whole 4 KiB pages, so that readers can tell preallocated zeros
            // from a torn write of zeros.
            Some(b) => b.next_multiple_of(crate::reader::PREALLOCATION_ALIGN),
            // Never more zeros than a segment will hold.
            None if self.durability.syncs() => {
                let cap = self.retention.as_ref().ok().and_then(|r| r.max_size);
                (4 * 1024 * 1024u64).min(cap.map_or(u64::MAX, |m| {
                    m.next_multiple_of(crate::reader::PREALLOCATION_ALIGN)
                }))
            }
            None => 0,
        }
    }

    /// How opening an existing file treats damage (default `TolerateTail`:
    /// a torn tail is cut off and kept in a side file; corruption in the
    /// middle refuses to open). `SkipCorrupted` opens a log with damage in the
    /// middle (readers then skip it); `AbsoluteConsistency` refuses any damage.
    #[must_use]
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// When the file rotates and which archives are kept (default: never
    /// rotate). Takes a typed [`RetentionPolicy`] or the reference's string
    /// map, such as `[("max_size", "50MB"), ("max_age", "24h"),
    /// ("rotation_time", "00:00")]`; a value that does not parse, a limit of
    /// zero, a policy on a console context, or pruning on a write-ahead log
    /// without [`delete_wal_segments`](RetentionPolicy::delete_wal_segments)
    /// is an error at configure time.
    ///
    /// ```
    /// use hyperlog::ContextOptions;
    /// let opts = ContextOptions::new()
    ///     .path("logs/app.log.json")
    ///     .retention_policy([("max_size", "50MB"), ("max_archives", "10")]);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn retention_policy(mut self, policy: impl IntoRetentionPolicy) -> Self {
        self.retention = policy.into_retention_policy();
        self
    }

    /// Registers a named entry constructor for
    /// [`Context::log_prepared`](crate::Context::log_prepared): `build`
    /// receives the message text and returns the entry with its defaults. The
    /// model `"default"` is `Message` at INFO unless replaced.
    ///
    /// ```
    /// use hyperlog::{ContextOptions, Message, LogLevel};
    /// let opts = ContextOptions::new().model("alert", |text| Message::new(LogLevel::Error, text).tag("alert"));
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn model<E, F>(mut self, name: impl Into<String>, build: F) -> Self
    where
        E: Entry,
        F: Fn(&str) -> E + Send + Sync + 'static,
    {
        let f: ModelFn = Arc::new(move |text| Box::new(build(text)) as Box<dyn ErasedEntry>);
        self.models.push((name.into(), f));
        self
    }

    /// The file system to use (default: the real disk). Tests use this seam
    /// to inject faults.
    #[must_use]
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// Receives errors that have no caller to return to (`None` mode write
    /// failures). The default prints one line to stderr per kind of error,
    /// with a count. Such errors are also returned by the next
    /// `flush`/`close`. The handler runs on the writer's thread while it
    /// holds the writer: it must not log to the same context (that would
    /// wait for itself); send the error elsewhere.
    #[must_use]
    pub fn error_handler(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.error_handler = Some(Arc::new(f));
        self
    }

    /// Checks the options and resolves what can be resolved now.
    pub(crate) fn compile(&self, name: &str) -> Result<Compiled, Error> {
        let bad = |option: &'static str, reason: String| Error::InvalidOption {
            context: name.to_string(),
            option,
            reason,
        };
        if self.instance_id > Lsn::MAX_INSTANCE_ID as u32 {
            return Err(bad(
                "instance_id",
                format!("{} is out of range 0..=1023", self.instance_id),
            ));
        }
        if self.batch_max_size == 0 {
            return Err(bad("batch_max_size", "must be at least 1".into()));
        }
        if self.batch_max_bytes == 0 {
            return Err(bad("batch_max_bytes", "must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(bad("queue_capacity", "must be at least 1".into()));
        }
        if self.max_record_size < 64 || self.max_record_size > u32::MAX as u64 {
            return Err(bad(
                "max_record_size",
                format!("{} is not in 64..=4294967295", self.max_record_size),
            ));
        }
        if self.drop_when_full && self.durability != DurabilityMode::None {
            return Err(bad(
                "drop_when_full",
                format!(
                    "only the None durability mode may drop entries (this context is {:?})",
                    self.durability
                ),
            ));
        }
        if self.path.is_none() && (self.durability.syncs() || self.enable_lsn) {
            return Err(bad(
                "path",
                "a console context cannot fsync or carry LSNs: give it a path".into(),
            ));
        }
        let retention = self
            .retention
            .clone()
            .map_err(|e| bad("retention_policy", e.to_string()))?;
        retention
            .check(self.durability.syncs() || self.enable_lsn)
            .map_err(|r| bad("retention_policy", r))?;
        if self.path.is_none() && (retention.rotates() || retention.prunes()) {
            return Err(bad(
                "retention_policy",
                "a console context has no file to rotate: give it a path".into(),
            ));
        }
        let mut fields: Vec<String> = self.template_fields.clone();
        let mut models: Vec<(String, ModelFn)> = Vec::new();
        for (model, build) in &self.models {
            let sample = build("")
                .to_json()
                .map_err(|e| bad("model", format!("model {model:?} does not serialize: {e}")))?;
            match sample {
                serde_json::Value::Object(m) => fields.extend(m.keys().cloned()),
                _ => {
                    return Err(bad(
                        "model",
                        format!("model {model:?} does not serialize to a JSON object"),
                    ));
                }
            }
            models.retain(|m| &m.0 != model);
            models.push((model.clone(), build.clone()));
        }
        if !models.iter().any(|m| m.0 == "default") {
            let f: ModelFn = Arc::new(|text| Box::new(Message::info(text)) as Box<dyn ErasedEntry>);
            models.push(("default".into(), f));
        }
        fields.retain(|f| !ENTRY_FIELDS.contains(&f.as_str()));
        let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
        let template = Template::parse(
            self.template.as_deref().unwrap_or(DEFAULT_TEMPLATE),
            &field_refs,
        )?;
        let level = self
            .effective_level(std::env::var(LEVEL_ENV).ok().as_deref())
            .map_err(|e| bad(LEVEL_ENV, e.to_string()))?;
        let file = self
            .path
            .as_ref()
            .map(|p| resolve_path(p, name, self.format));
        Ok(Compiled {
            options: self.clone(),
            template,
            level,
            file,
            models,
            retention,
        })
    }
}

impl ContextOptions {
    /// The minimum level in force, given the value of [`LEVEL_ENV`] (`None`
    /// when unset): an explicit [`ContextOptions::level`] always; else, for a
    /// write-ahead log (a context that syncs or carries LSNs), `Trace`, so
    /// nothing is dropped; else the variable when set to a level name; else
    /// INFO. A value that is not a level is an error only where it applies.
    fn effective_level(&self, env: Option<&str>) -> Result<LogLevel, Error> {
        if let Some(level) = self.level {
            return Ok(level);
        }
        if self.durability.syncs() || self.enable_lsn {
            return Ok(LogLevel::Trace);
        }
        match env {
            Some(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(LogLevel::Info),
        }
    }
}

/// Options after `configure` checked them.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub options: ContextOptions,
    pub template: Template,
    pub level: LogLevel,
    pub file: Option<PathBuf>,
    pub models: Vec<(String, ModelFn)>,
    pub retention: RetentionPolicy,
}

/// A path with an extension is the file; without, a directory holding
/// `{name}.log.json` (JSON) or `{name}.wal` (binary).
pub(crate) fn resolve_path(path: &Path, name: &str, format: LogFormat) -> PathBuf {
    if path.extension().is_some() {
        return path.to_path_buf();
    }
    let file = match format {
        LogFormat::Json => format!("{name}.log.json"),
        LogFormat::Binary => format!("{name}.wal"),
    };
    path.join(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_time_checks() {
        let e = ContextOptions::new()
            .path("x.wal")
            .instance_id(1024)
            .compile("c")
            .err()
            .unwrap();
        assert!(e.to_string().contains("instance_id"), "{e}");
        assert!(
            ContextOptions::new()
                .path("x.wal")
                .instance_id(1023)
                .compile("c")
                .is_ok()
        );
        let e = ContextOptions::new()
            .template("{bogus}")
            .compile("c")
            .err()
            .unwrap();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ContextOptions::new()
            .path("a.log")
            .drop_when_full(true)
            .compile("c")
            .err()
            .unwrap();
        assert!(e.to_string().contains("drop_when_full"), "{e}");
        assert!(ContextOptions::new().enable_lsn(true).compile("c").is_err());
    }

    #[test]
    fn model_fields_are_template_fields() {
        #[derive(serde::Serialize)]
        struct Job {
            level: LogLevel,
            message: Option<String>,
            job_id: u64,
        }
        impl Entry for Job {
            fn level(&self) -> LogLevel {
                self.level
            }
        }
        assert!(
            ContextOptions::new()
                .template("{job_id}")
                .compile("c")
                .is_err()
        );
        let c = ContextOptions::new()
            .template("{job_id} {message}")
            .model("job", |m| Job {
                level: LogLevel::Info,
                message: Some(m.into()),
                job_id: 0,
            })
            .compile("c")
            .unwrap();
        assert!(c.models.iter().any(|m| m.0 == "job"));
        assert!(c.models.iter().any(|m| m.0 == "default"));
    }

    #[test]
    fn paths_resolve() {
        assert_eq!(
            resolve_path(Path::new("a/b.jsonl"), "c", LogFormat::Json),
            Path::new("a/b.jsonl")
        );
        assert_eq!(
            resolve_path(Path::new("a/logs"), "c", LogFormat::Json),
            Path::new("a/logs/c.log.json")
        );
        assert_eq!(
            resolve_path(Path::new("a/logs"), "c", LogFormat::Binary),
            Path::new("a/logs/c.wal")
        );
    }

    #[test]
    fn durability_parses_and_orders() {
        assert!(DurabilityMode::None < DurabilityMode::Flush);
        assert!(DurabilityMode::Fsync < DurabilityMode::FsyncBatch);
        assert_eq!(
            "fsync_batch".parse::<DurabilityMode>().unwrap(),
            DurabilityMode::FsyncBatch
        );
        assert!("sometimes".parse::<DurabilityMode>().is_err());
        assert_eq!(DurabilityMode::FsyncBatch as u8, 3);
    }

    #[test]
    fn the_level_env_never_filters_a_wal_and_an_explicit_level_wins() {
        let data = ContextOptions::new().path("a.log.json");
        let level = |o: &ContextOptions, env| o.effective_level(env).unwrap();
        // A data-plane context without a level: the variable, else INFO.
        assert_eq!(level(&data, None), LogLevel::Info);
        assert_eq!(level(&data, Some("  ")), LogLevel::Info);
        assert_eq!(level(&data, Some("error")), LogLevel::Error);
        assert!(data.effective_level(Some("verbose")).is_err());
        // An explicit level wins over the variable, on any context.
        let explicit = data.clone().level(LogLevel::Trace);
        assert_eq!(level(&explicit, Some("error")), LogLevel::Trace);
        assert_eq!(level(&explicit, Some("verbose")), LogLevel::Trace);
        // A WAL (syncs, or carries LSNs) drops nothing by default...
        for wal in [
            data.clone().durability(DurabilityMode::Fsync),
            data.clone().durability(DurabilityMode::FsyncBatch),
            data.clone().enable_lsn(true),
        ] {
            assert_eq!(level(&wal, None), LogLevel::Trace);
            assert_eq!(level(&wal, Some("fatal")), LogLevel::Trace);
            assert_eq!(level(&wal, Some("verbose")), LogLevel::Trace);
            // ...unless it asks for a level itself.
            assert_eq!(
                level(&wal.level(LogLevel::Warn), Some("trace")),
                LogLevel::Warn
            );
        }
        // `None` and `Flush` without LSNs are the data plane.
        let none = data.clone().durability(DurabilityMode::None);
        assert_eq!(level(&none, Some("warn")), LogLevel::Warn);
    }
}
