//! [`WebSocketClusterSpec::validate`]: the checks the CRD schema cannot express
//! (rules across fields, the full origin syntax, the names and ports the
//! operator reserves in every pod), run by every reconcile before anything is
//! applied. Each rule is one small function, run in a fixed order; the first
//! that fails is the error reported on the cluster.

use wsring_core::origin::parse_allow_list;
use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT};
use wsring_core::ring::MAX_VNODES;

use super::{GatewaySpec, KeySource, RedisSpec, RouterSpec, RoutingSpec, WebSocketClusterSpec};
use crate::error::Error;
use crate::names::{is_reserved_pod_port, REDIS_CA_VOLUME, SIDECAR_NAME};

impl WebSocketClusterSpec {
    /// Checks the schema cannot express. A violation is reported on the object
    /// (Degraded condition, Warning event) instead of being applied.
    pub fn validate(&self) -> Result<(), Error> {
        replica_counts_not_negative(self)?;
        ports_in_range(self)?;
        routing_is_usable(&self.routing)?;
        if let Some(redis) = &self.redis {
            redis_is_consistent(redis)?;
        }
        if let Some(gateway) = &self.gateway {
            gateway_is_complete(gateway)?;
        }
        allowed_origins_parse(&self.router)?;
        app_port_is_not_the_sidecars(self.app_port)?;
        template_volumes_leave_the_redis_ca_name(self)?;
        app_containers_leave_the_sidecars_name_and_ports(self)?;
        history_has_redis(self)?;
        Ok(())
    }
}

/// History is kept in Redis (the schema's CEL rule says so too; this covers
/// API servers that do not run CEL).
fn history_has_redis(spec: &WebSocketClusterSpec) -> Result<(), Error> {
    let history = spec.delivery.as_ref().and_then(|d| d.history.as_ref());
    if history.is_some() && spec.redis.is_none() {
        return invalid("delivery.history is kept in Redis: set spec.redis too".into());
    }
    Ok(())
}

/// The refusal every check returns.
fn invalid(message: String) -> Result<(), Error> {
    Err(Error::InvalidSpec(message))
}

/// A negative replica count would be refused by the StatefulSet or the
/// Deployment only after the ring had been published.
fn replica_counts_not_negative(spec: &WebSocketClusterSpec) -> Result<(), Error> {
    if spec.replicas < 0 {
        return invalid(format!("replicas must be >= 0, got {}", spec.replicas));
    }
    if spec.router.replicas < 0 {
        return invalid(format!(
            "router.replicas must be >= 0, got {}",
            spec.router.replicas
        ));
    }
    Ok(())
}

/// The app port and the public Service port must be TCP ports; the schema says
/// so too, but a CRD installed without validation would not.
fn ports_in_range(spec: &WebSocketClusterSpec) -> Result<(), Error> {
    if !(1..=65535).contains(&spec.app_port) {
        return invalid(format!(
            "appPort must be in 1..=65535, got {}",
            spec.app_port
        ));
    }
    if !(1..=65535).contains(&spec.router.service.port) {
        return invalid(format!(
            "router.service.port must be in 1..=65535, got {}",
            spec.router.service.port
        ));
    }
    Ok(())
}

/// The ring the routers build must exist (virtual nodes in range, a bounded
/// load above 1.0) and the router must know where to read the key.
fn routing_is_usable(routing: &RoutingSpec) -> Result<(), Error> {
    let vnodes = routing.virtual_nodes;
    if vnodes == 0 || vnodes > MAX_VNODES {
        return invalid(format!(
            "routing.virtualNodes must be in 1..={MAX_VNODES}, got {vnodes}"
        ));
    }
    if let Some(c) = routing.bounded_load {
        if !c.is_finite() || c <= 1.0 {
            return invalid(format!("routing.boundedLoad must be > 1.0, got {c}"));
        }
    }
    if routing.key.from != KeySource::Path && routing.key.name.is_empty() {
        return invalid(format!(
            "routing.key.name must not be empty for from: {}",
            routing.key.from.as_str()
        ));
    }
    Ok(())
}

/// One source for the Redis URL, and a CA certificate only where TLS will
/// use it.
fn redis_is_consistent(redis: &RedisSpec) -> Result<(), Error> {
    if redis.url.is_some() && redis.url_secret_ref.is_some() {
        return invalid("redis: set either url or urlSecretRef, not both".into());
    }
    let plain_url = redis.url.as_deref().is_some_and(|u| {
        ["redis://", "redis+sentinel://", "redis+cluster://"]
            .iter()
            .any(|scheme| u.starts_with(scheme))
    });
    if redis.ca_secret_ref.is_some() && plain_url {
        return invalid(
            "redis.caSecretRef verifies TLS, but redis.url is redis://, redis+sentinel:// or redis+cluster:// (no TLS); use rediss://".into(),
        );
    }
    Ok(())
}

/// An HTTPRoute needs at least one named Gateway to attach to, and host names
/// the Gateway API accepts.
fn gateway_is_complete(gateway: &GatewaySpec) -> Result<(), Error> {
    if gateway.parent_refs.is_empty() {
        return invalid("gateway.parentRefs must name at least one Gateway".into());
    }
    if let Some(p) = gateway.parent_refs.iter().find(|p| p.name.is_empty()) {
        return invalid(format!(
            "gateway.parentRefs: a Gateway name is empty ({p:?})"
        ));
    }
    if let Some(h) = gateway.hostnames.iter().find(|h| !is_gateway_hostname(h)) {
        return invalid(format!(
            "gateway.hostnames: {h:?} is not a host name (lowercase labels, optionally `*.` first)"
        ));
    }
    Ok(())
}

