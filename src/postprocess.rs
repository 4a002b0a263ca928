//! Post-processing of per-frame predictions: ASRF boundary refinement and the boundary training
//! target.
//!
//! [`refinement_with_boundary`] follows ASRF/DeST
//! `libs/postprocess.py`: boundary peaks split the sequence and every piece takes its majority
//! class. [`boundary_target`] is the peak-1 Gaussian target (ASQuery's window),
//! placed at the first frame of each new segment, where ASRF's hard target puts its ones
//! and where the refinement splits.

/// Default standard deviation of the boundary target's Gaussian, in frames (ASQuery).
pub const BOUNDARY_SIGMA_FRAMES: f32 = 6.0;
/// Default half-width of the boundary target's window, in frames (ASQuery).
pub const BOUNDARY_RADIUS_FRAMES: usize = 10;

/// Boundary peaks as in ASRF's `argrelmax`: frame 0, plus every frame `t` in `1..T-1` that
/// [`is_boundary_peak`] between its neighbours. Plateaus are not peaks and the last frame never is.
pub fn boundary_peaks(boundary_prob: &[f32], threshold: f32) -> Vec<usize> {
    let b = boundary_prob;
    let mut peaks = vec![0];
    peaks.extend(
        (1..b.len().saturating_sub(1))
            .filter(|&t| is_boundary_peak(b[t - 1], b[t], b[t + 1], threshold)),
    );
    peaks
}

/// Whether `current`, between `before` and `after`, is a boundary peak in ASRF's sense: with
/// the probabilities below `threshold` counted as 0, it is strictly above both neighbours (so it
/// is at least `threshold` itself). The streaming segmenter uses the same test frame by frame.
pub fn is_boundary_peak(before: f32, current: f32, after: f32, threshold: f32) -> bool {
    let cut = |p: f32| if p < threshold { 0.0 } else { p };
    let current = cut(current);
    cut(before) < current && cut(after) < current
}

/// ASRF `refinement_with_boundary`: splits `pred` at the boundary peaks
/// of `boundary_prob` (probabilities in `[0, 1]`) above `threshold` and gives every piece its most
/// frequent class; ties go to the smallest class id (ASRF's rule for bare labels; for model
/// outputs it breaks ties by summed score, [`refinement_with_boundary_scored`]).
///
/// `boundary_prob` should have one value per frame of `pred`; missing values count as 0 and
/// extra ones are ignored (with a warning).
pub fn refinement_with_boundary(
    pred: &[usize],
    boundary_prob: &[f32],
    threshold: f32,
) -> Vec<usize> {
    refine(pred, boundary_prob, threshold, |modes, _, _| modes[0])
}

/// [`refinement_with_boundary`] with the reference's tie-break: among equally frequent classes
/// the one with the largest summed score over the piece wins (then the smallest id).
/// `class_scores` is `(A, T)` row-major (class-major), e.g. softmax probabilities, with
/// `T = pred.len()`; when its length is not a multiple of `T` the smallest-id tie-break is used.
pub fn refinement_with_boundary_scored(
    pred: &[usize],
    boundary_prob: &[f32],
    threshold: f32,
    class_scores: &[f32],
) -> Vec<usize> {
    let t_len = pred.len();
    if t_len == 0 || !class_scores.len().is_multiple_of(t_len) {
        tracing::warn!(
            frames = t_len,
            scores = class_scores.len(),
            "class scores are not (A, T); ties go to the smallest class id"
        );
        return refinement_with_boundary(pred, boundary_prob, threshold);
    }
    refine(pred, boundary_prob, threshold, |modes, start, end| {
        let sum = |c: usize| -> f32 {
            class_scores
                .get(c * t_len + start..c * t_len + end)
                .map_or(f32::MIN, |s| s.iter().sum())
        };
        let mut best = modes[0];
        let mut best_sum = sum(best);
        for &m in &modes[1..] {
            let s = sum(m);
            if s > best_sum {
                (best, best_sum) = (m, s);
            }
        }
        best
    })
}

