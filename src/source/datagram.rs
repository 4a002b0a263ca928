//! The one server behind every datagram source: `udp:` (`skeleton-ndjson/1`, one object per
//! datagram) and `osc` (KinectV2-OSC). It owns what the two share, so the bounds and the
//! lifecycle are the same for both:
//!
//! - a peer table: each sender address is a stream `KIND:PEER` with its own decoder, at most
//!   [`NetConfig::max_connections`] at once (more are refused and counted);
//! - datagrams over [`NetConfig::max_line_bytes`] are counted skips (`Oversize`);
//! - a peer that sends nothing for [`NetConfig::idle_timeout`] is flushed and ends with
//!   [`EndReason::Idle`]; if it sends again it is a new life of the same id with a fresh decoder;
//! - on shutdown every peer is flushed and ends with [`EndReason::Shutdown`];
//! - every rejected datagram, message or body is a counted skip, logged a few times per stream.
//!
//! A protocol is a [`DatagramDecoder`]: what one peer's datagrams mean, nothing about sockets.
//! [`Peers`] is synchronous (times are passed in), so the lifecycle is tested without sockets;
//! [`serve`] is the socket loop around it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::frame::Frame;
use crate::io::ndjson::Rejected;

use super::ingress::Ingress;
use super::net::{NetConfig, SkipLog, sleep_until, wait_shutdown};
use super::{EndReason, StreamId};

/// What a decoder makes of a datagram (or of time passing).
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// Something rejected: counted by its reason, logged with its location.
    Skip(Rejected),
}

/// One peer's datagram protocol.
pub(crate) trait DatagramDecoder: Sized {
    /// Stream ids are `KIND:PEER`; also the source's name in logs.
    const KIND: &'static str;

    /// A fresh decoder for a new peer (or a new life of one).
    fn new(stream: &StreamId, cfg: &NetConfig) -> Self;

    /// One datagram within the size limit, received at `now`.
    fn on_datagram(&mut self, datagram: &[u8], now: Instant, out: &mut Vec<Decoded>);

    /// A datagram of `len` bytes, over the limit of `limit` (not decoded).
    fn on_oversize(&mut self, len: usize, limit: usize, out: &mut Vec<Decoded>);

    /// When [`DatagramDecoder::on_tick`] must run even if nothing arrives (a pending frame).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Time passed (at or after a deadline).
    fn on_tick(&mut self, _now: Instant, _out: &mut Vec<Decoded>) {}

    /// The stream ends: emit whatever is pending.
    fn flush(&mut self, _now: Instant, _out: &mut Vec<Decoded>) {}
}

/// Per-peer state.
struct Peer<D> {
    stream: StreamId,
    decoder: D,
    log: SkipLog,
    last_seen: Instant,
}

/// The peer table of one datagram socket.
pub(crate) struct Peers<D> {
    cfg: NetConfig,
    peers: HashMap<SocketAddr, Peer<D>>,
    out: Vec<Decoded>,
    refused_logged: bool,
}

impl<D: DatagramDecoder> Peers<D> {
    pub(crate) fn new(cfg: NetConfig) -> Self {
        Peers { cfg, peers: HashMap::new(), out: Vec::new(), refused_logged: false }
    }

