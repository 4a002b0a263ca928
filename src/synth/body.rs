//! Body model of the synthetic generator: subject-scaled bone lengths, a pose made of joint
//! angles and hand targets, and forward kinematics over the Kinect v2 bone hierarchy
//! ([`crate::skeleton::kinect_v2::BONES`]).
//!
//! Coordinates here are the *body frame*: +x to the person's right, +y up, +z behind the person
//! (the person looks along −z), floor at y = 0 and the rest stance centred on x = z = 0. With the
//! person facing the sensor this frame coincides with Kinect camera space up to a translation,
//! so ShoulderLeft.x < ShoulderRight.x as in real data.
//!
//! Each bone has its own rotation relative to its parent bone (`G[c] = G[p] · R[c]`,
//! `pos[c] = pos[p] + G[c] · offset[c]`); the arms are placed by two-bone inverse kinematics from
//! a wrist target so that hand-distance driven actions (clap, rub hands) are easy to express.

use nalgebra::{Rotation3, Vector3};
use rand::Rng;

use crate::frame::NUM_JOINTS;
use crate::skeleton::kinect_v2::joint as j;

/// 3-vector in metres.
pub(crate) type V3 = Vector3<f32>;
type R3 = Rotation3<f32>;

/// Stature the reference bone lengths below belong to. The lengths are the medians measured on
/// the real PKU-MMD file (SpineBase–SpineMid 0.35 m, Shoulder–Elbow 0.29 m, Hip–Knee 0.41 m),
/// shortened a little so that head top ends at this height.
pub(crate) const REFERENCE_HEIGHT_M: f32 = 1.80;

/// Index of the left and right limb in per-side arrays.
pub(crate) const LEFT: usize = 0;
/// See [`LEFT`].
pub(crate) const RIGHT: usize = 1;

/// Sign of the x axis on a side: the person's left is −x.
pub(crate) fn side_sign(side: usize) -> f32 {
    if side == LEFT { -1.0 } else { 1.0 }
}

/// Bone lengths and offsets of one subject.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BodyShape {
    /// Stature in metres.
    pub height_m: f32,
    pub spine_low: f32,
    pub spine_up: f32,
    pub neck: f32,
    pub head: f32,
    /// SpineShoulder → ShoulderLeft in the chest frame (the right one is mirrored).
    pub clavicle_left: V3,
    pub upper_arm: f32,
    pub forearm: f32,
    pub hand: f32,
    pub hand_tip: f32,
    pub thumb: f32,
    /// SpineBase → HipLeft in the pelvis frame (the right one is mirrored).
    pub hip_left: V3,
    pub thigh: f32,
    pub shin: f32,
    pub foot: f32,
    /// Height of the ankle joint above the floor when standing.
    pub ankle_height: f32,
    /// Height of the foot joint above the floor when standing.
    pub foot_height: f32,
    /// Ankle positions (x, z) of the rest pose before grounding; the ground anchor.
    rest_ankles_xz: [[f32; 2]; 2],
}

impl BodyShape {
    /// A subject of stature `height_m` with per-segment proportion factors
    /// `[trunk, arms, legs]` (1 = reference proportions).
    pub fn new(height_m: f32, proportions: [f32; 3]) -> Self {
        let s = height_m / REFERENCE_HEIGHT_M;
        let [trunk, arms, legs] = proportions.map(|p| p * s);
        let mut shape = BodyShape {
            height_m,
            spine_low: 0.33 * trunk,
            spine_up: 0.25 * trunk,
            neck: 0.08 * trunk,
            head: 0.13 * trunk,
            clavicle_left: V3::new(-0.12, -0.12, 0.03).normalize() * 0.175 * trunk,
            upper_arm: 0.29 * arms,
            forearm: 0.25 * arms,
            hand: 0.07 * arms,
            hand_tip: 0.06 * arms,
            thumb: 0.07 * arms,
            hip_left: V3::new(-0.06, -0.03, 0.0).normalize() * 0.067 * trunk,
            thigh: 0.40 * legs,
            shin: 0.40 * legs,
            foot: 0.12 * legs,
            ankle_height: 0.07 * legs,
            foot_height: 0.022 * legs,
            rest_ankles_xz: [[0.0; 2]; 2],
        };
        let mut raw = [V3::zeros(); NUM_JOINTS];
        shape.place_unground(&Pose::default(), &mut raw);
        shape.rest_ankles_xz = [j::ANKLE_LEFT, j::ANKLE_RIGHT].map(|a| [raw[a].x, raw[a].z]);
        shape
    }

