//! Dataset folders and single recordings, whatever their format.
//!
//! The training-data convention (what [`write_dataset`] writes and [`DatasetFormat::Pku`] reads):
//!
//! ```text
//! DIR/skeleton/NAME.EXT   one recording: PKU-MMD `.txt` (150 floats per line), NTU RGB+D
//!                         `.skeleton`, or `skeleton-ndjson/1` `.ndjson` in any layout its header
//!                         names (mapped to the canonical 25 joints as streaming maps it);
//!                         formats may be mixed, names must be unique
//! DIR/label/NAME.txt|csv  its labels, any format of `crate::io::labels`: `class,start,end[,conf]`
//!                         (1-based frames, class id or name), `label,start_s,end_s` with that
//!                         header (seconds from the first frame), or one class name per frame
//! DIR/mapping.txt         `id name` per line, ids 0..n-1, 0 = background; without it the
//!                         classes are the label names (sorted, `background` at 0), or
//!                         PKU-MMD's when the labels use ids only
//! DIR/splits/NAME.txt     recording names of split NAME, one per line
//! ```
//!
//! Recordings keep their own frame rate ([`Recording::fps`]); training and evaluation put them
//! on the model's rate with [`crate::resample`]. Unlabelled frames are background. Problems
//! (an unreadable file, an interval past the end, overlapping intervals, an unknown class name,
//! an empty recording) are located; [`read_dataset`] fails listing all of them,
//! [`scan_dataset`] returns them beside the readable part.
//!
//! PKU-MMD in its original layout reads too: skeletons in `PKU_Skeleton_Renew/`, labels in
//! `Train_Label_PKU_final/` (or `Label_PKUMMD/`), split files in `Split/` (sections keyed
//! `FILE/train`, `FILE/val`), and the built-in 52-class map when there is no `mapping.txt`.
//! UTKinect-Action3D is read from its folder (`joints/` with `actionLabel.txt`), NTU RGB+D from a
//! folder of `.skeleton` files (each clip one interval of its action). Split names that are not
//! recordings of the folder are dropped with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::labels::{LabelFile, LabelFormat, Overlaps, classes_from_names, read_label_file};
use super::text::{At, empty_file, numbered_lines, read_text};
use super::{ClassMap, Dataset, Interval, Recording, ntu, pku, utkinect};
use crate::error::{Error, Location, Result};
use crate::skeleton::Layout;

/// Skeleton folder names, convention first, then PKU-MMD's own.
const SKELETON_DIRS: [&str; 4] = ["skeleton", "PKU_Skeleton_Renew", "Skeleton", "SKELETON_VIDEO"];
/// Label folder names, convention first, then PKU-MMD's own (phase 1 and 2).
const LABEL_DIRS: [&str; 4] = ["label", "Train_Label_PKU_final", "Label_PKUMMD", "Label_PKUMMD_v2"];
/// Split folder names.
const SPLIT_DIRS: [&str; 2] = ["splits", "Split"];
/// Class map file of the convention.
pub const MAPPING_FILE: &str = "mapping.txt";

/// Which kind of dataset folder [`read_dataset`] reads.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetFormat {
    /// skeleton/ + label/ + mapping.txt + splits/ (PKU-MMD layout; what `skelseg synth` writes).
    ///
    /// The convention folder, or PKU-MMD in its original layout.
    Pku,
    /// UTKinect-Action3D: joints/ + actionLabel.txt.
    ///
    /// `joints/joints_sNN_eMM.txt` + `actionLabel.txt`.
    Utkinect,
    /// NTU RGB+D .skeleton files (action id from the file name).
    ///
    /// A folder of NTU RGB+D `.skeleton` clips.
    Ntu,
}

impl FromStr for DatasetFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pku" | "pku_mmd" | "pku-mmd" => Ok(DatasetFormat::Pku),
            "utkinect" | "utkinect_action3d" | "utkinect-action3d" => Ok(DatasetFormat::Utkinect),
            "ntu" | "ntu_rgbd" | "ntu-rgbd" => Ok(DatasetFormat::Ntu),
            other => Err(Error::invalid(
                "dataset format",
                format!("expected pku, utkinect or ntu, found `{other}`"),
            )),
        }
    }
}

