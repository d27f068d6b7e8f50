//! More asynchronous loggers for the `flush` scenario's `None`-mode
//! comparison: **ftlog**, **spdlog-rs** (its `AsyncPoolSink`) and
//! **fast_log**, each behind [`Producer`], each as lossless as the crate
//! allows (a full queue blocks the caller), each writing one text line per
//! entry to a file, each checked after the run: the file must hold exactly
//! one line per entry logged (warm-up entry included).
//!
//! What a line holds, with the 100-byte message of the scenario (`MSG`) and
//! this file's path (41 bytes, as the workspace compiles it) and a
//! three-digit line as the call site; the scenario measures the bytes per
//! entry (`bytes / entry`: the file's size over the lines):
//!
//! - **ftlog** 0.2, its only format (`FtLogFormatter`), timestamps in UTC:
//!   `2026-12-01 10:11:12.345+00 0ms INFO  [crates/hyperlog-bench/src/logger_peers.rs:123] MSG`
//!   (time to the millisecond with the UTC offset's hours, the delay between
//!   the call and the log thread's write, level, the calling thread's name
//!   (empty: the producers are unnamed), file and line, message): 186
//!   bytes with a one-digit delay, 188 with the 100+ ms delays of a full
//!   queue (188 in the quick run).
//! - **spdlog-rs** 0.5, its default `FullFormatter` with the
//!   `source-location` feature (local time, which is UTC on the benchmark
//!   machine; spdlog-rs has no UTC switch):
//!   `[2026-12-01 10:11:12.345] [info] [hyperlog_bench::logger_peers, crates/hyperlog-bench/src/logger_peers.rs:123] MSG`
//!   (time to the millisecond, level, module path, file and line, message):
//!   212 bytes.
//! - **fast_log** 1.7, its default text format (`FastLogFormat`) with the
//!   file and line shown from `Info` up (its default shows them from `Warn`
//!   only) and UTC timestamps:
//!   `2026-12-01 10:11:12.345678901 [INFO] [crates/hyperlog-bench/src/logger_peers.rs:123] MSG`
//!   (time to the nanosecond, trailing zeros dropped, padded to 27
//!   characters, level, file and line, message): 186 bytes (184-185 when
//!   the nanoseconds end in zeros).
//!
//! The JSON peers of the scenario (hyperlog, tracing) also carry the thread
//! id; none of these three formats has one (ftlog has the thread's name).
//!
//! # Global loggers
//!
//! ftlog and fast_log are `log` facade loggers, meant to be installed once per
//! process with `log::set_boxed_logger` (ftlog's `try_init`) or
//! `log::set_logger` (fast_log's `init`). They are handled differently:
//!
//! - **ftlog** is run in this process like the other peers, without being
//!   installed: `ftlog::Builder::build` returns its `Logger` (which
//!   implements `log::Log`, owns its channel and its log thread), and every
//!   call is `log::info!(logger: &ftlog_logger, "{}", text)` (the `log`
//!   macros take an explicit logger since `log` 0.4.27). Each run builds a
//!   new logger with a new file and drops it after `Log::flush`, which
//!   returns once the log thread has written and flushed every queued line;
//!   the dropped channel ends the log thread. What a call costs is what it
//!   costs through the global logger, less one atomic load. The `log`
//!   facade's global maximum level (which the macros check even with an
//!   explicit logger) is raised to `Info` while the peer lives and put back
//!   when it is dropped.
//! - **fast_log** keeps its logger in a process-wide `OnceLock`: `init` can
//!   succeed only once per process, its threads and file are fixed then, and
//!   its `Log::log` always goes to that global instance. So every fast_log run
//!   is a child process: the harness re-runs its own executable with the
//!   hidden scenario `fast-log-child` (see [`fast_log_child`]), which
//!   installs fast_log, runs the same [`drive`] loop and prints one JSON line
//!   with the run's figures (see [`run_fast_log`]). Its CPU, RSS and written
//!   bytes are those of the child process (so its RSS lacks the harness's
//!   baseline).
//!
//! spdlog-rs loggers are plain values (`spdlog::info!(logger: l, ...)`), so
//! it runs in this process with a new logger, sink and thread pool per run.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::measure::{Drive, Producer, drive};

