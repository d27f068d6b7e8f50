//! What openraft's conformance suite never does: close (or drop) a store
//! and open it again. Appended entries, the vote, the purge point and the
//! committed id must come back as they were; a truncated suffix must not; a
//! purge past the end must stay a purge; a second store on the same
//! directory and a damaged state file must be refused, with errors that say
//! why.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Model, Store, all_entries, append, entries, entry, log_id, submit, term_of, vote};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage};

/// A hang guard: no test here needs more than a few seconds.
const GUARD: Duration = Duration::from_secs(60);

async fn open(dir: &Path) -> Store {
    tokio::time::timeout(GUARD, Store::open(dir))
        .await
        .expect("open hung")
        .unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

async fn close(store: Store) {
    tokio::time::timeout(GUARD, store.close())
        .await
        .expect("close hung")
        .expect("close");
}

fn indexes(v: &[common::Ent]) -> Vec<u64> {
    v.iter().map(|e| e.index()).collect()
}

/// (a) Appends submitted back to back, each with its own callback; once
/// every callback reported Ok, close and reopen: every entry is there with
/// its log id and payload, and appends continue after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_entries_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    // Index 0 is a real entry; batches of 1..=7 entries, 12 appends in flight.
    let mut pending = Vec::new();
    let mut next = 0;
    for n in 0..12u64 {
        let len = 1 + n % 7;
        let batch = entries(3, next, next + len - 1);
        next += len;
        pending.push(submit(&mut store, batch).await.expect("append"));
    }
    for rx in pending {
        tokio::time::timeout(GUARD, rx)
            .await
            .expect("a flush callback never came")
            .expect("the callback was dropped")
            .expect("the flush failed");
    }
    let written = entries(3, 0, next - 1);
    assert_eq!(all_entries(&mut store).await.unwrap(), written);
    close(store).await;

    let mut store = open(dir.path()).await;
    assert_eq!(
        all_entries(&mut store).await.unwrap(),
        written,
        "after reopen: every appended entry, same log ids and payloads"
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(3, next - 1)));
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(store.read_vote().await.unwrap(), None);
    assert_eq!(store.read_committed().await.unwrap(), None);

    // The log continues where it ended, and that survives another reopen.
    append(&mut store, entries(4, next, next + 4))
        .await
        .unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    let mut expect = written.clone();
    expect.extend(entries(4, next, next + 4));
    assert_eq!(all_entries(&mut store).await.unwrap(), expect);
    close(store).await;
}

/// (a) The same without `close`: dropping every clone of the store (and its
/// readers) after the callbacks completed releases the directory, and
/// nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_entries_survive_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    let mut reader = store.get_log_reader().await;
    let clone = store.clone();
    for first in (1..=40).step_by(8) {
        append(&mut store, entries(2, first, first + 7))
            .await
            .unwrap();
    }
    assert_eq!(reader.try_get_log_entries(1..=40).await.unwrap().len(), 40);
    drop((store, clone, reader));

    let mut store = open(dir.path()).await;
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(2, 1, 40));
    close(store).await;
}

/// (b) The vote, the purge point and the committed id are durable state:
/// after a reopen `read_vote`, `get_log_state` and `read_committed` return
/// what was saved last, and reads start after the purge point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_purge_point_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    store.save_vote(&vote(1)).await.unwrap();
    append(&mut store, entries(1, 1, 30)).await.unwrap();
    store.save_vote(&vote(5)).await.unwrap();
    store.save_committed(Some(log_id(1, 25))).await.unwrap();
    store.purge(log_id(1, 10)).await.unwrap();
    store.save_committed(Some(log_id(1, 28))).await.unwrap();
    store.purge(log_id(1, 12)).await.unwrap();
    // A committed vote of the same term replaces the uncommitted one.
    let committed_vote = common::committed_vote(5);
    store.save_vote(&committed_vote).await.unwrap();
    close(store).await;

    let mut store = open(dir.path()).await;
    assert_eq!(store.read_vote().await.unwrap(), Some(committed_vote));
    assert_eq!(
        store.get_log_reader().await.read_vote().await.unwrap(),
        Some(committed_vote),
        "a reader sees the reopened vote"
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 28)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 12)));
    assert_eq!(state.last_log_id, Some(log_id(1, 30)));
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(1, 13, 30));
    assert!(store.try_get_log_entries(..=12).await.unwrap().is_empty());

    // save_committed(None) is a value too.
    store.save_committed(None).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    assert_eq!(store.read_committed().await.unwrap(), None);
    assert_eq!(store.read_vote().await.unwrap(), Some(committed_vote));
    close(store).await;
}

