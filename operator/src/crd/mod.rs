//! The `WebSocketCluster` custom resource (`wsring.io/v1alpha1`): its types.
//!
//! Spec types stay plain structs, unit enums and maps so the generated OpenAPI
//! schema is structural; every bound the processes rely on (replicas ≥ 0,
//! virtual nodes in 1..=4096, boundedLoad > 1.0, key source one of four words,
//! ports in 1..=65535) is written into the schema so the API server refuses a bad
//! spec at `kubectl apply` time. [`WebSocketClusterSpec::validate`] repeats the
//! checks the schema cannot express (and guards against a CRD that was installed
//! without validation).
//!
//! Layout:
//! - this module: the spec and status types, their defaults, the CRD schema
//!   and [`crd_yaml`];
//! - `template`: reading the raw `spec.template` as a PodTemplateSpec
//!   ([`WebSocketClusterSpec::pod_template`]);
//! - `validation`: [`WebSocketClusterSpec::validate`], one small check per rule.

mod template;
mod validation;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use wsring_core::protocol::PodTransport;
use wsring_core::ring::DEFAULT_VNODES;

use crate::error::Error;

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
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 50")
        .message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter) of at most 50 characters: Services are named after it"),
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
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.delivery) || !has(self.delivery.history) || has(self.redis)",
     "message": "delivery.history is kept in Redis: set spec.redis too"}
]))]
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

    /// Optional Gateway API route in front of the router's public Service: an
    /// HTTPRoute `NAME` attached to Gateways you run. Omitted: no route (an
    /// existing one of this cluster is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// Container images; unset fields follow the operator's own release.
    #[serde(default)]
    pub images: ImagesSpec,

    /// The pods the template may describe. `Restricted` (default): the Pod
    /// Security Standards' restricted profile, checked before anything is
    /// applied (no privileged or host-namespace pods, no hostPath, non-root,
    /// no added capabilities but NET_BIND_SERVICE). `Unrestricted`: the
    /// template goes in as written; for trusted namespaces only, since
    /// creating a WebSocketCluster is creating pods.
    #[serde(default)]
    pub pod_security: PodSecurity,

    /// The ws-pod sidecar container.
    #[serde(default)]
    pub sidecar: SidecarSpec,

    /// How pushes reach clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// How pushes reach clients.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Per-key history in Redis (needs `spec.redis`): every accepted push is
    /// stored before the push API answers, and clients speaking `wsring.v1`
    /// resume after a move, crash or drop without a gap or a duplicate.
    /// Omitted: pushes are delivered live only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySpec>,
}

/// Size and age bounds of each key's history.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Pushes kept per key; a client further behind is told to reload.
    #[schemars(range(min = 1, max = 100000))]
    pub size: u32,
    /// How long a key's pushes are kept after its last push: seconds,
    /// minutes or hours (`30s`, `5m`, `1h`).
    #[serde(default = "default_history_ttl")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(s|m|h)$"))]
    pub ttl: String,
    /// Replicas that must have a push before it is delivered and answered
    /// (Redis `WAIT`), so a failover loses no push a client saw: 1 with a
    /// Sentinel group of two or more replicas (`redis+sentinel://` URL), or on
    /// a Redis Cluster whose primaries have a replica each.
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub replicas: u32,
}

fn default_history_ttl() -> String {
    "5m".to_string()
}

/// Which pods a WebSocketCluster's template may describe.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodSecurity {
    /// The restricted Pod Security profile.
    #[default]
    Restricted,
    /// Anything the namespace's own admission allows.
    Unrestricted,
}

/// Settings of the ws-pod sidecar container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Resources of the sidecar; omitted: requests 50m CPU and 32Mi memory,
    /// limit 512Mi memory (about 10 KiB per open connection, so ~40,000
    /// connections per pod before the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
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
    /// `redis://` or `rediss://` URL of one server,
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/PRIMARY` of a Sentinel group
    /// (the routers and pods follow its failovers), or
    /// `redis+cluster://HOST:PORT[,HOST:PORT...]` of a Redis Cluster (sharded
    /// pub/sub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(rediss?|redis\+sentinel|redis\+cluster)://"))]
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
    /// Who may call the routers' admin port (9090: the push API) besides the
    /// operator and the monitoring namespaces: NetworkPolicy peers, e.g.
    /// `{podSelector: {matchLabels: {app: notifier}}}` for your backend that
    /// pushes messages. The public port 8080 is open to everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_from: Vec<NetworkPolicyPeer>,
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
            admin_from: Vec::new(),
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

/// An HTTPRoute `NAME` (gateway.networking.k8s.io/v1) sending every request of
/// its host names to the router's public Service. The Gateway, its listeners,
/// TLS certificates and the namespaces it admits routes from are yours: the
/// route only attaches to them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Gateways (optionally one listener each) the route attaches to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayParentRef>,
    /// Host names the route answers (`chat.example.com`, `*.example.com`);
    /// omitted = every host name of the listeners it attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 16, "items" = {
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": GATEWAY_HOSTNAME_PATTERN
    }))]
    pub hostnames: Vec<String>,
}

/// A Gateway the route attaches to (Gateway API `ParentReference` of kind Gateway).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; omitted = the cluster's. Its listener must
    /// admit routes from the cluster's namespace (`allowedRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Listener of the Gateway to attach to; omitted = every listener that
    /// admits the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Gateway API's `Hostname` pattern (a precise host name, or `*.` and a suffix).
const GATEWAY_HOSTNAME_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

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
            gateway: None,
            images: ImagesSpec::default(),
            pod_security: PodSecurity::default(),
            sidecar: SidecarSpec::default(),
            delivery: None,
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
}
