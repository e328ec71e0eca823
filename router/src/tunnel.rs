//! Moving bytes between the client and the pod after the 101, without re-framing.
//!
//! Memory is the design constraint: the router must hold tens of thousands of
//! mostly idle WebSockets. A classic `copy_bidirectional` keeps two 8 KiB
//! buffers per connection for its whole life. Here an idle tunnel owns only its
//! two sockets and a few flags: it waits for *readiness* (`readable()`), then
//! reads into one per-thread scratch buffer and writes straight to the other
//! side. Only when the other side cannot take everything right now is the
//! remainder copied into a heap buffer owned by the tunnel, and reading in that
//! direction pauses until it is flushed (backpressure, as in TCP itself).
//!
//! End of stream in one direction shuts down the write side of the other
//! socket (half-close) and the other direction goes on, for at most
//! [`HALF_CLOSE_LINGER`]; the tunnel ends when both directions are finished,
//! the linger expires, or either socket fails.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::time::Duration;

use bytes::Bytes;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

/// Size of the per-thread scratch buffer: one read moves at most this much.
const SCRATCH_BYTES: usize = 32 * 1024;

/// How long the second direction may go on after the first one ended. A
/// WebSocket peer closes its side promptly after the closing handshake; one
/// that never does must not pin a half-open tunnel forever.
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);

/// TCP keepalive: detect dead peers of idle tunnels (mobile clients that vanish).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

thread_local! {
    /// Shared by every tunnel on this worker thread; only borrowed inside a
    /// synchronous read-then-write step, never across an `.await`.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// Socket options for both legs of a tunnel: no Nagle delay (WebSocket
/// messages are latency-sensitive and already framed), TCP keepalive.
pub fn tune(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(error) = SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "SO_KEEPALIVE");
    }
}

/// Bytes moved by a finished tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Client → pod.
    pub to_pod: u64,
    /// Pod → client.
    pub to_client: u64,
}

/// State of one direction of the tunnel.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes read but not yet accepted by the destination, and how many of them were written.
    pending: Option<(Vec<u8>, usize)>,
    /// The source reached end of stream.
    eof: bool,
    /// The destination's write side was shut down after `eof`.
    shut: bool,
    moved: u64,
}

impl Direction {
    /// Read from the source only when everything read before was delivered.
    fn wants_read(&self) -> bool {
        !self.eof && self.pending.is_none()
    }

    fn finished(&self) -> bool {
        self.shut
    }

    /// One read from `src` and as much of it as `dst` takes now; the rest is kept.
    fn pump(&mut self, src: &TcpStream, dst: &TcpStream) -> io::Result<()> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = match src.try_read(&mut scratch) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.moved += n as u64;
            let written = write_some(dst, &scratch[..n])?;
            if written < n {
                self.pending = Some((scratch[written..n].to_vec(), 0));
            }
            Ok(())
        })
    }

    /// Write what is pending to `dst`, as far as it goes now.
    fn flush(&mut self, dst: &TcpStream) -> io::Result<()> {
        if let Some((buf, done)) = &mut self.pending {
            *done += write_some(dst, &buf[*done..])?;
            if *done == buf.len() {
                self.pending = None;
            }
        }
        Ok(())
    }
}

