//! Test fixtures: builders for clusters and EndpointSlices, a fake router, and
//! the `ApiServerVerifier` that plays the API server over `tower_test::mock`,
//! asserting method, path and body of every call a reconcile makes, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, PodSpec, PodTemplateSpec, Secret, SecurityContext,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle, SendResponse};
use wsring_core::{Member, RingSpec};

use crate::controller::{reconcile, Context};
use crate::crd::{
    GatewayParentRef, GatewaySpec, RedisSpec, SecretKeyRef, WebSocketCluster, WebSocketClusterSpec,
    WebSocketClusterStatus,
};
pub use crate::endpoint_fixtures::{pod_slice, ready_pods, router_slice, EndpointFixture};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::notify::{Notifier, RouterAcks};
use crate::resources::httproute::HTTPRoute;
use crate::resources::{self, ring_configmap, token::TOKEN_KEY};

/// Token used by the fixtures' token Secret and fake router.
pub const TOKEN: &str = "s3cret";

impl WebSocketCluster {
    /// `testns/chat`, generation 1, default spec (1 replica, echo app).
    pub fn test() -> Self {
        let mut wsc = WebSocketCluster::new("chat", WebSocketClusterSpec::default());
        wsc.meta_mut().namespace = Some("testns".into());
        wsc.meta_mut().uid = Some("uid-chat".into());
        wsc.meta_mut().generation = Some(1);
        wsc
    }

    /// Set `spec.replicas`.
    pub fn with_replicas(mut self, replicas: i32) -> Self {
        self.spec.replicas = replicas;
        self
    }

    /// An app container `app` listening on `port`, with a pod label `team: chat`.
    pub fn with_app(mut self, image: &str, port: i32) -> Self {
        self.spec.app_port = port;
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("team".to_string(), "chat".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    // What the restricted Pod Security profile asks of an app.
                    security_context: Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".into()]),
                            add: None,
                        }),
                        ..SecurityContext::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        };
        self.spec.template = Some(serde_json::to_value(template).unwrap());
        self
    }

    /// Redis URL, password and TLS CA from Secrets.
    pub fn with_redis_secret(mut self) -> Self {
        self.spec.redis = Some(RedisSpec {
            url: None,
            url_secret_ref: Some(SecretKeyRef {
                name: "redis-url".into(),
                key: "url".into(),
            }),
            password_secret_ref: Some(SecretKeyRef {
                name: "redis-auth".into(),
                key: "password".into(),
            }),
            ca_secret_ref: Some(SecretKeyRef {
                name: "redis-ca".into(),
                key: "ca.pem".into(),
            }),
        });
        self
    }

    /// An nginx Ingress for `host`.
    pub fn with_ingress(mut self, host: &str, tls: Option<&str>) -> Self {
        self.spec.ingress.enabled = true;
        self.spec.ingress.class_name = Some("nginx".into());
        self.spec.ingress.host = Some(host.into());
        self.spec.ingress.tls_secret_name = tls.map(String::from);
        self
    }

    /// An HTTPRoute for `chat.example.com` on listener `websecure` of Gateway `name`.
    pub fn with_gateway(mut self, name: &str, namespace: Option<&str>) -> Self {
        self.spec.gateway = Some(GatewaySpec {
            parent_refs: vec![GatewayParentRef {
                name: name.into(),
                namespace: namespace.map(String::from),
                section_name: Some("websecure".into()),
            }],
            hostnames: vec!["chat.example.com".into()],
        });
        self
    }

    /// Set the status (as the operator left it).
    pub fn with_status(mut self, status: WebSocketClusterStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Set `metadata.generation` (a spec change).
    pub fn with_generation(mut self, generation: i64) -> Self {
        self.meta_mut().generation = Some(generation);
        self
    }

    /// Being deleted.
    pub fn deleting(mut self) -> Self {
        self.meta_mut().deletion_timestamp = Some(time(0));
        self.meta_mut().finalizers = Some(vec!["foregroundDeletion".into()]);
        self
    }
}

