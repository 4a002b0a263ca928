//! The lossy, newest-wins ingress queue between network tasks and the consumer thread, and the
//! shared counters behind [`SourceStats`].
//!
//! A `Mutex<VecDeque>` + `Condvar` rather than a channel: when full, the queue evicts the oldest
//! *frame* (preferably of the pushing stream, so one fast stream cannot starve the others), while
//! `Ended` events are never evicted and keep their order relative to their stream's frames.
//! Producers (tokio tasks) only ever hold the lock for a push, so they never block for long.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::frame::Frame;
use crate::io::ndjson::SkipReason;

use super::{EndReason, SourceEvent, SourcePoll, SourceStats, StreamId};

/// Atomic counters shared by the producer tasks; read as a [`SourceStats`] snapshot.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    frames: AtomicU64,
    skipped_malformed: AtomicU64,
    skipped_invalid_joints: AtomicU64,
    skipped_oversize: AtomicU64,
    skipped_out_of_order: AtomicU64,
    dropped_overflow: AtomicU64,
    connections: AtomicU64,
    rejected_connections: AtomicU64,
    streams_ended: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn skip(&self, reason: SkipReason) {
        bump(match reason {
            SkipReason::Malformed => &self.skipped_malformed,
            SkipReason::InvalidJoints => &self.skipped_invalid_joints,
            SkipReason::Oversize => &self.skipped_oversize,
            SkipReason::OutOfOrder => &self.skipped_out_of_order,
        });
    }

    pub(crate) fn connection(&self) {
        bump(&self.connections);
    }

    pub(crate) fn rejected_connection(&self) {
        bump(&self.rejected_connections);
    }

    pub(crate) fn snapshot(&self) -> SourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SourceStats {
            frames: get(&self.frames),
            skipped_malformed: get(&self.skipped_malformed),
            skipped_invalid_joints: get(&self.skipped_invalid_joints),
            skipped_oversize: get(&self.skipped_oversize),
            skipped_out_of_order: get(&self.skipped_out_of_order),
            dropped_overflow: get(&self.dropped_overflow),
            connections: get(&self.connections),
            rejected_connections: get(&self.rejected_connections),
            streams_ended: get(&self.streams_ended),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<SourceEvent>,
    frames_queued: usize,
    closed: bool,
    /// Whether the first overflow was already logged (drops are logged once, then counted).
    overflow_logged: bool,
}

/// The queue itself. `capacity_frames` bounds the frames held; `Ended` events do not count.
#[derive(Debug)]
pub(crate) struct Ingress {
    state: Mutex<State>,
    ready: Condvar,
    capacity_frames: usize,
    pub(crate) counters: Counters,
}

impl Ingress {
    pub(crate) fn new(capacity_frames: usize) -> Self {
        Ingress {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity_frames: capacity_frames.max(1),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking producer cannot leave the queue half-updated (every update is one
        // push/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an accepted frame, evicting the oldest queued frame when full.
    pub(crate) fn push_frame(&self, stream: &StreamId, frame: Frame) {
        bump(&self.counters.frames);
        let mut state = self.lock();
        if state.frames_queued >= self.capacity_frames {
            let is_frame = |e: &SourceEvent| matches!(e, SourceEvent::Frame { .. });
            let victim = state
                .events
                .iter()
                .position(|e| is_frame(e) && e.stream() == stream)
                .or_else(|| state.events.iter().position(is_frame));
            if let Some(victim) = victim {
                state.events.remove(victim);
                state.frames_queued -= 1;
                bump(&self.counters.dropped_overflow);
                if !state.overflow_logged {
                    state.overflow_logged = true;
                    tracing::warn!(%stream, capacity = self.capacity_frames,
                        "ingress queue full: dropping the oldest frames (newest wins); further drops are only counted");
                }
            }
        }
        state.events.push_back(SourceEvent::Frame { stream: stream.clone(), frame });
        state.frames_queued += 1;
        drop(state);
        self.ready.notify_one();
    }

    /// Queues the end of a stream (never dropped).
    pub(crate) fn push_ended(&self, stream: StreamId, reason: EndReason) {
        bump(&self.counters.streams_ended);
        tracing::info!(%stream, ?reason, "stream ended");
        self.lock().events.push_back(SourceEvent::Ended { stream, reason });
        self.ready.notify_one();
    }

    /// No more events will be pushed; the consumer gets `Finished` once the queue is drained.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The next event, waiting up to `timeout`.
    pub(crate) fn next(&self, timeout: Duration) -> SourcePoll {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(event) = state.events.pop_front() {
                if matches!(event, SourceEvent::Frame { .. }) {
                    state.frames_queued -= 1;
                }
                return SourcePoll::Event(event);
            }
            if state.closed {
                return SourcePoll::Finished;
            }
            let now = Instant::now();
            if now >= deadline {
                return SourcePoll::Timeout;
            }
            state = self
                .ready
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(index: u64) -> Frame {
        Frame { index, timestamp_secs: index as f64 / 30.0, bodies: Vec::new() }
    }

    fn next_index(q: &Ingress) -> Option<(String, u64)> {
        match q.next(Duration::ZERO) {
            SourcePoll::Event(SourceEvent::Frame { stream, frame }) => {
                Some((stream.to_string(), frame.index))
            }
            _ => None,
        }
    }

    #[test]
    fn newest_wins_per_stream_and_ended_survives() {
        let q = Ingress::new(3);
        let (a, b) = (StreamId::new("a"), StreamId::new("b"));
        q.push_frame(&b, frame(0));
        q.push_frame(&a, frame(0));
        q.push_frame(&a, frame(1));
        q.push_ended(b.clone(), EndReason::Closed);
        // Full: a's oldest frame goes, b's frame stays.
        q.push_frame(&a, frame(2));
        // Full again, a has frames: a1 goes.
        q.push_frame(&a, frame(3));
        assert_eq!(q.counters.snapshot().dropped_overflow, 2);
        assert_eq!(q.counters.snapshot().frames, 5);
        assert_eq!(next_index(&q), Some(("b".into(), 0)));
        assert_eq!(
            q.next(Duration::ZERO),
            SourcePoll::Event(SourceEvent::Ended { stream: b, reason: EndReason::Closed })
        );
        assert_eq!(next_index(&q), Some(("a".into(), 2)));
        assert_eq!(next_index(&q), Some(("a".into(), 3)));
        assert_eq!(q.next(Duration::from_millis(5)), SourcePoll::Timeout);
        q.close();
        assert_eq!(q.next(Duration::from_secs(5)), SourcePoll::Finished);
    }

    #[test]
    fn a_blocked_consumer_wakes_on_push() {
        let q = std::sync::Arc::new(Ingress::new(4));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                q.push_frame(&StreamId::new("s"), frame(7));
            })
        };
        let started = Instant::now();
        match q.next(Duration::from_secs(5)) {
            SourcePoll::Event(SourceEvent::Frame { frame, .. }) => assert_eq!(frame.index, 7),
            other => panic!("expected the frame, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        producer.join().unwrap();
    }
}
