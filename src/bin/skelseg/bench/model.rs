//! The model alone on random inputs: DSMI per frame, MFAI per window, the streaming engine's
//! window against the no-cache baseline, and all of it against the machine's matrix-product peak.

use anyhow::Result;
use serde::Serialize;
use skelseg::model::{self, InterAct, ModelConfig};
use tch::{Device, Kind, Tensor};

use super::figure::{Figure, sync, time_ms};

/// Batch sizes DSMI and MFAI are timed at.
const BATCHES: [i64; 5] = [1, 4, 8, 16, 32];

/// Square matrix sizes the peak is taken over.
const PEAK_SIZES: [i64; 4] = [128, 256, 512, 1024];

/// What the streaming engine runs: windows of `frames`, one every `hop` frames, finalising the
/// columns `lookahead` frames short of the window's end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub frames: i64,
    pub hop: usize,
    pub lookahead: usize,
}

impl Window {
    /// First column a window finalises (what the engine computes).
    fn from(&self) -> i64 {
        (self.frames - self.hop as i64 - self.lookahead as i64).max(0)
    }
}

/// The model figures, each over the repeats.
#[derive(Debug, Serialize)]
pub(super) struct ModelFigures {
    /// The machine's matrix-product peak (in the bench's precision) through libtorch, measured in
    /// the same run: G multiply-adds per second of the fastest n×n by n×n product among
    /// [`PEAK_SIZES`] (the small ones run from cache; on a machine whose memory bandwidth is
    /// shared, large ones run far slower).
    pub matmul_peak_gmacs: Figure,
    /// The size n that was fastest in each repeat.
    matmul_peak_size: Vec<i64>,
    /// The 1024 × 1024 product alone (memory-bound where bandwidth is the limit).
    matmul_1024_gmacs: Figure,
    dsmi_us_per_frame: Figure,
    dsmi_us_per_frame_batch: Vec<(usize, Figure)>,
    /// DSMI multiply-adds per second at batch 1 and at the best batch, as a fraction of the peak.
    dsmi_peak_fraction: Figure,
    dsmi_peak_fraction_best_batch: Figure,
    mfai_ms_per_window: Figure,
    /// Milliseconds per MFAI forward of a batch of n windows (the whole batch; per window is
    /// this over n).
    mfai_ms_per_batch: Vec<(usize, Figure)>,
    mfai_peak_fraction: Figure,
    mfai_peak_fraction_best_batch: Figure,
    /// `--profile`: each block's milliseconds per MFAI window of batch 1 (`mfai.*`) or per DSMI
    /// frame of batch 1 (`dsmi.*`), in the order they finish.
    blocks_ms: Vec<(String, Figure)>,
    dsmi_macs_per_frame: u64,
    mfai_macs_per_window: u64,
    /// Full model (DSMI over the whole window + MFAI), recomputed per window: the no-cache baseline.
    full_ms_per_window: Figure,
    /// The streaming engine's MFAI window: the final stage for the columns one hop finalises
    /// (`InterAct::mfai_final`), batch 1.
    mfai_final_ms_per_window: Figure,
    /// DSMI per frame in a batch of one hop's frames: how the engine runs it (once per window).
    dsmi_us_per_frame_at_hop: Figure,
    /// Streaming cost per frame: DSMI per frame (at hop) + one engine window every hop frames.
    streaming_ms_per_frame: Figure,
    /// Baseline cost per frame: the full model every hop frames.
    baseline_ms_per_frame: Figure,
    /// How many times cheaper the cached path is than the baseline (repeat by repeat).
    speedup_vs_baseline: Figure,
    /// A stricter baseline: without the feature cache, but computing only the final columns
    /// too (DSMI over the window + `mfai_final`), so the ratio is the cache's alone.
    baseline_same_columns_ms_per_frame: Figure,
    speedup_vs_baseline_same_columns: Figure,
}

/// One repeat's raw timings.
struct Repeat {
    /// G multiply-adds per second for each of [`PEAK_SIZES`].
    matmul_gmacs: Vec<f64>,
    /// µs per frame of DSMI, and ms per batch of MFAI, for each of [`BATCHES`].
    dsmi_us: Vec<f64>,
    mfai_ms: Vec<f64>,
    /// DSMI per frame in a batch of one hop's frames.
    dsmi_hop_us: f64,
    /// The engine's window: final stage, only the columns one hop finalises.
    mfai_final_ms: f64,
    full_ms: f64,
    /// The no-cache baseline computing only those columns too.
    full_final_ms: f64,
    /// `--profile`: ms per window (per frame for `dsmi.*`) of each block.
    blocks: Vec<(String, f64)>,
}

