//! What Zenoh costs the streaming path, measured in one run (BENCHMARKS.md "Scale-out over Zenoh"):
//!
//! 1. latency from a frame's publication to its finalised label, in-process (a channel into
//!    the pipeline) against Zenoh (publisher → router → worker; and on to a subscriber of the
//!    published events), alternating;
//! 2. 30-fps streams one worker sustains fed over `tcp-listen:` against Zenoh (ramp);
//! 3. two workers against one on the same machine (ramp).
//!
//! All three run once per repeat (`--repeats`); the ratios are taken inside each repeat, and
//! their median and range over the repeats are reported, with the load average around each.
//!
//! `cargo run --release --example zenoh_bench -- [--repeats 3] [--secs 8] [--step-secs 5] [--max-streams 24]`
//! prints one JSON object on stdout and a table on stderr.
// A measuring tool: a poisoned lock or a failed set-up step ends the run.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;
use skelseg::cluster::{self, EventSink, Worker, ZenohConfig, ZenohSendOptions};
use skelseg::io::Recording;
use skelseg::model::checkpoint::{self, LoadedModel};
use skelseg::source::zenoh::{ZenohSource, ZenohSourceConfig};
use skelseg::source::{
    EndReason, FrameSource, NetConfig, NetSource, SourceEvent, SourcePoll, SourceStats, StreamId,
};
use skelseg::stream::{PipelineBuilder, PipelineStats, SegmentEvent, StreamConfig};
use skelseg::synth::{self, SynthConfig};
use zenoh::Wait;

fn model() -> Result<LoadedModel> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    Ok(checkpoint::load(&path, tch::Device::Cpu)?)
}

fn recording(seed: u64, name: &str, frames: usize) -> Recording {
    let mut r = synth::generate_recording(&SynthConfig::default(), seed, name);
    r.frames.truncate(frames);
    r
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    skelseg::metrics::percentile(v, q)
}

/// An in-process source: frames pushed through a bounded channel.
struct ChannelSource {
    rx: Receiver<SourceEvent>,
}

impl FrameSource for ChannelSource {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => SourcePoll::Event(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => SourcePoll::Timeout,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => SourcePoll::Finished,
        }
    }

    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

/// Publication times per (stream name, frame index).
type Stamps = Arc<Mutex<HashMap<(String, u64), Instant>>>;
/// Label times per (stream name, frame index).
type Labels = Arc<Mutex<Vec<(String, u64, Instant)>>>;

fn label_of(event: &SegmentEvent) -> Option<(String, u64)> {
    match event {
        SegmentEvent::FrameLabel { stream, frame, .. } => {
            let name = stream.rsplit(':').next().unwrap_or(stream).to_owned();
            Some((name, *frame))
        }
        _ => None,
    }
}

/// Latency of each label: its time minus the publication of the frame that made it final
/// (frame + lookahead), in ms.
fn latencies(stamps: &Stamps, labels: &Labels, lookahead: u64) -> Vec<f64> {
    let stamps = stamps.lock().unwrap();
    labels
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(s, f, t)| {
            let pub_at = stamps.get(&(s.clone(), f + lookahead))?;
            Some(t.saturating_duration_since(*pub_at).as_secs_f64() * 1e3)
        })
        .collect()
}

fn stream_cfg(m: &LoadedModel, per_frame: bool) -> StreamConfig {
    let mut cfg = StreamConfig::from_checkpoint(&m.meta);
    cfg.segmenter.per_frame = per_frame;
    cfg
}

/// Paces `recs` at 30 fps through `put`, stamping every frame.
fn pace(
    recs: &[(String, Recording)],
    stamps: &Stamps,
    mut put: impl FnMut(usize, &skelseg::Frame),
) {
    let period = Duration::from_secs_f64(1.0 / 30.0);
    let start = Instant::now();
    let n = recs.iter().map(|(_, r)| r.frames.len()).max().unwrap_or(0);
    for i in 0..n {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (s, (name, rec)) in recs.iter().enumerate() {
            if let Some(f) = rec.frames.get(i) {
                stamps.lock().unwrap().insert((name.clone(), f.index), Instant::now());
                put(s, f);
            }
        }
    }
}

