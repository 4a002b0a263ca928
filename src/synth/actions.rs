//! The action library of the synthetic generator: for every class a parametric pose trajectory
//! over the action's own time (0 at its start, its duration at its end), built on the subject's
//! neutral standing pose.
//!
//! Actions start and end near the neutral pose (a ramp in and a ramp out around the repeated
//! cycles), so that any two can follow each other with a short blend. The hard pairs differ
//! consistently: wave left/right and kick left/right by side; clap vs rub hands by hand distance
//! (open 20–35 cm vs a constant 5 cm), height and motion amplitude; punch vs push by one fast
//! hand vs two slow hands with bent-back wrists; squat vs sit down by depth, shin angle, arm
//! position and the seated hold.

use rand::Rng;

use super::body::{BodyShape, LEFT, Pose, RIGHT, lerp_polar, side_sign};

/// One action class (background excluded). Class ids follow [`Action::ALL`], starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    WaveLeft,
    WaveRight,
    Clap,
    RubHands,
    Punch,
    Push,
    KickLeft,
    KickRight,
    Squat,
    SitDown,
    Jump,
    Bow,
    CheerUp,
    PhoneCall,
}

impl Action {
    /// Every action, in class-id order (id = position + 1).
    pub const ALL: [Action; 14] = [
        Action::WaveLeft,
        Action::WaveRight,
        Action::Clap,
        Action::RubHands,
        Action::Punch,
        Action::Push,
        Action::KickLeft,
        Action::KickRight,
        Action::Squat,
        Action::SitDown,
        Action::Jump,
        Action::Bow,
        Action::CheerUp,
        Action::PhoneCall,
    ];

    /// Class name (snake_case).
    pub fn name(self) -> &'static str {
        match self {
            Action::WaveLeft => "wave_left",
            Action::WaveRight => "wave_right",
            Action::Clap => "clap",
            Action::RubHands => "rub_hands",
            Action::Punch => "punch",
            Action::Push => "push",
            Action::KickLeft => "kick_left",
            Action::KickRight => "kick_right",
            Action::Squat => "squat",
            Action::SitDown => "sit_down",
            Action::Jump => "jump",
            Action::Bow => "bow",
            Action::CheerUp => "cheer_up",
            Action::PhoneCall => "phone_call",
        }
    }

    /// Class id (1-based; 0 is background).
    pub fn class_id(self) -> usize {
        Action::ALL.iter().position(|a| *a == self).map_or(0, |i| i + 1)
    }

    /// Timing: `(min duration, max duration, ramp in, ramp out, cycle period)` in seconds at
    /// speed 1; period 0 means a single movement without repeated cycles.
    fn timing(self) -> (f32, f32, f32, f32, f32) {
        match self {
            Action::WaveLeft | Action::WaveRight => (1.5, 4.5, 0.5, 0.45, 0.6),
            Action::Clap => (1.2, 4.0, 0.35, 0.3, 0.42),
            Action::RubHands => (1.5, 4.5, 0.4, 0.35, 0.38),
            Action::Punch => (1.2, 3.5, 0.3, 0.3, 0.55),
            Action::Push => (1.5, 4.5, 0.2, 0.2, 1.3),
            Action::KickLeft | Action::KickRight => (1.2, 3.5, 0.15, 0.15, 1.1),
            Action::Squat => (1.6, 5.0, 0.05, 0.05, 1.8),
            Action::SitDown => (2.5, 5.0, 0.0, 0.0, 0.0),
            Action::Jump => (1.2, 3.5, 0.1, 0.1, 1.1),
            Action::Bow => (1.5, 3.5, 0.0, 0.0, 0.0),
            Action::CheerUp => (1.8, 4.5, 0.55, 0.5, 0.6),
            Action::PhoneCall => (2.0, 5.0, 0.5, 0.45, 0.0),
        }
    }
}

/// Arm posture while idle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum IdleArms {
    /// Arms hanging at the sides.
    Hanging,
    /// Hands held behind the back.
    BehindBack,
}

