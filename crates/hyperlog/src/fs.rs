//! The file-system seam.
//!
//! Every file operation of the writer, the reader and recovery goes through
//! [`FileSystem`], so tests can plug in a file system that injects faults
//! (write errors, short writes, `fdatasync` failures, a full disk) or that
//! simulates power loss by forgetting unsynced data. Production uses
//! [`StdFs`], the real disk.
//!
//! The traits are deliberately small: the operations a log needs and nothing
//! else. Each returns `std::io::Result`; the caller adds the path and the
//! operation to make an [`Error`](crate::Error).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod sim;
pub use sim::{Fault, Op, SimFs};

/// A file opened for appending by a log's writer.
///
/// Writes go to the *write position*: it starts at the end of the file,
/// follows [`truncate`](WritableFile::truncate), advances with each write, and
/// is not moved by [`allocate`](WritableFile::allocate). So a preallocated
/// (zero-filled) file is written from the end of its data, not from its end.
#[allow(clippy::len_without_is_empty)]
pub trait WritableFile: Send {
    /// Writes some of `buf` at the write position, returning how many bytes
    /// were written (a short write is allowed, as with `write(2)`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later writes go to the new end.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Takes an exclusive advisory lock without waiting; `Ok(false)` when
    /// another holder has it.
    fn try_lock(&self) -> io::Result<bool>;

    /// Makes the file at least `len` bytes long by writing zeros past its
    /// end, and syncs them, so that later `fdatasync`s of data written over
    /// them need not commit a new file size or allocate blocks. Returns
    /// whether it did; the default does nothing (no preallocation).
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        let _ = len;
        Ok(false)
    }

    /// A second handle that can [`allocate`](WritableFile::allocate) on
    /// another thread while this one goes on writing below the file's
    /// current end (the writer preallocates ahead this way). `None`, the
    /// default, when the file system cannot; preallocation then runs on the
    /// writer's thread.
    fn allocator(&self) -> Option<Box<dyn FileAllocator>> {
        None
    }

    /// A second handle that can [`sync_data`](FileSyncer::sync_data) on
    /// another thread while this one goes on writing (the pipelined group
    /// commit of [`DurabilityMode::FsyncBatch`](crate::DurabilityMode::FsyncBatch)
    /// syncs one group while the next is written this way). Its sync must
    /// cover at least every byte whose write returned before the sync
    /// started, as `fdatasync` on a duplicate descriptor does. `None`, the
    /// default, when the file system cannot: the writer then syncs on its own
    /// thread, one group at a time.
    fn syncer(&self) -> Option<Box<dyn FileSyncer>> {
        None
    }

    /// Writes all of `buf`, retrying short writes.
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Extends a file with synced zeros from another thread (see
/// [`WritableFile::allocator`]).
pub trait FileAllocator: Send {
    /// Makes the file at least `len` bytes long with zeros past its current
    /// end, then syncs, as [`WritableFile::allocate`] does.
    fn allocate(&mut self, len: u64) -> io::Result<bool>;
}

/// Syncs a file from another thread than its writer's (see
/// [`WritableFile::syncer`]).
pub trait FileSyncer: Send {
    /// Makes every byte written to the file before the call durable
    /// (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Which file a path or an open file is: the device and inode on Unix.
///
/// Readers of a log that is being written use it to tell whether the file
/// they hold open is still the live file, or was renamed into a sealed
/// segment by rotation (see [`crate::reader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device the file is on.
    pub dev: u64,
    /// Its inode number on that device.
    pub ino: u64,
}

/// A file opened for reading.
#[allow(clippy::len_without_is_empty)]
pub trait ReadableFile: Send {
    /// Reads into `buf` from `offset`, returning how many bytes were read
    /// (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;

    /// Which file this is, when the file system can tell (the default:
    /// `None`, and readers then go by the names in the directory alone).
    fn identity(&self) -> Option<FileId> {
        None
    }

    /// Reads up to `len` bytes from `offset`, retrying short reads; fewer
    /// only at the end of the file.
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut have = 0;
        while have < buf.len() {
            match self.read_at(&mut buf[have..], offset + have as u64) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(have);
        Ok(buf)
    }
}

/// Every file operation hyperlog performs.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens `path` for appending, creating it with Unix permissions `mode`
    /// if it does not exist. Reports whether it was created.
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)>;
    /// Opens `path` for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (creations, renames, deletions) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Writes a whole new file (used for side files that keep cut bytes),
    /// synced before it returns.
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;

    /// Which file `path` names now, when the file system can tell (the
    /// default: `None`); see [`ReadableFile::identity`].
    fn identity(&self, path: &Path) -> io::Result<Option<FileId>> {
        let _ = path;
        Ok(None)
    }

    /// The names of the entries of directory `dir` (for finding a log's
    /// archives). The default reads the real disk.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                v.push(n.to_string());
            }
        }
        Ok(v)
    }
}

