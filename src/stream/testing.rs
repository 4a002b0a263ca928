//! Fixtures for the streaming runtime's unit tests: the bundled model and sequence.

use std::path::Path;

use tch::Device;

use crate::io::{self, Recording};
use crate::model::checkpoint::{self, LoadedModel};

/// The bundled synthetic model, on the CPU.
pub(crate) fn bundled_model() -> LoadedModel {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/synth.safetensors");
    checkpoint::load(&path, Device::Cpu).expect("the bundled model loads")
}

/// The bundled sequence, renamed `name`.
pub(crate) fn bundled_recording(name: &str) -> Recording {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth/skeleton/synth_0000.txt");
    let mut rec = io::read_recording(path).expect("the bundled sequence reads");
    rec.name = name.into();
    rec
}
