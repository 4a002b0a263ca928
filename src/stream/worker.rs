//! An inference worker ([`Worker`]): owns an engine (a model copy) and the state of the streams
//! routed to it, runs their waiting frames through the engine in batched steps under the
//! overload policy (module docs of [`super::pipeline`]), and hands finalised frames and stream
//! ends to the segmenter. [`serve`] is its thread loop.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::source::{EndReason, SourceEvent};
use crate::stream::engine::{Engine, Schedule, StreamState};
use crate::stream::latency::LatencyHistogram;
use crate::stream::memory::Trimmer;
use crate::stream::pipeline::{CHANNEL_CAPACITY, Shared, panic_message};
use crate::stream::segmenter::FinalFrame;
use crate::stream::tap::VizTap;

/// Most frames of one stream a worker takes into one engine call.
const MAX_STEP_FRAMES: usize = 256;
/// Most frames a worker holds waiting over all its streams. Past it, arrivals stay in the
/// bounded inbox, so a sender faster than inference meets the source's newest-wins queue
/// (drops counted there) instead of growing the worker's memory and latency.
const MAX_QUEUED_FRAMES: usize = CHANNEL_CAPACITY;
/// Frames a widened stream processes on time before its hop narrows one step.
const NARROW_AFTER_FRAMES: u64 = 60;

/// A source event and when it reached the pipeline.
pub(super) struct Arrival {
    pub(super) event: SourceEvent,
    pub(super) at: Instant,
    /// Whether the source delivers at the sensor's pace ([`FrameSource::is_live`]).
    pub(super) live: bool,
}

/// One life of a stream id: an id that ends and comes back is a new generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct StreamKey {
    pub(super) id: Arc<str>,
    pub(super) generation: u64,
}

/// What a worker tells the segmenter.
#[derive(Debug)]
pub(super) enum WorkerOut {
    Finals { key: StreamKey, frames: Vec<FinalFrame> },
    Ended { key: StreamKey, frames: u64, reason: EndReason },
}

/// A test fault: the worker fails once it has received this many frames (or, for
/// `FlushError`, when it flushes a stream that has).
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(super) enum Fault {
    Error(u64),
    Panic(u64),
    /// Flushing a stream that received at least this many frames fails.
    FlushError(u64),
}

/// One stream as a worker holds it.
#[derive(Debug)]
pub(super) struct WorkerStream {
    key: StreamKey,
    state: StreamState,
    /// Frames received, not yet through the engine, with their arrival.
    queue: VecDeque<(Frame, Instant)>,
    /// Set once the source ended the stream (the queue is still processed).
    ended: Option<EndReason>,
    live: bool,
    /// Consecutive steps that found the stream more than a hop behind.
    behind: u32,
    /// Frames processed on time since the last change of hop.
    on_time: u64,
}

/// An inference worker: owns an engine (model copy) and the state of its streams. The thread
/// loop ([`serve`]) calls [`Worker::ingest`] for what arrived, then [`Worker::step`]:
/// [`Worker::catch_up`] (the overload policy), [`Worker::run_due`] (one batched engine call)
/// and [`Worker::retire_ended`].
#[derive(Debug)]
pub(super) struct Worker {
    engine: Engine,
    streams: Vec<WorkerStream>,
    /// Streams created so far: generations and window phases.
    created: u64,
    viz: VizTap,
    shared: Arc<Shared>,
    latencies: LatencyHistogram,
    trimmer: Trimmer,
    /// Outputs made but not yet handed to the segmenter. A failure midway through a step
    /// leaves them here, and [`Worker::abandon`] sends them before the ends it adds.
    outbox: Vec<WorkerOut>,
    #[cfg(test)]
    pub(super) fault: Option<Fault>,
}

impl Worker {
    pub(super) fn new(engine: Engine, viz: VizTap, shared: Arc<Shared>) -> Self {
        Worker {
            engine,
            streams: Vec::new(),
            created: 0,
            viz,
            shared,
            latencies: LatencyHistogram::new(),
            trimmer: Trimmer::new(),
            outbox: Vec::new(),
            #[cfg(test)]
            fault: None,
        }
    }

