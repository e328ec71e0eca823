//! The optional Ingress `NAME` in front of the public router Service: wss via the
//! TLS Secret, and ingress-nginx timeouts long enough for idle WebSockets (its
//! 60 s default would cut every quiet connection).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::ResourceExt;

use super::{child_meta, Component};
use crate::crd::WebSocketCluster;

/// Annotations added unless the spec overrides them.
pub const DEFAULT_ANNOTATIONS: [(&str, &str); 2] = [
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
];

/// The desired Ingress, or `None` when disabled (an existing one is then deleted).
pub fn ingress(wsc: &WebSocketCluster) -> Option<Ingress> {
    let spec = &wsc.spec.ingress;
    if !spec.enabled {
        return None;
    }
    let mut annotations: BTreeMap<String, String> = DEFAULT_ANNOTATIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    annotations.extend(spec.annotations.clone());
    let mut metadata = child_meta(wsc, wsc.name_any(), Component::Router);
    metadata.annotations = Some(annotations);

    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: wsc.name_any(),
            port: Some(ServiceBackendPort {
                name: Some("ws".to_string()),
                number: None,
            }),
        }),
        resource: None,
    };
    let tls = spec.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: spec.host.clone().map(|h| vec![h]),
            secret_name: Some(secret.clone()),
        }]
    });
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: spec.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_string()),
                        path_type: "Prefix".to_string(),
                        backend,
                    }],
                }),
            }]),
            tls,
            default_backend: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_means_none() {
        assert!(ingress(&WebSocketCluster::test()).is_none());
    }

    #[test]
    fn wss_with_timeouts_and_user_annotations_winning() {
        let mut wsc = WebSocketCluster::test().with_ingress("chat.example.com", Some("chat-tls"));
        wsc.spec.ingress.annotations.insert(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            "7200".into(),
        );
        let ing = ingress(&wsc).unwrap();
        let ann = ing.metadata.annotations.unwrap();
        assert_eq!(
            ann["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "7200"
        );
        assert_eq!(
            ann["nginx.ingress.kubernetes.io/proxy-send-timeout"],
            "3600"
        );
        let spec = ing.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("chat-tls"));
        assert_eq!(tls.hosts, Some(vec!["chat.example.com".to_string()]));
        let rule = &spec.rules.unwrap()[0];
        let backend = rule.http.as_ref().unwrap().paths[0]
            .backend
            .service
            .clone()
            .unwrap();
        assert_eq!(backend.name, "chat");
        assert_eq!(backend.port.unwrap().name.as_deref(), Some("ws"));
    }
}
