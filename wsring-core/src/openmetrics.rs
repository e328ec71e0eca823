//! The `/metrics` answer of the router, ws-pod and the operator (feature
//! `metrics`): each keeps its own prometheus-client registry, and all three
//! encode it and label the answer the same way, here.

use prometheus_client::registry::Registry;

/// Content type of [`encode`]'s text: OpenMetrics, as prometheus-client
/// writes it (counters get the `_total` suffix).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn a_registry_is_encoded_as_openmetrics_text() {
        let mut registry = Registry::with_prefix("wsring_test");
        let counter = Counter::<u64>::default();
        registry.register("requests", "Requests seen", counter.clone());
        counter.inc();
        let text = encode(&registry);
        assert!(text.contains("wsring_test_requests_total 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
