//! The unit of data that flows through skelseg: one sensor frame with up to a few bodies, each
//! with the 25 joints of the canonical (Kinect v2) layout.
//!
//! Sources in other layouts are mapped to the canonical one on the way in
//! ([`crate::skeleton::Layout::to_canonical`]); joints a layout lacks are marked
//! [`Tracking::NotTracked`].

use serde::{Deserialize, Serialize};

/// Number of joints of the canonical layout (Kinect v2).
pub const NUM_JOINTS: usize = 25;
/// Number of body slots the model sees (PKU-MMD's two).
pub const BODY_SLOTS: usize = 2;

/// How much a joint position can be trusted (Kinect v2 `TrackingState` order, 0/1/2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Tracking {
    /// No measurement: the position is a placeholder (zero or filled by a layout rule).
    #[default]
    NotTracked = 0,
    /// Estimated, not directly observed (occluded, or derived from neighbouring joints).
    Inferred = 1,
    /// Observed.
    Tracked = 2,
}

impl Tracking {
    /// From the Kinect v2 integer code (0, 1, 2); anything else is `None`.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Tracking::NotTracked),
            1 => Some(Tracking::Inferred),
            2 => Some(Tracking::Tracked),
            _ => None,
        }
    }
}

/// One joint: camera-space position in metres (Kinect axes: +x to the sensor's left, +y up, +z
/// away from the sensor) and its tracking state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Joint {
    /// Position `[x, y, z]` in metres.
    pub pos: [f32; 3],
    /// Tracking state.
    pub tracking: Tracking,
}

impl Joint {
    /// A tracked joint at `pos`.
    pub fn tracked(pos: [f32; 3]) -> Self {
        Joint { pos, tracking: Tracking::Tracked }
    }
}

/// One body in canonical layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Tracker-assigned id, stable while the body is tracked (Kinect `TrackingId`).
    pub id: u64,
    /// The 25 joints in Kinect v2 `JointType` order.
    pub joints: [Joint; NUM_JOINTS],
}

impl Body {
    /// A body whose joints are all tracked at the given positions.
    pub fn from_positions(id: u64, positions: &[[f32; 3]; NUM_JOINTS]) -> Self {
        Body { id, joints: positions.map(Joint::tracked) }
    }

    /// Joint positions only.
    pub fn positions(&self) -> [[f32; 3]; NUM_JOINTS] {
        self.joints.map(|j| j.pos)
    }
}

/// One sensor frame.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Frame number within its stream or recording (0-based, increasing; gaps allowed).
    pub index: u64,
    /// Sensor time in seconds since the start of the stream.
    pub timestamp_secs: f64,
    /// Bodies seen in this frame (possibly none).
    pub bodies: Vec<Body>,
}

impl Frame {
    /// Checks that every coordinate is finite and within `max_abs_m` metres of the sensor;
    /// returns the first offending `(body index, joint index)` otherwise.
    pub fn first_invalid_joint(&self, max_abs_m: f32) -> Option<(usize, usize)> {
        self.bodies.iter().enumerate().find_map(|(b, body)| {
            body.joints
                .iter()
                .position(|j| j.pos.iter().any(|c| !c.is_finite() || c.abs() > max_abs_m))
                .map(|j| (b, j))
        })
    }
}
