//! What every [`Layout`] knows: its name, joint names, bones, and its mapping onto the canonical
//! Kinect v2 layout.
//!
//! The fill rule for joints a layout lacks is documented on [`Layout::to_canonical`].

use std::fmt;
use std::str::FromStr;

use super::{Layout, azure32, coco17, kinect_v1, kinect_v2, mediapipe33, openpose25};
use crate::error::{Error, Result};
use crate::frame::{Joint, NUM_JOINTS, Tracking};

impl Layout {
    /// Every layout, canonical first.
    pub const ALL: [Layout; 6] = [
        Layout::KinectV2_25,
        Layout::AzureKinect32,
        Layout::KinectV1_20,
        Layout::Coco17,
        Layout::OpenposeBody25,
        Layout::Mediapipe33,
    ];

    /// The snake_case name used by `skeleton-ndjson/1` and the CLI (`kinect_v2_25`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Layout::KinectV2_25 => "kinect_v2_25",
            Layout::AzureKinect32 => "azure_kinect_32",
            Layout::KinectV1_20 => "kinect_v1_20",
            Layout::Coco17 => "coco_17",
            Layout::OpenposeBody25 => "openpose_body_25",
            Layout::Mediapipe33 => "mediapipe_33",
        }
    }

    /// The layout called `name` (case-insensitive snake_case name, see [`Layout::name`]).
    pub fn from_name(name: &str) -> Result<Layout> {
        let wanted = name.trim();
        Layout::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
            let known: Vec<&str> = Layout::ALL.iter().map(|l| l.name()).collect();
            Error::invalid(
                "layout",
                format!("expected one of {}, found `{wanted}`", known.join(", ")),
            )
        })
    }

    /// Number of joints a body of this layout has.
    pub fn joint_count(self) -> usize {
        self.joint_names().len()
    }

    /// Joint names in the layout's own order.
    pub fn joint_names(self) -> &'static [&'static str] {
        match self {
            Layout::KinectV2_25 => &kinect_v2::JOINT_NAMES,
            Layout::AzureKinect32 => &azure32::JOINT_NAMES,
            Layout::KinectV1_20 => &kinect_v1::JOINT_NAMES,
            Layout::Coco17 => &coco17::JOINT_NAMES,
            Layout::OpenposeBody25 => &openpose25::JOINT_NAMES,
            Layout::Mediapipe33 => &mediapipe33::JOINT_NAMES,
        }
    }

    /// Bones (edges) between joint indices of this layout, for drawing; the trees are written
    /// `(parent, child)`.
    pub fn bones(self) -> &'static [(usize, usize)] {
        match self {
            Layout::KinectV2_25 => &kinect_v2::BONES,
            Layout::AzureKinect32 => &azure32::BONES,
            Layout::KinectV1_20 => &kinect_v1::BONES,
            Layout::Coco17 => &coco17::BONES,
            Layout::OpenposeBody25 => &openpose25::BONES,
            Layout::Mediapipe33 => &mediapipe33::BONES,
        }
    }

    /// Maps one body given in this layout onto the canonical 25 joints, filling the joints the
    /// layout lacks by the rule below.
    ///
    /// # Fill rule for joints a layout lacks
    ///
    /// Every canonical joint gets a position and a [`Tracking`] state:
    ///
    /// * **copied** from the same anatomical joint: keeps the source joint's tracking state
    ///   ([`Tracking::Tracked`] when the source gives none);
    /// * **derived** from source joints by a geometric rule (midpoint, mean, interpolation along a
    ///   bone, extrapolation past the wrist): [`Tracking::Inferred`], or [`Tracking::NotTracked`] when
    ///   one of its source joints is not tracked;
    /// * **placeholder** for a joint the layout has no counterpart for (hand tips and thumbs of
    ///   Kinect v1, COCO-17 and OpenPose; feet of COCO-17): the position of the nearest joint up the
    ///   tree (the hand, the ankle), so bones have zero length rather than jumping to the origin, and
    ///   [`Tracking::NotTracked`].
    ///
    /// The mappings pick and combine joints only; they do not convert units or axes (Azure Kinect
    /// millimetres, image axes): that belongs to the source, which knows them.
    ///
    /// `tracking`, when given, holds one state per source joint; without it every source joint
    /// counts as tracked. Errors: a joint count (or tracking count) other than
    /// [`Layout::joint_count`] ([`Error::Shape`] naming the layout, expected and found), and a
    /// non-finite coordinate ([`Error::Invalid`] naming the joint).
    pub fn to_canonical(
        &self,
        positions: &[[f32; 3]],
        tracking: Option<&[Tracking]>,
    ) -> Result<[Joint; NUM_JOINTS]> {
        let expected = self.joint_count();
        if positions.len() != expected {
            return Err(Error::Shape {
                context: format!("{self} body"),
                expected: format!("{expected} joints"),
                got: format!("{} joints", positions.len()),
            });
        }
        if let Some(t) = tracking
            && t.len() != expected
        {
            return Err(Error::Shape {
                context: format!("{self} tracking states"),
                expected: format!("{expected} states"),
                got: format!("{} states", t.len()),
            });
        }
        if let Some((j, p)) =
            positions.iter().enumerate().find(|(_, p)| p.iter().any(|c| !c.is_finite()))
        {
            let name = self.joint_names().get(j).copied().unwrap_or("?");
            return Err(Error::invalid(
                format!("{self} joint {j} ({name})"),
                format!("expected finite coordinates, found {p:?}"),
            ));
        }
        let src = Source { positions, tracking };
        Ok(match self {
            Layout::KinectV2_25 => std::array::from_fn(|i| src.copy(i)),
            Layout::AzureKinect32 => azure32::to_canonical(&src),
            Layout::KinectV1_20 => kinect_v1::to_canonical(&src),
            Layout::Coco17 => coco17::to_canonical(&src),
            Layout::OpenposeBody25 => openpose25::to_canonical(&src),
            Layout::Mediapipe33 => mediapipe33::to_canonical(&src),
        })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Layout::from_name(s)
    }
}