/// Reads a dataset folder (see the [module docs](self)); recordings come sorted by name.
pub fn read_dataset(dir: impl AsRef<Path>, format: DatasetFormat) -> Result<Dataset> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::invalid(
            "dataset folder",
            format!("{}: expected a folder, found none", dir.display()),
        ));
    }
    let mapping = dir.join(MAPPING_FILE);
    let classes_or = |builtin: fn() -> ClassMap| {
        if mapping.is_file() { read_mapping(&mapping) } else { Ok(builtin()) }
    };
    let (classes, recordings) = match format {
        DatasetFormat::Pku => {
            let scan = scan_dataset(dir, format)?;
            if !scan.problems.is_empty() {
                if scan.problems.len() == 1 {
                    let mut problems = scan.problems;
                    return Err(problems.remove(0));
                }
                let list: Vec<String> = scan.problems.iter().map(|p| format!("  - {p}")).collect();
                return Err(Error::invalid(
                    "dataset folder",
                    format!(
                        "{}: {} problems (`skelseg check --data` lists them too):\n{}",
                        dir.display(),
                        scan.problems.len(),
                        list.join("\n")
                    ),
                ));
            }
            tracing::info!(dir = %dir.display(), recordings = scan.dataset.recordings.len(), classes = scan.dataset.classes.len(), splits = scan.dataset.splits.len(), "dataset read");
            return Ok(scan.dataset);
        }
        DatasetFormat::Utkinect => (classes_or(utkinect::classes)?, read_utkinect_recordings(dir)?),
        DatasetFormat::Ntu => {
            let classes = classes_or(ntu::classes)?;
            let recordings = read_ntu_recordings(dir, &classes)?;
            (classes, recordings)
        }
    };
    let splits = match first_dir(dir, &SPLIT_DIRS) {
        Some(split_dir) => read_splits(&split_dir, &recordings)?,
        None => BTreeMap::new(),
    };
    tracing::info!(dir = %dir.display(), ?format, recordings = recordings.len(), classes = classes.len(), splits = splits.len(), "dataset read");
    Ok(Dataset { classes, recordings, splits })
}

fn first_dir(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_dir())
}

/// Files of `dir` whose name ends in `.ext`, sorted.
fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let matches =
            path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case(ext));
        if matches && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Skeleton file extensions a convention folder's `skeleton/` may mix.
const SKELETON_EXTS: [&str; 4] = ["txt", "skeleton", "ndjson", "jsonl"];
/// Label file extensions, in the order they are looked for.
const LABEL_EXTS: [&str; 2] = ["txt", "csv"];

/// A dataset folder read with every problem collected rather than stopping at the first:
/// what [`read_dataset`] and `skelseg check` build on. Recordings with a problem are left out of
/// `dataset` (and named in `problems`).
#[derive(Debug)]
pub struct FolderScan {
    /// The readable part of the folder.
    pub dataset: Dataset,
    /// Every problem found, each located (file:line where there is one).
    pub problems: Vec<Error>,
    /// How each labelled recording's labels were written, by recording name.
    pub label_formats: BTreeMap<String, LabelFormat>,
}

/// Reads a dataset folder like [`read_dataset`], but collects problems with single recordings
/// (unreadable files, bad labels, empty recordings) instead of failing; only a folder that
/// cannot be read at all is an error.
pub fn scan_dataset(dir: impl AsRef<Path>, format: DatasetFormat) -> Result<FolderScan> {
    let dir = dir.as_ref();
    if format != DatasetFormat::Pku {
        let dataset = read_dataset(dir, format)?;
        return Ok(FolderScan { dataset, problems: Vec::new(), label_formats: BTreeMap::new() });
    }
    if !dir.is_dir() {
        return Err(Error::invalid(
            "dataset folder",
            format!("{}: expected a folder, found none", dir.display()),
        ));
    }
    let mut problems = Vec::new();
    let mapping = dir.join(MAPPING_FILE);
    let mapping = if mapping.is_file() {
        match read_mapping(&mapping) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(e);
                None
            }
        }
    } else {
        None
    };
    let (recordings, label_formats) = read_convention_recordings(dir, mapping, &mut problems)?;
    let (classes, recordings) = recordings;
    let splits = match first_dir(dir, &SPLIT_DIRS) {
        Some(split_dir) => read_splits(&split_dir, &recordings)?,
        None => BTreeMap::new(),
    };
    Ok(FolderScan { dataset: Dataset { classes, recordings, splits }, problems, label_formats })
}

