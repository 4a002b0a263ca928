//! Stable online segments from finalised per-frame probabilities, by one of two rules
//! ([`SegmentRule`]).
//!
//! **Candidate** (the default). A candidate label takes over from the current segment only when
//! it is backed by a boundary peak (and has held for a few frames), or when it has held for a
//! minimum length with a mean probability of at least θ (OnlineTAS-style post-processing;
//! O-TALC's per-class cut-offs).
//! The committed boundary is back-dated to where the candidate began, so segment boundaries stay
//! accurate while emission waits. Committed segments are never retracted: frames of a candidate
//! that does not make it are absorbed into the current segment.
//!
//! The opening of a stream follows the same rules: until a first label earns its place, the
//! stream is undecided and no segment is open. The first committed segment is back-dated to the
//! stream's first frame, so it also takes the undecided frames before its label began (nothing
//! precedes it to absorb them). A stream that ends undecided is committed whole, with its most
//! frequent label. Either way the committed segments tile the stream.
//!
//! **Majority** (ASRF's refinement, made causal). Boundary peaks cut the stream into pieces and
//! a piece takes its most frequent label, as offline evaluation does; a piece's label is decided
//! as soon as its leading label has held its minimum length with a mean probability of at least θ
//! and covers at least half of the piece so far (else when the next peak closes the piece).
//! Without a peak, a label takes over only after `peakless_factor` × its minimum length. Frames
//! are processed one frame late, once whether they are a peak is known, so a peak's frame opens
//! the new piece. With the PKU-MMD model it gained 8.2 F1@50 points over the candidate rule on
//! validation but 0.5 on test, for about 14 frames more emission delay (BENCHMARKS.md).
//!
//! Boundary peaks are ASRF's ([`is_boundary_peak`]): local
//! maxima of the boundary probability at or above the threshold. Whether a frame is a local
//! maximum is known only once the next finalised frame is, so a peak counts from the push after
//! its frame on; labels are not held back for it. The first frame of a stream is never a peak
//! (ASRF's convention of a peak at frame 0 would back whatever label opens the stream).

mod config;

use serde::Serialize;

pub use config::{SegmentRule, SegmenterChoices, SegmenterConfig};

use crate::postprocess::is_boundary_peak;

/// One finalised frame as the segmenter sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FinalFrame {
    /// Frame index in its stream.
    pub index: u64,
    /// Sensor time in seconds.
    pub timestamp_secs: f64,
    /// Class probabilities (softmax), one per class.
    pub probs: Vec<f32>,
    /// Boundary probability.
    pub boundary_prob: f32,
    /// Whether any body was in the frame.
    pub present: bool,
}

/// A segment boundary event in frame terms (the stream layer adds stream and label names).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) enum SegmenterOutput {
    /// A segment of `class` began at `start`.
    Started {
        /// Class id.
        class: usize,
        /// First frame index.
        start: u64,
        /// Time of the first frame.
        start_secs: f64,
    },
    /// A segment closed; it will never change.
    Ended {
        /// Class id.
        class: usize,
        /// First frame index.
        start: u64,
        /// Last frame index (inclusive).
        end: u64,
        /// Time of the first frame.
        start_secs: f64,
        /// Time of the last frame.
        end_secs: f64,
        /// Mean probability of `class` over the segment's frames.
        confidence: f32,
    },
    /// A finalised frame (only with `per_frame`).
    Frame {
        /// Frame index.
        index: u64,
        /// Argmax class of this frame.
        class: usize,
        /// Its probability.
        prob: f32,
        /// Boundary probability.
        boundary_prob: f32,
        /// Class of the open segment after this frame; `None` while the stream is undecided.
        segment_class: Option<usize>,
    },
}

#[derive(Clone, Debug)]
struct Run {
    class: usize,
    start: u64,
    start_secs: f64,
    end: u64,
    end_secs: f64,
    /// Sum of the run's class probability over the frames whose argmax was that class.
    prob_sum: f64,
    /// Frames whose argmax was the run's class (absorbed noise frames are not counted).
    support: usize,
    boundary_backed: bool,
}

impl Run {
    fn new(class: usize, f: &FinalFrame, prob: f32, boundary_backed: bool) -> Self {
        Run {
            class,
            start: f.index,
            start_secs: f.timestamp_secs,
            end: f.index,
            end_secs: f.timestamp_secs,
            prob_sum: f64::from(prob),
            support: 1,
            boundary_backed,
        }
    }

    fn extend(&mut self, f: &FinalFrame, prob: f32) {
        self.end = f.index;
        self.end_secs = f.timestamp_secs;
        self.prob_sum += f64::from(prob);
        self.support += 1;
    }

    /// Takes over the extent of a candidate that did not make it.
    fn absorb(&mut self, other: &Run) {
        self.end = other.end;
        self.end_secs = other.end_secs;
    }

    fn mean_prob(&self) -> f32 {
        (self.prob_sum / self.support.max(1) as f64) as f32
    }
}

/// Frames whose label is not decided yet: the opening of a stream (both rules) and, under
/// [`SegmentRule::Majority`], the piece since the latest boundary peak.
#[derive(Clone, Debug)]
struct Piece {
    start: u64,
    start_secs: f64,
    end: u64,
    end_secs: f64,
    /// Frames added.
    frames: usize,
    /// Per class id: frames whose argmax it was, and the sum of its probability over them.
    tally: Vec<(usize, f64)>,
}

