//! The demo's replicated stage: three `hyperlog` processes, each an openraft
//! node on a hyperlog log store in its own directory, over loopback TCP
//! (`hyperlog_raft::tcp`). Clients write; the leader is killed with SIGKILL
//! mid-load; a new leader takes over; the killed node is started again from
//! its directory and catches up; then every write acknowledged to a client
//! is looked for on every node.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperlog_raft::kv::Request;
use hyperlog_raft::tcp::{self, Client, ClientRequest, ClientResponse};
use openraft::{BasicNode, ServerState};

use crate::util::{Fail, Out, style};

/// Writers running at once.
const CLIENTS: usize = 16;
const CALL: Duration = Duration::from_secs(5);

fn config() -> Arc<openraft::Config> {
    let c = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // A snapshot every 2,000 entries, then the log behind it purged:
        // each node keeps its snapshots durably beside its log
        // (`kv::StateMachine::open`), so a killed node restarts from its
        // last snapshot and the log after it.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
        ..Default::default()
    };
    Arc::new(c.validate().unwrap_or_default())
}

/// The hidden node mode: `hyperlog demo --raft-node ID --raft-addr ADDR --dir DIR`.
/// Prints `READY` once serving; exits when its parent closes its stdin.
pub fn node(id: u64, addr: &str, dir: &Path) -> Result<u8, Fail> {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail::io(format!("start a runtime: {e}")))?;
    rt.block_on(tcp::run_node(id, dir, addr, config(), |last| {
        println!("READY {}", last.map_or(-1, |l| l as i64));
    }))
    .map_err(|e| Fail::io(format!("node {id} in {}: {e}", dir.display())))?;
    Ok(0)
}

/// A node process; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
}

