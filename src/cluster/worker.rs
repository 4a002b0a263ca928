//! [`Worker`]: membership by liveliness and the rendezvous rule that shares streams out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Subscriber;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

use crate::error::{Error, Result};

use super::{DEFAULT_LEASE_MS, check_chunk, worker_key};

/// How long the initial liveliness query waits for the other workers' tokens.
const MEMBERS_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// FNV-1a, 64 bits: stable across processes, machines and releases (unlike `std`'s hasher),
/// which the rendezvous rule needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64's finaliser: spreads FNV's weak low bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous (highest random weight) score of `worker` for `stream`.
fn score(worker: &str, stream: &str) -> u64 {
    mix(fnv1a(worker.as_bytes()) ^ mix(fnv1a(stream.as_bytes())))
}

/// The owner of `stream` among `workers`: the highest score, ties to the smaller id. Moving
/// from n to n+1 workers moves about 1/(n+1) of the streams, all of them to the newcomer.
pub fn owner<'a>(workers: impl IntoIterator<Item = &'a str>, stream: &str) -> Option<&'a str> {
    workers.into_iter().max_by(|a, b| score(a, stream).cmp(&score(b, stream)).then(b.cmp(a)))
}

/// Counters of a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    /// Membership changes seen (joins and leaves of any worker, this one included).
    pub membership_changes: u64,
    /// Streams this worker took over from another (warm-up included).
    pub takeovers: u64,
    /// Streams this worker handed over.
    pub handovers: u64,
    /// Times this process was found stalled for a lease or longer (frozen, suspended, starved)
    /// and fenced the streams it was running (module docs of [`crate::cluster`], "Fencing").
    pub stalls: u64,
}

/// Stall detection and the fence it raises (see "Fencing" in [`crate::cluster`]).
#[derive(Debug)]
struct Fence {
    origin: Instant,
    /// When the process was last seen running, in ms since `origin`.
    last_alive_ms: AtomicU64,
    /// Set once a source notes liveness on a timer: only then is a long silence a stall.
    armed: AtomicBool,
    /// Stalls so far; a stream run that began in an older epoch is stale.
    epoch: AtomicU64,
    /// Streams whose frames go to this worker's pipeline now.
    routed: Mutex<BTreeSet<String>>,
    /// Streams whose pipeline runs began before a stall, with how many such runs have not
    /// ended yet: two stalls in a row can fence two runs of one stream (the second stall comes
    /// before the first run's end has gone by), and each end clears one.
    stale: Mutex<BTreeMap<String, usize>>,
}

impl Fence {
    fn new() -> Self {
        Fence {
            origin: Instant::now(),
            last_alive_ms: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            routed: Mutex::new(BTreeSet::new()),
            stale: Mutex::new(BTreeMap::new()),
        }
    }

    /// Notes that the process runs at `now_ms`; raises the fence when it was last seen running
    /// a lease or more ago. Of two threads waking from the same stall only one raises it.
    fn alive_at(&self, now_ms: u64, arm: bool, id: &str) -> bool {
        let last = self.last_alive_ms.fetch_max(now_ms, Ordering::SeqCst);
        let armed = if arm {
            self.armed.swap(true, Ordering::SeqCst)
        } else {
            self.armed.load(Ordering::SeqCst)
        };
        if !armed || now_ms.saturating_sub(last) < DEFAULT_LEASE_MS {
            return false;
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut routed = lock(&self.routed);
        tracing::warn!(
            worker = %id,
            stalled_ms = now_ms - last,
            streams = ?&*routed,
            "this process stalled for a lease or longer: its peers may have handed its streams \
             over; they restart here as takeovers and their earlier run publishes nothing more"
        );
        // Each run is fenced once: the fence empties `routed`, and a stream restarted after
        // it is routed again as a new run.
        let mut stale = lock(&self.stale);
        for stream in std::mem::take(&mut *routed) {
            *stale.entry(stream).or_default() += 1;
        }
        true
    }

    fn is_stale(&self, stream: &str) -> bool {
        lock(&self.stale).contains_key(stream)
    }

    fn end_stale(&self, stream: &str) {
        let mut stale = lock(&self.stale);
        if let Some(runs) = stale.get_mut(stream) {
            *runs -= 1;
            if *runs == 0 {
                stale.remove(stream);
            }
        }
    }
}

/// Where a stream was taken over: the newest frame of the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Takeover {
    pub(crate) frame: u64,
}