impl Piece {
    fn new(f: &FinalFrame) -> Self {
        Piece {
            start: f.index,
            start_secs: f.timestamp_secs,
            end: f.index,
            end_secs: f.timestamp_secs,
            frames: 0,
            tally: Vec::new(),
        }
    }

    fn add(&mut self, f: &FinalFrame, class: usize, prob: f32) {
        self.end = f.index;
        self.end_secs = f.timestamp_secs;
        self.frames += 1;
        if self.tally.len() <= class {
            self.tally.resize(class + 1, (0, 0.0));
        }
        self.tally[class].0 += 1;
        self.tally[class].1 += f64::from(prob);
    }

    /// The most frequent class; ties go to the larger summed probability, then the smaller id.
    fn majority(&self) -> usize {
        let mut best = 0;
        for (class, &(n, sum)) in self.tally.iter().enumerate() {
            let (best_n, best_sum) = self.tally[best];
            if n > best_n || (n == best_n && sum > best_sum) {
                best = class;
            }
        }
        best
    }

    /// The majority class when it has earned the piece early ([`SegmentRule::Majority`]): held
    /// its minimum length with mean probability ≥ θ, on at least half of the piece's frames.
    fn early_decision(&self, cfg: &SegmenterConfig) -> Option<usize> {
        let class = self.majority();
        let (n, sum) = self.tally.get(class).copied()?;
        let earned = n >= cfg.min_frames_for(class)
            && sum / n as f64 >= f64::from(cfg.min_mean_prob)
            && 2 * n >= self.frames;
        earned.then_some(class)
    }

    /// The whole piece as a segment of `class`; every frame of that label supports it.
    fn into_run(self, class: usize) -> Run {
        let (support, prob_sum) = self.tally.get(class).copied().unwrap_or_default();
        Run {
            class,
            start: self.start,
            start_secs: self.start_secs,
            end: self.end,
            end_secs: self.end_secs,
            prob_sum,
            support,
            boundary_backed: false,
        }
    }
}

/// The online segmenter of one stream. Feed it finalised frames in order.
#[derive(Clone, Debug)]
pub(crate) struct Segmenter {
    cfg: SegmenterConfig,
    current: Option<Run>,
    candidate: Option<Run>,
    /// Frames not decided yet: before the first commit (both rules), and the piece since the
    /// latest peak until its label is decided ([`SegmentRule::Majority`]).
    undecided: Option<Piece>,
    /// [`SegmentRule::Majority`]: the latest frame, processed once the next one tells whether
    /// it is a boundary peak.
    held_back: Option<FinalFrame>,
    /// Boundary probabilities of the two latest frames (older first) and the latest's index:
    /// the latest becomes a peak, or not, when the next frame arrives.
    recent_boundary: (Option<f32>, Option<(f32, u64)>),
    /// Frame index of the latest boundary peak seen.
    last_peak: Option<u64>,
    /// Consecutive frames without a body.
    absent_frames: usize,
}

impl Segmenter {
    /// A segmenter with no open segment.
    pub fn new(cfg: SegmenterConfig) -> Self {
        Segmenter {
            cfg,
            current: None,
            candidate: None,
            undecided: None,
            held_back: None,
            recent_boundary: (None, None),
            last_peak: None,
            absent_frames: 0,
        }
    }

    /// Class of the open segment, if any (none before the first commit).
    pub fn current_class(&self) -> Option<usize> {
        self.current.as_ref().map(|r| r.class)
    }

    /// Takes one finalised frame; returns the events it causes, in order. Under
    /// [`SegmentRule::Majority`] they are the previous frame's: a frame is processed when the
    /// next one arrives (or at [`Segmenter::flush`]).
    pub fn push(&mut self, frame: &FinalFrame) -> Vec<SegmenterOutput> {
        self.absent_frames = if frame.present { 0 } else { self.absent_frames + 1 };
        let timeout = self.cfg.person_timeout_frames;
        if timeout > 0 && self.absent_frames >= timeout {
            // Nobody has been there for a while: close what is open, then wait for someone.
            return if self.absent_frames == timeout { self.close() } else { Vec::new() };
        }
        let mut out = Vec::new();
        self.observe_boundary(frame);
        match self.cfg.rule {
            SegmentRule::Candidate => self.push_candidate_rule(frame, &mut out),
            SegmentRule::Majority => {
                if let Some(previous) = self.held_back.replace(frame.clone()) {
                    let peak = self.last_peak == Some(previous.index);
                    self.push_majority_rule(&previous, peak, &mut out);
                }
            }
        }
        out
    }

    fn push_candidate_rule(&mut self, frame: &FinalFrame, out: &mut Vec<SegmenterOutput>) {
        let (class, prob) = argmax(&frame.probs);
        match self.current.as_mut() {
            Some(current) if current.class == class => {
                // The current label came back: a pending candidate was noise and its frames
                // belong to the current segment.
                if let Some(c) = self.candidate.take() {
                    current.absorb(&c);
                }
                current.extend(frame, prob);
            }
            // Another label, or no segment yet: the frame feeds a candidate.
            _ => {
                if self.current.is_none() {
                    self.undecided.get_or_insert_with(|| Piece::new(frame)).add(frame, class, prob);
                }
                self.feed_candidate(frame, class, prob);
                if let Some(c) = self.candidate.as_mut() {
                    let near =
                        |peak: u64| peak.saturating_add(self.cfg.boundary_radius as u64) >= c.start;
                    c.boundary_backed = c.boundary_backed || self.last_peak.is_some_and(near);
                }
                if self.candidate_ready() {
                    self.commit_candidate(out);
                }
            }
        }
        self.frame_output(frame, class, prob, out);
    }

