//! Simulated power loss: the store on hyperlog's `SimFs`, which remembers
//! what was made durable (synced bytes, synced directory entries).
//!
//! For each seed, the shared seeded workload (`common::Workload`: pipelined
//! appends with flush callbacks, truncations, some right behind appends
//! still in flight, votes, committed ids, purges, purges past the end)
//! drives a store on a fresh `SimFs`. At a seeded event, the test takes the
//! image a power cut would leave (`SimFs::power_cut`: durable names only,
//! synced bytes plus a random prefix of the rest, torn sectors for half the
//! seeds) along with what had been acknowledged by then. The store must
//! open on that image and hold every acknowledged entry, vote, purge point
//! and committed id, nothing an acknowledged truncation removed, and a
//! gapless log above the purge point (`common::Model::check`). It must then
//! take a new term and more appends, and show the same after another
//! reopen.
//!
//! The store's log rotates (at 64 MiB), so hyperlog prepares the next
//! segment, `raft.wal.next`, preallocated to 4 MiB of zeros. `SimFs`
//! materialises those zeros and `power_cut` compares them byte by byte,
//! which in a debug build costs most of a second per seed; so seven seeds
//! in eight run through `TestFs`, a `SimFs` whose files cannot be
//! preallocated (hyperlog then prepares an empty next file), and every
//! eighth on the plain `SimFs`.
//!
//! `HYPERLOG_RAFT_POWER_SEEDS` sets how many seeds run (default 200);
//! `HYPERLOG_RAFT_POWER_SEED` runs just one. Which groups a sync covered
//! depends on thread timing, so a seed replays the same workload and cut
//! point, not always the same image.

mod common;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{Event, Model, Rng, Store, Workload, append, entries, splitmix};
use hyperlog::fs::{FileId, FileSystem, ReadableFile, SimFs, WritableFile};
use openraft::storage::{RaftLogReader, RaftLogStorage};

const DIR: &str = "/node";
/// A hang guard per seed.
const GUARD: Duration = Duration::from_secs(60);

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{var}={v:?}: not a number: {e}"))
    })
}

/// A gate the live log's `fdatasync`s wait at while it is shut: lets a
/// test hold appends unsynced for as long as it likes.
#[derive(Debug, Default)]
struct Gate {
    shut: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn set(&self, shut: bool) {
        *self.shut.lock().unwrap() = shut;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut shut = self.shut.lock().unwrap();
        while *shut {
            shut = self.opened.wait(shut).unwrap();
        }
    }
}

/// A [`SimFs`] seen through two switches: without `prealloc` its files
/// cannot be preallocated (`allocate` reports `Ok(false)`, as on a file
/// system without `fallocate`); with a `gate`, syncs of the live log
/// (`raft.wal`) wait at it. Everything else goes to the `SimFs`.
#[derive(Debug, Clone)]
struct TestFs {
    sim: SimFs,
    prealloc: bool,
    gate: Option<Arc<Gate>>,
}

struct TestFile {
    inner: Box<dyn WritableFile>,
    prealloc: bool,
    gate: Option<Arc<Gate>>,
}

impl WritableFile for TestFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        self.inner.sync_data()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn try_lock(&self) -> std::io::Result<bool> {
        self.inner.try_lock()
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<bool> {
        if self.prealloc {
            self.inner.allocate(len)
        } else {
            Ok(false)
        }
    }
}

