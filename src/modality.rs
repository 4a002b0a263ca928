//! The model's three input modalities, derived from frames: absolute coordinates (abs), joints
//! relative to the SpineBase of the same body (rel) and the backward difference to the previous
//! frame (motion), for the two body slots, with channel = `slot * 3 + axis`.
//!
//! Follows the InterAct paper's modalities, with the
//! documented deviation that motion is a *backward* difference `x_t − x_{t−1}` (causal), so the
//! streaming path ([`ModalityState::push`]) and the batch path ([`batch`]) give bit-identical
//! numbers. Motion is the displacement per nominal frame period: when the frame index advanced
//! by `g` frames (a sensor that dropped frames, UTKinect's recordings that step by 2–10),
//! `(x_t − x_prev) / g`, up to `g = max_motion_gap`; it is zero on a body's first frame in its
//! slot, after a longer gap, and when the slot was empty in the previous frame. An absent slot is
//! zero in all three modalities. Joints that are not tracked keep their (possibly filled)
//! positions.
//!
//! With [`InputNorm::Body`] every position is first mapped into a body frame fixed causally per
//! stream ([`Anchor`]): set from the first person seen, kept while anyone holds a slot, set anew
//! from the next person once every slot has been freed. Both paths apply the same function in
//! the same order, so they stay bit-identical.
//!
//! Bodies go to slots by id ([`SlotAssigner`]): a body keeps the slot it first got while it is
//! tracked; one missing for more than `slot_timeout_frames` frees its slot; a new body takes the
//! lowest free slot; bodies beyond the two slots are ignored and counted.

use serde::{Deserialize, Serialize};

use crate::frame::{BODY_SLOTS, Frame, NUM_JOINTS};
use crate::model::InputNorm;

/// Channels per modality: 2 body slots × 3 axes.
pub const NUM_CHANNELS: usize = BODY_SLOTS * 3;
/// Values per modality and frame: `(6, 25)`.
pub const FRAME_VALUES: usize = NUM_CHANNELS * NUM_JOINTS;
/// Default number of missing frames after which a body's slot is freed.
pub const DEFAULT_SLOT_TIMEOUT_FRAMES: u64 = 15;
/// Default longest index gap (in nominal frame periods) across which motion is still derived:
/// a third of a second at 30 fps, which covers UTKinect's steps of 2–10 frames.
pub const DEFAULT_MAX_MOTION_GAP: u64 = 10;
/// Torso length (SpineBase to SpineShoulder) that [`InputNorm::Body`] scales every person to:
/// the median of the PKU-MMD performers, so normalised coordinates stay close to metres.
pub const REFERENCE_TORSO_M: f32 = 0.55;

/// Settings of modality derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityConfig {
    /// A body missing for more than this many frames frees its slot.
    #[serde(default = "default_slot_timeout_frames")]
    pub slot_timeout_frames: u64,
    /// Longest index gap across which motion is derived (as displacement per frame period).
    #[serde(default = "default_max_motion_gap")]
    pub max_motion_gap: u64,
    /// Coordinate normalisation; must match the model's
    /// ([`ModelConfig::input_norm`](crate::model::ModelConfig::input_norm)).
    #[serde(default)]
    pub norm: InputNorm,
}

fn default_slot_timeout_frames() -> u64 {
    DEFAULT_SLOT_TIMEOUT_FRAMES
}

fn default_max_motion_gap() -> u64 {
    DEFAULT_MAX_MOTION_GAP
}

impl Default for ModalityConfig {
    fn default() -> Self {
        ModalityConfig {
            slot_timeout_frames: DEFAULT_SLOT_TIMEOUT_FRAMES,
            max_motion_gap: DEFAULT_MAX_MOTION_GAP,
            norm: InputNorm::Camera,
        }
    }
}

impl ModalityConfig {
    /// The derivation a model was trained with (its input normalisation), other settings default.
    pub fn for_model(model: &crate::model::ModelConfig) -> Self {
        ModalityConfig { norm: model.input_norm, ..ModalityConfig::default() }
    }

