//! How ws-pod knows an upgrade request comes from a router of its cluster.
//!
//! The router forwards each client connection with `x-wsring-conn`,
//! `x-wsring-key` and `x-wsring-ring-version`; ws-pod registers the
//! connection under that id and key, and pushes and resets find it by them.
//! Anyone who reaches a pod directly could otherwise claim a live router
//! connection id (and have it listed twice) or a key (and receive its
//! pushes). So the router signs the three headers with the cluster's bearer
//! token, HMAC-SHA256 over a versioned, newline-separated message with a time
//! stamp, in `x-wsring-auth: v1 <unix seconds> <hex>`; ws-pod believes the
//! headers only with a valid signature no older (or newer) than
//! [`MAX_SKEW_SECS`], which bounds the replay of a captured request.

use ring::hmac;

use crate::protocol::{HEADER_CONN, HEADER_KEY, HEADER_RING_VERSION};

/// Header carrying the router's signature.
pub const HEADER_AUTH: &str = "x-wsring-auth";
/// A signature is accepted this many seconds either side of the pod's clock.
pub const MAX_SKEW_SECS: u64 = 120;
/// Scheme tag of the signature (and first line of the signed message).
const VERSION: &str = "v1";

/// Why a pod refused the router headers of a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `x-wsring-*` headers without `x-wsring-auth`.
    #[error("{HEADER_AUTH} is missing: only a router of this cluster may set x-wsring-* headers")]
    Missing,
    /// The header is not `v1 <seconds> <hex>`.
    #[error("{HEADER_AUTH} is malformed")]
    Malformed,
    /// The time stamp is too far from the pod's clock.
    #[error("{HEADER_AUTH} is stale (more than {MAX_SKEW_SECS} s from this pod's clock)")]
    Stale,
    /// The signature does not match (wrong token, or headers changed).
    #[error("{HEADER_AUTH} does not match the request: not signed with this cluster's token")]
    Mismatch,
}

/// The router headers a signature covers, as sent on the wire.
#[derive(Clone, Copy, Debug)]
pub struct SignedHeaders<'a> {
    /// `x-wsring-conn`.
    pub conn: &'a str,
    /// `x-wsring-key` (percent-encoded).
    pub key: &'a str,
    /// `x-wsring-ring-version`.
    pub ring_version: &'a str,
}

/// Signs (router) and checks (ws-pod) router headers with the cluster token.
#[derive(Clone, Debug)]
pub struct RouterAuth {
    key: hmac::Key,
}

impl RouterAuth {
    /// Both sides derive the key from the same bearer token (Secret `NAME-token`).
    pub fn new(token: &str) -> Self {
        RouterAuth {
            key: hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()),
        }
    }

    /// The `x-wsring-auth` value for `headers` at `now` (Unix seconds).
    pub fn sign(&self, headers: SignedHeaders<'_>, now: u64) -> String {
        let tag = hmac::sign(&self.key, message(headers, now).as_bytes());
        format!("{VERSION} {now} {}", hex(tag.as_ref()))
    }

    /// The four headers a router sends a pod with each forwarded connection:
    /// `headers` and, in [`HEADER_AUTH`], their signature at `now`. The router
    /// and the tests that play it build them here, so the names and the
    /// signed values cannot drift apart.
    pub fn signed_headers(
        &self,
        headers: SignedHeaders<'_>,
        now: u64,
    ) -> [(&'static str, String); 4] {
        [
            (HEADER_CONN, headers.conn.to_string()),
            (HEADER_KEY, headers.key.to_string()),
            (HEADER_RING_VERSION, headers.ring_version.to_string()),
            (HEADER_AUTH, self.sign(headers, now)),
        ]
    }

    /// Check an `x-wsring-auth` value (`None`: absent) against `headers` at `now`.
    pub fn verify(
        &self,
        value: Option<&str>,
        headers: SignedHeaders<'_>,
        now: u64,
    ) -> Result<(), AuthError> {
        let value = value.ok_or(AuthError::Missing)?;
        let mut parts = value.split(' ');
        let (Some(VERSION), Some(stamp), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let stamp: u64 = stamp.parse().map_err(|_| AuthError::Malformed)?;
        let tag = unhex(tag).ok_or(AuthError::Malformed)?;
        if stamp.abs_diff(now) > MAX_SKEW_SECS {
            return Err(AuthError::Stale);
        }
        hmac::verify(&self.key, message(headers, stamp).as_bytes(), &tag)
            .map_err(|_| AuthError::Mismatch)
    }
}

/// Seconds since the Unix epoch, for [`RouterAuth::sign`] and [`RouterAuth::verify`].
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn message(h: SignedHeaders<'_>, stamp: u64) -> String {
    format!(
        "wsring-router-{VERSION}\n{stamp}\n{}\n{}\n{}",
        h.conn, h.key, h.ring_version
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: SignedHeaders<'static> = SignedHeaders {
        conn: "router-a-17",
        key: "alice",
        ring_version: "8",
    };

    #[test]
    fn a_signature_verifies_with_the_same_token_and_headers_only() {
        let auth = RouterAuth::new("s3cret");
        let value = auth.sign(HEADERS, 1_000);
        assert!(value.starts_with("v1 1000 "), "{value}");
        assert_eq!(auth.verify(Some(&value), HEADERS, 1_000), Ok(()));
        assert_eq!(
            auth.verify(Some(&value), HEADERS, 1_000 + MAX_SKEW_SECS),
            Ok(())
        );

        let other_token = RouterAuth::new("another");
        assert_eq!(
            other_token.verify(Some(&value), HEADERS, 1_000),
            Err(AuthError::Mismatch)
        );
        for changed in [
            SignedHeaders {
                conn: "router-b-17",
                ..HEADERS
            },
            SignedHeaders {
                key: "bob",
                ..HEADERS
            },
            SignedHeaders {
                ring_version: "9",
                ..HEADERS
            },
        ] {
            assert_eq!(
                auth.verify(Some(&value), changed, 1_000),
                Err(AuthError::Mismatch)
            );
        }
    }

    #[test]
    fn signed_headers_carry_the_values_and_their_signature() {
        let auth = RouterAuth::new("s3cret");
        let [conn, key, version, (name, signature)] = auth.signed_headers(HEADERS, 1_000);
        assert_eq!(conn, (HEADER_CONN, "router-a-17".to_string()));
        assert_eq!(key, (HEADER_KEY, "alice".to_string()));
        assert_eq!(version, (HEADER_RING_VERSION, "8".to_string()));
        assert_eq!(name, HEADER_AUTH);
        assert_eq!(auth.verify(Some(&signature), HEADERS, 1_000), Ok(()));
    }

    #[test]
    fn missing_malformed_and_stale_signatures_are_refused() {
        let auth = RouterAuth::new("s3cret");
        assert_eq!(auth.verify(None, HEADERS, 1), Err(AuthError::Missing));
        for bad in [
            "",
            "v1",
            "v1 10",
            "v2 10 00",
            "v1 x 00",
            "v1 10 0g",
            "v1 10 0",
            "v1 10 00 extra",
        ] {
            assert_eq!(
                auth.verify(Some(bad), HEADERS, 10),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
        let old = auth.sign(HEADERS, 1_000);
        assert_eq!(
            auth.verify(Some(&old), HEADERS, 1_000 + MAX_SKEW_SECS + 1),
            Err(AuthError::Stale)
        );
        let future = auth.sign(HEADERS, 2_000);
        assert_eq!(
            auth.verify(Some(&future), HEADERS, 1_000),
            Err(AuthError::Stale)
        );
    }
}
