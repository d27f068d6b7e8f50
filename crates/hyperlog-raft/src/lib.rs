//! hyperlog as the durable log store of [openraft](https://docs.rs/openraft),
//! the Rust Raft engine: [`LogStore`] implements openraft's
//! `RaftLogStorage` and `RaftLogReader` for any `C: RaftTypeConfig`.
//!
//! hyperlog does not do consensus: openraft does. This crate gives it a log
//! that survives power loss, with group commit across appends:
//!
//! - **The log** is a hyperlog context in `FsyncBatch` mode with
//!   caller-chosen LSNs (the Raft index is the LSN) and compact records
//!   (`raft.wal` and its sealed segments in the node's directory). `append`
//!   queues the entries and returns at once; openraft's `IOFlushed` callback
//!   is completed from the writer's thread after the `fdatasync` that covers
//!   them, so every append submitted while a sync runs shares the next one.
//! - **Reads** are served from memory: every entry appended and not purged
//!   is kept in an in-memory map shared by the store and its readers, so an
//!   entry is readable the moment `append` returns, as openraft requires. On
//!   open the map is rebuilt from the files.
//! - **The vote, the purge point and the committed id** are small
//!   [`hyperlog::DurableState`] files (written to a temporary name, synced,
//!   renamed, the directory synced), read back on open; a damaged one is an
//!   error, never a default. `save_vote` first waits for every earlier
//!   append to be durable (a vote never overtakes an append), then stores
//!   the vote durably, and only then returns. The committed id, which
//!   openraft saves on every commit, is written at most every 100 ms and
//!   only once the log is durable up to it (and by `close`): after a crash
//!   it may lag, never lead.
//! - **`truncate_after`** is hyperlog's durable suffix cut, ordered behind
//!   every queued append: the files are cut and synced before it returns.
//! - **`purge`** stores the purge point durably first, then drops the
//!   entries from memory, then deletes the sealed segments wholly below it.
//!   Entries at or below the purge point that are still in the live file are
//!   skipped on open, so a purge is never undone by a restart.
//! - **One directory per node**, locked: a second store on the same
//!   directory fails to open (hyperlog's writer lock on `raft.wal`).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use hyperlog_raft::{LogStore, kv};
//! let store = LogStore::<kv::TypeConfig>::open("data/node-1").await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! The durability of a replicated write: openraft acknowledges a client
//! write once a quorum of nodes has it in their logs; with this store each
//! of those nodes completed an `fdatasync` covering it first, so an
//! acknowledged write survives the power loss of any minority of nodes.

#![deny(missing_docs)]

pub mod kv;
pub mod tcp;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hyperlog::{
    Context, ContextOptions, DurabilityMode, DurableState, LogFormat, LogLevel, Logger, Lsn,
    ReadOptions,
};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The name of the log file in a node's directory.
pub const LOG_FILE: &str = "raft.wal";

/// An entry as hyperlog stores it: the openraft entry itself (its JSON),
/// under the compact record's `"entry"`.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Stored<E>(E);

impl<E: Serialize + Send + 'static> hyperlog::Entry for Stored<E> {
    fn level(&self) -> LogLevel {
        LogLevel::Info
    }
}

/// What the store and its readers share.
struct Inner<C: RaftTypeConfig> {
    /// Every entry appended and not purged, by index.
    log: BTreeMap<u64, C::Entry>,
    purged: Option<LogIdOf<C>>,
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
}

/// The durable log store of one openraft node, in one directory (see the
/// crate docs). Cheap to clone: clones share the same log.
pub struct LogStore<C: RaftTypeConfig> {
    inner: Arc<Mutex<Inner<C>>>,
    /// The writer of `raft.wal`; `None` only after `close`.
    log: Arc<Context>,
    states: Arc<Mutex<States>>,
    dir: PathBuf,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            inner: self.inner.clone(),
            log: self.log.clone(),
            states: self.states.clone(),
            dir: self.dir.clone(),
        }
    }
}

/// The small durable files beside the log.
struct States {
    vote: DurableState,
    purged: DurableState,
    committed: DurableState,
    /// When `committed` was last written.
    committed_written: std::time::Instant,
}

/// How often at most the committed id is written (see `save_committed`).
const COMMITTED_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A reader of a [`LogStore`]: shares its in-memory log, so it sees every
/// entry appended, also after it was made.
pub struct LogReader<C: RaftTypeConfig> {
    inner: Arc<Mutex<Inner<C>>>,
}

impl<C: RaftTypeConfig> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            inner: self.inner.clone(),
        }
    }
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a [`LogStore`] is set up ([`LogStore::open_with`]).
///
/// By default the log syncs on its writer's thread, unless
/// [`hyperlog::SYNC_THREAD_ENV`] says otherwise.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// `None`: hyperlog's default.
    sync_thread: Option<bool>,
}

