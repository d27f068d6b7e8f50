//! The text that every benchmark logs.

/// An ASCII message text of exactly `len` bytes that needs no JSON escaping,
/// so every logger writes it as is.
///
/// ```
/// assert_eq!(hyperlog_bench::payload::text(100).len(), 100);
/// ```
pub fn text(len: usize) -> String {
    const WORDS: &str = "job 4711 scheduled on worker node-17 after 3 retries; \
                         queue depth 128, lag 42 ms, shard 9 of 64; ";
    WORDS.chars().cycle().take(len).collect()
}
