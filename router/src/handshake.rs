//! What a client's upgrade request must be before the router acts on it.
//!
//! Not an upgrade at all (a plain GET, a POST, HTTP/1.0, a body): 426 with
//! `Upgrade: websocket`. An upgrade that two parsers could read two ways is
//! refused with 400 (`bad_upgrade_request`) instead of being forwarded: exactly
//! one `Upgrade` header whose only token is `websocket`, exactly one `Host`,
//! and exactly one `Sec-WebSocket-Key` that is the base64 form of 16 bytes
//! (RFC 6455 §4.1). A pod, an app or an intermediary then cannot see a
//! different request than the one the router routed.

use http::header::{self, HeaderMap};
use http::{Method, Version};

use crate::Error;

/// Check an upgrade request: `Ok` when it is one WebSocket upgrade, read one way.
pub fn check(method: &Method, version: Version, headers: &HeaderMap) -> Result<(), Error> {
    if !is_upgrade_request(method, version, headers) {
        return Err(Error::NotUpgrade);
    }
    let upgrades: Vec<_> = headers.get_all(header::UPGRADE).iter().collect();
    let only_websocket = upgrades.len() == 1
        && upgrades[0]
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !only_websocket {
        return Err(Error::BadUpgrade(
            "send exactly one `Upgrade: websocket` header, with no other protocol".into(),
        ));
    }
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(Error::BadUpgrade("send exactly one Host header".into()));
    }
    let keys: Vec<_> = headers.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
    if keys.len() != 1 || !is_websocket_key(keys[0].as_bytes()) {
        return Err(Error::BadUpgrade(
            "send exactly one Sec-WebSocket-Key: the base64 form of 16 random bytes".into(),
        ));
    }
    Ok(())
}

/// True for a WebSocket (or other) upgrade request: HTTP/1.1 GET with
/// `Connection: upgrade` and an `Upgrade: websocket` header, and no body.
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
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// 16 bytes in base64: 22 alphabet characters, the last one carrying only two
/// bits (`A`, `Q`, `g`, `w`), and `==`.
fn is_websocket_key(value: &[u8]) -> bool {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    value.len() == 24
        && value[..21].iter().all(is_b64)
        && matches!(value[21], b'A' | b'Q' | b'g' | b'w')
        && &value[22..] == b"=="
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_requests::{headers, ws_headers};

    fn refused(pairs: &[(&str, &str)]) -> Error {
        check(&Method::GET, Version::HTTP_11, &headers(pairs)).unwrap_err()
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        let h = headers(&ws_headers());
        assert!(is_upgrade_request(&Method::GET, Version::HTTP_11, &h));
        assert!(check(&Method::GET, Version::HTTP_11, &h).is_ok());
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
        assert!(matches!(refused(&with_body), Error::NotUpgrade));
    }

    /// Found in the security review: `Upgrade: foo` next to `Upgrade:
    /// websocket` was forwarded as `upgrade: foo`, and duplicate `Host` and
    /// `Sec-WebSocket-Key` headers went through to the pod.
    #[test]
    fn ambiguous_upgrades_are_refused() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = ws_headers();
            pairs.extend_from_slice(extra);
            pairs
        };
        let without = |name: &str| {
            let mut pairs = ws_headers();
            pairs.retain(|(n, _)| *n != name);
            pairs
        };
        let mut foo_first = without("upgrade");
        foo_first.extend([("upgrade", "foo"), ("upgrade", "websocket")]);
        for pairs in [
            foo_first,
            with(&[("upgrade", "websocket")]),
            {
                let mut p = without("upgrade");
                p.push(("upgrade", "websocket, h2c"));
                p
            },
            with(&[("host", "other.example.com")]),
            without("host"),
            with(&[("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")]),
            without("sec-websocket-key"),
            {
                let mut p = without("sec-websocket-key");
                p.push(("sec-websocket-key", "not-base64"));
                p
            },
            {
                let mut p = without("sec-websocket-key");
                p.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZR=="));
                p
            },
        ] {
            let err = refused(&pairs);
            assert_eq!(err.code(), "bad_upgrade_request", "{pairs:?}: {err}");
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn websocket_keys_are_16_bytes_of_base64() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_websocket_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_websocket_key(b""));
    }
}