/// Shared body: `tie_break(modes, start, end)` picks among the (sorted, non-empty) most frequent
/// classes of `pred[start..end]`.
fn refine(
    pred: &[usize],
    boundary_prob: &[f32],
    threshold: f32,
    tie_break: impl Fn(&[usize], usize, usize) -> usize,
) -> Vec<usize> {
    if pred.is_empty() {
        return Vec::new();
    }
    if boundary_prob.len() != pred.len() {
        tracing::warn!(
            frames = pred.len(),
            boundary = boundary_prob.len(),
            "boundary probabilities and predictions differ in length"
        );
    }
    let mut probs = boundary_prob.to_vec();
    probs.resize(pred.len(), 0.0);
    let mut idx = boundary_peaks(&probs, threshold);
    idx.push(pred.len());
    let num_classes = pred.iter().max().map_or(0, |m| m + 1);
    let mut out = pred.to_vec();
    let mut counts = vec![0usize; num_classes];
    for w in idx.windows(2) {
        let (start, end) = (w[0], w[1]);
        counts.iter_mut().for_each(|c| *c = 0);
        for &c in &pred[start..end] {
            counts[c] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(0);
        let modes: Vec<usize> = (0..num_classes).filter(|&c| counts[c] == top).collect();
        let label = if modes.len() == 1 { modes[0] } else { tie_break(&modes, start, end) };
        out[start..end].iter_mut().for_each(|l| *l = label);
    }
    out
}

/// Peak-1 Gaussian boundary target with the default width ([`BOUNDARY_SIGMA_FRAMES`],
/// [`BOUNDARY_RADIUS_FRAMES`]), one value per label.
pub fn boundary_target(labels: &[usize]) -> Vec<f32> {
    boundary_target_with(labels, labels.len(), BOUNDARY_SIGMA_FRAMES, BOUNDARY_RADIUS_FRAMES)
}

/// Boundary target of length `len` (frames past `labels.len()`, e.g. padding, are 0): value 1 at
/// every frame `t` where `labels[t] != labels[t-1]`, falling off as `exp(-k²/(2σ²))` up to
/// `radius` frames either side. Where windows overlap the larger value wins, so every boundary
/// keeps its peak of exactly 1. Frame 0 is not a boundary (the refinement always splits there).
pub fn boundary_target_with(labels: &[usize], len: usize, sigma: f32, radius: usize) -> Vec<f32> {
    let window: Vec<f32> =
        (0..=radius).map(|k| (-0.5 * (k as f64 / f64::from(sigma)).powi(2)).exp() as f32).collect();
    let mut target = vec![0.0f32; len];
    let n = labels.len().min(len);
    for t in (1..n).filter(|&t| labels[t] != labels[t - 1]) {
        for (k, &w) in window.iter().enumerate() {
            for pos in [t.checked_sub(k), Some(t + k).filter(|&p| p < n)].into_iter().flatten() {
                target[pos] = target[pos].max(w);
            }
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    // architecture.md §7.4 test vector.
    const PRED: [usize; 12] = [0, 0, 1, 0, 0, 0, 2, 2, 1, 2, 2, 2];
    const BPROB: [f32; 12] = [0.9, 0.2, 0.1, 0.3, 0.2, 0.6, 0.7, 0.2, 0.1, 0.55, 0.55, 0.1];

    #[test]
    fn reference_vector_peaks() {
        assert_eq!(boundary_peaks(&BPROB, 0.5), vec![0, 6]);
    }

    #[test]
    fn reference_vector_refined() {
        assert_eq!(
            refinement_with_boundary(&PRED, &BPROB, 0.5),
            vec![0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2]
        );
    }

    #[test]
    fn plateau_and_last_frame_are_not_peaks() {
        assert_eq!(boundary_peaks(&[0.0, 0.8, 0.8, 0.0, 0.9], 0.5), vec![0]);
        assert_eq!(boundary_peaks(&[], 0.5), vec![0]);
    }

    #[test]
    fn ties_use_scores_or_smallest_id() {
        // One piece with two frames of 3 and two of 1.
        let pred = [3, 1, 3, 1];
        let b = [0.0; 4];
        assert_eq!(refinement_with_boundary(&pred, &b, 0.5), vec![1; 4]);
        // Class 3 has the larger summed score: it wins the tie. Scores are (A=4, T=4).
        let mut scores = vec![0.0f32; 16];
        scores[4..8].copy_from_slice(&[0.1, 0.6, 0.1, 0.6]);
        scores[12..16].copy_from_slice(&[0.7, 0.2, 0.7, 0.2]);
        assert_eq!(refinement_with_boundary_scored(&pred, &b, 0.5, &scores), vec![3; 4]);
    }

    #[test]
    fn short_boundary_vector_is_padded_with_zeros() {
        assert_eq!(
            refinement_with_boundary(&PRED, &BPROB[..7], 0.5),
            vec![0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2]
        );
        assert!(refinement_with_boundary(&[], &[], 0.5).is_empty());
    }

    #[test]
    fn target_window_values_match_asquery() {
        // §8.5: centre 1.0, ±1 0.986, ±5 0.707, ±10 0.249 (σ 6, radius 10).
        let labels: Vec<usize> = [vec![0; 20], vec![1; 20]].concat();
        let g = boundary_target(&labels);
        assert_eq!(g.len(), 40);
        assert_eq!(g[20], 1.0);
        for (k, expected) in [(1, 0.986), (5, 0.707), (10, 0.249)] {
            assert!((g[20 - k] - expected).abs() < 5e-4, "k={k}: {}", g[20 - k]);
            assert!((g[20 + k] - expected).abs() < 5e-4, "k=+{k}: {}", g[20 + k]);
        }
        assert_eq!(g[9], 0.0);
        assert_eq!(g[31], 0.0);
        // The target's peak is found by the refinement's own peak finder.
        assert_eq!(boundary_peaks(&g, 0.5), vec![0, 20]);
    }

    #[test]
    fn target_keeps_every_peak_and_pads_with_zeros() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
        let g = boundary_target_with(&labels, 14, 6.0, 10);
        assert_eq!(g.len(), 14);
        assert_eq!((g[4], g[7]), (1.0, 1.0));
        assert!(g[5] < 1.0 && g[6] < 1.0);
        assert!(g[10..].iter().all(|&v| v == 0.0));
        assert_eq!(boundary_peaks(&g, 0.5), vec![0, 4, 7]);
        assert!(boundary_target(&[2; 8]).iter().all(|&v| v == 0.0));
    }
}
