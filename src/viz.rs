//! Rerun viewer output (DESIGN.md "Visualisation", reference/ecosystem.md §2).
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

/// Messages the viz queue holds before it starts dropping (a few seconds of a 30 fps stream with
/// scores, segments and skeletons).
pub const QUEUE_CAPACITY: usize = 4096;
/// Longest [`Visualizer::finish`] waits for Rerun to write out what was logged.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
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
const TIMESTAMP_HISTORY: usize = 1 << 16;
/// Point radius of a tracked joint, in metres.
const RADIUS_TRACKED_M: f32 = 0.025;
/// Point radius of an inferred joint, in metres.
const RADIUS_INFERRED_M: f32 = 0.02;
/// Point radius of a joint without a measurement, in metres.
const RADIUS_NOT_TRACKED_M: f32 = 0.01;
/// Colour of joints without a measurement.
const COLOR_NOT_TRACKED: Rgba32 = Rgba32::from_unmultiplied_rgba(128, 128, 128, 160);
/// Colour of the background class (id 0).
const COLOR_BACKGROUND: u32 = 0x9E9E_9EFF;
/// Class colours (Tableau 20), cycled for class ids ≥ 1.
const PALETTE: [u32; 20] = [
    0x1F77_B4FF,
    0xFF7F_0EFF,
    0x2CA0_2CFF,
    0xD627_28FF,
    0x9467_BDFF,
    0x8C56_4BFF,
    0xE377_C2FF,
    0xBCBD_22FF,
    0x17BE_CFFF,
    0xAEC7_E8FF,
    0xFFBB_78FF,
    0x98DF_8AFF,
    0xFF98_96FF,
    0xC5B0_D5FF,
    0xC49C_94FF,
    0xF7B6_D2FF,
    0xDBDB_8DFF,
    0x9EDA_E5FF,
    0x7F7F_7FFF,
    0x3939_79FF,
];
/// Skeleton colour per body slot: tracked joints and bones.
const SLOT_COLORS: [Rgba32; BODY_SLOTS] =
    [Rgba32::from_rgb(0x1F, 0x77, 0xB4), Rgba32::from_rgb(0xFF, 0x7F, 0x0E)];
/// Lighter skeleton colour per body slot for inferred joints.
const SLOT_COLORS_INFERRED: [Rgba32; BODY_SLOTS] =
    [Rgba32::from_rgb(0x9E, 0xC7, 0xE8), Rgba32::from_rgb(0xFF, 0xC8, 0x8A)];

