//! Giving freed memory back to the system after large inference batches.
//!
//! A worker that falls behind runs a stream's waiting frames as one batch: hundreds of frames
//! through DSMI and tens of windows through MFAI in one call, which allocates tens to hundreds of
//! megabytes of short-lived tensors. glibc keeps freed memory inside its heaps (it returns only
//! what lies at the top of a heap, and large blocks stop being mapped on their own once its
//! dynamic mmap threshold has grown), so without help the resident size of a long-running
//! pipeline stays at the high-water mark of its worst burst. [`Trimmer`] asks glibc to release
//! the free pages of every arena (`malloc_trim(0)`) after such batches, at most once a second.
//! On other platforms it does nothing.

use std::time::{Duration, Instant};

/// Frames in one engine call above which the call counts as a large batch.
const LARGE_STEP_FRAMES: usize = 64;
/// Least time between two trims.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a worker that is never idle waits before trimming after a large batch.
const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Decides when a worker hands freed memory back (see the module docs).
#[derive(Debug)]
pub(crate) struct Trimmer {
    last: Instant,
    /// A large batch ran since the last trim.
    dirty: bool,
}

impl Trimmer {
    pub(crate) fn new() -> Self {
        Trimmer { last: Instant::now(), dirty: false }
    }

    /// Called after every engine step with the frames it took and whether frames are still
    /// waiting; trims when a large batch ran and the worker is idle (or has been busy for
    /// [`MAX_INTERVAL`]). Returns whether it trimmed.
    pub(crate) fn after_step(&mut self, step_frames: usize, idle: bool) -> bool {
        self.dirty |= step_frames > LARGE_STEP_FRAMES;
        let since = self.last.elapsed();
        if !self.dirty || since < MIN_INTERVAL || !(idle || since >= MAX_INTERVAL) {
            return false;
        }
        release_free_memory();
        self.last = Instant::now();
        self.dirty = false;
        true
    }
}

/// Returns the free pages of every malloc arena to the system (glibc only; a no-op elsewhere).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim takes a padding size, touches only the allocator's own free lists
    // under its locks, and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the free pages of every malloc arena to the system (glibc only; a no-op elsewhere).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ago: Duration) -> Trimmer {
        Trimmer { last: Instant::now() - ago, dirty: false }
    }

    #[test]
    fn trims_once_idle_after_a_large_batch_and_not_again_within_the_interval() {
        let mut t = at(2 * MIN_INTERVAL);
        assert!(!t.after_step(LARGE_STEP_FRAMES, true), "small batches leave memory alone");
        assert!(!t.after_step(LARGE_STEP_FRAMES + 1, false), "busy: waits for idle");
        assert!(t.after_step(0, true), "idle after a large batch: trims");
        assert!(!t.after_step(0, true), "nothing large since");
        assert!(!t.after_step(1000, true), "within the least interval");
    }

    #[test]
    fn a_worker_that_is_never_idle_still_trims_after_the_longest_interval() {
        let mut t = at(MAX_INTERVAL);
        assert!(t.after_step(1000, false));
        assert!(!at(MAX_INTERVAL / 2).after_step(1000, false));
    }
}
