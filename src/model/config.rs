//! The InterAct model configuration: every hyper-parameter in one serde struct, saved beside the
//! weights.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the spatial module turns the three modalities into per-frame features.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Spatial {
    /// DSMI: multi-scale graph convolution per modality + attention fusion (InterAct).
    ///
    /// Per-modality multi-scale graph convolution + attention fusion over joint tokens.
    #[default]
    Dsmi,
    /// Per-modality graph convolution, fused by concatenation.
    ///
    /// Graph convolutions as DSMI, but the three `S_m` are concatenated and mixed by an MLP
    /// instead of the attention fusion (ablation).
    Concat,
    /// No spatial module (InterAct*).
    ///
    /// The paper's InterAct*: the modalities are flattened per frame and
    /// embedded to D by one 1×1 convolution.
    None,
}

/// How the temporal module lets frames and action queries interact.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Temporal {
    /// Multi-resolution frame–action interaction (InterAct).
    ///
    /// MFAI: the H QBlocks attend coarse to fine to the last H decoder outputs.
    #[default]
    Mfai,
    /// Single-resolution interaction.
    ///
    /// Single-resolution frame-action interaction: every QBlock attends to the finest decoder
    /// output (ablation).
    Fixed,
}

fn default_in_channels() -> i64 {
    6
}
fn default_joints() -> i64 {
    25
}
fn default_hidden() -> i64 {
    64
}
fn default_heads() -> i64 {
    4
}
fn default_scales() -> i64 {
    13
}
fn default_num_classes() -> i64 {
    52
}
fn default_layers() -> i64 {
    6
}
fn default_query_scales() -> i64 {
    3
}
fn default_block_layers() -> i64 {
    10
}
fn default_channel_dropout() -> f64 {
    0.3
}
fn default_layer_dropout() -> f64 {
    0.5
}
fn default_attention_dropout() -> f64 {
    0.05
}
fn default_boundary_threshold() -> f64 {
    0.5
}
fn default_boundary_radius() -> i64 {
    10
}
fn default_boundary_sigma() -> f64 {
    6.0
}
fn legacy_revision() -> u32 {
    1
}
fn default_temperature() -> f64 {
    1.0
}

/// The architecture revision a checkpoint was trained with.
///
/// Revision 1 is what skelseg 0.1 shipped; revision 2 follows the paper where review found
/// revision 1 off (issue 8). Checkpoints without the field are revision 1, so their weights keep
/// meaning what they were trained to mean; new models are revision 2.
pub const CURRENT_REVISION: u32 = 2;

/// How joint coordinates are normalised before the modalities are derived.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// Person-centred frame, fixed when a person first appears.
    ///
    /// A per-stream body frame fixed causally when a person first appears: origin at their
    /// SpineBase, rotated about the vertical axis to face the sensor, scaled by torso length
    /// (see [`crate::modality::Anchor`]).
    Body,
    /// Camera-space coordinates.
    ///
    /// As the sensor gives them (revision-1 checkpoints).
    #[default]
    Camera,
}

