//! The seed corpus: small, synthetic, valid inputs of every format, written by
//! `cargo run --release --example fuzz -- --write-corpus fixtures/fuzz` and committed. Nothing in
//! it comes from a real dataset.

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::frame::{Body, Frame, Joint, NUM_JOINTS};
use crate::io::ndjson;
use crate::skeleton::kinect_v2;

/// A plausible standing body (metres, Kinect camera space), shifted by `dx`.
fn body(id: u64, dx: f32) -> Body {
    let joints = std::array::from_fn(|j| {
        let j = j as f32;
        Joint::tracked([dx + 0.01 * j, 1.0 - 0.05 * j, 2.5 + 0.001 * j])
    });
    Body { id, joints }
}

fn frames(n: usize, bodies: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| Frame {
            index: i as u64,
            timestamp_secs: i as f64 / 30.0,
            bodies: (0..bodies).map(|b| body(b as u64 + 1, 0.02 * i as f32 + b as f32)).collect(),
        })
        .collect()
}

fn coords(b: &Body) -> impl Iterator<Item = f32> + '_ {
    b.joints.iter().flat_map(|j| j.pos)
}

fn pku_skeleton(n: usize, two: bool) -> Vec<u8> {
    let mut out = String::new();
    for f in frames(n, if two { 2 } else { 1 }) {
        let mut values: Vec<String> =
            f.bodies.iter().flat_map(coords).map(|v| v.to_string()).collect();
        values.resize(150, "0".into());
        out += &values.join(" ");
        out.push('\n');
    }
    out.into_bytes()
}

fn ntu_skeleton(n: usize, bodies: usize) -> Vec<u8> {
    let mut out = format!("{n}\n");
    for f in frames(n, bodies) {
        out += &format!("{}\n", f.bodies.len());
        for b in &f.bodies {
            out +=
                &format!("{} 0 1 1 1 1 0 0.01 -0.02 2\n{NUM_JOINTS}\n", 72057594037931100 + b.id);
            for (j, joint) in b.joints.iter().enumerate() {
                let [x, y, z] = joint.pos;
                let state = if j == 21 { 1 } else { 2 };
                out += &format!("{x} {y} {z} 250.1 180.2 900.5 500.25 0.1 0.2 0.3 0.9 {state}\n");
            }
        }
    }
    out.into_bytes()
}

fn utkinect_joints(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for (k, f) in frames(n, 1).iter().enumerate() {
        let no = 100 + 2 * k;
        let values: Vec<String> = coords(&f.bodies[0]).take(60).map(|v| v.to_string()).collect();
        out += &format!("{no} {}\n", values.join(" "));
    }
    out.into_bytes()
}

fn ndjson_lines(n: usize, header: bool) -> Vec<u8> {
    let mut out = String::new();
    if header {
        out += &ndjson::encode_header(&ndjson::Header::canonical(Some(30.0)));
        out.push('\n');
    }
    for f in frames(n, 2) {
        out += &ndjson::encode_frame(&f);
        out.push('\n');
    }
    out.into_bytes()
}

/// An Azure Kinect style stream: 32 joints in millimetres, OpenCV depth-camera axes.
fn azure_mm() -> Vec<u8> {
    let positions: Vec<serde_json::Value> = (0..32)
        .map(|j| serde_json::json!([10.0 * j as f64, -800.0 + 40.0 * j as f64, 2500.0]))
        .collect();
    let header = serde_json::json!({"type": "header", "format": "skeleton-ndjson/1",
        "layout": "azure_kinect_32", "units": "mm", "axes": "depth_camera_opencv", "fps": 30});
    let mut out = format!("{header}\n");
    for k in 0..2 {
        let frame = serde_json::json!({"timestamp_usec": 1000 + 33_333 * k, "bodies": [{
            "body_id": 3, "joint_positions": positions, "joint_confidence": vec![2; 32]}]});
        out += &format!("{frame}\n");
    }
    out.into_bytes()
}

fn osc_body_packets(id: u64, dx: f32, states: bool) -> Vec<OscPacket> {
    let b = body(id, dx);
    let mut packets: Vec<OscPacket> = b
        .joints
        .iter()
        .enumerate()
        .map(|(j, joint)| {
            let mut args: Vec<OscType> = joint.pos.iter().map(|&v| OscType::Float(v)).collect();
            if states {
                args.push(OscType::String(if j == 3 { "Inferred" } else { "Tracked" }.into()));
            }
            OscPacket::Message(OscMessage {
                addr: format!("/bodies/{id}/joints/{}", kinect_v2::JOINT_NAMES[j]),
                args,
            })
        })
        .collect();
    for side in ["Left", "Right"] {
        packets.push(OscPacket::Message(OscMessage {
            addr: format!("/bodies/{id}/hands/{side}"),
            args: vec![OscType::String("Open".into()), OscType::String("High".into())],
        }));
    }
    packets
}

/// Datagrams as the `osc` target reads them: each prefixed by its big-endian u16 length.
fn osc_stream(datagrams: &[OscPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in datagrams {
        let Ok(bytes) = rosc::encoder::encode(p) else { continue };
        let Ok(len) = u16::try_from(bytes.len()) else { continue };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn bundle(content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle { timetag: OscTime { seconds: 1, fractional: 0 }, content })
}

/// A bundle nested `depth` times around one message: within the limit at small depths, a
/// stack-depth attack at large ones.
pub fn deep_bundle(depth: usize) -> Vec<u8> {
    let message = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/bodies/1/hands/Left".into(),
        args: vec![],
    }))
    .unwrap_or_default();
    let mut packet = message;
    for _ in 0..depth {
        let mut outer = b"#bundle\0\0\0\0\x01\0\0\0\0".to_vec();
        outer.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        outer.extend_from_slice(&packet);
        packet = outer;
    }
    packet
}

