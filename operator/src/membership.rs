//! Ring membership from EndpointSlices, as pure functions.
//!
//! The ready endpoints of the headless Service `NAME-pods` are the members:
//! `{name: targetRef.name, addr: "IP:8081", admin: "IP:9091"}` (ports taken from
//! the slice's named ports, which the operator's Service defines). The ready
//! endpoints of `NAME-router-admin` are the routers to notify. Readiness follows
//! the EndpointSlice API: an unset `ready` counts as ready, terminating endpoints
//! are not ready.
//!
//! Only what the EndpointSlice controller wrote counts, and only endpoints that
//! point at the cluster's own Pods (`NAME-<ordinal>` of the StatefulSet,
//! `NAME-router-…` of the Deployment) in the slice's namespace: anyone who may
//! write an EndpointSlice labelled `kubernetes.io/service-name: NAME-pods` could
//! otherwise add an address of their choosing to the ring and receive its
//! traffic and the bearer token (the CVE-2021-25740 class).

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT, ROUTER_ADMIN_PORT};
use wsring_core::Member;

use crate::crd::WebSocketCluster;
use crate::resources::Names;

/// Label the EndpointSlice controller sets to the owning Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label copied from our Services onto their slices: the cluster name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the writer of an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// [`MANAGED_BY_LABEL`] of the slices kube-controller-manager writes for Services with a selector.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// Ring members from the pod Service's slices: ready endpoints of the
/// cluster's StatefulSet pods, one per pod name (slices may overlap while they
/// are rewritten), sorted by name.
pub fn members(cluster: &str, slices: &[EndpointSlice]) -> Vec<Member> {
    let mut by_name = BTreeMap::new();
    for slice in slices.iter().filter(|s| written_by_the_controller(s)) {
        let ws = named_port(slice, "ws").unwrap_or(i32::from(POD_WS_PORT));
        let admin = named_port(slice, "admin").unwrap_or(i32::from(POD_ADMIN_PORT));
        for ep in slice.endpoints.iter().flatten().filter(|e| is_ready(e)) {
            let Some(pod) = own_pod(slice, ep).filter(|p| is_statefulset_pod(cluster, p)) else {
                continue;
            };
            let Some(ip) = ep.addresses.first() else {
                continue;
            };
            by_name.entry(pod.to_string()).or_insert_with(|| Member {
                name: pod.to_string(),
                addr: socket_addr(ip, ws),
                admin: socket_addr(ip, admin),
            });
        }
    }
    by_name.into_values().collect()
}