/// Whether `host` is a Gateway API `Hostname`: [`GATEWAY_HOSTNAME_PATTERN`](super::GATEWAY_HOSTNAME_PATTERN)
/// spelled out, since the operator has no regex engine.
fn is_gateway_hostname(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !host.is_empty() && host.len() <= 253 && name.split('.').all(label_ok)
}
/// The routers parse the origin allow-list with these same rules
/// (`wsring_core::origin`); the schema checks only its shape.
fn allowed_origins_parse(router: &RouterSpec) -> Result<(), Error> {
    parse_allow_list(&router.allowed_origins, router.require_origin)
        .map_err(|e| Error::InvalidSpec(format!("router.allowedOrigins: {e}")))?;
    Ok(())
}

/// The app listens inside the pod next to the ws-pod sidecar, so it cannot
/// take the sidecar's ports.
fn app_port_is_not_the_sidecars(app_port: i32) -> Result<(), Error> {
    if is_reserved_pod_port(app_port) {
        return invalid(format!(
            "appPort {app_port} is taken by the ws-pod sidecar ({POD_WS_PORT}, {POD_ADMIN_PORT})"
        ));
    }
    Ok(())
}

/// The operator adds the Redis CA volume to every pod; a template volume of
/// the same name would clash with it. Also refuses a template that does not
/// parse.
fn template_volumes_leave_the_redis_ca_name(spec: &WebSocketClusterSpec) -> Result<(), Error> {
    let volumes = spec
        .pod_template()?
        .and_then(|t| t.spec)
        .and_then(|s| s.volumes)
        .unwrap_or_default();
    if let Some(v) = volumes.iter().find(|v| v.name == REDIS_CA_VOLUME) {
        return invalid(format!(
            "volume name {:?} is reserved for the Redis CA certificate",
            v.name
        ));
    }
    Ok(())
}

/// The operator appends the ws-pod sidecar to every pod; an app container
/// must not share its name or its ports.
fn app_containers_leave_the_sidecars_name_and_ports(
    spec: &WebSocketClusterSpec,
) -> Result<(), Error> {
    for c in spec.app_containers() {
        if c.name == SIDECAR_NAME {
            return invalid(format!(
                "container name {:?} is reserved for the sidecar",
                c.name
            ));
        }
        for p in c.ports.iter().flatten() {
            if is_reserved_pod_port(p.container_port) {
                return invalid(format!(
                    "container {:?} uses port {}, taken by the ws-pod sidecar",
                    c.name, p.container_port
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::crd::{
        DeliverySpec, HistorySpec, KeySource, RedisSpec, RoutingKey, SecretKeyRef,
        WebSocketClusterSpec,
    };
    use crate::error::Error;

    #[test]
    fn validate_refuses_what_the_schema_cannot_express() {
        let both_urls = WebSocketClusterSpec {
            redis: Some(RedisSpec {
                url: Some("redis://r:6379".into()),
                url_secret_ref: Some(SecretKeyRef {
                    name: "s".into(),
                    key: "k".into(),
                }),
                password_secret_ref: None,
                ca_secret_ref: None,
            }),
            ..WebSocketClusterSpec::default()
        };
        let ca_without_tls = WebSocketClusterSpec {
            redis: Some(RedisSpec {
                url: Some("redis://r:6379".into()),
                ca_secret_ref: Some(SecretKeyRef {
                    name: "ca".into(),
                    key: "ca.crt".into(),
                }),
                ..RedisSpec::default()
            }),
            ..WebSocketClusterSpec::default()
        };
        let mut cluster_ca = ca_without_tls.clone();
        if let Some(redis) = cluster_ca.redis.as_mut() {
            redis.url = Some("redis+cluster://n0:6379,n1:6379".into());
        }
        let mut bad_origin = WebSocketClusterSpec::default();
        bad_origin.router.allowed_origins = vec!["https://*.com".into()];
        let mut require_without_list = WebSocketClusterSpec::default();
        require_without_list.router.require_origin = true;
        let reserved_volume = WebSocketClusterSpec {
            template: Some(serde_json::json!({"spec": {
                "containers": [{"name": "app", "image": "a"}],
                "volumes": [{"name": "wsring-redis-ca", "emptyDir": {}}]
            }})),
            ..WebSocketClusterSpec::default()
        };
        let sidecar_port = WebSocketClusterSpec {
            app_port: 9091,
            ..WebSocketClusterSpec::default()
        };
        let mut too_many_vnodes = WebSocketClusterSpec::default();
        too_many_vnodes.routing.virtual_nodes = 5000;
        let mut bound_too_low = WebSocketClusterSpec::default();
        bound_too_low.routing.bounded_load = Some(1.0);
        let mut empty_header = WebSocketClusterSpec::default();
        empty_header.routing.key = RoutingKey {
            from: KeySource::Header,
            name: String::new(),
        };
        let history_without_redis = WebSocketClusterSpec {
            delivery: Some(DeliverySpec {
                history: Some(HistorySpec {
                    size: 100,
                    ttl: "5m".into(),
                    replicas: 0,
                }),
            }),
            ..WebSocketClusterSpec::default()
        };
        for (spec, why) in [
            (history_without_redis, "delivery.history is kept in Redis"),
            (ca_without_tls, "rediss://"),
            (cluster_ca, "(no TLS); use rediss://"),
            (bad_origin, "top-level domain"),
            (require_without_list, "non-empty allow-list"),
            (reserved_volume, "reserved for the Redis CA"),
        ] {
            let err = spec.validate().unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        for spec in [
            both_urls,
            sidecar_port,
            too_many_vnodes,
            bound_too_low,
            empty_header,
        ] {
            assert!(
                matches!(spec.validate(), Err(Error::InvalidSpec(_))),
                "{spec:?}"
            );
        }
    }
}
