//! Temporal action segmentation metrics: frame accuracy, Edit score and segmental F1@{10,25,50},
//! plus two small figures for online segmentation (over-segmentation ratio, boundary delays).
//!
//! Follows the anchors' own evaluation code exactly (MS-TCN `eval.py`, ASRF/DeST `libs/metric.py`):
//! segment extraction with a background set, Edit per sequence then averaged over
//! sequences (macro), F1 with greedy IoU matching and TP/FP/FN summed over all sequences
//! (micro), accuracy over all frames (micro). The two anchor code bases differ only in
//! where the last segment ends ([`Variant`]); the default is the ASRF/DeST one, which InterAct's
//! numbers most likely come from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// IoU thresholds of the reported F1 scores.
pub const F1_THRESHOLDS: [f64; 3] = [0.10, 0.25, 0.50];

/// Which anchor evaluation code to reproduce.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// MS-TCN's eval.py.
    ///
    /// The last segment ends at `L` (exclusive), F1 = 2PR/(P+R).
    Mstcn,
    /// ASRF / DeST / InterAct code base (the last segment's end is one frame short).
    ///
    /// ASRF / DeST `libs/metric.py` (and ASFormer): the last segment ends at `L-1`, one frame
    /// short, and F1 = 2PR/(P+R+1e-7). One deviation: a one-frame last segment keeps its frame
    /// (the reference gives it length 0, IoU 0/0 = NaN, and counts it as a false positive).
    #[default]
    Asrf,
}

impl FromStr for Variant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mstcn" | "ms-tcn" => Ok(Variant::Mstcn),
            "asrf" | "dest" => Ok(Variant::Asrf),
            other => Err(Error::invalid(
                "metrics variant",
                format!("expected mstcn or asrf, found {other:?}"),
            )),
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Mstcn => "mstcn",
            Variant::Asrf => "asrf",
        })
    }
}

/// One action segment `[start, end)` of a label sequence (background excluded).
///
/// With [`Variant::Asrf`] the last segment of a sequence ends one frame early (`L-1`), as in the
/// reference code, unless it is one frame long; every other end is exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<L> {
    /// The segment's label.
    pub label: L,
    /// First frame.
    pub start: usize,
    /// End frame (exclusive, see above).
    pub end: usize,
}

/// Splits a per-frame label sequence into segments, leaving out labels in `bg`.
/// An empty sequence has no segments.
pub fn segments<L: PartialEq + Clone>(labels: &[L], bg: &[L], variant: Variant) -> Vec<Segment<L>> {
    let Some(first) = labels.first() else {
        return Vec::new();
    };
    let is_bg = |l: &L| bg.contains(l);
    let mut out: Vec<Segment<L>> = Vec::new();
    let mut last = first;
    let mut start = 0;
    for (i, l) in labels.iter().enumerate().skip(1) {
        if l != last {
            if !is_bg(last) {
                out.push(Segment { label: last.clone(), start, end: i });
            }
            last = l;
            start = i;
        }
    }
    if !is_bg(last) {
        let end = match variant {
            Variant::Mstcn => labels.len(),
            // Never below start + 1: an empty segment has IoU 0/0 with its own match.
            Variant::Asrf => (labels.len() - 1).max(start + 1),
        };
        out.push(Segment { label: last.clone(), start, end });
    }
    out
}

