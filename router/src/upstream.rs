//! Forwarding an upgrade request to the owner pod and reading its answer.
//!
//! The request goes out unchanged except for the proxy rules of
//! docs/interfaces.md: hop-by-hop headers are dropped (then `Connection:
//! upgrade` and the client's `Upgrade` are set again, as an upgrade needs
//! them end to end), client-supplied `x-wsring-*` headers are dropped, and
//! the router's `x-wsring-conn`, `x-wsring-key` and `x-wsring-ring-version`
//! are added. The pod's 101 comes back with the pod's TCP stream, ready for
//! the tunnel.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wsring_core::protocol::{
    encode_key, HEADER_CONN, HEADER_KEY, HEADER_PREFIX, HEADER_RING_VERSION,
};
use wsring_core::Member;

use crate::Error;

/// How much of a refusing pod's body is quoted back to the client.
const MAX_REFUSAL_BODY: usize = 1024;

/// Headers that describe one hop only and are never forwarded as such (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Router-side facts added to the forwarded request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// `x-wsring-conn`.
    pub conn_id: &'a str,
    /// Decoded routing key (percent-encoded into `x-wsring-key`).
    pub key: &'a str,
    /// `x-wsring-ring-version`.
    pub ring_version: u64,
}

/// True for a WebSocket (or other) upgrade request: HTTP/1.1 GET with
/// `Connection: upgrade` and an `Upgrade` header, and no body.
pub fn is_upgrade_request(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    method == Method::GET
        && version == Version::HTTP_11
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// Tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Copy `headers` without hop-by-hop headers (including those the `Connection`
/// header names) and without `x-wsring-*`, then re-add `Connection: upgrade`
/// and the `Upgrade` value, so the upgrade survives the hop.
pub fn end_to_end_headers(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n.starts_with(HEADER_PREFIX) || named.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(upgrade) = headers.get(header::UPGRADE) {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, upgrade.clone());
    }
    out
}

/// The request sent to the pod for a client upgrade request.
pub fn pod_request(
    uri: &http::Uri,
    headers: &HeaderMap,
    fwd: Forwarding<'_>,
) -> Result<Request<Empty<Bytes>>, Error> {
    let mut out = end_to_end_headers(headers);
    out.remove(header::CONTENT_LENGTH);
    let value = |s: String| {
        HeaderValue::try_from(s)
            .map_err(|e| Error::BadRequest(format!("unusable header value: {e}")))
    };
    out.insert(HEADER_CONN, value(fwd.conn_id.to_string())?);
    out.insert(HEADER_KEY, value(encode_key(fwd.key))?);
    out.insert(HEADER_RING_VERSION, HeaderValue::from(fwd.ring_version));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(Method::GET)
        .version(Version::HTTP_11)
        .uri(path)
        .body(Empty::new())
        .map_err(|e| Error::BadRequest(format!("cannot forward request: {e}")))?;
    *request.headers_mut() = out;
    Ok(request)
}

/// The pod accepted the upgrade.
#[derive(Debug)]
pub struct Accepted {
    /// The pod's 101 (status and headers; no body).
    pub response: Response<()>,
    /// The pod connection after the 101, with any bytes the pod sent early.
    pub upgraded: Upgraded,
}

/// Dial `member`, send `request`, and return the pod's 101 with its stream.
/// Everything, connect included, must finish within `timeout`.
pub async fn exchange(
    member: &Member,
    request: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<Accepted, Error> {
    within(member, timeout, exchange_inner(member, request)).await
}

/// `work` (an exchange with `member`), or [`Error::PodTimeout`] after `timeout`.
pub(crate) async fn within(
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

async fn exchange_inner(
    member: &Member,
    request: Request<Empty<Bytes>>,
) -> Result<Accepted, Error> {
    let unreachable = |detail: String| Error::PodUnreachable {
        pod: member.name.clone(),
        addr: member.addr.clone(),
        detail,
    };
    let stream = TcpStream::connect(member.addr.as_str())
        .await
        .map_err(|e| unreachable(format!("connect: {e}")))?;
    crate::tunnel::tune(&stream);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut conn = Some(conn.with_upgrades());
    let mut response = driving(sender.send_request(request), &mut conn)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(member, response, &mut conn).await);
    }
    let on_upgrade = hyper::upgrade::on(&mut response);
    // The connection future hands the stream to `on_upgrade` and finishes
    // (it may already have done so while the response was delivered).
    if let Some(conn) = conn {
        conn.await.map_err(|e| unreachable(e.to_string()))?;
    }
    let upgraded = on_upgrade
        .await
        .map_err(|e| unreachable(format!("upgrade: {e}")))?;
    let (parts, _) = response.into_parts();
    Ok(Accepted {
        response: Response::from_parts(parts, ()),
        upgraded,
    })
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
pub(crate) async fn refusal<C>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ws_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "chat.example.com"),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ]
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        let h = headers(&ws_headers());
        assert!(is_upgrade_request(&Method::GET, Version::HTTP_11, &h));
        assert!(!is_upgrade_request(&Method::POST, Version::HTTP_11, &h));
        assert!(!is_upgrade_request(&Method::GET, Version::HTTP_10, &h));
        assert!(!is_upgrade_request(
            &Method::GET,
            Version::HTTP_11,
            &headers(&[("connection", "upgrade")])
        ));
        assert!(!is_upgrade_request(
            &Method::GET,
            Version::HTTP_11,
            &headers(&[("upgrade", "websocket")])
        ));
        let mut with_body = ws_headers();
        with_body.push(("content-length", "5"));
        assert!(!is_upgrade_request(
            &Method::GET,
            Version::HTTP_11,
            &headers(&with_body)
        ));
    }

    #[test]
    fn forwarded_request_follows_the_proxy_rules() {
        let mut pairs = ws_headers();
        pairs.extend([
            ("connection", "x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9v"),
            ("x-wsring-conn", "forged"),
            ("X-Wsring-Pod", "forged"),
            ("cookie", "a=1"),
            ("content-length", "0"),
        ]);
        let fwd = Forwarding {
            conn_id: "r1-7",
            key: "room 1/ü",
            ring_version: 42,
        };
        let request = pod_request(&"/ws?key=x".parse().unwrap(), &headers(&pairs), fwd).unwrap();
        let h = request.headers();
        assert_eq!(request.uri(), "/ws?key=x");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["host"], "chat.example.com");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["cookie"], "a=1");
        assert_eq!(h["x-wsring-conn"], "r1-7");
        assert_eq!(h["x-wsring-key"], "room%201%2F%C3%BC");
        assert_eq!(h["x-wsring-ring-version"], "42");
        for gone in [
            "x-secret",
            "keep-alive",
            "te",
            "proxy-authorization",
            "x-wsring-pod",
            "content-length",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h.get_all("x-wsring-conn").iter().count(), 1);
        assert_eq!(h.get_all("connection").iter().count(), 1);
    }
}
