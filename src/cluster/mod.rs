//! Scale-out over Zenoh: many sensors, many machines, workers that fail over.
//!
//! ## The key contract (stable; README "Scale-out over Zenoh")
//! - **Frames**: `{prefix}/frames/{stream}`, payload one `skeleton-ndjson/1` JSON object (the
//!   header or a frame), UTF-8. A header may come at any time and applies from then on; frames
//!   without any header use the format's defaults. A Zenoh `delete` on the key ends the stream.
//! - **Events**: `{prefix}/events/{stream}`, payload the JSON object `skelseg stream --json`
//!   prints for each [`SegmentEvent`](crate::stream::SegmentEvent), plus `"worker": ID`.
//! - **Workers**: a liveliness token `{prefix}/workers/{id}` per worker. Each stream belongs to
//!   the live worker with the highest rendezvous score ([`owner`]), computed by every worker
//!   alone from the same membership view, so a stream has one owner at a time.
//!
//! `prefix` defaults to `skelseg`. [`ZenohConfig`] opens sessions (scouting by multicast off,
//! loopback endpoints unless told otherwise); [`Worker`] holds the membership and the handover
//! bookkeeping; [`crate::source::zenoh::ZenohSource`] takes the frames of the streams this
//! worker owns; [`EventSink`] publishes events; [`send_recording`] publishes a recording as a
//! live stream.
//!
//! ## Handover rule
//! Ownership moves when the membership changes (a worker joins, leaves or dies: Zenoh drops a
//! dead peer's token when its links close, at once for a crashed process whose kernel closes
//! its sockets, after the [`DEFAULT_LEASE_MS`] lease for a frozen or unreachable one; a clean
//! leave drops it at once). The old owner
//! stops publishing the stream's events the moment its view changes (even for frames it had
//! already queued). The new owner warms its window with the stream's recent frames (its own
//! buffer of the frames it received but did not own, filled at start from the publishers'
//! caches through `zenoh-ext` history) and then publishes with two suppressions:
//! 1. nothing at or before the **last committed end** it has seen on the events key (a
//!    segment reaching back over it is clipped to start just after it, its start time
//!    interpolated);
//! 2. no segment that ends at or before the **takeover frame** (the newest frame of its warm-up):
//!    those frames were the old owner's to commit.
//!
//! A committed segment is therefore never published twice and never retracted, and the
//! published segments of a stream never overlap, provided the old owner's last commit reaches
//! the new owner before the new owner's first commit, which is at least `lookahead` frames
//! (0.5 s at the defaults) after the takeover. What a handover costs is in the README.
//!
//! ## Fencing
//! A worker that stops running for a lease or longer (a frozen or suspended process, a starved
//! machine) may have been dropped by its peers, its streams taken over, while its own view and
//! its queued frames are stale. The source's timer notes every 100 ms that the process runs;
//! the first thread to run after such a gap (the timer or the event sink) raises a fence: the
//! pipeline runs of the streams it was running become stale and publish nothing more, up to
//! and including their `stream_ended`, and the source ends them, so each stream it still owns
//! restarts at its next frame as a takeover (warm-up, takeover frame, the committed ends learnt
//! meanwhile). A resumed worker therefore never publishes what it computed from before its
//! stall, and from its restart on it is under the same proviso as any handover.

mod send;
mod sink;
mod worker;

use std::path::PathBuf;

use zenoh::{Session, Wait};

use crate::error::{Error, Result};

pub use send::{ZenohSendOptions, send_recording};
pub use sink::{EventSink, SinkStats};
pub use worker::{Worker, WorkerStats, owner};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "skelseg";
/// The default listen endpoint: loopback, an ephemeral port.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:0";
/// Frames a new owner warms its window with, and that `send` keeps in its publisher cache:
/// the default window (256) plus lookahead (15), rounded up.
pub const DEFAULT_HISTORY_FRAMES: usize = 300;

/// How to open a Zenoh session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZenohConfig {
    /// Endpoints to connect to (`tcp/127.0.0.1:7447`).
    pub connect: Vec<String>,
    /// Endpoints to listen on; empty: [`DEFAULT_LISTEN`] unless the config file sets some.
    pub listen: Vec<String>,
    /// Zenoh's own JSON5 configuration file; its settings apply first, the fields above override.
    pub config_file: Option<PathBuf>,
}

fn zerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("zenoh", format!("{what}: {e}"))
}

