//! Frame sources over real loopback sockets: NDJSON over TCP and UDP (with bad input of every
//! kind), KinectV2-OSC, `send_recording` round trips, ingress overflow, limits and shutdown.
//! Frames come from the real PKU-MMD take in `shared/data`. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use skelseg::io::Recording;
use skelseg::io::ndjson::{Axes, Header, Units, encode_frame, encode_header};
use skelseg::skeleton::{Layout, kinect_v2};
use skelseg::source::{
    EndReason, FrameSource, NetConfig, NetSource, Proto, SourceEvent, SourcePoll, StreamId,
    send_recording,
};
use skelseg::{Body, Frame, NUM_JOINTS};

const WAIT: Duration = Duration::from_secs(10);

/// The first `n` frames of the committed synthetic recording (PKU-MMD format, two bodies in
/// places): the network tests need realistic frames, not the real datasets.
fn synth_frames(n: usize) -> Vec<Frame> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth/skeleton/synth_0000.txt");
    let mut frames = skelseg::io::pku::read_skeleton(&path).expect("the synthetic fixture");
    assert!(frames.len() >= n, "{} has only {} frames", path.display(), frames.len());
    frames.truncate(n);
    frames
}

fn synth_recording(n: usize) -> Recording {
    Recording {
        name: "synth_0000".into(),
        source_layout: Layout::KinectV2_25,
        fps: 30.0,
        frames: synth_frames(n),
        intervals: None,
    }
}

fn assert_same_positions(a: &Frame, b: &Frame, tolerance: f32) {
    assert_eq!(a.bodies.len(), b.bodies.len(), "frame {}", a.index);
    for (ba, bb) in a.bodies.iter().zip(&b.bodies) {
        assert_eq!(ba.id, bb.id);
        for (j, (ja, jb)) in ba.joints.iter().zip(&bb.joints).enumerate() {
            for c in 0..3 {
                assert!(
                    (ja.pos[c] - jb.pos[c]).abs() <= tolerance,
                    "frame {} body {} joint {j}: {:?} vs {:?}",
                    a.index,
                    ba.id,
                    ja.pos,
                    jb.pos
                );
            }
        }
    }
}

/// Collects events until `done` says so; panics (fails the test) after [`WAIT`].
fn collect_until(
    source: &mut dyn FrameSource,
    mut done: impl FnMut(&[SourceEvent]) -> bool,
) -> Vec<SourceEvent> {
    let deadline = Instant::now() + WAIT;
    let mut events = Vec::new();
    while !done(&events) {
        assert!(Instant::now() < deadline, "timed out; got {events:?}");
        match source.next_event(Duration::from_millis(50)) {
            SourcePoll::Event(event) => events.push(event),
            SourcePoll::Timeout => {}
            SourcePoll::Finished => panic!("source finished early; got {events:?}"),
        }
    }
    events
}

fn ended_count(events: &[SourceEvent]) -> usize {
    events.iter().filter(|e| matches!(e, SourceEvent::Ended { .. })).count()
}

fn frames_of<'a>(events: &'a [SourceEvent], stream: &StreamId) -> Vec<&'a Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Frame { stream: s, frame } if s == stream => Some(frame),
            _ => None,
        })
        .collect()
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A frame line in Azure conventions (mm, OpenCV axes), as an Azure bridge would send it.
fn azure_line(frame: &Frame, frame_id: u64, timestamp_usec: u64) -> String {
    let bodies: Vec<String> = frame
        .bodies
        .iter()
        .map(|b| {
            let joints: Vec<String> = b
                .joints
                .iter()
                .map(|j| {
                    let [x, y, z] = j.pos.map(|c| f64::from(c) * 1000.0);
                    format!("[{},{},{}]", -x, -y, z)
                })
                .collect();
            format!(
                r#"{{"body_id":{},"joint_positions":[{}],"joint_confidence":[{}]}}"#,
                b.id,
                joints.join(","),
                vec!["2"; NUM_JOINTS].join(",")
            )
        })
        .collect();
    format!(
        r#"{{"frame_id":{frame_id},"timestamp_usec":{timestamp_usec},"num_bodies":{},"bodies":[{}]}}"#,
        frame.bodies.len(),
        bodies.join(",")
    )
}

