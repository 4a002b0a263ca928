//! The segmenter's settings ([`SegmenterConfig`]) and how a checkpoint sets them: the rule, θ,
//! the minimum lengths per class from its training data and the boundary threshold and stream
//! settings chosen for it on validation data.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::checkpoint::CheckpointMeta;

/// How the segmenter decides that a new label begins.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentRule {
    /// A run of a new label takes over when a boundary peak backs it and it has held
    /// `boundary_min_frames`, or when it has held its minimum length with mean probability ≥ θ.
    /// Short delays; spurious short segments when the model hesitates.
    #[default]
    Candidate,
    /// Boundary peaks cut pieces; each piece takes its majority label, decided early once the
    /// leading label has held its minimum length with mean probability ≥ θ. Close to offline
    /// refinement; longer delays.
    Majority,
}

/// Segmenter settings. All lengths are in frames.
///
/// The default knows nothing of the model; [`SegmenterConfig::tuned_for`] (or
/// [`crate::stream::StreamConfig::from_checkpoint`]) adds what a checkpoint knows: its boundary
/// threshold and per-class minimum lengths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmenterConfig {
    /// Mean probability a candidate needs to take over without a boundary peak (θ).
    pub min_mean_prob: f32,
    /// Frames a candidate must hold to take over without a boundary peak. Per-class values in
    /// `min_frames_per_class` override it.
    pub min_frames: usize,
    /// Optional per-class minimum lengths (index = class id), e.g. σ × the mean training
    /// segment length of each class.
    pub min_frames_per_class: Vec<usize>,
    /// Frames a boundary-backed candidate must hold.
    pub boundary_min_frames: usize,
    /// A frame is a boundary peak when its boundary probability is at least this and above both
    /// neighbours'. 1.0 or more turns peaks off (the plain argmax, as in offline evaluation).
    pub boundary_threshold: f32,
    /// A peak counts for a candidate when it lies within this many frames of the candidate's start.
    pub boundary_radius: usize,
    /// Emit a [`SegmentEvent::FrameLabel`](crate::stream::SegmentEvent::FrameLabel) for every
    /// finalised frame.
    pub per_frame: bool,
    /// After this many consecutive frames without any body, the open segment is closed and
    /// nothing is segmented until someone is back (0 = never).
    pub person_timeout_frames: usize,
    /// Which rule decides a new label.
    pub rule: SegmentRule,
    /// [`SegmentRule::Majority`] only: a label held without a boundary peak takes over after
    /// this many times its minimum length (with mean probability ≥ θ); it recovers boundaries
    /// the peaks miss. 0 turns it off.
    pub peakless_factor: f32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            min_mean_prob: 0.6,
            min_frames: 12,
            min_frames_per_class: Vec::new(),
            boundary_min_frames: 4,
            boundary_threshold: 0.5,
            boundary_radius: 4,
            per_frame: false,
            person_timeout_frames: 30,
            rule: SegmentRule::Candidate,
            peakless_factor: 4.0,
        }
    }
}

/// What a checkpoint chose for its segmenter on validation data, with the library defaults for
/// anything it does not record ([`SegmenterConfig::checkpoint_choices`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmenterChoices {
    /// θ ([`SegmenterConfig::min_mean_prob`]).
    pub min_mean_prob: f32,
    /// A class's minimum length as a fraction of its mean training segment length.
    pub min_len_factor: f64,
    /// The rule.
    pub rule: SegmentRule,
    /// [`SegmenterConfig::peakless_factor`].
    pub peakless_factor: f32,
}

impl SegmenterConfig {
    /// The σ of [`SegmenterConfig::tuned_for`] that the library and the CLI use unless told
    /// otherwise: a class's minimum length is this fraction of its mean training segment length.
    pub const MIN_LEN_FACTOR: f64 = 0.125;
    /// The shortest per-class minimum length [`SegmenterConfig::tuned_for`] sets, in frames.
    pub const MIN_CLASS_FRAMES: usize = 4;

