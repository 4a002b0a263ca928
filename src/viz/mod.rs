//! Rerun viewer output.
//!
//! Pipeline threads hand plain [`VizMsg`]s to a [`VizSender`]; one thread, `skelseg::viz`, turns
//! them into Rerun log calls. Rerun's time cursor is per thread, so all logging happens there.
//! The edge into that thread is lossy: a full queue drops the message and counts it, so the
//! viewer never slows the pipeline.
//!
//! # Entity tree
//!
//! One tree per stream, under `/stream/{id}` where `{id}` is the stream id made safe for entity
//! paths (letters, digits, `_` and `-`; anything else becomes `_`, clashes get a `_2` suffix):
//!
//! | path | archetype | rows |
//! |---|---|---|
//! | `/` | `AnnotationContext` (static) | class per body slot, 25 keypoints, 24 bones |
//! | `skeleton` | `ViewCoordinates` (static) | Kinect camera space: x left, y up, z forward |
//! | `skeleton/body{slot}` | `Points3D` + class/keypoint ids | one per frame with that body; `Clear` when it goes |
//! | `label` | `TextDocument` (markdown) | one per finalised frame: arg-max class |
//! | `probs/{class}` | `Scalars`, named series | one per finalised frame |
//! | `boundary` | `Scalars`, named series | one per finalised frame |
//! | `segments` | `TextLog` | one per committed segment, at its first frame |
//! | `segment_class` | `Scalars` (step line) | class id at a segment's first and last frame |
//! | `timeline/predicted` | `StateChange` | class name from a segment's start, reset after its end |
//! | `gt/segments`, `gt/segment_class`, `timeline/ground_truth` | as above | ground-truth intervals |
//!
//! Timelines: `frame` (the frame index) and `sensor_time` (seconds since the stream started, where
//! known: skeletons and scores carry it; segments and ground truth get it from frames already seen).
//! A blueprint lays out one tab per stream: the 3D skeleton, the probability, boundary and segment
//! plots, the predicted/ground-truth state lanes, the current label and the segment log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rerun::blueprint::{
    Blueprint, BlueprintActivation, ContainerLike, Horizontal, Spatial3DView, StateTimelineView,
    Tabs, TextDocumentView, TextLogView, TimePanel, TimeSeriesView, Vertical,
};
use rerun::components::InterpolationMode;
use rerun::{
    AnnotationContext, AsComponents, ClassDescription, Clear, KeypointPair, Points3D,
    RecordingStream, RecordingStreamBuilder, Rgba32, Scalars, SeriesLines, SpawnOptions,
    StateChange, StateConfiguration, TextDocument, TextLog, TextLogLevel, ViewCoordinates,
};

use crate::frame::{BODY_SLOTS, Frame, NUM_JOINTS, Tracking};
use crate::io::{ClassMap, Interval};
use crate::skeleton::kinect_v2::{BONES, JOINT_NAMES};
use crate::{Error, Result};

mod logger;
use logger::Logger;

/// Messages the viz queue holds before it starts dropping (a few seconds of a 30 fps stream with
/// scores, segments and skeletons).
pub const QUEUE_CAPACITY: usize = 4096;
/// Longest [`Visualizer::finish`] waits for Rerun to write out what was logged.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the viz thread beyond [`FLUSH_TIMEOUT`].
const JOIN_GRACE: Duration = Duration::from_secs(2);
/// Name of the viz thread.
pub const THREAD_NAME: &str = "skelseg::viz";
/// The sequence timeline of frame indices.
pub const TIMELINE_FRAME: &str = "frame";
/// The duration timeline of sensor time (seconds since the stream started).
pub const TIMELINE_SENSOR_TIME: &str = "sensor_time";
/// Name of the viewer executable `spawn` looks for on `PATH`.
pub const VIEWER_EXECUTABLE: &str = "rerun";

/// How to install the viewer that matches the SDK version skelseg is built with.
const VIEWER_INSTALL_HINT: &str = "install the matching viewer with `pip install rerun-sdk==0.36.3` \
    or `cargo install rerun-cli@0.36.3 --locked`, or write a file with `--viz save:run.rrd` and \
    open it later";
