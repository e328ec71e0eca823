//! Moving bytes between the client and the pod after the 101, without re-framing.
//!
//! Memory is the design constraint: the router must hold tens of thousands of
//! mostly idle WebSockets. A classic `copy_bidirectional` keeps two 8 KiB
//! buffers per connection for its whole life. Here an idle tunnel owns only its
//! two sockets and a few flags: it waits for *readiness*, then reads into one
//! per-thread scratch buffer and writes straight to the other side. Only when
//! the other side cannot take everything right now is the remainder copied into
//! a heap buffer owned by the tunnel, and reading in that direction pauses
//! until it is flushed (backpressure, as in TCP itself).
//!
//! The pod leg is a TCP socket (HTTP/1.1) or a stream of the pod's HTTP/2
//! connection (`--pod-transport h2`); the tunnel is the same for both.
//!
//! End of stream in one direction shuts down the write side of the other
//! leg (half-close) and the other direction goes on, for at most
//! [`HALF_CLOSE_LINGER`]; the tunnel ends when both directions are finished,
//! the linger expires, or either socket fails.
//!
//! # Cost per forwarded chunk
//!
//! Throughput against nginx is decided by syscalls and wake-ups per message,
//! so the data path is one hand-written `Tunnel::poll` (no `select!`, which
//! would rebuild a readiness future per socket and direction on every event)
//! and it moves bytes with tokio's own `poll_read` / `poll_write`. Those
//! matter on epoll: a read that returns less than the buffer proves the
//! socket's receive queue is drained, and a write that takes less than offered
//! proves the send buffer is full, so tokio clears the readiness right there
//! (<https://github.com/tokio-rs/tokio/issues/5866>) and the next attempt
//! parks the task instead of making a syscall that can only fail with
//! `EAGAIN`. `try_read` / `try_write` clear readiness only after such a
//! failed syscall: one wasted `read(2)` for every chunk forwarded.
//! Correctness does not depend on that optimisation: readiness cleared
//! after an event that arrived meanwhile is not lost (tokio's readiness tick).

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Sleep};

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
    /// synchronous read-then-write step, never across a suspension point.
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

/// The TCP stream under a hyper upgrade, with bytes hyper already read from
/// it: a tunnel leg that is spliced as a plain socket.
pub fn raw_stream(upgraded: Upgraded) -> io::Result<(TcpStream, Bytes)> {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(_) => Err(io::Error::other(
            "upgraded connection is not a plain TCP stream",
        )),
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
    /// Bytes read but not yet accepted by the destination, and how many of
    /// them were written; boxed, as it is rare (backpressure, early bytes),
    /// so that an idle direction carries a pointer, not a buffer header.
    pending: Option<Box<(Vec<u8>, usize)>>,
    /// The source reached end of stream.
    eof: bool,
    /// The destination's write side was shut down after `eof`.
    shut: bool,
    moved: u64,
}

impl Direction {
    /// A direction whose first bytes were read already: they are written
    /// before anything more is read.
    fn starting_with(early: Bytes) -> Self {
        Direction {
            pending: (!early.is_empty()).then(|| Box::new((early.to_vec(), 0))),
            moved: early.len() as u64,
            ..Direction::default()
        }
    }

    /// Advance this direction as far as possible without blocking: flush what
    /// is pending, then (only once nothing is pending) read one chunk and
    /// forward it, then half-close `dst` after end of stream.
    ///
    /// Returns whether anything happened. When nothing did, the waker in `cx`
    /// is registered for whatever this direction waits for (`src` readable or
    /// `dst` writable), or the direction is finished.
    fn poll_step<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
    ) -> io::Result<bool>
    where
        S: AsyncRead + Unpin,
        D: AsyncWrite + HalfClose + Unpin,
    {
        let mut progress = false;
        if let Some(pending) = &mut self.pending {
            let (buf, done) = &mut **pending;
            let written = write_now(cx, dst, &buf[*done..])?;
            *done += written;
            progress = written > 0;
            if *done < buf.len() {
                return Ok(progress);
            }
            self.pending = None;
        }
        if !self.eof && self.pump(cx, src, dst)?.is_ready() {
            progress = true;
        }
        if self.eof && self.pending.is_none() && !self.shut && dst.poll_half_close(cx).is_ready() {
            self.shut = true;
            progress = true;
        }
        Ok(progress)
    }

    /// One read from `src` and as much of it as `dst` takes now; the rest is
    /// kept in `pending`. `Pending` when `src` has nothing to read.
    fn pump<S, D>(&mut self, cx: &mut Context<'_>, src: &mut S, dst: &mut D) -> Poll<io::Result<()>>
    where
        S: AsyncRead + Unpin,
        D: AsyncWrite + Unpin,
    {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut *src).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            self.moved += n as u64;
            let chunk = &scratch[..n];
            let written = write_now(cx, dst, chunk)?;
            if written < n {
                self.pending = Some(Box::new((chunk[written..].to_vec(), 0)));
            }
            Poll::Ready(Ok(()))
        })
    }
}

/// Write as much of `buf` as `dst` takes without blocking; if not all of it,
/// the waker in `cx` is registered for `dst` becoming writable.
fn write_now<D: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut D,
    buf: &[u8],
) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match Pin::new(&mut *dst).poll_write(cx, &buf[written..]) {
            Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(written)
}

