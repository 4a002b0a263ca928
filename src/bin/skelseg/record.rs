//! `record`: any source to `skeleton-ndjson/1` files, one per stream.
//!
//! Each source is read on its own named thread. A stream's file is opened at its first frame
//! and written through a `LineWriter`, so every complete frame line reaches the file as it is
//! written and a crash leaves only complete lines. The header (canonical layout, metres, Kinect
//! axes, the frame rate) needs the rate, so the first [`RATE_PROBE_FRAMES`] frames of a stream
//! wait in memory until it is estimated from their timestamps (the sensor's, kept as they
//! came). A stream's end (a disconnect, the end of a file) closes its file; Ctrl-C or SIGTERM
//! stops the sources, writes the frames already received and closes every file.
//!
//! Network ingress is given a queue of [`RECORD_QUEUE_FRAMES`] frames, so a writer that falls
//! briefly behind loses nothing; frames a full queue had to drop are reported, never hidden.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use skelseg::Frame;
use skelseg::io::ndjson::{Header, encode_frame, encode_header};
use skelseg::resample::{RATE_PROBE_FRAMES, estimate_fps};
use skelseg::source::{
    FrameSource, NetConfig, OpenOptions, Pacing, SourceEvent, SourcePoll, SourceSpec, SourceStats,
    StreamId,
};

use crate::common::print_json;

/// Ingress queue of a recorded network source, in frames (about 36 min of one 30 fps stream).
pub const RECORD_QUEUE_FRAMES: usize = 65_536;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where frames come from: `tcp-listen:127.0.0.1:7000`, `tcp:HOST:PORT`, `udp:ADDR`,
    /// `osc:ADDR`, `sim`, `file:PATH`, `zenoh:skelseg/frames/**` (every stream, whichever
    /// worker owns it; the recorder takes no share) (repeatable).
    #[arg(long, required = true)]
    source: Vec<SourceSpec>,
    /// Output folder; one `STREAM.ndjson` per stream (a reconnecting client gets a new file).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this many seconds (default: until every source ends, or Ctrl-C / SIGTERM).
    #[arg(long)]
    seconds: Option<f64>,
    /// Print one JSON object with the counts at exit.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    zenoh: crate::zenoh_cli::ZenohArgs,
}

/// One stream's file.
#[derive(Debug, Serialize)]
struct StreamRecord {
    stream: String,
    file: PathBuf,
    frames: u64,
    fps: f64,
    #[serde(skip)]
    writer: Option<LineWriter<File>>,
    #[serde(skip)]
    pending: Vec<Frame>,
}

#[derive(Debug, Serialize)]
struct RecordReport {
    out: PathBuf,
    frames: u64,
    streams: Vec<StreamRecord>,
    dropped_overflow: u64,
    skipped: u64,
}

