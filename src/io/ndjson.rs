//! The `skeleton-ndjson/1` codec: one JSON object per line, an optional
//! header line naming layout, units and axes, then frame objects shaped like the Azure Kinect
//! `offline_processor` frames.
//!
//! The [`Decoder`] is stateful per stream: it applies the header (units mm → m, OpenCV depth-camera
//! axes → Kinect camera axes, any layout → the canonical 25 joints), numbers frames that carry no
//! `frame_id`, and rejects timestamps that do not increase. Every rejection names its place
//! (`origin line N`) and a [`SkipReason`] so live sources can count it and keep going. The encoder
//! writes canonical-layout frames in metres; [`read_recording`] / [`write_recording`] do whole files.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
use crate::frame::{Body, Frame, Joint, NUM_JOINTS, Tracking};
use crate::io::Recording;
use crate::skeleton::{Layout, kinect_v2};

/// The `format` string of the header.
pub const FORMAT: &str = "skeleton-ndjson/1";
/// Longest line (or UDP datagram) accepted, in bytes; longer ones are skipped as oversize.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Coordinates farther than this from the sensor (metres, after unit conversion) are rejected:
/// no body tracker sees that far, so such a value is corrupt data.
pub const MAX_ABS_COORD_M: f32 = 20.0;
/// Bodies accepted in one frame; a frame with more is skipped (no tracker reports that many,
/// and each body costs work downstream). See [`crate::source::limits`].
pub const MAX_BODIES_PER_FRAME: usize = 16;
/// Frame rate assumed for frames without `timestamp_usec` when the header gives none.
pub const DEFAULT_FPS: f64 = 30.0;
/// Latest `timestamp_usec` accepted, in seconds after the stream's first frame (about 31.7
/// years): a later one is corrupt data, and at such times a frame period is below the
/// timestamp's float resolution, so resampling and pacing could not follow it.
pub const MAX_STREAM_SECS: f64 = 1e9;

/// Length unit of `joint_positions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// Metres (Kinect v2).
    #[default]
    M,
    /// Millimetres (Azure Kinect).
    Mm,
}

/// Axis convention of `joint_positions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axes {
    /// Kinect v2 camera space: +x to the sensor's left, +y up, +z away from the sensor.
    #[default]
    KinectCamera,
    /// Azure Kinect depth camera (OpenCV): +x right, +y down, +z forward.
    DepthCameraOpencv,
}

/// The header line: how to read the frames that follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Format name and version, [`FORMAT`].
    pub format: String,
    /// Joint layout of `joint_positions`.
    pub layout: Layout,
    /// Length unit.
    pub units: Units,
    /// Axis convention.
    pub axes: Axes,
    /// Nominal frame rate, when the sender knows it.
    pub fps: Option<f64>,
    /// Joint names in `joint_positions` order, informational.
    pub joint_names: Option<Vec<String>>,
}

impl Default for Header {
    /// What a stream without a header line is assumed to be: Kinect v2, metres, Kinect axes.
    fn default() -> Self {
        Header {
            format: FORMAT.to_owned(),
            layout: Layout::KinectV2_25,
            units: Units::M,
            axes: Axes::KinectCamera,
            fps: None,
            joint_names: None,
        }
    }
}

impl Header {
    /// The header [`encode_frame`] output matches: canonical layout, metres, Kinect axes.
    pub fn canonical(fps: Option<f64>) -> Self {
        Header {
            fps,
            joint_names: Some(kinect_v2::JOINT_NAMES.iter().map(|n| (*n).to_owned()).collect()),
            ..Header::default()
        }
    }
}

/// Why a line was rejected; live sources count skips per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Not JSON, not UTF-8, a missing or mistyped field, an unknown `type`, a truncated line.
    Malformed,
    /// Wrong joint count, NaN/Inf or absurd coordinates, a bad tracking code.
    InvalidJoints,
    /// Longer than the line/datagram limit.
    Oversize,
    /// A timestamp or frame id that does not increase (out of order or duplicate).
    OutOfOrder,
}

/// A rejected line: the reason (for counting) and the located error (for logging).
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub reason: SkipReason,
    /// `origin line N: ...`.
    pub error: Error,
}

/// Stateful decoder of one `skeleton-ndjson/1` stream (a file, a TCP connection, a UDP peer).
#[derive(Debug)]
pub struct Decoder {
    origin: String,
    /// `path:N` locations (files) instead of `origin line N` (streams).
    file_style: bool,
    line_no: u64,
    max_line_bytes: usize,
    header: Header,
    frames_decoded: u64,
    last_index: Option<u64>,
    last_timestamp_secs: Option<f64>,
    /// `timestamp_usec` of the first frame: stream time starts at 0.
    first_timestamp_usec: Option<f64>,
}

impl Decoder {
    /// A decoder for a stream named `origin` (e.g. `tcp:127.0.0.1:53122`); errors read
    /// `origin line N: ...`. Until a header arrives the stream is taken as [`Header::default`].
    pub fn new(origin: String) -> Self {
        Decoder {
            origin,
            file_style: false,
            line_no: 0,
            max_line_bytes: MAX_LINE_BYTES,
            header: Header::default(),
            frames_decoded: 0,
            last_index: None,
            last_timestamp_secs: None,
            first_timestamp_usec: None,
        }
    }