    /// `frame` is the one before the latest push; `peak` says whether it is a boundary peak.
    fn push_majority_rule(
        &mut self,
        frame: &FinalFrame,
        peak: bool,
        out: &mut Vec<SegmenterOutput>,
    ) {
        let (class, prob) = argmax(&frame.probs);
        if peak || (self.current.is_none() && self.undecided.is_none()) {
            // A peak closes the undecided piece (its majority wins) and opens a new one.
            self.decide_undecided(out);
            if let (Some(c), Some(current)) = (self.candidate.take(), self.current.as_mut()) {
                current.absorb(&c);
            }
            self.undecided = Some(Piece::new(frame));
        }
        if let Some(piece) = self.undecided.as_mut() {
            piece.add(frame, class, prob);
            if let Some(winner) = piece.early_decision(&self.cfg) {
                self.decide(winner, out);
            }
        } else if let Some(current) = self.current.as_mut() {
            if current.class == class {
                if let Some(c) = self.candidate.take() {
                    current.absorb(&c);
                }
                current.extend(frame, prob);
            } else {
                // Without a peak, a new label needs `peakless_factor` × its minimum length.
                self.feed_candidate(frame, class, prob);
                let factor = f64::from(self.cfg.peakless_factor);
                let ready = self.candidate.as_ref().is_some_and(|c| {
                    let needed = (self.cfg.min_frames_for(c.class) as f64 * factor).ceil();
                    factor > 0.0
                        && c.support as f64 >= needed
                        && c.mean_prob() >= self.cfg.min_mean_prob
                });
                if ready {
                    self.commit_candidate(out);
                }
            }
        }
        self.frame_output(frame, class, prob, out);
    }

    /// Adds the frame to the candidate of its class, or starts one; a candidate of another
    /// class that did not make it joins the current segment (before the first commit its frames
    /// stay in the opening).
    fn feed_candidate(&mut self, frame: &FinalFrame, class: usize, prob: f32) {
        match self.candidate.as_mut() {
            Some(c) if c.class == class => c.extend(frame, prob),
            _ => {
                if let (Some(c), Some(cur)) = (self.candidate.take(), self.current.as_mut()) {
                    cur.absorb(&c);
                }
                self.candidate = Some(Run::new(class, frame, prob, false));
            }
        }
    }

    fn frame_output(
        &self,
        frame: &FinalFrame,
        class: usize,
        prob: f32,
        out: &mut Vec<SegmenterOutput>,
    ) {
        if self.cfg.per_frame {
            out.push(SegmenterOutput::Frame {
                index: frame.index,
                class,
                prob,
                boundary_prob: frame.boundary_prob,
                segment_class: self.current_class(),
            });
        }
    }

    /// Gives the undecided piece, if any, its majority label.
    fn decide_undecided(&mut self, out: &mut Vec<SegmenterOutput>) {
        if let Some(winner) = self.undecided.as_ref().map(Piece::majority) {
            self.decide(winner, out);
        }
    }

    /// Commits the undecided piece as `class`: it continues the current segment when that has
    /// the same label, else it ends the current segment and starts a new one at its first frame.
    fn decide(&mut self, class: usize, out: &mut Vec<SegmenterOutput>) {
        let Some(piece) = self.undecided.take() else { return };
        match self.current.as_mut() {
            Some(current) if current.class == class => {
                let (support, prob_sum) = piece.tally.get(class).copied().unwrap_or_default();
                current.end = piece.end;
                current.end_secs = piece.end_secs;
                current.support += support;
                current.prob_sum += prob_sum;
            }
            _ => {
                if let Some(current) = self.current.take() {
                    out.push(ended(&current));
                }
                let run = piece.into_run(class);
                out.push(started(&run));
                self.current = Some(run);
            }
        }
        self.candidate = None;
    }

    /// Closes the open segment (end of stream, disconnect, person timeout). A pending candidate
    /// that has not taken over is absorbed into it; an undecided piece takes its majority label
    /// (a stream still undecided is committed as one segment of its most frequent label). The
    /// segmenter starts afresh afterwards, as for a new stream.
    pub fn flush(&mut self) -> Vec<SegmenterOutput> {
        self.absent_frames = 0;
        self.close()
    }

    /// [`Segmenter::flush`] without forgetting how long nobody has been there: the person
    /// timeout closes the segment but keeps skipping the empty frames that follow.
    fn close(&mut self) -> Vec<SegmenterOutput> {
        let mut out = Vec::new();
        if let Some(last) = self.held_back.take() {
            // The last frame of a stream is never a peak.
            self.push_majority_rule(&last, false, &mut out);
        }
        if self.cfg.rule == SegmentRule::Majority || self.current.is_none() {
            self.decide_undecided(&mut out);
        }
        if let Some(mut current) = self.current.take() {
            if let Some(c) = self.candidate.take() {
                current.absorb(&c);
            }
            out.push(ended(&current));
        }
        self.candidate = None;
        self.undecided = None;
        self.recent_boundary = (None, None);
        self.last_peak = None;
        out
    }

