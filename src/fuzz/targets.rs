//! One fuzz target per parser. A target takes raw bytes, feeds them to the parser the way the
//! library meets them (the bytes of a file, a line from a socket, a datagram, a command-line
//! string) and checks the few properties that hold for every input (a spec that parses prints back to
//! itself, a decoded frame encodes). Errors are the expected outcome for most inputs; only a
//! panic (or a broken property, which panics) is a finding.
//!
//! File parsers are fed in memory, through the same function their path reader calls after
//! `std::fs::read` (`read_X(path)` is `parse_X(text_of(read(path)), path)`), so the campaign
//! spends its time in the parser rather than in the kernel's file system.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::io::text::text_of;
use crate::io::{dataset, gt, ndjson, ntu, pku, utkinect};
use crate::model::checkpoint;
use crate::source::SourceSpec;
use crate::source::osc;

/// What one input did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The parser accepted it.
    Accepted,
    /// The parser rejected it with an error (or counted skips).
    Rejected,
}

/// A parser under test.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Name on the command line (`--target NAME`) and in the corpus folder.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    run: fn(&[u8]) -> Outcome,
}

impl Target {
    /// Runs one input (may panic: the campaign catches it).
    pub fn run(&self, input: &[u8]) -> Outcome {
        (self.run)(input)
    }
}

/// The UTF-8 text of a file at `path`, as the path readers check it.
fn text<'a>(b: &'a [u8], path: &Path) -> crate::Result<&'a str> {
    text_of(b, path)
}

fn outcome<T, E>(r: &Result<T, E>) -> Outcome {
    if r.is_ok() { Outcome::Accepted } else { Outcome::Rejected }
}

