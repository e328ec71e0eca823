//! Prometheus metrics of one pod, served as text on the admin port's `/metrics`.
//!
//! All names start with `wsring_pod_`; counters get the `_total` suffix from the
//! encoder. The values are plain atomics, so updating them on the data path costs
//! one relaxed add.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use wsring_core::conn_limit::LimitHit;
use wsring_core::resume::GoneReason;

/// One label, e.g. `[("limit", "total")]`.
pub type Label = [(&'static str, &'static str); 1];

/// `timeout_closes` reason: no frame either way for `--idle-timeout-ms`.
pub const TIMEOUT_IDLE: &str = "idle";
/// `timeout_closes` reason: a message not finished within `--message-timeout-ms`.
pub const TIMEOUT_UNFINISHED_MESSAGE: &str = "unfinished_message";

/// Every metric ws-pod exports, plus the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open client connections (registered after the upgrade, until the task ends).
    pub active_connections: Gauge,
    /// Client connections accepted since start.
    pub connections: Counter,
    /// Connections or HTTP/2 streams refused before the WebSocket began:
    /// handshake timeout, oversize or malformed upgrade request.
    pub failed_handshakes: Counter,
    /// Reset commands received from Redis (valid ones).
    pub resets_received: Counter,
    /// Connections closed with 4001 because of a reset.
    pub connections_reset: Counter,
    /// Control messages that did not parse and were ignored.
    pub malformed_control_messages: Counter,
    /// Control messages over the size limit, refused unread.
    pub oversize_control_messages: Counter,
    /// Push API frames handed to a connection's writer.
    pub pushes_delivered: Counter,
    /// Connections closed with 1009 (message or frame over `--max-message-bytes`).
    pub oversize_closes: Counter,
    /// Connections whose upstream app could not be reached or failed (closed with 1011).
    pub upstream_failures: Counter,
    /// 1 while the Redis subscription is established, else 0.
    pub redis_connected: Gauge,
    /// Successful (re)subscriptions to the reset channel: more than one means Redis came back.
    pub redis_subscriptions: Counter,
    /// Connections and HTTP/2 streams refused over a connection cap (`limit`).
    pub connection_limit_refusals: Family<Label, Counter>,
    /// Connections closed at a deadline (`reason`: `idle`, `unfinished_message`).
    pub timeout_closes: Family<Label, Counter>,
    /// Pushes stored in the per-key history.
    pub history_appends: Counter,
    /// History writes or reads that failed (push answered 503, or a read
    /// retried; a `wsring.v1` connection is closed with 1013 after ~3 s).
    pub history_errors: Counter,
    /// Pushes sent to `wsring.v1` clients from the history (missed on resume,
    /// or caught up after a gap).
    pub history_replayed: Counter,
    /// `wsring.v1` connections by their opening (`outcome`: `start`,
    /// `resumed`, `trimmed`, `epoch`, `unavailable`).
    pub history_openings: Family<Label, Counter>,
}

