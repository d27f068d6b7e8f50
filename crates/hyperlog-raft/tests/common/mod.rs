//! What the reopen, crash and power-loss tests share: entries whose payload
//! follows from (index, term), so a checker that knows only an entry's
//! log id can tell whether its bytes are right; appends that wait for the
//! flush callback; a model of what must survive a crash, and the check of a
//! reopened store against it.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;

use hyperlog_raft::LogStore;
use hyperlog_raft::kv::{Request, TypeConfig};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::{EntryOf, LogIdOf, OneshotReceiverOf, VoteOf};

pub type C = TypeConfig;
pub type Ent = EntryOf<C>;
pub type Store = LogStore<C>;
pub type Lid = LogIdOf<C>;

/// The node id every log id and vote of these tests carries.
pub const NODE: u64 = 1;

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seeded generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(splitmix(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

pub fn log_id(term: u64, index: u64) -> LogIdOf<C> {
    openraft::testing::log_id::<C>(term, NODE, index)
}

/// The (uncommitted) vote of `NODE` for itself in `term`.
pub fn vote(term: u64) -> VoteOf<C> {
    VoteOf::<C>::new(term, NODE)
}

/// The committed vote of `term`.
pub fn committed_vote(term: u64) -> VoteOf<C> {
    VoteOf::<C>::new_committed(term, NODE)
}

/// The entry at `index` written in `term`: blank for one index in 17, else
/// a normal entry whose key and value (1 to ~600 bytes; now and then ~3 KB)
/// follow from (index, term).
pub fn entry(term: u64, index: u64) -> Ent {
    let id = log_id(term, index);
    let mut x = splitmix(index ^ term.rotate_left(32));
    if x.is_multiple_of(17) {
        return Ent::new_blank(id);
    }
    let len = if x.is_multiple_of(23) {
        3000
    } else {
        1 + (x >> 8) as usize % 600
    };
    let mut value = format!("t{term} i{index} ");
    for _ in 0..len {
        x = splitmix(x);
        value.push(char::from(b'a' + (x >> 16) as u8 % 26));
    }
    Ent::new_normal(
        id,
        Request {
            key: format!("k{index}"),
            value,
        },
    )
}

/// Entries `from..=to` of `term`.
pub fn entries(term: u64, from: u64, to: u64) -> Vec<Ent> {
    (from..=to).map(|i| entry(term, i)).collect()
}

/// The term of an entry's log id.
pub fn term_of(e: &Ent) -> u64 {
    e.log_id().leader_id.term
}

/// Submits an append and returns the receiver its flush callback completes.
pub async fn submit(
    store: &mut Store,
    batch: Vec<Ent>,
) -> io::Result<OneshotReceiverOf<C, io::Result<()>>> {
    let (tx, rx) = C::oneshot();
    store.append(batch, IOFlushed::signal(tx)).await?;
    Ok(rx)
}

/// Appends and waits for the flush callback.
pub async fn append(store: &mut Store, batch: Vec<Ent>) -> io::Result<()> {
    let rx = submit(store, batch).await?;
    rx.await
        .map_err(|_| io::Error::other("the flush callback was dropped"))?
}

/// Every entry the store returns for `..`.
pub async fn all_entries(store: &mut Store) -> io::Result<Vec<Ent>> {
    store.try_get_log_entries(..).await
}

/// Whether the truncation `(after, term)` removes (index, term).
fn kills((after, t): (Option<u64>, u64), index: u64, term: u64) -> bool {
    after.is_none_or(|a| index > a) && term <= t
}

/// What must hold after a crash, built from what the writer acknowledged.
///
/// Terms only grow over a run, and each truncation is followed by appends in
/// a new term; so a truncation acknowledged with `(after, term)` kills every
/// entry above `after` whose term is at most `term` (all that were written
/// before it), and none written later.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Acknowledged entries: index -> the highest term acknowledged there.
    pub acked: BTreeMap<u64, u64>,
    /// Acknowledged truncations: (after, the highest term written before).
    pub cuts: Vec<(Option<u64>, u64)>,
    /// A truncation submitted and not acknowledged when the writer died: it
    /// may or may not have happened (it never undoes acknowledged ones).
    pub pending_cut: Option<(Option<u64>, u64)>,
    /// The last acknowledged vote's term.
    pub vote: Option<u64>,
    /// The highest vote term ever submitted (acknowledged or not).
    pub vote_submitted: Option<u64>,
    /// The last acknowledged purge.
    pub purged: Option<u64>,
    /// The highest purge ever submitted.
    pub purge_submitted: Option<u64>,
    /// The last acknowledged committed index.
    pub committed: Option<u64>,
    /// The highest committed index ever submitted.
    pub committed_submitted: Option<u64>,
}

/// What a reopened store holds.
#[derive(Debug, Clone)]
pub struct Observed {
    pub state: LogState<C>,
    /// index -> term of every entry the store returns.
    pub entries: BTreeMap<u64, u64>,
    pub vote: Option<u64>,
    pub committed: Option<u64>,
}

impl Model {
    pub fn ack(&mut self, index: u64, term: u64) {
        let t = self.acked.entry(index).or_insert(term);
        *t = (*t).max(term);
    }

    pub fn cut(&mut self, after: Option<u64>, term: u64) {
        self.cuts.push((after, term));
    }

    /// Whether an acknowledged truncation removed (index, term).
    pub fn dead(&self, index: u64, term: u64) -> bool {
        self.cuts.iter().any(|&c| kills(c, index, term))
    }

    /// Checks the reopened `store` against the model: the vote, the purge
    /// point, a gapless log from the purge point on, each entry's payload,
    /// every live acknowledged entry present with its term, nothing killed by
    /// an acknowledged truncation back. Returns the log state. `ctx` names
    /// the seed and the iteration in every message.
    pub async fn check(&self, store: &mut Store, ctx: &str) -> Observed {
        let state = store
            .get_log_state()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: get_log_state: {e}"));
        let got_vote = store
            .read_vote()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: read_vote: {e}"));
        // The vote: the last acknowledged one or a later submitted one.
        if let Some(v) = self.vote {
            let got = got_vote.unwrap_or_else(|| panic!("{ctx}: the vote of term {v} was lost"));
            let t = got.leader_id.term;
            assert!(
                t >= v && Some(t) <= self.vote_submitted,
                "{ctx}: vote of term {t} after reopen; acknowledged {v}, highest submitted {:?}",
                self.vote_submitted
            );
            assert_eq!(got, vote(t), "{ctx}: the vote is not one that was saved");
        }
        let got_committed = store
            .read_committed()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: read_committed: {e}"))
            .map(|l| l.index);
        // The committed id is written lazily (at most every 100 ms, once the
        // log covers it): after a crash it may lag what was acknowledged,
        // never lead what was submitted.
        assert!(
            got_committed <= self.committed_submitted,
            "{ctx}: committed index {got_committed:?} after reopen; highest submitted {:?}",
            self.committed_submitted
        );
        let last = state.last_log_id.map(|l| l.index);
        assert!(
            got_committed <= last,
            "{ctx}: committed index {got_committed:?} is beyond the end of the log {last:?}"
        );
        // The purge point: at least the acknowledged one, at most the highest submitted.
        let purged = state.last_purged_log_id.map(|l| l.index);
        if let Some(p) = self.purged {
            assert!(
                purged >= Some(p) && purged <= self.purge_submitted,
                "{ctx}: purge point {purged:?} after reopen; acknowledged {p}, highest submitted {:?}",
                self.purge_submitted
            );
        }
        let all = all_entries(store)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: reading the log: {e}"));
        // Gapless, above the purge point, starting right after it.
        for w in all.windows(2) {
            assert_eq!(
                w[1].index(),
                w[0].index() + 1,
                "{ctx}: a hole in the log after reopen: {} follows {}",
                w[1].index(),
                w[0].index()
            );
        }
        if let (Some(p), Some(first)) = (purged, all.first()) {
            assert_eq!(
                first.index(),
                p + 1,
                "{ctx}: the first entry after purge point {p} is {}",
                first.index()
            );
        }
        if let Some(p) = purged {
            let below = store
                .try_get_log_entries(..=p)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: reading ..={p}: {e}"));
            assert!(
                below.is_empty(),
                "{ctx}: {} entries at or below purge point {p} returned",
                below.len()
            );
        }
        // The log state matches the entries.
        let expect_last = all.last().map(|e| e.log_id()).or(state.last_purged_log_id);
        assert_eq!(
            state.last_log_id, expect_last,
            "{ctx}: get_log_state's last log id vs the entries"
        );
        // Each entry is one that was written, whole, and not truncated.
        let mut present = BTreeMap::new();
        for e in &all {
            let (i, t) = (e.index(), term_of(e));
            assert_eq!(
                e,
                &entry(t, i),
                "{ctx}: entry {i} of term {t} has the wrong payload"
            );
            assert!(
                !self.dead(i, t),
                "{ctx}: entry {i} of term {t} came back after an acknowledged truncation (cuts {:?})",
                self.cuts
            );
            present.insert(i, t);
        }
        // Every acknowledged entry that no truncation or purge removed is there.
        for (&i, &t) in &self.acked {
            let maybe_cut = self.pending_cut.is_some_and(|c| kills(c, i, t));
            if self.dead(i, t) || maybe_cut || purged.is_some_and(|p| i <= p) {
                continue;
            }
            assert_eq!(
                present.get(&i),
                Some(&t),
                "{ctx}: acknowledged entry {i} of term {t} lost (log {:?}..={:?}, purged {purged:?})",
                all.first().map(|e| e.index()),
                all.last().map(|e| e.index()),
            );
        }
        Observed {
            state,
            entries: present,
            vote: got_vote.map(|v| v.leader_id.term),
            committed: got_committed,
        }
    }

    /// After a successful check, takes what the reopened store holds as the
    /// new baseline: a recovered entry, vote or purge point must stay (a
    /// crash leaves the page cache, so what was read back is on disk), and
    /// an unacknowledged truncation or purge has been decided one way or the
    /// other.
    pub fn settle(&mut self, seen: &Observed) {
        self.acked = seen.entries.clone();
        self.pending_cut = None;
        self.purged = seen.state.last_purged_log_id.map(|l| l.index);
        self.vote = seen.vote;
        self.committed = seen.committed;
    }
}

/// One thing the workload did, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An append of `first..=last` in `term` returned (not durable yet).
    Submitted {
        first: u64,
        last: u64,
        term: u64,
    },
    /// Its flush callback reported Ok: the entries are acknowledged.
    Ack {
        first: u64,
        last: u64,
        term: u64,
    },
    /// `truncate_after(after)` is being called (`None`: everything); every
    /// entry written so far has a term of at most `term`.
    Truncating {
        after: Option<u64>,
        term: u64,
    },
    /// ... and returned Ok.
    Trunc {
        after: Option<u64>,
        term: u64,
    },
    /// `save_vote` of `term` is being called / returned Ok.
    Voting(u64),
    Vote(u64),
    /// `purge` up to the index is being called / returned Ok.
    Purging(u64),
    Purge(u64),
    /// `save_committed` of the index is being called / returned Ok.
    Committing(u64),
    Committed(u64),
}

