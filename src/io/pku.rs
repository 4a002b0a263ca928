//! PKU-MMD skeleton, label and split files, read and written.
//!
//! * Skeleton file: one line per frame, 150 space-separated floats = 2 body slots × 25 Kinect v2
//!   joints × xyz, metres. An all-zero slot means "no body". 30 fps.
//! * Label file: one `label,start,end,confidence` line per action instance; `label` is the
//!   1-based class id (kept as is: 0 is background), `start`/`end` are 1-based inclusive frame
//!   numbers (converted to 0-based positions), `start > end` is swapped with a warning as the
//!   reference loaders do. The confidence (1 slight, 2 strong) is checked and dropped.
//! * Split file: header lines ending in `:` (`Training videos:`) each followed by a line of
//!   comma-separated recording names.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::text::{At, empty_file, numbered_lines, read_text};
use super::{ClassMap, Interval};
use crate::error::{Error, Result};
use crate::frame::{BODY_SLOTS, Body, Frame, Joint, NUM_JOINTS};

/// Frame rate of every PKU-MMD modality.
pub const FPS: f64 = 30.0;
/// Floats per skeleton line: 2 body slots × 25 joints × xyz.
pub const FLOATS_PER_LINE: usize = BODY_SLOTS * NUM_JOINTS * 3;

/// The 51 PKU-MMD action names in id order 1..=51 (`Actions.xlsx`).
pub const ACTIONS: [&str; 51] = [
    "bow",
    "brushing hair",
    "brushing teeth",
    "check time (from watch)",
    "cheer up",
    "clapping",
    "cross hands in front (say stop)",
    "drink water",
    "drop",
    "eat meal/snack",
    "falling",
    "giving something to other person",
    "hand waving",
    "handshaking",
    "hopping (one foot jumping)",
    "hugging other person",
    "jump up",
    "kicking other person",
    "kicking something",
    "make a phone call/answer phone",
    "pat on back of other person",
    "pickup",
    "playing with phone/tablet",
    "point finger at the other person",
    "pointing to something with finger",
    "punching/slapping other person",
    "pushing other person",
    "put on a hat/cap",
    "put something inside pocket",
    "reading",
    "rub two hands together",
    "salute",
    "sitting down",
    "standing up",
    "take off a hat/cap",
    "take off glasses",
    "take off jacket",
    "take out something from pocket",
    "taking a selfie",
    "tear up paper",
    "throw",
    "touch back (backache)",
    "touch chest (stomachache/heart pain)",
    "touch head (headache)",
    "touch neck (neckache)",
    "typing on a keyboard",
    "use a fan (with hand or paper)/feeling warm",
    "wear jacket",
    "wear on glasses",
    "wipe face",
    "writing",
];

/// The PKU-MMD class map: `background` at 0, then [`ACTIONS`] at their file ids 1..=51.
pub fn classes() -> ClassMap {
    let names = std::iter::once("background").chain(ACTIONS).map(str::to_owned).collect();
    ClassMap::new(names)
}

/// Reads a skeleton file. Body slot 1 becomes body id 1 and slot 2 id 2; an all-zero slot is
/// omitted; frame `k` (line `k + 1`) has index `k` and timestamp `k / 30` s. PKU files carry no
/// tracking state: every joint is [`crate::Tracking::Tracked`].
pub fn read_skeleton(path: impl AsRef<Path>) -> Result<Vec<Frame>> {
    let path = path.as_ref();
    parse_skeleton(&read_text(path)?, path)
}

