//! The `skelseg` binary end to end: every command's JSON report, located errors, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shared(rel: &str) -> PathBuf {
    root().join("../shared/data").join(rel)
}

fn skelseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skelseg")).args(args).output().expect("the binary runs")
}

/// Runs a command that must succeed and print one JSON object.
fn json(args: &[&str]) -> Value {
    let out = skelseg(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "--json prints exactly one line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Runs a command that must fail; returns its stderr.
fn failure(args: &[&str]) -> String {
    let out = skelseg(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn info_reports_the_real_pku_file() {
    let file = shared("pku-mmd/A10N08-L.txt");
    let v = json(&["info", file.to_str().unwrap(), "--json"]);
    assert_eq!(v["frames"], 1040);
    assert_eq!(v["frames_with_bodies"][2], 728);
    assert_eq!(v["layout"], "kinect_v2_25");
    assert_eq!(v["labels"], Value::Null);
}

#[test]
#[ignore = "needs ../shared/data (real datasets, not redistributable)"]
fn info_reports_utkinect_labels_mapped_from_kinect_v1() {
    let file = shared("utkinect-action3d/joints/joints_s01_e01.txt");
    let v = json(&["info", file.to_str().unwrap(), "--json"]);
    assert_eq!(v["layout"], "kinect_v1_20");
    assert_eq!(v["labels"].as_array().map(Vec::len), Some(10));
}

#[test]
fn synth_is_deterministic_and_readable_by_info() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let v = json(&[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--sequences",
            "3",
            "--seed",
            "9",
            "--json",
        ]);
        assert_eq!(v["sequences"], 3);
        assert_eq!(v["classes"], 15);
    }
    let name = "skeleton/synth_0000.txt";
    assert_eq!(std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
    let v = json(&["info", a.join(name).to_str().unwrap(), "--json"]);
    assert!(v["frames"].as_u64().unwrap() > 300);
    assert!(!v["labels"].as_array().unwrap().is_empty());
}

#[test]
fn metrics_reproduces_the_reference_vector() {
    // architecture.md §1.5 ex1: gt A A B B B C C, pred A B B B C C C (no background).
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::write(gt.join("v.txt"), "A\nA\nB\nB\nB\nC\nC\n").unwrap();
    std::fs::write(pred.join("v.txt"), "A\nB\nB\nB\nC\nC\nC\n").unwrap();
    let v = json(&[
        "metrics",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--json",
    ]);
    for key in ["acc", "edit", "f1_10", "f1_25", "f1_50", "videos", "frames"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert!((v["acc"].as_f64().unwrap() - 100.0 * 5.0 / 7.0).abs() < 1e-9);
    assert_eq!(v["edit"], 100.0);
    assert_eq!(v["videos"], 1);
    assert_eq!(v["frames"], 7);
}

#[test]
fn malformed_input_fails_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    let good_line = vec!["0.5"; 150].join(" ");
    std::fs::write(&bad, format!("{good_line}\n{}\n", vec!["0.5"; 149].join(" "))).unwrap();
    let err = failure(&["info", bad.to_str().unwrap()]);
    assert!(err.contains("bad.txt:2") && err.contains("149"), "{err}");
    let err = failure(&["info", "/nonexistent/x.skeleton"]);
    assert!(err.contains("/nonexistent/x.skeleton"), "{err}");
    let err = failure(&["stream", "--source", "carrier-pigeon:1"]);
    assert!(err.contains("carrier-pigeon"), "{err}");
}

#[test]
fn info_describes_the_bundled_model() {
    let model = root().join("fixtures/models/synth.safetensors");
    let v = json(&["info", model.to_str().unwrap(), "--json"]);
    // Exactly: a changed architecture or config shows up here. The weights file holds a few
    // more values (frozen buffers), so the trainable count is at most its total.
    assert_eq!(v["params"].as_i64(), Some(1_301_911));
    let bytes = std::fs::read(&model).unwrap();
    let header =
        skelseg::model::checkpoint::parse_safetensors_header(&bytes, bytes.len() as u64, &model)
            .unwrap();
    let stored: usize = header.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    assert_eq!(stored, 1_303_831);
    assert_eq!(v["meta"]["classes"][0], "background");
    assert!(v["dsmi_flops_per_frame"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_checkpoint_that_does_not_match_its_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/models/synth.safetensors");
    let copy = dir.path().join("m.safetensors");
    std::fs::copy(&model, &copy).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_extension("json")).unwrap())
            .unwrap();
    let mut meta = meta;
    meta["model"]["hidden"] = Value::from(32);
    std::fs::write(copy.with_extension("json"), meta.to_string()).unwrap();
    let err = failure(&["info", copy.to_str().unwrap()]);
    assert!(err.contains("m.safetensors") && err.contains("shape"), "{err}");
}

#[test]
fn eval_and_stream_report_json_on_the_bundled_sequence() {
    let data = root().join("fixtures/synth");
    let v = json(&["eval", "--data", data.to_str().unwrap(), "--online", "--json"]);
    for key in ["acc", "edit", "f1_10", "f1_25", "f1_50", "params"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["acc", "edit", "f1_50", "delay_mean_frames", "delay_p95_frames", "overseg_ratio"] {
        assert!(v["online"].get(key).is_some(), "missing online.{key}: {v}");
    }
    // A regression guard for the bundled model: it scores 88.7 Acc offline on these four
    // sequences (BENCHMARKS.md); a broken model, loader or pipeline falls far below 80.
    assert!(v["offline"]["acc"].as_f64().unwrap() > 80.0, "{v}");
    // The diagnostic: the stream's own frames refined afterwards score like the stream's
    // segments or better here, and far above chance.
    let refined = &v["online"]["finalised_frames_refined"];
    assert!(refined["acc"].as_f64().unwrap() > 80.0, "{v}");
    // The majority rule runs from the command line and covers the same frames.
    let majority = json(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--online",
        "--rule",
        "majority",
        "--json",
    ]);
    assert!(majority["online"]["acc"].as_f64().unwrap() > 80.0, "{majority}");
    assert_eq!(majority["online"]["frames"], v["online"]["frames"]);

    let file = data.join("skeleton/synth_0000.txt");
    let spec = format!("file:{}", file.display());
    let out = skelseg(&["stream", "--source", &spec, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ended: Vec<&Value> = events.iter().filter(|e| e["type"] == "segment_ended").collect();
    assert!(ended.len() >= 3, "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "stream_ended");
    // The reason is an enum in the library; its JSON is the string it always was.
    assert_eq!(events.last().unwrap()["reason"], "Closed");
    // Segments tile the recording: contiguous, from frame 0 to its last frame.
    assert_eq!(ended[0]["start_frame"], 0);
    for pair in ended.windows(2) {
        assert_eq!(pair[1]["start_frame"].as_u64(), pair[0]["end_frame"].as_u64().map(|e| e + 1));
    }
    let frames = json(&["info", file.to_str().unwrap(), "--json"])["frames"].as_u64().unwrap();
    assert_eq!(ended.last().unwrap()["end_frame"].as_u64(), Some(frames - 1));
}

/// Issue 8, defect 7: the bundled model's softmax over sigmoid-trained logits is miscalibrated;
/// `calibrate` fits a temperature on validation data, lowers the calibration error there and
/// records the temperature in the checkpoint, where inference picks it up.
#[test]
fn calibrate_fits_a_temperature_and_writes_it_into_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let val = dir.path().join("val");
    json(&["synth", "--out", val.to_str().unwrap(), "--sequences", "3", "--seed", "5", "--json"]);
    let model = root().join("fixtures/models/synth.safetensors");
    let copy = dir.path().join("m.safetensors");
    std::fs::copy(&model, &copy).unwrap();
    std::fs::copy(model.with_extension("json"), copy.with_extension("json")).unwrap();
    let fit = json(&[
        "calibrate",
        "--model",
        copy.to_str().unwrap(),
        "--data",
        val.to_str().unwrap(),
        "--json",
    ]);
    let t = fit["temperature"].as_f64().unwrap();
    assert!((t - 1.0).abs() > 0.05, "a fitted temperature, found {t}");
    assert!(fit["nll_after"].as_f64() < fit["nll_before"].as_f64(), "{fit}");
    assert!(fit["ece_after"].as_f64() < fit["ece_before"].as_f64(), "{fit}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(copy.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(meta["model"]["temperature"].as_f64(), Some(t));
    assert_eq!(meta["data"]["calibration"]["fit"]["temperature"].as_f64(), Some(t));
    // The calibrated checkpoint still loads and evaluates to the same labels.
    let before = json(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        val.to_str().unwrap(),
        "--json",
    ]);
    let after = json(&[
        "eval",
        "--model",
        copy.to_str().unwrap(),
        "--data",
        val.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(before["acc"], after["acc"], "a temperature changes no argmax");
}

/// Issue 12: an installed binary finds its bundled model and sequence without the checkout that
/// built it. Run from an empty folder, with a fresh cache, `demo` writes the embedded files into
/// the cache and segments the bundled sequence from there.
#[test]
fn demo_runs_from_an_empty_folder_with_the_embedded_model() {
    let dir = tempfile::tempdir().unwrap();
    let (cwd, cache) = (dir.path().join("empty"), dir.path().join("cache"));
    std::fs::create_dir(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .arg("demo")
        .current_dir(&cwd)
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bundled = cache.join(concat!("skelseg/bundled-", env!("CARGO_PKG_VERSION")));
    let model = bundled.join("models/synth.safetensors");
    assert!(stdout.starts_with(&format!("model {}\n", model.display())), "{stdout}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(root().join("fixtures/models/synth.safetensors")).unwrap(),
        "the embedded weights are the bundled ones"
    );
    // The bundled sequence has 771 frames and its ground truth is read from beside it.
    assert!(stdout.contains("(771 frames"), "{stdout}");
    let scores: Vec<&str> = stdout.lines().last().unwrap_or_default().split_whitespace().collect();
    assert_eq!(scores[scores.len().saturating_sub(2)..], ["1", "771"], "videos, frames: {stdout}");
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing written to the working folder"
    );
}

#[test]
fn calibrate_stream_records_the_setting_that_eval_then_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/models/synth.safetensors");
    let copy = dir.path().join("m.safetensors");
    std::fs::copy(&model, &copy).unwrap();
    std::fs::copy(model.with_extension("json"), copy.with_extension("json")).unwrap();
    let data = root().join("fixtures/synth");
    let (m, d) = (copy.to_str().unwrap(), data.to_str().unwrap());
    let v = json(&["calibrate", "--model", m, "--data", d, "--stream", "--json"]);
    let stream = &v["stream"];
    let candidates = stream["candidates"].as_array().unwrap();
    // 3 θ × (3 candidate-rule factors + 2 majority factors × 2 peakless factors).
    assert_eq!(candidates.len(), 21, "{v}");
    let chosen = &candidates[stream["chosen"].as_u64().unwrap() as usize];
    let limit = stream["max_delay_p95_frames"].as_f64().unwrap();
    assert!(chosen["delay_p95_frames"].as_f64().unwrap() <= limit, "{v}");
    for c in candidates.iter().filter(|c| c["delay_p95_frames"].as_f64().unwrap() <= limit) {
        assert!(c["f1_50"].as_f64().unwrap() <= chosen["f1_50"].as_f64().unwrap(), "{v}");
    }
    // The checkpoint now carries the choice, and streaming with it gives the chosen figure.
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(copy.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(meta["stream"]["rule"], chosen["rule"]);
    let theta = meta["stream"]["min_mean_prob"].as_f64().unwrap();
    assert!((theta - chosen["min_mean_prob"].as_f64().unwrap()).abs() < 1e-6, "{meta}");
    let e = json(&["eval", "--model", m, "--data", d, "--online", "--json"]);
    let online = e["online"]["f1_50"].as_f64().unwrap();
    assert!((online - chosen["f1_50"].as_f64().unwrap()).abs() < 1e-9, "{e} vs {chosen}");
    // --max-p95-delay needs --stream, and --stream writes, so it refuses --dry-run.
    failure(&["calibrate", "--model", m, "--data", d, "--max-p95-delay", "30"]);
    failure(&["calibrate", "--model", m, "--data", d, "--stream", "--dry-run"]);
}

#[test]
fn bench_reports_every_figure_as_median_and_spread() {
    let v = json(&[
        "--threads",
        "1",
        "bench",
        "--repeats",
        "1",
        "--max-streams",
        "0",
        "--window-threads",
        "1",
        "--profile",
        "--json",
    ]);
    let median = |key: &str| {
        let f = &v[key];
        let (m, lo, hi) = (f["median"].as_f64(), f["min"].as_f64(), f["max"].as_f64());
        let m = m.unwrap_or_else(|| panic!("{key} has a median: {f}"));
        assert!(lo <= Some(m) && Some(m) <= hi, "{key}: min ≤ median ≤ max: {f}");
        assert_eq!(f["runs"].as_array().map(Vec::len), Some(1), "{key}: one run per repeat");
        m
    };
    for key in [
        "matmul_peak_gmacs",
        "dsmi_us_per_frame",
        "mfai_ms_per_window",
        "full_ms_per_window",
        "mfai_final_ms_per_window",
        "replay_speed_x",
        "replay_batched_speed_x",
    ] {
        assert!(median(key) > 0.0, "{key} > 0");
    }
    assert_eq!(v["dsmi_us_per_frame_batch"].as_array().map(Vec::len), Some(5));
    let fraction = median("mfai_peak_fraction");
    assert!(fraction > 0.0 && fraction.is_finite(), "MFAI's share of the peak: {fraction}");
    // The engine computes one hop's columns from cached features; the baseline, the whole model.
    assert!(median("speedup_vs_baseline") > 1.0, "{}", v["speedup_vs_baseline"]);
    assert!(
        median("streaming_ms_per_frame") < median("baseline_same_columns_ms_per_frame"),
        "the feature cache saves DSMI over the window"
    );
    let blocks: Vec<&str> = v["blocks_ms"]
        .as_array()
        .expect("--profile lists blocks")
        .iter()
        .filter_map(|b| b[0].as_str())
        .collect();
    assert!(blocks.iter().any(|b| b.starts_with("mfai.")), "{blocks:?}");
    assert!(blocks.iter().any(|b| b.starts_with("dsmi.")), "{blocks:?}");
    // Not asked for: no ramp, no training, no precision check, no threaded replay.
    assert_eq!(v["ramp"].as_array().map(Vec::len), Some(0));
    for key in ["train_frames_per_sec", "precision_check", "replay_batched_threads_speed_x"] {
        assert!(v[key].is_null(), "{key}: {}", v[key]);
    }
}

#[test]
fn bench_refuses_training_in_reduced_precision_before_measuring() {
    let err = failure(&["bench", "--train", "--precision", "bf16", "--json"]);
    assert!(err.contains("--train times float32 training only"), "{err}");
}

#[test]
fn train_and_calibrate_refuse_a_report_redirected_onto_the_checkpoint_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("m.safetensors");
    let sidecar = dir.path().join("m.json");
    let data = root().join("fixtures/synth");
    let run = |args: &[&str]| {
        // As `skelseg … --json > m.json` in a shell: stdout is the metadata file.
        let stdout = std::fs::File::create(&sidecar).unwrap();
        Command::new(env!("CARGO_BIN_EXE_skelseg")).args(args).stdout(stdout).output().unwrap()
    };
    let (w, d) = (weights.to_str().unwrap(), data.to_str().unwrap());
    for args in [
        vec!["train", "--data", d, "--out", w, "--epochs", "1", "--json"],
        vec!["calibrate", "--model", w, "--data", d, "--json"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} should refuse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("stdout is redirected to") && err.contains("m.report.json"), "{err}");
        assert!(!weights.exists(), "{args:?} wrote {w}");
    }
    // Elsewhere, the check does not get in the way: `calibrate` goes on to load the model
    // (absent here) and says so.
    let err = failure(&["calibrate", "--model", w, "--data", d, "--json"]);
    assert!(!err.contains("stdout is redirected"), "{err}");
}