type Readings = ((ClassMap, Vec<Recording>), BTreeMap<String, LabelFormat>);

/// The convention folder: skeletons of any format under `skeleton/`, labels of any format
/// under `label/` (see [`crate::io::labels`]), classes from `mapping.txt`, else from the label
/// names, else PKU-MMD's.
fn read_convention_recordings(
    dir: &Path,
    mapping: Option<ClassMap>,
    problems: &mut Vec<Error>,
) -> Result<Readings> {
    let Some(skeleton_dir) = first_dir(dir, &SKELETON_DIRS) else {
        return Err(Error::invalid(
            "dataset folder",
            format!(
                "{}: expected a skeleton folder ({}), found none",
                dir.display(),
                SKELETON_DIRS.join(", ")
            ),
        ));
    };
    let label_dir = first_dir(dir, &LABEL_DIRS);
    // PKU-MMD's own label files overlap in a few places; hand-written ones must not.
    let overlaps = match &label_dir {
        Some(d) if !d.ends_with(LABEL_DIRS[0]) => Overlaps::LaterWins,
        _ => Overlaps::Refuse,
    };
    let mut paths = Vec::new();
    for ext in SKELETON_EXTS {
        paths.extend(files_with_ext(&skeleton_dir, ext)?);
    }
    paths.sort();
    let mut read: Vec<(Recording, Option<LabelFile>)> = Vec::new();
    let mut names = BTreeSet::new();
    for path in paths {
        let recording = match read_skeleton_file(&path) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !names.insert(recording.name.clone()) {
            problems.push(Error::invalid(
                "dataset folder",
                format!(
                    "{}: a second recording named `{}` (names must be unique across formats): left out",
                    path.display(),
                    recording.name
                ),
            ));
            continue;
        }
        if recording.frames.is_empty() {
            problems.push(Error::parse(Location::file(path), "frames", "an empty recording"));
            continue;
        }
        let label_path = label_dir.as_ref().and_then(|d| {
            LABEL_EXTS
                .iter()
                .map(|e| d.join(format!("{}.{e}", recording.name)))
                .find(|p| p.is_file())
        });
        let labels = match label_path {
            Some(p) => match read_label_file(&p) {
                Ok(l) => Some(l),
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            },
            None => {
                if label_dir.is_some() {
                    tracing::warn!(recording = %recording.name, "recording without a label file: unlabelled");
                }
                None
            }
        };
        read.push((recording, labels));
    }
    let classes = match mapping {
        Some(m) => m,
        None => {
            let named: Vec<&str> =
                read.iter().filter_map(|(_, l)| l.as_ref()).flat_map(|l| l.class_names()).collect();
            if named.is_empty() { pku::classes() } else { classes_from_names(named) }
        }
    };
    let mut recordings = Vec::with_capacity(read.len());
    let mut formats = BTreeMap::new();
    for (mut recording, labels) in read {
        if let Some(labels) = labels {
            match labels.resolve(&classes, &recording, overlaps) {
                Ok(intervals) => {
                    formats.insert(recording.name.clone(), labels.format);
                    recording.intervals = Some(intervals);
                }
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            }
        }
        recordings.push(recording);
    }
    Ok(((classes, recordings), formats))
}

