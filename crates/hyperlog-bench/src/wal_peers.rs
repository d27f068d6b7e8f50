//! The durable peers: `okaywal` and `raft-engine`, each used as its
//! documentation shows, behind [`Producer`], plus the writers and readers the
//! `readback` scenario uses to compare recovery.
//!
//! - **okaywal** (`WriteAheadLog::recover(dir, manager)`): every entry is
//!   `begin_entry()`, one `write_chunk(record)`, `commit()`; `commit` returns
//!   once the entry is `fsync`ed, and okaywal batches the syncs of
//!   concurrent committers itself. Default `Configuration` (1 MiB
//!   preallocated segments, checkpoint after 768 KiB; the manager's
//!   `checkpoint_to` does nothing, as for a log whose entries are already
//!   applied).
//! - **raft-engine** (`Engine::open(Config)`): every entry is a `LogBatch`
//!   with one `add_entries::<BenchEntry>(region, [entry])`, written with
//!   `engine.write(&mut batch, true)` (sync: the call returns once the
//!   batch is `fdatasync`ed; raft-engine groups concurrent writers behind a
//!   write barrier, one sync per group). Each producer thread is its own
//!   raft group (region) with its own contiguous indexes, as in TiKV.
//!   Entries are protobuf's own `BytesValue` (index in the first 8 bytes),
//!   so no `.proto` compilation (no protoc) is needed. Default `Config`
//!   (LZ4 compression of batches over 8 KiB: a 100 B or 1 KiB entry is
//!   never compressed).

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use okaywal::{Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};
use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};

use crate::measure::Producer;

/// raft-engine's entry type for these benchmarks: a `BytesValue` whose
/// first 8 bytes are the entry's index (little endian).
#[derive(Debug, Clone, Copy)]
pub struct BenchEntry;

impl MessageExt for BenchEntry {
    type Entry = BytesValue;

    fn index(e: &BytesValue) -> u64 {
        let mut b = [0u8; 8];
        let n = e.value.len().min(8);
        b[..n].copy_from_slice(&e.value[..n]);
        u64::from_le_bytes(b)
    }
}

/// A raft-engine entry: index, then the record bytes.
pub fn raft_entry(index: u64, record: &[u8]) -> BytesValue {
    let mut value = Vec::with_capacity(8 + record.len());
    value.extend_from_slice(&index.to_le_bytes());
    value.extend_from_slice(record);
    let mut e = BytesValue::new();
    e.value = value;
    e
}

/// An okaywal `LogManager` that counts what recovery hands it (every chunk
/// read in full, CRC checked) and checkpoints by doing nothing.
#[derive(Debug, Default, Clone)]
pub struct CountingManager {
    /// Entries recovered.
    pub entries: Arc<AtomicU64>,
    /// Chunks recovered.
    pub chunks: Arc<AtomicU64>,
    /// Chunk bytes recovered.
    pub bytes: Arc<AtomicU64>,
}

impl LogManager for CountingManager {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            self.entries.fetch_add(1, Ordering::Relaxed);
            self.chunks
                .fetch_add(chunks.len() as u64, Ordering::Relaxed);
            let bytes: usize = chunks.iter().map(Vec::len).sum();
            self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// okaywal, one committed entry per call.
pub struct OkayWal {
    wal: Option<WriteAheadLog>,
    record: Vec<u8>,
}

impl OkayWal {
    /// Opens (creates) a log in directory `dir`; every entry is a
    /// `record_len`-byte record.
    pub fn new(dir: &Path, record_len: usize) -> Result<Self, String> {
        let wal = WriteAheadLog::recover(dir, CountingManager::default())
            .map_err(|e| format!("okaywal recover {}: {e}", dir.display()))?;
        Ok(OkayWal {
            wal: Some(wal),
            record: crate::payload::text(record_len).into_bytes(),
        })
    }

    /// Shuts the log down.
    pub fn close(mut self) -> Result<(), String> {
        match self.wal.take() {
            Some(w) => w.shutdown().map_err(|e| format!("okaywal shutdown: {e}")),
            None => Ok(()),
        }
    }
}

impl Producer for OkayWal {
    fn log_one(&self, _text: &str) -> Result<(), String> {
        let wal = self.wal.as_ref().ok_or("okaywal closed")?;
        let mut w = wal.begin_entry().map_err(|e| format!("begin_entry: {e}"))?;
        w.write_chunk(&self.record)
            .map_err(|e| format!("write_chunk: {e}"))?;
        w.commit().map_err(|e| format!("commit: {e}"))?;
        Ok(())
    }
}

static ENGINE_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (engine instance, region, next index) of this producer thread.
    static RAFT_SLOT: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
}