    /// θ, the minimum-length factor and the rule for the checkpoint `meta`: the ones chosen for
    /// it on validation data ([`CheckpointMeta::stream`]), else the defaults (those of
    /// [`SegmenterConfig::default`], [`SegmenterConfig::MIN_LEN_FACTOR`]).
    pub fn checkpoint_choices(meta: &CheckpointMeta) -> SegmenterChoices {
        let tuning = meta.stream.as_ref();
        let defaults = SegmenterConfig::default();
        SegmenterChoices {
            min_mean_prob: tuning.and_then(|t| t.min_mean_prob).unwrap_or(defaults.min_mean_prob),
            min_len_factor: tuning.and_then(|t| t.min_len_factor).unwrap_or(Self::MIN_LEN_FACTOR),
            rule: tuning.and_then(|t| t.rule).unwrap_or(defaults.rule),
            peakless_factor: tuning
                .and_then(|t| t.peakless_factor)
                .unwrap_or(defaults.peakless_factor),
        }
    }

    /// These settings with what the checkpoint `meta` knows: the boundary threshold chosen on
    /// validation data, and a minimum length per class of `min_len_factor` × its mean segment
    /// length in the training data (`mean_segment_frames` in the checkpoint's data summary), at
    /// least [`SegmenterConfig::MIN_CLASS_FRAMES`]; `min_frames` stays for classes without one.
    /// Without `mean_segment_frames` the per-class lengths are left as they are.
    pub fn tuned_for(mut self, meta: &CheckpointMeta, min_len_factor: f64) -> Self {
        self.boundary_threshold = meta.model.boundary_threshold as f32;
        let Some(means) = meta.data.get("mean_segment_frames") else { return self };
        let Ok(means) = serde_json::from_value::<Vec<f64>>(means.clone()) else {
            tracing::warn!(
                "the checkpoint's mean_segment_frames is not a list of numbers; ignored"
            );
            return self;
        };
        if means.len() != meta.classes.len() {
            tracing::warn!(
                means = means.len(),
                classes = meta.classes.len(),
                "the checkpoint's mean_segment_frames does not have one value per class"
            );
        }
        self.min_frames_per_class = means
            .iter()
            .map(|&m| {
                if m > 0.0 {
                    ((m * min_len_factor).round() as usize).max(Self::MIN_CLASS_FRAMES)
                } else {
                    self.min_frames
                }
            })
            .collect();
        self
    }

