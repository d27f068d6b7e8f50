//! Retention: when a log file rotates, what its archive is called, and which
//! archives are pruned.
//!
//! A [`RetentionPolicy`] keeps the reference's vocabulary (`max_size`
//! `"50MB"`, `max_age` `"24h"`, `rotation_time` `"HH:MM"`) and adds what the
//! reference lacks: pruning (`max_archives`, `max_archive_age`), a choice of
//! compression, and an explicit opt-in before a write-ahead log's archived
//! segments may ever be deleted (`delete_wal_segments`). A policy is built
//! from typed values, from the reference's string map, or with serde; either
//! way a bad value is an error when the context is configured, never at the
//! first rotation.
//!
//! ```
//! use std::time::Duration;
//! use hyperlog::RetentionPolicy;
//! use hyperlog::retention::TimeOfDay;
//!
//! let typed = RetentionPolicy::new()
//!     .max_size(50 * 1024 * 1024)
//!     .max_age(Duration::from_secs(24 * 3600))
//!     .rotation_time(TimeOfDay::MIDNIGHT);
//! let from_strings = RetentionPolicy::from_map([
//!     ("max_size", "50MB"),
//!     ("max_age", "24h"),
//!     ("rotation_time", "00:00"),
//! ])?;
//! assert_eq!(typed, from_strings);
//! # Ok::<(), hyperlog::retention::ParseError>(())
//! ```
//!
//! Design, and where it departs from the reference:
//! - **Any** configured criterion rotates the file (the reference waited
//!   for all of them, so a single criterion never fired).
//! - A file's age is measured from a creation time the writer keeps itself
//!   (not the mtime, which every write moves), and is never taken modulo a
//!   day (the reference's age wrapped every 24 hours).
//! - `rotation_time` fires when a local wall-clock `HH:MM` lies between the
//!   last rotation and now: once, however long the process was down.
//! - Archives beyond `max_archives` or older than `max_archive_age` are
//!   pruned, oldest first; the reference never pruned.
//!
//! Everything here but [`compress_archive`] and the local-offset helpers is
//! pure: clocks and offsets come in as arguments, so the decisions are tested
//! without a disk or a clock, and the parsers are fuzzed directly.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::Error;
use crate::fs::{FileSystem, ReadableFile, WritableFile};

const DAY: i128 = 86_400;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The size units, powers of 1024 as in the reference; the IEC names
/// (`KiB`...) say the same thing unambiguously.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1 << 10),
    ("mb", 1 << 20),
    ("gb", 1 << 30),
    ("tb", 1 << 40),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// The size units, as error messages list them.
const SIZE_UNITS_TEXT: &str = "B, KB, MB, GB or TB, or KiB, MiB, GiB or TiB";

/// The age units, in nanoseconds; a bare number is seconds.
const AGE_UNITS: &[(&str, u128)] = &[
    ("", NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
    ("w", 604_800 * NANOS_PER_SEC),
];

/// The most decimal places a size or an age may have (beyond trailing zeros).
const MAX_DECIMALS: usize = 18;

/// The zstd levels a policy accepts.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=22;

/// The zstd level of [`Compression::default`], as in the reference.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The extension of compressed archives.
pub const ZSTD_EXTENSION: &str = "zst";

/// The keys [`RetentionPolicy::from_map`] accepts: the reference's three,
/// then the ones hyperlog adds.
pub const KEYS: &[&str] = &[
    "max_size",
    "max_age",
    "rotation_time",
    "max_archives",
    "max_archive_age",
    "compression",
    "delete_wal_segments",
];

/// A retention value or key that does not parse. `Display` names what was
/// being parsed and the offending value, e.g.
/// `invalid max_size "50XB": unknown unit "XB" (expected B, KB, MB, GB or TB,
/// or KiB, MiB, GiB or TiB)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    value: String,
    reason: String,
}

impl ParseError {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        // A fuzzer's megabyte of garbage should not become a megabyte of log.
        const SHOWN: usize = 64;
        let value = match value.char_indices().nth(SHOWN) {
            Some((end, _)) => format!("{}...", &value[..end]),
            None => value.to_string(),
        };
        ParseError {
            what,
            value,
            reason: reason.into(),
        }
    }

    /// What was being parsed: a key such as `max_size`, or `size`, `age`,
    /// `time of day` for the bare parsers.
    pub fn what(&self) -> &str {
        self.what
    }

    /// The offending value (cut to 64 characters).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.reason)
    }
}

impl std::error::Error for ParseError {}

// ---------------------------------------------------------------------------
// Parsers and formatters.

/// Parses a size: a number, optional spaces, and a unit `B`, `KB`, `MB`,
/// `GB` or `TB` (powers of 1024, as in the reference), or their IEC names
/// `KiB`, `MiB`, `GiB`, `TiB` (the same powers of 1024: `"50MiB"` is
/// `"50MB"`), any case; a bare number is bytes.
///
/// A fraction is allowed (`"1.5GB"`, as the reference's `float` parse
/// allows) and rounds down to a whole byte. Negative sizes, unknown units and
/// sizes beyond `u64::MAX` bytes are errors that name the value.
///
/// ```
/// use hyperlog::retention::parse_size;
/// assert_eq!(parse_size("50MB"), Ok(50 * 1024 * 1024));
/// assert_eq!(parse_size("50 mb"), Ok(50 * 1024 * 1024));
/// assert_eq!(parse_size("50MiB"), parse_size("50MB"));
/// assert_eq!(parse_size("2 gib"), Ok(2 << 30));
/// assert_eq!(parse_size("1.5KB"), Ok(1536));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert!(parse_size("-1MB").is_err());
/// assert!(parse_size("50XB").unwrap_err().to_string().contains("50XB"));
/// ```
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    parse_size_as("size", input)
}

fn parse_size_as(what: &'static str, input: &str) -> Result<u64, ParseError> {
    let bytes = parse_quantity(what, input, SIZE_UNITS, SIZE_UNITS_TEXT)?;
    u64::try_from(bytes).map_err(|_| {
        ParseError::new(
            what,
            input,
            format!("is too large: a size is at most {} bytes", u64::MAX),
        )
    })
}

/// Formats a size in the largest unit that holds it exactly (`"50MB"`,
/// `"3KB"` for 3072, `"1537B"` for 1537), so that [`parse_size`] reads back
/// the same number.
///
/// ```
/// use hyperlog::retention::{format_size, parse_size};
/// assert_eq!(format_size(50 * 1024 * 1024), "50MB");
/// assert_eq!(format_size(1537), "1537B");
/// assert_eq!(parse_size(&format_size(123_456_789)), Ok(123_456_789));
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
    ];
    if bytes != 0 {
        for (name, unit) in UNITS {
            if bytes.is_multiple_of(unit) {
                return format!("{}{name}", bytes / unit);
            }
        }
    }
    format!("{bytes}B")
}

/// Parses an age: a number, optional spaces, and a unit `s`, `m`, `h`, `d`
/// or `w` (seconds, minutes, hours, days, weeks; any case); a bare number is
/// seconds.
///
/// A fraction is allowed (`"1.5h"`) and rounds down to a nanosecond.
/// Negative ages, unknown units and ages beyond `u64::MAX` seconds are errors
/// that name the value.
///
/// ```
/// use std::time::Duration;
/// use hyperlog::retention::parse_age;
/// assert_eq!(parse_age("24h"), Ok(Duration::from_secs(86_400)));
/// assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_age("1.5 m"), Ok(Duration::from_secs(90)));
/// assert!(parse_age("3 months").is_err());
/// ```
pub fn parse_age(input: &str) -> Result<Duration, ParseError> {
    parse_age_as("age", input)
}

fn parse_age_as(what: &'static str, input: &str) -> Result<Duration, ParseError> {
    let nanos = parse_quantity(what, input, AGE_UNITS, "s, m, h, d or w")?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| {
        ParseError::new(
            what,
            input,
            format!("is too large: an age is at most {} seconds", u64::MAX),
        )
    })?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Formats an age in the largest unit that holds it exactly (`"1d"`,
/// `"90m"`, `"45s"`), or in seconds with a fraction when it has one
/// (`"1.5s"`), so that [`parse_age`] reads back the same duration.
///
/// ```
/// use std::time::Duration;
/// use hyperlog::retention::format_age;
/// assert_eq!(format_age(Duration::from_secs(86_400)), "1d");
/// assert_eq!(format_age(Duration::from_secs(5_400)), "90m");
/// assert_eq!(format_age(Duration::from_millis(1_500)), "1.5s");
/// ```
pub fn format_age(age: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)];
    let secs = age.as_secs();
    let nanos = age.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        return format!("{secs}.{}s", frac.trim_end_matches('0'));
    }
    if secs != 0 {
        for (name, unit) in UNITS {
            if secs.is_multiple_of(unit) {
                return format!("{}{name}", secs / unit);
            }
        }
    }
    format!("{secs}s")
}

/// Parses a 24-hour `HH:MM` time of day.
///
/// The hour has one or two digits (`"7:05"` and `"07:05"` are the same), the
/// minute exactly two, so `"7:5"` is refused rather than guessed (07:05 or
/// 07:50?). `"24:00"` is refused: midnight is `"00:00"`. Surrounding spaces
/// are ignored; seconds are not accepted.
///
/// ```
/// use hyperlog::retention::{parse_time_of_day, TimeOfDay};
/// assert_eq!(parse_time_of_day("07:05"), Ok(TimeOfDay::new(7, 5).unwrap()));
/// assert_eq!(parse_time_of_day("7:05"), Ok(TimeOfDay::new(7, 5).unwrap()));
/// assert!(parse_time_of_day("24:00").is_err());
/// assert!(parse_time_of_day("7:5").is_err());
/// ```
pub fn parse_time_of_day(input: &str) -> Result<TimeOfDay, ParseError> {
    parse_time_of_day_as("time of day", input)
}

fn parse_time_of_day_as(what: &'static str, input: &str) -> Result<TimeOfDay, ParseError> {
    let err = |reason: String| ParseError::new(what, input, reason);
    let t = input.trim();
    let Some((h, m)) = t.split_once(':') else {
        return Err(err(
            "expected a 24-hour HH:MM time such as 00:00 or 07:05".into()
        ));
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 {
        return Err(err(
            "the hour must be one or two digits (HH:MM, 24-hour)".into()
        ));
    }
    if !digits(m) || m.len() != 2 {
        return Err(err(
            "the minute must be exactly two digits (HH:MM, 24-hour)".into(),
        ));
    }
    // Both are at most two ASCII digits: they parse.
    let hour: u8 = h.parse().unwrap_or(u8::MAX);
    let minute: u8 = m.parse().unwrap_or(u8::MAX);
    if hour > 23 {
        return Err(err(format!(
            "hour {hour} is out of range 0..=23 (midnight is 00:00)"
        )));
    }
    if minute > 59 {
        return Err(err(format!("minute {minute} is out of range 0..=59")));
    }
    Ok(TimeOfDay { hour, minute })
}

fn parse_count_as(what: &'static str, input: &str) -> Result<usize, ParseError> {
    let t = input.trim();
    if t.starts_with('-') {
        return Err(ParseError::new(what, input, "cannot be negative"));
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(what, input, "expected a whole number"));
    }
    t.parse()
        .map_err(|_| ParseError::new(what, input, "is too large"))
}

