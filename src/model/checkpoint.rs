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
    /// Streaming settings chosen for this model on validation data, which
    /// [`StreamConfig::from_checkpoint`](crate::stream::StreamConfig::from_checkpoint) and
    /// `skelseg stream` use unless told otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamTuning>,
}

/// Segmenter settings chosen for one model on its validation data; a missing value keeps the
/// library default ([`SegmenterConfig`](crate::stream::SegmenterConfig)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamTuning {
    /// θ: the mean probability a new label needs to take over without a boundary peak.
    pub min_mean_prob: Option<f32>,
    /// A class's minimum length as a fraction of its mean training segment length.
    pub min_len_factor: Option<f64>,
    /// The segmenter's rule.
    pub rule: Option<crate::stream::SegmentRule>,
    /// The majority rule's peakless factor.
    pub peakless_factor: Option<f32>,
    /// How they were chosen: data, candidates, rule (free-form).
    pub chosen: serde_json::Value,
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
            stream: None,
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

fn ckpt_error(path: &Path, expected: impl Into<String>, found: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), expected: expected.into(), found: found.into() }
}

fn check_extension(path: &Path) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(ckpt_error(path, "a .safetensors path", format!("`{}`", path.display())));
    }
    Ok(())
}

/// The metadata must name exactly one class per model output.
fn check_class_count(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    if meta.classes.len() as i64 != meta.model.num_classes {
        return Err(ckpt_error(
            path,
            format!("one class name per model class ({})", meta.model.num_classes),
            format!("{} class names", meta.classes.len()),
        ));
    }
    Ok(())
}

/// The layout every checkpoint's model reads: sources map whatever they receive to it.
pub const MODEL_LAYOUT: &str = "kinect_v2_25";
/// Older spelling of [`MODEL_LAYOUT`] in checkpoints written before the layouts had sizes.
const MODEL_LAYOUT_OLD: &str = "kinect_v2";

/// `major.minor.patch` of a version string (pre-release and build suffixes ignored).
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Checks the metadata fields a loader relies on, with messages that say what to do: the
/// format tag, the version that wrote it (a newer skelseg may have changed the format), the joint
/// layout, the class names and the model configuration.
pub fn check_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    if meta.format != FORMAT {
        return Err(ckpt_error(
            path,
            format!("format {FORMAT:?}"),
            format!(
                "format {:?} (not a skelseg checkpoint, or one from an incompatible skelseg)",
                meta.format
            ),
        ));
    }
    let ours = env!("CARGO_PKG_VERSION");
    if meta.skelseg_version.is_empty() {
        // Checkpoints from before the field existed: the model revision check still applies.
        tracing::debug!(path = %path.display(), "checkpoint without skelseg_version");
    } else {
        let Some(theirs) = parse_version(&meta.skelseg_version) else {
            return Err(ckpt_error(
                path,
                "skelseg_version MAJOR.MINOR.PATCH",
                format!("skelseg_version {:?}, which is not a version", meta.skelseg_version),
            ));
        };
        let current = parse_version(ours).unwrap_or((0, 0, 0));
        if (theirs.0, theirs.1) > (current.0, current.1) {
            return Err(ckpt_error(
                path,
                format!("a checkpoint written by skelseg {ours} or older"),
                format!(
                    "written by skelseg {}, newer than this skelseg {ours}: upgrade skelseg to \
                     load it",
                    meta.skelseg_version
                ),
            ));
        }
    }
    if meta.layout != MODEL_LAYOUT && meta.layout != MODEL_LAYOUT_OLD {
        return Err(ckpt_error(
            path,
            format!("layout {MODEL_LAYOUT:?} (the layout models read)"),
            format!("layout {:?}", meta.layout),
        ));
    }
    meta.model.validate().map_err(|e| ckpt_error(path, "a valid model config", e.to_string()))?;
    check_class_count(path, meta)?;
    if let Some((i, _)) = meta.classes.iter().enumerate().find(|(_, c)| c.trim().is_empty()) {
        return Err(ckpt_error(
            path,
            "a name for every class",
            format!("class {i} has an empty name"),
        ));
    }
    Ok(())
}

/// One tensor of a safetensors header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type as written (`F32`, `BF16`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range in the data section, `(begin, end)`.
    pub data_offsets: (usize, usize),
}

/// Headers longer than this are refused before they are read (the format's own limit).
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 100_000_000;

