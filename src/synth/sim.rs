//! Endless live simulator: one person (sometimes two) performing random actions forever, frame
//! by frame at the configured rate, with the true class of every frame. The `sim` live source
//! wraps it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SynthConfig;
use super::sequence::{Camera, Performer, Placement, Sensor};
use crate::frame::{Body, Frame};

/// A person in view of the simulated sensor.
#[derive(Clone, Debug)]
struct Actor {
    id: u64,
    performer: Performer,
    placement: Placement,
    sensor: Sensor,
}

/// An endless synthetic skeleton stream with ground truth.
///
/// Deterministic for a seed: two simulators built alike yield identical frames. Not real-time
/// paced; the caller (the `sim` source) sleeps between frames. Memory stays bounded: finished
/// segments are forgotten.
#[derive(Clone, Debug)]
pub struct Simulator {
    cfg: SynthConfig,
    rng: ChaCha8Rng,
    noise_rng: ChaCha8Rng,
    camera: Camera,
    main: Actor,
    second: Option<Actor>,
    next_index: u64,
}

impl Simulator {
    /// A simulator with the default [`SynthConfig`].
    pub fn new(seed: u64) -> Self {
        Self::with_config(&SynthConfig::default(), seed)
    }

    /// A simulator with `cfg`'s rate, noise, drop-outs, gaps and second-person probability.
    pub fn with_config(cfg: &SynthConfig, seed: u64) -> Self {
        let cfg = cfg.sanitized();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise_rng = ChaCha8Rng::seed_from_u64(rng.r#gen());
        let camera = Camera::sample(&mut rng);
        let placement = Placement::main(&mut rng);
        let main = Actor {
            id: 1,
            performer: Performer::new(&mut rng),
            placement,
            sensor: Sensor::new(cfg.noise_m, cfg.dropout_prob),
        };
        let second = rng.gen_bool(cfg.second_person_prob).then(|| Actor {
            id: 2,
            performer: Performer::new(&mut rng),
            placement: Placement::beside(&mut rng, &placement),
            sensor: Sensor::new(cfg.noise_m, cfg.dropout_prob),
        });
        Simulator { cfg, rng, noise_rng, camera, main, second, next_index: 0 }
    }

    /// Frame rate of the stream.
    pub fn fps(&self) -> f64 {
        self.cfg.fps
    }

    /// The next frame and the class the main person (body id 1, listed first) is performing.
    pub fn next_frame(&mut self) -> (Frame, usize) {
        let index = self.next_index;
        self.next_index += 1;
        let t = index as f64 / self.cfg.fps;
        let mut bodies = Vec::with_capacity(2);
        for actor in std::iter::once(&mut self.main).chain(self.second.as_mut()) {
            actor.performer.plan_ahead(&mut self.rng, &self.cfg, t);
            let clean = actor
                .performer
                .positions_at(t)
                .map(|p| actor.placement.camera_point(&self.camera, p));
            let joints = actor.sensor.observe(&mut self.noise_rng, &clean, actor.placement.depth());
            bodies.push(Body { id: actor.id, joints });
        }
        let class = self.main.performer.class_at(t);
        (Frame { index, timestamp_secs: t, bodies }, class)
    }
}

impl Iterator for Simulator {
    type Item = (Frame, usize);

    /// Never `None`: the stream is endless.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_frame())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulator_is_deterministic_and_runs_through_many_actions() {
        let mut a = Simulator::new(5);
        let mut b = Simulator::new(5);
        let mut classes = std::collections::BTreeSet::new();
        let mut changes = 0;
        let mut prev = usize::MAX;
        // Ten simulated minutes.
        for i in 0..(30 * 600) {
            let (fa, ca) = a.next_frame();
            let (fb, cb) = b.next_frame();
            assert_eq!(fa, fb);
            assert_eq!(ca, cb);
            assert_eq!(fa.index, i);
            assert!(fa.first_invalid_joint(6.0).is_none());
            classes.insert(ca);
            changes += usize::from(ca != prev);
            prev = ca;
        }
        assert_eq!(classes.len(), 15, "classes seen: {classes:?}");
        assert!(changes > 100, "only {changes} label changes in 10 min");
        // Finished segments are forgotten: the timeline stays short.
        assert!(a.main.performer.segment_count() < 12);
        assert!(a.main.performer.planned_until() > 600.0);
        let mut c = Simulator::new(6);
        let differs = (0..30).any(|_| c.next_frame().0 != a.next_frame().0);
        assert!(differs);
    }
}
