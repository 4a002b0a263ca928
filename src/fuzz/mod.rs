//! Fuzzing on stable Rust: every parser of untrusted input is fed mutated copies of a seed corpus
//! (the committed `fixtures/fuzz/TARGET/` files plus small pieces of the repository's fixtures),
//! and a panic is a finding. `examples/fuzz.rs` runs long campaigns; `tests/fuzz.rs` runs a few
//! thousand inputs per target in the test suite.
//!
//! Not part of the stable API: the module exists so the harness can reach crate-internal
//! decoders (the OSC frame assembler) that a user never calls directly.

mod mutate;
mod seeds;
mod targets;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use mutate::{MAX_INPUT_BYTES, mutate};
pub use seeds::{deep_bundle, seeds};
pub use targets::{Outcome, TARGETS, Target, target};

/// The first panic of a target.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Which job ran it (`--jobs`; 0 with one job).
    pub job: usize,
    /// Which input (0-based, counted in its job) panicked.
    pub iteration: u64,
    /// The panic message.
    pub message: String,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
}

/// What a campaign did to one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: String,
    /// Inputs run (seeds unmutated, then mutated ones).
    pub inputs: u64,
    /// Inputs the parser accepted.
    pub accepted: u64,
    /// Inputs it rejected with an error.
    pub rejected: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Time spent on this target, seconds (summed over jobs).
    pub secs: f64,
    /// Throughput: inputs per second of this target's own running time (summed over jobs, so
    /// with N jobs on N free cores it is the rate N threads reach together).
    pub inputs_per_sec: f64,
    /// Seed-corpus entries.
    pub corpus: usize,
    /// The first panic, if any.
    pub first_panic: Option<Finding>,
}

thread_local! {
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records panics of fuzzed inputs instead of printing them,
/// and leaves every other panic to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_FUZZ.with(Cell::get) {
                let location = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{payload}{location}")));
            } else {
                previous(info);
            }
        }));
    });
}

impl TargetReport {
    /// The figures of one target run as several jobs, added up: counts and seconds summed,
    /// rates summed (each job's rate is of its own running time), the first panic of the
    /// lowest job. `None` for no reports.
    pub fn merge<'a>(reports: impl IntoIterator<Item = &'a TargetReport>) -> Option<TargetReport> {
        let mut reports = reports.into_iter();
        let mut total = reports.next()?.clone();
        for r in reports {
            total.inputs += r.inputs;
            total.accepted += r.accepted;
            total.rejected += r.rejected;
            total.panics += r.panics;
            total.secs += r.secs;
            total.inputs_per_sec += r.inputs_per_sec;
            if total.first_panic.is_none() {
                total.first_panic.clone_from(&r.first_panic);
            }
        }
        Some(total)
    }
}

/// Runs `input` through `target`, turning a panic into `Err(message)`.
pub fn run_one(target: &Target, input: &[u8]) -> Result<Outcome, String> {
    install_panic_hook();
    IN_FUZZ.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    IN_FUZZ.with(|f| f.set(false));
    result.map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into()))
}

/// The seed corpus of `target`: the files of `fixtures/fuzz/NAME/` and pieces of the
/// repository's own fixtures (label files, mapping, splits, checkpoint JSON and safetensors
/// headers, the first lines of skeleton files). `fixtures` is the repository's `fixtures/`.
pub fn corpus(target: &Target, fixtures: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut add_dir = |dir: PathBuf, transform: &dyn Fn(Vec<u8>) -> Vec<u8>| {
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.is_file()) {
            if let Ok(bytes) = std::fs::read(path) {
                out.push(transform(bytes));
            }
        }
    };
    let same = |b: Vec<u8>| b;
    add_dir(fixtures.join("fuzz").join(target.name), &same);
    let head = |b: Vec<u8>| -> Vec<u8> {
        let cut = b
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b'\n')
            .nth(3)
            .map_or(b.len(), |(i, _)| i + 1);
        b[..cut].to_vec()
    };
    let json_only = |dir: PathBuf| -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    };
    match target.name {
        "pku-skeleton" => add_dir(fixtures.join("synth/skeleton"), &head),
        "pku-labels" => add_dir(fixtures.join("synth/label"), &same),
        "mapping" => {
            if let Ok(b) = std::fs::read(fixtures.join("synth/mapping.txt")) {
                out.push(b);
            }
        }
        "split" => {
            add_dir(fixtures.join("synth/splits"), &same);
            add_dir(fixtures.join("pku-mmd"), &same);
        }
        "checkpoint-json" => out.extend(json_only(fixtures.join("models"))),
        "safetensors" => {
            let Ok(entries) = std::fs::read_dir(fixtures.join("models")) else { return out };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "safetensors")) {
                if let Some(small) = std::fs::read(p).ok().and_then(|b| smallest_tensors(&b, 8)) {
                    out.push(small);
                }
            }
        }
        _ => {}
    }
    out
}

