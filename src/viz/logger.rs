//! The viz thread's side: Rerun entity paths, archetypes and the blueprint, one [`Logger`] per
//! visualiser (see the entity tree in the module docs of [`crate::viz`]).

#![allow(clippy::wildcard_imports)]

use super::*;

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
    /// The framing box logged at `skeleton/bounds` (see [`BodyBounds`]).
    bounds: BodyBounds,
}

/// Margin around the joints seen so far of the box that frames the body, in metres.
pub(super) const FRAME_MARGIN_M: f32 = 0.3;
/// Smallest box that frames a body (x, y, z in metres): a standing adult fits whatever the
/// first frame shows (a crouch, a partial body).
pub(super) const FRAME_MIN_SIZE_M: [f32; 3] = [1.2, 2.0, 1.2];

/// The box around every measured joint a stream has shown, padded by [`FRAME_MARGIN_M`] and at
/// least [`FRAME_MIN_SIZE_M`]. Logged (static) as the 3D view's content beside the skeletons, it
/// makes the scene's bounds, which the viewer frames by default, the space the body moves in:
/// the whole body in view from the first frame, not a camera at the origin staring at a corner.
/// It is re-logged only when a joint leaves it, so a stream sends it a handful of times.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct BodyBounds {
    /// The box last logged, `(min, max)`.
    pub(super) logged: Option<([f32; 3], [f32; 3])>,
}

impl BodyBounds {
    /// Takes a frame's joints in; returns the new box to log when one of them lies outside the
    /// logged box. Untracked joints (often at the origin) and non-finite ones are ignored.
    pub(super) fn grow(&mut self, frame: &Frame) -> Option<([f32; 3], [f32; 3])> {
        let points = frame
            .bodies
            .iter()
            .flat_map(|b| b.joints.iter())
            .filter(|j| j.tracking != Tracking::NotTracked && j.pos.iter().all(|v| v.is_finite()))
            .map(|j| j.pos);
        let (mut lo, mut hi) = self.logged.unwrap_or(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]));
        let mut outside = false;
        for p in points {
            for c in 0..3 {
                if p[c] < lo[c] || p[c] > hi[c] {
                    outside = true;
                }
                lo[c] = lo[c].min(p[c] - FRAME_MARGIN_M);
                hi[c] = hi[c].max(p[c] + FRAME_MARGIN_M);
            }
        }
        if !outside {
            return None;
        }
        for c in 0..3 {
            let short = FRAME_MIN_SIZE_M[c] - (hi[c] - lo[c]);
            if short > 0.0 {
                lo[c] -= short / 2.0;
                hi[c] += short / 2.0;
            }
        }
        self.logged = Some((lo, hi));
        self.logged
    }
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
pub(super) struct Logger {
    rec: RecordingStream,
    classes: Vec<ClassEntry>,
    /// Raw stream id → its state.
    streams: HashMap<String, StreamState>,
    /// Sanitised stream ids in order of appearance (for the blueprint).
    stream_order: Vec<(String, String)>,
    used_roots: HashSet<String>,
    log_errors: u64,
    warned_class_count: bool,
    /// Show joint names beside the points (off: 25 names per body overlap into a block).
    pub(super) joint_names: bool,
}