impl FileSystem for TestFs {
    fn open_append(
        &self,
        path: &Path,
        mode: u32,
    ) -> std::io::Result<(Box<dyn WritableFile>, bool)> {
        let (inner, created) = self.sim.open_append(path, mode)?;
        let live = path.file_name() == Some(std::ffi::OsStr::new(hyperlog_raft::LOG_FILE));
        let file = TestFile {
            inner,
            prealloc: self.prealloc,
            gate: self.gate.clone().filter(|_| live),
        };
        Ok((Box::new(file), created))
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn ReadableFile>> {
        self.sim.open_read(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.sim.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.sim.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.sim.remove_file(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
        self.sim.write_new(path, data, mode)
    }
    fn identity(&self, path: &Path) -> std::io::Result<Option<FileId>> {
        self.sim.identity(path)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.sim.list_dir(dir)
    }
}

/// Opens the store on `sim`, preallocating or not.
async fn open_on(sim: &SimFs, prealloc: bool, ctx: &str) -> Store {
    open_gated(sim, prealloc, None, ctx).await
}

/// Opens the store on `sim`, its log's syncs waiting at `gate`.
async fn open_gated(sim: &SimFs, prealloc: bool, gate: Option<Arc<Gate>>, ctx: &str) -> Store {
    let fs = Arc::new(TestFs {
        sim: sim.clone(),
        prealloc,
        gate,
    });
    tokio::time::timeout(GUARD, Store::open_on(fs, DIR))
        .await
        .unwrap_or_else(|_| panic!("{ctx}: open hung"))
        .unwrap_or_else(|e| panic!("{ctx}: opening the store failed: {e}"))
}

/// What was acknowledged at the cut, and the image the cut left.
struct Cut {
    model: Model,
    image: SimFs,
    at: usize,
}

/// What one seed exercised, for the totals.
#[derive(Default)]
struct Tally {
    acked_entries: usize,
    truncations: usize,
    purges: usize,
    in_flight_at_cut: usize,
    surviving_unacked: usize,
}

async fn one_seed(seed: u64) -> Tally {
    let ctx = format!("seed {seed} (HYPERLOG_RAFT_POWER_SEED={seed})");
    let mut rng = Rng::new(splitmix(seed) ^ 0x5eed);
    let steps = 5 + rng.below(40) as usize;
    let torn = rng.one_in(2);
    let prealloc = seed.is_multiple_of(8);
    let sim = SimFs::new();
    let mut store = open_on(&sim, prealloc, &ctx).await;

    // Run the workload; at event `cut_at` take the power cut (with no cut
    // by then, one after the last step).
    let cut_at = rng.below(steps as u64 * 6) as usize;
    let mut model = Model::default();
    let mut events = 0usize;
    let mut cut: Option<Cut> = None;
    let mut tally = Tally::default();
    let mut submitted = 0u64;
    let mut acked = 0u64;
    {
        let mut sink = |ev: Event| {
            model.apply(&ev);
            match ev {
                Event::Submitted { first, last, .. } => submitted += last - first + 1,
                Event::Ack { first, last, .. } => acked += last - first + 1,
                Event::Trunc { .. } => tally.truncations += 1,
                Event::Purge(_) => tally.purges += 1,
                _ => {}
            }
            if events == cut_at {
                tally.in_flight_at_cut = (submitted - acked) as usize;
                cut = Some(Cut {
                    model: model.clone(),
                    image: sim.power_cut(seed, torn),
                    at: events,
                });
            }
            events += 1;
        };
        let mut w = Workload::new(&mut store, seed, 0)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        w.new_term(&mut store, &mut sink)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        for _ in 0..steps {
            tokio::time::timeout(GUARD, w.step(&mut store, &mut sink))
                .await
                .unwrap_or_else(|_| panic!("{ctx}: a workload step hung"))
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
    }
    let cut = cut.unwrap_or_else(|| Cut {
        model: model.clone(),
        image: sim.power_cut(seed, torn),
        at: events,
    });
    store
        .close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    drop(store);

    // The store opens on the image and holds what was acknowledged.
    let ctx = format!(
        "{ctx}, power cut at event {} of {events} ({} sectors, {})",
        cut.at,
        if torn { "torn" } else { "whole" },
        if prealloc {
            "preallocating"
        } else {
            "no preallocation"
        }
    );
    let mut store = open_on(&cut.image, prealloc, &ctx).await;
    let seen = cut.model.check(&mut store, &ctx).await;
    tally.acked_entries = cut
        .model
        .acked
        .iter()
        .filter(|&(&i, &t)| !cut.model.dead(i, t))
        .count();
    tally.surviving_unacked = seen
        .entries
        .iter()
        .filter(|&(i, t)| cut.model.acked.get(i) != Some(t))
        .count();

    // It goes on: a new term (above every term so far), more appends, and
    // the same holds after another reopen on the same image.
    let mut after = cut.model.clone();
    after.settle(&seen);
    let mut sink = |ev: Event| after.apply(&ev);
    let mut w = Workload::new(&mut store, seed ^ 1, 1_000_000)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    w.new_term(&mut store, &mut sink)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: after the cut: {e}"));
    for _ in 0..3 {
        w.step(&mut store, &mut sink)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: after the cut: {e}"));
    }
    store
        .close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    drop(store);
    let mut store = open_on(&cut.image, prealloc, &ctx).await;
    after
        .check(&mut store, &format!("{ctx}, reopened after more writes"))
        .await;
    store.close().await.unwrap();
    tally
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_acknowledgement_survives_power_loss() {
    let seeds: Vec<u64> = match env_u64("HYPERLOG_RAFT_POWER_SEED") {
        Some(s) => vec![s],
        None => (1..=env_u64("HYPERLOG_RAFT_POWER_SEEDS").unwrap_or(200)).collect(),
    };
    let rt = runtime();
    let mut total = Tally::default();
    for &seed in &seeds {
        let t = rt.block_on(one_seed(seed));
        total.acked_entries += t.acked_entries;
        total.truncations += t.truncations;
        total.purges += t.purges;
        total.in_flight_at_cut += t.in_flight_at_cut;
        total.surviving_unacked += t.surviving_unacked;
    }
    eprintln!(
        "raft power loss: {} seeds; {} acknowledged live entries checked, {} truncations, {} purges, \
         {} entries in flight at the cuts, {} unacknowledged entries survived",
        seeds.len(),
        total.acked_entries,
        total.truncations,
        total.purges,
        total.in_flight_at_cut,
        total.surviving_unacked
    );
    assert!(total.acked_entries > 0);
}

/// The smallest case by hand: entries acknowledged, then a cut with an
/// append in flight; the acknowledged ones survive every image.
#[test]
fn acknowledged_appends_survive_a_cut_with_one_in_flight() {
    let rt = runtime();
    rt.block_on(async {
        for seed in 0..50u64 {
            let ctx = format!("seed {seed}");
            let sim = SimFs::new();
            let mut store = open_on(&sim, seed.is_multiple_of(8), &ctx).await;
            store.save_vote(&common::vote(1)).await.unwrap();
            append(&mut store, entries(1, 1, 10)).await.unwrap();
            let rx = common::submit(&mut store, entries(1, 11, 20))
                .await
                .unwrap();
            let image = sim.power_cut(seed, seed % 2 == 0);
            rx.await.unwrap().unwrap();
            store.close().await.unwrap();
            let mut store = open_on(&image, seed.is_multiple_of(8), &ctx).await;
            let all = common::all_entries(&mut store).await.unwrap();
            assert!(
                all.len() >= 10 && all[..10] == entries(1, 1, 10)[..],
                "{ctx}: acknowledged entries lost: {} entries",
                all.len()
            );
            assert!(
                all[10..] == entries(1, 11, 10 + all.len() as u64 - 10)[..],
                "{ctx}: the unacknowledged tail is not a prefix of what was written"
            );
            assert_eq!(store.read_vote().await.unwrap(), Some(common::vote(1)));
            store.close().await.unwrap();
        }
    });
}

/// openraft lets a node save a committed id its own log has not made
/// durable yet (`committed <= flushed` need not hold: a quorum may have the
/// entries without this node). A power cut then leaves a committed id
/// beyond the end of the durable log. The store must still open, with a
/// committed id within its log (or none), and openraft must start a node on it: its
/// startup re-applies the log up to the committed id and fails when those
/// entries are missing.
#[test]
fn committed_id_ahead_of_the_durable_log_still_starts_a_node() {
    let rt = runtime();
    rt.block_on(async {
        let mut lost = 0;
        for seed in 0..16u64 {
            let ctx = format!("seed {seed}");
            let sim = SimFs::new();
            let gate = Arc::new(Gate::default());
            let mut store = open_gated(&sim, false, Some(gate.clone()), &ctx).await;
            store.save_vote(&common::vote(1)).await.unwrap();
            // openraft's log starts at index 0.
            append(&mut store, entries(1, 0, 5)).await.unwrap();
            store
                .save_committed(Some(common::log_id(1, 5)))
                .await
                .unwrap();
            // Entries 6..=20 are written and not synced (the gate holds the
            // sync) when the leader's commit of 20 arrives and is saved.
            gate.set(true);
            let rx = common::submit(&mut store, entries(1, 6, 20)).await.unwrap();
            let mut saver = store.clone();
            let saving =
                tokio::spawn(
                    async move { saver.save_committed(Some(common::log_id(1, 20))).await },
                );
            // Time for a store that does not wait for the log to save it
            // (sequencing only: the checks below hold either way).
            tokio::time::sleep(Duration::from_millis(20)).await;
            let image = sim.power_cut(seed, seed % 2 == 0);
            gate.set(false);
            saving.await.unwrap().unwrap();
            rx.await.unwrap().unwrap();
            store.close().await.unwrap();
            drop(store);

            let mut store = open_on(&image, false, &ctx).await;
            let state = store.get_log_state().await.unwrap();
            let last = state.last_log_id.map(|l| l.index);
            let committed = store.read_committed().await.unwrap().map(|l| l.index);
            // The committed id is written lazily: it may lag (even be
            // None), never lead the durable log.
            assert!(
                last >= Some(5) && committed <= last,
                "{ctx}: committed {committed:?} is beyond the last entry {last:?} after the cut"
            );
            if last < Some(20) {
                lost += 1;
            }
            let config = Arc::new(openraft::Config::default().validate().unwrap());
            let raft = hyperlog_raft::kv::KvRaft::new(
                common::NODE,
                config,
                hyperlog_raft::kv::Router::default(),
                store,
                hyperlog_raft::kv::StateMachine::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{ctx}: openraft cannot start on the store: {e}"));
            raft.shutdown().await.unwrap();
        }
        // The case this test is about happened.
        assert!(lost > 0, "no image lost the unsynced entries");
    });
}
