//! Reading logs back, and the scan that recovery runs before appending.
//!
//! The scanner walks a file record by record through the file-system seam,
//! with a sliding buffer, and applies a [`RecoveryMode`] to damage:
//!
//! - a damaged record with no intact record after it is a **torn tail**: the
//!   normal result of a crash mid-write;
//! - a damaged record followed by an intact one is **corruption in the
//!   middle**: damage to data that may have been acknowledged.
//!
//! The scanner never trusts a length field: it is capped by `max_record_size`
//! and by the bytes left in the file before anything is allocated.
//!
//! On top of it sit the typed readers ([`read_entries`],
//! [`read_entries_blocking`]), [`get_last_lsn`] and [`scan_log`].

use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use serde::de::DeserializeOwned;

use crate::format::{
    self, DEFAULT_MAX_RECORD_SIZE, Damage, HEADER_LEN, LogFormat, check_binary, check_json_line,
    detect_format, json_tail_lsn,
};
use crate::fs::{FileSystem, ReadableFile, StdFs};
use crate::{Error, Log, Lsn, RecoveryMode};

const CHUNK: usize = 1 << 20;

/// Writers preallocate files to multiples of this many bytes.
pub(crate) const PREALLOCATION_ALIGN: u64 = 4096;

/// How to read a log.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The format; `None` (the default) detects it from the first bytes.
    pub format: Option<LogFormat>,
    /// What to do with damage (default `TolerateTail`).
    pub recovery: RecoveryMode,
    /// The largest record accepted (default 16 MiB); a longer length field
    /// is damage.
    pub max_record_size: u64,
    /// Skip to the first entry whose LSN is at or above this one.
    pub from_lsn: Option<Lsn>,
    /// The file system (default: the real disk).
    pub file_system: Arc<dyn FileSystem>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            recovery: RecoveryMode::TolerateTail,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            from_lsn: None,
            file_system: StdFs::shared(),
        }
    }
}

impl ReadOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the format instead of detecting it.
    #[must_use]
    pub fn format(mut self, f: LogFormat) -> Self {
        self.format = Some(f);
        self
    }
    /// Sets the recovery mode.
    #[must_use]
    pub fn recovery(mut self, m: RecoveryMode) -> Self {
        self.recovery = m;
        self
    }
    /// Sets the largest record accepted.
    #[must_use]
    pub fn max_record_size(mut self, n: u64) -> Self {
        self.max_record_size = n;
        self
    }
    /// Starts at the first entry whose LSN is at or above `lsn`.
    #[must_use]
    pub fn from_lsn(mut self, lsn: Lsn) -> Self {
        self.from_lsn = Some(lsn);
        self
    }
    /// Reads through another file system.
    #[must_use]
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }
}

/// One intact record as the scanner found it: where it is and where its
/// payload sits in the scanner's buffer.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    pub offset: u64,
    pub end: u64,
    pub payload: Range<usize>,
    pub header_lsn: Option<Lsn>,
}

/// The tail the scanner stopped at, when the file ends in damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// A record-by-record walk over one file.
pub(crate) struct Scanner {
    file: Box<dyn ReadableFile>,
    path: PathBuf,
    format: LogFormat,
    max: u64,
    mode: RecoveryMode,
    len: u64,
    buf: Vec<u8>,
    buf_off: u64,
    pos: u64,
    done: bool,
    pub skipped: Vec<Range<u64>>,
    pub torn: Option<TornTail>,
    /// Where a zero-filled tail (preallocated space) starts.
    pub zero_tail: Option<u64>,
}

