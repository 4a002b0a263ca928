//! [`ZenohSource`]: `skeleton-ndjson/1` objects from `{prefix}/frames/{stream}` keys, for the
//! streams this [`Worker`] owns (see [`crate::cluster`] for the contract and the handover rule).
//!
//! Every sample goes through the stream's own [`Decoder`] on Zenoh's callback thread (bad
//! payloads are counted and logged like a bad TCP line); the frames of owned streams go to the
//! lossy ingress queue, those of other workers' streams to a small per-stream ring that warms
//! the window when the stream moves here. A `delete` on the key, or the idle timeout, ends the
//! stream. Streams are `zenoh:NAME`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zenoh::Wait;
use zenoh::sample::{Sample, SampleKind};
use zenoh_ext::{AdvancedSubscriber, AdvancedSubscriberBuilderExt, HistoryConfig, RecoveryConfig};

use crate::cluster::{DEFAULT_HISTORY_FRAMES, Worker, check_chunk, split_frames_keyexpr};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::io::ndjson::{Decoder, Rejected, SkipReason};

use super::ingress::Ingress;
use super::net::{NetConfig, SkipLog};
use super::{EndReason, FrameSource, SourcePoll, SourceStats, StreamId};

/// The source's timer: idle streams, stall detection (a fifth of the default lease).
const TICK: Duration = Duration::from_millis(100);
/// Default of [`ZenohSourceConfig::max_streams`]: every worker keeps a warm-up ring (300 frames:
/// about 135 KB with one body per frame, 2 MB at [`MAX_BODIES_PER_FRAME`]) of every stream,
/// owned or not, so this bounds that memory near 140 MB for one-person streams and 2 GB at
/// worst. Lower it on small machines that serve many keys.
///
/// [`MAX_BODIES_PER_FRAME`]: crate::io::ndjson::MAX_BODIES_PER_FRAME
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// Settings of a [`ZenohSource`].
#[derive(Clone, Debug, PartialEq)]
pub struct ZenohSourceConfig {
    /// Payload size limit, ingress queue, idle timeout (as for TCP).
    pub net: NetConfig,
    /// Frames kept per stream owned elsewhere, to warm the window on a takeover (window +
    /// lookahead is enough).
    pub history_frames: usize,
    /// How long to let the publishers' history arrive before declaring the worker's token.
    pub settle: Duration,
    /// Most streams the source tracks at once (owned or kept for warm-up): a key past it is
    /// skipped and counted as a rejected connection until a stream ends or idles out.
    pub max_streams: usize,
}