    /// Peers being served.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// When [`Peers::on_timer`] must run: the earliest decoder deadline or idle-out.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| [p.decoder.deadline(), Some(p.last_seen + self.cfg.idle_timeout)])
            .flatten()
            .min()
    }

    /// One datagram of `datagram.len()` bytes from `from` at `now` (the receive buffer holds one
    /// byte more than the limit, so an oversize datagram shows as longer than it).
    pub(crate) fn on_datagram(
        &mut self,
        ingress: &Ingress,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        if !self.peers.contains_key(&from) {
            if self.peers.len() >= self.cfg.max_connections {
                ingress.counters.rejected_connection();
                if !self.refused_logged {
                    self.refused_logged = true;
                    tracing::warn!(peer = %from, limit = self.cfg.max_connections, kind = D::KIND,
                        "datagram refused: too many peers (further refusals only counted)");
                }
                return;
            }
            ingress.counters.connection();
            let stream = StreamId::new(format!("{}:{from}", D::KIND));
            tracing::info!(%stream, "new datagram peer");
            let decoder = D::new(&stream, &self.cfg);
            self.peers
                .insert(from, Peer { stream, decoder, log: SkipLog::default(), last_seen: now });
        }
        let Some(p) = self.peers.get_mut(&from) else { return };
        p.last_seen = now;
        if datagram.len() > self.cfg.max_line_bytes {
            p.decoder.on_oversize(datagram.len(), self.cfg.max_line_bytes, &mut self.out);
        } else {
            p.decoder.on_datagram(datagram, now, &mut self.out);
        }
        deliver(ingress, p, &mut self.out);
    }

    /// Runs due decoder ticks and ends (flushed) every peer idle since `now - idle_timeout`.
    pub(crate) fn on_timer(&mut self, ingress: &Ingress, now: Instant) {
        let idle_timeout = self.cfg.idle_timeout;
        let out = &mut self.out;
        self.peers.retain(|_, p| {
            if p.decoder.deadline().is_some_and(|d| now >= d) {
                p.decoder.on_tick(now, out);
            }
            let alive = now < p.last_seen + idle_timeout;
            if !alive {
                p.decoder.flush(now, out);
            }
            deliver(ingress, p, out);
            if !alive {
                ingress.push_ended(p.stream.clone(), EndReason::Idle);
            }
            alive
        });
    }

    /// Flushes and ends every peer.
    pub(crate) fn shutdown(mut self, ingress: &Ingress, now: Instant) {
        for (_, mut p) in self.peers.drain() {
            p.decoder.flush(now, &mut self.out);
            deliver(ingress, &mut p, &mut self.out);
            ingress.push_ended(p.stream, EndReason::Shutdown);
        }
    }
}

fn deliver<D>(ingress: &Ingress, peer: &mut Peer<D>, out: &mut Vec<Decoded>) {
    for item in out.drain(..) {
        match item {
            Decoded::Frame(frame) => ingress.push_frame(&peer.stream, frame),
            Decoded::Skip(rejected) => peer.log.skip(ingress, &peer.stream, &rejected),
        }
    }
}