impl Scanner {
    /// Opens `path`; `format` `None` detects it (an empty file then reads as
    /// JSON, which yields nothing). A file that is not a log of that format
    /// (a zstd archive, a log of the other format, or no log at all: see
    /// [`Scanner::refuse_foreign`]) is [`Error::NotALog`].
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        format: Option<LogFormat>,
        max: u64,
        mode: RecoveryMode,
    ) -> Result<Scanner, Error> {
        let file = fs.open_read(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", path, e))?;
        let mut s = Scanner {
            file,
            path: path.to_path_buf(),
            format: format.unwrap_or(LogFormat::Json),
            max,
            mode,
            len,
            buf: Vec::new(),
            buf_off: 0,
            pos: 0,
            done: false,
            skipped: Vec::new(),
            torn: None,
            zero_tail: None,
        };
        if len == 0 {
            return Ok(s);
        }
        let want = (HEADER_LEN as u64 + max).min(len).min(CHUNK as u64 * 4) as usize;
        s.fill(0, want)?;
        let head = s.window(0, want);
        // A zstd archive, or (with a forced format) a log of the other one.
        crate::stream::check_head(path, head, len, max, format)?;
        let plausible = format::plausible_start(head, max);
        let first = head[..head.len().min(HEADER_LEN)].to_vec();
        if format.is_none() {
            s.format = match detect_format(head, len, max) {
                Some(f) => f,
                // Up to 5 bytes and no `{`: a binary header cut short by a
                // crash during the first write (from the 6th byte on, the
                // length field's zero high bytes make it detectable; short
                // text is neither format).
                None if len < 6 => LogFormat::Binary,
                None => {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        offset: 0,
                        reason: "the file is neither JSON lines nor binary records".into(),
                    });
                }
            };
        }
        if !plausible {
            s.refuse_foreign(&first)?;
        }
        Ok(s)
    }

    /// [`Scanner::seek`], by value.
    fn seeked(mut self, offset: u64) -> Result<Scanner, Error> {
        self.seek(offset)?;
        Ok(self)
    }

    /// Refuses a file whose first bytes start no record of either format
    /// when it holds no intact record at all: it is not a log (a PNG, a
    /// tarball), and recovery must not cut it away as a torn tail. A power
    /// cut during the first write of a log can garble its first sector
    /// (`format::START_LEN` bytes), so a file with nothing but zeros past it
    /// is left to the recovery mode.
    fn refuse_foreign(&mut self, first: &[u8]) -> Result<(), Error> {
        if self.zeros_to_end(format::START_LEN as u64)? {
            return Ok(());
        }
        let intact_first = match self.format {
            LogFormat::Binary => self.check_binary_at(0)?.is_ok(),
            LogFormat::Json => match self.find_line(0)? {
                Ok(nl) => check_json_line(self.window(0, nl as usize)).is_ok(),
                Err(_) => false,
            },
        };
        if intact_first || self.find_valid_after(0)?.is_some() {
            return Ok(());
        }
        Err(crate::stream::not_a_log(&self.path, first))
    }

    /// Starts at `offset`, which must be the start of a record.
    pub fn seek(&mut self, offset: u64) -> Result<(), Error> {
        let not_boundary = |path: &Path| Error::NotARecordBoundary {
            path: path.to_path_buf(),
            offset,
        };
        if offset > self.len {
            return Err(not_boundary(&self.path));
        }
        if offset > 0 && offset < self.len {
            match self.format {
                LogFormat::Json => {
                    self.fill(offset - 1, 1)?;
                    if self.window(offset - 1, 1) != b"\n" {
                        return Err(not_boundary(&self.path));
                    }
                }
                LogFormat::Binary => {
                    if self.check_binary_at(offset)?.is_err() {
                        return Err(not_boundary(&self.path));
                    }
                }
            }
        }
        self.pos = offset;
        Ok(())
    }

    /// The bytes of the buffer for `[at, at + n)`, clamped to the file; call
    /// `fill` first.
    fn window(&self, at: u64, n: usize) -> &[u8] {
        let start = (at - self.buf_off) as usize;
        let end = (start + n).min(self.buf.len());
        &self.buf[start..end]
    }

    /// Ensures `[at, at + need)` (clamped to the file) is in the buffer.
    fn fill(&mut self, at: u64, need: usize) -> Result<(), Error> {
        let need = need.min(self.len.saturating_sub(at) as usize);
        let have_end = self.buf_off + self.buf.len() as u64;
        if at >= self.buf_off && at + need as u64 <= have_end {
            return Ok(());
        }
        let want = need.max(CHUNK).min(self.len.saturating_sub(at) as usize);
        if at >= self.buf_off && at <= have_end {
            // Keep what overlaps, read the rest.
            let keep_from = (at - self.buf_off) as usize;
            self.buf.drain(..keep_from);
        } else {
            self.buf.clear();
        }
        self.buf_off = at;
        let mut have = self.buf.len();
        self.buf.resize(want, 0);
        while have < want {
            let n = self
                .file
                .read_at(&mut self.buf[have..], at + have as u64)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if n == 0 {
                // The file ends before the length it had: it was cut while
                // being read (rotation trimming a sealed segment's zeros, a
                // writer cutting a failed write back). What is gone is not
                // there to read; every loop bounded by `len` then ends.
                self.len = at + have as u64;
                break;
            }
            have += n;
        }
        self.buf.truncate(have);
        Ok(())
    }

    /// Looks again at a file that is still being written, after the scan
    /// ended at its end: takes its current length, and forgets a torn or
    /// zero-filled tail found there (it may be a record still being written,
    /// or preallocated space since written), so that reading goes on from
    /// the end of the last intact record. Bytes buffered from past that end
    /// are dropped: they may have been zeros that were written over since.
    pub fn refresh(&mut self) -> Result<(), Error> {
        if let Some(t) = self.torn.take() {
            self.pos = self.pos.min(t.offset);
            if self.skipped.last().is_some_and(|r| r.start == t.offset) {
                self.skipped.pop();
            }
        }
        if let Some(z) = self.zero_tail.take() {
            self.pos = self.pos.min(z);
        }
        self.len = self
            .file
            .len()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        self.done = false;
        self.buf.clear();
        self.buf_off = self.pos;
        Ok(())
    }

    fn check_binary_at(&mut self, at: u64) -> Result<Result<format::Header, Damage>, Error> {
        let remaining = self.len - at;
        self.fill(at, HEADER_LEN)?;
        let head = self.window(at, HEADER_LEN);
        if head.len() < HEADER_LEN {
            return Ok(Err(Damage::TruncatedHeader { remaining }));
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
        if len == 0 || len > self.max || len > remaining - HEADER_LEN as u64 {
            return Ok(check_binary(head, remaining, self.max));
        }
        let total = HEADER_LEN + len as usize;
        self.fill(at, total)?;
        Ok(check_binary(self.window(at, total), remaining, self.max))
    }

    /// Finds the line starting at `at`: `Ok(Ok(newline offset))` or damage.
    fn find_line(&mut self, at: u64) -> Result<Result<u64, Damage>, Error> {
        let limit = self.max + 1;
        let mut searched = 0usize;
        loop {
            let avail_end = (self.len - at).min(limit) as usize;
            let want = (searched.max(4096) * 2).min(avail_end);
            self.fill(at, want)?;
            let w = self.window(at, want);
            if let Some(i) = memchr_from(w, searched) {
                return Ok(Ok(at + i as u64));
            }
            searched = w.len();
            if searched >= avail_end {
                return Ok(Err(if (self.len - at) > self.max {
                    Damage::LineTooLong { max: self.max }
                } else {
                    Damage::NoNewline
                }));
            }
        }
    }

    /// Is there an intact record starting after `after`? Returns its offset.
    fn find_valid_after(&mut self, after: u64) -> Result<Option<u64>, Error> {
        match self.format {
            LogFormat::Binary => {
                let mut p = after + 1;
                while p + HEADER_LEN as u64 <= self.len {
                    if self.check_binary_at(p)?.is_ok() {
                        return Ok(Some(p));
                    }
                    p += 1;
                }
                Ok(None)
            }
            LogFormat::Json => {
                // Resynchronize at each later line start.
                let mut p = match self.find_line(after)? {
                    Ok(nl) => nl + 1,
                    Err(_) => return Ok(None),
                };
                while p < self.len {
                    match self.find_line(p)? {
                        Ok(nl) => {
                            let line = self.window(p, (nl - p) as usize);
                            if check_json_line(line).is_ok() {
                                return Ok(Some(p));
                            }
                            p = nl + 1;
                        }
                        Err(_) => return Ok(None),
                    }
                }
                Ok(None)
            }
        }
    }

    /// Whether every byte from `offset` to the end of the file is zero.
    fn zeros_to_end(&mut self, offset: u64) -> Result<bool, Error> {
        let mut at = offset;
        while at < self.len {
            let n = (self.len - at).min(CHUNK as u64) as usize;
            self.fill(at, n)?;
            let w = self.window(at, n);
            if w.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += w.len() as u64;
        }
        Ok(true)
    }

    /// Applies the recovery mode to damage at `offset`. `Ok(true)`: go on
    /// (the position moved past the damage); `Ok(false)`: the log ends here.
    ///
    /// Zeros from `offset` to the end of a file whose length is a multiple
    /// of 4 KiB are not damage in any mode: they are space a writer
    /// preallocated and had not yet used.
    pub fn damage(&mut self, offset: u64, d: Damage) -> Result<bool, Error> {
        if offset >= self.len {
            // The file was cut back to here while it was read (zeros
            // trimmed, a failed write cut off): it ends here, cleanly.
            self.done = true;
            return Ok(false);
        }
        // Preallocation extends files to multiples of 4 KiB; zeros that end
        // anywhere else are a torn write that happened to write zeros.
        if self.len.is_multiple_of(PREALLOCATION_ALIGN) && self.zeros_to_end(offset)? {
            self.zero_tail = Some(offset);
            self.done = true;
            return Ok(false);
        }
        let corrupt = |reason: String| Error::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        };
        match self.mode {
            RecoveryMode::AbsoluteConsistency => {
                self.done = true;
                Err(corrupt(d.to_string()))
            }
            RecoveryMode::TolerateTail => match self.find_valid_after(offset)? {
                Some(next) => {
                    self.done = true;
                    Err(Error::Corrupt {
                        path: self.path.clone(),
                        offset,
                        reason: format!(
                            "{d}, and an intact record follows at offset {next}: this is corruption in the middle, not a torn tail"
                        ),
                    })
                }
                None => {
                    self.torn = Some(TornTail {
                        offset,
                        reason: d.to_string(),
                    });
                    self.done = true;
                    Ok(false)
                }
            },
            RecoveryMode::SkipCorrupted => match self.find_valid_after(offset)? {
                Some(next) => {
                    self.skipped.push(offset..next);
                    self.pos = next;
                    Ok(true)
                }
                None => {
                    self.skipped.push(offset..self.len);
                    self.torn = Some(TornTail {
                        offset,
                        reason: d.to_string(),
                    });
                    self.pos = self.len;
                    self.done = true;
                    Ok(false)
                }
            },
        }
    }

    /// The next intact record (framing and checksum only; a JSON line's
    /// syntax is checked by the caller, which may call [`Scanner::damage`]).
    pub fn next_raw(&mut self) -> Result<Option<RawRecord>, Error> {
        loop {
            if self.done || self.pos >= self.len {
                return Ok(None);
            }
            let at = self.pos;
            let found = match self.format {
                LogFormat::Binary => self.check_binary_at(at)?.map(|h| {
                    let start = (at - self.buf_off) as usize + HEADER_LEN;
                    RawRecord {
                        offset: at,
                        end: at + HEADER_LEN as u64 + h.len as u64,
                        payload: start..start + h.len as usize,
                        header_lsn: h.lsn(),
                    }
                }),
                LogFormat::Json => self.find_line(at)?.map(|nl| {
                    let start = (at - self.buf_off) as usize;
                    RawRecord {
                        offset: at,
                        end: nl + 1,
                        payload: start..start + (nl - at) as usize,
                        header_lsn: None,
                    }
                }),
            };
            match found {
                Ok(r) => {
                    self.pos = r.end;
                    return Ok(Some(r));
                }
                Err(d) => {
                    if !self.damage(at, d)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The payload bytes of `r` (valid until the next call that moves).
    pub fn payload(&self, r: &RawRecord) -> &[u8] {
        &self.buf[r.payload.clone()]
    }

    /// Handles an undecodable JSON line: damage when it is not JSON at all.
    /// Returns `Ok(None)` when the line is valid JSON (a decode error
    /// then), `Ok(Some(go_on))` when it was treated as damage.
    pub fn json_line_damage(&mut self, r: &RawRecord) -> Result<Option<bool>, Error> {
        match check_json_line(self.payload(r)) {
            Ok(()) => Ok(None),
            Err(d) => {
                self.pos = r.offset;
                self.done = false;
                self.damage(r.offset, d).map(Some)
            }
        }
    }
}

/// The sealed segments of the log at `live`, or an error naming it.
fn list(fs: &dyn FileSystem, live: &Path) -> Result<Vec<crate::segments::Segment>, Error> {
    crate::segments::try_list_segments(fs, live)
        .map_err(|e| Error::io("list the directory of", live, e))
}

fn missing(path: &Path) -> Error {
    Error::io("open", path, std::io::ErrorKind::NotFound.into())
}

fn memchr_from(w: &[u8], from: usize) -> Option<usize> {
    w.get(from..)?
        .iter()
        .position(|&c| c == b'\n')
        .map(|i| i + from)
}

/// An entry read back: its byte offset, the Log, and its LSN.
pub type ReadItem<T> = (u64, Log<T>, Option<Lsn>);

/// The files of a log read in order (a segmented WAL's sealed segments,
/// then its live file; or the one file), walked record by record. Shared by
/// the typed and the raw readers.
///
/// # Reading a log that is being written
///
/// A writer may append to the live file, rotate it (rename it into segment
/// `k + 1`, then put a fresh live file in its place), trim a sealed
/// segment's preallocated zeros, and delete the oldest segments
/// (`truncate_before`, retention), all while a reader walks the log. The
/// chain returns a prefix of the log (every entry once, in order, up to some
/// point) or an error, because it never decides from one listing of the
/// directory what comes next:
///
/// - After a sealed segment `k` it lists the directory again and reads the
///   lowest segment above `k`. Segment ids have no gaps, so when that is not
///   `k + 1`, segment `k + 1` was deleted under the reader: an error, never
///   a silent skip.
/// - When no segment above `k` exists it opens the live file, *then* lists
///   again. A rotation renames the live file into the next segment before a
///   new live file exists, so a live file opened before a listing that shows
///   no new segment is the file that comes after `k`; if the listing does
///   show one, the live file is put back and the segment is read first.
/// - At the end of the live file it asks whether the file it holds is still
///   the one at the log's path (same device and inode,
///   [`FileSystem::identity`]). If so, the log ends there for now. If not,
///   the file was sealed while being read: the open handle is read on to
///   the file's final end (a sealed file is no longer written) and the walk
///   continues after the segment it became. A file system that cannot tell
///   identities falls back to the names: the file held open became segment
///   `k + 1` when that segment appeared.
/// - A file that shrinks under the reader (zeros trimmed) ends where it now
///   ends, instead of being waited for.
struct Chain {
    scanner: Option<Scanner>,
    options: Option<ReadOptions>,
    pending_error: Option<Error>,
    /// Where the walk is in a segmented log (`None`: one file only).
    log: Option<Walk>,
}

/// The position of a [`Chain`] in a segmented log.
struct Walk {
    /// The log's path: its live file.
    live: PathBuf,
    /// The id of the last segment read (or being read); 0 before any.
    segment: u64,
    /// Whether the file being read was the live file when it was opened.
    on_live: bool,
}

impl Chain {
    fn failed(e: Error) -> Chain {
        Chain {
            scanner: None,
            options: None,
            pending_error: Some(e),
            log: None,
        }
    }

    /// Opens the log at `path` at `from_offset` (in the first file read);
    /// with `from_lsn`, a segmented log starts at the segment its names
    /// select, at the point its sparse index gives.
    fn open(path: &Path, from_offset: u64, options: ReadOptions, segmented: bool) -> Chain {
        match Self::try_open(path, from_offset, options, segmented) {
            Ok(c) => c,
            Err(e) => Self::failed(e),
        }
    }

    fn try_open(
        path: &Path,
        from_offset: u64,
        options: ReadOptions,
        segmented: bool,
    ) -> Result<Chain, Error> {
        let fs = options.file_system.clone();
        if !segmented {
            let s = Self::scan(&options, path)?.seeked(from_offset)?;
            return Ok(Chain {
                scanner: Some(s),
                options: Some(options),
                pending_error: None,
                log: None,
            });
        }
        let segments = list(&*fs, path)?;
        if let Err((p, reason)) = crate::segments::check_chain(&segments)
            && options.recovery != RecoveryMode::SkipCorrupted
        {
            return Err(Error::Corrupt {
                path: p,
                offset: 0,
                reason,
            });
        }
        // Seeking an LSN starts at the last segment that begins at or below it.
        let start = match options.from_lsn {
            Some(l) => segments
                .iter()
                .rposition(|s| s.first_lsn.is_some_and(|f| f <= l))
                .unwrap_or(0),
            None => 0,
        };
        let mut chain = Chain {
            scanner: None,
            options: Some(options),
            pending_error: None,
            log: Some(Walk {
                live: path.to_path_buf(),
                segment: segments.get(start).map_or(0, |s| s.id.saturating_sub(1)),
                on_live: false,
            }),
        };
        if !chain.advance(true)? {
            // No segment and no live file: the error opening it gives (or,
            // if it was created just now, the file).
            let o = chain.options.as_ref().ok_or_else(|| missing(path))?;
            chain.scanner = Some(Self::scan(o, path)?);
            if let Some(w) = chain.log.as_mut() {
                w.on_live = true;
            }
        }
        if let (Some(s), Some(o)) = (chain.scanner.as_mut(), chain.options.as_ref()) {
            // In a sealed segment, the sparse index finds where to start.
            let from_offset = match o.from_lsn {
                Some(l) if from_offset == 0 && s.path != path => {
                    crate::segments::seek_offset(&*o.file_system, &s.path, l)
                }
                _ => from_offset,
            };
            s.seek(from_offset)?;
        }
        Ok(chain)
    }

    /// A scanner over `path` with the chain's options.
    fn scan(o: &ReadOptions, path: &Path) -> Result<Scanner, Error> {
        Scanner::open(
            &*o.file_system,
            path,
            o.format,
            o.max_record_size,
            o.recovery,
        )
    }

    /// Opens the next file of a segmented log (see the type's docs):
    /// `Ok(false)` when there is none (the log ends here, for now). `first`:
    /// this opens the first file, so the lowest segment there is starts the
    /// walk wherever it is.
    fn advance(&mut self, first: bool) -> Result<bool, Error> {
        let (Some(o), Some(walk)) = (self.options.as_ref(), self.log.as_mut()) else {
            return Ok(false);
        };
        let fs = &*o.file_system;
        let mut live = None;
        loop {
            let segments = list(fs, &walk.live)?;
            if let Some(seg) = segments.iter().find(|s| s.id > walk.segment) {
                if !first && seg.id != walk.segment + 1 && o.recovery != RecoveryMode::SkipCorrupted
                {
                    return Err(Error::SegmentRemoved {
                        path: walk.live.clone(),
                        segment: walk.segment + 1,
                    });
                }
                // A live file opened before this listing comes after it.
                drop(live.take());
                let scanner = match Self::scan(o, &seg.path) {
                    Ok(s) => s,
                    // Deleted since the listing: before the walk began, the
                    // log simply starts later; after, entries would be lost.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        if first {
                            continue;
                        }
                        return Err(Error::SegmentRemoved {
                            path: walk.live.clone(),
                            segment: seg.id,
                        });
                    }
                    Err(e) => return Err(e),
                };
                walk.segment = seg.id;
                walk.on_live = false;
                self.scanner = Some(scanner);
                return Ok(true);
            }
            if let Some(s) = live.take() {
                walk.on_live = true;
                self.scanner = Some(s);
                return Ok(true);
            }
            match Self::scan(o, &walk.live) {
                Ok(s) => live = Some(s),
                // Between a rotation's two renames, or never created: look
                // at the segments once more, then the log ends here.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    let again = list(fs, &walk.live)?;
                    if again.iter().any(|s| s.id > walk.segment) {
                        continue;
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// At the end of the live file: whether the file being read is still
    /// the live file. When it was sealed meanwhile, the scanner is set to
    /// read it on to its final end and the walk records the segment it
    /// became.
    fn live_was_sealed(&mut self) -> Result<bool, Error> {
        let (Some(o), Some(walk), Some(s)) = (
            self.options.as_ref(),
            self.log.as_mut(),
            self.scanner.as_mut(),
        ) else {
            return Ok(false);
        };
        let fs = &*o.file_system;
        let held = s.file.identity();
        let at_path = match fs.identity(&walk.live) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("stat", &walk.live, e)),
        };
        let segments = list(fs, &walk.live)?;
        let became = match held {
            Some(h) if at_path == Some(h) => return Ok(false),
            Some(h) => segments
                .iter()
                .filter(|seg| seg.id > walk.segment)
                .find(|seg| fs.identity(&seg.path).ok().flatten() == Some(h))
                .map(|seg| seg.id),
            // Identities unknown: the held file became the next segment
            // when that segment appeared.
            None => segments
                .iter()
                .find(|seg| seg.id == walk.segment + 1)
                .map(|seg| seg.id),
        };
        match became {
            Some(id) => {
                walk.segment = id;
                walk.on_live = false;
                s.refresh()?;
                Ok(true)
            }
            // Neither live nor a segment: deleted under the reader, or a
            // file system that cannot tell; either way nothing follows it
            // that this walk can place.
            None => Ok(false),
        }
    }

    fn start_lsn(&self) -> Option<Lsn> {
        self.options.as_ref().and_then(|o| o.from_lsn)
    }

    /// Moves on to the next file. A sealed segment was complete and synced
    /// before it was sealed, so one that ends torn is damage (except in
    /// `SkipCorrupted` mode). At the end of the live file, reading goes on
    /// only if the file was sealed while it was read.
    fn next_file(&mut self) -> Result<bool, Error> {
        let Some(walk) = self.log.as_ref() else {
            return Ok(false);
        };
        if walk.on_live {
            return self.live_was_sealed();
        }
        let Some(opts) = self.options.as_ref() else {
            return Ok(false);
        };
        if let Some(s) = &self.scanner
            && let Some(t) = &s.torn
            && opts.recovery != RecoveryMode::SkipCorrupted
        {
            return Err(Error::Corrupt {
                path: s.path.clone(),
                offset: t.offset,
                reason: format!("a sealed segment ends in damage: {}", t.reason),
            });
        }
        self.advance(false)
    }

    /// After the walk ended at the end of the live file: looks again, so
    /// that what was written since is read (see [`Scanner::refresh`]).
    fn refresh(&mut self) -> Result<(), Error> {
        if self.pending_error.is_some() {
            return Ok(());
        }
        match (self.scanner.as_mut(), self.log.as_ref()) {
            (Some(s), Some(w)) if w.on_live => s.refresh(),
            (Some(s), None) => s.refresh(),
            _ => Ok(()),
        }
    }

    /// The next intact record across files, with its LSN (header, else the
    /// JSON field), past entries below `from_lsn`. A JSON line that is not
    /// JSON is damage handled by the recovery mode. The record's payload is
    /// `self.payload(&r)` until the next call.
    fn next_record(&mut self, lsn_needed: bool) -> Option<Result<(RawRecord, Option<Lsn>), Error>> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        let from = self.start_lsn();
        loop {
            let s = self.scanner.as_mut()?;
            let r = match s.next_raw() {
                Ok(Some(r)) => r,
                Ok(None) => match self.next_file() {
                    Ok(true) => continue,
                    Ok(false) => return None,
                    Err(e) => {
                        self.scanner = None;
                        return Some(Err(e));
                    }
                },
                Err(e) => return Some(Err(e)),
            };
            let s = self.scanner.as_mut()?;
            let lsn = match s.format {
                LogFormat::Binary => r.header_lsn.or_else(|| {
                    (lsn_needed || from.is_some())
                        .then(|| json_tail_lsn(s.payload(&r)).flatten())
                        .flatten()
                }),
                LogFormat::Json => (lsn_needed || from.is_some())
                    .then(|| json_lsn(s.payload(&r)))
                    .flatten(),
            };
            if let Some(from) = from
                && lsn.is_none_or(|l| l < from)
            {
                // Below the LSN asked for (an entry without one cannot be at
                // or above it). A damaged JSON line is still damage.
                if s.format == LogFormat::Json && check_json_line(s.payload(&r)).is_err() {
                    match s.json_line_damage(&r) {
                        Ok(Some(true)) => continue,
                        Ok(Some(false)) => return None,
                        Ok(None) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
                continue;
            }
            return Some(Ok((r, lsn)));
        }
    }

    fn scanner(&mut self) -> Option<&mut Scanner> {
        self.scanner.as_mut()
    }
}

/// A blocking iterator over the entries of a log.
///
/// Yields `Err` once and then ends when it meets damage the recovery mode
/// does not tolerate. After it ends, [`EntryIter::torn_tail`] and
/// [`EntryIter::skipped`] say what was passed over.
pub struct EntryIter<T> {
    chain: Chain,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EntryIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryIter")
            .field("path", &self.chain.scanner.as_ref().map(|s| s.path.clone()))
            .finish_non_exhaustive()
    }
}

impl<T> EntryIter<T> {
    /// After iteration ended at the end of a log that is still being
    /// written: looks again, so that later calls to `next` yield what was
    /// written since (across rotations, each entry once, in order). It
    /// reads the disk; to wait for new entries of a context in this process
    /// without polling, use [`Context::follow`](crate::Context::follow).
    ///
    /// ```no_run
    /// # use hyperlog::{Message, ReadOptions};
    /// let mut it = hyperlog::read_entries_blocking::<Message>("data/node.wal", 0, ReadOptions::default());
    /// loop {
    ///     for item in it.by_ref() {
    ///         let (_, log, lsn) = item?;
    ///         println!("{lsn:?} {:?}", log.entry.message);
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_millis(200));
    ///     it.refresh()?;
    /// }
    /// # Ok::<(), hyperlog::Error>(())
    /// ```
    pub fn refresh(&mut self) -> Result<(), Error> {
        self.chain.refresh()
    }
    /// The torn tail the log ended in, if any.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.chain.scanner.as_ref().and_then(|s| s.torn.as_ref())
    }
    /// Byte ranges skipped in `SkipCorrupted` mode (in the file being read).
    pub fn skipped(&self) -> &[Range<u64>] {
        self.chain.scanner.as_ref().map_or(&[], |s| &s.skipped)
    }
    /// The detected (or given) format.
    pub fn format(&self) -> Option<LogFormat> {
        self.chain.scanner.as_ref().map(|s| s.format)
    }
}

/// A record decoded by [`EntryIter::next_decoded`]: its offset, what it
/// decoded to, and the LSN of its binary header.
type Decoded<D> = Result<(u64, D, Option<Lsn>), Error>;

impl<T> EntryIter<T> {
    /// The next record decoded by `decode` (given the payload, its format
    /// and the LSN of its binary header), with its offset and that LSN.
    fn next_decoded<D>(
        &mut self,
        decode: impl Fn(&[u8], LogFormat, Option<Lsn>) -> serde_json::Result<D>,
    ) -> Option<Decoded<D>> {
        loop {
            let (r, lsn) = match self.chain.next_record(false)? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let s = self.chain.scanner()?;
            match decode(s.payload(&r), s.format, lsn) {
                Ok(d) => return Some(Ok((r.offset, d, lsn))),
                Err(e) => {
                    if s.format == LogFormat::Json {
                        match s.json_line_damage(&r) {
                            Ok(Some(true)) => continue,
                            Ok(Some(false)) => return None,
                            Ok(None) => {}
                            Err(err) => return Some(Err(err)),
                        }
                    }
                    let err = Error::Decode {
                        path: s.path.clone(),
                        offset: r.offset,
                        reason: e.to_string(),
                    };
                    self.chain.scanner = None;
                    return Some(Err(err));
                }
            }
        }
    }
}

impl<T: DeserializeOwned> Iterator for EntryIter<T> {
    type Item = Result<ReadItem<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_decoded(|p, _, _| serde_json::from_slice::<Log<T>>(p))
            .map(|r| {
                r.map(|(offset, log, lsn)| {
                    let lsn = lsn.or(log.lsn);
                    (offset, log, lsn)
                })
            })
    }
}

