//! A small TCP transport for the [`kv`](crate::kv) cluster: what a
//! cluster of separate processes (a test, an example, a demo) runs on.
//!
//! Every message is a frame: a 4-byte big-endian length, then that many
//! bytes of JSON. A connection carries one request at a time and its reply.
//! One port per node serves both families of [`Message`]:
//!
//! - **Raft RPCs** ([`RaftRequest`]: `append_entries`, `vote`, `pre_vote`,
//!   `full_snapshot`) between the nodes. [`Network`] is the
//!   `RaftNetworkFactory` that sends them; it dials the address in each
//!   member's [`BasicNode`].
//! - **Client requests** ([`ClientRequest`]): writes, reads of the local
//!   state machine, status, initialization. A write sent to a node that is
//!   not the leader is answered [`ClientResponse::ForwardToLeader`] with the
//!   leader's address (the same port), so a client can follow it.
//!
//! [`serve`] runs a node's side of both. Plain and unauthenticated: for
//! tests and demonstrations on a trusted network, not for production.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{
    ClientWriteError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend, ServerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::kv::{KvRaft, Request, Response, SnapshotData, StateMachine, TypeConfig};

/// The largest frame accepted (a full snapshot travels in one frame).
pub const MAX_FRAME: usize = 256 << 20;

/// How long a node waits for a client write to commit before answering
/// [`ClientResponse::Error`] (the write's outcome is then unknown).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Encodes `msg` as one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; 4];
    serde_json::to_writer(&mut buf, msg).map_err(io::Error::other)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Writes `msg` as one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    w.write_all(&encode(msg)?).await?;
    w.flush().await
}

/// Reads one frame and decodes it. A connection closed before the frame's
/// first byte is an [`io::ErrorKind::UnexpectedEof`] error.
pub async fn read_frame<R, T>(r: &mut R) -> io::Result<T>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What a connection to a node carries.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// A Raft RPC from another node; answered with a [`RaftResponse`].
    Raft(RaftRequest),
    /// A client's request; answered with a [`ClientResponse`].
    Client(ClientRequest),
}

/// A Raft RPC, as [`Network`] sends it.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// `Raft::append_entries`.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// `Raft::vote`.
    Vote(VoteRequest<TypeConfig>),
    /// `Raft::pre_vote`.
    PreVote(VoteRequest<TypeConfig>),
    /// `Raft::install_full_snapshot`, the snapshot whole.
    FullSnapshot {
        /// The leader's vote.
        vote: VoteOf<TypeConfig>,
        /// The snapshot's metadata.
        meta: SnapshotMetaOf<TypeConfig>,
        /// The snapshot's data.
        data: SnapshotData,
    },
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// To [`RaftRequest::AppendEntries`].
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    /// To [`RaftRequest::Vote`] and [`RaftRequest::PreVote`].
    Vote(VoteResponse<TypeConfig>),
    /// To [`RaftRequest::FullSnapshot`].
    Snapshot(SnapshotResponse<TypeConfig>),
    /// The node could not handle it (it is shutting down).
    Error(String),
}

/// A client's request to a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Replicate a write (only the leader accepts it).
    Write(Request),
    /// The value of a key in this node's state machine (not linearizable).
    Get(String),
    /// Every key and value of this node's state machine, with its status.
    Dump,
    /// This node's status.
    Status,
    /// `Raft::initialize` with these members.
    Initialize(BTreeMap<u64, BasicNode>),
}

/// A node's answer to a [`ClientRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The write is committed and applied, at this log index.
    Written {
        /// Its log index.
        index: u64,
        /// The state machine's answer.
        response: Response,
    },
    /// This node did not accept the write (it was not appended): send it
    /// to the leader, at `leader_addr` when known.
    ForwardToLeader {
        /// The leader's id, when known.
        leader_id: Option<u64>,
        /// The leader's address, when known.
        leader_addr: Option<String>,
    },
    /// The value asked for.
    Value(Option<String>),
    /// The state machine's content; `status.last_applied` is at most the
    /// index the content reflects.
    Dump {
        /// The node's status, taken before the content.
        status: Status,
        /// Every key and value.
        data: SnapshotData,
    },
    /// The node's status.
    Status(Status),
    /// `initialize` succeeded.
    Initialized,
    /// Anything else; for a write, its outcome is unknown.
    Error(String),
}

/// What a node reports about itself (from its Raft metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// Leader, follower, candidate...
    pub state: ServerState,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub current_leader: Option<u64>,
    /// The index of its last log entry.
    pub last_log_index: Option<u64>,
    /// The last index it knows to be committed (its local view).
    pub committed: Option<u64>,
    /// The last index applied to its state machine.
    pub last_applied: Option<u64>,
}

