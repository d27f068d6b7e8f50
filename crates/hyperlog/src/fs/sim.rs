//! An in-memory file system that remembers what was made durable, for
//! power-loss and fault-injection tests.
//!
//! Every file keeps two images: what a reader sees now, and what an
//! `fdatasync` last made durable. Directories keep two name tables the same
//! way: a created, renamed or deleted name becomes durable only when its
//! directory is synced. [`SimFs::power_cut`] then builds the file system a
//! machine would find after losing power: durable names only, each file's
//! synced bytes plus a random prefix of what was written after the last sync,
//! and optionally a torn last sector (partly new, partly old or zeroed).
//!
//! Faults are injected with [`SimFs::fail`]: the Nth call of an operation
//! (or every call from the Nth on) fails with a chosen OS error, or a write is
//! cut short.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileSystem, ReadableFile, WritableFile, parent_dir};

/// An operation faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `WritableFile::write`.
    Write,
    /// `WritableFile::sync_data`.
    Sync,
    /// `FileSystem::sync_dir`.
    SyncDir,
    /// `FileSystem::rename`.
    Rename,
    /// `FileSystem::open_append`.
    Open,
    /// `WritableFile::truncate`.
    Truncate,
    /// `FileSystem::remove_file`.
    Remove,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this OS error number (5 = EIO, 28 = ENOSPC).
    Errno(i32),
    /// A write that stores only this many bytes (at most) and reports so.
    ShortWrite(usize),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    op: Op,
    /// 1-based call number at which the fault starts.
    at: u64,
    /// Whether every later call fails too.
    sticky: bool,
    fault: Fault,
}

#[derive(Debug, Default, Clone)]
struct File {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// The handle holding the advisory lock.
    locked_by: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<u64, File>,
    /// Names as a reader sees them now.
    names: HashMap<PathBuf, u64>,
    /// Names as they would survive a power cut.
    durable: HashMap<PathBuf, u64>,
    next_id: u64,
    calls: HashMap<Op, u64>,
    rules: Vec<Rule>,
}

impl State {
    fn check(&mut self, op: Op) -> Option<Fault> {
        let n = self.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        self.rules
            .iter()
            .find(|r| r.op == op && (n == r.at || (r.sticky && n >= r.at)))
            .map(|r| r.fault)
    }

    fn fault(&mut self, op: Op) -> io::Result<Option<usize>> {
        match self.check(op) {
            None => Ok(None),
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::ShortWrite(n)) => Ok(Some(n)),
        }
    }
}