/// A blocking iterator over the entries of a log that decodes only the
/// entry and its LSN (see [`replay_blocking`]).
///
/// Ends as [`EntryIter`] does: after the first error, or at the end of the
/// log; then [`ReplayIter::torn_tail`] and [`ReplayIter::skipped`] say what
/// was passed over.
pub struct ReplayIter<T> {
    source: Source<T>,
}

/// Where a [`ReplayIter`]'s records come from.
enum Source<T> {
    /// Read, checked and decoded on the caller's thread.
    Here(EntryIter<T>),
    /// Read and checked ahead by a thread of its own (binary logs on a
    /// machine with a second core); decoded on the caller's thread.
    Ahead(Ahead),
}

impl<T> std::fmt::Debug for ReplayIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.source {
            Source::Here(_) => "here",
            Source::Ahead(_) => "read ahead",
        };
        f.debug_struct("ReplayIter")
            .field("reading", &mode)
            .finish_non_exhaustive()
    }
}

impl<T> ReplayIter<T> {
    /// The torn tail the log ended in, if any (known once iteration ended).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        match &self.source {
            Source::Here(it) => it.torn_tail(),
            Source::Ahead(a) => a.end.as_ref().and_then(|e| e.torn.as_ref()),
        }
    }
    /// Byte ranges skipped in `SkipCorrupted` mode (in the file read last;
    /// known once iteration ended).
    pub fn skipped(&self) -> &[Range<u64>] {
        match &self.source {
            Source::Here(it) => it.skipped(),
            Source::Ahead(a) => a.end.as_ref().map_or(&[], |e| &e.skipped),
        }
    }
}

