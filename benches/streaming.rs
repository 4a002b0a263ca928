//! Criterion benchmarks of the streaming path on a freshly initialised default-size model
//! (speed does not depend on trained weights):
//! - `dsmi_per_frame`: DSMI on one frame (what every incoming frame costs),
//! - `mfai_per_window/W`: MFAI on one cached window of W features (every `hop` frames),
//! - `full_model_per_window/W`: DSMI over the whole window + MFAI, the no-cache baseline,
//! - `stream_push`: `StreamSegmenter::push` per frame at hop 4 (end to end, one stream).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use skelseg::model::checkpoint::{CheckpointMeta, LoadedModel};
use skelseg::model::{InterAct, ModelConfig};
use skelseg::stream::StreamSegmenter;
use skelseg::synth::{self, SynthConfig};
use tch::{Device, Kind, Tensor, nn};

fn fresh_model() -> (nn::VarStore, InterAct, ModelConfig) {
    tch::manual_seed(0);
    let cfg = ModelConfig { num_classes: synth::classes().len() as i64, ..ModelConfig::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = InterAct::new(&vs.root(), &cfg).expect("default config is valid");
    (vs, model, cfg)
}

fn bench_blocks(c: &mut Criterion) {
    let (_vs, model, cfg) = fresh_model();
    let _guard = tch::no_grad_guard();
    let frame = Tensor::randn([1, 6, 1, 25], (Kind::Float, Device::Cpu)) * 0.1;
    c.bench_function("dsmi_per_frame", |b| {
        b.iter(|| model.dsmi(&frame, &frame, &frame, false).expect("dsmi"))
    });
    let mut group = c.benchmark_group("per_window");
    group.sample_size(20);
    for w in [128i64, 256, 512] {
        let feats = Tensor::randn([1, cfg.hidden, w], (Kind::Float, Device::Cpu));
        let mask = Tensor::ones([1, w], (Kind::Float, Device::Cpu));
        group.bench_with_input(BenchmarkId::new("mfai_per_window", w), &w, |b, _| {
            b.iter(|| model.mfai(&feats, &mask, false).expect("mfai"))
        });
        let x = Tensor::randn([1, 6, w, 25], (Kind::Float, Device::Cpu)) * 0.1;
        group.bench_with_input(BenchmarkId::new("full_model_per_window", w), &w, |b, _| {
            b.iter(|| model.forward_t(&x, &x, &x, &mask, false).expect("forward"))
        });
    }
    group.finish();
}

fn bench_stream(c: &mut Criterion) {
    let (vs, model, cfg) = fresh_model();
    let meta = CheckpointMeta::new(cfg, synth::classes().names().to_vec(), "kinect_v2_25");
    let mut seg = StreamSegmenter::new(LoadedModel { vs, model, meta }, "bench")
        .expect("the checkpoint's stream config is valid");
    let rec = synth::generate_recording(&SynthConfig::default(), 7, "bench");
    let mut i = 0;
    c.bench_function("stream_push", |b| {
        b.iter(|| {
            let events = seg.push(&rec.frames[i % rec.frames.len()]).expect("push");
            i += 1;
            events
        })
    });
}

criterion_group!(benches, bench_blocks, bench_stream);
criterion_main!(benches);