/// A fixed point in time, `secs` after a base.
pub fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

/// The ring member of pod `chat-{i}` at `10.244.0.{10+i}`.
pub fn member(i: usize) -> Member {
    Member {
        name: format!("chat-{i}"),
        addr: format!("10.244.0.{}:8081", 10 + i),
        admin: format!("10.244.0.{}:9091", 10 + i),
    }
}

/// Members `chat-0..n`.
pub fn members(n: usize) -> Vec<Member> {
    (0..n).map(member).collect()
}

/// What the API server holds for a cluster that already exists (its token
/// Secret too): the reads of a reconcile find `pods` in the pod Service's
/// slices, `published` in the ring ConfigMap and `routers` in the router admin
/// Service's slices, and the StatefulSet apply answers with `statefulset`.
#[derive(Clone, Debug)]
pub struct Existing {
    /// The pod Service's slice.
    pub pods: EndpointSlice,
    /// The ring the ConfigMap holds.
    pub published: RingSpec,
    /// The router admin Service's slices.
    pub routers: Vec<EndpointSlice>,
    /// The StatefulSet status after the apply.
    pub statefulset: StatefulSetStatus,
}

impl Existing {
    /// `n` ready pods (`chat-0..n`), a StatefulSet with all of them ready, no
    /// router endpoints yet.
    pub fn ready(n: usize, published: &RingSpec) -> Self {
        Existing {
            pods: ready_pods(n),
            published: published.clone(),
            routers: Vec::new(),
            statefulset: sts_status(n as i32, n as i32),
        }
    }

    /// One ready router at `127.0.0.1:port`.
    pub fn with_router(mut self, port: i32) -> Self {
        self.routers = vec![router_slice("chat", &["127.0.0.1"], &[], port)];
        self
    }
}

/// The token Secret as stored.
pub fn token_secret() -> Secret {
    let mut s = resources::token::token_secret(&WebSocketCluster::test(), TOKEN);
    s.data = Some([(TOKEN_KEY.to_string(), ByteString(TOKEN.as_bytes().to_vec()))].into());
    s
}

/// The ring ConfigMap as stored, holding `ring`.
pub fn ring_cm(ring: &RingSpec) -> ConfigMap {
    ring_configmap::configmap(&WebSocketCluster::test(), ring)
}

// ---------------------------------------------------------------- fake router

/// What the fake router received on `PUT /ring`.
#[derive(Debug)]
pub struct Received {
    /// The `Authorization` header.
    pub authorization: String,
    /// The ring document.
    pub ring: RingSpec,
}

/// A real HTTP listener on 127.0.0.1 that answers `PUT /ring` like the router:
/// 401 without the right token, `{"applied": false}` for the ring it holds.
pub struct FakeRouter {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Received>>,
}