/// Levenshtein distance between two label sequences (unit costs).
fn levenshtein<L: PartialEq>(p: &[L], y: &[L]) -> usize {
    // One row of the (m+1) x (n+1) table at a time.
    let mut prev: Vec<usize> = (0..=y.len()).collect();
    let mut row = vec![0; y.len() + 1];
    for (i, pl) in p.iter().enumerate() {
        row[0] = i + 1;
        for (j, yl) in y.iter().enumerate() {
            row[j + 1] = if pl == yl { prev[j] } else { 1 + prev[j + 1].min(row[j]).min(prev[j]) };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[y.len()]
}

/// Edit score of one sequence in percent; 100 when neither side has a
/// segment.
pub fn edit_score<L: PartialEq>(pred: &[Segment<L>], gt: &[Segment<L>]) -> f64 {
    let p: Vec<&L> = pred.iter().map(|s| &s.label).collect();
    let y: Vec<&L> = gt.iter().map(|s| &s.label).collect();
    let longest = p.len().max(y.len());
    if longest == 0 {
        return 100.0;
    }
    (1.0 - levenshtein(&p, &y) as f64 / longest as f64) * 100.0
}

/// True positives, false positives and false negatives of segment matching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCounts {
    /// Predicted segments matched to a not yet matched GT segment of the same label.
    pub tp: usize,
    /// Predicted segments left unmatched.
    pub fp: usize,
    /// GT segments left unmatched.
    pub fn_: usize,
}

impl SegmentCounts {
    fn add(&mut self, other: SegmentCounts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }

    /// F1 in percent; `asrf_eps` adds the reference code's `1e-7` to the denominator.
    /// Zero when there is no true positive (the reference's NaN → 0).
    pub fn f1(&self, asrf_eps: bool) -> f64 {
        if self.tp == 0 {
            return 0.0;
        }
        let precision = self.tp as f64 / (self.tp + self.fp) as f64;
        let recall = self.tp as f64 / (self.tp + self.fn_) as f64;
        let eps = if asrf_eps { 1e-7 } else { 0.0 };
        2.0 * precision * recall / (precision + recall + eps) * 100.0
    }
}

/// IoU of two segments; zero for different labels, and for hand-made empty or inverted segments
/// (where the reference divides 0 by 0). Negative for disjoint segments, as in the reference:
/// harmless, since that is below every threshold.
fn iou<L: PartialEq>(p: &Segment<L>, g: &Segment<L>) -> f64 {
    let union = p.end.max(g.end) as f64 - p.start.min(g.start) as f64;
    if p.label != g.label || union <= 0.0 {
        return 0.0;
    }
    let inter = p.end.min(g.end) as f64 - p.start.max(g.start) as f64;
    inter / union
}

/// Greedy IoU matching of one sequence's segments at threshold `thr`:
/// each predicted segment, in temporal order, takes the first GT segment of maximal IoU (zero
/// for another label) if that IoU reaches `thr` and the GT segment is still free.
pub fn match_segments<L: PartialEq>(
    pred: &[Segment<L>],
    gt: &[Segment<L>],
    thr: f64,
) -> SegmentCounts {
    let mut hits = vec![false; gt.len()];
    let mut counts = SegmentCounts::default();
    for p in pred {
        let mut best: Option<(usize, f64)> = None;
        for (x, g) in gt.iter().enumerate() {
            let iou = iou(p, g);
            // Strict '>' keeps the first index of the maximum, as numpy's argmax.
            if best.is_none_or(|(_, b)| iou > b) {
                best = Some((x, iou));
            }
        }
        match best {
            Some((x, iou)) if iou >= thr && !hits[x] => {
                hits[x] = true;
                counts.tp += 1;
            }
            _ => counts.fp += 1,
        }
    }
    counts.fn_ = hits.iter().filter(|h| !**h).count();
    counts
}

/// Scores over a set of sequences, in percent (0–100).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Frame accuracy over all frames of all sequences.
    pub acc: f64,
    /// Edit score, averaged over sequences.
    pub edit: f64,
    /// Segmental F1 at IoU 0.10 (TP/FP/FN summed over sequences).
    pub f1_10: f64,
    /// Segmental F1 at IoU 0.25.
    pub f1_25: f64,
    /// Segmental F1 at IoU 0.50.
    pub f1_50: f64,
    /// Number of sequences scored.
    pub videos: usize,
    /// Number of frames scored.
    pub frames: usize,
}

impl fmt::Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "F1@10 {:.2}  F1@25 {:.2}  F1@50 {:.2}  Edit {:.2}  Acc {:.2}  ({} videos, {} frames)",
            self.f1_10, self.f1_25, self.f1_50, self.edit, self.acc, self.videos, self.frames
        )
    }
}

/// Accumulates predictions and ground truth of many sequences (class ids), then scores them.
#[derive(Clone, Debug)]
pub struct MetricsAccumulator {
    bg: Vec<usize>,
    tally: Tally,
}

