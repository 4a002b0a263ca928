//! OpenPose BODY_25 keypoints, and the mapping to the canonical Kinect v2 layout.

use super::layouts::Source;
use crate::frame::{Joint, NUM_JOINTS};
use crate::skeleton::kinect_v2::joint as v2;

/// Number of keypoints.
pub const JOINT_COUNT: usize = 25;

/// Keypoint names in BODY_25 order.
pub const JOINT_NAMES: [&str; JOINT_COUNT] = [
    "Nose",
    "Neck",
    "RShoulder",
    "RElbow",
    "RWrist",
    "LShoulder",
    "LElbow",
    "LWrist",
    "MidHip",
    "RHip",
    "RKnee",
    "RAnkle",
    "LHip",
    "LKnee",
    "LAnkle",
    "REye",
    "LEye",
    "REar",
    "LEar",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
];

/// The 24 `POSE_BODY_25` pairs (a tree rooted at Neck).
pub const BONES: [(usize, usize); JOINT_COUNT - 1] = [
    (1, 8),
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (8, 9),
    (9, 10),
    (10, 11),
    (8, 12),
    (12, 13),
    (13, 14),
    (1, 0),
    (0, 15),
    (15, 17),
    (0, 16),
    (16, 18),
    (14, 19),
    (19, 20),
    (14, 21),
    (11, 22),
    (22, 23),
    (11, 24),
];

/// BODY_25 → Kinect v2. MidHip is SpineBase and OpenPose's Neck (the shoulder
/// midpoint) is SpineShoulder, both copied. Head = ear midpoint (nose when an ear is not tracked),
/// SpineMid and Neck interpolated, hands extrapolated 20 % of the forearm beyond the wrist, feet
/// = toe midpoints: all inferred. Hand tips and thumbs sit on the hands, not tracked.
pub(super) fn to_canonical(src: &Source<'_>) -> [Joint; NUM_JOINTS] {
    let spine_base = src.copy(8);
    let spine_shoulder = src.copy(1);
    let head = src.head(&[17, 18], 0);
    let hand_left = Source::lerp(src.copy(6), src.copy(7), 1.2);
    let hand_right = Source::lerp(src.copy(3), src.copy(4), 1.2);
    let mut out = [Joint::default(); NUM_JOINTS];
    out[v2::SPINE_BASE] = spine_base;
    out[v2::SPINE_MID] = Source::lerp(spine_base, spine_shoulder, 0.5);
    out[v2::NECK] = Source::lerp(spine_shoulder, head, 0.35);
    out[v2::HEAD] = head;
    out[v2::SHOULDER_LEFT] = src.copy(5);
    out[v2::ELBOW_LEFT] = src.copy(6);
    out[v2::WRIST_LEFT] = src.copy(7);
    out[v2::HAND_LEFT] = hand_left;
    out[v2::SHOULDER_RIGHT] = src.copy(2);
    out[v2::ELBOW_RIGHT] = src.copy(3);
    out[v2::WRIST_RIGHT] = src.copy(4);
    out[v2::HAND_RIGHT] = hand_right;
    out[v2::HIP_LEFT] = src.copy(12);
    out[v2::KNEE_LEFT] = src.copy(13);
    out[v2::ANKLE_LEFT] = src.copy(14);
    out[v2::FOOT_LEFT] = src.mean(&[19, 20]);
    out[v2::HIP_RIGHT] = src.copy(9);
    out[v2::KNEE_RIGHT] = src.copy(10);
    out[v2::ANKLE_RIGHT] = src.copy(11);
    out[v2::FOOT_RIGHT] = src.mean(&[22, 23]);
    out[v2::SPINE_SHOULDER] = spine_shoulder;
    out[v2::HAND_TIP_LEFT] = Source::placeholder(hand_left);
    out[v2::THUMB_LEFT] = Source::placeholder(hand_left);
    out[v2::HAND_TIP_RIGHT] = Source::placeholder(hand_right);
    out[v2::THUMB_RIGHT] = Source::placeholder(hand_right);
    out
}