/// One skeleton file of a convention folder, unlabelled, by extension: PKU-MMD `.txt`, NTU
/// `.skeleton`, `skeleton-ndjson/1` `.ndjson`/`.jsonl` (any layout, mapped to the canonical 25).
fn read_skeleton_file(path: &Path) -> Result<Recording> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("skeleton") => Ok(Recording {
            name: stem(path),
            source_layout: Layout::KinectV2_25,
            fps: ntu::FPS,
            frames: ntu::read_skeleton(path)?,
            intervals: None,
        }),
        Some("ndjson" | "jsonl") => {
            let mut r = crate::io::ndjson::read_recording(path)?;
            r.intervals = None;
            Ok(r)
        }
        _ => Ok(Recording {
            name: stem(path),
            source_layout: Layout::KinectV2_25,
            fps: pku::FPS,
            frames: pku::read_skeleton(path)?,
            intervals: None,
        }),
    }
}

fn read_utkinect_recordings(dir: &Path) -> Result<Vec<Recording>> {
    let joints_dir =
        if dir.join("joints").is_dir() { dir.join("joints") } else { dir.to_path_buf() };
    let label_path = [dir.join(utkinect::LABEL_FILE), joints_dir.join(utkinect::LABEL_FILE)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::invalid(
                "dataset folder",
                format!(
                    "{}: expected {} in it or in joints/, found none",
                    dir.display(),
                    utkinect::LABEL_FILE
                ),
            )
        })?;
    let labels = utkinect::read_action_labels(&label_path)?;
    let mut recordings = Vec::new();
    for path in files_with_ext(&joints_dir, "txt")? {
        if utkinect::take_name(&path).is_none() {
            continue; // actionLabel.txt and other notes
        }
        let take = utkinect::read_joints(&path)?;
        let Some(ranges) = labels.get(&take.name) else {
            return Err(Error::parse(
                Location::file(&label_path),
                format!("labels for take `{}` ({})", take.name, path.display()),
                "none",
            ));
        };
        let intervals = utkinect::intervals_for_take(&take, ranges, &label_path)?;
        recordings.push(Recording {
            name: take.name,
            source_layout: Layout::KinectV1_20,
            fps: utkinect::FPS,
            frames: take.frames,
            intervals: Some(intervals),
        });
    }
    Ok(recordings)
}

fn read_ntu_recordings(dir: &Path, classes: &ClassMap) -> Result<Vec<Recording>> {
    let clip_dir =
        if dir.join("skeleton").is_dir() { dir.join("skeleton") } else { dir.to_path_buf() };
    let mut recordings = Vec::new();
    for path in files_with_ext(&clip_dir, "skeleton")? {
        let recording = read_ntu_clip(&path)?;
        if let Some(iv) = recording.intervals.as_ref().and_then(|v| v.first())
            && iv.class >= classes.len()
        {
            return Err(Error::invalid(
                format!("NTU clip {}", path.display()),
                format!(
                    "expected an action id below {} (the class map's size; add a {MAPPING_FILE} for NTU-120), found A{:03}",
                    classes.len(),
                    iv.class
                ),
            ));
        }
        recordings.push(recording);
    }
    Ok(recordings)
}

/// One NTU clip: its action (from the name) covers every frame.
pub(super) fn read_ntu_clip(path: &Path) -> Result<Recording> {
    let name = stem(path);
    let frames = ntu::read_skeleton(path)?;
    let intervals = match ntu::action_from_name(&name) {
        Some(class) if !frames.is_empty() => {
            Some(vec![Interval { class, start: 0, end: frames.len() - 1 }])
        }
        _ => {
            tracing::warn!(path = %path.display(), "no action id in the NTU file name: unlabelled");
            None
        }
    };
    Ok(Recording { name, source_layout: Layout::KinectV2_25, fps: ntu::FPS, frames, intervals })
}

