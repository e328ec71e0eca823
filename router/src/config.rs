//! Command-line flags and environment variables (docs/interfaces.md, "Router flags").
//!
//! [`Config`] is a `clap::Args` so the `wsring-router` binary and the `wsring router`
//! subcommand of the local launcher parse exactly the same flags. What needs
//! the environment (token file, host name, Redis client) is checked once at
//! start-up into the router's `Settings`, as ws-pod does with its own.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wsring_core::cluster_args::ClusterArgs;
use wsring_core::listen_args::{ListenArgs, RouterPorts};
use wsring_core::redis_args::RedisArgs;
use wsring_core::token_args::TokenArgs;

pub use wsring_core::protocol::PodTransport;

use crate::origin::OriginPolicy;
use crate::Error;

/// Where the routing key is read from in the upgrade request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeySource {
    /// Query parameter `?{name}=KEY`.
    Query,
    /// Request header `{name}: KEY`.
    Header,
    /// Path segment after the segment `{name}` (`/rooms/KEY`), or the last one if `name` is empty.
    Path,
    /// Cookie `{name}=KEY`.
    Cookie,
}

/// Router configuration; every flag can also be set through its environment variable.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// `--listen` (the only port behind the Ingress), `--admin-listen`.
    #[command(flatten)]
    pub listeners: ListenArgs<RouterPorts>,

    /// Unique per router replica; prefix of connection ids [default: hostname].
    #[arg(long, env = "WSRING_ROUTER_ID")]
    pub router_id: Option<String>,

    /// `--cluster`, `--namespace`.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// `--redis-url`, `--redis-password`, `--redis-ca-file`.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Where the routing key comes from.
    #[arg(long, env = "WSRING_KEY_SOURCE", value_enum, default_value = "query")]
    pub key_source: KeySource,

    /// Query parameter, header or cookie name; for `path` the segment before the key (empty = last segment).
    #[arg(long, env = "WSRING_KEY_NAME", default_value = "key")]
    pub key_name: String,

    /// Longer keys (after percent-decoding) are refused with 400.
    #[arg(long, env = "WSRING_MAX_KEY_BYTES", default_value_t = wsring_core::protocol::DEFAULT_MAX_KEY_BYTES)]
    pub max_key_bytes: usize,

    /// Browser origins allowed to open WebSockets (comma-separated
    /// `scheme://host[:port]`, `scheme://*.domain[:port]` for subdomains);
    /// empty = every origin. Others get 403 `origin_not_allowed` (docs/interfaces.md,
    /// "Origin allow-list").
    #[arg(
        long,
        env = "WSRING_ALLOWED_ORIGINS",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub allowed_origins: Vec<String>,

    /// With `--allowed-origins`: also refuse upgrades that carry no `Origin`
    /// header (non-browser clients); by default they are let through.
    #[arg(long, env = "WSRING_REQUIRE_ORIGIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_origin: bool,

    /// `--token` or `--token-file`: the bearer token of the admin API (ring,
    /// lookup, connections, push), also the key of the signatures to pods.
    #[command(flatten)]
    pub token: TokenArgs,

    /// Ring JSON file (the mounted ConfigMap), re-read when its content changes.
    #[arg(long, env = "WSRING_RING_FILE")]
    pub ring_file: Option<PathBuf>,

    /// Watch this ConfigMap (key `ring.json`, namespace from `POD_NAMESPACE`) through the Kubernetes API.
    #[arg(long, env = "WSRING_RING_CONFIGMAP")]
    pub ring_configmap: Option<String>,

    /// A moved connection still open this long after its reset was sent is closed by the router.
    #[arg(long, env = "WSRING_RESET_TIMEOUT_MS", default_value_t = 2000)]
    pub reset_timeout_ms: u64,

    /// Upgrade requests (headers, and the pod's answer) must complete within this time.
    #[arg(long, env = "WSRING_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,

    /// Most client connections open at once; more are answered 503
    /// (`too_many_connections`). Default: what the open-files limit allows
    /// (two descriptors per tunnel over HTTP/1.1, one over h2) with 256 spare.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections from one client address (0: no cap). Leave it off
    /// behind an ingress controller or proxy: all clients share its address.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 0)]
    pub max_connections_per_client: usize,

    /// On SIGTERM, keep accepting for this long with `/readyz` answering 503,
    /// so Services and ingress controllers stop sending new connections before
    /// the listener closes (Kubernetes removes a terminating pod's endpoint
    /// concurrently with the signal); then drain.
    #[arg(long, env = "WSRING_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,

    /// On shutdown, tunnels still open after this long are closed.
    #[arg(long, env = "WSRING_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,

    /// Local mode: URL of the launcher's control API, for the dashboard's buttons.
    #[arg(long, env = "WSRING_DASHBOARD_CONTROL_URL")]
    pub dashboard_control_url: Option<String>,

    /// How tunnels reach pods: `http1`, a TCP connection per client
    /// connection; `h2`, streams of one HTTP/2 connection per pod (RFC 8441),
    /// one socket per client instead of two (docs/interfaces.md, "Router → pod
    /// upgrade request").
    #[arg(
        long,
        env = "WSRING_POD_TRANSPORT",
        value_enum,
        default_value = "http1"
    )]
    pub pod_transport: PodTransport,
}

