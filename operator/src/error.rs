//! The operator's one error type. Every variant has a stable metric label, so
//! `wsring_operator_reconcile_failures_total{error=...}` tells failure kinds apart.

/// Why a reconcile (or the operator itself) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (network, RBAC, conflict, server error).
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The spec breaks a rule the schema cannot express; reported on the object.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The object lacks a field the API server always sets (namespace, name).
    #[error("object is missing {0}")]
    MissingObjectKey(&'static str),
    /// Building or parsing a document failed.
    #[error("serialization: {0}")]
    Serialization(String),
    /// A router did not take the new ring (it still converges through the ConfigMap).
    #[error("router {router} refused or missed the ring: {reason}")]
    Notify {
        /// Admin address of the router.
        router: String,
        /// What went wrong.
        reason: String,
    },
    /// The `WebSocketCluster` CRD is not installed in the cluster.
    #[error(
        "the WebSocketCluster CRD (websocketclusters.wsring.io) is not installed; install it with \
         `kubectl apply --server-side -f crds/websocketcluster.yaml` (or `crdgen | kubectl apply --server-side -f -`)"
    )]
    CrdNotInstalled,
    /// Leader election could not be held.
    #[error("leader election: {0}")]
    Leader(String),
    /// Binding or serving the metrics listener failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::Serialization(_) => "serialization",
            Error::Notify { .. } => "notify",
            Error::CrdNotInstalled => "crd_not_installed",
            Error::Leader(_) => "leader",
            Error::Io(_) => "io",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_snake_case_words() {
        let errors = [
            Error::InvalidSpec("x".into()),
            Error::MissingObjectKey("namespace"),
            Error::Serialization("x".into()),
            Error::Notify {
                router: "r".into(),
                reason: "x".into(),
            },
            Error::CrdNotInstalled,
            Error::Leader("x".into()),
        ];
        for e in errors {
            assert!(e
                .metric_label()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert!(Error::CrdNotInstalled.to_string().contains("kubectl apply"));
    }
}
