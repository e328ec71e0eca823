//! The `WebSocketCluster` custom resource (`wsring.io/v1alpha1`).
//!
//! Spec types stay plain structs, unit enums and maps so the generated OpenAPI
//! schema is structural; every bound the processes rely on (replicas ≥ 0,
//! virtual nodes in 1..=4096, boundedLoad > 1.0, key source one of four words,
//! ports in 1..=65535) is written into the schema so the API server refuses a bad
//! spec at `kubectl apply` time. [`WebSocketClusterSpec::validate`] repeats the
//! checks the schema cannot express (and guards against a CRD that was installed
//! without validation).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wsring_core::origin::parse_allow_list;
pub use wsring_core::protocol::PodTransport;
use wsring_core::ring::{DEFAULT_VNODES, MAX_VNODES};

use crate::resources::REDIS_CA_VOLUME;
use crate::Error;

/// Ports the ws-pod sidecar takes in every pod; an app container must not use them.
pub const RESERVED_POD_PORTS: [i32; 2] = [8081, 9091];

/// A stateful WebSocket service with key affinity: app pods behind ws-pod sidecars,
/// routers hashing a routing key onto a consistent-hash ring of the pods.
// Two printer columns share `type_ = "integer"`, which clippy reads as a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "wsring.io",
    version = "v1alpha1",
    kind = "WebSocketCluster",
    namespaced,
    shortname = "wsc",
    status = "WebSocketClusterStatus",
    derive = "PartialEq",
    doc = "A stateful WebSocket service with key affinity: a StatefulSet of app pods behind ws-pod sidecars and routers that hash a routing key onto a consistent-hash ring of the pods.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Pods that are ring members"
    ),
    printcolumn(
        name = "Members",
        type_ = "string",
        json_path = ".status.members",
        description = "Ring members (pod names)"
    ),
    printcolumn(
        name = "Ring",
        type_ = "integer",
        json_path = ".status.ringVersion",
        description = "Ring version published to the routers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketClusterSpec {
    /// Number of WebSocket pods (ring members). Scale subresource target.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Pod template (core/v1 PodTemplateSpec) of the app container(s). Omitted: ws-pod's
    /// built-in echo app. The operator adds the ws-pod sidecar; app containers must not use
    /// ports 8081/9091. Kept as raw JSON and parsed by [`Self::pod_template`], so one
    /// malformed template is reported on its own cluster instead of failing the
    /// operator's watch (and with it every cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub template: Option<serde_json::Value>,

    /// Port of the app's WebSocket listener inside the pod (ws-pod dials ws://127.0.0.1:appPort).
    #[serde(default = "default_app_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub app_port: i32,

    /// How the routers pick the owning pod of a connection.
    #[serde(default)]
    pub routing: RoutingSpec,

    /// Redis used for targeted resets. Without it, routers close moved connections themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// The router Deployment and its public Service.
    #[serde(default)]
    pub router: RouterSpec,

    /// Optional Ingress in front of the router's public Service.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Container images; unset fields follow the operator's own release.
    #[serde(default)]
    pub images: ImagesSpec,
}

/// Routing key and ring shape.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Where the routing key is read from in the upgrade request.
    #[serde(default)]
    pub key: RoutingKey,

    /// Virtual nodes per member: more = smoother load, bigger ring.
    #[serde(default = "default_vnodes")]
    #[schemars(range(min = 1, max = 4096))]
    pub virtual_nodes: u32,

    /// Bounded-load factor c (> 1.0): no pod owns more than c × its fair share of keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 1.0, "exclusiveMinimum" = true))]
    pub bounded_load: Option<f64>,
}

impl Default for RoutingSpec {
    fn default() -> Self {
        RoutingSpec {
            key: RoutingKey::default(),
            virtual_nodes: DEFAULT_VNODES,
            bounded_load: None,
        }
    }
}

/// The routing key's location in the HTTP upgrade request.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingKey {
    /// Which part of the request carries the key.
    #[serde(default)]
    pub from: KeySource,
    /// Query parameter, header or cookie name; for `path`, the segment before the key (empty = last segment).
    #[serde(default = "default_key_name")]
    pub name: String,
}

impl Default for RoutingKey {
    fn default() -> Self {
        RoutingKey {
            from: KeySource::default(),
            name: default_key_name(),
        }
    }
}

/// Request part holding the routing key (router `--key-source`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// `?key=...`
    #[default]
    Query,
    /// A request header.
    Header,
    /// A path segment.
    Path,
    /// A cookie.
    Cookie,
}

impl KeySource {
    /// The router flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Query => "query",
            KeySource::Header => "header",
            KeySource::Path => "path",
            KeySource::Cookie => "cookie",
        }
    }
}

