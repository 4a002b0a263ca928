//! `skeleton-ndjson/1` over TCP (listen or connect) and UDP, on tokio.
//!
//! Each [`NetSource`] runs a current-thread tokio runtime on its own named thread and bridges
//! into the synchronous consumer through the lossy ingress queue (newest wins, drops counted).
//! Every TCP client and every UDP peer is its own stream with its own decoder; a bad line is
//! counted and logged and the stream goes on; a disconnect ends only that stream. UDP and OSC
//! share one datagram server (`source::datagram`); this module gives it the NDJSON decoder.
//!
//! ## Shutdown
//! [`SourceHandle::shutdown`] (or dropping the source) stops accepting, ends every open stream
//! with [`EndReason::Shutdown`], and the consumer then sees [`SourcePoll::Finished`]. Dropping
//! joins the runtime thread, which only waits for the tasks to notice the signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::io::ndjson::{Decoder, Rejected};

use super::datagram::{self, DatagramDecoder, Decoded};
use super::ingress::Ingress;
use super::{EndReason, FrameSource, SourcePoll, SourceStats, StreamId};

/// Limits and timeouts of network sources.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Longest NDJSON line / UDP datagram accepted; longer ones are skipped and counted.
    pub max_line_bytes: usize,
    /// Most TCP clients (or UDP/OSC peers) served at once; more are refused and counted.
    pub max_connections: usize,
    /// Frames the ingress queue holds before the oldest is dropped (newest wins).
    pub queue_frames: usize,
    /// A stream that sends nothing for this long ends with [`EndReason::Idle`] (a TCP
    /// connection is closed).
    pub idle_timeout: Duration,
    /// KinectV2-OSC: a frame is closed when no message arrived for this long.
    pub osc_frame_timeout: Duration,
    /// `tcp:` (connect) sources: after the connection ends, connect again, waiting 100 ms,
    /// then twice as long after every failed attempt, up to this bound. `Duration::ZERO`: do not
    /// reconnect (the source finishes when its one connection ends).
    pub reconnect_backoff_max: Duration,
}

impl NetConfig {
    /// 64 KiB lines, 16 connections, 256 queued frames, 10 s idle timeout, 20 ms OSC frame gap,
    /// reconnect backoff up to 5 s.
    pub const DEFAULT: NetConfig = NetConfig {
        max_line_bytes: crate::io::ndjson::MAX_LINE_BYTES,
        max_connections: 16,
        queue_frames: 256,
        idle_timeout: Duration::from_secs(10),
        osc_frame_timeout: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_secs(5),
    };
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig::DEFAULT
    }
}

/// Stops a network source from any thread (e.g. a Ctrl-C handler). Cheap to clone.
#[derive(Clone, Debug)]
pub struct SourceHandle {
    tx_shutdown: Arc<watch::Sender<bool>>,
}

impl SourceHandle {
    /// Asks the source to stop; returns at once. Open streams end with
    /// [`EndReason::Shutdown`], then the source reports [`SourcePoll::Finished`].
    pub fn shutdown(&self) {
        self.tx_shutdown.send_replace(true);
    }

    /// Whether shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        *self.tx_shutdown.borrow()
    }
}

/// A network source: TCP listener, TCP client, UDP or KinectV2-OSC socket.
#[must_use = "the source stops its thread when dropped"]
#[derive(Debug)]
pub struct NetSource {
    ingress: Arc<Ingress>,
    handle: SourceHandle,
    local_addr: SocketAddr,
    net_thread: Option<JoinHandle<()>>,
}