/// Write as much of `buf` as the socket takes without blocking.
fn write_some(dst: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match dst.try_write(&buf[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// What woke the tunnel up.
enum Event {
    ClientReadable,
    PodReadable,
    ClientWritable,
    PodWritable,
    LingerExpired,
}

/// Tunnel bytes between `client` and `pod` until both directions end or one fails.
///
/// `client_early` were read from the client after its upgrade request and go
/// to the pod first; `pod_early` came with the pod's 101 and go to the client first.
pub async fn splice(
    mut client: TcpStream,
    client_early: Bytes,
    mut pod: TcpStream,
    pod_early: Bytes,
) -> io::Result<Transferred> {
    if !pod_early.is_empty() {
        client.write_all(&pod_early).await?;
    }
    if !client_early.is_empty() {
        pod.write_all(&client_early).await?;
    }
    let mut up = Direction {
        moved: client_early.len() as u64,
        ..Direction::default()
    };
    let mut down = Direction {
        moved: pod_early.len() as u64,
        ..Direction::default()
    };
    drop((client_early, pod_early));
    let mut linger: Option<Instant> = None;
    while !(up.finished() && down.finished()) {
        if linger.is_none() && (up.finished() || down.finished()) {
            linger = Some(Instant::now() + HALF_CLOSE_LINGER);
        }
        let event = tokio::select! {
            r = client.readable(), if up.wants_read() => r.map(|()| Event::ClientReadable),
            r = pod.readable(), if down.wants_read() => r.map(|()| Event::PodReadable),
            r = pod.writable(), if up.pending.is_some() => r.map(|()| Event::PodWritable),
            r = client.writable(), if down.pending.is_some() => r.map(|()| Event::ClientWritable),
            () = sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => Ok(Event::LingerExpired),
        }?;
        match event {
            Event::ClientReadable => up.pump(&client, &pod)?,
            Event::PodReadable => down.pump(&pod, &client)?,
            Event::PodWritable => up.flush(&pod)?,
            Event::ClientWritable => down.flush(&client)?,
            Event::LingerExpired => break,
        }
        if up.eof && up.pending.is_none() && !up.shut {
            up.shut = true;
            shutdown_write(&mut pod).await;
        }
        if down.eof && down.pending.is_none() && !down.shut {
            down.shut = true;
            shutdown_write(&mut client).await;
        }
    }
    Ok(Transferred {
        to_pod: up.moved,
        to_client: down.moved,
    })
}

/// Half-close: tell the peer no more data comes. A peer that is already gone
/// is not an error here; the other direction notices on its own.
async fn shutdown_write(stream: &mut TcpStream) {
    if let Err(error) = stream.shutdown().await {
        tracing::debug!(%error, "shutdown(write)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair of TCP streams (the "tunnel side" first).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_with_early_bytes_first_and_half_close() {
        let (client_side, mut client) = pair().await;
        let (pod_side, mut pod) = pair().await;
        let tunnel = tokio::spawn(splice(
            client_side,
            Bytes::from_static(b"early-up|"),
            pod_side,
            Bytes::from_static(b"early-down|"),
        ));

        client.write_all(b"hello pod").await.unwrap();
        let mut buf = vec![0; 18];
        pod.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"early-up|hello pod");

        pod.write_all(b"hello client").await.unwrap();
        let mut buf = vec![0; 23];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"early-down|hello client");

        // Client is done sending: the pod sees EOF but can still answer.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        pod.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        pod.write_all(b"bye").await.unwrap();
        pod.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");

        let moved = tunnel.await.unwrap().unwrap();
        assert_eq!(
            moved,
            Transferred {
                to_pod: 18,
                to_client: 26
            }
        );
    }

    #[tokio::test]
    async fn large_transfers_survive_backpressure_unchanged() {
        let (client_side, mut client) = pair().await;
        let (pod_side, mut pod) = pair().await;
        let tunnel = tokio::spawn(splice(client_side, Bytes::new(), pod_side, Bytes::new()));
        // 8 MiB with a pattern, written while nobody reads at first: the
        // tunnel must buffer the remainder, wait, and deliver every byte in order.
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                client.write_all(&data).await.unwrap();
                client.shutdown().await.unwrap();
                client
            }
        });
        let mut received = Vec::new();
        pod.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), data.len());
        assert!(received == data, "payload changed in transit");
        drop(pod);
        drop(writer.await.unwrap());
        let moved = tunnel.await.unwrap().unwrap();
        assert_eq!(moved.to_pod, data.len() as u64);
    }

    /// The memory budget (≤ 8 KiB per idle connection, kernel buffers aside)
    /// rests on the tunnel owning no data buffer while idle: its whole state
    /// is the two sockets, a few flags and the readiness futures.
    #[tokio::test]
    async fn an_idle_tunnel_holds_no_buffer() {
        let (client_side, _client) = pair().await;
        let (pod_side, _pod) = pair().await;
        let tunnel = splice(client_side, Bytes::new(), pod_side, Bytes::new());
        let size = std::mem::size_of_val(&tunnel);
        // Well under one 8 KiB copy buffer (debug builds lay futures out loosest).
        assert!(size <= 2048, "tunnel future is {size} bytes");
    }

    #[tokio::test]
    async fn a_reset_peer_ends_the_tunnel() {
        let (client_side, client) = pair().await;
        let (pod_side, mut pod) = pair().await;
        let tunnel = tokio::spawn(splice(client_side, Bytes::new(), pod_side, Bytes::new()));
        // Abortive close (RST) of the client.
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        // The pod side sees the end (EOF or reset) and nothing else...
        let mut rest = Vec::new();
        let _ = pod.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        // ...and once the pod side is gone too, the tunnel has ended.
        drop(pod);
        let _ = tunnel.await.unwrap();
    }
}
