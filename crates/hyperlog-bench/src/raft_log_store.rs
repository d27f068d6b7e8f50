//! An openraft log store on the [`raft_log`] crate (0.4), openraft's
//! author's Raft log: one checksummed record stream holds votes, appends,
//! commits, truncations and purges; unsynced payloads stay in an in-memory
//! cache, so they are readable at once; one flush thread writes every queued
//! request and batches their `fdatasync`s (up to 2,048 requests, collected
//! for up to 1 ms after the first: the crate's defaults, kept here).
//!
//! raft-log has no openraft adapter of its own (databend-meta carries one);
//! this one is written for the benchmark, for the key-value
//! [`TypeConfig`] only, and keeps raft-log's semantics:
//!
//! - `append` records every entry, then `flush(true, callback)`: the
//!   callback, which completes openraft's `IOFlushed`, runs on the flush
//!   thread after the `fdatasync` covering the entries.
//! - `save_vote` records the vote, then `flush(true)` and waits for it.
//! - `save_committed` records the committed id, then `flush(false)`: written,
//!   synced by the next syncing batch (raft-log's documented use).
//! - `truncate_after` and `purge` record the cut; the next syncing flush
//!   makes them durable, in stream order (purged chunk files are removed by
//!   the flush thread only after that).
//! - Reads go through `RaftLog::read` (the payload cache, else the chunk
//!   files).
//!
//! Entry payloads are encoded as JSON (serde), as hyperlog's store encodes
//! its entries.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use hyperlog_raft::kv::TypeConfig;
use openraft::OptionalSend;
use openraft::RaftTypeConfig;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::{Config, RaftLog};

type Payload = <TypeConfig as RaftTypeConfig>::Payload;
type Entry = <TypeConfig as RaftTypeConfig>::Entry;

/// raft-log's type parameters for the key-value type configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RlTypes;

/// An openraft log id in raft-log's encoding: term, node, index (big-endian
/// `u64`s).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RlLogId(pub LogIdOf<TypeConfig>);

impl Encode for RlLogId {
    fn encode<W: io::Write>(&self, mut w: W) -> Result<usize, io::Error> {
        let mut n = self.0.leader_id.term.encode(&mut w)?;
        n += self.0.leader_id.node_id.encode(&mut w)?;
        n += self.0.index.encode(&mut w)?;
        Ok(n)
    }
}

impl Decode for RlLogId {
    fn decode<R: io::Read>(mut r: R) -> Result<Self, io::Error> {
        let term = u64::decode(&mut r)?;
        let node_id = u64::decode(&mut r)?;
        let index = u64::decode(&mut r)?;
        Ok(RlLogId(LogIdOf::<TypeConfig> {
            leader_id: LeaderId { term, node_id },
            index,
        }))
    }
}

/// An openraft vote in raft-log's encoding: term, node, committed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd)]
pub struct RlVote(pub VoteOf<TypeConfig>);

impl Encode for RlVote {
    fn encode<W: io::Write>(&self, mut w: W) -> Result<usize, io::Error> {
        let mut n = self.0.leader_id.term.encode(&mut w)?;
        n += self.0.leader_id.node_id.encode(&mut w)?;
        n += self.0.committed.encode(&mut w)?;
        Ok(n)
    }
}

impl Decode for RlVote {
    fn decode<R: io::Read>(mut r: R) -> Result<Self, io::Error> {
        let term = u64::decode(&mut r)?;
        let node_id = u64::decode(&mut r)?;
        let committed = bool::decode(&mut r)?;
        Ok(RlVote(VoteOf::<TypeConfig> {
            leader_id: LeaderId { term, node_id },
            committed,
        }))
    }
}

/// An entry's payload, JSON inside raft-log's length-prefixed bytes.
#[derive(Debug, Clone)]
pub struct RlPayload(pub Payload);

impl Encode for RlPayload {
    fn encode<W: io::Write>(&self, w: W) -> Result<usize, io::Error> {
        let json = serde_json::to_vec(&self.0).map_err(io::Error::other)?;
        json.encode(w)
    }
}

