//! The smallest useful embedding: push frames, print committed segments.
//!
//! `cargo run --release --example embed [-- RECORDING]`

use skelseg::stream::{SegmentEvent, StreamSegmenter};

fn main() -> skelseg::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = std::env::args()
        .nth(1)
        .map_or_else(|| root.join("fixtures/synth/skeleton/synth_0000.txt"), Into::into);
    let model = root.join("fixtures/models/synth.safetensors");
    // The settings come from the checkpoint: its boundary threshold, per-class minimum lengths.
    let mut segmenter =
        StreamSegmenter::from_checkpoint(&model, tch::Device::cuda_if_available(), "embed")?;
    // Any source of `skelseg::Frame`s works: a sensor callback, a socket, a file.
    let recording = skelseg::io::read_recording(&file)?;
    for frame in &recording.frames {
        for event in segmenter.push(frame)? {
            if let SegmentEvent::SegmentEnded { label, start_secs, end_secs, confidence, .. } =
                event
            {
                println!(
                    "{label:<16} {start_secs:6.2}–{end_secs:6.2} s  (confidence {confidence:.2})"
                );
            }
        }
    }
    for event in segmenter.finish()? {
        if let SegmentEvent::SegmentEnded { label, start_secs, end_secs, confidence, .. } = event {
            println!("{label:<16} {start_secs:6.2}–{end_secs:6.2} s  (confidence {confidence:.2})");
        }
    }
    Ok(())
}
