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
pub use targets::{Outcome, Scratch, TARGETS, Target, target};

/// The first panic of a target.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Which input (0-based) panicked.
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
    /// Wall time, seconds.
    pub secs: f64,
    /// Throughput.
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

/// Runs `input` through `target`, turning a panic into `Err(message)`.
pub fn run_one(target: &Target, input: &[u8], scratch: &Scratch) -> Result<Outcome, String> {
    install_panic_hook();
    IN_FUZZ.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input, scratch)));
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
    let safetensors_header = |b: Vec<u8>| -> Vec<u8> {
        let len = b.get(..8).and_then(|l| l.try_into().ok()).map_or(0, u64::from_le_bytes);
        let end = usize::try_from(len).map_or(b.len(), |l| (8 + l).min(b.len()));
        b[..end].to_vec()
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
                // Only the header: the weights add megabytes per input and no parsing.
                if let Ok(bytes) = std::fs::read(p) {
                    out.push(safetensors_header(bytes));
                }
            }
        }
        _ => {}
    }
    out
}

/// A campaign over one target, run in chunks so that a long campaign can share its time
/// between targets and report at any moment.
#[derive(Debug)]
pub struct TargetRun {
    target: &'static Target,
    corpus: Vec<Vec<u8>>,
    rng: ChaCha8Rng,
    scratch: Scratch,
    input: Vec<u8>,
    report: TargetReport,
}

impl TargetRun {
    /// A run of `target` over `corpus` with RNG `seed`. Each target draws from its own stream,
    /// so `--target X` replays exactly what `--target all` ran on X.
    pub fn new(target: &'static Target, corpus: Vec<Vec<u8>>, seed: u64) -> std::io::Result<Self> {
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
        Ok(TargetRun {
            target,
            corpus,
            rng: ChaCha8Rng::seed_from_u64(seed ^ name_hash),
            scratch: Scratch::new()?,
            input: Vec::new(),
            report,
        })
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
            match usize::try_from(i).ok().and_then(|i| corpus.get(i)) {
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
            match run_one(self.target, input, &self.scratch) {
                Ok(Outcome::Accepted) => self.report.accepted += 1,
                Ok(Outcome::Rejected) => self.report.rejected += 1,
                Err(message) => {
                    self.report.panics += 1;
                    if self.report.first_panic.is_none() {
                        let saved = failures_dir.and_then(|dir| {
                            std::fs::create_dir_all(dir).ok()?;
                            let path = dir.join(format!("{}-{i}.bin", self.target.name));
                            std::fs::write(&path, &*input).ok()?;
                            Some(path)
                        });
                        self.report.first_panic = Some(Finding { iteration: i, message, saved });
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