/// Admin addresses (`IP:9090`) of the ready routers (pods of the router
/// Deployment), sorted and deduplicated.
pub fn routers(cluster: &str, slices: &[EndpointSlice]) -> Vec<String> {
    let prefix = format!("{}-", Names::router(cluster));
    let mut addrs: Vec<String> = slices
        .iter()
        .filter(|s| written_by_the_controller(s))
        .flat_map(|slice| {
            let port = named_port(slice, "admin").unwrap_or(i32::from(ROUTER_ADMIN_PORT));
            let prefix = prefix.clone();
            slice
                .endpoints
                .iter()
                .flatten()
                .filter(|e| is_ready(e))
                .filter(move |e| own_pod(slice, e).is_some_and(|p| p.starts_with(&prefix)))
                .filter_map(move |e| e.addresses.first().map(|ip| socket_addr(ip, port)))
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The cluster a watched EndpointSlice belongs to (by the instance label our
/// Services carry and the EndpointSlice controller copies).
pub fn cluster_for_slice(slice: &EndpointSlice) -> Option<ObjectRef<WebSocketCluster>> {
    slice.labels().get(SERVICE_NAME_LABEL)?;
    let cluster = slice.labels().get(INSTANCE_LABEL)?;
    let ns = slice.namespace()?;
    Some(ObjectRef::new(cluster).within(&ns))
}

fn written_by_the_controller(slice: &EndpointSlice) -> bool {
    slice.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(ENDPOINTSLICE_CONTROLLER)
}

/// The name of the Pod an endpoint points at, when it is a Pod of the slice's namespace.
fn own_pod<'a>(slice: &EndpointSlice, ep: &'a Endpoint) -> Option<&'a str> {
    let target = ep.target_ref.as_ref()?;
    if target.kind.as_deref() != Some("Pod") {
        return None;
    }
    if target.namespace.is_some() && target.namespace != slice.metadata.namespace {
        return None;
    }
    target.name.as_deref()
}

/// Whether `pod` is a StatefulSet pod of `cluster`: `NAME-<ordinal>`.
fn is_statefulset_pod(cluster: &str, pod: &str) -> bool {
    pod.strip_prefix(cluster)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
}

fn is_ready(ep: &Endpoint) -> bool {
    let conditions = ep.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    ready && !terminating
}

fn named_port(slice: &EndpointSlice, name: &str) -> Option<i32> {
    slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| p.port)
}

fn socket_addr(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod_slice, router_slice, EndpointFixture};

    #[test]
    fn ready_endpoints_become_members() {
        let slice = pod_slice(
            "chat",
            &[
                EndpointFixture::ready(0),
                EndpointFixture::ready(1),
                EndpointFixture::not_ready(2),
            ],
        );
        let m = members("chat", &[slice]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "chat-0");
        assert_eq!(m[0].addr, "10.244.0.10:8081");
        assert_eq!(m[0].admin, "10.244.0.10:9091");
        assert_eq!(m[1].name, "chat-1");
    }

    #[test]
    fn terminating_and_unset_readiness() {
        let mut terminating = EndpointFixture::ready(0);
        terminating.terminating = true;
        let mut unknown = EndpointFixture::ready(1);
        unknown.ready = None;
        let m = members("chat", &[pod_slice("chat", &[terminating, unknown])]);
        assert_eq!(
            m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["chat-1"]
        );
    }

    #[test]
    fn overlapping_slices_are_deduplicated_and_sorted() {
        let a = pod_slice(
            "chat",
            &[EndpointFixture::ready(2), EndpointFixture::ready(0)],
        );
        let b = pod_slice(
            "chat",
            &[EndpointFixture::ready(0), EndpointFixture::ready(1)],
        );
        let names: Vec<_> = members("chat", &[a, b])
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["chat-0", "chat-1", "chat-2"]);
    }

    #[test]
    fn endpoints_without_pod_or_address_are_skipped() {
        let mut no_pod = EndpointFixture::ready(0);
        no_pod.pod = None;
        let mut slice = pod_slice("chat", &[no_pod, EndpointFixture::ready(1)]);
        slice.endpoints.get_or_insert_with(Vec::new).push(Endpoint {
            addresses: vec![],
            ..Endpoint::default()
        });
        assert_eq!(members("chat", &[slice]).len(), 1);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let mut ep = EndpointFixture::ready(0);
        ep.ip = "fd00::5".into();
        let m = members("chat", &[pod_slice("chat", &[ep])]);
        assert_eq!(m[0].addr, "[fd00::5]:8081");
    }

    #[test]
    fn ready_routers_on_their_admin_port() {
        let slice = router_slice("chat", &["10.244.1.2", "10.244.1.1"], &["10.244.1.3"], 9090);
        assert_eq!(
            routers("chat", &[slice]),
            ["10.244.1.1:9090", "10.244.1.2:9090"]
        );
    }

    /// The CVE-2021-25740 class: an EndpointSlice written by someone else, or
    /// an endpoint that is not one of the cluster's own Pods, never joins the
    /// ring nor is notified (with the bearer token) as a router.
    #[test]
    fn only_the_controllers_slices_and_the_clusters_own_pods_count() {
        let mut forged = pod_slice("chat", &[EndpointFixture::ready(7)]);
        forged
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
        let mut unlabelled = pod_slice("chat", &[EndpointFixture::ready(8)]);
        unlabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        let mut other_pod = EndpointFixture::ready(1);
        other_pod.pod = Some("attacker-0".into());
        let mut other_kind = pod_slice("chat", &[EndpointFixture::ready(2)]);
        other_kind.endpoints.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .kind = Some("Node".into());
        let mut other_ns = pod_slice("chat", &[EndpointFixture::ready(3)]);
        other_ns.endpoints.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .namespace = Some("elsewhere".into());
        let lookalike = EndpointFixture {
            pod: Some("chat-4x".into()),
            ..EndpointFixture::ready(4)
        };
        let good = pod_slice("chat", &[EndpointFixture::ready(0), other_pod, lookalike]);
        let names: Vec<_> = members("chat", &[forged, unlabelled, other_kind, other_ns, good])
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["chat-0"]);

        let mut routers_forged = router_slice("chat", &["10.0.0.9"], &[], 9090);
        routers_forged
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
        assert!(routers("chat", &[routers_forged]).is_empty());
    }

    #[test]
    fn slices_map_to_their_cluster() {
        let slice = pod_slice("chat", &[]);
        let r = cluster_for_slice(&slice).unwrap();
        assert_eq!(r.name, "chat");
        assert_eq!(r.namespace.as_deref(), Some("testns"));
        let mut foreign = slice.clone();
        foreign.metadata.labels = None;
        assert!(cluster_for_slice(&foreign).is_none());
    }
}