/// What a segment of a performer's timeline does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum MotionKind {
    /// Background: standing (the performer adds sway on top).
    Idle(IdleArms),
    /// One of the action classes.
    Action(Action),
}

/// One sampled instance of an action (or of idling): its duration and the parameters that vary
/// from instance to instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Motion {
    /// What is done.
    pub kind: MotionKind,
    /// Duration in seconds (the labelled length).
    pub duration: f32,
    ramp_in: f32,
    ramp_out: f32,
    cycles: u32,
    /// Amplitude factor (subject × instance), about 0.8–1.2.
    amp: f32,
    /// Side used by one-handed actions without a side in their name (phone call, first punch).
    side: usize,
    /// Instance shape parameters in [-1, 1] (heights, depths, weight shift side).
    vary: [f32; 3],
}

impl Motion {
    /// Idling for `duration` seconds.
    pub fn idle(rng: &mut impl Rng, duration: f32) -> Self {
        let arms = if rng.gen_bool(0.2) { IdleArms::BehindBack } else { IdleArms::Hanging };
        Motion {
            kind: MotionKind::Idle(arms),
            duration,
            ramp_in: 0.0,
            ramp_out: 0.0,
            cycles: 1,
            amp: 1.0,
            side: LEFT,
            vary: [(); 3].map(|_| rng.gen_range(-1.0..1.0)),
        }
    }

    /// A random instance of `action` for a subject moving at `speed` (cycle rate factor) with
    /// amplitude factor `amp`.
    pub fn sample(rng: &mut impl Rng, action: Action, speed: f32, amp: f32) -> Self {
        let (min_s, max_s, ramp_in, ramp_out, period) = action.timing();
        let duration = rng.gen_range(min_s..=max_s);
        let active = (duration - ramp_in - ramp_out).max(0.1);
        let speed = speed * rng.gen_range(0.9..1.1);
        let cycles =
            if period > 0.0 { ((active * speed / period).round() as u32).max(1) } else { 1 };
        Motion {
            kind: MotionKind::Action(action),
            duration,
            ramp_in,
            ramp_out,
            cycles,
            amp: amp * rng.gen_range(0.88..1.12),
            side: if rng.gen_bool(0.5) { LEFT } else { RIGHT },
            vary: [(); 3].map(|_| rng.gen_range(-1.0..1.0)),
        }
    }

    /// Class id of this motion (0 for idling).
    pub fn class(&self) -> usize {
        match self.kind {
            MotionKind::Idle(_) => 0,
            MotionKind::Action(a) => a.class_id(),
        }
    }

