//! Criterion benchmarks of the throughput figures that tests used to assert (`> 300 frames/s`),
//! which flaked on a busy CI machine. Each reports elements per second; the baseline for all of
//! them is a sensor's 30 frames/s (RELIABILITY.md gives them as multiples of it):
//! - `synth_generate`: synthetic recordings generated, frames/s;
//! - `ndjson_decode`: `skeleton-ndjson/1` lines decoded (two bodies), frames/s;
//! - `net_ingest/tcp`, `net_ingest/udp`: frames sent over loopback and taken out of a
//!   `NetSource` (decoding, ingress queue, consumer), frames/s;
//! - `viz_save/frames`, `viz_save/scores`: skeleton frames (two bodies) and score messages
//!   (52 classes) through the visualiser thread into a `.rrd` file, messages/s.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skelseg::io::ClassMap;
use skelseg::io::ndjson::{self, Decoder};
use skelseg::source::{FrameSource, SourceEvent, SourcePoll};
use skelseg::source::{NetConfig, NetSource};
use skelseg::synth::{self, SynthConfig};
use skelseg::viz::{Visualizer, VizMsg, VizTarget};
use skelseg::{Body, Frame, Joint, NUM_JOINTS};

/// Frames per iteration of the stream benches.
const BATCH: u64 = 200;

fn frame(index: u64) -> Frame {
    let bodies = (0..2)
        .map(|b| {
            // Moving, but within the 20 m bound on coordinates however long the bench runs.
            let sway = (index % 60) as f32 * 0.01;
            let joints: [Joint; NUM_JOINTS] = std::array::from_fn(|j| {
                Joint::tracked([
                    0.5 * b as f32 + 0.01 * j as f32 + sway,
                    1.0 - 0.05 * j as f32,
                    2.5,
                ])
            });
            Body { id: 100 + b, joints }
        })
        .collect();
    Frame { index, timestamp_secs: index as f64 / 30.0, bodies }
}

fn bench_synth(c: &mut Criterion) {
    let cfg = SynthConfig::default();
    let frames = synth::generate_recording(&cfg, 1, "bench").frames.len() as u64;
    let mut group = c.benchmark_group("synth_generate");
    group.throughput(Throughput::Elements(frames));
    group.sample_size(20);
    let mut seed = 0;
    group.bench_function("recording", |b| {
        b.iter(|| {
            seed += 1;
            synth::generate_recording(&cfg, seed, "bench")
        })
    });
    group.finish();
}

fn bench_ndjson(c: &mut Criterion) {
    let lines: Vec<String> = (0..BATCH).map(|i| ndjson::encode_frame(&frame(i))).collect();
    let mut group = c.benchmark_group("ndjson_decode");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("frames", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new("bench".into());
            lines.iter().filter(|l| matches!(decoder.decode_line(l), Ok(Some(_)))).count()
        })
    });
    group.finish();
}

/// Takes `n` frames out of `source` (fails the bench if they do not come within 10 s).
fn receive(source: &mut NetSource, n: u64) {
    let mut got = 0;
    while got < n {
        match source.next_event(Duration::from_secs(10)) {
            SourcePoll::Event(SourceEvent::Frame { .. }) => got += 1,
            SourcePoll::Event(SourceEvent::Ended { .. }) => {}
            other => panic!("expected {n} frames, got {got}, then {other:?}"),
        }
    }
}

fn bench_net(c: &mut Criterion) {
    // A queue that holds a whole batch: the bench measures ingest, not the overflow policy.
    let cfg = NetConfig { queue_frames: 4 * BATCH as usize, ..NetConfig::DEFAULT };
    let mut group = c.benchmark_group("net_ingest");
    group.throughput(Throughput::Elements(BATCH));

    let mut tcp =
        NetSource::tcp_listen("127.0.0.1:0".parse().expect("address"), &cfg).expect("tcp listener");
    let mut client = TcpStream::connect(tcp.local_addr()).expect("tcp connect");
    client.set_nodelay(true).ok();
    // Frame numbers must increase per stream: every batch is renumbered.
    let mut next = 0u64;
    group.bench_function("tcp", |b| {
        b.iter(|| {
            let text: String = (0..BATCH)
                .map(|i| format!("{}\n", ndjson::encode_frame(&frame(next + i))))
                .collect();
            next += BATCH;
            client.write_all(text.as_bytes()).expect("tcp write");
            receive(&mut tcp, BATCH);
        })
    });

    let mut udp = NetSource::udp("127.0.0.1:0".parse().expect("address"), &cfg).expect("udp");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sender.connect(udp.local_addr()).expect("udp connect");
    let mut next = 0u64;
    group.bench_function("udp", |b| {
        b.iter(|| {
            // Ten datagrams in flight at most: a whole batch (~500 KB) would overrun the
            // kernel's socket buffer, and the datagrams it drops never reach skelseg.
            for chunk in (0..BATCH).step_by(10) {
                for i in chunk..chunk + 10 {
                    let line = ndjson::encode_frame(&frame(next + i));
                    sender.send(line.as_bytes()).expect("udp send");
                }
                receive(&mut udp, 10);
            }
            next += BATCH;
        })
    });
    group.finish();
}

fn bench_viz(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..52).map(|c| format!("action {c}")).collect();
    let target = VizTarget::Save(dir.path().join("bench.rrd"));
    let viz = Visualizer::start(&target, "skelseg_bench", &ClassMap::new(names))
        .expect("visualiser")
        .expect("save starts a visualiser");
    let tx = viz.sender();
    let drain = || {
        while tx.queued() > 0 {
            std::thread::yield_now();
        }
    };
    let paced = |msg: VizMsg| {
        while tx.queued() > skelseg::viz::QUEUE_CAPACITY / 2 {
            std::thread::yield_now();
        }
        tx.send(msg);
    };
    let mut group = c.benchmark_group("viz_save");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    let mut next = 0u64;
    group.bench_function("frames", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                paced(VizMsg::Frame { stream: "s".into(), frame: frame(next + i) });
            }
            next += BATCH;
            drain();
        })
    });
    let mut next = 0u64;
    group.bench_function("scores", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                let f = next + i;
                paced(VizMsg::Scores {
                    stream: "s".into(),
                    frame: f,
                    timestamp_secs: f as f64 / 30.0,
                    probs: vec![1.0 / 52.0; 52],
                    boundary_prob: 0.1,
                });
            }
            next += BATCH;
            drain();
        })
    });
    group.finish();
    assert_eq!(viz.dropped(), 0, "the visualiser dropped messages");
    viz.finish().expect("visualiser flush");
}

criterion_group!(benches, bench_synth, bench_ndjson, bench_net, bench_viz);
criterion_main!(benches);
