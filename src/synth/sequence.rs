//! Composition of a performer's timeline (actions, idle gaps, blended transitions), placement
//! in Kinect camera space, and the sensor model (noise and joint drop-outs).
//!
//! A transition blends the two neighbouring motions over 0.2–0.4 s centred on the segment
//! boundary; the label changes at that midpoint, which is where the interval boundary is put.

use std::collections::VecDeque;

use nalgebra::Rotation3;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::SynthConfig;
use super::actions::{Action, Motion, neutral_pose, smoothstep};
use super::body::{BodyShape, Pose, V3};
use crate::frame::{Joint, NUM_JOINTS, Tracking};
use crate::io::Interval;
use crate::skeleton::kinect_v2::{joint as j, parents};

/// One entry of a timeline.
#[derive(Clone, Debug)]
struct Segment {
    /// Start time in seconds.
    start: f64,
    /// Half-width of the blend with the previous segment, seconds.
    blend_half_s: f64,
    motion: Motion,
}

impl Segment {
    fn end(&self) -> f64 {
        self.start + f64::from(self.motion.duration)
    }
}

/// Slow, continuous sway added to every pose (sum of sines with per-person rates and phases).
#[derive(Clone, Debug)]
struct Sway {
    freq_hz: [f64; 6],
    phase: [f64; 6],
    scale: f32,
}

impl Sway {
    fn sample(rng: &mut impl Rng, scale: f32) -> Self {
        let base = [0.23, 0.57, 0.17, 0.05, 0.11, 0.31];
        Sway {
            freq_hz: base.map(|f| f * rng.gen_range(0.7..1.3)),
            phase: [(); 6].map(|_| rng.gen_range(0.0..std::f64::consts::TAU)),
            scale,
        }
    }

    fn apply(&self, pose: &mut Pose, t: f64) {
        let s =
            |i: usize| (std::f64::consts::TAU * self.freq_hz[i] * t + self.phase[i]).sin() as f32;
        let sc = self.scale;
        pose.shift[0] += 0.010 * sc * s(0) + 0.005 * sc * s(1);
        pose.shift[2] += 0.008 * sc * s(2);
        pose.head[2] += 0.12 * s(3);
        pose.head[0] += 0.04 * s(4);
        pose.chest[1] += 0.015 * s(5);
    }
}

/// One simulated person: body, style and a timeline of motions.
#[derive(Clone, Debug)]
pub(crate) struct Performer {
    body: BodyShape,
    neutral: Pose,
    /// Cycle-rate factor of this person.
    speed: f32,
    /// Movement amplitude factor of this person.
    amp: f32,
    sway: Sway,
    segments: VecDeque<Segment>,
    /// End of the last planned segment, seconds.
    planned_until: f64,
    last_action: Option<Action>,
}

impl Performer {
    /// A random person with an empty timeline.
    pub fn new(rng: &mut impl Rng) -> Self {
        let body = BodyShape::sample(rng);
        let neutral = neutral_pose(rng, &body);
        let sway = Sway::sample(rng, body.scale());
        Performer {
            body,
            neutral,
            speed: rng.gen_range(0.8..1.25),
            amp: rng.gen_range(0.85..1.15),
            sway,
            segments: VecDeque::new(),
            planned_until: 0.0,
            last_action: None,
        }
    }

    /// Number of segments held.
    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// End of the planned timeline in seconds.
    pub fn planned_until(&self) -> f64 {
        self.planned_until
    }

    fn push(&mut self, rng: &mut impl Rng, motion: Motion) {
        if let super::actions::MotionKind::Action(a) = motion.kind {
            self.last_action = Some(a);
        }
        self.segments.push_back(Segment {
            start: self.planned_until,
            blend_half_s: rng.gen_range(0.1..0.2),
            motion,
        });
        self.planned_until += f64::from(motion.duration);
    }

    fn push_idle(&mut self, rng: &mut impl Rng, min_s: f64, max_s: f64) {
        let d = if max_s > min_s { rng.gen_range(min_s..max_s) } else { min_s };
        let m = Motion::idle(rng, d as f32);
        self.push(rng, m);
    }

    /// Appends one random action among the first `actions` of [`Action::ALL`] (all when 0),
    /// never the same as the previous one.
    fn push_action(&mut self, rng: &mut impl Rng, actions: usize) {
        let pool =
            if actions == 0 { Action::ALL.len() } else { actions.clamp(2, Action::ALL.len()) };
        let choices: Vec<Action> =
            Action::ALL[..pool].iter().copied().filter(|a| Some(*a) != self.last_action).collect();
        let action = choices[rng.gen_range(0..choices.len())];
        let m = Motion::sample(rng, action, self.speed, self.amp);
        self.push(rng, m);
    }

