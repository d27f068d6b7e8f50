//! File systems for the logger-core tests: the real disk (`StdFs`) behind a
//! gate that can hold every `write`, and behind a switch that makes every
//! `write` fail with ENOSPC.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::common::{inner_file_methods, std_fs_methods};
use hyperlog::fs::{FileSystem, StdFs, WritableFile};

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
    inner_file_methods!(sync_data, truncate, len, try_lock, allocate);
}

fn open_wrapped(path: &Path, mode: u32, hook: Hook) -> io::Result<(Box<dyn WritableFile>, bool)> {
    let (inner, created) = StdFs.open_append(path, mode)?;
    Ok((Box::new(Wrapped { inner, hook }), created))
}

impl FileSystem for GateFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        open_wrapped(path, mode, Hook::Gate(self.gate.clone()))
    }
    std_fs_methods!(basics, write_new);
}

impl FileSystem for FailFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        open_wrapped(
            path,
            mode,
            Hook::Fail(self.fail.clone(), self.failures.clone()),
        )
    }
    std_fs_methods!(basics, write_new);
}
