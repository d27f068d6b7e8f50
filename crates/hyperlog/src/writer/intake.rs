//! Intake and combining: how requests leave the queue and become groups.
//!
//! Queue order is file order. Requests are taken off the queue and handled
//! under the writer's lock, by the writer thread ([`run_thread`]) or by a
//! blocking caller that finds the writer idle and writes out the queue and then
//! its own entry ([`WriterHandle::lead`]: flat combining, which spares a lone
//! producer the hand-off to another thread). A group gathers records only; a
//! control request (`Flush`, `Close`, `Truncate`) ends it and is handled once
//! the group is committed, so it covers everything queued before it. The
//! writer thread gathers a batch ([`crate::Context::append_batch`]) whole,
//! waiting for its records past the group limits, so that a batch shares one
//! write and one sync. The writer
//! thread receives outside the writer's lock (it may park there), so a request
//! it has received must not be overtaken. That matters only for producers that
//! wait for nothing (`None` mode), which may have many entries in flight: there
//! the thread holds `in_hand` while it receives and leaves the request in it,
//! and a producer that drains a full queue itself ([`WriterHandle::lead_full`])
//! handles that request first, or, finding `in_hand` held, queues instead. A
//! caller that waits for its acknowledgement has only that entry in flight, so
//! there is no order to keep between it and a request the thread holds. Locks
//! are taken writer first, then `in_hand`, and the thread holds `in_hand` alone
//! only while it receives: they cannot deadlock. Once the writer has finished,
//! every request still queued or sent later is refused with [`Error::Closed`];
//! a caller that closed it while leading a group wakes the thread, so that the
//! thread sees this and exits.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::producer::{Request, Shared, WriterHandle};
use super::{Writer, lock};
use crate::{DurabilityMode, Error};

/// How long an idle writer spins before it parks.
const WRITER_SPIN: Duration = Duration::from_micros(50);

/// Whether spinning can pay off: only with a second core to run the other side.
pub(crate) fn spin_enabled() -> bool {
    static MULTI: OnceLock<bool> = OnceLock::new();
    *MULTI.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// How often a `None`-mode writer looks at its queue while recently busy.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long a `None`-mode writer polls an empty queue before it parks.
const POLL_IDLE: Duration = Duration::from_millis(200);

impl WriterHandle {
    /// Lets a blocking caller write `req` itself when the writer is idle
    /// (flat combining): it takes the writer's lock, writes whatever is
    /// queued ahead of it and then its own entry, in one group, and
    /// acknowledges them all. A lone producer so pays no thread hand-off.
    /// Gives the request back when the writer is busy; the caller then
    /// queues it.
    ///
    /// With `wait` the caller waits for the lock instead (used in `Flush`
    /// mode, where holding it means one `write`, not a sync): threads that
    /// write for themselves avoid a sleep and a wake-up per entry, which on
    /// two cores and many threads costs more than the write.
    pub fn lead(&self, req: Request, wait: bool) -> Result<(), Request> {
        let guard = if wait {
            Ok(lock(&self.core))
        } else {
            self.core.try_lock().map_err(|_| ())
        };
        let Ok(mut guard) = guard else {
            return Err(req);
        };
        let Some(w) = guard.as_mut().filter(|w| !w.finished) else {
            return Err(req);
        };
        if w.lead(None, req) {
            drop(guard);
            let _ = self.tx.try_send(Request::Wake);
        }
        Ok(())
    }

    /// For a producer that found the queue full and waits for nothing:
    /// writes the queue out and then `req` on this thread, instead of parking
    /// until the writer thread frees a slot. `Err(req)` when that cannot be
    /// done in order (the writer thread is taking a request off the queue) or
    /// the writer has finished; the caller then queues `req` as usual.
    pub fn lead_full(&self, req: Request) -> Result<(), Request> {
        let mut guard = lock(&self.core);
        // Only a `None` writer thread parks what it receives in `in_hand`.
        let Some(w) = guard
            .as_mut()
            .filter(|w| !w.finished && w.durability == DurabilityMode::None)
        else {
            return Err(req);
        };
        // Held while draining, so that the writer thread cannot take a
        // request off the queue behind this thread's back.
        let mut slot = match self.shared.in_hand.try_lock() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(req),
        };
        let first = slot.take();
        let closed = w.lead(first, req);
        drop(slot);
        if closed {
            drop(guard);
            let _ = self.tx.try_send(Request::Wake);
        }
        Ok(())
    }
}

