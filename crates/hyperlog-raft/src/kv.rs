//! A small key-value type configuration, state machine and in-process
//! router for openraft: what the tests, the example, the demo and the
//! benchmark run a cluster of [`LogStore`](crate::LogStore)s with. An
//! application brings its own; this one is kept small on purpose.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{
    LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};
use openraft::{BasicNode, EntryPayload, OptionalSend, Raft, StoredMembership};
use serde::{Deserialize, Serialize};

/// A client command: set `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The key.
    pub key: String,
    /// The new value.
    pub value: String,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "set {}={}", self.key, self.value)
    }
}

/// The answer to a [`Request`]: the key's previous value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The value the key had before, if any.
    pub prev: Option<String>,
}

openraft::declare_raft_types!(
    /// The key-value type configuration: `u64` node ids, `BasicNode`,
    /// openraft's default entry, vote and tokio runtime.
    pub TypeConfig:
        D = Request,
        R = Response,
);

/// A snapshot's data: every key and value.
pub type SnapshotData = BTreeMap<String, String>;

#[derive(Default)]
struct SmInner {
    last_applied: Option<LogIdOf<TypeConfig>>,
    last_membership: StoredMembershipOf<TypeConfig>,
    kv: SnapshotData,
    current: Option<(SnapshotMetaOf<TypeConfig>, SnapshotData)>,
}

/// An in-memory key-value state machine (openraft rebuilds it from the log
/// after a restart). Clones share the same state.
#[derive(Clone, Default)]
pub struct StateMachine(Arc<Mutex<SmInner>>);

impl StateMachine {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().kv.get(key).cloned()
    }

    /// Every key and value.
    pub fn snapshot(&self) -> SnapshotData {
        self.lock().kv.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotData>, io::Error> {
        let mut g = self.lock();
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: g.last_applied,
            last_membership: g.last_membership.clone(),
        };
        let data = g.kv.clone();
        g.current = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<TypeConfig, SnapshotData> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let g = self.lock();
        Ok((g.last_applied, g.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            // The guard is dropped before the next await.
            let resp = {
                let mut g = self.lock();
                g.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(req) => Response {
                        prev: g.kv.insert(req.key, req.value),
                    },
                    EntryPayload::Membership(m) => {
                        g.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::default()
                    }
                }
            };
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut g = self.lock();
        g.last_applied = meta.last_log_id;
        g.last_membership = meta.last_membership.clone();
        g.kv = snapshot.clone();
        g.current = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotData>>, io::Error> {
        let g = self.lock();
        Ok(g.current
            .clone()
            .map(|(meta, snapshot)| SnapshotOf::<TypeConfig, SnapshotData> { meta, snapshot }))
    }
}

/// A node of the key-value cluster.
pub type KvRaft = Raft<TypeConfig, StateMachine>;

/// An in-process network: calls the target node's `Raft` handle directly.
/// A node removed from the router can no longer be reached, which is a
/// crashed node once it is also shut down; a removed node that keeps running
/// can still send to the others (to partition it, also stop what it sends,
/// as `tests/cluster.rs` does).
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, KvRaft>>>,
}

impl Router {
    /// Makes node `id` reachable.
    pub fn add(&self, id: u64, raft: KvRaft) {
        self.lock().insert(id, raft);
    }

    /// Makes node `id` unreachable; returns its handle.
    pub fn remove(&self, id: u64) -> Option<KvRaft> {
        self.lock().remove(&id)
    }

    /// Node `id`'s handle, if reachable.
    pub fn get(&self, id: u64) -> Option<KvRaft> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, KvRaft>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        Connection {
            router: self.clone(),
            target,
        }
    }
}

/// A connection of the [`Router`] to one node.
pub struct Connection {
    router: Router,
    target: u64,
}

impl Connection {
    fn target(&self) -> Result<KvRaft, Unreachable<TypeConfig>> {
        self.router
            .get(self.target)
            .ok_or_else(|| Unreachable::from_string(format!("node {} is unreachable", self.target)))
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.target()?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.target()?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.target()?;
        raft.pre_vote(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self.target()?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}