/// Reads every split file of `split_dir`; names that are not recordings are dropped (warned).
fn read_splits(
    split_dir: &Path,
    recordings: &[Recording],
) -> Result<BTreeMap<String, Vec<String>>> {
    let known: BTreeSet<&str> = recordings.iter().map(|r| r.name.as_str()).collect();
    let mut splits = BTreeMap::new();
    for path in files_with_ext(split_dir, "txt")? {
        for (key, names) in read_split_file(&path)? {
            let total = names.len();
            let kept: Vec<String> =
                names.into_iter().filter(|n| known.contains(n.as_str())).collect();
            if kept.len() < total {
                tracing::warn!(split = %key, dropped = total - kept.len(), kept = kept.len(), "split names without a recording in the folder dropped");
            }
            splits.insert(key, kept);
        }
    }
    Ok(splits)
}

/// Reads one split file: a list of names one per line (keyed by the file stem), or a PKU-MMD
/// split file with `Training videos:` style sections (keyed `STEM/train`, `STEM/val`, ...).
pub fn read_split_file(path: impl AsRef<Path>) -> Result<BTreeMap<String, Vec<String>>> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let name = stem(path);
    let sectioned = text.lines().any(|l| l.trim_end().ends_with(':'));
    if sectioned {
        let sections = pku::read_split(path)?;
        return Ok(sections.into_iter().map(|(k, v)| (format!("{name}/{k}"), v)).collect());
    }
    let names = numbered_lines(&text)
        .flat_map(|(_, l)| l.split([',', ' ', '\t']))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(BTreeMap::from([(name, names)]))
}

/// Reads a `mapping.txt`: `id name` per line, ids exactly 0..n-1 (any order), names unique.
pub fn read_mapping(path: impl AsRef<Path>) -> Result<ClassMap> {
    let path = path.as_ref();
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(empty_file(path, "`id name` lines"));
    }
    let mut by_id: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    for (line_no, line) in numbered_lines(&text) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = At::new(path, line_no);
        let (id, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let id: usize = at.integer(id, "the class id")?;
        let name = name.trim();
        if name.is_empty() {
            return Err(at.expected("`id name`", format!("`{line}`")));
        }
        if let Some((_, first)) = by_id.get(&id) {
            return Err(
                at.expected("each id once", format!("id {id} again (first on line {first})"))
            );
        }
        if let Some((other, (_, first))) = by_id.iter().find(|(_, (n, _))| n == name) {
            return Err(
                at.expected("unique names", format!("`{name}` again (id {other}, line {first})"))
            );
        }
        by_id.insert(id, (name.to_owned(), line_no));
    }
    if let Some(missing) = (0..by_id.len()).find(|i| !by_id.contains_key(i)) {
        return Err(Error::parse(
            Location::file(path),
            format!("ids 0..{} without gaps", by_id.len() - 1),
            format!("no id {missing}"),
        ));
    }
    Ok(ClassMap::new(by_id.into_values().map(|(n, _)| n).collect()))
}

