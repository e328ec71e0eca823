//! The WebSocket listener: the TCP accept loop and HTTP/1.1 upgrades.
//!
//! One task per client connection, spawned under the [`crate::drain::Drain`].
//! Everything big and short-lived (the upgrade, the upstream connect) is boxed,
//! so an idle connection's task only holds the relay's state.
//!
//! A TCP connection that opens with the HTTP/2 preface is a router using
//! `--pod-transport h2`: it carries many WebSockets at once, each an extended
//! CONNECT stream (RFC 8441), served by [`crate::h2`]. Either way the upgraded
//! WebSocket is run by [`crate::session::run_connection`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::WebSocketStream;
use wsring_core::conn_limit::Permit;
use wsring_core::protocol::HEADER_POD;

use crate::handshake::{read_request, Refusal, Upgrade};
use crate::session::{run_connection, Shared};
use crate::watch::{MessageClock, Watched};

/// After the close handshake: how long to wait for the peer to close TCP.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accept connections until the future is dropped (which closes the listener).
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match shared.limits.try_acquire(peer.ip()) {
                Ok(permit) => {
                    let task = serve_connection(stream, peer, shared.clone(), permit);
                    shared.drain.spawn(task);
                }
                Err(hit) => {
                    // Callers are routers: closing unread is answer enough.
                    shared.refused_over_limit(hit, peer);
                    drop(stream);
                }
            },
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Serve one TCP connection; `permit` is its place under the connection caps.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Permit,
) {
    let _ = stream.set_nodelay(true);
    match crate::h2::starts_with_preface(&stream, shared.handshake_timeout).await {
        Some(true) => {
            crate::h2::serve(stream, peer, shared).await;
            drop(permit);
            return;
        }
        Some(false) => {}
        None => {
            tracing::debug!(%peer, "nothing received before the handshake timeout");
            shared.metrics.failed_handshakes.inc();
            return;
        }
    }
    let clock = Arc::new(MessageClock::default());
    let watched = Watched::new(stream, clock.clone(), shared.message_timeout);
    let Some((mut ws, upgrade)) = Box::pin(upgrade(watched, &shared)).await else {
        return;
    };
    run_connection(&mut ws, upgrade, peer, &shared, Some(clock)).await;
    Box::pin(linger(ws.get_mut().get_mut())).await;
    drop(permit);
}

/// Run the HTTP/1.1 upgrade; `None` if it failed (logged) or timed out.
async fn upgrade(
    stream: Watched<TcpStream>,
    shared: &Shared,
) -> Option<(WebSocketStream<Watched<TcpStream>>, Upgrade)> {
    let mut upgrade = None;
    let keep_headers = shared.upstream.is_some();
    // The error type is fixed by tungstenite's `Callback`; it only exists on refusals.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        upgrade = Some(
            read_request(request, &shared.admission, keep_headers)
                .map_err(Refusal::into_response)?,
        );
        let headers = response.headers_mut();
        headers.insert(HEADER_POD, shared.pod_header.clone());
        if let Some(protocol) = upgrade.as_ref().and_then(|u| u.framing.answer()) {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
        }
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
