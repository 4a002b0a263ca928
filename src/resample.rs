//! Frame-rate adapter: frames at any rate in, frames on the model's time grid out.
//!
//! A model learns durations in frames, so a 15 fps recording fed to a 30 fps model looks like
//! everything happens twice as fast. [`Resampler`] puts frames on the grid `t0 + k / fps`
//! (`t0` = the first frame's timestamp), interpolating joint positions linearly between the two
//! input frames around each grid time; a body present in only one of them is taken from the
//! nearer one. Output frame `k` has index `k` and timestamp `t0 + k / fps`.
//!
//! The same type serves recordings ([`resample_recording`], used by training and evaluation)
//! and live streams (push frames as they come), so both see the same frames. Rates within
//! [`RATE_TOLERANCE`] of the model's pass through untouched, so a 30 fps stream into a 30 fps
//! model is bit-identical to no adapter at all. Across a gap longer than [`MAX_GAP_SECS`]
//! (dropped frames, a person out of view) nothing is invented: the grid resumes at the next
//! frame, and the index jump tells the modalities frames were dropped.

use std::borrow::Cow;

use crate::frame::{Body, Frame, Joint, Tracking};
use crate::io::{Interval, Recording};
use crate::source::{FrameSource, SourceEvent, SourcePoll, SourceStats, StreamId};

/// Relative rate difference under which frames pass through unchanged.
pub const RATE_TOLERANCE: f64 = 0.05;
/// Longest gap between input frames that is interpolated across.
pub const MAX_GAP_SECS: f64 = 0.25;
/// Grid indices past this (over a thousand years at 30 fps) can only come from a corrupt
/// timestamp; such a frame is ignored like an out-of-order one, so indices cannot overflow.
const MAX_GRID_INDEX: f64 = (1u64 << 40) as f64;

/// Puts frames on a fixed-rate grid (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Resampler {
    target_fps: f64,
    passthrough: bool,
    prev: Option<Frame>,
    t0: f64,
    /// Next grid index to emit.
    next: u64,
}

impl Resampler {
    /// An adapter from frames at `source_fps` to `target_fps`. Non-positive or non-finite
    /// rates pass frames through.
    pub fn new(source_fps: f64, target_fps: f64) -> Self {
        let valid = source_fps.is_finite()
            && target_fps.is_finite()
            && source_fps > 0.0
            && target_fps > 0.0;
        let passthrough = !valid || (source_fps / target_fps - 1.0).abs() <= RATE_TOLERANCE;
        Resampler { target_fps, passthrough, prev: None, t0: 0.0, next: 0 }
    }

    /// Whether frames go through unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Takes the next input frame (timestamps must increase) and returns the grid frames it
    /// completes: none, one or several.
    pub fn push(&mut self, frame: Frame) -> Vec<Frame> {
        if self.passthrough {
            return vec![frame];
        }
        let period = 1.0 / self.target_fps;
        let Some(prev) = self.prev.take() else {
            self.t0 = frame.timestamp_secs;
            self.next = 1;
            let first = Frame { index: 0, ..frame.clone() };
            self.prev = Some(frame);
            return vec![first];
        };
        let mut out = Vec::new();
        let (ta, tb) = (prev.timestamp_secs, frame.timestamp_secs);
        let grid_index = (tb - self.t0) / period;
        if tb <= ta || grid_index.is_nan() || grid_index >= MAX_GRID_INDEX {
            // Out of order, repeated or absurdly far: sources count and drop these (see
            // `io::ndjson::MAX_STREAM_SECS`); here it is ignored.
            self.prev = Some(prev);
            return out;
        }
        let grid = |k: u64| self.t0 + k as f64 * period;
        if tb - ta > MAX_GAP_SECS {
            // Resume on the first grid time at or after the new frame, without inventing frames.
            self.next = ((tb - self.t0) / period - 1e-9).ceil().max(self.next as f64) as u64;
        }
        // A gap up to MAX_GAP_SECS yields at most this many; the bound also holds where the
        // times are too large for the grid arithmetic to be exact.
        let most = (MAX_GAP_SECS / period).ceil() as usize + 2;
        while grid(self.next) <= tb + 1e-9 && out.len() < most {
            let t = grid(self.next);
            let w = ((t - ta) / (tb - ta)).clamp(0.0, 1.0) as f32;
            out.push(Frame {
                index: self.next,
                timestamp_secs: t,
                bodies: interpolate(&prev.bodies, &frame.bodies, w),
            });
            self.next += 1;
        }
        self.prev = Some(frame);
        out
    }

