//! The upgrade request the router forwards to the owner pod, the same for
//! both transports (over HTTP/2 it becomes an extended CONNECT in
//! [`super::http2`]).
//!
//! The request goes out unchanged except for the proxy rules of
//! docs/interfaces.md: hop-by-hop headers are dropped (then `Connection:
//! upgrade` and `Upgrade: websocket` are set again, as an upgrade needs them
//! end to end), client-supplied `x-wsring-*` headers are dropped, and the
//! router's `x-wsring-conn`, `x-wsring-key` and `x-wsring-ring-version` are
//! added with `x-wsring-auth`, their signature with the cluster token
//! ([`wsring_core::router_auth`]).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use http_body_util::Empty;
use wsring_core::protocol::{encode_key, HEADER_PREFIX};
use wsring_core::router_auth::{unix_now, RouterAuth, SignedHeaders};

use crate::handshake::connection_tokens;
use crate::Error;

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
    /// Signs the three headers for the pod (`x-wsring-auth`).
    pub auth: &'a RouterAuth,
}

/// Copy `headers` without hop-by-hop headers (including those the `Connection`
/// header names) and without `x-wsring-*`, then set `Connection: upgrade` and
/// `Upgrade: websocket` (normalised: the only upgrade the router forwards), so
/// the upgrade survives the hop.
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
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
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
    let key = encode_key(fwd.key);
    let ring_version = fwd.ring_version.to_string();
    let signed = SignedHeaders {
        conn: fwd.conn_id,
        key: &key,
        ring_version: &ring_version,
    };
    for (name, text) in fwd.auth.signed_headers(signed, unix_now()) {
        out.insert(name, value(text)?);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_requests::{headers, ws_headers};

    #[test]
    fn forwarded_request_follows_the_proxy_rules() {
        let mut pairs = ws_headers();
        pairs.extend([
            ("sec-websocket-protocol", "chat"),
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
        let auth = RouterAuth::new("s3cret");
        let fwd = Forwarding {
            conn_id: "r1-7",
            key: "room 1/ü",
            ring_version: 42,
            auth: &auth,
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
        let signed = SignedHeaders {
            conn: "r1-7",
            key: "room%201%2F%C3%BC",
            ring_version: "42",
        };
        let signature = h["x-wsring-auth"].to_str().unwrap();
        assert_eq!(auth.verify(Some(signature), signed, unix_now()), Ok(()));
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