/// Redis connection for reset commands.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.url) && has(self.urlSecretRef))", "message": "set either url or urlSecretRef, not both"}
]))]
pub struct RedisSpec {
    /// `redis://` or `rediss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^rediss?://"))]
    pub url: Option<String>,
    /// The URL from a Secret (when it carries credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Password from a Secret; overrides the URL's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// PEM CA certificate(s) from a Secret, to verify a `rediss://` server
    /// signed by a private CA; mounted read-only into routers and pods.
    /// Without it the system roots are used. Pods read it at start-up, so
    /// roll them (`kubectl rollout restart`) after rotating the CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Router Deployment settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.requireOrigin) || !self.requireOrigin || (has(self.allowedOrigins) && size(self.allowedOrigins) > 0)",
     "message": "requireOrigin needs a non-empty allowedOrigins list"}
]))]
pub struct RouterSpec {
    /// Router replicas; each holds the whole ring.
    #[serde(default = "default_router_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Router container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The public Service (WebSocket port only).
    #[serde(default)]
    pub service: RouterServiceSpec,
    /// Browser origins allowed to open WebSockets (`scheme://host[:port]`, or
    /// `scheme://*.domain[:port]` for its subdomains); others get 403 before
    /// the upgrade. Empty: every origin. Set it when the app authenticates by
    /// cookie (cross-site WebSocket hijacking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256, "items" = {
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "pattern": ORIGIN_PATTERN
    }))]
    pub allowed_origins: Vec<String>,
    /// With `allowedOrigins`: also refuse upgrades without an `Origin` header
    /// (non-browser clients), which otherwise pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_origin: bool,
    /// How routers reach pods: `http1` (default), a TCP connection per client
    /// connection; `h2`, one HTTP/2 connection per pod with a stream per
    /// client connection, for routers holding tens of thousands of
    /// connections (half the sockets, no ephemeral-port limit per pod).
    #[serde(default)]
    pub pod_transport: PodTransport,
}

/// Shape of one `allowedOrigins` entry checked by the API server; the full
/// rules (wildcards, ports) are `wsring_core::origin`'s, checked at reconcile.
const ORIGIN_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]+$";

impl Default for RouterSpec {
    fn default() -> Self {
        RouterSpec {
            replicas: default_router_replicas(),
            resources: None,
            service: RouterServiceSpec::default(),
            allowed_origins: Vec::new(),
            require_origin: false,
            pod_transport: PodTransport::default(),
        }
    }
}

/// The router's public Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port of the public WebSocket listener.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for RouterServiceSpec {
    fn default() -> Self {
        RouterServiceSpec {
            type_: ServiceType::default(),
            port: default_service_port(),
        }
    }
}

/// Kubernetes Service type of the public Service.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// In-cluster only (put an Ingress in front).
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Service `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Optional Ingress for the public Service.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Create the Ingress.
    #[serde(default)]
    pub enabled: bool,
    /// IngressClass name (e.g. `nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Host name; omitted = every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TLS Secret for wss://; omitted = plain ws://.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Extra annotations; they win over the websocket timeout defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Container images. Unset = the operator's release images, so an operator upgrade
/// also upgrades clusters that did not pin images (a default in the schema would be
/// frozen into every stored object instead).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagesSpec {
    /// Router image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// ws-pod sidecar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_pod: Option<String>,
    /// Pull policy of both images.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

