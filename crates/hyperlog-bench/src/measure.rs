//! Timing machinery: the producer driver, latency histograms, CPU time.
//!
//! A timed run starts every producer thread at once (a barrier), lets them
//! log for a fixed duration, stops them, then lets the logger *finish* (an
//! asynchronous peer drains its queue) before the clock stops, so a logger
//! that only queues does not look faster than one that writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Something that logs from many threads at once.
pub trait Producer: Sync {
    /// Runs `body` on the current producer thread inside whatever scope the
    /// logger needs (a `tracing` dispatcher, say). The default runs it as is.
    fn scoped(&self, body: &mut dyn FnMut()) {
        body()
    }

    /// Logs one entry whose message is `text` and returns once the logger
    /// acknowledged it.
    fn log_one(&self, text: &str) -> Result<(), String>;

    /// Called after the producers stopped, with the clock still running:
    /// waits until all `entries` logged are where the logger's promise puts
    /// them (an asynchronous peer drains its queue here).
    fn finish(&mut self, entries: u64) -> Result<(), String> {
        let _ = entries;
        Ok(())
    }
}

/// What one timed run measured.
#[derive(Debug, Clone)]
pub struct Drive {
    /// Entries acknowledged in the timed window.
    pub entries: u64,
    /// Entries written in all, the untimed warm-up entry included (for
    /// bytes per entry).
    pub written: u64,
    /// From the start of the producers to the end of [`Producer::finish`].
    pub elapsed: Duration,
    /// CPU time of the whole process (user + system) over `elapsed`.
    pub cpu: Duration,
    /// Per-call acknowledgement latency in nanoseconds, when asked for.
    pub latency: Option<Histogram<u64>>,
    /// From the start of the producers until the last one stopped (without
    /// [`Producer::finish`]): the time spent inside the calls.
    pub producing: Duration,
    /// Peak resident set size of the process during the run (VmHWM, reset
    /// just before the run via `/proc/self/clear_refs`), bytes; 0 if
    /// unknown.
    pub peak_rss: u64,
    /// Resident set size just before the run, bytes (the harness and every
    /// earlier allocation still held); `peak_rss - rss_before` is the run's
    /// own growth.
    pub rss_before: u64,
    /// Bytes handed to `write`-family system calls by the whole process
    /// during the run (`wchar` of `/proc/self/io`).
    pub wchar: u64,
}

impl Drive {
    /// Entries per second.
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds spent per million entries.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.entries.max(1) as f64)
    }

    /// Wall time per call of one producer: time producing times producers
    /// over entries, in nanoseconds (meaningful for one producer).
    pub fn ns_per_call(&self, producers: usize) -> f64 {
        self.producing.as_secs_f64() * 1e9 * producers as f64 / (self.entries.max(1) as f64)
    }

    /// Peak RSS growth over the run, in MiB.
    pub fn peak_growth_mib(&self) -> f64 {
        self.peak_rss.saturating_sub(self.rss_before) as f64 / (1024.0 * 1024.0)
    }

    /// Bytes passed to `write(2)`/`pwrite(2)` per entry.
    pub fn wchar_per_entry(&self) -> f64 {
        self.wchar as f64 / self.written.max(1) as f64
    }

    /// A file's size divided by the entries written into it.
    pub fn bytes_per_entry(&self, file_bytes: u64) -> f64 {
        file_bytes as f64 / self.written.max(1) as f64
    }
}

/// A latency histogram in nanoseconds, 1 ns to 1 h, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that `new_with_bounds` accepts.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// The `q` quantile (0..=1) of a nanosecond histogram, in microseconds.
pub fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Records one duration into a nanosecond histogram, saturating.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().clamp(1, u64::MAX as u128) as u64);
}

/// Runs `threads` producer threads against `producer` for `duration`, each
/// logging `text` in a loop. With `timed`, every call is timed with
/// [`Instant`] into a per-thread histogram, merged at the end.
///
/// One untimed warm-up entry is logged first, from the calling thread, so
/// that one-time costs (a `tracing` callsite's registration, a writer's
/// first preallocation of its file) stay out of the figures.
pub fn drive<P: Producer>(
    producer: &mut P,
    threads: usize,
    duration: Duration,
    text: &str,
    timed: bool,
) -> Result<Drive, String> {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let merged: Mutex<Option<Histogram<u64>>> = Mutex::new(timed.then(latency_histogram));
    let mut total = 0u64;
    let mut warmup = Ok(());
    producer.scoped(&mut || warmup = producer.log_one(text));
    warmup.map_err(|e| format!("warm-up entry: {e}"))?;
    let shared: &P = producer;
    let mut producing = Duration::ZERO;
    let mem0 = MemStart::now();
    let (start, cpu0) = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (stop, barrier, first_error, merged) = (&stop, &barrier, &first_error, &merged);
            handles.push(s.spawn(move || {
                let mut hist = timed.then(latency_histogram);
                let mut n = 0u64;
                barrier.wait();
                shared.scoped(&mut || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = hist.as_ref().map(|_| Instant::now());
                        if let Err(e) = shared.log_one(text) {
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        if let (Some(h), Some(t)) = (hist.as_mut(), t) {
                            record(h, t.elapsed());
                        }
                        n += 1;
                    }
                });
                if let Some(h) = hist {
                    let mut m = merged.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(m) = m.as_mut() {
                        // Same bounds on both sides: `add` cannot fail.
                        let _ = m.add(&h);
                    }
                }
                n
            }));
        }
        let cpu0 = cpu_time();
        barrier.wait();
        let start = Instant::now();
        let deadline = start + duration;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            match h.join() {
                Ok(n) => total += n,
                Err(_) => {
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| "a producer thread panicked".into());
                }
            }
        }
        producing = start.elapsed();
        (start, cpu0)
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    producer.finish(total + 1)?;
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let (peak_rss, rss_before, wchar) = mem0.end();
    Ok(Drive {
        entries: total,
        written: total + 1,
        elapsed,
        cpu,
        latency: merged.into_inner().unwrap_or_else(|p| p.into_inner()),
        producing,
        peak_rss,
        rss_before,
        wchar,
    })
}