    /// Forgets the stream (the next frame starts a new grid).
    pub fn reset(&mut self) {
        self.prev = None;
        self.next = 0;
    }
}

/// Bodies at weight `w` between `a` (0) and `b` (1), matched by id.
fn interpolate(a: &[Body], b: &[Body], w: f32) -> Vec<Body> {
    let (near, far) = if w < 0.5 { (a, b) } else { (b, a) };
    near.iter()
        .map(|body| {
            let Some(other) = far.iter().find(|o| o.id == body.id) else { return body.clone() };
            let (from, to) = if w < 0.5 { (body, other) } else { (other, body) };
            Body {
                id: body.id,
                joints: std::array::from_fn(|j| {
                    let (p, q) = (from.joints[j], to.joints[j]);
                    Joint {
                        pos: std::array::from_fn(|c| p.pos[c] + (q.pos[c] - p.pos[c]) * w),
                        tracking: worse(p.tracking, q.tracking),
                    }
                }),
            }
        })
        .collect()
}

fn worse(a: Tracking, b: Tracking) -> Tracking {
    match (a, b) {
        (Tracking::NotTracked, _) | (_, Tracking::NotTracked) => Tracking::NotTracked,
        (Tracking::Inferred, _) | (_, Tracking::Inferred) => Tracking::Inferred,
        _ => Tracking::Tracked,
    }
}

/// `recording` on the `fps` grid, through the same [`Resampler`] a stream goes through; labels
/// follow each grid frame's nearest input frame. A recording already at `fps` (within
/// [`RATE_TOLERANCE`]) comes back unchanged.
pub fn resample_recording(recording: &Recording, fps: f64) -> Cow<'_, Recording> {
    let mut resampler = Resampler::new(recording.fps, fps);
    if resampler.is_passthrough() {
        return Cow::Borrowed(recording);
    }
    let frames: Vec<Frame> =
        recording.frames.iter().flat_map(|f| resampler.push(f.clone())).collect();
    let intervals = recording.frame_labels().map(|labels| {
        let times: Vec<f64> = recording.frames.iter().map(|f| f.timestamp_secs).collect();
        let ids: Vec<usize> = frames
            .iter()
            .map(|f| labels.get(nearest(&times, f.timestamp_secs)).copied().unwrap_or(0))
            .collect();
        crate::io::labels::runs(&ids).filter(|iv| iv.class != 0).collect::<Vec<Interval>>()
    });
    tracing::debug!(recording = %recording.name, from = recording.fps, to = fps, "resampled");
    Cow::Owned(Recording {
        name: recording.name.clone(),
        source_layout: recording.source_layout,
        fps,
        frames,
        intervals,
    })
}

/// Index of the time in `times` (ascending, not empty) nearest to `t`; ties (a 15 fps frame
/// halfway between two 30 fps ones) go to the earlier.
fn nearest(times: &[f64], t: f64) -> usize {
    let i = times.partition_point(|&x| x < t);
    match (i.checked_sub(1), times.get(i)) {
        (Some(p), Some(&next)) if t - times[p] <= next - t + 1e-9 => p,
        (Some(p), None) => p,
        _ => i,
    }
}

/// Per-frame values of a resampled recording (frames at `grid` times) carried back to the
/// recording's own frames (at `times`): each frame takes the value of the grid frame nearest to
/// it, the inverse of how [`resample_recording`] carries labels to the grid. So predictions made
/// at the model's rate come out one per recorded frame. Empty when `grid` or `values` is.
pub fn to_source_frames<T: Copy>(grid: &[f64], values: &[T], times: &[f64]) -> Vec<T> {
    let n = grid.len().min(values.len());
    if n == 0 {
        return Vec::new();
    }
    times.iter().map(|&t| values[nearest(&grid[..n], t)]).collect()
}

/// Frames a stream's rate is estimated from before [`RateAdapter`] decides.
pub const RATE_PROBE_FRAMES: usize = 8;

