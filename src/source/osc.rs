//! KinectV2-OSC over UDP, decoded with `rosc`.
//!
//! The sender emits, per tracked body and frame, 25 messages
//! `/bodies/{TrackingId}/joints/{JointType} x y z [trackingState]` (metres, Kinect camera space;
//! older versions omit the state) followed by `/bodies/{id}/hands/Left` and `/hands/Right`.
//! There is no frame marker, so frames are assembled per sender: a body is complete on its
//! `/hands/Right` (or when a joint of it repeats); the frame closes when a body id that is
//! already in it appears again, or after a short silence ([`super::NetConfig::osc_frame_timeout`]).
//! A body missing joints (lost datagrams) or with bad values is dropped and counted; the frame
//! keeps the other bodies. Timestamps are arrival times since the sender's first message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rosc::{OscMessage, OscPacket, OscType};
use tokio::sync::watch;

use crate::frame::{Body, Frame, Joint, NUM_JOINTS, Tracking};
use crate::io::ndjson::{MAX_ABS_COORD_M, MAX_BODIES_PER_FRAME, SkipReason};
use crate::skeleton::kinect_v2;

use super::ingress::Ingress;
use super::net::{NetConfig, SkipLog, sleep_until, wait_shutdown};
use super::{EndReason, StreamId};

/// The KinectV2-OSC default port.
pub const DEFAULT_PORT: u16 = 12345;

/// Bundles nested deeper than this are refused (a crafted packet cannot recurse without bound).
pub const MAX_BUNDLE_DEPTH: usize = 4;
/// OSC arrays (`[` type tags) nested deeper than this are refused. KinectV2-OSC sends none; the
/// limit keeps a crafted type-tag string from building a value whose drop or print recurses.
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Checks a datagram's nesting *before* `rosc` decodes it: `rosc` recurses once per bundle level
/// and builds one nested value per `[`, so a 64 KiB datagram of nested bundles (20 bytes each)
/// would recurse ~3,000 deep and overflow the source thread's stack, which no `catch_unwind`
/// can stop. Malformed framing is left to `rosc`, which reports it as an error.
pub(crate) fn check_nesting(datagram: &[u8]) -> Result<(), String> {
    check_nesting_at(datagram, 0)
}