/// `history_openings` outcomes besides the [`wsring_core::resume::GoneReason`]s.
pub const OPENING_START: &str = "start";
/// A client resumed after its position.
pub const OPENING_RESUMED: &str = "resumed";
/// The history could not be read: closed with 1013, to resume later.
pub const OPENING_UNAVAILABLE: &str = "unavailable";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut m = Metrics {
            active_connections: Gauge::default(),
            connections: Counter::default(),
            failed_handshakes: Counter::default(),
            resets_received: Counter::default(),
            connections_reset: Counter::default(),
            malformed_control_messages: Counter::default(),
            oversize_control_messages: Counter::default(),
            pushes_delivered: Counter::default(),
            oversize_closes: Counter::default(),
            upstream_failures: Counter::default(),
            redis_connected: Gauge::default(),
            redis_subscriptions: Counter::default(),
            connection_limit_refusals: Family::default(),
            timeout_closes: Family::default(),
            history_appends: Counter::default(),
            history_errors: Counter::default(),
            history_replayed: Counter::default(),
            history_openings: Family::default(),
            registry: Registry::with_prefix("wsring_pod"),
        };
        m.registry.register(
            "active_connections",
            "Open client WebSocket connections",
            m.active_connections.clone(),
        );
        m.registry.register(
            "connections",
            "Client WebSocket connections accepted",
            m.connections.clone(),
        );
        m.registry.register(
            "failed_handshakes",
            "Connections or HTTP/2 streams refused before the WebSocket began (timeout, oversize or malformed request)",
            m.failed_handshakes.clone(),
        );
        m.registry.register(
            "resets_received",
            "Reset commands received on the Redis channel",
            m.resets_received.clone(),
        );
        m.registry.register(
            "connections_reset",
            "Connections closed with 4001 (ring moved)",
            m.connections_reset.clone(),
        );
        m.registry.register(
            "malformed_control_messages",
            "Control messages that could not be parsed and were ignored",
            m.malformed_control_messages.clone(),
        );
        m.registry.register(
            "connection_limit_refusals",
            "Connections and HTTP/2 streams refused over --max-connections (limit=total) or --max-connections-per-client (limit=per_client)",
            m.connection_limit_refusals.clone(),
        );
        m.registry.register(
            "timeout_closes",
            "Connections closed at a deadline: idle (--idle-timeout-ms, 1001) or unfinished_message (--message-timeout-ms, 1008)",
            m.timeout_closes.clone(),
        );
        m.registry.register(
            "oversize_control_messages",
            "Control messages over 256 KiB, refused unread",
            m.oversize_control_messages.clone(),
        );
        m.registry.register(
            "pushes_delivered",
            "Push API frames queued to a connection",
            m.pushes_delivered.clone(),
        );
        m.registry.register(
            "oversize_closes",
            "Connections closed with 1009 (message too big)",
            m.oversize_closes.clone(),
        );
        m.registry.register(
            "upstream_failures",
            "Connections closed because the upstream app was unreachable or failed",
            m.upstream_failures.clone(),
        );
        m.registry.register(
            "redis_connected",
            "1 while subscribed to the reset channel",
            m.redis_connected.clone(),
        );
        m.registry.register(
            "redis_subscriptions",
            "Successful (re)subscriptions to the reset channel",
            m.redis_subscriptions.clone(),
        );
        m.registry.register(
            "history_appends",
            "Pushes stored in the per-key history (--history-size)",
            m.history_appends.clone(),
        );
        m.registry.register(
            "history_errors",
            "History writes or reads that failed: a push answered 503, or a read retried (wsring.v1 connections close with 1013 after about 3 s of them)",
            m.history_errors.clone(),
        );
        m.registry.register(
            "history_replayed",
            "Pushes sent to wsring.v1 clients from the history (missed on resume, or caught up)",
            m.history_replayed.clone(),
        );
        m.registry.register(
            "history_openings",
            "wsring.v1 connections by opening: start, resumed, gone (trimmed, epoch), or unavailable (closed with 1013)",
            m.history_openings.clone(),
        );
        // Every series exists from the start (at 0), so a rate() over it is
        // defined before the first refusal or timeout.
        for hit in [LimitHit::Total, LimitHit::PerClient] {
            m.connection_limit_refusals
                .get_or_create(&[("limit", hit.as_str())])
                .inc_by(0);
        }
        for outcome in [
            OPENING_START,
            OPENING_RESUMED,
            GoneReason::Trimmed.as_str(),
            GoneReason::Epoch.as_str(),
            OPENING_UNAVAILABLE,
        ] {
            m.history_openings
                .get_or_create(&[("outcome", outcome)])
                .inc_by(0);
        }
        for reason in [TIMEOUT_IDLE, TIMEOUT_UNFINISHED_MESSAGE] {
            m.timeout_closes
                .get_or_create(&[("reason", reason)])
                .inc_by(0);
        }
        m
    }

    /// Prometheus text exposition format (OpenMetrics flavour of prometheus-client).
    pub fn encode(&self) -> String {
        wsring_core::openmetrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_metrics_are_the_exported_ones() {
        use wsring_core::testkit::{documented_metric_names, exported_metric_names};
        let docs = include_str!("../../docs/interfaces.md");
        assert_eq!(
            exported_metric_names(&Metrics::new().encode()),
            documented_metric_names(docs, "wsring_pod_"),
            "docs/interfaces.md, section Metrics"
        );
    }

    #[test]
    fn every_metric_is_exported() {
        let m = Metrics::new();
        m.active_connections.set(3);
        m.connections_reset.inc_by(2);
        let text = m.encode();
        for name in [
            "wsring_pod_active_connections 3",
            "wsring_pod_connections_total 0",
            "wsring_pod_failed_handshakes_total 0",
            "wsring_pod_resets_received_total 0",
            "wsring_pod_connections_reset_total 2",
            "wsring_pod_malformed_control_messages_total 0",
            "wsring_pod_pushes_delivered_total 0",
            "wsring_pod_oversize_closes_total 0",
            "wsring_pod_upstream_failures_total 0",
            "wsring_pod_redis_connected 0",
            "wsring_pod_redis_subscriptions_total 0",
            "wsring_pod_history_appends_total 0",
            "wsring_pod_history_errors_total 0",
            "wsring_pod_history_replayed_total 0",
            "wsring_pod_history_openings_total{outcome=\"resumed\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