/// The queue length given to ftlog and fast_log (ftlog's default bound;
/// fast_log's documentation uses the same figure for its bounded channel).
pub const QUEUE: usize = 100_000;

/// Counts the newline bytes in the file at `path`.
pub fn count_lines(path: &Path) -> Result<u64, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Fails unless the file at `path` holds exactly `entries` lines.
pub fn check_lines(what: &str, path: &Path, entries: u64) -> Result<(), String> {
    let lines = count_lines(path)?;
    if lines == entries {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} holds {lines} lines, {entries} entries were logged",
            path.display()
        ))
    }
}

/// ftlog, built but not installed as the global logger: every call is
/// `log::info!(logger: &logger, "{}", text)`.
///
/// Configuration: `ftlog::builder()` with `max_log_level(Info)`,
/// `bounded(QUEUE, true)` (a full channel blocks the caller instead of
/// dropping the line: lossless; ftlog's default is to drop), `utc()`, and
/// `root(FileAppender::new(path))` (ftlog's file appender: a `BufWriter`
/// over the file, flushed by the log thread at least once a second and on
/// `Log::flush`). Default features (its `random_drop` feature drops nothing
/// unless a call asks for it).
pub struct Ftlog {
    logger: Option<ftlog::Logger>,
    path: PathBuf,
    previous_level: log::LevelFilter,
}

impl Ftlog {
    /// A new logger writing to a new file at `path`.
    pub fn new(path: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_file(path);
        let logger = ftlog::builder()
            .max_log_level(log::LevelFilter::Info)
            .bounded(QUEUE, true)
            .utc()
            .root(ftlog::appender::FileAppender::new(path))
            .build()
            .map_err(|e| format!("ftlog build: {e}"))?;
        let previous_level = log::max_level();
        log::set_max_level(log::LevelFilter::Info);
        Ok(Ftlog {
            logger: Some(logger),
            path: path.to_path_buf(),
            previous_level,
        })
    }
}

impl Drop for Ftlog {
    fn drop(&mut self) {
        log::set_max_level(self.previous_level);
    }
}

impl Producer for Ftlog {
    fn log_one(&self, text: &str) -> Result<(), String> {
        let logger = self.logger.as_ref().ok_or("ftlog: finished")?;
        log::info!(logger: logger, "{}", text);
        Ok(())
    }

    fn finish(&mut self, entries: u64) -> Result<(), String> {
        if let Some(logger) = self.logger.take() {
            // Returns once the log thread has written every queued line and
            // flushed the appender; dropping the logger then closes the
            // channel, which ends the log thread.
            log::Log::flush(&logger);
        }
        check_lines("ftlog", &self.path, entries)
    }
}

/// spdlog-rs with its asynchronous sink: a `Logger` whose only sink is an
/// `AsyncPoolSink` over a `FileSink`; every call is
/// `spdlog::info!(logger: logger, "{}", text)`.
///
/// Configuration: `AsyncPoolSink` with `OverflowPolicy::Block` (its default:
/// a full queue blocks the caller, lossless) on its own `ThreadPool` with
/// the default capacity (8,192 queued operations, one worker thread);
/// `FileSink` with its default `BufWriter` and default `FullFormatter`
/// (crate feature `source-location` on, so the line carries the module
/// path, file and line). The logger's default level filter (`Info` and
/// more severe). The clock runs until the pool's worker has written every
/// line: `finish` flushes the logger, drops it (and with it the sinks), and
/// drops the pool, which joins its worker once the queue is empty.
pub struct SpdlogAsync {
    logger: Option<spdlog::Logger>,
    pool: Option<Arc<spdlog::ThreadPool>>,
    path: PathBuf,
}

