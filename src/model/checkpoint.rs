//! Checkpoints: `NAME.safetensors` (the VarStore) and `NAME.json` beside it (model config, class
//! names, joint layout, training-data summary, training command). Everywhere a command takes
//! `--model CKPT`, CKPT is the `.safetensors` path. Loading checks every tensor's name and shape
//! against the model the JSON describes and names the first mismatch.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use super::{InterAct, ModelConfig};
use crate::error::{Error, Result};

/// Format tag written into every checkpoint JSON.
pub const FORMAT: &str = "skelseg-checkpoint/1";

fn default_format() -> String {
    FORMAT.to_string()
}

fn default_fps() -> f64 {
    DEFAULT_FPS
}

/// The frame rate of models that do not record one, and of new models by default.
pub const DEFAULT_FPS: f64 = 30.0;

/// Everything saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format tag, [`FORMAT`].
    #[serde(default = "default_format")]
    pub format: String,
    /// The model configuration.
    pub model: ModelConfig,
    /// Class names, index = class id (`model.num_classes` entries).
    pub classes: Vec<String>,
    /// Joint layout the model's inputs are in: `kinect_v2_25`, the canonical layout every
    /// recording and stream is mapped to (the layouts of the training recordings are listed in
    /// `data.source_layouts`).
    pub layout: String,
    /// Frame rate the model was trained at; recordings and streams at other rates are
    /// resampled to it ([`crate::resample`]). Checkpoints without it are 30 fps.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Training data summary (free-form: sequences, frames, splits, class counts …).
    #[serde(default)]
    pub data: serde_json::Value,
    /// The command line that trained the model.
    #[serde(default)]
    pub command: String,
    /// Crate version that wrote the checkpoint.
    #[serde(default)]
    pub skelseg_version: String,
}

impl CheckpointMeta {
    /// Metadata for `model` with the current crate version.
    pub fn new(model: ModelConfig, classes: Vec<String>, layout: impl Into<String>) -> Self {
        Self {
            format: FORMAT.into(),
            model,
            classes,
            layout: layout.into(),
            fps: DEFAULT_FPS,
            data: serde_json::Value::Null,
            command: String::new(),
            skelseg_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Sets `data[key]` (making `data` an object first if it is not one).
    pub fn set_data(&mut self, key: &str, value: serde_json::Value) {
        if !self.data.is_object() {
            self.data = serde_json::Value::Object(Default::default());
        }
        if let serde_json::Value::Object(map) = &mut self.data {
            map.insert(key.into(), value);
        }
    }
}

/// A loaded checkpoint: the VarStore owning the weights, the model built on it, the metadata.
#[derive(Debug)]
pub struct LoadedModel {
    /// Holds the variables (keep it alive as long as the model).
    pub vs: nn::VarStore,
    /// The model.
    pub model: InterAct,
    /// What was saved beside the weights.
    pub meta: CheckpointMeta,
}

/// `NAME.json` beside `NAME.safetensors`.
pub fn meta_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

fn ckpt_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

fn check_extension(path: &Path) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(ckpt_error(path, "expected a .safetensors path"));
    }
    Ok(())
}

/// The metadata must name exactly one class per model output.
fn check_class_count(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    if meta.classes.len() as i64 != meta.model.num_classes {
        return Err(ckpt_error(
            path,
            format!(
                "{} class names for a model with {} classes",
                meta.classes.len(),
                meta.model.num_classes
            ),
        ));
    }
    Ok(())
}

/// Writes `path` (must end in `.safetensors`) and the JSON beside it.
pub fn save(path: &Path, vs: &nn::VarStore, meta: &CheckpointMeta) -> Result<()> {
    check_extension(path)?;
    check_class_count(path, meta)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    vs.save(path).map_err(|e| ckpt_error(path, format!("cannot write weights: {e}")))?;
    save_meta(path, meta)?;
    tracing::info!(path = %path.display(), "checkpoint saved");
    Ok(())
}

/// Writes only the JSON beside `path` (e.g. after refitting a calibration).
pub fn save_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    let json_path = meta_path(path);
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::Json { location: json_path.display().to_string(), source: e })?;
    std::fs::write(&json_path, text + "\n").map_err(|e| Error::io(&json_path, e))
}

/// Reads only the JSON beside `path`.
pub fn load_meta(path: &Path) -> Result<CheckpointMeta> {
    let json_path = meta_path(path);
    let text = std::fs::read_to_string(&json_path).map_err(|e| {
        ckpt_error(path, format!("cannot read its config {}: {e}", json_path.display()))
    })?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| Error::Json { location: json_path.display().to_string(), source: e })?;
    if meta.format != FORMAT {
        return Err(ckpt_error(path, format!("format {:?}, expected {FORMAT:?}", meta.format)));
    }
    Ok(meta)
}

