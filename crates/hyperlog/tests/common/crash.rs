//! The child-process crash harness shared by the crash loops
//! (`tests/crash_loop.rs`, `tests/truncate_crash.rs`): the test binary
//! re-runs itself as a child that writes seeded entries and prints a line
//! per acknowledgement; the parent reads those lines, SIGKILLs the child at
//! a seeded moment, and checks what is on disk.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use hyperlog::{DurabilityMode, Entry, LogFormat, LogLevel, Lsn};
use serde::{Deserialize, Serialize};

/// The producer id of the entry the parent appends after each recovery.
pub const PARENT: u32 = 999;
/// How long the parent waits for a line of the child before calling it a hang.
pub const WAIT: Duration = Duration::from_secs(30);

/// Children run one at a time: the machine is small.
static CHILDREN: Mutex<()> = Mutex::new(());

/// Runs `f` (which runs a child) while no other test of this binary runs one.
pub fn one_child_at_a_time<T>(f: impl FnOnce() -> T) -> T {
    let _one = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// One entry a child writes: entry `seq` of producer `producer` in
/// iteration `epoch`, with a payload its seed determines.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Rec {
    pub level: LogLevel,
    pub message: Option<String>,
    pub epoch: u32,
    pub producer: u32,
    pub seq: u64,
    pub payload: String,
}

impl Entry for Rec {
    fn level(&self) -> LogLevel {
        self.level
    }
}

/// (epoch, producer, seq) of a [`Rec`].
pub type Key = (u32, u32, u64);

/// One acknowledgement.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub lsn: Lsn,
    pub hash: u64,
}

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, 64-bit.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How a crash loop's payloads look: 1 to `max_len` characters, lowercase
/// ASCII except one in `special_one_in` taken from `special`.
pub struct Payloads {
    pub max_len: u64,
    pub special: &'static [&'static str],
    pub special_one_in: u64,
}

impl Payloads {
    /// The payload of entry (epoch, producer, seq) of an iteration with `seed`.
    pub fn payload(&self, seed: u64, epoch: u32, producer: u32, seq: u64) -> String {
        let mut x = splitmix(seed ^ (u64::from(epoch) << 48) ^ (u64::from(producer) << 40) ^ seq);
        let len = 1 + (x % self.max_len) as usize;
        let mut s = String::with_capacity(len * 2);
        for _ in 0..len {
            x = splitmix(x);
            if x.is_multiple_of(self.special_one_in) {
                s.push_str(self.special[(x >> 8) as usize % self.special.len()]);
            } else {
                s.push(char::from(b'a' + (x >> 16) as u8 % 26));
            }
        }
        s
    }

    /// Entry (epoch, producer, seq) of an iteration with `seed`.
    pub fn rec(&self, seed: u64, epoch: u32, producer: u32, seq: u64) -> Rec {
        Rec {
            level: LogLevel::Info,
            message: Some(format!("e{epoch} p{producer} s{seq}")),
            epoch,
            producer,
            seq,
            payload: self.payload(seed, epoch, producer, seq),
        }
    }
}

pub fn format_name(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Binary => "binary",
        _ => "json",
    }
}

/// What the parent tells a child, in the environment variables `{prefix}DIR`,
/// `{prefix}SEED`, `{prefix}EPOCH`, `{prefix}MODE` and `{prefix}FORMAT`.
pub struct ChildArgs {
    /// The log directory.
    pub dir: PathBuf,
    /// The iteration's seed.
    pub seed: u64,
    /// The iteration.
    pub epoch: u32,
    pub mode: DurabilityMode,
    pub format: LogFormat,
}

impl ChildArgs {
    pub fn new(dir: &Path, seed: u64, epoch: u32, mode: DurabilityMode, format: LogFormat) -> Self {
        ChildArgs {
            dir: dir.to_path_buf(),
            seed,
            epoch,
            mode,
            format,
        }
    }

    /// In the child: what the parent set; `None` when this process is not a
    /// child (`{prefix}DIR` is unset).
    pub fn from_env(prefix: &str) -> Option<Self> {
        let dir = std::env::var(format!("{prefix}DIR")).ok()?;
        let var = |name: &str| child_var(&format!("{prefix}{name}"));
        Some(ChildArgs {
            dir: PathBuf::from(dir),
            seed: var("SEED").parse().unwrap(),
            epoch: var("EPOCH").parse().unwrap(),
            mode: var("MODE").parse().unwrap(),
            format: var("FORMAT").parse().unwrap(),
        })
    }

