//! File formats: recordings, label files and datasets.
//!
//! Every reader returns located errors ([`crate::Error::Parse`] with `path:line`) and never
//! panics on malformed input.

pub mod dataset;
pub mod gt;
pub mod labels;
pub mod ndjson;
pub mod ntu;
pub mod pku;
mod text;
pub mod utkinect;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::skeleton::Layout;
use text::{At, empty_file, numbered_lines, read_text};

/// A labelled interval of frames, both ends inclusive, 0-based frame positions within the
/// recording's `frames`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Class id in the recording's [`ClassMap`] (0 is background).
    pub class: usize,
    /// First frame.
    pub start: usize,
    /// Last frame (inclusive).
    pub end: usize,
}

/// Class names by id. Id 0 is the background class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassMap {
    names: Vec<String>,
}

impl ClassMap {
    /// From names in id order; `names[0]` is the background class.
    pub fn new(names: Vec<String>) -> Self {
        ClassMap { names }
    }

    /// Number of classes, background included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there is no class at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Name of class `id`.
    pub fn name(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// Id of the class called `name`.
    pub fn id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// All names in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A recording read from a file (or generated), in canonical layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// Name (file stem), used for prediction files and reports.
    pub name: String,
    /// Layout the source file was in before mapping to canonical.
    pub source_layout: Layout,
    /// Nominal frame rate.
    pub fps: f64,
    /// The frames, in time order.
    pub frames: Vec<Frame>,
    /// Labelled intervals, when the recording has labels.
    pub intervals: Option<Vec<Interval>>,
}

impl Recording {
    /// Per-frame class ids (0 = background where no interval covers a frame; where intervals
    /// overlap, the later one in the list wins). `None` when the recording has no labels.
    pub fn frame_labels(&self) -> Option<Vec<usize>> {
        let intervals = self.intervals.as_ref()?;
        let mut labels = vec![0; self.frames.len()];
        for iv in intervals {
            let end = iv.end.min(self.frames.len().saturating_sub(1));
            for l in labels.iter_mut().take(end + 1).skip(iv.start) {
                *l = iv.class;
            }
        }
        Some(labels)
    }
}

/// A labelled dataset: recordings sharing one class map, plus named splits of recording names.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Class names (id 0 background).
    pub classes: ClassMap,
    /// The recordings.
    pub recordings: Vec<Recording>,
    /// Split name (`train`, `val`, `test`, ...) → recording names.
    pub splits: std::collections::BTreeMap<String, Vec<String>>,
}

/// Reads one recording, choosing the format by extension and content:
///
/// * `.skeleton` → NTU RGB+D (labelled with the action of its file name);
/// * `.txt` named `joints_*` or with 61 numbers per line → UTKinect-Action3D, labelled from the
///   `actionLabel.txt` beside it or one folder up when there is one;
/// * `.txt` with 150 numbers per line → PKU-MMD, labelled from `../label/NAME.txt` (or PKU-MMD's
///   own label folders) when there is one;
/// * `.ndjson` / `.jsonl` → `skeleton-ndjson/1` ([`ndjson::read_recording`]).
pub fn read_recording(path: impl AsRef<Path>) -> Result<Recording> {
    let path = path.as_ref();
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("skeleton") => dataset::read_ntu_clip(path),
        Some("ndjson" | "jsonl") => ndjson::read_recording(path),
        Some("txt") if utkinect::take_name(path).is_some() => dataset::read_utkinect_file(path),
        Some("txt") => {
            let text = read_text(path)?;
            let Some((line_no, first)) = numbered_lines(&text).find(|(_, l)| !l.trim().is_empty())
            else {
                return Err(empty_file(path, "lines of 150 (PKU-MMD) or 61 (UTKinect) numbers"));
            };
            match first.split_ascii_whitespace().count() {
                pku::FLOATS_PER_LINE => dataset::read_pku_file(path, &text),
                utkinect::VALUES_PER_ROW => dataset::read_utkinect_file(path),
                n => Err(At::new(path, line_no).expected(
                    format!(
                        "{} numbers per line (PKU-MMD) or {} (UTKinect-Action3D)",
                        pku::FLOATS_PER_LINE,
                        utkinect::VALUES_PER_ROW
                    ),
                    format!("{n}"),
                )),
            }
        }
        _ => Err(Error::invalid(
            "recording format",
            format!(
                "{}: expected a .skeleton (NTU), .txt (PKU-MMD, UTKinect) or .ndjson file",
                path.display()
            ),
        )),
    }
}