/// One validated source body (its length equals the layout's joint count, checked by
/// [`Layout::to_canonical`] before any mapping runs), with the joint constructors of the fill rule.
pub(super) struct Source<'a> {
    positions: &'a [[f32; 3]],
    tracking: Option<&'a [Tracking]>,
}

impl Source<'_> {
    fn tracking(&self, i: usize) -> Tracking {
        self.tracking.map_or(Tracking::Tracked, |t| t[i])
    }

    /// Source joint `i` as is.
    pub(super) fn copy(&self, i: usize) -> Joint {
        Joint { pos: self.positions[i], tracking: self.tracking(i) }
    }

    /// Mean of source joints `idx` (a midpoint for two), inferred.
    pub(super) fn mean(&self, idx: &[usize]) -> Joint {
        let mut pos = [0.0f32; 3];
        for &i in idx {
            for (acc, c) in pos.iter_mut().zip(self.positions[i]) {
                *acc += c;
            }
        }
        let n = idx.len().max(1) as f32;
        let worst = idx.iter().map(|&i| self.tracking(i)).min().unwrap_or(Tracking::NotTracked);
        Joint { pos: pos.map(|c| c / n), tracking: derived(worst) }
    }

    /// The head of a pose estimator: midpoint of the ears, or the nose when an ear is not tracked.
    pub(super) fn head(&self, ears: &[usize; 2], nose: usize) -> Joint {
        let ears_seen = ears.iter().all(|&e| self.tracking(e) != Tracking::NotTracked);
        if ears_seen {
            self.mean(ears)
        } else {
            let nose = self.copy(nose);
            Joint { pos: nose.pos, tracking: derived(nose.tracking) }
        }
    }

    /// `a + t·(b − a)`: interpolates for `t` in [0, 1], extrapolates past `b` for `t > 1`; inferred.
    pub(super) fn lerp(a: Joint, b: Joint, t: f32) -> Joint {
        let pos = std::array::from_fn(|k| a.pos[k] + t * (b.pos[k] - a.pos[k]));
        Joint { pos, tracking: derived(a.tracking.min(b.tracking)) }
    }

    /// A joint the layout lacks, placed on `at`, not tracked.
    pub(super) fn placeholder(at: Joint) -> Joint {
        Joint { pos: at.pos, tracking: Tracking::NotTracked }
    }
}

