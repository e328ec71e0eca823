//! What ws-pod takes from the upgrade request (docs/interfaces.md, "Router → pod
//! upgrade request"), and the `x-wsring-pod` header it adds to the 101 answer.
//!
//! Behind a router every request carries `x-wsring-conn`, `x-wsring-key`
//! (percent-encoded) and `x-wsring-ring-version`, signed in `x-wsring-auth`
//! with the cluster token ([`wsring_core::router_auth`]): without a valid
//! signature none of them is believed and the request is refused (403), so a
//! caller who reaches the pod directly can neither claim a router's connection
//! id nor register under someone's key to receive their pushes. The key
//! follows the shared rules of [`wsring_core::key`], exactly as the router
//! checked it. A direct connection without any `x-wsring-*` header is refused
//! too, unless `--allow-direct` (local debugging, tests): it then gets a local
//! connection id and the `key` query parameter, or the empty key.
//!
//! With history on, a client that offers `Sec-WebSocket-Protocol: wsring.v1`
//! (and perhaps `wsring.since.<epoch>.<offset>`, [`wsring_core::resume`]) gets
//! `wsring.v1` in the 101; a malformed resume token is refused with 400. With
//! history off the offer is ignored and the client gets plain frames.

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::{HeaderMap, StatusCode};
use wsring_core::key::{decode_key, query_param};
use wsring_core::protocol::{HEADER_CONN, HEADER_KEY, HEADER_RING_VERSION};
use wsring_core::resume::{parse_offer, Position, SUBPROTOCOL};
use wsring_core::router_auth::{unix_now, RouterAuth, SignedHeaders, HEADER_AUTH};

/// Query parameter read for the key of a direct connection (the router's default key name).
const DIRECT_KEY_PARAM: &str = "key";

/// What an upgrade request must satisfy, fixed at start-up.
#[derive(Clone, Debug)]
pub struct Admission {
    /// Checks the router's signature (the cluster token).
    pub auth: RouterAuth,
    /// Longest routing key, decoded (at least the router's `--max-key-bytes`).
    pub max_key_bytes: usize,
    /// Accept connections that carry no router headers at all.
    pub allow_direct: bool,
    /// History is on: answer an offer of `wsring.v1`.
    pub speaks_v1: bool,
}

/// Which frames a connection gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly what the app and the push API send.
    Plain,
    /// `wsring.v1`: positioned pushes, resumed after `since` if given.
    V1 {
        /// The client's last position, from its `wsring.since.` token.
        since: Option<Position>,
    },
}

impl Framing {
    /// The `Sec-WebSocket-Protocol` of the 101 answer, if any.
    pub fn answer(&self) -> Option<HeaderValue> {
        match self {
            Framing::Plain => None,
            Framing::V1 { .. } => Some(HeaderValue::from_static(SUBPROTOCOL)),
        }
    }
}

/// The parts of an upgrade request the connection task needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    /// `x-wsring-conn`; `None` for a direct connection (a local id is assigned).
    pub conn_id: Option<String>,
    /// Decoded routing key.
    pub key: String,
    /// `x-wsring-ring-version` (for logs); `None` for a direct connection.
    pub ring_version: Option<u64>,
    /// Path and query of the request, passed on to an upstream app.
    pub path_and_query: String,
    /// The request headers, kept only when an upstream app needs them.
    pub headers: Option<HeaderMap>,
    /// Plain or `wsring.v1` frames.
    pub framing: Framing,
}

/// Why an upgrade request was refused: 400 for a malformed request, 403 for
/// one not signed by a router.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// The status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer tungstenite sends instead of the 101.
    pub fn into_response(self) -> ErrorResponse {
        let mut response = ErrorResponse::new(Some(self.message));
        *response.status_mut() = self.status;
        response
    }
}

