//! Snowflake log sequence numbers and their generator.
//!
//! Layout (the reference's): `timestamp_ms << 22 | instance_id << 12 | sequence`,
//! Unix-epoch milliseconds in 42 bits (good until 2109), a 10-bit instance id
//! and a 12-bit sequence within one millisecond.
//!
//! The generator is pure: the clock is passed in, so the properties below are
//! unit-tested without waiting on a real clock. It lives inside a log's single
//! writer thread, which hands out LSNs in the order records enter the file, so
//! producers never contend on it.
//!
//! Invariants: every LSN is strictly greater than the one before it, also when
//! the clock steps back (the last timestamp is kept), when more than 4,096
//! arrive in one millisecond (the timestamp advances logically: no failure, no
//! sleep), and across restarts (the generator is seeded with the last LSN on
//! disk).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bits of the per-millisecond sequence.
const SEQUENCE_BITS: u32 = 12;
/// Bits of the instance id.
const INSTANCE_BITS: u32 = 10;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const INSTANCE_MASK: u64 = (1 << INSTANCE_BITS) - 1;
const TIMESTAMP_SHIFT: u32 = SEQUENCE_BITS + INSTANCE_BITS;

/// A 64-bit snowflake log sequence number.
///
/// Serializes as a plain integer.
///
/// ```
/// use hyperlog::Lsn;
/// let lsn = Lsn::from_parts(1_700_000_000_000, 7, 3);
/// assert_eq!(lsn.timestamp_ms(), 1_700_000_000_000);
/// assert_eq!(lsn.instance_id(), 7);
/// assert_eq!(lsn.sequence(), 3);
/// assert_eq!(Lsn::new(lsn.get()), lsn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lsn(u64);

impl Lsn {
    /// The largest instance id (`instance_id` is 0..=1023).
    pub const MAX_INSTANCE_ID: u16 = INSTANCE_MASK as u16;
    /// The largest per-millisecond sequence.
    pub const MAX_SEQUENCE: u16 = SEQUENCE_MASK as u16;

    /// Wraps a raw value.
    pub const fn new(raw: u64) -> Self {
        Lsn(raw)
    }

    /// Builds an LSN from its parts; parts wider than their fields are masked.
    pub const fn from_parts(timestamp_ms: u64, instance_id: u16, sequence: u16) -> Self {
        Lsn((timestamp_ms << TIMESTAMP_SHIFT)
            | ((instance_id as u64 & INSTANCE_MASK) << SEQUENCE_BITS)
            | (sequence as u64 & SEQUENCE_MASK))
    }

    /// The raw 64-bit value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Unix-epoch milliseconds (possibly advanced past the wall clock when more
    /// than 4,096 LSNs were issued in one millisecond).
    pub const fn timestamp_ms(self) -> u64 {
        self.0 >> TIMESTAMP_SHIFT
    }

    /// The writer's instance id, 0..=1023.
    pub const fn instance_id(self) -> u16 {
        ((self.0 >> SEQUENCE_BITS) & INSTANCE_MASK) as u16
    }