    /// A random subject: stature 1.5–1.95 m, proportions within ±5 %.
    pub fn sample(rng: &mut impl Rng) -> Self {
        let height = rng.gen_range(1.5..1.95);
        let proportions = [(); 3].map(|_| rng.gen_range(0.95..1.05));
        Self::new(height, proportions)
    }

    /// Stature relative to the reference subject.
    pub fn scale(&self) -> f32 {
        self.height_m / REFERENCE_HEIGHT_M
    }

    /// Shoulder to wrist at full extension.
    pub fn arm_length(&self) -> f32 {
        self.upper_arm + self.forearm
    }

    /// Shoulder position relative to SpineShoulder in the chest frame.
    pub fn shoulder(&self, side: usize) -> V3 {
        let c = self.clavicle_left;
        V3::new(side_sign(side) * c.x.abs(), c.y, c.z)
    }

    /// Joint positions of `pose` in the body frame (floor at y = 0).
    pub fn place(&self, pose: &Pose) -> [[f32; 3]; NUM_JOINTS] {
        let mut raw = [V3::zeros(); NUM_JOINTS];
        self.place_unground(pose, &mut raw);
        self.ground(pose, &mut raw);
        raw.map(|p| [p.x, p.y, p.z])
    }

    /// Forward kinematics with SpineBase at the origin.
    fn place_unground(&self, pose: &Pose, p: &mut [V3; NUM_JOINTS]) {
        let g0 = euler(pose.pelvis);
        p[j::SPINE_BASE] = V3::zeros();
        // Trunk: each bone turns relative to the one below it.
        let g1 = g0 * euler(pose.spine);
        p[j::SPINE_MID] = p[j::SPINE_BASE] + g1 * V3::new(0.0, self.spine_low, 0.0);
        let g20 = g1 * euler(pose.chest);
        p[j::SPINE_SHOULDER] = p[j::SPINE_MID] + g20 * V3::new(0.0, self.spine_up, 0.0);
        let head = V3::from(pose.head);
        let g2 = g20 * euler((head * 0.4).into());
        p[j::NECK] = p[j::SPINE_SHOULDER] + g2 * V3::new(0.0, self.neck, 0.0);
        let g3 = g2 * euler((head * 0.6).into());
        p[j::HEAD] = p[j::NECK] + g3 * V3::new(0.0, self.head, 0.0);

        // Arms: clavicle (with shrug), then two-bone IK to the wrist target.
        for side in [LEFT, RIGHT] {
            let [sh, el, wr, ha, tip, th] = ARM_JOINTS[side];
            let sgn = side_sign(side);
            let shrug = R3::from_axis_angle(&V3::z_axis(), sgn * pose.shrug[side]);
            p[sh] = p[j::SPINE_SHOULDER] + g20 * (shrug * self.shoulder(side));
            let target = p[sh] + g20 * V3::from(pose.hand[side]);
            // A little of the natural "elbows down and out" keeps the solution unique when the
            // requested pole happens to line up with the arm.
            let pole = g20 * (V3::from(pose.elbow[side]) + V3::new(sgn * 0.15, -0.3, 0.0));
            let arm = two_bone_ik(p[sh], target, pole, self.upper_arm, self.forearm);
            p[el] = arm.elbow;
            p[wr] = arm.wrist;
            // The hand continues the forearm, bent at the wrist about the elbow-plane normal.
            let forearm_dir = (arm.wrist - arm.elbow).normalize();
            let hand_dir =
                R3::from_axis_angle(&nalgebra::Unit::new_normalize(arm.normal), pose.wrist[side])
                    * forearm_dir;
            p[ha] = arm.wrist + hand_dir * self.hand;
            p[tip] = p[ha] + hand_dir * self.hand_tip;
            // The thumb points to the inside of the elbow bend.
            let thumb_dir = (hand_dir * 0.77 - arm.bend * 0.64).normalize();
            p[th] = arm.wrist + thumb_dir * self.thumb;
        }

        // Legs: hip flexion and abduction, knee flexion; the foot stays level with the pelvis'
        // heading (planted feet stay flat), pitched by the ankle angle.
        let heading = R3::from_axis_angle(&V3::y_axis(), pose.pelvis[2]);
        for side in [LEFT, RIGHT] {
            let [hip, knee, ankle, foot] = LEG_JOINTS[side];
            let sgn = side_sign(side);
            let [flex, abd, knee_flex, ankle_flex] = pose.leg[side];
            let hip_off = V3::new(sgn * self.hip_left.x.abs(), self.hip_left.y, self.hip_left.z);
            p[hip] = p[j::SPINE_BASE] + g0 * hip_off;
            // Flexion about the pelvis' x axis after abduction, so knees stay apart when the
            // thighs come up.
            let g_thigh = g0
                * R3::from_axis_angle(&V3::x_axis(), flex)
                * R3::from_axis_angle(&V3::z_axis(), sgn * abd);
            p[knee] = p[hip] + g_thigh * V3::new(0.0, -self.thigh, 0.0);
            let g_shin = g_thigh * R3::from_axis_angle(&V3::x_axis(), -knee_flex);
            p[ankle] = p[knee] + g_shin * V3::new(0.0, -self.shin, 0.0);
            let foot_dir = heading
                * R3::from_axis_angle(&V3::x_axis(), ankle_flex)
                * V3::new(0.0, -0.4, -0.92).normalize();
            p[foot] = p[ankle] + foot_dir * self.foot;
        }
    }

