//! The durability policy beyond one group: the writer's memory of failure
//! (poisoning, and `None`-mode errors kept for later), explicit flushes, the
//! directory sync a group waits for after a rotation, and closing.
//!
//! A failed write or sync of a group that callers wait for, a failed
//! `fdatasync` on flush, and a failed directory sync after a rotation poison
//! the writer for good: the first error is kept (a set-once cell: later
//! failures cannot replace it), no entry is written after it and the file is
//! never synced again, because Linux may have dropped the dirty pages a failed
//! `fdatasync` reported on, so a retried one could succeed falsely. Failures
//! nobody waits for (a write in `None` mode, a rotation in any mode) go to the
//! error handler instead, and the first of them is kept for the next `flush` or
//! `close` to return, once. A group written after a rotation is acknowledged
//! only once that rotation's renames are durable: the fresh file's name might
//! otherwise not survive a power cut. Closing writes out everything queued,
//! waits for the zeros being written ahead and trims them (a closed log holds
//! none), syncs, and then answers every waiting `Flush` and `Close` with the
//! same outcome; only then is the file (and its lock) released, and the queue
//! dropped so that later sends fail at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::prealloc::settle_extension;
use super::producer::{Request, Shared};
use super::{Sink, Writer};
use crate::options::ConsoleStream;
use crate::{Error, Lsn};

impl Shared {
    pub fn poisoned(&self) -> Option<Error> {
        self.poisoned.get().map(|first| Error::Poisoned {
            path: self.path.clone().unwrap_or_default(),
            first: Arc::new(first.clone()),
        })
    }

    pub(super) fn poison(&self, first: &Error) {
        let _ = self.poisoned.set(first.clone());
        // Nothing more becomes durable: followers stop waiting.
        self.durable.end();
    }

    pub(super) fn report(&self, e: Error) {
        (self.handler)(&e);
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.get_or_insert(e);
    }