    /// The sequence within the millisecond, 0..=4095.
    pub const fn sequence(self) -> u16 {
        (self.0 & SEQUENCE_MASK) as u16
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> u64 {
        l.0
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

/// Issues strictly increasing LSNs for one instance.
///
/// ```
/// use hyperlog::{Lsn, LsnGenerator};
/// let mut g = LsnGenerator::new(7);
/// let a = g.next(1_000);
/// let b = g.next(999); // the clock stepped back: still increasing
/// assert!(b > a);
/// assert_eq!(b.instance_id(), 7);
/// ```
#[derive(Debug, Clone)]
pub struct LsnGenerator {
    instance_id: u16,
    last_ms: u64,
    next_sequence: u64,
}

impl LsnGenerator {
    /// A generator for `instance_id` (masked to 10 bits; `configure` rejects
    /// larger ids before they get here).
    pub fn new(instance_id: u16) -> Self {
        LsnGenerator {
            instance_id: instance_id & Lsn::MAX_INSTANCE_ID,
            last_ms: 0,
            next_sequence: 0,
        }
    }

    /// Continue above `last`, the last LSN found on disk.
    pub fn resume_after(&mut self, last: Lsn) {
        let ms = last.timestamp_ms();
        if ms > self.last_ms || (ms == self.last_ms && last.sequence() as u64 >= self.next_sequence)
        {
            self.last_ms = ms;
            self.next_sequence = last.sequence() as u64 + 1;
        }
    }

    /// A lower bound of the next LSN this generator will issue: every LSN
    /// issued so far is below it.
    pub fn peek(&self) -> Lsn {
        if self.next_sequence > SEQUENCE_MASK {
            Lsn::from_parts(self.last_ms + 1, self.instance_id, 0)
        } else {
            Lsn::from_parts(self.last_ms, self.instance_id, self.next_sequence as u16)
        }
    }

    /// The next LSN, given the current wall clock in Unix milliseconds.
    pub fn next(&mut self, now_ms: u64) -> Lsn {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.next_sequence = 0;
        }
        if self.next_sequence > SEQUENCE_MASK {
            // More than 4,096 in this millisecond: borrow the next one.
            self.last_ms += 1;
            self.next_sequence = 0;
        }
        let lsn = Lsn::from_parts(self.last_ms, self.instance_id, self.next_sequence as u16);
        self.next_sequence += 1;
        lsn
    }
}

/// Milliseconds since the Unix epoch from the system clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_reference() {
        let l = Lsn::from_parts(1_764_000_000_123, 1023, 4095);
        assert_eq!(l.get(), (1_764_000_000_123u64 << 22) | (1023 << 12) | 4095);
        assert_eq!(l.timestamp_ms(), 1_764_000_000_123);
        assert_eq!(l.instance_id(), 1023);
        assert_eq!(l.sequence(), 4095);
        // The 42-bit timestamp lasts until 2109.
        let end_2108 = 4_386_268_800_000u64; // 2109-01-01T00:00:00Z in ms
        assert!(end_2108 < 1 << 42);
        assert_eq!(Lsn::from_parts(end_2108, 1, 1).timestamp_ms(), end_2108);
        assert_eq!(serde_json::to_string(&l).unwrap(), l.get().to_string());
    }

    #[test]
    fn increases_when_clock_steps_back() {
        let mut g = LsnGenerator::new(3);
        let a = g.next(10_000);
        let b = g.next(5_000);
        let c = g.next(10_000);
        assert!(a < b && b < c);
        assert_eq!(b.timestamp_ms(), 10_000);
    }

    #[test]
    fn more_than_4096_in_one_millisecond_advances_logically() {
        let mut g = LsnGenerator::new(1);
        let mut prev = g.next(42);
        for _ in 0..10_000 {
            let n = g.next(42);
            assert!(n > prev);
            prev = n;
        }
        assert!(prev.timestamp_ms() > 42);
        // The real clock catching up continues without a repeat.
        let n = g.next(43);
        assert!(n > prev);
    }

    #[test]
    fn resumes_above_last_on_disk() {
        let last = Lsn::from_parts(9_999_999, 5, 17);
        let mut g = LsnGenerator::new(5);
        g.resume_after(last);
        assert!(g.next(1) > last);
        let mut g = LsnGenerator::new(5);
        g.resume_after(Lsn::from_parts(100, 5, 4095));
        let n = g.next(100);
        assert!(n > Lsn::from_parts(100, 5, 4095));
    }

    #[test]
    fn distinct_instances_never_collide() {
        let mut a = LsnGenerator::new(1);
        let mut b = LsnGenerator::new(2);
        let xs: std::collections::HashSet<_> = (0..9000).map(|i| a.next(i / 3)).collect();
        assert!((0..9000).map(|i| b.next(i / 3)).all(|l| !xs.contains(&l)));
    }
}