/// Records a reading thread checked, their payloads back to back, all from
/// one file.
struct Batch {
    path: PathBuf,
    bytes: Vec<u8>,
    items: Vec<AheadItem>,
}

/// One item of a [`Batch`], in the log's order.
enum AheadItem {
    /// A record whose payload ends at `end` in the batch's bytes.
    Record {
        offset: u64,
        end: usize,
        lsn: Option<Lsn>,
    },
    /// What ended the read: damage or an I/O error.
    Failed(Error),
    /// The end of the log.
    End(AheadEnd),
}

/// What the reading thread knew at the end of the log.
struct AheadEnd {
    torn: Option<TornTail>,
    skipped: Vec<Range<u64>>,
}

/// The caller's side of a read-ahead: the batch being decoded.
struct Ahead {
    /// `None` once the read ended.
    rx: Option<flume::Receiver<Batch>>,
    path: PathBuf,
    bytes: Vec<u8>,
    items: std::vec::IntoIter<AheadItem>,
    /// Where the next record's payload starts in `bytes`.
    start: usize,
    end: Option<AheadEnd>,
}

/// Records per batch, and bytes (whichever comes first).
const AHEAD_RECORDS: usize = 1024;
const AHEAD_BYTES: usize = 256 * 1024;

impl Ahead {
    /// Starts a thread that walks `chain` and sends what it reads in
    /// batches.
    fn spawn(chain: Chain, path: &Path) -> Result<Ahead, Error> {
        let (tx, rx) = flume::bounded::<Batch>(4);
        std::thread::Builder::new()
            .name("hyperlog-read-ahead".into())
            .spawn(move || read_ahead(chain, &tx))
            .map_err(|e| Error::io("spawn reader thread for", path, e))?;
        Ok(Ahead {
            rx: Some(rx),
            path: path.to_path_buf(),
            bytes: Vec::new(),
            items: Vec::new().into_iter(),
            start: 0,
            end: None,
        })
    }

