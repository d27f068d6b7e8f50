//! Injected faults at every step of the write path, and damage to logs at
//! rest.
//!
//! **Section 1, the fault sweep.** A scripted workload runs against
//! [`SimFs`] (through [`Wrap`], which adds the operations `SimFs` does not
//! inject into: `allocate`, `list_dir`, `open_read`). For every kind of
//! fault and every call of its operation that the workload makes (`at` =
//! 1..=N, N counted in a healthy run), the fault is injected once, and again
//! from that call on (sticky). Each run checks:
//!
//! * nothing hangs (every test has a deadline) and no library thread panics;
//! * every `log()` that returned `Ok` is in the crash image (the file system
//!   as it is, which is what a killed process leaves) and, for `Fsync` and
//!   `FsyncBatch`, in the power-cut image too (`SimFs::power_cut` with torn
//!   sectors): so every entry that was not made durable got an `Err`;
//! * after `heal()`, each image reopens in `TolerateTail`, accepts an append
//!   with an LSN above everything on disk, and reads back every acknowledged
//!   entry exactly once, with its LSN, LSNs strictly increasing, and no entry
//!   that was never written.
//!
//! The workloads cover (a) appends in Flush, Fsync and FsyncBatch,
//! (b) segmented write-ahead logs (small `max_size`, LSNs on),
//! (c) data-plane rotation with zstd archiving on the background archiver,
//! (d) opening a log with a torn tail (cut into `{path}.torn-{offset}`),
//! (e) `Context::truncate_before` between appends.
//!
//! **Section 2**: every single-bit flip of a small JSON-lines log, read in
//! every recovery mode, against an oracle that predicts the exact outcome.
//!
//! **Section 3**: a 512-byte sector overwritten with zeros or garbage in the
//! middle of a log, and garbage appended, in both formats and every mode,
//! read and reopened.
//!
//! The sweeps found four library bugs (RELIABILITY.md describes each); they
//! are fixed, every sweep runs every fault kind, and a `regression_` test
//! runs each bug's scenario on its own.
//!
//! Long mode: `HYPERLOG_FAULT_SCALE=4` multiplies every workload's entries
//! (so the injection points) by 4, `HYPERLOG_FLIP_ENTRIES=5` flips the bits
//! of a 5-entry JSON log instead of 3:
//!
//! ```text
//! HYPERLOG_FAULT_SCALE=4 HYPERLOG_FLIP_ENTRIES=5 cargo test -p hyperlog --test faults -- --nocapture
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use common::{EIO, ENOSPC, inner_file_methods, with_deadline};
use hyperlog::fs::{Fault, FileSystem, Op, ReadableFile, SimFs, WritableFile};
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Error, Log, LogFormat, LogLevel, Logger, Lsn, Message,
    ReadOptions, RecoveryMode, RetentionPolicy,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Panics in library threads
// ---------------------------------------------------------------------------

/// Panics seen on hyperlog's own threads (writers, archivers).
static LIBRARY_PANICS: AtomicU64 = AtomicU64::new(0);

