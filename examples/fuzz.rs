//! Stable-Rust fuzzing of every parser skelseg runs on untrusted input (see RELIABILITY.md).
//!
//! ```text
//! cargo run --release --example fuzz -- --target all --iterations 1000000 --seed 1 --json
//! cargo run --release --example fuzz -- --list
//! cargo run --release --example fuzz -- --write-corpus fixtures/fuzz
//! ```
//!
//! Targets run round-robin in chunks, so every target advances together and `--max-minutes`
//! stops them all with comparable counts. The first failing input of each target is saved under
//! `--failures`; `--progress FILE` is rewritten with the figures so far after every round.

use std::path::PathBuf;
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
    serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "seed": args.seed,
        "iterations_per_target": args.iterations,
        "finished": done,
        "elapsed_secs": elapsed.as_secs_f64(),
        "inputs": reports.iter().map(|r| r.inputs).sum::<u64>(),
        "panics": reports.iter().map(|r| r.panics).sum::<u64>(),
        "targets": reports,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
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
    let mut runs = Vec::new();
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
        runs.push(TargetRun::new(t, corpus, args.seed).context("creating the scratch folder")?);
    }
    let started = Instant::now();
    let deadline = args.max_minutes.map(|m| started + Duration::from_secs_f64(m * 60.0));
    let bar = indicatif::ProgressBar::new(args.iterations * runs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} inputs, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let mut ran = 0;
        for run in &mut runs {
            let left = args.iterations - run.report().inputs;
            let n = left.min(args.chunk);
            run.run(n, Some(&args.failures));
            ran += n;
        }
        bar.inc(ran);
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        let done = ran == 0 || out_of_time;
        if let Some(path) = &args.progress {
            let reports: Vec<_> = runs.iter().map(TargetRun::report).collect();
            let json = report_json(&args, &reports, started.elapsed(), done);
            std::fs::write(path, format!("{json:#}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    let reports: Vec<_> = runs.iter().map(TargetRun::report).collect();
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
                println!("  first panic at input {}: {} (input: {saved})", f.iteration, f.message);
            }
        }
    }
    if panics > 0 {
        bail!("{panics} input(s) panicked");
    }
    Ok(())
}