    /// Stops: nothing more is yielded, and the thread stops at its next send.
    fn stop(&mut self) {
        self.rx = None;
        self.items = Vec::new().into_iter();
    }

    fn next<T: DeserializeOwned>(&mut self) -> Option<Decoded<T>> {
        loop {
            let Some(item) = self.items.next() else {
                match self.rx.as_ref()?.recv() {
                    Ok(b) => {
                        self.path = b.path;
                        self.bytes = b.bytes;
                        self.items = b.items.into_iter();
                        self.start = 0;
                        continue;
                    }
                    // The thread ended without saying why: it panicked.
                    Err(_) => {
                        self.stop();
                        return Some(Err(Error::io(
                            "read",
                            self.path.clone(),
                            std::io::Error::other("the read-ahead thread stopped"),
                        )));
                    }
                }
            };
            return match item {
                AheadItem::Record { offset, end, lsn } => {
                    let payload = &self.bytes[self.start..end];
                    self.start = end;
                    match decode_value::<T>(payload, LogFormat::Binary, lsn) {
                        Ok(d) => Some(Ok((offset, d.entry, lsn.or(d.lsn)))),
                        Err(e) => {
                            self.stop();
                            Some(Err(Error::Decode {
                                path: self.path.clone(),
                                offset,
                                reason: e.to_string(),
                            }))
                        }
                    }
                }
                AheadItem::Failed(e) => {
                    self.stop();
                    Some(Err(e))
                }
                AheadItem::End(end) => {
                    self.stop();
                    self.end = Some(end);
                    None
                }
            };
        }
    }
}

