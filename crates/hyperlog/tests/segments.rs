//! Segmented write-ahead logs: rotation into sealed segments, reading
//! across them, seeking by LSN, `truncate_before`, and damage to the chain.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::std_fs_methods;
use hyperlog::retention::RetentionPolicy;
use hyperlog::segments::{list_segments, segment_path};
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Error, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    n: u32,
}
impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn options(path: &Path, format: LogFormat) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(DurabilityMode::FsyncBatch)
        .format(format)
        .enable_lsn(true)
        .instance_id(5)
        .retention_policy(RetentionPolicy::new().max_size(4096))
}

/// Writes `n` entries; returns their LSNs.
fn write(path: &Path, format: LogFormat, from: u32, n: u32) -> Vec<Lsn> {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("wal", options(path, format))
        .unwrap();
    let lsns = (from..from + n)
        .map(|i| {
            let cmd = Cmd {
                level: LogLevel::Info,
                message: Some(format!("command {i:05}")),
                n: i,
            };
            ctx.log_blocking(cmd).unwrap().unwrap()
        })
        .collect();
    logger.close_blocking().unwrap();
    lsns
}

fn read(path: &Path, opts: ReadOptions) -> Result<Vec<(u32, Lsn)>, Error> {
    hyperlog::read_entries_blocking::<Cmd>(path, 0, opts)
        .map(|r| r.map(|(_, log, lsn)| (log.entry.n, lsn.unwrap())))
        .collect()
}

#[test]
fn a_wal_rotates_into_segments_read_back_as_one_log() {
    for format in [LogFormat::Binary, LogFormat::Json] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.wal");
        let lsns = write(&path, format, 0, 300);
        let segments = list_segments(&hyperlog::fs::StdFs, &path);
        assert!(
            segments.len() >= 3,
            "{format:?}: {} segments",
            segments.len()
        );
        // Named by id and first LSN, in order, nothing compressed.
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.id, i as u64 + 1);
            assert!(s.first_lsn.is_some());
        }
        assert!(
            !std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".zst"))
        );
        let got = read(&path, ReadOptions::default()).unwrap();
        assert_eq!(got.len(), 300);
        for (i, (n, lsn)) in got.iter().enumerate() {
            assert_eq!(*n, i as u32);
            assert_eq!(*lsn, lsns[i]);
        }
        // The same as a stream.
        let streamed: Vec<_> = futures::executor::block_on(futures::StreamExt::collect::<Vec<_>>(
            hyperlog::read_entries::<Cmd>(&path, 0, ReadOptions::default()),
        ));
        assert_eq!(streamed.len(), 300);
        // LSNs continue across reopening.
        let more = write(&path, format, 300, 10);
        assert!(more[0] > lsns[299]);
        assert_eq!(read(&path, ReadOptions::default()).unwrap().len(), 310);
    }
}

#[test]
fn from_lsn_lands_in_the_right_segment_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let lsns = write(&path, LogFormat::Binary, 0, 300);
    for k in [0usize, 1, 77, 150, 299] {
        let got = read(&path, ReadOptions::default().from_lsn(lsns[k])).unwrap();
        assert_eq!(got.first(), Some(&(k as u32, lsns[k])), "from entry {k}");
        assert_eq!(got.len(), 300 - k);
    }
    // Above everything: nothing.
    let past = Lsn::new(lsns[299].get() + 1);
    assert!(
        read(&path, ReadOptions::default().from_lsn(past))
            .unwrap()
            .is_empty()
    );
    // Each sealed segment has a sparse index beside it; a damaged or missing
    // one only costs a scan.
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    for s in &segments {
        assert!(
            hyperlog::segments::index_path(&s.path).exists(),
            "{}",
            s.path.display()
        );
        let idx = std::fs::read(hyperlog::segments::index_path(&s.path)).unwrap();
        let points = hyperlog::segments::decode_index(&idx).unwrap();
        assert_eq!(
            points.first().map(|p| (p.0, p.1)),
            Some((s.first_lsn.unwrap().get(), 0))
        );
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[1].1 >= w[0].1 + 4096)
        );
    }
    for s in &segments[..2] {
        std::fs::write(hyperlog::segments::index_path(&s.path), b"garbage").unwrap();
    }
    std::fs::remove_file(hyperlog::segments::index_path(&segments[2].path)).unwrap();
    for k in [0usize, 77, 150, 299] {
        let got = read(&path, ReadOptions::default().from_lsn(lsns[k])).unwrap();
        assert_eq!(
            got.first(),
            Some(&(k as u32, lsns[k])),
            "from entry {k}, damaged indexes"
        );
    }
}

