//! Rotation and segment deletion: sealing the live file into a segment or an
//! archive, and deleting the sealed segments below an LSN.
//!
//! Rotation happens between groups, under the writer's lock, so every group
//! lands whole in one file. A sealed file holds exactly what was written to it:
//! the zeros still on their way are waited for first, and an archive (which the
//! compressor reads whole) is trimmed of them. On failure the live file keeps
//! its name, or is renamed back, and writing goes on in it; if even the rename
//! back fails, the file being written carries a sealed name that deletion could
//! remove, so the writer is poisoned rather than acknowledge anything more in
//! it. Deletion never touches the live file and removes segments oldest first,
//! stopping at the first one that must stay, so what is left is still a chain.
//! It waits for the rotation thread to finish a segment it is still sealing,
//! removes a segment's index before the segment (a crash in between leaves a
//! segment that readers scan, never an orphan index), and syncs the directory
//! before it reports what it removed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::prealloc::settle_extension;
use super::{Sink, Writer};
use crate::fs::parent_dir;
use crate::{Error, Lsn};

impl Writer {
    /// Seals the live file (a segment or an archive) and puts a fresh one in
    /// its place (see [`crate::rotation`]): two renames and, for a syncing
    /// context, one directory sync on this thread; the rest is the rotation's
    /// background thread's. On failure the live file stays as it was and
    /// writes go on into it.
    pub(super) fn rotate(&mut self) -> Result<(), Error> {
        self.settle_dir_sync()?;
        let (
            Some((rotation, fs, mode)),
            Sink::File {
                path,
                file,
                good_len,
                allocated,
            },
        ) = (self.rotation.as_mut(), &mut self.sink)
        else {
            return Ok(());
        };
        // The sealed file is trimmed and indexed as it is: no zeros may
        // still be on their way into it.
        settle_extension(
            &mut self.extension,
            allocated,
            &mut self.prealloc_step,
            true,
        );
        if *good_len == 0 {
            // Nothing to seal: the empty file just starts its clocks again.
            return rotation.restart_clocks();
        }
        let wal = rotation.is_wal();
        if !wal && *allocated > *good_len {
            // The compressor reads the sealed file whole: no zeros in it.
            file.truncate(*good_len)
                .map_err(|e| Error::io("truncate", path.clone(), e))?;
            *allocated = *good_len;
        }
        // Every entry in the live file was written (and, when the context
        // syncs, synced) by the group that carried it. What must survive
        // power loss before anything is acknowledged in the new file are the
        // renames. A data-plane log promises only to survive a process
        // crash, which renames do without a sync.
        let durable = self.durability.syncs();
        let dir = parent_dir(path);
        let sealed = rotation.sealed_path(self.live_first_lsn)?;
        fs.rename(path, &sealed)
            .map_err(|e| Error::io("rename", path.clone(), e))?;
        let fresh = match rotation.install_prepared(path) {
            Some(p) => p.map(|p| (p.file, p.len)),
            None => fs
                .open_append(path, *mode)
                .map_err(|e| Error::io("open", path.clone(), e))
                .and_then(|(f, _)| {
                    if f.try_lock()
                        .map_err(|e| Error::io("lock", path.clone(), e))?
                    {
                        Ok((f, 0))
                    } else {
                        Err(Error::Locked { path: path.clone() })
                    }
                }),
        };
        // The directory sync that makes both renames durable runs on the
        // rotation's directory-sync thread while this one writes and syncs
        // the next group; that group is acknowledged only once both are done
        // (see `settle_dir_sync`).
        let fresh = fresh.and_then(|f| {
            let sync = if durable {
                Some(rotation.sync_dir_in_background()?)
            } else {
                None
            };
            Ok((f, sync))
        });
        match fresh {
            Ok(((f, len), sync)) => {
                self.dir_sync = sync;
                let old = std::mem::replace(file, f);
                let (old_len, trim) = (*good_len, *allocated > *good_len);
                *good_len = 0;
                *allocated = len;
                self.live_first_lsn = None;
                let index = self.index.replace(Vec::new()).filter(|_| wal);
                rotation.rotated(old, sealed, old_len, trim, index)
            }
            Err(e) => {
                // Put the live file back where it was and keep writing to it.
                // If that fails, the file being written carries a sealed
                // name that truncate_before or pruning could delete: nothing
                // more is acknowledged in it.
                let back = fs
                    .rename(&sealed, path)
                    .map_err(|e| Error::io("rename", sealed.clone(), e))
                    .and_then(|()| {
                        if durable {
                            fs.sync_dir(&dir)
                                .map_err(|e| Error::io("fsync directory", &dir, e))?;
                        }
                        Ok(())
                    });
                if let Err(undo) = back {
                    self.shared.poison(&undo);
                }
                Err(e)
            }
        }
    }

