//! MediaPipe Pose (BlazePose) 33 landmarks, and the mapping to the canonical Kinect v2 layout.
//!
//! The mapping does not convert axes: MediaPipe world landmarks (metres, origin between the
//! hips, image axes) become Kinect camera space with `(-x, -y, z)`.

use super::layouts::Source;
use crate::frame::{Joint, NUM_JOINTS};
use crate::skeleton::kinect_v2::joint as v2;

/// Number of landmarks.
pub const JOINT_COUNT: usize = 33;

/// Landmark names in MediaPipe order.
pub const JOINT_NAMES: [&str; JOINT_COUNT] = [
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
];

/// The 35 `PoseLandmarksConnections` (not a tree; the mouth edge stands apart).
pub const BONES: [(usize, usize); 35] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 7),
    (0, 4),
    (4, 5),
    (5, 6),
    (6, 8),
    (9, 10),
    (11, 12),
    (11, 13),
    (13, 15),
    (15, 17),
    (15, 19),
    (15, 21),
    (17, 19),
    (12, 14),
    (14, 16),
    (16, 18),
    (16, 20),
    (16, 22),
    (18, 20),
    (11, 23),
    (12, 24),
    (23, 24),
    (23, 25),
    (24, 26),
    (25, 27),
    (26, 28),
    (27, 29),
    (28, 30),
    (29, 31),
    (30, 32),
    (27, 31),
    (28, 32),
];

/// MediaPipe-33 → Kinect v2. Limbs, feet (foot index), hand tips (index finger)
/// and thumbs are copied. SpineBase = hip midpoint, SpineShoulder = shoulder midpoint, Head =
/// ear midpoint, hands = mean of wrist, pinky and index, SpineMid and Neck interpolated: all
/// inferred. Nothing is left as a placeholder.
pub(super) fn to_canonical(src: &Source<'_>) -> [Joint; NUM_JOINTS] {
    let spine_base = src.mean(&[23, 24]);
    let spine_shoulder = src.mean(&[11, 12]);
    let head = src.mean(&[7, 8]);
    let mut out = [Joint::default(); NUM_JOINTS];
    out[v2::SPINE_BASE] = spine_base;
    out[v2::SPINE_MID] = Source::lerp(spine_base, spine_shoulder, 0.5);
    out[v2::NECK] = Source::lerp(spine_shoulder, head, 0.35);
    out[v2::HEAD] = head;
    out[v2::SHOULDER_LEFT] = src.copy(11);
    out[v2::ELBOW_LEFT] = src.copy(13);
    out[v2::WRIST_LEFT] = src.copy(15);
    out[v2::HAND_LEFT] = src.mean(&[15, 17, 19]);
    out[v2::SHOULDER_RIGHT] = src.copy(12);
    out[v2::ELBOW_RIGHT] = src.copy(14);
    out[v2::WRIST_RIGHT] = src.copy(16);
    out[v2::HAND_RIGHT] = src.mean(&[16, 18, 20]);
    out[v2::HIP_LEFT] = src.copy(23);
    out[v2::KNEE_LEFT] = src.copy(25);
    out[v2::ANKLE_LEFT] = src.copy(27);
    out[v2::FOOT_LEFT] = src.copy(31);
    out[v2::HIP_RIGHT] = src.copy(24);
    out[v2::KNEE_RIGHT] = src.copy(26);
    out[v2::ANKLE_RIGHT] = src.copy(28);
    out[v2::FOOT_RIGHT] = src.copy(32);
    out[v2::SPINE_SHOULDER] = spine_shoulder;
    out[v2::HAND_TIP_LEFT] = src.copy(19);
    out[v2::THUMB_LEFT] = src.copy(21);
    out[v2::HAND_TIP_RIGHT] = src.copy(20);
    out[v2::THUMB_RIGHT] = src.copy(22);
    out
}

/// Kinect v2 → MediaPipe-33, the inverse of the mapping to Kinect v2 where it has one: limbs, hand tips
/// and thumbs are copied, the pinky is placed so that the hand mean comes back, the ears sit
/// 7 cm either side of the head across the shoulder line, the face points and heels sit on
/// their neighbours. For writing stand-in recordings in a non-Kinect layout (`skelseg synth
/// --layout mediapipe_33`); positions keep Kinect camera axes.
pub fn from_canonical(joints: &[Joint; NUM_JOINTS]) -> [[f32; 3]; JOINT_COUNT] {
    let p = |j: usize| joints[j].pos;
    let add =
        |a: [f32; 3], b: [f32; 3], k: f32| -> [f32; 3] { std::array::from_fn(|c| a[c] + k * b[c]) };
    let across = {
        let (l, r) = (p(v2::SHOULDER_LEFT), p(v2::SHOULDER_RIGHT));
        let d: [f32; 3] = std::array::from_fn(|c| l[c] - r[c]);
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
        d.map(|v| v / n)
    };
    let head = p(v2::HEAD);
    // hand = mean(wrist, pinky, index) ⇒ pinky = 3·hand − wrist − index.
    let pinky = |hand: usize, wrist: usize, tip: usize| -> [f32; 3] {
        std::array::from_fn(|c| 3.0 * p(hand)[c] - p(wrist)[c] - p(tip)[c])
    };
    let neck = p(v2::NECK);
    let mouth: [f32; 3] = std::array::from_fn(|c| neck[c] + 0.7 * (head[c] - neck[c]));
    let mut out = [[0.0f32; 3]; JOINT_COUNT];
    for face in out.iter_mut().take(7) {
        *face = head;
    }
    out[7] = add(head, across, 0.07);
    out[8] = add(head, across, -0.07);
    out[9] = mouth;
    out[10] = mouth;
    out[11] = p(v2::SHOULDER_LEFT);
    out[12] = p(v2::SHOULDER_RIGHT);
    out[13] = p(v2::ELBOW_LEFT);
    out[14] = p(v2::ELBOW_RIGHT);
    out[15] = p(v2::WRIST_LEFT);
    out[16] = p(v2::WRIST_RIGHT);
    out[17] = pinky(v2::HAND_LEFT, v2::WRIST_LEFT, v2::HAND_TIP_LEFT);
    out[18] = pinky(v2::HAND_RIGHT, v2::WRIST_RIGHT, v2::HAND_TIP_RIGHT);
    out[19] = p(v2::HAND_TIP_LEFT);
    out[20] = p(v2::HAND_TIP_RIGHT);
    out[21] = p(v2::THUMB_LEFT);
    out[22] = p(v2::THUMB_RIGHT);
    out[23] = p(v2::HIP_LEFT);
    out[24] = p(v2::HIP_RIGHT);
    out[25] = p(v2::KNEE_LEFT);
    out[26] = p(v2::KNEE_RIGHT);
    out[27] = p(v2::ANKLE_LEFT);
    out[28] = p(v2::ANKLE_RIGHT);
    out[29] = p(v2::ANKLE_LEFT);
    out[30] = p(v2::ANKLE_RIGHT);
    out[31] = p(v2::FOOT_LEFT);
    out[32] = p(v2::FOOT_RIGHT);
    out
}
