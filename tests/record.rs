//! `skelseg record` end to end: frames sent over `tcp-listen:` = frames written, one file per
//! stream, closed on disconnect; SIGTERM ends the recorder cleanly.

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the recorder never listened on {port}: {e}"),
        }
    }
}

/// One canonical frame line at `fps` with a marker coordinate, so files can be checked for
/// order and completeness.
fn frame_line(i: usize, fps: f64, marker: f32) -> String {
    let joints: Vec<String> =
        (0..25).map(|j| format!("[{marker},{},{}]", 0.05 * j as f32, 2.5)).collect();
    format!(
        r#"{{"type":"frame","frame_id":{i},"timestamp_usec":{},"bodies":[{{"body_id":1,"joint_positions":[{}]}}]}}"#,
        (i as f64 / fps * 1e6).round() as i64,
        joints.join(",")
    )
}

#[test]
fn every_frame_sent_over_tcp_is_written_and_sigterm_closes_cleanly() {
    const FRAMES: usize = 600;
    const CLIENTS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skelseg"))
        .args([
            "record",
            "--source",
            &format!("tcp-listen:127.0.0.1:{port}"),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Three clients at once, each as fast as the socket takes it, at 15, 30 and 60 fps.
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut stream = connect(port);
            std::thread::spawn(move || {
                let fps = [15.0, 30.0, 60.0][c];
                let mut text = String::new();
                for i in 0..FRAMES {
                    text += &frame_line(i, fps, c as f32);
                    text.push('\n');
                }
                stream.write_all(text.as_bytes()).unwrap();
                // Closing the connection ends the stream and closes its file.
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    // Wait until every stream's file is complete, then stop the recorder with SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(60);
    let count_lines = |p: &std::path::Path| {
        std::io::BufReader::new(std::fs::File::open(p).unwrap()).lines().count()
    };
    loop {
        let files: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        let complete = files.len() == CLIENTS && files.iter().all(|f| count_lines(f) == FRAMES + 1);
        if complete || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = {
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the recorder did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["frames"], (FRAMES * CLIENTS) as u64, "{report}");
    assert_eq!(report["dropped_overflow"], 0);
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), CLIENTS);
    let mut rates = Vec::new();
    for s in streams {
        assert_eq!(s["frames"], FRAMES as u64, "{s}");
        let path = std::path::PathBuf::from(s["file"].as_str().unwrap());
        let rec = skelseg::io::ndjson::read_recording(&path).unwrap();
        assert_eq!(rec.frames.len(), FRAMES);
        rates.push(rec.fps);
        // Sensor timestamps and order are kept: frame k of client c at k / fps.
        let step = rec.frames[1].timestamp_secs - rec.frames[0].timestamp_secs;
        assert!((step * rec.fps - 1.0).abs() < 1e-3, "{step} at {} fps", rec.fps);
        let marker = rec.frames[0].bodies[0].joints[1].pos[0];
        assert!(rec.frames.iter().all(|f| f.bodies[0].joints[1].pos[0] == marker));
    }
    rates.sort_by(f64::total_cmp);
    assert_eq!(rates, [15.0, 30.0, 60.0]);
}
