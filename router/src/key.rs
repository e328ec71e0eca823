//! Taking the routing key out of an upgrade request.
//!
//! Whatever the source (query parameter, header, path segment, cookie), the raw
//! value is decoded and checked by the shared rules of [`wsring_core::key`]
//! (the same ws-pod applies to `x-wsring-key`); a source present twice is
//! ambiguous. Any failure is a [`Error::BadKey`] (400) naming the exact
//! problem, before anything is forwarded to a pod.

use http::{HeaderMap, Uri};
use wsring_core::key::{decode_key, query_param, KeyError};

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
            KeySource::Query => {
                query_param(uri.query().unwrap_or(""), &self.name).map_err(|e| self.refuse(e))?
            }
            KeySource::Header => self.header(headers)?,
            KeySource::Path => path_segment(uri.path(), &self.name),
            KeySource::Cookie => self.cookie(headers)?,
        };
        let raw = raw.ok_or_else(|| {
            Error::bad_key(
                KeyProblem::Missing,
                format!("the request has no routing key ({})", self.describe()),
            )
        })?;
        decode_key(raw, self.max_bytes).map_err(|e| self.refuse(e))
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

    /// A shared-rule refusal as the router's error, naming the key source.
    fn refuse(&self, e: KeyError) -> Error {
        Error::bad_key(e.problem, format!("{} ({})", e.message, self.describe()))
    }

    fn ambiguous(&self) -> Error {
        Error::bad_key(
            KeyProblem::Ambiguous,
            format!("the {} is given more than once", self.describe()),
        )
    }

    fn header<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Error> {
        let mut values = headers.get_all(self.name.as_str()).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(self.ambiguous());
        }
        value.to_str().map(Some).map_err(|_| {
            Error::bad_key(
                KeyProblem::NotUtf8,
                format!(
                    "{} holds bytes that are not visible ASCII; percent-encode the key",
                    self.describe()
                ),
            )
        })
    }

    fn cookie<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Error> {
        let mut found = None;
        for value in headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
        {
            for v in cookie_values(value, &self.name) {
                if found.replace(v).is_some() {
                    return Err(self.ambiguous());
                }
            }
        }
        Ok(found)
    }
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

/// Values of cookie `name` in one `Cookie` header (`a=1; name=v`), surrounding quotes removed.
fn cookie_values<'a, 'n>(
    header: &'a str,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
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
            q.extract_parts(&parts("/ws?a=1&key=a%20b%2Fc", &[]))
                .unwrap(),
            "a b/c",
            "%XX decoded"
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

    /// Found in the security review: `?key=alice&key=bob` was routed by
    /// `alice` while the app behind the pod could read `bob`; `k%65y` is the
    /// same parameter spelled differently. Both are refused now, and so are
    /// two headers or two cookies of the key's name.
    #[test]
    fn a_key_given_twice_is_ambiguous() {
        let q = query();
        for uri in [
            "/?key=alice&key=bob",
            "/?key=alice&k%65y=bob",
            "/?key=a&key=a",
        ] {
            assert_eq!(
                problem(q.extract_parts(&parts(uri, &[]))),
                KeyProblem::Ambiguous,
                "{uri}"
            );
        }
        let h = KeyExtractor::new(KeySource::Header, "x-room", 16);
        assert_eq!(
            problem(h.extract_parts(&parts("/", &[("x-room", b"a"), ("x-room", b"b")]))),
            KeyProblem::Ambiguous
        );
        let c = KeyExtractor::new(KeySource::Cookie, "sid", 16);
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[("cookie", b"sid=a; sid=b")]))),
            KeyProblem::Ambiguous
        );
        assert_eq!(
            problem(c.extract_parts(&parts("/", &[("cookie", b"sid=a"), ("cookie", b"sid=b")]))),
            KeyProblem::Ambiguous
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