    /// The pose at local time `t` (seconds since the start; clamped to the duration).
    pub fn pose(&self, body: &BodyShape, neutral: &Pose, t: f32) -> Pose {
        let t = t.clamp(0.0, self.duration);
        let d = self.duration;
        // Envelope from the neutral pose into the action and back.
        let env = ramp(t, 0.0, self.ramp_in) * (1.0 - ramp(t, d - self.ramp_out, d));
        // Progress through the repeated part: total fraction, phase angle, cycle index and
        // fraction within the cycle.
        let active = (d - self.ramp_in - self.ramp_out).max(1e-3);
        let progress = ((t - self.ramp_in) / active).clamp(0.0, 1.0);
        let n = self.cycles.max(1) as f32;
        let phase = std::f32::consts::TAU * progress * n;
        let cycle = ((progress * n).floor() as u32).min(self.cycles.saturating_sub(1));
        let u = (progress * n - cycle as f32).clamp(0.0, 1.0);

        let sc = body.scale();
        let reach = body.arm_length();
        let amp = self.amp;
        let vary = self.vary;
        // Wrist target relative to the shoulder for a point `off` metres from the body's
        // mid-line on `side` (x towards that side), at height y and depth z.
        let mid = |side: usize, off: f32, y: f32, z: f32| {
            let s = body.shoulder(side);
            [side_sign(side) * off - s.x, y, z]
        };
        let mut p = *neutral;
        match self.kind {
            MotionKind::Idle(arms) => {
                if arms == IdleArms::BehindBack {
                    for side in [LEFT, RIGHT] {
                        p.hand[side] = mid(side, 0.05 * sc, -0.48 * sc, 0.13 * sc);
                        p.elbow[side] = [side_sign(side) * 0.6, 0.0, 1.0];
                    }
                }
                // A weight shift to one side and a look around.
                p.shift[0] += 0.025 * sc * vary[0];
                p.pelvis[1] -= 0.03 * vary[0];
                p.head[2] += 0.25 * vary[1];
                return p;
            }
            MotionKind::Action(Action::WaveLeft) => wave(&mut p, LEFT, sc, amp, vary, phase),
            MotionKind::Action(Action::WaveRight) => wave(&mut p, RIGHT, sc, amp, vary, phase),
            MotionKind::Action(Action::Clap) => {
                // Open at the cycle start, hands meet mid-cycle (a sharp closing).
                let open = ((1.0 + phase.cos()) * 0.5).powf(0.6);
                let gap = 0.05 * sc + 0.30 * sc * amp * open;
                for side in [LEFT, RIGHT] {
                    p.hand[side] = mid(side, gap * 0.5, (-0.20 + 0.05 * vary[0]) * sc, -0.30 * sc);
                    p.elbow[side] = [side_sign(side) * 0.8, -1.0, 0.3];
                    p.wrist[side] = 0.0;
                }
            }
            MotionKind::Action(Action::RubHands) => {
                // Hands stay together and slide against each other in antiphase.
                for side in [LEFT, RIGHT] {
                    let sgn = side_sign(side);
                    p.hand[side] = mid(
                        side,
                        0.028 * sc,
                        (-0.30 + 0.04 * vary[0]) * sc + sgn * 0.035 * sc * amp * phase.sin(),
                        -0.26 * sc + sgn * 0.02 * sc * amp * phase.cos(),
                    );
                    p.elbow[side] = [sgn * 0.6, -1.0, 0.5];
                }
                p.head[0] += 0.15;
            }
            MotionKind::Action(Action::Punch) => {
                // Fists guard the chin; one fast jab per cycle, alternating hands.
                for side in [LEFT, RIGHT] {
                    p.hand[side] = mid(side, 0.07 * sc, -0.02 * sc, -0.20 * sc);
                    p.elbow[side] = [side_sign(side) * 0.5, -1.0, 0.2];
                }
                let side = (self.side + cycle as usize) % 2;
                let ext = keyframes(u, &[(0.0, 0.0), (0.28, 1.0), (0.4, 1.0), (0.8, 0.0)]);
                let strike = mid(side, 0.04 * sc, (0.0 + 0.04 * vary[0]) * sc, -0.93 * reach);
                p.hand[side] = lerp_polar(p.hand[side], strike, ext, side_sign(side));
                p.chest[2] += side_sign(side) * 0.25 * ext * amp;
                p.head[0] += 0.1;
            }
            MotionKind::Action(Action::Push) => {
                // Both hands from the chest straight forward, palms out, slowly.
                let ext = keyframes(u, &[(0.0, 0.0), (0.4, 1.0), (0.55, 1.0), (1.0, 0.0)]);
                for side in [LEFT, RIGHT] {
                    let near = mid(side, 0.10 * sc, -0.12 * sc, -0.16 * sc);
                    let far = mid(side, 0.12 * sc, (-0.06 + 0.04 * vary[0]) * sc, -0.9 * reach);
                    p.hand[side] = lerp_polar(near, far, ext, side_sign(side));
                    p.elbow[side] = [side_sign(side) * 0.7, -1.0, 0.2];
                    p.wrist[side] = -0.9;
                }
                p.chest[0] += 0.12 * ext;
                p.spine[0] += 0.05 * ext;
            }
            MotionKind::Action(Action::KickLeft) => kick(&mut p, LEFT, sc, amp, vary, u),
            MotionKind::Action(Action::KickRight) => kick(&mut p, RIGHT, sc, amp, vary, u),
            MotionKind::Action(Action::Squat) => {
                // Deep knee bend, knees ahead of the feet, torso forward, arms forward.
                let depth = (0.92 + 0.08 * vary[0]) * (0.95 + 0.05 * amp.clamp(0.8, 1.2));
                let s = keyframes(u, &[(0.0, 0.0), (0.4, 1.0), (0.55, 1.0), (1.0, 0.0)]);
                let dd = s * depth;
                for side in [LEFT, RIGHT] {
                    p.leg[side][0] += 1.75 * dd;
                    p.leg[side][2] += 2.2 * dd;
                    let forward = mid(side, 0.12 * sc, -0.02 * sc, -0.85 * reach);
                    p.hand[side] = lerp_polar(p.hand[side], forward, s, side_sign(side));
                    p.elbow[side] = lerp3(p.elbow[side], [side_sign(side) * 0.5, -1.0, 0.0], s);
                }
                p.spine[0] += 0.35 * dd;
                p.chest[0] += 0.1 * dd;
                p.head[0] -= 0.2 * dd;
            }
            MotionKind::Action(Action::SitDown) => {
                // Down onto an (invisible) chair, a seated hold, back up: thighs level, shins
                // upright, hands on the thighs; the torso leans forward only while moving.
                let x = t / d;
                let s = keyframes(x, &[(0.0, 0.0), (0.32, 1.0), (0.7, 1.0), (1.0, 0.0)]);
                let bump = keyframes(
                    x,
                    &[(0.0, 0.0), (0.16, 1.0), (0.32, 0.0), (0.7, 0.0), (0.85, 1.0), (1.0, 0.0)],
                );
                let lean = 0.1 * s + (0.45 + 0.1 * vary[0]) * bump;
                for side in [LEFT, RIGHT] {
                    p.leg[side][0] += 1.5 * s;
                    p.leg[side][2] += 1.6 * s;
                    let thigh = mid(side, 0.14 * sc, -0.42 * sc, -0.28 * sc);
                    p.hand[side] = lerp_polar(p.hand[side], thigh, s, side_sign(side));
                    p.elbow[side] = lerp3(p.elbow[side], [side_sign(side) * 0.4, -0.3, 1.0], s);
                }
                p.spine[0] += 0.7 * lean;
                p.chest[0] += 0.3 * lean;
                return p;
            }
            MotionKind::Action(Action::Jump) => {
                // Crouch, take off with an arm swing, flight, land in a crouch.
                let crouch = keyframes(
                    u,
                    &[(0.0, 0.0), (0.25, 1.0), (0.4, 0.0), (0.78, 0.0), (0.88, 0.8), (1.0, 0.0)],
                );
                let flight = if u > 0.4 && u < 0.78 {
                    (std::f32::consts::PI * (u - 0.4) / 0.38).sin()
                } else {
                    0.0
                };
                // Arms swing forward and up through take-off and flight.
                let swing =
                    keyframes(u, &[(0.0, 0.0), (0.28, 0.0), (0.55, 1.0), (0.7, 1.0), (1.0, 0.0)]);
                p.lift = (0.18 + 0.06 * vary[0]) * amp * sc * flight;
                for side in [LEFT, RIGHT] {
                    p.leg[side][0] += 0.75 * crouch;
                    p.leg[side][2] += 1.4 * crouch;
                    p.leg[side][3] -= 0.5 * flight;
                    p.hand[side][2] += 0.25 * sc * crouch;
                    let up = mid(side, 0.2 * sc, -0.15 * sc, -0.4 * sc);
                    p.hand[side] = lerp_polar(p.hand[side], up, swing, side_sign(side));
                    p.elbow[side] = lerp3(p.elbow[side], [side_sign(side) * 0.5, -1.0, 0.0], swing);
                }
                p.spine[0] += 0.35 * crouch;
            }
            MotionKind::Action(Action::Bow) => {
                let s = keyframes(t / d, &[(0.0, 0.0), (0.35, 1.0), (0.6, 1.0), (1.0, 0.0)]);
                let angle = (0.85 + 0.25 * vary[0]) * amp * s;
                p.spine[0] += 0.65 * angle;
                p.chest[0] += 0.3 * angle;
                p.head[0] += 0.15 * angle;
                p.shift[2] += 0.08 * sc * s;
                return p;
            }
            MotionKind::Action(Action::CheerUp) => {
                // Both arms overhead, pumping.
                let pump = (1.0 - phase.cos()) * 0.5;
                for side in [LEFT, RIGHT] {
                    let sgn = side_sign(side);
                    p.hand[side] = [
                        sgn * (0.08 + 0.06 * pump) * sc,
                        0.92 * reach - 0.14 * sc * amp * pump,
                        -0.06 * sc,
                    ];
                    p.elbow[side] = [sgn, 0.0, 0.2];
                    p.shrug[side] += 0.15;
                }
                p.head[0] -= 0.15;
            }
            MotionKind::Action(Action::PhoneCall) => {
                // One hand at the ear, head tilted towards it, small nods while talking.
                let side = self.side;
                let sgn = side_sign(side);
                let ear =
                    nalgebra::Vector3::new(sgn * 0.075 * sc, body.neck + 0.55 * body.head, 0.0);
                let wrist = ear + nalgebra::Vector3::new(sgn * 0.02, -0.09, -0.05) * sc
                    - body.shoulder(side);
                p.hand[side] = [wrist.x, wrist.y, wrist.z];
                p.elbow[side] = [sgn * 0.4, -1.0, -0.5];
                p.wrist[side] = -0.3;
                p.head[1] += sgn * 0.12;
                p.head[0] += 0.05 * (std::f32::consts::TAU * 0.5 * t + vary[1]).sin();
            }
        }
        neutral.lerp(&p, env)
    }
}

