//! [`EventSink`]: every [`SegmentEvent`] published at `{prefix}/events/{stream}`, under the
//! handover rule of the module docs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use zenoh::Wait;
use zenoh::qos::CongestionControl;
use zenoh::sample::SampleKind;
use zenoh_ext::{
    AdvancedPublisher, AdvancedPublisherBuilderExt, AdvancedSubscriber,
    AdvancedSubscriberBuilderExt, CacheConfig, HistoryConfig,
};

use crate::error::{Error, Result};
use crate::stream::SegmentEvent;

use super::{Worker, events_key, zenoh_stream_name};

/// Events each stream's publisher keeps for late joiners, so that a new worker learns the
/// last committed end before it takes a stream over (with `--per-frame`, about 8 s of labels).
const EVENTS_CACHE: usize = 256;
/// Publishers of ended streams kept (with their caches, for late joiners), the oldest dropped
/// first. Each holds a cache, a liveliness token and a queryable: without a bound, every TCP
/// connection or key that ever streamed would keep one for the life of the process.
const ENDED_PUBLISHERS: usize = 64;

/// Counters of an [`EventSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Events published.
    pub published: u64,
    /// Events of streams this worker does not own (any more): the new owner covers them.
    pub suppressed_not_owner: u64,
    /// Events at or before the last committed end or inside a takeover's warm-up.
    pub suppressed_handover: u64,
    /// Segments published with their start moved past the last committed end.
    pub clipped: u64,
    /// Events of a stream run that began before this process stalled ("Fencing").
    pub suppressed_stale: u64,
    /// Publications that failed (logged).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    suppressed_not_owner: AtomicU64,
    suppressed_handover: AtomicU64,
    clipped: AtomicU64,
    suppressed_stale: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkStats {
            published: get(&self.published),
            suppressed_not_owner: get(&self.suppressed_not_owner),
            suppressed_handover: get(&self.suppressed_handover),
            clipped: get(&self.clipped),
            suppressed_stale: get(&self.suppressed_stale),
            failed: get(&self.failed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Last committed end per stream name, as seen on the events keys (every worker's, ours too).
type Committed = Arc<Mutex<HashMap<String, u64>>>;

/// Publishes a worker's events. Feed it from [`PipelineBuilder::on_event`]
/// (`builder.on_event(sink.into_callback())`), or call [`EventSink::publish`].
///
/// [`PipelineBuilder::on_event`]: crate::stream::PipelineBuilder::on_event
pub struct EventSink {
    worker: Arc<Worker>,
    publishers: HashMap<String, AdvancedPublisher<'static>>,
    /// Streams whose last published event was their end, oldest first.
    ended: VecDeque<String>,
    committed: Committed,
    counters: Arc<Counters>,
    _events_sub: AdvancedSubscriber<()>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").field("worker", &self.worker).finish()
    }
}

/// Reads what the handover rule needs from an events payload: the stream's last committed end,
/// or its end (which resets it: a restarted stream counts its frames from 0 again).
fn observe(committed: &Mutex<HashMap<String, u64>>, stream: &str, payload: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Seen {
        #[serde(rename = "type")]
        kind: String,
        end_frame: Option<u64>,
    }
    let Ok(seen) = serde_json::from_slice::<Seen>(payload) else { return };
    let mut committed = committed.lock().unwrap_or_else(PoisonError::into_inner);
    match (seen.kind.as_str(), seen.end_frame) {
        ("segment_ended", Some(end)) => {
            let last = committed.entry(stream.to_owned()).or_insert(end);
            *last = (*last).max(end);
        }
        ("stream_ended", _) => {
            committed.remove(stream);
        }
        _ => {}
    }
}

impl EventSink {
    /// A sink for `worker`: subscribes to `{prefix}/events/**` (with the publishers' recent
    /// history) to learn the last committed end of every stream. Create it before the
    /// worker's source, so the history is in before the worker takes streams.
    pub fn new(worker: &Arc<Worker>) -> Result<Self> {
        let committed: Committed = Arc::default();
        let base = format!("{}/events/", worker.prefix());
        let pattern = format!("{base}**");
        let events_sub = {
            let committed = committed.clone();
            worker
                .session()
                .declare_subscriber(pattern.as_str())
                .history(HistoryConfig::default().detect_late_publishers())
                .callback(move |sample| {
                    if sample.kind() != SampleKind::Put {
                        return;
                    }
                    if let Some(stream) = sample.key_expr().as_str().strip_prefix(&base) {
                        observe(&committed, stream, &sample.payload().to_bytes());
                    }
                })
                .wait()
                .map_err(|e| Error::invalid("zenoh", format!("subscribing to {pattern}: {e}")))?
        };
        Ok(EventSink {
            worker: worker.clone(),
            publishers: HashMap::new(),
            ended: VecDeque::new(),
            committed,
            counters: Arc::default(),
            _events_sub: events_sub,
        })
    }

    /// The counters.
    pub fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }

    /// A cheap handle to the counters that outlives moving the sink into a callback.
    pub fn stats_handle(&self) -> impl Fn() -> SinkStats + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || counters.snapshot()
    }

    /// The sink as a [`PipelineBuilder::on_event`](crate::stream::PipelineBuilder::on_event)
    /// callback; failures are logged and counted.
    pub fn into_callback(mut self) -> impl FnMut(&SegmentEvent) + Send + 'static {
        move |event| {
            self.publish(event).ok();
        }
    }

    /// Publishes `event` unless the handover rule suppresses it; returns whether it went out.
    /// Events of streams that did not come over Zenoh are always published (under their
    /// stream id with `/`-free characters).
    pub fn publish(&mut self, event: &SegmentEvent) -> Result<bool> {
        let Some(event) = self.admit(event) else { return Ok(false) };
        let name = match zenoh_stream_name(event.stream()) {
            Some(name) => name.to_owned(),
            None => event.stream().replace(['/', '*', '$', '?', '#'], "_"),
        };
        let mut object = match serde_json::to_value(&event) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) | Err(_) => return Err(Error::invalid("event", "not a JSON object")),
        };
        object.insert("worker".into(), self.worker.id().into());
        let payload = serde_json::Value::Object(object).to_string();
        let result = self.publisher(&name).and_then(|publisher| {
            publisher.put(payload).wait().map_err(|e| {
                Error::invalid("zenoh", format!("publishing on {}: {e}", publisher.key_expr()))
            })
        });
        match result {
            Ok(()) => {
                bump(&self.counters.published);
                if let SegmentEvent::SegmentEnded { end_frame, .. } = event {
                    observe_end(&self.committed, &name, end_frame);
                }
                self.track_end(&name, matches!(event, SegmentEvent::StreamEnded { .. }));
                Ok(true)
            }
            Err(e) => {
                bump(&self.counters.failed);
                tracing::warn!(stream = %name, "event not published: {e}");
                Err(e)
            }
        }
    }

    /// Keeps [`ENDED_PUBLISHERS`] publishers of ended streams: `name` just published its end
    /// (`ended`), or an event of a life that began again.
    fn track_end(&mut self, name: &str, ended: bool) {
        if let Some(i) = self.ended.iter().position(|n| n == name) {
            self.ended.remove(i);
        }
        if !ended {
            return;
        }
        self.ended.push_back(name.to_owned());
        while self.ended.len() > ENDED_PUBLISHERS {
            if let Some(oldest) = self.ended.pop_front() {
                self.publishers.remove(&oldest);
            }
        }
    }

    fn publisher(&mut self, name: &str) -> Result<&AdvancedPublisher<'static>> {
        if !self.publishers.contains_key(name) {
            let key = events_key(self.worker.prefix(), name);
            let publisher = self
                .worker
                .session()
                .declare_publisher(key.clone())
                .congestion_control(CongestionControl::Block)
                .cache(CacheConfig::default().max_samples(EVENTS_CACHE))
                .publisher_detection()
                .wait()
                .map_err(|e| {
                    Error::invalid("zenoh", format!("declaring a publisher on {key}: {e}"))
                })?;
            self.publishers.insert(name.to_owned(), publisher);
        }
        self.publishers
            .get(name)
            .ok_or_else(|| Error::invalid("zenoh", format!("no publisher for {name}")))
    }

    /// Applies the handover rule: `None` when the event must not go out, else the event,
    /// clipped where it reaches back over the last committed end.
    fn admit(&self, event: &SegmentEvent) -> Option<SegmentEvent> {
        let Some(name) = zenoh_stream_name(event.stream()) else {
            return Some(event.clone());
        };
        // Woken from a stall, this may be the first thread to run: check before deciding.
        self.worker.note_alive(false);
        if self.worker.is_stale(name) {
            if let SegmentEvent::StreamEnded { .. } = event {
                self.worker.end_stale(name);
            }
            bump(&self.counters.suppressed_stale);
            return None;
        }
        if !self.worker.owns(name) {
            bump(&self.counters.suppressed_not_owner);
            return None;
        }
        let committed =
            self.committed.lock().unwrap_or_else(PoisonError::into_inner).get(name).copied();
        let takeover = self.worker.takeover(name).map(|t| t.frame);
        let decision = rule(event, committed, takeover);
        match &decision {
            None => bump(&self.counters.suppressed_handover),
            Some(out) if out != event => bump(&self.counters.clipped),
            Some(_) => {}
        }
        decision
    }
}