    /// Moves the body so that the supporting feet rest on the floor where they stand at rest,
    /// then adds the free shift and the jump lift.
    fn ground(&self, pose: &Pose, p: &mut [V3; NUM_JOINTS]) {
        let total = pose.support[0].max(0.0) + pose.support[1].max(0.0);
        let w = if total > 1e-3 {
            [pose.support[0].max(0.0) / total, pose.support[1].max(0.0) / total]
        } else {
            [0.5, 0.5]
        };
        let mut dy = 0.0;
        let mut dx = 0.0;
        let mut dz = 0.0;
        for side in [LEFT, RIGHT] {
            let [_, _, ankle, foot] = LEG_JOINTS[side];
            let contact = (p[ankle].y - self.ankle_height).min(p[foot].y - self.foot_height);
            dy -= w[side] * contact;
            dx += w[side] * (self.rest_ankles_xz[side][0] - p[ankle].x);
            dz += w[side] * (self.rest_ankles_xz[side][1] - p[ankle].z);
        }
        let offset =
            V3::new(dx + pose.shift[0], dy + pose.shift[1] + pose.lift, dz + pose.shift[2]);
        for q in p.iter_mut() {
            *q += offset;
        }
    }
}

/// Shoulder, elbow, wrist, hand, hand tip and thumb of each side.
const ARM_JOINTS: [[usize; 6]; 2] = [
    [j::SHOULDER_LEFT, j::ELBOW_LEFT, j::WRIST_LEFT, j::HAND_LEFT, j::HAND_TIP_LEFT, j::THUMB_LEFT],
    [
        j::SHOULDER_RIGHT,
        j::ELBOW_RIGHT,
        j::WRIST_RIGHT,
        j::HAND_RIGHT,
        j::HAND_TIP_RIGHT,
        j::THUMB_RIGHT,
    ],
];