impl NetSource {
    /// Listens for `skeleton-ndjson/1` TCP clients on `addr` (use `127.0.0.1:0` for an ephemeral
    /// port). Each client is a stream `tcp:PEER`.
    pub fn tcp_listen(addr: SocketAddr, cfg: &NetConfig) -> Result<Self> {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| net_error("tcp-listen", addr, e))?;
        let local_addr = listener.local_addr().map_err(|e| net_error("tcp-listen", addr, e))?;
        listener.set_nonblocking(true).map_err(|e| net_error("tcp-listen", addr, e))?;
        tracing::info!(%local_addr, "listening for skeleton-ndjson/1 over TCP");
        let cfg = cfg.clone();
        spawn("skelseg::source::tcp", local_addr, &cfg.clone(), move |ingress, shutdown| {
            serve_tcp(listener, cfg, ingress, shutdown)
        })
    }

    /// Connects to a `skeleton-ndjson/1` TCP server at `addr` (5 s timeout; a refused first
    /// connection is an error here). Each connection is the stream `tcp:ADDR`; when it ends
    /// (the bridge restarts, the network drops), the stream ends and the source connects again
    /// with a backoff bounded by [`NetConfig::reconnect_backoff_max`], logging every loss and
    /// every reconnection, until it is shut down. With a zero bound the source is finished when
    /// its one connection ends.
    pub fn tcp_connect(addr: SocketAddr, cfg: &NetConfig) -> Result<Self> {
        let stream = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| net_error("tcp", addr, e))?;
        let local_addr = stream.local_addr().map_err(|e| net_error("tcp", addr, e))?;
        stream.set_nonblocking(true).map_err(|e| net_error("tcp", addr, e))?;
        tracing::info!(peer = %addr, "connected for skeleton-ndjson/1 over TCP");
        let cfg = cfg.clone();
        spawn("skelseg::source::tcp", local_addr, &cfg.clone(), move |ingress, shutdown| {
            connect_loop(stream, addr, cfg, ingress, shutdown)
        })
    }

    /// Receives `skeleton-ndjson/1` datagrams (one object each) on `addr`; each peer is a
    /// stream `udp:PEER` that ends after the idle timeout.
    pub fn udp(addr: SocketAddr, cfg: &NetConfig) -> Result<Self> {
        let socket = bind_udp("udp", addr)?;
        let local_addr = socket.local_addr().map_err(|e| net_error("udp", addr, e))?;
        tracing::info!(%local_addr, "listening for skeleton-ndjson/1 over UDP");
        let cfg = cfg.clone();
        spawn("skelseg::source::udp", local_addr, &cfg.clone(), move |ingress, shutdown| {
            datagram::serve::<NdjsonDatagrams>(socket, cfg, ingress, shutdown)
        })
    }

    /// Receives KinectV2-OSC messages on `addr` (default port 12345); each sender is a stream
    /// `osc:PEER`. See [`super::osc`].
    pub fn osc(addr: SocketAddr, cfg: &NetConfig) -> Result<Self> {
        let socket = bind_udp("osc", addr)?;
        let local_addr = socket.local_addr().map_err(|e| net_error("osc", addr, e))?;
        tracing::info!(%local_addr, "listening for KinectV2-OSC");
        let cfg = cfg.clone();
        spawn("skelseg::source::osc", local_addr, &cfg.clone(), move |ingress, shutdown| {
            datagram::serve::<super::osc::OscDatagrams>(socket, cfg, ingress, shutdown)
        })
    }

    /// The bound local address (the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops this source from another thread.
    pub fn handle(&self) -> SourceHandle {
        self.handle.clone()
    }
}

impl FrameSource for NetSource {
    fn next_event(&mut self, timeout: Duration) -> SourcePoll {
        self.ingress.next(timeout)
    }

    /// Stops the network thread (its streams end, pending frames flushed); what it queued is
    /// still returned, then [`SourcePoll::Finished`].
    fn close(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.net_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(local_addr = %self.local_addr, "network source thread panicked");
        }
    }

    fn stats(&self) -> SourceStats {
        self.ingress.counters.snapshot()
    }
}

impl Drop for NetSource {
    fn drop(&mut self) {
        self.close();
    }
}

fn net_error(kind: &str, addr: SocketAddr, e: std::io::Error) -> Error {
    Error::io(format!("{kind}:{addr}"), e)
}

