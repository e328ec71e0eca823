//! The router's ServiceAccount, Role and RoleBinding `NAME-router`: least
//! privilege, read access to its own ring ConfigMap only (`resourceNames`, so a
//! list/watch must select it with `fieldSelector=metadata.name=NAME-ring`).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;

use super::{child_meta, Component, Names};
use crate::crd::WebSocketCluster;

/// ServiceAccount of the router pods.
pub fn service_account(wsc: &WebSocketCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(wsc, Names::router(&wsc.name_any()), Component::Router),
        ..ServiceAccount::default()
    }
}

/// Role: get/list/watch on the ring ConfigMap.
pub fn role(wsc: &WebSocketCluster) -> Role {
    let name = wsc.name_any();
    Role {
        metadata: child_meta(wsc, Names::router(&name), Component::Router),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_string()]),
            resource_names: Some(vec![Names::ring_configmap(&name)]),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            non_resource_urls: None,
        }]),
    }
}

/// RoleBinding of the Role to the router ServiceAccount.
pub fn role_binding(wsc: &WebSocketCluster) -> RoleBinding {
    let name = Names::router(&wsc.name_any());
    RoleBinding {
        metadata: child_meta(wsc, name.clone(), Component::Router),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: wsc.namespace(),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_reads_only_the_ring_configmap() {
        let role = role(&WebSocketCluster::test());
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resource_names, Some(vec!["chat-ring".to_string()]));
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
    }

    #[test]
    fn binding_targets_the_router_service_account() {
        let rb = role_binding(&WebSocketCluster::test());
        assert_eq!(rb.role_ref.name, "chat-router");
        let subject = &rb.subjects.unwrap()[0];
        assert_eq!(subject.name, "chat-router");
        assert_eq!(subject.namespace.as_deref(), Some("testns"));
    }
}
