//! The benchmark harness: `cargo run --release -p hyperlog-bench --
//! <flush|durable|readback|retention|python|raft|all|charts> [--quick]` (`raft`,
//! the 3-node openraft cluster, is not part of `all`).
//!
//! Every scenario prints a Markdown table to stdout (progress goes to
//! stderr). `all` runs them all and also writes `bench-results.json`,
//! `bench-results.md` and the PNG charts into the target directory (or
//! `--out-dir`). See the crate docs of
//! `hyperlog_bench` and each scenario module for what is measured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hyperlog_bench::report::Section;
use hyperlog_bench::{
    Settings, charts, durable, flush, measure, progress, python, raft, readback, retention,
};
use serde_json::json;

/// Benchmarks for hyperlog, side by side with tracing, slog, ftlog,
/// spdlog-rs, fast_log, okaywal, raft-engine and RocksDB.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// What to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// A smoke run: 0.5 s per timed run, one round, a 100 MB read-back log
    /// (under 2 minutes for `all`).
    #[arg(long)]
    quick: bool,
    /// Seconds per timed run (default 2, or 0.5 with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Rounds of every interleaved comparison (default 3, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Size of the read-back logs in MB (default 1000, or 100 with --quick).
    #[arg(long)]
    readback_mb: Option<u64>,
    /// Run only the flush/durable variants whose label contains this text,
    /// e.g. "FsyncBatch json 100 B" or "hyperlog Flush JSON x64".
    #[arg(long)]
    only: Option<String>,
    /// Where scratch files go (default: the system temporary directory); it
    /// should be on the local disk, not tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where `all` writes bench-results.{json,md} and the PNG charts
    /// (default: the target directory).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// The Python interpreter for the hyperscale.logging reference (run by
    /// `all` and `python` only if it can import hyperscale.logging).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The RocksDB peer's binary for `durable` (built from
    /// peers/rocksdb-bench; default: $HYPERLOG_BENCH_ROCKSDB, else the
    /// usual build locations; without one RocksDB is left out).
    #[arg(long)]
    rocksdb_bin: Option<PathBuf>,
    /// `fast-log-child` only: producer threads.
    #[arg(long, hide = true)]
    child_threads: Option<usize>,
    /// `fast-log-child` only: the log file.
    #[arg(long, hide = true)]
    child_file: Option<PathBuf>,
    /// For `charts`: the `bench-results.json` to draw from.
    #[arg(long)]
    from: Option<PathBuf>,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// None/Flush-mode throughput and per-call cost, 1 and 64 producers,
    /// against tracing, slog, ftlog, spdlog-rs and fast_log; LSN cost.
    Flush,
    /// Fsync and FsyncBatch: throughput, latency, syncs, CPU, size; against
    /// okaywal, raft-engine and (when built) RocksDB.
    Durable,
    /// Reading a ~1 GB log back: read_entries_blocking and scan_log.
    Readback,
    /// Rotation stalls, WAL open time vs segments, from_lsn seek time.
    Retention,
    /// The Python reference (hyperscale.logging), if importable.
    Python,
    /// Replicated writes: a 3-node openraft cluster in one process on
    /// hyperlog's log store, raft-log and an in-memory store (not in `all`).
    Raft,
    /// All of the above, plus bench-results.{json,md} and the charts.
    All,
    /// One fast_log run in this process (the `flush` scenario starts it as
    /// a child process: fast_log can be installed only once per process);
    /// prints the run's figures as one JSON line.
    #[value(hide = true)]
    FastLogChild,
    /// Draws the charts again from a `bench-results.json` (`--from`) into
    /// `--out-dir`, without running anything.
    Charts,
}

/// A scenario's entry point.
type RunFn = fn(&Settings) -> Result<Section, String>;

fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
        let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        if dirty { format!("{c}-dirty") } else { c }
    });
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "cpu": cpu,
        "cores": cores,
        "kernel": kernel,
        "commit": commit,
        "unix_time": unix_time,
        "date_utc": command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let secs = cli.secs.unwrap_or(if cli.quick { 0.5 } else { 2.0 });
    if !(secs.is_finite() && secs > 0.0) {
        eprintln!("--secs must be a positive number of seconds");
        return ExitCode::from(2);
    }
    if cli.scenario == Scenario::FastLogChild {
        let (Some(threads), Some(file)) = (cli.child_threads, cli.child_file.as_deref()) else {
            eprintln!("fast-log-child needs --child-threads and --child-file");
            return ExitCode::from(2);
        };
        let text = hyperlog_bench::payload::text(flush::MESSAGE_BYTES);
        let run = Duration::from_secs_f64(secs);
        return match hyperlog_bench::logger_peers::fast_log_child(file, threads, run, &text) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fast-log-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.scenario == Scenario::Charts {
        return redraw(&cli);
    }
    if let Some(bin) = cli.rocksdb_bin.clone() {
        durable::set_rocksdb_bin(bin);
    }
    let scratch = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    let settings = Settings {
        run: Duration::from_secs_f64(secs),
        rounds: cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 }).max(1),
        scratch: scratch.clone(),
        readback_bytes: cli
            .readback_mb
            .unwrap_or(if cli.quick { 100 } else { 1000 })
            * 1_000_000,
        quick: cli.quick,
        only: cli.only.clone(),
    };
    let fs = measure::fs_type(&scratch);
    if fs == "tmpfs" {
        eprintln!(
            "warning: {} is tmpfs: fdatasync costs nothing there; pass --dir on the local disk",
            scratch.display()
        );
    }
    let mut meta = machine();
    meta["scratch_dir"] = json!(scratch.display().to_string());
    meta["scratch_fs"] = json!(fs);
    meta["secs_per_run"] = json!(secs);
    meta["rounds"] = json!(settings.rounds);
    meta["quick"] = json!(cli.quick);
    meta["only"] = json!(cli.only);
    meta["profile"] = json!(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    });
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for real figures");
    }

    let scenarios: Vec<(&str, RunFn)> = match cli.scenario {
        Scenario::Flush => vec![("flush", flush::run)],
        Scenario::Durable => vec![("durable", durable::run)],
        Scenario::Readback => vec![("readback", readback::run)],
        Scenario::Retention => vec![("retention", retention::run)],
        Scenario::Python | Scenario::FastLogChild | Scenario::Charts => vec![],
        Scenario::Raft => vec![("raft", raft::run)],
        Scenario::All => vec![
            ("flush", flush::run),
            ("durable", durable::run),
            ("readback", readback::run),
            ("retention", retention::run),
        ],
    };
    let planned: u64 = scenarios
        .iter()
        .map(|(name, _)| match *name {
            "flush" => flush::planned_runs(&settings),
            "durable" => durable::planned_runs(&settings),
            "readback" => readback::planned_runs(&settings),
            "raft" => raft::planned_runs(&settings),
            _ => retention::planned_runs(&settings),
        })
        .sum::<u64>()
        + if matches!(cli.scenario, Scenario::All | Scenario::Python) {
            python::planned_runs(&settings, &cli.python)
        } else {
            0
        };
    let wall = std::time::Instant::now();
    progress::start(planned);
    let mut sections = Vec::new();
    for (name, run) in scenarios {
        progress::message(name);
        match run(&settings) {
            Ok(section) => {
                progress::line(format!("scenario {name}: done"));
                sections.push(section);
            }
            Err(e) => {
                progress::finish();
                eprintln!("scenario {name} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut python_status = String::from("not run");
    if matches!(cli.scenario, Scenario::All | Scenario::Python) {
        progress::message("python");
        match python::run(&settings, &cli.python) {
            Ok(Some(section)) => {
                python_status = "run".into();
                sections.push(section);
            }
            Ok(None) => python_status = "skipped: hyperscale not importable".into(),
            Err(e) => python_status = format!("failed: {e}"),
        }
    }
    progress::finish();
    for s in &sections {
        println!("{}", s.to_markdown());
    }
    eprintln!("python reference (hyperscale.logging): {python_status}");
    meta["python_reference"] = json!(python_status);
    meta["wall_secs"] = json!(wall.elapsed().as_secs_f64());
    eprintln!("wall time: {:.1} s", wall.elapsed().as_secs_f64());

    if cli.scenario == Scenario::All {
        let out_dir = cli.out_dir.clone().unwrap_or_else(target_dir);
        let charts = match charts::write_all(&sections, &out_dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("charts: {e}");
                Vec::new()
            }
        };
        for c in &charts {
            eprintln!("wrote {}", c.display());
        }
        let mut md = String::from("# hyperlog benchmark results\n\n");
        md.push_str(&format!(
            "Machine: {} ({} cores), Linux {}, commit {}, {}; scratch files on {} ({}); {} round(s) of {} s per run{}.\n\n",
            meta["cpu"].as_str().unwrap_or("?"),
            meta["cores"],
            meta["kernel"].as_str().unwrap_or("?"),
            meta["commit"].as_str().unwrap_or("?"),
            meta["date_utc"].as_str().unwrap_or("?"),
            scratch.display(),
            meta["scratch_fs"].as_str().unwrap_or("?"),
            settings.rounds,
            secs,
            if cli.quick { ", --quick" } else { "" },
        ));
        md.push_str(&format!(
            "Wall time {:.0} s. Python reference (`hyperscale.logging`): {}.\n\n",
            meta["wall_secs"].as_f64().unwrap_or(0.0),
            meta["python_reference"].as_str().unwrap_or("?")
        ));
        for c in &charts {
            if let Some(n) = c.file_name() {
                md.push_str(&format!("![{0}]({0})\n", n.to_string_lossy()));
            }
        }
        md.push('\n');
        for s in &sections {
            md.push_str(&s.to_markdown());
            md.push('\n');
        }
        let results = json!({
            "meta": meta,
            "sections": sections,
        });
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            std::fs::create_dir_all(&out_dir)
                .map_err(|e| format!("create {}: {e}", out_dir.display()))?;
            let dir = out_dir.canonicalize().unwrap_or_else(|_| out_dir.clone());
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
            Ok(p)
        };
        let json_text = serde_json::to_string_pretty(&results).unwrap_or_default();
        for r in [
            write("bench-results.json", json_text),
            write("bench-results.md", md),
        ] {
            match r {
                Ok(p) => eprintln!("wrote {}", p.display()),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// `charts --from FILE`: the charts of a finished run, drawn again.
fn redraw(cli: &Cli) -> ExitCode {
    let Some(from) = cli.from.as_deref() else {
        eprintln!("charts needs --from <bench-results.json>");
        return ExitCode::from(2);
    };
    let sections = std::fs::read_to_string(from)
        .map_err(|e| format!("read {}: {e}", from.display()))
        .and_then(|text| {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", from.display()))?;
            serde_json::from_value::<Vec<Section>>(v["sections"].clone())
                .map_err(|e| format!("{}: sections: {e}", from.display()))
        });
    let out_dir = cli.out_dir.clone().unwrap_or_else(target_dir);
    match sections.and_then(|s| charts::write_all(&s, &out_dir)) {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("charts: {e}");
            ExitCode::FAILURE
        }
    }
}
