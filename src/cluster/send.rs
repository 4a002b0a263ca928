//! `skelseg send --to zenoh:KEY`: a recording published as a live stream.

use std::time::{Duration, Instant};

use zenoh::qos::CongestionControl;
use zenoh::{Session, Wait};
use zenoh_ext::{AdvancedPublisherBuilderExt, CacheConfig, MissDetectionConfig};

use crate::error::{Error, Result};
use crate::io::Recording;
use crate::io::ndjson::{Header, encode_frame, encode_header};
use crate::source::SendStats;

use super::DEFAULT_HISTORY_FRAMES;

/// How [`send_recording`] publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct ZenohSendOptions {
    /// Frames per second (`None`: as fast as the session takes them).
    pub fps: Option<f64>,
    /// Samples the publisher keeps for late joiners (a new owner's warm-up).
    pub cache_frames: usize,
    /// Frames between repeats of the header, so that a late joiner learns it (0: once).
    pub header_every: usize,
    /// Waits this long for a subscriber before the first frame (none found: sent anyway).
    pub wait_for_subscriber: Duration,
    /// Ends the stream with a Zenoh `delete` on the key.
    pub end_with_delete: bool,
}

impl Default for ZenohSendOptions {
    fn default() -> Self {
        ZenohSendOptions {
            fps: Some(30.0),
            cache_frames: DEFAULT_HISTORY_FRAMES,
            header_every: 30,
            wait_for_subscriber: Duration::from_secs(2),
            end_with_delete: true,
        }
    }
}

/// Publishes `recording` on `key` (`{prefix}/frames/{stream}`): the canonical header, the
/// frames paced at `fps`, then a `delete` that ends the stream. The publisher keeps its last
/// `cache_frames` samples for `zenoh-ext` history and blocks rather than drops when the
/// network is congested.
pub fn send_recording(
    session: &Session,
    key: &str,
    recording: &Recording,
    options: &ZenohSendOptions,
) -> Result<SendStats> {
    let location = format!("zenoh:{key}");
    let zerr =
        |what: &str, e: zenoh::Error| Error::invalid("zenoh", format!("{location}: {what}: {e}"));
    let period = match options.fps {
        None => None,
        Some(fps) if fps.is_finite() && fps > 0.0 => Some(Duration::from_secs_f64(1.0 / fps)),
        Some(fps) => {
            return Err(Error::invalid("fps", format!("expected a positive rate, found {fps}")));
        }
    };
    let publisher = session
        .declare_publisher(key.to_owned())
        .congestion_control(CongestionControl::Block)
        .cache(CacheConfig::default().max_samples(options.cache_frames.max(1)))
        // Sequence numbers and heartbeats let subscribers put history and live samples in
        // order and recover lost ones from the cache: a frame lost or reordered would shift
        // every later window.
        .sample_miss_detection(MissDetectionConfig::default().heartbeat(Duration::from_millis(500)))
        .publisher_detection()
        .wait()
        .map_err(|e| zerr("declaring the publisher", e))?;
    let deadline = Instant::now() + options.wait_for_subscriber;
    while Instant::now() < deadline {
        match publisher.matching_status().wait() {
            Ok(status) if status.matching() => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(zerr("matching status", e)),
        }
    }
    let header = encode_header(&Header::canonical(
        Some(recording.fps).filter(|f| f.is_finite() && *f > 0.0),
    ));
    let started = Instant::now();
    let mut stats = SendStats::default();
    let put = |payload: &str, stats: &mut SendStats| -> Result<()> {
        publisher.put(payload.to_owned()).wait().map_err(|e| zerr("publishing", e))?;
        stats.bytes += payload.len() as u64;
        Ok(())
    };
    put(&header, &mut stats)?;
    for (i, frame) in recording.frames.iter().enumerate() {
        if let Some(period) = period {
            let due = started + period.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if options.header_every > 0 && i > 0 && i % options.header_every == 0 {
            put(&header, &mut stats)?;
        }
        put(&encode_frame(frame), &mut stats)?;
        stats.frames += 1;
    }
    if options.end_with_delete {
        publisher.delete().wait().map_err(|e| zerr("ending the stream", e))?;
    }
    stats.elapsed_secs = started.elapsed().as_secs_f64();
    tracing::info!(to = %location, frames = stats.frames, bytes = stats.bytes, elapsed_secs = stats.elapsed_secs, "recording published");
    Ok(stats)
}
