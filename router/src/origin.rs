//! The `Origin` allow-list of the public listener (`--allowed-origins`).
//!
//! Browsers let any page open a WebSocket to any host and attach that host's
//! cookies, so a server that authenticates by cookie must check `Origin`
//! (cross-site WebSocket hijacking). The router does it before the upgrade,
//! before anything reaches a pod.
//!
//! The entry syntax and matching rules are [`wsring_core::origin`]'s, shared
//! with the operator's validation of `router.allowedOrigins`. Here:
//!
//! - An empty list (the default) allows every request.
//! - A request whose `Origin` is on the list passes; one whose `Origin` is not,
//!   is `null`, is unparseable, or is sent more than once is refused with 403
//!   `origin_not_allowed`.
//! - A request *without* `Origin` (non-browser clients: browsers always send
//!   it on WebSocket upgrades) passes unless `--require-origin` is set.

use http::header::ORIGIN;
use http::HeaderMap;

use wsring_core::origin::{parse_allow_list, Origin, OriginPattern};

use crate::Error;

/// Longest origin echoed back in a refusal message.
const MAX_SHOWN: usize = 200;

/// The configured allow-list; `check` is what the public listener calls.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowed: Vec<OriginPattern>,
    require: bool,
}

impl OriginPolicy {
    /// Build the policy from `--allowed-origins` entries (blank entries are
    /// skipped) and `--require-origin`; a malformed entry is a config error.
    pub fn new<S: AsRef<str>>(entries: &[S], require: bool) -> Result<Self, Error> {
        let allowed = parse_allow_list(entries, require)
            .map_err(|e| Error::Config(format!("--allowed-origins/--require-origin: {e}")))?;
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
    fn listed_origins_pass_and_others_are_forbidden() {
        // The matching rules themselves are tested in wsring_core::origin.
        let p = policy(&["https://chat.example.com", "https://*.example.org"]);
        assert!(allowed(&p, "https://chat.example.com"));
        assert!(allowed(&p, "https://a.example.org"));
        let err = p.check(&headers(&["https://evil.example"])).unwrap_err();
        assert_eq!(err.code(), "origin_not_allowed");
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        assert!(err.to_string().contains("https://evil.example"), "{err}");
        assert!(!allowed(&p, "null"));
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
    fn bad_entries_are_config_errors_naming_the_flag() {
        for bad in ["*", "null", "chat.example.com", "https://a.example/"] {
            let err = OriginPolicy::new(&[bad], false).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad}: {err}");
            assert!(err.to_string().contains("--allowed-origins"), "{err}");
        }
    }
}
