//! Command-line flags and environment variables (docs/interfaces.md, "ws-pod flags").
//!
//! [`Config`] is a `clap::Args` so the `ws-pod` binary and the `wsring pod`
//! subcommand of the local launcher parse exactly the same flags. Everything
//! derived from it (token, pod name, upstream URL, WebSocket limits) is checked
//! once at start-up by [`Config::resolve`], so a bad flag stops the process with
//! a clear message instead of failing the first connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wsring_core::redis_args::RedisArgs;

use crate::Error;

/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8081";
/// Default `--admin-listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9091";
/// Default `--cluster`.
pub const DEFAULT_CLUSTER: &str = "wsring";
/// Default `--max-message-bytes` (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default `--drain-timeout-ms`.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Default `--handshake-timeout-ms`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Bytes read from a socket at a time. tungstenite allocates this eagerly for
/// every connection (its default is 128 KiB), so it is what an idle connection
/// costs: 4 KiB keeps 10k idle connections at ~40 MiB of read buffers, and a
/// large frame still gets one allocation of its full size when its header says so.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// ws-pod configuration; every flag can also be set through its environment variable.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// WebSocket listener (reached by routers only).
    #[arg(long, env = "WSRING_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Admin listener: health, metrics, connections, push API.
    #[arg(long, env = "WSRING_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,

    /// The ring member name (downward API `metadata.name`) [default: hostname].
    #[arg(long, env = "WSRING_POD_NAME")]
    pub pod_name: Option<String>,

    /// Cluster name, prefix of the Redis channel.
    #[arg(long, env = "WSRING_CLUSTER", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,

    /// `--redis-url`, `--redis-password`, `--redis-ca-file`.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// WebSocket URL of the app container (`ws://127.0.0.1:PORT`); none = built-in echo app.
    #[arg(long, env = "WSRING_UPSTREAM")]
    pub upstream: Option<String>,

    /// Bigger messages or frames are refused with close 1009; also the push API body limit.
    #[arg(long, env = "WSRING_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Bearer token of the push API.
    #[arg(
        long,
        env = "WSRING_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// File holding the bearer token (a mounted Secret); surrounding whitespace is ignored.
    #[arg(long, env = "WSRING_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// On SIGTERM: close every connection with 1001 and wait at most this long for them.
    #[arg(long, env = "WSRING_DRAIN_TIMEOUT_MS", default_value_t = DEFAULT_DRAIN_TIMEOUT_MS)]
    pub drain_timeout_ms: u64,

    /// A connection must finish its upgrade request (HTTP/1.1) or send the
    /// HTTP/2 preface within this time, or it is dropped.
    #[arg(long, env = "WSRING_HANDSHAKE_TIMEOUT_MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS)]
    pub handshake_timeout_ms: u64,
}

impl Default for Config {
    /// The flag defaults, without a token (tests and the launcher set one).
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            admin_listen: DEFAULT_ADMIN_LISTEN.parse().expect("valid default"),
            pod_name: None,
            cluster: DEFAULT_CLUSTER.to_string(),
            redis: RedisArgs::default(),
            upstream: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            token: None,
            token_file: None,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
        }
    }
}

/// The configuration after every check: what the running pod actually uses.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Ring member name, sent back as `x-wsring-pod`.
    pub pod_name: String,
    /// Redis channel prefix.
    pub cluster: String,
    /// The Redis client (password override and private CA applied); not connected.
    pub redis: Option<redis::Client>,
    /// Upstream app URL (`ws://…`, no path: the client's path is appended).
    pub upstream: Option<String>,
    /// Push API bearer token.
    pub token: String,
    /// Message/frame size limit.
    pub max_message_bytes: usize,
    /// Bound of the SIGTERM drain.
    pub drain_timeout: Duration,
    /// Bound of an upgrade request (or of the wait for the HTTP/2 preface).
    pub handshake_timeout: Duration,
}

impl Config {
    /// Check every flag and derive the values the pod runs with.
    pub(crate) fn resolve(&self) -> Result<Settings, Error> {
        if self.max_message_bytes == 0 {
            return Err(Error::Config(
                "--max-message-bytes must be at least 1".into(),
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(Error::Config(
                "--handshake-timeout-ms must be at least 1".into(),
            ));
        }
        let pod_name = match &self.pod_name {
            Some(name) if name.trim().is_empty() => {
                return Err(Error::Config("--pod-name is empty".into()))
            }
            Some(name) => name.trim().to_string(),
            None => hostname(),
        };
        Ok(Settings {
            pod_name,
            cluster: self.cluster.clone(),
            redis: self
                .redis
                .client()
                .map_err(|e| Error::Config(e.to_string()))?,
            upstream: self.upstream.as_deref().map(check_upstream).transpose()?,
            token: self.token()?,
            max_message_bytes: self.max_message_bytes,
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
        })
    }

    /// The bearer token from `--token` or `--token-file`; one of them is required.
    fn token(&self) -> Result<String, Error> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| Error::TokenFile { path: path.clone(), source })?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(Error::Config(
                    "a push API token is required: set --token (WSRING_TOKEN) or --token-file (WSRING_TOKEN_FILE)"
                        .into(),
                ))
            }
        };
        if token.is_empty() {
            return Err(Error::Config("the push API token is empty".into()));
        }
        Ok(token)
    }
}

