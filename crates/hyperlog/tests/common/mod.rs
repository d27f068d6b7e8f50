//! Test support shared by the integration tests: a fault-injecting file
//! system over the real disk, an in-memory read-only file system for
//! exhaustive damage loops, and a deadline runner; in [`crash`], the
//! child-process harness of the crash loops.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

pub mod crash;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyperlog::fs::{FileAllocator, FileSyncer, FileSystem, ReadableFile, StdFs, WritableFile};

/// Inside an `impl FileSystem`: the named methods, each passed on unchanged
/// to the real disk ([`StdFs`]), so that a wrapper spells out only what it
/// changes. `basics` names the seven every wrapper here passes on
/// (`open_read`, `create_dir_all`, `sync_dir`, `rename`, `remove_file`,
/// `exists`, `identity`): `std_fs_methods!(basics, write_new);`
macro_rules! std_fs_methods {
    ($($method:ident),+ $(,)?) => {
        $($crate::common::std_fs_methods!(@ $method);)+
    };
    (@ basics) => {
        $crate::common::std_fs_methods!(
            open_read,
            create_dir_all,
            sync_dir,
            rename,
            remove_file,
            exists,
            identity
        );
    };
    (@ identity) => {
        fn identity(
            &self,
            path: &::std::path::Path,
        ) -> ::std::io::Result<Option<::hyperlog::fs::FileId>> {
            ::hyperlog::fs::FileSystem::identity(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ open_append) => {
        fn open_append(
            &self,
            path: &::std::path::Path,
            mode: u32,
        ) -> ::std::io::Result<(Box<dyn ::hyperlog::fs::WritableFile>, bool)> {
            ::hyperlog::fs::FileSystem::open_append(&::hyperlog::fs::StdFs, path, mode)
        }
    };
    (@ open_read) => {
        fn open_read(
            &self,
            path: &::std::path::Path,
        ) -> ::std::io::Result<Box<dyn ::hyperlog::fs::ReadableFile>> {
            ::hyperlog::fs::FileSystem::open_read(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ create_dir_all) => {
        fn create_dir_all(&self, path: &::std::path::Path) -> ::std::io::Result<()> {
            ::hyperlog::fs::FileSystem::create_dir_all(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ sync_dir) => {
        fn sync_dir(&self, path: &::std::path::Path) -> ::std::io::Result<()> {
            ::hyperlog::fs::FileSystem::sync_dir(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ rename) => {
        fn rename(&self, from: &::std::path::Path, to: &::std::path::Path) -> ::std::io::Result<()> {
            ::hyperlog::fs::FileSystem::rename(&::hyperlog::fs::StdFs, from, to)
        }
    };
    (@ remove_file) => {
        fn remove_file(&self, path: &::std::path::Path) -> ::std::io::Result<()> {
            ::hyperlog::fs::FileSystem::remove_file(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ exists) => {
        fn exists(&self, path: &::std::path::Path) -> bool {
            ::hyperlog::fs::FileSystem::exists(&::hyperlog::fs::StdFs, path)
        }
    };
    (@ write_new) => {
        fn write_new(
            &self,
            path: &::std::path::Path,
            data: &[u8],
            mode: u32,
        ) -> ::std::io::Result<()> {
            ::hyperlog::fs::FileSystem::write_new(&::hyperlog::fs::StdFs, path, data, mode)
        }
    };
}
pub(crate) use std_fs_methods;

/// Inside an `impl WritableFile` for a wrapper whose wrapped file is its
/// field `inner`: the named methods, each passed on unchanged to `inner`.
/// `inner_file_methods!(len, try_lock);`
macro_rules! inner_file_methods {
    ($($method:ident),+ $(,)?) => {
        $($crate::common::inner_file_methods!(@ $method);)+
    };
    (@ write) => {
        fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
            ::hyperlog::fs::WritableFile::write(&mut *self.inner, buf)
        }
    };
    (@ sync_data) => {
        fn sync_data(&mut self) -> ::std::io::Result<()> {
            ::hyperlog::fs::WritableFile::sync_data(&mut *self.inner)
        }
    };
    (@ truncate) => {
        fn truncate(&mut self, len: u64) -> ::std::io::Result<()> {
            ::hyperlog::fs::WritableFile::truncate(&mut *self.inner, len)
        }
    };
    (@ len) => {
        fn len(&self) -> ::std::io::Result<u64> {
            ::hyperlog::fs::WritableFile::len(&*self.inner)
        }
    };
    (@ try_lock) => {
        fn try_lock(&self) -> ::std::io::Result<bool> {
            ::hyperlog::fs::WritableFile::try_lock(&*self.inner)
        }
    };
    (@ allocate) => {
        fn allocate(&mut self, len: u64) -> ::std::io::Result<bool> {
            ::hyperlog::fs::WritableFile::allocate(&mut *self.inner, len)
        }
    };
}
pub(crate) use inner_file_methods;

/// `EIO`.
pub const EIO: i32 = 5;
/// `ENOSPC`.
pub const ENOSPC: i32 = 28;

/// Runs `f` on its own thread and returns its result; panics with "hung"
/// when it does not finish within `secs` seconds (a deadline, never a timing
/// assertion), and re-raises its panic if it panicked.
pub fn with_deadline<T, F>(secs: u64, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let v = f();
            let _ = tx.send(v);
        })
        .expect("spawn test body");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(RecvTimeoutError::Timeout) => panic!("hung: the test body did not finish in {secs}s"),
        Err(RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body ended without a result or a panic"),
        },
    }
}

/// The two operations faults are injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `WritableFile::write`.
    Write,
    /// `WritableFile::sync_data`.
    Sync,
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Fail exactly the call with this 1-based index (counted over the whole
    /// life of the file system).
    Nth(u64),
    /// Fail every call from this index on.
    From(u64),
}

#[derive(Debug, Default)]
struct Faults {
    write: Option<(Trigger, i32)>,
    sync: Option<(Trigger, i32)>,
    /// Writes store at most this many bytes.
    short_write: Option<usize>,
    hold_write: bool,
    hold_sync: bool,
    held_write: usize,
    held_sync: usize,
    sync_delay: Duration,
    write_delay: Duration,
}

impl Faults {
    fn rule(&mut self, op: Op) -> &mut Option<(Trigger, i32)> {
        match op {
            Op::Write => &mut self.write,
            Op::Sync => &mut self.sync,
        }
    }
    fn hold(&mut self, op: Op) -> &mut bool {
        match op {
            Op::Write => &mut self.hold_write,
            Op::Sync => &mut self.hold_sync,
        }
    }
    fn held(&mut self, op: Op) -> &mut usize {
        match op {
            Op::Write => &mut self.held_write,
            Op::Sync => &mut self.held_sync,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Mutex<Faults>,
    cv: Condvar,
    /// `write` calls (every call, failed or not).
    writes: AtomicU64,
    /// `sync_data` calls (every call, failed or not).
    syncs: AtomicU64,
    failed_writes: AtomicU64,
    failed_syncs: AtomicU64,
    /// Per file: the data length (write position) covered by the last
    /// successful `sync_data`.
    synced: Mutex<HashMap<PathBuf, u64>>,
    /// Per file: every successful sync's covered length, in order.
    sync_log: Mutex<HashMap<PathBuf, Vec<u64>>>,
    /// Preallocations run through a file's `allocator` (on the writer's
    /// background thread), failed or not.
    background_allocations: AtomicU64,
    /// When not 0, every background preallocation fails with this errno.
    allocator_errno: std::sync::atomic::AtomicI32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A file system over the real disk ([`StdFs`]) that counts writes and syncs,
/// remembers how many bytes each successful sync covered, and injects faults:
/// the Nth write or sync (or every one from now on) fails with an errno,
/// writes can be cut short, and writes or syncs can be held at a gate until
/// the test releases them.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    state: Arc<State>,
}

impl FaultFs {
    /// A healthy fault file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// As the trait object `ContextOptions::file_system` takes.
    pub fn handle(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    /// Preallocations run in the background so far (including failed ones).
    pub fn background_allocations(&self) -> u64 {
        self.state.background_allocations.load(Ordering::SeqCst)
    }

    /// Makes every later background preallocation fail with `errno`.
    pub fn fail_background_allocation(&self, errno: i32) {
        self.state.allocator_errno.store(errno, Ordering::SeqCst);
    }

    /// `write` calls so far (including failed ones).
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// `sync_data` calls so far (including failed ones).
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: Op) -> u64 {
        match op {
            Op::Write => self.writes(),
            Op::Sync => self.syncs(),
        }
    }

    /// Injected failures of `op` so far.
    pub fn failures(&self, op: Op) -> u64 {
        match op {
            Op::Write => self.state.failed_writes.load(Ordering::SeqCst),
            Op::Sync => self.state.failed_syncs.load(Ordering::SeqCst),
        }
    }

    /// The data length of `path` that the last successful `sync_data` of a
    /// file opened for append covered (0 if none).
    pub fn synced_len(&self, path: &Path) -> u64 {
        lock(&self.state.synced).get(path).copied().unwrap_or(0)
    }

    /// The covered length of every successful sync of `path`, in order.
    pub fn sync_history(&self, path: &Path) -> Vec<u64> {
        lock(&self.state.sync_log)
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Fails the `n`th call of `op` from now (1 = the next one) with `errno`.
    pub fn fail_nth(&self, op: Op, n: u64, errno: i32) {
        assert!(n >= 1);
        let at = self.calls(op) + n;
        *lock(&self.state.faults).rule(op) = Some((Trigger::Nth(at), errno));
    }

    /// Fails every call of `op` from now on with `errno` (a call held at the
    /// gate when this is armed fails too).
    pub fn fail_from_now(&self, op: Op, errno: i32) {
        *lock(&self.state.faults).rule(op) = Some((Trigger::From(0), errno));
    }

    /// Makes every write store at most `max` bytes (a short write), or
    /// restores whole writes with `None`.
    pub fn short_writes(&self, max: Option<usize>) {
        lock(&self.state.faults).short_write = max.map(|m| m.max(1));
    }

    /// Makes every `sync_data` sleep this long before syncing, so that
    /// producers pile up behind it (not a timing assertion: it only makes
    /// group commit observable on fast disks).
    /// Makes every write take `d` longer.
    pub fn write_delay(&self, d: Duration) {
        lock(&self.state.faults).write_delay = d;
    }

    pub fn sync_delay(&self, d: Duration) {
        lock(&self.state.faults).sync_delay = d;
    }

    /// Holds every call of `op` at a gate until [`FaultFs::release`].
    pub fn hold(&self, op: Op) {
        *lock(&self.state.faults).hold(op) = true;
    }

    /// Opens the gate of `op`.
    pub fn release(&self, op: Op) {
        *lock(&self.state.faults).hold(op) = false;
        self.state.cv.notify_all();
    }

    /// Waits until at least one call of `op` is held at the gate; panics
    /// with "hung" after `deadline`.
    pub fn wait_held(&self, op: Op, deadline: Duration) {
        let end = Instant::now() + deadline;
        let mut f = lock(&self.state.faults);
        while *f.held(op) == 0 {
            let now = Instant::now();
            assert!(now < end, "hung: no {op:?} reached the gate");
            f = self
                .state
                .cv
                .wait_timeout(f, end - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Removes every fault, hold and delay (counters are kept).
    pub fn heal(&self) {
        {
            let mut f = lock(&self.state.faults);
            let (hw, hs) = (f.held_write, f.held_sync);
            *f = Faults::default();
            f.held_write = hw;
            f.held_sync = hs;
        }
        self.state.cv.notify_all();
    }

    /// Counts a call of `op`, waits at the gate if held, and says whether it
    /// must fail (with which errno), plus the short-write cap and the op's delay.
    fn enter(&self, op: Op) -> (Option<i32>, Option<usize>, Duration) {
        let counter = match op {
            Op::Write => &self.state.writes,
            Op::Sync => &self.state.syncs,
        };
        let index = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let mut f = lock(&self.state.faults);
        if *f.hold(op) {
            *f.held(op) += 1;
            self.state.cv.notify_all();
            while *f.hold(op) {
                f = self.state.cv.wait(f).unwrap_or_else(|p| p.into_inner());
            }
            *f.held(op) -= 1;
        }
        let fail = match *f.rule(op) {
            Some((Trigger::Nth(at), errno)) if at == index => Some(errno),
            Some((Trigger::From(at), errno)) if index >= at => Some(errno),
            _ => None,
        };
        if fail.is_some() {
            match op {
                Op::Write => &self.state.failed_writes,
                Op::Sync => &self.state.failed_syncs,
            }
            .fetch_add(1, Ordering::SeqCst);
        }
        let delay = match op {
            Op::Write => f.write_delay,
            Op::Sync => f.sync_delay,
        };
        (fail, f.short_write, delay)
    }
}

struct FaultFile {
    inner: Box<dyn WritableFile>,
    fs: FaultFs,
    path: PathBuf,
    /// The write position: the end of the data (preallocated zeros past it
    /// do not count); shared with the file's syncer, which reads it before
    /// each sync as the length that sync covers.
    pos: Arc<AtomicU64>,
}

impl WritableFile for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (fail, short, delay) = self.fs.enter(Op::Write);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(errno) = fail {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let buf = match short {
            Some(max) if buf.len() > max => &buf[..max],
            _ => buf,
        };
        let n = self.inner.write(buf)?;
        self.pos.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        fault_sync(&self.fs, &self.path, &self.pos, || self.inner.sync_data())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)?;
        self.pos.store(len, Ordering::SeqCst);
        Ok(())
    }

    fn syncer(&self) -> Option<Box<dyn FileSyncer>> {
        Some(Box::new(FaultSyncer {
            inner: self.inner.syncer()?,
            fs: self.fs.clone(),
            path: self.path.clone(),
            pos: self.pos.clone(),
        }))
    }

    fn allocator(&self) -> Option<Box<dyn FileAllocator>> {
        Some(Box::new(FaultAllocator {
            inner: self.inner.allocator()?,
            fs: self.fs.clone(),
        }))
    }

    inner_file_methods!(len, try_lock, allocate);
}

/// A counted sync that fails or waits on demand, and records what it
/// covers: the data written when it started (whatever is written while it
/// runs may or may not be covered, so it is not counted).
fn fault_sync(
    fs: &FaultFs,
    path: &Path,
    pos: &AtomicU64,
    sync: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let (fail, _, delay) = fs.enter(Op::Sync);
    if let Some(errno) = fail {
        return Err(io::Error::from_raw_os_error(errno));
    }
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let covered = pos.load(Ordering::SeqCst);
    sync()?;
    lock(&fs.state.synced).insert(path.to_path_buf(), covered);
    lock(&fs.state.sync_log)
        .entry(path.to_path_buf())
        .or_default()
        .push(covered);
    Ok(())
}

/// A [`FaultFile`]'s syncer (the writer's sync thread): counted and failing
/// like the file's own syncs.
struct FaultSyncer {
    inner: Box<dyn FileSyncer>,
    fs: FaultFs,
    path: PathBuf,
    pos: Arc<AtomicU64>,
}

impl FileSyncer for FaultSyncer {
    fn sync_data(&mut self) -> io::Result<()> {
        fault_sync(&self.fs, &self.path, &self.pos, || self.inner.sync_data())
    }
}

/// A [`FaultFile`]'s background preallocation: counted, and failing on
/// demand.
struct FaultAllocator {
    inner: Box<dyn FileAllocator>,
    fs: FaultFs,
}

impl FileAllocator for FaultAllocator {
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        let state = &self.fs.state;
        state.background_allocations.fetch_add(1, Ordering::SeqCst);
        match state.allocator_errno.load(Ordering::SeqCst) {
            0 => self.inner.allocate(len),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl FileSystem for FaultFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let (inner, created) = StdFs.open_append(path, mode)?;
        let pos = inner.len()?;
        Ok((
            Box::new(FaultFile {
                inner,
                fs: self.clone(),
                path: path.to_path_buf(),
                pos: Arc::new(AtomicU64::new(pos)),
            }),
            created,
        ))
    }
    std_fs_methods!(basics, write_new);
}

/// A read-only in-memory file system: files are put in whole and read
/// through `ReadOptions::file_system`, so exhaustive damage loops need no
/// disk I/O.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    files: Arc<Mutex<HashMap<PathBuf, Arc<Vec<u8>>>>>,
}

impl MemFs {
    /// An empty one.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stores `data` as the file `path`.
    pub fn put(&self, path: &Path, data: &[u8]) {
        lock(&self.files).insert(path.to_path_buf(), Arc::new(data.to_vec()));
    }
    /// As the trait object `ReadOptions::file_system` takes.
    pub fn handle(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }
}

struct MemFile(Arc<Vec<u8>>);

impl ReadableFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = &self.0[..];
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "MemFs is read-only")
}

impl FileSystem for MemFs {
    fn open_append(&self, _: &Path, _: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        Err(unsupported())
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        lock(&self.files)
            .get(path)
            .cloned()
            .map(|d| Box::new(MemFile(d)) as Box<dyn ReadableFile>)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(unsupported())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(unsupported())
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(unsupported())
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        Err(unsupported())
    }
    fn exists(&self, path: &Path) -> bool {
        lock(&self.files).contains_key(path)
    }
    fn write_new(&self, _: &Path, _: &[u8], _: u32) -> io::Result<()> {
        Err(unsupported())
    }
}