    /// Plans a whole recording: background lead-in, `min_actions..=max_actions` actions with
    /// background gaps between some of them, background tail.
    pub fn plan_recording(&mut self, rng: &mut impl Rng, cfg: &SynthConfig) {
        self.push_idle(rng, 1.0, 3.0);
        let n = rng.gen_range(cfg.min_actions..=cfg.max_actions);
        for k in 0..n {
            self.push_action(rng, cfg.actions);
            if k + 1 < n && rng.gen_bool(cfg.gap_prob) {
                self.push_idle(rng, cfg.min_gap_secs, cfg.max_gap_secs);
            }
        }
        self.push_idle(rng, 1.0, 3.0);
    }

    /// Plans an idle-only timeline of at least `secs` seconds (weight shifts between pieces).
    pub fn plan_idle(&mut self, rng: &mut impl Rng, secs: f64) {
        while self.planned_until < secs {
            self.push_idle(rng, 2.0, 6.0);
        }
    }

    /// Keeps the endless timeline planned at least up to `t + 8 s`, and forgets segments that
    /// ended more than a second before `t`.
    pub fn plan_ahead(&mut self, rng: &mut impl Rng, cfg: &SynthConfig, t: f64) {
        if self.segments.is_empty() {
            self.push_idle(rng, 1.0, 2.0);
        }
        while self.planned_until < t + 8.0 {
            if rng.gen_bool(cfg.gap_prob) {
                self.push_idle(rng, cfg.min_gap_secs, cfg.max_gap_secs);
            }
            self.push_action(rng, cfg.actions);
        }
        while self.segments.len() > 2 && self.segments.get(1).is_some_and(|s| s.end() < t - 1.0) {
            self.segments.pop_front();
        }
    }

    /// Index of the segment holding time `t` (the first or last one outside the timeline).
    fn index_at(&self, t: f64) -> usize {
        let n = self.segments.len();
        let i = self.segments.partition_point(|s| s.start <= t);
        i.saturating_sub(1).min(n.saturating_sub(1))
    }

    /// Class being performed at time `t` (0 = background).
    pub fn class_at(&self, t: f64) -> usize {
        self.segments.get(self.index_at(t)).map_or(0, |s| s.motion.class())
    }

    /// Pose at time `t`, blended across segment boundaries, with sway.
    fn pose_at(&self, t: f64) -> Pose {
        let i = self.index_at(t);
        let Some(seg) = self.segments.get(i) else {
            return self.neutral;
        };
        let local = |s: &Segment| (t - s.start) as f32;
        let mut pose = seg.motion.pose(&self.body, &self.neutral, local(seg));
        if let Some(next) = self.segments.get(i + 1) {
            let (b, h) = (next.start, next.blend_half_s);
            if t > b - h {
                let w = smoothstep(((t - (b - h)) / (2.0 * h)) as f32);
                let other = next.motion.pose(&self.body, &self.neutral, local(next));
                pose = pose.lerp(&other, w);
            }
        }
        if let Some(prev) = i.checked_sub(1).and_then(|k| self.segments.get(k)) {
            let (b, h) = (seg.start, seg.blend_half_s);
            if t < b + h {
                let w = smoothstep(((t - (b - h)) / (2.0 * h)) as f32);
                let other = prev.motion.pose(&self.body, &self.neutral, local(prev));
                pose = other.lerp(&pose, w);
            }
        }
        self.sway.apply(&mut pose, t);
        pose
    }

    /// Joint positions at time `t` in the body frame.
    pub fn positions_at(&self, t: f64) -> [[f32; 3]; NUM_JOINTS] {
        self.body.place(&self.pose_at(t))
    }

    /// Labelled intervals of the actions for `n_frames` frames at `fps` (0-based, inclusive;
    /// frame k shows time k / fps).
    pub fn intervals(&self, fps: f64, n_frames: usize) -> Vec<Interval> {
        let frame_of = |secs: f64| (secs * fps - 1e-6).ceil().max(0.0) as usize;
        self.segments
            .iter()
            .filter(|s| s.motion.class() != 0)
            .filter_map(|s| {
                let start = frame_of(s.start);
                let end = frame_of(s.end()).min(n_frames).checked_sub(1)?;
                (start <= end).then_some(Interval { class: s.motion.class(), start, end })
            })
            .collect()
    }
}

/// The sensor's mounting: height above the floor and tilt, shared by everyone in view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Camera {
    /// Floor height in camera space (m), about −1 as in PKU-MMD.
    floor_y: f32,
    /// Tilt about the x axis (rad).
    pitch: f32,
}

impl Camera {
    pub fn sample(rng: &mut impl Rng) -> Self {
        Camera { floor_y: rng.gen_range(-1.0..-0.7), pitch: rng.gen_range(-0.06..0.06) }
    }
}

