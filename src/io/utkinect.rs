//! UTKinect-Action3D: joints files and `actionLabel.txt` (as the dataset's SOURCE.txt describes them).
//!
//! * `joints_sNN_eMM.txt`: one row per depth frame, `frameNo` then 20 Kinect v1 joints × xyz in
//!   metres (61 numbers). `frameNo` steps by 2–8 and repeats: a repeated row is dropped (counted
//!   and logged); `frameNo` is the time base (30 fps), so frame positions keep the gaps.
//! * `actionLabel.txt`: per take a `sNN_eMM` line, then `action: start end` lines with inclusive
//!   `frameNo` bounds. Frames outside every interval are background. An interval written
//!   `NaN NaN` (one exists in the full dataset) is skipped with a warning.
//!
//! Bodies are mapped Kinect v1 → canonical with [`Layout::to_canonical`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::text::{At, empty_file, numbered_lines, read_text};
use super::{ClassMap, Interval, Recording};
use crate::error::{Error, Location, Result};
use crate::frame::{Body, Frame};
use crate::skeleton::Layout;

/// Frame rate `frameNo` counts in.
pub const FPS: f64 = 30.0;
/// Numbers per joints-file row: `frameNo` + 20 joints × xyz.
pub const VALUES_PER_ROW: usize = 1 + 20 * 3;
/// The 10 actions, in the order every take performs them; class ids 1..=10.
pub const ACTIONS: [&str; 10] = [
    "walk",
    "sitDown",
    "standUp",
    "pickUp",
    "carry",
    "throw",
    "push",
    "pull",
    "waveHands",
    "clapHands",
];
/// Name of the label file.
pub const LABEL_FILE: &str = "actionLabel.txt";

/// The UTKinect class map: `background` at 0, then [`ACTIONS`].
pub fn classes() -> ClassMap {
    ClassMap::new(std::iter::once("background").chain(ACTIONS).map(str::to_owned).collect())
}

/// One take's joints file, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Take {
    /// Take name as in `actionLabel.txt` (`s01_e01` for `joints_s01_e01.txt`).
    pub name: String,
    /// `frameNo` of every kept frame (strictly increasing).
    pub frame_numbers: Vec<u64>,
    /// Frames in canonical layout: index = `frameNo` − first `frameNo`, timestamp = index / 30 s,
    /// one body with id 1.
    pub frames: Vec<Frame>,
    /// Rows dropped because they repeated the previous row's `frameNo`.
    pub repeats_dropped: usize,
}

/// One labelled interval of `actionLabel.txt`, in `frameNo` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameNoInterval {
    /// Class id in [`classes`].
    pub class: usize,
    /// First `frameNo` (inclusive).
    pub first: u64,
    /// Last `frameNo` (inclusive).
    pub last: u64,
    /// Line of `actionLabel.txt` it came from, for errors.
    pub line: usize,
}

/// The take name of a joints file path (`.../joints_s01_e01.txt` → `s01_e01`).
pub fn take_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    stem.strip_prefix("joints_").map(str::to_owned)
}

/// Reads one joints file. Errors (file:line): rows without 61 numbers, non-numbers, non-finite
/// coordinates, a `frameNo` lower than the previous one, an empty file.
pub fn read_joints(path: impl AsRef<Path>) -> Result<Take> {
    let path = path.as_ref();
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(empty_file(path, "rows of `frameNo` + 20 joints × xyz"));
    }
    let name = take_name(path).unwrap_or_else(|| {
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    });
    let mut frame_numbers: Vec<u64> = Vec::new();
    let mut frames = Vec::new();
    let mut repeats_dropped = 0;
    let mut positions = [[0.0f32; 3]; 20];
    for (line_no, line) in numbered_lines(&text) {
        if line.trim().is_empty() {
            continue;
        }
        let at = At::new(path, line_no);
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() != VALUES_PER_ROW {
            return Err(at.expected(
                format!("{VALUES_PER_ROW} numbers (frameNo + 20 joints × xyz)"),
                format!("{}", fields.len()),
            ));
        }
        let frame_no: u64 = at.integer(fields[0], "the frame number")?;
        if let Some(&prev) = frame_numbers.last() {
            if frame_no == prev {
                repeats_dropped += 1;
                continue;
            }
            if frame_no < prev {
                return Err(at.expected(
                    format!("a frame number of at least {prev} (the previous row's)"),
                    format!("{frame_no}"),
                ));
            }
        }
        for (j, p) in positions.iter_mut().enumerate() {
            for (k, c) in p.iter_mut().enumerate() {
                let token = fields[1 + 3 * j + k];
                *c = at.finite_f32(token, format_args!("{} of joint {j}", ["x", "y", "z"][k]))?;
            }
        }
        let joints = Layout::KinectV1_20.to_canonical(&positions, None)?;
        let base = frame_numbers.first().copied().unwrap_or(frame_no);
        let index = frame_no - base;
        frame_numbers.push(frame_no);
        frames.push(Frame {
            index,
            timestamp_secs: index as f64 / FPS,
            bodies: vec![Body { id: 1, joints }],
        });
    }
    if repeats_dropped > 0 {
        tracing::info!(path = %path.display(), repeats_dropped, "dropped rows repeating the previous frame number");
    }
    Ok(Take { name, frame_numbers, frames, repeats_dropped })
}

