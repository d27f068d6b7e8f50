//! `verify`: checks every record of a log and classifies its damage.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hyperlog::format::{DEFAULT_MAX_RECORD_SIZE, HEADER_LEN, check_binary, check_json_line};
use hyperlog::{LogFormat, Lsn, ReadOptions, RecoveryMode};
use serde_json::{Value, json};

use crate::util::{Fail, Out, explain, log_files, progress, style};

/// One damaged range.
#[derive(Debug, Clone)]
pub struct DamageRange {
    /// The file it is in.
    pub file: PathBuf,
    /// Where it starts.
    pub offset: u64,
    /// Where the next intact record (or the end of the file) is.
    pub end: u64,
    /// `true`: a torn tail (runs to the end of the live file).
    pub torn: bool,
    /// What is wrong with the bytes at `offset`.
    pub reason: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The format of the log.
    pub format: Option<LogFormat>,
    /// The files read (sealed segments, then the live file).
    pub files: Vec<PathBuf>,
    /// Intact records.
    pub records: u64,
    /// First and last LSN.
    pub first_lsn: Option<Lsn>,
    /// Last LSN.
    pub last_lsn: Option<Lsn>,
    /// First timestamp.
    pub first_ts: Option<String>,
    /// Last timestamp.
    pub last_ts: Option<String>,
    /// Bytes of all files.
    pub bytes: u64,
    /// Where a zero-filled (preallocated) tail starts, per file.
    pub zero_tails: Vec<(PathBuf, u64)>,
    /// Every damaged range.
    pub damage: Vec<DamageRange>,
    /// Torn-tail side files beside the log (`{path}.torn-{offset}`).
    pub side_files: Vec<PathBuf>,
    /// Sparse indexes that cannot be used (damaged: readers scan the
    /// segment instead), with why. An index that decodes but disagrees with
    /// its segment is damage, in `damage`.
    pub unusable_indexes: Vec<(PathBuf, String)>,
    /// Whether the log is a zstd archive (offsets then count bytes of its
    /// decompressed stream).
    pub archive: bool,
    /// The length of an archive's decompressed stream.
    pub decompressed_bytes: Option<u64>,
}

impl Report {
    /// 0 clean, 1 only a torn tail, 2 corruption in the middle.
    pub fn exit_code(&self) -> u8 {
        if self.damage.iter().any(|d| !d.torn) {
            2
        } else if self.damage.is_empty() {
            0
        } else {
            1
        }
    }
}

#[derive(serde::Deserialize)]
struct Stamp {
    #[serde(default)]
    timestamp: Option<String>,
}

impl Report {
    /// Counts an intact record and notes its LSN and timestamp.
    fn note(&mut self, e: &hyperlog::RawEntry) {
        self.records += 1;
        if let Some(l) = e.lsn {
            self.first_lsn = self.first_lsn.or(Some(l));
            self.last_lsn = Some(l);
        }
        if let Ok(s) = serde_json::from_slice::<Stamp>(&e.payload)
            && let Some(ts) = s.timestamp
        {
            if self.first_ts.is_none() {
                self.first_ts = Some(ts.clone());
            }
            self.last_ts = Some(ts);
        }
    }
}

/// Why the record at `offset` of `file` is damaged, from its bytes.
pub fn reason_at(file: &Path, format: LogFormat, offset: u64) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(file)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset))?;
        let remaining = len.saturating_sub(offset);
        let want = remaining.min(HEADER_LEN as u64 + DEFAULT_MAX_RECORD_SIZE);
        let mut buf = Vec::new();
        match format {
            LogFormat::Binary => {
                f.take(HEADER_LEN as u64).read_to_end(&mut buf)?;
                if buf.len() == HEADER_LEN {
                    let n = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as u64;
                    let more = n.min(want - HEADER_LEN as u64);
                    let mut f2 = std::fs::File::open(file)?;
                    f2.seek(SeekFrom::Start(offset + HEADER_LEN as u64))?;
                    f2.take(more).read_to_end(&mut buf)?;
                }
                Ok(
                    match check_binary(&buf, remaining, DEFAULT_MAX_RECORD_SIZE) {
                        Err(d) => d.to_string(),
                        Ok(_) => "the record is intact but was skipped".into(),
                    },
                )
            }
            LogFormat::Json => {
                f.take(want).read_to_end(&mut buf)?;
                Ok(match buf.iter().position(|&c| c == b'\n') {
                    None => "the last line has no newline (a torn write)".into(),
                    Some(nl) => match check_json_line(&buf[..nl]) {
                        Err(d) => d.to_string(),
                        Ok(()) => "the line is not a valid entry".into(),
                    },
                })
            }
        }
    };
    attempt().unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// Checks every record of the zstd archive at `path`, decompressing it as
