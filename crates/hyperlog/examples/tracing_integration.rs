//! Route an application's existing `tracing` and `log` calls into hyperlog
//! contexts: ordinary events into a JSON-lines file, and the events of one
//! target into a durable WAL context.
//!
//! Run with `cargo run --example tracing_integration --features tracing,log`.

use hyperlog::{ContextOptions, DurabilityMode, HyperlogLayer, LogFormat, Logger, ReadOptions};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let logger = Logger::new();
    let app = logger.context_with_blocking(
        "app",
        ContextOptions::new().path(dir.path().join("app.log.json")),
    )?;
    let ledger = logger.context_with_blocking(
        "ledger",
        ContextOptions::new()
            .path(dir.path().join("ledger.wal"))
            .durability(DurabilityMode::FsyncBatch)
            .format(LogFormat::Binary)
            .enable_lsn(true),
    )?;

    let subscriber = tracing_subscriber::registry()
        .with(HyperlogLayer::new(app.clone()).with_filter(filter_fn(|m| m.target() != "ledger")))
        .with(
            HyperlogLayer::new(ledger.clone()).with_filter(filter_fn(|m| m.target() == "ledger")),
        );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", path = "/jobs");
        let _entered = span.enter();
        tracing::info!(user = "ada", "request accepted");
        // Returns once the entry is durable (FsyncBatch).
        tracing::info!(target: "ledger", job_id = 42, "job created");
        tracing::warn!(elapsed_ms = 730, "slow request");
    });

    // The `log` facade, for crates that use it.
    hyperlog::HyperlogLogger::install(app.clone())?;
    log::info!("a record from the log crate");

    logger.close_blocking()?;
    for path in ["app.log.json", "ledger.wal"] {
        println!("== {path}");
        for item in hyperlog::read_values(dir.path().join(path), 0, ReadOptions::default()) {
            let (_, log, lsn) = item?;
            println!("lsn {:?}: {}", lsn.map(|l| l.get()), log.entry);
        }
    }
    Ok(())
}