fn check_nesting_at(packet: &[u8], depth: usize) -> Result<(), String> {
    if let Some(rest) = packet.strip_prefix(b"#bundle\0") {
        if depth >= MAX_BUNDLE_DEPTH {
            return Err(format!("bundles nested deeper than {MAX_BUNDLE_DEPTH}"));
        }
        // An 8-byte time tag, then elements, each a big-endian u32 size and its bytes.
        let mut rest = rest.get(8..).unwrap_or_default();
        while let Some(size) = rest.get(..4) {
            let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
            let Some(element) = rest.get(4..4usize.saturating_add(size)) else { break };
            check_nesting_at(element, depth + 1)?;
            rest = &rest[4 + size..];
        }
        return Ok(());
    }
    // A message: the address, NUL-padded to 4 bytes, then the type tags `,...`.
    let Some(addr_end) = packet.iter().position(|&b| b == 0) else { return Ok(()) };
    let tags_start = (addr_end / 4 + 1) * 4;
    let tags = packet.get(tags_start..).unwrap_or_default();
    let tags = &tags[..tags.iter().position(|&b| b == 0).unwrap_or(tags.len())];
    let mut open = 0usize;
    for &tag in tags {
        match tag {
            b'[' => {
                open += 1;
                if open > MAX_ARRAY_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
            }
            b']' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// What the assembler produces.
#[derive(Debug, PartialEq)]
pub(crate) enum Assembled {
    /// A complete frame.
    Frame(Frame),
    /// A message or body that was skipped, with why and where.
    Skip(SkipReason, String),
}

/// A body being assembled.
#[derive(Debug)]
struct PartialBody {
    id: u64,
    joints: [Option<Joint>; NUM_JOINTS],
    /// The first problem seen; the body is dropped (and counted once) when it completes.
    problem: Option<(SkipReason, String)>,
}

impl PartialBody {
    fn new(id: u64) -> Self {
        PartialBody { id, joints: [None; NUM_JOINTS], problem: None }
    }
}

/// Frame assembly for one sender; synchronous so it can be tested without sockets.
#[derive(Debug)]
pub(crate) struct Assembler {
    origin: String,
    started: Option<Instant>,
    next_index: u64,
    last_timestamp_secs: Option<f64>,
    bodies: Vec<Body>,
    current: Option<PartialBody>,
    last_message: Option<Instant>,
    /// Arrival of the pending frame's first joint: the frame's time.
    frame_started: Option<Instant>,
    messages: u64,
}

impl Assembler {
    pub(crate) fn new(origin: String) -> Self {
        Assembler {
            origin,
            started: None,
            next_index: 0,
            last_timestamp_secs: None,
            bodies: Vec::new(),
            current: None,
            last_message: None,
            frame_started: None,
            messages: 0,
        }
    }

    /// When the pending frame must be closed if nothing else arrives.
    pub(crate) fn deadline(&self, frame_timeout: std::time::Duration) -> Option<Instant> {
        let pending = self.current.is_some() || !self.bodies.is_empty();
        pending.then_some(self.last_message?).map(|t| t + frame_timeout)
    }

    fn skip(&self, out: &mut Vec<Assembled>, reason: SkipReason, message: impl std::fmt::Display) {
        out.push(Assembled::Skip(
            reason,
            format!("{} message {}: {message}", self.origin, self.messages),
        ));
    }

    /// Feeds one datagram: nesting check, `rosc` decoding, then [`Assembler::on_packet`]; a bad
    /// datagram is a counted skip.
    pub(crate) fn on_datagram(&mut self, datagram: &[u8], now: Instant, out: &mut Vec<Assembled>) {
        if let Err(message) = check_nesting(datagram) {
            self.messages += 1;
            self.skip(out, SkipReason::Malformed, message);
            return;
        }
        match rosc::decoder::decode_udp(datagram) {
            Ok((_, packet)) => self.on_packet(&packet, now, out),
            Err(e) => {
                self.messages += 1;
                self.skip(out, SkipReason::Malformed, format_args!("not an OSC packet: {e:?}"));
            }
        }
    }

    /// Feeds one decoded packet.
    pub(crate) fn on_packet(&mut self, packet: &OscPacket, now: Instant, out: &mut Vec<Assembled>) {
        self.on_packet_at_depth(packet, now, out, 0);
    }

    fn on_packet_at_depth(
        &mut self,
        packet: &OscPacket,
        now: Instant,
        out: &mut Vec<Assembled>,
        depth: usize,
    ) {
        match packet {
            OscPacket::Message(message) => self.on_message(message, now, out),
            OscPacket::Bundle(_) if depth >= MAX_BUNDLE_DEPTH => {
                self.messages += 1;
                self.skip(
                    out,
                    SkipReason::Malformed,
                    format!("bundles nested deeper than {MAX_BUNDLE_DEPTH}"),
                );
            }
            OscPacket::Bundle(bundle) => {
                for packet in &bundle.content {
                    self.on_packet_at_depth(packet, now, out, depth + 1);
                }
            }
        }
    }

    fn on_message(&mut self, message: &OscMessage, now: Instant, out: &mut Vec<Assembled>) {
        self.messages += 1;
        self.started.get_or_insert(now);
        self.last_message = Some(now);
        let parts: Vec<&str> = message.addr.split('/').collect();
        // ["", "bodies", id, "joints" | "hands", name]
        let ["", "bodies", id, kind, name] = parts.as_slice() else {
            self.skip(
                out,
                SkipReason::Malformed,
                format_args!("expected /bodies/{{id}}/joints/{{Joint}}, found {}", message.addr),
            );
            return;
        };
        let Ok(body_id) = id.parse::<u64>() else {
            self.skip(
                out,
                SkipReason::Malformed,
                format_args!("expected a numeric body id, found {:?} in {}", id, message.addr),
            );
            return;
        };
        match (*kind, *name) {
            ("hands", "Right") => {
                if self.current.as_ref().is_some_and(|b| b.id == body_id) {
                    self.complete_body(out);
                }
            }
            ("hands", "Left") => {}
            ("joints", joint_name) => {
                let Some(j) = kinect_v2::joint_index(joint_name) else {
                    self.skip(
                        out,
                        SkipReason::Malformed,
                        format_args!("unknown joint {joint_name:?} in {}", message.addr),
                    );
                    return;
                };
                self.on_joint(body_id, j, &message.args, now, out);
            }
            _ => self.skip(
                out,
                SkipReason::Malformed,
                format_args!("unexpected address {}", message.addr),
            ),
        }
    }

    fn on_joint(
        &mut self,
        body_id: u64,
        j: usize,
        args: &[OscType],
        now: Instant,
        out: &mut Vec<Assembled>,
    ) {
        let starts_new_body = match &self.current {
            Some(body) => body.id != body_id || body.joints[j].is_some(),
            None => true,
        };
        if starts_new_body {
            self.complete_body(out);
            // A body already in the pending frame means the sender moved on to the next frame.
            if self.bodies.iter().any(|b| b.id == body_id) {
                self.close_frame(now, out);
            }
            self.current = Some(PartialBody::new(body_id));
        }
        self.frame_started.get_or_insert(now);
        let parsed = parse_joint(args);
        let Some(body) = self.current.as_mut() else { return };
        match parsed {
            Ok(joint) => body.joints[j] = Some(joint),
            Err((reason, message)) => {
                // Mark the joint seen so the body does not also count as incomplete.
                body.joints[j] = Some(Joint::default());
                let problem =
                    format!("body {body_id} joint {}: {message}", kinect_v2::JOINT_NAMES[j]);
                body.problem.get_or_insert((reason, problem));
            }
        }
    }

    /// Moves the body being assembled into the pending frame, or drops it with a counted skip.
    fn complete_body(&mut self, out: &mut Vec<Assembled>) {
        let Some(body) = self.current.take() else { return };
        if let Some((reason, message)) = body.problem {
            self.skip(out, reason, message);
            return;
        }
        if self.bodies.len() >= MAX_BODIES_PER_FRAME {
            self.skip(
                out,
                SkipReason::Malformed,
                format_args!(
                    "body {}: the frame already has {MAX_BODIES_PER_FRAME} bodies",
                    body.id
                ),
            );
            return;
        }
        let received = body.joints.iter().filter(|j| j.is_some()).count();
        if received < NUM_JOINTS {
            self.skip(
                out,
                SkipReason::InvalidJoints,
                format_args!("body {}: expected {NUM_JOINTS} joints, found {received}", body.id),
            );
            return;
        }
        self.bodies.push(Body { id: body.id, joints: body.joints.map(Option::unwrap_or_default) });
    }

    /// Emits the pending frame (if it has any body).
    fn close_frame(&mut self, now: Instant, out: &mut Vec<Assembled>) {
        self.complete_body(out);
        let frame_time = self.frame_started.take().unwrap_or(now);
        if self.bodies.is_empty() {
            return;
        }
        let since_start =
            self.started.map_or(0.0, |s| frame_time.saturating_duration_since(s).as_secs_f64());
        // Arrival times are monotonic; the nudge only guards against equal clock readings.
        let timestamp_secs = match self.last_timestamp_secs {
            Some(last) if since_start <= last => last + 1e-6,
            _ => since_start,
        };
        self.last_timestamp_secs = Some(timestamp_secs);
        let frame = Frame {
            index: self.next_index,
            timestamp_secs,
            bodies: std::mem::take(&mut self.bodies),
        };
        self.next_index += 1;
        out.push(Assembled::Frame(frame));
    }

    /// Closes the pending frame if its silence deadline has passed.
    pub(crate) fn on_tick(
        &mut self,
        now: Instant,
        frame_timeout: std::time::Duration,
        out: &mut Vec<Assembled>,
    ) {
        if self.deadline(frame_timeout).is_some_and(|d| now >= d) {
            self.close_frame(now, out);
        }
    }

    /// Closes whatever is pending (end of stream).
    pub(crate) fn flush(&mut self, now: Instant, out: &mut Vec<Assembled>) {
        self.close_frame(now, out);
    }
}

fn number(arg: &OscType) -> Option<f64> {
    match *arg {
        OscType::Float(v) => Some(f64::from(v)),
        OscType::Double(v) => Some(v),
        OscType::Int(v) => Some(f64::from(v)),
        OscType::Long(v) => Some(v as f64),
        _ => None,
    }
}

/// `x y z [trackingState]` → a joint (no state = tracked, as the old sender means).
fn parse_joint(args: &[OscType]) -> Result<Joint, (SkipReason, String)> {
    let (coords, state) = match args {
        [x, y, z] => ([x, y, z], None),
        [x, y, z, state] => ([x, y, z], Some(state)),
        _ => {
            return Err((
                SkipReason::Malformed,
                format!("expected x y z [state], found {} arguments", args.len()),
            ));
        }
    };
    let mut pos = [0.0_f32; 3];
    for (p, arg) in pos.iter_mut().zip(coords) {
        let Some(v) = number(arg) else {
            return Err((SkipReason::Malformed, format!("expected a number, found {arg:?}")));
        };
        *p = v as f32;
    }
    if pos.iter().any(|c| !c.is_finite() || c.abs() > MAX_ABS_COORD_M) {
        return Err((
            SkipReason::InvalidJoints,
            format!("expected finite coordinates within {MAX_ABS_COORD_M} m, found {pos:?}"),
        ));
    }
    let tracking = match state {
        None => Tracking::Tracked,
        Some(OscType::String(s)) => match s.as_str() {
            "Tracked" => Tracking::Tracked,
            "Inferred" => Tracking::Inferred,
            "NotTracked" => Tracking::NotTracked,
            other => {
                return Err((
                    SkipReason::InvalidJoints,
                    format!("unknown tracking state {other:?}"),
                ));
            }
        },
        Some(OscType::Int(code)) => Tracking::from_code(i64::from(*code)).ok_or_else(|| {
            (SkipReason::InvalidJoints, format!("tracking code {code} is out of range"))
        })?,
        Some(other) => {
            return Err((
                SkipReason::Malformed,
                format!("expected a tracking state string, found {other:?}"),
            ));
        }
    };
    Ok(Joint { pos, tracking })
}

/// Per-sender state of the OSC source.
struct OscPeer {
    stream_id: StreamId,
    assembler: Assembler,
    log: SkipLog,
    last_seen: Instant,
}

fn deliver(ingress: &Ingress, peer: &mut OscPeer, out: &mut Vec<Assembled>) {
    for item in out.drain(..) {
        match item {
            Assembled::Frame(frame) => ingress.push_frame(&peer.stream_id, frame),
            Assembled::Skip(reason, message) => {
                let rejected = crate::io::ndjson::Rejected {
                    reason,
                    error: crate::Error::Skipped { stream: peer.stream_id.to_string(), message },
                };
                peer.log.skip(ingress, &peer.stream_id, &rejected);
            }
        }
    }
}

pub(crate) async fn serve_osc(
    socket: std::net::UdpSocket,
    cfg: NetConfig,
    ingress: Arc<Ingress>,
    mut rx_shutdown: watch::Receiver<bool>,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("cannot register the OSC socket with tokio: {e}");
            return;
        }
    };
    let mut datagram = vec![0_u8; cfg.max_line_bytes + 1];
    let mut peers: HashMap<SocketAddr, OscPeer> = HashMap::new();
    let mut out = Vec::new();
    let mut refused_logged = false;
    loop {
        let deadline = peers
            .values()
            .flat_map(|p| {
                [p.assembler.deadline(cfg.osc_frame_timeout), Some(p.last_seen + cfg.idle_timeout)]
            })
            .flatten()
            .min();
        tokio::select! {
            () = wait_shutdown(&mut rx_shutdown) => break,
            () = sleep_until(deadline) => {
                let now = Instant::now();
                peers.retain(|_, p| {
                    p.assembler.on_tick(now, cfg.osc_frame_timeout, &mut out);
                    deliver(&ingress, p, &mut out);
                    let alive = now < p.last_seen + cfg.idle_timeout;
                    if !alive {
                        ingress.push_ended(p.stream_id.clone(), EndReason::Idle);
                    }
                    alive
                });
            }
            received = socket.recv_from(&mut datagram) => {
                let (len, peer) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::warn!("OSC receive failed: {e}");
                        continue;
                    }
                };
                let now = Instant::now();
                if !peers.contains_key(&peer) {
                    if peers.len() >= cfg.max_connections {
                        ingress.counters.rejected_connection();
                        if !refused_logged {
                            refused_logged = true;
                            tracing::warn!(%peer, limit = cfg.max_connections, "OSC packet refused: too many senders (further refusals only counted)");
                        }
                        continue;
                    }
                    ingress.counters.connection();
                    let stream_id = StreamId::new(format!("osc:{peer}"));
                    tracing::info!(stream = %stream_id, "new OSC sender");
                    let assembler = Assembler::new(stream_id.to_string());
                    peers.insert(peer, OscPeer { stream_id, assembler, log: SkipLog::default(), last_seen: now });
                }
                let Some(p) = peers.get_mut(&peer) else { continue };
                p.last_seen = now;
                if len > cfg.max_line_bytes {
                    p.assembler.messages += 1;
                    let limit = cfg.max_line_bytes;
                    let message = format_args!("packet of {len} bytes exceeds {limit} bytes");
                    p.assembler.skip(&mut out, SkipReason::Oversize, message);
                } else {
                    p.assembler.on_datagram(&datagram[..len], now, &mut out);
                }
                deliver(&ingress, p, &mut out);
            }
        }
    }
    let now = Instant::now();
    for mut p in peers.into_values() {
        p.assembler.flush(now, &mut out);
        deliver(&ingress, &mut p, &mut out);
        ingress.push_ended(p.stream_id, EndReason::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn joint_message(body: u64, j: usize, pos: [f32; 3], state: Option<&str>) -> OscPacket {
        let mut args = vec![OscType::Float(pos[0]), OscType::Float(pos[1]), OscType::Float(pos[2])];
        if let Some(state) = state {
            args.push(OscType::String(state.into()));
        }
        OscPacket::Message(OscMessage {
            addr: format!("/bodies/{body}/joints/{}", kinect_v2::JOINT_NAMES[j]),
            args,
        })
    }

    fn hand(body: u64, side: &str) -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: format!("/bodies/{body}/hands/{side}"),
            args: vec![OscType::String("Open".into()), OscType::String("High".into())],
        })
    }

    fn send_body(a: &mut Assembler, body: u64, z: f32, now: Instant, out: &mut Vec<Assembled>) {
        for j in 0..NUM_JOINTS {
            let state = if j == 3 { Some("Inferred") } else { Some("Tracked") };
            a.on_packet(&joint_message(body, j, [j as f32 * 0.01, 0.5, z], state), now, out);
        }
        a.on_packet(&hand(body, "Left"), now, out);
        a.on_packet(&hand(body, "Right"), now, out);
    }

    #[test]
    fn bodies_group_into_frames() {
        let mut a = Assembler::new("osc:test".into());
        let t0 = Instant::now();
        let mut out = Vec::new();
        let big_id = 72_057_594_037_931_101;
        send_body(&mut a, big_id, 2.0, t0, &mut out);
        send_body(&mut a, 5, 3.0, t0, &mut out);
        assert!(out.is_empty());
        // The first body again: a new frame begins, the previous one is emitted.
        let t1 = t0 + Duration::from_millis(33);
        send_body(&mut a, big_id, 2.1, t1, &mut out);
        let [Assembled::Frame(frame)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!((frame.index, frame.timestamp_secs), (0, 0.0));
        assert_eq!(frame.bodies.iter().map(|b| b.id).collect::<Vec<_>>(), [big_id, 5]);
        assert_eq!(frame.bodies[1].joints[7].pos, [0.07, 0.5, 3.0]);
        assert_eq!(frame.bodies[0].joints[3].tracking, Tracking::Inferred);
        out.clear();
        // Silence closes the second frame.
        let timeout = Duration::from_millis(20);
        assert_eq!(a.deadline(timeout), Some(t1 + timeout));
        a.on_tick(t1 + Duration::from_millis(5), timeout, &mut out);
        assert!(out.is_empty());
        a.on_tick(t1 + timeout, timeout, &mut out);
        let [Assembled::Frame(frame)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!((frame.index, frame.bodies.len()), (1, 1));
        // Timed by the frame's first message.
        assert!((frame.timestamp_secs - 0.033).abs() < 1e-9, "{}", frame.timestamp_secs);
        assert_eq!(a.deadline(timeout), None);
    }

    #[test]
    fn nesting_is_checked_before_decoding() {
        let now = Instant::now();
        let skips = |datagram: &[u8]| {
            let mut a = Assembler::new("osc:test".into());
            let mut out = Vec::new();
            a.on_datagram(datagram, now, &mut out);
            out.into_iter()
                .map(|o| match o {
                    Assembled::Skip(reason, message) => (reason, message),
                    Assembled::Frame(f) => panic!("no frame expected: {f:?}"),
                })
                .collect::<Vec<_>>()
        };
        // Within the limit: decoded, and the hand message is no problem.
        assert_eq!(skips(&crate::fuzz::deep_bundle(MAX_BUNDLE_DEPTH)), []);
        for depth in [MAX_BUNDLE_DEPTH + 1, 3_000] {
            let found = skips(&crate::fuzz::deep_bundle(depth));
            let [(SkipReason::Malformed, message)] = found.as_slice() else { panic!("{found:?}") };
            assert!(message.ends_with("bundles nested deeper than 4"), "{message}");
        }
        // Arrays: `[[[[[` type tags are refused before rosc nests values that deep.
        let mut message = b"/bodies/1/joints/Head\0\0\0,".to_vec();
        message.extend_from_slice(b"[[[[[ff]]]]]\0\0\0\0");
        message.extend_from_slice(&[0; 8]);
        let found = skips(&message);
        let [(SkipReason::Malformed, text)] = found.as_slice() else { panic!("{found:?}") };
        assert!(text.ends_with("arrays nested deeper than 4"), "{text}");
    }

    #[test]
    fn bodies_beyond_the_limit_are_counted_skips() {
        let mut a = Assembler::new("osc:test".into());
        let now = Instant::now();
        let mut out = Vec::new();
        for id in 0..MAX_BODIES_PER_FRAME as u64 + 2 {
            send_body(&mut a, id, 2.0, now, &mut out);
        }
        a.flush(now, &mut out);
        let skips: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Skip(SkipReason::Malformed, m) => Some(m.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(skips.len(), 2, "{skips:?}");
        assert!(skips[0].ends_with("body 16: the frame already has 16 bodies"), "{}", skips[0]);
        let frames: Vec<usize> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Frame(f) => Some(f.bodies.len()),
                Assembled::Skip(..) => None,
            })
            .collect();
        assert_eq!(frames, [MAX_BODIES_PER_FRAME]);
    }

    #[test]
    fn incomplete_and_invalid_bodies_are_counted_skips() {
        let mut a = Assembler::new("osc:test".into());
        let now = Instant::now();
        let mut out = Vec::new();
        // Body 1 loses joint 4; body 2 has a NaN; body 3 is fine, with the old 3-float messages.
        for j in (0..NUM_JOINTS).filter(|&j| j != 4) {
            a.on_packet(&joint_message(1, j, [0.0, 0.0, 2.0], Some("Tracked")), now, &mut out);
        }
        a.on_packet(&hand(1, "Right"), now, &mut out);
        for j in 0..NUM_JOINTS {
            let x = if j == 9 { f32::NAN } else { 0.0 };
            a.on_packet(&joint_message(2, j, [x, 0.0, 2.0], Some("Tracked")), now, &mut out);
        }
        for j in 0..NUM_JOINTS {
            a.on_packet(&joint_message(3, j, [0.0, 0.0, 2.0], None), now, &mut out);
        }
        a.on_packet(
            &OscPacket::Message(OscMessage { addr: "/bodies/x/joints/Head".into(), args: vec![] }),
            now,
            &mut out,
        );
        a.flush(now, &mut out);
        let skips: Vec<(SkipReason, &str)> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Skip(r, m) => Some((*r, m.as_str())),
                Assembled::Frame(_) => None,
            })
            .collect();
        assert_eq!(skips.len(), 3, "{skips:?}");
        assert_eq!(skips[0].0, SkipReason::InvalidJoints);
        assert!(skips[0].1.ends_with("body 1: expected 25 joints, found 24"), "{}", skips[0].1);
        assert_eq!(skips[1].0, SkipReason::InvalidJoints);
        assert!(skips[1].1.contains("body 2 joint ElbowRight"), "{}", skips[1].1);
        assert_eq!(skips[2].0, SkipReason::Malformed);
        let frames: Vec<&Frame> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Frame(f) => Some(f),
                Assembled::Skip(..) => None,
            })
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].bodies.len(), 1);
        assert_eq!(frames[0].bodies[0].id, 3);
        assert!(frames[0].bodies[0].joints.iter().all(|j| j.tracking == Tracking::Tracked));
    }
}
