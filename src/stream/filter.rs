//! One-Euro filter on joint positions (Casiery, Roussel & Vogel, CHI 2012): a low-pass filter
//! whose cut-off rises with speed, so still joints stop jittering while fast motion keeps little
//! lag. Body trackers such as MediaPipe and Azure Kinect are jittery enough to need it; Kinect v2
//! recordings mostly do not, so it is off by default.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::frame::{Frame, NUM_JOINTS};

/// Filter settings (the paper's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OneEuroConfig {
    /// Cut-off frequency at rest, Hz: lower = smoother, more lag.
    pub min_cutoff_hz: f64,
    /// How fast the cut-off rises with speed (per m/s): higher = less lag in fast motion.
    pub beta: f64,
    /// Cut-off of the speed estimate, Hz.
    pub derivative_cutoff_hz: f64,
}

impl Default for OneEuroConfig {
    fn default() -> Self {
        OneEuroConfig { min_cutoff_hz: 1.0, beta: 0.5, derivative_cutoff_hz: 1.0 }
    }
}

fn alpha(cutoff_hz: f64, dt_secs: f64) -> f64 {
    let tau = 1.0 / (2.0 * std::f64::consts::PI * cutoff_hz);
    1.0 / (1.0 + tau / dt_secs)
}

/// State of one scalar signal.
#[derive(Clone, Copy, Debug)]
struct Axis {
    x: f64,
    dx: f64,
}

/// The filter over every joint coordinate of every body of one stream, keyed by body id.
#[derive(Clone, Debug)]
pub(crate) struct JointFilter {
    cfg: OneEuroConfig,
    bodies: HashMap<u64, [[Axis; 3]; NUM_JOINTS]>,
    last_secs: Option<f64>,
}

impl JointFilter {
    /// A filter with no history.
    pub fn new(cfg: OneEuroConfig) -> Self {
        JointFilter { cfg, bodies: HashMap::new(), last_secs: None }
    }

    /// Filters `frame`'s joints in place. A body seen for the first time, or after a time step
    /// that is not positive, starts from its raw position. Bodies that left are forgotten.
    pub fn apply(&mut self, frame: &mut Frame) {
        let dt = self
            .last_secs
            .map(|t| frame.timestamp_secs - t)
            .filter(|dt| *dt > 0.0 && dt.is_finite());
        self.last_secs = Some(frame.timestamp_secs);
        self.bodies.retain(|id, _| frame.bodies.iter().any(|b| b.id == *id));
        for body in &mut frame.bodies {
            let state = self.bodies.entry(body.id).or_insert_with(|| {
                body.joints.map(|j| j.pos.map(|p| Axis { x: f64::from(p), dx: 0.0 }))
            });
            let Some(dt) = dt else {
                *state = body.joints.map(|j| j.pos.map(|p| Axis { x: f64::from(p), dx: 0.0 }));
                continue;
            };
            for (joint, axes) in body.joints.iter_mut().zip(state.iter_mut()) {
                for (p, axis) in joint.pos.iter_mut().zip(axes.iter_mut()) {
                    let raw = f64::from(*p);
                    let dx = (raw - axis.x) / dt;
                    axis.dx += alpha(self.cfg.derivative_cutoff_hz, dt) * (dx - axis.dx);
                    let cutoff = self.cfg.min_cutoff_hz + self.cfg.beta * axis.dx.abs();
                    axis.x += alpha(cutoff, dt) * (raw - axis.x);
                    *p = axis.x as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Body;

    fn frame(i: u64, x: f32) -> Frame {
        Frame {
            index: i,
            timestamp_secs: i as f64 / 30.0,
            bodies: vec![Body::from_positions(1, &[[x, 0.0, 2.0]; NUM_JOINTS])],
        }
    }

    #[test]
    fn jitter_at_rest_is_damped_and_a_step_is_followed() {
        let mut f = JointFilter::new(OneEuroConfig::default());
        // ±1 cm alternating jitter around 0: the output moves much less.
        let mut spread: f32 = 0.0;
        for i in 0..60 {
            let mut fr = frame(i, if i % 2 == 0 { 0.01 } else { -0.01 });
            f.apply(&mut fr);
            if i > 30 {
                spread = spread.max(fr.bodies[0].joints[0].pos[0].abs());
            }
        }
        assert!(spread < 0.004, "{spread}");
        // A 0.5 m step is reached within a second.
        let mut last = 0.0;
        for i in 60..90 {
            let mut fr = frame(i, 0.5);
            f.apply(&mut fr);
            last = fr.bodies[0].joints[0].pos[0];
        }
        assert!((last - 0.5).abs() < 0.02, "{last}");
    }

    #[test]
    fn a_new_body_starts_from_its_raw_position() {
        let mut f = JointFilter::new(OneEuroConfig::default());
        let mut a = frame(0, 0.0);
        f.apply(&mut a);
        let mut b = frame(1, 0.3);
        b.bodies[0].id = 7;
        f.apply(&mut b);
        assert_eq!(b.bodies[0].joints[3].pos[0], 0.3);
    }
}