    /// Nominal frame periods between two frame indices when motion may be derived across them.
    fn motion_gap(&self, prev_index: Option<u64>, index: u64) -> Option<f32> {
        let gap = index.checked_sub(prev_index?)?;
        (1..=self.max_motion_gap.max(1)).contains(&gap).then_some(gap as f32)
    }
}

/// A person-centred frame of reference: origin at the SpineBase, rotated about the vertical (y)
/// axis so the person's left-to-right direction (hips and shoulders) is the sensor's −x, as for
/// someone facing the sensor, and scaled to a [`REFERENCE_TORSO_M`] torso.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    origin: [f32; 3],
    cos: f32,
    sin: f32,
    scale: f32,
}

impl Anchor {
    /// The frame of a body with these positions. A degenerate pose (hips and shoulders on top of
    /// each other, a torso shorter than 5 cm, non-finite numbers) keeps the rotation or the
    /// scale at identity rather than dividing by nothing.
    pub fn from_body(pos: &[[f32; 3]; NUM_JOINTS]) -> Anchor {
        use crate::skeleton::kinect_v2::joint as j;
        let at = |i: usize| pos[i];
        let (hl, hr) = (at(j::HIP_LEFT), at(j::HIP_RIGHT));
        let (sl, sr) = (at(j::SHOULDER_LEFT), at(j::SHOULDER_RIGHT));
        let lx = (hl[0] - hr[0]) + (sl[0] - sr[0]);
        let lz = (hl[2] - hr[2]) + (sl[2] - sr[2]);
        let norm = lx.hypot(lz);
        let (cos, sin) =
            if norm.is_finite() && norm > 1e-3 { (-lx / norm, -lz / norm) } else { (1.0, 0.0) };
        let torso = {
            let (a, b) = (at(j::SPINE_BASE), at(j::SPINE_SHOULDER));
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        };
        let scale = if torso.is_finite() && torso > 0.05 { REFERENCE_TORSO_M / torso } else { 1.0 };
        let origin = at(j::SPINE_BASE);
        let origin = if origin.iter().all(|v| v.is_finite()) { origin } else { [0.0; 3] };
        Anchor { origin, cos, sin, scale }
    }

    /// `p` in this frame.
    pub fn apply(&self, p: [f32; 3]) -> [f32; 3] {
        let d = [p[0] - self.origin[0], p[1] - self.origin[1], p[2] - self.origin[2]];
        [
            (d[0] * self.cos + d[2] * self.sin) * self.scale,
            d[1] * self.scale,
            (d[2] * self.cos - d[0] * self.sin) * self.scale,
        ]
    }
}

/// The causal per-stream normalisation state shared by both derivation paths.
#[derive(Clone, Debug)]
struct Normaliser {
    norm: InputNorm,
    anchor: Option<Anchor>,
}

impl Normaliser {
    fn new(norm: InputNorm) -> Self {
        Normaliser { norm, anchor: None }
    }

    /// Positions of the bodies shown this frame (per slot), normalised; call once per frame
    /// after slot assignment.
    fn positions(
        &mut self,
        frame: &Frame,
        shown: &[Option<usize>; BODY_SLOTS],
        slots: &SlotAssigner,
    ) -> [Option<(u64, [[f32; 3]; NUM_JOINTS])>; BODY_SLOTS] {
        let bodies =
            shown.map(|i| i.and_then(|i| frame.bodies.get(i)).map(|b| (b.id, b.positions())));
        if self.norm == InputNorm::Camera {
            return bodies;
        }
        if slots.was_vacant() {
            self.anchor = None; // everyone left: the next person sets a new frame
        }
        if self.anchor.is_none() {
            self.anchor = bodies.iter().flatten().next().map(|(_, pos)| Anchor::from_body(pos));
        }
        let Some(anchor) = self.anchor else { return bodies };
        bodies.map(|b| b.map(|(id, pos)| (id, pos.map(|p| anchor.apply(p)))))
    }
}

/// Channel of `axis` (0 x, 1 y, 2 z) of body `slot`.
pub const fn channel(slot: usize, axis: usize) -> usize {
    slot * 3 + axis
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotOwner {
    id: u64,
    last_seen: u64,
}

/// Keeps bodies in stable slots across frames (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct SlotAssigner {
    timeout_frames: u64,
    owners: [Option<SlotOwner>; BODY_SLOTS],
    ignored_bodies: u64,
    /// Whether every slot was free when the last frame arrived (after timeouts).
    was_vacant: bool,
}

