//! Command-line flags and environment variables (docs/interfaces.md, "ws-pod flags").
//!
//! [`Config`] is a `clap::Args` so the `ws-pod` binary and the `wsring pod`
//! subcommand of the local launcher parse exactly the same flags. Everything
//! derived from it (token, pod name, upstream URL, WebSocket limits) is checked
//! once at start-up by `Config::resolve`, so a bad flag stops the process with
//! a clear message instead of failing the first connection.

use std::time::Duration;

use clap::Args;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wsring_core::cluster_args::ClusterArgs;
use wsring_core::listen_args::{ListenArgs, PodPorts};
use wsring_core::protocol::pod_channel;
use wsring_core::redis_args::RedisArgs;
use wsring_core::router_auth::RouterAuth;
use wsring_core::token_args::TokenArgs;

use crate::handshake::Admission;
use crate::history::{HistorySettings, MAX_HISTORY_REPLICAS, MAX_HISTORY_SIZE};
use crate::Error;

/// Default `--max-message-bytes` (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default `--drain-timeout-ms`.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Default `--handshake-timeout-ms`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Default `--history-ttl`.
pub const DEFAULT_HISTORY_TTL: &str = "5m";

/// Bytes read from a socket at a time. tungstenite allocates this eagerly for
/// every connection (its default is 128 KiB), so it is what an idle connection
/// costs: 4 KiB keeps 10k idle connections at ~40 MiB of read buffers, and a
/// large frame still gets one allocation of its full size when its header says so.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// ws-pod configuration; every flag can also be set through its environment variable.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// `--listen` (reached by routers only), `--admin-listen`.
    #[command(flatten)]
    pub listeners: ListenArgs<PodPorts>,

    /// The ring member name (downward API `metadata.name`) [default: hostname].
    #[arg(long, env = "WSRING_POD_NAME")]
    pub pod_name: Option<String>,

    /// `--cluster`, `--namespace`.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// `--redis-url`, `--redis-password`, `--redis-ca-file`.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// WebSocket URL of the app container (`ws://127.0.0.1:PORT`); none = built-in echo app.
    #[arg(long, env = "WSRING_UPSTREAM")]
    pub upstream: Option<String>,

    /// Bigger messages or frames are refused with close 1009; also the push API body limit.
    #[arg(long, env = "WSRING_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// `--token` or `--token-file`: the bearer token of the connection list
    /// and the push API, also the key of the routers' signatures.
    #[command(flatten)]
    pub token: TokenArgs,

    /// Longest routing key (decoded) in `x-wsring-key`; keep it at least the
    /// router's `--max-key-bytes`.
    #[arg(long, env = "WSRING_MAX_KEY_BYTES", default_value_t = wsring_core::protocol::DEFAULT_MAX_KEY_BYTES)]
    pub max_key_bytes: usize,

    /// Also accept connections without router headers (local debugging):
    /// they get a local id and the `key` query parameter. Off by default, so
    /// only a router of this cluster can register connections under a key.
    #[arg(long, env = "WSRING_ALLOW_DIRECT", default_value_t = false)]
    pub allow_direct: bool,

    /// Most WebSocket connections and HTTP/2 streams open at once (an HTTP/2
    /// connection counts too). Default: the open-files limit minus 256.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections and streams per client (router) address; 0: no cap.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 0)]
    pub max_connections_per_client: usize,

    /// Once the first byte of a message (or of its first fragment) arrived,
    /// the whole message must arrive within this, else the client is closed
    /// with 1008: a partial message cannot sit in the pod for ever.
    #[arg(long, env = "WSRING_MESSAGE_TIMEOUT_MS", default_value_t = 30_000)]
    pub message_timeout_ms: u64,

    /// Close (1001) a connection that sent nothing, not even a ping, for this
    /// long; 0: never (many apps have quiet clients).
    #[arg(long, env = "WSRING_IDLE_TIMEOUT_MS", default_value_t = 0)]
    pub idle_timeout_ms: u64,

    /// WebSockets one router's HTTP/2 connection may carry at once.
    #[arg(long, env = "WSRING_H2_MAX_STREAMS", default_value_t = 16_384)]
    pub h2_max_streams: u32,

    /// HTTP/2 connection receive window: what one router connection can
    /// have buffered in this pod (per stream: 256 KiB).
    #[arg(long, env = "WSRING_H2_CONNECTION_WINDOW_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub h2_connection_window_bytes: u32,

    /// On SIGTERM, first keep serving for this long with `/readyz` answering
    /// 503: the pod leaves the ring (its endpoint is no longer ready), so the
    /// routers' resets close its moved connections with 4001 before the drain
    /// closes the rest with 1001.
    #[arg(long, env = "WSRING_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,

    /// On SIGTERM: close every connection with 1001 and wait at most this long for them.
    #[arg(long, env = "WSRING_DRAIN_TIMEOUT_MS", default_value_t = DEFAULT_DRAIN_TIMEOUT_MS)]
    pub drain_timeout_ms: u64,

    /// A connection must finish its upgrade request (HTTP/1.1) or send the
    /// HTTP/2 preface within this time, or it is dropped.
    #[arg(long, env = "WSRING_HANDSHAKE_TIMEOUT_MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS)]
    pub handshake_timeout_ms: u64,

    /// Pushes kept per key in Redis, so `wsring.v1` clients resume without a
    /// gap; 0: no history (pushes are delivered live only, as without it).
    /// Needs `--redis-url`.
    #[arg(long, env = "WSRING_HISTORY_SIZE", default_value_t = 0)]
    pub history_size: usize,

    /// How long a key's pushes are kept after its last push (`30s`, `5m`, `1h`).
    #[arg(long, env = "WSRING_HISTORY_TTL", default_value = DEFAULT_HISTORY_TTL)]
    pub history_ttl: String,

    /// Replicas that must have a push (Redis `WAIT`) before it is delivered
    /// and answered, so a Redis failover loses no push a client saw; 0: none.
    #[arg(long, env = "WSRING_HISTORY_REPLICAS", default_value_t = 0)]
    pub history_replicas: usize,
}