/// The subject's neutral standing pose: arms hanging, with subject-specific arm and leg detail.
pub(crate) fn neutral_pose(rng: &mut impl Rng, body: &BodyShape) -> Pose {
    let sc = body.scale();
    let reach = body.arm_length();
    let mut p = Pose::default();
    for side in [LEFT, RIGHT] {
        let sgn = side_sign(side);
        p.hand[side] = [
            sgn * rng.gen_range(0.02..0.07) * sc,
            -rng.gen_range(0.90..0.96) * reach,
            -rng.gen_range(0.0..0.06) * sc,
        ];
        p.elbow[side] = [sgn * 0.3, 0.0, 1.0];
        p.leg[side][1] = rng.gen_range(0.03..0.08);
        p.leg[side][2] = rng.gen_range(0.0..0.06);
    }
    p.chest[0] = rng.gen_range(-0.05..0.05);
    p.head[0] = rng.gen_range(-0.1..0.1);
    p
}

fn wave(p: &mut Pose, side: usize, sc: f32, amp: f32, vary: [f32; 3], phase: f32) {
    // Upper arm out to the side, forearm up beside the head, swinging side to side.
    let sgn = side_sign(side);
    let swing = phase.sin();
    p.hand[side] = [
        sgn * 0.16 * sc + 0.12 * sc * amp * swing,
        (0.30 + 0.06 * vary[0]) * sc - 0.03 * sc * swing * swing,
        -0.10 * sc,
    ];
    p.elbow[side] = [sgn, -0.9, 0.1];
    p.wrist[side] = 0.3 * (phase + 0.5).sin();
}

