//! Prometheus metrics of the router (`GET /metrics` on the admin listener).
//!
//! Counters are cheap atomics cloned into whoever updates them; the text form
//! is OpenMetrics as produced by `prometheus-client` (counters get `_total`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One label, e.g. `[("result", "upgraded")]`.
pub type Label = [(&'static str, &'static str); 1];
/// Two labels, e.g. `[("source", "file"), ("outcome", "applied")]`.
pub type Labels2 = [(&'static str, &'static str); 2];

/// Content type of [`Metrics::encode`].
pub use wsring_core::openmetrics::CONTENT_TYPE;

/// Every metric the router exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open tunnels right now.
    pub active_connections: Gauge,
    /// Upgrade requests by `result` (`upgraded` or `refused`).
    pub connections: Family<Label, Counter>,
    /// Refused or failed upgrades by `reason` (the error code).
    pub upgrade_errors: Family<Label, Counter>,
    /// Version of the ring in use (0 = none).
    pub ring_version: Gauge,
    /// Members of the ring in use.
    pub ring_members: Gauge,
    /// Offered rings by `source` and `outcome` (`applied`, `unchanged`, `conflict`, `invalid`).
    pub ring_updates: Family<Labels2, Counter>,
    /// Reset messages (one per old owner per ring change) published to Redis.
    pub resets_published: Counter,
    /// Reset messages that could not be published (those connections rely on the forced close).
    pub reset_publish_errors: Counter,
    /// Connections whose key moved away from their pod, i.e. scheduled for a reset.
    pub connections_reset: Counter,
    /// Moved connections still open at the reset timeout, closed by the router.
    pub forced_closes: Counter,
    /// Push API requests by `kind` (`key`, `broadcast`) and `result` (`ok` or an error code).
    pub push_requests: Family<Labels2, Counter>,
    /// Open HTTP/2 connections to pods (`--pod-transport h2`; 0 with HTTP/1.1).
    pub pod_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All metrics, registered under the `wsring_router_` prefix.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            active_connections: Gauge::default(),
            connections: Family::default(),
            upgrade_errors: Family::default(),
            ring_version: Gauge::default(),
            ring_members: Gauge::default(),
            ring_updates: Family::default(),
            resets_published: Counter::default(),
            reset_publish_errors: Counter::default(),
            connections_reset: Counter::default(),
            forced_closes: Counter::default(),
            push_requests: Family::default(),
            pod_connections: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "wsring_router_active_connections",
            "Open tunnels",
            m.active_connections.clone(),
        );
        r.register(
            "wsring_router_connections",
            "Upgrade requests by result",
            m.connections.clone(),
        );
        r.register(
            "wsring_router_upgrade_errors",
            "Refused or failed upgrades by reason",
            m.upgrade_errors.clone(),
        );
        r.register(
            "wsring_router_ring_version",
            "Version of the ring in use",
            m.ring_version.clone(),
        );
        r.register(
            "wsring_router_ring_members",
            "Members of the ring in use",
            m.ring_members.clone(),
        );
        r.register(
            "wsring_router_ring_updates",
            "Offered rings by source and outcome",
            m.ring_updates.clone(),
        );
        r.register(
            "wsring_router_resets_published",
            "Batched reset messages published to Redis",
            m.resets_published.clone(),
        );
        r.register(
            "wsring_router_reset_publish_errors",
            "Batched reset messages that could not be published",
            m.reset_publish_errors.clone(),
        );
        r.register(
            "wsring_router_connections_reset",
            "Connections whose key moved to another pod",
            m.connections_reset.clone(),
        );
        r.register(
            "wsring_router_forced_closes",
            "Moved connections closed by the router after the reset timeout",
            m.forced_closes.clone(),
        );
        r.register(
            "wsring_router_push_requests",
            "Push API requests by kind and result",
            m.push_requests.clone(),
        );
        r.register(
            "wsring_router_pod_connections",
            "Open HTTP/2 connections to pods (--pod-transport h2)",
            m.pod_connections.clone(),
        );
        m
    }

    /// Count a refused or failed upgrade.
    pub fn upgrade_failed(&self, reason: &'static str) {
        self.connections
            .get_or_create(&[("result", "refused")])
            .inc();
        self.upgrade_errors
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Count a successful upgrade.
    pub fn upgraded(&self) {
        self.connections
            .get_or_create(&[("result", "upgraded")])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        wsring_core::openmetrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labelled families are only encoded once they have a sample.
    fn every_family_with_a_sample() -> Metrics {
        let m = Metrics::new();
        m.upgraded();
        m.upgrade_failed("missing_key");
        m.ring_updates
            .get_or_create(&[("source", "api"), ("outcome", "applied")])
            .inc();
        m.push_requests
            .get_or_create(&[("kind", "key"), ("result", "ok")])
            .inc();
        m
    }

    #[test]
    fn the_documented_metrics_are_the_exported_ones() {
        use wsring_core::testkit::{documented_metric_names, exported_metric_names};
        let docs = include_str!("../../docs/interfaces.md");
        assert_eq!(
            exported_metric_names(&every_family_with_a_sample().encode()),
            documented_metric_names(docs, "wsring_router_"),
            "docs/interfaces.md, section Metrics"
        );
    }

    #[test]
    fn encodes_every_metric() {
        let m = every_family_with_a_sample();
        m.forced_closes.inc();
        m.ring_version.set(7);
        let text = m.encode();
        for needle in [
            "wsring_router_connections_total{result=\"upgraded\"} 1",
            "wsring_router_connections_total{result=\"refused\"} 1",
            "wsring_router_upgrade_errors_total{reason=\"missing_key\"} 1",
            "wsring_router_forced_closes_total 1",
            "wsring_router_ring_version 7",
            "wsring_router_active_connections 0",
            "wsring_router_resets_published_total 0",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
