//! NTU RGB+D raw `.skeleton` files (`shahroudy/NTURGB-D`
//! `Matlab/read_skeleton_file.m`).
//!
//! ```text
//! <frame count>
//! per frame:  <body count>
//!   per body: <bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence
//!              handRightState isRestricted leanX leanY trackingState>
//!             <joint count = 25>
//!             25 × <x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState>
//! ```
//!
//! Kept: body ids, joint positions (metres, Kinect v2 camera space) and per-joint tracking states.
//! The other fields are checked to be numbers and dropped. Frames without bodies stay, empty.
//! File names are `SsssCcccPpppRrrrAaaa`; `Aaaa` is the 1-based action id.

use std::path::Path;

use super::ClassMap;
use super::text::{At, empty_file, numbered_lines, read_text};
use crate::error::{Error, Location, Result};
use crate::frame::{Body, Frame, Joint, NUM_JOINTS, Tracking};

/// Frame rate of NTU RGB+D (Kinect v2).
pub const FPS: f64 = 30.0;
/// More bodies than a Kinect v2 tracks means the file is misaligned.
const MAX_BODIES: usize = 6;

/// The 60 NTU RGB+D action names (A001..A060, Shahroudy et al., CVPR 2016).
pub const ACTIONS: [&str; 60] = [
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
];

/// The NTU RGB+D 60 class map: `background` at 0, action `Aaaa` at id `aaa`.
pub fn classes() -> ClassMap {
    ClassMap::new(std::iter::once("background").chain(ACTIONS).map(str::to_owned).collect())
}

/// The 1-based action id in an NTU file name (`S001C001P001R001A005` → 5).
pub fn action_from_name(name: &str) -> Option<usize> {
    let pos = name.rfind('A')?;
    let digits = name.get(pos + 1..pos + 4)?;
    let well_formed = name.starts_with('S') && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| digits.parse().ok()).flatten().filter(|&a| a > 0)
}

/// Reads a `.skeleton` file; frame `k` has index `k` and timestamp `k / 30` s.
///
/// Errors name the file and line and, inside a frame, the frame, body and joint: counts that
/// are not numbers, a joint count other than 25, joint lines without 12 numbers, non-finite
/// positions, tracking states outside 0..=2, a file that ends early or has data after the last
/// frame.
pub fn read_skeleton(path: impl AsRef<Path>) -> Result<Vec<Frame>> {
    let path = path.as_ref();
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(empty_file(path, "a frame count"));
    }
    let mut lines = Lines { path, inner: Box::new(numbered_lines(&text)), last: 0 };

    let (at, line) = lines.next("the frame count")?;
    let frame_count: usize = at.integer(line.trim(), "the frame count")?;
    let mut frames = Vec::with_capacity(frame_count.min(100_000));
    for f in 0..frame_count {
        let (at, line) = lines.next(&format!("the body count of frame {f} of {frame_count}"))?;
        let body_count: usize = at.integer(line.trim(), format!("the body count of frame {f}"))?;
        if body_count > MAX_BODIES {
            return Err(at.err_in(
                format!("frame {f}"),
                format!("a body count of at most {MAX_BODIES}"),
                format!("{body_count}"),
            ));
        }
        let mut bodies = Vec::with_capacity(body_count);
        for b in 0..body_count {
            bodies.push(read_body(&mut lines, f, b)?);
        }
        frames.push(Frame { index: f as u64, timestamp_secs: f as f64 / FPS, bodies });
    }
    if let Some((at, extra)) = lines.next_non_blank() {
        return Err(at.expected(
            format!("the end of the file after {frame_count} frames"),
            format!("`{}`", extra.chars().take(40).collect::<String>()),
        ));
    }
    Ok(frames)
}

fn read_body(lines: &mut Lines<'_, '_>, f: usize, b: usize) -> Result<Body> {
    let (at, line) = lines.next(&format!("the info line of body {b} of frame {f}"))?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() != 10 {
        return Err(at.err_in(format!("frame {f}, body {b}"), "10 values (bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence handRightState isRestricted leanX leanY trackingState)", format!("{}", fields.len())));
    }
    let id: u64 = at.integer(fields[0], format!("the body id of frame {f}, body {b}"))?;
    for (k, token) in fields.iter().enumerate().skip(1) {
        at.number(token, format!("body info value {} of frame {f}, body {b}", k + 1))?;
    }
    let (at, line) = lines.next(&format!("the joint count of frame {f}, body {b}"))?;
    let joint_count: usize =
        at.integer(line.trim(), format!("the joint count of frame {f}, body {b}"))?;
    if joint_count != NUM_JOINTS {
        return Err(at.err_in(
            format!("frame {f}, body {b}"),
            format!("a joint count of {NUM_JOINTS}"),
            format!("{joint_count}"),
        ));
    }
    let mut joints = [Joint::default(); NUM_JOINTS];
    for (j, joint) in joints.iter_mut().enumerate() {
        let (at, line) = lines.next(&format!("joint {j} of frame {f}, body {b}"))?;
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() != 12 {
            return Err(at.err_in(format!("frame {f}, body {b}, joint {j}"), "12 values (x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState)", format!("{}", fields.len())));
        }
        let mut pos = [0.0f32; 3];
        for (k, c) in pos.iter_mut().enumerate() {
            *c = at.finite_f32(
                fields[k],
                format_args!("{} of frame {f}, body {b}, joint {j}", ["x", "y", "z"][k]),
            )?;
        }
        for (k, token) in fields.iter().enumerate().take(11).skip(3) {
            at.number(token, format_args!("value {} of frame {f}, body {b}, joint {j}", k + 1))?;
        }
        let code: i64 = at.integer(
            fields[11],
            format_args!("the tracking state of frame {f}, body {b}, joint {j}"),
        )?;
        let tracking = Tracking::from_code(code).ok_or_else(|| {
            at.err_in(
                format!("frame {f}, body {b}, joint {j}"),
                "a tracking state 0, 1 or 2",
                format!("{code}"),
            )
        })?;
        *joint = Joint { pos, tracking };
    }
    Ok(Body { id, joints })
}