/// (c) `truncate_after`, then appends of a new term over the cut: after a
/// reopen the old suffix never returns, the new one is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_suffix_never_returns_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    append(&mut store, entries(1, 1, 40)).await.unwrap();
    // Truncate right behind appends whose callbacks were not awaited, as
    // openraft's core does.
    let rx = submit(&mut store, entries(1, 41, 50)).await.unwrap();
    store.truncate_after(Some(log_id(1, 20))).await.unwrap();
    rx.await
        .unwrap()
        .expect("an append before the cut still completes Ok");
    append(&mut store, entries(2, 21, 30)).await.unwrap();
    let mut expect = entries(1, 1, 20);
    expect.extend(entries(2, 21, 30));
    assert_eq!(all_entries(&mut store).await.unwrap(), expect);
    close(store).await;

    let mut store = open(dir.path()).await;
    assert_eq!(
        all_entries(&mut store).await.unwrap(),
        expect,
        "after reopen: 1..=20 of term 1, 21..=30 of term 2, nothing of the old suffix"
    );
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(2, 30))
    );

    // A cut with nothing appended after it, then one of everything.
    store.truncate_after(Some(log_id(1, 8))).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(1, 1, 8));
    store.truncate_after(None).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    assert!(all_entries(&mut store).await.unwrap().is_empty());
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    // An emptied log starts again anywhere, at index 0 here.
    append(&mut store, entries(3, 0, 5)).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(3, 0, 5));
    close(store).await;
}

/// (c) Several rounds of cut and rewrite, checked against the model the
/// crash tests use, with a reopen after each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_truncations_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut last = 0u64;
    for term in 1..=6u64 {
        let mut store = open(dir.path()).await;
        model.check(&mut store, &format!("round {term}")).await;
        store.save_vote(&vote(term)).await.unwrap();
        model.vote = Some(term);
        model.vote_submitted = Some(term);
        append(&mut store, entries(term, last + 1, last + 12))
            .await
            .unwrap();
        for i in last + 1..=last + 12 {
            model.ack(i, term);
        }
        last += 12;
        let keep = last - 3 - term % 4;
        store
            .truncate_after(Some(log_id(term, keep)))
            .await
            .unwrap();
        model.cut(Some(keep), term);
        last = keep;
        close(store).await;
    }
    let mut store = open(dir.path()).await;
    model.check(&mut store, "end").await;
    let all = all_entries(&mut store).await.unwrap();
    assert_eq!(all.last().map(|e| e.index()), Some(last));
    assert!(all.iter().all(|e| e == &entry(term_of(e), e.index())));
    close(store).await;
}

/// (d) A purge past the end of the log (as after installing a snapshot):
/// the log state says last == purged == 20 at once and after a reopen,
/// appends continue at 21, and nothing at or below 20 is ever read again,
/// though the file still holds 1..=10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_past_the_end_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    append(&mut store, entries(1, 1, 10)).await.unwrap();
    store.purge(log_id(2, 20)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 20)));
    assert_eq!(state.last_log_id, Some(log_id(2, 20)));
    assert!(all_entries(&mut store).await.unwrap().is_empty());
    close(store).await;

    // Reopen with nothing after the purge point.
    let mut store = open(dir.path()).await;
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 20)));
    assert_eq!(state.last_log_id, Some(log_id(2, 20)));
    assert!(all_entries(&mut store).await.unwrap().is_empty());
    append(&mut store, entries(2, 21, 35)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 35)));
    close(store).await;

    let mut store = open(dir.path()).await;
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 20)));
    assert_eq!(state.last_log_id, Some(log_id(2, 35)));
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(2, 21, 35));
    assert!(store.try_get_log_entries(0..=20).await.unwrap().is_empty());
    assert_eq!(
        indexes(&store.try_get_log_entries(5..25).await.unwrap()),
        (21..25).collect::<Vec<_>>()
    );
    // A cut and a rewrite above the purge point, then another reopen.
    store.truncate_after(Some(log_id(2, 30))).await.unwrap();
    append(&mut store, entries(3, 31, 33)).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    let mut expect = entries(2, 21, 30);
    expect.extend(entries(3, 31, 33));
    assert_eq!(all_entries(&mut store).await.unwrap(), expect);
    close(store).await;
}