/// The in-memory file system. Cheap to clone; clones share state.
///
/// ```
/// use std::path::Path;
/// use hyperlog::fs::{FileSystem, SimFs};
/// let fs = SimFs::new();
/// let (mut f, created) = fs.open_append(Path::new("/d/a.log"), 0o640).unwrap();
/// assert!(created);
/// f.write_all(b"durable").unwrap();
/// f.sync_data().unwrap();
/// fs.sync_dir(Path::new("/d")).unwrap();
/// f.write_all(b" and not").unwrap();
/// drop(f);
/// let after = fs.power_cut(7, false);
/// let data = after.contents(Path::new("/d/a.log")).unwrap();
/// assert!(data.starts_with(b"durable") && data.len() <= 15);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Injects `fault` into the `at`-th call (1-based, counted from the
    /// start) of `op`, and into every later one when `sticky`.
    pub fn fail(&self, op: Op, at: u64, sticky: bool, fault: Fault) {
        self.lock().rules.push(Rule {
            op,
            at,
            sticky,
            fault,
        });
    }

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The current contents of a file, as a reader sees them.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names
            .get(path)
            .and_then(|id| s.files.get(id))
            .map(|f| f.data.clone())
    }

    /// How many bytes of a file are durable (its last synced length).
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        let s = self.lock();
        s.names
            .get(path)
            .and_then(|id| s.files.get(id))
            .map(|f| f.synced.len() as u64)
    }

    /// Writes a file directly (durably), as a test's setup.
    pub fn put(&self, path: &Path, data: &[u8]) {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.files.insert(
            id,
            File {
                data: data.to_vec(),
                synced: data.to_vec(),
                locked_by: None,
            },
        );
        s.names.insert(path.to_path_buf(), id);
        s.durable.insert(path.to_path_buf(), id);
    }

    /// The names that exist now, sorted.
    pub fn list(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.lock().names.keys().cloned().collect();
        v.sort();
        v
    }

    /// The file system as found after a power cut, seeded for
    /// reproducibility: only durable names survive; each file keeps its synced
    /// bytes plus a random prefix of the bytes written after them; with
    /// `torn_sectors`, the last 512-byte sector that was partly kept may be
    /// torn (its tail old bytes, zeros or garbage). Locks are released and
    /// faults cleared.
    pub fn power_cut(&self, seed: u64, torn_sectors: bool) -> SimFs {
        let s = self.lock();
        let mut rng = SplitMix(seed);
        let mut out = State {
            next_id: s.next_id,
            ..State::default()
        };
        for (name, id) in &s.durable {
            let Some(f) = s.files.get(id) else { continue };
            let (new, old) = (&f.data, &f.synced);
            let common = new.iter().zip(old).take_while(|(a, b)| a == b).count();
            let mut data = old.clone();
            if new.len() != old.len() || common != new.len() {
                // Writes reach the disk in order up to some point: a random
                // prefix of the unsynced bytes landed, old bytes lie beyond.
                let extra = new.len() - common;
                let keep = (rng.next() % (extra as u64 + 1)) as usize;
                let end = common + keep;
                data = new[..end].to_vec();
                if old.len() > end && !(keep == extra && rng.next().is_multiple_of(2)) {
                    data.extend_from_slice(&old[end..]);
                }
                if torn_sectors && keep > 0 && rng.next().is_multiple_of(2) {
                    let sector_start = (end - 1) / 512 * 512;
                    let from = sector_start.max(common);
                    let tear_from = from + (rng.next() % (end - from) as u64) as usize;
                    match rng.next() % 3 {
                        0 => data.truncate(tear_from),
                        1 => data[tear_from..end].iter_mut().for_each(|b| *b = 0),
                        _ => data[tear_from..end]
                            .iter_mut()
                            .for_each(|b| *b = rng.next() as u8),
                    }
                }
            }
            out.files.insert(
                *id,
                File {
                    data: data.clone(),
                    synced: data,
                    locked_by: None,
                },
            );
            out.names.insert(name.clone(), *id);
            out.durable.insert(name.clone(), *id);
        }
        SimFs {
            state: Arc::new(Mutex::new(out)),
        }
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct SimWritable {
    fs: SimFs,
    id: u64,
    pos: u64,
    /// This handle's identity, for the advisory lock.
    handle: u64,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "the file was removed")
}

impl WritableFile for SimWritable {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.fs.lock();
        let short = s.fault(Op::Write)?;
        let n = short.map_or(buf.len(), |m| m.min(buf.len()));
        let f = s.files.get_mut(&self.id).ok_or_else(gone)?;
        let pos = self.pos as usize;
        if f.data.len() < pos + n {
            f.data.resize(pos + n, 0);
        }
        f.data[pos..pos + n].copy_from_slice(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.fault(Op::Sync)?;
        let f = s.files.get_mut(&self.id).ok_or_else(gone)?;
        f.synced = f.data.clone();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.fault(Op::Truncate)?;
        let f = s.files.get_mut(&self.id).ok_or_else(gone)?;
        f.data.resize(len as usize, 0);
        self.pos = len;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.lock();
        Ok(s.files.get(&self.id).ok_or_else(gone)?.data.len() as u64)
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut s = self.fs.lock();
        let f = s.files.get_mut(&self.id).ok_or_else(gone)?;
        match f.locked_by {
            Some(h) if h != self.handle => Ok(false),
            _ => {
                f.locked_by = Some(self.handle);
                Ok(true)
            }
        }
    }

    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        let mut s = self.fs.lock();
        let f = s.files.get_mut(&self.id).ok_or_else(gone)?;
        if (f.data.len() as u64) < len {
            f.data.resize(len as usize, 0);
        }
        f.synced = f.data.clone();
        Ok(true)
    }
}