impl Decode for RlPayload {
    fn decode<R: io::Read>(r: R) -> Result<Self, io::Error> {
        let json = Vec::<u8>::decode(r)?;
        serde_json::from_slice(&json)
            .map(RlPayload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// What raft-log's flush thread completes after a batch's write (and
/// `fdatasync`, when asked for).
pub enum Flushed {
    /// An append's openraft callback.
    Raft(IOFlushed<TypeConfig>),
    /// A caller waiting (`save_vote`).
    Waiter(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl raft_log::Callback for Flushed {
    fn send(self, res: Result<(), io::Error>) {
        match self {
            Flushed::Raft(cb) => cb.io_completed(res),
            Flushed::Waiter(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

impl raft_log::Types for RlTypes {
    type LogId = RlLogId;
    type LogPayload = RlPayload;
    type Vote = RlVote;
    type Callback = Flushed;
    type UserData = ();

    fn log_index(log_id: &RlLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &RlPayload) -> u64 {
        // An estimate, as raft-log allows: it only sizes the cache.
        match &payload.0 {
            openraft::EntryPayload::Normal(r) => (r.key.len() + r.value.len() + 16) as u64,
            _ => 64,
        }
    }
}

/// The raft-log store of one node. Clones share the log.
#[derive(Clone)]
pub struct RaftLogStore {
    log: Arc<Mutex<RaftLog<RlTypes>>>,
}

fn lock(m: &Mutex<RaftLog<RlTypes>>) -> MutexGuard<'_, RaftLog<RlTypes>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RaftLogStore {
    /// Opens (or creates) the log in `dir` with raft-log's default
    /// configuration.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = Config::new(dir.to_string_lossy());
        let log = RaftLog::<RlTypes>::open(Arc::new(config))?;
        Ok(RaftLogStore {
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// raft-log's flush counters: (`fdatasync`s, write requests handed to
    /// the flush thread, batches written).
    pub fn flush_counts(&self) -> (u64, u64, u64) {
        let m = lock(&self.log).stat().flush_metrics;
        (m.sync_batch_count, m.write_request_count, m.batch_count)
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&x) => x,
        Bound::Excluded(&x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&x) => x.saturating_add(1),
        Bound::Excluded(&x) => x,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (from, to) = bounds(&range);
        if from >= to {
            return Ok(Vec::new());
        }
        let g = lock(&self.log);
        g.read(from, to)
            .map(|r| {
                r.map(|(id, payload)| Entry {
                    log_id: id.0,
                    payload: payload.0,
                })
            })
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(lock(&self.log).log_state().vote().map(|v| v.0))
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let g = lock(&self.log);
        let s = g.log_state();
        Ok(LogState {
            last_purged_log_id: s.purged().map(|l| l.0),
            last_log_id: s.last().map(|l| l.0),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut g = lock(&self.log);
            g.save_vote(RlVote(*vote))?;
            g.flush(true, Some(Flushed::Waiter(tx)))?;
        }
        rx.await
            .map_err(|_| io::Error::other("raft-log's flush thread dropped the vote's callback"))?
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        if let Some(c) = committed {
            let mut g = lock(&self.log);
            g.commit(RlLogId(c))?;
            g.flush(false, None)?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(lock(&self.log).log_state().committed().map(|l| l.0))
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
        let mut g = lock(&self.log);
        g.append(
            entries
                .into_iter()
                .map(|e| (RlLogId(e.log_id), RlPayload(e.payload))),
        )?;
        g.flush(true, Some(Flushed::Raft(callback)))
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let mut g = lock(&self.log);
        let state = g.log_state();
        let at = match last {
            // At or beyond the end: nothing to cut.
            Some(l) if state.last().is_none_or(|e| e.0.index <= l.index) => return Ok(()),
            Some(l) => l.index + 1,
            // Everything: cut right after the purge point.
            None => state.purged().map_or(0, |p| p.0.index + 1),
        };
        g.truncate(at)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        lock(&self.log).purge(RlLogId(log_id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hyperlog_raft::kv::StateMachine;
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::type_config::TypeConfigExt;

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, RaftLogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, RaftLogStore, StateMachine), StorageError<TypeConfig>>
        {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = RaftLogStore::open(dir.path()).expect("open raft-log");
            Ok((dir, store, StateMachine::default()))
        }
    }

    /// openraft's conformance suite (45 cases) against the adapter.
    #[test]
    fn openraft_conformance_suite() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(300),
                Suite::test_all(Builder),
            )
            .await
            .expect("the suite did not finish in 300 s")
            .unwrap();
        });
    }

    /// What was appended, voted and committed is there after a reopen.
    #[test]
    fn reopen_keeps_the_log() {
        use openraft::testing::log_id;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let mut s = RaftLogStore::open(dir.path()).unwrap();
            let vote = VoteOf::<TypeConfig> {
                leader_id: LeaderId {
                    term: 2,
                    node_id: 1,
                },
                committed: true,
            };
            s.save_vote(&vote).await.unwrap();
            let entries: Vec<Entry> = (1..=3)
                .map(|i| Entry {
                    log_id: log_id::<TypeConfig>(2, 1, i),
                    payload: openraft::EntryPayload::Blank,
                })
                .collect();
            let (tx, rx) = TypeConfig::oneshot();
            s.append(entries, IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
            s.save_committed(Some(log_id::<TypeConfig>(2, 1, 2)))
                .await
                .unwrap();
            s.truncate_after(Some(log_id::<TypeConfig>(2, 1, 2)))
                .await
                .unwrap();
            s.save_vote(&vote).await.unwrap();
            drop(s);
            let mut s = RaftLogStore::open(dir.path()).unwrap();
            assert_eq!(s.read_vote().await.unwrap(), Some(vote));
            assert_eq!(
                s.get_log_state().await.unwrap().last_log_id,
                Some(log_id::<TypeConfig>(2, 1, 2))
            );
            assert_eq!(s.try_get_log_entries(0..10).await.unwrap().len(), 2);
            assert_eq!(
                s.read_committed().await.unwrap(),
                Some(log_id::<TypeConfig>(2, 1, 2))
            );
        });
    }
}
