//! The built-in simulator as a live source: endless synthetic skeleton motion
//! ([`crate::synth::Simulator`]) at its frame rate, so everything runs without a sensor.

use std::time::{Duration, Instant};

use crate::source::replay::{Pacing, wait_until};
use crate::source::{FrameSource, SourceEvent, SourcePoll, SourceStats, StreamId};
use crate::synth::Simulator;

/// An endless live stream `sim` of synthetic actions. It never finishes by itself.
#[derive(Debug)]
pub struct SimSource {
    sim: Simulator,
    stream: StreamId,
    /// Seconds per frame at the chosen pacing; `None` = as fast as possible.
    period_secs: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
    /// True class of the latest frame, for demos and tests.
    last_class: usize,
    closed: bool,
    stats: SourceStats,
}

impl SimSource {
    /// A simulator stream seeded with `seed`, paced like a replay (`RealTime` = its fps).
    pub fn new(seed: u64, pacing: Pacing) -> Self {
        let sim = Simulator::new(seed);
        let period_secs = match pacing {
            Pacing::RealTime => Some(1.0 / sim.fps()),
            Pacing::Speed(x) if x > 0.0 => Some(1.0 / (sim.fps() * x)),
            Pacing::Speed(_) | Pacing::AsFastAsPossible => None,
        };
        SimSource {
            sim,
            stream: StreamId::new("sim"),
            period_secs,
            started: None,
            emitted: 0,
            last_class: 0,
            closed: false,
            stats: SourceStats { connections: 1, ..SourceStats::default() },
        }
    }

    /// The true class of the latest frame delivered.
    pub fn last_class(&self) -> usize {
        self.last_class
    }
}

impl FrameSource for SimSource {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        if self.closed {
            return SourcePoll::Finished;
        }
        if let Some(period) = self.period_secs {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64(period * self.emitted as f64);
            if !wait_until(due, timeout) {
                return SourcePoll::Timeout;
            }
        }
        let (frame, class) = self.sim.next_frame();
        self.emitted += 1;
        self.last_class = class;
        self.stats.frames += 1;
        SourcePoll::Event(SourceEvent::Frame { stream: self.stream.clone(), frame })
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn is_live(&self) -> bool {
        self.period_secs.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_consecutive_frames_of_one_stream_and_never_finishes() {
        let mut src = SimSource::new(3, Pacing::AsFastAsPossible);
        let mut last = None;
        for _ in 0..100 {
            match src.next_event(Duration::from_millis(10)) {
                SourcePoll::Event(SourceEvent::Frame { stream, frame }) => {
                    assert_eq!(stream.as_str(), "sim");
                    if let Some(prev) = last {
                        assert_eq!(frame.index, prev + 1);
                    }
                    last = Some(frame.index);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(src.stats().frames, 100);
    }

    #[test]
    fn real_time_pacing_waits_for_the_next_frame() {
        let mut src = SimSource::new(3, Pacing::RealTime);
        let start = Instant::now();
        let mut frames = 0;
        while frames < 4 {
            if let SourcePoll::Event(_) = src.next_event(Duration::from_millis(5)) {
                frames += 1;
            }
        }
        // Four frames at 30 fps: the 4th is due 100 ms after the first.
        assert!(start.elapsed() >= Duration::from_millis(95), "{:?}", start.elapsed());
    }
}
