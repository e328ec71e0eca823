//! Publishing control messages to Redis.
//!
//! One lazily connected, self-reconnecting [`ConnectionManager`]: the router
//! starts (and keeps routing) while Redis is down, and the first publish after
//! Redis comes back reconnects. Publishing is best effort by design: Redis
//! pub/sub is at-most-once anyway, and every reset is backed by the router's
//! own close after the reset timeout.
//!
//! `rediss://` verifies the server certificate against the system roots, or,
//! with `--redis-ca-file`, against exactly the CAs in that PEM file (the
//! private CA of an in-cluster Redis).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::Error;

/// How long one connection attempt or one command may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis publisher.
#[derive(Clone)]
pub struct Publisher {
    conn: ConnectionManager,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `url` (`redis://` or `rediss://`), with `password`
    /// replacing the URL's password if given and `ca_pem` (PEM certificates)
    /// as the only trusted roots of a `rediss://` server. Does not connect yet;
    /// must be called inside a Tokio runtime.
    pub fn new(url: &str, password: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Self, Error> {
        let client = client(url, password, ca_pem)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Publisher { conn })
    }

    /// `PUBLISH channel payload`; returns how many subscribers received it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await?;
        Ok(receivers)
    }
}

/// The Redis client for the flags: URL, password override, private CA.
fn client(
    url: &str,
    password: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> Result<redis::Client, Error> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(Error::Config(format!(
            "--redis-url must start with redis:// or rediss://, got {:?}",
            redact(url)
        )));
    }
    let mut info = url
        .into_connection_info()
        .map_err(|e| Error::Config(format!("--redis-url {:?} is invalid: {e}", redact(url))))?;
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let Some(ca_pem) = ca_pem else {
        return Ok(redis::Client::open(info)?);
    };
    if !url.starts_with("rediss://") {
        return Err(Error::Config(
            "--redis-ca-file is only used with a rediss:// --redis-url".into(),
        ));
    }
    check_ca(ca_pem)?;
    let tls = TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    };
    redis::Client::build_with_tls(info, tls)
        .map_err(|e| Error::Config(format!("--redis-ca-file is unusable: {e}")))
}

/// A CA file must hold at least one parseable PEM certificate: an empty trust
/// store would only show up as failed connections later.
fn check_ca(ca_pem: &[u8]) -> Result<(), Error> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        cert.map_err(|e| Error::Config(format!("--redis-ca-file is not valid PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::Config(
            "--redis-ca-file holds no PEM certificate".into(),
        ));
    }
    Ok(())
}

/// The URL without its password, for error messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://u:secret@host:6379/0"),
            "redis://u:***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[tokio::test]
    async fn only_redis_urls_are_accepted() {
        let err = Publisher::new("http://u:secret@host", None, None).unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Publisher::new("redis://127.0.0.1:1", Some("pw"), None).is_ok());
        assert!(Publisher::new("rediss://example.invalid:6380", None, None).is_ok());
    }

    #[tokio::test]
    async fn ca_files_are_checked_at_start() {
        let not_pem = Publisher::new("rediss://h:6380", None, Some(b"hello")).unwrap_err();
        assert!(
            not_pem.to_string().contains("no PEM certificate"),
            "{not_pem}"
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let bad = Publisher::new("rediss://h:6380", None, Some(garbage)).unwrap_err();
        assert!(matches!(bad, Error::Config(_)), "{bad}");
        let plain = Publisher::new("redis://h:6379", None, Some(TEST_CA)).unwrap_err();
        assert!(plain.to_string().contains("rediss://"), "{plain}");
        assert!(Publisher::new("rediss://h:6380", Some("pw"), Some(TEST_CA)).is_ok());
    }

    /// A self-signed certificate, only parsed here (the end-to-end TLS test
    /// generates its own CA and server certificate).
    const TEST_CA: &[u8] = include_bytes!("../tests/data/test-ca.pem");
}
