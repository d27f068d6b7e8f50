//! Entries (what a user logs) and the [`Log`] envelope around them.
//!
//! An entry is any serde type that knows its level. The envelope carries the
//! reference's metadata in the reference's field order: `entry`, `filename`,
//! `function_name`, `line_number`, `thread_id`, `timestamp`, `lsn`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{LogLevel, Lsn};

/// Something that can be logged: a serde type that knows its level.
///
/// ```
/// use hyperlog::{Entry, LogLevel};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct JobCreated { level: LogLevel, message: Option<String>, job_id: u64 }
/// impl Entry for JobCreated {
///     fn level(&self) -> LogLevel { self.level }
/// }
/// ```
pub trait Entry: Serialize + Send + 'static {
    /// The entry's severity; entries below a context's minimum level are
    /// discarded before they are serialized.
    fn level(&self) -> LogLevel;

    /// Appends the entry's JSON to `out`: exactly the bytes
    /// `serde_json::to_writer(out, self)` writes, which is what the
    /// default does. A type on a hot path may write them by hand
    /// ([`Message`] does, with [`format::write_json_str`](crate::format::write_json_str)
    /// for its strings); readers decode what it writes with `Deserialize`, so
    /// anything else is a bug.
    ///
    /// ```
    /// use hyperlog::{Entry, Message};
    /// let m = Message::info("line \"one\"\n").tag("b").tag("a");
    /// let mut out = Vec::new();
    /// m.write_json(&mut out).unwrap();
    /// assert_eq!(out, serde_json::to_vec(&m).unwrap());
    /// ```
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

/// The ready-made entry: a message, a set of tags and a level, like the
/// reference's base `Entry`.
///
/// ```
/// use hyperlog::{LogLevel, Message};
/// let m = Message::warn("disk at 91%").tag("disk");
/// assert_eq!(m.level, LogLevel::Warn);
/// assert_eq!(serde_json::to_string(&m).unwrap(),
///            r#"{"message":"disk at 91%","tags":["disk"],"level":"WARN"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Message {
    /// The text, or `null`.
    #[serde(default)]
    pub message: Option<String>,
    /// Tags, serialized as a sorted list.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// The severity.
    #[serde(default)]
    pub level: LogLevel,
}

macro_rules! level_constructors {
    ($($name:ident => $level:ident),* $(,)?) => {
        $(
            #[doc = concat!("A message at `", stringify!($level), "` level.")]
            pub fn $name(message: impl Into<String>) -> Self {
                Message::new(LogLevel::$level, message)
            }
        )*
    };
}

impl Message {
    /// A message at `level`.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        Message {
            message: Some(message.into()),
            tags: BTreeSet::new(),
            level,
        }
    }

    level_constructors! {
        trace => Trace, debug => Debug, info => Info, warn => Warn,
        error => Error, critical => Critical, fatal => Fatal,
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }
}

impl Entry for Message {
    fn level(&self) -> LogLevel {
        self.level
    }

    /// By hand, in the derived `Serialize`'s field order (a third of a
    /// `None`-mode call went to serde_json's generic path).
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use crate::format::write_json_str;
        out.extend_from_slice(b"{\"message\":");
        match &self.message {
            Some(m) => write_json_str(out, m),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"tags\":[");
        for (i, t) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, t);
        }
        out.extend_from_slice(b"],\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
        Ok(())
    }
}

