//! Fault injection on the real data plane: a real `wsring dev` (router and
//! pods as separate processes), a real redis-server, real WebSocket clients,
//! and faults applied from outside: `kill -9` of a pod or of the router,
//! Redis stopped and restarted, stale and duplicate ring updates.
//!
//! Times are measured and printed, never asserted (the machine is shared);
//! deadlines ([`WAIT`]) only keep a broken build from hanging.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use support::{connect_all, keys, sigkill, Client, Dev, Event, WAIT};
use wsring_core::harness::admin_http::Method;
use wsring_core::harness::RedisServer;
use wsring_core::Ring;

/// A moment to let anything that should not happen show up.
const QUIET: Duration = Duration::from_millis(300);
/// How long Redis stays down in the outage test.
const OUTAGE: Duration = Duration::from_secs(10);
/// Router metric: connections scheduled for a reset.
const RESET_METRIC: &str = "wsring_router_connections_reset_total";

/// Assert that none of `clients` saw anything and each still echoes.
async fn assert_untouched<'a>(clients: impl IntoIterator<Item = &'a mut Client>, what: &str) {
    for c in clients {
        assert_eq!(c.pending_events(), vec![], "{} untouched ({what})", c.key);
        c.assert_echo(what).await;
    }
}

/// Assert every client sits on its owner under `ring`.
fn assert_on_owners(clients: &[Client], ring: &Ring) {
    for c in clients {
        assert_eq!(
            c.pod,
            ring.owner(&c.key).unwrap().name,
            "{} on its ring owner (v{})",
            c.key,
            ring.version()
        );
    }
}