impl SlotAssigner {
    /// No slot taken; a body missing for more than `slot_timeout_frames` frames frees its slot.
    pub fn new(slot_timeout_frames: u64) -> Self {
        SlotAssigner {
            timeout_frames: slot_timeout_frames,
            owners: [None; BODY_SLOTS],
            ignored_bodies: 0,
            was_vacant: true,
        }
    }

    /// Whether every slot was free when the last assigned frame arrived, before its bodies took
    /// slots: nobody from before is still being tracked.
    pub fn was_vacant(&self) -> bool {
        self.was_vacant
    }

    /// Assigns the bodies of `frame`: per slot, the index into `frame.bodies` of the body shown
    /// there in this frame (`None`: the slot is empty in this frame, though it may still be
    /// reserved for a briefly missing body).
    pub fn assign(&mut self, frame: &Frame) -> [Option<usize>; BODY_SLOTS] {
        let index = frame.index;
        // Free the slots of bodies missing for too long. A body that comes back after a jump of
        // the frame index has been missing for the skipped frames too.
        for owner in &mut self.owners {
            if let Some(o) = *owner {
                let present = frame.bodies.iter().any(|b| b.id == o.id);
                let missing =
                    index.saturating_sub(o.last_seen.saturating_add(1)) + u64::from(!present);
                if missing > self.timeout_frames {
                    tracing::debug!(body = o.id, frame = index, "body lost, slot freed");
                    *owner = None;
                }
            }
        }
        self.was_vacant = self.owners.iter().all(Option::is_none);
        let mut shown = [None; BODY_SLOTS];
        for (i, body) in frame.bodies.iter().enumerate() {
            let own = self.owners.iter().position(|o| o.is_some_and(|o| o.id == body.id));
            let slot = own.or_else(|| self.owners.iter().position(Option::is_none));
            match slot {
                Some(s) if shown[s].is_none() => {
                    self.owners[s] = Some(SlotOwner { id: body.id, last_seen: index });
                    shown[s] = Some(i);
                }
                // No free slot, or the same id twice in one frame.
                _ => {
                    if self.ignored_bodies == 0 {
                        tracing::debug!(
                            body = body.id,
                            frame = index,
                            "more bodies than slots; extra ones ignored"
                        );
                    }
                    self.ignored_bodies += 1;
                }
            }
        }
        shown
    }

    /// Body id holding each slot (also while it is briefly missing).
    pub fn slot_ids(&self) -> [Option<u64>; BODY_SLOTS] {
        self.owners.map(|o| o.map(|o| o.id))
    }

    /// Bodies ignored so far because no slot was free (each counts once per frame it appears in).
    pub fn ignored_bodies(&self) -> u64 {
        self.ignored_bodies
    }

    /// Frees every slot and clears the count.
    pub fn reset(&mut self) {
        *self = SlotAssigner::new(self.timeout_frames);
    }
}

/// The three modalities of one frame, each laid out `(6, 25)`: value `[channel * 25 + joint]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameModalities {
    /// Camera-space coordinates.
    pub abs: [f32; FRAME_VALUES],
    /// Coordinates minus the same body's SpineBase (joint 0).
    pub rel: [f32; FRAME_VALUES],
    /// `x_t − x_{t−1}`, zero on a body's first frame and after a gap.
    pub motion: [f32; FRAME_VALUES],
    /// Body id shown in each slot in this frame.
    pub slot_ids: [Option<u64>; BODY_SLOTS],
}

impl FrameModalities {
    /// All zeros, no body.
    pub fn zeros() -> Self {
        FrameModalities {
            abs: [0.0; FRAME_VALUES],
            rel: [0.0; FRAME_VALUES],
            motion: [0.0; FRAME_VALUES],
            slot_ids: [None; BODY_SLOTS],
        }
    }
}

impl Default for FrameModalities {
    fn default() -> Self {
        FrameModalities::zeros()
    }
}

