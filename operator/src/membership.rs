//! Ring membership from EndpointSlices, as pure functions.
//!
//! The ready endpoints of the headless Service `NAME-pods` are the members:
//! `{name: targetRef.name, addr: "IP:8081", admin: "IP:9091"}` (ports taken from
//! the slice's named ports, which the operator's Service defines). The ready
//! endpoints of `NAME-router-admin` are the routers to notify. Readiness follows
//! the EndpointSlice API: an unset `ready` counts as ready, terminating endpoints
//! are not ready.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use wsring_core::Member;

use crate::crd::WebSocketCluster;
use crate::resources::{POD_ADMIN_PORT, POD_WS_PORT, ROUTER_ADMIN_PORT};

/// Label the EndpointSlice controller sets to the owning Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label copied from our Services onto their slices: the cluster name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Ring members from the pod Service's slices: ready endpoints with a pod
/// `targetRef`, one per pod name (slices may overlap while they are rewritten),
/// sorted by name.
pub fn members(slices: &[EndpointSlice]) -> Vec<Member> {
    let mut by_name = BTreeMap::new();
    for slice in slices {
        let ws = named_port(slice, "ws").unwrap_or(POD_WS_PORT);
        let admin = named_port(slice, "admin").unwrap_or(POD_ADMIN_PORT);
        for ep in slice.endpoints.iter().flatten().filter(|e| is_ready(e)) {
            let Some(pod) = ep.target_ref.as_ref().and_then(|r| r.name.clone()) else {
                continue;
            };
            let Some(ip) = ep.addresses.first() else {
                continue;
            };
            by_name.entry(pod.clone()).or_insert_with(|| Member {
                name: pod,
                addr: socket_addr(ip, ws),
                admin: socket_addr(ip, admin),
            });
        }
    }
    by_name.into_values().collect()
}

/// Admin addresses (`IP:9090`) of the ready routers, sorted and deduplicated.
pub fn routers(slices: &[EndpointSlice]) -> Vec<String> {
    let mut addrs: Vec<String> = slices
        .iter()
        .flat_map(|slice| {
            let port = named_port(slice, "admin").unwrap_or(ROUTER_ADMIN_PORT);
            slice
                .endpoints
                .iter()
                .flatten()
                .filter(|e| is_ready(e))
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
        let m = members(&[slice]);
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
        let m = members(&[pod_slice("chat", &[terminating, unknown])]);
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
        let names: Vec<_> = members(&[a, b]).into_iter().map(|m| m.name).collect();
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
        assert_eq!(members(&[slice]).len(), 1);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let mut ep = EndpointFixture::ready(0);
        ep.ip = "fd00::5".into();
        let m = members(&[pod_slice("chat", &[ep])]);
        assert_eq!(m[0].addr, "[fd00::5]:8081");
    }

    #[test]
    fn ready_routers_on_their_admin_port() {
        let slice = router_slice("chat", &["10.244.1.2", "10.244.1.1"], &["10.244.1.3"], 9090);
        assert_eq!(routers(&[slice]), ["10.244.1.1:9090", "10.244.1.2:9090"]);
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