/// The reading thread: walks `chain` and sends its records in batches,
/// then what ended the walk. Stops when the caller drops its side.
fn read_ahead(mut chain: Chain, tx: &flume::Sender<Batch>) {
    let new_batch = |path: PathBuf| Batch {
        path,
        bytes: Vec::with_capacity(AHEAD_BYTES + 4096),
        items: Vec::with_capacity(AHEAD_RECORDS),
    };
    let mut batch = new_batch(PathBuf::new());
    loop {
        let last = match chain.next_record(false) {
            None => Some(AheadItem::End(AheadEnd {
                torn: chain.scanner.as_ref().and_then(|s| s.torn.clone()),
                skipped: chain
                    .scanner
                    .as_ref()
                    .map_or_else(Vec::new, |s| s.skipped.clone()),
            })),
            Some(Err(e)) => Some(AheadItem::Failed(e)),
            Some(Ok((r, lsn))) => {
                let Some(s) = chain.scanner.as_ref() else {
                    continue;
                };
                if s.path != batch.path {
                    if !batch.items.is_empty()
                        && tx
                            .send(std::mem::replace(&mut batch, new_batch(s.path.clone())))
                            .is_err()
                    {
                        return;
                    }
                    batch.path.clone_from(&s.path);
                }
                batch.bytes.extend_from_slice(s.payload(&r));
                batch.items.push(AheadItem::Record {
                    offset: r.offset,
                    end: batch.bytes.len(),
                    lsn,
                });
                if (batch.items.len() >= AHEAD_RECORDS || batch.bytes.len() >= AHEAD_BYTES)
                    && tx
                        .send(std::mem::replace(&mut batch, new_batch(s.path.clone())))
                        .is_err()
                {
                    return;
                }
                None
            }
        };
        if let Some(last) = last {
            batch.items.push(last);
            let _ = tx.send(batch);
            return;
        }
    }
}

/// What [`ReplayIter`] decodes of a record: the call-site fields are skipped
/// (parsed, but not allocated).
#[derive(serde::Deserialize)]
struct EntryAndLsn<T> {
    entry: T,
    #[serde(default)]
    lsn: Option<Lsn>,
}

/// Decodes the entry of a payload and its LSN. A binary record whose
/// header carries the LSN and whose payload starts with the entry, as
/// every writer of this crate writes it, is decoded up to the entry's end:
/// its CRC-32 vouches for the rest, which holds only call-site fields. Any
/// other record is decoded whole, skipping those fields.
fn decode_value<T: DeserializeOwned>(
    payload: &[u8],
    format: LogFormat,
    header_lsn: Option<Lsn>,
) -> serde_json::Result<EntryAndLsn<T>> {
    if format == LogFormat::Binary
        && header_lsn.is_some()
        && let Some(rest) = payload.strip_prefix(b"{\"entry\":")
        && let Ok(entry) = T::deserialize(&mut serde_json::Deserializer::from_slice(rest))
    {
        return Ok(EntryAndLsn { entry, lsn: None });
    }
    serde_json::from_slice(payload)
}

impl<T: DeserializeOwned> Iterator for ReplayIter<T> {
    type Item = Result<(u64, T, Option<Lsn>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Here(it) => it
                .next_decoded(decode_value)
                .map(|r| r.map(|(offset, d, lsn)| (offset, d.entry, lsn.or(d.lsn)))),
            Source::Ahead(a) => a.next(),
        }
    }
}

/// Reads a log as [`read_entries_blocking`] does, but decodes only each
/// entry and its LSN: what recovery needs. The envelope's call-site fields
/// (file, function, line, thread, timestamp) are not allocated; in a
/// binary log, whose records carry their LSN in a CRC-checked header, they
/// are not even parsed. Items are `(offset, entry, lsn)`.
///
/// On a machine with more than one core, a binary log is read and checked
/// ahead on a thread of its own (at most four batches of 1,024 records or
/// 256 KiB ahead) while the caller's thread decodes; the thread ends with
/// the iterator. Unlike [`EntryIter`], a `ReplayIter` cannot `refresh`: to
/// follow a live log, use [`read_entries_blocking`] or
/// [`Context::follow`](crate::Context::follow).
///
/// ```no_run
/// use hyperlog::{Message, ReadOptions};
/// for item in hyperlog::replay_blocking::<Message>("data/node.wal", 0, ReadOptions::default()) {
///     let (offset, entry, lsn) = item?;
///     println!("{offset} {lsn:?} {:?}", entry.message);
/// }
/// # Ok::<(), hyperlog::Error>(())
/// ```
pub fn replay_blocking<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    from_offset: u64,
    options: ReadOptions,
) -> ReplayIter<T> {
    let it = read_entries_blocking::<T>(path.as_ref(), from_offset, options);
    // A binary log is read and checked ahead on a second core while this
    // thread decodes (a JSON log's damage checks need the decoder and the
    // reader on one thread).
    let source = if it.format() == Some(LogFormat::Binary) && crate::writer::spin_enabled() {
        match Ahead::spawn(it.chain, path.as_ref()) {
            Ok(a) => Source::Ahead(a),
            Err(e) => Source::Here(EntryIter {
                chain: Chain::failed(e),
                _t: PhantomData,
            }),
        }
    } else {
        Source::Here(it)
    };
    ReplayIter { source }
}

/// Reads a log from `from_offset` (which must be the start of a record),
/// decoding each entry into `T`, as a blocking iterator.
///
/// On a segmented write-ahead log (see [`crate::segments`]) the sealed
/// segments are read first, then the live file; offsets are then within
/// each file, and `from_offset` applies to the first file read: position a
/// segmented log with [`ReadOptions::from_lsn`].
///
/// ```no_run
/// use hyperlog::{Message, ReadOptions};
/// for item in hyperlog::read_entries_blocking::<Message>("logs/app.log.json", 0, ReadOptions::default()) {
///     let (offset, log, lsn) = item?;
///     println!("{offset} {lsn:?} {:?}", log.entry.message);
/// }
/// # Ok::<(), hyperlog::Error>(())
/// ```
pub fn read_entries_blocking<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    from_offset: u64,
    options: ReadOptions,
) -> EntryIter<T> {
    EntryIter {
        chain: Chain::open(path.as_ref(), from_offset, options, true),
        _t: PhantomData,
    }
}

/// Reads a log as a [`futures::Stream`] of `(offset, Log<T>, Option<Lsn>)`.
///
/// The file is read on a background thread and entries arrive in chunks, so
/// the stream works under any executor and never blocks it.
///
/// ```no_run
/// use futures::StreamExt;
/// use hyperlog::{Message, ReadOptions};
/// # futures::executor::block_on(async {
/// let mut entries = hyperlog::read_entries::<Message>("data/node.wal", 0, ReadOptions::default());
/// while let Some(item) = entries.next().await {
///     let (offset, log, lsn) = item?;
/// #   let _ = (offset, log, lsn);
/// }
/// # Ok::<(), hyperlog::Error>(())
/// # });
/// ```
pub fn read_entries<T>(
    path: impl AsRef<Path>,
    from_offset: u64,
    options: ReadOptions,
) -> EntryStream<T>
where
    T: DeserializeOwned + Send + 'static,
{
    let path = path.as_ref().to_path_buf();
    EntryStream(Chunked::spawn(move || {
        read_entries_blocking::<T>(&path, from_offset, options)
    }))
}