/// Image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The container `imagePullPolicy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Observed state, written by the operator only (status subresource).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketClusterStatus {
    /// Pods the StatefulSet currently has (scale subresource `statusReplicasPath`).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready and therefore ring members.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods as a string (scale subresource `labelSelectorPath`, HPA).
    #[serde(default)]
    pub selector: String,
    /// Version of the ring published in the ConfigMap and pushed to the routers.
    #[serde(default)]
    pub ring_version: u64,
    /// Ring members (pod names), sorted.
    #[serde(default)]
    pub members: Vec<String>,
    /// Ready, Progressing, Degraded.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl WebSocketClusterSpec {
    /// Checks the schema cannot express. A violation is reported on the object
    /// (Degraded condition, Warning event) instead of being applied.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidSpec(msg));
        if self.replicas < 0 {
            return invalid(format!("replicas must be >= 0, got {}", self.replicas));
        }
        if self.router.replicas < 0 {
            return invalid(format!(
                "router.replicas must be >= 0, got {}",
                self.router.replicas
            ));
        }
        if !(1..=65535).contains(&self.app_port) {
            return invalid(format!(
                "appPort must be in 1..=65535, got {}",
                self.app_port
            ));
        }
        if !(1..=65535).contains(&self.router.service.port) {
            return invalid(format!(
                "router.service.port must be in 1..=65535, got {}",
                self.router.service.port
            ));
        }
        let vnodes = self.routing.virtual_nodes;
        if vnodes == 0 || vnodes > MAX_VNODES {
            return invalid(format!(
                "routing.virtualNodes must be in 1..={MAX_VNODES}, got {vnodes}"
            ));
        }
        if let Some(c) = self.routing.bounded_load {
            if !c.is_finite() || c <= 1.0 {
                return invalid(format!("routing.boundedLoad must be > 1.0, got {c}"));
            }
        }
        if self.routing.key.from != KeySource::Path && self.routing.key.name.is_empty() {
            return invalid(format!(
                "routing.key.name must not be empty for from: {}",
                self.routing.key.from.as_str()
            ));
        }
        if let Some(redis) = &self.redis {
            if redis.url.is_some() && redis.url_secret_ref.is_some() {
                return invalid("redis: set either url or urlSecretRef, not both".into());
            }
            let plain_url = redis
                .url
                .as_deref()
                .is_some_and(|u| u.starts_with("redis://"));
            if redis.ca_secret_ref.is_some() && plain_url {
                return invalid(
                    "redis.caSecretRef verifies TLS, but redis.url is redis://; use rediss://"
                        .into(),
                );
            }
        }
        parse_allow_list(&self.router.allowed_origins, self.router.require_origin)
            .map_err(|e| Error::InvalidSpec(format!("router.allowedOrigins: {e}")))?;
        if RESERVED_POD_PORTS.contains(&self.app_port) {
            return invalid(format!(
                "appPort {} is taken by the ws-pod sidecar (8081, 9091)",
                self.app_port
            ));
        }
        let volumes = self
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
        for c in self.app_containers() {
            if c.name == crate::resources::statefulset::SIDECAR_NAME {
                return invalid(format!(
                    "container name {:?} is reserved for the sidecar",
                    c.name
                ));
            }
            for p in c.ports.iter().flatten() {
                if RESERVED_POD_PORTS.contains(&p.container_port) {
                    return invalid(format!(
                        "container {:?} uses port {}, taken by the ws-pod sidecar",
                        c.name, p.container_port
                    ));
                }
            }
        }
        Ok(())
    }

    /// The app pod template, parsed.
    pub fn pod_template(&self) -> Result<Option<PodTemplateSpec>, Error> {
        self.template
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                Error::InvalidSpec(format!("template is not a valid PodTemplateSpec: {e}"))
            })
    }

    /// App containers of the template; empty means the built-in echo app.
    pub fn app_containers(&self) -> Vec<Container> {
        self.pod_template()
            .ok()
            .flatten()
            .and_then(|t| t.spec)
            .map(|s| s.containers)
            .unwrap_or_default()
    }
}

impl Default for WebSocketClusterSpec {
    fn default() -> Self {
        WebSocketClusterSpec {
            replicas: default_replicas(),
            template: None,
            app_port: default_app_port(),
            routing: RoutingSpec::default(),
            redis: None,
            router: RouterSpec::default(),
            ingress: IngressSpec::default(),
            images: ImagesSpec::default(),
        }
    }
}

/// The CRD as YAML, exactly what `crdgen` writes to `crds/websocketcluster.yaml`.
pub fn crd_yaml() -> Result<String, Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&WebSocketCluster::crd()).map_err(|e| Error::Serialization(e.to_string()))
}

/// The embedded pod template is accepted as an object and checked by the API
/// server when the StatefulSet is applied: its full schema would make the CRD
/// larger than `kubectl apply`'s 256 KiB last-applied annotation allows.
fn pod_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Pod template of the app container(s) (core/v1 PodTemplateSpec). Omitted: ws-pod's built-in echo app.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "nullable": true
    })
}

fn default_replicas() -> i32 {
    1
}
fn default_app_port() -> i32 {
    8080
}
fn default_vnodes() -> u32 {
    DEFAULT_VNODES
}
fn default_key_name() -> String {
    "key".into()
}
fn default_router_replicas() -> i32 {
    2
}
fn default_service_port() -> i32 {
    80
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_names_scale_and_columns() {
        let crd = WebSocketCluster::crd();
        assert_eq!(crd.spec.group, "wsring.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["wsc".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().unwrap();
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Members", "Ring", "Age"]);
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let crd = serde_json::to_value(WebSocketCluster::crd()).unwrap();
        let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }

    #[test]
    fn malformed_template_is_an_invalid_spec_not_a_decode_error() {
        let wsc: WebSocketCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "wsring.io/v1alpha1", "kind": "WebSocketCluster",
            "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": "app"}}}
        }))
        .expect("the object itself always decodes");
        let err = wsc.spec.validate().unwrap_err();
        assert!(err.to_string().contains("PodTemplateSpec"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let spec: WebSocketClusterSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.app_port, 8080);
        assert_eq!(spec.routing.virtual_nodes, 1024);
        assert_eq!(spec.routing.key.from, KeySource::Query);
        assert_eq!(spec.routing.key.name, "key");
        assert_eq!(spec.router.replicas, 2);
        assert_eq!(spec.router.service.port, 80);
        assert_eq!(spec.router.service.type_, ServiceType::ClusterIP);
        assert!(!spec.ingress.enabled);
        assert_eq!(spec, WebSocketClusterSpec::default());
        spec.validate().unwrap();
    }

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
        for (spec, why) in [
            (ca_without_tls, "rediss://"),
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