/// Frame timestamps each stream remembers, to place segments on `sensor_time` (~36 min at 30 fps).
/// Where the viewer output goes (`--viz`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VizTarget {
    /// No visualisation.
    #[default]
    Off,
    /// Start a `rerun` viewer process (found on `PATH`) and stream to it.
    Spawn,
    /// Stream to a running viewer over gRPC; `None` is Rerun's default
    /// `rerun+http://127.0.0.1:9876/proxy`.
    Connect(Option<String>),
    /// Write an `.rrd` file.
    Save(PathBuf),
}

impl FromStr for VizTarget {
    type Err = Error;

    /// Parses `off`, `spawn`, `connect`, `connect:URL` or `save:PATH`.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |message: String| Error::invalid("viz target", message);
        match s {
            "off" => return Ok(VizTarget::Off),
            "spawn" => return Ok(VizTarget::Spawn),
            "connect" => return Ok(VizTarget::Connect(None)),
            _ => {}
        }
        if let Some(url) = s.strip_prefix("connect:") {
            if url.is_empty() {
                return Err(invalid(
                    "expected a viewer URL after `connect:`, found nothing".into(),
                ));
            }
            return Ok(VizTarget::Connect(Some(url.to_owned())));
        }
        if let Some(path) = s.strip_prefix("save:") {
            if path.is_empty() {
                return Err(invalid("expected an .rrd path after `save:`, found nothing".into()));
            }
            return Ok(VizTarget::Save(PathBuf::from(path)));
        }
        Err(invalid(format!(
            "expected `off`, `spawn`, `connect`, `connect:URL` or `save:PATH`, found `{s}`"
        )))
    }
}

impl fmt::Display for VizTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VizTarget::Off => f.write_str("off"),
            VizTarget::Spawn => f.write_str("spawn"),
            VizTarget::Connect(None) => f.write_str("connect"),
            VizTarget::Connect(Some(url)) => write!(f, "connect:{url}"),
            VizTarget::Save(path) => write!(f, "save:{}", path.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and sender

/// How the viewer shows things.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VizOptions {
    /// Joint names beside each point (off by default: 25 names per body overlap into an
    /// unreadable block at any distance that frames the whole body).
    pub joint_names: bool,
}

/// What the pipeline tells the viewer. Stream ids are free text (a peer address, a file name).
#[derive(Clone, Debug, PartialEq)]
pub enum VizMsg {
    /// A raw canonical skeleton frame; body `i` of `frame.bodies` is drawn in slot `i`, the first
    /// [`BODY_SLOTS`] only.
    Frame {
        /// Stream id.
        stream: String,
        /// The frame.
        frame: Frame,
    },
    /// Scores of one finalised frame.
    Scores {
        /// Stream id.
        stream: String,
        /// Frame index.
        frame: u64,
        /// Sensor time of that frame, seconds since the stream started.
        timestamp_secs: f64,
        /// Per-class probabilities, class-id order.
        probs: Vec<f32>,
        /// Probability that an action boundary is at this frame.
        boundary_prob: f32,
    },
    /// A committed segment.
    Segment {
        /// Stream id.
        stream: String,
        /// Class id.
        class: usize,
        /// First frame index.
        start_frame: u64,
        /// Last frame index (inclusive).
        end_frame: u64,
        /// Segment confidence in `[0, 1]`.
        confidence: f32,
    },
    /// Ground-truth intervals of the stream, sent once when the labels are known. Interval ends
    /// are taken as frame indices (the positions of a recording that starts at frame 0).
    GroundTruth {
        /// Stream id.
        stream: String,
        /// The labelled intervals.
        intervals: Vec<Interval>,
    },
}

impl VizMsg {
    fn stream(&self) -> &str {
        match self {
            VizMsg::Frame { stream, .. }
            | VizMsg::Scores { stream, .. }
            | VizMsg::Segment { stream, .. }
            | VizMsg::GroundTruth { stream, .. } => stream,
        }
    }
}

/// Drop counter shared by the [`Visualizer`] and its senders.
#[derive(Debug, Default)]
struct Drops {
    count: AtomicU64,
    warned: AtomicBool,
}

/// The pipeline's handle on the viz queue: `Clone + Send`, never blocks.
#[derive(Clone, Debug)]
pub struct VizSender {
    tx_msgs: Sender<VizMsg>,
    drops: Arc<Drops>,
}

