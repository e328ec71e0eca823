//! The README's Kubernetes walk-through on a real cluster, command for command.
//!
//! Needs the test cluster of `bash scripts/cluster.sh up` (a real API server,
//! etcd, controller-manager, scheduler, kubelet on containerd, kube-proxy,
//! CoreDNS and Traefik) and its kubeconfig; `scripts/test.sh` starts it and
//! runs this test with `--ignored`. Every `sh` block of README.md's "Run on
//! Kubernetes" section is run exactly as written (see [`doc`]); between
//! them the test checks what the README promises with 1,000 real WebSocket
//! clients whose `x-wsring-pod` is compared against the ring computed here
//! from the published membership, and prints the figures of each step.

#[path = "../support/mod.rs"]
mod support;

mod doc;
mod fleet;
mod observe;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doc::Doc;
use fleet::Fleet;
use futures_util::{SinkExt, StreamExt};
use observe::{sh_in, sh_ok, Cluster};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::Ring;

/// Clients kept connected through every step.
const CLIENTS: usize = 1000;
/// Upper bound of any one step; a broken cluster fails instead of hanging.
const STEP: Duration = Duration::from_secs(300);
/// After a fault, the killed pod's clients must be on live pods within this.
const FAULT_RECOVERY: Duration = Duration::from_secs(3);
/// wss clients opened through each edge (Ingress, Gateway).
const EDGE_CLIENTS: usize = 50;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory that looks like the repository root to the documents'
/// commands (charts/, manifests/, cluster/, docker/ and target/ linked in)
/// and holds what a reader would have made (the TLS certificate).
fn workdir() -> PathBuf {
    let dir = repo().join("tests/out/cluster-walkthrough");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["charts", "manifests", "cluster", "docker", "target"] {
        std::os::unix::fs::symlink(repo().join(name), dir.join(name)).unwrap();
    }
    dir
}