/// Tracking of a joint derived from sources whose worst state is `worst`: at best inferred.
fn derived(worst: Tracking) -> Tracking {
    worst.min(Tracking::Inferred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skeleton::kinect_v2::joint as v2;

    /// Source joint `i` at `(i, 10 i, 100 i)`, so every output position says where it came from.
    fn numbered(layout: Layout) -> Vec<[f32; 3]> {
        (0..layout.joint_count()).map(|i| [i as f32, 10.0 * i as f32, 100.0 * i as f32]).collect()
    }

    fn source_index(j: &Joint) -> f32 {
        j.pos[0]
    }

    #[test]
    fn names_parse_display_and_round_trip() {
        for layout in Layout::ALL {
            assert_eq!(layout.to_string().parse::<Layout>().unwrap(), layout);
            assert_eq!(Layout::from_name(&layout.name().to_uppercase()).unwrap(), layout);
        }
        assert_eq!("openpose_body_25".parse::<Layout>().unwrap(), Layout::OpenposeBody25);
        let err = "kinect_v3".parse::<Layout>().unwrap_err().to_string();
        assert!(err.contains("kinect_v3") && err.contains("mediapipe_33"), "{err}");
    }

    #[test]
    fn joint_counts_match_the_reference_tables() {
        let counts: Vec<usize> = Layout::ALL.iter().map(|l| l.joint_count()).collect();
        assert_eq!(counts, [25, 32, 20, 17, 25, 33]);
    }

    #[test]
    fn bones_use_valid_distinct_joints_and_trees_have_n_minus_1_edges() {
        for layout in Layout::ALL {
            let n = layout.joint_count();
            let mut seen = std::collections::HashSet::new();
            for &(a, b) in layout.bones() {
                assert!(a < n && b < n && a != b, "{layout}: bad bone ({a}, {b})");
                assert!(seen.insert((a.min(b), a.max(b))), "{layout}: duplicate bone ({a}, {b})");
            }
        }
        for tree in [
            Layout::KinectV2_25,
            Layout::AzureKinect32,
            Layout::KinectV1_20,
            Layout::OpenposeBody25,
        ] {
            assert_eq!(tree.bones().len(), tree.joint_count() - 1, "{tree}");
        }
    }

    #[test]
    fn every_layout_maps_to_25_finite_joints() {
        for layout in Layout::ALL {
            let joints = layout.to_canonical(&numbered(layout), None).unwrap();
            assert_eq!(joints.len(), NUM_JOINTS);
            assert!(joints.iter().all(|j| j.pos.iter().all(|c| c.is_finite())), "{layout}");
        }
    }

    #[test]
    fn known_joints_land_in_the_right_canonical_slot() {
        let at = |layout: Layout, canonical: usize| {
            source_index(&layout.to_canonical(&numbered(layout), None).unwrap()[canonical])
        };
        // Kinect v2 is the identity.
        for i in 0..NUM_JOINTS {
            assert_eq!(at(Layout::KinectV2_25, i), i as f32);
        }
        // Azure: HEAD (26) → Head, SPINE_CHEST (2) → SpineShoulder, THUMB_RIGHT (17) → ThumbRight.
        assert_eq!(at(Layout::AzureKinect32, v2::HEAD), 26.0);
        assert_eq!(at(Layout::AzureKinect32, v2::SPINE_SHOULDER), 2.0);
        assert_eq!(at(Layout::AzureKinect32, v2::THUMB_RIGHT), 17.0);
        assert_eq!(at(Layout::AzureKinect32, v2::NECK), 3.0);
        // Kinect v1: ShoulderCenter (2) → SpineShoulder; FootRight (19) stays 19.
        assert_eq!(at(Layout::KinectV1_20, v2::SPINE_SHOULDER), 2.0);
        assert_eq!(at(Layout::KinectV1_20, v2::FOOT_RIGHT), 19.0);
        // Neck 35 % from ShoulderCenter (2) to Head (3).
        assert!((at(Layout::KinectV1_20, v2::NECK) - 2.35).abs() < 1e-6);
        // COCO: left_wrist (9) → WristLeft, right_knee (14) → KneeRight, hips (11, 12) → SpineBase.
        assert_eq!(at(Layout::Coco17, v2::WRIST_LEFT), 9.0);
        assert_eq!(at(Layout::Coco17, v2::KNEE_RIGHT), 14.0);
        assert_eq!(at(Layout::Coco17, v2::SPINE_BASE), 11.5);
        // Hand extrapolated 20 % past the wrist: elbow 7, wrist 9 → 9.4.
        assert!((at(Layout::Coco17, v2::HAND_LEFT) - 9.4).abs() < 1e-5);
        // OpenPose: MidHip (8) → SpineBase, Neck (1) → SpineShoulder, RShoulder (2) → ShoulderRight.
        assert_eq!(at(Layout::OpenposeBody25, v2::SPINE_BASE), 8.0);
        assert_eq!(at(Layout::OpenposeBody25, v2::SPINE_SHOULDER), 1.0);
        assert_eq!(at(Layout::OpenposeBody25, v2::SHOULDER_RIGHT), 2.0);
        assert_eq!(at(Layout::OpenposeBody25, v2::FOOT_LEFT), 19.5);
        // MediaPipe: left_foot_index (31) → FootLeft, right_thumb (22) → ThumbRight.
        assert_eq!(at(Layout::Mediapipe33, v2::FOOT_LEFT), 31.0);
        assert_eq!(at(Layout::Mediapipe33, v2::THUMB_RIGHT), 22.0);
        assert_eq!(at(Layout::Mediapipe33, v2::HAND_LEFT), (15.0 + 17.0 + 19.0) / 3.0);
    }

    #[test]
    fn filled_joints_are_marked_by_the_fill_rule() {
        let joints =
            Layout::KinectV1_20.to_canonical(&numbered(Layout::KinectV1_20), None).unwrap();
        assert_eq!(joints[v2::HEAD].tracking, Tracking::Tracked);
        assert_eq!(joints[v2::NECK].tracking, Tracking::Inferred);
        for tip in [v2::HAND_TIP_LEFT, v2::THUMB_LEFT, v2::HAND_TIP_RIGHT, v2::THUMB_RIGHT] {
            assert_eq!(joints[tip].tracking, Tracking::NotTracked);
        }
        assert_eq!(joints[v2::HAND_TIP_LEFT].pos, joints[v2::HAND_LEFT].pos);

        // A derived joint with an untracked source is not tracked; an untracked ear falls back
        // to the nose.
        let mut tracking = vec![Tracking::Tracked; 17];
        tracking[11] = Tracking::NotTracked; // left_hip
        tracking[3] = Tracking::NotTracked; // left_ear
        let coco = Layout::Coco17.to_canonical(&numbered(Layout::Coco17), Some(&tracking)).unwrap();
        assert_eq!(coco[v2::SPINE_BASE].tracking, Tracking::NotTracked);
        assert_eq!(coco[v2::HIP_LEFT].tracking, Tracking::NotTracked);
        assert_eq!(coco[v2::HEAD].pos, [0.0; 3]);
        assert_eq!(coco[v2::HEAD].tracking, Tracking::Inferred);
        assert_eq!(coco[v2::SHOULDER_LEFT].tracking, Tracking::Tracked);
        assert_eq!(coco[v2::FOOT_LEFT].tracking, Tracking::NotTracked);
    }

    #[test]
    fn wrong_joint_count_names_layout_expected_and_found() {
        let err = Layout::Mediapipe33.to_canonical(&[[0.0; 3]; 25], None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Shape { .. }));
        assert!(
            msg.contains("mediapipe_33") && msg.contains("33 joints") && msg.contains("25 joints"),
            "{msg}"
        );
        let short = [Tracking::Tracked; 3];
        let err =
            Layout::Coco17.to_canonical(&[[0.0; 3]; 17], Some(&short)).unwrap_err().to_string();
        assert!(err.contains("17 states") && err.contains("3 states"), "{err}");
    }

    #[test]
    fn non_finite_coordinates_are_rejected_with_the_joint_name() {
        let mut positions = numbered(Layout::AzureKinect32);
        positions[26][1] = f32::NAN;
        let err = Layout::AzureKinect32.to_canonical(&positions, None).unwrap_err().to_string();
        assert!(err.contains("HEAD") && err.contains("NaN"), "{err}");
    }
}