/// Per-stream state of a [`RateAdapter`].
#[derive(Debug)]
enum StreamRate {
    /// Collecting the first frames to estimate the rate.
    Probing(Vec<Frame>),
    /// Decided: frames go through this resampler (a pass-through one at the model's rate).
    Decided(Resampler),
}

/// A [`FrameSource`] that puts every stream of `inner` on the model's frame rate, the live
/// counterpart of [`resample_recording`]: each stream's rate is estimated from its first
/// [`RATE_PROBE_FRAMES`] frames ([`estimate_fps`]; they are held back until then, so a stream
/// starts that many frames late), and streams within [`RATE_TOLERANCE`] of the model's rate
/// pass untouched.
pub struct RateAdapter<S> {
    inner: S,
    target_fps: f64,
    streams: std::collections::HashMap<StreamId, StreamRate>,
    ready: std::collections::VecDeque<SourceEvent>,
}

impl<S: FrameSource> RateAdapter<S> {
    /// Wraps `inner` for a model at `target_fps`.
    pub fn new(inner: S, target_fps: f64) -> Self {
        RateAdapter {
            inner,
            target_fps,
            streams: std::collections::HashMap::new(),
            ready: std::collections::VecDeque::new(),
        }
    }

    fn decide(&mut self, stream: &StreamId, probe: Vec<Frame>) {
        let fps = estimate_fps(&probe).unwrap_or(self.target_fps);
        let mut resampler = Resampler::new(fps, self.target_fps);
        if !resampler.is_passthrough() {
            tracing::info!(%stream, fps, model_fps = self.target_fps, "stream resampled to the model's frame rate");
            if stream.as_str().starts_with("zenoh:") {
                // The grid starts where this worker first saw the stream, so frame numbers
                // differ between workers and the handover rule cannot line them up (README,
                // "Handover rule").
                tracing::warn!(%stream, "a resampled Zenoh stream is not handed over exactly: send it at the model's frame rate");
            }
        }
        for frame in probe {
            for frame in resampler.push(frame) {
                self.ready.push_back(SourceEvent::Frame { stream: stream.clone(), frame });
            }
        }
        self.streams.insert(stream.clone(), StreamRate::Decided(resampler));
    }

    fn take(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Frame { stream, frame } => match self.streams.get_mut(&stream) {
                Some(StreamRate::Decided(r)) => {
                    for frame in r.push(frame) {
                        self.ready.push_back(SourceEvent::Frame { stream: stream.clone(), frame });
                    }
                }
                Some(StreamRate::Probing(probe)) => {
                    probe.push(frame);
                    if probe.len() >= RATE_PROBE_FRAMES {
                        let probe = std::mem::take(probe);
                        self.decide(&stream, probe);
                    }
                }
                None => {
                    self.streams.insert(stream, StreamRate::Probing(vec![frame]));
                }
            },
            SourceEvent::Ended { stream, reason } => {
                // A short stream: decide on what came, so no frame is lost.
                if let Some(StreamRate::Probing(probe)) = self.streams.remove(&stream) {
                    self.decide(&stream, probe);
                    self.streams.remove(&stream);
                }
                self.ready.push_back(SourceEvent::Ended { stream, reason });
            }
        }
    }
}

