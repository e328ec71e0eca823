//! `--pod-transport h2`: every WebSocket to a pod as one stream of a shared
//! HTTP/2 connection (extended CONNECT, RFC 8441) instead of a TCP
//! connection of its own.
//!
//! With the default HTTP/1.1 transport a router holds two sockets per client
//! (client, pod) and one ephemeral port per pod connection: about 28,000
//! ports to one pod address with Linux defaults, and two file descriptors per
//! client against the open-files limit. Over HTTP/2 it holds one socket per
//! client plus one per pod.
//!
//! The forwarded request carries the same headers as an HTTP/1.1 upgrade
//! (`x-wsring-*` included, [`super::request`]) on a `CONNECT` with
//! `:protocol websocket`; the pod answers 200 and the stream then carries
//! WebSocket frames. The router itself answers the client's HTTP/1.1 upgrade
//! with 101 (computing `Sec-WebSocket-Accept`, [`super::PodLink::open`]),
//! adding the pod's headers as with HTTP/1.1.
//!
//! The stream is tunnelled by the same [`crate::tunnel`] as a TCP leg. Why
//! HTTP/1.1 stays the default: HTTP/2 framing costs CPU and per-stream state,
//! and one pod connection is shared by all clients of the pod (flow-control
//! windows are sized so that thousands of stalled clients fit before they
//! could hold up the others).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use wsring_core::Member;

use super::{refusal, unreachable, within, Accepted};
use crate::Error;

/// Per-stream receive window: what one slow client can make the router hold.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Connection receive window (the HTTP/2 maximum): about 8,000 streams of
/// stalled clients, each holding its full stream window, fit before the
/// connection's other streams are held up.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// How long a new pod connection may take to announce extended CONNECT.
const SETTINGS_WAIT: Duration = Duration::from_secs(2);
/// HTTP/2 PING interval and timeout: a pod that vanished without closing
/// TCP is noticed, and its tunnels end.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 6455 §4.2.2: appended to `Sec-WebSocket-Key` before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The connection to one pod address: `None` until opened, and again after it
/// failed. Its own lock, so a slow pod never holds up upgrades to the others.
type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<Empty<Bytes>>>>>;

/// One HTTP/2 connection per pod address, opened on first use and replaced
/// once it fails or the pod sends GOAWAY (draining).
#[derive(Debug)]
pub struct H2Pods {
    slots: Mutex<HashMap<String, Slot>>,
    /// `wsring_router_pod_connections`.
    open: Gauge,
}

impl H2Pods {
    /// No connections yet; `open` counts those that are.
    pub fn new(open: Gauge) -> Self {
        H2Pods {
            slots: Mutex::default(),
            open,
        }
    }

    fn slot(&self, member: &Member) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(member.addr.clone()).or_default().clone()
    }

    /// The live connection to `member`, opening one if there is none.
    async fn sender(&self, member: &Member) -> Result<SendRequest<Empty<Bytes>>, Error> {
        let slot = self.slot(member);
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let sender = connect(member, &self.open).await?;
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Drop the connection to `member` after a failure, so the next upgrade
    /// opens a fresh one (the pod restarted, or sent GOAWAY).
    async fn forget(&self, member: &Member) {
        *self.slot(member).lock().await = None;
    }

    /// Drop the slots of addresses that are not in `members` and whose
    /// connection is already closed (pods that left the ring and shut down),
    /// so addresses of pods long gone do not pile up. A connection that is
    /// still open is kept: its streams are the departing pod's clients, which
    /// still get their 4001 through it.
    pub fn prune(&self, members: &[Member]) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|addr, slot| {
            members.iter().any(|m| &m.addr == addr)
                || slot
                    .try_lock()
                    .map_or(true, |s| s.as_ref().is_some_and(|s| !s.is_closed()))
        });
    }

    /// Pod addresses with a slot.
    pub fn addresses(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Open one WebSocket stream to `member` for the client request
    /// (`request` as [`super::pod_request`] built it), within `timeout`.
    pub async fn exchange(
        &self,
        member: &Member,
        request: Request<Empty<Bytes>>,
        timeout: Duration,
    ) -> Result<Accepted, Error> {
        within(member, timeout, self.exchange_inner(member, request)).await
    }

    async fn exchange_inner(
        &self,
        member: &Member,
        request: Request<Empty<Bytes>>,
    ) -> Result<Accepted, Error> {
        let mut sender = self.sender(member).await?;
        let request = connect_request(member, request)?;
        let sent = match sender.ready().await {
            Ok(()) => sender.send_request(request).await,
            Err(error) => Err(error),
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.forget(member).await;
                return Err(unreachable(member, error.to_string()));
            }
        };
        if response.status() != StatusCode::OK {
            return Err(refusal(member, response, &mut None::<NeverDone>).await);
        }
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(|e| unreachable(member, format!("upgrade: {e}")))?;
        let (parts, _) = response.into_parts();
        Ok(Accepted {
            response: http::Response::from_parts(parts, ()),
            upgraded,
        })
    }
}