pub fn record(args: RecordArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let net = NetConfig { queue_frames: RECORD_QUEUE_FRAMES, ..NetConfig::DEFAULT };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // The `termination` feature makes this handle SIGTERM too.
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the signal handler")?;
    }
    if let Some(secs) = args.seconds {
        let stop = Arc::clone(&stop);
        let limit = Duration::from_secs_f64(secs.max(0.0));
        std::thread::Builder::new()
            .name("skelseg::record-timer".into())
            .spawn(move || {
                std::thread::sleep(limit);
                stop.store(true, Ordering::Relaxed);
            })
            .context("starting the timer thread")?;
    }
    let names = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut handles = Vec::new();
    for (i, spec) in args.source.iter().enumerate() {
        // A file converts as fast as it reads; the simulator runs in real time, like a sensor.
        let pacing = match spec {
            SourceSpec::File(_) => Pacing::AsFastAsPossible,
            _ => Pacing::RealTime,
        };
        let options = OpenOptions { net: net.clone(), pacing };
        let source = open_source(spec, &options, &args.zenoh)?;
        let (stop, out, names) = (Arc::clone(&stop), args.out.clone(), Arc::clone(&names));
        let handle = std::thread::Builder::new()
            .name(format!("skelseg::record-{i}"))
            .spawn(move || record_source(source, &out, &stop, &names))
            .context("starting a recorder thread")?;
        handles.push(handle);
    }
    if !args.json {
        eprintln!("recording to {} (Ctrl-C stops)", args.out.display());
    }
    let mut report = RecordReport {
        out: args.out.clone(),
        frames: 0,
        streams: Vec::new(),
        dropped_overflow: 0,
        skipped: 0,
    };
    for handle in handles {
        let (streams, stats) =
            handle.join().map_err(|_| anyhow::anyhow!("a recorder thread panicked"))??;
        report.frames += streams.iter().map(|s| s.frames).sum::<u64>();
        report.dropped_overflow += stats.dropped_overflow;
        report.skipped += stats.skipped();
        report.streams.extend(streams);
    }
    if report.dropped_overflow > 0 {
        tracing::warn!(dropped = report.dropped_overflow, "frames dropped by a full ingress queue");
    }
    if args.json {
        print_json(&report)?;
    } else {
        for s in &report.streams {
            println!(
                "{:<32} {:>8} frames {:>6.1} fps  {}",
                s.stream,
                s.frames,
                s.fps,
                s.file.display()
            );
        }
        println!(
            "{} frames written in {} files; {} frames dropped, {} input lines skipped",
            report.frames,
            report.streams.len(),
            report.dropped_overflow,
            report.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens one source; a `zenoh:` one as an observer that takes every stream and no share.
fn open_source(
    spec: &SourceSpec,
    options: &OpenOptions,
    zenoh: &crate::zenoh_cli::ZenohArgs,
) -> Result<Box<dyn FrameSource>> {
    #[cfg(feature = "zenoh")]
    if let SourceSpec::Zenoh(keyexpr) = spec {
        return Ok(Box::new(crate::zenoh_cli::open_observer(zenoh, keyexpr, &options.net)?));
    }
    #[cfg(not(feature = "zenoh"))]
    let _ = zenoh; // `spec.open_with` says the feature is missing
    spec.open_with(options).with_context(|| format!("opening source {spec}"))
}

/// Reads `source` until it finishes or `stop` is set, then drains what it already received.
fn record_source(
    mut source: Box<dyn FrameSource>,
    out: &Path,
    stop: &AtomicBool,
    names: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) -> Result<(Vec<StreamRecord>, SourceStats)> {
    let mut open: BTreeMap<StreamId, StreamRecord> = BTreeMap::new();
    let mut done = Vec::new();
    let mut stopping = false;
    // Once stopping, take what is already queued: at most a full ingress queue, so a source
    // that always has a frame ready (the simulator) cannot keep the recorder going.
    let mut drain_left = RECORD_QUEUE_FRAMES;
    loop {
        if !stopping && stop.load(Ordering::Relaxed) {
            stopping = true;
        }
        if stopping {
            if drain_left == 0 {
                break;
            }
            drain_left -= 1;
        }
        let timeout = if stopping { Duration::ZERO } else { Duration::from_millis(100) };
        match source.next_event(timeout) {
            SourcePoll::Event(SourceEvent::Frame { stream, frame }) => {
                let rec = match open.entry(stream.clone()) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(new_stream(out, &stream, names)?)
                    }
                };
                write_frame(rec, frame)?;
            }
            SourcePoll::Event(SourceEvent::Ended { stream, reason }) => {
                if let Some(mut rec) = open.remove(&stream) {
                    close(&mut rec)?;
                    tracing::info!(%stream, ?reason, frames = rec.frames, "stream ended: file closed");
                    done.push(rec);
                }
            }
            SourcePoll::Timeout if stopping => break,
            SourcePoll::Timeout => {}
            SourcePoll::Finished => break,
        }
    }
    let stats = source.stats();
    drop(source);
    for (_, mut rec) in open {
        close(&mut rec)?;
        done.push(rec);
    }
    Ok((done, stats))
}

/// A file name from a stream id (`tcp:127.0.0.1:5000` → `tcp_127.0.0.1_5000`), unique in `out`.
fn new_stream(
    out: &Path,
    stream: &StreamId,
    names: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) -> Result<StreamRecord> {
    let base: String = stream
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let mut taken = names.lock().unwrap_or_else(|p| p.into_inner());
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) || out.join(format!("{name}.ndjson")).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    taken.insert(name.clone());
    Ok(StreamRecord {
        stream: stream.to_string(),
        file: out.join(format!("{name}.ndjson")),
        frames: 0,
        fps: 0.0,
        writer: None,
        pending: Vec::new(),
    })
}

fn write_frame(rec: &mut StreamRecord, frame: Frame) -> Result<()> {
    match rec.writer.as_mut() {
        Some(w) => {
            writeln!(w, "{}", encode_frame(&frame))
                .with_context(|| format!("writing {}", rec.file.display()))?;
            rec.frames += 1;
        }
        None => {
            rec.pending.push(frame);
            if rec.pending.len() >= RATE_PROBE_FRAMES {
                open_file(rec)?;
            }
        }
    }
    Ok(())
}

/// Opens the file, writes the header with the estimated rate and the frames held back.
fn open_file(rec: &mut StreamRecord) -> Result<()> {
    rec.fps = estimate_fps(&rec.pending).unwrap_or(skelseg::io::ndjson::DEFAULT_FPS);
    // Round to a hundredth: a rate, not the jitter of the first few timestamps.
    rec.fps = (rec.fps * 100.0).round() / 100.0;
    let file =
        File::create(&rec.file).with_context(|| format!("creating {}", rec.file.display()))?;
    let mut w = LineWriter::new(file);
    writeln!(w, "{}", encode_header(&Header::canonical(Some(rec.fps))))
        .with_context(|| format!("writing {}", rec.file.display()))?;
    rec.writer = Some(w);
    for frame in std::mem::take(&mut rec.pending) {
        write_frame(rec, frame)?;
    }
    Ok(())
}

fn close(rec: &mut StreamRecord) -> Result<()> {
    if rec.writer.is_none() && !rec.pending.is_empty() {
        open_file(rec)?;
    }
    if let Some(mut w) = rec.writer.take() {
        w.flush().with_context(|| format!("writing {}", rec.file.display()))?;
    }
    Ok(())
}
