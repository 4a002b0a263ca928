//! Wall time per model block, for `skelseg bench --profile`: [`profile_blocks`] runs a closure
//! with a thread-local recorder switched on, and the blocks of MFAI (and DSMI) add their time
//! to it. Switched off (always, outside [`profile_blocks`]) a block costs one thread-local read.
//!
//! CPU operators run synchronously, so a block's wall time is its cost; on CUDA the launches are
//! asynchronous and the times say where the host waited, not where the device worked.

use std::cell::RefCell;
use std::time::{Duration, Instant};

thread_local! {
    static RECORDER: RefCell<Option<Vec<BlockTime>>> = const { RefCell::new(None) };
}

/// Time spent in one block, summed over its calls during [`profile_blocks`].
#[derive(Clone, Debug, PartialEq)]
pub struct BlockTime {
    /// The block's name, e.g. `mfai.encoder.3` or `mfai.qblock.0`.
    pub name: String,
    /// Total wall time of its calls (nested blocks included).
    pub total: Duration,
    /// How many times it ran.
    pub calls: u32,
}

/// Runs `f` with the block recorder on; returns its result and the blocks, in the order they
/// first finished (an inner block before the one around it). Nested calls record into the
/// outermost one.
pub fn profile_blocks<T>(f: impl FnOnce() -> T) -> (T, Vec<BlockTime>) {
    let outer = RECORDER.with(|r| r.borrow().is_some());
    if outer {
        return (f(), Vec::new());
    }
    RECORDER.with(|r| *r.borrow_mut() = Some(Vec::new()));
    // Switch the recorder off even if `f` panics.
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            RECORDER.with(|r| r.borrow_mut().take());
        }
    }
    let off = Off;
    let out = f();
    let blocks = RECORDER.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drop(off);
    (out, blocks)
}

/// Runs `f` as block `name` (`index`: a layer or stage number, appended as `name.index`).
pub(crate) fn block<T>(name: &'static str, index: Option<usize>, f: impl FnOnce() -> T) -> T {
    let _span = Span::new(name, index);
    f()
}

/// A block that lasts until the guard is dropped (for a block that is not one closure).
pub(crate) struct Span {
    /// Name, index and start; `None` when the recorder is off.
    started: Option<(&'static str, Option<usize>, Instant)>,
}

impl Span {
    pub(crate) fn new(name: &'static str, index: Option<usize>) -> Self {
        let on = RECORDER.with(|r| r.borrow().is_some());
        Span { started: on.then(|| (name, index, Instant::now())) }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some((name, index, start)) = self.started.take() else { return };
        let elapsed = start.elapsed();
        let name = match index {
            Some(i) => format!("{name}.{i}"),
            None => name.to_string(),
        };
        RECORDER.with(|r| {
            if let Some(blocks) = r.borrow_mut().as_mut() {
                match blocks.iter_mut().find(|b| b.name == name) {
                    Some(b) => {
                        b.total += elapsed;
                        b.calls += 1;
                    }
                    None => blocks.push(BlockTime { name, total: elapsed, calls: 1 }),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_recorded_only_inside_profile_blocks() {
        assert_eq!(block("outside", None, || 1), 1);
        let (sum, blocks) = profile_blocks(|| {
            let a = block("a", Some(0), || {
                std::thread::sleep(Duration::from_millis(2));
                2
            });
            let b = block("b", None, || 3) + block("b", None, || 4);
            a + b
        });
        assert_eq!(sum, 9);
        let names: Vec<(&str, u32)> = blocks.iter().map(|b| (b.name.as_str(), b.calls)).collect();
        assert_eq!(names, [("a.0", 1), ("b", 2)]);
        assert!(blocks[0].total >= Duration::from_millis(2), "{:?}", blocks[0]);
        // The recorder is off again: nothing leaks into the next profile.
        block("outside", None, || ());
        assert!(profile_blocks(|| ()).1.is_empty());
    }
}
