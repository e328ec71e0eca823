//! What ws-pod takes from the upgrade request (docs/interfaces.md, "Router → pod
//! upgrade request"), and the `x-wsring-pod` header it adds to the 101 answer.
//!
//! Behind a router every request carries `x-wsring-conn`, `x-wsring-key`
//! (percent-encoded) and `x-wsring-ring-version`. A direct connection (tests,
//! `ws-pod probe`, local debugging) may carry none of them: it gets a local
//! connection id and the `key` query parameter, or the empty key.

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::{HeaderMap, StatusCode};
use wsring_core::protocol::{decode_percent, HEADER_CONN, HEADER_KEY, HEADER_RING_VERSION};

/// Query parameter read for the key of a direct connection (the router's default key name).
const DIRECT_KEY_PARAM: &str = "key";

/// The parts of an upgrade request the connection task needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    /// `x-wsring-conn`; `None` for a direct connection (a local id is assigned).
    pub conn_id: Option<String>,
    /// Decoded routing key.
    pub key: String,
    /// `x-wsring-ring-version`, when present and numeric (for logs).
    pub ring_version: Option<u64>,
    /// Path and query of the request, passed on to an upstream app.
    pub path_and_query: String,
    /// The request headers, kept only when an upstream app needs them.
    pub headers: Option<HeaderMap>,
}

/// Why an upgrade request was refused (answered with 400 and this text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Refusal {
    /// The 400 answer tungstenite sends instead of the 101.
    pub fn into_response(self) -> ErrorResponse {
        let mut response = ErrorResponse::new(Some(self.0));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response
    }
}

/// Read an upgrade request; a malformed `x-wsring-*` header refuses it.
pub fn read_request(request: &Request, keep_headers: bool) -> Result<Upgrade, Refusal> {
    let headers = request.headers();
    let conn_id = match headers.get(HEADER_CONN) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(id) if !id.trim().is_empty() => Some(id.trim().to_string()),
            _ => {
                return Err(bad_request(&format!(
                    "{HEADER_CONN} must be a non-empty ASCII id"
                )))
            }
        },
    };
    let key = match headers.get(HEADER_KEY) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|encoded| decode_percent(encoded).ok())
            .ok_or_else(|| {
                bad_request(&format!("{HEADER_KEY} is not a percent-encoded UTF-8 key"))
            })?,
        None => query_key(request.uri().query().unwrap_or(""))
            .map_err(|_| bad_request("the key query parameter is not percent-encoded UTF-8"))?,
    };
    let ring_version = headers
        .get(HEADER_RING_VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
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
    })
}

/// The decoded `key` query parameter, or the empty key when there is none.
fn query_key(query: &str) -> Result<String, wsring_core::Error> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(DIRECT_KEY_PARAM)?.strip_prefix('='))
        .map(decode_percent)
        .unwrap_or_else(|| Ok(String::new()))
}

fn bad_request(message: &str) -> Refusal {
    Refusal(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn router_headers_are_read_and_the_key_decoded() {
        let req = request(
            "/chat?room=1",
            &[
                (HEADER_CONN, "r1-17"),
                (HEADER_KEY, "user%201%2F%C3%BC"),
                (HEADER_RING_VERSION, "8"),
            ],
        );
        let upgrade = read_request(&req, false).unwrap();
        assert_eq!(upgrade.conn_id.as_deref(), Some("r1-17"));
        assert_eq!(upgrade.key, "user 1/ü");
        assert_eq!(upgrade.ring_version, Some(8));
        assert_eq!(upgrade.path_and_query, "/chat?room=1");
        assert!(upgrade.headers.is_none());
    }

    #[test]
    fn direct_connections_use_the_key_query_parameter_or_nothing() {
        let upgrade = read_request(&request("/?x=1&key=a%20b", &[]), true).unwrap();
        assert_eq!((upgrade.conn_id, upgrade.key.as_str()), (None, "a b"));
        assert!(upgrade.headers.is_some());
        let upgrade = read_request(&request("/?keys=1", &[]), false).unwrap();
        assert_eq!(upgrade.key, "");
    }

    #[test]
    fn malformed_wsring_headers_are_refused() {
        let bad_key = request("/", &[(HEADER_KEY, "%zz")]);
        let refusal = read_request(&bad_key, false).unwrap_err();
        assert!(refusal.to_string().contains(HEADER_KEY), "{refusal}");
        assert_eq!(refusal.into_response().status(), StatusCode::BAD_REQUEST);
        let empty_id = request("/", &[(HEADER_CONN, " ")]);
        let refusal = read_request(&empty_id, false).unwrap_err();
        assert!(refusal.to_string().contains(HEADER_CONN), "{refusal}");
    }
}