/// A valid safetensors file holding the `n` smallest tensors of the checkpoint `bytes` (real
/// names, dtypes and shapes; zero data, offsets packed from 0). The whole file would cost
/// megabytes per input, and its 40 KB header alone about ten times the parse time of the rest
/// of the corpus, for JSON the small entries exercise as well.
fn smallest_tensors(bytes: &[u8], n: usize) -> Option<Vec<u8>> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8 + len)?).ok()?;
    let size = |v: &serde_json::Value| {
        let offsets = v.get("data_offsets")?.as_array()?;
        Some(offsets.get(1)?.as_u64()? - offsets.first()?.as_u64()?)
    };
    let mut tensors: Vec<(&String, &serde_json::Value, u64)> = header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(name, v)| Some((name, v, size(v)?)))
        .collect();
    tensors.sort_by_key(|&(name, _, size)| (size, name));
    let mut small = serde_json::Map::new();
    let mut offset = 0;
    for (name, v, size) in tensors.into_iter().take(n) {
        let mut v = v.clone();
        v["data_offsets"] = serde_json::json!([offset, offset + size]);
        small.insert(name.clone(), v);
        offset += size;
    }
    if let Some(meta) = header.get("__metadata__") {
        small.insert("__metadata__".into(), meta.clone());
    }
    let text = serde_json::to_vec(&small).ok()?;
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.resize(out.len() + usize::try_from(offset).ok()?, 0);
    Some(out)
}

/// A campaign over one target, run in chunks so that a long campaign can share its time
/// between targets and report at any moment.
#[derive(Debug)]
pub struct TargetRun {
    target: &'static Target,
    corpus: Vec<Vec<u8>>,
    rng: ChaCha8Rng,
    job: usize,
    input: Vec<u8>,
    report: TargetReport,
}

impl TargetRun {
    /// A run of `target` over `corpus` with RNG `seed`. Each target draws from its own stream,
    /// so `--target X` replays exactly what `--target all` ran on X.
    pub fn new(target: &'static Target, corpus: Vec<Vec<u8>>, seed: u64) -> Self {
        Self::job(target, corpus, seed, 0)
    }

    /// Job `job` of a campaign split into parallel jobs: job 0 is [`TargetRun::new`] (the
    /// corpus as it is first, then mutations); every other job draws only mutations, from its
    /// own RNG stream derived from `seed`, the target and the job, so a campaign with the same
    /// seed and job count replays exactly.
    pub fn job(target: &'static Target, corpus: Vec<Vec<u8>>, seed: u64, job: usize) -> Self {
        let name_hash = target.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let report = TargetReport {
            target: target.name.into(),
            inputs: 0,
            accepted: 0,
            rejected: 0,
            panics: 0,
            secs: 0.0,
            inputs_per_sec: 0.0,
            corpus: corpus.len(),
            first_panic: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ name_hash);
        if job > 0 {
            rng.set_stream(job as u64);
        }
        TargetRun { target, corpus, rng, job, input: Vec::new(), report }
    }

