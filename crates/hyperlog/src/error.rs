//! The one error type of the crate.
//!
//! Every variant that concerns a file names its path, and every variant that
//! concerns damage names the byte offset where the damage starts, so that an
//! operator can act on the message alone.

use crate::Lsn;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hyperlog.
///
/// The enum is `#[non_exhaustive]`: match the variants you act on and keep a
/// catch-all arm. `Display` reads as a sentence that names the path and, for
/// damage, the offset.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "fdatasync", "open", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// An earlier write or sync failed, so the context refuses further
    /// writes until it is reopened (see the crate docs on poisoning).
    #[error("{path} is poisoned by an earlier failure and refuses writes until reopened: {first}")]
    Poisoned {
        /// The log file.
        path: PathBuf,
        /// The first failure, as it was reported to its caller.
        first: Arc<Error>,
    },

    /// Another writer (a process or a context of this process) holds the
    /// log's lock.
    #[error("{path} is locked by another writer; a log has one writer at a time")]
    Locked {
        /// The log file.
        path: PathBuf,
    },

    /// The context, or its writer, has been closed.
    #[error("the context writing {target} is closed")]
    Closed {
        /// The file path, or `stdout`/`stderr` for a console context.
        target: String,
    },

    /// A record is longer than the configured `max_record_size`; nothing was
    /// written.
    #[error(
        "a record of {len} bytes for {path} exceeds max_record_size ({max} bytes); nothing was written"
    )]
    RecordTooLarge {
        /// The log file.
        path: PathBuf,
        /// The encoded payload length.
        len: u64,
        /// The configured limit.
        max: u64,
    },

    /// The log is damaged at `offset`.
    #[error("{path} is damaged at byte offset {offset}: {reason}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What was found there.
        reason: String,
    },

    /// The file is not a log that can be read or appended to as asked: a
    /// zstd archive (read those with [`crate::stream::read_archive`]), records
    /// of the other format than the one forced, or bytes that hold no intact
    /// record and start neither a JSON line nor a binary record header (a
    /// PNG, a tarball). Nothing was changed: a context refuses to open such
    /// a file rather than moving its bytes aside as a torn tail.
    #[error("{path} is not {expected}: {reason}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What it was to be (`"a log"`, `"binary records"`, ...).
        expected: &'static str,
        /// What it is instead, from its first bytes.
        reason: String,
    },

    /// A record is intact but its payload does not decode into the requested
    /// type.
    #[error(
        "{path}: the record at byte offset {offset} does not decode into the requested type: {reason}"
    )]
    Decode {
        /// The log file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },

    /// `from_offset` does not point at the start of a record.
    #[error("{path}: byte offset {offset} is not the start of a record")]
    NotARecordBoundary {
        /// The log file.
        path: PathBuf,
        /// The offset asked for.
        offset: u64,
    },

    /// An entry could not be serialized.
    #[error("an entry for {target} could not be serialized: {reason}")]
    Serialize {
        /// The file path, or `stdout`/`stderr`.
        target: String,
        /// The serializer's message.
        reason: String,
    },

    /// A template does not parse.
    #[error("bad template {template:?} at character {position}: {reason}")]
    Template {
        /// The template text.
        template: String,
        /// Character index of the problem.
        position: usize,
        /// What is wrong.
        reason: String,
    },

    /// A configuration value is invalid.
    #[error("invalid option {option} for context {context:?}: {reason}")]
    InvalidOption {
        /// The context name.
        context: String,
        /// The option's name.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A log level name is not one of TRACE, DEBUG, INFO, WARN, ERROR,
    /// CRITICAL, FATAL.
    #[error(
        "unknown log level {0:?}: expected one of TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL, FATAL"
    )]
    UnknownLevel(String),

    /// `context(name)` was asked for a name that was never configured.
    #[error("no context named {0:?} is configured")]
    UnknownContext(String),

    /// A logger built with [`Logger::deny_unconfigured`](crate::Logger::deny_unconfigured)
    /// was asked to open a context name that was never configured (a typo,
    /// most likely).
    #[error(
        "context {context:?} was never configured, and this logger denies unconfigured contexts: configure it first (Logger::configure or Logger::context_with)"
    )]
    UnconfiguredContext {
        /// The context name asked for.
        context: String,
    },

    /// `log_prepared` named a model the context does not have.
    #[error("context {context:?} has no model named {model:?}")]
    UnknownModel {
        /// The context name.
        context: String,
        /// The model asked for.
        model: String,
    },

    /// A caller-chosen LSN does not follow the last one (see
    /// `ContextOptions::caller_lsns`): nothing was written for it.
    #[error(
        "{path}: LSN {lsn} does not follow the last LSN {}: each must be one above the last, unless the caller allows a gap",
        last.map_or("(none)".to_string(), |l| l.to_string())
    )]
    LsnOutOfOrder {
        /// The log file.
        path: PathBuf,
        /// The LSN refused.
        lsn: Lsn,
        /// The last LSN in the log.
        last: Option<Lsn>,
    },

    /// A segment a reader still had to read was deleted (by
    /// `truncate_before` or retention) while it read the log: what it
    /// returned before this error is a gapless run of the log, but it cannot
    /// go on without skipping entries.
    #[error(
        "segment {segment} of {path} was deleted (truncate_before or retention) while a reader still had to read it"
    )]
    SegmentRemoved {
        /// The log's path (its live file).
        path: PathBuf,
        /// The id of the segment that is gone.
        segment: u64,
    },

    /// Reading or following from an LSN that `truncate_before` (or
    /// retention) has already removed: starting at the oldest entry left
    /// would skip entries silently.
    #[error(
        "cannot read {path} from LSN {from}: the entries below LSN {first} were removed (truncate_before or retention)"
    )]
    BelowTruncation {
        /// The log's path (its live file).
        path: PathBuf,
        /// The LSN asked for.
        from: Lsn,
        /// The oldest LSN the log still holds.
        first: Lsn,
    },

    /// Entries were dropped because the queue was full and the context was
    /// configured with `drop_when_full`.
    #[error("{count} entries for {target} were dropped because the queue was full")]
    Dropped {
        /// The file path, or `stdout`/`stderr`.
        target: String,
        /// How many.
        count: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The byte offset of the damage or record this error is about, if any.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Corrupt { offset, .. }
            | Error::Decode { offset, .. }
            | Error::NotARecordBoundary { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The OS error kind behind this error, if it came from an I/O call
    /// (directly or through poisoning).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Poisoned { first, .. } => first.io_kind(),
            _ => None,
        }
    }
}