/// The real disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl StdFs {
    /// The shared instance used when options name no other file system.
    pub fn shared() -> Arc<dyn FileSystem> {
        Arc::new(StdFs)
    }
}

/// A file written at a tracked position (`pwrite`), so zeros preallocated
/// past the data are overwritten rather than appended to.
struct StdWritable {
    file: File,
    pos: u64,
}

impl WritableFile for StdWritable {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = write_at(&self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.pos = len;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        allocate_zeros(&self.file, len, false)
    }
    fn allocator(&self) -> Option<Box<dyn FileAllocator>> {
        // A duplicate descriptor: it follows the file through renames.
        let file = self.file.try_clone().ok()?;
        Some(Box::new(StdAllocator(file)))
    }
    fn syncer(&self) -> Option<Box<dyn FileSyncer>> {
        // A duplicate descriptor shares the open file description, so an
        // error reported to one is not reported again to the other: the
        // writer never syncs on its own while the syncer may (it drains the
        // sync stage first), and a failed sync poisons the context.
        let file = self.file.try_clone().ok()?;
        Some(Box::new(StdSyncer(file)))
    }
    fn try_lock(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// [`StdWritable`]'s allocator: a duplicate of its descriptor.
struct StdAllocator(File);

impl FileAllocator for StdAllocator {
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        // Beside a writer: synced in steps, so that the writer's own
        // `fdatasync` never queues behind the whole extension.
        allocate_zeros(&self.0, len, true)
    }
}

/// [`StdWritable`]'s syncer: a duplicate of its descriptor.
struct StdSyncer(File);

impl FileSyncer for StdSyncer {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// Writes zeros from the end of `file` up to `len` and syncs them (with
/// `in_steps`, every 256 KiB).
fn allocate_zeros(file: &File, len: u64, in_steps: bool) -> io::Result<bool> {
    let mut end = file.metadata()?.len();
    if end >= len {
        return Ok(true);
    }
    // Real zeros, not fallocate: an unwritten extent would still need a
    // metadata change (and a journal commit) when first written.
    let zeros = vec![0u8; 256 * 1024];
    while end < len {
        let n = ((len - end) as usize).min(zeros.len());
        let w = write_at(file, &zeros[..n], end)?;
        end += w as u64;
        if in_steps {
            file.sync_data()?;
        }
    }
    file.sync_all()?;
    Ok(true)
}

struct StdReadable(File);

impl ReadableFile for StdReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.0, buf, offset)
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn identity(&self) -> Option<FileId> {
        self.0.metadata().ok().and_then(|m| file_id(&m))
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<FileId> {
    None
}

fn write_at(f: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_write(f, buf, offset)
    }
}

fn with_mode(o: &mut OpenOptions, mode: u32) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        std::os::unix::fs::OpenOptionsExt::mode(o, mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o
}

impl FileSystem for StdFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let created =
            match with_mode(OpenOptions::new().write(true).create_new(true), mode).open(path) {
                Ok(f) => return Ok((Box::new(StdWritable { file: f, pos: 0 }), true)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
        let file = OpenOptions::new().write(true).open(path)?;
        let pos = file.metadata()?.len();
        Ok((Box::new(StdWritable { file, pos }), created))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        Ok(Box::new(StdReadable(File::open(path)?)))
    }
    fn identity(&self, path: &Path) -> io::Result<Option<FileId>> {
        Ok(file_id(&std::fs::metadata(path)?))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(path)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Ok(())
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut f = with_mode(OpenOptions::new().write(true).create_new(true), mode).open(path)?;
        io::Write::write_all(&mut f, data)?;
        f.sync_all()
    }
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
