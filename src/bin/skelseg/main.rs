//! `skelseg`: the command line. Thin: it parses arguments, calls the library and prints a
//! human-readable table, or one JSON object on stdout with `--json` (diagnostics go to stderr).

mod bench;
mod common;
mod data;
mod model;
mod record;
mod stream;
mod training;
mod tuning;
mod zenoh_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Real-time temporal action segmentation of skeleton streams.
#[derive(Debug, Parser)]
#[command(name = "skelseg", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// CPU threads for libtorch's operators (0 = libtorch's default). One is the default: on a
    /// busy 2-core machine two spinning OpenMP threads made DSMI 250× slower (BENCHMARKS.md).
    #[arg(long, default_value_t = 1, global = true)]
    threads: i32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Segment a bundled sequence with the bundled model and show it beside the ground truth.
    Demo(model::DemoArgs),
    /// Generate a synthetic skeleton action dataset (PKU-MMD format, mapping, splits).
    Synth(data::SynthArgs),
    /// Describe a recording (PKU-MMD, NTU, UTKinect, NDJSON) or a checkpoint (.safetensors).
    Info(data::InfoArgs),
    /// Check a dataset folder: classes, durations, splits, layouts, frame rates, every problem.
    Check(data::CheckArgs),
    /// Open a recording in the Rerun viewer with its labels (and a model's predictions).
    View(model::ViewArgs),
    /// Capture sources to skeleton-ndjson/1 files, one per stream.
    Record(record::RecordArgs),
    /// Score MS-TCN style prediction files against ground-truth files (Acc, Edit, F1@k).
    Metrics(data::MetricsArgs),
    /// Train an InterAct model on a dataset folder.
    Train(training::TrainArgs),
    /// Evaluate a model on a dataset folder, offline (full sequences) or online (streaming).
    Eval(model::EvalArgs),
    /// Fit a checkpoint's confidence calibration (softmax temperature) on validation data.
    Calibrate(model::CalibrateArgs),
    /// Segment a live or replayed stream and print events as they are committed.
    Stream(stream::StreamArgs),
    /// Replay a recording as a live skeleton-ndjson/1 stream over TCP, UDP or Zenoh.
    Send(stream::SendArgs),
    /// Measure the cost of the streaming path (DSMI, MFAI, replay speed, latency, streams).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::init_logging(cli.verbose);
    if cli.threads > 0 {
        tch::set_num_threads(cli.threads);
    }
    let result = match cli.command {
        Command::Demo(args) => model::demo(args),
        Command::Synth(args) => data::synth(args),
        Command::Info(args) => data::info(args),
        Command::Metrics(args) => data::metrics(args),
        Command::Check(args) => data::check(args),
        Command::Record(args) => record::record(args),
        Command::View(args) => model::view(args),
        Command::Train(args) => training::train(args),
        Command::Eval(args) => model::eval(args),
        Command::Calibrate(args) => model::calibrate(args),
        Command::Stream(args) => stream::stream(args),
        Command::Send(args) => stream::send(args),
        Command::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`skelseg stream --json | head`) is not an error.
            let broken_pipe = err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