/// Wait until `client` reports the end of its connection; returns the close code (if any).
async fn wait_closed(client: &mut Client) -> Option<u16> {
    loop {
        match client.next_event(WAIT).await {
            Some(Event::Closed(code)) => return code,
            Some(_) => continue,
            None => panic!("{} was not closed within {WAIT:?}", client.key),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_killed_from_outside_its_clients_move_to_live_pods() {
    let dev = Dev::start(3).await;
    let before = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let mut clients = connect_all(&dev, &keys(300)).await;
    assert_on_owners(&clients, &before);
    let victim = dev
        .pods()
        .await
        .into_iter()
        .find(|p| p.name == "pod-1")
        .expect("pod-1 listed");
    let (mut hit, mut spared): (Vec<Client>, Vec<Client>) =
        clients.drain(..).partition(|c| c.pod == victim.name);
    assert!(!hit.is_empty() && !spared.is_empty());

    let started = Instant::now();
    sigkill(victim.pid);
    for c in hit.iter_mut() {
        wait_closed(c).await;
    }
    let all_closed = started.elapsed();
    // Every victim reconnects at once and retries until the router, whose
    // ring still names the dead pod for a moment, sends it to a live one.
    let moved = futures_util::future::join_all(hit.iter().map(|c| dev.reconnect(&c.key))).await;
    let on_live_pods = started.elapsed();
    eprintln!(
        "kill -9 {}: {} clients closed after {all_closed:?}, all on live pods after {on_live_pods:?}",
        victim.name,
        moved.len()
    );
    let after = dev.wait_for_members(&["pod-0", "pod-2"]).await;
    assert!(after.version() > before.version());
    assert_on_owners(&moved, &after);
    for mut c in moved {
        c.assert_echo("after kill -9").await;
    }
    assert_untouched(spared.iter_mut(), "neighbour of the killed pod").await;
    assert_on_owners(&spared, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_to_router_closes_and_resubscribes() {
    let mut dev = Dev::start(3).await;
    let three = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let mut clients = connect_all(&dev, &keys(300)).await;
    assert_on_owners(&clients, &three);

    // Redis goes away: traffic and routing carry on.
    let server = dev.redis.as_mut().expect("a redis-server of its own");
    let port = server.port();
    server.stop();
    let down_at = Instant::now();
    assert_untouched(clients.iter_mut(), "redis down").await;
    let mut fresh = Vec::new();
    for key in (0..30).map(|i| format!("outage-{i}")) {
        let mut c = Client::connect(&dev.url(&key), &key).await;
        c.assert_echo("new during outage").await;
        fresh.push(c);
    }
    assert_on_owners(&fresh, &three);
    clients.append(&mut fresh);

    // A scale event while Redis is down: no 4001 can be delivered, so the
    // router closes the moved connections itself at its reset timeout.
    let (status, body) = dev.control(Method::POST, "/pods").await;
    assert_eq!(status, 201, "{body}");
    let four = dev
        .wait_for_members(&["pod-0", "pod-1", "pod-2", "pod-3"])
        .await;
    let scaled_at = Instant::now();
    let (mut moved, mut stayed): (Vec<Client>, Vec<Client>) = clients
        .drain(..)
        .partition(|c| four.owner(&c.key).unwrap().name != c.pod);
    assert!(!moved.is_empty());
    for c in moved.iter_mut() {
        let code = wait_closed(c).await;
        assert_ne!(code, Some(4001), "{}: no 4001 without Redis", c.key);
    }
    eprintln!(
        "redis down: {} moved clients closed by the router {:?} after the scale event",
        moved.len(),
        scaled_at.elapsed()
    );
    assert_untouched(stayed.iter_mut(), "not moved, redis down").await;
    for c in moved.iter_mut() {
        *c = dev.reconnect(&c.key).await;
    }
    assert_on_owners(&moved, &four);
    clients.append(&mut stayed);
    clients.append(&mut moved);

    // Redis comes back on the same port after the outage.
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    dev.redis = Some(
        RedisServer::start_on(port, &[])
            .await
            .expect("redis-server restarts on its port"),
    );
    eprintln!(
        "redis was down for {:?}; restarted on port {port}",
        down_at.elapsed()
    );
    let back_at = Instant::now();
    for pod in ["pod-0", "pod-1", "pod-2", "pod-3"] {
        let deadline = Instant::now() + WAIT;
        while dev.reset_subscribers(pod).await != Some(1) {
            assert!(Instant::now() < deadline, "{pod} never resubscribed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "all pods resubscribed {:?} after the restart",
        back_at.elapsed()
    );

    // A second scale event: resets go through Redis again, exactly 4001.
    let resets_before = dev.router_metric(RESET_METRIC).await;
    let (status, body) = dev
        .control(Method::DELETE, "/pods/pod-3?mode=graceful")
        .await;
    assert_eq!(status, 200, "{body}");
    let back = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let (mut moved, mut stayed): (Vec<Client>, Vec<Client>) = clients
        .drain(..)
        .partition(|c| back.owner(&c.key).unwrap().name != c.pod);
    assert!(moved.iter().all(|c| c.pod == "pod-3") && !moved.is_empty());
    for c in moved.iter_mut() {
        assert_eq!(
            c.next_event(WAIT).await,
            Some(Event::Closed(Some(4001))),
            "{} gets 4001 once Redis is back",
            c.key
        );
    }
    let resets_sent = dev.router_metric(RESET_METRIC).await - resets_before;
    assert_eq!(
        resets_sent as usize,
        moved.len(),
        "one reset per moved client"
    );
    eprintln!(
        "redis back: {} moved clients got 4001 ({resets_sent} resets sent)",
        moved.len()
    );
    assert_untouched(stayed.iter_mut(), "not moved, redis back").await;
    for c in moved.iter_mut() {
        *c = dev.reconnect(&c.key).await;
    }
    clients.append(&mut stayed);
    clients.append(&mut moved);

    // Nothing is left on a pod that no longer owns its key: not in the
    // clients' view, not in the router's, not in any pod's.
    assert_on_owners(&clients, &back);
    let open: HashSet<&str> = clients.iter().map(|c| c.key.as_str()).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let (router_view, pods_view) = connection_views(&dev, &back).await;
        let settled = router_view.len() == clients.len()
            && pods_view.values().map(Vec::len).sum::<usize>() == clients.len();
        if settled || Instant::now() > deadline {
            for (key, pod) in &router_view {
                assert_eq!(*pod, back.owner(key).unwrap().name, "router: {key}");
                assert!(open.contains(key.as_str()), "router: {key} is a client's");
            }
            for (pod, keys) in &pods_view {
                for key in keys {
                    assert_eq!(*pod, back.owner(key).unwrap().name, "{pod} holds {key}");
                }
            }
            assert!(
                settled,
                "router and pods hold exactly the clients' connections"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_untouched(clients.iter_mut(), "end of outage test").await;
}

/// The router's `(key, pod)` list and every member pod's keys.
async fn connection_views(
    dev: &Dev,
    ring: &Ring,
) -> (Vec<(String, String)>, BTreeMap<String, Vec<String>>) {
    let text = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
    let router = dev
        .connections_at(&dev.admin)
        .await
        .iter()
        .map(|c| (text(c, "key"), text(c, "pod")))
        .collect();
    let mut pods = BTreeMap::new();
    for pod in dev.pods().await {
        assert!(
            ring.member(&pod.name).is_some(),
            "{} runs but is no member",
            pod.name
        );
        let keys = dev.connections_at(&pod.admin).await;
        pods.insert(pod.name, keys.iter().map(|c| text(c, "key")).collect());
    }
    (router, pods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_is_restarted_with_its_ring_and_clients_return() {
    let dev = Dev::start(3).await;
    let before = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let mut clients = connect_all(&dev, &keys(200)).await;
    let old_pid = dev.router_pid().expect("router process");

    let started = Instant::now();
    sigkill(old_pid);
    for c in clients.iter_mut() {
        wait_closed(c).await;
    }
    // The launcher restarts the router on the same ports and gives it the ring again.
    let deadline = Instant::now() + WAIT;
    let ring = loop {
        if let Some(ring) = dev.try_ring().await {
            break ring;
        }
        assert!(
            Instant::now() < deadline,
            "no ring after the router restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_pid = dev.router_pid().expect("router restarted");
    assert_ne!(new_pid, old_pid);
    assert_eq!(ring.spec().member_names(), before.spec().member_names());
    assert_eq!(
        ring.members(),
        before.members(),
        "same members, same addresses"
    );
    assert!(ring.version() >= before.version());
    let ring_back = started.elapsed();
    for c in clients.iter_mut() {
        *c = dev.reconnect(&c.key).await;
    }
    eprintln!(
        "kill -9 router: ring v{} back after {ring_back:?}, {} clients reconnected after {:?}",
        ring.version(),
        clients.len(),
        started.elapsed()
    );
    assert_on_owners(&clients, &ring);
    assert_untouched(clients.iter_mut(), "after router restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_duplicate_ring_updates_are_ignored() {
    let dev = Dev::start(3).await;
    let ring = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let mut clients = connect_all(&dev, &keys(200)).await;
    let resets_before = dev.router_metric(RESET_METRIC).await;
    let spec = ring.spec();
    let members = serde_json::to_value(ring.members()).unwrap();
    let with = |version: u64, members: serde_json::Value| {
        serde_json::json!({"version": version, "vnodes": spec.vnodes,
            "boundedLoad": spec.bounded_load, "members": members})
        .to_string()
    };
    let cases = [
        ("duplicate", spec.to_json(), 200),
        (
            "older version",
            with(spec.version - 1, members.clone()),
            409,
        ),
        (
            "older version, other members",
            with(spec.version - 1, serde_json::json!([members[0]])),
            409,
        ),
        (
            "same version, other content",
            with(spec.version, serde_json::json!([members[0], members[1]])),
            409,
        ),
    ];
    for (what, body, expected) in cases {
        let (status, answer) = dev
            .admin(
                Method::PUT,
                "/ring",
                Some(("application/json", body.into_bytes())),
            )
            .await;
        assert_eq!(status, expected, "{what}: {answer}");
        if expected == 200 {
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer, serde_json::json!({"applied": false}), "{what}");
        }
        let now = dev.ring().await;
        assert_eq!(now.spec(), ring.spec(), "ring unchanged after {what}");
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(dev.router_metric(RESET_METRIC).await, resets_before);
    assert_untouched(clients.iter_mut(), "after stale rings").await;
    assert_on_owners(&clients, &ring);
}
