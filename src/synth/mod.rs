//! Procedural Kinect v2 skeleton action generator: the project's own training data, fixtures and
//! live simulator.
//!
//! A subject (stature 1.5–1.95 m, proportions ±5 %) is posed by forward kinematics over the
//! Kinect v2 bone hierarchy (`body`); each of the 14 action classes is a parametric pose
//! trajectory (`actions`); a recording strings 8–14 of them together in random order with
//! background gaps and 0.2–0.4 s blended transitions (`sequence`), then places the person in
//! camera space (yaw ±45°, x ±0.8 m, z 1.8–3.5 m, floor near y = −1 m as in PKU-MMD) and adds
//! sensor noise, joint drop-outs and, in some recordings, a second person (body id 2) further
//! away. Everything is deterministic for a seed (ChaCha8).
//!
//! [`generate_dataset`] returns an in-memory [`Dataset`]; writing it in the PKU-MMD folder
//! convention is `io`'s job.

mod actions;
mod body;
mod sequence;
mod sim;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::{Body, Frame};
use crate::io::{ClassMap, Dataset, Recording};
use crate::skeleton::Layout;

pub use sim::Simulator;

use actions::Action;
use sequence::{Camera, Performer, Placement, Sensor};

/// The class map of synthetic data: id 0 = `background`, then the 14 actions.
pub fn classes() -> ClassMap {
    let mut names = vec!["background".to_string()];
    names.extend(Action::ALL.iter().map(|a| a.name().to_string()));
    ClassMap::new(names)
}

/// Settings of the generator. Every field has a default, so a partial JSON object loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of recordings [`generate_dataset`] makes.
    pub sequences: usize,
    /// Base seed; recording `i` uses [`recording_seed`]`(seed, i)`.
    pub seed: u64,
    /// Fewest actions per recording.
    pub min_actions: usize,
    /// Most actions per recording.
    pub max_actions: usize,
    /// Frame rate (PKU-MMD: 30).
    pub fps: f64,
    /// Probability that a recording has a second person in view.
    pub second_person_prob: f64,
    /// Standard deviation of the joint noise at 2.5 m, metres (it grows with depth squared).
    pub noise_m: f32,
    /// Probability per frame and body that a limb joint drops out for 2–8 frames.
    pub dropout_prob: f64,
    /// Probability of a background gap after an action (otherwise the next action follows
    /// directly).
    pub gap_prob: f64,
    /// Shortest background gap, seconds.
    pub min_gap_secs: f64,
    /// Longest background gap, seconds.
    pub max_gap_secs: f64,
    /// Draw actions from the first this many of the 14 (0 = all; at least 2), for small
    /// custom-data stand-ins with a handful of classes.
    pub actions: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            sequences: 100,
            seed: 0,
            min_actions: 8,
            max_actions: 14,
            fps: 30.0,
            second_person_prob: 0.3,
            noise_m: 0.007,
            dropout_prob: 0.02,
            gap_prob: 0.6,
            min_gap_secs: 0.6,
            max_gap_secs: 3.0,
            actions: 0,
        }
    }
}

