//! `wsring dev`: the whole data plane on one machine, no Kubernetes.
//!
//! Starts one router and N ws-pods as child processes of this binary (the
//! `wsring router` / `wsring pod` subcommands, i.e. the very code the images
//! run), a message bus (the given Redis, else a private `redis-server` if one
//! is installed, else the in-process [`broker`]), and plays the operator's part:
//! it owns ring membership and pushes every change to the router with
//! `PUT /ring`. A control API adds pods and stops them gracefully or abruptly.
//!
//! Layout: [`supervisor`] (child processes, ring membership), [`control`]
//! (the control API), [`broker`] (the in-process pub/sub broker), [`banner`] (what
//! it prints once up).

pub mod banner;
pub mod broker;
pub mod control;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use wsring::process::dev::READY_PREFIX;
use wsring::process::lifecycle::shutdown_signal;
use wsring_core::harness::RedisServer;

use supervisor::{Launch, Supervisor};

/// Options of `wsring dev`.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Number of ws-pods to start with.
    #[arg(long, default_value_t = 3)]
    pub pods: usize,
    /// Router public listener (the ws:// endpoint clients use).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Router admin listener (ring, metrics, push API, dashboard).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Launcher control API (add / stop / crash pods).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub control_listen: SocketAddr,
    /// Use this Redis (`redis://` or `rediss://`). Without it: a private
    /// redis-server if one is installed, else the in-process bus.
    #[arg(long)]
    pub redis: Option<String>,
    /// Never start redis-server; use the in-process bus unless --redis is given.
    #[arg(long)]
    pub builtin_bus: bool,
    /// Bearer token for the admin, push and control APIs (random if not given).
    #[arg(long, env = "WSRING_TOKEN")]
    pub token: Option<String>,
    /// Cluster name (Redis channel prefix).
    #[arg(long, default_value = "dev")]
    pub cluster: String,
    /// Virtual nodes per pod.
    #[arg(long, default_value_t = wsring_core::ring::DEFAULT_VNODES)]
    pub vnodes: u32,
    /// Extra argument for every pod (repeatable), e.g. `--pod-arg=--max-message-bytes=16777216`.
    #[arg(long = "pod-arg", allow_hyphen_values = true)]
    pub pod_args: Vec<String>,
    /// Extra argument for the router (repeatable), e.g. `--router-arg=--key-source=header`.
    #[arg(long = "router-arg", allow_hyphen_values = true)]
    pub router_args: Vec<String>,
    /// Pushes kept per key so `wsring.v1` clients resume without a gap
    /// (docs/interfaces.md, "Per-key history"); 0: off. Needs a real Redis
    /// (`--redis`, or redis-server installed), not the in-process bus.
    #[arg(long, default_value_t = 0)]
    pub history_size: usize,
    /// How long a key's pushes are kept after its last push (`30s`, `5m`, `1h`).
    #[arg(long, default_value = ws_pod::config::DEFAULT_HISTORY_TTL)]
    pub history_ttl: String,
    /// Replicas that must have a push before it counts (Redis `WAIT`; with
    /// `--redis redis+sentinel://…`); 0: none.
    #[arg(long, default_value_t = 0)]
    pub history_replicas: usize,
}

impl DevArgs {
    /// What every pod is started with: the history flags, then `--pod-arg`s.
    fn pod_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.history_size > 0 {
            args.push(format!("--history-size={}", self.history_size));
            args.push(format!("--history-ttl={}", self.history_ttl));
            args.push(format!("--history-replicas={}", self.history_replicas));
        }
        args.extend(self.pod_args.iter().cloned());
        args
    }
}

/// Run local mode until Ctrl-C / SIGTERM, then stop every child gracefully.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .clone()
        .unwrap_or_else(wsring_core::bearer::random_token);
    let (redis_url, bus_kind, _redis_server) = start_bus(&args).await?;
    if args.history_size > 0 && bus_kind == IN_PROCESS_BUS {
        anyhow::bail!(
            "--history-size keeps pushes in Redis streams, which the in-process bus does not have: \
             install redis-server or pass --redis URL (and drop --builtin-bus)"
        );
    }
    let launch = Launch {
        exe: std::env::current_exe().context("locating the wsring binary")?,
        cluster: args.cluster.clone(),
        token: token.clone(),
        redis_url: redis_url.clone(),
        vnodes: args.vnodes,
        pod_args: args.pod_args(),
        router_args: args.router_args.clone(),
        control_url: format!("http://{}", args.control_listen),
    };
    let control = TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("binding the control API on {}", args.control_listen))?;
    let supervisor = Arc::new(Supervisor::new(launch));
    supervisor
        .start_router(args.listen, args.admin_listen)
        .await
        .context("starting the router")?;
    for _ in 0..args.pods {
        supervisor.add_pod().await.context("starting a pod")?;
    }
    let ready = serde_json::json!({
        "ws": format!("ws://{}/?key=", args.listen),
        "admin": format!("http://{}", args.admin_listen),
        "control": format!("http://{}", args.control_listen),
        "token": token,
        "bus": bus_kind,
        "redis": redis_url,
        "pods": supervisor.pod_names(),
    });
    println!("{READY_PREFIX}{ready}");
    let (key_source, key_name) = banner::key_placement(&args.router_args);
    let connect = banner::connect_hint(args.listen, key_source, &key_name, "alice");
    let endpoints = banner::Endpoints {
        admin: args.admin_listen,
        control: args.control_listen,
        token: &token,
    };
    eprintln!(
        "{}",
        banner::banner(args.pods, bus_kind, &connect, &endpoints)
    );
    let watch = tokio::spawn(supervisor.clone().watch_children());
    let api = axum::serve(
        control,
        control::app(supervisor.clone(), token, args.admin_listen),
    );
    tokio::select! {
        r = api => r.context("control API")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    watch.abort();
    supervisor.stop_all().await;
    Ok(())
}

/// Choose and, if needed, start the bus; returns its URL, a label, and the redis-server.
async fn start_bus(args: &DevArgs) -> anyhow::Result<(String, &'static str, Option<RedisServer>)> {
    if let Some(url) = &args.redis {
        return Ok((url.clone(), "redis (given)", None));
    }
    if !args.builtin_bus {
        // A private redis-server if one is installed (it cannot be run at
        // all otherwise: then the in-process bus).
        match RedisServer::start().await {
            Ok(server) => return Ok((server.url(), "redis-server (private)", Some(server))),
            Err(wsring_core::Error::Spawn { .. }) => {}
            Err(e) => return Err(e).context("redis-server did not start"),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("redis://{}", listener.local_addr()?);
    tokio::spawn(broker::serve(listener));
    Ok((url, IN_PROCESS_BUS, None))
}

/// The bus label of the in-process bus (pub/sub only).
const IN_PROCESS_BUS: &str = "in-process bus";
