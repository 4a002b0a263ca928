//! Online evaluation: a labelled recording is replayed frame by frame through
//! [`StreamSegmenter`] and the committed segments are scored like offline predictions, plus the
//! figures that only exist online: emission delay and over-segmentation.

use std::collections::HashMap;

use serde::Serialize;

use crate::Model;
use crate::error::Result;
use crate::io::Recording;
use crate::metrics::{MetricsAccumulator, Scores, Variant, percentile};
use crate::stream::segmenter::{FinalFrame, Segmenter, SegmenterOutput};
use crate::stream::{SegmentEvent, SegmenterConfig, StreamConfig, StreamSegmenter, VizTap};

/// A segment as committed by the streaming path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommittedSegment {
    /// Class id.
    pub class: usize,
    /// First frame position in the recording.
    pub start_frame: usize,
    /// Last frame position (inclusive).
    pub end_frame: usize,
    /// Mean class probability.
    pub confidence: f32,
    /// Position of the frame whose arrival made the segment's start known.
    pub started_at: usize,
}

/// The streaming path over one recording.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingRun {
    /// Recording name.
    pub name: String,
    /// Committed segments in order; together they cover every frame.
    pub segments: Vec<CommittedSegment>,
    /// Per-frame labels read off the segments.
    pub labels: Vec<usize>,
    /// Scores against the recording's labels, when it has them.
    pub scores: Option<Scores>,
}

/// Online figures over a set of recordings.
#[derive(Clone, Debug, Serialize)]
pub struct OnlineReport {
    /// Acc, Edit, F1@k of the committed segments.
    #[serde(flatten)]
    pub scores: Scores,
    /// Mean frames from a true boundary to the event that committed it, over the matched
    /// boundaries (each matched to the nearest committed start of its class, within half its
    /// segment's length or 15 frames; a committed segment matches at most one boundary).
    pub delay_mean_frames: f64,
    /// 95th percentile of the same.
    pub delay_p95_frames: f64,
    /// Share of true boundaries that were matched by a committed segment start.
    pub boundaries_matched: f64,
    /// Committed segments per ground-truth segment.
    pub overseg_ratio: f64,
    /// A diagnostic, not a streaming result: the stream's finalised frames (each frame's class
    /// and boundary probability as the stream saw them, with `lookahead` frames of future)
    /// segmented afterwards as offline evaluation does (ASRF refinement over the whole
    /// recording). Offline against this separates what the model loses by judging frames with
    /// little future; this against `scores` is what the causal segmenter's decisions cost.
    pub finalised_frames_refined: Scores,
    /// Window length used.
    pub window_frames: usize,
    /// Hop used.
    pub hop_frames: usize,
    /// Lookahead used.
    pub lookahead_frames: usize,
}

/// Streams one recording through a fresh [`StreamSegmenter`].
pub fn stream_recording(
    loaded: impl Into<Model>,
    rec: &Recording,
    cfg: &StreamConfig,
) -> Result<RecordingRun> {
    stream_recording_with(loaded, rec, cfg, VizTap::off())
}

/// Like [`stream_recording`], showing it through `viz` (with the ground truth, if any).
pub fn stream_recording_with(
    loaded: impl Into<Model>,
    rec: &Recording,
    cfg: &StreamConfig,
    viz: VizTap,
) -> Result<RecordingRun> {
    if let Some(intervals) = &rec.intervals {
        viz.ground_truth(&rec.name, intervals);
    }
    let mut seg = StreamSegmenter::builder(loaded)
        .stream(rec.name.as_str())
        .config(cfg.clone())
        .viz(viz)
        .build()?;
    run_one(&mut seg, rec)
}

/// Streams every recording (one after the other, sharing one model) and scores them.
pub fn evaluate_online(
    loaded: impl Into<Model>,
    recs: &[&Recording],
    cfg: &StreamConfig,
) -> Result<OnlineReport> {
    let mut reports = evaluate_segmenters(loaded, recs, cfg, std::slice::from_ref(&cfg.segmenter))?;
    Ok(reports.remove(0))
}

/// Like [`evaluate_online`] for several segmenter settings at once: the model runs once per
/// recording (with `cfg.engine`), and each setting in `segmenters` replays the same finalised
/// frames, so a grid of settings costs one model pass. Reports in the order of `segmenters`;
/// each equals what [`evaluate_online`] gives with that segmenter (`cfg.segmenter` is not used).
pub fn evaluate_segmenters(
    loaded: impl Into<Model>,
    recs: &[&Recording],
    cfg: &StreamConfig,
    segmenters: &[SegmenterConfig],
) -> Result<Vec<OnlineReport>> {
    for s in segmenters {
        s.validate()?;
    }
    let mut seg = StreamSegmenter::with_config(loaded, "eval", cfg.clone())?;
    let mut streams = Vec::with_capacity(recs.len());
    for rec in recs {
        streams.push(seg.finalise(&rec.frames)?);
    }
    segmenters.iter().map(|s| score_segmenter(recs, &streams, cfg, s)).collect()
}

