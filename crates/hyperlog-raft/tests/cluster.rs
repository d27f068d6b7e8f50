//! In-process 3-node openraft clusters, each node on its own hyperlog
//! `LogStore` in its own directory, wired with `kv::Router`:
//!
//! - `leader_stop_failover_restart_catch_up`: clients write concurrently;
//!   the leader is stopped mid-load (shut down, its store closed); the two
//!   others elect a new leader and take more writes; the old leader is
//!   restarted from its directory and catches up. Every acknowledged write
//!   is on every node, and the restarted node's log is what it held when it
//!   stopped.
//! - `partitioned_leader_suffix_is_truncated`: the leader is cut off but
//!   keeps running and appends writes that can never commit; the majority
//!   elects a new leader and commits others; on reconnection the old
//!   leader's uncommitted suffix is cut (in memory and on disk), its waiting
//!   writes are told `LogEntryDiscarded`, and every state machine
//!   converges.
//!
//! - `snapshot_purge_restart_and_install`: snapshots every 40 entries, each
//!   followed by a purge of the log behind it; a follower is stopped while
//!   the others snapshot and purge past its log, restarted from its
//!   directory (its state machine from its own durable snapshot), and
//!   brought up to date by a snapshot sent by the leader; then the leader
//!   is stopped and restarted from a purged log and its snapshot. No
//!   acknowledged write is lost, every state machine converges.
//!
//! Seeded (`HYPERLOG_RAFT_SEED`, printed); every wait is bounded. They
//! run one after the other (the machine is small and elections are timed).

