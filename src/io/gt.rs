//! MS-TCN style per-frame label files (`groundTruth/<video>.txt`): one label name per line, line
//! `k` = frame `k`; and offline scoring of a directory of predictions against such files.
//!
//! The reader also accepts MS-TCN's own prediction files (a `### Frame level recognition: ###`
//! line, then all labels space-separated on the next line), so `skelseg metrics` scores MS-TCN
//! outputs unchanged. Scoring: [`crate::metrics`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result};
use crate::io::ClassMap;
use crate::metrics::{NamedMetricsAccumulator, Scores, Variant};

/// First line of MS-TCN's prediction files.
const MSTCN_RECOGNITION_HEADER: &str = "### Frame level recognition: ###";

/// Reads one label name per frame. Leading/trailing whitespace (and `\r`) of each line is
/// dropped; an empty file or an empty line is an error located at `path:line`.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_labels(&text, &path.display().to_string())
}

/// [`read_labels`] on text already in memory; `origin` names it in errors.
pub fn parse_labels(text: &str, origin: &str) -> Result<Vec<String>> {
    Ok(parse_located(text, origin)?.into_iter().map(|(_, l)| l).collect())
}

/// Labels with the 1-based line each came from.
fn parse_located(text: &str, origin: &str) -> Result<Vec<(usize, String)>> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    let Some((_, first)) = lines.next() else {
        return Err(Error::parse(Location::file(origin), "one label per line", "an empty file"));
    };
    if first == MSTCN_RECOGNITION_HEADER {
        let Some((n, labels)) = lines.next() else {
            return Err(Error::parse(
                Location::file_line(origin, 2),
                "the frame labels",
                "end of file",
            ));
        };
        if labels.is_empty() {
            return Err(Error::parse(
                Location::file_line(origin, n as u64),
                "the frame labels",
                "an empty line",
            ));
        }
        return Ok(labels.split_whitespace().map(|l| (n, l.to_owned())).collect());
    }
    std::iter::once((1, first))
        .chain(lines)
        .map(|(n, l)| {
            if l.is_empty() {
                Err(Error::parse(
                    Location::file_line(origin, n as u64),
                    "a label name",
                    "an empty line",
                ))
            } else {
                Ok((n, l.to_owned()))
            }
        })
        .collect()
}

/// Reads a label file and maps every name to its id in `classes`; an unknown name is an error
/// at its `path:line`.
pub fn read_label_ids(path: &Path, classes: &ClassMap) -> Result<Vec<usize>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let origin = path.display().to_string();
    parse_located(&text, &origin)?
        .into_iter()
        .map(|(line, name)| {
            classes.id(&name).ok_or_else(|| {
                Error::parse(
                    Location::file_line(path, line as u64),
                    format!("one of the {} class names", classes.len()),
                    format!("{name:?}"),
                )
            })
        })
        .collect()
}

