//! The WebSocket listener: accept, upgrade, register, pick the app, relay, close.
//!
//! One task per client connection, spawned under the [`Drain`]. Everything big
//! and short-lived (the upgrade, the upstream connect) is boxed, so an idle
//! connection's task only holds the relay's state.
//!
//! A TCP connection that opens with the HTTP/2 preface is a router using
//! `--pod-transport h2`: it carries many WebSockets at once, each an extended
//! CONNECT stream (RFC 8441), served by [`crate::h2`] and then run by the same
//! [`run_connection`] as an HTTP/1.1 upgrade.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use wsring_core::protocol::{CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_TOO_BIG, HEADER_POD};

use crate::app::{connect_upstream, echo};
use crate::connection::{close_unrelayed, relay, Ending, DRAINING_REASON};
use crate::drain::Drain;
use crate::handshake::{read_request, Refusal, Upgrade};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// After the close handshake: how long to wait for the peer to close TCP.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Ring member name (for local connection ids).
    pub pod_name: String,
    /// `x-wsring-pod` value of every 101 answer.
    pub pod_header: HeaderValue,
    /// `ws://host:port` of the app container, or `None` for the echo app.
    pub upstream: Option<String>,
    /// Limits and buffer sizes of client and upstream connections.
    pub ws_config: WebSocketConfig,
    /// An upgrade request (or the HTTP/2 preface) must arrive within this.
    pub handshake_timeout: Duration,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub drain: Drain,
}

/// Accept connections until the future is dropped (which closes the listener).
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let task = serve_connection(stream, peer, shared.clone());
                shared.drain.spawn(task);
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Counts a registered connection in the metrics for as long as it lives.
struct Active<'a>(&'a Metrics);

impl<'a> Active<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.connections.inc();
        metrics.active_connections.inc();
        Active(metrics)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active_connections.dec();
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    match crate::h2::starts_with_preface(&stream, shared.handshake_timeout).await {
        Some(true) => {
            crate::h2::serve(stream, peer, shared).await;
            return;
        }
        Some(false) => {}
        None => {
            tracing::debug!(%peer, "nothing received before the handshake timeout");
            shared.metrics.failed_handshakes.inc();
            return;
        }
    }
    let Some((mut ws, upgrade)) = Box::pin(upgrade(stream, &shared)).await else {
        return;
    };
    run_connection(&mut ws, upgrade, peer, &shared).await;
    Box::pin(linger(ws.get_mut())).await;
}

/// Register an upgraded connection, relay it to the app until it ends, and
/// count how it ended; the transport under `ws` is the caller's to close.
pub(crate) async fn run_connection<S>(
    ws: &mut WebSocketStream<S>,
    upgrade: Upgrade,
    peer: SocketAddr,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = upgrade.conn_id.clone().unwrap_or_else(|| {
        format!(
            "{}-local-{}",
            shared.pod_name,
            shared.registry.next_local_number()
        )
    });
    let span = tracing::debug_span!("conn", %id, key = %upgrade.key, %peer);
    async {
        let registration = shared.registry.register(&id, &upgrade.key);
        let active = Active::new(&shared.metrics);
        tracing::debug!(ring_version = upgrade.ring_version, "connection open");
        let ending = match &shared.upstream {
            None => {
                let (tx, rx) = echo();
                relay(ws, tx, rx, registration.mailbox(), shared.drain.draining()).await
            }
            Some(base) => Box::pin(upstream(ws, base, &id, upgrade, &registration, shared)).await,
        };
        match ending {
            Ending::ClientRefused(CLOSE_TOO_BIG) => {
                shared.metrics.oversize_closes.inc();
            }
            Ending::AppFailed | Ending::AppUnreachable => {
                shared.metrics.upstream_failures.inc();
            }
            _ => {}
        }
        tracing::debug!(?ending, "connection closed");
        drop(active);
        drop(registration);
    }
    .instrument(span)
    .await;
}

/// Run the upgrade; `None` if it failed (logged) or timed out.
async fn upgrade(
    stream: TcpStream,
    shared: &Shared,
) -> Option<(WebSocketStream<TcpStream>, Upgrade)> {
    let mut upgrade = None;
    let keep_headers = shared.upstream.is_some();
    // The error type is fixed by tungstenite's `Callback`; it only exists on refusals.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        upgrade = Some(read_request(request, keep_headers).map_err(Refusal::into_response)?);
        response
            .headers_mut()
            .insert(HEADER_POD, shared.pod_header.clone());
        Ok(response)
    };
    let accept =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(shared.ws_config));
    let ws = match tokio::time::timeout(shared.handshake_timeout, accept).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::debug!(%error, "upgrade failed");
            shared.metrics.failed_handshakes.inc();
            return None;
        }
        Err(_) => {
            tracing::debug!("upgrade timed out");
            shared.metrics.failed_handshakes.inc();
            return None;
        }
    };
    Some((ws, upgrade?))
}

/// Connect the upstream app (a close order or the drain may come first), then relay.
async fn upstream<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    base: &str,
    id: &str,
    upgrade: Upgrade,
    registration: &crate::registry::Registration,
    shared: &Shared,
) -> Ending {
    let mailbox = registration.mailbox();
    let draining = shared.drain.draining();
    let headers = upgrade.headers.unwrap_or_default();
    let connect = Box::pin(connect_upstream(
        base,
        &upgrade.path_and_query,
        &headers,
        &upgrade.key,
        id,
        shared.ws_config,
    ));
    let connected = tokio::select! {
        result = connect => result,
        order = mailbox.closed() => {
            close_unrelayed(ws, order.code, order.reason).await;
            return Ending::Ordered(order.code);
        }
        () = draining.cancelled() => {
            close_unrelayed(ws, CLOSE_GOING_AWAY, DRAINING_REASON).await;
            return Ending::Draining;
        }
    };
    drop(headers);
    match connected {
        Ok(app) => {
            let (tx, rx) = app.split();
            relay(ws, tx, rx, mailbox, draining).await
        }
        Err(error) => {
            // 1011, not 1014 (bad gateway): 1014 is newer than RFC 6455 and common
            // client libraries (tungstenite among them) refuse it as a protocol error.
            tracing::warn!(%error, upstream = %base, "upstream app unreachable; closing the client with 1011");
            close_unrelayed(ws, CLOSE_INTERNAL_ERROR, "upstream app unreachable").await;
            Ending::AppUnreachable
        }
    }
}

/// Close TCP politely after the WebSocket close: send FIN, then give the peer a
/// moment to close its side, so unread bytes do not turn our close into a reset
/// that could destroy the close frame in flight.
async fn linger(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 1024];
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