#[path = "cluster_common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Acks, Rng};
use hyperlog_raft::LogStore;
use hyperlog_raft::kv::{self, KvRaft, Request, Router, SnapshotData, StateMachine, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{
    ClientWriteError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftLogReader;
use openraft::type_config::alias::{EntryOf, LogIdOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, Config, EntryPayload, OptionalSend, Raft, RaftMetrics, ServerState};
use tokio::task::JoinHandle;

type Entry = EntryOf<TypeConfig>;

const IDS: [u64; 3] = [1, 2, 3];
/// How long one step (an election, a catch-up) may take before it is a hang.
const WAIT: Duration = Duration::from_secs(20);

/// The scenarios run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------
// The network: kv::Router plus cut-off nodes.

/// `kv::Router` as node `from` sees it. Removing a node from the router
/// stops the RPCs *to* it only; a node in `cut` can neither send nor
/// receive (a partition), and answers arriving after the cut are lost.
#[derive(Clone)]
struct Net {
    router: Router,
    from: u64,
    cut: Arc<Mutex<BTreeSet<u64>>>,
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Conn {
        Conn {
            inner: self.router.new_client(target, node).await,
            from: self.from,
            target,
            cut: self.cut.clone(),
        }
    }
}

struct Conn {
    inner: kv::Connection,
    from: u64,
    target: u64,
    cut: Arc<Mutex<BTreeSet<u64>>>,
}

impl Conn {
    fn check(&self) -> Result<(), Unreachable<TypeConfig>> {
        let cut = self.cut.lock().unwrap();
        if cut.contains(&self.from) || cut.contains(&self.target) {
            Err(Unreachable::from_string(format!(
                "{} -> {}: partitioned",
                self.from, self.target
            )))
        } else {
            Ok(())
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Conn {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.check()?;
        let r = self.inner.append_entries(rpc, option).await;
        self.check()?;
        r
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.check()?;
        let r = self.inner.vote(rpc, option).await;
        self.check()?;
        r
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.check()?;
        let r = self.inner.pre_vote(rpc, option).await;
        self.check()?;
        r
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.check()?;
        let r = self
            .inner
            .full_snapshot(vote, snapshot, cancel, option)
            .await;
        self.check()?;
        r
    }
}

// ---------------------------------------------------------------------------
// The cluster.

struct Node {
    raft: KvRaft,
    /// A clone of the store the node runs on (they share the log).
    store: LogStore<TypeConfig>,
    sm: StateMachine,
}

struct Cluster {
    router: Router,
    cut: Arc<Mutex<BTreeSet<u64>>>,
    config: Arc<Config>,
    dirs: BTreeMap<u64, PathBuf>,
    nodes: BTreeMap<u64, Node>,
    _tmp: tempfile::TempDir,
}

fn metrics(raft: &KvRaft) -> RaftMetrics<TypeConfig> {
    raft.metrics().borrow_watched().clone()
}

/// Every entry of `store`'s log.
async fn log_of(store: &LogStore<TypeConfig>) -> Vec<Entry> {
    store.clone().try_get_log_entries(..).await.unwrap()
}

/// Entries compared by their serialized form (log id and payload).
fn json(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

fn key_of(e: &Entry) -> Option<&str> {
    match &e.payload {
        EntryPayload::Normal(r) => Some(&r.key),
        _ => None,
    }
}

impl Cluster {
    /// Three nodes, initialized through node 1.
    async fn new() -> Cluster {
        Cluster::with(Config::default()).await
    }

    /// Three nodes with `config` (its timing replaced by the tests'),
    /// initialized through node 1.
    async fn with(config: Config) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..config
        };
        let mut c = Cluster {
            router: Router::default(),
            cut: Arc::default(),
            config: Arc::new(config.validate().unwrap()),
            dirs: IDS
                .iter()
                .map(|&id| (id, tmp.path().join(format!("node-{id}"))))
                .collect(),
            nodes: BTreeMap::new(),
            _tmp: tmp,
        };
        for id in IDS {
            let store = c.open_store(id).await;
            c.start_on(id, store).await;
        }
        let members: BTreeMap<u64, BasicNode> = IDS
            .iter()
            .map(|&id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        c.raft(1).initialize(members).await.unwrap();
        c
    }

    async fn open_store(&self, id: u64) -> LogStore<TypeConfig> {
        let dir = &self.dirs[&id];
        LogStore::open(dir)
            .await
            .unwrap_or_else(|e| panic!("opening node {id}'s store in {}: {e}", dir.display()))
    }

    /// Node `id`'s durable state machine, opened from its directory.
    fn open_sm(&self, id: u64) -> StateMachine {
        let dir = self.dirs[&id].join("sm");
        StateMachine::open(&dir).unwrap_or_else(|e| {
            panic!(
                "opening node {id}'s state machine in {}: {e}",
                dir.display()
            )
        })
    }

    /// Starts node `id` on `store` with its state machine as its last
    /// snapshot left it (openraft re-applies the committed log after it)
    /// and makes it reachable.
    async fn start_on(&mut self, id: u64, store: LogStore<TypeConfig>) {
        let sm = self.open_sm(id);
        let net = Net {
            router: self.router.clone(),
            from: id,
            cut: self.cut.clone(),
        };
        let raft = Raft::new(id, self.config.clone(), net, store.clone(), sm.clone())
            .await
            .unwrap();
        self.router.add(id, raft.clone());
        self.nodes.insert(id, Node { raft, store, sm });
    }

    fn raft(&self, id: u64) -> &KvRaft {
        &self.nodes[&id].raft
    }

    /// Stops node `id`: unreachable, shut down, its store closed. Returns
    /// its log and vote as they were at the stop.
    async fn stop(&mut self, id: u64) -> (Vec<Entry>, Option<VoteOf<TypeConfig>>) {
        self.router.remove(id);
        let node = self.nodes.remove(&id).unwrap();
        node.raft.shutdown().await.unwrap();
        let log = log_of(&node.store).await;
        let vote = node.store.clone().read_vote().await.unwrap();
        node.store.close().await.unwrap();
        (log, vote)
    }

    async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// Waits until one of `among` (other than `not`) leads and a quorum has
    /// acknowledged it (before that it refuses writes); returns it.
    async fn wait_leader(&self, among: &[u64], not: Option<u64>) -> u64 {
        let deadline = Instant::now() + WAIT;
        let leader = loop {
            let found = among
                .iter()
                .filter(|&&id| Some(id) != not)
                .map(|&id| (id, metrics(self.raft(id))))
                .filter(|(_, m)| m.state == ServerState::Leader)
                .max_by_key(|(_, m)| m.current_term);
            if let Some((id, _)) = found {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} (not {not:?}) in {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.raft(leader)
            .wait(Some(WAIT))
            .leader_with_quorum_acked(None, format!("node {leader} quorum-acked"))
            .await
            .unwrap();
        leader
    }

    /// Waits until every node in `ids` applied what the current leader
    /// applied, and at least `acked` (the last write acknowledged: the
    /// leader answers a write while applying it, before its metrics say
    /// so); returns that index.
    async fn converge(&self, ids: &[u64], acked: u64) -> u64 {
        let leader = self.wait_leader(ids, None).await;
        let target = self
            .raft(leader)
            .wait(Some(WAIT))
            .applied_index_at_least(Some(acked), format!("node {leader} applies {acked}"))
            .await
            .unwrap()
            .last_applied
            .expect("the leader applied something")
            .index;
        for &id in ids {
            self.raft(id)
                .wait(Some(WAIT))
                .applied_index_at_least(Some(target), format!("node {id} applies {target}"))
                .await
                .unwrap();
        }
        target
    }

    /// Every node's state machine holds exactly `expected`, and every
    /// node's log is the same up to `upto` (all applied it).
    async fn check(&self, expected: &SnapshotData, upto: u64, ctx: &str) {
        for (id, node) in &self.nodes {
            assert_same_map(&node.sm.snapshot(), expected, &format!("{ctx}: node {id}"));
        }
        let mut logs = Vec::new();
        for (id, node) in &self.nodes {
            let log: Vec<Entry> = log_of(&node.store)
                .await
                .into_iter()
                .filter(|e| e.log_id.index <= upto)
                .collect();
            assert_eq!(
                log.len() as u64,
                upto + 1,
                "{ctx}: node {id} lacks entries up to {upto}"
            );
            logs.push((*id, json(&log)));
        }
        for w in logs.windows(2) {
            assert!(
                w[0].1 == w[1].1,
                "{ctx}: the logs of nodes {} and {} differ up to {upto}",
                w[0].0,
                w[1].0
            );
        }
    }
}

/// `got == want`, with a readable account of the difference.
fn assert_same_map(got: &SnapshotData, want: &SnapshotData, ctx: &str) {
    if got == want {
        return;
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .collect();
    panic!(
        "{ctx}: state machine differs: {} keys missing (first {:?}), {} unexpected (first {:?}), {} with another value (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first(),
        wrong.len(),
        wrong.first()
    );
}

// ---------------------------------------------------------------------------
// Clients.

/// The leader with the highest term among the reachable nodes.
fn reachable_leader(router: &Router) -> Option<KvRaft> {
    IDS.iter()
        .filter_map(|&id| router.get(id))
        .map(|r| (metrics(&r), r))
        .filter(|(m, _)| m.state == ServerState::Leader)
        .max_by_key(|(m, _)| m.current_term)
        .map(|(_, r)| r)
}

/// Writes `writes` one after another, each to whichever reachable node
/// leads, retrying it until acknowledged. Every key is written once, so a
/// retry of a write whose outcome was unknown is harmless: the key can only
/// ever hold that value.
async fn client(
    router: Router,
    writes: Vec<(String, String)>,
    acks: Arc<Acks>,
    mut rng: Rng,
    deadline: Instant,
) {
    for (key, value) in writes {
        loop {
            assert!(
                Instant::now() < deadline,
                "the write of {key} not acknowledged by the deadline"
            );
            let Some(leader) = reachable_leader(&router) else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let req = Request {
                key: key.clone(),
                value: value.clone(),
            };
            match tokio::time::timeout(Duration::from_secs(3), leader.client_write(req)).await {
                Ok(Ok(resp)) => {
                    // Only this value is ever written to this key: an earlier
                    // attempt of unknown outcome may have set it, nothing else.
                    assert!(
                        resp.data.prev.is_none() || resp.data.prev.as_deref() == Some(&*value),
                        "{key}: previous value {:?}, never written",
                        resp.data.prev
                    );
                    acks.record(&key, &value, resp.log_id.index);
                    break;
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    acks.forwarded.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(_)) | Err(_) => {
                    acks.unknown.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if rng.range(0, 3) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.range(1, 3))).await;
        }
    }
}

/// `clients` tasks writing `per_client` writes each, keys `{phase}-{c}-{i}`
/// (unique), seeded values.
fn spawn_clients(
    router: &Router,
    phase: &str,
    clients: u64,
    per_client: u64,
    acks: &Arc<Acks>,
    rng: &mut Rng,
    deadline: Instant,
) -> Vec<JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let mut r = rng.fork(c);
            let writes = (0..per_client)
                .map(|i| (format!("{phase}-{c}-{i}"), format!("{:016x}", r.next_u64())))
                .collect();
            tokio::spawn(client(router.clone(), writes, acks.clone(), r, deadline))
        })
        .collect()
}

async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        t.await.expect("a client failed");
    }
}

async fn bounded<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("the scenario did not finish in {limit:?}"))
}