impl Drop for SimWritable {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if let Some(f) = s.files.get_mut(&self.id)
            && f.locked_by == Some(self.handle)
        {
            f.locked_by = None;
        }
    }
}

struct SimReadable(Vec<u8>);

impl ReadableFile for SimReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

impl FileSystem for SimFs {
    fn open_append(&self, path: &Path, _mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let mut s = self.lock();
        s.fault(Op::Open)?;
        let (id, created) = match s.names.get(path) {
            Some(id) => (*id, false),
            None => {
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, File::default());
                s.names.insert(path.to_path_buf(), id);
                (id, true)
            }
        };
        let pos = s.files.get(&id).map_or(0, |f| f.data.len() as u64);
        let handle = s.next_id;
        s.next_id += 1;
        drop(s);
        Ok((
            Box::new(SimWritable {
                fs: self.clone(),
                id,
                pos,
                handle,
            }),
            created,
        ))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let s = self.lock();
        let id = s
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let data = s.files.get(id).map(|f| f.data.clone()).unwrap_or_default();
        Ok(Box::new(SimReadable(data)))
    }

    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(Op::SyncDir)?;
        let dir = path.to_path_buf();
        let in_dir = |p: &Path| parent_dir(p) == dir;
        s.durable.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable.extend(now);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(Op::Rename)?;
        let id = s
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.fault(Op::Remove)?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        let mut v: Vec<String> = s
            .names
            .keys()
            .filter(|p| parent_dir(p) == dir)
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        v.sort();
        Ok(v)
    }

    fn write_new(&self, path: &Path, data: &[u8], _mode: u32) -> io::Result<()> {
        let mut s = self.lock();
        if s.names.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        s.fault(Op::Write)?;
        let id = s.next_id;
        s.next_id += 1;
        s.files.insert(
            id,
            File {
                data: data.to_vec(),
                synced: data.to_vec(),
                locked_by: None,
            },
        );
        s.names.insert(path.to_path_buf(), id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_names_and_bytes_do_not_survive() {
        let fs = SimFs::new();
        let p = Path::new("/d/a");
        let (mut f, _) = fs.open_append(p, 0o600).unwrap();
        f.write_all(b"abc").unwrap();
        f.sync_data().unwrap();
        // The name was never made durable.
        assert!(fs.power_cut(1, false).contents(p).is_none());
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all(b"defgh").unwrap();
        for seed in 0..50 {
            let after = fs.power_cut(seed, false).contents(p).unwrap();
            assert!(after.starts_with(b"abc") && b"abcdefgh".starts_with(&after));
        }
    }

    #[test]
    fn faults_fire_at_the_chosen_call() {
        let fs = SimFs::new();
        let (mut f, _) = fs.open_append(Path::new("/a"), 0o600).unwrap();
        fs.fail(Op::Sync, 2, false, Fault::Errno(5));
        assert!(f.sync_data().is_ok());
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        assert!(f.sync_data().is_ok());
        fs.fail(Op::Write, 1, true, Fault::ShortWrite(2));
        assert_eq!(f.write(b"hello").unwrap(), 2);
        assert_eq!(fs.calls(Op::Sync), 3);
    }

    #[test]
    fn second_writer_is_refused_until_the_first_drops() {
        let fs = SimFs::new();
        let (a, _) = fs.open_append(Path::new("/a"), 0o600).unwrap();
        assert!(a.try_lock().unwrap());
        let (b, _) = fs.open_append(Path::new("/a"), 0o600).unwrap();
        assert!(!b.try_lock().unwrap());
        drop(a);
        assert!(b.try_lock().unwrap());
    }
}
