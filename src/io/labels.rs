//! Label files of one recording in a dataset folder, whatever way they were written.
//!
//! Three formats, told apart by their first non-empty line:
//!
//! * **intervals by frame** (PKU-MMD): `class,start,end[,confidence]`, 1-based inclusive frame
//!   numbers; the class is an id or a name;
//! * **intervals by time**: a header line `label,start_s,end_s`, then `name,start,end` with
//!   seconds from the recording's first frame (for labels written while watching a video);
//! * **per frame** (MS-TCN style): one class name per line, line `k` = frame `k`.
//!
//! Reading is in two steps because a folder without `mapping.txt` takes its classes from the
//! label names: [`read_label_file`] parses a file without knowing the classes, and
//! [`LabelFile::resolve`] maps names to ids and times to frames for one recording, with located
//! errors for unknown names (naming the closest known one), intervals past the end of the
//! recording and overlapping intervals. Frames no interval covers are background (class 0).

use std::path::{Path, PathBuf};

use super::text::{At, numbered_lines, read_text};
use super::{ClassMap, Interval, Recording};
use crate::error::Result;

/// Header of a time-based label file (compared case-insensitively, blanks ignored).
pub const TIME_HEADER: &str = "label,start_s,end_s";
/// Name of class 0 when the classes come from the label names.
pub const BACKGROUND: &str = "background";

/// How a label file was written (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelFormat {
    /// `class,start,end[,confidence]`, 1-based frames.
    FrameIntervals,
    /// `label,start_s,end_s` with a header, seconds from the first frame.
    TimeIntervals,
    /// One class name per frame.
    PerFrame,
}

/// What overlapping intervals mean for [`LabelFile::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlaps {
    /// A located error (hand-written labels: an overlap is a mistake).
    Refuse,
    /// The later interval wins, with a warning (PKU-MMD's published labels have 34 overlaps in
    /// 32 of their 1,076 files).
    LaterWins,
}

#[derive(Clone, Debug, PartialEq)]
enum Span {
    /// 1-based inclusive frame numbers.
    Frames(usize, usize),
    /// Seconds from the first frame.
    Seconds(f64, f64),
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    line: usize,
    class: String,
    span: Span,
}

/// A parsed label file, classes still as written.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelFile {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: LabelFormat,
    entries: Vec<Entry>,
    /// Per-frame files: the class token of each frame, with its line.
    per_frame: Vec<(usize, String)>,
}

/// Reads a label file in any of the three formats. An empty file is a recording without
/// actions. Errors are located at `path:line`.
pub fn read_label_file(path: impl AsRef<Path>) -> Result<LabelFile> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let mut lines = numbered_lines(&text).filter(|(_, l)| !l.trim().is_empty()).peekable();
    let mut file = LabelFile {
        path: path.to_path_buf(),
        format: LabelFormat::FrameIntervals,
        entries: Vec::new(),
        per_frame: Vec::new(),
    };
    let Some(&(_, first)) = lines.peek() else { return Ok(file) };
    let squeezed: String = first.chars().filter(|c| !c.is_whitespace()).collect();
    if squeezed.eq_ignore_ascii_case(TIME_HEADER) {
        file.format = LabelFormat::TimeIntervals;
        lines.next();
        for (line_no, line) in lines {
            let at = At::new(path, line_no);
            let fields = fields(line);
            if fields.len() != 3 {
                return Err(at.expected(
                    "3 comma-separated fields `label,start_s,end_s`",
                    format!("{}", fields.len()),
                ));
            }
            let start = at.number(fields[1], "the start (seconds)")?;
            let end = at.number(fields[2], "the end (seconds)")?;
            if !(start.is_finite() && end.is_finite() && start >= 0.0 && end >= start) {
                return Err(
                    at.expected("0 <= start_s <= end_s", format!("start {start}, end {end}"))
                );
            }
            file.entries.push(Entry {
                line: line_no,
                class: fields[0].to_owned(),
                span: Span::Seconds(start, end),
            });
        }
    } else if first.contains(',') {
        for (line_no, line) in lines {
            let at = At::new(path, line_no);
            let (label, start, end) = super::pku::parse_label_line(&at, line)?;
            file.entries.push(Entry {
                line: line_no,
                class: label.to_owned(),
                span: Span::Frames(start, end),
            });
        }
    } else {
        file.format = LabelFormat::PerFrame;
        // Blank lines were skipped above; inside a per-frame file they would shift every frame.
        for (line_no, line) in numbered_lines(text.trim_end()) {
            let name = line.trim();
            if name.is_empty() {
                return Err(
                    At::new(path, line_no).expected("a class name per frame", "a blank line")
                );
            }
            file.per_frame.push((line_no, name.to_owned()));
        }
    }
    Ok(file)
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',').map(str::trim).collect()
}

