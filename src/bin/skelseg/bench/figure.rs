//! Repeated measurements and how they are timed.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use tch::Device;

/// One figure measured `repeats` times (each repeat itself the median of several runs), so a
/// noisy neighbour shows up as spread rather than as a different answer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// `(max − min) / median`.
    pub spread: f64,
    pub runs: Vec<f64>,
}

impl Figure {
    pub fn new(mut runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        let (min, max) = (
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN),
        );
        runs.shrink_to_fit();
        Self { median, min, max, spread: (max - min) / median, runs }
    }

    /// `None` for a figure that was not measured (no runs).
    pub fn measured(runs: Vec<f64>) -> Option<Self> {
        (!runs.is_empty()).then(|| Self::new(runs))
    }

    /// `f` of every run (for derived figures: throughput, ratios).
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        Self::new(self.runs.iter().map(|&x| f(x)).collect())
    }

    /// `f(a_i, b_i)` run by run: ratios of figures measured in the same repeat.
    pub fn zip(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self::new(self.runs.iter().zip(&other.runs).map(|(&a, &b)| f(a, b)).collect())
    }

    /// `median [min–max]` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            self.median,
            self.min,
            self.max,
            digits = digits
        )
    }
}

/// Median wall time of `f` in milliseconds over `reps` runs after `warmup` runs.
pub(super) fn time_ms(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Waits for queued CUDA work, so a timer stops when the work is done rather than queued.
pub(super) fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_keeps_its_runs_and_reports_median_and_spread() {
        let f = Figure::new(vec![3.0, 1.0, 2.0]);
        assert_eq!((f.median, f.min, f.max), (2.0, 1.0, 3.0));
        assert_eq!(f.spread, 1.0);
        assert_eq!(f.runs, [3.0, 1.0, 2.0], "runs stay in the order they were measured");
        let ratio = f.zip(&f.map(|x| 2.0 * x), |a, b| b / a);
        assert_eq!(ratio.runs, [2.0, 2.0, 2.0]);
        assert!(Figure::measured(vec![]).is_none());
        assert_eq!(f.show(1), "2.0 [1.0–3.0]");
    }
}
