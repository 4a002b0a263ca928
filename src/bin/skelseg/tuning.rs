//! `skelseg calibrate --stream`: chooses a model's streaming segmenter settings on its
//! validation recordings and records them in its checkpoint (`stream`, `StreamTuning`).

use anyhow::Result;
use serde::Serialize;
use skelseg::Model;
use skelseg::io::Recording;
use skelseg::model::checkpoint::{CheckpointMeta, StreamTuning};
use skelseg::online::{OnlineReport, evaluate_segmenters};
use skelseg::stream::{SegmentRule, SegmenterConfig, StreamConfig};

/// θ values tried for both rules.
const THETAS: [f32; 3] = [0.6, 0.75, 0.85];
/// Minimum-length factors tried for the candidate rule, and for the majority rule.
const CANDIDATE_FACTORS: [f64; 3] = [0.125, 0.25, 0.5];
const MAJORITY_FACTORS: [f64; 2] = [0.125, 0.25];
/// Peakless factors tried for the majority rule.
const PEAKLESS: [f32; 2] = [4.0, 8.0];

/// One setting's online figures on the validation recordings.
#[derive(Debug, Serialize)]
pub struct Candidate {
    pub rule: SegmentRule,
    pub min_mean_prob: f32,
    pub min_len_factor: f64,
    /// Majority rule only.
    pub peakless_factor: Option<f32>,
    pub f1_50: f64,
    pub edit: f64,
    pub acc: f64,
    pub delay_mean_frames: f64,
    pub delay_p95_frames: f64,
    pub overseg_ratio: f64,
}

/// The grid, the limit it was held to, and the choice.
#[derive(Debug, Serialize)]
pub struct StreamChoice {
    /// The rule the choice follows, in words.
    pub rule: String,
    /// Largest p95 emission delay (frames) a setting may have.
    pub max_delay_p95_frames: f64,
    pub candidates: Vec<Candidate>,
    /// Index into `candidates`.
    pub chosen: usize,
}

impl StreamChoice {
    /// The chosen setting as a checkpoint's `stream` block, with the grid for the record.
    pub fn tuning(&self, data: &str) -> StreamTuning {
        let c = &self.candidates[self.chosen];
        StreamTuning {
            min_mean_prob: Some(c.min_mean_prob),
            min_len_factor: Some(c.min_len_factor),
            rule: Some(c.rule),
            peakless_factor: c.peakless_factor,
            chosen: serde_json::json!({
                "data": data,
                "rule": self.rule,
                "command": std::env::args().collect::<Vec<_>>().join(" "),
                "candidates": self.candidates,
            }),
        }
    }
}

/// Streams `recs` once through `model` (library default window, hop and lookahead), replays the
/// grid of segmenter settings over the finalised frames, and picks the best online F1@50 whose
/// p95 emission delay is at most `max_p95` frames (default: twice the library defaults' p95 on
/// the same recordings); ties go to the shorter mean delay.
pub fn choose(
    model: Model,
    meta: &CheckpointMeta,
    recs: &[&Recording],
    max_p95: Option<f64>,
) -> Result<StreamChoice> {
    let base = StreamConfig::from_checkpoint(&CheckpointMeta { stream: None, ..meta.clone() });
    let setting = |rule, theta, factor, peakless: Option<f32>| {
        let cfg = SegmenterConfig {
            rule,
            min_mean_prob: theta,
            peakless_factor: peakless.unwrap_or(SegmenterConfig::default().peakless_factor),
            ..base.segmenter.clone()
        };
        (rule, theta, factor, peakless, cfg.tuned_for(meta, factor))
    };
    let mut grid = Vec::new();
    for theta in THETAS {
        for factor in CANDIDATE_FACTORS {
            grid.push(setting(SegmentRule::Candidate, theta, factor, None));
        }
        for factor in MAJORITY_FACTORS {
            for peakless in PEAKLESS {
                grid.push(setting(SegmentRule::Majority, theta, factor, Some(peakless)));
            }
        }
    }
    let configs: Vec<SegmenterConfig> = grid.iter().map(|g| g.4.clone()).collect();
    let reports = evaluate_segmenters(model, recs, &base, &configs)?;
    let candidates: Vec<Candidate> = grid
        .iter()
        .zip(&reports)
        .map(|(&(rule, theta, factor, peakless, _), r): (_, &OnlineReport)| Candidate {
            rule,
            min_mean_prob: theta,
            min_len_factor: factor,
            peakless_factor: peakless,
            f1_50: r.scores.f1_50,
            edit: r.scores.edit,
            acc: r.scores.acc,
            delay_mean_frames: r.delay_mean_frames,
            delay_p95_frames: r.delay_p95_frames,
            overseg_ratio: r.overseg_ratio,
        })
        .collect();
    // The library defaults (candidate rule, θ 0.6, factor 0.125) are in the grid; their delay
    // sets the default limit.
    let defaults = SegmenterConfig::default();
    let default_index = candidates
        .iter()
        .position(|c| {
            c.rule == SegmentRule::Candidate
                && c.min_mean_prob == defaults.min_mean_prob
                && c.min_len_factor == SegmenterConfig::MIN_LEN_FACTOR
        })
        .unwrap_or(0);
    let limit = max_p95.unwrap_or(2.0 * candidates[default_index].delay_p95_frames);
    // A NaN delay (no boundary matched) never passes the limit; with no setting inside it the
    // defaults stay. Full ties go to the earlier setting in the grid.
    let chosen = (0..candidates.len())
        .filter(|&i| candidates[i].delay_p95_frames <= limit)
        .min_by(|&a, &b| {
            let (x, y) = (&candidates[a], &candidates[b]);
            y.f1_50.total_cmp(&x.f1_50).then(x.delay_mean_frames.total_cmp(&y.delay_mean_frames))
        })
        .unwrap_or(default_index);
    Ok(StreamChoice {
        rule: format!(
            "best online F1@50 on these recordings with p95 emission delay at most {limit:.0} \
             frames; ties to the shorter mean delay"
        ),
        max_delay_p95_frames: limit,
        candidates,
        chosen,
    })
}