fn bind_udp(kind: &str, addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| net_error(kind, addr, e))?;
    socket.set_nonblocking(true).map_err(|e| net_error(kind, addr, e))?;
    Ok(socket)
}

/// Closes the ingress when the runtime thread ends, even by a panic, so the consumer never
/// waits forever.
struct CloseOnDrop(Arc<Ingress>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Starts the runtime thread running `serve` and wraps it in a [`NetSource`].
fn spawn<F, Fut>(
    thread_name: &str,
    local_addr: SocketAddr,
    cfg: &NetConfig,
    serve: F,
) -> Result<NetSource>
where
    F: FnOnce(Arc<Ingress>, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ingress = Arc::new(Ingress::new(cfg.queue_frames));
    let (tx_shutdown, rx_shutdown) = watch::channel(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::SpawnThread { name: thread_name.to_owned(), source })?;
    let net_thread = std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn({
            let ingress = ingress.clone();
            move || {
                let _close = CloseOnDrop(ingress.clone());
                runtime.block_on(serve(ingress, rx_shutdown));
            }
        })
        .map_err(|source| Error::SpawnThread { name: thread_name.to_owned(), source })?;
    Ok(NetSource {
        ingress,
        handle: SourceHandle { tx_shutdown: Arc::new(tx_shutdown) },
        local_addr,
        net_thread: Some(net_thread),
    })
}

/// Resolves once shutdown is requested (or every handle is gone).
pub(crate) async fn wait_shutdown(rx_shutdown: &mut watch::Receiver<bool>) {
    rx_shutdown.wait_for(|&stop| stop).await.ok();
}

/// Sleeps until `deadline`, or forever when there is none.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Counts a skip and logs it: the first few per stream at WARN, the rest at DEBUG, so a peer
/// sending garbage cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct SkipLog {
    logged: u32,
}

impl SkipLog {
    const WARN_LIMIT: u32 = 10;

    pub(crate) fn skip(&mut self, ingress: &Ingress, stream: &StreamId, rejected: &Rejected) {
        ingress.counters.skip(rejected.reason);
        self.logged += 1;
        if self.logged <= Self::WARN_LIMIT {
            tracing::warn!(%stream, reason = ?rejected.reason, "skipped: {}", rejected.error);
            if self.logged == Self::WARN_LIMIT {
                tracing::warn!(%stream, "further skips on this stream are counted and logged at DEBUG");
            }
        } else {
            tracing::debug!(%stream, reason = ?rejected.reason, "skipped: {}", rejected.error);
        }
    }
}

/// Decodes one line of a stream and queues the frame or counts the skip.
fn handle_line(
    decoder: &mut Decoder,
    line: &[u8],
    stream: &StreamId,
    ingress: &Ingress,
    log: &mut SkipLog,
) {
    match decoder.decode_checked(line) {
        Ok(Some(frame)) => ingress.push_frame(stream, frame),
        Ok(None) => {}
        Err(rejected) => log.skip(ingress, stream, &rejected),
    }
}

async fn serve_tcp(
    listener: std::net::TcpListener,
    cfg: NetConfig,
    ingress: Arc<Ingress>,
    mut rx_shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot register the TCP listener with tokio: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            () = wait_shutdown(&mut rx_shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        ingress.counters.rejected_connection();
                        tracing::warn!(%peer, limit = cfg.max_connections, "connection refused: too many clients");
                        continue;
                    };
                    ingress.counters.connection();
                    let client = read_tcp(stream, peer, cfg.clone(), ingress.clone(), rx_shutdown.clone(), Some(permit));
                    clients.spawn(client);
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    while clients.join_next().await.is_some() {}
}