impl Default for Config {
    /// The flag defaults, without a token (tests and the launcher set one).
    fn default() -> Self {
        Config {
            listeners: ListenArgs::default(),
            pod_name: None,
            cluster: ClusterArgs::default(),
            redis: RedisArgs::default(),
            upstream: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            token: TokenArgs::default(),
            max_key_bytes: wsring_core::protocol::DEFAULT_MAX_KEY_BYTES,
            allow_direct: false,
            max_connections: None,
            max_connections_per_client: 0,
            message_timeout_ms: 30_000,
            idle_timeout_ms: 0,
            h2_max_streams: 16_384,
            h2_connection_window_bytes: 64 * 1024 * 1024,
            shutdown_delay_ms: 0,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            history_size: 0,
            history_ttl: DEFAULT_HISTORY_TTL.to_string(),
            history_replicas: 0,
        }
    }
}

/// The configuration after every check: what the running pod actually uses.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Ring member name, sent back as `x-wsring-pod`.
    pub pod_name: String,
    /// The Redis channel this pod listens on for resets.
    pub channel: String,
    /// The Redis server or Sentinel group (password override and private CA
    /// applied); not connected.
    pub redis: Option<wsring_core::redis_target::RedisTarget>,
    /// Upstream app URL (`ws://…`, no path: the client's path is appended).
    pub upstream: Option<String>,
    /// Push API bearer token, also the key of the routers' signatures.
    pub token: String,
    /// What every upgrade request must satisfy.
    pub admission: Admission,
    /// Message/frame size limit.
    pub max_message_bytes: usize,
    /// Caps on open connections and streams.
    pub limits: std::sync::Arc<wsring_core::conn_limit::ConnectionLimits>,
    /// The message deadline.
    pub message_timeout: Duration,
    /// The idle deadline, if any.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub h2_max_streams: u32,
    /// HTTP/2 connection receive window.
    pub h2_connection_window: u32,
    /// Serving time between SIGTERM (readiness 503) and the drain.
    pub shutdown_delay: Duration,
    /// Bound of the SIGTERM drain.
    pub drain_timeout: Duration,
    /// Bound of an upgrade request (or of the wait for the HTTP/2 preface).
    pub handshake_timeout: Duration,
    /// Per-key history, if on.
    pub history: Option<HistorySettings>,
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
        if self.message_timeout_ms == 0 {
            return Err(Error::Config(
                "--message-timeout-ms must be at least 1".into(),
            ));
        }
        if self.h2_max_streams == 0 || self.h2_connection_window_bytes < 65_535 {
            return Err(Error::Config(
                "--h2-max-streams must be at least 1 and --h2-connection-window-bytes at least 65535".into(),
            ));
        }
        if self.max_key_bytes == 0 {
            return Err(Error::Config("--max-key-bytes must be at least 1".into()));
        }
        self.cluster
            .check()
            .map_err(|e| Error::Config(e.to_string()))?;
        let history = self.history()?;
        let token = self
            .token
            .resolve()
            .map_err(|e| Error::Config(e.to_string()))?;
        let pod_name = match &self.pod_name {
            Some(name) if name.trim().is_empty() => {
                return Err(Error::Config("--pod-name is empty".into()))
            }
            Some(name) => name.trim().to_string(),
            None => hostname(),
        };
        Ok(Settings {
            channel: pod_channel(&self.cluster.namespace, &self.cluster.name, &pod_name),
            pod_name,
            redis: self
                .redis
                .target()
                .map_err(|e| Error::Config(e.to_string()))?,
            upstream: self.upstream.as_deref().map(check_upstream).transpose()?,
            admission: Admission {
                auth: RouterAuth::new(&token),
                max_key_bytes: self.max_key_bytes,
                allow_direct: self.allow_direct,
                speaks_v1: history.is_some(),
            },
            token,
            max_message_bytes: self.max_message_bytes,
            limits: wsring_core::conn_limit::ConnectionLimits::new(
                self.max_connections
                    .unwrap_or_else(|| wsring_core::conn_limit::from_open_files_limit(1)),
                self.max_connections_per_client,
            ),
            message_timeout: Duration::from_millis(self.message_timeout_ms),
            idle_timeout: (self.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(self.idle_timeout_ms)),
            h2_max_streams: self.h2_max_streams,
            h2_connection_window: self.h2_connection_window_bytes,
            shutdown_delay: Duration::from_millis(self.shutdown_delay_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            history,
        })
    }

    /// `--history-size` and `--history-ttl`, checked; `None` when off.
    fn history(&self) -> Result<Option<HistorySettings>, Error> {
        let ttl = humantime::parse_duration(self.history_ttl.trim()).map_err(|e| {
            Error::Config(format!(
                "--history-ttl {:?} is not a duration like 30s, 5m or 1h: {e}",
                self.history_ttl
            ))
        })?;
        if self.history_size == 0 {
            return Ok(None);
        }
        if self.history_size > MAX_HISTORY_SIZE {
            return Err(Error::Config(format!(
                "--history-size {} is over the limit of {MAX_HISTORY_SIZE} pushes per key",
                self.history_size
            )));
        }
        if ttl < Duration::from_secs(1) {
            return Err(Error::Config("--history-ttl must be at least 1s".into()));
        }
        if self.redis.url.is_none() {
            return Err(Error::Config(
                "--history-size needs --redis-url: the history is kept in Redis".into(),
            ));
        }
        if self.history_replicas > MAX_HISTORY_REPLICAS {
            return Err(Error::Config(format!(
                "--history-replicas {} is over {MAX_HISTORY_REPLICAS}",
                self.history_replicas
            )));
        }
        Ok(Some(HistorySettings {
            size: self.history_size,
            ttl,
            replicas: self.history_replicas,
        }))
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
            token: TokenArgs::value("t0ken\n"),
            ..Config::default()
        }
    }

    #[test]
    fn history_flags_are_checked() {
        let with = |size: usize, ttl: &str, redis: Option<&str>| Config {
            history_size: size,
            history_ttl: ttl.into(),
            redis: RedisArgs {
                url: redis.map(str::to_string),
                ..RedisArgs::default()
            },
            ..with_token()
        };
        assert_eq!(with(0, "5m", None).resolve().unwrap().history, None);
        assert!(!with(0, "5m", None).resolve().unwrap().admission.speaks_v1);
        let on = with(100, "90s", Some("redis://127.0.0.1:6379"))
            .resolve()
            .unwrap();
        assert_eq!(
            on.history,
            Some(HistorySettings {
                size: 100,
                ttl: Duration::from_secs(90),
                replicas: 0,
            })
        );
        assert!(on.admission.speaks_v1);
        for (config, flag) in [
            (with(100, "5m", None), "needs --redis-url"),
            (
                with(100, "soon", Some("redis://x")),
                "--history-ttl \"soon\"",
            ),
            (with(0, "soon", None), "--history-ttl"),
            (with(100, "500ms", Some("redis://x")), "at least 1s"),
            (
                with(MAX_HISTORY_SIZE + 1, "5m", Some("redis://x")),
                "over the limit",
            ),
        ] {
            let err = config.resolve().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
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
            token: TokenArgs {
                value: None,
                file: Some(path.clone()),
            },
            ..Config::default()
        };
        assert_eq!(config.resolve().unwrap().token, "from-file");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(config.resolve(), Err(Error::Config(m)) if m.contains("--token-file")));
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
