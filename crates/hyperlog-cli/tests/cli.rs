//! End-to-end tests of the `hyperlog` binary on real files: the Python
//! reference's fixtures, logs written with the library, and damaged copies.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hyperlog::{
    ContextOptions, DurabilityMode, LogFormat, LogLevel, Logger, Message, ReadOptions,
    RetentionPolicy,
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hyperlog"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    for a in args {
        c.arg(a);
    }
    c.output().expect("run hyperlog")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hyperlog/tests/fixtures/reference")
        .join(name)
}

fn level_of(i: usize) -> LogLevel {
    [
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Debug,
    ][i % 4]
}

/// Writes `n` messages `entry {i}` with levels cycling info, warn, error,
/// debug (debug is below the default minimum, so every fourth is dropped:
/// the context's level is set to Trace to keep them).
fn write_log(path: &Path, format: LogFormat, lsn: bool, n: usize) -> Vec<Option<u64>> {
    let logger = Logger::new();
    let mut opts = ContextOptions::new()
        .path(path)
        .format(format)
        .level(LogLevel::Trace);
    if lsn {
        opts = opts
            .durability(DurabilityMode::FsyncBatch)
            .enable_lsn(true)
            .instance_id(7);
    }
    let ctx = logger.context_with_blocking("t", opts).unwrap();
    let mut lsns = Vec::new();
    for i in 0..n {
        let l = ctx
            .log_blocking(Message::new(level_of(i), format!("entry {i}")))
            .unwrap();
        lsns.push(l.map(|l| l.get()));
    }
    ctx.close_blocking().unwrap();
    lsns
}

/// The offsets of the records of a log.
fn offsets(path: &Path) -> Vec<u64> {
    hyperlog::read_records(path, 0, ReadOptions::default())
        .map(|r| r.unwrap().offset)
        .collect()
}

