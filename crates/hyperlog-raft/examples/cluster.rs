//! A 3-node openraft cluster, each node on a hyperlog log store in its own
//! directory: writes, the leader stopped, a new leader, the old leader
//! restarted from its directory and caught up.
//!
//! `cargo run -p hyperlog-raft --example cluster`

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperlog_raft::LogStore;
use hyperlog_raft::kv::{KvRaft, Request, Router, StateMachine, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Config, Raft};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Starts node `id` on the store in `dir` and makes it reachable.
async fn start(
    id: u64,
    dir: &Path,
    config: &Arc<Config>,
    router: &Router,
) -> Result<(KvRaft, LogStore<TypeConfig>, StateMachine), Error> {
    let store = LogStore::<TypeConfig>::open(dir).await?;
    let sm = StateMachine::default();
    let raft = Raft::new(
        id,
        config.clone(),
        router.clone(),
        store.clone(),
        sm.clone(),
    )
    .await?;
    router.add(id, raft.clone());
    Ok((raft, store, sm))
}

/// Writes through whichever node leads, retrying while leadership moves.
async fn write(router: &Router, ids: &[u64], key: String, value: String) -> Result<u64, Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = ids
            .iter()
            .filter_map(|id| router.get(*id))
            .find_map(|r| r.metrics().borrow_watched().current_leader)
            .and_then(|l| router.get(l));
        if let Some(raft) = leader {
            let req = Request {
                key: key.clone(),
                value: value.clone(),
            };
            if let Ok(resp) = raft.client_write(req).await {
                return Ok(resp.log_id.index);
            }
        }
        if Instant::now() > deadline {
            return Err("no leader accepted the write in 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let base = tempfile::tempdir()?;
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()?,
    );
    let router = Router::default();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(
            id,
            start(
                id,
                &base.path().join(format!("node-{id}")),
                &config,
                &router,
            )
            .await?,
        );
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|i| (i, BasicNode::new(format!("node-{i}"))))
        .collect();
    nodes[&1].0.initialize(members).await?;

    let started = Instant::now();
    let n = 300;
    for i in 0..n {
        write(
            &router,
            &[1, 2, 3],
            format!("job-{i}"),
            format!("created {i}"),
        )
        .await?;
    }
    let leader = nodes[&1]
        .0
        .metrics()
        .borrow_watched()
        .current_leader
        .ok_or("no leader")?;
    println!(
        "{n} writes committed in {:?} (leader: node {leader}; {} fdatasyncs on it)",
        started.elapsed(),
        nodes[&leader].1.context().stats().syncs
    );

    // Stop the leader: unreachable, shut down, its store closed.
    let (raft, store, _) = nodes.remove(&leader).ok_or("leader")?;
    router.remove(leader);
    raft.shutdown().await?;
    store.close().await?;
    drop((raft, store));
    let others: Vec<u64> = nodes.keys().copied().collect();
    let last = {
        let mut last = 0;
        for i in n..n + 100 {
            last = write(&router, &others, format!("job-{i}"), format!("created {i}")).await?;
        }
        last
    };
    let new_leader = nodes[&others[0]]
        .0
        .metrics()
        .borrow_watched()
        .current_leader;
    println!("node {leader} stopped; new leader {new_leader:?}; 100 more writes committed");

    // Restart it from its directory: it catches up.
    let restarted = start(
        leader,
        &base.path().join(format!("node-{leader}")),
        &config,
        &router,
    )
    .await?;
    restarted
        .0
        .wait(Some(Duration::from_secs(20)))
        .applied_index(Some(last), "catch up")
        .await?;
    nodes.insert(leader, restarted);
    for (id, (raft, _, sm)) in &nodes {
        raft.wait(Some(Duration::from_secs(20)))
            .applied_index(Some(last), "applied")
            .await?;
        let kv = sm.snapshot();
        assert_eq!(kv.len(), n + 100, "node {id}");
        println!(
            "node {id}: {} keys, every acknowledged write present",
            kv.len()
        );
    }
    for (raft, store, _) in nodes.into_values() {
        raft.shutdown().await?;
        store.close().await?;
    }
    Ok(())
}