/// Read an upgrade request; a malformed or unsigned `x-wsring-*` header refuses it.
pub fn read_request(
    request: &Request,
    admission: &Admission,
    keep_headers: bool,
) -> Result<Upgrade, Refusal> {
    let headers = request.headers();
    let routed = [HEADER_CONN, HEADER_KEY, HEADER_RING_VERSION, HEADER_AUTH]
        .iter()
        .any(|h| headers.contains_key(*h));
    let (conn_id, key, ring_version) = if routed {
        let (conn, key, version) = router_headers(headers, admission)?;
        (Some(conn), key, Some(version))
    } else if admission.allow_direct {
        let raw = query_param(request.uri().query().unwrap_or(""), DIRECT_KEY_PARAM)
            .map_err(|e| Refusal::bad_request(e.to_string()))?;
        let key = match raw {
            Some(raw) => decode_key(raw, admission.max_key_bytes)
                .map_err(|e| Refusal::bad_request(e.to_string()))?,
            None => String::new(),
        };
        (None, key, None)
    } else {
        return Err(Refusal::forbidden(
            "connect through a router: this pod accepts only upgrades signed by its cluster's routers",
        ));
    };
    let framing = framing(headers, admission)?;
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    Ok(Upgrade {
        conn_id,
        key,
        ring_version,
        path_and_query,
        headers: keep_headers.then(|| headers.clone()),
        framing,
    })
}