impl SpdlogAsync {
    /// A new logger writing to a new file at `path`.
    pub fn new(path: &Path) -> Result<Self, String> {
        let err = |e: spdlog::Error| format!("spdlog-rs: {e}");
        let file = spdlog::sink::FileSink::builder()
            .path(path)
            .truncate(true)
            .build_arc()
            .map_err(err)?;
        let pool = spdlog::ThreadPool::builder().build_arc().map_err(err)?;
        let sink = spdlog::sink::AsyncPoolSink::builder()
            .sink(file)
            .overflow_policy(spdlog::sink::OverflowPolicy::Block)
            .thread_pool(pool.clone())
            .build_arc()
            .map_err(err)?;
        let logger = spdlog::Logger::builder().sink(sink).build().map_err(err)?;
        Ok(SpdlogAsync {
            logger: Some(logger),
            pool: Some(pool),
            path: path.to_path_buf(),
        })
    }
}

impl Producer for SpdlogAsync {
    fn log_one(&self, text: &str) -> Result<(), String> {
        let logger = self.logger.as_ref().ok_or("spdlog-rs: finished")?;
        spdlog::info!(logger: logger, "{}", text);
        Ok(())
    }

    fn finish(&mut self, entries: u64) -> Result<(), String> {
        if let Some(logger) = self.logger.take() {
            // Queues a flush behind every queued line.
            logger.flush();
        }
        // The last reference to the pool: its drop waits for the worker to
        // run every queued task (the file sink, dropped with its last task,
        // flushes its buffer) and joins it.
        if let Some(pool) = self.pool.take() {
            let pool = Arc::try_unwrap(pool)
                .map_err(|_| "spdlog-rs: the thread pool is still shared".to_string())?;
            drop(pool);
        }
        check_lines("spdlog-rs", &self.path, entries)
    }
}

/// fast_log as its documentation sets it up, installed as the process's
/// global `log` logger (only in the child process of [`fast_log_child`]):
/// every call is `log::info!("{}", text)`.
///
/// Configuration: `fast_log::init(Config::new().file(path)
/// .chan_len(Some(QUEUE)).level(Info).format(FastLogFormat::new()
/// .set_display_line_level(Info).set_time_type(Utc)))`: a bounded channel
/// whose `send` blocks when full (lossless; its default is an unbounded
/// channel, lossless too but with no bound on memory), its default single
/// formatting worker, and its `FileAppender` (one `write` per batch of
/// records taken from the channel).
struct FastLogGlobal {
    path: PathBuf,
}

impl FastLogGlobal {
    fn install(path: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_file(path);
        let format = fast_log::FastLogFormat::new()
            .set_display_line_level(log::LevelFilter::Info)
            .set_time_type(fast_log::TimeType::Utc);
        let file = path.to_str().ok_or("fast_log: the path is not UTF-8")?;
        fast_log::init(
            fast_log::Config::new()
                .file(file)
                .chan_len(Some(QUEUE))
                .level(log::LevelFilter::Info)
                .format(format),
        )
        .map_err(|e| format!("fast_log init: {e}"))?;
        Ok(FastLogGlobal {
            path: path.to_path_buf(),
        })
    }
}

impl Producer for FastLogGlobal {
    fn log_one(&self, text: &str) -> Result<(), String> {
        log::info!("{}", text);
        Ok(())
    }

    fn finish(&mut self, entries: u64) -> Result<(), String> {
        // fast_log's flush sends a flush command down the channel behind
        // every queued record and waits until the file appender has written
        // them all and flushed.
        log::logger().flush();
        check_lines("fast_log", &self.path, entries)
    }
}

/// The body of the hidden scenario `fast-log-child`: installs fast_log
/// writing to `path`, drives `threads` producers logging `text` for
/// `duration`, checks the file, and returns the run's figures as JSON (see
/// [`drive_to_json`]). Call it once per process.
pub fn fast_log_child(
    path: &Path,
    threads: usize,
    duration: Duration,
    text: &str,
) -> Result<serde_json::Value, String> {
    let mut p = FastLogGlobal::install(path)?;
    let d = drive(&mut p, threads, duration, text, false)?;
    Ok(drive_to_json(&d))
}

