//! The router over real sockets: a real WebSocket client, stand-in pods, and a
//! real redis-server for the reset path.

mod support;

use std::time::Duration;

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use redis::AsyncCommands as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::harness::RedisServer;
use wsring_core::protocol::{
    encode_key, pod_channel, ControlMessage, ResetCommand, LOCAL_NAMESPACE,
};
use wsring_core::Ring;

use support::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a WebSocket through the router; returns the socket and the pod named in the 101.
async fn connect(router: &TestRouter, key: &str) -> (Ws, String) {
    let url = router.ws_url(&format!("/ws?key={}", encode_key(key)));
    let (ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let pod = response.headers()["x-wsring-pod"]
        .to_str()
        .unwrap()
        .to_string();
    (ws, pod)
}

async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// True once the connection has ended (close frame, EOF or reset).
async fn ended(ws: &mut Ws) -> bool {
    loop {
        match ws.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
            Some(Ok(_)) => continue,
        }
    }
}

/// A complete, valid WebSocket upgrade request for `key`, as raw bytes.
fn upgrade_request(key: &str) -> Vec<u8> {
    format!(
        "GET /?key={key} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn websocket_is_routed_to_the_owner_and_tunnelled_unchanged() {
    let mut pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let router = TestRouter::start(config()).await;
    let spec = ring(3, pods.iter().map(FakePod::member).collect());
    assert_eq!(router.put_ring(&spec).await.0, StatusCode::OK);
    let ring = Ring::build(spec).unwrap();

    let key = "room 7/ü";
    let owner = ring.owner(key).unwrap().name.clone();
    let mut request = router
        .ws_url(&format!("/chat?key={}&x=1", encode_key(key)))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-wsring-conn", "forged".parse().unwrap());
    request
        .headers_mut()
        .insert("x-wsring-pod", "forged".parse().unwrap());
    request
        .headers_mut()
        .insert("x-app", "kept".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-wsring-pod"], owner.as_str());

    let pod = pods.iter_mut().find(|p| p.name == owner).unwrap();
    let seen = pod.upgrades.recv().await.unwrap();
    assert_eq!(seen["x-wsring-conn"], "router-test-1");
    assert_eq!(seen["x-wsring-key"], "room%207%2F%C3%BC");
    assert_eq!(seen["x-wsring-ring-version"], "3");
    assert_eq!(seen.get_all("x-wsring-conn").iter().count(), 1);
    assert!(
        !seen.contains_key("x-wsring-pod"),
        "client x-wsring-* reached the pod"
    );
    assert_eq!(seen["x-app"], "kept");
    assert!(seen.contains_key("sec-websocket-key"));
    assert_eq!(seen["upgrade"], "websocket");

    // Text and binary, small and large, come back byte for byte.
    echo(&mut ws, "hello").await;
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert!(b[..] == big[..], "binary payload changed"),
        other => panic!("expected binary echo, got {other:?}"),
    }

    let listed = router.wait_connections(1).await;
    assert_eq!(listed[0]["id"], "router-test-1");
    assert_eq!(listed[0]["key"], key);
    assert_eq!(listed[0]["pod"], owner.as_str());

    ws.close(None).await.unwrap();
    assert!(ended(&mut ws).await);
    drop(ws);
    router.wait_connections(0).await;
    let metrics = router.metrics().await;
    assert!(
        metrics.contains("wsring_router_connections_total{result=\"upgraded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wsring_router_active_connections 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refusals_are_json_and_happen_before_any_upgrade() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = TestRouter::start(config()).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;

    // A real WebSocket client without a key.
    let err = tokio_tungstenite::connect_async(router.ws_url("/ws?room=1"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "missing_key");
            assert!(body["message"]
                .as_str()
                .unwrap()
                .contains("query parameter `key`"));
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    let upgrade = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    for (target, code) in [
        ("/?key=", "empty_key"),
        ("/?key=a%zz", "bad_percent_escape"),
        ("/?key=%FF", "key_not_utf8"),
    ] {
        let (status, body) =
            parse_answer(&raw_exchange(router.public, upgrade(target).as_bytes()).await);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{target}"
        );
    }
    let long = format!("/?key={}", "k".repeat(257));
    let (status, body) =
        parse_answer(&raw_exchange(router.public, upgrade(&long).as_bytes()).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("key_too_long"))
    );

    // Not an upgrade at all.
    let answer = raw_exchange(router.public, b"GET /?key=a HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (status, body) = parse_answer(&answer);
    assert_eq!(status, 426);
    assert_eq!(body["error"], "upgrade_required");
    assert!(answer.to_ascii_lowercase().contains("upgrade: websocket"));

    assert_eq!(
        pod.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused request reached the pod"
    );
    let metrics = router.metrics().await;
    assert!(
        metrics.contains("wsring_router_upgrade_errors_total{reason=\"missing_key\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn empty_rings_unreachable_and_refusing_pods_are_reported() {
    let router = TestRouter::start(config()).await;
    let request = &upgrade_request("a");

    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!((status, body["error"].as_str()), (503, Some("ring_empty")));

    // A member nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = wsring_core::Member {
        name: "dead-0".into(),
        addr: closed.local_addr().unwrap().to_string(),
        admin: String::new(),
    };
    drop(closed);
    router.put_ring(&ring(1, vec![dead])).await;
    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("pod_unreachable"))
    );
    // Found in the security review: public 502 bodies named the pod and its
    // address. The client gets a generic message; the details are in the
    // router's log and the reason label of the metric.
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("dead-0") && !message.contains("127.0.0.1"),
        "{message}"
    );

    let refusing = FakePod::start("grumpy-0", PodMode::Refuse).await;
    router.put_ring(&ring(2, vec![refusing.member()])).await;
    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!(status, 403, "the pod's status passes through");
    assert_eq!(body["error"], "pod_rejected");
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("pod says no") && !message.contains("grumpy-0"),
        "{message}"
    );
    let metrics = router.metrics().await;
    for reason in ["ring_empty", "pod_unreachable", "pod_rejected"] {
        assert!(
            metrics.contains(&format!(
                "wsring_router_upgrade_errors_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
    router.wait_connections(0).await;
}

#[tokio::test]
async fn h2_transport_to_a_pod_without_http2_is_a_clear_502() {
    let mut config = config();
    config.pod_transport = wsring_router::PodTransport::H2;
    let router = TestRouter::start(config).await;
    // An HTTP/1.1-only pod (an older ws-pod, or something else entirely).
    let old = FakePod::start("old-0", PodMode::Refuse).await;
    router.put_ring(&ring(1, vec![old.member()])).await;
    let request = &upgrade_request("a");
    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("pod_unreachable"))
    );
    // The public answer is generic; the transport mismatch is in the log.
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("old-0"), "{message}");
    router.wait_connections(0).await;
}

#[tokio::test]
async fn oversized_and_unfinished_handshakes_are_refused() {
    let mut config = config();
    config.handshake_timeout_ms = 300;
    let router = TestRouter::start(config).await;

    let huge = format!(
        "GET /?key=a HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let answer = raw_exchange(router.public, huge.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Headers that never finish: the router hangs up (read_to_end returns).
    let answer = raw_exchange(router.public, b"GET /?key=a HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!answer.starts_with("HTTP/1.1 101"), "{answer}");

    let answer = raw_exchange(router.public, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    let metrics = router.metrics().await;
    for reason in ["head_too_large", "handshake_timeout", "malformed_request"] {
        let series = format!("wsring_router_upgrade_errors_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
    assert!(metrics.contains("wsring_router_connections_total{result=\"refused\"} 3"));
}

/// Subscribe to every pod channel of cluster `wsring`.
async fn subscribe(redis: &RedisServer) -> redis::aio::PubSub {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("wsring:*").await.unwrap();
    pubsub
}

#[tokio::test]
async fn ring_change_publishes_one_batched_reset_per_old_owner() {
    let redis = RedisServer::start().await.expect("redis-server");
    let pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
        FakePod::start("pod-c", PodMode::Echo).await,
    ];
    let mut config = config();
    config.redis.url = Some(redis.url());
    config.reset_timeout_ms = 60_000;
    let router = TestRouter::start(config).await;
    let before = ring(1, pods.iter().map(FakePod::member).collect());
    router.put_ring(&before).await;
    let ring_before = Ring::build(before).unwrap();

    let mut sockets = Vec::new();
    for i in 0..30 {
        let key = format!("user-{i}");
        let (ws, pod) = connect(&router, &key).await;
        assert_eq!(pod, ring_before.owner(&key).unwrap().name);
        sockets.push((key, pod, ws));
    }
    let listed = router.wait_connections(30).await;
    let id_of = |key: &str| {
        listed.iter().find(|c| c["key"] == key).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut on_c: Vec<String> = sockets
        .iter()
        .filter(|(_, p, _)| p == "pod-c")
        .map(|(k, _, _)| id_of(k))
        .collect();
    assert!(!on_c.is_empty(), "some keys must live on pod-c");

    let mut pubsub = subscribe(&redis).await;
    // pod-c leaves: only its connections move, all in one message to pod-c.
    let after = ring(2, pods[..2].iter().map(FakePod::member).collect());
    let (status, answer) = router.put_ring(&after).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"applied": true, "version": 2, "moved": on_c.len(), "resetBatches": 1})
    );

    let mut messages = pubsub.on_message();
    let msg = messages.next().await.unwrap();
    assert_eq!(
        msg.get_channel_name(),
        pod_channel(LOCAL_NAMESPACE, "wsring", "pod-c")
    );
    let ControlMessage::Reset(ResetCommand {
        v,
        ring_version,
        router: from,
        mut connections,
    }) = ControlMessage::parse(msg.get_payload_bytes()).unwrap();
    assert_eq!((v, ring_version, from.as_str()), (1, 2, "router-test"));
    connections.sort();
    on_c.sort();
    assert_eq!(connections, on_c, "exactly the moved connections");

    // Re-sending the same ring, or an older one, publishes nothing more.
    assert_eq!(router.put_ring(&after).await.1, json!({"applied": false}));
    let (status, _) = router
        .put_ring(&ring(1, pods.iter().map(FakePod::member).collect()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Nothing else was published before this marker (pub/sub keeps order).
    let mut publisher = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = publisher.publish("wsring:marker", "end").await.unwrap();
    let next = messages.next().await.unwrap();
    assert_eq!(next.get_channel_name(), "wsring:marker");

    // Connections that stayed keep working.
    for (key, pod, ws) in sockets.iter_mut().filter(|(_, p, _)| p != "pod-c") {
        echo(ws, key).await;
        assert_ne!(pod, "pod-c");
    }
    let metrics = router.metrics().await;
    assert!(
        metrics.contains("wsring_router_resets_published_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "wsring_router_connections_reset_total {}",
            on_c.len()
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn moved_connections_still_open_at_the_timeout_are_closed_by_the_router() {
    let pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let mut config = config();
    config.reset_timeout_ms = 100; // no Redis: the router's own close is the only reset
    let router = TestRouter::start(config).await;
    router
        .put_ring(&ring(1, pods.iter().map(FakePod::member).collect()))
        .await;

    let mut sockets = Vec::new();
    for i in 0..20 {
        sockets.push(connect(&router, &format!("k{i}")).await);
    }
    router.wait_connections(20).await;
    let moved = sockets.iter().filter(|(_, p)| p == "pod-b").count();
    assert!(moved > 0);

    // pod-b leaves; nobody tells its clients, so the router closes them.
    router.put_ring(&ring(2, vec![pods[0].member()])).await;
    for (ws, pod) in sockets.iter_mut() {
        if pod == "pod-b" {
            assert!(ended(ws).await);
        } else {
            echo(ws, "still here").await;
        }
    }
    router.wait_connections(20 - moved).await;
    let metrics = router.metrics().await;
    assert!(
        metrics.contains(&format!("wsring_router_forced_closes_total {moved}")),
        "{metrics}"
    );

    // A later ring change does not touch them again, nor the survivors.
    router.put_ring(&ring(3, vec![pods[0].member()])).await;
    for (ws, pod) in sockets.iter_mut().filter(|(_, p)| p == "pod-a") {
        echo(ws, pod).await;
    }
}

#[tokio::test]
async fn redis_password_flag_overrides_the_url() {
    let port = wsring_core::harness::free_port().unwrap();
    let redis = RedisServer::start_on(port, &["--requirepass", "s3cret"])
        .await
        .expect("redis-server");
    let pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let mut config = config();
    config.redis.url = Some(format!("redis://:wrong@127.0.0.1:{port}"));
    config.redis.password = Some("s3cret".into());
    config.reset_timeout_ms = 60_000;
    let router = TestRouter::start(config).await;
    router
        .put_ring(&ring(1, pods.iter().map(FakePod::member).collect()))
        .await;
    let mut keys = (0..).map(|i| format!("u{i}"));
    let (_ws, _) = loop {
        let key = keys.next().unwrap();
        let (ws, pod) = connect(&router, &key).await;
        if pod == "pod-b" {
            break (ws, key);
        }
    };

    let client =
        redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}", redis.port())).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(pod_channel(LOCAL_NAMESPACE, "wsring", "pod-b"))
        .await
        .unwrap();
    router.put_ring(&ring(2, vec![pods[0].member()])).await;
    let msg = pubsub.on_message().next().await.unwrap();
    let ControlMessage::Reset(reset) = ControlMessage::parse(msg.get_payload_bytes()).unwrap();
    assert_eq!(reset.ring_version, 2);
    assert_eq!(reset.connections.len(), 1);
}

#[tokio::test]
async fn pushes_are_forwarded_to_the_owner_and_broadcast_to_all() {
    let mut pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let router = TestRouter::start(config()).await;
    let spec = ring(1, pods.iter().map(FakePod::member).collect());
    router.put_ring(&spec).await;
    let owner = Ring::build(spec)
        .unwrap()
        .owner("chat/42")
        .unwrap()
        .name
        .clone();

    let (status, answer) = http_call(
        router.admin,
        "POST",
        "/v1/keys/chat%2F42/messages",
        Some(TOKEN),
        Some("text/plain; charset=utf-8"),
        Bytes::from_static(b"hi there"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"pod": owner, "delivered": 2}));
    let pod = pods.iter_mut().find(|p| p.name == owner).unwrap();
    let seen = pod.pushes.recv().await.unwrap();
    assert_eq!(seen.path, "/v1/keys/chat%2F42/messages");
    assert_eq!(seen.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(seen.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(&seen.body[..], b"hi there");

    let (status, answer) = http_call(
        router.admin,
        "POST",
        "/v1/broadcast",
        Some(TOKEN),
        Some("application/octet-stream"),
        Bytes::from_static(&[0, 159, 146, 150]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"delivered": 4, "pods": 2}));
    for pod in pods.iter_mut() {
        let seen = pod.pushes.recv().await.unwrap();
        assert_eq!(seen.path, "/v1/broadcast");
        assert_eq!(&seen.body[..], &[0, 159, 146, 150]);
        assert_eq!(seen.headers["content-type"], "application/octet-stream");
    }

    let (status, answer) = http_call(
        router.admin,
        "POST",
        "/v1/broadcast",
        Some(TOKEN),
        None,
        Bytes::from_static(&[0xff, 0xfe]),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "text must be UTF-8: {answer}"
    );
    let (status, _) = http_call(
        router.admin,
        "POST",
        "/v1/broadcast",
        None,
        None,
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ring_file_changes_are_applied() {
    let pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.json");
    std::fs::write(&path, ring(4, vec![pods[0].member()]).to_json()).unwrap();
    let mut config = config();
    config.ring_file = Some(path.clone());
    let router = TestRouter::start(config).await;
    let wait_version = |v: u64| {
        let router = &router;
        async move {
            loop {
                let (status, ring) = router.get("/ring").await;
                if status == StatusCode::OK && ring["version"] == v {
                    return ring;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_version(4).await;
    // A ConfigMap volume swaps a symlink: write elsewhere and rename over it.
    let staged = dir.path().join("staged.json");
    std::fs::write(
        &staged,
        ring(5, pods.iter().map(FakePod::member).collect()).to_json(),
    )
    .unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let ring = wait_version(5).await;
    assert_eq!(ring["members"].as_array().unwrap().len(), 2);
    let (status, _) = router.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_drains_then_closes_open_tunnels() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let mut config = config();
    config.drain_timeout_ms = 200;
    let router = TestRouter::start(config).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;
    let (mut ws, _) = connect(&router, "alice").await;
    echo(&mut ws, "before").await;
    let public = router.public;
    let stopping = tokio::spawn(router.shutdown());
    assert!(
        ended(&mut ws).await,
        "the open tunnel is closed after the drain timeout"
    );
    stopping.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(public).await.is_err(),
        "the public listener is closed"
    );
}

/// Found on a real cluster: during a router rollout the edge (Traefik) and
/// kube-proxy still sent new connections to a router that had got SIGTERM
/// and closed its listener, and clients saw 502. With a shutdown delay the
/// router answers `/readyz` with 503 but keeps accepting, then drains.
#[tokio::test]
async fn a_shutdown_delay_keeps_accepting_while_not_ready() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let mut config = config();
    config.shutdown_delay_ms = 1500;
    config.drain_timeout_ms = 200;
    let mut router = TestRouter::start(config).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;
    let (mut before, _) = connect(&router, "alice").await;

    router.signal_shutdown();
    let (status, _) = router.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (mut during, pod_name) = connect(&router, "bob").await;
    assert_eq!(pod_name, "pod-a");
    echo(&mut during, "accepted while not ready").await;
    echo(&mut before, "still tunnelled").await;

    let public = router.public;
    router.shutdown().await.unwrap();
    assert!(ended(&mut before).await && ended(&mut during).await);
    assert!(
        tokio::net::TcpStream::connect(public).await.is_err(),
        "the public listener is closed after the delay and the drain"
    );
}

#[tokio::test]
async fn with_redis_down_moved_connections_are_still_closed() {
    let pods = [
        FakePod::start("pod-a", PodMode::Echo).await,
        FakePod::start("pod-b", PodMode::Echo).await,
    ];
    let mut config = config();
    // Nothing listens there: every publish fails.
    config.redis.url = Some(format!(
        "redis://127.0.0.1:{}",
        wsring_core::harness::free_port().unwrap()
    ));
    config.reset_timeout_ms = 100;
    let router = TestRouter::start(config).await;
    router
        .put_ring(&ring(1, pods.iter().map(FakePod::member).collect()))
        .await;
    let mut sockets = Vec::new();
    for i in 0..10 {
        sockets.push(connect(&router, &format!("k{i}")).await);
    }
    let moved = sockets.iter().filter(|(_, p)| p == "pod-b").count();
    assert!(moved > 0);
    router.put_ring(&ring(2, vec![pods[0].member()])).await;
    for (ws, pod) in sockets.iter_mut().filter(|(_, p)| p == "pod-b") {
        assert!(ended(ws).await, "{pod}");
    }
    router.wait_connections(10 - moved).await;
    let metrics = router.metrics().await;
    assert!(
        metrics.contains("wsring_router_reset_publish_errors_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("wsring_router_forced_closes_total {moved}")),
        "{metrics}"
    );
}

/// Found in the security review: nothing capped a router's connections but
/// the open-files limit (about 10,000 idle tunnels used all 20,000
/// descriptors). Over a cap a connection is answered 503 at once and counted.
#[tokio::test]
async fn connections_over_the_caps_are_refused_with_503() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let mut capped = config();
    capped.max_connections = Some(2);
    let router = TestRouter::start(capped).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;
    let (mut first, _) = connect(&router, "a").await;
    let (_second, _) = connect(&router, "b").await;
    let request = &upgrade_request("c");
    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("too_many_connections"))
    );
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    router.wait_connections(1).await;
    let (mut third, _) = connect(&router, "c").await;
    echo(&mut third, "a place came back").await;
    let metrics = router.metrics().await;
    assert!(
        metrics.contains("wsring_router_upgrade_errors_total{reason=\"connection_limit_total\"} 1"),
        "{metrics}"
    );

    let mut per_client = config();
    per_client.max_connections_per_client = 1;
    let router = TestRouter::start(per_client).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;
    let (_only, _) = connect(&router, "a").await;
    let (status, body) = parse_answer(&raw_exchange(router.public, request).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("too_many_connections"))
    );
    let metrics = router.metrics().await;
    assert!(
        metrics.contains(
            "wsring_router_upgrade_errors_total{reason=\"connection_limit_per_client\"} 1"
        ),
        "{metrics}"
    );
}