impl Node {
    fn start(id: u64, addr: &str, dir: &Path) -> Result<Node, Fail> {
        let exe =
            std::env::current_exe().map_err(|e| Fail::io(format!("find own executable: {e}")))?;
        let mut child = Command::new(exe)
            .args(["demo", "--raft-node", &id.to_string(), "--raft-addr", addr])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Fail::io(format!("start node {id}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Fail::io("a node has no stdout"))?;
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("READY"));
        if !ready {
            return Err(Fail::io(format!("node {id} exited before it was ready")));
        }
        Ok(Node { child })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Free loopback addresses for the three nodes.
fn addresses() -> Result<BTreeMap<u64, String>, Fail> {
    let mut held = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Fail::io(format!("bind a loopback port: {e}")))?;
        let a = l
            .local_addr()
            .map_err(|e| Fail::io(format!("read a loopback port: {e}")))?;
        addrs.insert(id, a.to_string());
        held.push(l);
    }
    Ok(addrs)
}

/// Writes `key = value` through whichever node leads, following its hints
/// and retrying the same write (it is idempotent) until a node answers that
/// it committed it. Returns its log index.
async fn write(addrs: &BTreeMap<u64, String>, key: &str, value: &str) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at = addrs.values().next()?.clone();
    let req = ClientRequest::Write(Request {
        key: key.to_string(),
        value: value.to_string(),
    });
    let mut n = 0usize;
    while Instant::now() < deadline {
        match Client::new(at.clone()).call(&req, CALL).await {
            Ok(ClientResponse::Written { index, .. }) => return Some(index),
            Ok(ClientResponse::ForwardToLeader {
                leader_addr: Some(a),
                ..
            }) => {
                at = a;
                continue;
            }
            _ => {}
        }
        n += 1;
        at = addrs.values().nth(n % addrs.len())?.clone();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn status(addr: &str) -> Option<tcp::Status> {
    match Client::new(addr).call(&ClientRequest::Status, CALL).await {
        Ok(ClientResponse::Status(s)) => Some(s),
        _ => None,
    }
}

/// The replicated stage of `hyperlog demo`; returns whether every
/// acknowledged write was found on every node.
pub fn replicated(dir: &Path, seconds: u64, out: &mut Out) -> Result<bool, Fail> {
    let b = style::BOLD;
    out.line(&format!(
        "{b}3. replicated{b:#}: 3 processes, each an openraft node on a hyperlog store, over loopback TCP"
    ))?;
    out.flush()?;
    let addrs = addresses()?;
    let node_dir = |id: u64| -> PathBuf { dir.join(format!("raft-node-{id}")) };
    let mut nodes = BTreeMap::new();
    for (id, a) in &addrs {
        nodes.insert(*id, Node::start(*id, a, &node_dir(*id))?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail::io(format!("start a runtime: {e}")))?;
    rt.block_on(async {
        let members: BTreeMap<u64, BasicNode> =
            addrs.iter().map(|(i, a)| (*i, BasicNode::new(a.clone()))).collect();
        let init = Client::new(addrs[&1].clone())
            .call(&ClientRequest::Initialize(members), CALL)
            .await
            .map_err(|e| Fail::io(format!("initialize the cluster: {e}")))?;
        if !matches!(init, ClientResponse::Initialized) {
            return Err(Fail::io(format!("initialize the cluster: {init:?}")));
        }

        // Load, with the leader killed halfway.
        let acked: Arc<Mutex<BTreeMap<String, (String, u64)>>> = Arc::default();
        let load = Duration::from_secs(seconds.max(2));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (addrs, acked, stop) = (addrs.clone(), acked.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (key, value) = (format!("job-{c}-{i}"), format!("created by client {c}"));
                    if let Some(index) = write(&addrs, &key, &value).await {
                        let mut a = acked.lock().unwrap_or_else(|p| p.into_inner());
                        a.insert(key, (value, index));
                    }
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(load / 2).await;
        let mut leader = None;
        for (id, a) in &addrs {
            if status(a).await.is_some_and(|s| s.state == ServerState::Leader) {
                leader = Some(*id);
            }
        }
        let leader = leader.ok_or_else(|| Fail::io("no leader halfway through the load"))?;
        let before = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
        let killed_at = started.elapsed();
        drop(nodes.remove(&leader)); // SIGKILL
        out.line(&format!(
            "  node {leader} (the leader) killed with SIGKILL at {:.1} s, after {before} acknowledged writes",
            killed_at.as_secs_f64()
        ))?;
        out.flush()?;
        let mut new_leader = None;
        let elect = Instant::now();
        while new_leader.is_none() && elect.elapsed() < Duration::from_secs(20) {
            for (id, a) in addrs.iter().filter(|(id, _)| **id != leader) {
                if status(a).await.is_some_and(|s| s.state == ServerState::Leader) {
                    new_leader = Some(*id);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elected_in = elect.elapsed().as_secs_f64();
        // As long again under the new leader.
        tokio::time::sleep(load / 2).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let elapsed = started.elapsed().as_secs_f64();
        out.line(&format!(
            "  node {} elected leader {elected_in:.2} s after the kill; {} writes acknowledged in {elapsed:.1} s, {} of them after the kill ({:.0}/s overall, each on a quorum's disk before its acknowledgement)",
            new_leader.map_or("-".to_string(), |l| l.to_string()),
            acked.len(),
            acked.len() - before,
            acked.len() as f64 / elapsed
        ))?;

        // The killed node back from its directory; it catches up.
        let restart = Instant::now();
        // Its port may linger a moment after the kill: try a few times.
        let mut again = Node::start(leader, &addrs[&leader], &node_dir(leader));
        for _ in 0..5 {
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            again = Node::start(leader, &addrs[&leader], &node_dir(leader));
        }
        nodes.insert(leader, again?);
        let last = acked.values().map(|(_, i)| *i).max().unwrap_or(0);
        let mut caught_up = false;
        while !caught_up && restart.elapsed() < Duration::from_secs(30) {
            caught_up = status(&addrs[&leader])
                .await
                .is_some_and(|s| s.last_applied.is_some_and(|a| a >= last));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.line(&format!(
            "  node {leader} restarted from {}: caught up to index {last}: {caught_up} ({:.2} s)",
            node_dir(leader).display(),
            restart.elapsed().as_secs_f64()
        ))?;

        // Every acknowledged write on every node.
        let mut all = caught_up;
        for (id, a) in &addrs {
            let data = match Client::new(a.clone()).call(&ClientRequest::Dump, CALL).await {
                Ok(ClientResponse::Dump { data, .. }) => data,
                other => return Err(Fail::io(format!("read node {id}: {other:?}"))),
            };
            let missing = acked
                .iter()
                .filter(|(k, (v, _))| data.get(*k) != Some(v))
                .count();
            all &= missing == 0;
            out.line(&format!(
                "  node {id}: {} keys; acknowledged writes missing: {missing}",
                data.len()
            ))?;
        }
        out.line(&format!(
            "  every acknowledged write present on all 3 nodes: {all}"
        ))?;
        out.flush()?;
        Ok(all)
    })
}
