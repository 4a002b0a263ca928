//! Soak test: the real [`Pipeline`] fed over loopback TCP and UDP by clients that connect,
//! disconnect and come back (UDP under the same id after an idle timeout, TCP under a new one),
//! with bodies entering and leaving, bursts and gaps. Every few seconds it samples RSS, open file
//! descriptors, threads and the frames in flight, and at the end reports their slopes, frames
//! sent vs processed, segments committed and whether every stream's segments tile its frames.
//!
//! ```text
//! nice -n 19 cargo run --release --example soak -- --minutes 60 --streams 6 --churn --json
//! ```

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use skelseg::io::ndjson;
use skelseg::source::{NetConfig, NetSource};
use skelseg::stream::{PipelineBuilder, SegmentEvent, StreamConfig};
use skelseg::{Frame, synth};

#[derive(Debug, Parser)]
#[command(about = "Soak the streaming pipeline over loopback TCP and UDP")]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Concurrent client streams (half TCP, half UDP).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Frames per second per stream.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Clients disconnect and come back; bodies enter and leave; bursts and gaps.
    #[arg(long)]
    churn: bool,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5.0)]
    sample_secs: f64,
    /// Checkpoint to run.
    #[arg(long, default_value = "fixtures/models/synth.safetensors")]
    model: std::path::PathBuf,
    /// RNG seed of the clients.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rewrite this file with the samples so far after every sample.
    #[arg(long)]
    progress: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Counters the clients share.
#[derive(Default)]
struct Sent {
    tcp_frames: AtomicU64,
    udp_frames: AtomicU64,
    connects: AtomicU64,
    udp_pauses_past_idle: AtomicU64,
}

/// What the event callback has seen of one stream id.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct StreamCheck {
    /// Lifetimes of this id (a UDP id comes back after an idle timeout).
    lives: u64,
    segments: u64,
    /// Segments that did not start right after the previous one of the same life: allowed
    /// when no frame in between was finalised (frames dropped by the ingress policy, a body
    /// absent past the person timeout).
    gaps: u64,
    /// Finalised frames (per `frame_label`) that no segment of their life covers.
    uncovered_frames: u64,
    /// Segments starting at or before the previous one's end.
    overlaps: u64,
    /// `SegmentEnded` without a matching open `SegmentStarted`.
    unmatched: u64,
    open: Option<(usize, u64)>,
    last_end: Option<u64>,
    frames_reported: u64,
    /// Frames labelled in this life, as runs of consecutive indices.
    #[serde(skip)]
    labelled: Vec<(u64, u64)>,
    /// Segments committed in this life, in order.
    #[serde(skip)]
    committed: Vec<(u64, u64)>,
    /// The first few violations, described, to find them again.
    first_violations: Vec<String>,
}

impl StreamCheck {
    /// End of a life: every finalised frame must lie in one of its segments.
    fn check_cover(&mut self) {
        let mut segs = self.committed.iter().peekable();
        let mut uncovered = Vec::new();
        for &(first, last) in &self.labelled {
            let mut f = first;
            while f <= last {
                while segs.next_if(|&&(_, end)| end < f).is_some() {}
                match segs.peek() {
                    Some(&&(start, end)) if start <= f => f = end.saturating_add(1),
                    next => {
                        let to = next.map_or(last, |&&(start, _)| (start - 1).min(last));
                        uncovered.push((f, to));
                        f = to + 1;
                    }
                }
            }
        }
        for (f, to) in uncovered {
            self.uncovered_frames += to - f + 1;
            self.violation(format!("frames {f}..={to} finalised but in no segment"));
        }
        self.labelled.clear();
        self.committed.clear();
    }

