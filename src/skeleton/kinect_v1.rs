//! Kinect v1 body: 20 joints in `NUI_SKELETON_POSITION_INDEX` order (UTKinect-Action3D, MSRC-12,
//! G3D), and its mapping to the canonical Kinect v2 layout.

use super::layouts::Source;
use crate::frame::{Joint, NUM_JOINTS};
use crate::skeleton::kinect_v2::joint as v2;

/// Number of joints.
pub const JOINT_COUNT: usize = 20;

/// Joint names in SDK 1.x order.
pub const JOINT_NAMES: [&str; JOINT_COUNT] = [
    "HipCenter",
    "Spine",
    "ShoulderCenter",
    "Head",
    "ShoulderLeft",
    "ElbowLeft",
    "WristLeft",
    "HandLeft",
    "ShoulderRight",
    "ElbowRight",
    "WristRight",
    "HandRight",
    "HipLeft",
    "KneeLeft",
    "AnkleLeft",
    "FootLeft",
    "HipRight",
    "KneeRight",
    "AnkleRight",
    "FootRight",
];

/// The 19 bones `(parent, child)`, rooted at HipCenter: the Kinect v2 tree without the hand tips
/// and thumbs, with ShoulderCenter standing in for SpineShoulder.
pub const BONES: [(usize, usize); JOINT_COUNT - 1] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (2, 4),
    (4, 5),
    (5, 6),
    (6, 7),
    (2, 8),
    (8, 9),
    (9, 10),
    (10, 11),
    (0, 12),
    (12, 13),
    (13, 14),
    (14, 15),
    (0, 16),
    (16, 17),
    (17, 18),
    (18, 19),
];

/// Kinect v1 → v2. Indices 0..19 coincide except 2: v1 ShoulderCenter becomes
/// SpineShoulder (20), and Neck (2) is placed 35 % of the way from ShoulderCenter to Head
/// (inferred). Hand tips and thumbs do not exist in v1: they sit on the hand, not tracked.
pub(super) fn to_canonical(src: &Source<'_>) -> [Joint; NUM_JOINTS] {
    let mut out = [Joint::default(); NUM_JOINTS];
    for (i, slot) in out.iter_mut().enumerate().take(JOINT_COUNT) {
        *slot = src.copy(i);
    }
    out[v2::SPINE_SHOULDER] = src.copy(2);
    out[v2::NECK] = Source::lerp(src.copy(2), src.copy(3), 0.35);
    out[v2::HAND_TIP_LEFT] = Source::placeholder(out[v2::HAND_LEFT]);
    out[v2::THUMB_LEFT] = Source::placeholder(out[v2::HAND_LEFT]);
    out[v2::HAND_TIP_RIGHT] = Source::placeholder(out[v2::HAND_RIGHT]);
    out[v2::THUMB_RIGHT] = Source::placeholder(out[v2::HAND_RIGHT]);
    out
}
