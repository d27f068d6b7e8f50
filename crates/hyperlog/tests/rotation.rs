//! Data-plane rotation: archives hold exactly what was written, in order,
//! the entry that triggered a rotation is kept, pruning keeps the newest,
//! and a sealed file left by a crash is compressed on the next open.

use std::path::{Path, PathBuf};

use hyperlog::retention::{RetentionPolicy, parse_archive_name};
use hyperlog::{ContextOptions, DurabilityMode, Logger, Message, ReadOptions};

/// The archives of `stem` in `dir`, oldest first.
fn archives(dir: &Path, stem: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<(i64, u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(&format!("_archived.{ext}")))
        .filter_map(|n| parse_archive_name(stem, &n).map(|(s, c)| (s, c, dir.join(n))))
        .collect();
    v.sort();
    v.into_iter().map(|x| x.2).collect()
}

/// The messages of a JSON-lines file (or of its decompressed archive).
fn messages(bytes: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.log.json");
    std::fs::write(&p, bytes).unwrap();
    hyperlog::read_entries_blocking::<Message>(&p, 0, ReadOptions::default())
        .map(|r| r.unwrap().1.entry.message.unwrap())
        .collect()
}

fn unzstd(p: &Path) -> Vec<u8> {
    zstd::decode_all(std::fs::File::open(p).unwrap()).unwrap()
}

fn open(dir: &Path, policy: RetentionPolicy, mode: DurabilityMode) -> (Logger, hyperlog::Context) {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(dir.join("app.log.json"))
                .durability(mode)
                .retention_policy(policy),
        )
        .unwrap();
    (logger, ctx)
}

#[test]
fn size_rotation_archives_every_entry_once_in_order() {
    for mode in [DurabilityMode::Flush, DurabilityMode::None] {
        let dir = tempfile::tempdir().unwrap();
        let (logger, ctx) = open(dir.path(), RetentionPolicy::new().max_size(2048), mode);
        let n = 200;
        for i in 0..n {
            ctx.log_blocking(Message::info(format!("entry {i:04}")))
                .unwrap();
            if mode == DurabilityMode::None && i % 10 == 9 {
                // Let the writer see several groups, so several rotations.
                ctx.flush_blocking().unwrap();
            }
        }
        logger.close_blocking().unwrap();
        let zst = archives(dir.path(), "app.log", "zst");
        assert!(
            zst.len() >= 3,
            "{mode:?}: expected several archives, got {zst:?}"
        );
        assert!(
            archives(dir.path(), "app.log", "json").is_empty(),
            "no sealed file is left"
        );
        let mut all = Vec::new();
        for a in &zst {
            let bytes = unzstd(a);
            // An archive is a whole log: complete lines only.
            assert_eq!(bytes.last(), Some(&b'\n'));
            all.extend(messages(&bytes));
        }
        all.extend(messages(
            &std::fs::read(dir.path().join("app.log.json")).unwrap(),
        ));
        let want: Vec<String> = (0..n).map(|i| format!("entry {i:04}")).collect();
        assert_eq!(all, want, "{mode:?}");
    }
}

#[test]
fn an_archive_decompresses_to_exactly_the_sealed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetentionPolicy::new().max_size(1);
    let (logger, ctx) = open(dir.path(), policy, DurabilityMode::Flush);
    ctx.log_blocking(Message::info("first")).unwrap();
    let live_before = std::fs::read(dir.path().join("app.log.json")).unwrap();
    // This entry finds the file due (1 byte or more) and goes to a fresh one.
    ctx.log_blocking(Message::info("second")).unwrap();
    logger.close_blocking().unwrap();
    let zst = archives(dir.path(), "app.log", "zst");
    assert_eq!(zst.len(), 1);
    assert_eq!(unzstd(&zst[0]), live_before);
    assert_eq!(
        messages(&std::fs::read(dir.path().join("app.log.json")).unwrap()),
        ["second"]
    );
}

#[test]
fn pruning_keeps_the_newest_archives() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetentionPolicy::new().max_size(1).max_archives(2);
    let (logger, ctx) = open(dir.path(), policy, DurabilityMode::Flush);
    for i in 0..6 {
        ctx.log_blocking(Message::info(format!("e{i}"))).unwrap();
    }
    logger.close_blocking().unwrap();
    let zst = archives(dir.path(), "app.log", "zst");
    assert_eq!(zst.len(), 2, "{zst:?}");
    let kept: Vec<String> = zst.iter().flat_map(|a| messages(&unzstd(a))).collect();
    assert_eq!(kept, ["e3", "e4"]);
    assert_eq!(
        messages(&std::fs::read(dir.path().join("app.log.json")).unwrap()),
        ["e5"]
    );
}