/// A connection future that never completes, for `refusal`
/// (the HTTP/2 connection is driven by its own task).
type NeverDone = std::future::Pending<()>;

/// Dial `member`, run the HTTP/2 handshake (its connection task is spawned)
/// and wait until the pod has announced extended CONNECT.
async fn connect(member: &Member, open: &Gauge) -> Result<SendRequest<Empty<Bytes>>, Error> {
    let stream = TcpStream::connect(member.addr.as_str())
        .await
        .map_err(|e| unreachable(member, format!("connect: {e}")))?;
    crate::tunnel::tune(&stream);
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let (sender, connection) = builder
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(member, format!("HTTP/2 handshake: {e}")))?;
    // Drive the connection until the pod's SETTINGS allowed extended
    // CONNECT (usually one round trip), then hand it to a task of its own.
    let mut connection = Box::pin(connection);
    let deadline = tokio::time::sleep(SETTINGS_WAIT);
    tokio::pin!(deadline);
    while !connection.is_extended_connect_protocol_enabled() {
        tokio::select! {
            ended = connection.as_mut() => {
                let why = ended.err().map_or("closed".to_string(), |e| e.to_string());
                return Err(unreachable(member, format!("HTTP/2 connection: {why}")));
            }
            () = &mut deadline => {
                return Err(unreachable(
                    member,
                    "the pod does not accept WebSockets over HTTP/2 (RFC 8441); \
                     is it an older ws-pod? use --pod-transport http1"
                        .into(),
                ));
            }
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    let pod = member.name.clone();
    let open = open.clone();
    open.inc();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%pod, %error, "pod HTTP/2 connection ended");
        }
        open.dec();
    });
    Ok(sender)
}

/// The HTTP/1.1 upgrade request for the pod, turned into an extended CONNECT.
fn connect_request(
    member: &Member,
    request: Request<Empty<Bytes>>,
) -> Result<Request<Empty<Bytes>>, Error> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{}{path}", member.addr)
        .parse()
        .map_err(|e| Error::BadRequest(format!("cannot forward request: {e}")))?;
    parts.method = Method::CONNECT;
    parts.version = Version::HTTP_2;
    // Meaningless on an HTTP/2 stream (RFC 8441 §5); hyper drops the
    // connection-specific ones itself.
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::HOST,
    ] {
        parts.headers.remove(name);
    }
    parts.extensions.insert(Protocol::from_static("websocket"));
    Ok(Request::from_parts(parts, body))
}

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: Option<&HeaderValue>) -> Result<HeaderValue, Error> {
    let key = client_key.ok_or_else(|| Error::BadRequest("missing Sec-WebSocket-Key".into()))?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    HeaderValue::try_from(accept).map_err(|e| Error::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        // The example of RFC 6455 §1.3.
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            accept_key(Some(&key)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(accept_key(None).is_err());
    }

    fn member(name: &str, addr: &str) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
            admin: String::new(),
        }
    }

    #[tokio::test]
    async fn departed_pods_without_a_connection_are_pruned() {
        let pods = H2Pods::new(Gauge::default());
        let (a, b) = (member("a", "10.0.0.1:8081"), member("b", "10.0.0.2:8081"));
        // A pod nobody listens on: the connect fails and leaves an empty slot.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = member("dead", &closed.local_addr().unwrap().to_string());
        drop(closed);
        assert!(pods.sender(&dead).await.is_err());
        pods.slot(&a);
        pods.slot(&b);
        assert_eq!(pods.addresses(), 3);
        pods.prune(std::slice::from_ref(&a));
        assert_eq!(pods.addresses(), 1, "only the member still in the ring");
    }

    #[test]
    fn the_upgrade_becomes_an_extended_connect() {
        let member = member("pod-0", "10.0.0.7:8081");
        let request = Request::builder()
            .uri("/chat?key=a")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_KEY, "x")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header("x-wsring-conn", "r-1")
            .body(Empty::new())
            .unwrap();
        let connect = connect_request(&member, request).unwrap();
        assert_eq!(connect.method(), Method::CONNECT);
        assert_eq!(connect.version(), Version::HTTP_2);
        assert_eq!(connect.uri(), "http://10.0.0.7:8081/chat?key=a");
        assert_eq!(
            connect.extensions().get::<Protocol>().map(Protocol::as_str),
            Some("websocket")
        );
        let headers = connect.headers();
        assert!(!headers.contains_key(header::UPGRADE));
        assert!(!headers.contains_key(header::SEC_WEBSOCKET_KEY));
        assert_eq!(headers["x-wsring-conn"], "r-1");
        assert_eq!(headers[header::SEC_WEBSOCKET_VERSION], "13");
    }
}