impl Logger {
    pub(super) fn new(rec: RecordingStream, classes: &ClassMap) -> Self {
        let mut logger = Logger {
            rec,
            classes: Vec::new(),
            streams: HashMap::new(),
            stream_order: Vec::new(),
            used_roots: HashSet::new(),
            log_errors: 0,
            warned_class_count: false,
            joint_names: false,
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

    pub(super) fn handle(&mut self, msg: VizMsg) {
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
            StreamState {
                root,
                slots_shown: [false; BODY_SLOTS],
                timestamps: VecDeque::new(),
                bounds: BodyBounds::default(),
            },
        );
        self.stream_order.push((stream, id));
        self.send_blueprint();
    }

    fn log_frame(&mut self, stream: &str, frame: &Frame) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        state.remember_time(frame.index, frame.timestamp_secs);
        let grown = state.bounds.grow(frame);
        let root = state.root.clone();
        let mut slots_shown = state.slots_shown;
        if let Some((lo, hi)) = grown {
            let size: [f32; 3] = std::array::from_fn(|c| hi[c] - lo[c]);
            let frame_box = Boxes3D::from_mins_and_sizes([lo], [size])
                .with_colors([Rgba32::from_unmultiplied_rgba(160, 160, 160, 90)])
                .with_radii([0.004f32]);
            self.log_static(&format!("{root}/skeleton/bounds"), &frame_box);
        }
        self.set_time(frame.index, Some(frame.timestamp_secs));
        for (slot, shown) in slots_shown.iter_mut().enumerate() {
            let path = format!("{root}/skeleton/body{slot}");
            match frame.bodies.get(slot) {
                Some(body) => {
                    let points = Points3D::new(body.joints.iter().map(|j| j.pos))
                        .with_colors(body.joints.iter().map(|j| joint_color(slot, j.tracking)))
                        .with_radii(body.joints.iter().map(|j| joint_radius_m(j.tracking)))
                        .with_class_ids([slot as u16])
                        .with_keypoint_ids(0..NUM_JOINTS as u16)
                        .with_show_labels(self.joint_names);
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
    pub(super) fn finish(self) -> Result<()> {
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
pub(super) fn sanitize_path_part(s: &str) -> String {
    let part: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if part.is_empty() { "_".into() } else { part }
}

/// `base`, or `base_2`, `base_3`, ... whichever is not `taken`.
pub(super) fn unique_part(base: &str, taken: impl Fn(&str) -> bool) -> String {
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
    fn remembers_frame_times_for_segments() {
        let mut state = StreamState {
            root: "/stream/x".into(),
            slots_shown: [false; BODY_SLOTS],
            timestamps: VecDeque::new(),
            bounds: BodyBounds::default(),
        };
        state.remember_time(3, 0.1);
        state.remember_time(5, 0.2);
        state.remember_time(4, 9.0); // out of order: ignored
        assert_eq!(state.time_of(5), Some(0.2));
        assert_eq!(state.time_of(3), Some(0.1));
        assert_eq!(state.time_of(4), None);
    }

    fn body_at(x: f32, height: f32) -> Frame {
        let mut joints = [crate::Joint::default(); NUM_JOINTS];
        for (j, joint) in joints.iter_mut().enumerate() {
            let t = j as f32 / (NUM_JOINTS - 1) as f32;
            *joint = crate::Joint { pos: [x, height * t, 3.0], tracking: Tracking::Tracked };
        }
        // An untracked joint at the origin must not stretch the box to the camera.
        joints[12] = crate::Joint { pos: [0.0; 3], tracking: Tracking::NotTracked };
        Frame { index: 0, timestamp_secs: 0.0, bodies: vec![crate::Body { id: 1, joints }] }
    }

    #[test]
    fn the_framing_box_holds_every_joint_seen_and_grows_only_when_one_leaves_it() {
        let mut bounds = BodyBounds::default();
        // A 1.7 m body at x = 0.5, z = 3: y spans the body plus the margin, x and z the minimum.
        let (lo, hi) = bounds.grow(&body_at(0.5, 1.7)).expect("the first body sets the box");
        let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(lo, [-0.1, -0.3, 2.4]), "{lo:?}");
        assert!(close(hi, [1.1, 2.0, 3.6]), "{hi:?}");
        // Moving inside the box logs nothing; stepping out grows it to hold the new joints.
        assert_eq!(bounds.grow(&body_at(0.8, 1.7)), None);
        let (lo2, hi2) = bounds.grow(&body_at(2.0, 1.7)).expect("x = 2 is outside");
        assert!(close(lo2, lo) && (hi2[0] - 2.3).abs() < 1e-5, "{lo2:?} {hi2:?}");
        // No measured joint: no box.
        let empty = Frame { index: 1, timestamp_secs: 0.0, bodies: Vec::new() };
        assert_eq!(BodyBounds::default().grow(&empty), None);
    }
}
