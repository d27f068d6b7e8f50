//! Group commit: how many entries one write (and one `fdatasync`) carries,
//! and how long the writer may wait for companions.
//!
//! Policy, in order:
//! - a group is full at `batch_max_size` entries or `batch_max_bytes` bytes
//!   (one entry in `Fsync` mode: each entry gets its own sync);
//! - an explicit `batch_timeout` is the longest the writer waits, from the
//!   group's first entry, for the group to fill;
//! - otherwise (the default) the writer syncs as soon as the queue is empty,
//!   with one refinement for syncing modes: the producers acknowledged by
//!   the last sync are probably about to send again, so the writer expects
//!   them back, plus whatever was already queued when they were
//!   acknowledged, and waits for that many entries for at most a quarter of
//!   the last sync's duration (capped at [`MAX_ADAPTIVE_WAIT`]). Without it,
//!   N waiting producers settle into two cohorts that alternate on the disk,
//!   each sync carrying N/2. A lone producer expects only itself back, so it
//!   never waits: it pays one sync, not a timeout.
//!
//! The type is pure (durations in, decisions out) so it is tested without a
//! disk or a clock.

use std::time::Duration;

/// The cap on the adaptive wait.
pub(crate) const MAX_ADAPTIVE_WAIT: Duration = Duration::from_micros(500);

#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    max_entries: usize,
    max_bytes: usize,
    fixed_wait: Duration,
    syncs: bool,
    /// Entries expected in the next group: the last group plus the backlog
    /// queued behind it when it was acknowledged.
    expected: usize,
    last_sync: Duration,
}

impl GroupCommit {
    pub fn new(max_entries: usize, max_bytes: usize, fixed_wait: Duration, syncs: bool) -> Self {
        GroupCommit {
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            fixed_wait,
            syncs,
            expected: 0,
            last_sync: Duration::ZERO,
        }
    }

    /// Whether a group of `entries` entries and `bytes` bytes takes no more.
    pub fn is_full(&self, entries: usize, bytes: usize) -> bool {
        entries >= self.max_entries || bytes >= self.max_bytes
    }

    /// How long, from the group's first entry, the writer may wait for more
    /// once the queue is empty; `None`: commit now.
    pub fn wait_budget(&self, entries: usize, bytes: usize) -> Option<Duration> {
        if self.is_full(entries, bytes) {
            return None;
        }
        if !self.fixed_wait.is_zero() {
            return Some(self.fixed_wait);
        }
        if self.syncs && entries < self.expected {
            return Some((self.last_sync / 4).min(MAX_ADAPTIVE_WAIT));
        }
        None
    }

    /// Whether the group may stop gathering although the wait has not run
    /// out: it holds every entry expected (adaptive mode only).
    pub fn caught_up(&self, entries: usize) -> bool {
        self.fixed_wait.is_zero() && entries >= self.expected
    }

    /// Records a committed group of `entries`, how long its sync took, and
    /// how many entries were queued behind it when it was acknowledged.
    pub fn record(&mut self, entries: usize, sync: Duration, backlog: usize) {
        self.expected = entries.saturating_add(backlog).min(self.max_entries);
        self.last_sync = sync;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_producer_never_waits() {
        let mut g = GroupCommit::new(1000, 1 << 20, Duration::ZERO, true);
        assert_eq!(g.wait_budget(1, 100), None);
        g.record(1, Duration::from_micros(300), 0);
        assert_eq!(g.wait_budget(1, 100), None);
        assert!(g.caught_up(1));
    }

    #[test]
    fn waits_for_the_previous_cohort_within_a_quarter_sync() {
        let mut g = GroupCommit::new(1000, 1 << 20, Duration::ZERO, true);
        g.record(64, Duration::from_micros(400), 0);
        assert_eq!(g.wait_budget(10, 1000), Some(Duration::from_micros(100)));
        assert!(!g.caught_up(63));
        assert!(g.caught_up(64));
        g.record(64, Duration::from_millis(50), 0);
        assert_eq!(g.wait_budget(10, 1000), Some(MAX_ADAPTIVE_WAIT));
    }

    #[test]
    fn two_alternating_cohorts_merge() {
        // 32 acknowledged while 32 more were queued: expect all 64 back.
        let mut g = GroupCommit::new(1000, 1 << 20, Duration::ZERO, true);
        g.record(32, Duration::from_micros(300), 32);
        assert!(!g.caught_up(32));
        assert!(g.wait_budget(32, 3200).is_some());
        assert!(g.caught_up(64));
        // Never more than a group holds.
        g.record(900, Duration::from_micros(300), 900);
        assert!(g.caught_up(1000));
    }

    #[test]
    fn non_syncing_modes_never_wait_by_default() {
        let mut g = GroupCommit::new(1000, 1 << 20, Duration::ZERO, false);
        g.record(64, Duration::ZERO, 10);
        assert_eq!(g.wait_budget(1, 10), None);
    }

    #[test]
    fn limits_and_fixed_timeout() {
        let g = GroupCommit::new(3, 100, Duration::from_millis(2), true);
        assert!(g.is_full(3, 0) && g.is_full(1, 100) && !g.is_full(2, 99));
        assert_eq!(g.wait_budget(3, 0), None);
        assert_eq!(g.wait_budget(1, 0), Some(Duration::from_millis(2)));
        assert!(!g.caught_up(2));
        let fsync_mode = GroupCommit::new(1, 100, Duration::ZERO, true);
        assert!(fsync_mode.is_full(1, 0));
    }
}