/// Every target, in campaign order.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pku-skeleton",
        about: "PKU-MMD skeleton file",
        run: |b| {
            let path = Path::new("fuzz/skeleton.txt");
            outcome(&text(b, path).and_then(|t| pku::parse_skeleton(t, path)))
        },
    },
    Target {
        name: "pku-labels",
        about: "PKU-MMD label file (ids, and names against a class map)",
        run: |b| {
            let path = Path::new("fuzz/label.txt");
            let plain = text(b, path).and_then(|t| pku::parse_labels(t, path, 1000, None));
            let named =
                text(b, path).and_then(|t| pku::parse_labels(t, path, 1000, Some(&pku::classes())));
            if let Ok(intervals) = &plain {
                assert!(intervals.iter().all(|iv| iv.start <= iv.end && iv.end < 1000));
            }
            if plain.is_ok() || named.is_ok() { Outcome::Accepted } else { Outcome::Rejected }
        },
    },
    Target {
        name: "ntu-skeleton",
        about: "NTU RGB+D .skeleton file",
        run: |b| {
            let path = Path::new("fuzz/S001C001P001R001A001.skeleton");
            outcome(&text(b, path).and_then(|t| ntu::parse_skeleton(t, path)))
        },
    },
    Target {
        name: "utkinect-joints",
        about: "UTKinect-Action3D joints file",
        run: |b| {
            let path = Path::new("fuzz/joints_s01_e01.txt");
            outcome(&text(b, path).and_then(|t| utkinect::parse_joints(t, path)))
        },
    },
    Target {
        name: "utkinect-labels",
        about: "UTKinect-Action3D actionLabel.txt, then its intervals against a take",
        run: |b| {
            let path = Path::new("fuzz/actionLabel.txt");
            let labels = text(b, path).and_then(|t| utkinect::parse_action_labels(t, path));
            if let Ok(takes) = &labels {
                let take = fixed_take();
                for intervals in takes.values() {
                    if let Ok(ivs) = utkinect::intervals_for_take(&take, intervals, path) {
                        let n = take.frames.len();
                        assert!(ivs.iter().all(|iv| iv.start <= iv.end && iv.end < n));
                    }
                }
            }
            outcome(&labels)
        },
    },
    Target {
        name: "ndjson-file",
        about: "skeleton-ndjson/1 whole file (strict reader)",
        run: |b| outcome(&ndjson::read_recording_from(b, Path::new("fuzz/recording.ndjson"))),
    },
    Target {
        name: "ndjson-live",
        about: "skeleton-ndjson/1 line-by-line live decoder (skips counted), re-encoding",
        run: |b| {
            let mut decoder = ndjson::Decoder::new("fuzz".into()).with_max_line_bytes(16 * 1024);
            let mut accepted = false;
            let mut lines = b.split(|&c| c == b'\n').peekable();
            while let Some(line) = lines.next() {
                if lines.peek().is_none() && !line.is_empty() {
                    // No newline at the end: what a disconnect mid-line leaves.
                    decoder.reject_truncated(line.len());
                    break;
                }
                if let Ok(Some(frame)) = decoder.decode_checked(line) {
                    accepted = true;
                    let text = ndjson::encode_frame(&frame);
                    let mut again = ndjson::Decoder::new("re-encoded".into());
                    let back = again.decode_line(&text);
                    assert!(back.is_ok(), "a decoded frame must re-encode: {back:?}");
                }
            }
            if accepted { Outcome::Accepted } else { Outcome::Rejected }
        },
    },
    Target {
        name: "osc",
        about: "KinectV2-OSC datagrams: nesting check, rosc decoding, frame assembly",
        run: |b| {
            let mut assembler = osc::Assembler::new("osc:fuzz".into());
            let t0 = Instant::now();
            let mut out = Vec::new();
            // The input is a sequence of datagrams, each prefixed by a big-endian u16 length.
            let mut rest = b;
            let mut step = 0;
            while rest.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
                let datagram = &rest[2..2 + len];
                rest = &rest[2 + len..];
                step += 1;
                let now = t0 + Duration::from_millis(step);
                assembler.on_datagram(datagram, now, &mut out);
                assembler.on_tick(now, Duration::from_millis(2), &mut out);
            }
            assembler.flush(t0 + Duration::from_secs(1), &mut out);
            let frames = out.iter().filter(|a| matches!(a, osc::Assembled::Frame(_))).count();
            if frames > 0 { Outcome::Accepted } else { Outcome::Rejected }
        },
    },
    Target {
        name: "gt-labels",
        about: "MS-TCN per-frame label files and prediction files",
        run: |b| {
            // `read_labels` reads with `read_to_string`: text that is not UTF-8 is an I/O error.
            let Ok(t) = std::str::from_utf8(b) else { return Outcome::Rejected };
            let names = gt::parse_labels(t, "fuzz/gt.txt");
            let ids = gt::parse_label_ids(t, "fuzz/gt.txt", &crate::synth::classes());
            if let (Ok(names), Ok(ids)) = (&names, &ids) {
                assert_eq!(names.len(), ids.len());
            }
            outcome(&names)
        },
    },
    Target {
        name: "mapping",
        about: "mapping.txt (`id name` lines)",
        run: |b| {
            let path = Path::new("fuzz/mapping.txt");
            let map = text(b, path).and_then(|t| dataset::parse_mapping(t, path));
            if let Ok(map) = &map {
                for (id, name) in map.names().iter().enumerate() {
                    assert_eq!(map.id(name), Some(id));
                }
            }
            outcome(&map)
        },
    },
    Target {
        name: "split",
        about: "split files (name lists and PKU-MMD sectioned files)",
        run: |b| {
            let path = Path::new("fuzz/train.txt");
            let any = text(b, path).and_then(|t| dataset::parse_split_file(t, path));
            let sectioned = text(b, path).and_then(|t| pku::parse_split(t, path));
            if any.is_ok() || sectioned.is_ok() { Outcome::Accepted } else { Outcome::Rejected }
        },
    },
    Target {
        name: "checkpoint-json",
        about: "checkpoint metadata JSON: format, version, layout, classes, model config",
        run: |b| {
            // `load_meta` reads with `read_to_string`: text that is not UTF-8 is an I/O error.
            let Ok(t) = std::str::from_utf8(b) else { return Outcome::Rejected };
            outcome(&checkpoint::parse_meta(t, Path::new("fuzz/model.safetensors")))
        },
    },
    Target {
        name: "safetensors",
        about: "safetensors header (length, JSON, dtypes, shapes, offsets)",
        run: |b| {
            let parsed = checkpoint::parse_safetensors_header(
                b,
                b.len() as u64,
                Path::new("fuzz.safetensors"),
            );
            if let Ok(tensors) = &parsed {
                for t in tensors {
                    assert!(t.data_offsets.0 <= t.data_offsets.1);
                }
            }
            outcome(&parsed)
        },
    },
    Target {
        name: "source-spec",
        about: "--source strings; a parsed spec prints back to itself",
        run: |b| {
            let Ok(text) = std::str::from_utf8(b) else { return Outcome::Rejected };
            let spec = SourceSpec::from_str(text);
            if let Ok(spec) = &spec {
                let printed = spec.to_string();
                let again = SourceSpec::from_str(&printed);
                assert!(
                    again.as_ref().is_ok_and(|a| a == spec),
                    "{text:?} -> {printed:?} -> {again:?}"
                );
            }
            outcome(&spec)
        },
    },
    Target {
        name: "config-json",
        about: "StreamConfig, ModelConfig and SynthConfig JSON, then validate()",
        run: |b| {
            let stream = serde_json::from_slice::<crate::stream::StreamConfig>(b)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()));
            let model = serde_json::from_slice::<crate::model::ModelConfig>(b)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()));
            let synth = serde_json::from_slice::<crate::synth::SynthConfig>(b)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()));
            let any = stream.is_ok() || model.is_ok() || synth.is_ok();
            if any { Outcome::Accepted } else { Outcome::Rejected }
        },
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A take with frame numbers 10, 12, 13, 20 for the label target.
fn fixed_take() -> utkinect::Take {
    let frame_numbers = vec![10, 12, 13, 20];
    let frames = frame_numbers
        .iter()
        .map(|&n| crate::Frame { index: n - 10, timestamp_secs: 0.0, bodies: Vec::new() })
        .collect();
    utkinect::Take { name: "s01_e01".into(), frame_numbers, frames, repeats_dropped: 0 }
}