/// The writer thread: takes requests from the queue and handles them under
/// the writer's lock, until the writer is closed (by itself or by a caller
/// that led a group) or every producer is gone.
pub(super) fn run_thread(
    core: &Mutex<Option<Writer>>,
    shared: &Shared,
    rx: flume::Receiver<Request>,
) {
    let polling = lock(core)
        .as_ref()
        .is_some_and(|w| w.durability == DurabilityMode::None);
    loop {
        // Only `None` producers drain the queue themselves (`lead_full`), so
        // only there does a received request wait in `in_hand`.
        let next = if polling {
            let mut slot = lock(&shared.in_hand);
            recv_next(&rx, shared, polling).map(|r| {
                *slot = Some(r);
                None
            })
        } else {
            recv_next(&rx, shared, polling).map(Some)
        };
        let mut guard = lock(core);
        let Some(w) = guard.as_mut() else { return };
        let next = match next {
            Ok(Some(r)) => Ok(r),
            // A producer draining a full queue may have handled it already.
            Ok(None) => match lock(&shared.in_hand).take() {
                Some(r) => Ok(r),
                None => continue,
            },
            Err(e) => Err(e),
        };
        match next {
            Err(_) => {
                // Every producer is gone: finish quietly.
                if !w.finished {
                    let _ = w.finish(true);
                }
                return;
            }
            Ok(req) if w.finished => {
                w.refuse(req);
                for r in rx.drain() {
                    w.refuse(r);
                }
                return;
            }
            Ok(req) => {
                if w.handle(req) {
                    return;
                }
            }
        }
    }
}

