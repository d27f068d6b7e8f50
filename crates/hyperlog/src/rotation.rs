//! Rotation: the file-system side of a [`RetentionPolicy`].
//!
//! The policy (pure, in [`crate::retention`]) says *when*; this module does
//! the rotating, in an order where a crash at any step loses nothing.
//!
//! The writer's part is kept to renames and one directory sync, so that a
//! rotation stalls producers as little as possible:
//!
//! 1. the writer renames the live file to its sealed name (a segment of a
//!    write-ahead log, `{stem}.{id:08}.{first_lsn:020}.{ext}`, or an
//!    uncompressed archive, `{stem}_{secs}_archived.{ext}`). Every entry in
//!    it was already written (and, for a syncing context, synced) by the
//!    group commits before;
//! 2. it renames the next live file, which a background thread created and
//!    preallocated beforehand at `{path}.next`, to the live path (or, when
//!    none is ready, creates a fresh one). For a syncing context one
//!    directory sync makes both renames durable; it runs on a thread of its
//!    own while the writer writes and syncs the next group, and that group
//!    is acknowledged only once both are done (a failed directory sync
//!    poisons the context);
//! 3. the background thread then finishes the sealed file: a segment's
//!    preallocated zeros are cut and its sparse index written; an archive is
//!    compressed with zstd to a temporary name, synced, renamed to
//!    `{stem}_{secs}_archived.zst`, the directory synced, and only then the
//!    sealed file deleted; archives beyond `max_archives` /
//!    `max_archive_age` are pruned, oldest first. It records the new file's
//!    clocks in `{path}.meta` (temporary name, synced, renamed) and prepares
//!    the next `{path}.next`.
//!
//! Writers never wait for compression. On open, a sealed file left by a
//! crash is compressed again (or deleted, when its archive is already
//! complete), and a leftover `{path}.next` (zeros only) is deleted. The
//! creation time that `max_age` measures comes from the `.meta` file, not the
//! file's mtime; a crash before the background thread recorded the new clocks
//! leaves the previous file's clocks, which can only make the next rotation
//! come early, never lose an entry.
//!
//! Both renames of step 2 are made durable by one directory sync. That
//! relies on the file system committing directory changes in order (ext4,
//! XFS and btrfs journal them so; the second rename reuses the name the
//! first freed, so it cannot be durable without it).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fs::{FileSystem, WritableFile, parent_dir};
use crate::retention::{
    Compression, FileState, RetentionPolicy, RotateReason, ZSTD_EXTENSION,
    archive_name_with_extension, archive_stem, compress_archive, local_offset_secs,
    local_offset_secs_at, parse_archive_name,
};

/// The clocks of a live file, kept beside it in `{path}.meta`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    created_unix: i64,
    last_rotation_unix: i64,
    last_rotation_offset_secs: i32,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where a policy's archives live and how they are named.
#[derive(Clone)]
struct Archives {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    stem: String,
    /// The live file's extension (`json`, `wal`, ...), used for sealed,
    /// not yet compressed archives.
    ext: String,
    mode: u32,
    policy: RetentionPolicy,
    on_error: Arc<dyn Fn(Error) + Send + Sync>,
}

impl Archives {
    fn names(&self) -> Result<Vec<String>, Error> {
        self.fs
            .list_dir(&self.dir)
            .map_err(|e| Error::io("list directory", &self.dir, e))
    }