fn messages(path: &Path) -> Vec<String> {
    hyperlog::read_entries_blocking::<Message>(path, 0, ReadOptions::default())
        .map(|r| r.unwrap().1.entry.message.unwrap_or_default())
        .collect()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn help_version_and_usage_errors() {
    let o = run(&[&"--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("hyperlog demo"));
    for sub in [
        "cat", "dump", "tail", "verify", "repair", "stats", "convert", "demo",
    ] {
        let o = run(&[&sub, &"--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(
            stdout(&o).contains("Example"),
            "{sub} --help has an example"
        );
    }
    assert!(!stdout(&run(&[&"demo", &"--help"])).contains("child-writer"));
    assert_eq!(run(&[&"--version"]).status.code(), Some(0));
    let o = run(&[&"cat", &"--bogus"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(run(&[&"nope"]).status.code(), Some(3));
    assert_eq!(run(&[]).status.code(), Some(3));
    let o = run(&[&"cat", &"/nonexistent/x.log"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("/nonexistent/x.log"), "{}", stderr(&o));
    let o = run(&[&"cat", &fixture("plain.wal"), &"--template", &"{message"]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn cat_reference_fixtures() {
    let o = run(&[&"cat", &fixture("plain.log.json")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.starts_with(
        "2026-11-24T13:53:10.201385+00:00 - INFO - 6915 - hyperscale/logging/streams/logger_stream.py:log.724 - hello world\n"
    ), "{s}");
    assert!(s.contains(" - ERROR - "));

    let o = run(&[
        &"cat",
        &fixture("plain.wal"),
        &"--template",
        &"{level} {message} #{job_id} {owner}",
    ]);
    assert_eq!(
        stdout(&o),
        "INFO job 0 #0 ops\nINFO job 1 #1 ops\nINFO job 2 #2 ops\n"
    );

    // dump = cat --output json: the stored lines, byte for byte.
    let o = run(&[&"dump", &fixture("plain.log.json")]);
    assert_eq!(o.stdout, std::fs::read(fixture("plain.log.json")).unwrap());
    let o = run(&[&"cat", &fixture("plain.wal"), &"--output", &"json"]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["entry"]["job_id"], 2);

    let o = run(&[&"cat", &fixture("plain.wal"), &"-o", &"table"]);
    let s = stdout(&o);
    let rows: Vec<&str> = s.lines().collect();
    assert!(rows[0].contains("OFFSET") && rows[0].contains("MESSAGE"));
    assert_eq!(rows.len(), 4);
    assert!(rows[2].trim_start().starts_with("267 "), "{s}");
    assert!(rows[2].ends_with("job 1"));
}

#[test]
fn cat_filters() {
    let f = fixture("plain.log.json");
    let t = "{level}:{message}";
    let o = run(&[&"cat", &f, &"-o", &"json", &"--level", &"warn"]);
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = run(&[&"cat", &f, &"-t", &t, &"--level", &"warn"]);
    let s = stdout(&o);
    assert!(s.starts_with("WARN:") && s.contains("ERROR:job"));
    let o = run(&[&"cat", &f, &"-t", &t, &"--grep", &"hello"]);
    assert_eq!(stdout(&o), "INFO:hello world\n");
    // --grep also matches the whole JSON (a field that is not the message).
    let o = run(&[&"cat", &f, &"-t", &t, &"--grep", &"\"owner\":\"ops\""]);
    assert_eq!(stdout(&o), "ERROR:job\n");
    let o = run(&[&"cat", &f, &"-t", &t, &"--limit", &"1"]);
    assert_eq!(stdout(&o), "INFO:hello world\n");
    let second = offsets(&f)[1].to_string();
    let o = run(&[
        &"cat",
        &f,
        &"-t",
        &t,
        &"--from-offset",
        &second,
        &"--limit",
        &"1",
    ]);
    assert!(stdout(&o).starts_with("WARN:unicode"));
    let o = run(&[&"cat", &f, &"--from-offset", &"3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("not the start of a record"));
}

#[test]
fn cat_lsns_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    let lsns = write_log(&p, LogFormat::Binary, true, 20);
    let t = "{lsn} {message}";
    let from = lsns[15].unwrap().to_string();
    let o = run(&[&"cat", &p, &"-t", &t, &"--from-lsn", &from]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(s.lines().count(), 5);
    assert!(s.starts_with(&format!("{from} entry 15\n")), "{s}");
    let o = run(&[&"cat", &p, &"-t", &t, &"--explain-lsn", &"--limit", &"1"]);
    let s = stdout(&o);
    assert!(s.contains("instance 7 seq "), "{s}");
    assert!(s.contains("Z instance"), "an ISO UTC time: {s}");
    let o = run(&[&"dump", &p, &"--explain-lsn", &"--limit", &"1"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["lsn_instance"], 7);
    assert_eq!(v["lsn"].as_u64(), lsns[0]);
}

#[test]
fn segmented_wal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "seg",
            ContextOptions::new()
                .path(&p)
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .retention_policy(RetentionPolicy::new().max_size(4096)),
        )
        .unwrap();
    let n = 150;
    for i in 0..n {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    ctx.close_blocking().unwrap();
    let segs = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &p);
    assert!(!segs.is_empty(), "the WAL rotated into segments");

    let o = run(&[&"cat", &p, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want: String = (0..n).map(|i| format!("entry {i}\n")).collect();
    assert_eq!(stdout(&o), want);

    let o = run(&[&"verify", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["records"], n);
    assert_eq!(v["segments"].as_array().unwrap().len(), segs.len());
    assert_eq!(v["status"], "clean");

    let o = run(&[&"tail", &p, &"-n", &"3", &"-t", &"{message}"]);
    assert_eq!(stdout(&o), "entry 147\nentry 148\nentry 149\n");

    // A sealed segment cut short is corruption, not a torn tail: it was
    // complete when it was sealed.
    let first = &segs[0].path;
    let len = std::fs::metadata(first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let o = run(&[&"verify", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["damage"][0]["file"], first.display().to_string());
    assert_eq!(v["damage"][0]["kind"], "corruption");
    let o = run(&[&"cat", &p]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sealed segment"), "{}", stderr(&o));
}

#[test]
fn verify_clean_logs() {
    let o = run(&[&"verify", &fixture("plain.wal")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let s = stdout(&o);
    assert!(s.contains("records     3"), "{s}");
    assert!(s.contains("binary"), "{s}");
    assert!(s.contains("clean"));
    let o = run(&[&"verify", &fixture("plain.log.json"), &"--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["records"], 3);
    assert_eq!(v["format"], "json");
    assert_eq!(v["first_timestamp"], "2026-11-24T13:53:10.201385+00:00");
    assert_eq!(v["last_timestamp"], "2026-11-24T13:53:10.201717+00:00");
    assert_eq!(v["bytes"], 741);
    assert_eq!(v["damage"].as_array().unwrap().len(), 0);

    // A zero-filled (preallocated) tail is clean: writers preallocate whole
    // 4 KiB pages, so the file ends on a 4 KiB boundary.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.wal");
    write_log(&p, LogFormat::Binary, true, 5);
    let f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len((len + 4096).next_multiple_of(4096)).unwrap();
    let o = run(&[&"verify", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(json(&o)["zero_tail"][0]["offset"], len);
    assert_eq!(
        run(&[&"verify", &dir.path().join("missing.wal")])
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn torn_tail_verify_and_repair() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    write_log(&p, LogFormat::Binary, true, 10);
    let offs = offsets(&p);
    let len = std::fs::metadata(&p).unwrap().len();
    let cut_at = offs[9] + 20; // mid-record
    let original = std::fs::read(&p).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(cut_at)
        .unwrap();
    assert!(cut_at < len);

    let o = run(&[&"verify", &p]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("torn tail at offset {}", offs[9])));
    let o = run(&[&"verify", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["records"], 9);
    assert_eq!(v["damage"][0]["offset"], offs[9]);
    assert_eq!(v["damage"][0]["kind"], "torn_tail");
    assert_eq!(v["damage"][0]["bytes"], 20);

    let o = run(&[&"repair", &p, &"--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("will cut 20 bytes (offset {}", offs[9])));
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        cut_at,
        "dry run changes nothing"
    );

    // Another writer holding the file: refused.
    let holder = std::fs::File::open(&p).unwrap();
    holder.try_lock().unwrap();
    let o = run(&[&"repair", &p]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("another writer"), "{}", stderr(&o));
    drop(holder);

    let o = run(&[&"repair", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), offs[9]);
    let side = PathBuf::from(format!("{}.torn-{}", p.display(), offs[9]));
    assert_eq!(
        std::fs::read(&side).unwrap(),
        &original[offs[9] as usize..cut_at as usize]
    );
    assert_eq!(run(&[&"verify", &p]).status.code(), Some(0));
    assert_eq!(messages(&p).len(), 9);
    let o = run(&[&"repair", &p]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("nothing to do"));
}

#[test]
fn torn_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log.json");
    write_log(&p, LogFormat::Json, false, 4);
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(br#"{"entry":{"message":"cut"#).unwrap();
    drop(f);
    let o = run(&[&"verify", &p, &"--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["damage"][0]["kind"], "torn_tail");
    let o = run(&[&"cat", &p, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 4);
    assert!(stderr(&o).contains("torn tail"));
    assert_eq!(
        run(&[&"cat", &p, &"--recovery", &"strict"]).status.code(),
        Some(2)
    );
}

#[test]
fn corruption_in_the_middle_and_salvage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    write_log(&p, LogFormat::Binary, true, 10);
    let offs = offsets(&p);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[offs[4] as usize + 40] ^= 0x55; // inside record 4's payload
    std::fs::write(&p, &bytes).unwrap();

    let o = run(&[&"verify", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("corruption at offset {}", offs[4])));
    let o = run(&[&"verify", &p, &"--json"]);
    let v = json(&o);
    assert_eq!(v["damage"].as_array().unwrap().len(), 1);
    assert_eq!(v["damage"][0]["offset"], offs[4]);
    assert_eq!(v["damage"][0]["end"], offs[5]);
    assert_eq!(v["damage"][0]["kind"], "corruption");
    assert!(
        v["damage"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    assert_eq!(v["records"], 9);

    let o = run(&[&"repair", &p]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--salvage"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&offs[4].to_string()));
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "refused: unchanged");

    assert_eq!(run(&[&"cat", &p]).status.code(), Some(2));
    let o = run(&[&"cat", &p, &"--recovery", &"skip", &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 9);

    let o = run(&[&"repair", &p, &"--salvage"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("salvaged 9 intact records"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&format!("offset {}..{}", offs[4], offs[5])));
    let salvaged = PathBuf::from(format!("{}.salvaged", p.display()));
    let want: Vec<String> = (0..10)
        .filter(|&i| i != 4)
        .map(|i| format!("entry {i}"))
        .collect();
    assert_eq!(messages(&salvaged), want);
    assert_eq!(run(&[&"verify", &salvaged]).status.code(), Some(0));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        bytes,
        "the original is untouched"
    );
    // The same LSNs, header for header.
    let lsns = |q: &Path| -> Vec<Option<u64>> {
        hyperlog::read_records(
            q,
            0,
            ReadOptions::new().recovery(hyperlog::RecoveryMode::SkipCorrupted),
        )
        .map(|r| r.unwrap().lsn.map(|l| l.get()))
        .collect()
    };
    assert_eq!(lsns(&salvaged), lsns(&p));

    let other = dir.path().join("fixed.wal");
    let o = run(&[&"repair", &p, &"--salvage", &"--output", &other]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(messages(&other), want);
    let o = run(&[&"repair", &p, &"--salvage", &"--output", &other]);
    assert_eq!(o.status.code(), Some(3), "refuses to overwrite");
}

#[test]
fn stats_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log.json");
    write_log(&p, LogFormat::Json, false, 12);
    let o = run(&[&"stats", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("12 entries"), "{s}");
    for l in ["INFO", "WARN", "ERROR", "DEBUG"] {
        assert!(
            s.lines()
                .any(|x| x.trim_start().starts_with(l) && x.trim_end().ends_with(" 3")),
            "{l}: {s}"
        );
    }
    assert!(s.contains("busiest"));
    assert!(s.contains("p99"));
    assert!(s.contains("<= "));
    let o = run(&[&"stats", &fixture("plain.wal")]);
    assert!(stdout(&o).contains("3 entries"));
}

#[test]
fn convert_keeps_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let bin_p = dir.path().join("node.wal");
    write_log(&bin_p, LogFormat::Binary, true, 8);
    let json_p = dir.path().join("node.log.json");
    let o = run(&[&"convert", &bin_p, &json_p, &"--to", &"json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a: Vec<_> = hyperlog::read_records(&bin_p, 0, ReadOptions::default())
        .map(|r| r.unwrap())
        .collect();
    let b: Vec<_> = hyperlog::read_records(&json_p, 0, ReadOptions::default())
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(a.len(), 8);
    assert!(a.iter().all(|r| r.lsn.is_some()));
    assert_eq!(
        a.iter().map(|r| (r.lsn, &r.payload)).collect::<Vec<_>>(),
        b.iter().map(|r| (r.lsn, &r.payload)).collect::<Vec<_>>()
    );
    let back = dir.path().join("back.wal");
    let o = run(&[&"convert", &json_p, &back, &"--to", &"binary"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&bin_p).unwrap()
    );

    let o = run(&[&"convert", &json_p, &back, &"--to", &"binary"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(
        run(&[&"convert", &json_p, &back, &"--to", &"binary", &"--force"])
            .status
            .code(),
        Some(0)
    );
    let o = run(&[&"convert", &json_p, &back, &"--to", &"xml"]);
    assert_eq!(o.status.code(), Some(3));

    // The reference's binary file converts to JSON lines and back.
    let ref_json = dir.path().join("ref.log.json");
    assert_eq!(
        run(&[
            &"convert",
            &fixture("plain.wal"),
            &ref_json,
            &"--to",
            &"json"
        ])
        .status
        .code(),
        Some(0)
    );
    let ref_back = dir.path().join("ref.wal");
    assert_eq!(
        run(&[&"convert", &ref_json, &ref_back, &"--to", &"binary"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        std::fs::read(&ref_back).unwrap(),
        std::fs::read(fixture("plain.wal")).unwrap()
    );
}

/// Reads lines from a child's stdout on a thread, so a test can wait with a
/// deadline.
fn line_reader(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, want: &str, got: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.iter().any(|l| l == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => panic!("no {want:?} in time; got {got:?}"),
        }
    }
}

fn append_json(path: &Path, from: usize, to: usize) {
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("w", ContextOptions::new().path(path))
        .unwrap();
    for i in from..to {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    ctx.close_blocking().unwrap();
}

#[test]
fn tail_and_follow_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log.json");
    append_json(&p, 0, 5);
    let o = run(&[&"tail", &p, &"-n", &"2", &"-t", &"{message}"]);
    assert_eq!(stdout(&o), "entry 3\nentry 4\n");
    let o = run(&[&"tail", &p, &"-t", &"{message}"]);
    assert_eq!(stdout(&o).lines().count(), 5);

    let mut child = bin()
        .args(["tail", "-f", "-n", "1", "-t", "{message}"])
        .arg(&p)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut child);
    let mut got = Vec::new();
    wait_for(&rx, "entry 4", &mut got);
    append_json(&p, 5, 8);
    wait_for(&rx, "entry 7", &mut got);
    // Rotation: the file replaced by a new one.
    // Rotation: the file renamed (and still appended to by its last writer
    // before the new file appears), then replaced by a new one.
    let old = dir.path().join("app.log.json.1");
    std::fs::rename(&p, &old).unwrap();
    append_json(&old, 8, 9);
    append_json(&p, 100, 102);
    wait_for(&rx, "entry 101", &mut got);
    // Truncation: start over from the beginning of the file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    append_json(&p, 200, 201);
    wait_for(&rx, "entry 200", &mut got);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        got,
        [
            "entry 4",
            "entry 5",
            "entry 6",
            "entry 7",
            "entry 8",
            "entry 100",
            "entry 101",
            "entry 200"
        ]
    );
}

#[test]
fn tail_of_a_large_json_log() {
    // More than 1 MiB: tail reads only the end of the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("big", ContextOptions::new().path(&p))
        .unwrap();
    let pad = "x".repeat(300);
    for i in 0..4000 {
        ctx.log_blocking(Message::info(format!("entry {i} {pad}")))
            .unwrap();
    }
    ctx.close_blocking().unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() > 1 << 20);
    let o = run(&[&"tail", &p, &"-n", &"3", &"-t", &"{message}"]);
    let want: String = (3997..4000).map(|i| format!("entry {i} {pad}\n")).collect();
    assert_eq!(stdout(&o), want);
}

#[test]
fn follow_exits_on_sigint_and_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log.json");
    append_json(&p, 0, 1);
    let mut child = bin()
        .args(["tail", "-f", "-t", "{message}"])
        .arg(&p)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut child);
    let mut got = Vec::new();
    wait_for(&rx, "entry 0", &mut got);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_deadline(&mut child);
    assert_eq!(status.code(), Some(0));

    let mut child = bin()
        .args(["tail", "-f", "-t", "{message}"])
        .arg(&p)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(out).read_line(&mut first).unwrap(); // then dropped: the pipe closes
    assert_eq!(first, "entry 0\n");
    let status = wait_deadline(&mut child);
    assert_eq!(status.code(), Some(0));
}

fn wait_deadline(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the follower did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_runs_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[&"demo", &"--seconds", &"1", &"--dir", &dir.path()]);
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}\n{}", stderr(&o));
    assert!(s.contains("throughput"), "{s}");
    assert!(s.contains("every acknowledged LSN present: true"), "{s}");
    assert!(s.contains("recovery:"), "{s}");
    // The replicated stage: the leader killed, nothing acknowledged lost.
    assert!(s.contains("killed with SIGKILL"), "{s}");
    assert!(
        s.contains("every acknowledged write present on all 3 nodes: true"),
        "{s}"
    );
    assert_eq!(
        run(&[&"verify", &dir.path().join("node.wal")])
            .status
            .code(),
        Some(0)
    );
}

#[path = "../../hyperlog/tests/support/reference_schema.rs"]
mod reference_schema;

/// Every non-empty line of `text`, decoded under the reference's schema.
fn strict_lines(what: &str, text: &str) -> usize {
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let _: reference_schema::RefLog<reference_schema::RefEntrySubclass> =
            reference_schema::strict(line.as_bytes());
        n += 1;
    }
    assert!(n > 0, "{what} has no lines");
    n
}

#[test]
fn the_reference_reads_the_demo_logs_and_every_converted_or_dumped_wal() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[&"demo", &"--seconds", &"1", &"--dir", &dir.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The data-plane log, as the demo wrote it.
    let stats = dir.path().join("stats.log.json");
    strict_lines("stats.log.json", &std::fs::read_to_string(&stats).unwrap());

    for wal in [
        dir.path().join("node.wal"),
        dir.path().join("crash/crash.wal"),
    ] {
        // `dump` prints each record's payload: lines the reference reads.
        let dumped = run(&[&"dump", &wal]);
        assert_eq!(dumped.status.code(), Some(0), "{}", stderr(&dumped));
        let records = strict_lines("dump", &stdout(&dumped));

        // Converted to JSON lines, every entry is there and readable...
        let json = dir.path().join(format!(
            "{}.jsonl",
            wal.file_name().unwrap().to_string_lossy()
        ));
        let c = run(&[&"convert", &wal, &json, &"--to", &"json"]);
        assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
        let text = std::fs::read_to_string(&json).unwrap();
        assert_eq!(strict_lines("converted", &text), records);
        // ...and so is `dump` of the converted file.
        let again = run(&[&"dump", &json]);
        assert_eq!(strict_lines("dump of converted", &stdout(&again)), records);
    }
}

#[test]
fn convert_fills_in_what_an_older_log_left_null() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.log.json");
    // As hyperlog wrote lines before it always named the function.
    std::fs::write(
        &old,
        concat!(
            r#"{"entry":{"message":"a","tags":[],"level":"INFO"},"filename":"src/a.rs","function_name":null,"line_number":3,"thread_id":7,"timestamp":"2026-11-24T10:15:02.123456+00:00","lsn":5}"#,
            "\n",
            r#"{"entry":{"message":"b","tags":[],"level":"WARN"},"timestamp":"2026-11-24T10:15:03.123456+00:00","lsn":6}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("new.log.json");
    let c = run(&[&"convert", &old, &out, &"--to", &"json"]);
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(strict_lines("converted", &text), 2);
    let logs: Vec<hyperlog::Log<Message>> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logs[0].filename.as_deref(), Some("src/a.rs"));
    assert_eq!(logs[0].function_name.as_deref(), Some(""));
    assert_eq!(logs[0].line_number, Some(3));
    assert_eq!(logs[1].line_number, Some(0));
    assert_eq!(
        logs.iter()
            .map(|l| l.lsn.map(|l| l.get()))
            .collect::<Vec<_>>(),
        [Some(5), Some(6)]
    );
    assert_eq!(logs[1].entry.message.as_deref(), Some("b"));
}

#[test]
fn verify_checks_segments_against_their_index_and_lists_side_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let opts = || {
        ContextOptions::new()
            .path(&path)
            .durability(DurabilityMode::FsyncBatch)
            .format(LogFormat::Binary)
            .enable_lsn(true)
            .retention_policy(RetentionPolicy::new().max_size(16 * 1024))
    };
    let logger = Logger::new();
    let ctx = logger.context_with_blocking("wal", opts()).unwrap();
    for i in 0..600 {
        ctx.log_blocking(Message::info(format!("command {i:05}")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
    let segments = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &path);
    assert!(segments.len() >= 2);
    assert!(hyperlog::segments::index_path(&segments[0].path).exists());
    assert_eq!(run(&[&"verify", &path]).status.code(), Some(0));

    // A crash left a torn record: the next open cuts it into a side file.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"\x01\x02\x03 half a record").unwrap();
    drop(f);
    let logger = Logger::new();
    logger.context_with_blocking("wal", opts()).unwrap();
    logger.close_blocking().unwrap();
    let side = hyperlog::segments::torn_side_files(&hyperlog::fs::StdFs, &path).unwrap();
    assert_eq!(side.len(), 1, "{side:?}");
    let o = run(&[&"verify", &path]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("side file"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&*side[0].to_string_lossy()),
        "{}",
        stdout(&o)
    );
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&run(&[&"verify", &path, &"--json"]))).unwrap();
    assert_eq!(j["torn_side_files"][0], side[0].to_string_lossy().as_ref());
    assert!(stdout(&run(&[&"stats", &path])).contains("side file"));

    // A power cut that kept a segment's index but not its records.
    std::fs::write(&segments[0].path, b"").unwrap();
    let o = run(&[&"verify", &path]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("records it held when sealed are gone"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn tail_follow_prints_every_entry_of_a_rotating_wal_once() {
    // The writer runs while `tail -f` follows: 16 KiB segments, so many
    // rotations fall between two of its polls.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            ContextOptions::new()
                .path(&path)
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .retention_policy(RetentionPolicy::new().max_size(16 * 1024)),
        )
        .unwrap();
    for i in 0..50 {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    let mut child = bin()
        .args(["tail", "-f", "-n", "5", "-t", "{message}"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut child);
    let mut got = Vec::new();
    wait_for(&rx, "entry 49", &mut got);
    let total = 4_000;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                for i in (50 + w..total).step_by(4) {
                    ctx.log_blocking(Message::info(format!("entry {i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let rotations = ctx.stats().rotations;
    ctx.close_blocking().unwrap();
    assert!(rotations > 20, "{rotations} rotations");
    // Every entry once, in the log's order.
    let in_log: Vec<String> =
        hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
            .map(|i| i.unwrap().1.entry.message.unwrap())
            .collect();
    assert_eq!(in_log.len(), total);
    let last = in_log.last().unwrap().clone();
    wait_for(&rx, &last, &mut got);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), total - 45, "{} lines printed", got.len());
    assert_eq!(got[..], in_log[45..]);
}

/// Issue #13 item 6.2: `cat --from-lsn` read every file from offset 0 and
/// filtered, so damage lying entirely below the LSN asked for made it fail.
/// It now starts at the segment holding that LSN, at the point the sparse
/// index gives: damage in earlier segments, or earlier in that segment, is
/// never read.
#[test]
fn cat_from_lsn_seeks_past_damage_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "seg",
            ContextOptions::new()
                .path(&p)
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .retention_policy(RetentionPolicy::new().max_size(16 * 1024)),
        )
        .unwrap();
    let n = 600;
    let lsns: Vec<u64> = (0..n)
        .map(|i| {
            ctx.log_blocking(Message::info(format!("entry {i}")))
                .unwrap()
                .unwrap()
                .get()
        })
        .collect();
    ctx.close_blocking().unwrap();
    let segs = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &p);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    // (offset, lsn) of each record of a segment.
    let records = |q: &Path| -> Vec<(u64, u64)> {
        hyperlog::read_records(q, 0, ReadOptions::default())
            .map(|r| {
                let r = r.unwrap();
                (r.offset, r.lsn.unwrap().get())
            })
            .collect()
    };
    let flip = |q: &Path, at: u64| {
        let mut bytes = std::fs::read(q).unwrap();
        for b in &mut bytes[at as usize..at as usize + 4] {
            *b ^= 0x5a;
        }
        std::fs::write(q, &bytes).unwrap();
    };
    let from = |k: usize| -> String { (k..n).map(|i| format!("entry {i}\n")).collect() };
    let index_of = |lsn: u64| lsns.iter().position(|&l| l == lsn).unwrap();

    // Damage in the middle of segment 1.
    let seg1 = records(&segs[0].path);
    flip(&segs[0].path, seg1[seg1.len() / 2].0 + 40);
    let o = run(&[&"cat", &p, &"-t", &"{message}"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the damage is real: {}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains(&*segs[0].path.to_string_lossy()),
        "{}",
        stderr(&o)
    );

    // From the first LSN of segment 3: exactly the entries from there.
    let first3 = segs[2].first_lsn.unwrap().get();
    let k = index_of(first3);
    assert_eq!(records(&segs[2].path)[0], (0, first3));
    let o = run(&[
        &"cat",
        &p,
        &"--from-lsn",
        &first3.to_string(),
        &"-t",
        &"{message}",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), from(k));
    assert_eq!(stderr(&o), "", "no warning about damage it never read");
    // `dump` is `cat --output json`: the same entries, with their LSNs.
    let o = run(&[&"dump", &p, &"--from-lsn", &first3.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dumped: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(dumped, lsns[k..]);
    // An LSN between two entries (not one of them: LSNs of the same
    // millisecond are consecutive) starts at the next one.
    let j = (k..n - 1)
        .find(|&j| lsns[j + 1] - lsns[j] > 1)
        .expect("600 synced entries span more than one millisecond");
    let o = run(&[
        &"cat",
        &p,
        &"--from-lsn",
        &(lsns[j] + 1).to_string(),
        &"-t",
        &"{message}",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), from(j + 1));

    // Damage early in segment 3, before an index point: an LSN past that
    // point is read from the point on.
    let idx = std::fs::read(hyperlog::segments::index_path(&segs[2].path)).unwrap();
    let points = hyperlog::segments::decode_index(&idx).unwrap();
    assert!(points.len() >= 2, "{points:?}");
    let seg3 = records(&segs[2].path);
    let after_point = seg3.iter().position(|r| r.0 == points[1].1).unwrap() + 1;
    let target = seg3[after_point].1;
    flip(&segs[2].path, seg3[0].0 + 40);
    let o = run(&[
        &"cat",
        &p,
        &"--from-lsn",
        &target.to_string(),
        &"-t",
        &"{message}",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), from(index_of(target)));
    // Asking for the damaged part itself still reports it.
    let o = run(&[&"cat", &p, &"--from-lsn", &first3.to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
}

// ---------------------------------------------------------------------------
// Tools never destroy (issue #13): archives are read, never cut; files that
// are not logs are left alone; a forced format that does not match is an
// error; sealed segments are never cut silently.
// ---------------------------------------------------------------------------

/// Every file in `dir` with its bytes, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// A data-plane log the library rotated into zstd archives: the archives,
/// oldest first, and the live file.
fn archived_log(dir: &Path, n: usize) -> (Vec<PathBuf>, PathBuf) {
    let live = dir.join("app.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(&live)
                .retention_policy(RetentionPolicy::new().max_size(2048)),
        )
        .unwrap();
    for i in 0..n {
        ctx.log_blocking(Message::info(format!("entry {i:03}")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
    let mut archives: Vec<(Option<(i64, u32)>, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            name.ends_with("_archived.zst").then(|| {
                (
                    hyperlog::retention::parse_archive_name("app.log", &name),
                    p.clone(),
                )
            })
        })
        .collect();
    archives.sort();
    (archives.into_iter().map(|a| a.1).collect(), live)
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn archives_are_read_as_logs_and_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (archives, _live) = archived_log(dir.path(), 80);
    assert!(archives.len() >= 2, "{archives:?}");
    let a = &archives[0];
    let plain = zstd::decode_all(std::fs::File::open(a).unwrap()).unwrap();
    let plain_path = dir.path().join("decompressed.log.json");
    std::fs::write(&plain_path, &plain).unwrap();
    let want = messages(&plain_path);
    std::fs::remove_file(&plain_path).unwrap();
    assert!(!want.is_empty());

    // cat and dump print its entries.
    let o = run(&[&"cat", a, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines, want);
    let o = run(&[&"dump", a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dumped: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["entry"]["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(dumped, want);
    let o = run(&[&"tail", a, &"-n", &"2", &"-t", &"{message}"]);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stderr(&o));

    // verify: clean, and says archive.
    let o = run(&[&"verify", a]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("zstd archive"), "{}", stdout(&o));
    assert!(stdout(&o).contains("clean"), "{}", stdout(&o));
    let o = run(&[&"verify", a, &"--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["archive"], true);
    assert_eq!(v["status"], "clean");
    assert_eq!(v["format"], "json");
    assert_eq!(v["records"], want.len());
    assert_eq!(v["decompressed_bytes"], plain.len());
    assert_eq!(v["offsets"], "decompressed");
    let o = run(&[&"stats", a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{} entries (a zstd archive", want.len())),
        "{}",
        stdout(&o)
    );

    // repair refuses it in every form and changes nothing.
    let before = snapshot(dir.path());
    for extra in [&[][..], &["--force"], &["--dry-run"], &["--salvage"]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"repair", a];
        for e in extra {
            args.push(e);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stdout(&o));
        let e = stderr(&o);
        assert!(e.contains(&a.display().to_string()), "{e}");
        assert!(e.contains("zstd archive") && e.contains("cat"), "{e}");
        assert_eq!(snapshot(dir.path()), before, "{extra:?}: nothing changed");
    }

    // An archive is known by its content, whatever its name.
    let renamed = dir.path().join("copy-of-an-archive.bin");
    std::fs::copy(a, &renamed).unwrap();
    let o = run(&[&"cat", &renamed, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), want.len());
    let copy = std::fs::read(&renamed).unwrap();
    let o = run(&[&"repair", &renamed]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("zstd archive"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&renamed).unwrap(), copy);
}

#[test]
fn damage_inside_an_archive_is_reported_at_decompressed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log.json");
    write_log(&log, LogFormat::Json, false, 40);
    let offs = offsets(&log);
    let bytes = std::fs::read(&log).unwrap();
    let compress = |name: &str, plain: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, zstd::encode_all(plain, 3).unwrap()).unwrap();
        p
    };

    // The log was sealed with a torn last line: a torn tail inside.
    let torn = compress("node_1_archived.zst", &bytes[..offs[39] as usize + 9]);
    let o = run(&[&"verify", &torn]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let s = stdout(&o);
    assert!(
        s.contains(&format!(
            "torn tail at offset {} of the decompressed stream",
            offs[39]
        )),
        "{s}"
    );
    assert!(!s.contains("hyperlog repair"), "repair is not offered: {s}");
    let o = run(&[&"cat", &torn, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 39);
    assert!(
        stderr(&o).contains(&format!(
            "torn tail at byte offset {} of its decompressed stream",
            offs[39]
        )),
        "{}",
        stderr(&o)
    );

    // A damaged line in the middle.
    let mut flipped = bytes.clone();
    flipped[offs[20] as usize] = b'#';
    let mid = compress("node_2_archived.zst", &flipped);
    let o = run(&[&"verify", &mid, &"--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    assert_eq!(v["damage"][0]["offset"], offs[20]);
    assert_eq!(v["damage"][0]["end"], offs[21]);
    assert_eq!(v["damage"][0]["kind"], "corruption");
    let o = run(&[&"cat", &mid, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o).lines().count(), 20);
    let e = stderr(&o);
    assert!(
        e.contains(&offs[20].to_string()) && e.contains("decompressed"),
        "{e}"
    );
    let o = run(&[&"cat", &mid, &"-t", &"{message}", &"--recovery", &"skip"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 39);

    // The archive file itself cut short: corruption where decompression
    // stopped, the records before it still printed.
    // (Entries that do not compress to nothing, so the archive holds many
    // zstd blocks.)
    let big_log = dir.path().join("big.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking("big", ContextOptions::new().path(&big_log))
        .unwrap();
    for i in 0..3000u64 {
        let hex: String = noise(i, 40).iter().map(|b| format!("{b:02x}")).collect();
        ctx.log_blocking(Message::info(format!("entry {i} {hex}")))
            .unwrap();
    }
    logger.close_blocking().unwrap();
    let big = std::fs::read(&big_log).unwrap();
    let whole = std::fs::read(compress("node_3_archived.zst", &big)).unwrap();
    let cut = dir.path().join("node_4_archived.zst");
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let o = run(&[&"verify", &cut, &"--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let v = json(&o);
    let last = v["damage"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "corruption");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be read past"),
        "{last}"
    );
    let o = run(&[&"cat", &cut, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(2));
    let printed = stdout(&o).lines().count();
    assert!(printed > 0 && printed < 3000, "{printed}");
    assert!(stderr(&o).contains("decompressed"), "{}", stderr(&o));
}

#[test]
fn repair_leaves_files_that_are_not_logs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x20\0\0\0\x20\x08\x06\0\0\0".to_vec();
    let tiny_png = png.clone();
    png.extend(noise(1, 3000));
    let mut tar = b"notes.txt".to_vec();
    tar.resize(257, 0);
    tar.extend_from_slice(b"ustar\x0000");
    tar.resize(512, 0);
    tar.extend(noise(2, 2000));
    tar.resize(10240, 0);
    let files = [
        ("pic.png", png),
        ("icon.png", tiny_png),
        ("bundle.tar", tar),
        ("random.bin", noise(3, 4000)),
    ];
    for (name, bytes) in &files {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let before = snapshot(dir.path());
        for extra in [&[][..], &["--dry-run"]] {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"repair", &p];
            for e in extra {
                args.push(e);
            }
            let o = run(&args);
            assert_eq!(o.status.code(), Some(2), "{name} {extra:?}: {}", stdout(&o));
            let e = stderr(&o);
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains("log") && e.contains("--force"), "{e}");
            assert!(e.contains("Nothing was changed"), "{e}");
            assert_eq!(snapshot(dir.path()), before, "{name}: unchanged");
        }
        // The readers say it is not a log, and do not call it a torn tail.
        for cmd in ["cat", "verify", "stats"] {
            let o = run(&[&cmd, &p]);
            assert_eq!(o.status.code(), Some(3), "{cmd} {name}: {}", stdout(&o));
            assert!(stderr(&o).contains(&p.display().to_string()));
            assert!(!stdout(&o).contains("torn"), "{}", stdout(&o));
        }
        assert_eq!(snapshot(dir.path()), before);
    }
    // --force: the bytes move into a side file, nothing is destroyed.
    let p = dir.path().join("random.bin");
    let o = run(&[&"repair", &p, &"--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    let side = PathBuf::from(format!("{}.torn-0", p.display()));
    assert_eq!(std::fs::read(&side).unwrap(), noise(3, 4000));
}

#[test]
fn a_forced_format_that_does_not_match_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let json_log = dir.path().join("app.log.json");
    write_log(&json_log, LogFormat::Json, false, 5);
    let bin_log = dir.path().join("node.wal");
    write_log(&bin_log, LogFormat::Binary, true, 5);
    for (p, wrong, right, holds) in [
        (&json_log, "binary", "json", "JSON lines"),
        (&bin_log, "json", "binary", "binary records"),
    ] {
        for cmd in ["cat", "dump", "stats", "tail"] {
            let o = run(&[&cmd, p, &"--format", &wrong]);
            assert_eq!(o.status.code(), Some(3), "{cmd} {}", stdout(&o));
            assert!(stdout(&o).is_empty(), "{cmd}: {}", stdout(&o));
            let e = stderr(&o);
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains(holds), "{cmd}: {e}");
            let o = run(&[&cmd, p, &"--format", &right]);
            assert_eq!(o.status.code(), Some(0), "{cmd}: {}", stderr(&o));
        }
    }
}

#[test]
fn repair_checks_sealed_segments_and_cuts_them_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "seg",
            ContextOptions::new()
                .path(&p)
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .retention_policy(RetentionPolicy::new().max_size(4096)),
        )
        .unwrap();
    for i in 0..150 {
        ctx.log_blocking(Message::info(format!("entry {i}")))
            .unwrap();
    }
    ctx.close_blocking().unwrap();
    let segs = hyperlog::segments::list_segments(&hyperlog::fs::StdFs, &p);
    assert!(segs.len() >= 2);
    let o = run(&[&"repair", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    assert!(stdout(&o).contains("sealed segments"), "{}", stdout(&o));

    // A sealed segment that ends torn, and a torn live file.
    let seg = &segs[0].path;
    let seg_bytes = std::fs::read(seg).unwrap();
    let seg_offs = offsets(seg);
    let seg_cut = seg_bytes.len() - 5;
    std::fs::write(seg, &seg_bytes[..seg_cut]).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"\x01\x02\x03 half a record").unwrap();
    drop(f);
    let before = snapshot(dir.path());

    let o = run(&[&"repair", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains(&seg.display().to_string()), "{e}");
    assert!(
        e.contains("sealed segment") && e.contains("acknowledged"),
        "{e}"
    );
    assert!(e.contains("--force"), "{e}");
    assert_eq!(snapshot(dir.path()), before, "refused: nothing changed");
    // Named directly, a sealed segment is still one.
    let o = run(&[&"repair", seg]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("sealed segment"), "{}", stderr(&o));
    assert_eq!(snapshot(dir.path()), before, "refused: nothing changed");

    let o = run(&[&"repair", &p, &"--force", &"--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    let last = *seg_offs.last().unwrap();
    assert!(
        s.contains(&format!("{}: torn tail at offset {last}", seg.display())),
        "{s}"
    );
    assert!(s.contains("--force: it is a sealed segment"), "{s}");
    assert_eq!(snapshot(dir.path()), before, "dry run: nothing changed");

    let o = run(&[&"repair", &p, &"--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(seg).unwrap().len(), last);
    let side = PathBuf::from(format!("{}.torn-{last}", seg.display()));
    assert_eq!(
        std::fs::read(&side).unwrap(),
        &seg_bytes[last as usize..seg_cut],
        "the cut bytes are kept"
    );
    let o = run(&[&"cat", &p, &"-t", &"{message}"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        149,
        "one entry was lost with the segment's tail"
    );

    // Damage in the middle of a sealed segment: refused even with --force.
    let mut bytes = std::fs::read(&segs[1].path).unwrap();
    let offs1 = offsets(&segs[1].path);
    bytes[offs1[1] as usize + 30] ^= 0x10;
    std::fs::write(&segs[1].path, &bytes).unwrap();
    let before = snapshot(dir.path());
    let o = run(&[&"repair", &p, &"--force"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--salvage"), "{}", stderr(&o));
    assert_eq!(snapshot(dir.path()), before);
}