impl VizSender {
    /// Queues `msg` for the viewer without blocking. When the queue is full (the viewer is behind)
    /// or the viz thread has stopped, the message is dropped and counted
    /// ([`Visualizer::dropped`]); the first drop is logged as a warning.
    pub fn send(&self, msg: VizMsg) {
        match self.tx_msgs.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.drops.count.fetch_add(1, Ordering::Relaxed);
                if !self.drops.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = QUEUE_CAPACITY,
                        "viz queue full: dropping viewer messages so the pipeline never waits"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.drops.count.fetch_add(1, Ordering::Relaxed);
                tracing::trace!("viz thread gone: message dropped");
            }
        }
    }

    /// Messages dropped so far by all senders of this visualiser.
    pub fn dropped(&self) -> u64 {
        self.drops.count.load(Ordering::Relaxed)
    }

    /// Messages waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx_msgs.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Visualizer

/// Control messages to the viz thread.
#[derive(Debug)]
enum Command {
    /// Log what is queued, flush and stop.
    Shutdown,
}

/// Owns the viz thread `skelseg::viz` and its Rerun recording.
///
/// ## Ordering
/// Messages from one [`VizSender`] are logged in the order they were sent; messages from
/// different senders interleave. Each message carries its own frame index, so the viewer places
/// it on the `frame` timeline regardless of arrival order.
///
/// ## Shutdown
/// [`Visualizer::finish`] (or dropping the visualiser) logs what is already queued, flushes the
/// sink for at most [`FLUSH_TIMEOUT`] and joins the thread. It never blocks forever: senders that
/// outlive the visualiser only see their messages dropped.
#[must_use = "the viz thread stops when the Visualizer is dropped"]
#[derive(Debug)]
pub struct Visualizer {
    tx_msgs: Sender<VizMsg>,
    tx_cmds: Sender<Command>,
    drops: Arc<Drops>,
    msgs_to_viewer_handle: Option<JoinHandle<Result<()>>>,
}

impl Visualizer {
    /// Opens the Rerun output `target` under application id `app` and starts the viz thread.
    /// `classes` names the per-class series. Returns `None` for [`VizTarget::Off`].
    ///
    /// Fails with [`Error::Viz`] when `spawn` finds no `rerun` executable on `PATH` (the message
    /// says how to install it), when a `connect` URL is not a Rerun proxy URL, or when a `save`
    /// file cannot be created.
    pub fn start(target: &VizTarget, app: &str, classes: &ClassMap) -> Result<Option<Self>> {
        Self::start_with(target, app, classes, VizOptions::default())
    }

    /// [`Visualizer::start`] with display options.
    pub fn start_with(
        target: &VizTarget,
        app: &str,
        classes: &ClassMap,
        options: VizOptions,
    ) -> Result<Option<Self>> {
        Self::start_with_search_path(
            target,
            app,
            classes,
            std::env::var_os("PATH").as_deref(),
            options,
        )
    }

    /// [`Visualizer::start`] with an explicit executable search path (tests pass an empty one).
    fn start_with_search_path(
        target: &VizTarget,
        app: &str,
        classes: &ClassMap,
        search_path: Option<&OsStr>,
        options: VizOptions,
    ) -> Result<Option<Self>> {
        let Some(rec) = open_recording(target, app, search_path)? else {
            return Ok(None);
        };
        let mut logger = Logger::new(rec, classes);
        logger.joint_names = options.joint_names;
        let (tx_msgs, rx_msgs) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let (tx_cmds, rx_cmds) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || msgs_to_viewer(logger, rx_msgs, rx_cmds))
            .map_err(|source| Error::SpawnThread { name: THREAD_NAME.into(), source })?;
        tracing::info!(%target, "viz started");
        Ok(Some(Visualizer {
            tx_msgs,
            tx_cmds,
            drops: Arc::default(),
            msgs_to_viewer_handle: Some(handle),
        }))
    }

    /// A new handle to queue messages from any thread.
    pub fn sender(&self) -> VizSender {
        VizSender { tx_msgs: self.tx_msgs.clone(), drops: Arc::clone(&self.drops) }
    }

    /// Messages dropped so far because the viewer was behind (or already stopped).
    pub fn dropped(&self) -> u64 {
        self.drops.count.load(Ordering::Relaxed)
    }

    /// Logs what is queued, flushes the sink (at most [`FLUSH_TIMEOUT`]) and joins the thread.
    pub fn finish(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(handle) = self.msgs_to_viewer_handle.take() else {
            return Ok(());
        };
        // The thread also stops if this fails: the command receiver is gone only when it has.
        self.tx_cmds.try_send(Command::Shutdown).ok();
        // The flush is bounded, but dropping the Rerun stream afterwards joins its sink thread,
        // which waits without bound for a viewer that went away: wait only as long as the flush
        // may take, then leave the thread behind (it ends with the process).
        let deadline = std::time::Instant::now() + FLUSH_TIMEOUT + JOIN_GRACE;
        while !handle.is_finished() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::Viz {
                    message: format!(
                        "the viewer did not take the last messages within {:?} (gone?); they \
                         are lost, {} more were dropped before",
                        FLUSH_TIMEOUT + JOIN_GRACE,
                        self.dropped()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let result = handle
            .join()
            .map_err(|_| Error::Viz { message: format!("thread {THREAD_NAME} panicked") })?;
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "viz dropped messages because the viewer was behind");
        }
        result
    }
}

