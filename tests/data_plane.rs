//! End-to-end tests of the data plane: real `wsring dev` (router and pods as
//! separate processes), real redis-server, real WebSocket clients.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use support::{connect_all, keys, Client, Dev, Event, WAIT};
use wsring_core::harness::admin_http::Method;
use wsring_core::harness::AdminClient;
use wsring_core::Ring;

/// A moment to let anything that should not happen show up.
const QUIET: Duration = Duration::from_millis(300);

/// `wsring dev` arguments that make the router reach pods over HTTP/2.
const OVER_H2: &[&str] = &["--router-arg=--pod-transport=h2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_consistent_for_1000_keys() {
    routing_is_consistent(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_consistent_for_1000_keys_over_h2() {
    routing_is_consistent(OVER_H2).await;
}

async fn routing_is_consistent(dev_args: &[&str]) {
    let dev = Dev::start_with(3, dev_args).await;
    let ring = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let keys = keys(1000);
    let clients = connect_all(&dev, &keys).await;
    let mut per_pod: BTreeMap<String, usize> = BTreeMap::new();
    for c in &clients {
        assert_eq!(c.pod, ring.owner(&c.key).unwrap().name, "key {}", c.key);
        *per_pod.entry(c.pod.clone()).or_default() += 1;
    }
    assert_eq!(
        per_pod.len(),
        3,
        "every pod owns some of 1000 keys: {per_pod:?}"
    );
    for key in keys.iter().step_by(97) {
        let (status, body) = dev
            .admin(Method::GET, &format!("/ring/lookup?key={key}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let lookup: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(lookup["owner"], ring.owner(key).unwrap().name.as_str());
        // A second connection for the same key lands on the same pod.
        let mut again = Client::connect(&dev.url(key), key).await;
        assert_eq!(again.pod, lookup["owner"].as_str().unwrap());
        again.assert_echo(&format!("hello {key}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_3_to_4_to_3_resets_exactly_the_moved_clients() {
    scaling_3_to_4_to_3(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_3_to_4_to_3_resets_exactly_the_moved_clients_over_h2() {
    scaling_3_to_4_to_3(OVER_H2).await;
}

async fn scaling_3_to_4_to_3(dev_args: &[&str]) {
    let dev = Dev::start_with(3, dev_args).await;
    let before = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let keys = keys(1000);
    let mut clients = connect_all(&dev, &keys).await;

    let (status, added) = dev.control(Method::POST, "/pods").await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["name"], "pod-3");
    let grown = dev
        .wait_for_members(&["pod-0", "pod-1", "pod-2", "pod-3"])
        .await;
    let moved = transition(&mut clients, &before, &grown, &dev).await;
    assert!(moved > 150 && moved < 350, "about a quarter moves: {moved}");
    assert!(clients.iter().any(|c| c.pod == "pod-3"));

    let (status, body) = dev
        .control(Method::DELETE, "/pods/pod-3?mode=graceful")
        .await;
    assert_eq!(status, 200, "{body}");
    let shrunk = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let moved_back = transition(&mut clients, &grown, &shrunk, &dev).await;
    assert_eq!(moved_back, moved, "exactly pod-3's clients move back");
    for c in &clients {
        assert_eq!(c.pod, before.owner(&c.key).unwrap().name);
    }
}

/// Check one membership change: every client whose owner changed gets close
/// 4001 and reconnects to its new owner; every other client stays open.
/// Returns how many moved.
async fn transition(clients: &mut [Client], old: &Ring, new: &Ring, dev: &Dev) -> usize {
    let moved: HashSet<String> = clients
        .iter()
        .filter(|c| new.owner(&c.key).unwrap().name != c.pod)
        .map(|c| c.key.clone())
        .collect();
    for c in clients.iter() {
        assert_eq!(
            c.pod,
            old.owner(&c.key).unwrap().name,
            "client was on its old owner"
        );
    }
    let started = Instant::now();
    for c in clients.iter_mut().filter(|c| moved.contains(&c.key)) {
        assert_eq!(
            c.next_event(WAIT).await,
            Some(Event::Closed(Some(4001))),
            "moved client {} gets 4001",
            c.key
        );
    }
    eprintln!(
        "{} of {} clients moved; all got 4001 within {:?}",
        moved.len(),
        clients.len(),
        started.elapsed()
    );
    tokio::time::sleep(QUIET).await;
    for c in clients.iter_mut().filter(|c| !moved.contains(&c.key)) {
        assert_eq!(
            c.pending_events(),
            vec![],
            "unmoved client {} untouched",
            c.key
        );
        c.assert_echo("still here").await;
    }
    for c in clients.iter_mut().filter(|c| moved.contains(&c.key)) {
        let mut fresh = Client::connect(&dev.url(&c.key), &c.key).await;
        assert_eq!(
            fresh.pod,
            new.owner(&c.key).unwrap().name,
            "{} on new owner",
            c.key
        );
        fresh.assert_echo("moved").await;
        *c = fresh;
    }
    moved.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_pod_clients_land_on_live_pods() {
    crashed_pod_clients_land_on_live_pods_with(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_pod_clients_land_on_live_pods_over_h2() {
    crashed_pod_clients_land_on_live_pods_with(OVER_H2).await;
}

async fn crashed_pod_clients_land_on_live_pods_with(dev_args: &[&str]) {
    let dev = Dev::start_with(3, dev_args).await;
    dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let keys = keys(300);
    let mut clients = connect_all(&dev, &keys).await;
    let victims: HashSet<String> = clients
        .iter()
        .filter(|c| c.pod == "pod-1")
        .map(|c| c.key.clone())
        .collect();
    assert!(!victims.is_empty());

    let started = Instant::now();
    let (status, body) = dev.control(Method::DELETE, "/pods/pod-1?mode=crash").await;
    assert_eq!(status, 200, "{body}");
    for c in clients.iter_mut().filter(|c| victims.contains(&c.key)) {
        match c.next_event(WAIT).await {
            Some(Event::Closed(_)) => {}
            other => panic!("{} should lose its connection, got {other:?}", c.key),
        }
    }
    let ring = dev.wait_for_members(&["pod-0", "pod-2"]).await;
    for c in clients.iter_mut().filter(|c| victims.contains(&c.key)) {
        let mut fresh = Client::connect(&dev.url(&c.key), &c.key).await;
        assert_eq!(fresh.pod, ring.owner(&c.key).unwrap().name);
        fresh.assert_echo("after crash").await;
        *c = fresh;
    }
    eprintln!(
        "{} clients of the crashed pod were on live pods after {:?}",
        victims.len(),
        started.elapsed()
    );
    for c in clients.iter_mut().filter(|c| !victims.contains(&c.key)) {
        assert_eq!(c.pending_events(), vec![], "{} untouched", c.key);
        c.assert_echo("unaffected").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_exactly_the_keys_clients() {
    let dev = Dev::start(3).await;
    let ring = dev.wait_for_members(&["pod-0", "pod-1", "pod-2"]).await;
    let mut alice1 = Client::connect(&dev.url("alice"), "alice").await;
    let mut alice2 = Client::connect(&dev.url("alice"), "alice").await;
    let mut bob = Client::connect(&dev.url("bob"), "bob").await;
    assert_eq!(alice1.pod, alice2.pod);

    let (status, body) = dev
        .admin(
            Method::POST,
            "/v1/keys/alice/messages",
            Some(("text/plain", b"hi alice".to_vec())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["delivered"], 2);
    assert_eq!(answer["pod"], ring.owner("alice").unwrap().name.as_str());
    for c in [&mut alice1, &mut alice2] {
        assert_eq!(
            c.next_event(WAIT).await,
            Some(Event::Text("hi alice".into()))
        );
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(bob.pending_events(), vec![], "bob got nothing");

    let (status, body) = dev
        .admin(
            Method::POST,
            "/v1/keys/bob/messages",
            Some(("application/octet-stream", vec![0, 1, 2, 255])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        bob.next_event(WAIT).await,
        Some(Event::Binary(vec![0, 1, 2, 255]))
    );

    let (status, body) = dev
        .admin(
            Method::POST,
            "/v1/broadcast",
            Some(("text/plain", b"to everyone".to_vec())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["delivered"], 3);
    for c in [&mut alice1, &mut alice2, &mut bob] {
        assert_eq!(
            c.next_event(WAIT).await,
            Some(Event::Text("to everyone".into()))
        );
    }

    // Without the token nothing is delivered.
    let res = AdminClient::new()
        .post(format!("{}/v1/keys/alice/messages", dev.admin))
        .body("sneaky")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    tokio::time::sleep(QUIET).await;
    assert_eq!(alice1.pending_events(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrade_requests_get_clear_errors_before_the_upgrade() {
    let dev = Dev::start(1).await;
    dev.wait_for_members(&["pod-0"]).await;
    let long = format!("/?key={}", "k".repeat(300));
    for (path, code) in [
        ("/", "missing_key"),
        ("/?other=1", "missing_key"),
        ("/?key=", "empty_key"),
        (long.as_str(), "key_too_long"),
        ("/?key=%ff%fe", "key_not_utf8"),
        ("/?key=%zz", "bad_percent_escape"),
        ("/?key=a%0Ab", "key_control_characters"),
        // Found in the security review: these were routed by one reading
        // while the app could see another.
        ("/?key=alice&key=bob", "ambiguous_key"),
        ("/?key=alice&k%65y=bob", "ambiguous_key"),
        ("/?key=a%E2%80%8Bb", "key_invisible_characters"),
    ] {
        let (status, body) = dev.public_get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{path}: JSON error, got {body}"));
        assert_eq!(json["error"], code, "{path}: {body}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Upgrades a pod or app could read differently than the router (found
    // in the security review): refused with 400 before anything is forwarded.
    let upgrade = |extra: &str| {
        format!(
            "GET /?key=a HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    for extra in [
        "upgrade: foo\r\n",
        "host: y\r\n",
        "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
    ] {
        let answer = wsring_core::testkit::raw_exchange(
            dev.public.parse().unwrap(),
            upgrade(extra).as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{extra:?}: {answer}");
        assert!(
            answer.contains("bad_upgrade_request"),
            "{extra:?}: {answer}"
        );
    }
    // A plain GET that is no upgrade at all.
    let res = AdminClient::new()
        .get(format!("http://{}/?key=a", dev.public))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 426);
    // Nothing was lost: a proper client still works.
    Client::connect(&dev.url("fine"), "fine")
        .await
        .assert_echo("ok")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_only_that_client_with_1009() {
    oversize_frame_closes_only_that_client(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_only_that_client_with_1009_over_h2() {
    oversize_frame_closes_only_that_client(OVER_H2).await;
}

async fn oversize_frame_closes_only_that_client(dev_args: &[&str]) {
    let args = [&["--pod-arg=--max-message-bytes=1024"], dev_args].concat();
    let dev = Dev::start_with(2, &args).await;
    dev.wait_for_members(&["pod-0", "pod-1"]).await;
    let mut big = Client::connect(&dev.url("big"), "big").await;
    let mut neighbour = Client::connect(&dev.url("big"), "big").await;
    big.send_binary(vec![7; 1024]).await.unwrap();
    assert_eq!(
        big.next_event(WAIT).await,
        Some(Event::Binary(vec![7; 1024]))
    );
    big.send_binary(vec![7; 4096]).await.unwrap();
    assert_eq!(big.next_event(WAIT).await, Some(Event::Closed(Some(1009))));
    neighbour.assert_echo("unaffected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_control_messages_change_nothing() {
    let dev = Dev::start(2).await;
    dev.wait_for_members(&["pod-0", "pod-1"]).await;
    let keys = keys(50);
    let mut clients = connect_all(&dev, &keys).await;
    let redis = redis::Client::open(dev.redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    for pod in ["pod-0", "pod-1"] {
        let channel =
            wsring_core::protocol::pod_channel(wsring_core::protocol::LOCAL_NAMESPACE, "dev", pod);
        for garbage in [
            "not json",
            r#"{"type":"reset","v":99,"ringVersion":1,"router":"r","connections":[]}"#,
            r#"{"type":"nuke","v":1}"#,
            r#"{"type":"reset","v":1,"ringVersion":1,"router":"dev-router","connections":"all"}"#,
        ] {
            let receivers: usize = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(garbage)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(receivers, 1, "{pod} is subscribed");
        }
    }
    tokio::time::sleep(QUIET).await;
    for c in clients.iter_mut() {
        assert_eq!(c.pending_events(), vec![], "{} untouched", c.key);
        c.assert_echo("still fine").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ring_updates_are_refused_and_leave_the_ring_alone() {
    let dev = Dev::start(2).await;
    let ring = dev.wait_for_members(&["pod-0", "pod-1"]).await;
    let version = ring.version();
    let members = serde_json::to_value(ring.members()).unwrap();
    let cases: Vec<(String, u16)> = vec![
        ("{not json".into(), 400),
        (r#"{"version":99}"#.into(), 400),
        (
            serde_json::json!({"version": version + 1, "vnodes": 0, "members": members})
                .to_string(),
            400,
        ),
        (
            serde_json::json!({"version": version + 1, "vnodes": 16,
                "members": [members[0].clone(), members[0].clone()]})
            .to_string(),
            400,
        ),
        (
            serde_json::json!({"version": version - 1, "vnodes": 16, "members": members})
                .to_string(),
            409,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = dev
            .admin(
                Method::PUT,
                "/ring",
                Some(("application/json", body.clone().into_bytes())),
            )
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer.contains("error"), "{body}: {answer}");
        let now = dev.ring().await;
        assert_eq!(now.version(), version, "ring unchanged after {body}");
        assert_eq!(now.spec(), ring.spec());
    }
    // Without the token the ring cannot be changed at all.
    let res = AdminClient::new()
        .put(format!("{}/ring", dev.admin))
        .body(ring.spec().to_json())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Unknown pod in the control API.
    let (status, body) = dev.control(Method::DELETE, "/pods/pod-9").await;
    assert_eq!(status, 404, "{body}");
    // A ring naming an unreachable pod: the router answers 502, nothing hangs.
    let dead = serde_json::json!({"version": version + 1, "vnodes": 16,
        "members": [{"name": "ghost-0", "addr": "127.0.0.1:1", "admin": "127.0.0.1:1"}]});
    let (status, answer) = dev
        .admin(
            Method::PUT,
            "/ring",
            Some(("application/json", dead.to_string().into_bytes())),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, body) = dev.public_get("/?key=anyone").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("pod_unreachable"), "{body}");
    assert!(
        !body.contains("ghost-0") && !body.contains("127.0.0.1"),
        "a public answer names no pod and no address: {body}"
    );
}

/// A pod that exits while starting (a bad `--pod-arg` here; a port taken
/// between local mode picking it and the pod binding it in real life) is
/// seen exiting, started again on new ports, and after the third exit local
/// mode stops with the pod's own reason instead of waiting out the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_exits_while_starting_is_retried_then_reported() {
    let addrs = [(); 3].map(|_| wsring_core::harness::free_addr().unwrap().to_string());
    let stderr = support::refused_stderr(
        "dev",
        &[
            "--pods",
            "1",
            "--listen",
            &addrs[0],
            "--admin-listen",
            &addrs[1],
            "--control-listen",
            &addrs[2],
            "--pod-arg=--max-key-bytes=0",
        ],
    )
    .await;
    assert!(stderr.contains("pod-0 did not become ready"), "{stderr}");
    assert_eq!(
        stderr.matches("--max-key-bytes must be at least 1").count(),
        3,
        "three starts, each refused for its own reason: {stderr}"
    );
}
