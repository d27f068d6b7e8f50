//! Severity levels, ordered from `Trace` to `Fatal`.
//!
//! They serialize as the reference's upper-case names (`"INFO"`) and parse
//! case-insensitively, so `"info"`, `"Info"` and `"INFO"` are one level.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// How severe an entry is. `Ord` follows severity: `Trace < Debug < ... < Fatal`.
///
/// ```
/// use hyperlog::LogLevel;
/// assert!(LogLevel::Warn > LogLevel::Info);
/// assert_eq!("warn".parse::<LogLevel>().unwrap(), LogLevel::Warn);
/// assert_eq!(LogLevel::Critical.to_string(), "CRITICAL");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// Very fine-grained tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (the default minimum level of a context).
    #[default]
    Info,
    /// Something unexpected that the program handled.
    Warn,
    /// An operation failed.
    Error,
    /// A component failed.
    Critical,
    /// The program cannot go on.
    Fatal,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 7] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Fatal,
    ];

    /// The upper-case name written to files (`"INFO"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
            LogLevel::Fatal => "FATAL",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(t))
            .or_else(|| t.eq_ignore_ascii_case("warning").then_some(LogLevel::Warn))
            .ok_or_else(|| Error::UnknownLevel(s.to_string()))
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LogLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log level name such as \"INFO\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LogLevel, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_severity() {
        let mut sorted = LogLevel::ALL;
        sorted.sort();
        assert_eq!(sorted, LogLevel::ALL);
        assert!(LogLevel::Trace < LogLevel::Debug && LogLevel::Critical < LogLevel::Fatal);
    }

    #[test]
    fn parse_is_case_insensitive_and_rejects_unknown() {
        for l in LogLevel::ALL {
            assert_eq!(l.as_str().to_lowercase().parse::<LogLevel>().unwrap(), l);
            assert_eq!(l.as_str().parse::<LogLevel>().unwrap(), l);
        }
        let err = "verbose".parse::<LogLevel>().unwrap_err();
        assert!(err.to_string().contains("\"verbose\""), "{err}");
    }

    #[test]
    fn serde_uses_upper_case_names() {
        assert_eq!(serde_json::to_string(&LogLevel::Warn).unwrap(), "\"WARN\"");
        let l: LogLevel = serde_json::from_str("\"critical\"").unwrap();
        assert_eq!(l, LogLevel::Critical);
        assert!(serde_json::from_str::<LogLevel>("\"nope\"").is_err());
    }
}