    /// Deletes the sealed segments whose every entry lies below `before`:
    /// those whose successor (the next segment, or the live file) starts at
    /// or below it. Never the live file. Syncs the directory.
    pub(super) fn truncate_before(&mut self, before: Lsn) -> Result<Vec<PathBuf>, Error> {
        if let Some(p) = self.shared.poisoned() {
            return Err(p);
        }
        if let Some((r, _, _)) = self.rotation.as_mut() {
            // A sealed segment the background thread still finishes is not
            // deleted under it (its index would be left behind).
            r.wait_idle();
        }
        // Segments may be left by an earlier run with a rotating policy even
        // when this one has none: they are truncated all the same.
        let (Some(fs), Sink::File { path, .. }) = (self.fs.as_ref(), &self.sink) else {
            return Ok(Vec::new());
        };
        let segments = crate::segments::try_list_segments(&**fs, path)
            .map_err(|e| Error::io("list the directory of", path.clone(), e))?;
        // The live file's first LSN, or (when it is empty) one above
        // everything sealed.
        let live_first = self.live_first_lsn.or_else(|| self.next_lsn());
        let mut removed = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let next_first = segments.get(i + 1).map_or(live_first, |n| n.first_lsn);
            match next_first {
                Some(n) if n <= before => {
                    // The index first: a crash in between leaves a segment
                    // without one (readers scan it), not an orphan index.
                    let _ = fs.remove_file(&crate::segments::index_path(&seg.path));
                    fs.remove_file(&seg.path)
                        .map_err(|e| Error::io("delete segment", seg.path.clone(), e))?;
                    removed.push(seg.path.clone());
                }
                _ => break,
            }
        }
        // Indexes an earlier crash (or version) left without their segment.
        for idx in crate::segments::orphan_indexes(&**fs, path).unwrap_or_default() {
            let _ = fs.remove_file(&idx);
        }
        if !removed.is_empty() {
            let dir = parent_dir(path);
            fs.sync_dir(&dir)
                .map_err(|e| Error::io("fsync directory", &dir, e))?;
            // Followers asked to start below this are told, not moved on.
            let kept = segments
                .get(removed.len())
                .map_or(live_first, |s| s.first_lsn);
            if let Some(k) = kept {
                self.shared.first_kept.fetch_max(k.get(), Ordering::AcqRel);
            }
        }
        Ok(removed)
    }

    /// The LSN the next entry will get (caller-chosen: one above the last).
    fn next_lsn(&self) -> Option<Lsn> {
        match &self.caller {
            Some(c) => c.last.map(|l| Lsn::new(l.get().saturating_add(1))),
            None => self.lsn.as_ref().map(|g| g.peek()),
        }
    }

    /// Removes every entry above `after` (every entry for `None`): from the
    /// live file and from the sealed segments, durably, before anything
    /// queued behind the request is written. It works from the end of the
    /// log backwards: the live file is cut (and synced), then later segments
    /// are deleted newest first (and the directory synced), then the
    /// segment holding `after` is cut (and synced) and its index rewritten.
    /// So a crash at any step leaves a prefix of the old log cut at `after`
    /// or later: never an old entry behind a hole, never old and new
    /// entries spliced (new ones are written only after all of it).
    pub(super) fn truncate_after(&mut self, after: Option<Lsn>) -> Result<(), Error> {
        if let Some(p) = self.shared.poisoned() {
            return Err(p);
        }
        if let Some((r, _, _)) = self.rotation.as_mut() {
            // No sealed segment is still being trimmed or indexed under us.
            r.wait_idle();
        }
        let Some(fs) = self.fs.clone() else {
            return Ok(());
        };
        let Sink::File {
            path,
            file,
            good_len,
            allocated,
        } = &mut self.sink
        else {
            return Ok(());
        };
        settle_extension(
            &mut self.extension,
            allocated,
            &mut self.prealloc_step,
            true,
        );
        let first_above = after.map(|l| Lsn::new(l.get().saturating_add(1)));
        let read = |p: &std::path::Path| {
            let mut o = crate::reader::ReadOptions::default()
                .file_system(fs.clone())
                .max_record_size(self.max_record_size)
                .format(self.format);
            if let Some(l) = first_above {
                o = o.from_lsn(l);
            }
            // Where the first entry above `after` starts in `p` (`None`:
            // none there). A damaged file is an error: cutting by guess
            // could keep what was asked to go.
            match crate::reader::read_records(p, 0, o).next() {
                None => Ok(None),
                Some(Ok(r)) => Ok(Some(r.offset)),
                Some(Err(e)) => Err(e),
            }
        };
        let fail = |what: &'static str, p: &std::path::Path, e: std::io::Error| {
            Error::io(what, p.to_path_buf(), e)
        };
        // 1. The live file.
        let live_cut = if after.is_some() && *good_len > 0 {
            read(path)?.unwrap_or(*good_len)
        } else {
            0
        };
        if live_cut < *good_len {
            let cut = file
                .truncate(live_cut)
                .and_then(|()| file.sync_data())
                .map_err(|e| fail("truncate", path, e));
            if let Err(e) = cut {
                self.shared.poison(&e);
                return Err(e);
            }
            *good_len = live_cut;
            *allocated = live_cut;
            if let Some(index) = self.index.as_mut() {
                index.retain(|p| p.1 < live_cut);
            }
            if live_cut == 0 {
                self.live_first_lsn = None;
            }
        }
        // 2. and 3. The segments, when the cut reaches into them.
        if live_cut == 0 {
            let segments = crate::segments::try_list_segments(&*fs, path)
                .map_err(|e| fail("list the directory of", path, e))?;
            let mut removed = false;
            for seg in segments.iter().rev() {
                let keep_from = match first_above {
                    // Wholly above `after`: deleted.
                    Some(l) if seg.first_lsn.is_some_and(|f| f < l) => read(&seg.path)?,
                    Some(_) if seg.first_lsn.is_none() && seg.id == segments[0].id => {
                        read(&seg.path)?
                    }
                    _ => Some(0),
                };
                match keep_from {
                    Some(0) => {
                        let _ = fs.remove_file(&crate::segments::index_path(&seg.path));
                        fs.remove_file(&seg.path)
                            .map_err(|e| fail("delete segment", &seg.path, e))?;
                        removed = true;
                    }
                    cut => {
                        if removed {
                            let dir = parent_dir(path);
                            fs.sync_dir(&dir)
                                .map_err(|e| fail("fsync directory", &dir, e))?;
                            removed = false;
                        }
                        if let Some(cut) = cut {
                            let (mut f, _) = fs
                                .open_append(&seg.path, 0o644)
                                .map_err(|e| fail("open", &seg.path, e))?;
                            f.truncate(cut)
                                .and_then(|()| f.sync_data())
                                .map_err(|e| fail("truncate", &seg.path, e))?;
                            let idx = crate::segments::index_path(&seg.path);
                            let old = fs
                                .open_read(&idx)
                                .ok()
                                .and_then(|f| f.read_range(0, f.len().ok()? as usize).ok())
                                .and_then(|b| crate::segments::decode_index(&b));
                            let _ = fs.remove_file(&idx);
                            if let Some(mut points) = old {
                                points.retain(|p| p.1 < cut);
                                let _ = fs.write_new(
                                    &idx,
                                    &crate::segments::encode_index(&points),
                                    0o644,
                                );
                            }
                        }
                        break;
                    }
                }
            }
            if removed {
                let dir = parent_dir(path);
                fs.sync_dir(&dir)
                    .map_err(|e| fail("fsync directory", &dir, e))?;
            }
            if let Some((r, _, _)) = self.rotation.as_mut() {
                r.forget_segment_ids();
            }
        }
        if let Some(c) = self.caller.as_mut() {
            c.last = after;
        }
        self.shared.durable.lower_to(after);
        Ok(())
    }
}