fn observe_end(committed: &Mutex<HashMap<String, u64>>, stream: &str, end: u64) {
    let mut committed = committed.lock().unwrap_or_else(PoisonError::into_inner);
    let last = committed.entry(stream.to_owned()).or_insert(end);
    *last = (*last).max(end);
}

/// The handover rule for one event of an owned stream, given the last committed end seen on
/// the events key and the takeover frame (module docs).
fn rule(
    event: &SegmentEvent,
    committed: Option<u64>,
    takeover: Option<u64>,
) -> Option<SegmentEvent> {
    let after = |frame: u64, bound: Option<u64>| bound.is_none_or(|b| frame > b);
    match event {
        SegmentEvent::SegmentStarted { start_frame, .. } => {
            let mut event = event.clone();
            if let (false, Some(c), SegmentEvent::SegmentStarted { start_frame: s, .. }) =
                (after(*start_frame, committed), committed, &mut event)
            {
                // The start time is unknown for the clipped frame; a started event only says
                // "something began": keep the given time with the clipped index.
                *s = c + 1;
            }
            Some(event)
        }
        SegmentEvent::SegmentEnded { start_frame, end_frame, start_secs, end_secs, .. } => {
            if !after(*end_frame, committed) || !after(*end_frame, takeover) {
                return None;
            }
            let mut out = event.clone();
            if let (Some(c), SegmentEvent::SegmentEnded { start_frame: s, start_secs: t, .. }) =
                (committed, &mut out)
                && *start_frame <= c
            {
                let span = end_frame.saturating_sub(*start_frame).max(1) as f64;
                let moved = (c + 1 - *start_frame) as f64;
                *s = c + 1;
                *t = start_secs + (end_secs - start_secs) * moved / span;
            }
            Some(out)
        }
        SegmentEvent::FrameLabel { frame, .. } => {
            (after(*frame, committed) && after(*frame, takeover)).then(|| event.clone())
        }
        SegmentEvent::StreamEnded { .. } => Some(event.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(start: u64, end: u64) -> SegmentEvent {
        SegmentEvent::SegmentEnded {
            stream: "zenoh:s".into(),
            label: "walk".into(),
            class: 1,
            start_frame: start,
            end_frame: end,
            start_secs: start as f64 / 10.0,
            end_secs: end as f64 / 10.0,
            confidence: 0.9,
        }
    }

    #[test]
    fn the_rule_never_repeats_or_overlaps_a_commit() {
        // No history: everything passes unchanged.
        assert_eq!(rule(&ended(0, 50), None, None), Some(ended(0, 50)));
        // Ends at or before the last committed end: already covered.
        assert_eq!(rule(&ended(10, 100), Some(100), None), None);
        // Reaches back over it: clipped to start just after, time interpolated.
        match rule(&ended(90, 120), Some(100), None) {
            Some(SegmentEvent::SegmentEnded { start_frame, start_secs, end_frame, .. }) => {
                assert_eq!((start_frame, end_frame), (101, 120));
                assert!((start_secs - 10.1).abs() < 1e-9, "{start_secs}");
            }
            other => panic!("{other:?}"),
        }
        // Ends inside the warm-up: the old owner's to commit.
        assert_eq!(rule(&ended(101, 150), Some(100), Some(160)), None);
        assert!(rule(&ended(101, 161), Some(100), Some(160)).is_some());
        let label = |frame| SegmentEvent::FrameLabel {
            stream: "zenoh:s".into(),
            frame,
            label: "walk".into(),
            class: 1,
            prob: 0.9,
            boundary_prob: 0.1,
        };
        assert_eq!(rule(&label(160), Some(100), Some(160)), None);
        assert_eq!(rule(&label(161), Some(100), Some(160)), Some(label(161)));
    }

    #[test]
    fn a_stream_run_from_before_a_stall_publishes_nothing_up_to_its_end() {
        let session = super::super::ZenohConfig::default().open().unwrap();
        let worker = Worker::join(session, "t_stale", Some("w")).unwrap();
        worker.activate().unwrap();
        let mut sink = EventSink::new(&worker).unwrap();
        worker.set_routed("s", true);
        assert!(sink.publish(&ended(0, 50)).unwrap(), "owned, no stall: published");
        worker.simulate_stall();
        assert_eq!(worker.stats().stalls, 1);
        // The run that was going when the process stalled: nothing, up to its end.
        assert!(!sink.publish(&ended(51, 80)).unwrap());
        let end = SegmentEvent::StreamEnded {
            stream: "zenoh:s".into(),
            frames: 81,
            reason: crate::source::EndReason::Shutdown,
        };
        assert!(!sink.publish(&end).unwrap());
        // The source restarted the stream as a takeover: its new run publishes.
        assert!(sink.publish(&ended(120, 150)).unwrap());
        let stats = sink.stats();
        assert_eq!((stats.published, stats.suppressed_stale), (2, 2), "{stats:?}");
    }

    #[test]
    fn publishers_of_ended_streams_are_dropped_oldest_first() {
        let session = super::super::ZenohConfig::default().open().unwrap();
        let worker = Worker::join(session, "t_publishers", Some("w")).unwrap();
        let mut sink = EventSink::new(&worker).unwrap();
        let label = |stream: &str| SegmentEvent::FrameLabel {
            stream: stream.into(),
            frame: 0,
            label: "walk".into(),
            class: 1,
            prob: 0.9,
            boundary_prob: 0.1,
        };
        let end = |stream: &str| SegmentEvent::StreamEnded {
            stream: stream.into(),
            frames: 1,
            reason: crate::source::EndReason::Closed,
        };
        // Connections come and go (streams of other sources are always published).
        let n = ENDED_PUBLISHERS + 20;
        for c in 0..n {
            let stream = format!("tcp:127.0.0.1:{c}");
            assert!(sink.publish(&label(&stream)).unwrap());
            assert!(sink.publish(&end(&stream)).unwrap());
        }
        assert_eq!(sink.publishers.len(), ENDED_PUBLISHERS);
        assert!(!sink.publishers.contains_key("tcp:127.0.0.1:19"), "the oldest went");
        assert!(sink.publishers.contains_key(&format!("tcp:127.0.0.1:{}", n - 1)));
        // A stream that is going on keeps its publisher however many others end.
        sink.publish(&label("tcp:live")).unwrap();
        for c in n..n + ENDED_PUBLISHERS + 1 {
            let stream = format!("tcp:127.0.0.1:{c}");
            sink.publish(&label(&stream)).unwrap();
            sink.publish(&end(&stream)).unwrap();
        }
        assert!(sink.publishers.contains_key("tcp:live"));
        assert_eq!(sink.publishers.len(), ENDED_PUBLISHERS + 1);
        assert_eq!(sink.stats().published, 2 * (n + ENDED_PUBLISHERS + 1) as u64 + 1);
    }

    #[test]
    fn observed_events_track_the_last_committed_end_per_stream() {
        let committed = Mutex::new(HashMap::new());
        observe(&committed, "a", br#"{"type":"segment_ended","end_frame":40,"worker":"w1"}"#);
        observe(&committed, "a", br#"{"type":"segment_ended","end_frame":30}"#);
        observe(&committed, "a", br#"{"type":"segment_started","start_frame":41}"#);
        observe(&committed, "b", b"not json");
        assert_eq!(committed.lock().unwrap().get("a"), Some(&40));
        assert_eq!(committed.lock().unwrap().get("b"), None);
        observe(&committed, "a", br#"{"type":"stream_ended","frames":99,"reason":"Closed"}"#);
        assert_eq!(committed.lock().unwrap().get("a"), None);
    }
}