/// raft-engine, one synced `LogBatch` of one entry per call.
pub struct RaftEngine {
    engine: Option<Engine>,
    id: u64,
    regions: AtomicU64,
    record: Vec<u8>,
    dir: PathBuf,
}

/// A raft-engine configuration for directory `dir`, otherwise default.
pub fn raft_config(dir: &Path) -> Config {
    Config {
        dir: dir.display().to_string(),
        ..Config::default()
    }
}

impl RaftEngine {
    /// Opens (creates) an engine in directory `dir`; every entry carries a
    /// `record_len`-byte record.
    pub fn new(dir: &Path, record_len: usize) -> Result<Self, String> {
        let engine = Engine::open(raft_config(dir))
            .map_err(|e| format!("raft-engine open {}: {e}", dir.display()))?;
        Ok(RaftEngine {
            engine: Some(engine),
            id: ENGINE_IDS.fetch_add(1, Ordering::Relaxed),
            regions: AtomicU64::new(1),
            record: crate::payload::text(record_len).into_bytes(),
            dir: dir.to_path_buf(),
        })
    }

    /// Closes the engine.
    pub fn close(mut self) -> Result<(), String> {
        drop(self.engine.take());
        let _ = &self.dir;
        Ok(())
    }
}

impl Producer for RaftEngine {
    fn log_one(&self, _text: &str) -> Result<(), String> {
        let engine = self.engine.as_ref().ok_or("raft-engine closed")?;
        let (region, index) = RAFT_SLOT.with(|slot| {
            let (id, region, next) = slot.get();
            let (region, index) = if id == self.id {
                (region, next)
            } else {
                (self.regions.fetch_add(1, Ordering::Relaxed), 1)
            };
            slot.set((self.id, region, index + 1));
            (region, index)
        });
        let mut batch = LogBatch::with_capacity(1);
        batch
            .add_entries::<BenchEntry>(region, &[raft_entry(index, &self.record)])
            .map_err(|e| format!("add_entries: {e}"))?;
        engine
            .write(&mut batch, true)
            .map_err(|e| format!("write: {e}"))?;
        Ok(())
    }
}

/// Syncs counted by raft-engine itself (the sample count of its
/// `raft_engine_sync_log_duration_seconds` histogram, process-wide).
pub fn raft_engine_syncs() -> u64 {
    prometheus::gather()
        .iter()
        .find(|f| f.get_name() == "raft_engine_sync_log_duration_seconds")
        .and_then(|f| {
            f.get_metric()
                .first()
                .map(|m| m.get_histogram().get_sample_count())
        })
        .unwrap_or(0)
}

/// Entries per raft-engine write when building a large log.
pub const BUILD_BATCH: u64 = 1000;

/// Writes `entries` records of `record` into a new raft-engine in `dir`
/// (one region, batches of [`BUILD_BATCH`], compression off so the file
/// holds the bytes as hyperlog's does, one sync at the end).
pub fn raft_build(dir: &Path, record: &[u8], entries: u64) -> Result<(), String> {
    let cfg = Config {
        batch_compression_threshold: ReadableSize(0),
        ..raft_config(dir)
    };
    let engine = Engine::open(cfg).map_err(|e| format!("raft-engine open: {e}"))?;
    let mut index = 1u64;
    while index <= entries {
        let end = (index + BUILD_BATCH).min(entries + 1);
        let batch_entries: Vec<BytesValue> = (index..end).map(|i| raft_entry(i, record)).collect();
        let mut batch = LogBatch::with_capacity(batch_entries.len());
        batch
            .add_entries::<BenchEntry>(1, &batch_entries)
            .map_err(|e| format!("add_entries: {e}"))?;
        engine
            .write(&mut batch, end > entries)
            .map_err(|e| format!("write: {e}"))?;
        index = end;
    }
    Ok(())
}

