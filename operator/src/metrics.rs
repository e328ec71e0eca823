//! Prometheus metrics of the operator (prometheus-client), served on `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::Error;

/// Labels naming one cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// Namespace of the `WebSocketCluster`.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Labels of a failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`Error::metric_label`].
    pub error: String,
}

/// All operator metrics; cheap to share (`Arc<Metrics>` in the context).
pub struct Metrics {
    /// Reconciles started.
    pub reconciliations: Counter,
    /// Reconciles that failed, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Ring version published per cluster.
    pub ring_version: Family<ClusterLabels, Gauge>,
    /// Router notifications that failed (the router converges via the ConfigMap).
    pub notify_failures: Counter,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciliations: Counter::default(),
            failures: Family::default(),
            ring_version: Family::default(),
            notify_failures: Counter::default(),
            reconcile_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        }
    }
}

impl Metrics {
    /// Register every metric under the `wsring_operator` prefix.
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("wsring_operator");
        r.register(
            "reconciliations",
            "Reconciles started",
            self.reconciliations.clone(),
        );
        r.register(
            "reconcile_failures",
            "Reconciles that failed, by error kind",
            self.failures.clone(),
        );
        r.register(
            "ring_version",
            "Ring version published per cluster",
            self.ring_version.clone(),
        );
        r.register(
            "router_notify_failures",
            "PUT /ring notifications that failed",
            self.notify_failures.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            self.reconcile_duration.clone(),
        );
        self
    }

    /// Count a reconcile and time it until the guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciliations.inc();
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// Count a failed reconcile.
    pub fn reconcile_failed(&self, error: &Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Record the ring version a cluster publishes.
    pub fn set_ring_version(&self, namespace: &str, name: &str, version: u64) {
        self.ring_version
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric after one reconcile, labelled families with a sample
    /// (only then are they encoded).
    fn operator_exposition() -> String {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        drop(metrics.reconcile_started());
        metrics.reconcile_failed(&Error::InvalidSpec("x".into()));
        metrics.set_ring_version("testns", "chat", 7);
        wsring_core::openmetrics::encode(&registry)
    }

    #[test]
    fn the_documented_metrics_are_the_exported_ones() {
        use wsring_core::testkit::{documented_metric_names, exported_metric_names};
        let docs = include_str!("../../docs/interfaces.md");
        assert_eq!(
            exported_metric_names(&operator_exposition()),
            documented_metric_names(docs, "wsring_operator_"),
            "docs/interfaces.md, section Metrics"
        );
    }

    #[test]
    fn exposes_the_documented_series() {
        let text = operator_exposition();
        assert!(text.contains("wsring_operator_reconciliations_total 1"));
        assert!(text.contains("wsring_operator_reconcile_failures_total{error=\"invalid_spec\"} 1"));
        assert!(text.contains("wsring_operator_ring_version{namespace=\"testns\",name=\"chat\"} 7"));
        assert!(text.contains("wsring_operator_reconcile_duration_seconds_count 1"));
    }
}