/// Hip, knee, ankle and foot of each side.
const LEG_JOINTS: [[usize; 4]; 2] = [
    [j::HIP_LEFT, j::KNEE_LEFT, j::ANKLE_LEFT, j::FOOT_LEFT],
    [j::HIP_RIGHT, j::KNEE_RIGHT, j::ANKLE_RIGHT, j::FOOT_RIGHT],
];

/// Rotation from `[forward flexion, lateral bend to the right, turn to the left]` in radians.
fn euler(a: [f32; 3]) -> R3 {
    R3::from_axis_angle(&V3::y_axis(), a[2])
        * R3::from_axis_angle(&V3::z_axis(), -a[1])
        * R3::from_axis_angle(&V3::x_axis(), -a[0])
}

/// Result of [`two_bone_ik`].
struct ArmSolution {
    elbow: V3,
    wrist: V3,
    /// Unit vector from the shoulder–wrist line towards the elbow.
    bend: V3,
    /// Normal of the arm plane.
    normal: V3,
}

/// Places elbow and wrist so that the wrist reaches `target` as closely as the bone lengths
/// allow, with the elbow on the side of `pole`. Bone lengths are kept exactly.
fn two_bone_ik(shoulder: V3, target: V3, pole: V3, upper: f32, fore: f32) -> ArmSolution {
    let to_target = target - shoulder;
    let dist = to_target.norm();
    let dir = if dist > 1e-5 { to_target / dist } else { V3::new(0.0, -1.0, 0.0) };
    let reach = dist.clamp((upper - fore).abs() + 0.05 * (upper + fore), 0.999 * (upper + fore));
    // Law of cosines: angle at the shoulder between the target line and the upper arm.
    let cos_a =
        ((upper * upper + reach * reach - fore * fore) / (2.0 * upper * reach)).clamp(-1.0, 1.0);
    let sin_a = (1.0 - cos_a * cos_a).max(0.0).sqrt();
    let mut bend = pole - dir * pole.dot(&dir);
    if bend.norm() < 1e-4 {
        // Pole along the arm: bend towards the back (or down when the arm points backwards).
        let fallback = if dir.z.abs() < 0.9 { V3::z() } else { -V3::y() };
        bend = fallback - dir * fallback.dot(&dir);
    }
    let bend = bend.normalize();
    let elbow = shoulder + (dir * cos_a + bend * sin_a) * upper;
    let wrist = shoulder + dir * reach;
    let normal = dir.cross(&bend);
    ArmSolution { elbow, wrist, bend, normal }
}

/// A body pose: trunk and leg angles, wrist targets for the arms, ground contact. Every field
/// blends linearly ([`Pose::lerp`]), which is how transitions between actions are made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pose {
    /// Free translation after grounding, body frame (m): sway, weight shifts.
    pub shift: [f32; 3],
    /// Pelvis `[forward tilt, lateral tilt to the right, turn to the left]` (rad).
    pub pelvis: [f32; 3],
    /// Lower spine, same convention.
    pub spine: [f32; 3],
    /// Upper spine (chest), same convention.
    pub chest: [f32; 3],
    /// Neck and head together, same convention.
    pub head: [f32; 3],
    /// Shoulder elevation per side (rad).
    pub shrug: [f32; 2],
    /// Wrist target per side relative to the shoulder, chest frame (m).
    pub hand: [[f32; 3]; 2],
    /// Direction the elbow points to per side, chest frame.
    pub elbow: [[f32; 3]; 2],
    /// Wrist flexion per side (rad), about the arm-plane normal.
    pub wrist: [f32; 2],
    /// Per side `[hip flexion, hip abduction, knee flexion, ankle pitch]` (rad).
    pub leg: [[f32; 4]; 2],
    /// How much each foot carries the body (the grounding weights).
    pub support: [f32; 2],
    /// Vertical lift above the grounded position (jumps), m.
    pub lift: f32,
}