impl Default for ZenohSourceConfig {
    fn default() -> Self {
        ZenohSourceConfig {
            net: NetConfig::DEFAULT,
            history_frames: DEFAULT_HISTORY_FRAMES,
            settle: Duration::from_millis(300),
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// One stream as this worker sees it.
struct Slot {
    id: StreamId,
    decoder: Decoder,
    log: SkipLog,
    /// Whether this worker owns it (its frames go to the pipeline).
    owned: bool,
    /// The worker's stall epoch when it took the stream: a stall since makes the run stale.
    epoch: u64,
    /// Recent frames while owned elsewhere.
    recent: VecDeque<Frame>,
    last_seen: Instant,
}

struct Shared {
    ingress: Arc<Ingress>,
    worker: Arc<Worker>,
    base: String,
    cfg: ZenohSourceConfig,
    slots: Mutex<HashMap<String, Slot>>,
}

/// Frames from Zenoh for the streams a [`Worker`] owns. Dropping it makes the worker leave
/// (its streams move to the other workers) and ends its open streams.
#[must_use = "the source stops when dropped"]
pub struct ZenohSource {
    shared: Arc<Shared>,
    subscriber: Option<AdvancedSubscriber<()>>,
    stop: Arc<AtomicBool>,
    idle_thread: Option<JoinHandle<()>>,
    closed: bool,
}

impl std::fmt::Debug for ZenohSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZenohSource").field("worker", &self.shared.worker).finish()
    }
}

impl ZenohSource {
    /// Subscribes to `keyexpr` (`{prefix}/frames/**`, or a narrower expression under it; the
    /// prefix must be the worker's), fetching the publishers' recent history, waits
    /// `cfg.settle` for it, then activates the worker.
    pub fn open(worker: &Arc<Worker>, keyexpr: &str, cfg: ZenohSourceConfig) -> Result<Self> {
        let Some((prefix, _)) = split_frames_keyexpr(keyexpr) else {
            return Err(Error::invalid(
                "source spec",
                format!(
                    "`zenoh:{keyexpr}`: expected a key expression PREFIX/frames/..., e.g. skelseg/frames/**"
                ),
            ));
        };
        if prefix != worker.prefix() {
            return Err(Error::invalid(
                "source spec",
                format!(
                    "`zenoh:{keyexpr}`: the prefix {prefix:?} differs from the worker's {:?}",
                    worker.prefix()
                ),
            ));
        }
        let shared = Arc::new(Shared {
            // Room for a takeover's whole warm-up on top of the live queue: the warm-up goes
            // in at once, and newest-wins would otherwise drop its oldest frames.
            ingress: Arc::new(Ingress::new(cfg.net.queue_frames + cfg.history_frames + 1)),
            worker: worker.clone(),
            base: format!("{prefix}/frames/"),
            cfg: cfg.clone(),
            slots: Mutex::new(HashMap::new()),
        });
        let subscriber = {
            let shared = shared.clone();
            worker
                .session()
                .declare_subscriber(keyexpr.to_owned())
                .history(
                    HistoryConfig::default()
                        .detect_late_publishers()
                        .max_samples(cfg.history_frames.max(1)),
                )
                .recovery(RecoveryConfig::default().heartbeat())
                .callback(move |sample| shared.on_sample(&sample))
                .wait()
                .map_err(|e| Error::invalid("zenoh", format!("subscribing to {keyexpr}: {e}")))?
        };
        tracing::info!(keyexpr, worker = worker.id(), "subscribed to skeleton frames over Zenoh");
        std::thread::sleep(cfg.settle);
        worker.activate()?;
        let stop = Arc::new(AtomicBool::new(false));
        let idle_thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("skelseg::source::zenoh-timer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        shared.tick();
                    }
                })
                .map_err(|source| Error::SpawnThread {
                    name: "skelseg::source::zenoh-timer".into(),
                    source,
                })?
        };
        Ok(ZenohSource {
            shared,
            subscriber: Some(subscriber),
            stop,
            idle_thread: Some(idle_thread),
            closed: false,
        })
    }

    /// The worker behind this source.
    pub fn worker(&self) -> &Arc<Worker> {
        &self.shared.worker
    }
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn on_sample(&self, sample: &Sample) {
        let key = sample.key_expr().as_str();
        let Some(name) = key.strip_prefix(&self.base).filter(|n| check_chunk("stream", n).is_ok())
        else {
            self.ingress.counters.skip(SkipReason::Malformed);
            tracing::warn!(key, "skipped: a sample outside {}<stream>", self.base);
            return;
        };
        let mut slots = self.slots();
        if !slots.contains_key(name) && slots.len() >= self.cfg.max_streams {
            if sample.kind() == SampleKind::Put {
                self.ingress.counters.rejected_connection();
                tracing::warn!(key, limit = self.cfg.max_streams, "skipped: too many streams");
            }
            return;
        }
        if sample.kind() == SampleKind::Delete {
            if let Some(slot) = slots.remove(name)
                && slot.owned
            {
                // A new stream on the same key starts from scratch: no takeover bounds.
                self.worker.took_over(name, None);
                self.worker.set_routed(name, false);
                self.ingress.push_ended(slot.id, EndReason::Closed);
            }
            return;
        }
        let slot = slots.entry(name.to_owned()).or_insert_with(|| {
            let id = StreamId::new(format!("zenoh:{name}"));
            tracing::info!(stream = %id, "new stream over Zenoh");
            self.ingress.counters.connection();
            Slot {
                decoder: Decoder::new(id.to_string())
                    .with_max_line_bytes(self.cfg.net.max_line_bytes),
                id,
                log: SkipLog::default(),
                owned: false,
                epoch: 0,
                recent: VecDeque::new(),
                last_seen: Instant::now(),
            }
        });
        slot.last_seen = Instant::now();
        let payload = sample.payload().to_bytes();
        let frame = match slot.decoder.decode_checked(&payload) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(rejected) if started_again(&slot.decoder, &rejected, &payload) => {
                self.restart(name, slot);
                match slot.decoder.decode_checked(&payload) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(rejected) => {
                        slot.log.skip(&self.ingress, &slot.id, &rejected);
                        return;
                    }
                }
            }
            Err(rejected) => match self.retry_as_new_header(slot, &payload, rejected) {
                Ok(()) => return,
                Err(rejected) => {
                    slot.log.skip(&self.ingress, &slot.id, &rejected);
                    return;
                }
            },
        };
        self.route(name, slot, frame);
    }

    /// The sender on this key started again without a `delete` (a crash and restart): the
    /// stream ends as a closed TCP connection would, and the next frame begins a new one.
    fn restart(&self, name: &str, slot: &mut Slot) {
        tracing::info!(stream = %slot.id, "the sender started again: a new stream");
        if slot.owned {
            self.worker.took_over(name, None);
            self.worker.set_routed(name, false);
            self.ingress.push_ended(slot.id.clone(), EndReason::Closed);
            slot.owned = false;
        }
        slot.recent.clear();
        slot.decoder = slot.decoder.restarted();
    }

    /// A header that differs from the one in force applies from now on (the contract), which
    /// the stream decoder refuses after frames: start a fresh decoder with it.
    #[allow(clippy::result_large_err)] // `Rejected` carries the typed, located error, as in io::ndjson
    fn retry_as_new_header(
        &self,
        slot: &mut Slot,
        payload: &[u8],
        rejected: Rejected,
    ) -> Result<(), Rejected> {
        #[derive(serde::Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<&'a str>,
        }
        let is_header =
            serde_json::from_slice::<Kind>(payload).is_ok_and(|k| k.kind == Some("header"));
        if !is_header || slot.decoder.lines() <= 1 {
            return Err(rejected);
        }
        let mut fresh =
            Decoder::new(slot.id.to_string()).with_max_line_bytes(self.cfg.net.max_line_bytes);
        match fresh.decode_checked(payload) {
            Ok(_) => {
                tracing::info!(stream = %slot.id, "a new header applies from here on");
                slot.decoder = fresh;
                Ok(())
            }
            Err(_) => Err(rejected),
        }
    }

    /// Sends a frame to the pipeline or to the warm-up ring, moving the stream when ownership
    /// changed since its last frame.
    fn route(&self, name: &str, slot: &mut Slot, frame: Frame) {
        self.end_if_stale(name, slot);
        let owns = self.worker.owns(name);
        match (slot.owned, owns) {
            (false, true) => {
                let warm = std::mem::take(&mut slot.recent);
                let takeover = warm.back().map(|f| f.index);
                self.worker.took_over(name, takeover);
                if let Some(at) = takeover {
                    tracing::info!(stream = %slot.id, warm_frames = warm.len(), at_frame = at, "took the stream over");
                }
                for f in warm {
                    self.ingress.push_frame(&slot.id, f);
                }
                slot.owned = true;
                slot.epoch = self.worker.epoch();
                self.worker.set_routed(name, true);
            }
            (true, false) => {
                tracing::info!(stream = %slot.id, to = ?self.worker.owner_of(name), "handed the stream over");
                self.hand_over(name, slot);
            }
            _ => {}
        }
        if slot.owned {
            self.ingress.push_frame(&slot.id, frame);
        } else {
            if slot.recent.len() >= self.cfg.history_frames {
                slot.recent.pop_front();
            }
            slot.recent.push_back(frame);
        }
    }

    fn hand_over(&self, name: &str, slot: &mut Slot) {
        self.worker.handed_over(name);
        self.worker.set_routed(name, false);
        self.ingress.push_ended(slot.id.clone(), EndReason::Shutdown);
        slot.owned = false;
    }

    /// A stream taken before the worker's last stall: ends that run (its events are
    /// suppressed) so that the next frame takes the stream over afresh, as a newcomer would.
    fn end_if_stale(&self, name: &str, slot: &mut Slot) {
        if slot.owned && slot.epoch != self.worker.epoch() {
            tracing::warn!(stream = %slot.id, "restarting the stream after this worker stalled");
            self.hand_over(name, slot);
        }
    }

    /// The source's timer: notes that the process runs (a long gap is a stall), restarts the
    /// streams a stall made stale, ends the idle ones.
    fn tick(&self) {
        self.worker.note_alive(true);
        for (name, slot) in self.slots().iter_mut() {
            self.end_if_stale(name, slot);
        }
        self.end_idle();
    }

    fn end_idle(&self) {
        let timeout = self.cfg.net.idle_timeout;
        let now = Instant::now();
        self.slots().retain(|name, slot| {
            let alive = now.duration_since(slot.last_seen) < timeout;
            if !alive && slot.owned {
                self.worker.took_over(name, None);
                self.worker.set_routed(name, false);
                self.ingress.push_ended(slot.id.clone(), EndReason::Idle);
            }
            alive
        });
    }
}