/// How `None` is written in an event line.
const NONE: u64 = u64::MAX;

impl Event {
    /// The event as one line of text.
    pub fn line(&self) -> String {
        let opt = |a: Option<u64>| a.unwrap_or(NONE);
        match *self {
            Event::Submitted { first, last, term } => format!("SUBMITTED {first} {last} {term}"),
            Event::Ack { first, last, term } => format!("ACK {first} {last} {term}"),
            Event::Truncating { after, term } => format!("TRUNCATING {} {term}", opt(after)),
            Event::Trunc { after, term } => format!("TRUNC {} {term}", opt(after)),
            Event::Voting(t) => format!("VOTING {t}"),
            Event::Vote(t) => format!("VOTE {t}"),
            Event::Purging(p) => format!("PURGING {p}"),
            Event::Purge(p) => format!("PURGE {p}"),
            Event::Committing(c) => format!("COMMITTING {c}"),
            Event::Committed(c) => format!("COMMITTED {c}"),
        }
    }

    /// Parses [`Event::line`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<Event> {
        let mut w = line.split(' ');
        let tag = w.next()?;
        let mut n = || -> Option<u64> { w.next()?.parse().ok() };
        let opt = |v: u64| (v != NONE).then_some(v);
        Some(match tag {
            "SUBMITTED" => Event::Submitted {
                first: n()?,
                last: n()?,
                term: n()?,
            },
            "ACK" => Event::Ack {
                first: n()?,
                last: n()?,
                term: n()?,
            },
            "TRUNCATING" => Event::Truncating {
                after: opt(n()?),
                term: n()?,
            },
            "TRUNC" => Event::Trunc {
                after: opt(n()?),
                term: n()?,
            },
            "VOTING" => Event::Voting(n()?),
            "VOTE" => Event::Vote(n()?),
            "PURGING" => Event::Purging(n()?),
            "PURGE" => Event::Purge(n()?),
            "COMMITTING" => Event::Committing(n()?),
            "COMMITTED" => Event::Committed(n()?),
            _ => return None,
        })
    }
}

