//! The on-disk record formats, as pure functions: no file handles here.
//!
//! **JSON lines** (the default): one [`Log`](crate::Log) object per line,
//! fields in the reference's order, `"lsn":null` when there is none.
//!
//! **Binary** (REFERENCE.md §1, AD-39 §3.1), integers little-endian:
//!
//! ```text
//! +-----------+------------+-----------+------------------------+
//! | crc: u32  | length: u32| lsn: u64  | payload: length bytes  |
//! +-----------+------------+-----------+------------------------+
//! ```
//!
//! `length` counts the payload only; `crc` is CRC-32 (IEEE, as zlib) over
//! `length | lsn | payload`; the payload is the JSON of the Log without a
//! newline; `lsn` is 0 when LSNs are off.
//!
//! Records are built in two halves. A producer serializes the envelope up to
//! the LSN (`encode_envelope`) on its own thread; the log's writer, which
//! hands out LSNs in file order, finishes it (`finish_record`). So the
//! expensive part runs in parallel and the LSN order equals the file order.

use serde::Serialize;

use crate::Lsn;
use crate::entry::CallSite;

/// The length of a binary record header.
pub const HEADER_LEN: usize = 16;

/// The default `max_record_size`: 16 MiB.
pub const DEFAULT_MAX_RECORD_SIZE: u64 = 16 * 1024 * 1024;

/// How records are laid out in a file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// 16-byte header with CRC-32 and LSN, then the JSON payload.
    Binary,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "binary" | "bin" => Ok(LogFormat::Binary),
            _ => Err(format!("unknown log format {s:?}: expected json or binary")),
        }
    }
}

/// Writes the envelope of a Log up to and including `"lsn":`, stamped with
/// the current UTC time.
pub(crate) fn encode_envelope<E: crate::Entry + ?Sized>(
    entry: &E,
    site: &CallSite,
    thread_id: u64,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let meta = Meta {
        file: site.file.unwrap_or_default(),
        function: site.function.unwrap_or_default(),
        line: site.line.unwrap_or_default(),
        thread_id,
        timestamp: None,
    };
    write_envelope(|out| entry.write_json(out), &meta, out)
}

/// Writes a compact envelope up to and including `"lsn":`: the entry
/// alone, without call-site metadata (`ContextOptions::compact`).
pub(crate) fn encode_compact_envelope<E: crate::Entry + ?Sized>(
    entry: &E,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"entry\":");
    entry.write_json(out)?;
    out.extend_from_slice(b",\"lsn\":");
    Ok(())
}

/// The call-site metadata of one envelope, as it is written.
///
/// Every field is a plain string or integer: the reference's `Log` model
/// requires `filename`, `function_name`, `line_number`, `thread_id` and
/// `timestamp` and refuses a whole line where any of them is null, so what is
/// unknown is written as an empty string or 0, never as `null`.
struct Meta<'a> {
    file: &'a str,
    function: &'a str,
    line: u32,
    thread_id: u64,
    /// `None` means now.
    timestamp: Option<&'a str>,
}

