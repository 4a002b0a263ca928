//! Replay of a recording as a live stream, paced in real time, at ×speed, or as fast as possible.
//!
//! Pull-based and lossless: the consumer's `next_event` sleeps until the next frame is due, and a
//! consumer that falls behind gets the late frames at once (catch-up), never fewer frames.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::io::Recording;
use crate::io::ndjson::MAX_STREAM_SECS;

use super::{EndReason, FrameSource, SourceEvent, SourcePoll, SourceStats, StreamId};

/// How fast a replay runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// At the recording's own timing.
    RealTime,
    /// `Speed(2.0)` plays twice as fast as recorded.
    Speed(f64),
    /// No waiting at all (offline evaluation, tests).
    AsFastAsPossible,
}

/// A recording replayed as one stream named `file:NAME`.
#[derive(Debug)]
pub struct ReplaySource {
    stream: StreamId,
    frames: std::vec::IntoIter<crate::frame::Frame>,
    /// Offset of each frame from the first, in recording seconds.
    offsets_secs: std::vec::IntoIter<f64>,
    speed: Option<f64>,
    started: Option<Instant>,
    ended_sent: bool,
    closed: bool,
    stats: SourceStats,
}

impl ReplaySource {
    /// Replays `recording` at `pacing`. Frames are timed by their `timestamp_secs`; when those do
    /// not increase (a reader that leaves them at zero) by `index / fps`.
    pub fn new(recording: Recording, pacing: Pacing) -> Result<Self> {
        let speed = match pacing {
            Pacing::RealTime => Some(1.0),
            Pacing::Speed(s) if s.is_finite() && s > 0.0 => Some(s),
            Pacing::Speed(s) => {
                return Err(Error::invalid(
                    "replay speed",
                    format!("expected a positive factor, found {s}"),
                ));
            }
            Pacing::AsFastAsPossible => None,
        };
        let frames = recording.frames;
        let by_timestamp = frames.windows(2).all(|w| w[1].timestamp_secs > w[0].timestamp_secs)
            && frames.iter().all(|f| f.timestamp_secs.is_finite());
        let fps =
            if recording.fps.is_finite() && recording.fps > 0.0 { recording.fps } else { 30.0 };
        let offsets: Vec<f64> = match frames.first() {
            None => Vec::new(),
            Some(first) if by_timestamp => {
                frames.iter().map(|f| f.timestamp_secs - first.timestamp_secs).collect()
            }
            Some(first) => {
                frames.iter().map(|f| f.index.saturating_sub(first.index) as f64 / fps).collect()
            }
        };
        if speed.is_some()
            && let Some(at) = offsets.iter().position(|&o| o.is_nan() || o > MAX_STREAM_SECS)
        {
            // A paced replay would wait for that frame for ages (or overflow the clock).
            return Err(Error::invalid(
                format!("recording {}, frame {}", recording.name, frames[at].index),
                format!(
                    "expected a time within {MAX_STREAM_SECS:e} s of the first frame, found {:e} s",
                    offsets[at]
                ),
            ));
        }
        Ok(ReplaySource {
            stream: StreamId::new(format!("file:{}", recording.name)),
            frames: frames.into_iter(),
            offsets_secs: offsets.into_iter(),
            speed,
            started: None,
            ended_sent: false,
            closed: false,
            stats: SourceStats { connections: 1, ..SourceStats::default() },
        })
    }

    /// The stream's id, `file:NAME`.
    pub fn stream_id(&self) -> &StreamId {
        &self.stream
    }
}

impl FrameSource for ReplaySource {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        if self.closed {
            return SourcePoll::Finished;
        }
        let Some(&offset_secs) = self.offsets_secs.as_slice().first() else {
            if self.ended_sent {
                return SourcePoll::Finished;
            }
            self.ended_sent = true;
            self.stats.streams_ended += 1;
            return SourcePoll::Event(SourceEvent::Ended {
                stream: self.stream.clone(),
                reason: EndReason::Closed,
            });
        };
        if let Some(speed) = self.speed {
            // The clock starts at the first request, so set-up time does not cause a burst.
            let started = *self.started.get_or_insert_with(Instant::now);
            // Offsets are finite and at most MAX_STREAM_SECS (checked in `new`).
            let due = started + Duration::from_secs_f64((offset_secs / speed).max(0.0));
            if !wait_until(due, timeout) {
                return SourcePoll::Timeout;
            }
        }
        self.offsets_secs.next();
        let Some(frame) = self.frames.next() else {
            return SourcePoll::Finished;
        };
        self.stats.frames += 1;
        SourcePoll::Event(SourceEvent::Frame { stream: self.stream.clone(), frame })
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    /// The frames not yet read were never accepted: the replay just finishes.
    fn close(&mut self) {
        self.closed = true;
    }

