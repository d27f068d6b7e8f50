//! Preallocation: zeros written (and synced) ahead of the data, so that a
//! group's `fdatasync` overwrites allocated blocks and need not commit a new
//! file size (see `ContextOptions::preallocate`).
//!
//! The zeros are written on another thread with a second handle on the live
//! file, past its current end, while the writer goes on writing below that end:
//! the writer writes nothing at or past the old end until the extension is
//! settled, so the two never write the same bytes. Anything that cuts or seals
//! the file (a failed write cut back, a rotation, a close) waits for the
//! extension first, so no zeros land in a file after it was trimmed or sealed,
//! and a writer dropped without closing still waits for them. Preallocation is
//! only an optimization: any failure turns it off and writes go on appending.
//! The zeros a failed extension may have written count as allocated all the
//! same, so that closing trims them.

use crate::fs::WritableFile;

/// Zeros being written past the live file's end on another thread.
pub(super) struct Extension {
    /// The length the file will have.
    target: u64,
    /// Taken when settled.
    job: Option<std::thread::JoinHandle<std::io::Result<bool>>>,
}

impl Drop for Extension {
    /// A writer dropped without closing (a panic) still waits for its
    /// zeros: no thread writes to the file, or holds its lock, after it.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}

/// Starts writing (and syncing) zeros up to `target` on a new thread, with a
/// second handle on the live file; `None` when the file system offers no such
/// handle or the thread cannot start (the writer then preallocates inline).
pub(super) fn extend_ahead(file: &dyn WritableFile, target: u64) -> Option<Extension> {
    let mut alloc = file.allocator()?;
    let job = std::thread::Builder::new()
        .name("hyperlog-prealloc".into())
        .spawn(move || alloc.allocate(target))
        .ok()?;
    Some(Extension {
        target,
        job: Some(job),
    })
}

/// Takes in a finished extension (or, with `wait`, waits for a running one).
/// A failed one turns preallocation off; the zeros it may have written count
/// as allocated, so that closing trims them.
pub(super) fn settle_extension(
    extension: &mut Option<Extension>,
    allocated: &mut u64,
    step: &mut u64,
    wait: bool,
) {
    let Some(mut e) = extension.take_if(|e| wait || e.job.as_ref().is_none_or(|j| j.is_finished()))
    else {
        return;
    };
    match e.job.take().map(std::thread::JoinHandle::join) {
        Some(Ok(Ok(true))) => *allocated = (*allocated).max(e.target),
        _ => {
            *allocated = (*allocated).max(e.target);
            *step = 0;
        }
    }
}