/// Reads one TCP client until it disconnects, idles out or the source shuts down.
async fn read_tcp(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    cfg: NetConfig,
    ingress: Arc<Ingress>,
    mut rx_shutdown: watch::Receiver<bool>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let stream_id = StreamId::new(format!("tcp:{peer}"));
    tracing::info!(stream = %stream_id, "client connected");
    let mut decoder = Decoder::new(stream_id.to_string()).with_max_line_bytes(cfg.max_line_bytes);
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut log = SkipLog::default();
    let reason = loop {
        let next_line = read_line_limited(&mut reader, &mut line, cfg.max_line_bytes);
        let read = tokio::select! {
            () = wait_shutdown(&mut rx_shutdown) => break EndReason::Shutdown,
            read = tokio::time::timeout(cfg.idle_timeout, next_line) => read,
        };
        match read {
            Err(_elapsed) => break EndReason::Idle,
            Ok(Err(e)) => break EndReason::Error(e.to_string()),
            Ok(Ok(LineRead::Line)) => {
                handle_line(&mut decoder, &line, &stream_id, &ingress, &mut log)
            }
            Ok(Ok(LineRead::Oversize(len))) => {
                log.skip(&ingress, &stream_id, &decoder.reject_oversize(len))
            }
            Ok(Ok(LineRead::Eof)) => break EndReason::Closed,
            Ok(Ok(LineRead::EofMidLine(len))) => {
                log.skip(&ingress, &stream_id, &decoder.reject_truncated(len));
                break EndReason::Truncated;
            }
        }
    };
    ingress.push_ended(stream_id, reason);
}

/// Timeout of one `tcp:` connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before reconnecting a `tcp:` source.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The `tcp:` source: reads `first`, then reconnects after every disconnect (bounded exponential
/// backoff) until shutdown; each connection is a new life of the stream `tcp:ADDR`.
async fn connect_loop(
    first: std::net::TcpStream,
    addr: SocketAddr,
    cfg: NetConfig,
    ingress: Arc<Ingress>,
    mut rx_shutdown: watch::Receiver<bool>,
) {
    let mut next = match tokio::net::TcpStream::from_std(first) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(peer = %addr, "cannot register the connection with tokio: {e}");
            None
        }
    };
    loop {
        if let Some(stream) = next.take() {
            ingress.counters.connection();
            read_tcp(stream, addr, cfg.clone(), ingress.clone(), rx_shutdown.clone(), None).await;
        }
        if cfg.reconnect_backoff_max.is_zero() || *rx_shutdown.borrow() {
            return;
        }
        tracing::warn!(peer = %addr, "connection lost; reconnecting (backoff up to {:?})", cfg.reconnect_backoff_max);
        let mut backoff = RECONNECT_BACKOFF_MIN.min(cfg.reconnect_backoff_max);
        let mut attempts = 0u64;
        while next.is_none() {
            tokio::select! {
                () = wait_shutdown(&mut rx_shutdown) => return,
                () = tokio::time::sleep(backoff) => {}
            }
            attempts += 1;
            let attempt =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr));
            let connected = tokio::select! {
                () = wait_shutdown(&mut rx_shutdown) => return,
                connected = attempt => connected,
            };
            match connected.map_err(std::io::Error::from).and_then(|r| r) {
                Ok(stream) => {
                    tracing::info!(peer = %addr, attempts, "reconnected");
                    next = Some(stream);
                }
                Err(e) => {
                    // The first failures at INFO, then every tenth, so a long outage stays readable.
                    if attempts <= 3 || attempts.is_multiple_of(10) {
                        tracing::info!(peer = %addr, attempts, next_in = ?(backoff * 2).min(cfg.reconnect_backoff_max), "reconnect failed: {e}");
                    }
                    backoff = (backoff * 2).min(cfg.reconnect_backoff_max);
                }
            }
        }
    }
}

/// Outcome of [`read_line_limited`].
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A complete line is in the buffer (without its newline).
    Line,
    /// A line longer than the limit was discarded up to and including its newline.
    Oversize(usize),
    /// End of stream at a line boundary.
    Eof,
    /// End of stream after this many bytes of an unfinished line.
    EofMidLine(usize),
}