/// The envelope writer shared by the log path and [`encode_log`]: the
/// entry's JSON comes from `entry`, which appends it to `out`.
fn write_envelope(
    entry: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    meta: &Meta<'_>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"entry\":");
    entry(out)?;
    out.extend_from_slice(b",\"filename\":");
    write_json_str(out, meta.file);
    out.extend_from_slice(b",\"function_name\":");
    write_json_str(out, meta.function);
    out.extend_from_slice(b",\"line_number\":");
    out.extend_from_slice(itoa::Buffer::new().format(meta.line).as_bytes());
    out.extend_from_slice(b",\"thread_id\":");
    out.extend_from_slice(itoa::Buffer::new().format(meta.thread_id).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    match meta.timestamp {
        None => {
            out.push(b'"');
            crate::entry::write_timestamp(out);
            out.push(b'"');
        }
        Some(t) => write_json_str(out, t),
    }
    out.extend_from_slice(b",\"lsn\":");
    Ok(())
}

/// Appends `s` to `out` as a JSON string: exactly the bytes
/// `serde_json::to_writer(out, s)` writes. A string with nothing to escape
/// (no `"`, `\\` or control character) is copied as it is, checked 16 bytes
/// at a time; any other goes through serde_json.
///
/// ```
/// let mut out = Vec::new();
/// hyperlog::format::write_json_str(&mut out, "a \"b\"\n");
/// assert_eq!(out, serde_json::to_vec("a \"b\"\n").unwrap());
/// ```
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Without a short-circuit inside a chunk, so that the check compiles to
    // vector compares.
    fn plain(chunk: &[u8]) -> bool {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b >= 0x20 && b != b'"' && b != b'\\'))
    }
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(16);
    let clean = chunks.all(plain) && plain(chunks.remainder());
    if clean {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail, and a &str always serializes.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Encodes a complete [`Log`](crate::Log) as one record of `format`, exactly
/// as a context writes it (a JSON line with its newline, or a binary record).
///
/// Metadata the `Log` lacks is written as the reference's readers require it:
/// an absent `filename`, `function_name` or `timestamp` as `""`, an absent
/// `line_number` or `thread_id` as `0`. Only `lsn` may be `null`.
///
/// ```
/// use hyperlog::{format::encode_log, Log, LogFormat, Message};
/// let log = Log { entry: Message::info("hi"), filename: None, function_name: None,
///                 line_number: None, thread_id: Some(7), timestamp: None, lsn: None };
/// let mut out = Vec::new();
/// encode_log(LogFormat::Json, &log, &mut out).unwrap();
/// assert_eq!(out, br#"{"entry":{"message":"hi","tags":[],"level":"INFO"},"filename":"","function_name":"","line_number":0,"thread_id":7,"timestamp":"","lsn":null}
/// "#);
/// ```
pub fn encode_log<T: Serialize>(
    format: LogFormat,
    log: &crate::Log<T>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let mut env = Vec::with_capacity(256);
    let meta = Meta {
        file: log.filename.as_deref().unwrap_or_default(),
        function: log.function_name.as_deref().unwrap_or_default(),
        line: log.line_number.unwrap_or_default(),
        thread_id: log.thread_id.unwrap_or_default(),
        timestamp: Some(log.timestamp.as_deref().unwrap_or_default()),
    };
    write_envelope(
        |out| serde_json::to_writer(out, &log.entry),
        &meta,
        &mut env,
    )?;
    finish_record(format, &env, log.lsn, out);
    Ok(())
}

/// The payload length of the record [`finish_record`] would build.
pub(crate) fn payload_len(envelope: &[u8], lsn: Option<Lsn>) -> usize {
    let tail = match lsn {
        Some(l) => itoa::Buffer::new().format(l.get()).len(),
        None => 4,
    };
    envelope.len() + tail + 1
}

/// Appends a complete record to `out`: the envelope, the LSN, and the
/// framing of `format`.
pub(crate) fn finish_record(
    format: LogFormat,
    envelope: &[u8],
    lsn: Option<Lsn>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    if format == LogFormat::Binary {
        out.extend_from_slice(&[0u8; HEADER_LEN]);
    }
    out.extend_from_slice(envelope);
    match lsn {
        Some(l) => out.extend_from_slice(itoa::Buffer::new().format(l.get()).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    match format {
        LogFormat::Json => out.push(b'\n'),
        LogFormat::Binary => {
            let len = (out.len() - start - HEADER_LEN) as u32;
            let raw_lsn = lsn.map_or(0, Lsn::get);
            let rec = &mut out[start..];
            rec[4..8].copy_from_slice(&len.to_le_bytes());
            rec[8..16].copy_from_slice(&raw_lsn.to_le_bytes());
            let crc = crc32fast::hash(&rec[4..]);
            rec[0..4].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Encodes a whole binary record around an existing payload.
pub fn encode_binary(payload: &[u8], lsn: Option<Lsn>, out: &mut Vec<u8>) {
    let raw_lsn = lsn.map_or(0, Lsn::get);
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&raw_lsn.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A parsed binary record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The stored checksum.
    pub crc: u32,
    /// The payload length.
    pub len: u32,
    /// The raw LSN (0 when LSNs are off).
    pub lsn: u64,
}

impl Header {
    /// Parses the first 16 bytes of `b` (which must hold at least 16).
    pub fn parse(b: &[u8]) -> Header {
        let mut crc = [0u8; 4];
        let mut len = [0u8; 4];
        let mut lsn = [0u8; 8];
        crc.copy_from_slice(&b[0..4]);
        len.copy_from_slice(&b[4..8]);
        lsn.copy_from_slice(&b[8..16]);
        Header {
            crc: u32::from_le_bytes(crc),
            len: u32::from_le_bytes(len),
            lsn: u64::from_le_bytes(lsn),
        }
    }

    /// The LSN, `None` when 0.
    pub fn lsn(&self) -> Option<Lsn> {
        (self.lsn != 0).then_some(Lsn::new(self.lsn))
    }
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Fewer than 16 bytes remain for a header.
    TruncatedHeader {
        /// Bytes that remain.
        remaining: u64,
    },
    /// The length field is 0 or larger than `max_record_size`.
    BadLength {
        /// The length field.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// The record runs past the end of the file.
    PastEnd {
        /// The length field.
        len: u64,
        /// Bytes that remain after the header.
        remaining: u64,
    },
    /// The stored CRC does not match the bytes.
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// A JSON line has no terminating newline.
    NoNewline,
    /// A JSON line is longer than `max_record_size`.
    LineTooLong {
        /// The limit in force.
        max: u64,
    },
    /// A JSON line is not a JSON object.
    BadJson(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::TruncatedHeader { remaining } => {
                write!(f, "a record header is cut short ({remaining} of 16 bytes)")
            }
            Damage::BadLength { len, max } => {
                write!(
                    f,
                    "the length field {len} is not in 1..={max} (max_record_size)"
                )
            }
            Damage::PastEnd { len, remaining } => write!(
                f,
                "a record of {len} bytes runs past the end of the file ({remaining} bytes remain)"
            ),
            Damage::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Damage::NoNewline => f.write_str("the last line has no newline (a torn write)"),
            Damage::LineTooLong { max } => {
                write!(f, "a line is longer than max_record_size ({max} bytes)")
            }
            Damage::BadJson(e) => write!(f, "a line is not valid JSON: {e}"),
        }
    }
}

/// Checks the binary record at the start of `b`, where `b` holds every byte
/// from the record's offset to the end of the file or at least
/// `16 + max_record_size` of them; `file_remaining` is how many bytes the file
/// has from the record's offset. Returns the header when the record is intact.
pub fn check_binary(b: &[u8], file_remaining: u64, max_record_size: u64) -> Result<Header, Damage> {
    if file_remaining < HEADER_LEN as u64 || b.len() < HEADER_LEN {
        return Err(Damage::TruncatedHeader {
            remaining: file_remaining,
        });
    }
    let h = Header::parse(b);
    let len = h.len as u64;
    if len == 0 || len > max_record_size {
        return Err(Damage::BadLength {
            len,
            max: max_record_size,
        });
    }
    let remaining = file_remaining - HEADER_LEN as u64;
    if len > remaining || b.len() < HEADER_LEN + h.len as usize {
        return Err(Damage::PastEnd { len, remaining });
    }
    let computed = crc32fast::hash(&b[4..HEADER_LEN + h.len as usize]);
    if computed != h.crc {
        return Err(Damage::Checksum {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Checks that a JSON line (without its newline) is syntactically valid JSON.
pub fn check_json_line(line: &[u8]) -> Result<(), Damage> {
    serde_json::from_slice::<serde::de::IgnoredAny>(line)
        .map(|_| ())
        .map_err(|e| Damage::BadJson(e.to_string()))
}

/// Reads the `lsn` of a JSON line cheaply when it ends with `"lsn":N}` (as
/// every line hyperlog and the reference write does); `None` otherwise.
pub fn json_tail_lsn(line: &[u8]) -> Option<Option<Lsn>> {
    let body = line.strip_suffix(b"}")?;
    if body.ends_with(b"\"lsn\":null") {
        return Some(None);
    }
    let digits = body.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let (head, num) = body.split_at(body.len() - digits);
    if !head.ends_with(b"\"lsn\":") {
        return None;
    }
    std::str::from_utf8(num)
        .ok()?
        .parse::<u64>()
        .ok()
        .map(|v| Some(Lsn::new(v)))
}

/// Guesses the format of a file from its first bytes: binary when they hold
/// an intact binary record, JSON when they start with `{`.
pub fn detect_format(head: &[u8], file_len: u64, max_record_size: u64) -> Option<LogFormat> {
    if head.is_empty() {
        return None;
    }
    if check_binary(head, file_len, max_record_size).is_ok() {
        return Some(LogFormat::Binary);
    }
    let first = head.iter().find(|c| !c.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Some(LogFormat::Json);
    }
    // Damaged or partial binary record: a binary header's length field is
    // small, so its high bytes are zero; JSON text never holds NUL bytes.
    head.contains(&0).then_some(LogFormat::Binary)
}

/// The format of a file whose first record is complete and intact: a binary
/// record with a matching checksum, or a first line that is a JSON object
/// ending in a newline. `None` when the first bytes prove neither (an empty
/// file, or a first record cut short by a crash).
pub fn detect_complete(head: &[u8], file_len: u64, max_record_size: u64) -> Option<LogFormat> {
    if check_binary(head, file_len, max_record_size).is_ok() {
        return Some(LogFormat::Binary);
    }
    let nl = head.iter().position(|&c| c == b'\n')?;
    let line = &head[..nl];
    (line.trim_ascii_start().starts_with(b"{") && check_json_line(line).is_ok())
        .then_some(LogFormat::Json)
}

/// The first four bytes of a zstd frame (`0xFD2FB528` little-endian): how a
/// rotated log's archive (`{stem}_{secs}_archived.zst`) is recognized, by its
/// content rather than its name.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Whether `head`, the first bytes of a file, start a zstd frame.
pub fn is_zstd(head: &[u8]) -> bool {
    head.starts_with(&ZSTD_MAGIC)
}

/// The bytes [`plausible_start`] looks at: one disk sector.
pub const START_LEN: usize = 512;

/// Whether `head`, the first bytes of a file (its first [`START_LEN`] bytes,
/// or all of it when shorter), could start a log even when its first record
/// is cut short: the first byte that is neither whitespace nor NUL is `{` (a
/// JSON line; none at all is an empty or zero-filled start), or a binary
/// record header whose length field is in `1..=max_record_size` followed by
/// a payload that starts with `{` or was never written (zeros to the end of
/// the sector: a write cut short after the header, in preallocated space).
/// A PNG, a tarball or random bytes fail this with near certainty; a crash
/// that cut the first record short leaves a prefix of a real one, which
/// passes.
pub fn plausible_start(head: &[u8], max_record_size: u64) -> bool {
    let head = &head[..head.len().min(START_LEN)];
    match head.iter().find(|c| !c.is_ascii_whitespace() && **c != 0) {
        None | Some(b'{') => return true,
        Some(_) => {}
    }
    if head.len() < 8 {
        // The length field is not all there: any prefix of a header.
        return true;
    }
    let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    let payload = head.get(HEADER_LEN..).unwrap_or_default();
    (1..=max_record_size).contains(&len)
        && (payload.first().is_none_or(|&c| c == b'{') || payload.iter().all(|&c| c == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, Message};

    fn envelope(m: &Message) -> Vec<u8> {
        let mut v = Vec::new();
        let site = CallSite {
            file: Some("a.rs"),
            function: Some("f"),
            line: Some(3),
        };
        encode_envelope(m, &site, 7, &mut v).unwrap();
        v
    }

    #[test]
    fn json_record_decodes_back() {
        let m = Message::info("hi \"there\"\n");
        let env = envelope(&m);
        let mut out = Vec::new();
        finish_record(LogFormat::Json, &env, Some(Lsn::new(99)), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let log: Log<Message> = serde_json::from_slice(&out[..out.len() - 1]).unwrap();
        assert_eq!(log.entry, m);
        assert_eq!(log.lsn, Some(Lsn::new(99)));
        assert_eq!(log.filename.as_deref(), Some("a.rs"));
        assert_eq!(
            json_tail_lsn(&out[..out.len() - 1]),
            Some(Some(Lsn::new(99)))
        );
    }

    #[test]
    fn binary_record_checks_and_rejects_damage() {
        let env = envelope(&Message::info("x"));
        let mut out = Vec::new();
        finish_record(LogFormat::Binary, &env, None, &mut out);
        assert_eq!(out.len(), HEADER_LEN + payload_len(&env, None));
        let h = check_binary(&out, out.len() as u64, DEFAULT_MAX_RECORD_SIZE).unwrap();
        assert_eq!(h.lsn, 0);
        assert_eq!(h.len as usize, out.len() - HEADER_LEN);
        let payload = &out[HEADER_LEN..];
        assert_eq!(json_tail_lsn(payload), Some(None));
        // CRC over a re-encoded payload matches.
        let mut again = Vec::new();
        encode_binary(payload, None, &mut again);
        assert_eq!(again, out);
        // Every flipped bit is detected.
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                check_binary(&bad, bad.len() as u64, DEFAULT_MAX_RECORD_SIZE).is_err(),
                "bit {i}"
            );
        }
        // A huge length is damage, not an allocation.
        let mut big = out.clone();
        big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            check_binary(&big, big.len() as u64, DEFAULT_MAX_RECORD_SIZE),
            Err(Damage::BadLength { .. })
        ));
        assert!(matches!(
            check_binary(&out[..10], 10, DEFAULT_MAX_RECORD_SIZE),
            Err(Damage::TruncatedHeader { remaining: 10 })
        ));
    }

    #[test]
    fn detects_formats() {
        let env = envelope(&Message::info("x"));
        let mut bin = Vec::new();
        finish_record(LogFormat::Binary, &env, None, &mut bin);
        let n = bin.len() as u64;
        assert_eq!(
            detect_format(&bin, n, DEFAULT_MAX_RECORD_SIZE),
            Some(LogFormat::Binary)
        );
        assert_eq!(detect_format(b"{\"a\":1}\n", 8, 100), Some(LogFormat::Json));
        assert_eq!(detect_format(b"", 0, 100), None);
        assert_eq!(detect_format(b"hello", 5, 100), None);
        assert_eq!(
            detect_complete(&bin, n, DEFAULT_MAX_RECORD_SIZE),
            Some(LogFormat::Binary)
        );
        assert_eq!(detect_complete(&bin[..5], 5, DEFAULT_MAX_RECORD_SIZE), None);
        assert_eq!(
            detect_complete(b"{\"a\":1}\n", 8, 100),
            Some(LogFormat::Json)
        );
        assert_eq!(detect_complete(b"{\"a\":1", 7, 100), None);
    }

    #[test]
    fn plausible_starts() {
        let env = envelope(&Message::info("x"));
        let mut bin = Vec::new();
        finish_record(LogFormat::Binary, &env, None, &mut bin);
        let max = DEFAULT_MAX_RECORD_SIZE;
        // Every prefix of a record of either format is plausible.
        let mut json = Vec::new();
        finish_record(LogFormat::Json, &env, None, &mut json);
        for n in 0..=bin.len() {
            assert!(plausible_start(&bin[..n], max), "binary prefix {n}");
        }
        for n in 0..=json.len() {
            assert!(plausible_start(&json[..n], max), "json prefix {n}");
        }
        assert!(plausible_start(&[0u8; 64], max));
        assert!(plausible_start(b"\n\n  {", max));
        // Files that are not logs.
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06";
        assert!(!plausible_start(png, max));
        // Tarballs: a member name whose 5th to 8th bytes read as a small
        // length, then NUL padding and the member's mode, owner, ...
        for name in [&b"hello"[..], b"logs/", b"a/b.txt"] {
            let mut tar = name.to_vec();
            tar.resize(100, 0);
            tar.extend_from_slice(b"0000644\x000001750\x000001750\x00");
            tar.resize(257, 0);
            tar.extend_from_slice(b"ustar\x0000");
            tar.resize(512, 0);
            assert!(!plausible_start(&tar, max), "{name:?}");
        }
        // A header cut short after 5 bytes, then preallocated zeros.
        let mut torn = bin[..5].to_vec();
        torn.resize(4096, 0);
        assert!(plausible_start(&torn, max));
        let mut torn = bin[..16].to_vec();
        torn.resize(4096, 0);
        assert!(plausible_start(&torn, max));
        assert!(!plausible_start(b"#!/bin/sh\necho hi\n", max));
        assert!(is_zstd(&[0x28, 0xB5, 0x2F, 0xFD, 0]));
        assert!(!is_zstd(&[0x28, 0xB5, 0x2F]));
    }

    mod hand_written_json {
        use proptest::prelude::*;

        use crate::{Entry, LogLevel, Message};

        /// Strings rich in what JSON escapes: quotes, backslashes, every
        /// control character, DEL and non-ASCII, at any length around the
        /// 16-byte chunks.
        fn tricky() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('😀'),
                    (0u8..0x20).prop_map(char::from),
                    (0x20u8..0x7f).prop_map(char::from),
                    any::<char>(),
                ],
                0..70,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        proptest! {
            #[test]
            fn strings_are_written_as_serde_json_writes_them(s in tricky()) {
                let mut out = b"x".to_vec();
                super::write_json_str(&mut out, &s);
                let mut want = b"x".to_vec();
                serde_json::to_writer(&mut want, &s).unwrap();
                prop_assert_eq!(out, want);
            }

            #[test]
            fn a_message_is_written_as_serde_writes_it(
                message in proptest::option::of(tricky()),
                tags in proptest::collection::btree_set(tricky(), 0..4),
                level in proptest::sample::select(LogLevel::ALL.to_vec()),
            ) {
                let m = Message { message, tags, level };
                let mut out = Vec::new();
                m.write_json(&mut out).unwrap();
                prop_assert_eq!(out, serde_json::to_vec(&m).unwrap());
            }
        }
    }
}