    pub(super) fn take_pending(&self) -> Option<Error> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl Writer {
    /// Waits for the last rotation's directory sync, if one is running; a
    /// failure poisons the context (the new file's name may not survive a
    /// power cut, so nothing written since can be acknowledged).
    pub(super) fn settle_dir_sync(&mut self) -> Result<(), Error> {
        let Some(sync) = self.dir_sync.take() else {
            return Ok(());
        };
        let t = Instant::now();
        let res = sync.wait();
        // What the rotation cost the group after it: its own time plus
        // whatever the directory sync outlasted that group's write and sync.
        let stall = self.rotation_us + t.elapsed().as_micros() as u64;
        self.shared
            .longest_rotation_us
            .fetch_max(stall, Ordering::Relaxed);
        res.inspect_err(|e| self.shared.poison(e))
    }

    /// Waits until the sync stage (if any) has synced and acknowledged every
    /// group written, and holds no handle on the file: after it this thread
    /// may sync, cut, rename or close the file itself.
    pub(super) fn drain_pipeline(&mut self) {
        if let Some(stage) = self.pipeline.as_ref() {
            stage.drain();
        }
    }

    pub(super) fn flush(&mut self, sync: bool) -> Result<(), Error> {
        self.drain_pipeline();
        if let Some(p) = self.shared.poisoned() {
            return Err(p);
        }
        if let Some(e) = self.shared.take_pending() {
            return Err(e);
        }
        let dropped = self.shared.dropped.load(Ordering::Acquire);
        if dropped > 0 {
            self.commit(&mut Vec::new());
        }
        if sync && let Sink::File { path, file, .. } = &mut self.sink {
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = file.sync_data() {
                let e = Error::io("fdatasync", path.clone(), e);
                self.shared.poison(&e);
                return Err(e);
            }
        }
        self.settle_dir_sync()
    }

    /// Drains the queue, syncs and releases the file.
    pub(super) fn finish(&mut self, quiet: bool) -> Result<(), Error> {
        let mut group = Vec::new();
        let mut waiting = Vec::new();
        let queued: Vec<Request> = std::mem::take(&mut self.backlog)
            .into_iter()
            .chain(self.rx.as_ref().map(|rx| rx.drain()).into_iter().flatten())
            .collect();
        for r in queued {
            match r {
                Request::Record(q) => group.push(q),
                Request::Flush { ack, .. } | Request::Close { ack } => waiting.push(ack),
                Request::Truncate { ack, .. } => {
                    let _ = ack.send(Err(Error::Closed {
                        target: self.shared.target.clone(),
                    }));
                }
                Request::TruncateAfter { ack, .. } => {
                    let _ = ack.send(Err(Error::Closed {
                        target: self.shared.target.clone(),
                    }));
                }
                Request::Wake => {}
            }
        }
        while !group.is_empty() {
            let n = group.len().min(self.group_max);
            let mut chunk: Vec<_> = group.drain(..n).collect();
            self.commit(&mut chunk);
        }
        let mut res = Ok(());
        self.drain_pipeline();
        if let Sink::File { allocated, .. } = &mut self.sink {
            settle_extension(
                &mut self.extension,
                allocated,
                &mut self.prealloc_step,
                true,
            );
        }
        if let Sink::File {
            path,
            file,
            good_len,
            allocated,
        } = &mut self.sink
            && (*allocated > *good_len || self.cut_pending)
        {
            // A closed log holds no preallocated zeros.
            match file.truncate(*good_len) {
                Ok(()) => *allocated = *good_len,
                Err(e) => res = Err(Error::io("truncate", path.clone(), e)),
            }
        }
        let res = res.and(self.flush(matches!(self.sink, Sink::File { .. })));
        if let (Err(e), true) = (&res, quiet) {
            (self.shared.handler)(e);
        }
        for a in waiting {
            let _ = a.send(res.clone());
        }
        // Archiving started before the close completes before it returns.
        if let Some((r, _, _)) = self.rotation.as_mut() {
            r.finish();
        }
        // Release the file (and its lock) now, and the queue: later sends
        // fail fast instead of waiting for a writer that is gone.
        self.sink = Sink::Console(ConsoleStream::Stdout);
        self.finished = true;
        self.rx = None;
        self.shared.durable.end();
        res
    }
}

/// The durable watermark of a context: the highest LSN such that it and
/// every lower LSN of the context are durable as its mode defines (covered
/// by a completed sync in `Fsync`/`FsyncBatch`, written in `Flush` and
/// `None`).
///
/// Groups are written in LSN order and each group's write (and sync) covers
/// every earlier group, so the last LSN of a group that completed is such a
/// point, even when the acknowledgements of concurrent producers arrive out
/// of LSN order. It only rises. Followers wait on it instead of polling the
/// disk: every move, and the writer's end, wakes them.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    /// The watermark's LSN plus one; 0: none yet.
    lsn: AtomicU64,
    /// The writer will move it no more (closed or poisoned).
    ended: AtomicBool,
    event: event_listener::Event,
}

impl Watermark {
    /// The watermark, if any LSN is durable yet.
    pub fn get(&self) -> Option<Lsn> {
        match self.lsn.load(Ordering::Acquire) {
            0 => None,
            n => Some(Lsn::new(n - 1)),
        }
    }

    /// Raises the watermark to `lsn` (never lowers it) and wakes followers.
    pub fn advance(&self, lsn: Lsn) {
        let prev = self
            .lsn
            .fetch_max(lsn.get().saturating_add(1), Ordering::AcqRel);
        if prev <= lsn.get() {
            self.event.notify(usize::MAX);
        }
    }

    /// Lowers the watermark to `lsn` (none: to nothing) after the entries
    /// above it were removed (`truncate_after`).
    pub fn lower_to(&self, lsn: Option<Lsn>) {
        let v = lsn.map_or(0, |l| l.get().saturating_add(1));
        self.lsn.fetch_min(v, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }

    /// The writer is done: wakes followers for good.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    /// Whether the writer will move the watermark no more.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// A listener to wait on; take it before checking the condition waited
    /// for, so that no move between the check and the wait is missed.
    pub fn listen(&self) -> event_listener::EventListener {
        self.event.listen()
    }
}
