//! Data-plane rotation: the file-system side of a [`RetentionPolicy`].
//!
//! The policy (pure, in [`crate::retention`]) says *when*; this module does
//! the rotating, in an order where a crash at any step loses nothing:
//!
//! 1. the writer syncs the live file and renames it to an uncompressed
//!    archive, `{stem}_{secs}_archived.{ext}`, then syncs the directory;
//! 2. it creates a fresh live file (directory synced again) and records the
//!    new file's clocks in `{path}.meta` (written to a temporary name,
//!    synced, renamed);
//! 3. a background thread compresses the sealed file with zstd to a
//!    temporary name, syncs it, renames it to `{stem}_{secs}_archived.zst`,
//!    syncs the directory, and only then deletes the sealed file; then it
//!    prunes archives beyond `max_archives` / `max_archive_age`, oldest
//!    first.
//!
//! Writers never wait for compression. On open, a sealed file left by a
//! crash is compressed again (or deleted, when its archive is already
//! complete). The creation time that `max_age` measures comes from the
//! `.meta` file, not the file's mtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fs::{FileSystem, parent_dir};
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
    fn names(&self) -> Vec<String> {
        self.fs.list_dir(&self.dir).unwrap_or_default()
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
            .names()
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
        let mut v: Vec<(i64, u32, String)> = self
            .names()
            .into_iter()
            .filter(|n| n.ends_with(&format!("_archived.{}", self.ext)))
            .filter_map(|n| parse_archive_name(&self.stem, &n).map(|(s, c)| (s, c, n)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, n)| self.dir.join(n)).collect()
    }
}

/// Rotation state of one live file, owned by its writer.
pub(crate) struct Rotation {
    archives: Archives,
    /// A write-ahead log: sealed files become segments, never archives.
    wal: bool,
    path: PathBuf,
    meta_path: PathBuf,
    state: FileState,
    jobs: Option<mpsc::Sender<PathBuf>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Rotation {
    /// Sets up rotation for the live file at `path` (just opened; `created`
    /// when this open created it), and resumes compressions a crash left.
    pub fn open(
        policy: RetentionPolicy,
        fs: Arc<dyn FileSystem>,
        path: &Path,
        mode: u32,
        created: bool,
        wal: bool,
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
        let meta_path = PathBuf::from(format!("{}.meta", path.display()));
        let mut r = Rotation {
            archives,
            wal,
            path: path.to_path_buf(),
            meta_path,
            state: FileState::default(),
            jobs: None,
            worker: None,
        };
        match (created, r.read_meta()) {
            (false, Some(m)) => r.set_meta(m),
            // A new file, or one whose clocks were never recorded: they start now.
            _ => r.reset_clocks()?,
        }
        if !wal {
            for sealed in r.archives.pending() {
                r.submit(sealed)?;
            }
        }
        Ok(r)
    }

    fn read_meta(&self) -> Option<Meta> {
        let f = self.archives.fs.open_read(&self.meta_path).ok()?;
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

    /// Whether this is a write-ahead log (sealing makes segments).
    pub fn is_wal(&self) -> bool {
        self.wal
    }

    /// Starts the live file's clocks now and records them durably.
    pub fn reset_clocks(&mut self) -> Result<(), Error> {
        let now = now_unix();
        let m = Meta {
            created_unix: now,
            last_rotation_unix: now,
            last_rotation_offset_secs: local_offset_secs_at(now),
        };
        let fs = &*self.archives.fs;
        let tmp = PathBuf::from(format!("{}.tmp", self.meta_path.display()));
        let _ = fs.remove_file(&tmp);
        let bytes = serde_json::to_vec(&m).unwrap_or_default();
        fs.write_new(&tmp, &bytes, self.archives.mode)
            .map_err(|e| Error::io("write", &tmp, e))?;
        fs.rename(&tmp, &self.meta_path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        fs.sync_dir(&self.archives.dir)
            .map_err(|e| Error::io("fsync directory", &self.archives.dir, e))?;
        self.set_meta(m);
        Ok(())
    }

    /// Whether the live file, now `size` bytes long, should rotate.
    pub fn due(&self, size: u64) -> Option<RotateReason> {
        let state = FileState { size, ..self.state };
        let offset = if self.archives.policy.rotation_time.is_some() {
            local_offset_secs()
        } else {
            0
        };
        self.archives
            .policy
            .should_rotate(&state, now_unix(), offset)
    }

    /// The name the live file is renamed to when it is sealed: the next
    /// segment of a write-ahead log (named by `first_lsn`), or an
    /// uncompressed archive.
    pub fn sealed_path(&self, first_lsn: Option<crate::Lsn>) -> PathBuf {
        if self.wal {
            let next = crate::segments::list_segments(&*self.archives.fs, &self.path)
                .last()
                .map_or(1, |s| s.id + 1);
            return crate::segments::segment_path(&self.path, next, first_lsn);
        }
        let existing = self.archives.names();
        let name = archive_name_with_extension(
            &self.archives.stem,
            now_unix(),
            &self.archives.ext,
            &existing,
        );
        self.archives.dir.join(name)
    }

    /// Called once the live file was sealed as `sealed` and a fresh one
    /// created: records the new clocks and hands `sealed` to the compressor.
    pub fn rotated(&mut self, sealed: PathBuf) -> Result<(), Error> {
        self.reset_clocks()?;
        if self.wal {
            // A segment stays as it is, readable, until `truncate_before`.
            return Ok(());
        }
        self.submit(sealed)
    }

    fn submit(&mut self, sealed: PathBuf) -> Result<(), Error> {
        if self.jobs.is_none() {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            let archives = self.archives.clone();
            let worker = std::thread::Builder::new()
                .name("hyperlog-archiver".into())
                .spawn(move || {
                    for sealed in rx {
                        if let Err(e) = archives.seal(&sealed) {
                            (archives.on_error)(e);
                        }
                    }
                })
                .map_err(|e| Error::io("spawn archiver thread for", &self.path, e))?;
            self.jobs = Some(tx);
            self.worker = Some(worker);
        }
        if let Some(tx) = &self.jobs {
            let _ = tx.send(sealed);
        }
        Ok(())
    }

    /// Waits for pending compressions and pruning.
    pub fn finish(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Rotation {
    fn drop(&mut self) {
        self.finish();
    }
}