impl FakeRouter {
    /// Bind and serve in the background.
    pub async fn start() -> Self {
        use axum::extract::State;
        use axum::http::HeaderMap;
        type Shared = Arc<(
            Mutex<Option<RingSpec>>,
            tokio::sync::mpsc::UnboundedSender<Received>,
        )>;
        async fn put_ring(
            State(state): State<Shared>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, String) {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if auth != format!("Bearer {TOKEN}") {
                return (
                    StatusCode::UNAUTHORIZED,
                    "{\"error\":\"unauthorized\"}".into(),
                );
            }
            let Ok(ring) = RingSpec::parse(body.as_bytes()) else {
                return (StatusCode::BAD_REQUEST, "{}".into());
            };
            let applied = {
                let mut current = state.0.lock().unwrap();
                let applied = current.as_ref() != Some(&ring);
                *current = Some(ring.clone());
                applied
            };
            let _ = state.1.send(Received {
                authorization: auth,
                ring,
            });
            (StatusCode::OK, json!({ "applied": applied }).to_string())
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state: Shared = Arc::new((Mutex::new(None), tx));
        let app = axum::Router::new()
            .route("/ring", axum::routing::put(put_ring))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeRouter {
            addr,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// The port, for an EndpointSlice pointing at this router.
    pub fn port(&self) -> i32 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The next `PUT /ring` (fails the test after 5 s).
    pub async fn received(&self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.rx.lock().await.recv())
            .await
            .expect("router was not notified")
            .expect("router channel open")
    }

    /// True when no `PUT /ring` arrived (yet).
    pub async fn nothing_received(&self) -> bool {
        self.rx.lock().await.try_recv().is_err()
    }
}

// ---------------------------------------------------------- api server verifier

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// Plays the API server for one reconcile; each method expects the next call.
pub struct ApiServerVerifier(ApiHandle);

/// Objects the reconcile applied, for assertions beyond "equals the builder".
pub struct Applied {
    /// The StatefulSet body.
    pub statefulset: StatefulSet,
    /// The router Deployment body.
    pub deployment: Deployment,
}

const MANAGER_QUERY: &str = "?&force=true&fieldManager=wsring-operator";
const INGRESS_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/testns/ingresses/chat";
const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/testns/httproutes/chat";

fn respond<T: Serialize>(send: SendResponse<Response<Body>>, code: StatusCode, body: &T) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn not_found(send: SendResponse<Response<Body>>) {
    respond(
        send,
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "not found", "reason": "NotFound", "code": 404}),
    );
}

fn list<T: Serialize>(kind: &str, api_version: &str, items: &[T]) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

