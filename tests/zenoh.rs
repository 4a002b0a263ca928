//! Scale-out over Zenoh on loopback: in-process peers around a router with an explicit
//! endpoint, multicast scouting off. Streams are shared by rendezvous, fail over within a
//! second, and never publish a committed segment twice.
#![cfg(feature = "zenoh")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use skelseg::cluster::{self, EventSink, SinkStats, Worker, ZenohConfig, ZenohSendOptions};
use skelseg::io::{self, Recording};
use skelseg::model::checkpoint::{self, LoadedModel};
use skelseg::source::zenoh::{ZenohSource, ZenohSourceConfig};
use skelseg::source::{FrameSource, NetConfig, Pacing, ReplaySource, SourceEvent, SourcePoll};
use skelseg::stream::{Pipeline, PipelineBuilder, SegmentEvent, StreamConfig};
use tch::Device;
use zenoh::Wait;

/// The heavy tests share two cores: one at a time keeps the timing checks meaningful.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn model() -> LoadedModel {
    // One intra-op thread (carried over to the pipeline's worker) makes every reduction run in
    // the same order on every path.
    tch::set_num_threads(1);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    checkpoint::load(&path, Device::Cpu).expect("the bundled model loads")
}

/// The synthetic recordings as they travel on the wire (5 decimals), so that every path sees
/// the same numbers.
fn recordings() -> Vec<Recording> {
    let dir = scratch("recordings");
    (0..4)
        .map(|i| {
            let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("fixtures/synth/skeleton/synth_000{i}.txt"));
            let file = dir.join(format!("synth_{i}.ndjson"));
            io::ndjson::write_recording(&file, &io::read_recording(&src).unwrap()).unwrap();
            io::read_recording(&file).unwrap()
        })
        .collect()
}

/// A fresh folder of this test process under the system's temporary folder.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("skelseg-zenoh-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(class, start, end)` of committed segments.
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

/// The settings of the comparison: every window runs (as in a replay), and at hop 1, so that
/// the window phase a pipeline gives each stream it creates does not matter.
fn exact_config(m: &LoadedModel) -> StreamConfig {
    let mut cfg = StreamConfig::from_checkpoint(&m.meta);
    cfg.engine.catch_up = false;
    cfg.engine.hop_frames = 1;
    cfg
}