/// Figures of one membership change, from the command to each milestone.
#[derive(Debug, Default)]
struct Milestones {
    pods_ready: Option<Duration>,
    ring_published: Option<Duration>,
    routers_hold_it: Option<Duration>,
    last_client_moved: Option<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/cluster.sh up"]
async fn readme_walkthrough_on_a_real_cluster() {
    let readme = read_doc("README.md", Some("Run on Kubernetes"));
    let dir = workdir();
    let run = |heading: &str, index: usize| sh_ok(&dir, &readme.block(heading, index).script);

    // 1. Install the operator.
    let started = Instant::now();
    let out = run("1.", 0);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    eprintln!(
        "FIGURE helm install → operator rolled out: {:.1} s",
        secs(started)
    );

    // 2. Declare a WebSocketCluster.
    let started = Instant::now();
    let out = run("2.", 0);
    eprintln!("FIGURE kubectl apply → Ready: {:.1} s", secs(started));
    let columns = columns(&out, "chat");
    assert_eq!(columns[1], "3", "READY: {out}");
    assert_eq!(
        columns[2], r#"["chat-0","chat-1","chat-2"]"#,
        "MEMBERS: {out}"
    );
    let out = run("2.", 1);
    for object in [
        "statefulset.apps/chat",
        "deployment.apps/chat-router",
        "service/chat-pods",
    ] {
        assert!(out.contains(object), "{object} listed: {out}");
    }

    let cluster = Cluster::connect("default", "chat").await;
    let token = cluster.token().await;
    let ring = cluster
        .ring_with(&["chat-0", "chat-1", "chat-2"], STEP)
        .await;
    let service: SocketAddr = cluster.service_addr("chat").await.parse().unwrap();
    let started = Instant::now();
    let fleet = Fleet::start(keys(CLIENTS), |key| format!("ws://{service}/?key={key}"));
    fleet
        .settle(STEP, |key, pod| owner(&ring, key) == pod)
        .await
        .unwrap();
    eprintln!(
        "FIGURE {CLIENTS} clients through Service chat ({service}), each on the owner of its key: {:.1} s",
        secs(started)
    );

    // The network is locked down: only routers reach the pods' WebSocket port,
    // and forged endpoints never join the ring.
    network_policies_hold(&dir).await;
    forged_endpoints_are_ignored(&cluster, &dir).await;

    // 3. Scale: 3 → 5 → 3, exactly the moved clients get 4001.
    let grown = membership_change(
        &cluster,
        &fleet,
        &token,
        &readme.block("3.", 0).script,
        &dir,
        5,
    )
    .await;
    assert_eq!(grown.spec().member_names().len(), 5);
    let shrunk = membership_change(
        &cluster,
        &fleet,
        &token,
        &readme.block("3.", 1).script,
        &dir,
        3,
    )
    .await;
    assert_eq!(shrunk.spec().member_names(), ["chat-0", "chat-1", "chat-2"]);

    // When pods fail: a forced delete and a SIGKILL of one ws-pod.
    fault(&cluster, &fleet, "chat-1", || {
        run("4.", 0);
    })
    .await;
    let container = cluster.container_id("chat-2", "ws-pod").await;
    let pid = observe::container_pid(&container);
    fault(&cluster, &fleet, "chat-2", || {
        eprintln!("$ kill -KILL {pid}   # the ws-pod process of chat-2");
        support::sigkill(pid);
    })
    .await;

    // Routers and operator restarted: clients come back, the ring stays.
    restarts(&cluster, &fleet, &dir, &readme).await;

    // A bad WebSocketCluster is refused or reported.
    bad_clusters(&dir).await;

    // Figures: memory in the cluster, with 1,000 connections open.
    for (container, mib) in cluster
        .memory_mib("default", "app.kubernetes.io/instance=chat")
        .await
        .into_iter()
        .chain(
            cluster
                .memory_mib("wsring-system", "app.kubernetes.io/component=operator")
                .await,
        )
    {
        eprintln!("FIGURE memory {container}: {mib:.1} MiB");
    }
    fleet.stop().await;

    // 5. wss from outside: through the Ingress, then through a Gateway.
    edges(&cluster, &dir, &readme).await;

    // 6. Lock it down: the admission policy refuses an author who may not create pods.
    let out = sh_in(&dir, &readme.block("6.", 0).script);
    assert!(
        !out.ok,
        "a WebSocketCluster from an author without pod rights was accepted"
    );
    assert!(
        out.stderr
            .contains("creating a WebSocketCluster creates pods")
            && out
                .stderr
                .contains("may not create pods in namespace default"),
        "{}",
        out.stderr
    );
    sh_ok(&dir, &readme.block("6.", 1).script);

    // helm test, upgrade, uninstall.
    lifecycle(&dir, &readme);
    readme.assert_all_run();

    // docs/packaging.md: every install, upgrade and uninstall path it shows.
    packaging(&dir, &read_doc("docs/packaging.md", None));
}

/// The runnable `sh` blocks of the document at `path` (from the repository
/// root), or of its `## {section}`.
fn read_doc(path: &str, section: Option<&str>) -> Doc {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    Doc::parse(path, &text, section)
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

fn owner<'a>(ring: &'a Ring, key: &str) -> &'a str {
    &ring.owner(key).expect("a non-empty ring").name
}

/// Columns of the line of `kubectl get` output whose first column is `name`.
fn columns(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|c| c.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
}

