//! Scenario `flush`: entries per second of the data plane.
//!
//! hyperlog in `Flush` mode (acknowledged once `write(2)` is done) against
//! `tracing`'s JSON formatter through `tracing-appender`'s lossless
//! non-blocking writer (acknowledged once queued; the clock runs on until the
//! queue has drained into the file) and `tracing` JSON written straight to a
//! file (one `write(2)` per event), with 1 and 64 producer threads; plus
//! hyperlog `Flush` with LSNs on, at 64 producers, against the same without.
//! hyperlog in `None` mode (returns once queued) against the asynchronous
//! loggers, each lossless (a full queue blocks) and timed until its file
//! holds every line: slog-async, ftlog, spdlog-rs's `AsyncPoolSink` and
//! fast_log (the last three in [`crate::logger_peers`], fast_log in a child
//! process), with 1 and 64 producer threads.
//! Every producer logs 100-byte messages; every logger runs with its
//! defaults (queue 10,000 entries for hyperlog, 128,000 lines for the
//! appender). Variants are interleaved round by round, each round starting
//! one variant later, and each figure is the median over the rounds.

use std::path::Path;

use hyperlog::{DurabilityMode, LogFormat};
use serde_json::json;

use crate::logger_peers;
use crate::measure::{Drive, drive, median};
use crate::peers::{Hyperlog, TracingDirect, TracingNonBlocking};
use crate::report::{Ratio, Section, Table, num, rate, ratio};
use crate::{Settings, payload};

/// The message size of this scenario.
pub const MESSAGE_BYTES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hyperlog {
        lsn: bool,
    },
    /// hyperlog with tokio tasks as producers (awaiting `Context::log`).
    HyperlogTasks,
    /// hyperlog in `None` mode (returns once queued).
    HyperlogNone,
    TracingNonBlocking,
    TracingDirect,
    /// slog-async + slog-json.
    Slog,
    /// ftlog (not installed globally), text lines.
    Ftlog,
    /// spdlog-rs with its AsyncPoolSink over a FileSink, text lines.
    Spdlog,
    /// fast_log, in a child process, text lines.
    FastLog,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    kind: Kind,
    threads: usize,
}

impl Variant {
    fn label(&self) -> &'static str {
        match self.kind {
            Kind::Hyperlog { lsn: false } => "hyperlog Flush JSON",
            Kind::Hyperlog { lsn: true } => "hyperlog Flush JSON + LSN",
            Kind::HyperlogTasks => "hyperlog Flush JSON, tokio tasks",
            Kind::TracingNonBlocking => "tracing JSON via tracing-appender non_blocking",
            Kind::TracingDirect => "tracing JSON direct to File",
            Kind::HyperlogNone => "hyperlog None JSON",
            Kind::Slog => "slog-json via slog-async",
            Kind::Ftlog => "ftlog text, blocking channel",
            Kind::Spdlog => "spdlog-rs text via AsyncPoolSink",
            Kind::FastLog => "fast_log text (child process)",
        }
    }

    fn key(&self) -> String {
        format!("{} x{}", self.label(), self.threads)
    }

    fn guarantee(&self) -> &'static str {
        match self.kind {
            Kind::Hyperlog { .. } | Kind::HyperlogTasks | Kind::TracingDirect => "write(2) done",
            Kind::TracingNonBlocking
            | Kind::HyperlogNone
            | Kind::Slog
            | Kind::Ftlog
            | Kind::Spdlog
            | Kind::FastLog => "queued (drain timed)",
        }
    }
}

