//! The bearer token Secret `NAME-token`: created once with a random token and
//! never rewritten, so rotating it is an explicit act (delete the Secret and
//! restart the pods), never a side effect of a reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Secret};
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{child_meta, secret_env, Component, Names};
use crate::crd::WebSocketCluster;

/// Key of the token inside the Secret.
pub const TOKEN_KEY: &str = "token";

/// A fresh 256-bit token from the OS random source, hex encoded
/// ([`wsring_core::bearer::random_token`], the one way wsring makes tokens).
pub fn generate_token() -> String {
    wsring_core::bearer::random_token()
}

/// The Secret to create when none exists.
pub fn token_secret(wsc: &WebSocketCluster, token: &str) -> Secret {
    Secret {
        metadata: child_meta(wsc, Names::token_secret(&wsc.name_any()), Component::Router),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// `WSRING_TOKEN` from the cluster's token Secret (same token for routers and pods).
pub fn token_env(wsc: &WebSocketCluster) -> EnvVar {
    secret_env(
        "WSRING_TOKEN",
        Names::token_secret(&wsc.name_any()),
        TOKEN_KEY.to_string(),
    )
}

/// The token stored in an existing Secret, if it holds a usable one.
pub fn read_token(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(TOKEN_KEY)?;
    let token = String::from_utf8(bytes.0.clone()).ok()?;
    let token = token.trim().to_string();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_long() {
        let a = generate_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, generate_token());
    }

    #[test]
    fn secret_round_trips_the_token() {
        let secret = token_secret(&WebSocketCluster::test(), "abc");
        assert_eq!(secret.metadata.name.as_deref(), Some("chat-token"));
        assert_eq!(read_token(&secret).as_deref(), Some("abc"));
        assert_eq!(read_token(&Secret::default()), None);
    }
}
