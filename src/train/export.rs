//! The model inputs of a training run, written out for a trainer outside skelseg (the PyTorch
//! twin, `python/skelseg_train.py`, on a GPU).
//!
//! `skelseg train --export-inputs DIR` prepares the recordings exactly as it would train on them
//! (resampled to the model's rate, modalities derived and normalised as the model expects,
//! the same validation carve) and writes:
//!
//! * `DIR/train.safetensors`, `DIR/val.safetensors`: per recording `NAME/abs`, `NAME/rel`,
//!   `NAME/motion` (`(6, T, 25)` f32), `NAME/labels` (`(T)` i64) and `NAME/boundary` (`(T)` f32,
//!   the boundary target);
//! * `DIR/manifest.json`: the checkpoint metadata a model trained on them gets (model config,
//!   class names, layout, fps, data summary), the training settings, and the recording names of
//!   each split in order.
//!
//! A model trained elsewhere on these inputs comes back as a skelseg checkpoint (same parameter
//! names, `NAME.safetensors` + `NAME.json`) and is served, calibrated and scored like any other.

use std::path::Path;

use serde::Serialize;
use tch::Tensor;

use crate::error::{Error, Result};
use crate::model::checkpoint::CheckpointMeta;
use crate::train::{SequenceTensors, TrainConfig};

/// File name of the manifest in an export folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What `manifest.json` holds.
#[derive(Debug, Serialize)]
pub struct ExportManifest<'a> {
    /// Format tag, `skelseg-inputs/1`.
    pub format: &'static str,
    /// The metadata a checkpoint trained on these inputs carries.
    pub meta: &'a CheckpointMeta,
    /// The training settings skelseg would have used.
    pub train: &'a TrainConfig,
    /// Recording names per split file (`train`, `val`), in file order.
    pub splits: std::collections::BTreeMap<&'static str, Vec<&'a str>>,
}

/// Writes `train_set` and `val_set` with their manifest into `dir` (created if missing).
pub fn export_inputs(
    dir: &Path,
    train_set: &[SequenceTensors],
    val_set: &[SequenceTensors],
    meta: &CheckpointMeta,
    train: &TrainConfig,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut splits = std::collections::BTreeMap::new();
    for (split, seqs) in [("train", train_set), ("val", val_set)] {
        let path = dir.join(format!("{split}.safetensors"));
        let mut named: Vec<(String, &Tensor)> = Vec::with_capacity(seqs.len() * 5);
        for s in seqs {
            for (part, t) in [
                ("abs", &s.abs),
                ("rel", &s.rel),
                ("motion", &s.motion),
                ("labels", &s.labels),
                ("boundary", &s.boundary),
            ] {
                named.push((format!("{}/{part}", s.name), t));
            }
        }
        Tensor::write_safetensors(&named, &path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            expected: "a writable safetensors file".into(),
            found: e.to_string(),
        })?;
        splits.insert(split, seqs.iter().map(|s| s.name.as_str()).collect());
    }
    let manifest = ExportManifest { format: "skelseg-inputs/1", meta, train, splits };
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::invalid("export manifest", e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    fn seq(name: &str, len: i64) -> SequenceTensors {
        let opts = (tch::Kind::Float, tch::Device::Cpu);
        SequenceTensors {
            name: name.into(),
            len: len as usize,
            abs: Tensor::rand([6, len, 25], opts),
            rel: Tensor::rand([6, len, 25], opts),
            motion: Tensor::rand([6, len, 25], opts),
            labels: Tensor::arange(len, (tch::Kind::Int64, tch::Device::Cpu)),
            boundary: Tensor::rand([len], opts),
            label_ids: (0..len as usize).collect(),
        }
    }

    #[test]
    fn exported_inputs_read_back_bit_for_bit_with_their_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (train, val) = ([seq("0002-L", 7), seq("0003-M", 5)], [seq("0004-R", 3)]);
        let meta = CheckpointMeta::new(ModelConfig::default(), vec!["a".into()], "kinect_v2_25");
        export_inputs(dir.path(), &train, &val, &meta, &TrainConfig::default()).expect("export");
        let read = Tensor::read_safetensors(dir.path().join("train.safetensors")).expect("read");
        assert_eq!(read.len(), 10);
        for s in &train {
            for (part, want) in [("abs", &s.abs), ("motion", &s.motion), ("labels", &s.labels)] {
                let got =
                    &read.iter().find(|(n, _)| *n == format!("{}/{part}", s.name)).expect(part).1;
                assert!(got.equal(want), "{}/{part}", s.name);
            }
        }
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).expect("manifest"),
        )
        .expect("json");
        assert_eq!(manifest["splits"]["train"], serde_json::json!(["0002-L", "0003-M"]));
        assert_eq!(manifest["splits"]["val"], serde_json::json!(["0004-R"]));
        assert_eq!(manifest["meta"]["classes"], serde_json::json!(["a"]));
    }
}
