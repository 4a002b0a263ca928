//! The smallest useful embedding: `cargo run --release --example embed [-- RECORDING]`.
use skelseg::stream::{SegmentEvent, StreamSegmenter};
use skelseg::{Device, Model};

fn main() -> skelseg::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = Model::load(root.join("fixtures/models/synth.safetensors"), Device::Cpu)?;
    // Settings from the checkpoint (boundary threshold, per-class minimum lengths).
    let mut seg = StreamSegmenter::builder(model)
        .stream("camera-1")
        .on_event(|e| {
            if let SegmentEvent::SegmentEnded { label, start_secs, end_secs, confidence, .. } = e {
                println!("{label:<16} {start_secs:6.2}–{end_secs:6.2} s ({confidence:.2})");
            }
        })
        .build()?;
    let file = std::env::args().nth(1).map(Into::into);
    let file = file.unwrap_or_else(|| root.join("fixtures/synth/skeleton/synth_0000.txt"));
    // Any source of `skelseg::Frame`s works: a tracker callback, a socket, a file.
    for frame in skelseg::io::read_recording(file)?.frames {
        seg.push(&frame)?;
    }
    seg.finish()?; // closes the open segment: nothing is lost
    Ok(())
}
