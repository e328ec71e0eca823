//! EndpointSlices as the EndpointSlice controller writes them for the pod
//! Service and the router admin Service of a cluster in [`NAMESPACE`]: what
//! membership reads. Shared by the unit tests (`fixtures`) and the
//! membership convergence benchmark (`examples/convergence.rs`, through the
//! `fixtures` feature), so both feed the reconcile the same slices.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::membership;
use crate::resources::Names;

/// The namespace of every fixture slice.
pub const NAMESPACE: &str = "testns";

/// One endpoint of a pod slice.
#[derive(Clone, Debug)]
pub struct EndpointFixture {
    /// targetRef pod name.
    pub pod: Option<String>,
    /// Address.
    pub ip: String,
    /// `conditions.ready`.
    pub ready: Option<bool>,
    /// `conditions.terminating`.
    pub terminating: bool,
}

impl EndpointFixture {
    /// Ready pod `chat-{i}` at `10.244.0.{10+i}` (the address of `fixtures::member`).
    pub fn ready(i: usize) -> Self {
        EndpointFixture {
            pod: Some(format!("chat-{i}")),
            ip: format!("10.244.0.{}", 10 + i),
            ready: Some(true),
            terminating: false,
        }
    }

    /// Pod `chat-{i}` failing its readiness probe.
    pub fn not_ready(i: usize) -> Self {
        EndpointFixture {
            ready: Some(false),
            ..Self::ready(i)
        }
    }
}

fn slice(
    service: String,
    cluster: &str,
    endpoints: Vec<Endpoint>,
    ports: Vec<(&str, i32)>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-abcde")),
            namespace: Some(NAMESPACE.into()),
            labels: Some(
                [
                    ("kubernetes.io/service-name".to_string(), service),
                    (
                        "app.kubernetes.io/instance".to_string(),
                        cluster.to_string(),
                    ),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "wsring-operator".to_string(),
                    ),
                    (
                        membership::MANAGED_BY_LABEL.to_string(),
                        membership::ENDPOINTSLICE_CONTROLLER.to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ports: Some(
            ports
                .into_iter()
                .map(|(name, port)| EndpointPort {
                    name: Some(name.into()),
                    port: Some(port),
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                })
                .collect(),
        ),
    }
}

/// A slice of `NAME-pods`.
pub fn pod_slice(cluster: &str, endpoints: &[EndpointFixture]) -> EndpointSlice {
    let endpoints = endpoints
        .iter()
        .map(|e| Endpoint {
            addresses: vec![e.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: e.ready,
                serving: e.ready,
                terminating: Some(e.terminating),
            }),
            target_ref: e.pod.as_ref().map(|p| ObjectReference {
                kind: Some("Pod".into()),
                name: Some(p.clone()),
                namespace: Some(NAMESPACE.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        })
        .collect();
    slice(
        Names::pods_service(cluster),
        cluster,
        endpoints,
        vec![("ws", 8081), ("admin", 9091)],
    )
}

/// Ready pods `chat-0..n` in one slice.
pub fn ready_pods(n: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..n).map(EndpointFixture::ready).collect();
    pod_slice("chat", &eps)
}

/// A slice of `NAME-router-admin` with ready and not-ready router addresses.
pub fn router_slice(cluster: &str, ready: &[&str], not_ready: &[&str], port: i32) -> EndpointSlice {
    let pod = format!("{}-7d9f8c6b5", Names::router(cluster));
    let ep = |ip: &&str, ok: bool| Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ok),
            serving: Some(ok),
            terminating: Some(false),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(format!("{pod}-{}", ip.replace('.', "x"))),
            namespace: Some(NAMESPACE.into()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    };
    let endpoints = ready
        .iter()
        .map(|ip| ep(ip, true))
        .chain(not_ready.iter().map(|ip| ep(ip, false)))
        .collect();
    slice(
        Names::router_admin_service(cluster),
        cluster,
        endpoints,
        vec![("admin", port)],
    )
}
