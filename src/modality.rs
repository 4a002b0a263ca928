//! The model's three input modalities, derived from frames: absolute coordinates (abs), joints
//! relative to the SpineBase of the same body (rel) and the backward difference to the previous
//! frame (motion), for the two body slots, with channel = `slot * 3 + axis`.
//!
//! Follows `reference/architecture.md` §2.3 / §11.2 and DESIGN.md "The model — Inputs", with the
//! documented deviation that motion is a *backward* difference `x_t − x_{t−1}` (causal), so the
//! streaming path ([`ModalityState::push`]) and the batch path ([`batch`]) give bit-identical
//! numbers. Motion is zero on a body's first frame in its slot and after a gap (the slot was empty
//! in the previous frame, or the frame index did not advance by exactly 1). An absent slot is zero
//! in all three modalities. Joints that are not tracked keep their (possibly filled) positions.
//!
//! Bodies go to slots by id ([`SlotAssigner`]): a body keeps the slot it first got while it is
//! tracked; one missing for more than `slot_timeout_frames` frees its slot; a new body takes the
//! lowest free slot; bodies beyond the two slots are ignored and counted.

use serde::{Deserialize, Serialize};

use crate::frame::{BODY_SLOTS, Body, Frame, NUM_JOINTS};

/// Channels per modality: 2 body slots × 3 axes.
pub const NUM_CHANNELS: usize = BODY_SLOTS * 3;
/// Values per modality and frame: `(6, 25)`.
pub const FRAME_VALUES: usize = NUM_CHANNELS * NUM_JOINTS;
/// Default number of missing frames after which a body's slot is freed.
pub const DEFAULT_SLOT_TIMEOUT_FRAMES: u64 = 15;

/// Settings of modality derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityConfig {
    /// A body missing for more than this many frames frees its slot.
    #[serde(default = "default_slot_timeout_frames")]
    pub slot_timeout_frames: u64,
}

fn default_slot_timeout_frames() -> u64 {
    DEFAULT_SLOT_TIMEOUT_FRAMES
}

impl Default for ModalityConfig {
    fn default() -> Self {
        ModalityConfig { slot_timeout_frames: DEFAULT_SLOT_TIMEOUT_FRAMES }
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
}

impl SlotAssigner {
    /// No slot taken; a body missing for more than `slot_timeout_frames` frames frees its slot.
    pub fn new(slot_timeout_frames: u64) -> Self {
        SlotAssigner {
            timeout_frames: slot_timeout_frames,
            owners: [None; BODY_SLOTS],
            ignored_bodies: 0,
        }
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
    slots: SlotAssigner,
    prev_index: Option<u64>,
    /// Per slot, the body id and positions shown in the previous frame.
    prev: [Option<(u64, [[f32; 3]; NUM_JOINTS])>; BODY_SLOTS],
}

impl ModalityState {
    /// A fresh stream.
    pub fn new(cfg: &ModalityConfig) -> Self {
        ModalityState {
            slots: SlotAssigner::new(cfg.slot_timeout_frames),
            prev_index: None,
            prev: [None; BODY_SLOTS],
        }
    }

    /// Derives the modalities of the next frame of the stream.
    pub fn push(&mut self, frame: &Frame) -> FrameModalities {
        let shown = self.slots.assign(frame);
        let consecutive = follows(self.prev_index, frame.index);
        let mut out = FrameModalities::zeros();
        for (s, slot) in shown.iter().enumerate() {
            let Some(body) = slot.and_then(|i| frame.bodies.get(i)) else {
                self.prev[s] = None;
                continue;
            };
            let pos = body.positions();
            let prev = self.prev[s].filter(|(id, _)| consecutive && *id == body.id).map(|(_, p)| p);
            for axis in 0..3 {
                let c = channel(s, axis);
                for (v, p) in pos.iter().enumerate() {
                    let i = c * NUM_JOINTS + v;
                    out.abs[i] = p[axis];
                    out.rel[i] = p[axis] - pos[0][axis];
                    if let Some(q) = prev {
                        out.motion[i] = p[axis] - q[v][axis];
                    }
                }
            }
            out.slot_ids[s] = Some(body.id);
            self.prev[s] = Some((body.id, pos));
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
        self.prev_index = None;
        self.prev = [None; BODY_SLOTS];
    }
}

/// True when `index` directly follows the previous frame's index.
fn follows(prev_index: Option<u64>, index: u64) -> bool {
    prev_index.and_then(|p| p.checked_add(1)) == Some(index)
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
    /// Backward differences.
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
    let mut abs = vec![0.0f32; NUM_CHANNELS * t_len * NUM_JOINTS];
    let mut slot_ids = Vec::with_capacity(t_len);
    // Scatter the bodies into their slots: (6, T, 25).
    for (t, frame) in frames.iter().enumerate() {
        let shown = slots.assign(frame);
        let mut ids = [None; BODY_SLOTS];
        for (s, slot) in shown.iter().enumerate() {
            let Some(body): Option<&Body> = slot.and_then(|i| frame.bodies.get(i)) else {
                continue;
            };
            ids[s] = Some(body.id);
            for (v, j) in body.joints.iter().enumerate() {
                for (axis, &x) in j.pos.iter().enumerate() {
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
    // motion[t] = abs[t] − abs[t−1] where the same body was shown in the slot in the directly
    // preceding frame.
    let mut motion = vec![0.0f32; abs.len()];
    for t in 1..t_len {
        if !follows(Some(frames[t - 1].index), frames[t].index) {
            continue;
        }
        let (now, before) = (slot_ids[t], slot_ids[t - 1]);
        for (s, (id, prev_id)) in now.iter().zip(before).enumerate() {
            if id.is_none() || *id != prev_id {
                continue;
            }
            for axis in 0..3 {
                let c = channel(s, axis);
                let (cur, prev) = (at(c, t, 0), at(c, t - 1, 0));
                for v in 0..NUM_JOINTS {
                    motion[cur + v] = abs[cur + v] - abs[prev + v];
                }
            }
        }
    }
    Modalities { t: t_len, abs, rel, motion, slot_ids, ignored_bodies: slots.ignored_bodies() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Joint, Tracking};

    /// Tiny local PKU-MMD skeleton reader (data.md §1.2): 150 floats per line, body 2 absent
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
            frame(5, &[7, 9]),     // index gap: motion zero
            frame(6, &[7]),        // B missing: slot 1 empty (reserved)
            frame(7, &[7, 9]),     // B back in slot 1, motion zero (slot was empty)
            frame(8, &[7]),        // B missing 1
            frame(9, &[7]),        // 2
            frame(10, &[13, 7]),   // 3: D finds no free slot, ignored
            frame(11, &[13, 7]),   // B missing 4 > 3: slot 1 freed, D takes it
            frame(12, &[13]),      // A missing 1
            frame(15, &[15, 13]),  // A missing 4 (12..15): slot 0 freed, E takes it; gap
            frame(16, &[15, 13]),
        ]
    }

    #[test]
    fn hand_sequence_slots_and_values() {
        let cfg = ModalityConfig { slot_timeout_frames: 3 };
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
            [None, None], // gap 3 → 5
            [Some(5), None],
            [Some(6), None], // B: slot 1 was empty at 6
            [Some(7), None],
            [Some(8), None],
            [Some(9), None],
            [Some(10), None], // D first frame in slot 1
            [None, Some(11)],
            [None, None], // gap 12 → 15
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
                                motion_from[row][s]
                                    .map_or(0.0, |p| pos(id, f.index, v, a) - pos(id, p, v, a)),
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