// ---------------------------------------------------------------------------------------------
// Target

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
        Self::start_with_search_path(target, app, classes, std::env::var_os("PATH").as_deref())
    }

    /// [`Visualizer::start`] with an explicit executable search path (tests pass an empty one).
    fn start_with_search_path(
        target: &VizTarget,
        app: &str,
        classes: &ClassMap,
        search_path: Option<&OsStr>,
    ) -> Result<Option<Self>> {
        let Some(rec) = open_recording(target, app, search_path)? else {
            return Ok(None);
        };
        let logger = Logger::new(rec, classes);
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

// ---------------------------------------------------------------------------------------------
// Logger (viz thread only)

/// One class as the viewer shows it.
#[derive(Debug)]
struct ClassEntry {
    name: String,
    /// Entity path part under `probs/`.
    path_part: String,
    color: u32,
}

/// What the viz thread remembers per stream.
#[derive(Debug)]
struct StreamState {
    /// Entity path root, `/stream/{sanitised id}`.
    root: String,
    /// Body slots with a skeleton on screen, to clear them when the body goes.
    slots_shown: [bool; BODY_SLOTS],
    /// `(frame index, sensor time)` of recent frames, increasing frame index.
    timestamps: VecDeque<(u64, f64)>,
}

impl StreamState {
    fn remember_time(&mut self, frame: u64, timestamp_secs: f64) {
        if self.timestamps.back().is_some_and(|&(last, _)| last >= frame) {
            return;
        }
        if self.timestamps.len() == TIMESTAMP_HISTORY {
            self.timestamps.pop_front();
        }
        self.timestamps.push_back((frame, timestamp_secs));
    }

    fn time_of(&self, frame: u64) -> Option<f64> {
        let i = self.timestamps.binary_search_by_key(&frame, |&(f, _)| f).ok()?;
        self.timestamps.get(i).map(|&(_, t)| t)
    }
}

/// Where one kind of segment (predicted or ground truth) of a stream goes.
#[derive(Debug)]
struct SegmentPaths {
    /// `TextLog` entries.
    log: String,
    /// Class-id step line.
    band: String,
    /// `StateChange` lane.
    lane: String,
}

impl SegmentPaths {
    fn predicted(root: &str) -> Self {
        SegmentPaths {
            log: format!("{root}/segments"),
            band: format!("{root}/segment_class"),
            lane: format!("{root}/timeline/predicted"),
        }
    }

    fn ground_truth(root: &str) -> Self {
        SegmentPaths {
            log: format!("{root}/gt/segments"),
            band: format!("{root}/gt/segment_class"),
            lane: format!("{root}/timeline/ground_truth"),
        }
    }
}

/// Turns [`VizMsg`]s into Rerun log calls; lives on the viz thread.
struct Logger {
    rec: RecordingStream,
    classes: Vec<ClassEntry>,
    /// Raw stream id → its state.
    streams: HashMap<String, StreamState>,
    /// Sanitised stream ids in order of appearance (for the blueprint).
    stream_order: Vec<(String, String)>,
    used_roots: HashSet<String>,
    log_errors: u64,
    warned_class_count: bool,
}

impl Logger {
    fn new(rec: RecordingStream, classes: &ClassMap) -> Self {
        let mut logger = Logger {
            rec,
            classes: Vec::new(),
            streams: HashMap::new(),
            stream_order: Vec::new(),
            used_roots: HashSet::new(),
            log_errors: 0,
            warned_class_count: false,
        };
        for name in classes.names() {
            logger.push_class(name.clone());
        }
        logger.log_static("/", &skeleton_annotation());
        logger
    }

    fn push_class(&mut self, name: String) {
        let id = self.classes.len();
        let taken: HashSet<&str> = self.classes.iter().map(|c| c.path_part.as_str()).collect();
        let path_part = unique_part(&sanitize_path_part(&name), |p| taken.contains(p));
        self.classes.push(ClassEntry { name, path_part, color: class_color(id) });
    }

    fn class_name(&self, class: usize) -> String {
        self.classes.get(class).map_or_else(|| format!("class {class}"), |c| c.name.clone())
    }

    fn handle(&mut self, msg: VizMsg) {
        if !self.streams.contains_key(msg.stream()) {
            self.add_stream(msg.stream().to_owned());
        }
        match msg {
            VizMsg::Frame { stream, frame } => self.log_frame(&stream, &frame),
            VizMsg::Scores { stream, frame, timestamp_secs, probs, boundary_prob } => {
                self.log_scores(&stream, frame, timestamp_secs, &probs, boundary_prob);
            }
            VizMsg::Segment { stream, class, start_frame, end_frame, confidence } => {
                let root = self.root(&stream);
                let text = format!(
                    "{}: frames {start_frame}–{end_frame} (confidence {confidence:.2})",
                    self.class_name(class)
                );
                let paths = SegmentPaths::predicted(&root);
                self.log_segment(&stream, &paths, class, (start_frame, end_frame), text);
            }
            VizMsg::GroundTruth { stream, intervals } => {
                let paths = SegmentPaths::ground_truth(&self.root(&stream));
                for iv in intervals {
                    let (start, end) = (iv.start as u64, iv.end as u64);
                    let text = format!("{}: frames {start}–{end}", self.class_name(iv.class));
                    self.log_segment(&stream, &paths, iv.class, (start, end), text);
                }
            }
        }
    }

    fn root(&self, stream: &str) -> String {
        self.streams.get(stream).map_or_else(String::new, |s| s.root.clone())
    }

    /// Declares a new stream: its static entities and a blueprint tab.
    fn add_stream(&mut self, stream: String) {
        let used = &self.used_roots;
        let id = unique_part(&sanitize_path_part(&stream), |p| used.contains(p));
        self.used_roots.insert(id.clone());
        let root = format!("/stream/{id}");
        tracing::debug!(stream, %root, "viz: new stream");

        self.log_static(&format!("{root}/skeleton"), &ViewCoordinates::LUF());
        let series: Vec<(String, SeriesLines)> = self
            .classes
            .iter()
            .map(|c| {
                let lines = SeriesLines::new().with_names([c.name.as_str()]).with_colors([c.color]);
                (format!("{root}/probs/{}", c.path_part), lines)
            })
            .collect();
        for (path, lines) in &series {
            self.log_static(path, lines);
        }
        self.log_static(
            &format!("{root}/boundary"),
            &SeriesLines::new().with_names(["boundary"]).with_colors([0xD627_28FFu32]),
        );
        for (path, name) in
            [("segment_class", "predicted class"), ("gt/segment_class", "ground-truth class")]
        {
            self.log_static(
                &format!("{root}/{path}"),
                &SeriesLines::new()
                    .with_names([name])
                    .with_interpolation_mode(InterpolationMode::StepAfter),
            );
        }
        let states = StateConfiguration::new()
            .with_values(self.classes.iter().map(|c| c.name.clone()))
            .with_colors(self.classes.iter().map(|c| c.color));
        for lane in ["predicted", "ground_truth"] {
            self.log_static(&format!("{root}/timeline/{lane}"), &states);
        }

        self.streams.insert(
            stream.clone(),
            StreamState { root, slots_shown: [false; BODY_SLOTS], timestamps: VecDeque::new() },
        );
        self.stream_order.push((stream, id));
        self.send_blueprint();
    }

    fn log_frame(&mut self, stream: &str, frame: &Frame) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        state.remember_time(frame.index, frame.timestamp_secs);
        let root = state.root.clone();
        let mut slots_shown = state.slots_shown;
        self.set_time(frame.index, Some(frame.timestamp_secs));
        for (slot, shown) in slots_shown.iter_mut().enumerate() {
            let path = format!("{root}/skeleton/body{slot}");
            match frame.bodies.get(slot) {
                Some(body) => {
                    let points = Points3D::new(body.joints.iter().map(|j| j.pos))
                        .with_colors(body.joints.iter().map(|j| joint_color(slot, j.tracking)))
                        .with_radii(body.joints.iter().map(|j| joint_radius_m(j.tracking)))
                        .with_class_ids([slot as u16])
                        .with_keypoint_ids(0..NUM_JOINTS as u16);
                    self.log(&path, &points);
                    *shown = true;
                }
                None if *shown => {
                    self.log(&path, &Clear::flat());
                    *shown = false;
                }
                None => {}
            }
        }
        if let Some(state) = self.streams.get_mut(stream) {
            state.slots_shown = slots_shown;
        }
    }

    fn log_scores(
        &mut self,
        stream: &str,
        frame: u64,
        timestamp_secs: f64,
        probs: &[f32],
        boundary_prob: f32,
    ) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        state.remember_time(frame, timestamp_secs);
        let root = state.root.clone();
        if probs.len() != self.classes.len() && !self.warned_class_count {
            self.warned_class_count = true;
            tracing::warn!(
                classes = self.classes.len(),
                probs = probs.len(),
                "viz: scores do not match the class map; extra classes are shown by id"
            );
        }
        while self.classes.len() < probs.len() {
            let name = format!("class {}", self.classes.len());
            self.push_class(name);
        }
        self.set_time(frame, Some(timestamp_secs));
        for (class, &p) in probs.iter().enumerate() {
            let Some(entry) = self.classes.get(class) else {
                break;
            };
            let path = format!("{root}/probs/{}", entry.path_part);
            self.log(&path, &Scalars::single(f64::from(p)));
        }
        self.log(&format!("{root}/boundary"), &Scalars::single(f64::from(boundary_prob)));
        let best = probs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1));
        let text = match best {
            Some((class, p)) => format!(
                "## {}\n\np = {p:.2} · boundary {boundary_prob:.2} · frame {frame}",
                self.class_name(class)
            ),
            None => format!("## –\n\nno scores · frame {frame}"),
        };
        self.log(&format!("{root}/label"), &TextDocument::from_markdown(text));
    }

    /// A segment (or ground-truth interval): one `TextLog` entry at its first frame, the class id
    /// at its first and last frame on the step line, and its class name on the state lane from
    /// its first frame until a reset just after its last.
    fn log_segment(
        &mut self,
        stream: &str,
        paths: &SegmentPaths,
        class: usize,
        (start_frame, end_frame): (u64, u64),
        text: String,
    ) {
        let color = Rgba32::from_u32(class_color(class));
        let level = if class == 0 { TextLogLevel::DEBUG } else { TextLogLevel::INFO };
        self.set_stream_time(stream, start_frame);
        self.log(&paths.log, &TextLog::new(text).with_level(level).with_color(color));
        self.log(&paths.band, &Scalars::single(class as f64));
        self.log(&paths.lane, &StateChange::single(self.class_name(class)));
        if end_frame > start_frame {
            self.set_stream_time(stream, end_frame);
            self.log(&paths.band, &Scalars::single(class as f64));
        }
        // A segment starting right after this one is logged later, so at equal times it wins.
        self.set_stream_time(stream, end_frame.saturating_add(1));
        self.log(&paths.lane, &StateChange::single(""));
        tracing::trace!(stream, path = %paths.log, start_frame, end_frame, "viz: segment");
    }

    /// Sets the time cursor to `frame` with the sensor time remembered for it, if any.
    fn set_stream_time(&self, stream: &str, frame: u64) {
        let time = self.streams.get(stream).and_then(|s| s.time_of(frame));
        self.set_time(frame, time);
    }

    fn set_time(&self, frame: u64, sensor_time_secs: Option<f64>) {
        self.rec.reset_time();
        self.rec.set_time_sequence(TIMELINE_FRAME, i64::try_from(frame).unwrap_or(i64::MAX));
        if let Some(secs) = sensor_time_secs.filter(|s| s.is_finite() && *s >= 0.0) {
            self.rec.set_duration_secs(TIMELINE_SENSOR_TIME, secs);
        }
    }

    fn log(&mut self, path: &str, archetype: &impl AsComponents) {
        if let Err(e) = self.rec.log(path, archetype) {
            self.log_error(path, &e);
        }
    }

    fn log_static(&mut self, path: &str, archetype: &impl AsComponents) {
        if let Err(e) = self.rec.log_static(path, archetype) {
            self.log_error(path, &e);
        }
    }

    fn log_error(&mut self, path: &str, e: &dyn std::error::Error) {
        self.log_errors += 1;
        if self.log_errors == 1 {
            tracing::warn!(path, "viz: cannot log to Rerun: {e}");
        }
    }

    /// One tab per stream: skeleton | plots and state lanes | label and segment log.
    fn send_blueprint(&mut self) {
        let tabs: Vec<ContainerLike> = self
            .stream_order
            .iter()
            .map(|(stream, id)| {
                let root = format!("/stream/{id}");
                let plots: [ContainerLike; 4] = [
                    TimeSeriesView::new("class probabilities")
                        .with_origin(format!("{root}/probs"))
                        .into(),
                    TimeSeriesView::new("boundary")
                        .with_origin(root.as_str())
                        .with_contents([format!("{root}/boundary")])
                        .into(),
                    StateTimelineView::new("predicted vs ground truth")
                        .with_origin(format!("{root}/timeline"))
                        .into(),
                    TimeSeriesView::new("segment class")
                        .with_origin(root.as_str())
                        .with_contents([
                            format!("{root}/segment_class"),
                            format!("{root}/gt/segment_class"),
                        ])
                        .into(),
                ];
                let text: [ContainerLike; 2] = [
                    TextDocumentView::new("current label")
                        .with_origin(root.as_str())
                        .with_contents([format!("{root}/label")])
                        .into(),
                    TextLogView::new("segments")
                        .with_origin(root.as_str())
                        .with_contents([format!("{root}/segments"), format!("{root}/gt/segments")])
                        .into(),
                ];
                Horizontal::new([
                    Spatial3DView::new("skeleton").with_origin(format!("{root}/skeleton")).into(),
                    Vertical::new(plots).into(),
                    Vertical::new(text).into(),
                ])
                .with_column_shares([0.4, 0.4, 0.2])
                .with_name(stream.as_str())
                .into()
            })
            .collect();
        let blueprint = Blueprint::new(Tabs::new(tabs))
            .with_auto_views(false)
            .with_time_panel(TimePanel::new().with_timeline(TIMELINE_FRAME));
        let activation = BlueprintActivation { make_active: true, make_default: true };
        if let Err(e) = blueprint.send(&self.rec, activation) {
            self.log_error("blueprint", &e);
        }
    }

    /// Flushes the sink, waiting at most [`FLUSH_TIMEOUT`].
    fn finish(self) -> Result<()> {
        if self.log_errors > 0 {
            tracing::warn!(errors = self.log_errors, "viz: some log calls failed");
        }
        self.rec
            .flush_with_timeout(FLUSH_TIMEOUT)
            .map_err(|e| Error::Viz { message: format!("cannot flush the Rerun output: {e}") })
    }
}

