//! Records from any [`std::io::Read`], forward only: above all the zstd
//! archives a data-plane log is rotated into (`{stem}_{secs}_archived.zst`,
//! see [`crate::retention`]).
//!
//! [`read_archive`] decompresses an archive while it reads it: the memory it
//! holds is zstd's window and the record being read, never the whole
//! archive. [`StreamRecords::new`] reads any other stream of JSON lines or
//! binary records. Records are checked by the same pure functions as files
//! ([`crate::format`]) and damage is met with the same [`RecoveryMode`]s,
//! with three differences:
//!
//! - offsets count bytes of the stream: in an archive, **decompressed**
//!   bytes (errors say so);
//! - a stream has no preallocated space: zeros at its end are damage;
//! - a stream that cannot be read to its end (a zstd archive truncated or
//!   damaged) is damage where reading stopped: an error in `TolerateTail`
//!   and `AbsoluteConsistency`, a last damaged range in `SkipCorrupted`.
//!
//! ```
//! use hyperlog::{format::{encode_log, LogFormat}, Log, Message, ReadOptions};
//! let log = Log { entry: Message::info("hi"), filename: None, function_name: None,
//!                 line_number: None, thread_id: None, timestamp: None, lsn: None };
//! let mut lines = Vec::new();
//! encode_log(LogFormat::Json, &log, &mut lines)?;
//! encode_log(LogFormat::Json, &log, &mut lines)?;
//! let archive = zstd::encode_all(&lines[..], 3)?;
//! let records = hyperlog::stream::StreamRecords::new(&archive[..], "mem.zst", 0, &ReadOptions::new());
//! // Not decompressed: the stream is the compressed bytes, which are no log.
//! assert!(records.collect::<Result<Vec<_>, _>>().is_err());
//! let decoder = zstd::stream::read::Decoder::new(&archive[..])?;
//! let records = hyperlog::stream::StreamRecords::new(decoder, "mem.zst", 0, &ReadOptions::new());
//! assert_eq!(records.collect::<Result<Vec<_>, _>>()?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::format::{
    self, Damage, HEADER_LEN, LogFormat, check_binary, check_json_line, detect_complete,
    detect_format, is_zstd, json_tail_lsn,
};
use crate::fs::ReadableFile;
use crate::reader::{RawEntry, ReadOptions, TornTail, json_lsn};
use crate::{Error, Lsn, RecoveryMode};

/// How much is read from the source at a time.
const CHUNK: usize = 256 * 1024;

/// The most of a stream's start read to detect its format.
const HEAD_MAX: u64 = 4 << 20;

fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Json => "JSON lines",
        LogFormat::Binary => "binary records",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|c| format!("{c:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks what the first bytes of a file say before any record is read: a
/// zstd archive is not a plain log, and with a `forced` format a complete,
/// intact first record of the other format is a mismatch. `file_len` may be
/// `u64::MAX` for a stream of unknown length.
pub(crate) fn check_head(
    path: &Path,
    head: &[u8],
    file_len: u64,
    max: u64,
    forced: Option<LogFormat>,
) -> Result<(), Error> {
    let complete = detect_complete(head, file_len, max);
    if complete.is_none() && is_zstd(head) {
        return Err(Error::NotALog {
            path: path.to_path_buf(),
            expected: "a plain log",
            reason: format!(
                "it is a zstd archive (it starts with the zstd magic bytes {}); read it with hyperlog::stream::read_archive (or `hyperlog cat`)",
                hex(&format::ZSTD_MAGIC)
            ),
        });
    }
    if let (Some(want), Some(found)) = (forced, complete)
        && want != found
    {
        let what = match found {
            LogFormat::Json => "its first line is an intact JSON object",
            LogFormat::Binary => "its first record is intact, checksum and all",
        };
        return Err(Error::NotALog {
            path: path.to_path_buf(),
            expected: format_name(want),
            reason: format!(
                "it is a log of {} ({what}); read it as {} or let the format be detected",
                format_name(found),
                format_name(found)
            ),
        });
    }
    Ok(())
}

/// The error for a file that holds no intact record and whose first bytes
/// (`first`) start neither a JSON line nor a binary record header.
pub(crate) fn not_a_log(path: &Path, first: &[u8]) -> Error {
    Error::NotALog {
        path: path.to_path_buf(),
        expected: "a log",
        reason: format!(
            "it holds no intact record, and its first bytes ({}) start neither a JSON line nor a binary record header",
            hex(first)
        ),
    }
}

/// One damaged range of a stream, with what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDamage {
    /// Where the damage starts (a stream offset: decompressed bytes in an
    /// archive).
    pub start: u64,
    /// Where the next intact record starts, or where the stream ended.
    pub end: u64,
    /// `true`: a torn tail (no intact record after it, and the stream read
    /// to its end). `false`: damage followed by an intact record, or a
    /// stream that could not be read to its end.
    pub torn: bool,
    /// What is wrong with the bytes at `start`.
    pub reason: String,
}