    /// Records `frame`'s boundary probability and settles whether the frame before it was a
    /// peak, now that both of its neighbours are known.
    fn observe_boundary(&mut self, frame: &FinalFrame) {
        let (before, latest) = self.recent_boundary;
        // A threshold of 1 or more means no refinement; a saturated sigmoid can still reach 1.
        if self.cfg.boundary_threshold < 1.0
            && let (Some(before), Some((p, index))) = (before, latest)
            && is_boundary_peak(before, p, frame.boundary_prob, self.cfg.boundary_threshold)
        {
            self.last_peak = Some(index);
        }
        self.recent_boundary = (latest.map(|(p, _)| p), Some((frame.boundary_prob, frame.index)));
    }

    fn candidate_ready(&self) -> bool {
        let Some(c) = self.candidate.as_ref() else { return false };
        let backed = c.boundary_backed && c.support >= self.cfg.boundary_min_frames;
        let held = c.support >= self.cfg.min_frames_for(c.class)
            && c.mean_prob() >= self.cfg.min_mean_prob;
        backed || held
    }

    fn commit_candidate(&mut self, out: &mut Vec<SegmenterOutput>) {
        let Some(candidate) = self.candidate.take() else { return };
        let committed = match (self.current.take(), self.undecided.take()) {
            (Some(current), _) => {
                out.push(ended(&current));
                candidate
            }
            // The first segment starts with the stream: it takes the undecided frames before
            // its label began.
            (None, Some(opening)) => opening.into_run(candidate.class),
            (None, None) => candidate,
        };
        out.push(started(&committed));
        self.current = Some(committed);
    }
}

fn started(run: &Run) -> SegmenterOutput {
    SegmenterOutput::Started { class: run.class, start: run.start, start_secs: run.start_secs }
}

fn ended(run: &Run) -> SegmenterOutput {
    SegmenterOutput::Ended {
        class: run.class,
        start: run.start,
        end: run.end,
        start_secs: run.start_secs,
        end_secs: run.end_secs,
        confidence: run.mean_prob(),
    }
}

