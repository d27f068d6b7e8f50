//! `repair`: cut a torn tail, or salvage the intact records of a damaged log.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hyperlog::format::DEFAULT_MAX_RECORD_SIZE;
use hyperlog::{LogFormat, ReadOptions, RecoveryMode};

use crate::util::{
    Fail, Out, check_overwrite, is_archive, log_files, not_log_like, style, sync_parent,
};

/// A torn tail repair cuts: `[offset, len)` of `file` goes to `side`.
struct Cut {
    file: PathBuf,
    offset: u64,
    len: u64,
    side: PathBuf,
    reason: String,
    records: u64,
    /// Why this cut needed --force, if it did.
    forced: Option<&'static str>,
}

/// What repair makes of one file of the log.
enum Plan {
    /// Nothing to cut (a tail of preallocated zeros is clean).
    Clean {
        records: u64,
        zero_tail: Option<u64>,
    },
    /// A tail to cut.
    Cut(Cut),
    /// Left alone, and why (the whole repair is then refused).
    Refuse(String),
}

fn side_path(file: &Path, offset: u64) -> PathBuf {
    PathBuf::from(format!("{}.torn-{offset}", file.display()))
}

/// Decides what to do with one file: `sealed` for a sealed segment of a
/// segmented WAL, `log` the path the user gave (for the advice).
fn plan(file: &Path, log: &Path, sealed: bool, force: bool) -> Result<Plan, Fail> {
    let cut_all = |reason: String| -> Result<Plan, Fail> {
        let len = std::fs::metadata(file)
            .map_err(|e| Fail::std("stat", file, e))?
            .len();
        Ok(Plan::Cut(Cut {
            file: file.to_path_buf(),
            offset: 0,
            len,
            side: side_path(file, 0),
            reason,
            records: 0,
            forced: Some("it does not look like a log"),
        }))
    };
    let not_log = |why: String| {
        Plan::Refuse(format!(
            "{why}. Repair leaves it alone; only if it really is a log whose every record is damaged, --force moves all of it into {} and empties it",
            side_path(file, 0).display()
        ))
    };
    let salvage = format!("hyperlog repair {} --salvage --output NEW", log.display());
    let sum = match hyperlog::scan_log(
        &hyperlog::fs::StdFs,
        file,
        None,
        DEFAULT_MAX_RECORD_SIZE,
        RecoveryMode::TolerateTail,
    ) {
        Ok(s) => s,
        Err(hyperlog::Error::Corrupt { offset, reason, .. }) => {
            return Ok(Plan::Refuse(format!(
                "{} is damaged in the middle at byte offset {offset} ({reason}); cutting there would drop intact records{}. Copy the intact records instead: {salvage}",
                file.display(),
                if sealed { " of a sealed segment" } else { "" },
            )));
        }
        Err(e @ hyperlog::Error::NotALog { .. }) => {
            return if force {
                cut_all(e.to_string())
            } else {
                Ok(not_log(e.to_string()))
            };
        }
        Err(e) => return Err(e.into()),
    };
    let Some(torn) = sum.torn else {
        return Ok(Plan::Clean {
            records: sum.records,
            zero_tail: sum.zero_tail,
        });
    };
    if sum.records == 0
        && torn.offset == 0
        && let Some(why) = not_log_like(file)
    {
        return if force {
            cut_all(why)
        } else {
            Ok(not_log(why))
        };
    }
    if sealed && !force {
        return Ok(Plan::Refuse(format!(
            "{} is a sealed segment that ends in a torn tail at byte offset {} ({}): it was complete and synced when it was sealed, so this is damage to acknowledged data, not a crash mid-write. Repair does not cut a sealed segment without --force (which keeps the {} bytes in {}); or copy the intact records instead: {salvage}",
            file.display(),
            torn.offset,
            torn.reason,
            sum.file_len - torn.offset,
            side_path(file, torn.offset).display()
        )));
    }
    Ok(Plan::Cut(Cut {
        file: file.to_path_buf(),
        offset: torn.offset,
        len: sum.file_len,
        side: side_path(file, torn.offset),
        reason: torn.reason,
        records: sum.records,
        forced: sealed.then_some("it is a sealed segment"),
    }))
}