fn parse_bool_as(what: &'static str, input: &str) -> Result<bool, ParseError> {
    match input.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::new(what, input, "expected true or false")),
    }
}

/// `floor(number * unit)` for `{number}{spaces}{unit}`, where `number` is
/// decimal digits with an optional fraction and `unit` one of `units` (any
/// case). Exact: integer arithmetic throughout, no floats.
fn parse_quantity(
    what: &'static str,
    input: &str,
    units: &[(&str, u128)],
    units_text: &str,
) -> Result<u128, ParseError> {
    let err = |reason: String| ParseError::new(what, input, reason);
    let t = input.trim();
    if t.is_empty() {
        return Err(err(format!(
            "is empty: expected a number and a unit ({units_text})"
        )));
    }
    if t.starts_with('-') {
        return Err(err("cannot be negative".into()));
    }
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, rest) = t.split_at(num_end);
    if number.is_empty() {
        return Err(err(format!("expected a number and a unit ({units_text})")));
    }
    let unit_text = rest.trim_start();
    let Some(&(_, unit)) = units
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit_text))
    else {
        return Err(err(format!(
            "unknown unit {unit_text:?} (expected {units_text})"
        )));
    };
    let (int_text, frac_text) = number.split_once('.').unwrap_or((number, ""));
    if frac_text.contains('.') || (int_text.is_empty() && frac_text.is_empty()) {
        return Err(err(format!("{number:?} is not a number")));
    }
    let frac_text = frac_text.trim_end_matches('0');
    if frac_text.len() > MAX_DECIMALS {
        return Err(err(format!("has more than {MAX_DECIMALS} decimal places")));
    }
    let too_large = || err("is too large".into());
    let mut int: u128 = 0;
    for b in int_text.bytes() {
        int = int * 10 + u128::from(b - b'0');
        // Past u64::MAX no unit can bring it back in range; stopping here
        // also keeps `int * unit` far from overflowing u128.
        if int > u128::from(u64::MAX) {
            return Err(too_large());
        }
    }
    let mut frac: u128 = 0;
    for b in frac_text.bytes() {
        frac = frac * 10 + u128::from(b - b'0');
    }
    let scale = 10u128.pow(frac_text.len() as u32);
    // int <= 2^64 and unit <= 2^50 (a week in ns); frac < 10^18: no overflow.
    Ok(int * unit + frac * unit / scale)
}

// ---------------------------------------------------------------------------
// Value types.

/// A 24-hour local wall-clock time, hours and minutes.
///
/// Written and parsed as `"HH:MM"` (see [`parse_time_of_day`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
}

impl TimeOfDay {
    /// `00:00`.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay { hour: 0, minute: 0 };

    /// The time `hour:minute`; `None` unless `hour <= 23` and `minute <= 59`.
    pub const fn new(hour: u8, minute: u8) -> Option<TimeOfDay> {
        if hour <= 23 && minute <= 59 {
            Some(TimeOfDay { hour, minute })
        } else {
            None
        }
    }

    /// The hour, 0..=23.
    pub const fn hour(self) -> u8 {
        self.hour
    }

    /// The minute, 0..=59.
    pub const fn minute(self) -> u8 {
        self.minute
    }

    /// Seconds from midnight to this time.
    pub const fn seconds_from_midnight(self) -> u32 {
        self.hour as u32 * 3_600 + self.minute as u32 * 60
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl FromStr for TimeOfDay {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_time_of_day(s)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TimeVisitor)
    }
}

/// How a rotated file is archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed: the rotated file is renamed to an archive name with
    /// the log's own extension (see [`archive_name_with_extension`]).
    None,
    /// zstd at this level (1..=22; see [`ZSTD_LEVELS`]), into a
    /// `{stem}_{secs}_archived.zst` file as the reference writes.
    Zstd(i32),
}

impl Default for Compression {
    /// zstd level 3, as the reference.
    fn default() -> Self {
        Compression::Zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl fmt::Display for Compression {
    /// `none` or `zstd:<level>`, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Compression {
    type Err = ParseError;
    /// `none`, `zstd` (level 3) or `zstd:<level>`, any case.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_compression_as("compression", s)
    }
}

fn parse_compression_as(what: &'static str, input: &str) -> Result<Compression, ParseError> {
    let t = input.trim().to_ascii_lowercase();
    let c = match t.as_str() {
        "none" => Compression::None,
        "zstd" => Compression::default(),
        _ => match t.strip_prefix("zstd:").map(|l| l.trim().parse::<i32>()) {
            Some(Ok(level)) => Compression::Zstd(level),
            Some(Err(_)) => {
                return Err(ParseError::new(
                    what,
                    input,
                    "the zstd level is not a whole number",
                ));
            }
            None => {
                return Err(ParseError::new(
                    what,
                    input,
                    "expected \"none\", \"zstd\" or \"zstd:<level>\"",
                ));
            }
        },
    };
    if let Compression::Zstd(level) = c
        && !ZSTD_LEVELS.contains(&level)
    {
        return Err(ParseError::new(
            what,
            input,
            format!(
                "zstd level {level} is out of range {}..={}",
                ZSTD_LEVELS.start(),
                ZSTD_LEVELS.end()
            ),
        ));
    }
    Ok(c)
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CompressionVisitor)
    }
}

// ---------------------------------------------------------------------------
// The policy.

/// When a log file rotates, and which archives are kept.
///
/// The default rotates never and prunes nothing (compression zstd level 3
/// for when rotation is turned on). Set any of `max_size`, `max_age`,
/// `rotation_time` to rotate: **any** one met rotates the file.
///
/// Three ways to build one, all checked when the context is configured:
///
/// ```
/// use std::time::Duration;
/// use hyperlog::RetentionPolicy;
///
/// // Typed.
/// let a = RetentionPolicy::new()
///     .max_size(50 * 1024 * 1024)
///     .max_archives(10);
/// // The reference's string map, plus hyperlog's keys.
/// let b = RetentionPolicy::from_map([("max_size", "50MB"), ("max_archives", "10")])?;
/// // serde, strings or numbers.
/// let c: RetentionPolicy = serde_json::from_str(r#"{"max_size": 52428800, "max_archives": 10}"#).unwrap();
/// assert!(a == b && b == c);
/// # Ok::<(), hyperlog::retention::ParseError>(())
/// ```
///
/// Serialized, a policy uses the reference's string forms
/// (`{"max_size":"50MB","max_age":"1d","rotation_time":"00:00",...}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Rotate once the file holds this many bytes.
    #[serde(with = "size_field", skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Rotate once the file is this old, measured from its creation time as
    /// the writer records it (not the mtime).
    #[serde(with = "age_field", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Rotate when the local wall clock passes this time of day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_time: Option<TimeOfDay>,
    /// Keep at most this many archives; older ones are deleted.
    #[serde(with = "count_field", skip_serializing_if = "Option::is_none")]
    pub max_archives: Option<usize>,
    /// Delete archives older than this (by the time in their name).
    #[serde(with = "age_field", skip_serializing_if = "Option::is_none")]
    pub max_archive_age: Option<Duration>,
    /// How rotated files are archived (default zstd level 3).
    pub compression: Compression,
    /// The explicit opt-in for pruning to delete a write-ahead log's sealed
    /// segments (default `false`). A context that syncs (`Fsync`,
    /// `FsyncBatch`) or carries LSNs is a write-ahead log: its segments are
    /// normally deleted only by `Context::truncate_before`, the
    /// application's checkpoint, and configuring it with `max_archives` or
    /// `max_archive_age` is an error unless this flag is set. With it,
    /// after each rotation the oldest sealed segments beyond
    /// `max_archives`, and those whose last entry is older than
    /// `max_archive_age`, are deleted, always a prefix of the chain (see
    /// [`RetentionPolicy::segments_to_prune`]).
    #[serde(deserialize_with = "bool_field")]
    pub delete_wal_segments: bool,
}