/// The link lease skelseg sets, in milliseconds (Zenoh's own default is 10 000): a peer that
/// sends nothing for this long (a crashed machine, a frozen process, a cut cable) is dropped,
/// with its liveliness token, so a dead worker's streams move within a second. A process that
/// dies on a live machine closes its sockets and is dropped at once, whatever the lease.
pub const DEFAULT_LEASE_MS: u64 = 500;
/// Keep-alives per lease skelseg sets (Zenoh's default, 4): one every 125 ms when idle, so a
/// peer stalled for up to 375 ms is not taken for dead.
pub const DEFAULT_KEEP_ALIVE: u64 = 4;

/// The settings skelseg gives every session unless a `--zenoh-config` file sets them itself:
/// (Zenoh config path, JSON5 value).
fn session_defaults() -> [(&'static str, String); 3] {
    [
        ("scouting/multicast/enabled", "false".to_owned()),
        ("transport/link/tx/lease", DEFAULT_LEASE_MS.to_string()),
        ("transport/link/tx/keep_alive", DEFAULT_KEEP_ALIVE.to_string()),
    ]
}

/// Whether the JSON5 `file` sets the config path `path` (`a/b/c`).
fn sets(file: &serde_json::Value, path: &str) -> bool {
    path.split('/').try_fold(file, |v, part| v.get(part)).is_some()
}

impl ZenohConfig {
    /// The Zenoh configuration: peer mode; multicast scouting off, a link lease of
    /// [`DEFAULT_LEASE_MS`] with [`DEFAULT_KEEP_ALIVE`] keep-alives, unless the config file
    /// sets them; listening on loopback unless endpoints are given; timestamping on (the
    /// publisher caches that warm a new owner need it).
    pub fn to_zenoh(&self) -> Result<zenoh::Config> {
        let (mut config, file) = match &self.config_file {
            Some(path) => {
                let config = zenoh::Config::from_file(path)
                    .map_err(|e| zerr(&format!("reading {}", path.display()), e))?;
                // Zenoh fills what the file leaves out with its own defaults; the file's text
                // says what it set. (A YAML file reads as setting nothing here.)
                let text = std::fs::read_to_string(path)
                    .map_err(|e| zerr(&format!("reading {}", path.display()), e))?;
                let file = json5::from_str::<serde_json::Value>(&text).unwrap_or_default();
                (config, file)
            }
            None => (zenoh::Config::default(), serde_json::Value::Null),
        };
        for (path, value) in session_defaults() {
            if !sets(&file, path) {
                config.insert_json5(path, &value).map_err(|e| zerr(path, e))?;
            }
        }
        // The advanced publishers' caches (history for late joiners) need timestamps.
        config
            .insert_json5("timestamping/enabled", "true")
            .map_err(|e| zerr("timestamping/enabled", e))?;
        let file_listens = sets(&file, "listen/endpoints")
            && config.get_json("listen/endpoints").is_ok_and(|v| v != "[]" && v != "null");
        let listen = if !self.listen.is_empty() {
            self.listen.clone()
        } else if file_listens {
            Vec::new()
        } else {
            vec![DEFAULT_LISTEN.to_owned()]
        };
        let array = |items: &[String]| serde_json::to_string(items).unwrap_or_default();
        if !listen.is_empty() {
            config
                .insert_json5("listen/endpoints", &array(&listen))
                .map_err(|e| zerr(&format!("listen endpoints {listen:?}"), e))?;
        }
        if !self.connect.is_empty() {
            config
                .insert_json5("connect/endpoints", &array(&self.connect))
                .map_err(|e| zerr(&format!("connect endpoints {:?}", self.connect), e))?;
        }
        Ok(config)
    }

    /// Opens a session.
    pub fn open(&self) -> Result<Session> {
        let config = self.to_zenoh()?;
        zenoh::open(config).wait().map_err(|e| zerr("opening the session", e))
    }
}

/// Checks that `chunk` can stand as one key chunk (a stream name, a worker id, a prefix part):
/// non-empty, without the wildcard and reserved characters `* $ ? #`.
pub fn check_chunk(what: &str, chunk: &str) -> Result<()> {
    if chunk.is_empty()
        || chunk.contains(['*', '$', '?', '#'])
        || chunk.split('/').any(str::is_empty)
    {
        return Err(Error::invalid(
            what,
            format!(
                "expected a Zenoh key without `*`, `$`, `?`, `#` or empty parts, found {chunk:?}"
            ),
        ));
    }
    Ok(())
}

/// `{prefix}/frames/{stream}`.
pub fn frames_key(prefix: &str, stream: &str) -> String {
    format!("{prefix}/frames/{stream}")
}

/// `{prefix}/events/{stream}`.
pub fn events_key(prefix: &str, stream: &str) -> String {
    format!("{prefix}/events/{stream}")
}

/// `{prefix}/workers/{id}`.
pub fn worker_key(prefix: &str, id: &str) -> String {
    format!("{prefix}/workers/{id}")
}

/// The prefix and the stream part of a frames key expression: `skelseg/frames/**` gives
/// (`skelseg`, `**`). `None` when the expression has no `/frames/` part.
pub fn split_frames_keyexpr(keyexpr: &str) -> Option<(&str, &str)> {
    let (prefix, rest) = keyexpr.split_once("/frames/")?;
    (!prefix.is_empty() && !rest.is_empty()).then_some((prefix, rest))
}

/// The stream name of a skelseg stream id that came over Zenoh (`zenoh:NAME`), else `None`.
pub fn zenoh_stream_name(stream_id: &str) -> Option<&str> {
    stream_id.strip_prefix("zenoh:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(frames_key("skelseg", "ward/bed3"), "skelseg/frames/ward/bed3");
        assert_eq!(events_key("p", "s"), "p/events/s");
        assert_eq!(worker_key("p", "w1"), "p/workers/w1");
        assert_eq!(split_frames_keyexpr("skelseg/frames/**"), Some(("skelseg", "**")));
        assert_eq!(split_frames_keyexpr("a/b/frames/x/*"), Some(("a/b", "x/*")));
        assert_eq!(split_frames_keyexpr("skelseg/events/**"), None);
        assert_eq!(zenoh_stream_name("zenoh:bed3"), Some("bed3"));
        assert_eq!(zenoh_stream_name("tcp:1.2.3.4:5"), None);
    }

    #[test]
    fn chunks_without_wildcards_pass() {
        check_chunk("worker id", "box-1").unwrap();
        check_chunk("stream", "ward/bed3").unwrap();
        for bad in ["", "a*", "a/$b", "x?", "#", "a//b", "/a"] {
            let err = check_chunk("worker id", bad).unwrap_err().to_string();
            assert!(err.contains("worker id") && err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_config_keeps_scouting_off_and_listens_on_loopback() {
        let config = ZenohConfig::default().to_zenoh().unwrap();
        assert_eq!(config.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert_eq!(config.get_json("listen/endpoints").unwrap(), r#"["tcp/127.0.0.1:0"]"#);
        let config = ZenohConfig {
            connect: vec!["tcp/127.0.0.1:7447".into()],
            listen: vec!["tcp/127.0.0.1:7448".into()],
            config_file: None,
        }
        .to_zenoh()
        .unwrap();
        assert_eq!(config.get_json("connect/endpoints").unwrap(), r#"["tcp/127.0.0.1:7447"]"#);
        assert_eq!(config.get_json("listen/endpoints").unwrap(), r#"["tcp/127.0.0.1:7448"]"#);
        let err = ZenohConfig {
            config_file: Some("/nonexistent/z.json5".into()),
            ..ZenohConfig::default()
        }
        .to_zenoh()
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/z.json5"), "{err}");
    }

    #[test]
    fn the_short_lease_applies_unless_the_config_file_sets_one() {
        let config = ZenohConfig::default().to_zenoh().unwrap();
        assert_eq!(config.get_json("transport/link/tx/lease").unwrap(), "500");
        assert_eq!(config.get_json("transport/link/tx/keep_alive").unwrap(), "4");
        let dir = std::env::temp_dir().join(format!("skelseg-zcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file that sets neither scouting nor the lease gets skelseg's defaults...
        let plain = dir.join("plain.json5");
        std::fs::write(&plain, "{ mode: 'peer', // a comment\n }").unwrap();
        let config =
            ZenohConfig { config_file: Some(plain), ..ZenohConfig::default() }.to_zenoh().unwrap();
        assert_eq!(config.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert_eq!(config.get_json("transport/link/tx/lease").unwrap(), "500");
        // ...one that sets them keeps its own values, Zenoh's default lease included.
        let own = dir.join("own.json5");
        std::fs::write(
            &own,
            "{ scouting: { multicast: { enabled: true } }, transport: { link: { tx: { lease: 10000, keep_alive: 5 } } } }",
        )
        .unwrap();
        let config =
            ZenohConfig { config_file: Some(own), ..ZenohConfig::default() }.to_zenoh().unwrap();
        assert_eq!(config.get_json("scouting/multicast/enabled").unwrap(), "true");
        assert_eq!(config.get_json("transport/link/tx/lease").unwrap(), "10000");
        assert_eq!(config.get_json("transport/link/tx/keep_alive").unwrap(), "5");
        std::fs::remove_dir_all(&dir).ok();
    }
}
