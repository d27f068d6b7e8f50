//! File systems for the logger-core tests: the real disk (`StdFs`) behind a
//! gate that can hold every `write`, and behind a switch that makes every
//! `write` fail with ENOSPC.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hyperlog::fs::{FileSystem, ReadableFile, StdFs, WritableFile};

/// How long a write waits at a closed gate before it gives up and goes on,
/// so that a failing test ends instead of hanging.
const GATE_LIMIT: Duration = Duration::from_secs(120);

/// A gate that holds writes while it is closed.
#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    /// Writes that reached the gate (passed or waiting).
    arrived: AtomicUsize,
}

impl Gate {
    /// A closed gate.
    pub fn closed() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Lets every held and later write through.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// How many writes reached the gate.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    fn pass(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open && start.elapsed() < GATE_LIMIT {
            open = self
                .cv
                .wait_timeout(open, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Opens the gate when dropped, so a failing test never leaves a writer
/// thread (and the `Drop` that joins it) stuck at the gate.
pub struct OpenOnDrop(pub Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// `StdFs` whose writes wait at a gate.
#[derive(Debug, Clone)]
pub struct GateFs {
    pub gate: Arc<Gate>,
}

/// `StdFs` whose writes fail with ENOSPC while `fail` is set.
#[derive(Debug, Clone, Default)]
pub struct FailFs {
    pub fail: Arc<AtomicBool>,
    /// Writes that failed.
    pub failures: Arc<AtomicUsize>,
}

/// What a wrapped file does before each write.
#[derive(Debug, Clone)]
enum Hook {
    Gate(Arc<Gate>),
    Fail(Arc<AtomicBool>, Arc<AtomicUsize>),
}

struct Wrapped {
    inner: Box<dyn WritableFile>,
    hook: Hook,
}

impl WritableFile for Wrapped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.hook {
            Hook::Gate(g) => g.pass(),
            Hook::Fail(fail, n) => {
                if fail.load(Ordering::SeqCst) {
                    n.fetch_add(1, Ordering::SeqCst);
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
            }
        }
        self.inner.write(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
    fn allocate(&mut self, len: u64) -> io::Result<bool> {
        self.inner.allocate(len)
    }
}

fn open_wrapped(path: &Path, mode: u32, hook: Hook) -> io::Result<(Box<dyn WritableFile>, bool)> {
    let (inner, created) = StdFs.open_append(path, mode)?;
    Ok((Box::new(Wrapped { inner, hook }), created))
}

macro_rules! delegate_rest {
    () => {
        fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
            StdFs.open_read(path)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_dir(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_file(path)
        }
        fn exists(&self, path: &Path) -> bool {
            StdFs.exists(path)
        }
        fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
            StdFs.write_new(path, data, mode)
        }
    };
}

impl FileSystem for GateFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        open_wrapped(path, mode, Hook::Gate(self.gate.clone()))
    }
    delegate_rest!();
}

impl FileSystem for FailFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        open_wrapped(
            path,
            mode,
            Hook::Fail(self.fail.clone(), self.failures.clone()),
        )
    }
    delegate_rest!();
}
