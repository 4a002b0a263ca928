//! A fixed-size latency histogram, so a pipeline that runs for days keeps its percentiles in
//! constant memory (a list of every sample grows by 30 values a second per stream).

use serde::Serialize;

/// Smallest latency told apart from zero, in milliseconds (1 µs).
const MIN_MS: f64 = 1e-3;
/// Buckets per factor of ten. Bucket edges grow by 10^(1/96) ≈ 2.4 %, so a percentile read at a
/// bucket's geometric middle is within 1.2 % of the exact sample.
const PER_DECADE: usize = 96;
/// Decades above `MIN_MS`: 1 µs up to 10^6 s; larger samples land in the last bucket.
const DECADES: usize = 12;
const BUCKETS: usize = PER_DECADE * DECADES;

/// Latency samples in log-spaced buckets: constant memory, mergeable, percentiles to within
/// 1.2 % of the exact nearest-rank value. Minimum, maximum and mean are exact.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyHistogram {
    #[serde(skip)]
    counts: Vec<u64>,
    count: u64,
    sum_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_ms: 0.0,
            min_ms: f64::INFINITY,
            max_ms: f64::NEG_INFINITY,
        }
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample in milliseconds; NaN and negative samples are ignored (a clock that
    /// went backwards says nothing about latency).
    pub fn record(&mut self, ms: f64) {
        if ms.is_nan() || ms < 0.0 {
            return;
        }
        self.counts[bucket(ms)] += 1;
        self.count += 1;
        self.sum_ms += ms;
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// Forgets every sample, keeping the buckets' memory.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.count = 0;
        self.sum_ms = 0.0;
        self.min_ms = f64::INFINITY;
        self.max_ms = f64::NEG_INFINITY;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in milliseconds, NaN without samples.
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.sum_ms / self.count as f64 }
    }

    /// Smallest sample in milliseconds, NaN without samples.
    pub fn min_ms(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.min_ms }
    }

    /// Largest sample in milliseconds, NaN without samples.
    pub fn max_ms(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.max_ms }
    }

    /// Nearest-rank percentile `q` (0..=1) in milliseconds, NaN without samples. The first and
    /// last ranks are the exact minimum and maximum; any other is the geometric middle of its
    /// sample's bucket, clamped to them.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == 1 {
            return self.min_ms;
        }
        if rank == self.count {
            return self.max_ms;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return middle(i).clamp(self.min_ms, self.max_ms);
            }
        }
        self.max_ms
    }
}

fn bucket(ms: f64) -> usize {
    if ms < MIN_MS {
        return 0;
    }
    let i = ((ms / MIN_MS).log10() * PER_DECADE as f64).floor();
    (i as usize).min(BUCKETS - 1)
}

/// Geometric middle of bucket `i` (the first bucket also holds everything below `MIN_MS`).
fn middle(i: usize) -> f64 {
    MIN_MS * 10f64.powf((i as f64 + 0.5) / PER_DECADE as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn exact(samples: &[f64], q: f64) -> f64 {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        crate::metrics::percentile(&v, q)
    }

    #[test]
    fn percentiles_are_within_the_bucket_resolution_of_the_exact_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Log-uniform from 10 µs to 10 s: every scale a pipeline sees.
        let samples: Vec<f64> = (0..20_000).map(|_| 10f64.powf(rng.gen_range(-2.0..4.0))).collect();
        let mut h = LatencyHistogram::new();
        samples.iter().for_each(|&s| h.record(s));
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let (got, want) = (h.percentile_ms(q), exact(&samples, q));
            assert!((got / want - 1.0).abs() < 0.012, "q {q}: {got} vs exact {want}");
        }
        assert_eq!(h.count(), 20_000);
        assert_eq!(h.min_ms(), exact(&samples, 0.0));
        assert_eq!(h.max_ms(), exact(&samples, 1.0));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((h.mean_ms() - mean).abs() < 1e-9 * mean);
    }

    #[test]
    fn memory_does_not_grow_with_the_samples() {
        let mut h = LatencyHistogram::new();
        let before = h.counts.capacity();
        for i in 0..1_000_000 {
            h.record(f64::from(i % 5000) * 0.01);
        }
        assert_eq!(h.counts.capacity(), before);
        assert_eq!(h.count(), 1_000_000);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) =
            (LatencyHistogram::new(), LatencyHistogram::new(), LatencyHistogram::new());
        for i in 0..1000 {
            let ms = 0.5 + f64::from(i) * 0.37;
            if i % 3 == 0 {
                a.record(ms)
            } else {
                b.record(ms)
            }
            all.record(ms);
        }
        a.merge(&b);
        b.clear();
        assert!(b.count() == 0 && b.percentile_ms(0.5).is_nan() && b.max_ms().is_nan());
        for q in [0.1, 0.5, 0.99] {
            assert_eq!(a.percentile_ms(q), all.percentile_ms(q));
        }
        assert_eq!((a.count(), a.min_ms(), a.max_ms()), (all.count(), all.min_ms(), all.max_ms()));
    }

    #[test]
    fn empty_nan_negative_and_huge_samples_are_handled() {
        let mut h = LatencyHistogram::new();
        assert!(h.percentile_ms(0.5).is_nan() && h.mean_ms().is_nan() && h.max_ms().is_nan());
        h.record(f64::NAN);
        h.record(-1.0);
        assert_eq!(h.count(), 0);
        h.record(0.0);
        h.record(1e12);
        assert_eq!(h.percentile_ms(0.0), 0.0, "the first rank is the exact minimum");
        assert_eq!(h.percentile_ms(1.0), 1e12, "the last rank is the exact maximum");
        h.record(0.0);
        let p50 = h.percentile_ms(0.5);
        assert!((0.0..=1.1e-3).contains(&p50), "a rank below 1 µs reads the first bucket: {p50}");
    }
}
