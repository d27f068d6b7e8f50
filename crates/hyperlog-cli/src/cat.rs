//! `cat`, `dump` and `tail`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyperlog::template::METADATA_FIELDS;
use hyperlog::{LogLevel, Lsn, RawEntry, ReadOptions, RecoveryMode, Template};
use serde_json::Value;

use crate::util::{Fail, Out, explain, style, walk};
use crate::{DisplayArgs, FilterArgs, Output};

/// Prints entries in one of the output forms.
pub struct Printer {
    output: Output,
    template: Option<Template>,
    explain: bool,
    header_done: bool,
}

/// The names of the placeholders in a template source, so that any entry
/// field may be used.
fn placeholder_names(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' {
            if chars.peek() == Some(&'{') {
                chars.next();
                continue;
            }
            let mut name = String::new();
            for c in chars.by_ref() {
                if c == '}' || c == ':' {
                    break;
                }
                name.push(c);
            }
            if !name.is_empty() && !name.contains('{') {
                names.push(name);
            }
        }
    }
    names
}

/// Renders a JSON value for a template: strings bare, null empty.
fn value_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

/// The entry's level (`INFO` when it has none).
pub fn level_of(v: &Value) -> LogLevel {
    v.get("entry")
        .and_then(|e| e.get("level"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

fn message_of(v: &Value) -> String {
    let mut s = String::new();
    if let Some(m) = v.get("entry").and_then(|e| e.get("message")) {
        value_text(m, &mut s);
    }
    s
}

impl Printer {
    /// A printer for `d`; fails on a bad template.
    pub fn new(d: &DisplayArgs) -> Result<Printer, Fail> {
        let template = if d.output == Output::Text {
            let names = placeholder_names(&d.template);
            let extra: Vec<&str> = names.iter().map(String::as_str).collect();
            Some(Template::parse(&d.template, &extra).map_err(|e| Fail::io(e.to_string()))?)
        } else {
            None
        };
        Ok(Printer {
            output: d.output,
            template,
            explain: d.explain_lsn,
            header_done: false,
        })
    }

    /// Prints one record (already parsed into `v`).
    pub fn print(&mut self, out: &mut Out, e: &RawEntry, v: &Value) -> Result<(), Fail> {
        let lsn = e.lsn;
        match self.output {
            Output::Json => {
                if self.explain
                    && let (Some(l), Value::Object(map)) = (lsn, v)
                {
                    let mut map = map.clone();
                    map.insert(
                        "lsn_time".into(),
                        crate::util::iso_ms(l.timestamp_ms()).into(),
                    );
                    map.insert("lsn_instance".into(), l.instance_id().into());
                    map.insert("lsn_sequence".into(), l.sequence().into());
                    out.line(&Value::Object(map).to_string())
                } else {
                    out.line(&String::from_utf8_lossy(&e.payload))
                }
            }
            Output::Text => {
                let mut s = String::new();
                if let Some(t) = &self.template {
                    t.render(&mut s, |name, buf| {
                        let field = if METADATA_FIELDS.contains(&name) {
                            v.get(name)
                        } else {
                            v.get("entry").and_then(|en| en.get(name))
                        };
                        match field {
                            Some(f) => {
                                value_text(f, buf);
                                true
                            }
                            None => false,
                        }
                    });
                }
                self.push_explain(&mut s, lsn);
                out.line(&s)
            }
            Output::Table => {
                if !self.header_done {
                    self.header_done = true;
                    let b = style::BOLD;
                    let mut h = format!(
                        "{b}{:>10}  {:<20}  {:<32}  {:<8}  {}{b:#}",
                        "OFFSET", "LSN", "TIMESTAMP", "LEVEL", "MESSAGE"
                    );
                    if self.explain {
                        h.push_str(&format!("  {b}LSN TIME / INSTANCE / SEQ{b:#}"));
                    }
                    out.line(&h)?;
                }
                let level = level_of(v).as_str();
                let st = style::level(level);
                let ts = v.get("timestamp").and_then(Value::as_str).unwrap_or("");
                let lsn_s = lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                let msg = message_of(v).replace('\n', "\\n");
                let mut s = format!(
                    "{:>10}  {:<20}  {:<32}  {st}{:<8}{st:#}  {}",
                    e.offset, lsn_s, ts, level, msg
                );
                if self.explain
                    && let Some(l) = lsn
                {
                    s.push_str(&format!("  {}", explain(l)));
                }
                out.line(&s)
            }
        }
    }

    fn push_explain(&self, s: &mut String, lsn: Option<Lsn>) {
        if self.explain {
            let d = style::DIM;
            match lsn {
                Some(l) => s.push_str(&format!("  {d}[lsn {l}: {}]{d:#}", explain(l))),
                None => s.push_str(&format!("  {d}[no lsn]{d:#}")),
            }
        }
    }
}

/// Parses a record's payload.
pub fn parse(path: &Path, e: &RawEntry) -> Result<Value, Fail> {
    serde_json::from_slice(&e.payload).map_err(|err| {
        Fail::corrupt(format!(
            "{}: the entry at byte offset {} could not be decoded: {err}",
            path.display(),
            e.offset
        ))
    })
}

/// Whether an entry passes the filters (other than offset and limit).
fn passes(f: &FilterArgs, e: &RawEntry, v: &Value) -> bool {
    if let Some(from) = f.from_lsn {
        match e.lsn {
            Some(l) if l.get() >= from => {}
            _ => return false,
        }
    }
    if let Some(min) = f.level
        && level_of(v) < min
    {
        return false;
    }
    if let Some(g) = &f.grep
        && !message_of(v).contains(g.as_str())
        && !String::from_utf8_lossy(&e.payload).contains(g.as_str())
    {
        return false;
    }
    true
}

fn warn_passed(end: &crate::util::WalkEnd) {
    let w = style::WARN;
    for (file, off, reason) in &end.torn {
        anstream::eprintln!(
            "{w}warning:{w:#} {} ends in a torn tail at byte offset {off}{}: {reason}",
            file.display(),
            end.offsets_in(file)
        );
    }
    for (file, a, b) in &end.skipped {
        if !end.torn.iter().any(|t| &t.0 == file && t.1 == *a) {
            anstream::eprintln!(
                "{w}warning:{w:#} {}: skipped damaged bytes {a}..{b}{}",
                file.display(),
                end.offsets_in(file)
            );
        }
    }
}

/// `hyperlog cat`.
pub fn cat(path: &Path, d: &DisplayArgs, f: &FilterArgs) -> Result<u8, Fail> {
    let mut printer = Printer::new(d)?;
    let mut out = Out::new();
    let mut printed = 0usize;
    if f.limit == Some(0) {
        return Ok(0);
    }
    let from_lsn = f.from_lsn.map(Lsn::new);
    let end = walk(
        path,
        f.from_offset,
        from_lsn,
        d.recovery.mode(),
        d.format,
        |file, e| {
            let v = parse(file, &e)?;
            if passes(f, &e, &v) {
                printer.print(&mut out, &e, &v)?;
                printed += 1;
                if f.limit.is_some_and(|l| printed >= l) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    out.flush()?;
    warn_passed(&end);
    Ok(0)
}

/// For a large single-file JSON log, the start of a line close enough to
/// the end to hold the last `n` entries, found by counting newlines
/// backwards (JSON strings cannot hold a raw newline), so `tail` does not
/// read the whole file. `None`: read from the start.
fn json_tail_start(path: &Path, n: usize) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    if crate::util::segment_count(path) > 0 {
        return None;
    }
    let f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < 1 << 20 {
        return None;
    }
    let mut first = [0u8; 1];
    f.read_exact_at(&mut first, 0).ok()?;
    if first[0] != b'{' {
        return None;
    }
    let want = n + 2;
    let mut found = 0usize;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start).ok()?;
        for (i, &c) in chunk.iter().enumerate().rev() {
            if c == b'\n' {
                found += 1;
                if found == want {
                    return Some(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    None
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() {
    let h = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, h as libc::sighandler_t);
        libc::signal(libc::SIGTERM, h as libc::sighandler_t);
    }
}

/// Whether the reader of standard output has gone away.
fn stdout_closed() -> bool {
    let mut p = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `hyperlog tail`.
pub fn tail(path: &Path, n: usize, follow: bool, d: &DisplayArgs) -> Result<u8, Fail> {
    if follow && crate::util::is_archive(path) {
        return Err(Fail::io(format!(
            "{} is a zstd archive: it never grows, so there is nothing to follow; run `hyperlog tail` without -f",
            path.display()
        )));
    }
    if follow {
        install_stop_handlers();
    }
    let mut printer = Printer::new(d)?;
    let mut out = Out::new();
    if follow && is_wal(path) {
        return follow_wal(path, n, d, &mut printer, &mut out);
    }
    let mut last: VecDeque<(std::path::PathBuf, RawEntry)> = VecDeque::with_capacity(n.min(4096));
    let start = json_tail_start(path, n).unwrap_or(0);
    let end = walk(path, start, None, d.recovery.mode(), d.format, |file, e| {
        if n > 0 {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back((file.to_path_buf(), e));
        }
        Ok(true)
    })?;
    for (file, e) in &last {
        let v = parse(file, e)?;
        printer.print(&mut out, e, &v)?;
    }
    out.flush()?;
    if !follow {
        warn_passed(&end);
        return Ok(0);
    }
    let mode = follow_mode(d);
    let mut f = Follower {
        cur: Followed::open(path),
        pos: end.last_end,
        last_warning: None,
        mode,
    };
    loop {
        for _ in 0..4 {
            if STOP.load(Ordering::SeqCst) || stdout_closed() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drain the file being followed, through its open descriptor: what
        // was appended before a rotation is read even after the rename.
        f.drain(path, &mut printer, &mut out)?;
        // Rotation: the path names another file now; start at its beginning.
        if let Some(now) = file_id(path)
            && f.cur.as_ref().is_none_or(|c| c.id != (now.0, now.1))
        {
            f.cur = Followed::open(path);
            f.pos = 0;
            f.drain(path, &mut printer, &mut out)?;
        }
    }
}

/// Whether `tail -f` follows `path` as a write-ahead log: it has sealed
/// segments, or its records carry LSNs (a WAL that has not rotated yet).
fn is_wal(path: &Path) -> bool {
    crate::util::segment_count(path) > 0
        || matches!(
            hyperlog::get_last_lsn_blocking(path, &ReadOptions::default()),
            Ok(Some(_))
        )
}

/// How a follower reads: strict mode would fail at once on the partial
/// last record that a file being written normally ends in.
fn follow_mode(d: &DisplayArgs) -> RecoveryMode {
    match d.recovery.mode() {
        RecoveryMode::AbsoluteConsistency => RecoveryMode::TolerateTail,
        m => m,
    }
}

/// `tail -f` of a write-ahead log: the last `n` records, then every record
/// written after them, once each and in order, across rotations into
/// segments (the library's reader re-lists the segments and tells a sealed
/// file from the live one by its inode). It shows what is *written*:
/// whether an entry is durable yet is known only inside the writing process
/// (`Context::follow` there).
fn follow_wal(
    path: &Path,
    n: usize,
    d: &DisplayArgs,
    printer: &mut Printer,
    out: &mut Out,
) -> Result<u8, Fail> {
    let mode = follow_mode(d);
    let open = |from: Option<hyperlog::Lsn>| {
        let mut o = ReadOptions::new().recovery(mode);
        if let Some(l) = from {
            o = o.from_lsn(l);
        }
        hyperlog::read_log_records(path, 0, o)
    };
    let mut it = open(None);
    let mut last: VecDeque<RawEntry> = VecDeque::with_capacity(n.min(4096));
    // Where to start again after an error: above the last LSN seen, or
    // after as many records as were seen (a log without LSNs).
    let (mut last_lsn, mut seen) = (None, 0u64);
    for item in it.by_ref() {
        let e = item?;
        last_lsn = e.lsn.or(last_lsn);
        seen += 1;
        if n > 0 {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(e);
        }
    }
    for e in &last {
        printer.print(out, e, &parse(path, e)?)?;
    }
    out.flush()?;
    let mut last_warning: Option<String> = None;
    loop {
        for _ in 0..4 {
            if STOP.load(Ordering::SeqCst) || stdout_closed() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut failed = it.refresh().err();
        let mut printed = false;
        if failed.is_none() {
            for item in it.by_ref() {
                match item {
                    Ok(e) => {
                        last_lsn = e.lsn.or(last_lsn);
                        seen += 1;
                        printer.print(out, &e, &parse(path, &e)?)?;
                        printed = true;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if printed {
            out.flush()?;
        }
        if let Some(e) = failed {
            let msg = e.to_string();
            if last_warning.as_deref() != Some(msg.as_str()) {
                let w = style::WARN;
                anstream::eprintln!("{w}warning:{w:#} {msg}");
                last_warning = Some(msg);
            }
            // Start again after what was printed.
            it = match last_lsn {
                Some(l) => open(Some(hyperlog::Lsn::new(l.get().saturating_add(1)))),
                None => {
                    let mut again = open(None);
                    for _ in again.by_ref().take(seen as usize) {}
                    again
                }
            };
        }
    }
}

/// The file `tail -f` reads, held open.
struct Followed {
    file: std::fs::File,
    id: (u64, u64),
}

impl Followed {
    fn open(path: &Path) -> Option<Followed> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::open(path).ok()?;
        let m = file.metadata().ok()?;
        Some(Followed {
            file,
            id: (m.dev(), m.ino()),
        })
    }

    /// A path that opens this very file, also after it was renamed.
    fn read_path(&self, path: &Path) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        let p = std::path::PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if p.exists() { p } else { path.to_path_buf() }
    }
}

struct Follower {
    cur: Option<Followed>,
    pos: u64,
    last_warning: Option<String>,
    mode: RecoveryMode,
}

impl Follower {
    /// Prints the records appended to the followed file since `pos`.
    fn drain(&mut self, path: &Path, printer: &mut Printer, out: &mut Out) -> Result<(), Fail> {
        let Some(cur) = &self.cur else {
            return Ok(());
        };
        let Ok(len) = cur.file.metadata().map(|m| m.len()) else {
            return Ok(());
        };
        if len < self.pos {
            // Truncated: start over from the beginning.
            self.pos = 0;
        }
        if len <= self.pos {
            return Ok(());
        }
        let read_path = cur.read_path(path);
        let mut printed = false;
        for item in
            hyperlog::read_records(&read_path, self.pos, ReadOptions::new().recovery(self.mode))
        {
            match item {
                Ok(e) => {
                    self.pos = e.end;
                    let v = parse(path, &e)?;
                    printer.print(out, &e, &v)?;
                    printed = true;
                }
                Err(hyperlog::Error::NotARecordBoundary { .. }) => {
                    // Rewritten in place: start over.
                    self.pos = 0;
                    break;
                }
                Err(e) => {
                    let msg = e
                        .to_string()
                        .replace(&*read_path.to_string_lossy(), &path.to_string_lossy());
                    if self.last_warning.as_deref() != Some(msg.as_str()) {
                        let w = style::WARN;
                        anstream::eprintln!("{w}warning:{w:#} {msg}");
                        self.last_warning = Some(msg);
                    }
                    break;
                }
            }
        }
        if printed {
            out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            placeholder_names("{{x}} {a:>5} {b} {{"),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
