//! Azure Kinect Body Tracking: 32 joints in `k4abt_joint_id_t` order, and its mapping to the
//! canonical Kinect v2 layout.
//!
//! The mapping only picks joints; it does not convert units or axes. Azure positions are in
//! millimetres with +x right, +y down: convert with `(-x, -y, z) / 1000` before mapping (the
//! `skeleton-ndjson/1` header's `units`/`axes` say which applies).

use super::layouts::Source;
use crate::frame::{Joint, NUM_JOINTS};

/// Number of joints.
pub const JOINT_COUNT: usize = 32;

/// Joint names in `k4abt_joint_id_t` order.
pub const JOINT_NAMES: [&str; JOINT_COUNT] = [
    "PELVIS",
    "SPINE_NAVEL",
    "SPINE_CHEST",
    "NECK",
    "CLAVICLE_LEFT",
    "SHOULDER_LEFT",
    "ELBOW_LEFT",
    "WRIST_LEFT",
    "HAND_LEFT",
    "HANDTIP_LEFT",
    "THUMB_LEFT",
    "CLAVICLE_RIGHT",
    "SHOULDER_RIGHT",
    "ELBOW_RIGHT",
    "WRIST_RIGHT",
    "HAND_RIGHT",
    "HANDTIP_RIGHT",
    "THUMB_RIGHT",
    "HIP_LEFT",
    "KNEE_LEFT",
    "ANKLE_LEFT",
    "FOOT_LEFT",
    "HIP_RIGHT",
    "KNEE_RIGHT",
    "ANKLE_RIGHT",
    "FOOT_RIGHT",
    "HEAD",
    "NOSE",
    "EYE_LEFT",
    "EAR_LEFT",
    "EYE_RIGHT",
    "EAR_RIGHT",
];

/// The 31 bones `(parent, child)` of the SDK's joint hierarchy, rooted at PELVIS.
pub const BONES: [(usize, usize); JOINT_COUNT - 1] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (2, 4),
    (4, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (8, 9),
    (7, 10),
    (2, 11),
    (11, 12),
    (12, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (14, 17),
    (0, 18),
    (18, 19),
    (19, 20),
    (20, 21),
    (0, 22),
    (22, 23),
    (23, 24),
    (24, 25),
    (3, 26),
    (26, 27),
    (26, 28),
    (26, 29),
    (26, 30),
    (26, 31),
];

/// Source joint of every canonical joint (v2 index → Azure index). Every v2 joint
/// has an Azure counterpart, so nothing is filled; clavicles and face joints are dropped.
pub const TO_CANONICAL: [usize; NUM_JOINTS] =
    [0, 1, 3, 26, 5, 6, 7, 8, 12, 13, 14, 15, 18, 19, 20, 21, 22, 23, 24, 25, 2, 9, 10, 16, 17];

/// Azure 32 → Kinect v2: every joint copied with its own tracking state.
pub(super) fn to_canonical(src: &Source<'_>) -> [Joint; NUM_JOINTS] {
    TO_CANONICAL.map(|i| src.copy(i))
}
