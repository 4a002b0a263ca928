//! # skelseg
//!
//! Real-time temporal action segmentation of skeleton streams.
//!
//! Body joints arrive live from a Kinect, a body tracker or a pose estimator, or from a
//! recording such as PKU-MMD. skelseg derives the absolute, relative and motion modalities on the
//! fly, runs the InterAct model (DSMI spatial module per frame, MFAI temporal module over a
//! sliding window) and emits stable action segments.

pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod io;
pub mod metrics;
pub mod modality;
pub mod model;
pub mod online;
pub mod postprocess;
pub mod skeleton;
pub mod source;
pub mod stream;
pub mod synth;
pub mod train;
#[cfg(feature = "viz")]
pub mod viz;

pub use error::{Error, Result};
pub use frame::{BODY_SLOTS, Body, Frame, Joint, NUM_JOINTS, Tracking};
