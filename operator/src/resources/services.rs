//! The three Services of a cluster:
//! - `NAME-pods` (headless): gives the pods stable DNS and, through its
//!   EndpointSlices, the ring members (ready endpoints only, so
//!   `publishNotReadyAddresses` stays off);
//! - `NAME`: the router's public WebSocket port only, the one an Ingress uses;
//! - `NAME-router-admin`: the router admin port, never exposed; its endpoints are
//!   the routers the operator notifies.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT, ROUTER_ADMIN_PORT};

use super::{child_meta, selector_labels, Component, Names};
use crate::crd::WebSocketCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// Headless Service of the pods.
pub fn pods_service(wsc: &WebSocketCluster) -> Service {
    Service {
        metadata: child_meta(wsc, Names::pods_service(&wsc.name_any()), Component::Pod),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(selector_labels(wsc, Component::Pod)),
            ports: Some(vec![
                port("ws", i32::from(POD_WS_PORT)),
                port("admin", i32::from(POD_ADMIN_PORT)),
            ]),
            publish_not_ready_addresses: Some(false),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Public router Service (WebSocket port only).
pub fn router_service(wsc: &WebSocketCluster) -> Service {
    let svc = &wsc.spec.router.service;
    Service {
        metadata: child_meta(wsc, wsc.name_any(), Component::Router),
        spec: Some(ServiceSpec {
            type_: Some(svc.type_.as_str().to_string()),
            selector: Some(selector_labels(wsc, Component::Router)),
            ports: Some(vec![ServicePort {
                port: svc.port,
                ..port("ws", svc.port)
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Router admin Service (ClusterIP, admin port only).
pub fn router_admin_service(wsc: &WebSocketCluster) -> Service {
    Service {
        metadata: child_meta(
            wsc,
            Names::router_admin_service(&wsc.name_any()),
            Component::Router,
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(wsc, Component::Router)),
            ports: Some(vec![port("admin", i32::from(ROUTER_ADMIN_PORT))]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceType;

    fn ports(s: &Service) -> Vec<(String, i32)> {
        s.spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect()
    }

    #[test]
    fn pods_service_is_headless_with_ws_and_admin() {
        let s = pods_service(&WebSocketCluster::test());
        assert_eq!(s.metadata.name.as_deref(), Some("chat-pods"));
        assert_eq!(s.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            ports(&s),
            [("ws".to_string(), 8081), ("admin".to_string(), 9091)]
        );
    }

    #[test]
    fn public_service_has_only_the_ws_port() {
        let mut wsc = WebSocketCluster::test();
        wsc.spec.router.service.type_ = ServiceType::LoadBalancer;
        wsc.spec.router.service.port = 443;
        let s = router_service(&wsc);
        assert_eq!(s.metadata.name.as_deref(), Some("chat"));
        assert_eq!(ports(&s), [("ws".to_string(), 443)]);
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec.ports.unwrap()[0].target_port,
            Some(IntOrString::String("ws".into()))
        );
    }

    #[test]
    fn admin_service_is_cluster_ip_on_9090() {
        let s = router_admin_service(&WebSocketCluster::test());
        assert_eq!(s.metadata.name.as_deref(), Some("chat-router-admin"));
        assert_eq!(ports(&s), [("admin".to_string(), 9090)]);
        assert_eq!(s.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    }
}
