//! The StatefulSet `NAME`: app container(s) from the spec's template plus the
//! ws-pod sidecar. StatefulSet names are stable, so a restarted pod takes back
//! exactly its own keys and scaling adds or removes the highest ordinal.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT};

use super::token::token_env;
use super::{
    child_meta, container_port, default_image, default_resources, field_env, http_probe, labels,
    redis_ca_mounts, redis_ca_volume, redis_env, restricted_security_context, selector_labels,
    value_env, Component, Names, SHUTDOWN_DELAY_MS,
};
use crate::crd::WebSocketCluster;

/// Name of the sidecar container, re-exported here beside the builder that
/// adds it (its one definition is [`crate::names`]).
pub use crate::names::SIDECAR_NAME;

/// ws-pod drains for at most this long on SIGTERM (`WSRING_DRAIN_TIMEOUT_MS`).
const DRAIN_TIMEOUT_MS: i64 = 10_000;
/// Grace period used when the template sets none: the shutdown delay and the
/// drain plus a margin for the app.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The desired StatefulSet.
pub fn statefulset(wsc: &WebSocketCluster) -> StatefulSet {
    let name = wsc.name_any();
    StatefulSet {
        metadata: child_meta(wsc, name.clone(), Component::Pod),
        spec: StatefulSetSpec {
            replicas: Some(wsc.spec.replicas),
            service_name: Some(Names::pods_service(&name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(wsc, Component::Pod)),
                match_expressions: None,
            },
            // Pods join the ring independently; ordered start-up would only
            // serialise ring changes without protecting anything.
            pod_management_policy: Some("Parallel".to_string()),
            template: pod_template(wsc),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

/// The user's template with our labels merged in and the sidecar appended.
fn pod_template(wsc: &WebSocketCluster) -> PodTemplateSpec {
    // The reconciler validated the spec (template included) before building.
    let user = wsc.spec.pod_template().ok().flatten().unwrap_or_default();
    let mut metadata = user.metadata.unwrap_or_default();
    let mut pod_labels = metadata.labels.take().unwrap_or_default();
    pod_labels.extend(labels(wsc, Component::Pod));
    metadata = ObjectMeta {
        labels: Some(pod_labels),
        annotations: metadata.annotations,
        ..ObjectMeta::default()
    };

    let echo = wsc.spec.app_containers().is_empty();
    let mut spec = user.spec.unwrap_or_default();
    spec.containers.push(sidecar(wsc, !echo));
    if let Some(ca) = redis_ca_volume(wsc) {
        spec.volumes.get_or_insert_with(Vec::new).push(ca);
    }
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        });
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_GRACE_SECONDS);
    }
    if echo && spec.automount_service_account_token.is_none() {
        // The echo pod never talks to the API server.
        spec.automount_service_account_token = Some(false);
    }
    PodTemplateSpec {
        metadata: Some(metadata),
        spec: Some(PodSpec { ..spec }),
    }
}

