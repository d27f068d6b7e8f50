//! A small key-value type configuration, state machine and in-process
//! router for openraft: what the tests, the example, the demo and the
//! benchmark run a cluster of [`LogStore`](crate::LogStore)s with. An
//! application brings its own; this one is kept small on purpose.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use hyperlog::fs::{FileSystem, StdFs};
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
    /// Where snapshots are kept (`None`: in memory only).
    file: Option<Arc<SnapshotFile>>,
}

/// A key-value state machine. Clones share the same state.
///
/// [`StateMachine::default`] keeps everything in memory: after a restart
/// openraft re-applies the log, which works only as long as the log was never
/// purged (set `snapshot_policy: SnapshotPolicy::Never`, or purge nothing).
/// [`StateMachine::open`] keeps its snapshots in a file, durably: openraft
/// purges the log behind each snapshot, and a restarted node starts from its
/// last snapshot and re-applies only the log after it.
#[derive(Clone, Default)]
pub struct StateMachine(Arc<Mutex<SmInner>>);

impl StateMachine {
    /// A state machine whose snapshots are kept in `dir` (created if
    /// missing), starting from the last snapshot there, if any.
    ///
    /// Errors: the directory cannot be created or read, or the snapshot
    /// file is damaged ([`io::ErrorKind::InvalidData`], naming the path and
    /// the byte offset): a damaged snapshot is never replaced by an empty
    /// state machine, since the log behind it may be purged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use hyperlog_raft::kv::StateMachine;
    /// use openraft::storage::RaftStateMachine;
    /// let dir = tempfile::tempdir()?;
    /// let mut sm = StateMachine::open(dir.path().join("sm"))?;
    /// // A fresh state machine: nothing applied yet.
    /// assert_eq!(sm.applied_state().await?.0, None);
    /// # Ok(()) }
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> io::Result<StateMachine> {
        StateMachine::open_on(StdFs::shared(), dir)
    }

    /// [`open`](Self::open) on the file system `fs` (for fault injection and
    /// simulated power loss).
    pub fn open_on(fs: Arc<dyn FileSystem>, dir: impl AsRef<Path>) -> io::Result<StateMachine> {
        let dir = dir.as_ref();
        fs.create_dir_all(dir).map_err(|e| {
            io::Error::new(e.kind(), format!("create directory {}: {e}", dir.display()))
        })?;
        let file = SnapshotFile {
            fs,
            path: dir.join("snapshot.bin"),
            tmp: dir.join("snapshot.bin.tmp"),
            dir: dir.to_path_buf(),
            on_file: Mutex::new(None),
        };
        let mut inner = SmInner::default();
        if let Some((meta, data)) = file.load()? {
            *file.on_file.lock().unwrap_or_else(|p| p.into_inner()) = meta.last_log_id;
            inner.last_applied = meta.last_log_id;
            inner.last_membership = meta.last_membership.clone();
            inner.kv = data.clone();
            inner.current = Some((meta, data));
        }
        inner.file = Some(Arc::new(file));
        Ok(StateMachine(Arc::new(Mutex::new(inner))))
    }

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
        let (meta, data, file) = {
            let g = self.lock();
            let meta = SnapshotMetaOf::<TypeConfig> {
                last_log_id: g.last_applied,
                last_membership: g.last_membership.clone(),
            };
            (meta, g.kv.clone(), g.file.clone())
        };
        // Durable before openraft learns of it (and purges the log behind it).
        if let Some(f) = file {
            f.store_async(meta.clone(), data.clone()).await?;
        }
        let mut g = self.lock();
        let newer = match (&g.current, meta.last_log_id) {
            (Some((m, _)), Some(l)) => m.last_log_id.is_none_or(|c| c < l),
            (None, _) => true,
            (Some(_), None) => false,
        };
        if newer {
            g.current = Some((meta.clone(), data.clone()));
        }
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
        // Durable before the state machine moves to it.
        let file = self.lock().file.clone();
        if let Some(f) = file {
            f.store_async(meta.clone(), snapshot.clone()).await?;
        }
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

/// The snapshot file of a durable [`StateMachine`]: replaced whole (written
/// to a temporary name and synced, renamed, the directory synced), so a crash
/// leaves the old snapshot or the new one. Layout: the magic
/// [`SNAPSHOT_MAGIC`], the payload's length and CRC-32 (u32, little endian),
/// then the payload, `(meta, data)` as JSON.
struct SnapshotFile {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    /// The last log id of the snapshot on file; held while one is stored,
    /// so that stores run one at a time and never replace a snapshot with
    /// an older one (a snapshot built while a newer one was installed).
    on_file: Mutex<Option<LogIdOf<TypeConfig>>>,
}

/// The first bytes of a kv snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"HLKVSNP1";

type Stored = (SnapshotMetaOf<TypeConfig>, SnapshotData);

impl SnapshotFile {
    fn damaged(&self, offset: usize, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: damaged snapshot at byte {offset}: {what}",
                self.path.display()
            ),
        )
    }

    fn load(&self) -> io::Result<Option<Stored>> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.path.display()));
        let file = match self.fs.open_read(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx(e)),
        };
        let len = file.len().map_err(ctx)?;
        let bytes = file.read_range(0, len as usize).map_err(ctx)?;
        if bytes.len() < 16 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(self.damaged(0, "not a kv snapshot file (bad magic or too short)"));
        }
        let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let payload = &bytes[16..];
        if payload.len() != n {
            return Err(self.damaged(
                8,
                &format!("length field says {n} bytes, {} follow", payload.len()),
            ));
        }
        if crc32fast::hash(payload) != crc {
            return Err(self.damaged(16, "checksum mismatch"));
        }
        serde_json::from_slice(payload)
            .map(Some)
            .map_err(|e| self.damaged(16, &e.to_string()))
    }

    fn store(&self, stored: &Stored) -> io::Result<()> {
        let mut on_file = self.on_file.lock().unwrap_or_else(|p| p.into_inner());
        if on_file.is_some() && stored.0.last_log_id <= *on_file {
            return Ok(());
        }
        let payload = serde_json::to_vec(stored)?;
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "snapshot over 4 GiB"))?;
        let mut bytes = Vec::with_capacity(16 + payload.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let ctx = |what: &str, p: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
        };
        // A leftover of a crash mid-store is only a temporary file.
        match self.fs.remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx("remove", &self.tmp, e)),
        }
        self.fs
            .write_new(&self.tmp, &bytes, 0o644)
            .map_err(|e| ctx("write", &self.tmp, e))?;
        self.fs
            .rename(&self.tmp, &self.path)
            .map_err(|e| ctx("rename", &self.tmp, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| ctx("sync directory", &self.dir, e))?;
        *on_file = stored.0.last_log_id;
        Ok(())
    }

    /// [`store`](Self::store) off the async runtime's workers.
    async fn store_async(
        self: Arc<Self>,
        meta: SnapshotMetaOf<TypeConfig>,
        data: SnapshotData,
    ) -> io::Result<()> {
        tokio::task::spawn_blocking(move || self.store(&(meta, data)))
            .await
            .map_err(io::Error::other)?
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