    /// In the parent: sets them in the child's environment.
    pub fn set_env(&self, prefix: &str, cmd: &mut Command) {
        cmd.env(format!("{prefix}DIR"), &self.dir)
            .env(format!("{prefix}SEED"), self.seed.to_string())
            .env(format!("{prefix}EPOCH"), self.epoch.to_string())
            .env(format!("{prefix}MODE"), format!("{:?}", self.mode))
            .env(format!("{prefix}FORMAT"), format_name(self.format));
    }
}

/// In the child: the environment variable `k`, which the parent set.
pub fn child_var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("child: {k} unset"))
}

/// In the child: writes one line to stdout, whole, or exits (the parent is
/// gone); exits after writing an `ERR` line.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
        || line.starts_with("ERR")
    {
        std::process::exit(3);
    }
}

/// Parses the numbers after `ACK ` in `ACK epoch producer seq lsn hash`.
pub fn parse_ack(rest: &str) -> (Key, Ack) {
    let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
    (
        (v[0] as u32, v[1] as u32, v[2]),
        Ack {
            lsn: Lsn::new(v[3]),
            hash: v[4],
        },
    )
}

/// The value of `var` (a number), or `default`.
pub fn iterations(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("{var}: a number: {e:?}"))
        })
        .unwrap_or(default)
}

/// The seed in `var`, or one from the clock and the process id.
pub fn run_seed(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{var}: a number: {e:?}")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            splitmix(t.as_nanos() as u64 ^ u64::from(std::process::id()))
        }
    }
}

/// A running child: the ignored test `test` of this binary, with its stdout
/// read line by line (each complete line parsed into a `T`) on a thread.
pub struct Child<T> {
    child: std::process::Child,
    lines: Receiver<T>,
    reader: JoinHandle<()>,
}

impl<T: Send + 'static> Child<T> {
    /// Spawns the child, with `env` setting its environment; lines `parse`
    /// maps to `None` are skipped.
    pub fn spawn(
        test: &str,
        env: impl FnOnce(&mut Command),
        parse: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--ignored"]);
        env(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel::<T>();
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

    /// The next line, waiting at most [`WAIT`]. Panics (with `ctx`) when the
    /// child hangs (after killing it; `hung` says how far it got) or exits
    /// (after `acks` acknowledgements).
    pub fn next(&mut self, ctx: &str, acks: usize, hung: impl FnOnce() -> String) -> T {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{ctx}: hung: {}", hung());
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("{ctx}: the child exited after {acks} acknowledgements: {status}");
            }
        }
    }

    /// SIGKILLs the child, checks that the kill ended it, and returns the
    /// lines it wrote that were not read yet.
    pub fn kill(mut self, ctx: &str) -> Vec<T> {
        self.child.kill().unwrap(); // SIGKILL
        let status = self.child.wait().unwrap();
        assert!(
            !status.success(),
            "{ctx}: the child was not killed: {status}"
        );
        self.reader.join().unwrap();
        self.lines.try_iter().collect()
    }
}

/// Keeps a copy of a crash test's log directory for the failure at hand and
/// describes it: each file with its size, and where the copy is
/// (`{CARGO_TARGET_TMPDIR}/crash-evidence/...`, which outlives the test's
/// scratch directory). Called on the way to a panic, so it never panics
/// itself: what it cannot copy it says.
pub fn evidence(dir: &Path, label: &str) -> String {
    use std::fmt::Write as _;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("crash-evidence")
        .join(format!("{safe}-{}-{n}", std::process::id()));
    let mut out = String::new();
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(Result::ok).collect(),
        Err(e) => return format!("(listing {} failed: {e})", dir.display()),
    };
    names.sort_by_key(std::fs::DirEntry::file_name);
    let copied = std::fs::create_dir_all(&keep);
    for e in names {
        let len = e.metadata().map_or(0, |m| m.len());
        let _ = write!(out, "\n  {:>10}  {}", len, e.file_name().to_string_lossy());
        if copied.is_ok() {
            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
        }
    }
    match copied {
        Ok(()) => format!(
            "files in {}:{out}\n  copied to {}",
            dir.display(),
            keep.display()
        ),
        Err(e) => format!("files in {}:{out}\n  (not copied: {e})", dir.display()),
    }
}
