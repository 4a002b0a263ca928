//! Scale-out over Zenoh on loopback: in-process peers around a router with an explicit
//! endpoint, multicast scouting off. Streams are shared by rendezvous, fail over within a
//! second, and never publish a committed segment twice.
#![cfg(feature = "zenoh")]
// The helpers below set up peers and fixtures for the tests; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use skelseg::cluster::{self, EventSink, SinkStats, Worker, ZenohConfig, ZenohSendOptions};
use skelseg::io::{self, Recording};
use skelseg::model::checkpoint::{self, LoadedModel};
use skelseg::source::zenoh::{ZenohSource, ZenohSourceConfig};
use skelseg::source::{
    EndReason, FrameSource, NetConfig, NetSource, Pacing, ReplaySource, SourceEvent, SourcePoll,
    SourceStats,
};
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
/// Written once per test process: tests run in parallel, and one rewriting a file another is
/// reading made that read fail.
fn recordings() -> Vec<Recording> {
    static ONCE: std::sync::OnceLock<Vec<Recording>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
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
    })
    .clone()
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

/// Limits of both feeds in the bad-input comparison: small enough for an oversize payload.
const BAD_INPUT_NET: NetConfig = NetConfig { max_line_bytes: 4096, ..NetConfig::DEFAULT };

/// Bad and good payloads of one stream, in order; the good frames are `rec.frames[0..2]`.
/// `oversize_too`: with a payload over [`BAD_INPUT_NET`]'s size limit.
fn bad_and_good_payloads(rec: &Recording, oversize_too: bool) -> Vec<Vec<u8>> {
    let header = io::ndjson::encode_header(&io::ndjson::Header::canonical(Some(30.0)));
    let mut oversize = io::ndjson::encode_frame(&rec.frames[2]).into_bytes();
    oversize.truncate(oversize.len() - 1);
    oversize.extend(format!(r#","pad":"{}"}}"#, "x".repeat(5000)).bytes());
    let mut payloads = vec![
        b"not json".to_vec(),
        br#"{"type":"header","format":"skeleton-ndjson/1","layout":"kinect_v9"}"#.to_vec(),
        br#"{"type":"bogus"}"#.to_vec(),
        vec![0xff, 0xfe],
        header.into_bytes(),
        io::ndjson::encode_frame(&rec.frames[0]).into_bytes(),
        br#"{"type":"frame","bodies":[{"joint_positions":[[1,2,3]]}]}"#.to_vec(),
        oversize,
        io::ndjson::encode_frame(&rec.frames[1]).into_bytes(),
        // The same frame again: out of order.
        io::ndjson::encode_frame(&rec.frames[1]).into_bytes(),
    ];
    if !oversize_too {
        payloads.remove(7);
    }
    payloads
}

/// The frame indices a source gives for one stream until it ends, and its counters.
fn drain_one_stream(source: &mut dyn FrameSource) -> (Vec<u64>, SourceStats) {
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the stream did not end: {frames:?} {:?}",
            source.stats()
        );
        match source.next_event(Duration::from_millis(100)) {
            SourcePoll::Event(SourceEvent::Frame { frame, .. }) => frames.push(frame.index),
            SourcePoll::Event(SourceEvent::Ended { .. }) => break,
            SourcePoll::Timeout => {}
            SourcePoll::Finished => panic!("finished early"),
        }
    }
    (frames, source.stats())
}