/// Where a person stands and which way they face.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    /// Turn about the vertical axis (rad); 0 = facing the sensor.
    yaw: f32,
    x: f32,
    z: f32,
}

impl Placement {
    /// The main subject: facing the sensor within ±45°, x ±0.8 m, z 1.8–3.5 m.
    pub fn main(rng: &mut impl Rng) -> Self {
        Placement {
            yaw: rng.gen_range(-45f32..45.0).to_radians(),
            x: rng.gen_range(-0.8..0.8),
            z: rng.gen_range(1.8..3.5),
        }
    }

    /// A second person, further away and beside the main subject.
    pub fn beside(rng: &mut impl Rng, main: &Placement) -> Self {
        let z = (main.z + rng.gen_range(0.6..1.4)).min(4.4);
        let side = if main.x > 0.0 { -1.0 } else { 1.0 };
        let x = (main.x + side * rng.gen_range(0.7..1.2)).clamp(-0.6 * z, 0.6 * z);
        Placement { yaw: rng.gen_range(-60f32..60.0).to_radians(), x, z }
    }

    /// Depth of the person (m).
    pub fn depth(&self) -> f32 {
        self.z
    }

    /// Body frame → camera space.
    pub fn camera_point(&self, camera: &Camera, p: [f32; 3]) -> [f32; 3] {
        let yaw = Rotation3::from_axis_angle(&V3::y_axis(), self.yaw);
        let pitch = Rotation3::from_axis_angle(&V3::x_axis(), camera.pitch);
        let q = pitch * (yaw * V3::from(p) + V3::new(self.x, camera.floor_y, self.z));
        [q.x, q.y, q.z]
    }
}

/// A joint drop-out in progress.
#[derive(Clone, Copy, Debug)]
struct Dropout {
    frames_left: u32,
    /// Reported position while it lasts.
    pos: [f32; 3],
    tracking: Tracking,
}

/// Sensor model of one tracked body: depth-dependent Gaussian noise (half white, half
/// temporally correlated) and occasional drop-outs of distal joints.
#[derive(Clone, Debug)]
pub(crate) struct Sensor {
    noise_m: f32,
    dropout_prob: f64,
    correlated: [[f32; 3]; NUM_JOINTS],
    dropouts: [Option<Dropout>; NUM_JOINTS],
    last: Option<[[f32; 3]; NUM_JOINTS]>,
}

/// Joints that drop out (limbs; the trunk is tracked reliably).
const DROPOUT_JOINTS: [usize; 16] = [
    j::ELBOW_LEFT,
    j::WRIST_LEFT,
    j::HAND_LEFT,
    j::HAND_TIP_LEFT,
    j::THUMB_LEFT,
    j::ELBOW_RIGHT,
    j::WRIST_RIGHT,
    j::HAND_RIGHT,
    j::HAND_TIP_RIGHT,
    j::THUMB_RIGHT,
    j::KNEE_LEFT,
    j::ANKLE_LEFT,
    j::FOOT_LEFT,
    j::KNEE_RIGHT,
    j::ANKLE_RIGHT,
    j::FOOT_RIGHT,
];

impl Sensor {
    pub fn new(noise_m: f32, dropout_prob: f64) -> Self {
        Sensor {
            noise_m,
            dropout_prob,
            correlated: [[0.0; 3]; NUM_JOINTS],
            dropouts: [None; NUM_JOINTS],
            last: None,
        }
    }

