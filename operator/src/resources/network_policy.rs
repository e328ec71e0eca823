//! NetworkPolicies `NAME-pods` and `NAME-router`: who may reach which port of
//! a cluster's pods.
//!
//! - ws-pod 8081 (WebSockets): the cluster's routers only; a client that
//!   reached a pod directly would bypass routing and the origin check.
//! - ws-pod 9091 (admin, push): the routers, the operator and the monitoring
//!   namespaces the operator was given (Prometheus scrapes `/metrics`).
//! - router 8080 (public): anyone; it is the front door.
//! - router 9090 (admin: `PUT /ring`, push API): the operator, the monitoring
//!   namespaces, and the peers of `spec.router.adminFrom` (your push clients).
//!
//! Only ingress is restricted: routers need Redis and the API server, pods
//! their app's dependencies, none of which the operator can know. The
//! policies take effect where the network plugin enforces NetworkPolicy
//! (tested on the test cluster with kube-router's policy controller).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT, ROUTER_ADMIN_PORT, ROUTER_WS_PORT};

use super::{child_meta, selector_labels, Component, Names};
use crate::crd::WebSocketCluster;

/// Label of every namespace: its name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Who besides the routers may reach the admin ports: where the operator
/// runs and which namespaces scrape metrics. Operator-wide settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminAccess {
    /// The operator's namespace (its `POD_NAMESPACE`); `None` outside a cluster.
    pub operator_namespace: Option<String>,
    /// Namespaces allowed to scrape `/metrics` on the admin ports.
    pub monitoring_namespaces: Vec<String>,
}

impl AdminAccess {
    /// The operator pods (the chart's labels) and every monitoring namespace.
    fn peers(&self) -> Vec<NetworkPolicyPeer> {
        let mut peers = Vec::new();
        if let Some(ns) = &self.operator_namespace {
            peers.push(NetworkPolicyPeer {
                namespace_selector: Some(match_labels([(NAMESPACE_NAME_LABEL, ns.as_str())])),
                pod_selector: Some(match_labels([
                    ("app.kubernetes.io/part-of", "wsring"),
                    ("app.kubernetes.io/component", "operator"),
                ])),
                ip_block: None,
            });
        }
        for ns in &self.monitoring_namespaces {
            peers.push(NetworkPolicyPeer {
                namespace_selector: Some(match_labels([(NAMESPACE_NAME_LABEL, ns.as_str())])),
                pod_selector: None,
                ip_block: None,
            });
        }
        peers
    }
}

/// The policy of the StatefulSet pods (`NAME-pods`).
pub fn pods_policy(wsc: &WebSocketCluster, access: &AdminAccess) -> NetworkPolicy {
    let routers = routers_peer(wsc);
    let mut admin_from = vec![routers.clone()];
    admin_from.extend(access.peers());
    policy(
        wsc,
        Names::pods_service(&wsc.name_any()),
        Component::Pod,
        vec![
            rule(Some(vec![routers]), i32::from(POD_WS_PORT)),
            rule(Some(admin_from), i32::from(POD_ADMIN_PORT)),
        ],
    )
}

/// The policy of the router pods (`NAME-router`).
pub fn router_policy(wsc: &WebSocketCluster, access: &AdminAccess) -> NetworkPolicy {
    let mut admin_from = access.peers();
    admin_from.extend(wsc.spec.router.admin_from.iter().cloned());
    let mut rules = vec![rule(None, i32::from(ROUTER_WS_PORT))];
    if !admin_from.is_empty() {
        rules.push(rule(Some(admin_from), i32::from(ROUTER_ADMIN_PORT)));
    }
    policy(
        wsc,
        Names::router(&wsc.name_any()),
        Component::Router,
        rules,
    )
}

fn policy(
    wsc: &WebSocketCluster,
    name: String,
    component: Component,
    ingress: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: child_meta(wsc, name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(wsc, component)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}

/// `from` (`None`: anyone) may reach TCP `port`.
fn rule(from: Option<Vec<NetworkPolicyPeer>>, port: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from,
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".to_string()),
            end_port: None,
        }]),
    }
}

fn routers_peer(wsc: &WebSocketCluster) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(wsc, Component::Router)),
            match_expressions: None,
        }),
        namespace_selector: None,
        ip_block: None,
    }
}

fn match_labels<const N: usize>(labels: [(&str, &str); N]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        match_expressions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access() -> AdminAccess {
        AdminAccess {
            operator_namespace: Some("wsring-system".into()),
            monitoring_namespaces: vec!["monitoring".into()],
        }
    }

    #[test]
    fn pods_take_websockets_from_routers_and_admin_calls_from_routers_operator_and_monitoring() {
        let p = serde_json::to_value(pods_policy(&WebSocketCluster::test(), &access())).unwrap();
        assert_eq!(p["metadata"]["name"], "chat-pods");
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "pod"
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = p["spec"]["ingress"].as_array().unwrap();
        assert_eq!(
            rules[0]["ports"],
            json!([{"port": 8081, "protocol": "TCP"}])
        );
        assert_eq!(
            rules[0]["from"],
            json!([{"podSelector": {"matchLabels": {
                "app.kubernetes.io/component": "router",
                "app.kubernetes.io/instance": "chat",
                "app.kubernetes.io/name": "wsring"}}}])
        );
        assert_eq!(
            rules[1]["ports"],
            json!([{"port": 9091, "protocol": "TCP"}])
        );
        let from = rules[1]["from"].as_array().unwrap();
        assert_eq!(from.len(), 3);
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "wsring-system"
        );
        assert_eq!(
            from[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "operator"
        );
        assert_eq!(
            from[2],
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
        );
    }

    #[test]
    fn routers_are_public_on_8080_and_admin_only_for_the_operator_monitoring_and_push_clients() {
        let mut wsc = WebSocketCluster::test();
        wsc.spec.router.admin_from = vec![serde_json::from_value(
            json!({"podSelector": {"matchLabels": {"app": "notifier"}}}),
        )
        .unwrap()];
        let p = serde_json::to_value(router_policy(&wsc, &access())).unwrap();
        assert_eq!(p["metadata"]["name"], "chat-router");
        let rules = p["spec"]["ingress"].as_array().unwrap();
        assert_eq!(
            rules[0],
            json!({"ports": [{"port": 8080, "protocol": "TCP"}]})
        );
        assert_eq!(
            rules[1]["ports"],
            json!([{"port": 9090, "protocol": "TCP"}])
        );
        let from = rules[1]["from"].as_array().unwrap();
        assert_eq!(from.len(), 3);
        assert_eq!(from[2]["podSelector"]["matchLabels"]["app"], "notifier");
    }
}
