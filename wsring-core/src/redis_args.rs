//! Redis connection settings shared by the router and ws-pod (feature
//! `redis-client`): the three flags and the one way to turn them into a
//! client, so both processes accept and refuse the same settings with the
//! same messages.
//!
//! `rediss://` verifies the server certificate against the system roots, or,
//! with `--redis-ca-file`, against exactly the CAs in that PEM file (the
//! private CA of an in-cluster Redis). `redis+sentinel://` names a Sentinel
//! group, `redis+cluster://` the seed nodes of a Redis Cluster
//! ([`crate::redis_target`]). Passwords never appear in messages.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::redis_target::{RedisTarget, CLUSTER_SCHEME, SENTINEL_SCHEME};
use crate::Error;

/// `--redis-url`, `--redis-password`, `--redis-ca-file` (each also an
/// environment variable); flatten into a clap parser with `#[command(flatten)]`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisArgs {
    /// `redis://`, `rediss://`, `redis+sentinel://HOST:PORT[,…]/PRIMARY` or
    /// `redis+cluster://HOST:PORT[,…]` URL of the reset channels (and the history); without it moved
    /// connections are closed by the routers themselves at the reset timeout.
    #[arg(long = "redis-url", env = "WSRING_REDIS_URL")]
    pub url: Option<String>,

    /// Overrides the password in the Redis URL (kept in a Secret in the cluster).
    #[arg(
        long = "redis-password",
        env = "WSRING_REDIS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// PEM file of the CA(s) that signed a `rediss://` server's certificate
    /// (in-cluster Redis with a private CA); when set, only these are trusted.
    #[arg(long = "redis-ca-file", env = "WSRING_REDIS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl RedisArgs {
    /// Settings for `url` alone (no password override, system roots).
    pub fn url(url: impl Into<String>) -> Self {
        RedisArgs {
            url: Some(url.into()),
            ..RedisArgs::default()
        }
    }

    /// The client for these settings, not connected yet (connection errors
    /// show up on use, so a process starts while Redis is down); `None`
    /// without a URL. A bad URL, a CA file that cannot be read or holds no
    /// certificate, or a CA with a plain `redis://` URL is an error now.
    pub fn target(&self) -> Result<Option<RedisTarget>, Error> {
        let Some(url) = &self.url else {
            if self.password.is_some() || self.ca_file.is_some() {
                tracing::warn!("--redis-password/--redis-ca-file set without --redis-url; ignored");
            }
            return Ok(None);
        };
        type Parse = fn(&str, Option<&str>) -> Result<RedisTarget, Error>;
        let several_nodes: Option<(Parse, &str)> = if url.starts_with(SENTINEL_SCHEME) {
            Some((RedisTarget::parse_sentinel_url, "Sentinel groups"))
        } else if url.starts_with(CLUSTER_SCHEME) {
            Some((RedisTarget::parse_cluster_url, "cluster nodes"))
        } else {
            None
        };
        if let Some((parse, nodes)) = several_nodes {
            if self.ca_file.is_some() {
                return Err(Error::RedisConfig(format!(
                    "--redis-ca-file is only used with a rediss:// --redis-url ({nodes} are reached without TLS)"
                )));
            }
            let password = self.password.as_deref().filter(|p| !p.is_empty());
            return parse(url, password).map(Some);
        }
        self.client(url).map(|c| Some(RedisTarget::single(c)))
    }

    /// The client of one server at `url`.
    fn client(&self, url: &str) -> Result<redis::Client, Error> {
        let bad = |msg: String| Error::RedisConfig(msg);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(bad(format!(
                "--redis-url must start with redis://, rediss://, {SENTINEL_SCHEME} or {CLUSTER_SCHEME}, got {:?}",
                redact(url)
            )));
        }
        let mut info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| bad(format!("--redis-url {:?} is invalid: {e}", redact(url))))?;
        if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let Some(path) = &self.ca_file else {
            return redis::Client::open(info)
                .map_err(|e| bad(format!("--redis-url {:?} is unusable: {e}", redact(url))));
        };
        if !url.starts_with("rediss://") {
            return Err(bad(
                "--redis-ca-file is only used with a rediss:// --redis-url".into(),
            ));
        }
        let pem = std::fs::read(path).map_err(|e| {
            bad(format!(
                "cannot read --redis-ca-file {}: {e}",
                path.display()
            ))
        })?;
        check_ca(&pem)?;
        let tls = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        redis::Client::build_with_tls(info, tls)
            .map_err(|e| bad(format!("--redis-ca-file is unusable: {e}")))
    }
}