#[test]
fn tcp_client_bad_input_is_skipped_and_counted() {
    let mut source =
        NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT).unwrap();
    let pku = synth_frames(8);
    let mut client = TcpStream::connect(source.local_addr()).unwrap();
    let stream = StreamId::new(format!("tcp:{}", client.local_addr().unwrap()));

    let header = Header {
        units: Units::Mm,
        axes: Axes::DepthCameraOpencv,
        fps: Some(30.0),
        ..Header::default()
    };
    let good = |i: usize| azure_line(&pku[i], i as u64, 1_000_000 + i as u64 * 33_333);
    let mut wire = vec![encode_header(&header), good(0), good(1)];
    wire.push(r#"{"type":"frame","frame_id":2,"bodies":[{"joint_positions":"#.into()); // malformed
    let mut with_nan = pku[2].clone();
    with_nan.bodies[0].joints[4].pos[0] = f32::NAN;
    wire.push(azure_line(&with_nan, 2, 1_000_000 + 2 * 33_333)); // NaN joint (as Python writes it)
    // Wrong joint count: all but the first joint moved to an unknown field.
    wire.push(good(2).replacen("],[", "]],\"x\":[[", 1));
    wire.push(format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024))); // oversize
    wire.push(good(2));
    wire.push(azure_line(&pku[3], 3, 1_000_000 + 2 * 33_333)); // duplicate timestamp
    wire.push(good(5)); // a gap: frames 3 and 4 never come
    for line in &wire {
        client.write_all(line.as_bytes()).unwrap();
        client.write_all(b"\n").unwrap();
    }
    // Disconnect in the middle of frame 6.
    let partial = good(6);
    client.write_all(&partial.as_bytes()[..partial.len() / 2]).unwrap();
    drop(client);

    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    let frames = frames_of(&events, &stream);
    assert_eq!(frames.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1, 2, 5]);
    // mm + OpenCV axes were converted back to the recorded metres and Kinect axes.
    for frame in &frames {
        assert_same_positions(&pku[frame.index as usize], frame, 1e-6);
    }
    assert_eq!(frames[0].timestamp_secs, 0.0);
    assert!((frames[3].timestamp_secs - 5.0 * 0.033_333).abs() < 1e-9);
    assert_eq!(
        events.last(),
        Some(&SourceEvent::Ended { stream: stream.clone(), reason: EndReason::Truncated })
    );

    let stats = source.stats();
    assert_eq!(stats.frames, 4);
    assert_eq!(stats.skipped_malformed, 2, "the malformed line and the truncated one: {stats:?}");
    assert_eq!(stats.skipped_invalid_joints, 2, "{stats:?}");
    assert_eq!(stats.skipped_oversize, 1, "{stats:?}");
    assert_eq!(stats.skipped_out_of_order, 1, "{stats:?}");
    assert_eq!((stats.connections, stats.streams_ended, stats.dropped_overflow), (1, 1, 0));

    // The listener keeps serving new clients.
    let mut again = TcpStream::connect(source.local_addr()).unwrap();
    again.write_all(format!("{}\n", encode_frame(&pku[7])).as_bytes()).unwrap();
    drop(again);
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    assert_eq!(events.len(), 2);
    source.handle().shutdown();
    assert_eq!(source.next_event(WAIT), SourcePoll::Finished);
}

#[test]
fn concurrent_tcp_clients_are_separate_streams() {
    let mut source =
        NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT).unwrap();
    let pku = synth_frames(20);
    let mut a = TcpStream::connect(source.local_addr()).unwrap();
    let mut b = TcpStream::connect(source.local_addr()).unwrap();
    let id_a = StreamId::new(format!("tcp:{}", a.local_addr().unwrap()));
    let id_b = StreamId::new(format!("tcp:{}", b.local_addr().unwrap()));
    for i in 0..10 {
        a.write_all(format!("{}\n", encode_frame(&pku[i])).as_bytes()).unwrap();
        b.write_all(format!("{}\n", encode_frame(&pku[10 + i])).as_bytes()).unwrap();
    }
    // A sends garbage and leaves; B is unaffected and goes on.
    a.write_all(b"garbage\n").unwrap();
    drop(a);
    let events = collect_until(&mut source, |e| {
        e.iter().any(|e| matches!(e, SourceEvent::Ended { stream, .. } if *stream == id_a))
            && frames_of(e, &id_b).len() == 10
    });
    b.write_all(format!("{}\n", encode_frame(&pku[0])).as_bytes()).unwrap(); // out of order for B
    let mut late = pku[19].clone();
    (late.index, late.timestamp_secs) = (25, 25.0 / 30.0);
    b.write_all(format!("{}\n", encode_frame(&late)).as_bytes()).unwrap();
    let more = collect_until(&mut source, |e| !e.is_empty());
    let frames_a = frames_of(&events, &id_a);
    let frames_b = frames_of(&events, &id_b);
    assert_eq!(frames_a.iter().map(|f| f.index).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(frames_b.iter().map(|f| f.index).collect::<Vec<_>>(), (10..20).collect::<Vec<_>>());
    for f in frames_a.iter().chain(&frames_b) {
        assert_same_positions(&pku[f.index as usize], f, 6e-6);
    }
    assert!(events.contains(&SourceEvent::Ended { stream: id_a, reason: EndReason::Closed }));
    let [SourceEvent::Frame { stream, frame }] = more.as_slice() else { panic!("{more:?}") };
    assert_eq!((stream, frame.index), (&id_b, 25));
    let stats = source.stats();
    assert_eq!((stats.connections, stats.skipped_malformed, stats.skipped_out_of_order), (2, 1, 1));

    // Shutdown ends B's stream, then the source is finished.
    source.handle().shutdown();
    let last = collect_until(&mut source, |e| ended_count(e) == 1);
    assert_eq!(last, [SourceEvent::Ended { stream: id_b, reason: EndReason::Shutdown }]);
    assert_eq!(source.next_event(WAIT), SourcePoll::Finished);
    drop(b);
}

