//! COCO-17 person keypoints (AlphaPose, mmpose, RTMPose), and the mapping to the canonical
//! Kinect v2 layout.

use super::layouts::Source;
use crate::frame::{Joint, NUM_JOINTS};
use crate::skeleton::kinect_v2::joint as v2;

/// Number of keypoints.
pub const JOINT_COUNT: usize = 17;

/// Keypoint names in COCO order.
pub const JOINT_NAMES: [&str; JOINT_COUNT] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// The 19 edges of the COCO annotation `skeleton` (0-based; not a tree: the torso is a ring).
pub const BONES: [(usize, usize); 19] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
];

/// COCO-17 → Kinect v2. Limbs are copied. SpineBase = hip midpoint, SpineShoulder
/// = shoulder midpoint, Head = ear midpoint (nose when an ear is not tracked), SpineMid and Neck
/// interpolated, hands extrapolated 20 % of the forearm beyond the wrist: all inferred. Feet sit
/// on the ankles and hand tips/thumbs on the hands, not tracked.
pub(super) fn to_canonical(src: &Source<'_>) -> [Joint; NUM_JOINTS] {
    let spine_base = src.mean(&[11, 12]);
    let spine_shoulder = src.mean(&[5, 6]);
    let head = src.head(&[3, 4], 0);
    let hand_left = Source::lerp(src.copy(7), src.copy(9), 1.2);
    let hand_right = Source::lerp(src.copy(8), src.copy(10), 1.2);
    let mut out = [Joint::default(); NUM_JOINTS];
    out[v2::SPINE_BASE] = spine_base;
    out[v2::SPINE_MID] = Source::lerp(spine_base, spine_shoulder, 0.5);
    out[v2::NECK] = Source::lerp(spine_shoulder, head, 0.35);
    out[v2::HEAD] = head;
    out[v2::SHOULDER_LEFT] = src.copy(5);
    out[v2::ELBOW_LEFT] = src.copy(7);
    out[v2::WRIST_LEFT] = src.copy(9);
    out[v2::HAND_LEFT] = hand_left;
    out[v2::SHOULDER_RIGHT] = src.copy(6);
    out[v2::ELBOW_RIGHT] = src.copy(8);
    out[v2::WRIST_RIGHT] = src.copy(10);
    out[v2::HAND_RIGHT] = hand_right;
    out[v2::HIP_LEFT] = src.copy(11);
    out[v2::KNEE_LEFT] = src.copy(13);
    out[v2::ANKLE_LEFT] = src.copy(15);
    out[v2::FOOT_LEFT] = Source::placeholder(src.copy(15));
    out[v2::HIP_RIGHT] = src.copy(12);
    out[v2::KNEE_RIGHT] = src.copy(14);
    out[v2::ANKLE_RIGHT] = src.copy(16);
    out[v2::FOOT_RIGHT] = Source::placeholder(src.copy(16));
    out[v2::SPINE_SHOULDER] = spine_shoulder;
    out[v2::HAND_TIP_LEFT] = Source::placeholder(hand_left);
    out[v2::THUMB_LEFT] = Source::placeholder(hand_left);
    out[v2::HAND_TIP_RIGHT] = Source::placeholder(hand_right);
    out[v2::THUMB_RIGHT] = Source::placeholder(hand_right);
    out
}