/// Writes a `mapping.txt`.
pub fn write_mapping(path: impl AsRef<Path>, classes: &ClassMap) -> Result<()> {
    let path = path.as_ref();
    let mut out = String::new();
    for (id, name) in classes.names().iter().enumerate() {
        if name.trim().is_empty() || name.contains(['\n', '\r']) || name.trim() != name {
            return Err(Error::invalid(
                format!("class {id}"),
                format!("expected a one-line name without surrounding blanks, found {name:?}"),
            ));
        }
        out += &format!("{id} {name}\n");
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// A recording or split name must be usable as a file name.
fn check_file_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.trim() != name
        || name.contains(['/', '\\', '\n', '\r', ',', ':']);
    if bad {
        return Err(Error::invalid(
            format!("{kind} name"),
            format!(
                "expected a plain file name (no separators, commas, colons or surrounding blanks), found {name:?}"
            ),
        ));
    }
    Ok(())
}

/// Writes `dataset` as a convention folder under `dir` (created if needed; existing files of
/// the same names are overwritten). Recordings without intervals get no label file. Errors:
/// names that are not plain file names, duplicate names, intervals whose class is not in the
/// class map, and I/O.
pub fn write_dataset(dir: impl AsRef<Path>, dataset: &Dataset) -> Result<()> {
    let dir = dir.as_ref();
    let mut seen = BTreeSet::new();
    for r in &dataset.recordings {
        check_file_name("recording", &r.name)?;
        if !seen.insert(r.name.as_str()) {
            return Err(Error::invalid(
                "recording name",
                format!("expected unique names, found `{}` twice", r.name),
            ));
        }
        if let Some(iv) = r.intervals.iter().flatten().find(|iv| iv.class >= dataset.classes.len())
        {
            return Err(Error::invalid(
                format!("recording {}", r.name),
                format!("expected class ids below {}, found {}", dataset.classes.len(), iv.class),
            ));
        }
    }
    for split in dataset.splits.keys() {
        check_file_name("split", split)?;
    }
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| Error::io(p, e));
    let (skeleton_dir, label_dir) = (dir.join("skeleton"), dir.join("label"));
    mkdir(&skeleton_dir)?;
    mkdir(&label_dir)?;
    write_mapping(dir.join(MAPPING_FILE), &dataset.classes)?;
    for r in &dataset.recordings {
        pku::write_skeleton(skeleton_dir.join(format!("{}.txt", r.name)), &r.frames)?;
        if let Some(intervals) = &r.intervals {
            pku::write_labels(label_dir.join(format!("{}.txt", r.name)), intervals)?;
        }
    }
    if !dataset.splits.is_empty() {
        let split_dir = dir.join("splits");
        mkdir(&split_dir)?;
        for (split, names) in &dataset.splits {
            let path = split_dir.join(format!("{split}.txt"));
            let text: String = names.iter().map(|n| format!("{n}\n")).collect();
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Writes `dataset` the way a user's own data often looks: `skeleton/NAME.ndjson` in `layout`
/// (Kinect v2 25 or MediaPipe 33, see [`crate::io::ndjson::encode_frame_in`]) at each
/// recording's own rate, `label/NAME.csv` time-based (`label,start_s,end_s`, class names), the
/// splits, and no `mapping.txt` (the classes come from the label names when read back).
pub fn write_dataset_ndjson(
    dir: impl AsRef<Path>,
    dataset: &Dataset,
    layout: Layout,
) -> Result<()> {
    use std::io::Write as _;
    let dir = dir.as_ref();
    for r in &dataset.recordings {
        check_file_name("recording", &r.name)?;
    }
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| Error::io(p, e));
    let (skeleton_dir, label_dir) = (dir.join("skeleton"), dir.join("label"));
    mkdir(&skeleton_dir)?;
    mkdir(&label_dir)?;
    for r in &dataset.recordings {
        let path = skeleton_dir.join(format!("{}.ndjson", r.name));
        let header = crate::io::ndjson::Header {
            layout,
            joint_names: Some(layout.joint_names().iter().map(|n| n.to_string()).collect()),
            ..crate::io::ndjson::Header::canonical(Some(r.fps))
        };
        let mut out = String::new();
        out += &crate::io::ndjson::encode_header(&header);
        out.push('\n');
        for frame in &r.frames {
            let Some(line) = crate::io::ndjson::encode_frame_in(frame, layout) else {
                return Err(Error::invalid(
                    "layout",
                    format!("expected kinect_v2_25 or mediapipe_33 to write, found {layout}"),
                ));
            };
            out += &line;
            out.push('\n');
        }
        std::fs::write(&path, out).map_err(|e| Error::io(&path, e))?;
        let Some(intervals) = &r.intervals else { continue };
        let path = label_dir.join(format!("{}.csv", r.name));
        let t0 = r.frames.first().map_or(0.0, |f| f.timestamp_secs);
        let mut out = Vec::new();
        let mut write = || -> std::io::Result<()> {
            writeln!(out, "label,start_s,end_s")?;
            for iv in intervals {
                let name = dataset.classes.name(iv.class).unwrap_or("?");
                let t = |i: usize| r.frames.get(i).map_or(0.0, |f| f.timestamp_secs - t0);
                writeln!(out, "{name},{:.3},{:.3}", t(iv.start), t(iv.end))?;
            }
            Ok(())
        };
        write().map_err(|e| Error::io(&path, e))?;
        std::fs::write(&path, out).map_err(|e| Error::io(&path, e))?;
    }
    if !dataset.splits.is_empty() {
        let split_dir = dir.join("splits");
        mkdir(&split_dir)?;
        for (split, names) in &dataset.splits {
            check_file_name("split", split)?;
            let path = split_dir.join(format!("{split}.txt"));
            let text: String = names.iter().map(|n| format!("{n}\n")).collect();
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

pub(super) fn read_pku_file(path: &Path, text: &str) -> Result<Recording> {
    let frames = pku::parse_skeleton(text, path)?;
    let name = stem(path);
    let label = path.parent().and_then(Path::parent).and_then(|root| {
        LABEL_DIRS.iter().map(|d| root.join(d).join(format!("{name}.txt"))).find(|p| p.is_file())
    });
    let intervals = match label {
        Some(l) => Some(pku::read_labels(&l, frames.len())?),
        None => None,
    };
    Ok(Recording { name, source_layout: Layout::KinectV2_25, fps: pku::FPS, frames, intervals })
}

pub(super) fn read_utkinect_file(path: &Path) -> Result<Recording> {
    let labels = utkinect::find_action_labels(path);
    utkinect::read_take(path, labels.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_requires_ids_without_gaps_and_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(MAPPING_FILE);
        std::fs::write(&p, "1 walk fast\n0 background\n").unwrap();
        let map = read_mapping(&p).unwrap();
        assert_eq!(map.names(), ["background", "walk fast"]);
        std::fs::write(&p, "0 background\n2 walk\n").unwrap();
        let err = read_mapping(&p).unwrap_err().to_string();
        assert!(err.contains("mapping.txt") && err.contains("no id 1"), "{err}");
        std::fs::write(&p, "0 background\n1 background\n").unwrap();
        let err = read_mapping(&p).unwrap_err().to_string();
        assert!(err.contains("mapping.txt:2:") && err.contains("`background` again"), "{err}");
        std::fs::write(&p, "0 background\nx walk\n").unwrap();
        let err = read_mapping(&p).unwrap_err().to_string();
        assert!(err.contains("mapping.txt:2:") && err.contains("found `x`"), "{err}");
    }

    #[test]
    fn split_files_come_as_lists_or_pku_sections() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("train.txt");
        std::fs::write(&list, "a\nb\n\n").unwrap();
        assert_eq!(read_split_file(&list).unwrap()["train"], ["a", "b"]);
        let pku = dir.path().join("cross-view.txt");
        std::fs::write(&pku, "Training videos:\n0002-M, 0002-R\nValidation videos:\n0002-L\n")
            .unwrap();
        let s = read_split_file(&pku).unwrap();
        assert_eq!(s["cross-view/train"], ["0002-M", "0002-R"]);
        assert_eq!(s["cross-view/val"], ["0002-L"]);
    }

    #[test]
    fn format_names_parse() {
        assert_eq!("PKU-MMD".parse::<DatasetFormat>().unwrap(), DatasetFormat::Pku);
        assert_eq!("utkinect".parse::<DatasetFormat>().unwrap(), DatasetFormat::Utkinect);
        assert!("kinetics".parse::<DatasetFormat>().unwrap_err().to_string().contains("kinetics"));
    }

    fn body_frames(n: usize, fps: f64) -> Vec<crate::frame::Frame> {
        (0..n)
            .map(|i| crate::frame::Frame {
                index: i as u64,
                timestamp_secs: i as f64 / fps,
                bodies: vec![crate::frame::Body::from_positions(
                    1,
                    &std::array::from_fn(|j| [0.01 * j as f32, 0.1 + 0.01 * i as f32, 2.5]),
                )],
            })
            .collect()
    }

    /// A folder mixing PKU `.txt` and MediaPipe `.ndjson` at 15 fps, labelled by frame
    /// intervals, time CSV and per-frame files, classes from the label names.
    fn mixed_folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (sk, lb) = (dir.path().join("skeleton"), dir.path().join("label"));
        std::fs::create_dir_all(&sk).unwrap();
        std::fs::create_dir_all(&lb).unwrap();
        pku::write_skeleton(sk.join("a.txt"), &body_frames(60, 30.0)).unwrap();
        std::fs::write(lb.join("a.txt"), "squat,11,30,1\n").unwrap();
        let b = Recording {
            name: "b".into(),
            source_layout: Layout::KinectV2_25,
            fps: 15.0,
            frames: body_frames(30, 15.0),
            intervals: None,
        };
        let ds = Dataset {
            classes: ClassMap::new(vec!["background".into()]),
            recordings: vec![b],
            splits: BTreeMap::new(),
        };
        write_dataset_ndjson(dir.path(), &ds, Layout::Mediapipe33).unwrap();
        std::fs::write(lb.join("b.csv"), "label,start_s,end_s\nwave,0.5,1.5\n").unwrap();
        pku::write_skeleton(sk.join("c.txt"), &body_frames(4, 30.0)).unwrap();
        std::fs::write(lb.join("c.txt"), "background\nwave\nwave\nsquat\n").unwrap();
        dir
    }

    #[test]
    fn a_folder_mixes_recording_and_label_formats() {
        let dir = mixed_folder();
        let ds = read_dataset(dir.path(), DatasetFormat::Pku).unwrap();
        assert_eq!(ds.classes.names(), ["background", "squat", "wave"]);
        let by_name = |n: &str| ds.recordings.iter().find(|r| r.name == n).unwrap();
        assert_eq!(by_name("a").intervals, Some(vec![Interval { class: 1, start: 10, end: 29 }]));
        let b = by_name("b");
        assert_eq!((b.source_layout, b.fps, b.frames.len()), (Layout::Mediapipe33, 15.0, 30));
        // 0.5..1.5 s at 15 fps: frames 7.5..22.5, half a frame of slack at each end.
        assert_eq!(b.intervals, Some(vec![Interval { class: 2, start: 7, end: 22 }]));
        assert_eq!(
            by_name("c").intervals,
            Some(vec![
                Interval { class: 2, start: 1, end: 2 },
                Interval { class: 1, start: 3, end: 3 }
            ])
        );
    }

    #[test]
    fn every_problem_is_collected_and_located() {
        let dir = mixed_folder();
        let (sk, lb) = (dir.path().join("skeleton"), dir.path().join("label"));
        std::fs::write(lb.join("a.txt"), "squat,11,30,1\nwave,25,40\n").unwrap();
        std::fs::write(lb.join("b.csv"), "label,start_s,end_s\nwaev,0.5,1.5\n").unwrap();
        std::fs::write(sk.join("d.ndjson"), "").unwrap();
        std::fs::write(dir.path().join(MAPPING_FILE), "0 background\n1 squat\n2 wave\n").unwrap();
        let scan = scan_dataset(dir.path(), DatasetFormat::Pku).unwrap();
        let problems: Vec<String> = scan.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems.iter().any(|p| p.contains("a.txt:2:") && p.contains("overlapping line 1"))
        );
        assert!(
            problems.iter().any(|p| p.contains("b.csv:2:") && p.contains("did you mean `wave`"))
        );
        assert!(problems.iter().any(|p| p.contains("d.ndjson")), "{problems:#?}");
        assert_eq!(scan.dataset.recordings.len(), 1);
        let err = read_dataset(dir.path(), DatasetFormat::Pku).unwrap_err().to_string();
        assert!(err.contains("3 problems") && err.contains("b.csv:2:"), "{err}");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Dataset {
            classes: ClassMap::new(vec!["background".into()]),
            recordings: vec![Recording {
                name: "../escape".into(),
                source_layout: Layout::KinectV2_25,
                fps: 30.0,
                frames: Vec::new(),
                intervals: None,
            }],
            splits: BTreeMap::new(),
        };
        let err = write_dataset(dir.path().join("out"), &ds).unwrap_err().to_string();
        assert!(err.contains("../escape"), "{err}");
        assert!(!dir.path().join("out").exists());
    }
}
