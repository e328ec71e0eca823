//! Desired child objects of a `WebSocketCluster`, as pure functions of the spec.
//!
//! Every builder takes the cluster and returns a complete object (apiVersion,
//! kind, name, namespace, labels, controller owner reference) ready for
//! server-side apply, so the reconciler only sends them and tests compare them
//! without an API server. Names and labels follow the "Kubernetes shape" table
//! of `docs/interfaces.md`.

pub mod httproute;
pub mod ingress;
pub mod network_policy;
pub mod rbac;
pub mod ring_configmap;
pub mod router;
pub mod services;
pub mod statefulset;
pub mod token;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::WebSocketCluster;
use crate::names::REDIS_CA_VOLUME;

/// Field manager of every server-side apply the operator sends.
pub const MANAGER: &str = "wsring-operator";

/// Routers and ws-pods keep serving this long after SIGTERM, not ready, before
/// they close their listeners (`WSRING_SHUTDOWN_DELAY_MS`): a terminating pod's
/// endpoint is removed concurrently with the signal, and kube-proxy, ingress
/// controllers and the ring need a moment to stop sending new connections
/// (found on a real cluster: without it a router rollout gave 502s at the
/// edge). For a ws-pod it also lets the ring change reset its moved
/// connections with 4001 before the drain's 1001.
pub const SHUTDOWN_DELAY_MS: i64 = 5_000;

/// Resources of a container the operator creates, when the spec sets none:
/// every container gets a memory request and a memory limit (so one cluster
/// cannot starve a node), and a CPU request.
pub fn default_resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.to_string()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Which half of the data plane an object belongs to (`app.kubernetes.io/component`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The StatefulSet pods (ring members).
    Pod,
    /// The router Deployment.
    Router,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Pod => "pod",
            Component::Router => "router",
        }
    }
}

/// Object names for a cluster, in one place so every builder and the
/// membership code agree.
pub struct Names;

impl Names {
    /// Headless Service of the pods; its EndpointSlices are the ring members.
    pub fn pods_service(cluster: &str) -> String {
        format!("{cluster}-pods")
    }
    /// Router Deployment, ServiceAccount, Role and RoleBinding.
    pub fn router(cluster: &str) -> String {
        format!("{cluster}-router")
    }
    /// ClusterIP Service of the router admin port; its endpoints are notified.
    pub fn router_admin_service(cluster: &str) -> String {
        format!("{cluster}-router-admin")
    }
    /// Ring ConfigMap.
    pub fn ring_configmap(cluster: &str) -> String {
        format!("{cluster}-ring")
    }
    /// Bearer token Secret.
    pub fn token_secret(cluster: &str) -> String {
        format!("{cluster}-token")
    }
}

/// Labels that select one component's pods (stable: part of immutable selectors).
pub fn selector_labels(wsc: &WebSocketCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "wsring".to_string()),
        ("app.kubernetes.io/instance".to_string(), wsc.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        ),
    ])
}

/// Selector labels plus `managed-by`, put on every object and pod.
pub fn labels(wsc: &WebSocketCluster, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(wsc, component);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGER.to_string(),
    );
    labels
}

/// The pod selector as the string form the scale subresource and HPA read.
pub fn selector_string(wsc: &WebSocketCluster) -> String {
    selector_labels(wsc, Component::Pod)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of a child: name, the cluster's namespace, labels and the controller
/// owner reference, so deleting the cluster garbage-collects every child.
pub fn child_meta(wsc: &WebSocketCluster, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: wsc.namespace(),
        labels: Some(labels(wsc, component)),
        owner_references: wsc.controller_owner_ref(&()).map(|mut owner| {
            // Foreground deletion of the cluster waits for its children.
            owner.block_owner_deletion = Some(true);
            vec![owner]
        }),
        ..ObjectMeta::default()
    }
}

/// Default image of a component: the operator's own release, so operator and
/// data plane upgrade together unless the spec pins an image.
pub fn default_image(component: &str) -> String {
    format!("ghcr.io/wsring/{component}:{}", env!("CARGO_PKG_VERSION"))
}

/// Hardened container security context: non-root, read-only root filesystem,
/// no capabilities, no privilege escalation, runtime-default seccomp.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Where routers and pods find the Redis CA certificate.
pub const REDIS_CA_DIR: &str = "/etc/wsring/redis-ca";
/// File name of the CA certificate inside [`REDIS_CA_DIR`].
const REDIS_CA_FILE: &str = "ca.crt";

/// Redis settings shared by routers and pods (`WSRING_REDIS_URL`,
/// `WSRING_REDIS_PASSWORD`, `WSRING_REDIS_CA_FILE`).
pub fn redis_env(wsc: &WebSocketCluster) -> Vec<EnvVar> {
    let Some(redis) = &wsc.spec.redis else {
        return Vec::new();
    };
    let mut env = Vec::new();
    if let Some(url) = &redis.url {
        env.push(value_env("WSRING_REDIS_URL", url.clone()));
    } else if let Some(r) = &redis.url_secret_ref {
        env.push(secret_env(
            "WSRING_REDIS_URL",
            r.name.clone(),
            r.key.clone(),
        ));
    }
    if let Some(r) = &redis.password_secret_ref {
        env.push(secret_env(
            "WSRING_REDIS_PASSWORD",
            r.name.clone(),
            r.key.clone(),
        ));
    }
    if redis.ca_secret_ref.is_some() {
        env.push(value_env(
            "WSRING_REDIS_CA_FILE",
            format!("{REDIS_CA_DIR}/{REDIS_CA_FILE}"),
        ));
    }
    env
}

/// The Redis CA Secret as a read-only volume of one file, when the spec names one.
pub fn redis_ca_volume(wsc: &WebSocketCluster) -> Option<Volume> {
    let ca = wsc.spec.redis.as_ref()?.ca_secret_ref.as_ref()?;
    Some(Volume {
        name: REDIS_CA_VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ca.name.clone()),
            items: Some(vec![KeyToPath {
                key: ca.key.clone(),
                path: REDIS_CA_FILE.to_string(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(0o444),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// Mount of [`redis_ca_volume`] at [`REDIS_CA_DIR`], when there is one.
pub fn redis_ca_mounts(wsc: &WebSocketCluster) -> Option<Vec<VolumeMount>> {
    redis_ca_volume(wsc).map(|v| {
        vec![VolumeMount {
            name: v.name,
            mount_path: REDIS_CA_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]
    })
}

/// A plain `name=value` env var.
pub fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    }
}

/// An env var from the downward API (`metadata.name`, `metadata.namespace`).
pub fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// An env var from a Secret key.
pub fn secret_env(name: &str, secret: String, key: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key,
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// An HTTP GET probe on a named container port.
pub fn http_probe(path: &str, port: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(port.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// A named TCP container port.
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_string_is_sorted_and_complete() {
        let wsc = WebSocketCluster::test();
        assert_eq!(
            selector_string(&wsc),
            "app.kubernetes.io/component=pod,app.kubernetes.io/instance=chat,app.kubernetes.io/name=wsring"
        );
    }

    #[test]
    fn child_meta_is_owned_by_the_cluster() {
        let wsc = WebSocketCluster::test();
        let meta = child_meta(&wsc, "chat-pods".into(), Component::Pod);
        assert_eq!(meta.namespace.as_deref(), Some("testns"));
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "WebSocketCluster");
        assert_eq!(owner.name, "chat");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(
            meta.labels.unwrap()["app.kubernetes.io/managed-by"],
            "wsring-operator"
        );
    }
}