/// Like [`drive`], but the producers are `tasks` async tasks on a tokio
/// runtime with two worker threads, each awaiting `Context::log` in a loop:
/// how an async service with many concurrent requests logs. Every call is
/// timed.
pub fn drive_tasks(
    ctx: &hyperlog::Context,
    tasks: usize,
    duration: Duration,
    text: &str,
) -> Result<Drive, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    ctx.log_blocking(hyperlog::Message::info(text))
        .map_err(|e| format!("warm-up entry: {e}"))?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mem0 = MemStart::now();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let results: Vec<Result<(u64, Histogram<u64>), String>> = rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (ctx, stop, text) = (ctx.clone(), stop.clone(), text.to_string());
                tokio::spawn(async move {
                    let mut h = latency_histogram();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        ctx.log(hyperlog::Message::info(text.as_str()))
                            .await
                            .map_err(|e| e.to_string())?;
                        record(&mut h, t.elapsed());
                        n += 1;
                    }
                    Ok((n, h))
                })
            })
            .collect();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(
                h.await
                    .unwrap_or_else(|e| Err(format!("a producer task failed: {e}"))),
            );
        }
        out
    });
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let (peak_rss, rss_before, wchar) = mem0.end();
    let mut merged = latency_histogram();
    let mut total = 0;
    for r in results {
        let (n, h) = r?;
        total += n;
        let _ = merged.add(&h);
    }
    Ok(Drive {
        entries: total,
        written: total + 1,
        elapsed,
        cpu,
        latency: Some(merged),
        producing: elapsed,
        peak_rss,
        rss_before,
        wchar,
    })
}

/// Memory and I/O counters at the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct MemStart {
    rss: u64,
    wchar: u64,
}

impl MemStart {
    /// Resets the process's peak RSS to its current RSS (`echo 5 >
    /// /proc/self/clear_refs`, Linux 4.0+) and notes RSS and `wchar`.
    pub fn now() -> Self {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        MemStart {
            rss: status_kib("VmRSS:") * 1024,
            wchar: io_counter("wchar:"),
        }
    }

    /// Peak RSS since [`MemStart::now`], the RSS then, and the bytes written
    /// since (`wchar`).
    pub fn end(&self) -> (u64, u64, u64) {
        (
            status_kib("VmHWM:") * 1024,
            self.rss,
            io_counter("wchar:").saturating_sub(self.wchar),
        )
    }
}

/// A `kB` field of `/proc/self/status`; 0 if unknown.
pub fn status_kib(field: &str) -> u64 {
    proc_self_field("status", field)
}

fn io_counter(field: &str) -> u64 {
    proc_self_field("io", field)
}

/// The number after `field` in `/proc/self/{file}`; 0 if unknown.
fn proc_self_field(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time consumed so far by every thread of this process
/// (`getrusage(RUSAGE_SELF)`); zero if the call fails.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and zeroed
    // memory is a valid `rusage` anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The file system type of `path` as Linux names it (`ext4`, `xfs`,
/// `tmpfs`, ...), or its magic number in hex when unknown.
pub fn fs_type(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a writable `statfs`.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return "unknown".into();
    }
    // SAFETY: statfs returned 0, so it filled the struct.
    let magic = unsafe { st.assume_init() }.f_type as u64;
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        m => format!("0x{m:x}"),
    }
}

/// The median of some numbers (the mean of the middle two for an even
/// count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Counter(AtomicU64);
    impl Producer for Counter {
        fn log_one(&self, text: &str) -> Result<(), String> {
            self.0.fetch_add(text.len() as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn drive_counts_every_call() {
        let mut p = Counter(AtomicU64::new(0));
        let d = drive(&mut p, 3, Duration::from_millis(30), "abcd", true).unwrap();
        assert!(d.entries > 0);
        assert_eq!(p.0.load(Ordering::Relaxed), d.written * 4);
        assert_eq!(d.written, d.entries + 1);
        assert_eq!(d.latency.unwrap().len(), d.entries);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