const VARIANTS: [Variant; 18] = [
    Variant {
        kind: Kind::HyperlogNone,
        threads: 1,
    },
    Variant {
        kind: Kind::Slog,
        threads: 1,
    },
    Variant {
        kind: Kind::Ftlog,
        threads: 1,
    },
    Variant {
        kind: Kind::Spdlog,
        threads: 1,
    },
    Variant {
        kind: Kind::FastLog,
        threads: 1,
    },
    Variant {
        kind: Kind::HyperlogNone,
        threads: 64,
    },
    Variant {
        kind: Kind::Slog,
        threads: 64,
    },
    Variant {
        kind: Kind::Ftlog,
        threads: 64,
    },
    Variant {
        kind: Kind::Spdlog,
        threads: 64,
    },
    Variant {
        kind: Kind::FastLog,
        threads: 64,
    },
    Variant {
        kind: Kind::Hyperlog { lsn: false },
        threads: 1,
    },
    Variant {
        kind: Kind::TracingNonBlocking,
        threads: 1,
    },
    Variant {
        kind: Kind::TracingDirect,
        threads: 1,
    },
    Variant {
        kind: Kind::Hyperlog { lsn: false },
        threads: 64,
    },
    Variant {
        kind: Kind::TracingNonBlocking,
        threads: 64,
    },
    Variant {
        kind: Kind::TracingDirect,
        threads: 64,
    },
    Variant {
        kind: Kind::Hyperlog { lsn: true },
        threads: 64,
    },
    Variant {
        kind: Kind::HyperlogTasks,
        threads: 64,
    },
];

/// One timed run and the size of the file it left.
#[derive(Debug, Clone)]
struct Sample {
    drive: Drive,
    file_bytes: u64,
}

