//! Upgrade requests for the unit tests of the modules that read them
//! ([`crate::handshake`], [`crate::pod_link::request`]): one browser upgrade,
//! and header maps built from name/value pairs.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A header map holding `pairs` in order; a repeated name keeps every value.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The headers of a browser's WebSocket upgrade to `chat.example.com`.
pub fn ws_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "chat.example.com"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ]
}