#[test]
fn uncompressed_archives_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetentionPolicy::new()
        .max_size(1)
        .compression(hyperlog::retention::Compression::None);
    let (logger, ctx) = open(dir.path(), policy, DurabilityMode::Flush);
    for i in 0..3 {
        ctx.log_blocking(Message::info(format!("e{i}"))).unwrap();
    }
    logger.close_blocking().unwrap();
    assert!(archives(dir.path(), "app.log", "zst").is_empty());
    let plain = archives(dir.path(), "app.log", "json");
    let all: Vec<String> = plain
        .iter()
        .flat_map(|a| messages(&std::fs::read(a).unwrap()))
        .collect();
    assert_eq!(all, ["e0", "e1"]);
}

#[test]
fn age_rotation_uses_the_recorded_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RetentionPolicy::new().max_age(std::time::Duration::from_secs(1));
    let (logger, ctx) = open(dir.path(), policy.clone(), DurabilityMode::Flush);
    ctx.log_blocking(Message::info("old")).unwrap();
    logger.close_blocking().unwrap();
    assert!(dir.path().join("app.log.json.meta").exists());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Reopening keeps the recorded creation time (not "now", not the mtime),
    // so the first entry after the age passed rotates the file.
    let (logger, ctx) = open(dir.path(), policy, DurabilityMode::Flush);
    ctx.log_blocking(Message::info("new")).unwrap();
    logger.close_blocking().unwrap();
    let zst = archives(dir.path(), "app.log", "zst");
    assert_eq!(zst.len(), 1);
    assert_eq!(messages(&unzstd(&zst[0])), ["old"]);
    assert_eq!(
        messages(&std::fs::read(dir.path().join("app.log.json")).unwrap()),
        ["new"]
    );
}

#[test]
fn a_sealed_file_left_by_a_crash_is_compressed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    // What a crash between sealing and compressing leaves: the live file
    // renamed to an uncompressed archive, and a stale temporary archive.
    let (logger, ctx) = open(
        dir.path(),
        RetentionPolicy::new().max_size(1 << 30),
        DurabilityMode::Flush,
    );
    ctx.log_blocking(Message::info("sealed before the crash"))
        .unwrap();
    logger.close_blocking().unwrap();
    let sealed = dir.path().join("app.log_1700000000_archived.json");
    std::fs::rename(dir.path().join("app.log.json"), &sealed).unwrap();
    let sealed_bytes = std::fs::read(&sealed).unwrap();
    std::fs::write(
        dir.path().join("app.log_1700000000_archived.zst.tmp"),
        b"partial",
    )
    .unwrap();

    let (logger, ctx) = open(
        dir.path(),
        RetentionPolicy::new().max_size(1 << 30),
        DurabilityMode::Flush,
    );
    ctx.log_blocking(Message::info("after")).unwrap();
    logger.close_blocking().unwrap();
    assert!(!sealed.exists());
    assert!(
        !dir.path()
            .join("app.log_1700000000_archived.zst.tmp")
            .exists()
    );
    let zst = archives(dir.path(), "app.log", "zst");
    assert_eq!(zst, [dir.path().join("app.log_1700000000_archived.zst")]);
    assert_eq!(unzstd(&zst[0]), sealed_bytes);
}

#[test]
fn a_wal_refuses_pruning_and_bad_policies_at_configure_time() {
    let logger = Logger::new();
    let wal = || {
        ContextOptions::new()
            .path("x.wal")
            .durability(DurabilityMode::FsyncBatch)
    };
    // A WAL rotates into segments (tests/segments.rs) ...
    logger
        .configure("wal", wal().retention_policy([("max_size", "50MB")]))
        .unwrap();
    // ... that only truncate_before deletes.
    let e = logger
        .configure(
            "wal",
            wal().retention_policy([("max_size", "50MB"), ("max_archives", "3")]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("truncate_before"), "{e}");
    let e = logger
        .configure(
            "bad",
            ContextOptions::new()
                .path("x.log")
                .retention_policy([("max_size", "50XB")]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("50XB"), "{e}");
}