fn kick(p: &mut Pose, side: usize, sc: f32, amp: f32, vary: [f32; 3], u: f32) {
    // Chamber, snap the shin out, re-chamber, put the foot down; standing on the other leg.
    let height = (1.0 + 0.25 * vary[0]) * amp;
    let hip =
        height * keyframes(u, &[(0.0, 0.0), (0.3, 0.75), (0.5, 1.0), (0.72, 0.6), (1.0, 0.0)]);
    let knee = keyframes(u, &[(0.0, 0.02), (0.3, 1.5), (0.5, 0.15), (0.72, 1.2), (1.0, 0.02)]);
    p.leg[side][0] = hip;
    p.leg[side][2] = knee;
    p.leg[side][3] = -0.5 * keyframes(u, &[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]);
    p.support[side] = 0.0;
    p.support[1 - side] = 1.0;
    p.chest[0] -= 0.15 * hip / height.max(0.1);
    for s in [LEFT, RIGHT] {
        p.hand[s][0] += side_sign(s) * 0.08 * sc;
    }
}

/// 0 before `t0`, 1 after `t1`, smooth in between (1 when the span is empty and t ≥ t0).
pub(crate) fn ramp(t: f32, t0: f32, t1: f32) -> f32 {
    if t1 - t0 <= 1e-6 {
        return if t >= t0 { 1.0 } else { 0.0 };
    }
    smoothstep((t - t0) / (t1 - t0))
}

