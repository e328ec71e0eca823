//! The public listener: read one upgrade request, route it, hand it to the tunnel.
//!
//! Each accepted connection is served by hyper's HTTP/1 server for exactly
//! one request (refusals carry `Connection: close`; after a 101 it is no longer HTTP),
//! with a bounded header size and a handshake deadline. Refusals are JSON
//! (`{"error", "message"}`) and happen before anything reaches a pod: not an
//! upgrade (426) or an ambiguous one (400, [`crate::handshake`]), origin not
//! allowed (403, [`crate::origin`]), bad key (400). The upgrade goes to the
//! owner pod through [`crate::pod_link`]; once the pod accepted, the client's
//! raw TCP stream is taken back from hyper and spliced with the pod end
//! ([`crate::tunnel`]) in a task of their own ([`crate::tunnel_task`]); the
//! hyper connection task ends there, so an open tunnel keeps no HTTP state.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wsring_core::conn_limit::{LimitHit, Permit};
use wsring_core::protocol::{HEADER_POD, HEADER_PREFIX};

use crate::handshake;
use crate::pod_link::{pod_request, Forwarding, Opened};
use crate::state::{Route, Shared};
use crate::tunnel;
use crate::tunnel_task::TunnelTask;
use crate::Error;

/// Largest request head accepted (request line and headers); bigger ones get 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Accept connections until `stop` is cancelled.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match shared.limits.try_acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(hit) => {
                shared
                    .tasks
                    .spawn(refuse_over_limit(stream, peer, shared.clone(), hit));
                continue;
            }
        };
        let shared_for_task = shared.clone();
        shared
            .tasks
            .spawn(serve_connection(stream, peer, shared_for_task, permit));
    }
}

/// Answer a connection over a cap with 503 at once, without reading it.
async fn refuse_over_limit(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    hit: LimitHit,
) {
    let reason = match hit {
        LimitHit::Total => "connection_limit_total",
        LimitHit::PerClient => "connection_limit_per_client",
    };
    shared.metrics.upgrade_failed(reason);
    tracing::debug!(%peer, reason, "connection refused: over a connection cap");
    let body = Error::TooManyConnections(hit).to_public_json();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(shared.handshake_timeout, async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serve the one upgrade request of a client connection; `permit` is its
/// place under the connection caps, held by the tunnel if there is one.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Permit,
) {
    tunnel::tune(&stream);
    let timeout = shared.handshake_timeout;
    let metrics = shared.metrics.clone();
    let permit = Arc::new(std::sync::Mutex::new(Some(permit)));
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let permit = permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move { Ok::<_, std::convert::Infallible>(handle(shared, request, peer, permit).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    // The connection future ends once the 101 is written (the tunnel task
    // takes over) or the refusal is sent: all of it within the handshake timeout.
    match tokio::time::timeout(timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            if let Some(reason) = refused_before_handle(&error) {
                metrics.upgrade_failed(reason);
            }
            tracing::debug!(%peer, %error, "client connection failed");
        }
        Err(_) => {
            metrics.upgrade_failed("handshake_timeout");
            tracing::debug!(%peer, "handshake timed out");
        }
    }
}

/// The `upgrade_errors` reason of a request that hyper refused before
/// [`handle`] saw it (which counts every other refusal); `None` for a client
/// that simply went away.
fn refused_before_handle(error: &hyper::Error) -> Option<&'static str> {
    if error.is_timeout() {
        Some("handshake_timeout")
    } else if error.is_parse_too_large() {
        Some("head_too_large")
    } else if error.is_parse() {
        Some("malformed_request")
    } else {
        None
    }
}

/// Answer one request: a 101 from the pod, or a JSON refusal.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
    permit: Option<Permit>,
) -> Response<Full<Bytes>> {
    match proxy(&shared, request, permit).await {
        Ok(response) => {
            shared.metrics.upgraded();
            response
        }
        Err(error) => {
            shared.metrics.upgrade_failed(error.code());
            if matches!(
                error,
                Error::PodUnreachable { .. } | Error::PodTimeout { .. } | Error::PodRejected { .. }
            ) {
                // The client gets a generic answer; the details are for operators.
                tracing::warn!(%peer, code = error.code(), %error, "upgrade failed at the pod");
            } else {
                tracing::debug!(%peer, code = error.code(), %error, "upgrade refused");
            }
            refusal(&error)
        }
    }
}

/// The JSON refusal for `error` ([`Error::to_public_json`]).
pub fn refusal(error: &Error) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(error.to_public_json())));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // One request per connection: a refused client starts over on a new one.
    if error.status() == StatusCode::UPGRADE_REQUIRED {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("upgrade, close"),
        );
    } else {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn proxy(
    shared: &Arc<Shared>,
    mut request: Request<Incoming>,
    permit: Option<Permit>,
) -> Result<Response<Full<Bytes>>, Error> {
    handshake::check(request.method(), request.version(), request.headers())?;
    shared.origins.check(request.headers())?;
    let key = shared.keys.extract(request.uri(), request.headers())?;
    let Route {
        member,
        ring_version,
        registration,
    } = shared.route(&key)?;
    let conn_id = registration.id();
    let forwarded = pod_request(
        request.uri(),
        request.headers(),
        Forwarding {
            conn_id: &conn_id,
            key: &key,
            ring_version,
            auth: &shared.router_auth,
        },
    )?;
    let client_upgrade = hyper::upgrade::on(&mut request);
    let client_key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    drop(request);
    let Opened { response, pod } = shared
        .pod_link
        .open(&member, forwarded, client_key, shared.handshake_timeout)
        .await?;
    tracing::debug!(conn = %conn_id, pod = %member.name, h2 = pod.is_http2_stream(), "upgraded");
    shared
        .tasks
        .spawn(TunnelTask::new(client_upgrade, pod, registration, permit));
    Ok(client_response(response, &member.name))
}

/// The pod's 101 for the client: its headers minus internal ones, plus `x-wsring-pod`.
fn client_response(pod: Response<()>, pod_name: &str) -> Response<Full<Bytes>> {
    let (parts, ()) = pod.into_parts();
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    for (name, value) in &parts.headers {
        if !name.as_str().starts_with(HEADER_PREFIX) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::try_from(pod_name) {
        headers.insert(HEADER_POD, value);
    }
    response
}
