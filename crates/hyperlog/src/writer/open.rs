//! Opening and recovery: what happens to a file before the first write, on the
//! writer thread.
//!
//! The writer appends only to a file it holds the lock on and that holds intact
//! records up to its end. A torn tail is cut off only after it has been saved
//! to a side file beside the log and that file's directory entry synced, so
//! recovery destroys nothing; a tail of preallocated zeros is simply trimmed. A
//! file of the other format is refused rather than appended to (only a complete
//! first record decides: one cut short by a crash is read in the configured
//! format and cut as a torn tail). A file that is not a log at all is refused
//! with [`Error::NotALog`] and left byte for byte as it was: a zstd archive,
//! or a file with no intact record whose first bytes start neither a JSON
//! line nor a binary record header (a PNG, a tarball; the scan decides, see
//! `Scanner::refuse_foreign`), so a mistyped path never has its bytes moved
//! into a `.torn-` side file. New LSNs continue above the last one on
//! disk, the live file's or, when it holds none, the last sealed segment's, and
//! for a write-ahead log the sealed segments must form a chain (unless damage
//! is to be skipped). A file with LSNs keeps a sparse index of its records
//! for the segment it is sealed into; when it is reopened with records, the
//! index points of those are rebuilt from the recovery scan, so the first
//! segment sealed after a reopen has a complete index too.
//! A file created here has its directory entry synced before anything is
//! written to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::producer::{Request, Shared};
use super::{Sink, SinkConfig, Writer, WriterConfig};
use crate::format::{self, HEADER_LEN, LogFormat};
use crate::fs::{FileSystem, WritableFile, parent_dir};
use crate::group_commit::GroupCommit;
use crate::lsn::LsnGenerator;
use crate::reader::{ScanSummary, scan_log_with};
use crate::rotation::Rotation;
use crate::{DurabilityMode, Error, Lsn, RecoveryMode};

/// What recovery did when an existing file was opened for append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log file.
    pub path: PathBuf,
    /// Whether the file was created by this open.
    pub created: bool,
    /// Intact records found.
    pub records: u64,
    /// The first LSN in the file.
    pub first_lsn: Option<Lsn>,
    /// The last LSN on disk; new LSNs continue above it.
    pub last_lsn: Option<Lsn>,
    /// Bytes of torn tail cut off the end.
    pub bytes_cut: u64,
    /// The side file that keeps the cut bytes.
    pub saved_to: Option<PathBuf>,
    /// What was wrong with the tail.
    pub tail_damage: Option<String>,
    /// Damaged ranges accepted in the middle (with `RecoveryMode::SkipCorrupted`).
    pub skipped: Vec<std::ops::Range<u64>>,
}