/// A CA file must hold at least one parseable PEM certificate: an empty trust
/// store would only show up as failed connections later.
fn check_ca(pem: &[u8]) -> Result<(), Error> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| Error::RedisConfig(format!("--redis-ca-file is not valid PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::RedisConfig(
            "--redis-ca-file holds no PEM certificate".into(),
        ));
    }
    Ok(())
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
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

    /// A self-signed certificate, only parsed here (the end-to-end TLS test
    /// generates its own CA and server certificate).
    const TEST_CA: &[u8] = include_bytes!("../tests/data/test-ca.pem");

    fn with_ca(url: &str, pem: &[u8]) -> (RedisArgs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        let args = RedisArgs {
            url: Some(url.into()),
            password: None,
            ca_file: Some(path),
        };
        (args, dir)
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://u:secret@host:6379/0"),
            "redis://u:***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let err = RedisArgs::url("http://u:secret@host").target().unwrap_err();
        assert!(matches!(err, Error::RedisConfig(_)));
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn only_redis_urls_are_accepted() {
        assert!(RedisArgs::url("redis://127.0.0.1:1")
            .target()
            .unwrap()
            .is_some());
        assert!(RedisArgs::url("rediss://example.invalid:6380")
            .target()
            .is_ok());
        assert!(RedisArgs::url("redis://host:notaport").target().is_err());
        assert_eq!(RedisArgs::default().target().unwrap().map(|_| ()), None);
        assert!(RedisArgs::url("redis+sentinel://s1:26379,s2/mymaster")
            .target()
            .unwrap()
            .is_some_and(|t| t.is_sentinel()));
        let (sentinel_with_ca, _dir) = with_ca("redis+sentinel://s1/m", TEST_CA);
        let err = sentinel_with_ca.target().unwrap_err().to_string();
        assert!(err.contains("Sentinel"), "{err}");
        assert!(RedisArgs::url("redis+cluster://n1:7000,n2:7001")
            .target()
            .unwrap()
            .is_some_and(|t| t.is_cluster()));
        let (cluster_with_ca, _cluster_dir) = with_ca("redis+cluster://n1:7000", TEST_CA);
        let err = cluster_with_ca.target().unwrap_err().to_string();
        assert!(
            err.contains("cluster nodes are reached without TLS"),
            "{err}"
        );
        let err = RedisArgs::url("http://n1")
            .target()
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis+cluster://"), "{err}");
    }

    #[tokio::test]
    async fn password_overrides_the_urls() {
        let args = RedisArgs {
            password: Some("new".into()),
            ..RedisArgs::url("redis://:old@127.0.0.1:6379")
        };
        let client = args.target().unwrap().unwrap().primary().await.unwrap();
        let info = client.get_connection_info();
        assert_eq!(info.redis_settings().password(), Some("new"));
    }

    #[test]
    fn ca_files_are_checked_at_start() {
        let (args, _dir) = with_ca("rediss://h:6380", b"hello");
        let err = args.target().unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let garbage = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let (args, _dir) = with_ca("rediss://h:6380", garbage);
        assert!(matches!(args.target(), Err(Error::RedisConfig(_))));
        let (args, _dir) = with_ca("redis://h:6379", TEST_CA);
        let err = args.target().unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let (args, _dir) = with_ca("rediss://h:6380", TEST_CA);
        assert!(args.target().unwrap().is_some());
        let missing = RedisArgs {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisArgs::url("rediss://h:6380")
        };
        let err = missing.target().unwrap_err();
        assert!(
            err.to_string().contains("cannot read --redis-ca-file"),
            "{err}"
        );
    }
}
