//! What the walk-through reads from the cluster besides kubectl's output: the
//! published ring, each router's ring, pod and container facts, and memory.
//! Shell commands (README blocks, kubectl, helm) run through [`sh`], which
//! prints them with their output like a terminal transcript.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;
use wsring_core::{Ring, RingSpec};

/// Where `scripts/cluster.sh up` put the cluster (its `WSRING_CLUSTER_DIR`).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("WSRING_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/wsrc"))
}

/// The admin kubeconfig of the cluster.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("kubeconfig"))
}

/// helm and kubectl as scripts/tools.sh installed them.
pub fn tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("WSRING_TOOLS_DIR") {
        return PathBuf::from(dir).join("bin");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    cache.join("wsring-tools/bin")
}

/// What a shell command printed.
pub struct Output {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `script` with bash (`set -euo pipefail`) in `dir`, with the cluster's
/// kubeconfig and the tools first on PATH; print it and what it printed.
pub fn sh_in(dir: &Path, script: &str) -> Output {
    let path = format!(
        "{}:{}",
        tools_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig())
        .env("KUBECACHEDIR", cluster_dir().join("kube-cache"))
        .env("PATH", path)
        .env("HELM_CONFIG_HOME", tools_bin().join("../helm/config"))
        .env("HELM_CACHE_HOME", tools_bin().join("../helm/cache"))
        .env("HELM_DATA_HOME", tools_bin().join("../helm/data"))
        .output()
        .expect("bash runs");
    let output = Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for line in script.lines() {
        eprintln!("$ {line}");
    }
    for line in output.stdout.lines().chain(output.stderr.lines()) {
        eprintln!("  {line}");
    }
    eprintln!(
        "  [{} in {:.1} s]",
        if output.ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    output
}

/// [`sh_in`] that must succeed; returns stdout.
pub fn sh_ok(dir: &Path, script: &str) -> String {
    let out = sh_in(dir, script);
    assert!(out.ok, "command failed: {script}\n{}", out.stderr);
    out.stdout
}

/// The cluster's API, for what kubectl would print only as text.
pub struct Cluster {
    /// Client with the admin kubeconfig.
    pub client: Client,
    /// Namespace of the WebSocketCluster under test.
    pub ns: String,
    /// Its name.
    pub name: String,
}

impl Cluster {
    /// A client for the WebSocketCluster `ns/name`.
    pub async fn connect(ns: &str, name: &str) -> Cluster {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig()).expect("kubeconfig readable"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig valid");
        Cluster {
            client: Client::try_from(config).expect("client"),
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The ring the operator published (ConfigMap `NAME-ring`).
    pub async fn published_ring(&self) -> Option<Ring> {
        let cm = self
            .api::<ConfigMap>()
            .get_opt(&format!("{}-ring", self.name))
            .await
            .ok()??;
        let spec = RingSpec::parse(cm.data?.get("ring.json")?.as_bytes()).ok()?;
        Ring::build(spec).ok()
    }

    /// Wait for a published ring whose members are exactly `members`.
    pub async fn ring_with(&self, members: &[&str], limit: Duration) -> Ring {
        let started = Instant::now();
        loop {
            if let Some(ring) = self.published_ring().await {
                if ring.spec().member_names() == members {
                    return ring;
                }
            }
            assert!(
                started.elapsed() < limit,
                "the ring never had exactly {members:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ready replicas of the StatefulSet `NAME`.
    pub async fn ready_pods(&self) -> i32 {
        self.api::<StatefulSet>()
            .get_opt(&self.name)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }

    /// The bearer token of the cluster's admin APIs (Secret `NAME-token`).
    pub async fn token(&self) -> String {
        let secret = self
            .api::<Secret>()
            .get(&format!("{}-token", self.name))
            .await
            .expect("token Secret");
        let bytes = secret.data.expect("data")["token"].0.clone();
        String::from_utf8(bytes).expect("token is text")
    }

    /// Running pods with these labels, with their IPs.
    pub async fn pods(&self, selector: &str) -> Vec<Pod> {
        labelled_pods(&self.api(), selector)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect()
    }

    /// Names of every pod with these labels, terminating ones included.
    pub async fn all_pod_names(&self, selector: &str) -> BTreeSet<String> {
        pod_names(&self.api(), selector).await
    }

    /// The label selector of the cluster's router pods.
    pub fn router_selector(&self) -> String {
        format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component=router",
            self.name
        )
    }

    /// The ring version each running router holds (`GET /ring` on its admin
    /// port, through a port-forward: the cluster's NetworkPolicy admits only
    /// the operator and monitoring namespaces to that port, not this host).
    pub async fn router_versions(&self, token: &str) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for pod in self.pods(&self.router_selector()).await {
            let Some(name) = pod.metadata.name else {
                out.push(None);
                continue;
            };
            let body = self.admin_get(&name, 9090, "/ring", token).await;
            let version = body
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|v| v["version"].as_u64());
            out.push(version);
        }
        out
    }

    /// `GET path` with the bearer token on `port` of pod `name`, through the
    /// API server's port-forward; the body, or `None` on any failure.
    pub async fn admin_get(
        &self,
        name: &str,
        port: u16,
        path: &str,
        token: &str,
    ) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut forward = self.api::<Pod>().portforward(name, &[port]).await.ok()?;
        let mut stream = forward.take_stream(port)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .ok()?
            .ok()?;
        drop(stream);
        let _ = forward.join().await;
        let answer = String::from_utf8(answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// ClusterIP and port of a Service.
    pub async fn service_addr(&self, name: &str) -> String {
        let svc = self.api::<Service>().get(name).await.expect("service");
        let spec = svc.spec.expect("spec");
        format!(
            "{}:{}",
            spec.cluster_ip.expect("cluster IP"),
            spec.ports.expect("ports")[0].port
        )
    }

    /// containerd's id of container `container` of pod `pod`.
    pub async fn container_id(&self, pod: &str, container: &str) -> String {
        let pod = self.api::<Pod>().get(pod).await.expect("pod");
        let id = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == container)
            .and_then(|c| c.container_id)
            .expect("container id");
        id.trim_start_matches("containerd://").to_string()
    }

    /// Working-set memory of every container of the pods selected, in MiB,
    /// from the kubelet's summary API (what `kubectl top` reads).
    pub async fn memory_mib(&self, namespace: &str, selector: &str) -> Vec<(String, f64)> {
        let summary: Value = self
            .client
            .request(
                http::Request::get("/api/v1/nodes/wsrc-node/proxy/stats/summary")
                    .body(Vec::new())
                    .expect("request"),
            )
            .await
            .expect("stats summary");
        let wanted = pod_names(&Api::namespaced(self.client.clone(), namespace), selector).await;
        let mut out = Vec::new();
        for pod in summary["pods"].as_array().into_iter().flatten() {
            let name = pod["podRef"]["name"].as_str().unwrap_or_default();
            if pod["podRef"]["namespace"] != namespace || !wanted.contains(name) {
                continue;
            }
            for c in pod["containers"].as_array().into_iter().flatten() {
                let bytes = c["memory"]["workingSetBytes"].as_f64().unwrap_or(0.0);
                out.push((
                    format!("{name}/{}", c["name"].as_str().unwrap_or("?")),
                    bytes / 1024.0 / 1024.0,
                ));
            }
        }
        out
    }
}

/// Every pod with these labels that `pods` lists, terminating ones included.
async fn labelled_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
}

/// The names of [`labelled_pods`].
async fn pod_names(pods: &Api<Pod>, selector: &str) -> BTreeSet<String> {
    labelled_pods(pods, selector)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The PID of a container's main process, from containerd's task list.
pub fn container_pid(container_id: &str) -> u32 {
    let socket = cluster_dir().join("containerd/containerd.sock");
    let out = Command::new("ctr")
        .args(["--address"])
        .arg(&socket)
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .expect("ctr runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with(container_id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no task {container_id} in:\n{text}"))
}