/// The ws-pod sidecar: terminates WebSocket in front of the app, so it can close
/// any one connection (ring moved) without the app's help.
fn sidecar(wsc: &WebSocketCluster, upstream: bool) -> Container {
    let mut env = vec![
        field_env("WSRING_POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        value_env("WSRING_CLUSTER", wsc.name_any()),
        value_env("WSRING_LISTEN", format!("0.0.0.0:{POD_WS_PORT}")),
        value_env("WSRING_ADMIN_LISTEN", format!("0.0.0.0:{POD_ADMIN_PORT}")),
        value_env("WSRING_SHUTDOWN_DELAY_MS", SHUTDOWN_DELAY_MS.to_string()),
        value_env("WSRING_DRAIN_TIMEOUT_MS", DRAIN_TIMEOUT_MS.to_string()),
        token_env(wsc),
    ];
    if upstream {
        env.push(value_env(
            "WSRING_UPSTREAM",
            format!("ws://127.0.0.1:{}", wsc.spec.app_port),
        ));
    }
    env.extend(redis_env(wsc));
    if let Some(history) = wsc.spec.delivery.as_ref().and_then(|d| d.history.as_ref()) {
        env.push(value_env("WSRING_HISTORY_SIZE", history.size.to_string()));
        env.push(value_env("WSRING_HISTORY_TTL", history.ttl.clone()));
        env.push(value_env(
            "WSRING_HISTORY_REPLICAS",
            history.replicas.to_string(),
        ));
    }
    Container {
        name: SIDECAR_NAME.to_string(),
        image: Some(
            wsc.spec
                .images
                .ws_pod
                .clone()
                .unwrap_or_else(|| default_image("ws-pod")),
        ),
        image_pull_policy: Some(wsc.spec.images.pull_policy.as_str().to_string()),
        env: Some(env),
        ports: Some(vec![
            container_port("ws", i32::from(POD_WS_PORT)),
            container_port("admin", i32::from(POD_ADMIN_PORT)),
        ]),
        readiness_probe: Some(http_probe("/readyz", "admin", 5, 2)),
        liveness_probe: Some(http_probe("/healthz", "admin", 10, 3)),
        resources: Some(
            wsc.spec
                .sidecar
                .resources
                .clone()
                .unwrap_or_else(|| default_resources("50m", "32Mi", "512Mi")),
        ),
        volume_mounts: redis_ca_mounts(wsc),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::REDIS_CA_VOLUME;
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar};

    fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
        c.env.iter().flatten().find(|e| e.name == name)
    }

    fn containers(sts: &StatefulSet) -> &[Container] {
        &sts.spec.template.spec.as_ref().unwrap().containers
    }

    #[test]
    fn echo_mode_runs_only_the_sidecar() {
        let sts = statefulset(&WebSocketCluster::test().with_replicas(3));
        let spec = &sts.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("chat-pods"));
        let c = containers(&sts);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "ws-pod");
        assert_eq!(c[0].image.as_deref(), Some("ghcr.io/wsring/ws-pod:0.1.0"));
        assert!(env(&c[0], "WSRING_UPSTREAM").is_none());
        let pod_name = env(&c[0], "WSRING_POD_NAME").unwrap();
        assert_eq!(
            pod_name
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let token = env(&c[0], "WSRING_TOKEN").unwrap();
        let secret = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("chat-token", "token")
        );
    }

    #[test]
    fn sidecar_is_hardened_and_probed_on_admin() {
        let sts = statefulset(&WebSocketCluster::test());
        let c = &containers(&sts)[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let ports: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .map(|p: &ContainerPort| (p.name.as_deref().unwrap(), p.container_port))
            .collect();
        assert_eq!(ports, [("ws", 8081), ("admin", 9091)]);
        let pod = sts.spec.template.spec.unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
    }

    #[test]
    fn app_template_keeps_user_containers_and_sets_upstream() {
        let wsc = WebSocketCluster::test().with_app("ghcr.io/acme/chat:1", 7000);
        let sts = statefulset(&wsc);
        let c = containers(&sts);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "app");
        assert_eq!(c[1].name, "ws-pod");
        assert_eq!(
            env(&c[1], "WSRING_UPSTREAM").unwrap().value.as_deref(),
            Some("ws://127.0.0.1:7000")
        );
        let labels = sts
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(labels["team"], "chat", "user labels survive");
        assert_eq!(labels["app.kubernetes.io/component"], "pod");
    }

    #[test]
    fn redis_settings_reach_the_sidecar() {
        let wsc = WebSocketCluster::test().with_redis_secret();
        let sts = statefulset(&wsc);
        let c = &containers(&sts)[0];
        let url = env(c, "WSRING_REDIS_URL").unwrap();
        assert_eq!(
            url.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "redis-url"
        );
        assert!(env(c, "WSRING_REDIS_PASSWORD").is_some());
        let ca_file = env(c, "WSRING_REDIS_CA_FILE").unwrap().value.clone();
        assert_eq!(ca_file.as_deref(), Some("/etc/wsring/redis-ca/ca.crt"));
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.name, REDIS_CA_VOLUME);
        assert_eq!(mount.mount_path, "/etc/wsring/redis-ca");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn history_settings_reach_the_sidecar() {
        let plain = statefulset(&WebSocketCluster::test().with_redis_secret());
        assert!(env(&containers(&plain)[0], "WSRING_HISTORY_SIZE").is_none());
        let mut wsc = WebSocketCluster::test().with_redis_secret();
        wsc.spec.delivery = Some(crate::crd::DeliverySpec {
            history: Some(crate::crd::HistorySpec {
                size: 500,
                ttl: "90s".into(),
                replicas: 1,
            }),
        });
        let sts = statefulset(&wsc);
        let c = &containers(&sts)[0];
        let value = |name| env(c, name).unwrap().value.clone();
        assert_eq!(value("WSRING_HISTORY_SIZE").as_deref(), Some("500"));
        assert_eq!(value("WSRING_HISTORY_TTL").as_deref(), Some("90s"));
        assert_eq!(value("WSRING_HISTORY_REPLICAS").as_deref(), Some("1"));
    }

    #[test]
    fn redis_ca_volume_is_added_next_to_the_users_volumes() {
        let mut wsc = WebSocketCluster::test().with_app("example/chat:1", 8080);
        let mut template = wsc.spec.template.take().unwrap();
        template["spec"]["volumes"] = serde_json::json!([{"name": "data", "emptyDir": {}}]);
        wsc.spec.template = Some(template);
        let wsc = wsc.with_redis_secret();
        wsc.spec.validate().unwrap();
        let sts = statefulset(&wsc);
        let pod = sts.spec.template.spec.unwrap();
        let volumes = pod.volumes.unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", REDIS_CA_VOLUME]);
        let secret = volumes[1].secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("redis-ca"));
        let item = &secret.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("ca.pem", "ca.crt")
        );
        let app = &pod.containers[0];
        assert!(
            app.volume_mounts.is_none(),
            "the app does not talk to Redis"
        );
        let sidecar = &pod.containers[1];
        assert_eq!(
            sidecar.volume_mounts.as_ref().unwrap()[0].name,
            REDIS_CA_VOLUME
        );
    }

    #[test]
    fn no_redis_ca_means_no_volume() {
        let sts = statefulset(&WebSocketCluster::test());
        let pod = sts.spec.template.spec.unwrap();
        assert!(pod.volumes.is_none());
        assert!(pod.containers[0].volume_mounts.is_none());
    }
}