impl Default for Pose {
    /// Upright, arms hanging, both feet planted.
    fn default() -> Self {
        Pose {
            shift: [0.0; 3],
            pelvis: [0.0; 3],
            spine: [0.0; 3],
            chest: [0.0; 3],
            head: [0.0; 3],
            shrug: [0.0; 2],
            hand: [[-0.05, -0.5, -0.03], [0.05, -0.5, -0.03]],
            elbow: [[-0.3, 0.0, 1.0], [0.3, 0.0, 1.0]],
            wrist: [0.0; 2],
            leg: [[0.0, 0.05, 0.02, 0.0], [0.0, 0.05, 0.02, 0.0]],
            support: [1.0; 2],
            lift: 0.0,
        }
    }
}

impl Pose {
    /// `self` at `w = 0`, `other` at `w = 1`.
    pub fn lerp(&self, other: &Pose, w: f32) -> Pose {
        let l = |a: f32, b: f32| a + (b - a) * w;
        let l2 = |a: [f32; 2], b: [f32; 2]| [l(a[0], b[0]), l(a[1], b[1])];
        let l3 = |a: [f32; 3], b: [f32; 3]| [l(a[0], b[0]), l(a[1], b[1]), l(a[2], b[2])];
        let l4 =
            |a: [f32; 4], b: [f32; 4]| [l(a[0], b[0]), l(a[1], b[1]), l(a[2], b[2]), l(a[3], b[3])];
        Pose {
            shift: l3(self.shift, other.shift),
            pelvis: l3(self.pelvis, other.pelvis),
            spine: l3(self.spine, other.spine),
            chest: l3(self.chest, other.chest),
            head: l3(self.head, other.head),
            shrug: l2(self.shrug, other.shrug),
            hand: [
                lerp_polar(self.hand[0], other.hand[0], w, side_sign(LEFT)),
                lerp_polar(self.hand[1], other.hand[1], w, side_sign(RIGHT)),
            ],
            elbow: [l3(self.elbow[0], other.elbow[0]), l3(self.elbow[1], other.elbow[1])],
            wrist: l2(self.wrist, other.wrist),
            leg: [l4(self.leg[0], other.leg[0]), l4(self.leg[1], other.leg[1])],
            support: l2(self.support, other.support),
            lift: l(self.lift, other.lift),
        }
    }
}