/// A [`Drive`] without its latency histogram, as JSON.
pub fn drive_to_json(d: &Drive) -> serde_json::Value {
    json!({
        "entries": d.entries,
        "written": d.written,
        "elapsed_ns": d.elapsed.as_nanos() as u64,
        "cpu_ns": d.cpu.as_nanos() as u64,
        "producing_ns": d.producing.as_nanos() as u64,
        "peak_rss": d.peak_rss,
        "rss_before": d.rss_before,
        "wchar": d.wchar,
    })
}

/// The [`Drive`] that [`drive_to_json`] (or the RocksDB peer's binary, whose
/// line has the same fields) wrote; no latency histogram.
pub fn drive_from_json(v: &serde_json::Value) -> Result<Drive, String> {
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("no `{k}` in {v}"))
    };
    Ok(Drive {
        entries: field("entries")?,
        written: field("written")?,
        elapsed: Duration::from_nanos(field("elapsed_ns")?),
        cpu: Duration::from_nanos(field("cpu_ns")?),
        latency: None,
        producing: Duration::from_nanos(field("producing_ns")?),
        peak_rss: field("peak_rss")?,
        rss_before: field("rss_before")?,
        wchar: field("wchar")?,
    })
}

/// Runs `program` with `args` and parses the last line of its standard
/// output as JSON; its standard error passes through.
pub fn run_json_child(program: &Path, args: &[String]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{}: no output", program.display()))?;
    serde_json::from_str(line).map_err(|e| format!("{}: {e} in {line}", program.display()))
}

/// One fast_log run in a child process (this executable with the hidden
/// scenario `fast-log-child`): `threads` producers for `duration`, writing
/// the file at `path`. The child checks that the file holds one line per
/// entry before it answers.
pub fn run_fast_log(path: &Path, threads: usize, duration: Duration) -> Result<Drive, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let args = vec![
        "fast-log-child".to_string(),
        "--secs".into(),
        duration.as_secs_f64().to_string(),
        "--child-threads".into(),
        threads.to_string(),
        "--child-file".into(),
        path.display().to_string(),
    ];
    drive_from_json(&run_json_child(&exe, &args)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftlog_writes_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ftlog.log");
        let mut p = Ftlog::new(&path).unwrap();
        let d = drive(&mut p, 4, Duration::from_millis(50), "hello", false).unwrap();
        drop(p);
        assert_eq!(count_lines(&path).unwrap(), d.written);
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.contains("INFO"), "{first}");
        assert!(first.contains("logger_peers.rs:"), "{first}");
        assert!(first.ends_with("hello"), "{first}");
    }

    #[test]
    fn spdlog_writes_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spdlog.log");
        let mut p = SpdlogAsync::new(&path).unwrap();
        let d = drive(&mut p, 4, Duration::from_millis(50), "hello", false).unwrap();
        assert_eq!(count_lines(&path).unwrap(), d.written);
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.contains("[info]"), "{first}");
        assert!(first.contains("logger_peers.rs:"), "{first}");
        assert!(first.ends_with("hello"), "{first}");
    }

    #[test]
    fn check_lines_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(check_lines("x", &path, 2).is_ok());
        assert!(check_lines("x", &path, 3).is_err());
    }

    #[test]
    fn drive_round_trips_through_json() {
        let d = Drive {
            entries: 5,
            written: 6,
            elapsed: Duration::from_nanos(7),
            cpu: Duration::from_nanos(8),
            latency: None,
            producing: Duration::from_nanos(9),
            peak_rss: 10,
            rss_before: 11,
            wchar: 12,
        };
        let back = drive_from_json(&drive_to_json(&d)).unwrap();
        assert_eq!(drive_to_json(&back), drive_to_json(&d));
    }
}