#[test]
fn truncate_before_removes_exactly_the_segments_below() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let lsns = write(&path, LogFormat::Binary, 0, 300);
    // Which entries each file holds.
    let mut by_file: BTreeMap<PathBuf, Vec<Lsn>> = BTreeMap::new();
    for s in list_segments(&hyperlog::fs::StdFs, &path) {
        let in_seg = read(&s.path, ReadOptions::default()).unwrap();
        by_file.insert(s.path.clone(), in_seg.iter().map(|x| x.1).collect());
    }
    let cut = lsns[150];
    let expected: Vec<PathBuf> = by_file
        .iter()
        .filter(|(_, l)| l.iter().all(|x| *x < cut))
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!expected.is_empty());

    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("wal", options(&path, LogFormat::Binary))
        .unwrap();
    let removed = ctx.truncate_before_blocking(cut).unwrap();
    assert_eq!(removed, expected);
    for p in &removed {
        assert!(!p.exists());
    }
    // Everything at or above the cut is still there, in order.
    let rest = read(&path, ReadOptions::default()).unwrap();
    let at_or_above: Vec<Lsn> = lsns.iter().copied().filter(|l| *l >= cut).collect();
    let read_lsns: Vec<Lsn> = rest.iter().map(|x| x.1).collect();
    assert!(read_lsns.ends_with(&at_or_above));
    // Nothing below the cut remains but what shares a segment with entries above it.
    assert!(read_lsns.len() - at_or_above.len() < 300 - 150);
    // Truncating again removes nothing; a cut above everything keeps the live file.
    assert!(ctx.truncate_before_blocking(cut).unwrap().is_empty());
    let all = ctx.truncate_before_blocking(Lsn::new(u64::MAX)).unwrap();
    assert!(
        list_segments(&hyperlog::fs::StdFs, &path).is_empty(),
        "{all:?}"
    );
    assert!(path.exists());
    ctx.log_blocking(Cmd {
        level: LogLevel::Info,
        message: None,
        n: 9999,
    })
    .unwrap();
    logger.close_blocking().unwrap();
    let last = read(&path, ReadOptions::default()).unwrap();
    assert_eq!(last.last().map(|x| x.0), Some(9999));
}

#[test]
fn a_missing_middle_segment_is_damage_not_a_short_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    write(&path, LogFormat::Binary, 0, 300);
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    assert!(segments.len() >= 3);
    std::fs::remove_file(&segments[1].path).unwrap();
    let e = read(&path, ReadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("segment 2 is missing"), "{e}");
    let logger = Logger::new();
    let e = logger
        .context_with_blocking("wal", options(&path, LogFormat::Binary))
        .unwrap_err();
    assert!(e.to_string().contains("segment 2 is missing"), "{e}");
}

#[test]
fn lsns_continue_above_the_last_segment_when_the_live_file_is_gone() {
    // A crash right after sealing: the live file was renamed into a segment
    // and no new one was created yet.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let lsns = write(&path, LogFormat::Binary, 0, 300);
    let next_id = list_segments(&hyperlog::fs::StdFs, &path)
        .last()
        .unwrap()
        .id
        + 1;
    let live_first = read(&path, ReadOptions::default())
        .unwrap()
        .into_iter()
        .map(|x| x.1)
        .find(|l| {
            list_segments(&hyperlog::fs::StdFs, &path)
                .iter()
                .all(|s| s.first_lsn < Some(*l))
        });
    std::fs::rename(&path, segment_path(&path, next_id, live_first)).unwrap();
    let more = write(&path, LogFormat::Binary, 300, 1);
    assert!(more[0] > lsns[299]);
    assert_eq!(read(&path, ReadOptions::default()).unwrap().len(), 301);
}