impl LabelFile {
    /// Class names written in the file (tokens that are not numeric ids), in file order, with
    /// repeats; per-frame files give each run once.
    pub fn class_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.class.as_str())
            .chain(self.per_frame.iter().map(|(_, n)| n.as_str()))
            .filter(|n| n.parse::<usize>().is_err())
            .collect();
        names.dedup();
        names
    }

    /// The intervals of `recording` (its frame count and timestamps place time-based labels),
    /// class names mapped through `classes`. Errors, located at the label file's line: unknown
    /// classes (naming the closest known name), intervals past the last frame, overlaps (under
    /// [`Overlaps::Refuse`]), a per-frame file whose line count is not the frame count.
    pub fn resolve(
        &self,
        classes: &ClassMap,
        recording: &Recording,
        overlaps: Overlaps,
    ) -> Result<Vec<Interval>> {
        let n = recording.frames.len();
        if self.format == LabelFormat::PerFrame {
            return self.resolve_per_frame(classes, n);
        }
        let mut intervals: Vec<(usize, Interval)> = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let at = At::new(&self.path, e.line);
            let class = class_id(&at, &e.class, classes)?;
            let (start, end) = match e.span {
                Span::Frames(start, end) => {
                    if end > n {
                        return Err(at.expected(
                            format!("an interval within the recording's frames 1..{n}"),
                            format!("{start}..{end} (past the end)"),
                        ));
                    }
                    (start - 1, end - 1)
                }
                Span::Seconds(start, end) => seconds_to_frames(&at, recording, start, end)?,
            };
            intervals.push((e.line, Interval { class, start, end }));
        }
        let mut by_start: Vec<&(usize, Interval)> = intervals.iter().collect();
        by_start.sort_by_key(|(line, iv)| (iv.start, *line));
        for pair in by_start.windows(2) {
            let ((l0, a), (l1, b)) = (pair[0], pair[1]);
            if b.start <= a.end {
                let found = format!(
                    "frames {}..{} overlapping line {l0} ({}..{})",
                    b.start + 1,
                    b.end + 1,
                    a.start + 1,
                    a.end + 1
                );
                let expected = "intervals that do not overlap";
                let message = format!("expected {expected}, found {found}");
                match overlaps {
                    Overlaps::Refuse => {
                        return Err(At::new(&self.path, *l1).expected(expected, found));
                    }
                    Overlaps::LaterWins => {
                        tracing::warn!(location = %At::new(&self.path, *l1).location(), "{message}: the later line wins")
                    }
                }
            }
        }
        Ok(intervals.into_iter().map(|(_, iv)| iv).collect())
    }

    fn resolve_per_frame(&self, classes: &ClassMap, n: usize) -> Result<Vec<Interval>> {
        if self.per_frame.len() != n {
            let line = self.per_frame.len().min(n) + 1;
            return Err(At::new(&self.path, line).expected(
                format!("one class name per frame ({n} lines for {n} frames)"),
                format!("{} lines", self.per_frame.len()),
            ));
        }
        let mut ids = Vec::with_capacity(n);
        for (line, name) in &self.per_frame {
            ids.push(class_id(&At::new(&self.path, *line), name, classes)?);
        }
        Ok(runs(&ids).filter(|iv| iv.class != 0).collect())
    }
}

/// Runs of equal class ids as intervals (background runs included).
pub fn runs(ids: &[usize]) -> impl Iterator<Item = Interval> + '_ {
    let mut start = 0;
    (0..ids.len()).filter_map(move |i| {
        if i + 1 == ids.len() || ids[i + 1] != ids[i] {
            let iv = Interval { class: ids[i], start, end: i };
            start = i + 1;
            Some(iv)
        } else {
            None
        }
    })
}

/// Frames whose time since the first frame is nearest to `[start, end]` seconds.
fn seconds_to_frames(
    at: &At<'_>,
    recording: &Recording,
    start: f64,
    end: f64,
) -> Result<(usize, usize)> {
    let frames = &recording.frames;
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(at.expected("a recording with frames", "none"));
    };
    let half = 0.5 / recording.fps.max(1e-3);
    let t = |i: usize| frames[i].timestamp_secs - first.timestamp_secs;
    let duration = last.timestamp_secs - first.timestamp_secs;
    if end > duration + 2.0 * half {
        return Err(at.expected(
            format!("an interval within the recording's {duration:.3} s"),
            format!("{start}..{end} s (past the end)"),
        ));
    }
    // A frame belongs when its time lies in [start - half, end + half): the frames nearest to
    // both ends, a frame exactly halfway going to the later interval. Timestamps come in
    // microseconds, hence the tolerance.
    let eps = 2e-6;
    let from =
        frames.partition_point(|f| f.timestamp_secs - first.timestamp_secs < start - half - eps);
    let to = frames.partition_point(|f| f.timestamp_secs - first.timestamp_secs < end + half - eps);
    if to == 0 || from >= to {
        return Err(at.expected(
            "an interval holding at least one frame",
            format!("{start}..{end} s (frames near it at {:.3} s)", t(from.min(frames.len() - 1))),
        ));
    }
    Ok((from, to - 1))
}