/// Scores one segmenter setting over the finalised frames of every recording.
fn score_segmenter(
    recs: &[&Recording],
    streams: &[Vec<(FinalFrame, usize)>],
    cfg: &StreamConfig,
    segmenter: &SegmenterConfig,
) -> Result<OnlineReport> {
    let mut acc = MetricsAccumulator::new(Variant::Asrf, vec![0]);
    let mut refined_acc = MetricsAccumulator::new(Variant::Asrf, vec![0]);
    let mut delays = Vec::new();
    let (mut boundaries, mut pred_segments, mut gt_segments) = (0usize, 0usize, 0usize);
    for (rec, finals) in recs.iter().zip(streams) {
        let Some(gt) = rec.frame_labels() else { continue };
        let (run, finalised) = replay(rec, finals, segmenter);
        acc.add(&run.labels, &gt)?;
        refined_acc.add(&finalised.refined(segmenter.boundary_threshold), &gt)?;
        let gt_runs = label_runs(&gt);
        gt_segments += gt_runs.len();
        pred_segments += run.segments.len();
        let (matched, true_boundaries) = match_boundaries(&gt_runs, &run.segments);
        delays.extend(matched);
        boundaries += true_boundaries;
    }
    delays.sort_by(f64::total_cmp);
    let mean =
        if delays.is_empty() { f64::NAN } else { delays.iter().sum::<f64>() / delays.len() as f64 };
    Ok(OnlineReport {
        scores: acc.finish(),
        delay_mean_frames: mean,
        delay_p95_frames: percentile(&delays, 0.95),
        boundaries_matched: delays.len() as f64 / boundaries.max(1) as f64,
        overseg_ratio: pred_segments as f64 / gt_segments.max(1) as f64,
        finalised_frames_refined: refined_acc.finish(),
        window_frames: cfg.engine.window_frames,
        hop_frames: cfg.engine.hop_frames,
        lookahead_frames: cfg.engine.lookahead_frames,
    })
}

/// Emission delays of the true boundaries (the starts of `gt_runs` after the first) that a
/// committed segment matched, with the number of true boundaries. A boundary matches the
/// segment of its class whose start is nearest to it, within half its run's length (at least
/// 15 frames), and each segment matches at most one boundary (boundaries taken in time order):
/// otherwise an earlier segment of the class, started before the boundary, could count as
/// committing it with no delay. The delay is from the boundary to the frame whose arrival made
/// the segment's start known.
fn match_boundaries(
    gt_runs: &[(usize, usize, usize)],
    segments: &[CommittedSegment],
) -> (Vec<f64>, usize) {
    let mut used = vec![false; segments.len()];
    let mut delays = Vec::new();
    let true_boundaries = gt_runs.len().saturating_sub(1);
    for &(class, start, end) in gt_runs.iter().skip(1) {
        let tolerance = (end - start + 1).div_ceil(2).max(15);
        let nearest = segments
            .iter()
            .enumerate()
            .filter(|&(i, s)| {
                !used[i] && s.class == class && s.start_frame.abs_diff(start) <= tolerance
            })
            .min_by_key(|(_, s)| s.start_frame.abs_diff(start));
        if let Some((i, s)) = nearest {
            used[i] = true;
            delays.push(s.started_at.saturating_sub(start) as f64);
        }
    }
    (delays, true_boundaries)
}