/// Replays `rec` through the in-process pipeline, as `skelseg stream --source file:` does.
fn replayed(rec: &Recording) -> Vec<(usize, u64, u64)> {
    let m = model();
    let cfg = exact_config(&m);
    let pipeline = PipelineBuilder::new(m)
        .config(cfg)
        .source(ReplaySource::new(rec.clone(), Pacing::AsFastAsPossible).unwrap())
        .start()
        .unwrap();
    segments(&pipeline.wait().unwrap().1)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A router on an explicit loopback endpoint; everyone else connects to it.
struct Net {
    endpoint: String,
    _router: zenoh::Session,
}

impl Net {
    fn new() -> Self {
        let endpoint = format!("tcp/127.0.0.1:{}", free_port());
        let mut config = ZenohConfig { listen: vec![endpoint.clone()], ..ZenohConfig::default() }
            .to_zenoh()
            .unwrap();
        config.insert_json5("mode", r#""router""#).unwrap();
        let router = zenoh::open(config).wait().expect("the router opens");
        Net { endpoint, _router: router }
    }

    fn session(&self) -> zenoh::Session {
        ZenohConfig { connect: vec![self.endpoint.clone()], ..ZenohConfig::default() }
            .open()
            .expect("a peer opens")
    }
}

/// The events published under a prefix, as `(stream, object)`.
struct Observer {
    events: Arc<Mutex<Vec<(String, Value)>>>,
    _sub: zenoh::pubsub::Subscriber<()>,
    _session: zenoh::Session,
}

impl Observer {
    fn new(net: &Net, prefix: &str) -> Self {
        let session = net.session();
        let events = Arc::new(Mutex::new(Vec::new()));
        let base = format!("{prefix}/events/");
        let sub = {
            let events = events.clone();
            session
                .declare_subscriber(format!("{base}**"))
                .callback(move |sample| {
                    let stream = sample.key_expr().as_str().strip_prefix(&base).unwrap().to_owned();
                    let value: Value =
                        serde_json::from_slice(&sample.payload().to_bytes()).unwrap();
                    events.lock().unwrap().push((stream, value));
                })
                .wait()
                .unwrap()
        };
        Observer { events, _sub: sub, _session: session }
    }

    fn of(&self, stream: &str) -> Vec<Value> {
        let events = self.events.lock().unwrap();
        events.iter().filter(|(s, _)| s == stream).map(|(_, v)| v.clone()).collect()
    }

    fn ended(&self, stream: &str) -> bool {
        self.of(stream).iter().any(|v| v["type"] == "stream_ended")
    }

    fn wait_ended(&self, streams: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !streams.iter().all(|s| self.ended(s)) {
            assert!(Instant::now() < deadline, "streams not ended in {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn decoded(values: &[Value]) -> Vec<SegmentEvent> {
    values
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("worker");
            serde_json::from_value(v).unwrap()
        })
        .collect()
}

/// A worker: its pipeline publishes every event through an [`EventSink`].
struct TestWorker {
    worker: Arc<Worker>,
    pipeline: Option<Pipeline>,
    sink: Box<dyn Fn() -> SinkStats>,
}

impl TestWorker {
    /// `exact`: every window runs, as in a replay, so the segments can be compared; otherwise
    /// a worker that falls behind skips windows (the live default) and keeps the pace.
    fn start(net: &Net, prefix: &str, id: &str, exact: bool) -> Self {
        let worker = Worker::join(net.session(), prefix, Some(id)).unwrap();
        let sink = EventSink::new(&worker).unwrap();
        let sink_stats = sink.stats_handle();
        let cfg = ZenohSourceConfig {
            net: NetConfig { queue_frames: 50_000, ..NetConfig::DEFAULT },
            ..ZenohSourceConfig::default()
        };
        let source = ZenohSource::open(&worker, &format!("{prefix}/frames/**"), cfg).unwrap();
        let loaded = model();
        let stream_cfg =
            if exact { exact_config(&loaded) } else { StreamConfig::from_checkpoint(&loaded.meta) };
        let pipeline = PipelineBuilder::new(loaded)
            .config(stream_cfg)
            .source(source)
            .event_channel(false)
            .on_event(sink.into_callback())
            .start()
            .unwrap();
        TestWorker { worker, pipeline: Some(pipeline), sink: Box::new(sink_stats) }
    }

    fn stop(&mut self) {
        if let Some(p) = self.pipeline.take() {
            p.shutdown().unwrap();
        }
    }
}

fn wait_members(workers: &[&TestWorker], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers.iter().all(|w| w.worker.members().len() == n) {
        assert!(Instant::now() < deadline, "membership did not settle");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stream names: `per_worker` owned by each of `ids` (rendezvous), so every worker has work.
fn streams_for(ids: &[&str], per_worker: usize) -> Vec<String> {
    let mut picked: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let name = format!("bed{i}");
        let owner = cluster::owner(ids.iter().copied(), &name).unwrap();
        let list = picked.entry(owner).or_default();
        if list.len() < per_worker {
            list.push(name);
        }
        if ids.iter().all(|id| picked.get(id).is_some_and(|l| l.len() == per_worker)) {
            break;
        }
    }
    picked.into_values().flatten().collect()
}

/// Publishes `recs[i % len]` on every stream, each from its own thread.
fn publish(
    net: &Net,
    prefix: &str,
    streams: &[String],
    recs: &[Recording],
    fps: Option<f64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let session = net.session();
    streams
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (session, rec) = (session.clone(), recs[i % recs.len()].clone());
            let key = cluster::frames_key(prefix, name);
            std::thread::spawn(move || {
                let options = ZenohSendOptions { fps, ..ZenohSendOptions::default() };
                let sent = cluster::send_recording(&session, &key, &rec, &options).unwrap();
                assert_eq!(sent.frames, rec.frames.len() as u64);
            })
        })
        .collect()
}

/// Committed segments of a stream never repeat and never overlap.
fn assert_disjoint(stream: &str, segs: &[(usize, u64, u64)]) {
    for pair in segs.windows(2) {
        assert!(
            pair[1].1 > pair[0].2,
            "{stream}: {:?} overlaps {:?} in {segs:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn two_workers_share_six_streams_and_publish_what_a_replay_gives() {
    let _serial = serial();
    // The first 12 s of each recording: hop 1 runs MFAI on every frame.
    let recs: Vec<Recording> = recordings()
        .into_iter()
        .map(|mut r| {
            r.frames.truncate(360);
            r
        })
        .collect();
    let expected: Vec<_> = recs.iter().map(replayed).collect();
    let net = Net::new();
    let prefix = "t_share";
    let observer = Observer::new(&net, prefix);
    let mut w1 = TestWorker::start(&net, prefix, "w1", true);
    let mut w2 = TestWorker::start(&net, prefix, "w2", true);
    wait_members(&[&w1, &w2], 2);
    let streams = streams_for(&["w1", "w2"], 3);
    // One stream at a time per worker (one sequence per worker, in parallel): each stream
    // then has its worker to itself, as a replay does.
    let publisher = net.session();
    std::thread::scope(|scope| {
        for id in ["w1", "w2"] {
            let (observer, publisher, streams, recs) = (&observer, &publisher, &streams, &recs);
            scope.spawn(move || {
                for (i, name) in streams.iter().enumerate() {
                    if cluster::owner(["w1", "w2"], name) != Some(id) {
                        continue;
                    }
                    let options = ZenohSendOptions { fps: None, ..ZenohSendOptions::default() };
                    let key = cluster::frames_key(prefix, name);
                    cluster::send_recording(publisher, &key, &recs[i % recs.len()], &options)
                        .unwrap();
                    observer.wait_ended(std::slice::from_ref(name), Duration::from_secs(120));
                }
            });
        }
    });
    observer.wait_ended(&streams, Duration::from_secs(240));
    for (i, name) in streams.iter().enumerate() {
        let values = observer.of(name);
        let owner = cluster::owner(["w1", "w2"], name).unwrap();
        assert!(values.iter().all(|v| v["worker"] == owner), "{name}: not only {owner}");
        assert_eq!(segments(&decoded(&values)), expected[i % recs.len()], "{name}");
    }
    for w in [&w1, &w2] {
        let s = (w.sink)();
        assert_eq!((s.suppressed_handover, s.clipped, s.failed), (0, 0, 0), "{s:?}");
        assert_eq!(w.worker.stats().takeovers, 0);
    }
    w1.stop();
    w2.stop();
}

#[test]
fn a_stopped_workers_streams_continue_on_the_other_within_a_second() {
    let _serial = serial();
    let recs = recordings();
    let net = Net::new();
    let prefix = "t_failover";
    let observer = Observer::new(&net, prefix);
    let mut w1 = TestWorker::start(&net, prefix, "w1", false);
    let mut w2 = TestWorker::start(&net, prefix, "w2", false);
    wait_members(&[&w1, &w2], 2);
    let streams = streams_for(&["w1", "w2"], 2);
    let publishers = publish(&net, prefix, &streams, &recs, Some(90.0));
    // Let both commit some segments, then stop w1.
    std::thread::sleep(Duration::from_millis(3000));
    // Stop w1 on another thread: its shutdown (flushing its pipeline) may take a while on a
    // busy machine, but its token goes first, and the takeover is what is timed.
    let pipeline = w1.pipeline.take().unwrap();
    let stopped = Instant::now();
    let stopper = std::thread::spawn(move || pipeline.shutdown().map(|_| ()));
    let deadline = stopped + Duration::from_secs(1);
    while w2.worker.stats().takeovers < 2 {
        assert!(
            Instant::now() < deadline,
            "w2 took over {} of 2 streams in a second",
            w2.worker.stats().takeovers
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stopper.join().unwrap().unwrap();
    for h in publishers {
        h.join().unwrap();
    }
    observer.wait_ended(&streams, Duration::from_secs(120));
    for name in &streams {
        let values = observer.of(name);
        let segs = segments(&decoded(&values));
        assert_disjoint(name, &segs);
        let last = values.last().unwrap();
        assert_eq!(last["type"], "stream_ended");
        assert_eq!(last["worker"], "w2", "{name} did not end on w2");
        if cluster::owner(["w1", "w2"], name) == Some("w1") {
            let by = |w: &str| {
                values.iter().filter(|v| v["type"] == "segment_ended" && v["worker"] == w).count()
            };
            assert!(by("w1") > 0 && by("w2") > 0, "{name}: w1 {} w2 {}", by("w1"), by("w2"));
        }
    }
    w2.stop();
}

#[test]
fn a_late_joiner_takes_over_part_without_duplicates() {
    let _serial = serial();
    let recs = recordings();
    let net = Net::new();
    let prefix = "t_join";
    let observer = Observer::new(&net, prefix);
    let mut w1 = TestWorker::start(&net, prefix, "w1", false);
    wait_members(&[&w1], 1);
    let streams = streams_for(&["w1", "w2"], 2);
    let publishers = publish(&net, prefix, &streams, &recs, Some(90.0));
    std::thread::sleep(Duration::from_millis(3000));
    let mut w2 = TestWorker::start(&net, prefix, "w2", false);
    for h in publishers {
        h.join().unwrap();
    }
    observer.wait_ended(&streams, Duration::from_secs(120));
    assert_eq!(w2.worker.stats().takeovers, 2, "{:?}", w2.worker.stats());
    assert_eq!(w1.worker.stats().handovers, 2, "{:?}", w1.worker.stats());
    for name in &streams {
        let values = observer.of(name);
        let segs = segments(&decoded(&values));
        assert_disjoint(name, &segs);
        let owner = cluster::owner(["w1", "w2"], name).unwrap();
        assert_eq!(values.last().unwrap()["worker"], owner, "{name}");
        if owner == "w2" {
            assert!(values.iter().any(|v| v["type"] == "segment_ended" && v["worker"] == "w1"));
            assert!(values.iter().any(|v| v["type"] == "segment_ended" && v["worker"] == "w2"));
        }
    }
    w1.stop();
    w2.stop();
}

#[test]
fn malformed_payloads_and_unknown_headers_are_skipped_and_counted() {
    let net = Net::new();
    let prefix = "t_bad";
    let worker = Worker::join(net.session(), prefix, Some("w")).unwrap();
    let mut source =
        ZenohSource::open(&worker, &format!("{prefix}/frames/**"), ZenohSourceConfig::default())
            .unwrap();
    let publisher = net.session();
    let key = cluster::frames_key(prefix, "cam");
    let rec = &recordings()[0];
    let header = io::ndjson::encode_header(&io::ndjson::Header::canonical(Some(30.0)));
    let payloads: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        br#"{"type":"header","format":"skeleton-ndjson/1","layout":"kinect_v9"}"#.to_vec(),
        br#"{"type":"bogus"}"#.to_vec(),
        vec![0xff, 0xfe],
        header.into_bytes(),
        io::ndjson::encode_frame(&rec.frames[0]).into_bytes(),
        br#"{"type":"frame","bodies":[{"joint_positions":[[1,2,3]]}]}"#.to_vec(),
        io::ndjson::encode_frame(&rec.frames[1]).into_bytes(),
    ];
    for p in payloads {
        publisher.put(key.as_str(), p).wait().unwrap();
    }
    publisher.delete(key.as_str()).wait().unwrap();
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the stream did not end");
        match source.next_event(Duration::from_millis(100)) {
            SourcePoll::Event(SourceEvent::Frame { stream, frame }) => {
                assert_eq!(stream.as_str(), "zenoh:cam");
                frames.push(frame.index);
            }
            SourcePoll::Event(SourceEvent::Ended { .. }) => break,
            SourcePoll::Timeout => {}
            SourcePoll::Finished => panic!("finished early"),
        }
    }
    assert_eq!(frames, [rec.frames[0].index, rec.frames[1].index]);
    let stats = source.stats();
    assert_eq!(stats.skipped_malformed, 4, "{stats:?}");
    assert_eq!(stats.skipped_invalid_joints, 1, "{stats:?}");
    assert_eq!(stats.frames, 2, "{stats:?}");
}

#[test]
fn the_cli_publishes_a_recording_and_a_worker_publishes_its_events() {
    let _serial = serial();
    let net = Net::new();
    let prefix = "t_cli";
    let observer = Observer::new(&net, prefix);
    let file = scratch("cli").join("cam.ndjson");
    io::ndjson::write_recording(&file, &recordings()[3]).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .arg("stream")
        .arg("--model")
        .arg(&model)
        .args(["--source", &format!("zenoh:{prefix}/frames/**"), "--publish-events", "zenoh"])
        .args(["--zenoh-connect", &net.endpoint, "--worker-id", "cli", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watcher that never activates sees the worker's token.
    let watcher = Worker::join(net.session(), prefix, Some("watcher")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while watcher.members() != ["cli"] {
        assert!(Instant::now() < deadline, "the CLI worker did not join: {:?}", watcher.members());
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = std::process::Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .arg("send")
        .arg("--file")
        .arg(&file)
        .args(["--to", &format!("zenoh:{prefix}/frames/cam"), "--zenoh-connect", &net.endpoint])
        .args(["--fps", "0", "--json"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let sent: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(sent["frames"], recordings()[3].frames.len());
    observer.wait_ended(&["cam".to_owned()], Duration::from_secs(120));
    worker.kill().unwrap();
    let out = worker.wait_with_output().unwrap();
    let printed: Vec<SegmentEvent> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let published = observer.of("cam");
    assert!(published.iter().all(|v| v["worker"] == "cli"));
    assert!(!segments(&printed).is_empty());
    assert_eq!(segments(&decoded(&published)), segments(&printed));
}
