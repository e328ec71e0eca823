//! Taking the routing key out of an upgrade request.
//!
//! Whatever the source (query parameter, header, path segment, cookie), the raw
//! value is percent-decoded the same way (`%XX` only; `+` stays `+`, as in
//! [`wsring_core::protocol::decode_percent`]) and then checked: non-empty, at
//! most `max_bytes` bytes, UTF-8, no control characters. Any failure is a
//! [`Error::BadKey`] (400) naming the exact problem, before anything is
//! forwarded to a pod.

use http::{HeaderMap, Uri};
use wsring_core::protocol::decode_percent;

use crate::config::KeySource;
use crate::error::{Error, KeyProblem};

/// Extracts and validates routing keys according to the configured source.
#[derive(Clone, Debug)]
pub struct KeyExtractor {
    source: KeySource,
    name: String,
    max_bytes: usize,
}

impl KeyExtractor {
    /// An extractor for `source` / `name` accepting keys up to `max_bytes` (decoded).
    pub fn new(source: KeySource, name: impl Into<String>, max_bytes: usize) -> Self {
        KeyExtractor {
            source,
            name: name.into(),
            max_bytes,
        }
    }

    /// The decoded, validated routing key of a request for `uri` with `headers`.
    pub fn extract(&self, uri: &Uri, headers: &HeaderMap) -> Result<String, Error> {
        let raw = match self.source {
            KeySource::Query => uri.query().and_then(|q| query_param(q, &self.name)),
            KeySource::Header => self.header(headers)?,
            KeySource::Path => path_segment(uri.path(), &self.name),
            KeySource::Cookie => self.cookie(headers),
        };
        let raw = raw.ok_or_else(|| {
            Error::bad_key(
                KeyProblem::Missing,
                format!("the request has no routing key ({})", self.describe()),
            )
        })?;
        self.decode(raw)
    }

    /// The longest accepted key, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Human description of where the key is expected, for error messages.
    fn describe(&self) -> String {
        match self.source {
            KeySource::Query => format!("query parameter `{}`", self.name),
            KeySource::Header => format!("header `{}`", self.name),
            KeySource::Path if self.name.is_empty() => "last path segment".to_string(),
            KeySource::Path => format!("path segment after `/{}/`", self.name),
            KeySource::Cookie => format!("cookie `{}`", self.name),
        }
    }

    fn header<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Error> {
        match headers.get(self.name.as_str()) {
            None => Ok(None),
            Some(value) => value.to_str().map(Some).map_err(|_| {
                Error::bad_key(
                    KeyProblem::NotUtf8,
                    format!(
                        "{} holds bytes that are not visible ASCII; percent-encode the key",
                        self.describe()
                    ),
                )
            }),
        }
    }

    fn cookie<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| cookie_value(value, &self.name))
    }

    /// Percent-decode and validate a raw key.
    fn decode(&self, raw: &str) -> Result<String, Error> {
        if raw.is_empty() {
            return Err(Error::bad_key(
                KeyProblem::Empty,
                format!("the routing key ({}) is empty", self.describe()),
            ));
        }
        // Every decoded byte takes 1..=3 raw bytes: a raw value over 3× the
        // limit cannot decode to an acceptable key; don't bother decoding it.
        if raw.len() > self.max_bytes.saturating_mul(3) {
            return Err(self.too_long(raw.len()));
        }
        if let Some(at) = bad_escape(raw) {
            return Err(Error::bad_key(
                KeyProblem::BadEscape,
                format!("the routing key has a bad percent escape at byte {at}"),
            ));
        }
        let key = decode_percent(raw).map_err(|_| {
            Error::bad_key(
                KeyProblem::NotUtf8,
                "the routing key is not UTF-8 once percent-decoded",
            )
        })?;
        if key.is_empty() {
            return Err(Error::bad_key(
                KeyProblem::Empty,
                "the routing key is empty",
            ));
        }
        if key.len() > self.max_bytes {
            return Err(self.too_long(key.len()));
        }
        if key.chars().any(char::is_control) {
            return Err(Error::bad_key(
                KeyProblem::ControlCharacters,
                "the routing key contains control characters",
            ));
        }
        Ok(key)
    }

    fn too_long(&self, len: usize) -> Error {
        Error::bad_key(
            KeyProblem::TooLong,
            format!(
                "the routing key is {len} bytes, the limit is {}",
                self.max_bytes
            ),
        )
    }
}

/// Raw value of the first query parameter called `name` (`a=1&name=v`); a bare `name` is empty.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Parameter names are compared raw and, failing that, decoded, so `k%65y` still means `key`.
        (k == name || (k.contains('%') && decode_percent(k).is_ok_and(|d| d == name))).then_some(v)
    })
}

/// The segment after the first segment equal to `before`, or the last segment if `before` is empty.
fn path_segment<'a>(path: &'a str, before: &str) -> Option<&'a str> {
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    if before.is_empty() {
        return segments
            .next_back()
            .filter(|s| !s.is_empty() || path != "/");
    }
    segments.by_ref().find(|s| *s == before)?;
    segments.next()
}

/// Value of cookie `name` in one `Cookie` header (`a=1; name=v`), surrounding quotes removed.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