/// Non-blank lines with their numbers, remembering the last one for end-of-file errors.
struct Lines<'p, 't> {
    path: &'p Path,
    inner: Box<dyn Iterator<Item = (usize, &'t str)> + 't>,
    last: usize,
}

impl<'p, 't> Lines<'p, 't> {
    fn next_non_blank(&mut self) -> Option<(At<'p>, &'t str)> {
        let (n, line) = self.inner.by_ref().find(|(_, l)| !l.trim().is_empty())?;
        self.last = n;
        Some((At::new(self.path, n), line))
    }

    /// The next line, or an end-of-file error saying what was `expected`.
    fn next(&mut self, expected: &str) -> Result<(At<'p>, &'t str)> {
        self.next_non_blank().ok_or_else(|| {
            Error::parse(
                Location::file_line(self.path, (self.last + 1) as u64),
                expected,
                "end of file (truncated?)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_come_from_the_file_name() {
        assert_eq!(action_from_name("S001C001P001R001A005"), Some(5));
        assert_eq!(action_from_name("S017C003P020R002A120"), Some(120));
        assert_eq!(action_from_name("walk"), None);
        assert_eq!(action_from_name("S001C001P001R001A0x1"), None);
        let c = classes();
        assert_eq!(c.len(), 61);
        assert_eq!(c.name(1), Some("drink water"));
        assert_eq!(c.name(5), Some("drop"));
        assert_eq!(c.name(60), Some("walking apart from each other"));
    }

    fn joint_line(x: f32, state: u8) -> String {
        format!("{x} 0.1 3.5 277 191 1036 519 -0.2 0.05 0.97 -0.12 {state}")
    }

    fn file(frames: &[usize]) -> String {
        let mut s = format!("{}\n", frames.len());
        for &bodies in frames {
            s += &format!("{bodies}\n");
            for b in 0..bodies {
                s += &format!("{} 0 1 1 1 1 0 0.02 0.05 2\n25\n", 100 + b);
                for j in 0..25 {
                    s += &joint_line(j as f32, (j % 3) as u8);
                    s.push('\n');
                }
            }
        }
        s
    }

    #[test]
    fn bodies_ids_tracking_and_empty_frames_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("S001C001P001R001A001.skeleton");
        std::fs::write(&p, file(&[1, 0, 2])).unwrap();
        let frames = read_skeleton(&p).unwrap();
        assert_eq!(frames.iter().map(|f| f.bodies.len()).collect::<Vec<_>>(), [1, 0, 2]);
        assert_eq!(frames[2].bodies[1].id, 101);
        assert_eq!(frames[0].bodies[0].joints[4].pos, [4.0, 0.1, 3.5]);
        assert_eq!(frames[0].bodies[0].joints[4].tracking, Tracking::Inferred);
        assert_eq!(frames[0].bodies[0].joints[3].tracking, Tracking::NotTracked);
    }

    #[test]
    fn a_file_that_ends_inside_a_frame_says_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.skeleton");
        let full = file(&[1, 1]);
        let cut: String = full.lines().take(30).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, cut).unwrap();
        let err = read_skeleton(&p).unwrap_err().to_string();
        assert!(
            err.contains("cut.skeleton:31:")
                && err.contains("end of file")
                && err.contains("frame 1"),
            "{err}"
        );
    }

    #[test]
    fn bad_tracking_state_and_joint_count_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.skeleton");
        std::fs::write(&p, file(&[1]).replacen("\n25\n", "\n24\n", 1)).unwrap();
        let err = read_skeleton(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.skeleton:4:") && err.contains("joint count of 25, found 24"),
            "{err}"
        );
        let text = file(&[1]);
        let bad_state = text.replacen(&joint_line(2.0, 2), &joint_line(2.0, 7), 1);
        std::fs::write(&p, bad_state).unwrap();
        let err = read_skeleton(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.skeleton:7:") && err.contains("tracking state 0, 1 or 2, found 7"),
            "{err}"
        );
    }
}
