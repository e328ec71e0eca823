//! WebSockets over HTTP/2 from a router with `--pod-transport h2`.
//!
//! One TCP connection from a router carries all of its WebSockets to this
//! pod, each an extended CONNECT stream (`:method CONNECT`, `:protocol
//! websocket`, RFC 8441) with the same `x-wsring-*` headers as an HTTP/1.1
//! upgrade. A stream is accepted with 200 (plus `x-wsring-pod`) and then
//! carries WebSocket frames exactly like an upgraded TCP connection, so the
//! rest of the pod (registry, resets, pushes, drain) cannot tell the two apart.
//!
//! This saves the router one socket and one ephemeral port per client
//! connection. The pod side takes no flag: a connection that opens with the
//! HTTP/2 preface is served here, anything else is an HTTP/1.1 upgrade
//! ([`crate::listener`]); either way the WebSocket is then run by
//! [`crate::session::run_connection`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use wsring_core::protocol::HEADER_POD;

use crate::handshake::read_request;
use crate::session::{run_connection, Shared};
use crate::watch::{MessageClock, Watched};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Per-stream receive window: one slow client holds at most this much. The
/// stream count (`--h2-max-streams`) and the connection window
/// (`--h2-connection-window-bytes`) bound what one router connection can
/// hold in the pod (found in the security review: one connection opened
/// 20,000 WebSockets under the old limit of 2^20 streams and a 2 GiB window).
const STREAM_WINDOW: u32 = 256 * 1024;
/// HTTP/2 PING interval and timeout: a router that vanished without closing
/// TCP is noticed, and its connections end.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `stream` opens with the HTTP/2 preface (without consuming it);
/// `None` when it sent nothing within `timeout` (the handshake timeout) or
/// failed. An HTTP/1.1 request differs in its first byte, so this answers at once.
pub(crate) async fn starts_with_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut buf = [0u8; PREFACE.len()];
    let check = async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 || buf[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n == PREFACE.len() {
                return Some(true);
            }
            // A preface split across packets: wait for the rest.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(timeout, check).await.ok().flatten()
}

/// Serve one router's HTTP/2 connection until it closes, or until the pod
/// drains (then GOAWAY: open streams finish, their connections are closed
/// with 1001 by the drain like any other).
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let draining = shared.shutdown.draining().clone();
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(shared.h2_max_streams)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(shared.h2_connection_window)
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(accept_stream(request, peer, shared)) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = draining.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "router HTTP/2 connection ended");
    }
}

/// Answer one extended CONNECT: 200 and a task that runs the WebSocket once
/// the stream is ours, or a 400 saying what is wrong.
fn accept_stream(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Response<Full<Bytes>> {
    let is_websocket = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        shared.metrics.failed_handshakes.inc();
        return text(
            StatusCode::BAD_REQUEST,
            "expected an extended CONNECT with :protocol websocket (RFC 8441)",
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let head = Request::from_parts(parts, ());
    let upgrade = match read_request(&head, &shared.admission, shared.upstream.is_some()) {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            shared.metrics.failed_handshakes.inc();
            return text(refusal.status(), &refusal.to_string());
        }
    };
    drop(head);
    let protocol = upgrade.framing.answer();
    let permit = match shared.limits.try_acquire(peer.ip()) {
        Ok(permit) => permit,
        Err(hit) => {
            shared.refused_over_limit(hit, peer);
            return text(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        }
    };
    let task_shared = shared.clone();
    shared.drain.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%peer, %error, "HTTP/2 stream ended before it was upgraded");
                return;
            }
        };
        let clock = Arc::new(MessageClock::default());
        let io = Watched::new(
            TokioIo::new(upgraded),
            clock.clone(),
            task_shared.message_timeout,
        );
        let mut ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(task_shared.ws_config)).await;
        run_connection(&mut ws, upgrade, peer, &task_shared, Some(clock)).await;
        // End the stream (END_STREAM); the router ends its client connection.
        let _ = ws.get_mut().shutdown().await;
        drop(permit);
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(HEADER_POD, shared.pod_header.clone());
    if let Some(protocol) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    *response.status_mut() = status;
    response
}