/// (d) A purge past the end with nothing after it, then a cut at the purge
/// point (nothing to cut) and appends: the purge point holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_past_the_end_then_cut_at_the_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    append(&mut store, entries(1, 1, 10)).await.unwrap();
    store.purge(log_id(1, 20)).await.unwrap();
    store.truncate_after(Some(log_id(1, 20))).await.unwrap();
    append(&mut store, entries(2, 21, 22)).await.unwrap();
    close(store).await;
    let mut store = open(dir.path()).await;
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(2, 21, 22));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
    close(store).await;
}

/// (e) One store per directory: a second `open` while the first is open
/// fails and says the log is locked; once the first is closed it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_on_the_same_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path()).await;
    first.save_vote(&vote(2)).await.unwrap();
    append(&mut first, entries(2, 1, 5)).await.unwrap();

    let err = match tokio::time::timeout(GUARD, Store::open(dir.path()))
        .await
        .expect("the second open hung")
    {
        Ok(_) => panic!("a second store opened on a directory the first has open"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("locked") && err.contains(hyperlog_raft::LOG_FILE),
        "the error should say the log is locked and name it: {err}"
    );
    // The failed open disturbed nothing.
    append(&mut first, entries(2, 6, 8)).await.unwrap();
    assert_eq!(all_entries(&mut first).await.unwrap(), entries(2, 1, 8));
    close(first).await;

    let mut again = open(dir.path()).await;
    assert_eq!(all_entries(&mut again).await.unwrap(), entries(2, 1, 8));
    assert_eq!(again.read_vote().await.unwrap(), Some(vote(2)));
    close(again).await;
}

/// (f) A damaged `vote.state` makes `open` fail and name the file; it never
/// reads as "no vote", which would let the node vote twice in a term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_vote_file_fails_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path()).await;
    store.save_vote(&vote(7)).await.unwrap();
    append(&mut store, entries(7, 1, 3)).await.unwrap();
    close(store).await;

    let path = dir.path().join("vote.state");
    let good = std::fs::read(&path).unwrap();
    // Three kinds of damage: a flipped byte in the payload, a cut file, an
    // empty file.
    let mut flipped = good.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x20;
    for (what, bytes) in [
        ("a flipped byte", flipped),
        ("a cut file", good[..good.len() - 5].to_vec()),
        ("an empty file", Vec::new()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        match tokio::time::timeout(GUARD, Store::open(dir.path()))
            .await
            .expect("open hung")
        {
            Ok(mut s) => panic!(
                "{what} in vote.state: open succeeded with vote {:?}",
                s.read_vote().await
            ),
            Err(e) => assert!(
                e.to_string().contains("vote.state"),
                "{what}: the error should name vote.state: {e}"
            ),
        }
    }
    // Restored, the store opens with its vote: the failed opens changed
    // nothing.
    std::fs::write(&path, &good).unwrap();
    let mut store = open(dir.path()).await;
    assert_eq!(store.read_vote().await.unwrap(), Some(vote(7)));
    assert_eq!(all_entries(&mut store).await.unwrap(), entries(7, 1, 3));
    close(store).await;
}

/// A damaged purge point or committed id is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_purge_or_committed_file_fails_open_naming_it() {
    for name in ["purged.state", "committed.state"] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).await;
        append(&mut store, entries(1, 1, 9)).await.unwrap();
        store.save_committed(Some(log_id(1, 6))).await.unwrap();
        store.purge(log_id(1, 4)).await.unwrap();
        close(store).await;
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len() - 3;
        bytes[n] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        match Store::open(dir.path()).await {
            Ok(_) => panic!("a damaged {name}: open succeeded"),
            Err(e) => assert!(
                e.to_string().contains(name),
                "the error should name {name}: {e}"
            ),
        }
    }
}
