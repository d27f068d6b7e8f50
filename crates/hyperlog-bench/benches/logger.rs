//! Per-call cost of one log call with a 100-byte message to a JSON file,
//! one producer, side by side in one criterion group:
//!
//! - `hyperlog_none`: `Context::log_blocking(Message::info(text))` in
//!   `DurabilityMode::None` (acknowledged on enqueue) with a 2^20-entry
//!   queue, so the call measures the enqueue; the context is flushed between
//!   criterion's batches, outside the timed region;
//! - `tracing_non_blocking`: `tracing::info!` with `tracing-subscriber`'s JSON
//!   formatter through `tracing_appender::non_blocking` in lossless mode
//!   (`lossy(false)`) with a 2^20-line queue, drained between batches,
//!   outside the timed region;
//! - `tracing_direct`: `tracing::info!` with the JSON formatter writing each
//!   line to a `File` (blocking, one `write(2)` per event);
//! - `hyperlog_flush`: `log_blocking` in `DurabilityMode::Flush` (returns
//!   after the writer's `write(2)`), the blocking counterpart of
//!   `tracing_direct`.
//!
//! Run: `cargo bench -p hyperlog-bench --bench logger`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hyperlog::{ContextOptions, DurabilityMode, LogFormat, Message};
use hyperlog_bench::payload;
use hyperlog_bench::peers::{Hyperlog, TracingDirect, TracingNonBlocking, wait_for};

const QUEUE: usize = 1 << 20;

fn hyperlog(path: &std::path::Path, mode: DurabilityMode) -> Hyperlog {
    Hyperlog::open(
        "bench",
        ContextOptions::new()
            .path(path)
            .durability(mode)
            .format(LogFormat::Json)
            .queue_capacity(QUEUE),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn log_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let text = payload::text(100);
    let mut g = c.benchmark_group("log_100B_json_file");
    g.throughput(Throughput::Elements(1));

    let none = hyperlog(&dir.path().join("none.log.json"), DurabilityMode::None);
    g.bench_function("hyperlog_none", |b| {
        let ctx = none.context().clone();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ctx.log_blocking(Message::info(text.as_str()))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let elapsed = start.elapsed();
            ctx.flush_blocking().unwrap_or_else(|e| panic!("{e}"));
            elapsed
        })
    });
    none.close().unwrap_or_else(|e| panic!("{e}"));

    let nb = TracingNonBlocking::new(&dir.path().join("nb.log.json"), QUEUE)
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("tracing_non_blocking", |b| {
        let mut sent = nb.lines().load(Ordering::Acquire);
        b.iter_custom(|iters| {
            let elapsed = tracing::dispatcher::with_default(nb.dispatch(), || {
                let start = Instant::now();
                for _ in 0..iters {
                    tracing::info!("{}", text);
                }
                start.elapsed()
            });
            sent += iters;
            wait_for(nb.lines(), sent, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{e}"));
            elapsed
        })
    });
    drop(nb);

    let direct =
        TracingDirect::new(&dir.path().join("direct.log.json")).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("tracing_direct", |b| {
        tracing::dispatcher::with_default(direct.dispatch(), || {
            b.iter(|| tracing::info!("{}", text))
        })
    });
    drop(direct);

    let flush = hyperlog(&dir.path().join("flush.log.json"), DurabilityMode::Flush);
    g.bench_function("hyperlog_flush", |b| {
        let ctx = flush.context().clone();
        b.iter(|| {
            ctx.log_blocking(Message::info(text.as_str()))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    flush.close().unwrap_or_else(|e| panic!("{e}"));
    g.finish();
}

criterion_group!(benches, log_call);
criterion_main!(benches);
