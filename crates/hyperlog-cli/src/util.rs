//! Shared pieces: errors and exit codes, output, the walk over a log's files,
//! time formatting, progress bars.

use std::io::{IsTerminal, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use hyperlog::fs::StdFs;
use hyperlog::stream::StreamRecords;
use hyperlog::{LogFormat, Lsn, RawEntry, RawIter, ReadOptions, RecoveryMode, TornTail};

/// A failure: the exit code and a one-line message (empty: exit quietly).
#[derive(Debug)]
pub struct Fail {
    /// The process exit status.
    pub code: u8,
    /// What went wrong, naming the path.
    pub msg: String,
}

impl Fail {
    /// An I/O or usage error (exit 3).
    pub fn io(msg: impl Into<String>) -> Fail {
        Fail {
            code: 3,
            msg: msg.into(),
        }
    }
    /// Corruption or a refused repair (exit 2).
    pub fn corrupt(msg: impl Into<String>) -> Fail {
        Fail {
            code: 2,
            msg: msg.into(),
        }
    }
    /// A std I/O error while doing `op` on `path` (exit 3).
    pub fn std(op: &str, path: &Path, e: std::io::Error) -> Fail {
        Fail::io(format!("{op} {}: {e}", path.display()))
    }
}

impl From<hyperlog::Error> for Fail {
    fn from(e: hyperlog::Error) -> Fail {
        // `NotALog` (an archive where a plain log was expected, the other
        // format than the one asked for, no log at all) is a usage error.
        let code = match e {
            hyperlog::Error::Corrupt { .. } | hyperlog::Error::Decode { .. } => 2,
            _ => 3,
        };
        Fail {
            code,
            msg: e.to_string(),
        }
    }
}

/// Buffered, color-aware standard output that turns a closed pipe into a
/// quiet exit.
pub struct Out {
    w: std::io::BufWriter<anstream::Stdout>,
}

impl Out {
    /// Standard output; colors only on a terminal and without `NO_COLOR`.
    pub fn new() -> Out {
        Out {
            w: std::io::BufWriter::with_capacity(64 * 1024, anstream::stdout()),
        }
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) -> Result<(), Fail> {
        self.w
            .write_all(s.as_bytes())
            .and_then(|()| self.w.write_all(b"\n"))
            .map_err(closed)
    }

    /// Flushes to the terminal or pipe.
    pub fn flush(&mut self) -> Result<(), Fail> {
        self.w.flush().map_err(closed)
    }
}

fn closed(e: std::io::Error) -> Fail {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Fail {
            code: 0,
            msg: String::new(),
        }
    } else {
        Fail::io(format!("write stdout: {e}"))
    }
}

/// Styles used on a terminal.
pub mod style {
    use anstyle::{AnsiColor, Style};
    /// Headings and labels.
    pub const BOLD: Style = Style::new().bold();
    /// A clean result.
    pub const GOOD: Style = Style::new()
        .bold()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
    /// A torn tail or a warning.
    pub const WARN: Style = Style::new()
        .bold()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
    /// Corruption.
    pub const BAD: Style = Style::new()
        .bold()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
    /// Secondary text.
    pub const DIM: Style = Style::new().dimmed();

    /// The style of a level name.
    pub fn level(level: &str) -> Style {
        match level.to_ascii_uppercase().as_str() {
            "TRACE" | "DEBUG" => DIM,
            "INFO" => Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green))),
            "WARN" | "WARNING" => WARN,
            _ => BAD,
        }
    }
}

/// The files of the log at `path`: a segmented WAL's sealed segments in
/// order, then the live file (when it exists, or when there are no segments).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let segs = hyperlog::segments::list_segments(&StdFs, path);
    let mut v: Vec<PathBuf> = segs.into_iter().map(|s| s.path).collect();
    if v.is_empty() || path.exists() {
        v.push(path.to_path_buf());
    }
    v
}

/// Whether `path` is a zstd archive of a rotated log: it starts with the
/// zstd magic bytes (`28 b5 2f fd`), whatever its name, or its name ends in
/// `.zst` (an archive whose first bytes are damaged, or that is empty, is
/// still an archive: never a plain log to scan or cut).
pub fn is_archive(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "zst") {
        return true;
    }
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| hyperlog::format::is_zstd(&head))
}

/// Up to `n` first bytes of `path` (fewer when it is shorter or unreadable).
pub fn head(path: &Path, n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(n).read_to_end(&mut v);
    }
    v
}

