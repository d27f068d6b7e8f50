//! `Logger::install_panic_hook`: a panicking process still writes what it
//! logged in `None` mode (acknowledged on enqueue, not yet written).

mod common;

use std::time::Duration;

use common::FaultFs;
use hyperlog::{ContextOptions, DurabilityMode, Logger, Message, ReadOptions};

const CHILD_ENV: &str = "HYPERLOG_PANIC_HOOK_CHILD";

#[test]
#[ignore = "child process of a_panic_flushes_none_mode_entries"]
fn panicking_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Every write 20 ms slow, so that entries are still queued at the panic.
    let fs = FaultFs::new();
    fs.write_delay(Duration::from_millis(20));
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(std::path::PathBuf::from(path))
                .durability(DurabilityMode::None)
                .queue_capacity(100_000)
                .file_system(fs.handle()),
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