impl Status {
    /// The status of `raft`, from its metrics.
    pub fn of(raft: &KvRaft) -> Status {
        let rx = raft.metrics();
        let m = rx.borrow_watched();
        Status {
            id: m.id,
            state: m.state,
            term: m.current_term,
            current_leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed: m.local_committed.map(|l| l.index),
            last_applied: m.last_applied.map(|l| l.index),
        }
    }
}

/// The `RaftNetworkFactory` of the TCP transport: a connection per target,
/// to the address in its [`BasicNode`].
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            stream: None,
        }
    }
}

/// A connection of [`Network`] to one node, dialled on first use and again
/// after any error. Every failure (refused, reset, timed out) is reported
/// as `Unreachable`, so openraft backs off before retrying.
pub struct Connection {
    target: u64,
    addr: String,
    stream: Option<TcpStream>,
}

impl Connection {
    async fn call(&mut self, req: RaftRequest, ttl: Duration) -> Result<RaftResponse, String> {
        let frame = encode(&Message::Raft(req)).map_err(|e| e.to_string())?;
        // A cached connection may have died with its peer (a restarted
        // node): a Raft RPC is safe to send again, once, on a fresh one.
        let attempts = if self.stream.is_some() { 2 } else { 1 };
        let mut last = String::new();
        for _ in 0..attempts {
            match tokio::time::timeout(ttl, self.exchange(&frame)).await {
                Ok(Ok(RaftResponse::Error(e))) => return Err(e),
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => {
                    self.stream = None;
                    return Err(format!("no answer in {ttl:?}"));
                }
            }
            self.stream = None;
        }
        Err(last)
    }

    async fn exchange(&mut self, frame: &[u8]) -> io::Result<RaftResponse> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected above");
        s.write_all(frame).await?;
        read_frame(s).await
    }

    fn unreachable(&self, e: String) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!("node {} at {}: {e}", self.target, self.addr))
    }

    fn unexpected(&self, resp: RaftResponse) -> Unreachable<TypeConfig> {
        self.unreachable(format!("unexpected answer {resp:?}"))
    }

    /// A vote or a pre-vote: both are answered with a `VoteResponse`.
    async fn ballot(
        &mut self,
        req: RaftRequest,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(req, option.soft_ttl()).await {
            Ok(RaftResponse::Vote(r)) => Ok(r),
            Ok(other) => Err(self.unexpected(other).into()),
            Err(e) => Err(self.unreachable(e).into()),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::AppendEntries(rpc), option.soft_ttl())
            .await
        {
            Ok(RaftResponse::AppendEntries(r)) => Ok(r),
            Ok(other) => Err(self.unexpected(other).into()),
            Err(e) => Err(self.unreachable(e).into()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(RaftRequest::Vote(rpc), option).await
    }

    // The trait's default grants every pre-vote without asking: ask.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(RaftRequest::PreVote(rpc), option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = RaftRequest::FullSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        // A snapshot may be large: the hard limit, not the soft one.
        let res = tokio::select! {
            closed = cancel => return Err(closed.into()),
            res = self.call(req, option.hard_ttl()) => res,
        };
        match res {
            Ok(RaftResponse::Snapshot(r)) => Ok(r),
            Ok(other) => Err(self.unexpected(other).into()),
            Err(e) => Err(self.unreachable(e).into()),
        }
    }
}

/// Binds `addr`, retrying for up to 5 s: a restarted node's port may still
/// be held by its predecessor's closing sockets.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs node `id` of a process cluster: binds `addr`, opens its
/// [`LogStore`](crate::LogStore) in `dir` and its durable
/// [`StateMachine`] in `dir/sm` (snapshots survive a restart, so openraft may
/// purge the log behind them), starts openraft over
/// [`Network`], calls `on_ready` with the index of the last log entry it
/// reopened (`None` for an empty log), then [`serve`]s until accepting
/// fails. The cluster is initialized later through
/// [`ClientRequest::Initialize`].
pub async fn run_node(
    id: u64,
    dir: &std::path::Path,
    addr: &str,
    config: std::sync::Arc<openraft::Config>,
    on_ready: impl FnOnce(Option<u64>),
) -> io::Result<()> {
    use openraft::storage::RaftLogStorage;
    let listener = bind(addr).await?;
    let mut store = crate::LogStore::<TypeConfig>::open(dir).await?;
    let last = store.get_log_state().await?.last_log_id.map(|l| l.index);
    let sm = StateMachine::open(dir.join("sm"))?;
    let raft = openraft::Raft::new(id, config, Network, store, sm.clone())
        .await
        .map_err(io::Error::other)?;
    on_ready(last);
    serve(listener, raft, sm).await
}

