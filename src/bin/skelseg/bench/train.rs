//! `--train`: training throughput on random batches.

use anyhow::Result;
use serde::Serialize;
use skelseg::model::checkpoint::LoadedModel;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

use super::figure::{Figure, sync, time_ms};

#[derive(Debug, Default, Serialize)]
pub(super) struct TrainFigures {
    /// Frames per second of a whole training step and of DSMI forward + backward.
    train_frames_per_sec: Option<Figure>,
    train_dsmi_frames_per_sec: Option<Figure>,
}

impl TrainFigures {
    /// `repeats` measurements of [`rates`] on `batch` × `crop` frames.
    pub fn measure(
        loaded: &LoadedModel,
        (batch, crop): (i64, i64),
        device: Device,
        repeats: usize,
    ) -> Result<Self> {
        let (mut step, mut dsmi) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let (s, d) = rates(loaded, batch, crop, device)?;
            step.push(s);
            dsmi.push(d);
        }
        Ok(Self {
            train_frames_per_sec: Figure::measured(step),
            train_dsmi_frames_per_sec: Figure::measured(dsmi),
        })
    }

    pub fn print(&self, (batch, crop): (i64, i64)) {
        if let (Some(step), Some(dsmi)) =
            (&self.train_frames_per_sec, &self.train_dsmi_frames_per_sec)
        {
            println!(
                "training ({batch} × {crop} frames): {} frames/s per step, DSMI forward + backward {} frames/s",
                step.show(0),
                dsmi.show(0)
            );
        }
    }
}

/// Training throughput on random inputs (frames per second): a whole step (forward in training
/// mode, loss, backward, AdamW), and DSMI forward + backward alone. Each the median of 3 steps
/// after one warm-up step.
fn rates(loaded: &LoadedModel, batch: i64, crop: i64, device: Device) -> Result<(f64, f64)> {
    let model = &loaded.model;
    let a = loaded.meta.model.num_classes;
    let kind = loaded.vs.variables().values().next().map_or(Kind::Float, |t| t.kind());
    let x = Tensor::randn([batch, 6, crop, 25], (Kind::Float, device)).to_kind(kind) * 0.5;
    let mask = Tensor::ones([batch, crop], (kind, device));
    let labels = Tensor::randint(a, [batch, crop], (Kind::Int64, device));
    let boundary = Tensor::zeros([batch, crop], (Kind::Float, device));
    let mut opt = tch::nn::AdamW::default().build(&loaded.vs, 1e-7)?;
    let frames = (batch * crop) as f64;
    let step_ms = time_ms(1, 3, || {
        tch::with_grad(|| -> Result<()> {
            let out = model.forward_t(&x, &x, &x, &mask, true)?;
            let loss = skelseg::model::loss(&out, &labels, &boundary, &mask)?;
            opt.backward_step(&loss.total);
            sync(device);
            Ok(())
        })
    })?;
    let dsmi_ms = time_ms(1, 3, || {
        tch::with_grad(|| -> Result<()> {
            opt.zero_grad();
            model.dsmi(&x, &x, &x, true)?.sum(Kind::Float).backward();
            sync(device);
            Ok(())
        })
    })?;
    Ok((frames / (step_ms * 1e-3), frames / (dsmi_ms * 1e-3)))
}