/// The static annotation at `/`: one class per body slot, with the 25 Kinect v2 joints as
/// keypoints and the 24 bones as connections, so the viewer draws the bones.
fn skeleton_annotation() -> AnnotationContext {
    let keypoints: Vec<rerun::AnnotationInfo> =
        JOINT_NAMES.iter().enumerate().map(|(id, name)| (id as u16, *name).into()).collect();
    let bones: Vec<KeypointPair> =
        BONES.iter().map(|&(a, b)| KeypointPair::from((a as u16, b as u16))).collect();
    AnnotationContext::new(SLOT_COLORS.iter().enumerate().map(|(slot, &color)| {
        let name = format!("body {slot}");
        ClassDescription {
            info: (slot as u16, name.as_str(), color).into(),
            keypoint_annotations: keypoints.clone(),
            keypoint_connections: bones.clone(),
        }
    }))
}

fn joint_color(slot: usize, tracking: Tracking) -> Rgba32 {
    let slot = slot.min(BODY_SLOTS - 1);
    match tracking {
        Tracking::Tracked => SLOT_COLORS[slot],
        Tracking::Inferred => SLOT_COLORS_INFERRED[slot],
        Tracking::NotTracked => COLOR_NOT_TRACKED,
    }
}

fn joint_radius_m(tracking: Tracking) -> f32 {
    match tracking {
        Tracking::Tracked => RADIUS_TRACKED_M,
        Tracking::Inferred => RADIUS_INFERRED_M,
        Tracking::NotTracked => RADIUS_NOT_TRACKED_M,
    }
}

fn class_color(class: usize) -> u32 {
    match class {
        0 => COLOR_BACKGROUND,
        c => PALETTE[(c - 1) % PALETTE.len()],
    }
}

/// `s` as one entity-path part: ASCII letters, digits, `_` and `-` kept, anything else `_`.
fn sanitize_path_part(s: &str) -> String {
    let part: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if part.is_empty() { "_".into() } else { part }
}

/// `base`, or `base_2`, `base_3`, ... whichever is not `taken`.
fn unique_part(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn remembers_frame_times_for_segments() {
        let mut state = StreamState {
            root: "/stream/x".into(),
            slots_shown: [false; BODY_SLOTS],
            timestamps: VecDeque::new(),
        };
        state.remember_time(3, 0.1);
        state.remember_time(5, 0.2);
        state.remember_time(4, 9.0); // out of order: ignored
        assert_eq!(state.time_of(5), Some(0.2));
        assert_eq!(state.time_of(3), Some(0.1));
        assert_eq!(state.time_of(4), None);
    }
}