impl Model {
    /// Takes in one event of the workload.
    pub fn apply(&mut self, ev: &Event) {
        match *ev {
            Event::Submitted { .. } => {}
            Event::Ack { first, last, term } => {
                for i in first..=last {
                    self.ack(i, term);
                }
            }
            Event::Truncating { after, term } => self.pending_cut = Some((after, term)),
            Event::Trunc { after, term } => {
                self.pending_cut = None;
                self.cut(after, term);
            }
            Event::Voting(t) => self.vote_submitted = self.vote_submitted.max(Some(t)),
            Event::Vote(t) => self.vote = Some(t),
            Event::Purging(p) => self.purge_submitted = self.purge_submitted.max(Some(p)),
            Event::Purge(p) => self.purged = Some(p),
            Event::Committing(c) => {
                self.committed_submitted = self.committed_submitted.max(Some(c));
            }
            Event::Committed(c) => self.committed = Some(c),
        }
    }
}

/// A seeded workload that drives a store as openraft's core would:
/// pipelined appends (their callbacks awaited after the last is
/// submitted), truncations above the committed index (some right behind
/// appends whose callbacks are still pending), each followed by a new term
/// whose vote is saved before its first entry, committed ids that only
/// grow, purges up to the committed index and, rarely, past the end of the
/// log (as after installing a snapshot). Every event goes to a sink as it
/// happens.
pub struct Workload {
    rng: Rng,
    /// The log as the store holds it: index -> term.
    log: BTreeMap<u64, u64>,
    purged: Option<Lid>,
    committed: Option<u64>,
    /// The term of new entries, above every term already in the log.
    term: u64,
}