/// Running sums behind [`MetricsAccumulator`], whatever the label type.
#[derive(Clone, Debug)]
struct Tally {
    variant: Variant,
    correct: usize,
    frames: usize,
    edit_sum: f64,
    videos: usize,
    counts: [SegmentCounts; 3],
}

impl MetricsAccumulator {
    /// An empty accumulator; class ids in `bg` are background (left out of Edit and F1, kept in
    /// Acc).
    pub fn new(variant: Variant, bg: Vec<usize>) -> Self {
        MetricsAccumulator { bg, tally: Tally::new(variant) }
    }

    /// Adds one sequence. Errors when the lengths differ or the sequence is empty.
    pub fn add(&mut self, pred: &[usize], gt: &[usize]) -> Result<()> {
        self.tally.add(pred, gt, &self.bg)
    }

    /// TP/FP/FN so far at each of [`F1_THRESHOLDS`].
    pub fn counts(&self) -> [SegmentCounts; 3] {
        self.tally.counts
    }

    /// The scores of everything added so far (all zero when nothing was added).
    pub fn finish(&self) -> Scores {
        self.tally.scores()
    }
}

impl Tally {
    fn new(variant: Variant) -> Self {
        Tally {
            variant,
            correct: 0,
            frames: 0,
            edit_sum: 0.0,
            videos: 0,
            counts: [SegmentCounts::default(); 3],
        }
    }

    fn scores(&self) -> Scores {
        let asrf_eps = self.variant == Variant::Asrf;
        let pct =
            |num: usize, den: usize| if den == 0 { 0.0 } else { num as f64 / den as f64 * 100.0 };
        Scores {
            acc: pct(self.correct, self.frames),
            edit: if self.videos == 0 { 0.0 } else { self.edit_sum / self.videos as f64 },
            f1_10: self.counts[0].f1(asrf_eps),
            f1_25: self.counts[1].f1(asrf_eps),
            f1_50: self.counts[2].f1(asrf_eps),
            videos: self.videos,
            frames: self.frames,
        }
    }

    fn add<L: PartialEq + Clone>(&mut self, pred: &[L], gt: &[L], bg: &[L]) -> Result<()> {
        if pred.len() != gt.len() {
            return Err(Error::Shape {
                context: "metrics: prediction vs ground truth".into(),
                expected: format!("{} frames", gt.len()),
                got: format!("{} frames", pred.len()),
            });
        }
        if gt.is_empty() {
            return Err(Error::invalid("sequence", "cannot score an empty sequence"));
        }
        let p = segments(pred, bg, self.variant);
        let g = segments(gt, bg, self.variant);
        self.correct += pred.iter().zip(gt).filter(|(a, b)| a == b).count();
        self.frames += gt.len();
        self.edit_sum += edit_score(&p, &g);
        self.videos += 1;
        for (c, thr) in self.counts.iter_mut().zip(F1_THRESHOLDS) {
            c.add(match_segments(&p, &g, thr));
        }
        Ok(())
    }
}

/// [`MetricsAccumulator`] for labels given as names (MS-TCN style ground-truth files).
#[derive(Clone, Debug)]
pub struct NamedMetricsAccumulator {
    tally: Tally,
    bg: Vec<String>,
}

impl NamedMetricsAccumulator {
    /// An empty accumulator; labels named in `bg` are background.
    pub fn new(variant: Variant, bg: Vec<String>) -> Self {
        NamedMetricsAccumulator { tally: Tally::new(variant), bg }
    }

    /// Adds one sequence of label names. Errors when the lengths differ or it is empty.
    pub fn add<S: AsRef<str>>(&mut self, pred: &[S], gt: &[S]) -> Result<()> {
        let pred: Vec<&str> = pred.iter().map(AsRef::as_ref).collect();
        let gt: Vec<&str> = gt.iter().map(AsRef::as_ref).collect();
        let bg: Vec<&str> = self.bg.iter().map(String::as_str).collect();
        self.tally.add(&pred, &gt, &bg)
    }

    /// The scores of everything added so far.
    pub fn finish(&self) -> Scores {
        self.tally.scores()
    }
}