    /// Compresses one sealed file (unless the policy keeps archives
    /// uncompressed), then prunes.
    fn seal(&self, sealed: &Path) -> Result<(), Error> {
        if let Compression::Zstd(level) = self.policy.compression {
            let name = sealed
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(&format!(".{}", self.ext)))
                .map(|base| format!("{base}.{ZSTD_EXTENSION}"))
                .ok_or_else(|| {
                    Error::io(
                        "name archive for",
                        sealed,
                        std::io::ErrorKind::InvalidInput.into(),
                    )
                })?;
            let archive = self.dir.join(&name);
            // A complete archive means a crash came between its rename and
            // the sealed file's deletion.
            if !self.fs.exists(&archive) {
                compress_archive(&*self.fs, sealed, &self.dir, &name, level, self.mode)?;
            }
            self.fs
                .remove_file(sealed)
                .map_err(|e| Error::io("delete sealed log", sealed, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        }
        self.prune()
    }

    /// Deletes the archives the policy no longer keeps, oldest first.
    fn prune(&self) -> Result<(), Error> {
        if !self.policy.prunes() {
            return Ok(());
        }
        let finished_ext = match self.policy.compression {
            Compression::Zstd(_) => ZSTD_EXTENSION,
            Compression::None => self.ext.as_str(),
        };
        let archives: Vec<(String, i64, u32)> = self
            .names()?
            .into_iter()
            .filter(|n| n.ends_with(&format!("_archived.{finished_ext}")))
            .filter_map(|n| parse_archive_name(&self.stem, &n).map(|(s, c)| (n, s, c)))
            .collect();
        let doomed = self.policy.archives_to_prune(&archives, now_unix());
        for name in &doomed {
            let p = self.dir.join(name);
            self.fs
                .remove_file(&p)
                .map_err(|e| Error::io("delete archive", &p, e))?;
        }
        if !doomed.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        }
        Ok(())
    }

    /// Sealed files of this log that still wait for compression.
    fn pending(&self) -> Vec<PathBuf> {
        if self.policy.compression == Compression::None {
            return Vec::new();
        }
        // Unlistable now: the next open tries again.
        let mut v: Vec<(i64, u32, String)> = self
            .names()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.ends_with(&format!("_archived.{}", self.ext)))
            .filter_map(|n| parse_archive_name(&self.stem, &n).map(|(s, c)| (s, c, n)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, n)| self.dir.join(n)).collect()
    }
}

/// A preallocated file waiting at `{path}.next` to become the live file.
pub(crate) struct Prepared {
    /// Its handle, opened for appending and locked.
    pub file: Box<dyn WritableFile>,
    /// Its length: the zeros written ahead.
    pub len: u64,
}

/// Work the writer hands to the background thread.
enum Job {
    /// Compress a sealed data-plane file (unless the policy keeps archives
    /// uncompressed), then prune archives.
    Seal(PathBuf),
    /// Finish a sealed segment: cut its preallocated zeros at `len`, sync,
    /// and write its sparse index.
    Segment {
        file: Box<dyn WritableFile>,
        sealed: PathBuf,
        len: u64,
        trim: bool,
        index: Option<Vec<(u64, u64)>>,
    },
    /// Record the live file's clocks in `.meta`.
    Meta(Meta),
    /// Delete the oldest sealed segments the policy no longer keeps
    /// (`delete_wal_segments`).
    PruneSegments,
    /// Create `{path}.next` with this many bytes of zeros.
    Prepare(u64),
    /// Answer once every earlier job is done.
    Barrier(mpsc::Sender<()>),
}

/// What the background thread needs: everything but the writer's state.
#[derive(Clone)]
struct Background {
    archives: Archives,
    live: PathBuf,
    meta_path: PathBuf,
    next_path: PathBuf,
    prepared: Arc<Mutex<Option<Prepared>>>,
}

