//! wsring operator: runs `WebSocketCluster`s on Kubernetes.
//!
//! For each cluster it server-side-applies a StatefulSet of app pods with the
//! ws-pod sidecar, the router Deployment, their Services, RBAC, an optional
//! Ingress and a bearer token; it turns the ready endpoints of the pods' headless
//! Service into the consistent-hash ring (ConfigMap `NAME-ring`), bumping its
//! version only on a real membership change, and pushes each new ring to every
//! ready router (`PUT /ring`). Names, ports and labels: `docs/interfaces.md`,
//! "Kubernetes shape".
//!
//! Layout:
//! - [`crd`]: the `WebSocketCluster` types (spec, status, CRD schema); inside it,
//!   `crd::template` reads the raw pod template and `crd::validation` holds
//!   [`WebSocketClusterSpec::validate`], one small function per check.
//! - [`names`]: names and ports the operator reserves in every pod (sidecar
//!   container, Redis CA volume, sidecar ports), read by both the validation and
//!   the resource builders; it imports nothing from the crate, so neither side
//!   imports the other.
//! - [`policy`], [`pod_security`]: what a cluster may ask the operator to create
//!   (restricted pod templates, allowed Ingress annotations).
//! - [`resources`]: desired child objects, pure functions of the spec (one module per kind).
//! - [`membership`]: EndpointSlices → ring members and routers to notify.
//! - [`resources::ring_configmap`]: the ring document and its version rule.
//! - [`notify`]: `PUT /ring` to the routers and which routers hold which version.
//! - [`status`]: status and conditions from what a reconcile observed.
//! - [`controller`]: `reconcile` / `error_policy`, the `Context`, the watches.
//! - [`leader`]: Lease-based leader election.
//! - [`metrics`], [`server`]: Prometheus metrics and the `/metrics` + `/healthz` listener.
//! - [`error`]: the one error type.
//! - `endpoint_fixtures` (tests, and feature `fixtures` for the convergence
//!   example): EndpointSlices as the EndpointSlice controller writes them.
//!
//! Binaries: `wsring-operator` (this lib's [`run`]) and `crdgen` (prints the CRD).

pub mod controller;
pub mod crd;
pub mod error;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pod_security;
pub mod policy;
pub mod resources;
pub mod server;
pub mod status;

#[cfg(any(test, feature = "fixtures"))]
pub mod endpoint_fixtures;
#[cfg(test)]
pub mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{Future, FutureExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, Client};
use prometheus_client::registry::Registry;

pub use crate::crd::{WebSocketCluster, WebSocketClusterSpec, WebSocketClusterStatus};
pub use crate::error::Error;
use crate::resources::network_policy::AdminAccess;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// Operator settings: every flag also read from its env var (docs/interfaces.md).
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Listener for `/metrics` and `/healthz`.
    #[arg(long, env = "WSRING_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WSRING_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Hold the Lease `wsring-operator` in `POD_NAMESPACE` before reconciling, so
    /// only one of several replicas is active.
    #[arg(long, env = "WSRING_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Log format.
    #[arg(long, env = "WSRING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Ingress annotations a WebSocketCluster may set (comma-separated keys;
    /// a trailing `*` allows a prefix); others make it `InvalidSpec`.
    #[arg(long, env = "WSRING_INGRESS_ANNOTATION_ALLOWLIST", default_value = policy::DEFAULT_INGRESS_ANNOTATIONS)]
    pub ingress_annotation_allowlist: String,
    /// Create NetworkPolicies `NAME-pods` and `NAME-router` for every cluster
    /// (pods reachable only from their routers; admin ports only from
    /// routers, the operator and the monitoring namespaces).
    #[arg(long, env = "WSRING_NETWORK_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub network_policies: bool,
    /// Namespaces allowed to scrape the routers' and pods' admin ports
    /// (comma-separated), e.g. `monitoring`.
    #[arg(long, env = "WSRING_MONITORING_NAMESPACES", value_delimiter = ',')]
    pub monitoring_namespaces: Vec<String>,
}

/// Run the operator until `shutdown` resolves: check the CRD, serve metrics,
/// optionally win the Lease, then reconcile.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.boxed().shared();
    let client = Client::try_default().await?;
    check_crd(&client, config.namespace.as_deref()).await?;

    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::default().register(&mut registry));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "serving /metrics and /healthz");
    let server = tokio::spawn(server::serve(
        listener,
        Arc::new(registry),
        shutdown.clone(),
    ));

    let work = controller::run(
        client.clone(),
        config.namespace.clone(),
        metrics,
        (
            policy::Policy::new(&config.ingress_annotation_allowlist),
            config.network_policies.then(|| AdminAccess {
                operator_namespace: std::env::var("POD_NAMESPACE").ok(),
                monitoring_namespaces: config.monitoring_namespaces.clone(),
            }),
        ),
        shutdown.clone(),
    );
    let result = if config.leader_election {
        let ns = std::env::var("POD_NAMESPACE").map_err(|_| {
            Error::Leader(
                "--leader-election needs POD_NAMESPACE (downward API metadata.namespace)".into(),
            )
        })?;
        let identity = std::env::var("POD_NAME")
            .ok()
            .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
            .ok_or_else(|| {
                Error::Leader("no POD_NAME or hostname for the lease identity".into())
            })?;
        tracing::info!(%identity, namespace = %ns, lease = leader::LEASE_NAME, "leader election on");
        let elector = leader::LeaderElector::new(
            Api::<Lease>::namespaced(client, &ns),
            identity,
            leader::Timing::default(),
        );
        elector.run(work, shutdown.clone()).await
    } else {
        work.await;
        Ok(())
    };
    server.abort();
    result
}

/// Fail fast, with the fix, when the CRD is missing.
async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), Error> {
    let api: Api<WebSocketCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdNotInstalled),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    async fn check_with(code: u16) -> Result<(), Error> {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(
                request.uri().to_string(),
                "/apis/wsring.io/v1alpha1/websocketclusters?&limit=1"
            );
            let body = if code == 200 {
                serde_json::json!({"apiVersion": "wsring.io/v1alpha1", "kind": "WebSocketClusterList", "metadata": {}, "items": []})
            } else {
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        });
        let result = check_crd(&Client::new(service, "default"), None).await;
        server.await.unwrap();
        result
    }

    #[tokio::test]
    async fn missing_crd_is_a_clear_startup_error() {
        let err = check_with(404).await.unwrap_err();
        assert!(matches!(err, Error::CrdNotInstalled));
        assert!(err
            .to_string()
            .contains("kubectl apply --server-side -f crds/websocketcluster.yaml"));
        check_with(200).await.unwrap();
    }
}
