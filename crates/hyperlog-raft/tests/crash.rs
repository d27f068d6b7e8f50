//! SIGKILL at a seeded moment, again and again in the same directory.
//!
//! The test binary re-runs itself as a child (the ignored test
//! `crash_child`, switched on by `HYPERLOG_RAFT_CRASH_CHILD_DIR`) that opens
//! the store and drives it as openraft would, with a seeded workload:
//! pipelined appends with flush callbacks, truncations (some right behind
//! appends whose callbacks are still pending), votes, committed ids,
//! purges, now and then a purge past the end. It prints a line after each
//! acknowledgement; the parent reads the lines, SIGKILLs the child at a
//! seeded moment, reopens the store and checks it against what was
//! acknowledged (see `common::Model::check`): every acknowledged entry not
//! truncated since is there with its term and payload, nothing an
//! acknowledged truncation removed is back, the log is gapless from the
//! purge point on, the vote, purge point and committed id are at least the
//! acknowledged ones. Then the next child continues in the same directory.
//!
//! `HYPERLOG_RAFT_CRASH_SEED` replays a run (the seed is printed, and every
//! failure names it); `HYPERLOG_RAFT_CRASH_KILLS` sets how many kills (8 by
//! default).

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Event, Model, Rng, Store, Workload, splitmix};

const CHILD_DIR: &str = "HYPERLOG_RAFT_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "HYPERLOG_RAFT_CRASH_CHILD_SEED";
const CHILD_EPOCH: &str = "HYPERLOG_RAFT_CRASH_CHILD_EPOCH";
const SEED: &str = "HYPERLOG_RAFT_CRASH_SEED";
const KILLS: &str = "HYPERLOG_RAFT_CRASH_KILLS";

/// How long the parent waits for a line before calling the child hung.
const WAIT: Duration = Duration::from_secs(30);

/// Terms of child `epoch` are `epoch * TERMS + 1..`: every child's terms are
/// above every earlier child's, as a restarted Raft node's are.
const TERMS: u64 = 1_000_000;

/// A line of the child.
#[derive(Debug, Clone)]
enum Line {
    /// The store opened and the first vote was saved: the workload starts.
    Ready,
    Event(Event),
    /// The child failed: the line says how.
    Err(String),
}

fn parse(line: &str) -> Option<Line> {
    match line {
        "READY" => Some(Line::Ready),
        l if l.starts_with("ERR ") => Some(Line::Err(l.to_string())),
        l => Event::parse(l).map(Line::Event),
    }
}

/// In the child: writes one whole line, or exits (the parent is gone).
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// In the child: reports a failure and exits.
fn fail(what: String) -> ! {
    say(format!("ERR {what}"));
    std::process::exit(2);
}

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{var}={v:?}: not a number: {e}"))
    })
}

/// The child's side: runs until killed.
#[test]
#[ignore = "the child of sigkill_loop_recovers_every_acknowledgement; it runs it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let seed = env_u64(CHILD_SEED).expect("child seed");
    let epoch = env_u64(CHILD_EPOCH).expect("child epoch");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child(PathBuf::from(dir), seed, epoch));
}

/// The child's workload, until killed.
async fn child(dir: PathBuf, seed: u64, epoch: u64) {
    let mut store = Store::open(&dir)
        .await
        .unwrap_or_else(|e| fail(format!("open: {e}")));
    let mut sink = |ev: Event| say(ev.line());
    let mut w = Workload::new(&mut store, seed, epoch * TERMS)
        .await
        .unwrap_or_else(|e| fail(e));
    w.new_term(&mut store, &mut sink)
        .await
        .unwrap_or_else(|e| fail(e));
    say("READY".into());
    loop {
        w.step(&mut store, &mut sink)
            .await
            .unwrap_or_else(|e| fail(e));
    }
}

/// A running child, its stdout parsed line by line on a thread.
struct Child {
    child: std::process::Child,
    lines: Receiver<Line>,
    reader: JoinHandle<()>,
}