#[test]
fn udp_datagrams_per_peer() {
    let cfg = NetConfig {
        idle_timeout: Duration::from_millis(300),
        max_line_bytes: 4096,
        ..NetConfig::DEFAULT
    };
    let mut source = NetSource::udp("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let pku = synth_frames(6);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stream = StreamId::new(format!("udp:{}", client.local_addr().unwrap()));
    client.connect(source.local_addr()).unwrap();
    client.send(encode_header(&Header::canonical(Some(30.0))).as_bytes()).unwrap();
    for i in [0, 1, 2] {
        client.send(encode_frame(&pku[i]).as_bytes()).unwrap();
    }
    client.send(b"{\"type\":\"frame\"").unwrap();
    client.send(encode_frame(&pku[1]).as_bytes()).unwrap(); // a late, reordered datagram
    client.send(&[b' '; 5000]).unwrap(); // over the 4 KiB limit
    client.send(encode_frame(&pku[4]).as_bytes()).unwrap();
    // The peer falls silent: its stream ends after the idle timeout.
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    let frames = frames_of(&events, &stream);
    assert_eq!(frames.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1, 2, 4]);
    for f in &frames {
        assert_same_positions(&pku[f.index as usize], f, 6e-6);
    }
    assert_eq!(events.last(), Some(&SourceEvent::Ended { stream, reason: EndReason::Idle }));
    let stats = source.stats();
    assert_eq!(
        (stats.frames, stats.skipped_malformed, stats.skipped_out_of_order, stats.skipped_oversize),
        (4, 1, 1, 1)
    );
    drop(source); // joins the network thread
}

fn osc_body(body_id: u64, frame: &Frame, body: usize) -> Vec<OscPacket> {
    let joints = &frame.bodies[body].joints;
    let mut packets: Vec<OscPacket> = (0..NUM_JOINTS)
        .map(|j| {
            OscPacket::Message(OscMessage {
                addr: format!("/bodies/{body_id}/joints/{}", kinect_v2::JOINT_NAMES[j]),
                args: vec![
                    OscType::Float(joints[j].pos[0]),
                    OscType::Float(joints[j].pos[1]),
                    OscType::Float(joints[j].pos[2]),
                    OscType::String("Tracked".into()),
                ],
            })
        })
        .collect();
    for side in ["Left", "Right"] {
        packets.push(OscPacket::Message(OscMessage {
            addr: format!("/bodies/{body_id}/hands/{side}"),
            args: vec![OscType::String("Open".into()), OscType::String("High".into())],
        }));
    }
    packets
}