impl RetentionPolicy {
    /// The default: no rotation, no pruning, zstd level 3.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rotate once the file holds `bytes` bytes (reference key `max_size`;
    /// at least 1).
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Rotate once the file is `age` old (reference key `max_age`; more
    /// than zero).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Rotate when the local wall clock passes `at` (reference key
    /// `rotation_time`).
    #[must_use]
    pub fn rotation_time(mut self, at: TimeOfDay) -> Self {
        self.rotation_time = Some(at);
        self
    }

    /// Keep at most `n` archives, deleting the oldest beyond them (0 keeps
    /// none: rotated files are deleted once archived).
    #[must_use]
    pub fn max_archives(mut self, n: usize) -> Self {
        self.max_archives = Some(n);
        self
    }

    /// Delete archives older than `age` (more than zero).
    #[must_use]
    pub fn max_archive_age(mut self, age: Duration) -> Self {
        self.max_archive_age = Some(age);
        self
    }

    /// How rotated files are archived (default zstd level 3).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Allow pruning to delete a write-ahead log's archived segments
    /// (default `false`; see the field's documentation).
    #[must_use]
    pub fn delete_wal_segments(mut self, on: bool) -> Self {
        self.delete_wal_segments = on;
        self
    }

    /// Builds a policy from string keys and values, as the reference takes
    /// its `retention_policy` dict: `max_size` (`"50MB"`, or `"50MiB"`: see
    /// [`parse_size`]), `max_age`
    /// (`"24h"`), `rotation_time` (`"00:00"`), and hyperlog's `max_archives`
    /// (`"10"`), `max_archive_age` (`"30d"`), `compression` (`"none"`,
    /// `"zstd"`, `"zstd:<level>"`) and `delete_wal_segments` (`"true"`,
    /// `"false"`). Unknown and repeated keys are errors, as is any value that
    /// does not parse; the error names the key and the value.
    ///
    /// ```
    /// use hyperlog::RetentionPolicy;
    /// let p = RetentionPolicy::from_map([("max_age", "24h"), ("compression", "zstd:9")])?;
    /// assert_eq!(p.max_age, Some(std::time::Duration::from_secs(86_400)));
    /// let e = RetentionPolicy::from_map([("max_sise", "50MB")]).unwrap_err();
    /// assert!(e.to_string().contains("max_sise"));
    /// # Ok::<(), hyperlog::retention::ParseError>(())
    /// ```
    pub fn from_map<I, K, V>(entries: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut p = RetentionPolicy::default();
        let mut seen = [false; KEYS.len()];
        for (key, value) in entries {
            let (key, v) = (key.as_ref(), value.as_ref());
            let Some(i) = KEYS.iter().position(|k| *k == key) else {
                return Err(ParseError::new(
                    "retention key",
                    key,
                    format!("unknown key: expected one of {}", KEYS.join(", ")),
                ));
            };
            let k = KEYS[i];
            if std::mem::replace(&mut seen[i], true) {
                return Err(ParseError::new("retention key", key, "is given twice"));
            }
            match k {
                "max_size" => p.max_size = Some(parse_size_as(k, v)?),
                "max_age" => p.max_age = Some(parse_age_as(k, v)?),
                "rotation_time" => p.rotation_time = Some(parse_time_of_day_as(k, v)?),
                "max_archives" => p.max_archives = Some(parse_count_as(k, v)?),
                "max_archive_age" => p.max_archive_age = Some(parse_age_as(k, v)?),
                "compression" => p.compression = parse_compression_as(k, v)?,
                _ => p.delete_wal_segments = parse_bool_as(k, v)?,
            }
        }
        Ok(p)
    }

    /// Whether any rotation criterion is set.
    pub fn rotates(&self) -> bool {
        self.max_size.is_some() || self.max_age.is_some() || self.rotation_time.is_some()
    }

    /// Whether any pruning limit is set.
    pub fn prunes(&self) -> bool {
        self.max_archives.is_some() || self.max_archive_age.is_some()
    }

    /// Checks what typed setters could not: limits of zero, the zstd level,
    /// and the WAL opt-in. `wal`: whether the context is a write-ahead log.
    pub(crate) fn check(&self, wal: bool) -> Result<(), String> {
        if self.max_size == Some(0) {
            return Err("max_size must be at least 1 byte".into());
        }
        if self.max_age == Some(Duration::ZERO) {
            return Err("max_age must be longer than zero".into());
        }
        if self.max_archive_age == Some(Duration::ZERO) {
            return Err("max_archive_age must be longer than zero".into());
        }
        if let Compression::Zstd(level) = self.compression
            && !ZSTD_LEVELS.contains(&level)
        {
            return Err(format!(
                "zstd level {level} is out of range {}..={}",
                ZSTD_LEVELS.start(),
                ZSTD_LEVELS.end()
            ));
        }
        if wal && self.prunes() && !self.delete_wal_segments {
            return Err(
                "this context is a write-ahead log (it syncs or carries LSNs), and \
                 max_archives/max_archive_age would delete its archived segments: \
                 set delete_wal_segments to allow that"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether the file described by `state` should rotate at `now_unix`
    /// (Unix seconds, UTC), and which criterion says so. Pure: the caller
    /// passes the clock and `local_offset_secs`, the UTC offset in force now
    /// (see [`local_offset_secs`]).
    ///
    /// **Any** configured criterion rotates the file. When several are met
    /// at once the reason is the first of size, age, time of day.
    /// - `max_size`: `state.size >= max_size`.
    /// - `max_age`: `now_unix - state.created_unix >= max_age`; no wrap at
    ///   24 hours, and never while the clock reads before the creation time.
    /// - `rotation_time`: a local wall-clock `HH:MM` lies in
    ///   `(last rotation, now]`, each end read in the offset in force at
    ///   that instant (`state.last_rotation_offset_secs`,
    ///   `local_offset_secs`). So it fires once per crossing, fires once
    ///   (not once per missed day) after a process was down for days, does
    ///   not fire again when a daylight-saving change repeats an hour, fires
    ///   at the end of a skipped hour when the time fell inside it, and never
    ///   fires while the clock reads before the last rotation.
    ///
    /// Call it before appending a batch; on `Some`, rotate and then write the
    /// batch to the fresh file, so the entry that triggered the check is
    /// never lost (the reference dropped it). A file may so exceed
    /// `max_size` by one batch: records are never split. On an empty file
    /// (`state.size == 0`) age and time of day may fire with nothing to
    /// archive: restart the file's clocks (`created_unix`,
    /// `last_rotation_unix`) instead of archiving an empty file.
    ///
    /// ```
    /// use hyperlog::RetentionPolicy;
    /// use hyperlog::retention::{FileState, RotateReason, TimeOfDay};
    /// let p = RetentionPolicy::new().max_size(1000).rotation_time(TimeOfDay::MIDNIGHT);
    /// let day = 86_400;
    /// let state = FileState { size: 10, created_unix: 5 * day + 60, last_rotation_unix: 5 * day + 60, last_rotation_offset_secs: 0 };
    /// assert_eq!(p.should_rotate(&state, 5 * day + 3_600, 0), None);
    /// assert_eq!(p.should_rotate(&state, 6 * day, 0), Some(RotateReason::TimeOfDay));
    /// assert_eq!(p.should_rotate(&FileState { size: 1000, ..state }, 5 * day + 61, 0), Some(RotateReason::Size));
    /// ```
    pub fn should_rotate(
        &self,
        state: &FileState,
        now_unix: i64,
        local_offset_secs: i32,
    ) -> Option<RotateReason> {
        if let Some(max) = self.max_size
            && state.size >= max
        {
            return Some(RotateReason::Size);
        }
        if let Some(max) = self.max_age {
            let age = i128::from(now_unix) - i128::from(state.created_unix);
            // |age| < 2^64, so a non-negative age fits in u64.
            if age >= 0 && Duration::from_secs(u64::try_from(age).unwrap_or(u64::MAX)) >= max {
                return Some(RotateReason::Age);
            }
        }
        if let Some(at) = self.rotation_time {
            let last =
                i128::from(state.last_rotation_unix) + i128::from(state.last_rotation_offset_secs);
            let now = i128::from(now_unix) + i128::from(local_offset_secs);
            let t = i128::from(at.seconds_from_midnight());
            // The latest local `at` at or before now.
            let latest = (now - t).div_euclid(DAY) * DAY + t;
            if latest > last {
                return Some(RotateReason::TimeOfDay);
            }
        }
        None
    }

    /// The archives to delete, oldest first: all but the newest
    /// `max_archives`, and every one older than `max_archive_age` (age
    /// `now_unix - secs` strictly greater). `archives` are `(file name,
    /// secs, counter)` as [`parse_archive_name`] reads them, in any order;
    /// order is by `(secs, counter)`, the name breaking ties.
    ///
    /// Pure, and blind to what the archives hold: for a write-ahead log the
    /// configure-time check has already required `delete_wal_segments`
    /// before any pruning limit is accepted.
    ///
    /// ```
    /// use hyperlog::RetentionPolicy;
    /// let p = RetentionPolicy::new().max_archives(2);
    /// let archives = [("a_30_archived.zst".to_string(), 30, 0), ("a_10_archived.zst".into(), 10, 0), ("a_20_archived.zst".into(), 20, 0)];
    /// assert_eq!(p.archives_to_prune(&archives, 40), vec!["a_10_archived.zst".to_string()]);
    /// ```
    pub fn archives_to_prune(&self, archives: &[(String, i64, u32)], now_unix: i64) -> Vec<String> {
        let mut sorted: Vec<&(String, i64, u32)> = archives.iter().collect();
        sorted.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
        let over_count = self
            .max_archives
            .map_or(0, |keep| sorted.len().saturating_sub(keep));
        sorted
            .iter()
            .enumerate()
            .filter(|(i, (_, secs, _))| {
                *i < over_count
                    || self.max_archive_age.is_some_and(|max| {
                        let age = i128::from(now_unix) - i128::from(*secs);
                        age > 0 && Duration::from_secs(u64::try_from(age).unwrap_or(u64::MAX)) > max
                    })
            })
            .map(|(_, (name, _, _))| name.clone())
            .collect()
    }
}

impl RetentionPolicy {
    /// How many of a write-ahead log's sealed segments to delete, counted
    /// from the oldest, when the policy opted in with `delete_wal_segments`
    /// (0 otherwise). `sealed_unix` holds, oldest first, the time (Unix
    /// seconds) each segment's last entry was written, or `None` when it is
    /// not known (segments without LSNs). A segment goes when it is beyond
    /// the newest `max_archives` or older than `max_archive_age`; only a
    /// prefix of the chain ever goes, so the segments left stay contiguous
    /// even if the clock once ran backwards.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hyperlog::RetentionPolicy;
    /// let mut p = RetentionPolicy::new().max_archives(2);
    /// assert_eq!(p.segments_to_prune(&[Some(10), Some(20), Some(30)], 40), 0);
    /// p.delete_wal_segments = true;
    /// assert_eq!(p.segments_to_prune(&[Some(10), Some(20), Some(30)], 40), 1);
    /// let mut p = RetentionPolicy::new().max_archive_age(Duration::from_secs(15));
    /// p.delete_wal_segments = true;
    /// // The second segment is old, but the first is not: nothing goes.
    /// assert_eq!(p.segments_to_prune(&[Some(35), Some(20), Some(39)], 40), 0);
    /// assert_eq!(p.segments_to_prune(&[Some(10), Some(20), Some(39)], 40), 2);
    /// ```
    pub fn segments_to_prune(&self, sealed_unix: &[Option<i64>], now_unix: i64) -> usize {
        if !self.delete_wal_segments {
            return 0;
        }
        let over_count = self
            .max_archives
            .map_or(0, |keep| sealed_unix.len().saturating_sub(keep));
        let old = |t: &Option<i64>| {
            self.max_archive_age.zip(*t).is_some_and(|(max, t)| {
                let age = i128::from(now_unix) - i128::from(t);
                age > 0 && Duration::from_secs(u64::try_from(age).unwrap_or(u64::MAX)) > max
            })
        };
        sealed_unix
            .iter()
            .enumerate()
            .take_while(|(i, t)| *i < over_count || old(t))
            .count()
    }
}

/// What [`ContextOptions::retention_policy`](crate::ContextOptions::retention_policy)
/// accepts: a typed [`RetentionPolicy`], or string pairs as the reference's
/// dict (an array of pairs, a `Vec`, a `HashMap`, a `BTreeMap`...), parsed
/// with [`RetentionPolicy::from_map`] and reported when the context is
/// configured.
pub trait IntoRetentionPolicy {
    /// Converts, or says which key and value do not parse.
    fn into_retention_policy(self) -> Result<RetentionPolicy, ParseError>;
}

impl IntoRetentionPolicy for RetentionPolicy {
    fn into_retention_policy(self) -> Result<RetentionPolicy, ParseError> {
        Ok(self)
    }
}

impl<I, K, V> IntoRetentionPolicy for I
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    fn into_retention_policy(self) -> Result<RetentionPolicy, ParseError> {
        RetentionPolicy::from_map(self)
    }
}

/// What [`RetentionPolicy::should_rotate`] needs to know about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileState {
    /// The file's length in bytes.
    pub size: u64,
    /// When the file was created, Unix seconds, as the writer records it
    /// (in the log directory's metadata or the segment header), never the
    /// mtime, which every write moves.
    pub created_unix: i64,
    /// When the file last rotated, Unix seconds; for a file that never
    /// rotated, its creation time.
    pub last_rotation_unix: i64,
    /// The UTC offset in force at `last_rotation_unix`
    /// ([`local_offset_secs_at`]), so that a daylight-saving change between
    /// then and now does not move the last rotation on the wall clock.
    pub last_rotation_offset_secs: i32,
}

/// Which criterion rotated a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotateReason {
    /// The file reached `max_size`.
    Size,
    /// The file reached `max_age`.
    Age,
    /// The local wall clock passed `rotation_time`.
    TimeOfDay,
}

impl RotateReason {
    /// The criterion's key: `max_size`, `max_age` or `rotation_time`.
    pub fn key(self) -> &'static str {
        match self {
            RotateReason::Size => "max_size",
            RotateReason::Age => "max_age",
            RotateReason::TimeOfDay => "rotation_time",
        }
    }
}