/// Byte offset of the first `%` that is not followed by two hex digits.
fn bad_escape(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let ok = b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        (!ok).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parts {
        uri: Uri,
        headers: HeaderMap,
    }

    fn parts(uri: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        Parts {
            uri: uri.parse().unwrap(),
            headers: map,
        }
    }

    impl KeyExtractor {
        fn extract_parts(&self, p: &Parts) -> Result<String, Error> {
            self.extract(&p.uri, &p.headers)
        }
    }

    fn problem(result: Result<String, Error>) -> KeyProblem {
        match result {
            Err(Error::BadKey { problem, .. }) => problem,
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    fn query() -> KeyExtractor {
        KeyExtractor::new(KeySource::Query, "key", 16)
    }

    #[test]
    fn query_parameter_is_found_and_decoded() {
        let q = query();
        assert_eq!(
            q.extract_parts(&parts("/ws?key=user-1", &[])).unwrap(),
            "user-1"
        );
        assert_eq!(
            q.extract_parts(&parts("/ws?a=1&key=a%20b%2Fc&key=second", &[]))
                .unwrap(),
            "a b/c",
            "first occurrence wins, %XX decoded"
        );
        assert_eq!(q.extract_parts(&parts("/?k%65y=x", &[])).unwrap(), "x");
        assert_eq!(q.extract_parts(&parts("/?key=a+b", &[])).unwrap(), "a+b");
        assert_eq!(
            q.extract_parts(&parts("/?key=%C3%BC", &[])).unwrap(),
            "ü",
            "UTF-8 keys"
        );
    }

    #[test]
    fn query_key_problems_are_named() {
        let q = query();
        assert_eq!(
            problem(q.extract_parts(&parts("/ws", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/ws?other=1", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/ws?key=", &[]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/ws?key", &[]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(q.extract_parts(&parts(&format!("/?key={}", "x".repeat(17)), &[]))),
            KeyProblem::TooLong
        );
        assert_eq!(
            problem(q.extract_parts(&parts(&format!("/?key={}", "%41".repeat(17)), &[]))),
            KeyProblem::TooLong,
            "the limit applies to the decoded key"
        );
        assert_eq!(
            q.extract_parts(&parts(&format!("/?key={}", "%41".repeat(16)), &[]))
                .unwrap(),
            "A".repeat(16)
        );
        assert_eq!(
            problem(q.extract_parts(&parts(&format!("/?key={}", "x".repeat(100)), &[]))),
            KeyProblem::TooLong
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/?key=a%zz", &[]))),
            KeyProblem::BadEscape
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/?key=a%4", &[]))),
            KeyProblem::BadEscape
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/?key=%FF%FE", &[]))),
            KeyProblem::NotUtf8
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/?key=a%0Ab", &[]))),
            KeyProblem::ControlCharacters
        );
        assert_eq!(
            problem(q.extract_parts(&parts("/?key=%00", &[]))),
            KeyProblem::ControlCharacters
        );
    }

    #[test]
    fn header_source() {
        let h = KeyExtractor::new(KeySource::Header, "x-room", 16);
        assert_eq!(
            h.extract_parts(&parts("/", &[("x-room", b"room%201")]))
                .unwrap(),
            "room 1"
        );
        assert_eq!(
            problem(h.extract_parts(&parts("/", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(h.extract_parts(&parts("/", &[("x-room", b"")]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(h.extract_parts(&parts("/", &[("x-room", b"\xff\xfe")]))),
            KeyProblem::NotUtf8
        );
        assert_eq!(
            problem(h.extract_parts(&parts("/", &[("x-room", b"%%")]))),
            KeyProblem::BadEscape
        );
    }

    #[test]
    fn path_source() {
        let p = KeyExtractor::new(KeySource::Path, "rooms", 16);
        assert_eq!(
            p.extract_parts(&parts("/rooms/lobby", &[])).unwrap(),
            "lobby"
        );
        assert_eq!(
            p.extract_parts(&parts("/api/rooms/a%2Fb/ws?x=1", &[]))
                .unwrap(),
            "a/b"
        );
        assert_eq!(
            problem(p.extract_parts(&parts("/rooms", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(p.extract_parts(&parts("/other/x", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(p.extract_parts(&parts("/rooms/", &[]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(p.extract_parts(&parts("/rooms/%E0%A4", &[]))),
            KeyProblem::NotUtf8
        );

        let last = KeyExtractor::new(KeySource::Path, "", 16);
        assert_eq!(
            last.extract_parts(&parts("/ws/user-9", &[])).unwrap(),
            "user-9"
        );
        assert_eq!(
            last.extract_parts(&parts("/user-9?x", &[])).unwrap(),
            "user-9"
        );
        assert_eq!(
            problem(last.extract_parts(&parts("/ws/", &[]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(last.extract_parts(&parts("/", &[]))),
            KeyProblem::Missing
        );
    }

    #[test]
    fn cookie_source() {
        let c = KeyExtractor::new(KeySource::Cookie, "sid", 16);
        assert_eq!(
            c.extract_parts(&parts("/", &[("cookie", b"a=1; sid=abc; b=2")]))
                .unwrap(),
            "abc"
        );
        assert_eq!(
            c.extract_parts(&parts(
                "/",
                &[("cookie", b"a=1"), ("cookie", b"sid=\"q%20v\"")]
            ))
            .unwrap(),
            "q v",
            "second Cookie header, quoted value"
        );
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[("cookie", b"xsid=1")]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[]))),
            KeyProblem::Missing
        );
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[("cookie", b"sid=")]))),
            KeyProblem::Empty
        );
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[("cookie", b"sid=%G1")]))),
            KeyProblem::BadEscape
        );
    }

    #[test]
    fn error_messages_name_the_source() {
        let err = KeyExtractor::new(KeySource::Cookie, "sid", 16)
            .extract_parts(&parts("/", &[]))
            .unwrap_err();
        assert_eq!(err.code(), "missing_key");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("cookie `sid`"), "{err}");
    }
}
