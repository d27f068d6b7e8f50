//! Following a context's log from an LSN: every entry once, in LSN order,
//! each only once it is durable.
//!
//! A follower is a reader of the log's files ([`read_entries_blocking`],
//! which stays exact across rotation, trimming and deletion: see
//! [`crate::reader`]) paced by the writer's durable watermark
//! ([`Context::durable_lsn`](crate::Context::durable_lsn)): an entry read from the file is held back
//! until the watermark reaches its LSN, since it may be written but not yet
//! synced. At the end of what is written the follower waits on the
//! watermark (it does not poll the disk): each completed group wakes it, and
//! it reads on from where it stopped. Closing the context ends the follow
//! once everything durable was yielded; a poisoned writer ends it with the
//! poisoning error.
//!
//! Why the watermark is enough: a group's bytes are written before its
//! sync, and the watermark moves only after both; LSNs rise in file order,
//! so an entry at or below the watermark is in the file and durable.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use event_listener::Listener as _;
use serde::de::DeserializeOwned;

use crate::reader::{EntryIter, ReadItem, ReadOptions, read_entries_blocking};
use crate::writer::Shared;
use crate::{Error, Lsn};

/// A blocking iterator over a context's entries from an LSN on, each yielded
/// once it is durable, waiting for new ones; made by
/// [`Context::follow_blocking`](crate::Context::follow_blocking).
///
/// Items are `(offset, log, lsn)` as [`read_entries`](crate::read_entries)
/// gives them (the offset is within the file the entry is in; the LSN is
/// always `Some`). It ends when the context is closed and every durable
/// entry was yielded, or after an error.
pub struct FollowIter<T> {
    entries: EntryIter<T>,
    shared: Arc<Shared>,
    path: PathBuf,
    from: Lsn,
    /// Checked first: an error found before anything was read.
    start_error: Option<Error>,
    /// An entry read but not yet durable.
    held: Option<ReadItem<T>>,
    /// The LSN of the last entry read from the file.
    last_read: Option<Lsn>,
    /// The watermark when the reader last looked again at the file's end.
    refreshed_at: Option<Option<Lsn>>,
    /// The stream's consumer is gone (for the thread behind [`Follow`]).
    stop: Option<Box<dyn Fn() -> bool + Send>>,
    done: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for FollowIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowIter")
            .field("path", &self.path)
            .field("from", &self.from)
            .field("last_read", &self.last_read)
            .finish_non_exhaustive()
    }
}

/// How long a follower behind a [`Follow`] stream sleeps at most before it
/// checks whether the stream was dropped.
const STOP_CHECK: Duration = Duration::from_millis(250);

impl<T: DeserializeOwned> FollowIter<T> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        path: PathBuf,
        from: Lsn,
        options: ReadOptions,
    ) -> FollowIter<T> {
        let start_error = below_truncation(&shared, &path, from, &options);
        let entries = read_entries_blocking::<T>(&path, 0, options.from_lsn(from));
        FollowIter {
            entries,
            shared,
            path,
            from,
            start_error,
            held: None,
            last_read: None,
            refreshed_at: None,
            stop: None,
            done: false,
            _t: PhantomData,
        }
    }

    /// An iterator that yields only `e`.
    pub(crate) fn failed(
        e: Error,
        shared: Arc<Shared>,
        path: PathBuf,
        from: Lsn,
        options: ReadOptions,
    ) -> FollowIter<T> {
        let mut it = Self::new(shared, path, from, options);
        it.start_error = Some(e);
        it
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|f| f())
    }

    /// Waits until `ready()` holds, the writer ended, or the consumer left.
    /// Returns false when it stopped without `ready()`.
    fn wait_until(&self, ready: impl Fn(&Shared) -> bool) -> bool {
        loop {
            let listener = self.shared.durable.listen();
            if ready(&self.shared) {
                return true;
            }
            if self.shared.durable.ended() || self.stopped() {
                return ready(&self.shared);
            }
            if self.stop.is_some() {
                listener.wait_timeout(STOP_CHECK);
            } else {
                listener.wait();
            }
        }
    }
}