impl ModelFigures {
    /// Times `model` (already in `kind`) `repeats` times; `profile` adds the per-block figures.
    pub fn measure(
        model: &InterAct,
        config: &ModelConfig,
        window: Window,
        kind: Kind,
        device: Device,
        (repeats, profile): (usize, bool),
    ) -> Result<Self> {
        let repeats: Vec<Repeat> = (0..repeats)
            .map(|_| Repeat::measure(model, config.hidden, window, kind, device, profile))
            .collect::<Result<_>>()?;
        Ok(Self::summarise(&repeats, config, window))
    }

    fn summarise(repeats: &[Repeat], config: &ModelConfig, window: Window) -> Self {
        let figure = |f: &dyn Fn(&Repeat) -> f64| Figure::new(repeats.iter().map(f).collect());
        let fastest = |r: &Repeat| r.matmul_gmacs.iter().copied().fold(0.0, f64::max);
        let peak = figure(&fastest);
        let peak_size = repeats
            .iter()
            .map(|r| {
                let i = r.matmul_gmacs.iter().position(|&g| g == fastest(r)).unwrap_or(0);
                PEAK_SIZES[i]
            })
            .collect();
        let per_batch = |pick: &dyn Fn(&Repeat) -> &[f64]| -> Vec<(usize, Figure)> {
            BATCHES
                .iter()
                .enumerate()
                .map(|(i, &n)| (n as usize, figure(&|r| pick(r)[i])))
                .collect()
        };
        let dsmi_batch = per_batch(&|r| &r.dsmi_us);
        let mfai_batch = per_batch(&|r| &r.mfai_ms);
        let dsmi_macs = model::dsmi_flops_per_frame(config);
        let mfai_macs = model::mfai_flops_per_window(config, window.frames as u64);
        // Fraction of the peak, repeat by repeat: (MACs / s) / (peak MACs / s).
        let dsmi_fraction =
            |us: &Figure| us.zip(&peak, |us, p| dsmi_macs as f64 / (us * 1e-6) / (p * 1e9));
        let mfai_fraction = |ms: &Figure, n: usize| {
            ms.zip(&peak, |ms, p| (n as u64 * mfai_macs) as f64 / (ms * 1e-3) / (p * 1e9))
        };
        let (_, dsmi_best) = cheapest(&dsmi_batch, false);
        let (mfai_best_n, mfai_best) = cheapest(&mfai_batch, true);
        let block_names = repeats.first().map_or_else(Vec::new, |r| {
            r.blocks.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>()
        });
        let blocks_ms = block_names
            .into_iter()
            .map(|name| {
                let ms =
                    figure(&|r| r.blocks.iter().find(|b| b.0 == name).map_or(f64::NAN, |b| b.1));
                (name, ms)
            })
            .collect();
        let hop = window.hop as f64;
        let mfai_final = figure(&|r| r.mfai_final_ms);
        let dsmi_hop = figure(&|r| r.dsmi_hop_us);
        let streaming = dsmi_hop.zip(&mfai_final, |us, ms| us / 1e3 + ms / hop);
        let full = figure(&|r| r.full_ms);
        let baseline = full.map(|ms| ms / hop);
        let baseline_final = figure(&|r| r.full_final_ms).map(|ms| ms / hop);
        Self {
            matmul_1024_gmacs: figure(&|r| r.matmul_gmacs[PEAK_SIZES.len() - 1]),
            matmul_peak_size: peak_size,
            dsmi_peak_fraction: dsmi_fraction(&dsmi_batch[0].1),
            dsmi_peak_fraction_best_batch: dsmi_fraction(&dsmi_best),
            dsmi_us_per_frame: dsmi_batch[0].1.clone(),
            dsmi_us_per_frame_batch: dsmi_batch,
            mfai_peak_fraction: mfai_fraction(&mfai_batch[0].1, 1),
            mfai_peak_fraction_best_batch: mfai_fraction(&mfai_best, mfai_best_n),
            mfai_ms_per_window: mfai_batch[0].1.clone(),
            mfai_ms_per_batch: mfai_batch,
            matmul_peak_gmacs: peak,
            blocks_ms,
            dsmi_macs_per_frame: dsmi_macs,
            mfai_macs_per_window: mfai_macs,
            full_ms_per_window: full,
            mfai_final_ms_per_window: mfai_final,
            dsmi_us_per_frame_at_hop: dsmi_hop,
            speedup_vs_baseline: baseline.zip(&streaming, |b, s| b / s),
            speedup_vs_baseline_same_columns: baseline_final.zip(&streaming, |b, s| b / s),
            streaming_ms_per_frame: streaming,
            baseline_ms_per_frame: baseline,
            baseline_same_columns_ms_per_frame: baseline_final,
        }
    }