fn run_one(s: &Settings, dir: &Path, v: Variant, text: &str) -> Result<Sample, String> {
    let path = dir.join("flush.log.json");
    let _ = std::fs::remove_file(&path);
    let d = match v.kind {
        Kind::Hyperlog { lsn } => {
            let mut p = Hyperlog::file(&path, DurabilityMode::Flush, LogFormat::Json, lsn)?;
            let d = drive(&mut p, v.threads, s.run, text, false)?;
            p.close()?;
            d
        }
        Kind::HyperlogTasks => {
            let p = Hyperlog::file(&path, DurabilityMode::Flush, LogFormat::Json, false)?;
            let d = crate::measure::drive_tasks(p.context(), v.threads, s.run, text)?;
            p.close()?;
            d
        }
        Kind::TracingNonBlocking => {
            let mut p = TracingNonBlocking::new(
                &path,
                tracing_appender::non_blocking::DEFAULT_BUFFERED_LINES_LIMIT,
            )?;
            drive(&mut p, v.threads, s.run, text, false)?
        }
        Kind::TracingDirect => {
            let mut p = TracingDirect::new(&path)?;
            drive(&mut p, v.threads, s.run, text, false)?
        }
        Kind::HyperlogNone => {
            let mut p = Hyperlog::file(&path, DurabilityMode::None, LogFormat::Json, false)?;
            let d = drive(&mut p, v.threads, s.run, text, false)?;
            p.close()?;
            d
        }
        Kind::Slog => {
            let mut p = crate::peers::Slog::new(&path)?;
            drive(&mut p, v.threads, s.run, text, false)?
        }
        Kind::Ftlog => {
            let mut p = logger_peers::Ftlog::new(&path)?;
            drive(&mut p, v.threads, s.run, text, false)?
        }
        Kind::Spdlog => {
            let mut p = logger_peers::SpdlogAsync::new(&path)?;
            drive(&mut p, v.threads, s.run, text, false)?
        }
        // The child logs `payload::text(MESSAGE_BYTES)` itself.
        Kind::FastLog => logger_peers::run_fast_log(&path, v.threads, s.run)?,
    };
    let file_bytes = std::fs::metadata(&path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .len();
    std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    Ok(Sample {
        drive: d,
        file_bytes,
    })
}

/// How many timed runs [`run`] will make with these settings.
pub fn planned_runs(s: &Settings) -> u64 {
    (VARIANTS.iter().filter(|v| s.selected(&v.key())).count() * s.rounds) as u64
}

/// Runs the scenario; progress goes to stderr.
pub fn run(s: &Settings) -> Result<Section, String> {
    let dir = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let text = payload::text(MESSAGE_BYTES);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..s.rounds {
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            let v = VARIANTS[i];
            if !s.selected(&v.key()) {
                continue;
            }
            let sample = run_one(s, dir.path(), v, &text)?;
            crate::progress::done(format!(
                "flush round {}/{}: {:<48} {:>3} thr  {:>12} entries/s  {:>8} ns/call",
                round + 1,
                s.rounds,
                v.label(),
                v.threads,
                rate(sample.drive.rate()),
                num(sample.drive.ns_per_call(v.threads)),
            ));
            samples[i].push(sample);
        }
    }

    let med = |i: usize, f: &dyn Fn(&Sample) -> f64| -> f64 {
        median(&samples[i].iter().map(f).collect::<Vec<_>>())
    };
    let rate_of = |i: usize| med(i, &|x| x.drive.rate());
    let mut table = Table::new(&[
        "logger",
        "threads",
        "returns when",
        "entries/s (median)",
        "min..max",
        "ns / call (producer side)",
        "CPU s / M entries",
        "bytes / entry",
        "peak RSS MiB (+growth)",
    ]);
    let mut data = Vec::new();
    for (i, v) in VARIANTS.iter().enumerate() {
        if samples[i].is_empty() {
            continue;
        }
        let rates: Vec<f64> = samples[i].iter().map(|x| x.drive.rate()).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        table.row(vec![
            v.label().into(),
            v.threads.to_string(),
            v.guarantee().into(),
            rate(rate_of(i)),
            format!("{}..{}", rate(lo), rate(hi)),
            num(med(i, &|x| x.drive.ns_per_call(v.threads))),
            num(med(i, &|x| x.drive.cpu_per_million())),
            num(med(i, &|x| x.drive.bytes_per_entry(x.file_bytes))),
            format!(
                "{} (+{})",
                num(med(i, &|x| x.drive.peak_rss as f64 / 1048576.0)),
                num(med(i, &|x| x.drive.peak_growth_mib()))
            ),
        ]);
        data.push(json!({
            "logger": v.label(),
            "threads": v.threads,
            "returns_when": v.guarantee(),
            "entries_per_s_median": rate_of(i),
            "ns_per_call_median": med(i, &|x| x.drive.ns_per_call(v.threads)),
            "cpu_s_per_million_median": med(i, &|x| x.drive.cpu_per_million()),
            "peak_rss_mib_median": med(i, &|x| x.drive.peak_rss as f64 / 1048576.0),
            "peak_rss_growth_mib_median": med(i, &|x| x.drive.peak_growth_mib()),
            "runs": samples[i].iter().map(|x| json!({
                "entries": x.drive.entries,
                "secs": x.drive.elapsed.as_secs_f64(),
                "entries_per_s": x.drive.rate(),
                "cpu_s": x.drive.cpu.as_secs_f64(),
                "cpu_s_per_million": x.drive.cpu_per_million(),
                "file_bytes": x.file_bytes,
            })).collect::<Vec<_>>(),
        }));
    }
    let idx = |kind: Kind, threads: usize| {
        VARIANTS
            .iter()
            .position(|v| v.kind == kind && v.threads == threads)
            .unwrap_or(0)
    };
    let call_of = |i: usize| med(i, &|x| x.drive.ns_per_call(VARIANTS[i].threads));
    let h = |t| idx(Kind::Hyperlog { lsn: false }, t);
    let nb = |t| idx(Kind::TracingNonBlocking, t);
    let direct = |t| idx(Kind::TracingDirect, t);
    let mut ratios = Vec::new();
    let none1 = idx(Kind::HyperlogNone, 1);
    ratios.push(Ratio {
        what: "hyperlog None / tracing non_blocking, 1 thread: time per call".into(),
        value: ratio(call_of(none1), call_of(nb(1))),
    });
    ratios.push(Ratio {
        what: "hyperlog None / slog-async, 1 thread: time per call".into(),
        value: ratio(call_of(none1), call_of(idx(Kind::Slog, 1))),
    });
    for (kind, name) in [
        (Kind::Ftlog, "ftlog"),
        (Kind::Spdlog, "spdlog-rs AsyncPoolSink"),
        (Kind::FastLog, "fast_log"),
    ] {
        ratios.push(Ratio {
            what: format!("hyperlog None / {name}, 1 thread: time per call"),
            value: ratio(call_of(none1), call_of(idx(kind, 1))),
        });
        for t in [1, 64] {
            ratios.push(Ratio {
                what: format!("hyperlog None / {name}, {t} thread(s): entries/s"),
                value: ratio(rate_of(idx(Kind::HyperlogNone, t)), rate_of(idx(kind, t))),
            });
        }
    }
    for t in [1, 64] {
        ratios.push(Ratio {
            what: format!("hyperlog Flush / slog-async, {t} thread(s)"),
            value: ratio(rate_of(h(t)), rate_of(idx(Kind::Slog, t))),
        });
        ratios.push(Ratio {
            what: format!("hyperlog Flush / tracing non_blocking, {t} thread(s)"),
            value: ratio(rate_of(h(t)), rate_of(nb(t))),
        });
        ratios.push(Ratio {
            what: format!("hyperlog Flush / tracing direct, {t} thread(s)"),
            value: ratio(rate_of(h(t)), rate_of(direct(t))),
        });
    }
    ratios.push(Ratio {
        what: "hyperlog Flush with LSN / without, 64 threads".into(),
        value: ratio(
            rate_of(idx(Kind::Hyperlog { lsn: true }, 64)),
            rate_of(h(64)),
        ),
    });
    for (name, i1, i64) in [
        ("hyperlog Flush", h(1), h(64)),
        ("tracing non_blocking", nb(1), nb(64)),
        ("tracing direct", direct(1), direct(64)),
    ] {
        ratios.push(Ratio {
            what: format!("{name}: 64 threads / 1 thread"),
            value: ratio(rate_of(i64), rate_of(i1)),
        });
    }
    ratios.retain(|r| r.value.is_finite() && r.value > 0.0);
    Ok(Section {
        name: "flush".into(),
        title: "Data plane: None/Flush mode vs tracing, slog, ftlog, spdlog-rs and fast_log (100-byte messages to a file)".into(),
        notes: vec![
            format!(
                "{} round(s) of {:.1} s per variant, interleaved (each round starts one variant later); figures are medians over rounds.",
                s.rounds,
                s.run.as_secs_f64()
            ),
            "Producers are OS threads calling `Context::log_blocking(Message::info(text))` or `tracing::info!(\"{}\", text)` in a loop.".into(),
            "tracing non_blocking is lossless (`lossy(false)`) with its default 128,000-line queue; its clock runs until every line is in the file.".into(),
            "tracing lines carry timestamp, level, message, file, line and thread id, like hyperlog's envelope.".into(),
            "slog: `slog::info!(logger, \"{}\", text)` into `slog_async::Async` (lossless: `OverflowStrategy::Block`, default 128-record channel) over `slog_json::Json::new(LineWriter<File>).add_default_keys()` (ts, level, msg: fewer fields than the others, see bytes / entry); its clock runs until the async thread has been joined.".into(),
            format!("ftlog 0.2: built, not installed globally; `log::info!(logger: &ftlog_logger, \"{{}}\", text)`; `bounded({q}, true)` (a full channel blocks: lossless), UTC, its `FileAppender` (BufWriter); text line: time (ms, UTC offset), call-to-write delay, level, thread name (empty), file:line, message.", q = logger_peers::QUEUE),
            "spdlog-rs 0.5: `spdlog::info!(logger: l, \"{}\", text)` into an `AsyncPoolSink` (`OverflowPolicy::Block`: lossless; its own `ThreadPool`, default 8,192-operation queue, one worker) over a `FileSink` (BufWriter) with the default `FullFormatter` and feature `source-location`; text line: local time (ms), level, module path, file:line, message.".into(),
            format!("fast_log 1.7: installed as the global `log` logger, which it can be only once per process, so each run is a child process of this binary (hidden scenario `fast-log-child`; its CPU, RSS and bytes are the child's, so its RSS lacks this harness's baseline); `log::info!(\"{{}}\", text)`; `chan_len(Some({q}))` (a full channel blocks: lossless), one formatting worker, its `FileAppender`, `FastLogFormat` with file:line from Info up and UTC; text line: time (ns), level, file:line, message.", q = logger_peers::QUEUE),
            "ftlog, spdlog-rs and fast_log: the clock runs until the file holds every line (their flush, or the worker's join), then the file's lines are counted and must equal the entries logged; none of their lines carries a thread id.".into(),
            "hyperlog None returns once the entry is queued; its clock runs until `flush` has written the queue out. ns / call is the producers' own time in the calls (wall time of the producing window x threads / entries): the per-call cost for one thread.".into(),
            "Peak RSS: all runs share this process; the high-water mark is reset before each run (`/proc/self/clear_refs`), so it is the process's peak during the run; the growth is over the RSS just before it.".into(),
            "CPU is the whole process (getrusage RUSAGE_SELF, user + system), writer threads included.".into(),
        ],
        table,
        ratios,
        data: json!({ "variants": data }),
    })
}