/// For a file known to hold no intact record: when its first bytes start
/// neither a JSON line nor a binary record header, why `path` does not look
/// like a log (the library's wording); `None` when they could start one (a
/// log whose first record was cut short).
pub fn not_log_like(path: &Path) -> Option<String> {
    let h = head(path, hyperlog::format::START_LEN as u64);
    if hyperlog::format::plausible_start(&h, hyperlog::format::DEFAULT_MAX_RECORD_SIZE) {
        return None;
    }
    let first: Vec<String> = h.iter().take(16).map(|c| format!("{c:02x}")).collect();
    Some(format!(
        "{} does not look like a log: it holds no intact record, and its first bytes ({}) start neither a JSON line nor a binary record header",
        path.display(),
        first.join(" ")
    ))
}

/// The records of one file of a log: a plain file through the library's
/// scanner, or a zstd archive decompressed as it is read (its offsets count
/// decompressed bytes).
pub enum FileRecords {
    /// A plain log file or sealed segment.
    Plain(RawIter),
    /// A zstd archive.
    Archive(StreamRecords),
}

impl FileRecords {
    /// Opens `file` at `from_offset` (of the decompressed stream, for an
    /// archive).
    pub fn open(file: &Path, from_offset: u64, opts: ReadOptions) -> Result<FileRecords, Fail> {
        Ok(if is_archive(file) {
            FileRecords::Archive(hyperlog::stream::read_archive(file, from_offset, opts)?)
        } else {
            FileRecords::Plain(hyperlog::read_records(file, from_offset, opts))
        })
    }

    /// Whether this is an archive.
    pub fn is_archive(&self) -> bool {
        matches!(self, FileRecords::Archive(_))
    }

    /// The format read.
    pub fn format(&self) -> Option<LogFormat> {
        match self {
            FileRecords::Plain(it) => it.format(),
            FileRecords::Archive(it) => it.format(),
        }
    }

    /// The torn tail the file ended in (once iteration ended).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        match self {
            FileRecords::Plain(it) => it.torn_tail(),
            FileRecords::Archive(it) => it.torn_tail(),
        }
    }

    /// Ranges skipped in `SkipCorrupted` mode.
    pub fn skipped(&self) -> &[Range<u64>] {
        match self {
            FileRecords::Plain(it) => it.skipped(),
            FileRecords::Archive(it) => it.skipped(),
        }
    }
}

impl Iterator for FileRecords {
    type Item = Result<RawEntry, hyperlog::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            FileRecords::Plain(it) => it.next(),
            FileRecords::Archive(it) => it.next(),
        }
    }
}

/// The number of sealed segments beside `path`.
pub fn segment_count(path: &Path) -> usize {
    hyperlog::segments::list_segments(&StdFs, path).len()
}

/// What a walk passed over.
#[derive(Debug, Default)]
pub struct WalkEnd {
    /// Torn tails: (file, offset, reason).
    pub torn: Vec<(PathBuf, u64, String)>,
    /// Skipped ranges (SkipCorrupted): (file, start, end).
    pub skipped: Vec<(PathBuf, u64, u64)>,
    /// The format of the last file read.
    pub format: Option<hyperlog::LogFormat>,
    /// The end of the last intact record of the last file.
    pub last_end: u64,
    /// The files read that are zstd archives (their offsets count
    /// decompressed bytes).
    pub archives: Vec<PathBuf>,
}

impl WalkEnd {
    /// " of its decompressed stream" for an archive, else "".
    pub fn offsets_in(&self, file: &Path) -> &'static str {
        if self.archives.iter().any(|a| a == file) {
            " of its decompressed stream"
        } else {
            ""
        }
    }
}

/// The files to read for entries at or above `from_lsn`, and the byte offset
/// to start at in the first: the segments before the last one whose name
/// starts at or below `from_lsn` are left out, and in that segment the
/// sparse index gives the offset (0 without a usable index). So damage
/// entirely below `from_lsn`, in earlier segments or before the index point,
/// is never read. Without `from_lsn` (or below every segment): every file,
/// from 0.
fn files_from_lsn(path: &Path, from_lsn: Option<Lsn>) -> (Vec<PathBuf>, u64) {
    let segs = hyperlog::segments::list_segments(&StdFs, path);
    let start = from_lsn.and_then(|l| {
        let i = segs
            .iter()
            .rposition(|s| s.first_lsn.is_some_and(|f| f <= l))?;
        Some((i, hyperlog::segments::seek_offset(&StdFs, &segs[i].path, l)))
    });
    let (skip, offset) = start.unwrap_or((0, 0));
    let mut v: Vec<PathBuf> = segs.into_iter().skip(skip).map(|s| s.path).collect();
    if v.is_empty() || path.exists() {
        v.push(path.to_path_buf());
    }
    (v, offset)
}