fn dtype_bytes(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Parses and checks the header of a safetensors file whose first bytes are `bytes` and whose
/// length is `file_len`: the length prefix, the JSON, every tensor's dtype, shape and offsets
/// (within the data, size = elements × dtype size, no overlaps). Weights are read only after this
/// passes, so a corrupt or truncated file gets a message naming the tensor instead of a libtorch
/// error.
pub fn parse_safetensors_header(
    bytes: &[u8],
    file_len: u64,
    path: &Path,
) -> Result<Vec<TensorInfo>> {
    let bad = |message: String| ckpt_error(path, "a valid safetensors header", message);
    let Some(prefix) = bytes.get(..8) else {
        return Err(bad(format!(
            "the file has {file_len} bytes, too short for the 8-byte header length"
        )));
    };
    let header_len = u64::from_le_bytes(prefix.try_into().unwrap_or_default());
    if header_len > MAX_SAFETENSORS_HEADER_BYTES || header_len.saturating_add(8) > file_len {
        return Err(bad(format!(
            "header length {header_len} does not fit the file of {file_len} bytes (limit {MAX_SAFETENSORS_HEADER_BYTES})"
        )));
    }
    let header_end = 8 + header_len as usize;
    let Some(text) = bytes.get(8..header_end) else {
        return Err(bad(format!("header of {header_len} bytes is cut short")));
    };
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("a header that is not a JSON object".into()));
    };
    let data_len = usize::try_from(file_len - header_end as u64).unwrap_or(usize::MAX);
    let mut tensors = Vec::with_capacity(map.len());
    for (name, entry) in map {
        if name == "__metadata__" {
            if !entry.as_object().is_some_and(|m| m.values().all(serde_json::Value::is_string)) {
                return Err(bad("a __metadata__ that does not map names to strings".into()));
            }
            continue;
        }
        let field =
            |key: &str| entry.get(key).ok_or_else(|| bad(format!("tensor {name}: no {key:?}")));
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad(format!("tensor {name}: dtype is not a string")))?
            .to_owned();
        let size = dtype_bytes(&dtype)
            .ok_or_else(|| bad(format!("tensor {name}: unknown dtype {dtype:?}")))?;
        let as_usizes = |key: &str| -> Result<Vec<usize>> {
            field(key)?
                .as_array()
                .ok_or_else(|| bad(format!("tensor {name}: {key} is not a list")))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|v| usize::try_from(v).ok())
                        .ok_or_else(|| bad(format!("tensor {name}: {key} holds {v}, not a size")))
                })
                .collect()
        };
        let shape = as_usizes("shape")?;
        let offsets = as_usizes("data_offsets")?;
        let [begin, end] = offsets[..] else {
            return Err(bad(format!("tensor {name}: data_offsets must be [begin, end]")));
        };
        if begin > end || end > data_len {
            return Err(bad(format!(
                "tensor {name}: data_offsets [{begin}, {end}] outside the {data_len} data bytes"
            )));
        }
        let expected = shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("tensor {name}: shape {shape:?} overflows")))?;
        if expected != end - begin {
            return Err(bad(format!(
                "tensor {name}: shape {shape:?} of {dtype} needs {expected} bytes, data_offsets give {}",
                end - begin
            )));
        }
        tensors.push(TensorInfo { name, dtype, shape, data_offsets: (begin, end) });
    }
    tensors.sort_by_key(|t| t.data_offsets);
    if let Some(w) = tensors.windows(2).find(|w| w[0].data_offsets.1 > w[1].data_offsets.0) {
        return Err(bad(format!("tensors {} and {} overlap", w[0].name, w[1].name)));
    }
    Ok(tensors)
}

/// Reads and checks the header of the safetensors file at `path`.
fn read_safetensors_header(path: &Path) -> Result<Vec<TensorInfo>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| ckpt_error(path, "readable safetensors weights", e.to_string()))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        ckpt_error(
            path,
            "a valid safetensors header",
            format!("the file has only {file_len} bytes"),
        )
    })?;
    let header_len = u64::from_le_bytes(prefix).min(MAX_SAFETENSORS_HEADER_BYTES.saturating_add(1));
    let mut bytes = prefix.to_vec();
    file.take(header_len.min(file_len.saturating_sub(8)))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    parse_safetensors_header(&bytes, file_len, path)
}

/// Writes `path` (must end in `.safetensors`) and the JSON beside it.
pub fn save(path: &Path, vs: &nn::VarStore, meta: &CheckpointMeta) -> Result<()> {
    check_extension(path)?;
    check_class_count(path, meta)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    vs.save(path).map_err(|e| ckpt_error(path, "a writable weights file", e.to_string()))?;
    save_meta(path, meta)?;
    tracing::info!(path = %path.display(), "checkpoint saved");
    Ok(())
}