// ---------------------------------------------------------------------------
// Scenario 1.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stop_failover_restart_catch_up() {
    let _one = SERIAL.lock().await;
    let seed = common::seed("leader_stop_failover_restart_catch_up");
    bounded(Duration::from_secs(120), failover(seed)).await;
}

async fn failover(seed: u64) {
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut c = Cluster::new().await;
    c.wait_leader(&IDS, None).await;
    let acks = Arc::new(Acks::default());

    // Phase A: 4 clients x 50 writes; the leader is stopped mid-load.
    let a = spawn_clients(&c.router, "a", 4, 50, &acks, &mut rng, deadline);
    let stop_at = rng.range(40, 140) as usize;
    acks.wait_for(stop_at, deadline).await;
    let old = c.wait_leader(&IDS, None).await;
    let acked_at_stop = acks.count();
    let (log_at_stop, vote_at_stop) = c.stop(old).await;
    let rest: Vec<u64> = IDS.iter().copied().filter(|&id| id != old).collect();
    let new = c.wait_leader(&rest, None).await;
    eprintln!(
        "stopped leader {old} after {acked_at_stop} acks (log up to {:?}); node {new} leads",
        log_at_stop.last().map(|e| e.log_id)
    );
    join_all(a).await;
    assert_eq!(acks.count(), 200);

    // Phase B: with the old leader down, more writes commit on two nodes.
    let b = spawn_clients(&c.router, "b", 4, 25, &acks, &mut rng, deadline);
    join_all(b).await;
    assert_eq!(acks.count(), 300);
    let upto = c.converge(&rest, acks.max_index()).await;
    c.check(&acks.expected(), upto, "two nodes, old leader down")
        .await;

    // The old leader restarts from its directory: its log and vote are
    // what it had when it stopped.
    let store = c.open_store(old).await;
    let reopened = log_of(&store).await;
    assert!(
        json(&reopened) == json(&log_at_stop),
        "node {old}: the reopened log ({} entries, last {:?}) is not the log at the stop ({} entries, last {:?})",
        reopened.len(),
        reopened.last().map(|e| e.log_id),
        log_at_stop.len(),
        log_at_stop.last().map(|e| e.log_id)
    );
    assert_eq!(
        store.clone().read_vote().await.unwrap(),
        vote_at_stop,
        "node {old}: vote after reopening"
    );
    c.start_on(old, store).await;

    // Phase C: writes go on while it catches up.
    let cc = spawn_clients(&c.router, "c", 4, 10, &acks, &mut rng, deadline);
    join_all(cc).await;
    assert_eq!(acks.count(), 340);
    let upto = c.converge(&IDS, acks.max_index()).await;
    c.check(&acks.expected(), upto, "after the restart").await;
    // Written while it was down, applied on it now.
    let sm = &c.nodes[&old].sm;
    assert!((0..4).all(|cl| sm.get(&format!("b-{cl}-24")).is_some()));
    assert!(upto >= acks.max_index());
    eprintln!(
        "failover: {} writes acknowledged ({} forwarded, {} of unknown outcome retried), all on 3/3 nodes up to index {upto}, in {:?}",
        acks.count(),
        acks.forwarded.load(Ordering::SeqCst),
        acks.unknown.load(Ordering::SeqCst),
        t0.elapsed()
    );
    c.stop_all().await;
}

