//! File formats against the real data in `../shared/data/` (PKU-MMD A10N08-L, five NTU RGB+D
//! clips, UTKinect-Action3D s01–s08) and against hand-made malformed files in a temporary folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skelseg::io::dataset::{DatasetFormat, read_dataset, write_dataset};
use skelseg::io::{self, ClassMap, Dataset, Interval, Recording, ntu, pku, utkinect};
use skelseg::skeleton::Layout;
use skelseg::{Error, Tracking};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

fn pku_file() -> PathBuf {
    data("pku-mmd/A10N08-L.txt")
}

fn utk_dir() -> PathBuf {
    data("utkinect-action3d")
}

const NTU_CLIPS: [(&str, usize); 5] = [
    ("S001C001P001R001A001", 103),
    ("S001C001P001R001A002", 158),
    ("S001C001P001R001A003", 104),
    ("S001C001P001R001A004", 99),
    ("S001C001P001R001A005", 54),
];

fn ntu_file(name: &str) -> PathBuf {
    data(&format!("ntu-rgbd-samples/{name}.skeleton"))
}

/// The error's text, asserting it mentions every one of `needles`.
fn assert_err_mentions<T>(result: Result<T, Error>, needles: &[&str]) -> String {
    let Err(err) = result else { panic!("expected an error mentioning {needles:?}, got Ok") };
    let msg = err.to_string();
    for needle in needles {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }
    msg
}