/// Over-segmentation ratio of an (online) prediction: number of predicted segments over number
/// of GT segments, background excluded. `None` when the GT has no segment.
pub fn over_segmentation_ratio<L: PartialEq + Clone>(
    pred: &[L],
    gt: &[L],
    bg: &[L],
) -> Option<f64> {
    // The variant only moves the last end frame, never the segment count.
    let n_gt = segments(gt, bg, Variant::Mstcn).len();
    (n_gt > 0).then(|| segments(pred, bg, Variant::Mstcn).len() as f64 / n_gt as f64)
}

/// Emission delay of each GT segment's start, in frames, for an online segmenter.
///
/// `emitted_event_frames` are the frames at which the segmenter *emitted* a segment-start
/// event (the frame being processed when the event left, not the back-dated boundary). For each
/// GT segment (in order, e.g. from [`segments`]) the delay is `e - start` for the first emitted
/// frame `e` with `start <= e < next GT segment's start`; `None` when nothing was emitted in that
/// window (a missed boundary).
pub fn boundary_delays<L>(
    gt_segments: &[Segment<L>],
    emitted_event_frames: &[usize],
) -> Vec<Option<usize>> {
    let mut emitted = emitted_event_frames.to_vec();
    emitted.sort_unstable();
    gt_segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let next = gt_segments.get(i + 1).map_or(usize::MAX, |n| n.start);
            let first = emitted.partition_point(|&e| e < s.start);
            emitted.get(first).filter(|&&e| e < next).map(|&e| e - s.start)
        })
        .collect()
}

