//! Textual source specifications, as given on the command line:
//!
//! | spec | source |
//! |---|---|
//! | `file:PATH` | replay of a recording |
//! | `tcp-listen:127.0.0.1:7000` or `tcp-listen:7000` | NDJSON TCP server (loopback unless an address is given) |
//! | `tcp:HOST:PORT` | NDJSON TCP client |
//! | `udp:127.0.0.1:7001` or `udp:7001` | NDJSON over UDP |
//! | `osc`, `osc:12345`, `osc:0.0.0.0:12345` | KinectV2-OSC over UDP |
//! | `sim` | built-in simulator |
//! | `zenoh:skelseg/frames/**` | `skeleton-ndjson/1` samples over Zenoh ([`crate::cluster`]) |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

use super::{FrameSource, NetConfig, NetSource, Pacing, ReplaySource, osc};

/// A parsed source specification.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    /// Replay of a recording file.
    File(PathBuf),
    /// Listen for NDJSON TCP clients.
    TcpListen(SocketAddr),
    /// Connect to an NDJSON TCP server, `HOST:PORT` (resolved when opened).
    TcpConnect(String),
    /// NDJSON datagrams.
    Udp(SocketAddr),
    /// KinectV2-OSC datagrams.
    Osc(SocketAddr),
    /// The built-in simulator.
    Sim,
    /// `skeleton-ndjson/1` samples on a Zenoh key expression (`skelseg/frames/**`); needs the
    /// `zenoh` feature to open.
    Zenoh(String),
}

/// How to open a source.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenOptions {
    /// Limits of network sources.
    pub net: NetConfig,
    /// Pacing of file replays.
    pub pacing: Pacing,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { net: NetConfig::DEFAULT, pacing: Pacing::RealTime }
    }
}

const EXPECTED: &str = "expected file:PATH, tcp-listen:[IP:]PORT, tcp:HOST:PORT, udp:[IP:]PORT, osc[:[IP:]PORT], sim or zenoh:KEYEXPR";

fn spec_error(spec: &str, message: impl fmt::Display) -> Error {
    Error::invalid("source spec", format!("`{spec}`: {message}"))
}

/// `IP:PORT`, or `PORT` alone on 127.0.0.1 (listeners stay on loopback unless told otherwise).
fn listen_addr(spec: &str, text: &str) -> Result<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| spec_error(spec, format!("expected IP:PORT or PORT, found {text:?}")))
}

impl FromStr for SourceSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let (kind, rest) = match spec.split_once(':') {
            Some((kind, rest)) => (kind, Some(rest)),
            None => (spec, None),
        };
        match (kind, rest) {
            ("file", Some(path)) if !path.is_empty() => Ok(SourceSpec::File(PathBuf::from(path))),
            ("tcp-listen", Some(addr)) => listen_addr(spec, addr).map(SourceSpec::TcpListen),
            ("udp", Some(addr)) => listen_addr(spec, addr).map(SourceSpec::Udp),
            ("osc", None) => Ok(SourceSpec::Osc(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                osc::DEFAULT_PORT,
            ))),
            ("osc", Some(addr)) => listen_addr(spec, addr).map(SourceSpec::Osc),
            ("tcp", Some(target)) => match target.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(SourceSpec::TcpConnect(target.to_owned()))
                }
                _ => Err(spec_error(
                    spec,
                    format!("expected HOST:PORT to connect to, found {target:?}"),
                )),
            },
            ("sim", None) => Ok(SourceSpec::Sim),
            ("zenoh", Some(keyexpr)) if !keyexpr.is_empty() => {
                Ok(SourceSpec::Zenoh(keyexpr.to_owned()))
            }
            ("file" | "tcp-listen" | "udp" | "tcp" | "zenoh", _) => {
                Err(spec_error(spec, format!("missing the part after `{kind}:`; {EXPECTED}")))
            }
            _ => Err(spec_error(spec, format!("unknown source kind `{kind}`; {EXPECTED}"))),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::File(path) => write!(f, "file:{}", path.display()),
            SourceSpec::TcpListen(addr) => write!(f, "tcp-listen:{addr}"),
            SourceSpec::TcpConnect(target) => write!(f, "tcp:{target}"),
            SourceSpec::Udp(addr) => write!(f, "udp:{addr}"),
            SourceSpec::Osc(addr) => write!(f, "osc:{addr}"),
            SourceSpec::Sim => f.write_str("sim"),
            SourceSpec::Zenoh(keyexpr) => write!(f, "zenoh:{keyexpr}"),
        }
    }
}

impl SourceSpec {
    /// Opens the source with default network limits ([`NetConfig::DEFAULT`]); `pacing` applies
    /// to file replays.
    pub fn open(&self, pacing: Pacing) -> Result<Box<dyn FrameSource>> {
        self.open_with(&OpenOptions { net: NetConfig::DEFAULT, pacing })
    }

    /// Opens the source: binds or connects network sources at once (so a busy port or a
    /// refused connection is an error here), reads and replays recordings.
    pub fn open_with(&self, options: &OpenOptions) -> Result<Box<dyn FrameSource>> {
        Ok(match self {
            SourceSpec::File(path) => Box::new(open_file(path, options.pacing)?),
            SourceSpec::TcpListen(addr) => Box::new(NetSource::tcp_listen(*addr, &options.net)?),
            SourceSpec::TcpConnect(target) => {
                let addr = resolve(target)?;
                Box::new(NetSource::tcp_connect(addr, &options.net)?)
            }
            SourceSpec::Udp(addr) => Box::new(NetSource::udp(*addr, &options.net)?),
            SourceSpec::Osc(addr) => Box::new(NetSource::osc(*addr, &options.net)?),
            SourceSpec::Sim => open_sim(options)?,
            SourceSpec::Zenoh(keyexpr) => open_zenoh(keyexpr, options)?,
        })
    }
}

