//! The `Origin` allow-list of the public listener (`--allowed-origins`).
//!
//! Browsers let any page open a WebSocket to any host and attach that host's
//! cookies, so a server that authenticates by cookie must check `Origin`
//! (cross-site WebSocket hijacking). The router does it before the upgrade,
//! before anything reaches a pod.
//!
//! # Rules
//!
//! - An empty list (the default) allows every request.
//! - Every entry is `scheme://host[:port]`, compared ASCII-case-insensitively,
//!   with the default port of `http`/`https`/`ws`/`wss` made explicit on both
//!   sides (`https://a.example` equals `https://a.example:443`). No path, no
//!   trailing `/`, no user info.
//! - A host of the form `*.example.com` matches every subdomain at any depth
//!   (`a.example.com`, `b.a.example.com`) but not `example.com` itself; scheme
//!   and port must still match. `*` anywhere else, a bare `*` and `null` are
//!   refused at start-up (leave the list empty to allow all; opaque `null`
//!   origins are never allowed).
//! - A request whose `Origin` is on the list passes; one whose `Origin` is not,
//!   is `null`, is unparseable, or is sent more than once is refused with 403
//!   `origin_not_allowed`.
//! - A request *without* `Origin` (non-browser clients: browsers always send
//!   it on WebSocket upgrades) passes unless `--require-origin` is set.

use http::header::ORIGIN;
use http::HeaderMap;

use crate::Error;

/// Longest origin echoed back in a refusal message.
const MAX_SHOWN: usize = 200;

/// The configured allow-list; `check` is what the public listener calls.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowed: Vec<Pattern>,
    require: bool,
}

/// One allow-list entry, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.{suffix}` (lower case, without the leading dot).
    Subdomains(String),
}