// ------------------------------------------------------------------------------ real data

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn pku_a10n08_has_1040_frames_and_a_second_body_in_728() {
    let frames = pku::read_skeleton(pku_file()).unwrap();
    assert_eq!(frames.len(), 1040);
    assert!(frames.iter().all(|f| f.bodies.first().is_some_and(|b| b.id == 1)));
    let second = frames.iter().filter(|f| f.bodies.iter().any(|b| b.id == 2)).count();
    assert_eq!(second, 728);
    // data.md §3.1: frame 0, body 1, SpineBase and Head.
    let body = &frames[0].bodies[0];
    assert_eq!(body.joints[0].pos, [-0.304560, 0.212575, 2.728912]);
    assert_eq!(body.joints[3].pos, [-0.283308, 1.02374, 2.654253]);
    assert_eq!(frames[1039].index, 1039);
    assert!((frames[1039].timestamp_secs - 1039.0 / 30.0).abs() < 1e-9);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn ntu_clips_have_their_frame_counts_body_ids_and_tracking() {
    for (name, n) in NTU_CLIPS {
        let frames = ntu::read_skeleton(ntu_file(name)).unwrap();
        assert_eq!(frames.len(), n, "{name}");
        assert!(frames.iter().all(|f| f.bodies.len() == 1), "{name}");
    }
    let frames = ntu::read_skeleton(ntu_file("S001C001P001R001A001")).unwrap();
    let body = &frames[0].bodies[0];
    assert_eq!(body.id, 72057594037931101);
    assert_eq!(body.joints[0].pos, [0.2181153, 0.1725972, 3.785547]);
    assert_eq!(body.joints[0].tracking, Tracking::Tracked);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn utkinect_takes_s01_to_s08_read_with_their_10_intervals() {
    let ds = read_dataset(utk_dir(), DatasetFormat::Utkinect).unwrap();
    let names: Vec<&str> = ds.recordings.iter().map(|r| r.name.as_str()).collect();
    let expected: Vec<String> =
        (1..=8).flat_map(|s| (1..=2).map(move |e| format!("s{s:02}_e{e:02}"))).collect();
    assert_eq!(names, expected);
    assert_eq!(ds.classes.len(), 11);
    assert!(ds.splits.is_empty());
    for r in &ds.recordings {
        let ivs = r.intervals.as_ref().unwrap();
        assert_eq!(ivs.len(), 10, "{}", r.name);
        // Every take performs the 10 actions in class order.
        assert_eq!(ivs.iter().map(|iv| iv.class).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert!(ivs.iter().all(|iv| iv.start <= iv.end && iv.end < r.frames.len()), "{}", r.name);
        assert_eq!(r.source_layout, Layout::KinectV1_20);
        let labels = r.frame_labels().unwrap();
        assert!(labels.contains(&0), "{}: some background", r.name);
    }
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn utkinect_s01_e01_drops_15_repeats_and_snaps_walk_to_frame_numbers() {
    let joints = utk_dir().join("joints/joints_s01_e01.txt");
    let take = utkinect::read_joints(&joints).unwrap();
    // 560 rows, 15 of them repeat the previous frame number (measured with awk).
    assert_eq!(take.repeats_dropped, 15);
    assert_eq!(take.frames.len(), 545);
    assert_eq!(take.frame_numbers[0], 190);
    assert_eq!(take.frames[0].index, 0);
    let rec =
        utkinect::read_take(&joints, Some(&utk_dir().join("joints/actionLabel.txt"))).unwrap();
    // `walk: 252 390`: first kept frame >= 252 and last <= 390.
    let walk = rec.intervals.as_ref().unwrap()[0];
    assert_eq!(walk.class, 1);
    let n = &take.frame_numbers;
    assert!(n[walk.start] >= 252 && n[walk.start - 1] < 252);
    assert!(n[walk.end] <= 390 && n[walk.end + 1] > 390);
    // Head (v1 3 = v2 3) of the first row: columns 10..12 of the file.
    assert_eq!(rec.frames[0].bodies[0].joints[3].pos, [0.780868, 0.472591, 1.943852]);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn read_recording_dispatches_on_extension_and_content() {
    let pku_rec = io::read_recording(pku_file()).unwrap();
    assert_eq!((pku_rec.name.as_str(), pku_rec.frames.len()), ("A10N08-L", 1040));
    assert_eq!(pku_rec.intervals, None);

    let ntu_rec = io::read_recording(ntu_file("S001C001P001R001A005")).unwrap();
    assert_eq!(ntu_rec.intervals, Some(vec![Interval { class: 5, start: 0, end: 53 }]));

    let utk = io::read_recording(utk_dir().join("joints/joints_s08_e02.txt")).unwrap();
    assert_eq!(utk.name, "s08_e02");
    assert_eq!(utk.intervals.as_ref().map(Vec::len), Some(10));

    let dir = tempfile::tempdir().unwrap();
    let nd = dir.path().join("live.ndjson");
    let first = io::pku::read_skeleton(data("pku-mmd/A10N08-L.txt")).unwrap().remove(0);
    let text = format!(
        "{}\n{}\n",
        io::ndjson::encode_header(&io::ndjson::Header::canonical(Some(30.0))),
        io::ndjson::encode_frame(&first)
    );
    std::fs::write(&nd, &text).unwrap();
    let rec = io::read_recording(&nd).unwrap();
    assert_eq!(rec.frames.len(), 1);
    assert_eq!(rec.frames[0].bodies.len(), first.bodies.len());
    std::fs::write(&nd, format!("{text}{{\"type\":\"frame\"}}\n")).unwrap();
    assert_err_mentions(io::read_recording(&nd), &["live.ndjson:3"]);
    let odd = dir.path().join("odd.txt");
    std::fs::write(&odd, "1 2 3\n").unwrap();
    assert_err_mentions(io::read_recording(&odd), &["odd.txt:1:", "150", "61", "found 3"]);
    let csv = dir.path().join("x.csv");
    std::fs::write(&csv, "1,2\n").unwrap();
    assert_err_mentions(io::read_recording(&csv), &["x.csv", ".skeleton"]);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn ntu_folder_reads_as_a_dataset_of_labelled_clips() {
    let ds = read_dataset(data("ntu-rgbd-samples"), DatasetFormat::Ntu).unwrap();
    assert_eq!(ds.classes.len(), 61);
    assert_eq!(ds.recordings.len(), 5);
    for (r, (i, (name, n))) in ds.recordings.iter().zip(NTU_CLIPS.iter().enumerate()) {
        assert_eq!(&r.name, name);
        assert_eq!(r.intervals, Some(vec![Interval { class: i + 1, start: 0, end: n - 1 }]));
    }
    assert_eq!(ds.classes.name(5), Some("drop"));
}

// ------------------------------------------------------------------------------ round trips

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn pku_skeleton_and_labels_round_trip() {
    let frames = pku::read_skeleton(pku_file()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.txt");
    pku::write_skeleton(&out, &frames).unwrap();
    assert_eq!(pku::read_skeleton(&out).unwrap(), frames);

    let intervals = vec![
        Interval { class: 8, start: 0, end: 99 },
        Interval { class: 51, start: 100, end: 1039 },
        Interval { class: 3, start: 500, end: 500 },
    ];
    let labels = dir.path().join("labels.txt");
    pku::write_labels(&labels, &intervals).unwrap();
    assert_eq!(std::fs::read_to_string(&labels).unwrap().lines().next(), Some("8,1,100,1"));
    assert_eq!(pku::read_labels(&labels, frames.len()).unwrap(), intervals);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn pku_writer_places_bodies_by_id_and_ntu_bodies_in_order() {
    let frames = pku::read_skeleton(pku_file()).unwrap();
    // A frame holding only body 2 keeps it in slot 2.
    let only_second: Vec<_> = frames
        .iter()
        .filter(|f| f.bodies.len() == 2)
        .take(3)
        .map(|f| skelseg::Frame { bodies: vec![f.bodies[1].clone()], ..f.clone() })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("second.txt");
    pku::write_skeleton(&out, &only_second).unwrap();
    let back = pku::read_skeleton(&out).unwrap();
    assert!(back.iter().all(|f| f.bodies.len() == 1 && f.bodies[0].id == 2));

    // NTU bodies have Kinect ids: they go to slot 1 in order, positions intact.
    let ntu_frames = ntu::read_skeleton(ntu_file("S001C001P001R001A004")).unwrap();
    pku::write_skeleton(&out, &ntu_frames).unwrap();
    let back = pku::read_skeleton(&out).unwrap();
    assert_eq!(back.len(), 99);
    assert_eq!(back[10].bodies[0].positions(), ntu_frames[10].bodies[0].positions());
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn dataset_folder_round_trips() {
    let pku_frames = pku::read_skeleton(pku_file()).unwrap();
    let utk = io::read_recording(utk_dir().join("joints/joints_s02_e01.txt")).unwrap();
    let classes = ClassMap::new(vec!["background".into(), "wave".into(), "sit".into()]);
    let recordings = vec![
        Recording {
            name: "A10N08-L".into(),
            source_layout: Layout::KinectV2_25,
            fps: 30.0,
            frames: pku_frames[..300].to_vec(),
            intervals: Some(vec![
                Interval { class: 1, start: 10, end: 120 },
                Interval { class: 2, start: 200, end: 299 },
            ]),
        },
        Recording {
            name: "s02_e01".into(),
            intervals: Some(vec![Interval { class: 2, start: 0, end: 5 }]),
            ..utk.clone()
        },
        Recording { name: "unlabelled".into(), intervals: None, ..utk },
    ];
    let splits = BTreeMap::from([
        ("train".to_owned(), vec!["A10N08-L".to_owned(), "unlabelled".to_owned()]),
        ("test".to_owned(), vec!["s02_e01".to_owned()]),
    ]);
    let ds = Dataset { classes: classes.clone(), recordings, splits: splits.clone() };
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &ds).unwrap();
    assert!(dir.path().join("skeleton/s02_e01.txt").is_file());
    assert!(!dir.path().join("label/unlabelled.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mapping.txt")).unwrap(),
        "0 background\n1 wave\n2 sit\n"
    );

    let back = read_dataset(dir.path(), DatasetFormat::Pku).unwrap();
    assert_eq!(back.classes, classes);
    assert_eq!(back.splits, splits);
    assert_eq!(back.recordings.len(), 3);
    for original in &ds.recordings {
        let read = back.recordings.iter().find(|r| r.name == original.name).unwrap();
        assert_eq!(read.intervals, original.intervals, "{}", original.name);
        assert_eq!(read.frames.len(), original.frames.len());
        for (a, b) in read.frames.iter().zip(&original.frames) {
            let pa: Vec<_> = a.bodies.iter().map(|b| b.positions()).collect();
            let pb: Vec<_> = b.bodies.iter().map(|b| b.positions()).collect();
            assert_eq!(pa, pb, "{}", original.name);
        }
    }
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn pku_original_layout_reads_with_builtin_classes_and_split_sections() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["PKU_Skeleton_Renew", "Train_Label_PKU_final", "Split"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    std::fs::copy(pku_file(), root.join("PKU_Skeleton_Renew/A10N08-L.txt")).unwrap();
    std::fs::write(root.join("Train_Label_PKU_final/A10N08-L.txt"), "41,30,90,2\n17,200,150,1\n")
        .unwrap();
    std::fs::write(
        root.join("Split/cross-subject_v2.txt"),
        "Training videos:\nA01N01-L, A01N01-M, \nValidation videos:\nA10N08-L, A05N04-M\n",
    )
    .unwrap();
    let ds = read_dataset(root, DatasetFormat::Pku).unwrap();
    assert_eq!(ds.classes.len(), 52);
    let rec = &ds.recordings[0];
    assert_eq!(
        rec.intervals,
        Some(vec![
            Interval { class: 41, start: 29, end: 89 },
            Interval { class: 17, start: 149, end: 199 }
        ])
    );
    assert_eq!(ds.classes.name(41), Some("throw"));
    assert_eq!(ds.splits["cross-subject_v2/val"], ["A10N08-L"]);
    assert!(ds.splits["cross-subject_v2/train"].is_empty());
}

// ------------------------------------------------------------------------------ malformed input

/// A PKU skeleton line of 150 numbers with `token` in column `col`.
fn pku_line(col: Option<(usize, &str)>) -> String {
    let mut tokens: Vec<String> = (0..150).map(|i| format!("{:.6}", 0.01 * i as f32)).collect();
    if let Some((c, t)) = col {
        tokens[c] = t.to_owned();
    }
    tokens.join(" ")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

#[test]
fn pku_wrong_float_count_names_line_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let short = pku_line(None).rsplit_once(' ').unwrap().0.to_owned();
    let p = write(
        dir.path(),
        "bad.txt",
        &format!("{}\n{}\n{short}\n{}\n", pku_line(None), pku_line(None), pku_line(None)),
    );
    assert_err_mentions(
        pku::read_skeleton(&p),
        &["bad.txt:3:", "expected 150 numbers", "found 149"],
    );
    let p = write(dir.path(), "long.txt", &format!("{} 1.0\n", pku_line(None)));
    assert_err_mentions(
        pku::read_skeleton(&p),
        &["long.txt:1:", "expected 150 numbers", "found 151"],
    );
}

#[test]
fn pku_non_numbers_nan_and_inf_are_located_by_joint() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "word.txt",
        &format!("{}\n{}\n", pku_line(None), pku_line(Some((13, "abc")))),
    );
    // Column 14 = y of joint 4 (ShoulderLeft) of body 1.
    assert_err_mentions(
        pku::read_skeleton(&p),
        &["word.txt:2:", "expected a number", "ShoulderLeft", "found `abc`"],
    );
    let p = write(dir.path(), "nan.txt", &format!("{}\n", pku_line(Some((80, "NaN")))));
    assert_err_mentions(pku::read_skeleton(&p), &["nan.txt:1:", "finite", "body 2", "found `NaN`"]);
    let p = write(dir.path(), "inf.txt", &format!("{}\n", pku_line(Some((0, "-inf")))));
    assert_err_mentions(pku::read_skeleton(&p), &["inf.txt:1:", "finite", "found `-inf`"]);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn truncated_real_files_are_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(pku_file()).unwrap();
    let p = write(dir.path(), "A10N08-L.txt", &text[..text.len() / 2 + 37]);
    assert_err_mentions(
        pku::read_skeleton(&p),
        &["A10N08-L.txt:", "expected 150 numbers", "truncated"],
    );

    let text = std::fs::read_to_string(ntu_file("S001C001P001R001A003")).unwrap();
    let cut: String = text.lines().take(500).map(|l| format!("{l}\n")).collect();
    let p = write(dir.path(), "S001C001P001R001A003.skeleton", &cut);
    assert_err_mentions(
        ntu::read_skeleton(&p),
        &["S001C001P001R001A003.skeleton:501:", "end of file", "expected"],
    );
}

/// Issue 12: callers branch on the parts of a parse error, not on its text.
#[test]
fn parse_errors_carry_file_line_expected_and_found_as_fields() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}\n{}\n", pku_line(None), pku_line(Some((3, "NaN"))));
    let p = write(dir.path(), "nan.txt", &text);
    match pku::read_skeleton(&p) {
        Err(Error::Parse { location, expected, found }) => {
            assert_eq!(location.path(), Some(p.as_path()));
            assert_eq!(location.line, Some(2));
            assert!(expected.starts_with("a finite number for"), "{expected}");
            assert_eq!(found, "`NaN`");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let empty = write(dir.path(), "e.skeleton", "");
    match ntu::read_skeleton(&empty) {
        Err(Error::Parse { location, found, .. }) => {
            assert_eq!((location.path(), location.line), (Some(empty.as_path()), None));
            assert_eq!(found, "an empty file");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn empty_files_are_errors_for_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let pku_path = write(dir.path(), "e.txt", "\n  \n");
    assert_err_mentions(
        pku::read_skeleton(&pku_path),
        &["e.txt", "empty file", "expected lines of 150"],
    );
    let ntu_path = write(dir.path(), "e.skeleton", "");
    assert_err_mentions(
        ntu::read_skeleton(&ntu_path),
        &["e.skeleton", "empty file", "frame count"],
    );
    let utk_path = write(dir.path(), "joints_s01_e01.txt", "");
    assert_err_mentions(utkinect::read_joints(&utk_path), &["joints_s01_e01.txt", "empty file"]);
    let labels = write(dir.path(), "actionLabel.txt", "");
    assert_err_mentions(utkinect::read_action_labels(&labels), &["actionLabel.txt", "empty file"]);
    let mapping = write(dir.path(), "mapping.txt", "");
    assert_err_mentions(io::dataset::read_mapping(&mapping), &["mapping.txt", "empty file"]);
    let split = write(dir.path(), "split.txt", "");
    assert_err_mentions(pku::read_split(&split), &["split.txt", "empty file"]);
    assert_err_mentions(io::read_recording(&pku_path), &["e.txt", "empty file"]);
    // A label file without lines is a recording without actions.
    let empty_labels = write(dir.path(), "l.txt", "");
    assert_eq!(pku::read_labels(&empty_labels, 10).unwrap(), []);
}

#[test]
fn pku_label_errors_name_file_line_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "lab.txt", "1,1,10,1\n2,5,1041,1\n");
    assert_err_mentions(pku::read_labels(&p, 1040), &["lab.txt:2:", "1..1040", "found 5..1041"]);
    let p = write(dir.path(), "lab.txt", "1,1,10\n2,x,20,1\n");
    assert_err_mentions(pku::read_labels(&p, 1040), &["lab.txt:2:", "start frame", "found `x`"]);
    let p = write(dir.path(), "lab.txt", "1,1\n");
    assert_err_mentions(
        pku::read_labels(&p, 1040),
        &["lab.txt:1:", "expected 4 comma-separated fields", "found 2"],
    );
    let p = write(dir.path(), "lab.txt", "1,0,10,1\n");
    assert_err_mentions(pku::read_labels(&p, 1040), &["lab.txt:1:", "1-based", "found start 0"]);
    let p = write(dir.path(), "lab.txt", "walk,1,10,1\n");
    assert_err_mentions(
        pku::read_labels(&p, 1040),
        &["lab.txt:1:", "integer class id", "found `walk`"],
    );
    // start > end is swapped, as the reference loaders do.
    let p = write(dir.path(), "lab.txt", "7,20,10,1\n");
    assert_eq!(pku::read_labels(&p, 1040).unwrap(), [Interval { class: 7, start: 9, end: 19 }]);
}

/// A convention folder with one 20-frame recording `r1` and the given label file text.
fn convention_folder(labels: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir(root.join("skeleton")).expect("mkdir");
    std::fs::create_dir(root.join("label")).expect("mkdir");
    let skel: String = (0..20).map(|_| pku_line(None) + "\n").collect();
    write(&root.join("skeleton"), "r1.txt", &skel);
    write(&root.join("label"), "r1.txt", labels);
    write(root, "mapping.txt", "0 background\n1 wave\n2 sit down\n");
    dir
}

#[test]
fn dataset_labels_accept_class_names_and_reject_unknown_ones() {
    let dir = convention_folder("wave,1,5,1\nsit down,6,20,1\n");
    let ds = read_dataset(dir.path(), DatasetFormat::Pku).unwrap();
    assert_eq!(
        ds.recordings[0].intervals,
        Some(vec![
            Interval { class: 1, start: 0, end: 4 },
            Interval { class: 2, start: 5, end: 19 }
        ])
    );
    let dir = convention_folder("wave,1,5,1\njump,6,20,1\n");
    assert_err_mentions(
        read_dataset(dir.path(), DatasetFormat::Pku),
        &["r1.txt:2:", "unknown class `jump`"],
    );
    let dir = convention_folder("3,1,5,1\n");
    assert_err_mentions(
        read_dataset(dir.path(), DatasetFormat::Pku),
        &["r1.txt:1:", "below 3", "found 3"],
    );
    let dir = convention_folder("1,1,21,1\n");
    assert_err_mentions(
        read_dataset(dir.path(), DatasetFormat::Pku),
        &["r1.txt:1:", "1..20", "found 1..21"],
    );
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn ntu_malformed_values_are_located_by_frame_body_and_joint() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(ntu_file("S001C001P001R001A005")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Line 6 (1-based) is joint 1 of frame 0: make its y a word.
    let mut fields: Vec<String> = lines[5].split_whitespace().map(str::to_owned).collect();
    fields[1] = "oops".into();
    lines[5] = fields.join(" ");
    let p = write(dir.path(), "word.skeleton", &(lines.join("\n") + "\n"));
    assert_err_mentions(
        ntu::read_skeleton(&p),
        &["word.skeleton:6:", "y of frame 0, body 0, joint 1", "found `oops`"],
    );

    fields[1] = "nan".into();
    lines[5] = fields.join(" ");
    let p = write(dir.path(), "nan.skeleton", &(lines.join("\n") + "\n"));
    assert_err_mentions(ntu::read_skeleton(&p), &["nan.skeleton:6:", "finite", "found `nan`"]);

    fields.pop();
    lines[5] = fields.join(" ");
    let p = write(dir.path(), "short.skeleton", &(lines.join("\n") + "\n"));
    assert_err_mentions(
        ntu::read_skeleton(&p),
        &["short.skeleton:6:", "expected 12 values", "found 11"],
    );

    let p = write(dir.path(), "count.skeleton", &format!("x{text}"));
    assert_err_mentions(
        ntu::read_skeleton(&p),
        &["count.skeleton:1:", "frame count", "found `x54`"],
    );

    let p = write(dir.path(), "extra.skeleton", &format!("{text}1\n"));
    assert_err_mentions(
        ntu::read_skeleton(&p),
        &["extra.skeleton:", "end of the file after 54 frames", "found `1`"],
    );
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn utkinect_malformed_rows_and_labels_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(utk_dir().join("joints/joints_s01_e01.txt")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let row3 =
        lines[2].trim_end().rsplit_once(char::is_whitespace).unwrap().0.trim_end().to_owned();
    lines[2] = &row3;
    let p = write(dir.path(), "joints_s01_e01.txt", &(lines.join("\n") + "\n"));
    assert_err_mentions(
        utkinect::read_joints(&p),
        &["joints_s01_e01.txt:3:", "expected 61 numbers", "found 60"],
    );

    // Frame numbers going back.
    let rows: Vec<&str> = text.lines().collect();
    let swapped = [rows[5], rows[4]].join("\n") + "\n";
    let p = write(dir.path(), "joints_s01_e02.txt", &swapped);
    assert_err_mentions(utkinect::read_joints(&p), &["joints_s01_e02.txt:2:", "at least", "found"]);

    let labels = write(dir.path(), "actionLabel.txt", "s01_e01\nwalk: 252 390\nsitdown: 572 686\n");
    assert_err_mentions(
        utkinect::read_action_labels(&labels),
        &["actionLabel.txt:3:", "unknown class `sitdown`", "sitDown"],
    );
    let labels = write(dir.path(), "actionLabel.txt", "walk: 252 390\n");
    assert_err_mentions(
        utkinect::read_action_labels(&labels),
        &["actionLabel.txt:1:", "take name"],
    );
    let labels = write(dir.path(), "actionLabel.txt", "s01_e01\nwalk: 390 252\n");
    assert_err_mentions(
        utkinect::read_action_labels(&labels),
        &["actionLabel.txt:2:", "start <= end", "390 > 252"],
    );
    let labels = write(dir.path(), "actionLabel.txt", "s01_e01\nwalk: 100 390\n");
    let real = utk_dir().join("joints/joints_s01_e01.txt");
    assert_err_mentions(
        utkinect::read_take(&real, Some(&labels)),
        &["actionLabel.txt:2:", "190..2290", "found 100..390"],
    );
    let labels = write(dir.path(), "actionLabel.txt", "s02_e01\nwalk: 300 390\n");
    assert_err_mentions(
        utkinect::read_take(&real, Some(&labels)),
        &["actionLabel.txt", "take `s01_e01`"],
    );
}

#[test]
fn non_utf8_files_are_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.txt");
    std::fs::write(&p, [pku_line(None).as_bytes(), b"\n\xff\xfe\n"].concat()).unwrap();
    assert_err_mentions(pku::read_skeleton(&p), &["bin.txt:2:", "UTF-8"]);
}

/// Tiny deterministic generator for the corruption test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn corrupted_and_truncated_real_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        (pku_file(), "A10N08-L.txt"),
        (ntu_file("S001C001P001R001A005"), "S001C001P001R001A005.skeleton"),
        (utk_dir().join("joints/joints_s05_e02.txt"), "joints_s05_e02.txt"),
        (utk_dir().join("joints/actionLabel.txt"), "actionLabel.txt"),
    ];
    let junk: [&[u8]; 8] = [b"x", b" ", b"\n", b"-", b"nan", b"1e999", b":", b"\xff"];
    let mut rng = Lcg(7);
    for (src, name) in sources {
        let original = std::fs::read(&src).unwrap();
        let p = dir.path().join(name);
        for round in 0..40 {
            let mut bytes = original.clone();
            if round % 2 == 0 {
                bytes.truncate(rng.next(bytes.len()));
            } else {
                for _ in 0..3 {
                    let at = rng.next(bytes.len());
                    let piece = junk[rng.next(junk.len())];
                    bytes.splice(at..(at + 1).min(bytes.len()), piece.iter().copied());
                }
            }
            std::fs::write(&p, &bytes).unwrap();
            // Ok or Err, both fine: the point is no panic.
            if name == "actionLabel.txt" {
                let _ = utkinect::read_action_labels(&p);
            } else {
                let _ = io::read_recording(&p);
            }
        }
    }
}
