//! End-to-end behaviour of a real pod: real sockets, real tokio-tungstenite clients,
//! a real redis-server.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use ws_pod::{Config, ProbeArgs};
use wsring_core::cluster_args::ClusterArgs;
use wsring_core::harness::{free_port, RedisServer};
use wsring_core::protocol::{
    pod_channel, ControlMessage, CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON,
};
use wsring_core::protocol::{HEADER_CONN, HEADER_KEY, HEADER_RING_VERSION, LOCAL_NAMESPACE};
use wsring_core::router_auth::{unix_now, RouterAuth, SignedHeaders, HEADER_AUTH};
use wsring_core::testkit::raw_exchange;

fn with_redis(pod_name: &str, redis: &RedisServer) -> Config {
    Config {
        redis: wsring_core::redis_args::RedisArgs::url(redis.url()),
        cluster: ClusterArgs {
            name: "itest".into(),
            ..ClusterArgs::default()
        },
        ..config(pod_name)
    }
}

fn reset(ids: &[&str]) -> String {
    ControlMessage::reset(8, "r", ids.iter().map(|s| s.to_string()).collect()).to_json()
}

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged() {
    let pod = TestPod::start(config("pod-0")).await;
    let mut ws = pod.connect_as("r-1", "user 1").await;
    assert_echo(&mut ws, "héllo wörld").await;
    let binary = (0..=255u8).collect::<Vec<_>>();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(binary));
    let (status, _) = pod.admin("GET", "/v1/connections", &[], b"").await;
    assert_eq!(
        status, 401,
        "the connection list reveals keys: token required"
    );
    let auth = format!("Bearer {TOKEN}");
    let (status, list) = pod
        .admin("GET", "/v1/connections", &[("authorization", &auth)], b"")
        .await;
    assert_eq!(status, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["key"].as_str()),
        (Some("r-1"), Some("user 1"))
    );
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test]
async fn allowed_direct_connections_get_a_local_id_and_the_query_key() {
    let pod = TestPod::start(Config {
        allow_direct: true,
        ..config("pod-0")
    })
    .await;
    let (mut ws, response) =
        tokio_tungstenite::connect_async(format!("{}/?key=room%201", pod.url()))
            .await
            .unwrap();
    assert_eq!(response.headers()["x-wsring-pod"], "pod-0");
    assert_echo(&mut ws, "x").await;
    let list = pod.handle.connections();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].key, "room 1");
    assert!(list[0].id.starts_with("pod-0-local-"), "{}", list[0].id);
}

/// Found in the security review: a caller who reached a pod directly sent a
/// live router's `x-wsring-conn` and `x-wsring-key: alice`, got a 101 and then
/// alice's pushes. Without a router's signature nothing is registered now.
#[tokio::test]
async fn a_direct_caller_cannot_claim_a_router_connection_or_a_key() {
    let pod = TestPod::start(config("pod-0")).await;
    let mut alice = pod.connect_as("router-a-1", "alice").await;
    let forged = |signature: Option<&str>| {
        let mut request = format!("{}/?key=alice", pod.url())
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert(HEADER_CONN, HeaderValue::from_static("router-a-1"));
        headers.insert(HEADER_KEY, HeaderValue::from_static("alice"));
        headers.insert(HEADER_RING_VERSION, HeaderValue::from_static("7"));
        if let Some(s) = signature {
            headers.insert(HEADER_AUTH, HeaderValue::from_str(s).unwrap());
        }
        request
    };
    let stale = RouterAuth::new(TOKEN).sign(
        SignedHeaders {
            conn: "router-a-1",
            key: "alice",
            ring_version: "7",
        },
        unix_now() - 3600,
    );
    let wrong = RouterAuth::new("guessed").sign(
        SignedHeaders {
            conn: "router-a-1",
            key: "alice",
            ring_version: "7",
        },
        unix_now(),
    );
    for request in [
        forged(None),
        forged(Some(&stale)),
        forged(Some(&wrong)),
        format!("{}/?key=alice", pod.url())
            .into_client_request()
            .unwrap(),
    ] {
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("expected 403, got {other:?}"),
        }
    }
    assert_eq!(
        pod.handle.connections().len(),
        1,
        "only the router's connection"
    );
    let (status, body) = pod
        .admin(
            "POST",
            "/v1/keys/alice/messages",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            b"for alice",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"delivered\":1"), "{body}");
    assert_eq!(recv(&mut alice).await, Message::text("for alice"));
}

