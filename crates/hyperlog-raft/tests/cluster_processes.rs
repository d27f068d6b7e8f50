//! A 3-node cluster of OS processes over loopback TCP (`hyperlog_raft::tcp`).
//!
//! The test binary re-runs itself as a node (the ignored test
//! `node_process`, switched on by `HYPERLOG_RAFT_NODE_ID`): a `LogStore` in
//! its directory, openraft over `tcp::Network`, `tcp::serve` on its port
//! for the Raft RPCs and the clients. The parent starts three, initializes
//! the cluster through node 1 and runs clients that write over TCP,
//! following `ForwardToLeader` hints. Mid-load it SIGKILLs the leader, keeps
//! writing to the new one, restarts the killed node from its directory,
//! and checks that every write acknowledged to a client is on every node
//! and that the restarted node caught up.
//!
//! Seeded (`HYPERLOG_RAFT_SEED`, printed); bounded (under 60 s); a node
//! whose parent goes away exits (its stdin closes), and the parent kills
//! its nodes when it drops them, also on a panic.

#[path = "cluster_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{Acks, Rng};
use hyperlog_raft::kv::{Request, SnapshotData};
use hyperlog_raft::tcp::{self, ClientRequest, ClientResponse, Status};
use openraft::{BasicNode, Config, ServerState};

const ENV_ID: &str = "HYPERLOG_RAFT_NODE_ID";
const ENV_DIR: &str = "HYPERLOG_RAFT_NODE_DIR";
const ENV_ADDR: &str = "HYPERLOG_RAFT_NODE_ADDR";
const IDS: [u64; 3] = [1, 2, 3];
/// The whole test, as a hang guard.
const LIMIT: Duration = Duration::from_secs(55);

// ---------------------------------------------------------------------------
// The node process.

/// Not a test: the node process the parent test runs (it returns at once
/// when `HYPERLOG_RAFT_NODE_ID` is unset).
#[test]
#[ignore = "a node process of `three_processes_leader_killed_and_restarted`"]
fn node_process() {
    let Ok(id) = std::env::var(ENV_ID) else {
        return;
    };
    let id: u64 = id.parse().unwrap();
    let dir = PathBuf::from(std::env::var(ENV_DIR).unwrap());
    let addr = std::env::var(ENV_ADDR).unwrap();
    // The parent holds our stdin: when it goes, so do we.
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run_node(id, dir, addr));
}

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

async fn run_node(id: u64, dir: PathBuf, addr: String) {
    tcp::run_node(id, &dir, &addr, config(), |last| {
        // What it starts from (the parent checks a restart read its log back).
        println!("READY {id} {}", last.map_or(-1, |l| l as i64));
    })
    .await
    .unwrap_or_else(|e| panic!("node {id} in {}: {e}", dir.display()));
}

// ---------------------------------------------------------------------------
// The parent's handle on a node process.

/// A running node process; dropping it SIGKILLs it.
struct NodeProc {
    id: u64,
    child: Child,
    /// Held open: the node exits when it closes.
    _stdin: ChildStdin,
    lines: Receiver<String>,
    log: PathBuf,
}

impl NodeProc {
    /// Starts node `id` on `dir` and `addr`; its stderr goes to `log`.
    fn spawn(id: u64, dir: &Path, addr: &str, log: &Path) -> NodeProc {
        let stderr = File::options().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "node_process", "--nocapture", "--ignored"])
            .env(ENV_ID, id.to_string())
            .env(ENV_DIR, dir)
            .env(ENV_ADDR, addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("READY") && tx.send(line).is_err() {
                    return;
                }
            }
        });
        NodeProc {
            id,
            child,
            _stdin: stdin,
            lines,
            log: log.to_path_buf(),
        }
    }

    /// Waits for the node to serve; returns the last log index it opened
    /// its store with (-1: none).
    fn ready(&mut self, timeout: Duration) -> i64 {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                let v: Vec<&str> = line.split(' ').collect();
                assert_eq!(v[1], self.id.to_string(), "{line}");
                v[2].parse().unwrap()
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "node {} not ready in {timeout:?}{}",
                    self.id,
                    tail(&self.log)
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("node {} exited: {status}{}", self.id, tail(&self.log))
            }
        }
    }

    /// SIGKILLs it and checks that the kill is what ended it.
    fn kill(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "node {}: not ended by SIGKILL: {status}",
            self.id
        );
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of a node's stderr, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "\n--- last lines of {} ---\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}

