//! [`Model`]: a trained model that owns its weights, the one handle apps load and hand to
//! [`crate::stream::StreamSegmenter`] or [`crate::stream::PipelineBuilder`].

use std::path::Path;

use tch::{Device, nn};

use super::checkpoint::{self, CheckpointMeta, LoadedModel};
use super::{InterAct, ModelConfig};
use crate::error::{Error, Result};
use crate::io::ClassMap;

/// A trained InterAct model with its weights and what its checkpoint says about it.
///
/// Owns its variables: there is nothing else to keep alive. `Send` (move it to the thread that
/// runs it) but not `Sync`, as libtorch tensors are not; the streaming runtime runs a model on
/// one thread.
///
/// ```no_run
/// let model = skelseg::Model::load("fixtures/models/synth.safetensors", skelseg::Device::Cpu)?;
/// println!("{} classes on the {} layout", model.classes().len(), model.layout());
/// # Ok::<(), skelseg::Error>(())
/// ```
#[derive(Debug)]
pub struct Model {
    /// Holds the variables `net` reads; dropped with it.
    vs: nn::VarStore,
    net: InterAct,
    meta: CheckpointMeta,
    classes: ClassMap,
}

impl Model {
    /// Loads a checkpoint: `path` is the `.safetensors` file, with its `.json` beside it. Every
    /// tensor's name and shape is checked against the configuration; the first mismatch is an
    /// [`Error::Checkpoint`] naming it.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        Ok(checkpoint::load(path.as_ref(), device)?.into())
    }

    /// A model from its parts: the variables, the network built on them, and the metadata (for
    /// training code and benchmarks that build a network themselves). The metadata must name
    /// one class per output of the network.
    pub fn from_parts(vs: nn::VarStore, net: InterAct, meta: CheckpointMeta) -> Result<Self> {
        if meta.classes.len() as i64 != net.config().num_classes {
            return Err(Error::invalid(
                "model",
                format!(
                    "{} class names for a network with {} classes",
                    meta.classes.len(),
                    net.config().num_classes
                ),
            ));
        }
        Ok(Self::from(LoadedModel { vs, model: net, meta }))
    }

    /// The model's configuration (architecture, boundary threshold, calibration temperature).
    pub fn config(&self) -> &ModelConfig {
        &self.meta.model
    }

    /// The class names, by class id (id 0 is the background class).
    pub fn classes(&self) -> &ClassMap {
        &self.classes
    }

    /// The joint layout the model was trained on (e.g. `kinect_v2_25`); frames of other layouts
    /// are mapped to it by the sources.
    pub fn layout(&self) -> &str {
        &self.meta.layout
    }

    /// The frame rate the model was trained at, frames per second; feed it frames at this rate
    /// ([`crate::resample`] converts others).
    pub fn frame_rate_hz(&self) -> f64 {
        self.meta.fps
    }

    /// Where the weights live.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Everything the checkpoint's JSON holds (training data summary, command, version).
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// The network itself, for offline inference over whole sequences.
    pub fn network(&self) -> &InterAct {
        &self.net
    }

    /// The variables (to save the model, or to train it further).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Splits the handle for the streaming runtime, which moves the network into its engine
    /// and keeps the variables alive beside it.
    pub(crate) fn into_parts(self) -> (nn::VarStore, InterAct, CheckpointMeta) {
        (self.vs, self.net, self.meta)
    }
}

impl From<LoadedModel> for Model {
    fn from(loaded: LoadedModel) -> Self {
        let classes = ClassMap::new(loaded.meta.classes.clone());
        Model { vs: loaded.vs, net: loaded.model, meta: loaded.meta, classes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn the_handle_can_move_to_another_thread() {
        assert_send::<Model>();
    }

    fn tiny() -> (nn::VarStore, InterAct, CheckpointMeta) {
        let cfg = ModelConfig { action_layers: 1, boundary_layers: 1, ..ModelConfig::tiny(3) };
        let vs = nn::VarStore::new(Device::Cpu);
        let net = InterAct::new(&vs.root(), &cfg).expect("model");
        let meta = CheckpointMeta::new(cfg, vec!["bg".into(), "a".into(), "b".into()], "kinect_v2");
        (vs, net, meta)
    }

    #[test]
    fn load_exposes_what_the_checkpoint_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        let (vs, _net, mut meta) = tiny();
        meta.fps = 15.0;
        checkpoint::save(&path, &vs, &meta).expect("save");
        // The handle is all the caller keeps: the weights live as long as it does.
        let model = std::thread::spawn(move || Model::load(&path, Device::Cpu).expect("load"))
            .join()
            .expect("the loading thread");
        assert_eq!(model.classes().names(), ["bg", "a", "b"]);
        assert_eq!(model.layout(), "kinect_v2");
        assert_eq!(model.frame_rate_hz(), 15.0);
        assert_eq!(model.config(), &meta.model);
        assert_eq!(model.device(), Device::Cpu);
        assert_eq!(model.network().num_parameters(), super::super::parameter_count(&meta.model));
    }

    #[test]
    fn from_parts_rejects_a_class_list_that_does_not_fit() {
        let (vs, net, mut meta) = tiny();
        meta.classes.pop();
        let err = Model::from_parts(vs, net, meta).expect_err("two names for three classes");
        assert!(matches!(err, Error::Invalid { ref what, .. } if what == "model"), "{err}");
    }
}