/// One skelseg worker in a Zenoh system: its session, id, view of the live workers, and the
/// handover bookkeeping shared by its source and its event sink. Share it in an [`Arc`].
///
/// Joining is two steps: [`Worker::join`] watches the membership without taking part; the
/// [`ZenohSource`](crate::source::zenoh::ZenohSource) declares the token once its
/// subscription (and the history it fetches) is in place, so that the worker never owns a
/// stream it cannot warm up.
pub struct Worker {
    session: Session,
    prefix: String,
    id: String,
    members: Arc<Mutex<BTreeSet<String>>>,
    token: Mutex<Option<LivelinessToken>>,
    leaving: AtomicBool,
    takeovers: Mutex<HashMap<String, Takeover>>,
    changes: Arc<AtomicU64>,
    takeover_count: AtomicU64,
    handover_count: AtomicU64,
    stall_count: AtomicU64,
    fence: Fence,
    /// An observer takes every stream and holds no token (`skelseg record`).
    observer: bool,
    _members_sub: Option<Subscriber<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("prefix", &self.prefix).field("id", &self.id).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert/remove: a poisoned lock still holds a consistent value.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    /// Watches the workers under `prefix` on `session` (a liveliness subscriber with history,
    /// then a liveliness query so the view is complete on return). `id` defaults to the
    /// session's Zenoh id.
    pub fn join(session: Session, prefix: &str, id: Option<&str>) -> Result<Arc<Self>> {
        check_chunk("key prefix", prefix)?;
        let id = id.map_or_else(|| session.zid().to_string(), str::to_owned);
        check_chunk("worker id", &id)?;
        let members = Arc::new(Mutex::new(BTreeSet::new()));
        let changes = Arc::new(AtomicU64::new(0));
        let pattern = format!("{prefix}/workers/*");
        let worker_of = {
            let base = format!("{prefix}/workers/");
            move |key: &str| key.strip_prefix(&base).map(str::to_owned)
        };
        let members_sub = {
            let (members, changes, worker_of) =
                (members.clone(), changes.clone(), worker_of.clone());
            session
                .liveliness()
                .declare_subscriber(pattern.as_str())
                .history(true)
                .callback(move |sample| {
                    let Some(worker) = worker_of(sample.key_expr().as_str()) else { return };
                    let mut members = lock(&members);
                    let changed = match sample.kind() {
                        SampleKind::Put => members.insert(worker.clone()),
                        SampleKind::Delete => members.remove(&worker),
                    };
                    if changed {
                        changes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%worker, kind = ?sample.kind(), workers = ?&*members, "worker membership changed");
                    }
                })
                .wait()
                .map_err(|e| Error::invalid("zenoh", format!("subscribing to {pattern}: {e}")))?
        };
        let replies = session
            .liveliness()
            .get(pattern.as_str())
            .timeout(MEMBERS_QUERY_TIMEOUT)
            .wait()
            .map_err(|e| Error::invalid("zenoh", format!("querying {pattern}: {e}")))?;
        while let Ok(reply) = replies.recv() {
            if let Ok(sample) = reply.result()
                && let Some(worker) = worker_of(sample.key_expr().as_str())
            {
                lock(&members).insert(worker);
            }
        }
        tracing::info!(%id, workers = ?&*lock(&members), "watching workers");
        Ok(Arc::new(Worker {
            session,
            prefix: prefix.to_owned(),
            id,
            members,
            token: Mutex::new(None),
            leaving: AtomicBool::new(false),
            takeovers: Mutex::new(HashMap::new()),
            changes,
            takeover_count: AtomicU64::new(0),
            handover_count: AtomicU64::new(0),
            stall_count: AtomicU64::new(0),
            fence: Fence::new(),
            observer: false,
            _members_sub: Some(members_sub),
        }))
    }

    /// An observer under `prefix`: a [`ZenohSource`](crate::source::zenoh::ZenohSource) on it
    /// takes every stream, whoever owns it, and it never declares a token, so the workers'
    /// share is unchanged (what `skelseg record --source zenoh:...` uses). `id` only names it
    /// in logs and published events (default: the session's Zenoh id).
    pub fn observe(session: Session, prefix: &str, id: Option<&str>) -> Result<Arc<Self>> {
        check_chunk("key prefix", prefix)?;
        let id = id.map_or_else(|| session.zid().to_string(), str::to_owned);
        check_chunk("worker id", &id)?;
        tracing::info!(%id, prefix, "observing every stream (no worker token)");
        Ok(Arc::new(Worker {
            session,
            prefix: prefix.to_owned(),
            id,
            members: Arc::new(Mutex::new(BTreeSet::new())),
            token: Mutex::new(None),
            leaving: AtomicBool::new(false),
            takeovers: Mutex::new(HashMap::new()),
            changes: Arc::new(AtomicU64::new(0)),
            takeover_count: AtomicU64::new(0),
            handover_count: AtomicU64::new(0),
            stall_count: AtomicU64::new(0),
            fence: Fence::new(),
            observer: true,
            _members_sub: None,
        }))
    }

    /// Whether this is an [observer](Worker::observe).
    pub fn is_observer(&self) -> bool {
        self.observer
    }

    /// Declares this worker's liveliness token: from now on it owns its share of the streams.
    /// Idempotent.
    /// Does nothing for an observer.
    pub fn activate(&self) -> Result<()> {
        let mut token = lock(&self.token);
        if token.is_some() || self.observer || self.leaving.load(Ordering::Relaxed) {
            return Ok(());
        }
        let key = worker_key(&self.prefix, &self.id);
        *token = Some(
            self.session
                .liveliness()
                .declare_token(key.as_str())
                .wait()
                .map_err(|e| Error::invalid("zenoh", format!("declaring {key}: {e}")))?,
        );
        // Our own token reaches our subscriber too, but maybe later: count ourselves now.
        lock(&self.members).insert(self.id.clone());
        tracing::info!(id = %self.id, key, "worker active");
        Ok(())
    }

    /// Leaves: drops the token (the others take the streams over at once) and owns nothing
    /// from now on. Called when the source is dropped.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        if let Some(token) = lock(&self.token).take() {
            if let Err(e) = token.undeclare().wait() {
                tracing::warn!(id = %self.id, "undeclaring the worker token: {e}");
            }
            tracing::info!(id = %self.id, "worker left");
        }
        lock(&self.members).remove(&self.id);
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The live workers as this worker sees them, sorted.
    pub fn members(&self) -> Vec<String> {
        lock(&self.members).iter().cloned().collect()
    }

    /// The worker that owns `stream` in this worker's view.
    pub fn owner_of(&self, stream: &str) -> Option<String> {
        let members = lock(&self.members);
        owner(members.iter().map(String::as_str), stream).map(str::to_owned)
    }

    /// Whether this worker owns `stream` now (never after [`Worker::leave`], never before
    /// [`Worker::activate`]; an observer owns every stream until it leaves).
    pub fn owns(&self, stream: &str) -> bool {
        if self.leaving.load(Ordering::Relaxed) {
            return false;
        }
        if self.observer {
            return true;
        }
        let members = lock(&self.members);
        members.contains(&self.id)
            && owner(members.iter().map(String::as_str), stream) == Some(self.id.as_str())
    }

    /// The counters.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            membership_changes: self.changes.load(Ordering::Relaxed),
            takeovers: self.takeover_count.load(Ordering::Relaxed),
            handovers: self.handover_count.load(Ordering::Relaxed),
            stalls: self.stall_count.load(Ordering::Relaxed),
        }
    }

    /// Notes that this process is running. The source calls it on a timer (`arm`), the event
    /// sink before every publication; the first call after a stall of a lease or more (the
    /// peers may have dropped this worker meanwhile) fences the streams being run: their
    /// current run is stale ([`Worker::is_stale`]) and the source restarts them. An observer
    /// never fences.
    pub(crate) fn note_alive(&self, arm: bool) {
        if self.observer {
            return;
        }
        let now_ms = self.fence.origin.elapsed().as_millis() as u64;
        if self.fence.alive_at(now_ms, arm, &self.id) {
            self.stall_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stalls so far: a stream whose run began in an older epoch must be restarted.
    pub(crate) fn epoch(&self) -> u64 {
        self.fence.epoch.load(Ordering::SeqCst)
    }

    /// Records whether the source routes `stream`'s frames to the pipeline.
    pub(crate) fn set_routed(&self, stream: &str, routed: bool) {
        let mut set = lock(&self.fence.routed);
        if routed {
            set.insert(stream.to_owned());
        } else {
            set.remove(stream);
        }
    }

    /// Whether `stream`'s current pipeline run began before a stall: none of its events may
    /// go out, up to and including its `stream_ended` ([`Worker::end_stale`]).
    pub(crate) fn is_stale(&self, stream: &str) -> bool {
        self.fence.is_stale(stream)
    }

    /// The oldest stale run of `stream` has ended.
    pub(crate) fn end_stale(&self, stream: &str) {
        self.fence.end_stale(stream);
    }

    /// Raises the fence as a stall of one lease from now would.
    #[cfg(test)]
    pub(crate) fn simulate_stall(&self) {
        let now_ms = self.fence.origin.elapsed().as_millis() as u64;
        self.fence.alive_at(now_ms, true, &self.id);
        if self.fence.alive_at(now_ms + DEFAULT_LEASE_MS, false, &self.id) {
            self.stall_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that this worker took `stream` over with a warm-up ending at `frame`.
    pub(crate) fn took_over(&self, stream: &str, frame: Option<u64>) {
        let mut takeovers = lock(&self.takeovers);
        match frame {
            Some(frame) => {
                self.takeover_count.fetch_add(1, Ordering::Relaxed);
                takeovers.insert(stream.to_owned(), Takeover { frame });
            }
            None => {
                takeovers.remove(stream);
            }
        }
    }

    /// Records that this worker handed `stream` over.
    pub(crate) fn handed_over(&self, stream: &str) {
        self.handover_count.fetch_add(1, Ordering::Relaxed);
        lock(&self.takeovers).remove(stream);
    }

    /// Where this worker took `stream` over, if it did.
    pub(crate) fn takeover(&self, stream: &str) -> Option<Takeover> {
        lock(&self.takeovers).get(stream).copied()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_moves_only_to_the_newcomer() {
        let streams: Vec<String> = (0..400).map(|i| format!("ward/bed{i}")).collect();
        let two = ["a", "b"];
        let three = ["a", "b", "c"];
        let mut moved = 0;
        let mut counts = HashMap::new();
        for s in &streams {
            let before = owner(two, s).unwrap();
            let after = owner(three, s).unwrap();
            // Order of the ids does not matter.
            assert_eq!(owner(["c", "b", "a"], s), Some(after));
            if before != after {
                assert_eq!(after, "c", "{s} moved between old workers");
                moved += 1;
            }
            *counts.entry(after).or_insert(0) += 1;
        }
        // About a third moves; every worker gets a fair share.
        assert!((90..=180).contains(&moved), "{moved}");
        for w in three {
            assert!((90..=180).contains(&counts[w]), "{counts:?}");
        }
        assert_eq!(owner([], "s"), None);
        // Fixed values: the rule must not change between releases (mixed versions share work).
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_silence_of_a_lease_fences_the_routed_streams_once() {
        let fence = Fence::new();
        lock(&fence.routed).extend(["a".to_owned(), "b".to_owned()]);
        // Not armed (no timer runs yet): a long silence between events is no stall.
        assert!(!fence.alive_at(10 * DEFAULT_LEASE_MS, false, "w"));
        assert!(!fence.alive_at(10 * DEFAULT_LEASE_MS + 50, true, "w"));
        // Ticks closer than a lease: running.
        assert!(!fence.alive_at(10 * DEFAULT_LEASE_MS + 100, true, "w"));
        assert_eq!(fence.epoch.load(Ordering::SeqCst), 0);
        // Frozen for a lease: whoever wakes first raises the fence, the next does not.
        let woke = 11 * DEFAULT_LEASE_MS + 100;
        assert!(fence.alive_at(woke, false, "w"));
        assert!(!fence.alive_at(woke + 1, true, "w"));
        // A clock read before the stall by a slower thread does not count again.
        assert!(!fence.alive_at(woke - 10, true, "w"));
        assert_eq!(fence.epoch.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&fence.stale).keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(lock(&fence.routed).is_empty());
    }

    #[test]
    fn two_stalls_fence_two_runs_of_a_stream_and_each_end_clears_one() {
        let fence = Fence::new();
        let lease = DEFAULT_LEASE_MS;
        assert!(!fence.alive_at(0, true, "w"));
        // Run 1 is fenced; the stream restarts as run 2, which a second stall fences before
        // run 1's end has gone by.
        lock(&fence.routed).insert("s".to_owned());
        assert!(fence.alive_at(lease, true, "w"));
        lock(&fence.routed).insert("s".to_owned());
        assert!(fence.alive_at(2 * lease, true, "w"));
        assert!(fence.is_stale("s"));
        fence.end_stale("s");
        assert!(fence.is_stale("s"), "run 2 began before the second stall: still stale");
        fence.end_stale("s");
        assert!(!fence.is_stale("s"));
        fence.end_stale("s");
        assert!(!fence.is_stale("s"), "an end without a stale run changes nothing");
    }
}