impl Writer {
    pub(super) fn open(
        cfg: WriterConfig,
        shared: Arc<Shared>,
        rx: flume::Receiver<Request>,
    ) -> Result<(Writer, Option<RecoveryReport>), Error> {
        let mut lsn = cfg.lsn_instance.map(LsnGenerator::new);
        let mut rotation = None;
        let mut file_system = None;
        let mut live_first_lsn = None;
        // The last LSN on disk (the live file's, else the newest segment's).
        let mut on_disk_last = None;
        // The live file's sparse index (keyed by LSN, so only with LSNs).
        let mut index = None;
        let (sink, report) = match cfg.sink {
            SinkConfig::Console(stream) => (Sink::Console(stream), None),
            SinkConfig::File { path, fs, mode } => {
                let (mut file, report, points) = open_file(
                    &*fs,
                    &path,
                    mode,
                    cfg.format,
                    cfg.max_record_size,
                    cfg.recovery,
                    cfg.lsn_instance.is_some(),
                )?;
                index = points;
                if let (Some(g), Some(last)) = (lsn.as_mut(), report.last_lsn) {
                    g.resume_after(last);
                }
                let good_len = file.len().map_err(|e| Error::io("stat", &path, e))?;
                // What a crash left may have reached the OS without a sync:
                // one sync makes it durable before the watermark says so.
                if cfg.durability.syncs() && good_len > 0 {
                    file.sync_data()
                        .map_err(|e| Error::io("fdatasync", &path, e))?;
                }
                let mut last_on_disk = report.last_lsn;
                let wal = cfg.durability.syncs() || cfg.lsn_instance.is_some();
                if wal {
                    // Sealed segments must form a chain; the live file continues it.
                    let segments = crate::segments::try_list_segments(&*fs, &path)
                        .map_err(|e| Error::io("list the directory of", &path, e))?;
                    if let Err((p, reason)) = crate::segments::check_chain(&segments)
                        && cfg.recovery != RecoveryMode::SkipCorrupted
                    {
                        return Err(Error::Corrupt {
                            path: p,
                            offset: 0,
                            reason,
                        });
                    }
                    // Zeros a crash left in sealed segments before rotation
                    // trimmed them: tidied now; what cannot be goes to the
                    // error handler and does not stop the open.
                    crate::segments::trim_sealed_zeros(
                        &*fs,
                        &path,
                        cfg.max_record_size,
                        &mut |e| shared.handle_error(&e),
                    );
                    if report.last_lsn.is_none()
                        && let (Some(g), Some(last)) = (lsn.as_mut(), segments.last())
                    {
                        let opts = crate::reader::ReadOptions::default()
                            .file_system(fs.clone())
                            .max_record_size(cfg.max_record_size);
                        if let Some(l) = crate::reader::get_last_lsn_blocking(&last.path, &opts)? {
                            g.resume_after(l);
                            last_on_disk = Some(l);
                        }
                    }
                }
                live_first_lsn = report.first_lsn;
                file_system = Some(fs.clone());
                if let Some(l) = last_on_disk {
                    shared.durable.advance(l);
                }
                on_disk_last = last_on_disk;
                if let Some(policy) = cfg.retention {
                    let s = shared.clone();
                    let on_error: Arc<dyn Fn(Error) + Send + Sync> = Arc::new(move |e| s.report(e));
                    let r = Rotation::open(
                        policy,
                        fs.clone(),
                        &path,
                        mode,
                        report.created,
                        wal,
                        if wal { cfg.preallocate } else { 0 },
                        on_error,
                    )?;
                    rotation = Some((r, fs, mode));
                }
                (
                    Sink::File {
                        path,
                        file,
                        good_len,
                        allocated: good_len,
                    },
                    Some(report),
                )
            }
        };
        let group_max = if cfg.durability == DurabilityMode::Fsync {
            1
        } else {
            cfg.batch_max_size
        };
        // Pipelined group commit where the file system can sync from
        // another thread; the writer then gathers without waiting (the sync
        // thread waits for companions instead).
        let pipeline = match &sink {
            Sink::File { file, .. }
                if cfg.durability == DurabilityMode::FsyncBatch
                    && cfg.sync_thread
                    && file.syncer().is_some() =>
            {
                Some(super::pipeline::SyncStage::start(
                    shared.clone(),
                    group_max,
                    cfg.batch_max_bytes,
                )?)
            }
            _ => None,
        };
        Ok((
            Writer {
                sink,
                shared,
                rx: Some(rx),
                backlog: Default::default(),
                finished: false,
                format: cfg.format,
                lsn,
                caller: cfg
                    .caller_lsns
                    .then_some(super::CallerLsns { last: on_disk_last }),
                durability: cfg.durability,
                group_max,
                group: GroupCommit::new(
                    group_max,
                    cfg.batch_max_bytes,
                    cfg.batch_timeout,
                    cfg.durability.syncs() && pipeline.is_none(),
                ),
                prealloc_step: cfg.preallocate,
                extension: None,
                records_in_buf: 0,
                index,
                index_pending: Vec::new(),
                rotation,
                fs: file_system,
                cut_pending: false,
                dir_sync: None,
                pipeline,
                rotation_us: 0,
                live_first_lsn,
                max_record_size: cfg.max_record_size,
                buf: Vec::with_capacity(64 * 1024),
                err_buf: Vec::new(),
                acks: Vec::new(),
            },
            report,
        ))
    }
}

/// The sparse index points of a file's records, when `index`: `(lsn,
/// offset)` of the first record with an LSN and then of the first one at
/// least [`INDEX_STRIDE`](crate::segments::INDEX_STRIDE) bytes past the
/// previous point, as the writer adds them (`commit.rs`).
type IndexPoints = Option<Vec<(u64, u64)>>;

