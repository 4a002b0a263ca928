//! Stable-Rust fuzzing of every parser skelseg runs on untrusted input (see RELIABILITY.md).
//!
//! ```text
//! cargo run --release --example fuzz -- --target all --iterations 1000000 --seed 1 --jobs 2 --json
//! cargo run --release --example fuzz -- --list
//! cargo run --release --example fuzz -- --write-corpus fixtures/fuzz
//! ```
//!
//! Targets run round-robin in chunks, so every target advances together and `--max-minutes`
//! stops them all with comparable counts. `--jobs N` splits every target's inputs over N
//! threads, each with its own RNG stream (job 0 is exactly the one-job campaign's first share).
//! The first failing input of each target and job is saved under `--failures`;
//! `--progress FILE` is rewritten with the figures so far every few seconds.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use skelseg::fuzz::{self, TARGETS, TargetReport, TargetRun};

#[derive(Debug, Parser)]
#[command(about = "Fuzz skelseg's parsers on stable Rust")]
struct Args {
    /// `all` or a target name (see --list).
    #[arg(long, default_value = "all")]
    target: String,
    /// Inputs per target.
    #[arg(long, default_value_t = 10_000)]
    iterations: u64,
    /// RNG seed: the same seed replays the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop every target after this many minutes of wall time in all (the report says how far
    /// each got).
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Where the first failing input of each target is saved.
    #[arg(long, default_value = "fuzz-failures")]
    failures: PathBuf,
    /// The repository's fixtures folder (seed corpus in `fixtures/fuzz/TARGET/`).
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// Rewrite this file with the JSON report after every round.
    #[arg(long)]
    progress: Option<PathBuf>,
    /// Inputs per target per round.
    #[arg(long, default_value_t = 2_000)]
    chunk: u64,
    /// Threads; each runs its share of every target's inputs.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
    /// Write the synthetic seed corpus into DIR/TARGET/ and exit.
    #[arg(long, value_name = "DIR")]
    write_corpus: Option<PathBuf>,
}

fn report_json(
    args: &Args,
    reports: &[&TargetReport],
    elapsed: Duration,
    done: bool,
) -> serde_json::Value {
    let inputs = reports.iter().map(|r| r.inputs).sum::<u64>();
    serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "seed": args.seed,
        "jobs": args.jobs,
        "iterations_per_target": args.iterations,
        "finished": done,
        "elapsed_secs": elapsed.as_secs_f64(),
        "inputs": inputs,
        "inputs_per_sec": inputs as f64 / elapsed.as_secs_f64().max(1e-9),
        "panics": reports.iter().map(|r| r.panics).sum::<u64>(),
        "targets": reports,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::init_logging("error");
    if args.list {
        for t in TARGETS {
            println!("{:<16} {}", t.name, t.about);
        }
        return Ok(());
    }
    if let Some(dir) = &args.write_corpus {
        for t in TARGETS {
            let sub = dir.join(t.name);
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
            for (name, bytes) in fuzz::seeds(t.name) {
                std::fs::write(sub.join(&name), bytes)
                    .with_context(|| format!("writing {name}"))?;
            }
        }
        eprintln!("seed corpus written to {}", dir.display());
        return Ok(());
    }
    let selected: Vec<_> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        match fuzz::target(&args.target) {
            Some(t) => vec![t],
            None => bail!(
                "unknown target {:?}; one of all, {}",
                args.target,
                TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut corpora = Vec::new();
    for t in selected {
        let corpus = fuzz::corpus(t, &args.fixtures);
        if corpus.is_empty() {
            bail!(
                "target {}: no seed corpus under {}/fuzz/{}",
                t.name,
                args.fixtures.display(),
                t.name
            );
        }
        corpora.push((t, corpus));
    }
    let started = Instant::now();
    let deadline = args.max_minutes.map(|m| started + Duration::from_secs_f64(m * 60.0));
    let bar = indicatif::ProgressBar::new(args.iterations * corpora.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} inputs, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Each job publishes its reports (one per target) after every round.
    let published: Arc<Mutex<Vec<Vec<TargetReport>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); args.jobs]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for job in 0..args.jobs {
        let jobs = args.jobs as u64;
        let share = args.iterations / jobs + u64::from((job as u64) < args.iterations % jobs);
        let mut runs: Vec<TargetRun> = corpora
            .iter()
            .map(|(t, corpus)| TargetRun::job(t, corpus.clone(), args.seed, job))
            .collect();
        let (published, stop) = (Arc::clone(&published), Arc::clone(&stop));
        let (chunk, failures) = (args.chunk.max(1), args.failures.clone());
        let handle = std::thread::Builder::new()
            .name(format!("fuzz-job-{job}"))
            .spawn(move || {
                loop {
                    let mut ran = 0;
                    for run in &mut runs {
                        let n = (share - run.report().inputs).min(chunk);
                        run.run(n, Some(&failures));
                        ran += n;
                    }
                    let reports = runs.iter().map(|r| r.report().clone()).collect();
                    if let Ok(mut slot) = published.lock() {
                        slot[job] = reports;
                    }
                    if ran == 0 || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            })
            .context("starting a fuzz job")?;
        handles.push(handle);
    }
    let merged = || -> Vec<TargetReport> {
        let slots = published.lock().map(|s| s.clone()).unwrap_or_default();
        (0..corpora.len())
            .filter_map(|t| TargetReport::merge(slots.iter().filter_map(|job| job.get(t))))
            .collect()
    };
    loop {
        let finished = handles.iter().all(std::thread::JoinHandle::is_finished);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        let reports = merged();
        bar.set_position(reports.iter().map(|r| r.inputs).sum());
        if let Some(path) = &args.progress {
            let refs: Vec<_> = reports.iter().collect();
            let json = report_json(&args, &refs, started.elapsed(), finished);
            std::fs::write(path, format!("{json:#}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(if args.progress.is_some() { 2000 } else { 200 }));
    }
    for handle in handles {
        if handle.join().is_err() {
            bail!("a fuzz job panicked outside a fuzzed input");
        }
    }
    bar.finish_and_clear();
    let owned = merged();
    let reports: Vec<_> = owned.iter().collect();
    let panics: u64 = reports.iter().map(|r| r.panics).sum();
    if args.json {
        println!("{}", report_json(&args, &reports, started.elapsed(), true));
    } else {
        println!(
            "{:<16} {:>10} {:>9} {:>9} {:>10} {:>7}",
            "target", "inputs", "accepted", "panics", "inputs/s", "corpus"
        );
        for r in &reports {
            println!(
                "{:<16} {:>10} {:>9} {:>9} {:>10.0} {:>7}",
                r.target, r.inputs, r.accepted, r.panics, r.inputs_per_sec, r.corpus
            );
            if let Some(f) = &r.first_panic {
                let saved =
                    f.saved.as_ref().map_or("not saved".into(), |p| p.display().to_string());
                println!(
                    "  first panic at input {} of job {}: {} (input: {saved})",
                    f.iteration, f.job, f.message
                );
            }
        }
    }
    if panics > 0 {
        bail!("{panics} input(s) panicked");
    }
    Ok(())
}
