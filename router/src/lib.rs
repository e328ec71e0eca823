//! wsring router: gives stateful WebSocket servers key affinity.
//!
//! A client's upgrade request carries a routing key. The router hashes it onto
//! the consistent-hash ring ([`wsring_core::Ring`]), forwards the upgrade to the
//! owning pod, returns the pod's 101 (with `x-wsring-pod`) and then tunnels raw
//! bytes both ways, never re-framing WebSocket traffic. When the ring changes,
//! the router publishes one batched reset per old owner to Redis for exactly
//! the connections that moved, and closes any still open after a timeout.
//!
//! docs/interfaces.md is the contract with the other processes (flags, ring
//! document, headers, Redis messages, admin API).
//!
//! # Layout
//!
//! - [`config`]: flags and environment variables ([`Config`]), checked once at
//!   start-up into the router's `Settings`.
//! - [`error`]: the crate's [`Error`] and its JSON/status form.
//! - [`key`]: routing key extraction (query, header, path, cookie) and validation.
//! - [`origin`]: the `Origin` allow-list checked before the upgrade.
//! - [`ring_state`]: the current ring and the version rules for replacing it.
//! - [`state`]: shared state; routing and ring application, atomic w.r.t. each other.
//! - [`registry`]: live tunnels, moved-connection detection, forced close.
//! - [`resets`]: batched reset publishing and the reset timeout; [`publisher`]: the Redis publisher.
//! - [`handshake`]: what a client's upgrade request must be (426 / 400).
//! - [`public`]: public listener (hyper HTTP/1, upgrade only); [`tunnel`]: the
//!   low-memory byte tunnel; [`tunnel_task`]: the task of one open tunnel.
//! - [`pod_link`]: the upgrade to the owner pod ([`pod_link::PodLink`]), over a
//!   TCP connection per client ([`pod_link::http1`]) or streams of one HTTP/2
//!   connection per pod ([`pod_link::http2`], `--pod-transport h2`); the
//!   forwarded request itself ([`pod_link::request`]).
//! - [`admin`]: admin listener (axum): health, metrics, ring, connections, push;
//!   [`push`]: forwarding pushes to pods; [`metrics`]: Prometheus metrics;
//!   [`dashboard`]: the live view served at `/`.
//! - [`ring_source`]: ring file polling and ConfigMap watching.
//!
//! # Use
//!
//! ```no_run
//! # async fn example(config: wsring_router::Config) -> Result<(), wsring_router::Error> {
//! let router = wsring_router::Router::bind(config).await?;
//! println!("public {} admin {}", router.public_addr(), router.admin_addr());
//! router.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod admin;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod handshake;
pub mod key;
pub mod metrics;
pub mod origin;
pub mod pod_link;
pub mod public;
pub mod publisher;
pub mod push;
pub mod registry;
pub mod resets;
pub mod ring_source;
pub mod ring_state;
pub mod state;
#[cfg(test)]
mod test_requests;
pub mod tunnel;
pub mod tunnel_task;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wsring_core::listen_args::Listeners;
use wsring_core::RingSpec;

pub use config::{Config, KeySource, PodTransport};
pub use error::Error;
pub use state::ApplyOutcome;

use crate::publisher::Publisher;
use crate::state::Shared;

/// After the drain timeout closed the remaining tunnels, how long to wait for their tasks.
const AFTER_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Run a router until `shutdown` resolves, then drain: what the binary and the
/// local launcher call.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Router::bind(config).await?.serve(shutdown).await
}

/// A router whose listeners are bound but not serving yet (so callers can
/// learn the addresses of port-0 listeners before traffic starts).
pub struct Router {
    shared: Arc<Shared>,
    listeners: Listeners,
    config: Config,
    kube: Option<(kube::Client, String)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("listeners", &self.listeners)
            .field("router_id", &self.shared.router_id)
            .finish_non_exhaustive()
    }
}

/// In-process control of a running router (for the local launcher and tests).
#[derive(Clone, Debug)]
pub struct RouterHandle {
    shared: Arc<Shared>,
}

impl RouterHandle {
    /// Offer a ring, exactly like `PUT /ring`.
    pub fn apply_ring(&self, spec: RingSpec) -> Result<ApplyOutcome, Error> {
        self.shared.apply_ring(spec, "local")
    }

    /// The ring in use, if any.
    pub fn ring(&self) -> Option<Arc<wsring_core::Ring>> {
        self.shared.ring.current()
    }

