//! `skelseg send`: replays a recording as a live `skeleton-ndjson/1` stream to a TCP or UDP
//! listener (a header line, then one frame per line or per datagram), paced at a frame rate.

use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::io::Recording;
use crate::io::ndjson::{Header, MAX_LINE_BYTES, encode_frame, encode_header};

/// Transport of [`send_recording`].
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    /// One NDJSON line per frame over a TCP connection.
    #[default]
    Tcp,
    /// One NDJSON object per UDP datagram.
    Udp,
}

impl FromStr for Proto {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => {
                Err(Error::invalid("protocol", format!("expected tcp or udp, found {other:?}")))
            }
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// What [`send_recording`] sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SendStats {
    /// Frames sent.
    pub frames: u64,
    /// Bytes sent, header included.
    pub bytes: u64,
    /// Wall time from the header to the last frame, in seconds.
    pub elapsed_secs: f64,
}

/// Sends `recording` to `to`: the canonical header, then every frame, one per line (TCP) or
/// datagram (UDP), at `fps` frames per second (`None`: as fast as possible). Blocks until sent;
/// TCP waits for the connection for up to 5 s.
pub fn send_recording(
    recording: &Recording,
    to: SocketAddr,
    proto: Proto,
    fps: Option<f64>,
) -> Result<SendStats> {
    let period = match fps {
        None => None,
        Some(fps) if fps.is_finite() && fps > 0.0 => Some(Duration::from_secs_f64(1.0 / fps)),
        Some(fps) => {
            return Err(Error::invalid("fps", format!("expected a positive rate, found {fps}")));
        }
    };
    let location = format!("{proto}:{to}");
    let io_err = |e: std::io::Error| Error::io(location.clone(), e);
    let mut sink = Sink::open(to, proto).map_err(io_err)?;
    // Paced: each frame goes out on time; fast: the TCP buffer batches lines.
    let flush_each = period.is_some();
    let header = encode_header(&Header::canonical(
        Some(recording.fps).filter(|f| f.is_finite() && *f > 0.0),
    ));
    let started = Instant::now();
    sink.send_line(&header, flush_each).map_err(io_err)?;
    let mut stats = SendStats { bytes: header.len() as u64 + 1, ..SendStats::default() };
    for (i, frame) in recording.frames.iter().enumerate() {
        if let Some(period) = period {
            let due = started + period.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let line = encode_frame(frame);
        sink.send_line(&line, flush_each)
            .map_err(|e| Error::io(format!("{location} frame {}", frame.index), e))?;
        stats.frames += 1;
        stats.bytes += line.len() as u64 + 1;
    }
    sink.finish().map_err(io_err)?;
    stats.elapsed_secs = started.elapsed().as_secs_f64();
    tracing::info!(to = %location, frames = stats.frames, bytes = stats.bytes, elapsed_secs = stats.elapsed_secs, "recording sent");
    Ok(stats)
}

/// Where [`send_recording`] writes.
enum Sink {
    Tcp(std::io::BufWriter<TcpStream>),
    Udp(UdpSocket),
}

impl Sink {
    fn open(to: SocketAddr, proto: Proto) -> std::io::Result<Self> {
        Ok(match proto {
            Proto::Tcp => {
                let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
                stream.set_nodelay(true)?;
                Sink::Tcp(std::io::BufWriter::new(stream))
            }
            Proto::Udp => {
                let local: SocketAddr =
                    if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0_u16; 8], 0).into() };
                let socket = UdpSocket::bind(local)?;
                socket.connect(to)?;
                Sink::Udp(socket)
            }
        })
    }

    fn send_line(&mut self, line: &str, flush: bool) -> std::io::Result<()> {
        match self {
            Sink::Tcp(out) => {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                if flush { out.flush() } else { Ok(()) }
            }
            Sink::Udp(socket) => {
                if line.len() > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "frame of {} bytes exceeds the datagram limit of {MAX_LINE_BYTES} bytes",
                            line.len()
                        ),
                    ));
                }
                socket.send(line.as_bytes()).map(|_| ())
            }
        }
    }

    /// Flushes buffered lines; the TCP connection closes cleanly when the sink drops.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Tcp(out) => out.flush(),
            Sink::Udp(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_parses_and_prints() {
        assert_eq!("tcp".parse::<Proto>().unwrap(), Proto::Tcp);
        assert_eq!("udp".parse::<Proto>().unwrap().to_string(), "udp");
        assert!("sctp".parse::<Proto>().is_err());
    }

    #[test]
    fn refused_connection_is_a_located_error() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let rec = Recording {
            name: "r".into(),
            source_layout: crate::skeleton::Layout::KinectV2_25,
            fps: 30.0,
            frames: Vec::new(),
            intervals: None,
        };
        let err = send_recording(&rec, port, Proto::Tcp, None).unwrap_err().to_string();
        assert!(err.starts_with(&format!("tcp:{port}")), "{err}");
        assert!(send_recording(&rec, port, Proto::Udp, Some(-1.0)).is_err());
    }
}