#[tokio::test]
async fn probe_gets_its_echo_and_the_pod_name() {
    let pod = TestPod::start(Config {
        allow_direct: true,
        ..config("pod-7")
    })
    .await;
    let args = ProbeArgs {
        url: format!("{}/?key=probe", pod.url()),
        timeout_ms: 30_000,
    };
    let report = ws_pod::probe(&args).await.unwrap();
    assert_eq!(report.pod.as_deref(), Some("pod-7"));
    let unreachable = ProbeArgs {
        url: format!("ws://127.0.0.1:{}/", free_port().unwrap()),
        timeout_ms: 30_000,
    };
    assert!(ws_pod::probe(&unreachable).await.is_err());
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let pod = TestPod::start(Config {
        max_message_bytes: 1024,
        ..config("pod-0")
    })
    .await;
    let mut ws = pod.connect_as("r-1", "k").await;
    assert_echo(&mut ws, &"x".repeat(1024)).await;
    ws.send(Message::binary(vec![0u8; 1025])).await.unwrap();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    assert_eq!(pod.metric("wsring_pod_oversize_closes_total").await, 1);
}

#[tokio::test]
async fn silent_unfinished_and_oversized_handshakes_are_dropped() {
    let pod = TestPod::start(Config {
        handshake_timeout_ms: 300,
        ..config("pod-0")
    })
    .await;
    let cases: [(&str, Vec<u8>); 4] = [
        ("silent", Vec::new()),
        (
            "unfinished headers",
            b"GET /?key=a HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n".to_vec(),
        ),
        ("unfinished HTTP/2 preface", b"PRI * HTTP/2.0\r\n".to_vec()),
        (
            "headers over 64 KiB",
            format!(
                "GET /?key=a HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "b".repeat(70 * 1024)
            )
            .into_bytes(),
        ),
    ];
    for (what, request) in cases {
        let started = std::time::Instant::now();
        let answer = raw_exchange(pod.ws, &request).await;
        let after = started.elapsed();
        assert!(!answer.contains(" 101 "), "{what}: {answer}");
        if what != "headers over 64 KiB" {
            // Dropped by the handshake timeout, not at once.
            assert!(
                after >= std::time::Duration::from_millis(300),
                "{what}: {after:?}"
            );
        }
    }
    assert!(pod.handle.connections().is_empty());
    assert_eq!(pod.metric("wsring_pod_connections_total").await, 0);
    assert_eq!(pod.metric("wsring_pod_failed_handshakes_total").await, 4);
    // Nothing above disturbed the listener.
    let mut ws = pod.connect_as("r-1", "k").await;
    assert_echo(&mut ws, "after the bad handshakes").await;
}

#[tokio::test]
async fn reset_closes_exactly_the_listed_connections() {
    let redis = RedisServer::start().await.expect("redis-server");
    let pod = TestPod::start(with_redis("pod-0", &redis)).await;
    let channel = pod_channel(LOCAL_NAMESPACE, "itest", "pod-0");
    wait_for_subscriber(&redis.url(), &channel).await;
    let mut moved_1 = pod.connect_as("r-1", "a").await;
    let mut stays = pod.connect_as("r-2", "a").await;
    let mut moved_3 = pod.connect_as("r-3", "b").await;

    let mut publisher = redis_conn(&redis.url()).await;
    assert_eq!(
        publish(&mut publisher, &channel, &reset(&["r-1", "r-3", "unknown"])).await,
        1
    );
    for ws in [&mut moved_1, &mut moved_3] {
        assert_eq!(
            expect_close(ws).await,
            (CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON.to_string())
        );
    }
    // A duplicate reset is harmless; the connection that was not listed stays open.
    publish(&mut publisher, &channel, &reset(&["r-1", "r-3"])).await;
    assert_echo(&mut stays, "still here").await;
    let ids: Vec<String> = pod.handle.connections().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["r-2"]);
    assert_eq!(pod.metric("wsring_pod_connections_reset_total").await, 2);
}

#[tokio::test]
async fn malformed_redis_messages_are_ignored() {
    let redis = RedisServer::start().await.expect("redis-server");
    let pod = TestPod::start(with_redis("pod-0", &redis)).await;
    let channel = pod_channel(LOCAL_NAMESPACE, "itest", "pod-0");
    wait_for_subscriber(&redis.url(), &channel).await;
    let mut target = pod.connect_as("r-1", "a").await;
    let mut marker = pod.connect_as("r-marker", "m").await;

    let mut publisher = redis_conn(&redis.url()).await;
    for garbage in [
        "not json",
        r#"{"type":"reset","v":2,"ringVersion":1,"router":"r","connections":["r-1"]}"#,
        r#"{"type":"explode","connections":["r-1"]}"#,
    ] {
        publish(&mut publisher, &channel, garbage).await;
    }
    // Messages on one channel arrive in order: once the marker is closed, the garbage was read.
    publish(&mut publisher, &channel, &reset(&["r-marker"])).await;
    assert_eq!(expect_close(&mut marker).await.0, CLOSE_RING_MOVED);
    assert_echo(&mut target, "untouched").await;
    assert_eq!(
        pod.metric("wsring_pod_malformed_control_messages_total")
            .await,
        3
    );
    assert_eq!(pod.metric("wsring_pod_resets_received_total").await, 1);
}

