//! The README tutorial "Train on your own actions", command by command, on a small generated
//! dataset in a non-Kinect layout: `.ndjson` in MediaPipe 33 at 15 fps with time-based CSV
//! labels (what `skelseg synth --ndjson mediapipe_33 --fps 15` writes). Training runs one epoch
//! here (the tutorial's defaults choose more); every other command runs as the README shows it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn skelseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skelseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = skelseg(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let stdout = ok(args);
    assert_eq!(stdout.lines().count(), 1, "--json prints one line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn train_on_your_own_actions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("my-actions");
    let model = tmp.path().join("my-model.safetensors");

    // 1. Record from a sensor; the simulator stands in for one.
    let raw = tmp.path().join("raw");
    let rec = json(&["record", "--source", "sim", "--seconds", "2", "--out", s(&raw), "--json"]);
    let written = rec["frames"].as_u64().unwrap();
    assert!(written >= 30, "{rec}");
    let file = rec["streams"][0]["file"].as_str().unwrap();
    let back = skelseg::io::ndjson::read_recording(Path::new(file)).unwrap();
    assert_eq!(back.frames.len() as u64, written);
    assert_eq!(back.fps, 30.0);

    // The dataset of the tutorial: 16 short recordings of 3 actions, MediaPipe 33 at 15 fps,
    // labels as `label,start_s,end_s`, splits train/test.
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--sequences",
        "16",
        "--seed",
        "4",
        "--ndjson",
        "mediapipe_33",
        "--fps",
        "15",
        "--actions",
        "3",
        "--per-recording",
        "1..2",
        "--second-person",
        "0",
    ]);
    std::fs::remove_file(data.join("splits/val.txt")).unwrap();
    let first_label = std::fs::read_to_string(data.join("label/synth_0000.csv")).unwrap();
    assert!(first_label.starts_with("label,start_s,end_s\n"), "{first_label}");

    // 2. Look at a recording with its labels.
    let rrd = tmp.path().join("check.rrd");
    ok(&[
        "view",
        s(&data.join("skeleton/synth_0000.ndjson")),
        "--labels",
        s(&data.join("label/synth_0000.csv")),
        "--viz",
        &format!("save:{}", s(&rrd)),
    ]);
    assert!(std::fs::metadata(&rrd).unwrap().len() > 10_000);

    // 3. Check the folder: classes from the label names, layout and rate found, no problem.
    let check = json(&["check", "--data", s(&data), "--json"]);
    assert_eq!(check["recordings"], 16);
    assert_eq!(check["layouts"]["mediapipe_33"], 16, "{check}");
    assert_eq!(check["fps"]["15"], 16, "{check}");
    assert_eq!(check["label_formats"]["time_intervals"], 16, "{check}");
    let names: Vec<&str> =
        check["classes"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["background", "clap", "wave_left", "wave_right"]);
    assert!(check["classes"][1]["instances"].as_u64().unwrap() > 0);
    assert_eq!(check["problems"].as_array().unwrap().len(), 0, "{check}");

    // With a mapping.txt fixing the classes, a typo in a label is reported where it is, with
    // the name it probably meant.
    let broken = tmp.path().join("broken");
    copy_dir(&data, &broken);
    std::fs::write(broken.join("mapping.txt"), "0 background\n1 clap\n2 wave_left\n3 wave_right\n")
        .unwrap();
    let label = broken.join("label/synth_0003.csv");
    let text = std::fs::read_to_string(&label).unwrap();
    let first_name = text.lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    std::fs::write(&label, text.replacen(&first_name, &format!("{first_name}x"), 1)).unwrap();
    let out = skelseg(&["check", "--data", s(&broken), "--json"]);
    assert!(!out.status.success(), "a problem fails the check");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = report["problems"][0].as_str().unwrap();
    assert!(problem.contains("synth_0003.csv:2:"), "{problem}");
    assert!(problem.contains(&format!("did you mean `{first_name}`")), "{problem}");

    // Without a mapping.txt the same typo makes a class of its own: the check passes but warns
    // that the two names look like one class spelt two ways.
    let typo = tmp.path().join("typo");
    copy_dir(&data, &typo);
    std::fs::write(
        typo.join("label/synth_0003.csv"),
        text.replacen(&first_name, &format!("{first_name}x"), 1),
    )
    .unwrap();
    let report = json(&["check", "--data", s(&typo), "--json"]);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains(&format!("`{first_name}` ("))
            && warning.contains(&format!("`{first_name}x` (1 instances)")),
        "{warning}"
    );
    assert_eq!(check["warnings"].as_array().unwrap().len(), 0, "{check}");

    // 4. Train (one epoch here), at the model's 30 fps from 15 fps recordings. By default
    //    training starts from the bundled PKU-MMD model and tunes its backbone too.
    let train = json(&[
        "train",
        "--data",
        s(&data),
        "--split",
        "train",
        "--out",
        s(&model),
        "--epochs",
        "1",
        "--json",
    ]);
    assert_eq!(train["epochs"], 1, "{train}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(meta["fps"], 30.0);
    assert_eq!(meta["layout"], "kinect_v2_25");
    assert_eq!(meta["data"]["source_layouts"][0], "mediapipe_33");
    assert_eq!(meta["data"]["source_fps"][0], 15.0);
    assert_eq!(meta["classes"][3], "wave_right");
    assert_eq!(meta["data"]["init"], "bundled:pku-mmd", "{meta}");
    assert_eq!(meta["data"]["freeze_backbone"], false, "{meta}");
    // 12 training recordings (< 100): every fifth validates (a tenth would hold out one).
    assert_eq!(meta["data"]["val_recordings"], serde_json::json!(["synth_0002", "synth_0007"]));
    let pku = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/pku-mmd.safetensors");
    let bundled = skelseg::model::checkpoint::load(&pku, tch::Device::Cpu).unwrap();
    let trained = skelseg::model::checkpoint::load(&model, tch::Device::Cpu).unwrap();
    assert!(
        !bundled.vs.variables()["dsmi.collapse.weight"]
            .equal(&trained.vs.variables()["dsmi.collapse.weight"]),
        "the default fine-tune trains the bundled backbone"
    );

    // --from-scratch trains a fresh model instead, and says so in the checkpoint.
    let scratch = tmp.path().join("scratch.safetensors");
    let report = json(&[
        "train",
        "--data",
        s(&data),
        "--split",
        "train",
        "--from-scratch",
        "--out",
        s(&scratch),
        "--epochs",
        "1",
        "--json",
    ]);
    assert_eq!(report["epochs"], 1, "{report}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(meta["data"]["init"], Value::Null, "{meta}");
    assert_eq!(meta["data"]["freeze_backbone"], false, "{meta}");

    // 5. Evaluate on the test split.
    let eval =
        json(&["eval", "--model", s(&model), "--data", s(&data), "--split", "test", "--json"]);
    let tests = std::fs::read_to_string(data.join("splits/test.txt")).unwrap().lines().count();
    assert_eq!(eval["videos"], tests as u64, "{eval}");
    assert!(eval["f1_50"].as_f64().is_some_and(|f| (0.0..=100.0).contains(&f)));
    // Predictions written per frame come out at the recordings' own 15 fps, not the model's 30.
    let pred = tmp.path().join("pred");
    let args = ["--split", "test", "--write-pred", s(&pred), "--json"];
    json(&[&["eval", "--model", s(&model), "--data", s(&data)][..], &args].concat());
    let test_names = std::fs::read_to_string(data.join("splits/test.txt")).unwrap();
    for name in test_names.lines() {
        let rec = data.join(format!("skeleton/{name}.ndjson"));
        let frames = skelseg::io::ndjson::read_recording(&rec).unwrap().frames.len();
        let written = std::fs::read_to_string(pred.join(format!("{name}.txt"))).unwrap();
        assert_eq!(written.lines().count(), frames, "{name}: one predicted label per 15 fps frame");
    }

    // 6. Stream a 15 fps recording with the new model: it is resampled to 30 fps, and the
    //    committed segments tile the resampled stream.
    let file = data.join("skeleton/synth_0015.ndjson");
    let frames_15 = skelseg::io::ndjson::read_recording(&file).unwrap().frames.len();
    let stream =
        ok(&["stream", "--model", s(&model), "--source", &format!("file:{}", s(&file)), "--json"]);
    let ends: Vec<Value> = stream
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "segment_ended")
        .collect();
    assert!(!ends.is_empty(), "{stream}");
    let last = ends.last().unwrap();
    let end_frame = last["end_frame"].as_u64().unwrap() as usize;
    assert_eq!(end_frame, 2 * (frames_15 - 1), "{last}");

    // Fine-tuning from the bundled PKU-MMD model, backbone frozen.
    let tuned = tmp.path().join("tuned.safetensors");
    let report = json(&[
        "train",
        "--data",
        s(&data),
        "--split",
        "train",
        "--init",
        s(&pku),
        "--freeze-backbone",
        "--out",
        s(&tuned),
        "--epochs",
        "1",
        "--json",
    ]);
    assert_eq!(report["epochs"], 1, "{report}");
    let base = skelseg::model::checkpoint::load(&pku, tch::Device::Cpu).unwrap();
    let after = skelseg::model::checkpoint::load(&tuned, tch::Device::Cpu).unwrap();
    let (a, b) = (base.vs.variables(), after.vs.variables());
    let same = |name: &str| a[name].equal(&b[name]);
    assert!(same("dsmi.collapse.weight"), "the backbone changed under --freeze-backbone");
    let changed = b.keys().filter(|k| k.starts_with("mfai.queries") && a.contains_key(*k));
    assert!(changed.clone().any(|k| a[k].size() == b[k].size() && !same(k)), "the head trained");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let path = entry.expect("a folder entry").path();
        let target = to.join(path.file_name().expect("a file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}