/// The next request for the writer thread.
///
/// After groups of one (a lone producer, which sends again within
/// microseconds, while a parked thread takes tens of microseconds to wake)
/// it spins briefly first. With many producers the core is theirs and the
/// queue is rarely empty.
///
/// In `None` mode (`polling`) nobody waits for the writer, so it does not
/// make producers wake it: while recently busy it sleeps a millisecond
/// between looks at the queue (a send to a parked receiver costs the
/// producer a futex wake-up, several times the cost of the enqueue itself),
/// and only after [`POLL_IDLE`] of nothing does it park.
fn recv_next(
    rx: &flume::Receiver<Request>,
    shared: &Shared,
    polling: bool,
) -> Result<Request, flume::RecvError> {
    let try_once = |rx: &flume::Receiver<Request>| match rx.try_recv() {
        Ok(r) => Some(Ok(r)),
        Err(flume::TryRecvError::Disconnected) => Some(Err(flume::RecvError::Disconnected)),
        Err(flume::TryRecvError::Empty) => None,
    };
    if polling {
        let start = Instant::now();
        while start.elapsed() < POLL_IDLE {
            if let Some(r) = try_once(rx) {
                return r;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    } else if spin_enabled() && shared.last_group.load(Ordering::Relaxed) <= 1 {
        let start = Instant::now();
        loop {
            if let Some(r) = try_once(rx) {
                return r;
            }
            if start.elapsed() > WRITER_SPIN {
                break;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
    rx.recv()
}

impl Writer {
    /// The next request already queued, if any (`Err` once every producer
    /// is gone). A `None` writer takes the whole queue off the channel at
    /// once into `backlog`: one lock of the channel per batch instead of one
    /// per request, which producers' sends contended with on every entry.
    /// The backlog is the front of the queue, so it is always taken first,
    /// and whoever fills it under the writer's lock empties it before
    /// letting go ([`Writer::handle`], [`Writer::lead`]; a `Close` among it
    /// hands the rest to `finish`), so queue order stays file order.
    /// Durable writers take one request at a time: their group policy
    /// weighs what is still in the channel.
    fn next_queued(&mut self) -> Result<Option<Request>, flume::RecvError> {
        if let Some(r) = self.backlog.pop_front() {
            return Ok(Some(r));
        }
        let Some(rx) = self.rx.as_ref() else {
            return Err(flume::RecvError::Disconnected);
        };
        if self.durability == DurabilityMode::None {
            self.backlog.extend(rx.drain());
            // Nothing queued: no second lock of the channel to learn why.
            return match self.backlog.pop_front() {
                Some(r) => Ok(Some(r)),
                None if rx.is_disconnected() => Err(flume::RecvError::Disconnected),
                None => Ok(None),
            };
        }
        match rx.try_recv() {
            Ok(r) => Ok(Some(r)),
            Err(flume::TryRecvError::Empty) => Ok(None),
            Err(flume::TryRecvError::Disconnected) => Err(flume::RecvError::Disconnected),
        }
    }

    /// Handles `first`, then, group by group, whatever [`Writer::next_queued`]
    /// took off the queue with it. Returns true when it closed the writer.
    fn handle(&mut self, first: Request) -> bool {
        let mut next = Some(first);
        while let Some(first) = next {
            if self.handle_group(first) {
                return true;
            }
            next = self.backlog.pop_front();
        }
        false
    }

    /// Takes `first` and whatever the group policy lets it gather from the
    /// queue, commits the group, and handles a control request that ended
    /// it. Returns true when it closed the writer.
    fn handle_group(&mut self, first: Request) -> bool {
        let mut group = Vec::new();
        let mut bytes = 0usize;
        let mut control = None;
        // The last record gathered has the rest of its batch on its way.
        let mut more = false;
        match first {
            Request::Record(q) => {
                bytes += q.bytes.len();
                more = q.more;
                group.push(q);
            }
            other => control = Some(other),
        }
        if let Some(rx) = self.rx.clone() {
            let started = Instant::now();
            while control.is_none() && (more || !self.group.is_full(group.len(), bytes)) {
                let next = match self.next_queued() {
                    Ok(Some(r)) => r,
                    Err(_) => break,
                    // A batch is written whole: its sender is sending the
                    // rest now.
                    Ok(None) if more => match rx.recv() {
                        Ok(r) => r,
                        Err(_) => break,
                    },
                    Ok(None) => {
                        let Some(budget) = self.group.wait_budget(group.len(), bytes) else {
                            break;
                        };
                        if self.group.caught_up(group.len()) || started.elapsed() >= budget {
                            break;
                        }
                        // Park with a deadline: the producers being waited for
                        // need the cores, and a yielding thread may not get one
                        // back for a whole time slice.
                        match rx.recv_deadline(started + budget) {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                };
                match next {
                    Request::Record(q) => {
                        bytes += q.bytes.len();
                        more = q.more;
                        group.push(q);
                    }
                    Request::Wake => {}
                    other => control = Some(other),
                }
            }
        }
        if !group.is_empty() {
            self.commit(&mut group);
        }
        control.is_some_and(|c| self.control(c))
    }

    /// A blocking caller's group: everything queued ahead of `own` (in
    /// order, in groups within the limits), then `own`. Returns true when a
    /// queued `Close` closed the writer (`own` is then refused).
    fn lead(&mut self, mut first: Option<Request>, own: Request) -> bool {
        let mut group = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = first.take().or_else(|| self.next_queued().ok().flatten()) {
            match r {
                Request::Record(q) => {
                    bytes += q.bytes.len();
                    group.push(q);
                    if self.group.is_full(group.len(), bytes) {
                        self.commit(&mut group);
                        bytes = 0;
                    }
                }
                Request::Wake => {}
                control => {
                    if !group.is_empty() {
                        self.commit(&mut group);
                        bytes = 0;
                    }
                    if self.control(control) {
                        self.refuse(own);
                        return true;
                    }
                }
            }
        }
        match own {
            Request::Record(q) => {
                if self.group.is_full(group.len() + 1, bytes + q.bytes.len()) && !group.is_empty() {
                    self.commit(&mut group);
                }
                group.push(q);
                self.commit(&mut group);
                false
            }
            Request::Wake => {
                if !group.is_empty() {
                    self.commit(&mut group);
                }
                false
            }
            control => {
                if !group.is_empty() {
                    self.commit(&mut group);
                }
                self.control(control)
            }
        }
    }

    /// Handles a control request; true when it closed the writer.
    fn control(&mut self, req: Request) -> bool {
        // Every group written before the request is synced and acknowledged
        // first, and the file is this thread's alone while it is handled.
        self.drain_pipeline();
        match req {
            Request::Flush { sync, ack } => {
                let _ = ack.send(self.flush(sync));
                false
            }
            Request::Close { ack } => {
                let res = self.finish(false);
                let _ = ack.send(res);
                true
            }
            Request::Wake => false,
            Request::Truncate { before, ack } => {
                let _ = ack.send(self.truncate_before(before));
                false
            }
            Request::TruncateAfter { after, ack } => {
                let _ = ack.send(self.truncate_after(after));
                false
            }
            Request::Record(_) => {
                self.refuse(req);
                false
            }
        }
    }

    /// Answers a request that arrived after the writer closed.
    fn refuse(&self, req: Request) {
        let closed = || Error::Closed {
            target: self.shared.target.clone(),
        };
        match req {
            Request::Record(super::Queued { ack: Some(a), .. }) => {
                a.send(Err(closed()));
            }
            Request::Flush { ack, .. } | Request::Close { ack } => {
                let _ = ack.send(Err(closed()));
            }
            Request::Truncate { ack, .. } => {
                let _ = ack.send(Err(closed()));
            }
            Request::TruncateAfter { ack, .. } => {
                let _ = ack.send(Err(closed()));
            }
            _ => {}
        }
    }
}