/// A forward-only iterator over the intact records of a stream (see the
/// [module docs](self)). Yields `Err` once and then ends when it meets damage
/// the recovery mode does not tolerate; afterwards [`StreamRecords::damage`]
/// lists what was passed over.
pub struct StreamRecords<R = Box<dyn Read + Send>> {
    src: R,
    path: PathBuf,
    archive: bool,
    forced: Option<LogFormat>,
    format: Option<LogFormat>,
    max: u64,
    mode: RecoveryMode,
    from_offset: u64,
    reached_from: bool,
    from_lsn: Option<Lsn>,
    buf: Vec<u8>,
    buf_off: u64,
    eof: bool,
    source_error: Option<String>,
    pos: u64,
    started: bool,
    done: bool,
    records: u64,
    plausible_head: bool,
    first: Vec<u8>,
    damage: Vec<StreamDamage>,
    skipped: Vec<Range<u64>>,
    torn: Option<TornTail>,
}

impl<R> std::fmt::Debug for StreamRecords<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRecords")
            .field("path", &self.path)
            .field("archive", &self.archive)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<R: Read> StreamRecords<R> {
    /// Reads the records of `reader`, named `path` in errors, from stream
    /// offset `from_offset` (which must be the start of a record; the bytes
    /// before it are read and checked, not returned). Honours the format,
    /// recovery mode, `max_record_size` and `from_lsn` of `options` (its file
    /// system is not used).
    pub fn new(
        reader: R,
        path: impl Into<PathBuf>,
        from_offset: u64,
        options: &ReadOptions,
    ) -> Self {
        StreamRecords {
            src: reader,
            path: path.into(),
            archive: false,
            forced: options.format,
            format: options.format,
            max: options.max_record_size,
            mode: options.recovery,
            from_offset,
            reached_from: from_offset == 0,
            from_lsn: options.from_lsn,
            buf: Vec::new(),
            buf_off: 0,
            eof: false,
            source_error: None,
            pos: 0,
            started: false,
            done: false,
            records: 0,
            plausible_head: true,
            first: Vec::new(),
            damage: Vec::new(),
            skipped: Vec::new(),
            torn: None,
        }
    }

    /// The format being read (known once the first record was asked for).
    pub fn format(&self) -> Option<LogFormat> {
        self.format
    }

    /// Whether this is a zstd archive read by [`read_archive`].
    pub fn is_archive(&self) -> bool {
        self.archive
    }

    /// The torn tail the stream ended in, if any (known once iteration
    /// ended).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// Ranges skipped in `SkipCorrupted` mode.
    pub fn skipped(&self) -> &[Range<u64>] {
        &self.skipped
    }

    /// Every damaged range met so far, with its reason; a stream that could
    /// not be read to its end ends with one that says why.
    pub fn damage(&self) -> &[StreamDamage] {
        &self.damage
    }

    /// The bytes of the stream read so far: its whole length (decompressed,
    /// for an archive) once iteration ended.
    pub fn stream_len(&self) -> u64 {
        self.buf_end()
    }

    fn buf_end(&self) -> u64 {
        self.buf_off + self.buf.len() as u64
    }

    /// Bytes buffered from `at` on (all that is left, at the end).
    fn avail(&self, at: u64) -> u64 {
        self.buf_end().saturating_sub(at)
    }

    /// The buffered bytes `[at, at + n)`, clamped to what is buffered.
    fn window(&self, at: u64, n: usize) -> &[u8] {
        let start = (at.saturating_sub(self.buf_off) as usize).min(self.buf.len());
        let end = start.saturating_add(n).min(self.buf.len());
        &self.buf[start..end]
    }

    /// Makes the buffer hold `[at, at + need)`, or everything from `at` to
    /// the end of the stream. Bytes before `at` are let go: the stream is
    /// read forward only.
    fn ensure(&mut self, at: u64, need: usize) {
        let end = at.saturating_add(need as u64);
        if self.buf_end() >= end || self.eof {
            return;
        }
        let drop = (at.saturating_sub(self.buf_off) as usize).min(self.buf.len());
        self.buf.drain(..drop);
        self.buf_off += drop as u64;
        while self.buf_end() < end && !self.eof {
            // `read_to_end` keeps what it read before an error, and retries
            // interrupted reads; fewer bytes than asked for is the end.
            let want = (end - self.buf_end()).max(CHUNK as u64);
            match (&mut self.src).take(want).read_to_end(&mut self.buf) {
                Ok(n) if (n as u64) < want => self.eof = true,
                Ok(_) => {}
                Err(e) => {
                    self.eof = true;
                    self.source_error = Some(e.to_string());
                }
            }
            // Bytes before `at` (when it lies past what was buffered) are
            // not kept either.
            if self.buf_off < at {
                let drop = ((at - self.buf_off) as usize).min(self.buf.len());
                self.buf.drain(..drop);
                self.buf_off += drop as u64;
            }
        }
    }

    /// Reads the rest of the stream, keeping nothing; returns its length.
    fn drain_to_end(&mut self) -> u64 {
        while !self.eof {
            let at = self.buf_end();
            self.ensure(at, CHUNK);
        }
        self.buf_end()
    }

    /// "the zstd archive" or "the stream".
    fn noun(&self) -> &'static str {
        if self.archive {
            "the zstd archive"
        } else {
            "the stream"
        }
    }

    /// Damage at `offset` as an error, saying that offsets in an archive
    /// count decompressed bytes.
    fn corrupt(&self, offset: u64, reason: String) -> Error {
        let mut reason = reason;
        if let Some(e) = &self.source_error {
            reason = format!(
                "{reason} ({} cannot be read past byte {}: {e})",
                self.noun(),
                self.buf_end()
            );
        }
        if self.archive {
            reason.push_str(" (an offset in the decompressed stream of the zstd archive)");
        }
        Error::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Detects the format (or checks the forced one) from the first bytes.
    fn start(&mut self) -> Result<(), Error> {
        let want = (HEADER_LEN as u64 + self.max).min(HEAD_MAX) as usize;
        self.ensure(0, want);
        let avail = self.avail(0);
        if avail == 0 {
            self.format = Some(self.forced.unwrap_or_default());
            return Ok(());
        }
        let len = if self.eof { avail } else { u64::MAX };
        let head = self.window(0, want);
        check_head(&self.path, head, len, self.max, self.forced)?;
        let plausible = format::plausible_start(head, self.max);
        let first = head[..head.len().min(HEADER_LEN)].to_vec();
        let detected = self.forced.or_else(|| detect_format(head, len, self.max));
        self.plausible_head = plausible;
        self.first = first;
        self.format = Some(match detected {
            Some(f) => f,
            // As for files: a few bytes and no `{`, a binary header cut
            // short.
            None if avail < 6 => LogFormat::Binary,
            None => {
                let what = format!("{} is neither JSON lines nor binary records", self.noun());
                return Err(self.corrupt(0, what));
            }
        });
        Ok(())
    }

    /// The binary record at `at`: its end, or why it is damaged.
    fn binary_at(&mut self, at: u64) -> Result<u64, Damage> {
        self.ensure(at, HEADER_LEN);
        let head = self.window(at, HEADER_LEN);
        if head.len() == HEADER_LEN {
            let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
            if len != 0 && len <= self.max {
                self.ensure(at, HEADER_LEN + len as usize);
            }
        }
        let avail = self.avail(at);
        let h = check_binary(self.window(at, usize::MAX), avail, self.max)?;
        Ok(at + HEADER_LEN as u64 + u64::from(h.len))
    }

    /// The line starting at `at`: the offset of its newline, or damage.
    fn find_line(&mut self, at: u64) -> Result<u64, Damage> {
        let limit = self.max.saturating_add(1).min(usize::MAX as u64) as usize;
        let mut searched = 0usize;
        loop {
            let want = searched.max(4096).saturating_mul(2).min(limit);
            self.ensure(at, want);
            let got = (self.avail(at) as usize).min(want);
            let w = self.window(at, got);
            if let Some(i) = w[searched.min(w.len())..].iter().position(|&c| c == b'\n') {
                return Ok(at + (searched + i) as u64);
            }
            searched = got;
            if got < want || want == limit {
                return Err(if self.avail(at) > self.max {
                    Damage::LineTooLong { max: self.max }
                } else {
                    Damage::NoNewline
                });
            }
        }
    }

    /// The intact JSON line at `at`: its newline, or damage.
    fn json_at(&mut self, at: u64) -> Result<u64, Damage> {
        let nl = self.find_line(at)?;
        check_json_line(self.window(at, (nl - at) as usize))?;
        Ok(nl)
    }

    /// The first intact record starting after `after`, if any (reading the
    /// rest of the stream when there is none).
    fn find_intact_after(&mut self, after: u64) -> Option<u64> {
        match self.format {
            Some(LogFormat::Binary) => {
                let mut p = after + 1;
                loop {
                    self.ensure(p, HEADER_LEN);
                    if self.avail(p) < HEADER_LEN as u64 {
                        return None;
                    }
                    if self.binary_at(p).is_ok() {
                        return Some(p);
                    }
                    p += 1;
                }
            }
            _ => {
                // Resynchronize at each later line start.
                let mut p = self.find_line(after).ok()? + 1;
                loop {
                    self.ensure(p, 1);
                    if self.avail(p) == 0 {
                        return None;
                    }
                    let nl = self.find_line(p).ok()?;
                    if check_json_line(self.window(p, (nl - p) as usize)).is_ok() {
                        return Some(p);
                    }
                    p = nl + 1;
                }
            }
        }
    }

    /// Applies the recovery mode to damage at `at`. `Ok(true)`: go on from
    /// the next intact record; `Ok(false)`: the stream ends here.
    fn on_damage(&mut self, at: u64, d: Damage) -> Result<bool, Error> {
        let reason = d.to_string();
        let foreign = at == 0 && self.records == 0 && !self.plausible_head;
        if self.mode == RecoveryMode::AbsoluteConsistency && !foreign {
            return Err(self.corrupt(at, reason));
        }
        let next = self.find_intact_after(at);
        if foreign && next.is_none() {
            return Err(not_a_log(&self.path, &self.first));
        }
        match (self.mode, next) {
            (RecoveryMode::AbsoluteConsistency, _) => Err(self.corrupt(at, reason)),
            (RecoveryMode::TolerateTail, Some(n)) => Err(self.corrupt(
                at,
                format!(
                    "{reason}, and an intact record follows at offset {n}: this is corruption in the middle, not a torn tail"
                ),
            )),
            (RecoveryMode::SkipCorrupted, Some(n)) => {
                self.skipped.push(at..n);
                self.damage.push(StreamDamage {
                    start: at,
                    end: n,
                    torn: false,
                    reason,
                });
                self.pos = n;
                Ok(true)
            }
            (_, None) => {
                let end = self.drain_to_end();
                if self.mode == RecoveryMode::SkipCorrupted {
                    self.skipped.push(at..end);
                }
                self.torn = Some(TornTail {
                    offset: at,
                    reason: reason.clone(),
                });
                self.damage.push(StreamDamage {
                    start: at,
                    end,
                    torn: true,
                    reason,
                });
                self.pos = end;
                Ok(false)
            }
        }
    }

    /// At the end: an offset asked for past the end, or a source that could
    /// not be read to its end (damage where it stopped: a record it cut
    /// short is part of it, and is no torn tail).
    fn finish(&mut self) -> Result<(), Error> {
        let end = self.buf_end();
        if !self.reached_from && self.from_offset != end {
            return Err(Error::NotARecordBoundary {
                path: self.path.clone(),
                offset: self.from_offset,
            });
        }
        let Some(e) = self.source_error.clone() else {
            return Ok(());
        };
        let why = format!("{} cannot be read past this point: {e}", self.noun());
        let start = match self.damage.last_mut() {
            Some(last) if last.end == end && last.torn => {
                last.torn = false;
                last.reason = format!("{}; {why}", last.reason);
                last.start
            }
            _ => {
                self.damage.push(StreamDamage {
                    start: end,
                    end,
                    torn: false,
                    reason: why.clone(),
                });
                end
            }
        };
        self.torn = None;
        if self.mode == RecoveryMode::SkipCorrupted {
            return Ok(());
        }
        let reason = self.damage.last().map_or(why, |d| d.reason.clone());
        // `corrupt` would repeat the source's error.
        let mut reason = reason;
        if self.archive {
            reason.push_str(" (an offset in the decompressed stream of the zstd archive)");
        }
        Err(Error::Corrupt {
            path: self.path.clone(),
            offset: start,
            reason,
        })
    }

    /// The next record, `None` at the end, or the error that ends the walk.
    fn step(&mut self) -> Result<Option<RawEntry>, Error> {
        if !self.started {
            self.started = true;
            self.start()?;
        }
        loop {
            let at = self.pos;
            if !self.reached_from && at >= self.from_offset {
                if at != self.from_offset {
                    return Err(Error::NotARecordBoundary {
                        path: self.path.clone(),
                        offset: self.from_offset,
                    });
                }
                self.reached_from = true;
            }
            self.ensure(at, 1);
            if self.avail(at) == 0 {
                self.finish()?;
                return Ok(None);
            }
            let format = self.format.unwrap_or_default();
            let found = match format {
                LogFormat::Binary => self.binary_at(at),
                LogFormat::Json => self.json_at(at),
            };
            let end = match found {
                Ok(end) => end,
                Err(d) => {
                    if self.on_damage(at, d)? {
                        continue;
                    }
                    self.finish()?;
                    return Ok(None);
                }
            };
            self.records += 1;
            let (payload, next, header_lsn) = match format {
                LogFormat::Binary => {
                    let h = format::Header::parse(self.window(at, HEADER_LEN));
                    (
                        self.window(at + HEADER_LEN as u64, h.len as usize).to_vec(),
                        end,
                        h.lsn(),
                    )
                }
                LogFormat::Json => (self.window(at, (end - at) as usize).to_vec(), end + 1, None),
            };
            self.pos = next;
            if !self.reached_from {
                continue;
            }
            let lsn = match format {
                LogFormat::Binary => header_lsn.or_else(|| json_tail_lsn(&payload).flatten()),
                LogFormat::Json => json_lsn(&payload),
            };
            if let Some(from) = self.from_lsn
                && lsn.is_none_or(|l| l < from)
            {
                continue;
            }
            return Ok(Some(RawEntry {
                offset: at,
                end: next,
                lsn,
                payload,
            }));
        }
    }
}