/// [`replay_blocking`] as a [`futures::Stream`] of `(offset, entry,
/// lsn)`, read on a background thread as [`read_entries`] is.
///
/// ```no_run
/// use futures::StreamExt;
/// use hyperlog::{Message, ReadOptions};
/// # futures::executor::block_on(async {
/// let mut entries = hyperlog::replay::<Message>("data/node.wal", 0, ReadOptions::default());
/// while let Some(item) = entries.next().await {
///     let (offset, entry, lsn) = item?;
/// #   let _ = (offset, entry, lsn);
/// }
/// # Ok::<(), hyperlog::Error>(())
/// # });
/// ```
pub fn replay<T>(path: impl AsRef<Path>, from_offset: u64, options: ReadOptions) -> ReplayStream<T>
where
    T: DeserializeOwned + Send + 'static,
{
    let path = path.as_ref().to_path_buf();
    ReplayStream(Chunked::spawn(move || {
        replay_blocking::<T>(&path, from_offset, options)
    }))
}

/// The items of a blocking reader, run on a thread of its own and handed
/// over in chunks of 256 (the thread stops when the stream is dropped).
struct Chunked<V: 'static> {
    rx: Option<flume::r#async::RecvStream<'static, Vec<Result<V, Error>>>>,
    current: std::vec::IntoIter<Result<V, Error>>,
}

impl<V: Send + 'static> Chunked<V> {
    fn spawn<I>(reader: impl FnOnce() -> I + Send + 'static) -> Chunked<V>
    where
        I: Iterator<Item = Result<V, Error>>,
    {
        let (tx, rx) = flume::bounded::<Vec<Result<V, Error>>>(4);
        let spawned = std::thread::Builder::new()
            .name("hyperlog-reader".into())
            .spawn(move || {
                let mut chunk = Vec::with_capacity(256);
                for item in reader() {
                    chunk.push(item);
                    if chunk.len() == 256 && tx.send(std::mem::take(&mut chunk)).is_err() {
                        return;
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.send(chunk);
                }
            });
        match spawned {
            Ok(_) => Chunked {
                rx: Some(rx.into_stream()),
                current: Vec::new().into_iter(),
            },
            Err(e) => Chunked {
                rx: None,
                current: vec![Err(Error::io("spawn reader thread for", "", e))].into_iter(),
            },
        }
    }
}

impl<V: 'static> futures::Stream for Chunked<V> {
    type Item = Result<V, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(item));
            }
            let Some(rx) = self.rx.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(rx).poll_next(cx) {
                Poll::Ready(Some(chunk)) => self.current = chunk.into_iter(),
                Poll::Ready(None) => {
                    self.rx = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<V: 'static> Unpin for Chunked<V> {}

/// The stream returned by [`read_entries`].
pub struct EntryStream<T: 'static>(Chunked<ReadItem<T>>);

/// The stream returned by [`replay`].
pub struct ReplayStream<T: 'static>(Chunked<(u64, T, Option<Lsn>)>);

impl<T: 'static> std::fmt::Debug for EntryStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryStream").finish_non_exhaustive()
    }
}

impl<T: 'static> std::fmt::Debug for ReplayStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayStream").finish_non_exhaustive()
    }
}

impl<T: 'static> futures::Stream for EntryStream<T> {
    type Item = Result<ReadItem<T>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl<T: 'static> futures::Stream for ReplayStream<T> {
    type Item = Result<(u64, T, Option<Lsn>), Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl<T: 'static> Unpin for EntryStream<T> {}
impl<T: 'static> Unpin for ReplayStream<T> {}

/// What a scan of a whole log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    /// The file's format.
    pub format: LogFormat,
    /// Intact records.
    pub records: u64,
    /// The first LSN found.
    pub first_lsn: Option<Lsn>,
    /// The last LSN found.
    pub last_lsn: Option<Lsn>,
    /// The end of the last intact record: where appending continues.
    pub valid_len: u64,
    /// The file's length.
    pub file_len: u64,
    /// The torn tail, if the file ends in one.
    pub torn: Option<TornTail>,
    /// Ranges skipped in `SkipCorrupted` mode.
    pub skipped: Vec<Range<u64>>,
    /// Where a zero-filled tail (preallocated, unused space) starts.
    pub zero_tail: Option<u64>,
}

/// Scans a whole log, checking every record (checksums, and JSON syntax for
/// JSON lines), without decoding entries.
pub fn scan_log(
    fs: &dyn FileSystem,
    path: &Path,
    format: Option<LogFormat>,
    max_record_size: u64,
    mode: RecoveryMode,
) -> Result<ScanSummary, Error> {
    scan_log_with(fs, path, format, max_record_size, mode, &mut |_, _| {})
}

/// [`scan_log`], calling `on_record(offset, lsn)` for each intact record.
pub(crate) fn scan_log_with(
    fs: &dyn FileSystem,
    path: &Path,
    format: Option<LogFormat>,
    max_record_size: u64,
    mode: RecoveryMode,
    on_record: &mut dyn FnMut(u64, Option<Lsn>),
) -> Result<ScanSummary, Error> {
    let mut s = Scanner::open(fs, path, format, max_record_size, mode)?;
    let mut sum = ScanSummary {
        format: s.format,
        records: 0,
        first_lsn: None,
        last_lsn: None,
        valid_len: 0,
        file_len: s.len,
        torn: None,
        skipped: Vec::new(),
        zero_tail: None,
    };
    while let Some(r) = s.next_raw()? {
        let lsn = match s.format {
            LogFormat::Binary => r.header_lsn,
            LogFormat::Json => {
                let line = s.payload(&r);
                if check_json_line(line).is_err() {
                    match s.json_line_damage(&r)? {
                        Some(true) => continue,
                        Some(false) => break,
                        None => {}
                    }
                }
                json_lsn(s.payload(&r))
            }
        };
        sum.records += 1;
        on_record(r.offset, lsn);
        if lsn.is_some() {
            sum.first_lsn = sum.first_lsn.or(lsn);
            sum.last_lsn = lsn;
        }
        sum.valid_len = r.end;
    }
    sum.torn = s.torn.clone();
    sum.zero_tail = s.zero_tail;
    sum.skipped = std::mem::take(&mut s.skipped);
    Ok(sum)
}

/// The LSN of a JSON payload: the fast tail form, else a parse of the `lsn`
/// field alone.
pub(crate) fn json_lsn(line: &[u8]) -> Option<Lsn> {
    if let Some(l) = json_tail_lsn(line) {
        return l;
    }
    #[derive(serde::Deserialize)]
    struct OnlyLsn {
        #[serde(default)]
        lsn: Option<Lsn>,
    }
    serde_json::from_slice::<OnlyLsn>(line)
        .ok()
        .and_then(|o| o.lsn)
}

/// The last LSN in a log: of its live file, or, when the live file holds no
/// record (absent, empty, or only preallocated zeros, as a crash right after
/// a rotation leaves it), of its newest sealed segment that holds one. So it
/// answers for the same log that [`read_entries`] reads.
///
/// A path where no log exists yet is `Ok(None)`: it is what a service asks
/// on its first boot. A path that exists but cannot be read is an error
/// naming it.
///
/// Each file is read only at its tail when it can be (the last record ends
/// exactly at the end of the file and lies in the last 1 MiB); otherwise it
/// is scanned whole in `TolerateTail` mode.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("never-written.wal");
/// let last = hyperlog::get_last_lsn_blocking(&path, &hyperlog::ReadOptions::default())?;
/// assert_eq!(last, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get_last_lsn_blocking(
    path: impl AsRef<Path>,
    options: &ReadOptions,
) -> Result<Option<Lsn>, Error> {
    let path = path.as_ref();
    if let Some(last) = file_last_lsn(path, options)? {
        return Ok(last);
    }
    let segments = crate::segments::try_list_segments(&*options.file_system, path)
        .map_err(|e| Error::io("list the segments of", path, e))?;
    for seg in segments.iter().rev() {
        if let Some(last) = file_last_lsn(&seg.path, options)? {
            return Ok(last);
        }
    }
    Ok(None)
}