    fn violation(&mut self, what: String) {
        if self.first_violations.len() < 5 {
            self.first_violations.push(format!("life {}: {what}", self.lives + 1));
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    /// Bytes the allocator has handed out and not had back (KiB): a leak grows this; memory
    /// freed but kept by the allocator grows only the RSS.
    heap_in_use_kib: u64,
    fds: u64,
    threads: u64,
    frames_in_flight: u64,
    frames: u64,
    finalised: u64,
    dropped_overflow: u64,
    segments: u64,
}

fn proc_status(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// glibc's count of heap bytes in use (arenas plus mmapped chunks), in KiB.
#[allow(unsafe_code)]
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters; it takes no arguments.
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    if den == 0.0 { 0.0 } else { num / den }
}

/// A synthetic recording to loop over, re-indexed per send.
fn recording(seed: u64) -> Vec<Frame> {
    let cfg = synth::SynthConfig { seed, min_actions: 6, max_actions: 10, ..Default::default() };
    synth::generate_recording(&cfg, seed, "soak").frames
}

enum Wire {
    Tcp(SocketAddr, Option<TcpStream>),
    Udp(SocketAddr, UdpSocket),
}

impl Wire {
    fn send(&mut self, line: &str, sent: &Sent) -> bool {
        match self {
            Wire::Tcp(addr, conn) => {
                if conn.is_none() {
                    let Ok(c) = TcpStream::connect(*addr) else { return false };
                    sent.connects.fetch_add(1, Ordering::Relaxed);
                    *conn = Some(c);
                    let header = ndjson::encode_header(&ndjson::Header::canonical(Some(30.0)));
                    if !self.send(&header, sent) {
                        return false;
                    }
                    return self.send(line, sent);
                }
                let Some(c) = conn.as_mut() else { return false };
                let ok = c.write_all(line.as_bytes()).and_then(|()| c.write_all(b"\n")).is_ok();
                if !ok {
                    *conn = None;
                }
                ok
            }
            Wire::Udp(addr, socket) => socket.send_to(line.as_bytes(), *addr).is_ok(),
        }
    }

    fn disconnect(&mut self) {
        if let Wire::Tcp(_, conn) = self {
            *conn = None;
        }
    }
}

/// One client: loops over a synthetic recording at `fps`, with churn.
fn client(k: usize, mut wire: Wire, args: &Args, stop: &AtomicBool, sent: &Sent, idle: Duration) {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed * 1000 + k as u64);
    let frames = recording(args.seed * 100 + k as u64);
    let is_tcp = matches!(wire, Wire::Tcp(..));
    let period = Duration::from_secs_f64(1.0 / args.fps);
    let mut index = 0u64;
    let mut next = Instant::now();
    let mut next_churn = Instant::now() + Duration::from_secs(rng.gen_range(20..90));
    let mut absent_left = 0;
    let mut was_absent = false;
    let mut burst_left = 0;
    if !is_tcp {
        let header = ndjson::encode_header(&ndjson::Header::canonical(Some(args.fps)));
        wire.send(&header, sent);
    }
    while !stop.load(Ordering::Relaxed) {
        if args.churn && Instant::now() >= next_churn {
            next_churn = Instant::now() + Duration::from_secs(rng.gen_range(20..90));
            if is_tcp {
                // Disconnect; the next send connects again (a new stream id).
                wire.disconnect();
                std::thread::sleep(Duration::from_millis(rng.gen_range(200..3000)));
                index = 0;
            } else {
                // Pause past the idle timeout: the stream ends; the same peer comes back later
                // under the same id and must get a fresh stream.
                sent.udp_pauses_past_idle.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(idle + Duration::from_millis(rng.gen_range(500..2000)));
                index = 0;
                let header = ndjson::encode_header(&ndjson::Header::canonical(Some(args.fps)));
                wire.send(&header, sent);
            }
            next = Instant::now();
        }
        if args.churn && absent_left == 0 && !was_absent && rng.gen_bool(0.002) {
            // Bodies leave for up to ~0.8 s, below the person timeout (30 frames). Never right
            // after another absence: two back to back could pass the timeout, which closes the
            // segment and leaves the absent frames unlabelled, as documented.
            absent_left = rng.gen_range(5..25);
        }
        was_absent = absent_left > 0;
        if args.churn && burst_left == 0 && rng.gen_bool(0.001) {
            burst_left = rng.gen_range(10..40);
        }
        let mut frame = frames[(index as usize) % frames.len()].clone();
        frame.index = index;
        frame.timestamp_secs = index as f64 / args.fps;
        if absent_left > 0 {
            frame.bodies.clear();
            absent_left -= 1;
        }
        let line = ndjson::encode_frame(&frame);
        if wire.send(&line, sent) {
            let counter = if is_tcp { &sent.tcp_frames } else { &sent.udp_frames };
            counter.fetch_add(1, Ordering::Relaxed);
            index += 1;
        } else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if burst_left > 0 {
            // A burst: frames back to back, then the pacing catches up.
            burst_left -= 1;
            continue;
        }
        if args.churn && rng.gen_bool(0.0005) {
            // A gap: the sensor stalls for a second.
            std::thread::sleep(Duration::from_secs(1));
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            next = now;
        }
    }
}

fn on_event(checks: &Mutex<HashMap<String, StreamCheck>>, event: &SegmentEvent) {
    let Ok(mut checks) = checks.lock() else { return };
    let c = checks.entry(event.stream().to_owned()).or_default();
    match event {
        SegmentEvent::SegmentStarted { class, start_frame, .. } => {
            if c.open.is_some() {
                c.unmatched += 1;
                c.violation(format!("start at {start_frame} with a segment open"));
            }
            if let Some(end) = c.last_end {
                if *start_frame <= end {
                    c.overlaps += 1;
                    c.violation(format!("overlap: start {start_frame} after end {end}"));
                } else if *start_frame != end + 1 {
                    // A violation only if a finalised frame lies in it (`check_cover`).
                    c.gaps += 1;
                }
            }
            c.open = Some((*class, *start_frame));
        }
        SegmentEvent::SegmentEnded { class, start_frame, end_frame, .. } => {
            if c.open.take() != Some((*class, *start_frame)) {
                c.unmatched += 1;
                c.violation(format!("end {start_frame}..={end_frame} without its start"));
            }
            c.segments += 1;
            c.last_end = Some(*end_frame);
            c.committed.push((*start_frame, *end_frame));
        }
        SegmentEvent::StreamEnded { frames, .. } => {
            c.check_cover();
            c.lives += 1;
            c.frames_reported += frames;
            c.last_end = None;
            if c.open.take().is_some() {
                c.unmatched += 1;
                c.violation("stream ended with a segment open".into());
            }
        }
        SegmentEvent::FrameLabel { frame, .. } => match c.labelled.last_mut() {
            Some(run) if run.1 + 1 == *frame => run.1 = *frame,
            _ => c.labelled.push((*frame, *frame)),
        },
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::init_logging("warn");
    tch::set_num_threads(1);
    let loaded = skelseg::model::checkpoint::load(&args.model, tch::Device::Cpu)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let idle = Duration::from_secs(3);
    let net = NetConfig { idle_timeout: idle, ..NetConfig::DEFAULT };
    let tcp = NetSource::tcp_listen("127.0.0.1:0".parse()?, &net)?;
    let udp = NetSource::udp("127.0.0.1:0".parse()?, &net)?;
    let (tcp_addr, udp_addr) = (tcp.local_addr(), udp.local_addr());
    let checks: Arc<Mutex<HashMap<String, StreamCheck>>> = Arc::default();
    let mut cfg = StreamConfig::from_checkpoint(&loaded.meta);
    // Every finalised frame's label, so the check can tell a gap between segments that holds
    // finalised frames (a defect) from one that holds none (dropped or absent frames).
    cfg.segmenter.per_frame = true;
    let pipeline = {
        let checks = Arc::clone(&checks);
        PipelineBuilder::new(loaded)
            .config(cfg)
            .source(tcp)
            .source(udp)
            .event_channel(false)
            .on_event(move |e| on_event(&checks, e))
            .start()?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Sent::default());
    let args = Arc::new(args);
    let mut clients = Vec::new();
    for k in 0..args.streams {
        let wire = if k % 2 == 0 {
            Wire::Tcp(tcp_addr, None)
        } else {
            Wire::Udp(udp_addr, UdpSocket::bind("127.0.0.1:0")?)
        };
        let (stop, sent, args) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&args));
        clients.push(
            std::thread::Builder::new()
                .name(format!("soak::client{k}"))
                .spawn(move || client(k, wire, &args, &stop, &sent, idle))?,
        );
    }
    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let mut samples: Vec<Sample> = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(
            Duration::from_secs_f64(args.sample_secs)
                .min(duration.saturating_sub(started.elapsed())),
        );
        let stats = pipeline.stats();
        let dropped = stats.sources.iter().map(|s| s.dropped_overflow).sum();
        samples.push(Sample {
            secs: started.elapsed().as_secs_f64(),
            rss_kib: proc_status("VmRSS:"),
            heap_in_use_kib: heap_in_use_kib(),
            fds: fd_count(),
            threads: proc_status("Threads:"),
            frames_in_flight: stats.frames.saturating_sub(stats.finalised),
            frames: stats.frames,
            finalised: stats.finalised,
            dropped_overflow: dropped,
            segments: stats.segments,
        });
        if let Some(path) = &args.progress {
            std::fs::write(path, serde_json::to_string(&samples)? + "\n").ok();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    // Let the sources deliver what is queued, then shut down (flushes every open segment).
    std::thread::sleep(Duration::from_secs(1));
    let (stats, _) = pipeline.shutdown()?;
    let checks = checks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();

    // Slopes after warm-up (the first fifth of the run, at least one minute when there is one).
    let warm = (duration.as_secs_f64() / 5.0).min(60.0);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.secs >= warm).collect();
    let series = |f: &dyn Fn(&Sample) -> u64| -> Vec<(f64, f64)> {
        after.iter().map(|s| (s.secs / 60.0, f(s) as f64)).collect()
    };
    let rss = series(&|s| s.rss_kib);
    let edge = (rss.len() / 5).max(1);
    let mean = |v: &[(f64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len().max(1) as f64;
    let rss_change = if rss.len() >= 2 {
        mean(&rss[rss.len() - edge..]) / mean(&rss[..edge]) - 1.0
    } else {
        0.0
    };
    let heap = series(&|s| s.heap_in_use_kib);
    let heap_change = if heap.len() >= 2 {
        mean(&heap[heap.len() - edge..]) / mean(&heap[..edge]) - 1.0
    } else {
        0.0
    };
    let source_frames: u64 = stats.sources.iter().map(|s| s.frames).sum();
    let skipped: u64 = stats.sources.iter().map(|s| s.skipped()).sum();
    let dropped: u64 = stats.sources.iter().map(|s| s.dropped_overflow).sum();
    let tcp_sent = sent.tcp_frames.load(Ordering::Relaxed);
    let udp_sent = sent.udp_frames.load(Ordering::Relaxed);
    let sum = |f: &dyn Fn(&StreamCheck) -> u64| checks.values().map(f).sum::<u64>();
    let tiling = serde_json::json!({
        "gaps_between_segments": sum(&|c| c.gaps),
        "finalised_frames_in_no_segment": sum(&|c| c.uncovered_frames),
        "overlaps": sum(&|c| c.overlaps),
        "unmatched": sum(&|c| c.unmatched),
        "first_violations": checks
            .iter()
            .flat_map(|(id, c)| c.first_violations.iter().map(move |v| format!("{id} {v}")))
            .take(20)
            .collect::<Vec<_>>(),
    });
    let report = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "minutes": started.elapsed().as_secs_f64() / 60.0,
        "streams": args.streams,
        "fps": args.fps,
        "churn": args.churn,
        "samples": samples.len(),
        "warm_up_secs": warm,
        "rss_kib_first": samples.first().map(|s| s.rss_kib),
        "rss_kib_last": samples.last().map(|s| s.rss_kib),
        "rss_kib_per_min_after_warm_up": slope(&rss),
        "rss_change_after_warm_up": rss_change,
        "memory_trims": {"count": stats.memory_trims, "total_ms": stats.memory_trim_ms},
        "heap_in_use_kib_first_last_after_warm_up": [heap.first().map(|p| p.1), heap.last().map(|p| p.1)],
        "heap_in_use_kib_per_min_after_warm_up": slope(&heap),
        "heap_in_use_change_after_warm_up": heap_change,
        "fds_per_min": slope(&series(&|s| s.fds)),
        "fds_min_max": [samples.iter().map(|s| s.fds).min(), samples.iter().map(|s| s.fds).max()],
        "threads_min_max": [samples.iter().map(|s| s.threads).min(), samples.iter().map(|s| s.threads).max()],
        "frames_in_flight_max": samples.iter().map(|s| s.frames_in_flight).max(),
        "frames_sent": {"tcp": tcp_sent, "udp": udp_sent, "total": tcp_sent + udp_sent},
        "frames_accepted_by_sources": source_frames,
        "frames_skipped_by_sources": skipped,
        "frames_dropped_overflow": dropped,
        "frames_processed": stats.frames,
        "frames_finalised": stats.finalised,
        "frames_reported_by_stream_ended": sum(&|c| c.frames_reported),
        "unaccounted_frames": (tcp_sent + udp_sent) as i64 - (source_frames + skipped) as i64,
        // Accepted, not dropped by the ingress policy, yet never processed: still queued in a
        // source when the pipeline stopped reading it (0 when the pipeline kept up).
        "frames_left_in_source_queues": (source_frames - dropped) as i64 - stats.frames as i64,
        "windows": stats.windows,
        "skipped_windows": stats.skipped_windows,
        "tcp_connects": sent.connects.load(Ordering::Relaxed),
        "udp_pauses_past_idle": sent.udp_pauses_past_idle.load(Ordering::Relaxed),
        "stream_ids": checks.len(),
        "stream_lives": sum(&|c| c.lives),
        "segments_committed": stats.segments,
        "segments_seen": sum(&|c| c.segments),
        "tiling": tiling,
        "sources": stats.sources,
        "samples_every_secs": args.sample_secs,
        "rss_series_kib": samples.iter().map(|s| [s.secs.round(), s.rss_kib as f64]).collect::<Vec<_>>(),
        "heap_in_use_series_kib": samples.iter().map(|s| [s.secs.round(), s.heap_in_use_kib as f64]).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{report:#}");
    }
    Ok(())
}
