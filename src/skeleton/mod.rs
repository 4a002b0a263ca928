//! Joint layouts, bones and the skeleton graph.
//!
//! The canonical layout is Kinect v2's 25 joints ([`kinect_v2`]); every other layout maps onto it.

pub mod graph;
pub mod kinect_v2;
