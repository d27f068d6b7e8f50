//! Scenario `raft`: replicated writes through openraft, 3 nodes in one
//! process.
//!
//! A 3-node cluster of `openraft` 0.10.0-alpha.37 nodes, the key-value
//! state machine and in-process router of `hyperlog_raft::kv` (no network:
//! an RPC is a call on the target's `Raft` handle), all on one tokio runtime
//! with two worker threads. 1, 64 or 256 client tasks on the same runtime
//! call `client_write` on the leader in a loop, each setting its own key to
//! a 100-byte value. Measured over a fixed time after a warm-up: committed
//! writes per second, the `client_write` latency (until the write is
//! committed by a quorum and applied on the leader), entries appended per
//! `fdatasync` over the 3 nodes, and process CPU per committed write.
//!
//! The log stores, each in a fresh temporary directory per run, interleaved
//! round by round (the order rotates each round):
//!
//! - **hyperlog**: `hyperlog_raft::LogStore`;
//! - **hyperlog, committed not stored** (diagnostic): the same store with
//!   `save_committed` not passed on (openraft's default: the committed id is
//!   not persisted), to measure what storing it costs;
//! - **hyperlog, sync thread** (diagnostic): the same store with its log
//!   synced on a thread of its own (`StoreOptions::sync_thread(true)`, the
//!   pipelined group commit), to measure it side by side;
//! - **raft-log**: the `raft_log` crate through
//!   [`crate::raft_log_store::RaftLogStore`];
//! - **memory**: a `BTreeMap` completing every flush callback at once: the
//!   ceiling openraft and the harness allow on this machine.
//!
//! Every store is wrapped in [`Counted`], which counts (per node) the
//! `append` calls and their entries, and the calls and time of
//! `save_committed` and `save_vote`: the store calls openraft's core awaits.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyperlog::fs::StdFs;
use hyperlog_raft::LogStore;
use hyperlog_raft::kv::{KvRaft, Request, Router, StateMachine, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{BasicNode, Config, OptionalSend, Raft, RaftTypeConfig, ServerState};
use serde_json::json;

use crate::measure::{cpu_time, latency_histogram, median, quantile_us, record};
use crate::raft_log_store::RaftLogStore;
use crate::report::{Ratio, Section, Table, num, rate, ratio};
use crate::{Settings, payload};

/// Concurrent client tasks.
pub const CLIENTS: [usize; 3] = [1, 64, 256];
/// The value written by every `client_write`.
pub const VALUE_BYTES: usize = 100;
/// Nodes in the cluster.
pub const NODES: u64 = 3;

type Entry = <TypeConfig as RaftTypeConfig>::Entry;

/// A log store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `hyperlog_raft::LogStore`.
    Hyperlog,
    /// `hyperlog_raft::LogStore` with `save_committed` not passed on.
    HyperlogNoCommitted,
    /// The `raft-log` crate.
    RaftLog,
    /// In memory, callbacks completed at once.
    Memory,
    /// Diagnostic: hyperlog with the log synced on a thread of its own
    /// (`StoreOptions::sync_thread(true)`, the pipelined group commit).
    HyperlogSyncThread,
}

/// Every store, in the order of the first round.
pub const STORES: [Store; 5] = [
    Store::Hyperlog,
    Store::RaftLog,
    Store::Memory,
    Store::HyperlogNoCommitted,
    Store::HyperlogSyncThread,
];

impl Store {
    /// The name in tables and in `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Store::Hyperlog => "hyperlog",
            Store::HyperlogNoCommitted => "hyperlog, committed not stored",
            Store::HyperlogSyncThread => "hyperlog, sync thread",
            Store::RaftLog => "raft-log",
            Store::Memory => "memory",
        }
    }

    fn label(self, clients: usize) -> String {
        format!("{} x{clients}", self.name())
    }
}

// ---------------------------------------------------------------------------
// The in-memory ceiling.

struct MemInner {
    log: BTreeMap<u64, Entry>,
    purged: Option<LogIdOf<TypeConfig>>,
    vote: Option<VoteOf<TypeConfig>>,
    committed: Option<LogIdOf<TypeConfig>>,
}