/// Streaming derivation: push frames in order, get each frame's modalities at once.
#[derive(Clone, Debug)]
pub struct ModalityState {
    cfg: ModalityConfig,
    slots: SlotAssigner,
    normaliser: Normaliser,
    prev_index: Option<u64>,
    /// Per slot, the body id and positions shown in the previous frame.
    prev: [Option<(u64, [[f32; 3]; NUM_JOINTS])>; BODY_SLOTS],
}

impl ModalityState {
    /// A fresh stream.
    pub fn new(cfg: &ModalityConfig) -> Self {
        ModalityState {
            cfg: cfg.clone(),
            slots: SlotAssigner::new(cfg.slot_timeout_frames),
            normaliser: Normaliser::new(cfg.norm),
            prev_index: None,
            prev: [None; BODY_SLOTS],
        }
    }

    /// Derives the modalities of the next frame of the stream.
    pub fn push(&mut self, frame: &Frame) -> FrameModalities {
        let shown = self.slots.assign(frame);
        let bodies = self.normaliser.positions(frame, &shown, &self.slots);
        let gap = self.cfg.motion_gap(self.prev_index, frame.index);
        let mut out = FrameModalities::zeros();
        for (s, body) in bodies.iter().enumerate() {
            let Some((id, pos)) = *body else {
                self.prev[s] = None;
                continue;
            };
            let prev = self.prev[s].filter(|(prev_id, _)| *prev_id == id).map(|(_, p)| p);
            let prev = gap.zip(prev);
            for axis in 0..3 {
                let c = channel(s, axis);
                for (v, p) in pos.iter().enumerate() {
                    let i = c * NUM_JOINTS + v;
                    out.abs[i] = p[axis];
                    out.rel[i] = p[axis] - pos[0][axis];
                    if let Some((g, q)) = prev {
                        out.motion[i] = (p[axis] - q[v][axis]) / g;
                    }
                }
            }
            out.slot_ids[s] = Some(id);
            self.prev[s] = Some((id, pos));
        }
        self.prev_index = Some(frame.index);
        out
    }

    /// Bodies ignored so far because both slots were taken.
    pub fn ignored_bodies(&self) -> u64 {
        self.slots.ignored_bodies()
    }

    /// Forgets the stream: slots, previous frame and counts.
    pub fn reset(&mut self) {
        self.slots.reset();
        self.normaliser = Normaliser::new(self.cfg.norm);
        self.prev_index = None;
        self.prev = [None; BODY_SLOTS];
    }
}

/// The modalities of a whole sequence, each laid out `(6, T, 25)`: value
/// `[(channel * t + frame) * 25 + joint]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Modalities {
    /// Number of frames `T`.
    pub t: usize,
    /// Camera-space coordinates.
    pub abs: Vec<f32>,
    /// Coordinates minus the same body's SpineBase.
    pub rel: Vec<f32>,
    /// Backward differences per nominal frame period.
    pub motion: Vec<f32>,
    /// Body id shown in each slot, per frame.
    pub slot_ids: Vec<[Option<u64>; BODY_SLOTS]>,
    /// Bodies ignored because both slots were taken.
    pub ignored_bodies: u64,
}

impl Modalities {
    /// Frame `t` in the streaming layout, `None` past the end.
    pub fn frame(&self, t: usize) -> Option<FrameModalities> {
        let slot_ids = *self.slot_ids.get(t)?;
        let mut out = FrameModalities { slot_ids, ..FrameModalities::zeros() };
        for c in 0..NUM_CHANNELS {
            let src = (c * self.t + t) * NUM_JOINTS..(c * self.t + t + 1) * NUM_JOINTS;
            let dst = c * NUM_JOINTS..(c + 1) * NUM_JOINTS;
            out.abs[dst.clone()].copy_from_slice(&self.abs[src.clone()]);
            out.rel[dst.clone()].copy_from_slice(&self.rel[src.clone()]);
            out.motion[dst].copy_from_slice(&self.motion[src]);
        }
        Some(out)
    }
}