struct Net {
    endpoint: String,
    _router: zenoh::Session,
}

impl Net {
    fn new() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let endpoint = format!("tcp/127.0.0.1:{port}");
        let mut config =
            ZenohConfig { listen: vec![endpoint.clone()], ..ZenohConfig::default() }.to_zenoh()?;
        config.insert_json5("mode", r#""router""#).map_err(|e| anyhow::anyhow!("{e}"))?;
        let router = zenoh::open(config).wait().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Net { endpoint, _router: router })
    }

    fn session(&self) -> Result<zenoh::Session> {
        Ok(ZenohConfig { connect: vec![self.endpoint.clone()], ..ZenohConfig::default() }.open()?)
    }
}

#[derive(Serialize, Default, Clone)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

fn summary(mut v: Vec<f64>) -> Latency {
    Latency { p50_ms: percentile(&mut v, 0.5), p99_ms: percentile(&mut v, 0.99), samples: v.len() }
}

fn streams(n: usize, frames: usize) -> Vec<(String, Recording)> {
    (0..n)
        .map(|s| (format!("s{s:02}"), recording(500 + s as u64, &format!("s{s:02}"), frames)))
        .collect()
}

fn latency_in_process(n: usize, frames: usize) -> Result<Latency> {
    let m = model()?;
    let lookahead = StreamConfig::from_checkpoint(&m.meta).engine.lookahead_frames as u64;
    let (tx, rx): (Sender<SourceEvent>, _) = bounded(4096);
    let labels: Labels = Arc::default();
    let stamps: Stamps = Arc::default();
    let cfg = stream_cfg(&m, true);
    let pipeline = {
        let labels = labels.clone();
        PipelineBuilder::new(m)
            .config(cfg)
            .source(ChannelSource { rx })
            .event_channel(false)
            .on_event(move |e| {
                if let Some((s, f)) = label_of(e) {
                    labels.lock().unwrap().push((s, f, Instant::now()));
                }
            })
            .start()?
    };
    let recs = streams(n, frames);
    pace(&recs, &stamps, |s, f| {
        tx.send(SourceEvent::Frame {
            stream: StreamId::new(format!("mem:{}", recs[s].0)),
            frame: f.clone(),
        })
        .ok();
    });
    for (name, _) in &recs {
        tx.send(SourceEvent::Ended {
            stream: StreamId::new(format!("mem:{name}")),
            reason: EndReason::Closed,
        })
        .ok();
    }
    drop(tx);
    pipeline.wait()?;
    Ok(summary(latencies(&stamps, &labels, lookahead)))
}