impl<T: DeserializeOwned> Iterator for FollowIter<T> {
    type Item = Result<ReadItem<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.start_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        loop {
            if let Some(item) = self.held.take() {
                let lsn = item.2;
                if self.wait_until(|s| s.durable.get() >= lsn) {
                    return Some(Ok(item));
                }
                // Never durable: the writer ended (closed after a failure,
                // or poisoned) or the consumer left.
                self.done = true;
                return self.shared.poisoned().map(Err);
            }
            match self.entries.next() {
                Some(Ok(item)) => {
                    let Some(lsn) = item.2 else {
                        self.done = true;
                        return Some(Err(Error::Corrupt {
                            path: self.path.clone(),
                            offset: item.0,
                            reason: "an entry without an LSN in a log being followed by LSN".into(),
                        }));
                    };
                    self.last_read = Some(lsn);
                    self.held = Some(item);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    // The end of what is written. When the watermark has
                    // passed what was read since the file was last looked
                    // at, look again now; otherwise wait for it to move.
                    let mark = self.shared.durable.get();
                    let looked = self.refreshed_at == Some(mark);
                    if mark <= self.last_read || looked {
                        if self.shared.durable.ended() {
                            // Everything the writer made durable was read.
                            self.done = true;
                            return self.shared.poisoned().map(Err);
                        }
                        self.wait_until(|s| s.durable.get() > mark);
                        if self.stopped() {
                            self.done = true;
                            return None;
                        }
                    }
                    self.refreshed_at = Some(self.shared.durable.get());
                    if let Err(e) = self.entries.refresh() {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

/// The error for following from below what `truncate_before` removed:
/// from the segments left on disk (the oldest is not segment 1) and from
/// what this writer removed.
fn below_truncation(
    shared: &Shared,
    path: &std::path::Path,
    from: Lsn,
    options: &ReadOptions,
) -> Option<Error> {
    let removed_here = match shared.first_kept.load(std::sync::atomic::Ordering::Acquire) {
        0 => None,
        n => Some(Lsn::new(n)),
    };
    let on_disk = crate::segments::try_list_segments(&*options.file_system, path)
        .ok()
        .and_then(|segs| segs.first().cloned())
        .filter(|s| s.id > 1)
        .and_then(|s| s.first_lsn);
    let first = removed_here.max(on_disk)?;
    (from < first).then(|| Error::BelowTruncation {
        path: path.to_path_buf(),
        from,
        first,
    })
}

/// A [`futures::Stream`] of a context's entries from an LSN on, each yielded
/// once it is durable, waiting for new ones; made by
/// [`Context::follow`](crate::Context::follow).
///
/// The files are read on a thread of its own, which waits on the writer's
/// watermark between entries and ends soon after the stream is dropped.
pub struct Follow<T: 'static> {
    rx: flume::r#async::RecvStream<'static, Result<ReadItem<T>, Error>>,
}

impl<T: 'static> std::fmt::Debug for Follow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> Follow<T> {
    pub(crate) fn spawn(mut it: FollowIter<T>) -> Follow<T> {
        let (tx, rx) = flume::bounded::<Result<ReadItem<T>, Error>>(256);
        let gone = tx.clone();
        it.stop = Some(Box::new(move || gone.is_disconnected()));
        let spawned = std::thread::Builder::new()
            .name("hyperlog-follow".into())
            .spawn(move || {
                for item in it {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            });
        let rx = match spawned {
            Ok(_) => rx.into_stream(),
            Err(e) => {
                let (tx, rx) = flume::bounded(1);
                let _ = tx.send(Err(Error::io("spawn thread for", "follow", e)));
                rx.into_stream()
            }
        };
        Follow { rx }
    }
}

impl<T: 'static> futures::Stream for Follow<T> {
    type Item = Result<ReadItem<T>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