/// Hyper-parameters of [`InterAct`](super::InterAct). Serialised into the checkpoint's JSON;
/// fields added later get serde defaults so older files still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Channels per modality: 2 body slots × xyz.
    #[serde(default = "default_in_channels")]
    pub in_channels: i64,
    /// Joints per body (the canonical Kinect v2 layout has 25).
    #[serde(default = "default_joints")]
    pub joints: i64,
    /// Hidden width D.
    #[serde(default = "default_hidden")]
    pub hidden: i64,
    /// Heads of every multi-head attention.
    #[serde(default = "default_heads")]
    pub heads: i64,
    /// Graph scales K (k-hop adjacencies, k = 0..K-1).
    #[serde(default = "default_scales")]
    pub scales: i64,
    /// Action classes A.
    #[serde(default = "default_num_classes")]
    pub num_classes: i64,
    /// MFAI encoder layers (each halves the length); sequences are padded to `2^encoder_layers`.
    #[serde(default = "default_layers")]
    pub encoder_layers: i64,
    /// MFAI decoder layers (each doubles the length); must equal `encoder_layers`.
    #[serde(default = "default_layers")]
    pub decoder_layers: i64,
    /// H: QBlocks, one per decoder output used (the last H, coarse to fine).
    #[serde(default = "default_query_scales")]
    pub query_scales: i64,
    /// Linear-attention layers of the action block (DeST: 10).
    #[serde(default = "default_block_layers")]
    pub action_layers: i64,
    /// Dilated residual layers of the boundary block (ETSPNet: 10).
    #[serde(default = "default_block_layers")]
    pub boundary_layers: i64,
    /// Spatial variant.
    #[serde(default)]
    pub spatial: Spatial,
    /// Temporal variant.
    #[serde(default)]
    pub temporal: Temporal,
    /// Channel dropout (`Dropout2d`) on the MFAI input features (DeST/ASFormer 0.3).
    #[serde(default = "default_channel_dropout")]
    pub channel_dropout: f64,
    /// Dropout inside the ASFormer / AttModule / dilated residual layers (0.5 in the anchors).
    #[serde(default = "default_layer_dropout")]
    pub layer_dropout: f64,
    /// Dropout on the linear-attention output (DeST 0.05).
    #[serde(default = "default_attention_dropout")]
    pub attention_dropout: f64,
    /// Threshold on sigmoid(P_b) for boundary peaks at inference.
    #[serde(default = "default_boundary_threshold")]
    pub boundary_threshold: f64,
    /// Half width of the Gaussian boundary target window (ASQuery: 10 frames).
    #[serde(default = "default_boundary_radius")]
    pub boundary_radius: i64,
    /// Sigma of the Gaussian boundary target in frames (ASQuery: 6).
    #[serde(default = "default_boundary_sigma")]
    pub boundary_sigma: f64,
    /// Architecture revision (see [`CURRENT_REVISION`]). Revision 2: one FBlock per stage with
    /// the frame features refined from stage to stage (the paper's Eq. 5), up-sampling on the
    /// grid of the stride-2 encoder (coarse sample `i` sits on fine frame `2i`), and QBlocks fed
    /// at `T/2^H … T/2` (the paper's `T/2^(H−u)`); revision 1: one shared FBlock attending
    /// from the stage-0 features, half-pixel up-sampling, QBlocks at `T/2^(H−1) … T`.
    #[serde(default = "legacy_revision")]
    pub revision: u32,
    /// Input normalisation the model was trained with (the runtime applies the same).
    #[serde(default)]
    pub input_norm: InputNorm,
    /// Softmax temperature of the class probabilities, fitted on validation data after
    /// training (1 = uncalibrated logits). Confidences are `softmax(P_a / temperature)`.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            in_channels: default_in_channels(),
            joints: default_joints(),
            hidden: default_hidden(),
            heads: default_heads(),
            scales: default_scales(),
            num_classes: default_num_classes(),
            encoder_layers: default_layers(),
            decoder_layers: default_layers(),
            query_scales: default_query_scales(),
            action_layers: default_block_layers(),
            boundary_layers: default_block_layers(),
            spatial: Spatial::default(),
            temporal: Temporal::default(),
            channel_dropout: default_channel_dropout(),
            layer_dropout: default_layer_dropout(),
            attention_dropout: default_attention_dropout(),
            boundary_threshold: default_boundary_threshold(),
            boundary_radius: default_boundary_radius(),
            boundary_sigma: default_boundary_sigma(),
            revision: CURRENT_REVISION,
            input_norm: InputNorm::Body,
            temperature: default_temperature(),
        }
    }
}

impl ModelConfig {
    /// PKU-MMD v2 (52 classes incl. "NONE"), the setting of the paper's Table 2; D = 64.
    pub fn pku_mmd_v2() -> Self {
        Self { num_classes: 52, ..Self::default() }
    }

    /// InterAct* of the paper's Table 2: no DSMI.
    pub fn interact_star(num_classes: i64) -> Self {
        Self { num_classes, spatial: Spatial::None, ..Self::default() }
    }

    /// A small model for tests and quick experiments on a CPU.
    pub fn tiny(num_classes: i64) -> Self {
        Self {
            hidden: 16,
            heads: 2,
            num_classes,
            action_layers: 2,
            boundary_layers: 2,
            ..Self::default()
        }
    }

    /// Frames are padded to a multiple of this (`2^encoder_layers`) inside MFAI.
    pub fn pad_multiple(&self) -> i64 {
        1 << self.encoder_layers
    }