impl<R: Read> Iterator for StreamRecords<R> {
    type Item = Result<RawEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A [`ReadableFile`] read from start to end.
struct FileReader {
    file: Box<dyn ReadableFile>,
    pos: u64,
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads the records of the zstd archive at `path` (a rotated data-plane
/// log, `{stem}_{secs}_archived.zst`), decompressing as it goes, from
/// `from_offset` in the decompressed stream. The archive is recognized by
/// its first bytes ([`format::ZSTD_MAGIC`]): a file without them is
/// [`Error::NotALog`]. Offsets of records and of damage count decompressed
/// bytes. Reads through `options.file_system`.
///
/// ```no_run
/// let records = hyperlog::stream::read_archive("logs/app_1767225600_archived.zst", 0, hyperlog::ReadOptions::default())?;
/// for r in records {
///     let r = r?;
///     println!("{} {}", r.offset, String::from_utf8_lossy(&r.payload));
/// }
/// # Ok::<(), hyperlog::Error>(())
/// ```
pub fn read_archive(
    path: impl AsRef<Path>,
    from_offset: u64,
    options: ReadOptions,
) -> Result<StreamRecords, Error> {
    let path = path.as_ref();
    let file = options
        .file_system
        .open_read(path)
        .map_err(|e| Error::io("open", path, e))?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        let got = file
            .read_at(&mut magic[n..], n as u64)
            .map_err(|e| Error::io("read", path, e))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    if !is_zstd(&magic[..n]) {
        return Err(Error::NotALog {
            path: path.to_path_buf(),
            expected: "a zstd archive",
            reason: if n == 0 {
                "it is empty".into()
            } else {
                format!(
                    "it starts with {}, not the zstd magic bytes {}",
                    hex(&magic[..n]),
                    hex(&format::ZSTD_MAGIC)
                )
            },
        });
    }
    let decoder = zstd::stream::read::Decoder::new(FileReader { file, pos: 0 })
        .map_err(|e| Error::io("start decompressing", path, e))?;
    let mut s = StreamRecords::new(
        Box::new(decoder) as Box<dyn Read + Send>,
        path,
        from_offset,
        &options,
    );
    s.archive = true;
    Ok(s)
}
