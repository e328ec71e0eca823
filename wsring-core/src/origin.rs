//! Browser `Origin` allow-lists: the rules shared by the router, which enforces
//! them before the WebSocket upgrade, and the operator, which refuses a
//! `WebSocketCluster` whose `router.allowedOrigins` the router would refuse.
//!
//! # Rules
//!
//! - An empty list allows every origin.
//! - Every entry is `scheme://host[:port]`, compared ASCII-case-insensitively,
//!   with the default port of `http`/`https`/`ws`/`wss` made explicit on both
//!   sides (`https://a.example` equals `https://a.example:443`). No path, no
//!   trailing `/`, no user info.
//! - A host of the form `*.example.com` matches every subdomain at any depth
//!   (`a.example.com`, `b.a.example.com`) but not `example.com` itself; scheme
//!   and port must still match. `*` anywhere else, a bare `*` and `null` are
//!   refused (leave the list empty to allow all; opaque `null` origins are
//!   never allowed).
//! - Requiring an `Origin` header only makes sense with a non-empty list.

use crate::Error;

/// Parse a whole allow-list (blank entries, e.g. from trailing commas, are
/// skipped); `require_origin` needs at least one entry.
pub fn parse_allow_list<S: AsRef<str>>(
    entries: &[S],
    require_origin: bool,
) -> Result<Vec<OriginPattern>, Error> {
    let patterns = entries
        .iter()
        .map(|e| e.as_ref().trim())
        .filter(|e| !e.is_empty())
        .map(OriginPattern::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if require_origin && patterns.is_empty() {
        return Err(Error::InvalidOrigin(
            "requiring an Origin header needs a non-empty allow-list".into(),
        ));
    }
    Ok(patterns)
}

/// One allow-list entry, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
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

/// A parsed `Origin` header value: scheme, host, port (default port filled in
/// where known).
#[derive(Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OriginPattern {
    /// Parse one allow-list entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidOrigin(format!(
                "entry {entry:?} {why}; expected scheme://host[:port] or scheme://*.domain[:port]"
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
        Ok(OriginPattern {
            scheme: origin.scheme,
            host,
            port: origin.port,
        })
    }

    /// True when `origin` is this entry, or a subdomain of a `*.` entry.
    pub fn matches(&self, origin: &Origin) -> bool {
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
    /// `scheme://host[:port]` (RFC 6454 serialisation), lower-cased, default
    /// port explicit; `None` for anything else (paths, user info, `null`).
    pub fn parse(text: &str) -> Option<Origin> {
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

    fn allowed(list: &[&str], origin: &str) -> bool {
        let patterns = parse_allow_list(list, false).unwrap();
        Origin::parse(origin).is_some_and(|o| patterns.iter().any(|p| p.matches(&o)))
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let list = ["https://chat.example.com", " http://localhost:3000 "];
        assert!(allowed(&list, "https://chat.example.com"));
        assert!(
            allowed(&list, "HTTPS://Chat.Example.COM"),
            "case-insensitive"
        );
        assert!(
            allowed(&list, "https://chat.example.com:443"),
            "default port"
        );
        assert!(allowed(&list, "http://localhost:3000"));
        assert!(!allowed(&list, "http://chat.example.com"), "scheme matters");
        assert!(
            !allowed(&list, "https://chat.example.com:8443"),
            "port matters"
        );
        assert!(!allowed(&list, "http://localhost"));
        assert!(
            !allowed(&list, "https://a.chat.example.com"),
            "no implicit subdomains"
        );
        assert!(!allowed(&list, "https://chat.example.com.evil.net"));
        assert!(!allowed(&list, "https://evilchat.example.com"));
        assert!(!allowed(&list, "null"));
        assert!(
            !allowed(&list, "https://chat.example.com/"),
            "origins have no path"
        );
        assert!(!allowed(&list, "https://user@chat.example.com"));
        assert!(!allowed(&list, "chat.example.com"));
        assert!(!allowed(&list, ""));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let list = ["https://*.example.com"];
        assert!(allowed(&list, "https://a.example.com"));
        assert!(allowed(&list, "https://b.a.example.com"), "any depth");
        assert!(allowed(&list, "https://A.Example.com:443"));
        assert!(!allowed(&list, "https://example.com"), "not the apex");
        assert!(!allowed(&list, "https://.example.com"));
        assert!(!allowed(&list, "https://aexample.com"));
        assert!(!allowed(&list, "https://a.example.com.evil.net"));
        assert!(!allowed(&list, "http://a.example.com"), "scheme matters");
        assert!(
            !allowed(&list, "https://a.example.com:8443"),
            "port matters"
        );
        let with_port = ["http://*.dev.local:8080"];
        assert!(allowed(&with_port, "http://x.dev.local:8080"));
        assert!(!allowed(&with_port, "http://x.dev.local"));
    }

    #[test]
    fn ipv6_and_other_schemes() {
        let list = ["http://[::1]:8080", "chrome-extension://abcdef"];
        assert!(allowed(&list, "http://[::1]:8080"));
        assert!(!allowed(&list, "http://[::1]:8081"));
        assert!(allowed(&list, "chrome-extension://abcdef"));
        assert!(!allowed(&list, "chrome-extension://abcdeg"));
    }

    #[test]
    fn blank_entries_are_skipped_and_require_needs_a_list() {
        assert!(parse_allow_list(&["", "  "], false).unwrap().is_empty());
        let err = parse_allow_list::<&str>(&[], true).unwrap_err();
        assert!(err.to_string().contains("non-empty"), "{err}");
        assert_eq!(
            parse_allow_list(&["https://a.example"], true)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (bad, why) in [
            ("*", "bare wildcard"),
            ("null", "`null`"),
            ("chat.example.com", "not an origin"),
            ("*.example.com", "not an origin"),
            ("https://", "not an origin"),
            ("https://chat.example.com/", "not an origin"),
            ("https://chat.example.com/path", "not an origin"),
            ("https://chat.example.com:99999", "not an origin"),
            ("https://chat.example.com:", "not an origin"),
            ("https://a.*.example.com", "single leading"),
            ("https://*.*.example.com", "single leading"),
            ("https://*.com", "top-level domain"),
            ("https://*.", "single leading"),
            ("https://*", "single leading"),
            ("https://u@chat.example.com", "not an origin"),
            ("1https://chat.example.com", "not an origin"),
        ] {
            let err = OriginPattern::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidOrigin(_)), "{bad}: {err}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
