//! # hyperlog-bench
//!
//! Benchmarks for hyperlog, side by side with what users would otherwise
//! pick: for the data plane, `tracing` with its JSON formatter (through
//! `tracing-appender` or straight to a file), `slog` (`slog-async` +
//! `slog-json`), `ftlog`, `spdlog-rs` and `fast_log` (module
//! [`logger_peers`]); for the durable log, `okaywal`, `raft-engine`, RocksDB
//! (a separate binary, `peers/rocksdb-bench`, when built) and a bare
//! `write` + `fdatasync` loop; for recovery, the same two WALs; for
//! replicated writes through openraft (scenario `raft`, module [`raft`]),
//! hyperlog's log store against the `raft-log` crate (adapter in
//! [`raft_log_store`]) and an in-memory store; and, when `python3` can
//! import it, the Python reference `hyperscale.logging`.
//!
//! Two programs share this library:
//!
//! - the criterion bench `benches/logger.rs` (per-call cost of one log call):
//!   `cargo bench -p hyperlog-bench --bench logger`;
//! - the harness `src/main.rs` (throughput, acknowledgement latency, syncs,
//!   CPU, memory, read-back and recovery figures, PNG charts):
//!   `cargo run --release -p hyperlog-bench --
//!   <flush|durable|readback|retention|python|all> [--quick] [--out-dir DIR]`,
//!   and `... -- raft [--secs S] [--rounds N]` (not part of `all`).
//!
//! Every comparison runs in one process, interleaved round by round, so that
//! the ratios it prints stay meaningful on a small, noisy machine even when
//! the absolute numbers move.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod charts;
pub mod durable;
pub mod flush;
pub mod logger_peers;
pub mod measure;
pub mod payload;
pub mod peers;
pub mod progress;
pub mod python;
pub mod raft;
pub mod raft_log_store;
pub mod readback;
pub mod report;
pub mod retention;
pub mod wal_peers;

/// How long and how often each timed run goes, shared by every scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of one timed run.
    pub run: std::time::Duration,
    /// How many times every comparison is repeated (interleaved); the
    /// figures are medians over the rounds.
    pub rounds: usize,
    /// Where scratch files go (a fresh temporary directory inside it).
    pub scratch: std::path::PathBuf,
    /// Size of the log written by `readback`, in bytes.
    pub readback_bytes: u64,
    /// Whether this is a `--quick` smoke run (shown in the reports).
    pub quick: bool,
    /// Run only the variants whose label contains this text (baselines
    /// always run); ratios that lack a side are left out.
    pub only: Option<String>,
}

impl Settings {
    /// Whether the variant labelled `label` is selected by `only`.
    pub fn selected(&self, label: &str) -> bool {
        self.only.as_deref().is_none_or(|o| label.contains(o))
    }

    /// A fresh scratch directory, deleted when dropped.
    pub fn tempdir(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("hyperlog-bench-")
            .tempdir_in(&self.scratch)
    }
}
