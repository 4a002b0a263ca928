//! The Rerun viewer output, read back with rerun's own `.rrd` decoder.
//!
//! Two streams are logged into a file through [`Visualizer`] with `save:PATH`; the test decodes
//! the file and checks the entity tree: 25 keypoints per body per frame, one label, probability
//! and boundary row per finalised frame on the `frame` timeline, committed segments and ground
//! truth as text and as a class-id band.
#![cfg(feature = "viz")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use re_log_encoding::DecoderApp;
use rerun::components::{ClassId, HalfSize3D, KeypointId, Position3D, Scalar, Text, Translation3D};
use rerun::log::{Chunk, LogMsg};
use rerun::{
    AnnotationContext, Boxes3D, Component, ComponentDescriptor, Points3D, Scalars, StateChange,
    StoreKind, TextDocument, TextLog, ViewCoordinates,
};
use skelseg::io::{ClassMap, Interval};
use skelseg::viz::{Visualizer, VizMsg, VizSender, VizTarget};
use skelseg::{Body, Frame, Joint, NUM_JOINTS, Tracking};

const CLASSES: [&str; 4] = ["background", "walk", "drink water", "sit down"];

fn classes() -> ClassMap {
    ClassMap::new(CLASSES.iter().map(|s| s.to_string()).collect())
}

/// Joint `j` of body `b` at frame `f`: distinct per (b, f, j) so the test can check values.
fn joint_pos(b: usize, f: u64, j: usize) -> [f32; 3] {
    [0.1 * j as f32 - b as f32, 1.0 + 0.01 * f as f32, 2.5 + 0.001 * j as f32]
}

fn frame(index: u64, fps: f64, bodies: usize) -> Frame {
    let bodies = (0..bodies)
        .map(|b| {
            let mut joints = [Joint::default(); NUM_JOINTS];
            for (j, joint) in joints.iter_mut().enumerate() {
                // Hand tips and thumbs untracked, feet inferred: exercises every colour.
                let tracking = match j {
                    21..=24 => Tracking::NotTracked,
                    15 | 19 => Tracking::Inferred,
                    _ => Tracking::Tracked,
                };
                *joint = Joint { pos: joint_pos(b, index, j), tracking };
            }
            Body { id: 100 + b as u64, joints }
        })
        .collect();
    Frame { index, timestamp_secs: index as f64 / fps, bodies }
}

/// Softmax-free but distinct probabilities; the arg-max is class `(f / 10) % 4`.
fn probs(f: u64) -> Vec<f32> {
    let best = ((f / 10) % 4) as usize;
    (0..CLASSES.len()).map(|c| if c == best { 0.7 } else { 0.1 } + 0.001 * f as f32).collect()
}

fn scores(stream: &str, f: u64, fps: f64) -> VizMsg {
    VizMsg::Scores {
        stream: stream.into(),
        frame: f,
        timestamp_secs: f as f64 / fps,
        probs: probs(f),
        boundary_prob: if f.is_multiple_of(10) { 0.9 } else { 0.05 },
    }
}

/// Recording-store chunks of an `.rrd`, decoded by rerun.
fn read_rrd(path: &Path) -> Vec<Chunk> {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open .rrd"));
    let mut chunks = Vec::new();
    for msg in DecoderApp::decode_eager(file).expect("an .rrd header") {
        if let LogMsg::ArrowMsg(store_id, arrow_msg) = msg.expect("a decodable message")
            && store_id.kind() == StoreKind::Recording
        {
            chunks.push(Chunk::from_arrow_msg(&arrow_msg).expect("a chunk"));
        }
    }
    chunks
}

/// Entity paths of the blueprint chunks and the number of blueprint activations in an `.rrd`.
fn read_blueprints(path: &Path) -> (Vec<String>, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open .rrd"));
    let (mut paths, mut activations) = (Vec::new(), 0);
    for msg in DecoderApp::decode_eager(file).expect("an .rrd header") {
        match msg.expect("a decodable message") {
            LogMsg::ArrowMsg(store_id, arrow_msg) if store_id.kind() == StoreKind::Blueprint => {
                paths.push(
                    Chunk::from_arrow_msg(&arrow_msg).expect("a chunk").entity_path().to_string(),
                );
            }
            LogMsg::BlueprintActivationCommand(_) => activations += 1,
            _ => {}
        }
    }
    (paths, activations)
}