/// it goes. Damage that runs to the end of the decompressed stream is a torn
/// tail (the log was sealed that way); anything else, and an archive that
/// cannot be decompressed to its end, is corruption.
fn check_archive(path: &Path) -> Result<Report, Fail> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Fail::std("stat", path, e))?
        .len();
    let mut r = Report {
        files: vec![path.to_path_buf()],
        bytes,
        archive: true,
        ..Report::default()
    };
    let mut it = hyperlog::stream::read_archive(
        path,
        0,
        ReadOptions::new().recovery(RecoveryMode::SkipCorrupted),
    )?;
    for item in it.by_ref() {
        r.note(&item?);
    }
    if it.stream_len() > 0 {
        r.format = it.format();
    }
    r.decompressed_bytes = Some(it.stream_len());
    for d in it.damage() {
        r.damage.push(DamageRange {
            file: path.to_path_buf(),
            offset: d.start,
            end: d.end,
            torn: d.torn,
            reason: d.reason.clone(),
        });
    }
    r.side_files = hyperlog::segments::torn_side_files(&hyperlog::fs::StdFs, path)
        .map_err(|e| Fail::std("list the directory of", path, e))?;
    Ok(r)
}

/// Checks every record of every file of the log at `path` (or of the zstd
/// archive at `path`).
pub fn check(path: &Path) -> Result<Report, Fail> {
    if crate::util::is_archive(path) {
        return check_archive(path);
    }
    let files = log_files(path);
    let mut r = Report {
        files: files.clone(),
        ..Report::default()
    };
    for f in &files {
        let m = std::fs::metadata(f).map_err(|e| Fail::std("stat", f, e))?;
        r.bytes += m.len();
    }
    let bar = progress(r.bytes, "verifying");
    let n = files.len();
    for (i, file) in files.iter().enumerate() {
        let live = i + 1 == n && file.as_path() == path;
        let mut it = hyperlog::read_records(
            file,
            0,
            ReadOptions::new().recovery(RecoveryMode::SkipCorrupted),
        );
        let mut last = 0;
        let mut starts: Vec<(u64, Option<Lsn>)> = Vec::new();
        let before = r.records;
        for item in it.by_ref() {
            let e = item?;
            bar.inc(e.end - last);
            last = e.end;
            if !live {
                starts.push((e.offset, e.lsn));
            }
            r.note(&e);
        }
        // Not one intact record, and first bytes that start no record: a
        // file too short for the library to call it no log (one torn sector
        // could explain it) is still no log to report as a torn tail.
        if r.records == before
            && it.skipped().first().is_some_and(|s| s.start == 0)
            && let Some(why) = crate::util::not_log_like(file)
        {
            bar.finish_and_clear();
            return Err(Fail::io(why));
        }
        let format = it.format().unwrap_or_default();
        if r.format.is_none() && it.file_len() > 0 {
            r.format = Some(format);
        }
        if let Some(z) = it.zero_tail() {
            r.zero_tails.push((file.clone(), z));
        }
        let file_len = it.file_len();
        for range in it.skipped() {
            r.damage.push(DamageRange {
                file: file.clone(),
                offset: range.start,
                end: range.end,
                // Damage running to the end of the live file is a torn
                // tail; a sealed segment was complete when sealed.
                torn: live && range.end >= file_len,
                reason: reason_at(file, format, range.start),
            });
        }
        if !live {
            check_index(file, &starts, &mut r);
        }
        // The default mode classifies: it must agree that what runs to the
        // end is a tail and anything else is corruption in the middle.
        if live {
            match hyperlog::scan_log(
                &hyperlog::fs::StdFs,
                file,
                None,
                DEFAULT_MAX_RECORD_SIZE,
                RecoveryMode::TolerateTail,
            ) {
                Ok(_) => {}
                Err(hyperlog::Error::Corrupt { offset, reason, .. }) => {
                    if !r.damage.iter().any(|d| !d.torn && &d.file == file) {
                        r.damage.push(DamageRange {
                            file: file.clone(),
                            offset,
                            end: offset,
                            torn: false,
                            reason,
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    bar.finish_and_clear();
    r.side_files = hyperlog::segments::torn_side_files(&hyperlog::fs::StdFs, path)
        .map_err(|e| Fail::std("list the directory of", path, e))?;
    Ok(r)
}

/// Checks a sealed segment's sparse index against the records read from it
/// (`starts`: offset and LSN of each intact record). Every point must name
/// the offset where a record with that LSN starts: a point past the end of
/// the segment means the segment lost records it held when it was sealed
/// (seen after a power cut: an empty segment beside its surviving index).
fn check_index(segment: &Path, starts: &[(u64, Option<Lsn>)], r: &mut Report) {
    let idx = hyperlog::segments::index_path(segment);
    let bytes = match std::fs::read(&idx) {
        Ok(b) => b,
        // No index: readers scan the segment, nothing to check.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            r.unusable_indexes.push((idx, format!("unreadable: {e}")));
            return;
        }
    };
    let Some(points) = hyperlog::segments::decode_index(&bytes) else {
        r.unusable_indexes.push((
            idx,
            "damaged (checksum or framing); readers scan the segment".into(),
        ));
        return;
    };
    let seg_len = std::fs::metadata(segment).map(|m| m.len()).unwrap_or(0);
    for (lsn, offset) in points {
        let found = starts
            .binary_search_by_key(&offset, |s| s.0)
            .ok()
            .map(|i| starts[i].1);
        let reason = match found {
            Some(Some(l)) if l.get() == lsn => continue,
            Some(other) => format!(
                "its index {} says LSN {lsn} starts at offset {offset}, but the record there has LSN {}",
                idx.display(),
                other.map_or("none".to_string(), |l| l.get().to_string())
            ),
            None if offset >= seg_len => format!(
                "the segment is {seg_len} bytes but its index {} points to LSN {lsn} at offset {offset}: records it held when sealed are gone",
                idx.display()
            ),
            None => format!(
                "its index {} says LSN {lsn} starts at offset {offset}, but no intact record starts there",
                idx.display()
            ),
        };
        r.damage.push(DamageRange {
            file: segment.to_path_buf(),
            offset: offset.min(seg_len),
            end: seg_len,
            torn: false,
            reason,
        });
        // One report per segment: later points only repeat it.
        return;
    }
}

fn lsn_json(l: Option<Lsn>) -> Value {
    match l {
        Some(l) => json!({
            "lsn": l.get(),
            "time": crate::util::iso_ms(l.timestamp_ms()),
            "instance": l.instance_id(),
            "sequence": l.sequence(),
        }),
        None => Value::Null,
    }
}

/// The report as one JSON object.
pub fn to_json(path: &Path, r: &Report) -> Value {
    let status = match r.exit_code() {
        0 => "clean",
        1 => "torn_tail",
        _ => "corrupt",
    };
    json!({
        "path": path.display().to_string(),
        "status": status,
        "exit_code": r.exit_code(),
        "format": r.format.map(|f| match f { LogFormat::Json => "json", LogFormat::Binary => "binary" }),
        "archive": r.archive,
        "decompressed_bytes": r.decompressed_bytes,
        "offsets": if r.archive { "decompressed" } else { "file" },
        "records": r.records,
        "first_lsn": lsn_json(r.first_lsn),
        "last_lsn": lsn_json(r.last_lsn),
        "first_timestamp": r.first_ts,
        "last_timestamp": r.last_ts,
        "bytes": r.bytes,
        "segments": r.files.iter().filter(|f| f.as_path() != path).map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "zero_tail": r.zero_tails.iter().map(|(f, o)| json!({"file": f.display().to_string(), "offset": o})).collect::<Vec<_>>(),
        "torn_side_files": r.side_files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "unusable_indexes": r.unusable_indexes.iter().map(|(f, why)| json!({"file": f.display().to_string(), "reason": why})).collect::<Vec<_>>(),
        "damage": r.damage.iter().map(|d| json!({
            "file": d.file.display().to_string(),
            "offset": d.offset,
            "end": d.end,
            "bytes": d.end.saturating_sub(d.offset),
            "kind": if d.torn { "torn_tail" } else { "corruption" },
            "reason": d.reason,
        })).collect::<Vec<_>>(),
    })
}

/// `hyperlog verify`.
pub fn verify(path: &Path, as_json: bool) -> Result<u8, Fail> {
    if !path.exists() && crate::util::segment_count(path) == 0 {
        return Err(Fail::io(format!(
            "open {}: No such file or directory",
            path.display()
        )));
    }
    let r = check(path)?;
    let mut out = Out::new();
    if as_json {
        out.line(&to_json(path, &r).to_string())?;
        out.flush()?;
        return Ok(r.exit_code());
    }
    let b = style::BOLD;
    let fmt = match r.format {
        Some(LogFormat::Json) => "json lines",
        Some(LogFormat::Binary) => "binary records",
        None => "empty",
    };
    let archive = if r.archive {
        " (zstd archive, read decompressed; offsets count decompressed bytes)"
    } else {
        ""
    };
    out.line(&format!("{b}{}{b:#}", path.display()))?;
    out.line(&format!("  format      {fmt}{archive}"))?;
    if !r.archive {
        let segs = r.files.iter().filter(|f| f.as_path() != path).count();
        out.line(&format!("  segments    {segs}"))?;
    }
    out.line(&format!("  records     {}", r.records))?;
    match r.decompressed_bytes {
        Some(d) => out.line(&format!("  bytes       {} ({d} decompressed)", r.bytes))?,
        None => out.line(&format!("  bytes       {}", r.bytes))?,
    }
    let l = |x: Option<Lsn>| x.map_or("-".to_string(), |l| format!("{l} ({})", explain(l)));
    out.line(&format!("  first lsn   {}", l(r.first_lsn)))?;
    out.line(&format!("  last lsn    {}", l(r.last_lsn)))?;
    out.line(&format!(
        "  first time  {}",
        r.first_ts.as_deref().unwrap_or("-")
    ))?;
    out.line(&format!(
        "  last time   {}",
        r.last_ts.as_deref().unwrap_or("-")
    ))?;
    for (f, z) in &r.zero_tails {
        out.line(&format!(
            "  zero tail   {} from offset {z} (preallocated, clean)",
            f.display()
        ))?;
    }
    for (f, why) in &r.unusable_indexes {
        out.line(&format!("  index       {} {why}", f.display()))?;
    }
    print_side_files(&mut out, &r.side_files)?;
    for d in &r.damage {
        let (st, kind) = if d.torn {
            (style::WARN, "torn tail")
        } else {
            (style::BAD, "corruption")
        };
        let file = if d.file.as_path() == path {
            String::new()
        } else {
            format!(" in {}", d.file.display())
        };
        let of = if r.archive {
            " of the decompressed stream"
        } else {
            ""
        };
        out.line(&format!(
            "  {st}{kind}{st:#} at offset {}{of}{file} ({} bytes): {}",
            d.offset,
            d.end.saturating_sub(d.offset),
            d.reason
        ))?;
    }
    let (st, word) = match (r.exit_code(), r.archive) {
        (0, _) => (style::GOOD, "clean"),
        (1, false) => (style::WARN, "torn tail (run `hyperlog repair` to cut it)"),
        (1, true) => (
            style::WARN,
            "torn tail inside the archive (archives are never modified: `hyperlog cat` prints the intact records before it)",
        ),
        (_, false) => (
            style::BAD,
            "corrupt in the middle (run `hyperlog repair --salvage` to copy the intact records)",
        ),
        (_, true) => (
            style::BAD,
            "corrupt archive (archives are never modified: `hyperlog cat --recovery skip` prints every intact record)",
        ),
    };
    out.line(&format!("  status      {st}{word}{st:#}"))?;
    out.flush()?;
    Ok(r.exit_code())
}

/// Lists torn-tail side files and how to remove them (`verify` and `stats`).
pub fn print_side_files(out: &mut Out, files: &[PathBuf]) -> Result<(), Fail> {
    for f in files {
        out.line(&format!(
            "  side file   {} (bytes a crash left after the last intact record, cut off on open; kept as evidence, never read: inspect, then `rm` it)",
            f.display()
        ))?;
    }
    Ok(())
}