impl Config {
    /// A config with every default, for tests and the local launcher
    /// (listeners on loopback port 0, the given token).
    pub fn for_tests(token: &str) -> Self {
        Config {
            listeners: ListenArgs::loopback(),
            router_id: Some("router-test".into()),
            cluster: ClusterArgs::default(),
            redis: RedisArgs::default(),
            key_source: KeySource::Query,
            key_name: "key".into(),
            max_key_bytes: wsring_core::protocol::DEFAULT_MAX_KEY_BYTES,
            allowed_origins: Vec::new(),
            require_origin: false,
            token: TokenArgs::value(token),
            ring_file: None,
            ring_configmap: None,
            reset_timeout_ms: 2000,
            handshake_timeout_ms: 10_000,
            max_connections: None,
            max_connections_per_client: 0,
            shutdown_delay_ms: 0,
            drain_timeout_ms: 10_000,
            dashboard_control_url: None,
            pod_transport: PodTransport::Http1,
        }
    }

    /// Check and resolve everything that needs the environment, once, at startup.
    pub(crate) fn resolve(&self) -> Result<Settings, Error> {
        let token = self
            .token
            .resolve()
            .map_err(|e| Error::Config(e.to_string()))?;
        let router_id = match &self.router_id {
            Some(id) => id.clone(),
            None => hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "router".to_string()),
        };
        if router_id.is_empty() || router_id.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Config(format!(
                "--router-id must be non-empty without spaces or control characters, got {router_id:?}"
            )));
        }
        self.cluster
            .check()
            .map_err(|e| Error::Config(e.to_string()))?;
        if self.max_key_bytes == 0 {
            return Err(Error::Config("--max-key-bytes must be at least 1".into()));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(Error::Config(
                "--handshake-timeout-ms must be at least 1".into(),
            ));
        }
        let origins = OriginPolicy::new(&self.allowed_origins, self.require_origin)?;
        let redis = self
            .redis
            .target()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Settings {
            token,
            router_id,
            origins,
            redis,
        })
    }

    /// `--reset-timeout-ms` as a duration.
    pub fn reset_timeout(&self) -> Duration {
        Duration::from_millis(self.reset_timeout_ms)
    }

    /// `--handshake-timeout-ms` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The connection caps (`--max-connections`, `--max-connections-per-client`).
    pub fn connection_limits(&self) -> std::sync::Arc<wsring_core::conn_limit::ConnectionLimits> {
        let per_tunnel = match self.pod_transport {
            PodTransport::Http1 => 2,
            PodTransport::H2 => 1,
        };
        let total = self
            .max_connections
            .unwrap_or_else(|| wsring_core::conn_limit::from_open_files_limit(per_tunnel));
        wsring_core::conn_limit::ConnectionLimits::new(total, self.max_connections_per_client)
    }

    /// `--shutdown-delay-ms` as a duration.
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    /// `--drain-timeout-ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// The configuration after every check: what the running router uses
/// besides the plain flag values of [`Config`].
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The bearer token (from the flag or the file, trimmed).
    pub token: String,
    /// The router id (flag or hostname).
    pub router_id: String,
    /// The parsed `--allowed-origins` / `--require-origin`.
    pub origins: OriginPolicy,
    /// The Redis server or Sentinel group (password override and private CA
    /// applied); not connected.
    pub redis: Option<wsring_core::redis_target::RedisTarget>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["wsring-router", "--token", "t"]).unwrap();
        let c = cli.config;
        assert_eq!(c.listeners.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.listeners.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(c.cluster, ClusterArgs::default());
        assert_eq!(c.key_source, KeySource::Query);
        assert_eq!(c.key_name, "key");
        assert_eq!(c.max_key_bytes, 256);
        assert_eq!(c.reset_timeout_ms, 2000);
        assert_eq!(c.handshake_timeout_ms, 10_000);
    }

    #[test]
    fn token_is_required_and_read_from_a_file() {
        let mut c = Config::for_tests("x");
        c.token.value = None;
        let err = c.resolve().unwrap_err();
        assert!(err.to_string().contains("--token"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        c.token.file = Some(path);
        assert_eq!(c.resolve().unwrap().token, "s3cret");
    }

    #[test]
    fn allowed_origins_are_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "wsring-router",
            "--token",
            "t",
            "--allowed-origins",
            "https://chat.example.com,https://*.example.com",
        ])
        .unwrap();
        assert_eq!(
            cli.config.allowed_origins,
            ["https://chat.example.com", "https://*.example.com"]
        );
        assert!(!cli.config.require_origin);
        let resolved = cli.config.resolve().unwrap();
        assert!(!resolved.origins.allows_all());

        let defaults = Cli::try_parse_from(["wsring-router", "--token", "t"]).unwrap();
        assert!(defaults.config.allowed_origins.is_empty());
        assert!(defaults.config.resolve().unwrap().origins.allows_all());

        let mut bad = Config::for_tests("t");
        bad.allowed_origins = vec!["chat.example.com".into()];
        assert!(matches!(bad.resolve(), Err(Error::Config(_))));
        bad.allowed_origins = Vec::new();
        bad.require_origin = true;
        assert!(matches!(bad.resolve(), Err(Error::Config(_))));
    }

    #[test]
    fn key_source_parses() {
        let cli = Cli::try_parse_from([
            "wsring-router",
            "--token",
            "t",
            "--key-source",
            "cookie",
            "--key-name",
            "room",
        ])
        .unwrap();
        assert_eq!(cli.config.key_source, KeySource::Cookie);
        assert_eq!(cli.config.key_name, "room");
    }
}
