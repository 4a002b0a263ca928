//! Every bound on what the network can make skelseg hold or do, in one place. Network input is untrusted: each size and count a peer controls is
//! bounded here or in [`super::NetConfig`], and what goes over a bound is skipped and counted in
//! [`super::SourceStats`], never buffered without limit.
//!
//! | bound | value | protects against |
//! |---|---|---|
//! | [`MAX_LINE_BYTES`] (`NetConfig::max_line_bytes`) | 64 KiB per NDJSON line, UDP or OSC datagram | memory per line; a line without a newline |
//! | `NetConfig::max_connections` | 16 TCP clients per listener; 16 peers per UDP/OSC socket | streams (and their model state) per listener |
//! | `ZenohSourceConfig::max_streams` | 1,024 streams per Zenoh source (each keeps a 300-frame warm-up ring) | memory of keys published under the frames prefix |
//! | `NetConfig::queue_frames` | 256 frames per source (newest wins, drops counted) | a sender faster than inference |
//! | `NetConfig::idle_timeout` | 10 s | state of peers that went away (TCP closed, UDP/OSC freed) |
//! | [`MAX_BODIES_PER_FRAME`] | 16 bodies | per-frame work and memory from one datagram or OSC burst |
//! | [`MAX_BUNDLE_DEPTH`] | 4 nested OSC bundles | stack depth of the OSC decoder |
//! | [`MAX_ARRAY_DEPTH`] | 4 nested OSC arrays | stack depth when the decoded value is printed or dropped |
//! | [`MAX_ABS_COORD_M`] | 20 m | absurd coordinates reaching the model |
//! | JSON nesting | 128 levels (serde_json's limit) | stack depth of the JSON parser |
//! | `NetConfig::reconnect_backoff_max` | 5 s | a `tcp:` source hammering a bridge that is down |
//!
//! Listeners bind to 127.0.0.1 unless an address is given (`tcp-listen:7000`, `udp:7001`, `osc`).

pub use super::osc::{MAX_ARRAY_DEPTH, MAX_BUNDLE_DEPTH};
pub use crate::io::ndjson::{MAX_ABS_COORD_M, MAX_BODIES_PER_FRAME, MAX_LINE_BYTES};
