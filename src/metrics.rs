//! Reading the Prometheus text the router and the pods export on their
//! admin `/metrics`: the benchmarks cross-check open connections with it,
//! the soak reads the router's reset counters.

/// The value of the first unlabelled sample whose name ends in `suffix` in a
/// Prometheus text exposition (e.g. `…_active_connections`).
pub fn metric_value(text: &str, suffix: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.split_once(' ')?;
        name.ends_with(suffix)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_finds_the_unlabelled_gauge() {
        let text = "# HELP x y\nwsring_router_connections_total{result=\"upgraded\"} 3\n\
                    wsring_router_active_connections 42\n";
        assert_eq!(metric_value(text, "active_connections"), Some(42.0));
        assert_eq!(metric_value(text, "nothing"), None);
    }
}