    fn is_live(&self) -> bool {
        self.speed.is_some()
    }
}

/// Sleeps until `due` if that is within `timeout` and returns true; otherwise sleeps `timeout`
/// and returns false (the caller reports a timeout and is asked again).
pub(crate) fn wait_until(due: Instant, timeout: Duration) -> bool {
    let now = Instant::now();
    if due > now {
        if due - now > timeout {
            std::thread::sleep(timeout);
            return false;
        }
        std::thread::sleep(due - now);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::skeleton::Layout;

    fn recording(n: u64, fps: f64) -> Recording {
        Recording {
            name: "take".into(),
            source_layout: Layout::KinectV2_25,
            fps,
            frames: (0..n)
                .map(|i| Frame { index: i, timestamp_secs: i as f64 / fps, bodies: Vec::new() })
                .collect(),
            intervals: None,
        }
    }

    fn drain(source: &mut ReplaySource) -> (Vec<u64>, usize) {
        let (mut indices, mut ended) = (Vec::new(), 0);
        loop {
            match source.next_event(Duration::from_secs(2)) {
                SourcePoll::Event(SourceEvent::Frame { frame, .. }) => indices.push(frame.index),
                SourcePoll::Event(SourceEvent::Ended { reason, .. }) => {
                    assert_eq!(reason, EndReason::Closed);
                    ended += 1;
                }
                SourcePoll::Timeout => {}
                SourcePoll::Finished => return (indices, ended),
            }
        }
    }

    #[test]
    fn fast_replay_is_lossless_and_ends_once() {
        let mut source = ReplaySource::new(recording(50, 30.0), Pacing::AsFastAsPossible).unwrap();
        assert_eq!(source.stream_id().as_str(), "file:take");
        let (indices, ended) = drain(&mut source);
        assert_eq!(indices, (0..50).collect::<Vec<_>>());
        assert_eq!(ended, 1);
        assert_eq!(source.next_event(Duration::ZERO), SourcePoll::Finished);
        assert_eq!(source.stats().frames, 50);
    }

    #[test]
    fn paced_replay_takes_recording_time_over_speed() {
        // 10 frames at 100 fps span 90 ms; at ×3 about 30 ms.
        let started = Instant::now();
        let mut source = ReplaySource::new(recording(10, 100.0), Pacing::RealTime).unwrap();
        assert_eq!(drain(&mut source).0.len(), 10);
        let real = started.elapsed();
        assert!(real >= Duration::from_millis(89), "{real:?}");

        let started = Instant::now();
        let mut source = ReplaySource::new(recording(10, 100.0), Pacing::Speed(3.0)).unwrap();
        assert_eq!(drain(&mut source).0.len(), 10);
        let fast = started.elapsed();
        // Lower bounds only: pacing never runs early, but a loaded machine may run late.
        assert!(fast >= Duration::from_millis(29), "{fast:?} vs {real:?}");
    }

    #[test]
    fn short_timeouts_return_timeout_then_the_frame() {
        let mut rec = recording(2, 30.0);
        rec.frames[1].timestamp_secs = 0.2;
        let mut source = ReplaySource::new(rec, Pacing::RealTime).unwrap();
        assert!(matches!(source.next_event(Duration::ZERO), SourcePoll::Event(_)));
        assert_eq!(source.next_event(Duration::from_millis(10)), SourcePoll::Timeout);
        assert!(matches!(
            source.next_event(Duration::from_secs(1)),
            SourcePoll::Event(SourceEvent::Frame { .. })
        ));
    }

    #[test]
    fn a_paced_replay_of_an_absurd_timestamp_is_a_located_error_not_a_panic() {
        let mut rec = recording(3, 30.0);
        rec.frames[2].timestamp_secs = 1e24;
        match ReplaySource::new(rec.clone(), Pacing::RealTime) {
            Err(Error::Invalid { what, message }) => {
                assert_eq!(what, "recording take, frame 2");
                assert!(message.ends_with("found 1e24 s"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        // Unpaced, time does not matter: every frame comes out.
        let mut source = ReplaySource::new(rec, Pacing::AsFastAsPossible).unwrap();
        assert_eq!(drain(&mut source).0, vec![0, 1, 2]);
    }

    #[test]
    fn bad_speed_is_an_error() {
        for (speed, shown) in [(0.0, "found 0"), (f64::NAN, "found NaN"), (-2.0, "found -2")] {
            match ReplaySource::new(recording(1, 30.0), Pacing::Speed(speed)) {
                Err(Error::Invalid { what, message }) => {
                    assert_eq!(what, "replay speed");
                    assert!(message.ends_with(shown), "{message}");
                }
                other => panic!("speed {speed}: expected an invalid speed, got {:?}", other.err()),
            }
        }
    }
}
