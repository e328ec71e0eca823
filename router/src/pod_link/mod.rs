//! The router's link to the pods: send a client's upgrade to the owner pod and
//! get back the pod's acceptance and the pod end of the tunnel, over either
//! `--pod-transport`.
//!
//! [`PodLink`] is the one type the public listener calls; which transport is
//! in use is decided here, once:
//!
//! - [`request`]: the forwarded upgrade request (proxy rules, signed
//!   `x-wsring-*` headers), the same for both transports.
//! - [`http1`]: a TCP connection per client connection (the default).
//! - [`http2`]: a stream of one shared HTTP/2 connection per pod (RFC 8441).
//!
//! Either way the pod's answer comes back as the HTTP/1.1 101 the client
//! gets, and the pod end is tunnelled by the same [`crate::tunnel`].

pub mod http1;
pub mod http2;
pub mod request;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use wsring_core::protocol::PodTransport;
use wsring_core::Member;

use crate::tunnel::{raw_stream, splice, Splice};
use crate::Error;

pub use request::{pod_request, Forwarding};

/// How much of a refusing pod's body is quoted back to the client.
const MAX_REFUSAL_BODY: usize = 1024;

/// How this router reaches pods (`--pod-transport`).
#[derive(Debug)]
pub enum PodLink {
    /// A TCP connection per client connection ([`http1`]).
    Http1,
    /// Streams of one HTTP/2 connection per pod ([`http2`]).
    Http2(http2::H2Pods),
}

/// A pod accepted a client's upgrade.
#[derive(Debug)]
pub struct Opened {
    /// The answer for the client: status and headers of an HTTP/1.1 101
    /// (internal `x-wsring-*` headers still to be removed).
    pub response: Response<()>,
    /// The pod end of the tunnel.
    pub pod: PodEnd,
}

/// The pod end of a tunnel.
#[derive(Debug)]
pub enum PodEnd {
    /// An upgraded HTTP/1.1 connection: its TCP stream is spliced directly.
    Tcp(Upgraded),
    /// A stream of the pod's HTTP/2 connection.
    Http2Stream(Upgraded),
}

impl PodLink {
    /// The link for `transport`; `open_connections` counts the pod HTTP/2
    /// connections (`wsring_router_pod_connections`).
    pub fn new(transport: PodTransport, open_connections: Gauge) -> Self {
        match transport {
            PodTransport::Http1 => PodLink::Http1,
            PodTransport::H2 => PodLink::Http2(http2::H2Pods::new(open_connections)),
        }
    }

    /// Send the upgrade `request` (from [`pod_request`]) to `member` and wait
    /// for its acceptance; the exchange, connect included, must finish within
    /// `timeout`. Over HTTP/2 the pod answers 200 and the 101 is the router's
    /// own: `Upgrade`, `Connection` and `Sec-WebSocket-Accept` (answering
    /// `client_key`, the client's `Sec-WebSocket-Key`) are added to the pod's
    /// headers.
    pub async fn open(
        &self,
        member: &Member,
        request: Request<Empty<Bytes>>,
        client_key: Option<HeaderValue>,
        timeout: Duration,
    ) -> Result<Opened, Error> {
        match self {
            PodLink::Http1 => {
                let Accepted { response, upgraded } =
                    http1::exchange(member, request, timeout).await?;
                Ok(Opened {
                    response,
                    pod: PodEnd::Tcp(upgraded),
                })
            }
            PodLink::Http2(pods) => {
                let accept = http2::accept_key(client_key.as_ref())?;
                let Accepted {
                    mut response,
                    upgraded,
                } = pods.exchange(member, request, timeout).await?;
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = response.headers_mut();
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
                Ok(Opened {
                    response,
                    pod: PodEnd::Http2Stream(upgraded),
                })
            }
        }
    }

    /// Forget what is kept for pods that left the ring (see
    /// [`http2::H2Pods::prune`]); HTTP/1.1 keeps nothing.
    pub fn prune(&self, members: &[Member]) {
        if let PodLink::Http2(pods) = self {
            pods.prune(members);
        }
    }
}

/// A running tunnel to a pod: over its own TCP connection (HTTP/1.1) or a
/// stream of the pod's HTTP/2 connection.
pub type PodSplice = Either<Splice<TcpStream>, Splice<TokioIo<Upgraded>>>;

impl PodEnd {
    /// Whether this is a stream of a pod's HTTP/2 connection.
    pub fn is_http2_stream(&self) -> bool {
        matches!(self, PodEnd::Http2Stream(_))
    }

    /// The tunnel between `client` (with bytes hyper already read from it)
    /// and this pod end, to be awaited until both directions are finished
    /// ([`splice`]); an error if the pod's HTTP/1.1 connection is not a plain
    /// TCP stream.
    pub fn splice(self, client: TcpStream, client_early: Bytes) -> std::io::Result<PodSplice> {
        Ok(match self {
            PodEnd::Tcp(pod) => {
                let (pod, pod_early) = raw_stream(pod)?;
                Either::Left(splice(client, client_early, pod, pod_early))
            }
            PodEnd::Http2Stream(pod) => Either::Right(splice(
                client,
                client_early,
                TokioIo::new(pod),
                Bytes::new(),
            )),
        })
    }
}

/// The pod accepted the upgrade.
#[derive(Debug)]
pub struct Accepted {
    /// The pod's 101 (status and headers; no body).
    pub response: Response<()>,
    /// The pod connection after the 101, with any bytes the pod sent early.
    pub upgraded: Upgraded,
}

/// `work` (an exchange with `member`), or [`Error::PodTimeout`] after `timeout`.
async fn within(
    member: &Member,
    timeout: Duration,
    work: impl Future<Output = Result<Accepted, Error>>,
) -> Result<Accepted, Error> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::PodTimeout {
            pod: member.name.clone(),
            timeout_ms: timeout.as_millis() as u64,
        })?
}

/// [`Error::PodUnreachable`] for `member`.
fn unreachable(member: &Member, detail: String) -> Error {
    Error::PodUnreachable {
        pod: member.name.clone(),
        addr: member.addr.clone(),
        detail,
    }
}

/// Await `work` while driving the client connection `conn` (which does the
/// actual I/O). `conn` becomes `None` once it finishes: after an upgrade or
/// when the pod hangs up. Its errors surface through `work` itself.
async fn driving<F, C>(work: F, conn: &mut Option<C>) -> F::Output
where
    F: Future,
    C: Future + Unpin,
{
    let mut work = std::pin::pin!(work);
    loop {
        match conn {
            Some(running) => tokio::select! {
                biased;
                output = &mut work => return output,
                _ = running => *conn = None,
            },
            None => return work.await,
        }
    }
}

/// Turn a non-101 answer into [`Error::PodRejected`], quoting the start of its body.
async fn refusal<C>(
    member: &Member,
    response: Response<hyper::body::Incoming>,
    conn: &mut Option<C>,
) -> Error
where
    C: Future + Unpin,
{
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_REFUSAL_BODY).collect();
    let text = driving(body, conn)
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_string())
        .unwrap_or_default();
    let status = if status.is_informational() || status.is_success() {
        // Not an upgrade and not an error: the pod is not a WebSocket server.
        StatusCode::BAD_GATEWAY
    } else {
        status
    };
    Error::PodRejected {
        pod: member.name.clone(),
        status,
        body: if text.is_empty() {
            status.canonical_reason().unwrap_or("no reason").to_string()
        } else {
            text
        },
    }
}
