//! The logger core, through the public API: levels, templates (checked at
//! `configure`), both console streams, the JSON format against the Python
//! reference's files, the `None`/`Flush` promises (a SIGKILLed writer keeps
//! every acknowledged entry), backpressure and counted drops, errors reaching
//! the caller, paths and permissions, nested contexts, models, executors,
//! the macros, closing and dropping.
//!
//! Console output and `HYPERLOG_LEVEL` are tested in child processes: the
//! parent re-runs this test executable on the ignored test [`core_child`]
//! with an environment variable naming the scenario, and checks what the
//! child wrote to its stdout and stderr. No test sets an environment
//! variable in its own process.
//!
//! No test asserts on time taken; deadlines only turn a hang into a failure.

mod common;
#[path = "support/core_fs.rs"]
mod core_fs;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use core_fs::{FailFs, Gate, GateFs, OpenOnDrop};
use futures::StreamExt;
use hyperlog::format::encode_log;
use hyperlog::{
    ConsoleStream, ContextOptions, DurabilityMode, Entry, Error, LEVEL_ENV, Log, LogFormat,
    LogLevel, Logger, Lsn, Message, ReadOptions,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest any wait may last before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(120);

/// The ignored test that child processes run.
const CHILD: &str = "core_child";
/// Names the child's scenario.
const SCENARIO_ENV: &str = "HYPERLOG_CORE_CHILD";
/// A file path handed to the child.
const PATH_ENV: &str = "HYPERLOG_CORE_PATH";

/// The reference's user entry type: the base fields, then its own.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct JobCreated {
    message: Option<String>,
    tags: BTreeSet<String>,
    level: LogLevel,
    job_id: u64,
    owner: String,
}

impl Entry for JobCreated {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn job(message: &str, level: LogLevel, job_id: u64) -> JobCreated {
    JobCreated {
        message: Some(message.to_string()),
        tags: BTreeSet::new(),
        level,
        job_id,
        owner: "ops".to_string(),
    }
}

/// An entry carrying a sequence number (for the kill test).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Seq {
    level: LogLevel,
    message: Option<String>,
    seq: u64,
}

impl Entry for Seq {
    fn level(&self) -> LogLevel {
        self.level
    }
}

/// An entry whose serialization always fails.
struct Unserializable(LogLevel);

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "boom: this entry refuses to serialize",
        ))
    }
}