    /// Number of open tunnels.
    pub fn active_connections(&self) -> usize {
        self.shared.registry.len()
    }
}

impl Router {
    /// Validate the configuration, connect what can be connected lazily
    /// (Redis) and bind both listeners.
    pub async fn bind(config: Config) -> Result<Router, Error> {
        // rediss:// and the Kubernetes client use rustls: pick its provider
        // explicitly so feature unification elsewhere cannot make it ambiguous.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = config.resolve()?;
        let publisher = match settings.redis.clone() {
            Some(target) => Some(Publisher::new(target)),
            None => {
                tracing::warn!("no --redis-url: moved connections are closed by the router at the reset timeout");
                None
            }
        };
        let kube = match &config.ring_configmap {
            Some(_) => Some(ring_source::kube_client().await?),
            None => None,
        };
        let listeners = config.listeners.bind().await.map_err(Error::Bind)?;
        let shared = Arc::new(Shared::new(&config, settings, publisher));
        Ok(Router {
            shared,
            listeners,
            config,
            kube,
        })
    }

    /// Address of the public listener.
    pub fn public_addr(&self) -> SocketAddr {
        self.listeners.ws.addr
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin.addr
    }

    /// In-process control handle.
    pub fn handle(&self) -> RouterHandle {
        RouterHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serve until `shutdown` resolves; then answer `/readyz` with 503 while
    /// still accepting for `--shutdown-delay-ms`, stop accepting, give open
    /// tunnels `--drain-timeout-ms` to finish, close the rest and return.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Router {
            shared,
            listeners: Listeners { ws, admin },
            config,
            kube,
        } = self;
        let sources = CancellationToken::new();

        if let Some(path) = config.ring_file.clone() {
            tokio::spawn(
                sources
                    .clone()
                    .run_until_cancelled_owned(ring_source::watch_file(shared.clone(), path)),
            );
        }
        if let (Some(name), Some((client, namespace))) = (config.ring_configmap.clone(), kube) {
            tokio::spawn(
                sources
                    .clone()
                    .run_until_cancelled_owned(ring_source::watch_configmap(
                        shared.clone(),
                        client,
                        namespace,
                        name,
                    )),
            );
        }

        let admin_stop = CancellationToken::new();
        let admin_addr = admin.addr;
        let admin_server = tokio::spawn({
            let app = admin::admin_app(shared.clone());
            let admin_stop = admin_stop.clone();
            async move {
                axum::serve(admin.listener, app)
                    .with_graceful_shutdown(admin_stop.cancelled_owned())
                    .await
            }
        });

        tokio::spawn({
            let router_shutdown = shared.shutdown.clone();
            let delay = config.shutdown_delay();
            async move {
                shutdown.await;
                // Not ready first, still accepting: load balancers notice the
                // 503 (and the endpoint's removal) before the listener closes.
                router_shutdown.begin();
                if !delay.is_zero() {
                    tracing::info!(
                        ?delay,
                        "shutting down: not ready, still accepting for the shutdown delay"
                    );
                    tokio::time::sleep(delay).await;
                }
                router_shutdown.start_draining();
            }
        });
        tracing::info!(
            public = %ws.addr,
            admin = %admin_addr,
            router_id = %shared.router_id,
            "router serving"
        );
        public::serve(
            ws.listener,
            shared.clone(),
            shared.shutdown.draining().clone(),
        )
        .await;

        shared.shutdown.start_draining();
        sources.cancel();
        drain(&shared, config.drain_timeout()).await;
        admin_stop.cancel();
        match admin_server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io("admin listener", e)),
            Err(e) => Err(Error::io("admin listener task", std::io::Error::other(e))),
        }
    }
}

/// Wait for tunnels and handshakes to finish, at most `timeout`; then close what is left.
async fn drain(shared: &Shared, timeout: Duration) {
    shared.tasks.close();
    let open = shared.registry.len();
    if open > 0 {
        tracing::info!(open, "draining tunnels");
    }
    if tokio::time::timeout(timeout, shared.tasks.wait())
        .await
        .is_err()
    {
        let closed = shared.registry.cancel_all();
        tracing::info!(closed, "drain timeout: closing the remaining tunnels");
        let _ = tokio::time::timeout(AFTER_DRAIN_GRACE, shared.tasks.wait()).await;
    }
}