#[test]
fn kinect_v2_osc_frames_are_assembled_per_body() {
    let mut source = NetSource::osc("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT).unwrap();
    let pku = synth_frames(330);
    // From frame 312 on, the take has a second body.
    let (f0, f1) = (&pku[320], &pku[321]);
    assert_eq!((f0.bodies.len(), f1.bodies.len()), (2, 2));
    let ids = [72_057_594_037_931_101_u64, 72_057_594_037_931_102];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stream = StreamId::new(format!("osc:{}", client.local_addr().unwrap()));
    let send = |packet: &OscPacket| {
        client.send_to(&rosc::encoder::encode(packet).unwrap(), source.local_addr()).unwrap();
    };
    for frame in [f0, f1] {
        for (b, id) in ids.iter().enumerate() {
            osc_body(*id, frame, b).iter().for_each(send);
        }
        // Pace like a sensor (the second frame closes by silence).
        std::thread::sleep(Duration::from_millis(40));
    }
    send(&OscPacket::Message(OscMessage { addr: "/unknown".into(), args: vec![] }));
    let events = collect_until(&mut source, |e| e.len() == 2);
    let frames = frames_of(&events, &stream);
    assert_eq!(frames.len(), 2);
    for (got, want) in frames.iter().zip([f0, f1]) {
        assert_eq!(got.bodies.iter().map(|b| b.id).collect::<Vec<_>>(), ids);
        let relabelled = Frame {
            bodies: want.bodies.iter().zip(ids).map(|(b, id)| Body { id, ..b.clone() }).collect(),
            ..want.clone()
        };
        assert_same_positions(&relabelled, got, 0.0);
    }
    assert_eq!(frames[0].index, 0);
    assert_eq!(frames[1].index, 1);
    // Arrival times: increasing, but how far apart depends on the machine's load (the sleep
    // above is pacing, not a measurement).
    assert!(frames[1].timestamp_secs > frames[0].timestamp_secs, "{frames:?}");
    wait_for(|| source.stats().skipped_malformed == 1);
    assert_eq!(source.stats().frames, 2);
}

#[test]
fn send_recording_round_trips_over_tcp_and_udp() {
    // Frames 280..370: one body, then two from frame 312 on.
    let mut recording = synth_recording(370);
    recording.frames.drain(..280);
    let t0 = recording.frames[0].timestamp_secs;
    for proto in [Proto::Tcp, Proto::Udp] {
        let mut source = match proto {
            Proto::Tcp => {
                NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT)
            }
            Proto::Udp => NetSource::udp(
                "127.0.0.1:0".parse().unwrap(),
                &NetConfig { idle_timeout: Duration::from_millis(300), ..NetConfig::DEFAULT },
            ),
        }
        .unwrap();
        // UDP is paced (a burst could overflow the socket buffer); TCP goes as fast as it can.
        let fps = match proto {
            Proto::Tcp => None,
            Proto::Udp => Some(300.0),
        };
        let stats = send_recording(&recording, source.local_addr(), proto, fps).unwrap();
        assert_eq!(stats.frames, 90);
        let events = collect_until(&mut source, |e| ended_count(e) == 1);
        let frames: Vec<&Frame> = events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Frame { frame, .. } => Some(frame),
                SourceEvent::Ended { .. } => None,
            })
            .collect();
        assert_eq!(frames.len(), 90, "{proto}");
        for (want, got) in recording.frames.iter().zip(&frames) {
            assert_eq!(want.index, got.index);
            // Stream time starts at the first frame.
            assert!((want.timestamp_secs - t0 - got.timestamp_secs).abs() < 1e-6);
            // 5 decimals on the wire, plus f32 rounding.
            assert_same_positions(want, got, 6e-6);
        }
        assert_eq!(source.stats().skipped(), 0);
    }
}

#[test]
fn overflow_keeps_the_newest_frames() {
    let cfg = NetConfig { queue_frames: 4, ..NetConfig::DEFAULT };
    let mut source = NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let recording = synth_recording(50);
    send_recording(&recording, source.local_addr(), Proto::Tcp, None).unwrap();
    // Let ingress take everything in before the consumer reads anything.
    wait_for(|| source.stats().streams_ended == 1);
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    let indices: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Frame { frame, .. } => Some(frame.index),
            SourceEvent::Ended { .. } => None,
        })
        .collect();
    assert_eq!(indices, [46, 47, 48, 49]);
    let stats = source.stats();
    assert_eq!((stats.frames, stats.dropped_overflow), (50, 46));
}

#[test]
fn connection_limit_refuses_extra_clients() {
    let cfg = NetConfig { max_connections: 1, ..NetConfig::DEFAULT };
    let mut source = NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let mut first = TcpStream::connect(source.local_addr()).unwrap();
    first.write_all(format!("{}\n", encode_frame(&synth_frames(1)[0])).as_bytes()).unwrap();
    collect_until(&mut source, |e| e.len() == 1);
    let mut second = TcpStream::connect(source.local_addr()).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    // The server closes the refused connection: the read sees EOF (or a reset).
    let mut buf = [0_u8; 1];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    wait_for(|| source.stats().rejected_connections == 1);
    assert_eq!(source.stats().connections, 1);
    drop(first);
    collect_until(&mut source, |e| ended_count(e) == 1);
    // The permit is back: a new client is served.
    let mut third = TcpStream::connect(source.local_addr()).unwrap();
    third.write_all(format!("{}\n", encode_frame(&synth_frames(1)[0])).as_bytes()).unwrap();
    collect_until(&mut source, |e| e.len() == 1);
    assert_eq!(source.stats().connections, 2);
}