/// Runs a fresh segmenter over one recording's finalised frames, as [`StreamSegmenter`] would
/// have: the committed segments (each dated by the arrival of the frame that made its start
/// known) and every finalised frame's arg-max class and boundary probability, by position.
fn replay(
    rec: &Recording,
    finals: &[(FinalFrame, usize)],
    cfg: &SegmenterConfig,
) -> (RecordingRun, FinalisedFrames) {
    let position: HashMap<u64, usize> =
        rec.frames.iter().enumerate().map(|(i, f)| (f.index, i)).collect();
    let pos = |index: u64| position.get(&index).copied().unwrap_or(0);
    // Under the majority rule a frame comes out once the next one is in: look its
    // probabilities up by index.
    let probs_of: HashMap<u64, &[f32]> =
        finals.iter().map(|(f, _)| (f.index, f.probs.as_slice())).collect();
    let len = rec.frames.len();
    let num_classes = finals.iter().map(|(f, _)| f.probs.len()).max().unwrap_or(0);
    let mut finalised = FinalisedFrames {
        classes: vec![0; len],
        boundary: vec![0.0; len],
        probs: vec![0.0; num_classes * len],
    };
    let mut segmenter = Segmenter::new(SegmenterConfig { per_frame: true, ..cfg.clone() });
    let mut segments = Vec::new();
    let mut started_at: HashMap<u64, usize> = HashMap::new();
    let mut handle = |outputs: Vec<SegmenterOutput>, at: usize| {
        for output in outputs {
            match output {
                SegmenterOutput::Frame { index, class, boundary_prob, .. } => {
                    let p = pos(index);
                    finalised.classes[p] = class;
                    finalised.boundary[p] = boundary_prob;
                    for (c, &v) in
                        probs_of.get(&index).copied().unwrap_or_default().iter().enumerate()
                    {
                        finalised.probs[c * len + p] = v;
                    }
                }
                SegmenterOutput::Started { start, .. } => {
                    started_at.insert(start, at);
                }
                SegmenterOutput::Ended { class, start, end, confidence, .. } => {
                    segments.push(CommittedSegment {
                        class,
                        start_frame: pos(start),
                        end_frame: pos(end),
                        confidence,
                        started_at: started_at.get(&start).copied().unwrap_or(at),
                    })
                }
            }
        }
    };
    for (frame, arrival) in finals {
        handle(segmenter.push(frame), *arrival);
    }
    handle(segmenter.flush(), rec.frames.len().saturating_sub(1));
    let labels = labels_of(&segments, rec.frames.len());
    let run = RecordingRun { name: rec.name.clone(), segments, labels, scores: None };
    (run, finalised)
}

/// Per-position labels read off committed segments.
fn labels_of(segments: &[CommittedSegment], len: usize) -> Vec<usize> {
    let mut labels = vec![0; len];
    for s in segments {
        for l in labels.iter_mut().take(s.end_frame + 1).skip(s.start_frame) {
            *l = s.class;
        }
    }
    labels
}

/// What a stream finalised per frame, by position: arg-max class, boundary probability and
/// class probabilities (zeros for frames the segmenter did not take: after a person timeout,
/// until someone is back).
#[derive(Debug, Default)]
struct FinalisedFrames {
    classes: Vec<usize>,
    boundary: Vec<f32>,
    /// `(A, T)` class-major, the refinement's tie-break.
    probs: Vec<f32>,
}

impl FinalisedFrames {
    /// The frames refined as offline evaluation does ([`crate::train::refine`]); a threshold of
    /// 1 ([`crate::train::THRESHOLD_GRID`]'s "no refinement") keeps the argmax.
    fn refined(&self, threshold: f32) -> Vec<usize> {
        crate::train::refine(&self.classes, &self.boundary, &self.probs, threshold)
    }
}

fn run_one(seg: &mut StreamSegmenter, rec: &Recording) -> Result<RecordingRun> {
    // Frame indices of a recording may skip numbers (UTKinect); metrics work on positions.
    let position: HashMap<u64, usize> =
        rec.frames.iter().enumerate().map(|(i, f)| (f.index, i)).collect();
    let pos = |index: u64| position.get(&index).copied().unwrap_or(0);
    let mut segments = Vec::new();
    let mut started_at: HashMap<u64, usize> = HashMap::new();
    let mut handle = |events: Vec<SegmentEvent>, at: usize| {
        for event in events {
            match event {
                SegmentEvent::SegmentStarted { start_frame, .. } => {
                    started_at.insert(start_frame, at);
                }
                SegmentEvent::SegmentEnded {
                    class, start_frame, end_frame, confidence, ..
                } => {
                    segments.push(CommittedSegment {
                        class,
                        start_frame: pos(start_frame),
                        end_frame: pos(end_frame),
                        confidence,
                        started_at: started_at.get(&start_frame).copied().unwrap_or(at),
                    });
                }
                _ => {}
            }
        }
    };
    for (i, frame) in rec.frames.iter().enumerate() {
        handle(seg.push(frame)?, i);
    }
    handle(seg.finish()?, rec.frames.len().saturating_sub(1));
    let labels = labels_of(&segments, rec.frames.len());
    let scores = match rec.frame_labels() {
        Some(gt) => {
            let mut acc = MetricsAccumulator::new(Variant::Asrf, vec![0]);
            acc.add(&labels, &gt)?;
            Some(acc.finish())
        }
        None => None,
    };
    Ok(RecordingRun { name: rec.name.clone(), segments, labels, scores })
}