    /// The human-readable table.
    pub fn print(&self) {
        println!(
            "matmul peak: {} G multiply-adds/s (fastest of n = {PEAK_SIZES:?}; 1024: {})",
            self.matmul_peak_gmacs.show(1),
            self.matmul_1024_gmacs.show(1)
        );
        for (n, us) in &self.dsmi_us_per_frame_batch {
            println!("DSMI  batch {n:>2}: {} µs/frame", us.show(1));
        }
        println!(
            "DSMI  {:.2} M multiply-adds/frame: {} of peak at batch 1, {} at the best batch",
            self.dsmi_macs_per_frame as f64 / 1e6,
            self.dsmi_peak_fraction.show(3),
            self.dsmi_peak_fraction_best_batch.show(3)
        );
        for (n, ms) in &self.mfai_ms_per_batch {
            println!("MFAI  batch {n:>2}: {} ms/window", ms.map(|ms| ms / *n as f64).show(2));
        }
        println!(
            "MFAI  {:.1} M multiply-adds/window: {} of peak at batch 1, {} at the best batch",
            self.mfai_macs_per_window as f64 / 1e6,
            self.mfai_peak_fraction.show(3),
            self.mfai_peak_fraction_best_batch.show(3)
        );
        if !self.blocks_ms.is_empty() {
            // Shares are of MFAI's top-level blocks (nested ones, `a/b`, are inside them).
            let top = |name: &str| name.starts_with("mfai.") && !name.contains('/');
            let mfai: f64 =
                self.blocks_ms.iter().filter(|(n, _)| top(n)).map(|(_, f)| f.median).sum();
            println!("blocks (batch 1; ms per window, dsmi.* per frame; share of MFAI's blocks):");
            for (name, ms) in &self.blocks_ms {
                let share = if top(name) {
                    format!("{:5.1} %", ms.median / mfai * 100.0)
                } else {
                    String::new()
                };
                println!("  {name:<28} {} {share}", ms.show(3));
            }
        }
        println!("full model per window (no cache): {} ms", self.full_ms_per_window.show(2));
        println!(
            "engine's MFAI window (final stage, last hop's columns): {} ms",
            self.mfai_final_ms_per_window.show(2)
        );
        println!(
            "DSMI as the engine runs it (one batch of a hop's frames per window): {} µs per frame",
            self.dsmi_us_per_frame_at_hop.show(1)
        );
        println!(
            "per frame: streaming {} ms vs no-cache baseline {} ms → {}× cheaper",
            self.streaming_ms_per_frame.show(3),
            self.baseline_ms_per_frame.show(3),
            self.speedup_vs_baseline.show(1)
        );
        println!(
            "  against a no-cache baseline that also computes only those columns: {} ms → {}×",
            self.baseline_same_columns_ms_per_frame.show(3),
            self.speedup_vs_baseline_same_columns.show(1)
        );
    }
}

/// The batch with the lowest cost per frame (DSMI, already per frame: `per_item` false) or per
/// window (MFAI, per batch: `per_item` true).
fn cheapest(batches: &[(usize, Figure)], per_item: bool) -> (usize, Figure) {
    let cost = |(n, f): &(usize, Figure)| f.median / if per_item { *n as f64 } else { 1.0 };
    batches
        .iter()
        .min_by(|a, b| cost(a).total_cmp(&cost(b)))
        .cloned()
        .unwrap_or_else(|| (1, Figure::new(vec![])))
}