impl fmt::Display for RotateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

// ---------------------------------------------------------------------------
// Local time.

/// The local UTC offset now, in seconds east of UTC (`3600` for UTC+1).
///
/// Safe to call from any thread of a multithreaded program, and cheap (the
/// time zone is cached for five minutes, so a changed `TZ` or
/// `/etc/localtime` is seen within that). Falls back to UTC when the system
/// time zone cannot be determined.
///
/// Why `jiff`: `time::UtcOffset::current_local_offset()` refuses to answer
/// in a multithreaded process on Linux, because it goes through libc's
/// `localtime_r`, which reads `TZ` with `getenv` and races any thread's
/// `setenv` (undefined behaviour). Calling `localtime_r` through `libc`
/// ourselves would carry the same race. `jiff::tz::TimeZone::system()` reads
/// `TZ` through `std::env` and parses the TZif data (`/etc/localtime`, the
/// zoneinfo database) itself, with no libc time-zone state, so it is sound
/// from any thread; it also gives the offset at any instant, which
/// daylight-saving handling needs ([`local_offset_secs_at`]).
pub fn local_offset_secs() -> i32 {
    jiff::tz::TimeZone::system()
        .to_offset(jiff::Timestamp::now())
        .seconds()
}

/// The local UTC offset, in seconds east of UTC, that was (or will be) in
/// force at `unix_secs`. Same source and guarantees as
/// [`local_offset_secs`]; instants outside years -9999..=9999 are clamped.
pub fn local_offset_secs_at(unix_secs: i64) -> i32 {
    let clamped = unix_secs.clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    let at = jiff::Timestamp::from_second(clamped).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::TimeZone::system().to_offset(at).seconds()
}

// ---------------------------------------------------------------------------
// Archive names.

/// The stem that names a log's archives: its file name without the last
/// extension (`hyperscale.leader.log.json` → `hyperscale.leader.log`), as
/// the reference's Python `Path.stem`. `None` for a path without a UTF-8
/// file name.
pub fn archive_stem(log_path: &Path) -> Option<&str> {
    log_path.file_stem()?.to_str()
}

/// The name of a new zstd archive of the log with `stem`, rotated at
/// `unix_secs`: `{stem}_{secs}_archived.zst` as the reference names it, or
/// `{stem}_{secs}-{n}_archived.zst` (n = 1, 2, ...) when `existing` (the
/// file names in the log's directory) already holds an archive of that
/// second. See [`archive_name_with_extension`] for the rules.
///
/// ```
/// use hyperlog::retention::archive_name;
/// assert_eq!(archive_name("app.log", 1_700_000_000, &[]), "app.log_1700000000_archived.zst");
/// let existing = vec!["app.log_1700000000_archived.zst".to_string()];
/// assert_eq!(archive_name("app.log", 1_700_000_000, &existing), "app.log_1700000000-1_archived.zst");
/// ```
pub fn archive_name(stem: &str, unix_secs: i64, existing: &[String]) -> String {
    archive_name_with_extension(stem, unix_secs, ZSTD_EXTENSION, existing)
}

/// The name of a new archive with `extension` (`zst` for zstd; the log's
/// own extension, such as `json` or `wal`, for an uncompressed archive).
///
/// The counter form is `{stem}_{secs}-{n}_archived.{ext}`: a `-` rather than
/// another `_`, so that an archive of a log whose stem ends in `_{digits}`
/// (`node_1`) is never read as an archive of `node` with a counter; and the
/// `_archived.{ext}` ending stays the reference's. Names never go backwards:
/// when `existing` holds an archive of the same second, or (the clock
/// stepped back) of a later one, the new name takes that second and the
/// next counter. So `(secs, counter)`, as [`parse_archive_name`] reads it,
/// orders archives in rotation order; it is the order pruning uses. (Plain
/// lexicographic order agrees across seconds while epochs have ten digits,
/// but not within a second.) Negative times are written as 0.
pub fn archive_name_with_extension(
    stem: &str,
    unix_secs: i64,
    extension: &str,
    existing: &[String],
) -> String {
    let mut secs = unix_secs.max(0);
    let mut counter = 0u32;
    let newest = existing
        .iter()
        .filter_map(|name| parse_archive_name(stem, name))
        .max();
    if let Some((s, c)) = newest
        && s >= secs
    {
        (secs, counter) = match c.checked_add(1) {
            Some(n) => (s, n),
            None => (s.saturating_add(1), 0),
        };
    }
    if counter == 0 {
        format!("{stem}_{secs}_archived.{extension}")
    } else {
        format!("{stem}_{secs}-{counter}_archived.{extension}")
    }
}

/// Reads `(secs, counter)` from the file name of an archive of the log with
/// `stem` (`counter` is 0 for the plain `{stem}_{secs}_archived.{ext}`
/// form), or `None` when `file_name` is not one: another log's archive, a
/// `.tmp` file of an archive being written, anything else. Any one-part
/// alphanumeric extension is accepted, so archives stay recognised when
/// the compression setting changes.
///
/// ```
/// use hyperlog::retention::parse_archive_name;
/// assert_eq!(parse_archive_name("app", "app_1700000000_archived.zst"), Some((1_700_000_000, 0)));
/// assert_eq!(parse_archive_name("app", "app_1700000000-2_archived.zst"), Some((1_700_000_000, 2)));
/// assert_eq!(parse_archive_name("app", "app_1700000000_archived.zst.tmp"), None);
/// assert_eq!(parse_archive_name("node", "node_1_1700000000_archived.zst"), None);
/// ```
pub fn parse_archive_name(stem: &str, file_name: &str) -> Option<(i64, u32)> {
    let rest = file_name.strip_prefix(stem)?.strip_prefix('_')?;
    let (middle, extension) = rest.split_once("_archived.")?;
    if extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (secs, counter) = match middle.split_once('-') {
        Some((s, c)) => {
            if !digits(c) {
                return None;
            }
            let c: u32 = c.parse().ok()?;
            if c == 0 {
                return None;
            }
            (s, c)
        }
        None => (middle, 0),
    };
    if !digits(secs) {
        return None;
    }
    Some((secs.parse().ok()?, counter))
}

// ---------------------------------------------------------------------------
// Compression.

/// Compresses `src` with zstd at `level` into `dst_dir/name`, durably, and
/// returns that path. The caller deletes `src` afterwards, and only after
/// `Ok`.
///
/// Steps, all through `fs`: stream `src` into `dst_dir/{name}.tmp` (created
/// with Unix permissions `mode`; a `.tmp` left by an earlier crash is
/// replaced), `fdatasync` it, rename it to `name`, `fsync` `dst_dir`. So a
/// crash at any point leaves `src` intact and either no archive or a
/// complete one, never a partial file under the final name.
///
/// An existing `dst_dir/name` is an error (`AlreadyExists`), never
/// overwritten; [`archive_name`] picks a free name. On any error the `.tmp`
/// file is removed (best effort); if only the final directory sync failed,
/// the archive may exist but may not survive a power cut, so keep `src`.
pub fn compress_archive(
    fs: &dyn FileSystem,
    src: &Path,
    dst_dir: &Path,
    name: &str,
    level: i32,
    mode: u32,
) -> Result<PathBuf, Error> {
    let dst = dst_dir.join(name);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(Error::io(
            "name archive",
            dst,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "an archive name must be a plain file name",
            ),
        ));
    }
    if fs.exists(&dst) {
        return Err(Error::io(
            "create archive",
            dst,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    let tmp = dst_dir.join(format!("{name}.tmp"));
    let reader = fs.open_read(src).map_err(|e| Error::io("open", src, e))?;
    // A `.tmp` is only ever a crashed attempt: its source is still there.
    if fs.exists(&tmp) {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let (file, created) = fs
        .open_append(&tmp, mode)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let written = if created {
        write_compressed(&*reader, file, level, src, &tmp).and_then(|()| {
            fs.rename(&tmp, &dst)
                .map_err(|e| Error::io("rename", &tmp, e))
        })
    } else {
        Err(Error::io(
            "create",
            &tmp,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "appeared again after it was removed",
            ),
        ))
    };
    if let Err(e) = written {
        if created {
            let _ = fs.remove_file(&tmp);
        }
        return Err(e);
    }
    fs.sync_dir(dst_dir)
        .map_err(|e| Error::io("fsync directory", dst_dir, e))?;
    Ok(dst)
}

/// Streams `src` through a zstd encoder into `dst` and syncs it.
fn write_compressed(
    src: &dyn ReadableFile,
    dst: Box<dyn WritableFile>,
    level: i32,
    src_path: &Path,
    tmp: &Path,
) -> Result<(), Error> {
    use std::io::Write as _;
    let mut encoder = zstd::stream::Encoder::new(ArchiveWriter(dst), level)
        .map_err(|e| Error::io("start zstd for", tmp, e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match src.read_at(&mut buf, offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", src_path, e)),
        };
        encoder
            .write_all(&buf[..n])
            .map_err(|e| Error::io("write", tmp, e))?;
        offset += n as u64;
    }
    let ArchiveWriter(mut file) = encoder.finish().map_err(|e| Error::io("write", tmp, e))?;
    file.sync_data().map_err(|e| Error::io("fdatasync", tmp, e))
}

/// `io::Write` over the seam's writable file, for the encoder.
struct ArchiveWriter(Box<dyn WritableFile>);

impl io::Write for ArchiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Durability is the explicit `sync_data` after `finish`.
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// serde: every field accepts its string form as well as a typed value.

struct SizeVisitor;
struct AgeVisitor;
struct CountVisitor;
struct BoolVisitor;
struct TimeVisitor;
struct CompressionVisitor;

/// `null` → `None`, anything else through the inner visitor.
struct Optional<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Optional<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

fn negative<E: de::Error>(what: &str, v: i64) -> E {
    E::custom(format!("invalid {what} {v}: cannot be negative"))
}

impl Visitor<'_> for SizeVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size in bytes or a string such as \"50MB\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| negative("size", v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_size(v).map_err(E::custom)
    }
}

impl Visitor<'_> for AgeVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an age in seconds or a string such as \"24h\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| negative("age", v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v)
            .map_err(|e| E::custom(format!("invalid age {v} seconds: {e}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_age(v).map_err(E::custom)
    }
}

impl Visitor<'_> for CountVisitor {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number of archives")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom(format!("invalid max_archives {v}: too large")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| negative("max_archives", v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        parse_count_as("max_archives", v).map_err(E::custom)
    }
}

impl Visitor<'_> for BoolVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        parse_bool_as("delete_wal_segments", v).map_err(E::custom)
    }
}

impl Visitor<'_> for TimeVisitor {
    type Value = TimeOfDay;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 24-hour \"HH:MM\" time")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeOfDay, E> {
        parse_time_of_day_as("rotation_time", v).map_err(E::custom)
    }
}

impl Visitor<'_> for CompressionVisitor {
    type Value = Compression;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"none\", \"zstd\" or \"zstd:<level>\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Compression, E> {
        parse_compression_as("compression", v).map_err(E::custom)
    }
}

fn bool_field<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(BoolVisitor)
}

mod size_field {
    use super::*;
    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_str(&format_size(*n)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(Optional(SizeVisitor))
    }
}

