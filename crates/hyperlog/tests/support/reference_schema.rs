//! The Python reference's `Log`/`Entry` model as strict serde types, shared
//! by the library's and the CLI's tests (`#[path]`-included by both).
//!
//! The reference (`hyperscale.logging`) reads a line into a msgspec `Log`
//! whose `filename`, `function_name`, `line_number`, `thread_id` and
//! `timestamp` are required and not optional: one `null` there and the whole
//! line is refused. [`RefLog`] mirrors that model field for field (no
//! `Option` where the reference has none), so a line that decodes here is one
//! the reference reads.

#![allow(dead_code)]

use serde::Deserialize;

/// The reference's `Log`. `lsn` is the only nullable field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefLog<E> {
    pub entry: E,
    pub filename: String,
    pub function_name: String,
    pub line_number: i64,
    pub thread_id: i64,
    pub timestamp: String,
    pub lsn: Option<u64>,
}

/// The reference's base `Entry`, exactly: what `Message` writes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefEntry {
    pub message: Option<String>,
    pub tags: Vec<String>,
    pub level: RefLevel,
}

/// A subclass of the reference's `Entry`: the base fields are checked, the
/// subclass's own fields (a user entry's, an adapter's `target`) are not.
/// `tags` has a default in the reference (`Entry(message=..., level=...)`),
/// so a user type without it decodes there too.
#[derive(Debug, Deserialize)]
pub struct RefEntrySubclass {
    pub message: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub level: RefLevel,
}

/// The reference's level names; anything else is refused.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum RefLevel {
    TRACE,
    DEBUG,
    INFO,
    WARN,
    ERROR,
    CRITICAL,
    FATAL,
}

/// Decodes one JSON line under the strict schema and checks the timestamp's
/// shape (UTC, microseconds, `+00:00`).
pub fn strict<E: serde::de::DeserializeOwned>(line: &[u8]) -> RefLog<E> {
    let text = String::from_utf8_lossy(line);
    let log: RefLog<E> = serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("the reference would refuse {text}: {e}"));
    assert!(
        log.timestamp.len() == 32 && log.timestamp.ends_with("+00:00"),
        "timestamp {:?} in {text}",
        log.timestamp
    );
    log.timestamp
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("timestamp in {text}: {e}"));
    log
}