#[test]
fn the_sparse_index_skips_into_the_middle_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            options(&path, LogFormat::Binary)
                .retention_policy(RetentionPolicy::new().max_size(64 * 1024)),
        )
        .unwrap();
    let lsns: Vec<Lsn> = (0..1200u32)
        .map(|i| {
            let cmd = Cmd {
                level: LogLevel::Info,
                message: Some(format!("command {i:05}")),
                n: i,
            };
            ctx.log_blocking(cmd).unwrap().unwrap()
        })
        .collect();
    logger.close_blocking().unwrap();
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    assert!(segments.len() >= 2);
    let seg = &segments[0];
    let in_seg = read(&seg.path, ReadOptions::default()).unwrap();
    let mid = in_seg[in_seg.len() * 3 / 4].1;
    let at = hyperlog::segments::seek_offset(&hyperlog::fs::StdFs, &seg.path, mid);
    assert!(at > 0, "the index points into the segment");
    for k in [0usize, 1, 299, 600, 1199] {
        let got = read(&path, ReadOptions::default().from_lsn(lsns[k])).unwrap();
        assert_eq!(got.first(), Some(&(k as u32, lsns[k])), "from entry {k}");
        assert_eq!(got.len(), 1200 - k);
    }
}

#[test]
fn a_torn_write_of_zeros_is_a_torn_tail_but_aligned_zeros_are_preallocation() {
    use hyperlog::fs::SimFs;
    use std::sync::Arc;
    let fs = SimFs::new();
    let path = Path::new("/d/z.wal");
    let logger = Logger::new();
    let opts = ContextOptions::new()
        .path(path)
        .format(LogFormat::Binary)
        .file_system(Arc::new(fs.clone()));
    let ctx = logger.context_with_blocking("z", opts.clone()).unwrap();
    ctx.log_blocking(Cmd {
        level: LogLevel::Info,
        message: None,
        n: 1,
    })
    .unwrap();
    logger.close_blocking().unwrap();
    let intact = fs.contents(path).unwrap();
    // One zero byte after the record: the start of a record whose CRC's
    // first byte is zero, cut by a crash. Cut and kept, like any torn tail.
    let mut torn = intact.clone();
    torn.push(0);
    fs.put(path, &torn);
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("z", opts.clone()).unwrap();
    let r = ctx.recovery_report().unwrap();
    assert_eq!((r.records, r.bytes_cut), (1, 1));
    assert!(r.saved_to.is_some());
    logger.close_blocking().unwrap();
    // Zeros up to a 4 KiB boundary: preallocated space, trimmed silently.
    let mut pre = intact.clone();
    pre.resize(8192, 0);
    fs.put(path, &pre);
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("z", opts).unwrap();
    let r = ctx.recovery_report().unwrap();
    assert_eq!((r.records, r.bytes_cut, r.saved_to.clone()), (1, 0, None));
    logger.close_blocking().unwrap();
    assert_eq!(fs.contents(path).unwrap(), intact);
}

#[test]
fn truncate_before_works_without_a_rotating_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let lsns = write(&path, LogFormat::Binary, 0, 300);
    let before = list_segments(&hyperlog::fs::StdFs, &path);
    assert!(before.len() >= 3);
    // Reopened without a retention policy: the segments an earlier run
    // sealed are still the application's to truncate.
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            options(&path, LogFormat::Binary).retention_policy(RetentionPolicy::new()),
        )
        .unwrap();
    let removed = ctx.truncate_before_blocking(lsns[299]).unwrap();
    logger.close_blocking().unwrap();
    let after = list_segments(&hyperlog::fs::StdFs, &path);
    assert!(!removed.is_empty());
    assert_eq!(removed.len() + after.len(), before.len());
    let rest = read(&path, ReadOptions::default()).unwrap();
    assert_eq!(rest.last().map(|x| x.1), Some(lsns[299]));
}