/// Parses the text of a skeleton file read from `path` (named in errors).
pub(crate) fn parse_skeleton(text: &str, path: &Path) -> Result<Vec<Frame>> {
    let expected = "lines of 150 numbers (2 bodies × 25 joints × xyz)";
    if text.trim().is_empty() {
        return Err(empty_file(path, expected));
    }
    // Blank lines at the end are harmless; inside the file they would shift every later frame.
    let body_text = text.trim_end();
    let n_lines = body_text.lines().count();
    let unterminated = !text.ends_with('\n');
    let mut frames = Vec::new();
    let mut values = Vec::with_capacity(FLOATS_PER_LINE);
    for (line_no, line) in numbered_lines(body_text) {
        let at = At::new(path, line_no);
        values.clear();
        for (col, token) in line.split_ascii_whitespace().enumerate() {
            if col >= FLOATS_PER_LINE {
                let found = line.split_ascii_whitespace().count();
                return Err(at.expected(format!("{FLOATS_PER_LINE} numbers"), format!("{found}")));
            }
            values.push(at.finite_f32(token, ValueName(col))?);
        }
        if values.len() != FLOATS_PER_LINE {
            let truncated =
                if unterminated && line_no == n_lines { " (truncated file?)" } else { "" };
            return Err(at.expected(
                format!("{FLOATS_PER_LINE} numbers"),
                format!("{}{truncated}", values.len()),
            ));
        }
        let index = frames.len();
        let bodies = values
            .chunks_exact(NUM_JOINTS * 3)
            .enumerate()
            .filter(|(_, slot)| slot.iter().any(|&v| v != 0.0))
            .map(|(slot, coords)| Body {
                id: slot as u64 + 1,
                joints: std::array::from_fn(|j| {
                    Joint::tracked([coords[3 * j], coords[3 * j + 1], coords[3 * j + 2]])
                }),
            })
            .collect();
        frames.push(Frame { index: index as u64, timestamp_secs: index as f64 / FPS, bodies });
    }
    Ok(frames)
}

/// Names column `col` of a skeleton line in errors: `z of joint 4 (ShoulderLeft) of body 2`.
struct ValueName(usize);

impl std::fmt::Display for ValueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.0 / (NUM_JOINTS * 3) + 1;
        let joint = (self.0 / 3) % NUM_JOINTS;
        let axis = ["x", "y", "z"][self.0 % 3];
        let name = crate::skeleton::kinect_v2::JOINT_NAMES[joint];
        write!(f, "{axis} of joint {joint} ({name}) of body {body} (column {})", self.0 + 1)
    }
}