/// Batch derivation over a whole sequence: the same numbers as pushing the frames one by one
/// into a fresh [`ModalityState`], computed as array differences.
pub fn batch(frames: &[Frame], cfg: &ModalityConfig) -> Modalities {
    let t_len = frames.len();
    let at = |c: usize, t: usize, v: usize| (c * t_len + t) * NUM_JOINTS + v;
    let mut slots = SlotAssigner::new(cfg.slot_timeout_frames);
    let mut normaliser = Normaliser::new(cfg.norm);
    let mut abs = vec![0.0f32; NUM_CHANNELS * t_len * NUM_JOINTS];
    let mut slot_ids = Vec::with_capacity(t_len);
    // Scatter the (normalised) bodies into their slots: (6, T, 25).
    for (t, frame) in frames.iter().enumerate() {
        let shown = slots.assign(frame);
        let bodies = normaliser.positions(frame, &shown, &slots);
        let mut ids = [None; BODY_SLOTS];
        for (s, body) in bodies.iter().enumerate() {
            let Some((id, pos)) = body else { continue };
            ids[s] = Some(*id);
            for (v, p) in pos.iter().enumerate() {
                for (axis, &x) in p.iter().enumerate() {
                    abs[at(channel(s, axis), t, v)] = x;
                }
            }
        }
        slot_ids.push(ids);
    }
    // rel = abs − abs[joint 0]; an empty slot stays 0 − 0 = 0.
    let mut rel = vec![0.0f32; abs.len()];
    for (dst, src) in rel.chunks_exact_mut(NUM_JOINTS).zip(abs.chunks_exact(NUM_JOINTS)) {
        for (r, &a) in dst.iter_mut().zip(src) {
            *r = a - src[0];
        }
    }
    // motion[t] = (abs[t] − abs[t−1]) / gap where the same body was shown in the slot in the
    // preceding frame, at most `max_motion_gap` frame periods before.
    let mut motion = vec![0.0f32; abs.len()];
    for t in 1..t_len {
        let Some(g) = cfg.motion_gap(Some(frames[t - 1].index), frames[t].index) else {
            continue;
        };
        let (now, before) = (slot_ids[t], slot_ids[t - 1]);
        for (s, (id, prev_id)) in now.iter().zip(before).enumerate() {
            if id.is_none() || *id != prev_id {
                continue;
            }
            for axis in 0..3 {
                let c = channel(s, axis);
                let (cur, prev) = (at(c, t, 0), at(c, t - 1, 0));
                for v in 0..NUM_JOINTS {
                    motion[cur + v] = (abs[cur + v] - abs[prev + v]) / g;
                }
            }
        }
    }
    Modalities { t: t_len, abs, rel, motion, slot_ids, ignored_bodies: slots.ignored_bodies() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Body, Joint, Tracking};

    /// Tiny local PKU-MMD skeleton reader: 150 floats per line, body 2 absent
    /// when all zero. Body ids 0 and 1, frame index = line number.
    fn read_pku(path: &str) -> Vec<Frame> {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (the checkout must sit beside shared/)"));
        text.lines()
            .enumerate()
            .map(|(k, line)| {
                let vals: Vec<f32> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
                assert_eq!(vals.len(), 150, "line {}", k + 1);
                let bodies = (0..2)
                    .filter(|b| vals[b * 75..(b + 1) * 75].iter().any(|&x| x != 0.0))
                    .map(|b| {
                        let pos = std::array::from_fn(|j| {
                            let o = b * 75 + j * 3;
                            [vals[o], vals[o + 1], vals[o + 2]]
                        });
                        Body::from_positions(b as u64, &pos)
                    })
                    .collect();
                Frame { index: k as u64, timestamp_secs: k as f64 / 30.0, bodies }
            })
            .collect()
    }

    fn stream(frames: &[Frame], cfg: &ModalityConfig) -> (Vec<FrameModalities>, u64) {
        let mut st = ModalityState::new(cfg);
        let out = frames.iter().map(|f| st.push(f)).collect();
        (out, st.ignored_bodies())
    }

    fn assert_bit_identical(frames: &[Frame], cfg: &ModalityConfig) -> Modalities {
        let m = batch(frames, cfg);
        let (s, ignored) = stream(frames, cfg);
        assert_eq!(m.t, frames.len());
        assert_eq!(m.ignored_bodies, ignored);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (t, fm) in s.iter().enumerate() {
            let b = m.frame(t).unwrap();
            assert_eq!(b.slot_ids, fm.slot_ids, "frame {t}");
            assert_eq!(bits(&b.abs), bits(&fm.abs), "abs, frame {t}");
            assert_eq!(bits(&b.rel), bits(&fm.rel), "rel, frame {t}");
            assert_eq!(bits(&b.motion), bits(&fm.motion), "motion, frame {t}");
        }
        assert!(m.frame(frames.len()).is_none());
        m
    }

    #[test]
    #[ignore = "needs ../shared/data (real datasets, not redistributable)"]
    fn pku_file_stream_and_batch_are_bit_identical() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pku-mmd/A10N08-L.txt");
        let frames = read_pku(path);
        // data.md §1.2: 1040 frames; body 2 non-zero in 728 of them.
        assert_eq!(frames.len(), 1040);
        let m = assert_bit_identical(&frames, &ModalityConfig::default());
        let with_second = m.slot_ids.iter().filter(|ids| ids[1].is_some()).count();
        assert_eq!(with_second, 728);
        // First line of the file: SpineBase -0.304560 0.212575 2.728912, SpineMid -0.290664 ...
        let f0 = m.frame(0).unwrap();
        assert_eq!([f0.abs[0], f0.abs[25], f0.abs[50]], [-0.304560, 0.212575, 2.728912]);
        assert_eq!(f0.rel[0], 0.0);
        assert_eq!(f0.rel[1], -0.290664f32 - -0.304560f32);
        assert!(f0.motion.iter().all(|&x| x == 0.0));
        // Motion of frame 1 is the difference of the first two lines.
        let f1 = m.frame(1).unwrap();
        let (p0, p1) = (frames[0].bodies[0].positions(), frames[1].bodies[0].positions());
        assert_eq!(f1.motion[channel(0, 2) * 25 + 3], p1[3][2] - p0[3][2]);
        // An absent second body is zero in every modality; its return restarts motion at 0.
        for t in 1..frames.len() {
            let ft = m.frame(t).unwrap();
            let slot1 = channel(1, 0) * 25..FRAME_VALUES;
            if ft.slot_ids[1].is_none() {
                assert!(
                    ft.abs[slot1.clone()].iter().chain(&ft.rel[slot1.clone()]).all(|&x| x == 0.0)
                );
            }
            if ft.slot_ids[1].is_some() && m.slot_ids[t - 1][1].is_none() {
                assert!(ft.motion[slot1].iter().all(|&x| x == 0.0), "frame {t}");
            }
        }
    }

    /// Position of joint `v`, axis `a` of body `id` at frame index `t`: distinct for every key.
    fn pos(id: u64, t: u64, v: usize, a: usize) -> f32 {
        id as f32 * 10.0 + t as f32 * 0.5 + v as f32 * 0.01 + a as f32 * 0.001
    }

    fn body(id: u64, t: u64) -> Body {
        Body::from_positions(
            id,
            &std::array::from_fn(|v| std::array::from_fn(|a| pos(id, t, v, a))),
        )
    }

    fn frame(index: u64, ids: &[u64]) -> Frame {
        Frame {
            index,
            timestamp_secs: index as f64 / 30.0,
            bodies: ids.iter().map(|&id| body(id, index)).collect(),
        }
    }

    /// A (7), B (9), C (11), D (13), E (15); slot timeout 3 frames.
    fn hand_sequence() -> Vec<Frame> {
        vec![
            frame(0, &[7]),        // A → slot 0
            frame(1, &[9, 7]),     // B new → slot 1; A keeps slot 0
            frame(2, &[7, 9]),     // order swapped in the list: slots unchanged
            frame(3, &[7, 9, 11]), // C: no slot left, ignored
            frame(5, &[7, 9]),     // index gap of 2: motion per frame period
            frame(6, &[7]),        // B missing: slot 1 empty (reserved)
            frame(7, &[7, 9]),     // B back in slot 1, motion zero (slot was empty)
            frame(8, &[7]),        // B missing 1
            frame(9, &[7]),        // 2
            frame(10, &[13, 7]),   // 3: D finds no free slot, ignored
            frame(11, &[13, 7]),   // B missing 4 > 3: slot 1 freed, D takes it
            frame(12, &[13]),      // A missing 1
            frame(15, &[15, 13]),  // A missing 4 (12..15): slot 0 freed, E takes it; gap of 3
            frame(16, &[15, 13]),
        ]
    }

    #[test]
    fn hand_sequence_slots_and_values() {
        let cfg = ModalityConfig { slot_timeout_frames: 3, ..ModalityConfig::default() };
        let frames = hand_sequence();
        let m = assert_bit_identical(&frames, &cfg);
        let ids: Vec<[Option<u64>; 2]> = m.slot_ids.clone();
        let expected = [
            [Some(7), None],
            [Some(7), Some(9)],
            [Some(7), Some(9)],
            [Some(7), Some(9)],
            [Some(7), Some(9)],
            [Some(7), None],
            [Some(7), Some(9)],
            [Some(7), None],
            [Some(7), None],
            [Some(7), None],
            [Some(7), Some(13)],
            [None, Some(13)],
            [Some(15), Some(13)],
            [Some(15), Some(13)],
        ];
        assert_eq!(ids, expected);
        assert_eq!(m.ignored_bodies, 2); // C at frame 3, D at frame 10

        // Expected motion per (row, slot): Some(previous frame index) or None for zero.
        let motion_from: [[Option<u64>; 2]; 14] = [
            [None, None],
            [Some(0), None],
            [Some(1), Some(1)],
            [Some(2), Some(2)],
            [Some(3), Some(3)], // gap 3 → 5
            [Some(5), None],
            [Some(6), None], // B: slot 1 was empty at 6
            [Some(7), None],
            [Some(8), None],
            [Some(9), None],
            [Some(10), None], // D first frame in slot 1
            [None, Some(11)],
            [None, Some(12)], // gap 12 → 15; E is new in slot 0
            [Some(15), Some(15)],
        ];
        for (row, f) in frames.iter().enumerate() {
            let fm = m.frame(row).unwrap();
            for s in 0..2 {
                for a in 0..3 {
                    for v in [0, 3, 24] {
                        let i = channel(s, a) * 25 + v;
                        let (abs, rel, mot) = match ids[row][s] {
                            None => (0.0, 0.0, 0.0),
                            Some(id) => (
                                pos(id, f.index, v, a),
                                pos(id, f.index, v, a) - pos(id, f.index, 0, a),
                                motion_from[row][s].map_or(0.0, |p| {
                                    (pos(id, f.index, v, a) - pos(id, p, v, a))
                                        / (f.index - p) as f32
                                }),
                            ),
                        };
                        assert_eq!(
                            (fm.abs[i], fm.rel[i], fm.motion[i]),
                            (abs, rel, mot),
                            "row {row} slot {s} a {a} v {v}"
                        );
                    }
                }
            }
        }
    }

    /// A body moving at a constant 0.5 per frame period (see [`pos`]), with dropped frames.
    #[test]
    fn motion_across_dropped_frames_is_displacement_per_frame_period() {
        let cfg = ModalityConfig { max_motion_gap: 4, ..ModalityConfig::default() };
        let frames: Vec<Frame> = [0, 2, 3, 7, 12].iter().map(|&i| frame(i, &[7])).collect();
        let m = assert_bit_identical(&frames, &cfg);
        let velocity = |row: usize| m.frame(row).expect("frame").motion[channel(0, 1) * 25 + 3];
        assert_eq!(velocity(0), 0.0, "first frame");
        for row in [1, 2, 3] {
            assert!((velocity(row) - 0.5).abs() < 1e-5, "row {row}: {}", velocity(row));
        }
        assert_eq!(velocity(4), 0.0, "a gap of 5 > max_motion_gap 4");
    }

    /// The same movement seen from another place and angle gives the same normalised inputs.
    #[test]
    fn body_norm_is_invariant_to_where_the_sensor_stands() {
        let frames: Vec<Frame> = (0..20).map(|i| frame(i, &[7, 9])).collect();
        let frames = &frames[..];
        let cfg = ModalityConfig { norm: InputNorm::Body, ..ModalityConfig::default() };
        let moved: Vec<Frame> = frames
            .iter()
            .map(|f| {
                let mut f = f.clone();
                let (c, s) = (0.6f32.cos(), 0.6f32.sin());
                for b in &mut f.bodies {
                    for j in &mut b.joints {
                        let [x, y, z] = j.pos;
                        j.pos = [c * x + s * z + 1.5, y - 0.3, -s * x + c * z + 0.8];
                    }
                }
                f
            })
            .collect();
        let (a, b) = (assert_bit_identical(frames, &cfg), assert_bit_identical(&moved, &cfg));
        let max_diff = |x: &[f32], y: &[f32]| {
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
        };
        // f32 round-off on coordinates of magnitude ~50 (the hand bodies sit 10 m apart).
        let tol = 1e-4 * a.abs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(max_diff(&a.abs, &b.abs) < tol, "abs differs by {}", max_diff(&a.abs, &b.abs));
        assert!(max_diff(&a.rel, &b.rel) < 1e-4, "rel differs by {}", max_diff(&a.rel, &b.rel));
        assert!(max_diff(&a.motion, &b.motion) < 1e-4);
        // Camera coordinates are not invariant: the test can tell the difference.
        let raw = ModalityConfig::default();
        assert!(max_diff(&batch(frames, &raw).abs, &batch(&moved, &raw).abs) > 0.5);
    }

    #[test]
    fn body_norm_anchors_on_the_first_person_and_again_after_everyone_left() {
        let cfg = ModalityConfig {
            norm: InputNorm::Body,
            slot_timeout_frames: 2,
            ..ModalityConfig::default()
        };
        let frames = vec![
            frame(0, &[7]),
            frame(1, &[7, 9]),
            frame(2, &[7]),
            frame(10, &[9]),
            frame(11, &[9]),
        ];
        let m = assert_bit_identical(&frames, &cfg);
        let spine_base = |row: usize, slot: usize| {
            let f = m.frame(row).expect("frame");
            [0, 1, 2].map(|a| f.abs[channel(slot, a) * 25])
        };
        // Person 7 set the frame: their SpineBase is the origin while they stay.
        assert_eq!(spine_base(0, 0), [0.0; 3]);
        assert_ne!(spine_base(1, 1), [0.0; 3], "person 9 is placed relative to person 7");
        // Everyone left (gap of 8 > timeout 2): person 9 sets a new frame.
        assert_eq!(spine_base(3, 0), [0.0; 3]);
    }

    #[test]
    fn untracked_joints_keep_their_positions() {
        let mut f = frame(0, &[7]);
        f.bodies[0].joints[21] = Joint { pos: [1.5, -2.0, 3.25], tracking: Tracking::NotTracked };
        let mut st = ModalityState::new(&ModalityConfig::default());
        let fm = st.push(&f);
        assert_eq!([fm.abs[21], fm.abs[25 + 21], fm.abs[50 + 21]], [1.5, -2.0, 3.25]);
        assert_eq!(fm.rel[21], 1.5 - pos(7, 0, 0, 0));
    }

    #[test]
    fn reset_forgets_slots_and_previous_frame() {
        let cfg = ModalityConfig::default();
        let mut st = ModalityState::new(&cfg);
        st.push(&frame(0, &[7, 9]));
        st.push(&frame(1, &[7, 9, 11]));
        assert_eq!(st.ignored_bodies(), 1);
        st.reset();
        assert_eq!(st.ignored_bodies(), 0);
        let fm = st.push(&frame(2, &[9]));
        assert_eq!(fm.slot_ids, [Some(9), None]);
        assert!(fm.motion.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn duplicate_id_and_empty_sequence() {
        let mut slots = SlotAssigner::new(15);
        assert_eq!(slots.assign(&frame(0, &[4, 4])), [Some(0), None]);
        assert_eq!(slots.ignored_bodies(), 1);
        assert_eq!(slots.slot_ids(), [Some(4), None]);
        let m = batch(&[], &ModalityConfig::default());
        assert_eq!((m.t, m.abs.len()), (0, 0));
    }

    #[test]
    fn config_defaults_from_empty_json() {
        let cfg: ModalityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, ModalityConfig::default());
        assert_eq!(cfg.slot_timeout_frames, 15);
    }
}