#[cfg(feature = "synth")]
fn open_sim(options: &OpenOptions) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::sim::SimSource::new(0, options.pacing)))
}

#[cfg(not(feature = "synth"))]
fn open_sim(_: &OpenOptions) -> Result<Box<dyn FrameSource>> {
    Err(Error::invalid("source spec", "`sim` needs skelseg's `synth` feature"))
}

fn resolve(target: &str) -> Result<SocketAddr> {
    let mut addrs = target.to_socket_addrs().map_err(|e| Error::io(format!("tcp:{target}"), e))?;
    addrs.next().ok_or_else(|| {
        Error::invalid("source spec", format!("`tcp:{target}`: the host resolves to no address"))
    })
}

/// A Zenoh source on a default session (loopback, no multicast scouting) as a worker with the
/// session's id; [`crate::source::zenoh::ZenohSource::open`] takes a configured worker.
#[cfg(feature = "zenoh")]
fn open_zenoh(keyexpr: &str, options: &OpenOptions) -> Result<Box<dyn FrameSource>> {
    let Some((prefix, _)) = crate::cluster::split_frames_keyexpr(keyexpr) else {
        return Err(spec_error(
            &format!("zenoh:{keyexpr}"),
            "expected a key expression PREFIX/frames/..., e.g. skelseg/frames/**",
        ));
    };
    let session = crate::cluster::ZenohConfig::default().open()?;
    let worker = crate::cluster::Worker::join(session, prefix, None)?;
    let cfg = super::zenoh::ZenohSourceConfig {
        net: options.net.clone(),
        ..super::zenoh::ZenohSourceConfig::default()
    };
    Ok(Box::new(super::zenoh::ZenohSource::open(&worker, keyexpr, cfg)?))
}

#[cfg(not(feature = "zenoh"))]
fn open_zenoh(keyexpr: &str, _options: &OpenOptions) -> Result<Box<dyn FrameSource>> {
    Err(spec_error(&format!("zenoh:{keyexpr}"), "skelseg was built without the `zenoh` feature"))
}

/// Reads any recording `crate::io::read_recording` knows and replays it.
fn open_file(path: &Path, pacing: Pacing) -> Result<ReplaySource> {
    ReplaySource::new(crate::io::read_recording(path)?, pacing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SourceSpec {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_kind() {
        let lo = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        assert_eq!(parse("file:data/a b.txt"), SourceSpec::File("data/a b.txt".into()));
        assert_eq!(parse("tcp-listen:127.0.0.1:7000"), SourceSpec::TcpListen(lo(7000)));
        assert_eq!(parse("tcp-listen:7000"), SourceSpec::TcpListen(lo(7000)));
        assert_eq!(
            parse("tcp-listen:0.0.0.0:7000"),
            SourceSpec::TcpListen("0.0.0.0:7000".parse().unwrap())
        );
        assert_eq!(
            parse("tcp:kinect-box.local:7000"),
            SourceSpec::TcpConnect("kinect-box.local:7000".into())
        );
        assert_eq!(parse("udp:127.0.0.1:7001"), SourceSpec::Udp(lo(7001)));
        assert_eq!(parse("udp:[::1]:7001"), SourceSpec::Udp("[::1]:7001".parse().unwrap()));
        assert_eq!(parse("osc"), SourceSpec::Osc(lo(12345)));
        assert_eq!(parse("osc:9000"), SourceSpec::Osc(lo(9000)));
        assert_eq!(parse("sim"), SourceSpec::Sim);
        assert_eq!(parse("zenoh:skelseg/frames/**"), SourceSpec::Zenoh("skelseg/frames/**".into()));
        for spec in [
            "tcp-listen:127.0.0.1:7000",
            "tcp:host:1",
            "udp:127.0.0.1:7001",
            "osc:127.0.0.1:12345",
            "sim",
            "zenoh:skelseg/frames/**",
        ] {
            assert_eq!(parse(spec).to_string(), spec);
        }
    }

    #[test]
    fn errors_name_the_spec() {
        for (spec, needle) in [
            ("kinect:1", "unknown source kind `kinect`"),
            ("tcp-listen:localhost", "expected IP:PORT or PORT, found \"localhost\""),
            ("tcp:7000", "expected HOST:PORT"),
            ("tcp:host:99999", "expected HOST:PORT"),
            ("file:", "missing the part after `file:`"),
            ("udp", "missing the part after `udp:`"),
            ("zenoh:", "missing the part after `zenoh:`"),
        ] {
            let err = spec.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{spec}`")) && err.contains(needle), "{spec}: {err}");
        }
    }

    fn open_error(spec: &SourceSpec) -> String {
        match spec.open_with(&OpenOptions::default()) {
            Ok(_) => panic!("{spec} opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn open_locates_missing_and_unknown_files() {
        let err = open_error(&parse("file:/nonexistent/x.skeleton"));
        assert!(err.starts_with("/nonexistent/x.skeleton"), "{err}");
        let err = open_error(&parse("file:/nonexistent/x.ndjson"));
        assert!(err.starts_with("/nonexistent/x.ndjson"), "{err}");
        let err = open_error(&parse("file:/nonexistent/x.csv"));
        assert!(err.contains("x.csv") && err.contains(".skeleton"), "{err}");
    }

    #[test]
    fn sim_opens_a_live_stream() {
        let mut src = SourceSpec::Sim.open(Pacing::AsFastAsPossible).expect("sim opens");
        assert!(matches!(
            src.next_event(std::time::Duration::from_millis(100)),
            crate::source::SourcePoll::Event(crate::source::SourceEvent::Frame { .. })
        ));
    }
}