#[test]
fn pruning_wal_segments_needs_the_opt_in_and_keeps_a_contiguous_newest_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let logger = Logger::new();
    let refused = logger.context_with_blocking(
        "wal",
        options(&path, LogFormat::Json)
            .retention_policy(RetentionPolicy::new().max_size(4096).max_archives(2)),
    );
    assert!(
        matches!(&refused, Err(Error::InvalidOption { .. })),
        "{:?}",
        refused.err()
    );
    assert!(
        refused
            .err()
            .unwrap()
            .to_string()
            .contains("delete_wal_segments")
    );
    let mut policy = RetentionPolicy::new().max_size(4096).max_archives(2);
    policy.delete_wal_segments = true;
    let ctx = logger
        .context_with_blocking(
            "wal",
            options(&path, LogFormat::Json).retention_policy(policy),
        )
        .unwrap();
    let lsns: Vec<Lsn> = (0..300)
        .map(|n| {
            ctx.log_blocking(Cmd {
                level: LogLevel::Info,
                message: Some(format!("command {n:05}")),
                n,
            })
            .unwrap()
            .unwrap()
        })
        .collect();
    logger.close_blocking().unwrap();
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    assert_eq!(segments.len(), 2, "{segments:?}");
    // What is left is the newest entries, contiguous and in order.
    let rest = read(&path, ReadOptions::default()).unwrap();
    assert!(rest.len() < 300 && !rest.is_empty());
    let got: Vec<Lsn> = rest.iter().map(|x| x.1).collect();
    assert!(lsns.ends_with(&got), "not a suffix of what was written");
    // No index is left behind for a deleted segment.
    let idx = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("idx".as_ref()))
        .count();
    assert!(idx <= 2, "{idx} index files for 2 segments");
}

/// The real disk, except that writing a segment's sparse index takes 200 ms:
/// the background thread that finishes sealed segments falls several
/// rotations behind the writer.
#[derive(Debug, Clone, Copy)]
struct SlowIndexes;

impl hyperlog::fs::FileSystem for SlowIndexes {
    std_fs_methods!(basics, open_append);
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
        if path.extension() == Some("idx".as_ref()) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        hyperlog::fs::StdFs.write_new(path, data, mode)
    }
}

/// Pruning that runs while later sealed segments still wait for their
/// index deletes them too; their index, written afterwards, must not stay
/// behind (a CI run once found 8 index files beside 2 segments).
#[test]
fn pruning_ahead_of_the_index_writer_leaves_no_orphan_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let mut policy = RetentionPolicy::new().max_size(2048).max_archives(2);
    policy.delete_wal_segments = true;
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            options(&path, LogFormat::Json)
                .retention_policy(policy)
                .file_system(std::sync::Arc::new(SlowIndexes)),
        )
        .unwrap();
    for n in 0..300 {
        ctx.log_blocking(Cmd {
            level: LogLevel::Info,
            message: Some(format!("command {n:05}")),
            n,
        })
        .unwrap();
    }
    logger.close_blocking().unwrap();
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    assert_eq!(segments.len(), 2, "{segments:?}");
    let orphans = hyperlog::segments::orphan_indexes(&hyperlog::fs::StdFs, &path).unwrap();
    assert!(orphans.is_empty(), "{orphans:?}");
}

#[test]
fn rotation_leaves_finished_segments_and_no_prepared_file_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    write(&path, LogFormat::Json, 0, 300);
    let segments = list_segments(&hyperlog::fs::StdFs, &path);
    assert!(segments.len() >= 3);
    for s in &segments {
        // Preallocated zeros were cut once the segment was sealed.
        let bytes = std::fs::read(&s.path).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'), "{}", s.path.display());
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".next")),
        "a prepared file outlived the close: {names:?}"
    );
}

