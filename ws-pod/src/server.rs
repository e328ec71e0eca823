//! Start-up and shutdown of one pod: bind both listeners, run the WebSocket
//! listener, the admin server and the Redis subscription, then drain.
//!
//! Binding is separate from running ([`Pod::bind`], then [`Pod::serve`]) so
//! tests and the local launcher can bind port 0 and learn the real addresses
//! before anything connects.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;
use wsring_core::listen_args::Listeners;
use wsring_core::shutdown::Shutdown;

use crate::admin::{admin_app, AdminState};
use crate::config::{Config, Settings};
use crate::control::{self, Applied, Channels, ResetChannel};
use crate::drain::{Drain, DrainOutcome};
use crate::history::History;
use crate::listener::accept_loop;
use crate::metrics::Metrics;
use crate::registry::{ConnectionInfo, Registry};
use crate::session::Shared;
use crate::Error;

/// A pod with its listeners bound, not yet serving.
#[derive(Debug)]
pub struct Pod {
    settings: Settings,
    listeners: Listeners,
    shared: Arc<Shared>,
}

/// A handle on a running pod's connections, for in-process callers (the local
/// launcher's bus when there is no Redis, tests).
#[derive(Clone, Debug)]
pub struct PodHandle {
    pod_name: String,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl PodHandle {
    /// The ring member name this pod answers with (`x-wsring-pod`).
    pub fn pod_name(&self) -> &str {
        &self.pod_name
    }

    /// Act on a control message exactly as if it came from this pod's Redis channel.
    pub fn apply_control(&self, payload: &[u8]) -> Applied {
        control::apply(payload, &self.registry, &self.metrics)
    }

    /// The open connections (what `GET /v1/connections` answers).
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.registry.list()
    }

    /// The pod's metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}

impl Pod {
    /// Check the configuration and bind both listeners; nothing is served yet.
    pub async fn bind(config: Config) -> Result<Pod, Error> {
        let settings = config.resolve()?;
        let pod_header = HeaderValue::from_str(&settings.pod_name).map_err(|_| {
            Error::Config(format!(
                "--pod-name {:?} is not a valid header value",
                settings.pod_name
            ))
        })?;
        if settings.redis.is_some() {
            // rustls needs a process-wide crypto provider for rediss://; keep one that
            // the embedding program may have installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let listeners = config.listeners.bind().await.map_err(Error::Bind)?;
        let history = match (&settings.history, &settings.redis) {
            (Some(history), Some(target)) => Some(Arc::new(History::new(
                target.clone(),
                &config.cluster.namespace,
                &config.cluster.name,
                *history,
            ))),
            _ => None,
        };
        let shutdown = Shutdown::new();
        let shared = Arc::new(Shared {
            pod_name: settings.pod_name.clone(),
            pod_header,
            upstream: settings.upstream.clone(),
            ws_config: settings.websocket_config(),
            handshake_timeout: settings.handshake_timeout,
            admission: settings.admission.clone(),
            limits: settings.limits.clone(),
            message_timeout: settings.message_timeout,
            idle_timeout: settings.idle_timeout,
            h2_max_streams: settings.h2_max_streams,
            h2_connection_window: settings.h2_connection_window,
            registry: Registry::new(),
            metrics: Arc::new(Metrics::new()),
            history,
            drain: Drain::new(shutdown.clone()),
            shutdown,
        });
        Ok(Pod {
            settings,
            listeners,
            shared,
        })
    }

    /// The bound WebSocket address (the real port when `--listen` used port 0).
    pub fn ws_addr(&self) -> SocketAddr {
        self.listeners.ws.addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin.addr
    }

    /// A handle on this pod's connections that stays valid while it runs.
    pub fn handle(&self) -> PodHandle {
        PodHandle {
            pod_name: self.settings.pod_name.clone(),
            registry: self.shared.registry.clone(),
            metrics: self.shared.metrics.clone(),
        }
    }

    /// Serve until `shutdown` resolves, then shut down: readiness goes false while
    /// connections are still served for the shutdown delay; then the listener
    /// closes, every connection is closed with 1001 and awaited (at most the
    /// drain timeout). Returns an error only if the admin server fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Pod {
            settings,
            listeners:
                Listeners {
                    ws,
                    admin: admin_listener,
                },
            shared,
        } = self;
        let admin_stop = CancellationToken::new();
        let reset_channel = match &settings.redis {
            Some(_) => ResetChannel::awaiting(control::RESET_CHANNEL_GRACE),
            None => ResetChannel::none(),
        };
        let state = AdminState::new(
            shared.registry.clone(),
            shared.metrics.clone(),
            &settings.token,
            settings.max_message_bytes,
            shared.shutdown.clone(),
            reset_channel.clone(),
        )
        .with_history(shared.history.clone());
        let mut admin = tokio::spawn(
            axum::serve(admin_listener.listener, admin_app(state))
                .with_graceful_shutdown(admin_stop.clone().cancelled_owned())
                .into_future(),
        );

        let control_stop = CancellationToken::new();
        let control = settings.redis.clone().map(|target| {
            let channels = Channels {
                reset: settings.channel.clone(),
                history: shared.history.as_ref().map(|h| h.channel().to_string()),
            };
            tokio::spawn(control::subscribe(
                target,
                channels,
                shared.registry.clone(),
                shared.metrics.clone(),
                reset_channel,
                control_stop.clone(),
            ))
        });
        if control.is_none() {
            tracing::warn!("no --redis-url: resets are left to the routers' own close");
        }

        tracing::info!(
            pod = %settings.pod_name,
            listen = %ws.addr,
            admin = %admin_listener.addr,
            app = settings.upstream.as_deref().unwrap_or("echo"),
            "ws-pod serving"
        );
        let delay = settings.shutdown_delay;
        let pod_shutdown = shared.shutdown.clone();
        let shutting_down = async move {
            shutdown.await;
            // Not ready first, still serving: the pod leaves the ring and the
            // routers' resets close its moved connections with 4001 before
            // the drain closes what is left with 1001.
            pod_shutdown.begin();
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "shutting down: not ready, still serving for the shutdown delay"
                );
                tokio::time::sleep(delay).await;
            }
        };
        let admin_ended = tokio::select! {
            () = shutting_down => None,
            () = accept_loop(ws.listener, shared.clone()) => None,
            ended = &mut admin => Some(ended),
        };

        tracing::info!(
            connections = shared.registry.len(),
            timeout = ?settings.drain_timeout,
            "draining: closing every connection with 1001"
        );
        match shared.drain.run(settings.drain_timeout).await {
            DrainOutcome::Clean => tracing::info!("drained"),
            DrainOutcome::Forced(left) => {
                tracing::warn!(left, "drain timeout: dropped connections still closing")
            }
        }
        control_stop.cancel();
        if let Some(control) = control {
            let _ = control.await;
        }
        admin_stop.cancel();
        let admin_ended_early = admin_ended.is_some();
        let admin_result = match admin_ended {
            Some(ended) => ended,
            None => admin.await,
        };
        match admin_result {
            Ok(Ok(())) if admin_ended_early => Err(Error::Admin(std::io::Error::other(
                "the admin server stopped unexpectedly",
            ))),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Admin(e)),
            Err(join) => Err(Error::Admin(std::io::Error::other(join))),
        }
    }
}