/// Frame ids this far below the last one mean a sender that started again rather than a
/// late frame: Zenoh keeps each publisher's samples in order, and one second (at 30 fps) of
/// reordering across publishers is already more than a live stream sees.
const RESTART_JUMP_FRAMES: u64 = 30;

/// Whether `rejected` is the first frame of a sender that started again on the same key: out of
/// order, with a frame id more than [`RESTART_JUMP_FRAMES`] below the last.
fn started_again(decoder: &Decoder, rejected: &Rejected, payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Id {
        frame_id: Option<u64>,
    }
    if rejected.reason != SkipReason::OutOfOrder {
        return false;
    }
    let Some(last) = decoder.last_index() else { return false };
    serde_json::from_slice::<Id>(payload)
        .ok()
        .and_then(|id| id.frame_id)
        .is_some_and(|id| id.saturating_add(RESTART_JUMP_FRAMES) < last)
}

impl FrameSource for ZenohSource {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        self.shared.ingress.next(timeout)
    }

    fn stats(&self) -> SourceStats {
        self.shared.ingress.counters.snapshot()
    }

    /// Leaves the workers and stops receiving; what was received is still returned.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Leave first, so the others take over while this one winds down.
        self.shared.worker.leave();
        if let Some(subscriber) = self.subscriber.take()
            && let Err(e) = subscriber.undeclare().wait()
        {
            tracing::warn!("undeclaring the frames subscriber: {e}");
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.idle_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the Zenoh timer thread panicked");
        }
        for slot in self.shared.slots().values().filter(|s| s.owned) {
            self.shared.ingress.push_ended(slot.id.clone(), EndReason::Shutdown);
        }
        self.shared.ingress.close();
    }
}

impl Drop for ZenohSource {
    fn drop(&mut self) {
        self.close();
    }
}