/// A class token: an id below the map's size, or a name of the map.
fn class_id(at: &At<'_>, token: &str, classes: &ClassMap) -> Result<usize> {
    if let Ok(id) = token.parse::<usize>() {
        return if id < classes.len() {
            Ok(id)
        } else {
            Err(at.expected(
                format!("a class id below {} (the class map's size)", classes.len()),
                format!("{id}"),
            ))
        };
    }
    classes.id(token).ok_or_else(|| {
        let hint = closest_name(token, classes)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        at.expected("a known class name", format!("unknown class `{token}`{hint}"))
    })
}

/// The class name nearest to `name` by edit distance (case-insensitive), if any is near
/// enough to be a plausible typo (at most a third of the name's length, at least 2).
pub fn closest_name<'a>(name: &str, classes: &'a ClassMap) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    classes
        .names()
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A class map from label names: [`BACKGROUND`] at 0, the other names sorted.
pub fn classes_from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ClassMap {
    let mut names: Vec<&str> = names.into_iter().filter(|n| *n != BACKGROUND).collect();
    names.sort_unstable();
    names.dedup();
    ClassMap::new(std::iter::once(BACKGROUND).chain(names).map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::skeleton::Layout;

    fn recording(n: usize, fps: f64) -> Recording {
        Recording {
            name: "r".into(),
            source_layout: Layout::KinectV2_25,
            fps,
            frames: (0..n)
                .map(|i| Frame {
                    index: i as u64,
                    timestamp_secs: 5.0 + i as f64 / fps,
                    bodies: Vec::new(),
                })
                .collect(),
            intervals: None,
        }
    }

    fn classes() -> ClassMap {
        ClassMap::new(["background", "squat", "wave"].map(String::from).to_vec())
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn time_intervals_map_seconds_from_the_first_frame_to_frames() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", "label, start_s, end_s\nwave,0.0,1.0\nsquat,2.0,3.0\n");
        let file = read_label_file(&p).unwrap();
        assert_eq!(file.format, LabelFormat::TimeIntervals);
        let ivs = file.resolve(&classes(), &recording(60, 15.0), Overlaps::Refuse).unwrap();
        // 15 fps: 0..1 s is frames 0..15, 2..3 s frames 30..45.
        assert_eq!(
            ivs,
            [Interval { class: 2, start: 0, end: 15 }, Interval { class: 1, start: 30, end: 45 }]
        );
        let p = write(&dir, "b.csv", "label,start_s,end_s\nwave,0,1\nsquat,3.5,4.5\n");
        let err = read_label_file(&p)
            .unwrap()
            .resolve(&classes(), &recording(60, 15.0), Overlaps::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.csv:3:") && err.contains("past the end"), "{err}");
    }

    #[test]
    fn unknown_names_are_located_and_the_closest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.txt", "squat,1,10\nwaev,20,30,1\n");
        let err = read_label_file(&p)
            .unwrap()
            .resolve(&classes(), &recording(40, 30.0), Overlaps::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt:2:") && err.contains("`waev`"), "{err}");
        assert!(err.contains("did you mean `wave`"), "{err}");
        assert_eq!(closest_name("jumping jacks", &classes()), None);
    }

    #[test]
    fn overlaps_are_refused_or_resolved_by_the_later_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.txt", "1,1,10\n2,20,30\n2,8,12\n");
        let file = read_label_file(&p).unwrap();
        let err = file
            .resolve(&classes(), &recording(40, 30.0), Overlaps::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt:3:") && err.contains("overlapping line 1"), "{err}");
        let ivs = file.resolve(&classes(), &recording(40, 30.0), Overlaps::LaterWins).unwrap();
        assert_eq!(ivs.len(), 3);
        let err = file
            .resolve(&classes(), &recording(25, 30.0), Overlaps::LaterWins)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt:2:") && err.contains("1..25"), "{err}");
    }

    #[test]
    fn per_frame_files_give_runs_without_background() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.txt", "background\nwave\nwave\nbackground\nsquat\n");
        let file = read_label_file(&p).unwrap();
        assert_eq!(file.format, LabelFormat::PerFrame);
        assert_eq!(file.class_names(), ["background", "wave", "background", "squat"]);
        let ivs = file.resolve(&classes(), &recording(5, 30.0), Overlaps::Refuse).unwrap();
        assert_eq!(
            ivs,
            [Interval { class: 2, start: 1, end: 2 }, Interval { class: 1, start: 4, end: 4 }]
        );
        let err = file
            .resolve(&classes(), &recording(7, 30.0), Overlaps::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt:6:") && err.contains("found 5 lines"), "{err}");
    }

    #[test]
    fn classes_from_names_put_background_first() {
        let map = classes_from_names(["wave", "background", "squat", "wave"]);
        assert_eq!(map.names(), ["background", "squat", "wave"]);
    }
}