#[tokio::test]
async fn push_reaches_exactly_the_keys_connections() {
    let pod = TestPod::start(config("pod-0")).await;
    let mut a1 = pod.connect_as("r-1", "room/a").await;
    let mut a2 = pod.connect_as("r-2", "room/a").await;
    let mut b = pod.connect_as("r-3", "room/b").await;
    let auth = format!("Bearer {TOKEN}");

    let (status, body) = pod
        .admin(
            "POST",
            "/v1/keys/room%2Fa/messages",
            &[("Authorization", &auth)],
            b"news",
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"delivered":2}"#));
    assert_eq!(recv(&mut a1).await, Message::text("news"));
    assert_eq!(recv(&mut a2).await, Message::text("news"));
    // Had b received the push, it would come before this echo.
    assert_echo(&mut b, "no news for b").await;

    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    let (status, body) = pod
        .admin("POST", "/v1/broadcast", &headers, &[1, 2, 255])
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"delivered":3}"#));
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_eq!(recv(ws).await, Message::binary(vec![1u8, 2, 255]));
    }
    let (status, _) = pod.admin("POST", "/v1/broadcast", &[], b"x").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn upstream_mode_relays_to_a_real_app() {
    let app = TestPod::start(config("app")).await;
    let front = TestPod::start(Config {
        upstream: Some(app.url()),
        ..config("front")
    })
    .await;
    let mut ws = front.connect_as("r-1", "user/1").await;
    assert_echo(&mut ws, "through the app").await;
    ws.send(Message::binary(vec![9u8; 1000])).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(vec![9u8; 1000]));

    // The app saw the key and the connection id through x-wsring-key / x-wsring-conn.
    let seen = app.handle.connections();
    assert_eq!(
        (seen[0].id.as_str(), seen[0].key.as_str()),
        ("r-1", "user/1")
    );

    // A push on the front pod is interleaved with the app's frames.
    let auth = format!("Bearer {TOKEN}");
    let (_, body) = front
        .admin(
            "POST",
            "/v1/keys/user%2F1/messages",
            &[("Authorization", &auth)],
            b"pushed",
        )
        .await;
    assert_eq!(body, r#"{"delivered":1}"#);
    assert_eq!(recv(&mut ws).await, Message::text("pushed"));

    // The app closing (here: its own reset) is passed on to the client.
    app.handle.apply_control(reset(&["r-1"]).as_bytes());
    assert_eq!(
        expect_close(&mut ws).await,
        (CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON.to_string())
    );
}

#[tokio::test]
async fn unreachable_upstream_closes_with_1011() {
    let upstream = format!("ws://127.0.0.1:{}", free_port().unwrap());
    let front = TestPod::start(Config {
        upstream: Some(upstream),
        ..config("front")
    })
    .await;
    let mut ws = front.connect_as("r-1", "k").await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1011);
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(front.metric("wsring_pod_upstream_failures_total").await, 1);
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let pod = TestPod::start(config("pod-0")).await;
    let mut conns = Vec::new();
    for i in 0..5 {
        let mut ws = pod.connect_as(&format!("r-{i}"), "k").await;
        assert_echo(&mut ws, "up").await;
        conns.push(ws);
    }
    let ws_addr = pod.ws;
    let closes = tokio::spawn(async move {
        let mut codes = Vec::new();
        for mut ws in conns {
            codes.push(expect_close(&mut ws).await.0);
        }
        codes
    });
    pod.shutdown().await.unwrap();
    assert_eq!(closes.await.unwrap(), [1001; 5]);
    assert!(
        tokio::net::TcpStream::connect(ws_addr).await.is_err(),
        "the listener is closed"
    );
}

/// Found on a real cluster: Kubernetes signals a pod and removes its endpoint
/// at the same time. With a shutdown delay the pod answers `/readyz` with 503
/// but keeps serving, so the ring change's reset closes its moved connection
/// with 4001 (not the drain's 1001), new connections still work, and only
/// then does the drain close the rest with 1001.
#[tokio::test]
async fn a_shutdown_delay_serves_not_ready_and_lets_resets_come_first() {
    let redis = RedisServer::start().await.expect("redis-server");
    let url = redis.url();
    let mut pod = TestPod::start(Config {
        shutdown_delay_ms: 1500,
        ..with_redis("pod-0", &redis)
    })
    .await;
    wait_for_subscriber(&url, &pod_channel(LOCAL_NAMESPACE, "itest", "pod-0")).await;
    let mut staying = pod.connect_as("r-1", "a").await;
    let mut moved = pod.connect_as("r-2", "b").await;

    pod.signal_shutdown();
    let (status, _) = pod.admin("GET", "/readyz", &[], b"").await;
    assert_eq!(status, 503, "not ready once the shutdown began");
    let mut publisher = redis_conn(&url).await;
    let channel = pod_channel(LOCAL_NAMESPACE, "itest", "pod-0");
    assert_eq!(publish(&mut publisher, &channel, &reset(&["r-2"])).await, 1);
    assert_eq!(
        expect_close(&mut moved).await.0,
        4001,
        "the reset comes first"
    );
    assert_echo(&mut staying, "still served").await;
    let mut late = pod.connect_as("r-3", "c").await;
    assert_echo(&mut late, "still accepted").await;

    pod.shutdown().await.unwrap();
    assert_eq!(expect_close(&mut staying).await.0, 1001);
    assert_eq!(expect_close(&mut late).await.0, 1001);
}