impl StoreOptions {
    /// Whether the log syncs on a thread of its own, pipelined with the
    /// writes of the next appends (hyperlog's
    /// [`ContextOptions::sync_thread`]); the durability promise is the same
    /// either way. In the 3-node cluster benchmark of BENCHMARKS.md the
    /// writer syncing (the default) committed 1.27x the writes of the sync
    /// thread at 64 clients.
    #[must_use]
    pub fn sync_thread(mut self, on: bool) -> Self {
        self.sync_thread = Some(on);
        self
    }
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Clone,
{
    /// Opens (or creates) the store in `dir`: the log, the vote, the purge
    /// point and the committed id, as the last run left them. Fails when
    /// another store has the directory open, when a state file is damaged,
    /// or when the log's entries are not a gapless run above the purge
    /// point (each error names the file).
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, io::Error> {
        Self::open_on(hyperlog::fs::StdFs::shared(), dir).await
    }

    /// [`LogStore::open`] through another file system (every file operation
    /// of the store goes through it): tests put hyperlog's `SimFs` here to
    /// simulate power loss, or a fault-injecting wrapper.
    pub async fn open_on(
        fs: Arc<dyn hyperlog::fs::FileSystem>,
        dir: impl AsRef<Path>,
    ) -> Result<Self, io::Error> {
        Self::open_with(fs, dir, StoreOptions::default()).await
    }

    /// [`LogStore::open_on`] with `options`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use hyperlog_raft::{kv::TypeConfig, LogStore, StoreOptions};
    /// let dir = tempfile::tempdir()?;
    /// let options = StoreOptions::default().sync_thread(false);
    /// let store = LogStore::<TypeConfig>::open_with(hyperlog::fs::StdFs::shared(), dir.path(), options).await?;
    /// store.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_with(
        fs: Arc<dyn hyperlog::fs::FileSystem>,
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<Self, io::Error> {
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)?;
        let state = |name: &str| DurableState::open(fs.clone(), dir.join(name)).map_err(io_err);
        let states = States {
            vote: state("vote.state")?,
            purged: state("purged.state")?,
            committed: state("committed.state")?,
            committed_written: std::time::Instant::now(),
        };
        let vote: Option<VoteOf<C>> = states.vote.load().map_err(io_err)?;
        let purged: Option<LogIdOf<C>> = states.purged.load().map_err(io_err)?;
        // `save_committed` stores an `Option<LogId>`: `None` is the JSON
        // `null`, which must read back as `None`, not fail to decode.
        let committed: Option<LogIdOf<C>> = states
            .committed
            .load::<Option<LogIdOf<C>>>()
            .map_err(io_err)?
            .flatten();

        let path = dir.join(LOG_FILE);
        let logger = Logger::new();
        let mut opts = ContextOptions::new();
        if let Some(on) = options.sync_thread {
            opts = opts.sync_thread(on);
        }
        let log = logger
            .context_with(
                &path.to_string_lossy(),
                opts.path(&path)
                    .file_system(fs.clone())
                    .durability(DurabilityMode::FsyncBatch)
                    .format(LogFormat::Binary)
                    .caller_lsns(true)
                    .compact(true)
                    .retention_policy(hyperlog::RetentionPolicy::new().max_size(64 << 20)),
            )
            .await
            .map_err(io_err)?;
        let entries = load_entries::<C>(&fs, &path, purged.as_ref().map(|p| p.index))?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                log: entries,
                purged,
                vote,
                committed,
            })),
            log: Arc::new(log),
            states: Arc::new(Mutex::new(states)),
            dir,
        })
    }

    /// A reader of this store's log (what `get_log_reader` gives openraft).
    pub fn reader(&self) -> LogReader<C> {
        LogReader {
            inner: self.inner.clone(),
        }
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hyperlog context the log is written through (for its counters:
    /// `stats().syncs`, `durable_lsn()`).
    pub fn context(&self) -> &Context {
        &self.log
    }

    /// Makes everything appended durable and releases the directory (its
    /// lock), so that it can be opened again. Dropping every clone of the
    /// store does the same, without reporting errors.
    pub async fn close(&self) -> Result<(), io::Error> {
        self.log.close().await.map_err(io_err)?;
        // Everything appended is durable now: the last committed id too.
        let committed = lock(&self.inner).committed.clone();
        let mut states = lock(&self.states);
        if states
            .committed
            .load::<Option<LogIdOf<C>>>()
            .map_err(io_err)?
            .flatten()
            != committed
        {
            states.committed.store(&committed).map_err(io_err)?;
        }
        Ok(())
    }
}

/// Reads the log's entries above the purge point, checking they form a
/// gapless run.
fn load_entries<C: RaftTypeConfig>(
    fs: &Arc<dyn hyperlog::fs::FileSystem>,
    path: &Path,
    purged: Option<u64>,
) -> Result<BTreeMap<u64, C::Entry>, io::Error> {
    let mut log = BTreeMap::new();
    let options = ReadOptions::default().file_system(fs.clone());
    let options = match purged {
        Some(p) => options.from_lsn(Lsn::new(p.saturating_add(1))),
        None => options,
    };
    // The entries only: the envelope's call-site fields are skipped.
    for item in hyperlog::replay_blocking::<Stored<C::Entry>>(path, 0, options) {
        let (offset, stored, lsn) = match item {
            Ok(x) => x,
            // A log never written yet.
            Err(hyperlog::Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && log.is_empty() =>
            {
                break;
            }
            Err(e) => return Err(io_err(e)),
        };
        let entry = stored.0;
        let index = entry.index();
        if lsn.map(|l| l.get()) != Some(index) {
            return Err(io::Error::other(format!(
                "{}: the entry at offset {offset} has index {index} but LSN {lsn:?}",
                path.display()
            )));
        }
        if let Some((&last, _)) = log.last_key_value()
            && index != last + 1
        {
            return Err(io::Error::other(format!(
                "{}: entry {index} follows entry {last}: a hole in the log",
                path.display()
            )));
        }
        log.insert(index, entry);
    }
    Ok(log)
}

fn entries_in<C: RaftTypeConfig, RB: RangeBounds<u64>>(
    inner: &Mutex<Inner<C>>,
    range: RB,
) -> Vec<C::Entry>
where
    C::Entry: Clone,
{
    lock(inner)
        .log
        .range(range)
        .map(|(_, e)| e.clone())
        .collect()
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogReader<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        Ok(entries_in(&self.inner, range))
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(lock(&self.inner).vote.clone())
    }
}

/// The store reads as its readers do (tests and tools read through it).
impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        self.reader().try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.reader().read_vote().await
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let g = lock(&self.inner);
        let last = g
            .log
            .values()
            .next_back()
            .map(|e| e.log_id())
            .or_else(|| g.purged.clone());
        Ok(LogState {
            last_purged_log_id: g.purged.clone(),
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        // Never ahead of an earlier append: those are durable first.
        self.log.flush().await.map_err(io_err)?;
        lock(&self.states).vote.store(vote).map_err(io_err)?;
        lock(&self.inner).vote = Some(vote.clone());
        Ok(())
    }

    /// Records the committed id in memory at once, and in `committed.state`
    /// at most every 100 ms, and only when the log is durable up to it
    /// (never ahead of the entries it names: openraft may commit entries
    /// this node submitted but has not flushed, and a committed id beyond
    /// the durable log would stop the node's restart); `close` writes the
    /// last one. So openraft's core, which awaits this on every commit,
    /// does not wait for three syncs each time (they cost more than the
    /// replication itself). After a crash the id read back may lag behind
    /// the last one saved, which openraft allows: it is re-learned from the
    /// leader; after a clean `close` it is the last one.
    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        lock(&self.inner).committed = committed.clone();
        let durable = self.log.durable_lsn().map(|l| l.get());
        let covered = committed.as_ref().is_none_or(|c| Some(c.index) <= durable);
        let mut states = lock(&self.states);
        if covered && states.committed_written.elapsed() >= COMMITTED_EVERY {
            states.committed.store(&committed).map_err(io_err)?;
            states.committed_written = std::time::Instant::now();
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(lock(&self.inner).committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (batch, allow_gap) = {
            let mut g = lock(&self.inner);
            let last = g.log.keys().next_back().copied();
            let mut batch = Vec::new();
            for e in entries {
                let index = e.index();
                g.log.insert(index, e.clone());
                batch.push((Lsn::new(index), Stored(e)));
            }
            // The first entry of an empty log, or the first after a purge
            // past the end, may start anywhere above what is on disk.
            let allow_gap = match (last, batch.first()) {
                (Some(l), Some((first, _))) => first.get() != l + 1,
                _ => true,
            };
            (batch, allow_gap)
        };
        self.log
            .append_batch(batch, allow_gap, move |r| {
                callback.io_completed(r.map(|_| ()).map_err(io_err));
            })
            .await
            .map_err(io_err)
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let keep = last.as_ref().map(|l| l.index);
        {
            let mut g = lock(&self.inner);
            match keep {
                Some(k) => {
                    let _ = g.log.split_off(&(k + 1));
                }
                None => g.log.clear(),
            }
        }
        self.log
            .truncate_after(keep.map(Lsn::new))
            .await
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // The purge point first: a crash after it never brings purged
        // entries back, whatever the files still hold.
        lock(&self.states)
            .purged
            .store(&Some(log_id.clone()))
            .map_err(io_err)?;
        let index = log_id.index;
        {
            let mut g = lock(&self.inner);
            let rest = g.log.split_off(&(index + 1));
            g.log = rest;
            g.purged = Some(log_id);
        }
        self.log
            .truncate_before(Lsn::new(index.saturating_add(1)))
            .await
            .map_err(io_err)?;
        Ok(())
    }
}

/// `C::Entry` must be serde-able for the store; openraft's `serde`
/// feature makes every entry, vote and log id so.
#[allow(dead_code)]
fn _serde_bounds<C: RaftTypeConfig>()
where
    C::Entry: Serialize + DeserializeOwned,
{
}