#[test]
fn zeros_a_crash_left_in_sealed_segments_are_trimmed_on_open_and_damage_is_not() {
    // The state a crash between sealing a segment and trimming it leaves:
    // the segment still ends in the zeros preallocated for it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    for format in [LogFormat::Binary, LogFormat::Json] {
        let _ = std::fs::remove_dir_all(dir.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        let lsns = write(&path, format, 0, 300);
        let segments = list_segments(&hyperlog::fs::StdFs, &path);
        assert!(segments.len() >= 3, "{format:?}");
        let pad = |p: &Path, damage: bool| -> (u64, u64) {
            let mut bytes = std::fs::read(p).unwrap();
            let data = bytes.len() as u64;
            let padded = (data / 4096 + 1) * 4096 + 64 * 1024;
            bytes.resize(padded as usize, 0);
            if damage {
                // One stray byte among the zeros: not preallocation.
                bytes[padded as usize - 100] = 0x5a;
            }
            std::fs::write(p, &bytes).unwrap();
            (data, padded)
        };
        let (data0, _) = pad(&segments[0].path, false);
        let (data1, _) = pad(&segments[1].path, false);
        let (_, padded2) = pad(&segments[2].path, true);

        // Reopen (and append one more entry).
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking("wal", options(&path, format))
            .unwrap();
        let more = ctx
            .log_blocking(Cmd {
                level: LogLevel::Info,
                message: None,
                n: 300,
            })
            .unwrap()
            .unwrap();
        logger.close_blocking().unwrap();

        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(len(&segments[0].path), data0, "{format:?}: trimmed");
        assert_eq!(len(&segments[1].path), data1, "{format:?}: trimmed");
        assert_eq!(
            len(&segments[2].path),
            padded2,
            "{format:?}: a segment whose tail is not only zeros is left for verify"
        );
        // Nothing was lost in the trimmed segments: restore the damaged one
        // and every entry reads back, in order.
        let mut bytes = std::fs::read(&segments[2].path).unwrap();
        let at = bytes.len() - 100;
        bytes[at] = 0;
        std::fs::write(&segments[2].path, &bytes).unwrap();
        let read_back = read(&path, ReadOptions::default()).unwrap();
        let mut want: Vec<(u32, Lsn)> = lsns
            .iter()
            .copied()
            .enumerate()
            .map(|(i, l)| (i as u32, l))
            .collect();
        want.push((300, more));
        assert_eq!(read_back, want, "{format:?}");
    }
}