/// One Zenoh worker publishing events; returns (worker callback, subscriber of events).
fn latency_zenoh(n: usize, frames: usize) -> Result<(Latency, Latency)> {
    let net = Net::new()?;
    let prefix = "bench_lat";
    let m = model()?;
    let lookahead = StreamConfig::from_checkpoint(&m.meta).engine.lookahead_frames as u64;
    let worker = Worker::join(net.session()?, prefix, Some("w1"))?;
    let sink = EventSink::new(&worker)?;
    let source =
        ZenohSource::open(&worker, &format!("{prefix}/frames/**"), ZenohSourceConfig::default())?;
    let at_worker: Labels = Arc::default();
    let at_subscriber: Labels = Arc::default();
    let cfg = stream_cfg(&m, true);
    let pipeline = {
        let labels = at_worker.clone();
        let mut sink = sink.into_callback();
        PipelineBuilder::new(m)
            .config(cfg)
            .source(source)
            .event_channel(false)
            .on_event(move |e| {
                if let Some((s, f)) = label_of(e) {
                    labels.lock().unwrap().push((s, f, Instant::now()));
                }
                sink(e);
            })
            .start()?
    };
    let observer = net.session()?;
    let _sub = {
        let labels = at_subscriber.clone();
        observer
            .declare_subscriber(format!("{prefix}/events/**"))
            .callback(move |sample| {
                let now = Instant::now();
                let Ok(v) =
                    serde_json::from_slice::<serde_json::Value>(&sample.payload().to_bytes())
                else {
                    return;
                };
                if v["type"] == "frame_label" {
                    let s = sample.key_expr().as_str().rsplit('/').next().unwrap_or("").to_owned();
                    labels.lock().unwrap().push((s, v["frame"].as_u64().unwrap_or(0), now));
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let publisher = net.session()?;
    let recs = streams(n, frames);
    let pubs: Vec<_> = recs
        .iter()
        .map(|(name, _)| {
            use zenoh_ext::AdvancedPublisherBuilderExt;
            publisher
                .declare_publisher(cluster::frames_key(prefix, name))
                .cache(
                    zenoh_ext::CacheConfig::default().max_samples(cluster::DEFAULT_HISTORY_FRAMES),
                )
                .publisher_detection()
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let stamps: Stamps = Arc::default();
    let header =
        skelseg::io::ndjson::encode_header(&skelseg::io::ndjson::Header::canonical(Some(30.0)));
    for p in &pubs {
        p.put(header.clone()).wait().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    pace(&recs, &stamps, |s, f| {
        pubs[s].put(skelseg::io::ndjson::encode_frame(f)).wait().ok();
    });
    for p in &pubs {
        p.delete().wait().ok();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pipeline.is_finished() && Instant::now() < deadline {
        let ended = at_subscriber.lock().unwrap().len() + 4 * lookahead as usize;
        if ended >= recs.iter().map(|(_, r)| r.frames.len()).sum::<usize>() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    pipeline.shutdown()?;
    Ok((
        summary(latencies(&stamps, &at_worker, lookahead)),
        summary(latencies(&stamps, &at_subscriber, lookahead)),
    ))
}

#[derive(Serialize, Clone)]
struct Step {
    streams: usize,
    p50_ms: f64,
    p99_ms: f64,
    skipped_windows: u64,
    dropped_frames: u64,
    frames_in: u64,
    frames_sent: u64,
    sustained: bool,
}

fn step_of(streams: usize, stats: &[PipelineStats], sent: u64) -> Step {
    let mut lat = skelseg::stream::LatencyHistogram::new();
    stats.iter().for_each(|s| lat.merge(&s.latency));
    let skipped = stats.iter().map(|s| s.skipped_windows).sum();
    let dropped = stats.iter().flat_map(|s| s.sources.iter()).map(|s| s.dropped_overflow).sum();
    let frames_in = stats.iter().map(|s| s.frames).sum();
    let (p50, p99) = (lat.percentile_ms(0.5), lat.percentile_ms(0.99));
    Step {
        streams,
        p50_ms: p50,
        p99_ms: p99,
        skipped_windows: skipped,
        dropped_frames: dropped,
        frames_in,
        frames_sent: sent,
        sustained: p99 < 50.0 && skipped == 0 && dropped == 0 && frames_in >= sent,
    }
}

fn ramp_tcp(n: usize, frames: usize) -> Result<Step> {
    let m = model()?;
    let cfg = stream_cfg(&m, false);
    // The listener's client limit (16 by default) must not be what the ramp measures.
    let net = NetConfig {
        max_connections: n.max(NetConfig::DEFAULT.max_connections),
        ..NetConfig::DEFAULT
    };
    let src = NetSource::tcp_listen("127.0.0.1:0".parse()?, &net)?;
    let addr = src.local_addr();
    let pipeline = PipelineBuilder::new(m).config(cfg).source(src).event_channel(false).start()?;
    let senders: Vec<_> = streams(n, frames)
        .into_iter()
        .map(|(_, r)| {
            std::thread::spawn(move || {
                skelseg::source::send_recording(&r, addr, skelseg::source::Proto::Tcp, Some(30.0))
                    .map(|s| s.frames)
            })
        })
        .collect();
    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    wait_frames(&[&pipeline], sent);
    let (stats, _) = pipeline.shutdown()?;
    Ok(step_of(n, &[stats], sent))
}

fn wait_frames(pipelines: &[&skelseg::stream::Pipeline], sent: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let got: u64 =
            pipelines.iter().map(|p| p.stats().sources.iter().map(|s| s.frames).sum::<u64>()).sum();
        if got >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
}

fn ramp_zenoh(n: usize, frames: usize, workers: usize) -> Result<Step> {
    let net = Net::new()?;
    let prefix = format!("bench_ramp{workers}_{n}");
    let mut pipelines = Vec::new();
    for w in 0..workers {
        let m = model()?;
        let cfg = stream_cfg(&m, false);
        let worker = Worker::join(net.session()?, &prefix, Some(&format!("w{w}")))?;
        let source = ZenohSource::open(
            &worker,
            &format!("{prefix}/frames/**"),
            ZenohSourceConfig::default(),
        )?;
        pipelines
            .push(PipelineBuilder::new(m).config(cfg).source(source).event_channel(false).start()?);
    }
    let publisher = net.session()?;
    let senders: Vec<_> = streams(n, frames)
        .into_iter()
        .map(|(name, r)| {
            let (session, key) = (publisher.clone(), cluster::frames_key(&prefix, &name));
            std::thread::spawn(move || {
                let options = ZenohSendOptions { fps: Some(30.0), ..ZenohSendOptions::default() };
                cluster::send_recording(&session, &key, &r, &options).map(|s| s.frames)
            })
        })
        .collect();
    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    wait_frames(&pipelines.iter().collect::<Vec<_>>(), sent);
    let stats = pipelines
        .into_iter()
        .map(|p| p.shutdown().map(|(s, _)| s))
        .collect::<skelseg::Result<Vec<_>>>()?;
    Ok(step_of(n, &stats, sent))
}

fn ramp(
    label: &str,
    max: usize,
    frames: usize,
    mut run: impl FnMut(usize, usize) -> Result<Step>,
) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for n in (4..=max).step_by(4) {
        let step = run(n, frames).with_context(|| format!("{label} at {n} streams"))?;
        eprintln!(
            "{label:>10} {n:>3} streams: p50 {:7.2} ms p99 {:7.2} ms skipped windows {} dropped {} frames {}/{} {}",
            step.p50_ms,
            step.p99_ms,
            step.skipped_windows,
            step.dropped_frames,
            step.frames_in,
            step.frames_sent,
            if step.sustained { "ok" } else { "over" }
        );
        let over = !step.sustained;
        out.push(step);
        if over {
            break;
        }
    }
    Ok(out)
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and range of one figure over the repeats.
#[derive(Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    repeats: Vec<f64>,
}

fn spread(v: Vec<f64>) -> Spread {
    let mut sorted: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let median = skelseg::metrics::percentile(&sorted, 0.5);
    Spread {
        median,
        min: sorted.first().copied().unwrap_or(f64::NAN),
        max: sorted.last().copied().unwrap_or(f64::NAN),
        repeats: v,
    }
}

/// One repeat: the three latency paths alternating, then the three ramps.
#[derive(Serialize)]
struct Repeat {
    latency_in_process: Latency,
    latency_zenoh_worker: Latency,
    latency_zenoh_subscriber: Latency,
    ramp_tcp: Vec<Step>,
    ramp_zenoh_1_worker: Vec<Step>,
    ramp_zenoh_2_workers: Vec<Step>,
}

fn sustained(r: &[Step]) -> usize {
    r.iter().filter(|s| s.sustained).map(|s| s.streams).max().unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

fn main() -> Result<()> {
    tch::set_num_threads(1);
    let repeats = arg("--repeats", 3.0) as usize;
    let secs = arg("--secs", 8.0);
    let step_secs = arg("--step-secs", 5.0);
    let max = arg("--max-streams", 24.0) as usize;
    let lat_streams = arg("--latency-streams", 4.0) as usize;
    let frames = (secs * 30.0) as usize;
    let step_frames = (step_secs * 30.0) as usize;
    let mut loads = vec![load_average()];
    let mut runs = Vec::new();
    for r in 0..repeats {
        let a = latency_in_process(lat_streams, frames)?;
        let (b, c) = latency_zenoh(lat_streams, frames)?;
        eprintln!(
            "repeat {r}: in-process p50 {:.1} p99 {:.1} | zenoh worker p50 {:.1} p99 {:.1} | zenoh subscriber p50 {:.1} p99 {:.1} ms",
            a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms, c.p50_ms, c.p99_ms
        );
        let tcp = ramp("tcp", max, step_frames, ramp_tcp)?;
        let zenoh1 = ramp("zenoh 1w", max, step_frames, |n, f| ramp_zenoh(n, f, 1))?;
        let zenoh2 = ramp("zenoh 2w", max, step_frames, |n, f| ramp_zenoh(n, f, 2))?;
        loads.push(load_average());
        eprintln!("repeat {r}: load average {}", loads.last().unwrap());
        runs.push(Repeat {
            latency_in_process: a,
            latency_zenoh_worker: b,
            latency_zenoh_subscriber: c,
            ramp_tcp: tcp,
            ramp_zenoh_1_worker: zenoh1,
            ramp_zenoh_2_workers: zenoh2,
        });
    }
    // Ratios inside each repeat, then their median and range over the repeats.
    let ratio = |f: &dyn Fn(&Repeat) -> (f64, f64)| {
        spread(
            runs.iter()
                .map(|r| {
                    let (a, b) = f(r);
                    a / b
                })
                .collect(),
        )
    };
    let first = |r: &[Step]| r.first().map_or(f64::NAN, |s| s.p99_ms);
    let ratios = serde_json::json!({
        "zenoh_over_in_process_p50": ratio(&|r| (r.latency_zenoh_worker.p50_ms, r.latency_in_process.p50_ms)),
        "zenoh_over_in_process_p99": ratio(&|r| (r.latency_zenoh_worker.p99_ms, r.latency_in_process.p99_ms)),
        "subscriber_over_worker_p50": ratio(&|r| (r.latency_zenoh_subscriber.p50_ms, r.latency_zenoh_worker.p50_ms)),
        "sustained_zenoh_over_tcp": ratio(&|r| (sustained(&r.ramp_zenoh_1_worker) as f64, sustained(&r.ramp_tcp) as f64)),
        "sustained_2_workers_over_1": ratio(&|r| (sustained(&r.ramp_zenoh_2_workers) as f64, sustained(&r.ramp_zenoh_1_worker) as f64)),
        "first_step_p99_zenoh_over_tcp": ratio(&|r| (first(&r.ramp_zenoh_1_worker), first(&r.ramp_tcp))),
        "first_step_p99_2_workers_over_1": ratio(&|r| (first(&r.ramp_zenoh_2_workers), first(&r.ramp_zenoh_1_worker))),
    });
    eprintln!("ratios (median [min, max] over {repeats} repeats):");
    for (name, v) in ratios.as_object().into_iter().flatten() {
        eprintln!(
            "  {name:<34} {:.3} [{:.3}, {:.3}]",
            v["median"].as_f64().unwrap_or(f64::NAN),
            v["min"].as_f64().unwrap_or(f64::NAN),
            v["max"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let sample = streams(1, 300);
    let payload_bytes = sample[0]
        .1
        .frames
        .iter()
        .map(|f| skelseg::io::ndjson::encode_frame(f).len())
        .sum::<usize>() as f64
        / sample[0].1.frames.len().max(1) as f64;
    let report = serde_json::json!({
        "frame_payload_bytes": payload_bytes,
        "latency_streams": lat_streams,
        "latency_secs": secs,
        "load_average_before_and_after_each_repeat": loads,
        "ratios": ratios,
        "sustained_tcp": spread(runs.iter().map(|r| sustained(&r.ramp_tcp) as f64).collect()),
        "sustained_zenoh_1_worker": spread(runs.iter().map(|r| sustained(&r.ramp_zenoh_1_worker) as f64).collect()),
        "sustained_zenoh_2_workers": spread(runs.iter().map(|r| sustained(&r.ramp_zenoh_2_workers) as f64).collect()),
        "repeats": runs,
    });
    println!("{report}");
    Ok(())
}