impl Entry for Unserializable {
    fn level(&self) -> LogLevel {
        self.0
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Every entry of a log, decoded into `T`; any read error fails the test.
fn read_all<T: DeserializeOwned>(path: &Path) -> Vec<Log<T>> {
    hyperlog::read_entries_blocking::<T>(path, 0, ReadOptions::default())
        .map(|item| {
            item.unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
                .1
        })
        .collect()
}

/// The message texts of a log, in file order.
fn messages(path: &Path) -> Vec<String> {
    read_all::<Message>(path)
        .into_iter()
        .map(|l| l.entry.message.unwrap_or_default())
        .collect()
}

/// The levels of a log's entries, in file order.
fn levels(path: &Path) -> Vec<LogLevel> {
    read_all::<Message>(path)
        .into_iter()
        .map(|l| l.entry.level)
        .collect()
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Runs `f` on its own thread and fails the test if it does not finish
/// within the deadline (or panics).
fn with_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not done within {DEADLINE:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Polls `cond` until it holds; fails the test at the deadline.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The process umask (from /proc on Linux; 0o022 if unknown).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// What a child process wrote.
struct ChildOutput {
    stdout: String,
    stderr: String,
}

impl ChildOutput {
    /// The one stdout line that contains `marker`.
    fn stdout_line(&self, marker: &str) -> &str {
        one_line(&self.stdout, marker, "stdout", self)
    }

    /// The one stderr line that contains `marker`.
    fn stderr_line(&self, marker: &str) -> &str {
        one_line(&self.stderr, marker, "stderr", self)
    }
}

fn one_line<'a>(text: &'a str, marker: &str, stream: &str, all: &ChildOutput) -> &'a str {
    let found: Vec<&str> = text.lines().filter(|l| l.contains(marker)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {stream} line containing {marker:?}\n--- stdout\n{}\n--- stderr\n{}",
        all.stdout,
        all.stderr
    );
    found[0]
}

fn read_pipe(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// A command that re-runs this test executable on [`core_child`] with
/// `scenario`. `HYPERLOG_LEVEL` is removed unless `envs` sets it.
fn child_command(scenario: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", CHILD, "--nocapture", "--ignored"])
        .env(SCENARIO_ENV, scenario)
        .env_remove(LEVEL_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a child scenario to completion and checks that its test passed.
fn run_child(scenario: &str, envs: &[(&str, &str)]) -> ChildOutput {
    let mut child = child_command(scenario, envs)
        .spawn()
        .expect("spawn the child process");
    let out = read_pipe(child.stdout.take());
    let err = read_pipe(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child scenario {scenario:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = ChildOutput {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(
        status.success() && output.stdout.contains("1 passed"),
        "child scenario {scenario:?} failed ({status})\n--- stdout\n{}\n--- stderr\n{}",
        output.stdout,
        output.stderr
    );
    output
}

/// Checks one console line rendered with the default template
/// `{timestamp} - {level} - {thread_id} - {filename}:{function_name}.{line_number} - {message}`.
fn assert_default_line(line: &str, level: &str, message: &str) {
    let parts: Vec<&str> = line.splitn(5, " - ").collect();
    assert_eq!(parts.len(), 5, "not the default template: {line:?}");
    let ts = parts[0];
    assert!(
        ts.len() == 32 && ts.ends_with("+00:00"),
        "timestamp {ts:?} in {line:?}"
    );
    ts.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("timestamp {ts:?} in {line:?}: {e}"));
    assert_eq!(parts[1], level, "level in {line:?}");
    let tid: u64 = parts[2]
        .parse()
        .unwrap_or_else(|e| panic!("thread id {:?} in {line:?}: {e}", parts[2]));
    assert!(tid > 0, "thread id in {line:?}");
    let site = parts[3];
    assert!(
        site.starts_with(concat!(file!(), ":")),
        "call site {site:?} in {line:?} should start with this file"
    );
    let (_, line_no) = site
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("call site {site:?} has no .line"));
    assert!(
        !line_no.is_empty() && line_no.bytes().all(|b| b.is_ascii_digit()),
        "line number in {site:?}"
    );
    assert_eq!(parts[4], message, "message in {line:?}");
}

// ---------------------------------------------------------------------------
// The child process
// ---------------------------------------------------------------------------

/// Run by the parent tests in a child process; does nothing when run
/// directly (no scenario in the environment).
#[test]
#[ignore = "child process for the console, HYPERLOG_LEVEL and SIGKILL tests of logger_core.rs"]
fn core_child() {
    let Ok(scenario) = std::env::var(SCENARIO_ENV) else {
        return;
    };
    match scenario.as_str() {
        "stdout" => child_stdout(),
        "stderr" => child_stderr(),
        "errors_to_stderr" => child_errors_to_stderr(),
        "level_env" => child_level_env(),
        "level_env_wal" => child_level_env_wal(),
        "template" => child_template(),
        "flush_kill" => child_flush_kill(),
        other => panic!("unknown child scenario {other:?}"),
    }
}

fn child_stdout() {
    let logger = Logger::new();
    // A name never configured: console, stdout, INFO.
    let ctx = logger.context_blocking("console").unwrap();
    assert_eq!(ctx.path(), None);
    ctx.log_blocking(Message::info("hello <M-OUT-INFO>"))
        .unwrap();
    block_on(ctx.log(Message::error("failed <M-OUT-ERROR>"))).unwrap();
    ctx.log_blocking(Message::debug("hidden <M-OUT-DEBUG>"))
        .unwrap();
    hyperlog::warn!(blocking: ctx, "from the macro <M-OUT-MACRO>").unwrap();
    logger.close_blocking().unwrap();
}

fn child_stderr() {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "to-stderr",
            ContextOptions::new().console(ConsoleStream::Stderr),
        )
        .unwrap();
    ctx.log_blocking(Message::info("hello <M-ERR-INFO>"))
        .unwrap();
    block_on(ctx.log(Message::error("failed <M-ERR-ERROR>"))).unwrap();
    logger.close_blocking().unwrap();
}

fn child_errors_to_stderr() {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("split", ContextOptions::new().errors_to_stderr(true))
        .unwrap();
    for level in [
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Fatal,
    ] {
        ctx.log_blocking(Message::new(level, format!("<M-SPLIT-{level}>")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
}

fn child_level_env() {
    let logger = Logger::new();
    // No explicit level: HYPERLOG_LEVEL applies (and a bad value is an error).
    let configured = logger.configure("lvl", ContextOptions::new());
    let mut out = std::io::stdout().lock();
    if let Err(e) = configured {
        writeln!(out, "<M-LVL-CONFIGURE-ERR> {e}").unwrap();
        out.flush().unwrap();
        return;
    }
    drop(out);
    let ctx = logger.context_blocking("lvl").unwrap();
    // An explicit level wins over the variable.
    let explicit = logger
        .context_with_blocking("lvl-explicit", ContextOptions::new().level(LogLevel::Warn))
        .unwrap();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "<M-LVL-IN-FORCE> {}", ctx.level()).unwrap();
        writeln!(out, "<M-LVL-EXPLICIT-IN-FORCE> {}", explicit.level()).unwrap();
        out.flush().unwrap();
    }
    for level in [LogLevel::Trace, LogLevel::Debug, LogLevel::Info] {
        ctx.log_blocking(Message::new(level, format!("<M-LVL-{level}>")))
            .unwrap();
        explicit
            .log_blocking(Message::new(level, format!("<M-LVL-EXPLICIT-{level}>")))
            .unwrap();
    }
    // A file context too: its default level (INFO) is overridden the same way.
    let path = std::env::var(PATH_ENV).unwrap();
    let file = logger
        .context_with_blocking("lvl-file", ContextOptions::new().path(&path))
        .unwrap();
    file.log_blocking(Message::trace("file trace")).unwrap();
    file.log_blocking(Message::debug("file debug")).unwrap();
    file.log_blocking(Message::info("file info")).unwrap();
    logger.close_blocking().unwrap();
}

/// Under `HYPERLOG_LEVEL=error`: write-ahead logs (contexts that sync or
/// carry LSNs) drop nothing; a data-plane context is filtered by the
/// variable unless it sets a level itself. Prints each acknowledged LSN as
/// `<M-WAL-ACK> {file} {lsn}` for the parent to read back.
fn child_level_env_wal() {
    let dir = PathBuf::from(std::env::var(PATH_ENV).unwrap());
    let logger = Logger::new();
    let wal = |name: &str, o: ContextOptions| {
        logger
            .context_with_blocking(name, o.path(dir.join(format!("{name}.wal"))))
            .unwrap()
    };
    let binary = || ContextOptions::new().format(LogFormat::Binary);
    let wals = [
        // The reported case: a WAL context with an explicit TRACE level.
        wal(
            "batch-trace",
            binary()
                .durability(DurabilityMode::FsyncBatch)
                .enable_lsn(true)
                .level(LogLevel::Trace),
        ),
        // No level at all: the default minimum level does not apply either.
        wal(
            "batch",
            binary()
                .durability(DurabilityMode::FsyncBatch)
                .enable_lsn(true),
        ),
        wal(
            "fsync",
            binary().durability(DurabilityMode::Fsync).enable_lsn(true),
        ),
        // LSNs without syncing, and syncing without LSNs, are WALs too.
        wal(
            "flush-lsn",
            binary().durability(DurabilityMode::Flush).enable_lsn(true),
        ),
        wal("fsync-no-lsn", binary().durability(DurabilityMode::Fsync)),
    ];
    let mut out = std::io::stdout().lock();
    for ctx in &wals {
        assert_eq!(ctx.level(), LogLevel::Trace, "{}", ctx.name());
        let lsn_enabled = ctx.name() != "fsync-no-lsn";
        for i in 0..5 {
            let msg = Message::info(format!("{} command {i}", ctx.name()));
            let ack = if i % 2 == 0 {
                ctx.log_blocking(msg).unwrap()
            } else {
                block_on(ctx.log(msg)).unwrap()
            };
            assert_eq!(
                ack.is_some(),
                lsn_enabled,
                "{} entry {i}: {ack:?}",
                ctx.name()
            );
            let shown = ack.map_or("none".to_string(), |l| l.get().to_string());
            writeln!(out, "<M-WAL-ACK> {} {shown}", ctx.name()).unwrap();
        }
        // Below INFO as well: a command log is never filtered by default.
        let ack = ctx.log_blocking(Message::debug(format!("{} debug", ctx.name())));
        assert_eq!(ack.unwrap().is_some(), lsn_enabled, "{}", ctx.name());
        writeln!(out, "<M-WAL-DEBUG> {}", ctx.name()).unwrap();
    }
    out.flush().unwrap();
    drop(out);

    // The data plane: the variable filters a context without a level...
    let data = logger
        .context_with_blocking(
            "data",
            ContextOptions::new().path(dir.join("data.log.json")),
        )
        .unwrap();
    assert_eq!(data.level(), LogLevel::Error);
    assert_eq!(data.log_blocking(Message::info("data info")).unwrap(), None);
    assert_eq!(data.log_blocking(Message::warn("data warn")).unwrap(), None);
    data.log_blocking(Message::error("data error")).unwrap();
    // ...but not one with an explicit level.
    let traced = logger
        .context_with_blocking(
            "traced",
            ContextOptions::new()
                .path(dir.join("traced.log.json"))
                .level(LogLevel::Trace),
        )
        .unwrap();
    assert_eq!(traced.level(), LogLevel::Trace);
    traced.log_blocking(Message::trace("traced trace")).unwrap();
    traced.log_blocking(Message::info("traced info")).unwrap();
    logger.close_blocking().unwrap();
}

fn child_template() {
    let logger = Logger::new();
    let esc = logger
        .context_with_blocking(
            "tpl",
            ContextOptions::new()
                .template("{{{level}}} {message} }} {{message}} {level:<5}|{context}"),
        )
        .unwrap();
    esc.log_blocking(Message::info("<M-TPL-ESC>")).unwrap();

    let fields = logger
        .context_with_blocking(
            "fields",
            ContextOptions::new()
                .template("job={job_id} owner={owner} msg={message}")
                .template_fields(["job_id", "owner"]),
        )
        .unwrap();
    fields
        .log_blocking(job("<M-TPL-FIELDS>", LogLevel::Info, 42))
        .unwrap();
    // A declared field that an entry lacks renders empty.
    fields
        .log_blocking(Message::info("<M-TPL-MISSING>"))
        .unwrap();

    let models = logger
        .context_with_blocking(
            "models",
            ContextOptions::new()
                .template("[{level}] {job_id}/{owner}: {message} ({tags})")
                .model("job", |text| job(text, LogLevel::Warn, 7)),
        )
        .unwrap();
    block_on(models.log_prepared("<M-TPL-MODEL>", "job")).unwrap();
    models
        .log_blocking(Message::info("<M-TPL-TAGS>").tag("b").tag("a"))
        .unwrap();
    logger.close_blocking().unwrap();
}

fn child_flush_kill() {
    let path = std::env::var(PATH_ENV).unwrap();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "killed",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::Flush)
                .format(LogFormat::Json),
        )
        .unwrap();
    let start = Instant::now();
    let stdout = std::io::stdout();
    for seq in 0..1_000_000u64 {
        ctx.log_blocking(Seq {
            level: LogLevel::Info,
            message: Some(format!("entry {seq}")),
            seq,
        })
        .unwrap();
        let mut out = stdout.lock();
        // The parent gone (pipe closed) or a runaway child: stop.
        if writeln!(out, "ACK {seq}").is_err() || out.flush().is_err() {
            return;
        }
        if start.elapsed() > DEADLINE {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Levels
// ---------------------------------------------------------------------------

#[test]
fn levels_order_parse_and_serialize_like_the_reference() {
    let names = [
        "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "FATAL",
    ];
    assert_eq!(LogLevel::ALL.len(), names.len());
    for w in LogLevel::ALL.windows(2) {
        assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
    }
    assert!(LogLevel::Trace < LogLevel::Fatal);
    assert_eq!(LogLevel::default(), LogLevel::Info);
    for (level, name) in LogLevel::ALL.into_iter().zip(names) {
        assert_eq!(level.as_str(), name);
        assert_eq!(level.to_string(), name);
        assert_eq!(
            serde_json::to_string(&level).unwrap(),
            format!("\"{name}\"")
        );
        let lower = name.to_lowercase();
        let mixed: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        for spelling in [name.to_string(), lower, mixed] {
            assert_eq!(spelling.parse::<LogLevel>().unwrap(), level, "{spelling}");
            assert_eq!(
                serde_json::from_str::<LogLevel>(&format!("\"{spelling}\"")).unwrap(),
                level,
                "{spelling}"
            );
        }
    }
    match "verbose".parse::<LogLevel>() {
        Err(Error::UnknownLevel(s)) => assert_eq!(s, "verbose"),
        other => panic!("expected UnknownLevel, got {other:?}"),
    }
    assert!(serde_json::from_str::<LogLevel>("\"verbose\"").is_err());
    assert!(serde_json::from_str::<LogLevel>("2").is_err());
    // Display honours width and alignment (templates pad levels).
    assert_eq!(format!("{:<8}|", LogLevel::Warn), "WARN    |");
    // Inside an entry: the upper-case name; a lower-case one reads back.
    assert_eq!(
        serde_json::to_string(&Message::critical("x")).unwrap(),
        r#"{"message":"x","tags":[],"level":"CRITICAL"}"#
    );
    let m: Message = serde_json::from_str(r#"{"message":"x","tags":[],"level":"warn"}"#).unwrap();
    assert_eq!(m.level, LogLevel::Warn);
}

#[test]
fn entries_below_the_context_level_are_not_written() {
    let dir = tempdir();
    let logger = Logger::new();
    // The default minimum level is INFO.
    let path = dir.path().join("default.log.json");
    let ctx = logger
        .context_with_blocking("default-level", ContextOptions::new().path(&path))
        .unwrap();
    assert_eq!(ctx.level(), LogLevel::Info);
    for level in LogLevel::ALL {
        assert_eq!(
            ctx.log_blocking(Message::new(level, level.as_str()))
                .unwrap(),
            None
        );
    }
    ctx.close_blocking().unwrap();
    assert_eq!(
        levels(&path),
        [
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical,
            LogLevel::Fatal
        ]
    );

    // Every minimum level lets through exactly the levels at or above it.
    for min in LogLevel::ALL {
        let path = dir.path().join(format!("min-{min}.log.json"));
        let ctx = logger
            .context_with_blocking(
                &format!("min-{min}"),
                ContextOptions::new().path(&path).level(min),
            )
            .unwrap();
        assert_eq!(ctx.level(), min);
        for level in LogLevel::ALL {
            block_on(ctx.log(Message::new(level, level.as_str()))).unwrap();
        }
        ctx.close_blocking().unwrap();
        let expected: Vec<LogLevel> = LogLevel::ALL.into_iter().filter(|l| *l >= min).collect();
        assert_eq!(levels(&path), expected, "minimum level {min}");
    }
}

#[test]
fn level_debug_lets_debug_through_but_not_trace() {
    let dir = tempdir();
    let path = dir.path().join("debug.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "debug",
            ContextOptions::new().path(&path).level(LogLevel::Debug),
        )
        .unwrap();
    ctx.log_blocking(Message::trace("t")).unwrap();
    ctx.log_blocking(Message::debug("d")).unwrap();
    hyperlog::debug!(blocking: ctx, "d{}", 2).unwrap();
    hyperlog::trace!(blocking: ctx, "t{}", 2).unwrap();
    ctx.log_blocking(Message::info("i")).unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(messages(&path), ["d", "d2", "i"]);
}

#[test]
fn a_filtered_entry_is_not_serialized() {
    let dir = tempdir();
    let path = dir.path().join("ser.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("ser", ContextOptions::new().path(&path))
        .unwrap();
    // Below the level: discarded before serialization, so no error.
    assert_eq!(
        block_on(ctx.log(Unserializable(LogLevel::Debug))).unwrap(),
        None
    );
    // At the level: the serialization error reaches the caller...
    match block_on(ctx.log(Unserializable(LogLevel::Info))) {
        Err(e @ Error::Serialize { .. }) => {
            assert!(e.to_string().contains("boom"), "{e}")
        }
        other => panic!("expected Error::Serialize, got {other:?}"),
    }
    // ...and does not break the context.
    ctx.log_blocking(Message::info("still fine")).unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(messages(&path), ["still fine"]);
}

#[test]
fn hyperlog_level_env_sets_the_level_of_contexts_without_one() {
    let dir = tempdir();
    let path = dir.path().join("env-level.log.json");
    let path_s = path.to_str().unwrap();

    let out = run_child("level_env", &[(LEVEL_ENV, "debug"), (PATH_ENV, path_s)]);
    assert!(
        out.stdout.contains("<M-LVL-IN-FORCE> DEBUG"),
        "{}",
        out.stdout
    );
    assert_default_line(out.stdout_line("<M-LVL-DEBUG>"), "DEBUG", "<M-LVL-DEBUG>");
    assert_default_line(out.stdout_line("<M-LVL-INFO>"), "INFO", "<M-LVL-INFO>");
    assert!(!out.stdout.contains("<M-LVL-TRACE>"), "{}", out.stdout);
    assert_eq!(messages(&path), ["file debug", "file info"]);
    // An explicit level wins over the variable.
    assert!(
        out.stdout.contains("<M-LVL-EXPLICIT-IN-FORCE> WARN"),
        "{}",
        out.stdout
    );
    for below in ["TRACE", "DEBUG", "INFO"] {
        let marker = format!("<M-LVL-EXPLICIT-{below}>");
        assert!(!out.stdout.contains(&marker), "{marker}: {}", out.stdout);
    }

    // The control: without the variable, the default INFO is in force.
    std::fs::remove_file(&path).unwrap();
    let out = run_child("level_env", &[(PATH_ENV, path_s)]);
    assert!(
        out.stdout.contains("<M-LVL-IN-FORCE> INFO"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("<M-LVL-DEBUG>"), "{}", out.stdout);
    assert_default_line(out.stdout_line("<M-LVL-INFO>"), "INFO", "<M-LVL-INFO>");
    assert_eq!(messages(&path), ["file info"]);

    // A value that is not a level is an error at configure time.
    let out = run_child("level_env", &[(LEVEL_ENV, "verbose"), (PATH_ENV, path_s)]);
    let line = out.stdout_line("<M-LVL-CONFIGURE-ERR>");
    assert!(
        line.contains("HYPERLOG_LEVEL") && line.contains("verbose"),
        "{line}"
    );
}

/// Issue #13 item 5: `HYPERLOG_LEVEL=warn` made WAL appends return `Ok(None)`
/// and write nothing, even with `.level(Trace)`. The variable (and the
/// default minimum level) never drop an entry of a context that syncs or
/// carries LSNs; an explicit level wins over the variable everywhere.
#[test]
fn hyperlog_level_env_never_filters_a_write_ahead_log() {
    let dir = tempdir();
    let out = run_child(
        "level_env_wal",
        &[
            (LEVEL_ENV, "error"),
            (PATH_ENV, dir.path().to_str().unwrap()),
        ],
    );
    for name in ["batch-trace", "batch", "fsync", "flush-lsn", "fsync-no-lsn"] {
        let path = dir.path().join(format!("{name}.wal"));
        let acked: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("<M-WAL-ACK> "))
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::to_string)
            .collect();
        assert_eq!(acked.len(), 5, "{name}: {}", out.stdout);
        let logs = read_all::<Message>(&path);
        let mut want: Vec<String> = (0..5).map(|i| format!("{name} command {i}")).collect();
        want.push(format!("{name} debug"));
        assert_eq!(
            logs.iter()
                .map(|l| l.entry.message.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            want,
            "{name}"
        );
        // Each entry is on disk with the LSN its caller was given.
        for (log, ack) in logs.iter().zip(&acked) {
            let on_disk = log.lsn.map_or("none".to_string(), |l| l.get().to_string());
            assert_eq!(&on_disk, ack, "{name}");
            assert_eq!(log.entry.level, LogLevel::Info, "{name}");
        }
        if name == "fsync-no-lsn" {
            assert!(acked.iter().all(|a| a == "none"), "{acked:?}");
        } else {
            assert!(acked.iter().all(|a| a != "none"), "{name}: {acked:?}");
            assert!(logs.last().unwrap().lsn.is_some(), "{name}");
        }
    }
    // The data plane: filtered by the variable without a level of its own...
    assert_eq!(messages(&dir.path().join("data.log.json")), ["data error"]);
    // ...and not with an explicit TRACE.
    assert_eq!(
        messages(&dir.path().join("traced.log.json")),
        ["traced trace", "traced info"]
    );
}

// ---------------------------------------------------------------------------
// 2. Templates
// ---------------------------------------------------------------------------

#[test]
fn bad_templates_are_refused_at_configure_time() {
    let dir = tempdir();
    let logger = Logger::new();
    // (template, where the problem is: a range of character positions)
    let cases: [(&str, std::ops::RangeInclusive<usize>); 7] = [
        ("ab {nope} cd", 3..=9),        // unknown placeholder
        ("ab {message cd", 3..=14),     // unclosed brace
        ("ab message} cd", 10..=10),    // lone '}'
        ("ab {message:>x} cd", 3..=15), // bad format spec
        ("ab {level:.} cd", 3..=12),    // bad precision
        ("ab {} cd", 3..=5),            // empty placeholder
        ("ab {mes{sage} cd", 3..=13),   // brace inside a placeholder
    ];
    for (template, at) in cases {
        for opts in [
            ContextOptions::new(),
            ContextOptions::new().path(dir.path().join("t.log.json")),
        ] {
            match logger.configure("t", opts.template(template)) {
                Err(Error::Template {
                    template: t,
                    position,
                    reason,
                }) => {
                    assert_eq!(t, template);
                    assert!(
                        at.contains(&position),
                        "{template:?}: position {position} not in {at:?} ({reason})"
                    );
                    assert!(!reason.is_empty());
                }
                other => panic!("{template:?}: expected Error::Template, got {other:?}"),
            }
        }
    }
    let e = logger
        .configure("t", ContextOptions::new().template("{nope}"))
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // A refused configuration registers nothing: the name opens with the
    // defaults (a console context), not with the refused file path.
    let t = logger.context_blocking("t").unwrap();
    assert_eq!(t.path(), None);
}

#[test]
fn template_escapes_fields_and_models_are_accepted() {
    let logger = Logger::new();
    for ok in [
        "{{",
        "}}",
        "{{nope}}",
        "{{{message}}}",
        "{level:<8}{message:.80}{thread_id:>6}{lsn:*^4}",
        "{timestamp} {filename} {function_name} {line_number} {context} {tags}",
        hyperlog::template::DEFAULT_TEMPLATE,
    ] {
        logger
            .configure("ok", ContextOptions::new().template(ok))
            .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    // Entry fields beyond the base ones must be declared...
    let e = logger
        .configure("f", ContextOptions::new().template("{job_id}"))
        .unwrap_err();
    assert!(matches!(e, Error::Template { .. }), "{e:?}");
    logger
        .configure(
            "f",
            ContextOptions::new()
                .template("{job_id} {owner}")
                .template_fields(["job_id", "owner"]),
        )
        .unwrap();
    // ...and only those declared are accepted.
    let e = logger
        .configure(
            "f",
            ContextOptions::new()
                .template("{job_id} {owner}")
                .template_fields(["job_id"]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("owner"), "{e}");
    // The fields of a registered model are accepted as placeholders.
    logger
        .configure(
            "m",
            ContextOptions::new()
                .template("{job_id}/{owner}: {message}")
                .model("job", |t| job(t, LogLevel::Info, 1)),
        )
        .unwrap();
    let e = logger
        .configure(
            "m",
            ContextOptions::new()
                .template("{job_id} {nope}")
                .model("job", |t| job(t, LogLevel::Info, 1)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn templates_render_escapes_specs_fields_and_models() {
    let out = run_child("template", &[]);
    assert_eq!(
        out.stdout_line("<M-TPL-ESC>"),
        "{INFO} <M-TPL-ESC> } {message} INFO |tpl"
    );
    assert_eq!(
        out.stdout_line("<M-TPL-FIELDS>"),
        "job=42 owner=ops msg=<M-TPL-FIELDS>"
    );
    assert_eq!(
        out.stdout_line("<M-TPL-MISSING>"),
        "job= owner= msg=<M-TPL-MISSING>"
    );
    assert_eq!(
        out.stdout_line("<M-TPL-MODEL>"),
        "[WARN] 7/ops: <M-TPL-MODEL> ()"
    );
    assert_eq!(
        out.stdout_line("<M-TPL-TAGS>"),
        "[INFO] /: <M-TPL-TAGS> (a,b)"
    );
    assert!(!out.stderr.contains("<M-TPL"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// 3. Console streams
// ---------------------------------------------------------------------------

#[test]
fn a_console_context_writes_to_stdout_by_default() {
    let out = run_child("stdout", &[]);
    assert_default_line(
        out.stdout_line("<M-OUT-INFO>"),
        "INFO",
        "hello <M-OUT-INFO>",
    );
    // Without errors_to_stderr, errors stay on stdout too.
    assert_default_line(
        out.stdout_line("<M-OUT-ERROR>"),
        "ERROR",
        "failed <M-OUT-ERROR>",
    );
    let line = out.stdout_line("<M-OUT-MACRO>");
    assert_default_line(line, "WARN", "from the macro <M-OUT-MACRO>");
    assert!(
        line.contains(":logger_core::child_stdout."),
        "the macro names its function: {line}"
    );
    assert!(!out.stdout.contains("<M-OUT-DEBUG>"), "{}", out.stdout);
    assert!(!out.stderr.contains("<M-OUT"), "{}", out.stderr);
}

#[test]
fn a_console_context_writes_to_stderr_when_asked() {
    let out = run_child("stderr", &[]);
    assert_default_line(
        out.stderr_line("<M-ERR-INFO>"),
        "INFO",
        "hello <M-ERR-INFO>",
    );
    assert_default_line(
        out.stderr_line("<M-ERR-ERROR>"),
        "ERROR",
        "failed <M-ERR-ERROR>",
    );
    assert!(!out.stdout.contains("<M-ERR"), "{}", out.stdout);
}

#[test]
fn errors_to_stderr_sends_error_and_above_to_stderr() {
    let out = run_child("errors_to_stderr", &[]);
    for level in ["INFO", "WARN"] {
        let marker = format!("<M-SPLIT-{level}>");
        assert_default_line(out.stdout_line(&marker), level, &marker);
        assert!(!out.stderr.contains(&marker), "{}", out.stderr);
    }
    for level in ["ERROR", "CRITICAL", "FATAL"] {
        let marker = format!("<M-SPLIT-{level}>");
        assert_default_line(out.stderr_line(&marker), level, &marker);
        assert!(!out.stdout.contains(&marker), "{}", out.stdout);
    }
}

// ---------------------------------------------------------------------------
// 4. JSON against the reference
// ---------------------------------------------------------------------------

fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/plain.log.json")
}

fn reference_lines() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(reference_path()).expect("read the reference fixture");
    let lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), 3, "the fixture holds three lines");
    lines
}

fn reference_log<T>(entry: T, timestamp: &str) -> Log<T> {
    Log {
        entry,
        filename: Some("hyperscale/logging/streams/logger_stream.py".into()),
        function_name: Some("log".into()),
        line_number: Some(724),
        thread_id: Some(6915),
        timestamp: Some(timestamp.into()),
        lsn: None,
    }
}

fn reference_logs() -> (Log<Message>, Log<Message>, Log<JobCreated>) {
    (
        reference_log(
            Message::info("hello world"),
            "2026-11-24T13:53:10.201385+00:00",
        ),
        reference_log(
            Message::warn("unicode ✓ \"quoted\"\nnewline").tag("a"),
            "2026-11-24T13:53:10.201579+00:00",
        ),
        reference_log(
            job("job", LogLevel::Error, 42),
            "2026-11-24T13:53:10.201717+00:00",
        ),
    )
}

fn assert_same_bytes(ours: &[u8], reference: &[u8], what: &str) {
    assert_eq!(
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(reference),
        "{what}"
    );
    assert_eq!(ours, reference, "{what}");
}

#[test]
fn json_lines_match_the_reference_byte_for_byte() {
    let lines = reference_lines();
    let (a, b, c) = reference_logs();
    let mut out = Vec::new();
    encode_log(LogFormat::Json, &a, &mut out).unwrap();
    assert_same_bytes(&out, &lines[0], "line 1: a base entry");
    out.clear();
    encode_log(LogFormat::Json, &b, &mut out).unwrap();
    assert_same_bytes(&out, &lines[1], "line 2: unicode, quotes, newline, a tag");
    out.clear();
    encode_log(LogFormat::Json, &c, &mut out).unwrap();
    assert_same_bytes(&out, &lines[2], "line 3: a user type with extra fields");
}

#[test]
fn reference_lines_decode_into_base_and_user_types() {
    let lines = reference_lines();
    let (a, b, c) = reference_logs();
    let base: Vec<Log<Message>> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(base[0], a);
    assert_eq!(base[1], b);
    // The extra fields are ignored by the base type.
    assert_eq!(
        base[2],
        reference_log(Message::error("job"), c.timestamp.as_deref().unwrap())
    );
    // ...and kept by the user type.
    let user: Log<JobCreated> = serde_json::from_slice(&lines[2]).unwrap();
    assert_eq!(user, c);
    assert_eq!(user.entry.job_id, 42);
    assert_eq!(user.entry.owner, "ops");
    // Decoding and encoding again gives the reference's bytes back.
    let mut out = Vec::new();
    encode_log(LogFormat::Json, &user, &mut out).unwrap();
    assert_same_bytes(&out, &lines[2], "re-encoded line 3");

    // The reader reads the reference's file as it is.
    let items: Vec<(u64, Log<Message>, Option<Lsn>)> =
        hyperlog::read_entries_blocking::<Message>(reference_path(), 0, ReadOptions::default())
            .collect::<Result<_, _>>()
            .unwrap();
    let offsets: Vec<u64> = items.iter().map(|i| i.0).collect();
    let l0 = lines[0].len() as u64;
    let l1 = lines[1].len() as u64;
    assert_eq!(offsets, [0, l0, l0 + l1]);
    assert!(items.iter().all(|i| i.2.is_none()));
    assert_eq!(items.into_iter().map(|i| i.1).collect::<Vec<_>>(), base);
}

#[test]
fn a_context_writes_lines_of_the_reference_shape() {
    let dir = tempdir();
    let path = dir.path().join("shape.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "shape",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::Flush)
                .format(LogFormat::Json),
        )
        .unwrap();
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u64;
    let line_no = line!() + 1;
    let r = block_on(ctx.log(Message::info("hi")));
    let after = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    assert_eq!(r.unwrap(), None, "no LSN without enable_lsn");
    ctx.close_blocking().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    let line = lines[0];
    assert!(
        line.starts_with(r#"{"entry":{"message":"hi","tags":[],"level":"INFO"},"filename":""#),
        "{line}"
    );
    assert!(line.ends_with(r#","lsn":null}"#), "{line}");
    // Fields in the reference's order.
    let keys = [
        r#"{"entry":"#,
        r#","filename":"#,
        r#","function_name":"#,
        r#","line_number":"#,
        r#","thread_id":"#,
        r#","timestamp":"#,
        r#","lsn":"#,
    ];
    let at: Vec<usize> = keys
        .iter()
        .map(|k| {
            line.find(k)
                .unwrap_or_else(|| panic!("{k} missing in {line}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "field order in {line}");

    // The values: this call site, this thread, now.
    let log: Log<Message> = serde_json::from_str(line).unwrap();
    assert_eq!(log.entry, Message::info("hi"));
    assert_eq!(log.filename.as_deref(), Some(file!()));
    // `#[track_caller]` knows no function: a string all the same, which
    // the reference's reader requires.
    assert_eq!(log.function_name.as_deref(), Some(""));
    assert_eq!(log.line_number, Some(line_no));
    assert_eq!(log.lsn, None);
    #[cfg(target_os = "linux")]
    assert_eq!(log.thread_id, Some(tid));
    let ts = log.timestamp.clone().unwrap();
    assert!(ts.len() == 32 && ts.ends_with("+00:00"), "{ts}");
    let parsed: jiff::Timestamp = ts.parse().unwrap();
    assert!(before <= parsed && parsed <= after, "{ts} is not now");
    // The line is exactly what encode_log makes of its own decoding.
    let mut out = Vec::new();
    encode_log(LogFormat::Json, &log, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
}

// ---------------------------------------------------------------------------
// 5. The None and Flush promises
// ---------------------------------------------------------------------------

#[test]
fn flush_mode_keeps_every_acknowledged_entry_when_the_process_is_killed() {
    const ACKS_BEFORE_KILL: usize = 300;
    let dir = tempdir();
    let path = dir.path().join("killed.log.json");
    let mut child = child_command("flush_kill", &[(PATH_ENV, path.to_str().unwrap())])
        .spawn()
        .expect("spawn the child process");
    let err = read_pipe(child.stderr.take());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut acked: Vec<u64> = Vec::new();
    let mut other = String::new();
    let start = Instant::now();
    while acked.len() < ACKS_BEFORE_KILL {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => match line.strip_prefix("ACK ") {
                Some(n) => acked.push(n.parse().unwrap()),
                None => {
                    other.push_str(&line);
                    other.push('\n');
                }
            },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "child ended or stalled after {} acknowledgements ({e:?})\n--- stdout\n{other}\n--- stderr\n{}",
                    acked.len(),
                    err.join().unwrap_or_default()
                );
            }
        }
    }
    // SIGKILL: no destructor, no flush, no close runs in the child.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status}");
    // Acknowledgements printed before the kill count too.
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => {
                if let Some(n) = line.strip_prefix("ACK ") {
                    acked.push(n.parse().unwrap());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child's stdout never closed"),
        }
    }
    assert!(acked.len() >= ACKS_BEFORE_KILL);
    assert!(
        acked.windows(2).all(|w| w[1] == w[0] + 1) && acked[0] == 0,
        "acknowledgements come in order"
    );

    let on_disk: Vec<u64> = read_all::<Seq>(&path)
        .into_iter()
        .map(|l| l.entry.seq)
        .collect();
    let last_acked = *acked.last().unwrap();
    assert!(
        on_disk.len() as u64 > last_acked,
        "{} acknowledged (last {last_acked}) but only {} entries on disk",
        acked.len(),
        on_disk.len()
    );
    // Every acknowledged entry is there, in order, once; the file may hold
    // a few more that were written but not yet acknowledged.
    let expected: Vec<u64> = (0..on_disk.len() as u64).collect();
    assert_eq!(
        on_disk, expected,
        "entries in order, without gaps or repeats"
    );
}

#[test]
fn none_mode_flush_and_close_write_everything_logged() {
    const N: usize = 500;
    let dir = tempdir();
    let path = dir.path().join("none.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "none",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::None),
        )
        .unwrap();
    assert_eq!(ctx.durability(), DurabilityMode::None);
    for i in 0..N {
        assert_eq!(
            block_on(ctx.log(Message::info(i.to_string()))).unwrap(),
            None
        );
    }
    block_on(ctx.flush()).unwrap();
    assert_eq!(messages(&path), numbers(0..N), "after flush");
    for i in N..2 * N {
        ctx.log_blocking(Message::info(i.to_string())).unwrap();
    }
    ctx.flush_blocking().unwrap();
    assert_eq!(messages(&path), numbers(0..2 * N), "after flush_blocking");
    for i in 2 * N..3 * N {
        block_on(ctx.log(Message::info(i.to_string()))).unwrap();
    }
    block_on(ctx.close()).unwrap();
    assert_eq!(messages(&path), numbers(0..3 * N), "after close");
}

// ---------------------------------------------------------------------------
// 6. Backpressure and drops
// ---------------------------------------------------------------------------

const CAPACITY: usize = 2;

fn gated(path: &Path, gate: &Arc<Gate>, mode: DurabilityMode) -> ContextOptions {
    ContextOptions::new()
        .path(path)
        .durability(mode)
        .queue_capacity(CAPACITY)
        .batch_max_size(1)
        .file_system(Arc::new(GateFs { gate: gate.clone() }))
}

#[test]
fn a_full_queue_holds_producers_back_until_the_writer_catches_up() {
    full_queue_holds_back(false);
}

/// A blocking producer that finds the queue full writes the queue out
/// itself; with the writer busy it waits for it, so the bound still holds.
#[test]
fn a_full_queue_holds_blocking_producers_back_until_the_writer_catches_up() {
    full_queue_holds_back(true);
}

fn full_queue_holds_back(blocking: bool) {
    const N: usize = 20;
    let dir = tempdir();
    let path = dir.path().join("bp-none.log.json");
    let gate = Gate::closed();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("bp-none", gated(&path, &gate, DurabilityMode::None))
        .unwrap();
    let _open = OpenOnDrop(gate.clone());

    // One producer, logging in order; each acknowledgement is reported.
    let (tx, rx) = mpsc::channel();
    let producer = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                let m = Message::info(i.to_string());
                if blocking {
                    ctx.log_blocking(m).unwrap();
                } else {
                    block_on(ctx.log(m)).unwrap();
                }
                if tx.send(i).is_err() {
                    return;
                }
            }
        })
    };
    let mut done: Vec<usize> = Vec::new();
    // None acknowledges on enqueue, so some complete although nothing can
    // be written: one entry held in the writer's write, CAPACITY queued. A
    // blocking producer that found the queue full may instead be the one
    // held in the write, draining the queue: then CAPACITY are done.
    let held = if blocking { CAPACITY } else { CAPACITY + 1 };
    wait_until("a write at the gate and the queue full", || {
        done.extend(rx.try_iter());
        gate.arrived() >= 1 && done.len() >= held
    });
    // Give a wrong implementation the chance to accept more (this is not
    // a timing assertion: a correct one never exceeds the bound).
    std::thread::sleep(Duration::from_millis(300));
    done.extend(rx.try_iter());
    assert!(
        done.len() <= CAPACITY + 1,
        "{} of {N} log() calls completed while the writer was blocked; \
         the bound is queue_capacity ({CAPACITY}) + one group of batch_max_size (1)",
        done.len()
    );
    assert_eq!(gate.arrived(), 1, "one write at a time");

    gate.open();
    wait_until("every log() call to complete", || {
        done.extend(rx.try_iter());
        done.len() == N
    });
    assert_eq!(done, (0..N).collect::<Vec<_>>());
    producer.join().unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(messages(&path), numbers(0..N), "all written, in order");
}

/// Many blocking producers on a tiny None-mode queue: the producers that
/// find it full write it out themselves. Every entry arrives exactly once
/// and each producer's entries keep their order.
#[test]
fn none_mode_producers_that_drain_a_full_queue_keep_every_entry_in_order() {
    const THREADS: usize = 8;
    const PER: usize = 2_000;
    let dir = tempdir();
    let path = dir.path().join("none-full.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "none-full",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::None)
                .queue_capacity(4),
        )
        .unwrap();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    ctx.log_blocking(Message::info(format!("{t}:{i}"))).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    ctx.close_blocking().unwrap();
    let mut next = [0usize; THREADS];
    let all = messages(&path);
    assert_eq!(all.len(), THREADS * PER, "every entry written once");
    for m in all {
        let (t, i) = m.split_once(':').expect("t:i");
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "producer {t}'s entries in order");
        next[t] += 1;
    }
}

#[test]
fn flush_mode_log_futures_complete_only_after_the_write() {
    const N: usize = 10;
    let dir = tempdir();
    let path = dir.path().join("bp-flush.log.json");
    let gate = Gate::closed();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("bp-flush", gated(&path, &gate, DurabilityMode::Flush))
        .unwrap();
    let _open = OpenOnDrop(gate.clone());

    type LogFuture = Pin<Box<dyn Future<Output = Result<Option<Lsn>, Error>> + Send>>;
    let mut futs: Vec<Option<LogFuture>> = (0..N)
        .map(|i| Some(Box::pin(ctx.log(Message::info(i.to_string()))) as LogFuture))
        .collect();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut poll_all = |futs: &mut Vec<Option<LogFuture>>| -> usize {
        let mut ready = 0;
        for f in futs.iter_mut() {
            if let Some(fut) = f
                && let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx)
            {
                r.unwrap();
                *f = None;
                ready += 1;
            }
        }
        ready
    };
    assert_eq!(poll_all(&mut futs), 0, "nothing is written yet");
    wait_until("the writer at the gate", || gate.arrived() >= 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        poll_all(&mut futs),
        0,
        "Flush acknowledges only after write(2), and the write is held"
    );

    gate.open();
    let rest: Vec<LogFuture> = futs.into_iter().flatten().collect();
    assert_eq!(rest.len(), N);
    let results = with_deadline("the log() futures after the gate opened", move || {
        block_on(futures::future::join_all(rest))
    });
    for r in results {
        assert_eq!(r.unwrap(), None);
    }
    ctx.close_blocking().unwrap();
    assert_eq!(messages(&path), numbers(0..N), "all written, in order");
}

#[test]
fn drop_when_full_counts_drops_and_logs_a_warning() {
    const N: usize = 50;
    let dir = tempdir();
    let path = dir.path().join("drops.log.json");
    let gate = Gate::closed();
    let reported = Arc::new(Mutex::new(Vec::<Error>::new()));
    let logger = Logger::new();
    let ctx = {
        let reported = reported.clone();
        logger
            .context_with_blocking(
                "drops",
                gated(&path, &gate, DurabilityMode::None)
                    .drop_when_full(true)
                    .error_handler(move |e| reported.lock().unwrap().push(e.clone())),
            )
            .unwrap()
    };
    let _open = OpenOnDrop(gate.clone());

    ctx.log_blocking(Message::info("0")).unwrap();
    wait_until("the writer at the gate", || gate.arrived() >= 1);
    for i in 1..N {
        // Never waits: a full queue drops.
        assert_eq!(
            with_deadline("a dropping log_blocking", {
                let ctx = ctx.clone();
                move || ctx.log_blocking(Message::info(i.to_string()))
            })
            .unwrap(),
            None
        );
    }
    let dropped_while_held = ctx.stats().dropped_pending;
    assert_eq!(
        dropped_while_held,
        (N - 1 - CAPACITY) as u64,
        "with the writer held, all but {CAPACITY} of the later entries are dropped"
    );

    gate.open();
    match block_on(ctx.close()) {
        Ok(()) => {}
        // Drops are errors without a caller, so close may report them.
        Err(Error::Dropped { count, .. }) => assert!(count > 0),
        Err(e) => panic!("close: {e}"),
    }

    let logs = read_all::<Message>(&path);
    let mut written = Vec::new();
    let mut reported_in_file = 0u64;
    for l in &logs {
        let text = l.entry.message.clone().unwrap_or_default();
        match text.strip_prefix("hyperlog dropped ") {
            Some(rest) => {
                assert_eq!(l.entry.level, LogLevel::Warn, "{text}");
                let n: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {text:?}"));
                assert!(rest.contains("entries"), "{text}");
                reported_in_file += n;
            }
            None => written.push(text),
        }
    }
    assert!(
        reported_in_file > 0,
        "a WARN record reports the drops: {logs:?}"
    );
    assert_eq!(
        written.len() as u64 + reported_in_file,
        N as u64,
        "written + reported dropped = logged ({written:?})"
    );
    assert_eq!(reported_in_file, dropped_while_held);
    assert_eq!(
        written,
        numbers(0..CAPACITY + 1),
        "the accepted entries, in order"
    );
    let handled: u64 = reported
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            Error::Dropped { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(
        handled, reported_in_file,
        "the error handler hears of the drops"
    );
}

// ---------------------------------------------------------------------------
// 7. Errors reach the caller
// ---------------------------------------------------------------------------

fn assert_enospc(e: &Error, path: &Path) {
    match e {
        Error::Io {
            path: p, source, ..
        } => {
            assert_eq!(p, path, "{e}");
            assert_eq!(source.raw_os_error(), Some(28), "{e}");
        }
        other => panic!("expected Error::Io for ENOSPC, got {other:?}"),
    }
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "the message names the path: {e}"
    );
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
}

fn assert_poisoned(e: &Error, path: &Path) {
    match e {
        Error::Poisoned { path: p, first } => {
            assert_eq!(p, path, "{e}");
            assert_enospc(first, path);
        }
        other => panic!("expected Error::Poisoned, got {other:?}"),
    }
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn flush_mode_write_failure_reaches_the_caller_then_poisons() {
    let dir = tempdir();
    let path = dir.path().join("enospc.log.json");
    let fs = FailFs::default();
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "enospc",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::Flush)
                .file_system(Arc::new(fs.clone())),
        )
        .unwrap();
    ctx.log_blocking(Message::info("kept")).unwrap();
    fs.fail.store(true, Ordering::SeqCst);

    let e = block_on(ctx.log(Message::info("lost"))).unwrap_err();
    assert_enospc(&e, &path);
    assert!(fs.failures.load(Ordering::SeqCst) >= 1);

    // The context refuses further writes, even once the disk has room.
    fs.fail.store(false, Ordering::SeqCst);
    let e = block_on(ctx.log(Message::info("refused"))).unwrap_err();
    assert_poisoned(&e, &path);
    let e = ctx.log_blocking(Message::info("refused")).unwrap_err();
    assert_poisoned(&e, &path);
    let e = block_on(ctx.flush()).unwrap_err();
    assert_poisoned(&e, &path);
    assert_eq!(
        messages(&path),
        ["kept"],
        "the failed write left nothing behind"
    );

    // Opening the context again recovers.
    let again = block_on(logger.context("enospc")).unwrap();
    block_on(again.log(Message::info("recovered"))).unwrap();
    block_on(again.close()).unwrap();
    assert_eq!(messages(&path), ["kept", "recovered"]);
}

#[test]
fn flush_mode_write_failure_reaches_a_blocking_caller() {
    let dir = tempdir();
    let path = dir.path().join("enospc-blocking.log.json");
    let fs = FailFs::default();
    fs.fail.store(true, Ordering::SeqCst);
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "enospc-blocking",
            ContextOptions::new()
                .path(&path)
                .file_system(Arc::new(fs.clone())),
        )
        .unwrap();
    let e = ctx.log_blocking(Message::info("lost")).unwrap_err();
    assert_enospc(&e, &path);
    let e = ctx.log_blocking(Message::info("refused")).unwrap_err();
    assert_poisoned(&e, &path);
    let e = block_on(ctx.log(Message::info("refused"))).unwrap_err();
    assert_poisoned(&e, &path);
    drop(ctx);
    drop(logger);
    assert_eq!(messages(&path), Vec::<String>::new());
}

#[test]
fn none_mode_write_failure_goes_to_the_handler_and_the_next_flush() {
    let dir = tempdir();
    let path = dir.path().join("enospc-none.log.json");
    let fs = FailFs::default();
    let handled = Arc::new(Mutex::new(Vec::<Error>::new()));
    let logger = Logger::new();
    let ctx = {
        let handled = handled.clone();
        logger
            .context_with_blocking(
                "enospc-none",
                ContextOptions::new()
                    .path(&path)
                    .durability(DurabilityMode::None)
                    .file_system(Arc::new(fs.clone()))
                    .error_handler(move |e| handled.lock().unwrap().push(e.clone())),
            )
            .unwrap()
    };
    fs.fail.store(true, Ordering::SeqCst);
    // Accepted: None promises nothing more.
    assert_eq!(block_on(ctx.log(Message::info("lost"))).unwrap(), None);
    let e = block_on(ctx.flush()).unwrap_err();
    assert_enospc(&e, &path);
    {
        let handled = handled.lock().unwrap();
        assert!(!handled.is_empty(), "the error handler was called");
        assert_enospc(&handled[0], &path);
    }
    // Reported once; the context carries on when the disk has room again.
    fs.fail.store(false, Ordering::SeqCst);
    block_on(ctx.flush()).unwrap();
    block_on(ctx.log(Message::info("kept"))).unwrap();
    block_on(ctx.close()).unwrap();
    assert_eq!(messages(&path), ["kept"]);
}

// ---------------------------------------------------------------------------
// 8. Paths, nesting, models, executors, macros, closing
// ---------------------------------------------------------------------------

#[test]
fn a_path_without_extension_is_a_directory_named_after_the_context() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("svc", ContextOptions::new().path(&logs))
        .unwrap();
    let expected = logs.join("svc.log.json");
    assert_eq!(ctx.path(), Some(expected.as_path()));
    assert_eq!(ctx.file(), Some(expected.clone()));
    ctx.log_blocking(Message::info("in a directory")).unwrap();
    ctx.close_blocking().unwrap();
    assert!(logs.is_dir());
    assert_eq!(messages(&expected), ["in a directory"]);

    // Binary contexts name theirs {name}.wal.
    let wal = logger
        .context_with_blocking(
            "node",
            ContextOptions::new().path(&logs).format(LogFormat::Binary),
        )
        .unwrap();
    let expected = logs.join("node.wal");
    assert_eq!(wal.path(), Some(expected.as_path()));
    wal.log_blocking(Message::info("binary")).unwrap();
    wal.close_blocking().unwrap();
    assert_eq!(messages(&expected), ["binary"]);
}

#[test]
fn any_extension_names_the_file_itself() {
    let dir = tempdir();
    let logger = Logger::new();
    for ext in ["jsonl", "ndjson", "txt", "json", "log"] {
        let path = dir.path().join(format!("events.{ext}"));
        let ctx = logger
            .context_with_blocking(ext, ContextOptions::new().path(&path))
            .unwrap();
        assert_eq!(ctx.path(), Some(path.as_path()));
        ctx.log_blocking(Message::info(ext)).unwrap();
        ctx.close_blocking().unwrap();
        assert_eq!(messages(&path), [ext]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"entry":"#), "{text}");
    }
    // Nothing else was created.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "events.json",
            "events.jsonl",
            "events.log",
            "events.ndjson",
            "events.txt"
        ]
    );
}

#[test]
fn missing_parent_directories_are_created() {
    let dir = tempdir();
    let path = dir.path().join("a/b/c/deep.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("deep", ContextOptions::new().path(&path))
        .unwrap();
    ctx.log_blocking(Message::info("deep")).unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(messages(&path), ["deep"]);
}

#[cfg(unix)]
#[test]
fn new_files_have_mode_0o640() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let logger = Logger::new();
    let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let path = dir.path().join("mode.log.json");
    let ctx = logger
        .context_with_blocking("mode", ContextOptions::new().path(&path))
        .unwrap();
    ctx.log_blocking(Message::info("m")).unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(mode_of(&path), 0o640 & !umask(), "{:o}", mode_of(&path));

    let path = dir.path().join("mode600.log.json");
    let ctx = logger
        .context_with_blocking(
            "mode600",
            ContextOptions::new().path(&path).file_mode(0o600),
        )
        .unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(mode_of(&path), 0o600 & !umask(), "{:o}", mode_of(&path));
}

#[test]
fn a_nested_context_shares_the_stream_and_its_close_leaves_it_open() {
    let dir = tempdir();
    let path = dir.path().join("shared.log.json");
    let logger = Logger::new();
    let outer = logger
        .context_with_blocking("outer", ContextOptions::new().path(&path))
        .unwrap();
    let inner = logger
        .context_with_blocking("inner", ContextOptions::new().path(&path).nested(true))
        .unwrap();
    assert_eq!(inner.path(), Some(path.as_path()));
    outer.log_blocking(Message::info("outer 1")).unwrap();
    block_on(inner.log(Message::info("inner 1"))).unwrap();
    outer.log_blocking(Message::info("outer 2")).unwrap();
    block_on(inner.close()).unwrap();
    // The nested context is closed...
    assert!(matches!(
        inner.log_blocking(Message::info("inner 2")),
        Err(Error::Closed { .. })
    ));
    // ...its stream is not.
    block_on(outer.log(Message::info("outer 3"))).unwrap();
    block_on(outer.flush()).unwrap();
    assert_eq!(
        messages(&path),
        ["outer 1", "inner 1", "outer 2", "outer 3"]
    );
    block_on(outer.close()).unwrap();
    assert_eq!(
        messages(&path),
        ["outer 1", "inner 1", "outer 2", "outer 3"]
    );
}

#[test]
fn a_second_context_on_an_open_file_must_be_nested() {
    let dir = tempdir();
    let path = dir.path().join("locked.log.json");
    let logger = Logger::new();
    let first = logger
        .context_with_blocking("first", ContextOptions::new().path(&path))
        .unwrap();
    first.log_blocking(Message::info("first")).unwrap();
    match logger.context_with_blocking("second", ContextOptions::new().path(&path)) {
        Err(Error::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    // The refused open leaves the first context working.
    first.log_blocking(Message::info("first again")).unwrap();
    first.close_blocking().unwrap();
    assert_eq!(messages(&path), ["first", "first again"]);
}

#[test]
fn a_refused_open_does_not_hide_the_open_stream_from_nested_contexts() {
    let dir = tempdir();
    let path = dir.path().join("refused.log.json");
    let logger = Logger::new();
    let first = logger
        .context_with_blocking("first", ContextOptions::new().path(&path))
        .unwrap();
    first.log_blocking(Message::info("first")).unwrap();
    assert!(matches!(
        logger.context_with_blocking("second", ContextOptions::new().path(&path)),
        Err(Error::Locked { .. })
    ));
    // The first context's stream is still open: a nested context shares it.
    let nested = logger
        .context_with_blocking("third", ContextOptions::new().path(&path).nested(true))
        .unwrap();
    nested.log_blocking(Message::info("nested")).unwrap();
    nested.close_blocking().unwrap();
    first.log_blocking(Message::info("first again")).unwrap();
    first.close_blocking().unwrap();
    assert_eq!(messages(&path), ["first", "nested", "first again"]);
}

#[test]
fn log_prepared_builds_entries_from_registered_and_default_models() {
    let dir = tempdir();
    let path = dir.path().join("models.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "models",
            ContextOptions::new()
                .path(&path)
                .model("alert", |t| Message::error(t).tag("alert"))
                .model("job", |t| job(t, LogLevel::Warn, 9))
                .model("quiet", |t| Message::trace(t)),
        )
        .unwrap();
    let line_no = line!() + 1;
    let first = block_on(ctx.log_prepared("disk full", "alert"));
    assert_eq!(first.unwrap(), None);
    block_on(ctx.log_prepared("plain text", "default")).unwrap();
    block_on(ctx.log_prepared("job text", "job")).unwrap();
    // Model entries are filtered by level like any other.
    block_on(ctx.log_prepared("filtered", "quiet")).unwrap();
    match block_on(ctx.log_prepared("x", "nope")) {
        Err(Error::UnknownModel { context, model }) => {
            assert_eq!(context, "models");
            assert_eq!(model, "nope");
        }
        other => panic!("expected Error::UnknownModel, got {other:?}"),
    }
    ctx.close_blocking().unwrap();

    let logs = read_all::<serde_json::Value>(&path);
    let entries: Vec<serde_json::Value> = logs.iter().map(|l| l.entry.clone()).collect();
    assert_eq!(
        entries,
        [
            serde_json::json!({"message": "disk full", "tags": ["alert"], "level": "ERROR"}),
            serde_json::json!({"message": "plain text", "tags": [], "level": "INFO"}),
            serde_json::json!({"message": "job text", "tags": [], "level": "WARN", "job_id": 9, "owner": "ops"}),
        ]
    );
    assert_eq!(logs[0].filename.as_deref(), Some(file!()));
    assert_eq!(logs[0].line_number, Some(line_no));
    // The user type reads back whole.
    let job_entry: JobCreated = serde_json::from_value(entries[2].clone()).unwrap();
    assert_eq!(job_entry, job("job text", LogLevel::Warn, 9));

    // "default" can be replaced.
    let path = dir.path().join("default-model.log.json");
    let ctx = logger
        .context_with_blocking(
            "default-model",
            ContextOptions::new()
                .path(&path)
                .model("default", |t| Message::warn(t)),
        )
        .unwrap();
    block_on(ctx.log_prepared("replaced", "default")).unwrap();
    ctx.close_blocking().unwrap();
    assert_eq!(levels(&path), [LogLevel::Warn]);
    assert_eq!(messages(&path), ["replaced"]);
}

#[tokio::test]
async fn context_log_works_under_tokio_current_thread() {
    let dir = tempdir();
    let path = dir.path().join("tokio.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with("tokio", ContextOptions::new().path(&path))
        .await
        .unwrap();
    for i in 0..50 {
        assert_eq!(ctx.log(Message::info(i.to_string())).await.unwrap(), None);
    }
    ctx.flush().await.unwrap();
    logger.close().await.unwrap();
    let mut read = Vec::new();
    let mut stream = hyperlog::read_entries::<Message>(&path, 0, ReadOptions::default());
    while let Some(item) = stream.next().await {
        read.push(item.unwrap().1.entry.message.unwrap());
    }
    assert_eq!(read, numbers(0..50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_log_works_under_tokio_multi_thread() {
    let dir = tempdir();
    let path = dir.path().join("tokio-mt.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with("tokio-mt", ContextOptions::new().path(&path))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    ctx.log(Seq {
                        level: LogLevel::Info,
                        message: None,
                        seq: t * 100 + i,
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    ctx.close().await.unwrap();
    let mut seqs: Vec<u64> = read_all::<Seq>(&path)
        .into_iter()
        .map(|l| l.entry.seq)
        .collect();
    // Each task's entries in its own order.
    for t in 0..4 {
        let mine: Vec<u64> = seqs.iter().copied().filter(|s| s / 100 == t).collect();
        assert_eq!(mine, (t * 100..t * 100 + 25).collect::<Vec<_>>());
    }
    seqs.sort_unstable();
    assert_eq!(seqs.len(), 100);
}

#[test]
fn context_log_works_under_futures_block_on() {
    let dir = tempdir();
    let path = dir.path().join("block-on.log.json");
    let logger = Logger::new();
    block_on(async {
        let ctx = logger
            .context_with("block-on", ContextOptions::new().path(&path))
            .await
            .unwrap();
        for i in 0..50 {
            ctx.log(Message::info(i.to_string())).await.unwrap();
        }
        ctx.close().await.unwrap();
    });
    assert_eq!(messages(&path), numbers(0..50));
}

#[test]
fn info_macro_records_file_line_and_function() {
    let dir = tempdir();
    let path = dir.path().join("macro.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("macro", ContextOptions::new().path(&path))
        .unwrap();
    let line_blocking = line!() + 1;
    hyperlog::info!(blocking: ctx, "job {} started", 7).unwrap();
    let line_future = line!() + 1;
    block_on(hyperlog::info!(ctx, "job {} running", 7)).unwrap();
    let line_async = line!() + 1;
    block_on(async { hyperlog::error!(ctx, "job {} failed", 7).await }).unwrap();
    let line_plain = line!() + 1;
    ctx.log_blocking(Message::info("plain")).unwrap();
    ctx.close_blocking().unwrap();

    let logs = read_all::<Message>(&path);
    let expected = [
        (Message::info("job 7 started"), line_blocking, true),
        (Message::info("job 7 running"), line_future, true),
        (Message::error("job 7 failed"), line_async, true),
        (Message::info("plain"), line_plain, false),
    ];
    assert_eq!(logs.len(), expected.len());
    for (log, (entry, line, named)) in logs.iter().zip(expected) {
        assert_eq!(log.entry, entry);
        assert_eq!(log.filename.as_deref(), Some(file!()), "{log:?}");
        assert_eq!(log.line_number, Some(line), "{log:?}");
        if named {
            let f = log.function_name.as_deref().unwrap_or_default();
            assert!(
                f.ends_with("::info_macro_records_file_line_and_function")
                    || f == "info_macro_records_file_line_and_function",
                "function name {f:?}"
            );
            assert!(!f.contains("{{closure}}"), "{f:?}");
        } else {
            assert_eq!(
                log.function_name.as_deref(),
                Some(""),
                "a plain log() cannot name its function, and writes an empty string"
            );
        }
    }
}

#[test]
fn logging_after_close_is_an_error_and_reopening_works() {
    let dir = tempdir();
    let path = dir.path().join("closed.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("closed", ContextOptions::new().path(&path))
        .unwrap();
    let clone = ctx.clone();
    ctx.log_blocking(Message::info("before")).unwrap();
    block_on(ctx.close()).unwrap();
    for r in [
        block_on(ctx.log(Message::info("after"))),
        clone.log_blocking(Message::info("after")),
        block_on(clone.log(Message::info("after"))),
    ] {
        match r {
            Err(Error::Closed { target }) => {
                assert!(target.contains("closed.log.json"), "{target}")
            }
            other => panic!("expected Error::Closed, got {other:?}"),
        }
    }
    assert_eq!(messages(&path), ["before"]);
    // The logger opens a closed context afresh.
    let again = logger.context_blocking("closed").unwrap();
    again.log_blocking(Message::info("reopened")).unwrap();
    again.close_blocking().unwrap();
    assert_eq!(messages(&path), ["before", "reopened"]);
}

#[test]
fn logger_close_closes_every_context() {
    let dir = tempdir();
    let logger = Logger::new();
    let a_path = dir.path().join("a.log.json");
    let b_path = dir.path().join("b.log.json");
    let a = logger
        .context_with_blocking(
            "a",
            ContextOptions::new()
                .path(&a_path)
                .durability(DurabilityMode::None),
        )
        .unwrap();
    let b = logger
        .context_with_blocking("b", ContextOptions::new().path(&b_path))
        .unwrap();
    for i in 0..100 {
        a.log_blocking(Message::info(i.to_string())).unwrap();
    }
    b.log_blocking(Message::info("b")).unwrap();
    block_on(logger.close()).unwrap();
    assert!(matches!(
        a.log_blocking(Message::info("late")),
        Err(Error::Closed { .. })
    ));
    assert!(matches!(
        block_on(b.log(Message::info("late"))),
        Err(Error::Closed { .. })
    ));
    assert_eq!(messages(&a_path), numbers(0..100));
    assert_eq!(messages(&b_path), ["b"]);
}

#[test]
fn dropping_the_last_handles_flushes() {
    const N: usize = 300;
    let dir = tempdir();
    let path = dir.path().join("dropped.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "dropped",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::None),
        )
        .unwrap();
    let clone = ctx.clone();
    for i in 0..N {
        block_on(clone.log(Message::info(i.to_string()))).unwrap();
    }
    with_deadline("dropping the handles", move || {
        drop(clone);
        drop(ctx);
        drop(logger);
    });
    assert_eq!(messages(&path), numbers(0..N));
}

/// Issue #13 item 6.3: a typo in a context name silently gave a console
/// context. That stays the default; `deny_unconfigured(true)` makes it an
/// error naming the context.
#[test]
fn deny_unconfigured_makes_an_unknown_context_name_an_error() {
    let dir = tempdir();
    let path = dir.path().join("stats.log.json");

    // The default (the reference's): a console context with default options.
    let lenient = Logger::new();
    let typo = lenient.context_blocking("stast").unwrap();
    assert_eq!(typo.path(), None);
    drop(typo);

    let logger = Logger::new().deny_unconfigured(true);
    logger
        .configure("stats", ContextOptions::new().path(&path))
        .unwrap();
    let stats = block_on(logger.context("stats")).unwrap();
    stats.log_blocking(Message::info("counted")).unwrap();
    let assert_denied = |r: Result<hyperlog::Context, Error>, name: &str| match r {
        Err(e @ Error::UnconfiguredContext { .. }) => {
            let Error::UnconfiguredContext { context } = &e else {
                unreachable!()
            };
            assert_eq!(context, name);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{name:?}")) && msg.contains("configure"),
                "{msg}"
            );
        }
        other => panic!("expected Error::UnconfiguredContext for {name:?}, got {other:?}"),
    };
    assert_denied(block_on(logger.context("stast")), "stast");
    assert_denied(logger.context_blocking("stast"), "stast");
    // Nothing was opened or registered for it: it still fails, and the
    // configured context is untouched.
    assert_denied(logger.context_blocking("stast"), "stast");
    assert!(!format!("{logger:?}").contains("stast"), "{logger:?}");
    // Clones share the registry, and so the setting.
    assert_denied(logger.clone().context_blocking("other"), "other");
    // `context_with` configures, so it is never denied.
    let other = logger
        .context_with_blocking(
            "other",
            ContextOptions::new().path(dir.path().join("other.log.json")),
        )
        .unwrap();
    assert_eq!(
        other.path(),
        Some(dir.path().join("other.log.json").as_path())
    );
    logger.close_blocking().unwrap();
    assert_eq!(messages(&path), ["counted"]);

    // A name opened unconfigured before the setting was turned on counts as
    // unconfigured; configuring it lifts that.
    let late = Logger::new();
    let implicit = late.context_blocking("implicit").unwrap();
    let late = late.deny_unconfigured(true);
    assert_denied(late.context_blocking("implicit"), "implicit");
    // (An open context keeps its settings until it is closed.)
    implicit.close_blocking().unwrap();
    late.configure(
        "implicit",
        ContextOptions::new().path(dir.path().join("i.log.json")),
    )
    .unwrap();
    let reopened = late.context_blocking("implicit").unwrap();
    assert!(reopened.path().is_some());
    // And `false` restores the default.
    let late = late.deny_unconfigured(false);
    assert_eq!(late.context_blocking("console").unwrap().path(), None);
    late.close_blocking().unwrap();
}