    /// A decoder for a file; errors read `path:N: ...`.
    pub fn for_file(path: &Path) -> Self {
        Decoder { file_style: true, ..Decoder::new(path.display().to_string()) }
    }

    /// Sets the longest line accepted (default [`MAX_LINE_BYTES`]).
    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// The header in force (the default until a header line arrives).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Lines seen so far, skipped ones included.
    pub fn lines(&self) -> u64 {
        self.line_no
    }

    /// Index of the last frame decoded.
    pub fn last_index(&self) -> Option<u64> {
        self.last_index
    }

    /// A decoder for a new life of the same stream (a sender that started again): same origin,
    /// line limit and header, no frames seen; line numbers go on.
    pub fn restarted(&self) -> Self {
        Decoder {
            origin: self.origin.clone(),
            file_style: self.file_style,
            line_no: self.line_no,
            max_line_bytes: self.max_line_bytes,
            header: self.header.clone(),
            ..Decoder::new(String::new())
        }
    }

    /// Decodes one line. `Ok(None)`: a header (or a blank line) was consumed.
    pub fn decode_line(&mut self, line: &str) -> Result<Option<Frame>> {
        self.decode_checked(line.as_bytes()).map_err(|r| r.error)
    }

    /// Decodes one line of raw bytes, telling why it was rejected. Counts the line.
    // `Rejected` carries the located error (about 130 bytes); the copy is small next to decoding
    // a JSON line, and boxing would allocate on every rejected line.
    #[allow(clippy::result_large_err)]
    pub fn decode_checked(&mut self, line: &[u8]) -> Result<Option<Frame>, Rejected> {
        self.line_no += 1;
        if line.len() > self.max_line_bytes {
            return Err(self.oversize_error(line.len()));
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(self.reject(SkipReason::Malformed, "UTF-8 text", "invalid bytes"));
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let object = match serde_json::from_str::<WireObject>(text) {
            Ok(object) => object,
            Err(e) => return Err(self.classify_json_error(text, &e)),
        };
        match object.kind.as_deref() {
            Some("header") => self.apply_header(object).map(|()| None),
            Some("frame") | None => self.decode_frame(object).map(Some),
            Some(other) => Err(self.reject(
                SkipReason::Malformed,
                "\"type\" \"header\" or \"frame\"",
                format!("{other:?}"),
            )),
        }
    }

    /// Counts a line that was too long to be buffered (the reader discarded it) and returns its
    /// located rejection.
    pub fn reject_oversize(&mut self, len_bytes: usize) -> Rejected {
        self.line_no += 1;
        self.oversize_error(len_bytes)
    }

    /// Counts a line cut short by a disconnect and returns its located rejection.
    pub fn reject_truncated(&mut self, len_bytes: usize) -> Rejected {
        self.line_no += 1;
        self.reject(
            SkipReason::Malformed,
            "a line ending in a newline",
            format!("the connection closed after {len_bytes} bytes without one"),
        )
    }

    fn oversize_error(&self, len_bytes: usize) -> Rejected {
        self.reject(
            SkipReason::Oversize,
            format!("a line of at most {} bytes", self.max_line_bytes),
            format!("{len_bytes} bytes"),
        )
    }

    fn location(&self) -> Location {
        if self.file_style {
            Location::file_line(&self.origin, self.line_no)
        } else {
            Location::stream(&self.origin, Some(self.line_no))
        }
    }

    fn reject(
        &self,
        reason: SkipReason,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Rejected {
        Rejected { reason, error: Error::parse(self.location(), expected, found) }
    }

    /// [`Decoder::reject`] at `item` of the line (`frame 17`).
    fn reject_in(
        &self,
        reason: SkipReason,
        item: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Rejected {
        Rejected { reason, error: Error::parse(self.location().with_item(item), expected, found) }
    }

    /// JSON has no NaN/Infinity, but Python's `json.dumps` writes them: such a line is a
    /// non-finite joint, not a syntax error, so it is reported (and counted) as one.
    fn classify_json_error(&self, text: &str, e: &serde_json::Error) -> Rejected {
        let non_finite = ["NaN", "Infinity"].iter().any(|t| text.contains(t));
        if non_finite && e.is_syntax() {
            return self.reject(
                SkipReason::InvalidJoints,
                "finite joint coordinates",
                "NaN or Infinity",
            );
        }
        if e.is_data() {
            return self.reject(
                SkipReason::Malformed,
                "fields of the documented types",
                e.to_string(),
            );
        }
        self.reject(SkipReason::Malformed, "one JSON object", format!("invalid JSON: {e}"))
    }

    // `Rejected` carries the located error (about 130 bytes); the copy is small next to decoding
    // a JSON line, and boxing would allocate on every rejected line.
    #[allow(clippy::result_large_err)]
    fn apply_header(&mut self, object: WireObject) -> Result<(), Rejected> {
        let format = object.format.unwrap_or_else(|| FORMAT.to_owned());
        if format != FORMAT {
            return Err(self.reject(
                SkipReason::Malformed,
                format!("format {FORMAT:?}"),
                format!("{format:?}"),
            ));
        }
        let layout = match object.layout.as_deref() {
            None => Layout::KinectV2_25,
            Some(name) => Layout::from_name(name).ok().ok_or_else(|| {
                self.reject(
                    SkipReason::Malformed,
                    format!(
                        "a layout ({})",
                        Layout::ALL.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
                    ),
                    format!("{name:?}"),
                )
            })?,
        };
        let units = match object.units.as_deref() {
            None | Some("m") => Units::M,
            Some("mm") => Units::Mm,
            Some(other) => {
                return Err(self.reject(
                    SkipReason::Malformed,
                    "units \"m\" or \"mm\"",
                    format!("{other:?}"),
                ));
            }
        };
        let axes = match object.axes.as_deref() {
            None | Some("kinect_camera") => Axes::KinectCamera,
            Some("depth_camera_opencv") => Axes::DepthCameraOpencv,
            Some(other) => {
                return Err(self.reject(
                    SkipReason::Malformed,
                    "axes \"kinect_camera\" or \"depth_camera_opencv\"",
                    format!("{other:?} (2D image coordinates are not supported)"),
                ));
            }
        };
        if let Some(fps) = object.fps
            && !(fps.is_finite() && fps > 0.0)
        {
            return Err(self.reject(SkipReason::Malformed, "a positive fps", format!("{fps}")));
        }
        let header = Header {
            format,
            layout,
            units,
            axes,
            fps: object.fps,
            joint_names: object.joint_names,
        };
        if self.frames_decoded > 0 {
            // UDP senders may repeat the header; a change mid-stream would silently reinterpret
            // the frames already seen, so it is refused.
            if header == self.header {
                return Ok(());
            }
            return Err(self.reject(
                SkipReason::Malformed,
                format!("no new header after {} frames", self.frames_decoded),
                "a different one",
            ));
        }
        tracing::debug!(origin = %self.origin, ?header.layout, ?header.units, ?header.axes, "ndjson header");
        self.header = header;
        Ok(())
    }

    // `Rejected` carries the located error (about 130 bytes); the copy is small next to decoding
    // a JSON line, and boxing would allocate on every rejected line.
    #[allow(clippy::result_large_err)]
    fn decode_frame(&mut self, object: WireObject) -> Result<Frame, Rejected> {
        let fps = self.header.fps.unwrap_or(DEFAULT_FPS);
        let index =
            object.frame_id.unwrap_or_else(|| self.last_index.map_or(0, |i| i.saturating_add(1)));
        let frame_label = format!("frame {index}");
        let Some(wire_bodies) = object.bodies else {
            return Err(self.reject_in(
                SkipReason::Malformed,
                &frame_label,
                "a \"bodies\" array",
                "none",
            ));
        };
        let timestamp_secs = match object.timestamp_usec {
            Some(usec) if !usec.is_finite() => {
                return Err(self.reject_in(
                    SkipReason::Malformed,
                    &frame_label,
                    "a finite timestamp_usec",
                    format!("{usec}"),
                ));
            }
            Some(usec) => {
                let secs = (usec - self.first_timestamp_usec.unwrap_or(usec)) * 1e-6;
                if secs > MAX_STREAM_SECS {
                    return Err(self.reject_in(
                        SkipReason::Malformed,
                        &frame_label,
                        format!("a timestamp_usec within {MAX_STREAM_SECS:e} s of the first"),
                        format!("{secs:e} s after it"),
                    ));
                }
                secs
            }
            None => index as f64 / fps,
        };
        if let Some(last) = self.last_index
            && index <= last
        {
            return Err(self.reject_in(
                SkipReason::OutOfOrder,
                &frame_label,
                format!("a frame id after {last}"),
                format!("{index}"),
            ));
        }
        if let Some(last) = self.last_timestamp_secs
            && timestamp_secs <= last
        {
            return Err(self.reject_in(
                SkipReason::OutOfOrder,
                &frame_label,
                format!("a timestamp after {:.6} s", last),
                format!("{timestamp_secs:.6} s"),
            ));
        }
        if wire_bodies.len() > MAX_BODIES_PER_FRAME {
            return Err(self.reject_in(
                SkipReason::Malformed,
                &frame_label,
                format!("at most {MAX_BODIES_PER_FRAME} bodies"),
                format!("{}", wire_bodies.len()),
            ));
        }
        let mut bodies = Vec::with_capacity(wire_bodies.len());
        for (b, wire) in wire_bodies.into_iter().enumerate() {
            let id = wire.body_id.unwrap_or(b as u64);
            let joints = self.body_joints(&wire).map_err(|p| {
                let item = match p.joint {
                    Some(j) => format!("{frame_label} body {id}: joint {j}"),
                    None => format!("{frame_label} body {id}"),
                };
                self.reject_in(p.reason, item, p.expected, p.found)
            })?;
            bodies.push(Body { id, joints });
        }
        if self.first_timestamp_usec.is_none() {
            self.first_timestamp_usec = object.timestamp_usec;
        }
        self.last_index = Some(index);
        self.last_timestamp_secs = Some(timestamp_secs);
        self.frames_decoded += 1;
        Ok(Frame { index, timestamp_secs, bodies })
    }

    /// Converts one wire body to canonical joints: count check, units, axes, validation, layout.
    fn body_joints(&self, wire: &WireBody) -> Result<[Joint; NUM_JOINTS], BodyProblem> {
        let layout = self.header.layout;
        let expected = layout.joint_count();
        let found = wire.joint_positions.len();
        if found != expected {
            return Err(BodyProblem::new(
                None,
                format!("{expected} joints ({})", layout.name()),
                found.to_string(),
            ));
        }
        let scale = match self.header.units {
            Units::M => 1.0,
            Units::Mm => 1e-3,
        };
        let flip = match self.header.axes {
            Axes::KinectCamera => 1.0,
            Axes::DepthCameraOpencv => -1.0,
        };
        let mut positions = Vec::with_capacity(found);
        for (j, coords) in wire.joint_positions.iter().enumerate() {
            let [Some(x), Some(y), Some(z)] = coords.as_slice() else {
                return Err(BodyProblem::new(
                    Some(j),
                    "3 numbers [x, y, z]".into(),
                    format!("{} values", coords.len()),
                ));
            };
            // Opencv → Kinect: x right → left and y down → up; z is forward in both.
            let p = [(x * scale * flip) as f32, (y * scale * flip) as f32, (z * scale) as f32];
            if p.iter().any(|c| !c.is_finite() || c.abs() > MAX_ABS_COORD_M) {
                return Err(BodyProblem::new(
                    Some(j),
                    format!("finite coordinates within {MAX_ABS_COORD_M} m"),
                    format!("[{}, {}, {}] m", p[0], p[1], p[2]),
                ));
            }
            positions.push(p);
        }
        let tracking = match (&wire.joint_tracking, &wire.joint_confidence) {
            (Some(codes), _) => {
                Some(tracking_codes(codes, expected, "joint_tracking", Tracking::from_code)?)
            }
            (None, Some(levels)) => {
                Some(tracking_codes(levels, expected, "joint_confidence", confidence_to_tracking)?)
            }
            (None, None) => None,
        };
        layout.to_canonical(&positions, tracking.as_deref()).map_err(|e| {
            BodyProblem::new(None, format!("joints {} can map", layout.name()), e.to_string())
        })
    }
}

/// Why a wire body was rejected (always [`SkipReason::InvalidJoints`]).
struct BodyProblem {
    reason: SkipReason,
    joint: Option<usize>,
    expected: String,
    found: String,
}

impl BodyProblem {
    fn new(joint: Option<usize>, expected: String, found: String) -> Self {
        BodyProblem { reason: SkipReason::InvalidJoints, joint, expected, found }
    }
}

fn tracking_codes(
    codes: &[i64],
    expected: usize,
    field: &str,
    map: impl Fn(i64) -> Option<Tracking>,
) -> Result<Vec<Tracking>, BodyProblem> {
    if codes.len() != expected {
        return Err(BodyProblem::new(
            None,
            format!("{expected} {field} values"),
            codes.len().to_string(),
        ));
    }
    codes
        .iter()
        .enumerate()
        .map(|(j, &c)| {
            map(c).ok_or_else(|| {
                BodyProblem::new(Some(j), format!("a {field} code in range"), c.to_string())
            })
        })
        .collect()
}

/// Azure `k4abt_joint_confidence_level_t`: 0 none, 1 low (predicted/occluded), 2 medium
/// (tracked), 3 high.
fn confidence_to_tracking(level: i64) -> Option<Tracking> {
    match level {
        0 => Some(Tracking::NotTracked),
        1 => Some(Tracking::Inferred),
        2 | 3 => Some(Tracking::Tracked),
        _ => None,
    }
}

/// Every field of either line kind; unknown fields are ignored.
#[derive(Deserialize)]
struct WireObject {
    #[serde(rename = "type")]
    kind: Option<String>,
    // header
    format: Option<String>,
    layout: Option<String>,
    units: Option<String>,
    axes: Option<String>,
    fps: Option<f64>,
    joint_names: Option<Vec<String>>,
    // frame
    frame_id: Option<u64>,
    timestamp_usec: Option<f64>,
    bodies: Option<Vec<WireBody>>,
}

#[derive(Deserialize)]
struct WireBody {
    body_id: Option<u64>,
    /// `Option` per coordinate so a `null` (what encoders write for NaN) is an invalid joint,
    /// `Vec` so a wrong arity gets its own message.
    joint_positions: Vec<Vec<Option<f64>>>,
    joint_tracking: Option<Vec<i64>>,
    joint_confidence: Option<Vec<i64>>,
}

/// The header line (no trailing newline).
pub fn encode_header(header: &Header) -> String {
    let mut object = serde_json::Map::new();
    object.insert("type".into(), "header".into());
    object.insert("format".into(), header.format.clone().into());
    object.insert("layout".into(), header.layout.name().into());
    let units = match header.units {
        Units::M => "m",
        Units::Mm => "mm",
    };
    object.insert("units".into(), units.into());
    let axes = match header.axes {
        Axes::KinectCamera => "kinect_camera",
        Axes::DepthCameraOpencv => "depth_camera_opencv",
    };
    object.insert("axes".into(), axes.into());
    if let Some(fps) = header.fps.and_then(serde_json::Number::from_f64) {
        object.insert("fps".into(), fps.into());
    }
    if let Some(names) = &header.joint_names {
        object.insert("joint_names".into(), names.clone().into());
    }
    serde_json::Value::Object(object).to_string()
}

/// One frame line (no trailing newline): canonical layout, metres, Kinect axes, 5 decimals
/// (10 µm). Non-finite coordinates are written as `null`, which decoders reject.
pub fn encode_frame(frame: &Frame) -> String {
    let mut out = String::with_capacity(64 + frame.bodies.len() * 800);
    let usec = (frame.timestamp_secs * 1e6).round();
    let _ = write!(out, r#"{{"type":"frame","frame_id":{},"timestamp_usec":"#, frame.index);
    if usec.is_finite() {
        let _ = write!(out, "{}", usec as i64);
    } else {
        out.push_str("null");
    }
    let _ = write!(out, r#","num_bodies":{},"bodies":["#, frame.bodies.len());
    for (b, body) in frame.bodies.iter().enumerate() {
        if b > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"body_id":{},"joint_positions":["#, body.id);
        for (j, joint) in body.joints.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('[');
            for (c, &v) in joint.pos.iter().enumerate() {
                if c > 0 {
                    out.push(',');
                }
                push_coord(&mut out, v);
            }
            out.push(']');
        }
        out.push_str(r#"],"joint_tracking":["#);
        for (j, joint) in body.joints.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", joint.tracking as u8);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// `v` with 5 decimals, trailing zeros trimmed, `-0` as `0`, non-finite as `null`.
fn push_coord(out: &mut String, v: f32) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let start = out.len();
    let _ = write!(out, "{v:.5}");
    let trimmed = out[start..].trim_end_matches('0').trim_end_matches('.').len();
    out.truncate(start + trimmed);
    if &out[start..] == "-0" {
        out.truncate(start);
        out.push('0');
    }
}

/// Reads a `.ndjson` recording: strict, the first bad line is a located `path:N` error.
/// `fps` comes from the header, else from the median frame interval, else [`DEFAULT_FPS`].
pub fn read_recording(path: &Path) -> Result<Recording> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_recording_from(BufReader::new(file), path)
}

/// [`read_recording`] from any reader (bytes in memory, a file) of a recording at `path`
/// (named in errors).
pub(crate) fn read_recording_from(mut reader: impl BufRead, path: &Path) -> Result<Recording> {
    let mut decoder = Decoder::for_file(path);
    let mut frames = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(frame) = decoder.decode_checked(&line).map_err(|r| r.error)? {
            frames.push(frame);
        }
    }
    let fps = decoder.header().fps.or_else(|| median_fps(&frames)).unwrap_or(DEFAULT_FPS);
    let name = path
        .file_stem()
        .map_or_else(|| "recording".to_owned(), |s| s.to_string_lossy().into_owned());
    tracing::debug!(path = %path.display(), frames = frames.len(), fps, "read ndjson recording");
    Ok(Recording { name, source_layout: decoder.header().layout, fps, frames, intervals: None })
}

fn median_fps(frames: &[Frame]) -> Option<f64> {
    let mut steps: Vec<f64> = frames
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let frames_apart = b.index.checked_sub(a.index).filter(|&d| d > 0)? as f64;
            Some((b.timestamp_secs - a.timestamp_secs) / frames_apart)
        })
        .filter(|s| s.is_finite() && *s > 0.0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort_by(f64::total_cmp);
    Some(1.0 / steps[steps.len() / 2])
}

/// One frame line with its bodies in `layout` (Kinect v2 25, or MediaPipe 33 through
/// [`crate::skeleton::mediapipe33::from_canonical`]), metres, Kinect axes, without tracking
/// states; `None` for a layout without an inverse mapping.
pub fn encode_frame_in(frame: &Frame, layout: Layout) -> Option<String> {
    let bodies: Vec<serde_json::Value> = match layout {
        Layout::KinectV2_25 => return Some(encode_frame(frame)),
        Layout::Mediapipe33 => frame
            .bodies
            .iter()
            .map(|b| {
                let points = crate::skeleton::mediapipe33::from_canonical(&b.joints);
                let rounded: Vec<Vec<f64>> = points
                    .iter()
                    .map(|p| p.iter().map(|&v| (f64::from(v) * 1e5).round() / 1e5).collect())
                    .collect();
                serde_json::json!({"body_id": b.id, "joint_positions": rounded})
            })
            .collect(),
        _ => return None,
    };
    let usec = (frame.timestamp_secs * 1e6).round() as i64;
    Some(
        serde_json::json!({"type": "frame", "frame_id": frame.index, "timestamp_usec": usec, "bodies": bodies})
            .to_string(),
    )
}

/// Writes `recording` as `skeleton-ndjson/1`: a canonical header, then one line per frame.
pub fn write_recording(path: &Path, recording: &Recording) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::new(file);
    let header = Header::canonical(Some(recording.fps));
    let mut write_all = || -> std::io::Result<()> {
        writeln!(out, "{}", encode_header(&header))?;
        for frame in &recording.frames {
            writeln!(out, "{}", encode_frame(frame))?;
        }
        out.flush()
    };
    write_all().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame 0 of `shared/data/pku-mmd/A10N08-L.txt`, body 1.
    const PKU_FRAME0: &str = r#"{"type":"frame","frame_id":0,"timestamp_usec":0,"bodies":[{"body_id":1,"joint_positions":[[-0.3046,0.2126,2.7289],[-0.2907,0.5545,2.6891],[-0.2764,0.8865,2.6323],[-0.2833,1.0237,2.6543],[-0.3532,0.7612,2.7854],[-0.3998,0.4656,2.8316],[-0.4374,0.1963,2.6892],[-0.4732,-0.0735,2.5863],[-0.2676,0.701,2.5078],[-0.3704,0.4444,2.4997],[-0.4885,0.2589,2.5238],[-0.4922,0.1909,2.5477],[-0.3217,0.2082,2.7144],[-0.2834,-0.2041,2.8453],[-0.2602,-0.56,2.8818],[-0.3592,-0.6017,2.819],[-0.2787,0.2105,2.6633],[-0.363,-0.198,2.6436],[-0.3278,-0.5976,2.6664],[-0.3896,-0.6611,2.6433],[-0.28,0.805,2.6496],[-0.4755,-0.1202,2.5714],[-0.5209,-0.0697,2.5818],[-0.5067,0.1165,2.5797],[-0.4424,0.1728,2.5256]],"joint_tracking":[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]}]}"#;

    fn positions_line(
        frame_id: u64,
        ts_usec: Option<u64>,
        positions: &[[f64; 3]],
        extra: &str,
    ) -> String {
        let coords: Vec<String> =
            positions.iter().map(|p| format!("[{},{},{}]", p[0], p[1], p[2])).collect();
        let ts = ts_usec.map(|t| format!(r#","timestamp_usec":{t}"#)).unwrap_or_default();
        format!(
            r#"{{"type":"frame","frame_id":{frame_id}{ts},"bodies":[{{"body_id":7,"joint_positions":[{}]{extra}}}]}}"#,
            coords.join(",")
        )
    }

    fn ramp(n: usize) -> Vec<[f64; 3]> {
        (0..n).map(|j| [j as f64 * 10.0, -(j as f64) * 20.0, 2000.0 + j as f64]).collect()
    }

    #[test]
    fn decodes_the_reference_frame() {
        let mut d = Decoder::new("test".into());
        let frame = d.decode_line(PKU_FRAME0).unwrap().unwrap();
        assert_eq!(frame.index, 0);
        assert_eq!(frame.timestamp_secs, 0.0);
        assert_eq!(frame.bodies.len(), 1);
        let body = &frame.bodies[0];
        assert_eq!(body.id, 1);
        assert_eq!(body.joints[0].pos, [-0.3046, 0.2126, 2.7289]);
        assert_eq!(body.joints[3].pos, [-0.2833, 1.0237, 2.6543]); // Head
        assert_eq!(body.joints[24].pos, [-0.4424, 0.1728, 2.5256]);
        assert!(body.joints.iter().all(|j| j.tracking == Tracking::Tracked));
    }

    #[test]
    fn header_applies_millimetres_and_opencv_axes() {
        let mut d = Decoder::new("azure".into());
        let header = r#"{"type":"header","format":"skeleton-ndjson/1","layout":"kinect_v2_25","units":"mm","axes":"depth_camera_opencv","fps":15}"#;
        assert!(d.decode_line(header).unwrap().is_none());
        assert_eq!(d.header().units, Units::Mm);
        assert_eq!(d.header().fps, Some(15.0));
        let frame = d.decode_line(&positions_line(3, None, &ramp(25), "")).unwrap().unwrap();
        // x and y flip sign (opencv right/down → Kinect left/up), mm → m.
        let j5 = frame.bodies[0].joints[5].pos;
        assert_eq!(j5, [-0.05, 0.1, 2.005]);
        // No timestamp: frame id / header fps.
        assert_eq!(frame.index, 3);
        assert!((frame.timestamp_secs - 0.2).abs() < 1e-12);
    }

    #[test]
    fn confidence_levels_map_to_tracking() {
        let mut d = Decoder::new("t".into());
        let levels: Vec<String> = (0..25).map(|j| (j % 4).to_string()).collect();
        let extra = format!(r#","joint_confidence":[{}]"#, levels.join(","));
        let positions: Vec<[f64; 3]> = (0..25).map(|j| [0.0, 0.0, 1.0 + j as f64 * 0.01]).collect();
        let frame =
            d.decode_line(&positions_line(0, Some(0), &positions, &extra)).unwrap().unwrap();
        let t: Vec<Tracking> = frame.bodies[0].joints.iter().take(4).map(|j| j.tracking).collect();
        assert_eq!(
            t,
            [Tracking::NotTracked, Tracking::Inferred, Tracking::Tracked, Tracking::Tracked]
        );
    }

    #[test]
    fn errors_are_located_and_classified() {
        let mut d = Decoder::new("tcp:127.0.0.1:9".into());
        let ok: Vec<[f64; 3]> = (0..25).map(|j| [0.1, 0.2, 1.0 + j as f64 * 0.01]).collect();
        assert!(
            d.decode_checked(positions_line(0, Some(0), &ok, "").as_bytes()).unwrap().is_some()
        );

        let r = d.decode_checked(b"{not json").unwrap_err();
        assert_eq!(r.reason, SkipReason::Malformed);
        assert!(
            r.error.to_string().starts_with("tcp:127.0.0.1:9 line 2: expected one JSON object"),
            "{}",
            r.error
        );

        let r = d
            .decode_checked(positions_line(1, Some(33_333), &ok[..24], "").as_bytes())
            .unwrap_err();
        assert_eq!(r.reason, SkipReason::InvalidJoints);
        assert_eq!(
            r.error.to_string(),
            "tcp:127.0.0.1:9 line 3: frame 1 body 7: expected 25 joints (kinect_v2_25), found 24"
        );

        let nan_line = positions_line(1, Some(33_333), &ok, "").replacen("0.1", "NaN", 1);
        let r = d.decode_checked(nan_line.as_bytes()).unwrap_err();
        assert_eq!(r.reason, SkipReason::InvalidJoints);
        assert!(r.error.to_string().contains("line 4"));

        let mut far = ok.clone();
        far[10] = [0.0, 25.0, 1.0];
        let r = d.decode_checked(positions_line(1, Some(33_333), &far, "").as_bytes()).unwrap_err();
        assert_eq!(r.reason, SkipReason::InvalidJoints);
        assert!(r.error.to_string().contains("frame 1 body 7: joint 10"), "{}", r.error);

        // Duplicate timestamp, then an earlier frame id.
        let r = d.decode_checked(positions_line(1, Some(0), &ok, "").as_bytes()).unwrap_err();
        assert_eq!(r.reason, SkipReason::OutOfOrder);
        let r = d.decode_checked(positions_line(0, Some(50_000), &ok, "").as_bytes()).unwrap_err();
        assert_eq!(r.reason, SkipReason::OutOfOrder);
        assert!(
            r.error.to_string().contains("line 7: frame 0: expected a frame id after 0"),
            "{}",
            r.error
        );

        let long = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(d.decode_checked(&long).unwrap_err().reason, SkipReason::Oversize);

        // A gap passes through with its indices and time.
        let frame = d
            .decode_checked(positions_line(9, Some(300_000), &ok, "").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!((frame.index, frame.timestamp_secs), (9, 0.3));
        assert_eq!(d.lines(), 9);
    }

    #[test]
    fn bad_headers_are_rejected() {
        let mut d = Decoder::new("h".into());
        for bad in [
            r#"{"type":"header","format":"skeleton-ndjson/2"}"#,
            r#"{"type":"header","layout":"kinect_v9"}"#,
            r#"{"type":"header","units":"cm"}"#,
            r#"{"type":"header","axes":"image"}"#,
            r#"{"type":"header","fps":-3}"#,
            r#"{"type":"gossip"}"#,
            r#"{"type":"frame","frame_id":0}"#,
        ] {
            let r = d.decode_checked(bad.as_bytes()).unwrap_err();
            assert_eq!(r.reason, SkipReason::Malformed, "{bad}");
        }
        // A layout other than the canonical one needs its count.
        d.decode_line(r#"{"type":"header","layout":"azure_kinect_32","units":"mm"}"#).unwrap();
        let err = d.decode_line(&positions_line(0, None, &ramp(25), "")).unwrap_err();
        assert!(
            err.to_string().contains("expected 32 joints (azure_kinect_32), found 25"),
            "{err}"
        );
    }

    #[test]
    fn header_after_frames_must_not_change() {
        let mut d = Decoder::new("u".into());
        let header = encode_header(&Header::default());
        d.decode_line(&header).unwrap();
        d.decode_line(PKU_FRAME0).unwrap();
        assert!(d.decode_line(&header).unwrap().is_none());
        let changed = encode_header(&Header { units: Units::Mm, ..Header::default() });
        assert!(d.decode_line(&changed).is_err());
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut joints = [Joint::tracked([0.0; 3]); NUM_JOINTS];
        for (j, joint) in joints.iter_mut().enumerate() {
            joint.pos = [-0.304_56 + j as f32 * 0.012_345_6, 1.0 / (j as f32 + 3.0), 2.728_912];
            joint.tracking = Tracking::from_code(j as i64 % 3).unwrap();
        }
        let frame = Frame {
            index: 41,
            timestamp_secs: 1.366_667,
            bodies: vec![Body { id: 72_057_594_037_931_101, joints }, Body { id: 2, joints }],
        };
        let header = Header::canonical(Some(30.0));
        let mut d = Decoder::new("rt".into());
        assert!(d.decode_line(&encode_header(&header)).unwrap().is_none());
        assert_eq!(d.header(), &header);
        let line = encode_frame(&frame);
        let back = d.decode_line(&line).unwrap().unwrap();
        assert_eq!(back.index, 41);
        // Stream time starts at the first frame.
        assert_eq!(back.timestamp_secs, 0.0);
        assert_eq!(back.bodies.len(), 2);
        assert_eq!(back.bodies[0].id, 72_057_594_037_931_101);
        for (a, b) in frame.bodies[0].joints.iter().zip(&back.bodies[0].joints) {
            assert_eq!(a.tracking, b.tracking);
            for c in 0..3 {
                assert!((a.pos[c] - b.pos[c]).abs() <= 5e-6, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn frames_with_too_many_bodies_are_skipped() {
        let body = |id| Body { id, joints: [Joint::tracked([0.0, 0.0, 2.0]); NUM_JOINTS] };
        let frame =
            |n: u64| Frame { index: 0, timestamp_secs: 0.0, bodies: (0..n).map(body).collect() };
        let mut d = Decoder::new("udp:peer".into());
        let ok = d.decode_checked(encode_frame(&frame(16)).as_bytes());
        assert_eq!(ok.map(|f| f.map(|f| f.bodies.len())).ok(), Some(Some(16)));
        let mut d = Decoder::new("udp:peer".into());
        let rejected = d.decode_checked(encode_frame(&frame(17)).as_bytes()).unwrap_err();
        assert_eq!(rejected.reason, SkipReason::Malformed);
        assert_eq!(
            rejected.error.to_string(),
            "udp:peer line 1: frame 0: expected at most 16 bodies, found 17"
        );
    }

    #[test]
    fn a_timestamp_absurdly_far_from_the_first_is_skipped_and_ids_do_not_overflow() {
        let body = Body { id: 1, joints: [Joint::tracked([0.0, 0.0, 2.0]); NUM_JOINTS] };
        // Timestamps written as a sender might (`1e30` is valid JSON for a number).
        let line = |index: u64, usec: f64| {
            let frame = Frame { index, timestamp_secs: 0.0, bodies: vec![body.clone()] };
            encode_frame(&frame).replacen(
                "\"timestamp_usec\":0,",
                &format!("\"timestamp_usec\":{usec:e},"),
                1,
            )
        };
        let mut d = Decoder::new("tcp:peer".into());
        assert!(d.decode_checked(line(0, 5e6).as_bytes()).is_ok());
        let rejected = d.decode_checked(line(1, 1e30).as_bytes()).unwrap_err();
        assert_eq!(rejected.reason, SkipReason::Malformed);
        assert!(
            rejected.error.to_string().contains("timestamp_usec within 1e9 s"),
            "{}",
            rejected.error
        );
        let next = d.decode_checked(line(2, 5e6 + 33_333.0).as_bytes()).unwrap().unwrap();
        assert!((next.timestamp_secs - 0.033_333).abs() < 1e-9, "the stream goes on");
        // The last possible id, then a frame without one: skipped as out of order, no overflow.
        assert!(d.decode_checked(line(u64::MAX, 6e6).as_bytes()).is_ok());
        let no_id = line(0, 7e6).replacen("\"frame_id\":0,", "", 1);
        assert!(!no_id.contains("frame_id"), "{no_id}");
        let rejected = d.decode_checked(no_id.as_bytes()).unwrap_err();
        assert_eq!(rejected.reason, SkipReason::OutOfOrder);
    }

    #[test]
    fn coordinates_are_compact() {
        let mut s = String::new();
        for v in [0.2126_f32, -0.0, 2.0, -1.5, 0.000_004, f32::NAN] {
            push_coord(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0.2126 0 2 -1.5 0 null ");
    }

    #[test]
    fn recording_file_round_trip_with_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("take.ndjson");
        let frames: Vec<Frame> = (0..5)
            .map(|i| {
                let mut positions = [[0.0_f32; 3]; NUM_JOINTS];
                for (j, p) in positions.iter_mut().enumerate() {
                    *p = [0.01 * j as f32, 0.5 + 0.001 * i as f32, 2.5];
                }
                Frame {
                    index: i,
                    timestamp_secs: i as f64 / 30.0,
                    bodies: vec![Body::from_positions(1, &positions)],
                }
            })
            .collect();
        let recording = Recording {
            name: "take".into(),
            source_layout: Layout::KinectV2_25,
            fps: 30.0,
            frames: frames.clone(),
            intervals: None,
        };
        write_recording(&path, &recording).unwrap();
        let back = read_recording(&path).unwrap();
        assert_eq!(back.name, "take");
        assert_eq!(back.fps, 30.0);
        assert_eq!(back.frames.len(), 5);
        for (a, b) in frames.iter().zip(&back.frames) {
            assert_eq!(a.index, b.index);
            assert!((a.timestamp_secs - b.timestamp_secs).abs() < 1e-6);
            let (pa, pb) = (a.bodies[0].positions(), b.bodies[0].positions());
            for (ja, jb) in pa.iter().zip(&pb) {
                assert!(ja.iter().zip(jb).all(|(x, y)| (x - y).abs() <= 5e-6), "{ja:?} vs {jb:?}");
            }
        }

        // Corrupt line 4 (frame 2): the error names the file and line.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[3] = r#"{"type":"frame","frame_id":2,"bodies":[{"joint_positions":[[1,2]]}]}"#;
        std::fs::write(&path, lines.join("\n")).unwrap();
        let err = read_recording(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:4: frame 2 body 0: expected 25 joints", path.display())),
            "{err}"
        );
    }
}