#[test]
fn keys_past_the_stream_limit_are_skipped_and_counted() {
    let _serial = serial();
    let rec = &recordings()[0];
    let net = Net::new();
    let prefix = "t_limit";
    let worker = Worker::join(net.session(), prefix, Some("w")).unwrap();
    let cfg = ZenohSourceConfig { max_streams: 2, ..ZenohSourceConfig::default() };
    let mut source = ZenohSource::open(&worker, &format!("{prefix}/frames/**"), cfg).unwrap();
    let session = net.session();
    let line = skelseg::io::ndjson::encode_frame(&rec.frames[0]);
    let publishers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| session.declare_publisher(cluster::frames_key(prefix, name)).wait().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publishers.iter().all(|p| p.matching_status().wait().unwrap().matching()) {
        assert!(Instant::now() < deadline, "the source's subscriber never matched");
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in &publishers {
        p.put(line.clone()).wait().unwrap();
    }
    let mut streams = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while source.stats().connections + source.stats().rejected_connections < 3 {
        assert!(Instant::now() < deadline, "{:?}", source.stats());
        if let SourcePoll::Event(SourceEvent::Frame { stream, .. }) =
            source.next_event(Duration::from_millis(50))
        {
            streams.insert(stream.to_string());
        }
    }
    let stats = source.stats();
    assert_eq!((stats.connections, stats.rejected_connections), (2, 1), "{stats:?}");
    // The third key is refused while two streams are tracked, whichever came first.
    assert!(streams.len() <= 2, "{streams:?}");
}

#[test]
fn bad_payloads_over_zenoh_are_skipped_and_counted_as_over_tcp() {
    let rec = &recordings()[0];
    let payloads = bad_and_good_payloads(rec, true);
    // Over Zenoh: one payload per sample, then a delete ends the stream.
    let net = Net::new();
    let prefix = "t_bad";
    let worker = Worker::join(net.session(), prefix, Some("w")).unwrap();
    let cfg = ZenohSourceConfig { net: BAD_INPUT_NET, ..ZenohSourceConfig::default() };
    let mut source = ZenohSource::open(&worker, &format!("{prefix}/frames/**"), cfg).unwrap();
    let session = net.session();
    let key = cluster::frames_key(prefix, "cam");
    let publisher = session.declare_publisher(key.clone()).wait().unwrap();
    // Publish only once the subscriber's declaration has reached this session: a put before
    // that is routed nowhere (this raced before).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publisher.matching_status().wait().unwrap().matching() {
        assert!(Instant::now() < deadline, "the source's subscriber never matched");
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in &payloads {
        publisher.put(p.clone()).wait().unwrap();
    }
    publisher.delete().wait().unwrap();
    let (zenoh_frames, zenoh) = drain_one_stream(&mut source);
    // Over `tcp-listen:`: one payload per line, then the client hangs up.
    // Bound to port 0 and asked, not a port found free beforehand: Zenoh's own connections
    // take ephemeral ports too, and a client once reached one of those instead.
    let mut tcp_source =
        NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &BAD_INPUT_NET).unwrap();
    let addr = tcp_source.local_addr();
    {
        use std::io::Write;
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        for p in &payloads {
            client.write_all(p).unwrap();
            client.write_all(b"\n").unwrap();
        }
    }
    let (tcp_frames, tcp) = drain_one_stream(&mut tcp_source);

    assert_eq!(zenoh_frames, [rec.frames[0].index, rec.frames[1].index]);
    assert_eq!(zenoh_frames, tcp_frames);
    let skips = |s: &SourceStats| {
        (
            s.frames,
            s.skipped_malformed,
            s.skipped_invalid_joints,
            s.skipped_oversize,
            s.skipped_out_of_order,
        )
    };
    assert_eq!(skips(&zenoh), (2, 4, 1, 1, 1), "{zenoh:?}");
    assert_eq!(skips(&zenoh), skips(&tcp), "zenoh {zenoh:?}\ntcp {tcp:?}");
}

