//! Framing and the group write: a group of records becomes one buffer, one
//! `write` and, when the mode syncs, one `fdatasync`; then its entries are
//! acknowledged.
//!
//! LSNs are handed out here, under the writer's lock and in queue order, so
//! they rise in file order; each is taken before the size check, so a record
//! refused as too large leaves a gap, never a repeat. Rotation is checked
//! before a group is framed, so the entries that found the file due go to the
//! fresh file, and a failed rotation leaves them in the old one: never lost.
//! Nothing is acknowledged before the whole group is written (and synced, when
//! the mode syncs) and, after a rotation, before the fresh file's name is
//! durable; then every entry of the group gets the same outcome, since they
//! shared one write (a record refused as too large is answered at once, on its
//! own). `good_len` moves only past a group written whole, and nothing is
//! appended behind part of a group: a failed write is cut back to `good_len`,
//! and when that cut fails too the next write retries it first (until then,
//! recovery would see a torn tail). A group's index points are kept only once
//! its write succeeded, so the index never points into bytes that were cut. A
//! poisoned writer writes nothing. Entries dropped on a full queue are counted
//! once each (the counter is swapped, not read) and noted in a record written
//! ahead of the next group.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::prealloc::{extend_ahead, settle_extension};
use super::producer::Queued;
use super::{Sink, Writer};
use crate::entry::CallSite;
use crate::format;
use crate::lsn::now_ms;
use crate::options::ConsoleStream;
use crate::{DurabilityMode, Error, Message};

