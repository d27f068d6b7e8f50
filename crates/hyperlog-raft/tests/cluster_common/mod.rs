//! What the cluster tests share: a seeded random generator, the run's
//! seed, and the record of acknowledged writes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// splitmix64: small, seedable, good enough to pick test inputs.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// An independent generator derived from this one and `salt`.
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next_u64() ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
}

/// The seed in `HYPERLOG_RAFT_SEED`, or one from the clock; printed, so a
/// failing run can be repeated.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("HYPERLOG_RAFT_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("HYPERLOG_RAFT_SEED: a number: {e:?}")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            Rng::new(t.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
        }
    };
    eprintln!("{test}: seed {seed} (repeat with HYPERLOG_RAFT_SEED={seed})");
    seed
}

/// The writes acknowledged to clients: key -> (value, log index). Every
/// key is written once (with one value), so the state machines must hold
/// exactly these.
#[derive(Default)]
pub struct Acks {
    writes: Mutex<BTreeMap<String, (String, u64)>>,
    count: AtomicUsize,
    /// Attempts refused before being appended (ForwardToLeader).
    pub forwarded: AtomicUsize,
    /// Attempts that found no node to take them (connection refused).
    pub refused: AtomicUsize,
    /// Attempts with an unknown outcome (discarded, node gone, timed out),
    /// retried.
    pub unknown: AtomicUsize,
}

impl Acks {
    pub fn record(&self, key: &str, value: &str, index: u64) {
        let prev = self
            .writes
            .lock()
            .unwrap()
            .insert(key.to_string(), (value.to_string(), index));
        assert!(prev.is_none(), "{key} acknowledged twice");
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The highest log index acknowledged.
    pub fn max_index(&self) -> u64 {
        let w = self.writes.lock().unwrap();
        w.values().map(|(_, i)| *i).max().unwrap_or(0)
    }

    /// What every state machine must hold.
    pub fn expected(&self) -> BTreeMap<String, String> {
        let w = self.writes.lock().unwrap();
        w.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
    }

    /// Waits until `n` writes are acknowledged; panics at `deadline`.
    pub async fn wait_for(&self, n: usize, deadline: Instant) {
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} writes acknowledged by the deadline",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