impl Repeat {
    fn measure(
        model: &InterAct,
        d: i64,
        window: Window,
        kind: Kind,
        device: Device,
        profile: bool,
    ) -> Result<Self> {
        let w = window.frames;
        let input = |n: i64, t: i64| {
            Tensor::randn([n, 6, t, 25], (Kind::Float, device)).to_kind(kind) * 0.1
        };
        let dsmi_ms = |x: &Tensor| {
            time_ms(5, 30, || {
                drop(model.dsmi(x, x, x, false)?);
                sync(device);
                Ok(())
            })
        };
        let matmul_gmacs =
            PEAK_SIZES.iter().map(|&n| matmul_gmacs(n, kind, device)).collect::<Result<_>>()?;
        let dsmi_us = BATCHES
            .iter()
            .map(|&n| Ok(dsmi_ms(&input(n, 1))? * 1e3 / n as f64))
            .collect::<Result<_>>()?;
        // The engine runs DSMI once per window, over the hop's frames.
        let dsmi_hop_us = dsmi_ms(&input(window.hop as i64, 1))? * 1e3 / window.hop as f64;
        let mfai_ms = BATCHES
            .iter()
            .map(|&n| {
                let feats = Tensor::randn([n, d, w], (kind, device));
                let mask = Tensor::ones([n, w], (kind, device));
                time_ms(2, 10, || {
                    drop(model.mfai(&feats, &mask, false)?);
                    sync(device);
                    Ok(())
                })
            })
            .collect::<Result<_>>()?;
        let mask = Tensor::ones([1, w], (kind, device));
        let mfai_final_ms = {
            let feats = Tensor::randn([1, d, w], (kind, device));
            time_ms(2, 10, || {
                drop(model.mfai_final(&feats, &mask, window.from())?);
                sync(device);
                Ok(())
            })?
        };
        let x = input(1, w);
        let full_ms = time_ms(2, 10, || {
            drop(model.forward_t(&x, &x, &x, &mask, false)?);
            sync(device);
            Ok(())
        })?;
        let full_final_ms = time_ms(2, 10, || {
            let feats = model.dsmi(&x, &x, &x, false)?;
            drop(model.mfai_final(&feats, &mask, window.from())?);
            sync(device);
            Ok(())
        })?;
        let blocks = if profile { profile_blocks(model, d, w, kind, device)? } else { Vec::new() };
        Ok(Self {
            matmul_gmacs,
            dsmi_us,
            mfai_ms,
            dsmi_hop_us,
            mfai_final_ms,
            full_ms,
            full_final_ms,
            blocks,
        })
    }
}

/// G multiply-adds per second of an `n × n` by `n × n` matrix product in `kind`.
fn matmul_gmacs(n: i64, kind: Kind, device: Device) -> Result<f64> {
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let ms = time_ms(1, 5, || {
        drop(a.matmul(&b));
        sync(device);
        Ok(())
    })?;
    Ok((n * n * n) as f64 / (ms * 1e-3) / 1e9)
}

/// `--profile`: each block's median milliseconds over 10 MFAI windows (batch 1, `w` frames) and
/// 30 DSMI frames (batch 1), after warm-up.
fn profile_blocks(
    model: &InterAct,
    d: i64,
    w: i64,
    kind: Kind,
    device: Device,
) -> Result<Vec<(String, f64)>> {
    let feats = Tensor::randn([1, d, w], (kind, device));
    let mask = Tensor::ones([1, w], (kind, device));
    let x = Tensor::randn([1, 6, 1, 25], (kind, device)) * 0.1;
    let mut runs: Vec<(String, Vec<f64>)> = Vec::new();
    let mut record = |blocks: Vec<model::BlockTime>| {
        for b in blocks {
            let ms = b.total.as_secs_f64() * 1e3;
            match runs.iter_mut().find(|(name, _)| *name == b.name) {
                Some((_, v)) => v.push(ms),
                None => runs.push((b.name, vec![ms])),
            }
        }
    };
    for i in 0..12 {
        let (out, blocks) = model::profile_blocks(|| model.mfai(&feats, &mask, false));
        drop(out?);
        sync(device);
        if i >= 2 {
            record(blocks);
        }
    }
    for i in 0..35 {
        let (out, blocks) = model::profile_blocks(|| model.dsmi(&x, &x, &x, false));
        drop(out?);
        sync(device);
        if i >= 5 {
            record(blocks);
        }
    }
    Ok(runs
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            (name, v[v.len() / 2])
        })
        .collect())
}