/// Issue #13 item 6.1: the live file's index was rebuilt only for a file that
/// started empty, so the first segment sealed after a reopen had no `.idx`.
/// Every segment, the one that spans the reopen included, has a valid index
/// whose points each name a record start with that LSN, exactly where the
/// writer puts them (the first record, then the first at least
/// `INDEX_STRIDE` bytes past the previous point).
#[test]
fn the_first_segment_sealed_after_a_reopen_has_a_complete_index() {
    use hyperlog::segments::{INDEX_STRIDE, decode_index, index_path};
    for format in [LogFormat::Binary, LogFormat::Json] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.wal");
        let policy = RetentionPolicy::new().max_size(48 * 1024);
        let session = |from: u32, n: u32| {
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking(
                    "wal",
                    options(&path, format).retention_policy(policy.clone()),
                )
                .unwrap();
            for i in from..from + n {
                let cmd = Cmd {
                    level: LogLevel::Info,
                    message: Some(format!("command {i:05}")),
                    n: i,
                };
                ctx.log_blocking(cmd).unwrap().unwrap();
            }
            logger.close_blocking().unwrap();
        };
        // Enough for several index points, not enough to rotate.
        session(0, 120);
        let live_len = std::fs::metadata(&path).unwrap().len();
        assert!(
            live_len > 3 * INDEX_STRIDE,
            "{format:?}: live file of {live_len} bytes"
        );
        assert!(list_segments(&hyperlog::fs::StdFs, &path).is_empty());
        // Reopened: more until the live file rotated at least twice.
        session(120, 630);
        let segments = list_segments(&hyperlog::fs::StdFs, &path);
        assert!(
            segments.len() >= 2,
            "{format:?}: {} segments",
            segments.len()
        );
        assert!(
            std::fs::metadata(&segments[0].path).unwrap().len() > live_len,
            "{format:?}: the first segment spans the reopen"
        );
        for s in &segments {
            let idx = index_path(&s.path);
            let bytes = std::fs::read(&idx)
                .unwrap_or_else(|e| panic!("{format:?}: {}: {e}", idx.display()));
            let points = decode_index(&bytes)
                .unwrap_or_else(|| panic!("{format:?}: {} does not decode", idx.display()));
            let records: Vec<(u64, u64)> =
                hyperlog::read_records(&s.path, 0, ReadOptions::default())
                    .map(|r| {
                        let r = r.unwrap();
                        (r.lsn.unwrap().get(), r.offset)
                    })
                    .collect();
            let mut want: Vec<(u64, u64)> = Vec::new();
            for &(lsn, offset) in &records {
                if want.last().is_none_or(|p| offset >= p.1 + INDEX_STRIDE) {
                    want.push((lsn, offset));
                }
            }
            assert!(want.len() > 3, "{format:?}: {} points", want.len());
            assert_eq!(points, want, "{format:?}: {}", idx.display());
            // Each point names a record start with that LSN.
            for p in &points {
                assert!(records.contains(p), "{format:?}: point {p:?}");
            }
        }
        // And seeking through the index lands on the right entries.
        let all = read(&path, ReadOptions::default()).unwrap();
        assert_eq!(all.len(), 750);
        for k in [0usize, 100, 119, 120, 121, 400, 749] {
            let got = read(&path, ReadOptions::default().from_lsn(all[k].1)).unwrap();
            assert_eq!(got.first(), Some(&all[k]), "{format:?}: from entry {k}");
            assert_eq!(got.len(), 750 - k);
        }
    }
}

#[test]
fn get_last_lsn_answers_for_the_whole_log_and_none_before_the_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let opts = ReadOptions::default();
    // No log yet: what a service asks on its first boot.
    assert_eq!(hyperlog::get_last_lsn_blocking(&path, &opts).unwrap(), None);
    assert_eq!(
        futures::executor::block_on(hyperlog::get_last_lsn(&path)).unwrap(),
        None
    );
    let lsns = write(&path, LogFormat::Binary, 0, 300);
    assert!(list_segments(&hyperlog::fs::StdFs, &path).len() >= 2);
    let last_live = hyperlog::get_last_lsn_blocking(&path, &opts).unwrap();
    assert_eq!(last_live, lsns.last().copied());
    // The state a crash right after a rotation leaves: the live file empty,
    // or only preallocated zeros. The answer is the newest segment's last.
    let newest = list_segments(&hyperlog::fs::StdFs, &path).pop().unwrap();
    let newest_last = hyperlog::read_records(&newest.path, 0, ReadOptions::default())
        .last()
        .unwrap()
        .unwrap()
        .lsn;
    assert!(newest_last.is_some_and(|l| l < last_live.unwrap()));
    for live in [Vec::new(), vec![0u8; 8192]] {
        std::fs::write(&path, &live).unwrap();
        assert_eq!(
            hyperlog::get_last_lsn_blocking(&path, &opts).unwrap(),
            newest_last,
            "live file of {} bytes",
            live.len()
        );
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        hyperlog::get_last_lsn_blocking(&path, &opts).unwrap(),
        newest_last
    );
    // A path that exists but cannot be read as a log is an error naming it.
    let e = hyperlog::get_last_lsn_blocking(dir.path(), &opts).unwrap_err();
    assert!(
        e.to_string().contains(&*dir.path().to_string_lossy()),
        "{e}"
    );
}