/// Reads one `\n`-terminated line into `line`, never buffering more than `max_bytes`: a longer
/// line is discarded through its newline, so reading resumes at the next line.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut discarded: Option<usize> = None;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match discarded {
                Some(len) => LineRead::EofMidLine(len),
                None if line.is_empty() => LineRead::Eof,
                None => LineRead::EofMidLine(line.len()),
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (&available[..pos], pos + 1),
            None => (available, available.len()),
        };
        let newline = done > chunk.len();
        match discarded.as_mut() {
            Some(len) => *len += chunk.len(),
            None if line.len() + chunk.len() > max_bytes => {
                discarded = Some(line.len() + chunk.len());
                line.clear();
            }
            None => line.extend_from_slice(chunk),
        }
        reader.consume(done);
        if newline {
            return Ok(match discarded {
                Some(len) => LineRead::Oversize(len),
                None => LineRead::Line,
            });
        }
    }
}

/// `skeleton-ndjson/1` datagrams: one JSON object (header or frame) per datagram, decoded by
/// the same stateful [`Decoder`] as a TCP stream's lines.
pub(crate) struct NdjsonDatagrams(Decoder);

impl DatagramDecoder for NdjsonDatagrams {
    const KIND: &'static str = "udp";

    fn new(stream: &StreamId, cfg: &NetConfig) -> Self {
        NdjsonDatagrams(Decoder::new(stream.to_string()).with_max_line_bytes(cfg.max_line_bytes))
    }

    fn on_datagram(&mut self, datagram: &[u8], _now: Instant, out: &mut Vec<Decoded>) {
        match self.0.decode_checked(datagram) {
            Ok(Some(frame)) => out.push(Decoded::Frame(frame)),
            Ok(None) => {}
            Err(rejected) => out.push(Decoded::Skip(rejected)),
        }
    }

    fn on_oversize(&mut self, len: usize, _limit: usize, out: &mut Vec<Decoded>) {
        out.push(Decoded::Skip(self.0.reject_oversize(len)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<(LineRead, String)> {
        // A 7-byte buffer makes lines span several fill_buf calls.
        let mut reader = BufReader::with_capacity(7, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let r = read_line_limited(&mut reader, &mut line, max).await.unwrap();
            let stop = matches!(r, LineRead::Eof | LineRead::EofMidLine(_));
            out.push((r, String::from_utf8_lossy(&line).into_owned()));
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn line_reader_limits_and_resynchronises() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = rt.block_on(lines_of(b"short\n0123456789abcdef\nok\r\n\ncut", 10));
        let kinds: Vec<&LineRead> = got.iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            [
                &LineRead::Line,
                &LineRead::Oversize(16),
                &LineRead::Line,
                &LineRead::Line,
                &LineRead::EofMidLine(3)
            ]
        );
        assert_eq!(got[0].1, "short");
        assert_eq!(got[2].1, "ok\r");
        assert_eq!(got[3].1, "");
        let got = rt.block_on(lines_of(b"a\n", 10));
        assert_eq!(got.last().map(|(k, _)| k), Some(&LineRead::Eof));
    }

    #[test]
    fn shutdown_finishes_an_idle_listener() {
        let mut source =
            NetSource::tcp_listen("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT).unwrap();
        assert_ne!(source.local_addr().port(), 0);
        assert_eq!(source.next_event(Duration::from_millis(10)), SourcePoll::Timeout);
        let handle = source.handle();
        std::thread::spawn(move || handle.shutdown());
        assert_eq!(source.next_event(Duration::from_secs(5)), SourcePoll::Finished);
    }

    #[test]
    fn binding_a_used_port_is_an_error() {
        let first = NetSource::udp("127.0.0.1:0".parse().unwrap(), &NetConfig::DEFAULT).unwrap();
        let err = NetSource::udp(first.local_addr(), &NetConfig::DEFAULT).unwrap_err();
        assert!(err.to_string().starts_with(&format!("udp:{}", first.local_addr())), "{err}");
    }
}