mod age_field {
    use super::*;
    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&format_age(*d)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(Optional(AgeVisitor))
    }
}

mod count_field {
    use super::*;
    pub(super) fn serialize<S: Serializer>(v: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n as u64),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_option(Optional(CountVisitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fault, Op, SimFs, StdFs};
    use proptest::prelude::*;

    const MB: u64 = 1 << 20;
    const HOUR: i64 = 3_600;
    const DAY_S: i64 = 86_400;
    /// Some Monday, midnight UTC, far from the epoch.
    const D: i64 = 20_000 * DAY_S;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(hour: u8, minute: u8) -> TimeOfDay {
        TimeOfDay::new(hour, minute).unwrap()
    }

    fn assert_err<T: fmt::Debug>(r: Result<T, ParseError>, value: &str, needle: &str) {
        let e = r.expect_err(value);
        let text = e.to_string();
        assert!(
            text.contains(&format!("{value:?}")),
            "{text} should name {value:?}"
        );
        assert!(text.contains(needle), "{text} should say {needle:?}");
    }

    // -- parsers ------------------------------------------------------------

    #[test]
    fn sizes_parse() {
        for (s, n) in [
            ("50MB", 50 * MB),
            ("50 mb", 50 * MB),
            ("50mb", 50 * MB),
            ("  50Mb  ", 50 * MB),
            ("50\tMB", 50 * MB),
            ("1B", 1),
            ("0", 0),
            ("4096", 4096),
            ("007KB", 7 * 1024),
            ("1KB", 1024),
            ("1GB", 1 << 30),
            ("2TB", 2 << 40),
            ("1.5KB", 1536),
            (".5KB", 512),
            ("5.", 5),
            ("0.3KB", 307), // 307.2 rounds down
            ("1.5B", 1),
            ("1.000000000000000000000000MB", MB), // trailing zeros do not count
            ("18446744073709551615", u64::MAX),
            ("16777215TB", u64::MAX - (1 << 40) + 1),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
    }

    #[test]
    fn iec_size_units_are_the_same_powers_of_1024() {
        for (s, n) in [
            ("50MiB", 50 * MB),
            ("50 MiB", 50 * MB),
            ("50mib", 50 * MB),
            ("50MIB", 50 * MB),
            (" 50\tmIb ", 50 * MB),
            ("1KiB", 1024),
            ("1.5kib", 1536),
            ("3GiB", 3 << 30),
            ("2TiB", 2 << 40),
            ("0.5TiB", 1 << 39),
            ("16777215TiB", u64::MAX - (1 << 40) + 1),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for (iec, legacy) in [("KiB", "KB"), ("MiB", "MB"), ("GiB", "GB"), ("TiB", "TB")] {
            for k in ["1", "7", "0.25", "1024"] {
                assert_eq!(
                    parse_size(&format!("{k}{iec}")),
                    parse_size(&format!("{k}{legacy}")),
                    "{k}{iec}"
                );
            }
        }
        assert_err(parse_size("16777216TiB"), "16777216TiB", "too large");
        // Near misses are still unknown units, and the message lists both spellings.
        for bad in ["50Mi", "50MiBB", "50 Mi B", "50iB", "50PiB", "50KIBI"] {
            assert_err(parse_size(bad), bad, "unknown unit");
            assert!(
                parse_size(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("KiB, MiB, GiB or TiB")
            );
        }
        // Through the reference's string map, as `max_size`.
        let p = RetentionPolicy::from_map([("max_size", "50MiB")]).unwrap();
        assert_eq!(
            p,
            RetentionPolicy::from_map([("max_size", "50MB")]).unwrap()
        );
        assert_eq!(p, RetentionPolicy::new().max_size(50 * MB));
    }

    #[test]
    fn bad_sizes_name_the_value() {
        assert_err(parse_size("-1MB"), "-1MB", "negative");
        assert_err(parse_size("50XB"), "50XB", "unknown unit \"XB\"");
        assert_err(parse_size("50 KiBit"), "50 KiBit", "unknown unit");
        assert_err(parse_size("5 M B"), "5 M B", "unknown unit");
        assert_err(parse_size("1e6"), "1e6", "unknown unit");
        assert_err(parse_size(""), "", "empty");
        assert_err(parse_size("   "), "   ", "empty");
        assert_err(parse_size("MB"), "MB", "expected a number");
        assert_err(parse_size("+5MB"), "+5MB", "expected a number");
        assert_err(parse_size("1.2.3MB"), "1.2.3MB", "not a number");
        assert_err(parse_size(".MB"), ".MB", "not a number");
        assert_err(parse_size("16777216TB"), "16777216TB", "too large");
        assert_err(
            parse_size("18446744073709551616"),
            "18446744073709551616",
            "too large",
        );
        let e = parse_size(&"9".repeat(200)).unwrap_err().to_string();
        assert!(e.contains("\"9999") && e.contains("too large"), "{e}");
        assert_err(
            parse_size("1.0000000000000000001MB"),
            "1.0000000000000000001MB",
            "decimal places",
        );
        let e = parse_size("12Q").unwrap_err();
        assert_eq!((e.what(), e.value()), ("size", "12Q"));
        // A huge value is cut in the message.
        let long = format!("{}X", "1".repeat(10_000));
        assert!(parse_size(&long).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn ages_parse() {
        for (s, d) in [
            ("24h", secs(86_400)),
            ("24H", secs(86_400)),
            ("90", secs(90)),
            ("90s", secs(90)),
            ("1.5m", secs(90)),
            (" 3 h ", secs(3 * 3_600)),
            ("2d", secs(2 * 86_400)),
            ("1w", secs(604_800)),
            ("0.5s", Duration::from_millis(500)),
            ("0.000000001", Duration::from_nanos(1)),
            ("0.0000000019", Duration::from_nanos(1)), // rounds down
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_age(s), Ok(d), "{s}");
        }
    }

    #[test]
    fn bad_ages_name_the_value() {
        assert_err(parse_age("3 months"), "3 months", "unknown unit \"months\"");
        assert_err(parse_age("-5s"), "-5s", "negative");
        assert_err(parse_age(""), "", "empty");
        assert_err(parse_age("h"), "h", "expected a number");
        assert_err(parse_age("1x"), "1x", "(expected s, m, h, d or w)");
        assert_err(
            parse_age("100000000000000w"),
            "100000000000000w",
            "too large",
        );
        assert_err(parse_age("1..5h"), "1..5h", "not a number");
        assert_eq!(parse_age("5y").unwrap_err().what(), "age");
    }

    #[test]
    fn times_of_day_parse() {
        for (s, h, m) in [
            ("00:00", 0, 0),
            ("07:05", 7, 5),
            ("7:05", 7, 5),
            ("23:59", 23, 59),
            (" 12:30 ", 12, 30),
        ] {
            assert_eq!(parse_time_of_day(s), Ok(at(h, m)), "{s}");
        }
        assert_eq!(at(7, 5).to_string(), "07:05");
        assert_eq!("7:05".parse::<TimeOfDay>(), Ok(at(7, 5)));
        assert_eq!(at(1, 2).seconds_from_midnight(), 3_720);
        assert_eq!(TimeOfDay::new(24, 0), None);
        assert_eq!(TimeOfDay::new(0, 60), None);
    }

    #[test]
    fn bad_times_of_day_name_the_value() {
        assert_err(parse_time_of_day("24:00"), "24:00", "midnight is 00:00");
        assert_err(
            parse_time_of_day("7:5"),
            "7:5",
            "minute must be exactly two digits",
        );
        assert_err(parse_time_of_day("07:60"), "07:60", "minute 60");
        assert_err(parse_time_of_day("0705"), "0705", "HH:MM");
        assert_err(parse_time_of_day(""), "", "HH:MM");
        assert_err(parse_time_of_day("07:05:00"), "07:05:00", "minute");
        assert_err(parse_time_of_day("-1:00"), "-1:00", "hour");
        assert_err(parse_time_of_day("123:00"), "123:00", "hour");
        assert_err(parse_time_of_day("7 :05"), "7 :05", "hour");
        assert_err(parse_time_of_day("ab:cd"), "ab:cd", "hour");
        assert_err(
            parse_time_of_day("\u{661}\u{662}:30"),
            "\u{661}\u{662}:30",
            "hour",
        );
    }

    #[test]
    fn compression_parses() {
        assert_eq!("none".parse(), Ok(Compression::None));
        assert_eq!("zstd".parse(), Ok(Compression::Zstd(3)));
        assert_eq!("ZSTD:9".parse(), Ok(Compression::Zstd(9)));
        assert_eq!(" zstd: 22 ".parse(), Ok(Compression::Zstd(22)));
        assert_eq!(Compression::default(), Compression::Zstd(3));
        assert_eq!(Compression::Zstd(9).to_string(), "zstd:9");
        assert_err(
            "zstd:0".parse::<Compression>(),
            "zstd:0",
            "out of range 1..=22",
        );
        assert_err("zstd:23".parse::<Compression>(), "zstd:23", "out of range");
        assert_err("zstd:x".parse::<Compression>(), "zstd:x", "whole number");
        assert_err("gzip".parse::<Compression>(), "gzip", "expected \"none\"");
    }

    #[test]
    fn formatters_pick_the_largest_exact_unit() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1023), "1023B");
        assert_eq!(format_size(3072), "3KB");
        assert_eq!(format_size(50 * MB), "50MB");
        assert_eq!(format_size(1 << 40), "1TB");
        assert_eq!(format_age(Duration::ZERO), "0s");
        assert_eq!(format_age(secs(45)), "45s");
        assert_eq!(format_age(secs(5_400)), "90m");
        assert_eq!(format_age(secs(7_200)), "2h");
        assert_eq!(format_age(secs(86_400)), "1d");
        assert_eq!(format_age(secs(1_209_600)), "2w");
        assert_eq!(
            format_age(Duration::from_nanos(1_000_000_001)),
            "1.000000001s"
        );
    }

    // -- the policy ---------------------------------------------------------

    #[test]
    fn from_map_takes_the_reference_dict() {
        let p = RetentionPolicy::from_map([
            ("max_size", "50MB"),
            ("max_age", "24h"),
            ("rotation_time", "00:00"),
        ])
        .unwrap();
        assert_eq!(
            p,
            RetentionPolicy::new()
                .max_size(50 * MB)
                .max_age(secs(86_400))
                .rotation_time(TimeOfDay::MIDNIGHT)
        );
        assert_eq!(p.compression, Compression::Zstd(3));
        assert!(!p.delete_wal_segments && p.rotates() && !p.prunes());
    }

    #[test]
    fn from_map_takes_the_new_keys_and_map_types() {
        let mut m = std::collections::HashMap::new();
        m.insert("max_archives".to_string(), "10".to_string());
        m.insert("max_archive_age".to_string(), "30d".to_string());
        m.insert("compression".to_string(), "zstd:9".to_string());
        m.insert("delete_wal_segments".to_string(), "true".to_string());
        let p = RetentionPolicy::from_map(&m).unwrap();
        assert_eq!(
            p,
            RetentionPolicy::new()
                .max_archives(10)
                .max_archive_age(secs(30 * 86_400))
                .compression(Compression::Zstd(9))
                .delete_wal_segments(true)
        );
        assert_eq!(RetentionPolicy::from_map(m).unwrap(), p);
        assert_eq!(
            RetentionPolicy::from_map(Vec::<(&str, &str)>::new()).unwrap(),
            RetentionPolicy::default()
        );
        assert_eq!(
            RetentionPolicy::from_map([("compression", "none")])
                .unwrap()
                .compression,
            Compression::None
        );
    }

    #[test]
    fn from_map_errors_name_the_key_and_value() {
        let e = RetentionPolicy::from_map([("max_sise", "50MB")]).unwrap_err();
        assert!(e.to_string().contains("\"max_sise\"") && e.to_string().contains("max_size"));
        let e = RetentionPolicy::from_map([("max_size", "1MB"), ("max_size", "2MB")]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        for (k, v) in [
            ("max_size", "50XB"),
            ("max_age", "1y"),
            ("rotation_time", "24:00"),
            ("max_archives", "-1"),
            ("max_archives", "ten"),
            ("max_archive_age", "soon"),
            ("compression", "lz4"),
            ("delete_wal_segments", "maybe"),
        ] {
            let e = RetentionPolicy::from_map([(k, v)]).unwrap_err();
            assert_eq!((e.what(), e.value()), (k, v));
            let text = e.to_string();
            assert!(text.starts_with(&format!("invalid {k} {v:?}: ")), "{text}");
        }
    }

    #[test]
    fn serde_accepts_strings_and_numbers() {
        let p: RetentionPolicy = serde_json::from_str(
            r#"{"max_size": "50MB", "max_age": "24h", "rotation_time": "7:05",
                "max_archives": "3", "max_archive_age": 3600, "compression": "none",
                "delete_wal_segments": "true"}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            RetentionPolicy::new()
                .max_size(50 * MB)
                .max_age(secs(86_400))
                .rotation_time(at(7, 5))
                .max_archives(3)
                .max_archive_age(secs(3_600))
                .compression(Compression::None)
                .delete_wal_segments(true)
        );
        let q: RetentionPolicy = serde_json::from_str(
            r#"{"max_size": 52428800, "max_age": 86400.0, "max_archives": 3, "max_archive_age": null}"#,
        )
        .unwrap();
        assert_eq!(q.max_size, Some(50 * MB));
        assert_eq!(q.max_age, Some(secs(86_400)));
        assert_eq!(q.max_archive_age, None);
        let d: RetentionPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(d, RetentionPolicy::default());
    }

    #[test]
    fn serde_errors_are_clear() {
        for (json, needle) in [
            (r#"{"max_size": "50XB"}"#, "invalid size \"50XB\""),
            (r#"{"max_size": -1}"#, "cannot be negative"),
            (r#"{"max_size": 1.5}"#, "a size in bytes"),
            (r#"{"max_age": -3}"#, "cannot be negative"),
            (
                r#"{"rotation_time": "24:00"}"#,
                "invalid rotation_time \"24:00\"",
            ),
            (r#"{"compression": "zstd:99"}"#, "out of range"),
            (r#"{"max_archives": -1}"#, "cannot be negative"),
            (r#"{"max_sise": "1MB"}"#, "unknown field `max_sise`"),
        ] {
            let e = serde_json::from_str::<RetentionPolicy>(json).unwrap_err();
            assert!(e.to_string().contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn serde_writes_the_reference_forms_and_round_trips() {
        let p = RetentionPolicy::new()
            .max_size(50 * MB)
            .max_age(secs(86_400))
            .rotation_time(TimeOfDay::MIDNIGHT)
            .max_archives(10);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"max_size":"50MB","max_age":"1d","rotation_time":"00:00","max_archives":10,"compression":"zstd:3","delete_wal_segments":false}"#
        );
        assert_eq!(serde_json::from_str::<RetentionPolicy>(&json).unwrap(), p);
    }

    #[test]
    fn checks_at_configure() {
        let ok = RetentionPolicy::new().max_size(1);
        assert!(ok.check(false).is_ok() && ok.check(true).is_ok());
        for (p, needle) in [
            (RetentionPolicy::new().max_size(0), "max_size"),
            (RetentionPolicy::new().max_age(Duration::ZERO), "max_age"),
            (
                RetentionPolicy::new().max_archive_age(Duration::ZERO),
                "max_archive_age",
            ),
            (
                RetentionPolicy::new().compression(Compression::Zstd(0)),
                "zstd level 0",
            ),
        ] {
            let e = p.check(false).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        // Pruning a WAL needs the explicit opt-in; an ordinary log does not.
        let prune = RetentionPolicy::new().max_size(MB).max_archives(5);
        assert!(prune.check(false).is_ok());
        assert!(
            prune
                .check(true)
                .unwrap_err()
                .contains("delete_wal_segments")
        );
        assert!(prune.clone().delete_wal_segments(true).check(true).is_ok());
        let by_age = RetentionPolicy::new().max_archive_age(secs(60));
        assert!(by_age.check(true).is_err());
        // Rotation alone (archives kept) is fine for a WAL.
        assert!(RetentionPolicy::new().max_size(MB).check(true).is_ok());
    }

    #[test]
    fn context_options_report_retention_errors_at_configure() {
        use crate::{ContextOptions, DurabilityMode};
        let e = ContextOptions::new()
            .path("a.log")
            .retention_policy([("max_size", "50XB")])
            .compile("c")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("retention_policy") && e.contains("50XB"), "{e}");
        let e = ContextOptions::new()
            .retention_policy(RetentionPolicy::new().max_size(MB))
            .compile("c")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("console"), "{e}");
        let e = ContextOptions::new()
            .path("a.wal")
            .durability(DurabilityMode::FsyncBatch)
            .retention_policy([("max_size", "1MB"), ("max_archives", "3")])
            .compile("c")
            .err()
            .unwrap()
            .to_string();
        // Pruning a WAL's segments by policy needs the explicit opt-in.
        assert!(e.contains("delete_wal_segments"), "{e}");
        let c = ContextOptions::new()
            .path("a.wal")
            .durability(DurabilityMode::FsyncBatch)
            .retention_policy([
                ("max_size", "1MB"),
                ("max_archives", "3"),
                ("delete_wal_segments", "true"),
            ])
            .compile("c")
            .unwrap();
        assert!(c.retention.delete_wal_segments);
        let c = ContextOptions::new()
            .path("a.log")
            .retention_policy([("max_size", "50MB"), ("rotation_time", "00:00")])
            .compile("c")
            .unwrap();
        assert_eq!(c.retention.max_size, Some(50 * MB));
        assert!(ContextOptions::new().compile("c").is_ok());
    }

    // -- rotation -----------------------------------------------------------

    fn file(size: u64, created: i64) -> FileState {
        FileState {
            size,
            created_unix: created,
            last_rotation_unix: created,
            last_rotation_offset_secs: 0,
        }
    }

    #[test]
    fn the_default_never_rotates() {
        let p = RetentionPolicy::default();
        assert!(!p.rotates());
        assert_eq!(p.should_rotate(&file(u64::MAX, 0), D * 10, 0), None);
    }

    #[test]
    fn size_alone() {
        let p = RetentionPolicy::new().max_size(1000);
        assert_eq!(p.should_rotate(&file(999, D), D, 0), None);
        assert_eq!(
            p.should_rotate(&file(1000, D), D, 0),
            Some(RotateReason::Size)
        );
        assert_eq!(
            p.should_rotate(&file(5000, D), D, 0),
            Some(RotateReason::Size)
        );
    }

    #[test]
    fn age_alone_without_wrapping() {
        let p = RetentionPolicy::new().max_age(secs(86_400));
        assert_eq!(p.should_rotate(&file(1, D), D + DAY_S - 1, 0), None);
        assert_eq!(
            p.should_rotate(&file(1, D), D + DAY_S, 0),
            Some(RotateReason::Age)
        );
        // 25 hours: the reference's age wrapped to one hour here.
        assert_eq!(
            p.should_rotate(&file(1, D), D + 25 * HOUR, 0),
            Some(RotateReason::Age)
        );
        let two_days = RetentionPolicy::new().max_age(secs(2 * 86_400));
        assert_eq!(two_days.should_rotate(&file(1, D), D + 47 * HOUR, 0), None);
        assert_eq!(
            two_days.should_rotate(&file(1, D), D + 48 * HOUR, 0),
            Some(RotateReason::Age)
        );
        // A clock that reads before the creation time never ages the file.
        assert_eq!(p.should_rotate(&file(1, D), D - 10 * DAY_S, 0), None);
        // A sub-second limit fires on the next whole second.
        let short = RetentionPolicy::new().max_age(Duration::from_millis(1_500));
        assert_eq!(short.should_rotate(&file(1, D), D + 1, 0), None);
        assert_eq!(
            short.should_rotate(&file(1, D), D + 2, 0),
            Some(RotateReason::Age)
        );
    }

    #[test]
    fn time_of_day_alone_just_before_and_after() {
        let p = RetentionPolicy::new().rotation_time(at(7, 5));
        let boundary = D + 7 * HOUR + 5 * 60;
        let f = file(1, D + HOUR);
        assert_eq!(p.should_rotate(&f, boundary - 1, 0), None);
        assert_eq!(
            p.should_rotate(&f, boundary, 0),
            Some(RotateReason::TimeOfDay)
        );
        assert_eq!(
            p.should_rotate(&f, boundary + 1, 0),
            Some(RotateReason::TimeOfDay)
        );
        // Rotated exactly at the boundary: not again until tomorrow's.
        let f = file(1, boundary);
        assert_eq!(p.should_rotate(&f, boundary + 30, 0), None);
        assert_eq!(p.should_rotate(&f, boundary + DAY_S - 1, 0), None);
        assert_eq!(
            p.should_rotate(&f, boundary + DAY_S, 0),
            Some(RotateReason::TimeOfDay)
        );
        // Rotated one second before it: the boundary still lies ahead.
        let f = file(1, boundary - 1);
        assert_eq!(
            p.should_rotate(&f, boundary, 0),
            Some(RotateReason::TimeOfDay)
        );
    }

    #[test]
    fn time_of_day_across_midnight() {
        let late = RetentionPolicy::new().rotation_time(at(23, 30));
        let f = file(1, D + 23 * HOUR); // 23:00
        assert_eq!(late.should_rotate(&f, D + 23 * HOUR + 29 * 60, 0), None);
        // 00:10 the next day: 23:30 was crossed on the way.
        assert_eq!(
            late.should_rotate(&f, D + DAY_S + 600, 0),
            Some(RotateReason::TimeOfDay)
        );
        let early = RetentionPolicy::new().rotation_time(at(0, 30));
        assert_eq!(early.should_rotate(&f, D + DAY_S + 600, 0), None);
        assert_eq!(
            early.should_rotate(&f, D + DAY_S + 1_800, 0),
            Some(RotateReason::TimeOfDay)
        );
        let midnight = RetentionPolicy::new().rotation_time(TimeOfDay::MIDNIGHT);
        assert_eq!(midnight.should_rotate(&f, D + DAY_S - 1, 0), None);
        assert_eq!(
            midnight.should_rotate(&f, D + DAY_S, 0),
            Some(RotateReason::TimeOfDay)
        );
    }

    #[test]
    fn long_downtime_fires_once() {
        let p = RetentionPolicy::new().rotation_time(TimeOfDay::MIDNIGHT);
        let mut f = file(1, D + HOUR);
        let now = D + 10 * DAY_S + HOUR; // down for ten days
        assert_eq!(p.should_rotate(&f, now, 0), Some(RotateReason::TimeOfDay));
        f.last_rotation_unix = now;
        f.created_unix = now;
        for t in (now + 1..D + 11 * DAY_S).step_by(600) {
            assert_eq!(p.should_rotate(&f, t, 0), None, "at {t}");
        }
        assert!(p.should_rotate(&f, D + 11 * DAY_S, 0).is_some());
    }

    /// Checks every ten minutes for `days`, rotating when told: one
    /// rotation per day, whatever the offset.
    fn rotations_over(p: &RetentionPolicy, start: i64, days: i64, offset: i32) -> Vec<i64> {
        let mut f = file(1, start);
        f.last_rotation_offset_secs = offset;
        let mut fired = Vec::new();
        for now in (start..start + days * DAY_S).step_by(600) {
            if p.should_rotate(&f, now, offset).is_some() {
                fired.push(now);
                f.last_rotation_unix = now;
            }
        }
        fired
    }

    #[test]
    fn daily_checks_rotate_once_a_day_in_local_time() {
        let p = RetentionPolicy::new().rotation_time(at(6, 0));
        for offset in [0, 7_200, -18_000, 50_400, -43_200, 19_800] {
            let fired = rotations_over(&p, D + 7 * HOUR, 5, offset);
            assert_eq!(fired.len(), 5, "offset {offset}: {fired:?}");
            for t in fired {
                let local = (t + i64::from(offset)).rem_euclid(DAY_S);
                assert_eq!(local, 6 * HOUR, "offset {offset}");
            }
        }
    }

    #[test]
    fn time_of_day_uses_local_time() {
        let p = RetentionPolicy::new().rotation_time(TimeOfDay::MIDNIGHT);
        // UTC+2: local midnight is 22:00 UTC the day before.
        let f = file(1, D + 21 * HOUR);
        let f = FileState {
            last_rotation_offset_secs: 7_200,
            ..f
        };
        assert_eq!(p.should_rotate(&f, D + 22 * HOUR - 1, 7_200), None);
        assert_eq!(
            p.should_rotate(&f, D + 22 * HOUR, 7_200),
            Some(RotateReason::TimeOfDay)
        );
        // UTC-5: local midnight is 05:00 UTC.
        let f = FileState {
            last_rotation_offset_secs: -18_000,
            ..file(1, D + 4 * HOUR)
        };
        assert_eq!(p.should_rotate(&f, D + 5 * HOUR - 1, -18_000), None);
        assert_eq!(
            p.should_rotate(&f, D + 5 * HOUR, -18_000),
            Some(RotateReason::TimeOfDay)
        );
        // The same instants in UTC cross no midnight.
        assert_eq!(
            p.should_rotate(&file(1, D + 4 * HOUR), D + 5 * HOUR, 0),
            None
        );
    }

    #[test]
    fn daylight_saving_changes() {
        // Autumn, UTC+2 -> UTC+1 at 03:00 local (01:00 UTC). Rotated at
        // local midnight (22:00 UTC the day before): 03:00 local, now UTC+1,
        // must not read the last rotation as 23:00 yesterday and fire again.
        let p = RetentionPolicy::new().rotation_time(TimeOfDay::MIDNIGHT);
        let f = FileState {
            last_rotation_offset_secs: 7_200,
            ..file(1, D - 2 * HOUR)
        };
        assert_eq!(p.should_rotate(&f, D + 2 * HOUR, 3_600), None);
        assert_eq!(p.should_rotate(&f, D + 23 * HOUR - 1, 3_600), None);
        assert!(p.should_rotate(&f, D + 23 * HOUR, 3_600).is_some());

        // The repeated hour: 02:30 first at UTC+2 (00:30 UTC), again at
        // UTC+1 (01:30 UTC). It fires the first time only.
        let half_past_two = RetentionPolicy::new().rotation_time(at(2, 30));
        let f = FileState {
            last_rotation_offset_secs: 7_200,
            ..file(1, D - 2 * HOUR)
        };
        assert!(half_past_two.should_rotate(&f, D + 1_800, 7_200).is_some());
        let rotated = FileState {
            last_rotation_unix: D + 1_800,
            last_rotation_offset_secs: 7_200,
            ..f
        };
        assert_eq!(
            half_past_two.should_rotate(&rotated, D + 5_400, 3_600),
            None
        );

        // Spring, UTC+1 -> UTC+2 at 02:00 local (01:00 UTC): 02:30 never
        // shows on the clock; it fires at 03:00, the end of the skipped hour.
        let f = FileState {
            last_rotation_offset_secs: 3_600,
            ..file(1, D - DAY_S + 2 * HOUR - 1_800 + 1) // 02:30 local yesterday, +1s
        };
        assert_eq!(half_past_two.should_rotate(&f, D + HOUR - 1, 3_600), None);
        assert!(half_past_two.should_rotate(&f, D + HOUR, 7_200).is_some());
    }

    #[test]
    fn a_clock_stepped_back_does_not_fire() {
        let p = RetentionPolicy::new().rotation_time(TimeOfDay::MIDNIGHT);
        let f = file(1, D + 12 * HOUR);
        assert_eq!(p.should_rotate(&f, D - 3 * DAY_S, 0), None);
    }

    #[test]
    fn any_criterion_fires_first_by_size_then_age_then_time() {
        let p = RetentionPolicy::new()
            .max_size(1000)
            .max_age(secs(6 * 3_600))
            .rotation_time(TimeOfDay::MIDNIGHT);
        let f = file(10, D + 12 * HOUR);
        assert_eq!(p.should_rotate(&f, D + 13 * HOUR, 0), None);
        assert_eq!(
            p.should_rotate(&FileState { size: 1000, ..f }, D + 13 * HOUR, 0),
            Some(RotateReason::Size)
        );
        assert_eq!(
            p.should_rotate(&f, D + 18 * HOUR, 0),
            Some(RotateReason::Age)
        );
        // Midnight comes before the age limit when the file is younger.
        let young = file(10, D + 23 * HOUR);
        assert_eq!(
            p.should_rotate(&young, D + DAY_S, 0),
            Some(RotateReason::TimeOfDay)
        );
        // All three met: size wins, then age.
        let all = FileState { size: 5000, ..f };
        assert_eq!(
            p.should_rotate(&all, D + 2 * DAY_S, 0),
            Some(RotateReason::Size)
        );
        assert_eq!(
            p.should_rotate(&f, D + 2 * DAY_S, 0),
            Some(RotateReason::Age)
        );
        assert_eq!(RotateReason::TimeOfDay.to_string(), "rotation_time");
    }

    // -- archives -----------------------------------------------------------

    #[test]
    fn archive_names_and_collisions() {
        let t = 1_700_000_000;
        assert_eq!(
            archive_name("app.log", t, &[]),
            "app.log_1700000000_archived.zst"
        );
        let mut existing = vec![archive_name("app.log", t, &[])];
        let second = archive_name("app.log", t, &existing);
        assert_eq!(second, "app.log_1700000000-1_archived.zst");
        existing.push(second);
        assert_eq!(
            archive_name("app.log", t, &existing),
            "app.log_1700000000-2_archived.zst"
        );
        assert_eq!(
            archive_name("app.log", t + 1, &existing),
            "app.log_1700000001_archived.zst"
        );
        // Other logs' archives and other files do not count.
        let others = vec![
            "app.log_1700000000_archived.zst.tmp".to_string(),
            "app.log.1_1700000000_archived.zst".to_string(),
            "other_1700000000_archived.zst".to_string(),
            "app.log.json".to_string(),
        ];
        assert_eq!(
            archive_name("app.log", t, &others),
            "app.log_1700000000_archived.zst"
        );
        // The clock stepped back: names still go forward.
        let newer = vec!["app.log_1700000100_archived.zst".to_string()];
        assert_eq!(
            archive_name("app.log", t, &newer),
            "app.log_1700000100-1_archived.zst"
        );
        assert_eq!(archive_name("x", -5, &[]), "x_0_archived.zst");
        assert_eq!(
            archive_name_with_extension("app", t, "json", &existing[..0]),
            "app_1700000000_archived.json"
        );
        assert_eq!(
            archive_stem(Path::new("logs/hyperscale.leader.log.json")),
            Some("hyperscale.leader.log")
        );
        assert_eq!(archive_stem(Path::new("data/node.wal")), Some("node"));
    }

    #[test]
    fn successive_names_sort_in_rotation_order() {
        let mut names: Vec<String> = Vec::new();
        for t in [100, 100, 100, 101, 101, 90 /* clock back */, 102] {
            let n = archive_name("s", t, &names);
            assert!(!names.contains(&n));
            names.push(n);
        }
        let parsed: Vec<(i64, u32)> = names
            .iter()
            .map(|n| parse_archive_name("s", n).unwrap())
            .collect();
        let mut sorted = parsed.clone();
        sorted.sort();
        assert_eq!(parsed, sorted, "{names:?}");
        assert_eq!(parsed[..3], [(100, 0), (100, 1), (100, 2)]);
        assert_eq!(parsed[5], (101, 2));
    }

    #[test]
    fn archive_names_parse() {
        assert_eq!(
            parse_archive_name("a", "a_1700000000_archived.zst"),
            Some((1_700_000_000, 0))
        );
        assert_eq!(
            parse_archive_name("a", "a_1700000000-12_archived.zst"),
            Some((1_700_000_000, 12))
        );
        assert_eq!(parse_archive_name("a", "a_5_archived.json"), Some((5, 0)));
        assert_eq!(
            parse_archive_name("a.b", "a.b_5_archived.zst"),
            Some((5, 0))
        );
        for bad in [
            "a_1700000000_archived.zst.tmp",
            "a_1700000000_archived.",
            "a_1700000000_archived",
            "a_1700000000-0_archived.zst",
            "a_1700000000-_archived.zst",
            "a_-5_archived.zst",
            "a_+5_archived.zst",
            "a_5-+1_archived.zst",
            "a__archived.zst",
            "a_x_archived.zst",
            "a_99999999999999999999_archived.zst",
            "a_5-99999999999_archived.zst",
            "a_1_1700000000_archived.zst", // an archive of `a_1`, not of `a`
            "a_1-2_1700000000_archived.zst",
            "b_5_archived.zst",
            "a5_archived.zst",
            "a.log",
        ] {
            assert_eq!(parse_archive_name("a", bad), None, "{bad}");
        }
        assert_eq!(
            parse_archive_name("a_1", "a_1_1700000000_archived.zst"),
            Some((1_700_000_000, 0))
        );
    }

    fn archives(list: &[(i64, u32)]) -> Vec<(String, i64, u32)> {
        list.iter()
            .map(|&(s, c)| {
                let name = if c == 0 {
                    format!("a_{s}_archived.zst")
                } else {
                    format!("a_{s}-{c}_archived.zst")
                };
                (name, s, c)
            })
            .collect()
    }

    #[test]
    fn pruning_by_count_keeps_the_newest() {
        let list = archives(&[(300, 0), (100, 0), (200, 1), (200, 0), (400, 0)]);
        let p = RetentionPolicy::new().max_archives(2);
        assert_eq!(
            p.archives_to_prune(&list, 500),
            [
                "a_100_archived.zst",
                "a_200_archived.zst",
                "a_200-1_archived.zst"
            ]
        );
        assert!(
            RetentionPolicy::new()
                .max_archives(5)
                .archives_to_prune(&list, 500)
                .is_empty()
        );
        assert!(
            RetentionPolicy::new()
                .max_archives(9)
                .archives_to_prune(&list, 500)
                .is_empty()
        );
        assert_eq!(
            RetentionPolicy::new()
                .max_archives(0)
                .archives_to_prune(&list, 500)
                .len(),
            5
        );
        assert!(
            RetentionPolicy::new()
                .archives_to_prune(&list, i64::MAX)
                .is_empty()
        );
        assert!(p.archives_to_prune(&[], 0).is_empty());
    }

    #[test]
    fn pruning_by_age_deletes_the_older() {
        let now = D;
        let list = archives(&[
            (now - 2 * HOUR, 0),
            (now - HOUR, 0),
            (now - 1_800, 0),
            (now + 60, 0),
        ]);
        let p = RetentionPolicy::new().max_archive_age(secs(3_600));
        // Exactly one hour old is not older than an hour.
        assert_eq!(p.archives_to_prune(&list, now), [list[0].0.clone()]);
        assert_eq!(
            p.archives_to_prune(&list, now + 1),
            [list[0].0.clone(), list[1].0.clone()]
        );
        // Both limits: the union, oldest first.
        let both = p.max_archives(1);
        assert_eq!(
            both.archives_to_prune(&list, now),
            [list[0].0.clone(), list[1].0.clone(), list[2].0.clone()]
        );
        // A clock far behind the archives deletes nothing by age.
        assert!(
            RetentionPolicy::new()
                .max_archive_age(secs(1))
                .archives_to_prune(&list, 0)
                .is_empty()
        );
    }

    // -- compression --------------------------------------------------------

    fn sample(len: usize) -> Vec<u8> {
        const LINE: &[u8] = b"{\"message\":\"job done\",\"level\":\"INFO\"}\n";
        // Half compressible text, half noise.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|i| {
                if (i / 4096) % 2 == 0 {
                    LINE[i % LINE.len()]
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn compresses_to_exactly_the_original_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [0usize, 1, 1 << 20].into_iter().enumerate() {
            let data = sample(len);
            let src = dir.path().join(format!("app{i}.log.json"));
            std::fs::write(&src, &data).unwrap();
            let name = archive_name(&format!("app{i}.log"), 1_700_000_000, &[]);
            let out = compress_archive(&StdFs, &src, dir.path(), &name, 3, 0o640).unwrap();
            assert_eq!(out, dir.path().join(&name));
            let back = zstd::stream::decode_all(std::fs::File::open(&out).unwrap()).unwrap();
            assert!(back == data, "round trip of {len} bytes");
            assert!(!dir.path().join(format!("{name}.tmp")).exists());
            assert!(src.exists(), "the caller deletes the source");
        }
    }

    #[test]
    fn never_overwrites_an_archive_and_replaces_a_stale_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.log");
        std::fs::write(&src, b"hello").unwrap();
        std::fs::write(dir.path().join("a_1_archived.zst"), b"keep").unwrap();
        let e =
            compress_archive(&StdFs, &src, dir.path(), "a_1_archived.zst", 3, 0o640).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(
            std::fs::read(dir.path().join("a_1_archived.zst")).unwrap(),
            b"keep"
        );
        std::fs::write(dir.path().join("a_2_archived.zst.tmp"), b"stale garbage").unwrap();
        let out = compress_archive(&StdFs, &src, dir.path(), "a_2_archived.zst", 3, 0o640).unwrap();
        assert_eq!(
            zstd::stream::decode_all(std::fs::File::open(out).unwrap()).unwrap(),
            b"hello"
        );
        assert!(compress_archive(&StdFs, &src, dir.path(), "../x.zst", 3, 0o640).is_err());
        assert!(
            compress_archive(
                &StdFs,
                &dir.path().join("missing"),
                dir.path(),
                "m.zst",
                3,
                0o640
            )
            .is_err()
        );
    }

    #[test]
    fn an_archive_survives_a_power_cut_once_returned() {
        let fs = SimFs::new();
        let data = sample(300_000);
        let src = Path::new("/d/app.log.json");
        fs.put(src, &data);
        let out = compress_archive(
            &fs,
            src,
            Path::new("/d"),
            "app.log_7_archived.zst",
            3,
            0o640,
        )
        .unwrap();
        for seed in 0..4 {
            let after = fs.power_cut(seed, true);
            let bytes = after.contents(&out).expect("the archive's name is durable");
            assert!(zstd::stream::decode_all(&bytes[..]).unwrap() == data);
            assert_eq!(after.contents(src).as_deref(), Some(&data[..]));
            assert!(!after.exists(Path::new("/d/app.log_7_archived.zst.tmp")));
        }
    }

    #[test]
    fn failures_leave_the_source_and_no_partial_archive() {
        for op in [Op::Write, Op::Sync, Op::Rename, Op::Open] {
            let fs = SimFs::new();
            let src = Path::new("/d/a.log");
            fs.put(src, &sample(100_000));
            fs.fail(op, 1, true, Fault::Errno(5));
            let e = compress_archive(&fs, src, Path::new("/d"), "a_1_archived.zst", 3, 0o640)
                .unwrap_err();
            assert!(e.io_kind().is_some(), "{op:?}: {e}");
            fs.heal();
            assert_eq!(fs.list(), [PathBuf::from("/d/a.log")], "{op:?}");
        }
        // A short write is retried, not an error.
        let fs = SimFs::new();
        let data = sample(100_000);
        fs.put(Path::new("/d/a.log"), &data);
        fs.fail(Op::Write, 1, false, Fault::ShortWrite(10));
        let out = compress_archive(
            &fs,
            Path::new("/d/a.log"),
            Path::new("/d"),
            "a.zst",
            3,
            0o640,
        )
        .unwrap();
        assert!(zstd::stream::decode_all(&fs.contents(&out).unwrap()[..]).unwrap() == data);
    }

    // -- properties ---------------------------------------------------------

    /// Brute force: is there a day whose local `at` lies in (last, now]?
    fn crossed_by_search(at: TimeOfDay, last_local: i64, now_local: i64) -> bool {
        let t = i64::from(at.seconds_from_midnight());
        let first_day = last_local.div_euclid(DAY_S) - 1;
        let last_day = now_local.div_euclid(DAY_S) + 1;
        (first_day..=last_day).any(|d| {
            let b = d * DAY_S + t;
            last_local < b && b <= now_local
        })
    }

    proptest! {
        #[test]
        fn sizes_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
        }

        #[test]
        fn round_sizes_round_trip(k in 0u64..1 << 20, shift in prop::sample::select(vec![0u32, 10, 20, 30, 40])) {
            let n = k << shift;
            prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
            prop_assert_eq!(parse_size(&format_size(n).to_lowercase()), Ok(n));
        }

        #[test]
        fn ages_round_trip(s in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(s, nanos);
            prop_assert_eq!(parse_age(&format_age(d)), Ok(d));
            let whole = Duration::from_secs(s);
            prop_assert_eq!(parse_age(&format_age(whole)), Ok(whole));
        }

        #[test]
        fn times_round_trip(h in 0u8..24, m in 0u8..60) {
            let t = TimeOfDay::new(h, m).unwrap();
            prop_assert_eq!(parse_time_of_day(&t.to_string()), Ok(t));
        }

        #[test]
        fn parsers_never_panic(s in any::<String>()) {
            let _ = parse_size(&s);
            let _ = parse_age(&s);
            let _ = parse_time_of_day(&s);
            let _ = s.parse::<Compression>();
            let _ = parse_archive_name("a", &s);
            let _ = RetentionPolicy::from_map([(s.as_str(), s.as_str())]);
            for k in KEYS {
                let _ = RetentionPolicy::from_map([(*k, s.as_str())]);
            }
        }

        #[test]
        fn near_miss_inputs_never_panic(s in "[-+ .0-9]{0,40}[ a-zA-Z:.]{0,4}[0-9]{0,3}") {
            let _ = parse_size(&s);
            let _ = parse_age(&s);
            let _ = parse_time_of_day(&s);
            let _ = s.parse::<Compression>();
            if let Ok(n) = parse_size(&s) {
                prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
            }
        }

        #[test]
        fn time_of_day_fires_iff_a_boundary_was_crossed(
            h in 0u8..24, m in 0u8..60,
            last in -10 * DAY_S..10 * DAY_S,
            delta in -3 * DAY_S..5 * DAY_S,
            off_last in -50_400i32..=50_400, off_now in -50_400i32..=50_400,
        ) {
            let at = TimeOfDay::new(h, m).unwrap();
            let p = RetentionPolicy::new().rotation_time(at);
            let f = FileState { size: 1, created_unix: last, last_rotation_unix: last, last_rotation_offset_secs: off_last };
            let now = last + delta;
            let fired = p.should_rotate(&f, now, off_now).is_some();
            let expected = crossed_by_search(at, last + i64::from(off_last), now + i64::from(off_now));
            prop_assert_eq!(fired, expected);
        }

        #[test]
        fn decisions_never_panic(
            size in any::<u64>(), created in any::<i64>(), last in any::<i64>(),
            off in any::<i32>(), now in any::<i64>(), max in any::<u64>(),
        ) {
            let p = RetentionPolicy::new()
                .max_size(max)
                .max_age(Duration::from_secs(max))
                .rotation_time(TimeOfDay::MIDNIGHT)
                .max_archives(3)
                .max_archive_age(Duration::from_secs(max));
            let f = FileState { size, created_unix: created, last_rotation_unix: last, last_rotation_offset_secs: off };
            let _ = p.should_rotate(&f, now, off);
            let list = vec![("a".to_string(), created, 0), ("b".to_string(), last, 1), ("c".to_string(), now, 2)];
            let pruned = p.archives_to_prune(&list, now);
            prop_assert!(pruned.len() <= 3);
            let _ = archive_name("a", now, &["a_9223372036854775807-4294967295_archived.zst".to_string()]);
        }
    }

    #[test]
    fn local_offset_is_sane_from_any_thread() {
        let here = local_offset_secs();
        assert!((-18 * 3_600..=18 * 3_600).contains(&here));
        let from_threads: Vec<i32> = (0..4)
            .map(|_| std::thread::spawn(local_offset_secs))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(
            from_threads
                .iter()
                .all(|o| (-18 * 3_600..=18 * 3_600).contains(o))
        );
        assert!((-18 * 3_600..=18 * 3_600).contains(&local_offset_secs_at(i64::MAX)));
        assert!((-18 * 3_600..=18 * 3_600).contains(&local_offset_secs_at(i64::MIN)));
    }
}