/// `hyperlog repair PATH [--dry-run] [--force]`: cuts a torn tail off the
/// live file, keeping its bytes in `{path}.torn-{offset}`.
///
/// It never destroys and never cuts on a guess: a zstd archive is refused
/// (nothing to repair); so is a file that does not look like a log (no
/// intact record, first bytes that start no record) and the torn tail of a
/// sealed segment (it was complete when sealed: damage to acknowledged
/// data), unless `force`; damage in the middle is always refused (left to
/// `--salvage`). Sealed segments of a segmented WAL are checked with the
/// live file; when anything is refused, nothing at all is changed.
pub fn cut_tail(path: &Path, dry_run: bool, force: bool) -> Result<u8, Fail> {
    if is_archive(path) {
        return Err(Fail::corrupt(format!(
            "refusing to repair {}: it is a zstd archive of a rotated log, written whole and never appended to: there is nothing to repair. Read it with `hyperlog cat {}`; `hyperlog verify` checks it",
            path.display(),
            path.display()
        )));
    }
    let segments = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, path);
    if !path.exists() && segments.is_empty() {
        return Err(Fail::io(format!(
            "open {}: No such file or directory",
            path.display()
        )));
    }
    let mut out = Out::new();
    let w = style::WARN;
    if let Err((p, reason)) = hyperlog::segments::check_chain(&segments) {
        out.line(&format!(
            "{w}warning:{w:#} the segment chain is broken at {}: {reason} (repair cannot bring segments back)",
            p.display()
        ))?;
    }
    let mut plans = Vec::new();
    for seg in &segments {
        plans.push((seg.path.clone(), plan(&seg.path, path, true, force)?));
    }
    if path.exists() {
        // A sealed segment named directly is still a sealed segment.
        let sealed = is_sealed_segment(path);
        plans.push((path.to_path_buf(), plan(path, path, sealed, force)?));
    }
    let mut cuts = Vec::new();
    let mut refusals = Vec::new();
    let mut clean_records = 0u64;
    for (file, p) in plans {
        match p {
            Plan::Clean { records, zero_tail } => {
                clean_records += records;
                if let Some(z) = zero_tail
                    && file.as_path() != path
                {
                    out.line(&format!(
                        "{}: preallocated zeros from offset {z} (clean; the next open of the log trims them)",
                        file.display()
                    ))?;
                }
            }
            Plan::Cut(c) => cuts.push(c),
            Plan::Refuse(why) => refusals.push(why),
        }
    }
    if let [why] = refusals.as_slice() {
        out.flush()?;
        return Err(Fail::corrupt(format!(
            "refusing to repair {}: {why}. Nothing was changed",
            path.display()
        )));
    }
    if !refusals.is_empty() {
        let b = style::BAD;
        for why in &refusals {
            out.line(&format!("{b}refused{b:#}: {why}"))?;
        }
        out.flush()?;
        return Err(Fail::corrupt(format!(
            "refusing to repair {}: {} problems, listed above. Nothing was changed",
            path.display(),
            refusals.len()
        )));
    }
    if cuts.is_empty() {
        let segs = if segments.is_empty() {
            String::new()
        } else {
            format!(" in {} sealed segments and the live file", segments.len())
        };
        out.line(&format!(
            "{}: no torn tail ({clean_records} intact records{segs}); nothing to do",
            path.display(),
        ))?;
        out.flush()?;
        return Ok(0);
    }
    for c in &cuts {
        let forced = c
            .forced
            .map_or(String::new(), |why| format!(" [--force: {why}]"));
        out.line(&format!(
            "{}: {w}torn tail{w:#} at offset {} ({}): will cut {} bytes (offset {}..{}), keep them in {}, and truncate {} to {} bytes ({} intact records){forced}",
            c.file.display(),
            c.offset,
            c.reason,
            c.len - c.offset,
            c.offset,
            c.len,
            c.side.display(),
            if c.file == path { "the log" } else { "the segment" },
            c.offset,
            c.records
        ))?;
    }
    if dry_run {
        out.line("dry run: nothing changed")?;
        out.flush()?;
        return Ok(0);
    }
    out.flush()?;
    // The live file's lock keeps a writer (which also seals segments) out
    // for the whole repair.
    let _lock = if path.exists() {
        Some(lock(path)?)
    } else {
        None
    };
    for c in &cuts {
        cut(c)?;
        let g = style::GOOD;
        out.line(&format!(
            "{g}repaired{g:#}: cut {} bytes at offset {} of {}; they are in {}",
            c.len - c.offset,
            c.offset,
            c.file.display(),
            c.side.display()
        ))?;
    }
    out.flush()?;
    Ok(0)
}

/// Whether `path` is named as a sealed segment of a segmented WAL
/// (`{stem}.{id:08}.{first_lsn:020}.{ext}` beside the live `{stem}.{ext}`).
fn is_sealed_segment(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 4 {
        return false;
    }
    let n = parts.len();
    let live = path.with_file_name(format!("{}.{}", parts[..n - 3].join("."), parts[n - 1]));
    hyperlog::segments::parse_segment_name(&live, name).is_some()
}