    /// Frames received, not yet through the engine.
    fn queued(&self) -> usize {
        self.streams.iter().map(|s| s.queue.len()).sum()
    }

    /// Ingests what is already in the inbox, up to [`MAX_QUEUED_FRAMES`] waiting frames.
    fn take_waiting(&mut self, rx: &Receiver<Arrival>) {
        while self.queued() < MAX_QUEUED_FRAMES {
            match rx.try_recv() {
                Ok(arrival) => self.ingest(arrival),
                Err(_) => break,
            }
        }
    }

    /// Routes an arrival to its stream. A frame of an id whose stream has ended (even in this
    /// same step) starts a new stream with fresh state.
    fn ingest(&mut self, Arrival { event, at, live }: Arrival) {
        let id = event.stream().as_str();
        let pos = match self.streams.iter().position(|s| &*s.key.id == id && s.ended.is_none()) {
            Some(p) => p,
            None => {
                let key = StreamKey { id: Arc::from(id), generation: self.created };
                self.streams.push(WorkerStream {
                    key,
                    // Spread the streams' windows over the hop.
                    state: StreamState::with_phase(self.engine.config(), self.created as usize),
                    queue: VecDeque::new(),
                    ended: None,
                    live,
                    behind: 0,
                    on_time: 0,
                });
                self.created += 1;
                self.shared.stats().streams += 1;
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[pos];
        match event {
            SourceEvent::Frame { frame, .. } => {
                self.viz.frame(&stream.key.id, &frame);
                stream.queue.push_back((frame, at));
            }
            SourceEvent::Ended { reason, .. } => stream.ended = Some(reason),
        }
    }

    /// The overload policy: which windows each stream's waiting frames get (see the module
    /// docs). Widens and narrows hops as it goes.
    fn catch_up(&mut self) -> Vec<Schedule> {
        let cfg = self.engine.config().clone();
        let mut plan = Vec::with_capacity(self.streams.len());
        for s in &mut self.streams {
            let waiting = s.queue.len() as u64;
            let hop = s.state.hop_frames() as u64;
            let mut schedule = Schedule::Every;
            if !(s.live && cfg.catch_up) || waiting == 0 {
                plan.push(schedule);
                continue;
            }
            if waiting > hop {
                s.behind += 1;
                s.on_time = 0;
                // Behind again after a batched catch-up: the worker is slower than real time.
                if s.behind >= 2 {
                    if s.state.widen(&cfg) {
                        s.behind = 0;
                        tracing::warn!(
                            stream = %s.key.id,
                            hop = s.state.hop_frames(),
                            waiting,
                            "inference is falling behind: hop widened"
                        );
                    } else if waiting > 2 * hop {
                        schedule = Schedule::Skip;
                        tracing::warn!(
                            stream = %s.key.id,
                            hop,
                            waiting,
                            "inference is falling behind at the widest hop: skipping windows"
                        );
                    }
                }
            } else {
                s.behind = 0;
                s.on_time += waiting;
                if s.on_time >= NARROW_AFTER_FRAMES && s.state.narrow(&cfg) {
                    s.on_time = 0;
                    tracing::info!(stream = %s.key.id, hop = s.state.hop_frames(), "hop narrowed");
                }
            }
            plan.push(schedule);
        }
        plan
    }

    /// Runs the waiting frames (up to [`MAX_STEP_FRAMES`] per stream) through the engine in one
    /// batched call; returns the finalised frames per stream.
    fn run_due(&mut self, plan: &[Schedule]) -> Result<Vec<Vec<FinalFrame>>> {
        #[cfg(test)]
        self.check_fault(
            self.streams.iter().map(|s| s.queue.len().min(MAX_STEP_FRAMES) as u64).sum(),
        )?;
        let mut taken: Vec<(usize, Vec<Frame>, Vec<Instant>)> = Vec::new();
        for (i, s) in self.streams.iter_mut().enumerate() {
            let n = s.queue.len().min(MAX_STEP_FRAMES);
            if n > 0 {
                let (frames, arrivals) = s.queue.drain(..n).unzip();
                taken.push((i, frames, arrivals));
            }
        }
        let mut out = vec![Vec::new(); self.streams.len()];
        if taken.is_empty() {
            return Ok(out);
        }
        let pushed = {
            let mut wanted = taken.iter().map(|t| t.0).peekable();
            let mut batch = Vec::with_capacity(taken.len());
            for (i, s) in self.streams.iter_mut().enumerate() {
                if wanted.peek() == Some(&i) {
                    wanted.next();
                    batch.push(&mut s.state);
                }
            }
            let mut batch: Vec<(&mut StreamState, &[Frame], Schedule)> = batch
                .into_iter()
                .zip(&taken)
                .map(|(state, (i, frames, _))| (state, &frames[..], plan[*i]))
                .collect();
            self.engine.push_timed(&mut batch)?
        };
        self.shared.stats().forward_batches += 1;
        for ((i, _, arrivals), p) in taken.into_iter().zip(pushed) {
            for t in p.triggers {
                self.latencies.record(arrivals[t].elapsed().as_secs_f64() * 1e3);
            }
            out[i] = p.finals;
        }
        Ok(out)
    }

    /// Turns finalised frames into outputs, in stream order, and retires the streams that have
    /// ended and have nothing waiting: their pending frames are flushed, their counters added
    /// to the pipeline's, and they are forgotten (an id that comes back starts afresh). A stream
    /// leaves [`Worker::streams`] only once it has ended, so a failure here leaves the rest
    /// for [`Worker::abandon`].
    fn retire_ended(&mut self, finals: Vec<Vec<FinalFrame>>) -> Result<()> {
        for (s, frames) in self.streams.iter().zip(finals) {
            if !frames.is_empty() {
                self.outbox.push(WorkerOut::Finals { key: s.key.clone(), frames });
            }
        }
        let mut i = 0;
        while i < self.streams.len() {
            match &self.streams[i] {
                WorkerStream { ended: Some(reason), queue, .. } if queue.is_empty() => {
                    let reason = reason.clone();
                    self.end(i, reason)?;
                }
                _ => i += 1,
            }
        }
        Ok(())
    }

    /// One step over what has been ingested; returns what it made for the segmenter.
    fn step(&mut self) -> Result<Vec<WorkerOut>> {
        let plan = self.catch_up();
        let waiting = self.queued();
        let finals = self.run_due(&plan)?;
        self.retire_ended(finals)?;
        let left = self.queued();
        let trimmed = self.trimmer.after_step(waiting - left, left == 0);
        if self.latencies.count() > 0 || trimmed.is_some() {
            let mut stats = self.shared.stats();
            // Merged and reset in place: a step allocates nothing.
            stats.latency.merge(&self.latencies);
            if let Some(took) = trimmed {
                stats.memory_trims += 1;
                stats.memory_trim_ms += took.as_secs_f64() * 1e3;
            }
            self.latencies.clear();
        }
        Ok(std::mem::take(&mut self.outbox))
    }

    /// Every source is gone: ends the streams still open.
    fn finish(&mut self) -> Result<Vec<WorkerOut>> {
        while let Some(s) = self.streams.first() {
            let reason = s.ended.clone().unwrap_or(EndReason::Shutdown);
            self.end(0, reason)?;
        }
        Ok(std::mem::take(&mut self.outbox))
    }

    /// Flushes stream `i`, adds its counters, reports its end and forgets it. On a failure the
    /// stream stays, for [`Worker::abandon`] to end.
    fn end(&mut self, i: usize, reason: EndReason) -> Result<()> {
        #[cfg(test)]
        if let Some(Fault::FlushError(ended)) = self.fault
            && self.streams[i].state.counters().frames >= ended
        {
            return Err(Error::invalid("test fault", "libtorch failed at a flush"));
        }
        let frames = self.engine.flush(&mut self.streams[i].state)?;
        let s = self.streams.remove(i);
        self.shared.stats().add(&s.state);
        if !frames.is_empty() {
            self.outbox.push(WorkerOut::Finals { key: s.key.clone(), frames });
        }
        let received = s.state.counters().frames;
        self.outbox.push(WorkerOut::Ended { key: s.key, frames: received, reason });
        Ok(())
    }

    /// After a failure: what the failed step had already made, then every stream ended with
    /// what can still be finalised (nothing more if the engine fails again), counting the
    /// frames that never went through it.
    fn abandon(&mut self) -> Vec<WorkerOut> {
        let mut outs = std::mem::take(&mut self.outbox);
        for mut s in std::mem::take(&mut self.streams) {
            self.shared.stats().unprocessed_frames += s.queue.len() as u64;
            let engine = &self.engine;
            let state = &mut s.state;
            match catch_unwind(AssertUnwindSafe(|| engine.flush(state))) {
                Ok(Ok(frames)) if !frames.is_empty() => {
                    outs.push(WorkerOut::Finals { key: s.key.clone(), frames })
                }
                _ => {}
            }
            self.shared.stats().add(&s.state);
            let received = s.state.counters().frames;
            outs.push(WorkerOut::Ended {
                key: s.key,
                frames: received,
                reason: EndReason::InferenceFailed,
            });
        }
        outs
    }

    #[cfg(test)]
    fn check_fault(&mut self, frames: u64) -> Result<()> {
        let received: u64 = self.streams.iter().map(|s| s.state.counters().frames).sum();
        match self.fault {
            Some(Fault::Error(n)) if received + frames >= n => {
                Err(Error::invalid("test fault", "libtorch failed"))
            }
            Some(Fault::Panic(n)) if received + frames >= n => panic!("test fault"),
            _ => Ok(()),
        }
    }
}

/// The worker thread: steps until every pump is gone, then ends its streams. A failure (an
/// error or a panic) stops the pipeline and ends this worker's streams with what was finalised.
pub(super) fn serve(
    mut worker: Worker,
    rx: Receiver<Arrival>,
    tx: Sender<WorkerOut>,
    shared: &Shared,
) -> Result<()> {
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        loop {
            if worker.queued() == 0 {
                // Block for the next arrival, then take whatever else is already there.
                match rx.recv() {
                    Ok(first) => worker.ingest(first),
                    Err(_) => break,
                }
            }
            worker.take_waiting(&rx);
            for out in worker.step()? {
                if tx.send(out).is_err() {
                    return Ok(()); // the segmenter is gone
                }
            }
        }
        for out in worker.finish()? {
            tx.send(out).ok();
        }
        Ok(())
    }));
    let error = match run {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(panic) => {
            Error::invalid("inference worker", format!("panicked: {}", panic_message(&*panic)))
        }
    };
    tracing::error!(error = %error, "inference failed: shutting the pipeline down");
    shared.stop.store(true, Ordering::Relaxed);
    // Nobody may wait on this inbox any more (a pump blocked on a full one would hang).
    drop(rx);
    for out in worker.abandon() {
        if tx.send(out).is_err() {
            break;
        }
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use crate::stream::testing::{bundled_model, bundled_recording};

    use tch::Device;

    use super::*;
    use crate::source::StreamId;
    use crate::stream::EngineConfig;
    use crate::stream::pipeline::PipelineStats;

    fn worker(cfg: EngineConfig) -> Worker {
        let engine = Engine::new(bundled_model().model, Device::Cpu, cfg).unwrap();
        Worker::new(engine, VizTap::off(), Arc::new(Shared::new(PipelineStats::default())))
    }

    fn frame(id: &str, frame: &Frame, live: bool) -> Arrival {
        let event = SourceEvent::Frame { stream: StreamId::new(id), frame: frame.clone() };
        Arrival { event, at: Instant::now(), live }
    }

    fn ended(id: &str) -> Arrival {
        let event = SourceEvent::Ended { stream: StreamId::new(id), reason: EndReason::Idle };
        Arrival { event, at: Instant::now(), live: true }
    }

    /// `(generation, first index, last index)` of each `Finals` output, and the `Ended` ones as
    /// `(generation, frames)`.
    fn finalised(outs: &[WorkerOut]) -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match o {
                WorkerOut::Finals { frames, .. } => Some(frames.iter().map(|f| f.index)),
                WorkerOut::Ended { .. } => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_stream_that_ends_and_comes_back_in_the_same_step_starts_afresh() {
        let rec = bundled_recording("r");
        let mut w = worker(EngineConfig::default());
        w.ingest(frame("udp:a", &rec.frames[0], true));
        w.ingest(frame("udp:a", &rec.frames[1], true));
        w.ingest(ended("udp:a"));
        w.ingest(frame("udp:a", &rec.frames[2], true));
        assert_eq!(w.streams.len(), 2);
        assert_eq!(w.streams[0].queue.len(), 2, "the old stream keeps its own frames");
        assert_eq!(w.streams[1].queue.len(), 1, "the frame after the end is the new stream's");
        let outs = w.step().unwrap();
        // The old stream is flushed and ended first; the new one stays, with one frame.
        match outs.as_slice() {
            [
                WorkerOut::Finals { key: k1, frames },
                WorkerOut::Ended { key: k2, frames: received, reason },
            ] => {
                assert_eq!((k1.generation, k2.generation), (0, 0));
                assert_eq!(frames.iter().map(|f| f.index).collect::<Vec<_>>(), vec![0, 1]);
                assert_eq!((*received, reason), (2, &EndReason::Idle));
            }
            other => panic!("unexpected outputs {other:?}"),
        }
        assert_eq!(w.streams.len(), 1);
        assert_eq!(w.streams[0].key.generation, 1);
        assert_eq!(w.streams[0].state.counters().frames, 1, "fresh state");
        let outs = w.finish().unwrap();
        assert_eq!(finalised(&outs), vec![2]);
    }

    #[test]
    fn a_live_stream_behind_widens_its_hop_before_it_skips_and_never_loses_a_frame() {
        let rec = bundled_recording("r");
        let cfg = EngineConfig::default();
        let mut w = worker(cfg.clone());
        let mut next = 0;
        let mut outs = Vec::new();
        let mut step = |w: &mut Worker, n: usize| {
            for f in &rec.frames[next..next + n] {
                w.ingest(frame("tcp:a", f, true));
            }
            next += n;
            outs.extend(w.step().unwrap());
            w.streams[0].state.hop_frames()
        };
        // Ten frames a step against a hop of 4: behind once is caught up in one batch, behind
        // twice in a row widens.
        let hops: Vec<usize> = (0..5).map(|_| step(&mut w, 10)).collect();
        assert_eq!(hops, vec![4, 8, 8, 16, 16]);
        assert_eq!(w.streams[0].state.counters().skipped_windows, 0);
        // Forty a step at the widest hop: windows are skipped.
        step(&mut w, 40);
        step(&mut w, 40);
        assert!(w.streams[0].state.counters().skipped_windows > 0);
        // On time again: the hop narrows back one step per 60 frames.
        let hops: Vec<usize> = (0..130).map(|_| step(&mut w, 1)).collect();
        assert_eq!((hops[58], hops[60], hops[125]), (16, 8, 4), "{hops:?}");
        outs.extend(w.finish().unwrap());
        assert_eq!(finalised(&outs), (0..next as u64).collect::<Vec<_>>(), "every frame, once");
        let stats = w.shared.stats();
        assert_eq!((stats.widenings, stats.max_hop_frames), (2, 16));
        assert!(stats.skipped_windows > 0);
    }

    #[test]
    fn a_worker_holds_a_bounded_backlog_and_leaves_the_rest_in_its_inbox() {
        let rec = bundled_recording("r");
        let mut w = worker(EngineConfig::default());
        let (tx, rx) = crossbeam_channel::bounded(3 * MAX_QUEUED_FRAMES);
        for f in rec.frames.iter().cycle().take(3 * MAX_QUEUED_FRAMES) {
            tx.send(frame("tcp:a", f, true)).unwrap();
        }
        w.take_waiting(&rx);
        assert_eq!(w.queued(), MAX_QUEUED_FRAMES);
        w.step().unwrap();
        let left = w.queued();
        assert_eq!(left, MAX_QUEUED_FRAMES - MAX_STEP_FRAMES, "a step takes a bounded batch");
        // A step's worth comes in again, no more: the rest waits (and the inbox, being
        // bounded, pushes back to the source's newest-wins queue).
        w.take_waiting(&rx);
        assert_eq!(w.queued(), MAX_QUEUED_FRAMES);
        assert_eq!(rx.len(), 3 * MAX_QUEUED_FRAMES - MAX_QUEUED_FRAMES - MAX_STEP_FRAMES);
    }

    #[test]
    fn a_failed_flush_keeps_the_stream_and_the_outputs_made_before_it_for_abandon() {
        let rec = bundled_recording("r");
        let mut w = worker(EngineConfig::default());
        w.fault = Some(Fault::FlushError(40));
        for f in &rec.frames[..60] {
            w.ingest(frame("udp:a", f, true));
            w.ingest(frame("udp:b", f, true));
        }
        w.ingest(ended("udp:a"));
        assert!(w.step().is_err(), "flushing a fails");
        assert_eq!(w.streams.len(), 2, "neither stream is lost");
        let outs = w.abandon();
        let ends: Vec<(&str, u64)> = outs
            .iter()
            .filter_map(|o| match o {
                WorkerOut::Ended { key, frames, reason } => {
                    assert_eq!(reason, &EndReason::InferenceFailed);
                    Some((&*key.id, *frames))
                }
                WorkerOut::Finals { .. } => None,
            })
            .collect();
        assert_eq!(ends, vec![("udp:a", 60), ("udp:b", 60)]);
        // The windows the failed step ran were finalised before the failure: they are sent.
        let mut by_stream = std::collections::HashMap::<&str, Vec<u64>>::new();
        for o in &outs {
            if let WorkerOut::Finals { key, frames } = o {
                by_stream.entry(&key.id).or_default().extend(frames.iter().map(|f| f.index));
            }
        }
        for id in ["udp:a", "udp:b"] {
            let got = &by_stream[id];
            assert_eq!(got, &(0..got.len() as u64).collect::<Vec<_>>(), "{id}: in order, once");
            assert!(got.len() >= 40, "{id}: {} frames finalised", got.len());
        }
    }

    #[test]
    fn a_replay_runs_every_window_however_far_behind() {
        let rec = bundled_recording("r");
        let mut w = worker(EngineConfig::default());
        for f in &rec.frames[..300] {
            w.ingest(frame("file:r", f, false));
        }
        let mut outs = w.step().unwrap();
        assert_eq!(w.streams[0].queue.len(), 300 - MAX_STEP_FRAMES, "a step takes a bounded batch");
        outs.extend(w.step().unwrap());
        outs.extend(w.finish().unwrap());
        assert_eq!(finalised(&outs), (0..300).collect::<Vec<_>>());
        let stats = w.shared.stats();
        assert_eq!((stats.skipped_windows, stats.widenings), (0, 0));
        // Windows at 16, 20, …, 300 (hop 4 once 15 frames of lookahead exist), and the flush.
        assert_eq!(stats.windows, (300 - 16) / 4 + 1 + 1);
        assert_eq!(stats.forward_batches, 2);
    }
}
