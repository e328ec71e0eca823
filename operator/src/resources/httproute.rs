//! The optional Gateway API route `NAME` in front of the public router Service:
//! an HTTPRoute (`gateway.networking.k8s.io/v1`) attached to the Gateways named
//! in `spec.gateway`, sending every path of its host names to the routers.
//!
//! k8s-openapi has no Gateway API types, so the few fields wsring sets are typed
//! here; `schema = "disabled"` because the CRD is the Gateway API project's, not
//! ours.

use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{child_meta, Component};
use crate::crd::{GatewayParentRef, WebSocketCluster};

/// The HTTPRoute fields wsring sets (Gateway API v1 `HTTPRouteSpec`).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    /// Gateways the route attaches to.
    pub parent_refs: Vec<GatewayParentRef>,
    /// Host names the route answers; empty = the listeners' host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// One rule: every path to the router Service.
    pub rules: Vec<HTTPRouteRule>,
}

/// One HTTPRoute rule: path matches and the Service they go to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    /// Request matches of the rule.
    pub matches: Vec<HTTPRouteMatch>,
    /// Where matching requests go.
    pub backend_refs: Vec<HTTPBackendRef>,
}

/// A request match: here only a path prefix.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct HTTPRouteMatch {
    /// The path match.
    pub path: HTTPPathMatch,
}

/// A path match (`type: PathPrefix`, `value: /`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct HTTPPathMatch {
    /// `PathPrefix`, `Exact` or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The path.
    pub value: String,
}

/// A Service backend by name and port number (Gateway API has no named ports).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct HTTPBackendRef {
    /// Kind of the backend: `Service`.
    pub kind: String,
    /// Service name.
    pub name: String,
    /// Service port.
    pub port: i32,
}

/// The desired HTTPRoute, or `None` without `spec.gateway` (an existing one of
/// this cluster is then deleted).
pub fn http_route(wsc: &WebSocketCluster) -> Option<HTTPRoute> {
    let gateway = wsc.spec.gateway.as_ref()?;
    let mut route = HTTPRoute::new(
        &wsc.name_any(),
        HTTPRouteSpec {
            parent_refs: gateway.parent_refs.clone(),
            hostnames: gateway.hostnames.clone(),
            rules: vec![HTTPRouteRule {
                matches: vec![HTTPRouteMatch {
                    path: HTTPPathMatch {
                        type_: "PathPrefix".to_string(),
                        value: "/".to_string(),
                    },
                }],
                backend_refs: vec![HTTPBackendRef {
                    kind: "Service".to_string(),
                    name: wsc.name_any(),
                    port: wsc.spec.router.service.port,
                }],
            }],
        },
    );
    route.metadata = child_meta(wsc, wsc.name_any(), Component::Router);
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_gateway_means_none() {
        assert!(http_route(&WebSocketCluster::test()).is_none());
    }

    #[test]
    fn route_attaches_to_the_gateway_and_sends_every_path_to_the_routers() {
        let mut wsc = WebSocketCluster::test().with_gateway("public", Some("infra"));
        wsc.spec.router.service.port = 8000;
        let route = serde_json::to_value(http_route(&wsc).unwrap()).unwrap();
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(route["kind"], "HTTPRoute");
        assert_eq!(route["metadata"]["name"], "chat");
        assert_eq!(route["metadata"]["namespace"], "testns");
        assert_eq!(
            route["metadata"]["ownerReferences"][0]["kind"],
            "WebSocketCluster"
        );
        assert_eq!(
            route["spec"],
            json!({
                "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "websecure"}],
                "hostnames": ["chat.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"kind": "Service", "name": "chat", "port": 8000}]
                }]
            })
        );
    }
}