/// Cubic ease between 0 and 1 (zero slope at both ends).
pub(crate) fn smoothstep(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Smooth interpolation through `(time, value)` keys sorted by time (eased between keys, held
/// before the first and after the last).
fn keyframes(x: f32, keys: &[(f32, f32)]) -> f32 {
    let Some(&(first_t, first_v)) = keys.first() else {
        return 0.0;
    };
    if x <= first_t {
        return first_v;
    }
    for pair in keys.windows(2) {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        if x <= t1 {
            return v0 + (v1 - v0) * ramp(x, t0, t1);
        }
    }
    keys.last().map_or(0.0, |k| k.1)
}

fn lerp3(a: [f32; 3], b: [f32; 3], w: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * w, a[1] + (b[1] - a[1]) * w, a[2] + (b[2] - a[2]) * w]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skeleton::kinect_v2::joint as j;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    /// Positions over an instance of `action`, sampled at 30 fps.
    fn trajectory(action: Action, seed: u64) -> Vec<[[f32; 3]; 25]> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let body = BodyShape::sample(&mut rng);
        let neutral = neutral_pose(&mut rng, &body);
        let m = Motion::sample(&mut rng, action, 1.0, 1.0);
        let n = (m.duration * 30.0) as usize;
        (0..=n).map(|i| body.place(&m.pose(&body, &neutral, i as f32 / 30.0))).collect()
    }

    fn path_length(traj: &[[[f32; 3]; 25]], joint: usize) -> f32 {
        traj.windows(2).map(|w| dist(w[0][joint], w[1][joint])).sum()
    }

    #[test]
    fn actions_start_and_end_at_the_neutral_pose() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let body = BodyShape::sample(&mut rng);
        let neutral = neutral_pose(&mut rng, &body);
        let rest = body.place(&neutral);
        for action in Action::ALL {
            let m = Motion::sample(&mut rng, action, 1.0, 1.0);
            for t in [0.0, m.duration] {
                let p = body.place(&m.pose(&body, &neutral, t));
                for joint in 0..25 {
                    let d = dist(p[joint], rest[joint]);
                    assert!(d < 0.02, "{} at t={t}: joint {joint} off by {d}", action.name());
                }
            }
        }
    }

    #[test]
    fn waves_move_the_named_hand() {
        for seed in 0..5 {
            let left = trajectory(Action::WaveLeft, seed);
            let right = trajectory(Action::WaveRight, seed);
            assert!(path_length(&left, j::WRIST_LEFT) > 4.0 * path_length(&left, j::WRIST_RIGHT));
            assert!(path_length(&right, j::WRIST_RIGHT) > 4.0 * path_length(&right, j::WRIST_LEFT));
            // The waving hand is above the shoulder at some point.
            assert!(left.iter().any(|p| p[j::HAND_LEFT][1] > p[j::SHOULDER_LEFT][1]));
        }
    }

    #[test]
    fn clapping_opens_the_hands_and_rubbing_keeps_them_together() {
        for seed in 0..5 {
            let clap = trajectory(Action::Clap, seed);
            let rub = trajectory(Action::RubHands, seed);
            let mid = |t: &[[[f32; 3]; 25]]| t[t.len() / 4..3 * t.len() / 4].to_vec();
            let gap = |p: &[[f32; 3]; 25]| dist(p[j::WRIST_LEFT], p[j::WRIST_RIGHT]);
            let clap_max = mid(&clap).iter().map(gap).fold(0.0, f32::max);
            let clap_min = mid(&clap).iter().map(gap).fold(f32::MAX, f32::min);
            let rub_max = mid(&rub).iter().map(gap).fold(0.0, f32::max);
            assert!(clap_max > 0.18, "clap opens only to {clap_max}");
            assert!(clap_min < 0.09, "clap closes only to {clap_min}");
            assert!(rub_max < 0.12, "rub opens to {rub_max}");
        }
    }

    #[test]
    fn kicks_lift_the_named_foot_and_keep_the_other_planted() {
        for seed in 0..5 {
            let left = trajectory(Action::KickLeft, seed);
            let max_left = left.iter().map(|p| p[j::ANKLE_LEFT][1]).fold(0.0, f32::max);
            let max_right = left.iter().map(|p| p[j::ANKLE_RIGHT][1]).fold(0.0, f32::max);
            assert!(max_left > 0.3, "left ankle rises only to {max_left}");
            assert!(max_right < 0.1, "support ankle rises to {max_right}");
        }
    }

    #[test]
    fn squat_goes_lower_than_sitting_down_and_sitting_holds() {
        for seed in 0..5 {
            let squat = trajectory(Action::Squat, seed);
            let sit = trajectory(Action::SitDown, seed);
            let rest = squat[0][j::SPINE_BASE][1];
            let low = |t: &[[[f32; 3]; 25]]| {
                t.iter().map(|p| p[j::SPINE_BASE][1]).fold(f32::MAX, f32::min)
            };
            assert!(rest - low(&squat) > 0.3);
            assert!(rest - low(&sit) > 0.25);
            // Seated, the pelvis is behind the ankles more than in the squat's lowest point.
            let back = |p: &[[f32; 3]; 25]| p[j::SPINE_BASE][2] - p[j::ANKLE_LEFT][2];
            let sit_mid = &sit[sit.len() / 2];
            let squat_low = squat
                .iter()
                .min_by(|a, b| a[j::SPINE_BASE][1].total_cmp(&b[j::SPINE_BASE][1]))
                .expect("non-empty");
            assert!(back(sit_mid) > 0.2, "seated pelvis only {} behind", back(sit_mid));
            // Shins: upright when seated, tilted forward in the squat.
            let shin_tilt = |p: &[[f32; 3]; 25]| p[j::ANKLE_LEFT][2] - p[j::KNEE_LEFT][2];
            assert!(shin_tilt(squat_low) > shin_tilt(sit_mid) + 0.05);
        }
    }

    #[test]
    fn punch_uses_one_hand_at_a_time_and_push_both() {
        for seed in 0..5 {
            let punch = trajectory(Action::Punch, seed);
            let push = trajectory(Action::Push, seed);
            let reach = |p: &[[f32; 3]; 25], w: usize, s: usize| p[s][2] - p[w][2];
            // Frames where one hand is extended (> 0.35 m ahead of its shoulder).
            let both_out = |t: &[[[f32; 3]; 25]]| {
                t.iter()
                    .filter(|p| {
                        reach(p, j::WRIST_LEFT, j::SHOULDER_LEFT) > 0.35
                            && reach(p, j::WRIST_RIGHT, j::SHOULDER_RIGHT) > 0.35
                    })
                    .count()
            };
            assert_eq!(both_out(&punch), 0);
            assert!(both_out(&push) > 5);
        }
    }

    #[test]
    fn keyframes_interpolate_and_hold() {
        let keys = [(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)];
        assert_eq!(keyframes(-1.0, &keys), 0.0);
        assert_eq!(keyframes(0.5, &keys), 1.0);
        assert!((keyframes(0.25, &keys) - 0.5).abs() < 1e-6);
        assert_eq!(keyframes(2.0, &keys), 0.0);
        assert_eq!(keyframes(0.3, &[]), 0.0);
    }
}