    /// Rejects impossible combinations up front.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::invalid("model config", message));
        let positive = [
            ("in_channels", self.in_channels),
            ("joints", self.joints),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("scales", self.scales),
            ("num_classes", self.num_classes),
            ("encoder_layers", self.encoder_layers),
            ("query_scales", self.query_scales),
            ("action_layers", self.action_layers),
            ("boundary_layers", self.boundary_layers),
            ("boundary_radius", self.boundary_radius),
        ];
        for (name, value) in positive {
            if value < 1 {
                return bad(format!("{name} must be at least 1, found {value}"));
            }
        }
        if self.hidden % self.heads != 0 {
            return bad(format!(
                "hidden {} is not a multiple of heads {}",
                self.hidden, self.heads
            ));
        }
        // Query MLPs squeeze to D/4; ASFormer's attention layer to D/2 (per head for DSMI: 2D/heads).
        if self.hidden % 4 != 0 {
            return bad(format!("hidden {} must be a multiple of 4", self.hidden));
        }
        if self.encoder_layers > 12 {
            return bad(format!("encoder_layers {} > 12 (pad multiple 2^12)", self.encoder_layers));
        }
        if self.decoder_layers != self.encoder_layers {
            return bad(format!(
                "decoder_layers {} must equal encoder_layers {} (the decoder mirrors the encoder)",
                self.decoder_layers, self.encoder_layers
            ));
        }
        if !(1..=CURRENT_REVISION).contains(&self.revision) {
            return bad(format!(
                "revision {} is not one this skelseg knows (1..={CURRENT_REVISION}); a newer \
                 skelseg wrote this checkpoint",
                self.revision
            ));
        }
        // Revision 2 feeds the QBlocks from T/2^H up, which skips the finest decoder output.
        let finest_unused = i64::from(self.revision >= 2 && self.temporal == Temporal::Mfai);
        if self.query_scales + finest_unused > self.decoder_layers {
            return bad(format!(
                "query_scales {} needs {} decoder layers, found {}",
                self.query_scales,
                self.query_scales + finest_unused,
                self.decoder_layers
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be positive, found {}", self.temperature));
        }
        if self.action_layers > 16 || self.boundary_layers > 16 {
            return bad("action/boundary layers above 16 (dilation 2^15)".into());
        }
        for (name, p) in [
            ("channel_dropout", self.channel_dropout),
            ("layer_dropout", self.layer_dropout),
            ("attention_dropout", self.attention_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), found {p}"));
            }
        }
        if !(self.boundary_threshold > 0.0 && self.boundary_threshold <= 1.0) {
            return bad(format!(
                "boundary_threshold must be in (0, 1] (1: no refinement), found {}",
                self.boundary_threshold
            ));
        }
        if !(self.boundary_sigma > 0.0 && self.boundary_sigma.is_finite()) {
            return bad(format!("boundary_sigma must be positive, found {}", self.boundary_sigma));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_reference_setting_and_valid() {
        let cfg = ModelConfig::default();
        assert_eq!((cfg.hidden, cfg.heads, cfg.scales, cfg.query_scales), (64, 4, 13, 3));
        assert_eq!((cfg.encoder_layers, cfg.decoder_layers, cfg.pad_multiple()), (6, 6, 64));
        assert!(cfg.validate().is_ok());
        assert!(ModelConfig::tiny(5).validate().is_ok());
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        let cases = [
            (ModelConfig { hidden: 30, ..ModelConfig::default() }, "hidden 30"),
            (ModelConfig { decoder_layers: 5, ..ModelConfig::default() }, "decoder_layers 5"),
            (ModelConfig { query_scales: 7, ..ModelConfig::default() }, "query_scales 7"),
            (ModelConfig { layer_dropout: 1.0, ..ModelConfig::default() }, "layer_dropout"),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(Error::Invalid { what, message }) => {
                    assert_eq!(what, "model config");
                    assert!(message.contains(field), "{field}: {message}");
                }
                other => panic!("{field}: expected an invalid model config, got {other:?}"),
            }
        }
    }

    #[test]
    fn json_round_trip_and_old_files_get_defaults() {
        let cfg = ModelConfig {
            spatial: Spatial::Concat,
            temporal: Temporal::Fixed,
            ..ModelConfig::tiny(7)
        };
        let text = serde_json::to_string(&cfg).expect("serialise");
        assert!(text.contains("\"spatial\":\"concat\""));
        let back: ModelConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, cfg);
        let old: ModelConfig = serde_json::from_str(r#"{"num_classes": 9}"#).expect("parse");
        let legacy = ModelConfig {
            num_classes: 9,
            revision: 1,
            input_norm: InputNorm::Camera,
            ..ModelConfig::default()
        };
        assert_eq!(old, legacy, "a file without a revision is a revision-1 checkpoint");
        assert_eq!(ModelConfig::default().revision, CURRENT_REVISION);
    }
}