/// An in-memory log store: a `BTreeMap` behind a mutex; `append` completes
/// its callback before it returns. It refuses an append that does not
/// continue the log (as the durable stores do).
#[derive(Clone)]
pub struct MemStore(Arc<Mutex<MemInner>>);

impl Default for MemStore {
    fn default() -> Self {
        MemStore(Arc::new(Mutex::new(MemInner {
            log: BTreeMap::new(),
            purged: None,
            vote: None,
            committed: None,
        })))
    }
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for MemStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .lock()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemStore {
    type LogReader = MemStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let g = self.lock();
        let last = g.log.values().next_back().map(|e| e.log_id).or(g.purged);
        Ok(LogState {
            last_purged_log_id: g.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut g = self.lock();
            for e in entries {
                let index = e.index();
                let last = g
                    .log
                    .keys()
                    .next_back()
                    .copied()
                    .or(g.purged.map(|p| p.index));
                if let Some(last) = last
                    && index != last + 1
                {
                    return Err(io::Error::other(format!(
                        "non-contiguous append: {index} after {last}"
                    )));
                }
                g.log.insert(index, e);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index + 1);
        let _ = self.lock().log.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        let mut g = self.lock();
        let rest = g.log.split_off(&(log_id.index + 1));
        g.log = rest;
        g.purged = Some(log_id);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Counting what openraft asks of a store.

/// Calls one node's core made to its store.
#[derive(Debug, Default)]
pub struct Counters {
    /// `append` calls.
    pub appends: AtomicU64,
    /// Entries passed to `append`.
    pub entries: AtomicU64,
    /// Nanoseconds spent inside `append` (until it returned, not until its
    /// callback).
    pub append_ns: AtomicU64,
    /// `save_committed` calls.
    pub committed: AtomicU64,
    /// Nanoseconds spent inside `save_committed`.
    pub committed_ns: AtomicU64,
    /// `save_vote` calls.
    pub votes: AtomicU64,
    /// `purge` calls.
    pub purges: AtomicU64,
    /// Nanoseconds spent inside `purge`.
    pub purge_ns: AtomicU64,
}

/// A snapshot of [`Counters`], summed over nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    appends: u64,
    entries: u64,
    append_ns: u64,
    committed: u64,
    committed_ns: u64,
    votes: u64,
    purges: u64,
    purge_ns: u64,
}

impl Counts {
    fn add(&mut self, c: &Counters) {
        self.appends += c.appends.load(Ordering::Relaxed);
        self.entries += c.entries.load(Ordering::Relaxed);
        self.append_ns += c.append_ns.load(Ordering::Relaxed);
        self.committed += c.committed.load(Ordering::Relaxed);
        self.committed_ns += c.committed_ns.load(Ordering::Relaxed);
        self.votes += c.votes.load(Ordering::Relaxed);
        self.purges += c.purges.load(Ordering::Relaxed);
        self.purge_ns += c.purge_ns.load(Ordering::Relaxed);
    }

    fn since(&self, before: &Counts) -> Counts {
        Counts {
            appends: self.appends - before.appends,
            entries: self.entries - before.entries,
            append_ns: self.append_ns - before.append_ns,
            committed: self.committed - before.committed,
            committed_ns: self.committed_ns - before.committed_ns,
            votes: self.votes - before.votes,
            purges: self.purges - before.purges,
            purge_ns: self.purge_ns - before.purge_ns,
        }
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    t.elapsed().as_nanos().min(u64::MAX as u128) as u64
}

/// A store wrapped to count what openraft asks of it. With
/// `store_committed == false`, `save_committed` is not passed on (and
/// `read_committed` answers `None`, openraft's defaults).
pub struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
    store_committed: bool,
}

impl<S: RaftLogStorage<TypeConfig>> RaftLogStorage<TypeConfig> for Counted<S> {
    type LogReader = S::LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.inner.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.counters.votes.fetch_add(1, Ordering::Relaxed);
        self.inner.save_vote(vote).await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        if !self.store_committed {
            return Ok(());
        }
        let t = Instant::now();
        let r = self.inner.save_committed(committed).await;
        self.counters.committed.fetch_add(1, Ordering::Relaxed);
        self.counters
            .committed_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        r
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        if !self.store_committed {
            return Ok(None);
        }
        self.inner.read_committed().await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let t = Instant::now();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let n = entries.len() as u64;
        let r = self.inner.append(entries, callback).await;
        self.counters.appends.fetch_add(1, Ordering::Relaxed);
        self.counters.entries.fetch_add(n, Ordering::Relaxed);
        self.counters
            .append_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        r
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        self.inner.truncate_after(last).await
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        let t = Instant::now();
        let r = self.inner.purge(log_id).await;
        self.counters.purges.fetch_add(1, Ordering::Relaxed);
        self.counters
            .purge_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        r
    }
}

// ---------------------------------------------------------------------------
// One timed run.

/// The store behind one node, for its sync counter and for closing it.
enum Backend {
    Hyperlog(LogStore<TypeConfig>),
    RaftLog(RaftLogStore),
    Memory,
}

impl Backend {
    /// `fdatasync`s of the log so far (hyperlog: its writer's count, state
    /// files not included; raft-log: its flush thread's syncing batches).
    fn syncs(&self) -> Option<u64> {
        match self {
            Backend::Hyperlog(s) => Some(s.context().stats().syncs),
            Backend::RaftLog(s) => Some(s.flush_counts().0),
            Backend::Memory => None,
        }
    }
}

struct Node {
    raft: KvRaft,
    backend: Backend,
    counters: Arc<Counters>,
    sm: StateMachine,
}

/// What one timed run measured.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Writes committed (started inside the window, all of them awaited).
    pub writes: u64,
    /// From the start of the window until the last client stopped.
    pub elapsed: Duration,
    /// Process CPU (user + system) over `elapsed`.
    pub cpu: Duration,
    /// `client_write` latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// `fdatasync`s of the logs of the 3 nodes, where countable.
    pub syncs: Option<u64>,
    /// What the cores asked of their stores, 3 nodes summed.
    pub counts: Counts,
}

impl Sample {
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }
    fn rate(&self) -> f64 {
        self.writes as f64 / self.secs()
    }
    fn cpu_us_per_write(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.writes.max(1) as f64
    }
    fn entries_per_sync(&self) -> f64 {
        match self.syncs {
            Some(s) if s > 0 => self.counts.entries as f64 / s as f64,
            _ => f64::NAN,
        }
    }
    fn appends_per_sync(&self) -> f64 {
        match self.syncs {
            Some(s) if s > 0 => self.counts.appends as f64 / s as f64,
            _ => f64::NAN,
        }
    }
    fn syncs_per_s(&self) -> f64 {
        self.syncs.map_or(f64::NAN, |s| s as f64 / self.secs())
    }
    fn appends_per_s(&self) -> f64 {
        self.counts.appends as f64 / self.secs()
    }
    fn entries_per_append(&self) -> f64 {
        ratio(self.counts.entries as f64, self.counts.appends as f64)
    }
    fn append_us(&self) -> f64 {
        ratio(
            self.counts.append_ns as f64 / 1e3,
            self.counts.appends as f64,
        )
    }
    fn committed_per_s(&self) -> f64 {
        self.counts.committed as f64 / self.secs()
    }
    fn committed_us(&self) -> f64 {
        ratio(
            self.counts.committed_ns as f64 / 1e3,
            self.counts.committed as f64,
        )
    }
    /// Share of the window the 3 cores spent awaiting `save_committed`
    /// (1.0 = one core's whole time; 3.0 would be all three).
    fn committed_share(&self) -> f64 {
        self.counts.committed_ns as f64 / 1e9 / self.secs()
    }
}

