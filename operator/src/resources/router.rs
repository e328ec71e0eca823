//! The router Deployment `NAME-router`: routers are stateless (the ring comes
//! from the ConfigMap and `PUT /ring`), so a Deployment is enough.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use wsring_core::protocol::{ROUTER_ADMIN_PORT, ROUTER_WS_PORT};

use super::token::token_env;
use super::{
    child_meta, container_port, default_image, default_resources, field_env, http_probe, labels,
    redis_ca_mounts, redis_ca_volume, redis_env, restricted_security_context, selector_labels,
    value_env, Component, Names, SHUTDOWN_DELAY_MS,
};
use crate::crd::WebSocketCluster;

/// Name of the router container.
pub const CONTAINER_NAME: &str = "router";

/// The desired router Deployment.
pub fn deployment(wsc: &WebSocketCluster) -> Deployment {
    let name = wsc.name_any();
    Deployment {
        metadata: child_meta(wsc, Names::router(&name), Component::Router),
        spec: DeploymentSpec {
            replicas: Some(wsc.spec.router.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(wsc, Component::Router)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(wsc, Component::Router)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(Names::router(&name)),
                    containers: vec![container(wsc)],
                    volumes: redis_ca_volume(wsc).map(|v| vec![v]),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

fn container(wsc: &WebSocketCluster) -> Container {
    let name = wsc.name_any();
    let key = &wsc.spec.routing.key;
    let mut env = vec![
        field_env("WSRING_ROUTER_ID", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        value_env("WSRING_CLUSTER", name.clone()),
        value_env("WSRING_LISTEN", format!("0.0.0.0:{ROUTER_WS_PORT}")),
        value_env(
            "WSRING_ADMIN_LISTEN",
            format!("0.0.0.0:{ROUTER_ADMIN_PORT}"),
        ),
        value_env("WSRING_KEY_SOURCE", key.from.as_str().to_string()),
        value_env("WSRING_KEY_NAME", key.name.clone()),
        value_env("WSRING_RING_CONFIGMAP", Names::ring_configmap(&name)),
        value_env("WSRING_SHUTDOWN_DELAY_MS", SHUTDOWN_DELAY_MS.to_string()),
        token_env(wsc),
    ];
    let router = &wsc.spec.router;
    if !router.allowed_origins.is_empty() {
        env.push(value_env(
            "WSRING_ALLOWED_ORIGINS",
            router.allowed_origins.join(","),
        ));
    }
    if router.require_origin {
        env.push(value_env("WSRING_REQUIRE_ORIGIN", "true".to_string()));
    }
    env.push(value_env(
        "WSRING_POD_TRANSPORT",
        router.pod_transport.as_str().to_string(),
    ));
    env.extend(redis_env(wsc));
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(
            wsc.spec
                .images
                .router
                .clone()
                .unwrap_or_else(|| default_image("wsring-router")),
        ),
        image_pull_policy: Some(wsc.spec.images.pull_policy.as_str().to_string()),
        env: Some(env),
        ports: Some(vec![
            container_port("ws", i32::from(ROUTER_WS_PORT)),
            container_port("admin", i32::from(ROUTER_ADMIN_PORT)),
        ]),
        readiness_probe: Some(http_probe("/readyz", "admin", 5, 2)),
        liveness_probe: Some(http_probe("/healthz", "admin", 10, 3)),
        resources: Some(
            router
                .resources
                .clone()
                .unwrap_or_else(|| default_resources("50m", "32Mi", "256Mi")),
        ),
        volume_mounts: redis_ca_mounts(wsc),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KeySource;

    fn env(d: &Deployment, name: &str) -> Option<String> {
        let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    #[test]
    fn router_reads_key_and_watches_the_ring_configmap() {
        let mut wsc = WebSocketCluster::test();
        wsc.spec.routing.key.from = KeySource::Header;
        wsc.spec.routing.key.name = "x-room".into();
        wsc.spec.router.replicas = 3;
        let d = deployment(&wsc);
        assert_eq!(d.metadata.name.as_deref(), Some("chat-router"));
        assert_eq!(d.spec.replicas, Some(3));
        assert_eq!(env(&d, "WSRING_KEY_SOURCE").as_deref(), Some("header"));
        assert_eq!(env(&d, "WSRING_KEY_NAME").as_deref(), Some("x-room"));
        assert_eq!(
            env(&d, "WSRING_RING_CONFIGMAP").as_deref(),
            Some("chat-ring")
        );
        assert_eq!(env(&d, "WSRING_CLUSTER").as_deref(), Some("chat"));
        assert_eq!(
            env(&d, "WSRING_ALLOWED_ORIGINS"),
            None,
            "default: every origin"
        );
        assert_eq!(env(&d, "WSRING_REQUIRE_ORIGIN"), None);
        assert_eq!(env(&d, "WSRING_POD_TRANSPORT").as_deref(), Some("http1"));
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("chat-router"));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("ghcr.io/wsring/wsring-router:0.1.0")
        );
        assert!(pod.volumes.is_none());
    }

    #[test]
    fn origin_allow_list_reaches_the_router() {
        let mut wsc = WebSocketCluster::test();
        wsc.spec.router.allowed_origins = vec![
            "https://chat.example.com".into(),
            "https://*.chat.example.com".into(),
        ];
        wsc.spec.router.require_origin = true;
        wsc.spec.validate().unwrap();
        let d = deployment(&wsc);
        assert_eq!(
            env(&d, "WSRING_ALLOWED_ORIGINS").as_deref(),
            Some("https://chat.example.com,https://*.chat.example.com")
        );
        assert_eq!(env(&d, "WSRING_REQUIRE_ORIGIN").as_deref(), Some("true"));
    }

    #[test]
    fn redis_ca_is_mounted_into_the_router() {
        let wsc = WebSocketCluster::test().with_redis_secret();
        let d = deployment(&wsc);
        assert_eq!(
            env(&d, "WSRING_REDIS_CA_FILE").as_deref(),
            Some("/etc/wsring/redis-ca/ca.crt")
        );
        let pod = d.spec.template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.name, volume.name);
        assert_eq!(mount.read_only, Some(true));
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("redis-ca"));
        assert_eq!(secret.default_mode, Some(0o444));
    }
}