/// Writes frames as a skeleton file (coordinates in shortest round-trip notation).
///
/// Bodies go to slots by id when the frame's ids are 1 and/or 2 (as [`read_skeleton`] returns
/// them), otherwise in order. A frame with more than two bodies keeps the first two and the
/// loss is logged. Tracking states are not stored by the format. Errors: non-finite coordinates
/// (they could not be read back) and I/O.
pub fn write_skeleton(path: impl AsRef<Path>, frames: &[Frame]) -> Result<()> {
    let path = path.as_ref();
    let mut out = String::with_capacity(frames.len() * FLOATS_PER_LINE * 10);
    let mut dropped = 0usize;
    for (pos, frame) in frames.iter().enumerate() {
        if let Some((b, j)) = frame.first_invalid_joint(f32::MAX) {
            return Err(Error::invalid(
                format!("frame {pos} (index {}) for {}", frame.index, path.display()),
                format!(
                    "body {b} joint {j}: expected finite coordinates, found {:?}",
                    frame.bodies[b].joints[j].pos
                ),
            ));
        }
        let mut slots: [Option<&Body>; BODY_SLOTS] = [None; BODY_SLOTS];
        let by_id = frame.bodies.len() <= BODY_SLOTS
            && frame.bodies.iter().all(|b| (1..=BODY_SLOTS as u64).contains(&b.id))
            && (frame.bodies.len() < 2 || frame.bodies[0].id != frame.bodies[1].id);
        for (i, body) in frame.bodies.iter().enumerate() {
            let slot = if by_id { body.id as usize - 1 } else { i };
            match slots.get_mut(slot) {
                Some(s) => *s = Some(body),
                None => dropped += 1,
            }
        }
        let mut first = true;
        for slot in slots {
            let positions = slot.map_or([[0.0; 3]; NUM_JOINTS], Body::positions);
            for c in positions.iter().flatten() {
                if !first {
                    out.push(' ');
                }
                first = false;
                out.push_str(&c.to_string());
            }
        }
        out.push('\n');
    }
    if dropped > 0 {
        tracing::warn!(path = %path.display(), dropped, "PKU-MMD files hold two bodies per frame: extra bodies not written");
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// One PKU-style label line, `label,start,end[,confidence]` (1-based frames, a trailing comma
/// allowed): the label field as written and the interval, swapped (with a warning) when written
/// backwards.
pub(crate) fn parse_label_line<'a>(at: &At, line: &'a str) -> Result<(&'a str, usize, usize)> {
    let mut fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() == 5 && fields[4].is_empty() {
        fields.pop(); // a trailing comma
    }
    if !(3..=4).contains(&fields.len()) {
        return Err(at.expected(
            "4 comma-separated fields `label,start,end,confidence`",
            format!("{}", fields.len()),
        ));
    }
    let mut start: usize = at.integer(fields[1], "the start frame")?;
    let mut end: usize = at.integer(fields[2], "the end frame")?;
    if let Some(conf) = fields.get(3) {
        at.number(conf, "the confidence")?;
    }
    if start == 0 || end == 0 {
        return Err(
            at.expected("1-based frame numbers (at least 1)", format!("start {start}, end {end}"))
        );
    }
    if start > end {
        tracing::warn!(location = %at.location(), start, end, "label interval with start > end: swapped");
        std::mem::swap(&mut start, &mut end);
    }
    Ok((fields[0], start, end))
}

/// Reads a label file for a recording of `n_frames` frames. Intervals come back in file order.
/// Errors name the file and line: wrong field counts, non-integers, frame 0, intervals that end
/// after the last frame. An empty file is a recording without actions (all background).
pub fn read_labels(path: impl AsRef<Path>, n_frames: usize) -> Result<Vec<Interval>> {
    read_labels_with(path.as_ref(), n_frames, None)
}

/// [`read_labels`] checking class ids against `classes`; with a class map, a label may also be
/// a class name (a file written by hand for a dataset folder).
pub(crate) fn read_labels_with(
    path: &Path,
    n_frames: usize,
    classes: Option<&ClassMap>,
) -> Result<Vec<Interval>> {
    let text = read_text(path)?;
    let mut intervals = Vec::new();
    for (line_no, line) in numbered_lines(&text) {
        if line.trim().is_empty() {
            continue;
        }
        let at = At::new(path, line_no);
        let (label, start, end) = parse_label_line(&at, line)?;
        let class = parse_class(&at, label, classes)?;
        if end > n_frames {
            return Err(at.expected(
                format!("an interval within the recording's frames 1..{n_frames}"),
                format!("{start}..{end}"),
            ));
        }
        intervals.push(Interval { class, start: start - 1, end: end - 1 });
    }
    if intervals.is_empty() {
        tracing::debug!(path = %path.display(), "label file without intervals: all background");
    }
    Ok(intervals)
}

fn parse_class(at: &At<'_>, token: &str, classes: Option<&ClassMap>) -> Result<usize> {
    match (token.parse::<usize>(), classes) {
        (Ok(id), None) => Ok(id),
        (Ok(id), Some(map)) if id < map.len() => Ok(id),
        (Ok(id), Some(map)) => Err(at.expected(
            format!("a class id below {} (the class map's size)", map.len()),
            format!("{id}"),
        )),
        (Err(_), Some(map)) => map.id(token).ok_or_else(|| {
            at.expected(
                "a class id or a class name of the mapping",
                format!("unknown class `{token}`"),
            )
        }),
        (Err(_), None) => Err(at.expected("an integer class id", format!("`{token}`"))),
    }
}

/// Writes intervals as a label file (`class,start+1,end+1,1`; the confidence is written as 1).
pub fn write_labels(path: impl AsRef<Path>, intervals: &[Interval]) -> Result<()> {
    let path = path.as_ref();
    let mut out = Vec::new();
    for iv in intervals {
        if iv.start > iv.end {
            return Err(Error::invalid(
                format!("interval for {}", path.display()),
                format!("expected start <= end, found {}..{}", iv.start, iv.end),
            ));
        }
        writeln!(out, "{},{},{},1", iv.class, iv.start + 1, iv.end + 1)
            .map_err(|e| Error::io(path, e))?;
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// Reads a split file: sections (`Training videos:`, `Validation videos:`) of comma-separated
/// recording names. Sections are keyed `train`, `val`, `test` by their header's first word
/// (other headers: lower-cased, without the trailing `:`).
pub fn read_split(path: impl AsRef<Path>) -> Result<BTreeMap<String, Vec<String>>> {
    let path = path.as_ref();
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(empty_file(path, "a header line such as `Training videos:` and names"));
    }
    let mut splits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (line_no, line) in numbered_lines(&text) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_suffix(':') {
            let key = split_key(header);
            splits.entry(key.clone()).or_default();
            current = Some(key);
            continue;
        }
        let Some(key) = current.as_ref() else {
            return Err(At::new(path, line_no)
                .expected("a header such as `Training videos:`", format!("`{line}`")));
        };
        let names = splits.entry(key.clone()).or_default();
        names.extend(
            line.split([',', ' ', '\t'])
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(splits)
}

/// `Training videos` → `train`, `Validataion videos` → `val`, `Testing videos` → `test`.
fn split_key(header: &str) -> String {
    let lower = header.trim().to_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    if first.starts_with("train") {
        "train".into()
    } else if first.starts_with("val") {
        "val".into()
    } else if first.starts_with("test") {
        "test".into()
    } else {
        lower
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Tracking;

    fn all_tracked(frames: &[Frame]) -> bool {
        frames
            .iter()
            .flat_map(|f| &f.bodies)
            .flat_map(|b| b.joints)
            .all(|j| j.tracking == Tracking::Tracked)
    }

    fn line_with(body1: f32, body2: f32) -> String {
        let mut v = vec![body1; 75];
        v.extend(vec![body2; 75]);
        v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn classes_put_the_interaction_ids_on_two_person_actions() {
        let c = classes();
        assert_eq!(c.len(), 52);
        assert_eq!(c.name(0), Some("background"));
        // data.md §1.4: the loaders' interaction ids.
        for id in [12, 14, 16, 18, 21, 24, 26, 27] {
            let name = c.name(id).unwrap();
            assert!(name.contains("other") || name == "handshaking", "{id}: {name}");
        }
        assert_eq!(c.name(51), Some("writing"));
    }

    #[test]
    fn zero_slots_are_absent_and_time_is_index_over_30() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        std::fs::write(
            &p,
            format!("{}\n{}\n{}\n", line_with(0.5, 0.0), line_with(0.0, 0.25), line_with(0.0, 0.0)),
        )
        .unwrap();
        let frames = read_skeleton(&p).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].bodies.len(), 1);
        assert_eq!(frames[0].bodies[0].id, 1);
        assert_eq!(frames[1].bodies[0].id, 2);
        assert_eq!(frames[1].bodies[0].joints[24].pos, [0.25; 3]);
        assert!(frames[2].bodies.is_empty());
        assert_eq!(frames[2].index, 2);
        assert!((frames[2].timestamp_secs - 2.0 / 30.0).abs() < 1e-12);
        assert!(all_tracked(&frames));
    }

    #[test]
    fn a_short_last_line_is_reported_as_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.txt");
        let full = line_with(0.5, 0.5);
        std::fs::write(&p, format!("{full}\n{}", &full[..100])).unwrap();
        let err = read_skeleton(&p).unwrap_err().to_string();
        assert!(
            err.contains("cut.txt:2:")
                && err.contains("expected 150 numbers")
                && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn labels_swap_reversed_intervals_and_reject_frames_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        std::fs::write(&p, "3,10,20,1\n5,40,30,2\n").unwrap();
        let ivs = read_labels(&p, 50).unwrap();
        assert_eq!(
            ivs,
            [Interval { class: 3, start: 9, end: 19 }, Interval { class: 5, start: 29, end: 39 }]
        );
        let err = read_labels(&p, 35).unwrap_err().to_string();
        assert!(
            err.contains("l.txt:2:") && err.contains("1..35") && err.contains("30..40"),
            "{err}"
        );
    }

    #[test]
    fn split_sections_are_keyed_and_names_collected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cross-view.txt");
        std::fs::write(
            &p,
            "Training videos:\n0002-M, 0002-R, \nValidataion videos:\n0002-L, 0003-L\n",
        )
        .unwrap();
        let s = read_split(&p).unwrap();
        assert_eq!(s["train"], ["0002-M", "0002-R"]);
        assert_eq!(s["val"], ["0002-L", "0003-L"]);
        std::fs::write(&p, "0002-M, 0002-R\n").unwrap();
        let err = read_split(&p).unwrap_err().to_string();
        assert!(err.contains("cross-view.txt:1:") && err.contains("Training videos:"), "{err}");
    }
}