/// Calls `f` with every intact record of every file of the log, in order;
/// `f` returns `false` to stop. A nonzero `from_offset` applies to the first
/// file of the log. With `from_lsn` (and `from_offset` 0), only entries at or
/// above it are passed to `f`, and reading starts where the segment names
/// and the sparse index put them (see [`files_from_lsn`]). `format` forces a
/// format (a file of the other one is an error). A zstd archive is
/// decompressed as it is read.
pub fn walk(
    path: &Path,
    from_offset: u64,
    from_lsn: Option<Lsn>,
    mode: RecoveryMode,
    format: Option<LogFormat>,
    mut f: impl FnMut(&Path, RawEntry) -> Result<bool, Fail>,
) -> Result<WalkEnd, Fail> {
    let (files, from_offset) = match from_lsn {
        Some(_) if from_offset == 0 => files_from_lsn(path, from_lsn),
        _ => (log_files(path), from_offset),
    };
    let mut options = ReadOptions::new().recovery(mode);
    if let Some(l) = from_lsn {
        options = options.from_lsn(l);
    }
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let bar = progress(total, "reading");
    let mut end = WalkEnd::default();
    let n = files.len();
    for (i, file) in files.iter().enumerate() {
        let start = if i == 0 { from_offset } else { 0 };
        let mut opts = options.clone();
        opts.format = format;
        let mut it = FileRecords::open(file, start, opts)?;
        let archive = it.is_archive();
        if archive {
            end.archives.push(file.clone());
        }
        let mut last = start;
        let mut stopped = false;
        for item in it.by_ref() {
            let e = item?;
            if !archive {
                // Decompressed offsets do not measure the compressed file.
                bar.inc(e.end - last);
            }
            last = e.end;
            if !f(file, e)? {
                stopped = true;
                break;
            }
        }
        // A file with no intact record whose first bytes start no record
        // is no log (the library lets one that short pass as a log whose
        // first sector a power cut garbled): not "a torn tail at 0".
        if last == 0
            && it.torn_tail().is_some_and(|t| t.offset == 0)
            && let Some(why) = not_log_like(file)
        {
            bar.finish_and_clear();
            return Err(Fail::io(why));
        }
        end.format = it.format();
        end.last_end = last;
        end.skipped
            .extend(it.skipped().iter().map(|r| (file.clone(), r.start, r.end)));
        if let Some(t) = it.torn_tail() {
            if i + 1 < n && mode != RecoveryMode::SkipCorrupted {
                bar.finish_and_clear();
                return Err(Fail::corrupt(format!(
                    "{} is damaged at byte offset {}{}: a sealed segment ends in damage: {}",
                    file.display(),
                    t.offset,
                    end.offsets_in(file),
                    t.reason
                )));
            }
            end.torn.push((file.clone(), t.offset, t.reason.clone()));
        }
        if stopped {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(end)
}

/// A progress bar on stderr for scans of more than 8 MiB, hidden when stderr
/// is not a terminal.
pub fn progress(total_bytes: u64, what: &str) -> indicatif::ProgressBar {
    if total_bytes < 8 << 20 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    if let Ok(s) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(s.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Unix-epoch milliseconds as ISO-8601 UTC (`2026-11-24T13:53:10.201Z`).
pub fn iso_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// Unix seconds as `(year, month, day, hour, minute, second)` in UTC.
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an ISO-8601 timestamp (`2026-11-24T13:53:10.201385+00:00`, or with
/// `Z`) into Unix seconds (the fraction dropped).
pub fn parse_ts_secs(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { ts.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    // A trailing offset `+HH:MM` / `-HH:MM`.
    if b.len() >= 25 {
        let tail = &ts[ts.len() - 6..];
        let sign = match tail.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => 0,
        };
        if sign != 0 && tail.as_bytes()[3] == b':' {
            let oh: i64 = tail[1..3].parse().ok()?;
            let om: i64 = tail[4..6].parse().ok()?;
            secs -= sign * (oh * 3600 + om * 60);
        }
    }
    Some(secs)
}

/// `lsn (time, instance, sequence)` as words.
pub fn explain(lsn: Lsn) -> String {
    format!(
        "{} instance {} seq {}",
        iso_ms(lsn.timestamp_ms()),
        lsn.instance_id(),
        lsn.sequence()
    )
}

/// Refuses to overwrite `path` unless `force`.
pub fn check_overwrite(path: &Path, force: bool) -> Result<(), Fail> {
    if path.exists() && !force {
        return Err(Fail::io(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    Ok(())
}

/// Fsyncs the directory holding `path`, so a new or renamed file survives a
/// power loss.
pub fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip() {
        let s = parse_ts_secs("2026-11-24T13:53:10.201385+00:00").unwrap();
        assert_eq!(iso_ms(s as u64 * 1000), "2026-11-24T13:53:10.000Z");
        assert_eq!(parse_ts_secs("2026-11-24T15:53:10+02:00"), Some(s));
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