    /// Observes clean camera-space positions; `depth` (m) scales the noise like a Kinect's.
    pub fn observe(
        &mut self,
        rng: &mut impl Rng,
        clean: &[[f32; 3]; NUM_JOINTS],
        depth: f32,
    ) -> [Joint; NUM_JOINTS] {
        let sigma = self.noise_m * (depth / 2.5).powi(2).clamp(0.5, 3.0);
        let mut out = [Joint::default(); NUM_JOINTS];
        for (k, joint) in out.iter_mut().enumerate() {
            // Hands and feet are noisier than the trunk.
            let gain = match k {
                j::HAND_LEFT
                | j::HAND_RIGHT
                | j::HAND_TIP_LEFT
                | j::HAND_TIP_RIGHT
                | j::THUMB_LEFT
                | j::THUMB_RIGHT => 1.6,
                j::FOOT_LEFT | j::FOOT_RIGHT | j::ANKLE_LEFT | j::ANKLE_RIGHT => 1.3,
                _ => 1.0,
            };
            let mut pos = clean[k];
            for (axis, c) in pos.iter_mut().enumerate() {
                let white: f32 = StandardNormal.sample(rng);
                let drive: f32 = StandardNormal.sample(rng);
                let ar = &mut self.correlated[k][axis];
                *ar = 0.8 * *ar + 0.6 * 0.8 * sigma * gain * drive;
                *c += 0.6 * sigma * gain * white + *ar;
            }
            *joint = Joint::tracked(pos);
        }
        if self.dropout_prob > 0.0 && rng.gen_bool(self.dropout_prob.min(1.0)) {
            let k = DROPOUT_JOINTS[rng.gen_range(0..DROPOUT_JOINTS.len())];
            let stale = self.last.map_or(out[k].pos, |l| l[k]);
            let roll: f32 = rng.gen_range(0.0..1.0);
            let (pos, tracking) = if roll < 0.5 {
                (stale, Tracking::Inferred)
            } else if roll < 0.85 {
                // Snapped to a wrong place near its parent joint.
                let parent = parents()[k].unwrap_or(j::SPINE_BASE);
                let mut p = clean[parent];
                for c in &mut p {
                    *c += rng.gen_range(-0.15..0.15);
                }
                (p, Tracking::Inferred)
            } else {
                (stale, Tracking::NotTracked)
            };
            self.dropouts[k] = Some(Dropout { frames_left: rng.gen_range(2..=8), pos, tracking });
        }
        for (k, slot) in self.dropouts.iter_mut().enumerate() {
            if let Some(d) = slot {
                out[k] = Joint { pos: d.pos, tracking: d.tracking };
                d.frames_left -= 1;
                if d.frames_left == 0 {
                    *slot = None;
                }
            }
        }
        // Kinect-like resolution (0.1 mm): keeps files short, far below the noise.
        for jt in &mut out {
            jt.pos = jt.pos.map(|c| (c * 1e4).round() / 1e4);
        }
        self.last = Some(out.map(|jt| jt.pos));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn placement_facing_the_sensor_keeps_left_at_smaller_x() {
        let camera = Camera { floor_y: -1.0, pitch: 0.0 };
        let place = Placement { yaw: 0.0, x: 0.2, z: 2.5 };
        let body = BodyShape::new(1.75, [1.0; 3]);
        let p = body.place(&Pose::default());
        let l = place.camera_point(&camera, p[j::SHOULDER_LEFT]);
        let r = place.camera_point(&camera, p[j::SHOULDER_RIGHT]);
        assert!(l[0] < r[0]);
        let foot = place.camera_point(&camera, p[j::FOOT_LEFT]);
        assert!((foot[1] + 1.0).abs() < 0.05, "foot at y {}", foot[1]);
        // Feet point towards the sensor.
        assert!(foot[2] < place.camera_point(&camera, p[j::ANKLE_LEFT])[2]);
    }

    #[test]
    fn blends_are_continuous_across_boundaries() {
        for seed in 0..6 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut performer = Performer::new(&mut rng);
            performer.plan_recording(&mut rng, &SynthConfig::default());
            let step = 1.0 / 120.0;
            let mut prev = performer.positions_at(0.0);
            let mut t = step;
            let mut max_jump = (0.0f32, 0, 0.0);
            while t < performer.planned_until() {
                let p = performer.positions_at(t);
                for k in 0..NUM_JOINTS {
                    let d: f32 = (0..3).map(|a| (p[k][a] - prev[k][a]).powi(2)).sum::<f32>().sqrt();
                    if d > max_jump.0 {
                        max_jump = (d, k, t);
                    }
                }
                prev = p;
                t += step;
            }
            // At 120 Hz no joint moves more than 8 cm (10 m/s, a fast kick); an elbow flip or
            // a pose jump would move it tens of centimetres.
            let (d, k, t) = max_jump;
            let class = performer.class_at(t);
            assert!(d < 0.08, "seed {seed}: step {d} of joint {k} at {t} s in class {class}");
        }
    }

    #[test]
    fn sensor_noise_has_the_configured_size_and_dropouts_are_marked() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let clean = [[0.0, 0.0, 2.5]; NUM_JOINTS];
        let mut sensor = Sensor::new(0.008, 0.0);
        let mut sq = 0.0;
        let mut n = 0;
        for _ in 0..2000 {
            let obs = sensor.observe(&mut rng, &clean, 2.5);
            sq += obs[j::SPINE_BASE].pos[0].powi(2);
            n += 1;
        }
        let sd = (sq / n as f32).sqrt();
        assert!(sd > 0.006 && sd < 0.010, "noise sd {sd}");
        let mut sensor = Sensor::new(0.0, 0.5);
        let flagged: usize = (0..200)
            .map(|_| {
                let obs = sensor.observe(&mut rng, &clean, 2.5);
                obs.iter().filter(|jt| jt.tracking != Tracking::Tracked).count()
            })
            .sum();
        assert!(flagged > 100, "only {flagged} flagged joints");
    }
}