/// Reads `actionLabel.txt`: take name → its intervals in file order. Errors (file:line): an
/// unknown action name, bounds that are not two frame numbers, start > end, an interval before
/// any take line, a take listed twice, an empty file.
pub fn read_action_labels(
    path: impl AsRef<Path>,
) -> Result<BTreeMap<String, Vec<FrameNoInterval>>> {
    let path = path.as_ref();
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(empty_file(
            path,
            "take lines (`s01_e01`) followed by `action: start end` lines",
        ));
    }
    let mut takes: BTreeMap<String, Vec<FrameNoInterval>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (line_no, raw) in numbered_lines(&text) {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let at = At::new(path, line_no);
        let Some((action, bounds)) = line.split_once(':') else {
            if line.split_whitespace().count() != 1 {
                return Err(at.expected(
                    "a take name such as `s01_e01` or `action: start end`",
                    format!("`{line}`"),
                ));
            }
            if takes.contains_key(line) {
                return Err(at.expected("each take once", format!("`{line}` again")));
            }
            takes.insert(line.to_owned(), Vec::new());
            current = Some(line.to_owned());
            continue;
        };
        let Some(take) = current.as_ref().and_then(|t| takes.get_mut(t)) else {
            return Err(
                at.expected("a take name such as `s01_e01`", format!("`{line}` before any"))
            );
        };
        let action = action.trim();
        let class = ACTIONS.iter().position(|a| *a == action).map(|i| i + 1).ok_or_else(|| {
            at.expected(
                format!("one of the actions {}", ACTIONS.join(", ")),
                format!("unknown class `{action}`"),
            )
        })?;
        let tokens: Vec<&str> = bounds.split_whitespace().collect();
        if tokens.len() != 2 {
            return Err(at.expected(format!("`{action}: start end`"), format!("`{line}`")));
        }
        if tokens.iter().all(|t| t.eq_ignore_ascii_case("nan")) {
            tracing::warn!(location = %at.location(), action, "interval `NaN NaN` skipped");
            continue;
        }
        let first: u64 = at.integer(tokens[0], "the start frame number")?;
        let last: u64 = at.integer(tokens[1], "the end frame number")?;
        if first > last {
            return Err(at.expected("start <= end", format!("{first} > {last}")));
        }
        take.push(FrameNoInterval { class, first, last, line: line_no });
    }
    Ok(takes)
}

/// Turns `frameNo` intervals into positions in `take.frames`: the first frame at or after the
/// start to the last frame at or before the end. `label_path` names the label file in errors: an
/// interval outside the take's frame numbers, or one that covers no kept frame.
pub fn intervals_for_take(
    take: &Take,
    labels: &[FrameNoInterval],
    label_path: &Path,
) -> Result<Vec<Interval>> {
    let (Some(&min), Some(&max)) = (take.frame_numbers.first(), take.frame_numbers.last()) else {
        return Err(Error::invalid(format!("take {}", take.name), "expected frames, found none"));
    };
    labels
        .iter()
        .map(|l| {
            let at = At::new(label_path, l.line);
            if l.first < min || l.last > max {
                return Err(at.expected(
                    format!("an interval within take {}'s frames {min}..{max}", take.name),
                    format!("{}..{}", l.first, l.last),
                ));
            }
            let start = take.frame_numbers.partition_point(|&n| n < l.first);
            let after = take.frame_numbers.partition_point(|&n| n <= l.last);
            if after <= start {
                return Err(at.expected(
                    format!("an interval covering frames of take {}", take.name),
                    format!("{}..{} between two frames", l.first, l.last),
                ));
            }
            Ok(Interval { class: l.class, start, end: after - 1 })
        })
        .collect()
}

