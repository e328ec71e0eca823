//! The one bearer-token rule of every wsring API that needs a token (router
//! admin and push, ws-pod push, the local launcher's control API), and the
//! one way tokens are made.
//!
//! `Authorization: Bearer <token>`: the scheme is case-insensitive (RFC 9110
//! §11.1, so `bearer` works everywhere), surrounding spaces of the token are
//! ignored, and the token is compared in constant time.

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Whether an `Authorization` header value carries `token`.
pub fn authorizes(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header.and_then(|v| std::str::from_utf8(v).ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// A fresh 256-bit token from the operating system's random source, hex
/// encoded (safe in headers, URLs and environment variables).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER  s3cret ",
            " Bearer s3cret",
        ] {
            assert!(authorizes(Some(ok.as_bytes()), "s3cret"), "{ok:?}");
        }
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer",
            "",
        ] {
            assert!(!authorizes(Some(bad.as_bytes()), "s3cret"), "{bad:?}");
        }
        assert!(!authorizes(None, "s3cret"));
        assert!(
            !authorizes(Some(b"Bearer "), ""),
            "an empty token never authorizes"
        );
        assert!(!authorizes(Some(b"Bearer \xff"), "s3cret"));
    }

    #[test]
    fn tokens_are_random_and_256_bits() {
        let a = random_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_token());
    }
}
