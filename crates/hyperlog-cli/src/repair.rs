//! `repair`: cut a torn tail, or salvage the intact records of a damaged log.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hyperlog::format::DEFAULT_MAX_RECORD_SIZE;
use hyperlog::{LogFormat, ReadOptions, RecoveryMode};

use crate::util::{Fail, Out, check_overwrite, log_files, style, sync_parent};

/// `hyperlog repair PATH [--dry-run]`: cuts a torn tail, keeping its bytes
/// in `{path}.torn-{offset}`.
pub fn cut_tail(path: &Path, dry_run: bool) -> Result<u8, Fail> {
    let sum = match hyperlog::scan_log(
        &hyperlog::fs::StdFs,
        path,
        None,
        DEFAULT_MAX_RECORD_SIZE,
        RecoveryMode::TolerateTail,
    ) {
        Ok(s) => s,
        Err(hyperlog::Error::Corrupt { offset, reason, .. }) => {
            return Err(Fail::corrupt(format!(
                "refusing to repair {}: it is damaged in the middle at byte offset {offset} ({reason}); cutting there would drop intact records. Copy the intact records instead: hyperlog repair {} --salvage --output NEW",
                path.display(),
                path.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Out::new();
    let Some(torn) = sum.torn else {
        out.line(&format!(
            "{}: no torn tail ({} intact records); nothing to do",
            path.display(),
            sum.records
        ))?;
        out.flush()?;
        return Ok(0);
    };
    let cut = sum.file_len - torn.offset;
    let side = PathBuf::from(format!("{}.torn-{}", path.display(), torn.offset));
    let w = style::WARN;
    out.line(&format!(
        "{}: {w}torn tail{w:#} at offset {} ({}): will cut {cut} bytes (offset {}..{}), keep them in {}, and truncate the log to {} bytes ({} intact records)",
        path.display(),
        torn.offset,
        torn.reason,
        torn.offset,
        sum.file_len,
        side.display(),
        torn.offset,
        sum.records
    ))?;
    if dry_run {
        out.line("dry run: nothing changed")?;
        out.flush()?;
        return Ok(0);
    }
    out.flush()?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Fail::std("open", path, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Fail::io(format!(
                "refusing to repair {}: another writer holds it (close that writer first)",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Fail::std("lock", path, e)),
    }
    // The file may have changed between the scan and the lock.
    let len = f.metadata().map_err(|e| Fail::std("stat", path, e))?.len();
    if len != sum.file_len {
        return Err(Fail::io(format!(
            "{} changed while it was being repaired ({} -> {len} bytes); run repair again",
            path.display(),
            sum.file_len
        )));
    }
    let mut bytes = Vec::with_capacity(cut as usize);
    f.seek(SeekFrom::Start(torn.offset))
        .and_then(|_| (&mut f).take(cut).read_to_end(&mut bytes))
        .map_err(|e| Fail::std("read", path, e))?;
    let mut sf = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&side)
        .map_err(|e| Fail::std("create", &side, e))?;
    sf.write_all(&bytes)
        .and_then(|()| sf.sync_all())
        .map_err(|e| Fail::std("write", &side, e))?;
    sync_parent(&side);
    f.set_len(torn.offset)
        .map_err(|e| Fail::std("truncate", path, e))?;
    f.sync_all().map_err(|e| Fail::std("fsync", path, e))?;
    let g = style::GOOD;
    out.line(&format!(
        "{g}repaired{g:#}: cut {cut} bytes at offset {}; they are in {}",
        torn.offset,
        side.display()
    ))?;
    out.flush()?;
    Ok(0)
}

/// `hyperlog repair PATH --salvage [--output NEW]`: copies every intact
/// record into a new file.
pub fn salvage(
    path: &Path,
    output: Option<PathBuf>,
    dry_run: bool,
    force: bool,
) -> Result<u8, Fail> {
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