#[test]
fn tcp_connect_reads_a_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let spec: skelseg::source::SourceSpec = format!("tcp:{addr}").parse().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for frame in synth_frames(3) {
            conn.write_all(format!("{}\n", encode_frame(&frame)).as_bytes()).unwrap();
        }
    });
    // Without reconnection, the source is finished when its connection ends.
    let options = skelseg::source::OpenOptions {
        net: NetConfig { reconnect_backoff_max: Duration::ZERO, ..NetConfig::DEFAULT },
        pacing: skelseg::source::Pacing::RealTime,
    };
    let mut source = spec.open_with(&options).unwrap();
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    server.join().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[3],
        SourceEvent::Ended {
            stream: StreamId::new(format!("tcp:{addr}")),
            reason: EndReason::Closed
        }
    );
    // A client source is finished when its one stream ends.
    assert_eq!(source.next_event(WAIT), SourcePoll::Finished);
}

/// A bridge that restarts: the `tcp:` source loses its connection, reconnects with backoff to
/// the new listener on the same port, and the stream `tcp:ADDR` starts a new life.
#[test]
fn tcp_connect_reconnects_when_the_server_restarts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let frames = synth_frames(5);
    let serve = |listener: std::net::TcpListener, frames: Vec<skelseg::Frame>| {
        let (mut conn, _) = listener.accept().unwrap();
        for frame in &frames {
            conn.write_all(format!("{}\n", encode_frame(frame)).as_bytes()).unwrap();
        }
        // Closing the connection and the listener: the bridge is down.
    };
    let first = frames[..3].to_vec();
    let server = std::thread::spawn(move || serve(listener, first));
    let cfg = NetConfig { reconnect_backoff_max: Duration::from_millis(200), ..NetConfig::DEFAULT };
    let mut source = NetSource::tcp_connect(addr, &cfg).unwrap();
    let stream = StreamId::new(format!("tcp:{addr}"));
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    server.join().unwrap();
    assert_eq!(frames_of(&events, &stream).len(), 3);
    assert_eq!(
        events.last(),
        Some(&SourceEvent::Ended { stream: stream.clone(), reason: EndReason::Closed })
    );
    // Down for a while (a few refused attempts), then back on the same port.
    std::thread::sleep(Duration::from_millis(500));
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let second = frames[3..].to_vec();
    let server = std::thread::spawn(move || serve(listener, second));
    let events = collect_until(&mut source, |e| ended_count(e) == 1);
    server.join().unwrap();
    let indices: Vec<u64> = frames_of(&events, &stream).iter().map(|f| f.index).collect();
    assert_eq!(indices, [3, 4]);
    assert_eq!(events.last(), Some(&SourceEvent::Ended { stream, reason: EndReason::Closed }));
    let stats = source.stats();
    assert_eq!((stats.connections, stats.frames, stats.streams_ended), (2, 5, 2));
    drop(source);
}

/// The source side of "a stream id that ends and comes back gets fresh state": a UDP peer that
/// idles out ends its stream; when it sends again from the same address it is a new life of
/// the same id with a fresh decoder (its frame numbers may restart), after the `Ended`.
#[test]
fn a_udp_peer_that_idles_out_comes_back_as_a_fresh_stream() {
    let cfg = NetConfig { idle_timeout: Duration::from_millis(300), ..NetConfig::DEFAULT };
    let mut source = NetSource::udp("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let frames = synth_frames(3);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stream = StreamId::new(format!("udp:{}", client.local_addr().unwrap()));
    client.connect(source.local_addr()).unwrap();
    for f in &frames {
        client.send(encode_frame(f).as_bytes()).unwrap();
    }
    let first = collect_until(&mut source, |e| ended_count(e) == 1);
    assert_eq!(frames_of(&first, &stream).len(), 3);
    assert_eq!(
        first.last(),
        Some(&SourceEvent::Ended { stream: stream.clone(), reason: EndReason::Idle })
    );
    // Back from the same address, numbering from 0 again: accepted, not out of order.
    for f in &frames[..2] {
        client.send(encode_frame(f).as_bytes()).unwrap();
    }
    let second = collect_until(&mut source, |e| ended_count(e) == 1);
    let indices: Vec<u64> = frames_of(&second, &stream).iter().map(|f| f.index).collect();
    assert_eq!(indices, [0, 1]);
    assert_eq!(second.last(), Some(&SourceEvent::Ended { stream, reason: EndReason::Idle }));
    let stats = source.stats();
    assert_eq!((stats.connections, stats.frames, stats.skipped_out_of_order), (2, 5, 0));
}