impl Entry for serde_json::Value {
    /// The `"level"` field when it names a level, else `Info`.
    fn level(&self) -> LogLevel {
        self.get("level")
            .and_then(|l| l.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }
}

/// The envelope around an entry, as written to files and read back.
///
/// Every field but `entry` is optional when reading, so logs written by
/// other tools (or by the reference) decode too. Writers always write every
/// field but `lsn` as a string or an integer, never `null`, because the
/// reference's reader refuses a line whose `filename`, `function_name` or
/// `line_number` is null: what is unknown is written as `""` or `0`.
///
/// What `function_name` holds depends on where the entry came from:
///
/// | source | `function_name` |
/// | --- | --- |
/// | the macros ([`info!`](crate::info!), [`log!`](crate::log!), ...) | the path of the enclosing function, e.g. `my_crate::jobs::start` |
/// | [`Context::log`](crate::Context::log), `log_blocking`, `log_prepared` | `""`: `#[track_caller]` knows the file and line, not the function |
/// | the `tracing` layer and the `log` adapter | the event's module path (`""` when the event has none) |
/// | [`format::encode_log`](crate::format::encode_log) (`hyperlog convert`) | the source log's value, `""` when it had none |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log<T> {
    /// The entry itself.
    pub entry: T,
    /// Source file of the call site.
    #[serde(default)]
    pub filename: Option<String>,
    /// Function of the call site, when a macro could name it.
    #[serde(default)]
    pub function_name: Option<String>,
    /// Line of the call site.
    #[serde(default)]
    pub line_number: Option<u32>,
    /// The OS thread id of the logging thread.
    #[serde(default)]
    pub thread_id: Option<u64>,
    /// UTC time of the call, ISO-8601 with microseconds and `+00:00`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The log sequence number, when LSNs are enabled.
    #[serde(default)]
    pub lsn: Option<Lsn>,
}

/// Where a log call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallSite {
    /// Source file.
    pub file: Option<&'static str>,
    /// Function path, when known (written as `""` when `None`).
    pub function: Option<&'static str>,
    /// Line number.
    pub line: Option<u32>,
}

impl CallSite {
    /// The caller of the `#[track_caller]` function this is called from.
    #[track_caller]
    pub fn caller() -> Self {
        let l = std::panic::Location::caller();
        CallSite {
            file: Some(l.file()),
            function: None,
            line: Some(l.line()),
        }
    }
}

/// The OS id of the current thread (cached per thread).
pub(crate) fn thread_id() -> u64 {
    thread_local! {
        static TID: u64 = os_thread_id();
    }
    TID.with(|t| *t)
}

#[cfg(target_os = "linux")]
fn os_thread_id() -> u64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u64 }
}

#[cfg(not(target_os = "linux"))]
fn os_thread_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Writes the current UTC time as `2026-11-24T10:15:02.123456+00:00`.
///
/// The date and time up to the second are formatted once per second per
/// thread; only the microseconds are written on every call.
pub(crate) fn write_timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (cached, mut head) = CACHE.with(|c| c.get());
    if cached != secs {
        let at = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let t = jiff::tz::TimeZone::UTC.to_datetime(at);
        head = *b"0000-00-00T00:00:00";
        put_digits(&mut head[0..4], t.year().clamp(0, 9999) as u32);
        put_digits(&mut head[5..7], t.month() as u32);
        put_digits(&mut head[8..10], t.day() as u32);
        put_digits(&mut head[11..13], t.hour() as u32);
        put_digits(&mut head[14..16], t.minute() as u32);
        put_digits(&mut head[17..19], t.second() as u32);
        CACHE.with(|c| c.set((secs, head)));
    }
    let mut tail = *b".000000+00:00";
    put_digits(&mut tail[1..7], now.subsec_micros());
    out.extend_from_slice(&head);
    out.extend_from_slice(&tail);
}

/// Writes `v` as zero-padded decimal digits filling `b`.
fn put_digits(b: &mut [u8], mut v: u32) {
    for d in b.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_reference_shape() {
        let mut v = Vec::new();
        write_timestamp(&mut v);
        let s = String::from_utf8(v).unwrap();
        assert_eq!(s.len(), 32, "{s}");
        assert!(s.ends_with("+00:00"));
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
        assert_eq!(&s[19..20], ".");
        let parsed: jiff::Timestamp = s.parse().unwrap();
        let now = jiff::Timestamp::now();
        assert!((now.as_second() - parsed.as_second()).abs() < 60);
    }

    #[test]
    fn message_round_trips() {
        let m = Message::error("x").tag("b").tag("a");
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"message":"x","tags":["a","b"],"level":"ERROR"}"#);
        assert_eq!(serde_json::from_str::<Message>(&s).unwrap(), m);
    }

    #[test]
    fn thread_ids_differ_between_threads() {
        let here = thread_id();
        let there = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, there);
        assert_eq!(here, thread_id());
    }
}
