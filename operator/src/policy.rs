//! What the operator refuses to create on a cluster author's behalf.
//!
//! The operator writes every child with its own, cluster-wide identity, so a
//! `WebSocketCluster` must never give its author more than they already have.
//! Three layers keep it so:
//! - the chart's admission policy refuses a `WebSocketCluster` whose author may
//!   not create pods (and, when asked for, Ingresses or HTTPRoutes) in its
//!   namespace ("creating a WebSocketCluster is creating pods");
//! - [`Policy::check`] refuses a pod template outside the Pod Security
//!   restricted profile ([`crate::pod_security`]) unless `spec.podSecurity:
//!   Unrestricted`, and Ingress annotations outside the operator's allow-list:
//!   an ingress-nginx snippet annotation, for one, would run configuration of
//!   the author's choosing in the shared ingress controller;
//! - [`crate::crd::WebSocketClusterSpec::validate`] refuses what the processes
//!   could not run.
//!
//! A refusal is `Degraded`/`InvalidSpec` with a Warning event naming the
//! field, and nothing is applied.

use kube::ResourceExt;

use crate::crd::{PodSecurity, WebSocketCluster};
use crate::error::Error;
use crate::pod_security::restricted_violations;
use crate::resources::statefulset;

/// The Ingress annotations allowed by default (`--ingress-annotation-allowlist`):
/// timeouts, buffering and redirects of ingress-nginx, Traefik's entry point and
/// TLS switch, cert-manager's issuers. Snippets, auth and rewrite annotations
/// are not on it.
pub const DEFAULT_INGRESS_ANNOTATIONS: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout,\
nginx.ingress.kubernetes.io/proxy-send-timeout,\
nginx.ingress.kubernetes.io/proxy-buffering,\
nginx.ingress.kubernetes.io/ssl-redirect,\
nginx.ingress.kubernetes.io/force-ssl-redirect,\
traefik.ingress.kubernetes.io/router.entrypoints,\
traefik.ingress.kubernetes.io/router.tls,\
cert-manager.io/cluster-issuer,\
cert-manager.io/issuer";

/// The operator's limits on what a cluster may ask for.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Allowed Ingress annotation keys; an entry ending in `*` allows a prefix.
    ingress_annotations: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(DEFAULT_INGRESS_ANNOTATIONS)
    }
}

impl Policy {
    /// A policy with this comma-separated annotation allow-list.
    pub fn new(ingress_annotations: &str) -> Self {
        Policy {
            ingress_annotations: ingress_annotations
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect(),
        }
    }

    /// The spec's own checks, then the pod template against the restricted
    /// profile (unless `Unrestricted`) and the Ingress annotations against the
    /// allow-list; the first failure as [`Error::InvalidSpec`].
    pub fn check(&self, wsc: &WebSocketCluster) -> Result<(), Error> {
        wsc.spec.validate()?;
        if wsc.spec.pod_security == PodSecurity::Restricted {
            let template = statefulset::statefulset(wsc).spec.template;
            let violations = template
                .spec
                .as_ref()
                .map(restricted_violations)
                .unwrap_or_default();
            if !violations.is_empty() {
                return Err(Error::InvalidSpec(format!(
                    "the pod template breaks the restricted Pod Security profile ({}); \
                     fix it, or set spec.podSecurity: Unrestricted in a trusted namespace",
                    violations.join("; ")
                )));
            }
        }
        if wsc.spec.ingress.enabled {
            let refused: Vec<&str> = wsc
                .spec
                .ingress
                .annotations
                .keys()
                .map(String::as_str)
                .filter(|key| !self.allows_annotation(key))
                .collect();
            if !refused.is_empty() {
                return Err(Error::InvalidSpec(format!(
                    "spec.ingress.annotations: {} not on the operator's allow-list ({}) for {}",
                    refused.join(", "),
                    self.ingress_annotations.join(", "),
                    wsc.name_any()
                )));
            }
        }
        Ok(())
    }

    fn allows_annotation(&self, key: &str) -> bool {
        self.ingress_annotations
            .iter()
            .any(|entry| match entry.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == entry,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(policy: &Policy, wsc: &WebSocketCluster) -> String {
        match policy.check(wsc) {
            Err(Error::InvalidSpec(why)) => why,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn the_echo_pods_and_the_examples_shape_pass() {
        Policy::default().check(&WebSocketCluster::test()).unwrap();
        Policy::default()
            .check(&WebSocketCluster::test().with_app("registry.example.com/app:1", 9000))
            .unwrap();
    }

    /// Found in the security review: a WebSocketCluster got privileged,
    /// hostPath or host-network pods written by the operator.
    #[test]
    fn a_privileged_template_is_refused_unless_unrestricted() {
        let mut wsc = WebSocketCluster::test();
        wsc.spec.template = Some(json!({"spec": {
            "hostNetwork": true,
            "containers": [{"name": "app", "image": "x", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]
        }}));
        let why = refusal(&Policy::default(), &wsc);
        for field in [
            "hostNetwork",
            "volumes[root].hostPath",
            "containers[app].securityContext.privileged",
        ] {
            assert!(why.contains(field), "{field}: {why}");
        }
        wsc.spec.pod_security = PodSecurity::Unrestricted;
        Policy::default().check(&wsc).unwrap();
    }

    /// Found in the security review: `spec.ingress.annotations` passed
    /// through, snippet annotations included.
    #[test]
    fn ingress_annotations_must_be_on_the_allow_list() {
        let mut wsc = WebSocketCluster::test().with_ingress("chat.example.com", None);
        wsc.spec.ingress.annotations.insert(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            "7200".into(),
        );
        Policy::default().check(&wsc).unwrap();
        wsc.spec.ingress.annotations.insert(
            "nginx.ingress.kubernetes.io/configuration-snippet".into(),
            "more_set_headers \"x: y\";".into(),
        );
        let why = refusal(&Policy::default(), &wsc);
        assert!(why.contains("configuration-snippet"), "{why}");
        let prefixed = Policy::new("nginx.ingress.kubernetes.io/*");
        prefixed.check(&wsc).unwrap();
    }
}