fn safetensors_file(tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let size = match *dtype {
            "F64" | "I64" => 8,
            "F32" | "I32" => 4,
            "F16" | "BF16" => 2,
            _ => 1,
        };
        let bytes = shape.iter().product::<usize>() * size;
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let text = serde_json::Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend(std::iter::repeat_n(0u8, offset));
    out
}

/// The synthetic seeds of `target`: (file name, bytes).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |items: Vec<(&str, Vec<u8>)>| {
        items.into_iter().map(|(n, b)| (n.to_owned(), b)).collect::<Vec<_>>()
    };
    match target {
        "pku-skeleton" => named(vec![
            ("one-body.txt", pku_skeleton(3, false)),
            ("two-bodies.txt", pku_skeleton(2, true)),
        ]),
        "pku-labels" => named(vec![
            ("ids.txt", b"13,87,159,1\n8,240,336,1\n5,362,414,0.9\n".to_vec()),
            ("names.txt", b"bow,10,20,1\nbrushing hair,30,44,1,\n".to_vec()),
        ]),
        "ntu-skeleton" => named(vec![
            ("one-body.skeleton", ntu_skeleton(2, 1)),
            ("two-bodies.skeleton", ntu_skeleton(1, 2)),
            ("no-body.skeleton", b"2\n0\n0\n".to_vec()),
        ]),
        "utkinect-joints" => named(vec![("joints_s01_e01.txt", utkinect_joints(4))]),
        "utkinect-labels" => named(vec![(
            "actionLabel.txt",
            b"s01_e01\nwalk: 10 12\nsitDown: 13 20\nstandUp: NaN NaN\ns01_e02\npickUp: 5 9\n"
                .to_vec(),
        )]),
        "ndjson-file" | "ndjson-live" => named(vec![
            ("header-and-frames.ndjson", ndjson_lines(3, true)),
            ("frames-only.ndjson", ndjson_lines(2, false)),
            ("azure-mm.ndjson", azure_mm()),
        ]),
        "osc" => {
            let mut one = osc_body_packets(7, 0.0, true);
            one.extend(osc_body_packets(9, 1.0, false));
            one.extend(osc_body_packets(7, 0.1, true));
            let bundled = vec![bundle(osc_body_packets(5, 0.0, true))];
            let mut deep = deep_bundle(3);
            let len = deep.len() as u16;
            deep.splice(0..0, len.to_be_bytes());
            let mut too_deep = deep_bundle(6);
            let len = too_deep.len() as u16;
            too_deep.splice(0..0, len.to_be_bytes());
            named(vec![
                ("two-bodies.osc", osc_stream(&one)),
                ("bundle.osc", osc_stream(&bundled)),
                ("nested-3.osc", deep),
                ("nested-6.osc", too_deep),
            ])
        }
        "gt-labels" => named(vec![
            ("frames.txt", b"background\nbackground\nwave_left\nwave_left\nclap\n".to_vec()),
            (
                "mstcn.txt",
                b"### Frame level recognition: ###\nbackground wave_left wave_left squat\n"
                    .to_vec(),
            ),
        ]),
        "mapping" => named(vec![("mapping.txt", b"0 background\n1 wave\n2 clap\n".to_vec())]),
        "split" => named(vec![
            ("list.txt", b"synth_0000\nsynth_0001\n".to_vec()),
            (
                "sectioned.txt",
                b"Training videos:\n0002-L, 0002-M, 0003-R\nValidation videos:\n0291-L, 0291-M\n"
                    .to_vec(),
            ),
        ]),
        "checkpoint-json" => {
            let meta = crate::model::checkpoint::CheckpointMeta::new(
                crate::model::ModelConfig::tiny(3),
                vec!["background".into(), "wave".into(), "clap".into()],
                "kinect_v2_25",
            );
            let text = serde_json::to_vec_pretty(&meta).unwrap_or_default();
            named(vec![("tiny.json", text)])
        }
        "safetensors" => named(vec![
            (
                "two-tensors.safetensors",
                safetensors_file(&[("a.w", "F32", &[2, 3]), ("a.b", "F32", &[3])]),
            ),
            (
                "scalar-and-empty.safetensors",
                safetensors_file(&[("s", "I64", &[]), ("e", "F16", &[0, 4])]),
            ),
        ]),
        "source-spec" => named(
            [
                "file:fixtures/synth/skeleton/synth_0000.txt",
                "tcp-listen:7000",
                "tcp-listen:0.0.0.0:7000",
                "tcp:localhost:7000",
                "tcp:[::1]:7000",
                "udp:7001",
                "udp:[::1]:7001",
                "osc",
                "osc:12345",
                "sim",
            ]
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec-{i}.txt"), s.as_bytes().to_vec()))
            .collect::<Vec<_>>()
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect(),
        ),
        "config-json" => {
            let stream = serde_json::to_vec_pretty(&crate::stream::StreamConfig::default());
            let model = serde_json::to_vec_pretty(&crate::model::ModelConfig::tiny(4));
            let synth = serde_json::to_vec_pretty(&crate::synth::SynthConfig::default());
            named(vec![
                ("stream.json", stream.unwrap_or_default()),
                ("model.json", model.unwrap_or_default()),
                ("synth.json", synth.unwrap_or_default()),
                (
                    "partial.json",
                    br#"{"engine":{"hop_frames":2},"segmenter":{"min_frames":3}}"#.to_vec(),
                ),
            ])
        }
        _ => Vec::new(),
    }
}