/// `actionLabel.txt` beside the joints file or one folder up (the dataset's `joints/` folder).
pub fn find_action_labels(joints_path: &Path) -> Option<PathBuf> {
    let dir = joints_path.parent()?;
    [dir.join(LABEL_FILE), dir.parent()?.join(LABEL_FILE)].into_iter().find(|p| p.is_file())
}

/// Reads one take as a [`Recording`] with its intervals from `labels` (an `actionLabel.txt`);
/// without `labels` the recording is unlabelled. A label file that does not list the take is an
/// error.
pub fn read_take(joints_path: impl AsRef<Path>, labels: Option<&Path>) -> Result<Recording> {
    let take = read_joints(joints_path.as_ref())?;
    let intervals = match labels {
        Some(label_path) => {
            let all = read_action_labels(label_path)?;
            let Some(ranges) = all.get(&take.name) else {
                return Err(Error::parse(
                    Location::file(label_path),
                    format!("labels for take `{}`", take.name),
                    "none",
                ));
            };
            Some(intervals_for_take(&take, ranges, label_path)?)
        }
        None => None,
    };
    Ok(Recording {
        name: take.name,
        source_layout: Layout::KinectV1_20,
        fps: FPS,
        frames: take.frames,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(frame_no: u64) -> String {
        let coords: Vec<String> = (0..60).map(|i| format!("{:.3}", i as f32 * 0.01)).collect();
        format!("{frame_no}  {}", coords.join("  "))
    }

    #[test]
    fn repeats_are_dropped_and_frame_numbers_give_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("joints_s09_e01.txt");
        let text: String = [100, 100, 104, 110].map(|n| row(n) + "\n").concat();
        std::fs::write(&p, text).unwrap();
        let take = read_joints(&p).unwrap();
        assert_eq!(take.name, "s09_e01");
        assert_eq!(take.repeats_dropped, 1);
        assert_eq!(take.frame_numbers, [100, 104, 110]);
        assert_eq!(take.frames.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 4, 10]);
        assert!((take.frames[2].timestamp_secs - 10.0 / 30.0).abs() < 1e-12);
        // ShoulderCenter (v1 joint 2, columns 7..9) became SpineShoulder.
        let spine_shoulder = take.frames[0].bodies[0].joints[20].pos;
        assert!((spine_shoulder[0] - 0.06).abs() < 1e-6, "{spine_shoulder:?}");
    }

    #[test]
    fn intervals_snap_to_kept_frames_and_reject_outside_ranges() {
        let take = Take {
            name: "s01_e01".into(),
            frame_numbers: vec![10, 12, 16, 20],
            frames: Vec::new(),
            repeats_dropped: 0,
        };
        let p = Path::new("actionLabel.txt");
        let iv = |first, last| FrameNoInterval { class: 3, first, last, line: 5 };
        let got = intervals_for_take(&take, &[iv(11, 19)], p).unwrap();
        assert_eq!(got, [Interval { class: 3, start: 1, end: 2 }]);
        let err = intervals_for_take(&take, &[iv(8, 12)], p).unwrap_err().to_string();
        assert!(
            err.contains("actionLabel.txt:5:") && err.contains("10..20") && err.contains("8..12"),
            "{err}"
        );
        let err = intervals_for_take(&take, &[iv(13, 15)], p).unwrap_err().to_string();
        assert!(err.contains("between two frames"), "{err}");
    }

    #[test]
    fn label_file_rejects_unknown_actions_and_skips_nan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LABEL_FILE);
        std::fs::write(&p, "s01_e01\nwalk: 1 5\npush: NaN NaN\n").unwrap();
        let labels = read_action_labels(&p).unwrap();
        assert_eq!(labels["s01_e01"], [FrameNoInterval { class: 1, first: 1, last: 5, line: 2 }]);
        std::fs::write(&p, "s01_e01\nwalk: 1 5\njump: 6 9\n").unwrap();
        let err = read_action_labels(&p).unwrap_err().to_string();
        assert!(
            err.contains("actionLabel.txt:3:") && err.contains("unknown class `jump`"),
            "{err}"
        );
    }
}