impl Child {
    fn spawn(dir: &Path, seed: u64, epoch: u64) -> Child {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--ignored"])
            .env(CHILD_DIR, dir)
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_EPOCH, epoch.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A line cut by the kill says nothing.
                let Some(body) = line.strip_suffix('\n') else {
                    return;
                };
                if let Some(l) = parse(body)
                    && tx.send(l).is_err()
                {
                    return;
                }
            }
        });
        Child {
            child,
            lines,
            reader,
        }
    }

    fn next(&mut self, ctx: &str) -> Line {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{ctx}: the child hung (no line for {WAIT:?})");
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("{ctx}: the child exited: {status}");
            }
        }
    }

    /// SIGKILLs the child and returns the lines it wrote that were not read.
    fn kill(mut self, ctx: &str) -> Vec<Line> {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            !status.success(),
            "{ctx}: the child was not killed: {status}"
        );
        self.reader.join().unwrap();
        self.lines.try_iter().collect()
    }
}

/// Applies one line of the child to the model.
fn apply(model: &mut Model, line: &Line, ctx: &str) {
    match line {
        Line::Ready => {}
        Line::Event(ev) => model.apply(ev),
        Line::Err(e) => panic!("{ctx}: the child failed: {e}"),
    }
}

/// Keeps a copy of the directory for a failure and says where it is.
fn evidence(dir: &Path, label: &str) -> String {
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("raft-crash-evidence")
        .join(format!("{label}-{}", std::process::id()));
    let mut out = format!("files in {}:", dir.display());
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(Result::ok).collect(),
        Err(e) => return format!("(listing {} failed: {e})", dir.display()),
    };
    names.sort_by_key(std::fs::DirEntry::file_name);
    let copied = std::fs::create_dir_all(&keep).is_ok();
    for e in names {
        let len = e.metadata().map_or(0, |m| m.len());
        out.push_str(&format!(
            "\n  {len:>10}  {}",
            e.file_name().to_string_lossy()
        ));
        if copied {
            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
        }
    }
    if copied {
        out.push_str(&format!("\n  copied to {}", keep.display()));
    }
    out
}

#[test]
fn sigkill_loop_recovers_every_acknowledgement() {
    let seed = env_u64(SEED).unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        splitmix(t.as_nanos() as u64 ^ u64::from(std::process::id()))
    });
    let kills = env_u64(KILLS).unwrap_or(8);
    eprintln!("raft crash loop: seed {seed} ({SEED}={seed} replays it), {kills} kills");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut model = Model::default();
    let mut lines_total = 0;
    let mut acks_total = 0;
    for epoch in 1..=kills {
        let ctx = format!("seed {seed} ({SEED}={seed}), kill {epoch} of {kills}");
        let it = splitmix(seed ^ epoch.rotate_left(40));
        let mut rng = Rng::new(it);
        // Kill after 1..=150 lines, then maybe a moment later.
        let kill_after = 1 + rng.below(150);
        let delay = Duration::from_micros(rng.below(3) * rng.below(2000));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut child = Child::spawn(dir.path(), it, epoch);
            for _ in 0..kill_after {
                let line = child.next(&ctx);
                apply(&mut model, &line, &ctx);
                lines_total += 1;
                if matches!(line, Line::Event(Event::Ack { .. })) {
                    acks_total += 1;
                }
            }
            std::thread::sleep(delay);
            for line in child.kill(&ctx) {
                apply(&mut model, &line, &ctx);
                lines_total += 1;
            }
            rt.block_on(async {
                let mut store = tokio::time::timeout(WAIT, Store::open(dir.path()))
                    .await
                    .unwrap_or_else(|_| panic!("{ctx}: reopening hung"))
                    .unwrap_or_else(|e| panic!("{ctx}: reopening after the kill failed: {e}"));
                let seen = model.check(&mut store, &ctx).await;
                model.settle(&seen);
                tokio::time::timeout(WAIT, store.close())
                    .await
                    .unwrap_or_else(|_| panic!("{ctx}: close hung"))
                    .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
            });
        }));
        if let Err(p) = result {
            eprintln!(
                "{ctx}: {}",
                evidence(dir.path(), &format!("seed-{seed}-kill-{epoch}"))
            );
            std::panic::resume_unwind(p);
        }
    }
    eprintln!(
        "raft crash loop: seed {seed}: {kills} kills, {lines_total} lines, {acks_total} appends acknowledged, \
         final log {} entries",
        model.acked.len()
    );
    assert!(
        acks_total > 0,
        "seed {seed}: no append was ever acknowledged"
    );
}