/// Writes only the JSON beside `path` (e.g. after refitting a calibration).
pub fn save_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    let json_path = meta_path(path);
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::Json { path: json_path.clone(), source: e })?;
    std::fs::write(&json_path, text + "\n").map_err(|e| Error::io(&json_path, e))
}

/// Reads only the JSON beside `path`, checked as [`check_meta`] does.
pub fn load_meta(path: &Path) -> Result<CheckpointMeta> {
    let json_path = meta_path(path);
    let text = std::fs::read_to_string(&json_path).map_err(|e| {
        ckpt_error(path, format!("its config {}", json_path.display()), e.to_string())
    })?;
    parse_meta(&text, path)
}

/// [`load_meta`] on the JSON text already read from beside `path`.
pub(crate) fn parse_meta(text: &str, path: &Path) -> Result<CheckpointMeta> {
    let json_path = meta_path(path);
    let meta: CheckpointMeta = serde_json::from_str(text)
        .map_err(|e| Error::Json { path: json_path.clone(), source: e })?;
    check_meta(path, &meta)?;
    Ok(meta)
}

/// Loads a checkpoint onto `device`: builds the model from the JSON, checks that the weights file
/// has exactly the model's tensors with the model's shapes, then copies them in.
pub fn load(path: &Path, device: Device) -> Result<LoadedModel> {
    check_extension(path)?;
    let meta = load_meta(path)?;
    // A corrupt or truncated file gets a located message here rather than from libtorch.
    read_safetensors_header(path)?;
    let vs = nn::VarStore::new(device);
    let model = InterAct::new(&vs.root(), &meta.model)?;
    let stored = Tensor::read_safetensors(path)
        .map_err(|e| ckpt_error(path, "readable safetensors weights", e.to_string()))?;
    let stored: HashMap<String, Tensor> = stored.into_iter().collect();
    let expected: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, var) in &expected {
        let Some(t) = stored.get(name) else {
            return Err(ckpt_error(
                path,
                format!("tensor {name} of shape {:?} (the config's)", var.size()),
                "no such tensor",
            ));
        };
        if t.size() != var.size() {
            return Err(ckpt_error(
                path,
                format!("tensor {name} of shape {:?} (the config's)", var.size()),
                format!("shape {:?} in the file", t.size()),
            ));
        }
        if t.kind() != var.kind() {
            return Err(ckpt_error(
                path,
                format!("tensor {name} of kind {:?}", var.kind()),
                format!("kind {:?}", t.kind()),
            ));
        }
    }
    let mut extra: Vec<&String> = stored.keys().filter(|k| !expected.contains_key(*k)).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(ckpt_error(
            path,
            "only the tensors the config uses",
            format!("{} more, first {first} (config and weights disagree)", extra.len()),
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
            CheckpointMeta::new(cfg, vec!["a".into(), "b".into(), "c".into()], MODEL_LAYOUT);
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
        match load(&path, Device::Cpu) {
            Err(Error::Checkpoint { expected, found, .. }) => {
                assert!(
                    expected.contains("of shape") && expected.contains("config's"),
                    "{expected}"
                );
                assert!(found.starts_with("shape ") && found.ends_with("in the file"), "{found}");
            }
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
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
        assert!(err.contains("no such tensor"), "{err}");
    }

    #[test]
    fn missing_json_is_a_checkpoint_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.safetensors");
        let err = load(&path, Device::Cpu).expect_err("must fail");
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        assert!(load(&dir.path().join("x.pt"), Device::Cpu).is_err());
    }

    fn saved_tiny(dir: &Path) -> (PathBuf, CheckpointMeta) {
        let path = dir.join("m.safetensors");
        let meta = tiny_meta();
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = InterAct::new(&vs.root(), &meta.model).expect("model");
        save(&path, &vs, &meta).expect("save");
        (path, meta)
    }

    /// `expected …, found …` of a checkpoint error on `path`, or a panic naming what came
    /// instead.
    fn ckpt_message(result: Result<impl std::fmt::Debug>, path: &Path) -> String {
        match result {
            Err(Error::Checkpoint { path: p, expected, found }) => {
                assert_eq!(p, path);
                format!("expected {expected}, found {found}")
            }
            other => panic!("expected a checkpoint error on {}, got {other:?}", path.display()),
        }
    }

    #[test]
    fn metadata_fields_are_checked_with_clear_messages() {
        let path = Path::new("m.safetensors");
        let good = tiny_meta();
        assert!(check_meta(path, &good).is_ok());
        let old = CheckpointMeta {
            skelseg_version: String::new(),
            layout: "kinect_v2".into(),
            ..good.clone()
        };
        assert!(check_meta(path, &old).is_ok(), "checkpoints from before the fields existed load");
        let cases = [
            (CheckpointMeta { format: "other/2".into(), ..good.clone() }, "format \"other/2\""),
            (
                CheckpointMeta { skelseg_version: "99.0.0".into(), ..good.clone() },
                "written by skelseg 99.0.0, newer than this skelseg",
            ),
            (CheckpointMeta { skelseg_version: "0.999.1".into(), ..good.clone() }, "newer than"),
            (CheckpointMeta { skelseg_version: "one".into(), ..good.clone() }, "is not a version"),
            (CheckpointMeta { layout: "coco_17".into(), ..good.clone() }, "layout \"coco_17\""),
            (CheckpointMeta { classes: vec!["a".into()], ..good.clone() }, "1 class names"),
            (
                CheckpointMeta {
                    classes: vec!["a".into(), " ".into(), "c".into()],
                    ..good.clone()
                },
                "class 1 has an empty name",
            ),
        ];
        for (meta, expected) in cases {
            let message = ckpt_message(check_meta(path, &meta), path);
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert_eq!(parse_version("1.2.3-rc.1"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
    }

    #[test]
    fn a_foreign_format_fails_to_load_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, meta) = saved_tiny(dir.path());
        let other = CheckpointMeta { format: "someone-else/1".into(), ..meta };
        std::fs::write(meta_path(&path), serde_json::to_string(&other).expect("json"))
            .expect("write");
        let message = ckpt_message(load(&path, Device::Cpu), &path);
        assert!(message.contains("format \"someone-else/1\""), "{message}");
    }

    #[test]
    fn a_tensor_of_another_dtype_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = saved_tiny(dir.path());
        let mut tensors = Tensor::read_safetensors(&path).expect("read");
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let name = tensors[0].0.clone();
        tensors[0].1 = tensors[0].1.to_kind(tch::Kind::Double);
        Tensor::write_safetensors(&tensors, &path).expect("write");
        let message = ckpt_message(load(&path, Device::Cpu), &path);
        assert_eq!(message, format!("expected tensor {name} of kind Float, found kind Double"));
    }

    #[test]
    fn a_truncated_weights_file_is_a_header_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = saved_tiny(dir.path());
        let bytes = std::fs::read(&path).expect("read");
        // Cut inside the data: the last tensor's offsets no longer fit.
        std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("write");
        let message = ckpt_message(load(&path, Device::Cpu), &path);
        assert!(
            message.starts_with("expected a valid safetensors header, found tensor ")
                && message.contains("outside the"),
            "{message}"
        );
        // Cut inside the header.
        std::fs::write(&path, &bytes[..40]).expect("write");
        let message = ckpt_message(load(&path, Device::Cpu), &path);
        assert!(message.contains("does not fit the file of 40 bytes"), "{message}");
    }

    #[test]
    fn safetensors_headers_are_checked_field_by_field() {
        let file = |header: &str, data: usize| {
            let mut out = (header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(header.as_bytes());
            out.extend(std::iter::repeat_n(0u8, data));
            out
        };
        let path = Path::new("w.safetensors");
        let parse = |bytes: &[u8]| parse_safetensors_header(bytes, bytes.len() as u64, path);
        let ok = file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#,
            8,
        );
        let tensors = parse(&ok).expect("valid header");
        assert_eq!(
            tensors,
            [TensorInfo {
                name: "a".into(),
                dtype: "F32".into(),
                shape: vec![2],
                data_offsets: (0, 8)
            }]
        );
        let cases = [
            (
                file(r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, 8),
                "unknown dtype \"F33\"",
            ),
            (
                file(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8),
                "needs 12 bytes",
            ),
            (
                file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, 8),
                "outside the 8 data bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    8,
                ),
                "overlap",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "overflows",
            ),
            (file(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#, 8), "not a size"),
            (file(r#"[1,2]"#, 0), "not a JSON object"),
            (file(r#"{"a":"#, 0), "invalid JSON"),
            (b"\x01\x02".to_vec(), "too short"),
        ];
        for (bytes, expected) in cases {
            let message = ckpt_message(parse(&bytes), path);
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }
}