impl ApiServerVerifier {
    async fn next(&mut self, method: Method, uri: &str) -> (Value, SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {uri}"))
            .unwrap_or_else(|| panic!("client gone before {method} {uri}"));
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, uri),
            "unexpected API call"
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        (body, send)
    }

    /// GET of the token Secret, which exists.
    pub async fn token_exists(&mut self) {
        let (_, send) = self
            .next(Method::GET, "/api/v1/namespaces/testns/secrets/chat-token")
            .await;
        respond(send, StatusCode::OK, &token_secret());
    }

    /// GET of the token Secret (404), then its creation; returns the new token.
    pub async fn token_created(&mut self) -> String {
        let (_, send) = self
            .next(Method::GET, "/api/v1/namespaces/testns/secrets/chat-token")
            .await;
        not_found(send);
        let (body, send) = self
            .next(
                Method::POST,
                "/api/v1/namespaces/testns/secrets?&fieldManager=wsring-operator",
            )
            .await;
        let secret: Secret = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("chat-token"));
        assert_eq!(
            secret.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-chat"
        );
        let token = resources::token::read_token(&secret).expect("token in the secret");
        assert_eq!(token.len(), 64);
        respond(send, StatusCode::CREATED, &body);
        token
    }

    async fn slices(&mut self, service: &str, slices: &[EndpointSlice]) {
        let uri = format!(
            "/apis/discovery.k8s.io/v1/namespaces/testns/endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3D{service}"
        );
        let (_, send) = self.next(Method::GET, &uri).await;
        respond(
            send,
            StatusCode::OK,
            &list("EndpointSliceList", "discovery.k8s.io/v1", slices),
        );
    }

    /// LIST of the pod Service's slices.
    pub async fn pod_slices(&mut self, slices: &[EndpointSlice]) {
        self.slices("chat-pods", slices).await;
    }

    /// LIST of the router admin Service's slices.
    pub async fn router_slices(&mut self, slices: &[EndpointSlice]) {
        self.slices("chat-router-admin", slices).await;
    }

    /// GET of the ring ConfigMap.
    pub async fn ring_configmap(&mut self, existing: Option<ConfigMap>) {
        let (_, send) = self
            .next(
                Method::GET,
                "/api/v1/namespaces/testns/configmaps/chat-ring",
            )
            .await;
        match existing {
            Some(cm) => respond(send, StatusCode::OK, &cm),
            None => not_found(send),
        }
    }

    /// Server-side apply of the ring ConfigMap; returns the ring in it.
    pub async fn ring_applied(&mut self) -> RingSpec {
        let (body, send) = self
            .next(
                Method::PATCH,
                &format!("/api/v1/namespaces/testns/configmaps/chat-ring{MANAGER_QUERY}"),
            )
            .await;
        let cm: ConfigMap = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
        assert_eq!(
            cm.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-chat"
        );
        let ring = ring_configmap::read_ring(&cm).expect("a valid ring.json");
        respond(send, StatusCode::OK, &body);
        ring
    }

    /// The calls of a reconcile of `existing` that keeps the published ring,
    /// up to the optional edge children (Ingress, HTTPRoute): token Secret,
    /// pod slices and ring ConfigMap read, router slices listed, the ten
    /// children applied.
    pub async fn ring_kept(&mut self, wsc: &WebSocketCluster, existing: &Existing) -> Applied {
        self.existing_read(existing).await;
        self.routers_and_children(wsc, existing).await
    }

    /// The same calls for a reconcile that changes the ring: the ring
    /// ConfigMap is applied between the reads and the router slices; returns
    /// the new ring too.
    pub async fn ring_replaced(
        &mut self,
        wsc: &WebSocketCluster,
        existing: &Existing,
    ) -> (RingSpec, Applied) {
        self.existing_read(existing).await;
        let ring = self.ring_applied().await;
        let applied = self.routers_and_children(wsc, existing).await;
        (ring, applied)
    }

    /// The reads that open a reconcile of an existing cluster.
    async fn existing_read(&mut self, existing: &Existing) {
        self.token_exists().await;
        self.pod_slices(std::slice::from_ref(&existing.pods)).await;
        self.ring_configmap(Some(ring_cm(&existing.published)))
            .await;
    }

    /// The router slices (whom to tell about the ring), then the children
    /// (2 routers ready).
    async fn routers_and_children(
        &mut self,
        wsc: &WebSocketCluster,
        existing: &Existing,
    ) -> Applied {
        self.router_slices(&existing.routers).await;
        self.children_applied(wsc, existing.statefulset.clone(), 2)
            .await
    }

    async fn apply_exact<K: Serialize + DeserializeOwned>(
        &mut self,
        path: &str,
        desired: &K,
    ) -> (K, SendResponse<Response<Body>>) {
        let (body, send) = self
            .next(Method::PATCH, &format!("{path}{MANAGER_QUERY}"))
            .await;
        assert_eq!(
            body,
            serde_json::to_value(desired).unwrap(),
            "apply body of {path}"
        );
        (serde_json::from_value(body).unwrap(), send)
    }

    /// The ten child applies, each body equal to its builder's output.
    /// The StatefulSet answers with `sts_status`, the Deployment with `routers_ready`.
    pub async fn children_applied(
        &mut self,
        wsc: &WebSocketCluster,
        sts_status: StatefulSetStatus,
        routers_ready: i32,
    ) -> Applied {
        use crate::resources::{rbac, router, services, statefulset};
        let ns = "/api/v1/namespaces/testns";
        let (b, s) = self
            .apply_exact(
                &format!("{ns}/serviceaccounts/chat-router"),
                &rbac::service_account(wsc),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let rbac_ns = "/apis/rbac.authorization.k8s.io/v1/namespaces/testns";
        let (b, s) = self
            .apply_exact(&format!("{rbac_ns}/roles/chat-router"), &rbac::role(wsc))
            .await;
        respond(s, StatusCode::OK, &b);
        let (b, s) = self
            .apply_exact(
                &format!("{rbac_ns}/rolebindings/chat-router"),
                &rbac::role_binding(wsc),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let (b, s) = self
            .apply_exact(
                &format!("{ns}/services/chat-pods"),
                &services::pods_service(wsc),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let (mut sts, s) = self
            .apply_exact(
                "/apis/apps/v1/namespaces/testns/statefulsets/chat",
                &statefulset::statefulset(wsc),
            )
            .await;
        let statefulset = sts.clone();
        sts.status = Some(sts_status);
        respond(s, StatusCode::OK, &sts);
        let (b, s) = self
            .apply_exact(
                &format!("{ns}/services/chat"),
                &services::router_service(wsc),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let (b, s) = self
            .apply_exact(
                &format!("{ns}/services/chat-router-admin"),
                &services::router_admin_service(wsc),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let (mut deploy, s) = self
            .apply_exact(
                "/apis/apps/v1/namespaces/testns/deployments/chat-router",
                &router::deployment(wsc),
            )
            .await;
        let deployment = deploy.clone();
        deploy.status = Some(DeploymentStatus {
            ready_replicas: Some(routers_ready),
            ..DeploymentStatus::default()
        });
        respond(s, StatusCode::OK, &deploy);
        let access = resources::network_policy::AdminAccess {
            operator_namespace: Some("wsring-system".into()),
            monitoring_namespaces: vec!["monitoring".into()],
        };
        let np = "/apis/networking.k8s.io/v1/namespaces/testns/networkpolicies";
        let (b, s) = self
            .apply_exact(
                &format!("{np}/chat-pods"),
                &resources::network_policy::pods_policy(wsc, &access),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        let (b, s) = self
            .apply_exact(
                &format!("{np}/chat-router"),
                &resources::network_policy::router_policy(wsc, &access),
            )
            .await;
        respond(s, StatusCode::OK, &b);
        Applied {
            statefulset,
            deployment,
        }
    }

    /// GET of an optional child that does not exist (404).
    async fn absent(&mut self, path: &str) {
        let (_, send) = self.next(Method::GET, path).await;
        not_found(send);
    }

    /// GET of an optional child that exists and is ours (`existing`), then its
    /// deletion with a uid precondition.
    async fn deleted<K: Serialize + Resource>(&mut self, path: &str, mut existing: K) {
        let (_, send) = self.next(Method::GET, path).await;
        existing.meta_mut().uid = Some("uid-child".into());
        respond(send, StatusCode::OK, &existing);
        let (body, send) = self.next(Method::DELETE, &format!("{path}?")).await;
        assert_eq!(body["preconditions"]["uid"], "uid-child");
        respond(send, StatusCode::OK, &existing);
    }

    /// Neither an Ingress nor an HTTPRoute asked for, and none exists.
    pub async fn no_ingress_or_route(&mut self) {
        self.absent(INGRESS_PATH).await;
        self.absent(ROUTE_PATH).await;
    }

    /// Ingress not asked for, and none exists.
    pub async fn ingress_absent(&mut self) {
        self.absent(INGRESS_PATH).await;
    }

    /// HTTPRoute not asked for, and none exists.
    pub async fn route_absent(&mut self) {
        self.absent(ROUTE_PATH).await;
    }

    /// Ingress disabled but ours exists: it is deleted (uid precondition).
    pub async fn ingress_deleted(&mut self, wsc: &WebSocketCluster) {
        let ours = wsc.clone().with_ingress("chat.example.com", None);
        self.deleted(INGRESS_PATH, resources::ingress::ingress(&ours).unwrap())
            .await;
    }

    /// `spec.gateway` removed but our HTTPRoute exists: it is deleted.
    pub async fn route_deleted(&mut self, wsc: &WebSocketCluster) {
        let ours = wsc.clone().with_gateway("public", None);
        self.deleted(ROUTE_PATH, resources::httproute::http_route(&ours).unwrap())
            .await;
    }

    /// Ingress applied; returns it.
    pub async fn ingress_applied(&mut self, wsc: &WebSocketCluster) -> Ingress {
        let desired = resources::ingress::ingress(wsc).expect("ingress enabled");
        let (b, s) = self.apply_exact(INGRESS_PATH, &desired).await;
        respond(s, StatusCode::OK, &b);
        b
    }

    /// HTTPRoute applied; returns it.
    pub async fn route_applied(&mut self, wsc: &WebSocketCluster) -> HTTPRoute {
        let desired = resources::httproute::http_route(wsc).expect("gateway set");
        let (b, s) = self.apply_exact(ROUTE_PATH, &desired).await;
        respond(s, StatusCode::OK, &b);
        b
    }

    /// HTTPRoute apply answered the way an API server without the Gateway API
    /// CRDs answers (404 for the whole resource type).
    pub async fn route_kind_not_served(&mut self, wsc: &WebSocketCluster) {
        let desired = resources::httproute::http_route(wsc).expect("gateway set");
        let (_, send) = self.apply_exact(ROUTE_PATH, &desired).await;
        respond(
            send,
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "the server could not find the requested resource",
                    "reason": "NotFound", "details": {}, "code": 404}),
        );
    }

    /// Events published on the cluster, with these reasons, in order.
    pub async fn events(&mut self, reasons: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        for reason in reasons {
            let (body, send) = self
                .next(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/testns/events?",
                )
                .await;
            assert_eq!(body["reason"], *reason);
            assert_eq!(body["regarding"]["kind"], "WebSocketCluster");
            assert_eq!(body["regarding"]["name"], "chat");
            assert_eq!(body["reportingController"], "wsring-operator");
            respond(send, StatusCode::CREATED, &body);
            out.push(body);
        }
        out
    }

    /// Server-side apply of the status; returns it.
    pub async fn status_applied(&mut self, wsc: &WebSocketCluster) -> WebSocketClusterStatus {
        let (body, send) = self
            .next(
                Method::PATCH,
                &format!("/apis/wsring.io/v1alpha1/namespaces/testns/websocketclusters/chat/status{MANAGER_QUERY}"),
            )
            .await;
        assert_eq!(body["apiVersion"], "wsring.io/v1alpha1");
        assert_eq!(body["kind"], "WebSocketCluster");
        let status: WebSocketClusterStatus =
            serde_json::from_value(body["status"].clone()).unwrap();
        respond(
            send,
            StatusCode::OK,
            &wsc.clone().with_status(status.clone()),
        );
        status
    }

    /// Fail on any further call; returns when the client is dropped.
    pub async fn no_more_calls(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected API call {} {}", request.method(), request.uri());
        }
    }
}

impl Context {
    /// A context over a mocked API server, with unregistered metrics.
    pub fn test() -> (Arc<Context>, ApiServerVerifier) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "testns");
        let reporter = Reporter {
            controller: "wsring-operator".into(),
            instance: Some("wsring-operator-0".into()),
        };
        let ctx = Context {
            recorder: Recorder::new(client.clone(), reporter),
            policy: crate::policy::Policy::default(),
            admin_access: Some(resources::network_policy::AdminAccess {
                operator_namespace: Some("wsring-system".into()),
                monitoring_namespaces: vec!["monitoring".into()],
            }),
            client,
            metrics: Arc::new(Metrics::default()),
            notifier: Notifier::default(),
            acks: RouterAcks::default(),
        };
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}

/// Run one reconcile of `wsc` against `verify`, which plays the API server.
/// Panics from the verifier (a wrong call) surface here with their message.
pub async fn run_scenario<T: Send + 'static>(
    wsc: WebSocketCluster,
    verify: impl FnOnce(ApiServerVerifier) -> BoxFuture<'static, (ApiServerVerifier, T)>
        + Send
        + 'static,
) -> (Result<Action, Error>, T) {
    let (ctx, api) = Context::test();
    let mock = tokio::spawn(async move {
        let (api, out) = verify(api).await;
        api.no_more_calls().await;
        out
    });
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(wsc), ctx))
        .await
        .expect("reconcile hung waiting for an API answer");
    let out = match tokio::time::timeout(Duration::from_secs(10), mock).await {
        Ok(Ok(out)) => out,
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(join)) => panic!("verifier task failed: {join}"),
        Err(_) => panic!("verifier did not finish"),
    };
    (result, out)
}

/// StatefulSet status with `replicas` pods, `ready` of them ready.
pub fn sts_status(replicas: i32, ready: i32) -> StatefulSetStatus {
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        ..StatefulSetStatus::default()
    }
}
