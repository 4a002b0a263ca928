//! Joint layouts, bones and the skeleton graph.
//!
//! The canonical layout is Kinect v2's 25 joints ([`kinect_v2`]); every other layout maps onto it.

pub mod azure32;
pub mod coco17;
pub mod graph;
pub mod kinect_v1;
pub mod kinect_v2;
mod layouts;
pub mod mediapipe33;
pub mod openpose25;

use serde::{Deserialize, Serialize};

/// A joint layout that sources may deliver. Names match `skeleton-ndjson/1`'s `layout` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Kinect v2, 25 joints: the canonical layout (also NTU RGB+D, PKU-MMD).
    #[default]
    KinectV2_25,
    /// Azure Kinect body tracking, 32 joints.
    AzureKinect32,
    /// Kinect v1, 20 joints (UTKinect-Action3D, MSRC-12).
    KinectV1_20,
    /// COCO-17 keypoints.
    Coco17,
    /// OpenPose BODY_25.
    OpenposeBody25,
    /// MediaPipe Pose, 33 landmarks.
    Mediapipe33,
}
