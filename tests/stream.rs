//! The streaming runtime end to end: sources, the threaded pipeline, the synchronous
//! segmenter, batching across streams, faults on real loopback sockets.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use skelseg::io::{self, Recording};
use skelseg::model::checkpoint::{self, LoadedModel};
use skelseg::source::{self, NetConfig, NetSource, Pacing, ReplaySource};
use skelseg::stream::{PipelineBuilder, SegmentEvent, StreamConfig, StreamSegmenter};
use tch::Device;

/// The bundled model, read once per test binary from a private copy (so two loads in one test
/// always see the same weights).
fn model() -> LoadedModel {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = COPY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
        let dst = dir.path().join("synth.safetensors");
        std::fs::copy(&src, &dst).expect("copying the bundled weights");
        std::fs::copy(src.with_extension("json"), dst.with_extension("json"))
            .expect("copying the bundled config");
        (dir, dst)
    });
    checkpoint::load(path, Device::Cpu).expect("the bundled model loads")
}

fn bundled() -> Recording {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth/skeleton/synth_0000.txt");
    io::read_recording(path).expect("the bundled sequence reads")
}

/// `(class, start, end)` of the committed segments, in order.
fn segments(events: &[SegmentEvent]) -> Vec<(usize, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match *e {
            SegmentEvent::SegmentEnded { class, start_frame, end_frame, .. } => {
                Some((class, start_frame, end_frame))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_synchronous_segmenter_tiles_the_recording_and_flushes_at_the_end() {
    let rec = bundled();
    let mut seg = StreamSegmenter::new(model(), "t").unwrap();
    let mut events = Vec::new();
    for f in &rec.frames {
        events.extend(seg.push(f).unwrap());
    }
    let before_finish = segments(&events).len();
    events.extend(seg.finish().unwrap());
    let segs = segments(&events);
    assert!(segs.len() > before_finish, "finish closes the open segment");
    assert_eq!(segs[0].1, 0);
    assert_eq!(segs.last().unwrap().2, rec.frames.len() as u64 - 1);
    for pair in segs.windows(2) {
        assert_eq!(pair[1].1, pair[0].2 + 1, "segments are contiguous: {segs:?}");
    }
    assert!(
        matches!(events.last(), Some(SegmentEvent::StreamEnded { frames, .. }) if *frames == rec.frames.len() as u64)
    );
    assert_eq!(seg.counters().finalised, 0, "finish resets the stream");
}

#[test]
fn pushing_a_recording_in_batches_gives_the_events_of_pushing_it_frame_by_frame() {
    let rec = bundled();
    let run = |batch: usize| {
        let mut seg = StreamSegmenter::new(model(), "t").unwrap();
        let mut events = Vec::new();
        for frames in rec.frames.chunks(batch) {
            events.extend(seg.push_many(frames).unwrap());
        }
        events.extend(seg.finish().unwrap());
        (events, seg.counters().clone())
    };
    let (one, _) = run(1);
    let (batched, _) = run(128);
    assert!(segments(&one).len() > 1);
    assert_eq!(segments(&batched), segments(&one));
    // Confidences are means of probabilities that agree to float rounding (see the engine test).
    for (a, b) in batched.iter().zip(&one) {
        if let (
            SegmentEvent::SegmentEnded { confidence: x, .. },
            SegmentEvent::SegmentEnded { confidence: y, .. },
        ) = (a, b)
        {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}

/// Issue 12: the builder names the stream, starts from the checkpoint's settings unless told
/// otherwise, and hands every event to `on_event` as well as returning it.
#[test]
fn the_builder_names_the_stream_and_calls_on_event_with_every_returned_event() {
    let rec = bundled();
    let frames = &rec.frames[..300];
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let loaded = skelseg::Model::from(model());
    let implied = StreamConfig::from_checkpoint(loaded.meta());
    let mut seg = StreamSegmenter::builder(loaded)
        .stream("camera-1")
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    assert_eq!(seg.stream(), "camera-1");
    assert_eq!(seg.engine_config().window_frames, implied.engine.window_frames);
    let mut returned = Vec::new();
    for f in frames {
        returned.extend(seg.push(f).unwrap());
    }
    returned.extend(seg.finish().unwrap());
    assert!(segments(&returned).len() >= 2, "{returned:?}");
    assert_eq!(*seen.lock().unwrap(), returned);
    assert!(returned.iter().all(|e| e.stream() == "camera-1"));
    assert!(matches!(
        returned.last(),
        Some(SegmentEvent::StreamEnded {
            frames: 300,
            reason: skelseg::source::EndReason::Finished,
            ..
        })
    ));

    // `.config()` replaces the checkpoint's settings.
    let mut cfg = implied.clone();
    cfg.engine.window_frames = 64;
    cfg.engine.lookahead_frames = 8;
    let seg = StreamSegmenter::builder(model()).config(cfg).build().unwrap();
    assert_eq!((seg.engine_config().window_frames, seg.stream()), (64, "stream"));
}

#[test]
fn send_over_tcp_yields_the_same_segments_as_replaying_the_file() {
    // The file is the NDJSON form of the bundled sequence, so that both paths see exactly the
    // same numbers (the wire carries 5 decimals: 10 µm).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundled.ndjson");
    io::ndjson::write_recording(&file, &bundled()).unwrap();
    let rec = io::read_recording(&file).unwrap();
    // One intra-op thread makes every reduction run in the same order on both paths.
    tch::set_num_threads(1);
    let direct = PipelineBuilder::new(model())
        .source(ReplaySource::new(rec.clone(), Pacing::AsFastAsPossible).unwrap())
        .start()
        .unwrap();
    let (_, direct_events) = direct.wait().unwrap();

    // Sent as fast as possible, a live source drops its oldest frames once its queue is full
    // (newest wins); a queue that holds the whole recording keeps every frame.
    let net = NetConfig { queue_frames: rec.frames.len() + 16, ..NetConfig::DEFAULT };
    let listener = NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &net).unwrap();
    let addr: SocketAddr = listener.local_addr();
    // A live source may skip windows when it falls behind; sent as fast as possible it would,
    // so this comparison turns catching up off: every window runs on both paths.
    let loaded = model();
    let mut live_cfg = StreamConfig::from_checkpoint(&loaded.meta);
    live_cfg.engine.catch_up = false;
    let live = PipelineBuilder::new(loaded).config(live_cfg).source(listener).start().unwrap();
    let sent = source::send_recording(&rec, addr, source::Proto::Tcp, None).unwrap();
    assert_eq!(sent.frames, rec.frames.len() as u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut live_events = Vec::new();
    while Instant::now() < deadline {
        match live.events().recv_timeout(Duration::from_millis(100)) {
            Ok(e) => {
                let done = matches!(e, SegmentEvent::StreamEnded { .. });
                live_events.push(e);
                if done {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let (stats, rest) = live.shutdown().unwrap();
    assert_eq!(stats.sources[0].frames, rec.frames.len() as u64);
    assert_eq!(stats.sources[0].dropped_overflow, 0);
    live_events.extend(rest);
    assert!(!segments(&direct_events).is_empty());
    assert_eq!(segments(&live_events), segments(&direct_events));
}

#[test]
fn bad_clients_do_not_disturb_a_good_stream_and_shutdown_flushes_everything() {
    let rec = bundled();
    // Frames are sent as fast as possible: a queue that holds them all keeps the live source
    // from dropping the oldest (newest wins), so every frame reaches the segmenter.
    let net = NetConfig { queue_frames: rec.frames.len() + 16, ..NetConfig::DEFAULT };
    let listener = NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &net).unwrap();
    let addr = listener.local_addr();
    let pipeline = PipelineBuilder::new(model()).source(listener).start().unwrap();

    // A client sending garbage, NaNs and a wrong joint count, then vanishing mid-line.
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.write_all(b"not json\n{\"type\":\"frame\",\"bodies\":[{\"joint_positions\":[[1,2,3]]}]}\n")
        .unwrap();
    bad.write_all(b"{\"type\":\"frame\",\"bodies\":[{\"joint_pos").unwrap();
    drop(bad);

    // A good client sends half the recording and stays connected: shutdown must flush it.
    let mut half = rec.clone();
    half.frames.truncate(rec.frames.len() / 2);
    let mut good = TcpStream::connect(addr).unwrap();
    good.write_all(
        format!("{}\n", io::ndjson::encode_header(&io::ndjson::Header::canonical(Some(30.0))))
            .as_bytes(),
    )
    .unwrap();
    for f in &half.frames {
        good.write_all(format!("{}\n", io::ndjson::encode_frame(f)).as_bytes()).unwrap();
    }
    good.flush().unwrap();
    // Wait until every good frame reached the worker.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.stats().sources[0].frames < half.frames.len() as u64 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (stats, events) = pipeline.shutdown().unwrap();
    drop(good);
    let src = stats.sources[0];
    assert_eq!(src.frames, half.frames.len() as u64);
    assert!(src.skipped_malformed >= 2, "{src:?}");
    assert!(src.skipped_invalid_joints >= 1, "{src:?}");
    assert_eq!(src.dropped_overflow, 0, "{src:?}");
    // The good stream's segments tile all of its frames, closed by the shutdown.
    let good_stream = events
        .iter()
        .find_map(|e| match e {
            SegmentEvent::StreamEnded { stream, frames, .. } if *frames > 0 => Some(stream.clone()),
            _ => None,
        })
        .expect("the good stream ended");
    let segs: Vec<_> =
        segments(&events.iter().filter(|e| e.stream() == good_stream).cloned().collect::<Vec<_>>());
    assert_eq!(segs.first().map(|s| s.1), Some(0));
    assert_eq!(segs.last().map(|s| s.2), Some(half.frames.len() as u64 - 1));
}

/// `(class, start, end)` of the `segment_ended` lines `skelseg stream --json` prints.
fn cli_segments(model: &Path, recording: &Path) -> Vec<(usize, u64, u64)> {
    let source = format!("file:{}", recording.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .args(["stream", "--source", &source, "--json", "--device", "cpu", "--threads", "1"])
        .arg("--model")
        .arg(model)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<SegmentEvent> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    segments(&events)
}

/// A copy of the bundled model in `dir` whose config `edit` changed (the weights are the same).
fn edited_model(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    let dst = dir.join("edited.safetensors");
    std::fs::copy(&src, &dst).expect("copying the bundled weights");
    let text = std::fs::read_to_string(src.with_extension("json")).expect("the bundled config");
    let mut meta: serde_json::Value = serde_json::from_str(&text).expect("the config is JSON");
    edit(&mut meta);
    std::fs::write(dst.with_extension("json"), meta.to_string()).expect("writing the config");
    dst
}

#[test]
fn the_cli_the_synchronous_segmenter_and_the_pipeline_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("fixtures/synth/skeleton/synth_0001.txt");
    let rec = io::read_recording(&path).expect("the fixture reads");
    // The binary runs one intra-op thread; so do this thread and the pipeline's worker, so that
    // every reduction runs in the same order.
    tch::set_num_threads(1);
    // The bundled model, and the same weights with settings far from the library's defaults:
    // boundary peaks all but off, and training segments ten times as long. The library's
    // defaults segment this recording differently from either.
    let dir = tempfile::tempdir().unwrap();
    let edited = edited_model(dir.path(), |meta| {
        meta["model"]["boundary_threshold"] = 0.99.into();
        for m in meta["data"]["mean_segment_frames"].as_array_mut().expect("per-class means") {
            *m = (m.as_f64().expect("a number") * 10.0).into();
        }
    });
    for model_path in [root.join("fixtures/models/synth.safetensors"), edited] {
        let model = model_path.display();
        let cli = cli_segments(&model_path, &path);
        assert!(cli.len() >= 3, "{model}: {cli:?}");

        let loaded = || checkpoint::load(&model_path, Device::Cpu).expect("the model loads");
        let mut seg = StreamSegmenter::new(loaded(), "t").unwrap();
        let mut events = Vec::new();
        for f in &rec.frames {
            events.extend(seg.push(f).unwrap());
        }
        events.extend(seg.finish().unwrap());
        assert_eq!(segments(&events), cli, "{model}: StreamSegmenter vs skelseg stream");

        let pipeline = PipelineBuilder::new(loaded())
            .source(ReplaySource::new(rec.clone(), Pacing::AsFastAsPossible).unwrap())
            .start()
            .unwrap();
        let (_, events) = pipeline.wait().unwrap();
        assert_eq!(segments(&events), cli, "{model}: Pipeline vs skelseg stream");
    }
}

/// `online::evaluate_segmenters` runs the model once and replays each segmenter setting over
/// the finalised frames; every setting must score exactly what streaming the recordings
/// through `StreamSegmenter` with that setting gives.
#[cfg(feature = "train")]
#[test]
fn replayed_segmenter_settings_score_like_streaming_with_each() {
    use skelseg::metrics::{MetricsAccumulator, Variant};
    use skelseg::stream::{SegmentRule, SegmenterConfig};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth");
    let dataset = io::dataset::read_dataset(dir, io::dataset::DatasetFormat::Pku).unwrap();
    let recs: Vec<&Recording> = dataset.recordings.iter().collect();
    assert_eq!(recs.len(), 4);
    let base = StreamConfig::from_checkpoint(&model().meta);
    let settings = [
        base.segmenter.clone(),
        SegmenterConfig { rule: SegmentRule::Majority, ..base.segmenter.clone() },
        SegmenterConfig { min_mean_prob: 0.9, min_frames: 30, ..base.segmenter.clone() },
    ];
    let reports = skelseg::online::evaluate_segmenters(model(), &recs, &base, &settings).unwrap();
    assert_eq!(reports.len(), settings.len());
    for (setting, report) in settings.iter().zip(&reports) {
        let cfg = StreamConfig { segmenter: setting.clone(), ..base.clone() };
        let mut acc = MetricsAccumulator::new(Variant::Asrf, vec![0]);
        let mut segments = 0;
        for rec in &recs {
            let run = skelseg::online::stream_recording(model(), rec, &cfg).unwrap();
            acc.add(&run.labels, &rec.frame_labels().unwrap()).unwrap();
            segments += run.segments.len();
        }
        let direct = acc.finish();
        assert_eq!(report.scores, direct, "{setting:?}");
        assert!(report.overseg_ratio > 0.0 && segments > 0);
    }
    // The settings differ, so the replay is not returning one result three times.
    assert_ne!(reports[0].scores, reports[2].scores);
}