/// Opens `path` for writing and takes its lock, refusing when a writer
/// holds it.
fn lock(path: &Path) -> Result<std::fs::File, Fail> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Fail::std("open", path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Fail::io(format!(
            "refusing to repair {}: another writer holds it (close that writer first)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Fail::std("lock", path, e)),
    }
}

/// Copies `[offset, len)` of the file into its side file (synced, with its
/// directory entry), then truncates the file to `offset` and syncs it.
fn cut(c: &Cut) -> Result<(), Fail> {
    let path = c.file.as_path();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Fail::std("open", path, e))?;
    // The file may have changed since it was scanned.
    let len = f.metadata().map_err(|e| Fail::std("stat", path, e))?.len();
    if len != c.len {
        return Err(Fail::io(format!(
            "{} changed while it was being repaired ({} -> {len} bytes); run repair again",
            path.display(),
            c.len
        )));
    }
    let mut sf = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&c.side)
        .map_err(|e| Fail::std("create", &c.side, e))?;
    f.seek(SeekFrom::Start(c.offset))
        .map_err(|e| Fail::std("seek", path, e))?;
    let copied = std::io::copy(&mut (&mut f).take(len - c.offset), &mut sf)
        .map_err(|e| Fail::std("copy the tail of", path, e))?;
    if copied != len - c.offset {
        return Err(Fail::io(format!(
            "{} changed while it was being repaired (read {copied} of {} bytes); {} holds what was read, the log is unchanged",
            path.display(),
            len - c.offset,
            c.side.display()
        )));
    }
    sf.sync_all().map_err(|e| Fail::std("fsync", &c.side, e))?;
    sync_parent(&c.side);
    f.set_len(c.offset)
        .map_err(|e| Fail::std("truncate", path, e))?;
    f.sync_all().map_err(|e| Fail::std("fsync", path, e))?;
    Ok(())
}

/// `hyperlog repair PATH --salvage [--output NEW]`: copies every intact
/// record into a new file.
pub fn salvage(
    path: &Path,
    output: Option<PathBuf>,
    dry_run: bool,
    force: bool,
) -> Result<u8, Fail> {
    if is_archive(path) {
        return Err(Fail::corrupt(format!(
            "refusing to salvage {}: it is a zstd archive of a rotated log, never modified: there is nothing to repair. Read it with `hyperlog cat {}` (`--recovery skip` passes over damage); `hyperlog convert` writes its intact records to a plain log",
            path.display(),
            path.display()
        )));
    }
    let target = output.unwrap_or_else(|| PathBuf::from(format!("{}.salvaged", path.display())));
    if target.as_path() == path {
        return Err(Fail::io(format!(
            "--output must differ from the log {}: salvage never modifies the original",
            path.display()
        )));
    }
    if !dry_run {
        check_overwrite(&target, force)?;
    }
    let files = log_files(path);
    let mut buf = Vec::new();
    let mut records = 0u64;
    let mut skipped: Vec<(PathBuf, u64, u64)> = Vec::new();
    let mut format: Option<LogFormat> = None;
    for file in &files {
        let mut it = hyperlog::read_records(
            file,
            0,
            ReadOptions::new().recovery(RecoveryMode::SkipCorrupted),
        );
        let this_format = it.format().unwrap_or_default();
        for item in it.by_ref() {
            let e = item?;
            let f = *format.get_or_insert(this_format);
            match f {
                LogFormat::Binary => hyperlog::format::encode_binary(&e.payload, e.lsn, &mut buf),
                LogFormat::Json => {
                    buf.extend_from_slice(&e.payload);
                    buf.push(b'\n');
                }
            }
            records += 1;
        }
        skipped.extend(it.skipped().iter().map(|r| (file.clone(), r.start, r.end)));
    }
    let mut out = Out::new();
    if !dry_run {
        let mut f = std::fs::File::create(&target).map_err(|e| Fail::std("create", &target, e))?;
        f.write_all(&buf)
            .and_then(|()| f.sync_all())
            .map_err(|e| Fail::std("write", &target, e))?;
        sync_parent(&target);
    }
    let verb = if dry_run { "would salvage" } else { "salvaged" };
    out.line(&format!(
        "{verb} {records} intact records ({} bytes) from {} into {}",
        buf.len(),
        path.display(),
        target.display()
    ))?;
    out.line(&format!("skipped {} damaged ranges", skipped.len()))?;
    for (file, a, b) in &skipped {
        out.line(&format!(
            "  {}: offset {a}..{b} ({} bytes)",
            file.display(),
            b - a
        ))?;
    }
    if dry_run {
        out.line("dry run: nothing written")?;
    }
    out.flush()?;
    Ok(0)
}
