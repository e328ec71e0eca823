//! Access control over real sockets: the `Origin` allow-list on the public
//! listener (refused before the upgrade, nothing reaches the pod) and the
//! bearer token on the admin listener's reads.

mod support;

use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use support::*;

/// A raw upgrade request for `/?key=k` with the given extra header lines.
fn upgrade(extra: &str) -> String {
    format!(
        "GET /?key=k HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Send a raw upgrade and read only the answer's head (a 101 keeps the connection open).
async fn answer_head(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn router_with_origins(origins: &[&str], require: bool, pod: &FakePod) -> TestRouter {
    let mut config = config();
    config.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
    config.require_origin = require;
    let router = TestRouter::start(config).await;
    router.put_ring(&ring(1, vec![pod.member()])).await;
    router
}

#[tokio::test]
async fn origins_off_the_list_are_refused_before_the_upgrade() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = router_with_origins(
        &["https://chat.example.com", "https://*.example.org"],
        false,
        &pod,
    )
    .await;

    for origin in [
        "https://evil.example",
        "http://chat.example.com",
        "https://chat.example.com:8443",
        "https://example.org",
        "null",
    ] {
        let answer = raw_exchange(
            router.public,
            upgrade(&format!("origin: {origin}\r\n")).as_bytes(),
        )
        .await;
        let (status, body) = parse_answer(&answer);
        assert_eq!(status, 403, "{origin}: {answer}");
        assert_eq!(body["error"], "origin_not_allowed", "{origin}");
        assert!(
            body["message"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
        assert!(answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
    }
    let twice = upgrade("origin: https://chat.example.com\r\norigin: https://evil.example\r\n");
    let (status, _) = parse_answer(&raw_exchange(router.public, twice.as_bytes()).await);
    assert_eq!(status, 403, "two Origin headers are ambiguous");
    assert_eq!(
        pod.accepted.load(Ordering::SeqCst),
        0,
        "a refused upgrade reached the pod"
    );
    let metrics = router.metrics().await;
    assert!(
        metrics.contains(r#"reason="origin_not_allowed""#),
        "refusals are counted by reason: {metrics}"
    );

    // Allowed origins (exact and wildcard) and non-browser clients get through.
    for origin in [
        Some("https://chat.example.com"),
        Some("https://a.b.example.org"),
        None,
    ] {
        let mut request = router.ws_url("/?key=k").into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{origin:?}: {e}"));
        assert_eq!(response.headers()["x-wsring-pod"], "pod-a");
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    }
}

#[tokio::test]
async fn require_origin_refuses_requests_without_one() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = router_with_origins(&["https://chat.example.com"], true, &pod).await;
    let (status, body) = parse_answer(&raw_exchange(router.public, upgrade("").as_bytes()).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let allowed = upgrade("origin: https://chat.example.com\r\n");
    let answer = answer_head(router.public, &allowed).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert_eq!(pod.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_list_allows_every_origin() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = router_with_origins(&[], false, &pod).await;
    let answer = answer_head(
        router.public,
        &upgrade("origin: https://anything.example\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

#[tokio::test]
async fn admin_reads_need_the_token_except_probes_metrics_and_dashboard() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = router_with_origins(&[], false, &pod).await;
    for path in ["/ring", "/ring/lookup?key=k", "/v1/connections"] {
        let (status, body) = router.get_anonymous(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["error"], "unauthorized");
        let (status, body) = router.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/", "/dashboard/state"] {
        let (status, body) = router.get_anonymous(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

/// Found in the security review: `/dashboard/state` without the token gave
/// every member's `addr` and `admin`, which `GET /ring` protects.
#[tokio::test]
async fn the_dashboard_state_names_no_address_without_the_token() {
    let pod = FakePod::start("pod-a", PodMode::Echo).await;
    let router = router_with_origins(&[], false, &pod).await;
    let (status, anonymous) = router.get_anonymous("/dashboard/state").await;
    assert_eq!(status, StatusCode::OK);
    let member = &anonymous["ring"]["members"][0];
    assert_eq!(member["name"], "pod-a");
    assert_eq!(member["addr"], "");
    assert_eq!(member["admin"], "");
    assert!(
        !anonymous.to_string().contains("127.0.0.1"),
        "no address anywhere: {anonymous}"
    );
    let (_, with_token) = router.get("/dashboard/state").await;
    assert_eq!(with_token["ring"]["members"][0]["addr"], pod.member().addr);
}