/// Loads a checkpoint onto `device`: builds the model from the JSON, checks that the weights file
/// has exactly the model's tensors with the model's shapes, then copies them in.
pub fn load(path: &Path, device: Device) -> Result<LoadedModel> {
    check_extension(path)?;
    let meta = load_meta(path)?;
    meta.model.validate().map_err(|e| ckpt_error(path, format!("its config is invalid: {e}")))?;
    check_class_count(path, &meta)?;
    let vs = nn::VarStore::new(device);
    let model = InterAct::new(&vs.root(), &meta.model)?;
    let stored = Tensor::read_safetensors(path)
        .map_err(|e| ckpt_error(path, format!("cannot read weights: {e}")))?;
    let stored: HashMap<String, Tensor> = stored.into_iter().collect();
    let expected: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, var) in &expected {
        let Some(t) = stored.get(name) else {
            return Err(ckpt_error(
                path,
                format!("tensor {name} missing (the config expects shape {:?})", var.size()),
            ));
        };
        if t.size() != var.size() {
            return Err(ckpt_error(
                path,
                format!(
                    "tensor {name} has shape {:?} in the file, the config expects {:?}",
                    t.size(),
                    var.size()
                ),
            ));
        }
        if t.kind() != var.kind() {
            return Err(ckpt_error(
                path,
                format!("tensor {name} has kind {:?}, expected {:?}", t.kind(), var.kind()),
            ));
        }
    }
    let mut extra: Vec<&String> = stored.keys().filter(|k| !expected.contains_key(*k)).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(ckpt_error(
            path,
            format!(
                "{} tensor(s) the config does not use, first {first} (config and weights disagree)",
                extra.len()
            ),
        ));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in expected {
            if let Some(t) = stored.get(&name) {
                var.f_copy_(t)?;
            }
        }
        Ok(())
    })?;
    tracing::info!(path = %path.display(), params = model.num_parameters(), "checkpoint loaded");
    Ok(LoadedModel { vs, model, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_meta() -> CheckpointMeta {
        let cfg = ModelConfig { action_layers: 1, boundary_layers: 1, ..ModelConfig::tiny(3) };
        let mut meta =
            CheckpointMeta::new(cfg, vec!["a".into(), "b".into(), "c".into()], "kinect_v2");
        meta.command = "skelseg train --test".into();
        meta.data = serde_json::json!({"sequences": 2});
        meta
    }

    #[test]
    fn save_load_round_trip_restores_weights_and_meta() {
        tch::manual_seed(11);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        let meta = tiny_meta();
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = InterAct::new(&vs.root(), &meta.model).expect("model");
        save(&path, &vs, &meta).expect("save");
        assert!(dir.path().join("m.json").exists());
        let loaded = load(&path, Device::Cpu).expect("load");
        assert_eq!(loaded.meta, meta);
        let before = vs.variables();
        let after = loaded.vs.variables();
        assert_eq!(before.len(), after.len());
        for (name, t) in &before {
            assert!(t.equal(&after[name]), "{name} differs");
        }
    }

    #[test]
    fn mismatching_config_names_the_tensor_and_both_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        let meta = tiny_meta();
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = InterAct::new(&vs.root(), &meta.model).expect("model");
        save(&path, &vs, &meta).expect("save");
        // Claim a wider model in the JSON.
        let mut wider = meta.clone();
        wider.model.hidden = 32;
        std::fs::write(meta_path(&path), serde_json::to_string(&wider).expect("json"))
            .expect("write");
        let err = load(&path, Device::Cpu).expect_err("must fail").to_string();
        assert!(err.contains("has shape") && err.contains("expects"), "{err}");
        // Different class count: the query tensor no longer fits.
        let mut classes = meta.clone();
        classes.model.num_classes = 4;
        classes.classes.push("d".into());
        std::fs::write(meta_path(&path), serde_json::to_string(&classes).expect("json"))
            .expect("write");
        let err = load(&path, Device::Cpu).expect_err("must fail").to_string();
        assert!(err.contains("mfai.queries.query"), "{err}");
        // Extra layers in the config: a tensor is missing from the file.
        let mut deeper = meta.clone();
        deeper.model.action_layers = 2;
        std::fs::write(meta_path(&path), serde_json::to_string(&deeper).expect("json"))
            .expect("write");
        let err = load(&path, Device::Cpu).expect_err("must fail").to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn missing_json_is_a_checkpoint_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.safetensors");
        let err = load(&path, Device::Cpu).expect_err("must fail");
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        assert!(load(&dir.path().join("x.pt"), Device::Cpu).is_err());
    }
}
