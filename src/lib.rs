//! # skelseg
//!
//! Real-time temporal action segmentation of skeleton streams.
//!
//! Body joints arrive live from a Kinect, a body tracker or a pose estimator, or from a
//! recording such as PKU-MMD. skelseg derives the absolute, relative and motion modalities on the
//! fly, runs the InterAct model (DSMI spatial module per frame, MFAI temporal module over a
//! sliding window) and emits stable action segments.
//!
//! ## Brief overview
//!
//! Data flows `source → Frame → modalities → model → stream → SegmentEvent`, and the modules
//! follow it:
//!
//! - [`source`] (sockets, replay, simulator) and [`io`] (recordings, labels, datasets) give
//!   [`Frame`]s: the bodies of one instant, canonical Kinect v2 layout, metres. Build them from
//!   your tracker, or map another joint layout with [`skeleton`]; [`resample`] changes the frame
//!   rate.
//! - [`modality`]: the absolute, relative and motion modalities, derived per frame.
//! - [`model`]: the InterAct network; [`Model`] is a trained checkpoint that owns its weights,
//!   `Model::load(path, device)`.
//! - [`stream`]: [`stream::StreamSegmenter`] runs one stream on your thread, `push(frame)`
//!   returns events; [`stream::Pipeline`] runs many streams on worker threads, events on a
//!   channel or callback. Both emit [`stream::SegmentEvent`]: `SegmentStarted`, `SegmentEnded`
//!   (committed, never retracted), `FrameLabel`, `StreamEnded`.
//! - [`postprocess`]: boundary peaks and refinement; `viz` (feature `viz`): the Rerun viewer;
//!   `cluster` (feature `zenoh`): scale-out over Zenoh.
//! - [`Error`]: the one error type; every variant says where. Malformed input is an
//!   [`Error::Parse`] whose [`Location`] (file or stream, line, item), `expected` and `found`
//!   are fields.
//!
//! ```
//! use skelseg::stream::{SegmentEvent, StreamSegmenter};
//! # skelseg::tch::set_num_threads(1); // spinning OpenMP threads on a busy CI machine
//!
//! let model = skelseg::Model::load("fixtures/models/synth.safetensors", skelseg::Device::Cpu)?;
//! let mut segmenter = StreamSegmenter::builder(model).stream("camera-1").build()?;
//! let recording = skelseg::io::read_recording("fixtures/synth/skeleton/synth_0000.txt")?;
//! let mut events = Vec::new();
//! for frame in &recording.frames[..240] {
//!     events.extend(segmenter.push(frame)?);
//! }
//! // The end of the stream commits the open segment: nothing is lost.
//! events.extend(segmenter.finish()?);
//! let ends: Vec<u64> = events
//!     .iter()
//!     .filter_map(|e| match e {
//!         SegmentEvent::SegmentEnded { end_frame, .. } => Some(*end_frame),
//!         _ => None,
//!     })
//!     .collect();
//! assert!(ends.len() >= 2 && ends.last() == Some(&239), "{ends:?}");
//! assert!(matches!(events.last(), Some(SegmentEvent::StreamEnded { frames: 240, .. })));
//! # Ok::<(), skelseg::Error>(())
//! ```
//!
//! ## Features
//!
//! - `cli` (default): the `skelseg` binary's crates (clap, indicatif, ctrlc, anyhow,
//!   tracing-subscriber); turns on `synth` and `train`. The library never needs them: apps
//!   depend on skelseg with `default-features = false`.
//! - `viz` (default): Rerun viewer output (`viz`, [`stream::VizTap`]).
//! - `zenoh`: the `zenoh:` source, event publication and worker failover (`cluster`).
//! - Research tooling, on by default, off for an embedding app: `synth` (synthetic recordings,
//!   `synth`, the `sim` source) and `train` (training, offline and online evaluation: `train`,
//!   `online`). [`metrics`] (segment scores) is always there.
//!
//! ## libtorch
//!
//! The model runs on libtorch through [`tch`], re-exported so that apps use the same version:
//! [`Device`] is `tch::Device`.

// The data flow, in order: sources → frames → modalities → model → stream → events/viewer.
#[cfg(feature = "zenoh")]
pub mod cluster;
mod error;
mod frame;
pub mod io;
pub mod modality;
pub mod model;
pub mod postprocess;
pub mod resample;
pub mod skeleton;
pub mod source;
pub mod stream;
#[cfg(feature = "viz")]
pub mod viz;

// Scoring, shared by the runtime's reports and the research tooling.
pub mod metrics;

// Research tooling, each behind its feature (on by default; the binary needs them).
#[cfg(feature = "synth")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "train")]
pub mod online;
#[cfg(feature = "synth")]
pub mod synth;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Input, Location, Result};
pub use frame::{BODY_SLOTS, Body, Frame, Joint, NUM_JOINTS, Tracking};
pub use model::handle::Model;
/// The libtorch binding skelseg is built on, re-exported so apps need not pin it themselves.
pub use tch;
/// Where a model runs: `Device::Cpu`, `Device::Cuda(0)`, or `Device::cuda_if_available()`.
pub use tch::Device;