/// Maximal runs of equal labels as `(class, start, end)`, `end` inclusive.
pub fn label_runs(labels: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=labels.len() {
        if i == labels.len() || labels[i] != labels[start] {
            out.push((labels[start], start, i - 1));
            start = i;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boundary_threshold_of_one_leaves_the_finalised_frames_as_they_are() {
        let loaded = crate::stream::testing::bundled_model();
        let rec =
            crate::synth::generate_recording(&crate::synth::SynthConfig::default(), 4242, "t");
        let mut cfg = StreamConfig::from_checkpoint(&loaded.meta);
        // What validation chooses when refinement only hurts (a UTKinect fold model did).
        cfg.segmenter.boundary_threshold = 1.0;
        let mut seg = StreamSegmenter::with_config(loaded, "t", cfg.clone()).unwrap();
        let finals = seg.finalise(&rec.frames).unwrap();
        let (_, finalised) = replay(&rec, &finals, &cfg.segmenter);
        let mut unrefined = MetricsAccumulator::new(Variant::Asrf, vec![0]);
        unrefined.add(&finalised.classes, &rec.frame_labels().unwrap()).unwrap();
        let want = unrefined.finish();
        assert!(want.f1_50 > 50.0, "the bundled model segments its own data: {want:?}");
        let report = score_segmenter(&[&rec], &[finals], &cfg, &cfg.segmenter).unwrap();
        // Not one piece with the recording's majority class (ASRF's function at threshold 1).
        assert_eq!(report.finalised_frames_refined, want);
    }

    /// Committed segments from `(class, start, end, started_at)`.
    fn committed(spec: &[(usize, usize, usize, usize)]) -> Vec<CommittedSegment> {
        spec.iter()
            .map(|&(class, start_frame, end_frame, started_at)| CommittedSegment {
                class,
                start_frame,
                end_frame,
                confidence: 1.0,
                started_at,
            })
            .collect()
    }

    #[test]
    fn a_boundary_matches_the_nearest_segment_of_its_class() {
        // A long class-0 run after a short class-5 one: its window (150 frames) also reaches
        // the first class-0 segment, started long before the boundary.
        let gt = [vec![0; 100], vec![5; 20], vec![0; 300], vec![7; 100]].concat();
        let segments =
            committed(&[(0, 0, 99, 0), (5, 100, 119, 115), (0, 120, 419, 135), (7, 420, 519, 435)]);
        assert_eq!(match_boundaries(&label_runs(&gt), &segments), (vec![15.0; 3], 3));
    }

    #[test]
    fn a_segment_commits_at_most_one_boundary() {
        // The stream merges the 5-frame class-0 gap: the class-1 segment from frame 20 commits
        // the first class-1 boundary, not also the one at frame 35.
        let gt = [vec![0; 20], vec![1; 10], vec![0; 5], vec![1; 20]].concat();
        let segments = committed(&[(0, 0, 19, 0), (1, 20, 54, 35)]);
        assert_eq!(match_boundaries(&label_runs(&gt), &segments), (vec![15.0], 3));
        assert_eq!(match_boundaries(&label_runs(&[2; 10]), &segments), (vec![], 0));
    }

    #[test]
    fn finalised_frames_refined_break_ties_with_the_class_probabilities() {
        // Classes 3 and 1 alternate in one piece (no boundary peak); class 3 sums 1.8 over it,
        // class 1 1.4, so the piece is class 3 (the smallest id, 1, is not ASRF's tie-break).
        let probs = [[0.1, 0.1, 0.1, 0.7], [0.1, 0.6, 0.1, 0.2]];
        let finals: Vec<(FinalFrame, usize)> = (0..4)
            .map(|i| {
                let frame = FinalFrame {
                    index: i as u64,
                    timestamp_secs: i as f64 / 30.0,
                    probs: probs[i % 2].to_vec(),
                    boundary_prob: 0.0,
                    present: true,
                };
                (frame, i)
            })
            .collect();
        let rec = Recording {
            name: "t".into(),
            source_layout: Default::default(),
            fps: 30.0,
            frames: (0..4)
                .map(|i| crate::frame::Frame {
                    index: i,
                    timestamp_secs: i as f64 / 30.0,
                    bodies: Vec::new(),
                })
                .collect(),
            intervals: None,
        };
        // The majority rule puts a frame out one frame late.
        for rule in [crate::stream::SegmentRule::Candidate, crate::stream::SegmentRule::Majority] {
            let cfg = SegmenterConfig { rule, ..SegmenterConfig::default() };
            let (_, finalised) = replay(&rec, &finals, &cfg);
            assert_eq!(finalised.classes, vec![3, 1, 3, 1], "{rule:?}");
            assert_eq!(finalised.refined(0.5), vec![3; 4], "{rule:?}");
        }
    }

    #[test]
    fn runs_split_labels_into_maximal_segments() {
        assert_eq!(label_runs(&[0, 0, 1, 1, 1, 0]), vec![(0, 0, 1), (1, 2, 4), (0, 5, 5)]);
        assert!(label_runs(&[]).is_empty());
    }
}