/// Nearest-rank percentile of sorted values (NaN when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(spec: &[(usize, usize)]) -> Vec<usize> {
        spec.iter().flat_map(|&(label, n)| std::iter::repeat_n(label, n)).collect()
    }

    // architecture.md §1.5 test vectors.
    fn ex1() -> (Vec<usize>, Vec<usize>) {
        let gt = vec![0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0];
        let pred = vec![0, 0, 1, 1, 1, 2, 1, 2, 2, 2, 2, 0, 0, 0, 0];
        (pred, gt)
    }
    fn ex2() -> (Vec<usize>, Vec<usize>) {
        (runs(&[(3, 4), (1, 6)]), runs(&[(3, 8), (1, 2)]))
    }
    fn ex3() -> (Vec<usize>, Vec<usize>) {
        (runs(&[(5, 8), (6, 12)]), runs(&[(5, 5), (6, 15)]))
    }

    /// Checks the five figures (Acc, Edit, F1@10, F1@25, F1@50) to 4 decimals; the
    /// ASRF `1e-7` only moves the 7th significant digit.
    fn assert_scores(s: &Scores, expected: [f64; 5]) {
        let got = [s.acc, s.edit, s.f1_10, s.f1_25, s.f1_50];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-4, "got {got:?}, expected {expected:?}");
        }
    }

    fn score(variant: Variant, bg: Vec<usize>, videos: &[(Vec<usize>, Vec<usize>)]) -> Scores {
        let mut acc = MetricsAccumulator::new(variant, bg);
        for (p, g) in videos {
            acc.add(p, g).unwrap();
        }
        acc.finish()
    }

    #[test]
    fn segments_of_ex1_match_reference() {
        let (_, gt) = ex1();
        let ms = segments(&gt, &[], Variant::Mstcn);
        let labels: Vec<usize> = ms.iter().map(|s| s.label).collect();
        assert_eq!(labels, [0, 1, 2, 0]);
        assert_eq!(ms.iter().map(|s| s.start).collect::<Vec<_>>(), [0, 3, 7, 12]);
        assert_eq!(ms.iter().map(|s| s.end).collect::<Vec<_>>(), [3, 7, 12, 15]);
        let asrf = segments(&gt, &[], Variant::Asrf);
        assert_eq!(asrf.iter().map(|s| s.end).collect::<Vec<_>>(), [3, 7, 12, 14]);
    }

    #[test]
    fn ex1_both_variants() {
        for v in [Variant::Mstcn, Variant::Asrf] {
            assert_scores(&score(v, vec![], &[ex1()]), [80.0, 66.6667, 80.0, 80.0, 60.0]);
        }
    }

    #[test]
    fn ex1_with_background_mstcn() {
        assert_scores(
            &score(Variant::Mstcn, vec![0], &[ex1()]),
            [80.0, 50.0, 66.6667, 66.6667, 33.3333],
        );
    }

    #[test]
    fn ex2_end_of_sequence_variants_differ() {
        assert_scores(&score(Variant::Mstcn, vec![], &[ex2()]), [60.0, 100.0, 100.0, 100.0, 50.0]);
        assert_scores(&score(Variant::Asrf, vec![], &[ex2()]), [60.0, 100.0, 100.0, 50.0, 50.0]);
    }

    #[test]
    fn ex3_both_variants() {
        for v in [Variant::Mstcn, Variant::Asrf] {
            assert_scores(&score(v, vec![], &[ex3()]), [85.0, 100.0, 100.0, 100.0, 100.0]);
        }
    }

    #[test]
    fn all_three_videos_micro_and_macro() {
        let videos = [ex1(), ex2(), ex3()];
        let ms = score(Variant::Mstcn, vec![], &videos);
        assert_scores(&ms, [77.7778, 88.8889, 88.8889, 88.8889, 66.6667]);
        assert_eq!((ms.videos, ms.frames), (3, 45));
        assert_scores(
            &score(Variant::Asrf, vec![], &videos),
            [77.7778, 88.8889, 88.8889, 77.7778, 66.6667],
        );
        // Default variant is the DeST/ASRF one.
        assert_scores(
            &score(Variant::default(), vec![], &videos),
            [77.7778, 88.8889, 88.8889, 77.7778, 66.6667],
        );
    }

    #[test]
    fn asrf_epsilon_only_moves_seventh_digit() {
        let s = score(Variant::Asrf, vec![], &[ex1()]);
        // Without eps F1@10 would be exactly 80; with it, slightly below.
        assert!(s.f1_10 < 80.0 && s.f1_10 > 80.0 - 1e-4);
        assert_eq!(score(Variant::Mstcn, vec![], &[ex1()]).f1_10, 80.0);
    }

    #[test]
    fn named_labels_give_the_same_scores() {
        let name = |v: &[usize]| v.iter().map(|l| format!("class {l}")).collect::<Vec<_>>();
        let mut named = NamedMetricsAccumulator::new(Variant::Mstcn, vec!["class 0".into()]);
        let (p, g) = ex1();
        named.add(&name(&p), &name(&g)).unwrap();
        assert_scores(&named.finish(), [80.0, 50.0, 66.6667, 66.6667, 33.3333]);
    }

    #[test]
    fn length_mismatch_and_empty_are_errors() {
        let mut acc = MetricsAccumulator::new(Variant::Asrf, vec![]);
        assert!(matches!(acc.add(&[1, 2], &[1, 2, 3]), Err(Error::Shape { .. })));
        assert!(acc.add(&[], &[]).is_err());
        assert_eq!(acc.finish().videos, 0);
    }

    #[test]
    fn all_background_gives_edit_100_and_zero_f1() {
        // No segment on either side: Edit guard returns 100; F1 has no TP → 0.
        let s = score(Variant::Asrf, vec![0], &[(vec![0; 5], vec![0; 5])]);
        assert_eq!((s.acc, s.edit, s.f1_10), (100.0, 100.0, 0.0));
        // Predictions against a GT without segments are all false positives.
        let c = match_segments(&segments(&[1, 1, 2], &[0], Variant::Mstcn), &[], 0.1);
        assert_eq!(c, SegmentCounts { tp: 0, fp: 2, fn_: 0 });
    }

    #[test]
    fn asrf_one_frame_segment_at_the_end_matches_itself() {
        // The last segment is one frame long: L-1 would leave it no frame at all.
        let seq = runs(&[(1, 4), (2, 1)]);
        let segs = segments(&seq, &[], Variant::Asrf);
        assert_eq!(segs.last(), Some(&Segment { label: 2, start: 4, end: 5 }));
        let mut acc = MetricsAccumulator::new(Variant::Asrf, vec![]);
        acc.add(&seq, &seq).unwrap();
        // A one-frame sequence is a one-frame last segment too.
        acc.add(&[7], &[7]).unwrap();
        assert_eq!(acc.counts(), [SegmentCounts { tp: 3, fp: 0, fn_: 0 }; 3]);
        let s = acc.finish();
        assert!([s.f1_10, s.f1_25, s.f1_50].iter().all(|f| (f - 100.0).abs() < 1e-4), "{s}");
    }

    #[test]
    fn degenerate_input_gives_defined_scores_or_a_typed_error() {
        for v in [Variant::Mstcn, Variant::Asrf] {
            let mut acc = MetricsAccumulator::new(v, vec![0]);
            assert!(matches!(acc.add(&[], &[]), Err(Error::Invalid { .. })));
            let s = acc.finish();
            assert_eq!(
                [s.acc, s.edit, s.f1_10, s.f1_25, s.f1_50, s.videos as f64, s.frames as f64],
                [0.0; 7]
            );
            // One frame each; all background; actions against background and back.
            for (p, g) in [(vec![0], vec![0]), (vec![3], vec![3]), (vec![0; 4], vec![0; 4])]
                .into_iter()
                .chain([(vec![0, 0, 5], vec![0, 0, 0]), (vec![0, 0, 0], vec![0, 0, 5])])
            {
                acc.add(&p, &g).unwrap();
                let s = acc.finish();
                let all = [s.acc, s.edit, s.f1_10, s.f1_25, s.f1_50];
                assert!(all.iter().all(|x| x.is_finite()), "{v} {p:?} vs {g:?}: {s}");
            }
        }
    }

    #[test]
    fn empty_or_inverted_segments_have_zero_iou() {
        // Only hand-made segments can be empty or inverted; 0/0 would be NaN.
        for (start, end) in [(3, 3), (5, 2)] {
            let s = Segment { label: 1, start, end };
            assert_eq!(iou(&s, &s), 0.0);
            assert_eq!(
                match_segments(std::slice::from_ref(&s), std::slice::from_ref(&s), 0.1),
                SegmentCounts { tp: 0, fp: 1, fn_: 1 }
            );
        }
        let a = Segment { label: 1, start: 0, end: 4 };
        assert_eq!(iou(&a, &Segment { label: 1, start: 2, end: 6 }), 2.0 / 6.0);
        assert_eq!(iou(&a, &Segment { label: 2, start: 0, end: 4 }), 0.0);
    }

    #[test]
    fn greedy_matching_counts_second_hit_as_false_positive() {
        // Two predicted segments of label 1 both best-match the single GT segment.
        let gt = [Segment { label: 1, start: 0, end: 10 }];
        let pred =
            [Segment { label: 1, start: 0, end: 5 }, Segment { label: 1, start: 5, end: 10 }];
        assert_eq!(match_segments(&pred, &gt, 0.1), SegmentCounts { tp: 1, fp: 1, fn_: 0 });
    }

    #[test]
    fn over_segmentation_and_delays() {
        let gt = runs(&[(0, 3), (1, 4), (2, 5), (0, 3)]);
        let pred = runs(&[(0, 2), (1, 2), (3, 1), (1, 2), (2, 5), (0, 3)]);
        // GT: 2 action segments; prediction: 1, 3, 1, 2 → 4 action segments.
        assert_eq!(over_segmentation_ratio(&pred, &gt, &[0]), Some(2.0));
        assert_eq!(over_segmentation_ratio(&pred, &[0; 15], &[0]), None);
        let gt_segs = segments(&gt, &[0], Variant::Mstcn);
        // Starts at 3 and 7: first emitted at 5 (delay 2), nothing in [7, ∞) but 20 → 13.
        assert_eq!(boundary_delays(&gt_segs, &[20, 5, 6]), vec![Some(2), Some(13)]);
        assert_eq!(boundary_delays(&gt_segs, &[1, 4]), vec![Some(1), None]);
    }

    #[test]
    fn variant_parses() {
        assert_eq!("mstcn".parse::<Variant>().unwrap(), Variant::Mstcn);
        assert_eq!("ASRF".parse::<Variant>().unwrap(), Variant::Asrf);
        assert!("foo".parse::<Variant>().is_err());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
