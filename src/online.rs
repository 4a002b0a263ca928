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
    /// Mean frames from a true boundary to the event that committed it.
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
        // As offline: a threshold of 1 (THRESHOLD_GRID's "no refinement") keeps the argmax.
        let refined = crate::train::refine(
            &finalised.classes,
            &finalised.boundary,
            segmenter.boundary_threshold,
        );
        refined_acc.add(&refined, &gt)?;
        let gt_runs = label_runs(&gt);
        gt_segments += gt_runs.len();
        pred_segments += run.segments.len();
        for &(class, start, end) in gt_runs.iter().skip(1) {
            boundaries += 1;
            let tolerance = (end - start + 1).div_ceil(2).max(15);
            if let Some(s) = run
                .segments
                .iter()
                .find(|s| s.class == class && s.start_frame.abs_diff(start) <= tolerance)
            {
                delays.push(s.started_at.saturating_sub(start) as f64);
            }
        }
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
    let mut finalised = FinalisedFrames {
        classes: vec![0; rec.frames.len()],
        boundary: vec![0.0; rec.frames.len()],
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

/// What a stream finalised per frame, by position: arg-max class and boundary probability
/// (zeros for frames the segmenter did not take: after a person timeout, until someone is back).
#[derive(Debug, Default)]
struct FinalisedFrames {
    classes: Vec<usize>,
    boundary: Vec<f32>,
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

    #[test]
    fn runs_split_labels_into_maximal_segments() {
        assert_eq!(label_runs(&[0, 0, 1, 1, 1, 0]), vec![(0, 0, 1), (1, 2, 4), (0, 5, 5)]);
        assert!(label_runs(&[]).is_empty());
    }
}