#[test]
fn a_sender_that_starts_again_without_a_delete_is_a_new_stream() {
    let rec = &recordings()[0];
    let net = Net::new();
    let prefix = "t_restart";
    let worker = Worker::join(net.session(), prefix, Some("w")).unwrap();
    let mut source =
        ZenohSource::open(&worker, &format!("{prefix}/frames/**"), ZenohSourceConfig::default())
            .unwrap();
    let key = cluster::frames_key(prefix, "cam");
    let header = io::ndjson::encode_header(&io::ndjson::Header::canonical(Some(30.0)));
    // One life of a sender: its own session and publisher, frames numbered from 0.
    let life = |frames: std::ops::Range<usize>| {
        let session = net.session();
        let publisher = session.declare_publisher(key.clone()).wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !publisher.matching_status().wait().unwrap().matching() {
            assert!(Instant::now() < deadline, "the source's subscriber never matched");
            std::thread::sleep(Duration::from_millis(10));
        }
        publisher.put(header.clone()).wait().unwrap();
        for (i, f) in rec.frames[frames].iter().enumerate() {
            let frame = skelseg::Frame { index: i as u64, ..f.clone() };
            publisher.put(io::ndjson::encode_frame(&frame)).wait().unwrap();
        }
        // Killed: no delete, the session just goes.
    };
    life(0..50);
    // The first life stays open (no delete): its 50 frames arrive.
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.len() < 50 {
        assert!(Instant::now() < deadline, "{first:?}");
        if let SourcePoll::Event(SourceEvent::Frame { frame, .. }) =
            source.next_event(Duration::from_millis(100))
        {
            first.push(frame.index);
        }
    }
    assert_eq!(first, (0..50).collect::<Vec<u64>>());
    // It comes back within the idle timeout, numbering from 0 again: the old stream ends and
    // every frame of the new life arrives (before: all skipped as out of order).
    life(50..90);
    let mut ended = 0;
    let mut second = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.len() < 40 {
        assert!(Instant::now() < deadline, "ended {ended}, {second:?}, {:?}", source.stats());
        match source.next_event(Duration::from_millis(100)) {
            SourcePoll::Event(SourceEvent::Frame { frame, .. }) => {
                assert_eq!(ended, 1, "the old stream ends before the new one begins");
                second.push(frame.index);
            }
            SourcePoll::Event(SourceEvent::Ended { reason, .. }) => {
                assert_eq!(reason, EndReason::Closed);
                ended += 1;
            }
            _ => {}
        }
    }
    assert_eq!(second, (0..40).collect::<Vec<u64>>());
    assert_eq!(source.stats().skipped_out_of_order, 0, "{:?}", source.stats());
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

/// `skelseg stream` as a worker in a child process, publishing its events.
/// A `skelseg stream` worker process; its log goes to `log`.
fn spawn_cli_worker(net: &Net, prefix: &str, id: &str, log: &Path) -> std::process::Child {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    std::process::Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .arg("stream")
        .arg("--model")
        .arg(&model)
        .args(["--source", &format!("zenoh:{prefix}/frames/**"), "--publish-events", "zenoh"])
        .args(["--zenoh-connect", &net.endpoint, "--worker-id", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// How a worker process dies.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// SIGKILL: the kernel closes its sockets, so its peers see the link go at once.
    Killed,
    /// SIGSTOP: a frozen process (or a dead machine, a cut cable) says nothing more; its peers
    /// drop it when its link lease (500 ms by skelseg's default) runs out.
    Frozen,
    /// SIGSTOP, then SIGCONT a second after the other worker took its streams: it wakes up
    /// with a stale view and frames of its own in flight, and rejoins.
    Resumed,
}

fn signal(child: &std::process::Child, sig: &str) {
    let status =
        std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig} failed");
}

/// A worker process dies mid-run; returns how long after the signal the other worker had
/// taken both of its streams over.
fn crash_a_worker(crash: Crash, prefix: &str) -> Duration {
    let _serial = serial();
    let recs = recordings();
    let net = Net::new();
    let observer = Observer::new(&net, prefix);
    let mut w2 = TestWorker::start(&net, prefix, "w2", false);
    let log = scratch(prefix).join("w1.log");
    let mut w1 = spawn_cli_worker(&net, prefix, "w1", &log);
    let deadline = Instant::now() + Duration::from_secs(90);
    while w2.worker.members() != ["w1", "w2"] {
        assert!(
            Instant::now() < deadline,
            "the CLI worker did not join: {:?}",
            w2.worker.members()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let streams = streams_for(&["w1", "w2"], 2);
    // In real time: 15 to 26 s per stream, so that the crash comes mid-stream however slowly
    // the loaded machine lets w1 start.
    let publishers = publish(&net, prefix, &streams, &recs, Some(30.0));
    // Crash w1 once it has committed a segment of each of its streams.
    let of_w1: Vec<&String> =
        streams.iter().filter(|s| cluster::owner(["w1", "w2"], s) == Some("w1")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !of_w1
        .iter()
        .all(|s| observer.of(s).iter().any(|v| v["type"] == "segment_ended" && v["worker"] == "w1"))
    {
        assert!(Instant::now() < deadline, "w1 committed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    match crash {
        Crash::Killed => w1.kill().unwrap(),
        Crash::Frozen | Crash::Resumed => signal(&w1, "-STOP"),
    }
    let crashed = Instant::now();
    let bound = Duration::from_millis(1500);
    while w2.worker.stats().takeovers < 2 {
        assert!(
            crashed.elapsed() < bound,
            "{crash:?}: w2 took over {} of 2 streams in {bound:?} (members {:?})",
            w2.worker.stats().takeovers,
            w2.worker.members()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = crashed.elapsed();
    eprintln!("{crash:?}: w1's streams moved to w2 {} ms after the signal", took.as_millis());
    match crash {
        Crash::Killed => {}
        Crash::Frozen => w1.kill().unwrap(),
        Crash::Resumed => {
            // Wake w1 up once w2 has committed a segment of each of its streams.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !of_w1.iter().all(|s| {
                observer.of(s).iter().any(|v| v["type"] == "segment_ended" && v["worker"] == "w2")
            }) {
                assert!(Instant::now() < deadline, "w2 committed nothing of w1's streams");
                std::thread::sleep(Duration::from_millis(20));
            }
            signal(&w1, "-CONT");
        }
    }
    for h in publishers {
        h.join().unwrap();
    }
    observer.wait_ended(&streams, Duration::from_secs(120));
    if matches!(crash, Crash::Resumed) {
        w1.kill().unwrap();
    }
    w1.wait().unwrap();
    if matches!(crash, Crash::Resumed) {
        // It noticed the stall and restarted its streams rather than going on with them.
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("stalled for a lease or longer"), "w1's log:\n{log}");
        assert!(log.contains("restarting the stream after this worker stalled"), "{log}");
    }
    for name in &streams {
        let values = observer.of(name);
        let segs = segments(&decoded(&values));
        // No committed segment twice, none overlapping another.
        assert_disjoint(name, &segs);
        let last = values.last().unwrap();
        assert_eq!(last["type"], "stream_ended");
        if !matches!(crash, Crash::Resumed) {
            assert_eq!(last["worker"], "w2", "{name} did not end on w2");
        }
        if cluster::owner(["w1", "w2"], name) == Some("w1") {
            let by = |w: &str| {
                values.iter().filter(|v| v["type"] == "segment_ended" && v["worker"] == w).count()
            };
            assert!(by("w1") > 0 && by("w2") > 0, "{name}: w1 {} w2 {}", by("w1"), by("w2"));
        }
    }
    if !matches!(crash, Crash::Resumed) {
        assert_eq!(w2.worker.members(), ["w2"]);
    }
    w2.stop();
    took
}

#[test]
fn a_killed_workers_streams_continue_on_the_other_within_a_second() {
    let took = crash_a_worker(Crash::Killed, "t_kill");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn a_frozen_workers_streams_continue_on_the_other_after_its_lease() {
    let took = crash_a_worker(Crash::Frozen, "t_freeze");
    // Not before its lease ran out: the freeze, not a clean leave, moved them.
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

#[test]
fn a_frozen_worker_that_resumes_publishes_no_segment_twice() {
    // The checks are crash_a_worker's: no segment of any stream published twice or
    // overlapping another, whichever worker published it.
    let took = crash_a_worker(Crash::Resumed, "t_resume");
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

#[test]
fn record_takes_every_zenoh_stream_without_joining_the_workers() {
    let _serial = serial();
    let net = Net::new();
    let prefix = "t_rec";
    // A worker owns every stream; the recorder must take them all anyway, and not a share.
    let worker = Worker::join(net.session(), prefix, Some("w")).unwrap();
    worker.activate().unwrap();
    let out = scratch("record").join("out");
    let mut recorder = std::process::Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .args(["record", "--source", &format!("zenoh:{prefix}/frames/**"), "--out"])
        .arg(&out)
        .args(["--zenoh-connect", &net.endpoint, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let publisher = net.session();
    // The recorder is up once a probe stream's file appears.
    let rec = &recordings()[1];
    let probe = cluster::frames_key(prefix, "probe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !out.join("zenoh_probe.ndjson").exists() {
        assert!(Instant::now() < deadline, "the recorder wrote no probe file");
        let frame = io::ndjson::encode_frame(&rec.frames[i % rec.frames.len()]);
        if i < rec.frames.len() {
            publisher.put(probe.as_str(), frame).wait().unwrap();
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    publisher.delete(probe.as_str()).wait().unwrap();
    let recs = recordings();
    let options = ZenohSendOptions { fps: None, ..ZenohSendOptions::default() };
    for (name, r) in [("cam0", &recs[0]), ("cam1", &recs[2])] {
        let sent =
            cluster::send_recording(&publisher, &cluster::frames_key(prefix, name), r, &options)
                .unwrap();
        assert_eq!(sent.frames, r.frames.len() as u64);
    }
    let bad = cluster::frames_key(prefix, "bad");
    let payloads = bad_and_good_payloads(&recs[3], false);
    for p in &payloads {
        publisher.put(bad.as_str(), p.clone()).wait().unwrap();
    }
    publisher.delete(bad.as_str()).wait().unwrap();
    // Every stream ended (its file closed) before the recorder is stopped.
    let lines = |name: &str| {
        std::fs::read_to_string(out.join(format!("zenoh_{name}.ndjson")))
            .map_or(0, |t| t.lines().count())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines("cam0") < 1 + recs[0].frames.len() || lines("cam1") < 1 + recs[2].frames.len() {
        assert!(Instant::now() < deadline, "cam0 {} cam1 {} lines", lines("cam0"), lines("cam1"));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&recorder, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorder.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the recorder did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = recorder.wait_with_output().unwrap();
    assert!(output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let frames_of = |stream: &str| {
        report["streams"].as_array().unwrap().iter().find(|s| s["stream"] == stream).unwrap()
            ["frames"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(frames_of("zenoh:cam0"), recs[0].frames.len() as u64, "{report}");
    assert_eq!(frames_of("zenoh:cam1"), recs[2].frames.len() as u64, "{report}");
    assert_eq!(frames_of("zenoh:bad"), 2, "{report}");
    // The bad stream's 6 bad payloads (4 malformed, 1 invalid, 1 out of order).
    assert_eq!(report["skipped"], 6, "{report}");
    assert_eq!(report["dropped_overflow"], 0, "{report}");
    for (name, r) in [("cam0", &recs[0]), ("cam1", &recs[2])] {
        let written =
            io::ndjson::read_recording(&out.join(format!("zenoh_{name}.ndjson"))).unwrap();
        let index = |f: &[skelseg::Frame]| f.iter().map(|f| f.index).collect::<Vec<_>>();
        assert_eq!(index(&written.frames), index(&r.frames), "{name}");
    }
    // The recorder never held a worker token.
    assert_eq!(worker.members(), ["w"]);
}
