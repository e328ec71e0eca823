//! One WebSocket's life in the pod once it is upgraded, whichever listener
//! accepted it (an HTTP/1.1 upgrade from [`crate::listener`] or an HTTP/2
//! stream from [`crate::h2`]): register it under its key, relay it to the
//! echo app or the upstream app until it ends, count how it ended.
//!
//! [`Shared`] is what every connection task of the pod reads; both listeners
//! hold it and hand each upgraded WebSocket to [`run_connection`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use wsring_core::conn_limit::{ConnectionLimits, LimitHit};
use wsring_core::protocol::{
    CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN_LATER,
    CLOSE_TRY_AGAIN_LATER_REASON,
};
use wsring_core::shutdown::Shutdown;

use crate::app::{connect_upstream, echo};
use crate::connection::{close_unrelayed, relay, Ending, Outbound, DRAINING_REASON};
use crate::cursor::Cursor;
use crate::drain::Drain;
use crate::handshake::{Admission, Framing, Upgrade};
use crate::history::History;
use crate::metrics::Metrics;
use crate::registry::{Registration, Registry};
use crate::watch::{Deadlines, MessageClock};

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Ring member name (for local connection ids).
    pub pod_name: String,
    /// `x-wsring-pod` value of every 101 answer.
    pub pod_header: HeaderValue,
    /// `ws://host:port` of the app container, or `None` for the echo app.
    pub upstream: Option<String>,
    /// Limits and buffer sizes of client and upstream connections.
    pub ws_config: WebSocketConfig,
    /// An upgrade request (or the HTTP/2 preface) must arrive within this.
    pub handshake_timeout: Duration,
    /// What every upgrade request must satisfy (router signature, key rules).
    pub admission: Admission,
    /// Caps on open connections and HTTP/2 streams.
    pub limits: Arc<ConnectionLimits>,
    /// A message must arrive whole within this once it started.
    pub message_timeout: Duration,
    /// Close a connection silent for this long, if set.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` of router connections.
    pub h2_max_streams: u32,
    /// HTTP/2 connection receive window.
    pub h2_connection_window: u32,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Per-key history (`--history-size`), read by `wsring.v1` connections.
    pub history: Option<Arc<History>>,
    /// Not ready, then draining: connections close with 1001 once it drains.
    pub shutdown: Shutdown,
    /// The connection tasks, so the drain can wait for them.
    pub drain: Drain,
}

impl Shared {
    /// Count (and log) a connection or stream refused over a cap.
    pub(crate) fn refused_over_limit(&self, hit: LimitHit, peer: SocketAddr) {
        self.metrics
            .connection_limit_refusals
            .get_or_create(&[("limit", hit.as_str())])
            .inc();
        tracing::debug!(%peer, limit = hit.as_str(), "refused: over a connection cap");
    }
}

/// Counts a registered connection in the metrics for as long as it lives.
struct Active<'a>(&'a Metrics);

impl<'a> Active<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.connections.inc();
        metrics.active_connections.inc();
        Active(metrics)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active_connections.dec();
    }
}

