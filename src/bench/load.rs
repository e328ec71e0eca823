//! The load client: closed-loop WebSocket echo round trips.
//!
//! `connections` WebSocket connections, each with its own routing key, each
//! sending one binary message (8-byte sequence number + padding), waiting for
//! the echo and sending the next: throughput is round trips per second and
//! every round trip is a latency sample. The client runs one single-threaded
//! tokio runtime per client thread, each driving its share of the connections
//! with a plain `join_all` (no task spawning, no cross-thread synchronisation
//! on the hot path) and recording into its own HDR histogram; histograms are
//! merged at the end. Only round trips that *finish* inside the measurement
//! window (after the warm-up) count, so every target is measured over exactly
//! the same wall-clock window.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A round trip not answered within this long counts as an error and ends the connection.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections opened concurrently per client thread during set-up.
const CONNECT_CONCURRENCY: usize = 64;
/// Highest latency the histogram tracks (µs); larger samples are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How to load one target.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent connections (one outstanding message each).
    pub connections: usize,
    /// Measured window.
    pub duration: Duration,
    /// Unmeasured run-in before the window (connection pools, caches, CPU frequency).
    pub warmup: Duration,
    /// Payload size of each message (≥ 8: the sequence number).
    pub message_bytes: usize,
    /// Client threads (one current-thread runtime each).
    pub threads: usize,
}

/// Where connection `i` goes: the TCP address and the `ws://` URL (with its key).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Full request URL, e.g. `ws://127.0.0.1:8080/?key=bench-7`.
    pub url: String,
}

/// What one target achieved.
#[derive(Debug)]
pub struct LoadResult {
    /// Connections that completed the WebSocket handshake.
    pub connected: usize,
    /// Handshakes answered with an `x-wsring-pod` header (router only).
    pub pod_header: usize,
    /// Round trips completed inside the window.
    pub round_trips: u64,
    /// Round trips completed at any time, warm-up included (for CPU per message).
    pub all_round_trips: u64,
    /// Length of the window.
    pub window: Duration,
    /// Latency of those round trips, µs.
    pub latency_us: Histogram<u64>,
    /// Failed connects, transport errors, timeouts, unexpected closes.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadResult {
    /// Round trips per second over the window.
    pub fn per_second(&self) -> f64 {
        self.round_trips as f64 / self.window.as_secs_f64()
    }

    /// Add another run of the same target (a later round): counts and windows add up.
    pub fn merge(&mut self, other: LoadResult) -> anyhow::Result<()> {
        self.connected = self.connected.min(other.connected);
        self.pod_header = self.pod_header.min(other.pod_header);
        self.round_trips += other.round_trips;
        self.all_round_trips += other.all_round_trips;
        self.window += other.window;
        self.latency_us.add(&other.latency_us)?;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// Per-thread tallies (single-threaded: `Cell`/`RefCell`, no atomics).
struct Tally {
    hist: RefCell<Histogram<u64>>,
    round_trips: Cell<u64>,
    all_round_trips: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            hist: RefCell::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
            round_trips: Cell::new(0),
            all_round_trips: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
        })
    }

    fn error(&self, what: impl FnOnce() -> String) {
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(what());
        }
    }
}

/// What a client thread hands back.
struct ThreadResult {
    connected: usize,
    pod_header: usize,
    tally: Tally,
}

/// Run the closed-loop load against `endpoints` (one per connection) and measure it.
pub fn run(spec: &LoadSpec, endpoints: Vec<Endpoint>) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(
        spec.message_bytes >= 8,
        "messages carry an 8-byte sequence number"
    );
    let threads = spec.threads.clamp(1, endpoints.len().max(1));
    let barrier = Arc::new(Barrier::new(threads));
    let start = Arc::new(OnceLock::new());
    let mut shares: Vec<Vec<Endpoint>> = vec![Vec::new(); threads];
    for (i, e) in endpoints.into_iter().enumerate() {
        shares[i % threads].push(e);
    }
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(t, share)| {
            let (spec, barrier, start) = (spec.clone(), barrier.clone(), start.clone());
            std::thread::Builder::new()
                .name(format!("bench-client-{t}"))
                .spawn(move || client_thread(&spec, share, &barrier, &start))
                .context("spawning a client thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut result = LoadResult {
        connected: 0,
        pod_header: 0,
        round_trips: 0,
        all_round_trips: 0,
        window: spec.duration,
        latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        errors: 0,
        first_error: None,
    };
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        result.connected += r.connected;
        result.pod_header += r.pod_header;
        result.round_trips += r.tally.round_trips.get();
        result.all_round_trips += r.tally.all_round_trips.get();
        result.errors += r.tally.errors.get();
        result.latency_us.add(&*r.tally.hist.borrow())?;
        if result.first_error.is_none() {
            result.first_error = r.tally.first_error.take();
        }
    }
    Ok(result)
}

