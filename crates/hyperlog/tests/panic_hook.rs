//! `Logger::install_panic_hook`: a panicking process still writes what it
//! logged in `None` mode (acknowledged on enqueue, not yet written).

use std::io;
use std::path::Path;
use std::sync::Arc;

use hyperlog::fs::{FileSystem, ReadableFile, StdFs, WritableFile};
use hyperlog::{ContextOptions, DurabilityMode, Logger, Message, ReadOptions};

/// The real disk, with every write 20 ms slow, so that entries are still
/// queued when the child panics.
#[derive(Debug)]
struct SlowFs;

struct SlowFile(Box<dyn WritableFile>);

impl WritableFile for SlowFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.0.write(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.0.try_lock()
    }
}

impl FileSystem for SlowFs {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let (f, created) = StdFs.open_append(path, mode)?;
        Ok((Box::new(SlowFile(f)), created))
    }
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
}

const CHILD_ENV: &str = "HYPERLOG_PANIC_HOOK_CHILD";

#[test]
#[ignore = "child process of a_panic_flushes_none_mode_entries"]
fn panicking_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(std::path::PathBuf::from(path))
                .durability(DurabilityMode::None)
                .queue_capacity(100_000)
                .file_system(Arc::new(SlowFs)),
        )
        .unwrap();
    logger.install_panic_hook();
    for i in 0..5000 {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    // Exit through a panic, with entries still queued; the context and
    // logger are leaked so no Drop flushes them.
    println!("WRITTEN-BEFORE-PANIC {}", ctx.stats().records_written);
    std::mem::forget(ctx);
    std::mem::forget(logger.clone());
    panic!("deliberate panic after logging");
}

#[test]
fn a_panic_flushes_none_mode_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log.json");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panicking_child", "--nocapture", "--ignored"])
        .env(CHILD_ENV, &path)
        .env_remove("HYPERLOG_LEVEL")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child was meant to panic");
    assert!(String::from_utf8_lossy(&out.stderr).contains("deliberate panic"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let before: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRITTEN-BEFORE-PANIC "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the child reports what was written before the panic");
    assert!(
        before < 5000,
        "entries were still queued at the panic ({before} written)"
    );
    let entries: Vec<_> =
        hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap();
    let n = entries.len();
    assert_eq!(
        n, 5000,
        "every entry logged before the panic is in the file"
    );
}