/// Register an upgraded connection, relay it to the app until it ends, and
/// count how it ended; the transport under `ws` is the caller's to close.
pub(crate) async fn run_connection<S>(
    ws: &mut WebSocketStream<S>,
    upgrade: Upgrade,
    peer: SocketAddr,
    shared: &Shared,
    clock: Option<Arc<MessageClock>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadlines = Deadlines {
        idle: shared.idle_timeout,
        clock,
    };
    // The upgrade request's bytes were no message: no deadline runs yet.
    deadlines.message_done();
    let id = upgrade.conn_id.clone().unwrap_or_else(|| {
        format!(
            "{}-local-{}",
            shared.pod_name,
            shared.registry.next_local_number()
        )
    });
    let span = tracing::debug_span!("conn", %id, key = %upgrade.key, %peer);
    async {
        // Registered before the history is read: a push stored meanwhile is
        // queued, and the cursor drops it if the history already had it.
        let (registration, mut outbound) = match (&upgrade.framing, &shared.history) {
            (Framing::V1 { since }, Some(history)) => {
                let registration = shared.registry.register_positioned(&id, &upgrade.key);
                // Boxed: the history read runs once, at the start, and
                // inline its state would stay in the task for the
                // connection's whole life (a 4.1 KiB future, by
                // `-Zprint-type-sizes`).
                let opened = Box::pin(Cursor::open(
                    history.clone(),
                    shared.metrics.clone(),
                    &upgrade.key,
                    since.as_ref(),
                ))
                .await;
                let Ok(cursor) = opened else {
                    close_unrelayed(ws, CLOSE_TRY_AGAIN_LATER, CLOSE_TRY_AGAIN_LATER_REASON).await;
                    return;
                };
                (registration, Outbound::V1(Box::new(cursor)))
            }
            _ => (shared.registry.register(&id, &upgrade.key), Outbound::Plain),
        };
        let active = Active::new(&shared.metrics);
        tracing::debug!(ring_version = upgrade.ring_version, "connection open");
        let ending = match &shared.upstream {
            None => {
                let (tx, rx) = echo();
                relay(
                    ws,
                    tx,
                    rx,
                    &mut outbound,
                    registration.mailbox(),
                    shared.shutdown.draining(),
                    &deadlines,
                )
                .await
            }
            Some(base) => {
                Box::pin(upstream(
                    ws,
                    (base, &id),
                    upgrade,
                    &mut outbound,
                    &registration,
                    shared,
                    &deadlines,
                ))
                .await
            }
        };
        match ending {
            Ending::ClientRefused(CLOSE_TOO_BIG) => {
                shared.metrics.oversize_closes.inc();
            }
            Ending::AppFailed | Ending::AppUnreachable => {
                shared.metrics.upstream_failures.inc();
            }
            Ending::TimedOut(reason) => {
                shared
                    .metrics
                    .timeout_closes
                    .get_or_create(&[("reason", reason)])
                    .inc();
            }
            _ => {}
        }
        tracing::debug!(?ending, "connection closed");
        drop(active);
        drop(registration);
    }
    .instrument(span)
    .await;
}

/// Connect the upstream app (a close order or the drain may come first), then relay.
async fn upstream<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    (base, id): (&str, &str),
    upgrade: Upgrade,
    outbound: &mut Outbound,
    registration: &Registration,
    shared: &Shared,
    deadlines: &Deadlines,
) -> Ending {
    let mailbox = registration.mailbox();
    let draining = shared.shutdown.draining();
    let headers = upgrade.headers.unwrap_or_default();
    let connect = Box::pin(connect_upstream(
        base,
        &upgrade.path_and_query,
        &headers,
        &upgrade.key,
        id,
        shared.ws_config,
    ));
    let connected = tokio::select! {
        result = connect => result,
        order = mailbox.closed() => {
            close_unrelayed(ws, order.code, order.reason).await;
            return Ending::Ordered(order.code);
        }
        () = draining.cancelled() => {
            close_unrelayed(ws, CLOSE_GOING_AWAY, DRAINING_REASON).await;
            return Ending::Draining;
        }
    };
    drop(headers);
    match connected {
        Ok(app) => {
            let (tx, rx) = app.split();
            relay(ws, tx, rx, outbound, mailbox, draining, deadlines).await
        }
        Err(error) => {
            // 1011, not 1014 (bad gateway): 1014 is newer than RFC 6455 and common
            // client libraries (tungstenite among them) refuse it as a protocol error.
            tracing::warn!(%error, upstream = %base, "upstream app unreachable; closing the client with 1011");
            close_unrelayed(ws, CLOSE_INTERNAL_ERROR, "upstream app unreachable").await;
            Ending::AppUnreachable
        }
    }
}