    /// Runs `n` more inputs: every corpus entry once as it is, then mutated copies. The first
    /// failing input is saved under `failures_dir`.
    pub fn run(&mut self, n: u64, failures_dir: Option<&Path>) {
        let started = Instant::now();
        let empty: Vec<u8> = Vec::new();
        for _ in 0..n {
            let i = self.report.inputs;
            let corpus = &self.corpus;
            let rng = &mut self.rng;
            let input = &mut self.input;
            input.clear();
            let unmutated = if self.job == 0 { usize::try_from(i).ok() } else { None };
            match unmutated.and_then(|i| corpus.get(i)) {
                Some(seed_input) => input.extend_from_slice(seed_input),
                None => {
                    let pick = |rng: &mut ChaCha8Rng| {
                        if corpus.is_empty() {
                            &empty
                        } else {
                            &corpus[rng.gen_range(0..corpus.len())]
                        }
                    };
                    input.extend_from_slice(pick(rng));
                    let other = pick(rng);
                    mutate(rng, input, other);
                }
            }
            match run_one(self.target, input) {
                Ok(Outcome::Accepted) => self.report.accepted += 1,
                Ok(Outcome::Rejected) => self.report.rejected += 1,
                Err(message) => {
                    self.report.panics += 1;
                    if self.report.first_panic.is_none() {
                        let saved = failures_dir.and_then(|dir| {
                            std::fs::create_dir_all(dir).ok()?;
                            let name = match self.job {
                                0 => format!("{}-{i}.bin", self.target.name),
                                j => format!("{}-job{j}-{i}.bin", self.target.name),
                            };
                            let path = dir.join(name);
                            std::fs::write(&path, &*input).ok()?;
                            Some(path)
                        });
                        self.report.first_panic =
                            Some(Finding { job: self.job, iteration: i, message, saved });
                    }
                }
            }
            self.report.inputs += 1;
        }
        self.report.secs += started.elapsed().as_secs_f64();
        self.report.inputs_per_sec = self.report.inputs as f64 / self.report.secs.max(1e-9);
    }

    /// The figures so far.
    pub fn report(&self) -> &TargetReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_inputs(job: usize, n: usize) -> Vec<Vec<u8>> {
        let t = target("mapping").expect("mapping target");
        let corpus = vec![b"0 a\n1 b\n".to_vec(), b"0 x\n".to_vec()];
        let mut run = TargetRun::job(t, corpus, 7, job);
        (0..n)
            .map(|_| {
                run.run(1, None);
                run.input.clone()
            })
            .collect()
    }

    #[test]
    fn job_zero_starts_with_the_corpus_and_other_jobs_draw_their_own_mutations() {
        let zero = last_inputs(0, 6);
        assert_eq!(zero[..2], [b"0 a\n1 b\n".to_vec(), b"0 x\n".to_vec()]);
        let one = last_inputs(1, 6);
        assert_eq!(one, last_inputs(1, 6), "a job replays from the seed");
        assert_ne!(one[..2], zero[..2], "job 1 does not rerun the corpus");
        assert_ne!(one, last_inputs(2, 6), "jobs draw different inputs");
    }

    #[test]
    fn checkpoint_entries_are_small_valid_safetensors_files() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let t = target("safetensors").expect("safetensors target");
        let from_models: Vec<_> = corpus(t, &fixtures).into_iter().skip(2).collect();
        assert_eq!(from_models.len(), 3, "one entry per bundled checkpoint");
        for entry in &from_models {
            assert!(entry.len() < 16 * 1024, "{} bytes", entry.len());
            let tensors = crate::model::checkpoint::parse_safetensors_header(
                entry,
                entry.len() as u64,
                Path::new("entry.safetensors"),
            )
            .expect("a valid file");
            assert_eq!(tensors.len(), 8);
            assert!(tensors.iter().all(|t| t.name.contains('.')), "real tensor names");
        }
    }

    #[test]
    fn merged_reports_add_up_and_keep_the_first_panic() {
        let report = |inputs, panic: Option<usize>| TargetReport {
            target: "x".into(),
            inputs,
            accepted: inputs / 2,
            rejected: inputs - inputs / 2,
            panics: u64::from(panic.is_some()),
            secs: 2.0,
            inputs_per_sec: inputs as f64 / 2.0,
            corpus: 3,
            first_panic: panic.map(|job| Finding {
                job,
                iteration: 5,
                message: "boom".into(),
                saved: None,
            }),
        };
        let reports = [report(10, None), report(20, Some(1)), report(30, Some(2))];
        let total = TargetReport::merge(&reports).expect("three reports");
        assert_eq!((total.inputs, total.accepted, total.rejected, total.panics), (60, 30, 30, 2));
        assert_eq!(total.inputs_per_sec, 30.0);
        assert_eq!(total.secs, 6.0);
        assert_eq!(total.corpus, 3);
        assert_eq!(total.first_panic.map(|f| f.job), Some(1));
        assert!(TargetReport::merge(&[]).is_none());
    }
}