fn e(what: &str, err: impl std::fmt::Display) -> String {
    format!("{what}: {err}")
}

impl Workload {
    /// Picks up where `store` is; new terms start above `term_base`, which
    /// must be above every term the store holds.
    pub async fn new(store: &mut Store, seed: u64, term_base: u64) -> Result<Self, String> {
        let log = all_entries(store)
            .await
            .map_err(|x| e("read", x))?
            .iter()
            .map(|x| (x.index(), term_of(x)))
            .collect();
        let state = store
            .get_log_state()
            .await
            .map_err(|x| e("get_log_state", x))?;
        let committed = store
            .read_committed()
            .await
            .map_err(|x| e("read_committed", x))?
            .map(|l| l.index);
        Ok(Workload {
            rng: Rng::new(seed),
            log,
            purged: state.last_purged_log_id,
            committed,
            term: term_base,
        })
    }

    /// A new term: its vote is durable before any entry of it is written.
    pub async fn new_term(
        &mut self,
        store: &mut Store,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), String> {
        self.term += 1;
        sink(Event::Voting(self.term));
        store
            .save_vote(&vote(self.term))
            .await
            .map_err(|x| e("save_vote", x))?;
        sink(Event::Vote(self.term));
        Ok(())
    }

    fn next_index(&self) -> Option<u64> {
        self.log
            .keys()
            .next_back()
            .map(|l| l + 1)
            .or(self.purged.map(|p| p.index + 1))
    }

