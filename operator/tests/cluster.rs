//! End-to-end against a real cluster (kind or k3d); ignored by default.
//!
//! Runs the controller in this test process against the current kubeconfig
//! context, installs the CRD, creates a `WebSocketCluster` in a fresh namespace,
//! waits for its pods to join the ring, scales it through the scale subresource
//! (what `kubectl scale wsc/NAME` does) and checks the ring follows. The pods
//! need the ws-pod and router images in the cluster; see operator/README.md:
//!
//! ```text
//! kind create cluster --name wsring
//! docker build -f docker/ws-pod.Dockerfile -t ghcr.io/wsring/ws-pod:0.1.0 .
//! docker build -f docker/router.Dockerfile -t ghcr.io/wsring/wsring-router:0.1.0 .
//! kind load docker-image --name wsring ghcr.io/wsring/ws-pod:0.1.0 ghcr.io/wsring/wsring-router:0.1.0
//! cargo test -p wsring-operator --test cluster -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;
use wsring_core::RingSpec;
use wsring_operator::metrics::Metrics;
use wsring_operator::{controller, WebSocketCluster, WebSocketClusterSpec};

async fn ring(cms: &Api<ConfigMap>) -> Option<RingSpec> {
    let cm = cms.get_opt("e2e-ring").await.ok()??;
    RingSpec::parse(cm.data?.get("ring.json")?.as_bytes()).ok()
}

async fn wait_for_members(cms: &Api<ConfigMap>, n: usize) -> RingSpec {
    tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            if let Some(r) = ring(cms).await {
                if r.members.len() == n {
                    return r;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("ring never reached {n} members"))
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn ring_follows_scale_on_a_real_cluster() {
    let client = Client::try_default().await.expect("a kubeconfig");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "websocketclusters.wsring.io",
        &PatchParams::apply("wsring-e2e").force(),
        &Patch::Apply(WebSocketCluster::crd()),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "websocketclusters.wsring.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established")
    .unwrap();

    let ns = format!("wsring-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let controller = tokio::spawn(controller::run(
        client.clone(),
        Some(ns.clone()),
        Arc::new(Metrics::default()),
        std::future::pending(),
    ));

    let clusters: Api<WebSocketCluster> = Api::namespaced(client.clone(), &ns);
    let spec = WebSocketClusterSpec {
        replicas: 2,
        ..WebSocketClusterSpec::default()
    };
    clusters
        .create(&PostParams::default(), &WebSocketCluster::new("e2e", spec))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let before = wait_for_members(&cms, 2).await;

    // What `kubectl scale wsc/e2e --replicas=3` does.
    clusters
        .patch_scale(
            "e2e",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let after = wait_for_members(&cms, 3).await;
    assert!(after.version > before.version);
    let status = clusters.get_status("e2e").await.unwrap().status.unwrap();
    assert!(status.ring_version >= after.version);

    controller.abort();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
