//! The app behind ws-pod: the built-in echo app, or a WebSocket connection to the
//! app container (`--upstream`).
//!
//! Either way the app is a sink and a stream of messages for
//! [`crate::connection::relay`]. The echo app is a one-slot loopback: what the
//! client sends comes straight back, in order, and the client cannot get ahead of
//! its own echoes by more than one message.

use std::convert::Infallible;
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsring_core::protocol::{
    encode_key, HEADER_CONN, HEADER_KEY, HEADER_PREFIX, HEADER_RING_VERSION,
};
use wsring_core::router_auth::HEADER_AUTH;

/// How long opening the upstream connection (TCP + upgrade) may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sending half of the echo app.
pub type EchoSink = mpsc::Sender<Message>;
/// Receiving half of the echo app.
pub type EchoStream =
    futures_util::stream::Map<mpsc::Receiver<Message>, fn(Message) -> Result<Message, Infallible>>;
/// A connection to the upstream app container.
pub type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The built-in echo app: every text and binary message comes back unchanged.
pub fn echo() -> (EchoSink, EchoStream) {
    // Capacity 0 plus the one sender's own slot: exactly one message in flight.
    let (tx, rx) = mpsc::channel(0);
    (tx, rx.map(Ok as fn(Message) -> Result<Message, Infallible>))
}

/// Why the upstream app could not be reached; the client is closed with 1011.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within [`UPSTREAM_CONNECT_TIMEOUT`].
    #[error("upstream app did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused, upgrade refused, bad URL, ...
    #[error("upstream app unreachable: {0}")]
    Connect(#[from] WsError),
}

/// Open the upstream WebSocket for one client connection.
///
/// The app sees the client's path and query, its end-to-end headers (cookies,
/// authorization, origin, ...) and `x-wsring-key` / `x-wsring-conn` (plus the
/// router's `x-wsring-ring-version` and `x-wsring-auth`), so it knows which key
/// the connection belongs to without parsing the request itself.
pub async fn connect_upstream(
    base: &str,
    path_and_query: &str,
    client_headers: &HeaderMap,
    key: &str,
    conn_id: &str,
    config: WebSocketConfig,
) -> Result<Upstream, UpstreamError> {
    let mut request = format!("{base}{path_and_query}").into_client_request()?;
    let headers = request.headers_mut();
    for (name, value) in client_headers {
        if is_end_to_end(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        HEADER_KEY,
        HeaderValue::from_str(&encode_key(key)).expect("percent-encoded keys are visible ASCII"),
    );
    if let Ok(value) = HeaderValue::from_str(conn_id) {
        headers.insert(HEADER_CONN, value);
    }
    // The router's ring version and signature, as received: an app that knows
    // the cluster token can check the headers came through a router.
    for name in [HEADER_RING_VERSION, HEADER_AUTH] {
        if let Some(value) = client_headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await {
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(UpstreamError::Timeout(UPSTREAM_CONNECT_TIMEOUT)),
    }
}

/// Headers of the client's upgrade request that belong to the app rather than to
/// this hop: not hop-by-hop, not the WebSocket handshake of this hop, not ours.
fn is_end_to_end(name: &HeaderName) -> bool {
    const HOP: &[&str] = &[
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    ];
    let name = name.as_str();
    !HOP.contains(&name) && !name.starts_with(HEADER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt;

    #[tokio::test]
    async fn echo_returns_what_it_gets_in_order() {
        let (mut tx, mut rx) = echo();
        // `send` also waits for the echo to be taken (flush), so the test takes it concurrently.
        for message in [Message::text("a"), Message::binary(vec![1u8])] {
            let (sent, echoed) = tokio::join!(tx.send(message.clone()), rx.next());
            sent.unwrap();
            assert_eq!(echoed.unwrap().unwrap(), message);
        }
    }

    #[test]
    fn only_end_to_end_headers_are_passed_on() {
        for name in [
            "cookie",
            "authorization",
            "origin",
            "user-agent",
            "x-request-id",
        ] {
            assert!(is_end_to_end(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "host",
            "connection",
            "upgrade",
            "sec-websocket-key",
            "x-wsring-key",
        ] {
            assert!(!is_end_to_end(&HeaderName::from_static(name)), "{name}");
        }
    }
}