impl Drop for Visualizer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("viz shutdown: {e}");
        }
    }
}

/// Builds the recording stream for `target`; `None` for `Off`.
fn open_recording(
    target: &VizTarget,
    app: &str,
    search_path: Option<&OsStr>,
) -> Result<Option<RecordingStream>> {
    // Explicitly enabled: the user asked for output, so the `RERUN` env var must not veto it.
    let viz_err = |message: String| Error::Viz { message };
    let app_id = rerun::ApplicationId::try_new(app)
        .map_err(|e| viz_err(format!("invalid application id `{app}`: {e}")))?;
    let builder = RecordingStreamBuilder::new(app_id).enabled(true);
    let rec = match target {
        VizTarget::Off => return Ok(None),
        VizTarget::Spawn => {
            let Some(exe) = find_executable(VIEWER_EXECUTABLE, search_path) else {
                return Err(viz_err(format!(
                    "cannot spawn the viewer: no `{VIEWER_EXECUTABLE}` executable on PATH; \
                     {VIEWER_INSTALL_HINT}"
                )));
            };
            let opts = SpawnOptions {
                executable_path: Some(exe.to_string_lossy().into_owned()),
                ..SpawnOptions::default()
            };
            builder
                .spawn_opts(&opts)
                .map_err(|e| viz_err(format!("cannot spawn the viewer {}: {e}", exe.display())))?
        }
        VizTarget::Connect(None) => builder
            .connect_grpc()
            .map_err(|e| viz_err(format!("cannot connect to the viewer: {e}")))?,
        VizTarget::Connect(Some(url)) => builder.connect_grpc_opts(url.as_str()).map_err(|e| {
            viz_err(format!(
                "cannot connect to the viewer at {url}: {e} \
                 (expected e.g. rerun+http://127.0.0.1:9876/proxy)"
            ))
        })?,
        VizTarget::Save(path) => {
            let rec = builder
                .save(path)
                .map_err(|e| viz_err(format!("cannot write {}: {e}", path.display())))?;
            // Wall-clock log time would make saved files differ from run to run.
            rec.set_log_time_enabled(false);
            rec
        }
    };
    Ok(Some(rec))
}