/// The write half-close of a tunnel leg: tell the peer no more data comes. A
/// peer that is already gone is not an error here; the other direction
/// notices on its own.
pub trait HalfClose {
    /// `Ready` once the end of stream is signalled (or could not be).
    fn poll_half_close(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

impl HalfClose for TcpStream {
    fn poll_half_close(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        shutdown_write(self);
        Poll::Ready(())
    }
}

/// A stream of a pod's HTTP/2 connection: END_STREAM.
impl HalfClose for TokioIo<Upgraded> {
    fn poll_half_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Err(error) = ready!(Pin::new(self).poll_shutdown(cx)) {
            tracing::debug!(%error, "HTTP/2 stream shutdown");
        }
        Poll::Ready(())
    }
}

fn shutdown_write(stream: &TcpStream) {
    if let Err(error) = SockRef::from(stream).shutdown(Shutdown::Write) {
        tracing::debug!(%error, "shutdown(write)");
    }
}

/// Both legs and both directions of a running tunnel: the client's socket,
/// and the pod's socket (HTTP/1.1) or HTTP/2 stream (`--pod-transport h2`).
struct Tunnel<P> {
    client: TcpStream,
    pod: P,
    /// Client → pod.
    up: Direction,
    /// Pod → client.
    down: Direction,
    /// Started when the first direction finishes; boxed so that tunnels that
    /// are not half-closed (nearly all of them, idle ones included) do not
    /// carry a timer entry inline.
    linger: Option<Pin<Box<Sleep>>>,
}

impl<P: AsyncRead + AsyncWrite + HalfClose + Unpin> Tunnel<P> {
    /// Move bytes until both directions are finished (`Ready(Ok)`), the
    /// linger expires (`Ready(Ok)`) or a socket fails (`Ready(Err)`).
    ///
    /// Each direction is advanced until it makes no more progress, so one
    /// wake-up handles everything that is ready; `Pending` is returned only
    /// once every live direction has registered the waker for what it waits
    /// for. The directions use disjoint halves of the two sockets (one reads
    /// the client and writes the pod, the other the reverse), so one cannot
    /// unblock the other and each is polled to a standstill once, not again
    /// after the other moved. A busy tunnel cannot starve its worker thread:
    /// tokio's cooperative budget makes socket polls return `Pending` (and
    /// reschedule the task) after a bounded number of operations.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.up.poll_step(cx, &mut self.client, &mut self.pod)? {}
        while self.down.poll_step(cx, &mut self.pod, &mut self.client)? {}
        if self.up.shut && self.down.shut {
            return Poll::Ready(Ok(()));
        }
        if self.up.shut || self.down.shut {
            let linger = self
                .linger
                .get_or_insert_with(|| Box::pin(sleep(HALF_CLOSE_LINGER)));
            return linger.as_mut().poll(cx).map(Ok);
        }
        Poll::Pending
    }
}

/// Tunnel bytes between `client` and `pod` until both directions end or one fails.
///
/// `client_early` were read from the client after its upgrade request and go
/// to the pod first; `pod_early` came with the pod's 101 and go to the client
/// first.
pub fn splice<P>(client: TcpStream, client_early: Bytes, pod: P, pod_early: Bytes) -> Splice<P>
where
    P: AsyncRead + AsyncWrite + HalfClose + Unpin,
{
    Splice {
        tunnel: Tunnel {
            client,
            pod,
            up: Direction::starting_with(client_early),
            down: Direction::starting_with(pod_early),
            linger: None,
        },
    }
}

/// The future of [`splice`]: the tunnel and nothing else, which is what an
/// idle connection costs the router (an `async fn` would also keep its
/// arguments, next to the tunnel they moved into).
pub struct Splice<P> {
    tunnel: Tunnel<P>,
}

impl<P: AsyncRead + AsyncWrite + HalfClose + Unpin> Future for Splice<P> {
    type Output = io::Result<Transferred>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let tunnel = &mut self.get_mut().tunnel;
        ready!(tunnel.poll(cx))?;
        Poll::Ready(Ok(Transferred {
            to_pod: tunnel.up.moved,
            to_client: tunnel.down.moved,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    /// A peer that never closes its side after the other one did cannot
    /// keep the tunnel open: it ends [`HALF_CLOSE_LINGER`] after the half-close,
    /// and the half-open direction keeps working until then.
    #[tokio::test(start_paused = true)]
    async fn a_half_closed_tunnel_ends_after_the_linger() {
        let (client_side, mut client) = pair().await;
        let (pod_side, mut pod) = pair().await;
        let tunnel = tokio::spawn(splice(client_side, Bytes::new(), pod_side, Bytes::new()));
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        pod.read_to_end(&mut rest).await.unwrap();
        let half_closed = tokio::time::Instant::now();
        pod.write_all(b"still here").await.unwrap();
        let mut buf = vec![0; 10];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"still here");
        // The pod never closes: the tunnel gives up on its own.
        let moved = tunnel.await.unwrap().unwrap();
        assert!(half_closed.elapsed() >= HALF_CLOSE_LINGER - Duration::from_millis(100));
        assert_eq!(moved.to_client, 10);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
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