/// Serves node `raft` (with its state machine `sm`) on `listener`: the Raft
/// RPCs of the other nodes and the requests of clients, a task per
/// connection. Returns only when accepting fails.
pub async fn serve(listener: TcpListener, raft: KvRaft, sm: StateMachine) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (raft, sm) = (raft.clone(), sm.clone());
        tokio::spawn(async move {
            // A peer that goes away ends its connection; nothing to report.
            let _ = serve_connection(stream, raft, sm).await;
        });
    }
}

async fn serve_connection(mut stream: TcpStream, raft: KvRaft, sm: StateMachine) -> io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let msg: Message = match read_frame(&mut stream).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match msg {
            Message::Raft(req) => {
                let resp = handle_raft(&raft, req).await;
                write_frame(&mut stream, &resp).await?;
            }
            Message::Client(req) => {
                let resp = handle_client(&raft, &sm, req).await;
                write_frame(&mut stream, &resp).await?;
            }
        }
    }
}

async fn handle_raft(raft: &KvRaft, req: RaftRequest) -> RaftResponse {
    fn or_error<T>(r: Result<T, impl std::fmt::Display>, f: fn(T) -> RaftResponse) -> RaftResponse {
        match r {
            Ok(x) => f(x),
            Err(e) => RaftResponse::Error(e.to_string()),
        }
    }
    match req {
        RaftRequest::AppendEntries(rpc) => {
            or_error(raft.append_entries(rpc).await, RaftResponse::AppendEntries)
        }
        RaftRequest::Vote(rpc) => or_error(raft.vote(rpc).await, RaftResponse::Vote),
        RaftRequest::PreVote(rpc) => or_error(raft.pre_vote(rpc).await, RaftResponse::Vote),
        RaftRequest::FullSnapshot { vote, meta, data } => {
            let snapshot = SnapshotOf::<TypeConfig, SnapshotData> {
                meta,
                snapshot: data,
            };
            or_error(
                raft.install_full_snapshot(vote, snapshot).await,
                RaftResponse::Snapshot,
            )
        }
    }
}

async fn handle_client(raft: &KvRaft, sm: &StateMachine, req: ClientRequest) -> ClientResponse {
    match req {
        ClientRequest::Write(req) => {
            match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(req)).await {
                Ok(Ok(resp)) => ClientResponse::Written {
                    index: resp.log_id.index,
                    response: resp.data,
                },
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    ClientResponse::ForwardToLeader {
                        leader_id: f.leader_id,
                        leader_addr: f.leader_node.map(|n| n.addr),
                    }
                }
                // Among them LogEntryDiscarded: appended, then cut by a
                // new leader; it may still have committed elsewhere.
                Ok(Err(e)) => ClientResponse::Error(format!("outcome unknown: {e}")),
                Err(_) => ClientResponse::Error(format!(
                    "outcome unknown: not committed in {WRITE_TIMEOUT:?}"
                )),
            }
        }
        ClientRequest::Get(key) => ClientResponse::Value(sm.get(&key)),
        ClientRequest::Dump => {
            // The status first: the content then reflects at least
            // `last_applied` (the state machine applies before the metrics
            // report it).
            let status = Status::of(raft);
            ClientResponse::Dump {
                status,
                data: sm.snapshot(),
            }
        }
        ClientRequest::Status => ClientResponse::Status(Status::of(raft)),
        ClientRequest::Initialize(members) => match raft.initialize(members).await {
            Ok(()) => ClientResponse::Initialized,
            Err(e) => ClientResponse::Error(e.to_string()),
        },
    }
}

/// A client's connection to one node, dialled on first use and again after
/// an error.
pub struct Client {
    addr: String,
    stream: Option<TcpStream>,
}

impl Client {
    /// A client of the node at `addr` (not connected yet).
    pub fn new(addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            stream: None,
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` and waits for the answer, for at most `timeout`. On an
    /// error the connection is dropped (the next call dials again); for a
    /// write, the outcome is then unknown.
    pub async fn call(
        &mut self,
        req: &ClientRequest,
        timeout: Duration,
    ) -> io::Result<ClientResponse> {
        let frame = encode(&Message::Client(req.clone()))?;
        let res = match tokio::time::timeout(timeout, self.exchange(&frame)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{}: no answer in {timeout:?}", self.addr),
            )),
        };
        if res.is_err() {
            self.stream = None;
        }
        res
    }

    async fn exchange(&mut self, frame: &[u8]) -> io::Result<ClientResponse> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected above");
        s.write_all(frame).await?;
        read_frame(s).await
    }
}