/// One client thread: connect its share, line up with the other threads, run the loops.
fn client_thread(
    spec: &LoadSpec,
    share: Vec<Endpoint>,
    barrier: &Barrier,
    start: &OnceLock<Instant>,
) -> anyhow::Result<ThreadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tally = Tally::new()?;
    let conns: Vec<(WebSocketStream<TcpStream>, bool)> = rt.block_on(async {
        futures_util::stream::iter(share)
            .map(|e| async move {
                let r = connect(&e).await;
                (e, r)
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .filter_map(|(e, r)| {
                let kept = match r {
                    Ok(c) => Some(c),
                    Err(err) => {
                        tally.error(|| format!("connecting to {}: {err:#}", e.url));
                        None
                    }
                };
                async move { kept }
            })
            .collect()
            .await
    });
    let connected = conns.len();
    let pod_header = conns.iter().filter(|(_, h)| *h).count();
    // Every thread starts its loops at the same instant, once all are connected.
    if barrier.wait().is_leader() {
        let _ = start.set(Instant::now());
    }
    barrier.wait();
    let t0 = *start.get().context("start instant not set")?;
    let window = (t0 + spec.warmup, t0 + spec.warmup + spec.duration);
    rt.block_on(futures_util::future::join_all(
        conns
            .into_iter()
            .map(|(ws, _)| echo_loop(ws, spec.message_bytes, window, &tally)),
    ));
    Ok(ThreadResult {
        connected,
        pod_header,
        tally,
    })
}

/// Open one WebSocket (Nagle off, like the servers); true if the answer named a pod.
async fn connect(e: &Endpoint) -> anyhow::Result<(WebSocketStream<TcpStream>, bool)> {
    let tcp = TcpStream::connect(e.addr).await?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().write_buffer_size(0);
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(e.url.as_str(), tcp, Some(config)).await?;
    let pod_header = response
        .headers()
        .contains_key(wsring_core::protocol::HEADER_POD);
    Ok((ws, pod_header))
}

/// Closed loop on one connection until the window ends.
async fn echo_loop(
    mut ws: WebSocketStream<TcpStream>,
    message_bytes: usize,
    (measure_from, until): (Instant, Instant),
    tally: &Tally,
) {
    // One buffer reused for every message: once the previous frame has been
    // written and dropped, `reserve` reclaims the same allocation.
    let mut buf = BytesMut::with_capacity(message_bytes);
    let mut seq: u64 = 0;
    loop {
        let sent_at = Instant::now();
        if sent_at >= until {
            break;
        }
        seq += 1;
        buf.reserve(message_bytes);
        buf.put_u64(seq);
        buf.put_bytes(b'w', message_bytes - 8);
        if let Err(e) = ws.send(Message::Binary(buf.split().freeze())).await {
            tally.error(|| format!("send: {e}"));
            return;
        }
        match tokio::time::timeout(ECHO_TIMEOUT, wait_echo(&mut ws, seq)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tally.error(|| e);
                return;
            }
            Err(_) => {
                tally.error(|| format!("no echo within {ECHO_TIMEOUT:?}"));
                return;
            }
        }
        let done = Instant::now();
        tally.all_round_trips.set(tally.all_round_trips.get() + 1);
        if done >= measure_from && done < until {
            let us = (done - sent_at).as_micros().clamp(1, MAX_LATENCY_US.into()) as u64;
            tally.hist.borrow_mut().saturating_record(us);
            tally.round_trips.set(tally.round_trips.get() + 1);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Read until the echo of message `seq` arrives (control frames are skipped).
async fn wait_echo(ws: &mut WebSocketStream<TcpStream>, seq: u64) -> Result<(), String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if echoed_seq(&b) == Some(seq) => return Ok(()),
            Some(Ok(Message::Binary(b))) => {
                return Err(format!("unexpected echo {:?} for {seq}", echoed_seq(&b)))
            }
            Some(Ok(Message::Text(t))) => {
                return Err(format!("text frame instead of the binary echo: {t:.40}"))
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed by server: {frame:?}")),
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("connection ended".to_owned()),
        }
    }
}

/// The sequence number at the start of an echoed payload.
fn echoed_seq(b: &Bytes) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_round_trips_through_the_payload() {
        let mut buf = BytesMut::new();
        buf.put_u64(42);
        buf.put_bytes(b'w', 56);
        let b = buf.freeze();
        assert_eq!(b.len(), 64);
        assert_eq!(echoed_seq(&b), Some(42));
        assert_eq!(echoed_seq(&Bytes::from_static(b"short")), None);
    }
}
