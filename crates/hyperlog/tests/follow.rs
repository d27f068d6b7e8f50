//! `Context::follow` and `Context::durable_lsn`: every entry once, in LSN
//! order, each only once it is durable, across rotations; an error for a
//! start below what `truncate_before` removed.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{FaultFs, with_deadline};
use futures::StreamExt;
use hyperlog::retention::RetentionPolicy;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Error, LogFormat, LogLevel, Logger, Lsn, ReadOptions,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Cmd {
    level: LogLevel,
    message: Option<String>,
    producer: u32,
    n: u64,
}
impl Entry for Cmd {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn cmd(producer: u32, n: u64) -> Cmd {
    Cmd {
        level: LogLevel::Info,
        message: Some(format!(
            "producer {producer} command {n:06} {}",
            "y".repeat(60)
        )),
        producer,
        n,
    }
}

fn wal(path: &Path, mode: DurabilityMode) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(mode)
        .format(LogFormat::Binary)
        .enable_lsn(true)
        .instance_id(11)
}

#[test]
fn a_follower_sees_every_entry_once_in_lsn_order_across_rotations() {
    with_deadline(300, || {
        for mode in [DurabilityMode::FsyncBatch, DurabilityMode::Flush] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("node.wal");
            let logger = Logger::new();
            let ctx = logger
                .context_with_blocking(
                    "wal",
                    wal(&path, mode).retention_policy(RetentionPolicy::new().max_size(16 * 1024)),
                )
                .unwrap();
            // Some entries before the follower starts; it starts in the middle.
            let early: Vec<Lsn> = (0..200)
                .map(|n| ctx.log_blocking(cmd(9, n)).unwrap().unwrap())
                .collect();
            let from = early[150];
            let follower = {
                let it = ctx.follow_blocking::<Cmd>(from);
                std::thread::spawn(move || {
                    it.map(|item| {
                        let (_, log, lsn) = item.unwrap();
                        (lsn.unwrap(), log.entry)
                    })
                    .collect::<Vec<_>>()
                })
            };
            let producers: Vec<_> = (0..4)
                .map(|p| {
                    let ctx = ctx.clone();
                    std::thread::spawn(move || {
                        (0..600)
                            .map(|n| (ctx.log_blocking(cmd(p, n)).unwrap().unwrap(), cmd(p, n)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut acked: Vec<(Lsn, Cmd)> = early
                .iter()
                .enumerate()
                .map(|(n, l)| (*l, cmd(9, n as u64)))
                .collect();
            for p in producers {
                acked.extend(p.join().unwrap());
            }
            assert!(ctx.stats().rotations > 3, "{mode:?}: the log rotated");
            ctx.close_blocking().unwrap();
            let followed = follower.join().unwrap();
            acked.sort_by_key(|(l, _)| *l);
            let want: Vec<_> = acked.into_iter().filter(|(l, _)| *l >= from).collect();
            assert_eq!(followed.len(), want.len(), "{mode:?}");
            assert_eq!(followed, want, "{mode:?}");
        }
    });
}

#[test]
fn a_follower_never_yields_an_entry_before_its_sync() {
    // Through the fault file system, which records how much of the file
    // each completed sync covered: when the follower yields an entry, the
    // syncs so far must already cover its whole record.
    with_deadline(300, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.wal");
        let fault = FaultFs::new();
        // Slow syncs: writes run ahead of them, as they do on a busy disk.
        fault.sync_delay(std::time::Duration::from_millis(2));
        let logger = Logger::new();
        let ctx = logger
            .context_with_blocking(
                "wal",
                wal(&path, DurabilityMode::FsyncBatch).file_system(fault.handle()),
            )
            .unwrap();
        // Per entry yielded: its offset and LSN, the bytes the syncs so far
        // covered, and the watermark, all taken when it was yielded.
        type Yielded = (u64, Lsn, u64, Option<Lsn>);
        let seen: Arc<Mutex<Vec<Yielded>>> = Arc::default();
        let follower = {
            let (it, seen, fault, path, ctx) = (
                ctx.follow_blocking::<Cmd>(Lsn::new(0)),
                seen.clone(),
                fault.clone(),
                path.clone(),
                ctx.clone(),
            );
            std::thread::spawn(move || {
                for item in it {
                    let (offset, _, lsn) = item.unwrap();
                    let synced = fault.synced_len(&path);
                    seen.lock()
                        .unwrap()
                        .push((offset, lsn.unwrap(), synced, ctx.durable_lsn()));
                }
            })
        };
        let producers: Vec<_> = (0..8)
            .map(|p| {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    for n in 0..150 {
                        ctx.log_blocking(cmd(p, n)).unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        ctx.close_blocking().unwrap();
        follower.join().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 8 * 150);
        // Where each record ends: the next one's offset, or the file's end.
        let offsets: Vec<u64> =
            hyperlog::read_entries_blocking::<Cmd>(&path, 0, ReadOptions::default())
                .map(|i| i.unwrap().0)
                .collect();
        let file_len = std::fs::metadata(&path).unwrap().len();
        let end_of: HashMap<u64, u64> = offsets
            .iter()
            .enumerate()
            .map(|(i, o)| (*o, offsets.get(i + 1).copied().unwrap_or(file_len)))
            .collect();
        for (offset, lsn, synced, mark) in seen.iter() {
            let end = end_of[offset];
            assert!(
                end <= *synced,
                "LSN {lsn} (bytes {offset}..{end}) was yielded when syncs covered only {synced} bytes"
            );
            assert!(
                mark.is_some_and(|m| m >= *lsn),
                "watermark {mark:?} below {lsn}"
            );
        }
        assert!(fault.syncs() > 1);
    });
}

#[test]
fn following_from_below_a_truncation_is_an_error_naming_both_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            wal(&path, DurabilityMode::FsyncBatch)
                .retention_policy(RetentionPolicy::new().max_size(8 * 1024)),
        )
        .unwrap();
    let lsns: Vec<Lsn> = (0..400)
        .map(|n| ctx.log_blocking(cmd(0, n)).unwrap().unwrap())
        .collect();
    let removed = ctx.truncate_before_blocking(lsns[300]).unwrap();
    assert!(!removed.is_empty());
    let first_kept = hyperlog::read_entries_blocking::<Cmd>(&path, 0, ReadOptions::default())
        .next()
        .unwrap()
        .unwrap()
        .2
        .unwrap();
    assert!(first_kept > lsns[0] && first_kept <= lsns[300]);

    let mut it = ctx.follow_blocking::<Cmd>(lsns[10]);
    match it.next() {
        Some(Err(Error::BelowTruncation { from, first, .. })) => {
            assert_eq!((from, first), (lsns[10], first_kept));
            let text = Error::BelowTruncation {
                path: path.clone(),
                from,
                first,
            }
            .to_string();
            assert!(text.contains(&lsns[10].to_string()) && text.contains(&first_kept.to_string()));
        }
        other => panic!("expected BelowTruncation, got {other:?}"),
    }
    assert!(it.next().is_none());

    // From the first entry kept, or above it, following works; and it also
    // works after a reopen, from what is on disk alone.
    ctx.close_blocking().unwrap();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("wal", wal(&path, DurabilityMode::FsyncBatch))
        .unwrap();
    assert!(matches!(
        ctx.follow_blocking::<Cmd>(lsns[10]).next(),
        Some(Err(Error::BelowTruncation { .. }))
    ));
    let mut it = ctx.follow_blocking::<Cmd>(first_kept);
    assert_eq!(it.next().unwrap().unwrap().2, Some(first_kept));
    ctx.close_blocking().unwrap();
    let rest: Vec<Lsn> = it.map(|i| i.unwrap().2.unwrap()).collect();
    assert_eq!(rest.last(), lsns.last());
}

#[test]
fn the_stream_follows_under_an_async_runtime_and_ends_at_close() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.wal");
        let logger = Logger::new();
        let ctx = logger
            .context_with("wal", wal(&path, DurabilityMode::FsyncBatch))
            .await
            .unwrap();
        let mut stream = ctx.follow::<Cmd>(Lsn::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|p| {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let mut v = Vec::new();
                    for n in 0..50 {
                        v.push(ctx.log(cmd(p, n)).await.unwrap().unwrap());
                    }
                    v
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        acked.sort();
        // Everything acknowledged is durable, so the watermark is past it.
        assert_eq!(ctx.durable_lsn(), acked.last().copied());
        let mut got = Vec::new();
        while got.len() < acked.len() {
            let (_, _, lsn) = stream.next().await.unwrap().unwrap();
            got.push(lsn.unwrap());
        }
        assert_eq!(got, acked);
        ctx.close().await.unwrap();
        assert!(stream.next().await.is_none(), "the stream ends at close");
    });
}

#[test]
fn follow_needs_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "plain",
            ContextOptions::new().path(dir.path().join("app.log.json")),
        )
        .unwrap();
    let mut it = ctx.follow_blocking::<Cmd>(Lsn::new(0));
    assert!(matches!(
        it.next(),
        Some(Err(Error::InvalidOption {
            option: "enable_lsn",
            ..
        }))
    ));
    assert!(it.next().is_none());
    assert_eq!(ctx.durable_lsn(), None);
}