fn count_library_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("hyperlog"))
            {
                LIBRARY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// The wrapper: faults in allocate, list_dir and open_read
// ---------------------------------------------------------------------------

/// Operations injected by [`Wrap`] (the others are `SimFs`'s own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum XOp {
    Allocate,
    ListDir,
    OpenRead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XFault {
    Errno(i32),
    /// `allocate` extends the file with zeros up to the next 4 KiB boundary
    /// short of the target, then fails with ENOSPC (a disk that filled up
    /// during preallocation).
    PartialAllocate,
}

#[derive(Debug, Default)]
struct XState {
    calls: HashMap<XOp, u64>,
    rules: Vec<(XOp, u64, bool, XFault)>,
}

/// `SimFs` plus faults in the operations it does not inject into.
#[derive(Debug, Clone)]
struct Wrap {
    sim: SimFs,
    x: Arc<Mutex<XState>>,
}

impl Wrap {
    fn new(sim: SimFs) -> Wrap {
        Wrap {
            sim,
            x: Arc::default(),
        }
    }
    fn check(&self, op: XOp) -> Option<XFault> {
        let mut s = self.x.lock().unwrap();
        let n = s.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        s.rules
            .iter()
            .find(|r| r.0 == op && (n == r.1 || (r.2 && n >= r.1)))
            .map(|r| r.3)
    }
    fn fail(&self, op: XOp, at: u64, sticky: bool, f: XFault) {
        self.x.lock().unwrap().rules.push((op, at, sticky, f));
    }
    fn calls(&self, op: XOp) -> u64 {
        self.x.lock().unwrap().calls.get(&op).copied().unwrap_or(0)
    }
    fn heal(&self) {
        self.sim.heal();
        self.x.lock().unwrap().rules.clear();
    }
}

struct WrapFile {
    inner: Box<dyn WritableFile>,
    fs: Wrap,
}

impl WritableFile for WrapFile {
    inner_file_methods!(write, sync_data, truncate, len, try_lock);
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        match self.fs.check(XOp::Allocate) {
            None => self.inner.allocate(len),
            Some(XFault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(XFault::PartialAllocate) => {
                let cur = self.inner.len()?;
                let part = (cur / 4096 + 1) * 4096;
                if part < len {
                    self.inner.allocate(part)?;
                }
                Err(io::Error::from_raw_os_error(ENOSPC))
            }
        }
    }
}

impl FileSystem for Wrap {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let (inner, created) = self.sim.open_append(path, mode)?;
        Ok((
            Box::new(WrapFile {
                inner,
                fs: self.clone(),
            }),
            created,
        ))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        if let Some(XFault::Errno(e)) = self.check(XOp::OpenRead) {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.sim.open_read(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.sim.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        self.sim.write_new(path, data, mode)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        if let Some(XFault::Errno(e)) = self.check(XOp::ListDir) {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.sim.list_dir(dir)
    }
}

// ---------------------------------------------------------------------------
// Fault kinds
// ---------------------------------------------------------------------------

/// A kind of fault and the operation it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// `open_append` (create or open) fails with EIO.
    Open,
    /// `write` (also `write_new`, which writes side files, `.meta`, indexes) fails with EIO.
    WriteEio,
    /// The same with ENOSPC.
    WriteEnospc,
    /// `write` stores at most 3 bytes.
    ShortWrite,
    /// `fdatasync` fails with EIO.
    Sync,
    /// `truncate` (`set_len`) fails with EIO.
    Truncate,
    /// `rename` fails with EIO.
    Rename,
    /// `remove_file` fails with EIO.
    Remove,
    /// Directory fsync fails with EIO.
    SyncDir,
    /// Preallocation fails with ENOSPC, nothing written.
    Allocate,
    /// Preallocation writes some zeros, then fails with ENOSPC.
    AllocatePartial,
    /// Listing a directory fails with EIO.
    ListDir,
    /// Opening a file for reading fails with EIO.
    OpenRead,
    /// A write stores 5 bytes, the next fails with ENOSPC, and every
    /// `truncate` fails, so the partial record cannot be cut back: a torn
    /// record is left in the file.
    PartialWriteNoCut,
}

const ALL_KINDS: [Kind; 14] = [
    Kind::Open,
    Kind::WriteEio,
    Kind::WriteEnospc,
    Kind::ShortWrite,
    Kind::Sync,
    Kind::Truncate,
    Kind::Rename,
    Kind::Remove,
    Kind::SyncDir,
    Kind::Allocate,
    Kind::AllocatePartial,
    Kind::ListDir,
    Kind::OpenRead,
    Kind::PartialWriteNoCut,
];

impl Kind {
    fn arm(self, fs: &Wrap, at: u64, sticky: bool) {
        let sim = |op, f| fs.sim.fail(op, at, sticky, f);
        match self {
            Kind::Open => sim(Op::Open, Fault::Errno(EIO)),
            Kind::WriteEio => sim(Op::Write, Fault::Errno(EIO)),
            Kind::WriteEnospc => sim(Op::Write, Fault::Errno(ENOSPC)),
            Kind::ShortWrite => sim(Op::Write, Fault::ShortWrite(3)),
            Kind::Sync => sim(Op::Sync, Fault::Errno(EIO)),
            Kind::Truncate => sim(Op::Truncate, Fault::Errno(EIO)),
            Kind::Rename => sim(Op::Rename, Fault::Errno(EIO)),
            Kind::Remove => sim(Op::Remove, Fault::Errno(EIO)),
            Kind::SyncDir => sim(Op::SyncDir, Fault::Errno(EIO)),
            Kind::Allocate => fs.fail(XOp::Allocate, at, sticky, XFault::Errno(ENOSPC)),
            Kind::AllocatePartial => fs.fail(XOp::Allocate, at, sticky, XFault::PartialAllocate),
            Kind::ListDir => fs.fail(XOp::ListDir, at, sticky, XFault::Errno(EIO)),
            Kind::OpenRead => fs.fail(XOp::OpenRead, at, sticky, XFault::Errno(EIO)),
            Kind::PartialWriteNoCut => {
                fs.sim.fail(Op::Write, at, false, Fault::ShortWrite(5));
                fs.sim.fail(Op::Write, at + 1, sticky, Fault::Errno(ENOSPC));
                fs.sim.fail(Op::Truncate, 1, true, Fault::Errno(EIO));
            }
        }
    }

    fn calls(self, fs: &Wrap) -> u64 {
        match self {
            Kind::Open => fs.sim.calls(Op::Open),
            Kind::WriteEio | Kind::WriteEnospc | Kind::ShortWrite | Kind::PartialWriteNoCut => {
                fs.sim.calls(Op::Write)
            }
            Kind::Sync => fs.sim.calls(Op::Sync),
            Kind::Truncate => fs.sim.calls(Op::Truncate),
            Kind::Rename => fs.sim.calls(Op::Rename),
            Kind::Remove => fs.sim.calls(Op::Remove),
            Kind::SyncDir => fs.sim.calls(Op::SyncDir),
            Kind::Allocate | Kind::AllocatePartial => fs.calls(XOp::Allocate),
            Kind::ListDir => fs.calls(XOp::ListDir),
            Kind::OpenRead => fs.calls(XOp::OpenRead),
        }
    }
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Ent {
    level: LogLevel,
    message: Option<String>,
    producer: u32,
    seq: u32,
}

impl Entry for Ent {
    fn level(&self) -> LogLevel {
        self.level
    }
}

/// The producer of the entries a torn-tail scenario finds on disk.
const SEEDED: u32 = 7;
/// The producer of the entry appended after each reopening.
const AFTER: u32 = 99;

fn ent(producer: u32, seq: u32) -> Ent {
    Ent {
        level: LogLevel::Info,
        message: Some(format!(
            "p{producer} s{seq} {}",
            "x".repeat((seq % 5) as usize * 20)
        )),
        producer,
        seq,
    }
}

/// A scripted workload.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    mode: DurabilityMode,
    format: LogFormat,
    lsn: bool,
    /// Rotation at this `max_size`.
    rotate: Option<u64>,
    preallocate: u64,
    producers: u32,
    /// Entries per producer.
    entries: u32,
    /// The log starts with this many entries and a torn record after them.
    torn_start: Option<u32>,
    /// `truncate_before` after every this many entries.
    truncate_every: Option<u32>,
    /// A healthy context writes this many entries first (and closes): the
    /// faulted run reopens an existing log (with segments, when rotating).
    prefill: u32,
}

impl Scenario {
    fn path(&self) -> PathBuf {
        PathBuf::from(match self.format {
            LogFormat::Binary => "/d/f.wal",
            _ => "/d/f.json",
        })
    }

    /// A data-plane log whose rotation archives with zstd.
    fn archives(&self) -> bool {
        self.rotate.is_some() && !self.mode.syncs() && !self.lsn
    }

    fn opts(&self, fs: Arc<dyn FileSystem>) -> ContextOptions {
        let o = ContextOptions::new()
            .path(self.path())
            .durability(self.mode)
            .format(self.format)
            .enable_lsn(self.lsn)
            .preallocate(self.preallocate)
            .file_system(fs)
            .error_handler(|_| {});
        let o = if self.lsn { o.instance_id(5) } else { o };
        match self.rotate {
            Some(m) => o.retention_policy(RetentionPolicy::new().max_size(m)),
            None => o,
        }
    }
}

const FLUSH_JSON: Scenario = Scenario {
    name: "(a) Flush, JSON, one file",
    mode: DurabilityMode::Flush,
    format: LogFormat::Json,
    lsn: true,
    rotate: None,
    preallocate: 0,
    producers: 1,
    entries: 12,
    torn_start: None,
    truncate_every: None,
    prefill: 0,
};

const NONE_BINARY: Scenario = Scenario {
    name: "(a) None, binary, one file (no acknowledgement promise: reopen and reads only)",
    mode: DurabilityMode::None,
    format: LogFormat::Binary,
    ..FLUSH_JSON
};

const FSYNC_BINARY: Scenario = Scenario {
    name: "(a) Fsync, binary, one file, preallocated",
    mode: DurabilityMode::Fsync,
    format: LogFormat::Binary,
    preallocate: 4096,
    ..FLUSH_JSON
};

const BATCH_JSON_4P: Scenario = Scenario {
    name: "(a) FsyncBatch, JSON, one file, 4 producers",
    mode: DurabilityMode::FsyncBatch,
    format: LogFormat::Json,
    preallocate: 4096,
    producers: 4,
    entries: 6,
    ..FLUSH_JSON
};

const WAL_SEGMENTS_BATCH: Scenario = Scenario {
    name: "(b) segmented WAL, FsyncBatch, binary",
    mode: DurabilityMode::FsyncBatch,
    format: LogFormat::Binary,
    rotate: Some(1024),
    preallocate: 4096,
    entries: 20,
    ..FLUSH_JSON
};

const WAL_SEGMENTS_FSYNC_JSON: Scenario = Scenario {
    name: "(b) segmented WAL, Fsync, JSON",
    mode: DurabilityMode::Fsync,
    format: LogFormat::Json,
    rotate: Some(1024),
    preallocate: 0,
    entries: 16,
    ..FLUSH_JSON
};

const DATA_ZSTD: Scenario = Scenario {
    name: "(c) data-plane rotation, Flush, JSON, zstd archiver",
    mode: DurabilityMode::Flush,
    format: LogFormat::Json,
    lsn: false,
    rotate: Some(1024),
    entries: 20,
    ..FLUSH_JSON
};

const TORN_BATCH: Scenario = Scenario {
    name: "(d) torn tail on open, FsyncBatch, binary",
    mode: DurabilityMode::FsyncBatch,
    format: LogFormat::Binary,
    preallocate: 4096,
    entries: 8,
    torn_start: Some(6),
    ..FLUSH_JSON
};

const TORN_FLUSH_JSON: Scenario = Scenario {
    name: "(d) torn tail on open, Flush, JSON",
    entries: 8,
    torn_start: Some(6),
    ..FLUSH_JSON
};

const WAL_SEGMENTS_REOPENED: Scenario = Scenario {
    name: "(b) segmented WAL reopened with 3 segments, FsyncBatch, binary",
    mode: DurabilityMode::FsyncBatch,
    format: LogFormat::Binary,
    rotate: Some(1024),
    preallocate: 4096,
    entries: 12,
    prefill: 20,
    ..FLUSH_JSON
};

const TRUNCATE_BATCH: Scenario = Scenario {
    name: "(e) truncate_before, segmented WAL, FsyncBatch, binary",
    mode: DurabilityMode::FsyncBatch,
    format: LogFormat::Binary,
    rotate: Some(1024),
    preallocate: 4096,
    entries: 32,
    truncate_every: Some(8),
    ..FLUSH_JSON
};

/// What one run did.
#[derive(Debug, Default)]
struct Run {
    /// Acknowledged entries (the seeded ones of a torn-tail scenario too).
    acked: Vec<(Option<Lsn>, Ent)>,
    open_err: Option<String>,
    log_errs: usize,
    truncate_errs: usize,
    close_err: Option<String>,
    /// The highest LSN passed to `truncate_before`.
    truncated_below: Option<Lsn>,
    /// The file system right before `close` (a killed process's image).
    crash: Option<SimFs>,
    /// The power-cut image right before `close` (syncing modes).
    power: Option<SimFs>,
    /// How many calls each kind's operation got before the reopen checks.
    calls: HashMap<Kind, u64>,
}

impl Run {
    fn surfaced(&self) -> bool {
        self.open_err.is_some()
            || self.log_errs > 0
            || self.truncate_errs > 0
            || self.close_err.is_some()
    }
}

/// A copy of everything that exists now (what a killed process leaves:
/// the page cache survives).
fn crash_image(sim: &SimFs) -> SimFs {
    let img = SimFs::new();
    for p in sim.list() {
        if let Some(d) = sim.contents(&p) {
            img.put(&p, &d);
        }
    }
    img
}

/// Writes the log a torn-tail scenario starts from: `n` entries of
/// [`SEEDED`] and half of one more record. Returns the entries.
fn seed_torn(sc: &Scenario, n: u32, sim: &SimFs) -> Vec<(Option<Lsn>, Ent)> {
    let scratch = SimFs::new();
    let path = sc.path();
    let logger = Logger::new();
    let opts = Scenario {
        rotate: None,
        ..*sc
    }
    .opts(Arc::new(scratch.clone()));
    let ctx = logger.context_with_blocking("seed", opts).unwrap();
    let mut v = Vec::new();
    for s in 0..=n {
        let lsn = ctx.log_blocking(ent(SEEDED, s)).unwrap();
        v.push((lsn, ent(SEEDED, s)));
    }
    ctx.close_blocking().unwrap();
    let bytes = scratch.contents(&path).unwrap();
    let offsets: Vec<u64> = hyperlog::read_entries_blocking::<Ent>(
        &path,
        0,
        ReadOptions::default().file_system(Arc::new(scratch)),
    )
    .map(|i| i.unwrap().0)
    .collect();
    let last = offsets[n as usize] as usize;
    let cut = last + (bytes.len() - last) / 2;
    sim.put(&path, &bytes[..cut]);
    v.truncate(n as usize);
    v
}

fn power_seed(sc: &Scenario, kind: Option<Kind>, at: u64, sticky: bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let s = format!("{} {kind:?} {at} {sticky}", sc.name);
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `HYPERLOG_FAULT_SCALE` multiplies every workload's entry count (default
/// 1, the CI size; the long mode in RELIABILITY.md uses 4).
fn scale() -> u32 {
    std::env::var("HYPERLOG_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs the workload with `fault` armed (from the start of the run).
fn run_workload(sc: &Scenario, fault: Option<(Kind, u64, bool)>) -> Run {
    let sim = SimFs::new();
    let mut run = Run::default();
    if let Some(n) = sc.torn_start {
        run.acked = seed_torn(sc, n, &sim);
    }
    let fs = Wrap::new(sim.clone());
    if sc.prefill > 0 {
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking("prefill", sc.opts(Arc::new(fs.clone())))
            .unwrap();
        for s in 0..sc.prefill {
            let lsn = ctx.log_blocking(ent(SEEDED, s)).unwrap();
            run.acked.push((lsn, ent(SEEDED, s)));
        }
        ctx.close_blocking().unwrap();
    }
    // Calls are counted from here.
    let base: HashMap<Kind, u64> = ALL_KINDS.iter().map(|k| (*k, k.calls(&fs))).collect();
    if let Some((kind, at, sticky)) = fault {
        kind.arm(&fs, base[&kind] + at, sticky);
    }
    let logger = Logger::new();
    match logger.context_with_blocking("f", sc.opts(Arc::new(fs.clone()))) {
        Err(e) => run.open_err = Some(e.to_string()),
        Ok(ctx) => {
            let acked: Mutex<Vec<(Option<Lsn>, Ent)>> = Mutex::new(std::mem::take(&mut run.acked));
            let errs = AtomicU64::new(0);
            if sc.producers == 1 {
                for s in 0..sc.entries * scale() {
                    match ctx.log_blocking(ent(0, s)) {
                        // `None` acknowledges on enqueue: no promise to check.
                        Ok(_) if sc.mode == DurabilityMode::None => {}
                        Ok(lsn) => acked.lock().unwrap().push((lsn, ent(0, s))),
                        Err(_) => {
                            errs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(every) = sc.truncate_every
                        && (s + 1) % every == 0
                    {
                        // Below an entry acknowledged a few entries ago.
                        let a = acked.lock().unwrap();
                        if let Some((Some(before), _)) = a.len().checked_sub(3).map(|i| &a[i]) {
                            let before = *before;
                            drop(a);
                            if ctx.truncate_before_blocking(before).is_err() {
                                run.truncate_errs += 1;
                            }
                            run.truncated_below = run.truncated_below.max(Some(before));
                        }
                    }
                }
            } else {
                std::thread::scope(|scope| {
                    for p in 0..sc.producers {
                        let (ctx, acked, errs) = (&ctx, &acked, &errs);
                        scope.spawn(move || {
                            for s in 0..sc.entries * scale() {
                                match ctx.log_blocking(ent(p, s)) {
                                    Ok(lsn) => acked.lock().unwrap().push((lsn, ent(p, s))),
                                    Err(_) => {
                                        errs.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        });
                    }
                });
            }
            run.acked = acked.into_inner().unwrap();
            run.log_errs = errs.load(Ordering::Relaxed) as usize;
            if !sc.archives() {
                // The archiver works in the background: a copy taken file by
                // file while it renames could show a state no crash leaves.
                run.crash = Some(crash_image(&sim));
            }
            if sc.mode.syncs() {
                let (kind, at, sticky) = fault.map_or((None, 0, false), |f| (Some(f.0), f.1, f.2));
                run.power = Some(sim.power_cut(power_seed(sc, kind, at, sticky), true));
            }
            if let Err(e) = ctx.close_blocking() {
                run.close_err = Some(e.to_string());
            }
        }
    }
    let _ = logger.close_blocking();
    for k in ALL_KINDS {
        run.calls.insert(k, k.calls(&fs) - base[&k]);
    }
    fs.heal();
    if run.crash.is_none() {
        // After close (the archiver has finished): the file system as it is.
        run.crash = Some(sim);
    }
    run
}

/// Everything readable in an image: the log (segments, then the live file)
/// and, for a data-plane log, its archives.
fn read_everything(sc: &Scenario, img: &SimFs) -> Result<Vec<(Option<Lsn>, Ent)>, String> {
    let mut out = Vec::new();
    let mut read = |fs: SimFs, path: &Path| -> Result<(), String> {
        for item in hyperlog::read_entries_blocking::<Ent>(
            path,
            0,
            ReadOptions::default()
                .format(sc.format)
                .file_system(Arc::new(fs)),
        ) {
            let (_, log, lsn) = item.map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.push((lsn, log.entry));
        }
        Ok(())
    };
    if sc.archives() {
        let mut archives: Vec<PathBuf> = img
            .list()
            .into_iter()
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.contains("_archived.") && (n.ends_with(".zst") || n.ends_with(".json"))
            })
            .collect();
        archives.sort();
        for a in archives {
            let data = img.contents(&a).unwrap();
            let data = if a.extension().is_some_and(|e| e == "zst") {
                zstd::decode_all(&data[..]).map_err(|e| format!("{}: {e}", a.display()))?
            } else {
                data
            };
            let one = SimFs::new();
            let p = Path::new("/archive.json");
            one.put(p, &data);
            read(one, p)?;
        }
    }
    read(img.clone(), &sc.path())?;
    Ok(out)
}

/// Reopens `img` (healthy), appends, closes, and checks it against the run.
fn check_image(sc: &Scenario, run: &Run, img: &SimFs, what: &str) -> Result<(), String> {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("check", sc.opts(Arc::new(img.clone())))
        .map_err(|e| format!("{what}: reopening failed: {e}"))?;
    let after = ctx
        .log_blocking(ent(AFTER, 0))
        .map_err(|e| format!("{what}: appending after reopening failed: {e}"))?;
    ctx.close_blocking()
        .map_err(|e| format!("{what}: closing after reopening failed: {e}"))?;
    drop(ctx);
    let _ = logger.close_blocking();
    let items = read_everything(sc, img).map_err(|e| format!("{what}: {e}"))?;

    let mut seen: HashMap<(u32, u32), Option<Lsn>> = HashMap::new();
    let mut prev: Option<Lsn> = None;
    for (i, (lsn, e)) in items.iter().enumerate() {
        if sc.lsn {
            let l = lsn.ok_or_else(|| format!("{what}: entry {i} has no LSN"))?;
            if prev.is_some_and(|p| l <= p) {
                return Err(format!("{what}: LSN {l} after {prev:?} (entry {i})"));
            }
            prev = Some(l);
        }
        if *e != ent(e.producer, e.seq) {
            return Err(format!("{what}: an entry that was never written: {e:?}"));
        }
        if seen.insert((e.producer, e.seq), *lsn).is_some() {
            return Err(format!("{what}: ({}, {}) appears twice", e.producer, e.seq));
        }
    }
    match items.last() {
        Some((l, e)) if e.producer == AFTER && *l == after => {}
        other => {
            return Err(format!(
                "{what}: the appended entry is not last with its LSN {after:?}: {other:?}"
            ));
        }
    }
    let first = items.first().and_then(|i| i.0);
    for (lsn, e) in &run.acked {
        match seen.get(&(e.producer, e.seq)) {
            Some(l) if l == lsn => {}
            Some(l) => {
                return Err(format!(
                    "{what}: acknowledged ({}, {}) has LSN {l:?} on disk, {lsn:?} acknowledged",
                    e.producer, e.seq
                ));
            }
            None => {
                // Only `truncate_before` may remove acknowledged entries: a
                // prefix, below the highest truncation point.
                let truncated = matches!((lsn, first, run.truncated_below),
                    (Some(l), Some(f), Some(t)) if *l < f && *l < t);
                if !truncated {
                    return Err(format!(
                        "{what}: acknowledged ({}, {}) LSN {lsn:?} is lost ({} entries read)",
                        e.producer,
                        e.seq,
                        items.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_run(sc: &Scenario, run: &Run) -> Result<(), String> {
    if let Some(img) = &run.crash {
        check_image(sc, run, img, "crash image")?;
    }
    if let Some(img) = &run.power {
        check_image(sc, run, img, "power-cut image")?;
    }
    Ok(())
}

/// Per kind: (injection points, runs, runs where the fault reached a caller).
type Tally = Vec<(Kind, u64, u64, u64)>;

/// Every kind in `kinds`, at every call of its operation, once and sticky.
fn sweep(sc: &Scenario, kinds: &[Kind]) -> Tally {
    count_library_panics();
    let panics_before = LIBRARY_PANICS.load(Ordering::SeqCst);
    let healthy = run_workload(sc, None);
    assert!(
        healthy.open_err.is_none() && healthy.log_errs == 0 && healthy.close_err.is_none(),
        "{}: the healthy run failed: {healthy:?}",
        sc.name
    );
    check_run(sc, &healthy).unwrap_or_else(|e| panic!("{}: healthy run: {e}", sc.name));
    let mut failures = Vec::new();
    let mut tally = Vec::new();
    for &kind in kinds {
        let n = healthy.calls[&kind];
        let (mut runs, mut surfaced) = (0, 0);
        for at in 1..=n {
            for sticky in [false, true] {
                let run = run_workload(sc, Some((kind, at, sticky)));
                runs += 1;
                surfaced += u64::from(run.surfaced());
                if let Err(e) = check_run(sc, &run) {
                    failures.push(format!("{kind:?} at call {at} (sticky: {sticky}): {e}"));
                }
            }
        }
        tally.push((kind, n, runs, surfaced));
    }
    let panics = LIBRARY_PANICS.load(Ordering::SeqCst) - panics_before;
    eprintln!("fault sweep: {}", sc.name);
    for (kind, n, runs, surfaced) in &tally {
        eprintln!(
            "  {kind:?}: {n} injection points, {runs} runs, {surfaced} reported an error to a caller"
        );
    }
    assert_eq!(panics, 0, "{}: library threads panicked", sc.name);
    assert!(
        failures.is_empty(),
        "{}: {} failures, first ones:\n{}",
        sc.name,
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    tally
}

const SWEEP_SECS: u64 = 600;

#[test]
fn faults_flush_json() {
    with_deadline(SWEEP_SECS, || sweep(&FLUSH_JSON, &ALL_KINDS));
}

#[test]
fn faults_none_binary() {
    with_deadline(SWEEP_SECS, || sweep(&NONE_BINARY, &ALL_KINDS));
}

#[test]
fn faults_fsync_binary() {
    with_deadline(SWEEP_SECS, || sweep(&FSYNC_BINARY, &ALL_KINDS));
}

#[test]
fn faults_fsync_batch_json_four_producers() {
    with_deadline(SWEEP_SECS, || sweep(&BATCH_JSON_4P, &ALL_KINDS));
}

#[test]
fn faults_segmented_wal_fsync_batch() {
    with_deadline(SWEEP_SECS, || sweep(&WAL_SEGMENTS_BATCH, &ALL_KINDS));
}

#[test]
fn faults_segmented_wal_fsync_json() {
    with_deadline(SWEEP_SECS, || sweep(&WAL_SEGMENTS_FSYNC_JSON, &ALL_KINDS));
}

#[test]
fn faults_data_plane_rotation_with_zstd_archiver() {
    with_deadline(SWEEP_SECS, || sweep(&DATA_ZSTD, &ALL_KINDS));
}

#[test]
fn faults_opening_a_torn_tail_fsync_batch() {
    with_deadline(SWEEP_SECS, || sweep(&TORN_BATCH, &ALL_KINDS));
}

#[test]
fn faults_opening_a_torn_tail_flush_json() {
    with_deadline(SWEEP_SECS, || sweep(&TORN_FLUSH_JSON, &ALL_KINDS));
}

#[test]
fn faults_reopened_segmented_wal() {
    with_deadline(SWEEP_SECS, || sweep(&WAL_SEGMENTS_REOPENED, &ALL_KINDS));
}

#[test]
fn faults_truncate_before() {
    with_deadline(SWEEP_SECS, || sweep(&TRUNCATE_BATCH, &ALL_KINDS));
}

// ---------------------------------------------------------------------------
// Library bugs the sweep found (fixed; kept as regression tests)
// ---------------------------------------------------------------------------

#[test]
/// Regression (fixed): a failed list_dir during data-plane rotation reuses an archive name; the rename replaces a pending sealed file, or the archiver deletes the new one as already archived: acknowledged entries are lost.
fn regression_list_dir_failure_in_data_plane_rotation_loses_acknowledged_entries() {
    with_deadline(SWEEP_SECS, || sweep(&DATA_ZSTD, &[Kind::ListDir]));
}

#[test]
/// Regression (fixed): a failed list_dir at the first rotation of a reopened segmented WAL names the new segment id 1 again; the log then refuses to open (segment chain broken).
fn regression_list_dir_failure_in_wal_rotation_breaks_the_segment_chain() {
    with_deadline(SWEEP_SECS, || {
        sweep(&WAL_SEGMENTS_REOPENED, &[Kind::ListDir])
    });
}

#[test]
/// Regression (fixed): when rotation fails after renaming the live file away and renaming it back fails too, the writer keeps appending to the file now named as a sealed segment, and truncate_before deletes it: acknowledged entries are lost.
fn regression_failed_rotation_rollback_then_truncate_before_loses_acknowledged_entries() {
    with_deadline(SWEEP_SECS, || sweep(&TRUNCATE_BATCH, &[Kind::Rename]));
}

// ---------------------------------------------------------------------------
// 2. Every bit flip of a small JSON-lines log
// ---------------------------------------------------------------------------

type Item = (u64, Log<Message>, Option<Lsn>);

/// How a read ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// At the end of the file.
    Clean,
    /// At a torn tail at this offset (no error).
    Torn(u64),
    /// With `Error::Corrupt` at this offset.
    Corrupt(u64),
    /// With `Error::Decode` at this offset (valid JSON that is not an entry).
    Decode(u64),
    /// With another error.
    Other(String),
}

/// Everything one read produced.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    items: Vec<(u64, Log<Message>)>,
    end: End,
    skipped: Vec<Range<u64>>,
}

fn read_outcome(bytes: &[u8], opts: ReadOptions) -> Outcome {
    let mem = SimFs::new();
    let p = Path::new("/mem/log");
    mem.put(p, bytes);
    let mut it =
        hyperlog::read_entries_blocking::<Message>(p, 0, opts.file_system(Arc::new(mem.clone())));
    let mut out = Outcome {
        items: Vec::new(),
        end: End::Clean,
        skipped: Vec::new(),
    };
    let mut errors = 0;
    for (n, item) in it.by_ref().enumerate() {
        assert!(n < 10_000, "the reader does not end");
        match item {
            Ok(i) if errors == 0 => out.items.push((i.0, i.1)),
            Ok(_) => panic!("an entry after an error"),
            Err(e) => {
                errors += 1;
                out.end = match e {
                    Error::Corrupt { offset, .. } => End::Corrupt(offset),
                    Error::Decode { offset, .. } => End::Decode(offset),
                    other => End::Other(other.to_string()),
                };
            }
        }
    }
    assert!(errors <= 1, "more than one error");
    if out.end == End::Clean
        && let Some(t) = it.torn_tail()
    {
        out.end = End::Torn(t.offset);
    }
    out.skipped = it.skipped().to_vec();
    out
}

/// What the reader must do with a JSON-lines file, from the rules the
/// format documents: lines end in `\n`; a line that is not JSON (or a last
/// line without its newline) is damage at its offset: `AbsoluteConsistency`
/// stops with `Corrupt`, `TolerateTail` stops with `Corrupt` when a later
/// complete line is valid JSON and ends at a torn tail otherwise,
/// `SkipCorrupted` skips to that later line (or to the end, as a torn
/// tail); a line that is JSON but not an entry stops with `Decode` in every
/// mode. With format detection, a file whose first non-blank byte is not
/// `{` is neither format (`Corrupt` at 0).
fn predict_json(bytes: &[u8], mode: RecoveryMode, detect: bool) -> Outcome {
    let mut out = Outcome {
        items: Vec::new(),
        end: End::Clean,
        skipped: Vec::new(),
    };
    if detect && bytes.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        out.end = End::Corrupt(0);
        return out;
    }
    let len = bytes.len() as u64;
    let newline_from = |at: u64| {
        bytes[at as usize..]
            .iter()
            .position(|&c| c == b'\n')
            .map(|i| at + i as u64)
    };
    // The start of the first complete, syntactically valid line after the
    // line holding `at`.
    let valid_after = |at: u64| -> Option<u64> {
        let mut p = newline_from(at)? + 1;
        while p < len {
            let nl = newline_from(p)?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes[p as usize..nl as usize])
                .is_ok()
            {
                return Some(p);
            }
            p = nl + 1;
        }
        None
    };
    let mut pos = 0u64;
    while pos < len {
        let nl = newline_from(pos);
        let line = &bytes[pos as usize..nl.map_or(len, |n| n) as usize];
        let damaged =
            nl.is_none() || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err();
        if !damaged {
            match serde_json::from_slice::<Log<Message>>(line) {
                Ok(l) => {
                    out.items.push((pos, l));
                    pos = nl.unwrap() + 1;
                    continue;
                }
                Err(_) => {
                    out.end = End::Decode(pos);
                    return out;
                }
            }
        }
        if len.is_multiple_of(4096) && bytes[pos as usize..].iter().all(|&c| c == 0) {
            // Zeros to a 4 KiB boundary: preallocated space, the end of the log.
            return out;
        }
        match (mode, valid_after(pos)) {
            (RecoveryMode::AbsoluteConsistency, _) | (RecoveryMode::TolerateTail, Some(_)) => {
                out.end = End::Corrupt(pos);
                return out;
            }
            (RecoveryMode::TolerateTail, None) => {
                out.end = End::Torn(pos);
                return out;
            }
            (_, Some(next)) => {
                out.skipped.push(pos..next);
                pos = next;
            }
            (_, None) => {
                out.skipped.push(pos..len);
                out.end = End::Torn(pos);
                return out;
            }
        }
    }
    out
}

/// A small log written through a context on `SimFs`: its bytes and entries.
fn small_log(format: LogFormat, n: usize, pad: usize) -> (Vec<u8>, Vec<Item>) {
    let fs = SimFs::new();
    let path = Path::new("/d/small.log");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "small",
            ContextOptions::new()
                .path(path)
                .format(format)
                .enable_lsn(true)
                .instance_id(9)
                .file_system(Arc::new(fs.clone())),
        )
        .unwrap();
    for i in 0..n {
        ctx.log_blocking(Message::info(format!("e{i} {}", "y".repeat(i % 4 * pad))))
            .unwrap();
    }
    ctx.close_blocking().unwrap();
    let bytes = fs.contents(path).unwrap();
    let items: Vec<Item> = hyperlog::read_entries_blocking::<Message>(
        path,
        0,
        ReadOptions::new()
            .recovery(RecoveryMode::AbsoluteConsistency)
            .file_system(Arc::new(fs)),
    )
    .map(|i| i.unwrap())
    .collect();
    assert_eq!(items.len(), n);
    assert!(!(bytes.len() as u64).is_multiple_of(4096));
    (bytes, items)
}

const MODES: [RecoveryMode; 3] = [
    RecoveryMode::TolerateTail,
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::SkipCorrupted,
];

#[test]
fn every_bit_flip_of_a_json_log_has_the_predicted_outcome() {
    with_deadline(300, || {
        // `HYPERLOG_FLIP_ENTRIES` entries (default 3, the CI size).
        let n = std::env::var("HYPERLOG_FLIP_ENTRIES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3usize)
            .max(2);
        let (bytes, orig) = small_log(LogFormat::Json, n, 0);
        let good: HashSet<(u64, String)> = orig
            .iter()
            .map(|i| (i.0, serde_json::to_string(&i.1).unwrap()))
            .collect();
        // The oracle agrees with the reader on the intact log.
        for mode in MODES {
            let o = read_outcome(
                &bytes,
                ReadOptions::new().format(LogFormat::Json).recovery(mode),
            );
            assert_eq!(o, predict_json(&bytes, mode, false));
            assert_eq!(o.items.len(), n);
        }
        let mut failures = Vec::new();
        let first_line = bytes.iter().position(|&c| c == b'\n').unwrap() + 1;
        let (mut flips, mut reads, mut undetected) = (0u64, 0u64, 0u64);
        let mut ends: HashMap<String, u64> = HashMap::new();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            flips += 1;
            let mut changed_entry = false;
            // Format detection looks at the first record only: flips after
            // it read the same with and without it.
            let detects: &[(RecoveryMode, bool)] = if (bit / 8) < first_line {
                &[
                    (RecoveryMode::TolerateTail, true),
                    (RecoveryMode::SkipCorrupted, true),
                ]
            } else {
                &[]
            };
            for (mode, detect) in MODES
                .iter()
                .map(|m| (*m, false))
                .chain(detects.iter().copied())
            {
                let opts = if detect {
                    ReadOptions::new()
                } else {
                    ReadOptions::new().format(LogFormat::Json)
                }
                .recovery(mode);
                let got = read_outcome(&bad, opts);
                let want = predict_json(&bad, mode, detect);
                reads += 1;
                if got != want && failures.len() < 20 {
                    failures.push(format!(
                        "bit {bit} (byte {} {:?}), {mode:?}, detect {detect}: got {:?} / {:?} / {} items, want {:?} / {:?} / {} items",
                        bit / 8,
                        bytes[bit / 8] as char,
                        got.end,
                        got.skipped,
                        got.items.len(),
                        want.end,
                        want.skipped,
                        want.items.len()
                    ));
                }
                let variant = format!("{:?}", got.end);
                let variant = variant.split('(').next().unwrap_or("").to_string();
                *ends
                    .entry(format!(
                        "{mode:?}{}: {variant}",
                        if detect { "/detect" } else { "" }
                    ))
                    .or_default() += 1;
                // An entry that differs from the one written at its offset:
                // the damaged line is still JSON and still decodes.
                changed_entry |= got
                    .items
                    .iter()
                    .any(|(o, l)| !good.contains(&(*o, serde_json::to_string(l).unwrap())));
            }
            undetected += u64::from(changed_entry);
        }
        let mut ends: Vec<_> = ends.into_iter().collect();
        ends.sort();
        eprintln!(
            "JSON bit flips: {flips} flips of a {}-byte log, {reads} reads; {undetected} flips left a line that is still a valid entry with another value (JSON lines carry no checksum); outcomes: {ends:?}",
            bytes.len()
        );
        assert!(
            failures.is_empty(),
            "JSON bit flips: outcomes differ from the prediction:\n{}",
            failures.join("\n")
        );
    });
}

// ---------------------------------------------------------------------------
// 3. Damage: a sector overwritten, garbage appended
// ---------------------------------------------------------------------------

/// What the reader must do with a binary log whose records `b` (offsets,
/// then the original length) were damaged over `[from, to)`, `len` the
/// damaged file's length: the first record touching the damage is damage;
/// the next intact record is the first that starts at or after `to`.
fn predict_binary(
    orig: &[Item],
    b: &[u64],
    from: u64,
    to: u64,
    len: u64,
    mode: RecoveryMode,
) -> Outcome {
    let k0 = (0..orig.len())
        .find(|&k| b[k + 1] > from)
        .unwrap_or(orig.len());
    let k1 = (k0..orig.len()).find(|&k| b[k] >= to);
    let items = |r: &[Item]| r.iter().map(|i| (i.0, i.1.clone())).collect::<Vec<_>>();
    let mut out = Outcome {
        items: items(&orig[..k0]),
        end: End::Clean,
        skipped: Vec::new(),
    };
    if k0 == orig.len() && from >= len {
        return out;
    }
    let at = b[k0];
    match (mode, k1) {
        (RecoveryMode::AbsoluteConsistency, _) | (RecoveryMode::TolerateTail, Some(_)) => {
            out.end = End::Corrupt(at)
        }
        (RecoveryMode::TolerateTail, None) => out.end = End::Torn(at),
        (_, Some(k1)) => {
            out.skipped.push(at..b[k1]);
            out.items.extend(items(&orig[k1..]));
        }
        (_, None) => {
            out.skipped.push(at..len);
            out.end = End::Torn(at);
        }
    }
    out
}

fn garbage(seed: u64, n: usize, no_newline: bool) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x >> 24) as u8;
            if no_newline && b == b'\n' { b'~' } else { b }
        })
        .collect()
}

/// Opens a context on `bytes` with `mode`; checks that a refusal is
/// `Corrupt` at the predicted offset and leaves the file as it was, and that
/// an open appends an entry that then reads back last.
fn check_open(
    format: LogFormat,
    bytes: &[u8],
    mode: RecoveryMode,
    want: &Outcome,
) -> Result<String, String> {
    let fs = SimFs::new();
    let path = Path::new("/d/damaged.log");
    fs.put(path, bytes);
    let opts = ContextOptions::new()
        .path(path)
        .format(format)
        .enable_lsn(true)
        .instance_id(9)
        .recovery(mode)
        .file_system(Arc::new(fs.clone()));
    let logger = Logger::new();
    match logger.context_with_blocking("damaged", opts) {
        Err(Error::Corrupt { offset, .. }) => {
            if fs.contents(path).as_deref() != Some(bytes) {
                return Err("a refused open changed the file".into());
            }
            match want.end {
                End::Corrupt(o) if o == offset => Ok(format!("refused at {offset}")),
                _ => Err(format!(
                    "refused with Corrupt at {offset}, reading predicts {want:?}"
                )),
            }
        }
        Err(e) => Err(format!("open failed: {e}")),
        Ok(ctx) => {
            if matches!(want.end, End::Corrupt(_)) {
                return Err(format!("opened although reading predicts {:?}", want.end));
            }
            let report = ctx.recovery_report().unwrap();
            let lsn = ctx
                .log_blocking(Message::info("after"))
                .map_err(|e| e.to_string())?;
            ctx.close_blocking().map_err(|e| e.to_string())?;
            let o = read_outcome(
                &fs.contents(path).unwrap(),
                ReadOptions::new().format(format).recovery(mode),
            );
            if let End::Decode(at) = want.end {
                // A line that is JSON but not an entry is intact to recovery:
                // the open keeps it and appends after it, and typed readers
                // stop at it in every mode.
                return if o.end == End::Decode(at) && o.items.len() == want.items.len() {
                    Ok(format!(
                        "opened, {} bytes cut; reading stops at it with Decode({at})",
                        report.bytes_cut
                    ))
                } else {
                    Err(format!(
                        "after reopening: {} items, end {:?}",
                        o.items.len(),
                        o.end
                    ))
                };
            }
            let last = o.items.last().map(|i| (i.1.entry.message.clone(), i.1.lsn));
            if last != Some((Some("after".into()), lsn)) || o.items.len() != want.items.len() + 1 {
                return Err(format!(
                    "after reopening: {} items, last {last:?}, end {:?}",
                    o.items.len(),
                    o.end
                ));
            }
            Ok(format!(
                "opened, {} bytes cut, skipped {:?}",
                report.bytes_cut, report.skipped
            ))
        }
    }
}

#[test]
fn a_sector_of_zeros_or_garbage_in_the_middle_and_garbage_appended() {
    with_deadline(300, || {
        let mut failures = Vec::new();
        let mut cases = 0;
        for format in [LogFormat::Binary, LogFormat::Json] {
            let (bytes, orig) = small_log(format, 24, 40);
            let len0 = bytes.len() as u64;
            let b: Vec<u64> = orig.iter().map(|i| i.0).chain([len0]).collect();
            // (name, damaged bytes, damaged range)
            let mut damaged: Vec<(String, Vec<u8>, u64, u64)> = Vec::new();
            for s in 1..(len0 / 512 - 1) {
                let (from, to) = (s * 512, s * 512 + 512);
                for (fill, data) in [
                    ("zeros", vec![0u8; 512]),
                    ("garbage", garbage(s, 512, format == LogFormat::Json)),
                ] {
                    let mut bad = bytes.clone();
                    bad[from as usize..to as usize].copy_from_slice(&data);
                    damaged.push((
                        format!("sector {s} ({from}..{to}) of {fill}"),
                        bad,
                        from,
                        to,
                    ));
                }
            }
            let mut appended = |name: &str, tail: &[u8]| {
                let mut bad = bytes.clone();
                bad.extend_from_slice(tail);
                let to = bad.len() as u64;
                damaged.push((format!("appended {name}"), bad, len0, to));
            };
            appended(
                "100 bytes of garbage",
                &garbage(77, 100, format == LogFormat::Json),
            );
            appended("20 zeros", &[0u8; 20]);
            appended(
                "zeros to a 4 KiB boundary (preallocation)",
                &vec![0u8; (len0.next_multiple_of(4096) - len0) as usize],
            );
            if format == LogFormat::Json {
                appended("a text line", b"this is not json\n");
                appended("a JSON line that is not an entry", b"{\"x\":1}\n");
            }
            for (name, bad, from, to) in &damaged {
                for mode in MODES {
                    cases += 1;
                    let want = if format == LogFormat::Json {
                        predict_json(bad, mode, false)
                    } else if name.contains("4 KiB") {
                        // Zeros to a 4 KiB boundary are preallocated space.
                        predict_binary(&orig, &b, len0, len0, len0, mode)
                    } else {
                        predict_binary(&orig, &b, *from, *to, bad.len() as u64, mode)
                    };
                    let got = read_outcome(bad, ReadOptions::new().format(format).recovery(mode));
                    if got != want {
                        failures.push(format!(
                            "{format:?}, {name}, {mode:?}: read {:?} skipped {:?} ({} items), want {:?} skipped {:?} ({} items)",
                            got.end, got.skipped, got.items.len(), want.end, want.skipped, want.items.len()
                        ));
                        continue;
                    }
                    // No wrong entry: every item is the one written at its offset.
                    if got
                        .items
                        .iter()
                        .any(|(o, l)| !orig.iter().any(|i| i.0 == *o && i.1 == *l))
                    {
                        failures.push(format!("{format:?}, {name}, {mode:?}: a wrong entry"));
                    }
                    match check_open(format, bad, mode, &want) {
                        Ok(what) => {
                            if mode == RecoveryMode::TolerateTail && !name.starts_with("sector") {
                                eprintln!(
                                    "{format:?}, {name}, {mode:?}: read {:?}; open: {what}",
                                    got.end
                                );
                            }
                        }
                        Err(e) => {
                            failures.push(format!("{format:?}, {name}, {mode:?}: opening: {e}"))
                        }
                    }
                }
            }
        }
        eprintln!("damage: {cases} (case, recovery mode) pairs read and opened");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
    });
}

#[test]
/// Regression (fixed): in None mode, when a failed write leaves a partial record and cutting it back fails too, the writer appends the next groups after the partial record; the log then refuses to open (corruption in the middle).
fn regression_none_mode_appends_after_a_partial_record_it_could_not_cut() {
    with_deadline(SWEEP_SECS, || {
        sweep(&NONE_BINARY, &[Kind::PartialWriteNoCut])
    });
}

// ---------------------------------------------------------------------------
// Side files of torn tails
// ---------------------------------------------------------------------------

/// Side files are never deleted: each open that cuts a torn tail adds one,
/// and an open that saved the tail but failed to cut it saves it again next
/// time (`{path}.torn-{offset}.1`). No byte is lost either way.
#[test]
fn a_torn_tail_whose_cut_failed_is_saved_again_by_the_next_open() {
    with_deadline(60, || {
        let sc = TORN_BATCH;
        let sim = SimFs::new();
        let seeded = seed_torn(&sc, 4, &sim);
        let path = sc.path();
        let before = sim.contents(&path).unwrap();
        let fs = Wrap::new(sim.clone());
        fs.sim.fail(Op::Truncate, 1, false, Fault::Errno(EIO));
        let logger = Logger::new();
        let e = logger
            .context_with_blocking("torn", sc.opts(Arc::new(fs.clone())))
            .unwrap_err();
        assert!(e.to_string().contains("truncate"), "{e}");
        fs.heal();
        let ctx = logger
            .context_with_blocking("torn", sc.opts(Arc::new(fs.clone())))
            .unwrap();
        let report = ctx.recovery_report().unwrap();
        ctx.close_blocking().unwrap();
        let sides: Vec<PathBuf> = sim
            .list()
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".torn-"))
            .collect();
        let good = before.len() as u64 - report.bytes_cut;
        let torn = &before[good as usize..];
        assert_eq!(
            sides,
            [
                PathBuf::from(format!("{}.torn-{good}", path.display())),
                PathBuf::from(format!("{}.torn-{good}.1", path.display())),
            ]
        );
        for s in &sides {
            assert_eq!(sim.contents(s).unwrap(), torn);
        }
        let items = read_everything(&sc, &sim).unwrap();
        assert_eq!(items, seeded);
    });
}