// ---------------------------------------------------------------------------
// Scenario 2.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_suffix_is_truncated() {
    let _one = SERIAL.lock().await;
    let seed = common::seed("partitioned_leader_suffix_is_truncated");
    bounded(Duration::from_secs(120), partition(seed)).await;
}

async fn partition(seed: u64) {
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut c = Cluster::new().await;
    let acks = Arc::new(Acks::default());

    // A committed baseline on all three.
    c.wait_leader(&IDS, None).await;
    let n = rng.range(5, 30);
    join_all(spawn_clients(
        &c.router, "base", 1, n, &acks, &mut rng, deadline,
    ))
    .await;
    let upto = c.converge(&IDS, acks.max_index()).await;
    c.check(&acks.expected(), upto, "baseline").await;

    // Cut the leader off; it keeps running and, its lease not yet run
    // out, appends writes that can never commit.
    let old = c.wait_leader(&IDS, None).await;
    let old_raft = c.raft(old).clone();
    c.cut.lock().unwrap().insert(old);
    c.router.remove(old);
    let k = rng.range(5, 10);
    let orphans: Vec<(String, JoinHandle<_>)> = (0..k)
        .map(|i| {
            let raft = old_raft.clone();
            let key = format!("orphan-{i}");
            let req = Request {
                key: key.clone(),
                value: format!("{:016x}", rng.next_u64()),
            };
            (
                key,
                tokio::spawn(async move { raft.client_write(req).await }),
            )
        })
        .collect();
    let orphan_ids: Vec<LogIdOf<TypeConfig>> = {
        let until = Instant::now() + WAIT;
        loop {
            let appended: Vec<_> = log_of(&c.nodes[&old].store)
                .await
                .into_iter()
                .filter(|e| key_of(e).is_some_and(|k| k.starts_with("orphan-")))
                .map(|e| e.log_id)
                .collect();
            if appended.len() as u64 == k {
                break appended;
            }
            if let Some((key, _)) = orphans.iter().find(|(_, h)| h.is_finished()) {
                panic!(
                    "the cut-off leader answered the write of {key} before appending all {k}: \
                     its lease ran out first (the machine is too slow for these timeouts)"
                );
            }
            assert!(
                Instant::now() < until,
                "the cut-off leader appended {} of {k}",
                appended.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let m = metrics(&old_raft);
    assert!(
        m.local_committed
            .is_none_or(|cm| cm.index < orphan_ids[0].index),
        "node {old}: an orphan is committed: {:?}",
        m.local_committed
    );

    // The majority elects a new leader and commits other writes: fewer
    // than the orphans (with the new leader's blank entry), so part of the
    // orphan suffix lies past the new leader's log and must be cut, not
    // merely overwritten.
    let rest: Vec<u64> = IDS.iter().copied().filter(|&id| id != old).collect();
    let new = c.wait_leader(&rest, None).await;
    let n = rng.range(1, k - 3);
    join_all(spawn_clients(
        &c.router, "maj", 1, n, &acks, &mut rng, deadline,
    ))
    .await;
    let new_last = metrics(c.raft(new)).last_log_index.unwrap();
    assert!(
        new_last < orphan_ids.last().unwrap().index,
        "node {new}'s log ({new_last}) reaches past the orphans"
    );
    for id in &rest {
        let log = log_of(&c.nodes[id].store).await;
        assert!(
            !log.iter().any(|e| orphan_ids.contains(&e.log_id)
                || key_of(e).is_some_and(|k| k.starts_with("orphan-"))),
            "node {id} holds an orphan entry"
        );
    }
    assert!(
        orphans.iter().all(|(_, h)| !h.is_finished()),
        "an orphan write was answered while its leader was cut off"
    );
    let old_log = log_of(&c.nodes[&old].store).await;
    assert!(
        orphan_ids
            .iter()
            .all(|id| old_log.iter().any(|e| e.log_id == *id)),
        "node {old} lost its orphans while cut off"
    );
    eprintln!(
        "node {old} cut off with {k} uncommitted entries {:?}..={:?}; node {new} leads and committed {} more",
        orphan_ids.first(),
        orphan_ids.last(),
        n
    );

    // Reconnect: the old leader's suffix is cut, and everything converges.
    c.cut.lock().unwrap().remove(&old);
    c.router.add(old, old_raft.clone());
    let upto = c.converge(&IDS, acks.max_index()).await;
    c.check(&acks.expected(), upto, "after reconnection").await;
    // Nothing past the committed log is left on the old leader.
    let last = log_of(&c.nodes[&old].store).await.last().unwrap().log_id;
    assert_eq!(
        last.index, upto,
        "node {old}: its log goes on past {upto} to {last:?}"
    );
    for (key, h) in orphans {
        let r = tokio::time::timeout(WAIT, h)
            .await
            .unwrap_or_else(|_| panic!("the orphan write of {key} is never answered"))
            .unwrap();
        match r {
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {}
            other => panic!("the orphan write of {key}: want LogEntryDiscarded, got {other:?}"),
        }
    }
    let log = log_of(&c.nodes[&old].store).await;
    for id in &orphan_ids {
        assert!(
            log.iter().all(|e| e.log_id != *id),
            "node {old} still holds orphan {id:?}"
        );
    }
    for (id, node) in &c.nodes {
        assert!(
            node.sm.snapshot().keys().all(|k| !k.starts_with("orphan-")),
            "node {id} applied an orphan"
        );
    }

    // Writes go on over the orphans' indexes.
    let more = rng.range(k, 2 * k);
    join_all(spawn_clients(
        &c.router, "post", 2, more, &acks, &mut rng, deadline,
    ))
    .await;
    let upto = c.converge(&IDS, acks.max_index()).await;
    assert!(upto > orphan_ids.last().unwrap().index);
    c.check(&acks.expected(), upto, "after more writes").await;

    // On disk too: reopened after a stop, the old leader's log has no
    // orphan and is the log it ran with.
    let (log_at_stop, _) = c.stop(old).await;
    let store = c.open_store(old).await;
    let reopened = log_of(&store).await;
    assert!(
        json(&reopened) == json(&log_at_stop),
        "node {old}: the reopened log differs"
    );
    assert!(
        reopened.iter().all(|e| !orphan_ids.contains(&e.log_id)
            && !key_of(e).is_some_and(|k| k.starts_with("orphan-"))),
        "node {old}: an orphan came back from disk"
    );
    store.close().await.unwrap();
    eprintln!(
        "partition: {k} orphans discarded, {} writes on 3/3 nodes up to index {upto}, in {:?}",
        acks.count(),
        t0.elapsed()
    );
    c.stop_all().await;
}

// ---------------------------------------------------------------------------
// Scenario 3.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purge_restart_and_install() {
    let _one = SERIAL.lock().await;
    let seed = common::seed("snapshot_purge_restart_and_install");
    bounded(Duration::from_secs(150), snapshots(seed)).await;
}

/// Node `id`'s last purged log index, if its log was purged.
async fn purged_of(store: &LogStore<TypeConfig>) -> Option<u64> {
    use openraft::storage::RaftLogStorage;
    store
        .clone()
        .get_log_state()
        .await
        .unwrap()
        .last_purged_log_id
        .map(|l| l.index)
}

impl Cluster {
    /// Waits until node `id` purged its log up to at least `index`.
    async fn wait_purged(&self, id: u64, index: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let p = purged_of(&self.nodes[&id].store).await;
            if let Some(p) = p.filter(|&p| p >= index) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not purge up to {index} in {WAIT:?} (purged: {p:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every state machine holds exactly `expected`, and the logs agree
    /// wherever two of them both still hold an entry.
    async fn check_purged(&self, expected: &SnapshotData, ctx: &str) {
        let mut logs = Vec::new();
        for (id, node) in &self.nodes {
            assert_same_map(&node.sm.snapshot(), expected, &format!("{ctx}: node {id}"));
            let log: BTreeMap<u64, String> = log_of(&node.store)
                .await
                .iter()
                .map(|e| (e.log_id.index, json(std::slice::from_ref(e)).remove(0)))
                .collect();
            logs.push((*id, log));
        }
        for (i, (a, la)) in logs.iter().enumerate() {
            for (b, lb) in &logs[i + 1..] {
                for (index, e) in la {
                    if let Some(f) = lb.get(index) {
                        assert!(e == f, "{ctx}: nodes {a} and {b} differ at index {index}");
                    }
                }
            }
        }
    }
}

async fn snapshots(seed: u64) {
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(130);
    let config = Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    let mut c = Cluster::with(config).await;
    let leader = c.wait_leader(&IDS, None).await;
    let acks = Arc::new(Acks::default());

    // Phase A: enough writes for several snapshots on every node.
    join_all(spawn_clients(
        &c.router, "a", 4, 40, &acks, &mut rng, deadline,
    ))
    .await;
    let upto = c.converge(&IDS, acks.max_index()).await;
    for id in IDS {
        c.wait_purged(id, 80).await;
    }
    c.check_purged(&acks.expected(), "after phase A").await;

    // Phase B: a follower stops; the others snapshot and purge past its log.
    let follower = *IDS.iter().find(|&&id| id != leader).unwrap();
    c.stop(follower).await;
    // Its last log index as its directory holds it (the log itself may be
    // empty: purged up to its last snapshot, which can be its last entry).
    let follower_last = {
        use openraft::storage::RaftLogStorage;
        let mut store = c.open_store(follower).await;
        let last = store.get_log_state().await.unwrap().last_log_id;
        store.close().await.unwrap();
        last.expect("the follower had a log").index
    };
    assert!(follower_last >= upto);
    let rest: Vec<u64> = IDS.iter().copied().filter(|&id| id != follower).collect();
    join_all(spawn_clients(
        &c.router, "b", 4, 40, &acks, &mut rng, deadline,
    ))
    .await;
    c.converge(&rest, acks.max_index()).await;
    let new_leader = c.wait_leader(&rest, None).await;
    let purged = c.wait_purged(new_leader, follower_last + 1).await;

    // The follower restarts from its directory: its state machine is its
    // last snapshot (taken in phase A), not empty.
    let sm = c.open_sm(follower);
    let phase_a = sm.snapshot();
    assert!(
        !phase_a.is_empty() && phase_a.keys().all(|k| k.starts_with("a-")),
        "node {follower}: its state machine did not come back from its snapshot ({} keys)",
        phase_a.len()
    );
    drop(sm);
    let store = c.open_store(follower).await;
    c.start_on(follower, store).await;
    let upto = c.converge(&IDS, acks.max_index()).await;
    c.check_purged(&acks.expected(), "after the follower's restart")
        .await;
    // Its log was behind the leader's purge point: only a snapshot from the
    // leader could bring it up to date, and its own log restarts after it.
    let follower_purged = c.wait_purged(follower, follower_last + 1).await;
    eprintln!(
        "node {follower} stopped at index {follower_last}; the leader purged up to {purged}; \
         restarted, it installed a snapshot (purged up to {follower_purged}) and applied up to {upto}"
    );

    // Phase C: the leader stops and restarts from a purged log.
    let old = c.wait_leader(&IDS, None).await;
    c.stop(old).await;
    let rest: Vec<u64> = IDS.iter().copied().filter(|&id| id != old).collect();
    c.wait_leader(&rest, None).await;
    join_all(spawn_clients(
        &c.router, "c", 2, 20, &acks, &mut rng, deadline,
    ))
    .await;
    let store = c.open_store(old).await;
    assert!(
        purged_of(&store).await.is_some(),
        "node {old}: purge point lost"
    );
    c.start_on(old, store).await;
    let upto = c.converge(&IDS, acks.max_index()).await;
    c.check_purged(&acks.expected(), "after the leader's restart")
        .await;
    assert_eq!(acks.count(), 360);
    eprintln!(
        "snapshots: {} writes acknowledged, all on 3/3 nodes up to index {upto}, in {:?}",
        acks.count(),
        t0.elapsed()
    );
    c.stop_all().await;
}
