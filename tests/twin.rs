//! skelseg against its PyTorch twin (`python/skelseg_twin.py`): same checkpoint, same fixed
//! input, outputs within 1e-4 of each output's scale (its largest |value|, at least 1: DSMI
//! features reach several hundred, where float32 itself is off by a few 1e-4), in both directions (a skelseg checkpoint read by the twin, a
//! model built and saved by the twin served by skelseg).
//!
//! The twin runs with the torch of the venv `make setup` creates (`$SKELSEG_TWIN_PYTHON`, else
//! `~/.cache/skelseg/venv/bin/python`); `make test` runs these ignored tests when it exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use skelseg::model::checkpoint;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let path = std::env::var_os("SKELSEG_TWIN_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/skelseg/venv/bin/python")
    });
    assert!(path.exists(), "no Python with torch at {} (run `make setup`)", path.display());
    path
}

/// Runs the twin; returns its JSON report and exit status.
fn twin(args: &[&str]) -> (Value, bool) {
    let out = Command::new(python())
        .arg(root().join("python/skelseg_twin.py"))
        .args(args)
        .output()
        .expect("the twin runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{args:?}: {e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (report, out.status.success())
}

/// Two sequences of `t` frames, the last 7 frames of the second padded.
fn fixed_input(t: i64) -> Vec<(String, Tensor)> {
    tch::manual_seed(42);
    let x = || Tensor::randn([2, 6, t, 25], (Kind::Float, Device::Cpu)) * 0.5;
    let mask = Tensor::ones([2, t], (Kind::Float, Device::Cpu));
    let _ = mask.get(1).narrow(0, t - 7, 7).fill_(0.0);
    vec![("abs".into(), x()), ("rel".into(), x()), ("motion".into(), x()), ("mask".into(), mask)]
}

fn get<'a>(io: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &io.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
}

/// skelseg's outputs on `io`'s inputs: DSMI features alone, every stage's logits.
fn skelseg_outputs(
    model: &skelseg::model::InterAct,
    io: &[(String, Tensor)],
) -> Vec<(String, Tensor)> {
    let _guard = tch::no_grad_guard();
    let (a, r, m, mask) = (get(io, "abs"), get(io, "rel"), get(io, "motion"), get(io, "mask"));
    let mut out = vec![("feats".to_string(), model.dsmi(a, r, m, false).expect("dsmi"))];
    let stages = model.forward_t(a, r, m, mask, false).expect("forward").stages;
    for (i, s) in stages.into_iter().enumerate() {
        out.push((format!("stage{i}.action"), s.action_logits));
        out.push((format!("stage{i}.boundary"), s.boundary_logits));
    }
    out
}

fn write(path: &Path, tensors: &[(String, Tensor)]) {
    let owned: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.contiguous())).collect();
    let named: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (*n, t)).collect();
    Tensor::write_safetensors(&named, path).expect("write io");
}

#[test]
#[ignore = "needs the torch venv (make setup)"]
fn twin_reproduces_the_bundled_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    // synth is revision 1 (camera input, shared FBlock), pku-mmd revision 2.
    for name in ["synth", "pku-mmd"] {
        let ckpt = root().join(format!("fixtures/models/{name}.safetensors"));
        let loaded = checkpoint::load(&ckpt, Device::Cpu).expect("load");
        let mut io = fixed_input(70);
        let outputs = skelseg_outputs(&loaded.model, &io);
        assert_eq!(outputs.len(), 1 + 2 * loaded.meta.model.query_scales as usize);
        io.extend(outputs);
        let io_path = dir.path().join(format!("{name}.safetensors"));
        write(&io_path, &io);
        let args = ["check", "--model", ckpt.to_str().unwrap(), "--io", io_path.to_str().unwrap()];
        let (report, ok) = twin(&[&args[..], &["--json"]].concat());
        let diff = report["max_rel_diff"].as_f64().expect("max_rel_diff");
        assert!(ok && diff <= TOLERANCE, "{name}: twin differs by {diff}: {report}");

        // The check can fail: one logit of the final stage off by 0.01 is reported.
        let last = format!("stage{}.action", loaded.meta.model.query_scales - 1);
        let bumped: Vec<(String, Tensor)> = io
            .iter()
            .map(|(n, t)| {
                let t = t.copy();
                if *n == last {
                    let _ = t.get(0).get(3).get(10).g_add_scalar_(1e-2);
                }
                (n.clone(), t)
            })
            .collect();
        write(&io_path, &bumped);
        let (report, ok) = twin(&[&args[..], &["--json"]].concat());
        assert!(!ok, "{name}: a 0.01 change went unnoticed: {report}");
        let got = report["per_output"][&last]["abs"].as_f64().expect("per-output diff");
        assert!((got - 1e-2).abs() < 2e-4, "{name}: {last} off by {got}");
    }
}