/// Serves `socket` with decoder `D` until shutdown.
pub(crate) async fn serve<D: DatagramDecoder>(
    socket: std::net::UdpSocket,
    cfg: NetConfig,
    ingress: Arc<Ingress>,
    mut rx_shutdown: watch::Receiver<bool>,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(kind = D::KIND, "cannot register the UDP socket with tokio: {e}");
            return;
        }
    };
    // One byte more than the limit tells an oversize datagram (the kernel truncates it).
    let mut buffer = vec![0_u8; cfg.max_line_bytes + 1];
    let mut peers = Peers::<D>::new(cfg);
    loop {
        tokio::select! {
            () = wait_shutdown(&mut rx_shutdown) => break,
            () = sleep_until(peers.deadline()) => peers.on_timer(&ingress, Instant::now()),
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, from)) => peers.on_datagram(&ingress, from, &buffer[..len], Instant::now()),
                Err(e) => tracing::warn!(kind = D::KIND, "datagram receive failed: {e}"),
            },
        }
    }
    peers.shutdown(&ingress, Instant::now());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rosc::{OscMessage, OscPacket, OscType};

    use super::*;
    use crate::frame::{Body, Joint, NUM_JOINTS};
    use crate::io::ndjson;
    use crate::skeleton::kinect_v2;
    use crate::source::net::NdjsonDatagrams;
    use crate::source::osc::OscDatagrams;
    use crate::source::{SourceEvent, SourcePoll, SourceStats};

    const IDLE: Duration = Duration::from_secs(1);
    /// Past the OSC frame timeout (20 ms): a pending OSC frame is closed by then.
    const SETTLE: Duration = Duration::from_millis(50);

    fn cfg(max_peers: usize) -> NetConfig {
        NetConfig {
            max_connections: max_peers,
            idle_timeout: IDLE,
            max_line_bytes: 4096,
            ..NetConfig::DEFAULT
        }
    }

    fn frame(k: u64) -> Frame {
        let joints = std::array::from_fn(|j| Joint::tracked([0.01 * j as f32, 1.0, 2.5]));
        Frame { index: k, timestamp_secs: k as f64 / 30.0, bodies: vec![Body { id: 7, joints }] }
    }

    /// The datagrams of frame `k`, and a peer's malformed datagram, in one protocol.
    trait Wire: DatagramDecoder {
        fn frame_datagrams(k: u64) -> Vec<Vec<u8>>;
        fn garbage() -> Vec<u8> {
            b"\x01not a datagram of this protocol".to_vec()
        }
    }

    impl Wire for NdjsonDatagrams {
        fn frame_datagrams(k: u64) -> Vec<Vec<u8>> {
            vec![ndjson::encode_frame(&frame(k)).into_bytes()]
        }
    }

    impl Wire for OscDatagrams {
        fn frame_datagrams(k: u64) -> Vec<Vec<u8>> {
            let f = frame(k);
            let body = &f.bodies[0];
            let mut messages: Vec<OscMessage> = (0..NUM_JOINTS)
                .map(|j| OscMessage {
                    addr: format!("/bodies/{}/joints/{}", body.id, kinect_v2::JOINT_NAMES[j]),
                    args: body.joints[j].pos.iter().map(|&c| OscType::Float(c)).collect(),
                })
                .collect();
            messages.push(OscMessage {
                addr: format!("/bodies/{}/hands/Right", body.id),
                args: vec![OscType::String("Open".into())],
            });
            messages
                .into_iter()
                .map(|m| rosc::encoder::encode(&OscPacket::Message(m)).expect("encodes"))
                .collect()
        }
    }

    fn drain(ingress: &Ingress) -> Vec<SourceEvent> {
        let mut events = Vec::new();
        while let SourcePoll::Event(e) = ingress.next(Duration::ZERO) {
            events.push(e);
        }
        events
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn stream<D: DatagramDecoder>(port: u16) -> StreamId {
        StreamId::new(format!("{}:{}", D::KIND, peer(port)))
    }

    /// Sends frames `ks` from `port` at `t`, then lets time settle; returns the new time.
    fn send<D: Wire>(
        peers: &mut Peers<D>,
        ingress: &Ingress,
        port: u16,
        ks: &[u64],
        mut t: Instant,
    ) -> Instant {
        for &k in ks {
            for d in D::frame_datagrams(k) {
                peers.on_datagram(ingress, peer(port), &d, t);
            }
            t += SETTLE;
            peers.on_timer(ingress, t);
        }
        t
    }

    fn frames_of(events: &[SourceEvent], of: &StreamId) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Frame { stream, frame } if stream == of => Some(frame.index),
                _ => None,
            })
            .collect()
    }

    fn ends(events: &[SourceEvent]) -> Vec<(StreamId, EndReason)> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Ended { stream, reason } => Some((stream.clone(), reason.clone())),
                SourceEvent::Frame { .. } => None,
            })
            .collect()
    }

    fn stats(ingress: &Ingress) -> SourceStats {
        ingress.counters.snapshot()
    }

    fn peer_limit_refuses_and_frees<D: Wire>() {
        let ingress = Ingress::new(1024);
        let mut peers = Peers::<D>::new(cfg(2));
        let t0 = Instant::now();
        let mut t = send(&mut peers, &ingress, 1, &[0, 1], t0);
        t = send(&mut peers, &ingress, 2, &[0, 1], t);
        // A third peer is refused, every datagram of it counted once as a refusal.
        t = send(&mut peers, &ingress, 3, &[0], t);
        assert_eq!(peers.len(), 2);
        let refused = D::frame_datagrams(0).len() as u64;
        assert_eq!(
            (stats(&ingress).connections, stats(&ingress).rejected_connections),
            (2, refused)
        );
        let events = drain(&ingress);
        assert_eq!(frames_of(&events, &stream::<D>(1)), [0, 1], "{}", D::KIND);
        assert_eq!(frames_of(&events, &stream::<D>(3)), [] as [u64; 0]);
        // Peer 2 keeps sending; peer 1 idles out, which frees a place for peer 3.
        send(&mut peers, &ingress, 2, &[2], t.max(t0 + IDLE - SETTLE));
        peers.on_timer(&ingress, t0 + IDLE + 4 * SETTLE + Duration::from_millis(1));
        assert_eq!(ends(&drain(&ingress)), [(stream::<D>(1), EndReason::Idle)]);
        let t = t0 + IDLE + 5 * SETTLE;
        send(&mut peers, &ingress, 3, &[0], t);
        assert_eq!(frames_of(&drain(&ingress), &stream::<D>(3)), [0], "{}", D::KIND);
        assert_eq!(stats(&ingress).connections, 3);
    }

    #[test]
    fn the_peer_limit_refuses_extra_peers_until_one_idles_out() {
        peer_limit_refuses_and_frees::<NdjsonDatagrams>();
        peer_limit_refuses_and_frees::<OscDatagrams>();
    }

    fn idle_out_then_fresh_life<D: Wire>() {
        let ingress = Ingress::new(1024);
        let mut peers = Peers::<D>::new(cfg(4));
        let t0 = Instant::now();
        let t = send(&mut peers, &ingress, 1, &[0, 1, 2], t0);
        // Nothing more: at the idle deadline the stream is flushed and ends.
        assert_eq!(peers.deadline(), Some(t - SETTLE + IDLE));
        peers.on_timer(&ingress, t - SETTLE + IDLE);
        let first = drain(&ingress);
        assert_eq!(frames_of(&first, &stream::<D>(1)), [0, 1, 2], "{}", D::KIND);
        assert_eq!(ends(&first), [(stream::<D>(1), EndReason::Idle)]);
        assert!(matches!(first.last(), Some(SourceEvent::Ended { .. })), "Ended comes last");
        assert_eq!(peers.len(), 0);
        // Back from the same address, numbering from 0 again: a fresh decoder, not out of order.
        send(&mut peers, &ingress, 1, &[0, 1], t + IDLE);
        let second = drain(&ingress);
        assert_eq!(frames_of(&second, &stream::<D>(1)), [0, 1], "{}", D::KIND);
        let s = stats(&ingress);
        assert_eq!((s.connections, s.streams_ended, s.skipped_out_of_order), (2, 1, 0));
    }

    #[test]
    fn a_peer_that_idles_out_ends_and_comes_back_as_a_fresh_life() {
        idle_out_then_fresh_life::<NdjsonDatagrams>();
        idle_out_then_fresh_life::<OscDatagrams>();
    }

    fn bad_datagrams_are_counted<D: Wire>() {
        let ingress = Ingress::new(1024);
        let mut peers = Peers::<D>::new(cfg(4));
        let t0 = Instant::now();
        let mut t = send(&mut peers, &ingress, 1, &[0], t0);
        peers.on_datagram(&ingress, peer(1), &D::garbage(), t);
        // The receive buffer is one byte over the limit: a datagram that fills it is oversize.
        peers.on_datagram(&ingress, peer(1), &[b' '; 4097], t);
        t = send(&mut peers, &ingress, 1, &[1], t);
        let s = stats(&ingress);
        assert_eq!((s.skipped_malformed, s.skipped_oversize), (1, 1), "{}", D::KIND);
        assert_eq!(frames_of(&drain(&ingress), &stream::<D>(1)), [0, 1], "{}", D::KIND);
        peers.shutdown(&ingress, t);
        assert_eq!(ends(&drain(&ingress)), [(stream::<D>(1), EndReason::Shutdown)]);
    }

    #[test]
    fn malformed_and_oversize_datagrams_are_counted_and_the_stream_goes_on() {
        bad_datagrams_are_counted::<NdjsonDatagrams>();
        bad_datagrams_are_counted::<OscDatagrams>();
    }

    #[test]
    fn shutdown_flushes_a_pending_osc_frame_before_the_end() {
        let ingress = Ingress::new(1024);
        let mut peers = Peers::<OscDatagrams>::new(cfg(4));
        let t0 = Instant::now();
        for d in OscDatagrams::frame_datagrams(0) {
            peers.on_datagram(&ingress, peer(1), &d, t0);
        }
        assert!(drain(&ingress).is_empty(), "the frame is pending until silence or the next");
        peers.shutdown(&ingress, t0 + Duration::from_millis(1));
        let events = drain(&ingress);
        assert_eq!(frames_of(&events, &stream::<OscDatagrams>(1)), [0]);
        assert_eq!(ends(&events), [(stream::<OscDatagrams>(1), EndReason::Shutdown)]);
    }
}