/// The LSN of the last record of one file: `None` when the file holds no
/// record (or does not exist), `Some(lsn)` of its last record otherwise
/// (`Some(None)` when that record carries no LSN).
fn file_last_lsn(path: &Path, options: &ReadOptions) -> Result<Option<Option<Lsn>>, Error> {
    let fs = &*options.file_system;
    let file = match fs.open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len == 0 {
        return Ok(None);
    }
    let window = len.min(CHUNK as u64);
    let start = len - window;
    let buf = file
        .read_range(start, window as usize)
        .map_err(|e| Error::io("read", path, e))?;
    let format = match options.format {
        Some(f) => Some(f),
        None => {
            let mut head = vec![
                0u8;
                (HEADER_LEN as u64 + options.max_record_size)
                    .min(len)
                    .min(CHUNK as u64) as usize
            ];
            let n = file
                .read_at(&mut head, 0)
                .map_err(|e| Error::io("read", path, e))?;
            detect_format(&head[..n], len, options.max_record_size)
        }
    };
    if let Some(found) = tail_lsn(&buf, start, len, format, options.max_record_size) {
        return Ok(Some(found));
    }
    let sum = scan_log(
        fs,
        path,
        format,
        options.max_record_size,
        RecoveryMode::TolerateTail,
    )?;
    Ok((sum.records > 0).then_some(sum.last_lsn))
}

/// Tries to find the last record within the tail window `buf` (which starts
/// at file offset `start`). `None`: not found, scan instead.
fn tail_lsn(
    buf: &[u8],
    start: u64,
    len: u64,
    format: Option<LogFormat>,
    max: u64,
) -> Option<Option<Lsn>> {
    match format? {
        LogFormat::Json => {
            let body = buf.strip_suffix(b"\n")?;
            let line_start = match body.iter().rposition(|&c| c == b'\n') {
                Some(i) => i + 1,
                None if start == 0 => 0,
                None => return None,
            };
            let line = &body[line_start..];
            check_json_line(line).ok()?;
            Some(json_lsn(line))
        }
        LogFormat::Binary => {
            let n = buf.len();
            (0..n.saturating_sub(HEADER_LEN - 1)).find_map(|i| {
                let remaining = len - (start + i as u64);
                let h = check_binary(&buf[i..], remaining, max).ok()?;
                (i + HEADER_LEN + h.len as usize == n)
                    .then(|| h.lsn().or_else(|| json_lsn(&buf[i + HEADER_LEN..])))
            })
        }
    }
}

/// The last LSN in a log (async form of [`get_last_lsn_blocking`], run on a
/// background thread).
pub async fn get_last_lsn(path: impl AsRef<Path>) -> Result<Option<Lsn>, Error> {
    let path = path.as_ref().to_path_buf();
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("hyperlog-last-lsn".into())
        .spawn(move || {
            let _ = tx.send(get_last_lsn_blocking(&path, &ReadOptions::default()));
        })
        .map_err(|e| Error::io("spawn thread for", "", e))?;
    rx.await.unwrap_or_else(|_| {
        Err(Error::Closed {
            target: "get_last_lsn".into(),
        })
    })
}

/// One intact record as stored: its offset, its LSN and its payload (the
/// JSON of the Log, without framing or newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Where the record starts.
    pub offset: u64,
    /// Where the next record starts.
    pub end: u64,
    /// The LSN from the binary header, or the JSON `lsn` field.
    pub lsn: Option<Lsn>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// A blocking iterator over the intact records of one file, without
/// decoding entries: for tools that copy, convert or verify logs, file by
/// file (a segmented WAL's files are listed by
/// [`crate::segments::list_segments`]). Honours `from_lsn`.
pub struct RawIter {
    chain: Chain,
}

impl std::fmt::Debug for RawIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIter").finish_non_exhaustive()
    }
}

impl RawIter {
    /// After iteration ended at the end of a log that is still being
    /// written: looks again, so that later calls to `next` yield what was
    /// written since: in the one file of [`read_records`], or across
    /// rotations for [`read_log_records`]. It
    /// reads the disk; to wait for new entries of a context in this process
    /// without polling, use [`Context::follow`](crate::Context::follow).
    ///
    /// ```no_run
    /// # use hyperlog::ReadOptions;
    /// let mut it = hyperlog::read_records("data/node.wal", 0, ReadOptions::default());
    /// loop {
    ///     for item in it.by_ref() {
    ///         let rec = item?;
    ///         println!("{:?} {} bytes", rec.lsn, rec.payload.len());
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_millis(200));
    ///     it.refresh()?;
    /// }
    /// # Ok::<(), hyperlog::Error>(())
    /// ```
    pub fn refresh(&mut self) -> Result<(), Error> {
        self.chain.refresh()
    }
    /// The format being read.
    pub fn format(&self) -> Option<LogFormat> {
        self.chain.scanner.as_ref().map(|s| s.format)
    }
    /// The torn tail the log ended in, if any (known once iteration ended).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.chain.scanner.as_ref().and_then(|s| s.torn.as_ref())
    }
    /// Byte ranges skipped in `SkipCorrupted` mode (in the file being read).
    pub fn skipped(&self) -> &[Range<u64>] {
        self.chain.scanner.as_ref().map_or(&[], |s| &s.skipped)
    }
    /// Where a zero-filled (preallocated) tail starts, if any.
    pub fn zero_tail(&self) -> Option<u64> {
        self.chain.scanner.as_ref().and_then(|s| s.zero_tail)
    }
    /// The length of the file being read.
    pub fn file_len(&self) -> u64 {
        self.chain.scanner.as_ref().map_or(0, |s| s.len)
    }
}

impl Iterator for RawIter {
    type Item = Result<RawEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (r, lsn) = match self.chain.next_record(true)? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let s = self.chain.scanner()?;
            if s.format == LogFormat::Json && check_json_line(s.payload(&r)).is_err() {
                match s.json_line_damage(&r) {
                    Ok(Some(true)) => continue,
                    Ok(Some(false)) => return None,
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            return Some(Ok(RawEntry {
                offset: r.offset,
                end: r.end,
                lsn,
                payload: s.payload(&r).to_vec(),
            }));
        }
    }
}

/// Reads the intact records of a log from `from_offset` without decoding
/// them (see [`RawIter`]).
pub fn read_records(path: impl AsRef<Path>, from_offset: u64, options: ReadOptions) -> RawIter {
    RawIter {
        chain: Chain::open(path.as_ref(), from_offset, options, false),
    }
}

/// The intact records of a whole log, as [`read_records`] gives them but
/// across a segmented write-ahead log's files: its sealed segments in
/// order, then the live file, exactly as [`read_entries_blocking`] walks
/// them (also while the log is written and rotated; `from_offset` applies
/// to the first file read, position with [`ReadOptions::from_lsn`]).
/// [`RawIter::refresh`] then keeps following it across rotations. The
/// `offset` and `end` of each record are within the file it is in.
///
/// ```no_run
/// use hyperlog::ReadOptions;
/// for rec in hyperlog::read_log_records("data/node.wal", 0, ReadOptions::default()) {
///     let rec = rec?;
///     println!("{:?}: {} bytes", rec.lsn, rec.payload.len());
/// }
/// # Ok::<(), hyperlog::Error>(())
/// ```
pub fn read_log_records(path: impl AsRef<Path>, from_offset: u64, options: ReadOptions) -> RawIter {
    RawIter {
        chain: Chain::open(path.as_ref(), from_offset, options, true),
    }
}