#[test]
#[ignore = "needs the torch venv (make setup)"]
fn twin_weights_are_served_by_skelseg() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Fresh PyTorch initialisations (not skelseg's), small so the test stays quick; every
    // spatial variant and both revisions.
    let variants = [
        r#"{"hidden": 16, "heads": 2, "action_layers": 2, "boundary_layers": 2}"#,
        r#"{"hidden": 16, "heads": 2, "action_layers": 2, "boundary_layers": 3, "spatial": "concat", "revision": 1}"#,
        r#"{"hidden": 32, "heads": 4, "action_layers": 1, "boundary_layers": 1, "spatial": "none", "temporal": "fixed"}"#,
    ];
    for (i, config) in variants.iter().enumerate() {
        let ckpt = dir.path().join(format!("twin{i}.safetensors"));
        let io_path = dir.path().join(format!("io{i}.safetensors"));
        let (report, ok) = twin(&[
            "export",
            "--out",
            ckpt.to_str().unwrap(),
            "--io",
            io_path.to_str().unwrap(),
            "--config",
            config,
            "--seed",
            &i.to_string(),
        ]);
        assert!(ok, "export failed: {report}");
        let loaded = checkpoint::load(&ckpt, Device::Cpu).expect("skelseg loads the twin's file");
        let io: Vec<(String, Tensor)> = Tensor::read_safetensors(&io_path).expect("read io");
        let mask = get(&io, "mask").shallow_clone();
        let mut compared = 0;
        for (name, got) in skelseg_outputs(&loaded.model, &io) {
            let want = get(&io, &name);
            assert_eq!(got.size(), want.size(), "{config}: {name}");
            // Padded frames' logits are unspecified; compare valid frames only.
            let valid = match got.dim() {
                3 if name != "feats" => mask.unsqueeze(1).expand_as(&got),
                2 => mask.shallow_clone(),
                _ => got.ones_like(),
            };
            let diff = ((&got - want).abs() * &valid).max().double_value(&[]);
            let scale = (want.abs() * &valid).max().double_value(&[]).max(1.0);
            assert!(
                diff <= TOLERANCE * scale,
                "{config}: {name} differs by {diff} at scale {scale}"
            );
            compared += 1;
        }
        assert_eq!(compared, 1 + 2 * loaded.meta.model.query_scales);
    }
}

/// Runs the skelseg binary; panics with its stderr when it fails.
fn skelseg(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_skelseg")).args(args).output().expect("skelseg runs");
    assert!(out.status.success(), "skelseg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the torch venv (make setup)"]
fn twin_trainer_model_is_calibrated_and_served_by_skelseg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_owned();
    let (data, export, pack, ckpt) =
        (path("data"), path("export"), path("inputs.pack"), path("trained.safetensors"));
    skelseg(&["synth", "--out", &data, "--sequences", "6", "--seed", "3", "--actions", "4"]);
    // The inputs exactly as `skelseg train` would see them, for a small fresh model.
    skelseg(&[
        "train",
        "--data",
        &data,
        "--from-scratch",
        "--dim",
        "16",
        "--action-layers",
        "1",
        "--boundary-layers",
        "1",
        "--out",
        &ckpt,
        "--export-inputs",
        &export,
    ]);
    let trainer = |args: &[&str]| -> Value {
        let out = Command::new(python())
            .arg(root().join("python/skelseg_train.py"))
            .args(args)
            .output()
            .expect("the trainer runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON object")
    };
    // Packing for transport: rel and motion derived again from millimetre positions.
    let packed = trainer(&["pack", &export, &pack]);
    assert_eq!(packed["motion_misfits"], 0, "{packed}");
    for (modality, bound) in [("abs", 0.00051), ("rel", 0.0011), ("motion", 0.0011)] {
        let err = packed["max_abs_error_m"][modality].as_f64().expect("error figure");
        assert!(err <= bound, "{modality}: packing error {err} m");
    }
    let report =
        trainer(&["train", &pack, "--epochs", "2", "--batch", "2", "--out", &ckpt, "--json"]);
    assert_eq!(report["epochs"], 2, "{report}");
    assert!(report["best"]["val"]["f1_50"].is_number(), "{report}");
    // skelseg takes the checkpoint as it is: calibration on its own validation recordings (the
    // export's carve), then evaluation.
    let calib: Value = serde_json::from_str(
        skelseg(&[
            "calibrate",
            "--model",
            &ckpt,
            "--data",
            &data,
            "--own-validation",
            "--threshold",
            "--json",
        ])
        .trim(),
    )
    .expect("calibrate JSON");
    let chosen = calib["threshold"]["chosen"].as_f64().expect("a chosen threshold");
    let loaded = checkpoint::load(Path::new(&ckpt), Device::Cpu).expect("skelseg loads it");
    assert!((loaded.meta.model.boundary_threshold - chosen).abs() < 1e-6);
    assert_eq!(loaded.meta.model.hidden, 16);
    assert_eq!(
        loaded.meta.data["val_recordings"].as_array().map(Vec::len),
        Some(calib["recordings"].as_u64().expect("count") as usize)
    );
    let scores: Value = serde_json::from_str(
        skelseg(&["eval", "--model", &ckpt, "--data", &data, "--json"]).trim(),
    )
    .expect("eval JSON");
    assert!(scores["f1_50"].is_number(), "{scores}");
}