/// Frame rate of `frames`, when it has at least two with increasing times: the median time per
/// index step, so a sensor that drops frames but numbers them at its own rate (UTKinect keeps
/// one 30 fps depth frame in 2 to 8) is taken at that rate, with gaps, as its recording is read;
/// frames whose index does not advance count as one step.
pub fn estimate_fps(frames: &[Frame]) -> Option<f64> {
    let mut steps: Vec<f64> = frames
        .windows(2)
        .map(|w| {
            let steps = w[1].index.saturating_sub(w[0].index).max(1);
            (w[1].timestamp_secs - w[0].timestamp_secs) / steps as f64
        })
        .filter(|d| *d > 0.0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort_by(f64::total_cmp);
    Some(1.0 / steps[steps.len() / 2])
}

impl<S: FrameSource> FrameSource for RateAdapter<S> {
    fn next_event(&mut self, timeout: std::time::Duration) -> SourcePoll {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.ready.pop_front() {
                return SourcePoll::Event(event);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.inner.next_event(left) {
                SourcePoll::Event(event) => self.take(event),
                SourcePoll::Finished => {
                    // Streams still probing when the source finishes get their frames out.
                    let probing: Vec<StreamId> = self.streams.keys().cloned().collect();
                    for stream in probing {
                        if let Some(StreamRate::Probing(probe)) = self.streams.remove(&stream) {
                            self.decide(&stream, probe);
                        }
                    }
                    if self.ready.is_empty() {
                        return SourcePoll::Finished;
                    }
                }
                SourcePoll::Timeout => return SourcePoll::Timeout,
            }
        }
    }

    fn close(&mut self) {
        self.inner.close();
    }

    fn stats(&self) -> SourceStats {
        self.inner.stats()
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skeleton::Layout;

    fn frame(i: u64, t: f64, x: f32) -> Frame {
        Frame { index: i, timestamp_secs: t, bodies: vec![Body::from_positions(1, &[[x; 3]; 25])] }
    }

    #[test]
    fn fifteen_fps_doubles_with_midpoints() {
        let mut r = Resampler::new(15.0, 30.0);
        let mut out = Vec::new();
        for i in 0..4 {
            out.extend(r.push(frame(i, 1.0 + i as f64 / 15.0, i as f32)));
        }
        assert_eq!(out.len(), 7);
        let xs: Vec<f32> = out.iter().map(|f| f.bodies[0].joints[3].pos[0]).collect();
        for (k, x) in xs.iter().enumerate() {
            assert!((x - k as f32 * 0.5).abs() < 1e-5, "{xs:?}");
            assert_eq!(out[k].index, k as u64);
            assert!((out[k].timestamp_secs - (1.0 + k as f64 / 30.0)).abs() < 1e-9);
        }
    }

    #[test]
    fn an_absurd_timestamp_is_ignored_without_overflow_or_a_flood_of_frames() {
        let mut r = Resampler::new(15.0, 30.0);
        let mut out: Vec<Frame> =
            (0..8).flat_map(|i| r.push(frame(i, i as f64 / 15.0, 0.0))).collect();
        assert_eq!(out.len(), 15);
        for t in [1e24, f64::MAX, 2e11] {
            assert!(r.push(frame(8, t, 0.0)).is_empty(), "{t}");
        }
        // The stream goes on where it was.
        out.extend(r.push(frame(9, 8.0 / 15.0, 0.0)));
        assert_eq!(out.len(), 17);
        assert_eq!(out.last().map(|f| f.index), Some(16));
        // Huge absolute times (a sender's clock): resampled within the bound, never a flood.
        let mut r = Resampler::new(15.0, 30.0);
        let t0 = 3e14;
        let n: usize = (0..30).map(|i| r.push(frame(i, t0 + i as f64 / 15.0, 0.0)).len()).sum();
        assert!(n <= 30 * 10, "{n}");
    }

    #[test]
    fn sixty_fps_halves_and_same_rate_passes_through() {
        let mut r = Resampler::new(60.0, 30.0);
        let n: usize = (0..60).map(|i| r.push(frame(i, i as f64 / 60.0, 0.0)).len()).sum();
        assert_eq!(n, 30);
        let mut same = Resampler::new(29.0, 30.0);
        assert!(same.is_passthrough());
        let f = frame(7, 0.3, 1.0);
        assert_eq!(same.push(f.clone()), vec![f]);
    }

    #[test]
    fn gaps_are_not_filled() {
        let mut r = Resampler::new(15.0, 30.0);
        let mut out = r.push(frame(0, 0.0, 0.0));
        out.extend(r.push(frame(1, 1.0, 1.0)));
        assert_eq!(out.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 30]);
    }

    #[test]
    fn the_adapter_resamples_a_15_fps_stream_and_keeps_its_end() {
        let rec = Recording {
            name: "r".into(),
            source_layout: Layout::KinectV2_25,
            fps: 15.0,
            frames: (0..20).map(|i| frame(i, i as f64 / 15.0, i as f32)).collect(),
            intervals: None,
        };
        let source =
            crate::source::ReplaySource::new(rec, crate::source::Pacing::AsFastAsPossible).unwrap();
        let mut adapter = RateAdapter::new(source, 30.0);
        let mut frames = 0;
        let mut ended = 0;
        loop {
            match adapter.next_event(std::time::Duration::from_secs(1)) {
                SourcePoll::Event(SourceEvent::Frame { .. }) => frames += 1,
                SourcePoll::Event(SourceEvent::Ended { .. }) => ended += 1,
                SourcePoll::Timeout => {}
                SourcePoll::Finished => break,
            }
        }
        assert_eq!((frames, ended), (39, 1));
    }

    #[test]
    fn a_stream_with_dropped_frames_gets_the_frames_its_recording_gets() {
        // UTKinect-like: frame numbers at 30 fps stepping by 2 to 8 (a 7.5 fps median interval).
        // Live, the adapter must take it at 30 fps with gaps, as the batch path reads the take.
        let steps = [4u64, 4, 2, 6, 4, 8, 4, 4, 2, 4, 30, 4, 6, 4];
        let indices: Vec<u64> = std::iter::once(0)
            .chain(steps.iter().scan(0, |i, s| {
                *i += s;
                Some(*i)
            }))
            .collect();
        let frames: Vec<Frame> =
            indices.iter().map(|&i| frame(i, i as f64 / 30.0, i as f32)).collect();
        assert!((estimate_fps(&frames[..RATE_PROBE_FRAMES]).unwrap() - 30.0).abs() < 1e-9);
        let rec = Recording {
            name: "r".into(),
            source_layout: Layout::KinectV1_20,
            fps: 30.0,
            frames: frames.clone(),
            intervals: None,
        };
        let batch = resample_recording(&rec, 30.0).into_owned().frames;
        let source =
            crate::source::ReplaySource::new(rec, crate::source::Pacing::AsFastAsPossible).unwrap();
        let mut adapter = RateAdapter::new(source, 30.0);
        let mut live = Vec::new();
        loop {
            match adapter.next_event(std::time::Duration::from_secs(1)) {
                SourcePoll::Event(SourceEvent::Frame { frame, .. }) => live.push(frame),
                SourcePoll::Finished => break,
                _ => {}
            }
        }
        assert_eq!(live, batch);
        assert_eq!(live, frames);
        // A counter index (one step per frame) keeps the plain median interval: 15 fps.
        let counted: Vec<Frame> = (0..8).map(|i| frame(i, i as f64 / 15.0, 0.0)).collect();
        assert!((estimate_fps(&counted).unwrap() - 15.0).abs() < 1e-9);
    }

    #[test]
    fn recordings_keep_their_labels_in_time() {
        let rec = Recording {
            name: "r".into(),
            source_layout: Layout::Mediapipe33,
            fps: 15.0,
            frames: (0..30).map(|i| frame(i, i as f64 / 15.0, 0.0)).collect(),
            intervals: Some(vec![Interval { class: 2, start: 10, end: 19 }]),
        };
        let out = resample_recording(&rec, 30.0);
        assert_eq!(out.frames.len(), 59);
        assert_eq!(out.fps, 30.0);
        assert_eq!(out.intervals, Some(vec![Interval { class: 2, start: 20, end: 39 }]));
    }

    #[test]
    fn grid_values_go_back_to_the_recorded_frames() {
        // A 15 fps recording on the 30 fps grid and back: each recorded frame gets the value of
        // the grid frame at its own time, so labels survive the round trip exactly.
        let rec = Recording {
            name: "r".into(),
            source_layout: Layout::Mediapipe33,
            fps: 15.0,
            frames: (0..30).map(|i| frame(i, 2.0 + i as f64 / 15.0, 0.0)).collect(),
            intervals: Some(vec![Interval { class: 2, start: 10, end: 19 }]),
        };
        let grid = resample_recording(&rec, 30.0);
        let on_grid = grid.frame_labels().unwrap();
        let grid_times: Vec<f64> = grid.frames.iter().map(|f| f.timestamp_secs).collect();
        let times: Vec<f64> = rec.frames.iter().map(|f| f.timestamp_secs).collect();
        let back = to_source_frames(&grid_times, &on_grid, &times);
        assert_eq!(back, rec.frame_labels().unwrap());
        // 60 fps: two recorded frames per grid frame; one halfway between takes the earlier.
        let back = to_source_frames(&[0.0, 1.0 / 30.0], &[7, 9], &[0.0, 1.0 / 60.0, 2.0 / 60.0]);
        assert_eq!(back, [7, 7, 9]);
        assert!(to_source_frames::<u8>(&[], &[], &[0.0]).is_empty());
    }
}