impl SynthConfig {
    /// Rejects settings the generator cannot honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::invalid("synth config", message));
        if !(self.fps.is_finite() && self.fps >= 1.0 && self.fps <= 1000.0) {
            return bad(format!("fps must be in 1..=1000, found {}", self.fps));
        }
        if self.min_actions == 0 || self.min_actions > self.max_actions {
            return bad(format!(
                "need 1 <= min_actions <= max_actions, found {}..{}",
                self.min_actions, self.max_actions
            ));
        }
        if self.max_actions > 10_000 {
            return bad(format!("max_actions {} is absurd (at most 10000)", self.max_actions));
        }
        for (name, p) in [
            ("second_person_prob", self.second_person_prob),
            ("dropout_prob", self.dropout_prob),
            ("gap_prob", self.gap_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} must be a probability, found {p}"));
            }
        }
        if !(self.noise_m.is_finite() && (0.0..=0.5).contains(&self.noise_m)) {
            return bad(format!("noise_m must be in 0..=0.5 m, found {}", self.noise_m));
        }
        if !(self.min_gap_secs.is_finite()
            && self.min_gap_secs > 0.0
            && self.min_gap_secs <= self.max_gap_secs
            && self.max_gap_secs <= 60.0)
        {
            return bad(format!(
                "need 0 < min_gap_secs <= max_gap_secs <= 60, found {}..{}",
                self.min_gap_secs, self.max_gap_secs
            ));
        }
        Ok(())
    }

    /// A copy with every value forced into the range [`SynthConfig::validate`] accepts, so the
    /// generator never panics on a bad setting.
    pub(crate) fn sanitized(&self) -> SynthConfig {
        let prob = |p: f64| if p.is_finite() { p.clamp(0.0, 1.0) } else { 0.0 };
        let fps = if self.fps.is_finite() { self.fps.clamp(1.0, 1000.0) } else { 30.0 };
        let min_actions = self.min_actions.clamp(1, 10_000);
        let max_actions = self.max_actions.clamp(min_actions, 10_000);
        let min_gap =
            if self.min_gap_secs.is_finite() { self.min_gap_secs.clamp(0.1, 60.0) } else { 0.6 };
        let max_gap = if self.max_gap_secs.is_finite() {
            self.max_gap_secs.clamp(min_gap, 60.0)
        } else {
            min_gap
        };
        SynthConfig {
            fps,
            min_actions,
            max_actions,
            second_person_prob: prob(self.second_person_prob),
            dropout_prob: prob(self.dropout_prob),
            gap_prob: prob(self.gap_prob),
            noise_m: if self.noise_m.is_finite() { self.noise_m.clamp(0.0, 0.5) } else { 0.0 },
            min_gap_secs: min_gap,
            max_gap_secs: max_gap,
            ..self.clone()
        }
    }
}

/// Seed of recording `index` of a dataset with base seed `base` (SplitMix64 mixing, so nearby
/// indices give unrelated streams).
pub fn recording_seed(base: u64, index: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(base ^ mix(index))
}