/// `(time on `timeline`, values)` of every temporal row of `path` that has `desc`, time-sorted.
fn rows<C: Component + Clone>(
    chunks: &[Chunk],
    path: &str,
    timeline: &'static str,
    desc: &ComponentDescriptor,
) -> Vec<(i64, Vec<C>)> {
    let mut out = Vec::new();
    for chunk in chunks.iter().filter(|c| c.entity_path().to_string() == path && !c.is_static()) {
        let times = chunk.iter_component_indices(timeline.into(), desc.component);
        let values = chunk.iter_component::<C>(desc.component);
        out.extend(times.zip(values).map(|((t, _), v)| (t.as_i64(), v.to_vec())));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

fn has_static(chunks: &[Chunk], path: &str, desc: &ComponentDescriptor) -> bool {
    chunks.iter().any(|c| {
        c.entity_path().to_string() == path
            && c.is_static()
            && c.component_descriptors().any(|d| d.component == desc.component)
    })
}

fn texts(rows: &[(i64, Vec<Text>)]) -> Vec<(i64, String)> {
    rows.iter().map(|(t, v)| (*t, v.iter().map(|s| s.as_str()).collect())).collect()
}

fn scalars(rows: &[(i64, Vec<Scalar>)]) -> Vec<(i64, f64)> {
    rows.iter().map(|(t, v)| (*t, v[0].0.0)).collect()
}

#[test]
fn saved_rrd_holds_the_entity_tree_of_two_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.rrd");
    let viz = Visualizer::start(&VizTarget::Save(path.clone()), "skelseg_test", &classes())
        .unwrap()
        .expect("save starts a visualiser");
    let tx: VizSender = viz.sender();

    // Stream A: 30 frames with two bodies, labels known. Stream B: 20 frames with one body, then
    // 5 empty frames (the skeleton is cleared).
    let (a, b) = ("kinect-1", "tcp 127.0.0.1:5000");
    let fps = 30.0;
    tx.send(VizMsg::GroundTruth {
        stream: a.into(),
        intervals: vec![
            Interval { class: 1, start: 0, end: 11 },
            Interval { class: 2, start: 12, end: 29 },
        ],
    });
    for f in 0..30 {
        tx.send(VizMsg::Frame { stream: a.into(), frame: frame(f, fps, 2) });
        tx.send(VizMsg::Frame { stream: b.into(), frame: frame(f, fps, usize::from(f < 20)) });
        // Scores lag the frames by the model's delay: finalised frames only.
        if f >= 4 {
            tx.send(scores(a, f - 4, fps));
        }
    }
    for f in 0..25 {
        tx.send(scores(b, f, fps));
    }
    let segments = [(a, 1, 0, 9, 0.91), (a, 2, 10, 25, 0.8), (b, 3, 0, 24, 0.66)];
    for &(stream, class, start_frame, end_frame, confidence) in &segments {
        tx.send(VizMsg::Segment {
            stream: stream.into(),
            class,
            start_frame,
            end_frame,
            confidence,
        });
    }
    assert_eq!(viz.dropped(), 0);
    viz.finish().unwrap();

    let chunks = read_rrd(&path);
    let (ra, rb) = ("/stream/kinect-1", "/stream/tcp_127_0_0_1_5000");

    // Bones come from one static annotation context at the root.
    assert!(has_static(&chunks, "/", &AnnotationContext::descriptor_context()));

    // Skeletons: 25 keypoints per body per frame, with the positions sent.
    let pos = Points3D::descriptor_positions();
    for (root, slot, frames) in [(ra, 0, 30), (ra, 1, 30), (rb, 0, 20)] {
        let body = format!("{root}/skeleton/body{slot}");
        let got = rows::<Position3D>(&chunks, &body, "frame", &pos);
        assert_eq!(got.len(), frames, "{body}");
        for (i, (t, points)) in got.iter().enumerate() {
            assert_eq!(*t, i as i64, "{body}");
            assert_eq!(points.len(), NUM_JOINTS, "{body} frame {t}");
            for (j, p) in points.iter().enumerate() {
                assert_eq!([p.x(), p.y(), p.z()], joint_pos(slot, i as u64, j));
            }
        }
        let ids = rows::<KeypointId>(&chunks, &body, "frame", &Points3D::descriptor_keypoint_ids());
        assert!(ids.iter().all(|(_, k)| k.iter().map(|k| k.0.0).eq(0..NUM_JOINTS as u16)));
        let class = rows::<ClassId>(&chunks, &body, "frame", &Points3D::descriptor_class_ids());
        assert!(class.iter().all(|(_, c)| c.len() == 1 && c[0].0.0 == slot as u16));
        // Sensor time rides along: frame i at i / fps seconds.
        let nanos = rows::<Position3D>(&chunks, &body, "sensor_time", &pos);
        assert_eq!(nanos.len(), frames);
        for (i, (t, _)) in nanos.iter().enumerate() {
            assert!((*t as f64 - i as f64 / fps * 1e9).abs() < 1e3, "{body}: {t} ns");
        }
    }
    assert!(rows::<Position3D>(&chunks, &format!("{rb}/skeleton/body1"), "frame", &pos).is_empty());
    // Stream B's body leaves at frame 20: one clear row there.
    let cleared: Vec<i64> = chunks
        .iter()
        .filter(|c| c.entity_path().to_string() == format!("{rb}/skeleton/body0"))
        .flat_map(|c| {
            c.iter_component_indices(
                "frame".into(),
                rerun::Clear::descriptor_is_recursive().component,
            )
            .map(|(t, _)| t.as_i64())
            .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(cleared, vec![20]);

    // The 3D view frames the whole body: a static box at skeleton/bounds (inside the view's
    // origin) holds every measured joint the stream showed, and the view coordinates say y is up.
    assert!(has_static(&chunks, &format!("{ra}/skeleton"), &ViewCoordinates::descriptor_xyz()));
    for (root, bodies) in [(ra, 2), (rb, 1)] {
        let path = format!("{root}/skeleton/bounds");
        let last = chunks
            .iter()
            .rfind(|c| c.entity_path().to_string() == path && c.is_static())
            .unwrap_or_else(|| panic!("no static box at {path}"));
        let centre = last.iter_component::<Translation3D>(Boxes3D::descriptor_centers().component);
        let half = last.iter_component::<HalfSize3D>(Boxes3D::descriptor_half_sizes().component);
        let (c, h) = (centre.into_iter().next().unwrap()[0], half.into_iter().next().unwrap()[0]);
        let (c, h) = ([c.x(), c.y(), c.z()], [h.x(), h.y(), h.z()]);
        for b in 0..bodies {
            for f in 0..30u64 {
                for j in 0..21 {
                    let p = joint_pos(b, f, j);
                    assert!(
                        (0..3).all(|k| (p[k] - c[k]).abs() <= h[k] + 1e-5),
                        "{path}: joint {j} of body {b} at frame {f} {p:?} outside {c:?} ± {h:?}"
                    );
                }
            }
        }
        // Tight around the joints plus 0.3 m in x (bodies span x = -1..2 in A, 0..2 in B); the
        // test's bodies are only 0.29 m tall and 0.02 m deep, so y and z get the 2 m × 1.2 m
        // minimum that fits a standing adult.
        let want = [if bodies == 2 { 1.8 } else { 1.3 }, 1.0, 0.6];
        assert!((0..3).all(|k| (h[k] - want[k]).abs() < 1e-4), "{path}: {h:?}, want {want:?}");
    }

    // Label, probabilities and boundary: one row per finalised frame.
    for (root, finalised) in [(ra, 26u64), (rb, 25)] {
        let label = texts(&rows(
            &chunks,
            &format!("{root}/label"),
            "frame",
            &TextDocument::descriptor_text(),
        ));
        assert_eq!(label.len(), finalised as usize, "{root}/label");
        for (f, (t, text)) in label.iter().enumerate() {
            assert_eq!(*t, f as i64);
            let best = CLASSES[(f / 10) % 4];
            assert!(text.starts_with(&format!("## {best}\n")), "frame {f}: {text}");
        }
        for (class, name) in [(0, "background"), (1, "walk"), (2, "drink_water"), (3, "sit_down")] {
            let p = scalars(&rows(
                &chunks,
                &format!("{root}/probs/{name}"),
                "frame",
                &Scalars::descriptor_scalars(),
            ));
            let want: Vec<(i64, f64)> =
                (0..finalised).map(|f| (f as i64, f64::from(probs(f)[class]))).collect();
            assert_eq!(p, want, "{root}/probs/{name}");
        }
        let boundary = scalars(&rows(
            &chunks,
            &format!("{root}/boundary"),
            "frame",
            &Scalars::descriptor_scalars(),
        ));
        assert_eq!(boundary.len(), finalised as usize);
        assert_eq!(boundary[10], (10, f64::from(0.9f32)));
        assert_eq!(boundary[11], (11, f64::from(0.05f32)));
    }
    // The series carry the class names, not the path-safe ones.
    assert!(has_static(
        &chunks,
        &format!("{ra}/probs/drink_water"),
        &rerun::SeriesLines::descriptor_names()
    ));

    // Committed segments: text entries at their first frame, and a class-id band.
    let log =
        texts(&rows(&chunks, &format!("{ra}/segments"), "frame", &TextLog::descriptor_text()));
    assert_eq!(
        log,
        vec![
            (0, "walk: frames 0–9 (confidence 0.91)".to_owned()),
            (10, "drink water: frames 10–25 (confidence 0.80)".to_owned()),
        ]
    );
    let log =
        texts(&rows(&chunks, &format!("{rb}/segments"), "frame", &TextLog::descriptor_text()));
    assert_eq!(log, vec![(0, "sit down: frames 0–24 (confidence 0.66)".to_owned())]);
    let band = scalars(&rows(
        &chunks,
        &format!("{ra}/segment_class"),
        "frame",
        &Scalars::descriptor_scalars(),
    ));
    assert_eq!(band, vec![(0, 1.0), (9, 1.0), (10, 2.0), (25, 2.0)]);
    let lane = texts(&rows(
        &chunks,
        &format!("{ra}/timeline/predicted"),
        "frame",
        &StateChange::descriptor_state(),
    ));
    assert_eq!(
        lane,
        vec![
            (0, "walk".into()),
            (10, String::new()),
            (10, "drink water".into()),
            (26, String::new())
        ]
    );

    // Ground truth in the same form, for the labelled stream only.
    let gt =
        texts(&rows(&chunks, &format!("{ra}/gt/segments"), "frame", &TextLog::descriptor_text()));
    assert_eq!(
        gt,
        vec![(0, "walk: frames 0–11".to_owned()), (12, "drink water: frames 12–29".to_owned())]
    );
    let gt_band = scalars(&rows(
        &chunks,
        &format!("{ra}/gt/segment_class"),
        "frame",
        &Scalars::descriptor_scalars(),
    ));
    assert_eq!(gt_band, vec![(0, 1.0), (11, 1.0), (12, 2.0), (29, 2.0)]);
    assert!(
        rows::<Text>(&chunks, &format!("{rb}/gt/segments"), "frame", &TextLog::descriptor_text())
            .is_empty()
    );

    // A layout is sent each time a stream appears.
    let (blueprint_paths, activations) = read_blueprints(&path);
    assert_eq!(activations, 2);
    assert!(blueprint_paths.iter().any(|p| p.starts_with("/view/")), "{blueprint_paths:?}");
    assert!(blueprint_paths.iter().any(|p| p.starts_with("/container/")), "{blueprint_paths:?}");

    // Every temporal chunk of the stream trees is on the `frame` timeline.
    let mut entities: BTreeMap<String, usize> = BTreeMap::new();
    for c in chunks.iter().filter(|c| !c.is_static()) {
        assert!(c.timelines().contains_key(&"frame".into()), "{}", c.entity_path());
        *entities.entry(c.entity_path().to_string()).or_default() += c.num_rows();
    }
    assert!(entities.keys().all(|e| e.starts_with(ra) || e.starts_with(rb)), "{entities:?}");
}

/// Throughput of the viz thread when saving: the producer keeps the queue below capacity, so no
/// message is dropped and the rate is what the thread sustains. Run with `--nocapture` to see it.
#[test]
fn viz_thread_throughput_when_saving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("throughput.rrd");
    // PKU-MMD-sized class map: 51 actions + background.
    let names: Vec<String> = (0..52).map(|c| format!("action {c}")).collect();
    let viz =
        Visualizer::start(&VizTarget::Save(path.clone()), "skelseg_bench", &ClassMap::new(names))
            .unwrap()
            .expect("save starts a visualiser");
    let tx = viz.sender();
    let n = 3000u64;

    let paced = |msg: VizMsg| {
        while tx.queued() > skelseg::viz::QUEUE_CAPACITY / 2 {
            std::thread::yield_now();
        }
        tx.send(msg);
    };
    let drain = || {
        while tx.queued() > 0 {
            std::thread::yield_now();
        }
    };
    let start = Instant::now();
    for f in 0..n {
        paced(VizMsg::Frame { stream: "s".into(), frame: frame(f, 30.0, 2) });
    }
    drain();
    let frames_per_s = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for f in 0..n {
        paced(VizMsg::Scores {
            stream: "s".into(),
            frame: f,
            timestamp_secs: f as f64 / 30.0,
            probs: vec![1.0 / 52.0; 52],
            boundary_prob: 0.1,
        });
    }
    drain();
    let scores_per_s = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    assert_eq!(viz.dropped(), 0);
    viz.finish().unwrap();
    eprintln!(
        "viz thread (save): {frames_per_s:.0} skeleton frames/s (2 bodies), {scores_per_s:.0} \
         score msgs/s (52 classes); final flush {:.2} s",
        start.elapsed().as_secs_f64()
    );

    let chunks = read_rrd(&path);
    let skeleton = rows::<Position3D>(
        &chunks,
        "/stream/s/skeleton/body1",
        "frame",
        &Points3D::descriptor_positions(),
    );
    assert_eq!(skeleton.len(), n as usize);
    let label = rows::<Text>(&chunks, "/stream/s/label", "frame", &TextDocument::descriptor_text());
    assert_eq!(label.len(), n as usize);
    // Far above any sensor rate (30 fps per stream): the viewer is not the bottleneck.
    // The rates above are printed for the record; speed is measured in benchmarks, not asserted
    // by a test that runs on a busy CI machine.
}
