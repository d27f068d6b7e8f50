//! The sync stage of `FsyncBatch`: pipelined group commit.
//!
//! Without it the writer writes a group, syncs it, acknowledges it, and only
//! then takes the next group off the queue: producers acknowledged by sync N
//! come back while sync N+1 runs and wait for N+2, and the disk idles while
//! the writer acknowledges and gathers. With it, the writer writes each
//! group and hands its acknowledgements to this stage; a sync thread beside
//! the writer syncs whatever was written since its last sync and
//! acknowledges it, while the writer goes on gathering and writing the next
//! groups. Before each sync the thread waits briefly (the adaptive wait of
//! [`GroupCommit`]: at most a quarter of the last sync) for the producers its
//! last sync acknowledged, so that they ride on the next sync instead of
//! forming a second cohort.
//!
//! Invariants:
//! - an entry is acknowledged only after a sync that started after its
//!   bytes were written: groups are handed over after their write returned,
//!   and a sync takes exactly what was handed over before it started;
//! - syncs run one at a time (`busy`), in order, so the durable watermark
//!   rises in file order;
//! - a failed sync poisons the context: the group it covered gets the error,
//!   every group handed over later gets [`Error::Poisoned`], and nothing is
//!   synced again;
//! - the writer never syncs or changes the file itself while a sync may run
//!   (the two share an open file description, which reports an `fdatasync`
//!   error only once): every control request, rotation and close first
//!   [`drain`](SyncStage::drain)s the stage, which also drops its handle on
//!   the file, so that the next group attaches one to the file then live;
//! - no waiter hangs: the thread exits only with nothing handed over, and a
//!   group handed over without a file to sync gets [`Error::Closed`];
//! - a lone producer pays no hand-off: when the last sync carried at most
//!   one entry and no sync runs, the writer (or the caller leading the
//!   group) syncs on its own thread, through the same handle.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lock;
use super::producer::{Ack, Shared};
use crate::fs::FileSyncer;
use crate::group_commit::GroupCommit;
use crate::{Error, Lsn};

/// The acknowledgements of one written group, and what its sync must cover.
pub(super) struct Handover<'a> {
    /// Who waits, with each entry's LSN.
    pub acks: &'a mut Vec<(Ack, Option<Lsn>)>,
    /// The group's last LSN (the durable watermark once synced).
    pub last: Option<Lsn>,
    /// Records written, with or without an acknowledgement.
    pub records: usize,
}

/// The sync stage: its thread and the state it shares with the writer.
pub(super) struct SyncStage {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    state: Mutex<State>,
    /// The sync thread waits here for groups.
    work: Condvar,
    /// The writer waits here for the stage to drain.
    idle: Condvar,
    shared: Arc<Shared>,
}

struct State {
    /// The live file's syncer (with its path, for errors); out of its place
    /// while a sync runs.
    file: Option<(PathBuf, Box<dyn FileSyncer>)>,
    /// A handle was attached and not dropped by a drain since.
    attached: bool,
    /// Acknowledgements written and not yet synced, in file order.
    pending: Vec<(Ack, Option<Lsn>)>,
    /// The last LSN written and not yet synced.
    last: Option<Lsn>,
    /// Records written and not yet synced.
    records: usize,
    /// A sync is running.
    busy: bool,
    /// The writer waits for a drain: sync without waiting for companions.
    urgent: bool,
    /// The writer is gone: exit once nothing is pending.
    stop: bool,
    /// The adaptive wait for the producers the last sync acknowledged.
    group: GroupCommit,
}