    /// One step.
    pub async fn step(
        &mut self,
        store: &mut Store,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), String> {
        let r = self.rng.below(100);
        if r < 70 {
            // 1..=4 appends back to back, maybe a cut right behind them,
            // then each callback in turn.
            let mut start = match self.next_index() {
                Some(i) => i,
                None => self.rng.below(2),
            };
            let mut pending = Vec::new();
            for _ in 0..1 + self.rng.below(4) {
                let n = 1 + self.rng.below(6);
                let (first, last, term) = (start, start + n - 1, self.term);
                let rx = submit(store, entries(term, first, last))
                    .await
                    .map_err(|x| e("append", x))?;
                sink(Event::Submitted { first, last, term });
                for i in first..=last {
                    self.log.insert(i, term);
                }
                pending.push((first, last, term, rx));
                start += n;
            }
            // A follower learns of a commit its own log has not flushed.
            if self.rng.one_in(4) {
                self.commit(store, sink).await?;
            }
            if self.rng.one_in(5) {
                self.truncate(store, sink).await?;
                self.new_term(store, sink).await?;
            }
            for (first, last, term, rx) in pending {
                match rx.await {
                    Ok(Ok(())) => sink(Event::Ack { first, last, term }),
                    Ok(Err(x)) => return Err(e(&format!("the flush of {first}..={last}"), x)),
                    Err(_) => return Err(format!("the callback of {first}..={last} was dropped")),
                }
            }
        } else if r < 78 {
            self.truncate(store, sink).await?;
            self.new_term(store, sink).await?;
        } else if r < 84 {
            self.new_term(store, sink).await?;
        } else if r < 91 {
            self.commit(store, sink).await?;
        } else if r < 98 {
            // Purge up to the committed index.
            let Some(c) = self.committed else {
                return Ok(());
            };
            let lo = self.purged.map_or(0, |p| p.index + 1);
            if c < lo {
                return Ok(());
            }
            let p = lo + self.rng.below(c - lo + 1);
            let Some(&t) = self.log.get(&p) else {
                return Ok(());
            };
            sink(Event::Purging(p));
            store.purge(log_id(t, p)).await.map_err(|x| e("purge", x))?;
            self.purged = Some(log_id(t, p));
            self.log = self.log.split_off(&(p + 1));
            sink(Event::Purge(p));
        } else {
            // A purge past the end, as after installing a snapshot.
            let p = self.next_index().unwrap_or(0) + self.rng.below(5);
            sink(Event::Purging(p));
            store
                .purge(log_id(self.term, p))
                .await
                .map_err(|x| e("purge", x))?;
            self.purged = Some(log_id(self.term, p));
            self.log.clear();
            sink(Event::Purge(p));
        }
        Ok(())
    }

    /// Commits somewhere in the log (appends in flight included), never
    /// backwards.
    async fn commit(
        &mut self,
        store: &mut Store,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), String> {
        let (Some((&first, _)), Some((&last, _))) =
            (self.log.first_key_value(), self.log.last_key_value())
        else {
            return Ok(());
        };
        let lo = self.committed.map_or(first, |c| c.max(first));
        if lo > last {
            return Ok(());
        }
        let c = lo + self.rng.below(last - lo + 1);
        sink(Event::Committing(c));
        store
            .save_committed(Some(log_id(self.log[&c], c)))
            .await
            .map_err(|x| e("save_committed", x))?;
        self.committed = Some(c);
        sink(Event::Committed(c));
        Ok(())
    }

    /// A cut between the committed index (or the purge point) and the end;
    /// now and then `truncate_after(None)` while nothing was purged or
    /// committed.
    async fn truncate(
        &mut self,
        store: &mut Store,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), String> {
        let floor = self.committed.max(self.purged.map(|p| p.index));
        let rng = &mut self.rng;
        let after = match (floor, self.log.keys().next(), self.log.keys().next_back()) {
            (None, _, _) if rng.one_in(8) => None,
            (None, Some(&first), Some(&last)) => Some(first + rng.below(last - first + 1)),
            (None, _, _) => None,
            (Some(f), _, Some(&last)) if last > f => Some(last - rng.below((last - f).min(10) + 1)),
            (Some(f), _, _) => Some(f),
        };
        let id = match after {
            None => None,
            Some(a) => Some(match self.log.get(&a) {
                Some(&t) => log_id(t, a),
                None => self.purged.filter(|p| p.index == a).ok_or_else(|| {
                    format!("no log id for a cut after {a} (purged {:?})", self.purged)
                })?,
            }),
        };
        let term = self.term;
        sink(Event::Truncating { after, term });
        store
            .truncate_after(id)
            .await
            .map_err(|x| e(&format!("truncate_after({after:?})"), x))?;
        match after {
            Some(a) => {
                let _ = self.log.split_off(&(a + 1));
            }
            None => self.log.clear(),
        }
        sink(Event::Trunc { after, term });
        Ok(())
    }
}