/// Writes one label per line (each line ends with `\n`). A label that is empty or spans lines
/// could not be read back, so it is rejected before anything is written.
pub fn write_labels<S: AsRef<str>>(path: &Path, labels: &[S]) -> Result<()> {
    let mut text = String::new();
    for (i, l) in labels.iter().enumerate() {
        let l = l.as_ref();
        if l.trim().is_empty() || l.contains(['\n', '\r']) || l.trim() != l {
            return Err(Error::invalid(
                "label",
                format!("frame {i} of {}: {l:?} cannot be written as one line", path.display()),
            ));
        }
        text.push_str(l);
        text.push('\n');
    }
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// The regular, non-hidden files of `dir`, sorted by name.
fn label_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

/// Scores every prediction file of `pred_dir` against the file of the same name in `gt_dir`.
///
/// Both directories must hold exactly the same file names (hidden files and sub-directories
/// are skipped): a prediction without its ground truth, or the reverse, is an error naming the
/// file, as is a length mismatch. Labels named in `bg_names` are background.
pub fn evaluate_dirs(
    pred_dir: &Path,
    gt_dir: &Path,
    bg_names: &[String],
    variant: Variant,
) -> Result<Scores> {
    let preds = label_files(pred_dir)?;
    let gts = label_files(gt_dir)?;
    if let Some((name, _)) =
        gts.iter().find(|(n, _)| preds.binary_search_by(|(p, _)| p.cmp(n)).is_err())
    {
        return Err(Error::invalid(
            "prediction directory",
            format!("{} has no prediction for ground-truth file {name}", pred_dir.display()),
        ));
    }
    if preds.is_empty() {
        return Err(Error::invalid(
            "prediction directory",
            format!("{} holds no label file", pred_dir.display()),
        ));
    }
    let mut acc = NamedMetricsAccumulator::new(variant, bg_names.to_vec());
    for (name, pred_path) in &preds {
        let gt_path = gt_dir.join(name);
        if !gt_path.is_file() {
            return Err(Error::invalid(
                "prediction file",
                format!("{}: no ground-truth file {}", pred_path.display(), gt_path.display()),
            ));
        }
        let pred = read_labels(pred_path)?;
        let gt = read_labels(&gt_path)?;
        if pred.len() != gt.len() {
            return Err(Error::Shape {
                context: format!("{} vs {}", pred_path.display(), gt_path.display()),
                expected: format!("{} frames (ground truth)", gt.len()),
                got: format!("{} frames", pred.len()),
            });
        }
        acc.add(&pred, &gt)?;
        tracing::debug!(file = %name, frames = gt.len(), "scored");
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn names(ids: &[usize]) -> Vec<String> {
        ids.iter()
            .map(|&i| if i == 0 { "background".to_owned() } else { format!("action {i}") })
            .collect()
    }

    #[test]
    fn round_trip_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_labels(&p, &["walk", "drink water", "walk"]).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "walk\ndrink water\nwalk\n");
        assert_eq!(read_labels(&p).unwrap(), ["walk", "drink water", "walk"]);
        let q = write(dir.path(), "b.txt", "a\r\nb\r\n");
        assert_eq!(read_labels(&q).unwrap(), ["a", "b"]);
    }

    #[test]
    fn located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.txt", "");
        let err = read_labels(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.txt") && err.contains("empty file"), "{err}");
        let hole = write(dir.path(), "hole.txt", "a\nb\n\nc\n");
        let err = read_labels(&hole).unwrap_err().to_string();
        assert!(err.contains("hole.txt:3:"), "{err}");
        let missing = dir.path().join("missing.txt");
        match read_labels(&missing) {
            Err(Error::Io { path, source }) => {
                assert_eq!((path, source.kind()), (missing, std::io::ErrorKind::NotFound));
            }
            other => panic!("expected a NotFound I/O error, got {other:?}"),
        }
        for bad in [&["a", ""][..], &["a\nb"][..]] {
            let err = write_labels(&dir.path().join("bad.txt"), bad).unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn mstcn_prediction_format() {
        let labels = parse_labels("### Frame level recognition: ###\nx x y y y\n", "p").unwrap();
        assert_eq!(labels, ["x", "x", "y", "y", "y"]);
        let err = parse_labels("### Frame level recognition: ###\n", "p").unwrap_err();
        match &err {
            Error::Parse { location, expected, found } => {
                assert_eq!(location, &Location::file_line("p", 2));
                assert_eq!(
                    (expected.as_str(), found.as_str()),
                    ("the frame labels", "end of file")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn label_ids_with_unknown_name() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ClassMap::new(vec!["background".into(), "walk".into()]);
        let p = write(dir.path(), "a.txt", "background\nwalk\n");
        assert_eq!(read_label_ids(&p, &classes).unwrap(), [0, 1]);
        let q = write(dir.path(), "b.txt", "walk\nrun\n");
        let err = read_label_ids(&q, &classes).unwrap_err().to_string();
        assert!(err.contains("b.txt:2:") && err.contains("\"run\""), "{err}");
    }

    #[test]
    fn evaluate_dirs_matches_reference_vectors() {
        // architecture.md §1.5, all three videos, no background: MS-TCN and ASRF rows.
        let root = tempfile::tempdir().unwrap();
        let (pd, gd) = (root.path().join("pred"), root.path().join("gt"));
        fs::create_dir_all(&pd).unwrap();
        fs::create_dir_all(&gd).unwrap();
        let rep = |spec: &[(usize, usize)]| -> Vec<usize> {
            spec.iter().flat_map(|&(l, n)| std::iter::repeat_n(l, n)).collect()
        };
        let videos = [
            (
                vec![0, 0, 1, 1, 1, 2, 1, 2, 2, 2, 2, 0, 0, 0, 0],
                vec![0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0],
            ),
            (rep(&[(3, 4), (1, 6)]), rep(&[(3, 8), (1, 2)])),
            (rep(&[(5, 8), (6, 12)]), rep(&[(5, 5), (6, 15)])),
        ];
        for (i, (p, g)) in videos.iter().enumerate() {
            write_labels(&pd.join(format!("v{i}.txt")), &names(p)).unwrap();
            write_labels(&gd.join(format!("v{i}.txt")), &names(g)).unwrap();
        }
        let check = |s: Scores, e: [f64; 5]| {
            let got = [s.acc, s.edit, s.f1_10, s.f1_25, s.f1_50];
            assert!(got.iter().zip(e).all(|(g, e)| (g - e).abs() < 1e-4), "{got:?} vs {e:?}");
        };
        check(
            evaluate_dirs(&pd, &gd, &[], Variant::Mstcn).unwrap(),
            [77.7778, 88.8889, 88.8889, 88.8889, 66.6667],
        );
        check(
            evaluate_dirs(&pd, &gd, &[], Variant::Asrf).unwrap(),
            [77.7778, 88.8889, 88.8889, 77.7778, 66.6667],
        );

        // Missing files on either side are errors naming the file.
        write_labels(&pd.join("extra.txt"), &["a"]).unwrap();
        let err = evaluate_dirs(&pd, &gd, &[], Variant::Asrf).unwrap_err().to_string();
        assert!(err.contains("extra.txt"), "{err}");
        fs::remove_file(pd.join("extra.txt")).unwrap();
        write_labels(&gd.join("lonely.txt"), &["a"]).unwrap();
        let err = evaluate_dirs(&pd, &gd, &[], Variant::Asrf).unwrap_err().to_string();
        assert!(err.contains("lonely.txt"), "{err}");
    }

    #[test]
    fn evaluate_dirs_background_and_length_mismatch() {
        // ex1 with class 0 as background, MS-TCN: §1.5 second row.
        let root = tempfile::tempdir().unwrap();
        let (pd, gd) = (root.path().join("pred"), root.path().join("gt"));
        fs::create_dir_all(&pd).unwrap();
        fs::create_dir_all(&gd).unwrap();
        let gt = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0];
        let pred = [0, 0, 1, 1, 1, 2, 1, 2, 2, 2, 2, 0, 0, 0, 0];
        write_labels(&pd.join("a.txt"), &names(&pred)).unwrap();
        write_labels(&gd.join("a.txt"), &names(&gt)).unwrap();
        let s = evaluate_dirs(&pd, &gd, &["background".into()], Variant::Mstcn).unwrap();
        assert!((s.edit - 50.0).abs() < 1e-4 && (s.f1_50 - 33.3333).abs() < 1e-4, "{s:?}");
        write_labels(&pd.join("a.txt"), &names(&pred[..14])).unwrap();
        let err = evaluate_dirs(&pd, &gd, &[], Variant::Mstcn).unwrap_err().to_string();
        assert!(err.contains("a.txt") && err.contains("15 frames"), "{err}");
        let empty = root.path().join("none");
        fs::create_dir_all(&empty).unwrap();
        assert!(evaluate_dirs(&empty, &empty, &[], Variant::Asrf).is_err());
    }
}