impl SyncStage {
    /// Starts the sync thread of the context behind `shared`, taking up to
    /// `max_entries` entries or `max_bytes` bytes per sync.
    pub fn start(
        shared: Arc<Shared>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<SyncStage, Error> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                file: None,
                attached: false,
                pending: Vec::new(),
                last: None,
                records: 0,
                busy: false,
                urgent: false,
                stop: false,
                group: GroupCommit::new(max_entries, max_bytes, Duration::ZERO, true),
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            shared,
        });
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hyperlog-sync:{}", inner.shared.target))
            .spawn(move || i.run())
            .map_err(|e| Error::io("spawn sync thread for", &inner.shared.target, e))?;
        Ok(SyncStage {
            inner,
            thread: Some(thread),
        })
    }

    /// Hands over a written group: it is acknowledged after the next sync,
    /// run by the sync thread, or here when the producer is alone. After a
    /// drain the stage first takes a handle on the live file from `attach`;
    /// when there is none (the file cannot be synced from another thread)
    /// nothing is handed over and this returns false: the caller syncs.
    pub fn hand_over(
        &self,
        group: Handover<'_>,
        attach: impl FnOnce() -> Option<(PathBuf, Box<dyn FileSyncer>)>,
    ) -> bool {
        let mut st = lock(&self.inner.state);
        if !st.attached {
            let Some(file) = attach() else {
                return false;
            };
            st.file = Some(file);
            st.attached = true;
        }
        let alone = !st.busy && st.records == 0 && st.pending.is_empty() && st.group.caught_up(1);
        st.pending.append(group.acks);
        st.last = group.last.or(st.last);
        st.records += group.records;
        if alone {
            drop(self.inner.sync_pending(st));
        } else {
            self.inner.work.notify_one();
        }
        true
    }

    /// Waits until every group handed over is synced and acknowledged, and
    /// drops the handle on the file: after it the writer may sync, cut,
    /// rename or close the file itself.
    pub fn drain(&self) {
        let mut st = lock(&self.inner.state);
        while st.busy || st.records > 0 || !st.pending.is_empty() {
            st.urgent = true;
            self.inner.work.notify_one();
            st = self.inner.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.urgent = false;
        st.file = None;
        st.attached = false;
    }
}

impl Drop for SyncStage {
    fn drop(&mut self) {
        lock(&self.inner.state).stop = true;
        self.inner.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    /// The sync thread: syncs whatever was handed over, until stopped with
    /// nothing pending.
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.records == 0 && st.pending.is_empty() {
                if st.stop {
                    return;
                }
                st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Wait (briefly) for the producers the last sync acknowledged:
            // they are about to send again and can share this sync.
            if let Some(budget) = st.group.wait_budget(st.records, 0) {
                let deadline = Instant::now() + budget;
                while !st.urgent && !st.stop && !st.group.caught_up(st.records) {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    st = self
                        .work
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            st = self.sync_pending(st);
        }
    }

    /// Syncs everything pending (outside the lock) and acknowledges it;
    /// returns the lock again, with the stage idle.
    fn sync_pending<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let mut acks = std::mem::take(&mut st.pending);
        let last = st.last.take();
        let records = std::mem::take(&mut st.records);
        st.busy = true;
        st.urgent = false;
        let mut file = st.file.take();
        drop(st);
        let started = Instant::now();
        let outcome = match (self.shared.poisoned(), file.as_mut()) {
            (Some(p), _) => Err(p),
            (None, Some((path, f))) => {
                self.shared
                    .syncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                f.sync_data()
                    .map_err(|e| Error::io("fdatasync", path.clone(), e))
                    .inspect_err(|e| self.shared.poison(e))
            }
            (None, None) => Err(Error::Closed {
                target: self.shared.target.clone(),
            }),
        };
        let took = started.elapsed();
        if let (Ok(()), Some(l)) = (&outcome, last) {
            self.shared.durable.advance(l);
        }
        for (a, lsn) in acks.drain(..) {
            a.send(outcome.clone().map(|()| lsn));
        }
        let mut st = lock(&self.state);
        st.file = file;
        st.busy = false;
        let backlog = st.records;
        st.group.record(records, took, backlog);
        self.shared
            .last_group
            .store(records, std::sync::atomic::Ordering::Relaxed);
        self.idle.notify_all();
        st
    }
}