fn raft_config() -> Result<Arc<Config>, String> {
    Config {
        heartbeat_interval: 100,
        // Long enough that a loaded two-core machine never sees a spurious
        // election inside a run (a run with a leader change is an error).
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        // As openraft's own cluster benchmark.
        max_payload_entries: 1024,
        purge_batch_size: 1024,
        ..Default::default()
    }
    .validate()
    .map(Arc::new)
    .map_err(|e| format!("openraft config: {e}"))
}

async fn start_node(
    store: Store,
    id: u64,
    dir: &Path,
    config: &Arc<Config>,
    router: &Router,
) -> Result<Node, String> {
    let counters = Arc::new(Counters::default());
    let sm = StateMachine::default();
    let wrap = |s| Counted {
        inner: s,
        counters: counters.clone(),
        store_committed: store != Store::HyperlogNoCommitted,
    };
    let dir = dir.join(format!("node-{id}"));
    let (raft, backend) = match store {
        Store::Hyperlog | Store::HyperlogNoCommitted | Store::HyperlogSyncThread => {
            let options = hyperlog_raft::StoreOptions::default()
                .sync_thread(store == Store::HyperlogSyncThread);
            let s = LogStore::<TypeConfig>::open_with(StdFs::shared(), &dir, options)
                .await
                .map_err(|e| format!("open hyperlog store {}: {e}", dir.display()))?;
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                wrap(s.clone()),
                sm.clone(),
            )
            .await
            .map_err(|e| format!("start node {id}: {e}"))?;
            (raft, Backend::Hyperlog(s))
        }
        Store::RaftLog => {
            let s = RaftLogStore::open(&dir)
                .map_err(|e| format!("open raft-log store {}: {e}", dir.display()))?;
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                Counted {
                    inner: s.clone(),
                    counters: counters.clone(),
                    store_committed: true,
                },
                sm.clone(),
            )
            .await
            .map_err(|e| format!("start node {id}: {e}"))?;
            (raft, Backend::RaftLog(s))
        }
        Store::Memory => {
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                Counted {
                    inner: MemStore::default(),
                    counters: counters.clone(),
                    store_committed: true,
                },
                sm.clone(),
            )
            .await
            .map_err(|e| format!("start node {id}: {e}"))?;
            (raft, Backend::Memory)
        }
    };
    router.add(id, raft.clone());
    Ok(Node {
        raft,
        backend,
        counters,
        sm,
    })
}