impl Background {
    fn run(&self, job: Job) {
        let res = match job {
            Job::Seal(sealed) => self.archives.seal(&sealed),
            Job::Segment {
                file,
                sealed,
                len,
                trim,
                index,
            } => self.finish_segment(file, &sealed, len, trim, index),
            Job::Meta(m) => write_meta(&self.archives, &self.meta_path, &m),
            Job::PruneSegments => self.prune_segments(),
            // Only an optimization: when it fails, the writer creates the
            // next file itself (and reports what that runs into).
            Job::Prepare(len) => {
                if self.prepare(len).is_err() {
                    *lock(&self.prepared) = None;
                    let _ = self.archives.fs.remove_file(&self.next_path);
                }
                Ok(())
            }
            Job::Barrier(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = res {
            (self.archives.on_error)(e);
        }
    }

    fn finish_segment(
        &self,
        mut file: Box<dyn WritableFile>,
        sealed: &Path,
        len: u64,
        trim: bool,
        index: Option<Vec<(u64, u64)>>,
    ) -> Result<(), Error> {
        let fs = &*self.archives.fs;
        // Pruning runs on this thread too, behind the writer: when it lags
        // several rotations, a prune can delete a sealed segment whose job
        // has not run yet. Its index would be an orphan, its trim wasted.
        // (The writer's own deletions wait for this thread to be idle.)
        if !fs.exists(sealed) {
            return Ok(());
        }
        if let Some(points) = index {
            // Best effort: without it, readers scan the segment.
            let idx = crate::segments::index_path(sealed);
            let _ = fs.remove_file(&idx);
            let _ = fs.write_new(
                &idx,
                &crate::segments::encode_index(&points),
                self.archives.mode,
            );
        }
        if trim {
            // Until this lands, the zeros read as the end of the segment.
            file.truncate(len)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io("truncate", sealed, e))?;
        }
        Ok(())
    }

    /// Deletes the oldest segments beyond the policy's limits, oldest first
    /// (a crash midway leaves a contiguous chain), then syncs the directory.
    fn prune_segments(&self) -> Result<(), Error> {
        let fs = &*self.archives.fs;
        let segments = crate::segments::try_list_segments(fs, &self.live)
            .map_err(|e| Error::io("list the directory of", &self.live, e))?;
        let now = now_unix();
        // A segment's last entry was written just before the next one's
        // first, whose LSN carries its time; the newest was sealed just now.
        let sealed: Vec<Option<i64>> = (0..segments.len())
            .map(|i| match segments.get(i + 1) {
                Some(next) => next.first_lsn.map(|l| (l.timestamp_ms() / 1000) as i64),
                None => Some(now),
            })
            .collect();
        let n = self.archives.policy.segments_to_prune(&sealed, now);
        for seg in &segments[..n] {
            // The index first, as truncate_before does.
            let _ = fs.remove_file(&crate::segments::index_path(&seg.path));
            fs.remove_file(&seg.path)
                .map_err(|e| Error::io("delete segment", &seg.path, e))?;
        }
        if n > 0 {
            fs.sync_dir(&self.archives.dir)
                .map_err(|e| Error::io("fsync directory", &self.archives.dir, e))?;
        }
        Ok(())
    }

    /// Creates `{path}.next` and fills it with `len` bytes of zeros. The
    /// writer renames `{path}.next` only while it holds `prepared` and has
    /// taken a file out of it, so when the slot is empty the name is free.
    fn prepare(&self, len: u64) -> Result<(), Error> {
        let fs = &*self.archives.fs;
        let next = &self.next_path;
        let mut file = {
            let slot = lock(&self.prepared);
            if slot.is_some() {
                return Ok(());
            }
            let _ = fs.remove_file(next);
            let (file, _) = fs
                .open_append(next, self.archives.mode)
                .map_err(|e| Error::io("create", next, e))?;
            file
        };
        if !file.try_lock().map_err(|e| Error::io("lock", next, e))? {
            return Err(Error::Locked { path: next.clone() });
        }
        let len = match file.allocate(len) {
            Ok(true) => len,
            // No preallocation on this file system: a plain empty file still
            // saves the writer a create.
            Ok(false) => 0,
            Err(e) => return Err(Error::io("preallocate", next, e)),
        };
        *lock(&self.prepared) = Some(Prepared { file, len });
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `m` to `meta_path` through a synced temporary file and a rename.
fn write_meta(archives: &Archives, meta_path: &Path, m: &Meta) -> Result<(), Error> {
    let fs = &*archives.fs;
    let tmp = PathBuf::from(format!("{}.tmp", meta_path.display()));
    let _ = fs.remove_file(&tmp);
    let bytes = serde_json::to_vec(m).unwrap_or_default();
    fs.write_new(&tmp, &bytes, archives.mode)
        .map_err(|e| Error::io("write", &tmp, e))?;
    fs.rename(&tmp, meta_path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    fs.sync_dir(&archives.dir)
        .map_err(|e| Error::io("fsync directory", &archives.dir, e))
}

/// Rotation state of one live file, owned by its writer.
pub(crate) struct Rotation {
    bg: Background,
    /// A write-ahead log: sealed files become segments, never archives.
    wal: bool,
    path: PathBuf,
    state: FileState,
    /// Bytes of zeros to prepare the next live file with (0: none).
    prepare: u64,
    /// The id the next sealed segment gets, once known.
    next_segment: Option<u64>,
    /// The newest archive name this log has used (or found at open): a
    /// listing can miss a file the archiver renames at that moment, and the
    /// next name must still be above it.
    last_archive: Option<String>,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// A thread that only syncs the directory, so that a rotation's
    /// directory sync overlaps the first group's write and `fdatasync`
    /// instead of preceding them (and never waits behind a compression).
    dir_syncs: Option<mpsc::Sender<mpsc::Sender<Result<(), Error>>>>,
    dir_syncer: Option<std::thread::JoinHandle<()>>,
}

/// A directory sync under way; [`DirSync::wait`] gives its outcome.
pub(crate) struct DirSync(mpsc::Receiver<Result<(), Error>>);

impl DirSync {
    /// Waits for the sync to finish.
    pub fn wait(self) -> Result<(), Error> {
        self.0.recv().unwrap_or_else(|_| {
            Err(Error::io(
                "fsync directory (its thread is gone) of",
                "",
                std::io::ErrorKind::BrokenPipe.into(),
            ))
        })
    }
}

impl Rotation {
    /// Sets up rotation for the live file at `path` (just opened; `created`
    /// when this open created it), resumes compressions a crash left, and
    /// starts preparing the next live file with `prepare` bytes of zeros
    /// (0: none is prepared).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        policy: RetentionPolicy,
        fs: Arc<dyn FileSystem>,
        path: &Path,
        mode: u32,
        created: bool,
        wal: bool,
        prepare: u64,
        on_error: Arc<dyn Fn(Error) + Send + Sync>,
    ) -> Result<Rotation, Error> {
        let dir = parent_dir(path);
        let stem = archive_stem(path)
            .ok_or_else(|| {
                Error::io(
                    "name archives of",
                    path,
                    std::io::ErrorKind::InvalidInput.into(),
                )
            })?
            .to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("log")
            .to_string();
        let archives = Archives {
            fs,
            dir,
            stem,
            ext,
            mode,
            policy,
            on_error,
        };
        let bg = Background {
            archives,
            live: path.to_path_buf(),
            meta_path: PathBuf::from(format!("{}.meta", path.display())),
            next_path: next_path(path),
            prepared: Arc::new(Mutex::new(None)),
        };
        // Zeros a crash left before the rename that would have used them.
        let _ = bg.archives.fs.remove_file(&bg.next_path);
        // A clocks file a crash left half-written.
        let _ = bg
            .archives
            .fs
            .remove_file(Path::new(&format!("{}.tmp", bg.meta_path.display())));
        let mut r = Rotation {
            bg,
            wal,
            path: path.to_path_buf(),
            state: FileState::default(),
            prepare,
            next_segment: None,
            last_archive: None,
            jobs: None,
            worker: None,
            dir_syncs: None,
            dir_syncer: None,
        };
        match (created, r.read_meta()) {
            (false, Some(m)) => r.set_meta(m),
            // A new file, or one whose clocks were never recorded: they start now.
            _ => r.reset_clocks()?,
        }
        if !wal {
            let stem = &r.bg.archives.stem;
            r.last_archive =
                r.bg.archives
                    .names()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|n| parse_archive_name(stem, &n).map(|k| (k, n)))
                    .max()
                    .map(|(_, n)| n);
            for sealed in r.bg.archives.pending() {
                r.submit(Job::Seal(sealed))?;
            }
        }
        if prepare > 0 && r.bg.archives.policy.rotates() {
            r.submit(Job::Prepare(prepare))?;
        }
        Ok(r)
    }

    fn read_meta(&self) -> Option<Meta> {
        let f = self.bg.archives.fs.open_read(&self.bg.meta_path).ok()?;
        let len = f.len().ok()? as usize;
        let mut buf = vec![0u8; len.min(4096)];
        let n = f.read_at(&mut buf, 0).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    }

    fn set_meta(&mut self, m: Meta) {
        self.state.created_unix = m.created_unix;
        self.state.last_rotation_unix = m.last_rotation_unix;
        self.state.last_rotation_offset_secs = m.last_rotation_offset_secs;
    }

    fn clocks_now() -> Meta {
        let now = now_unix();
        Meta {
            created_unix: now,
            last_rotation_unix: now,
            last_rotation_offset_secs: local_offset_secs_at(now),
        }
    }

    /// Whether this is a write-ahead log (sealing makes segments).
    pub fn is_wal(&self) -> bool {
        self.wal
    }

    /// Starts the live file's clocks now and records them durably before
    /// returning.
    pub fn reset_clocks(&mut self) -> Result<(), Error> {
        let m = Self::clocks_now();
        write_meta(&self.bg.archives, &self.bg.meta_path, &m)?;
        self.set_meta(m);
        Ok(())
    }

    /// Starts the live file's clocks now; the background thread records them.
    pub fn restart_clocks(&mut self) -> Result<(), Error> {
        let m = Self::clocks_now();
        self.set_meta(m);
        self.submit(Job::Meta(m))
    }

    /// Whether the live file, now `size` bytes long, should rotate.
    pub fn due(&self, size: u64) -> Option<RotateReason> {
        let state = FileState { size, ..self.state };
        let offset = if self.bg.archives.policy.rotation_time.is_some() {
            local_offset_secs()
        } else {
            0
        };
        self.bg
            .archives
            .policy
            .should_rotate(&state, now_unix(), offset)
    }

    /// The name the live file is renamed to when it is sealed: the next
    /// segment of a write-ahead log (named by `first_lsn`), or an
    /// uncompressed archive. Never a name in use: a directory that cannot be
    /// listed, or a name that exists (of a sealed file or its compressed
    /// archive), fails the rotation, which is tried again later.
    pub fn sealed_path(&mut self, first_lsn: Option<crate::Lsn>) -> Result<PathBuf, Error> {
        let fs = &*self.bg.archives.fs;
        let sealed = if self.wal {
            let next = match self.next_segment {
                Some(n) => n,
                None => {
                    let n = crate::segments::try_list_segments(fs, &self.path)
                        .map_err(|e| Error::io("list the directory of", &self.path, e))?
                        .last()
                        .map_or(1, |s| s.id + 1);
                    *self.next_segment.insert(n)
                }
            };
            crate::segments::segment_path(&self.path, next, first_lsn)
        } else {
            let mut existing = self.bg.archives.names()?;
            existing.extend(self.last_archive.clone());
            let name = archive_name_with_extension(
                &self.bg.archives.stem,
                now_unix(),
                &self.bg.archives.ext,
                &existing,
            );
            self.last_archive = Some(name.clone());
            self.bg.archives.dir.join(name)
        };
        let compressed = sealed.with_extension(ZSTD_EXTENSION);
        if fs.exists(&sealed) || (!self.wal && fs.exists(&compressed)) {
            // Forget the cached id: the directory changed under us.
            self.next_segment = None;
            return Err(Error::io(
                "seal the live file as",
                &sealed,
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        Ok(sealed)
    }

    /// Moves the prepared next live file, if the background thread has
    /// finished one, to `live` (whose old file must already be renamed
    /// away). `None` when none is ready.
    pub fn install_prepared(&self, live: &Path) -> Option<Result<Prepared, Error>> {
        let mut slot = lock(&self.bg.prepared);
        let p = slot.take()?;
        let next = &self.bg.next_path;
        Some(
            self.bg
                .archives
                .fs
                .rename(next, live)
                .map(|()| p)
                .map_err(|e| Error::io("rename", next, e)),
        )
    }

    /// Called once the live file was sealed as `sealed` (its handle `old`,
    /// `len` bytes of entries, preallocated zeros beyond them when `trim`)
    /// and a fresh live file is in place: restarts the clocks and hands the
    /// rest to the background thread.
    pub fn rotated(
        &mut self,
        old: Box<dyn WritableFile>,
        sealed: PathBuf,
        len: u64,
        trim: bool,
        index: Option<Vec<(u64, u64)>>,
    ) -> Result<(), Error> {
        self.restart_clocks()?;
        if self.wal {
            if let Some(n) = self.next_segment.as_mut() {
                *n += 1;
            }
            // A segment stays as it is, readable, until `truncate_before`.
            self.submit(Job::Segment {
                file: old,
                sealed,
                len,
                trim,
                index: index.filter(|p| !p.is_empty()),
            })?;
            let policy = &self.bg.archives.policy;
            if policy.delete_wal_segments && policy.prunes() {
                self.submit(Job::PruneSegments)?;
            }
        } else {
            drop(old);
            self.submit(Job::Seal(sealed))?;
        }
        if self.prepare > 0 {
            self.submit(Job::Prepare(self.prepare))?;
        }
        Ok(())
    }

    /// Waits until the background thread has done everything handed to it
    /// so far (sealed segments finished, clocks recorded).
    /// Forgets the cached id of the next segment: segments were deleted
    /// from the end of the chain, and the next one sealed continues it.
    pub fn forget_segment_ids(&mut self) {
        self.next_segment = None;
    }

    /// Waits until the background thread has finished every job submitted
    /// so far.
    pub fn wait_idle(&mut self) {
        if self.jobs.is_none() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        if self.submit(Job::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Starts syncing the log's directory on the directory-sync thread.
    pub fn sync_dir_in_background(&mut self) -> Result<DirSync, Error> {
        if self.dir_syncs.is_none() {
            let (tx, rx) = mpsc::channel::<mpsc::Sender<Result<(), Error>>>();
            let fs = self.bg.archives.fs.clone();
            let dir = self.bg.archives.dir.clone();
            let worker = std::thread::Builder::new()
                .name("hyperlog-dirsync".into())
                .spawn(move || {
                    for reply in rx {
                        let r = fs
                            .sync_dir(&dir)
                            .map_err(|e| Error::io("fsync directory", &dir, e));
                        let _ = reply.send(r);
                    }
                })
                .map_err(|e| Error::io("spawn directory-sync thread for", &self.path, e))?;
            self.dir_syncs = Some(tx);
            self.dir_syncer = Some(worker);
        }
        let (tx, rx) = mpsc::channel();
        if let Some(q) = &self.dir_syncs {
            let _ = q.send(tx);
        }
        Ok(DirSync(rx))
    }

    fn submit(&mut self, job: Job) -> Result<(), Error> {
        if self.jobs.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let bg = self.bg.clone();
            let worker = std::thread::Builder::new()
                .name("hyperlog-rotation".into())
                .spawn(move || {
                    for job in rx {
                        bg.run(job);
                    }
                })
                .map_err(|e| Error::io("spawn rotation thread for", &self.path, e))?;
            self.jobs = Some(tx);
            self.worker = Some(worker);
        }
        if let Some(tx) = &self.jobs {
            let _ = tx.send(job);
        }
        Ok(())
    }

    /// Waits for pending jobs, then deletes the unused prepared file.
    pub fn finish(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.dir_syncs = None;
        if let Some(w) = self.dir_syncer.take() {
            let _ = w.join();
        }
        if lock(&self.bg.prepared).take().is_some() {
            let _ = self.bg.archives.fs.remove_file(&self.bg.next_path);
        }
    }
}

impl Drop for Rotation {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Where the next live file of `path` is prepared: `{path}.next`.
pub(crate) fn next_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.next", path.display()))
}