/// The first file called `name` in the `PATH`-style `search_path` that can be executed.
fn find_executable(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let file_name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(search_path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(&file_name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The viz thread: logs messages until told to stop (or until the visualiser is gone), then logs
/// what is still queued and flushes.
fn msgs_to_viewer(
    mut logger: Logger,
    rx_msgs: Receiver<VizMsg>,
    rx_cmds: Receiver<Command>,
) -> Result<()> {
    loop {
        crossbeam_channel::select! {
            recv(rx_msgs) -> msg => match msg {
                Ok(msg) => logger.handle(msg),
                Err(_) => break,
            },
            recv(rx_cmds) -> cmd => match cmd {
                Ok(Command::Shutdown) | Err(_) => break,
            },
        }
    }
    // Only what is queued now: senders may keep sending, and shutdown must not wait for them.
    let backlog = rx_msgs.len();
    for msg in rx_msgs.try_iter().take(backlog) {
        logger.handle(msg);
    }
    logger.finish()
}

#[cfg(test)]
mod tests {
    use super::logger::{sanitize_path_part, unique_part};
    use super::*;

    /// `--viz connect` to a viewer that is not there (or went away): logging goes on (the
    /// queue is lossy) and shutdown returns within its bound with a clear error instead of
    /// hanging in the Rerun sink's drop.
    #[test]
    fn a_viewer_that_is_gone_does_not_hang_shutdown() {
        let target = VizTarget::Connect(Some("rerun+http://127.0.0.1:9/proxy".into()));
        let classes = ClassMap::new(vec!["background".into(), "wave".into()]);
        let viz = Visualizer::start(&target, "skelseg-test", &classes)
            .expect("connecting is lazy")
            .expect("a visualiser");
        let tx = viz.sender();
        for f in 0..200 {
            tx.send(VizMsg::Scores {
                stream: "s".into(),
                frame: f,
                timestamp_secs: f as f64 / 30.0,
                probs: vec![0.5, 0.5],
                boundary_prob: 0.1,
            });
        }
        let started = std::time::Instant::now();
        let result = viz.finish();
        let waited = started.elapsed();
        assert!(waited < FLUSH_TIMEOUT + JOIN_GRACE + Duration::from_secs(5), "{waited:?}");
        // Either the sink gives up by itself (`cannot flush ... unable to connect`) or the bound
        // cuts the wait short (`did not take`); both say that the messages did not arrive.
        match result {
            Err(Error::Viz { message }) => {
                assert!(
                    message.contains("connect") || message.contains("did not take"),
                    "{message}"
                )
            }
            other => panic!("expected a viz error, got {other:?}"),
        }
    }

    #[test]
    fn viz_target_parses_every_form() {
        assert_eq!("off".parse::<VizTarget>().unwrap(), VizTarget::Off);
        assert_eq!("spawn".parse::<VizTarget>().unwrap(), VizTarget::Spawn);
        assert_eq!("connect".parse::<VizTarget>().unwrap(), VizTarget::Connect(None));
        assert_eq!(
            "connect:rerun+http://10.0.0.2:9876/proxy".parse::<VizTarget>().unwrap(),
            VizTarget::Connect(Some("rerun+http://10.0.0.2:9876/proxy".into()))
        );
        assert_eq!(
            "save:out/run 1.rrd".parse::<VizTarget>().unwrap(),
            VizTarget::Save(PathBuf::from("out/run 1.rrd"))
        );
        for bad in ["", "Spawn", "save:", "connect:", "file:x.rrd", "off "] {
            let err = bad.parse::<VizTarget>().unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad:?} gave {err}");
        }
        // Display round-trips.
        for s in ["off", "spawn", "connect", "connect:rerun+http://h:1/proxy", "save:a.rrd"] {
            assert_eq!(s.parse::<VizTarget>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn spawn_without_viewer_on_path_is_a_clear_error() {
        let classes = ClassMap::new(vec!["background".into(), "walk".into()]);
        for search_path in [Some(OsStr::new("")), None] {
            let result = Visualizer::start_with_search_path(
                &VizTarget::Spawn,
                "skelseg_test",
                &classes,
                search_path,
                VizOptions::default(),
            );
            let Err(Error::Viz { message }) = result else {
                panic!("expected Error::Viz, got {result:?}");
            };
            assert!(message.contains("no `rerun` executable on PATH"), "{message}");
            assert!(message.contains("pip install rerun-sdk==0.36.3"), "{message}");
            assert!(message.contains("cargo install rerun-cli@0.36.3 --locked"), "{message}");
        }
    }

    #[test]
    fn off_starts_nothing() {
        let classes = ClassMap::new(vec!["background".into()]);
        assert!(Visualizer::start(&VizTarget::Off, "skelseg_test", &classes).unwrap().is_none());
    }

    #[test]
    fn finds_only_executable_files_on_the_search_path() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("rerun"), b"not executable").unwrap();
        let search = std::env::join_paths([plain.as_path(), dir.path()]).unwrap();
        #[cfg(unix)]
        assert_eq!(find_executable("rerun", Some(&search)), None);
        std::fs::write(dir.path().join("rerun"), b"#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let exe = dir.path().join("rerun");
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert_eq!(find_executable("rerun", Some(&search)), Some(exe));
        }
    }

    #[test]
    fn stream_ids_become_unique_path_parts() {
        assert_eq!(sanitize_path_part("kinect-1"), "kinect-1");
        assert_eq!(sanitize_path_part("tcp 127.0.0.1:5000"), "tcp_127_0_0_1_5000");
        assert_eq!(sanitize_path_part("a/b\\c"), "a_b_c");
        assert_eq!(sanitize_path_part(""), "_");
        let taken: HashSet<String> = ["a_b".to_owned(), "a_b_2".to_owned()].into();
        assert_eq!(unique_part("a_b", |p| taken.contains(p)), "a_b_3");
        assert_eq!(unique_part("c", |p| taken.contains(p)), "c");
    }
}