/// A parsed origin: scheme, host, port (default port filled in where known).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OriginPolicy {
    /// Build the policy from `--allowed-origins` entries (blank entries are
    /// skipped) and `--require-origin`; a malformed entry is a config error.
    pub fn new<S: AsRef<str>>(entries: &[S], require: bool) -> Result<Self, Error> {
        let allowed = entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
            .map(Pattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if require && allowed.is_empty() {
            return Err(Error::Config(
                "--require-origin needs a non-empty --allowed-origins list".into(),
            ));
        }
        Ok(OriginPolicy { allowed, require })
    }

    /// True when no list is configured (every origin is allowed).
    pub fn allows_all(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Accept or refuse an upgrade request by its `Origin` header(s).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Error> {
        if self.allowed.is_empty() {
            return Ok(());
        }
        let mut values = headers.get_all(ORIGIN).iter();
        let (value, extra) = (values.next(), values.next());
        let Some(value) = value else {
            return if self.require {
                Err(Error::OriginNotAllowed(
                    "an Origin header is required on this endpoint".into(),
                ))
            } else {
                Ok(())
            };
        };
        let shown = String::from_utf8_lossy(value.as_bytes());
        let shown: String = shown.chars().take(MAX_SHOWN).collect();
        if extra.is_some() {
            return Err(Error::OriginNotAllowed(
                "more than one Origin header".into(),
            ));
        }
        let allowed = value
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .is_some_and(|origin| self.allowed.iter().any(|p| p.matches(&origin)));
        if allowed {
            Ok(())
        } else {
            Err(Error::OriginNotAllowed(format!(
                "origin {shown:?} is not allowed to open WebSocket connections here"
            )))
        }
    }
}

impl Pattern {
    fn parse(entry: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::Config(format!(
                "--allowed-origins entry {entry:?} {why}; expected scheme://host[:port] or scheme://*.domain[:port]"
            ))
        };
        if entry == "*" {
            return Err(bad(
                "is a bare wildcard (leave the list empty to allow every origin)",
            ));
        }
        if entry.eq_ignore_ascii_case("null") {
            return Err(bad("is the opaque `null` origin, which is never allowed"));
        }
        let origin = Origin::parse(entry).ok_or_else(|| bad("is not an origin"))?;
        let host = match origin.host.strip_prefix("*.") {
            Some(suffix) if suffix.is_empty() || suffix.contains('*') => {
                return Err(bad("has a wildcard that is not a single leading `*.`"))
            }
            Some(suffix) if !suffix.contains('.') => {
                return Err(bad("wildcards a top-level domain"))
            }
            Some(suffix) => HostPattern::Subdomains(suffix.to_string()),
            None if origin.host.contains('*') => {
                return Err(bad("has a wildcard that is not a single leading `*.`"))
            }
            None => HostPattern::Exact(origin.host),
        };
        Ok(Pattern {
            scheme: origin.scheme,
            host,
            port: origin.port,
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        self.scheme == origin.scheme
            && self.port == origin.port
            && match &self.host {
                HostPattern::Exact(host) => *host == origin.host,
                HostPattern::Subdomains(suffix) => origin
                    .host
                    .strip_suffix(suffix.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty()),
            }
    }
}

impl Origin {
    /// `scheme://host[:port]` (RFC 6454 serialisation), lower-cased, default port explicit.
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok || authority.is_empty() {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_port(authority)?;
        if !valid_host(host) {
            return None;
        }
        let port = port.or_else(|| default_port(&scheme));
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `host` and optional `:port` of an authority; IPv6 hosts are bracketed.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// A DNS name or IPv4 address (letters, digits, `-`, `.`, `_`, and `*` for
/// patterns, checked later), or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        }
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'))
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::new(entries, false).unwrap()
    }

    fn headers(origins: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for o in origins {
            map.append(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        map
    }

    fn allowed(p: &OriginPolicy, origin: &str) -> bool {
        p.check(&headers(&[origin])).is_ok()
    }

    #[test]
    fn empty_list_allows_everything() {
        let p = policy(&[]);
        assert!(p.allows_all());
        assert!(allowed(&p, "https://evil.example"));
        assert!(allowed(&p, "null"));
        assert!(p.check(&HeaderMap::new()).is_ok());
        let blank = OriginPolicy::new(&["", "  "], false).unwrap();
        assert!(
            blank.allows_all(),
            "blank entries (trailing commas) are skipped"
        );
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let p = policy(&["https://chat.example.com", " http://localhost:3000 "]);
        assert!(allowed(&p, "https://chat.example.com"));
        assert!(allowed(&p, "HTTPS://Chat.Example.COM"), "case-insensitive");
        assert!(allowed(&p, "https://chat.example.com:443"), "default port");
        assert!(allowed(&p, "http://localhost:3000"));
        assert!(!allowed(&p, "http://chat.example.com"), "scheme matters");
        assert!(
            !allowed(&p, "https://chat.example.com:8443"),
            "port matters"
        );
        assert!(!allowed(&p, "http://localhost:3001"));
        assert!(!allowed(&p, "http://localhost"));
        assert!(
            !allowed(&p, "https://a.chat.example.com"),
            "no implicit subdomains"
        );
        assert!(!allowed(&p, "https://chat.example.com.evil.net"));
        assert!(!allowed(&p, "https://evilchat.example.com"));
        assert!(!allowed(&p, "null"));
        assert!(
            !allowed(&p, "https://chat.example.com/"),
            "origins have no path"
        );
        assert!(!allowed(&p, "https://user@chat.example.com"));
        assert!(!allowed(&p, "chat.example.com"));
        assert!(!allowed(&p, ""));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["https://*.example.com"]);
        assert!(allowed(&p, "https://a.example.com"));
        assert!(allowed(&p, "https://b.a.example.com"), "any depth");
        assert!(allowed(&p, "https://A.Example.com:443"));
        assert!(!allowed(&p, "https://example.com"), "not the apex");
        assert!(!allowed(&p, "https://.example.com"));
        assert!(!allowed(&p, "https://aexample.com"));
        assert!(!allowed(&p, "https://a.example.com.evil.net"));
        assert!(!allowed(&p, "http://a.example.com"), "scheme matters");
        assert!(!allowed(&p, "https://a.example.com:8443"), "port matters");
        let with_port = policy(&["http://*.dev.local:8080"]);
        assert!(allowed(&with_port, "http://x.dev.local:8080"));
        assert!(!allowed(&with_port, "http://x.dev.local"));
    }

    #[test]
    fn ipv6_and_other_schemes() {
        let p = policy(&["http://[::1]:8080", "chrome-extension://abcdef"]);
        assert!(allowed(&p, "http://[::1]:8080"));
        assert!(!allowed(&p, "http://[::1]:8081"));
        assert!(allowed(&p, "chrome-extension://abcdef"));
        assert!(!allowed(&p, "chrome-extension://abcdeg"));
    }

    #[test]
    fn missing_origin_is_allowed_unless_required() {
        let p = policy(&["https://chat.example.com"]);
        assert!(p.check(&HeaderMap::new()).is_ok());
        let strict = OriginPolicy::new(&["https://chat.example.com"], true).unwrap();
        let err = strict.check(&HeaderMap::new()).unwrap_err();
        assert_eq!(err.code(), "origin_not_allowed");
        assert!(OriginPolicy::new::<&str>(&[], true).is_err());
    }

    #[test]
    fn repeated_or_binary_origins_are_refused() {
        let p = policy(&["https://chat.example.com"]);
        let two = headers(&["https://chat.example.com", "https://chat.example.com"]);
        assert_eq!(p.check(&two).unwrap_err().code(), "origin_not_allowed");
        let mut binary = HeaderMap::new();
        binary.insert(
            ORIGIN,
            HeaderValue::from_bytes(b"https://\xffchat").unwrap(),
        );
        let err = p.check(&binary).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn bad_entries_are_config_errors() {
        for bad in [
            "*",
            "null",
            "chat.example.com",
            "*.example.com",
            "https://",
            "https://chat.example.com/",
            "https://chat.example.com/path",
            "https://chat.example.com:99999",
            "https://chat.example.com:",
            "https://a.*.example.com",
            "https://*.*.example.com",
            "https://*.com",
            "https://*.",
            "https://*",
            "https://u@chat.example.com",
            "1https://chat.example.com",
        ] {
            let err = OriginPolicy::new(&[bad], false).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad}: {err}");
        }
    }
}