/// Run `script` (a `kubectl scale`), follow the change to `pods` members and
/// check it: the moved clients (owner before ≠ owner after) and nobody else
/// were closed, each with 4001, and all are back on their owners. Prints the
/// time from the command to each milestone; returns the new ring.
async fn membership_change(
    cluster: &Cluster,
    fleet: &Fleet,
    token: &str,
    script: &str,
    dir: &Path,
    pods: i32,
) -> Ring {
    let before = cluster.published_ring().await.expect("a ring");
    let started = Instant::now();
    sh_ok(dir, script);
    let mut m = Milestones::default();
    let mut after: Option<Ring> = None;
    loop {
        assert!(
            started.elapsed() < STEP,
            "scale to {pods} incomplete: {m:?}"
        );
        if m.pods_ready.is_none() && cluster.ready_pods().await == pods {
            m.pods_ready = Some(started.elapsed());
        }
        if m.ring_published.is_none() {
            if let Some(ring) = cluster.published_ring().await {
                if ring.spec().members.len() == pods as usize {
                    m.ring_published = Some(started.elapsed());
                    after = Some(ring);
                }
            }
        }
        if let (Some(ring), None) = (&after, m.routers_hold_it) {
            let versions = cluster.router_versions(token).await;
            if !versions.is_empty() && versions.iter().all(|v| *v == Some(ring.version())) {
                m.routers_hold_it = Some(started.elapsed());
            }
        }
        if let (Some(ring), None) = (&after, m.last_client_moved) {
            let settled = fleet
                .pods()
                .iter()
                .zip(fleet.keys())
                .all(|(pod, key)| pod.as_deref() == Some(owner(ring, key)));
            if settled {
                let last = fleet.last_open_since(started).unwrap_or(started);
                m.last_client_moved = Some(last - started);
            }
        }
        if m.pods_ready.is_some() && m.routers_hold_it.is_some() && m.last_client_moved.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = after.expect("ring published");
    let moved: BTreeSet<usize> = fleet
        .keys()
        .iter()
        .enumerate()
        .filter(|(_, key)| owner(&before, key) != owner(&after, key))
        .map(|(i, _)| i)
        .collect();
    let closes = fleet.closes_since(started);
    let not_4001: Vec<_> = closes.iter().filter(|c| c.code != Some(4001)).collect();
    assert!(
        not_4001.is_empty(),
        "closes other than 4001 while scaling to {pods}: {not_4001:?}"
    );
    let closed: BTreeSet<usize> = closes.iter().map(|c| c.client).collect();
    let wrongly_closed: Vec<_> = closed.difference(&moved).collect();
    let never_closed: Vec<_> = moved.difference(&closed).collect();
    assert!(
        wrongly_closed.is_empty(),
        "unmoved clients closed: {wrongly_closed:?}"
    );
    assert!(
        never_closed.is_empty(),
        "moved clients not closed: {never_closed:?}"
    );
    eprintln!(
        "FIGURE scale {} → {pods} (ring {} → {}): {} of {CLIENTS} clients moved, {} 4001 closes, nobody else closed; \
         from the command: pods Ready {:.1} s, ring in the ConfigMap {:.1} s, every router holds it {:.1} s, \
         last moved client on its new owner {:.1} s",
        before.spec().members.len(),
        before.version(),
        after.version(),
        moved.len(),
        closes.len(),
        m.pods_ready.unwrap().as_secs_f64(),
        m.ring_published.unwrap().as_secs_f64(),
        m.routers_hold_it.unwrap().as_secs_f64(),
        m.last_client_moved.unwrap().as_secs_f64(),
    );
    after
}

/// Kill pod `victim` (or its ws-pod) with `kill`: its clients must be on live
/// pods within [`FAULT_RECOVERY`], nobody else may be closed, and once the pod
/// is back in the ring everyone is on their owner again.
async fn fault(cluster: &Cluster, fleet: &Fleet, victim: &str, kill: impl FnOnce()) {
    let before = cluster.published_ring().await.expect("a ring");
    let victims: BTreeSet<usize> = fleet
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, pod)| pod.as_deref() == Some(victim))
        .map(|(i, _)| i)
        .collect();
    assert!(!victims.is_empty(), "{victim} has clients");
    let started = Instant::now();
    kill();
    let live_after = loop {
        let back = victims.iter().all(|&i| {
            fleet
                .visits(i)
                .last()
                .is_some_and(|v| v.closed.is_none() && v.opened > started)
        });
        if back {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < STEP,
            "{victim}'s clients never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let members = before.spec().member_names();
    let ring = cluster.ring_with(&members, STEP).await;
    fleet
        .settle(STEP, |key, pod| owner(&ring, key) == pod)
        .await
        .unwrap();
    let others: Vec<_> = fleet
        .closes_since(started)
        .into_iter()
        .filter(|c| !victims.contains(&c.client))
        .collect();
    assert!(
        others.is_empty(),
        "clients of other pods closed when {victim} died: {others:?}"
    );
    eprintln!(
        "FIGURE {victim} killed: its {} clients on live pods after {:.2} s, nobody else closed; ring {} → {}, all back on their owners",
        victims.len(),
        live_after.as_secs_f64(),
        before.version(),
        ring.version()
    );
    assert!(
        live_after <= FAULT_RECOVERY,
        "{victim}'s clients took {live_after:?} to reach live pods (README promises {FAULT_RECOVERY:?})"
    );
}

/// Rolling restart of the routers, then of the operator: clients reconnect
/// (router restart) or are untouched (operator restart), the ring version
/// does not move, nobody ends on a wrong owner.
async fn restarts(cluster: &Cluster, fleet: &Fleet, dir: &Path, readme: &Doc) {
    let ring = cluster.published_ring().await.expect("a ring");
    let old_routers = cluster.all_pod_names(&cluster.router_selector()).await;
    let started = Instant::now();
    sh_ok(dir, &readme.block("4.", 1).script);
    // The rollout is complete before the old routers have drained: wait until
    // they are gone, so their clients' reconnects belong to this step.
    loop {
        let now = cluster.all_pod_names(&cluster.router_selector()).await;
        if now.is_disjoint(&old_routers) {
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "old routers never went away: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = started.elapsed();
    fleet
        .settle(STEP, |key, pod| owner(&ring, key) == pod)
        .await
        .unwrap();
    let after = cluster.published_ring().await.expect("a ring");
    assert_eq!(
        after.version(),
        ring.version(),
        "a router restart moved the ring version"
    );
    eprintln!(
        "FIGURE router rollout restart: old routers gone {:.1} s after the command, {} of their clients reconnected \
         (no close frame: a router only tunnels bytes), every client on its owner {:.1} s after the command; ring version {} unchanged",
        gone.as_secs_f64(),
        fleet.closes_since(started).len(),
        secs(started),
        ring.version()
    );

    let started = Instant::now();
    sh_ok(dir, &readme.block("4.", 2).script);
    // Give the new operator time for its first reconciles.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = cluster.published_ring().await.expect("a ring");
    assert_eq!(
        after.version(),
        ring.version(),
        "an operator restart moved the ring version"
    );
    let closes = fleet.closes_since(started);
    assert!(
        closes.is_empty(),
        "an operator restart closed clients: {closes:?}"
    );
    eprintln!(
        "FIGURE operator restart: 0 closes, ring version {} unchanged",
        ring.version()
    );
}

/// A pod that is not a router cannot reach a ws-pod's WebSocket port (the
/// operator's NetworkPolicy, enforced by the cluster's policy controller),
/// while the same probe through the router Service works (and resolves the
/// Service name through cluster DNS).
async fn network_policies_hold(dir: &Path) {
    let pod_ip = sh_ok(dir, "kubectl get pod chat-0 -o jsonpath='{.status.podIP}'");
    let router_ip = sh_ok(
        dir,
        "kubectl get pod -l app.kubernetes.io/instance=chat,app.kubernetes.io/component=router \
         -o jsonpath='{.items[0].status.podIP}'",
    );
    // One WebSocket round trip from a pod that is neither a router nor the
    // operator; prints the pod's phase and the probe's error.
    let probe = |name: &str, url: &str| {
        sh_ok(
            dir,
            &format!(
                "kubectl run {name} --image=ghcr.io/wsring/ws-pod:0.1.0 --restart=Never --command -- \
                 /usr/local/bin/ws-pod probe --url '{url}' --timeout-ms 4000 >/dev/null\n\
                 for _ in $(seq 1 240); do\n\
                   phase=$(kubectl get pod {name} -o jsonpath='{{.status.phase}}')\n\
                   case $phase in Succeeded|Failed) break ;; esac\n\
                   sleep 0.5\n\
                 done\n\
                 echo \"phase: $phase\"\n\
                 kubectl logs {name} || true\n\
                 kubectl delete pod {name} --wait=false >/dev/null"
            ),
        )
    };
    // Refused by the network: the probe fails before any HTTP answer (an
    // "HTTP error" would mean the process itself answered, e.g. ws-pod's 403).
    for (name, url, what) in [
        (
            "np-direct",
            format!("ws://{}:8081/?key=probe", pod_ip.trim()),
            "a ws-pod's WebSocket port",
        ),
        (
            "np-pod-admin",
            format!("ws://{}:9091/", pod_ip.trim()),
            "a ws-pod's admin port",
        ),
        (
            "np-router-admin",
            format!("ws://{}:9090/", router_ip.trim()),
            "a router's admin port",
        ),
    ] {
        let out = probe(name, &url);
        assert!(
            out.contains("phase: Failed") && !out.contains("HTTP error"),
            "a pod that is not a router reached {what} ({url}): {out}"
        );
    }
    let routed = probe(
        "np-routed",
        "ws://chat.default.svc.cluster.local/?key=probe",
    );
    assert!(
        routed.contains("phase: Succeeded"),
        "the router path works: {routed}"
    );
    let policies = sh_ok(dir, "kubectl get networkpolicy -o name");
    for name in [
        "networkpolicy.networking.k8s.io/chat-pods",
        "networkpolicy.networking.k8s.io/chat-router",
    ] {
        assert!(policies.contains(name), "{name}: {policies}");
    }
    eprintln!(
        "FIGURE NetworkPolicies: a pod of another app cannot reach a ws-pod, its admin port \
         or a router's admin port; the router path works"
    );
}

/// An EndpointSlice that anyone with write access to EndpointSlices could
/// add (labelled for `chat-pods`, pointing at a pod of their choosing) never
/// becomes a ring member (CVE-2021-25740 class).
async fn forged_endpoints_are_ignored(cluster: &Cluster, dir: &Path) {
    let before = cluster.published_ring().await.expect("a ring");
    sh_ok(
        dir,
        "kubectl apply -f - <<'EOF'\n\
apiVersion: discovery.k8s.io/v1\n\
kind: EndpointSlice\n\
metadata:\n  name: chat-pods-forged\n  labels:\n    kubernetes.io/service-name: chat-pods\n    app.kubernetes.io/instance: chat\n\
addressType: IPv4\n\
endpoints:\n  - addresses: [\"10.251.0.250\"]\n    conditions: {ready: true}\n    targetRef: {kind: Pod, name: chat-9, namespace: default}\n\
ports:\n  - {name: ws, port: 8081, protocol: TCP}\n  - {name: admin, port: 9091, protocol: TCP}\n\
EOF",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = cluster.published_ring().await.expect("a ring");
    assert_eq!(
        after.version(),
        before.version(),
        "a forged EndpointSlice changed the ring"
    );
    assert_eq!(after.spec().member_names(), before.spec().member_names());
    sh_ok(dir, "kubectl delete endpointslice chat-pods-forged");
    eprintln!(
        "FIGURE a forged EndpointSlice for chat-pods: ring version {} unchanged",
        after.version()
    );
}

/// Every negative fixture against the real API server and operator. A file
/// saying `# api-server: accepts` must be applied and then refused by the
/// operator (Degraded condition with reason InvalidSpec and the `# expect:`
/// text, a Warning event, nothing applied); every other one must be refused
/// by the API server itself (schema or CEL rule).
async fn bad_clusters(dir: &Path) {
    let mut by_api_server = 0;
    let mut by_operator = 0;
    for dir_name in [
        "manifests/tests/invalid",
        "manifests/tests/invalid-cel",
        "manifests/tests/invalid-operator",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(repo().join(dir_name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.contains("kind: WebSocketCluster") {
                continue;
            }
            if text.lines().any(|l| l.trim() == "# api-server: accepts") {
                refused_by_operator(dir, &file, &text).await;
                by_operator += 1;
            } else {
                let out = sh_in(
                    dir,
                    &format!("kubectl apply --dry-run=server -f {}", file.display()),
                );
                assert!(!out.ok, "the API server accepted {}", file.display());
                by_api_server += 1;
            }
        }
    }
    eprintln!(
        "FIGURE invalid WebSocketClusters: {by_api_server} refused by the API server (schema, CEL), \
         {by_operator} accepted by it and refused by the operator (Degraded, Warning event, nothing applied)"
    );
}

/// Apply `file` for real and wait for the operator's refusal.
async fn refused_by_operator(dir: &Path, file: &Path, text: &str) {
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: "))
        .expect("metadata.name")
        .to_string();
    let expect = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or("")
        .to_string();
    sh_ok(dir, &format!("kubectl apply -f {}", file.display()));
    let started = Instant::now();
    let condition = loop {
        let out = sh_ok(
            dir,
            &format!("kubectl get wsc {name} -o jsonpath='{{.status.conditions[?(@.type==\"Degraded\")].reason}}: {{.status.conditions[?(@.type==\"Degraded\")].message}}'"),
        );
        if out.starts_with("InvalidSpec:") {
            break out;
        }
        assert!(
            started.elapsed() < STEP,
            "{name}: no Degraded condition: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        condition.contains(&expect),
        "{name}: {condition} does not name {expect}"
    );
    let events = sh_ok(
        dir,
        &format!("kubectl get events --field-selector involvedObject.name={name},reason=InvalidSpec -o jsonpath='{{.items[*].type}}'"),
    );
    assert!(
        events.contains("Warning"),
        "{name}: Warning event: {events}"
    );
    let children = sh_ok(
        dir,
        &format!("kubectl get statefulset,deployment,service -l app.kubernetes.io/instance={name} -o name"),
    );
    assert!(
        children.trim().is_empty(),
        "{name}: applied despite the invalid spec: {children}"
    );
    sh_ok(dir, &format!("kubectl delete wsc {name} --wait"));
}

/// README step 4: wss through Traefik, first by the Ingress, then by an
/// HTTPRoute on a Gateway; each client lands on its key's owner.
async fn edges(cluster: &Cluster, dir: &Path, readme: &Doc) {
    make_certificate(dir);
    let out = sh_ok(dir, &readme.block("5.", 0).script);
    let columns = columns(&out, "chat");
    assert_eq!(columns[1], "traefik", "CLASS: {out}");
    let edge: SocketAddr = "10.250.0.2:443".parse().unwrap();
    let config = tls_config(dir);
    serving(edge, &config).await;
    let out = sh_ok(dir, &readme.block("5.", 1).script);
    assert!(out.contains("101 Switching Protocols"), "{out}");
    let ring = cluster.published_ring().await.expect("a ring");
    let pod_line = format!("x-wsring-pod: {}", owner(&ring, "alice"));
    assert!(out.to_lowercase().contains(&pod_line), "{out}");
    let started = Instant::now();
    wss_clients(edge, &config, &ring).await;
    eprintln!("FIGURE {EDGE_CLIENTS} wss clients through the Ingress (Traefik), each on its owner: {:.1} s", secs(started));

    sh_ok(dir, &readme.block("5.", 2).script);
    // The operator deletes its Ingress; Traefik then serves the host by the HTTPRoute alone.
    let started = Instant::now();
    loop {
        let ingress = sh_ok(dir, "kubectl get ingress -o name");
        let route = sh_ok(dir, "kubectl get httproute chat -o jsonpath='{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}' || true");
        if ingress.trim().is_empty() && route.trim() == "True" {
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "HTTPRoute not accepted or Ingress not removed: {ingress} {route}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    serving(edge, &config).await;
    let out = sh_ok(dir, &readme.block("5.", 3).script);
    assert!(out.contains("101 Switching Protocols"), "{out}");
    let ring = cluster.published_ring().await.expect("a ring");
    assert!(out.to_lowercase().contains(&pod_line), "{out}");
    let started = Instant::now();
    wss_clients(edge, &config, &ring).await;
    eprintln!("FIGURE {EDGE_CLIENTS} wss clients through the Gateway (HTTPRoute, Traefik), each on its owner: {:.1} s", secs(started));
}

/// A CA and a certificate for chat.example.com, as a reader would have them.
fn make_certificate(dir: &Path) {
    sh_ok(
        dir,
        "openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key -out ca.crt -days 2 -subj /CN=walkthrough-ca 2>/dev/null\n\
         openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout chat.key -out chat.csr -subj /CN=chat.example.com 2>/dev/null\n\
         printf 'subjectAltName=DNS:chat.example.com\\n' > chat.ext\n\
         openssl x509 -req -in chat.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile chat.ext -out chat.crt 2>/dev/null",
    );
}

/// A TLS client trusting the walk-through's CA.
fn tls_config(dir: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A wss connection for `key` through `edge` to chat.example.com: its 101's
/// `x-wsring-pod` and the stream, or why it failed.
async fn wss(
    edge: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    key: &str,
) -> Result<
    (
        String,
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    ),
    String,
> {
    let tcp = tokio::net::TcpStream::connect(edge)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect("chat.example.com".try_into().unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let url = format!("wss://chat.example.com/?key={key}");
    let (ws, response) = tokio_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let pod = response
        .headers()
        .get("x-wsring-pod")
        .ok_or("no x-wsring-pod")?
        .to_str()
        .map_err(|e| e.to_string())?
        .to_string();
    Ok((pod, ws))
}

/// Wait until the edge has loaded its new routes (Traefik applies a route a
/// moment after the API server shows it accepted): a wss upgrade succeeds.
async fn serving(edge: SocketAddr, config: &Arc<rustls::ClientConfig>) {
    let started = Instant::now();
    loop {
        match wss(edge, config, "ready-check").await {
            Ok((_, mut ws)) => {
                let _ = ws.close(None).await;
                eprintln!("  [edge serving after {:.1} s]", secs(started));
                return;
            }
            Err(e) => assert!(started.elapsed() < STEP, "the edge never served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`EDGE_CLIENTS`] wss connections through `edge`: each 101 names the
/// owner of its key, each echo comes back.
async fn wss_clients(edge: SocketAddr, config: &Arc<rustls::ClientConfig>, ring: &Ring) {
    for key in keys(EDGE_CLIENTS) {
        let (pod, mut ws) = wss(edge, config, &key).await.expect("wss through the edge");
        assert_eq!(pod, owner(ring, &key), "{key} through the edge");
        ws.send(Message::text(key.clone())).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a frame")
            .expect("no error");
        assert_eq!(echo, Message::text(key.clone()));
        ws.close(None).await.unwrap();
    }
}

/// helm test, the README's upgrade, then uninstall: nothing of ours is left
/// but the CRD.
fn lifecycle(dir: &Path, readme: &Doc) {
    let out = sh_ok(dir, &readme.block("5.", 4).script);
    assert!(out.contains("Succeeded"), "{out}");
    let out = sh_ok(dir, &readme.block("Upgrading", 0).script);
    assert!(out.contains("has been upgraded"), "{out}");
    sh_ok(dir, &readme.block("Uninstall", 0).script);
    assert_uninstalled(dir, Crd::Kept);
}

/// docs/packaging.md, every path of it, one after the other on the cluster
/// the README left (the CRD and nothing else of ours): Helm with its upgrade
/// and uninstall, the first try with `helm test`, the plain manifests with
/// their own uninstall, and the images built without a Docker engine.
fn packaging(dir: &Path, doc: &Doc) {
    let started = Instant::now();
    let out = sh_ok(dir, &doc.block("Install", 0).script);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = sh_ok(dir, &doc.block("Upgrade", 0).script);
    assert!(out.contains("serverside-applied"), "{out}");
    assert!(out.contains("has been upgraded"), "{out}");
    sh_ok(dir, &doc.block("Uninstall", 0).script);
    assert_uninstalled(dir, Crd::Deleted);
    println!(
        "FIGURE packaging: helm install, upgrade, uninstall: {:.1} s",
        secs(started)
    );

    let started = Instant::now();
    let out = sh_ok(dir, &doc.block("Install", 1).script);
    assert!(out.contains("Succeeded"), "{out}");
    sh_ok(dir, &doc.block("Uninstall", 0).script);
    assert_uninstalled(dir, Crd::Deleted);
    println!(
        "FIGURE packaging: demo install and helm test: {:.1} s",
        secs(started)
    );

    let started = Instant::now();
    let out = sh_ok(dir, &doc.block("Install", 2).script);
    assert!(out.contains("serverside-applied"), "{out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = sh_ok(dir, &doc.block("Install", 3).script);
    assert!(
        out.contains("websocketcluster.wsring.io/chat condition met"),
        "{out}"
    );
    sh_ok(dir, &doc.block("Uninstall", 1).script);
    assert_uninstalled(dir, Crd::Deleted);
    println!(
        "FIGURE packaging: manifests install, a cluster Ready, uninstall: {:.1} s",
        secs(started)
    );

    let out = sh_ok(dir, &doc.block("Without a Docker engine", 0).script);
    // The tag asked for, and the runtime stage of docker/router.Dockerfile.
    assert!(out.contains("ghcr.io/wsring/wsring-router:0.1.0"), "{out}");
    assert!(out.contains("\"/usr/local/bin/wsring-router\""), "{out}");
    assert!(out.contains("\"user\": \"65532:65532\""), "{out}");
    doc.assert_all_run();
}

/// Whether an uninstall keeps the CRD (Helm's) or deletes it too.
#[derive(Clone, Copy, PartialEq)]
enum Crd {
    Kept,
    Deleted,
}

/// Nothing labelled as ours is left in any namespace, nor cluster-wide, nor
/// the release namespace; the CRD as `crd` says (and no WebSocketCluster).
fn assert_uninstalled(dir: &Path, crd: Crd) {
    let left = sh_ok(
        dir,
        "kubectl get all,configmap,secret,serviceaccount,role,rolebinding,ingress,httproute,networkpolicy,poddisruptionbudget,lease -A \
         -l app.kubernetes.io/name=wsring -o name\n\
         kubectl get clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding -l app.kubernetes.io/name=wsring -o name\n\
         kubectl get namespace wsring-system -o name --ignore-not-found",
    );
    assert!(
        left.trim().is_empty(),
        "left behind after uninstall: {left}"
    );
    let found = sh_ok(
        dir,
        "kubectl get crd websocketclusters.wsring.io -o name --ignore-not-found",
    );
    match crd {
        Crd::Kept => {
            assert_eq!(
                found.trim(),
                "customresourcedefinition.apiextensions.k8s.io/websocketclusters.wsring.io"
            );
            let clusters = sh_ok(dir, "kubectl get wsc -A -o name");
            assert!(clusters.trim().is_empty(), "left behind: {clusters}");
        }
        Crd::Deleted => assert!(found.trim().is_empty(), "CRD left behind: {found}"),
    }
}