impl Settings {
    /// tungstenite limits for client and upstream connections: the message and frame
    /// limits are both `--max-message-bytes` (so a single huge frame is refused from its
    /// header, before its payload is buffered), and the buffers are sized for many idle
    /// connections rather than for throughput.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            // Every send is followed by a flush anyway; 0 writes frames straight through
            // instead of keeping a 128 KiB staging buffer per connection.
            .write_buffer_size(0)
            // Bounds what a peer that stopped reading can make us hold.
            .max_write_buffer_size(self.max_message_bytes.saturating_mul(2).max(64 * 1024))
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

/// `ws://host:port` (a trailing `/` is dropped: the client's path is appended to it).
fn check_upstream(url: &str) -> Result<String, Error> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        Error::Config(format!(
            "--upstream must be a ws:// URL of the app container, got {url:?}"
        ))
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#']) {
        return Err(Error::Config(format!(
            "--upstream must be ws://HOST:PORT without a path (the client's path is passed on), got {url:?}"
        )));
    }
    Ok(format!("ws://{authority}"))
}

/// The kernel's host name: the pod name in a StatefulSet when the downward API is not wired.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ws-pod".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token() -> Config {
        Config {
            token: Some("t0ken\n".into()),
            ..Config::default()
        }
    }

    #[test]
    fn token_is_required() {
        let err = Config::default().resolve().unwrap_err();
        assert!(err.to_string().contains("--token"), "{err}");
        assert_eq!(with_token().resolve().unwrap().token, "t0ken");
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("ws-pod-token-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let config = Config {
            token_file: Some(path.clone()),
            ..Config::default()
        };
        assert_eq!(config.resolve().unwrap().token, "from-file");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(config.resolve(), Err(Error::TokenFile { .. })));
    }

    #[test]
    fn upstream_must_be_ws_without_path() {
        let ok = Config {
            upstream: Some("ws://127.0.0.1:8080/".into()),
            ..with_token()
        };
        assert_eq!(
            ok.resolve().unwrap().upstream.as_deref(),
            Some("ws://127.0.0.1:8080")
        );
        for bad in [
            "http://127.0.0.1:8080",
            "ws://",
            "ws://h:1/app",
            "127.0.0.1:8080",
        ] {
            let config = Config {
                upstream: Some(bad.into()),
                ..with_token()
            };
            assert!(config.resolve().is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_flags_are_checked_at_start() {
        // The rules are wsring_core::redis_args'; here: they apply and name the flag.
        let bad = Config {
            redis: RedisArgs::url("http://x"),
            ..with_token()
        };
        let err = bad.resolve().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("--redis-url"), "{err}");
        let good = Config {
            redis: RedisArgs::url("redis://127.0.0.1:6379"),
            ..with_token()
        };
        assert!(good.resolve().unwrap().redis.is_some());
    }

    #[test]
    fn websocket_limits_follow_max_message_bytes() {
        let settings = Config {
            max_message_bytes: 1000,
            ..with_token()
        }
        .resolve()
        .unwrap();
        let ws = settings.websocket_config();
        assert_eq!(ws.max_message_size, Some(1000));
        assert_eq!(ws.max_frame_size, Some(1000));
        assert!(ws.max_write_buffer_size > ws.write_buffer_size);
        assert_eq!(ws.read_buffer_size, READ_BUFFER_BYTES);
    }

    #[test]
    fn zero_limits_are_refused_at_start() {
        for (config, flag) in [
            (
                Config {
                    max_message_bytes: 0,
                    ..with_token()
                },
                "--max-message-bytes",
            ),
            (
                Config {
                    handshake_timeout_ms: 0,
                    ..with_token()
                },
                "--handshake-timeout-ms",
            ),
        ] {
            let err = config.resolve().unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
        let settings = with_token().resolve().unwrap();
        assert_eq!(settings.handshake_timeout, Duration::from_secs(10));
    }
}