/// One labelled recording: frames (main person = body id 1, listed first; a second person =
/// body id 2) and the intervals of the main person's actions in [`classes`] ids (0-based
/// inclusive frames; background intervals are omitted).
pub fn generate_recording(cfg: &SynthConfig, seed: u64, name: &str) -> Recording {
    let cfg = cfg.sanitized();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Separate streams so that the noise does not shift the plan and vice versa.
    let mut noise_rng = ChaCha8Rng::seed_from_u64(rng.r#gen());
    let camera = Camera::sample(&mut rng);
    let mut main = Performer::new(&mut rng);
    main.plan_recording(&mut rng, &cfg);
    let main_place = Placement::main(&mut rng);
    let n_frames = (main.planned_until() * cfg.fps).ceil() as usize;

    // The second person: idle or doing their own actions, in view for all or part of the time.
    let second = rng.gen_bool(cfg.second_person_prob).then(|| {
        let mut other = Performer::new(&mut rng);
        if rng.gen_bool(0.5) {
            other.plan_idle(&mut rng, main.planned_until());
        } else {
            other.plan_recording(&mut rng, &cfg);
        }
        let place = Placement::beside(&mut rng, &main_place);
        let span = if rng.gen_bool(0.5) {
            (0, n_frames)
        } else {
            let first = rng.gen_range(0..=n_frames / 2);
            let last = rng.gen_range((first + 2 * n_frames / 5).min(n_frames)..=n_frames);
            (first, last)
        };
        (other, place, span)
    });

    let mut main_sensor = Sensor::new(cfg.noise_m, cfg.dropout_prob);
    let mut other_sensor = Sensor::new(cfg.noise_m, cfg.dropout_prob);
    let frames = (0..n_frames)
        .map(|i| {
            let t = i as f64 / cfg.fps;
            let clean = main.positions_at(t).map(|p| main_place.camera_point(&camera, p));
            let joints = main_sensor.observe(&mut noise_rng, &clean, main_place.depth());
            let mut bodies = vec![Body { id: 1, joints }];
            if let Some((other, place, (first, last))) = &second
                && (*first..*last).contains(&i)
            {
                let clean = other.positions_at(t).map(|p| place.camera_point(&camera, p));
                let joints = other_sensor.observe(&mut noise_rng, &clean, place.depth());
                bodies.push(Body { id: 2, joints });
            }
            Frame { index: i as u64, timestamp_secs: t, bodies }
        })
        .collect();
    Recording {
        name: name.to_string(),
        source_layout: Layout::KinectV2_25,
        fps: cfg.fps,
        frames,
        intervals: Some(main.intervals(cfg.fps, n_frames)),
    }
}

/// `cfg.sequences` recordings named `synth_0000`, `synth_0001`, ... with splits `train`, `val`,
/// `test` (70 / 15 / 15 %, in index order; every recording is an independent draw).
pub fn generate_dataset(cfg: &SynthConfig) -> Dataset {
    let n = cfg.sequences;
    let recordings: Vec<Recording> = (0..n)
        .map(|i| {
            let name = format!("synth_{i:04}");
            generate_recording(cfg, recording_seed(cfg.seed, i as u64), &name)
        })
        .collect();
    let n_val = (n as f64 * 0.15).round() as usize;
    let n_test = (n as f64 * 0.15).round() as usize;
    let n_train = n.saturating_sub(n_val + n_test);
    let names: Vec<String> = recordings.iter().map(|r| r.name.clone()).collect();
    let mut splits = BTreeMap::new();
    splits.insert("train".to_string(), names[..n_train].to_vec());
    splits.insert("val".to_string(), names[n_train..n_train + n_val].to_vec());
    splits.insert("test".to_string(), names[n_train + n_val..].to_vec());
    let frames: usize = recordings.iter().map(|r| r.frames.len()).sum();
    tracing::info!(recordings = n, frames, seed = cfg.seed, "generated synthetic dataset");
    Dataset { classes: classes(), recordings, splits }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Tracking;
    use crate::skeleton::kinect_v2::{BONES, joint as j};

    fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    fn median(mut v: Vec<f32>) -> f32 {
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    }

    fn quiet() -> SynthConfig {
        SynthConfig { noise_m: 0.0, dropout_prob: 0.0, ..SynthConfig::default() }
    }

    #[test]
    fn class_map_has_background_and_at_least_12_actions() {
        let c = classes();
        assert_eq!(c.name(0), Some("background"));
        assert!(c.len() >= 13);
        assert_eq!(c.id("wave_left"), Some(Action::WaveLeft.class_id()));
        assert_eq!(c.id("phone_call"), Some(c.len() - 1));
        let mut names = c.names().to_vec();
        names.dedup();
        assert_eq!(names.len(), c.len());
    }

    #[test]
    fn same_seed_same_recording_other_seed_differs() {
        let cfg = SynthConfig::default();
        let a = generate_recording(&cfg, 42, "a");
        let b = generate_recording(&cfg, 42, "a");
        assert_eq!(a, b);
        let c = generate_recording(&cfg, 43, "a");
        assert_ne!(a.frames, c.frames);
        assert_ne!(a.intervals, c.intervals);
        assert_ne!(recording_seed(0, 1), recording_seed(0, 2));
        assert_ne!(recording_seed(0, 1), recording_seed(1, 1));
    }

    #[test]
    fn recordings_are_well_formed() {
        let cfg = SynthConfig::default();
        for seed in 0..8 {
            let rec = generate_recording(&cfg, recording_seed(7, seed), "r");
            let secs = rec.frames.len() as f64 / rec.fps;
            assert!((20.0..=90.0).contains(&secs), "{secs} s");
            for (i, f) in rec.frames.iter().enumerate() {
                assert_eq!(f.index, i as u64);
                assert!((f.timestamp_secs - i as f64 / 30.0).abs() < 1e-9);
                assert!(f.first_invalid_joint(8.0).is_none(), "frame {i}");
                assert!(!f.bodies.is_empty() && f.bodies.len() <= 2);
                assert_eq!(f.bodies[0].id, 1);
            }
            let iv = rec.intervals.as_ref().expect("labelled");
            assert!(iv.len() >= cfg.min_actions && iv.len() <= cfg.max_actions);
            // Ordered, non-overlapping, within the recording, 1–5 s long.
            for w in iv.windows(2) {
                assert!(w[0].end < w[1].start);
                assert_ne!(w[0].class, w[1].class, "same action twice in a row");
            }
            for i in iv {
                assert!(i.class >= 1 && i.class < classes().len());
                assert!(i.end < rec.frames.len());
                let secs = (i.end - i.start + 1) as f64 / rec.fps;
                assert!((1.0 - 1.0 / 30.0..=5.0 + 1.0 / 30.0).contains(&secs), "{secs} s");
            }
            // Background before the first and after the last action; actions cover most.
            assert!(iv[0].start >= 29);
            assert!(iv[iv.len() - 1].end + 29 < rec.frames.len());
            let labels = rec.frame_labels().expect("labelled");
            let action_share =
                labels.iter().filter(|&&l| l != 0).count() as f64 / labels.len() as f64;
            assert!((0.4..0.95).contains(&action_share), "action share {action_share}");
        }
    }

    #[test]
    fn a_100_sequence_dataset_has_every_class_and_70_15_15_splits() {
        let cfg = SynthConfig { sequences: 100, seed: 3, ..SynthConfig::default() };
        let start = std::time::Instant::now();
        let ds = generate_dataset(&cfg);
        let frames: usize = ds.recordings.iter().map(|r| r.frames.len()).sum();
        let fps = frames as f64 / start.elapsed().as_secs_f64();
        // Printed for the record only: speed is for benchmarks, not for a test on a busy machine.
        eprintln!("generated {frames} frames at {fps:.0} frames/s");
        assert_eq!(ds.recordings.len(), 100);
        assert_eq!(ds.recordings[7].name, "synth_0007");
        assert_eq!(ds.splits["train"].len(), 70);
        assert_eq!(ds.splits["val"].len(), 15);
        assert_eq!(ds.splits["test"].len(), 15);
        let mut count = vec![0usize; ds.classes.len()];
        for r in &ds.recordings {
            for i in r.intervals.as_ref().expect("labelled") {
                count[i.class] += 1;
            }
        }
        for (c, n) in count.iter().enumerate().skip(1) {
            assert!(*n > 30, "class {} appears {n} times", ds.classes.name(c).unwrap_or("?"));
        }
        let with_two =
            ds.recordings.iter().filter(|r| r.frames.iter().any(|f| f.bodies.len() == 2));
        let with_two = with_two.count();
        assert!((15..=45).contains(&with_two), "{with_two} recordings with a second person");
        // Drop-outs are marked.
        let flagged = ds.recordings[0]
            .frames
            .iter()
            .flat_map(|f| f.bodies[0].joints.iter())
            .filter(|jt| jt.tracking != Tracking::Tracked)
            .count();
        assert!(flagged > 0);
        // Same recording from the dataset and from its seed.
        let again = generate_recording(&cfg, recording_seed(3, 5), "synth_0005");
        assert_eq!(again, ds.recordings[5]);
    }

    #[test]
    fn bone_lengths_are_constant_within_a_body() {
        let rec = generate_recording(&quiet(), 11, "q");
        for (a, b) in BONES {
            let lengths: Vec<f32> = rec
                .frames
                .iter()
                .map(|f| dist(f.bodies[0].joints[a].pos, f.bodies[0].joints[b].pos))
                .collect();
            let min = lengths.iter().copied().fold(f32::MAX, f32::min);
            let max = lengths.iter().copied().fold(0.0, f32::max);
            assert!(max - min < 1e-3, "bone {a}-{b} varies {min}..{max}");
        }
        // With noise the spread stays at the noise level.
        let rec = generate_recording(&SynthConfig::default(), 11, "n");
        let lengths: Vec<f32> = rec
            .frames
            .iter()
            .map(|f| {
                dist(f.bodies[0].joints[j::SPINE_BASE].pos, f.bodies[0].joints[j::SPINE_MID].pos)
            })
            .collect();
        let m = median(lengths.clone());
        let mad = median(lengths.iter().map(|l| (l - m).abs()).collect());
        assert!(mad < 0.02, "median absolute deviation {mad}");
    }

    /// Reads the real PKU-MMD file: body 1 of every frame.
    fn real_pku_body1() -> Vec<[[f32; 3]; 25]> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pku-mmd/A10N08-L.txt");
        let text = std::fs::read_to_string(path).expect("real PKU-MMD file");
        text.lines()
            .map(|line| {
                let v: Vec<f32> =
                    line.split_whitespace().map(|s| s.parse().expect("float")).collect();
                std::array::from_fn(|k| [v[3 * k], v[3 * k + 1], v[3 * k + 2]])
            })
            .collect()
    }

    #[test]
    #[ignore = "needs ../shared/data (real datasets, not redistributable)"]
    fn bone_lengths_and_ranges_match_real_pku_mmd_data() {
        let real = real_pku_body1();
        let ds = generate_dataset(&SynthConfig { sequences: 6, seed: 1, ..SynthConfig::default() });
        let synth: Vec<[[f32; 3]; 25]> = ds
            .recordings
            .iter()
            .flat_map(|r| r.frames.iter().map(|f| f.bodies[0].positions()))
            .collect();
        for (a, b) in [
            (j::SPINE_BASE, j::SPINE_MID),
            (j::SHOULDER_LEFT, j::ELBOW_LEFT),
            (j::HIP_RIGHT, j::KNEE_RIGHT),
        ] {
            let r = median(real.iter().map(|p| dist(p[a], p[b])).collect());
            let s = median(synth.iter().map(|p| dist(p[a], p[b])).collect());
            assert!((s / r - 1.0).abs() < 0.25, "bone {a}-{b}: synthetic {s} vs real {r}");
        }
        // Coordinate ranges: feet near y = -1..-0.6, head around +0.5..+1.3, depth in 1.5..4.5.
        let foot_y = median(synth.iter().map(|p| p[j::FOOT_LEFT][1]).collect());
        let real_foot_y = median(real.iter().map(|p| p[j::FOOT_LEFT][1]).collect());
        assert!((foot_y - real_foot_y).abs() < 0.3, "foot y {foot_y} vs real {real_foot_y}");
        let head_y = median(synth.iter().map(|p| p[j::HEAD][1]).collect());
        let real_head_y = median(real.iter().map(|p| p[j::HEAD][1]).collect());
        assert!((head_y - real_head_y).abs() < 0.35, "head y {head_y} vs real {real_head_y}");
        for p in &synth {
            assert!(p[j::SPINE_BASE][2] > 1.5 && p[j::SPINE_BASE][2] < 4.5);
        }
        // Same handedness as the real data: the left shoulder at smaller x on average.
        let dx = |d: &[[[f32; 3]; 25]]| {
            d.iter().map(|p| p[j::SHOULDER_LEFT][0] - p[j::SHOULDER_RIGHT][0]).sum::<f32>()
                / d.len() as f32
        };
        assert!(dx(&real) < 0.0 && dx(&synth) < 0.0);
    }

    /// Per-interval features in a body-aligned frame: mean and spread of joint positions
    /// relative to SpineBase (rotated so the hips lie along x), mean joint speeds, and the mean
    /// hand distance.
    fn features(rec: &Recording, start: usize, end: usize) -> Vec<f32> {
        let n = (end - start + 1) as f32;
        let mut mean = vec![0.0f32; 75];
        let mut sq = vec![0.0f32; 75];
        let mut speed = vec![0.0f32; 25];
        for i in start..=end {
            let p = rec.frames[i].bodies[0].positions();
            let hip =
                [p[j::HIP_RIGHT][0] - p[j::HIP_LEFT][0], p[j::HIP_RIGHT][2] - p[j::HIP_LEFT][2]];
            let norm = (hip[0] * hip[0] + hip[1] * hip[1]).sqrt().max(1e-6);
            let (c, s) = (hip[0] / norm, hip[1] / norm);
            for k in 0..25 {
                let rel = [p[k][0] - p[0][0], p[k][1] - p[0][1], p[k][2] - p[0][2]];
                let aligned = [c * rel[0] + s * rel[2], rel[1], -s * rel[0] + c * rel[2]];
                for a in 0..3 {
                    mean[3 * k + a] += aligned[a] / n;
                    sq[3 * k + a] += aligned[a] * aligned[a] / n;
                }
                if i > start {
                    speed[k] += dist(p[k], rec.frames[i - 1].bodies[0].joints[k].pos) / n;
                }
            }
        }
        let spread: Vec<f32> =
            mean.iter().zip(&sq).map(|(m, s)| (s - m * m).max(0.0).sqrt()).collect();
        mean.into_iter().chain(spread).chain(speed.into_iter().map(|v| v * 10.0)).collect()
    }

    #[test]
    fn a_nearest_centroid_classifier_separates_the_actions() {
        let cfg = SynthConfig { sequences: 50, seed: 21, ..SynthConfig::default() };
        let ds = generate_dataset(&cfg);
        let n_classes = ds.classes.len();
        let samples: Vec<(usize, Vec<f32>, bool)> = ds
            .recordings
            .iter()
            .enumerate()
            .flat_map(|(r, rec)| {
                rec.intervals
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |i| (i.class, features(rec, i.start, i.end), r < 35))
            })
            .collect();
        let dim = samples[0].1.len();
        let mut centroid = vec![vec![0.0f32; dim]; n_classes];
        let mut count = vec![0usize; n_classes];
        for (c, f, train) in &samples {
            if *train {
                count[*c] += 1;
                for (a, b) in centroid[*c].iter_mut().zip(f) {
                    *a += b;
                }
            }
        }
        for (cen, n) in centroid.iter_mut().zip(&count) {
            for v in cen.iter_mut() {
                *v /= (*n).max(1) as f32;
            }
        }
        let (mut right, mut total) = (0, 0);
        let mut confusion = vec![vec![0usize; n_classes]; n_classes];
        for (c, f, train) in &samples {
            if *train {
                continue;
            }
            let guess = (1..n_classes)
                .min_by(|&a, &b| {
                    let d = |k: usize| {
                        centroid[k].iter().zip(f).map(|(x, y)| (x - y).powi(2)).sum::<f32>()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap_or(0);
            confusion[*c][guess] += 1;
            right += usize::from(guess == *c);
            total += 1;
        }
        let acc = right as f64 / total as f64;
        eprintln!("nearest-centroid accuracy {acc:.3} on {total} held-out intervals");
        for (c, row) in confusion.iter().enumerate().skip(1) {
            eprintln!("{:>12} {:?}", ds.classes.name(c).unwrap_or("?"), &row[1..]);
        }
        // Chance is 1/14.
        assert!(acc > 0.6, "accuracy {acc}");
    }

    #[test]
    fn hard_pairs_differ_in_the_recorded_stream() {
        let ds = generate_dataset(&SynthConfig { sequences: 20, seed: 5, ..quiet() });
        let (wl, wr) = (Action::WaveLeft.class_id(), Action::WaveRight.class_id());
        let (kl, kr) = (Action::KickLeft.class_id(), Action::KickRight.class_id());
        let mut checked = 0;
        for rec in &ds.recordings {
            for iv in rec.intervals.as_ref().expect("labelled") {
                let path = |joint: usize| -> f32 {
                    (iv.start + 1..=iv.end)
                        .map(|i| {
                            dist(
                                rec.frames[i].bodies[0].joints[joint].pos,
                                rec.frames[i - 1].bodies[0].joints[joint].pos,
                            )
                        })
                        .sum()
                };
                let (more, less) = match iv.class {
                    c if c == wl => (j::WRIST_LEFT, j::WRIST_RIGHT),
                    c if c == wr => (j::WRIST_RIGHT, j::WRIST_LEFT),
                    c if c == kl => (j::ANKLE_LEFT, j::ANKLE_RIGHT),
                    c if c == kr => (j::ANKLE_RIGHT, j::ANKLE_LEFT),
                    _ => continue,
                };
                assert!(path(more) > 2.0 * path(less), "{} in {}", iv.class, rec.name);
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} intervals checked");
    }

    /// The settings `fixtures/synth/README.md` names.
    fn fixture_config() -> SynthConfig {
        SynthConfig {
            sequences: 4,
            seed: 2024,
            min_actions: 3,
            max_actions: 5,
            second_person_prob: 0.5,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn fixtures_are_what_the_generator_makes_now() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/synth");
        let ds = generate_dataset(&fixture_config());
        for rec in &ds.recordings {
            let skeleton = std::fs::read_to_string(format!("{dir}/skeleton/{}.txt", rec.name))
                .expect("fixture skeleton file");
            let lines: Vec<&str> = skeleton.lines().collect();
            assert_eq!(lines.len(), rec.frames.len(), "{}: regenerate fixtures/synth", rec.name);
            for (line, frame) in lines.iter().zip(&rec.frames) {
                let v: Vec<f32> =
                    line.split_whitespace().map(|s| s.parse().expect("float")).collect();
                assert_eq!(v.len(), 150);
                for (k, joint) in frame.bodies[0].joints.iter().enumerate() {
                    for a in 0..3 {
                        assert!((v[3 * k + a] - joint.pos[a]).abs() < 1e-6, "regenerate fixtures");
                    }
                }
            }
            // Label files: `class,start,end,confidence` with 1-based frames.
            let labels = std::fs::read_to_string(format!("{dir}/label/{}.txt", rec.name))
                .expect("fixture label file");
            let expected: String = rec
                .intervals
                .iter()
                .flatten()
                .map(|i| format!("{},{},{},1\n", i.class, i.start + 1, i.end + 1))
                .collect();
            assert_eq!(labels, expected, "{}: regenerate fixtures/synth", rec.name);
        }
    }

    #[test]
    fn config_validation_and_serde_defaults() {
        assert!(SynthConfig::default().validate().is_ok());
        let bad = SynthConfig { min_actions: 5, max_actions: 2, ..SynthConfig::default() };
        assert!(bad.validate().is_err());
        assert!(SynthConfig { fps: 0.0, ..SynthConfig::default() }.validate().is_err());
        assert!(SynthConfig { gap_prob: 1.5, ..SynthConfig::default() }.validate().is_err());
        // Bad settings never panic the generator.
        let weird = SynthConfig {
            fps: f64::NAN,
            min_actions: 0,
            max_actions: 0,
            gap_prob: -1.0,
            min_gap_secs: 9.0,
            max_gap_secs: 1.0,
            ..SynthConfig::default()
        };
        let rec = generate_recording(&weird, 1, "w");
        assert!(!rec.frames.is_empty());
        let cfg: SynthConfig =
            serde_json::from_str(r#"{"sequences": 3, "seed": 9}"#).expect("partial config");
        assert_eq!(cfg.sequences, 3);
        assert_eq!(cfg.fps, 30.0);
    }
}