#[tokio::test]
async fn subscription_comes_back_after_a_redis_restart() {
    let mut redis = RedisServer::start().await.expect("redis-server");
    let url = redis.url();
    let pod = TestPod::start(with_redis("pod-0", &redis)).await;
    let channel = pod_channel(LOCAL_NAMESPACE, "itest", "pod-0");
    wait_for_subscriber(&url, &channel).await;
    let mut survivor = pod.connect_as("r-1", "a").await;
    let mut moved = pod.connect_as("r-2", "b").await;

    redis.stop();
    // Redis being down touches no connection.
    assert_echo(&mut survivor, "redis is down").await;
    assert_echo(&mut moved, "redis is down").await;

    let _redis = RedisServer::start_on(redis.port(), &[])
        .await
        .expect("redis-server restarts on its port");
    wait_for_subscriber(&url, &channel).await;
    let mut publisher = redis_conn(&url).await;
    publish(&mut publisher, &channel, &reset(&["r-2"])).await;
    assert_eq!(expect_close(&mut moved).await.0, CLOSE_RING_MOVED);
    assert_echo(&mut survivor, "still here").await;
    assert!(pod.metric("wsring_pod_redis_subscriptions_total").await >= 2);
    assert_eq!(pod.metric("wsring_pod_redis_connected").await, 1);
}

/// Found in the security review: nothing capped a pod's connections. Over
/// `--max-connections` a connection is closed unread, and counted.
#[tokio::test]
async fn connections_over_the_cap_are_refused_and_counted() {
    let pod = TestPod::start(Config {
        max_connections: Some(2),
        ..config("pod-0")
    })
    .await;
    let mut first = pod.connect_as("r-1", "a").await;
    let _second = pod.connect_as("r-2", "b").await;
    let signed = |conn: &str| {
        let mut request = format!("{}/", pod.url()).into_client_request().unwrap();
        for (name, value) in router_headers(conn, "c", "7") {
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(&value).unwrap());
        }
        request
    };
    assert!(tokio_tungstenite::connect_async(signed("r-3"))
        .await
        .is_err());
    assert_eq!(pod.handle.connections().len(), 2);
    let (_, metrics) = pod.admin("GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("wsring_pod_connection_limit_refusals_total{limit=\"total\"} 1"),
        "{metrics}"
    );
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    // The place comes back once the first connection's TCP is closed too.
    let started = std::time::Instant::now();
    let mut again = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(signed("r-4")).await {
            break ws;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no place came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_echo(&mut again, "a place came back").await;
}

/// Found in the security review: 100 tunnels each holding an unfinished
/// 1,000 KiB fragmented message kept 160 MB in a pod for ever. A message
/// must now arrive whole within `--message-timeout-ms` (closed with 1008).
#[tokio::test]
async fn an_unfinished_message_is_closed_at_the_deadline() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let pod = TestPod::start(Config {
        message_timeout_ms: 300,
        ..config("pod-0")
    })
    .await;
    let mut patient = pod.connect_as("r-1", "a").await;
    let mut stalled = pod.connect_as("r-2", "b").await;
    let first_fragment = Frame::message(vec![b'x'; 64 * 1024], OpCode::Data(Data::Text), false);
    stalled.send(Message::Frame(first_fragment)).await.unwrap();
    let (code, reason) = expect_close(&mut stalled).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("message not finished"), "{reason}");
    // A quiet connection without a message in progress has no deadline.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_echo(&mut patient, "still here").await;
    assert_eq!(
        pod.metric("wsring_pod_timeout_closes_total{reason=\"unfinished_message\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    let pod = TestPod::start(Config {
        idle_timeout_ms: 300,
        ..config("pod-0")
    })
    .await;
    let mut silent = pod.connect_as("r-1", "a").await;
    let (code, reason) = expect_close(&mut silent).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert_eq!(
        pod.metric("wsring_pod_timeout_closes_total{reason=\"idle\"}")
            .await,
        1
    );
}