/// Opens `path` for appending: creates it (and its directory entry, synced)
/// or recovers it (cuts a torn tail into a side file), and takes the lock.
/// With `index`, also returns the sparse index points of the records kept.
/// A file that is not a log is refused before anything is changed: the scan
/// that recovery starts with returns [`Error::NotALog`].
fn open_file(
    fs: &dyn FileSystem,
    path: &Path,
    mode: u32,
    format: LogFormat,
    max_record_size: u64,
    recovery: RecoveryMode,
    index: bool,
) -> Result<(Box<dyn WritableFile>, RecoveryReport, IndexPoints), Error> {
    let mut points = index.then(Vec::new);
    let dir = parent_dir(path);
    fs.create_dir_all(&dir)
        .map_err(|e| Error::io("create directory", &dir, e))?;
    let (mut file, created) = fs
        .open_append(path, mode)
        .map_err(|e| Error::io("open", path, e))?;
    if !file.try_lock().map_err(|e| Error::io("lock", path, e))? {
        return Err(Error::Locked {
            path: path.to_path_buf(),
        });
    }
    let mut report = RecoveryReport {
        path: path.to_path_buf(),
        created,
        records: 0,
        first_lsn: None,
        last_lsn: None,
        bytes_cut: 0,
        saved_to: None,
        tail_damage: None,
        skipped: Vec::new(),
    };
    if created {
        fs.sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        return Ok((file, report, points));
    }
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len == 0 {
        return Ok((file, report, points));
    }
    // Only a complete first record of the other format is a mismatch; a
    // first record cut short by a crash is read in the configured format
    // (and cut off as a torn tail).
    let head = read_range(
        fs,
        path,
        0,
        len.min(HEADER_LEN as u64 + max_record_size).min(1 << 20),
    )?;
    if let Some(found) = format::detect_complete(&head, len, max_record_size)
        && found != format
    {
        return Err(Error::InvalidOption {
            context: path.display().to_string(),
            option: "format",
            reason: format!(
                "{} holds {:?} records but the context is configured for {:?}",
                path.display(),
                found,
                format
            ),
        });
    }
    let mut on_record = |offset: u64, lsn: Option<Lsn>| {
        if let (Some(points), Some(lsn)) = (points.as_mut(), lsn)
            && crate::segments::index_point_due(points.last().map(|p| p.1), offset)
        {
            points.push((lsn.get(), offset));
        }
    };
    let sum: ScanSummary = scan_log_with(
        fs,
        path,
        Some(format),
        max_record_size,
        recovery,
        &mut on_record,
    )?;
    report.records = sum.records;
    report.first_lsn = sum.first_lsn;
    report.last_lsn = sum.last_lsn;
    report.skipped = sum.skipped.clone();
    if let Some(torn) = &sum.torn {
        report.tail_damage = Some(format!("at offset {}: {}", torn.offset, torn.reason));
    }
    if sum.valid_len < len && sum.torn.is_none() && sum.zero_tail.is_some() {
        // Only preallocated zeros after the data: nothing to keep.
        file.truncate(sum.valid_len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", path, e))?;
    } else if sum.valid_len < len {
        // Keep the cut bytes beside the log: nothing is destroyed.
        let cut = read_range(fs, path, sum.valid_len, len)?;
        let side = side_file(fs, path, sum.valid_len);
        fs.write_new(&side, &cut, mode)
            .map_err(|e| Error::io("save torn tail to", &side, e))?;
        fs.sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        file.truncate(sum.valid_len)
            .map_err(|e| Error::io("truncate", path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", path, e))?;
        report.bytes_cut = len - sum.valid_len;
        report.saved_to = Some(side);
    }
    Ok((file, report, points))
}

fn read_range(fs: &dyn FileSystem, path: &Path, from: u64, to: u64) -> Result<Vec<u8>, Error> {
    let f = fs.open_read(path).map_err(|e| Error::io("open", path, e))?;
    f.read_range(from, (to - from) as usize)
        .map_err(|e| Error::io("read", path, e))
}

/// `{path}.torn-{offset}` (with a counter if taken).
fn side_file(fs: &dyn FileSystem, path: &Path, offset: u64) -> PathBuf {
    let base = format!("{}.torn-{offset}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs.exists(&candidate) {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}