/// `wsring.v1` if history is on and the client offered it.
fn framing(headers: &HeaderMap, admission: &Admission) -> Result<Framing, Refusal> {
    if !admission.speaks_v1 {
        return Ok(Framing::Plain);
    }
    let values = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| Refusal::bad_request("Sec-WebSocket-Protocol is not ASCII"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let offer = parse_offer(values).map_err(|e| Refusal::bad_request(e.to_string()))?;
    Ok(if offer.v1 {
        Framing::V1 { since: offer.since }
    } else {
        Framing::Plain
    })
}

/// Connection id, decoded key and ring version of a routed request, once its
/// signature is checked.
fn router_headers(
    headers: &HeaderMap,
    admission: &Admission,
) -> Result<(String, String, u64), Refusal> {
    let text = |name: &str| {
        let mut values = headers.get_all(name).iter();
        let value = values
            .next()
            .ok_or_else(|| Refusal::bad_request(format!("{name} is missing")))?;
        if values.next().is_some() {
            return Err(Refusal::bad_request(format!(
                "{name} is given more than once"
            )));
        }
        value
            .to_str()
            .map_err(|_| Refusal::bad_request(format!("{name} is not ASCII")))
    };
    let conn = text(HEADER_CONN)?;
    let encoded_key = text(HEADER_KEY)?;
    let version = text(HEADER_RING_VERSION)?;
    let signature = headers.get(HEADER_AUTH).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        conn,
        key: encoded_key,
        ring_version: version,
    };
    admission
        .auth
        .verify(signature, signed, unix_now())
        .map_err(|e| Refusal::forbidden(e.to_string()))?;
    if conn.trim().is_empty() {
        return Err(Refusal::bad_request(format!("{HEADER_CONN} is empty")));
    }
    let version = version
        .parse()
        .map_err(|_| Refusal::bad_request(format!("{HEADER_RING_VERSION} is not a number")))?;
    let key = decode_key(encoded_key, admission.max_key_bytes)
        .map_err(|e| Refusal::bad_request(format!("{HEADER_KEY}: {e}")))?;
    Ok((conn.to_string(), key, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret";

    fn admission(allow_direct: bool) -> Admission {
        Admission {
            auth: RouterAuth::new(TOKEN),
            max_key_bytes: 16,
            allow_direct,
            speaks_v1: true,
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    /// A router's headers, signed with `token`; owned, for tests to change.
    fn routed(conn: &str, key: &str, version: &str, token: &str) -> Vec<(String, String)> {
        let signed = SignedHeaders {
            conn,
            key,
            ring_version: version,
        };
        RouterAuth::new(token)
            .signed_headers(signed, unix_now())
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect()
    }

    fn with(uri: &str, headers: &[(String, String)]) -> Request {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        request(uri, &pairs)
    }

    #[test]
    fn signed_router_headers_are_read_and_the_key_decoded() {
        let req = with(
            "/chat?room=1",
            &routed("r1-17", "user%201%2F%C3%BC", "8", TOKEN),
        );
        let upgrade = read_request(&req, &admission(false), false).unwrap();
        assert_eq!(upgrade.conn_id.as_deref(), Some("r1-17"));
        assert_eq!(upgrade.key, "user 1/ü");
        assert_eq!(upgrade.ring_version, Some(8));
        assert_eq!(upgrade.path_and_query, "/chat?room=1");
        assert!(upgrade.headers.is_none());
    }

    /// Found in the security review: a caller who reached the pod directly
    /// claimed a live router connection id and the key `alice` (and then
    /// received alice's pushes). Without the cluster token's signature the
    /// router headers are refused, and so is a direct connection.
    #[test]
    fn unsigned_or_wrongly_signed_router_headers_and_direct_connections_are_forbidden() {
        let mut unsigned = routed("r1-17", "alice", "8", TOKEN);
        unsigned.pop();
        let forged = routed("r1-17", "alice", "8", "guessed-token");
        let mut tampered = routed("r1-17", "bob", "8", TOKEN);
        tampered[1].1 = "alice".into();
        for headers in [unsigned, forged, tampered] {
            let refusal = read_request(&with("/", &headers), &admission(false), false).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::FORBIDDEN, "{refusal}");
            assert!(refusal.to_string().contains(HEADER_AUTH), "{refusal}");
        }
        let direct =
            read_request(&request("/?key=alice", &[]), &admission(false), false).unwrap_err();
        assert_eq!(direct.status(), StatusCode::FORBIDDEN);
    }

    /// Found in the security review: the pod accepted a 20 KB key with `%0A`
    /// that the router refuses (and logged it verbatim).
    #[test]
    fn the_key_follows_the_routers_rules() {
        for (key, why) in [
            ("a%0Ab", "control"),
            (&*"x".repeat(17), "limit"),
            ("%zz", "escape"),
            ("a%E2%80%8Bb", "invisible"),
        ] {
            let req = with("/", &routed("r1-1", key, "1", TOKEN));
            let refusal = read_request(&req, &admission(false), false).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST, "{key}");
            assert!(refusal.to_string().contains(why), "{key}: {refusal}");
        }
    }

    #[test]
    fn allowed_direct_connections_use_the_key_query_parameter_or_nothing() {
        let upgrade =
            read_request(&request("/?x=1&key=a%20b", &[]), &admission(true), true).unwrap();
        assert_eq!((upgrade.conn_id, upgrade.key.as_str()), (None, "a b"));
        assert!(upgrade.headers.is_some());
        let upgrade = read_request(&request("/?keys=1", &[]), &admission(true), false).unwrap();
        assert_eq!(upgrade.key, "");
        let refusal =
            read_request(&request("/?key=a&key=b", &[]), &admission(true), false).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn wsring_v1_is_answered_only_when_offered_and_history_is_on() {
        let req = |protocols: &[&str]| {
            let headers: Vec<(&str, &str)> = protocols
                .iter()
                .map(|p| ("sec-websocket-protocol", *p))
                .collect();
            request("/?key=k", &headers)
        };
        let on = admission(true);
        let off = Admission {
            speaks_v1: false,
            ..admission(true)
        };
        let plain = read_request(&req(&["chat"]), &on, false).unwrap();
        assert_eq!(
            (plain.framing.clone(), plain.framing.answer()),
            (Framing::Plain, None)
        );
        let fresh = read_request(&req(&["wsring.v1"]), &on, false).unwrap();
        assert_eq!(fresh.framing, Framing::V1 { since: None });
        assert_eq!(fresh.framing.answer().unwrap(), "wsring.v1");
        let resumed =
            read_request(&req(&["wsring.v1", "wsring.since.ab12.7"]), &on, false).unwrap();
        assert_eq!(
            resumed.framing,
            Framing::V1 {
                since: Some(Position {
                    epoch: "ab12".into(),
                    offset: 7
                })
            }
        );
        let refusal =
            read_request(&req(&["wsring.v1, wsring.since.ab12"]), &on, false).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert!(refusal.to_string().contains("wsring.since"), "{refusal}");
        // History off: the offer (even a malformed one) is not ours to answer.
        let ignored = read_request(&req(&["wsring.v1, wsring.since.x"]), &off, false).unwrap();
        assert_eq!(ignored.framing, Framing::Plain);
    }

    #[test]
    fn malformed_router_headers_are_refused() {
        let mut no_version = routed("r1-1", "k", "x", TOKEN);
        no_version.remove(2);
        let refusal = read_request(&with("/", &no_version), &admission(false), false).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert!(
            refusal.to_string().contains(HEADER_RING_VERSION),
            "{refusal}"
        );
        let not_a_number = routed("r1-1", "k", "x", TOKEN);
        let refusal =
            read_request(&with("/", &not_a_number), &admission(false), false).unwrap_err();
        assert!(refusal.to_string().contains("not a number"), "{refusal}");
        assert_eq!(refusal.into_response().status(), StatusCode::BAD_REQUEST);
    }
}