/// Blends two wrist targets (relative to the shoulder) by distance and direction separately, so
/// the wrist swings around the shoulder instead of cutting through it (a straight path past the
/// shoulder would flip the elbow). Directions far apart bulge towards the front and the side
/// `sign` (−1 left, +1 right), the way arms are raised.
pub(crate) fn lerp_polar(a: [f32; 3], b: [f32; 3], w: f32, sign: f32) -> [f32; 3] {
    let (va, vb) = (V3::from(a), V3::from(b));
    let (la, lb) = (va.norm(), vb.norm());
    let straight = va + (vb - va) * w;
    if la < 1e-4 || lb < 1e-4 {
        return straight.into();
    }
    let (ua, ub) = (va / la, vb / lb);
    let apart = ((1.0 - ua.dot(&ub)) * 0.5).powi(2);
    let bulge =
        V3::new(sign * 0.5, 0.0, -1.0).normalize() * apart * (std::f32::consts::PI * w).sin();
    let dir = ua + (ub - ua) * w + bulge;
    if dir.norm() < 1e-4 {
        return straight.into();
    }
    (dir.normalize() * (la + (lb - la) * w)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skeleton::kinect_v2::BONES;

    fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    #[test]
    fn rest_pose_stands_on_the_floor_facing_minus_z() {
        let shape = BodyShape::new(1.75, [1.0; 3]);
        let p = shape.place(&Pose::default());
        // Feet on the floor, head near the top of a 1.75 m person.
        assert!((p[j::ANKLE_LEFT][1] - shape.ankle_height).abs() < 1e-4);
        assert!(p[j::HEAD][1] > 1.5 && p[j::HEAD][1] < 1.75, "head at {}", p[j::HEAD][1]);
        // The person's left is −x; the feet point to −z (towards the sensor).
        assert!(p[j::SHOULDER_LEFT][0] < p[j::SHOULDER_RIGHT][0]);
        assert!(p[j::HIP_LEFT][0] < p[j::HIP_RIGHT][0]);
        assert!(p[j::FOOT_LEFT][2] < p[j::ANKLE_LEFT][2]);
        // Hands hang below the hips.
        assert!(p[j::WRIST_LEFT][1] < p[j::SPINE_BASE][1]);
    }

    #[test]
    fn bone_lengths_do_not_depend_on_the_pose() {
        let shape = BodyShape::new(1.62, [1.02, 0.97, 1.03]);
        let rest = shape.place(&Pose::default());
        let bent = Pose {
            spine: [0.6, 0.1, 0.2],
            chest: [0.2, -0.1, 0.1],
            head: [0.3, 0.2, -0.4],
            hand: [[0.3, 0.2, -0.3], [0.0, 0.9, 0.0]],
            leg: [[1.2, 0.1, 1.5, -0.3], [0.3, 0.0, 0.2, 0.0]],
            wrist: [0.5, -0.8],
            shrug: [0.2, 0.0],
            ..Pose::default()
        };
        let moved = shape.place(&bent);
        for (a, b) in BONES {
            let (l0, l1) = (dist(rest[a], rest[b]), dist(moved[a], moved[b]));
            assert!((l0 - l1).abs() < 1e-4, "bone {a}-{b}: {l0} vs {l1}");
        }
    }

    #[test]
    fn ik_reaches_a_reachable_target_with_the_elbow_towards_the_pole() {
        let s = V3::new(0.0, 1.4, 0.0);
        let target = V3::new(0.1, 1.5, -0.3);
        let arm = two_bone_ik(s, target, V3::new(0.0, -1.0, 0.0), 0.29, 0.25);
        assert!((arm.wrist - target).norm() < 1e-5);
        assert!(((arm.elbow - s).norm() - 0.29).abs() < 1e-5);
        assert!(((arm.wrist - arm.elbow).norm() - 0.25).abs() < 1e-5);
        assert!(arm.elbow.y < s.y.min(target.y));
    }

    #[test]
    fn squatting_keeps_the_feet_planted_and_lowers_the_pelvis() {
        let shape = BodyShape::new(1.8, [1.0; 3]);
        let rest = shape.place(&Pose::default());
        let mut squat = Pose::default();
        for leg in &mut squat.leg {
            leg[0] = 1.7;
            leg[2] = 2.0;
        }
        let low = shape.place(&squat);
        assert!(rest[j::SPINE_BASE][1] - low[j::SPINE_BASE][1] > 0.35);
        // The feet stay on the floor at the same depth; the knees open a little, which moves
        // the ankles sideways by a few centimetres.
        for a in [j::ANKLE_LEFT, j::ANKLE_RIGHT] {
            assert!((rest[a][1] - low[a][1]).abs() < 1e-4, "ankle {a} lifted");
            assert!((rest[a][2] - low[a][2]).abs() < 1e-4, "ankle {a} slid");
            assert!((rest[a][0] - low[a][0]).abs() < 0.05, "ankle {a} moved sideways");
        }
        // The pelvis moves back (+z) behind the feet.
        assert!(low[j::SPINE_BASE][2] > rest[j::SPINE_BASE][2] + 0.1);
    }
}
