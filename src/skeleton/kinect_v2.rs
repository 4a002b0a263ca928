//! Kinect v2 body: 25 joints in `JointType` order, the canonical layout of skelseg (= NTU RGB+D =
//! PKU-MMD). "Left"/"right" are the person's.

use crate::frame::NUM_JOINTS;

/// Joint names in `JointType` order.
pub const JOINT_NAMES: [&str; NUM_JOINTS] = [
    "SpineBase",
    "SpineMid",
    "Neck",
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
    "SpineShoulder",
    "HandTipLeft",
    "ThumbLeft",
    "HandTipRight",
    "ThumbRight",
];

/// Joint indices by name, for readable code elsewhere.
#[allow(missing_docs)]
pub mod joint {
    pub const SPINE_BASE: usize = 0;
    pub const SPINE_MID: usize = 1;
    pub const NECK: usize = 2;
    pub const HEAD: usize = 3;
    pub const SHOULDER_LEFT: usize = 4;
    pub const ELBOW_LEFT: usize = 5;
    pub const WRIST_LEFT: usize = 6;
    pub const HAND_LEFT: usize = 7;
    pub const SHOULDER_RIGHT: usize = 8;
    pub const ELBOW_RIGHT: usize = 9;
    pub const WRIST_RIGHT: usize = 10;
    pub const HAND_RIGHT: usize = 11;
    pub const HIP_LEFT: usize = 12;
    pub const KNEE_LEFT: usize = 13;
    pub const ANKLE_LEFT: usize = 14;
    pub const FOOT_LEFT: usize = 15;
    pub const HIP_RIGHT: usize = 16;
    pub const KNEE_RIGHT: usize = 17;
    pub const ANKLE_RIGHT: usize = 18;
    pub const FOOT_RIGHT: usize = 19;
    pub const SPINE_SHOULDER: usize = 20;
    pub const HAND_TIP_LEFT: usize = 21;
    pub const THUMB_LEFT: usize = 22;
    pub const HAND_TIP_RIGHT: usize = 23;
    pub const THUMB_RIGHT: usize = 24;
}

/// The joint every relative coordinate is taken from (DeST's PKU recipe).
pub const CENTRE: usize = joint::SPINE_BASE;

/// The 24 bones as `(parent, child)`, rooted at SpineBase (Kinect SDK BodyBasics sample; DeST's
/// PKU graph uses the same edge set).
pub const BONES: [(usize, usize); NUM_JOINTS - 1] = [
    (0, 1),
    (1, 20),
    (20, 2),
    (2, 3),
    (20, 4),
    (4, 5),
    (5, 6),
    (6, 7),
    (7, 21),
    (6, 22),
    (20, 8),
    (8, 9),
    (9, 10),
    (10, 11),
    (11, 23),
    (10, 24),
    (0, 12),
    (12, 13),
    (13, 14),
    (14, 15),
    (0, 16),
    (16, 17),
    (17, 18),
    (18, 19),
];

/// Index of a joint by its Kinect SDK name (`"SpineBase"`, ...).
pub fn joint_index(name: &str) -> Option<usize> {
    JOINT_NAMES.iter().position(|n| *n == name)
}

/// Parent of every joint (`None` for SpineBase).
pub fn parents() -> [Option<usize>; NUM_JOINTS] {
    let mut parents = [None; NUM_JOINTS];
    for &(p, c) in &BONES {
        parents[c] = Some(p);
    }
    parents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bones_form_a_tree_rooted_at_spine_base() {
        let parents = parents();
        assert_eq!(parents[CENTRE], None);
        assert_eq!(parents.iter().filter(|p| p.is_none()).count(), 1);
        for j in 0..NUM_JOINTS {
            // Walking up from any joint reaches the root within NUM_JOINTS steps.
            let mut at = j;
            let mut steps = 0;
            while let Some(p) = parents[at] {
                at = p;
                steps += 1;
                assert!(steps < NUM_JOINTS, "cycle through joint {j}");
            }
            assert_eq!(at, CENTRE);
        }
    }

    #[test]
    fn names_round_trip() {
        for (i, name) in JOINT_NAMES.iter().enumerate() {
            assert_eq!(joint_index(name), Some(i));
        }
        assert_eq!(joint_index("Tail"), None);
    }
}