/// The clients' phases.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

fn snapshot(nodes: &[Node]) -> (Counts, Option<u64>) {
    let mut c = Counts::default();
    let mut syncs = Some(0u64);
    for n in nodes {
        c.add(&n.counters);
        syncs = match (syncs, n.backend.syncs()) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    (c, syncs)
}

async fn cluster_run(
    store: Store,
    clients: usize,
    dir: &Path,
    window: Duration,
    warmup: Duration,
) -> Result<Sample, String> {
    let config = raft_config()?;
    let router = Router::default();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        nodes.push(start_node(store, id, dir, &config, &router).await?);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=NODES)
        .map(|i| (i, BasicNode::new(format!("node-{i}"))))
        .collect();
    let first = &nodes[0].raft;
    first
        .initialize(members)
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    first
        .wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "node 1 leads")
        .await
        .map_err(|e| format!("no leader: {e}"))?;
    first
        .wait(Some(Duration::from_secs(10)))
        .leader_with_quorum_acked(None, "quorum acked")
        .await
        .map_err(|e| format!("leader lease: {e}"))?;
    let leader = first.clone();
    let term = leader.metrics().borrow_watched().current_term;

    let phase = Arc::new(AtomicU8::new(WARMUP));
    let value = payload::text(VALUE_BYTES);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (leader, phase, value) = (leader.clone(), phase.clone(), value.clone());
            tokio::spawn(async move {
                let mut h = latency_histogram();
                let mut n = 0u64;
                let key = format!("client-{c}");
                loop {
                    let p = phase.load(Ordering::Relaxed);
                    if p == STOP {
                        break;
                    }
                    let t = Instant::now();
                    leader
                        .client_write(Request {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .await
                        .map_err(|e| format!("client_write: {e}"))?;
                    if p == MEASURE {
                        record(&mut h, t.elapsed());
                        n += 1;
                    }
                }
                Ok::<_, String>((n, h))
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let (counts0, syncs0) = snapshot(&nodes);
    let cpu0 = cpu_time();
    let start = Instant::now();
    phase.store(MEASURE, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    phase.store(STOP, Ordering::Relaxed);
    let mut writes = 0;
    let mut latency = latency_histogram();
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok((n, l))) => {
                writes += n;
                let _ = latency.add(&l);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("a client task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let (counts1, syncs1) = snapshot(&nodes);
    if let Some(e) = first_error {
        return Err(e);
    }
    let m = leader.metrics().borrow_watched().clone();
    if m.current_term != term || m.current_leader != Some(1) {
        return Err(format!(
            "the leader changed during the run (term {term} -> {}, leader {:?})",
            m.current_term, m.current_leader
        ));
    }
    // Every node applies every committed write: the stores work.
    let last = m.last_applied.map(|l| l.index);
    for n in &nodes {
        n.raft
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(last, "followers caught up")
            .await
            .map_err(|e| format!("a node did not catch up: {e}"))?;
    }
    let want = nodes[0].sm.get("client-0");
    for n in &nodes[1..] {
        if n.sm.get("client-0") != want {
            return Err("the nodes' state machines differ".into());
        }
    }
    for n in &nodes {
        n.raft
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e}"))?;
    }
    for n in nodes.drain(..) {
        router.remove(n.raft.metrics().borrow_watched().id);
        if let Backend::Hyperlog(s) = &n.backend {
            s.close().await.map_err(|e| format!("close: {e}"))?;
        }
    }
    Ok(Sample {
        writes,
        elapsed,
        cpu,
        latency,
        syncs: syncs0.zip(syncs1).map(|(a, b)| b - a),
        counts: counts1.since(&counts0),
    })
}

fn run_one(s: &Settings, store: Store, clients: usize) -> Result<Sample, String> {
    let dir = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let warmup = (s.run / 4).min(Duration::from_millis(500));
    let r = rt.block_on(cluster_run(store, clients, dir.path(), s.run, warmup));
    rt.shutdown_timeout(Duration::from_secs(10));
    r.map_err(|e| format!("{}: {e}", store.label(clients)))
}

// ---------------------------------------------------------------------------
// The scenario.

/// All runs of one store and client count.
#[derive(Debug, Clone, Default)]
struct Agg {
    samples: Vec<Sample>,
}

impl Agg {
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self
            .samples
            .iter()
            .map(f)
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() { f64::NAN } else { median(&v) }
    }
    fn rate(&self) -> f64 {
        self.med(Sample::rate)
    }
    fn latency(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for s in &self.samples {
            let _ = h.add(&s.latency);
        }
        h
    }
    fn p(&self, q: f64) -> f64 {
        quantile_us(&self.latency(), q) / 1000.0
    }
}

fn shapes(s: &Settings) -> Vec<(Store, usize)> {
    let mut v = Vec::new();
    for clients in CLIENTS {
        for store in STORES {
            if s.selected(&store.label(clients)) {
                v.push((store, clients));
            }
        }
    }
    v
}

/// How many timed runs [`run`] will make with these settings.
pub fn planned_runs(s: &Settings) -> u64 {
    (shapes(s).len() * s.rounds) as u64
}

/// Runs the scenario; progress goes to stderr.
pub fn run(s: &Settings) -> Result<Section, String> {
    let mut aggs: BTreeMap<(usize, usize), Agg> = BTreeMap::new();
    let idx = |store: Store| STORES.iter().position(|x| *x == store).unwrap_or(0);
    for round in 0..s.rounds {
        for clients in CLIENTS {
            // Rotate the order of the stores every round.
            for k in 0..STORES.len() {
                let store = STORES[(k + round) % STORES.len()];
                if !s.selected(&store.label(clients)) {
                    continue;
                }
                let x = run_one(s, store, clients)?;
                crate::progress::done(format!(
                    "raft round {}/{}: {:<36} {:>9} writes/s  p50 {:>7} ms  p99 {:>7} ms  {:>6} entries/sync  {:>6} us CPU/write",
                    round + 1,
                    s.rounds,
                    store.label(clients),
                    rate(x.rate()),
                    num(quantile_us(&x.latency, 0.5) / 1000.0),
                    num(quantile_us(&x.latency, 0.99) / 1000.0),
                    num(x.entries_per_sync()),
                    num(x.cpu_us_per_write()),
                ));
                aggs.entry((clients, idx(store)))
                    .or_default()
                    .samples
                    .push(x);
            }
        }
    }

    let mut table = Table::new(&[
        "store",
        "clients",
        "writes/s",
        "p50 ms",
        "p99 ms",
        "entries / fdatasync",
        "appends / fdatasync",
        "fdatasync/s",
        "CPU us / write",
    ]);
    let mut core = Table::new(&[
        "store",
        "clients",
        "append calls/s",
        "entries / append",
        "us in append",
        "save_committed/s",
        "us in save_committed",
        "core time in save_committed",
        "purges",
    ]);
    let mut data = Vec::new();
    for (&(clients, i), a) in &aggs {
        let store = STORES[i];
        table.row(vec![
            store.name().into(),
            clients.to_string(),
            rate(a.rate()),
            num(a.p(0.5)),
            num(a.p(0.99)),
            num(a.med(Sample::entries_per_sync)),
            num(a.med(Sample::appends_per_sync)),
            rate(a.med(Sample::syncs_per_s)),
            num(a.med(Sample::cpu_us_per_write)),
        ]);
        core.row(vec![
            store.name().into(),
            clients.to_string(),
            rate(a.med(Sample::appends_per_s)),
            num(a.med(Sample::entries_per_append)),
            num(a.med(Sample::append_us)),
            rate(a.med(Sample::committed_per_s)),
            num(a.med(Sample::committed_us)),
            format!("{:.0} %", a.med(Sample::committed_share) * 100.0),
            num(a.med(|x| x.counts.purges as f64)),
        ]);
        data.push(json!({
            "store": store.name(),
            "clients": clients,
            "writes_per_s_median": a.rate(),
            "latency_ms": {
                "p50": a.p(0.5),
                "p99": a.p(0.99),
                "p99_9": a.p(0.999),
                "max": a.latency().max() as f64 / 1e6,
                "count": a.latency().len(),
            },
            "entries_per_fdatasync_median": a.med(Sample::entries_per_sync),
            "appends_per_fdatasync_median": a.med(Sample::appends_per_sync),
            "cpu_us_per_write_median": a.med(Sample::cpu_us_per_write),
            "runs": a.samples.iter().map(|x| json!({
                "writes": x.writes,
                "secs": x.elapsed.as_secs_f64(),
                "cpu_s": x.cpu.as_secs_f64(),
                "syncs": x.syncs,
                "appends": x.counts.appends,
                "entries": x.counts.entries,
                "append_ns": x.counts.append_ns,
                "save_committed": x.counts.committed,
                "save_committed_ns": x.counts.committed_ns,
                "votes": x.counts.votes,
                "purges": x.counts.purges,
                "purge_ns": x.counts.purge_ns,
                "p50_ms": quantile_us(&x.latency, 0.5) / 1000.0,
                "p99_ms": quantile_us(&x.latency, 0.99) / 1000.0,
            })).collect::<Vec<_>>(),
        }));
    }

    let get = |store: Store, clients: usize| aggs.get(&(clients, idx(store)));
    let mut ratios = Vec::new();
    for clients in CLIENTS {
        let h = get(Store::Hyperlog, clients);
        for (other, oname) in [(Store::RaftLog, "raft-log"), (Store::Memory, "memory")] {
            if let (Some(h), Some(o)) = (h, get(other, clients)) {
                ratios.push(Ratio {
                    what: format!("hyperlog / {oname}, {clients} clients: writes/s"),
                    value: ratio(h.rate(), o.rate()),
                });
                // Paired round by round: neighbours in time.
                let paired: Vec<f64> = h
                    .samples
                    .iter()
                    .zip(&o.samples)
                    .map(|(x, y)| ratio(x.rate(), y.rate()))
                    .collect();
                ratios.push(Ratio {
                    what: format!(
                        "hyperlog / {oname}, {clients} clients: writes/s (median of per-round ratios)"
                    ),
                    value: median(&paired),
                });
                ratios.push(Ratio {
                    what: format!("hyperlog / {oname}, {clients} clients: p99 latency"),
                    value: ratio(h.p(0.99), o.p(0.99)),
                });
            }
        }
        if let (Some(h), Some(w)) = (h, get(Store::HyperlogSyncThread, clients)) {
            ratios.push(Ratio {
                what: format!("hyperlog, sync thread / hyperlog, {clients} clients: writes/s"),
                value: ratio(w.rate(), h.rate()),
            });
            ratios.push(Ratio {
                what: format!("hyperlog, sync thread / hyperlog, {clients} clients: p99 latency"),
                value: ratio(w.p(0.99), h.p(0.99)),
            });
        }
        if let (Some(n), Some(o)) = (
            get(Store::HyperlogNoCommitted, clients),
            get(Store::RaftLog, clients),
        ) {
            ratios.push(Ratio {
                what: format!(
                    "hyperlog, committed not stored / raft-log, {clients} clients: writes/s"
                ),
                value: ratio(n.rate(), o.rate()),
            });
        }
    }
    ratios.retain(|r| r.value.is_finite() && r.value > 0.0);

    let mut extra = String::from(
        "\nWhat the cores asked of their stores (3 nodes summed; medians over rounds):\n\n",
    );
    extra.push_str(&core.to_markdown());
    Ok(Section {
        name: "raft".into(),
        title: "Replicated writes (openraft, 3 nodes in one process)".into(),
        notes: vec![
            format!(
                "{} round(s) of {:.1} s per store and client count (after a {:.2} s warm-up), the stores' order rotating every round; writes/s, syncs and CPU are medians over rounds, latencies merge every write of every round.",
                s.rounds,
                s.run.as_secs_f64(),
                (s.run / 4).min(Duration::from_millis(500)).as_secs_f64(),
            ),
            format!(
                "openraft 0.10.0-alpha.37, {NODES} nodes and the clients on one tokio runtime with two worker threads; the kv state machine and in-process router of `hyperlog_raft::kv` (an RPC is a call); heartbeat 100 ms, election timeout 1.5-3 s, max_payload_entries 1024, default snapshot policy (every 5,000 logs; purge after). Each client task calls `client_write` on the leader in a loop, setting its own key to a {VALUE_BYTES}-byte value; a write counts if it started inside the window."
            ),
            "Latency: `client_write` until it returns (committed on a quorum, applied on the leader).".into(),
            "entries / fdatasync: entries passed to `append` on the 3 nodes over the `fdatasync`s of their logs (hyperlog: `context().stats().syncs`, the 3 small state files' syncs not included; raft-log: its flush thread's syncing batches). appends / fdatasync: the same with `append` calls.".into(),
            "CPU: the whole process (getrusage RUSAGE_SELF, user + system: 3 nodes, clients, writer and flush threads) per committed write.".into(),
            "Stores: hyperlog = `hyperlog_raft::LogStore::open`; hyperlog, committed not stored = the same with `save_committed` not passed on (a diagnostic: openraft's default does not persist the committed id); hyperlog, sync thread = the same with its log synced on a thread of its own (`StoreOptions::sync_thread(true)`, a diagnostic: the pipelined group commit, opt-in); raft-log = the `raft-log` 0.4 crate with its default configuration through the adapter `raft_log_store.rs` (append + `flush(true, callback)`); memory = a BTreeMap completing each callback inside `append`.".into(),
        ],
        table,
        ratios,
        data: json!({ "rows": data, "extra_markdown": extra }),
    })
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, MemStore, StateMachine, ()> for Builder {
        async fn build(&self) -> Result<((), MemStore, StateMachine), StorageError<TypeConfig>> {
            Ok(((), MemStore::default(), StateMachine::default()))
        }
    }

    /// openraft's conformance suite against the in-memory ceiling.
    #[test]
    fn memory_store_passes_the_suite() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(300), Suite::test_all(Builder))
                .await
                .expect("the suite did not finish in 300 s")
                .unwrap();
        });
    }

    /// A short run of every store: the cluster commits writes.
    #[test]
    fn every_store_commits() {
        let s = Settings {
            run: Duration::from_millis(200),
            rounds: 1,
            scratch: std::env::temp_dir(),
            readback_bytes: 0,
            quick: true,
            only: None,
        };
        for store in STORES {
            let x = run_one(&s, store, 8).unwrap();
            assert!(x.writes > 0, "{}", store.name());
            assert!(x.counts.entries >= x.writes, "{}", store.name());
        }
    }
}