/// The most probable class and its probability. NaN entries are ignored and values are clamped
/// to 0..=1, so a frame without any usable probability (none, or all NaN) is class 0 with
/// probability 0: it still takes its place in the segments, and confidences stay finite.
fn argmax(probs: &[f32]) -> (usize, f32) {
    probs
        .iter()
        .map(|p| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) })
        .enumerate()
        .fold((0, 0.0), |best, (i, p)| if p > best.1 { (i, p) } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames from a label sequence: the labelled class gets `p`, the rest share what is left.
    fn frames(labels: &[usize], p: f32, peaks: &[u64]) -> Vec<FinalFrame> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let mut probs = vec![(1.0 - p) / 2.0; 3];
                probs[l] = p;
                FinalFrame {
                    index: i as u64,
                    timestamp_secs: i as f64 / 30.0,
                    probs,
                    boundary_prob: if peaks.contains(&(i as u64)) { 0.9 } else { 0.0 },
                    present: true,
                }
            })
            .collect()
    }

    fn run(cfg: SegmenterConfig, frames: &[FinalFrame]) -> Vec<SegmenterOutput> {
        let mut seg = Segmenter::new(cfg);
        let mut out: Vec<_> = frames.iter().flat_map(|f| seg.push(f)).collect();
        out.extend(seg.flush());
        out
    }

    fn ended(out: &[SegmenterOutput]) -> Vec<(usize, u64, u64)> {
        out.iter()
            .filter_map(|e| match *e {
                SegmenterOutput::Ended { class, start, end, .. } => Some((class, start, end)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_held_label_takes_over_with_a_back_dated_boundary() {
        let cfg = SegmenterConfig { min_frames: 5, ..SegmenterConfig::default() };
        let labels: Vec<usize> = [vec![0; 10], vec![1; 10]].concat();
        let out = run(cfg, &frames(&labels, 0.8, &[]));
        assert_eq!(ended(&out), vec![(0, 0, 9), (1, 10, 19)]);
        // The switch is emitted when the candidate has held for 5 frames, i.e. while pushing
        // frame 14, but it is dated at frame 10.
        let mut seg =
            Segmenter::new(SegmenterConfig { min_frames: 5, ..SegmenterConfig::default() });
        let f = frames(&labels, 0.8, &[]);
        for frame in &f[..14] {
            assert!(ended(&seg.push(frame)).is_empty());
        }
        assert_eq!(ended(&seg.push(&f[14])), vec![(0, 0, 9)]);
    }

    #[test]
    fn short_noise_is_absorbed_and_never_emitted() {
        let cfg = SegmenterConfig { min_frames: 5, ..SegmenterConfig::default() };
        let labels: Vec<usize> =
            [vec![0; 10], vec![2; 3], vec![0; 10], vec![1; 2], vec![0; 5]].concat();
        let out = run(cfg, &frames(&labels, 0.9, &[]));
        assert_eq!(ended(&out), vec![(0, 0, 29)]);
    }

    #[test]
    fn low_confidence_candidates_do_not_take_over() {
        let cfg =
            SegmenterConfig { min_frames: 5, min_mean_prob: 0.7, ..SegmenterConfig::default() };
        let mut f = frames(&[vec![0; 10], vec![1; 10]].concat(), 0.9, &[]);
        for frame in &mut f[10..] {
            frame.probs = vec![0.3, 0.4, 0.3];
        }
        assert_eq!(ended(&run(cfg, &f)), vec![(0, 0, 19)]);
    }

    #[test]
    fn a_boundary_peak_lets_a_short_candidate_take_over_early() {
        let cfg = SegmenterConfig {
            min_frames: 50,
            min_frames_per_class: vec![5, 50, 50],
            boundary_min_frames: 3,
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![0; 10], vec![1; 6]].concat();
        let out = run(cfg.clone(), &frames(&labels, 0.8, &[9]));
        assert_eq!(ended(&out), vec![(0, 0, 9), (1, 10, 15)]);
        // Without the peak the same candidate is absorbed.
        assert_eq!(ended(&run(cfg, &frames(&labels, 0.8, &[]))), vec![(0, 0, 15)]);
    }

    #[test]
    fn per_class_minimum_lengths_override_the_default() {
        let cfg = SegmenterConfig {
            min_frames: 3,
            min_frames_per_class: vec![3, 8, 3],
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![0; 10], vec![1; 6], vec![0; 4], vec![2; 4]].concat();
        assert_eq!(ended(&run(cfg, &frames(&labels, 0.9, &[]))), vec![(0, 0, 19), (2, 20, 23)]);
    }

    #[test]
    fn a_person_timeout_closes_the_segment_and_a_return_opens_a_new_one() {
        let cfg = SegmenterConfig { person_timeout_frames: 5, ..SegmenterConfig::default() };
        let mut f = frames(&[vec![1; 10], vec![0; 8], vec![1; 6]].concat(), 0.9, &[]);
        for frame in &mut f[10..18] {
            frame.present = false;
        }
        let out = run(cfg, &f);
        // Frames 10..13 (absent, before the timeout) still belong to the open segment, which
        // closes at the timeout; the person's return starts a new one.
        assert_eq!(ended(&out), vec![(1, 0, 13), (1, 18, 23)]);
    }

    #[test]
    fn flush_starts_afresh_after_a_stream_that_ended_alone() {
        // A stream ends long after its person left; the next stream on the same segmenter
        // begins without a body for 3 frames. Those frames are its own, not more of the old
        // absence: its first segment starts at frame 0.
        let cfg = SegmenterConfig { person_timeout_frames: 5, ..SegmenterConfig::default() };
        let mut first = frames(&[vec![1; 10], vec![0; 6]].concat(), 0.9, &[]);
        for frame in &mut first[10..] {
            frame.present = false;
        }
        let mut seg = Segmenter::new(cfg);
        for frame in &first {
            seg.push(frame);
        }
        seg.flush();
        let mut second = frames(&[vec![2; 3], vec![2; 20]].concat(), 0.9, &[]);
        for frame in &mut second[..3] {
            frame.present = false;
        }
        let mut out = Vec::new();
        for frame in &second {
            out.extend(seg.push(frame));
        }
        out.extend(seg.flush());
        assert_eq!(ended(&out), vec![(2, 0, 22)]);
    }

    #[test]
    fn only_local_maxima_of_the_boundary_probability_are_peaks() {
        // Class 1 needs 50 frames unless a peak backs it. A peak at frame 8 decays slowly and
        // stays above the threshold up to frame 17; the candidate begins at frame 16. Only frame
        // 8 is a local maximum, and it lies too far back (radius 4) to back the candidate.
        let cfg = SegmenterConfig {
            min_frames: 50,
            min_frames_per_class: vec![5, 50, 50],
            boundary_min_frames: 3,
            boundary_radius: 4,
            boundary_threshold: 0.5,
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![0; 16], vec![1; 5], vec![0; 5]].concat();
        let mut f = frames(&labels, 0.9, &[8]);
        for (t, frame) in f.iter_mut().enumerate().take(18).skip(9) {
            frame.boundary_prob = 0.85 - 0.04 * (t - 9) as f32;
        }
        assert_eq!(ended(&run(cfg.clone(), &f)), vec![(0, 0, 25)]);
        // A local maximum at the candidate's start does back it.
        f[16].boundary_prob = 0.95;
        assert_eq!(ended(&run(cfg, &f)), vec![(0, 0, 15), (1, 16, 20), (0, 21, 25)]);
    }

    #[test]
    fn a_boundary_threshold_of_one_turns_peaks_off() {
        // 1.0 is what validation picks when plain argmax beats refinement; a saturated sigmoid
        // can still reach exactly 1.0, which must not count as a peak.
        let cfg = SegmenterConfig {
            min_frames: 50,
            min_frames_per_class: vec![5, 50, 50],
            boundary_min_frames: 3,
            boundary_threshold: 1.0,
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![0; 10], vec![1; 6]].concat();
        let mut f = frames(&labels, 0.8, &[]);
        f[10].boundary_prob = 1.0;
        assert_eq!(ended(&run(cfg, &f)), vec![(0, 0, 15)]);
    }

    #[test]
    fn a_peak_counts_once_the_frame_after_it_is_known() {
        let cfg = SegmenterConfig {
            min_frames: 50,
            min_frames_per_class: vec![5, 50, 50],
            boundary_min_frames: 1,
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![0; 10], vec![1; 6]].concat();
        let f = frames(&labels, 0.8, &[10]);
        let mut seg = Segmenter::new(cfg);
        for frame in &f[..11] {
            assert!(ended(&seg.push(frame)).is_empty(), "frame {}", frame.index);
        }
        // Frame 10 is a local maximum only once frame 11 is known.
        assert_eq!(ended(&seg.push(&f[11])), vec![(0, 0, 9)]);
    }

    /// 15-class frames: `(class, prob)` per frame, the rest share what is left.
    fn frames_of(spec: &[(usize, f32)]) -> Vec<FinalFrame> {
        spec.iter()
            .enumerate()
            .map(|(i, &(class, p))| {
                let mut probs = vec![(1.0 - p) / 14.0; 15];
                probs[class] = p;
                FinalFrame {
                    index: i as u64,
                    timestamp_secs: i as f64 / 30.0,
                    probs,
                    boundary_prob: 0.0,
                    present: true,
                }
            })
            .collect()
    }

    #[test]
    fn the_opening_label_needs_the_same_evidence_as_any_other() {
        // Two frames of class 7 at 0.15 (the argmax, barely), then a long confident class 0:
        // class 7 never earns a segment, and the first segment covers frames 0 and 1 too.
        let spec: Vec<(usize, f32)> = [vec![(7, 0.15); 2], vec![(0, 0.9); 30]].concat();
        let out = run(SegmenterConfig::default(), &frames_of(&spec));
        assert_eq!(ended(&out), vec![(0, 0, 31)]);
        assert_eq!(
            out.first(),
            Some(&SegmenterOutput::Started { class: 0, start: 0, start_secs: 0.0 })
        );
        // The two opening frames are not support: the confidence is class 0's mean.
        let confidence = out.iter().find_map(|e| match *e {
            SegmenterOutput::Ended { confidence, .. } => Some(confidence),
            _ => None,
        });
        assert!(confidence.is_some_and(|c| (c - 0.9).abs() < 1e-6), "{confidence:?}");
    }

    #[test]
    fn a_stream_too_short_to_decide_is_committed_whole_with_its_majority_label() {
        let labels: Vec<usize> = [vec![1; 3], vec![2; 6], vec![1; 2]].concat();
        let out = run(SegmenterConfig::default(), &frames(&labels, 0.9, &[]));
        assert_eq!(ended(&out), vec![(2, 0, 10)]);
        let started = out.iter().filter(|e| matches!(e, SegmenterOutput::Started { .. })).count();
        assert_eq!(started, 1);
    }

    #[test]
    fn a_boundary_peak_can_open_the_stream() {
        let cfg = SegmenterConfig {
            min_frames: 50,
            boundary_min_frames: 3,
            ..SegmenterConfig::default()
        };
        let labels: Vec<usize> = [vec![2; 2], vec![1; 6]].concat();
        let out = run(cfg, &frames(&labels, 0.8, &[2]));
        assert_eq!(out[0], SegmenterOutput::Started { class: 1, start: 0, start_secs: 0.0 });
        assert_eq!(ended(&out), vec![(1, 0, 7)]);
    }

    fn majority(min_frames: usize) -> SegmenterConfig {
        SegmenterConfig {
            rule: SegmentRule::Majority,
            min_frames,
            boundary_threshold: 0.5,
            ..SegmenterConfig::default()
        }
    }

    #[test]
    fn majority_rule_gives_each_piece_between_peaks_its_majority_label() {
        // A hesitant transition after the peak at 10 (2, 1, 2, then 1 for good): the candidate
        // rule lets the peak back class 2 after 3 frames, and class 1 follows once it has held
        // 6 frames; the majority rule waits until class 1 has held 6 frames on most of the
        // piece, and dates it at the peak.
        let labels: Vec<usize> = [vec![0; 10], vec![2, 2, 2, 1, 1, 2], vec![1; 14]].concat();
        let f = frames(&labels, 0.9, &[10]);
        let candidate = SegmenterConfig {
            min_frames: 6,
            boundary_min_frames: 3,
            boundary_threshold: 0.5,
            ..SegmenterConfig::default()
        };
        assert_eq!(ended(&run(candidate, &f)), vec![(0, 0, 9), (2, 10, 15), (1, 16, 29)]);
        assert_eq!(ended(&run(majority(6), &f)), vec![(0, 0, 9), (1, 10, 29)]);
        // A piece closed by the next peak before any label earned it takes its majority (here
        // class 2: 4 of 6 frames, below the 6 frames it needs).
        let labels: Vec<usize> = [vec![0; 10], vec![2, 2, 1, 2, 2, 1], vec![0; 10]].concat();
        let out = run(majority(6), &frames(&labels, 0.9, &[10, 16]));
        assert_eq!(ended(&out), vec![(0, 0, 9), (2, 10, 15), (0, 16, 25)]);
    }

    #[test]
    fn majority_rule_decides_as_soon_as_the_evidence_is_in_and_dates_it_at_the_peak() {
        let labels: Vec<usize> = [vec![0; 10], vec![1; 20]].concat();
        let f = frames(&labels, 0.9, &[10]);
        let mut seg = Segmenter::new(majority(5));
        // Frame t is processed when t + 1 arrives: class 1 has 5 frames (10..=14) when frame
        // 15 is pushed, and the segment it starts is dated at the peak.
        for frame in &f[..15] {
            assert_eq!(ended(&seg.push(frame)), vec![], "frame {}", frame.index);
        }
        let out = seg.push(&f[15]);
        assert_eq!(ended(&out), vec![(0, 0, 9)]);
        assert!(out.contains(&SegmenterOutput::Started {
            class: 1,
            start: 10,
            start_secs: 10.0 / 30.0
        }));
    }

    #[test]
    fn majority_rule_switches_without_a_peak_only_after_the_peakless_length() {
        let labels: Vec<usize> = [vec![0; 10], vec![1; 12], vec![0; 10]].concat();
        // Class 1 holds 12 frames without a peak: less than 4 × 4 frames, so it is absorbed …
        let out = run(majority(4), &frames(&labels, 0.9, &[]));
        assert_eq!(ended(&out), vec![(0, 0, 31)]);
        // … but more than 2 × 4, so with factor 2 it takes over; factor 0 never switches.
        let cfg = SegmenterConfig { peakless_factor: 2.0, ..majority(4) };
        assert_eq!(
            ended(&run(cfg, &frames(&labels, 0.9, &[]))),
            vec![(0, 0, 9), (1, 10, 21), (0, 22, 31)]
        );
        let cfg = SegmenterConfig { peakless_factor: 0.0, ..majority(4) };
        let long: Vec<usize> = [vec![0; 10], vec![1; 200]].concat();
        assert_eq!(ended(&run(cfg, &frames(&long, 0.9, &[]))), vec![(0, 0, 209)]);
    }

    #[test]
    fn majority_rule_commits_the_last_frame_and_the_person_timeout() {
        // The held-back last frame is processed at flush; a timeout flushes what is open.
        let cfg = SegmenterConfig { person_timeout_frames: 5, ..majority(3) };
        let mut f = frames(&[vec![1; 10], vec![0; 8], vec![1; 6]].concat(), 0.9, &[]);
        for frame in &mut f[10..18] {
            frame.present = false;
        }
        assert_eq!(ended(&run(cfg, &f)), vec![(1, 0, 13), (1, 18, 23)]);
        assert_eq!(ended(&run(majority(3), &f[..1])), vec![(1, 0, 0)]);
    }

    #[test]
    fn committed_segments_tile_any_stream() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for _ in 0..300 {
            let cfg = SegmenterConfig {
                min_frames: rng.gen_range(1..20),
                boundary_min_frames: rng.gen_range(1..6),
                boundary_threshold: rng.gen_range(0.3..1.1),
                min_mean_prob: rng.gen_range(0.3..0.9),
                rule: if rng.gen_bool(0.5) {
                    SegmentRule::Majority
                } else {
                    SegmentRule::Candidate
                },
                peakless_factor: rng.gen_range(0.0..6.0),
                ..SegmenterConfig::default()
            };
            let mut f = Vec::new();
            while f.len() < rng.gen_range(1..300) {
                let class = rng.gen_range(0..3);
                for _ in 0..rng.gen_range(1..25) {
                    let p = rng.gen_range(0.34..1.0);
                    let mut probs = vec![(1.0 - p) / 2.0; 3];
                    probs[class] = p;
                    let index = f.len() as u64;
                    let boundary_prob = rng.gen_range(0.0..1.0);
                    f.push(FinalFrame {
                        index,
                        timestamp_secs: 0.0,
                        probs,
                        boundary_prob,
                        present: true,
                    });
                }
            }
            let out = run(cfg.clone(), &f);
            // Started and Ended alternate, pairwise for the same segment, and the segments
            // cover every frame once, in order.
            let mut open = None;
            let mut next_frame = 0;
            for o in &out {
                match *o {
                    SegmenterOutput::Started { class, start, .. } => {
                        assert!(open.is_none(), "{cfg:?}: {out:?}");
                        assert_eq!(start, next_frame, "{cfg:?}: {out:?}");
                        open = Some((class, start));
                    }
                    SegmenterOutput::Ended { class, start, end, .. } => {
                        assert_eq!(open.take(), Some((class, start)), "{cfg:?}: {out:?}");
                        assert!(end >= start);
                        next_frame = end + 1;
                    }
                    SegmenterOutput::Frame { .. } => {}
                }
            }
            assert!(open.is_none());
            assert_eq!(next_frame, f.len() as u64, "{cfg:?}: {out:?}");
        }
    }

    /// Adversarial frame sequences: labels flipping every frame, a boundary peak on every frame,
    /// NaN/∞/negative/empty probabilities, index gaps, absences through the person timeout
    /// with a candidate pending. The promises: segments are emitted once and never retracted
    /// (each `Ended` closes the `Started` before it, later segments start after it), never
    /// overlap, cover every frame the segmenter processed exactly once, and every confidence
    /// and per-frame probability is a finite number in 0..=1.
    #[test]
    fn segmenter_promises_hold_under_adversarial_inputs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for case in 0..2_000 {
            let classes = rng.gen_range(1..5);
            let cfg = SegmenterConfig {
                min_frames: rng.gen_range(1..15),
                min_frames_per_class: (0..rng.gen_range(0..classes + 1))
                    .map(|_| rng.gen_range(1..10))
                    .collect(),
                boundary_min_frames: rng.gen_range(1..5),
                boundary_threshold: rng.gen_range(0.0..1.2),
                boundary_radius: rng.gen_range(0..6),
                min_mean_prob: rng.gen_range(0.0..1.0),
                per_frame: rng.gen_bool(0.5),
                person_timeout_frames: rng.gen_range(0..8),
                rule: if rng.gen_bool(0.5) {
                    SegmentRule::Majority
                } else {
                    SegmentRule::Candidate
                },
                peakless_factor: rng.gen_range(0.0..6.0),
            };
            cfg.validate().expect("generated configs are valid");
            let flip_every_frame = rng.gen_bool(0.3);
            let peak_every_frame = rng.gen_bool(0.3);
            let mut index = rng.gen_range(0..1000_u64);
            let mut frames = Vec::new();
            for i in 0..rng.gen_range(1..200) {
                let class = if flip_every_frame { i % classes } else { rng.gen_range(0..classes) };
                let mut probs: Vec<f32> = (0..classes).map(|_| rng.gen_range(0.0..0.3)).collect();
                probs[class] = rng.gen_range(0.3..1.0);
                match rng.gen_range(0..12) {
                    0 => probs.fill(f32::NAN),
                    1 => probs.clear(),
                    2 => probs[class] = f32::NAN,
                    3 => probs[class] = f32::INFINITY,
                    4 => probs[class] = f32::NEG_INFINITY,
                    5 => probs[class] = -0.5,
                    _ => {}
                }
                let boundary_prob = match (peak_every_frame, rng.gen_range(0..8)) {
                    (true, _) => [0.95, 0.1][i % 2],
                    (false, 0) => f32::NAN,
                    (false, 1) => 0.99,
                    (false, _) => rng.gen_range(0.0..0.5),
                };
                // Index gaps (dropped frames) and absences long enough for the timeout.
                index += if rng.gen_bool(0.1) { rng.gen_range(2..10) } else { 1 };
                let present = !(rng.gen_bool(0.15) || (i / 20) % 5 == 4);
                frames.push(FinalFrame {
                    index,
                    timestamp_secs: index as f64 / 30.0,
                    probs,
                    boundary_prob,
                    present,
                });
            }
            let mut seg = Segmenter::new(cfg.clone());
            let mut out = Vec::new();
            let mut processed = Vec::new();
            let mut absent = 0;
            for f in &frames {
                absent = if f.present { 0 } else { absent + 1 };
                if cfg.person_timeout_frames == 0 || absent < cfg.person_timeout_frames {
                    processed.push(f.index);
                }
                out.extend(seg.push(f));
            }
            out.extend(seg.flush());
            let context = || format!("case {case}: {cfg:?}\n{out:?}");
            let mut open: Option<(usize, u64)> = None;
            let mut segments: Vec<(u64, u64)> = Vec::new();
            for o in &out {
                match *o {
                    SegmenterOutput::Started { class, start, .. } => {
                        assert!(open.is_none(), "{}", context());
                        if let Some(&(_, last_end)) = segments.last() {
                            assert!(start > last_end, "overlap/retraction: {}", context());
                        }
                        open = Some((class, start));
                    }
                    SegmenterOutput::Ended { class, start, end, confidence, .. } => {
                        assert_eq!(open.take(), Some((class, start)), "{}", context());
                        assert!(end >= start, "{}", context());
                        assert!(
                            confidence.is_finite() && (0.0..=1.0).contains(&confidence),
                            "confidence {confidence}: {}",
                            context()
                        );
                        segments.push((start, end));
                    }
                    SegmenterOutput::Frame { prob, .. } => {
                        assert!(prob.is_finite() && (0.0..=1.0).contains(&prob), "{}", context());
                    }
                }
            }
            assert!(open.is_none(), "{}", context());
            // Every processed frame lies in exactly one segment; every segment starts and ends
            // on processed frames.
            for &i in &processed {
                let n = segments.iter().filter(|&&(s, e)| s <= i && i <= e).count();
                assert_eq!(n, 1, "frame {i} in {n} segments: {}", context());
            }
            for &(s, e) in &segments {
                assert!(processed.contains(&s) && processed.contains(&e), "{}", context());
            }
        }
    }

    #[test]
    fn empty_or_nan_probabilities_give_finite_confidences() {
        let nan = FinalFrame {
            index: 0,
            timestamp_secs: 0.0,
            probs: vec![f32::NAN; 3],
            boundary_prob: f32::NAN,
            present: true,
        };
        let empty = FinalFrame { index: 1, probs: Vec::new(), ..nan.clone() };
        let out = run(SegmenterConfig::default(), &[nan, empty]);
        assert_eq!(
            out[1],
            SegmenterOutput::Ended {
                class: 0,
                start: 0,
                end: 1,
                start_secs: 0.0,
                end_secs: 0.0,
                confidence: 0.0
            }
        );
    }

    #[test]
    fn flush_closes_the_open_segment_and_covers_every_frame() {
        let labels: Vec<usize> = [vec![1; 7], vec![2; 2]].concat();
        let out = run(SegmenterConfig::default(), &frames(&labels, 0.9, &[]));
        assert_eq!(ended(&out), vec![(1, 0, 8)]);
        let started = out.iter().filter(|e| matches!(e, SegmenterOutput::Started { .. })).count();
        assert_eq!(started, 1);
    }
}