/// Three loopback addresses with ports free at the time of asking.
fn free_addrs() -> BTreeMap<u64, String> {
    let listeners: Vec<_> = IDS
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    IDS.iter()
        .zip(&listeners)
        .map(|(&id, l)| (id, l.local_addr().unwrap().to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Clients.

/// One request to `addr` on a fresh connection; `None` when the node does
/// not answer.
async fn ask(addr: &str, req: &ClientRequest) -> Option<ClientResponse> {
    tcp::Client::new(addr)
        .call(req, Duration::from_secs(2))
        .await
        .ok()
}

async fn status(addr: &str) -> Option<Status> {
    match ask(addr, &ClientRequest::Status).await? {
        ClientResponse::Status(s) => Some(s),
        other => panic!("{addr}: status: {other:?}"),
    }
}

/// The leader (highest term) among the nodes that answer, once it has one.
async fn wait_leader(addrs: &BTreeMap<u64, String>, deadline: Instant) -> u64 {
    loop {
        let mut best: Option<Status> = None;
        for addr in addrs.values() {
            if let Some(s) = status(addr).await
                && s.state == ServerState::Leader
                && best.as_ref().is_none_or(|b| b.term < s.term)
            {
                best = Some(s);
            }
        }
        if let Some(s) = best {
            return s.id;
        }
        assert!(Instant::now() < deadline, "no leader by the deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes keys `c{n}-0`, `c{n}-1`... until `stop`, each to the node it
/// believes leads, following hints, retrying each write until it is
/// acknowledged (an unknown outcome is retried: the key only ever takes
/// this value).
async fn client(
    n: u64,
    addrs: Vec<String>,
    acks: Arc<Acks>,
    stop: Arc<AtomicBool>,
    mut rng: Rng,
    deadline: Instant,
) {
    let mut conns: Vec<tcp::Client> = addrs.iter().map(tcp::Client::new).collect();
    let mut at = rng.range(0, addrs.len() as u64 - 1) as usize;
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("c{n}-{i}");
        let value = format!("{:016x}", rng.next_u64());
        let req = ClientRequest::Write(Request {
            key: key.clone(),
            value: value.clone(),
        });
        loop {
            assert!(
                Instant::now() < deadline,
                "client {n}: {key} not acknowledged by the deadline"
            );
            match conns[at].call(&req, Duration::from_secs(5)).await {
                Ok(ClientResponse::Written { index, response }) => {
                    assert!(
                        response.prev.is_none() || response.prev.as_deref() == Some(&*value),
                        "{key}: previous value {:?}, never written",
                        response.prev
                    );
                    acks.record(&key, &value, index);
                    break;
                }
                Ok(ClientResponse::ForwardToLeader { leader_addr, .. }) => {
                    acks.forwarded.fetch_add(1, Ordering::SeqCst);
                    match leader_addr.and_then(|a| addrs.iter().position(|x| *x == a)) {
                        Some(l) if l != at => at = l,
                        // No leader known yet (or it is still getting its
                        // quorum's acknowledgement): wait a little.
                        _ => {
                            at = (at + 1) % addrs.len();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                Ok(ClientResponse::Error(_)) => {
                    acks.unknown.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(other) => panic!("client {n}: a write answered {other:?}"),
                // Not sent: the node is down.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    acks.refused.fetch_add(1, Ordering::SeqCst);
                    at = (at + 1) % addrs.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // The node died or stalled with the write: outcome unknown.
                Err(_) => {
                    acks.unknown.fetch_add(1, Ordering::SeqCst);
                    at = (at + 1) % addrs.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        i += 1;
    }
}

/// Every node's (status, content), once all hold the same content and
/// applied at least `index`.
async fn converged(
    addrs: &BTreeMap<u64, String>,
    index: u64,
    deadline: Instant,
) -> BTreeMap<u64, (Status, SnapshotData)> {
    loop {
        let mut dumps = BTreeMap::new();
        for (&id, addr) in addrs {
            if let Some(ClientResponse::Dump { status, data }) =
                ask(addr, &ClientRequest::Dump).await
            {
                dumps.insert(id, (status, data));
            }
        }
        let done = dumps.len() == addrs.len()
            && dumps
                .values()
                .all(|(s, d)| s.last_applied >= Some(index) && *d == dumps[&1].1);
        if done {
            return dumps;
        }
        if Instant::now() >= deadline {
            let summary: Vec<_> = dumps
                .iter()
                .map(|(id, (s, d))| {
                    format!("node {id}: applied {:?}, {} keys", s.last_applied, d.len())
                })
                .collect();
            panic!("no convergence at {index} by the deadline: {summary:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// The test.

#[test]
fn three_processes_leader_killed_and_restarted() {
    let seed = common::seed("three_processes_leader_killed_and_restarted");
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let addrs = free_addrs();
    let dir = |id: u64| tmp.path().join(format!("node-{id}"));
    let log = |id: u64| tmp.path().join(format!("node-{id}.stderr"));
    // Dropped (killed) on every way out, a panic included.
    let mut procs: BTreeMap<u64, NodeProc> = IDS
        .iter()
        .map(|&id| (id, NodeProc::spawn(id, &dir(id), &addrs[&id], &log(id))))
        .collect();
    for p in procs.values_mut() {
        assert_eq!(
            p.ready(Duration::from_secs(20)),
            -1,
            "a fresh node has a log"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let logs: Vec<PathBuf> = IDS.iter().map(|&id| log(id)).collect();
    let result = rt.block_on(async {
        tokio::time::timeout(LIMIT, run(seed, &addrs, &mut procs, &dir, &log)).await
    });
    match result {
        Ok(()) => {}
        Err(_) => {
            let tails: String = logs.iter().map(|l| tail(l)).collect();
            panic!("the test did not finish in {LIMIT:?}{tails}")
        }
    }
    drop(procs);
    eprintln!("three processes: done in {:?}", t0.elapsed());
}

async fn run(
    seed: u64,
    addrs: &BTreeMap<u64, String>,
    procs: &mut BTreeMap<u64, NodeProc>,
    dir: &dyn Fn(u64) -> PathBuf,
    log: &dyn Fn(u64) -> PathBuf,
) {
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + LIMIT - Duration::from_secs(5);

    // Initialize through node 1.
    let members: BTreeMap<u64, BasicNode> = addrs
        .iter()
        .map(|(&id, a)| (id, BasicNode::new(a)))
        .collect();
    match ask(&addrs[&1], &ClientRequest::Initialize(members)).await {
        Some(ClientResponse::Initialized) => {}
        other => panic!("initialize: {other:?}"),
    }
    let first = wait_leader(addrs, deadline).await;

    // Clients write throughout.
    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(client(
                n,
                addrs.values().cloned().collect(),
                acks.clone(),
                stop.clone(),
                rng.fork(n),
                deadline,
            ))
        })
        .collect();

    // SIGKILL the leader mid-load.
    let kill_at = rng.range(60, 160) as usize;
    acks.wait_for(kill_at / 2, deadline).await;
    // Acknowledged well before the kill: in the killed node's files.
    let early = acks.max_index();
    acks.wait_for(kill_at, deadline).await;
    let victim = wait_leader(addrs, deadline).await;
    let at_kill = acks.expected();
    let acked_at_kill = at_kill.len();
    procs.remove(&victim).unwrap().kill();
    eprintln!(
        "first leader {first}; SIGKILLed leader {victim} after {acked_at_kill} acknowledged writes"
    );

    // The two others elect a leader and take writes.
    acks.wait_for(acked_at_kill + 100, deadline).await;
    let others: BTreeMap<u64, String> = addrs
        .iter()
        .filter(|(id, _)| **id != victim)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let second = wait_leader(&others, deadline).await;
    let acked_at_restart = acks.count();
    let missed: Vec<String> = acks
        .expected()
        .into_keys()
        .filter(|k| !at_kill.contains_key(k))
        .collect();

    // Restart the killed node from its directory; writes go on.
    let mut p = NodeProc::spawn(victim, &dir(victim), &addrs[&victim], &log(victim));
    let reopened = p.ready(Duration::from_secs(20));
    procs.insert(victim, p);
    assert!(
        reopened >= early as i64,
        "node {victim} restarted with its log up to {reopened}, but {early} was acknowledged well before the kill"
    );
    acks.wait_for(acked_at_restart + 60, deadline).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client failed");
    }

    // Every acknowledged write on every node, the restarted one included.
    let expected = acks.expected();
    let dumps = converged(addrs, acks.max_index(), deadline).await;
    for (id, (status, data)) in &dumps {
        assert_eq!(
            data.len(),
            expected.len(),
            "node {id} ({status:?}): {} keys, {} acknowledged",
            data.len(),
            expected.len()
        );
        for (k, v) in &expected {
            assert_eq!(data.get(k), Some(v), "node {id}: acknowledged write {k}");
        }
    }
    let restarted = &dumps[&victim].1;
    assert!(
        !missed.is_empty() && missed.iter().all(|k| restarted.contains_key(k)),
        "node {victim} lacks writes acknowledged while it was down"
    );
    eprintln!(
        "{} writes acknowledged ({} while node {victim} was down, then led by {second}); \
         {} forwarded, {} refused, {} of unknown outcome retried; node {victim} reopened its log at {reopened} \
         and caught up to {:?}",
        acks.count(),
        acked_at_restart - acked_at_kill,
        acks.forwarded.load(Ordering::SeqCst),
        acks.refused.load(Ordering::SeqCst),
        acks.unknown.load(Ordering::SeqCst),
        dumps[&victim].0.last_applied
    );
}