    /// Rejects settings that cannot work, naming the field: probabilities and thresholds must be
    /// finite (a NaN threshold would silently turn every comparison false), lengths at least 1.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::invalid("segmenter config", message));
        if !(0.0..=1.0).contains(&self.min_mean_prob) {
            return bad(format!(
                "min_mean_prob must be within 0..=1, found {}",
                self.min_mean_prob
            ));
        }
        if !(self.boundary_threshold.is_finite() && self.boundary_threshold >= 0.0) {
            return bad(format!(
                "boundary_threshold must be finite and at least 0 (1 or more turns peaks off), found {}",
                self.boundary_threshold
            ));
        }
        if self.min_frames == 0 || self.boundary_min_frames == 0 {
            return bad(format!(
                "min_frames and boundary_min_frames must be at least 1, found {} and {}",
                self.min_frames, self.boundary_min_frames
            ));
        }
        if !(self.peakless_factor.is_finite() && self.peakless_factor >= 0.0) {
            return bad(format!(
                "peakless_factor must be finite and at least 0, found {}",
                self.peakless_factor
            ));
        }
        if let Some(class) = self.min_frames_per_class.iter().position(|&n| n == 0) {
            return bad(format!("min_frames_per_class[{class}] must be at least 1, found 0"));
        }
        Ok(())
    }

    pub(super) fn min_frames_for(&self, class: usize) -> usize {
        self.min_frames_per_class.get(class).copied().unwrap_or(self.min_frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_brings_its_threshold_and_per_class_lengths() {
        use crate::model::ModelConfig;
        let model =
            ModelConfig { num_classes: 4, boundary_threshold: 0.7, ..ModelConfig::default() };
        let classes = ["background", "a", "b", "c"].map(String::from).to_vec();
        let mut meta = CheckpointMeta::new(model, classes, "kinect_v2_25");
        let base = SegmenterConfig { min_frames: 9, ..SegmenterConfig::default() };
        // No training summary: only the threshold changes.
        let tuned = base.clone().tuned_for(&meta, 0.125);
        assert_eq!(tuned, SegmenterConfig { boundary_threshold: 0.7, ..base.clone() });
        // 0.125 × mean length, rounded, at least 4 frames; classes without a mean keep `min_frames`.
        meta.data = serde_json::json!({ "mean_segment_frames": [55.4, 100.0, 0.0, 20.0] });
        let tuned = base.tuned_for(&meta, 0.125);
        assert_eq!(tuned.min_frames_per_class, vec![7, 13, 9, 4]);
        assert_eq!(tuned.boundary_threshold, 0.7);
    }

    #[test]
    fn a_checkpoint_brings_the_theta_and_length_factor_chosen_for_it() {
        use crate::model::ModelConfig;
        use crate::model::checkpoint::StreamTuning;
        use crate::stream::StreamConfig;
        let model = ModelConfig { num_classes: 2, ..ModelConfig::default() };
        let mut meta = CheckpointMeta::new(model, vec!["background".into(), "a".into()], "x");
        meta.data = serde_json::json!({ "mean_segment_frames": [40.0, 100.0] });
        // Nothing chosen: the library defaults.
        let defaults = SegmenterConfig::checkpoint_choices(&meta);
        assert_eq!(
            defaults,
            SegmenterChoices {
                min_mean_prob: SegmenterConfig::default().min_mean_prob,
                min_len_factor: SegmenterConfig::MIN_LEN_FACTOR,
                rule: SegmentRule::Candidate,
                peakless_factor: 4.0,
            }
        );
        assert_eq!(StreamConfig::from_checkpoint(&meta).segmenter.min_frames_per_class, [5, 13]);
        // Chosen on validation: both reach the streaming settings.
        meta.stream = Some(StreamTuning {
            min_mean_prob: Some(0.75),
            min_len_factor: Some(0.5),
            rule: Some(SegmentRule::Majority),
            peakless_factor: Some(8.0),
            ..StreamTuning::default()
        });
        let cfg = StreamConfig::from_checkpoint(&meta).segmenter;
        assert_eq!(cfg.min_mean_prob, 0.75);
        assert_eq!(cfg.rule, SegmentRule::Majority);
        assert_eq!(cfg.peakless_factor, 8.0);
        assert_eq!(cfg.min_frames_per_class, [20, 50]);
        // Only one chosen: the other stays the default; and the block survives a JSON round trip.
        meta.stream = Some(StreamTuning { min_len_factor: Some(0.25), ..StreamTuning::default() });
        let back: CheckpointMeta =
            serde_json::from_str(&serde_json::to_string(&meta).expect("ser")).expect("de");
        assert_eq!(back.stream, meta.stream);
        let chosen = SegmenterConfig::checkpoint_choices(&back);
        assert_eq!((chosen.min_mean_prob, chosen.min_len_factor), (0.6, 0.25));
        assert_eq!(chosen.rule, SegmentRule::Candidate);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = SegmenterConfig::default();
        assert!(base.validate().is_ok());
        let cases = [
            (SegmenterConfig { min_mean_prob: f32::NAN, ..base.clone() }, "min_mean_prob"),
            (SegmenterConfig { min_mean_prob: 1.5, ..base.clone() }, "min_mean_prob"),
            (
                SegmenterConfig { boundary_threshold: f32::NAN, ..base.clone() },
                "boundary_threshold",
            ),
            (SegmenterConfig { boundary_threshold: -0.1, ..base.clone() }, "boundary_threshold"),
            (SegmenterConfig { min_frames: 0, ..base.clone() }, "min_frames"),
            (SegmenterConfig { boundary_min_frames: 0, ..base.clone() }, "boundary_min_frames"),
            (
                SegmenterConfig { min_frames_per_class: vec![3, 0], ..base.clone() },
                "min_frames_per_class[1]",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(Error::Invalid { what, message }) => {
                    assert_eq!(what, "segmenter config");
                    assert!(message.contains(field), "{field}: {message}");
                }
                other => panic!("{field}: expected an invalid-config error, got {other:?}"),
            }
        }
    }
}