impl Writer {
    /// Writes and (per policy) syncs one group, then acknowledges it.
    pub(super) fn commit(&mut self, group: &mut Vec<Queued>) {
        if self.pipeline.is_none() {
            // (With a sync stage, the stage records the groups its syncs carry.)
            self.shared.last_group.store(group.len(), Ordering::Relaxed);
        }
        if let Some(p) = self.shared.poisoned() {
            for q in group.drain(..) {
                if let Some(a) = q.ack {
                    a.send(Err(p.clone()));
                }
            }
            return;
        }
        self.buf.clear();
        self.err_buf.clear();
        self.acks.clear();
        let dropped = self.shared.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            self.append_drop_notice(dropped);
        }
        if let (Some((r, _, _)), Sink::File { good_len, .. }) = (&self.rotation, &self.sink)
            && r.due(*good_len).is_some()
        {
            // Before the group is appended: the entries that found the file
            // due go to the fresh one, never lost. No sync may run under the
            // rotation.
            self.drain_pipeline();
            let t = Instant::now();
            match self.rotate() {
                Ok(()) => {
                    self.rotation_us = t.elapsed().as_micros() as u64;
                    self.shared.rotations.fetch_add(1, Ordering::Relaxed);
                    if self.dir_sync.is_none() {
                        self.shared
                            .longest_rotation_us
                            .fetch_max(self.rotation_us, Ordering::Relaxed);
                    }
                }
                Err(e) => self.shared.report(e),
            }
            if let Some(p) = self.shared.poisoned() {
                for q in group.drain(..) {
                    if let Some(a) = q.ack {
                        a.send(Err(p.clone()));
                    }
                }
                return;
            }
        }
        let now = now_ms();
        let mut group_last = None;
        for Queued {
            bytes,
            to_stderr,
            ack,
            lsn: chosen,
            gap,
            more: _,
        } in group.drain(..)
        {
            match &self.sink {
                Sink::Console(_) => {
                    if to_stderr {
                        self.err_buf.extend_from_slice(&bytes)
                    } else {
                        self.buf.extend_from_slice(&bytes)
                    }
                    self.records_in_buf += 1;
                    if let Some(a) = ack {
                        self.acks.push((a, None));
                    }
                }
                Sink::File { path, .. } => {
                    // An LSN refused here leaves a gap, never a repeat.
                    let lsn = match (self.caller.as_mut(), chosen) {
                        (None, _) => self.lsn.as_mut().map(|g| g.next(now)),
                        (Some(c), Some(l)) => match c.accept(l, gap) {
                            Ok(()) => Some(l),
                            Err(last) => {
                                if let Some(a) = ack {
                                    a.send(Err(Error::LsnOutOfOrder {
                                        path: path.clone(),
                                        lsn: l,
                                        last,
                                    }));
                                }
                                self.shared.recycle(bytes);
                                continue;
                            }
                        },
                        (Some(_), None) => {
                            if let Some(a) = ack {
                                a.send(Err(Error::InvalidOption {
                                    context: self.shared.target.clone(),
                                    option: "caller_lsns",
                                    reason: "this context takes the LSN of each entry from the caller: append with Context::append_batch".into(),
                                }));
                            }
                            self.shared.recycle(bytes);
                            continue;
                        }
                    };
                    let len = format::payload_len(&bytes, lsn);
                    if len as u64 > self.max_record_size {
                        if let Some(a) = ack {
                            a.send(Err(Error::RecordTooLarge {
                                path: path.clone(),
                                len: len as u64,
                                max: self.max_record_size,
                            }));
                        }
                        self.shared.recycle(bytes);
                        continue;
                    }
                    let start = self.buf.len() as u64;
                    format::finish_record(self.format, &bytes, lsn, &mut self.buf);
                    self.records_in_buf += 1;
                    if let (Some(index), Some(l), Sink::File { good_len, .. }) =
                        (self.index.as_ref(), lsn, &self.sink)
                    {
                        let at = good_len + start;
                        let last = self.index_pending.last().or(index.last()).map(|p| p.1);
                        if crate::segments::index_point_due(last, at) {
                            self.index_pending.push((l.get(), at));
                        }
                    }
                    if self.live_first_lsn.is_none() {
                        self.live_first_lsn = lsn;
                    }
                    group_last = lsn.or(group_last);
                    if let Some(a) = ack {
                        self.acks.push((a, lsn));
                    }
                }
            }
            self.shared.recycle(bytes);
        }
        let records = self.records_in_buf;
        self.records_in_buf = 0;
        let result = self.write_and_sync().and_then(|()| self.settle_dir_sync());
        let points = std::mem::take(&mut self.index_pending);
        match result {
            Ok(()) => {
                if let Some(index) = self.index.as_mut() {
                    index.extend(points);
                }
                self.shared
                    .records_written
                    .fetch_add(records, Ordering::Relaxed);
                // Written (and synced, when the mode syncs) with every group
                // before it: durable as the mode defines.
                if let Some(stage) = self.pipeline.as_ref() {
                    // Written: the sync stage syncs and acknowledges it.
                    let sink = &self.sink;
                    let handed = stage.hand_over(
                        super::pipeline::Handover {
                            acks: &mut self.acks,
                            last: group_last,
                            records: records as usize,
                        },
                        || match sink {
                            Sink::File { path, file, .. } => Some((path.clone(), file.syncer()?)),
                            Sink::Console(_) => None,
                        },
                    );
                    if !handed {
                        // This file cannot be synced from another thread
                        // (the stage is drained, so nothing else syncs).
                        self.sync_here(group_last);
                    }
                    return;
                }
                if let Some(l) = group_last {
                    self.shared.durable.advance(l);
                }
                for (a, lsn) in self.acks.drain(..) {
                    a.send(Ok(lsn));
                }
            }
            Err(e) => {
                if self.durability == DurabilityMode::None {
                    self.shared.report(e.clone());
                } else {
                    self.shared.poison(&e);
                }
                for (a, _) in self.acks.drain(..) {
                    a.send(Err(e.clone()));
                }
            }
        }
    }

    /// Syncs the written group on this thread and acknowledges it (for a
    /// file the sync stage cannot hold).
    fn sync_here(&mut self, last: Option<crate::Lsn>) {
        let res = match &mut self.sink {
            Sink::File { path, file, .. } => {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                file.sync_data()
                    .map_err(|e| Error::io("fdatasync", path.clone(), e))
            }
            Sink::Console(_) => Ok(()),
        };
        match res {
            Ok(()) => {
                if let Some(l) = last {
                    self.shared.durable.advance(l);
                }
                for (a, lsn) in self.acks.drain(..) {
                    a.send(Ok(lsn));
                }
            }
            Err(e) => {
                self.shared.poison(&e);
                for (a, _) in self.acks.drain(..) {
                    a.send(Err(e.clone()));
                }
            }
        }
    }

    fn write_and_sync(&mut self) -> Result<(), Error> {
        match &mut self.sink {
            Sink::Console(stream) => {
                let (out, err) = (&self.buf, &self.err_buf);
                let res = if *stream == ConsoleStream::Stderr {
                    let mut e = std::io::stderr().lock();
                    e.write_all(out)
                        .and_then(|()| e.write_all(err))
                        .and_then(|()| e.flush())
                } else {
                    let mut o = std::io::stdout().lock();
                    let r = o.write_all(out).and_then(|()| o.flush());
                    r.and_then(|()| {
                        if err.is_empty() {
                            Ok(())
                        } else {
                            let mut e = std::io::stderr().lock();
                            e.write_all(err).and_then(|()| e.flush())
                        }
                    })
                };
                res.map_err(|e| Error::io("write", &self.shared.target, e))
            }
            Sink::File {
                path,
                file,
                good_len,
                allocated,
            } => {
                if self.buf.is_empty() {
                    return Ok(());
                }
                if self.cut_pending {
                    // A failed write left part of a group that could not be
                    // cut then: nothing is appended behind it until it is.
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        true,
                    );
                    file.truncate(*good_len)
                        .map_err(|e| Error::io("truncate", path.clone(), e))?;
                    self.cut_pending = false;
                    *allocated = *good_len;
                }
                self.shared.writes.fetch_add(1, Ordering::Relaxed);
                let end = *good_len + self.buf.len() as u64;
                if self.prealloc_step > 0 {
                    // Zeros finished in the background count; when this
                    // group needs them and they are not done, wait for them.
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        end > *allocated,
                    );
                }
                if self.prealloc_step > 0 && end > *allocated {
                    let target = (end / self.prealloc_step + 1) * self.prealloc_step;
                    match file.allocate(target) {
                        Ok(true) => *allocated = target,
                        // Preallocation is an optimization: without it (no
                        // support, or no space for it) writes still append.
                        Ok(false) | Err(_) => self.prealloc_step = 0,
                    }
                }
                if self.prealloc_step > 0
                    && self.extension.is_none()
                    && *allocated - end < self.prealloc_step / 2
                {
                    // Less than half a step left: the next step's zeros are
                    // written and synced on another thread, ahead of need.
                    self.extension = extend_ahead(file.as_ref(), *allocated + self.prealloc_step);
                }
                if let Err(e) = file.write_all(&self.buf) {
                    // Cut a partial write back so the file holds whole records;
                    // if that fails too, the next write tries again first
                    // (until then, recovery treats it as a torn tail).
                    settle_extension(
                        &mut self.extension,
                        allocated,
                        &mut self.prealloc_step,
                        true,
                    );
                    match file.truncate(*good_len) {
                        Ok(()) => *allocated = *good_len,
                        Err(_) => self.cut_pending = true,
                    }
                    return Err(Error::io("write", path.clone(), e));
                }
                if self.durability.syncs() && self.pipeline.is_none() {
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    file.sync_data()
                        .map_err(|e| Error::io("fdatasync", path.clone(), e))?;
                    let backlog = self.rx.as_ref().map_or(0, flume::Receiver::len);
                    self.group.record(self.acks.len(), t.elapsed(), backlog);
                }
                *good_len += self.buf.len() as u64;
                self.shared
                    .bytes_written
                    .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn append_drop_notice(&mut self, dropped: u64) {
        let text = format!("hyperlog dropped {dropped} entries because the queue was full");
        self.shared.report(Error::Dropped {
            target: self.shared.target.clone(),
            count: dropped,
        });
        match &self.sink {
            Sink::Console(_) => {
                self.err_buf
                    .extend_from_slice(format!("hyperlog: {text}\n").as_bytes());
            }
            Sink::File { .. } => {
                let mut env = Vec::new();
                let site = CallSite {
                    file: Some(file!()),
                    function: Some("hyperlog::writer"),
                    line: Some(line!()),
                };
                if format::encode_envelope(
                    &Message::warn(text),
                    &site,
                    crate::entry::thread_id(),
                    &mut env,
                )
                .is_ok()
                {
                    let lsn = self.lsn.as_mut().map(|g| g.next(now_ms()));
                    format::finish_record(self.format, &env, lsn, &mut self.buf);
                    self.records_in_buf += 1;
                }
            }
        }
    }
}