/// Opens the raft-engine in `dir` (its recovery) and fetches every entry of
/// every region, 10,000 at a time; returns (entries, record bytes).
pub fn raft_recover(dir: &Path) -> Result<(u64, u64), String> {
    let cfg = Config {
        batch_compression_threshold: ReadableSize(0),
        ..raft_config(dir)
    };
    let engine = Engine::open(cfg).map_err(|e| format!("raft-engine open: {e}"))?;
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut buf: Vec<BytesValue> = Vec::with_capacity(10_000);
    for region in engine.raft_groups() {
        let (Some(first), Some(last)) = (engine.first_index(region), engine.last_index(region))
        else {
            continue;
        };
        let mut at = first;
        while at <= last {
            let end = (at + 10_000).min(last + 1);
            buf.clear();
            engine
                .fetch_entries_to::<BenchEntry>(region, at, end, None, &mut buf)
                .map_err(|e| format!("fetch_entries_to: {e}"))?;
            entries += buf.len() as u64;
            bytes += buf.iter().map(|e| e.value.len() as u64 - 8).sum::<u64>();
            at = end;
        }
    }
    Ok((entries, bytes))
}

/// Writes `entries` records into a new okaywal log in `dir` (entries of
/// [`BUILD_BATCH`] chunks, one chunk per record, checkpointing off so that
/// recovery has all of it to read).
pub fn okaywal_build(dir: &Path, record: &[u8], entries: u64) -> Result<(), String> {
    let wal = okaywal::Configuration::default_for(dir)
        .checkpoint_after_bytes(u64::MAX)
        .open(CountingManager::default())
        .map_err(|e| format!("okaywal open: {e}"))?;
    let mut done = 0u64;
    while done < entries {
        let n = BUILD_BATCH.min(entries - done);
        let mut w = wal.begin_entry().map_err(|e| format!("begin_entry: {e}"))?;
        for _ in 0..n {
            w.write_chunk(record)
                .map_err(|e| format!("write_chunk: {e}"))?;
        }
        w.commit().map_err(|e| format!("commit: {e}"))?;
        done += n;
    }
    wal.shutdown().map_err(|e| format!("okaywal shutdown: {e}"))
}

/// Opens the okaywal log in `dir`: its recovery hands every entry to the
/// manager, which reads every chunk; returns (records, record bytes).
pub fn okaywal_recover(dir: &Path) -> Result<(u64, u64), String> {
    let m = CountingManager::default();
    let wal = okaywal::Configuration::default_for(dir)
        .checkpoint_after_bytes(u64::MAX)
        .open(m.clone())
        .map_err(|e| format!("okaywal open: {e}"))?;
    let out = (
        m.chunks.load(Ordering::Relaxed),
        m.bytes.load(Ordering::Relaxed),
    );
    wal.shutdown()
        .map_err(|e| format!("okaywal shutdown: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_entry_keeps_its_index() {
        let e = raft_entry(42, b"abc");
        assert_eq!(BenchEntry::index(&e), 42);
        assert_eq!(&e.value[8..], b"abc");
    }

    #[test]
    fn peers_recover_what_they_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (okay, raft) = (dir.path().join("okaywal"), dir.path().join("raft"));
        std::fs::create_dir_all(&okay).unwrap();
        std::fs::create_dir_all(&raft).unwrap();
        okaywal_build(&okay, b"0123456789", 2500).unwrap();
        raft_build(&raft, b"0123456789", 2500).unwrap();
        assert_eq!(okaywal_recover(&okay).unwrap(), (2500, 25_000));
        assert_eq!(raft_recover(&raft).unwrap(), (2500, 25_000));
    }

    #[test]
    fn producers_commit() {
        use crate::measure::drive;
        let dir = tempfile::tempdir().unwrap();
        let mut o = OkayWal::new(dir.path(), 100).unwrap();
        let d = drive(&mut o, 2, std::time::Duration::from_millis(50), "", true).unwrap();
        assert!(d.entries > 0);
        o.close().unwrap();
        let sub = dir.path().join("raft");
        let mut r = RaftEngine::new(&sub, 100).unwrap();
        let before = raft_engine_syncs();
        let d = drive(&mut r, 2, std::time::Duration::from_millis(50), "", true).unwrap();
        assert!(d.entries > 0);
        assert!(raft_engine_syncs() > before);
        r.close().unwrap();
    }
}
